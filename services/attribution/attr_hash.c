/* attr_hash.c — the interner and maps of the attribution state. See attr_hash.h. */
#include "services/attribution/attr_hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/vec.h"

#define ATTR__BLOCK (1u << 20)
#define ATTR__MIN_CAP 16

/* ---- huge pages ---- */

void attr_hint_huge(void *p, size_t size)
{
    const uintptr_t page = 4096;
    if (size < (4u << 20)) {
        return;
    }
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + size) & ~(page - 1);
    if (e > a) {
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
}

void *attr_calloc_hot(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    size_t bytes = n * size;
    char *p = calloc(n, size);
    if (p == NULL) {
        return NULL;
    }
    attr_hint_huge(p, bytes);
    /* A write to every page: each gets its own zeroed page now, in one fault. */
    for (size_t off = 0; off < bytes; off += 4096) {
        ((volatile char *)p)[off] = 0;
    }
    return p;
}

/* ---- interner ---- */

void attr_intern_init(attr_intern_t *in)
{
    memset(in, 0, sizeof *in);
    yw_arena_init(&in->arena, ATTR__BLOCK);
}

void attr_intern_free(attr_intern_t *in)
{
    yw_arena_free(&in->arena);
    free(in->slots);
    free(in->strs);
    attr_intern_init(in);
}

static int attr__intern_rehash(attr_intern_t *in, size_t cap)
{
    attr_intern_slot_t *slots = attr_calloc_hot(cap, sizeof *slots);
    if (slots == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < in->cap; i++) {
        if (in->slots[i].s == NULL) {
            continue;
        }
        size_t j = in->slots[i].h32 & (cap - 1);
        while (slots[j].s != NULL) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = in->slots[i];
    }
    free(in->slots);
    in->slots = slots;
    in->cap = cap;
    return 0;
}

/**
 * Copies `n` bytes, prefixed with the id and the length and NUL-terminated, into the
 * arena; NULL: no memory.
 */
static char *attr__intern_copy(attr_intern_t *in, const char *s, size_t n, uint32_t id)
{
    size_t need = 2 * sizeof(uint32_t) + n + 1;
    need = (need + 3) & ~(size_t)3; /* keep the prefixes aligned */
    char *rec = yw_arena_alloc(&in->arena, need, 4);
    if (rec == NULL) {
        return NULL;
    }
    uint32_t len = (uint32_t)n;
    memcpy(rec, &id, sizeof id);
    memcpy(rec + sizeof id, &len, sizeof len);
    memcpy(rec + sizeof id + sizeof len, s, n);
    rec[sizeof id + sizeof len + n] = '\0';
    return rec + sizeof id + sizeof len;
}

/** The slot holding `s`, or the empty slot where it would go. */
static attr_intern_slot_t *attr__intern_slot(const attr_intern_t *in, const char *s, size_t n,
                                             uint32_t h32)
{
    size_t i = h32 & (in->cap - 1);
    for (;;) {
        attr_intern_slot_t *slot = &in->slots[i];
        if (slot->s == NULL ||
            (slot->h32 == h32 && attr_intern_len(slot->s) == n && memcmp(slot->s, s, n) == 0)) {
            return slot;
        }
        i = (i + 1) & (in->cap - 1);
    }
}

size_t attr_intern_bytes(const attr_intern_t *in)
{
    return in->cap * sizeof *in->slots + in->strs_cap * sizeof *in->strs +
           yw_arena_bytes(&in->arena);
}

int64_t attr_intern_find(const attr_intern_t *in, const char *s, size_t n)
{
    if (in->cap == 0) {
        return -1;
    }
    const attr_intern_slot_t *slot =
        attr__intern_slot(in, s, n, (uint32_t)(yw_hash_bytes(s, n) >> 32));
    return slot->s != NULL ? (int64_t)slot->id : -1;
}

int attr_intern2(attr_intern_t *in, const char *s, size_t n, uint32_t *id, const char **str)
{
    uint32_t h32 = (uint32_t)(yw_hash_bytes(s, n) >> 32);
    if (in->cap != 0) {
        const attr_intern_slot_t *slot = attr__intern_slot(in, s, n, h32);
        if (slot->s != NULL) {
            *id = slot->id;
            if (str != NULL) {
                *str = slot->s;
            }
            return 0;
        }
    }
    if (n > UINT32_MAX / 2 || in->count == UINT32_MAX - 1) {
        return -ENOMEM;
    }
    if ((in->count + 1) * 4 > in->cap * 3) {
        int rc = attr__intern_rehash(in, in->cap ? in->cap * 2 : ATTR__MIN_CAP);
        if (rc != 0) {
            return rc;
        }
    }
    if (YW_VEC_GROW(in->strs, in->count, in->strs_cap, 1, 64) != 0) {
        return -ENOMEM;
    }
    char *copy = attr__intern_copy(in, s, n, in->count);
    if (copy == NULL) {
        return -ENOMEM;
    }
    uint32_t nid = in->count++;
    in->strs[nid] = copy;
    attr_intern_slot_t *slot = attr__intern_slot(in, s, n, h32);
    slot->s = copy;
    slot->h32 = h32;
    slot->id = nid;
    *id = nid;
    if (str != NULL) {
        *str = copy;
    }
    return 0;
}

/* ---- map64 ---- */

void attr_map64_init(attr_map64_t *m)
{
    memset(m, 0, sizeof *m);
}

void attr_map64_free(attr_map64_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int attr__map64_rehash(attr_map64_t *m, size_t cap)
{
    uint64_t *keys = malloc(cap * sizeof *keys);
    uint64_t *vals = malloc(cap * sizeof *vals);
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    attr_hint_huge(keys, cap * sizeof *keys);
    attr_hint_huge(vals, cap * sizeof *vals);
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) {
            continue;
        }
        size_t j = yw_hash_u64(m->keys[i]) & (cap - 1);
        while (keys[j] != UINT64_MAX) {
            j = (j + 1) & (cap - 1);
        }
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int attr_map64_reserve(attr_map64_t *m, size_t n)
{
    size_t cap = m->cap ? m->cap : ATTR__MIN_CAP;
    while ((m->count + n) * 4 > cap * 3) {
        cap *= 2;
    }
    return cap == m->cap ? 0 : attr__map64_rehash(m, cap);
}

int attr_map64_put(attr_map64_t *m, uint64_t key, uint64_t val)
{
    int rc = attr_map64_reserve(m, 1);
    if (rc != 0) {
        return rc;
    }
    size_t i = yw_hash_u64(key) & (m->cap - 1);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->count++;
    return 0;
}

int attr_map64_get(const attr_map64_t *m, uint64_t key, uint64_t *val)
{
    if (m->cap == 0) {
        return 0;
    }
    size_t i = yw_hash_u64(key) & (m->cap - 1);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}

int attr_map64_del(attr_map64_t *m, uint64_t key)
{
    if (m->cap == 0) {
        return 0;
    }
    size_t mask = m->cap - 1;
    size_t i = yw_hash_u64(key) & mask;
    while (m->keys[i] != key) {
        if (m->keys[i] == UINT64_MAX) {
            return 0;
        }
        i = (i + 1) & mask;
    }
    /* Backward shift: move later entries of the run into the hole when they may. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->keys[j] == UINT64_MAX) {
            break;
        }
        size_t home = yw_hash_u64(m->keys[j]) & mask;
        /* Can the entry at j move to i? Only if its home is not in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = UINT64_MAX;
    m->count--;
    return 1;
}

/* ---- strmap ---- */

void attr_strmap_init(attr_strmap_t *m)
{
    memset(m, 0, sizeof *m);
}

void attr_strmap_free(attr_strmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static uint64_t attr__nz(uint64_t h)
{
    return h != 0 ? h : 1;
}

static int attr__strmap_rehash(attr_strmap_t *m, size_t cap)
{
    attr_strmap_slot_t *slots = attr_calloc_hot(cap, sizeof *slots);
    if (slots == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].hash == 0) {
            continue;
        }
        size_t j = m->slots[i].hash & (cap - 1);
        while (slots[j].hash != 0) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int attr_strmap_reserve(attr_strmap_t *m, size_t n)
{
    size_t cap = m->cap ? m->cap : ATTR__MIN_CAP;
    while ((m->count + n) * 4 > cap * 3) {
        cap *= 2;
    }
    return cap != m->cap ? attr__strmap_rehash(m, cap) : 0;
}

void *attr_strmap_get(const attr_strmap_t *m, uint64_t hash, const char *key, size_t len)
{
    if (m->cap == 0) {
        return NULL;
    }
    hash = attr__nz(hash);
    size_t i = hash & (m->cap - 1);
    while (m->slots[i].hash != 0) {
        const attr_strmap_slot_t *s = &m->slots[i];
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0) {
            return s->val;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

int attr_strmap_add(attr_strmap_t *m, uint64_t hash, const char *key, size_t len, void *val)
{
    if (len > UINT32_MAX) {
        return -ENOMEM;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = attr__strmap_rehash(m, m->cap ? m->cap * 2 : ATTR__MIN_CAP);
        if (rc != 0) {
            return rc;
        }
    }
    hash = attr__nz(hash);
    size_t i = hash & (m->cap - 1);
    while (m->slots[i].hash != 0) {
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i].hash = hash;
    m->slots[i].key = key;
    m->slots[i].len = (uint32_t)len;
    m->slots[i].val = val;
    m->count++;
    return 0;
}

void *attr_strmap_del(attr_strmap_t *m, uint64_t hash, const char *key, size_t len)
{
    if (m->cap == 0) {
        return NULL;
    }
    hash = attr__nz(hash);
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    for (;;) {
        attr_strmap_slot_t *s = &m->slots[i];
        if (s->hash == 0) {
            return NULL;
        }
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0) {
            break;
        }
        i = (i + 1) & mask;
    }
    void *val = m->slots[i].val;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slots[j].hash == 0) {
            break;
        }
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->count--;
    return val;
}
