/*
 * sql_internal.h — the private half of sql.h, shared by sql.c (the dispatch) and the two
 * backends' halves: store_sql.c (SQLite) and store_pg_sql.c (PostgreSQL). The backend
 * tag starts both the connection (store_internal.h) and the statement, and sql.c
 * switches on it. Nothing outside these files includes it.
 */
#ifndef YW_SQL_INTERNAL_H
#define YW_SQL_INTERNAL_H

#include <stdint.h>

#include "common/sql.h"
#include "common/store_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A sql.h statement: each backend's struct embeds this as its first member, so that
 * sql.c dispatches on `backend`.
 */
struct st_yw_sql_t {
    yw_sql_backend_t backend;
    yw_store_conn_t *conn;
};

/** SQLite's sql.h statement: the cached sqlite3_stmt and the first bind failure. */
typedef struct st_yw__sqlite_sql_t {
    struct st_yw_sql_t base;
    sqlite3_stmt *stmt;
    int bind_rc;    /* SQLITE_OK, or the first failed bind's code (reported by the step) */
    int bind_index; /* the parameter of that failure */
    int64_t changes;
} yw__sqlite_sql_t;

/** Keeps an error on the connection for yw_sql_fail(): `rc` and a formatted message. */
void yw__sql_set_error(yw_store_conn_t *conn, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The SQLite half of sql.h (sql.c checked the backend; `st` is a yw__sqlite_sql_t). */
yw_sql_t *yw__sqlite_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len);
void yw__sqlite_sql_bind_i64(yw_sql_t *st, int i, int64_t v);
void yw__sqlite_sql_bind_f64(yw_sql_t *st, int i, double v);
void yw__sqlite_sql_bind_text(yw_sql_t *st, int i, const char *s);
void yw__sqlite_sql_bind_null(yw_sql_t *st, int i);
int yw__sqlite_sql_step(yw_sql_t *st);
int64_t yw__sqlite_sql_column_i64(yw_sql_t *st, int i);
double yw__sqlite_sql_column_f64(yw_sql_t *st, int i);
const char *yw__sqlite_sql_column_text(yw_sql_t *st, int i, size_t *len);
int yw__sqlite_sql_column_is_null(yw_sql_t *st, int i);
int64_t yw__sqlite_sql_changes(yw_sql_t *st);
void yw__sqlite_sql_done(yw_sql_t *st);

/* The PostgreSQL half of sql.h (store_pg_sql.c; `st` is a yw__pg_sql_t). */
yw_sql_t *yw__pg_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len);
void yw__pg_sql_bind_i64(yw_sql_t *st, int i, int64_t v);
void yw__pg_sql_bind_f64(yw_sql_t *st, int i, double v);
void yw__pg_sql_bind_text(yw_sql_t *st, int i, const char *s);
void yw__pg_sql_bind_null(yw_sql_t *st, int i);
int yw__pg_sql_step(yw_sql_t *st);
int64_t yw__pg_sql_column_i64(yw_sql_t *st, int i);
double yw__pg_sql_column_f64(yw_sql_t *st, int i);
const char *yw__pg_sql_column_text(yw_sql_t *st, int i, size_t *len);
int yw__pg_sql_column_is_null(yw_sql_t *st, int i);
int64_t yw__pg_sql_changes(yw_sql_t *st);
void yw__pg_sql_done(yw_sql_t *st);

#ifdef __cplusplus
}
#endif
#endif
