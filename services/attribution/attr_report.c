/*
 * attr_report.c — GetCreatorReport, GetTierReport and ListTopCreators: sums over the
 * rollups of attr_state.h; the tier report and the top-creators listing first refresh
 * the tier labels of the creators in range (attr_tier.h).
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/page_token.h"
#include "services/attribution/attr_validate.h"
#include "yaowei/tier/v1/tier.pb-c.h"

/** ListTopCreators: page_size when 0, and the largest. */
#define ATTR_PAGE_DEFAULT 50
#define ATTR_PAGE_MAX 1000

/*
 * Reports: the sums are exact (attr_sum_t); an int64 field of the reply gets
 * attr_sum_clamp() of its sum (INT64_MAX: "at least this much"), while the doubles
 * (conversions, GPM, shares, rates) and the ranking come from the exact sums.
 */
static double attr__credit(attr_sum_t units)
{
    return (double)units / (double)ATTR_CREDIT_ONE;
}

static double attr__per(double num, attr_sum_t impressions, double scale)
{
    return impressions > 0 ? num * scale / (double)impressions : 0.0;
}

/**
 * A report's range and model: [d0, d1) in days (attr_validate_range()) and the model
 * resolved (0: the settings' default). Returns 0, or -EINVAL with the call failed
 * INVALID_ARGUMENT.
 */
static int attr__report_args(yw_call_t *call, const attr_state_t *st,
                             const Google__Protobuf__Timestamp *start,
                             const Google__Protobuf__Timestamp *end, int asked, int32_t *d0,
                             int32_t *d1, int *model)
{
    char err[256];
    if (attr_validate_range(start, end, d0, d1, err, sizeof err) != GRPC_STATUS_OK) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return -EINVAL;
    }
    return attr__model_arg(call, &st->settings, asked, model);
}

void attr__on_creator_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetCreatorReportRequest *req =
        (const Yaowei__Attribution__V1__GetCreatorReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    int32_t d0, d1;
    if (req->creator_id == NULL || req->creator_id[0] == '\0') {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "creator_id: is required");
        return;
    }
    int model;
    if (attr__report_args(call, st, req->start_time, req->end_time, (int)req->model, &d0, &d1,
                          &model) != 0) {
        return;
    }
    attr_sums_t s;
    memset(&s, 0, sizeof s);
    int64_t id = attr_intern_find(&st->creators, req->creator_id, strlen(req->creator_id));
    if (id >= 0) {
        attr_state_creator_sums(st, (uint32_t)id, d0, d1, model, &s);
    }
    Yaowei__Attribution__V1__CreatorReport r;
    yaowei__attribution__v1__creator_report__init(&r);
    r.creator_id = req->creator_id;
    r.start_time = req->start_time;
    r.end_time = req->end_time;
    r.model = (Yaowei__Attribution__V1__AttributionModel)model;
    r.impressions = attr_sum_clamp(s.impressions);
    r.views = attr_sum_clamp(s.views);
    r.clicks = attr_sum_clamp(s.clicks);
    r.attributed_conversions = attr__credit(s.credit);
    r.attributed_gmv_minor = attr_sum_clamp(s.gmv);
    r.gpm = attr__per((double)s.gmv, s.impressions, 1000.0);
    r.conversion_rate = attr__per(attr__credit(s.credit), s.impressions, 1.0);
    r.currency = st->settings.currency;
    (void)yw_call_reply(call, &r.base);
}

/** One creator's sums over a report's range. */
typedef struct st_attr_entry_t {
    uint32_t creator;
    const char *name;
    attr_sums_t s;
    double gpm;
} attr_entry_t;

/** A tier report or top-creators listing waiting for tier labels. */
typedef struct st_attr_report_t {
    attr_svc_t *svc;
    yw_call_t *call;
    int32_t d0, d1;
    int model;
    attr_entry_t *entries;
    size_t n;
    /* ListTopCreators */
    unsigned tiers_mask; /* 0: every tier */
    int order_by;
    size_t offset, page_size;
    yw_page_query_t query; /* what its page tokens are bound to */
    void (*finish)(struct st_attr_report_t *r, const char *tier_error);
} attr_report_t;

/** The creators with an exposure or a credit in [d0, d1) under `model`. */
static int attr__collect(attr_state_t *st, attr_report_t *r)
{
    uint32_t n = attr_state_n_creators(st);
    r->entries = malloc((n ? n : 1) * sizeof *r->entries);
    if (r->entries == NULL) {
        return -ENOMEM;
    }
    r->n = 0;
    for (uint32_t c = 0; c < n; c++) {
        attr_entry_t *e = &r->entries[r->n];
        attr_state_creator_sums(st, c, r->d0, r->d1, r->model, &e->s);
        if (e->s.impressions == 0 && e->s.views == 0 && e->s.clicks == 0 && e->s.credit == 0 &&
            e->s.gmv == 0) {
            continue;
        }
        e->creator = c;
        e->name = attr_intern_str(&st->creators, c, NULL);
        e->gpm = attr__per((double)e->s.gmv, e->s.impressions, 1000.0);
        r->n++;
    }
    return 0;
}

static void attr__report_free(attr_report_t *r)
{
    yw_call_set_data(r->call, NULL);
    free(r->entries);
    free(r);
}

/**
 * A report of [d0, d1) under `model` for `call`, to be filled in by the handler and run
 * (attr__report_run()). NULL: out of memory, the call failed.
 */
static attr_report_t *attr__report_new(yw_call_t *call, int32_t d0, int32_t d1, int model)
{
    attr_report_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    r->svc = attr__svc(call);
    r->call = call;
    r->d0 = d0;
    r->d1 = d1;
    r->model = model;
    return r;
}

static void attr__with_labels(attr_report_t *r);

/**
 * Hangs the report on its call, collects the creators in range, then r->finish once the
 * labels are refreshed (attr__with_labels()). Out of memory: the call fails, `r` is freed.
 */
static void attr__report_run(attr_report_t *r)
{
    yw_call_t *call = r->call;
    yw_call_set_data(call, r);
    if (attr__collect(&r->svc->st, r) != 0) {
        attr__report_free(r);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr__with_labels(r);
}

static void attr__on_labels(void *arg, const char *error)
{
    attr_report_t *r = arg;
    if (error != NULL) {
        yw_log(YW_LOG_WARN, "tier labels: %s (unlabelled creators report as TIER_UNSPECIFIED)",
               error);
    }
    r->finish(r, error);
}

/** Refreshes the labels of the report's creators, then calls r->finish. */
static void attr__with_labels(attr_report_t *r)
{
    attr_svc_t *svc = r->svc;
    uint32_t *ids = malloc((r->n ? r->n : 1) * sizeof *ids);
    if (ids == NULL) {
        r->finish(r, "out of memory asking for tier labels");
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        ids[i] = r->entries[i].creator;
    }
    int rc =
        attr_tier_refresh(svc->tier, &svc->st, ids, r->n, attr__now(), r->call, attr__on_labels, r);
    free(ids);
    if (rc == 0) {
        r->finish(r, NULL);
    } else if (rc < 0) {
        r->finish(r, "tier scoring: cannot start a call");
    }
}

static void attr__finish_tier_report(attr_report_t *r, const char *tier_error)
{
    attr_state_t *st = &r->svc->st;
    enum { NT = 5 };
    Yaowei__Attribution__V1__TierRow rows[NT];
    Yaowei__Attribution__V1__TierRow *ptrs[NT];
    int64_t creators[NT] = {0}, unlabeled = 0;
    attr_sum_t impr[NT] = {0}, views[NT] = {0}, clicks[NT] = {0}, credit[NT] = {0}, gmv[NT] = {0};
    attr_sum_t all_impr = 0, all_gmv = 0;
    for (size_t i = 0; i < r->n; i++) {
        const attr_entry_t *e = &r->entries[i];
        int t = attr_tier_of(st, e->creator);
        if (t < 0 || t >= NT) {
            t = 0;
        }
        unlabeled += t == 0;
        creators[t]++;
        impr[t] += e->s.impressions;
        views[t] += e->s.views;
        clicks[t] += e->s.clicks;
        credit[t] += e->s.credit;
        gmv[t] += e->s.gmv;
        all_impr += e->s.impressions;
        all_gmv += e->s.gmv;
    }
    size_t nr = 0;
    for (int t = 0; t < NT; t++) {
        if (creators[t] == 0) {
            continue;
        }
        Yaowei__Attribution__V1__TierRow *row = &rows[nr];
        yaowei__attribution__v1__tier_row__init(row);
        row->tier = (Yaowei__Tier__V1__Tier)t;
        row->creators = creators[t];
        row->impressions = attr_sum_clamp(impr[t]);
        row->views = attr_sum_clamp(views[t]);
        row->clicks = attr_sum_clamp(clicks[t]);
        row->impression_share = all_impr > 0 ? (double)impr[t] / (double)all_impr : 0.0;
        row->attributed_conversions = attr__credit(credit[t]);
        row->attributed_gmv_minor = attr_sum_clamp(gmv[t]);
        row->gmv_share = all_gmv != 0 ? (double)gmv[t] / (double)all_gmv : 0.0;
        row->gpm = attr__per((double)gmv[t], impr[t], 1000.0);
        row->lift = row->impression_share > 0 ? row->gmv_share / row->impression_share : 0.0;
        ptrs[nr++] = row;
    }
    Yaowei__Attribution__V1__TierReport rep;
    yaowei__attribution__v1__tier_report__init(&rep);
    Google__Protobuf__Timestamp ts0, ts1;
    attr__ts((int64_t)r->d0 * ATTR_NS_PER_DAY, &ts0);
    attr__ts((int64_t)r->d1 * ATTR_NS_PER_DAY, &ts1);
    rep.start_time = &ts0;
    rep.end_time = &ts1;
    rep.model = (Yaowei__Attribution__V1__AttributionModel)r->model;
    rep.n_rows = nr;
    rep.rows = ptrs;
    attr_sum_t un_count, un_gmv;
    attr_state_unattributed(st, r->d0, r->d1, &un_count, &un_gmv);
    rep.unattributed_conversions = attr_sum_clamp(un_count);
    rep.unattributed_gmv_minor = attr_sum_clamp(un_gmv);
    rep.currency = st->settings.currency;
    rep.unlabeled_creators = unlabeled;
    rep.tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
    (void)yw_call_reply(r->call, &rep.base);
    attr__report_free(r);
}

void attr__on_tier_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetTierReportRequest *req =
        (const Yaowei__Attribution__V1__GetTierReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    int32_t d0, d1;
    int model;
    if (attr__report_args(call, &svc->st, req->start_time, req->end_time, (int)req->model, &d0, &d1,
                          &model) != 0) {
        return;
    }
    attr_report_t *r = attr__report_new(call, d0, d1, model);
    if (r == NULL) {
        return;
    }
    r->finish = attr__finish_tier_report;
    attr__report_run(r);
}

/* -- ListTopCreators -- */

static int attr__cmp_gmv(const void *pa, const void *pb)
{
    const attr_entry_t *a = pa, *b = pb;
    if (a->s.gmv != b->s.gmv) {
        return a->s.gmv > b->s.gmv ? -1 : 1;
    }
    return strcmp(a->name, b->name);
}

static int attr__cmp_gpm(const void *pa, const void *pb)
{
    const attr_entry_t *a = pa, *b = pb;
    if (a->gpm != b->gpm) {
        return a->gpm > b->gpm ? -1 : 1;
    }
    return strcmp(a->name, b->name);
}

/*
 * ListTopCreators once the labels are in. A tiers filter cannot be answered for a
 * creator tier scoring never labelled: while tier scoring fails, such a filter is
 * UNAVAILABLE (an empty page would say there are no such creators); labels it gave
 * before, however old, are used, as GetTierReport does, and tier_labels_error says so.
 */
static void attr__finish_top(attr_report_t *r, const char *tier_error)
{
    attr_state_t *st = &r->svc->st;
    if (r->tiers_mask != 0 && tier_error != NULL) {
        size_t unknown = 0;
        for (size_t i = 0; i < r->n; i++) {
            unknown += !attr_tier_known(st, r->entries[i].creator);
        }
        if (unknown > 0) {
            yw_call_finish(r->call, GRPC_STATUS_UNAVAILABLE,
                           "tiers: cannot filter by tier: tier scoring gave no label for %zu of "
                           "the %zu creators in range (%.200s); retry later, or list without "
                           "tiers",
                           unknown, r->n, tier_error);
            attr__report_free(r);
            return;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        int t = attr_tier_of(st, r->entries[i].creator);
        if (r->tiers_mask == 0 || (t >= 0 && t < 32 && (r->tiers_mask & (1u << t)))) {
            r->entries[k++] = r->entries[i];
        }
    }
    qsort(r->entries, k, sizeof *r->entries,
          r->order_by == YAOWEI__ATTRIBUTION__V1__TOP_CREATORS_ORDER__TOP_CREATORS_ORDER_GPM
              ? attr__cmp_gpm
              : attr__cmp_gmv);
    size_t from = r->offset < k ? r->offset : k;
    size_t to = from + r->page_size < k ? from + r->page_size : k;
    size_t n = to - from;
    Yaowei__Attribution__V1__CreatorRow *rows = calloc(n ? n : 1, sizeof *rows);
    Yaowei__Attribution__V1__CreatorRow **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (rows == NULL || ptrs == NULL) {
        free(rows);
        free(ptrs);
        yw_call_fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__report_free(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const attr_entry_t *e = &r->entries[from + i];
        Yaowei__Attribution__V1__CreatorRow *row = &rows[i];
        yaowei__attribution__v1__creator_row__init(row);
        row->creator_id = (char *)e->name;
        row->tier = (Yaowei__Tier__V1__Tier)attr_tier_of(st, e->creator);
        row->impressions = attr_sum_clamp(e->s.impressions);
        row->views = attr_sum_clamp(e->s.views);
        row->clicks = attr_sum_clamp(e->s.clicks);
        row->attributed_conversions = attr__credit(e->s.credit);
        row->attributed_gmv_minor = attr_sum_clamp(e->s.gmv);
        row->gpm = e->gpm;
        row->conversion_rate = attr__per(attr__credit(e->s.credit), e->s.impressions, 1.0);
        ptrs[i] = row;
    }
    char token[YW_PAGE_TOKEN_BUFSZ] = "";
    if (to < k &&
        yw_page_token_encode(yw_app_page_key(r->svc->app), &r->query, to, NULL, token) != 0) {
        free(rows);
        free(ptrs);
        yw_call_fail(r->call, GRPC_STATUS_INTERNAL, "next_page_token: cannot encode");
        attr__report_free(r);
        return;
    }
    Yaowei__Attribution__V1__ListTopCreatorsResponse resp;
    yaowei__attribution__v1__list_top_creators_response__init(&resp);
    resp.n_creators = n;
    resp.creators = ptrs;
    resp.next_page_token = token;
    resp.currency = st->settings.currency;
    resp.tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
    (void)yw_call_reply(r->call, &resp.base);
    free(rows);
    free(ptrs);
    attr__report_free(r);
}

void attr__on_top_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__ListTopCreatorsRequest *req =
        (const Yaowei__Attribution__V1__ListTopCreatorsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    char err[256];
    int32_t d0, d1;
    int model;
    if (attr__report_args(call, &svc->st, req->start_time, req->end_time, (int)req->model, &d0, &d1,
                          &model) != 0) {
        return;
    }
    unsigned mask = 0;
    for (size_t i = 0; i < req->n_tiers; i++) {
        int t = (int)req->tiers[i];
        if (t < 0 || t > YAOWEI__TIER__V1__TIER__TIER_AMATEUR) {
            yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "tiers[%zu]: not a Tier value: %d",
                           i, t);
            return;
        }
        mask |= 1u << t;
    }
    int order = (int)req->order_by;
    if (order < 0 || order > YAOWEI__ATTRIBUTION__V1__TOP_CREATORS_ORDER__TOP_CREATORS_ORDER_GPM) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "order_by: not a TopCreatorsOrder value: %d", order);
        return;
    }
    if (req->page_size < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be >= 0, got %d",
                       req->page_size);
        return;
    }
    size_t page = (size_t)yw_page_size(req->page_size, ATTR_PAGE_DEFAULT, ATTR_PAGE_MAX);
    /* A token carries the offset of its page's end, at most the number of creators (a
     * list never holds more), and is bound to the query: another query's is refused. */
    yw_page_query_t query;
    yw_page_query_init(&query, "ListTopCreators",
                       "start_time, end_time, model, tiers and order_by");
    yw_page_query_add_int(&query, d0);
    yw_page_query_add_int(&query, d1);
    yw_page_query_add_int(&query, model);
    yw_page_query_add_int(&query, mask);
    yw_page_query_add_int(&query, order == 2 ? 2 : 1);
    yw_page_cursor_t after;
    if (yw_page_token_decode(yw_app_page_key(svc->app), &query, req->page_token,
                             attr_state_n_creators(&svc->st), &after, err, sizeof err) != 0) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return;
    }
    attr_report_t *r = attr__report_new(call, d0, d1, model);
    if (r == NULL) {
        return;
    }
    r->tiers_mask = mask;
    r->order_by = order;
    r->offset = (size_t)after.n;
    r->page_size = page;
    r->query = query;
    r->finish = attr__finish_top;
    attr__report_run(r);
}
