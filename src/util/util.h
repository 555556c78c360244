/*
 * util.h - twoway's internal utility layer (src/util): what libtwoway and
 * the programs share below the library's public API.
 *
 *   alloc.c  the one allocation wrapper (tests fail each allocation in turn)
 *   buf.c    a growable text buffer with a hard maximum (curl's dynbuf)
 *   err.c    filling a tw_err (class, reason, sentence)
 *   file.c   bounded reads, atomic and staged writes, passphrase files
 *   parse.c  numbers, sizes and durations, strictly; hex
 *   conf.c   --config FILE: name = value lines as an argument vector
 *   logline.c  a line of the operational log: level, text or JSON
 *
 * Nothing here is exported from libtwoway.so: the library is built with
 * hidden visibility and only `tw_` names are public.
 */
#ifndef TW_UTIL_H
#define TW_UTIL_H

#include "twoway.h" /* tw_err, the error classes and reasons */

#include <stddef.h>

#define TWU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TWU_MUST_CHECK __attribute__((warn_unused_result))

/* ------------------------------------------------------------ allocation */

/* Every allocation of the library and the programs' core paths goes
 * through these, so that tests can make the n-th one fail
 * (twu_alloc_fail_after) and check that nothing leaks or crashes. */
void *twu_malloc(size_t n);
void *twu_calloc(size_t count, size_t size);
void *twu_realloc(void *p, size_t n);
char *twu_strdup(const char *s);
char *twu_strndup(const char *s, size_t n);
void twu_free(void *p);
/* Make the allocation after `n` more succeed fail; -1 turns that off. */
void twu_alloc_fail_after(long n);

/* ---------------------------------------------------------------- errors */

/* Set err (when not NULL); returns -1 so callers can `return twu_err(...)`. */
int twu_err(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
    TWU_PRINTF(3, 4);
/* Same, with a reason. */
int twu_err_reason(tw_err *err, enum tw_error_class cls, enum tw_reason reason,
                   const char *fmt, ...) TWU_PRINTF(4, 5);
/* Same, appending ": " and OpenSSL's newest queued error, then clearing the
 * queue. */
int twu_err_ssl(tw_err *err, enum tw_error_class cls, const char *fmt, ...)
    TWU_PRINTF(3, 4);
/* Out of memory. */
int twu_err_nomem(tw_err *err);

/* Jump to the function's one `err:` exit when a call fails (after s2n-tls's
 * safety macros). */
#define TWU_GUARD(x)                                                           \
    do {                                                                      \
        if ((x) < 0)                                                          \
            goto err;                                                         \
    } while (0)
#define TWU_GUARD_PTR(x)                                                       \
    do {                                                                      \
        if ((x) == NULL)                                                      \
            goto err;                                                         \
    } while (0)
/* Check a condition; when false, set the error and jump to err. */
#define TWU_ENSURE(cond, ...)                                                  \
    do {                                                                      \
        if (!(cond)) {                                                        \
            twu_err(__VA_ARGS__);                                             \
            goto err;                                                         \
        }                                                                     \
    } while (0)

/* ----------------------------------------------------------------- files */

/* Read a whole file (at most `max` bytes, else TW_ERR_INPUT). The buffer is
 * NUL-terminated; *len excludes the NUL.  Free with twu_free (or
 * twu_free_secret for key material). */
char *twu_read_file(const char *path, size_t max, size_t *len, tw_err *err);
/* Wipe then free. */
void twu_free_secret(void *p, size_t len);
/* The secret in the first line of `path`, given by the command-line
 * `option` (named in the errors, e.g. "--passphrase-file"); free with
 * twu_free_passphrase.  NULL with *err set when unreadable or empty. */
#define TWU_PASSPHRASE_MAX 1024
char *twu_read_passphrase_file(const char *path, const char *option,
                               tw_err *err);
void twu_free_passphrase(char *pass);
/* Write `data` to `path` atomically with `mode`: temp file created with that
 * mode in the same directory, write, fsync, rename, fsync the directory. */
#define TWU_WRITE_NO_REPLACE 0x1 /* fail (EEXIST) rather than replace */
int twu_write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, int flags, tw_err *err);
/* Two-phase writing, for callers that must record something between
 * "the data is safely on disk" and "the file appears under its name". */
typedef struct twu_staged {
    char *tmp, *dir;
    const char *path; /* not owned: must outlive the stage */
    int flags;
} twu_staged;
int twu_stage_file(twu_staged *s, const char *path, const void *data,
                   size_t len, unsigned mode, int flags, tw_err *err);
/* Give the staged file its name (and fsync the directory); frees the stage
 * whatever happens. */
int twu_stage_commit(twu_staged *s, tw_err *err);
/* Remove the staged data; safe to call twice. */
void twu_stage_abort(twu_staged *s);
/* rename(2), then fsync the directory of `to`: the new name survives a
 * crash once this returns. */
int twu_rename(const char *from, const char *to, tw_err *err) TWU_MUST_CHECK;
/* The directory part of `path` ("." when none), malloc'd. */
char *twu_dirname(const char *path);

/* ------------------------------------------------------- operational log */

/* Levels of --log-level (logline.c); 0 in an option means info. */
enum { TWU_LOG_ERROR = 1, TWU_LOG_WARN, TWU_LOG_INFO, TWU_LOG_DEBUG };
/* "error", "warn" (or "warning"), "info", "debug"; -1 for anything else. */
int twu_log_level_parse(const char *name);
/* A line's level from its first word ("error: ", "warning: ", "debug: ";
 * info otherwise) and the message after that word. */
int twu_log_level_of(const char *text, const char **message);
/* The line for `text` as the program worded it, in text ("TIME PROGRAM:
 * TEXT") or JSON, ending in '\n': 1, or 0 when its level is above
 * `max_level` (not to be written). */
int twu_log_line(char *buf, size_t len, const char *program, int json,
                 int max_level, const char *text);

/* ---------------------------------------------------------- config files */

/* `--config FILE`: long options as `name = value` lines (conf.c).  The
 * file becomes an argument vector for the program's getopt_long parser:
 * argv[0] is `prog`, then "--name" [value] per line, in order. */
struct option;
typedef struct twu_conf {
    const char *path;
    int argc;
    char **argv;
    int *line;  /* the file's line of each argument */
    char *text; /* what argv points into */
} twu_conf;
/* The FILE of --config FILE or --config=FILE in argv ("" when the value is
 * missing), or NULL. */
const char *twu_conf_find(int argc, char **argv);
/* Read `path` against the program's options; an unknown name, a missing
 * value, a bad yes/no, or config/help/version is TW_ERR_USAGE "FILE:LINE: ...". */
int twu_conf_load(twu_conf *c, const char *path, const char *prog,
                  const struct option *opts, tw_err *err) TWU_MUST_CHECK;
/* The line of argument `argi` (0 for none). */
int twu_conf_line(const twu_conf *c, int argi);
void twu_conf_free(twu_conf *c);
/* 1 when a --config file is being read again: this process has started a
 * twu_conf_load before the latest one (the start's), so this is a reload
 * (SIGHUP, or the file changed).  A reload's errors go to the log and
 * leave the old configuration in place: a usage error's "see `PROG
 * --help`" line is for a command typed at start, and is left out then. */
int twu_conf_reloading(void);

/* ---------------------------------------------------------------- buffer */

/* What a buffer may hold when its `max` is 0. */
#define TWU_BUF_DEFAULT_MAX (4u * 1024 * 1024)

/*
 * A growing byte buffer, always NUL-terminated once it holds anything,
 * that refuses to grow past `max` bytes (0: TWU_BUF_DEFAULT_MAX).  Zero
 * it to start ({0}); twu_buf_free gives the memory back and leaves it
 * empty and reusable.
 */
typedef struct twu_buf {
    char *data;
    size_t len, cap, max;
} twu_buf;

/* Room for `extra` more bytes and the NUL; -1 past max or out of memory
 * (the buffer is unchanged). */
int twu_buf_reserve(twu_buf *b, size_t extra) TWU_MUST_CHECK;
/* Append; -1 (nothing appended) past max or out of memory. */
int twu_buf_append(twu_buf *b, const void *data, size_t len);
int twu_buf_printf(twu_buf *b, const char *fmt, ...) TWU_PRINTF(2, 3);
/* Forget the contents, keep the memory. */
void twu_buf_reset(twu_buf *b);
void twu_buf_free(twu_buf *b);

/* --------------------------------------------------------------- parsing */

/* A size in bytes: digits, then nothing or B, K/KiB/k, M/MiB, G/GiB
 * (powers of 1024), at most `max`.  0, or -1 when the text is anything
 * else (no sign, no space, no fraction). */
int twu_parse_size(const char *text, unsigned long long max,
                   unsigned long long *out) TWU_MUST_CHECK;
/* A duration: digits and one unit, s, m, h or d ("90s", "15m", "24h",
 * "30d"), in seconds within [min_s, max_s].  0, or -1. */
int twu_parse_duration(const char *text, long long min_s, long long max_s,
                       long long *out) TWU_MUST_CHECK;

/* A decimal number that is all of `text` and within [min, max];
 * 0, or -1. */
int twu_parse_long(const char *text, long min, long max, long *out);

/* Hex of a byte string into `out` (2*len+1 bytes), upper or lower case. */
void twu_hex(const unsigned char *in, size_t len, char *out, int upper);
/* The value of one hex digit (either case), or -1. */
int twu_hex_digit(int c);

#endif /* TW_UTIL_H */
