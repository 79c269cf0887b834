/*
 * store.h — the store every service uses: jobs run off the loop, against SQLite (one
 * database file in WAL mode, the default) or PostgreSQL (a libpq URI, for services that
 * run as several stateless replicas over one database); versioned schema migrations at
 * open; cached prepared statements. A job's SQL written with sql.h runs on both; the
 * SQLite helpers at the end of this file are for SQLite-only stores (attribution's).
 *
 * PostgreSQL (yw_store_config_t.pg_uri): a pool of connections, each with its own
 * thread, takes the jobs in order; each job is one transaction (writes READ COMMITTED,
 * reads REPEATABLE READ READ ONLY: one snapshot), and its `done` runs on the loop after
 * its COMMIT answered. PostgreSQL commits concurrent transactions in groups itself. A
 * statement that does not answer within pg_timeout_ms fails its job UNAVAILABLE and its
 * connection is dropped; a connection that is lost is opened again for the next job
 * (the jobs fail UNAVAILABLE, fast, while it cannot be). A listener connection keeps
 * LISTEN open for yw_store_listen() and tells yw_store_available() whether the
 * database answers. Migrations run under an advisory lock, so processes that start
 * together migrate once; their versions are kept per `pg_schema` in yw_schema_versions.
 * With pg_read_uri, read jobs go to a second pool of the same size on that URI (a
 * standby); without it the one pool takes reads and writes from one FIFO queue. How the
 * threads, the listener and close work: store_pg.c; statements: sql.h.
 *
 * SQLite:
 *
 * Writes go to one writer thread that commits them in groups: every job queued while
 * the previous commit ran goes into the next transaction, each inside its own SAVEPOINT
 * so that a job that fails is rolled back alone. A job's `done` runs on the loop only
 * after its transaction is durable (synchronous=FULL), so a reply sent from `done`
 * survives kill -9. Reads run on a small pool of reader threads, each with its own
 * read-only connection (WAL lets them run beside the writer).
 *
 * Rule, stated once: if yw_store_write() or yw_store_read() returns an error, `done`
 * is never called; otherwise it is called exactly once, on the loop.
 */
#ifndef YW_STORE_H
#define YW_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>
#include <sqlite3.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_store_t yw_store_t;
typedef struct st_yw_store_conn_t yw_store_conn_t;

/** One step of the schema. Versions start at 1 and increase by one. */
typedef struct st_yw_migration_t {
    int version;
    /**
     * One or more SQL statements, run in one transaction with foreign keys off (so that
     * a table can be rebuilt); the migration fails if it leaves a foreign key broken.
     */
    const char *sql;
} yw_migration_t;

/**
 * A unit of work for a store thread; embed it in your own struct. The caller owns the
 * memory: it must stay valid from yw_store_write()/yw_store_read() until `done` returns,
 * after which the store no longer touches it. `errmsg` is cleared when the job is queued.
 * A read job runs inside one read transaction, so all its statements see one snapshot.
 */
typedef struct st_yw_store_job_t {
    /**
     * Runs on a store thread. Returns GRPC_STATUS_OK, or the status to report with a
     * message written to `job->errmsg` (name the field and the rule). A write job that
     * fails is rolled back alone.
     */
    grpc_status_code (*work)(yw_store_conn_t *conn, struct st_yw_store_job_t *job);
    /** Runs on the loop with work's status, or the commit's when the commit failed. */
    void (*done)(struct st_yw_store_job_t *job, grpc_status_code status);
    char errmsg[256];
    /* private */
    struct st_yw_store_job_t *yw_next;
    grpc_status_code yw_status;
    yw_store_t *yw_store;
    int yw_read; /* PostgreSQL: a read job in the one queue of the pool */
} yw_store_job_t;

typedef struct st_yw_store_config_t {
    /** Database file; created when missing. ":memory:" is not supported (readers). */
    const char *path;
    const yw_migration_t *migrations;
    size_t n_migrations;
    /** Reader threads; 0 means 2. */
    int readers;
    /** Most jobs in one group commit; 0 means 1024. */
    int max_group;
    /**
     * Optional (NULL: none): called on the writer thread after each group commit with
     * the time from BEGIN to the end of COMMIT (fsync included), the number of jobs in
     * the group, and whether its last transaction committed. It must be quick and
     * thread-safe (metrics updates, metrics.h); it must not touch the loop's state.
     */
    void (*on_commit)(void *arg, uint64_t duration_ns, size_t n_jobs, int committed);
    void *on_commit_arg;
    /**
     * Optional (NULL: none): called on the writer thread when a write finds the disk full
     * (SQLITE_FULL, or an I/O error whose errno is ENOSPC or EDQUOT); such a job fails
     * RESOURCE_EXHAUSTED whatever status its work chose. Quick and thread-safe
     * (disk.h's yw_disk_report_full()).
     */
    void (*on_full)(void *arg);
    void *on_full_arg;
    /**
     * Optional (NULL: none), for a database copied elsewhere before anything written is
     * acknowledged (a cluster node's partition): called on the writing thread (the
     * writer, or yw_store_run_sync()'s caller) with the changes of each transaction, a
     * SQLite session changeset (sqlite3changeset_apply() replays it), before its COMMIT;
     * not called for a transaction that changed no row. Non-zero rolls the transaction
     * back: its jobs fail UNAVAILABLE with `err`. Every table needs a primary key. A
     * shipped database is not fsynced (PRAGMA synchronous=OFF): the shipped copy is the
     * durable one, the file a view to rebuild from it after a crash.
     */
    int (*ship)(void *arg, const void *changeset, size_t len, char *err, size_t errlen);
    void *ship_arg;
    /**
     * PostgreSQL instead of SQLite: a libpq connection URI or conninfo string
     * ("postgresql://yaowei@db:5432/yaowei?sslmode=require"; every libpq parameter is
     * allowed: several hosts, target_session_attrs, ...). NULL or "" means SQLite at
     * `path`. With it, `path`, `migrations`, `readers`, `max_group`, `on_commit`,
     * `on_full` and `ship` are ignored.
     */
    const char *pg_uri;
    /** PostgreSQL: where read jobs go (a standby); NULL or "" means pg_uri. */
    const char *pg_read_uri;
    /** PostgreSQL: connections (each with its thread) per pool; 0 means 4. Reads have a
     * pool of their own when pg_read_uri is set. */
    int pg_pool;
    /**
     * PostgreSQL: the schema's migrations (its DDL is not SQLite's). Each runs with the
     * simple query protocol (several statements allowed) in its own transaction with the
     * bump of its version; foreign keys stay on (declare them DEFERRABLE if a migration
     * must break them for a moment).
     */
    const yw_migration_t *pg_migrations;
    size_t n_pg_migrations;
    /**
     * PostgreSQL: the name the schema's version is kept under (a database may hold
     * several services' tables: theirs must not clash), e.g. "creator_profile".
     * Required with pg_uri.
     */
    const char *pg_schema;
    /**
     * PostgreSQL: the longest a statement or a connection attempt may take; 0: 5000 ms.
     * The store's sessions also get statement_timeout = this + 1 s (unless the URI sets
     * libpq's `options`), so that a statement given up does not run on holding locks.
     * Migrations are bounded by pg_open_wait_ms instead.
     */
    int pg_timeout_ms;
    /** PostgreSQL: how long yw_store_open() keeps trying to reach the database; 0: 30 s. */
    int pg_open_wait_ms;
} yw_store_config_t;

/** Whether the store is PostgreSQL's (any thread). */
int yw_store_is_postgres(const yw_store_t *store);

/**
 * Whether the database answered the last time it was asked (any thread). SQLite: always
 * 1. PostgreSQL: 0 from the moment a connection is found lost or a statement does not
 * answer, until a connection to it works again (the listener tries every few hundred
 * milliseconds). It is the primary's (pg_uri): the read pool's failures on pg_read_uri
 * fail their jobs UNAVAILABLE but leave it alone.
 */
int yw_store_available(const yw_store_t *store);

/**
 * Calls `cb` on the loop with the payload of each yw_sql_job_notify() on `channel`, by any
 * process on the database, once its transaction committed (this process's own included),
 * and with a NULL payload each time LISTEN comes into force on the channel: the first
 * time (within a few hundred milliseconds of this call), and again after every
 * reconnection of the listener. A NULL payload means "what changed before now may have
 * gone unheard": a service reads again what it caches (its start-up load may be older
 * than the LISTEN). The payload is valid during the call only. Loop thread; at most 8
 * channels per store. SQLite: `cb` is never called (one process: its done callbacks know
 * every change). Returns 0 or a negative errno.
 */
int yw_store_listen(yw_store_t *store, const char *channel,
                    void (*cb)(void *arg, const char *payload), void *arg);

/**
 * Stops the callbacks of `channel`: after this returns, its `cb` is never called again
 * and its `arg` may be freed. Loop thread (a service's fini). SQLite: nothing to do.
 */
void yw_store_unlisten(yw_store_t *store, const char *channel);

/**
 * Opens the database file of `cfg` (path and migrations; the rest is ignored) as
 * yw_store_open() would, checked, configured and migrated, as one plain connection of
 * the calling thread: no threads, no loop (a copy being built from shipped changes).
 * Close it with sqlite3_close(). Returns 0 or a negative errno with `err`.
 */
int yw_store_open_file(const yw_store_config_t *cfg, sqlite3 **out, char *err, size_t errlen);

/**
 * Applies a changeset made by a store's ship function to `db` (a copy being built, in
 * the order the changesets were shipped): any conflict means the copy is not a copy
 * and fails the whole changeset. Returns 0 or -EPROTO/-EIO with `err`.
 */
int yw_store_apply_changeset(sqlite3 *db, const void *changeset, size_t len, char *err,
                             size_t errlen);

/**
 * Opens (creating or migrating) the database and starts the writer and reader
 * threads. Refuses a file that is not a SQLite database, is corrupt, or has a schema
 * version newer than the migrations know, and leaves such a file untouched. Returns 0
 * or a negative errno with a message in `err`. Call on the loop thread: `done` callbacks
 * run there, and the store keeps the loop alive until yw_store_close() completes.
 *
 * PostgreSQL: connects (trying again with backoff, each failure logged, until
 * pg_open_wait_ms: then -ETIMEDOUT, the message naming the URI without its password),
 * migrates, starts the pool and the listener. -ENOTSUP when the schema's version is
 * newer than pg_migrations know (the message names both), -EINVAL for a bad config or a
 * migration that failed, -EIO when the database went away while migrating. Blocks the
 * calling thread meanwhile: call it before serving.
 */
int yw_store_open(uv_loop_t *loop, const yw_store_config_t *cfg, yw_store_t **out, char *err,
                  size_t errlen);

/** Queues a write job for the next group commit. -ESHUTDOWN after yw_store_close(). */
int yw_store_write(yw_store_t *store, yw_store_job_t *job);

/** Queues a read job on a reader thread. -ESHUTDOWN after yw_store_close(). */
int yw_store_read(yw_store_t *store, yw_store_job_t *job);

/**
 * Runs `fn` now, on the calling thread, with the writer's connection inside a
 * transaction. For start-up (loading caches) before any job is queued; never on a
 * serving loop. Returns fn's status (the transaction commits only on GRPC_STATUS_OK).
 * PostgreSQL: a connection of its own, opened for the call and closed after it, one
 * READ COMMITTED transaction; UNAVAILABLE when the database cannot be reached.
 */
grpc_status_code yw_store_run_sync(yw_store_t *store,
                                   grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg),
                                   void *arg, char *err, size_t errlen);

/**
 * Finishes every queued job (their `done` callbacks run on the loop), stops the
 * threads, closes the database and frees the store. (PostgreSQL: queued jobs still run,
 * or fail UNAVAILABLE if the database is away; closing waits at most about
 * pg_timeout_ms for a statement or a connection attempt under way.) Call on the loop, once (a
 * second call is ignored); the loop must keep running until `closed` is called. `closed` (may be
 * NULL) runs on the loop after the store has been freed.
 */
void yw_store_close(yw_store_t *store, void (*closed)(void *arg), void *arg);

/* ---- SQLite only (attribution's stores): sql.h is the portable way ---------------- */

/** The connection's sqlite3 handle (NULL on a PostgreSQL connection). */
sqlite3 *yw_store_db(yw_store_conn_t *conn);

/**
 * A prepared statement for `sql`, cached on this connection (keyed by the pointer, so
 * pass string literals), reset and with bindings cleared. NULL on a prepare error
 * (sqlite3_errmsg(yw_store_db(conn)) tells why).
 */
sqlite3_stmt *yw_store_stmt(yw_store_conn_t *conn, const char *sql);

/**
 * The gRPC status for an SQLite result code (primary or extended): SQLITE_OK/ROW/DONE ->
 * OK, SQLITE_FULL -> RESOURCE_EXHAUSTED, SQLITE_READONLY/BUSY/IOERR/CANTOPEN ->
 * UNAVAILABLE, SQLITE_CONSTRAINT -> ALREADY_EXISTS, others -> INTERNAL. (The writer also
 * fails a job that found the disk full through an I/O error RESOURCE_EXHAUSTED:
 * yw_store_config_t.on_full.)
 */
grpc_status_code yw_store_status(int sqlite_rc);

/* ---- helpers for a job's work ---------------------------------------------------- */

/**
 * Reports a failed SQLite call: writes "`what`: <SQLite's message on `conn`>" into `msg`
 * (`len` bytes) and returns its status, yw_store_status(rc), except that an `rc` of
 * SQLITE_OK, ROW or DONE (a statement that did not do what was expected of it) gives
 * INTERNAL: a failure never reports OK.
 */
grpc_status_code yw_store_fail(yw_store_conn_t *conn, int rc, const char *what, char *msg,
                               size_t len);

/** yw_store_fail() into the job's errmsg. */
grpc_status_code yw_store_job_fail(yw_store_conn_t *conn, yw_store_job_t *job, int rc,
                                   const char *what);

/** Formats the job's errmsg and returns `code` (for failures that are not SQLite's). */
grpc_status_code yw_store_job_failf(yw_store_job_t *job, grpc_status_code code, const char *fmt,
                                    ...) __attribute__((format(printf, 3, 4)));

/**
 * yw_store_stmt(), with "prepare: <SQLite's message>" in `msg` (`len` bytes) when it
 * fails (a prepare failure is an INTERNAL error: the SQL is the program's).
 */
sqlite3_stmt *yw_store_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len);

/**
 * yw_store_prepare() into the job's errmsg; on failure also sets `*code` (when not NULL)
 * to GRPC_STATUS_INTERNAL, the status to return.
 */
sqlite3_stmt *yw_store_job_stmt(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                                grpc_status_code *code);

/**
 * Resets a cached statement after use and clears its bindings. Ignores reset's result:
 * it repeats the last step's error, which the caller has reported already.
 */
void yw_store_stmt_done(sqlite3_stmt *st);

/**
 * Binds the NUL-terminated `s` (NULL binds "") to parameter `i`, without a copy: `s`
 * must stay valid until the statement is reset. Returns SQLite's result code.
 */
int yw_store_bind_text(sqlite3_stmt *st, int i, const char *s);

/**
 * The text of column `i` of the current row, never NULL (NULL reads as ""), and its
 * length in bytes in `*len` (`len` may be NULL). Valid until the next step or reset.
 */
const char *yw_store_column_text(sqlite3_stmt *st, int i, size_t *len);

/**
 * Binds parameters ?1, ?2, ... in order: the first failure sticks in `rc` and the binds
 * after it do nothing, so a statement's binds are a list followed by one check. Start
 * one with YW_STORE_BINDER(st).
 */
typedef struct st_yw_store_binder_t {
    sqlite3_stmt *st;
    int rc; /* SQLITE_OK, or the first bind's failure */
    int n;  /* parameters bound so far */
} yw_store_binder_t;

/** A binder for `st` whose next parameter is ?1. */
#define YW_STORE_BINDER(st) ((yw_store_binder_t){(st), SQLITE_OK, 0})

/** Binds the next parameter to `v`. */
void yw_store_bind_next_i64(yw_store_binder_t *b, int64_t v);

/** Binds the next parameter to `v`. */
void yw_store_bind_next_f64(yw_store_binder_t *b, double v);

/** Binds the next parameter to `s` as yw_store_bind_text() does. */
void yw_store_bind_next_text(yw_store_binder_t *b, const char *s);

/** The schema version of the open database (PostgreSQL: of pg_schema). */
int yw_store_schema_version(const yw_store_t *store);

#ifdef __cplusplus
}
#endif
#endif
