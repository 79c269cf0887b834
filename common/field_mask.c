/* field_mask.c — an update request's FieldMask against a method's paths. See field_mask.h. */
#include "common/field_mask.h"

#include <errno.h>
#include <string.h>

int yw_field_mask_bits(const Google__Protobuf__FieldMask *mask, const yw_field_mask_path_t *paths,
                       size_t n, unsigned *bits, size_t *unknown)
{
    *bits = 0;
    unsigned out = 0;
    for (size_t i = 0; mask != NULL && i < mask->n_paths; i++) {
        size_t k = 0;
        while (k < n && strcmp(mask->paths[i], paths[k].path) != 0) {
            k++;
        }
        if (k == n) {
            *unknown = i;
            return -EINVAL;
        }
        out |= paths[k].bits;
    }
    *bits = out;
    return 0;
}
