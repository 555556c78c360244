/*
 * parse.c - numbers from command lines and files, strictly: all of the
 * text, in range, no overflow.
 */
#include "tw_internal.h"

#include <errno.h>
#include <stdlib.h>

int tw__parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
