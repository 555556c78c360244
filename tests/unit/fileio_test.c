/* fileio_test.c - bounded reads and atomic writes: a key file is 0600 from
 * the first instant, a refused write leaves the old file alone, and an
 * aborted or failed write leaves nothing behind. */
#include "tw_internal.h"
#include "unit_helpers.h"

#include <sys/types.h>

static int setup(void **state)
{
    *state = th_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    th_rmdir(*state);
    return 0;
}

/* ------------------------------------------------------------ writing */

static void atomic_write_is_0600_even_with_umask_0(void **state)
{
    const char *dir = *state;
    char path[4096];
    mode_t old = umask(0);
    tw_err err;
    char *back;
    size_t len;
    int rc;

    th_path(path, dir, "key.pem");
    rc = twu_write_file_atomic(path, "secret\n", 7, 0600, 0, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(th_mode(path), 0600);
    back = th_slurp(path, &len);
    assert_int_equal(len, 7);
    assert_string_equal(back, "secret\n");
    free(back);
    assert_int_equal(th_dir_entries(dir), 1); /* no temporary left */
}

static void staged_temp_file_is_0600_before_it_has_a_name(void **state)
{
    const char *dir = *state;
    char path[4096];
    mode_t old = umask(0);
    twu_staged s;
    tw_err err;
    int rc;

    th_path(path, dir, "key.pem");
    rc = twu_stage_file(&s, path, "secret", 6, 0600, TWU_WRITE_NO_REPLACE,
                        &err);
    umask(old);
    assert_int_equal(rc, 0);
    /* The data is on disk under a temporary name in the same directory
     * (a rename across file systems would not be atomic), and that file
     * was never more than 0600. */
    assert_non_null(s.tmp);
    assert_int_equal(strncmp(s.tmp, path, strlen(path)), 0);
    assert_int_equal(th_mode(s.tmp), 0600);
    assert_false(th_exists(path));
    assert_int_equal(twu_stage_commit(&s, &err), 0);
    assert_null(s.tmp);
    assert_int_equal(th_mode(path), 0600);
    assert_int_equal(th_dir_entries(dir), 1);
}

static void other_modes_are_set_exactly(void **state)
{
    const char *dir = *state;
    char path[4096];
    mode_t old = umask(077); /* the mode asked for wins over the umask */
    tw_err err;
    int rc;

    th_path(path, dir, "cert.pem");
    rc = twu_write_file_atomic(path, "cert", 4, 0644, 0, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(th_mode(path), 0644);
}

static void replaces_by_default(void **state)
{
    const char *dir = *state;
    char path[4096], *back;
    tw_err err;

    th_path(path, dir, "crl.pem");
    assert_int_equal(twu_write_file_atomic(path, "one", 3, 0644, 0, &err), 0);
    assert_int_equal(twu_write_file_atomic(path, "two!", 4, 0644, 0, &err), 0);
    back = th_slurp(path, NULL);
    assert_string_equal(back, "two!");
    free(back);
    assert_int_equal(th_dir_entries(dir), 1);
}

static void no_replace_refuses_and_leaves_the_file_intact(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200], *back;
    tw_err err;

    th_path(path, dir, "key.pem");
    th_write(path, "original", 8);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(twu_write_file_atomic(path, "new", 3, 0600,
                                           TWU_WRITE_NO_REPLACE, &err), -1);
    snprintf(expected, sizeof(expected),
             "%s already exists: not replacing it", path);
    th_assert_err(err, TW_ERR_IO, expected);
    back = th_slurp(path, NULL);
    assert_string_equal(back, "original");
    free(back);
    assert_int_equal(th_mode(path), 0640);
    assert_int_equal(th_dir_entries(dir), 1); /* the temporary is gone */
}

static void no_replace_writes_a_new_file(void **state)
{
    const char *dir = *state;
    char path[4096], *back;
    tw_err err;

    th_path(path, dir, "new.pem");
    assert_int_equal(twu_write_file_atomic(path, "fresh", 5, 0600,
                                           TWU_WRITE_NO_REPLACE, &err), 0);
    back = th_slurp(path, NULL);
    assert_string_equal(back, "fresh");
    free(back);
    assert_int_equal(th_mode(path), 0600);
    assert_int_equal(th_dir_entries(dir), 1);
}

static void stage_then_abort_leaves_nothing(void **state)
{
    const char *dir = *state;
    char path[4096];
    twu_staged s;
    tw_err err;

    th_path(path, dir, "serial");
    assert_int_equal(twu_stage_file(&s, path, "01", 2, 0644, 0, &err), 0);
    assert_int_equal(th_dir_entries(dir), 1);
    twu_stage_abort(&s);
    assert_int_equal(th_dir_entries(dir), 0);
    assert_false(th_exists(path));
    twu_stage_abort(&s); /* safe twice */
    assert_int_equal(th_dir_entries(dir), 0);
}

static void empty_data_makes_an_empty_file(void **state)
{
    const char *dir = *state;
    char path[4096];
    size_t len;
    tw_err err;

    th_path(path, dir, "empty");
    assert_int_equal(twu_write_file_atomic(path, "", 0, 0600, 0, &err), 0);
    free(th_slurp(path, &len));
    assert_int_equal(len, 0);
}

static void missing_directory_is_io_naming_the_file(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200];
    tw_err err;

    th_path(path, dir, "nodir/key.pem");
    assert_int_equal(twu_write_file_atomic(path, "x", 1, 0600, 0, &err), -1);
    snprintf(expected, sizeof(expected),
             "cannot write %s: No such file or directory", path);
    th_assert_err(err, TW_ERR_IO, expected);
    assert_int_equal(th_dir_entries(dir), 0);
}

struct write_ctx {
    const char *dir;
    char path[4096];
};

static int write_once(void *ctx, tw_err *err)
{
    struct write_ctx *w = ctx;
    int rc = twu_write_file_atomic(w->path, "data", 4, 0600,
                                   TWU_WRITE_NO_REPLACE, err);

    /* A failed write leaves neither the file nor a temporary. */
    if (rc != 0)
        assert_int_equal(th_dir_entries(w->dir), 0);
    return rc;
}

static void allocation_failures_leave_nothing(void **state)
{
    struct write_ctx w = {.dir = *state};

    th_path(w.path, w.dir, "key.pem");
    th_alloc_fail_loop(write_once, &w);
    assert_int_equal(th_dir_entries(w.dir), 1);
}

/* ------------------------------------------------------------ reading */

static void reads_whole_files_nul_terminated(void **state)
{
    const char *dir = *state;
    char path[4096], *data;
    size_t len = 99;
    tw_err err;

    th_path(path, dir, "f");
    th_write(path, "a\0b", 3);
    data = twu_read_file(path, 100, &len, &err);
    assert_non_null(data);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "a\0b", 4); /* with the added NUL */
    twu_free(data);

    th_write(path, "", 0);
    data = twu_read_file(path, 100, &len, &err);
    assert_non_null(data);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    twu_free(data);
}

/* A file of `size` bytes of a repeating pattern. */
static void write_pattern(const char *path, size_t size)
{
    char *buf = malloc(size + 1);

    assert_non_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = (char)('a' + i % 26);
    th_write(path, buf, size);
    free(buf);
}

static void read_size(const char *path, size_t size, size_t max)
{
    size_t len;
    tw_err err;
    char *data;

    write_pattern(path, size);
    data = twu_read_file(path, max, &len, &err);
    if (data == NULL)
        fail_msg("%zu bytes with max %zu: %s", size, max, err.msg);
    assert_int_equal(len, size);
    for (size_t i = 0; i < size; i++)
        if (data[i] != (char)('a' + i % 26))
            fail_msg("byte %zu differs", i);
    assert_int_equal(data[size], '\0');
    twu_free_secret(data, len);
}

static void refuse_size(const char *path, size_t size, size_t max)
{
    char expected[4200];
    size_t len = 12345;
    tw_err err;

    write_pattern(path, size);
    assert_null(twu_read_file(path, max, &len, &err));
    snprintf(expected, sizeof(expected),
             "%s is larger than %zu bytes: is it the right file?", path, max);
    th_assert_err(err, TW_ERR_INPUT, expected);
    assert_int_equal(len, 12345); /* untouched on failure */
}

static void max_size_is_inclusive(void **state)
{
    const char *dir = *state;
    char path[4096];

    th_path(path, dir, "f");
    read_size(path, 10, 10);
    refuse_size(path, 11, 10);
    read_size(path, 1, 1);
    refuse_size(path, 2, 1);
    /* Around the first buffer size and across growth. */
    read_size(path, 4096, 4096);
    refuse_size(path, 4097, 4096);
    read_size(path, 4097, 4097);
    read_size(path, 100000, 100000);
    refuse_size(path, 100001, 100000);
    read_size(path, 100000, 1024 * 1024);
    refuse_size(path, 10000, 5000);
}

static void missing_file_is_io_naming_it(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200];
    size_t len;
    tw_err err;

    th_path(path, dir, "absent.pem");
    assert_null(twu_read_file(path, 100, &len, &err));
    snprintf(expected, sizeof(expected),
             "cannot read %s: No such file or directory", path);
    th_assert_err(err, TW_ERR_IO, expected);
}

static void a_directory_is_io(void **state)
{
    const char *dir = *state;
    char expected[4200];
    size_t len;
    tw_err err;

    assert_null(twu_read_file(dir, 100, &len, &err));
    snprintf(expected, sizeof(expected), "cannot read %s: Is a directory", dir);
    th_assert_err(err, TW_ERR_IO, expected);
}

struct read_ctx {
    char path[4096];
};

static int read_once(void *ctx, tw_err *err)
{
    struct read_ctx *r = ctx;
    size_t len;
    char *data = twu_read_file(r->path, 1 << 20, &len, err);

    if (data == NULL)
        return -1;
    assert_int_equal(len, 20000);
    twu_free(data);
    return 0;
}

static void read_allocation_failures_are_internal(void **state)
{
    struct read_ctx r;

    th_path(r.path, *state, "big");
    write_pattern(r.path, 20000); /* several buffer growths */
    assert_true(th_alloc_fail_loop(read_once, &r) >= 3);
}

/* ------------------------------------------------------------ dirname */

static void dirname_cases(void **state)
{
    static const char *const cases[][2] = {
        {"key.pem", "."},      {"/key.pem", "/"}, {"a/key.pem", "a"},
        {"/a/b/key.pem", "/a/b"}, {"./k", "."},   {"a/b/", "a/b"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *d = twu_dirname(cases[i][0]);

        assert_non_null(d);
        assert_string_equal(d, cases[i][1]);
        twu_free(d);
    }
}

static void free_secret_accepts_null(void **state)
{
    (void)state;
    twu_free_secret(NULL, 10);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(atomic_write_is_0600_even_with_umask_0),
        T(staged_temp_file_is_0600_before_it_has_a_name),
        T(other_modes_are_set_exactly),
        T(replaces_by_default),
        T(no_replace_refuses_and_leaves_the_file_intact),
        T(no_replace_writes_a_new_file),
        T(stage_then_abort_leaves_nothing),
        T(empty_data_makes_an_empty_file),
        T(missing_directory_is_io_naming_the_file),
        T(allocation_failures_leave_nothing),
        T(reads_whole_files_nul_terminated),
        T(max_size_is_inclusive),
        T(missing_file_is_io_naming_it),
        T(a_directory_is_io),
        T(read_allocation_failures_are_internal),
        cmocka_unit_test(dirname_cases),
        cmocka_unit_test(free_secret_accepts_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
