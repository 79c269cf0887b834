/*
 * loadgen — a closed-loop gRPC load generator on the project's own client runtime
 * (common/client.h, through bench/bench_loop.h): keeps --inflight unary calls of one
 * --method in flight on one channel for --seconds after --warmup seconds, then prints
 * one line of key=value pairs:
 *
 *   loadgen method=get_creator inflight=64 seconds=5.00 ok=... errors=... degraded=...
 *   qps=... p50_us=... p99_us=... max_us=... server_cpu_us_per_call=...
 *   client_cpu_us_per_call=...
 *
 * ok and errors count the replies of the measured window; degraded counts the OK tier
 * reports among them that lack tier labels (tier_labels_error set or creators unlabeled).
 *
 * Methods and the requests they send (request n of the run):
 *   get_creator         CreatorProfileService/GetCreator, creator-%06d over --ids
 *   score_creator       TierScoringService/ScoreCreator, the same creator ids
 *   explain_conversion  AttributionService/ExplainConversion, the order ids that
 *                       bench/ingest_conversions made with --seed, over --ids
 *   tier_report         AttributionService/GetTierReport over the --days whole UTC days
 *                       that end with today (default model)
 * Ids are visited in a fixed scrambled order (n * a large odd number mod --ids), so
 * consecutive calls do not touch neighbouring entries.
 *
 * --server-pids PID[,PID] (a "+PID" counts its children too): the CPU time those
 * processes use in the measured window, per OK call, is printed as
 * server_cpu_us_per_call.
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
#include "yaowei/creator/v1/creator.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

typedef enum {
    LOADGEN_GET_CREATOR,
    LOADGEN_SCORE_CREATOR,
    LOADGEN_EXPLAIN,
    LOADGEN_TIER_REPORT
} loadgen_method_t;

/** One call slot's request and the strings it points to. */
typedef struct {
    char id[BENCH_ID_MAX];
    union {
        Yaowei__Creator__V1__GetCreatorRequest get;
        Yaowei__Tier__V1__ScoreCreatorRequest score;
        Yaowei__Attribution__V1__ExplainConversionRequest explain;
        Yaowei__Attribution__V1__GetTierReportRequest report;
    } u;
    Google__Protobuf__Timestamp start, end;
} loadgen_slot_t;

typedef struct {
    loadgen_method_t method;
    uint64_t ids;
    uint64_t seed;
    int64_t day0_s, day1_s; /* tier_report: [day0, day1) */
    loadgen_slot_t *slots;
    unsigned long long degraded; /* tier_report: answered without every tier label */
} loadgen_t;

static const struct {
    const char *name;
    const char *path;
    const ProtobufCMessageDescriptor *resp;
} loadgen_methods[] = {
    [LOADGEN_GET_CREATOR] = {"get_creator", "/yaowei.creator.v1.CreatorProfileService/GetCreator",
                             &yaowei__creator__v1__creator__descriptor},
    [LOADGEN_SCORE_CREATOR] = {"score_creator", "/yaowei.tier.v1.TierScoringService/ScoreCreator",
                               &yaowei__tier__v1__tier_score__descriptor},
    [LOADGEN_EXPLAIN] = {"explain_conversion",
                         "/yaowei.attribution.v1.AttributionService/ExplainConversion",
                         &yaowei__attribution__v1__conversion_attribution__descriptor},
    [LOADGEN_TIER_REPORT] = {"tier_report",
                             "/yaowei.attribution.v1.AttributionService/GetTierReport",
                             &yaowei__attribution__v1__tier_report__descriptor},
};

/** The n-th id to visit: n times a prime larger than any --ids, modulo ids, visits every id
 * once per ids calls, in a scrambled order. */
static uint64_t loadgen_pick(const loadgen_t *lg, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)n * UINT64_C(2654435761)) % lg->ids);
}

static const ProtobufCMessage *loadgen_next(void *arg, long slot, uint64_t n)
{
    loadgen_t *lg = arg;
    loadgen_slot_t *s = &lg->slots[slot];
    uint64_t k = loadgen_pick(lg, n);
    switch (lg->method) {
    case LOADGEN_GET_CREATOR:
        snprintf(s->id, sizeof s->id, "creator-%06llu", (unsigned long long)k);
        yaowei__creator__v1__get_creator_request__init(&s->u.get);
        s->u.get.creator_id = s->id;
        return &s->u.get.base;
    case LOADGEN_SCORE_CREATOR:
        snprintf(s->id, sizeof s->id, "creator-%06llu", (unsigned long long)k);
        yaowei__tier__v1__score_creator_request__init(&s->u.score);
        s->u.score.creator_id = s->id;
        return &s->u.score.base;
    case LOADGEN_EXPLAIN:
        bench_order_id(lg->seed, k, s->id);
        yaowei__attribution__v1__explain_conversion_request__init(&s->u.explain);
        s->u.explain.order_id = s->id;
        return &s->u.explain.base;
    case LOADGEN_TIER_REPORT:
    default:
        yaowei__attribution__v1__get_tier_report_request__init(&s->u.report);
        google__protobuf__timestamp__init(&s->start);
        google__protobuf__timestamp__init(&s->end);
        s->start.seconds = lg->day0_s;
        s->end.seconds = lg->day1_s;
        s->u.report.start_time = &s->start;
        s->u.report.end_time = &s->end;
        return &s->u.report.base;
    }
}

/** A tier report that lacks tier labels (tier scoring failed or is unreachable) is an OK
 * reply but not the report asked for: counted as degraded. */
static void loadgen_reply(void *arg, long slot, grpc_status_code code, const ProtobufCMessage *resp,
                          int measured)
{
    loadgen_t *lg = arg;
    (void)slot;
    if (lg->method != LOADGEN_TIER_REPORT || code != GRPC_STATUS_OK || !measured) {
        return;
    }
    const Yaowei__Attribution__V1__TierReport *r =
        (const Yaowei__Attribution__V1__TierReport *)resp;
    if (r->unlabeled_creators > 0 || (r->tier_labels_error && r->tier_labels_error[0] != '\0')) {
        lg->degraded++;
    }
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_LOADGEN_ADDR", "127.0.0.1:50051", "HOST:PORT of the service", YW_OPTION_VALUE,
         NULL},
        {"method", NULL, "get_creator",
         "get_creator, score_creator, explain_conversion or tier_report", YW_OPTION_VALUE, NULL},
        {"inflight", NULL, "64", "calls kept in flight", YW_OPTION_VALUE, NULL},
        {"seconds", NULL, "10", "measured duration", YW_OPTION_VALUE, NULL},
        {"warmup", NULL, "1", "seconds before measuring", YW_OPTION_VALUE, NULL},
        {"ids", NULL, "100000", "creators (creator-000000..) or orders to cycle through",
         YW_OPTION_VALUE, NULL},
        {"seed", NULL, "1", "explain_conversion: the --seed of bench/ingest_conversions",
         YW_OPTION_VALUE, NULL},
        {"days", NULL, "30", "tier_report: whole UTC days ending with today", YW_OPTION_VALUE,
         NULL},
        {"timeout-ms", NULL, "10000", "deadline of each call", YW_OPTION_VALUE, NULL},
        {"server-pids", NULL, "", "PID[,PID]: report their CPU per call (+PID: with children)",
         YW_OPTION_VALUE, NULL},
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "loadgen", "closed-loop unary load");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long inflight, seconds, warmup, ids, seed, days, timeout_ms;
    char err[256];
    if (yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "ids", &ids, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "days", &days, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "timeout-ms", &timeout_ms, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (inflight < 1 || inflight > 100000 || seconds < 1 || warmup < 0 || ids < 1 || days < 1 ||
        days > 400 || timeout_ms < 1) {
        fprintf(stderr, "loadgen: --inflight 1..100000, --seconds >= 1, --warmup >= 0, --ids >= "
                        "1, --days 1..400, --timeout-ms >= 1\n");
        return 2;
    }
    const char *mname = yw_config_get(opts, n, "method");
    int method = -1;
    for (int i = 0; i < (int)(sizeof loadgen_methods / sizeof loadgen_methods[0]); i++) {
        if (strcmp(mname, loadgen_methods[i].name) == 0) {
            method = i;
        }
    }
    if (method < 0) {
        fprintf(stderr, "loadgen: --method: unknown method \"%s\"\n", mname);
        return 2;
    }
    bench_pids_t server;
    if (bench_pids_parse(yw_config_get(opts, n, "server-pids"), &server) != 0) {
        fprintf(stderr, "loadgen: --server-pids: expected PID[,PID...], got \"%s\"\n",
                yw_config_get(opts, n, "server-pids"));
        return 2;
    }
    loadgen_t lg = {
        .method = (loadgen_method_t)method, .ids = (uint64_t)ids, .seed = (uint64_t)seed};
    int64_t today = (int64_t)time(NULL) / 86400 * 86400;
    lg.day1_s = today + 86400;
    lg.day0_s = lg.day1_s - days * 86400;
    lg.slots = calloc((size_t)inflight, sizeof *lg.slots);
    if (lg.slots == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    bench_loop_cfg_t cfg = {
        .addr = yw_config_get(opts, n, "addr"),
        .method = loadgen_methods[method].path,
        .resp_desc = loadgen_methods[method].resp,
        .inflight = (long)inflight,
        .warmup_ms = warmup * 1000,
        .measure_ms = seconds * 1000,
        .timeout_ms = timeout_ms,
        .server = server.n > 0 ? &server : NULL,
        .next = loadgen_next,
        .reply = loadgen_reply,
        .arg = &lg,
    };
    bench_loop_result_t res;
    rc = bench_loop_run(&cfg, &res);
    free(lg.slots);
    if (rc != 0) {
        return 1;
    }
    double secs = res.seconds > 0 ? res.seconds : 1e-9;
    printf("loadgen method=%s inflight=%lld seconds=%.2f ok=%llu errors=%llu degraded=%llu "
           "qps=%.0f p50_us=%u p99_us=%u max_us=%u server_cpu_us_per_call=%.2f "
           "client_cpu_us_per_call=%.2f\n",
           mname, inflight, res.seconds, res.ok, res.errors, lg.degraded, (double)res.ok / secs,
           bench_lat_quantile(&res.lat, 0.50), bench_lat_quantile(&res.lat, 0.99),
           bench_lat_quantile(&res.lat, 1.0),
           res.ok > 0 ? res.server_cpu_s * 1e6 / (double)res.ok : 0.0,
           res.ok > 0 ? res.client_cpu_s * 1e6 / (double)res.ok : 0.0);
    if (res.first_error[0] != '\0') {
        fprintf(stderr, "loadgen: first error: %s\n", res.first_error);
    }
    bench_lat_free(&res.lat);
    return res.ok > 0 ? 0 : 1;
}
