/*
 * attr_store.h — attribution.db (SQLite via common/store.h): everything but the raw
 * exposures, which live in the exposure log (attr_log.h).
 *
 * Schema (version 1):
 *   settings(id = 1, click_window_ns, view_window_ns, half_life_ns, engaged_view_ms,
 *            late_window_ns, default_model, currency, version, update_ns)
 *   conversions(order_id PK, viewer_id, product_id, quantity, amount_minor, currency,
 *               occur_ns, ingest_ns)
 *   refunds(refund_id PK, order_id -> conversions, amount_minor, occur_ns, ingest_ns)
 *   conversion_touches(order_id -> conversions, event_id, creator_id, note_id, kind,
 *               watch_ms, occur_ns; PK (order_id, event_id)) — the candidate touches of
 *               each conversion, copied from the exposures, so that refunds and settings
 *               changes can restate a conversion after its exposures were pruned
 *   exposure_rollups(creator_id, day, impressions, views, clicks; PK (creator_id, day))
 *               — the counts of exposure log segments that were pruned
 *   pruned_segments(seq PK, pruned_ns, events) — segments whose counts are in
 *               exposure_rollups (a file still present is deleted, never replayed)
 *
 * Jobs: every struct starts with its yw_store_job_t; fill the inputs, set job.done,
 * yw_store_write(). Inputs are borrowed: the caller keeps them alive and unchanged until
 * `done` runs. Work functions run on the store's writer thread and touch nothing but
 * the job and the connection.
 */
#ifndef ATTR_STORE_H
#define ATTR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/store.h"
#include "services/attribution/attr_state.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const yw_migration_t attr_migrations[];
extern const size_t attr_n_migrations;

/* ---- start-up ---- */

/** What attr_store_load() fills in. The state must be in `defer` mode. */
typedef struct st_attr_load_t {
    attr_state_t *st;
    int64_t now_ns;
    int settings_found; /* 0: defaults (not yet stored) */
    uint64_t *pruned;   /* malloc'd, ascending */
    size_t n_pruned;
    uint64_t conversions, refunds, touches, rollups;
    char err[256];
} attr_load_t;

/**
 * Loads settings, conversions (admitted and committed into the state), their persisted
 * candidates, refunds, exposure rollups of pruned segments and the pruned segment list.
 * For yw_store_run_sync(); `arg` is an attr_load_t.
 */
grpc_status_code attr_store_load(yw_store_conn_t *conn, void *arg);

/* ---- writes ---- */

typedef struct st_attr_conv_row_t {
    const char *order_id, *viewer_id, *product_id;
    int64_t quantity, amount_minor, occur_ns;
} attr_conv_row_t;

typedef struct st_attr_conv_job_t {
    yw_store_job_t job;
    void *data;
    const attr_conv_row_t *rows;
    size_t n;
    const char *currency;
    int64_t ingest_ns;
} attr_conv_job_t;

/** Inserts conversions. */
grpc_status_code attr_store_put_conversions(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_refund_row_t {
    const char *refund_id, *order_id;
    int64_t amount_minor, occur_ns;
} attr_refund_row_t;

typedef struct st_attr_refund_job_t {
    yw_store_job_t job;
    void *data;
    const attr_refund_row_t *rows;
    size_t n;
    int64_t ingest_ns;
} attr_refund_job_t;

/** Inserts refunds (each order must exist: foreign key). */
grpc_status_code attr_store_put_refunds(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_touch_row_t {
    const char *order_id, *event_id, *creator_id, *note_id;
    int kind;
    int64_t watch_ms, occur_ns;
} attr_touch_row_t;

typedef struct st_attr_touch_job_t {
    yw_store_job_t job;
    void *data;
    const attr_touch_row_t *rows;
    size_t n;
} attr_touch_job_t;

/** Inserts candidate touches (ones already there are kept). */
grpc_status_code attr_store_put_touches(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_settings_job_t {
    yw_store_job_t job;
    void *data;
    attr_settings_t settings;
} attr_settings_job_t;

/** Stores the settings (the one row). */
grpc_status_code attr_store_put_settings(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_prune_job_t {
    yw_store_job_t job;
    void *data;
    char path[4096]; /* the segment file */
    uint64_t seq;
    int64_t now_ns;
    /* out */
    uint64_t events;
} attr_prune_job_t;

/**
 * Reads segment `path`, adds its exposure counts per (creator, day) to
 * exposure_rollups and records the segment as pruned, in one transaction. The caller
 * deletes the file after `done` reports OK.
 */
grpc_status_code attr_store_prune_segment(yw_store_conn_t *conn, yw_store_job_t *job);

#ifdef __cplusplus
}
#endif
#endif
