/*
 * creator_service.h — yaowei.creator.v1.CreatorProfileService: the method table and
 * the handlers, plus the service state (the creator cache) that app init loads.
 *
 * Reads of creators (GetCreator, BatchGetCreators) are answered from the in-memory
 * cache on the loop. Writes go to the store's writer; the cache changes in the job's
 * done callback, after the commit and before the reply, so that a reply the client has
 * seen is what every later GetCreator sees. ListCreators and the stats methods are
 * read jobs on the store's reader threads.
 *
 * On PostgreSQL, several replicas serve one database: each keeps its cache in step with
 * the others' writes through the "yw_creators" notifications (creator_sync.h), and
 * RecordNoteStats asks the database, not the cache, whether a creator exists. While the
 * database is away, GetCreator and BatchGetCreators still answer from the cache (as of
 * the last notification received); every other method fails UNAVAILABLE.
 */
#ifndef CREATOR_SERVICE_H
#define CREATOR_SERVICE_H

#include <stddef.h>

#include "common/app.h"
#include "common/server.h"
#include "services/creator_profile/creator_cache.h"
#include "services/creator_profile/creator_sync.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CREATOR_SERVICE_NAME "yaowei.creator.v1.CreatorProfileService"

/** What yw_app_state() holds for this service. Loop thread only. */
typedef struct st_creator_state_t {
    creator_cache_t cache;
    yw_store_t *store;
    yw_app_t *app;
    /** PostgreSQL only (`pg` non-zero): the cache kept in step with other replicas. */
    int pg;
    creator_sync_t sync;
    /** This replica's id in its notifications (creator_notify_payload()): random hex. */
    char replica[CREATOR_REPLICA_MAX];
    /** Retries a failed reload with a full one (creator_sync_t.failed), every second. */
    uv_timer_t retry;
    int retry_open;   /* `retry` is initialized and not closed */
    size_t reloads;   /* reload jobs in flight (their done callbacks use this state) */
    int closing;      /* fini ran: reloads report to nobody, the state goes when idle */
    int fini_waiting; /* fini_async waits for the reloads and the timer */
    /** Listening on CREATOR_CHANNEL (yw_store_unlisten() before the state goes). */
    int listening;
} creator_state_t;

/** The service and its nine methods. */
extern const yw_service_t creator_service;

/**
 * yw_app_def_t.init: loads every creator into the cache (yw_store_run_sync) and sets the
 * app state. Returns 0, or a negative errno with a message in `err`.
 */
int creator_service_init(yw_app_t *app, char *err, size_t errlen);

/**
 * yw_app_def_t.fini: stops keeping the cache in step. No call is in flight by then.
 * yw_app_def_t.fini_async: frees the state once the reloads in flight have ended.
 */
void creator_service_fini(yw_app_t *app);
void creator_service_fini_async(yw_app_t *app);

/**
 * The creator_profile app: the service, its store and init. main.c runs it
 * (yw_app_main()); unit tests of the handlers open it without serving (yw_app_open()).
 */
extern const yw_app_def_t creator_app;

#ifdef __cplusplus
}
#endif
#endif
