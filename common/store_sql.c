/*
 * store_sql.c — SQLite on one connection of the store: the statement cache, running
 * statements and ending transactions, result codes to gRPC statuses, and the helpers of a
 * job's work. See store.h; what the store's files share is in store_internal.h.
 */
#include "common/sql_internal.h"
#include "common/store_internal.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/errmsg.h"

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

yw__stmt_slot_t *yw__stmt_find(yw_store_conn_t *conn, const char *sql)
{
    if (conn->cap == 0) {
        return NULL;
    }
    size_t i = yw__slot_index(sql, conn->cap);
    while (conn->slots[i].sql != NULL) {
        if (conn->slots[i].sql == sql) {
            return &conn->slots[i];
        }
        i = (i + 1) & (conn->cap - 1);
    }
    return NULL;
}

yw__stmt_slot_t *yw__stmt_insert(yw_store_conn_t *conn, const char *sql)
{
    if ((conn->count + 1) * 2 > conn->cap && !yw__stmt_grow(conn)) {
        return NULL;
    }
    size_t i = yw__slot_index(sql, conn->cap);
    while (conn->slots[i].sql != NULL) {
        i = (i + 1) & (conn->cap - 1);
    }
    conn->slots[i].sql = sql;
    conn->count++;
    return &conn->slots[i];
}

sqlite3_stmt *yw_store_stmt(yw_store_conn_t *conn, const char *sql)
{
    yw__stmt_slot_t *slot = yw__stmt_find(conn, sql);
    if (slot != NULL) {
        sqlite3_stmt *stmt = slot->stmt;
        /* reset returns the error of the last step, which its caller saw. */
        (void)sqlite3_reset(stmt);
        (void)sqlite3_clear_bindings(stmt);
        return stmt;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v3(conn->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK || stmt == NULL) {
        /* stmt is NULL for text with no statement (only spaces or comments). */
        sqlite3_finalize(stmt);
        return NULL;
    }
    slot = yw__stmt_insert(conn, sql);
    if (slot == NULL) {
        sqlite3_finalize(stmt);
        return NULL;
    }
    slot->stmt = stmt;
    return stmt;
}

sqlite3 *yw_store_db(yw_store_conn_t *conn)
{
    return conn->db; /* NULL on a PostgreSQL connection */
}

/** Finalizes every cached statement and closes the connection; safe to call twice. */
void yw__store_conn_close(yw_store_conn_t *conn)
{
    for (size_t i = 0; i < conn->cap; i++) {
        if (conn->slots[i].stmt != NULL) {
            sqlite3_finalize(conn->slots[i].stmt);
        }
        /* A PostgreSQL connection frees its statements itself (store_pg_sql.c). */
        if (conn->slots[i].sql_st != NULL && conn->slots[i].sql_st->backend == YW_SQL_SQLITE) {
            free(conn->slots[i].sql_st);
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
void yw__store_reset_busy(sqlite3 *db)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s != NULL; s = sqlite3_next_stmt(db, s)) {
        if (sqlite3_stmt_busy(s)) {
            (void)sqlite3_reset(s);
        }
    }
}

/** Runs one cached statement that returns no rows (or whose rows are ignored). */
int yw__store_exec(yw_store_conn_t *conn, const char *sql)
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

const char yw__store_sql_begin_immediate[] = "BEGIN IMMEDIATE";
const char yw__store_sql_begin[] = "BEGIN";
const char yw__store_sql_commit[] = "COMMIT";
const char yw__store_sql_rollback[] = "ROLLBACK";
const char yw__store_sql_savepoint[] = "SAVEPOINT yw_job";
const char yw__store_sql_release[] = "RELEASE yw_job";
const char yw__store_sql_rollback_to[] = "ROLLBACK TO yw_job";

/** Ends whatever transaction is open on `conn`, if any. */
void yw__store_rollback(yw_store_conn_t *conn)
{
    if (!sqlite3_get_autocommit(conn->db)) {
        /* On failure SQLite rolls back anyway when the connection next ends a txn. */
        (void)yw__store_exec(conn, yw__store_sql_rollback);
    }
}

/* ---- status ----------------------------------------------------------------------- */

grpc_status_code yw_store_status(int sqlite_rc)
{
    switch (yw__store_primary(sqlite_rc)) {
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
grpc_status_code yw__store_fail_status(int rc)
{
    grpc_status_code st = yw_store_status(rc);
    return st == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : st;
}

/* ---- helpers for a job's work ----------------------------------------------------- */

grpc_status_code yw_store_fail(yw_store_conn_t *conn, int rc, const char *what, char *msg,
                               size_t len)
{
    yw_errmsg_printf(msg, len, "%s: %s", what, sqlite3_errmsg(conn->db));
    return yw__store_fail_status(rc);
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

/* ---- sql.h on SQLite -------------------------------------------------------------- */

void yw__sql_set_error(yw_store_conn_t *conn, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(conn->sql_msg, sizeof conn->sql_msg, fmt, ap);
    va_end(ap);
    conn->sql_rc = rc;
}

/** The statement of yw_store_stmt() for `sql`, with its sql.h wrapper (made once). */
yw_sql_t *yw__sqlite_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len)
{
    sqlite3_stmt *stmt = yw_store_stmt(conn, sql);
    if (stmt == NULL) {
        int rc = sqlite3_extended_errcode(conn->db);
        yw__sql_set_error(conn, rc != SQLITE_OK ? rc : SQLITE_NOMEM, "%s",
                          rc != SQLITE_OK ? sqlite3_errmsg(conn->db) : "out of memory");
        yw_errmsg_printf(msg, len, "prepare: %s", conn->sql_msg);
        return NULL;
    }
    yw__stmt_slot_t *slot = yw__stmt_find(conn, sql);
    if (slot->sql_st == NULL) {
        yw__sqlite_sql_t *st = calloc(1, sizeof *st);
        if (st == NULL) {
            yw__sql_set_error(conn, SQLITE_NOMEM, "out of memory");
            yw_errmsg_printf(msg, len, "prepare: %s", conn->sql_msg);
            return NULL;
        }
        st->base.backend = YW_SQL_SQLITE;
        st->base.conn = conn;
        st->stmt = stmt;
        slot->sql_st = &st->base;
    }
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)slot->sql_st;
    st->bind_rc = SQLITE_OK;
    st->bind_index = 0;
    st->changes = 0;
    return &st->base;
}

/** Keeps the first failed bind for the step to report. */
static void yw__sqlite_bound(yw__sqlite_sql_t *st, int i, int rc)
{
    if (rc != SQLITE_OK && st->bind_rc == SQLITE_OK) {
        st->bind_rc = rc;
        st->bind_index = i;
    }
}

void yw__sqlite_sql_bind_i64(yw_sql_t *base, int i, int64_t v)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw__sqlite_bound(st, i, sqlite3_bind_int64(st->stmt, i, v));
}

void yw__sqlite_sql_bind_f64(yw_sql_t *base, int i, double v)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw__sqlite_bound(st, i, sqlite3_bind_double(st->stmt, i, v));
}

void yw__sqlite_sql_bind_text(yw_sql_t *base, int i, const char *s)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw__sqlite_bound(st, i, yw_store_bind_text(st->stmt, i, s));
}

void yw__sqlite_sql_bind_null(yw_sql_t *base, int i)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw__sqlite_bound(st, i, sqlite3_bind_null(st->stmt, i));
}

int yw__sqlite_sql_step(yw_sql_t *base)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw_store_conn_t *conn = base->conn;
    if (st->bind_rc != SQLITE_OK) {
        yw__sql_set_error(conn, st->bind_rc, "bind ?%d: %s", st->bind_index,
                          sqlite3_errstr(st->bind_rc));
        return YW_SQL_ERROR;
    }
    int rc = sqlite3_step(st->stmt);
    if (rc == SQLITE_ROW) {
        return YW_SQL_ROW;
    }
    if (rc == SQLITE_DONE) {
        st->changes = sqlite3_stmt_readonly(st->stmt) ? 0 : sqlite3_changes64(conn->db);
        return YW_SQL_DONE;
    }
    yw__sql_set_error(conn, rc, "%s", sqlite3_errmsg(conn->db));
    return YW_SQL_ERROR;
}

int64_t yw__sqlite_sql_column_i64(yw_sql_t *base, int i)
{
    return sqlite3_column_int64(((yw__sqlite_sql_t *)base)->stmt, i);
}

double yw__sqlite_sql_column_f64(yw_sql_t *base, int i)
{
    return sqlite3_column_double(((yw__sqlite_sql_t *)base)->stmt, i);
}

const char *yw__sqlite_sql_column_text(yw_sql_t *base, int i, size_t *len)
{
    return yw_store_column_text(((yw__sqlite_sql_t *)base)->stmt, i, len);
}

int yw__sqlite_sql_column_is_null(yw_sql_t *base, int i)
{
    return sqlite3_column_type(((yw__sqlite_sql_t *)base)->stmt, i) == SQLITE_NULL;
}

int64_t yw__sqlite_sql_changes(yw_sql_t *base)
{
    return ((yw__sqlite_sql_t *)base)->changes;
}

void yw__sqlite_sql_done(yw_sql_t *base)
{
    yw__sqlite_sql_t *st = (yw__sqlite_sql_t *)base;
    yw_store_stmt_done(st->stmt);
    st->bind_rc = SQLITE_OK;
    st->bind_index = 0;
}
