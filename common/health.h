/*
 * health.h — grpc.health.v1.Health (Check and Watch) for a server: a status per
 * service name and for "" (the whole server). Unknown names are NOT_FOUND on Check and
 * SERVICE_UNKNOWN on Watch (as the protocol says). The server runtime knows nothing
 * of it: the app (app.c) creates one, adds its service to the server (a no_auth service:
 * open to every caller), sets the names SERVING once the server serves, reaps watches
 * about once a second and calls yw_health_shutdown() when it begins to stop.
 */
#ifndef YW_HEALTH_H
#define YW_HEALTH_H

#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_health_t yw_health_t;

/** Creates the health registry. Returns 0 or -ENOMEM. */
int yw_health_create(yw_health_t **out);

/** The grpc.health.v1.Health service to add to a server; ctx is `h`. */
const yw_service_t *yw_health_service(yw_health_t *h);

/**
 * Sets `service` ("" for the whole server) SERVING (non-zero) or NOT_SERVING, adding
 * the name when new, and sends the new status to every Watch of that name (only when
 * it changed). After yw_health_shutdown() every name stays NOT_SERVING. If memory runs
 * out adding a new name, the name stays unknown (Check: NOT_FOUND).
 */
void yw_health_set(yw_health_t *h, const char *service, int serving);

/**
 * Finishes (CANCELLED) every Watch whose call yw_call_is_cancelled() reports ended:
 * a server-streaming handler learns of a client's cancellation only when a send fails
 * or the runtime calls its on_end, and a Watch may send nothing for hours. The app
 * calls this periodically (about once a second) on the loop thread; it is cheap when
 * nothing is cancelled (one pass over the watches).
 */
void yw_health_reap(yw_health_t *h);

/**
 * Server shutdown (call it before yw_server_shutdown()): every name goes NOT_SERVING, each Watch
 * gets that update and is then finished (UNAVAILABLE), so watches do not hold the grace period.
 */
void yw_health_shutdown(yw_health_t *h);

/** Frees the registry; after every call has ended. NULL is a no-op. */
void yw_health_destroy(yw_health_t *h);

#ifdef __cplusplus
}
#endif
#endif
