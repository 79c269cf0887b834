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
    yw_channel_t *ch; /* one of lp->ch: slot mod the number of addresses */
    uv_timer_t pause; /* the slot's next call after a failed one (BENCH_FAIL_PAUSE_MS) */
    uint64_t t0;
} bench__slot_t;

struct st_bench__loop_t {
    const bench_loop_cfg_t *cfg;
    bench_loop_result_t *res;
    yw_runtime_t *rt;
    yw_channel_t *ch[BENCH_ADDRS_MAX];
    int n_ch;
    uv_timer_t timer;
    int phase;
    long live;
    long n_slots; /* slots started, each with its pause timer initialized */
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

static void bench__channels_destroy(bench__loop_t *lp)
{
    for (int i = 0; i < lp->n_ch; i++) {
        yw_channel_destroy(lp->ch[i]);
        lp->ch[i] = NULL;
    }
    lp->n_ch = 0;
}

/**
 * Opens one channel per address of `list` ("HOST:PORT[,HOST:PORT...]"). Returns 0, or
 * -EINVAL for an empty address or more than BENCH_ADDRS_MAX, or the channel's error;
 * on an error no channel stays open.
 */
static int bench__channels_open(bench__loop_t *lp, const char *list)
{
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        char addr[256];
        if (len == 0 || len >= sizeof addr || lp->n_ch == BENCH_ADDRS_MAX) {
            fprintf(stderr,
                    "bench: bad address list %s: expected 1 to %d HOST:PORT, "
                    "comma-separated\n",
                    list, BENCH_ADDRS_MAX);
            bench__channels_destroy(lp);
            return -EINVAL;
        }
        memcpy(addr, p, len);
        addr[len] = '\0';
        int rc = yw_channel_create(lp->rt, addr, &lp->ch[lp->n_ch]);
        if (rc != 0) {
            fprintf(stderr, "bench: cannot open a channel to %s: %s\n", addr, strerror(-rc));
            bench__channels_destroy(lp);
            return rc;
        }
        lp->n_ch++;
        if (p[len] == '\0') {
            return 0;
        }
        p += len + 1;
    }
}

static void bench__slot_done(bench__loop_t *lp)
{
    if (--lp->live > 0) {
        return;
    }
    if (lp->cfg->max_requests > 0) {
        bench__window_close(lp);
    }
    uv_close((uv_handle_t *)&lp->timer, NULL);
    for (long i = 0; i < lp->n_slots; i++) {
        uv_close((uv_handle_t *)&lp->slots[i].pause, NULL);
    }
    bench__channels_destroy(lp);
    yw_runtime_stop(lp->rt);
}

/** Whether a slot whose call completed starts another one. */
static int bench__more(const bench__loop_t *lp)
{
    return lp->cfg->max_requests > 0 ? lp->res->requests < (unsigned long long)lp->cfg->max_requests
                                     : lp->phase != BENCH_STOP;
}

static void bench__on_pause(uv_timer_t *t);

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
    if (!bench__more(lp)) {
        bench__slot_done(lp);
    } else if (code != GRPC_STATUS_OK) {
        /* Not at once: a channel in TRANSIENT_FAILURE fails every call without sending
         * it, and a slot that went again at once would spin building requests, taking the
         * CPU the server needs to come back (all on the same cores). */
        uv_timer_start(&s->pause, bench__on_pause, BENCH_FAIL_PAUSE_MS, 0);
    } else {
        bench__issue(lp, s);
    }
}

static void bench__on_pause(uv_timer_t *t)
{
    bench__slot_t *s = t->data;
    if (bench__more(s->lp)) {
        bench__issue(s->lp, s);
    } else {
        bench__slot_done(s->lp);
    }
}

static void bench__issue(bench__loop_t *lp, bench__slot_t *s)
{
    const ProtobufCMessage *req = lp->cfg->next(lp->cfg->arg, s->slot, lp->res->requests++);
    s->t0 = bench_now_ns();
    int rc = yw_client_unary(s->ch, lp->cfg->method, req, lp->cfg->resp_desc, NULL,
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
    if ((rc = bench__channels_open(&lp, cfg->addr)) != 0) {
        yw_runtime_destroy(lp.rt);
        return rc;
    }
    lp.slots = calloc((size_t)cfg->inflight, sizeof *lp.slots);
    if (lp.slots == NULL) {
        bench__channels_destroy(&lp);
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
    for (long i = 0; i < n && lp.n_ch > 0; i++) {
        lp.slots[i].lp = &lp;
        lp.slots[i].slot = i;
        lp.slots[i].ch = lp.ch[i % lp.n_ch];
        uv_timer_init(loop, &lp.slots[i].pause);
        lp.slots[i].pause.data = &lp.slots[i];
        lp.n_slots = i + 1;
    }
    for (long i = 0; i < lp.n_slots; i++) {
        bench__issue(&lp, &lp.slots[i]);
    }
    yw_runtime_run(lp.rt);
    yw_runtime_destroy(lp.rt);
    free(lp.slots);
    res->seconds = (double)(lp.window_end - lp.window_start) / 1e9;
    return 0;
}
