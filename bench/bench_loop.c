/*
 * bench_loop.c — the closed-loop unary driver of the load generators. See bench_loop.h.
 */
#include "bench/bench_loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/client.h"
#include "common/runtime.h"
#include "common/server.h"

enum { BENCH_WARMUP, BENCH_MEASURE, BENCH_STOP };

typedef struct st_bench__loop_t bench__loop_t;

typedef struct {
    bench__loop_t *lp;
    long slot;
    uint64_t t0;
} bench__slot_t;

struct st_bench__loop_t {
    const bench_loop_cfg_t *cfg;
    bench_loop_result_t *res;
    yw_runtime_t *rt;
    yw_channel_t *ch;
    uv_timer_t timer;
    int phase;
    long live;
    uint64_t window_start, window_end;
    double cpu0, self0;
    bench__slot_t *slots;
};

/** CPU time of this process (every thread: the loop and gRPC's own), in seconds. */
static double bench__self_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void bench__window_open(bench__loop_t *lp)
{
    lp->phase = BENCH_MEASURE;
    lp->cpu0 = lp->cfg->server ? bench_cpu_seconds(lp->cfg->server) : 0;
    lp->self0 = bench__self_cpu_seconds();
    lp->window_start = bench_now_ns();
}

static void bench__window_close(bench__loop_t *lp)
{
    lp->window_end = bench_now_ns();
    if (lp->cfg->server != NULL) {
        lp->res->server_cpu_s = bench_cpu_seconds(lp->cfg->server) - lp->cpu0;
    }
    lp->res->client_cpu_s = bench__self_cpu_seconds() - lp->self0;
    lp->phase = BENCH_STOP;
}

static void bench__issue(bench__loop_t *lp, bench__slot_t *s);

static void bench__slot_done(bench__loop_t *lp)
{
    if (--lp->live > 0) {
        return;
    }
    if (lp->cfg->max_requests > 0) {
        bench__window_close(lp);
    }
    uv_close((uv_handle_t *)&lp->timer, NULL);
    yw_channel_destroy(lp->ch);
    lp->ch = NULL;
    yw_runtime_stop(lp->rt);
}

static void bench__on_reply(void *arg, grpc_status_code code, const char *detail,
                            ProtobufCMessage *resp)
{
    bench__slot_t *s = arg;
    bench__loop_t *lp = s->lp;
    bench_loop_result_t *res = lp->res;
    uint64_t now = bench_now_ns();
    int measured = lp->phase == BENCH_MEASURE;
    if (measured) {
        if (code == GRPC_STATUS_OK) {
            res->ok++;
            (void)bench_lat_add(&res->lat, now - s->t0);
        } else {
            res->errors++;
        }
    }
    if (code != GRPC_STATUS_OK && res->first_error[0] == '\0') {
        snprintf(res->first_error, sizeof res->first_error, "%s: %s", yw_status_name(code), detail);
    }
    if (lp->cfg->reply != NULL) {
        lp->cfg->reply(lp->cfg->arg, s->slot, code, resp, measured);
    }
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    int more = lp->cfg->max_requests > 0 ? res->requests < (unsigned long long)lp->cfg->max_requests
                                         : lp->phase != BENCH_STOP;
    if (more) {
        bench__issue(lp, s);
    } else {
        bench__slot_done(lp);
    }
}

static void bench__issue(bench__loop_t *lp, bench__slot_t *s)
{
    const ProtobufCMessage *req = lp->cfg->next(lp->cfg->arg, s->slot, lp->res->requests++);
    s->t0 = bench_now_ns();
    int rc = yw_client_unary(lp->ch, lp->cfg->method, req, lp->cfg->resp_desc, NULL,
                             lp->cfg->timeout_ms, bench__on_reply, s);
    if (rc != 0) {
        snprintf(lp->res->first_error, sizeof lp->res->first_error, "cannot start a call: %s",
                 strerror(-rc));
        bench__slot_done(lp);
    }
}

static void bench__on_timer(uv_timer_t *t)
{
    bench__loop_t *lp = t->data;
    if (lp->phase == BENCH_WARMUP) {
        bench__window_open(lp);
        uv_timer_start(&lp->timer, bench__on_timer, (uint64_t)lp->cfg->measure_ms, 0);
    } else if (lp->phase == BENCH_MEASURE) {
        bench__window_close(lp);
    }
}

int bench_loop_run(const bench_loop_cfg_t *cfg, bench_loop_result_t *res)
{
    memset(res, 0, sizeof *res);
    bench__loop_t lp = {.cfg = cfg, .res = res};
    int rc = yw_runtime_create(&lp.rt);
    if (rc != 0) {
        fprintf(stderr, "bench: cannot create the runtime: %s\n", strerror(-rc));
        return rc;
    }
    if ((rc = yw_channel_create(lp.rt, cfg->addr, &lp.ch)) != 0) {
        fprintf(stderr, "bench: cannot open a channel to %s: %s\n", cfg->addr, strerror(-rc));
        yw_runtime_destroy(lp.rt);
        return rc;
    }
    lp.slots = calloc((size_t)cfg->inflight, sizeof *lp.slots);
    if (lp.slots == NULL) {
        yw_channel_destroy(lp.ch);
        yw_runtime_destroy(lp.rt);
        return -ENOMEM;
    }
    uv_loop_t *loop = yw_runtime_loop(lp.rt);
    uv_update_time(loop);
    uv_timer_init(loop, &lp.timer);
    lp.timer.data = &lp;
    if (cfg->max_requests > 0) {
        bench__window_open(&lp);
    } else {
        lp.phase = BENCH_WARMUP;
        uv_timer_start(&lp.timer, bench__on_timer, (uint64_t)cfg->warmup_ms, 0);
    }
    long n = cfg->inflight;
    if (cfg->max_requests > 0 && cfg->max_requests < n) {
        n = (long)cfg->max_requests;
    }
    lp.live = n;
    for (long i = 0; i < n && lp.ch != NULL; i++) {
        lp.slots[i].lp = &lp;
        lp.slots[i].slot = i;
        bench__issue(&lp, &lp.slots[i]);
    }
    yw_runtime_run(lp.rt);
    yw_runtime_destroy(lp.rt);
    free(lp.slots);
    res->seconds = (double)(lp.window_end - lp.window_start) / 1e9;
    return 0;
}
