/*
 * attr_exposures.h — the exposures of the in-memory state (attr_state.h): the ones
 * admitted and not yet durable (the pending area), the runs of committed ones not yet in
 * an index file (exact dedup and join tables), and the Bloom filters of the event ids
 * that are. Part of attr_state_t; include attr_state.h.
 *
 * Life of an exposure: attr_exposure_admit() (validated by the caller; checks the id
 * for a duplicate, reserves it, copies the event into the pending area) -> the caller
 * makes it durable -> attr_exposure_commit_at() (it becomes visible: rollups, the open
 * run's dedup and join tables, re-attribution of conversions it joins late) or
 * attr_exposure_abort() (forgotten; its id may come again). Between admit and commit
 * the event is invisible to queries but its id already counts as seen, so that a
 * duplicate later in the same batch, or in a batch that overtakes it, is reported as
 * such. Admit answers ATTR_UNSURE when the id is in no memory table but the Bloom
 * filter of indexed ids says "maybe": the caller looks the id up on disk and calls
 * attr_exposure_resolve() before anything else happens to that event.
 *
 * Runs: committed exposures go to the open run (arrival order). The caller seals it
 * (attr_state_seal_run()), writes its index file from the sealed run's records (any
 * thread may read a sealed run), tells the state (attr_state_index_add(): its ids
 * go into the Bloom filter) and releases it (attr_state_release_run()). Until released
 * a run answers dedup and joins from memory. Without a caller that seals (the unit
 * tests), runs close by themselves every `run_max` exposures and attr_state_prune()
 * frees the ones past the horizon.
 *
 * An exposure joins conversions only while its occur_time is within the horizon
 * (attr_settings_horizon()) behind the wall clock; older ones are counted in rollups
 * only (past_join_horizon).
 */
#ifndef ATTR_EXPOSURES_H
#define ATTR_EXPOSURES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The state (attr_state.h), of which this is a part. */
typedef struct st_attr_state_t attr_state_t;

/** Exposures per run when runs close by themselves (`run_max` of a new state). */
#define ATTR_RUN_EXPOSURES 65536
/** Bits per event id in the Bloom filter of indexed ids (about 0.07 % false "maybe"). */
#define ATTR_BLOOM_BITS 16
/** The fewest bits per id a new filter gets when the filters' budget is short (about 5 %). */
#define ATTR_BLOOM_MIN_BITS 8
/** Event ids per Bloom filter: a new one starts when the newest is full. */
#define ATTR_BLOOM_KEYS (UINT64_C(1) << 22)

/** An interned string handed back by admit (same layout as attr_xlog_str_t). */
typedef struct st_attr_interned_t {
    const char *s;
    uint32_t len;
    uint32_t id;
} attr_interned_t;

/**
 * An exposure admitted and not yet committed or aborted. Its strings are the state's
 * own copies (NUL-terminated; the creator is interned) and stay valid and unchanged
 * until the commit or the abort.
 */
typedef struct st_attr_pexp_t {
    attr_interned_t event_id, viewer, creator, note;
    attr_interned_t *products;
    uint32_t n_products;
    uint8_t kind;
    uint8_t state; /* ATTR_PENDING, ATTR_UNSURE_PENDING; ATTR_DEAD once resolved */
    int64_t watch_ms;
    int64_t occur_ns;
    int64_t keep_ns; /* max(arrival, occur_time) */
    uint64_t eid_hash;
} attr_pexp_t;

/** One committed exposure of a run (its strings are in the run's arena). */
typedef struct st_attr_rexp_t {
    uint64_t eid_hash;
    int64_t occur_ns;
    int64_t watch_ms;
    const char *creator; /* interned */
    uint32_t seg, off;   /* where the log holds it (0, 0: nowhere) */
    uint32_t str;        /* offset of its strings in the run's arena */
    uint16_t n_products;
    uint8_t kind;
    uint8_t joinable; /* within the horizon when committed */
} attr_rexp_t;

/** A run's life: commits go to the open one; closed by itself (run_max) or sealed. */
enum { ATTR_RUN_OPEN = 1, ATTR_RUN_CLOSED = 2, ATTR_RUN_SEALED = 3 };

/**
 * A run: exposures committed one after another, with exact dedup and join tables.
 * Immutable once sealed or closed (any thread may read it then, through
 * attr_run_rec()); the state frees it (attr_state_release_run(), attr_state_prune()).
 */
typedef struct st_attr_run_t {
    uint64_t id; /* the caller's number for it (attr_state_t.next_run_id at opening) */
    int state;
    uint32_t n, cap;
    attr_rexp_t *recs;
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *eid_slots; /* record index + 1; 0: empty */
    size_t eid_cap;
    uint64_t *join_slots; /* (hash >> 32) << 32 | ((index + 1) << 7 | product); 0: empty */
    size_t join_cap, join_n;
    /* The table before the last growth, while its keys move to join_slots a few per
     * append (records [join_mig, join_mig_end) are only in it); NULL when none. */
    uint64_t *join_old;
    size_t join_old_cap;
    uint32_t join_mig, join_mig_end;
    int64_t max_keep_ns;
} attr_run_t;

/** A record of a run, as another thread may read it. */
typedef struct st_attr_run_rec_t {
    const char *event_id, *viewer, *note, *creator;
    uint32_t event_id_len, viewer_len, note_len, creator_len;
    uint64_t eid_hash;
    int64_t occur_ns, watch_ms;
    uint32_t seg, off;
    uint16_t n_products;
    uint8_t kind, joinable;
    const char *products; /* walk with attr_run_next_product() */
} attr_run_rec_t;

/** Reads record `i` of a run (sealed or closed, or from the loop thread). */
void attr_run_rec(const attr_run_t *run, uint32_t i, attr_run_rec_t *out);

/** The next product of a record (start with `*at` = rec.products); its length in *len. */
const char *attr_run_next_product(const char **at, uint32_t *len);

/** An exposure event to admit, as validated by the caller (the strings are not kept). */
typedef struct st_attr_exposure_in_t {
    const char *event_id;
    size_t event_id_len;
    const char *viewer_id;
    size_t viewer_len;
    const char *creator_id;
    size_t creator_len;
    const char *note_id;
    size_t note_len;
    const char *const *product_ids;
    const size_t *product_lens; /* NULL: strlen */
    size_t n_products;
    int kind;
    int64_t watch_ms;
    int64_t occur_ns;
} attr_exposure_in_t;

/**
 * Checks the event id and reserves it. Returns ATTR_ADMITTED with `*seq`,
 * ATTR_DUPLICATE, ATTR_UNSURE with `*seq` (reserved; the id may be in an index file:
 * look, then attr_exposure_resolve()), -EINVAL (an id or product list too long) or
 * -ENOMEM. When it returns a seq and `out` is not NULL, out[0..2] get the viewer,
 * creator and note, out[3 + k] product k (the state's copies: valid until the commit or
 * the abort).
 */
int attr_exposure_admit(attr_state_t *st, const attr_exposure_in_t *in, int64_t now_ns,
                        uint64_t *seq, attr_interned_t *out);

/**
 * Starts loading what admitting `in` will touch first (the hash slots of its id), so
 * that the cache misses of a few events overlap: call it a couple of events ahead.
 */
void attr_exposure_prefetch(const attr_state_t *st, const char *event_id, const char *viewer,
                            const char *creator, const char *note, const char *const *products,
                            size_t n_products);

/** The pending exposure `seq` (admitted, not yet committed or aborted), or NULL. */
const attr_pexp_t *attr_exposure_pending(const attr_state_t *st, uint64_t seq);

/**
 * Settles an ATTR_UNSURE admission: `dup` non-zero (the id was found on disk) forgets it
 * like attr_exposure_abort(); zero makes it an ordinary pending exposure.
 */
void attr_exposure_resolve(attr_state_t *st, uint64_t seq, int dup);

/**
 * Makes an admitted exposure visible: rollups, the open run (dedup; when within the
 * horizon, the join table) and the conversions it matches late. `seg` and `off` say
 * where the log holds its record (the index file points there). Returns 1 when it
 * joined, 0 when it arrived past the horizon, -EINVAL (not pending, or unsure) or
 * -ENOMEM.
 */
int attr_exposure_commit_at(attr_state_t *st, uint64_t seq, uint32_t seg, uint32_t off,
                            int64_t now_ns);

/**
 * Starts loading what committing `seq` will touch first (its creator's rollups): call
 * it with `stage` 0 some eight exposures ahead and with 1 some four ahead (a hint).
 */
void attr_exposure_prefetch_commit(const attr_state_t *st, uint64_t seq, int stage);

/** attr_exposure_commit_at() for callers without a log (held nowhere: 0, 0). */
int attr_exposure_commit(attr_state_t *st, uint64_t seq, int64_t now_ns);

/** Forgets an admitted exposure (it was not made durable). */
void attr_exposure_abort(attr_state_t *st, uint64_t seq);

/** Whether an exposure at occur_ns arriving now is past the horizon. */
int attr_exposure_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns);

/**
 * Frees closed runs whose exposures are all past the horizon (oldest first; never an
 * open or sealed run: those are the caller's). Their ids are forgotten. `budget` is
 * unused (kept for callers). Returns the number of exposures freed.
 */
size_t attr_state_prune(attr_state_t *st, int64_t now_ns, size_t budget);

/* ---- runs and the index files ---- */

/**
 * Seals the open run and returns it (NULL when there is none or it is empty): its
 * records will not change; the next commit opens a new run. The caller indexes it and
 * then calls attr_state_run_indexed() and attr_state_release_run().
 */
attr_run_t *attr_state_seal_run(attr_state_t *st);

/**
 * Adds event-id hashes that are now in an index file to the Bloom filters (`max_seg`:
 * the newest segment they are in). Sorted hashes load fastest. A new filter gets
 * ATTR_BLOOM_BITS bits per id, or fewer (down to ATTR_BLOOM_MIN_BITS) when
 * `bloom_budget` would be exceeded: more ids then go to disk to be checked, but memory
 * stays within the budget (give or take one filter at the minimum). Returns 0 or
 * -ENOMEM (then some may be missing: the caller must not release their run).
 */
int attr_state_index_add(attr_state_t *st, const uint64_t *hashes, size_t n, uint64_t max_seg);

/** Frees the Bloom filters that cover no segment after `through_seg` (all pruned). */
void attr_state_index_forget(attr_state_t *st, uint64_t through_seg);

/** The bytes the Bloom filters hold. */
size_t attr_state_bloom_bytes(const attr_state_t *st);

/** Frees a sealed run whose ids are in the Bloom filters (its exposures leave memory). */
void attr_state_release_run(attr_state_t *st, attr_run_t *run);

/** The bytes a run holds. */
size_t attr_run_bytes(const attr_run_t *run);

/**
 * For a pending exposure: for each product (maybe[k]), whether a conversion that is not
 * in memory may join it (attr_state_conv_maybe() of its key; 0 past the horizon).
 * Returns how many may.
 */
size_t attr_exposure_conv_maybe(const attr_state_t *st, uint64_t seq, int64_t now_ns,
                                uint8_t *maybe);

#ifdef __cplusplus
}
#endif
#endif
