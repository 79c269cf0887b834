/*
 * sql.c — sql.h: portable SQL on a store connection. Each call dispatches on the
 * backend tag that starts both the connection (struct st_yw_store_conn_t) and the
 * statement (struct st_yw_sql_t) to the SQLite half (store_sql.c) or the PostgreSQL
 * half (store_pg_sql.c). Errors of both are kept on the connection (sql_rc, sql_msg)
 * and reported here, one way. Runs on the store thread that owns the connection; no
 * locks.
 */
#include "common/sql.h"

#include <string.h>

#include "common/errmsg.h"
#include "common/sql_internal.h"

/** The status of the connection's last error; INTERNAL when there is none. */
static grpc_status_code yw__sql_status(const yw_store_conn_t *conn)
{
    if (conn->sql_rc == 0) {
        return GRPC_STATUS_INTERNAL;
    }
    if (conn->backend == YW_SQL_SQLITE) {
        return yw__store_fail_status(conn->sql_rc); /* yw_store_fail()'s mapping */
    }
    return (grpc_status_code)conn->sql_rc; /* PostgreSQL keeps the status itself */
}

yw_sql_backend_t yw_sql_backend(const yw_store_conn_t *conn)
{
    return conn->backend;
}

yw_sql_t *yw_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len)
{
    conn->sql_rc = 0;
    conn->sql_msg[0] = '\0';
    switch (conn->backend) {
    case YW_SQL_SQLITE:
        return yw__sqlite_sql_prepare(conn, sql, msg, len);
    case YW_SQL_POSTGRES:
        return yw__pg_sql_prepare(conn, sql, msg, len);
    }
    yw__sql_set_error(conn, 0, "connection of an unknown backend %d", (int)conn->backend);
    yw_errmsg_printf(msg, len, "prepare: %s", conn->sql_msg);
    return NULL;
}

yw_sql_t *yw_sql_job_stmt(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                          grpc_status_code *code)
{
    yw_sql_t *st = yw_sql_prepare(conn, sql, job->errmsg, sizeof job->errmsg);
    if (st == NULL && code != NULL) {
        /* The SQL is the program's: INTERNAL, unless the database is away. */
        grpc_status_code c = yw__sql_status(conn);
        *code = c == GRPC_STATUS_UNAVAILABLE ? c : GRPC_STATUS_INTERNAL;
    }
    return st;
}

#define YW__DISPATCH(st, sqlite_call, pg_call)                                                     \
    do {                                                                                           \
        if ((st) == NULL) {                                                                        \
            break;                                                                                 \
        }                                                                                          \
        if ((st)->backend == YW_SQL_SQLITE) {                                                      \
            sqlite_call;                                                                           \
        } else {                                                                                   \
            pg_call;                                                                               \
        }                                                                                          \
    } while (0)

void yw_sql_bind_i64(yw_sql_t *st, int i, int64_t v)
{
    YW__DISPATCH(st, yw__sqlite_sql_bind_i64(st, i, v), yw__pg_sql_bind_i64(st, i, v));
}

void yw_sql_bind_f64(yw_sql_t *st, int i, double v)
{
    YW__DISPATCH(st, yw__sqlite_sql_bind_f64(st, i, v), yw__pg_sql_bind_f64(st, i, v));
}

void yw_sql_bind_text(yw_sql_t *st, int i, const char *s)
{
    YW__DISPATCH(st, yw__sqlite_sql_bind_text(st, i, s), yw__pg_sql_bind_text(st, i, s));
}

void yw_sql_bind_null(yw_sql_t *st, int i)
{
    YW__DISPATCH(st, yw__sqlite_sql_bind_null(st, i), yw__pg_sql_bind_null(st, i));
}

void yw_sql_bind_next_i64(yw_sql_binder_t *b, int64_t v)
{
    yw_sql_bind_i64(b->st, ++b->n, v);
}

void yw_sql_bind_next_f64(yw_sql_binder_t *b, double v)
{
    yw_sql_bind_f64(b->st, ++b->n, v);
}

void yw_sql_bind_next_text(yw_sql_binder_t *b, const char *s)
{
    yw_sql_bind_text(b->st, ++b->n, s);
}

int yw_sql_step(yw_sql_t *st)
{
    if (st == NULL) {
        return YW_SQL_ERROR;
    }
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_step(st) : yw__pg_sql_step(st);
}

int64_t yw_sql_column_i64(yw_sql_t *st, int i)
{
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_column_i64(st, i)
                                        : yw__pg_sql_column_i64(st, i);
}

double yw_sql_column_f64(yw_sql_t *st, int i)
{
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_column_f64(st, i)
                                        : yw__pg_sql_column_f64(st, i);
}

const char *yw_sql_column_text(yw_sql_t *st, int i, size_t *len)
{
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_column_text(st, i, len)
                                        : yw__pg_sql_column_text(st, i, len);
}

int yw_sql_column_is_null(yw_sql_t *st, int i)
{
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_column_is_null(st, i)
                                        : yw__pg_sql_column_is_null(st, i);
}

int64_t yw_sql_changes(yw_sql_t *st)
{
    return st->backend == YW_SQL_SQLITE ? yw__sqlite_sql_changes(st) : yw__pg_sql_changes(st);
}

void yw_sql_done(yw_sql_t *st)
{
    YW__DISPATCH(st, yw__sqlite_sql_done(st), yw__pg_sql_done(st));
}

grpc_status_code yw_sql_fail(yw_store_conn_t *conn, const char *what, char *msg, size_t len)
{
    yw_errmsg_printf(msg, len, "%s: %s", what,
                     conn->sql_rc != 0 || conn->sql_msg[0] != '\0'
                         ? conn->sql_msg
                         : "the statement did not do what was expected");
    return yw__sql_status(conn);
}

grpc_status_code yw_sql_job_fail(yw_store_conn_t *conn, yw_store_job_t *job, const char *what)
{
    return yw_sql_fail(conn, what, job->errmsg, sizeof job->errmsg);
}

grpc_status_code yw_sql_job_exec(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                                 const char *const *texts, int n, const char *what)
{
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql, &code);
    if (st == NULL) {
        return code;
    }
    for (int i = 0; i < n; i++) {
        yw_sql_bind_text(st, i + 1, texts[i]);
    }
    int rc;
    while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
    }
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : yw_sql_job_fail(conn, job, what);
}

static const char yw__sql_lock[] = "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))";
static const char yw__sql_notify[] = "SELECT pg_notify(?1, ?2)";

grpc_status_code yw_sql_job_lock(yw_store_conn_t *conn, yw_store_job_t *job, const char *key)
{
    if (conn->backend == YW_SQL_SQLITE) {
        return GRPC_STATUS_OK; /* its one writer already takes turns */
    }
    const char *texts[] = {key};
    return yw_sql_job_exec(conn, job, yw__sql_lock, texts, 1, "lock");
}

grpc_status_code yw_sql_job_notify(yw_store_conn_t *conn, yw_store_job_t *job, const char *channel,
                                   const char *payload)
{
    if (conn->backend == YW_SQL_SQLITE) {
        return GRPC_STATUS_OK; /* one process: its done callbacks know every change */
    }
    const char *texts[] = {channel, payload};
    return yw_sql_job_exec(conn, job, yw__sql_notify, texts, 2, "notify");
}
