/*
 * attr_hash.h — the small containers the attribution state is built of: a string
 * hash, a string interner (string <-> dense uint32 id), a uint64 -> uint64 map and a
 * string-keyed map whose keys the caller owns. Open addressing with linear probing and
 * backward-shift deletion; tables stay at most 3/4 full and double when they reach it.
 *
 * Not thread-safe: the loop thread owns them (the interner's strings, once added, never
 * move or change, so another thread may read a pointer it was handed).
 * Functions that allocate return 0 or -ENOMEM and leave the container unchanged on
 * failure.
 */
#ifndef ATTR_HASH_H
#define ATTR_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The join key of a (viewer, product) pair from the hashes of the two strings. It is
 * written into index files (attr_xidx.h): never change it.
 */
static inline uint64_t attr_vp_hash(uint64_t viewer_hash, uint64_t product_hash)
{
    return yw_hash_u64(viewer_hash ^ (product_hash * UINT64_C(0x9E3779B97F4A7C15)) ^
                       (product_hash >> 29));
}

/* ---- interner ---- */

/** One slot of an interner: the string itself, so that a lookup touches two lines. */
typedef struct st_attr_intern_slot_t {
    const char *s; /* NULL: empty; the length is the uint32 just before it */
    uint32_t h32;
    uint32_t id;
} attr_intern_slot_t;

/**
 * Strings <-> dense ids 0, 1, 2, ... Strings are copied, prefixed with their id and
 * length, NUL-terminated, and never moved: a pointer to one is a stable handle that
 * gives back its length and id (attr_intern_len(), attr_intern_id()) without the
 * interner, so another thread may use it.
 */
typedef struct st_attr_intern_t {
    attr_intern_slot_t *slots;
    size_t cap;        /* power of two */
    const char **strs; /* by id */
    size_t strs_cap;
    uint32_t count;
    yw_arena_t arena; /* the copies: 1 MiB blocks (bigger strings get one of their own) */
} attr_intern_t;

void attr_intern_init(attr_intern_t *in);
void attr_intern_free(attr_intern_t *in);

/**
 * The id of `s` (`n` bytes), added when new; `*str` (may be NULL) gets the interned
 * copy. Returns 0 or -ENOMEM.
 */
int attr_intern2(attr_intern_t *in, const char *s, size_t n, uint32_t *id, const char **str);

/** attr_intern2() without the copy's address. */
static inline int attr_intern(attr_intern_t *in, const char *s, size_t n, uint32_t *id)
{
    return attr_intern2(in, s, n, id, NULL);
}

/** The bytes an interner holds (slots, ids, string blocks). */
size_t attr_intern_bytes(const attr_intern_t *in);

/** The id of `s`, or -1 when it was never interned. */
int64_t attr_intern_find(const attr_intern_t *in, const char *s, size_t n);

/** Starts loading the slot `s` would probe first (software prefetch: a hint). */
static inline void attr_intern_prefetch(const attr_intern_t *in, const char *s, size_t n)
{
    if (in->cap != 0) {
        uint32_t h32 = (uint32_t)(yw_hash_bytes(s, n) >> 32);
        __builtin_prefetch(&in->slots[h32 & (in->cap - 1)]);
    }
}

/**
 * The second step of a prefetched lookup (after attr_intern_prefetch(), once its slot is
 * in the cache): prefetches the string the slot holds, which the lookup compares.
 */
static inline void attr_intern_prefetch_str(const attr_intern_t *in, const char *s, size_t n)
{
    if (in->cap != 0) {
        uint32_t h32 = (uint32_t)(yw_hash_bytes(s, n) >> 32);
        const attr_intern_slot_t *slot = &in->slots[h32 & (in->cap - 1)];
        if (slot->s != NULL && slot->h32 == h32) {
            __builtin_prefetch(slot->s - 8);
        }
    }
}

/** The length of an interned string. */
static inline uint32_t attr_intern_len(const char *interned)
{
    uint32_t len;
    __builtin_memcpy(&len, interned - sizeof len, sizeof len);
    return len;
}

/** The id of an interned string. */
static inline uint32_t attr_intern_id(const char *interned)
{
    uint32_t id;
    __builtin_memcpy(&id, interned - 2 * sizeof id, sizeof id);
    return id;
}

/** The string of `id` (NUL-terminated; `*len` gets its length when not NULL). */
static inline const char *attr_intern_str(const attr_intern_t *in, uint32_t id, size_t *len)
{
    const char *s = in->strs[id];
    if (len != NULL) {
        *len = attr_intern_len(s);
    }
    return s;
}

/**
 * Asks the kernel for huge pages under a large allocation (fewer TLB misses on the big
 * random-access tables). A hint: failures are ignored.
 */
void attr_hint_huge(void *p, size_t size);

/**
 * calloc() for a table about to be probed all over (hash slots, Bloom filters): large
 * ones get the huge page hint, and every page is written once before it is returned.
 * calloc() leaves a fresh mapping untouched, so a probe's first read of a page maps the
 * shared zero page and the first write then replaces it: a second fault, and a flush of
 * the TLBs of every CPU running the process's threads (an IPI each). Those flushes were
 * an eighth of a cluster node's CPU while it built partitions in a failover (perf:
 * do_wp_page, ptep_clear_flush under the run tables' and the interner's inserts).
 * Returns NULL when out of memory (or when n * size overflows).
 */
void *attr_calloc_hot(size_t n, size_t size);

/* ---- uint64 -> uint64 ---- */

/** Keys are any uint64 but UINT64_MAX. */
typedef struct st_attr_map64_t {
    uint64_t *keys; /* UINT64_MAX: empty */
    uint64_t *vals;
    size_t cap, count;
} attr_map64_t;

void attr_map64_init(attr_map64_t *m);
void attr_map64_free(attr_map64_t *m);
/** Sets key -> val (replacing). Returns 0 or -ENOMEM. */
int attr_map64_put(attr_map64_t *m, uint64_t key, uint64_t val);
/** 1 and `*val` when found, else 0. */
int attr_map64_get(const attr_map64_t *m, uint64_t key, uint64_t *val);
/** Removes key; 1 when it was there. */
int attr_map64_del(attr_map64_t *m, uint64_t key);
/** Room for `n` more keys, so that the next `n` puts cannot fail. 0 or -ENOMEM. */
int attr_map64_reserve(attr_map64_t *m, size_t n);

/* ---- string (caller-owned) -> pointer ---- */

/**
 * Keys are pointers to strings the caller keeps alive and unchanged while they are in
 * the map (typically a field of the value). Lookups copy nothing.
 */
typedef struct st_attr_strmap_slot_t {
    uint64_t hash; /* 0: empty (real hashes are forced non-zero) */
    const char *key;
    uint32_t len;
    void *val;
} attr_strmap_slot_t;

typedef struct st_attr_strmap_t {
    attr_strmap_slot_t *slots;
    size_t cap, count;
} attr_strmap_t;

void attr_strmap_init(attr_strmap_t *m);
void attr_strmap_free(attr_strmap_t *m);
/** The value of key, or NULL. `hash` is yw_hash_bytes(key, len). */
void *attr_strmap_get(const attr_strmap_t *m, uint64_t hash, const char *key, size_t len);
/** Adds key -> val; the key must not be there. Returns 0 or -ENOMEM. */
int attr_strmap_add(attr_strmap_t *m, uint64_t hash, const char *key, size_t len, void *val);
/** Removes key; returns its value or NULL. */
void *attr_strmap_del(attr_strmap_t *m, uint64_t hash, const char *key, size_t len);
/** Starts loading the slot a lookup of `hash` would probe first (a hint). */
static inline void attr_strmap_prefetch(const attr_strmap_t *m, uint64_t hash)
{
    if (m->cap != 0) {
        __builtin_prefetch(&m->slots[(hash != 0 ? hash : 1) & (m->cap - 1)]);
    }
}

/** The bytes a map holds. */
static inline size_t attr_map64_bytes(const attr_map64_t *m)
{
    return m->cap * 2 * sizeof(uint64_t);
}

static inline size_t attr_strmap_bytes(const attr_strmap_t *m)
{
    return m->cap * sizeof(attr_strmap_slot_t);
}

/** Makes room for `n` more keys without rehashing. Returns 0 or -ENOMEM. */
int attr_strmap_reserve(attr_strmap_t *m, size_t n);

#ifdef __cplusplus
}
#endif
#endif
