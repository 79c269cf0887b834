/*
 * attr_orders.c — the conversions of the in-memory state: candidates, the cache and its
 * eviction, the conversion filter, refunds, recomputation. See attr_orders.h.
 */
#include "services/attribution/attr_state_parts.h"

#include <string.h>

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

/** Appends `c` to a work list unless `*on` says it is there; sets `*on`. 0 or -ENOMEM. */
static int attr__list_add(attr_conv_t ***list, size_t *n, size_t *cap, uint8_t *on, attr_conv_t *c)
{
    if (*on) {
        return 0;
    }
    if (yw_vec_reserve((void **)list, cap, *n + 1, sizeof **list, 8) != 0) {
        return -ENOMEM;
    }
    (*list)[(*n)++] = c;
    *on = 1;
    return 0;
}

/** Puts `c` on the list of conversions to recompute (attr_state_flush()). */
static int attr__dirty(attr_state_t *st, attr_conv_t *c)
{
    return attr__list_add(&st->dirty, &st->n_dirty, &st->cap_dirty, &c->dirty, c);
}

/** Puts `c` on the list of conversions with candidates to persist. */
static int attr__persist_later(attr_state_t *st, attr_conv_t *c)
{
    return attr__list_add(&st->persist, &st->n_persist, &st->cap_persist, &c->in_persist, c);
}

int attr__cand_add(attr_state_t *st, attr_conv_t *c, const char *event_id, uint32_t creator,
                   const char *note, size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                   int persisted)
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

/* ---- late exposures: the cached conversions of a (viewer, product) ---- */

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

int attr__orders_join_late(attr_state_t *st, const attr_pexp_t *p, const uint64_t *vps)
{
    for (uint32_t k = 0; k < p->n_products; k++) {
        for (attr_conv_t *c = attr__conv_chain(st, vps[k]); c != NULL; c = c->vp_next) {
            if (c->state != ATTR_LIVE || c->occur_ns < p->occur_ns ||
                !attr__conv_is(c, p->viewer.s, p->viewer.len, p->products[k].s,
                               p->products[k].len)) {
                continue;
            }
            int added = attr__cand_add(st, c, p->event_id.s, p->creator.id, p->note.s, p->note.len,
                                       p->kind, p->watch_ms, p->occur_ns, 0);
            if (added < 0 || (added > 0 && attr__dirty(st, c) != 0)) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

/* ---- conversions ---- */

static void attr__unlist(attr_conv_t **list, size_t *n, const attr_conv_t *c);

int attr_conv_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - st->settings.late_window_ns;
}

attr_conv_t *attr_conv_new(const attr_conv_in_t *in, int64_t refunded)
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
    c->vp_hash = attr_vp_hash(yw_hash_bytes(in->viewer_id, in->viewer_len),
                              yw_hash_bytes(in->product_id, in->product_len));
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
    return yw_hash_bytes(c->order_id, c->order_id_len);
}

int attr_conv_admit(attr_state_t *st, const attr_conv_in_t *in, attr_conv_t **out)
{
    uint64_t h = yw_hash_bytes(in->order_id, in->order_id_len);
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

int attr_conv_commit(attr_state_t *st, attr_conv_t *c, int64_t now_ns)
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
    if (attr__runs_capture(st, c, now_ns) != 0 || attr__dirty(st, c) != 0) {
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

void attr_conv_abort(attr_state_t *st, attr_conv_t *c)
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

attr_conv_t *attr_conv_find(attr_state_t *st, const char *order_id, size_t len)
{
    attr_conv_t *c = attr_strmap_get(&st->orders, yw_hash_bytes(order_id, len), order_id, len);
    if (c == NULL || c->state != ATTR_LIVE) {
        return NULL;
    }
    attr__lru_touch(st, c);
    return c;
}

attr_conv_t *attr_conv_pending(attr_state_t *st, const char *order_id, size_t len)
{
    return attr_strmap_get(&st->pend_orders, yw_hash_bytes(order_id, len), order_id, len);
}

int attr_conv_load(attr_state_t *st, const attr_conv_in_t *in, int64_t refunded, attr_conv_t **out)
{
    uint64_t h = yw_hash_bytes(in->order_id, in->order_id_len);
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

int attr_conv_loaded(attr_state_t *st, attr_conv_t *c, int apply)
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

void attr_conv_unload(attr_state_t *st, attr_conv_t *c)
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

int attr_conv_add_cand(attr_state_t *st, attr_conv_t *c, const char *event_id, const char *creator,
                       size_t creator_len, const char *note, size_t note_len, int kind,
                       int64_t watch_ms, int64_t occur_ns, int persisted)
{
    uint32_t cid;
    if (attr_intern(&st->creators, creator, creator_len, &cid) != 0 ||
        attr__rollups_reserve_creator(st, cid) != 0) {
        return -ENOMEM;
    }
    int rc =
        attr__cand_add(st, c, event_id, cid, note, note_len, kind, watch_ms, occur_ns, persisted);
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

/* ---- refunds ---- */

int attr_refund_admit(attr_state_t *st, const char *refund_id, size_t len, const char *order_id,
                      size_t order_len, int64_t amount, int64_t occur_ns, attr_refund_t **out,
                      int64_t *left)
{
    uint64_t h = yw_hash_bytes(refund_id, len);
    if (attr_strmap_get(&st->refunds, h, refund_id, len) != NULL) {
        return ATTR_DUPLICATE;
    }
    attr_conv_t *c = attr_conv_find(st, order_id, order_len);
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

int attr_refund_pending(const attr_state_t *st, const char *refund_id, size_t len)
{
    return attr_strmap_get(&st->refunds, yw_hash_bytes(refund_id, len), refund_id, len) != NULL;
}

/** Forgets a pending refund (committed or aborted) and frees it. */
static void attr__refund_drop(attr_state_t *st, attr_refund_t *r)
{
    st->n_refunds_pending--;
    r->conv->refund_pending -= r->amount;
    (void)attr_strmap_del(&st->refunds, yw_hash_bytes(r->refund_id, r->refund_id_len), r->refund_id,
                          r->refund_id_len);
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
    if (rollups && attr__rollups_credit_room(st, c, elig, k, single, net) != 0) {
        if (credit != one) {
            free(credit);
        }
        return -ENOMEM;
    }
    if (rollups && c->applied) {
        attr__rollups_credit(st, c, -1); /* its cells exist */
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
        attr__rollups_credit(st, c, +1);
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
int attr_state_replace_credits(attr_state_t *st, const attr_state_t *from, const attr_settings_t *s)
{
    st->settings = *s;
    attr_settings_rules(s, &st->rules);
    attr__rollups_clear_credits(st);
    for (attr_conv_t *c = st->lru_head; c != NULL; c = c->lru_next) {
        c->applied = 0; /* the rollups it was in are gone */
    }
    int rc = from != NULL ? attr__rollups_add_credits(st, from) : 0;
    for (attr_conv_t *c = st->lru_head; c != NULL && rc == 0; c = c->lru_next) {
        if (c->state == ATTR_LIVE) {
            rc = attr__dirty(st, c);
        }
    }
    return rc != 0 ? rc : attr_state_flush(st);
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

/* ---- free, memory ---- */

void attr__orders_free(attr_state_t *st)
{
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
    free(st->scratch);
    attr_strmap_free(&st->orders);
    attr_strmap_free(&st->pend_orders);
    attr_map64_free(&st->conv_vp);
    attr_strmap_free(&st->refunds);
}

void attr__orders_mem(const attr_state_t *st, attr_state_mem_t *out)
{
    out->conversions = st->cache_bytes;
    out->conv_index = attr_strmap_bytes(&st->orders) + attr_strmap_bytes(&st->pend_orders) +
                      attr_map64_bytes(&st->conv_vp);
    out->conv_filter = attr_state_conv_filter_bytes(st);
    out->refunds =
        attr_strmap_bytes(&st->refunds) + st->n_refunds_pending * (sizeof(attr_refund_t) + 32);
    out->work =
        st->cap_dirty * sizeof *st->dirty + st->cap_persist * sizeof *st->persist + st->scratch_cap;
}
