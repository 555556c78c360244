/*
 * cache.c - each worker's cache of rendered invoices, by number.
 *
 * An invoice never changes once stored (POST creates, nothing updates or
 * deletes), so GET /invoices/{number} can be answered from the JSON rendered
 * the first time, without SQLite or rendering: a direct-mapped table, no
 * lock (one per worker), bounded by INV_CACHE_SLOTS entries.  Only found
 * invoices are cached: a 404 may become a 200 after a POST.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(const char *number)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *number != '\0'; number++)
        h = (h ^ (unsigned char)*number) * 1099511628211ULL;
    return (size_t)(h % INV_CACHE_SLOTS);
}

int inv_cache_get(const inv_cache *c, const char *number, const char **json,
                  size_t *len)
{
    const struct inv_cache_slot *s = &c->slots[slot_of(number)];

    if (s->json == NULL || strcmp(s->number, number) != 0)
        return 0;
    *json = s->json;
    *len = s->len;
    return 1;
}

void inv_cache_put(inv_cache *c, const char *number, const char *json,
                   size_t len)
{
    struct inv_cache_slot *s = &c->slots[slot_of(number)];
    char *copy;

    if (strlen(number) > INV_NUMBER_MAX || (copy = malloc(len)) == NULL)
        return; /* a cache: failing to remember is fine */
    memcpy(copy, json, len);
    free(s->json);
    strcpy(s->number, number);
    s->json = copy;
    s->len = len;
}

void inv_cache_free(inv_cache *c)
{
    for (size_t i = 0; i < INV_CACHE_SLOTS; i++) {
        free(c->slots[i].json);
        c->slots[i].json = NULL;
    }
}
