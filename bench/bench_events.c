/*
 * bench_events.c — synthetic events as pure functions of (seed, index). See
 * bench_events.h. Ids are formatted by hand: the generators make millions of them on
 * the same two cores as the service they measure, and snprintf would cost more than the
 * service's work per id.
 */
#include "bench/bench_events.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* splitmix64: a good 64-bit mix, also used as a counter-based generator. */
static uint64_t bench__mix(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

typedef struct {
    uint64_t s;
} bench__rng_t;

static uint64_t bench__draw(bench__rng_t *r)
{
    r->s += UINT64_C(0x9E3779B97F4A7C15);
    return bench__mix(r->s);
}

/** Uniform in [0, n): the high half of a 64x64 product (n >= 1). */
static uint64_t bench__below(bench__rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench__draw(r) * n) >> 64);
}

/** prefix + v in decimal, zero-padded to `width` digits; returns the length. */
static size_t bench__fmt(char *out, const char *prefix, uint64_t v, int width)
{
    size_t p = strlen(prefix);
    memcpy(out, prefix, p);
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n < width) {
        digits[n++] = '0';
    }
    while (n > 0) {
        out[p++] = digits[--n];
    }
    out[p] = '\0';
    return p;
}

/** prefix + 8 hex digits of the seed's tag + "-" + i. */
static void bench__event_id(char *out, const char *prefix, uint64_t seed, uint64_t i)
{
    static const char hex[] = "0123456789abcdef";
    uint32_t tag = (uint32_t)bench__mix(seed);
    size_t p = strlen(prefix);
    memcpy(out, prefix, p + 1);
    for (int k = 7; k >= 0; k--) {
        out[p++] = hex[(tag >> (k * 4)) & 0xf];
    }
    out[p++] = '-';
    bench__fmt(out + p, "", i, 1);
}

int bench_population_parse(const yw_option_t *opts, size_t n, bench_events_t *ev, char *err,
                           size_t errlen)
{
    static const char *const sizes[] = {"viewers", "creators", "products", "notes"};
    uint64_t *dst[] = {&ev->viewers, &ev->creators, &ev->products, &ev->notes};
    long long v;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (yw_config_int(opts, n, sizes[i], &v, err, errlen) != 0) {
            return -EINVAL;
        }
        if (v < 1) {
            snprintf(err, errlen, "--%s: must be >= 1, got %lld", sizes[i], v);
            return -EINVAL;
        }
        *dst[i] = (uint64_t)v;
    }
    if (yw_config_int(opts, n, "anchor", &v, err, errlen) != 0) {
        return -EINVAL;
    }
    if (v < 0) {
        snprintf(err, errlen, "--anchor: must be >= 0 (0: now), got %lld", v);
        return -EINVAL;
    }
    ev->anchor_s = v > 0 ? (int64_t)v : (int64_t)time(NULL);
    if (yw_config_int(opts, n, "spread-s", &v, err, errlen) != 0) {
        return -EINVAL;
    }
    if (v < 1) {
        snprintf(err, errlen, "--spread-s: must be >= 1, got %lld", v);
        return -EINVAL;
    }
    ev->spread_s = (int64_t)v;
    return 0;
}

uint64_t bench_seed(long long opt)
{
    if (opt > 0) {
        return (uint64_t)opt;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = bench__mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    return s ? s : 1;
}

void bench_exposure(const bench_events_t *ev, uint64_t i, bench_exposure_t *out)
{
    bench__rng_t r = {bench__mix(ev->seed * UINT64_C(0x2545F4914F6CDD1D) ^ i)};
    bench__event_id(out->event_id, "ev-", ev->seed, i);
    bench__fmt(out->viewer_id, "viewer-", bench__below(&r, ev->viewers), 7);
    bench__fmt(out->creator_id, "creator-", bench__below(&r, ev->creators), 6);
    bench__fmt(out->note_id, "note-", bench__below(&r, ev->notes), 7);
    out->n_products = 1 + (int)bench__below(&r, BENCH_PRODUCTS_MAX);
    for (int k = 0; k < out->n_products; k++) {
        bench__fmt(out->product_ids[k], "sku-", bench__below(&r, ev->products), 6);
    }
    uint64_t kind = bench__below(&r, 10);
    out->kind = kind < 7 ? BENCH_IMPRESSION : kind < 9 ? BENCH_VIEW : BENCH_CLICK;
    out->watch_ms = out->kind == BENCH_VIEW ? (int64_t)bench__below(&r, 60000) : 0;
    out->occur_s = ev->anchor_s - (int64_t)bench__below(&r, (uint64_t)ev->spread_s);
    out->occur_nanos = (int32_t)bench__below(&r, 1000000000);
}

void bench_order_id(uint64_t conv_seed, uint64_t i, char out[BENCH_ID_MAX])
{
    bench__event_id(out, "o-", conv_seed, i);
}

void bench_conversion(const bench_events_t *ev, uint64_t conv_seed, uint64_t stored, uint64_t i,
                      int64_t now_s, bench_conversion_t *out)
{
    bench__rng_t r = {bench__mix(conv_seed * UINT64_C(0x9E3779B97F4A7C15) ^ ~i)};
    bench_exposure_t x;
    for (int tries = 0; tries < 8; tries++) {
        bench_exposure(ev, bench__below(&r, stored), &x);
        if (x.kind != BENCH_IMPRESSION) {
            break;
        }
    }
    bench_order_id(conv_seed, i, out->order_id);
    memcpy(out->viewer_id, x.viewer_id, sizeof out->viewer_id);
    memcpy(out->product_id, x.product_ids[bench__below(&r, (uint64_t)x.n_products)],
           sizeof out->product_id);
    out->quantity = 1 + (int64_t)bench__below(&r, 3);
    out->amount_minor = 100 + (int64_t)bench__below(&r, 100000);
    out->occur_s = x.occur_s + 1 + (int64_t)bench__below(&r, 3600);
    if (out->occur_s > now_s) {
        out->occur_s = now_s;
    }
    out->occur_nanos = x.occur_nanos;
}

void bench_exposure_pb(bench_exposure_t *x, Yaowei__Attribution__V1__ExposureEvent *pb,
                       Google__Protobuf__Timestamp *ts, char *prods[BENCH_PRODUCTS_MAX])
{
    yaowei__attribution__v1__exposure_event__init(pb);
    google__protobuf__timestamp__init(ts);
    pb->event_id = x->event_id;
    pb->viewer_id = x->viewer_id;
    pb->creator_id = x->creator_id;
    pb->note_id = x->note_id;
    for (int k = 0; k < x->n_products; k++) {
        prods[k] = x->product_ids[k];
    }
    pb->n_product_ids = (size_t)x->n_products;
    pb->product_ids = prods;
    pb->kind = (Yaowei__Attribution__V1__ExposureKind)x->kind;
    pb->watch_ms = x->watch_ms;
    ts->seconds = x->occur_s;
    ts->nanos = x->occur_nanos;
    pb->occur_time = ts;
}

void bench_conversion_pb(bench_conversion_t *c, Yaowei__Attribution__V1__ConversionEvent *pb,
                         Google__Protobuf__Timestamp *ts)
{
    yaowei__attribution__v1__conversion_event__init(pb);
    google__protobuf__timestamp__init(ts);
    pb->order_id = c->order_id;
    pb->viewer_id = c->viewer_id;
    pb->product_id = c->product_id;
    pb->quantity = c->quantity;
    pb->amount_minor = c->amount_minor;
    ts->seconds = c->occur_s;
    ts->nanos = c->occur_nanos;
    pb->occur_time = ts;
}
