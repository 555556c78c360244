/* loop_timer_test.c - the server core's event loop: timers, their order,
 * re-arming and deleting them from their own handlers, and the list under
 * many of them (fds and hooks are in loop_fd_test.c).
 *
 * No test asserts how long something took, only the order things happened
 * in (and, for timers, that none fired before its time).  Every wait has an
 * upper bound (WAIT_MS) so that a missing event fails a test instead of
 * hanging it, and alarm() ends the whole run if something hangs anyway. */
#include "loop_helpers.h"

#include <errno.h>
#include <unistd.h>

/* ------------------------------------------------------------ timer helpers */

/* Run the loop until `n` timer calls are logged. */
static void run_until_logged(httpd_loop *loop, int n)
{
    for (int i = 0; tlog.n < n; i++) {
        assert_true(i < 10000);
        assert_true(httpd_loop_process(loop, WAIT_MS) >= 0);
    }
}

/* ------------------------------------------------------------ timer tests */

static void timers_fire_in_deadline_order(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long start = httpd_loop_now_ms();

    (void)state;
    tlog_reset();
    assert_true(httpd_loop_add_timer(loop, 30, on_timer_once, (void *)30) > 0);
    assert_true(httpd_loop_add_timer(loop, 10, on_timer_once, (void *)10) > 0);
    assert_true(httpd_loop_add_timer(loop, 20, on_timer_once, (void *)20) > 0);
    run_until_logged(loop, 3);
    assert_int_equal(tlog.tag[0], 10);
    assert_int_equal(tlog.tag[1], 20);
    assert_int_equal(tlog.tag[2], 30);
    for (int i = 0; i < 3; i++)
        assert_true(tlog.at[i] - start >= tlog.tag[i]); /* never early */
    assert_int_equal(httpd_loop_process(loop, 0), 0); /* all gone */
    httpd_loop_free(loop);
}

static void timer_ids_increase_from_one(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);

    (void)state;
    assert_int_equal(httpd_loop_add_timer(loop, 1000, on_timer_once, NULL), 1);
    assert_int_equal(httpd_loop_add_timer(loop, 1000, on_timer_once, NULL), 2);
    assert_int_equal(httpd_loop_del_timer(loop, 1), 0);
    assert_int_equal(httpd_loop_add_timer(loop, 1000, on_timer_once, NULL), 3);
    errno = 0;
    assert_int_equal(httpd_loop_add_timer(loop, -1, on_timer_once, NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(httpd_loop_add_timer(loop, 10, NULL, NULL), -1);
    httpd_loop_free(loop); /* frees pending timers */
}

/* Re-arms twice with 1 ms, then says NOMORE. */
static long long on_timer_thrice(httpd_loop *loop, long long id, void *data)
{
    (void)loop;
    tlog_add((int)(intptr_t)data, id);
    return tlog.n < 3 ? 1 : HTTPD_LOOP_NOMORE;
}

static void timer_rearms_until_nomore(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long id;

    (void)state;
    tlog_reset();
    id = httpd_loop_add_timer(loop, 1, on_timer_thrice, (void *)7);
    run_until_logged(loop, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tlog.id[i], id); /* same timer, same id */
    assert_true(tlog.at[1] > tlog.at[0]);
    assert_true(tlog.at[2] > tlog.at[1]);
    assert_int_equal(httpd_loop_del_timer(loop, id), -1); /* NOMORE removed it */
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(tlog.n, 3);
    httpd_loop_free(loop);
}

static void nomore_removes_the_timer(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long id;

    (void)state;
    tlog_reset();
    id = httpd_loop_add_timer(loop, 0, on_timer_once, (void *)1);
    assert_int_equal(httpd_loop_process(loop, 0), 1);
    assert_int_equal(tlog.n, 1);
    assert_int_equal(httpd_loop_del_timer(loop, id), -1);
    assert_int_equal(httpd__loop_check(loop), 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(tlog.n, 1);
    httpd_loop_free(loop);
}

static void deleted_timer_never_fires(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long a, b;

    (void)state;
    tlog_reset();
    a = httpd_loop_add_timer(loop, 10, on_timer_once, (void *)10);
    b = httpd_loop_add_timer(loop, 20, on_timer_once, (void *)20);
    assert_int_equal(httpd_loop_del_timer(loop, a), 0);
    assert_int_equal(httpd_loop_del_timer(loop, a), -1);
    run_until_logged(loop, 1);
    assert_int_equal(tlog.n, 1);
    assert_int_equal(tlog.id[0], b);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(tlog.n, 1);
    httpd_loop_free(loop);
}

static void unknown_timer_ids_are_refused(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long id;

    (void)state;
    assert_int_equal(httpd_loop_del_timer(loop, 1), -1); /* no timer ever */
    assert_int_equal(httpd_loop_del_timer(loop, 0), -1);
    assert_int_equal(httpd_loop_del_timer(loop, -3), -1);
    id = httpd_loop_add_timer(loop, 1000, on_timer_once, NULL);
    assert_int_equal(httpd_loop_del_timer(loop, id + 1), -1);
    assert_int_equal(httpd_loop_del_timer(loop, 999999), -1);
    assert_int_equal(httpd_loop_del_timer(loop, id), 0);
    httpd_loop_free(loop);
}

/* Timer handlers that change the timer set while it is being run. */
static long long victim_id;
static int victim_del_result;

static long long on_timer_kills_victim(httpd_loop *loop, long long id, void *data)
{
    tlog_add((int)(intptr_t)data, id);
    victim_del_result = httpd_loop_del_timer(loop, victim_id);
    return HTTPD_LOOP_NOMORE;
}

static void timer_deletes_another_due_timer(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long killer;

    (void)state;
    tlog_reset();
    /* Both due at once; the killer sorts first (same or earlier deadline,
     * smaller id). */
    killer = httpd_loop_add_timer(loop, 0, on_timer_kills_victim, (void *)1);
    victim_id = httpd_loop_add_timer(loop, 0, on_timer_once, (void *)2);
    victim_del_result = -2;
    assert_int_equal(httpd_loop_process(loop, 0), 1);
    assert_int_equal(tlog.n, 1);
    assert_int_equal(tlog.id[0], killer);
    assert_int_equal(victim_del_result, 0);
    assert_int_equal(httpd_loop_del_timer(loop, victim_id), -1);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    httpd_loop_free(loop);
}

static long long on_timer_deletes_self(httpd_loop *loop, long long id, void *data)
{
    tlog_add((int)(intptr_t)data, id);
    victim_del_result = httpd_loop_del_timer(loop, id);
    return 1; /* ignored: the timer is gone */
}

static void timer_deletes_itself(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long id, later;

    (void)state;
    tlog_reset();
    id = httpd_loop_add_timer(loop, 0, on_timer_deletes_self, (void *)1);
    later = httpd_loop_add_timer(loop, 5, on_timer_once, (void *)2);
    victim_del_result = -2;
    run_until_logged(loop, 2);
    assert_int_equal(victim_del_result, 0);
    assert_int_equal(tlog.id[0], id);
    assert_int_equal(tlog.id[1], later);
    assert_int_equal(httpd_loop_del_timer(loop, id), -1);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    assert_int_equal(tlog.n, 2);
    httpd_loop_free(loop);
}

static long long on_timer_adds_one(httpd_loop *loop, long long id, void *data)
{
    tlog_add((int)(intptr_t)data, id);
    assert_true(httpd_loop_add_timer(loop, 0, on_timer_once, (void *)2) > id);
    return HTTPD_LOOP_NOMORE;
}

static void timer_added_by_a_timer_waits_for_the_next_pass(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);

    (void)state;
    tlog_reset();
    assert_true(httpd_loop_add_timer(loop, 0, on_timer_adds_one, (void *)1) > 0);
    assert_int_equal(httpd_loop_process(loop, 0), 1);
    assert_int_equal(tlog.n, 1);
    run_until_logged(loop, 2);
    assert_int_equal(tlog.tag[1], 2);
    httpd_loop_free(loop);
}

static int busy_calls;

static long long on_timer_always_now(httpd_loop *loop, long long id, void *data)
{
    (void)loop;
    (void)id;
    (void)data;
    busy_calls++;
    return 0;
}

/* A timer asking for 0 ms again and again runs once per iteration: the
 * iteration still ends. */
static void zero_ms_rearm_runs_once_per_iteration(void **state)
{
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    long long id;

    (void)state;
    busy_calls = 0;
    id = httpd_loop_add_timer(loop, 0, on_timer_always_now, NULL);
    assert_int_equal(httpd_loop_process(loop, 0), 1);
    assert_int_equal(busy_calls, 1);
    assert_int_equal(httpd_loop_process(loop, WAIT_MS), 1);
    assert_int_equal(busy_calls, 2);
    assert_int_equal(httpd_loop_del_timer(loop, id), 0);
    httpd_loop_free(loop);
}

/* A tiny deterministic generator, so failures reproduce. */
static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void many_timers_keep_the_list_in_order(void **state)
{
    enum { TOTAL = 2000 };
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    static long long live[TOTAL];
    int nlive = 0, added = 0, ops = 0;

    (void)state;
    rng_state = 12345;
    while (added < TOTAL || nlive > 0) {
        if (added < TOTAL && (nlive == 0 || rng() % 3 != 0)) {
            /* Far deadlines (none fires), few distinct ones (many ties). */
            long long ms = 1000000 + rng() % 64;
            long long id = httpd_loop_add_timer(loop, ms, on_timer_once, NULL);

            assert_true(id > 0);
            live[nlive++] = id;
            added++;
        } else {
            int k = (int)(rng() % (uint32_t)nlive);
            long long id = live[k];

            assert_int_equal(httpd_loop_del_timer(loop, id), 0);
            live[k] = live[--nlive];
            if (rng() % 8 == 0)
                assert_int_equal(httpd_loop_del_timer(loop, id), -1);
        }
        if (++ops % 101 == 0)
            assert_int_equal(httpd__loop_check(loop), 0);
    }
    assert_int_equal(httpd__loop_check(loop), 0);
    assert_int_equal(httpd_loop_process(loop, 0), 0);
    httpd_loop_free(loop);
}

/* Many short timers, some cancelled: each live one fires once, cancelled
 * ones never, and timers with the same delay fire in the order added. */
struct shot {
    int ms;
    int fired;
    int seq;
};

static int shot_seq;

static long long on_shot(httpd_loop *loop, long long id, void *data)
{
    struct shot *s = data;

    (void)loop;
    (void)id;
    s->fired++;
    s->seq = shot_seq++;
    return HTTPD_LOOP_NOMORE;
}

static void many_short_timers_fire_once_in_order(void **state)
{
    enum { N = 600 };
    static struct shot shots[N];
    static long long ids[N];
    httpd_loop *loop = httpd_loop_new(SETSIZE);
    int expected = 0, fired = 0;

    (void)state;
    rng_state = 777;
    shot_seq = 0;
    memset(shots, 0, sizeof(shots));
    for (int i = 0; i < N; i++) {
        shots[i].ms = (int)(rng() % 12);
        ids[i] = httpd_loop_add_timer(loop, shots[i].ms, on_shot, &shots[i]);
        assert_true(ids[i] > 0);
    }
    for (int i = 0; i < N; i += 5)
        assert_int_equal(httpd_loop_del_timer(loop, ids[i]), 0);
    assert_int_equal(httpd__loop_check(loop), 0);
    expected = N - (N + 4) / 5;
    for (int i = 0; fired < expected; i++) {
        int n = httpd_loop_process(loop, WAIT_MS);

        assert_true(i < 10000);
        assert_true(n >= 0);
        fired += n;
        assert_int_equal(httpd__loop_check(loop), 0);
    }
    assert_int_equal(fired, expected);
    for (int i = 0; i < N; i++) {
        assert_int_equal(shots[i].fired, i % 5 == 0 ? 0 : 1);
        for (int j = i + 1; j < N && i % 5 != 0; j++) {
            if (j % 5 != 0 && shots[j].ms == shots[i].ms)
                assert_true(shots[i].seq < shots[j].seq);
        }
    }
    httpd_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_deadline_order),
        cmocka_unit_test(timer_ids_increase_from_one),
        cmocka_unit_test(timer_rearms_until_nomore),
        cmocka_unit_test(nomore_removes_the_timer),
        cmocka_unit_test(deleted_timer_never_fires),
        cmocka_unit_test(unknown_timer_ids_are_refused),
        cmocka_unit_test(timer_deletes_another_due_timer),
        cmocka_unit_test(timer_deletes_itself),
        cmocka_unit_test(timer_added_by_a_timer_waits_for_the_next_pass),
        cmocka_unit_test(zero_ms_rearm_runs_once_per_iteration),
        cmocka_unit_test(many_timers_keep_the_list_in_order),
        cmocka_unit_test(many_short_timers_fire_once_in_order),
    };

    /* A hang must end the run rather than stall it. */
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
