/*
 * bench_events.h — the synthetic events of the benchmarks. Every event is a pure
 * function of (seed, index): the attribution load generators, the fsync ceiling and the
 * PostgreSQL peer make the very same exposure i of a run, and the conversion generator
 * can point at an exposure it knows is stored without keeping any state.
 *
 * Ids match the other bench tools: creators are creator-000000 .. (bench/load_creators.py
 * makes the same ones), viewers viewer-0000000 .., products sku-000000 .., notes
 * note-0000000 ..; event ids ev-<seed>-<index>, order ids o-<seed>-<index>.
 */
#ifndef BENCH_EVENTS_H
#define BENCH_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest id the generator makes, with its NUL. */
#define BENCH_ID_MAX 40
/** An exposure tags 1 to BENCH_PRODUCTS_MAX products. */
#define BENCH_PRODUCTS_MAX 3

/** The population events are drawn from; the same values must be used by every tool
 * that makes or refers to the events of one seed. */
typedef struct st_bench_events_t {
    uint64_t seed;
    uint64_t viewers, creators, products, notes;
    /** Exposures occur in (anchor_s - spread_s, anchor_s], uniformly. */
    int64_t anchor_s;
    int64_t spread_s;
} bench_events_t;

/**
 * The flags that name a population (all of bench_events_t but the seed), with the same
 * names and defaults in every tool: put BENCH_POPULATION_OPTIONS in a yw_option_t array
 * and read them with bench_population_parse(). Formatted by hand: clang-format takes the
 * last entry for a block.
 */
/* clang-format off */
#define BENCH_POPULATION_OPTIONS                                                              \
    {"viewers", NULL, "1000000", "distinct viewers", YW_OPTION_VALUE, NULL},                  \
    {"creators", NULL, "10000", "distinct creators (creator-000000..)", YW_OPTION_VALUE,      \
     NULL},                                                                                   \
    {"products", NULL, "100000", "distinct products", YW_OPTION_VALUE, NULL},                 \
    {"notes", NULL, "1000000", "distinct notes", YW_OPTION_VALUE, NULL},                      \
    {"anchor", NULL, "0", "exposures occur before this Unix time (0: now)", YW_OPTION_VALUE,  \
     NULL},                                                                                   \
    {"spread-s", NULL, "3600", "... and within this many seconds of it", YW_OPTION_VALUE,     \
     NULL}
/* clang-format on */

/**
 * Reads the BENCH_POPULATION_OPTIONS of `opts` into `ev` (its seed is left alone).
 * Returns 0, or -EINVAL with the flag and the rule in `err`.
 */
int bench_population_parse(const yw_option_t *opts, size_t n, bench_events_t *ev, char *err,
                           size_t errlen);

/** Exposure kinds, the values of yaowei.attribution.v1.ExposureKind. */
enum { BENCH_IMPRESSION = 1, BENCH_VIEW = 2, BENCH_CLICK = 3 };

typedef struct st_bench_exposure_t {
    char event_id[BENCH_ID_MAX];
    char viewer_id[BENCH_ID_MAX];
    char creator_id[BENCH_ID_MAX];
    char note_id[BENCH_ID_MAX];
    char product_ids[BENCH_PRODUCTS_MAX][BENCH_ID_MAX];
    int n_products;
    /** 70 % impressions, 20 % views (watch_ms 0-60 s), 10 % clicks. */
    int kind;
    int64_t watch_ms;
    int64_t occur_s;
    int32_t occur_nanos;
} bench_exposure_t;

typedef struct st_bench_conversion_t {
    char order_id[BENCH_ID_MAX];
    char viewer_id[BENCH_ID_MAX];
    char product_id[BENCH_ID_MAX];
    int64_t quantity;
    int64_t amount_minor;
    int64_t occur_s;
    int32_t occur_nanos;
} bench_conversion_t;

/** `opt` when it is > 0, else a seed from the clock (never 0): for runs that must not
 * repeat an earlier run's events. */
uint64_t bench_seed(long long opt);

/** Fills `out` with exposure number `i` of `ev`. */
void bench_exposure(const bench_events_t *ev, uint64_t i, bench_exposure_t *out);

/**
 * Fills `out` with conversion number `i` of the run `conv_seed`: an order by the viewer
 * of one of the exposures 0 .. stored-1 of `ev` (a view or a click when one of eight
 * tries finds one), for one of its products, 1 s to 1 h after it but not after `now_s`.
 * So every order joins at least one stored exposure. `stored` must be >= 1.
 */
void bench_conversion(const bench_events_t *ev, uint64_t conv_seed, uint64_t stored, uint64_t i,
                      int64_t now_s, bench_conversion_t *out);

/** Writes the order id of conversion `i` of run `conv_seed` (what bench_conversion sets). */
void bench_order_id(uint64_t conv_seed, uint64_t i, char out[BENCH_ID_MAX]);

/**
 * The protobuf-c view of an exposure, for packing: points `pb`'s strings into `x` (which
 * must outlive it) and its time and product list into `ts` and `prods`.
 */
void bench_exposure_pb(bench_exposure_t *x, Yaowei__Attribution__V1__ExposureEvent *pb,
                       Google__Protobuf__Timestamp *ts, char *prods[BENCH_PRODUCTS_MAX]);

/** The same for a conversion. */
void bench_conversion_pb(bench_conversion_t *c, Yaowei__Attribution__V1__ConversionEvent *pb,
                         Google__Protobuf__Timestamp *ts);

#ifdef __cplusplus
}
#endif
#endif
