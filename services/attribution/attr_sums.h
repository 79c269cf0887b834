/*
 * attr_sums.h — the exact sums the reports are made of, wherever they come from: every
 * creator's sums over a range of days under one model, and the conversions of the range
 * credited to nobody. They are read from one state (attr_sums_of_state(): standalone,
 * or one partition of a cluster) or added up from several partitions'
 * (attr_sums_merge_t: a creator whose viewers fall in several partitions is one
 * creator, its sums added exactly). attr_report.c renders GetCreatorReport,
 * GetTierReport and ListTopCreators from them, so that a report made of partitions'
 * sums is the report of one state holding all their events: the sums are integers
 * (attr_sum_t), and every double of a reply is derived from them only at the end.
 *
 * Pure: no I/O, no clock, no gRPC.
 */
#ifndef ATTR_SUMS_H
#define ATTR_SUMS_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One creator's sums over a range. */
typedef struct st_attr_creator_sums_t {
    const char *creator; /* NUL-terminated, `len` bytes; owned by whoever made the list */
    size_t len;
    attr_sums_t s;
    uint32_t id; /* its id in the list's `ids_of` state, where that is set */
} attr_creator_sums_t;

/**
 * What a report is rendered from: the creators with an exposure or a credit in range,
 * each once, in no particular order, and the unattributed conversions of the range.
 */
typedef struct st_attr_range_sums_t {
    attr_creator_sums_t *creators;
    size_t n;
    attr_sum_t unattr_count; /* conversions credited to nobody */
    attr_sum_t unattr_gmv;   /* their net amount, minor units */
    /* The state whose creators these are, by id (attr_sums_of_state()): a report rendered
     * with that state as its front takes the ids as they are instead of looking each name
     * up. NULL: sums from elsewhere (merged, or a peer's). */
    const attr_state_t *ids_of;
} attr_range_sums_t;

/** Whether every figure of `s` is 0 (such a creator is in no report). */
int attr_sums_zero(const attr_sums_t *s);

/**
 * Adds `s` to `acc`, exactly. Returns 0, or -ERANGE when a figure would not fit 128 bits
 * (only sums sent by a peer can get there): `acc` is then unchanged.
 */
int attr_sums_add(attr_sums_t *acc, const attr_sums_t *s);

/**
 * The sums of `st` over days [d0, d1) under `model` (1..ATTR_N_MODELS) into `out`: every
 * creator with an exposure or a credit in range, in id order (or, when `only` is not
 * NULL, creator `only` of `only_len` bytes alone, when it has any), and the unattributed
 * conversions of the range. out->creators is allocated (free() it; NULL when there are
 * none); the names are st's interned ones, valid while `st` is. Returns 0 or -ENOMEM
 * (`out` empty).
 */
int attr_sums_of_state(const attr_state_t *st, int32_t d0, int32_t d1, int model, const char *only,
                       size_t only_len, attr_range_sums_t *out);

/**
 * Several partitions' sums added up: creators by name (each once), figures exactly.
 * Merge each partition's sums as they come (attr_sums_merge()); m->sums is the result,
 * creators in the order they first came. The names are copies: what was merged may be
 * freed at once. Loop thread or any one thread: no locking.
 */
typedef struct st_attr_sums_merge_t {
    attr_range_sums_t sums;
    size_t cap;
    attr_intern_t names; /* the creators' names; a creator's id is its index in sums */
} attr_sums_merge_t;

void attr_sums_merge_init(attr_sums_merge_t *m);
void attr_sums_merge_free(attr_sums_merge_t *m);

/**
 * Adds one creator's sums. Returns 0, -ENOMEM or -ERANGE (attr_sums_add()); on an error
 * `m` is as it was.
 */
int attr_sums_merge_creator(attr_sums_merge_t *m, const char *creator, size_t len,
                            const attr_sums_t *s);

/** Adds unattributed conversions. Returns 0 or -ERANGE (`m` unchanged). */
int attr_sums_merge_unattributed(attr_sums_merge_t *m, attr_sum_t count, attr_sum_t gmv);

/**
 * Adds one partition's sums (its creators and its unattributed conversions). Returns 0,
 * -ENOMEM or -ERANGE; on an error the creators added before the failing one stay added.
 */
int attr_sums_merge(attr_sums_merge_t *m, const attr_range_sums_t *part);

#ifdef __cplusplus
}
#endif
#endif
