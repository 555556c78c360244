/*
 * alloc.c - the one allocation wrapper of libtwoway and the programs.
 *
 * Tests call twu_alloc_fail_after(n) to make the n-th next allocation fail,
 * so every error path that follows an allocation can be exercised (curl's
 * and SQLite's out-of-memory tests do the same).
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>

static long fail_countdown = -1;

void twu_alloc_fail_after(long n)
{
    fail_countdown = n;
}

static int should_fail(void)
{
    if (fail_countdown < 0)
        return 0;
    if (fail_countdown == 0)
        return 1;
    fail_countdown--;
    return 0;
}

void *twu_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *twu_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *twu_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *twu_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *copy = twu_malloc(len + 1);

    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *twu_strdup(const char *s)
{
    return twu_strndup(s, strlen(s));
}

void twu_free(void *p)
{
    free(p);
}
