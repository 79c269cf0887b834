/*
 * creator_cache.h — every creator in memory, by creator_id: what GetCreator and
 * BatchGetCreators answer from, on the loop, without touching the disk. Loaded at
 * start-up and kept in step by the done callbacks of committed writes, and with other
 * replicas' writes by creator_sync.h. Loop thread only.
 */
#ifndef CREATOR_CACHE_H
#define CREATOR_CACHE_H

#include <stddef.h>

#include "services/creator_profile/creator_record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_creator_cache_t {
    creator_record_t **buckets;
    size_t mask; /* bucket count - 1; the count is a power of two */
    size_t size;
} creator_cache_t;

/** Initializes an empty cache. Returns 0 or -ENOMEM. */
int creator_cache_init(creator_cache_t *c);

/** Frees every record and the table. */
void creator_cache_dispose(creator_cache_t *c);

/** The record of `creator_id`, or NULL. Valid until the next put/remove of that id. */
const creator_record_t *creator_cache_get(const creator_cache_t *c, const char *creator_id);

/**
 * Takes ownership of `rec` and makes it the record of its creator_id, freeing the one it
 * replaces. Never fails: when the table cannot grow, chains get longer.
 */
void creator_cache_put(creator_cache_t *c, creator_record_t *rec);

/** Removes and frees the record of `creator_id`. Returns 0, or -ENOENT. */
int creator_cache_remove(creator_cache_t *c, const char *creator_id);

/**
 * Removes the record of `creator_id` and hands it to the caller (who frees it), or returns
 * NULL when there is none.
 */
creator_record_t *creator_cache_take(creator_cache_t *c, const char *creator_id);

/** Number of creators held. */
size_t creator_cache_size(const creator_cache_t *c);

#ifdef __cplusplus
}
#endif
#endif
