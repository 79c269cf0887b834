/*
 * demo.h — the state of one run of the main job (tools/demo), shared by its three
 * parts: demo_main.c (flags, the services' settings, the order of the steps),
 * demo_load.c (the workload sent through the services' public APIs) and demo_report.c
 * (the reports asked for and printed). Everything runs on the runtime's loop thread.
 */
#ifndef DEMO_H
#define DEMO_H

#include <stdint.h>

#include "common/client.h"
#include "common/runtime.h"
#include "tools/demo/demo_gen.h"
#include "tools/demo/demo_send.h"

/** Deadline of every call the demo makes. */
#define DEMO_TIMEOUT_MS 60000

#define DEMO_ERR_MAX 512
/** A single call's "STATUS: detail", which an error message then quotes. */
#define DEMO_CERR_MAX 320

/** Times a tier report is asked for while some creators come back unlabeled, and the
 * pause between two asks. */
#define DEMO_LABEL_ATTEMPTS 8
#define DEMO_LABEL_PAUSE_MS 3000

/** Unexpected rejections kept to show. */
#define DEMO_SURPRISES_SHOWN 3

/** What attribution's summaries said of one kind of event. */
typedef struct st_demo_got_t {
    /** Events in the batches that were answered. */
    uint64_t sent;
    uint64_t accepted, duplicates, rejected, past_join_horizon;
    /** Rejected events the generator did not break, and the first reasons. */
    uint64_t surprises;
    char surprise[DEMO_SURPRISES_SHOWN][160];
} demo_got_t;

typedef struct st_demo_t {
    yw_runtime_t *rt;
    /** The services; attribution may be the nodes of a cluster (calls spread over them). */
    demo_chans_t cp, ts, at;
    const char *cp_addr, *ts_addr, *at_addr;

    demo_params_t params;
    int quick, serve, progress, top;
    int batch, inflight, create_inflight;
    long long min_impressions;
    /** yaowei.attribution.v1.AttributionModel of the second tier report. */
    int model2;
    long long tier_wait_s, ready_wait_s;

    /** From the services. */
    int64_t policy_version;
    double rising_top_fraction;
    int default_model;
    char currency[16];
    char bad_currency[16];
    int64_t click_window_s, view_window_s, late_window_s, late_window_before_s;

    demo_world_t *world;
    demo_events_t *events;
    /** Every stream run once ahead: totals for progress, the truth to check against. */
    demo_truth_t plan;
    uint64_t stats_rows;

    /** What each step took. */
    demo_pipe_stats_t st_creators, st_stats, st_exposures, st_conversions, st_late, st_refunds;
    double tier_wait_seconds;
    /** CreateCreator answered ALREADY_EXISTS (the services were not fresh). */
    uint64_t creators_existing;
    demo_got_t got_exp, got_conv, got_ref;

    /** The reports' range: whole UTC days [range_start_s, range_end_s). */
    int64_t range_start_s, range_end_s;
    /** Tier scoring's population, once it covered the creators. */
    int64_t tier_refresh_s;
    uint64_t tier_total, tier_creators[DEMO_TIERS], tier_rising[DEMO_TIERS];
    /** A creator id to show in the grpcurl examples (--serve). */
    char sample_creator[32];
} demo_t;

/* demo_load.c: the workload, step by step. Each returns 0 or a negative errno (err). */
int demo_load_creators(demo_t *d, char *err, size_t errlen);
int demo_load_stats(demo_t *d, char *err, size_t errlen);
int demo_load_exposures(demo_t *d, char *err, size_t errlen);
int demo_load_conversions(demo_t *d, char *err, size_t errlen);
int demo_load_late(demo_t *d, char *err, size_t errlen);
int demo_load_refunds(demo_t *d, char *err, size_t errlen);

/* demo_report.c. */

/**
 * Has tier scoring refresh its population (RefreshPopulation: a refresh that starts after
 * the call, so it reads every creator and the stats sent) and reads its tier counts.
 */
int demo_wait_tier_population(demo_t *d, char *err, size_t errlen);

/** Asks for the reports and prints them on stdout. Returns 0 when every check passed,
 * 1 when one failed (printed as MISMATCH), or a negative errno (err). */
int demo_report(demo_t *d, char *err, size_t errlen);

/** Prints grpcurl commands to try against the services (--serve). */
void demo_print_try(const demo_t *d);

/** "CNY 1,234.56"-style amount of `minor` units (two decimals) into buf; returns buf. */
char *demo_fmt_money(char *buf, size_t len, int64_t minor);

/** "YYYY-MM-DD" of UTC seconds into buf (at least 11 bytes); returns buf. */
char *demo_fmt_day(char *buf, size_t len, int64_t s);

/** "LAST_TOUCH", "LINEAR", ... of a yaowei.attribution.v1.AttributionModel. */
const char *demo_model_name(int model);

#endif
