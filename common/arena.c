/* arena.c — a block arena. See arena.h. */
#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/vec.h"

void yw_arena_init(yw_arena_t *a, size_t block_size)
{
    memset(a, 0, sizeof *a);
    a->block_size = block_size < 64 ? 64 : block_size;
}

void yw_arena_free(yw_arena_t *a)
{
    for (size_t i = 0; i < a->n_blocks; i++) {
        free(a->blocks[i]);
    }
    for (size_t i = 0; i < a->n_bigs; i++) {
        free(a->bigs[i]);
    }
    free(a->blocks);
    free(a->bigs);
    yw_arena_init(a, a->block_size);
}

void yw_arena_reset(yw_arena_t *a)
{
    for (size_t i = 0; i < a->n_bigs; i++) {
        free(a->bigs[i]);
    }
    a->n_bigs = 0;
    a->big_bytes = 0;
    a->cur_block = 0;
    a->cur = a->n_blocks > 0 ? a->blocks[0] : NULL;
    a->left = a->n_blocks > 0 ? a->block_size : 0;
}

void yw_arena_reset_keep(yw_arena_t *a, size_t max_blocks)
{
    while (a->n_blocks > max_blocks) {
        free(a->blocks[--a->n_blocks]);
    }
    yw_arena_reset(a);
}

/** An allocation of its own for `n` bytes (malloc's alignment covers every `align`). */
static void *yw__arena_big(yw_arena_t *a, size_t n)
{
    if (YW_VEC_RESERVE(a->bigs, a->cap_bigs, a->n_bigs + 1, 8) != 0) {
        return NULL;
    }
    char *p = malloc(n);
    if (p != NULL) {
        a->bigs[a->n_bigs++] = p;
        a->big_bytes += n;
    }
    return p;
}

/** Moves on to the next block (a kept one, or a new one); -1 when there is no memory. */
static int yw__arena_next_block(yw_arena_t *a)
{
    if (a->cur != NULL && a->cur_block + 1 < a->n_blocks) {
        a->cur = a->blocks[++a->cur_block];
    } else {
        char *b;
        if (YW_VEC_RESERVE(a->blocks, a->cap_blocks, a->n_blocks + 1, 16) != 0 ||
            (b = malloc(a->block_size)) == NULL) {
            return -1;
        }
        a->blocks[a->n_blocks] = b;
        a->cur_block = a->n_blocks++;
        a->cur = b;
    }
    a->left = a->block_size;
    return 0;
}

void *yw_arena_alloc(yw_arena_t *a, size_t n, size_t align)
{
    if (n == 0) {
        return NULL;
    }
    if (a->block_size == 0) {
        a->block_size = YW_ARENA_BLOCK; /* a zeroed arena */
    }
    if (n > a->block_size / 4) {
        return yw__arena_big(a, n);
    }
    size_t pad = a->cur != NULL ? (size_t)(-(uintptr_t)a->cur & (align - 1)) : 0;
    if (a->cur == NULL || pad + n > a->left) {
        if (yw__arena_next_block(a) != 0) {
            return NULL;
        }
        pad = 0; /* malloc's blocks are aligned for anything */
    }
    char *p = a->cur + pad;
    a->cur += pad + n;
    a->left -= pad + n;
    return p;
}

char *yw_arena_strdup(yw_arena_t *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) {
        return NULL;
    }
    char *p = yw_arena_alloc(a, n + 1, 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

size_t yw_arena_bytes(const yw_arena_t *a)
{
    return a->n_blocks * a->block_size + a->big_bytes +
           (a->cap_blocks + a->cap_bigs) * sizeof(char *);
}
