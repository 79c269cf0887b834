/* attr_work.c — a worker thread with a job queue. See attr_work.h. */
#include "services/attribution/attr_work.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct st_attr_work_t {
    uv_async_t async;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    attr_job_t *q_head, *q_tail; /* to run */
    attr_job_t *d_head, *d_tail; /* ran, waiting for `after` */
    int closing;
    int pending; /* loop side: submitted, `after` not yet run */
    void (*closed)(void *arg);
    void *closed_arg;
};

static void *attr__work_main(void *arg)
{
    attr_work_t *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->q_head == NULL && !w->closing) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        attr_job_t *job = w->q_head;
        if (job != NULL) {
            w->q_head = job->next;
            if (w->q_head == NULL) {
                w->q_tail = NULL;
            }
        }
        pthread_mutex_unlock(&w->mu);
        if (job == NULL) {
            break; /* closing, and nothing left */
        }
        job->work(job);
        job->next = NULL;
        pthread_mutex_lock(&w->mu);
        if (w->d_tail != NULL) {
            w->d_tail->next = job;
        } else {
            w->d_head = job;
        }
        w->d_tail = job;
        pthread_mutex_unlock(&w->mu);
        (void)uv_async_send(&w->async);
    }
    return NULL;
}

static void attr__work_drain(attr_work_t *w)
{
    pthread_mutex_lock(&w->mu);
    attr_job_t *done = w->d_head;
    w->d_head = w->d_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (done != NULL) {
        attr_job_t *next = done->next;
        w->pending--;
        done->after(done); /* may free `done` */
        done = next;
    }
}

static void attr__work_on_async(uv_async_t *h)
{
    attr__work_drain(h->data);
}

static void attr__work_free(attr_work_t *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void attr__work_on_closed(uv_handle_t *h)
{
    attr_work_t *w = h->data;
    void (*closed)(void *) = w->closed;
    void *arg = w->closed_arg;
    attr__work_free(w);
    if (closed != NULL) {
        closed(arg);
    }
}

int attr_work_open(uv_loop_t *loop, attr_work_t **out)
{
    *out = NULL;
    attr_work_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    int rc = uv_async_init(loop, &w->async, attr__work_on_async);
    if (rc != 0) {
        attr__work_free(w);
        return rc;
    }
    w->async.data = w;
    /* The worker takes no signals: the loop thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&w->thread, NULL, attr__work_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        w->closed = NULL;
        uv_close((uv_handle_t *)&w->async, attr__work_on_closed);
        return -e;
    }
    w->thread_started = 1;
    *out = w;
    return 0;
}

int attr_work_submit(attr_work_t *w, attr_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->closing) {
        pthread_mutex_unlock(&w->mu);
        return -ESHUTDOWN;
    }
    if (w->q_tail != NULL) {
        w->q_tail->next = job;
    } else {
        w->q_head = job;
    }
    w->q_tail = job;
    w->pending++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int attr_work_pending(const attr_work_t *w)
{
    return w->pending;
}

void attr_work_close(attr_work_t *w, void (*closed)(void *arg), void *arg)
{
    pthread_mutex_lock(&w->mu);
    if (w->closing) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    w->closing = 1;
    w->closed = closed;
    w->closed_arg = arg;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = 0;
    }
    attr__work_drain(w);
    uv_close((uv_handle_t *)&w->async, attr__work_on_closed);
}
