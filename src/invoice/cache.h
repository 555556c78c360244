/* cache.h - a worker's cache of rendered invoices (see cache.c). */
#ifndef TW_INVOICE_CACHE_H
#define TW_INVOICE_CACHE_H

#include "store.h"

#include <stddef.h>

#define INV_CACHE_SLOTS 1024

typedef struct inv_cache {
    struct inv_cache_slot {
        char number[INV_NUMBER_MAX + 1];
        char *json; /* NULL: empty slot */
        size_t len;
    } slots[INV_CACHE_SLOTS];
} inv_cache;

/* 1 and the JSON (owned by the cache) when `number` is cached, else 0. */
int inv_cache_get(const inv_cache *c, const char *number, const char **json,
                  size_t *len);
/* Remember an invoice's JSON (copied). */
void inv_cache_put(inv_cache *c, const char *number, const char *json,
                   size_t len);
void inv_cache_free(inv_cache *c);

#endif
