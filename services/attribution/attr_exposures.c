/*
 * attr_exposures.c — the exposures of the in-memory state: the pending area, the runs
 * and the Bloom filters of indexed event ids. See attr_exposures.h.
 */
#include "services/attribution/attr_state_parts.h"

#include <string.h>

#include "common/arena.h"

/** Pending exposures per chunk, and the arena block size of a chunk. */
#define ATTR__PCHUNK 1024
#define ATTR__PBLOCK (64u << 10)
/** Products per exposure a run can hold (7 bits of a join slot). */
#define ATTR__MAX_PRODUCTS 127
/** Records per run a join slot can address (25 bits). */
#define ATTR__RUN_LIMIT ((UINT32_C(1) << 25) - 2)

struct st_attr_pchunk_t {
    uint32_t n;      /* records used */
    uint32_t open;   /* records not yet resolved */
    yw_arena_t strs; /* the records' strings and product lists: ATTR__PBLOCK-byte blocks */
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

/** One Bloom filter of indexed event ids and the newest segment it covers. */
struct st_attr_bloom_epoch_t {
    attr_bloom_t bloom;
    uint64_t cap;     /* keys it was sized for */
    uint64_t max_seg; /* the newest segment of the ids in it */
};

static void attr__pchunk_free(attr_pchunk_t *c)
{
    yw_arena_free(&c->strs);
    free(c);
}

static void attr__run_free(attr_run_t *r)
{
    free(r->recs);
    free(r->arena);
    free(r->eid_slots);
    free(r->join_slots);
    free(r->join_old);
    free(r);
}

/* ---- the pending area ---- */

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
    if (YW_VEC_RESERVE(st->pend, st->cap_pend, st->n_pend + 1, 8) != 0) {
        return NULL;
    }
    attr_pchunk_t *c;
    if (st->n_spare_pchunks > 0) {
        c = st->spare_pchunks[--st->n_spare_pchunks]; /* settled, kept with its blocks */
    } else if ((c = malloc(sizeof *c)) != NULL) {
        memset(c, 0, offsetof(attr_pchunk_t, recs));
        yw_arena_init(&c->strs, ATTR__PBLOCK);
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
    yw_arena_reset_keep(&c->strs, ATTR__SPARE_BLOCKS);
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

/* ---- runs ---- */

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
    if (YW_VEC_RESERVE(st->runs, st->cap_runs, st->n_runs + 1, 8) != 0) {
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
    r->eid_slots = attr_calloc_hot(r->eid_cap, sizeof *r->eid_slots);
    r->join_slots = attr_calloc_hot(r->join_cap, sizeof *r->join_slots);
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
           run->eid_cap * sizeof *run->eid_slots +
           (run->join_cap + run->join_old_cap) * sizeof *run->join_slots;
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

/**
 * Moves the join keys of the records the last growth left in join_old to join_slots,
 * record by record, until about `budget` keys moved (SIZE_MAX: all); frees join_old once
 * none is left. The keys are computed again from the strings (a slot keeps only the high
 * half of its hash), each record's products walked once.
 */
static void attr__join_migrate(attr_run_t *run, size_t budget)
{
    size_t moved = 0;
    while (run->join_old != NULL && run->join_mig < run->join_mig_end && moved < budget) {
        uint32_t idx = run->join_mig++;
        if (!run->recs[idx].joinable) {
            continue;
        }
        attr_run_rec_t rec;
        attr_run_rec(run, idx, &rec);
        uint64_t vh = yw_hash_bytes(rec.viewer, rec.viewer_len);
        const char *at = rec.products;
        for (uint32_t k = 0; k < rec.n_products; k++) {
            uint32_t plen;
            const char *prod = attr_run_next_product(&at, &plen);
            attr__join_insert(run->join_slots, run->join_cap,
                              attr_vp_hash(vh, yw_hash_bytes(prod, plen)), idx, k);
        }
        moved += rec.n_products;
    }
    if (run->join_old != NULL && run->join_mig >= run->join_mig_end) {
        free(run->join_old);
        run->join_old = NULL;
        run->join_old_cap = 0;
    }
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
        uint32_t *slots = attr_calloc_hot(nc, sizeof *slots);
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
        attr__join_migrate(run, SIZE_MAX); /* a growth still moving keys ends first */
        size_t nc = run->join_cap * 2;
        while (10 * (run->join_n + np) > 7 * nc) {
            nc *= 2;
        }
        uint64_t *slots = attr_calloc_hot(nc, sizeof *slots);
        if (slots == NULL) {
            return -ENOMEM;
        }
        /* The keys move a few per append (attr__join_migrate()): moving them all at once
         * took a loop turn of a tenth of a second once a run held a million of them. */
        run->join_old = run->join_slots;
        run->join_old_cap = run->join_cap;
        run->join_mig = 0;
        run->join_mig_end = run->n;
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
    /* Four moved keys per new one: the move ends long before the new table fills. */
    attr__join_migrate(run, 4 * (size_t)p->n_products + 64);
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

/* ---- the Bloom filters of indexed ids ---- */

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

/* ---- admit, commit, abort, prune ---- */

int attr_exposure_past_horizon(const attr_state_t *st, int64_t occur_ns, int64_t now_ns)
{
    return occur_ns < now_ns - attr_settings_horizon(&st->settings);
}

int attr_exposure_admit(attr_state_t *st, const attr_exposure_in_t *in, int64_t now_ns,
                        uint64_t *seq, attr_interned_t *out)
{
    uint64_t h = yw_hash_bytes(in->event_id, in->event_id_len);
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
        attr__rollups_reserve_creator(st, creator) != 0 ||
        attr_strmap_reserve(&st->pend_ids, 1) != 0) {
        return -ENOMEM;
    }
    attr_pchunk_t *c = attr__pchunk_for_new(st);
    if (c == NULL) {
        return -ENOMEM;
    }
    attr_pexp_t *p = &c->recs[c->n];
    memset(p, 0, sizeof *p);
    char *eid = yw_arena_strdup(&c->strs, in->event_id, in->event_id_len);
    char *viewer = yw_arena_strdup(&c->strs, in->viewer_id, in->viewer_len);
    char *note = yw_arena_strdup(&c->strs, in->note_id, in->note_len);
    p->products =
        yw_arena_alloc(&c->strs, (in->n_products ? in->n_products : 1) * sizeof *p->products,
                       _Alignof(attr_interned_t));
    if (eid == NULL || viewer == NULL || note == NULL || p->products == NULL) {
        return -ENOMEM;
    }
    for (size_t k = 0; k < in->n_products; k++) {
        char *ps = yw_arena_strdup(&c->strs, in->product_ids[k], plens[k]);
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
    uint64_t h = yw_hash_bytes(event_id, strlen(event_id));
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
    attr_day_t *b = st->skip_counts ? NULL : attr__rollups_count_room(st, p->creator.id, day);
    if ((b == NULL && !st->skip_counts) || run == NULL) {
        return -ENOMEM;
    }
    int joinable = !attr_exposure_past_horizon(st, p->occur_ns, now_ns);
    uint64_t vps[ATTR__MAX_PRODUCTS];
    if (joinable) {
        uint64_t hv = yw_hash_bytes(p->viewer.s, p->viewer.len);
        for (uint32_t k = 0; k < p->n_products; k++) {
            vps[k] = attr_vp_hash(hv, yw_hash_bytes(p->products[k].s, p->products[k].len));
        }
    }
    int rc = attr__run_append(run, p, seg, off, joinable ? vps : NULL);
    if (rc != 0) {
        return rc;
    }
    st->exposures_live++;
    /* Counted (nothing since the lookup moved the cell; a wide figure has room). */
    if (b != NULL) {
        attr__rollups_count_one(st, b, p->creator.id, day, p->kind);
    }
    /* Late data: conversions of this viewer and product at or after it (the service
     * brought every one that is only in the database into the cache before). */
    if (joinable) {
        rc = attr__orders_join_late(st, p, vps);
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
    if (p != NULL) {
        attr_state_prefetch_counts(st, p->creator.id, stage);
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

/* ---- joins with conversions ---- */

/**
 * Adds the candidates one join table of a run holds for conversion c, skipping records
 * below `from` (join_old: those moved to join_slots already). Returns 0 or -ENOMEM.
 */
static int attr__capture_table(attr_state_t *st, attr_conv_t *c, const attr_run_t *run,
                               const uint64_t *slots, size_t cap, uint32_t from, int64_t now_ns)
{
    size_t vlen = c->viewer_len, plen = c->product_len;
    uint32_t tag = (uint32_t)(c->vp_hash >> 32);
    size_t mask = cap - 1;
    for (size_t i = c->vp_hash & mask;; i = (i + 1) & mask) {
        uint64_t v = slots[i];
        if (v == 0) {
            return 0;
        }
        if ((uint32_t)(v >> 32) != tag) {
            continue;
        }
        uint32_t ref = (uint32_t)v, idx = (ref >> 7) - 1, k = ref & 0x7f;
        if (idx < from) {
            continue;
        }
        attr_run_rec_t rec;
        attr_run_rec(run, idx, &rec);
        uint32_t pl;
        const char *prod = attr__run_product(run, idx, k, &pl);
        if (rec.viewer_len != vlen || memcmp(rec.viewer, c->viewer, vlen) != 0 || pl != plen ||
            memcmp(prod, c->product, plen) != 0 || rec.occur_ns > c->occur_ns ||
            attr_exposure_past_horizon(st, rec.occur_ns, now_ns)) {
            continue;
        }
        if (attr__cand_add(st, c, rec.event_id, attr_intern_id(rec.creator), rec.note, rec.note_len,
                           rec.kind, rec.watch_ms, rec.occur_ns, 0) < 0) {
            return -ENOMEM;
        }
    }
}

int attr__runs_capture(attr_state_t *st, attr_conv_t *c, int64_t now_ns)
{
    for (size_t ri = 0; ri < st->n_runs; ri++) {
        const attr_run_t *run = st->runs[ri];
        if (attr__capture_table(st, c, run, run->join_slots, run->join_cap, 0, now_ns) != 0 ||
            (run->join_old != NULL &&
             attr__capture_table(st, c, run, run->join_old, run->join_old_cap, run->join_mig,
                                 now_ns) != 0)) {
            return -ENOMEM;
        }
    }
    return 0;
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
    uint64_t hv = joinable ? yw_hash_bytes(p->viewer.s, p->viewer.len) : 0;
    for (uint32_t k = 0; k < p->n_products; k++) {
        maybe[k] = joinable &&
                   attr_state_conv_maybe(
                       st, attr_vp_hash(hv, yw_hash_bytes(p->products[k].s, p->products[k].len)),
                       p->occur_ns);
        n += maybe[k];
    }
    return n;
}

/* ---- free, memory ---- */

void attr__exposures_free(attr_state_t *st)
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
    attr_strmap_free(&st->pend_ids);
}

void attr__exposures_mem(const attr_state_t *st, attr_state_mem_t *out)
{
    out->pending = attr_strmap_bytes(&st->pend_ids) + st->cap_pend * sizeof *st->pend;
    for (size_t i = 0; i < st->n_pend; i++) {
        out->pending += sizeof *st->pend[i] + yw_arena_bytes(&st->pend[i]->strs);
    }
    for (size_t i = 0; i < st->n_spare_pchunks; i++) {
        out->pending += sizeof *st->spare_pchunks[i] + yw_arena_bytes(&st->spare_pchunks[i]->strs);
    }
    for (size_t i = 0; i < st->n_runs; i++) {
        out->runs += attr_run_bytes(st->runs[i]);
    }
    out->bloom = attr_state_bloom_bytes(st);
}
