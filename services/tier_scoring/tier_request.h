/*
 * tier_request.h — the rules of TierScoringService requests (ids, tiers, categories,
 * page sizes). Pure functions. ListCreatorsByTier's page tokens are common/page_token.h's.
 *
 * Checks return GRPC_STATUS_OK, or INVALID_ARGUMENT with a message in `err` that starts
 * with the field's path, index included, and states the rule, e.g. `creator_ids[3]:
 * must be 1-128 characters of [A-Za-z0-9_.-]`.
 */
#ifndef TIER_REQUEST_H
#define TIER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "services/tier_scoring/tier_score.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Creator ids: 1-128 characters of [A-Za-z0-9_.-] (creator.proto's rule). */
#define TIER_ID_MAX 128
/** Most ids in one BatchScoreCreators (and in one BatchGetCreators of creator profile). */
#define TIER_BATCH_MAX 1000
/** Longest category filter (creator profile's longest category). */
#define TIER_CATEGORY_MAX 64
#define TIER_PAGE_SIZE_DEFAULT 50
#define TIER_PAGE_SIZE_MAX 1000

/** The id at `field` (e.g. "creator_id"): required and well-formed. */
grpc_status_code tier_validate_id(const char *field, const char *id, char *err, size_t errlen);

/** The ids at `field` (e.g. "creator_ids"): at most 1000, each well-formed. */
grpc_status_code tier_validate_ids(const char *field, char *const *ids, size_t n, char *err,
                                   size_t errlen);

/** A category filter at `field`: empty (any), or at most 64 bytes. */
grpc_status_code tier_validate_category(const char *field, const char *category, char *err,
                                        size_t errlen);

/** ListCreatorsByTier's tier at `field`: TIER_HEAD, TIER_MID, TIER_TAIL or TIER_AMATEUR. */
grpc_status_code tier_validate_tier(const char *field, int tier, char *err, size_t errlen);

/** page_size: >= 0. */
grpc_status_code tier_validate_page_size(int32_t page_size, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
