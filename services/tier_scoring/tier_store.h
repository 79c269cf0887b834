/*
 * tier_store.h — tier scoring's SQLite schema and the jobs that read and write it
 * (common/store.h runs them: writes on the writer thread in group commits, start-up
 * loading with yw_store_run_sync).
 *
 * Schema (version 1):
 *   tier_policies(version PK, thresholds, weights, rising_top_fraction, window_days,
 *                 update_time_s/ns) — every version ever in force; the highest is
 *                 the policy in force
 *   tier_population(id = 1, read_time_s/ns, window_days, end_day, policy_version,
 *                 compute_time_s/ns, creators) — the population saved last
 *   tier_creators(creator_id PK, category, inputs..., tier, score, components, rates,
 *                 percentile, rising, insufficient_data) — its creators: the inputs a
 *                 restart rebuilds the population from, and the scores last computed
 *                 (for people reading the file; a restart recomputes them)
 *
 * Jobs start with their yw_store_job_t. Inputs are borrowed: the caller keeps them
 * alive and unchanged until `done` runs.
 */
#ifndef TIER_STORE_H
#define TIER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/store.h"
#include "services/tier_scoring/tier_population.h"
#include "services/tier_scoring/tier_score.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TIER_N_MIGRATIONS 1
extern const yw_migration_t tier_migrations[TIER_N_MIGRATIONS];

/* ---- start-up ---- */

typedef struct st_tier_load_t {
    /* in: stamped on the default policy when the database has none */
    int64_t now_s;
    int32_t now_ns;
    /* out */
    tier_policy_t policy;      /* the policy in force */
    int policy_created;        /* non-zero: the default was written as version 1 */
    tier_snapshot_t *snapshot; /* the saved population's inputs (one reference, the
                                  caller's); an empty snapshot with time 0 when none */
    char errmsg[256];
} tier_load_t;

/**
 * For yw_store_run_sync(store, tier_store_load, &load, ...): reads the policy in force
 * (writing the default as version 1 when there is none) and the saved population. On
 * failure load->errmsg says why and load->snapshot is NULL.
 */
grpc_status_code tier_store_load(yw_store_conn_t *conn, void *arg);

/* ---- UpdateTierPolicy (write) ---- */

typedef struct st_tier_policy_job_t {
    yw_store_job_t job;
    void *data;
    tier_policy_t policy; /* in: the new version */
} tier_policy_job_t;

/** Inserts the policy version; ALREADY_EXISTS when that version exists. */
grpc_status_code tier_store_put_policy(yw_store_conn_t *conn, yw_store_job_t *job);

/* ---- saving the population (write) ---- */

typedef struct st_tier_save_job_t {
    yw_store_job_t job;
    void *data;
    const tier_population_t *pop; /* in: the caller holds a reference until done */
    size_t saved;                 /* out: creators written */
} tier_save_job_t;

/** Replaces the saved population with `pop` (its inputs, scores and metadata). */
grpc_status_code tier_store_save(yw_store_conn_t *conn, yw_store_job_t *job);

#ifdef __cplusplus
}
#endif
#endif
