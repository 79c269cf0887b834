/*
 * attr_state.h — what the attribution service works from, in memory, owned by the loop
 * thread, in three parts: the exposures not yet in an index file and a Bloom filter of
 * the event ids that are (attr_exposures.h), every conversion with its candidate
 * touches and its credits under all five models, the cache that holds them and refunds
 * (attr_orders.h), and the rollups per (creator, UTC day) that reports read
 * (attr_rollups.h). This header holds what they share: the settings, attr_state_t, its
 * life and its memory; callers include it and get the parts. No I/O and no clock:
 * callers pass `now_ns`, and the service does the disk work this module asks for
 * (attr_service.c with attr_xlog.h, attr_xidx.h, attr_store.h).
 *
 * Memory does not grow with the exposures kept: an exposure is in memory from its
 * admission until the index file of its run is written, then only a few bits of it
 * (the Bloom filter) stay.
 *
 * Horizon H = max(click_window, view_window) + late_window. An exposure joins
 * conversions only while its occur_time is within H behind the wall clock; older ones
 * are counted in rollups only (past_join_horizon). A conversion keeps its candidate
 * touches, so that refunds and settings changes can restate it after its exposures
 * left memory.
 *
 * Memory does not grow with the conversions either: the conversions in memory are a
 * cache (`cache_budget` bytes) of the database, which the service keeps complete
 * (attr_orders.h).
 */
#ifndef ATTR_STATE_H
#define ATTR_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_bloom.h"
#include "services/attribution/attr_credit.h"
#include "services/attribution/attr_hash.h"

#include "services/attribution/attr_exposures.h"
#include "services/attribution/attr_orders.h"
#include "services/attribution/attr_rollups.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A chunk of pending exposures (private to attr_exposures.c). */
typedef struct st_attr_pchunk_t attr_pchunk_t;
/** A Bloom filter of indexed event ids (private to attr_exposures.c). */
typedef struct st_attr_bloom_epoch_t attr_bloom_epoch_t;

/**
 * The attribution settings (UpdateAttributionSettings): the rules' windows, the late
 * window, the default model and currency, their version and when they last changed.
 */
typedef struct st_attr_settings_t {
    int64_t click_window_ns;
    int64_t view_window_ns;
    int64_t half_life_ns;
    int64_t engaged_view_ms;
    int64_t late_window_ns;
    int default_model;
    char currency[4];
    int64_t version;
    int64_t update_ns;
} attr_settings_t;

/** The defaults, version 0. */
void attr_settings_default(attr_settings_t *s);
/** max(click_window, view_window) + late_window. */
int64_t attr_settings_horizon(const attr_settings_t *s);
/** The rules of attr_credit.h under settings `s`. */
void attr_settings_rules(const attr_settings_t *s, attr_rules_t *r);

/**
 * Where an exposure, a conversion or a refund is in its life: admitted and not yet
 * durable, committed (a conversion: cached), settled, or admitted with an id the caller
 * must look up on disk.
 */
enum { ATTR_PENDING = 1, ATTR_LIVE = 2, ATTR_DEAD = 3, ATTR_UNSURE_PENDING = 4 };

/** Results of the admits (exposures, conversions, refunds: attr_orders.h adds its own). */
enum { ATTR_ADMITTED = 0, ATTR_DUPLICATE = 1, ATTR_UNSURE = 4 };

/**
 * The state. Its fields are grouped by the part that owns them (attr_exposures.c,
 * attr_orders.c, attr_rollups.c); callers read some (counters, budgets, settings) and set
 * a few (budgets, `defer`, `skip_counts`, eviction guards) as documented at each.
 */
typedef struct st_attr_state_t {
    attr_settings_t settings;
    attr_rules_t rules;
    /* creators: every one (rollups). Nothing else is interned: conversions and their
     * candidates own their strings, so that they leave memory with them. */
    attr_intern_t creators;

    /* pending exposures: chunks in admission order; seq = position in that order */
    attr_pchunk_t **pend;
    size_t n_pend, cap_pend;
    uint64_t pend_base; /* seq of the first exposure of pend[0] */
    uint64_t next_seq;
    attr_pchunk_t *spare_pchunks[4]; /* settled chunks kept for reuse */
    size_t n_spare_pchunks;
    size_t pend_peak;       /* the most chunks pending at once (for the memory log) */
    attr_strmap_t pend_ids; /* event_id -> seq + 1 */

    /* runs in memory, oldest first; the open one (if any) is the last */
    attr_run_t **runs;
    size_t n_runs, cap_runs;
    uint64_t next_run_id;
    size_t runs_peak;  /* the most runs in memory at once (for the memory log) */
    uint32_t run_max;  /* close the open run at this size (0: only the caller seals) */
    uint32_t run_hint; /* expected exposures per run: the tables' first size */

    /* Bloom filters of the event ids in index files, oldest first */
    attr_bloom_epoch_t *epochs;
    size_t n_epochs;
    size_t bloom_budget; /* bytes the filters may hold (0: no limit): see index_add */
    uint64_t bloom_thin; /* filters made with fewer than ATTR_BLOOM_BITS bits per id */

    /* conversions: the cached live ones and, apart, the pending ones (admitted, not yet
     * committed); the database holds every stored one. Apart, so that a duplicate of a
     * stored order on its way (it is found a duplicate when written) never hides the
     * stored one: that one may be loaded meanwhile (a late exposure joins it, a refund or
     * an explanation reads it). At most one pending per id. */
    attr_strmap_t orders;      /* order_id -> attr_conv_t*, cached (ATTR_LIVE) */
    attr_strmap_t pend_orders; /* order_id -> attr_conv_t*, ATTR_PENDING */
    attr_map64_t conv_vp;      /* vp_hash -> the first cached conversion with it (vp_next) */
    attr_conv_t *lru_head, *lru_tail;
    size_t n_cached, cache_bytes;
    size_t cache_budget;      /* bytes of cached conversions to keep at most; 0: no limit */
    uint64_t next_commit_seq; /* commit_seq of the next commit or load */
    uint64_t evict_guard;     /* conversions with commit_seq >= it stay (UINT64_MAX: none) */
    int evict_hold;           /* non-zero: nothing is evicted */
    uint64_t n_evicted, n_loaded;
    uint64_t n_stored_convs; /* conversions in the database (the caller counts them) */
    /* the conversion filter, oldest first (attr_state_conv_maybe()) */
    attr_cfilter_t *cfilters;
    size_t n_cfilters;
    attr_strmap_t refunds; /* refund_id -> attr_refund_t*: pending ones only */
    size_t n_refunds_pending;

    /* work lists */
    attr_conv_t **dirty; /* to recompute */
    size_t n_dirty, cap_dirty;
    attr_conv_t **persist; /* with candidates not yet persisted */
    size_t n_persist, cap_persist;
    int defer; /* non-zero: commits mark dirty, attr_state_flush() recomputes */
    /* non-zero: committed exposures are not counted in the rollups, nor are the rollups
     * of index files loaded (start-up from a snapshot, attr_snap.h, which has them) */
    int skip_counts;

    /* rollups */
    attr_creator_t *creator_meta;
    size_t cap_creator_meta;
    attr_unattr_day_t *unattr;
    size_t n_unattr, cap_unattr;
    attr_multi_t *multi;
    size_t n_multi, cap_multi;
    attr_wide_t *wide;
    size_t n_wide, cap_wide;
    attr_map64_t wide_at; /* (creator, day, field) -> index in wide (attr_state_index_wide()) */
    size_t cell_bytes;    /* of every creator's days and cdays arrays (their capacities) */

    /* counters */
    uint64_t exposures_live; /* committed, in runs in memory */
    uint64_t bloom_maybes;   /* admits the Bloom filters sent to disk */

    /* scratch space of the recomputation (attr_orders.c) */
    unsigned char *scratch;
    size_t scratch_cap;
} attr_state_t;

/** An empty state with the default settings. Returns 0 (it cannot fail). */
int attr_state_init(attr_state_t *st);
/** Frees everything the state holds (every pointer into it is then invalid). */
void attr_state_free(attr_state_t *st);

/* ---- memory ---- */

/**
 * The bytes the state holds, by part (estimates of what is allocated, without the
 * allocator's own overhead): what an operator compares with the process's RSS.
 */
typedef struct st_attr_state_mem_t {
    size_t rollups;     /* per creator and day: exposure counts, credits; unattributed */
    size_t creators;    /* the creator interner */
    size_t conversions; /* cached conversions: records, candidates, results, strings */
    size_t conv_index;  /* the order map and the (viewer, product) chains */
    size_t conv_filter; /* Bloom filters of the conversions' keys */
    size_t refunds;     /* pending refunds */
    size_t pending;     /* exposures admitted and not yet committed */
    size_t runs;        /* exposures not yet indexed (open and sealed runs) */
    size_t bloom;       /* Bloom filters of indexed event ids */
    size_t work;        /* work lists and scratch */
} attr_state_mem_t;

/** Fills `out` with what the state holds now. */
void attr_state_mem(const attr_state_t *st, attr_state_mem_t *out);

/** The open run (NULL when none is open). */
static inline attr_run_t *attr_state_open_run(const attr_state_t *st)
{
    return st->n_runs > 0 && st->runs[st->n_runs - 1]->state == ATTR_RUN_OPEN
               ? st->runs[st->n_runs - 1]
               : NULL;
}

/** The number of creators known (ids are 0..n-1). */
static inline uint32_t attr_state_n_creators(const attr_state_t *st)
{
    return st->creators.count;
}

#ifdef __cplusplus
}
#endif
#endif
