/*
 * creator_service.h — yaowei.creator.v1.CreatorProfileService: the method table and
 * the handlers, plus the service state (the creator cache) that app init loads.
 *
 * Reads of creators (GetCreator, BatchGetCreators) are answered from the in-memory
 * cache on the loop. Writes go to the store's writer; the cache changes in the job's
 * done callback, after the commit and before the reply, so that a reply the client has
 * seen is what every later GetCreator sees. ListCreators and the stats methods are
 * read jobs on the store's reader threads.
 */
#ifndef CREATOR_SERVICE_H
#define CREATOR_SERVICE_H

#include <stddef.h>

#include "common/app.h"
#include "common/server.h"
#include "services/creator_profile/creator_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CREATOR_SERVICE_NAME "yaowei.creator.v1.CreatorProfileService"

/** What yw_app_state() holds for this service. Loop thread only. */
typedef struct st_creator_state_t {
    creator_cache_t cache;
    yw_store_t *store;
} creator_state_t;

/** The service and its nine methods. */
extern const yw_service_t creator_service;

/**
 * yw_app_def_t.init: loads every creator into the cache (yw_store_run_sync) and sets the
 * app state. Returns 0, or a negative errno with a message in `err`.
 */
int creator_service_init(yw_app_t *app, char *err, size_t errlen);

/** yw_app_def_t.fini: frees the state. No call is in flight by then. */
void creator_service_fini(yw_app_t *app);

/**
 * The creator_profile app: the service, its store and init. main.c runs it
 * (yw_app_main()); unit tests of the handlers open it without serving (yw_app_open()).
 */
extern const yw_app_def_t creator_app;

#ifdef __cplusplus
}
#endif
#endif
