/*
 * attr_rollups.h — the rollups of the in-memory state (attr_state.h) that reports read:
 * per creator and UTC day, the exposure counts and the credits of every conversion
 * (cached or not), and the unattributed conversions per day. Cells are small (16
 * bytes); a figure too big for its cell is kept whole apart (attr_wide_t). Part of
 * attr_state_t; include attr_state.h.
 */
#ifndef ATTR_ROLLUPS_H
#define ATTR_ROLLUPS_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_credit.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The state (attr_state.h), of which this is a part. */
typedef struct st_attr_state_t attr_state_t;

/**
 * Exposure counts of one creator and one UTC day: 16 bytes, since there is one per
 * creator and day with an exposure (a count that reaches UINT32_MAX is kept whole in
 * attr_state_t.wide instead).
 */
typedef struct st_attr_day_t {
    int32_t day;
    uint32_t impressions, views, clicks;
} attr_day_t;

/**
 * Credits of one creator and one UTC day, apart from the counts because most creators
 * and days have none. A conversion with one eligible touch gives it the whole order
 * under every model: those are counted in `singles` and `gmv` (16 bytes for the common
 * case); a conversion split among touches adds per-model figures to an attr_multi_t.
 */
typedef struct st_attr_cday_t {
    int32_t day;
    uint32_t singles; /* conversions credited wholly to the creator (ATTR_CREDIT_ONE each) */
    uint32_t gmv;     /* their net amount, minor units */
    uint32_t multi;   /* 1 + index into attr_state_t.multi; 0: none */
} attr_cday_t;

/**
 * An exact sum of rollup figures: minor units, credits (ATTR_CREDIT_ONE units) or
 * counts. 128 bits, so that no sum of amounts of at most ATTR_AMOUNT_MAX (10^15,
 * attr_validate.h) can overflow: that would take 1.7 x 10^23 orders, where int64 is
 * past after 9,224. A reply's int64 field gets attr_sum_clamp() of it.
 */
typedef __int128 attr_sum_t;

/** `v` as an int64 figure of a reply: INT64_MAX when it is more (INT64_MIN when less). */
static inline int64_t attr_sum_clamp(attr_sum_t v)
{
    return v > INT64_MAX ? INT64_MAX : v < INT64_MIN ? INT64_MIN : (int64_t)v;
}

/**
 * Per-model credits and net amount of split conversions of one creator and day. A
 * figure that does not fit int64 is kept whole in attr_state_t.wide instead (the cell
 * holds INT64_MIN).
 */
typedef struct st_attr_multi_t {
    int64_t credit[ATTR_N_MODELS];
    int64_t gmv[ATTR_N_MODELS];
} attr_multi_t;

/**
 * A rollup figure too big for its cell (a 32-bit one holds UINT32_MAX, a 64-bit one
 * INT64_MIN): its exact value.
 */
typedef struct st_attr_wide_t {
    uint32_t creator;
    int32_t day;
    uint32_t field; /* ATTR__F_* of attr_rollups.c */
    attr_sum_t value;
} attr_wide_t;

/** Per creator (indexed by interned id): rollups and the tier label cache. */
typedef struct st_attr_creator_t {
    attr_day_t *days; /* sorted by day */
    uint32_t n_days, cap_days;
    attr_cday_t *cdays; /* sorted by day */
    uint32_t n_cdays, cap_cdays;
    int tier;        /* tier enum value; valid when tier_ns != 0 */
    int64_t tier_ns; /* when the label was fetched; 0: never */
} attr_creator_t;

/** Conversions of one UTC day credited to nobody (no eligible touch), and their net amount. */
typedef struct st_attr_unattr_day_t {
    int32_t day;
    int64_t count;
    attr_sum_t gmv;
} attr_unattr_day_t;

/** Sums over days (and creators): exact (attr_sum_t). */
typedef struct st_attr_sums_t {
    attr_sum_t impressions, views, clicks;
    attr_sum_t credit; /* ATTR_CREDIT_ONE units */
    attr_sum_t gmv;
} attr_sums_t;

/** Sums creator `creator`'s rollups over days [d0, d1) under `model` (1..5). */
void attr_state_creator_sums(const attr_state_t *st, uint32_t creator, int32_t d0, int32_t d1,
                             int model, attr_sums_t *out);

/** Unattributed conversions and their net amount over days [d0, d1). */
void attr_state_unattributed(const attr_state_t *st, int32_t d0, int32_t d1, attr_sum_t *count,
                             attr_sum_t *gmv);

/**
 * The id of creator `creator` (`len` bytes) in st->creators, added when new with room for
 * its rollups and its tier label (attr_tier.h labels only creators with that room);
 * `*str` (may be NULL) gets the interned name. Adds no rollup: a state used only to name
 * creators and cache their labels (a report's front, attr_service_int.h) stays empty of
 * figures. Returns 0 or -ENOMEM.
 */
int attr_state_creator(attr_state_t *st, const char *creator, size_t len, uint32_t *id,
                       const char **str);

/** Adds counts of a pruned segment's exposures (loaded from the database). */
int attr_state_add_exposure_rollup(attr_state_t *st, const char *creator, size_t len, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks);

/** attr_state_add_exposure_rollup() of a creator interned already (st->creators). */
int attr_state_add_exposure_counts(attr_state_t *st, uint32_t creator, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks);

/**
 * Prefetches what attr_state_add_exposure_counts() of `creator` reads: stage 0 its
 * entry in the creators' table, stage 1 (once that is in the cache) its latest days.
 */
void attr_state_prefetch_counts(const attr_state_t *st, uint32_t creator, int stage);

/** Indexes st->wide after it was filled directly (attr_snap_load()). 0 or -ENOMEM. */
int attr_state_index_wide(attr_state_t *st);

/** One credit rollup cell that differs in attr_state_audit(). */
typedef void (*attr_audit_fn)(void *arg, const char *creator, size_t creator_len, int32_t day,
                              const char *what, int64_t got, int64_t want);

/**
 * Checks the credit rollups (not the exposure counts): they must equal `from`'s (the
 * credits, under st's settings, of the stored conversions that are not in memory, built
 * as for attr_state_replace_credits()) plus the results of the cached conversions
 * applied to them. Calls `diff` for each figure of a creator and day (or of the
 * unattributed conversions, creator NULL) that differs; changes nothing. Returns how
 * many differ, or -ENOMEM. A test aid (--audit-rollups-ms): nothing may change the
 * conversions or the rollups meanwhile.
 */
int attr_state_audit(attr_state_t *st, const attr_state_t *from, attr_audit_fn diff, void *arg);

#ifdef __cplusplus
}
#endif
#endif
