/*
 * test_store_sql.c — unit tests of common/store_sql.c: the statement cache, the helpers
 * of a job's work (failures, prepare, binds, column text) and SQLite codes to statuses.
 */
#include "common/store.h"

#include <stdint.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

static const char select_param[] = "SELECT ?1";

static grpc_status_code stmt_cache_work(yw_store_conn_t *conn, void *arg)
{
    sqlite3_stmt *a = yw_store_stmt(conn, select_param);
    YW_CHECK(a != NULL);
    YW_CHECK_INT(sqlite3_bind_int(a, 1, 7), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_step(a), ==, SQLITE_ROW);
    YW_CHECK_INT(sqlite3_column_int(a, 0), ==, 7);
    /* Same pointer: same statement, reset, bindings cleared. */
    sqlite3_stmt *b = yw_store_stmt(conn, select_param);
    YW_CHECK(b == a);
    YW_CHECK(!sqlite3_stmt_busy(b));
    YW_CHECK_INT(sqlite3_step(b), ==, SQLITE_ROW);
    YW_CHECK_INT(sqlite3_column_type(b, 0), ==, SQLITE_NULL);
    /* Same text at another address: another statement. */
    char copy[sizeof select_param];
    memcpy(copy, select_param, sizeof copy);
    sqlite3_stmt *c = yw_store_stmt(conn, copy);
    YW_CHECK(c != NULL);
    YW_CHECK(c != a);
    /* Many statements: the cache grows and still finds the first. */
    static char texts[200][32];
    for (int i = 0; i < 200; i++) {
        snprintf(texts[i], sizeof texts[i], "SELECT %d", i);
        sqlite3_stmt *s = yw_store_stmt(conn, texts[i]);
        YW_CHECK(s != NULL);
    }
    for (int i = 0; i < 200; i++) {
        sqlite3_stmt *s = yw_store_stmt(conn, texts[i]);
        YW_CHECK_INT(sqlite3_step(s), ==, SQLITE_ROW);
        YW_CHECK_INT(sqlite3_column_int(s, 0), ==, i);
    }
    YW_CHECK(yw_store_stmt(conn, select_param) == a);
    /* A prepare error: NULL, and the connection says why. */
    YW_CHECK(yw_store_stmt(conn, "SELEKT 1") == NULL);
    YW_CHECK(strstr(sqlite3_errmsg(yw_store_db(conn)), "syntax error") != NULL);
    return GRPC_STATUS_OK;
}

YW_TEST(stmt_cache)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, stmt_cache_work, NULL, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- helpers for a job's work ------------------------------------------------------ */

static const char select_three[] = "SELECT ?1, ?2, ?3";
static const char select_null[] = "SELECT NULL, 'abc'";

static grpc_status_code helpers_work(yw_store_conn_t *conn, void *arg)
{
    char msg[128];
    /* A prepare failure: NULL, and the message says so. */
    YW_CHECK(yw_store_prepare(conn, "SELEKT 1", msg, sizeof msg) == NULL);
    YW_CHECK(strncmp(msg, "prepare: ", 9) == 0);
    YW_CHECK(strstr(msg, "syntax error") != NULL);
    yw_store_job_t job;
    memset(&job, 0, sizeof job);
    grpc_status_code code = GRPC_STATUS_OK;
    YW_CHECK(yw_store_job_stmt(conn, &job, "SELEKT 2", &code) == NULL);
    YW_CHECK_INT(code, ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(job.errmsg, "prepare: ", 9) == 0);
    YW_CHECK(yw_store_job_stmt(conn, &job, "SELEKT 3", NULL) == NULL);

    /* The binder binds in order and keeps the first failure. */
    sqlite3_stmt *st = yw_store_prepare(conn, select_three, msg, sizeof msg);
    YW_CHECK(st != NULL);
    yw_store_binder_t b = YW_STORE_BINDER(st);
    yw_store_bind_next_i64(&b, INT64_MIN);
    yw_store_bind_next_f64(&b, 2.5);
    yw_store_bind_next_text(&b, NULL); /* binds "" */
    YW_CHECK_INT(b.rc, ==, SQLITE_OK);
    YW_CHECK_INT(b.n, ==, 3);
    YW_CHECK_INT(sqlite3_step(st), ==, SQLITE_ROW);
    YW_CHECK(sqlite3_column_int64(st, 0) == INT64_MIN);
    YW_CHECK(sqlite3_column_double(st, 1) == 2.5);
    YW_CHECK_INT(sqlite3_column_type(st, 2), ==, SQLITE_TEXT);
    size_t len = 99;
    YW_CHECK_STR(yw_store_column_text(st, 2, &len), "");
    YW_CHECK_INT(len, ==, 0);
    yw_store_stmt_done(st);
    YW_CHECK(!sqlite3_stmt_busy(st));
    yw_store_bind_next_text(&b, "past the last parameter");
    YW_CHECK_INT(b.rc, ==, SQLITE_RANGE);
    yw_store_bind_next_i64(&b, 1); /* does nothing: the failure sticks */
    YW_CHECK_INT(b.rc, ==, SQLITE_RANGE);
    YW_CHECK_INT(b.n, ==, 4);
    yw_store_stmt_done(st);
    YW_CHECK_INT(yw_store_bind_text(st, 1, "x"), ==, SQLITE_OK);
    YW_CHECK_INT(yw_store_bind_text(st, 9, "x"), ==, SQLITE_RANGE);
    yw_store_stmt_done(st);

    /* Column text: NULL reads as "", with its length in bytes. */
    st = yw_store_prepare(conn, select_null, msg, sizeof msg);
    YW_CHECK(st != NULL);
    YW_CHECK_INT(sqlite3_step(st), ==, SQLITE_ROW);
    len = 99;
    YW_CHECK_STR(yw_store_column_text(st, 0, &len), "");
    YW_CHECK_INT(len, ==, 0);
    YW_CHECK_STR(yw_store_column_text(st, 1, &len), "abc");
    YW_CHECK_INT(len, ==, 3);
    YW_CHECK_STR(yw_store_column_text(st, 1, NULL), "abc");
    yw_store_stmt_done(st);

    /* A failure never reports OK; otherwise the status is yw_store_status()'s. */
    (void)sqlite3_exec(yw_store_db(conn), "SELEKT", NULL, NULL, NULL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_DONE, "step", msg, sizeof msg), ==,
                 GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(msg, "step: ", 6) == 0);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_OK, "x", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_ROW, "x", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_CONSTRAINT_UNIQUE, "x", msg, sizeof msg), ==,
                 GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_BUSY, "x", msg, sizeof msg), ==,
                 GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_job_fail(conn, &job, SQLITE_FULL, "insert"), ==,
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK(strncmp(job.errmsg, "insert: ", 8) == 0);
    YW_CHECK_INT(yw_store_job_failf(&job, GRPC_STATUS_NOT_FOUND, "creator %s not found", "c1"), ==,
                 GRPC_STATUS_NOT_FOUND);
    YW_CHECK_STR(job.errmsg, "creator c1 not found");
    return GRPC_STATUS_OK;
}

YW_TEST(job_helpers)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, helpers_work, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    close_store(&f, store);
    fixture_done(&f);
}

YW_TEST(status_mapping)
{
    YW_CHECK_INT(yw_store_status(SQLITE_OK), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_store_status(SQLITE_DONE), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_store_status(SQLITE_FULL), ==, GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK_INT(yw_store_status(SQLITE_READONLY), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_BUSY), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_BUSY_SNAPSHOT), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_IOERR), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_IOERR_FSYNC), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_CANTOPEN), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT_UNIQUE), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT_PRIMARYKEY), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_ERROR), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_CORRUPT), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_NOTADB), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_MISUSE), ==, GRPC_STATUS_INTERNAL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(stmt_cache),
        YW_TEST_ENTRY(job_helpers),
        YW_TEST_ENTRY(status_mapping),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
