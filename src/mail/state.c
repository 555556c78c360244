/*
 * state.c - the --state file: which invoices the SMTP server accepted.
 *
 * SQLite, WAL, synchronous=FULL: a row written by mail_state_mark_sent is
 * on disk before the next mail starts, so a crash repeats at most the one
 * mail the SMTP server accepted but we had not recorded yet (the same
 * Message-ID).  Tables:
 *
 *   sent(invoice_number PRIMARY KEY, message_id, recipient, sent_at)
 *   failed(invoice_number PRIMARY KEY, reason, attempts, last_attempt)
 *   meta(key PRIMARY KEY, value)     -- "url", "cursor"
 *
 * The cursor only saves re-reading pages; `sent` alone decides what is
 * mailed.  One sync per state file: an flock on it says so.
 */
#include "sync.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct mail_state {
    sqlite3 *db;
    const char *path;
    int lock_fd; /* held open until the database is closed (see close) */
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS sent("
    "  invoice_number TEXT PRIMARY KEY,"
    "  message_id TEXT NOT NULL,"
    "  recipient TEXT NOT NULL,"
    "  sent_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS failed("
    "  invoice_number TEXT PRIMARY KEY,"
    "  reason TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  last_attempt TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "PRAGMA user_version=1;";

static int db_fail(mail_state *s, mail_err *e, const char *what)
{
    return mail_err_set(e, MAIL_EXIT_OTHER, "the state file %s: cannot %s: "
                        "%s", s->path, what, sqlite3_errmsg(s->db));
}

/* Run one statement with text parameters; 1 when it returned a row whose
 * first column went to `out`, 0 when none, -1 on error. */
static int exec(mail_state *s, const char *sql, const char *const *params,
                int nparams, char *out, size_t out_len)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    for (int i = 0; i < nparams; i++)
        sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);

        if (out != NULL)
            snprintf(out, out_len, "%s", v ? (const char *)v : "");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : -1;
    }
    if (sqlite3_finalize(st) != SQLITE_OK && rc >= 0)
        rc = -1;
    return rc;
}

/* Create the file (0600: it holds customers' addresses) and take the
 * one-sync-per-state-file lock. */
static int lock(mail_state *s, mail_err *e)
{
    s->lock_fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return mail_err_set(e, MAIL_EXIT_USAGE, "--state %s: cannot open "
                            "it: %s", s->path, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return mail_err_set(e, MAIL_EXIT_OTHER, "the state file %s is in use "
                            "by another mail-server sync: run one per state "
                            "file", s->path);
    return 0;
}

mail_state *mail_state_open(const char *path, const char *url, mail_err *e)
{
    mail_state *s = calloc(1, sizeof(*s));
    char old_url[4096];
    const char *params[2];
    int rc;

    if (s == NULL) {
        mail_err_set(e, MAIL_EXIT_OTHER, "out of memory");
        return NULL;
    }
    s->path = path;
    s->lock_fd = -1;
    if (lock(s, e) < 0)
        goto err;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--state %s: cannot open it: %s",
                     path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto err;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        mail_err_set(e, MAIL_EXIT_USAGE, "--state %s is not a mail-server "
                     "state file (%s)", path, sqlite3_errmsg(s->db));
        goto err;
    }
    /* A cursor belongs to one server: another --url starts over (what
     * was sent stays recorded, so nothing is mailed twice). */
    params[0] = "url";
    rc = exec(s, "SELECT value FROM meta WHERE key = ?1", params, 1, old_url,
              sizeof(old_url));
    if (rc < 0) {
        db_fail(s, e, "read it");
        goto err;
    }
    if (rc == 1 && strcmp(old_url, url) != 0) {
        mail_log("--url changed from %s to %s: reading every page again",
                 old_url, url);
        if (exec(s, "DELETE FROM meta WHERE key = 'cursor'", NULL, 0, NULL,
                 0) < 0) {
            db_fail(s, e, "write it");
            goto err;
        }
    }
    params[1] = url;
    if (exec(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
             params, 2, NULL, 0) < 0) {
        db_fail(s, e, "write it");
        goto err;
    }
    return s;
err:
    mail_state_close(s);
    return NULL;
}

void mail_state_close(mail_state *s)
{
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    /* Only now: closing another descriptor of the database file would drop
     * SQLite's POSIX locks on it. */
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

int mail_state_is_sent(mail_state *s, const char *number, mail_err *e)
{
    int rc = exec(s, "SELECT 1 FROM sent WHERE invoice_number = ?1", &number,
                  1, NULL, 0);

    return rc < 0 ? db_fail(s, e, "read it") : rc;
}

int mail_state_mark_sent(mail_state *s, const char *number,
                         const char *message_id, const char *rcpt, mail_err *e)
{
    char now[32];
    const char *params[4] = {number, message_id, rcpt, now};

    mail_rfc3339(time(NULL), now);
    if (exec(s, "INSERT OR REPLACE INTO sent(invoice_number, message_id, "
                "recipient, sent_at) VALUES(?1, ?2, ?3, ?4)",
             params, 4, NULL, 0) < 0)
        return db_fail(s, e, "record a sent mail");
    exec(s, "DELETE FROM failed WHERE invoice_number = ?1", params, 1, NULL,
         0);
    return 0;
}

void mail_state_note_failure(mail_state *s, const char *number,
                             const char *why)
{
    char now[32];
    const char *params[3] = {number, why, now};

    mail_rfc3339(time(NULL), now);
    exec(s, "INSERT INTO failed(invoice_number, reason, attempts, "
            "last_attempt) VALUES(?1, ?2, 1, ?3) ON CONFLICT(invoice_number) "
            "DO UPDATE SET reason = ?2, attempts = attempts + 1, "
            "last_attempt = ?3",
         params, 3, NULL, 0);
}

int mail_state_cursor(mail_state *s, char *buf, size_t len, mail_err *e)
{
    const char *key = "cursor";
    int rc = exec(s, "SELECT value FROM meta WHERE key = ?1", &key, 1, buf,
                  len);

    if (rc < 0)
        return db_fail(s, e, "read it");
    if (rc == 0)
        buf[0] = '\0';
    return 0;
}

int mail_state_set_cursor(mail_state *s, const char *cursor, mail_err *e)
{
    const char *params[2] = {"cursor", cursor};

    if (exec(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
             params, 2, NULL, 0) < 0)
        return db_fail(s, e, "write it");
    return 0;
}
