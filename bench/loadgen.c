/*
 * loadgen — a closed-loop gRPC load generator on the project's own client runtime
 * (common/client.h): keeps --inflight unary calls in flight on one channel for
 * --seconds, then prints one line:
 *
 *   method=get_creator inflight=64 seconds=10.0 calls=... ok=... errors=... qps=...
 *   p50_us=... p99_us=...
 *
 * Calls that finish during the --warmup seconds are not counted. Request ids cycle
 * through creator-000000 .. creator-(N-1), N = --creators (bench/load_creators.py
 * makes the same ids).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "common/config.h"
#include "common/runtime.h"
#include "yaowei/creator/v1/creator.pb-c.h"

typedef struct {
    yw_runtime_t *rt;
    yw_channel_t *ch;
    long inflight, creators;
    uint64_t start_ns, warm_ns, end_ns;
    int stopping;
    long live;
    unsigned long next_id;
    unsigned long calls, ok, errors;
    uint32_t *lat_us;
    size_t n_lat, cap_lat;
    char first_error[256];
    uv_timer_t timer;
} loadgen_t;

typedef struct {
    loadgen_t *lg;
    uint64_t t0;
} call_t;

static void issue(loadgen_t *lg, call_t *c);

static void record(loadgen_t *lg, uint64_t t0, uint64_t now)
{
    if (t0 < lg->warm_ns) {
        return;
    }
    if (lg->n_lat == lg->cap_lat) {
        size_t cap = lg->cap_lat ? lg->cap_lat * 2 : 1 << 20;
        uint32_t *p = realloc(lg->lat_us, cap * sizeof *p);
        if (p == NULL) {
            return;
        }
        lg->lat_us = p;
        lg->cap_lat = cap;
    }
    lg->lat_us[lg->n_lat++] = (uint32_t)((now - t0) / 1000);
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    call_t *c = arg;
    loadgen_t *lg = c->lg;
    uint64_t now = uv_hrtime();
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (c->t0 >= lg->warm_ns) {
        lg->calls++;
        if (code == GRPC_STATUS_OK) {
            lg->ok++;
            record(lg, c->t0, now);
        } else {
            if (lg->errors++ == 0) {
                snprintf(lg->first_error, sizeof lg->first_error, "%d: %s", (int)code, detail);
            }
        }
    }
    if (lg->stopping) {
        free(c);
        if (--lg->live == 0) {
            yw_channel_destroy(lg->ch);
            yw_runtime_stop(lg->rt);
        }
        return;
    }
    issue(lg, c);
}

static void issue(loadgen_t *lg, call_t *c)
{
    char id[32];
    snprintf(id, sizeof id, "creator-%06lu", lg->next_id++ % (unsigned long)lg->creators);
    Yaowei__Creator__V1__GetCreatorRequest req = YAOWEI__CREATOR__V1__GET_CREATOR_REQUEST__INIT;
    req.creator_id = id;
    c->t0 = uv_hrtime();
    int rc = yw_client_unary(lg->ch, "/yaowei.creator.v1.CreatorProfileService/GetCreator",
                             &req.base, &yaowei__creator__v1__creator__descriptor, NULL, 10000,
                             on_reply, c);
    if (rc != 0) {
        fprintf(stderr, "loadgen: cannot start a call: %s\n", strerror(-rc));
        exit(1);
    }
}

static void on_timer(uv_timer_t *t)
{
    loadgen_t *lg = t->data;
    lg->stopping = 1;
    lg->end_ns = uv_hrtime();
    uv_close((uv_handle_t *)t, NULL);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_LOADGEN_ADDR", "127.0.0.1:50051", "HOST:PORT of creator profile", NULL},
        {"inflight", NULL, "64", "calls kept in flight", NULL},
        {"seconds", NULL, "10", "measured duration", NULL},
        {"warmup", NULL, "1", "seconds before measuring", NULL},
        {"creators", NULL, "100000", "ids cycle through creator-000000..N-1", NULL},
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "loadgen", "closed-loop GetCreator load");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long inflight, seconds, warmup, creators;
    char err[256];
    if (yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "creators", &creators, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (inflight < 1 || seconds < 1 || warmup < 0 || creators < 1) {
        fprintf(stderr, "loadgen: --inflight, --seconds, --creators must be >= 1\n");
        return 2;
    }
    loadgen_t lg = {.inflight = inflight, .creators = creators};
    if ((rc = yw_runtime_create(&lg.rt)) != 0 ||
        (rc = yw_channel_create(lg.rt, yw_config_get(opts, n, "addr"), &lg.ch)) != 0) {
        fprintf(stderr, "loadgen: cannot start: %d\n", rc);
        return 1;
    }
    uv_loop_t *loop = yw_runtime_loop(lg.rt);
    uv_update_time(loop);
    lg.start_ns = uv_hrtime();
    lg.warm_ns = lg.start_ns + (uint64_t)warmup * 1000000000ull;
    uv_timer_init(loop, &lg.timer);
    lg.timer.data = &lg;
    uv_timer_start(&lg.timer, on_timer, (uint64_t)(warmup + seconds) * 1000, 0);
    for (long i = 0; i < inflight; i++) {
        call_t *c = calloc(1, sizeof *c);
        if (c == NULL) {
            return 1;
        }
        c->lg = &lg;
        lg.live++;
        issue(&lg, c);
    }
    yw_runtime_run(lg.rt);
    yw_runtime_destroy(lg.rt);

    double secs = (double)(lg.end_ns - lg.warm_ns) / 1e9;
    qsort(lg.lat_us, lg.n_lat, sizeof *lg.lat_us, cmp_u32);
    uint32_t p50 = lg.n_lat ? lg.lat_us[lg.n_lat / 2] : 0;
    uint32_t p99 = lg.n_lat ? lg.lat_us[(size_t)((double)lg.n_lat * 0.99)] : 0;
    printf("method=get_creator inflight=%lld seconds=%.1f calls=%lu ok=%lu errors=%lu qps=%.0f "
           "p50_us=%u p99_us=%u\n",
           inflight, secs, lg.calls, lg.ok, lg.errors, (double)lg.ok / secs, p50, p99);
    if (lg.errors > 0) {
        fprintf(stderr, "loadgen: first error: %s\n", lg.first_error);
    }
    free(lg.lat_us);
    return lg.ok > 0 ? 0 : 1;
}
