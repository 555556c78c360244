/*
 * ticket_keys.c - TLS ticket keys shared by every instance through
 * PostgreSQL, rotated.
 *
 * The keys live in twoway_invoices.ticket_keys, each sealed (AES-256-GCM,
 * its created_at as associated data) with a key derived from the first key
 * of --ticket-keys FILE: the database never holds a usable ticket key, and
 * instances given the same file read the same keys.  Every instance looks
 * every POLL seconds (a twelfth of the rotation period, 1 s to 60 s) and,
 * under an advisory lock held for one transaction (one instance at a time),
 * adds a key when the newest is older than the rotation period (12 h by
 * default) and drops all but the KEEP newest.
 *
 * A new key makes tickets only once it is 2 POLL old, by which time every
 * instance has read it: until then the previous one does, and a ticket
 * made on one instance always opens on another.  Every key kept is
 * accepted (the newest, the one making tickets and the two before it), so
 * a ticket outlives two rotations; OpenSSL's ticket callback still checks
 * each one against the current CRL, expiry, trust anchors and revocations
 * (src/lib/ticket.c).
 *
 * Owns: its connection (the thread's once running) and the keys read.
 */
#include "ticket_keys.h"
#include "util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEEP 4                  /* keys kept in the table */
#define DEADLINE_MS (TWU_PG_STATEMENT_TIMEOUT_MS + 2000)
/* pg_advisory_xact_lock keys: the rotation's ("twoway" + 3), and the
 * invoice schema's creation (pg_conn.c's). */
#define ROTATE_LOCK "7477776179000003"
#define SCHEMA_LOCK "7477776179000001"
#define NONCE 12
#define TAG 16
#define SEALED (NONCE + TW_TICKET_KEY_BYTES + TAG)

typedef struct key_row {
    long long created_at;
    unsigned char key[TW_TICKET_KEY_BYTES];
} key_row;

struct inv_ticket_keys {
    pg_link link;
    PGconn *c;
    pg_thread thread;
    long rotate_s, poll_s;
    unsigned char seal[32];       /* derived from the file's first key */
    int warned_unsealed;
    int table_made;               /* by this process's first look */
    pthread_mutex_t mu;           /* the fields below */
    unsigned char keys[KEEP * TW_TICKET_KEY_BYTES]; /* in use, issuer first */
    size_t nkeys;
    int changed;
    unsigned long rotations;
    atomic_int up;
};

/* ------------------------------------------------------------ sealing */

static int derive_seal(inv_ticket_keys *t, const char *file, tw_err *err)
{
    unsigned char keys[16 * TW_TICKET_KEY_BYTES];
    unsigned int len = 0;
    size_t n = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    if (tw_ticket_keys_read(file, keys, 16, &n, err) < 0) {
        EVP_MD_CTX_free(md);
        return -1;
    }
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(md, "twoway ticket keys, sealed v1", 29) == 1 &&
         EVP_DigestUpdate(md, keys, TW_TICKET_KEY_BYTES) == 1 &&
         EVP_DigestFinal_ex(md, t->seal, &len) == 1 && len == 32;
    EVP_MD_CTX_free(md);
    OPENSSL_cleanse(keys, sizeof(keys));
    if (!ok)
        return twu_err(err, TW_ERR_INTERNAL, "cannot derive the sealing key");
    return 0;
}

/* AES-256-GCM of `key` (`out`: nonce, ciphertext, tag), or its reverse;
 * the creation time is the associated data.  0, or -1. */
static int gcm(const unsigned char seal[32], int encrypt, long long created_at,
               const unsigned char *in, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    char aad[32];
    int len = 0, fin = 0, ok;
    const unsigned char *nonce = encrypt ? out : in;

    snprintf(aad, sizeof(aad), "%lld", created_at);
    if (encrypt && RAND_bytes(out, NONCE) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return -1;
    }
    ok = ctx != NULL &&
         EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, seal, nonce,
                           encrypt) == 1 &&
         EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *)aad,
                          (int)strlen(aad)) == 1;
    if (ok && encrypt)
        ok = EVP_CipherUpdate(ctx, out + NONCE, &len, in,
                              TW_TICKET_KEY_BYTES) == 1 &&
             EVP_CipherFinal_ex(ctx, out + NONCE + len, &fin) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG,
                                 out + NONCE + TW_TICKET_KEY_BYTES) == 1;
    else if (ok)
        ok = EVP_CipherUpdate(ctx, out, &len, in + NONCE,
                              TW_TICKET_KEY_BYTES) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG,
                                 (void *)(in + NONCE + TW_TICKET_KEY_BYTES)) == 1 &&
             EVP_CipherFinal_ex(ctx, out + len, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

static int unhex(const char *text, unsigned char *out, size_t len)
{
    if (strlen(text) != 2 * len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int hi = twu_hex_digit(text[2 * i]), lo = twu_hex_digit(text[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* ----------------------------------------------------------- database */

static PGresult *exec(inv_ticket_keys *t, const char *sql, int n,
                      const char *const *params, tw_err *err)
{
    int late;
    PGresult *res = pg_exec_params(t->c, sql, n, params, DEADLINE_MS, &late);
    char line[256];

    if (!late && (PQresultStatus(res) == PGRES_TUPLES_OK ||
                  PQresultStatus(res) == PGRES_COMMAND_OK))
        return res;
    PQclear(res);
    if (late)
        twu_err(err, TW_ERR_IO, "no answer from %s in %d s", t->link.desc,
                DEADLINE_MS / 1000);
    else
        twu_err(err, TW_ERR_IO, "cannot keep the ticket keys in %s: %s",
                t->link.desc, twu_pg_error_line(t->c, line, sizeof(line)));
    return NULL;
}

static int run_sql(inv_ticket_keys *t, const char *sql, int n,
                   const char *const *params, tw_err *err)
{
    PGresult *res = exec(t, sql, n, params, err);

    PQclear(res);
    return res != NULL ? 0 : -1;
}

/* Add a key made now. */
static int add_key(inv_ticket_keys *t, tw_err *err)
{
    unsigned char key[TW_TICKET_KEY_BYTES], sealed[SEALED];
    char hex[2 * SEALED + 1], when[32];
    const char *params[2] = {when, hex};
    long long now = (long long)time(NULL);
    int rc;

    snprintf(when, sizeof(when), "%lld", now);
    if (RAND_bytes(key, sizeof(key)) != 1 ||
        gcm(t->seal, 1, now, key, sealed) < 0) {
        OPENSSL_cleanse(key, sizeof(key));
        return twu_err(err, TW_ERR_INTERNAL, "cannot make a ticket key");
    }
    OPENSSL_cleanse(key, sizeof(key));
    twu_hex(sealed, sizeof(sealed), hex, 0);
    rc = run_sql(t, "INSERT INTO twoway_invoices.ticket_keys(created_at, "
                 "sealed) VALUES($1::bigint, $2)", 2, params, err);
    if (rc == 0) {
        pthread_mutex_lock(&t->mu);
        t->rotations++;
        pthread_mutex_unlock(&t->mu);
        t->link.log(t->link.log_ctx, "ticket keys: made a new one in %s; it "
                    "makes tickets in %ld s, the next in %ld s", t->link.desc,
                    2 * t->poll_s, t->rotate_s);
    }
    return rc;
}

/* The keys kept, newest first, unsealed into rows[]; how many (those that
 * do not unseal are skipped: *unsealed counts them), or -1. */
static int read_keys(inv_ticket_keys *t, key_row *rows, int *unsealed,
                     tw_err *err)
{
    PGresult *res = exec(t, "SELECT created_at, sealed FROM "
                         "twoway_invoices.ticket_keys ORDER BY id DESC "
                         "LIMIT 4", 0, NULL, err);
    int n = 0;

    *unsealed = 0;
    if (res == NULL)
        return -1;
    for (int i = 0; i < PQntuples(res) && n < KEEP; i++) {
        unsigned char sealed[SEALED];
        long long at = strtoll(PQgetvalue(res, i, 0), NULL, 10);

        if (unhex(PQgetvalue(res, i, 1), sealed, sizeof(sealed)) < 0 ||
            gcm(t->seal, 0, at, sealed, rows[n].key) < 0) {
            (*unsealed)++;
            continue;
        }
        rows[n++].created_at = at;
    }
    PQclear(res);
    return n;
}

/* The table (and its schema, when this runs before the invoice tables are
 * made), under the lock of the schema's creation (pg_conn.c), so that
 * instances starting together make each once. */
static int make_table(inv_ticket_keys *t, tw_err *err)
{
    if (run_sql(t, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", 0, NULL,
                err) < 0 ||
        run_sql(t, "CREATE SCHEMA IF NOT EXISTS twoway_invoices", 0, NULL,
                err) < 0 ||
        run_sql(t, "CREATE TABLE IF NOT EXISTS twoway_invoices.ticket_keys("
                "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "created_at BIGINT NOT NULL, sealed TEXT NOT NULL)", 0, NULL,
                err) < 0)
        return -1;
    t->table_made = 1; /* committed with the first look, or made again */
    return 0;
}

/* One look: in one transaction under the lock, add a key when due and
 * drop the oldest; then read them.  The rows in rows[], newest first. */
static int cycle(inv_ticket_keys *t, key_row *rows, tw_err *err)
{
    tw_err ignored;
    int n, unsealed;

    if (run_sql(t, "BEGIN", 0, NULL, err) < 0 ||
        (!t->table_made && make_table(t, err) < 0) ||
        run_sql(t, "SELECT pg_advisory_xact_lock(" ROTATE_LOCK ")", 0, NULL,
                err) < 0 ||
        (n = read_keys(t, rows, &unsealed, err)) < 0)
        goto failed;
    if (n == 0 && unsealed > 0) {
        twu_err(err, TW_ERR_INPUT, "the ticket keys in %s were sealed with "
                "another --ticket-keys file's key: give every instance the "
                "same file", t->link.desc);
        goto failed;
    }
    if (n == 0 || rows[0].created_at <= (long long)time(NULL) - t->rotate_s) {
        if (add_key(t, err) < 0 || (n = read_keys(t, rows, &unsealed, err)) < 0)
            goto failed;
    }
    if (run_sql(t, "DELETE FROM twoway_invoices.ticket_keys WHERE id NOT IN "
                "(SELECT id FROM twoway_invoices.ticket_keys ORDER BY id DESC "
                "LIMIT 4)", 0, NULL, err) < 0 ||
        run_sql(t, "COMMIT", 0, NULL, err) < 0)
        goto failed;
    if (unsealed > 0 && !t->warned_unsealed)
        t->link.log(t->link.log_ctx, "warning: %d ticket key(s) in %s do not "
                    "open with this --ticket-keys file's key; using the %d "
                    "that do", unsealed, t->link.desc, n);
    t->warned_unsealed = unsealed > 0;
    return n;
failed:
    t->table_made = 0; /* rolled back with the rest */
    if (PQstatus(t->c) == CONNECTION_OK)
        (void)run_sql(t, "ROLLBACK", 0, NULL, &ignored);
    return -1;
}

/* Keep the keys read: the newest that every instance has had time to read
 * makes tickets, every one is accepted. */
static void take_rows(inv_ticket_keys *t, const key_row *rows, int n)
{
    unsigned char keys[KEEP * TW_TICKET_KEY_BYTES];
    long long ripe = (long long)time(NULL) - 2 * t->poll_s;
    int issuer = 0, k = 0;

    while (issuer < n - 1 && rows[issuer].created_at > ripe)
        issuer++;
    memcpy(keys, rows[issuer].key, TW_TICKET_KEY_BYTES);
    for (int i = 0; i < n; i++)
        if (i != issuer)
            memcpy(keys + (size_t)++k * TW_TICKET_KEY_BYTES, rows[i].key,
                   TW_TICKET_KEY_BYTES);
    pthread_mutex_lock(&t->mu);
    if ((size_t)n != t->nkeys ||
        CRYPTO_memcmp(keys, t->keys, (size_t)n * TW_TICKET_KEY_BYTES) != 0) {
        memcpy(t->keys, keys, (size_t)n * TW_TICKET_KEY_BYTES);
        t->nkeys = (size_t)n;
        t->changed = 1;
    }
    pthread_mutex_unlock(&t->mu);
    OPENSSL_cleanse(keys, sizeof(keys));
}

/* One look with the keys it found kept; -1 with err. */
static int look(inv_ticket_keys *t, tw_err *err)
{
    key_row rows[KEEP];
    int n = cycle(t, rows, err);

    if (n > 0)
        take_rows(t, rows, n);
    OPENSSL_cleanse(rows, sizeof(rows));
    return n > 0 ? 0 : -1;
}

static int setup(void *arg, PGconn *c, tw_err *err)
{
    inv_ticket_keys *t = arg;
    char line[256];

    (void)t;
    if (PQsetnonblocking(c, 1) != 0)
        return twu_err(err, TW_ERR_IO, "cannot set up the connection to %s: "
                       "%s", t->link.desc,
                       twu_pg_error_line(c, line, sizeof(line)));
    return 0;
}

/* ------------------------------------------------------------- thread */

static void *run(void *arg)
{
    inv_ticket_keys *t = arg;
    long long next = pg_now_ms() + t->poll_s * 1000;

    for (;;) {
        long long left = next - pg_now_ms();
        tw_err err;

        if (left > 0) {
            if (pg_thread_wait(&t->thread, -1, left > 60000 ? 60000 : (int)left))
                break;
            continue;
        }
        next = pg_now_ms() + (t->c != NULL ? t->poll_s * 1000 : 100);
        if (t->c == NULL && (t->c = pg_link_retry(&t->link)) == NULL)
            continue;
        if (look(t, &err) == 0) {
            atomic_store(&t->up, 1);
        } else if (PQstatus(t->c) != CONNECTION_OK ||
                   strncmp(err.msg, "no answer", 9) == 0) {
            atomic_store(&t->up, 0);
            pg_link_lost(&t->link, t->c, err.msg, 0);
            t->c = NULL;
        } else {
            t->link.log(t->link.log_ctx, "warning: %s; the keys in use stay",
                        err.msg);
        }
    }
    return NULL;
}

inv_ticket_keys *inv_ticket_keys_open(const char *url, const char *file,
                                      long rotate_s, pg_log_fn *log,
                                      void *log_ctx, tw_err *err)
{
    inv_ticket_keys *t = twu_calloc(1, sizeof(*t));

    if (t == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->thread.wake = -1;
    t->rotate_s = rotate_s;
    t->poll_s = rotate_s / 12 < 1 ? 1 : rotate_s / 12 > 60 ? 60 : rotate_s / 12;
    if (derive_seal(t, file, err) < 0 ||
        pg_link_init(&t->link, url, "invoice-server ticket keys",
                     "ticket keys", setup, t, log, log_ctx, err) < 0)
        goto fail;
    t->link.outage = "the ticket keys in use stay until it is back";
    if (pg_thread_init(&t->thread, err) < 0 ||
        (t->c = pg_link_first(&t->link, err)) == NULL || look(t, err) < 0)
        goto fail;
    atomic_store(&t->up, 1);
    t->changed = 0; /* the first configuration has them */
    return t;
fail:
    inv_ticket_keys_stop(t);
    return NULL;
}

int inv_ticket_keys_run(inv_ticket_keys *t, tw_err *err)
{
    return pg_thread_start(&t->thread, run, t, "ticket keys", err);
}

void inv_ticket_keys_stop(inv_ticket_keys *t)
{
    if (t == NULL)
        return;
    pg_thread_stop(&t->thread);
    if (t->c != NULL)
        PQfinish(t->c);
    pg_link_free(&t->link);
    pthread_mutex_destroy(&t->mu);
    OPENSSL_cleanse(t, sizeof(*t));
    twu_free(t);
}

int inv_ticket_keys_apply(inv_ticket_keys *t, tw_config *cfg)
{
    int rc;

    pthread_mutex_lock(&t->mu);
    rc = tw_config_set_ticket_keys(cfg, t->keys, t->nkeys);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int inv_ticket_keys_take(inv_ticket_keys *t)
{
    int changed;

    pthread_mutex_lock(&t->mu);
    changed = t->changed;
    t->changed = 0;
    pthread_mutex_unlock(&t->mu);
    return changed;
}

void inv_ticket_keys_metrics(inv_ticket_keys *t, twu_buf *b)
{
    unsigned long rotations;
    size_t n;

    pthread_mutex_lock(&t->mu);
    rotations = t->rotations;
    n = t->nkeys;
    pthread_mutex_unlock(&t->mu);
    twu_buf_printf(b,
        "# HELP twoway_ticket_keys_up 1 while the ticket keys are read from the database.\n"
        "# TYPE twoway_ticket_keys_up gauge\n"
        "twoway_ticket_keys_up %d\n"
        "# HELP twoway_ticket_keys Ticket keys accepted (the newest makes tickets once every instance has it).\n"
        "# TYPE twoway_ticket_keys gauge\n"
        "twoway_ticket_keys %zu\n"
        "# HELP twoway_ticket_key_rotations_total Ticket keys this instance made.\n"
        "# TYPE twoway_ticket_key_rotations_total counter\n"
        "twoway_ticket_key_rotations_total %lu\n",
        atomic_load(&t->up), n, rotations);
}
