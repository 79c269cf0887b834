/*
 * ingest_exposures — load generator for the attribution service's hot path: keeps
 * --inflight RecordExposures calls of --batch exposures each in flight on one channel
 * (common/client.h) and counts the exposures the service acknowledged (an acknowledged
 * exposure is durable: the reply comes after fdatasync).
 *
 *   --preload N   first sends N exposures, not measured (the "N stored" of the figures)
 *   --seconds S   then measures S seconds (after --warmup seconds)
 *
 * Prints one line:
 *   ingest_exposures batch=1000 inflight=4 preloaded=... seconds=... accepted=...
 *   duplicates=... rejected=... errors=... exposures_per_s=... p50_ms=... p99_ms=...
 *
 * Events: unique event ids (a random run tag + a counter), viewers out of --viewers,
 * creators out of --creators, 1-3 products out of --products, 70 % impressions, 20 %
 * views, 10 % clicks, occur_time within the last hour.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/client.h"
#include "common/config.h"
#include "common/runtime.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#define METHOD "/yaowei.attribution.v1.AttributionService/RecordExposures"

enum { PRELOAD, WARMUP, MEASURE, STOP };
#define ID_LEN 40
#define PROD_LEN 32
/* Per event: event, viewer, creator and note ids, then three product ids. */
#define STRIDE (4 * ID_LEN + 3 * PROD_LEN)

typedef struct st_gen_t gen_t;

/** One call slot: its request, reused for every call it makes. */
typedef struct {
    gen_t *g;
    uint64_t t0;
    Yaowei__Attribution__V1__RecordExposuresRequest req;
    Yaowei__Attribution__V1__ExposureEvent *evs;
    Yaowei__Attribution__V1__ExposureEvent **ptrs;
    Google__Protobuf__Timestamp *times;
    char *ids;    /* batch x STRIDE bytes of strings */
    char **prods; /* batch x 3 */
} slot_t;

struct st_gen_t {
    yw_runtime_t *rt;
    yw_channel_t *ch;
    long batch, inflight, viewers, creators, products;
    long long preload, preload_sent;
    unsigned long long counter;
    unsigned run_tag;
    uint64_t rng;
    int phase; /* PRELOAD, WARMUP, MEASURE, STOP */
    uint64_t measure_start_ns, end_ns;
    long live;
    unsigned long long accepted, duplicates, rejected, errors, measured_calls;
    char first_error[256];
    uint32_t *lat_us;
    size_t n_lat, cap_lat;
    uv_timer_t timer;
    long long warmup, seconds;
};

static uint64_t next_rand(gen_t *g)
{
    /* xorshift64* */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * UINT64_C(2685821657736338717);
}

static void fill(gen_t *g, slot_t *s, int64_t now)
{
    for (long i = 0; i < g->batch; i++) {
        Yaowei__Attribution__V1__ExposureEvent *e = &s->evs[i];
        char *id = s->ids + (size_t)i * STRIDE;
        snprintf(id, ID_LEN, "ev-%08x-%llu", g->run_tag, g->counter++);
        snprintf(id + ID_LEN, ID_LEN, "viewer-%07lu",
                 (unsigned long)(next_rand(g) % (uint64_t)g->viewers));
        snprintf(id + 2 * ID_LEN, ID_LEN, "creator-%05lu",
                 (unsigned long)(next_rand(g) % (uint64_t)g->creators));
        snprintf(id + 3 * ID_LEN, ID_LEN, "note-%06lu", (unsigned long)(next_rand(g) % 1000000));
        e->event_id = id;
        e->viewer_id = id + ID_LEN;
        e->creator_id = id + 2 * ID_LEN;
        e->note_id = id + 3 * ID_LEN;
        size_t np = 1 + next_rand(g) % 3;
        for (size_t k = 0; k < np; k++) {
            char *p = id + 4 * ID_LEN + k * PROD_LEN;
            snprintf(p, PROD_LEN, "sku-%06lu",
                     (unsigned long)(next_rand(g) % (uint64_t)g->products));
            s->prods[i * 3 + k] = p;
        }
        e->n_product_ids = np;
        e->product_ids = &s->prods[i * 3];
        uint64_t r = next_rand(g) % 10;
        e->kind = r < 7   ? YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_IMPRESSION
                  : r < 9 ? YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_VIEW
                          : YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_CLICK;
        e->watch_ms = e->kind == YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_VIEW
                          ? (int64_t)(next_rand(g) % 60000)
                          : 0;
        s->times[i].seconds = now - (int64_t)(next_rand(g) % 3600);
        s->times[i].nanos = (int32_t)(next_rand(g) % 1000000000);
    }
}

static void record(gen_t *g, uint64_t t0, uint64_t now)
{
    if (g->n_lat == g->cap_lat) {
        size_t cap = g->cap_lat ? g->cap_lat * 2 : 1 << 16;
        uint32_t *p = realloc(g->lat_us, cap * sizeof *p);
        if (p == NULL) {
            return;
        }
        g->lat_us = p;
        g->cap_lat = cap;
    }
    g->lat_us[g->n_lat++] = (uint32_t)((now - t0) / 1000);
}

static void issue(gen_t *g, slot_t *s);

static void on_timer(uv_timer_t *t);

static void free_slot(slot_t *s)
{
    free(s->evs);
    free(s->ptrs);
    free(s->times);
    free(s->ids);
    free(s->prods);
    free(s);
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    slot_t *s = arg;
    gen_t *g = s->g;
    uint64_t now = uv_hrtime();
    if (code == GRPC_STATUS_OK) {
        Yaowei__Attribution__V1__IngestSummary *sum =
            (Yaowei__Attribution__V1__IngestSummary *)resp;
        /* Throughput: what the service acknowledged within the measured window. */
        if (g->phase == MEASURE) {
            g->accepted += (unsigned long long)sum->accepted;
            g->duplicates += (unsigned long long)sum->duplicates;
            g->rejected += (unsigned long long)sum->rejected;
            g->measured_calls++;
            record(g, s->t0, now);
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    } else if (g->errors++ == 0) {
        snprintf(g->first_error, sizeof g->first_error, "%s: %s", yw_status_name(code), detail);
    }
    if (g->phase == STOP) {
        free_slot(s);
        if (--g->live == 0) {
            yw_channel_destroy(g->ch);
            yw_runtime_stop(g->rt);
        }
        return;
    }
    issue(g, s);
    if (g->phase == PRELOAD && g->preload_sent >= g->preload) {
        g->phase = WARMUP;
        uv_timer_start(&g->timer, on_timer, (uint64_t)g->warmup * 1000, 0);
    }
}

static void issue(gen_t *g, slot_t *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fill(g, s, ts.tv_sec);
    if (g->phase == PRELOAD) {
        g->preload_sent += g->batch;
    }
    s->t0 = uv_hrtime();
    int rc = yw_client_unary(g->ch, METHOD, &s->req.base,
                             &yaowei__attribution__v1__ingest_summary__descriptor, NULL, 60000,
                             on_reply, s);
    if (rc != 0) {
        fprintf(stderr, "ingest_exposures: cannot start a call: %s\n", strerror(-rc));
        exit(1);
    }
}

static slot_t *new_slot(gen_t *g)
{
    slot_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->g = g;
    size_t b = (size_t)g->batch;
    s->evs = calloc(b, sizeof *s->evs);
    s->ptrs = calloc(b, sizeof *s->ptrs);
    s->times = calloc(b, sizeof *s->times);
    s->ids = calloc(b, STRIDE);
    s->prods = calloc(b * 3, sizeof *s->prods);
    if (s->evs == NULL || s->ptrs == NULL || s->times == NULL || s->ids == NULL ||
        s->prods == NULL) {
        return NULL;
    }
    yaowei__attribution__v1__record_exposures_request__init(&s->req);
    for (size_t i = 0; i < b; i++) {
        yaowei__attribution__v1__exposure_event__init(&s->evs[i]);
        google__protobuf__timestamp__init(&s->times[i]);
        s->evs[i].occur_time = &s->times[i];
        s->ptrs[i] = &s->evs[i];
    }
    s->req.n_events = b;
    s->req.events = s->ptrs;
    return s;
}

static void start_slots(gen_t *g, long n)
{
    for (long i = 0; i < n; i++) {
        slot_t *s = new_slot(g);
        if (s == NULL) {
            fprintf(stderr, "ingest_exposures: out of memory\n");
            exit(1);
        }
        g->live++;
        issue(g, s);
    }
}

static void on_timer(uv_timer_t *t)
{
    gen_t *g = t->data;
    if (g->phase == WARMUP) {
        g->phase = MEASURE;
        g->measure_start_ns = uv_hrtime();
        uv_timer_start(&g->timer, on_timer, (uint64_t)g->seconds * 1000, 0);
    } else if (g->phase == MEASURE) {
        g->phase = STOP;
        g->end_ns = uv_hrtime();
        uv_close((uv_handle_t *)t, NULL);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_BENCH_ADDR", "127.0.0.1:50053", "HOST:PORT of attribution", NULL},
        {"batch", NULL, "1000", "exposures per RecordExposures call", NULL},
        {"inflight", NULL, "4", "calls kept in flight", NULL},
        {"preload", NULL, "0", "exposures sent first, not measured", NULL},
        {"seconds", NULL, "10", "measured duration", NULL},
        {"warmup", NULL, "1", "seconds before measuring", NULL},
        {"viewers", NULL, "1000000", "distinct viewers", NULL},
        {"creators", NULL, "10000", "distinct creators", NULL},
        {"products", NULL, "100000", "distinct products", NULL},
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "ingest_exposures",
                             "durable exposures/s through RecordExposures");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long batch, inflight, preload, seconds, warmup, viewers, creators, products;
    char err[256];
    if (yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "preload", &preload, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "viewers", &viewers, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "creators", &creators, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "products", &products, err, sizeof err) != 0) {
        fprintf(stderr, "ingest_exposures: %s\n", err);
        return 2;
    }
    if (batch < 1 || batch > 10000 || inflight < 1 || seconds < 1 || warmup < 0 || preload < 0 ||
        viewers < 1 || creators < 1 || products < 1) {
        fprintf(stderr, "ingest_exposures: bad option values (batch 1..10000, others >= 1)\n");
        return 2;
    }
    gen_t g = {.batch = batch,
               .inflight = inflight,
               .preload = preload,
               .seconds = seconds,
               .warmup = warmup,
               .viewers = viewers,
               .creators = creators,
               .products = products};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g.rng = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
    g.rng = g.rng ? g.rng : 1;
    g.run_tag = (unsigned)next_rand(&g);
    if ((rc = yw_runtime_create(&g.rt)) != 0 ||
        (rc = yw_channel_create(g.rt, yw_config_get(opts, n, "addr"), &g.ch)) != 0) {
        fprintf(stderr, "ingest_exposures: cannot start: %d\n", rc);
        return 1;
    }
    uv_loop_t *loop = yw_runtime_loop(g.rt);
    uv_timer_init(loop, &g.timer);
    g.timer.data = &g;
    g.phase = preload > 0 ? PRELOAD : WARMUP;
    start_slots(&g, inflight);
    if (g.phase == WARMUP) {
        uv_timer_start(&g.timer, on_timer, (uint64_t)warmup * 1000, 0);
    }
    yw_runtime_run(g.rt);
    yw_runtime_destroy(g.rt);

    double secs = (double)(g.end_ns - g.measure_start_ns) / 1e9;
    qsort(g.lat_us, g.n_lat, sizeof *g.lat_us, cmp_u32);
    double p50 = g.n_lat ? g.lat_us[g.n_lat / 2] / 1000.0 : 0;
    double p99 = g.n_lat ? g.lat_us[(size_t)((double)g.n_lat * 0.99)] / 1000.0 : 0;
    printf("ingest_exposures batch=%lld inflight=%lld preloaded=%lld seconds=%.1f accepted=%llu "
           "duplicates=%llu rejected=%llu errors=%llu exposures_per_s=%.0f p50_ms=%.1f "
           "p99_ms=%.1f\n",
           batch, inflight, g.preload_sent, secs, g.accepted, g.duplicates, g.rejected, g.errors,
           (double)g.accepted / secs, p50, p99);
    if (g.errors > 0) {
        fprintf(stderr, "ingest_exposures: first error: %s\n", g.first_error);
    }
    free(g.lat_us);
    return g.accepted > 0 && g.errors == 0 ? 0 : 1;
}
