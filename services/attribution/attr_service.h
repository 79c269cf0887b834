/*
 * attr_service.h — yaowei.attribution.v1.AttributionService on the shared runtime: the
 * method table, start-up (one engine over --data-dir, attr_engine.h) and shutdown.
 *
 * Where things live:
 *   exposures            --data-dir/exposures/: the log (seg-*.log, attr_xlog.h) and its
 *                        index files (idx-*.xidx, attr_xidx.h), together attr_exposure_store.h
 *   conversion keys      --data-dir/conversion-keys/: (viewer, product) -> stored orders,
 *                        so that a late exposure finds them (attr_ckey.h)
 *   everything else      --data-dir/attribution.db (attr_store.h): conversions with their
 *                        touches, refunds, settings
 *   the working state    memory (attr_state.h), bounded by the flags: rollups, a cache of
 *                        conversions, the exposures not yet indexed, filters; rebuilt
 *                        from the database and the index files at start-up (only the
 *                        log's unindexed tail is read)
 * Every handler runs on the loop; disk work runs on the threads of the log, the index
 * files and the store, and completes back on the loop.
 */
#ifndef ATTR_SERVICE_H
#define ATTR_SERVICE_H

#include <stddef.h>

#include "common/app.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const yw_service_t attr_service;
/** The service's own flags (ATTR_N_OPTIONS of them: a constant for static tables). */
#define ATTR_N_OPTIONS 17
extern const yw_option_t attr_options[];
extern const size_t attr_n_options;

/**
 * yw_app_def_t.init: reads the flags, joins the cluster with --cluster (attr_node.c), and
 * opens one engine (attr_engine_open()) over --data-dir with the app's store.
 */
int attr_service_init(yw_app_t *app, char *err, size_t errlen);

/** yw_app_def_t.fini: leaves the cluster (--cluster). */
void attr_service_fini(yw_app_t *app);

/**
 * After fini: closes the engine (attr_engine_close(): the exposure store syncs and
 * indexes its open run, what is still in memory only is stored, the start-up snapshot is
 * written), then calls yw_app_fini_done().
 */
void attr_service_fini_async(yw_app_t *app);

/**
 * The attribution app: the service, its options, store, init, fini and fini_async.
 * main.c runs it (yw_app_main()); unit tests of the handlers open it without serving
 * (yw_app_open()).
 */
extern const yw_app_def_t attr_app;

#ifdef __cplusplus
}
#endif
#endif
