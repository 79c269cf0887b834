/*
 * attr_explain.c — ExplainConversion: from the conversion in memory when it is there;
 * else the order is read on a reader thread, batched with the other calls that wait
 * (attr_explain_read_t), and credited on the side for the reply (not cached).
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "services/attribution/attr_validate.h"

/** Replies with conversion c's attribution under `model`. */
static void attr__explain_reply(yw_call_t *call, const attr_state_t *st, const attr_conv_t *c,
                                int model)
{
    size_t n = c->n_elig;
    Yaowei__Attribution__V1__AttributedTouch *touches = calloc(n ? n : 1, sizeof *touches);
    Yaowei__Attribution__V1__AttributedTouch **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    Google__Protobuf__Timestamp *times = calloc(n ? n : 1, sizeof *times);
    if (touches == NULL || ptrs == NULL || times == NULL) {
        free(touches);
        free(ptrs);
        free(times);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const attr_cand_t *t = &c->cands[c->elig[i]];
        Yaowei__Attribution__V1__AttributedTouch *a = &touches[i];
        yaowei__attribution__v1__attributed_touch__init(a);
        a->event_id = t->event_id;
        a->creator_id = (char *)attr_intern_str(&st->creators, t->creator, NULL);
        a->note_id = (char *)attr_cand_note(t);
        a->kind = (Yaowei__Attribution__V1__ExposureKind)t->kind;
        a->watch_ms = t->watch_ms;
        attr__ts(t->occur_ns, &times[i]);
        a->occur_time = &times[i];
        size_t at = (size_t)(model - 1) * n + i;
        a->credit = (double)c->num[at] / (double)c->den[model - 1];
        a->attributed_minor = c->minor[at];
        ptrs[i] = a;
    }
    Yaowei__Attribution__V1__ConversionAttribution resp;
    yaowei__attribution__v1__conversion_attribution__init(&resp);
    Google__Protobuf__Timestamp occur;
    attr__ts(c->occur_ns, &occur);
    resp.order_id = c->order_id;
    resp.amount_minor = attr_conv_net(c);
    resp.currency = (char *)st->settings.currency;
    resp.model = (Yaowei__Attribution__V1__AttributionModel)model;
    resp.attributed = n > 0;
    resp.n_touches = n;
    resp.touches = ptrs;
    resp.viewer_id = (char *)c->viewer;
    resp.product_id = (char *)c->product;
    resp.occur_time = &occur;
    resp.gross_amount_minor = c->amount;
    resp.refunded_minor = c->refunded;
    resp.settings_version = c->settings_version;
    (void)yw_call_reply(call, &resp.base);
    free(touches);
    free(ptrs);
    free(times);
}

/** Explanations read in one job at most, and jobs in flight before they wait to batch. */
#define ATTR_EXPLAIN_BATCH 64
#define ATTR_EXPLAIN_READS 2

/** One ExplainConversion waiting for its conversion to be read. */
typedef struct st_attr_explain_ask_t {
    yw_call_t *call;
    const char *order_id; /* the request's (valid until the call is freed) */
    int model;            /* as asked (0: the default at reply time) */
    int found;            /* index in the job's set + 1; 0: not stored */
} attr_explain_ask_t;

/**
 * ExplainConversion of conversions that are not in memory, read on a reader thread. The
 * calls that come while ATTR_EXPLAIN_READS jobs are out wait in the next job (as group
 * commit does for writes): one thread hand-off and one wake-up for many calls.
 */
typedef struct st_attr_explain_read_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_explain_ask_t asks[ATTR_EXPLAIN_BATCH];
    size_t n;
    attr_convset_t set;
    char err[256];
} attr_explain_read_t;

static grpc_status_code attr__explain_read_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_explain_read_t *er = (attr_explain_read_t *)job;
    for (size_t i = 0; i < er->n; i++) {
        attr_explain_ask_t *a = &er->asks[i];
        int rc = attr_store_get_conversion(conn, a->order_id, strlen(a->order_id), &er->set,
                                           er->err, sizeof er->err);
        if (rc < 0) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            snprintf(job->errmsg, sizeof job->errmsg, "reading order %s: %.160s",
                     yw_quote(a->order_id, YW_QUOTE_MAX, q, sizeof q), er->err);
            return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
        }
        a->found = rc ? (int)er->set.n : 0;
    }
    return GRPC_STATUS_OK;
}

/** Replies to one explanation read back (or not found). */
static void attr__explain_stored(attr_svc_t *svc, const attr_explain_read_t *er,
                                 const attr_explain_ask_t *a, grpc_status_code status,
                                 const char *errmsg)
{
    attr_state_t *st = &svc->st;
    int model = attr_model_resolve(a->model, st->settings.default_model);
    size_t len = strlen(a->order_id);
    /* Memory first: what it holds is never older than what was read. */
    const attr_conv_t *c = attr_conv_find(st, a->order_id, len);
    if (c != NULL) {
        attr__explain_reply(a->call, st, c, model);
        return;
    }
    if (status != GRPC_STATUS_OK) {
        yw_call_fail(a->call, status, errmsg);
        return;
    }
    if (a->found == 0 || attr__pending_own(st, &er->set.convs[a->found - 1].in)) {
        /* (A pending one is stored but not acknowledged yet: not visible.) */
        char err[ATTR_REASON_MAX];
        yw_call_fail(a->call, GRPC_STATUS_NOT_FOUND, attr__no_order(a->order_id, err, sizeof err));
        return;
    }
    size_t at = (size_t)a->found - 1;
    const attr_stored_conv_t *sc = &er->set.convs[at];
    attr_conv_t *x = attr_conv_new(&sc->in, sc->refunded);
    int rc = x != NULL ? attr__add_stored_touches(st, x, &er->set, at) : -ENOMEM;
    if (rc == 0) {
        rc = attr_conv_compute(st, x);
    }
    if (rc == 0) {
        attr__explain_reply(a->call, st, x, model);
    } else {
        yw_call_fail(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    attr_conv_free(x);
}

static void attr__on_explain_read(yw_store_job_t *job, grpc_status_code status)
{
    attr_explain_read_t *er = (attr_explain_read_t *)job;
    attr_svc_t *svc = er->svc;
    for (size_t i = 0; i < er->n; i++) {
        attr__explain_stored(svc, er, &er->asks[i], status, job->errmsg);
    }
    attr_convset_free(&er->set);
    free(er);
    svc->explain_jobs--;
    if (svc->explain_next != NULL && !svc->stopping) {
        attr__explain_read_submit(svc);
    }
    attr__unref(svc);
}

/** Submits the explanations waiting (svc->explain_next). */
void attr__explain_read_submit(attr_svc_t *svc)
{
    attr_explain_read_t *er = svc->explain_next;
    svc->explain_next = NULL;
    er->job.work = attr__explain_read_work;
    er->job.done = attr__on_explain_read;
    int rc = yw_store_read(svc->store, &er->job);
    if (rc != 0) {
        for (size_t i = 0; i < er->n; i++) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            yw_call_finish(er->asks[i].call, GRPC_STATUS_UNAVAILABLE, "cannot read order %s: %s",
                           yw_quote(er->asks[i].order_id, YW_QUOTE_MAX, q, sizeof q),
                           strerror(-rc));
        }
        free(er);
        return;
    }
    svc->explain_jobs++;
    svc->refs++;
    yw_metric_add(svc->explain_reads, er->n);
}

void attr__on_explain(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__ExplainConversionRequest *req =
        (const Yaowei__Attribution__V1__ExplainConversionRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    if (req->order_id == NULL || req->order_id[0] == '\0') {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "order_id: is required");
        return;
    }
    int model;
    if (attr__model_arg(call, &st->settings, (int)req->model, &model) != 0) {
        return;
    }
    size_t len = strlen(req->order_id);
    const attr_conv_t *c = attr_conv_find(st, req->order_id, len);
    if (c != NULL) {
        attr__explain_reply(call, st, c, model);
        return;
    }
    if (len > ATTR_ID_MAX) {
        char err[ATTR_REASON_MAX];
        yw_call_fail(call, GRPC_STATUS_NOT_FOUND, attr__no_order(req->order_id, err, sizeof err));
        return;
    }
    /* Not in memory: the database has it, or nobody has. */
    attr_explain_read_t *er = svc->explain_next;
    if (er == NULL && (er = svc->explain_next = calloc(1, sizeof *er)) == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    er->svc = svc;
    er->asks[er->n++] = (attr_explain_ask_t){call, req->order_id, (int)req->model, 0};
    if (svc->explain_jobs < ATTR_EXPLAIN_READS || er->n == ATTR_EXPLAIN_BATCH) {
        attr__explain_read_submit(svc);
    }
}
