/*
 * demo_main.c — the main job (`make run`): drives a realistic workload through the three
 * services' public gRPC APIs and prints whether mid-tier and long-tail creators sell.
 *
 *   1. waits for the three services to be SERVING, reads tier scoring's policy (the
 *      tier thresholds) and attribution's settings (widening the late window so that a
 *      backfill of the whole period can join);
 *   2. makes the world and runs every event stream once without sending, for the
 *      totals (demo_gen.h: deterministic by --seed and --now);
 *   3. sends creators, 30 days of note stats, exposures, conversions, late exposures
 *      and refunds (demo_load.c), with bounded concurrency and resends on UNAVAILABLE;
 *   4. waits for tier scoring's population to hold the creators with their stats, and
 *      prints the reports and the checks (demo_report.c).
 *
 * Exit status: 0 when every check passed, 1 when one did not (MISMATCH lines), 2 for
 * bad flags, 3 when a service could not be used.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "tools/demo/demo.h"
#include "tools/demo/demo_progress.h"
#include "grpc/health/v1/health.pb-c.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

enum { EXIT_CHECKS = 1, EXIT_FLAGS = 2, EXIT_SERVICE = 3 };

#define OPT(n, e, d, h)                                                                            \
    {                                                                                              \
        .name = (n), .env = (e), .def = (d), .help = (h)                                           \
    }

static yw_option_t options[] = {
    OPT("creator-profile-addr", "YW_CREATOR_PROFILE_ADDR", "127.0.0.1:50051",
        "HOST:PORT of creator profile"),
    OPT("tier-scoring-addr", "YW_TIER_SCORING_ADDR", "127.0.0.1:50052",
        "HOST:PORT of tier scoring"),
    OPT("attribution-addr", "YW_ATTRIBUTION_ADDR", "127.0.0.1:50053",
        "HOST:PORT of attribution, or of each node of an attribution cluster, comma-separated "
        "(each call goes to the next node in turn)"),
    OPT("seed", NULL, "42", "the same seed (and --now) makes the same creators and events"),
    OPT("quick", NULL, "0",
        "1 (or --quick alone): the QUICK size, 10,000 creators and 300,000 impressions"),
    OPT("creators", NULL, "", "creators (default 100,000; QUICK 10,000)"),
    OPT("impressions", NULL, "", "feed impressions (default 4,000,000; QUICK 300,000)"),
    OPT("viewers", NULL, "", "distinct viewers (default 400,000; QUICK 50,000)"),
    OPT("products", NULL, "", "distinct products (default 20,000; QUICK 4,000)"),
    OPT("days", NULL, "30", "days of the period, ending today (UTC), 1..89"),
    OPT("now", NULL, "", "UTC seconds the period ends at (default: the clock)"),
    OPT("followers-median", NULL, "1600", "median followers (log-normal)"),
    OPT("followers-spread", NULL, "0.9", "standard deviation of log10(followers)"),
    OPT("feed-exponent", NULL, "1.2",
        "an impression picks a creator with weight followers^this (top-heavy feeds)"),
    OPT("quality-spread", NULL, "0.15",
        "standard deviation of log10(quality), which scales engagement and clicks"),
    OPT("notes", NULL, "12,10,6,2", "notes posted per 30 days, per tier: HEAD,MID,TAIL,AMATEUR"),
    OPT("view-rate", NULL, "0.30,0.30,0.28,0.25",
        "views per impression of a video note, per tier: HEAD,MID,TAIL,AMATEUR"),
    OPT("ctr", NULL, "0.020,0.030,0.035,0.025",
        "clicks per impression, per tier: HEAD,MID,TAIL,AMATEUR (times the creator's quality)"),
    OPT("cvr", NULL, "0.040,0.060,0.070,0.050",
        "orders per click, per tier: HEAD,MID,TAIL,AMATEUR"),
    OPT("assist-rate", NULL, "0.30",
        "orders with an earlier click on a bigger creator's note of the same product"),
    OPT("refund-rate", NULL, "0.06", "orders refunded (half fully, half by half)"),
    OPT("organic-rate", NULL, "0.05",
        "share of orders that follow no exposure (search, the shop page): unattributed"),
    OPT("late-rate", NULL, "0.01", "exposures sent after the conversions"),
    OPT("dup-rate", NULL, "0.01", "events sent twice with the same id"),
    OPT("invalid-rate", NULL, "0.005", "events followed by a broken one"),
    OPT("stats-days", NULL, "3", "days of stats rows per note, from the day it was posted"),
    OPT("model", NULL, "LINEAR",
        "second model of the tier report: LAST_TOUCH, FIRST_TOUCH, LINEAR, TIME_DECAY, "
        "POSITION_BASED"),
    OPT("top", NULL, "5", "rising creators to list by GPM, per tier (MID, TAIL)"),
    OPT("min-impressions", NULL, "0",
        "impressions a creator needs to be listed by GPM (0: twice its tier's impressions "
        "per creator)"),
    OPT("batch", NULL, "2000", "events per RecordExposures / RecordConversions / RecordRefunds"),
    OPT("inflight", NULL, "4", "Record* calls in flight"),
    OPT("create-inflight", NULL, "64", "CreateCreator calls in flight"),
    OPT("tier-wait-s", NULL, "180",
        "seconds tier scoring's RefreshPopulation may take (it reads every creator and its "
        "stats from creator profile)"),
    OPT("ready-wait-s", NULL, "30", "seconds to wait for the services to be SERVING"),
    OPT("progress", NULL, "auto",
        "auto (one line rewritten in place on a terminal, else a line every 5 s), tty, lines, "
        "off"),
    OPT("serve", NULL, "0",
        "1 (or --serve alone): end by printing grpcurl commands to try (the services stay up)"),
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* Flags that may be given alone: "--quick" means "--quick=1". */
static const char *const switches[] = {"--quick", "--serve"};

static int flag_int(const char *name, long long lo, long long hi, long long *out, char *err,
                    size_t errlen)
{
    int rc = yw_config_int(options, N_OPTIONS, name, out, err, errlen);
    if (rc == 0 && (*out < lo || *out > hi)) {
        snprintf(err, errlen, "--%s: must be within %lld..%lld, got %lld", name, lo, hi, *out);
        rc = -EINVAL;
    }
    return rc;
}

static int parse_double(const char *name, const char *v, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(x)) {
        snprintf(err, errlen, "--%s: \"%s\" is not a number", name, v);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

static int flag_double(const char *name, double *out, char *err, size_t errlen)
{
    return parse_double(name, yw_config_get(options, N_OPTIONS, name), out, err, errlen);
}

/* "a,b,c,d": one number per tier, HEAD first. */
static int flag_tiers(const char *name, double out[DEMO_TIERS], char *err, size_t errlen)
{
    const char *v = yw_config_get(options, N_OPTIONS, name);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    int k = 0;
    for (; tok != NULL && k < DEMO_TIERS; k++, tok = strtok_r(NULL, ",", &save)) {
        int rc = parse_double(name, tok, &out[k], err, errlen);
        if (rc != 0) {
            return rc;
        }
    }
    if (k != DEMO_TIERS || tok != NULL) {
        snprintf(err, errlen, "--%s: four numbers are needed (HEAD,MID,TAIL,AMATEUR), got \"%s\"",
                 name, v);
        return -EINVAL;
    }
    return 0;
}

/* A size flag: its value, or the preset's when empty. */
static int flag_size(const char *name, long long lo, long long hi, uint64_t *inout, char *err,
                     size_t errlen)
{
    const char *v = yw_config_get(options, N_OPTIONS, name);
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    long long x;
    int rc = flag_int(name, lo, hi, &x, err, errlen);
    if (rc == 0) {
        *inout = (uint64_t)x;
    }
    return rc;
}

static int parse_model(const char *v, int *out)
{
    const char *name = strncasecmp(v, "ATTRIBUTION_MODEL_", 18) == 0 ? v + 18 : v;
    for (int m = 1; m <= 5; m++) {
        if (strcasecmp(name, demo_model_name(m)) == 0) {
            *out = m;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_flags(demo_t *d, char *err, size_t errlen)
{
    demo_params_t *p = &d->params;
    long long v;
    int rc = 0;
    demo_params_default(p);
    if ((rc = flag_int("quick", 0, 1, &v, err, errlen)) != 0) {
        return rc;
    }
    d->quick = (int)v;
    if (d->quick) {
        demo_params_quick(p);
    }
    uint64_t creators = p->creators, viewers = p->viewers, products = p->products;
    if ((rc = flag_int("seed", 0, INT64_MAX, &v, err, errlen)) != 0) {
        return rc;
    }
    p->seed = (uint64_t)v;
    if ((rc = flag_size("creators", 1, 999999, &creators, err, errlen)) != 0 ||
        (rc = flag_size("viewers", 1, 99999999, &viewers, err, errlen)) != 0 ||
        (rc = flag_size("products", DEMO_CATEGORIES, 9999999, &products, err, errlen)) != 0 ||
        (rc = flag_size("impressions", 1, 1000000000, &p->impressions, err, errlen)) != 0) {
        return rc;
    }
    p->creators = (uint32_t)creators;
    p->viewers = (uint32_t)viewers;
    p->products = (uint32_t)products;
    if ((rc = flag_int("days", 1, 89, &v, err, errlen)) != 0) {
        return rc;
    }
    p->days = (uint32_t)v;
    const char *now = yw_config_get(options, N_OPTIONS, "now");
    if (now != NULL && now[0] != '\0') {
        if ((rc = flag_int("now", 0, INT64_C(7000000000), &v, err, errlen)) != 0) {
            return rc;
        }
        p->now_s = v;
    } else {
        p->now_s = (int64_t)time(NULL);
    }
    if ((rc = flag_double("followers-median", &p->followers_median, err, errlen)) != 0 ||
        (rc = flag_double("followers-spread", &p->followers_spread, err, errlen)) != 0 ||
        (rc = flag_double("feed-exponent", &p->feed_exponent, err, errlen)) != 0 ||
        (rc = flag_double("quality-spread", &p->quality_spread, err, errlen)) != 0 ||
        (rc = flag_tiers("notes", p->notes_per_30d, err, errlen)) != 0 ||
        (rc = flag_tiers("view-rate", p->view_rate, err, errlen)) != 0 ||
        (rc = flag_tiers("ctr", p->ctr, err, errlen)) != 0 ||
        (rc = flag_tiers("cvr", p->cvr, err, errlen)) != 0 ||
        (rc = flag_double("assist-rate", &p->assist_rate, err, errlen)) != 0 ||
        (rc = flag_double("refund-rate", &p->refund_rate, err, errlen)) != 0 ||
        (rc = flag_double("organic-rate", &p->organic_rate, err, errlen)) != 0 ||
        (rc = flag_double("late-rate", &p->late_rate, err, errlen)) != 0 ||
        (rc = flag_double("dup-rate", &p->dup_rate, err, errlen)) != 0 ||
        (rc = flag_double("invalid-rate", &p->invalid_rate, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = flag_int("stats-days", 1, 89, &v, err, errlen)) != 0) {
        return rc;
    }
    p->stats_days = (uint32_t)v;
    if (parse_model(yw_config_get(options, N_OPTIONS, "model"), &d->model2) != 0) {
        snprintf(err, errlen,
                 "--model: \"%s\" is not one of LAST_TOUCH, FIRST_TOUCH, LINEAR, "
                 "TIME_DECAY, POSITION_BASED",
                 yw_config_get(options, N_OPTIONS, "model"));
        return -EINVAL;
    }
    if ((rc = flag_int("top", 0, 1000, &v, err, errlen)) != 0) {
        return rc;
    }
    d->top = (int)v;
    if ((rc = flag_int("min-impressions", 0, INT64_MAX, &d->min_impressions, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = flag_int("batch", 1, 10000, &v, err, errlen)) != 0) {
        return rc;
    }
    d->batch = (int)v;
    if ((rc = flag_int("inflight", 1, 256, &v, err, errlen)) != 0) {
        return rc;
    }
    d->inflight = (int)v;
    if ((rc = flag_int("create-inflight", 1, 1024, &v, err, errlen)) != 0) {
        return rc;
    }
    d->create_inflight = (int)v;
    if ((rc = flag_int("tier-wait-s", 1, 86400, &d->tier_wait_s, err, errlen)) != 0 ||
        (rc = flag_int("ready-wait-s", 1, 86400, &d->ready_wait_s, err, errlen)) != 0 ||
        (rc = flag_int("serve", 0, 1, &v, err, errlen)) != 0) {
        return rc;
    }
    d->serve = (int)v;
    const char *prog = yw_config_get(options, N_OPTIONS, "progress");
    if (strcmp(prog, "auto") == 0) {
        d->progress = isatty(STDERR_FILENO) ? DEMO_PROGRESS_TTY : DEMO_PROGRESS_LINES;
    } else if (strcmp(prog, "tty") == 0) {
        d->progress = DEMO_PROGRESS_TTY;
    } else if (strcmp(prog, "lines") == 0) {
        d->progress = DEMO_PROGRESS_LINES;
    } else if (strcmp(prog, "off") == 0) {
        d->progress = DEMO_PROGRESS_OFF;
    } else {
        snprintf(err, errlen, "--progress: must be auto, tty, lines or off, got \"%s\"", prog);
        return -EINVAL;
    }
    d->cp_addr = yw_config_get(options, N_OPTIONS, "creator-profile-addr");
    d->ts_addr = yw_config_get(options, N_OPTIONS, "tier-scoring-addr");
    d->at_addr = yw_config_get(options, N_OPTIONS, "attribution-addr");
    return 0;
}

/* ---- the services' state ---- */

static int wait_ready(demo_t *d, demo_chans_t *ch, const char *name, const char *addr, char *err,
                      size_t errlen)
{
    uint64_t deadline = demo_now_ns() + (uint64_t)d->ready_wait_s * UINT64_C(1000000000);
    char last[DEMO_CERR_MAX] = "";
    for (;;) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        grpc_status_code code = demo_call(d->rt, ch, "/grpc.health.v1.Health/Check", &req.base,
                                          &grpc__health__v1__health_check_response__descriptor,
                                          2000, 1, &resp, last, sizeof last);
        if (code == GRPC_STATUS_OK) {
            int st = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
            protobuf_c_message_free_unpacked(resp, NULL);
            if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
                return 0;
            }
            snprintf(last, sizeof last, "health status %d, not SERVING", st);
        }
        if (demo_now_ns() > deadline) {
            snprintf(err, errlen, "%s at %s is not SERVING after %lld s (last: %s)", name, addr,
                     d->ready_wait_s, last);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
}

static int read_policy(demo_t *d, char *err, size_t errlen)
{
    Yaowei__Tier__V1__GetTierPolicyRequest req = YAOWEI__TIER__V1__GET_TIER_POLICY_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char cerr[DEMO_CERR_MAX];
    grpc_status_code code =
        demo_call(d->rt, &d->ts, "/yaowei.tier.v1.TierScoringService/GetTierPolicy", &req.base,
                  &yaowei__tier__v1__tier_policy__descriptor, DEMO_TIMEOUT_MS, DEMO_SEND_ATTEMPTS,
                  &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "tier scoring: GetTierPolicy: %s", cerr);
        return -EIO;
    }
    const Yaowei__Tier__V1__TierPolicy *p = (const Yaowei__Tier__V1__TierPolicy *)resp;
    /* The generator's per-tier parameters follow the tiers tier scoring will assign. */
    d->params.head_min = p->head_min_followers;
    d->params.mid_min = p->mid_min_followers;
    d->params.tail_min = p->tail_min_followers;
    d->policy_version = p->version;
    d->rising_top_fraction = p->rising_top_fraction;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int64_t duration_s(const Google__Protobuf__Duration *dur)
{
    return dur != NULL ? dur->seconds : 0;
}

/*
 * Reads attribution's settings and widens the late window when the join horizon
 * (max(click, view window) + late window) does not reach back over the whole period:
 * a backfill of 30 days is "late" by up to 30 days, and with the default 7 days its
 * orders older than 14 days could join nothing.
 */
static int prepare_attribution(demo_t *d, char *err, size_t errlen)
{
    Yaowei__Attribution__V1__GetAttributionSettingsRequest req =
        YAOWEI__ATTRIBUTION__V1__GET_ATTRIBUTION_SETTINGS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char cerr[DEMO_CERR_MAX];
    grpc_status_code code =
        demo_call(d->rt, &d->at, "/yaowei.attribution.v1.AttributionService/GetAttributionSettings",
                  &req.base, &yaowei__attribution__v1__attribution_settings__descriptor,
                  DEMO_TIMEOUT_MS, DEMO_SEND_ATTEMPTS, &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "attribution: GetAttributionSettings: %s", cerr);
        return -EIO;
    }
    const Yaowei__Attribution__V1__AttributionSettings *s =
        (const Yaowei__Attribution__V1__AttributionSettings *)resp;
    d->click_window_s = duration_s(s->click_window);
    d->view_window_s = duration_s(s->view_window);
    d->late_window_s = d->late_window_before_s = duration_s(s->late_window);
    d->default_model = s->default_model;
    snprintf(d->currency, sizeof d->currency, "%s", s->currency ? s->currency : "");
    protobuf_c_message_free_unpacked(resp, NULL);
    snprintf(d->bad_currency, sizeof d->bad_currency, "%s",
             strcmp(d->currency, "USD") == 0 ? "EUR" : "USD");

    /* Conversions older than the late window count as past the horizon too: the late
     * window alone must cover the period (and a day for the orders' delays). */
    int64_t need = ((int64_t)d->params.days + 1) * 86400;
    if (d->late_window_s >= need) {
        return 0;
    }
    Google__Protobuf__Duration late = GOOGLE__PROTOBUF__DURATION__INIT;
    late.seconds = need;
    Yaowei__Attribution__V1__AttributionSettings set =
        YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_SETTINGS__INIT;
    set.late_window = &late;
    char *paths[] = {"late_window"};
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    mask.paths = paths;
    mask.n_paths = 1;
    Yaowei__Attribution__V1__UpdateAttributionSettingsRequest up =
        YAOWEI__ATTRIBUTION__V1__UPDATE_ATTRIBUTION_SETTINGS_REQUEST__INIT;
    up.settings = &set;
    up.update_mask = &mask;
    code = demo_call(d->rt, &d->at,
                     "/yaowei.attribution.v1.AttributionService/UpdateAttributionSettings",
                     &up.base, &yaowei__attribution__v1__attribution_settings__descriptor,
                     DEMO_TIMEOUT_MS, DEMO_SEND_ATTEMPTS, &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "attribution: UpdateAttributionSettings (late_window %llds): %s",
                 (long long)need, cerr);
        return -EIO;
    }
    d->late_window_s =
        duration_s(((const Yaowei__Attribution__V1__AttributionSettings *)resp)->late_window);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* "7 d", "36 h" or "90 s". */
static char *fmt_window(char *buf, size_t len, int64_t s)
{
    if (s > 0 && s % 86400 == 0) {
        snprintf(buf, len, "%lld d", (long long)(s / 86400));
    } else if (s > 0 && s % 3600 == 0) {
        snprintf(buf, len, "%lld h", (long long)(s / 3600));
    } else {
        snprintf(buf, len, "%lld s", (long long)s);
    }
    return buf;
}

static void print_header(const demo_t *d)
{
    const demo_world_t *w = d->world;
    const demo_truth_t *t = &d->plan;
    char a[32], b[32], c[32], e[32], f[32], d0[16], d1[16];
    printf("yaowei main job: do mid-tier and long-tail creators sell?\n");
    printf("seed %llu%s: %s creators, %s viewers, %s products, %u days %s .. %s UTC\n",
           (unsigned long long)w->p.seed, d->quick ? " (QUICK)" : "",
           demo_fmt_count(a, sizeof a, w->p.creators), demo_fmt_count(b, sizeof b, w->p.viewers),
           demo_fmt_count(c, sizeof c, w->p.products), w->p.days,
           demo_fmt_day(d0, sizeof d0, d->range_start_s),
           demo_fmt_day(d1, sizeof d1, d->range_end_s - 86400));
    printf("services: creator profile %s, tier scoring %s, attribution ", d->cp_addr, d->ts_addr);
    if (d->at.n == 1) {
        printf("%s\n", d->at.addr[0]);
    } else {
        for (int i = 0; i < d->at.n; i++) {
            printf("%s%s", i > 0 ? ", " : "", d->at.addr[i]);
        }
        printf(" (a cluster of %d nodes, each call to the next)\n", d->at.n);
    }
    printf("workload: %s feed impressions -> %s exposure events, %s orders, %s refunds; "
           "%s note stats rows\n",
           demo_fmt_count(a, sizeof a, w->p.impressions),
           demo_fmt_count(b, sizeof b, t->exposures.sent),
           demo_fmt_count(c, sizeof c, t->conversions.accepted),
           demo_fmt_count(e, sizeof e, t->refunds.accepted),
           demo_fmt_count(f, sizeof f, d->stats_rows));
    char cw[32], vw[32], lw[32], lb[32];
    printf("attribution: click window %s, view window %s, late window %s",
           fmt_window(cw, sizeof cw, d->click_window_s),
           fmt_window(vw, sizeof vw, d->view_window_s),
           fmt_window(lw, sizeof lw, d->late_window_s));
    if (d->late_window_s != d->late_window_before_s) {
        printf(" (was %s: widened so that the %u-day backfill can join)",
               fmt_window(lb, sizeof lb, d->late_window_before_s), w->p.days);
    }
    printf(", default model %s, currency %s\n", demo_model_name(d->default_model), d->currency);
    fflush(stdout);
}

static int run(demo_t *d, char *err, size_t errlen)
{
    int rc;
    if ((rc = wait_ready(d, &d->cp, "creator profile", d->cp_addr, err, errlen)) != 0 ||
        (rc = wait_ready(d, &d->ts, "tier scoring", d->ts_addr, err, errlen)) != 0) {
        return rc;
    }
    for (int i = 0; i < d->at.n; i++) {
        demo_chans_t node = demo_chans_one(&d->at, i);
        if ((rc = wait_ready(d, &node, "attribution", d->at.addr[i], err, errlen)) != 0) {
            return rc;
        }
    }
    if ((rc = read_policy(d, err, errlen)) != 0 ||
        (rc = prepare_attribution(d, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = demo_world_create(&d->params, &d->world, err, errlen)) != 0) {
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "out of memory making the world");
        }
        return rc;
    }
    if ((rc = demo_plan(d->world, &d->plan)) != 0 ||
        (rc = demo_events_create(d->world, &d->events)) != 0) {
        snprintf(err, errlen, "out of memory planning the events");
        return rc;
    }
    d->stats_rows = demo_stats_rows(d->world);
    d->range_start_s = d->world->start_s;
    d->range_end_s = d->params.now_s - d->params.now_s % 86400 + 86400;
    print_header(d);

    if ((rc = demo_load_creators(d, err, errlen)) != 0 ||
        (rc = demo_load_stats(d, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = demo_load_exposures(d, err, errlen)) != 0 ||
        (rc = demo_load_conversions(d, err, errlen)) != 0 ||
        (rc = demo_load_late(d, err, errlen)) != 0 ||
        (rc = demo_load_refunds(d, err, errlen)) != 0 ||
        (rc = demo_wait_tier_population(d, err, errlen)) != 0) {
        return rc;
    }
    return demo_report(d, err, errlen);
}

int main(int argc, char **argv)
{
    /* Switches given alone become "--name=1" for yw_config_parse(). */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (args == NULL) {
        fprintf(stderr, "demo: out of memory\n");
        return EXIT_SERVICE;
    }
    for (int i = 0; i < argc; i++) {
        args[i] = argv[i];
        for (size_t k = 0; i > 0 && k < sizeof switches / sizeof switches[0]; k++) {
            int next_is_value =
                i + 1 < argc && (strcmp(argv[i + 1], "0") == 0 || strcmp(argv[i + 1], "1") == 0);
            if (strcmp(argv[i], switches[k]) == 0 && !next_is_value) {
                static char on[sizeof switches / sizeof switches[0]][16];
                snprintf(on[k], sizeof on[k], "%s=1", switches[k]);
                args[i] = on[k];
            }
        }
    }
    int rc = yw_config_parse(argc, args, options, N_OPTIONS, "demo",
                             "yaowei's main job: sends a realistic creator, stats, exposure and "
                             "order workload through the three services' gRPC APIs, then prints "
                             "the tier report, the top rising mid/tail creators and the events "
                             "acknowledged against the generator's ground truth.");
    if (rc != 0) {
        free(args);
        return rc > 0 ? 0 : EXIT_FLAGS;
    }
    demo_t d;
    memset(&d, 0, sizeof d);
    char err[DEMO_ERR_MAX] = "";
    if (parse_flags(&d, err, sizeof err) != 0) {
        fprintf(stderr, "demo: %s\n", err);
        free(args);
        return EXIT_FLAGS;
    }
    /* Flags that the world checks (rates, thresholds) fail before any call is made. */
    demo_params_t probe = d.params;
    if (demo_params_validate(&probe, err, sizeof err) != 0) {
        fprintf(stderr, "demo: --%s\n", err);
        free(args);
        return EXIT_FLAGS;
    }
    int exit_code = 0;
    if ((rc = yw_runtime_create(&d.rt)) != 0) {
        fprintf(stderr, "demo: cannot create the runtime: %s\n", uv_strerror(rc));
        free(args);
        return EXIT_SERVICE;
    }
    struct {
        const char *flag, *addrs;
        demo_chans_t *chans;
    } services[] = {
        {"creator-profile-addr", d.cp_addr, &d.cp},
        {"tier-scoring-addr", d.ts_addr, &d.ts},
        {"attribution-addr", d.at_addr, &d.at},
    };
    for (size_t i = 0; i < sizeof services / sizeof services[0] && exit_code == 0; i++) {
        if ((rc = demo_chans_open(d.rt, services[i].addrs, services[i].chans, err, sizeof err)) !=
            0) {
            fprintf(stderr, "demo: --%s: %s\n", services[i].flag, err);
            exit_code = rc == -EINVAL ? EXIT_FLAGS : EXIT_SERVICE;
        }
    }
    if (exit_code == 0) {
        rc = run(&d, err, sizeof err);
        fflush(stdout);
        if (rc < 0) {
            fprintf(stderr, "demo: %s\n", err);
            exit_code = rc == -EINVAL ? EXIT_FLAGS : EXIT_SERVICE;
        } else if (rc > 0) {
            fprintf(stderr, "demo: some checks failed (MISMATCH lines above)\n");
            exit_code = EXIT_CHECKS;
        }
        if (rc >= 0 && d.serve) {
            demo_print_try(&d);
        }
    }
    demo_chans_close(&d.cp);
    demo_chans_close(&d.ts);
    demo_chans_close(&d.at);
    yw_runtime_destroy(d.rt);
    demo_events_destroy(d.events);
    demo_world_destroy(d.world);
    free(args);
    return exit_code;
}
