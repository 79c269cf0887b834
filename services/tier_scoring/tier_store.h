/*
 * tier_store.h — tier scoring's schema and the jobs that read and write it, on SQLite
 * (one file under --data-dir) or PostgreSQL (--store URI: several stateless replicas over
 * one database, the one creator profile uses too). The jobs' SQL is common/sql.h's and
 * runs on both; each backend has its own DDL (tier_migrations, tier_pg_migrations).
 * common/store.h runs the jobs: writes on a writer connection (SQLite: group commits;
 * PostgreSQL: one transaction each), start-up loading with yw_store_run_sync.
 *
 * Schema (version 1; the table names are tier_* so as not to clash with creator
 * profile's creators, creator_categories, create_requests, note_stats):
 *   tier_policies(version PK, thresholds, weights, rising_top_fraction, window_days,
 *                 update_time_s/ns) — every version ever in force; the highest is
 *                 the policy in force
 *   tier_population(id = 1, read_time_s/ns, window_days, end_day, policy_version,
 *                 compute_time_s/ns, creators) — the population saved last
 *   tier_creators(creator_id PK, category, inputs..., tier, score, components, rates,
 *                 percentile, rising, insufficient_data) — its creators: the inputs a
 *                 restart rebuilds the population from, and the scores last computed
 *                 (for people reading the tables; a restart recomputes them). rising and
 *                 insufficient_data are integers 0 or 1 on both databases.
 *
 * Replicas. Policy versions never fork: an update takes the lock "tier-policy"
 * (yw_sql_job_lock(): PostgreSQL's advisory lock; SQLite's one writer already takes
 * turns), merges the request into the version in force *in the database* and writes
 * that version + 1, then notifies TIER_POLICY_CHANNEL with the new version once it
 * commits. A save of the population (delete every row, insert the new ones) takes a lock
 * without waiting and is skipped while another replica's is in progress (tier_store_save()),
 * so that two saves never collide on creator_id.
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
#include "yaowei/tier/v1/tier.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TIER_N_MIGRATIONS 1
/** SQLite's schema. */
extern const yw_migration_t tier_migrations[TIER_N_MIGRATIONS];

#define TIER_N_PG_MIGRATIONS 1
/** PostgreSQL's schema: the same tables, columns and keys as tier_migrations. */
extern const yw_migration_t tier_pg_migrations[TIER_N_PG_MIGRATIONS];

/**
 * The channel a policy update notifies (yw_sql_job_notify()) once committed, with the new
 * version in decimal as its payload.
 */
#define TIER_POLICY_CHANNEL "yw_tier_policy"

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
 * (writing the default as version 1 when there is none; of replicas that start together
 * on an empty database, one writes it and the others read it: policy_created is set
 * only for the one) and the saved population. On failure load->errmsg says why and
 * load->snapshot is NULL.
 */
grpc_status_code tier_store_load(yw_store_conn_t *conn, void *arg);

/* ---- UpdateTierPolicy (write) ---- */

typedef struct st_tier_policy_job_t {
    yw_store_job_t job;
    void *data;
    /* in: the call's request, read on the store thread (nothing else touches it then) */
    const Yaowei__Tier__V1__UpdateTierPolicyRequest *req;
    int64_t now_s; /* in: the update_time of the new version */
    int32_t now_ns;
    tier_policy_t policy; /* out: the version written */
    /* out: why tier_policy_update() refused the request, when it did ("" otherwise): its
     * messages may be longer than job.errmsg, which holds them truncated */
    char refusal[1024];
} tier_policy_job_t;

/**
 * UpdateTierPolicy's write: under the lock "tier-policy", reads the version in force
 * from the database, merges the request into it (tier_policy_update(): its statuses and
 * messages, ABORTED when req->policy->version is neither 0 nor that version), inserts
 * the result as that version + 1 stamped now_s/now_ns, and notifies TIER_POLICY_CHANNEL.
 * ALREADY_EXISTS if that version exists all the same (a writer that did not take the
 * lock); the store's statuses otherwise (UNAVAILABLE while the database is away).
 */
grpc_status_code tier_store_update_policy(yw_store_conn_t *conn, yw_store_job_t *job);

/* ---- the policy in force (read, on the writer: see tier_service.c) ---- */

typedef struct st_tier_policy_read_t {
    yw_store_job_t job;
    void *data;
    tier_policy_t policy; /* out: the highest version */
} tier_policy_read_t;

/** Reads the policy in force; INTERNAL when tier_policies is empty. */
grpc_status_code tier_store_read_policy(yw_store_conn_t *conn, yw_store_job_t *job);

/* ---- saving the population (write) ---- */

typedef struct st_tier_save_job_t {
    yw_store_job_t job;
    void *data;
    const tier_population_t *pop; /* in: the caller holds a reference until done */
    size_t saved;                 /* out: creators written */
    int skipped; /* out: another replica was saving its population: this one was not */
} tier_save_job_t;

/**
 * Replaces the saved population with `pop` (its inputs, scores and metadata). PostgreSQL:
 * under a lock that replicas' saves take without waiting; when another replica holds it,
 * nothing is written and `skipped` is set (OK): its population is as fresh as this one,
 * give or take a refresh.
 */
grpc_status_code tier_store_save(yw_store_conn_t *conn, yw_store_job_t *job);

#ifdef __cplusplus
}
#endif
#endif
