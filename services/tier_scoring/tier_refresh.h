/*
 * tier_refresh.h — the refresher: reads every creator and its rolling stats from
 * creator profile into a new snapshot (tier_population.h), on the loop, asynchronously.
 *
 * One refresh pages through ListCreators (page_size 1000, creator_id order) and, for
 * each page, reads the stats of its creators with one BatchGetCreatorStats (the policy's
 * window, ending on the day the refresh started, UTC). One call is in flight at a time,
 * each with its own timeout. A creator deleted between its page and its stats makes
 * BatchGetCreatorStats NOT_FOUND: the page is read again (up to 3 times).
 *
 * Refreshes run one at a time: at start (tier_refresher_trigger()), every interval
 * after the previous one ended, and when triggered (a trigger during a refresh starts
 * another right after it; triggers meanwhile share that one). A failed refresh changes
 * nothing, is logged, and is retried after min(interval, 5 s). So while creator profile
 * answers, the newest snapshot is never older than the interval plus one refresh's
 * duration.
 *
 * Refreshes are numbered from 1 in the order they start (tier_snapshot_t.seq), so that
 * whoever triggers one can tell when a refresh that started after its trigger ended:
 * tier_refresher_trigger() returns that number, on_snapshot's snapshot carries it, and
 * on_failed names it.
 *
 * Loop thread only.
 */
#ifndef TIER_REFRESH_H
#define TIER_REFRESH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/client.h"
#include "services/tier_scoring/tier_population.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Retry delay after a failed refresh (when the interval is longer). */
#define TIER_REFRESH_RETRY_MS 5000
/** Attempts of a page whose BatchGetCreatorStats was NOT_FOUND. */
#define TIER_REFRESH_PAGE_ATTEMPTS 3
/** Creators per ListCreators page (creator profile's largest page). */
#define TIER_REFRESH_PAGE_SIZE 1000

typedef struct st_tier_refresher_t tier_refresher_t;

typedef struct st_tier_refresher_config_t {
    uv_loop_t *loop;
    /** Creator profile; must stay open until the refresher is closed. */
    yw_channel_t *peer;
    /** Between the end of a refresh and the start of the next. */
    uint64_t interval_ms;
    /** Deadline of each call to creator profile. */
    int64_t call_timeout_ms;
    /** The window of the next refresh: the policy's window_days. */
    int32_t (*window_days)(void *arg);
    /**
     * A refresh completed: `snap` is sealed and the callee owns its reference. Not
     * called after tier_refresher_close().
     */
    void (*on_snapshot)(void *arg, tier_snapshot_t *snap);
    /**
     * Optional: refresh `seq` failed with `code` (creator profile's status, or INTERNAL /
     * RESOURCE_EXHAUSTED for a failure on this side); `error` is valid during the call.
     * The retry is already scheduled. Not called after tier_refresher_close().
     */
    void (*on_failed)(void *arg, uint64_t seq, grpc_status_code code, const char *error);
    void *arg;
} tier_refresher_config_t;

/**
 * What a score reads of creator `c` with stats `s` (creator profile's messages): fills
 * `in` and returns the primary category (the first; "" when none), which points into `c`.
 */
const char *tier_input_of(const Yaowei__Creator__V1__Creator *c,
                          const Yaowei__Creator__V1__CreatorStats *s, tier_input_t *in);

/** Creates an idle refresher. Returns 0, or a negative errno. */
int tier_refresher_create(const tier_refresher_config_t *cfg, tier_refresher_t **out);

/**
 * Starts a refresh on the next loop iteration, or right after the one running. Returns
 * the number of that refresh: the first that starts after this call.
 */
uint64_t tier_refresher_trigger(tier_refresher_t *r);

/** Why the last refresh failed; "" after a success (or before any). */
const char *tier_refresher_last_error(const tier_refresher_t *r);

/**
 * Stops refreshing. A refresh in progress is abandoned: its call completes (destroy
 * the peer to cancel it) and nothing is delivered. `closed` runs on the loop when
 * nothing is left in flight; the refresher is then freed.
 */
void tier_refresher_close(tier_refresher_t *r, void (*closed)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
