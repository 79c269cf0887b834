/*
 * creator_cache.c — a chained hash table keyed by creator_id (common/hash.h), doubled when
 * it holds as many records as buckets. See creator_cache.h.
 */
#include "services/creator_profile/creator_cache.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

#define INITIAL_BUCKETS 1024

static uint64_t hash_id(const char *s)
{
    return yw_hash_bytes(s, strlen(s));
}

int creator_cache_init(creator_cache_t *c)
{
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    if (c->buckets == NULL) {
        return -ENOMEM;
    }
    c->mask = INITIAL_BUCKETS - 1;
    c->size = 0;
    return 0;
}

void creator_cache_dispose(creator_cache_t *c)
{
    if (c->buckets == NULL) {
        return;
    }
    for (size_t i = 0; i <= c->mask; i++) {
        creator_record_t *r = c->buckets[i];
        while (r != NULL) {
            creator_record_t *next = r->cache_next;
            creator_record_free(r);
            r = next;
        }
    }
    free(c->buckets);
    c->buckets = NULL;
    c->size = 0;
}

const creator_record_t *creator_cache_get(const creator_cache_t *c, const char *creator_id)
{
    uint64_t h = hash_id(creator_id);
    for (const creator_record_t *r = c->buckets[h & c->mask]; r != NULL; r = r->cache_next) {
        if (r->cache_hash == h && strcmp(r->msg.creator_id, creator_id) == 0) {
            return r;
        }
    }
    return NULL;
}

static void grow(creator_cache_t *c)
{
    size_t n = (c->mask + 1) * 2;
    creator_record_t **b = calloc(n, sizeof *b);
    if (b == NULL) {
        return; /* keep the current table; lookups stay correct, only slower */
    }
    for (size_t i = 0; i <= c->mask; i++) {
        creator_record_t *r = c->buckets[i];
        while (r != NULL) {
            creator_record_t *next = r->cache_next;
            r->cache_next = b[r->cache_hash & (n - 1)];
            b[r->cache_hash & (n - 1)] = r;
            r = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->mask = n - 1;
}

void creator_cache_put(creator_cache_t *c, creator_record_t *rec)
{
    uint64_t h = hash_id(rec->msg.creator_id);
    rec->cache_hash = h;
    for (creator_record_t **p = &c->buckets[h & c->mask]; *p != NULL; p = &(*p)->cache_next) {
        if ((*p)->cache_hash == h && strcmp((*p)->msg.creator_id, rec->msg.creator_id) == 0) {
            creator_record_t *old = *p;
            rec->cache_next = old->cache_next;
            *p = rec;
            creator_record_free(old);
            return;
        }
    }
    rec->cache_next = c->buckets[h & c->mask];
    c->buckets[h & c->mask] = rec;
    c->size++;
    if (c->size > c->mask + 1) {
        grow(c);
    }
}

creator_record_t *creator_cache_take(creator_cache_t *c, const char *creator_id)
{
    uint64_t h = hash_id(creator_id);
    for (creator_record_t **p = &c->buckets[h & c->mask]; *p != NULL; p = &(*p)->cache_next) {
        if ((*p)->cache_hash == h && strcmp((*p)->msg.creator_id, creator_id) == 0) {
            creator_record_t *old = *p;
            *p = old->cache_next;
            old->cache_next = NULL;
            c->size--;
            return old;
        }
    }
    return NULL;
}

int creator_cache_remove(creator_cache_t *c, const char *creator_id)
{
    creator_record_t *old = creator_cache_take(c, creator_id);
    if (old == NULL) {
        return -ENOENT;
    }
    creator_record_free(old);
    return 0;
}

size_t creator_cache_size(const creator_cache_t *c)
{
    return c->size;
}
