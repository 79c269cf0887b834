/*
 * attr_tier.h — tier labels of creators, from tier scoring (BatchScoreCreators),
 * cached in the state (attr_creator_t.tier / tier_ns) for a TTL.
 *
 * A refresh asks only for the creators whose label is missing or older than the TTL,
 * at most ATTR_TIER_BATCH ids per call, all calls at once, each with the inbound
 * call's deadline (and at most ATTR_TIER_TIMEOUT_MS). Tier scoring fails a whole batch
 * with NOT_FOUND when one id is unknown to it (or INVALID_ARGUMENT when one is not a
 * valid creator id there): such a batch is split in halves and asked again, until the
 * unknown ids stand alone; they are labelled TIER_UNSPECIFIED (cached like any label).
 * Ids tier scoring cannot accept ([A-Za-z0-9_.-]{1,128}) are labelled TIER_UNSPECIFIED
 * without asking. When tier scoring cannot be reached, labels stay as they were (a
 * stale label is used; a missing one reads as TIER_UNSPECIFIED) and the refresh
 * reports the error.
 */
#ifndef ATTR_TIER_H
#define ATTR_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "common/client.h"
#include "common/server.h"
#include "services/attribution/attr_state.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTR_TIER_BATCH 1000
#define ATTR_TIER_TIMEOUT_MS 5000
#define ATTR_TIER_METHOD "/yaowei.tier.v1.TierScoringService/BatchScoreCreators"

typedef struct st_attr_tier_t attr_tier_t;

/** Opens a channel to tier scoring at `addr`. Returns 0 or a negative errno. */
int attr_tier_create(yw_runtime_t *rt, const char *addr, int64_t ttl_ns, attr_tier_t **out);

/** Closes the channel (calls in flight complete with CANCELLED first). */
void attr_tier_destroy(attr_tier_t *t);

/**
 * Called once on the loop when a refresh is over: `error` is NULL when every label
 * asked for was answered, else why some were not (valid during the call only).
 */
typedef void (*attr_tier_done_t)(void *arg, const char *error);

/**
 * Refreshes the labels of `creators` (ids in st->creators) that need it. Returns 0
 * when nothing needed asking (`done` is not called), 1 when calls were started (`done`
 * will run once), or a negative errno (`done` is not called). `st` must outlive the
 * refresh; `parent` (may be NULL) lends its deadline and cancellation.
 */
int attr_tier_refresh(attr_tier_t *t, attr_state_t *st, const uint32_t *creators, size_t n,
                      int64_t now_ns, yw_call_t *parent, attr_tier_done_t done, void *arg);

/** The label to report for a creator: its cached tier, TIER_UNSPECIFIED when none. */
int attr_tier_of(const attr_state_t *st, uint32_t creator);

/** Whether `id` is a creator id tier scoring accepts. */
int attr_tier_id_ok(const char *id, size_t len);

#ifdef __cplusplus
}
#endif
#endif
