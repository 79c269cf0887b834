/* vec.c — growable arrays. See vec.h. */
#include "common/vec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int yw_vec_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t min_cap)
{
    if (need <= *cap) {
        return 0;
    }
    size_t nc = *cap != 0 ? *cap : (min_cap != 0 ? min_cap : 1);
    while (nc < need) {
        if (nc > SIZE_MAX / 2) {
            nc = need; /* doubling would overflow: exactly what is asked */
            break;
        }
        nc *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(nc, elem, &bytes)) {
        return -ENOMEM;
    }
    void *p = realloc(*arr, bytes);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}
