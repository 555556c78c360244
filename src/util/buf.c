/*
 * buf.c - the growable buffer of util.h, after curl's dynbuf: every buffer
 * has a hard maximum, so a peer can make it grow only so far (responses,
 * request bodies, pages read from a server).
 */
#include "util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static size_t buf_limit(const twu_buf *b)
{
    if (b->max == 0)
        return TWU_BUF_DEFAULT_MAX;
    return b->max < SIZE_MAX / 2 ? b->max : SIZE_MAX / 2; /* no overflow */
}

int twu_buf_reserve(twu_buf *b, size_t extra)
{
    size_t limit = buf_limit(b), need, ncap;
    char *ndata;

    if (extra > limit || b->len > limit - extra)
        return -1;
    need = b->len + extra + 1;
    if (b->data != NULL && need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2; /* need <= limit + 1 <= SIZE_MAX / 2 + 1 */
    if (ncap > limit + 1)
        ncap = limit + 1;
    ndata = twu_realloc(b->data, ncap);
    if (ndata == NULL)
        return -1;
    if (b->data == NULL)
        ndata[0] = '\0';
    b->data = ndata;
    b->cap = ncap;
    return 0;
}

int twu_buf_append(twu_buf *b, const void *data, size_t len)
{
    if (twu_buf_reserve(b, len) < 0)
        return -1;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int twu_buf_printf(twu_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (twu_buf_reserve(b, 0) < 0)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        goto err;
    if ((size_t)n >= b->cap - b->len) {
        if (twu_buf_reserve(b, (size_t)n) < 0)
            goto err;
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            goto err;
    }
    b->len += (size_t)n;
    return 0;
err:
    b->data[b->len] = '\0'; /* drop whatever vsnprintf left past len */
    return -1;
}

void twu_buf_reset(twu_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void twu_buf_free(twu_buf *b)
{
    twu_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
