/*
 * attr_service.h — yaowei.attribution.v1.AttributionService on the shared runtime: the
 * method table, start-up (load, replay, open the exposure log) and shutdown.
 *
 * Where things live:
 *   exposures            --data-dir/exposures/seg-*.log (attr_log.h), replayed at start
 *   everything else      --data-dir/attribution.db (attr_store.h)
 *   the working state    memory (attr_state.h), rebuilt from both at start-up
 * Every handler runs on the loop; disk work runs on the log's writer thread or the
 * store's threads and completes back on the loop.
 */
#ifndef ATTR_SERVICE_H
#define ATTR_SERVICE_H

#include <stddef.h>

#include "common/app.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const yw_service_t attr_service;
extern const yw_option_t attr_options[];
extern const size_t attr_n_options;

/** yw_app_def_t.init: loads the state, replays the exposure log, opens it. */
int attr_service_init(yw_app_t *app, char *err, size_t errlen);

/** yw_app_def_t.fini: closes the log (syncs), the tier channel and the timer. */
void attr_service_fini(yw_app_t *app);

#ifdef __cplusplus
}
#endif
#endif
