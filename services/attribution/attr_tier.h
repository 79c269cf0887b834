/*
 * attr_tier.h — tier labels of creators, from tier scoring (BatchGetCreatorTiers, which
 * answers from tier scoring's in-memory population without reading creator profile),
 * cached in the state (attr_creator_t.tier / tier_ns) for a TTL.
 *
 * A refresh asks only for the creators whose label is missing or older than the TTL,
 * at most ATTR_TIER_BATCH ids per call and at most ATTR_TIER_INFLIGHT calls in flight:
 * the next batch goes when one completes. Every call of a fetch shares one deadline,
 * ATTR_TIER_TIMEOUT_MS from when the fetch started. Batches not sent by then are not
 * sent: their creators keep the label they had (none: TIER_UNSPECIFIED in reports) and
 * are asked again by the next refresh, and the refresh reports the error.
 *
 * Single flight. The creators a fetch asks for are marked as being asked for until it
 * is over. A refresh that needs some of them does not ask again: it waits for that
 * fetch (and for as many fetches in flight as hold the creators it needs, up to 16).
 * Only the creators no fetch in flight asks for start a fetch of their own (which later
 * callers may join in turn). So N concurrent cold reports over the same creators cost
 * one fetch's calls, whoever came first. A fetch belongs to no caller: it is not
 * cancelled with any report's call and its deadline is ATTR_TIER_TIMEOUT_MS, not the
 * first caller's. Each caller waits under its own deadline: its call's deadline less
 * ATTR_TIER_REPLY_MARGIN_MS (so that the report still gets out in time); when that comes
 * first, or its call is cancelled (looked at every ATTR_TIER_POLL_MS), `done` runs with
 * an error and the report answers from the cache as it is then; the fetch goes on for
 * the other callers and for the cache. With different creators in flight at once,
 * ATTR_TIER_INFLIGHT bounds the calls of each fetch, not of all of them. The marks cost
 * 4 bytes per creator of the state (an array beside st->creator_meta).
 *
 * The ids tier scoring lists in `not_found` (unknown to it, or created after its last
 * population refresh) are labelled TIER_UNSPECIFIED and asked again after
 * min(TTL, ATTR_TIER_NOT_FOUND_TTL_NS): soon enough to pick up creators its next refresh
 * reads, seldom enough not to re-ask every report for creators it will never know. Ids
 * tier scoring cannot accept ([A-Za-z0-9_.-]{1,128}) are labelled TIER_UNSPECIFIED
 * (for the full TTL) without asking; a batch tier scoring refuses as INVALID_ARGUMENT
 * anyway is split in halves and asked again until the refused id stands alone, which is
 * labelled TIER_UNSPECIFIED. When tier scoring cannot be reached, labels stay as they
 * were (a stale label is used; a missing one reads as TIER_UNSPECIFIED) and the refresh
 * reports the error.
 *
 * Mixed versions. A tier scoring older than BatchGetCreatorTiers answers it
 * UNIMPLEMENTED: the batch, and every batch after it, goes as BatchScoreCreators
 * (ATTR_TIER_FALLBACK_METHOD: the same 1000 ids at most, the tier of each TierScore;
 * it reads creator profile at call time, so it is slower and fails when creator profile
 * is down). A warning says so once, when the fallback starts. BatchScoreCreators answers
 * NOT_FOUND for a whole batch holding an unknown id and names up to 20 of them
 * ("creator_ids[i]"): those are labelled as `not_found` ones are and the rest is asked
 * again; a message naming none halves the batch instead. Every ATTR_TIER_REPROBE_MS one
 * batch tries BatchGetCreatorTiers again: answered (tier scoring was upgraded), the
 * fallback ends (logged); UNIMPLEMENTED again, nothing is logged and the batch goes as
 * BatchScoreCreators.
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

/** Ids per call: tier scoring's limit, of BatchGetCreatorTiers and BatchScoreCreators. */
#define ATTR_TIER_BATCH 1000
/** Calls of one fetch in flight at most. */
#define ATTR_TIER_INFLIGHT 4
/** Time one fetch gets for all its calls. */
#define ATTR_TIER_TIMEOUT_MS 5000
/** A caller is answered this long before its call's deadline, labels or not. */
#define ATTR_TIER_REPLY_MARGIN_MS 50
/** How often callers waiting are looked at (a cancelled call says so only when asked). */
#define ATTR_TIER_POLL_MS 100
/** While falling back to BatchScoreCreators, how often BatchGetCreatorTiers is tried. */
#define ATTR_TIER_REPROBE_MS (10LL * 60 * 1000)
/** Longest a `not_found` answer is kept before the creator is asked for again. */
#define ATTR_TIER_NOT_FOUND_TTL_NS (60LL * 1000000000LL)
#define ATTR_TIER_METHOD "/yaowei.tier.v1.TierScoringService/BatchGetCreatorTiers"
/** What older tier scorings answer instead (UNIMPLEMENTED for ATTR_TIER_METHOD). */
#define ATTR_TIER_FALLBACK_METHOD "/yaowei.tier.v1.TierScoringService/BatchScoreCreators"

typedef struct st_attr_tier_t attr_tier_t;

/** Opens a channel to tier scoring at `addr`. Returns 0 or a negative errno. */
int attr_tier_create(yw_runtime_t *rt, const char *addr, int64_t ttl_ns, attr_tier_t **out);

/**
 * Changes the batch size, the calls in flight and the time a refresh gets (defaults:
 * ATTR_TIER_BATCH, ATTR_TIER_INFLIGHT, ATTR_TIER_TIMEOUT_MS); 0 keeps a value. For tests.
 */
void attr_tier_set_limits(attr_tier_t *t, size_t batch, int inflight, int64_t timeout_ms);

/** Changes how often BatchGetCreatorTiers is tried again while falling back (default
 * ATTR_TIER_REPROBE_MS); 0 keeps it. For tests. */
void attr_tier_set_reprobe(attr_tier_t *t, int64_t every_ms);

/** Whether labels come from BatchScoreCreators now (tier scoring lacks
 * BatchGetCreatorTiers). */
int attr_tier_fallback(const attr_tier_t *t);

/**
 * Answers every caller still waiting (`done` with an error, now) and closes the channel;
 * `t` is freed once the calls in flight have completed (CANCELLED) and its timer closed,
 * which needs the loop to run. NULL is ignored.
 */
void attr_tier_destroy(attr_tier_t *t);

/**
 * Called once on the loop when a refresh is over: `error` is NULL when every label
 * asked for was answered, else why some were not (valid during the call only).
 */
typedef void (*attr_tier_done_t)(void *arg, const char *error);

/**
 * Refreshes the labels of `creators` (ids in st->creators) that need it: starts a fetch
 * of those no fetch in flight asks for, and waits for it and for the fetches in flight
 * that ask for the others. Returns 0 when nothing needed asking (`done` is not called),
 * 1 when a fetch was started or joined (`done` will run once, later, on the loop), or a
 * negative errno (`done` is not called). `st` must outlive the refresh (one state per
 * attr_tier_t); `parent` (may be NULL) lends the caller's deadline and cancellation: at
 * either, `done` runs (with an error) while the fetch goes on.
 */
int attr_tier_refresh(attr_tier_t *t, attr_state_t *st, const uint32_t *creators, size_t n,
                      int64_t now_ns, yw_call_t *parent, attr_tier_done_t done, void *arg);

/** The label to report for a creator: its cached tier, TIER_UNSPECIFIED when none. */
int attr_tier_of(const attr_state_t *st, uint32_t creator);

/**
 * Whether tier scoring ever labelled `creator` (TIER_UNSPECIFIED for a creator it does not
 * know counts): attr_tier_of() is then its label, however old. 0 when it never answered.
 */
int attr_tier_known(const attr_state_t *st, uint32_t creator);

/** Whether `id` is a creator id tier scoring accepts. */
int attr_tier_id_ok(const char *id, size_t len);

#ifdef __cplusplus
}
#endif
#endif
