/*
 * attr_orders.h — the conversions (orders) of the in-memory state (attr_state.h): their
 * candidate touches and their credits under all five models (materialised), the cache
 * that holds them, its eviction, the conversion filter, refunds and recomputation. Part
 * of attr_state_t; include attr_state.h.
 *
 * A conversion's candidates are captured when it commits (from the runs in memory, plus
 * what the caller found in the index files and passed with attr_conv_add_cand())
 * and grow when a late exposure commits; they are kept with the conversion (and
 * persisted by the service) so that refunds and settings changes can restate it after
 * its exposures left memory.
 *
 * Memory does not grow with the conversions either: the conversions in memory are a
 * cache (`cache_budget` bytes) of the database, which the service keeps complete. A
 * conversion is committed into the cache; attr_state_evict() drops the least recently
 * used ones that nothing needs any more (not pinned, candidates persisted, no refund
 * pending, not committed after `evict_guard`); the service loads one back
 * (attr_conv_load(), attr_conv_loaded()) before a refund or a late exposure
 * changes it. The rollups always hold the credits of every conversion, cached or not,
 * computed under the current settings from its stored candidates and refunds, so that
 * a conversion loaded again gets exactly the result the rollups hold. What stays per
 * conversion: 2 bytes in the conversion filter (a Bloom filter of its viewer and
 * product) while it is within the horizon, so that an exposure can tell whether it may
 * join a conversion that is not in memory.
 */
#ifndef ATTR_ORDERS_H
#define ATTR_ORDERS_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_bloom.h"
#include "services/attribution/attr_credit.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The state (attr_state.h), of which this is a part. */
typedef struct st_attr_state_t attr_state_t;
/** The settings (attr_state.h). */
typedef struct st_attr_settings_t attr_settings_t;

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
    uint64_t seq;     /* its number in the database (attr_conv_in_t.seq) */
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

/** A pending refund (admitted, not yet durable); the committed ones are in the database. */
typedef struct st_attr_refund_t {
    char *refund_id; /* malloc'd */
    uint32_t refund_id_len;
    attr_conv_t *conv;
    int64_t amount;
    int64_t occur_ns;
    uint8_t state;
} attr_refund_t;

/** A Bloom filter of the (viewer, product) keys of conversions, and the latest of them. */
typedef struct st_attr_cfilter_t {
    attr_bloom_t bloom;
    uint64_t cap;         /* keys it was sized for */
    int64_t max_occur_ns; /* the latest occur_time of a conversion in it */
} attr_cfilter_t;

/** A conversion event to admit or load (the strings are copied). */
typedef struct st_attr_conv_in_t {
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
} attr_conv_in_t;

/**
 * Returns ATTR_ADMITTED with `*out` (pending), ATTR_DUPLICATE (pending or cached: one
 * that is only in the database is the caller's to find), -EINVAL (a string longer than
 * UINT32_MAX / 4) or -ENOMEM.
 */
int attr_conv_admit(attr_state_t *st, const attr_conv_in_t *in, attr_conv_t **out);

/**
 * Makes it visible (the caller has stored it): captures its candidates from the runs
 * in memory (exposures of the same viewer and product, at or before it, within the
 * horizon; the caller adds those of the index files first with
 * attr_conv_add_cand()), credits it, puts it in the cache and, when it is within
 * the horizon, its key in the conversion filter. Evicts nothing (attr_state_evict()).
 * -EEXIST when a stored conversion of its id is in the cache (it was loaded while this
 * one was on its way, so this one is a duplicate: abort it).
 */
int attr_conv_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns);

/** Forgets a pending conversion (not stored, or a duplicate of a stored one); frees it. */
void attr_conv_abort(attr_state_t *st, attr_conv_t *c);

/** The cached live conversion `order_id` (marked recently used), or NULL. */
attr_conv_t *attr_conv_find(attr_state_t *st, const char *order_id, size_t len);

/** The pending conversion `order_id` (admitted, not committed), or NULL. */
attr_conv_t *attr_conv_pending(attr_state_t *st, const char *order_id, size_t len);

/**
 * Puts a stored conversion (not cached: check first; a pending one of the same id may
 * be on its way, a duplicate) in the cache as live,
 * with `refunded` of committed refunds: then add its stored candidates
 * (attr_conv_add_cand() with `persisted`) and call attr_conv_loaded().
 * Returns 0 or -ENOMEM.
 */
int attr_conv_load(attr_state_t *st, const attr_conv_in_t *in, int64_t refunded, attr_conv_t **out);

/**
 * Computes the result of a loaded conversion under the current settings. `apply` non-zero
 * adds it to the rollups (start-up: the rollups are being built); zero takes it as
 * already there (a conversion evicted earlier: the rollups kept its credits). Returns 0
 * or -ENOMEM (then it is not applied: evicting it is safe only with `apply` zero).
 */
int attr_conv_loaded(attr_state_t *st, attr_conv_t *c, int apply);

/** Drops a loaded conversion whose load failed (nothing may refer to it); frees it. */
void attr_conv_unload(attr_state_t *st, attr_conv_t *c);

/**
 * A conversion outside the cache (ExplainConversion of one that is not in memory, a
 * restatement): attr_conv_new(), its candidates with attr_conv_add_cand()
 * (`persisted` non-zero), then attr_conv_compute() (the result under st's settings) or
 * attr_conv_apply() (the result, added to st's rollups); attr_conv_free() at the end.
 * NULL: no memory.
 */
attr_conv_t *attr_conv_new(const attr_conv_in_t *in, int64_t refunded);
/** The result of `c` under st's settings, the rollups untouched. 0 or -ENOMEM. */
int attr_conv_compute(attr_state_t *st, attr_conv_t *c);
/** attr_conv_compute(), the result added to st's rollups. 0 or -ENOMEM. */
int attr_conv_apply(attr_state_t *st, attr_conv_t *c);
/** Frees a conversion of attr_conv_new() (NULL: nothing). */
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

/** Lets a conversion pinned with attr_conv_pin() leave memory again. */
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

/** Whether a conversion at occur_ns arriving now may miss pruned touches. */
int attr_conv_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns);

/**
 * Adds a candidate touch to a conversion: a persisted one at start-up (`persisted`
 * non-zero), or one the caller found in the index files (zero: it will be persisted).
 * Duplicates (same event id) are ignored; a live conversion is recredited (now, or at
 * the flush in `defer` mode). Returns 0 or -ENOMEM.
 */
int attr_conv_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id, const char *creator,
                       size_t creator_len, const char *note, size_t note_len, int kind,
                       int64_t watch_ms, int64_t occur_ns, int persisted);

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
/** Whether a refund of that id is pending (admitted, not yet committed nor aborted). */
int attr_refund_pending(const attr_state_t *st, const char *refund_id, size_t len);
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
/** Marks the first `upto` candidates of `c` persisted (the ones that were taken). */
void attr_state_mark_persisted(attr_conv_t *c, uint32_t upto);
/** Puts `c` back on the persist list (persisting it failed). 0 or -ENOMEM. */
int attr_state_repersist(attr_state_t *st, attr_conv_t *c);

/** The net amount of a conversion (gross less committed refunds). */
static inline int64_t attr_conv_net(const attr_conv_t *c)
{
    return c->amount - c->refunded;
}

#ifdef __cplusplus
}
#endif
#endif
