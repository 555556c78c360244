/*
 * parse.c - numbers, sizes and durations from command lines and files,
 * strictly: all of the text, in range, no overflow, no sign where none
 * belongs; and bytes as hex.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The leading decimal digits of text as an unsigned count; -1 when there
 * are none or they overflow.  *end points past them. */
static int leading_count(const char *text, unsigned long long *v,
                         const char **end)
{
    char *e;

    if (!isdigit((unsigned char)text[0]))
        return -1; /* no sign, no space */
    errno = 0;
    *v = strtoull(text, &e, 10);
    if (errno != 0)
        return -1;
    *end = e;
    return 0;
}

int twu_parse_size(const char *text, unsigned long long max,
                   unsigned long long *out)
{
    static const struct {
        const char *suffix;
        unsigned long long mult;
    } units[] = {
        {"", 1},          {"B", 1},
        {"K", 1ULL << 10}, {"KiB", 1ULL << 10}, {"k", 1ULL << 10},
        {"M", 1ULL << 20}, {"MiB", 1ULL << 20},
        {"G", 1ULL << 30}, {"GiB", 1ULL << 30},
    };
    unsigned long long v;
    const char *end;

    if (leading_count(text, &v, &end) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++)
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > max / units[i].mult)
                return -1;
            *out = v * units[i].mult;
            return 0;
        }
    return -1;
}

int twu_parse_duration(const char *text, long long min_s, long long max_s,
                       long long *out)
{
    static const struct {
        char unit;
        long long seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    unsigned long long v;
    const char *end;

    if (leading_count(text, &v, &end) < 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++)
        if (end[0] == units[i].unit) {
            if (v > (unsigned long long)(INT64_MAX / units[i].seconds))
                return -1;
            long long s = (long long)v * units[i].seconds;

            if (s < min_s || s > max_s)
                return -1;
            *out = s;
            return 0;
        }
    return -1;
}

int twu_parse_long(const char *text, long min, long max, long *out)
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

void twu_hex(const unsigned char *in, size_t len, char *out, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

int twu_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
