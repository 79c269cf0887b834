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
 * reports among them that lack tier labels (tier_labels_error set or creators unlabeled),
 * and the OK note stats batches that upserted fewer rows than they sent.
 *
 * Methods and the requests they send (request n of the run):
 *   get_creator         CreatorProfileService/GetCreator, creator-%06d over --ids
 *   score_creator       TierScoringService/ScoreCreator, the same creator ids
 *   explain_conversion  AttributionService/ExplainConversion, the order ids that
 *                       bench/ingest_conversions made with --seed, over --ids
 *   tier_report         AttributionService/GetTierReport over the --days whole UTC days
 *                       that end with today (default model)
 *   create_creator      CreatorProfileService/CreateCreator of a new creator per call:
 *                       creator_id TAG-c%09llu and request_id TAG-r%09llu (n of the run),
 *                       so a run with a new --tag never collides with an earlier one
 *   record_note_stats   CreatorProfileService/RecordNoteStats, --batch rows a call, each
 *                       a new note (TAG-nN-I: unique per call) with today's UTC stats,
 *                       owned by a creator-%06d of --ids (which must exist); rows/s is
 *                       qps times --batch. A reply that upserted fewer rows than sent is
 *                       counted in `degraded`
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
#include <unistd.h>

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
    LOADGEN_TIER_REPORT,
    LOADGEN_CREATE_CREATOR,
    LOADGEN_RECORD_NOTE_STATS
} loadgen_method_t;

/* --tag: at most this many characters of [A-Za-z0-9_.-] (ids stay within the service's
 * 128-byte limits). */
#define LOADGEN_TAG_MAX 48
/* A creator, request or note id made from the tag: the tag, a letter and two numbers. */
#define LOADGEN_ID_MAX (LOADGEN_TAG_MAX + 48)
/* --batch of record_note_stats: at most the service's CREATOR_STATS_ROWS_MAX. */
#define LOADGEN_BATCH_MAX 10000

/** One row of a record_note_stats call and the ids it points to. */
typedef struct {
    Yaowei__Creator__V1__NoteDailyStats row;
    char note_id[LOADGEN_ID_MAX];
    char creator_id[BENCH_ID_MAX];
} loadgen_row_t;

/** One call slot's request and the strings it points to. */
typedef struct {
    char id[LOADGEN_ID_MAX];
    union {
        Yaowei__Creator__V1__GetCreatorRequest get;
        Yaowei__Tier__V1__ScoreCreatorRequest score;
        Yaowei__Attribution__V1__ExplainConversionRequest explain;
        Yaowei__Attribution__V1__GetTierReportRequest report;
        Yaowei__Creator__V1__CreateCreatorRequest create;
        Yaowei__Creator__V1__RecordNoteStatsRequest record;
    } u;
    Google__Protobuf__Timestamp start, end;
    /* create_creator */
    Yaowei__Creator__V1__Creator creator;
    char request_id[LOADGEN_ID_MAX];
    char display_name[64];
    char region[16];
    char *categories[1];
    /* record_note_stats: --batch rows and their pointers (NULL for other methods) */
    loadgen_row_t *rows;
    Yaowei__Creator__V1__NoteDailyStats **row_ptrs;
} loadgen_slot_t;

typedef struct {
    loadgen_method_t method;
    uint64_t ids;
    uint64_t seed;
    int64_t day0_s, day1_s; /* tier_report: [day0, day1) */
    loadgen_slot_t *slots;
    long inflight;
    const char *tag;             /* create_creator, record_note_stats: prefix of new ids */
    size_t batch;                /* record_note_stats: rows a call */
    char today[16];              /* record_note_stats: "YYYY-MM-DD", UTC */
    unsigned long long degraded; /* tier_report: answered without every tier label;
                                    record_note_stats: fewer rows upserted than sent */
} loadgen_t;

/* The categories load_creators.py gives its creators. */
static const char *const loadgen_categories[] = {"beauty", "fashion", "food",      "travel",
                                                 "home",   "tech",    "parenting", "fitness"};

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
    [LOADGEN_CREATE_CREATOR] = {"create_creator",
                                "/yaowei.creator.v1.CreatorProfileService/CreateCreator",
                                &yaowei__creator__v1__creator__descriptor},
    [LOADGEN_RECORD_NOTE_STATS] = {"record_note_stats",
                                   "/yaowei.creator.v1.CreatorProfileService/RecordNoteStats",
                                   &yaowei__creator__v1__record_note_stats_response__descriptor},
};

/** The n-th id to visit: n times a prime larger than any --ids, modulo ids, visits every id
 * once per ids calls, in a scrambled order. */
static uint64_t loadgen_pick(const loadgen_t *lg, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)n * UINT64_C(2654435761)) % lg->ids);
}

/** Request n of create_creator: a creator nobody made before (the run's tag), valid by
 * the service's rules, with its own request id as production callers send. */
static const ProtobufCMessage *loadgen_create(loadgen_t *lg, loadgen_slot_t *s, uint64_t n)
{
    unsigned long long i = (unsigned long long)n;
    snprintf(s->id, sizeof s->id, "%s-c%09llu", lg->tag, i);
    snprintf(s->request_id, sizeof s->request_id, "%s-r%09llu", lg->tag, i);
    snprintf(s->display_name, sizeof s->display_name, "Bench creator %llu", i);
    snprintf(s->region, sizeof s->region, "CN-%02llu", i % 34);
    s->categories[0] = (char *)loadgen_categories[i % 8];
    yaowei__creator__v1__creator__init(&s->creator);
    s->creator.creator_id = s->id;
    s->creator.display_name = s->display_name;
    s->creator.region = s->region;
    s->creator.n_categories = 1;
    s->creator.categories = s->categories;
    s->creator.followers = (int64_t)(1000 + (i * 2654435761u) % 100000);
    yaowei__creator__v1__create_creator_request__init(&s->u.create);
    s->u.create.request_id = s->request_id;
    s->u.create.creator = &s->creator;
    return &s->u.create.base;
}

/** Request n of record_note_stats: --batch new notes (unique to this call) of creators
 * spread over --ids, each with one row of today's stats. */
static const ProtobufCMessage *loadgen_record(loadgen_t *lg, loadgen_slot_t *s, uint64_t n)
{
    for (size_t i = 0; i < lg->batch; i++) {
        loadgen_row_t *r = &s->rows[i];
        uint64_t k = loadgen_pick(lg, n * lg->batch + i);
        unsigned long long v = 100 + (n * 7 + i * 13) % 5000;
        snprintf(r->note_id, sizeof r->note_id, "%s-n%09llu-%zu", lg->tag, (unsigned long long)n,
                 i);
        snprintf(r->creator_id, sizeof r->creator_id, "creator-%06llu", (unsigned long long)k);
        yaowei__creator__v1__note_daily_stats__init(&r->row);
        r->row.note_id = r->note_id;
        r->row.creator_id = r->creator_id;
        r->row.day = lg->today;
        r->row.is_video = i % 4 == 0;
        r->row.impressions = (int64_t)(v * 4);
        r->row.views = (int64_t)v;
        r->row.likes = (int64_t)(v / 10);
        r->row.collects = (int64_t)(v / 50);
        r->row.comments = (int64_t)(v / 200);
        r->row.shares = (int64_t)(v / 400);
        r->row.follows_gained = (int64_t)(v / 500);
        if (r->row.is_video) {
            r->row.video_plays = (int64_t)v;
            r->row.avg_watch_ms = 8000;
            r->row.completion_rate = 0.35;
        }
        s->row_ptrs[i] = &r->row;
    }
    yaowei__creator__v1__record_note_stats_request__init(&s->u.record);
    s->u.record.n_stats = lg->batch;
    s->u.record.stats = s->row_ptrs;
    return &s->u.record.base;
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
    case LOADGEN_CREATE_CREATOR:
        return loadgen_create(lg, s, n);
    case LOADGEN_RECORD_NOTE_STATS:
        return loadgen_record(lg, s, n);
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
    if (code != GRPC_STATUS_OK || !measured) {
        return;
    }
    if (lg->method == LOADGEN_RECORD_NOTE_STATS) {
        const Yaowei__Creator__V1__RecordNoteStatsResponse *r =
            (const Yaowei__Creator__V1__RecordNoteStatsResponse *)resp;
        if (r->upserted < 0 || (size_t)r->upserted != lg->batch) {
            lg->degraded++;
        }
        return;
    }
    if (lg->method != LOADGEN_TIER_REPORT) {
        return;
    }
    const Yaowei__Attribution__V1__TierReport *r =
        (const Yaowei__Attribution__V1__TierReport *)resp;
    if (r->unlabeled_creators > 0 || (r->tier_labels_error && r->tier_labels_error[0] != '\0')) {
        lg->degraded++;
    }
}

static void loadgen_slots_free(loadgen_t *lg)
{
    for (long i = 0; lg->slots != NULL && i < lg->inflight; i++) {
        free(lg->slots[i].rows);
        free(lg->slots[i].row_ptrs);
    }
    free(lg->slots);
    lg->slots = NULL;
}

/** lg->inflight slots, with --batch rows each for record_note_stats. Returns 0 or -ENOMEM
 * (everything freed). */
static int loadgen_slots_alloc(loadgen_t *lg)
{
    lg->slots = calloc((size_t)lg->inflight, sizeof *lg->slots);
    if (lg->slots == NULL) {
        return -ENOMEM;
    }
    for (long i = 0; lg->method == LOADGEN_RECORD_NOTE_STATS && i < lg->inflight; i++) {
        lg->slots[i].rows = calloc(lg->batch, sizeof *lg->slots[i].rows);
        lg->slots[i].row_ptrs = calloc(lg->batch, sizeof(Yaowei__Creator__V1__NoteDailyStats *));
        if (lg->slots[i].rows == NULL || lg->slots[i].row_ptrs == NULL) {
            loadgen_slots_free(lg);
            return -ENOMEM;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_LOADGEN_ADDR", "127.0.0.1:50051", "HOST:PORT of the service", YW_OPTION_VALUE,
         NULL},
        {"method", NULL, "get_creator",
         "get_creator, score_creator, explain_conversion, tier_report, create_creator or "
         "record_note_stats",
         YW_OPTION_VALUE, NULL},
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
        {"tag", NULL, "",
         "create_creator, record_note_stats: prefix of the new creator, request and note ids, "
         "1-48 of [A-Za-z0-9_.-]; empty = lgTIME-PID",
         YW_OPTION_VALUE, NULL},
        {"batch", NULL, "100", "record_note_stats: rows a call (1..10000)", YW_OPTION_VALUE, NULL},
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "loadgen", "closed-loop unary load");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long inflight, seconds, warmup, ids, seed, days, timeout_ms, batch;
    char err[256];
    if (yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "ids", &ids, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "days", &days, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "timeout-ms", &timeout_ms, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (inflight < 1 || inflight > 100000 || seconds < 1 || warmup < 0 || ids < 1 || days < 1 ||
        days > 400 || timeout_ms < 1 || batch < 1 || batch > LOADGEN_BATCH_MAX) {
        fprintf(stderr,
                "loadgen: --inflight 1..100000, --seconds >= 1, --warmup >= 0, --ids >= "
                "1, --days 1..400, --timeout-ms >= 1, --batch 1..%d\n",
                LOADGEN_BATCH_MAX);
        return 2;
    }
    char tag[LOADGEN_TAG_MAX + 1];
    const char *tag_opt = yw_config_get(opts, n, "tag");
    if (tag_opt == NULL || tag_opt[0] == '\0') {
        snprintf(tag, sizeof tag, "lg%lld-%d", (long long)time(NULL), (int)getpid());
    } else if (strlen(tag_opt) > LOADGEN_TAG_MAX ||
               strspn(tag_opt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789_.-") != strlen(tag_opt)) {
        fprintf(stderr, "loadgen: --tag: expected 1-%d of [A-Za-z0-9_.-], got \"%s\"\n",
                LOADGEN_TAG_MAX, tag_opt);
        return 2;
    } else {
        snprintf(tag, sizeof tag, "%s", tag_opt);
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
    loadgen_t lg = {.method = (loadgen_method_t)method,
                    .ids = (uint64_t)ids,
                    .seed = (uint64_t)seed,
                    .inflight = (long)inflight,
                    .tag = tag,
                    .batch = (size_t)batch};
    time_t now = time(NULL);
    int64_t today = (int64_t)now / 86400 * 86400;
    lg.day1_s = today + 86400;
    lg.day0_s = lg.day1_s - days * 86400;
    struct tm utc;
    if (gmtime_r(&now, &utc) == NULL ||
        strftime(lg.today, sizeof lg.today, "%Y-%m-%d", &utc) == 0) {
        fprintf(stderr, "loadgen: cannot format today's date\n");
        return 1;
    }
    if (loadgen_slots_alloc(&lg) != 0) {
        fprintf(stderr, "loadgen: out of memory for %lld slots\n", inflight);
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
    loadgen_slots_free(&lg);
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
