/*
 * store_internal.h — the private half of the store (store.h), shared by the files that
 * implement it:
 *
 *   store.c          open and close: the config checked, threads started and joined, the
 *                    store freed on the loop
 *   store_open.c     the database file at open: refused when foreign, corrupt or newer;
 *                    WAL; migrations; foreign keys; the readers' connections
 *   store_queue.c    jobs in and out: queued from the loop, finished jobs handed back to
 *                    it and their `done` run there
 *   store_writer.c   the writer thread's group commits, and yw_store_run_sync()
 *   store_readers.c  the reader threads
 *   store_sql.c      SQLite on one connection: the statement cache, transactions,
 *                    result codes to gRPC statuses, the helpers of a job's work, and
 *                    the SQLite half of sql.h (sql.c dispatches to it by backend)
 *   store_pg.c       PostgreSQL (yw_store_config_t.pg_uri): open, the pool and listener
 *   store_pg_sql.c   threads, one connection's statements; store_pg_internal.h
 *
 * Nothing outside these files (and sql.c, sql_internal.h) includes it.
 *
 * Threads and locks:
 * - `mu` guards the three job queues (writes, reads, done) and the shutdown flags.
 *   `writer_cv` wakes the writer (a write was queued, close was called, a reader
 *   exited); `reader_cv` wakes the readers.
 * - `writer_mu` gives one thread at a time the writer connection: the writer thread
 *   holds it for a whole group, yw_store_run_sync() for its transaction. SQLite's own
 *   mutexes would not be enough: two threads must not interleave two transactions on
 *   one connection. Each reader connection is used by its own thread only, so all
 *   connections are opened SQLITE_OPEN_NOMUTEX.
 * - Finished jobs go to the done queue and the loop is woken with `async`; the loop runs
 *   their `done` in the order they finished.
 *
 * Shutdown: yw_store_close() sets `closing` (new jobs get -ESHUTDOWN) and wakes every
 * thread. Readers drain the read queue, close their connections and exit; the writer
 * drains the write queue, waits for the readers, closes its connection last (so that
 * SQLite checkpoints the WAL and removes it) and sets `writer_exited`. The loop, seeing
 * `writer_exited` with an empty done queue, joins the threads and closes `async`; its
 * close callback frees the store and calls `closed`. No disk work runs on the loop.
 */
#ifndef YW_STORE_INTERNAL_H
#define YW_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/store.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    YW__DEFAULT_READERS = 2,
    YW__MAX_READERS = 64,
    YW__DEFAULT_MAX_GROUP = 1024,
    YW__BUSY_TIMEOUT_MS = 5000,
};

/**
 * One slot of a connection's statement cache: open addressing keyed by `sql`. SQLite:
 * `stmt` is the prepared statement, `sql_st` its sql.h wrapper (made at the first
 * yw_sql_prepare(); owned by the slot). PostgreSQL: `stmt` is NULL, `sql_st` the
 * statement (store_pg_sql.c).
 */
typedef struct st_yw__stmt_slot_t {
    const char *sql;
    sqlite3_stmt *stmt;
    struct st_yw_sql_t *sql_st;
} yw__stmt_slot_t;

/**
 * A connection of the store. `backend` is the first member: sql.c dispatches on it. A
 * PostgreSQL connection (store_pg_internal.h) embeds this struct as its first member,
 * with `db` NULL (so yw_store_db() returns NULL) and the cache holding its statements.
 */
struct st_yw_store_conn_t {
    int backend; /* yw_sql_backend_t (sql.h) */
    sqlite3 *db;
    /** Power-of-two table, at most half full; NULL until the first statement. */
    yw__stmt_slot_t *slots;
    size_t cap;
    size_t count;
    /**
     * sql.h's last error on this connection (cleared by yw_sql_prepare()): SQLite's
     * extended result code (SQLite) or the status (PostgreSQL), and the message.
     */
    int sql_rc;
    char sql_msg[224];
};

/** A FIFO of jobs linked through `yw_next`. */
typedef struct st_yw__queue_t {
    yw_store_job_t *head;
    yw_store_job_t *tail;
} yw__queue_t;

struct st_yw_store_t {
    uv_loop_t *loop;
    uv_async_t async;
    int schema_version;
    int max_group;

    pthread_mutex_t mu;
    pthread_cond_t writer_cv;
    pthread_cond_t reader_cv;
    yw__queue_t writes;
    yw__queue_t reads;
    yw__queue_t done;
    bool closing;
    bool writer_exited;
    int readers_alive;

    pthread_mutex_t writer_mu;
    yw_store_conn_t writer;
    pthread_t writer_thread;
    bool writer_started;

    int n_readers;
    yw_store_conn_t *readers;
    pthread_t *reader_threads;
    int readers_started;

    void (*closed)(void *arg);
    void *closed_arg;

    void (*on_commit)(void *arg, uint64_t duration_ns, size_t n_jobs, int committed);
    void *on_commit_arg;
    void (*on_full)(void *arg);
    void *on_full_arg;
    int (*ship)(void *arg, const void *changeset, size_t len, char *err, size_t errlen);
    void *ship_arg;

    /**
     * PostgreSQL (store_pg_internal.h), NULL for SQLite. Its pool threads take jobs from
     * `writes` (every job when there is no read pool) and `reads`, under `mu`, waking on
     * writer_cv and reader_cv; the last of its threads out sets `writer_exited`.
     */
    struct st_yw__pg_t *pg;
    bool pg_read_pool; /* PostgreSQL with pg_read_uri: reads go to `reads` */
};

/** A reader thread's argument: its store and its own connection. */
typedef struct st_yw__reader_arg_t {
    yw_store_t *store;
    yw_store_conn_t *conn;
} yw__reader_arg_t;

/** The primary result code is the low byte of an extended one. */
static inline int yw__store_primary(int rc)
{
    return rc & 0xff;
}

/* ---- store.c ---- */

/** Joins the threads (they have finished) and closes the async handle. */
void yw__store_finish_close(yw_store_t *store);

/** Frees the store: threads joined (or never started), async handle closed (or never open). */
void yw__store_free(yw_store_t *store);

/* ---- store_pg.c (PostgreSQL; store_pg_internal.h has the rest) ---- */

/** yw_store_open() with cfg->pg_uri set. */
int yw__pg_store_open(uv_loop_t *loop, const yw_store_config_t *cfg, yw_store_t **out, char *err,
                      size_t errlen);

/** Frees the store's PostgreSQL half (connections, notifications, channels). */
void yw__pg_free(yw_store_t *store);

/** Joins the pool and the listener (loop; they have exited). */
void yw__pg_join(yw_store_t *store);

/** Wakes the listener thread (close, a new channel). */
void yw__pg_wake(yw_store_t *store);

/** Runs the listen callbacks of the notifications received (loop). */
void yw__pg_deliver(yw_store_t *store);

/** yw_store_listen(), yw_store_available() and yw_store_run_sync() on PostgreSQL. */
int yw__pg_listen(yw_store_t *store, const char *channel,
                  void (*cb)(void *arg, const char *payload), void *arg);
void yw__pg_unlisten(yw_store_t *store, const char *channel);
int yw__pg_available(const yw_store_t *store);
grpc_status_code yw__pg_run_sync(yw_store_t *store,
                                 grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg),
                                 void *arg, char *err, size_t errlen);

/* ---- store_open.c ---- */

/** Opens the writer connection: checked, configured, migrated. */
int yw__store_open_writer(yw_store_t *store, const yw_store_config_t *cfg, char *err,
                          size_t errlen);

/** Opens a reader's read-only connection to `path`. */
int yw__store_open_reader(yw_store_conn_t *conn, const char *path, char *err, size_t errlen);

/* ---- store_queue.c ---- */

/** Hands finished jobs (`first` to `last`, linked through yw_next) to the loop. */
void yw__store_post_done(yw_store_t *store, yw_store_job_t *first, yw_store_job_t *last);

/** The async handle's callback: runs the finished jobs' `done`, then closes if it is time. */
void yw__store_on_async(uv_async_t *async);

/* ---- store_writer.c ---- */

/** The writer thread (its argument is the store). */
void *yw__store_writer_main(void *arg);

/* ---- store_readers.c ---- */

/** A reader thread (its argument is a yw__reader_arg_t, which it frees). */
void *yw__store_reader_main(void *arg);

/* ---- store_sql.c ---- */

/** The statements that open and end transactions (cached by pointer: use these). */
extern const char yw__store_sql_begin_immediate[];

/**
 * Writing thread, right after BEGIN: starts recording the transaction's changes when
 * the store ships them (*session NULL otherwise). Returns SQLITE_OK or an error code.
 */
int yw__store_ship_begin(yw_store_t *store, sqlite3_session **session);

/**
 * Writing thread, right before COMMIT: ships the changes recorded (if any) and ends the
 * recording. Returns 0, or non-zero with `msg` when shipping failed (roll back).
 */
int yw__store_ship_end(yw_store_t *store, sqlite3_session *session, char *msg, size_t msglen);
extern const char yw__store_sql_begin[];
extern const char yw__store_sql_commit[];
extern const char yw__store_sql_rollback[];
extern const char yw__store_sql_savepoint[];
extern const char yw__store_sql_release[];
extern const char yw__store_sql_rollback_to[];

/** Finalizes every cached statement and closes the connection; safe to call twice. */
void yw__store_conn_close(yw_store_conn_t *conn);

/**
 * Resets every statement of `db` left mid-step by a job: an unfinished SELECT would pin
 * its read snapshot and keep the transaction (and WAL checkpoints) from moving on.
 */
void yw__store_reset_busy(sqlite3 *db);

/** Runs one cached statement that returns no rows (or whose rows are ignored). */
int yw__store_exec(yw_store_conn_t *conn, const char *sql);

/** Ends whatever transaction is open on `conn`, if any. */
void yw__store_rollback(yw_store_conn_t *conn);

/** A job's status for a failed SQLite call: never OK, even for an odd `rc`. */
grpc_status_code yw__store_fail_status(int rc);

/** The cache slot of `sql` on `conn`, or NULL when it has none. */
yw__stmt_slot_t *yw__stmt_find(yw_store_conn_t *conn, const char *sql);

/** A new cache slot for `sql` (which has none), or NULL when out of memory. */
yw__stmt_slot_t *yw__stmt_insert(yw_store_conn_t *conn, const char *sql);

#ifdef __cplusplus
}
#endif
#endif
