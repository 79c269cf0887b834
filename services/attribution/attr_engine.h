/*
 * attr_engine.h — one attribution engine: the state, the stores and the timers of the
 * AttributionService over one data directory, opened and closed as an instance. The
 * standalone binary runs one over --data-dir with the app's attribution.db
 * (attr_service.c); a process may run several, each over its own directory, on one loop
 * (a cluster node: one per partition it owns).
 *
 * An engine's directory holds exposures/ (the log and its index files,
 * attr_exposure_store.h), conversion-keys/ (attr_ckey.h), the snapshot of its last clean
 * stop (attr_snap.h) and, unless it was given an open store, attribution.db
 * (attr_store.h). Engines share nothing but what their configs lend them (the runtime,
 * the metrics registry, the disk gate, the page key): two engines must not be opened over
 * one directory or one store at once.
 *
 * Everything here runs on the loop of the config's runtime.
 */
#ifndef ATTR_ENGINE_H
#define ATTR_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/disk.h"
#include "common/metrics.h"
#include "common/page_token.h"
#include "common/runtime.h"
#include "common/store.h"
#include "services/attribution/attr_xlog.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An engine (attr_service_int.h has its fields, for the service's files only). */
/**
 * Metadata a cluster node's front sends with a part of RecordExposures when it had two
 * or more such calls in flight, now or within the last second: the partition's log may
 * then let the part wait up to --log-linger-ms for the parts of the others
 * (attr_xlog_set_ship()). The parts of a caller that sends one call at a time go
 * without it and are appended at once.
 */
#define ATTR_LINGER_MD "yw-linger"

typedef struct st_attr_svc_t attr_svc_t;

/**
 * What an engine is opened with. The pointers are borrowed: they must stay valid until
 * the engine's `closed` callback has run. Budgets are numbers, not flags: a process that
 * runs several engines divides its flags' budgets among them.
 */
typedef struct st_attr_engine_config_t {
    /** The runtime: its loop runs the engine, its channels reach tier scoring. */
    yw_runtime_t *rt;
    /** The engine's directory (created when missing; its parent must exist). */
    const char *data_dir;
    /**
     * attribution.db, already open and migrated with attr_migrations (standalone: the
     * app's); the engine leaves it open. NULL: the engine opens
     * <data_dir>/attribution.db itself (yw_store_open(), attr_migrations) and closes it
     * before its `closed` callback runs.
     */
    yw_store_t *store;
    /** Tier scoring's address (--tier-scoring-addr); each engine opens its own channel
     *  (an attr_tier_t serves the creators of one state). */
    const char *tier_addr;
    /** How long a tier label is reused (--tier-label-ttl-s), in nanoseconds. */
    int64_t tier_label_ttl_ns;
    /** The rollup audit's period (--audit-rollups-ms), in nanoseconds; 0: never. */
    int64_t audit_rollups_ns;
    /** Exposures per run before its index file is written (--index-run-exposures); 0: the
     *  exposure store's default (ATTR_EXPOSURE_STORE_RUN). */
    uint32_t index_run_exposures;
    /** A run is also indexed once its strings take this many bytes (--index-run-mb). */
    size_t index_run_bytes;
    /** Bytes of exposures read and not yet committed, all calls together, before calls
     *  wait (--ingest-pending-mb). */
    size_t ingest_pending_bytes;
    /** Bytes of conversions kept in memory (--conversion-cache-mb); 0: only those in use. */
    size_t conversion_cache_bytes;
    /** Bytes the Bloom filters of indexed event ids may hold (--dedup-filter-mb); 0: no
     *  limit. */
    size_t dedup_filter_bytes;
    /**
     * Where the engine registers its metrics (memory by part, the conversion cache, the
     * audit); NULL: it registers none (series are per process: of several engines in one
     * process, at most one may be given the registry).
     */
    yw_metrics_t *metrics;
    /** The write gate of the directory's disk (disk.h); NULL: always writable. */
    yw_disk_t *disk;
    /** The key that signs ListTopCreators' page tokens (page_token.h). Required. */
    const yw_page_key_t *page_key;
    /**
     * Optional (NULL: none), for a directory that is a copy of a replicated log (a cluster
     * node's partition, attr_partition.h): every group of exposure log bytes goes through
     * `ship_xlog` (attr_xlog_ship_fn) and, when the engine opens its store itself, every
     * transaction of attribution.db through `ship_db` (yw_store_config_t.ship), before
     * anything they hold is acknowledged. They run on the log's and the store's threads.
     */
    attr_xlog_ship_fn ship_xlog;
    void *ship_xlog_arg;
    /** With ship_xlog: how long the log's writer lets a group gather (--log-linger-ms),
     *  for the calls that carry ATTR_LINGER_MD. */
    uint64_t ship_linger_ns;
    int (*ship_db)(void *arg, const void *changeset, size_t len, char *err, size_t errlen);
    void *ship_db_arg;
} attr_engine_config_t;

/** Fills `cfg` with the flags' defaults (budgets and periods); pointers are NULL. */
void attr_engine_config_defaults(attr_engine_config_t *cfg);

/**
 * Opens an engine: its directory, its store (unless given), recovery (attr__recover():
 * the snapshot of the last clean stop or the data), the channel to tier scoring, the
 * timers. Blocks the loop while it recovers. Returns 0 with *out set, or a negative errno
 * with `err` set and *out NULL; then what was opened is released on the loop (run it to
 * let the closes finish).
 */
int attr_engine_open(const attr_engine_config_t *cfg, attr_svc_t **out, char *err, size_t errlen);

/**
 * Closes an engine, in the steps of a clean stop: stops its timers and the channel to tier
 * scoring, seals and closes the conversion key index and the exposure store (the log
 * syncs, the open run is indexed), stores the touches still in memory only, writes the
 * snapshot for the next open, then closes the store if the engine opened it. `closed(arg)`
 * (may be NULL) runs once on the loop when all that is done and the engine is freed.
 * No call may be in flight on the engine: `svc` is not valid after this call.
 */
void attr_engine_close(attr_svc_t *svc, void (*closed)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
