/*
 * test_sql.c — unit tests of common/sql.c on SQLite (store_sql.c's half): steps, columns
 * (NULL, text lengths), changes, errors to statuses, binds kept until the step, cached
 * statements reused, and the calls that are no-ops on SQLite. PostgreSQL's half is
 * tested against a real server (test_store_pg.c, tests/integration/test_store_pg.py).
 */
#include "common/sql.h"

#include <errno.h>
#include <stdint.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

static const char sql_select_kinds[] = "SELECT ?1, ?2, ?3, ?4";
static const char sql_select_k[] = "SELECT k, v FROM kv ORDER BY k";
static const char sql_insert[] = "INSERT INTO kv(k, v) VALUES (?1, ?2)";
static const char sql_update_all[] = "UPDATE kv SET v = v + 1";
static const char sql_select_one[] = "SELECT ?1";

static grpc_status_code steps_work(yw_store_conn_t *conn, void *arg)
{
    char msg[256];
    YW_CHECK_INT(yw_sql_backend(conn), ==, YW_SQL_SQLITE);

    /* Every type, NULL included; text lengths in bytes. */
    yw_sql_t *st = yw_sql_prepare(conn, sql_select_kinds, msg, sizeof msg);
    YW_CHECK(st != NULL);
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_i64(&b, INT64_MIN);
    yw_sql_bind_next_f64(&b, 0.1);
    yw_sql_bind_next_text(&b, "h\xc3\xa9llo");
    YW_CHECK_INT(b.n, ==, 3);
    yw_sql_bind_null(st, 4);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    YW_CHECK(yw_sql_column_i64(st, 0) == INT64_MIN);
    YW_CHECK(yw_sql_column_f64(st, 1) == 0.1);
    size_t len = 0;
    YW_CHECK_STR(yw_sql_column_text(st, 2, &len), "h\xc3\xa9llo");
    YW_CHECK_INT(len, ==, 6);
    YW_CHECK(!yw_sql_column_is_null(st, 2));
    YW_CHECK(yw_sql_column_is_null(st, 3));
    YW_CHECK_INT(yw_sql_column_i64(st, 3), ==, 0);
    YW_CHECK(yw_sql_column_f64(st, 3) == 0.0);
    len = 99;
    YW_CHECK_STR(yw_sql_column_text(st, 3, &len), "");
    YW_CHECK_INT(len, ==, 0);
    YW_CHECK_STR(yw_sql_column_text(st, 3, NULL), "");
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_DONE);
    YW_CHECK_INT(yw_sql_changes(st), ==, 0);
    yw_sql_done(st);

    /* The same pointer: the cached statement, its bindings cleared. */
    yw_sql_t *again = yw_sql_prepare(conn, sql_select_kinds, msg, sizeof msg);
    YW_CHECK(again == st);
    YW_CHECK_INT(yw_sql_step(again), ==, YW_SQL_ROW);
    YW_CHECK(yw_sql_column_is_null(again, 0));
    yw_sql_done(again);
    /* ... and bound anew, reused without yw_sql_done() in between. */
    st = yw_sql_prepare(conn, sql_select_one, msg, sizeof msg);
    yw_sql_bind_text(st, 1, "first");
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    st = yw_sql_prepare(conn, sql_select_one, msg, sizeof msg);
    yw_sql_bind_i64(st, 1, 42);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    YW_CHECK_INT(yw_sql_column_i64(st, 0), ==, 42);
    YW_CHECK_STR(yw_sql_column_text(st, 0, NULL), "42");
    yw_sql_done(st);
    yw_sql_done(NULL);

    /* Changes: one insert, then an update of every row. */
    st = yw_sql_prepare(conn, sql_insert, msg, sizeof msg);
    yw_sql_bind_text(st, 1, "a");
    yw_sql_bind_i64(st, 2, 10);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_DONE);
    YW_CHECK_INT(yw_sql_changes(st), ==, 1);
    yw_sql_done(st);
    st = yw_sql_prepare(conn, sql_update_all, msg, sizeof msg);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_DONE);
    YW_CHECK_INT(yw_sql_changes(st), ==, 2); /* seed and a */
    yw_sql_done(st);

    /* Rows in order, then DONE. */
    st = yw_sql_prepare(conn, sql_select_k, msg, sizeof msg);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    YW_CHECK_STR(yw_sql_column_text(st, 0, NULL), "a");
    YW_CHECK_INT(yw_sql_column_i64(st, 1), ==, 11);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    YW_CHECK_STR(yw_sql_column_text(st, 0, NULL), "seed");
    YW_CHECK_INT(yw_sql_column_i64(st, 1), ==, 2);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_DONE);
    yw_sql_done(st);
    return GRPC_STATUS_OK;
}

YW_TEST(steps_columns_changes)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, steps_work, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'a'"), ==, 11);
    close_store(&f, store);
    fixture_done(&f);
}

static grpc_status_code errors_work(yw_store_conn_t *conn, void *arg)
{
    char msg[256];
    yw_store_job_t job;
    memset(&job, 0, sizeof job);

    /* No error on the connection: a failure still never reports OK. */
    YW_CHECK(yw_sql_prepare(conn, sql_select_one, msg, sizeof msg) != NULL);
    YW_CHECK_INT(yw_sql_fail(conn, "lookup", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(msg, "lookup: ", 8) == 0);

    /* A unique key violated: ALREADY_EXISTS, with SQLite's message. */
    yw_sql_t *st = yw_sql_prepare(conn, sql_insert, msg, sizeof msg);
    yw_sql_bind_text(st, 1, "seed");
    yw_sql_bind_i64(st, 2, 5);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ERROR);
    yw_sql_done(st);
    YW_CHECK_INT(yw_sql_job_fail(conn, &job, "insert kv"), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_STR(job.errmsg, "insert kv: UNIQUE constraint failed: kv.k");
    /* The cached statement works again after the failure. */
    st = yw_sql_prepare(conn, sql_insert, msg, sizeof msg);
    yw_sql_bind_text(st, 1, "b");
    yw_sql_bind_i64(st, 2, 5);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_DONE);
    YW_CHECK_INT(yw_sql_changes(st), ==, 1);
    yw_sql_done(st);

    /* NOT NULL is a constraint too. */
    st = yw_sql_prepare(conn, sql_insert, msg, sizeof msg);
    yw_sql_bind_text(st, 1, "c");
    yw_sql_bind_null(st, 2);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ERROR);
    yw_sql_done(st);
    YW_CHECK_INT(yw_sql_fail(conn, "insert", msg, sizeof msg), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK(strstr(msg, "NOT NULL constraint failed") != NULL);

    /* A bind that fails is kept and reported by the step, binds after it do nothing. */
    st = yw_sql_prepare(conn, sql_select_one, msg, sizeof msg);
    yw_sql_bind_i64(st, 7, 1);
    yw_sql_bind_i64(st, 1, 1);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ERROR);
    yw_sql_done(st);
    YW_CHECK_INT(yw_sql_fail(conn, "select", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(msg, "select: bind ?7: ", 17) == 0);
    /* ... and yw_sql_done() forgets it. */
    st = yw_sql_prepare(conn, sql_select_one, msg, sizeof msg);
    yw_sql_bind_i64(st, 1, 3);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    yw_sql_done(st);

    /* A prepare error: NULL, "prepare: ..." and INTERNAL. */
    YW_CHECK(yw_sql_prepare(conn, "SELEKT 1", msg, sizeof msg) == NULL);
    YW_CHECK(strncmp(msg, "prepare: ", 9) == 0);
    YW_CHECK(strstr(msg, "syntax error") != NULL);
    grpc_status_code code = GRPC_STATUS_OK;
    YW_CHECK(yw_sql_job_stmt(conn, &job, "SELEKT 2", &code) == NULL);
    YW_CHECK_INT(code, ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(job.errmsg, "prepare: ", 9) == 0);
    YW_CHECK_INT(yw_sql_fail(conn, "prepare", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(yw_sql_step(NULL) == YW_SQL_ERROR);

    /* exec: texts bound in order; a failure reported as job_fail. */
    const char *texts[] = {"d", "7"};
    YW_CHECK_INT(yw_sql_job_exec(conn, &job, sql_insert, texts, 2, "exec"), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_sql_job_exec(conn, &job, sql_insert, texts, 2, "exec d"), ==,
                 GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_STR(job.errmsg, "exec d: UNIQUE constraint failed: kv.k");

    /* Lock and notify: nothing to do on SQLite. */
    YW_CHECK_INT(yw_sql_job_lock(conn, &job, "k"), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_sql_job_notify(conn, &job, "ch", "p"), ==, GRPC_STATUS_OK);
    return GRPC_STATUS_OK;
}

YW_TEST(errors_to_statuses)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, errors_work, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'd'"), ==, 7);
    YW_CHECK_INT(yw_store_is_postgres(store), ==, 0);
    YW_CHECK_INT(yw_store_available(store), ==, 1);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- through the store's threads -------------------------------------------------- */

typedef struct {
    yw_store_job_t job;
    const char *k;
    int64_t v;
    int done;
    grpc_status_code status;
    char errmsg[256];
} sql_job_t;

static grpc_status_code insert_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    sql_job_t *j = (sql_job_t *)job;
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_insert, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, j->k);
    yw_sql_bind_i64(st, 2, j->v);
    int rc = yw_sql_step(st);
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : yw_sql_job_fail(conn, job, "insert kv");
}

static const char sql_get[] = "SELECT v FROM kv WHERE k = ?1";

static grpc_status_code get_v_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    sql_job_t *j = (sql_job_t *)job;
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_get, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, j->k);
    int rc = yw_sql_step(st);
    j->v = rc == YW_SQL_ROW ? yw_sql_column_i64(st, 0) : -1;
    yw_sql_done(st);
    return rc == YW_SQL_ERROR ? yw_sql_job_fail(conn, job, "get kv") : GRPC_STATUS_OK;
}

static void sql_job_done(yw_store_job_t *job, grpc_status_code status)
{
    sql_job_t *j = (sql_job_t *)job;
    j->done = 1;
    j->status = status;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", job->errmsg);
}

YW_TEST(jobs_on_store_threads)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    sql_job_t put = {.job = {.work = insert_work, .done = sql_job_done}, .k = "x", .v = 3};
    sql_job_t dup = {.job = {.work = insert_work, .done = sql_job_done}, .k = "x", .v = 4};
    YW_CHECK_INT(yw_store_write(store, &put.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &dup.job), ==, 0);
    run_until(&f, &dup.done);
    run_until(&f, &put.done);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(dup.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_STR(dup.errmsg, "insert kv: UNIQUE constraint failed: kv.k");

    sql_job_t get = {.job = {.work = get_v_work, .done = sql_job_done}, .k = "x"};
    YW_CHECK_INT(yw_store_read(store, &get.job), ==, 0);
    run_until(&f, &get.done);
    YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(get.v, ==, 3);
    close_store(&f, store);
    fixture_done(&f);
}

static void never_called(void *arg, const char *payload)
{
    YW_CHECK(!"listen callback called on SQLite");
}

YW_TEST(listen_on_sqlite)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    YW_CHECK_INT(yw_store_listen(store, "creators", never_called, NULL), ==, 0);
    YW_CHECK_INT(yw_store_listen(store, "", never_called, NULL), ==, -EINVAL);
    close_store(&f, store);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(steps_columns_changes),
        YW_TEST_ENTRY(errors_to_statuses),
        YW_TEST_ENTRY(jobs_on_store_threads),
        YW_TEST_ENTRY(listen_on_sqlite),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
