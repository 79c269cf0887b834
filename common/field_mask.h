/*
 * field_mask.h — an update request's google.protobuf.FieldMask (AIP-134, AIP-161) read
 * against the paths a method accepts: each path is looked up in the method's table and
 * the bits of the fields it names are joined. What an empty mask means (every field, or
 * the fields the request sets) and the message for an unknown path are the method's:
 * this only finds the path that is not in the table.
 */
#ifndef YW_FIELD_MASK_H
#define YW_FIELD_MASK_H

#include <stddef.h>

#include "google/protobuf/field_mask.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A path an update_mask may name ("*" for every field, if the method takes it). */
typedef struct st_yw_field_mask_path_t {
    const char *path;
    unsigned bits; /* the fields it stands for */
} yw_field_mask_path_t;

/**
 * `*bits` = the bits of every path of `mask` (0 for a NULL or empty mask), each looked up
 * in `paths` (`n` entries). Returns 0, or -EINVAL with the index of the first path that is
 * not in the table in `*unknown` (`*bits` is then 0).
 */
int yw_field_mask_bits(const Google__Protobuf__FieldMask *mask, const yw_field_mask_path_t *paths,
                       size_t n, unsigned *bits, size_t *unknown);

#ifdef __cplusplus
}
#endif
#endif
