/*
 * creator_store.h — the creator profile's schema (SQLite and PostgreSQL) and the store
 * jobs that read and write it (common/store.h runs them: on SQLite writes on the writer
 * thread in group commits, reads on reader threads; on PostgreSQL each job is one
 * transaction on a pooled connection, with several replicas writing one database). The
 * jobs' SQL is common/sql.h's and runs on both; creator_store.c says what keeps writes
 * of several replicas correct. Every job that commits a change of a creator notifies
 * CREATOR_CHANNEL (creator_sync.h) with its creator_id.
 *
 * Every job struct starts with its yw_store_job_t. Use: creator_X_job_init(), fill the
 * inputs, set `data` if needed, yw_store_write() or yw_store_read(); in `done` (on the
 * loop) read the outputs, then creator_X_job_dispose(). Inputs are borrowed: the caller
 * keeps them alive and unchanged until `done` runs. Outputs are owned by the job until
 * disposed, unless taken (set to NULL) first. Requests reaching a job were validated
 * (creator_validate.h); the job checks only what needs the database, and reports it
 * with the field's path in job.errmsg.
 *
 * Schema (version 1):
 *   creators(creator_id PK, display_name, region, categories (joined with \x1f),
 *            followers, status, create_time_s/ns, update_time_s/ns)
 *   creator_categories(creator_id, category) — one row per distinct category, to
 *            filter ListCreators by category through an index
 *   create_requests(request_id PK, creator_id) — AIP-155 request ids, kept while the
 *            creator they created exists
 *   note_stats(note_id, day, creator_id, is_video, counts..., PK (note_id, day)),
 *            indexed on (creator_id, day); `day` is days since 1970-01-01 (UTC)
 * Foreign keys are declared for the reader's sake but not relied on (PRAGMA
 * foreign_keys is per connection and cannot change inside a transaction): deletes
 * remove dependent rows themselves. PostgreSQL (creator_pg_migrations) has the same
 * tables, with its types and byte-ordered ("C") text keys, and enforces the keys.
 */
#ifndef CREATOR_STORE_H
#define CREATOR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/store.h"
#include "services/creator_profile/creator_cache.h"
#include "services/creator_profile/creator_day.h"
#include "services/creator_profile/creator_record.h"
#include "services/creator_profile/creator_validate.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The schema, for yw_store_config_t / yw_app_def_t (static initializers need the count
 * as a constant: CREATOR_N_MIGRATIONS). */
#define CREATOR_N_MIGRATIONS 1
extern const yw_migration_t creator_migrations[CREATOR_N_MIGRATIONS];

/** The same schema on PostgreSQL (CREATOR_N_PG_MIGRATIONS versions, as SQLite's). */
#define CREATOR_N_PG_MIGRATIONS 1
extern const yw_migration_t creator_pg_migrations[CREATOR_N_PG_MIGRATIONS];

/* ---- CreateCreator (write) ---- */

typedef struct st_creator_create_job_t {
    yw_store_job_t job;
    void *data;
    /* in */
    const char *request_id; /* "" or NULL: no idempotency key */
    const Yaowei__Creator__V1__Creator *creator;
    int64_t now_seconds; /* create_time when the creator has none; update_time */
    int32_t now_nanos;
    const char *replica; /* this replica's id for the notification (NULL: none); sync.h */
    /* out */
    creator_record_t *result; /* the creator as stored */
    int replayed;             /* non-zero: request_id was seen; result is that creator now */
} creator_create_job_t;

/**
 * Creates the creator (status UNSPECIFIED stored as ACTIVE). With a request_id already
 * seen: the creator it created, as it is now (INVALID_ARGUMENT when that was another
 * creator_id). ALREADY_EXISTS when the creator_id is taken.
 */
grpc_status_code creator_store_create(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_create_job_init(creator_create_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_create_job_dispose(creator_create_job_t *j);

/* ---- UpdateCreator (write) ---- */

typedef struct st_creator_update_job_t {
    yw_store_job_t job;
    void *data;
    /* in */
    const Yaowei__Creator__V1__Creator *creator; /* creator_id names the creator */
    unsigned mask;                               /* CREATOR_FIELD_* */
    int64_t now_seconds;
    int32_t now_nanos;
    const char *replica; /* this replica's id for the notification (NULL: none); sync.h */
    /* out */
    creator_record_t *result;
} creator_update_job_t;

/** Changes the masked fields and update_time. NOT_FOUND when the creator does not exist. */
grpc_status_code creator_store_update(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_update_job_init(creator_update_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_update_job_dispose(creator_update_job_t *j);

/* ---- DeleteCreator (write) ---- */

typedef struct st_creator_delete_job_t {
    yw_store_job_t job;
    void *data;
    const char *creator_id; /* in */
    const char *replica;    /* in: this replica's id for the notification (NULL: none) */
} creator_delete_job_t;

/** Deletes the creator, its categories, note stats and request ids. NOT_FOUND when absent. */
grpc_status_code creator_store_delete(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_delete_job_init(creator_delete_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status));

/* ---- RecordNoteStats (write) ---- */

typedef struct st_creator_record_stats_job_t {
    yw_store_job_t job;
    void *data;
    /* in */
    Yaowei__Creator__V1__NoteDailyStats *const *stats;
    size_t n_stats;
    /**
     * Non-zero: write nothing, only check that the creators of these first rows exist
     * (the service knows the batch is bad at row check_only, and wants to know whether a
     * row before it names a creator that does not exist). Queue it as a write: the
     * primary has every creator committed, a standby may not.
     */
    size_t check_only;
    /* out */
    int32_t upserted;
} creator_record_stats_job_t;

/**
 * Upserts every row by (note_id, day), all or none: INVALID_ARGUMENT naming the first
 * row whose creator does not exist in the database (`stats[i].creator_id`) or whose
 * note belongs to another creator (`stats[i].note_id`).
 */
grpc_status_code creator_store_record_stats(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_record_stats_job_init(creator_record_stats_job_t *j,
                                   void (*done)(yw_store_job_t *job, grpc_status_code status));

/* ---- ListCreators (read) ---- */

typedef struct st_creator_list_job_t {
    yw_store_job_t job;
    void *data;
    /* in */
    const char *after; /* creator_id the page starts after; "" for the first page */
    int32_t page_size; /* 1..1000 */
    const char *category;
    const char *region;
    int64_t min_followers;
    int64_t max_followers; /* 0: no upper bound */
    /* out */
    creator_record_t **records; /* page, ordered by creator_id */
    size_t n_records;
    int more; /* non-zero when creators follow the last one of the page */
} creator_list_job_t;

grpc_status_code creator_store_list(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_list_job_init(creator_list_job_t *j,
                           void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_list_job_dispose(creator_list_job_t *j);

/* ---- GetCreatorStats / BatchGetCreatorStats (read) ---- */

typedef struct st_creator_stats_job_t {
    yw_store_job_t job;
    void *data;
    /* in */
    char *const *creator_ids;
    size_t n_ids;
    int32_t window_days; /* 1..366 */
    int64_t end_day;     /* day number */
    /* out */
    Yaowei__Creator__V1__CreatorStats *stats; /* n_ids, in request order; creator_id,
                                                 start_day, end_day point into the job and
                                                 the inputs */
    size_t *missing; /* indexes of unknown ids (NOT_FOUND), n_missing of them */
    size_t n_missing;
    char start_day[CREATOR_DAY_BUFSZ];
    char end_day_str[CREATOR_DAY_BUFSZ];
} creator_stats_job_t;

/**
 * Computes each creator's CreatorStats over [end_day - window_days + 1, end_day]
 * (views_last_7d: [end_day - 6, end_day]; views_prev_7d: the 7 days before, whatever
 * the window). NOT_FOUND when any id is unknown; `missing` then lists all of them.
 */
grpc_status_code creator_store_stats(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_stats_job_init(creator_stats_job_t *j,
                            void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_stats_job_dispose(creator_stats_job_t *j);

/* ---- one creator, for the cache (reads, queued as a write: on the primary) ---- */

typedef struct st_creator_get_job_t {
    yw_store_job_t job;
    void *data;
    const char *creator_id;   /* in */
    creator_record_t *result; /* out: NULL when it does not exist */
} creator_get_job_t;

/** Reads creator `creator_id` (as committed now: queue it as a write, on the primary). */
grpc_status_code creator_store_get(yw_store_conn_t *conn, yw_store_job_t *job);
void creator_get_job_init(creator_get_job_t *j,
                          void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_get_job_dispose(creator_get_job_t *j);

/* ---- start-up ---- */

typedef struct st_creator_load_t {
    /** Takes ownership of `rec` (also when failing). Returns 0, or a negative errno to stop. */
    int (*each)(creator_record_t *rec, void *ctx);
    void *ctx;
    char errmsg[256];
} creator_load_t;

/**
 * For yw_store_run_sync(store, creator_store_load_all, &load, ...): hands every creator
 * to load->each, in creator_id order. On failure load->errmsg says why.
 */
grpc_status_code creator_store_load_all(yw_store_conn_t *conn, void *arg);

/* ---- every creator, for the cache (reads, queued as a write: on the primary) ---- */

typedef struct st_creator_load_job_t {
    yw_store_job_t job;
    void *data;
    creator_cache_t fresh; /* out: every creator; initialized by the job's init */
} creator_load_job_t;

/** Reads every creator into `fresh` (creator_store_load_all as a job). */
grpc_status_code creator_store_load_job(yw_store_conn_t *conn, yw_store_job_t *job);
/** Returns 0 or -ENOMEM. */
int creator_load_job_init(creator_load_job_t *j,
                          void (*done)(yw_store_job_t *job, grpc_status_code status));
void creator_load_job_dispose(creator_load_job_t *j);

#ifdef __cplusplus
}
#endif
#endif
