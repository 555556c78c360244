/*
 * ca.h - what twoway-ca's commands share: exit codes, option helpers, the
 * CA directory and its SQLite index.
 */
#ifndef TW_CA_H
#define TW_CA_H

#include "util.h"
#include "twoway_pki.h"

#include "sql.h"

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
/* Parse a DURATION option (90s, 15m, 24h, 30d) within [min_s, max_s];
 * -1 with a message naming `option` on bad input. */
long long ca_parse_duration(const char *cmd, const char *option,
                            const char *text, long long min_s, long long max_s);
/* Bounds of --lifetime (issue, sign, token): TW_LIFETIME_MIN to 100 years. */
#define CA_LIFETIME_MIN TW_LIFETIME_MIN
#define CA_LIFETIME_MAX (36500LL * 86400)
/* Read the first line of a passphrase file (newline stripped); wipe with
 * ca_passphrase_free.  NULL with a message on failure. */
char *ca_passphrase_read(const char *cmd, const char *path);
/* Ask on the terminal (no echo); NULL when there is no terminal. */
char *ca_passphrase_ask(const char *prompt);
void ca_passphrase_free(char *pass);

/* An open CA directory. */
typedef struct ca_dir {
    char *dir, *cert_path, *key_path;
    char *db_path;   /* the index as messages name it: DIR/ca.db, or
                        "postgresql host=... dbname=..." */
    char *db_target; /* what sql_open takes: DIR/ca.db or the URL */
    tw_cert *cert;
    tw_key *key; /* NULL unless opened for signing */
    sql_db *db;
} ca_dir;

#define CA_OPEN_SIGN 0x1 /* load (and decrypt) the CA key */
/* Open the CA in `dir`; `passfile` may be NULL.  Returns an exit code. */
int ca_dir_open(ca_dir *ca, const char *cmd, const char *dir,
                const char *passfile, int flags);
void ca_dir_close(ca_dir *ca);
/* The file that names an index kept in PostgreSQL, in a CA directory. */
#define CA_INDEX_CONF "index.conf"
/* What an index in PostgreSQL notifies at each revocation (the payload is
 * the serial, upper-case hex), in the transaction that records it. */
#define CA_REVOCATION_CHANNEL "twoway_revocations"
/* The URL DIR/index.conf names ("database = URL"): 1 with *url (malloc'd),
 * 0 when there is no such file (the index is DIR/ca.db), -1 with `err`. */
int ca_index_url(const char *dir, char **url, tw_err *err);
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
int cadb_create(sql_db *db, tw_err *err);
/* Set the busy timeout and check that `path` is a twoway CA index: a busy
 * index is TW_ERR_BLOCKED, a bad TWOWAY_CA_BUSY_TIMEOUT TW_ERR_USAGE,
 * anything else that fails TW_ERR_INPUT. */
int cadb_check(sql_db *db, const char *path, tw_err *err);
int cadb_begin(sql_db *db, const char *path, tw_err *err);
int cadb_commit(sql_db *db, const char *path, tw_err *err);
/* After a failed call on the index at `path`: set *err to "PATH is busy"
 * (TW_ERR_BLOCKED) when it was busy, else "WHAT PATH: sqlite's message"
 * (TW_ERR_IO).  Returns -1. */
int cadb_err(sql_db *db, const char *path, const char *what, tw_err *err);
void cadb_rollback(sql_db *db);
/* 1 when the serial is already in the index, 0 when not, -1 on error. */
int cadb_serial_exists(sql_db *db, const char *serial, tw_err *err);
/* Record an issued certificate (inside a transaction). */
int cadb_record(sql_db *db, const tw_cert *cert, tw_err *err);
/* Next CRL number (inside a transaction). */
int cadb_next_crl_number(sql_db *db, uint64_t *number, tw_err *err);
/* The schema this twoway-ca writes.  Schema 1 (twoway 0.1: meta, certs)
 * gains the tokens table and certs.replaces in schema 2; cadb_check
 * upgrades a schema 1 index in place, in one transaction. */
#define CADB_SCHEMA 2
/* Record that the certificate `serial` (just recorded, same transaction)
 * renews `replaces`.  0, or -1 with `err`. */
int cadb_set_replaces(sql_db *db, const char *serial, const char *replaces,
                      tw_err *err);
/* What the index says of `serial` (upper-case hex, as tw_identity_serial
 * gives it): *revoked (1 when revoked) and *not_after.  1 when found, 0
 * when not in the index, -1 on error (`err`).  In or out of a
 * transaction. */
int cadb_cert_status(sql_db *db, const char *serial, int *revoked,
                     time_t *not_after, tw_err *err);

/* ---- one-time enrolment tokens (token.c) ---- */
/* A token is 256 random bits in base64url without padding: 43 characters.
 * The index keeps only the SHA-256 (hex) of those characters, and what the
 * token is bound to. */
#define CA_TOKEN_LEN 43
#define CA_TOKEN_TTL_DEFAULT 3600         /* --ttl: 1h */
#define CA_TOKEN_TTL_MAX (30LL * 86400)   /* 30d */

/* A token as the index holds it.  Strings are malloc'd; ca_token_clear
 * frees them (and leaves the struct zeroed, so clearing twice is safe). */
typedef struct ca_token {
    char *subject;     /* the -subj text it is for */
    char *sans;        /* "DNS:a,IP:b,URI:u,email:e" (ca_names_from_sans) */
    int purposes;      /* TW_PURPOSE_SERVER and/or TW_PURPOSE_CLIENT */
    long long lifetime; /* seconds; 0: the server's default */
    time_t created_at, expires_at;
    char hash[65];     /* SHA-256 of the token, lower-case hex */
} ca_token;
void ca_token_clear(ca_token *t);

/* Draw a new token into `text` (CA_TOKEN_LEN + 1 bytes) and its hash into
 * `hash` (65 bytes).  0, or -1 with `err` (the random source failed). */
int ca_token_new(char *text, char hash[65], tw_err *err);
/* SHA-256 of `token` as lower-case hex into `hash` (65 bytes). */
int ca_token_hash(const char *token, char hash[65], tw_err *err);
/* Store a token (t->hash and what it is bound to; inside a transaction or
 * not).  0, or -1 with `err`. */
int cadb_token_add(sql_db *db, const char *path, const ca_token *t,
                   tw_err *err);

enum ca_token_result {
    CA_TOKEN_OK,      /* known, unused, unexpired: now marked used */
    CA_TOKEN_UNKNOWN, /* no such token (never given, or from another CA) */
    CA_TOKEN_USED,    /* already gave its certificate */
    CA_TOKEN_EXPIRED  /* its --ttl passed unused */
};
/*
 * Inside a transaction the caller opened with cadb_begin: hash `token`,
 * look it up, and when it is usable at `now` mark it used (used_at = now)
 * and fill `out` (cleared first; ca_token_clear it in every case).
 * Returns an enum ca_token_result (>= 0), or -1 with `err`.  One token
 * gives one certificate: the BEGIN IMMEDIATE transaction serialises takes,
 * so of two concurrent requests the second sees CA_TOKEN_USED once the
 * first commits.  Rolling back the transaction leaves the token unused.
 * A used token that is also expired is CA_TOKEN_USED.
 */
int cadb_token_take(sql_db *db, const char *path, const char *token,
                    time_t now, ca_token *out, tw_err *err);
/* Record which certificate the token with `hash` gave (same transaction
 * as its take).  0, or -1 with `err`. */
int cadb_token_set_serial(sql_db *db, const char *hash, const char *serial,
                          tw_err *err);

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
/* The names as "DNS:a,IP:b,URI:u,email:e", in that order of types (the
 * form ca_sans_text gives a certificate's); IP addresses in their
 * canonical text.  A value holding a ',' is TW_ERR_USAGE (the form has
 * no escape).  malloc'd; NULL with `err`. */
char *ca_names_text(const ca_names *n, tw_err *err);
/* Parse that text back (as a token stores it): `n` is filled with values
 * that point into *storage, which the caller frees with twu_free (also
 * after a failure).  "" is no names.  0, or -1 on text of another form
 * or more than CA_NAMES_MAX names. */
int ca_names_from_sans(ca_names *n, const char *sans, char **storage);

/* The options that issue and sign share, and the template made from them
 * (certopts.c).  The strings point into argv. */
typedef struct ca_certopts {
    const char *ca, *out, *passfile;
    const char *subject, *keytype; /* issue */
    const char *csr;               /* sign */
    int purposes, days, force;
    long long lifetime; /* --lifetime in seconds; 0: --days decides */
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
    {"lifetime", required_argument, NULL, 'L'},                               \
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
 * the table has; --days and --lifetime exclude each other.  Returns CA_EXIT_OK, CA_EXIT_USAGE after a message, or -1
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

/* ---- revocation (revoke.c) ---- */
/* What ca_revoke_serial returns besides 0 (revoked) and -1 (error). */
enum {
    CA_REVOKE_NOT_FOUND = -2, /* the serial is not in the index (404) */
    CA_REVOKE_ALREADY = -3    /* it was revoked before (409) */
};
/*
 * Revoke `serial` (hex as `list` shows it; "0x", ':' and lower case are
 * accepted and normalised) with an RFC 5280 CRLReason code (-1 or 0:
 * unspecified), in its own transaction on ca->db.  0 when revoked;
 * CA_REVOKE_NOT_FOUND or CA_REVOKE_ALREADY with a sentence in `err`
 * (TW_ERR_INPUT) naming the serial (and, when already revoked, the
 * subject and the date); -1 with `err` otherwise: TW_ERR_USAGE for text
 * that is not a serial or a reason the CRL cannot carry, TW_ERR_BLOCKED
 * for a busy index, TW_ERR_IO.  `subject` (may be NULL) receives the
 * certificate's subject on success, truncated to `len`.  Publishing the
 * revocation (a CRL) is the caller's.
 */
int ca_revoke_serial(ca_dir *ca, const char *serial, int reason, tw_err *err);
int ca_revoke_serial_subject(ca_dir *ca, const char *serial, int reason,
                             char *subject, size_t len, tw_err *err);
/* Normalise a serial to the index's form, tw_identity_serial's: upper-case
 * hex in whole bytes ("0x", ':', lower case and any leading zeros
 * accepted: "0x5", "05" and "0005" are all "05").  0, or -1 when it is
 * not hex or does not fit `len`. */
int ca_serial_normalise(const char *in, char *out, size_t len);

/* ---- CRLs (crlgen.c) ---- */
/*
 * Make a CRL of every revocation in the index, signed with the CA key
 * (opened with CA_OPEN_SIGN), valid `validity_seconds` from now (libtwoway
 * signs CRLs in whole days: the validity is rounded up to days, 1..3650).
 * Takes its own transaction on ca->db to draw the next CRL number, and
 * commits only once the CRL is signed, so a failure uses no number.
 * *pem (malloc'd, NUL-terminated; free with twu_free) and *pem_len get the
 * CRL, *number its CRL number, *next_update its nextUpdate (each of these
 * three may be NULL).  Writing it anywhere is the caller's.  0, or -1 with
 * `err`.  ca_crl_make_counted also says how many certificates it lists.
 */
int ca_crl_make(ca_dir *ca, long long validity_seconds, char **pem,
                size_t *pem_len, uint64_t *number, time_t *next_update,
                tw_err *err);
int ca_crl_make_counted(ca_dir *ca, long long validity_seconds, char **pem,
                        size_t *pem_len, uint64_t *number,
                        time_t *next_update, size_t *revoked, tw_err *err);

/* ---- the audit log (audit.c) ---- */
/* One issuance, renewal or revocation.  Any field but `action` may be
 * NULL (written as null). */
typedef struct ca_audit_entry {
    const char *action; /* issue, sign, enroll, renew, revoke */
    const char *serial, *subject;
    const char *by;     /* "cli:USER", "token:HASHPREFIX", "client:SERIAL" */
    const char *peer;   /* the client's address, NULL for the CLI */
} ca_audit_entry;
/*
 * Append one JSON line {"time": RFC 3339 UTC, "action", "serial",
 * "subject", "by", "peer"} to the log at `path`: opened with O_APPEND
 * (created 0600), the line in one write(2), then fsync, so that lines of
 * several processes never interleave and a line written survives a crash.
 * When the index is in PostgreSQL (`db` connected there; NULL or an
 * SQLite index: the file only), the line also goes into its audit table,
 * which every CA process on every machine shares.
 * 0, or -1 with `err` (TW_ERR_IO naming the file or the database).
 */
int ca_audit(const char *path, sql_db *db, const ca_audit_entry *e,
             tw_err *err);
/* The default log, DIR/audit.log (malloc'd; NULL when out of memory). */
char *ca_audit_path(const ca_dir *ca);
/* What the CLI's issue, sign and revoke append after their commit:
 * by "cli:USER" (the effective user's name, else "cli:uid N"), peer null.
 * On failure prints "twoway-ca CMD: certificate SERIAL is recorded in the
 * index but not in the audit log: why" (or "the revocation of SERIAL ...")
 * and returns CA_EXIT_FAIL; else CA_EXIT_OK. */
int ca_audit_cli(const ca_dir *ca, const char *cmd, const char *action,
                 const char *serial, const char *subject);

/* Commands: argc/argv start at the command name. */
int cmd_init(int argc, char **argv);
int cmd_issue(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
