/*
 * attr_front_report.c — a cluster node's reports: GetCreatorReport, GetTierReport and
 * ListTopCreators from every partition's sums. See attr_front.h.
 *
 * The way of one report: partition 0's settings (GetAttributionSettings) resolve the
 * request's default model and check it as standalone does (attr_report.h); then every
 * partition is asked for its sums over the range and model (PartitionService
 * GetCreatorSums, forwarded), the sums are added up exactly (attr_sums_merge_t) and the
 * report is rendered from them with the front's own state naming the creators and
 * caching their tier labels.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/attribution/attr_front_int.h"
#include "services/attribution/attr_partition_service.h"
#include "services/attribution/attr_report.h"

enum { ATTR__REP_CREATOR, ATTR__REP_TIER, ATTR__REP_TOP };

/* A bound on ListTopCreators' offsets: a node's names are not all the cluster's. */
#define ATTR__TOP_OFFSET_MAX (UINT64_C(1) << 31)

typedef struct st_attr__rep_t {
    attr_front_t *f;
    yw_call_t *call;
    int kind;
    const ProtobufCMessage *req; /* the inbound call's (alive until it ends) */
    attr_report_t *r;            /* tier and top */
    int model;
    /* partition 0's settings */
    attr__fwd_t settings_fw;
    Yaowei__Attribution__V1__GetAttributionSettingsRequest settings_req;
    /* every partition's sums */
    Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest sums_req;
    attr__fwd_t *fws;
    int pending;
    attr_sums_merge_t m;
    int64_t version; /* the partitions' settings version (-1: none seen yet) */
    int mixed;       /* two partitions answered with different versions */
    char currency[4];
    grpc_status_code fail_code;
    char fail_detail[256];
    char failed[256]; /* the partitions that failed */
} attr__rep_t;

static void attr__rep_free(attr__rep_t *rep)
{
    attr_sums_merge_free(&rep->m);
    attr__report_free(rep->r);
    free(rep->fws);
    free(rep);
}

/* Every partition answered: the report, or why there is none. */
static void attr__rep_finish(attr__rep_t *rep)
{
    yw_call_t *call = rep->call;
    if (rep->failed[0] != '\0') {
        yw_call_finish(call, rep->fail_code, "partitions %s: %s (a report needs every partition)",
                       rep->failed, rep->fail_detail);
    } else if (rep->mixed) {
        yw_call_finish(call, GRPC_STATUS_UNAVAILABLE,
                       "the partitions answered under different settings versions (settings "
                       "are being changed): try again");
    } else if (rep->kind == ATTR__REP_CREATOR) {
        attr_sums_t s;
        memset(&s, 0, sizeof s);
        if (rep->m.sums.n > 0) {
            s = rep->m.sums.creators[0].s;
        }
        attr__creator_report_reply(
            call, (const Yaowei__Attribution__V1__GetCreatorReportRequest *)rep->req, rep->model,
            &s, rep->currency);
    } else {
        attr_report_t *r = rep->r;
        rep->r = NULL;
        /* Replies (once the labels are in) and frees r. */
        attr__report_from_sums(r, rep->f->names, rep->f->tier, &rep->m.sums, rep->currency);
    }
    attr__rep_free(rep);
}

static void attr__rep_fail(attr__rep_t *rep, int p, grpc_status_code code, const char *detail)
{
    size_t used = strlen(rep->failed);
    if (used + 16 < sizeof rep->failed) {
        snprintf(rep->failed + used, sizeof rep->failed - used, "%s%d", used ? ", " : "", p);
    }
    if (rep->fail_detail[0] == '\0') {
        rep->fail_code = code == GRPC_STATUS_INVALID_ARGUMENT || code == GRPC_STATUS_NOT_FOUND
                             ? GRPC_STATUS_INTERNAL
                             : code;
        snprintf(rep->fail_detail, sizeof rep->fail_detail, "%s", detail);
    }
}

static void attr__on_sums(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                          ProtobufCMessage *resp)
{
    attr__rep_t *rep = fw->arg;
    if (code != GRPC_STATUS_OK) {
        attr__rep_fail(rep, fw->p, code, detail);
    } else {
        const Yaowei__Attribution__Internal__V1__CreatorSums *cs =
            (const Yaowei__Attribution__Internal__V1__CreatorSums *)resp;
        if (rep->version < 0) {
            rep->version = cs->settings_version;
            snprintf(rep->currency, sizeof rep->currency, "%s", cs->currency ? cs->currency : "");
        } else if (rep->version != cs->settings_version) {
            rep->mixed = 1;
        }
        char err[256];
        if (attr__sums_msg_merge(&rep->m, cs, err, sizeof err) != 0) {
            attr__rep_fail(rep, fw->p, GRPC_STATUS_INTERNAL, err);
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (--rep->pending == 0) {
        attr__rep_finish(rep);
    }
}

/* The request's range and model checked: every partition is asked for its sums. */
static void attr__rep_gather(attr__rep_t *rep, const Google__Protobuf__Timestamp *start,
                             const Google__Protobuf__Timestamp *end, const char *creator)
{
    int np = attr_cluster_partitions(rep->f->cluster);
    rep->fws = calloc((size_t)np, sizeof *rep->fws);
    if (rep->fws == NULL) {
        yw_call_fail(rep->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__rep_free(rep);
        return;
    }
    yaowei__attribution__internal__v1__get_creator_sums_request__init(&rep->sums_req);
    rep->sums_req.start_time = (Google__Protobuf__Timestamp *)start;
    rep->sums_req.end_time = (Google__Protobuf__Timestamp *)end;
    rep->sums_req.model = (Yaowei__Attribution__V1__AttributionModel)rep->model;
    rep->sums_req.creator_id = (char *)(creator != NULL ? creator : "");
    rep->version = -1;
    rep->pending = np + 1; /* one more while they start */
    for (int p = 0; p < np; p++) {
        rep->fws[p] = (attr__fwd_t){
            .f = rep->f,
            .call = rep->call,
            .p = p,
            .method = "/" ATTR_PARTITION_SERVICE_NAME "/GetCreatorSums",
            .req = &rep->sums_req.base,
            .resp_desc = &yaowei__attribution__internal__v1__creator_sums__descriptor,
            .cb = attr__on_sums,
            .arg = rep,
        };
        attr__fwd_start(&rep->fws[p]);
    }
    if (--rep->pending == 0) {
        attr__rep_finish(rep);
    }
}

/* The settings as the report checks need them: the default model and the currency. */
static void attr__settings_of(const Yaowei__Attribution__V1__AttributionSettings *m,
                              attr_settings_t *s)
{
    attr_settings_default(s);
    s->default_model = (int)m->default_model;
    snprintf(s->currency, sizeof s->currency, "%s", m->currency ? m->currency : "");
    s->version = m->version;
}

static void attr__on_settings(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                              ProtobufCMessage *resp)
{
    attr__rep_t *rep = fw->arg;
    yw_call_t *call = rep->call;
    if (code != GRPC_STATUS_OK) {
        yw_call_finish(call, code == GRPC_STATUS_INVALID_ARGUMENT ? GRPC_STATUS_INTERNAL : code,
                       "partition 0's settings: %s (a report needs every partition)", detail);
        attr__rep_free(rep);
        return;
    }
    attr_settings_t s;
    attr__settings_of((const Yaowei__Attribution__V1__AttributionSettings *)resp, &s);
    protobuf_c_message_free_unpacked(resp, NULL);
    const Google__Protobuf__Timestamp *start = NULL, *end = NULL;
    const char *creator = NULL;
    int32_t d0, d1;
    if (rep->kind == ATTR__REP_CREATOR) {
        const Yaowei__Attribution__V1__GetCreatorReportRequest *req =
            (const Yaowei__Attribution__V1__GetCreatorReportRequest *)rep->req;
        if (attr__creator_report_args(call, req, &s, &d0, &d1, &rep->model) != 0) {
            attr__rep_free(rep); /* the call failed INVALID_ARGUMENT */
            return;
        }
        start = req->start_time;
        end = req->end_time;
        creator = req->creator_id;
    } else {
        if (rep->kind == ATTR__REP_TIER) {
            const Yaowei__Attribution__V1__GetTierReportRequest *req =
                (const Yaowei__Attribution__V1__GetTierReportRequest *)rep->req;
            rep->r = attr__tier_report_new(call, req, &s);
            start = req->start_time;
            end = req->end_time;
        } else {
            const Yaowei__Attribution__V1__ListTopCreatorsRequest *req =
                (const Yaowei__Attribution__V1__ListTopCreatorsRequest *)rep->req;
            attr_cluster_page_key(rep->f->cluster, rep->f->page_key.bytes);
            rep->r = attr__top_creators_new(call, req, &s, &rep->f->page_key, ATTR__TOP_OFFSET_MAX);
            start = req->start_time;
            end = req->end_time;
        }
        if (rep->r == NULL) {
            attr__rep_free(rep); /* the call failed */
            return;
        }
        attr__report_range(rep->r, &d0, &d1, &rep->model);
    }
    attr__rep_gather(rep, start, end, creator);
}

static void attr__report(attr_front_t *f, yw_call_t *call, int kind, const ProtobufCMessage *req)
{
    attr__rep_t *rep = calloc(1, sizeof *rep);
    if (rep == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rep->f = f;
    rep->call = call;
    rep->kind = kind;
    rep->req = req;
    attr_sums_merge_init(&rep->m);
    yaowei__attribution__v1__get_attribution_settings_request__init(&rep->settings_req);
    rep->settings_fw = (attr__fwd_t){
        .f = f,
        .call = call,
        .p = 0,
        .method = "/yaowei.attribution.v1.AttributionService/GetAttributionSettings",
        .req = &rep->settings_req.base,
        .resp_desc = &yaowei__attribution__v1__attribution_settings__descriptor,
        .cb = attr__on_settings,
        .arg = rep,
    };
    attr__fwd_start(&rep->settings_fw);
}

void attr_front_creator_report(attr_front_t *f, yw_call_t *call,
                               const Yaowei__Attribution__V1__GetCreatorReportRequest *req)
{
    attr__report(f, call, ATTR__REP_CREATOR, &req->base);
}

void attr_front_tier_report(attr_front_t *f, yw_call_t *call,
                            const Yaowei__Attribution__V1__GetTierReportRequest *req)
{
    attr__report(f, call, ATTR__REP_TIER, &req->base);
}

void attr_front_top_creators(attr_front_t *f, yw_call_t *call,
                             const Yaowei__Attribution__V1__ListTopCreatorsRequest *req)
{
    attr__report(f, call, ATTR__REP_TOP, &req->base);
}

/* ---- GetAttributionSettings: partition 0's (every partition has the same) ---- */

typedef struct st_attr__get_settings_t {
    attr__fwd_t fw;
    Yaowei__Attribution__V1__GetAttributionSettingsRequest req;
} attr__get_settings_t;

static void attr__on_get_settings(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                                  ProtobufCMessage *resp)
{
    attr__get_settings_t *g = fw->arg;
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(fw->call, code, detail);
    } else {
        (void)yw_call_reply(fw->call, resp);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    free(g);
}

void attr_front_get_settings(attr_front_t *f, yw_call_t *call)
{
    attr__get_settings_t *g = calloc(1, sizeof *g);
    if (g == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    yaowei__attribution__v1__get_attribution_settings_request__init(&g->req);
    g->fw = (attr__fwd_t){
        .f = f,
        .call = call,
        .p = 0,
        .method = "/yaowei.attribution.v1.AttributionService/GetAttributionSettings",
        .req = &g->req.base,
        .resp_desc = &yaowei__attribution__v1__attribution_settings__descriptor,
        .cb = attr__on_get_settings,
        .arg = g,
    };
    attr__fwd_start(&g->fw);
}
