/*
 * creator_paging.h — AIP-158 paging of ListCreators: page sizes and opaque page
 * tokens. Pure functions.
 *
 * A token carries the last creator_id of the page it ends and a hash of the filters
 * (category, region, min_followers, max_followers) it was issued under, base64url
 * encoded without padding. Pages are keyset pages ordered by creator_id, so a token
 * stays valid across writes: creators added or removed meanwhile never shift a page.
 * page_size is not part of the hash: a caller may change it between pages.
 */
#ifndef CREATOR_PAGING_H
#define CREATOR_PAGING_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "services/creator_profile/creator_validate.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CREATOR_PAGE_SIZE_DEFAULT 50
#define CREATOR_PAGE_SIZE_MAX 1000

/** Room for any token creator_page_token_encode() writes, NUL included. */
#define CREATOR_PAGE_TOKEN_BUFSZ 256

/** The page size in force: 0 means 50, more than 1000 means 1000. `requested` >= 0. */
int32_t creator_page_size(int32_t requested);

/** The hash of a ListCreators request's filters that tokens are bound to. */
uint64_t creator_page_filter_hash(const char *category, const char *region, int64_t min_followers,
                                  int64_t max_followers);

/**
 * Writes the token that continues after `last_id` (a valid creator id) under
 * `filter_hash` into `out` (CREATOR_PAGE_TOKEN_BUFSZ bytes). Returns 0, or -EINVAL when
 * `last_id` is not a valid id.
 */
int creator_page_token_encode(const char *last_id, uint64_t filter_hash,
                              char out[CREATOR_PAGE_TOKEN_BUFSZ]);

/**
 * Reads `token`: "" means the first page (`after` gets ""). Otherwise the token must be
 * one creator_page_token_encode() wrote under the same `filter_hash`; `after` (of
 * CREATOR_ID_MAX + 1 bytes) gets its last creator_id. Returns GRPC_STATUS_OK or
 * INVALID_ARGUMENT with a "page_token: ..." message in `err`.
 */
grpc_status_code creator_page_token_decode(const char *token, uint64_t filter_hash,
                                           char after[CREATOR_ID_MAX + 1], char *err,
                                           size_t errlen);

/**
 * base64url without padding (RFC 4648 §5). encode writes 4*ceil(n/3) bytes at most plus
 * a NUL and returns the length, or -ENOSPC. decode returns the decoded length, or
 * -EINVAL for a character outside the alphabet, a bad length or non-zero trailing bits,
 * -ENOSPC when `out` is too small.
 */
int creator_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
int creator_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
