/*
 * options.c - invoice-server's command line.
 */
#include "options.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: invoice-server --cert FILE --key FILE --ca FILE [--crl FILE]\n"
    "                      [--listen ADDR:PORT] [--db FILE|URL] [--policy FILE]\n"
    "                      [--allow RULE]... [--workers N]\n"
    "                      [--access-log FILE|-] [--ticket-keys FILE]\n"
    "                      [--enroll URL --token-file FILE] [--renew URL]\n"
    "                      [--crl-url URL [--crl-refresh DURATION]]\n"
    "                      [--revocations URL]\n"
    "\n"
    "The Invoice Server: an HTTPS API that answers only clients whose\n"
    "certificate the CA signed (mutual TLS) and whose identity the policy\n"
    "allows.  Refused clients get a TLS alert and a log line saying why.\n"
    "\n"
    "  --cert FILE            the server's certificate (PEM)\n"
    "  --key FILE             its private key\n"
    "  --ca FILE              the CA that signs client certificates\n"
    "  --crl FILE             the CRLs of those CAs, one per CA (PEM, one after\n"
    "                         another; re-read on reload)\n"
    "  --listen ADDR:PORT     where to listen (default 0.0.0.0:3100;\n"
    "                         [::1]:3100 for IPv6; port 0 picks a free one)\n"
    "  --db FILE|URL          the SQLite database (default invoices.db;\n"
    "                         created and seeded when new), or PostgreSQL\n"
    "                         shared by several instances: postgresql://...\n"
    "  --policy FILE          policy rules, one per line:\n"
    "                         ROLE FIELD=VALUE... (roles: read, write, metrics)\n"
    "  --allow RULE           one policy rule, e.g. 'read O=MailServer'\n"
    "  --workers N            worker threads (default: number of cores)\n"
    "  --access-log FILE|-    one JSON line per request (- for stdout)\n"
    "  --ticket-keys FILE     TLS ticket keys shared with other instances; with\n"
    "                         --db postgresql://... the keys live there, sealed\n"
    "                         with this file's first key, and are rotated\n"
    "  --ticket-rotate DURATION  a new ticket key in the database this often\n"
    "                         (default 12h; the two before it still accepted)\n"
    "  --tickets N            TLS 1.3 tickets per handshake (default 1, 0 = off)\n"
    "  --session-cache SIZE   memory for resumable TLS sessions (default 10M;\n"
    "                         K, M, G suffixes; 0 = off)\n"
    "  --enroll URL           first start without --cert/--key: make a key,\n"
    "                         enrol at twoway-ca serve (https://HOST:PORT)\n"
    "                         with the token, write both files\n"
    "  --token-file FILE      the one-time token `twoway-ca token` printed\n"
    "  --renew URL            renew the certificate from twoway-ca serve at\n"
    "                         two thirds of its lifetime (new key each time),\n"
    "                         without dropping connections\n"
    "  --crl-url URL          fetch the CRL (serve's /v1/crl), verify it and\n"
    "                         keep it in --crl FILE\n"
    "  --crl-refresh DURATION fetch it at least this often (default 5m)\n"
    "  --revocations URL      the CA index's PostgreSQL (twoway-ca init --db):\n"
    "                         refuse a revoked client within a second or two,\n"
    "                         on new, resumed and open connections, before\n"
    "                         any CRL says so\n"
    "  --max-connections N    open connections at most (default 10000)\n"
    "  --max-head BYTES       request line + headers (default 8192; 431 above)\n"
    "  --max-headers N        header count (default 64; 431 above)\n"
    "  --max-body BYTES       request body (default 1048576; 413 above)\n"
    "  --header-timeout SEC   to receive a request (default 10; 408 after)\n"
    "  --idle-timeout SEC     keep-alive between requests (default 60)\n"
    "  --reload-check SEC     how often to look for changed files (default 2;\n"
    "                         0 = only on SIGHUP)\n"
    "  --log-level LEVEL      error, warn, info (default) or debug\n"
    "  --log-format FORMAT    text (default) or json: one object per line\n"
    "  --config FILE          options as 'name = value' lines (# comments);\n"
    "                         the command line wins; re-read on SIGHUP\n"
    "  --help                 show this help\n"
    "  --version              show the version (\"invoice-server X.Y.Z\")\n"
    "\n"
    "Signals: SIGHUP reloads certificate, key, CA, CRL and policy without\n"
    "dropping connections; SIGTERM stops accepting, finishes requests in\n"
    "flight and exits 0.  See invoice-server(8).\n";

static int parse_num(const char *opt, const char *text, long min, long max,
                     long *out)
{
    if (twu_parse_long(text, min, max, out) < 0) {
        fprintf(stderr, "invoice-server: %s '%s' is not a number from %ld to %ld\n",
                opt, text, min, max);
        return -1;
    }
    return 0;
}

static const struct option opts[] = {
    {"cert", required_argument, NULL, 'c'},
    {"key", required_argument, NULL, 'k'},
    {"ca", required_argument, NULL, 'a'},
    {"crl", required_argument, NULL, 'r'},
    {"listen", required_argument, NULL, 'l'},
    {"db", required_argument, NULL, 'd'},
    {"policy", required_argument, NULL, 'p'},
    {"allow", required_argument, NULL, 'A'},
    {"workers", required_argument, NULL, 'w'},
    {"access-log", required_argument, NULL, 'L'},
    {"ticket-keys", required_argument, NULL, 'T'},
    {"tickets", required_argument, NULL, 't'},
    {"ticket-rotate", required_argument, NULL, 'r' + 256},
    {"session-cache", required_argument, NULL, 'S'},
    {"max-connections", required_argument, NULL, 'M'},
    {"max-head", required_argument, NULL, 'H'},
    {"max-headers", required_argument, NULL, 'N'},
    {"max-body", required_argument, NULL, 'B'},
    {"header-timeout", required_argument, NULL, 'h' + 256},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"reload-check", required_argument, NULL, 'R'},
    {"enroll", required_argument, NULL, 'e' + 256},
    {"token-file", required_argument, NULL, 'k' + 256},
    {"renew", required_argument, NULL, 'n' + 256},
    {"crl-url", required_argument, NULL, 'u' + 256},
    {"crl-refresh", required_argument, NULL, 'f' + 256},
    {"revocations", required_argument, NULL, 'v' + 256},
    {"log-level", required_argument, NULL, 'l' + 256},
    {"log-format", required_argument, NULL, 'F' + 256},
    {"config", required_argument, NULL, 'C' + 256},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0}};

static void defaults(inv_options *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "0.0.0.0:3100";
    o->db = "invoices.db";
    o->workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    o->max_head = 8192;
    o->max_headers = 64;
    o->max_body = 1024 * 1024;
    o->header_timeout_ms = 10000;
    o->idle_timeout_ms = 60000;
    o->handshake_timeout_ms = 10000;
    o->max_conns = 10000;
    o->reload_check_ms = 2000;
    o->tickets = 1;
    o->session_cache = 10ULL * 1024 * 1024;
    o->crl_refresh = 300;
    o->ticket_rotate = 12 * 3600;
}

/* One argument vector (the config file's, or the command line) on top of
 * what is already set; 0, or the exit code with *done set. */
static int parse_args(inv_options *o, int argc, char **argv, int *done)
{
    long v;
    int c;

    *done = 0;
    opterr = 0;
    optind = 0; /* glibc: start again, also on a second vector */
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->cert = optarg; break;
        case 'k': o->key = optarg; break;
        case 'a': o->ca = optarg; break;
        case 'r': o->crl = optarg; break;
        case 'l': o->listen = optarg; break;
        case 'd': o->db = optarg; break;
        case 'p': o->policy = optarg; break;
        case 'L': o->access_log = optarg; break;
        case 'T': o->ticket_keys = optarg; break;
        case 'A':
            if (o->nrules == INV_MAX_RULES) {
                fprintf(stderr, "invoice-server: more than %d --allow rules: "
                        "use a --policy file\n", INV_MAX_RULES);
                goto usage_error;
            }
            o->rules[o->nrules++] = optarg;
            break;
        case 'w':
            if (parse_num("--workers", optarg, 1, 256, &v) < 0)
                goto usage_error;
            o->workers = (int)v;
            break;
        case 't':
            if (parse_num("--tickets", optarg, 0, 8, &v) < 0)
                goto usage_error;
            o->tickets = (int)v;
            break;
        case 'S':
            if (twu_parse_size(optarg, 1ULL << 40, &o->session_cache) < 0 ||
                (o->session_cache > 0 && o->session_cache < 16384)) {
                fprintf(stderr, "invoice-server: --session-cache '%s' is not "
                        "a size the cache can use: give 0 (off) or 16K and "
                        "more, e.g. 10M, 512K, 1G\n", optarg);
                goto usage_error;
            }
            break;
        case 'M':
            if (parse_num("--max-connections", optarg, 1, 1000000, &v) < 0)
                goto usage_error;
            o->max_conns = (int)v;
            break;
        case 'H':
            if (parse_num("--max-head", optarg, 1024, 1024 * 1024, &v) < 0)
                goto usage_error;
            o->max_head = (size_t)v;
            break;
        case 'N':
            if (parse_num("--max-headers", optarg, 4, 1024, &v) < 0)
                goto usage_error;
            o->max_headers = (size_t)v;
            break;
        case 'B':
            if (parse_num("--max-body", optarg, 256, 64L * 1024 * 1024, &v) < 0)
                goto usage_error;
            o->max_body = (size_t)v;
            break;
        case 'h' + 256:
            if (parse_num("--header-timeout", optarg, 1, 3600, &v) < 0)
                goto usage_error;
            o->header_timeout_ms = (int)v * 1000;
            break;
        case 'i':
            if (parse_num("--idle-timeout", optarg, 1, 86400, &v) < 0)
                goto usage_error;
            o->idle_timeout_ms = (int)v * 1000;
            break;
        case 'R':
            if (parse_num("--reload-check", optarg, 0, 3600, &v) < 0)
                goto usage_error;
            o->reload_check_ms = (int)v * 1000;
            break;
        case 'e' + 256: o->enroll = optarg; break;
        case 'k' + 256: o->token_file = optarg; break;
        case 'n' + 256: o->renew = optarg; break;
        case 'u' + 256: o->crl_url = optarg; break;
        case 'v' + 256: o->revocations = optarg; break;
        case 'f' + 256: {
            long long secs;

            if (twu_parse_duration(optarg, 1, 86400, &secs) < 0) {
                fprintf(stderr, "invoice-server: --crl-refresh '%s' is not a "
                        "duration from 1s to 24h, e.g. 30s, 5m, 1h\n", optarg);
                goto usage_error;
            }
            o->crl_refresh = (long)secs;
            break;
        }
        case 'r' + 256: {
            long long secs;

            if (twu_parse_duration(optarg, 4, 30 * 86400, &secs) < 0) {
                fprintf(stderr, "invoice-server: --ticket-rotate '%s' is not a "
                        "duration from 4s to 30d, e.g. 12h, 1d\n", optarg);
                goto usage_error;
            }
            o->ticket_rotate = (long)secs;
            break;
        }
        case 'l' + 256:
            if ((o->log_level = twu_log_level_parse(optarg)) < 0) {
                fprintf(stderr, "invoice-server: --log-level '%s' is not "
                        "error, warn, info or debug\n", optarg);
                goto usage_error;
            }
            break;
        case 'F' + 256:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "invoice-server: --log-format '%s' is not "
                        "text or json\n", optarg);
                goto usage_error;
            }
            o->log_json = strcmp(optarg, "json") == 0;
            break;
        case 'C' + 256: break; /* read before (twu_conf_find) */
        case 'h':
            fputs(usage, stdout);
            *done = 1;
            return 0;
        case 'V':
            printf("invoice-server %s\n", TW_VERSION);
            *done = 1;
            return 0;
        case ':':
            fprintf(stderr, "invoice-server: option %s needs a value\n",
                    argv[optind - 1]);
            goto usage_error;
        default:
            fprintf(stderr, "invoice-server: unknown option %s\n",
                    argv[optind - 1]);
            goto usage_error;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "invoice-server: unexpected argument '%s'\n",
                argv[optind]);
        goto usage_error;
    }
    return 0;
usage_error:
    *done = 1;
    return 2;
}

int inv_options_parse(inv_options *o, int argc, char **argv, int *done)
{
    const char *path = twu_conf_find(argc, argv);
    tw_err err;
    int rc;

    defaults(o);
    o->argc = argc;
    o->argv = argv;
    *done = 0;
    if (path != NULL) {
        if (twu_conf_load(&o->conf, path, argv[0], opts, &err) < 0) {
            fprintf(stderr, "invoice-server: --config %s\n", err.msg);
            goto usage_error;
        }
        if ((rc = parse_args(o, o->conf.argc, o->conf.argv, done)) != 0 ||
            *done) {
            if (rc != 0)
                fprintf(stderr, "invoice-server: (at %s:%d)\n", path,
                        twu_conf_line(&o->conf, optind - 1));
            goto usage_error;
        }
    }
    if ((rc = parse_args(o, argc, argv, done)) != 0 || *done) {
        if (rc == 0)
            return 0; /* --help, --version */
        goto usage_error;
    }
    if (o->cert == NULL || o->key == NULL || o->ca == NULL) {
        fprintf(stderr, "invoice-server: give --cert FILE, --key FILE and "
                "--ca FILE (the server's certificate and key, and the CA "
                "that signs client certificates)\n");
        goto usage_error;
    }
    if ((o->enroll != NULL) != (o->token_file != NULL)) {
        fprintf(stderr, "invoice-server: --enroll URL and --token-file FILE "
                "go together (where to enrol, and the token `twoway-ca token` "
                "printed)\n");
        goto usage_error;
    }
    if (o->crl_url != NULL && o->crl == NULL) {
        fprintf(stderr, "invoice-server: --crl-url needs --crl FILE, where "
                "the last good CRL is kept for a restart while the CA is "
                "down\n");
        goto usage_error;
    }
    return 0;
usage_error:
    if (!twu_conf_reloading()) /* a reload's log names FILE:LINE instead */
        fprintf(stderr, "invoice-server: see `invoice-server --help`\n");
    *done = 1;
    return 2;
}
