/*
 * attr_state.h — everything the attribution service knows, in memory, owned by the
 * loop thread: interned ids, the exposures of the join horizon (dedup set and join
 * index), every conversion with its candidate touches and its credits under all five
 * models (materialised), refunds, and the rollups per (creator, UTC day) that reports
 * read. No I/O and no clock: callers pass `now_ns`; the service persists what this
 * module tells it to (attr_service.c, attr_store.c, attr_log.c).
 *
 * Life of an event: *_admit() (validated by the caller; checks the id for a duplicate,
 * reserves it, returns a handle) -> the caller makes it durable -> *_commit() (it
 * becomes visible: indexes, rollups, re-attribution) or *_abort() (forgotten; its id
 * may come again). Between admit and commit the event is invisible to queries but its
 * id already counts as seen, so that a duplicate later in the same batch, or in a batch
 * that overtakes it, is reported as such.
 *
 * Horizon H = max(click_window, view_window) + late_window. An exposure joins
 * conversions only while its occur_time is within H behind the wall clock; older ones
 * are counted in rollups only (past_join_horizon). A conversion's candidates are
 * captured when it commits and grow when a late exposure commits; they are kept with
 * the conversion (and persisted by the service) so that refunds and settings changes
 * can restate it after its exposures were pruned from memory.
 */
#ifndef ATTR_STATE_H
#define ATTR_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_credit.h"
#include "services/attribution/attr_hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Exposures per chunk of memory (freed whole when all are past the horizon). */
#define ATTR_CHUNK_EXPOSURES 65536

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

enum { ATTR_PENDING = 1, ATTR_LIVE = 2, ATTR_DEAD = 3 };

/** One exposure in memory. */
typedef struct st_attr_exp_t {
    const char *event_id; /* NUL-terminated, in the chunk's arena */
    int64_t occur_ns;
    int64_t watch_ms;
    uint32_t viewer, creator, note;
    uint32_t prod_off; /* into the chunk's product ids */
    uint16_t n_products;
    uint16_t event_id_len;
    uint8_t kind;
    uint8_t state;
    uint8_t joinable; /* within the horizon when committed */
} attr_exp_t;

typedef struct st_attr_chunk_t attr_chunk_t;

/** A candidate touch kept with a conversion (copied, so exposures may be pruned). */
typedef struct st_attr_cand_t {
    char *event_id; /* malloc'd */
    uint32_t creator, note;
    int64_t occur_ns;
    int64_t watch_ms;
    uint8_t kind;
    uint8_t persisted;
} attr_cand_t;

/** A conversion with its materialised attribution. */
typedef struct st_attr_conv_t {
    char *order_id; /* malloc'd */
    uint32_t order_id_len;
    uint32_t viewer, product;
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
} attr_conv_t;

typedef struct st_attr_refund_t {
    char *refund_id; /* malloc'd */
    uint32_t refund_id_len;
    attr_conv_t *conv;
    int64_t amount;
    int64_t occur_ns;
    uint8_t state;
} attr_refund_t;

/** Rollup of one creator and one UTC day. */
typedef struct st_attr_day_t {
    int32_t day;
    int64_t impressions, views, clicks;
    int64_t credit[ATTR_N_MODELS];
    int64_t gmv[ATTR_N_MODELS];
} attr_day_t;

/** Per creator (indexed by interned id): rollups and the tier label cache. */
typedef struct st_attr_creator_t {
    attr_day_t *days; /* sorted by day */
    uint32_t n_days, cap_days;
    int tier;        /* tier enum value; valid when tier_ns != 0 */
    int64_t tier_ns; /* when the label was fetched; 0: never */
} attr_creator_t;

typedef struct st_attr_unattr_day_t {
    int32_t day;
    int64_t count;
    int64_t gmv;
} attr_unattr_day_t;

/**
 * A small vector of uint64 (the join index's and conversions' lists). Most hold one
 * item: that one lives inline (cap <= 1), so a new key costs no allocation.
 */
typedef struct st_attr_vec_t {
    union {
        uint64_t *items; /* cap > 1 */
        uint64_t one;    /* cap <= 1 */
    } u;
    uint32_t n, cap;
} attr_vec_t;

static inline uint64_t *attr_vec_items(attr_vec_t *v)
{
    return v->cap <= 1 ? &v->u.one : v->u.items;
}

/** An interned string handed back by admit (same layout as attr_log_str_t). */
typedef struct st_attr_interned_t {
    const char *s;
    uint32_t len;
    uint32_t id;
} attr_interned_t;

typedef struct st_attr_state_t {
    attr_settings_t settings;
    attr_rules_t rules;
    attr_intern_t viewers, creators, notes, products;

    /* exposures: chunks in arrival order; seq = position in that order */
    attr_chunk_t **chunks;
    size_t n_chunks, cap_chunks;
    uint64_t base_seq; /* seq of the first exposure of chunks[0] */
    uint64_t next_seq;
    attr_strmap_t event_ids; /* event_id -> seq + 1 (as a pointer-sized integer) */
    attr_map64_t join;       /* (viewer << 32 | product) -> index into vecs */
    attr_vec_t *vecs;        /* join lists: seqs in touch order */
    size_t n_vecs, cap_vecs;
    uint32_t *free_vecs;
    size_t n_free_vecs, cap_free_vecs;
    size_t sweep_pos; /* where the incremental join sweep goes on */

    /* conversions and refunds */
    attr_strmap_t orders;   /* order_id -> attr_conv_t* (pending and live) */
    attr_map64_t conv_vp;   /* (viewer << 32 | product) -> index into conv_lists */
    attr_vec_t *conv_lists; /* conversion pointers (as uint64) */
    size_t n_conv_lists, cap_conv_lists;
    attr_conv_t **convs; /* live ones, in commit order */
    size_t n_convs, cap_convs;
    attr_conv_t **graveyard; /* aborted, freed at the end */
    size_t n_graveyard, cap_graveyard;
    attr_strmap_t refunds; /* refund_id -> attr_refund_t* */
    attr_refund_t **refund_list;
    size_t n_refunds, cap_refunds;

    /* work lists */
    attr_conv_t **dirty; /* to recompute */
    size_t n_dirty, cap_dirty;
    attr_conv_t **persist; /* with candidates not yet persisted */
    size_t n_persist, cap_persist;
    int defer; /* non-zero: commits mark dirty, attr_state_flush() recomputes */

    /* rollups */
    attr_creator_t *creator_meta;
    size_t cap_creator_meta;
    attr_unattr_day_t *unattr;
    size_t n_unattr, cap_unattr;

    /* counters */
    uint64_t exposures_live;

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
enum { ATTR_ADMITTED = 0, ATTR_DUPLICATE = 1 };

/**
 * Checks the event id and reserves it. Returns ATTR_ADMITTED with `*seq`,
 * ATTR_DUPLICATE, or -ENOMEM. When admitted and `out` is not NULL, out[0..2] get the
 * interned viewer, creator and note, out[3 + k] product k (the strings never move).
 */
int attr_exposure_admit(attr_state_t *st, const attr_exposure_in_t *in, int64_t now_ns,
                        uint64_t *seq, attr_interned_t *out);

/**
 * Starts loading what admitting `in` will touch first (the hash slots of its ids), so
 * that the cache misses of a few events overlap: call it a couple of events ahead.
 */
void attr_exposure_prefetch(const attr_state_t *st, const char *event_id, const char *viewer,
                            const char *creator, const char *note, const char *const *products,
                            size_t n_products);

/** The exposure `seq` (admitted, not yet pruned), or NULL. */
attr_exp_t *attr_exposure_get(attr_state_t *st, uint64_t seq);

/** Its product ids. */
const uint32_t *attr_exposure_products(attr_state_t *st, uint64_t seq);

/**
 * Makes an admitted exposure visible: rollups, and (when within the horizon) the join
 * index and the conversions it matches late. Returns 1 when it joined, 0 when it
 * arrived past the horizon, -ENOMEM.
 */
int attr_exposure_commit(attr_state_t *st, uint64_t seq, int64_t now_ns);

/** Forgets an admitted exposure (it was not made durable). */
void attr_exposure_abort(attr_state_t *st, uint64_t seq);

/** Whether an exposure at occur_ns arriving now is past the horizon. */
int attr_exposure_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns);

/** Adds counts of a pruned segment's exposures (loaded from the database). */
int attr_state_add_exposure_rollup(attr_state_t *st, const char *creator, size_t len, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks);

/**
 * Frees the memory of exposures past the horizon (whole chunks) and sweeps up to
 * `budget` join-index keys. Returns the number of exposures freed.
 */
size_t attr_state_prune(attr_state_t *st, int64_t now_ns, size_t budget);

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
} attr_conversion_in_t;

/** Returns ATTR_ADMITTED with `*out` (pending), ATTR_DUPLICATE, or -ENOMEM. */
int attr_conversion_admit(attr_state_t *st, const attr_conversion_in_t *in, attr_conv_t **out);

/**
 * Makes it visible: captures its candidates from the join index (exposures of the
 * same viewer and product, at or before it, within the horizon) and credits it.
 */
int attr_conversion_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns);

void attr_conversion_abort(attr_state_t *st, attr_conv_t *c);

/** The live conversion `order_id`, or NULL. */
attr_conv_t *attr_conversion_find(attr_state_t *st, const char *order_id, size_t len);

/** Whether a conversion at occur_ns arriving now may miss pruned touches. */
int attr_conversion_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns);

/**
 * Adds a persisted candidate to a conversion being loaded (start-up). Duplicates (same
 * event id) are ignored. Returns 0 or -ENOMEM.
 */
int attr_conversion_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id,
                             const char *creator, size_t creator_len, const char *note,
                             size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                             int persisted);

/* ---- refunds ---- */

/** Refund admit results besides ATTR_ADMITTED / ATTR_DUPLICATE. */
enum { ATTR_UNKNOWN_ORDER = 2, ATTR_TOO_LARGE = 3 };

/**
 * Checks the refund id, the order and the amount left (after committed and pending
 * refunds). Returns ATTR_ADMITTED (*out pending), ATTR_DUPLICATE, ATTR_UNKNOWN_ORDER,
 * ATTR_TOO_LARGE (`*left` says what is left), or -ENOMEM.
 */
int attr_refund_admit(attr_state_t *st, const char *refund_id, size_t len, const char *order_id,
                      size_t order_len, int64_t amount, int64_t occur_ns, attr_refund_t **out,
                      int64_t *left);
int attr_refund_commit(attr_state_t *st, attr_refund_t *r);
void attr_refund_abort(attr_state_t *st, attr_refund_t *r);

/* ---- recomputation ---- */

/** Recomputes every dirty conversion (see `defer`). Returns 0 or -ENOMEM. */
int attr_state_flush(attr_state_t *st);

/** Replaces the settings and restates every conversion. Returns 0 or -ENOMEM. */
int attr_state_set_settings(attr_state_t *st, const attr_settings_t *s);

/**
 * Takes the conversions whose candidates are not all persisted: `*out` gets a malloc'd
 * array (free it) of `*n`; they leave the persist list. After persisting, call
 * attr_state_mark_persisted() for each (or attr_state_repersist() if it failed).
 */
int attr_state_take_persist(attr_state_t *st, attr_conv_t ***out, size_t *n);
void attr_state_mark_persisted(attr_conv_t *c, uint32_t upto);
int attr_state_repersist(attr_state_t *st, attr_conv_t *c);

/* ---- queries ---- */

typedef struct st_attr_sums_t {
    int64_t impressions, views, clicks;
    int64_t credit; /* ATTR_CREDIT_ONE units */
    int64_t gmv;
} attr_sums_t;

/** Sums creator `creator`'s rollups over days [d0, d1) under `model` (1..5). */
void attr_state_creator_sums(const attr_state_t *st, uint32_t creator, int32_t d0, int32_t d1,
                             int model, attr_sums_t *out);

/** Unattributed conversions and their net amount over days [d0, d1). */
void attr_state_unattributed(const attr_state_t *st, int32_t d0, int32_t d1, int64_t *count,
                             int64_t *gmv);

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
