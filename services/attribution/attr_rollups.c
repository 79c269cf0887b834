/*
 * attr_rollups.c — the rollups of the in-memory state: exposure counts and credits per
 * creator and day, wide figures, unattributed conversions, queries and the audit. See
 * attr_rollups.h.
 */
#include "services/attribution/attr_state_parts.h"

#include <string.h>

/*
 * The figures of the rollups: the 32-bit ones of a cell (one that does not fit is in
 * st->wide, the cell holding UINT32_MAX), and the 64-bit ones of an attr_multi_t, per
 * model (past int64 in st->wide, the cell holding INT64_MIN). st->wide keeps the exact
 * value (attr_sum_t). The numbers are on disk (attr_snap.c writes st->wide): keep them.
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

int attr__rollups_reserve_creator(attr_state_t *st, uint32_t creator)
{
    size_t old = st->cap_creator_meta;
    if (YW_VEC_RESERVE(st->creator_meta, st->cap_creator_meta, (size_t)creator + 1, 64) != 0) {
        return -ENOMEM;
    }
    if (st->cap_creator_meta > old) {
        memset(st->creator_meta + old, 0, (st->cap_creator_meta - old) * sizeof *st->creator_meta);
    }
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

_Static_assert(offsetof(attr_day_t, day) == 0 && offsetof(attr_cday_t, day) == 0,
               "a cell starts with its day (attr__day_cell())");

/** The day of a cell (attr_day_t, attr_cday_t: their first member). */
static int32_t attr__cell_day(const char *cell)
{
    int32_t day;
    memcpy(&day, cell, sizeof day);
    return day;
}

/**
 * The cell of `day` in a day-sorted array of `*n` cells of `size` bytes (attr_day_t,
 * attr_cday_t), added (zero but for its day) when missing. NULL: no memory.
 */
static void *attr__day_cell(void **arr, uint32_t *n, uint32_t *cap, size_t size, int32_t day,
                            size_t *bytes)
{
    char *a = *arr;
    /* Most updates hit the latest day: look there first. */
    if (*n > 0 && attr__cell_day(a + (size_t)(*n - 1) * size) == day) {
        return a + (size_t)(*n - 1) * size;
    }
    uint32_t lo = 0, hi = *n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (attr__cell_day(a + (size_t)mid * size) < day) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < *n && attr__cell_day(a + (size_t)lo * size) == day) {
        return a + (size_t)lo * size;
    }
    uint32_t had = *cap;
    if (attr__grow_cells(arr, cap, *n, size) != 0) {
        return NULL;
    }
    *bytes += (size_t)(*cap - had) * size;
    a = *arr;
    memmove(a + (size_t)(lo + 1) * size, a + (size_t)lo * size, (size_t)(*n - lo) * size);
    memset(a + (size_t)lo * size, 0, size);
    memcpy(a + (size_t)lo * size, &day, sizeof day);
    (*n)++;
    return a + (size_t)lo * size;
}

/** The counts of `day` of a creator, added when missing (NULL: no memory). */
static attr_day_t *attr__day_bucket(attr_state_t *st, uint32_t creator, int32_t day)
{
    if (attr__rollups_reserve_creator(st, creator) != 0) {
        return NULL;
    }
    attr_creator_t *m = &st->creator_meta[creator];
    return attr__day_cell((void **)&m->days, &m->n_days, &m->cap_days, sizeof *m->days, day,
                          &st->cell_bytes);
}

/** The credits of `day` of a creator, added when missing (NULL: no memory). */
static attr_cday_t *attr__cday_bucket(attr_state_t *st, uint32_t creator, int32_t day)
{
    if (attr__rollups_reserve_creator(st, creator) != 0) {
        return NULL;
    }
    attr_creator_t *m = &st->creator_meta[creator];
    return attr__day_cell((void **)&m->cdays, &m->n_cdays, &m->cap_cdays, sizeof *m->cdays, day,
                          &st->cell_bytes);
}

/** The per-model figures of a credit cell, added when missing (NULL: no memory). */
static attr_multi_t *attr__multi_of(attr_state_t *st, attr_cday_t *cd)
{
    if (cd->multi == 0) {
        if (st->n_multi >= UINT32_MAX - 1 ||
            YW_VEC_RESERVE(st->multi, st->cap_multi, st->n_multi + 1, 8) != 0) {
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
    int rc = YW_VEC_RESERVE(st->wide, st->cap_wide, st->n_wide + n, 8);
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
    if (YW_VEC_RESERVE(st->unattr, st->cap_unattr, st->n_unattr + 1, 8) != 0) {
        return NULL;
    }
    memmove(&st->unattr[lo + 1], &st->unattr[lo], (st->n_unattr - lo) * sizeof *st->unattr);
    memset(&st->unattr[lo], 0, sizeof st->unattr[lo]);
    st->unattr[lo].day = day;
    st->n_unattr++;
    return &st->unattr[lo];
}

int attr_state_add_exposure_counts(attr_state_t *st, uint32_t creator, int32_t day, int64_t imp,
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

int attr_state_creator(attr_state_t *st, const char *creator, size_t len, uint32_t *id,
                       const char **str)
{
    int rc = attr_intern2(&st->creators, creator, len, id, str);
    return rc != 0 ? rc : attr__rollups_reserve_creator(st, *id);
}

attr_day_t *attr__rollups_count_room(attr_state_t *st, uint32_t creator, int32_t day)
{
    attr_day_t *b = attr__day_bucket(st, creator, day);
    return b != NULL && attr__wide_reserve(st, 1) == 0 ? b : NULL;
}

void attr__rollups_count_one(attr_state_t *st, attr_day_t *b, uint32_t creator, int32_t day,
                             int kind)
{
    uint32_t *fig = kind == ATTR_KIND_IMPRESSION ? &b->impressions
                    : kind == ATTR_KIND_VIEW     ? &b->views
                    : kind == ATTR_KIND_CLICK    ? &b->clicks
                                                 : NULL;
    if (fig != NULL && *fig < UINT32_MAX - 1) {
        (*fig)++;
    } else if (fig != NULL) {
        (void)attr__fig_add(st, fig, creator, day,
                            kind == ATTR_KIND_IMPRESSION ? ATTR__F_IMPRESSIONS
                            : kind == ATTR_KIND_VIEW     ? ATTR__F_VIEWS
                                                         : ATTR__F_CLICKS,
                            1);
    }
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

/* ---- credits ---- */

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

int attr__rollups_credit_room(attr_state_t *st, const attr_conv_t *c, const uint32_t *elig,
                              size_t k, int single, int64_t net)
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

void attr__rollups_credit(attr_state_t *st, const attr_conv_t *c, int sign)
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
void attr__rollups_clear_credits(attr_state_t *st)
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

int attr__rollups_add_credits(attr_state_t *st, const attr_state_t *from)
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
            attr__rollups_credit(st, c, -1);
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
            attr__rollups_credit(st, c, +1);
        }
    }
    return n;
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

/* ---- free, memory ---- */

void attr__rollups_free(attr_state_t *st)
{
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        free(st->creator_meta[i].days);
        free(st->creator_meta[i].cdays);
    }
    free(st->creator_meta);
    free(st->unattr);
    free(st->multi);
    free(st->wide);
    attr_map64_free(&st->wide_at);
}

void attr__rollups_mem(const attr_state_t *st, attr_state_mem_t *out)
{
    out->rollups = st->cap_creator_meta * sizeof *st->creator_meta +
                   st->cap_unattr * sizeof *st->unattr + st->cap_multi * sizeof *st->multi +
                   st->cap_wide * sizeof *st->wide + st->wide_at.cap * 2 * sizeof(uint64_t) +
                   st->cell_bytes;
}
