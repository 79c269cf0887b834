/*
 * test_attr_work.c — attr_work.c: jobs run one at a time in the order submitted, each
 * `after` on the loop; close lets the queue finish, runs every `after` before it returns
 * and refuses what comes later.
 */
#include "services/attribution/attr_work.h"

#include <errno.h>
#include <pthread.h>

#include "tests/unit/test.h"

typedef struct {
    attr_job_t job;
    int id;
    int *order; /* ids in the order `work` ran (worker thread) */
    int *n_order;
    int *afters; /* how many `after` ran (loop thread) */
    pthread_t loop_thread;
    int after_on_loop;
} job_t;

static void work(attr_job_t *j)
{
    job_t *x = (job_t *)j;
    usleep(x->id % 3 == 0 ? 2000 : 0); /* some take longer: the order must not change */
    x->order[(*x->n_order)++] = x->id;
}

static void after(attr_job_t *j)
{
    job_t *x = (job_t *)j;
    x->after_on_loop = pthread_equal(pthread_self(), x->loop_thread);
    (*x->afters)++;
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

YW_TEST(jobs_run_in_order_and_after_runs_on_the_loop)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    attr_work_t *w = NULL;
    YW_CHECK_INT(attr_work_open(&loop, &w), ==, 0);
    enum { N = 32 };
    job_t jobs[N];
    int order[N], n_order = 0, afters = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (job_t){.id = i, .order = order, .n_order = &n_order, .afters = &afters};
        jobs[i].loop_thread = pthread_self();
        jobs[i].job.work = work;
        jobs[i].job.after = after;
        YW_CHECK_INT(attr_work_submit(w, &jobs[i].job), ==, 0);
    }
    YW_CHECK_INT(attr_work_pending(w), ==, N);
    for (int k = 0; k < 20000 && afters < N; k++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(100);
    }
    YW_CHECK_INT(afters, ==, N);
    YW_CHECK_INT(attr_work_pending(w), ==, 0);
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(order[i], ==, i);
        YW_CHECK(jobs[i].after_on_loop);
    }
    int closed = 0;
    attr_work_close(w, on_closed, &closed);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

YW_TEST(close_finishes_the_queue_and_refuses_later_jobs)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    attr_work_t *w = NULL;
    YW_CHECK_INT(attr_work_open(&loop, &w), ==, 0);
    enum { N = 8 };
    job_t jobs[N + 1];
    int order[N + 1], n_order = 0, afters = 0;
    for (int i = 0; i <= N; i++) {
        jobs[i] = (job_t){.id = 3 * i, .order = order, .n_order = &n_order, .afters = &afters};
        jobs[i].loop_thread = pthread_self();
        jobs[i].job.work = work;
        jobs[i].job.after = after;
    }
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(attr_work_submit(w, &jobs[i].job), ==, 0);
    }
    int closed = 0;
    attr_work_close(w, on_closed, &closed);
    /* Every queued job ran, and its `after` too, before close returned. */
    YW_CHECK_INT(n_order, ==, N);
    YW_CHECK_INT(afters, ==, N);
    YW_CHECK_INT(closed, ==, 0); /* `closed` comes later, on the loop */
    YW_CHECK_INT(attr_work_submit(w, &jobs[N].job), ==, -ESHUTDOWN);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(closed, ==, 1);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(jobs_run_in_order_and_after_runs_on_the_loop),
        YW_TEST_ENTRY(close_finishes_the_queue_and_refuses_later_jobs),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
