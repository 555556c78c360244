/*
 * main.c - mail-server: the command line.  Finds the command, reads its
 * options into mail_options and hands them to fetch.c or sync.c.
 */
#include "mail.h"
#include "util.h"

#include <curl/curl.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_CODES                                                            \
    "exit codes:\n"                                                           \
    "  0  done\n"                                                             \
    "  1  another failure (state file, out of memory, ...)\n"                 \
    "  2  usage: a bad option, or a file or URL that cannot be used\n"        \
    "  3  the invoice server refused our certificate\n"                       \
    "  4  we refused the invoice server (its certificate, its name,\n"        \
    "     --expect-server)\n"                                                 \
    "  5  network: connection refused, timeout, name not found\n"             \
    "  6  the invoice server answered an HTTP error (403, 404, ...)\n"        \
    "  7  the answer was not what an invoice server says (not JSON,\n"        \
    "     larger than 16 MiB)\n"                                              \
    "  8  sync: a mail could not be handed to the SMTP server\n"

#define TLS_OPTIONS                                                           \
    "  --cert FILE            our certificate (PEM), e.g. cert.pem\n"         \
    "  --key FILE             its private key (PEM)\n"                        \
    "  --passphrase-file FILE the key's passphrase (first line), when the\n" \
    "                         key is encrypted\n"                            \
    "  --ca FILE              the CA that signed the invoice server's\n"      \
    "                         certificate: the only one trusted\n"            \
    "  --crl FILE             a CRL of that CA: refuse revoked servers\n"     \
    "  --expect-server RULE   the server must also match RULE, e.g.\n"        \
    "                         'O=InvoiceServer' (policy syntax; repeat for\n" \
    "                         alternatives)\n"                                \
    "  --connect-timeout SEC  to connect and shake hands (default 10)\n"      \
    "  --timeout SEC          for a whole request (default 60)\n"             \
    "  --retries N            retries after a network failure, with\n"        \
    "                         backoff 1 s, 2 s, 4 s... (default 3)\n"        \
    "  --enroll URL           no --cert/--key files yet: make a key, enrol\n" \
    "                         at twoway-ca serve (https://HOST:PORT) with\n"  \
    "                         the token, write both files\n"                 \
    "  --token-file FILE      the one-time token `twoway-ca token` printed\n" \
    "  --renew URL            renew our certificate from twoway-ca serve at\n"\
    "                         two thirds of its lifetime (new key each time)\n"\
    "  --crl-url URL          fetch the CRL (serve's /v1/crl) into --crl FILE\n"\
    "  --crl-refresh DURATION sync: fetch it at least this often (default 5m)\n"\
    "  --log-level LEVEL      error, warn, info (default) or debug\n"        \
    "  --log-format FORMAT    text (default) or json, for the log of sync\n"  \
    "  --config FILE          options as 'name = value' lines (# comments);\n"\
    "                         the command line wins\n"

static const char usage_main[] =
    "usage: mail-server fetch --cert FILE --key FILE --ca FILE [--url URL]\n"
    "                         [--crl FILE] [--expect-server RULE]\n"
    "       mail-server sync  --cert FILE --key FILE --ca FILE --url URL\n"
    "                         --state FILE --smtp URL --from ADDR\n"
    "                         [--interval SECONDS | --once]\n"
    "\n"
    "The Mail Server: fetches invoices from the Invoice Server over mutual\n"
    "TLS and mails each new one to its customer.\n"
    "\n"
    "  fetch   print the invoice server's answer\n"
    "          (default https://localhost:3100/)\n"
    "  sync    mail every invoice not mailed yet, once or every SECONDS\n"
    "\n"
    "`mail-server COMMAND --help` shows a command's options, and\n"
    "`mail-server --version` the version; see mail-server(8).\n\n" EXIT_CODES;

static const char usage_fetch[] =
    "usage: mail-server fetch --cert FILE --key FILE --ca FILE [--url URL]\n"
    "                         [--crl FILE] [--expect-server RULE]\n"
    "\n"
    "GET URL from the invoice server with our certificate and print the\n"
    "body on standard output, as it came.\n"
    "\n"
    "  --url URL              https:// URL (default https://localhost:3100/)\n"
    TLS_OPTIONS
    "  --help                 show this help\n\n" EXIT_CODES;

static const char usage_sync[] =
    "usage: mail-server sync --cert FILE --key FILE --ca FILE --url URL\n"
    "                        --state FILE --smtp URL --from ADDR\n"
    "                        [--interval SECONDS | --once]\n"
    "\n"
    "Page through URL/invoices, mail each invoice not mailed yet to its\n"
    "email address, and record it in the state file once the SMTP server\n"
    "accepted it.\n"
    "\n"
    "  --url URL              the invoice server, e.g.\n"
    "                         https://localhost:3100/\n"
    "  --state FILE           SQLite file of what was sent (created if new)\n"
    "  --smtp URL             smtp://HOST[:PORT] (STARTTLS when offered) or\n"
    "                         smtps://HOST[:PORT] (TLS from the start)\n"
    "  --from ADDR            the sender: addr@example.com or\n"
    "                         'Name <addr@example.com>'\n"
    "  --interval SECONDS     run a pass every SECONDS (default 60) until\n"
    "                         SIGTERM or SIGINT, which end it between mails\n"
    "  --once                 run one pass and exit\n"
    "  --smtp-require-tls     refuse to send unless STARTTLS succeeds\n"
    "  --smtp-ca FILE         CA to verify the SMTP server with (default:\n"
    "                         the system's)\n"
    "  --smtp-insecure        do not verify the SMTP server's certificate\n"
    "  --smtp-password-file FILE\n"
    "                         the SMTP password (first line), for the user\n"
    "                         in --smtp: smtp://USER@HOST (kept out of the\n"
    "                         process list, unlike smtp://USER:PASSWORD@HOST)\n"
    "  --smtp-timeout SEC     per mail (default 60)\n"
    TLS_OPTIONS
    "  --help                 show this help\n\n" EXIT_CODES;

enum {
    OPT_CERT = 256, OPT_KEY, OPT_CA, OPT_CRL, OPT_URL, OPT_EXPECT,
    OPT_CONNECT_TIMEOUT, OPT_TIMEOUT, OPT_RETRIES, OPT_STATE, OPT_SMTP,
    OPT_FROM, OPT_INTERVAL, OPT_ONCE, OPT_SMTP_REQUIRE_TLS, OPT_SMTP_CA,
    OPT_SMTP_INSECURE, OPT_SMTP_PASSWORD_FILE, OPT_SMTP_TIMEOUT,
    OPT_PASSPHRASE_FILE, OPT_ENROLL, OPT_TOKEN_FILE, OPT_RENEW, OPT_CRL_URL,
    OPT_CRL_REFRESH, OPT_CONFIG, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_HELP
};

static const struct option long_options[] = {
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"ca", required_argument, NULL, OPT_CA},
    {"crl", required_argument, NULL, OPT_CRL},
    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
    {"url", required_argument, NULL, OPT_URL},
    {"expect-server", required_argument, NULL, OPT_EXPECT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"state", required_argument, NULL, OPT_STATE},
    {"smtp", required_argument, NULL, OPT_SMTP},
    {"from", required_argument, NULL, OPT_FROM},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"once", no_argument, NULL, OPT_ONCE},
    {"smtp-require-tls", no_argument, NULL, OPT_SMTP_REQUIRE_TLS},
    {"smtp-ca", required_argument, NULL, OPT_SMTP_CA},
    {"smtp-insecure", no_argument, NULL, OPT_SMTP_INSECURE},
    {"smtp-password-file", required_argument, NULL, OPT_SMTP_PASSWORD_FILE},
    {"smtp-timeout", required_argument, NULL, OPT_SMTP_TIMEOUT},
    {"enroll", required_argument, NULL, OPT_ENROLL},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"renew", required_argument, NULL, OPT_RENEW},
    {"crl-url", required_argument, NULL, OPT_CRL_URL},
    {"crl-refresh", required_argument, NULL, OPT_CRL_REFRESH},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0}};

/* Options only sync takes. */
static int sync_only(int opt)
{
    return opt >= OPT_STATE && opt <= OPT_SMTP_TIMEOUT;
}

static int parse_num(const char *opt, const char *text, long min, long max,
                     long *out)
{
    if (twu_parse_long(text, min, max, out) < 0) {
        fprintf(stderr, "mail-server: %s '%s' is not a number from %ld to %ld\n",
                opt, text, min, max);
        return -1;
    }
    return 0;
}

static int missing(const char *cmd, const char *opt)
{
    fprintf(stderr, "mail-server: %s needs %s (see `mail-server %s "
            "--help`)\n", cmd, opt, cmd);
    return -1;
}

static void defaults(mail_options *o, int is_sync)
{
    memset(o, 0, sizeof(*o));
    o->url = is_sync ? NULL : "https://localhost:3100/";
    o->tls.connect_timeout_ms = 10000;
    o->tls.timeout_ms = 60000;
    o->tls.retries = 3;
    o->smtp_timeout_ms = 60000;
    o->interval = 60;
    o->crl_refresh = 300;
}

/* One argument vector (the config file's, or the command line) on top of
 * what is set: 0, 1 --help shown, -1 usage error (already said). */
static int parse_args(mail_options *o, int is_sync, int argc, char **argv,
                      int *interval_given)
{
    const char *cmd = is_sync ? "sync" : "fetch";
    long v;
    int c;

    opterr = 0;
    optind = 0; /* glibc: start again, also on a second vector */
    while ((c = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
        if (!is_sync && sync_only(c)) {
            fprintf(stderr, "mail-server: %s is an option of sync, not of "
                    "fetch\n", argv[optind - 1]);
            return -1;
        }
        switch (c) {
        case OPT_CERT: o->tls.cert = optarg; break;
        case OPT_KEY: o->tls.key = optarg; break;
        case OPT_CA: o->tls.ca = optarg; break;
        case OPT_CRL: o->tls.crl = optarg; break;
        case OPT_PASSPHRASE_FILE: o->tls.passphrase_file = optarg; break;
        case OPT_URL: o->url = optarg; break;
        case OPT_STATE: o->state = optarg; break;
        case OPT_SMTP: o->smtp = optarg; break;
        case OPT_FROM: o->from = optarg; break;
        case OPT_SMTP_CA: o->smtp_ca = optarg; break;
        case OPT_ONCE: o->once = 1; break;
        case OPT_SMTP_REQUIRE_TLS: o->smtp_require_tls = 1; break;
        case OPT_SMTP_INSECURE: o->smtp_insecure = 1; break;
        case OPT_SMTP_PASSWORD_FILE: o->smtp_password_file = optarg; break;
        case OPT_ENROLL: o->enroll = optarg; break;
        case OPT_TOKEN_FILE: o->token_file = optarg; break;
        case OPT_RENEW: o->renew = optarg; break;
        case OPT_CRL_URL: o->crl_url = optarg; break;
        case OPT_CRL_REFRESH: {
            long long secs;

            if (twu_parse_duration(optarg, 1, 86400, &secs) < 0) {
                fprintf(stderr, "mail-server: --crl-refresh '%s' is not a "
                        "duration from 1s to 24h, e.g. 30s, 5m, 1h\n", optarg);
                return -1;
            }
            o->crl_refresh = (long)secs;
            break;
        }
        case OPT_EXPECT:
            if (o->tls.nexpect == MAIL_MAX_EXPECT) {
                fprintf(stderr, "mail-server: more than %d --expect-server "
                        "rules\n", MAIL_MAX_EXPECT);
                return -1;
            }
            o->tls.expect[o->tls.nexpect++] = optarg;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_num("--connect-timeout", optarg, 1, 3600, &v) < 0)
                return -1;
            o->tls.connect_timeout_ms = v * 1000;
            break;
        case OPT_TIMEOUT:
            if (parse_num("--timeout", optarg, 1, 86400, &v) < 0)
                return -1;
            o->tls.timeout_ms = v * 1000;
            break;
        case OPT_RETRIES:
            if (parse_num("--retries", optarg, 0, 100, &v) < 0)
                return -1;
            o->tls.retries = (int)v;
            break;
        case OPT_SMTP_TIMEOUT:
            if (parse_num("--smtp-timeout", optarg, 1, 86400, &v) < 0)
                return -1;
            o->smtp_timeout_ms = v * 1000;
            break;
        case OPT_INTERVAL:
            if (parse_num("--interval", optarg, 1, 7 * 86400, &v) < 0)
                return -1;
            o->interval = v;
            *interval_given = 1;
            break;
        case OPT_CONFIG: break; /* read before (twu_conf_find) */
        case OPT_LOG_LEVEL:
            if ((mail_log_level = twu_log_level_parse(optarg)) < 0) {
                fprintf(stderr, "mail-server: --log-level '%s' is not error, "
                        "warn, info or debug\n", optarg);
                return -1;
            }
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "mail-server: --log-format '%s' is not text "
                        "or json\n", optarg);
                return -1;
            }
            mail_log_json = strcmp(optarg, "json") == 0;
            break;
        case OPT_HELP:
            fputs(is_sync ? usage_sync : usage_fetch, stdout);
            return 1;
        case ':':
            fprintf(stderr, "mail-server: %s needs a value\n",
                    argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "mail-server: unknown option '%s' for %s (see "
                    "`mail-server %s --help`)\n", argv[optind - 1], cmd, cmd);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mail-server: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    return 0;
}

/* 0 parsed, 1 --help shown, -1 usage error (already said). */
static int parse(mail_options *o, int is_sync, int argc, char **argv)
{
    const char *cmd = is_sync ? "sync" : "fetch";
    const char *path = twu_conf_find(argc, argv);
    int rc, interval_given = 0;
    tw_err err;

    defaults(o, is_sync);
    if (path != NULL) {
        if (twu_conf_load(&o->conf, path, argv[0], long_options, &err) < 0) {
            fprintf(stderr, "mail-server: --config %s\n", err.msg);
            return -1;
        }
        if ((rc = parse_args(o, is_sync, o->conf.argc, o->conf.argv,
                             &interval_given)) != 0) {
            if (rc < 0)
                fprintf(stderr, "mail-server: (at %s:%d)\n", path,
                        twu_conf_line(&o->conf, optind - 1));
            return -1;
        }
    }
    if ((rc = parse_args(o, is_sync, argc, argv, &interval_given)) != 0)
        return rc;
    if (o->tls.cert == NULL)
        return missing(cmd, "--cert FILE");
    if (o->tls.key == NULL)
        return missing(cmd, "--key FILE");
    if (o->tls.ca == NULL)
        return missing(cmd, "--ca FILE");
    if (mail_renewal_check(o) < 0)
        return -1;
    if (!is_sync)
        return 0;
    if (o->url == NULL)
        return missing(cmd, "--url URL");
    if (o->state == NULL)
        return missing(cmd, "--state FILE");
    if (o->smtp == NULL)
        return missing(cmd, "--smtp URL");
    if (o->from == NULL)
        return missing(cmd, "--from ADDR");
    if (o->once && interval_given) {
        fprintf(stderr, "mail-server: --once and --interval exclude each "
                "other\n");
        return -1;
    }
    if (o->smtp_insecure && o->smtp_ca != NULL) {
        fprintf(stderr, "mail-server: --smtp-insecure and --smtp-ca exclude "
                "each other\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    mail_options o;
    int is_sync, rc;

    if (argc < 2) {
        fputs(usage_main, stderr);
        return MAIL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_main, stdout);
        return MAIL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mail-server %s\n", TW_VERSION);
        return MAIL_EXIT_OK;
    }
    if (strcmp(argv[1], "fetch") != 0 && strcmp(argv[1], "sync") != 0) {
        fprintf(stderr, "mail-server: unknown command '%s': fetch or sync "
                "(see `mail-server --help`)\n", argv[1]);
        return MAIL_EXIT_USAGE;
    }
    is_sync = strcmp(argv[1], "sync") == 0;
    rc = parse(&o, is_sync, argc - 1, argv + 1);
    if (rc != 0) {
        twu_conf_free(&o.conf);
        return rc > 0 ? MAIL_EXIT_OK : MAIL_EXIT_USAGE;
    }
    /* A peer that goes away must be an error we report, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "mail-server: libcurl failed to start\n");
        return MAIL_EXIT_OTHER;
    }
    rc = is_sync ? mail_sync(&o) : mail_fetch(&o);
    curl_global_cleanup();
    twu_conf_free(&o.conf);
    return rc;
}
