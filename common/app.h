/*
 * app.h — the main() of every yaowei service, written once: parse the common flags
 * (config.h), set up logging, keep the data dir's reserve and write gate (disk.h), open
 * the service's SQLite store under --data-dir (migrating its schema), create the runtime
 * and the server (health and reflection included), let the service load its state,
 * start serving on --listen (and metrics on --metrics-listen, metrics.h), tell systemd it
 * is ready (sd_notify READY=1; nothing without $NOTIFY_SOCKET), and on SIGTERM/SIGINT
 * shut down gracefully (health NOT_SERVING, new calls refused, calls in flight finish
 * within --grace-ms, store flushed and closed, exit 0).
 *
 * Floods (listener.h): the soft file limit is raised to the hard one at start, at most
 * --max-connections connections are held, and the gRPC port's listener is watched. While
 * it accepts, the loop pings the systemd watchdog (WATCHDOG=1, when $WATCHDOG_USEC asks for
 * it); once it is found dead (--listener-stall-ms) the pings stop and the service shuts down
 * the same graceful way but exits 1, so that its supervisor restarts it.
 */
#ifndef YW_APP_H
#define YW_APP_H

#include <stddef.h>

#include "common/config.h"
#include "common/disk.h"
#include "common/metrics.h"
#include "common/page_token.h"
#include "common/runtime.h"
#include "common/server.h"
#include "common/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_app_t yw_app_t;

/** What a service binary tells yw_app_main(). Static const data. */
typedef struct st_yw_app_def_t {
    /** Program and log name, e.g. "creator_profile". */
    const char *program;
    /** One line for --help. */
    const char *summary;
    /** The gRPC service; its `ctx` is replaced by the yw_app_t at registration. */
    const yw_service_t *service;
    /** Database file name under --data-dir, e.g. "creator_profile.db". */
    const char *db_file;
    const yw_migration_t *migrations;
    size_t n_migrations;
    /**
     * The schema's migrations on PostgreSQL (--store postgresql://...), kept under the
     * name `program` in yw_schema_versions; NULL: the service runs on SQLite only.
     */
    const yw_migration_t *pg_migrations;
    size_t n_pg_migrations;
    /** Options of this service besides the common ones; copied, may be NULL. */
    const yw_option_t *options;
    size_t n_options;
    /**
     * Runs on the loop thread after the store is open and before the server serves:
     * load caches (yw_store_run_sync is allowed here), connect to peers. Sets
     * yw_app_set_state(). Returns 0, or a negative errno with a message in `err` (the
     * process then exits 1).
     */
    int (*init)(yw_app_t *app, char *err, size_t errlen);
    /** Optional: runs on the loop after the server stopped, before the store closes. */
    void (*fini)(yw_app_t *app);
    /**
     * Optional, for services whose own threads or queued store jobs must finish before
     * the store closes: runs after `fini` and must call yw_app_fini_done(app) once, on
     * the loop, when everything is flushed. The loop keeps running until then.
     */
    void (*fini_async)(yw_app_t *app);
    /** Default of --listen, e.g. "127.0.0.1:50051". */
    const char *default_listen;
} yw_app_def_t;

/** Tells the app that `fini_async` has finished: the store closes next. Loop thread. */
void yw_app_fini_done(yw_app_t *app);

/** Runs the service; returns the process exit code. */
int yw_app_main(int argc, char **argv, const yw_app_def_t *def);

/**
 * Opens the service of `def` as yw_app_main() does before it serves, from the same flags
 * (`argv` as main()'s: argv[0] is the program): a runtime of its own, --data-dir with the
 * disk's write gate, the store (migrated) and the page token key, then def->init; but no
 * server, health, reflection, listener, TLS, auth, metrics endpoint or signal handlers,
 * and logging is left as it is. For unit tests that run the service's handlers through
 * fake calls (call_fake.h) whose service ctx is the app, as a served call's is; peers are
 * reached as the flags say. Returns 0, or a negative errno with a message in `err`
 * (nothing is left open then). The caller's thread is the loop thread from then on.
 */
int yw_app_open(const yw_app_def_t *def, int argc, char **argv, yw_app_t **out, char *err,
                size_t errlen);

/**
 * Closes an app of yw_app_open() as a served one stops once its server is down: fini,
 * fini_async (the loop runs until it is done), the store; then frees everything. No call
 * may be in flight.
 */
void yw_app_close(yw_app_t *app);

/** The app a call belongs to (handlers: yw_app_from_call(call)). */
yw_app_t *yw_app_from_call(const yw_call_t *call);

/** The service's own state, set by init. */
void yw_app_set_state(yw_app_t *app, void *state);
void *yw_app_state(const yw_app_t *app);

yw_runtime_t *yw_app_runtime(const yw_app_t *app);
yw_server_t *yw_app_server(const yw_app_t *app);
yw_store_t *yw_app_store(const yw_app_t *app);

/**
 * The process's metrics registry (metrics.h): always there, served over HTTP when
 * --metrics-listen is set. Register a service's own metrics on it in `init`; handles
 * stay valid until yw_app_main() returns.
 */
yw_metrics_t *yw_app_metrics(const yw_app_t *app);

/**
 * The key that signs the service's page tokens (page_token.h): read from
 * --data-dir/page_token.key, created there at the first start; a random one for a
 * service without a database. Valid until yw_app_main() returns.
 */
const yw_page_key_t *yw_app_page_key(const yw_app_t *app);

/**
 * The write gate of --data-dir's disk (disk.h): ask yw_disk_writable() before a write a
 * caller asked for, and answer RESOURCE_EXHAUSTED with its message while the disk is
 * full. NULL for a service without a database (always writable).
 */
yw_disk_t *yw_app_disk(const yw_app_t *app);

/**
 * Health of the service (and of ""): SERVING when `serving` and the server serves,
 * NOT_SERVING otherwise. Services start serving; a service that depends on something
 * it may lose (attribution's NATS cluster) says when it can serve. Loop thread; may be
 * called from init, before the server starts.
 */
void yw_app_set_serving(yw_app_t *app, int serving);

/**
 * The service cannot go on (a setting that contradicts what others agreed, say): logs
 * `why` as an error, then stops the process gracefully with exit code 1. Loop thread.
 */
void yw_app_fail(yw_app_t *app, const char *why);

/** The value of option `name` (common or the service's own); NULL when unset. */
const char *yw_app_option(const yw_app_t *app, const char *name);

#ifdef __cplusplus
}
#endif
#endif
