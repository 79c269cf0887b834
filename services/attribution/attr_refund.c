/*
 * attr_refund.c — RecordRefunds: the events are validated, the refunded orders not in
 * memory and the stored refund ids are read (attr_order_load.c), then each event is
 * judged in order behind the gate (an earlier refund of the call counts against what is
 * left), the admitted ones are written and, once durable, committed.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/utf8.h"
#include "services/attribution/attr_validate.h"

/**
 * A RecordRefunds call: its events judged after the conversions they refund are in
 * memory and the stored refund ids are known (`rd`), then written, then committed.
 */
typedef struct st_attr_refund_batch_t {
    attr_refund_job_t j;
    attr_ingest_t *ing;
    const Yaowei__Attribution__V1__RecordRefundsRequest *req;
    int64_t now;
    uint8_t *valid; /* per event: passed validation (occur in occur[i]) */
    int64_t *occur;
    attr_order_read_t *rd;
    attr_refund_t **refunds;
    attr_refund_row_t *rows;
    size_t n, cap;
    attr_conv_t **pins; /* the conversions in memory when the call came: kept until judged */
    size_t n_pins;
    grpc_status_code written;
    attr_held_t held;
} attr_refund_batch_t;

static void attr__refund_batch_unpin(attr_refund_batch_t *rb)
{
    for (size_t i = 0; i < rb->n_pins; i++) {
        attr_conv_unpin(rb->pins[i]);
    }
    rb->n_pins = 0;
}

static void attr__refund_batch_free(attr_refund_batch_t *rb)
{
    attr__refund_batch_unpin(rb);
    free(rb->pins);
    attr__order_read_free(rb->rd);
    free(rb->valid);
    free(rb->occur);
    free(rb->refunds);
    free(rb->rows);
    free(rb);
}

/** The end of a refund call's way: the call may finish. */
static void attr__refund_batch_done(attr_refund_batch_t *rb)
{
    attr_ingest_t *ing = rb->ing;
    attr_svc_t *svc = ing->svc;
    attr__refund_batch_free(rb);
    ing->ended = 1;
    ing->in_flight--;
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
    attr__unref(svc); /* the batch's */
}

static void attr__refund_batch_commit(attr_held_t *h)
{
    attr_refund_batch_t *rb =
        (attr_refund_batch_t *)((char *)h - offsetof(attr_refund_batch_t, held));
    attr_ingest_t *ing = rb->ing;
    attr_svc_t *svc = ing->svc;
    grpc_status_code status = rb->written;
    if (status == GRPC_STATUS_OK) {
        for (size_t i = 0; i < rb->n; i++) {
            if (attr_refund_commit(&svc->st, rb->refunds[i]) != 0) {
                svc->suspect = 1;
                yw_log(YW_LOG_ERROR, "out of memory applying refund %s", rb->rows[i].refund_id);
            }
        }
        ing->accepted += (int64_t)rb->n;
    } else {
        for (size_t i = 0; i < rb->n; i++) {
            attr_refund_abort(&svc->st, rb->refunds[i]);
        }
        attr__ingest_fail(ing, status, "refunds: %s", rb->j.job.errmsg);
    }
    attr__refund_batch_done(rb);
}

static void attr__on_refund_batch_written(yw_store_job_t *job, grpc_status_code status)
{
    attr_refund_batch_t *rb = (attr_refund_batch_t *)job;
    rb->written = status;
    attr__gate(rb->ing->svc, &rb->held, attr__refund_batch_commit);
}

/**
 * The conversions the refunds are of are in memory, the stored refund ids known: each
 * event is judged in order (an earlier refund of the call counts against what is left),
 * then the admitted ones are written.
 */
static void attr__refund_batch_loaded(attr_held_t *h);

static void attr__on_refund_batch_read(yw_store_job_t *job, grpc_status_code status)
{
    attr_order_read_t *rd = (attr_order_read_t *)job;
    attr_refund_batch_t *rb = rd->data;
    rd->status = status;
    /* After the restatement in progress (see attr__on_xpreload()). */
    attr__gate(rb->ing->svc, &rb->held, attr__refund_batch_loaded);
}

static void attr__refund_batch_loaded(attr_held_t *h)
{
    attr_refund_batch_t *rb =
        (attr_refund_batch_t *)((char *)h - offsetof(attr_refund_batch_t, held));
    attr_order_read_t *rd = rb->rd;
    yw_store_job_t *job = &rd->job;
    grpc_status_code status = rd->status;
    attr_ingest_t *ing = rb->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    const Yaowei__Attribution__V1__RecordRefundsRequest *req = rb->req;
    if (status != GRPC_STATUS_OK) {
        attr__ingest_fail(ing, status, "refunds: %s", job->errmsg);
        attr__refund_batch_done(rb);
        return;
    }
    for (size_t i = 0; i < rd->set.n; i++) {
        attr_conv_t *c;
        if (attr__conv_from_set(svc, &rd->set, i, &c) != 0) {
            attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            attr__refund_batch_done(rb);
            return;
        }
    }
    size_t u = 0; /* index into rd->refund_ids: one per valid event */
    for (size_t i = 0; i < req->n_events; i++) {
        if (!rb->valid[i]) {
            continue;
        }
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        int64_t index = (int64_t)i;
        char err[ATTR_REASON_MAX];
        if (rd->refund_stored[u++]) {
            ing->duplicates++;
            continue;
        }
        attr_refund_t *r = NULL;
        int64_t left = 0;
        int rc = attr_refund_admit(st, ev->refund_id, strlen(ev->refund_id), ev->order_id,
                                   strlen(ev->order_id), ev->amount_minor, rb->occur[i], &r, &left);
        switch (rc) {
        case ATTR_ADMITTED:
            rb->refunds[rb->n] = r;
            rb->rows[rb->n].refund_id = r->refund_id;
            rb->rows[rb->n].order_id = r->conv->order_id;
            rb->rows[rb->n].amount_minor = r->amount;
            rb->rows[rb->n].occur_ns = r->occur_ns;
            rb->n++;
            break;
        case ATTR_DUPLICATE:
            ing->duplicates++;
            break;
        case ATTR_UNKNOWN_ORDER:
            attr__reject(ing, index, attr__no_order(ev->order_id, err, sizeof err));
            break;
        case ATTR_TOO_LARGE: {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            snprintf(err, sizeof err,
                     "amount_minor: %lld is more than what is left of order %s (%lld)",
                     (long long)ev->amount_minor, yw_quote(ev->order_id, YW_QUOTE_MAX, q, sizeof q),
                     (long long)left);
            attr__reject(ing, index, err);
            break;
        }
        default:
            attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
    }
    attr__order_read_free(rd);
    rb->rd = NULL;
    attr__refund_batch_unpin(rb); /* the admitted refunds keep theirs in memory */
    if (rb->n == 0) {
        attr__refund_batch_done(rb);
        return;
    }
    rb->j.job.work = attr_store_put_refunds;
    rb->j.job.done = attr__on_refund_batch_written;
    rb->j.rows = rb->rows;
    rb->j.n = rb->n;
    rb->j.ingest_ns = rb->now;
    int rc = yw_store_write(svc->store, &rb->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < rb->n; i++) {
            attr_refund_abort(st, rb->refunds[i]);
        }
        rb->n = 0;
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "refunds: cannot queue a write: %s",
                          strerror(-rc));
        attr__refund_batch_done(rb);
    }
}

/** Reads the refunded conversions that are not in memory, and the stored refund ids. */
static void attr__refund_batch_start(attr_held_t *h)
{
    attr_refund_batch_t *rb =
        (attr_refund_batch_t *)((char *)h - offsetof(attr_refund_batch_t, held));
    attr_svc_t *svc = rb->ing->svc;
    attr_order_read_t *rd = rb->rd;
    rd->job.work = attr__order_read_work;
    rd->job.done = attr__on_refund_batch_read;
    int rc = yw_store_write(svc->store, &rd->job);
    if (rc != 0) {
        attr__ingest_fail(rb->ing, GRPC_STATUS_UNAVAILABLE, "refunds: cannot queue a read: %s",
                          strerror(-rc));
        attr__refund_batch_done(rb);
    }
}

void attr__on_record_refunds(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordRefundsRequest *req =
        (const Yaowei__Attribution__V1__RecordRefundsRequest *)msg;
    char disk[256];
    if (attr__events_max(call, req->n_events) != 0) {
        return;
    }
    if (yw_disk_writable(attr__svc(call)->disk, disk, sizeof disk) != 0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, disk);
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    attr_refund_batch_t *rb = calloc(1, sizeof *rb);
    size_t cap = req->n_events ? req->n_events : 1;
    if (ing == NULL || rb == NULL || (rb->refunds = malloc(cap * sizeof *rb->refunds)) == NULL ||
        (rb->rows = malloc(cap * sizeof *rb->rows)) == NULL ||
        (rb->valid = calloc(cap, 1)) == NULL ||
        (rb->pins = malloc(cap * sizeof *rb->pins)) == NULL ||
        (rb->occur = malloc(cap * sizeof *rb->occur)) == NULL ||
        (rb->rd = calloc(1, sizeof *rb->rd)) == NULL) {
        if (rb != NULL) {
            attr__refund_batch_free(rb);
        }
        if (ing != NULL) {
            yw_call_set_data(call, NULL);
            free(ing);
        }
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    rb->ing = ing;
    rb->req = req; /* valid until the call is freed (a unary request) */
    rb->now = attr__now();
    rb->rd->svc = svc;
    rb->rd->data = rb;
    int oom = 0;
    for (size_t i = 0; i < req->n_events && !oom; i++) {
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        int64_t index = ing->next_index++;
        char err[ATTR_REASON_MAX];
        if (attr_validate_refund(ev, rb->now, &rb->occur[i], err, sizeof err) != 0) {
            attr__reject(ing, index, err);
            continue;
        }
        rb->valid[i] = 1;
        size_t olen = strlen(ev->order_id);
        /* Conversions not in memory are read first (those in memory stay there until
         * judged); refund ids are checked against the stored ones (the pending ones are
         * memory's to know). */
        attr_conv_t *c = attr_conv_find(st, ev->order_id, olen);
        if (c != NULL) {
            attr_conv_pin(c);
            rb->pins[rb->n_pins++] = c;
        }
        /* (Also with a pending one of that id: it may be a duplicate of a stored order,
         * which the read finds: attr__pending_own().) */
        if ((c == NULL && attr__order_read_add_order(rb->rd, ev->order_id, olen) != 0) ||
            attr__push_str(&rb->rd->refund_ids, &rb->rd->n_refund_ids, &rb->rd->cap_refund_ids,
                           ev->refund_id, strlen(ev->refund_id)) != 0) {
            oom = 1;
        }
    }
    ing->in_flight++;
    svc->refs++;
    if (oom) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__refund_batch_done(rb);
        return;
    }
    if (rb->rd->n_refund_ids == 0) {
        attr__refund_batch_done(rb); /* every event was rejected */
        return;
    }
    attr__gate(svc, &rb->held, attr__refund_batch_start);
}
