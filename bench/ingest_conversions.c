/*
 * ingest_conversions — load generator for attribution's join: keeps --inflight
 * RecordConversions calls of --batch orders each in flight on one channel
 * (bench/bench_loop.h) and counts the orders the service acknowledged (durable: the
 * summary comes after the SQLite commit, and each order is credited by then).
 *
 * Order i of --seed is bench_conversion(): a purchase by the viewer of one of the
 * exposures 0 .. --stored-1 of --exposure-seed (a view or a click where one is found), for
 * one of its products, within the hour after it. So every order joins stored exposures;
 * the population options must be those the exposures were sent with (bench/bench.py
 * passes the same ones to both). Order ids are o-<seed>-<i>: loadgen --method
 * explain_conversion --seed S --ids N asks for the first N of them.
 *
 * --count N sends exactly N orders (0 .. N-1); otherwise --seconds after --warmup
 * seconds. Prints one line:
 *
 *   ingest_conversions batch=1000 inflight=4 seed=... seconds=... sent=... accepted=...
 *   duplicates=... rejected=... errors=... conversions_per_s=... p50_ms=... p99_ms=...
 *   server_cpu_us_per_conversion=...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_events.h"
#include "bench/bench_loop.h"
#include "common/config.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

typedef struct {
    Yaowei__Attribution__V1__RecordConversionsRequest req;
    Yaowei__Attribution__V1__ConversionEvent *evs;
    Yaowei__Attribution__V1__ConversionEvent **ptrs;
    Google__Protobuf__Timestamp *times;
    bench_conversion_t *cs;
} slot_t;

typedef struct {
    bench_events_t ev;
    uint64_t seed, stored;
    long batch;
    long long count;
    slot_t *slots;
    unsigned long long sent, accepted, duplicates, rejected;
} gen_t;

static const ProtobufCMessage *gen_next(void *arg, long slot, uint64_t n)
{
    gen_t *g = arg;
    slot_t *s = &g->slots[slot];
    uint64_t base = n * (uint64_t)g->batch;
    size_t k = (size_t)g->batch;
    if (g->count > 0 && base + k > (uint64_t)g->count) {
        k = (size_t)((uint64_t)g->count - base);
    }
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < k; i++) {
        bench_conversion(&g->ev, g->seed, g->stored, base + i, now, &s->cs[i]);
        bench_conversion_pb(&s->cs[i], &s->evs[i], &s->times[i]);
    }
    s->req.n_events = k;
    g->sent += k;
    return &s->req.base;
}

static void gen_reply(void *arg, long slot, grpc_status_code code, const ProtobufCMessage *resp,
                      int measured)
{
    gen_t *g = arg;
    (void)slot;
    if (code == GRPC_STATUS_OK && measured) {
        const Yaowei__Attribution__V1__IngestSummary *sum =
            (const Yaowei__Attribution__V1__IngestSummary *)resp;
        g->accepted += (unsigned long long)sum->accepted;
        g->duplicates += (unsigned long long)sum->duplicates;
        g->rejected += (unsigned long long)sum->rejected;
    }
}

static void slots_free(slot_t *slots, long n)
{
    for (long i = 0; slots != NULL && i < n; i++) {
        free(slots[i].evs);
        free(slots[i].ptrs);
        free(slots[i].times);
        free(slots[i].cs);
    }
    free(slots);
}

static slot_t *slots_new(long n, long batch)
{
    slot_t *slots = calloc((size_t)n, sizeof *slots);
    if (slots == NULL) {
        return NULL;
    }
    size_t b = (size_t)batch;
    for (long i = 0; i < n; i++) {
        slot_t *s = &slots[i];
        s->evs = calloc(b, sizeof *s->evs);
        s->ptrs = calloc(b, sizeof(Yaowei__Attribution__V1__ConversionEvent *));
        s->times = calloc(b, sizeof *s->times);
        s->cs = calloc(b, sizeof *s->cs);
        if (s->evs == NULL || s->ptrs == NULL || s->times == NULL || s->cs == NULL) {
            slots_free(slots, n);
            return NULL;
        }
        yaowei__attribution__v1__record_conversions_request__init(&s->req);
        for (size_t k = 0; k < b; k++) {
            s->ptrs[k] = &s->evs[k];
        }
        s->req.events = s->ptrs;
    }
    return slots;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_BENCH_ADDR", "127.0.0.1:50053",
         "HOST:PORT of attribution; HOST:PORT,HOST:PORT,... spreads the calls in flight over "
         "several (a cluster's nodes)",
         YW_OPTION_VALUE, NULL},
        {"batch", NULL, "1000", "orders per RecordConversions call", YW_OPTION_VALUE, NULL},
        {"inflight", NULL, "4", "calls kept in flight", YW_OPTION_VALUE, NULL},
        {"count", NULL, "0", "send exactly this many orders instead of timing", YW_OPTION_VALUE,
         NULL},
        {"seconds", NULL, "10", "measured duration", YW_OPTION_VALUE, NULL},
        {"warmup", NULL, "1", "seconds before measuring", YW_OPTION_VALUE, NULL},
        {"seed", NULL, "0", "order seed: order ids are o-<seed>-<i>; 0: from the clock",
         YW_OPTION_VALUE, NULL},
        {"exposure-seed", NULL, "1", "the --seed the stored exposures were sent with",
         YW_OPTION_VALUE, NULL},
        {"stored", NULL, "1000", "exposures 0 .. N-1 of --exposure-seed are stored",
         YW_OPTION_VALUE, NULL},
        {"server-pids", NULL, "", "PID[,PID]: report their CPU per order", YW_OPTION_VALUE, NULL},
        BENCH_POPULATION_OPTIONS,
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "ingest_conversions",
                             "durable conversions/s through RecordConversions");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long batch, inflight, count, seconds, warmup, seed, xseed, stored;
    bench_events_t ev;
    char err[256];
    if (yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "count", &count, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "exposure-seed", &xseed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "stored", &stored, err, sizeof err) != 0 ||
        bench_population_parse(opts, n, &ev, err, sizeof err) != 0) {
        fprintf(stderr, "ingest_conversions: %s\n", err);
        return 2;
    }
    if (batch < 1 || batch > 10000 || inflight < 1 || inflight > 1024 || count < 0 || seconds < 1 ||
        warmup < 0 || seed < 0 || stored < 1) {
        fprintf(stderr, "ingest_conversions: bad option values (--batch 1..10000, --inflight "
                        "1..1024, --seconds and --stored >= 1, others >= 0)\n");
        return 2;
    }
    bench_pids_t server;
    if (bench_pids_parse(yw_config_get(opts, n, "server-pids"), &server) != 0) {
        fprintf(stderr, "ingest_conversions: --server-pids: expected PID[,PID...]\n");
        return 2;
    }
    ev.seed = (uint64_t)xseed;
    gen_t g = {
        .ev = ev,
        .seed = bench_seed(seed),
        .stored = (uint64_t)stored,
        .batch = (long)batch,
        .count = count,
    };
    if ((g.slots = slots_new((long)inflight, (long)batch)) == NULL) {
        fprintf(stderr, "ingest_conversions: out of memory\n");
        return 1;
    }
    bench_loop_cfg_t cfg = {
        .addr = yw_config_get(opts, n, "addr"),
        .method = "/yaowei.attribution.v1.AttributionService/RecordConversions",
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        .inflight = (long)inflight,
        .warmup_ms = warmup * 1000,
        .measure_ms = seconds * 1000,
        .max_requests = count > 0 ? (count + batch - 1) / batch : 0,
        .timeout_ms = 120000,
        .server = server.n > 0 ? &server : NULL,
        .next = gen_next,
        .reply = gen_reply,
        .arg = &g,
    };
    bench_loop_result_t res;
    rc = bench_loop_run(&cfg, &res);
    slots_free(g.slots, (long)inflight);
    if (rc != 0) {
        return 1;
    }
    double secs = res.seconds > 0 ? res.seconds : 1e-9;
    printf("ingest_conversions batch=%lld inflight=%lld seed=%llu seconds=%.2f sent=%llu "
           "accepted=%llu "
           "duplicates=%llu rejected=%llu errors=%llu conversions_per_s=%.0f p50_ms=%.1f "
           "p99_ms=%.1f server_cpu_us_per_conversion=%.2f\n",
           batch, inflight, (unsigned long long)g.seed, res.seconds, g.sent, g.accepted,
           g.duplicates, g.rejected, res.errors, (double)g.accepted / secs,
           bench_lat_quantile(&res.lat, 0.50) / 1000.0, bench_lat_quantile(&res.lat, 0.99) / 1000.0,
           g.accepted > 0 ? res.server_cpu_s * 1e6 / (double)g.accepted : 0.0);
    if (res.first_error[0] != '\0') {
        fprintf(stderr, "ingest_conversions: first error: %s\n", res.first_error);
    }
    bench_lat_free(&res.lat);
    /* Something acknowledged and no call failed: the tool worked (duplicates and rejects
     * are the caller's to judge). */
    return g.accepted + g.duplicates + g.rejected > 0 && res.errors == 0 ? 0 : 1;
}
