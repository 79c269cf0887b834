/*
 * sql.h — SQL on a store connection, whichever database is behind it (store.h: SQLite
 * under --data-dir, or PostgreSQL with --store URI). A job's work writes its statements
 * once, with these calls, and runs on both.
 *
 * Statements: one SQL text for both databases where the SQL allows it (the common
 * subset: ?1, ?2, ... parameters, INSERT ... ON CONFLICT, COALESCE(SUM(...), 0)); where
 * it does not, the caller picks the text by yw_sql_backend(). Parameters are numbered
 * ?1..?N (PostgreSQL gets them as $1..$N); a statement's parameters keep one type from
 * use to use (PostgreSQL prepares the statement once, with the types of its first
 * binding). Columns come back as int64, double or text; NULL reads as 0, 0.0 or "".
 *
 * Errors: a bind never fails by itself (a failure is kept and reported by the next
 * step). A step that fails returns YW_SQL_ERROR and leaves the error on the connection,
 * which yw_sql_job_fail()/yw_sql_fail() report: "<what>: <the database's message>",
 * with the status for it:
 *   constraint violated (SQLITE_CONSTRAINT, SQLSTATE class 23)   ALREADY_EXISTS
 *   disk full (SQLITE_FULL, SQLSTATE class 53)                   RESOURCE_EXHAUSTED
 *   database away or busy (SQLITE_BUSY/IOERR/READONLY/CANTOPEN;
 *     PostgreSQL: connection lost or refused, no answer within the store's timeout,
 *     shutting down, read-only standby, serialization failure, deadlock) UNAVAILABLE
 *   anything else                                                INTERNAL
 *
 * PostgreSQL, where it differs from SQLite (store_pg_sql.c):
 * - A statement that fails aborts the job's transaction: every later statement of the
 *   job fails too, so a job returns the failure (yw_sql_job_fail()) rather than going
 *   on; a job that goes on and returns OK fails INTERNAL at its COMMIT ("a statement of
 *   the job failed ... rolled back"). Write "INSERT ... ON CONFLICT" where SQLite code
 *   would try an INSERT and look at its constraint error.
 * - yw_sql_prepare() does not talk to the server: the statement is prepared at its first
 *   step on each connection (and again after a reconnect), so a mistake in the SQL is
 *   reported by yw_sql_step() (INTERNAL), not by the prepare.
 * - A statement's rows are all fetched at its first step (no cursor): bound them
 *   (LIMIT) as a page of a List does.
 * - Columns are read from their text: integers (INTEGER, BIGINT) through strtoll,
 *   DOUBLE PRECISION and NUMERIC through strtod; a BOOLEAN reads "t"/"f" (as text; 0 as
 *   an integer): keep flags in INTEGER columns, as on SQLite.
 * - `?N` inside quoted strings, quoted identifiers and comments is left alone; a lone
 *   `?` (jsonb's operator) too.
 * - A connection lost or a statement unanswered within pg_timeout_ms fails the step
 *   UNAVAILABLE, and every later statement of the job at once (no reconnect inside a
 *   transaction); the next job gets a fresh connection.
 *
 * Every function here is for a store thread, with the connection it was given.
 */
#ifndef YW_SQL_H
#define YW_SQL_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "common/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { YW_SQL_SQLITE = 1, YW_SQL_POSTGRES = 2 } yw_sql_backend_t;

/** Which database the connection talks to. */
yw_sql_backend_t yw_sql_backend(const yw_store_conn_t *conn);

/** A prepared statement, cached on its connection. */
typedef struct st_yw_sql_t yw_sql_t;

/** yw_sql_step() results. */
enum { YW_SQL_ERROR = -1, YW_SQL_ROW = 1, YW_SQL_DONE = 2 };

/**
 * The statement for `sql`, cached on this connection (keyed by the pointer: pass string
 * literals or static arrays), reset, with no parameter bound. NULL on a prepare error,
 * with "prepare: <message>" in `msg` (`len` bytes): the SQL is the program's, so the
 * status to report is INTERNAL — unless the database is away (UNAVAILABLE):
 * yw_sql_fail() tells which.
 */
yw_sql_t *yw_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len);

/**
 * yw_sql_prepare() into the job's errmsg; on failure also sets `*code` (when not NULL)
 * to the status to return.
 */
yw_sql_t *yw_sql_job_stmt(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                          grpc_status_code *code);

/** Binds ?i (1-based) to `v`. */
void yw_sql_bind_i64(yw_sql_t *st, int i, int64_t v);

/** Binds ?i to `v` (finite; NaN and infinities are the caller's to refuse). */
void yw_sql_bind_f64(yw_sql_t *st, int i, double v);

/** Binds ?i to the NUL-terminated `s` (NULL binds ""), without a copy: `s` must stay
 * valid until the statement is done (yw_sql_done()). */
void yw_sql_bind_text(yw_sql_t *st, int i, const char *s);

/** Binds ?i to SQL NULL. */
void yw_sql_bind_null(yw_sql_t *st, int i);

/**
 * Binds ?1, ?2, ... in order: start one with YW_SQL_BINDER(st), then one call per
 * parameter.
 */
typedef struct st_yw_sql_binder_t {
    yw_sql_t *st;
    int n; /* parameters bound so far */
} yw_sql_binder_t;

#define YW_SQL_BINDER(st) ((yw_sql_binder_t){(st), 0})

void yw_sql_bind_next_i64(yw_sql_binder_t *b, int64_t v);
void yw_sql_bind_next_f64(yw_sql_binder_t *b, double v);
void yw_sql_bind_next_text(yw_sql_binder_t *b, const char *s);

/**
 * Runs the statement (on its first step) and moves to its next row: YW_SQL_ROW (the
 * columns of that row are readable), YW_SQL_DONE (no more rows; a statement without
 * rows is done at its first step), or YW_SQL_ERROR (the error is on the connection).
 */
int yw_sql_step(yw_sql_t *st);

/** Column i (0-based) of the current row. NULL reads as 0. */
int64_t yw_sql_column_i64(yw_sql_t *st, int i);

/** Column i of the current row. NULL reads as 0.0. */
double yw_sql_column_f64(yw_sql_t *st, int i);

/**
 * Column i of the current row as text, never NULL (NULL reads as ""), with its length
 * in bytes in `*len` (`len` may be NULL). Valid until the next step or yw_sql_done().
 */
const char *yw_sql_column_text(yw_sql_t *st, int i, size_t *len);

/** Whether column i of the current row is SQL NULL. */
int yw_sql_column_is_null(yw_sql_t *st, int i);

/** Rows an INSERT, UPDATE or DELETE changed, once it is done. */
int64_t yw_sql_changes(yw_sql_t *st);

/** Ends the statement's use: resets it and clears its bindings. Accepts NULL. */
void yw_sql_done(yw_sql_t *st);

/**
 * Reports the connection's last error: writes "`what`: <the database's message>" into
 * `msg` (`len` bytes) and returns its status (never OK: a statement that did not do what
 * was expected, with no error on the connection, is INTERNAL).
 */
grpc_status_code yw_sql_fail(yw_store_conn_t *conn, const char *what, char *msg, size_t len);

/** yw_sql_fail() into the job's errmsg. */
grpc_status_code yw_sql_job_fail(yw_store_conn_t *conn, yw_store_job_t *job, const char *what);

/**
 * Runs `sql` (no rows expected; parameters bound from `texts`, n of them, as ?1..?n) and
 * reports a failure into the job as yw_sql_job_fail(conn, job, what).
 */
grpc_status_code yw_sql_job_exec(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                                 const char *const *texts, int n, const char *what);

/**
 * In a write job: holds a lock named by `key` until the transaction ends, so that writers
 * of one key (a request_id, a note) on several processes take turns. PostgreSQL: a
 * transaction-level advisory lock, pg_advisory_xact_lock(hashtextextended(key, 0)); it
 * waits for the holder up to pg_timeout_ms (then UNAVAILABLE). SQLite: nothing to do
 * (its one writer already takes turns).
 */
grpc_status_code yw_sql_job_lock(yw_store_conn_t *conn, yw_store_job_t *job, const char *key);

/**
 * In a write job: tells every process listening on `channel` (yw_store_listen()) that
 * `payload` changed, once the transaction commits (PostgreSQL NOTIFY; nothing with
 * SQLite, whose one process knows). `payload` is at most 7,999 bytes.
 */
grpc_status_code yw_sql_job_notify(yw_store_conn_t *conn, yw_store_job_t *job, const char *channel,
                                   const char *payload);

#ifdef __cplusplus
}
#endif
#endif
