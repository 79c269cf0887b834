/*
 * tier_state.h — the state of the tier scoring service (tier_service.h says what it holds
 * and why), shared by the two files that implement the service: tier_service.c (the
 * handlers, init and fini) and tier_rebuild.c (the population in force: builds, saves and
 * the RefreshPopulation calls waiting for one). Nothing else includes it.
 */
#ifndef TIER_STATE_H
#define TIER_STATE_H

#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include "common/app.h"
#include "common/client.h"
#include "common/server.h"
#include "services/tier_scoring/tier_policy.h"
#include "services/tier_scoring/tier_population.h"
#include "services/tier_scoring/tier_refresh.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Room for an error message of the service (a validator's, a store's, a peer's). */
#define TIER_ERR_BUFSZ 1024

typedef struct st_tier_update_t tier_update_t;
typedef struct st_tier_waiter_t tier_waiter_t;

/** What yw_app_state() holds. Loop thread only. */
typedef struct st_tier_state_t {
    yw_app_t *app;
    yw_store_t *store;
    yw_disk_t *disk; /* the write gate of --data-dir (common/disk.h) */
    uv_loop_t *loop;
    yw_channel_t *creator_profile;
    int64_t peer_timeout_ms;   /* a read from creator profile when the caller set no deadline */
    tier_policy_t policy;      /* in force */
    tier_snapshot_t *snapshot; /* the newest inputs (a reference) */
    tier_population_t *pop;    /* the newest population (a reference); never NULL */
    tier_refresher_t *refresher;
    int building;                          /* a build runs on the thread pool */
    int build_again;                       /* and another is due right after it */
    int saving, save_again;                /* the same for saves */
    tier_update_t *updates, *updates_tail; /* UpdateTierPolicy calls, in arrival order */
    int updating;                          /* the first of them is being written */
    tier_waiter_t *waiters;                /* RefreshPopulation calls waiting for a build */
    uv_timer_t wait_timer;                 /* their deadlines and cancellations */
    int wait_timer_open;
    int policy_reading, policy_read_again; /* tier_replicas.c: a read of the policy in force */
    int policy_read_failing;               /* the last one failed */
    uv_timer_t policy_timer;               /* its retry after a failure */
    int policy_timer_open;
    /* the base (until fini), the refresher, the timers, builds, saves, policy reads */
    unsigned holds;
    int closing;
} tier_state_t;

/** The state of the app the call arrived on. */
static inline tier_state_t *tier_state_of(const yw_call_t *call)
{
    return yw_app_state(yw_app_from_call(call));
}

/**
 * Drops one of the state's holds (the base one until fini, the refresher's, the wait
 * timer's, one per build and save in flight); the last frees it.
 */
static inline void tier_state_release(tier_state_t *st)
{
    if (--st->holds > 0) {
        return;
    }
    tier_population_unref(st->pop);
    tier_snapshot_unref(st->snapshot);
    free(st);
}

/* ---- tier_replicas.c ---- */

/** How long after a failed read of the policy in force it is read again. */
#define TIER_POLICY_RETRY_MS 1000

/**
 * Puts policy `p` in force if it is newer than the one in force (a higher version): the
 * next call sees it, the population is rescored with it and a refresh is triggered (a
 * changed window_days reads new stats). The one way a policy comes into force, whether
 * this replica wrote it or another did. Returns 1 if it did, 0 if `p` is not newer.
 */
int tier_policy_in_force(tier_state_t *st, const tier_policy_t *p);

/**
 * Reads the policy in force from the database (a job on the writer's connection, which
 * is the primary's: a standby may lag behind a notification) and puts it in force if it
 * is newer. One read at a time; a read asked for meanwhile follows it; a failed one is
 * tried again after TIER_POLICY_RETRY_MS. Nothing once closing.
 */
void tier_policy_recheck(tier_state_t *st);

/** tier_policy_recheck() after TIER_POLICY_RETRY_MS (unless one runs before). */
void tier_policy_recheck_later(tier_state_t *st);

/** Opens the retry timer of tier_policy_recheck() (takes a hold). Returns 0 or a libuv
 * error. */
int tier_policy_timer_open(tier_state_t *st);

/** Closes it (its hold goes when it is closed). Idempotent. */
void tier_policy_timer_close(tier_state_t *st);

/* ---- tier_rebuild.c ---- */

/** Scores the newest snapshot under the policy in force on the thread pool, then swaps the
 * population in, saves it and answers the RefreshPopulation calls it satisfies. A rebuild
 * asked for during another runs right after it. Nothing once closing. */
void tier_rebuild(tier_state_t *st);

/** tier_refresher_config_t.on_snapshot: `snap` (a reference, now the state's) is the
 * newest snapshot; rebuilds. */
void tier_on_snapshot(void *arg, tier_snapshot_t *snap);

/** tier_refresher_config_t.on_failed: the RefreshPopulation calls waiting for refresh
 * `seq` fail (UNAVAILABLE, or RESOURCE_EXHAUSTED as the refresher said). */
void tier_on_refresh_failed(void *arg, uint64_t seq, grpc_status_code code, const char *error);

/** Fails, with `code` and `why`, the calls waiting for a refresh numbered within
 * [seq_min, seq_max]. */
void tier_waiters_fail(tier_state_t *st, uint64_t seq_min, uint64_t seq_max, grpc_status_code code,
                       const char *why);

/** The RefreshPopulation handler (tier_service.h): a refresh now, answered once its
 * population is in force. */
void tier_refresh_population(yw_call_t *call, const ProtobufCMessage *msg);

#ifdef __cplusplus
}
#endif
#endif
