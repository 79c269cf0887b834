/*
 * test_store.c — unit tests of common/store.c: a bad config refused before any file is
 * made, an empty schema, and close (queued jobs finish first; close from a done callback).
 * The other files of the store have their own (test_store_open.c, test_store_queue.c,
 * test_store_writer.c, test_store_readers.c, test_store_sql.c); what they share is in
 * test_store_fixture.h. Every test works in a fresh directory and runs its own uv loop.
 */
#include "common/store.h"

#include <errno.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

YW_TEST(bad_config_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = NULL;
    char err[256] = "";
    yw_store_config_t cfg = {.path = ":memory:"};
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, ":memory:") != NULL);
    cfg.path = NULL;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    static const yw_migration_t gap[] = {{1, "CREATE TABLE a(x);"}, {3, "CREATE TABLE b(x);"}};
    cfg.path = f.path;
    cfg.migrations = gap;
    cfg.n_migrations = 2;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "migrations[1]") != NULL);
    cfg.n_migrations = 0;
    cfg.readers = -1;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(store == NULL);
    YW_CHECK(!file_exists(f.path));
    snprintf(f.path, sizeof f.path, "%s/no/such/dir/test.db", f.dir);
    cfg.readers = 0;
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(strstr(err, "no/such/dir") != NULL);
    snprintf(f.path, sizeof f.path, "%s/test.db", f.dir);
    fixture_done(&f);
}

YW_TEST(empty_schema_opens)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 0);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 0);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- close ------------------------------------------------------------------------ */

YW_TEST(close_flushes_queued_jobs)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    enum { N = 50, R = 8 };
    put_t puts[N];
    get_t gets[R];
    int remaining = N;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "q%d", i);
        put_init(&puts[i], &f, k, i, &remaining);
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    for (int i = 0; i < R; i++) {
        get_init(&gets[i], &f, "seed", NULL);
        YW_CHECK_INT(yw_store_read(store, &gets[i].job), ==, 0);
    }
    yw_store_close(store, on_closed, &f);
    /* Nothing runs on the loop until it runs. */
    YW_CHECK_INT(remaining, ==, N);
    YW_CHECK_INT(f.closed, ==, 0);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(remaining, ==, 0);
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(puts[i].done_calls, ==, 1);
        YW_CHECK(puts[i].done_on_loop);
        YW_CHECK_INT(puts[i].status, ==, GRPC_STATUS_OK);
    }
    for (int i = 0; i < R; i++) {
        YW_CHECK_INT(gets[i].done_calls, ==, 1);
        YW_CHECK(gets[i].done_on_loop);
        YW_CHECK_INT(gets[i].status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(gets[i].v, ==, 1);
    }
    /* The last connection to close checkpointed the WAL and removed it. */
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    YW_CHECK(!file_exists(wal));
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k LIKE 'q%'"), ==, N);
    fixture_done(&f);
}

/** Closes the store from inside a done callback; later writes are refused. */
typedef struct {
    put_t put;
    yw_store_t *store;
    int late_rc;
} close_in_done_t;

static void close_in_done(yw_store_job_t *job, grpc_status_code status)
{
    close_in_done_t *t = (close_in_done_t *)job;
    put_done(job, status);
    yw_store_close(t->store, on_closed, t->put.f);
    static put_t late;
    put_init(&late, t->put.f, "late", 1, NULL);
    t->late_rc = yw_store_write(t->store, &late.job);
}

YW_TEST(close_from_done)
{
    fixture_t f;
    fixture_init(&f);
    close_in_done_t t;
    t.store = open_store(&f, 2);
    put_init(&t.put, &f, "x", 1, NULL);
    t.put.job.done = close_in_done;
    YW_CHECK_INT(yw_store_write(t.store, &t.put.job), ==, 0);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK_INT(t.put.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(t.late_rc, ==, -ESHUTDOWN);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(bad_config_refused),
        YW_TEST_ENTRY(empty_schema_opens),
        YW_TEST_ENTRY(close_flushes_queued_jobs),
        YW_TEST_ENTRY(close_from_done),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
