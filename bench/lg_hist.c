/*
 * lg_hist.c - latency histogram in log-linear buckets: exact below 128 us,
 * then 64 buckets per power of two (under 1.6% error), fixed size, so that
 * recording costs no allocation whatever the request rate.
 */
#include "loadgen.h"

#define SUB_BITS 6 /* 64 buckets per power of two */

static size_t bucket_of(uint64_t v)
{
    unsigned e = 0;

    /* e = how far v is shifted to leave SUB_BITS + 1 significant bits. */
    while ((v >> e) >= (2u << SUB_BITS))
        e++;
    return ((size_t)e << SUB_BITS) + (size_t)(v >> e);
}

/* The middle of bucket i. */
static uint64_t value_of(size_t i)
{
    unsigned e;

    if (i < (2u << SUB_BITS))
        return i;
    e = (unsigned)(i >> SUB_BITS) - 1;
    return ((uint64_t)(i - ((size_t)e << SUB_BITS)) << e) + ((1ull << e) >> 1);
}

void lg_hist_add(lg_hist *h, uint64_t us)
{
    size_t i = bucket_of(us);

    if (i >= LG_HIST_BUCKETS)
        i = LG_HIST_BUCKETS - 1;
    h->count[i]++;
    h->total++;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->total == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->total + 0.5);
    if (rank < 1)
        rank = 1;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return value_of(i);
    }
    return value_of(LG_HIST_BUCKETS - 1);
}
