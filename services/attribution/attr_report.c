/*
 * attr_report.c — GetCreatorReport, GetTierReport and ListTopCreators, rendered from
 * sums (attr_report.h): the handlers here read them from this service's state
 * (attr_sums_of_state()); a cluster's node renders partitions' sums merged with the same
 * functions. The tier report and the top-creators listing first refresh the tier labels
 * of the creators in range (attr_tier.h).
 */
#include "services/attribution/attr_report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/page_token.h"
#include "services/attribution/attr_service_int.h"
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
static int attr__report_args(yw_call_t *call, const attr_settings_t *settings,
                             const Google__Protobuf__Timestamp *start,
                             const Google__Protobuf__Timestamp *end, int asked, int32_t *d0,
                             int32_t *d1, int *model)
{
    char err[256];
    if (attr_validate_range(start, end, d0, d1, err, sizeof err) != GRPC_STATUS_OK) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return -EINVAL;
    }
    return attr__model_arg(call, settings, asked, model);
}

/* ---- GetCreatorReport ---- */

int attr__creator_report_args(yw_call_t *call,
                              const Yaowei__Attribution__V1__GetCreatorReportRequest *req,
                              const attr_settings_t *settings, int32_t *d0, int32_t *d1, int *model)
{
    if (req->creator_id == NULL || req->creator_id[0] == '\0') {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "creator_id: is required");
        return -EINVAL;
    }
    return attr__report_args(call, settings, req->start_time, req->end_time, (int)req->model, d0,
                             d1, model);
}

void attr__creator_report_reply(yw_call_t *call,
                                const Yaowei__Attribution__V1__GetCreatorReportRequest *req,
                                int model, const attr_sums_t *s, const char *currency)
{
    Yaowei__Attribution__V1__CreatorReport r;
    yaowei__attribution__v1__creator_report__init(&r);
    r.creator_id = req->creator_id;
    r.start_time = req->start_time;
    r.end_time = req->end_time;
    r.model = (Yaowei__Attribution__V1__AttributionModel)model;
    r.impressions = attr_sum_clamp(s->impressions);
    r.views = attr_sum_clamp(s->views);
    r.clicks = attr_sum_clamp(s->clicks);
    r.attributed_conversions = attr__credit(s->credit);
    r.attributed_gmv_minor = attr_sum_clamp(s->gmv);
    r.gpm = attr__per((double)s->gmv, s->impressions, 1000.0);
    r.conversion_rate = attr__per(attr__credit(s->credit), s->impressions, 1.0);
    r.currency = (char *)currency;
    (void)yw_call_reply(call, &r.base);
}

void attr__on_creator_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetCreatorReportRequest *req =
        (const Yaowei__Attribution__V1__GetCreatorReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    int32_t d0, d1;
    int model;
    if (attr__creator_report_args(call, req, &st->settings, &d0, &d1, &model) != 0) {
        return;
    }
    attr_sums_t s;
    memset(&s, 0, sizeof s);
    int64_t id = attr_intern_find(&st->creators, req->creator_id, strlen(req->creator_id));
    if (id >= 0) {
        attr_state_creator_sums(st, (uint32_t)id, d0, d1, model, &s);
    }
    attr__creator_report_reply(call, req, model, &s, st->settings.currency);
}

/* ---- a tier report or top-creators page: from sums, once the labels are in ---- */

void attr__report_free(attr_report_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->call != NULL) {
        yw_call_set_data(r->call, NULL);
    }
    free(r->entries);
    free(r);
}

/**
 * A report of [d0, d1) under `model` for `call`, to be filled in by the caller and
 * rendered (attr__report_from_sums()). NULL: out of memory, the call failed.
 */
static attr_report_t *attr__report_new(yw_call_t *call, int32_t d0, int32_t d1, int model)
{
    attr_report_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    r->call = call;
    r->d0 = d0;
    r->d1 = d1;
    r->model = model;
    return r;
}

void attr__report_range(const attr_report_t *r, int32_t *d0, int32_t *d1, int *model)
{
    *d0 = r->d0;
    *d1 = r->d1;
    *model = r->model;
}

int attr__report_set_sums(attr_report_t *r, attr_state_t *front, const attr_range_sums_t *sums,
                          const char *currency)
{
    r->front = front;
    snprintf(r->currency, sizeof r->currency, "%s", currency != NULL ? currency : "");
    r->unattr_count = sums->unattr_count;
    r->unattr_gmv = sums->unattr_gmv;
    free(r->entries);
    r->n = 0;
    r->entries = malloc((sums->n ? sums->n : 1) * sizeof *r->entries);
    if (r->entries == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < sums->n; i++) {
        const attr_creator_sums_t *c = &sums->creators[i];
        if (attr_sums_zero(&c->s)) {
            continue;
        }
        attr_report_entry_t *e = &r->entries[r->n];
        if (sums->ids_of == front) {
            e->creator = c->id; /* standalone: the front is the state summed */
            e->name = c->creator;
        } else if (attr_state_creator(front, c->creator, c->len, &e->creator, &e->name) != 0) {
            return -ENOMEM;
        }
        e->s = c->s;
        e->gpm = attr__per((double)e->s.gmv, e->s.impressions, 1000.0);
        r->n++;
    }
    return 0;
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
    uint32_t *ids = malloc((r->n ? r->n : 1) * sizeof *ids);
    if (ids == NULL) {
        r->finish(r, "out of memory asking for tier labels");
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        ids[i] = r->entries[i].creator;
    }
    int rc =
        attr_tier_refresh(r->tier, r->front, ids, r->n, attr__now(), r->call, attr__on_labels, r);
    free(ids);
    if (rc == 0) {
        r->finish(r, NULL);
    } else if (rc < 0) {
        r->finish(r, "tier scoring: cannot start a call");
    }
}

void attr__report_from_sums(attr_report_t *r, attr_state_t *front, attr_tier_t *tier,
                            const attr_range_sums_t *sums, const char *currency)
{
    yw_call_t *call = r->call;
    yw_call_set_data(call, r);
    r->tier = tier;
    if (attr__report_set_sums(r, front, sums, currency) != 0) {
        attr__report_free(r);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr__with_labels(r);
}

/**
 * Renders the report from this service's own state: its sums, its creators as the
 * front, its tier labels. Out of memory: the call fails, `r` is freed.
 */
static void attr__report_local(attr_svc_t *svc, attr_report_t *r)
{
    attr_range_sums_t sums;
    if (attr_sums_of_state(&svc->st, r->d0, r->d1, r->model, NULL, 0, &sums) != 0) {
        yw_call_t *call = r->call;
        attr__report_free(r);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr__report_from_sums(r, &svc->st, svc->tier, &sums, svc->st.settings.currency);
    free(sums.creators);
}

/* ---- GetTierReport ---- */

void attr__tier_report_fill(const attr_report_t *r, const char *tier_error,
                            attr_tier_report_buf_t *out)
{
    enum { NT = ATTR_REPORT_TIERS };
    int64_t creators[NT] = {0}, unlabeled = 0;
    attr_sum_t impr[NT] = {0}, views[NT] = {0}, clicks[NT] = {0}, credit[NT] = {0}, gmv[NT] = {0};
    attr_sum_t all_impr = 0, all_gmv = 0;
    for (size_t i = 0; i < r->n; i++) {
        const attr_report_entry_t *e = &r->entries[i];
        int t = attr_tier_of(r->front, e->creator);
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
        Yaowei__Attribution__V1__TierRow *row = &out->rows[nr];
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
        out->ptrs[nr++] = row;
    }
    Yaowei__Attribution__V1__TierReport *rep = &out->rep;
    yaowei__attribution__v1__tier_report__init(rep);
    attr__ts((int64_t)r->d0 * ATTR_NS_PER_DAY, &out->start);
    attr__ts((int64_t)r->d1 * ATTR_NS_PER_DAY, &out->end);
    rep->start_time = &out->start;
    rep->end_time = &out->end;
    rep->model = (Yaowei__Attribution__V1__AttributionModel)r->model;
    rep->n_rows = nr;
    rep->rows = out->ptrs;
    rep->unattributed_conversions = attr_sum_clamp(r->unattr_count);
    rep->unattributed_gmv_minor = attr_sum_clamp(r->unattr_gmv);
    rep->currency = (char *)r->currency;
    rep->unlabeled_creators = unlabeled;
    rep->tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
}

static void attr__finish_tier_report(attr_report_t *r, const char *tier_error)
{
    attr_tier_report_buf_t out;
    attr__tier_report_fill(r, tier_error, &out);
    (void)yw_call_reply(r->call, &out.rep.base);
    attr__report_free(r);
}

attr_report_t *attr__tier_report_new(yw_call_t *call,
                                     const Yaowei__Attribution__V1__GetTierReportRequest *req,
                                     const attr_settings_t *settings)
{
    int32_t d0, d1;
    int model;
    if (attr__report_args(call, settings, req->start_time, req->end_time, (int)req->model, &d0, &d1,
                          &model) != 0) {
        return NULL;
    }
    attr_report_t *r = attr__report_new(call, d0, d1, model);
    if (r != NULL) {
        r->finish = attr__finish_tier_report;
    }
    return r;
}

void attr__on_tier_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetTierReportRequest *req =
        (const Yaowei__Attribution__V1__GetTierReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_report_t *r = attr__tier_report_new(call, req, &svc->st.settings);
    if (r != NULL) {
        attr__report_local(svc, r);
    }
}

/* ---- ListTopCreators ---- */

static int attr__cmp_gmv(const void *pa, const void *pb)
{
    const attr_report_entry_t *a = pa, *b = pb;
    if (a->s.gmv != b->s.gmv) {
        return a->s.gmv > b->s.gmv ? -1 : 1;
    }
    return strcmp(a->name, b->name);
}

static int attr__cmp_gpm(const void *pa, const void *pb)
{
    const attr_report_entry_t *a = pa, *b = pb;
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
    attr_state_t *st = r->front;
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
        const attr_report_entry_t *e = &r->entries[from + i];
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
    if (to < k && yw_page_token_encode(r->page_key, &r->query, to, NULL, token) != 0) {
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
    resp.currency = r->currency;
    resp.tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
    (void)yw_call_reply(r->call, &resp.base);
    free(rows);
    free(ptrs);
    attr__report_free(r);
}

attr_report_t *attr__top_creators_new(yw_call_t *call,
                                      const Yaowei__Attribution__V1__ListTopCreatorsRequest *req,
                                      const attr_settings_t *settings, const yw_page_key_t *key,
                                      uint64_t n_max)
{
    char err[256];
    int32_t d0, d1;
    int model;
    if (attr__report_args(call, settings, req->start_time, req->end_time, (int)req->model, &d0, &d1,
                          &model) != 0) {
        return NULL;
    }
    unsigned mask = 0;
    for (size_t i = 0; i < req->n_tiers; i++) {
        int t = (int)req->tiers[i];
        if (t < 0 || t > YAOWEI__TIER__V1__TIER__TIER_AMATEUR) {
            yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "tiers[%zu]: not a Tier value: %d",
                           i, t);
            return NULL;
        }
        mask |= 1u << t;
    }
    int order = (int)req->order_by;
    if (order < 0 || order > YAOWEI__ATTRIBUTION__V1__TOP_CREATORS_ORDER__TOP_CREATORS_ORDER_GPM) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "order_by: not a TopCreatorsOrder value: %d", order);
        return NULL;
    }
    if (req->page_size < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be >= 0, got %d",
                       req->page_size);
        return NULL;
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
    if (yw_page_token_decode(key, &query, req->page_token, n_max, &after, err, sizeof err) != 0) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return NULL;
    }
    attr_report_t *r = attr__report_new(call, d0, d1, model);
    if (r == NULL) {
        return NULL;
    }
    r->tiers_mask = mask;
    r->order_by = order;
    r->offset = (size_t)after.n;
    r->page_size = page;
    r->query = query;
    r->page_key = key;
    r->finish = attr__finish_top;
    return r;
}

void attr__on_top_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__ListTopCreatorsRequest *req =
        (const Yaowei__Attribution__V1__ListTopCreatorsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_report_t *r = attr__top_creators_new(call, req, &svc->st.settings, svc->page_key,
                                              attr_state_n_creators(&svc->st));
    if (r != NULL) {
        attr__report_local(svc, r);
    }
}
