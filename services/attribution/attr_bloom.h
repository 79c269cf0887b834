/*
 * attr_bloom.h — a split-block Bloom filter over 64-bit hashes: the "maybe seen" test of
 * event ids whose exact copy is on disk only (attr_xidx.h), so that a new id costs one
 * cache line and no I/O, and only a "maybe" is confirmed on disk.
 *
 * Layout: blocks of 8 x 32-bit words (32 bytes, half a cache line); a key sets one bit
 * in every word of one block (block from the high 32 bits of the hash, the bits from
 * the low 32 bits times eight odd constants). At 16 bits per key about 0.05 % of absent
 * keys test positive; at 10 bits, about 1 %. No false negatives.
 *
 * The caller hashes (yw_hash_bytes()): keys are hashes, so the filter never sees the
 * strings. Not thread-safe: one thread adds and tests (the loop); the array is plain
 * memory that may be read by anyone once nobody adds any more.
 */
#ifndef ATTR_BLOOM_H
#define ATTR_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_attr_bloom_t {
    uint32_t *words;   /* n_blocks x 8 */
    uint64_t n_blocks; /* >= 1 */
    uint64_t n_keys;   /* keys added (duplicates count twice) */
} attr_bloom_t;

/**
 * Sizes the filter for `keys` keys at `bits_per_key` bits each (rounded up to whole
 * blocks; at least one). Returns 0 or -ENOMEM (then the filter is empty and unusable).
 */
int attr_bloom_init(attr_bloom_t *b, uint64_t keys, unsigned bits_per_key);

void attr_bloom_free(attr_bloom_t *b);

/** The bytes the filter holds. */
static inline size_t attr_bloom_bytes(const attr_bloom_t *b)
{
    return (size_t)b->n_blocks * 32;
}

static inline uint32_t *attr_bloom__block(const attr_bloom_t *b, uint64_t h)
{
    return b->words + 8 * (((h >> 32) * b->n_blocks) >> 32);
}

/** Adds a key. */
void attr_bloom_add(attr_bloom_t *b, uint64_t h);

/** 0: never added; 1: maybe added. */
int attr_bloom_maybe(const attr_bloom_t *b, uint64_t h);

/** Starts loading the block of `h` (a hint). */
static inline void attr_bloom_prefetch(const attr_bloom_t *b, uint64_t h)
{
    __builtin_prefetch(attr_bloom__block(b, h));
}

#ifdef __cplusplus
}
#endif
#endif
