/*
 * vec.h — growable arrays: the one rule by which every array in the tree that grows
 * with its contents gets more room. A growable array is three things the caller owns:
 * a pointer (NULL when empty), a count and a capacity (both size_t). The capacity starts
 * at a minimum of the caller's choosing and doubles until the array holds what is asked
 * for, so that n appends cost O(n) copies in all.
 *
 *   uint64_t *v = NULL;
 *   size_t n = 0, cap = 0;
 *   if (YW_VEC_RESERVE(v, cap, n + 1, 64) != 0) return -ENOMEM;
 *   v[n++] = x;
 *   ...
 *   free(v);
 *
 * Every size is checked: a count or a byte size that would overflow size_t fails
 * -ENOMEM like an allocation that fails, and either leaves the array as it was.
 * The memory is the C allocator's (realloc): free it with free().
 */
#ifndef YW_VEC_H
#define YW_VEC_H

#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Makes `*arr` (of `*cap` elements of `elem` bytes) hold at least `need` elements: when
 * it is too small, reallocates it to the first capacity of the sequence min_cap, 2 *
 * min_cap, 4 * min_cap, ... (or *cap, 2 * *cap, ... when *cap is not 0) that holds `need`
 * and updates `*arr` and `*cap`. The elements already there are kept; the new ones are
 * not initialised. Returns 0, or -ENOMEM (nothing changed) when the memory is not there
 * or the size overflows. `min_cap` 0 counts as 1; `elem` must not be 0.
 */
int yw_vec_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t min_cap);

/**
 * `*sum` = a + b; returns 0, or -ENOMEM when the sum overflows size_t (so that "room
 * for `more` after `n`" fails like the allocation it asks for).
 */
static inline int yw_vec_add(size_t a, size_t b, size_t *sum)
{
    return __builtin_add_overflow(a, b, sum) ? -ENOMEM : 0;
}

/**
 * yw_vec_reserve() for a typed array `arr` (any pointer lvalue) and its size_t capacity
 * lvalue `cap`: room for at least `need` elements. Evaluates to 0 or -ENOMEM; on error
 * `arr` and `cap` are unchanged. When there is room already it costs one comparison (no
 * call), so it belongs before every append.
 */
#define YW_VEC_RESERVE(arr, cap, need, min_cap)                                                    \
    __extension__({                                                                                \
        size_t yw_vec_n_ = (need);                                                                 \
        int yw_vec_rc_ = 0;                                                                        \
        if (yw_vec_n_ > (cap)) {                                                                   \
            void *yw_vec_p_ = (arr);                                                               \
            yw_vec_rc_ = yw_vec_reserve(&yw_vec_p_, &(cap), yw_vec_n_, sizeof *(arr), (min_cap));  \
            (arr) = yw_vec_p_;                                                                     \
        }                                                                                          \
        yw_vec_rc_;                                                                                \
    })

/**
 * Room for `more` elements after the first `n` (YW_VEC_RESERVE of n + more, with the sum
 * overflow-checked). Evaluates to 0 or -ENOMEM.
 */
#define YW_VEC_GROW(arr, n, cap, more, min_cap)                                                    \
    __extension__({                                                                                \
        size_t yw_vec_need_;                                                                       \
        yw_vec_add((n), (more), &yw_vec_need_) != 0                                                \
            ? -ENOMEM                                                                              \
            : YW_VEC_RESERVE(arr, cap, yw_vec_need_, min_cap);                                     \
    })

#ifdef __cplusplus
}
#endif
#endif
