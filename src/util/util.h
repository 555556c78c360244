/*
 * util.h - twoway's internal utility layer (src/util): what libtwoway and
 * the programs share below the library's public API.
 *
 *   alloc.c  the one allocation wrapper (tests fail each allocation in turn)
 *   buf.c    a growable text buffer with a hard maximum (curl's dynbuf)
 *   parse.c  sizes and durations, strictly
 *
 * Nothing here is exported from libtwoway.so: the library is built with
 * hidden visibility and only `tw_` names are public.
 */
#ifndef TW_UTIL_H
#define TW_UTIL_H

#include <stddef.h>

#define TWU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TWU_MUST_CHECK __attribute__((warn_unused_result))

/* ------------------------------------------------------------ allocation */

/* Every allocation of the library and the programs' core paths goes
 * through these, so that tests can make the n-th one fail
 * (tw__alloc_fail_after) and check that nothing leaks or crashes. */
void *tw__malloc(size_t n);
void *tw__calloc(size_t count, size_t size);
void *tw__realloc(void *p, size_t n);
char *tw__strdup(const char *s);
char *tw__strndup(const char *s, size_t n);
void tw__free(void *p);
/* Make the allocation after `n` more succeed fail; -1 turns that off. */
void tw__alloc_fail_after(long n);

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

#endif /* TW_UTIL_H */
