/*
 * attr_state.h — what the attribution service works from, in memory, owned by the loop
 * thread: the exposures not yet in an index file (dedup and join, exact), a Bloom
 * filter of the event ids that are, every conversion with its candidate touches and
 * its credits under all five models (materialised), refunds, and the rollups per
 * (creator, UTC day) that reports read. No I/O and no clock: callers pass `now_ns`, and
 * the service does the disk work this module asks for (attr_service.c with
 * attr_log.h, attr_xidx.h, attr_store.h).
 *
 * Memory does not grow with the exposures kept: an exposure is in memory from its
 * admission until the index file of its run is written, then only a few bits of it
 * (the Bloom filter) stay.
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
 * thread may read a sealed run), tells the state (attr_state_run_indexed(): its ids
 * go into the Bloom filter) and releases it (attr_state_release_run()). Until released
 * a run answers dedup and joins from memory. Without a caller that seals (the unit
 * tests), runs close by themselves every `run_max` exposures and attr_state_prune()
 * frees the ones past the horizon.
 *
 * Horizon H = max(click_window, view_window) + late_window. An exposure joins
 * conversions only while its occur_time is within H behind the wall clock; older ones
 * are counted in rollups only (past_join_horizon). A conversion's candidates are
 * captured when it commits (from the runs in memory, plus what the caller found in the
 * index files and passed with attr_conversion_add_cand()) and grow when a late exposure
 * commits; they are kept with the conversion (and persisted by the service) so that
 * refunds and settings changes can restate it after its exposures left memory.
 *
 * Memory does not grow with the conversions either: the conversions in memory are a
 * cache (`cache_budget` bytes) of the database, which the service keeps complete. A
 * conversion is committed into the cache; attr_state_evict() drops the least recently
 * used ones that nothing needs any more (not pinned, candidates persisted, no refund
 * pending, not committed after `evict_guard`); the service loads one back
 * (attr_conversion_load(), attr_conversion_loaded()) before a refund or a late exposure
 * changes it. The rollups always hold the credits of every conversion, cached or not,
 * computed under the current settings from its stored candidates and refunds, so that
 * a conversion loaded again gets exactly the result the rollups hold. What stays per
 * conversion: 2 bytes in the conversion filter (a Bloom filter of its viewer and
 * product) while it is within the horizon, so that an exposure can tell whether it may
 * join a conversion that is not in memory.
 */
#ifndef ATTR_STATE_H
#define ATTR_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_bloom.h"
#include "services/attribution/attr_credit.h"
#include "services/attribution/attr_hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Exposures per run when runs close by themselves (`run_max` of a new state). */
#define ATTR_RUN_EXPOSURES 65536
/** Bits per event id in the Bloom filter of indexed ids (about 0.07 % false "maybe"). */
#define ATTR_BLOOM_BITS 16
/** The fewest bits per id a new filter gets when the filters' budget is short (about 5 %). */
#define ATTR_BLOOM_MIN_BITS 8
/** Event ids per Bloom filter: a new one starts when the newest is full. */
#define ATTR_BLOOM_KEYS (UINT64_C(1) << 22)

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
void attr_settings_rules(const attr_settings_t *s, attr_rules_t *r);

enum { ATTR_PENDING = 1, ATTR_LIVE = 2, ATTR_DEAD = 3, ATTR_UNSURE_PENDING = 4 };

/** An interned string handed back by admit (same layout as attr_log_str_t). */
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

typedef struct st_attr_pchunk_t attr_pchunk_t;

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

/** One Bloom filter of indexed event ids and the newest segment it covers. */
typedef struct st_attr_bloom_epoch_t {
    attr_bloom_t bloom;
    uint64_t cap;     /* keys it was sized for */
    uint64_t max_seg; /* the newest segment of the ids in it */
} attr_bloom_epoch_t;

/** A candidate touch kept with a conversion (copied, so exposures may be pruned). */
typedef struct st_attr_cand_t {
    char *event_id;    /* malloc'd (or the conversion's cand0_str); the note follows it */
    uint32_t creator;  /* interned in st->creators */
    uint32_t note_off; /* the note is at event_id + note_off (NUL-terminated) */
    int64_t occur_ns;
    int64_t watch_ms;
    uint8_t kind;
    uint8_t persisted;
} attr_cand_t;

/** The note of a candidate touch. */
static inline const char *attr_cand_note(const attr_cand_t *t)
{
    return t->event_id + t->note_off;
}

/** A conversion with its materialised attribution. */
typedef struct st_attr_conv_t {
    char *order_id;               /* in strs; the viewer and the product follow it */
    const char *viewer, *product; /* in strs, NUL-terminated */
    uint32_t order_id_len, viewer_len, product_len;
    uint64_t vp_hash; /* attr_vp_hash() of the two strings */
    uint64_t seq;     /* its number in the database (attr_conversion_in_t.seq) */
    int64_t quantity;
    int64_t amount;         /* gross */
    int64_t refunded;       /* committed refunds */
    int64_t refund_pending; /* admitted, not yet durable */
    int64_t occur_ns;
    int32_t day;
    uint8_t state;
    uint8_t dirty;      /* in the recompute list */
    uint8_t in_persist; /* in the persist list */
    uint8_t applied;    /* its credits are in the rollups */
    attr_cand_t *cands;
    uint32_t n_cands, cap_cands;
    /* result: eligible touches (indices into cands) in touch order, and per model
     * (index model - 1) the credit in ATTR_CREDIT_ONE units and the minor units */
    uint32_t n_elig;
    uint32_t *elig;
    int64_t *credit; /* [ATTR_N_MODELS * n_elig] */
    int64_t *minor;  /* [ATTR_N_MODELS * n_elig] */
    int64_t *num;    /* [ATTR_N_MODELS * n_elig] numerators, for `credit` doubles */
    int64_t den[ATTR_N_MODELS];
    int64_t applied_net;
    int64_t settings_version;
    /* the cache (live conversions) */
    uint32_t pins;       /* holders that need it in memory (attr_conv_pin()) */
    uint32_t cached;     /* in the cache: the LRU list, the (viewer, product) chain */
    uint64_t commit_seq; /* st->next_commit_seq when committed or loaded */
    size_t bytes;        /* what it holds, counted in st->cache_bytes */
    struct st_attr_conv_t *lru_prev, *lru_next; /* prev: more recently used */
    struct st_attr_conv_t *vp_next;             /* the next cached one with its vp_hash */
    /* Inline room for the common case, so that a conversion with one candidate and one
     * eligible touch is one allocation (the cache churns: fewer, bigger blocks keep the
     * allocator fast): the first candidate, its strings when they fit, a one-touch
     * result. `cands`, `cands[0].event_id` and `credit` point here when they do. */
    attr_cand_t cand0;
    int64_t res1[3 * ATTR_N_MODELS];
    uint32_t elig1;
    char cand0_str[68];
    char strs[]; /* order_id, viewer, product */
} attr_conv_t;

typedef struct st_attr_refund_t {
    char *refund_id; /* malloc'd */
    uint32_t refund_id_len;
    attr_conv_t *conv;
    int64_t amount;
    int64_t occur_ns;
    uint8_t state;
} attr_refund_t;

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
    uint32_t field; /* ATTR__F_* of attr_state.c */
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

typedef struct st_attr_unattr_day_t {
    int32_t day;
    int64_t count;
    attr_sum_t gmv;
} attr_unattr_day_t;

/** A Bloom filter of the (viewer, product) keys of conversions, and the latest of them. */
typedef struct st_attr_cfilter_t {
    attr_bloom_t bloom;
    uint64_t cap;         /* keys it was sized for */
    int64_t max_occur_ns; /* the latest occur_time of a conversion in it */
} attr_cfilter_t;

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
    attr_map64_t conv_vp; /* vp_hash -> the first cached conversion with it (vp_next) */
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
    attr_map64_t wide_at; /* attr__wide_key() -> index in wide (attr_state_index_wide()) */

    /* counters */
    uint64_t exposures_live; /* committed, in runs in memory */
    uint64_t bloom_maybes;   /* admits the Bloom filters sent to disk */

    /* scratch space of recompute() */
    unsigned char *scratch;
    size_t scratch_cap;
} attr_state_t;

int attr_state_init(attr_state_t *st);
void attr_state_free(attr_state_t *st);

/* ---- exposures ---- */

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

/** Results of admit. */
enum { ATTR_ADMITTED = 0, ATTR_DUPLICATE = 1, ATTR_UNSURE = 4 };

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

/** Adds counts of a pruned segment's exposures (loaded from the database). */
int attr_state_add_exposure_rollup(attr_state_t *st, const char *creator, size_t len, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks);

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

/** The open run (NULL when none is open). */
static inline attr_run_t *attr_state_open_run(const attr_state_t *st)
{
    return st->n_runs > 0 && st->runs[st->n_runs - 1]->state == ATTR_RUN_OPEN
               ? st->runs[st->n_runs - 1]
               : NULL;
}

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

/* ---- conversions ---- */

typedef struct st_attr_conversion_in_t {
    const char *order_id;
    size_t order_id_len;
    const char *viewer_id;
    size_t viewer_len;
    const char *product_id;
    size_t product_len;
    int64_t quantity;
    int64_t amount_minor;
    int64_t occur_ns;
    uint64_t seq; /* the caller's number for it (attribution.db's conversions.seq) */
} attr_conversion_in_t;

/**
 * Returns ATTR_ADMITTED with `*out` (pending), ATTR_DUPLICATE (pending or cached: one
 * that is only in the database is the caller's to find), -EINVAL (a string longer than
 * UINT32_MAX / 4) or -ENOMEM.
 */
int attr_conversion_admit(attr_state_t *st, const attr_conversion_in_t *in, attr_conv_t **out);

/**
 * Makes it visible (the caller has stored it): captures its candidates from the runs
 * in memory (exposures of the same viewer and product, at or before it, within the
 * horizon; the caller adds those of the index files first with
 * attr_conversion_add_cand()), credits it, puts it in the cache and, when it is within
 * the horizon, its key in the conversion filter. Evicts nothing (attr_state_evict()).
 * -EEXIST when a stored conversion of its id is in the cache (it was loaded while this
 * one was on its way, so this one is a duplicate: abort it).
 */
int attr_conversion_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns);

/** Forgets a pending conversion (not stored, or a duplicate of a stored one); frees it. */
void attr_conversion_abort(attr_state_t *st, attr_conv_t *c);

/** The cached live conversion `order_id` (marked recently used), or NULL. */
attr_conv_t *attr_conversion_find(attr_state_t *st, const char *order_id, size_t len);

/** The pending conversion `order_id` (admitted, not committed), or NULL. */
attr_conv_t *attr_conversion_pending(attr_state_t *st, const char *order_id, size_t len);

/**
 * Puts a stored conversion (not cached: check first; a pending one of the same id may
 * be on its way, a duplicate) in the cache as live,
 * with `refunded` of committed refunds: then add its stored candidates
 * (attr_conversion_add_cand() with `persisted`) and call attr_conversion_loaded().
 * Returns 0 or -ENOMEM.
 */
int attr_conversion_load(attr_state_t *st, const attr_conversion_in_t *in, int64_t refunded,
                         attr_conv_t **out);

/**
 * Computes the result of a loaded conversion under the current settings. `apply` non-zero
 * adds it to the rollups (start-up: the rollups are being built); zero takes it as
 * already there (a conversion evicted earlier: the rollups kept its credits). Returns 0
 * or -ENOMEM (then it is not applied: evicting it is safe only with `apply` zero).
 */
int attr_conversion_loaded(attr_state_t *st, attr_conv_t *c, int apply);

/** Drops a loaded conversion whose load failed (nothing may refer to it); frees it. */
void attr_conversion_unload(attr_state_t *st, attr_conv_t *c);

/**
 * A conversion outside the cache (ExplainConversion of one that is not in memory, a
 * restatement): attr_conv_new(), its candidates with attr_conversion_add_cand()
 * (`persisted` non-zero), then attr_conv_compute() (the result under st's settings) or
 * attr_conv_apply() (the result, added to st's rollups); attr_conv_free() at the end.
 * NULL: no memory.
 */
attr_conv_t *attr_conv_new(const attr_conversion_in_t *in, int64_t refunded);
int attr_conv_compute(attr_state_t *st, attr_conv_t *c);
int attr_conv_apply(attr_state_t *st, attr_conv_t *c);
void attr_conv_free(attr_conv_t *c);

/* ---- the conversion cache ---- */

/** Sets the most bytes of cached conversions attr_state_evict() keeps (0: no limit). */
void attr_state_set_cache_budget(attr_state_t *st, size_t bytes);

/**
 * Whether a cached conversion may leave memory now: nothing pins it, its candidates are
 * persisted and its result applied, no refund of it is pending, it was committed before
 * `evict_guard`, and nothing holds evictions.
 */
int attr_conv_evictable(const attr_state_t *st, const attr_conv_t *c);

/**
 * Drops least recently used conversions that may leave (attr_conv_evictable()) until
 * the cache is within its budget (looking at a bounded number of others on the way).
 * Returns how many left. Pointers to the ones that left are invalid.
 */
size_t attr_state_evict(attr_state_t *st);

/** Keeps a cached conversion in memory until attr_conv_unpin(). */
static inline void attr_conv_pin(attr_conv_t *c)
{
    c->pins++;
}

static inline void attr_conv_unpin(attr_conv_t *c)
{
    if (c->pins > 0) {
        c->pins--;
    }
}

/* ---- the conversion filter ---- */

/**
 * Whether a stored conversion of this (viewer, product) key at or after `occur_ns` may
 * exist (0: certainly not; 1: maybe: the caller looks in the database). Only
 * conversions within the horizon are in the filter; no false "no".
 */
int attr_state_conv_maybe(const attr_state_t *st, uint64_t vp_hash, int64_t occur_ns);

/** Adds a conversion's key to the filter. Returns 0 or -ENOMEM. */
int attr_state_conv_filter_add(attr_state_t *st, uint64_t vp_hash, int64_t occur_ns);

/** Frees the filters whose conversions are all past the horizon. */
void attr_state_conv_filter_prune(attr_state_t *st, int64_t now_ns);

/** Replaces the filters with `from`'s (which are then its no more). */
void attr_state_conv_filter_take(attr_state_t *st, attr_state_t *from);

/** The bytes the conversion filter holds. */
size_t attr_state_conv_filter_bytes(const attr_state_t *st);

/**
 * For a pending exposure: for each product (maybe[k]), whether a conversion that is not
 * in memory may join it (attr_state_conv_maybe() of its key; 0 past the horizon).
 * Returns how many may.
 */
size_t attr_exposure_conv_maybe(const attr_state_t *st, uint64_t seq, int64_t now_ns,
                                uint8_t *maybe);

/** Whether a conversion at occur_ns arriving now may miss pruned touches. */
int attr_conversion_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns);

/**
 * Adds a candidate touch to a conversion: a persisted one at start-up (`persisted`
 * non-zero), or one the caller found in the index files (zero: it will be persisted).
 * Duplicates (same event id) are ignored; a live conversion is recredited (now, or at
 * the flush in `defer` mode). Returns 0 or -ENOMEM.
 */
int attr_conversion_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id,
                             const char *creator, size_t creator_len, const char *note,
                             size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                             int persisted);

/* ---- refunds ---- */

/** Refund admit results besides ATTR_ADMITTED / ATTR_DUPLICATE. */
enum { ATTR_UNKNOWN_ORDER = 2, ATTR_TOO_LARGE = 3 };

/**
 * Checks the refund id against the pending refunds (the stored ones are the caller's to
 * check), the order (a cached live conversion: the caller loads it first) and the
 * amount left (after committed and pending refunds). Returns ATTR_ADMITTED (*out
 * pending; the conversion stays in memory until it commits or aborts), ATTR_DUPLICATE,
 * ATTR_UNKNOWN_ORDER, ATTR_TOO_LARGE (`*left` says what is left), or -ENOMEM.
 */
int attr_refund_admit(attr_state_t *st, const char *refund_id, size_t len, const char *order_id,
                      size_t order_len, int64_t amount, int64_t occur_ns, attr_refund_t **out,
                      int64_t *left);
/** Applies a pending refund (stored by the caller) and frees it. */
int attr_refund_commit(attr_state_t *st, attr_refund_t *r);
/** Forgets a pending refund and frees it. */
void attr_refund_abort(attr_state_t *st, attr_refund_t *r);

/* ---- recomputation ---- */

/** Recomputes every dirty conversion (see `defer`). Returns 0 or -ENOMEM. */
int attr_state_flush(attr_state_t *st);

/**
 * Replaces the settings and restates every cached conversion in place (all of them when
 * nothing was evicted). Returns 0 or -ENOMEM.
 */
int attr_state_set_settings(attr_state_t *st, const attr_settings_t *s);

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

/**
 * Restatement with the conversions that are not in memory: `from` holds their credits
 * under `s` (attr_conv_apply() into a state with settings `s`). Sets the settings,
 * replaces the credit rollups (not the exposure counts) with `from`'s, and adds those of
 * every cached conversion, recomputed. `from` may be NULL (nothing outside the cache).
 * Returns 0 or -ENOMEM (the rollups may then lack credits: the caller retries).
 */
int attr_state_replace_credits(attr_state_t *st, const attr_state_t *from,
                               const attr_settings_t *s);

/**
 * Takes the conversions whose candidates are not all persisted: `*out` gets a malloc'd
 * array (free it) of `*n`; they leave the persist list. After persisting, call
 * attr_state_mark_persisted() for each (or attr_state_repersist() if it failed).
 */
int attr_state_take_persist(attr_state_t *st, attr_conv_t ***out, size_t *n);
void attr_state_mark_persisted(attr_conv_t *c, uint32_t upto);
int attr_state_repersist(attr_state_t *st, attr_conv_t *c);

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

void attr_state_mem(const attr_state_t *st, attr_state_mem_t *out);

/* ---- queries ---- */

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

/** The number of creators known (ids are 0..n-1). */
static inline uint32_t attr_state_n_creators(const attr_state_t *st)
{
    return st->creators.count;
}

/** The net amount of a conversion (gross less committed refunds). */
static inline int64_t attr_conv_net(const attr_conv_t *c)
{
    return c->amount - c->refunded;
}

#ifdef __cplusplus
}
#endif
#endif
