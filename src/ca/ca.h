/*
 * ca.h - what twoway-ca's commands share: exit codes, option helpers, the
 * CA directory and its SQLite index.
 */
#ifndef TW_CA_H
#define TW_CA_H

#include "util.h"
#include "twoway_pki.h"

#include <sqlite3.h>

/* Exit codes, documented in twoway-ca(1). */
enum {
    CA_EXIT_OK = 0,
    CA_EXIT_FAIL = 1,    /* the operation failed */
    CA_EXIT_USAGE = 2,   /* bad command line */
    CA_EXIT_REFUSED = 3, /* verify: the certificate would be refused */
    CA_EXIT_BUSY = 4     /* the CA index is held by another command: retry */
};

/* Print "twoway-ca CMD: message" on stderr. */
void ca_fail(const char *cmd, const char *fmt, ...) TWU_PRINTF(2, 3);
/* Print the error and return the exit code its class calls for
 * (TW_ERR_USAGE: CA_EXIT_USAGE, TW_ERR_BLOCKED: CA_EXIT_BUSY). */
int ca_fail_err(const char *cmd, const tw_err *err);

/* getopt_long returned '?' or ':': say which option was wrong; returns
 * CA_EXIT_USAGE. */
int ca_bad_option(const char *cmd, int c, char **argv);
/* Print `usage` to stdout (for --help) and return CA_EXIT_OK. */
int ca_help(const char *usage);
/* Parse --days: 1..max; -1 with a message on bad input. */
int ca_parse_days(const char *cmd, const char *text, int max);
/* Read the first line of a passphrase file (newline stripped); wipe with
 * ca_passphrase_free.  NULL with a message on failure. */
char *ca_passphrase_read(const char *cmd, const char *path);
/* Ask on the terminal (no echo); NULL when there is no terminal. */
char *ca_passphrase_ask(const char *prompt);
void ca_passphrase_free(char *pass);

/* An open CA directory. */
typedef struct ca_dir {
    char *dir, *cert_path, *key_path, *db_path;
    tw_cert *cert;
    tw_key *key; /* NULL unless opened for signing */
    sqlite3 *db;
} ca_dir;

#define CA_OPEN_SIGN 0x1 /* load (and decrypt) the CA key */
/* Open the CA in `dir`; `passfile` may be NULL.  Returns an exit code. */
int ca_dir_open(ca_dir *ca, const char *cmd, const char *dir,
                const char *passfile, int flags);
void ca_dir_close(ca_dir *ca);
/* mkdir -p: create `path` and missing parents with `mode`; 0 or -1/errno. */
int ca_mkdirs(const char *path, unsigned mode);
/* Paths DIR/name, malloc'd. */
char *ca_path_join(const char *dir, const char *name);

/* ---- the index (cadb.c) ---- */
/* How long a command waits for an index another command holds before it
 * gives up with "PATH is busy" (TW_ERR_BLOCKED).  Long enough for any one
 * twoway-ca transaction, short enough that a stuck holder is reported.
 * The environment variable sets another wait, in seconds, for machines
 * where transactions are slower (a slow disk, many commands at once, a run
 * under Valgrind); 0 fails at once. */
#define CADB_BUSY_TIMEOUT_S 5
#define CADB_BUSY_TIMEOUT_MAX 3600
#define CADB_BUSY_TIMEOUT_ENV "TWOWAY_CA_BUSY_TIMEOUT"
int cadb_create(sqlite3 *db, tw_err *err);
/* Set the busy timeout and check that `path` is a twoway CA index: a busy
 * index is TW_ERR_BLOCKED, a bad TWOWAY_CA_BUSY_TIMEOUT TW_ERR_USAGE,
 * anything else that fails TW_ERR_INPUT. */
int cadb_check(sqlite3 *db, const char *path, tw_err *err);
int cadb_begin(sqlite3 *db, const char *path, tw_err *err);
int cadb_commit(sqlite3 *db, const char *path, tw_err *err);
/* After a failed call on the index at `path`: set *err to "PATH is busy"
 * (TW_ERR_BLOCKED) when it was busy, else "WHAT PATH: sqlite's message"
 * (TW_ERR_IO).  Returns -1. */
int cadb_err(sqlite3 *db, const char *path, const char *what, tw_err *err);
void cadb_rollback(sqlite3 *db);
/* 1 when the serial is already in the index, 0 when not, -1 on error. */
int cadb_serial_exists(sqlite3 *db, const char *serial, tw_err *err);
/* Record an issued certificate (inside a transaction). */
int cadb_record(sqlite3 *db, const tw_cert *cert, tw_err *err);
/* Next CRL number (inside a transaction). */
int cadb_next_crl_number(sqlite3 *db, uint64_t *number, tw_err *err);

/* Inside a transaction (cadb_begin): draw a serial that is not in the
 * index, sign the template with the CA key, and record the certificate.
 * The caller stages its files, commits, then gives the files their names,
 * so a crash never leaves a certificate on disk that the index lacks. */
tw_cert *ca_sign_record(ca_dir *ca, tw_certgen *g, tw_err *err);
/* A command that writes the index failed with `err`: roll back when its
 * transaction is still open (`in_tx`), print the message and return the
 * exit code for its class. */
int ca_fail_tx(ca_dir *ca, const char *cmd, int in_tx, const tw_err *err);

/* Names asked for on the command line (names.c). */
#define CA_NAMES_MAX 64
typedef struct ca_names {
    enum tw_san_type type[CA_NAMES_MAX];
    const char *value[CA_NAMES_MAX];
    size_t count;
} ca_names;
/* -1 when there are too many. */
int ca_names_add(ca_names *n, enum tw_san_type type, const char *value);
/* Add the names to the template and, for a server certificate without any,
 * the CN as a DNS name.  Bad names are TW_ERR_USAGE. */
int ca_names_apply(const ca_names *n, tw_certgen *g, int purposes, tw_err *err);

/* The options that issue and sign share, and the template made from them
 * (certopts.c).  The strings point into argv. */
typedef struct ca_certopts {
    const char *ca, *out, *passfile;
    const char *subject, *keytype; /* issue */
    const char *csr;               /* sign */
    int purposes, days, force;
    ca_names names;
} ca_certopts;

/* getopt_long entries of the shared options.  A command's table holds these
 * and its own, and no others: which abbreviations getopt_long accepts
 * depends on the whole table. */
#define CA_CERTOPTS_OPTIONS                                                   \
    {"ca", required_argument, NULL, 'c'},                                     \
    {"out", required_argument, NULL, 'o'},                                    \
    {"server", no_argument, NULL, 'S'},                                       \
    {"client", no_argument, NULL, 'C'},                                       \
    {"dns", required_argument, NULL, 'D'},                                    \
    {"ip", required_argument, NULL, 'I'},                                     \
    {"uri", required_argument, NULL, 'U'},                                    \
    {"email", required_argument, NULL, 'E'},                                  \
    {"days", required_argument, NULL, 'd'},                                   \
    {"passphrase-file", required_argument, NULL, 'p'},                        \
    {"force", no_argument, NULL, 'f'},                                        \
    {"help", no_argument, NULL, 'h'}
/* and the command's own: */
#define CA_CERTOPTS_SUBJECT {"subject", required_argument, NULL, 's'}
#define CA_CERTOPTS_KEY {"key", required_argument, NULL, 'k'}
#define CA_CERTOPTS_CSR {"csr", required_argument, NULL, 'r'}

/* How issue or sign reads its command line. */
struct option;
typedef struct ca_certcmd {
    const char *name;          /* "issue" or "sign" */
    const char *usage;         /* printed for --help */
    const struct option *opts; /* its getopt_long table */
    const char *needs;         /* said when a required option is missing */
} ca_certcmd;

/* Parse the command line into `o` (days 365 and key ec-p256 unless given).
 * --ca, --out and a purpose are required, and --subject or --csr, whichever
 * the table has.  Returns CA_EXIT_OK, CA_EXIT_USAGE after a message, or -1
 * after printing the usage for --help. */
int ca_certopts_parse(ca_certopts *o, const ca_certcmd *cmd, int argc,
                      char **argv);
/* The template from the options alone, so that their errors come before
 * the CA is touched: --subject (issue) or the CSR's subject, key and names
 * (sign), then the purposes, validity and names asked for.  NULL with a
 * message and the exit code in *rc on failure. */
tw_certgen *ca_certopts_template(const ca_certopts *o, const char *cmd,
                                 int *rc);

/* A certificate's SANs as "DNS:a,IP:b" (malloc'd) and purposes as text. */
char *ca_sans_text(const tw_identity *id);
const char *ca_purpose_text(int purposes);
/* RFC 3339 UTC time into buf (>= 21 bytes). */
void ca_time_text(time_t t, char *buf, size_t len);

/* Commands: argc/argv start at the command name. */
int cmd_init(int argc, char **argv);
int cmd_issue(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);

#endif
