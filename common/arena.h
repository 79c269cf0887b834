/*
 * arena.h — a block arena: many small allocations carved from big blocks, all freed at
 * once. For strings and records that live and die together (an interner's strings, the
 * rows one job read back, a chunk of pending events).
 *
 * An allocation never moves: a pointer stays valid until yw_arena_reset() or
 * yw_arena_free(). One bigger than a quarter of a block gets an allocation of its own,
 * and the block being filled goes on being filled after it. yw_arena_reset() keeps the
 * blocks for reuse (and frees the big ones), so an arena filled and emptied in a cycle
 * stops calling malloc.
 *
 * A zeroed yw_arena_t is an empty arena of YW_ARENA_BLOCK-byte blocks, as if from
 * yw_arena_init(a, YW_ARENA_BLOCK). Not thread-safe: one owner at a time. The arena's
 * memory is the C allocator's.
 */
#ifndef YW_ARENA_H
#define YW_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The block size of a zeroed arena. */
#define YW_ARENA_BLOCK 16384

typedef struct st_yw_arena_t {
    size_t block_size; /* bytes of each block (yw_arena_init; 0: YW_ARENA_BLOCK) */
    /* private */
    char **blocks; /* [0, cur_block] in use, the rest kept for reuse */
    size_t n_blocks, cap_blocks, cur_block;
    char *cur; /* the free part of blocks[cur_block] (NULL: no block yet) */
    size_t left;
    char **bigs; /* allocations of their own */
    size_t n_bigs, cap_bigs, big_bytes;
} yw_arena_t;

/** Starts an empty arena of blocks of `block_size` bytes (at least 64). Allocates nothing. */
void yw_arena_init(yw_arena_t *a, size_t block_size);

/** Frees every block and allocation; the arena is empty (and may be used again). */
void yw_arena_free(yw_arena_t *a);

/**
 * Frees what the arena handed out, all at once: pointers from it are no longer valid.
 * The blocks are kept for the allocations that follow; the big allocations are freed.
 */
void yw_arena_reset(yw_arena_t *a);

/**
 * yw_arena_reset() that keeps at most the first `max_blocks` blocks and frees the rest:
 * for an arena reused in a cycle that an occasional wide fill would otherwise leave holding
 * that fill's blocks for good.
 */
void yw_arena_reset_keep(yw_arena_t *a, size_t max_blocks);

/**
 * `n` bytes (uninitialised) aligned to `align` (a power of two, at most 16; 1 for
 * strings). NULL when the memory is not there (the arena is unchanged) or n is 0.
 */
void *yw_arena_alloc(yw_arena_t *a, size_t n, size_t align);

/** A NUL-terminated copy of the `n` bytes of `s` (NULL: no memory). */
char *yw_arena_strdup(yw_arena_t *a, const char *s, size_t n);

/** The bytes the arena holds from the allocator: blocks, big allocations, bookkeeping. */
size_t yw_arena_bytes(const yw_arena_t *a);

#ifdef __cplusplus
}
#endif
#endif
