/* attr_state.c — the in-memory attribution state. See attr_state.h. */
#include "services/attribution/attr_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ATTR__ARENA_BLOCK (256u << 10)

struct st_attr_chunk_t {
    uint32_t n;
    uint32_t n_pending;
    int64_t max_keep_ns; /* max over its exposures of max(arrival, occur_time) */
    uint32_t *prods;
    size_t n_prods, cap_prods;
    char **blocks;
    size_t n_blocks, cap_blocks;
    char *cur;
    size_t left;
    attr_exp_t recs[ATTR_CHUNK_EXPOSURES];
};

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

static int attr__grow32(void **arr, uint32_t *cap, size_t need, size_t size)
{
    size_t c = *cap;
    int rc = attr__grow(arr, &c, need, size);
    if (rc == 0) {
        if (c > UINT32_MAX) {
            return -ENOMEM;
        }
        *cap = (uint32_t)c;
    }
    return rc;
}

static uint64_t attr__vp_key(uint32_t viewer, uint32_t product)
{
    return ((uint64_t)viewer << 32) | product;
}

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
    attr_intern_init(&st->viewers);
    attr_intern_init(&st->creators);
    attr_intern_init(&st->notes);
    attr_intern_init(&st->products);
    attr_strmap_init(&st->event_ids);
    attr_map64_init(&st->join);
    attr_strmap_init(&st->orders);
    attr_map64_init(&st->conv_vp);
    attr_strmap_init(&st->refunds);
    return 0;
}

static void attr__chunk_free(attr_chunk_t *c)
{
    for (size_t i = 0; i < c->n_blocks; i++) {
        free(c->blocks[i]);
    }
    free(c->blocks);
    free(c->prods);
    free(c);
}

static void attr__conv_free(attr_conv_t *c)
{
    for (uint32_t i = 0; i < c->n_cands; i++) {
        free(c->cands[i].event_id);
    }
    free(c->cands);
    free(c->credit); /* the block holding credit, minor, num and elig */
    free(c->order_id);
    free(c);
}

void attr_state_free(attr_state_t *st)
{
    for (size_t i = 0; i < st->n_chunks; i++) {
        attr__chunk_free(st->chunks[i]);
    }
    free(st->chunks);
    for (size_t i = 0; i < st->n_vecs; i++) {
        if (st->vecs[i].cap > 1) {
            free(st->vecs[i].u.items);
        }
    }
    free(st->vecs);
    free(st->free_vecs);
    for (size_t i = 0; i < st->n_conv_lists; i++) {
        if (st->conv_lists[i].cap > 1) {
            free(st->conv_lists[i].u.items);
        }
    }
    free(st->conv_lists);
    /* Pending conversions are in `orders` only; live ones in both. */
    for (size_t i = 0; i < st->orders.cap; i++) {
        if (st->orders.slots[i].hash != 0) {
            attr__conv_free(st->orders.slots[i].val);
        }
    }
    for (size_t i = 0; i < st->n_graveyard; i++) {
        attr__conv_free(st->graveyard[i]);
    }
    free(st->graveyard);
    free(st->convs);
    for (size_t i = 0; i < st->refunds.cap; i++) {
        if (st->refunds.slots[i].hash != 0) {
            attr_refund_t *r = st->refunds.slots[i].val;
            free(r->refund_id);
            free(r);
        }
    }
    free(st->refund_list);
    free(st->dirty);
    free(st->persist);
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        free(st->creator_meta[i].days);
    }
    free(st->creator_meta);
    free(st->unattr);
    free(st->scratch);
    attr_strmap_free(&st->event_ids);
    attr_map64_free(&st->join);
    attr_strmap_free(&st->orders);
    attr_map64_free(&st->conv_vp);
    attr_strmap_free(&st->refunds);
    attr_intern_free(&st->viewers);
    attr_intern_free(&st->creators);
    attr_intern_free(&st->notes);
    attr_intern_free(&st->products);
    memset(st, 0, sizeof *st);
}

/* ---- rollups ---- */

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

/** The bucket of `day` in a sorted array of attr_day_t, added when missing. */
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
    uint32_t lo = 0, hi = m->n_days;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->days[mid].day < day) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < m->n_days && m->days[lo].day == day) {
        return &m->days[lo];
    }
    if (attr__grow32((void **)&m->days, &m->cap_days, (size_t)m->n_days + 1, sizeof *m->days) !=
        0) {
        return NULL;
    }
    memmove(&m->days[lo + 1], &m->days[lo], (m->n_days - lo) * sizeof *m->days);
    memset(&m->days[lo], 0, sizeof m->days[lo]);
    m->days[lo].day = day;
    m->n_days++;
    return &m->days[lo];
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

int attr_state_add_exposure_rollup(attr_state_t *st, const char *creator, size_t len, int32_t day,
                                   int64_t impressions, int64_t views, int64_t clicks)
{
    uint32_t id;
    int rc = attr_intern(&st->creators, creator, len, &id);
    if (rc != 0) {
        return rc;
    }
    attr_day_t *b = attr__day_bucket(st, id, day);
    if (b == NULL) {
        return -ENOMEM;
    }
    b->impressions += impressions;
    b->views += views;
    b->clicks += clicks;
    return 0;
}

/* ---- exposures ---- */

static attr_chunk_t *attr__chunk_for_new(attr_state_t *st)
{
    if (st->n_chunks > 0) {
        attr_chunk_t *last = st->chunks[st->n_chunks - 1];
        if (last->n < ATTR_CHUNK_EXPOSURES) {
            return last;
        }
    }
    if (ATTR__GROW(st->chunks, st->cap_chunks, st->n_chunks + 1) != 0) {
        return NULL;
    }
    attr_chunk_t *c = malloc(sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    attr_hint_huge(c, sizeof *c);
    memset(c, 0, offsetof(attr_chunk_t, recs));
    c->max_keep_ns = INT64_MIN;
    if (st->n_chunks == 0) {
        st->base_seq = st->next_seq;
    }
    st->chunks[st->n_chunks++] = c;
    return c;
}

static char *attr__chunk_strdup(attr_chunk_t *c, const char *s, size_t n)
{
    if (n + 1 > c->left) {
        if (ATTR__GROW(c->blocks, c->cap_blocks, c->n_blocks + 1) != 0) {
            return NULL;
        }
        size_t size = n + 1 > ATTR__ARENA_BLOCK ? n + 1 : ATTR__ARENA_BLOCK;
        char *b = malloc(size);
        if (b == NULL) {
            return NULL;
        }
        c->blocks[c->n_blocks++] = b;
        c->cur = b;
        c->left = size;
    }
    char *p = c->cur;
    memcpy(p, s, n);
    p[n] = '\0';
    c->cur += n + 1;
    c->left -= n + 1;
    return p;
}

attr_exp_t *attr_exposure_get(attr_state_t *st, uint64_t seq)
{
    if (seq < st->base_seq || seq >= st->next_seq || st->n_chunks == 0) {
        return NULL;
    }
    uint64_t off = seq - st->base_seq;
    size_t ci = (size_t)(off / ATTR_CHUNK_EXPOSURES);
    if (ci >= st->n_chunks) {
        return NULL;
    }
    return &st->chunks[ci]->recs[off % ATTR_CHUNK_EXPOSURES];
}

static attr_chunk_t *attr__chunk_of(attr_state_t *st, uint64_t seq)
{
    return st->chunks[(size_t)((seq - st->base_seq) / ATTR_CHUNK_EXPOSURES)];
}

const uint32_t *attr_exposure_products(attr_state_t *st, uint64_t seq)
{
    attr_exp_t *e = attr_exposure_get(st, seq);
    return e != NULL ? attr__chunk_of(st, seq)->prods + e->prod_off : NULL;
}

int attr_exposure_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - attr_settings_horizon(&st->settings);
}

int attr_exposure_admit(attr_state_t *st, const attr_exposure_in_t *in, int64_t now_ns,
                        uint64_t *seq, attr_interned_t *out)
{
    uint64_t h = attr_hash_bytes(in->event_id, in->event_id_len);
    if (attr_strmap_get(&st->event_ids, h, in->event_id, in->event_id_len) != NULL) {
        return ATTR_DUPLICATE;
    }
    if (in->event_id_len > UINT16_MAX || in->n_products > UINT16_MAX) {
        return -EINVAL;
    }
    uint32_t viewer, creator, note;
    const char *vs, *cs, *ns;
    if (attr_intern2(&st->viewers, in->viewer_id, in->viewer_len, &viewer, &vs) != 0 ||
        attr_intern2(&st->creators, in->creator_id, in->creator_len, &creator, &cs) != 0 ||
        attr_intern2(&st->notes, in->note_id, in->note_len, &note, &ns) != 0 ||
        attr__meta_reserve(st, creator) != 0) {
        return -ENOMEM;
    }
    if (out != NULL) {
        out[0] = (attr_interned_t){vs, (uint32_t)in->viewer_len, viewer};
        out[1] = (attr_interned_t){cs, (uint32_t)in->creator_len, creator};
        out[2] = (attr_interned_t){ns, (uint32_t)in->note_len, note};
    }
    attr_chunk_t *c = attr__chunk_for_new(st);
    if (c == NULL || ATTR__GROW(c->prods, c->cap_prods, c->n_prods + in->n_products) != 0 ||
        attr_strmap_reserve(&st->event_ids, 1) != 0) {
        return -ENOMEM;
    }
    size_t prod_off = c->n_prods;
    for (size_t k = 0; k < in->n_products; k++) {
        size_t len = in->product_lens ? in->product_lens[k] : strlen(in->product_ids[k]);
        uint32_t pid;
        const char *ps;
        if (attr_intern2(&st->products, in->product_ids[k], len, &pid, &ps) != 0) {
            return -ENOMEM;
        }
        c->prods[prod_off + k] = pid;
        if (out != NULL) {
            out[3 + k] = (attr_interned_t){ps, (uint32_t)len, pid};
        }
    }
    char *eid = attr__chunk_strdup(c, in->event_id, in->event_id_len);
    if (eid == NULL) {
        return -ENOMEM;
    }
    c->n_prods += in->n_products;
    attr_exp_t *e = &c->recs[c->n];
    memset(e, 0, sizeof *e);
    e->event_id = eid;
    e->event_id_len = (uint16_t)in->event_id_len;
    e->occur_ns = in->occur_ns;
    e->watch_ms = in->watch_ms;
    e->viewer = viewer;
    e->creator = creator;
    e->note = note;
    e->prod_off = (uint32_t)prod_off;
    e->n_products = (uint16_t)in->n_products;
    e->kind = (uint8_t)in->kind;
    e->state = ATTR_PENDING;
    int64_t keep = in->occur_ns > now_ns ? in->occur_ns : now_ns;
    if (keep > c->max_keep_ns) {
        c->max_keep_ns = keep;
    }
    c->n++;
    c->n_pending++;
    *seq = st->next_seq++;
    /* Cannot fail: room was reserved above. */
    (void)attr_strmap_add(&st->event_ids, h, eid, in->event_id_len, (void *)(uintptr_t)(*seq + 1));
    return ATTR_ADMITTED;
}

void attr_exposure_prefetch(const attr_state_t *st, const char *event_id, const char *viewer,
                            const char *creator, const char *note, const char *const *products,
                            size_t n_products)
{
    attr_strmap_prefetch(&st->event_ids, attr_hash_bytes(event_id, strlen(event_id)));
    attr_intern_prefetch(&st->viewers, viewer, strlen(viewer));
    attr_intern_prefetch(&st->creators, creator, strlen(creator));
    attr_intern_prefetch(&st->notes, note, strlen(note));
    for (size_t k = 0; k < n_products; k++) {
        attr_intern_prefetch(&st->products, products[k], strlen(products[k]));
    }
}

/** Touch order of two exposures. */
static int attr__exp_cmp(const attr_exp_t *a, const attr_exp_t *b)
{
    if (a->occur_ns != b->occur_ns) {
        return a->occur_ns < b->occur_ns ? -1 : 1;
    }
    return strcmp(a->event_id, b->event_id);
}

/** The join list of (viewer, product), created when `create`; NULL if none. */
static attr_vec_t *attr__join_list(attr_state_t *st, uint64_t key, int create)
{
    uint64_t idx;
    if (attr_map64_get(&st->join, key, &idx)) {
        return &st->vecs[idx];
    }
    if (!create) {
        return NULL;
    }
    if (st->n_free_vecs > 0) {
        idx = st->free_vecs[--st->n_free_vecs];
    } else {
        if (ATTR__GROW(st->vecs, st->cap_vecs, st->n_vecs + 1) != 0) {
            return NULL;
        }
        idx = st->n_vecs++;
        memset(&st->vecs[idx], 0, sizeof st->vecs[idx]);
    }
    if (attr_map64_put(&st->join, key, idx) != 0) {
        if (ATTR__GROW(st->free_vecs, st->cap_free_vecs, st->n_free_vecs + 1) == 0) {
            st->free_vecs[st->n_free_vecs++] = (uint32_t)idx;
        }
        return NULL;
    }
    return &st->vecs[idx];
}

/** Drops the seqs of pruned or dead exposures from a join list. */
static void attr__join_compact(attr_state_t *st, attr_vec_t *v)
{
    uint64_t *items = attr_vec_items(v);
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        attr_exp_t *e = attr_exposure_get(st, items[i]);
        if (e != NULL && e->state == ATTR_LIVE) {
            items[k++] = items[i];
        }
    }
    v->n = k;
}

static int attr__vec_push(attr_vec_t *v, uint64_t x)
{
    if (v->cap == 0) {
        v->cap = 1; /* the inline slot */
    }
    if (v->n == v->cap) {
        uint32_t cap = v->cap * 4;
        uint64_t *items =
            v->cap > 1 ? realloc(v->u.items, cap * sizeof *items) : malloc(cap * sizeof *items);
        if (items == NULL) {
            return -ENOMEM;
        }
        if (v->cap == 1) {
            items[0] = v->u.one;
        }
        v->u.items = items;
        v->cap = cap;
    }
    attr_vec_items(v)[v->n++] = x;
    return 0;
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

/** Adds a candidate (copying its strings) unless its event id is there. 1: added. */
static int attr__add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id, uint32_t creator,
                          uint32_t note, int kind, int64_t watch_ms, int64_t occur_ns,
                          int persisted)
{
    for (uint32_t i = 0; i < c->n_cands; i++) {
        if (strcmp(c->cands[i].event_id, event_id) == 0) {
            return 0;
        }
    }
    if (attr__grow32((void **)&c->cands, &c->cap_cands, (size_t)c->n_cands + 1, sizeof *c->cands) !=
        0) {
        return -ENOMEM;
    }
    char *id = strdup(event_id);
    if (id == NULL) {
        return -ENOMEM;
    }
    attr_cand_t *t = &c->cands[c->n_cands++];
    t->event_id = id;
    t->creator = creator;
    t->note = note;
    t->kind = (uint8_t)kind;
    t->watch_ms = watch_ms;
    t->occur_ns = occur_ns;
    t->persisted = (uint8_t)(persisted != 0);
    if (!persisted && attr__persist_later(st, c) != 0) {
        return -ENOMEM;
    }
    return 1;
}

int attr_exposure_commit(attr_state_t *st, uint64_t seq, int64_t now_ns)
{
    attr_exp_t *e = attr_exposure_get(st, seq);
    if (e == NULL || e->state != ATTR_PENDING) {
        return -EINVAL;
    }
    attr_chunk_t *chunk = attr__chunk_of(st, seq);
    attr_day_t *b = attr__day_bucket(st, e->creator, attr_day_of(e->occur_ns));
    if (b == NULL) {
        return -ENOMEM;
    }
    e->state = ATTR_LIVE;
    chunk->n_pending--;
    st->exposures_live++;
    switch (e->kind) {
    case ATTR_KIND_IMPRESSION:
        b->impressions++;
        break;
    case ATTR_KIND_VIEW:
        b->views++;
        break;
    case ATTR_KIND_CLICK:
        b->clicks++;
        break;
    default:
        break;
    }
    if (attr_exposure_past_horizon(st, e->occur_ns, now_ns)) {
        return 0;
    }
    e->joinable = 1;
    const uint32_t *prods = chunk->prods + e->prod_off;
    int rc = 0;
    for (uint16_t k = 0; k < e->n_products && rc == 0; k++) {
        uint64_t key = attr__vp_key(e->viewer, prods[k]);
        attr_vec_t *v = attr__join_list(st, key, 1);
        if (v == NULL || attr__vec_push(v, seq) != 0) {
            rc = -ENOMEM;
            break;
        }
        /* Keep touch order: slide the new one back past later exposures. */
        uint64_t *items = attr_vec_items(v);
        uint32_t i = v->n - 1;
        while (i > 0) {
            attr_exp_t *prev = attr_exposure_get(st, items[i - 1]);
            if (prev != NULL && attr__exp_cmp(prev, e) <= 0) {
                break;
            }
            items[i] = items[i - 1];
            items[i - 1] = seq;
            i--;
        }
        /* Late data: conversions of this viewer and product at or after it. */
        uint64_t li;
        if (!attr_map64_get(&st->conv_vp, key, &li)) {
            continue;
        }
        attr_vec_t *cl = &st->conv_lists[li];
        for (uint32_t j = 0; j < cl->n; j++) {
            attr_conv_t *c = (attr_conv_t *)(uintptr_t)attr_vec_items(cl)[j];
            if (c->state != ATTR_LIVE || c->occur_ns < e->occur_ns) {
                continue;
            }
            int added = attr__add_cand(st, c, e->event_id, e->creator, e->note, e->kind,
                                       e->watch_ms, e->occur_ns, 0);
            if (added < 0 || (added > 0 && attr__dirty(st, c) != 0)) {
                rc = -ENOMEM;
                break;
            }
        }
    }
    if (rc == 0 && !st->defer) {
        rc = attr_state_flush(st);
    }
    return rc < 0 ? rc : 1;
}

void attr_exposure_abort(attr_state_t *st, uint64_t seq)
{
    attr_exp_t *e = attr_exposure_get(st, seq);
    if (e == NULL || e->state != ATTR_PENDING) {
        return;
    }
    (void)attr_strmap_del(&st->event_ids, attr_hash_bytes(e->event_id, e->event_id_len),
                          e->event_id, e->event_id_len);
    e->state = ATTR_DEAD;
    attr__chunk_of(st, seq)->n_pending--;
}

size_t attr_state_prune(attr_state_t *st, int64_t now_ns, size_t budget)
{
    int64_t limit = now_ns - attr_settings_horizon(&st->settings);
    size_t freed = 0;
    /* Whole chunks, oldest first; never the one being filled. */
    while (st->n_chunks > 1) {
        attr_chunk_t *c = st->chunks[0];
        if (c->max_keep_ns >= limit || c->n_pending > 0) {
            break;
        }
        for (uint32_t i = 0; i < c->n; i++) {
            attr_exp_t *e = &c->recs[i];
            if (e->state == ATTR_DEAD) {
                continue;
            }
            (void)attr_strmap_del(&st->event_ids, attr_hash_bytes(e->event_id, e->event_id_len),
                                  e->event_id, e->event_id_len);
            if (e->state == ATTR_LIVE) {
                st->exposures_live--;
            }
        }
        freed += c->n;
        attr__chunk_free(c);
        memmove(&st->chunks[0], &st->chunks[1], (st->n_chunks - 1) * sizeof *st->chunks);
        st->n_chunks--;
        st->base_seq += ATTR_CHUNK_EXPOSURES;
    }
    /* Join lists: drop what is gone or past the horizon; free empty lists. */
    for (size_t done = 0; done < budget && st->join.cap > 0; done++) {
        size_t i = st->sweep_pos & (st->join.cap - 1);
        if (st->join.keys[i] == UINT64_MAX) {
            st->sweep_pos = i + 1;
            continue;
        }
        attr_vec_t *v = &st->vecs[st->join.vals[i]];
        uint64_t *items = attr_vec_items(v);
        uint32_t k = 0;
        for (uint32_t j = 0; j < v->n; j++) {
            attr_exp_t *e = attr_exposure_get(st, items[j]);
            if (e != NULL && e->state == ATTR_LIVE && e->occur_ns >= limit) {
                items[k++] = items[j];
            }
        }
        v->n = k;
        if (k > 0) {
            st->sweep_pos = i + 1;
            continue;
        }
        uint32_t idx = (uint32_t)st->join.vals[i];
        if (ATTR__GROW(st->free_vecs, st->cap_free_vecs, st->n_free_vecs + 1) != 0) {
            st->sweep_pos = i + 1;
            continue;
        }
        if (v->cap > 1) {
            free(v->u.items);
        }
        memset(v, 0, sizeof *v);
        st->free_vecs[st->n_free_vecs++] = idx;
        /* The deletion may shift a later key into slot i: look at i again. */
        (void)attr_map64_del(&st->join, st->join.keys[i]);
    }
    return freed;
}

/* ---- conversions ---- */

int attr_conversion_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - st->settings.late_window_ns;
}

int attr_conversion_admit(attr_state_t *st, const attr_conversion_in_t *in, attr_conv_t **out)
{
    uint64_t h = attr_hash_bytes(in->order_id, in->order_id_len);
    if (attr_strmap_get(&st->orders, h, in->order_id, in->order_id_len) != NULL) {
        return ATTR_DUPLICATE;
    }
    attr_conv_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->order_id = malloc(in->order_id_len + 1);
    if (c->order_id == NULL || in->order_id_len > UINT32_MAX ||
        attr_intern(&st->viewers, in->viewer_id, in->viewer_len, &c->viewer) != 0 ||
        attr_intern(&st->products, in->product_id, in->product_len, &c->product) != 0 ||
        attr_strmap_reserve(&st->orders, 1) != 0) {
        attr__conv_free(c);
        return -ENOMEM;
    }
    memcpy(c->order_id, in->order_id, in->order_id_len);
    c->order_id[in->order_id_len] = '\0';
    c->order_id_len = (uint32_t)in->order_id_len;
    c->quantity = in->quantity;
    c->amount = in->amount_minor;
    c->occur_ns = in->occur_ns;
    c->day = attr_day_of(in->occur_ns);
    c->state = ATTR_PENDING;
    (void)attr_strmap_add(&st->orders, h, c->order_id, c->order_id_len, c);
    *out = c;
    return ATTR_ADMITTED;
}

int attr_conversion_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns)
{
    if (c->state != ATTR_PENDING) {
        return -EINVAL;
    }
    if (ATTR__GROW(st->convs, st->cap_convs, st->n_convs + 1) != 0) {
        return -ENOMEM;
    }
    uint64_t key = attr__vp_key(c->viewer, c->product);
    uint64_t li;
    if (!attr_map64_get(&st->conv_vp, key, &li)) {
        if (ATTR__GROW(st->conv_lists, st->cap_conv_lists, st->n_conv_lists + 1) != 0) {
            return -ENOMEM;
        }
        li = st->n_conv_lists;
        memset(&st->conv_lists[li], 0, sizeof st->conv_lists[li]);
        if (attr_map64_put(&st->conv_vp, key, li) != 0) {
            return -ENOMEM;
        }
        st->n_conv_lists++;
    }
    if (attr__vec_push(&st->conv_lists[li], (uint64_t)(uintptr_t)c) != 0) {
        return -ENOMEM;
    }
    c->state = ATTR_LIVE;
    st->convs[st->n_convs++] = c;
    /* Capture the candidates the join index holds now. */
    attr_vec_t *v = attr__join_list(st, key, 0);
    if (v != NULL) {
        attr__join_compact(st, v);
        for (uint32_t i = 0; i < v->n; i++) {
            attr_exp_t *e = attr_exposure_get(st, attr_vec_items(v)[i]);
            if (e->occur_ns > c->occur_ns || attr_exposure_past_horizon(st, e->occur_ns, now_ns)) {
                continue;
            }
            if (attr__add_cand(st, c, e->event_id, e->creator, e->note, e->kind, e->watch_ms,
                               e->occur_ns, 0) < 0) {
                return -ENOMEM;
            }
        }
    }
    if (attr__dirty(st, c) != 0) {
        return -ENOMEM;
    }
    return st->defer ? 0 : attr_state_flush(st);
}

void attr_conversion_abort(attr_state_t *st, attr_conv_t *c)
{
    if (c->state != ATTR_PENDING) {
        return;
    }
    (void)attr_strmap_del(&st->orders, attr_hash_bytes(c->order_id, c->order_id_len), c->order_id,
                          c->order_id_len);
    c->state = ATTR_DEAD;
    /* Refunds admitted against it may still point at it: free it at the end. */
    if (ATTR__GROW(st->graveyard, st->cap_graveyard, st->n_graveyard + 1) == 0) {
        st->graveyard[st->n_graveyard++] = c;
    }
}

attr_conv_t *attr_conversion_find(attr_state_t *st, const char *order_id, size_t len)
{
    attr_conv_t *c = attr_strmap_get(&st->orders, attr_hash_bytes(order_id, len), order_id, len);
    return c != NULL && c->state == ATTR_LIVE ? c : NULL;
}

int attr_conversion_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id,
                             const char *creator, size_t creator_len, const char *note,
                             size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                             int persisted)
{
    uint32_t cid, nid;
    if (attr_intern(&st->creators, creator, creator_len, &cid) != 0 ||
        attr_intern(&st->notes, note, note_len, &nid) != 0 || attr__meta_reserve(st, cid) != 0) {
        return -ENOMEM;
    }
    int rc = attr__add_cand(st, c, event_id, cid, nid, kind, watch_ms, occur_ns, persisted);
    if (rc > 0 && c->state == ATTR_LIVE) {
        rc = attr__dirty(st, c);
    }
    return rc < 0 ? rc : 0;
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
    attr_conv_t *c =
        attr_strmap_get(&st->orders, attr_hash_bytes(order_id, order_len), order_id, order_len);
    if (c == NULL || c->state == ATTR_DEAD) {
        return ATTR_UNKNOWN_ORDER;
    }
    *left = c->amount - c->refunded - c->refund_pending;
    if (amount > *left) {
        return ATTR_TOO_LARGE;
    }
    attr_refund_t *r = calloc(1, sizeof *r);
    if (r == NULL || len > UINT32_MAX || (r->refund_id = malloc(len + 1)) == NULL ||
        attr_strmap_reserve(&st->refunds, 1) != 0 ||
        ATTR__GROW(st->refund_list, st->cap_refunds, st->n_refunds + 1) != 0) {
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
    c->refund_pending += amount;
    (void)attr_strmap_add(&st->refunds, h, r->refund_id, r->refund_id_len, r);
    *out = r;
    return ATTR_ADMITTED;
}

int attr_refund_commit(attr_state_t *st, attr_refund_t *r)
{
    if (r->state != ATTR_PENDING) {
        return -EINVAL;
    }
    attr_conv_t *c = r->conv;
    r->state = ATTR_LIVE;
    c->refund_pending -= r->amount;
    c->refunded += r->amount;
    st->refund_list[st->n_refunds++] = r; /* room reserved at admit */
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
    r->conv->refund_pending -= r->amount;
    (void)attr_strmap_del(&st->refunds, attr_hash_bytes(r->refund_id, r->refund_id_len),
                          r->refund_id, r->refund_id_len);
    free(r->refund_id);
    free(r);
}

/* ---- recomputation ---- */

/** Adds (sign +1) or removes (-1) a conversion's applied credits from the rollups. */
static int attr__apply(attr_state_t *st, attr_conv_t *c, int sign)
{
    if (c->n_elig == 0) {
        attr_unattr_day_t *u = attr__unattr_bucket(st, c->day);
        if (u == NULL) {
            return -ENOMEM;
        }
        u->count += sign;
        u->gmv += sign * c->applied_net;
        return 0;
    }
    for (uint32_t i = 0; i < c->n_elig; i++) {
        attr_day_t *b = attr__day_bucket(st, c->cands[c->elig[i]].creator, c->day);
        if (b == NULL) {
            return -ENOMEM;
        }
        for (int m = 0; m < ATTR_N_MODELS; m++) {
            b->credit[m] += sign * c->credit[m * c->n_elig + i];
            b->gmv[m] += sign * c->minor[m * c->n_elig + i];
        }
    }
    return 0;
}

static int attr__recompute(attr_state_t *st, attr_conv_t *c)
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
    if (k > 0) {
        size_t bytes = k * sizeof(uint32_t) + 3 * ATTR_N_MODELS * k * sizeof(int64_t);
        void *block = malloc(bytes + sizeof(int64_t));
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
                free(block);
                return rc;
            }
            memcpy(nums + m * k, num, k * sizeof *num);
        }
    }
    /* Make sure every bucket the new result needs exists before touching the old. */
    if (k == 0) {
        if (attr__unattr_bucket(st, c->day) == NULL) {
            free(credit);
            return -ENOMEM;
        }
    } else {
        for (size_t i = 0; i < k; i++) {
            if (attr__day_bucket(st, c->cands[elig[i]].creator, c->day) == NULL) {
                free(credit);
                return -ENOMEM;
            }
        }
    }
    if (c->applied) {
        (void)attr__apply(st, c, -1); /* its buckets exist: cannot fail */
    }
    free(c->credit); /* the block of the old result (credit is its start) */
    c->credit = credit;
    c->minor = minor;
    c->num = nums;
    c->elig = elig; /* in the same block as credit */
    c->n_elig = (uint32_t)k;
    memcpy(c->den, den, sizeof den);
    c->applied_net = net;
    c->settings_version = st->settings.version;
    (void)attr__apply(st, c, +1);
    c->applied = 1;
    return 0;
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
    for (size_t i = 0; i < st->n_convs; i++) {
        if (attr__dirty(st, st->convs[i]) != 0) {
            return -ENOMEM;
        }
    }
    return attr_state_flush(st);
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
    uint32_t lo = 0, hi = m->n_days;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->days[mid].day < d0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (uint32_t i = lo; i < m->n_days && m->days[i].day < d1; i++) {
        const attr_day_t *b = &m->days[i];
        out->impressions += b->impressions;
        out->views += b->views;
        out->clicks += b->clicks;
        out->credit += b->credit[model - 1];
        out->gmv += b->gmv[model - 1];
    }
}

void attr_state_unattributed(const attr_state_t *st, int32_t d0, int32_t d1, int64_t *count,
                             int64_t *gmv)
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
