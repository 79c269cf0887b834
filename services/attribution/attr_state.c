/* attr_state.c — the in-memory attribution state. See attr_state.h. */
#include "services/attribution/attr_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/** Pending exposures per chunk, and the arena block size of a chunk. */
#define ATTR__PCHUNK 1024
#define ATTR__PBLOCK (64u << 10)
/** Products per exposure a run can hold (7 bits of a join slot). */
#define ATTR__MAX_PRODUCTS 127
/** Records per run a join slot can address (25 bits). */
#define ATTR__RUN_LIMIT ((UINT32_C(1) << 25) - 2)

struct st_attr_pchunk_t {
    uint32_t n;    /* records used */
    uint32_t open; /* records not yet resolved */
    char **blocks; /* of ATTR__PBLOCK bytes; [0, cur_block] used, the rest kept for reuse */
    size_t n_blocks, cap_blocks, cur_block;
    char **bigs; /* blocks of their own (long strings) */
    size_t n_bigs, cap_bigs;
    char *cur;
    size_t left;
    attr_pexp_t recs[ATTR__PCHUNK];
};

/** Settled chunks kept for reuse, with their blocks (see attr__pchunk_recycle()). */
#define ATTR__SPARE_PCHUNKS 4
/**
 * Blocks a settled chunk keeps for reuse: enough for 1,024 ordinary exposures (about
 * 150 bytes of strings each); wide ones (25 KB) had made each kept chunk 25 MB for good.
 */
#define ATTR__SPARE_BLOCKS 4
_Static_assert(ATTR__SPARE_PCHUNKS ==
                   sizeof((attr_state_t *)0)->spare_pchunks / sizeof(attr_pchunk_t *),
               "attr_state_t.spare_pchunks");

/* ---- small helpers ---- */

/** Grows *arr (of elements of `size`) to hold at least `need`. 0 or -ENOMEM. */
static int attr__grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap : 8;
    while (nc < need) {
        nc *= 2;
    }
    void *p = realloc(*arr, nc * size);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

#define ATTR__GROW(arr, cap, need) attr__grow((void **)&(arr), &(cap), (need), sizeof *(arr))

/* ---- settings ---- */

void attr_settings_default(attr_settings_t *s)
{
    memset(s, 0, sizeof *s);
    attr_rules_t r;
    attr_rules_default(&r);
    s->click_window_ns = r.click_window_ns;
    s->view_window_ns = r.view_window_ns;
    s->half_life_ns = r.half_life_ns;
    s->engaged_view_ms = r.engaged_view_ms;
    s->late_window_ns = 7 * ATTR_NS_PER_DAY;
    s->default_model = ATTR_MODEL_LAST_TOUCH;
    memcpy(s->currency, "CNY", 4);
}

int64_t attr_settings_horizon(const attr_settings_t *s)
{
    int64_t w = s->click_window_ns > s->view_window_ns ? s->click_window_ns : s->view_window_ns;
    return w + s->late_window_ns;
}

void attr_settings_rules(const attr_settings_t *s, attr_rules_t *r)
{
    r->click_window_ns = s->click_window_ns;
    r->view_window_ns = s->view_window_ns;
    r->half_life_ns = s->half_life_ns;
    r->engaged_view_ms = s->engaged_view_ms;
}

/* ---- init / free ---- */

int attr_state_init(attr_state_t *st)
{
    memset(st, 0, sizeof *st);
    attr_settings_default(&st->settings);
    attr_settings_rules(&st->settings, &st->rules);
    attr_intern_init(&st->creators);
    attr_strmap_init(&st->pend_ids);
    attr_strmap_init(&st->orders);
    attr_strmap_init(&st->pend_orders);
    attr_map64_init(&st->conv_vp);
    attr_map64_init(&st->wide_at);
    attr_strmap_init(&st->refunds);
    st->run_max = ATTR_RUN_EXPOSURES;
    st->run_hint = 1024;
    st->next_run_id = 1;
    st->next_commit_seq = 1;
    st->evict_guard = UINT64_MAX;
    return 0;
}

static void attr__pchunk_free(attr_pchunk_t *c)
{
    for (size_t i = 0; i < c->n_blocks; i++) {
        free(c->blocks[i]);
    }
    for (size_t i = 0; i < c->n_bigs; i++) {
        free(c->bigs[i]);
    }
    free(c->blocks);
    free(c->bigs);
    free(c);
}

static void attr__run_free(attr_run_t *r)
{
    free(r->recs);
    free(r->arena);
    free(r->eid_slots);
    free(r->join_slots);
    free(r);
}

/** Frees a result block (the one of credit, minor, num and elig) unless it is inline. */
static void attr__result_free(attr_conv_t *c)
{
    if (c->credit != c->res1) {
        free(c->credit);
    }
}

void attr_conv_free(attr_conv_t *c)
{
    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i < c->n_cands; i++) {
        if (c->cands[i].event_id != c->cand0_str) {
            free(c->cands[i].event_id);
        }
    }
    if (c->cands != &c->cand0) {
        free(c->cands);
    }
    attr__result_free(c);
    free(c);
}

void attr_state_free(attr_state_t *st)
{
    for (size_t i = 0; i < st->n_pend; i++) {
        attr__pchunk_free(st->pend[i]);
    }
    for (size_t i = 0; i < st->n_spare_pchunks; i++) {
        attr__pchunk_free(st->spare_pchunks[i]);
    }
    free(st->pend);
    for (size_t i = 0; i < st->n_runs; i++) {
        attr__run_free(st->runs[i]);
    }
    free(st->runs);
    for (size_t i = 0; i < st->n_epochs; i++) {
        attr_bloom_free(&st->epochs[i].bloom);
    }
    free(st->epochs);
    for (size_t i = 0; i < st->n_cfilters; i++) {
        attr_bloom_free(&st->cfilters[i].bloom);
    }
    free(st->cfilters);
    /* Cached conversions are in `orders`, pending ones in `pend_orders`. */
    for (size_t i = 0; i < st->pend_orders.cap; i++) {
        if (st->pend_orders.slots[i].hash != 0) {
            attr_conv_free(st->pend_orders.slots[i].val);
        }
    }
    for (size_t i = 0; i < st->orders.cap; i++) {
        if (st->orders.slots[i].hash != 0) {
            attr_conv_free(st->orders.slots[i].val);
        }
    }
    for (size_t i = 0; i < st->refunds.cap; i++) {
        if (st->refunds.slots[i].hash != 0) {
            attr_refund_t *r = st->refunds.slots[i].val;
            free(r->refund_id);
            free(r);
        }
    }
    free(st->dirty);
    free(st->persist);
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        free(st->creator_meta[i].days);
        free(st->creator_meta[i].cdays);
    }
    free(st->creator_meta);
    free(st->unattr);
    free(st->multi);
    free(st->wide);
    attr_map64_free(&st->wide_at);
    free(st->scratch);
    attr_strmap_free(&st->pend_ids);
    attr_strmap_free(&st->orders);
    attr_strmap_free(&st->pend_orders);
    attr_map64_free(&st->conv_vp);
    attr_strmap_free(&st->refunds);
    attr_intern_free(&st->creators);
    memset(st, 0, sizeof *st);
}

/* ---- rollups ---- */

/*
 * The figures of the rollups: the 32-bit ones of a cell (one that does not fit is in
 * st->wide, the cell holding UINT32_MAX), and the 64-bit ones of an attr_multi_t, per
 * model (past int64 in st->wide, the cell holding INT64_MIN). st->wide keeps the exact
 * value (attr_sum_t).
 */
enum {
    ATTR__F_IMPRESSIONS = 0,
    ATTR__F_VIEWS = 1,
    ATTR__F_CLICKS = 2,
    ATTR__F_SINGLES = 3,
    ATTR__F_GMV = 4,
    ATTR__F_MULTI_CREDIT = 5,               /* + model - 1 */
    ATTR__F_MULTI_GMV = 5 + ATTR_N_MODELS,  /* + model - 1 */
    ATTR__F_CREDIT_FIRST = ATTR__F_SINGLES, /* credits: from here on */
};

static int attr__meta_reserve(attr_state_t *st, uint32_t creator)
{
    if (creator < st->cap_creator_meta) {
        return 0;
    }
    size_t old = st->cap_creator_meta;
    size_t cap = old ? old : 64;
    while (cap <= creator) {
        cap *= 2;
    }
    attr_creator_t *m = realloc(st->creator_meta, cap * sizeof *m);
    if (m == NULL) {
        return -ENOMEM;
    }
    memset(m + old, 0, (cap - old) * sizeof *m);
    st->creator_meta = m;
    st->cap_creator_meta = cap;
    return 0;
}

/**
 * Room for one more element in a per-creator array: 8, then 16 (two weeks of days: the
 * join horizon's worth, in two allocations), then by an eighth, not by doubling, since
 * there are as many of these arrays as creators and a long history should cost about 16
 * bytes a day, not 32. (Growing by small steps from the start made the allocator's heap
 * a sieve of freed arrays, and every allocation of the hot path slower.)
 */
static int attr__grow_cells(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    uint32_t step = *cap < 16 ? (*cap == 0 ? 8 : 16 - *cap) : *cap / 8;
    if (*cap > UINT32_MAX - step) {
        return -ENOMEM;
    }
    void *p = realloc(*arr, ((size_t)*cap + step) * size);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap += step;
    return 0;
}

/** Index of the first element of a day-sorted array whose day is >= `day`. */
#define ATTR__LOWER_BOUND(arr, n, d, out)                                                          \
    do {                                                                                           \
        uint32_t lo_ = 0, hi_ = (n);                                                               \
        while (lo_ < hi_) {                                                                        \
            uint32_t mid_ = lo_ + (hi_ - lo_) / 2;                                                 \
            if ((arr)[mid_].day < (d)) {                                                           \
                lo_ = mid_ + 1;                                                                    \
            } else {                                                                               \
                hi_ = mid_;                                                                        \
            }                                                                                      \
        }                                                                                          \
        (out) = lo_;                                                                               \
    } while (0)

/** The counts of `day` of a creator, added when missing. */
static attr_day_t *attr__day_bucket(attr_state_t *st, uint32_t creator, int32_t day)
{
    if (attr__meta_reserve(st, creator) != 0) {
        return NULL;
    }
    attr_creator_t *m = &st->creator_meta[creator];
    /* Most updates hit the latest day: look there first. */
    if (m->n_days > 0 && m->days[m->n_days - 1].day == day) {
        return &m->days[m->n_days - 1];
    }
    uint32_t lo;
    ATTR__LOWER_BOUND(m->days, m->n_days, day, lo);
    if (lo < m->n_days && m->days[lo].day == day) {
        return &m->days[lo];
    }
    if (attr__grow_cells((void **)&m->days, &m->cap_days, m->n_days, sizeof *m->days) != 0) {
        return NULL;
    }
    memmove(&m->days[lo + 1], &m->days[lo], (m->n_days - lo) * sizeof *m->days);
    m->days[lo] = (attr_day_t){.day = day};
    m->n_days++;
    return &m->days[lo];
}

/** The credits of `day` of a creator, added when missing (NULL: no memory). */
static attr_cday_t *attr__cday_bucket(attr_state_t *st, uint32_t creator, int32_t day)
{
    if (attr__meta_reserve(st, creator) != 0) {
        return NULL;
    }
    attr_creator_t *m = &st->creator_meta[creator];
    if (m->n_cdays > 0 && m->cdays[m->n_cdays - 1].day == day) {
        return &m->cdays[m->n_cdays - 1];
    }
    uint32_t lo;
    ATTR__LOWER_BOUND(m->cdays, m->n_cdays, day, lo);
    if (lo < m->n_cdays && m->cdays[lo].day == day) {
        return &m->cdays[lo];
    }
    if (attr__grow_cells((void **)&m->cdays, &m->cap_cdays, m->n_cdays, sizeof *m->cdays) != 0) {
        return NULL;
    }
    memmove(&m->cdays[lo + 1], &m->cdays[lo], (m->n_cdays - lo) * sizeof *m->cdays);
    m->cdays[lo] = (attr_cday_t){.day = day};
    m->n_cdays++;
    return &m->cdays[lo];
}

/** The per-model figures of a credit cell, added when missing (NULL: no memory). */
static attr_multi_t *attr__multi_of(attr_state_t *st, attr_cday_t *cd)
{
    if (cd->multi == 0) {
        if (st->n_multi >= UINT32_MAX - 1 ||
            ATTR__GROW(st->multi, st->cap_multi, st->n_multi + 1) != 0) {
            return NULL;
        }
        memset(&st->multi[st->n_multi], 0, sizeof st->multi[st->n_multi]);
        cd->multi = (uint32_t)++st->n_multi;
    }
    return &st->multi[cd->multi - 1];
}

/*
 * The wide figures are found through a hash index, not a scan: a client can make many
 * of them (each order of more than UINT32_MAX minor units to another creator or day),
 * and every rollup update and report would otherwise scan them all. Days are within
 * 1970..2200 (attr_validate.h): 28 bits of them are the day.
 */
static uint64_t attr__wide_key(uint32_t creator, int32_t day, uint32_t field)
{
    return (uint64_t)creator << 32 | (uint64_t)((uint32_t)day & 0x0fffffffu) << 4 | field;
}

static attr_wide_t *attr__wide_find(const attr_state_t *st, uint32_t creator, int32_t day,
                                    uint32_t field)
{
    uint64_t at;
    if (!attr_map64_get(&st->wide_at, attr__wide_key(creator, day, field), &at)) {
        return NULL;
    }
    return &st->wide[at];
}

/* Removes st->wide[i] (the last one takes its place). Cannot fail. */
static void attr__wide_drop(attr_state_t *st, size_t i)
{
    attr_wide_t *w = &st->wide[i];
    (void)attr_map64_del(&st->wide_at, attr__wide_key(w->creator, w->day, w->field));
    *w = st->wide[--st->n_wide];
    if (i < st->n_wide) { /* its key is there: replaced, no room needed */
        (void)attr_map64_put(&st->wide_at, attr__wide_key(w->creator, w->day, w->field), i);
    }
}

int attr_state_index_wide(attr_state_t *st)
{
    attr_map64_free(&st->wide_at);
    attr_map64_init(&st->wide_at);
    int rc = attr_map64_reserve(&st->wide_at, st->n_wide);
    for (size_t i = 0; rc == 0 && i < st->n_wide; i++) {
        const attr_wide_t *w = &st->wide[i];
        rc = attr_map64_put(&st->wide_at, attr__wide_key(w->creator, w->day, w->field), i);
    }
    return rc;
}

/** The exact value of a figure that is wide (`missing`: cannot happen, it always is). */
static attr_sum_t attr__wide_value(const attr_state_t *st, uint32_t creator, int32_t day,
                                   uint32_t field, attr_sum_t missing)
{
    const attr_wide_t *w = attr__wide_find(st, creator, day, field);
    return w != NULL ? w->value : missing;
}

/** The value of a 32-bit rollup figure (UINT32_MAX: the whole value is in st->wide). */
static attr_sum_t attr__fig(const attr_state_t *st, uint32_t cell, uint32_t creator, int32_t day,
                            uint32_t field)
{
    return cell != UINT32_MAX ? cell : attr__wide_value(st, creator, day, field, UINT32_MAX);
}

/** The value of a 64-bit rollup figure (INT64_MIN: the whole value is in st->wide). */
static attr_sum_t attr__fig64(const attr_state_t *st, int64_t cell, uint32_t creator, int32_t day,
                              uint32_t field)
{
    return cell != INT64_MIN ? cell : attr__wide_value(st, creator, day, field, INT64_MIN);
}

/** Room for `n` more wide figures, so that an update cannot fail halfway. */
static int attr__wide_reserve(attr_state_t *st, size_t n)
{
    int rc = ATTR__GROW(st->wide, st->cap_wide, st->n_wide + n);
    return rc != 0 ? rc : attr_map64_reserve(&st->wide_at, n);
}

/*
 * Where the new value `v` of a figure goes: back in its cell when it is within [lo, hi]
 * (returns 1; its wide figure, if it had one, is dropped), else in st->wide (returns 0;
 * the caller puts the cell's mark). -ENOMEM without room (reserve first to make it
 * infallible).
 */
static int attr__fig_store(attr_state_t *st, int was_wide, uint32_t creator, int32_t day,
                           uint32_t field, attr_sum_t v, attr_sum_t lo, attr_sum_t hi)
{
    attr_wide_t *w = was_wide ? attr__wide_find(st, creator, day, field) : NULL;
    if (v >= lo && v <= hi) {
        if (w != NULL) {
            attr__wide_drop(st, (size_t)(w - st->wide));
        }
        return 1;
    }
    if (w == NULL) {
        if (attr__wide_reserve(st, 1) != 0) {
            return -ENOMEM;
        }
        (void)attr_map64_put(&st->wide_at, attr__wide_key(creator, day, field), st->n_wide);
        w = &st->wide[st->n_wide++];
        *w = (attr_wide_t){creator, day, field, 0};
    }
    w->value = v;
    return 0;
}

/**
 * Adds `delta` to a 32-bit rollup figure; a value outside 0 .. UINT32_MAX - 1 moves to
 * st->wide (and back). Returns 0 or -ENOMEM (reserve with attr__wide_reserve() first to
 * make it infallible).
 */
static int attr__fig_add(attr_state_t *st, uint32_t *cell, uint32_t creator, int32_t day,
                         uint32_t field, attr_sum_t delta)
{
    if (*cell != UINT32_MAX && delta >= -(attr_sum_t)*cell &&
        delta < (attr_sum_t)UINT32_MAX - *cell) {
        *cell = (uint32_t)(*cell + delta); /* the common case */
        return 0;
    }
    attr_sum_t v = attr__fig(st, *cell, creator, day, field) + delta;
    int rc = attr__fig_store(st, *cell == UINT32_MAX, creator, day, field, v, 0, UINT32_MAX - 1);
    if (rc >= 0) {
        *cell = rc == 1 ? (uint32_t)v : UINT32_MAX;
    }
    return rc < 0 ? rc : 0;
}

/** attr__fig_add() of a 64-bit figure: a value past int64 (or at INT64_MIN) is wide. */
static int attr__fig64_add(attr_state_t *st, int64_t *cell, uint32_t creator, int32_t day,
                           uint32_t field, attr_sum_t delta)
{
    attr_sum_t v = attr__fig64(st, *cell, creator, day, field) + delta;
    if (*cell != INT64_MIN && v > INT64_MIN && v <= INT64_MAX) {
        *cell = (int64_t)v; /* the common case */
        return 0;
    }
    int rc = attr__fig_store(st, *cell == INT64_MIN, creator, day, field, v,
                             (attr_sum_t)INT64_MIN + 1, INT64_MAX);
    if (rc >= 0) {
        *cell = rc == 1 ? (int64_t)v : INT64_MIN;
    }
    return rc < 0 ? rc : 0;
}

/**
 * Whether adding up to `total` to a 64-bit figure may take it to st->wide, or it is
 * there already (its room is then counted too: going back to the cell and out again
 * within one update must not find it taken).
 */
static int attr__fig64_may_spill(int64_t cell, int64_t total)
{
    return cell == INT64_MIN || cell > INT64_MAX - total;
}

static attr_unattr_day_t *attr__unattr_bucket(attr_state_t *st, int32_t day)
{
    size_t lo = 0, hi = st->n_unattr;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->unattr[mid].day < day) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < st->n_unattr && st->unattr[lo].day == day) {
        return &st->unattr[lo];
    }
    if (ATTR__GROW(st->unattr, st->cap_unattr, st->n_unattr + 1) != 0) {
        return NULL;
    }
    memmove(&st->unattr[lo + 1], &st->unattr[lo], (st->n_unattr - lo) * sizeof *st->unattr);
    memset(&st->unattr[lo], 0, sizeof st->unattr[lo]);
    st->unattr[lo].day = day;
    st->n_unattr++;
    return &st->unattr[lo];
}

/** Counts one committed exposure of `kind` (or `n` of a pruned segment). */
static int attr__count_exposures(attr_state_t *st, uint32_t creator, int32_t day, int64_t imp,
                                 int64_t views, int64_t clicks)
{
    attr_day_t *b = attr__day_bucket(st, creator, day);
    if (b == NULL || attr__wide_reserve(st, 3) != 0) {
        return -ENOMEM;
    }
    if (imp != 0) {
        (void)attr__fig_add(st, &b->impressions, creator, day, ATTR__F_IMPRESSIONS, imp);
    }
    if (views != 0) {
        (void)attr__fig_add(st, &b->views, creator, day, ATTR__F_VIEWS, views);
    }
    if (clicks != 0) {
        (void)attr__fig_add(st, &b->clicks, creator, day, ATTR__F_CLICKS, clicks);
    }
    return 0;
}

int attr_state_add_exposure_rollup(attr_state_t *st, const char *creator, size_t len, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks)
{
    uint32_t id;
    int rc = attr_intern(&st->creators, creator, len, &id);
    if (rc != 0) {
        return rc;
    }
    return attr_state_add_exposure_counts(st, id, day, impressions, views, clicks);
}

int attr_state_add_exposure_counts(attr_state_t *st, uint32_t creator, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks)
{
    return attr__count_exposures(st, creator, day, impressions, views, clicks);
}

void attr_state_prefetch_counts(const attr_state_t *st, uint32_t creator, int stage)
{
    if (creator >= st->cap_creator_meta) {
        return;
    }
    const attr_creator_t *m = &st->creator_meta[creator];
    if (stage == 0) {
        __builtin_prefetch(m);
    } else if (m->n_days > 0) {
        __builtin_prefetch(&m->days[m->n_days - 1]);
    }
}

/* ---- candidates ---- */

/** What a conversion holds (its allocations and its share of the cache's tables). */
static size_t attr__conv_size(const attr_conv_t *c)
{
    size_t b = sizeof *c + (size_t)c->order_id_len + c->viewer_len + c->product_len + 3 +
               /* the order map's and the chains' slots, at their usual load */
               2 * sizeof(attr_strmap_slot_t) + 2 * 2 * sizeof(uint64_t);
    if (c->cands != &c->cand0) {
        b += (size_t)c->cap_cands * sizeof *c->cands;
    }
    for (uint32_t i = 0; i < c->n_cands; i++) {
        const attr_cand_t *t = &c->cands[i];
        if (t->event_id != c->cand0_str) {
            b += t->note_off + strlen(attr_cand_note(t)) + 1;
        }
    }
    if (c->n_elig > 0 && c->credit != c->res1) {
        b += c->n_elig * sizeof(uint32_t) + 3 * ATTR_N_MODELS * (size_t)c->n_elig * sizeof(int64_t);
    }
    return b;
}

/** Recounts a conversion's bytes (in the cache's total when it is cached). */
static void attr__conv_account(attr_state_t *st, attr_conv_t *c)
{
    size_t b = attr__conv_size(c);
    if (c->cached) {
        st->cache_bytes = st->cache_bytes - c->bytes + b;
    }
    c->bytes = b;
}

static int attr__dirty(attr_state_t *st, attr_conv_t *c)
{
    if (c->dirty) {
        return 0;
    }
    if (ATTR__GROW(st->dirty, st->cap_dirty, st->n_dirty + 1) != 0) {
        return -ENOMEM;
    }
    st->dirty[st->n_dirty++] = c;
    c->dirty = 1;
    return 0;
}

static int attr__persist_later(attr_state_t *st, attr_conv_t *c)
{
    if (c->in_persist) {
        return 0;
    }
    if (ATTR__GROW(st->persist, st->cap_persist, st->n_persist + 1) != 0) {
        return -ENOMEM;
    }
    st->persist[st->n_persist++] = c;
    c->in_persist = 1;
    return 0;
}

/**
 * Adds a candidate (copying its event id and note into one block) unless its event id
 * is there. 1: added; 0: there already; -ENOMEM.
 */
static int attr__add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id, uint32_t creator,
                          const char *note, size_t note_len, int kind, int64_t watch_ms,
                          int64_t occur_ns, int persisted)
{
    for (uint32_t i = 0; i < c->n_cands; i++) {
        if (strcmp(c->cands[i].event_id, event_id) == 0) {
            return 0;
        }
    }
    size_t elen = strlen(event_id);
    if (elen > UINT32_MAX / 4 || note_len > UINT32_MAX / 4) {
        return -ENOMEM;
    }
    if (c->cap_cands == 0) {
        c->cands = &c->cand0; /* most conversions have one */
        c->cap_cands = 1;
    } else if (c->n_cands == c->cap_cands) {
        uint32_t nc = c->cap_cands * 2;
        attr_cand_t *p =
            c->cands == &c->cand0 ? malloc(nc * sizeof *p) : realloc(c->cands, nc * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        if (c->cands == &c->cand0) {
            p[0] = c->cand0;
        }
        c->cands = p;
        c->cap_cands = nc;
    }
    char *block;
    if (c->n_cands == 0 && elen + 1 + note_len + 1 <= sizeof c->cand0_str) {
        block = c->cand0_str;
    } else if ((block = malloc(elen + 1 + note_len + 1)) == NULL) {
        return -ENOMEM;
    }
    memcpy(block, event_id, elen + 1);
    memcpy(block + elen + 1, note, note_len);
    block[elen + 1 + note_len] = '\0';
    attr_cand_t *t = &c->cands[c->n_cands++];
    t->event_id = block;
    t->creator = creator;
    t->note_off = (uint32_t)(elen + 1);
    t->kind = (uint8_t)kind;
    t->watch_ms = watch_ms;
    t->occur_ns = occur_ns;
    t->persisted = (uint8_t)(persisted != 0);
    attr__conv_account(st, c);
    if (!persisted && attr__persist_later(st, c) != 0) {
        return -ENOMEM;
    }
    return 1;
}

/* ---- exposures: the pending area ---- */

static attr_pchunk_t *attr__pchunk_of(const attr_state_t *st, uint64_t seq)
{
    if (seq < st->pend_base || seq >= st->next_seq) {
        return NULL;
    }
    size_t ci = (size_t)((seq - st->pend_base) / ATTR__PCHUNK);
    return ci < st->n_pend ? st->pend[ci] : NULL;
}

static attr_pexp_t *attr__pending(const attr_state_t *st, uint64_t seq)
{
    attr_pchunk_t *c = attr__pchunk_of(st, seq);
    if (c == NULL) {
        return NULL;
    }
    attr_pexp_t *p = &c->recs[(seq - st->pend_base) % ATTR__PCHUNK];
    return p->state == ATTR_PENDING || p->state == ATTR_UNSURE_PENDING ? p : NULL;
}

const attr_pexp_t *attr_exposure_pending(const attr_state_t *st, uint64_t seq)
{
    return attr__pending(st, seq);
}

/** The chunk the next admission goes to (a new one when the last is full). */
static attr_pchunk_t *attr__pchunk_for_new(attr_state_t *st)
{
    if (st->n_pend > 0 && st->pend[st->n_pend - 1]->n < ATTR__PCHUNK) {
        return st->pend[st->n_pend - 1];
    }
    if (ATTR__GROW(st->pend, st->cap_pend, st->n_pend + 1) != 0) {
        return NULL;
    }
    attr_pchunk_t *c;
    if (st->n_spare_pchunks > 0) {
        c = st->spare_pchunks[--st->n_spare_pchunks]; /* settled, kept with its blocks */
    } else if ((c = malloc(sizeof *c)) != NULL) {
        memset(c, 0, offsetof(attr_pchunk_t, recs));
    } else {
        return NULL;
    }
    if (st->n_pend == 0) {
        st->pend_base = st->next_seq;
    }
    st->pend[st->n_pend++] = c;
    if (st->n_pend > st->pend_peak) {
        st->pend_peak = st->n_pend;
    }
    return c;
}

/** `n` bytes (aligned to 8) from a chunk's arena; NULL: no memory. */
static void *attr__palloc(attr_pchunk_t *c, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (n > c->left) {
        if (n > ATTR__PBLOCK / 4) {
            /* A big one: a block of its own, the current one goes on. */
            char *b;
            if (ATTR__GROW(c->bigs, c->cap_bigs, c->n_bigs + 1) != 0 || (b = malloc(n)) == NULL) {
                return NULL;
            }
            c->bigs[c->n_bigs++] = b;
            return b;
        }
        if (c->cur != NULL && c->cur_block + 1 < c->n_blocks) {
            c->cur = c->blocks[++c->cur_block]; /* a kept one */
        } else {
            char *b;
            if (ATTR__GROW(c->blocks, c->cap_blocks, c->n_blocks + 1) != 0 ||
                (b = malloc(ATTR__PBLOCK)) == NULL) {
                return NULL;
            }
            c->blocks[c->n_blocks] = b;
            c->cur_block = c->n_blocks++;
            c->cur = b;
        }
        c->left = ATTR__PBLOCK;
    }
    void *p = c->cur;
    c->cur += n;
    c->left -= n;
    return p;
}

static char *attr__pstrdup(attr_pchunk_t *c, const char *s, size_t n)
{
    char *p = attr__palloc(c, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/**
 * A settled chunk: kept (up to ATTR__SPARE_PCHUNKS, with their blocks) for the next
 * chunks, so that the hot path does not free and allocate a 100 KiB chunk and its 64 KiB
 * blocks every 1,024 exposures (glibc consolidates its fast bins whenever a free leaves
 * 64 KiB or more in one piece: a tenth of the loop's time at 300,000 exposures a second).
 */
static void attr__pchunk_recycle(attr_state_t *st, attr_pchunk_t *c)
{
    if (st->n_spare_pchunks == ATTR__SPARE_PCHUNKS) {
        attr__pchunk_free(c);
        return;
    }
    for (size_t i = 0; i < c->n_bigs; i++) {
        free(c->bigs[i]);
    }
    c->n_bigs = 0;
    while (c->n_blocks > ATTR__SPARE_BLOCKS) {
        free(c->blocks[--c->n_blocks]);
    }
    c->cur_block = 0;
    c->cur = c->n_blocks > 0 ? c->blocks[0] : NULL;
    c->left = c->n_blocks > 0 ? ATTR__PBLOCK : 0;
    c->n = 0;
    c->open = 0;
    st->spare_pchunks[st->n_spare_pchunks++] = c;
}

/** Forgets a pending exposure (committed or aborted): frees what nobody needs now. */
static void attr__pend_resolve(attr_state_t *st, uint64_t seq, attr_pexp_t *p)
{
    (void)attr_strmap_del(&st->pend_ids, p->eid_hash, p->event_id.s, p->event_id.len);
    p->state = ATTR_DEAD;
    attr__pchunk_of(st, seq)->open--;
    /* Free whole chunks from the front once every exposure of theirs is settled. */
    while (st->n_pend > 0 && st->pend[0]->n == ATTR__PCHUNK && st->pend[0]->open == 0) {
        attr__pchunk_recycle(st, st->pend[0]);
        memmove(&st->pend[0], &st->pend[1], (st->n_pend - 1) * sizeof *st->pend);
        st->n_pend--;
        st->pend_base += ATTR__PCHUNK;
    }
}

/* ---- exposures: runs ---- */

static size_t attr__pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) {
        c *= 2;
    }
    return c;
}

static attr_run_t *attr__run_new(attr_state_t *st)
{
    if (ATTR__GROW(st->runs, st->cap_runs, st->n_runs + 1) != 0) {
        return NULL;
    }
    attr_run_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    /* Sized so that a run of `hint` exposures (a little more: runs end at a batch's
     * end) with up to 2.5 products each never rehashes (load <= 0.7). */
    size_t hint = st->run_hint ? st->run_hint : 1024;
    r->eid_cap = attr__pow2_at_least(hint + hint / 2);
    r->join_cap = attr__pow2_at_least(4 * hint);
    r->eid_slots = calloc(r->eid_cap, sizeof *r->eid_slots);
    r->join_slots = calloc(r->join_cap, sizeof *r->join_slots);
    r->arena_cap = hint * 96;
    r->arena = malloc(r->arena_cap);
    r->cap = (uint32_t)(hint + hint / 16);
    r->recs = malloc(r->cap * sizeof *r->recs);
    if (r->eid_slots == NULL || r->join_slots == NULL || r->arena == NULL || r->recs == NULL) {
        attr__run_free(r);
        return NULL;
    }
    r->id = st->next_run_id++;
    r->state = ATTR_RUN_OPEN;
    r->max_keep_ns = INT64_MIN;
    st->runs[st->n_runs++] = r;
    if (st->n_runs > st->runs_peak) {
        st->runs_peak = st->n_runs;
    }
    return r;
}

static uint16_t attr__get16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void attr_run_rec(const attr_run_t *run, uint32_t i, attr_run_rec_t *out)
{
    const attr_rexp_t *r = &run->recs[i];
    const char *p = run->arena + r->str;
    out->event_id_len = attr__get16(p);
    out->viewer_len = attr__get16(p + 2);
    out->note_len = attr__get16(p + 4);
    out->event_id = p + 6;
    out->viewer = out->event_id + out->event_id_len + 1;
    out->note = out->viewer + out->viewer_len + 1;
    out->products = out->note + out->note_len + 1;
    out->creator = r->creator;
    out->creator_len = attr_intern_len(r->creator);
    out->eid_hash = r->eid_hash;
    out->occur_ns = r->occur_ns;
    out->watch_ms = r->watch_ms;
    out->seg = r->seg;
    out->off = r->off;
    out->n_products = r->n_products;
    out->kind = r->kind;
    out->joinable = r->joinable;
}

const char *attr_run_next_product(const char **at, uint32_t *len)
{
    const char *p = *at;
    *len = attr__get16(p);
    *at = p + 2 + *len + 1;
    return p + 2;
}

/** Product k of record i (k < n_products). */
static const char *attr__run_product(const attr_run_t *run, uint32_t i, uint32_t k, uint32_t *len)
{
    attr_run_rec_t rec;
    attr_run_rec(run, i, &rec);
    const char *at = rec.products, *s = NULL;
    for (uint32_t j = 0; j <= k; j++) {
        s = attr_run_next_product(&at, len);
    }
    return s;
}

size_t attr_run_bytes(const attr_run_t *run)
{
    return sizeof *run + (size_t)run->cap * sizeof *run->recs + run->arena_cap +
           run->eid_cap * sizeof *run->eid_slots + run->join_cap * sizeof *run->join_slots;
}

static int attr__run_has_eid(const attr_run_t *run, uint64_t h, const char *eid, size_t len)
{
    size_t mask = run->eid_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = run->eid_slots[i];
        if (slot == 0) {
            return 0;
        }
        const attr_rexp_t *r = &run->recs[slot - 1];
        if (r->eid_hash == h) {
            const char *p = run->arena + r->str;
            if (attr__get16(p) == len && memcmp(p + 6, eid, len) == 0) {
                return 1;
            }
        }
    }
}

static void attr__eid_insert(uint32_t *slots, size_t cap, uint64_t h, uint32_t idx)
{
    size_t mask = cap - 1, i = h & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = idx + 1;
}

static void attr__join_insert(uint64_t *slots, size_t cap, uint64_t vp, uint32_t idx, uint32_t k)
{
    size_t mask = cap - 1, i = vp & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = (vp >> 32) << 32 | (uint64_t)(((idx + 1) << 7) | k);
}

/** Makes room in a run for one more record of `strs` arena bytes and `np` join keys. */
static int attr__run_room(attr_run_t *run, size_t strs, size_t np)
{
    if (run->n >= ATTR__RUN_LIMIT) {
        return -ENOMEM;
    }
    if (run->n == run->cap) {
        uint32_t nc = run->cap ? run->cap * 2 : 256;
        attr_rexp_t *recs = realloc(run->recs, nc * sizeof *recs);
        if (recs == NULL) {
            return -ENOMEM;
        }
        run->recs = recs;
        run->cap = nc;
    }
    if (run->arena_len + strs > run->arena_cap) {
        size_t nc = run->arena_cap ? run->arena_cap * 2 : 16384;
        while (nc < run->arena_len + strs) {
            nc *= 2;
        }
        if (nc > UINT32_MAX) {
            return -ENOMEM;
        }
        char *a = realloc(run->arena, nc);
        if (a == NULL) {
            return -ENOMEM;
        }
        run->arena = a;
        run->arena_cap = nc;
    }
    if (10 * ((size_t)run->n + 1) > 7 * run->eid_cap) {
        size_t nc = run->eid_cap * 2;
        uint32_t *slots = calloc(nc, sizeof *slots);
        if (slots == NULL) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < run->n; i++) {
            attr__eid_insert(slots, nc, run->recs[i].eid_hash, i);
        }
        free(run->eid_slots);
        run->eid_slots = slots;
        run->eid_cap = nc;
    }
    if (10 * (run->join_n + np) > 7 * run->join_cap) {
        size_t nc = run->join_cap * 2;
        while (10 * (run->join_n + np) > 7 * nc) {
            nc *= 2;
        }
        uint64_t *slots = calloc(nc, sizeof *slots);
        if (slots == NULL) {
            return -ENOMEM;
        }
        /* Every product of every joinable record has its key: walk each record's
         * products once (finding product k from the start each time was quadratic in
         * the products, a tenth of a second per growth with 100 of them). */
        for (uint32_t idx = 0; idx < run->n; idx++) {
            if (!run->recs[idx].joinable) {
                continue;
            }
            attr_run_rec_t rec;
            attr_run_rec(run, idx, &rec);
            uint64_t vh = attr_hash_bytes(rec.viewer, rec.viewer_len);
            const char *at = rec.products;
            for (uint32_t k = 0; k < rec.n_products; k++) {
                uint32_t plen;
                const char *prod = attr_run_next_product(&at, &plen);
                attr__join_insert(slots, nc, attr_vp_hash(vh, attr_hash_bytes(prod, plen)), idx, k);
            }
        }
        free(run->join_slots);
        run->join_slots = slots;
        run->join_cap = nc;
    }
    return 0;
}

/**
 * Appends a pending exposure to a run (`vps`: the join keys of its products, NULL when
 * it does not join). Returns 0 or -ENOMEM (the run is unchanged).
 */
static int attr__run_append(attr_run_t *run, const attr_pexp_t *p, uint32_t seg, uint32_t off,
                            const uint64_t *vps)
{
    size_t strs = 6 + p->event_id.len + 1 + p->viewer.len + 1 + p->note.len + 1;
    for (uint32_t k = 0; k < p->n_products; k++) {
        strs += 2 + p->products[k].len + 1;
    }
    int rc = attr__run_room(run, strs, vps != NULL ? p->n_products : 0);
    if (rc != 0) {
        return rc;
    }
    uint32_t idx = run->n++;
    attr_rexp_t *r = &run->recs[idx];
    r->eid_hash = p->eid_hash;
    r->occur_ns = p->occur_ns;
    r->watch_ms = p->watch_ms;
    r->creator = p->creator.s;
    r->seg = seg;
    r->off = off;
    r->str = (uint32_t)run->arena_len;
    r->n_products = (uint16_t)p->n_products;
    r->kind = p->kind;
    r->joinable = vps != NULL;
    char *a = run->arena + run->arena_len;
    uint16_t lens[3] = {(uint16_t)p->event_id.len, (uint16_t)p->viewer.len, (uint16_t)p->note.len};
    memcpy(a, lens, sizeof lens);
    a += sizeof lens;
    const attr_interned_t *s3[3] = {&p->event_id, &p->viewer, &p->note};
    for (int i = 0; i < 3; i++) {
        memcpy(a, s3[i]->s, s3[i]->len);
        a[s3[i]->len] = '\0';
        a += s3[i]->len + 1;
    }
    for (uint32_t k = 0; k < p->n_products; k++) {
        uint16_t l = (uint16_t)p->products[k].len;
        memcpy(a, &l, sizeof l);
        memcpy(a + 2, p->products[k].s, l);
        a[2 + l] = '\0';
        a += 2 + l + 1;
    }
    run->arena_len += strs;
    if (p->keep_ns > run->max_keep_ns) {
        run->max_keep_ns = p->keep_ns;
    }
    attr__eid_insert(run->eid_slots, run->eid_cap, p->eid_hash, idx);
    for (uint32_t k = 0; vps != NULL && k < p->n_products; k++) {
        attr__join_insert(run->join_slots, run->join_cap, vps[k], idx, k);
        run->join_n++;
    }
    return 0;
}

/** The run commits go to, opened (or rolled over at run_max) as needed. */
static attr_run_t *attr__run_for_commit(attr_state_t *st)
{
    attr_run_t *r = attr_state_open_run(st);
    if (r != NULL && st->run_max > 0 && r->n >= st->run_max) {
        r->state = ATTR_RUN_CLOSED;
        r = NULL;
    }
    return r != NULL ? r : attr__run_new(st);
}

attr_run_t *attr_state_seal_run(attr_state_t *st)
{
    attr_run_t *r = attr_state_open_run(st);
    if (r == NULL || r->n == 0) {
        return NULL;
    }
    r->state = ATTR_RUN_SEALED;
    return r;
}

static void attr__run_drop(attr_state_t *st, size_t i)
{
    attr_run_t *r = st->runs[i];
    st->exposures_live -= r->n;
    attr__run_free(r);
    memmove(&st->runs[i], &st->runs[i + 1], (st->n_runs - i - 1) * sizeof *st->runs);
    st->n_runs--;
}

void attr_state_release_run(attr_state_t *st, attr_run_t *run)
{
    for (size_t i = 0; i < st->n_runs; i++) {
        if (st->runs[i] == run) {
            attr__run_drop(st, i);
            return;
        }
    }
}

/* ---- exposures: the Bloom filters of indexed ids ---- */

static int attr__bloom_maybe(const attr_state_t *st, uint64_t h)
{
    for (size_t i = st->n_epochs; i-- > 0;) {
        if (attr_bloom_maybe(&st->epochs[i].bloom, h)) {
            return 1;
        }
    }
    return 0;
}

int attr_state_index_add(attr_state_t *st, const uint64_t *hashes, size_t n, uint64_t max_seg)
{
    if (n == 0) {
        return 0;
    }
    attr_bloom_epoch_t *e = st->n_epochs > 0 ? &st->epochs[st->n_epochs - 1] : NULL;
    if (e == NULL || e->bloom.n_keys + n > e->cap) {
        attr_bloom_epoch_t *p = realloc(st->epochs, (st->n_epochs + 1) * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        st->epochs = p;
        e = &st->epochs[st->n_epochs];
        memset(e, 0, sizeof *e);
        e->cap = n > ATTR_BLOOM_KEYS ? n : ATTR_BLOOM_KEYS;
        unsigned bits = ATTR_BLOOM_BITS;
        if (st->bloom_budget > 0) {
            size_t used = attr_state_bloom_bytes(st);
            uint64_t room = st->bloom_budget > used ? st->bloom_budget - used : 0;
            uint64_t fit = room * 8 / e->cap;
            if (fit < bits) {
                bits = fit < ATTR_BLOOM_MIN_BITS ? ATTR_BLOOM_MIN_BITS : (unsigned)fit;
                st->bloom_thin++;
            }
        }
        if (attr_bloom_init(&e->bloom, e->cap, bits) != 0) {
            return -ENOMEM;
        }
        st->n_epochs++;
    }
    for (size_t i = 0; i < n; i++) {
        attr_bloom_add(&e->bloom, hashes[i]);
    }
    if (max_seg > e->max_seg) {
        e->max_seg = max_seg;
    }
    return 0;
}

void attr_state_index_forget(attr_state_t *st, uint64_t through_seg)
{
    size_t k = 0;
    while (k < st->n_epochs && st->epochs[k].max_seg <= through_seg) {
        attr_bloom_free(&st->epochs[k].bloom);
        k++;
    }
    if (k > 0) {
        memmove(st->epochs, st->epochs + k, (st->n_epochs - k) * sizeof *st->epochs);
        st->n_epochs -= k;
    }
}

size_t attr_state_bloom_bytes(const attr_state_t *st)
{
    size_t b = 0;
    for (size_t i = 0; i < st->n_epochs; i++) {
        b += attr_bloom_bytes(&st->epochs[i].bloom);
    }
    return b;
}

/* ---- exposures ---- */

int attr_exposure_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - attr_settings_horizon(&st->settings);
}

int attr_exposure_admit(attr_state_t *st, const attr_exposure_in_t *in, int64_t now_ns,
                        uint64_t *seq, attr_interned_t *out)
{
    uint64_t h = attr_hash_bytes(in->event_id, in->event_id_len);
    if (attr_strmap_get(&st->pend_ids, h, in->event_id, in->event_id_len) != NULL) {
        return ATTR_DUPLICATE;
    }
    for (size_t i = st->n_runs; i-- > 0;) {
        if (attr__run_has_eid(st->runs[i], h, in->event_id, in->event_id_len)) {
            return ATTR_DUPLICATE;
        }
    }
    if (in->event_id_len > UINT16_MAX || in->viewer_len > UINT16_MAX || in->note_len > UINT16_MAX ||
        in->n_products > ATTR__MAX_PRODUCTS) {
        return -EINVAL;
    }
    size_t plens[ATTR__MAX_PRODUCTS];
    for (size_t k = 0; k < in->n_products; k++) {
        plens[k] = in->product_lens ? in->product_lens[k] : strlen(in->product_ids[k]);
        if (plens[k] > UINT16_MAX) {
            return -EINVAL;
        }
    }
    int maybe = attr__bloom_maybe(st, h);
    uint32_t creator;
    const char *cs;
    if (attr_intern2(&st->creators, in->creator_id, in->creator_len, &creator, &cs) != 0 ||
        attr__meta_reserve(st, creator) != 0 || attr_strmap_reserve(&st->pend_ids, 1) != 0) {
        return -ENOMEM;
    }
    attr_pchunk_t *c = attr__pchunk_for_new(st);
    if (c == NULL) {
        return -ENOMEM;
    }
    attr_pexp_t *p = &c->recs[c->n];
    memset(p, 0, sizeof *p);
    char *eid = attr__pstrdup(c, in->event_id, in->event_id_len);
    char *viewer = attr__pstrdup(c, in->viewer_id, in->viewer_len);
    char *note = attr__pstrdup(c, in->note_id, in->note_len);
    p->products = attr__palloc(c, (in->n_products ? in->n_products : 1) * sizeof *p->products);
    if (eid == NULL || viewer == NULL || note == NULL || p->products == NULL) {
        return -ENOMEM;
    }
    for (size_t k = 0; k < in->n_products; k++) {
        char *ps = attr__pstrdup(c, in->product_ids[k], plens[k]);
        if (ps == NULL) {
            return -ENOMEM;
        }
        p->products[k] = (attr_interned_t){ps, (uint32_t)plens[k], 0};
    }
    p->event_id = (attr_interned_t){eid, (uint32_t)in->event_id_len, 0};
    p->viewer = (attr_interned_t){viewer, (uint32_t)in->viewer_len, 0};
    p->creator = (attr_interned_t){cs, (uint32_t)in->creator_len, creator};
    p->note = (attr_interned_t){note, (uint32_t)in->note_len, 0};
    p->n_products = (uint32_t)in->n_products;
    p->kind = (uint8_t)in->kind;
    p->state = maybe ? ATTR_UNSURE_PENDING : ATTR_PENDING;
    p->watch_ms = in->watch_ms;
    p->occur_ns = in->occur_ns;
    p->keep_ns = in->occur_ns > now_ns ? in->occur_ns : now_ns;
    p->eid_hash = h;
    c->n++;
    c->open++;
    *seq = st->next_seq++;
    /* Cannot fail: room was reserved above. */
    (void)attr_strmap_add(&st->pend_ids, h, eid, in->event_id_len, (void *)(uintptr_t)(*seq + 1));
    if (out != NULL) {
        out[0] = p->viewer;
        out[1] = p->creator;
        out[2] = p->note;
        for (size_t k = 0; k < in->n_products; k++) {
            out[3 + k] = p->products[k];
        }
    }
    if (maybe) {
        st->bloom_maybes++;
        return ATTR_UNSURE;
    }
    return ATTR_ADMITTED;
}

void attr_exposure_prefetch(const attr_state_t *st, const char *event_id, const char *viewer,
                            const char *creator, const char *note, const char *const *products,
                            size_t n_products)
{
    (void)viewer;
    (void)note;
    (void)products;
    (void)n_products;
    uint64_t h = attr_hash_bytes(event_id, strlen(event_id));
    attr_strmap_prefetch(&st->pend_ids, h);
    for (size_t i = 0; i < st->n_runs; i++) {
        const attr_run_t *r = st->runs[i];
        __builtin_prefetch(&r->eid_slots[h & (r->eid_cap - 1)]);
    }
    for (size_t i = 0; i < st->n_epochs; i++) {
        attr_bloom_prefetch(&st->epochs[i].bloom, h);
    }
    attr_intern_prefetch(&st->creators, creator, strlen(creator));
}

void attr_exposure_resolve(attr_state_t *st, uint64_t seq, int dup)
{
    attr_pexp_t *p = attr__pending(st, seq);
    if (p == NULL || p->state != ATTR_UNSURE_PENDING) {
        return;
    }
    if (dup) {
        attr__pend_resolve(st, seq, p);
    } else {
        p->state = ATTR_PENDING;
    }
}

/** Whether conversion c is of this viewer and product (strings, not just the hash). */
static int attr__conv_is(const attr_conv_t *c, const char *viewer, size_t vlen, const char *product,
                         size_t plen)
{
    return c->viewer_len == vlen && memcmp(c->viewer, viewer, vlen) == 0 &&
           c->product_len == plen && memcmp(c->product, product, plen) == 0;
}

static uint64_t attr__vp_key(uint64_t vp)
{
    return vp == UINT64_MAX ? UINT64_MAX - 1 : vp;
}

/** The first cached conversion with this join key (follow vp_next), or NULL. */
static attr_conv_t *attr__conv_chain(const attr_state_t *st, uint64_t vp)
{
    uint64_t v;
    return attr_map64_get(&st->conv_vp, attr__vp_key(vp), &v) ? (attr_conv_t *)(uintptr_t)v : NULL;
}

int attr_exposure_commit_at(attr_state_t *st, uint64_t seq, uint32_t seg, uint32_t off,
                            int64_t now_ns)
{
    attr_pexp_t *p = attr__pending(st, seq);
    if (p == NULL || p->state != ATTR_PENDING) {
        return -EINVAL;
    }
    int32_t day = attr_day_of(p->occur_ns);
    /* The cell first (its room, that is), so that the run and the counts agree. */
    attr_run_t *run = attr__run_for_commit(st);
    attr_day_t *b = st->skip_counts ? NULL : attr__day_bucket(st, p->creator.id, day);
    if ((b == NULL && !st->skip_counts) || attr__wide_reserve(st, 1) != 0 || run == NULL) {
        return -ENOMEM;
    }
    int joinable = !attr_exposure_past_horizon(st, p->occur_ns, now_ns);
    uint64_t vps[ATTR__MAX_PRODUCTS];
    if (joinable) {
        uint64_t hv = attr_hash_bytes(p->viewer.s, p->viewer.len);
        for (uint32_t k = 0; k < p->n_products; k++) {
            vps[k] = attr_vp_hash(hv, attr_hash_bytes(p->products[k].s, p->products[k].len));
        }
    }
    int rc = attr__run_append(run, p, seg, off, joinable ? vps : NULL);
    if (rc != 0) {
        return rc;
    }
    st->exposures_live++;
    /* Counted (nothing since the lookup moved the cell; a wide figure has room). */
    uint32_t *fig = b == NULL                       ? NULL
                    : p->kind == ATTR_KIND_IMPRESSION ? &b->impressions
                    : p->kind == ATTR_KIND_VIEW     ? &b->views
                    : p->kind == ATTR_KIND_CLICK    ? &b->clicks
                                                    : NULL;
    if (fig != NULL && *fig < UINT32_MAX - 1) {
        (*fig)++;
    } else if (fig != NULL) {
        (void)attr__fig_add(st, fig, p->creator.id, day,
                            p->kind == ATTR_KIND_IMPRESSION ? ATTR__F_IMPRESSIONS
                            : p->kind == ATTR_KIND_VIEW     ? ATTR__F_VIEWS
                                                            : ATTR__F_CLICKS,
                            1);
    }
    /* Late data: conversions of this viewer and product at or after it (the service
     * brought every one that is only in the database into the cache before). */
    for (uint32_t k = 0; joinable && k < p->n_products && rc == 0; k++) {
        for (attr_conv_t *c = attr__conv_chain(st, vps[k]); c != NULL; c = c->vp_next) {
            if (c->state != ATTR_LIVE || c->occur_ns < p->occur_ns ||
                !attr__conv_is(c, p->viewer.s, p->viewer.len, p->products[k].s,
                               p->products[k].len)) {
                continue;
            }
            int added = attr__add_cand(st, c, p->event_id.s, p->creator.id, p->note.s, p->note.len,
                                       p->kind, p->watch_ms, p->occur_ns, 0);
            if (added < 0 || (added > 0 && attr__dirty(st, c) != 0)) {
                rc = -ENOMEM;
                break;
            }
        }
    }
    attr__pend_resolve(st, seq, p);
    if (rc == 0 && !st->defer) {
        rc = attr_state_flush(st);
    }
    return rc < 0 ? rc : joinable;
}

void attr_exposure_prefetch_commit(const attr_state_t *st, uint64_t seq, int stage)
{
    const attr_pexp_t *p = attr__pending(st, seq);
    if (p == NULL || p->creator.id >= st->cap_creator_meta) {
        return;
    }
    const attr_creator_t *m = &st->creator_meta[p->creator.id];
    if (stage == 0) {
        __builtin_prefetch(m);
    } else if (m->n_days > 0) {
        __builtin_prefetch(&m->days[m->n_days - 1]);
    }
}

int attr_exposure_commit(attr_state_t *st, uint64_t seq, int64_t now_ns)
{
    return attr_exposure_commit_at(st, seq, 0, 0, now_ns);
}

void attr_exposure_abort(attr_state_t *st, uint64_t seq)
{
    attr_pexp_t *p = attr__pending(st, seq);
    if (p != NULL) {
        attr__pend_resolve(st, seq, p);
    }
}

size_t attr_state_prune(attr_state_t *st, int64_t now_ns, size_t budget)
{
    (void)budget;
    int64_t limit = now_ns - attr_settings_horizon(&st->settings);
    size_t freed = 0;
    /* Whole closed runs, oldest first. */
    while (st->n_runs > 0 && st->runs[0]->state == ATTR_RUN_CLOSED &&
           st->runs[0]->max_keep_ns < limit) {
        freed += st->runs[0]->n;
        attr__run_drop(st, 0);
    }
    return freed;
}

/**
 * Adds the candidates the runs in memory hold for conversion c (viewer, product, at or
 * before it, within the horizon). Returns 0 or -ENOMEM.
 */
static int attr__capture_from_runs(attr_state_t *st, attr_conv_t *c, int64_t now_ns)
{
    size_t vlen = c->viewer_len, plen = c->product_len;
    const char *viewer = c->viewer, *product = c->product;
    uint32_t tag = (uint32_t)(c->vp_hash >> 32);
    for (size_t ri = 0; ri < st->n_runs; ri++) {
        const attr_run_t *run = st->runs[ri];
        size_t mask = run->join_cap - 1;
        for (size_t i = c->vp_hash & mask;; i = (i + 1) & mask) {
            uint64_t v = run->join_slots[i];
            if (v == 0) {
                break;
            }
            if ((uint32_t)(v >> 32) != tag) {
                continue;
            }
            uint32_t ref = (uint32_t)v, idx = (ref >> 7) - 1, k = ref & 0x7f;
            attr_run_rec_t rec;
            attr_run_rec(run, idx, &rec);
            uint32_t pl;
            const char *prod = attr__run_product(run, idx, k, &pl);
            if (rec.viewer_len != vlen || memcmp(rec.viewer, viewer, vlen) != 0 || pl != plen ||
                memcmp(prod, product, plen) != 0 || rec.occur_ns > c->occur_ns ||
                attr_exposure_past_horizon(st, rec.occur_ns, now_ns)) {
                continue;
            }
            if (attr__add_cand(st, c, rec.event_id, attr_intern_id(rec.creator), rec.note,
                               rec.note_len, rec.kind, rec.watch_ms, rec.occur_ns, 0) < 0) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

/* ---- conversions ---- */

static void attr__unlist(attr_conv_t **list, size_t *n, const attr_conv_t *c);

int attr_conversion_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - st->settings.late_window_ns;
}

attr_conv_t *attr_conv_new(const attr_conversion_in_t *in, int64_t refunded)
{
    if (in->order_id_len > UINT32_MAX / 4 || in->viewer_len > UINT32_MAX / 4 ||
        in->product_len > UINT32_MAX / 4) {
        return NULL;
    }
    size_t n = in->order_id_len + 1 + in->viewer_len + 1 + in->product_len + 1;
    attr_conv_t *c = calloc(1, sizeof *c + n);
    if (c == NULL) {
        return NULL;
    }
    c->order_id = c->strs;
    char *p = c->order_id;
    memcpy(p, in->order_id, in->order_id_len);
    p[in->order_id_len] = '\0';
    p += in->order_id_len + 1;
    memcpy(p, in->viewer_id, in->viewer_len);
    p[in->viewer_len] = '\0';
    c->viewer = p;
    p += in->viewer_len + 1;
    memcpy(p, in->product_id, in->product_len);
    p[in->product_len] = '\0';
    c->product = p;
    c->order_id_len = (uint32_t)in->order_id_len;
    c->viewer_len = (uint32_t)in->viewer_len;
    c->product_len = (uint32_t)in->product_len;
    c->vp_hash = attr_vp_hash(attr_hash_bytes(in->viewer_id, in->viewer_len),
                              attr_hash_bytes(in->product_id, in->product_len));
    c->seq = in->seq;
    c->quantity = in->quantity;
    c->amount = in->amount_minor;
    c->refunded = refunded;
    c->occur_ns = in->occur_ns;
    c->day = attr_day_of(in->occur_ns);
    c->state = ATTR_PENDING;
    c->bytes = attr__conv_size(c);
    return c;
}

static uint64_t attr__order_hash(const attr_conv_t *c)
{
    return attr_hash_bytes(c->order_id, c->order_id_len);
}

int attr_conversion_admit(attr_state_t *st, const attr_conversion_in_t *in, attr_conv_t **out)
{
    uint64_t h = attr_hash_bytes(in->order_id, in->order_id_len);
    if (attr_strmap_get(&st->orders, h, in->order_id, in->order_id_len) != NULL ||
        attr_strmap_get(&st->pend_orders, h, in->order_id, in->order_id_len) != NULL) {
        return ATTR_DUPLICATE;
    }
    if (in->order_id_len > UINT32_MAX / 4 || in->viewer_len > UINT32_MAX / 4 ||
        in->product_len > UINT32_MAX / 4) {
        return -EINVAL;
    }
    if (attr_strmap_reserve(&st->pend_orders, 1) != 0) {
        return -ENOMEM;
    }
    attr_conv_t *c = attr_conv_new(in, 0);
    if (c == NULL) {
        return -ENOMEM;
    }
    (void)attr_strmap_add(&st->pend_orders, h, c->order_id, c->order_id_len, c);
    *out = c;
    return ATTR_ADMITTED;
}

/* -- the cache: LRU list and (viewer, product) chains -- */

static void attr__lru_unlink(attr_state_t *st, attr_conv_t *c)
{
    if (c->lru_prev != NULL) {
        c->lru_prev->lru_next = c->lru_next;
    } else {
        st->lru_head = c->lru_next;
    }
    if (c->lru_next != NULL) {
        c->lru_next->lru_prev = c->lru_prev;
    } else {
        st->lru_tail = c->lru_prev;
    }
    c->lru_prev = c->lru_next = NULL;
}

static void attr__lru_push_head(attr_state_t *st, attr_conv_t *c)
{
    c->lru_prev = NULL;
    c->lru_next = st->lru_head;
    if (st->lru_head != NULL) {
        st->lru_head->lru_prev = c;
    } else {
        st->lru_tail = c;
    }
    st->lru_head = c;
}

static void attr__lru_touch(attr_state_t *st, attr_conv_t *c)
{
    if (c->cached && st->lru_head != c) {
        attr__lru_unlink(st, c);
        attr__lru_push_head(st, c);
    }
}

/** Puts a live conversion in the cache: the LRU list's head, its key's chain. */
static int attr__cache_add(attr_state_t *st, attr_conv_t *c)
{
    attr_conv_t *head = attr__conv_chain(st, c->vp_hash);
    if (attr_map64_put(&st->conv_vp, attr__vp_key(c->vp_hash), (uint64_t)(uintptr_t)c) != 0) {
        return -ENOMEM;
    }
    c->vp_next = head;
    c->cached = 1;
    c->commit_seq = st->next_commit_seq++;
    attr__lru_push_head(st, c);
    st->n_cached++;
    c->bytes = attr__conv_size(c);
    st->cache_bytes += c->bytes;
    return 0;
}

/** Takes a conversion out of the cache's list and chain (not out of `orders`). */
static void attr__cache_remove(attr_state_t *st, attr_conv_t *c)
{
    if (!c->cached) {
        return;
    }
    uint64_t key = attr__vp_key(c->vp_hash);
    attr_conv_t *head = attr__conv_chain(st, c->vp_hash);
    if (head == c) {
        if (c->vp_next != NULL) {
            (void)attr_map64_put(&st->conv_vp, key, (uint64_t)(uintptr_t)c->vp_next); /* exists */
        } else {
            (void)attr_map64_del(&st->conv_vp, key);
        }
    } else {
        for (attr_conv_t *x = head; x != NULL; x = x->vp_next) {
            if (x->vp_next == c) {
                x->vp_next = c->vp_next;
                break;
            }
        }
    }
    c->vp_next = NULL;
    attr__lru_unlink(st, c);
    st->n_cached--;
    st->cache_bytes -= c->bytes;
    c->cached = 0;
}

int attr_conversion_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns)
{
    if (c->state != ATTR_PENDING) {
        return -EINVAL;
    }
    uint64_t h = attr__order_hash(c);
    if (attr_strmap_get(&st->orders, h, c->order_id, c->order_id_len) != NULL) {
        return -EEXIST; /* a stored one is in memory: this was a duplicate (abort it) */
    }
    if (attr_strmap_add(&st->orders, h, c->order_id, c->order_id_len, c) != 0) {
        return -ENOMEM;
    }
    if (attr__cache_add(st, c) != 0) {
        (void)attr_strmap_del(&st->orders, h, c->order_id, c->order_id_len);
        return -ENOMEM;
    }
    (void)attr_strmap_del(&st->pend_orders, h, c->order_id, c->order_id_len);
    c->state = ATTR_LIVE;
    st->n_stored_convs++;
    /* Within the horizon a late exposure may still join it: its key goes in the filter
     * (so that one that arrives after it left memory knows to look for it). */
    if (!attr_exposure_past_horizon(st, c->occur_ns, now_ns) &&
        attr_state_conv_filter_add(st, c->vp_hash, c->occur_ns) != 0) {
        return -ENOMEM;
    }
    /* Capture the candidates the runs in memory hold now. */
    if (attr__capture_from_runs(st, c, now_ns) != 0 || attr__dirty(st, c) != 0) {
        return -ENOMEM;
    }
    return st->defer ? 0 : attr_state_flush(st);
}

/** Takes `c` out of a work list (it is about to be freed). */
static void attr__unlist(attr_conv_t **list, size_t *n, const attr_conv_t *c)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (list[i] != c) {
            list[k++] = list[i];
        }
    }
    *n = k;
}

void attr_conversion_abort(attr_state_t *st, attr_conv_t *c)
{
    if (c->state != ATTR_PENDING) {
        return;
    }
    (void)attr_strmap_del(&st->pend_orders, attr__order_hash(c), c->order_id, c->order_id_len);
    if (c->in_persist) {
        attr__unlist(st->persist, &st->n_persist, c);
    }
    if (c->dirty) {
        attr__unlist(st->dirty, &st->n_dirty, c);
    }
    attr_conv_free(c);
}

attr_conv_t *attr_conversion_find(attr_state_t *st, const char *order_id, size_t len)
{
    attr_conv_t *c = attr_strmap_get(&st->orders, attr_hash_bytes(order_id, len), order_id, len);
    if (c == NULL || c->state != ATTR_LIVE) {
        return NULL;
    }
    attr__lru_touch(st, c);
    return c;
}

attr_conv_t *attr_conversion_pending(attr_state_t *st, const char *order_id, size_t len)
{
    return attr_strmap_get(&st->pend_orders, attr_hash_bytes(order_id, len), order_id, len);
}

int attr_conversion_load(attr_state_t *st, const attr_conversion_in_t *in, int64_t refunded,
                         attr_conv_t **out)
{
    uint64_t h = attr_hash_bytes(in->order_id, in->order_id_len);
    if (attr_strmap_get(&st->orders, h, in->order_id, in->order_id_len) != NULL) {
        return -EEXIST;
    }
    if (attr_strmap_reserve(&st->orders, 1) != 0) {
        return -ENOMEM;
    }
    attr_conv_t *c = attr_conv_new(in, refunded);
    if (c == NULL) {
        return -ENOMEM;
    }
    if (attr__cache_add(st, c) != 0) {
        attr_conv_free(c);
        return -ENOMEM;
    }
    c->state = ATTR_LIVE;
    (void)attr_strmap_add(&st->orders, h, c->order_id, c->order_id_len, c);
    st->n_loaded++;
    *out = c;
    return 0;
}

static int attr__compute(attr_state_t *st, attr_conv_t *c, int rollups);

int attr_conversion_loaded(attr_state_t *st, attr_conv_t *c, int apply)
{
    if (!apply) {
        /* Its credits are in the rollups already: the result, without applying it. */
        int rc = attr__compute(st, c, 0);
        if (rc == 0) {
            c->applied = 1;
        }
        return rc;
    }
    int rc = attr__dirty(st, c);
    return rc != 0 || st->defer ? rc : attr_state_flush(st);
}

void attr_conversion_unload(attr_state_t *st, attr_conv_t *c)
{
    attr__cache_remove(st, c);
    (void)attr_strmap_del(&st->orders, attr__order_hash(c), c->order_id, c->order_id_len);
    if (c->in_persist) {
        attr__unlist(st->persist, &st->n_persist, c);
    }
    if (c->dirty) {
        attr__unlist(st->dirty, &st->n_dirty, c);
    }
    attr_conv_free(c);
}

int attr_conversion_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id,
                             const char *creator, size_t creator_len, const char *note,
                             size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                             int persisted)
{
    uint32_t cid;
    if (attr_intern(&st->creators, creator, creator_len, &cid) != 0 ||
        attr__meta_reserve(st, cid) != 0) {
        return -ENOMEM;
    }
    int rc =
        attr__add_cand(st, c, event_id, cid, note, note_len, kind, watch_ms, occur_ns, persisted);
    if (rc > 0 && c->state == ATTR_LIVE && c->cached) {
        rc = attr__dirty(st, c);
    }
    return rc < 0 ? rc : 0;
}

/* -- eviction -- */

void attr_state_set_cache_budget(attr_state_t *st, size_t bytes)
{
    st->cache_budget = bytes;
}

int attr_conv_evictable(const attr_state_t *st, const attr_conv_t *c)
{
    if (!c->cached || c->state != ATTR_LIVE || c->pins > 0 || c->dirty || c->in_persist ||
        !c->applied || c->refund_pending != 0 || c->commit_seq >= st->evict_guard ||
        st->evict_hold) {
        return 0;
    }
    for (uint32_t i = 0; i < c->n_cands; i++) {
        if (!c->cands[i].persisted) {
            return 0;
        }
    }
    return 1;
}

/** Looked at in one attr_state_evict() beyond the ones that leave. */
#define ATTR__EVICT_SKIPS 256

size_t attr_state_evict(attr_state_t *st)
{
    if (st->cache_budget == 0 || st->evict_hold) {
        return 0;
    }
    size_t gone = 0, skipped = 0;
    attr_conv_t *c = st->lru_tail;
    while (c != NULL && st->cache_bytes > st->cache_budget && skipped < ATTR__EVICT_SKIPS) {
        attr_conv_t *prev = c->lru_prev;
        if (!attr_conv_evictable(st, c)) {
            skipped++;
            c = prev;
            continue;
        }
        attr__cache_remove(st, c);
        (void)attr_strmap_del(&st->orders, attr__order_hash(c), c->order_id, c->order_id_len);
        attr_conv_free(c);
        st->n_evicted++;
        gone++;
        c = prev;
    }
    return gone;
}

/* -- the conversion filter -- */

/**
 * Keys of the first filter; each next one is twice as big, up to ATTR__CFILTER_MAX (4 MiB
 * of filter): memory follows the orders within the horizon by steps of at most 4 MiB,
 * and an exposure probes a handful of filters.
 */
#define ATTR__CFILTER_FIRST (UINT64_C(1) << 16)
#define ATTR__CFILTER_MAX (UINT64_C(1) << 21)

int attr_state_conv_maybe(const attr_state_t *st, uint64_t vp_hash, int64_t occur_ns)
{
    for (size_t i = st->n_cfilters; i-- > 0;) {
        const attr_cfilter_t *f = &st->cfilters[i];
        /* Only a conversion at or after the exposure can take it as a touch. */
        if (f->max_occur_ns >= occur_ns && attr_bloom_maybe(&f->bloom, vp_hash)) {
            return 1;
        }
    }
    return 0;
}

int attr_state_conv_filter_add(attr_state_t *st, uint64_t vp_hash, int64_t occur_ns)
{
    attr_cfilter_t *f = st->n_cfilters > 0 ? &st->cfilters[st->n_cfilters - 1] : NULL;
    if (f == NULL || f->bloom.n_keys >= f->cap) {
        uint64_t cap = f == NULL ? ATTR__CFILTER_FIRST : f->cap * 2;
        if (cap > ATTR__CFILTER_MAX) {
            cap = ATTR__CFILTER_MAX;
        }
        attr_cfilter_t *p = realloc(st->cfilters, (st->n_cfilters + 1) * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        st->cfilters = p;
        f = &st->cfilters[st->n_cfilters];
        memset(f, 0, sizeof *f);
        f->cap = cap;
        f->max_occur_ns = INT64_MIN;
        if (attr_bloom_init(&f->bloom, cap, ATTR_BLOOM_BITS) != 0) {
            return -ENOMEM;
        }
        st->n_cfilters++;
    }
    attr_bloom_add(&f->bloom, vp_hash);
    if (occur_ns > f->max_occur_ns) {
        f->max_occur_ns = occur_ns;
    }
    return 0;
}

void attr_state_conv_filter_prune(attr_state_t *st, int64_t now_ns)
{
    int64_t limit = now_ns - attr_settings_horizon(&st->settings);
    size_t k = 0;
    for (size_t i = 0; i < st->n_cfilters; i++) {
        /* Not the newest (it is being filled): its keys may be of recent conversions. */
        if (i + 1 < st->n_cfilters && st->cfilters[i].max_occur_ns < limit) {
            attr_bloom_free(&st->cfilters[i].bloom);
        } else {
            st->cfilters[k++] = st->cfilters[i];
        }
    }
    st->n_cfilters = k;
}

void attr_state_conv_filter_take(attr_state_t *st, attr_state_t *from)
{
    for (size_t i = 0; i < st->n_cfilters; i++) {
        attr_bloom_free(&st->cfilters[i].bloom);
    }
    free(st->cfilters);
    st->cfilters = from->cfilters;
    st->n_cfilters = from->n_cfilters;
    from->cfilters = NULL;
    from->n_cfilters = 0;
}

size_t attr_state_conv_filter_bytes(const attr_state_t *st)
{
    size_t b = 0;
    for (size_t i = 0; i < st->n_cfilters; i++) {
        b += attr_bloom_bytes(&st->cfilters[i].bloom);
    }
    return b;
}

size_t attr_exposure_conv_maybe(const attr_state_t *st, uint64_t seq, int64_t now_ns,
                                uint8_t *maybe)
{
    const attr_pexp_t *p = attr_exposure_pending(st, seq);
    if (p == NULL) {
        return 0;
    }
    size_t n = 0;
    int joinable = st->n_cfilters > 0 && !attr_exposure_past_horizon(st, p->occur_ns, now_ns);
    uint64_t hv = joinable ? attr_hash_bytes(p->viewer.s, p->viewer.len) : 0;
    for (uint32_t k = 0; k < p->n_products; k++) {
        maybe[k] = joinable &&
                   attr_state_conv_maybe(
                       st, attr_vp_hash(hv, attr_hash_bytes(p->products[k].s, p->products[k].len)),
                       p->occur_ns);
        n += maybe[k];
    }
    return n;
}

/* ---- refunds ---- */

int attr_refund_admit(attr_state_t *st, const char *refund_id, size_t len, const char *order_id,
                      size_t order_len, int64_t amount, int64_t occur_ns, attr_refund_t **out,
                      int64_t *left)
{
    uint64_t h = attr_hash_bytes(refund_id, len);
    if (attr_strmap_get(&st->refunds, h, refund_id, len) != NULL) {
        return ATTR_DUPLICATE;
    }
    attr_conv_t *c = attr_conversion_find(st, order_id, order_len);
    if (c == NULL) {
        return ATTR_UNKNOWN_ORDER;
    }
    *left = c->amount - c->refunded - c->refund_pending;
    if (amount > *left) {
        return ATTR_TOO_LARGE;
    }
    attr_refund_t *r = calloc(1, sizeof *r);
    if (r == NULL || len > UINT32_MAX || (r->refund_id = malloc(len + 1)) == NULL ||
        attr_strmap_reserve(&st->refunds, 1) != 0) {
        if (r != NULL) {
            free(r->refund_id);
        }
        free(r);
        return -ENOMEM;
    }
    memcpy(r->refund_id, refund_id, len);
    r->refund_id[len] = '\0';
    r->refund_id_len = (uint32_t)len;
    r->conv = c;
    r->amount = amount;
    r->occur_ns = occur_ns;
    r->state = ATTR_PENDING;
    st->n_refunds_pending++;
    c->refund_pending += amount;
    (void)attr_strmap_add(&st->refunds, h, r->refund_id, r->refund_id_len, r);
    *out = r;
    return ATTR_ADMITTED;
}

/** Forgets a pending refund (committed or aborted) and frees it. */
static void attr__refund_drop(attr_state_t *st, attr_refund_t *r)
{
    st->n_refunds_pending--;
    r->conv->refund_pending -= r->amount;
    (void)attr_strmap_del(&st->refunds, attr_hash_bytes(r->refund_id, r->refund_id_len),
                          r->refund_id, r->refund_id_len);
    free(r->refund_id);
    free(r);
}

int attr_refund_commit(attr_state_t *st, attr_refund_t *r)
{
    if (r->state != ATTR_PENDING) {
        return -EINVAL;
    }
    attr_conv_t *c = r->conv;
    c->refunded += r->amount;
    attr__refund_drop(st, r);
    if (c->state != ATTR_LIVE) {
        return 0;
    }
    if (attr__dirty(st, c) != 0) {
        return -ENOMEM;
    }
    return st->defer ? 0 : attr_state_flush(st);
}

void attr_refund_abort(attr_state_t *st, attr_refund_t *r)
{
    if (r->state != ATTR_PENDING) {
        return;
    }
    attr__refund_drop(st, r);
}

/* ---- recomputation ---- */

/**
 * Whether a result with one eligible touch gives it the whole order under every model
 * (it always does: the shares of one touch are 1), so that it counts as a single.
 */
static int attr__is_single(const attr_conv_t *c)
{
    if (c->n_elig != 1) {
        return 0;
    }
    for (int m = 0; m < ATTR_N_MODELS; m++) {
        if (c->credit[m] != ATTR_CREDIT_ONE || c->minor[m] != c->minor[0]) {
            return 0;
        }
    }
    return 1;
}

/**
 * Makes sure every cell a result of `k` touches by these creators on `day` needs exists
 * (and room for wide figures), so that applying it cannot fail. 0 or -ENOMEM.
 */
static int attr__apply_room(attr_state_t *st, const attr_conv_t *c, const uint32_t *elig, size_t k,
                            int single, int64_t net)
{
    if (k == 0) {
        return attr__unattr_bucket(st, c->day) != NULL ? 0 : -ENOMEM;
    }
    size_t spill = 2; /* a single's two figures */
    for (size_t i = 0; i < k; i++) {
        attr_cday_t *cd = attr__cday_bucket(st, c->cands[elig[i]].creator, c->day);
        attr_multi_t *mu = cd == NULL || single ? NULL : attr__multi_of(st, cd);
        if (cd == NULL || (!single && mu == NULL)) {
            return -ENOMEM;
        }
        /* A split adds at most ATTR_CREDIT_ONE and `net` to a creator's cells per model
         * (whatever number of its touches): past int64 only in a cell near its end. */
        for (int m = 0; mu != NULL && m < ATTR_N_MODELS; m++) {
            spill += (size_t)attr__fig64_may_spill(mu->credit[m], ATTR_CREDIT_ONE);
            spill += (size_t)attr__fig64_may_spill(mu->gmv[m], net);
        }
    }
    return attr__wide_reserve(st, spill);
}

/**
 * Adds (sign +1) or removes (-1) a conversion's applied credits from the rollups. Its
 * cells exist (attr__apply_room()): cannot fail.
 */
static void attr__apply(attr_state_t *st, attr_conv_t *c, int sign)
{
    if (c->n_elig == 0) {
        attr_unattr_day_t *u = attr__unattr_bucket(st, c->day);
        if (u != NULL) {
            u->count += sign;
            u->gmv += (attr_sum_t)sign * c->applied_net;
        }
        return;
    }
    int single = attr__is_single(c);
    for (uint32_t i = 0; i < c->n_elig; i++) {
        uint32_t creator = c->cands[c->elig[i]].creator;
        attr_cday_t *cd = attr__cday_bucket(st, creator, c->day);
        if (cd == NULL) {
            continue; /* cannot happen */
        }
        if (single) {
            (void)attr__fig_add(st, &cd->singles, creator, c->day, ATTR__F_SINGLES, sign);
            (void)attr__fig_add(st, &cd->gmv, creator, c->day, ATTR__F_GMV,
                                (attr_sum_t)sign * c->minor[0]);
            continue;
        }
        attr_multi_t *mu = attr__multi_of(st, cd);
        for (int m = 0; mu != NULL && m < ATTR_N_MODELS; m++) {
            (void)attr__fig64_add(st, &mu->credit[m], creator, c->day, ATTR__F_MULTI_CREDIT + m,
                                  (attr_sum_t)sign * c->credit[m * c->n_elig + i]);
            (void)attr__fig64_add(st, &mu->gmv[m], creator, c->day, ATTR__F_MULTI_GMV + m,
                                  (attr_sum_t)sign * c->minor[m * c->n_elig + i]);
        }
    }
}

/**
 * Computes a conversion's result from its candidates under st's rules. With `rollups`,
 * moves its credits in the rollups from the old result (when applied) to the new one;
 * without, only the result changes. On failure the old result stays (and applied).
 */
static int attr__compute(attr_state_t *st, attr_conv_t *c, int rollups)
{
    size_t n = c->n_cands;
    /* Scratch: touches, indices, times, numerators, the split's own. */
    size_t need = n * (sizeof(attr_touch_t) + sizeof(size_t) + 2 * sizeof(int64_t)) +
                  ATTR_SPLIT_SCRATCH(n) + 64;
    if (need > st->scratch_cap) {
        unsigned char *p = realloc(st->scratch, need);
        if (p == NULL) {
            return -ENOMEM;
        }
        st->scratch = p;
        st->scratch_cap = need;
    }
    attr_touch_t *t = (attr_touch_t *)st->scratch;
    size_t *idx = (size_t *)(t + n);
    int64_t *occ = (int64_t *)(idx + n);
    int64_t *num = occ + n;
    void *split = num + n;
    for (size_t i = 0; i < n; i++) {
        t[i].event_id = c->cands[i].event_id;
        t[i].occur_ns = c->cands[i].occur_ns;
        t[i].kind = c->cands[i].kind;
        t[i].watch_ms = c->cands[i].watch_ms;
    }
    size_t k = attr_select(&st->rules, c->occur_ns, t, n, idx, NULL);
    /* The new result, built aside so that a failure leaves the old one applied. */
    uint32_t *elig = NULL;
    int64_t *credit = NULL, *minor = NULL, *nums = NULL;
    int64_t den[ATTR_N_MODELS] = {0};
    int64_t net = attr_conv_net(c);
    /* One touch: built in `one`, copied inline once the old result is off the rollups. */
    int64_t one[3 * ATTR_N_MODELS + 1];
    if (k > 0) {
        size_t bytes = k * sizeof(uint32_t) + 3 * ATTR_N_MODELS * k * sizeof(int64_t);
        void *block = k == 1 ? one : malloc(bytes + sizeof(int64_t));
        if (block == NULL) {
            return -ENOMEM;
        }
        credit = block;
        minor = credit + ATTR_N_MODELS * k;
        nums = minor + ATTR_N_MODELS * k;
        elig = (uint32_t *)(nums + ATTR_N_MODELS * k);
        for (size_t i = 0; i < k; i++) {
            elig[i] = (uint32_t)idx[i];
            occ[i] = c->cands[idx[i]].occur_ns;
        }
        for (int m = 0; m < ATTR_N_MODELS; m++) {
            int rc = attr_shares(&st->rules, m + 1, c->occur_ns, occ, k, num, &den[m]);
            if (rc == 0) {
                rc = attr_split(ATTR_CREDIT_ONE, num, den[m], k, credit + m * k, split);
            }
            if (rc == 0) {
                rc = attr_split(net, num, den[m], k, minor + m * k, split);
            }
            if (rc != 0) {
                if (block != one) {
                    free(block);
                }
                return rc;
            }
            memcpy(nums + m * k, num, k * sizeof *num);
        }
    }
    /* Make sure every cell the new result needs exists before touching the old. */
    int single = k == 1;
    for (int m = 0; single && m < ATTR_N_MODELS; m++) {
        single = credit[m] == ATTR_CREDIT_ONE && minor[m] == minor[0];
    }
    if (rollups && attr__apply_room(st, c, elig, k, single, net) != 0) {
        if (credit != one) {
            free(credit);
        }
        return -ENOMEM;
    }
    if (rollups && c->applied) {
        attr__apply(st, c, -1); /* its cells exist */
    }
    attr__result_free(c); /* the block of the old result (credit is its start) */
    if (k == 1) {
        /* credit, minor, num: one each per model; then elig. */
        memcpy(c->res1, one, sizeof c->res1);
        c->elig1 = elig[0];
        credit = c->res1;
        minor = credit + ATTR_N_MODELS;
        nums = minor + ATTR_N_MODELS;
        elig = &c->elig1;
    }
    c->credit = credit;
    c->minor = minor;
    c->num = nums;
    c->elig = elig; /* in the same block as credit */
    c->n_elig = (uint32_t)k;
    memcpy(c->den, den, sizeof den);
    c->applied_net = net;
    c->settings_version = st->settings.version;
    if (rollups) {
        attr__apply(st, c, +1);
        c->applied = 1;
    }
    attr__conv_account(st, c);
    return 0;
}

static int attr__recompute(attr_state_t *st, attr_conv_t *c)
{
    return attr__compute(st, c, 1);
}

int attr_conv_compute(attr_state_t *st, attr_conv_t *c)
{
    return attr__compute(st, c, 0);
}

int attr_conv_apply(attr_state_t *st, attr_conv_t *c)
{
    return attr__compute(st, c, 1);
}

int attr_state_flush(attr_state_t *st)
{
    int rc = 0;
    size_t i = 0;
    for (; i < st->n_dirty; i++) {
        attr_conv_t *c = st->dirty[i];
        if (c->state == ATTR_LIVE) {
            rc = attr__recompute(st, c);
            if (rc != 0) {
                break;
            }
        }
        c->dirty = 0;
    }
    /* On failure keep the rest for the next flush. */
    if (i < st->n_dirty) {
        memmove(st->dirty, st->dirty + i, (st->n_dirty - i) * sizeof *st->dirty);
    }
    st->n_dirty -= i;
    return rc;
}

int attr_state_set_settings(attr_state_t *st, const attr_settings_t *s)
{
    st->settings = *s;
    attr_settings_rules(s, &st->rules);
    for (attr_conv_t *c = st->lru_head; c != NULL; c = c->lru_next) {
        if (attr__dirty(st, c) != 0) {
            return -ENOMEM;
        }
    }
    return attr_state_flush(st);
}

/** Empties the credit rollups (the exposure counts stay). */
static void attr__clear_credits(attr_state_t *st)
{
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        st->creator_meta[i].n_cdays = 0;
    }
    st->n_multi = 0;
    st->n_unattr = 0;
    for (size_t i = st->n_wide; i-- > 0;) {
        if (st->wide[i].field >= ATTR__F_CREDIT_FIRST) {
            attr__wide_drop(st, i);
        }
    }
}

/** Adds `from`'s credit rollups to st's (creators matched by name). */
static int attr__add_credits(attr_state_t *st, const attr_state_t *from)
{
    for (uint32_t fc = 0; fc < from->creators.count && fc < from->cap_creator_meta; fc++) {
        const attr_creator_t *fm = &from->creator_meta[fc];
        if (fm->n_cdays == 0) {
            continue;
        }
        size_t len;
        const char *name = attr_intern_str(&from->creators, fc, &len);
        uint32_t id;
        if (attr_intern(&st->creators, name, len, &id) != 0) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < fm->n_cdays; i++) {
            const attr_cday_t *f = &fm->cdays[i];
            attr_cday_t *cd = attr__cday_bucket(st, id, f->day);
            if (cd == NULL || attr__wide_reserve(st, 2 + 2 * ATTR_N_MODELS) != 0) {
                return -ENOMEM;
            }
            (void)attr__fig_add(st, &cd->singles, id, f->day, ATTR__F_SINGLES,
                                attr__fig(from, f->singles, fc, f->day, ATTR__F_SINGLES));
            (void)attr__fig_add(st, &cd->gmv, id, f->day, ATTR__F_GMV,
                                attr__fig(from, f->gmv, fc, f->day, ATTR__F_GMV));
            if (f->multi != 0) {
                const attr_multi_t *fmu = &from->multi[f->multi - 1];
                attr_multi_t *mu = attr__multi_of(st, cd);
                if (mu == NULL) {
                    return -ENOMEM;
                }
                for (int m = 0; m < ATTR_N_MODELS; m++) {
                    uint32_t fcr = ATTR__F_MULTI_CREDIT + m, fgm = ATTR__F_MULTI_GMV + m;
                    (void)attr__fig64_add(st, &mu->credit[m], id, f->day, fcr,
                                          attr__fig64(from, fmu->credit[m], fc, f->day, fcr));
                    (void)attr__fig64_add(st, &mu->gmv[m], id, f->day, fgm,
                                          attr__fig64(from, fmu->gmv[m], fc, f->day, fgm));
                }
            }
        }
    }
    for (size_t i = 0; i < from->n_unattr; i++) {
        attr_unattr_day_t *u = attr__unattr_bucket(st, from->unattr[i].day);
        if (u == NULL) {
            return -ENOMEM;
        }
        u->count += from->unattr[i].count;
        u->gmv += from->unattr[i].gmv;
    }
    return 0;
}

int attr_state_replace_credits(attr_state_t *st, const attr_state_t *from, const attr_settings_t *s)
{
    st->settings = *s;
    attr_settings_rules(s, &st->rules);
    attr__clear_credits(st);
    for (attr_conv_t *c = st->lru_head; c != NULL; c = c->lru_next) {
        c->applied = 0; /* the rollups it was in are gone */
    }
    int rc = from != NULL ? attr__add_credits(st, from) : 0;
    for (attr_conv_t *c = st->lru_head; c != NULL && rc == 0; c = c->lru_next) {
        if (c->state == ATTR_LIVE) {
            rc = attr__dirty(st, c);
        }
    }
    return rc != 0 ? rc : attr_state_flush(st);
}

/** The figures of one credit cell: singles, gmv, then credit and gmv of each model. */
enum { ATTR__AUDIT_FIGS = 2 + 2 * ATTR_N_MODELS };

static void attr__cday_figs(const attr_state_t *st, uint32_t creator, const attr_cday_t *cd,
                            int64_t out[ATTR__AUDIT_FIGS])
{
    memset(out, 0, ATTR__AUDIT_FIGS * sizeof *out);
    if (cd == NULL) {
        return;
    }
    out[0] = attr__fig(st, cd->singles, creator, cd->day, ATTR__F_SINGLES);
    out[1] = attr__fig(st, cd->gmv, creator, cd->day, ATTR__F_GMV);
    if (cd->multi != 0) {
        const attr_multi_t *mu = &st->multi[cd->multi - 1];
        for (int m = 0; m < ATTR_N_MODELS; m++) {
            out[2 + m] = mu->credit[m];
            out[2 + ATTR_N_MODELS + m] = mu->gmv[m];
        }
    }
}

/** The cell of `creator` (by name) and `day` in st, or NULL; *id its creator id. */
static const attr_cday_t *attr__cday_named(const attr_state_t *st, const char *name, size_t len,
                                           int32_t day, uint32_t *id)
{
    int64_t c = attr_intern_find(&st->creators, name, len);
    if (c < 0 || (uint64_t)c >= st->cap_creator_meta) {
        return NULL;
    }
    *id = (uint32_t)c;
    const attr_creator_t *m = &st->creator_meta[c];
    uint32_t i;
    ATTR__LOWER_BOUND(m->cdays, m->n_cdays, day, i);
    return i < m->n_cdays && m->cdays[i].day == day ? &m->cdays[i] : NULL;
}

/** Compares a's cells with b's (a's creators; b's cells a lacks count as zero). */
static int attr__audit_cells(const attr_state_t *a, const attr_state_t *b, int a_is_got,
                             attr_audit_fn diff, void *arg)
{
    static const char *const what[ATTR__AUDIT_FIGS] = {
        "singles",   "gmv",    "credit[1]", "credit[2]", "credit[3]", "credit[4]",
        "credit[5]", "gmv[1]", "gmv[2]",    "gmv[3]",    "gmv[4]",    "gmv[5]"};
    _Static_assert(ATTR_N_MODELS == 5, "attr__audit_cells names");
    int n = 0;
    for (uint32_t c = 0; c < a->creators.count && c < a->cap_creator_meta; c++) {
        const attr_creator_t *m = &a->creator_meta[c];
        size_t len;
        const char *name = attr_intern_str(&a->creators, c, &len);
        for (uint32_t i = 0; i < m->n_cdays; i++) {
            uint32_t bid = 0;
            const attr_cday_t *bc = attr__cday_named(b, name, len, m->cdays[i].day, &bid);
            if (!a_is_got && bc != NULL) {
                continue; /* compared from the other side */
            }
            int64_t fa[ATTR__AUDIT_FIGS], fb[ATTR__AUDIT_FIGS];
            attr__cday_figs(a, c, &m->cdays[i], fa);
            attr__cday_figs(b, bid, bc, fb);
            for (int f = 0; f < ATTR__AUDIT_FIGS; f++) {
                if (fa[f] != fb[f]) {
                    diff(arg, name, len, m->cdays[i].day, what[f], a_is_got ? fa[f] : fb[f],
                         a_is_got ? fb[f] : fa[f]);
                    n++;
                }
            }
        }
    }
    return n;
}

int attr_state_audit(attr_state_t *st, const attr_state_t *from, attr_audit_fn diff, void *arg)
{
    /* What the cached conversions add, off; compared; back on (every cell exists). */
    for (attr_conv_t *c = st->lru_head; c != NULL; c = c->lru_next) {
        if (c->state == ATTR_LIVE && c->applied) {
            attr__apply(st, c, -1);
        }
    }
    int n = attr__audit_cells(st, from, 1, diff, arg) + attr__audit_cells(from, st, 0, diff, arg);
    for (size_t i = 0; i < st->n_unattr; i++) {
        int64_t count = 0, gmv = 0;
        for (size_t k = 0; k < from->n_unattr; k++) {
            if (from->unattr[k].day == st->unattr[i].day) {
                count = from->unattr[k].count;
                gmv = from->unattr[k].gmv;
            }
        }
        if (count != st->unattr[i].count || gmv != st->unattr[i].gmv) {
            diff(arg, NULL, 0, st->unattr[i].day, "unattributed", st->unattr[i].count, count);
            n++;
        }
    }
    for (attr_conv_t *c = st->lru_head; c != NULL; c = c->lru_next) {
        if (c->state == ATTR_LIVE && c->applied) {
            attr__apply(st, c, +1);
        }
    }
    return n;
}

int attr_state_take_persist(attr_state_t *st, attr_conv_t ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (st->n_persist == 0) {
        return 0;
    }
    attr_conv_t **arr = malloc(st->n_persist * sizeof *arr);
    if (arr == NULL) {
        return -ENOMEM;
    }
    memcpy(arr, st->persist, st->n_persist * sizeof *arr);
    for (size_t i = 0; i < st->n_persist; i++) {
        arr[i]->in_persist = 0;
    }
    *out = arr;
    *n = st->n_persist;
    st->n_persist = 0;
    return 0;
}

void attr_state_mark_persisted(attr_conv_t *c, uint32_t upto)
{
    for (uint32_t i = 0; i < upto && i < c->n_cands; i++) {
        c->cands[i].persisted = 1;
    }
}

int attr_state_repersist(attr_state_t *st, attr_conv_t *c)
{
    return attr__persist_later(st, c);
}

/* ---- queries ---- */

void attr_state_creator_sums(const attr_state_t *st, uint32_t creator, int32_t d0, int32_t d1,
                             int model, attr_sums_t *out)
{
    memset(out, 0, sizeof *out);
    if (creator >= st->cap_creator_meta || model < 1 || model > ATTR_N_MODELS) {
        return;
    }
    const attr_creator_t *m = &st->creator_meta[creator];
    uint32_t i;
    ATTR__LOWER_BOUND(m->days, m->n_days, d0, i);
    for (; i < m->n_days && m->days[i].day < d1; i++) {
        const attr_day_t *b = &m->days[i];
        out->impressions += attr__fig(st, b->impressions, creator, b->day, ATTR__F_IMPRESSIONS);
        out->views += attr__fig(st, b->views, creator, b->day, ATTR__F_VIEWS);
        out->clicks += attr__fig(st, b->clicks, creator, b->day, ATTR__F_CLICKS);
    }
    ATTR__LOWER_BOUND(m->cdays, m->n_cdays, d0, i);
    for (; i < m->n_cdays && m->cdays[i].day < d1; i++) {
        const attr_cday_t *cd = &m->cdays[i];
        out->credit +=
            attr__fig(st, cd->singles, creator, cd->day, ATTR__F_SINGLES) * ATTR_CREDIT_ONE;
        out->gmv += attr__fig(st, cd->gmv, creator, cd->day, ATTR__F_GMV);
        if (cd->multi != 0) {
            const attr_multi_t *mu = &st->multi[cd->multi - 1];
            out->credit += attr__fig64(st, mu->credit[model - 1], creator, cd->day,
                                       ATTR__F_MULTI_CREDIT + model - 1);
            out->gmv += attr__fig64(st, mu->gmv[model - 1], creator, cd->day,
                                    ATTR__F_MULTI_GMV + model - 1);
        }
    }
}

void attr_state_unattributed(const attr_state_t *st, int32_t d0, int32_t d1, attr_sum_t *count,
                             attr_sum_t *gmv)
{
    *count = 0;
    *gmv = 0;
    for (size_t i = 0; i < st->n_unattr; i++) {
        if (st->unattr[i].day >= d0 && st->unattr[i].day < d1) {
            *count += st->unattr[i].count;
            *gmv += st->unattr[i].gmv;
        }
    }
}

/* ---- memory ---- */

void attr_state_mem(const attr_state_t *st, attr_state_mem_t *out)
{
    memset(out, 0, sizeof *out);
    out->rollups = st->cap_creator_meta * sizeof *st->creator_meta +
                   st->cap_unattr * sizeof *st->unattr + st->cap_multi * sizeof *st->multi +
                   st->cap_wide * sizeof *st->wide + st->wide_at.cap * 2 * sizeof(uint64_t);
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        const attr_creator_t *m = &st->creator_meta[i];
        out->rollups +=
            (size_t)m->cap_days * sizeof *m->days + (size_t)m->cap_cdays * sizeof *m->cdays;
    }
    out->creators = attr_intern_bytes(&st->creators);
    out->conversions = st->cache_bytes;
    out->conv_index = attr_strmap_bytes(&st->orders) + attr_strmap_bytes(&st->pend_orders) +
                      attr_map64_bytes(&st->conv_vp);
    out->conv_filter = attr_state_conv_filter_bytes(st);
    out->refunds =
        attr_strmap_bytes(&st->refunds) + st->n_refunds_pending * (sizeof(attr_refund_t) + 32);
    out->pending = attr_strmap_bytes(&st->pend_ids) + st->cap_pend * sizeof *st->pend;
    for (size_t i = 0; i < st->n_pend; i++) {
        out->pending += sizeof *st->pend[i] + st->pend[i]->n_blocks * ATTR__PBLOCK;
    }
    for (size_t i = 0; i < st->n_spare_pchunks; i++) {
        out->pending +=
            sizeof *st->spare_pchunks[i] + st->spare_pchunks[i]->n_blocks * ATTR__PBLOCK;
    }
    for (size_t i = 0; i < st->n_runs; i++) {
        out->runs += attr_run_bytes(st->runs[i]);
    }
    out->bloom = attr_state_bloom_bytes(st);
    out->work =
        st->cap_dirty * sizeof *st->dirty + st->cap_persist * sizeof *st->persist + st->scratch_cap;
}
