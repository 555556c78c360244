/*
 * pgutil.c - what every program that talks to PostgreSQL needs the same way
 * (invoice-server's store, twoway-ca's index): telling a libpq URL from a
 * file name, naming it in messages without its password, connecting with
 * our session settings, and libpq's error in one line.
 *
 * A separate library (twoway_pgutil): only the programs that use
 * PostgreSQL link libpq.
 */
#include "pgutil.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

int twu_pg_is_url(const char *db)
{
    return db != NULL && (strncmp(db, "postgresql://", 13) == 0 ||
                          strncmp(db, "postgres://", 11) == 0);
}

char *twu_pg_describe(const char *url)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname",
                                        "user"};
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    twu_buf b = {0};

    if (twu_buf_append(&b, "postgresql", 10) < 0)
        goto done;
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        for (size_t i = 0; i < sizeof(shown) / sizeof(*shown); i++)
            if (o->val != NULL && o->val[0] != '\0' &&
                strcmp(o->keyword, shown[i]) == 0 &&
                twu_buf_printf(&b, " %s=%s", o->keyword, o->val) < 0)
                goto done;
done:
    PQconninfoFree(opts);
    if (b.data == NULL || (opts == NULL && twu_buf_append(&b, " (a URL libpq "
                                                          "cannot read)", 25) < 0)) {
        twu_buf_free(&b);
        return NULL;
    }
    return b.data;
}

const char *twu_pg_error_line(PGconn *c, char *buf, size_t len)
{
    const char *m = c != NULL ? PQerrorMessage(c) : "out of memory";
    size_t n = strcspn(m, "\n");

    if (n == 0) {
        m = "the connection was lost";
        n = strlen(m);
    }
    if (n >= len)
        n = len - 1;
    memcpy(buf, m, n);
    buf[n] = '\0';
    return buf;
}

/* libpq prints notices (and a server's parting FATAL) on stderr; ours say
 * what matters in the operational log instead. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *twu_pg_connect(const char *url, const char *what, tw_err *err)
{
    /* Our defaults first: the URL's own settings, expanded from "dbname",
     * come after them and win. */
    const char *const keys[] = {"connect_timeout", "application_name",
                                "dbname", NULL};
    const char *const values[] = {"5", what, url, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    char line[256];
    PGresult *res;

    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        char *desc = twu_pg_describe(url);

        twu_err(err, TW_ERR_IO, "cannot connect to %s: %s",
                desc ? desc : "PostgreSQL", twu_pg_error_line(c, line, sizeof(line)));
        twu_free(desc);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    /* A 201 only after the commit is durable, whatever the server's
     * default; statements that hang are given up. */
    res = PQexec(c, "SET synchronous_commit = on; "
                    "SET statement_timeout = " TWU_PG_STATEMENT_TIMEOUT);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        twu_err(err, TW_ERR_IO, "cannot set up the PostgreSQL session: %s",
                twu_pg_error_line(c, line, sizeof(line)));
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}
