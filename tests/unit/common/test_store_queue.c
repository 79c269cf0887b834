/*
 * test_store_queue.c — unit tests of common/store_queue.c: jobs queued after close and
 * malformed jobs are refused, and their `done` is never called. (That `done` runs on the
 * loop thread is checked by the writer's and the readers' tests.)
 */
#include "common/store.h"

#include <errno.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

static int never_called;

static void never_done(yw_store_job_t *job, grpc_status_code status)
{
    never_called++;
}

YW_TEST(jobs_after_close_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    yw_store_close(store, on_closed, &f);
    put_t p;
    put_init(&p, &f, "late", 1, NULL);
    p.job.done = never_done;
    YW_CHECK_INT(yw_store_write(store, &p.job), ==, -ESHUTDOWN);
    get_t g;
    get_init(&g, &f, "seed", NULL);
    g.job.done = never_done;
    YW_CHECK_INT(yw_store_read(store, &g.job), ==, -ESHUTDOWN);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(never_called, ==, 0);
    fixture_done(&f);
}

YW_TEST(bad_jobs_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    put_t p;
    put_init(&p, &f, "x", 1, NULL);
    p.job.done = NULL;
    YW_CHECK_INT(yw_store_write(store, &p.job), ==, -EINVAL);
    p.job.done = put_done;
    p.job.work = NULL;
    YW_CHECK_INT(yw_store_read(store, &p.job), ==, -EINVAL);
    YW_CHECK_INT(yw_store_write(store, NULL), ==, -EINVAL);
    close_store(&f, store);
    YW_CHECK_INT(p.done_calls, ==, 0);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(jobs_after_close_refused),
        YW_TEST_ENTRY(bad_jobs_refused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
