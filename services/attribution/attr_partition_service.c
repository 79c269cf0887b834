/*
 * attr_partition_service.c — PartitionService: GetCreatorSums, and the CreatorSums
 * message made from a state's sums and merged back into sums. See
 * attr_partition_service.h.
 */
#include "services/attribution/attr_partition_service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_service_int.h"
#include "services/attribution/attr_validate.h"

/* Int128 on the wire: hi * 2^64 + lo, two's complement. */
static void attr__i128_put(attr_sum_t v, Yaowei__Attribution__Internal__V1__Int128 *out)
{
    yaowei__attribution__internal__v1__int128__init(out);
    unsigned __int128 u = (unsigned __int128)v;
    out->lo = (uint64_t)u;
    out->hi = (int64_t)(uint64_t)(u >> 64);
}

static attr_sum_t attr__i128_get(const Yaowei__Attribution__Internal__V1__Int128 *in)
{
    if (in == NULL) {
        return 0; /* absent: 0 */
    }
    unsigned __int128 u = (unsigned __int128)(uint64_t)in->hi << 64 | in->lo;
    return (attr_sum_t)u;
}

grpc_status_code
attr__creator_sums_args(const Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest *req,
                        int32_t *d0, int32_t *d1, int *model, char *err, size_t errlen)
{
    grpc_status_code code =
        attr_validate_range(req->start_time, req->end_time, d0, d1, err, errlen);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    *model = (int)req->model;
    if (*model < 1 || *model > ATTR_N_MODELS) {
        snprintf(err, errlen, "model: must be a resolved AttributionModel (1..%d), got %d",
                 ATTR_N_MODELS, *model);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

int attr__sums_msg_make(const attr_range_sums_t *sums, const attr_settings_t *settings,
                        attr_sums_msg_t *out)
{
    enum { FIGS = 5 };
    memset(out, 0, sizeof *out);
    size_t n = sums->n;
    out->rows = calloc(n ? n : 1, sizeof *out->rows);
    out->ptrs = calloc(n ? n : 1, sizeof *out->ptrs);
    out->figs = calloc(n * FIGS + 2, sizeof *out->figs);
    if (out->rows == NULL || out->ptrs == NULL || out->figs == NULL) {
        attr__sums_msg_free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const attr_creator_sums_t *c = &sums->creators[i];
        Yaowei__Attribution__Internal__V1__CreatorSumsRow *row = &out->rows[i];
        Yaowei__Attribution__Internal__V1__Int128 *f = &out->figs[i * FIGS];
        yaowei__attribution__internal__v1__creator_sums_row__init(row);
        row->creator_id = (char *)c->creator;
        attr__i128_put(c->s.impressions, row->impressions = &f[0]);
        attr__i128_put(c->s.views, row->views = &f[1]);
        attr__i128_put(c->s.clicks, row->clicks = &f[2]);
        attr__i128_put(c->s.credit, row->credit_units = &f[3]);
        attr__i128_put(c->s.gmv, row->gmv_minor = &f[4]);
        out->ptrs[i] = row;
    }
    Yaowei__Attribution__Internal__V1__CreatorSums *m = &out->msg;
    yaowei__attribution__internal__v1__creator_sums__init(m);
    m->n_rows = n;
    m->rows = out->ptrs;
    attr__i128_put(sums->unattr_count, m->unattributed_count = &out->figs[n * FIGS]);
    attr__i128_put(sums->unattr_gmv, m->unattributed_gmv_minor = &out->figs[n * FIGS + 1]);
    snprintf(out->currency, sizeof out->currency, "%s", settings->currency);
    m->currency = out->currency;
    m->settings_version = settings->version;
    m->credit_units_per_conversion = ATTR_CREDIT_ONE;
    return 0;
}

void attr__sums_msg_free(attr_sums_msg_t *m)
{
    free(m->rows);
    free(m->ptrs);
    free(m->figs);
    m->rows = NULL;
    m->ptrs = NULL;
    m->figs = NULL;
}

int attr__sums_msg_merge(attr_sums_merge_t *m,
                         const Yaowei__Attribution__Internal__V1__CreatorSums *msg, char *err,
                         size_t errlen)
{
    if (msg->credit_units_per_conversion != ATTR_CREDIT_ONE) {
        snprintf(err, errlen,
                 "credit_units_per_conversion: %lld, where this node counts %lld to a conversion",
                 (long long)msg->credit_units_per_conversion, (long long)ATTR_CREDIT_ONE);
        return -EINVAL;
    }
    for (size_t i = 0; i < msg->n_rows; i++) {
        if (msg->rows[i]->creator_id == NULL || msg->rows[i]->creator_id[0] == '\0') {
            snprintf(err, errlen, "rows[%zu].creator_id: is empty", i);
            return -EINVAL;
        }
    }
    attr_range_sums_t part = {
        .n = msg->n_rows,
        .unattr_count = attr__i128_get(msg->unattributed_count),
        .unattr_gmv = attr__i128_get(msg->unattributed_gmv_minor),
    };
    part.creators = calloc(msg->n_rows ? msg->n_rows : 1, sizeof *part.creators);
    if (part.creators == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < msg->n_rows; i++) {
        const Yaowei__Attribution__Internal__V1__CreatorSumsRow *row = msg->rows[i];
        attr_creator_sums_t *c = &part.creators[i];
        c->creator = row->creator_id;
        c->len = strlen(row->creator_id);
        c->s.impressions = attr__i128_get(row->impressions);
        c->s.views = attr__i128_get(row->views);
        c->s.clicks = attr__i128_get(row->clicks);
        c->s.credit = attr__i128_get(row->credit_units);
        c->s.gmv = attr__i128_get(row->gmv_minor);
    }
    int rc = attr_sums_merge(m, &part);
    free(part.creators);
    if (rc == -ERANGE) {
        snprintf(err, errlen, "sums: past 128 bits once added");
    }
    return rc;
}

void attr__on_creator_sums(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest *req =
        (const Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    char err[256];
    int32_t d0, d1;
    int model;
    grpc_status_code code = attr__creator_sums_args(req, &d0, &d1, &model, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    const char *only =
        req->creator_id != NULL && req->creator_id[0] != '\0' ? req->creator_id : NULL;
    attr_range_sums_t sums;
    if (attr_sums_of_state(&svc->st, d0, d1, model, only, only != NULL ? strlen(only) : 0, &sums) !=
        0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr_sums_msg_t out;
    if (attr__sums_msg_make(&sums, &svc->st.settings, &out) != 0) {
        free(sums.creators);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    (void)yw_call_reply(call, &out.msg.base);
    attr__sums_msg_free(&out);
    free(sums.creators);
}

/* ---- the service ---- */

static const yw_method_t attr_partition_methods[] = {
    YW_METHOD(UNARY, ATTR_PARTITION_SERVICE_NAME, "GetCreatorSums",
              yaowei__attribution__internal__v1__get_creator_sums_request,
              yaowei__attribution__internal__v1__creator_sums, .on_message = attr__on_creator_sums),
};

const yw_service_t attr_partition_service = {
    .name = ATTR_PARTITION_SERVICE_NAME,
    .methods = attr_partition_methods,
    .n_methods = sizeof attr_partition_methods / sizeof attr_partition_methods[0],
    .ctx = NULL,
};

int attr__partition_service_add(yw_app_t *app, yw_service_t *slot)
{
    *slot = attr_partition_service;
    slot->ctx = app;
    return yw_server_add_service(yw_app_server(app), slot);
}
