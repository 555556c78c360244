/*
 * audit.c - the audit log: one JSON line per issuance, renewal and
 * revocation, by the CLI or by serve, appended after the index committed.
 *
 * Each line goes out in one write(2) on a descriptor opened with O_APPEND,
 * so lines from several processes (CLI commands, serve workers) never
 * interleave, and is fsync'd before the caller answers: a certificate
 * someone holds is in the log unless the write itself failed, and then the
 * caller says so.  With the index in PostgreSQL the line also goes into
 * its audit table, shared by the CA's processes on every machine.
 */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* A line is a handful of short fields; a subject is at most a few KiB. */
#define AUDIT_LINE_MAX (64 * 1024)

char *ca_audit_path(const ca_dir *ca)
{
    return ca_path_join(ca->dir, "audit.log");
}

static json_t *string_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* The line in the index's audit table (PostgreSQL). */
static int audit_row(sql_db *db, const char *line, tw_err *err)
{
    sql_stmt *st = NULL;
    int ok = sql_prepare(db, "INSERT INTO audit (at, line) VALUES (?, ?)",
                         &st) == SQL_OK &&
             sql_bind_int64(st, 1, (int64_t)time(NULL)) == SQL_OK &&
             sql_bind_text(st, 2, line) == SQL_OK && sql_step(st) == SQL_DONE;

    sql_finalize(st);
    if (!ok)
        return twu_err(err, TW_ERR_IO, "cannot write the audit line to %s: %s",
                       sql_name(db), sql_errmsg(db));
    return 0;
}

int ca_audit(const char *path, sql_db *db, const ca_audit_entry *e,
             tw_err *err)
{
    char when[32], *line = NULL;
    json_t *o = NULL;
    size_t len;
    ssize_t n;
    int fd = -1, rc = -1;

    ca_time_text(time(NULL), when, sizeof(when));
    o = json_object();
    if (o == NULL ||
        json_object_set_new(o, "time", json_string(when)) < 0 ||
        json_object_set_new(o, "action", string_or_null(e->action)) < 0 ||
        json_object_set_new(o, "serial", string_or_null(e->serial)) < 0 ||
        json_object_set_new(o, "subject", string_or_null(e->subject)) < 0 ||
        json_object_set_new(o, "by", string_or_null(e->by)) < 0 ||
        json_object_set_new(o, "peer", string_or_null(e->peer)) < 0 ||
        (line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        twu_err(err, TW_ERR_INTERNAL, "cannot make the audit line for %s "
                "(out of memory, or a field that is not UTF-8)", path);
        goto done;
    }
    len = strlen(line);
    if (len + 1 > AUDIT_LINE_MAX) {
        twu_err(err, TW_ERR_INTERNAL, "the audit line for %s is too long",
                path);
        goto done;
    }
    if (db != NULL && sql_is_pg(db) && audit_row(db, line, err) < 0)
        goto done;
    line[len] = '\n'; /* json_dumps's NUL: the line is written by length */
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        twu_err(err, TW_ERR_IO, "cannot open the audit log %s: %s", path,
                strerror(errno));
        goto done;
    }
    do
        n = write(fd, line, len + 1);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)(len + 1)) {
        twu_err(err, TW_ERR_IO, "cannot write to the audit log %s: %s", path,
                n < 0 ? strerror(errno) : "short write (disk full?)");
        goto done;
    }
    if (fsync(fd) != 0) {
        twu_err(err, TW_ERR_IO, "cannot sync the audit log %s: %s", path,
                strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    free(line); /* jansson's allocation */
    json_decref(o);
    return rc;
}

int ca_audit_cli(const ca_dir *ca, const char *cmd, const char *action,
                 const char *serial, const char *subject)
{
    struct passwd pw, *found = NULL;
    char pwbuf[4096], by[300];
    char *path = ca_audit_path(ca);
    ca_audit_entry e = {.action = action, .serial = serial,
                        .subject = subject, .by = by, .peer = NULL};
    tw_err err;
    int rc = CA_EXIT_OK;

    if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &found) == 0 &&
        found != NULL)
        snprintf(by, sizeof(by), "cli:%s", found->pw_name);
    else
        snprintf(by, sizeof(by), "cli:uid %lu", (unsigned long)geteuid());
    if (path == NULL)
        twu_err_nomem(&err);
    if (path == NULL || ca_audit(path, ca->db, &e, &err) < 0) {
        ca_fail(cmd, "%s %s is recorded in the index but not in the audit "
                "log: %s", strcmp(action, "revoke") == 0 ? "the revocation of"
                                                         : "certificate",
                serial, err.msg);
        rc = CA_EXIT_FAIL;
    }
    twu_free(path);
    return rc;
}
