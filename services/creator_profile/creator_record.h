/*
 * creator_record.h — a creator as the service holds it in memory: the protobuf-c
 * message itself, ready to be packed into a reply, together with the storage it points
 * into, in one allocation. Records are built from a request or from a database row and
 * are immutable once built: a change builds a new record.
 */
#ifndef CREATOR_RECORD_H
#define CREATOR_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "yaowei/creator/v1/creator.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Separates categories in their stored, joined form. Validation keeps it out of categories. */
#define CREATOR_CATEGORY_SEP '\x1f'

typedef struct st_creator_record_t {
    /** The creator; every pointer in it points into this record's allocation. */
    Yaowei__Creator__V1__Creator msg;
    Google__Protobuf__Timestamp create_time;
    Google__Protobuf__Timestamp update_time;
    /* Owned by creator_cache.c while the record is cached. */
    struct st_creator_record_t *cache_next;
    uint64_t cache_hash;
} creator_record_t;

/** What a record is built from. Strings are copied; none may be NULL. */
typedef struct st_creator_fields_t {
    const char *creator_id;
    const char *display_name;
    const char *region;
    /** Either an array of categories ... */
    char *const *categories;
    size_t n_categories;
    /** ... or, when `categories` is NULL, the joined form (creator_categories_join()). */
    const char *categories_joined;
    int64_t followers;
    int status;
    int64_t create_seconds;
    int32_t create_nanos;
    int64_t update_seconds;
    int32_t update_nanos;
} creator_fields_t;

/** Builds a record (one malloc). NULL when out of memory. Free with creator_record_free(). */
creator_record_t *creator_record_new(const creator_fields_t *f);

/** Frees a record; NULL is ignored. */
void creator_record_free(creator_record_t *r);

/**
 * Joins `n` categories with CREATOR_CATEGORY_SEP into `out`. Returns the length, or
 * -ENOSPC when `outlen` is too small (CREATOR_CATEGORIES_JOINED_MAX always suffices for
 * validated categories).
 */
int creator_categories_join(char *const *categories, size_t n, char *out, size_t outlen);

/** Room for the joined form of validated categories (20 x 64 bytes + separators + NUL). */
#define CREATOR_CATEGORIES_JOINED_MAX (20 * 64 + 20)

#ifdef __cplusplus
}
#endif
#endif
