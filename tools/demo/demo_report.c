/*
 * demo_report.c — what the main job prints once the workload is in: tier scoring's view
 * of the creators, the tier report under the default model and a second one, the top
 * rising mid/tail creators by GPM, and the events attribution acknowledged against the
 * generator's ground truth, with a check line for everything that must add up.
 *
 * The output is stdout, one section per block, each opened by a line "== title ==", so
 * that a person reads it and a test parses it (tests/integration/test_demo.py).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/demo/demo.h"
#include "tools/demo/demo_progress.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define TS_SVC "/yaowei.tier.v1.TierScoringService/"
#define AT_SVC "/yaowei.attribution.v1.AttributionService/"

/* Pages of ListTopCreators read at most while looking for rising creators. */
#define TOP_PAGES_MAX 100
#define TOP_PAGE_SIZE 1000

char *demo_fmt_money(char *buf, size_t len, int64_t minor)
{
    char units[32];
    uint64_t abs = minor < 0 ? (uint64_t)(-(minor + 1)) + 1 : (uint64_t)minor;
    demo_fmt_count(units, sizeof units, abs / 100);
    snprintf(buf, len, "%s%s.%02u", minor < 0 ? "-" : "", units, (unsigned)(abs % 100));
    return buf;
}

char *demo_fmt_day(char *buf, size_t len, int64_t s)
{
    time_t t = (time_t)s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d", &tm) == 0) {
        snprintf(buf, len, "?");
    }
    return buf;
}

const char *demo_model_name(int model)
{
    static const char *const names[] = {"UNSPECIFIED", "LAST_TOUCH", "FIRST_TOUCH",
                                        "LINEAR",      "TIME_DECAY", "POSITION_BASED"};
    return model >= 0 && model <= 5 ? names[model] : "?";
}

/* TIER_HEAD..TIER_AMATEUR -> DEMO_TIER_*, else -1. */
static int demo_tier(int proto_tier)
{
    return proto_tier >= YAOWEI__TIER__V1__TIER__TIER_HEAD &&
                   proto_tier <= YAOWEI__TIER__V1__TIER__TIER_AMATEUR
               ? proto_tier - 1
               : -1;
}

static const char *tier_label(int proto_tier)
{
    int t = demo_tier(proto_tier);
    return t >= 0 ? demo_tier_name(t) : "UNLABELED";
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- tier scoring's population ---- */

int demo_wait_tier_population(demo_t *d, char *err, size_t errlen)
{
    uint64_t t0 = demo_now_ns();
    uint64_t want = d->world->p.creators;
    /* A refresh that starts after this call reads every creator and the stats sent. */
    Yaowei__Tier__V1__RefreshPopulationRequest req =
        YAOWEI__TIER__V1__REFRESH_POPULATION_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char cerr[DEMO_CERR_MAX];
    if (d->progress != DEMO_PROGRESS_OFF) {
        fprintf(stderr, "%-12s refreshing its population (RefreshPopulation)\n", "tier scoring");
    }
    grpc_status_code code = demo_call(d->rt, &d->ts, TS_SVC "RefreshPopulation", &req.base,
                                      &yaowei__tier__v1__refresh_population_response__descriptor,
                                      d->tier_wait_s * 1000, 3, &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen,
                 "tier scoring: RefreshPopulation (it reads every creator and its stats from "
                 "creator profile; --tier-wait-s %lld): %s",
                 d->tier_wait_s, cerr);
        return code == GRPC_STATUS_DEADLINE_EXCEEDED ? -ETIMEDOUT : -EIO;
    }
    const Yaowei__Tier__V1__RefreshPopulationResponse *rp =
        (const Yaowei__Tier__V1__RefreshPopulationResponse *)resp;
    int64_t total = rp->total_creators;
    d->tier_refresh_s = rp->refresh_time != NULL ? rp->refresh_time->seconds : 0;
    protobuf_c_message_free_unpacked(resp, NULL);
    if ((uint64_t)total < want) {
        snprintf(err, errlen,
                 "tier scoring: its refreshed population holds %" PRId64 " creators, fewer "
                 "than the %" PRIu64 " created",
                 total, want);
        return -EIO;
    }
    /* Per tier, from the population just built (or a newer one). */
    Yaowei__Tier__V1__GetTierDistributionRequest dreq =
        YAOWEI__TIER__V1__GET_TIER_DISTRIBUTION_REQUEST__INIT;
    code = demo_call(d->rt, &d->ts, TS_SVC "GetTierDistribution", &dreq.base,
                     &yaowei__tier__v1__tier_distribution__descriptor, 10000, DEMO_SEND_ATTEMPTS,
                     &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "tier scoring: GetTierDistribution: %s", cerr);
        return -EIO;
    }
    const Yaowei__Tier__V1__TierDistribution *td = (const Yaowei__Tier__V1__TierDistribution *)resp;
    d->tier_total = (uint64_t)td->total_creators;
    for (size_t i = 0; i < td->n_tiers; i++) {
        int t = demo_tier(td->tiers[i]->tier);
        if (t >= 0) {
            d->tier_creators[t] = (uint64_t)td->tiers[i]->creators;
            d->tier_rising[t] = (uint64_t)td->tiers[i]->rising;
        }
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    d->tier_wait_seconds = (double)(demo_now_ns() - t0) / 1e9;
    if (d->progress != DEMO_PROGRESS_OFF) {
        char n[32];
        fprintf(stderr, "%-12s population of %s creators, refreshed after the stats (%.1f s)\n",
                "tier scoring", demo_fmt_count(n, sizeof n, d->tier_total), d->tier_wait_seconds);
    }
    return 0;
}

/* ---- printing helpers ---- */

static const char *pct(char *buf, size_t len, double share)
{
    snprintf(buf, len, "%.1f%%", 100.0 * share);
    return buf;
}

static void print_step(const char *what, uint64_t n, const char *unit, const demo_pipe_stats_t *st)
{
    char c[32], r[32];
    demo_fmt_count(c, sizeof c, n);
    demo_fmt_count(r, sizeof r, (uint64_t)llround(st->seconds > 0 ? (double)n / st->seconds : 0));
    printf("  %-24s %12s %-8s %7.1f s %11s/s", what, c, unit, st->seconds, r);
    if (st->retries > 0) {
        printf("  (%" PRIu64 " calls resent after UNAVAILABLE)", st->retries);
    }
    printf("\n");
}

static void print_workload(const demo_t *d)
{
    printf("\n== Workload sent ==\n");
    print_step("CreateCreator", d->st_creators.events, "creators", &d->st_creators);
    print_step("RecordNoteStats", d->st_stats.events, "rows", &d->st_stats);
    print_step("RecordExposures", d->st_exposures.events, "events", &d->st_exposures);
    print_step("RecordConversions", d->st_conversions.events, "events", &d->st_conversions);
    print_step("RecordExposures (late)", d->st_late.events, "events", &d->st_late);
    print_step("RecordRefunds", d->st_refunds.events, "events", &d->st_refunds);
    printf("  %-24s %29.1f s\n", "tier scoring refresh wait", d->tier_wait_seconds);
    if (d->at.n > 1) {
        printf("  attribution calls by node:");
        for (int i = 0; i < d->at.n; i++) {
            printf("%s %s %" PRIu64, i > 0 ? "," : "", d->at.addr[i], d->at.calls[i]);
        }
        printf("\n");
    }

    if (d->creators_existing > 0) {
        printf("  note: %" PRIu64 " creators already existed (the services were not fresh): "
               "their followers are what was stored before, so the checks below may not hold\n",
               d->creators_existing);
    }
}

/* ---- checks ---- */

typedef struct {
    int failed;
    int n;
} checks_t;

static void check(checks_t *c, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void check(checks_t *c, int ok, const char *fmt, ...)
{
    va_list ap;
    printf("  %-8s ", ok ? "ok" : "MISMATCH");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    c->n++;
    if (!ok) {
        c->failed++;
    }
}

/* ---- creators by tier ---- */

static void print_creators(const demo_t *d)
{
    const demo_world_t *w = d->world;
    const demo_params_t *p = &w->p;
    char a[32], b[32], c[32], e[32];
    printf("\n== Creators by tier ==\n");
    printf("policy v%" PRId64 ": HEAD >= %s, MID >= %s, TAIL >= %s followers; rising = top "
           "%.0f%% of MID and of TAIL by score\n",
           d->policy_version, demo_fmt_count(a, sizeof a, (uint64_t)p->head_min),
           demo_fmt_count(b, sizeof b, (uint64_t)p->mid_min),
           demo_fmt_count(c, sizeof c, (uint64_t)p->tail_min), 100.0 * d->rising_top_fraction);
    printf("%-8s %10s %7s %13s %8s | %9s %9s %8s %8s\n", "tier", "generated", "share",
           "tier scoring", "rising", "notes/30d", "view rate", "ctr", "cvr");
    for (int t = 0; t < DEMO_TIERS; t++) {
        printf("%-8s %10s %7s %13s %8s | %9.1f %9.3f %8.4f %8.4f\n", demo_tier_name(t),
               demo_fmt_count(a, sizeof a, w->tier_creators[t]),
               pct(b, sizeof b, (double)w->tier_creators[t] / p->creators),
               demo_fmt_count(c, sizeof c, d->tier_creators[t]),
               t == DEMO_TIER_MID || t == DEMO_TIER_TAIL
                   ? demo_fmt_count(e, sizeof e, d->tier_rising[t])
                   : "-",
               p->notes_per_30d[t], p->view_rate[t], p->ctr[t], p->cvr[t]);
    }
    printf("%-8s %10s %7s %13s\n", "all", demo_fmt_count(a, sizeof a, p->creators), "100.0%",
           demo_fmt_count(c, sizeof c, d->tier_total));
}

/* ---- tier reports ---- */

static Yaowei__Attribution__V1__TierReport *get_tier_report_once(demo_t *d, int model, char *err,
                                                                 size_t errlen)
{
    Google__Protobuf__Timestamp start = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp end = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    start.seconds = d->range_start_s;
    end.seconds = d->range_end_s;
    Yaowei__Attribution__V1__GetTierReportRequest req =
        YAOWEI__ATTRIBUTION__V1__GET_TIER_REPORT_REQUEST__INIT;
    req.start_time = &start;
    req.end_time = &end;
    req.model = (Yaowei__Attribution__V1__AttributionModel)model;
    ProtobufCMessage *resp = NULL;
    char cerr[DEMO_CERR_MAX];
    grpc_status_code code =
        demo_call(d->rt, &d->at, AT_SVC "GetTierReport", &req.base,
                  &yaowei__attribution__v1__tier_report__descriptor, DEMO_TIMEOUT_MS,
                  DEMO_SEND_ATTEMPTS, &resp, cerr, sizeof cerr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "attribution: GetTierReport (%s): %s", demo_model_name(model), cerr);
        return NULL;
    }
    return (Yaowei__Attribution__V1__TierReport *)resp;
}

/*
 * The tier report of `model`, asked again (a few seconds apart, a few times) while
 * attribution could not get every tier label from tier scoring: its first report after
 * a large load asks for tens of thousands of labels at once, and a batch can miss its
 * deadline; the labels it did get are cached, so the next ask completes them.
 */
static Yaowei__Attribution__V1__TierReport *get_tier_report(demo_t *d, int model, int *asks,
                                                            char *err, size_t errlen)
{
    for (int attempt = 1;; attempt++) {
        Yaowei__Attribution__V1__TierReport *r = get_tier_report_once(d, model, err, errlen);
        *asks = attempt;
        if (r == NULL || r->unlabeled_creators == 0 || attempt == DEMO_LABEL_ATTEMPTS) {
            return r;
        }
        fprintf(stderr,
                "attribution: GetTierReport (%s) left %" PRId64 " creators unlabeled (%s); "
                "asking again\n",
                demo_model_name(model), r->unlabeled_creators,
                r->tier_labels_error && r->tier_labels_error[0]
                    ? r->tier_labels_error
                    : "tier scoring does not know them");
        protobuf_c_message_free_unpacked(&r->base, NULL);
        sleep_ms(DEMO_LABEL_PAUSE_MS);
    }
}

static void print_tier_report(const demo_t *d, const Yaowei__Attribution__V1__TierReport *r,
                              const char *why, int asks)
{
    char a[32], b[32], c[32], g[40], s1[16], s2[16];
    char d0[16], d1[16];
    printf("\n== Tier report: %s (%s) ==\n", demo_model_name(r->model), why);
    printf("%s .. %s UTC (%u days), money in %s\n", demo_fmt_day(d0, sizeof d0, d->range_start_s),
           demo_fmt_day(d1, sizeof d1, d->range_end_s - 86400), d->world->p.days,
           r->currency && r->currency[0] ? r->currency : d->currency);
    printf("%-9s %9s %12s %9s %9s %10s %14s %9s %10s %6s\n", "tier", "creators", "impressions",
           "imp share", "clicks", "orders", "GMV", "GMV share", "GPM", "lift");
    int64_t imps = 0, clicks = 0, gmv = 0, creators = 0;
    double orders = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const Yaowei__Attribution__V1__TierRow *row = r->rows[i];
        printf("%-9s %9s %12s %9s %9s %10.1f %14s %9s %10.2f %6.2f\n", tier_label(row->tier),
               demo_fmt_count(a, sizeof a, (uint64_t)row->creators),
               demo_fmt_count(b, sizeof b, (uint64_t)row->impressions),
               pct(s1, sizeof s1, row->impression_share),
               demo_fmt_count(c, sizeof c, (uint64_t)row->clicks), row->attributed_conversions,
               demo_fmt_money(g, sizeof g, row->attributed_gmv_minor),
               pct(s2, sizeof s2, row->gmv_share), row->gpm / 100.0, row->lift);
        creators += row->creators;
        imps += row->impressions;
        clicks += row->clicks;
        orders += row->attributed_conversions;
        gmv += row->attributed_gmv_minor;
    }
    printf("%-9s %9s %12s %9s %9s %10.1f %14s %9s %10.2f %6s\n", "all",
           demo_fmt_count(a, sizeof a, (uint64_t)creators),
           demo_fmt_count(b, sizeof b, (uint64_t)imps), "100.0%",
           demo_fmt_count(c, sizeof c, (uint64_t)clicks), orders, demo_fmt_money(g, sizeof g, gmv),
           "100.0%", imps > 0 ? (double)gmv / (double)imps * 1000.0 / 100.0 : 0.0, "1.00");
    printf("unattributed: %" PRId64 " orders, %s %s (no eligible touch)\n",
           r->unattributed_conversions, demo_fmt_money(g, sizeof g, r->unattributed_gmv_minor),
           d->currency);
    printf("GPM = attributed GMV per 1,000 impressions; lift = GMV share / impression share\n");
    if (asks > 1) {
        printf("(asked %d times: attribution could not get every tier label from tier scoring "
               "at first)\n",
               asks);
    }
    if (r->unlabeled_creators > 0 || (r->tier_labels_error && r->tier_labels_error[0])) {
        printf("unlabeled creators: %" PRId64 " %s\n", r->unlabeled_creators,
               r->tier_labels_error ? r->tier_labels_error : "");
    }
}

static const Yaowei__Attribution__V1__TierRow *row_of(const Yaowei__Attribution__V1__TierReport *r,
                                                      int proto_tier)
{
    for (size_t i = 0; i < r->n_rows; i++) {
        if ((int)r->rows[i]->tier == proto_tier) {
            return r->rows[i];
        }
    }
    return NULL;
}

/* GPM of `tier` over HEAD's, 0 when either is missing. */
static double gpm_ratio(const Yaowei__Attribution__V1__TierReport *r, int proto_tier)
{
    const Yaowei__Attribution__V1__TierRow *head = row_of(r, YAOWEI__TIER__V1__TIER__TIER_HEAD);
    const Yaowei__Attribution__V1__TierRow *t = row_of(r, proto_tier);
    return head != NULL && t != NULL && head->gpm > 0 ? t->gpm / head->gpm : 0;
}

static void print_verdict(const Yaowei__Attribution__V1__TierReport *r1,
                          const Yaowei__Attribution__V1__TierReport *r2)
{
    const Yaowei__Attribution__V1__TierRow *head = row_of(r1, YAOWEI__TIER__V1__TIER__TIER_HEAD);
    printf("\n== Answer ==\n");
    if (head == NULL || head->gpm <= 0) {
        printf("HEAD has no attributed GMV in the period: no ratio to give.\n");
        return;
    }
    double m1 = gpm_ratio(r1, YAOWEI__TIER__V1__TIER__TIER_MID);
    double t1 = gpm_ratio(r1, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    double m2 = gpm_ratio(r2, YAOWEI__TIER__V1__TIER__TIER_MID);
    double t2 = gpm_ratio(r2, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    printf("Per 1,000 impressions, MID creators sell %.2fx and TAIL creators %.2fx what HEAD "
           "creators sell under %s (%s: %.2fx and %.2fx).\n",
           m1, t1, demo_model_name(r1->model), demo_model_name(r2->model), m2, t2);
    printf("HEAD gets %.1f%% of the impressions and earns %.1f%% of the attributed GMV (%s).\n",
           100.0 * head->impression_share, 100.0 * head->gmv_share, demo_model_name(r1->model));
    printf("%s\n", m1 > 1 && t1 > 1 ? "Mid and tail convert better per exposure than head."
                                    : "Mid and tail do not convert better per exposure than "
                                      "head in this workload.");
}

/* ---- top rising mid/tail creators ---- */

typedef struct {
    char id[32], category[24];
    int tier;
    int64_t followers, impressions, clicks, gmv;
    double orders, gpm, score, percentile;
} top_t;

static void fill_range(Google__Protobuf__Timestamp *start, Google__Protobuf__Timestamp *end,
                       const demo_t *d)
{
    google__protobuf__timestamp__init(start);
    google__protobuf__timestamp__init(end);
    start->seconds = d->range_start_s;
    end->seconds = d->range_end_s;
}

/* Scores `n` candidate rows and appends the rising ones to top (up to `max`). */
static int add_rising(demo_t *d, Yaowei__Attribution__V1__CreatorRow **rows, size_t n, top_t *top,
                      int *n_top, int max, char *err, size_t errlen)
{
    if (n == 0) {
        return 0;
    }
    char **ids = malloc(n * sizeof *ids);
    if (ids == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = rows[i]->creator_id;
    }
    Yaowei__Tier__V1__BatchScoreCreatorsRequest req =
        YAOWEI__TIER__V1__BATCH_SCORE_CREATORS_REQUEST__INIT;
    req.creator_ids = ids;
    req.n_creator_ids = n;
    ProtobufCMessage *resp = NULL;
    char cerr[DEMO_CERR_MAX];
    grpc_status_code code =
        demo_call(d->rt, &d->ts, TS_SVC "BatchScoreCreators", &req.base,
                  &yaowei__tier__v1__batch_score_creators_response__descriptor, DEMO_TIMEOUT_MS,
                  DEMO_SEND_ATTEMPTS, &resp, cerr, sizeof cerr);
    free(ids);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "tier scoring: BatchScoreCreators: %s", cerr);
        return -EIO;
    }
    const Yaowei__Tier__V1__BatchScoreCreatorsResponse *r =
        (const Yaowei__Tier__V1__BatchScoreCreatorsResponse *)resp;
    for (size_t i = 0; i < r->n_scores && i < n && *n_top < max; i++) {
        const Yaowei__Tier__V1__TierScore *s = r->scores[i];
        if (!s->rising) {
            continue;
        }
        const Yaowei__Attribution__V1__CreatorRow *row = rows[i];
        top_t *t = &top[(*n_top)++];
        snprintf(t->id, sizeof t->id, "%s", row->creator_id);
        snprintf(t->category, sizeof t->category, "%s", s->category ? s->category : "");
        t->tier = s->tier;
        t->followers = s->followers;
        t->impressions = row->impressions;
        t->clicks = row->clicks;
        t->gmv = row->attributed_gmv_minor;
        t->orders = row->attributed_conversions;
        t->gpm = row->gpm;
        t->score = s->score;
        t->percentile = s->percentile;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/*
 * The `d->top` best rising creators of one tier by GPM: pages of ListTopCreators (that
 * tier, by GPM), the rows with at least `min_impressions`, scored by tier scoring
 * (BatchScoreCreators) for the rising flag.
 */
static int print_top_rising(demo_t *d, int proto_tier, int64_t min_impressions, char *err,
                            size_t errlen)
{
    int max = d->top;
    top_t *top = calloc((size_t)(max > 0 ? max : 1), sizeof *top);
    Yaowei__Attribution__V1__CreatorRow **cand = malloc(TOP_PAGE_SIZE * sizeof *cand);
    char *token = strdup("");
    if (top == NULL || cand == NULL || token == NULL) {
        free(top);
        free(cand);
        free(token);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int n_top = 0, rc = 0;
    uint64_t scanned = 0, eligible = 0;
    Yaowei__Tier__V1__Tier tiers[1] = {(Yaowei__Tier__V1__Tier)proto_tier};
    for (int page = 0; page < TOP_PAGES_MAX && n_top < max && rc == 0; page++) {
        Google__Protobuf__Timestamp start, end;
        fill_range(&start, &end, d);
        Yaowei__Attribution__V1__ListTopCreatorsRequest req =
            YAOWEI__ATTRIBUTION__V1__LIST_TOP_CREATORS_REQUEST__INIT;
        req.start_time = &start;
        req.end_time = &end;
        req.tiers = tiers;
        req.n_tiers = 1;
        req.order_by = YAOWEI__ATTRIBUTION__V1__TOP_CREATORS_ORDER__TOP_CREATORS_ORDER_GPM;
        req.page_size = TOP_PAGE_SIZE;
        req.page_token = token;
        ProtobufCMessage *resp = NULL;
        char cerr[DEMO_CERR_MAX];
        grpc_status_code code =
            demo_call(d->rt, &d->at, AT_SVC "ListTopCreators", &req.base,
                      &yaowei__attribution__v1__list_top_creators_response__descriptor,
                      DEMO_TIMEOUT_MS, DEMO_SEND_ATTEMPTS, &resp, cerr, sizeof cerr);
        if (code != GRPC_STATUS_OK) {
            snprintf(err, errlen, "attribution: ListTopCreators: %s", cerr);
            rc = -EIO;
            break;
        }
        const Yaowei__Attribution__V1__ListTopCreatorsResponse *r =
            (const Yaowei__Attribution__V1__ListTopCreatorsResponse *)resp;
        size_t nc = 0;
        for (size_t i = 0; i < r->n_creators && nc < TOP_PAGE_SIZE; i++) {
            if (r->creators[i]->impressions >= min_impressions) {
                cand[nc++] = r->creators[i];
            }
        }
        scanned += r->n_creators;
        eligible += nc;
        rc = add_rising(d, cand, nc, top, &n_top, max, err, errlen);
        free(token);
        token = strdup(r->next_page_token ? r->next_page_token : "");
        int more = r->next_page_token != NULL && r->next_page_token[0] != '\0';
        protobuf_c_message_free_unpacked(resp, NULL);
        if (token == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        }
        if (!more) {
            break;
        }
    }
    if (rc == 0) {
        char a[32], b[32], c[32], g[40];
        printf("%s: at least %s impressions; %s of the first %s by GPM have that many\n",
               tier_label(proto_tier), demo_fmt_count(a, sizeof a, (uint64_t)min_impressions),
               demo_fmt_count(b, sizeof b, eligible), demo_fmt_count(c, sizeof c, scanned));
        printf("%3s %-10s %-5s %-10s %10s %11s %7s %7s %12s %9s %6s %5s\n", "#", "creator", "tier",
               "category", "followers", "impressions", "clicks", "orders", "GMV", "GPM", "score",
               "pctl");
        for (int i = 0; i < n_top; i++) {
            const top_t *t = &top[i];
            printf("%3d %-10s %-5s %-10s %10s %11s %7s %7.1f %12s %9.2f %6.1f %5.0f\n", i + 1,
                   t->id, tier_label(t->tier), t->category,
                   demo_fmt_count(a, sizeof a, (uint64_t)t->followers),
                   demo_fmt_count(b, sizeof b, (uint64_t)t->impressions),
                   demo_fmt_count(c, sizeof c, (uint64_t)t->clicks), t->orders,
                   demo_fmt_money(g, sizeof g, t->gmv), t->gpm / 100.0, t->score, t->percentile);
        }
        if (n_top == 0) {
            printf("(none: no rising %s creator has that many impressions)\n",
                   tier_label(proto_tier));
        } else if (d->sample_creator[0] == '\0') {
            snprintf(d->sample_creator, sizeof d->sample_creator, "%s", top[0].id);
        }
    }
    free(top);
    free(cand);
    free(token);
    return rc;
}

/* The impressions a creator of `proto_tier` needs to be listed: --min-impressions, or
 * twice the tier's impressions per creator in the report (at least 20), so that one
 * lucky order on a handful of impressions does not top the list. */
static int64_t min_impressions_for(const demo_t *d, const Yaowei__Attribution__V1__TierReport *r,
                                   int proto_tier)
{
    if (d->min_impressions > 0) {
        return d->min_impressions;
    }
    const Yaowei__Attribution__V1__TierRow *row = row_of(r, proto_tier);
    int64_t m = row != NULL && row->creators > 0 ? 2 * row->impressions / row->creators : 0;
    return m > 20 ? m : 20;
}

static int print_rising(demo_t *d, const Yaowei__Attribution__V1__TierReport *r, char *err,
                        size_t errlen)
{
    printf("\n== Top rising MID/TAIL creators by GPM (%s) ==\n", demo_model_name(r->model));
    printf("rising = in the top %.0f%% of its tier by tier scoring's score (BatchScoreCreators)\n",
           100.0 * d->rising_top_fraction);
    int rc =
        print_top_rising(d, YAOWEI__TIER__V1__TIER__TIER_MID,
                         min_impressions_for(d, r, YAOWEI__TIER__V1__TIER__TIER_MID), err, errlen);
    if (rc == 0) {
        rc = print_top_rising(d, YAOWEI__TIER__V1__TIER__TIER_TAIL,
                              min_impressions_for(d, r, YAOWEI__TIER__V1__TIER__TIER_TAIL), err,
                              errlen);
    }
    return rc;
}

/* ---- events against the ground truth ---- */

static int print_event_row(checks_t *c, const char *kind, const demo_got_t *g,
                           const demo_counts_t *want, uint64_t retries)
{
    char s[32], a[32], du[32], r[32], wa[32], wd[32], wr[32];
    int exact = g->accepted == want->accepted && g->duplicates == want->duplicates &&
                g->rejected == want->rejected;
    int adds_up = g->accepted + g->duplicates + g->rejected == g->sent && g->sent == want->sent;
    /* A call resent after UNAVAILABLE whose first attempt was stored turns accepted into
     * duplicates; only then may the two differ, by the same number. */
    int by_retries = !exact && adds_up && retries > 0 && g->rejected == want->rejected &&
                     want->accepted - g->accepted == g->duplicates - want->duplicates;
    const char *verdict = exact && adds_up ? "ok" : by_retries ? "ok-retried" : "MISMATCH";
    printf("%-12s %11s | %11s %10s %9s | %11s %10s %9s  %s\n", kind,
           demo_fmt_count(s, sizeof s, g->sent), demo_fmt_count(a, sizeof a, g->accepted),
           demo_fmt_count(du, sizeof du, g->duplicates), demo_fmt_count(r, sizeof r, g->rejected),
           demo_fmt_count(wa, sizeof wa, want->accepted),
           demo_fmt_count(wd, sizeof wd, want->duplicates),
           demo_fmt_count(wr, sizeof wr, want->rejected), verdict);
    c->n++;
    if (!(exact && adds_up) && !by_retries) {
        c->failed++;
    }
    return 0;
}

static void print_events(const demo_t *d, checks_t *c)
{
    const demo_truth_t *t = &d->plan;
    printf("\n== Events: acknowledged by attribution vs the generator's ground truth ==\n");
    printf("%-12s %11s | %-32s | %-32s  %s\n", "", "", "attribution said (IngestSummary)",
           "the generator intended", "");
    printf("%-12s %11s | %11s %10s %9s | %11s %10s %9s  %s\n", "kind", "sent", "accepted",
           "duplicate", "rejected", "accepted", "duplicate", "rejected", "check");
    uint64_t exp_retries = d->st_exposures.retries + d->st_late.retries;
    print_event_row(c, "exposures", &d->got_exp, &t->exposures, exp_retries);
    print_event_row(c, "conversions", &d->got_conv, &t->conversions, d->st_conversions.retries);
    print_event_row(c, "refunds", &d->got_ref, &t->refunds, d->st_refunds.retries);
    demo_got_t all = {0};
    demo_counts_t want = {0};
    const demo_got_t *gs[3] = {&d->got_exp, &d->got_conv, &d->got_ref};
    const demo_counts_t *ws[3] = {&t->exposures, &t->conversions, &t->refunds};
    for (int i = 0; i < 3; i++) {
        all.sent += gs[i]->sent;
        all.accepted += gs[i]->accepted;
        all.duplicates += gs[i]->duplicates;
        all.rejected += gs[i]->rejected;
        want.sent += ws[i]->sent;
        want.accepted += ws[i]->accepted;
        want.duplicates += ws[i]->duplicates;
        want.rejected += ws[i]->rejected;
    }
    checks_t ignore = {0};
    print_event_row(&ignore, "total", &all, &want,
                    exp_retries + d->st_conversions.retries + d->st_refunds.retries);
    char a[32], b[32];
    printf("late exposures (sent after the conversions): %s; accepted past the join horizon: "
           "%s\n",
           demo_fmt_count(a, sizeof a, t->late_sent),
           demo_fmt_count(b, sizeof b,
                          d->got_exp.past_join_horizon + d->got_conv.past_join_horizon +
                              d->got_ref.past_join_horizon));
    for (int i = 0; i < 3; i++) {
        for (uint64_t k = 0; k < gs[i]->surprises && k < DEMO_SURPRISES_SHOWN; k++) {
            printf("unexpected rejection: %s\n", gs[i]->surprise[k]);
        }
    }
}

/* ---- the whole report ---- */

int demo_report(demo_t *d, char *err, size_t errlen)
{
    print_workload(d);
    print_creators(d);
    int asks1 = 0, asks2 = 0;
    Yaowei__Attribution__V1__TierReport *r1 = get_tier_report(
        d, YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_UNSPECIFIED, &asks1, err,
        errlen);
    if (r1 == NULL) {
        return -EIO;
    }
    Yaowei__Attribution__V1__TierReport *r2 = get_tier_report(d, d->model2, &asks2, err, errlen);
    if (r2 == NULL) {
        protobuf_c_message_free_unpacked(&r1->base, NULL);
        return -EIO;
    }
    print_tier_report(d, r1, "the default model", asks1);
    print_tier_report(d, r2, "for comparison", asks2);
    print_verdict(r1, r2);
    int rc = print_rising(d, r1, err, errlen);
    checks_t c = {0};
    if (rc == 0) {
        print_events(d, &c);

        const demo_truth_t *t = &d->plan;
        printf("\n== Checks ==\n");
        uint64_t surprises = d->got_exp.surprises + d->got_conv.surprises + d->got_ref.surprises;
        check(&c, surprises == 0,
              "every rejected event is one the generator broke (%" PRIu64 " others)", surprises);
        int tiers_ok = d->creators_existing == 0;
        for (int k = 0; k < DEMO_TIERS; k++) {
            tiers_ok = tiers_ok && d->tier_creators[k] == d->world->tier_creators[k];
        }
        check(&c, tiers_ok, "tier scoring puts as many creators in each tier as generated");
        int imps_ok = r1->unlabeled_creators == 0;
        for (int k = 0; k < DEMO_TIERS; k++) {
            const Yaowei__Attribution__V1__TierRow *row = row_of(r1, k + 1);
            uint64_t imps = row ? (uint64_t)row->impressions : 0;
            uint64_t clicks = row ? (uint64_t)row->clicks : 0;
            imps_ok = imps_ok && imps == t->impressions[k] && clicks == t->clicks[k];
        }
        check(&c, imps_ok, "impressions and clicks per tier in the report equal those generated");
        for (int m = 0; m < 2; m++) {
            const Yaowei__Attribution__V1__TierReport *r = m == 0 ? r1 : r2;
            double orders = (double)r->unattributed_conversions;
            int64_t gmv = r->unattributed_gmv_minor;
            for (size_t i = 0; i < r->n_rows; i++) {
                orders += r->rows[i]->attributed_conversions;
                gmv += r->rows[i]->attributed_gmv_minor;
            }
            char g1[40], g2[40];
            check(&c,
                  fabs(orders - (double)t->conversions.accepted) < 0.01 &&
                      gmv == t->gross_minor - t->refunded_minor,
                  "%s: attributed + unattributed = %.2f orders, %s (generated: %" PRIu64
                  " orders, %s net of refunds)",
                  demo_model_name(r->model), orders, demo_fmt_money(g1, sizeof g1, gmv),
                  t->conversions.accepted,
                  demo_fmt_money(g2, sizeof g2, t->gross_minor - t->refunded_minor));
        }
        printf("unattributed orders: %" PRId64 " (%s), %" PRId64
               " (%s); the generator made %" PRIu64 " with no exposure before them\n",
               r1->unattributed_conversions, demo_model_name(r1->model),
               r2->unattributed_conversions, demo_model_name(r2->model), t->organic_orders);
        printf("%s: %d of %d checks passed\n", c.failed == 0 ? "PASS" : "FAIL", c.n - c.failed,
               c.n);
    }
    protobuf_c_message_free_unpacked(&r1->base, NULL);
    protobuf_c_message_free_unpacked(&r2->base, NULL);
    if (rc != 0) {
        return rc;
    }
    return c.failed == 0 ? 0 : 1;
}

void demo_print_try(const demo_t *d)
{
    char d0[16], d1[16];
    demo_fmt_day(d0, sizeof d0, d->range_start_s);
    demo_fmt_day(d1, sizeof d1, d->range_end_s);
    const char *c = d->sample_creator[0] ? d->sample_creator : "c-000000";
    /* Any node of an attribution cluster answers: the examples ask the first. */
    const char *at = d->at.addr[0];
    printf("\n== Try it (the services stay up; Ctrl-C stops them) ==\n");
    if (d->at.n > 1) {
        printf("attribution: any of its %d nodes answers every call; below, the first\n", d->at.n);
    }
    printf("grpcurl -plaintext %s list\n", at);
    printf("grpcurl -plaintext -d '{\"creator_id\":\"%s\"}' %s "
           "yaowei.creator.v1.CreatorProfileService/GetCreator\n",
           c, d->cp_addr);
    printf("grpcurl -plaintext -d '{\"creator_id\":\"%s\",\"window_days\":30}' %s "
           "yaowei.creator.v1.CreatorProfileService/GetCreatorStats\n",
           c, d->cp_addr);
    printf("grpcurl -plaintext -d '{\"creator_id\":\"%s\"}' %s "
           "yaowei.tier.v1.TierScoringService/ScoreCreator\n",
           c, d->ts_addr);
    printf("grpcurl -plaintext -d '{}' %s yaowei.tier.v1.TierScoringService/GetTierDistribution\n",
           d->ts_addr);
    printf("grpcurl -plaintext -d '{\"tier\":\"TIER_MID\",\"page_size\":5}' %s "
           "yaowei.tier.v1.TierScoringService/ListCreatorsByTier\n",
           d->ts_addr);
    printf("grpcurl -plaintext -d '{\"start_time\":\"%sT00:00:00Z\",\"end_time\":\"%sT00:00:00Z\","
           "\"model\":\"ATTRIBUTION_MODEL_LINEAR\"}' %s "
           "yaowei.attribution.v1.AttributionService/GetTierReport\n",
           d0, d1, at);
    printf("grpcurl -plaintext -d '{\"creator_id\":\"%s\",\"start_time\":\"%sT00:00:00Z\","
           "\"end_time\":\"%sT00:00:00Z\"}' %s "
           "yaowei.attribution.v1.AttributionService/GetCreatorReport\n",
           c, d0, d1, at);
    printf("grpcurl -plaintext -d '{\"order_id\":\"o-1\",\"model\":\"ATTRIBUTION_MODEL_LINEAR\"}' "
           "%s yaowei.attribution.v1.AttributionService/ExplainConversion\n",
           at);
    fflush(stdout);
}
