/*
 * store.c — SQLite helpers: open and migrate, one writer thread with group commit, a
 * pool of reader threads, per-connection statement caches, completions on the loop.
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
#include "common/store.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/errmsg.h"

enum {
    YW__DEFAULT_READERS = 2,
    YW__MAX_READERS = 64,
    YW__DEFAULT_MAX_GROUP = 1024,
    YW__BUSY_TIMEOUT_MS = 5000,
};

/** One slot of a connection's statement cache: open addressing keyed by `sql`. */
typedef struct st_yw__stmt_slot_t {
    const char *sql;
    sqlite3_stmt *stmt;
} yw__stmt_slot_t;

struct st_yw_store_conn_t {
    sqlite3 *db;
    /** Power-of-two table, at most half full; NULL until the first statement. */
    yw__stmt_slot_t *slots;
    size_t cap;
    size_t count;
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
};

/** A reader thread's argument: its store and its own connection. */
typedef struct st_yw__reader_arg_t {
    yw_store_t *store;
    yw_store_conn_t *conn;
} yw__reader_arg_t;

/* ---- small helpers ---------------------------------------------------------------- */

static void yw__queue_push(yw__queue_t *q, yw_store_job_t *job)
{
    job->yw_next = NULL;
    if (q->tail != NULL) {
        q->tail->yw_next = job;
    } else {
        q->head = job;
    }
    q->tail = job;
}

/** Appends the list `first`..`last` (linked through yw_next) to `q`. */
static void yw__queue_append(yw__queue_t *q, yw_store_job_t *first, yw_store_job_t *last)
{
    last->yw_next = NULL;
    if (q->tail != NULL) {
        q->tail->yw_next = first;
    } else {
        q->head = first;
    }
    q->tail = last;
}

/** The primary result code is the low byte of an extended one. */
static int yw__primary(int rc)
{
    return rc & 0xff;
}

/**
 * A negative errno for a failed SQLite call on `db` (which may be NULL). The OS error is
 * only trusted for the codes that come from the OS; SQLite keeps the last one around.
 */
static int yw__errno(sqlite3 *db, int rc)
{
    int primary = yw__primary(rc);
    if (db != NULL && (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR)) {
        int sys = sqlite3_system_errno(db);
        if (sys > 0) {
            return -sys;
        }
    }
    switch (primary) {
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_NOTADB:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* ---- statements ------------------------------------------------------------------- */

static size_t yw__slot_index(const char *sql, size_t cap)
{
    /* Fibonacci hashing of the pointer; string literals are at least 1-aligned. */
    uint64_t h = (uint64_t)(uintptr_t)sql * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (cap - 1);
}

/** Doubles the table (or creates it). Returns false when out of memory. */
static bool yw__stmt_grow(yw_store_conn_t *conn)
{
    size_t cap = conn->cap == 0 ? 32 : conn->cap * 2;
    yw__stmt_slot_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < conn->cap; i++) {
        if (conn->slots[i].sql == NULL) {
            continue;
        }
        size_t j = yw__slot_index(conn->slots[i].sql, cap);
        while (slots[j].sql != NULL) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = conn->slots[i];
    }
    free(conn->slots);
    conn->slots = slots;
    conn->cap = cap;
    return true;
}

sqlite3_stmt *yw_store_stmt(yw_store_conn_t *conn, const char *sql)
{
    if (conn->cap != 0) {
        size_t i = yw__slot_index(sql, conn->cap);
        while (conn->slots[i].sql != NULL) {
            if (conn->slots[i].sql == sql) {
                sqlite3_stmt *stmt = conn->slots[i].stmt;
                /* reset returns the error of the last step, which its caller saw. */
                (void)sqlite3_reset(stmt);
                (void)sqlite3_clear_bindings(stmt);
                return stmt;
            }
            i = (i + 1) & (conn->cap - 1);
        }
    }
    if ((conn->count + 1) * 2 > conn->cap && !yw__stmt_grow(conn)) {
        return NULL;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v3(conn->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK || stmt == NULL) {
        /* stmt is NULL for text with no statement (only spaces or comments). */
        sqlite3_finalize(stmt);
        return NULL;
    }
    size_t i = yw__slot_index(sql, conn->cap);
    while (conn->slots[i].sql != NULL) {
        i = (i + 1) & (conn->cap - 1);
    }
    conn->slots[i].sql = sql;
    conn->slots[i].stmt = stmt;
    conn->count++;
    return stmt;
}

sqlite3 *yw_store_db(yw_store_conn_t *conn)
{
    return conn->db;
}

/** Finalizes every cached statement and closes the connection; safe to call twice. */
static void yw__conn_close(yw_store_conn_t *conn)
{
    for (size_t i = 0; i < conn->cap; i++) {
        if (conn->slots[i].stmt != NULL) {
            sqlite3_finalize(conn->slots[i].stmt);
        }
    }
    free(conn->slots);
    conn->slots = NULL;
    conn->cap = 0;
    conn->count = 0;
    if (conn->db != NULL) {
        /*
         * With every statement of ours finalized this cannot be SQLITE_BUSY; _v2 still
         * closes cleanly (as a zombie) if a job leaked one of its own. The last
         * connection to close checkpoints the WAL and deletes it.
         */
        (void)sqlite3_close_v2(conn->db);
        conn->db = NULL;
    }
}

/**
 * Resets every statement of `db` left mid-step by a job: an unfinished SELECT would pin
 * its read snapshot and keep the transaction (and WAL checkpoints) from moving on.
 */
static void yw__reset_busy(sqlite3 *db)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s != NULL; s = sqlite3_next_stmt(db, s)) {
        if (sqlite3_stmt_busy(s)) {
            (void)sqlite3_reset(s);
        }
    }
}

/** Runs one cached statement that returns no rows (or whose rows are ignored). */
static int yw__exec(yw_store_conn_t *conn, const char *sql)
{
    sqlite3_stmt *stmt = yw_store_stmt(conn, sql);
    if (stmt == NULL) {
        int rc = sqlite3_errcode(conn->db);
        return rc != SQLITE_OK ? rc : SQLITE_NOMEM;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    /* reset keeps the step's error code and message on the connection. */
    (void)sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static const char yw__sql_begin_immediate[] = "BEGIN IMMEDIATE";
static const char yw__sql_begin[] = "BEGIN";
static const char yw__sql_commit[] = "COMMIT";
static const char yw__sql_rollback[] = "ROLLBACK";
static const char yw__sql_savepoint[] = "SAVEPOINT yw_job";
static const char yw__sql_release[] = "RELEASE yw_job";
static const char yw__sql_rollback_to[] = "ROLLBACK TO yw_job";

/** Ends whatever transaction is open on `conn`, if any. */
static void yw__rollback(yw_store_conn_t *conn)
{
    if (!sqlite3_get_autocommit(conn->db)) {
        /* On failure SQLite rolls back anyway when the connection next ends a txn. */
        (void)yw__exec(conn, yw__sql_rollback);
    }
}

/* ---- status ----------------------------------------------------------------------- */

grpc_status_code yw_store_status(int sqlite_rc)
{
    switch (yw__primary(sqlite_rc)) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return GRPC_STATUS_OK;
    case SQLITE_FULL:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return GRPC_STATUS_UNAVAILABLE;
    case SQLITE_CONSTRAINT:
        return GRPC_STATUS_ALREADY_EXISTS;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

/** A job's status for a failed SQLite call: never OK, even for an odd `rc`. */
static grpc_status_code yw__fail_status(int rc)
{
    grpc_status_code st = yw_store_status(rc);
    return st == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : st;
}

/* ---- helpers for a job's work ----------------------------------------------------- */

grpc_status_code yw_store_fail(yw_store_conn_t *conn, int rc, const char *what, char *msg,
                               size_t len)
{
    yw_errmsg_printf(msg, len, "%s: %s", what, sqlite3_errmsg(conn->db));
    return yw__fail_status(rc);
}

grpc_status_code yw_store_job_fail(yw_store_conn_t *conn, yw_store_job_t *job, int rc,
                                   const char *what)
{
    return yw_store_fail(conn, rc, what, job->errmsg, sizeof job->errmsg);
}

grpc_status_code yw_store_job_failf(yw_store_job_t *job, grpc_status_code code, const char *fmt,
                                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(job->errmsg, sizeof job->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

sqlite3_stmt *yw_store_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len)
{
    sqlite3_stmt *st = yw_store_stmt(conn, sql);
    if (st == NULL) {
        yw_errmsg_printf(msg, len, "prepare: %s", sqlite3_errmsg(conn->db));
    }
    return st;
}

sqlite3_stmt *yw_store_job_stmt(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                                grpc_status_code *code)
{
    sqlite3_stmt *st = yw_store_prepare(conn, sql, job->errmsg, sizeof job->errmsg);
    if (st == NULL && code != NULL) {
        *code = GRPC_STATUS_INTERNAL;
    }
    return st;
}

void yw_store_stmt_done(sqlite3_stmt *st)
{
    (void)sqlite3_reset(st);
    (void)sqlite3_clear_bindings(st);
}

int yw_store_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s != NULL ? s : "", -1, SQLITE_STATIC);
}

const char *yw_store_column_text(sqlite3_stmt *st, int i, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    if (len != NULL) {
        *len = t != NULL ? (size_t)sqlite3_column_bytes(st, i) : 0;
    }
    return t != NULL ? t : "";
}

void yw_store_bind_next_i64(yw_store_binder_t *b, int64_t v)
{
    if (b->rc == SQLITE_OK) {
        b->rc = sqlite3_bind_int64(b->st, ++b->n, v);
    }
}

void yw_store_bind_next_f64(yw_store_binder_t *b, double v)
{
    if (b->rc == SQLITE_OK) {
        b->rc = sqlite3_bind_double(b->st, ++b->n, v);
    }
}

void yw_store_bind_next_text(yw_store_binder_t *b, const char *s)
{
    if (b->rc == SQLITE_OK) {
        b->rc = yw_store_bind_text(b->st, ++b->n, s);
    }
}

/* ---- the writer ------------------------------------------------------------------- */

/*
 * Whether `rc` (on the writer's connection) means the disk is full: SQLITE_FULL, or an
 * I/O error (a -shm or WAL that could not grow, an fsync) whose errno says so.
 */
static bool yw__disk_full(sqlite3 *db, int rc)
{
    int primary = yw__primary(rc);
    int sys = primary == SQLITE_IOERR ? sqlite3_system_errno(db) : 0;
    return primary == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT;
}

/**
 * The status of a write that failed with `rc`: RESOURCE_EXHAUSTED when the disk is full
 * (told to on_full), else yw__fail_status().
 */
static grpc_status_code yw__write_fail(yw_store_t *store, int rc)
{
    if (!yw__disk_full(store->writer.db, rc)) {
        return yw__fail_status(rc);
    }
    if (store->on_full != NULL) {
        store->on_full(store->on_full_arg);
    }
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
}

/**
 * Marks every job from `first` up to (not including) `stop` that had succeeded as
 * failed with `st` and `msg`: their transaction did not commit.
 */
static void yw__fail_succeeded(yw_store_job_t *first, yw_store_job_t *stop, grpc_status_code st,
                               const char *what, const char *msg)
{
    for (yw_store_job_t *j = first; j != stop; j = j->yw_next) {
        if (j->yw_status == GRPC_STATUS_OK) {
            j->yw_status = st;
            yw_errmsg_printf(j->errmsg, sizeof j->errmsg, "%s: %s", what, msg);
        }
    }
}

/** Runs one job of a group inside its own savepoint; sets job->yw_status. */
static void yw__run_write_job(yw_store_t *store, yw_store_job_t *job)
{
    yw_store_conn_t *conn = &store->writer;
    job->errmsg[0] = '\0';
    int rc = yw__exec(conn, yw__sql_savepoint);
    if (rc != SQLITE_OK) {
        job->yw_status = yw__write_fail(store, rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "savepoint failed: %s",
                         sqlite3_errmsg(conn->db));
        return;
    }
    grpc_status_code st = job->work(conn, job);
    job->errmsg[sizeof job->errmsg - 1] = '\0';
    if (st != GRPC_STATUS_OK && yw__disk_full(conn->db, sqlite3_extended_errcode(conn->db))) {
        st = yw__write_fail(store, sqlite3_extended_errcode(conn->db)); /* whatever work said */
    }
    yw__reset_busy(conn->db);
    if (st == GRPC_STATUS_OK) {
        rc = yw__exec(conn, yw__sql_release);
        if (rc == SQLITE_OK) {
            job->yw_status = GRPC_STATUS_OK;
            return;
        }
        st = yw__write_fail(store, rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "release failed: %s",
                         sqlite3_errmsg(conn->db));
    } else if (job->errmsg[0] == '\0') {
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "write job failed with status %d",
                         (int)st);
    }
    job->yw_status = st;
    /* An I/O error may already have rolled the whole transaction back. */
    if (sqlite3_get_autocommit(conn->db)) {
        return;
    }
    if (yw__exec(conn, yw__sql_rollback_to) != SQLITE_OK ||
        yw__exec(conn, yw__sql_release) != SQLITE_OK) {
        /* The job's changes cannot be undone alone: undo the whole transaction. */
        (void)yw__exec(conn, yw__sql_rollback);
    }
}

/**
 * One group commit: BEGIN IMMEDIATE, every job in its savepoint, COMMIT. When SQLite
 * abandons the transaction midway (I/O error, disk full), the jobs that had succeeded
 * in it fail too and the rest of the group starts a new transaction.
 */
static int yw__run_group_tx(yw_store_t *store, yw_store_job_t *group)
{
    yw_store_conn_t *conn = &store->writer;
    yw_store_job_t *tx_first = NULL;
    char msg[200];

    for (yw_store_job_t *job = group; job != NULL; job = job->yw_next) {
        if (tx_first == NULL) {
            int rc = yw__exec(conn, yw__sql_begin_immediate);
            if (rc != SQLITE_OK) {
                /* Retrying per job would wait busy_timeout for each: fail the rest. */
                snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
                grpc_status_code st = yw__write_fail(store, rc);
                for (yw_store_job_t *j = job; j != NULL; j = j->yw_next) {
                    j->yw_status = st;
                    yw_errmsg_printf(j->errmsg, sizeof j->errmsg, "begin failed: %s", msg);
                }
                return 0;
            }
            tx_first = job;
        }
        yw__run_write_job(store, job);
        if (sqlite3_get_autocommit(conn->db)) {
            int rc = sqlite3_errcode(conn->db);
            snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
            grpc_status_code st =
                rc != SQLITE_OK ? yw__write_fail(store, rc) : GRPC_STATUS_UNAVAILABLE;
            yw__fail_succeeded(tx_first, job->yw_next, st, "transaction rolled back", msg);
            tx_first = NULL;
        }
    }
    if (tx_first == NULL) {
        return 0;
    }
    int rc = yw__exec(conn, yw__sql_commit);
    if (rc != SQLITE_OK) {
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
        yw__fail_succeeded(tx_first, NULL, yw__write_fail(store, rc), "commit failed", msg);
        yw__rollback(conn);
        return 0;
    }
    return 1;
}

/** A group commit, timed for the on_commit hook. */
static void yw__run_group(yw_store_t *store, yw_store_job_t *group, size_t n_jobs)
{
    uint64_t t0 = store->on_commit != NULL ? uv_hrtime() : 0;
    int committed = yw__run_group_tx(store, group);
    if (store->on_commit != NULL) {
        store->on_commit(store->on_commit_arg, uv_hrtime() - t0, n_jobs, committed);
    }
}

/** Hands finished jobs to the loop. */
static void yw__post_done(yw_store_t *store, yw_store_job_t *first, yw_store_job_t *last)
{
    pthread_mutex_lock(&store->mu);
    yw__queue_append(&store->done, first, last);
    pthread_mutex_unlock(&store->mu);
    /* Only fails for a handle that is not an async handle. */
    (void)uv_async_send(&store->async);
}

static void *yw__writer_main(void *arg)
{
    yw_store_t *store = arg;

    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (store->writes.head == NULL && !store->closing) {
            pthread_cond_wait(&store->writer_cv, &store->mu);
        }
        if (store->writes.head == NULL) {
            break; /* closing, and everything queued is done */
        }
        /* Everything queued so far, up to max_group, is the next group. */
        yw_store_job_t *first = store->writes.head, *last = first;
        int n = 1;
        while (last->yw_next != NULL && n < store->max_group) {
            last = last->yw_next;
            n++;
        }
        store->writes.head = last->yw_next;
        if (store->writes.head == NULL) {
            store->writes.tail = NULL;
        }
        last->yw_next = NULL;
        pthread_mutex_unlock(&store->mu);

        pthread_mutex_lock(&store->writer_mu);
        yw__run_group(store, first, (size_t)n);
        pthread_mutex_unlock(&store->writer_mu);
        yw__post_done(store, first, last);

        pthread_mutex_lock(&store->mu);
    }
    /* Close last, so that SQLite checkpoints and removes the WAL. */
    while (store->readers_alive > 0) {
        pthread_cond_wait(&store->writer_cv, &store->mu);
    }
    pthread_mutex_unlock(&store->mu);

    pthread_mutex_lock(&store->writer_mu);
    yw__conn_close(&store->writer);
    pthread_mutex_unlock(&store->writer_mu);

    pthread_mutex_lock(&store->mu);
    store->writer_exited = true;
    pthread_mutex_unlock(&store->mu);
    (void)uv_async_send(&store->async);
    return NULL;
}

/* ---- the readers ------------------------------------------------------------------ */

/** Runs a read job inside one read transaction, so that it sees one snapshot. */
static void yw__run_read_job(yw_store_conn_t *conn, yw_store_job_t *job)
{
    job->errmsg[0] = '\0';
    int rc = yw__exec(conn, yw__sql_begin);
    if (rc != SQLITE_OK) {
        job->yw_status = yw__fail_status(rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "begin failed: %s",
                         sqlite3_errmsg(conn->db));
        return;
    }
    grpc_status_code st = job->work(conn, job);
    job->errmsg[sizeof job->errmsg - 1] = '\0';
    yw__reset_busy(conn->db);
    if (st != GRPC_STATUS_OK && job->errmsg[0] == '\0') {
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "read job failed with status %d",
                         (int)st);
    }
    job->yw_status = st;
    yw__rollback(conn); /* nothing to keep: the connection is read-only */
}

static void *yw__reader_main(void *arg)
{
    yw__reader_arg_t *ra = arg;
    yw_store_t *store = ra->store;
    yw_store_conn_t *conn = ra->conn;
    free(ra);

    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (store->reads.head == NULL && !store->closing) {
            pthread_cond_wait(&store->reader_cv, &store->mu);
        }
        yw_store_job_t *job = store->reads.head;
        if (job == NULL) {
            break;
        }
        store->reads.head = job->yw_next;
        if (store->reads.head == NULL) {
            store->reads.tail = NULL;
        }
        job->yw_next = NULL;
        pthread_mutex_unlock(&store->mu);

        yw__run_read_job(conn, job);
        yw__post_done(store, job, job);

        pthread_mutex_lock(&store->mu);
    }
    pthread_mutex_unlock(&store->mu);

    yw__conn_close(conn);

    pthread_mutex_lock(&store->mu);
    store->readers_alive--;
    pthread_cond_broadcast(&store->writer_cv);
    pthread_mutex_unlock(&store->mu);
    return NULL;
}

/* ---- the loop side ---------------------------------------------------------------- */

static void yw__on_async_closed(uv_handle_t *handle)
{
    yw_store_t *store = handle->data;
    void (*closed)(void *) = store->closed;
    void *arg = store->closed_arg;

    pthread_mutex_destroy(&store->mu);
    pthread_mutex_destroy(&store->writer_mu);
    pthread_cond_destroy(&store->writer_cv);
    pthread_cond_destroy(&store->reader_cv);
    free(store->readers);
    free(store->reader_threads);
    free(store);
    if (closed != NULL) {
        closed(arg);
    }
}

/** Joins the threads (they have finished) and closes the async handle. */
static void yw__finish_close(yw_store_t *store)
{
    if (store->writer_started) {
        pthread_join(store->writer_thread, NULL);
        store->writer_started = false;
    }
    for (int i = 0; i < store->readers_started; i++) {
        pthread_join(store->reader_threads[i], NULL);
    }
    store->readers_started = 0;
    /* Connections not handed to a thread (a failed open) are closed here. */
    yw__conn_close(&store->writer);
    for (int i = 0; i < store->n_readers; i++) {
        yw__conn_close(&store->readers[i]);
    }
    uv_close((uv_handle_t *)&store->async, yw__on_async_closed);
}

static void yw__on_async(uv_async_t *async)
{
    yw_store_t *store = async->data;

    pthread_mutex_lock(&store->mu);
    yw_store_job_t *job = store->done.head;
    store->done.head = store->done.tail = NULL;
    /* Every job finished before the writer exited: this batch is then the last one. */
    bool exited = store->writer_exited;
    pthread_mutex_unlock(&store->mu);

    while (job != NULL) {
        yw_store_job_t *next = job->yw_next;
        job->yw_next = NULL;
        /* After done returns the job may be freed or reused by its owner. */
        job->done(job, job->yw_status);
        job = next;
    }
    if (exited) {
        yw__finish_close(store);
    }
}

/* ---- open ------------------------------------------------------------------------- */

/** Reads one integer from a one-row query such as "PRAGMA user_version". */
static int yw__query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return rc;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(stmt, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(stmt);
    return rc;
}

/** Fails with the path, what failed and SQLite's message. */
static int yw__open_fail(sqlite3 *db, int rc, const char *path, const char *what, char *err,
                         size_t errlen)
{
    int e = yw__errno(db, rc);
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (yw__primary(rc) == SQLITE_CANTOPEN && e != -ENOENT) {
        yw_errmsg_printf(err, errlen, "%s: %s: %s (%s)", path, what, msg, strerror(-e));
    } else {
        yw_errmsg_printf(err, errlen, "%s: %s: %s", path, what, msg);
    }
    return e;
}

/**
 * Refuses a file that is not a SQLite database or fails `PRAGMA quick_check`. Runs
 * before anything writes, so a foreign file is left exactly as it was.
 */
static int yw__check_integrity(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int version = 0;
    int rc = yw__query_int(db, "PRAGMA user_version", &version);
    if (yw__primary(rc) == SQLITE_NOTADB) {
        yw_errmsg_printf(err, errlen, "%s: file is not a database", path);
        return -EINVAL;
    }
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "cannot read the database", err, errlen);
    }
    sqlite3_stmt *stmt = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "quick_check", err, errlen);
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(stmt, 0);
        if (res == NULL || strcmp(res, "ok") != 0) {
            yw_errmsg_printf(err, errlen, "%s: database is corrupt: %s", path,
                             res ? res : "(null)");
            sqlite3_finalize(stmt);
            return -EIO;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        int e = yw__primary(rc) == SQLITE_CORRUPT || yw__primary(rc) == SQLITE_NOTADB
                    ? -EIO
                    : yw__errno(db, rc);
        yw_errmsg_printf(err, errlen, "%s: database is corrupt: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return e;
    }
    sqlite3_finalize(stmt);
    return 0;
}

/** WAL, full fsync on commit, and a busy timeout for the writer. */
static int yw__configure_writer(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int rc = sqlite3_busy_timeout(db, YW__BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "busy_timeout", err, errlen);
    }
    sqlite3_stmt *stmt = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return yw__open_fail(db, rc, path, "journal_mode=WAL", err, errlen);
    }
    const char *mode = (const char *)sqlite3_column_text(stmt, 0);
    if (mode == NULL || strcasecmp(mode, "wal") != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot use WAL (journal_mode is %s)", path,
                         mode ? mode : "(null)");
        sqlite3_finalize(stmt);
        return -ENOTSUP;
    }
    sqlite3_finalize(stmt);
    rc = sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "PRAGMA synchronous=FULL", err, errlen);
    }
    return 0;
}

/** Turns foreign keys on, after the migrations (which run with them off). */
static int yw__enable_foreign_keys(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "PRAGMA foreign_keys=ON", err, errlen);
    }
    /* foreign_keys=ON is a no-op in a build without them: say so rather than ignore. */
    int fk = 0;
    rc = yw__query_int(db, "PRAGMA foreign_keys", &fk);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "PRAGMA foreign_keys", err, errlen);
    }
    if (fk != 1) {
        yw_errmsg_printf(err, errlen, "%s: this SQLite does not enforce foreign keys", path);
        return -ENOTSUP;
    }
    return 0;
}

/**
 * Fails when a migration left rows that break a foreign key: migrations run with
 * foreign keys off (so that a table can be rebuilt, as SQLite's ALTER TABLE docs
 * describe), and this check before COMMIT stands in for them.
 */
static int yw__foreign_key_check(sqlite3 *db, const char *path, int version, char *err,
                                 size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    if (rc == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(stmt, 0);
        const char *parent = (const char *)sqlite3_column_text(stmt, 2);
        yw_errmsg_printf(err, errlen,
                         "%s: migration %d: a row of table %s references a missing row of table %s",
                         path, version, table ? table : "?", parent ? parent : "?");
        sqlite3_finalize(stmt);
        return -EINVAL;
    }
    if (rc != SQLITE_DONE) {
        int e = yw__open_fail(db, rc, path, "PRAGMA foreign_key_check", err, errlen);
        sqlite3_finalize(stmt);
        return e;
    }
    sqlite3_finalize(stmt);
    return 0;
}

/**
 * Applies every migration newer than the file's user_version, each in its own
 * transaction that also sets user_version. The version is read again inside the
 * transaction: another process opening the same file may have migrated it meanwhile.
 */
static int yw__migrate(sqlite3 *db, const yw_store_config_t *cfg, int *version, char *err,
                       size_t errlen)
{
    int current = 0;
    int rc = yw__query_int(db, "PRAGMA user_version", &current);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, cfg->path, "PRAGMA user_version", err, errlen);
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        const yw_migration_t *m = &cfg->migrations[i];
        if (m->version <= current) {
            continue;
        }
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            return yw__open_fail(db, rc, cfg->path, "begin migration", err, errlen);
        }
        rc = yw__query_int(db, "PRAGMA user_version", &current);
        if (rc != SQLITE_OK) {
            int e = yw__open_fail(db, rc, cfg->path, "PRAGMA user_version", err, errlen);
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return e;
        }
        if (m->version <= current) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                int e = yw__open_fail(db, rc, cfg->path, "commit", err, errlen);
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                return e;
            }
            continue;
        }
        char set_version[64];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version=%d", m->version);
        char what[64];
        rc = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
        snprintf(what, sizeof what, "migration %d", m->version);
        if (rc == SQLITE_OK) {
            int e = yw__foreign_key_check(db, cfg->path, m->version, err, errlen);
            if (e != 0) {
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                return e;
            }
            rc = sqlite3_exec(db, set_version, NULL, NULL, NULL);
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            snprintf(what, sizeof what, "commit of migration %d", m->version);
        }
        if (rc != SQLITE_OK) {
            int e = yw__open_fail(db, rc, cfg->path, what, err, errlen);
            if (!sqlite3_get_autocommit(db)) {
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            }
            return e;
        }
        current = m->version;
    }
    *version = current;
    return 0;
}

static int yw__validate(const yw_store_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL || cfg->path == NULL || cfg->path[0] == '\0') {
        yw_errmsg_printf(err, errlen, "store: path is required");
        return -EINVAL;
    }
    if (strcmp(cfg->path, ":memory:") == 0 || strncmp(cfg->path, "file:", 5) == 0) {
        yw_errmsg_printf(err, errlen, "store: path %s: must be a file name (readers open it too)",
                         cfg->path);
        return -EINVAL;
    }
    if (cfg->n_migrations > 0 && cfg->migrations == NULL) {
        yw_errmsg_printf(err, errlen, "store: n_migrations is %zu but migrations is NULL",
                         cfg->n_migrations);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        if (cfg->migrations[i].version != (int)i + 1 || cfg->migrations[i].sql == NULL) {
            yw_errmsg_printf(
                err, errlen,
                "store: migrations[%zu]: version must be %zu (start at 1, increase by one) "
                "and sql set; got version %d",
                i, i + 1, cfg->migrations[i].version);
            return -EINVAL;
        }
    }
    if (cfg->readers < 0 || cfg->readers > YW__MAX_READERS) {
        yw_errmsg_printf(err, errlen, "store: readers must be 0..%d, got %d", YW__MAX_READERS,
                         cfg->readers);
        return -EINVAL;
    }
    if (cfg->max_group < 0) {
        yw_errmsg_printf(err, errlen, "store: max_group must be >= 0, got %d", cfg->max_group);
        return -EINVAL;
    }
    return 0;
}

/** Opens the writer connection: checked, configured, migrated. */
static int yw__open_writer(yw_store_t *store, const yw_store_config_t *cfg, char *err,
                           size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        cfg->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = yw__open_fail(db, rc, cfg->path, "cannot open", err, errlen);
        sqlite3_close_v2(db);
        return e;
    }
    store->writer.db = db;
    (void)sqlite3_extended_result_codes(db, 1);
    /* SQLite falls back to read-only when it may not write the file; we need to write. */
    if (sqlite3_db_readonly(db, "main") != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot open for writing (read-only file or directory)",
                         cfg->path);
        return -EACCES;
    }
    int e = yw__check_integrity(db, cfg->path, err, errlen);
    if (e == 0) {
        e = yw__configure_writer(db, cfg->path, err, errlen);
    }
    if (e == 0) {
        e = yw__migrate(db, cfg, &store->schema_version, err, errlen);
    }
    if (e == 0) {
        e = yw__enable_foreign_keys(db, cfg->path, err, errlen);
    }
    if (e == 0 && store->schema_version > (int)cfg->n_migrations) {
        yw_errmsg_printf(err, errlen,
                         "%s: schema version %d is newer than this build knows (%zu); refusing to "
                         "open it",
                         cfg->path, store->schema_version, cfg->n_migrations);
        e = -ENOTSUP;
    }
    return e;
}

static int yw__open_reader(yw_store_conn_t *conn, const char *path, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(path, &conn->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = yw__open_fail(conn->db, rc, path, "cannot open reader", err, errlen);
        sqlite3_close_v2(conn->db);
        conn->db = NULL;
        return e;
    }
    (void)sqlite3_extended_result_codes(conn->db, 1);
    rc = sqlite3_busy_timeout(conn->db, YW__BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        return yw__open_fail(conn->db, rc, path, "busy_timeout", err, errlen);
    }
    return 0;
}

/** Starts the readers, then the writer (which waits for the readers it counts). */
static int yw__start_threads(yw_store_t *store, char *err, size_t errlen)
{
    /* Store threads take no signals: the loop thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    int e = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (e != 0) {
        yw_errmsg_printf(err, errlen, "store: pthread_sigmask: %s", strerror(e));
        return -e;
    }
    for (int i = 0; i < store->n_readers && e == 0; i++) {
        yw__reader_arg_t *ra = malloc(sizeof *ra);
        if (ra == NULL) {
            e = ENOMEM;
            break;
        }
        ra->store = store;
        ra->conn = &store->readers[i];
        pthread_mutex_lock(&store->mu);
        store->readers_alive++;
        pthread_mutex_unlock(&store->mu);
        e = pthread_create(&store->reader_threads[i], NULL, yw__reader_main, ra);
        if (e != 0) {
            free(ra);
            pthread_mutex_lock(&store->mu);
            store->readers_alive--;
            pthread_mutex_unlock(&store->mu);
            break;
        }
        store->readers_started++;
    }
    if (e == 0) {
        e = pthread_create(&store->writer_thread, NULL, yw__writer_main, store);
        if (e == 0) {
            store->writer_started = true;
        }
    }
    int e2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e == 0 && e2 != 0) {
        e = e2; /* the threads run; the caller's mask could not be put back */
    }
    if (e != 0) {
        yw_errmsg_printf(err, errlen, "store: cannot start threads: %s", strerror(e));
        return -e;
    }
    return 0;
}

/** Frees a store whose threads never started and whose async handle is not open. */
static void yw__free_unstarted(yw_store_t *store)
{
    yw__conn_close(&store->writer);
    for (int i = 0; store->readers != NULL && i < store->n_readers; i++) {
        yw__conn_close(&store->readers[i]);
    }
    pthread_mutex_destroy(&store->mu);
    pthread_mutex_destroy(&store->writer_mu);
    pthread_cond_destroy(&store->writer_cv);
    pthread_cond_destroy(&store->reader_cv);
    free(store->readers);
    free(store->reader_threads);
    free(store);
}

int yw_store_open(uv_loop_t *loop, const yw_store_config_t *cfg, yw_store_t **out, char *err,
                  size_t errlen)
{
    yw_errmsg_printf(err, errlen, "%s", "");
    if (out == NULL || loop == NULL) {
        yw_errmsg_printf(err, errlen, "store: loop and out are required");
        return -EINVAL;
    }
    *out = NULL;
    int e = yw__validate(cfg, err, errlen);
    if (e != 0) {
        return e;
    }

    yw_store_t *store = calloc(1, sizeof *store);
    if (store == NULL) {
        yw_errmsg_printf(err, errlen, "%s: out of memory", cfg->path);
        return -ENOMEM;
    }
    store->loop = loop;
    store->max_group = cfg->max_group > 0 ? cfg->max_group : YW__DEFAULT_MAX_GROUP;
    store->n_readers = cfg->readers > 0 ? cfg->readers : YW__DEFAULT_READERS;
    store->on_commit = cfg->on_commit;
    store->on_commit_arg = cfg->on_commit_arg;
    store->on_full = cfg->on_full;
    store->on_full_arg = cfg->on_full_arg;
    pthread_mutex_init(&store->mu, NULL);
    pthread_mutex_init(&store->writer_mu, NULL);
    pthread_cond_init(&store->writer_cv, NULL);
    pthread_cond_init(&store->reader_cv, NULL);
    store->readers = calloc((size_t)store->n_readers, sizeof *store->readers);
    store->reader_threads = calloc((size_t)store->n_readers, sizeof *store->reader_threads);
    if (store->readers == NULL || store->reader_threads == NULL) {
        yw_errmsg_printf(err, errlen, "%s: out of memory", cfg->path);
        yw__free_unstarted(store);
        return -ENOMEM;
    }

    e = yw__open_writer(store, cfg, err, errlen);
    for (int i = 0; e == 0 && i < store->n_readers; i++) {
        e = yw__open_reader(&store->readers[i], cfg->path, err, errlen);
    }
    if (e == 0) {
        e = uv_async_init(loop, &store->async, yw__on_async);
        if (e != 0) {
            yw_errmsg_printf(err, errlen, "store: uv_async_init: %s", uv_strerror(e));
        }
    }
    if (e != 0) {
        yw__free_unstarted(store);
        return e;
    }
    store->async.data = store;

    e = yw__start_threads(store, err, errlen);
    if (e != 0) {
        /*
         * The threads that did start exit at once on `closing`; the store is freed when
         * the loop runs the async handle's close callback. Nothing is called back.
         */
        pthread_mutex_lock(&store->mu);
        store->closing = true;
        pthread_cond_broadcast(&store->writer_cv);
        pthread_cond_broadcast(&store->reader_cv);
        pthread_mutex_unlock(&store->mu);
        yw__finish_close(store);
        return e;
    }
    *out = store;
    return 0;
}

/* ---- jobs ------------------------------------------------------------------------- */

static int yw__queue_job(yw_store_t *store, yw_store_job_t *job, bool write)
{
    if (store == NULL || job == NULL || job->work == NULL || job->done == NULL) {
        return -EINVAL;
    }
    job->errmsg[0] = '\0';
    job->yw_status = GRPC_STATUS_OK;
    job->yw_store = store;
    pthread_mutex_lock(&store->mu);
    if (store->closing) {
        pthread_mutex_unlock(&store->mu);
        return -ESHUTDOWN;
    }
    if (write) {
        yw__queue_push(&store->writes, job);
        pthread_cond_signal(&store->writer_cv);
    } else {
        yw__queue_push(&store->reads, job);
        pthread_cond_signal(&store->reader_cv);
    }
    pthread_mutex_unlock(&store->mu);
    return 0;
}

int yw_store_write(yw_store_t *store, yw_store_job_t *job)
{
    return yw__queue_job(store, job, true);
}

int yw_store_read(yw_store_t *store, yw_store_job_t *job)
{
    return yw__queue_job(store, job, false);
}

grpc_status_code yw_store_run_sync(yw_store_t *store,
                                   grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg),
                                   void *arg, char *err, size_t errlen)
{
    yw_errmsg_printf(err, errlen, "%s", "");
    pthread_mutex_lock(&store->mu);
    bool closing = store->closing;
    pthread_mutex_unlock(&store->mu);
    if (closing) {
        yw_errmsg_printf(err, errlen, "store is closing");
        return GRPC_STATUS_UNAVAILABLE;
    }

    pthread_mutex_lock(&store->writer_mu);
    yw_store_conn_t *conn = &store->writer;
    grpc_status_code st;
    int rc = yw__exec(conn, yw__sql_begin_immediate);
    if (rc != SQLITE_OK) {
        st = yw__fail_status(rc);
        yw_errmsg_printf(err, errlen, "begin failed: %s", sqlite3_errmsg(conn->db));
        pthread_mutex_unlock(&store->writer_mu);
        return st;
    }
    st = fn(conn, arg);
    yw__reset_busy(conn->db);
    if (st != GRPC_STATUS_OK) {
        if (err != NULL && errlen > 0 && err[0] == '\0') {
            yw_errmsg_printf(err, errlen, "run_sync: function failed with status %d; rolled back",
                             (int)st);
        }
        yw__rollback(conn);
    } else if (sqlite3_get_autocommit(conn->db)) {
        st = GRPC_STATUS_INTERNAL;
        yw_errmsg_printf(err, errlen, "run_sync: the transaction ended inside the function: %s",
                         sqlite3_errmsg(conn->db));
    } else {
        rc = yw__exec(conn, yw__sql_commit);
        if (rc != SQLITE_OK) {
            st = yw__fail_status(rc);
            yw_errmsg_printf(err, errlen, "commit failed: %s", sqlite3_errmsg(conn->db));
            yw__rollback(conn);
        }
    }
    pthread_mutex_unlock(&store->writer_mu);
    return st;
}

void yw_store_close(yw_store_t *store, void (*closed)(void *arg), void *arg)
{
    pthread_mutex_lock(&store->mu);
    if (store->closing) {
        pthread_mutex_unlock(&store->mu);
        return; /* closed twice: the first call's `closed` stands */
    }
    store->closing = true;
    store->closed = closed;
    store->closed_arg = arg;
    pthread_cond_broadcast(&store->writer_cv);
    pthread_cond_broadcast(&store->reader_cv);
    pthread_mutex_unlock(&store->mu);
}

int yw_store_schema_version(const yw_store_t *store)
{
    return store->schema_version;
}
