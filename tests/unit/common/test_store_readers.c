/*
 * test_store_readers.c — unit tests of common/store_readers.c: a read sees what a write's
 * `done` reported, a statement left mid-step does not stop the next read, and a read job
 * cannot write.
 */
#include "common/store.h"

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

/* ---- writes and reads ------------------------------------------------------------- */

typedef struct {
    fixture_t *f;
    yw_store_t *store;
    put_t put;
    get_t get;
    int got;
    long long raw_v;
} write_read_t;

static void write_read_put_done(yw_store_job_t *job, grpc_status_code status)
{
    put_done(job, status);
    write_read_t *t = (write_read_t *)((char *)job - offsetof(write_read_t, put));
    YW_CHECK_INT(status, ==, GRPC_STATUS_OK);
    /* Committed before done: a connection of our own (another process) sees it. */
    t->raw_v = raw_query_int(t->f->path, "SELECT v FROM kv WHERE k = 'alpha'");
    YW_CHECK_INT(yw_store_read(t->store, &t->get.job), ==, 0);
}

YW_TEST(write_then_read)
{
    fixture_t f;
    fixture_init(&f);
    write_read_t t = {.f = &f};
    t.store = open_store(&f, 2);
    put_init(&t.put, &f, "alpha", 42, NULL);
    t.put.job.done = write_read_put_done;
    get_init(&t.get, &f, "alpha", &t.got);
    YW_CHECK_INT(yw_store_write(t.store, &t.put.job), ==, 0);
    run_until(&f, &t.got);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK(t.put.done_on_loop);
    YW_CHECK(t.put.in_tx);
    YW_CHECK_INT(t.raw_v, ==, 42);
    YW_CHECK_INT(t.get.done_calls, ==, 1);
    YW_CHECK(t.get.done_on_loop);
    YW_CHECK_INT(t.get.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(t.get.v, ==, 42);

    /* The reader's statement was left mid-step; the next read must still work. */
    int got2 = 0;
    get_t g2;
    get_init(&g2, &f, "seed", &got2);
    YW_CHECK_INT(yw_store_read(t.store, &g2.job), ==, 0);
    run_until(&f, &got2);
    YW_CHECK_INT(g2.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(g2.v, ==, 1);
    close_store(&f, t.store);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK_INT(t.get.done_calls, ==, 1);
    fixture_done(&f);
}

static grpc_status_code write_in_read_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    int rc = sqlite3_exec(yw_store_db(conn), "INSERT INTO kv VALUES('r', 1)", NULL, NULL, NULL);
    snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(yw_store_db(conn)));
    return yw_store_status(rc);
}

YW_TEST(read_jobs_cannot_write)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    int got = 0;
    get_t g;
    get_init(&g, &f, "r", &got);
    g.job.work = write_in_read_work;
    YW_CHECK_INT(yw_store_read(store, &g.job), ==, 0);
    run_until(&f, &got);
    YW_CHECK_INT(g.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(g.job.errmsg, "readonly") != NULL);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k = 'r'"), ==, 0);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(write_then_read),
        YW_TEST_ENTRY(read_jobs_cannot_write),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
