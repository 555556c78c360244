/*
 * options.h - invoice-server's command line (options.c).
 */
#ifndef TW_INVOICE_OPTIONS_H
#define TW_INVOICE_OPTIONS_H

#include "util.h"

#include <stddef.h>

#define INV_MAX_RULES 256

typedef struct inv_options {
    const char *cert, *key, *ca, *crl, *listen, *db, *policy;
    const char *access_log, *ticket_keys;
    const char *revocations; /* the CA index's PostgreSQL URL */
    /* Renewal (twoway-ca serve): enrol, renew, fetch the CRL. */
    const char *enroll, *token_file, *renew, *crl_url;
    long crl_refresh; /* seconds */
    long ticket_rotate; /* seconds: --ticket-rotate */
    const char *rules[INV_MAX_RULES];
    int nrules, workers;
    size_t max_head, max_headers, max_body;
    int header_timeout_ms, idle_timeout_ms, handshake_timeout_ms;
    int max_conns, reload_check_ms, tickets;
    unsigned long long session_cache; /* bytes */
    int log_level, log_json; /* --log-level, --log-format */
    int argc;                /* the command line, read again on reload */
    char **argv;
    twu_conf conf; /* --config FILE: its strings live here */
} inv_options;

/* Parse argv; returns 0, or an exit code (0 after --help). `done` is set
 * when the program should exit with that code. */
int inv_options_parse(inv_options *o, int argc, char **argv, int *done);

#endif
