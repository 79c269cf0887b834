/*
 * runtime.c — one thread drives gRPC C core and libuv. See runtime.h and DESIGN.md.
 *
 * Waking the loop for libuv's own events: the waker thread polls uv_backend_fd(); when
 * it is readable it queues `wake_tag` into the completion queue with an empty batch on
 * a call of a lame channel (an empty grpc_call_start_batch queues its tag at once),
 * then waits until the loop has run libuv before it polls again, so a readable fd does
 * not make it spin.
 */
#include "common/runtime.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/vec.h"

struct st_yw_runtime_t {
    uv_loop_t loop;
    grpc_completion_queue *cq;
    grpc_channel *lame;
    grpc_call *parked;
    yw_tag_t wake_tag;
    pthread_t waker;
    int waker_started;
    int quit_pipe[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake_pending; /* guarded by mu */
    int quit;         /* guarded by mu */
    int stop;         /* loop thread only */
    grpc_channel_credentials *channel_creds; /* NULL: plaintext */
    yw_tag_t **deferred;                     /* yw_runtime_defer(), loop thread only */
    size_t n_deferred, cap_deferred;
};

static void yw__wake_cb(yw_tag_t *tag, int ok)
{
    (void)tag;
    (void)ok;
}

static void *yw__waker_main(void *arg)
{
    yw_runtime_t *rt = arg;
    struct pollfd fds[2] = {
        {.fd = uv_backend_fd(&rt->loop), .events = POLLIN},
        {.fd = rt->quit_pipe[0], .events = POLLIN},
    };
    for (;;) {
        pthread_mutex_lock(&rt->mu);
        while (rt->wake_pending && !rt->quit) {
            pthread_cond_wait(&rt->cv, &rt->mu);
        }
        int quit = rt->quit;
        pthread_mutex_unlock(&rt->mu);
        if (quit) {
            break;
        }
        int n = poll(fds, 2, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (fds[1].revents != 0) {
            break;
        }
        if (fds[0].revents != 0) {
            pthread_mutex_lock(&rt->mu);
            rt->wake_pending = 1;
            pthread_mutex_unlock(&rt->mu);
            if (grpc_call_start_batch(rt->parked, NULL, 0, &rt->wake_tag, NULL) != GRPC_CALL_OK) {
                break;
            }
        }
    }
    return NULL;
}

int yw_runtime_create(yw_runtime_t **out)
{
    yw_runtime_t *rt = calloc(1, sizeof *rt);
    if (rt == NULL) {
        return -ENOMEM;
    }
    int rc = uv_loop_init(&rt->loop);
    if (rc != 0) {
        free(rt);
        return rc;
    }
    grpc_init();
    rt->cq = grpc_completion_queue_create_for_next(NULL);
    rt->lame = grpc_lame_client_channel_create("yw-waker", GRPC_STATUS_UNAVAILABLE, "waker");
    rt->wake_tag.cb = yw__wake_cb;
    if (rt->cq == NULL || rt->lame == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    rt->parked = grpc_channel_create_call(rt->lame, NULL, GRPC_PROPAGATE_DEFAULTS, rt->cq,
                                          grpc_slice_from_static_string("/yw.Runtime/Wake"), NULL,
                                          gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (rt->parked == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if (pipe(rt->quit_pipe) != 0) {
        rc = -errno;
        goto fail;
    }
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    if ((rc = pthread_create(&rt->waker, NULL, yw__waker_main, rt)) != 0) {
        rc = -rc;
        close(rt->quit_pipe[0]);
        close(rt->quit_pipe[1]);
        pthread_mutex_destroy(&rt->mu);
        pthread_cond_destroy(&rt->cv);
        goto fail;
    }
    rt->waker_started = 1;
    *out = rt;
    return 0;

fail:
    if (rt->parked != NULL) {
        grpc_call_unref(rt->parked);
    }
    if (rt->lame != NULL) {
        grpc_channel_destroy(rt->lame);
    }
    if (rt->cq != NULL) {
        grpc_completion_queue_shutdown(rt->cq);
        while (grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(rt->cq);
    }
    grpc_shutdown();
    uv_loop_close(&rt->loop);
    free(rt);
    return rc;
}

uv_loop_t *yw_runtime_loop(yw_runtime_t *rt)
{
    return &rt->loop;
}

grpc_completion_queue *yw_runtime_cq(yw_runtime_t *rt)
{
    return rt->cq;
}

void yw_runtime_set_channel_credentials(yw_runtime_t *rt, grpc_channel_credentials *creds)
{
    if (rt->channel_creds != NULL) {
        grpc_channel_credentials_release(rt->channel_creds);
    }
    rt->channel_creds = creds;
}

grpc_channel_credentials *yw_runtime_channel_credentials(yw_runtime_t *rt)
{
    return rt->channel_creds;
}

int yw_runtime_defer(yw_runtime_t *rt, yw_tag_t *tag)
{
    if (YW_VEC_GROW(rt->deferred, rt->n_deferred, rt->cap_deferred, 1, 16) != 0) {
        return -ENOMEM;
    }
    rt->deferred[rt->n_deferred++] = tag;
    return 0;
}

/* Runs what yw_runtime_defer() queued, in order, including what those queue. */
static void yw__run_deferred(yw_runtime_t *rt)
{
    for (size_t i = 0; i < rt->n_deferred; i++) {
        yw_tag_t *tag = rt->deferred[i];
        tag->cb(tag, 1);
    }
    rt->n_deferred = 0;
}

void yw_runtime_stop(yw_runtime_t *rt)
{
    rt->stop = 1;
}

int yw_runtime_run(yw_runtime_t *rt)
{
    rt->stop = 0;
    while (!rt->stop) {
        uv_update_time(&rt->loop);
        /* uv_backend_timeout() is 0 when nothing is active; then only gRPC can wake us. */
        int alive = uv_loop_alive(&rt->loop);
        int timeout = alive ? uv_backend_timeout(&rt->loop) : -1;
        gpr_timespec deadline =
            timeout < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                        : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(timeout, GPR_TIMESPAN));
        /* One completion per turn: the queue hands out queued events without polling, and
         * an extra zero-deadline drain would cost a poll of its own each time. */
        grpc_event ev = grpc_completion_queue_next(rt->cq, deadline, NULL);
        int woken = 0;
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        uv_update_time(&rt->loop);
        if (ev.type == GRPC_OP_COMPLETE) {
            yw_tag_t *tag = ev.tag;
            if (tag == &rt->wake_tag) {
                woken = 1;
            } else {
                tag->cb(tag, ev.success);
            }
        }
        if (rt->n_deferred > 0) {
            yw__run_deferred(rt);
        }
        /* Run libuv only when it has something to do: the waker saw its fd readable, a
         * timer is due, or callbacks are pending (uv_backend_timeout() is then 0). */
        if (woken || (uv_loop_alive(&rt->loop) && uv_backend_timeout(&rt->loop) == 0)) {
            uv_run(&rt->loop, UV_RUN_NOWAIT);
            if (rt->n_deferred > 0) {
                yw__run_deferred(rt);
            }
        }
        if (woken) {
            pthread_mutex_lock(&rt->mu);
            rt->wake_pending = 0;
            pthread_cond_signal(&rt->cv);
            pthread_mutex_unlock(&rt->mu);
        }
    }
    return 0;
}

static void yw__close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

void yw_runtime_destroy(yw_runtime_t *rt)
{
    if (rt->waker_started) {
        pthread_mutex_lock(&rt->mu);
        rt->quit = 1;
        pthread_cond_signal(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
        ssize_t w;
        do {
            w = write(rt->quit_pipe[1], "q", 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(rt->waker, NULL);
        close(rt->quit_pipe[0]);
        close(rt->quit_pipe[1]);
        pthread_mutex_destroy(&rt->mu);
        pthread_cond_destroy(&rt->cv);
    }
    grpc_call_unref(rt->parked);
    grpc_channel_destroy(rt->lame);
    grpc_completion_queue_shutdown(rt->cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type == GRPC_OP_COMPLETE && ev.tag != &rt->wake_tag) {
            yw_tag_t *tag = ev.tag;
            tag->cb(tag, 0);
            yw__run_deferred(rt);
        }
    }
    yw__run_deferred(rt);
    free(rt->deferred);
    grpc_completion_queue_destroy(rt->cq);
    if (rt->channel_creds != NULL) {
        grpc_channel_credentials_release(rt->channel_creds);
    }
    uv_walk(&rt->loop, yw__close_walk, NULL);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
    grpc_shutdown();
    free(rt);
}

int64_t yw_deadline_remaining_ms(gpr_timespec deadline)
{
    if (deadline.clock_type == GPR_TIMESPAN) {
        return gpr_time_to_millis(deadline);
    }
    gpr_timespec mono = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(mono, gpr_inf_future(GPR_CLOCK_MONOTONIC)) >= 0) {
        return INT64_MAX;
    }
    gpr_timespec left = gpr_time_sub(mono, gpr_now(GPR_CLOCK_MONOTONIC));
    return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

void yw_wallclock_now(int64_t *seconds, int32_t *nanos)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    *seconds = (int64_t)ts.tv_sec;
    *nanos = (int32_t)ts.tv_nsec;
}
