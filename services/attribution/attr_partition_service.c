/*
 * attr_partition_service.c — PartitionService: GetCreatorSums, and the CreatorSums
 * message made from a state's sums and merged back into sums; FindOrders, from memory
 * and a read of the store. See attr_partition_service.h.
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

/* ---- FindOrders ---- */

/* What a FindOrders knows of one id: not here, here, or to be read from the store. */
enum { ATTR__NOT_HERE = 0, ATTR__HERE = 1, ATTR__TO_READ = 2 };

/**
 * A FindOrders whose ids memory does not know: read on a reader thread (one snapshot),
 * then decided on the loop with memory asked again (attr__find_decide()).
 */
typedef struct st_attr_find_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    yw_call_t *call;
    const Yaowei__Attribution__Internal__V1__FindOrdersRequest *req; /* the call's */
    uint8_t *order_at;  /* per order id: ATTR__NOT_HERE, ATTR__HERE or ATTR__TO_READ */
    uint8_t *refund_at; /* per refund id: the same */
    size_t *stored;     /* per order id read: its index in `set` + 1; 0: not stored */
    attr_convset_t set;
    char err[256];
} attr_find_t;

static void attr__find_free(attr_find_t *fd)
{
    free(fd->order_at);
    free(fd->refund_at);
    free(fd->stored);
    attr_convset_free(&fd->set);
    free(fd);
}

/* Replies with the indexes marked ATTR__HERE, then frees `fd`. */
static void attr__find_reply(attr_find_t *fd)
{
    const Yaowei__Attribution__Internal__V1__FindOrdersRequest *req = fd->req;
    Yaowei__Attribution__Internal__V1__FoundOrders out;
    yaowei__attribution__internal__v1__found_orders__init(&out);
    size_t n = req->n_order_ids + req->n_refund_ids;
    int32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (idx == NULL) {
        yw_call_fail(fd->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__find_free(fd);
        return;
    }
    out.orders = idx;
    for (size_t i = 0; i < req->n_order_ids; i++) {
        if (fd->order_at[i] == ATTR__HERE) {
            out.orders[out.n_orders++] = (int32_t)i;
        }
    }
    out.refunds = idx + out.n_orders;
    for (size_t i = 0; i < req->n_refund_ids; i++) {
        if (fd->refund_at[i] == ATTR__HERE) {
            out.refunds[out.n_refunds++] = (int32_t)i;
        }
    }
    (void)yw_call_reply(fd->call, &out.base);
    free(idx);
    attr__find_free(fd);
}

/* Reader thread: the ids marked ATTR__TO_READ, looked up in one snapshot. */
static grpc_status_code attr__find_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_find_t *fd = (attr_find_t *)job;
    const Yaowei__Attribution__Internal__V1__FindOrdersRequest *req = fd->req;
    int rc = 0;
    for (size_t i = 0; i < req->n_order_ids && rc >= 0; i++) {
        if (fd->order_at[i] == ATTR__TO_READ) {
            const char *id = req->order_ids[i];
            rc = attr_store_get_conversion(conn, id, strlen(id), &fd->set, fd->err, sizeof fd->err);
            fd->stored[i] = rc == 1 ? fd->set.n : 0;
        }
    }
    for (size_t i = 0; i < req->n_refund_ids && rc >= 0; i++) {
        if (fd->refund_at[i] == ATTR__TO_READ) {
            rc = attr_store_refund_exists(conn, req->refund_ids[i], fd->err, sizeof fd->err);
            fd->refund_at[i] = rc == 1 ? ATTR__HERE : ATTR__TO_READ;
        }
    }
    if (rc < 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "reading orders: %.200s",
                 fd->err[0] ? fd->err : strerror(-rc));
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_OK;
}

/*
 * Loop: memory asked again, for what changed while the store was read. An order is
 * held when memory has it live or the store has it and it is not the row of the
 * pending one (stored, not acknowledged yet); a refund id is known when stored or
 * pending (memory's to know).
 */
static void attr__on_find_read(yw_store_job_t *job, grpc_status_code status)
{
    attr_find_t *fd = (attr_find_t *)job;
    attr_svc_t *svc = fd->svc;
    attr_state_t *st = &svc->st;
    const Yaowei__Attribution__Internal__V1__FindOrdersRequest *req = fd->req;
    if (status != GRPC_STATUS_OK) {
        yw_call_fail(fd->call, status, job->errmsg);
        attr__find_free(fd);
        attr__unref(svc);
        return;
    }
    for (size_t i = 0; i < req->n_order_ids; i++) {
        if (fd->order_at[i] != ATTR__TO_READ) {
            continue;
        }
        const char *id = req->order_ids[i];
        size_t at = fd->stored[i];
        int held = attr_conv_find(st, id, strlen(id)) != NULL ||
                   (at > 0 && !attr__pending_own(st, &fd->set.convs[at - 1].in));
        fd->order_at[i] = held ? ATTR__HERE : ATTR__NOT_HERE;
    }
    for (size_t i = 0; i < req->n_refund_ids; i++) {
        if (fd->refund_at[i] == ATTR__TO_READ) {
            const char *id = req->refund_ids[i];
            fd->refund_at[i] =
                attr_refund_pending(st, id, strlen(id)) ? ATTR__HERE : ATTR__NOT_HERE;
        }
    }
    attr__find_reply(fd);
    attr__unref(svc);
}

/* What memory says of one id: ATTR__HERE, else ATTR__TO_READ (ATTR__NOT_HERE when no
 * valid id could be stored). */
static uint8_t attr__find_mem(int in_memory, const char *id)
{
    size_t len = strlen(id);
    return in_memory ? ATTR__HERE : len > 0 && len <= ATTR_ID_MAX ? ATTR__TO_READ : ATTR__NOT_HERE;
}

void attr__on_find_orders(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__Internal__V1__FindOrdersRequest *req =
        (const Yaowei__Attribution__Internal__V1__FindOrdersRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    if (req->n_order_ids > ATTR_BATCH_MAX || req->n_refund_ids > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: at most %d per call, got %zu",
                       req->n_order_ids > ATTR_BATCH_MAX ? "order_ids" : "refund_ids",
                       ATTR_BATCH_MAX,
                       req->n_order_ids > ATTR_BATCH_MAX ? req->n_order_ids : req->n_refund_ids);
        return;
    }
    attr_find_t *fd = calloc(1, sizeof *fd);
    size_t no = req->n_order_ids ? req->n_order_ids : 1;
    if (fd == NULL || (fd->order_at = calloc(no, 1)) == NULL ||
        (fd->stored = calloc(no, sizeof *fd->stored)) == NULL ||
        (fd->refund_at = calloc(req->n_refund_ids ? req->n_refund_ids : 1, 1)) == NULL) {
        if (fd != NULL) {
            attr__find_free(fd);
        }
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fd->svc = svc;
    fd->call = call;
    fd->req = req; /* valid until the call is freed (a unary request) */
    int read = 0;
    for (size_t i = 0; i < req->n_order_ids; i++) {
        const char *id = req->order_ids[i];
        fd->order_at[i] = attr__find_mem(attr_conv_find(st, id, strlen(id)) != NULL, id);
        read |= fd->order_at[i] == ATTR__TO_READ;
    }
    for (size_t i = 0; i < req->n_refund_ids; i++) {
        const char *id = req->refund_ids[i];
        fd->refund_at[i] = attr__find_mem(attr_refund_pending(st, id, strlen(id)), id);
        read |= fd->refund_at[i] == ATTR__TO_READ;
    }
    if (!read) {
        attr__find_reply(fd);
        return;
    }
    fd->job.work = attr__find_work;
    fd->job.done = attr__on_find_read;
    int rc = yw_store_read(svc->store, &fd->job);
    if (rc != 0) {
        yw_call_finish(call, GRPC_STATUS_UNAVAILABLE, "cannot read orders: %s", strerror(-rc));
        attr__find_free(fd);
        return;
    }
    svc->refs++; /* the read's */
}

/* ---- the service ---- */

static const yw_method_t attr_partition_methods[] = {
    YW_METHOD(UNARY, ATTR_PARTITION_SERVICE_NAME, "GetCreatorSums",
              yaowei__attribution__internal__v1__get_creator_sums_request,
              yaowei__attribution__internal__v1__creator_sums, .on_message = attr__on_creator_sums),
    YW_METHOD(UNARY, ATTR_PARTITION_SERVICE_NAME, "FindOrders",
              yaowei__attribution__internal__v1__find_orders_request,
              yaowei__attribution__internal__v1__found_orders, .on_message = attr__on_find_orders),
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
