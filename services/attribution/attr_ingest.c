/*
 * attr_ingest.c — one ingestion call (attr_ingest_t): its counts and its first failure,
 * rejected events for the summary's errors, flow control of the client streams and of
 * sliced RecordExposures calls, and the IngestSummary once the input ended and every
 * batch of the call is through. The events themselves: attr_ingest_exposures.c,
 * attr_ingest_conversions.c, attr_refund.c.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "services/attribution/attr_validate.h"

/** A client stream stops reading while this many of its frames / jobs are on their way. */
#define ATTR_STREAM_BATCHES 2
/** The same for a RecordExposures call (its events are in memory already). */
#define ATTR_RECORD_BATCHES 4

attr_ingest_t *attr__ingest_new(yw_call_t *call)
{
    attr_ingest_t *ing = calloc(1, sizeof *ing);
    if (ing != NULL) {
        ing->svc = attr__svc(call);
        ing->call = call;
        ing->fail = GRPC_STATUS_OK;
        yw_call_set_data(call, ing);
    }
    return ing;
}

void attr__ingest_fail(attr_ingest_t *ing, grpc_status_code code, const char *fmt, ...)
{
    if (ing->fail != GRPC_STATUS_OK) {
        return; /* the first failure is the one reported */
    }
    ing->fail = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ing->fail_msg, sizeof ing->fail_msg, fmt, ap);
    va_end(ap);
}

int attr__events_max(yw_call_t *call, size_t n)
{
    if (n > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                       ATTR_BATCH_MAX, n);
        return -EINVAL;
    }
    return 0;
}

/**
 * Whether the data dir's disk is full (common/disk.h): the call's events are then
 * refused, the call failing RESOURCE_EXHAUSTED with the disk's message.
 */
int attr__disk_full(attr_ingest_t *ing)
{
    char err[256];
    if (yw_disk_writable(ing->svc->disk, err, sizeof err) == 0) {
        return 0;
    }
    attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", err);
    return 1;
}

/**
 * Counts a rejected event, at whatever stage it was judged; the summary lists the
 * ATTR_ERRORS_MAX lowest indexes, ascending (attr_errs.h).
 */
void attr__reject(attr_ingest_t *ing, int64_t index, const char *reason)
{
    ing->rejected++;
    attr_errs_add(&ing->errs, index, reason);
}

/** The reason for an order_id no conversion has (its id quoted: utf8.h). Returns `buf`. */
const char *attr__no_order(const char *order_id, char *buf, size_t n)
{
    char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
    snprintf(buf, n, "order_id: no conversion has order_id %s",
             yw_quote(order_id, YW_QUOTE_MAX, q, sizeof q));
    return buf;
}

/**
 * Flow control of the client streams (server.h, yw_call_pause_reads()): a stream stops
 * reading while ATTR_STREAM_BATCHES of its frames (or conversion jobs) are on their way
 * (the disk check, the index's backpressure, the log, the commit), and reads on once one
 * is through. A client faster than that waits in HTTP/2 flow control instead of piling
 * events up here: a stream has at most ATTR_STREAM_BATCHES frames and the one being
 * filled read and not yet accepted. Unary calls have nothing to pause (-EINVAL).
 */
/** Whether a call's next events wait for its frames in flight (count, then bytes). */
int attr__flow_full(const attr_ingest_t *ing)
{
    return ing->in_flight >= (ing->rx != NULL ? ATTR_RECORD_BATCHES : ATTR_STREAM_BATCHES) ||
           (ing->in_flight > 0 && ing->svc->pending_bytes >= ing->svc->pending_budget);
}

void attr__stream_flow(attr_ingest_t *ing)
{
    if (ing->call == NULL) {
        return; /* the call is gone (attr__on_ingest_done()): nothing to pause */
    }
    if (ing->rx != NULL) {
        /* A sliced RecordExposures: its next slice when its frames let it. */
        if (ing->flow_wait && !attr__flow_full(ing)) {
            ing->flow_wait = 0;
            attr__slice_queue(ing);
        }
        return;
    }
    if (attr__flow_full(ing)) {
        (void)yw_call_pause_reads(ing->call);
    } else {
        (void)yw_call_resume_reads(ing->call);
    }
}

/** Sends the summary (or the failure) once the input ended and nothing is in flight. */
void attr__ingest_maybe_finish(attr_ingest_t *ing)
{
    if (!ing->ended) {
        attr__stream_flow(ing); /* a frame went through: the stream may read on */
        return;
    }
    if (ing->in_flight > 0) {
        return;
    }
    yw_call_t *call = ing->call;
    if (call == NULL) {
        free(ing); /* its call is gone: what it admitted is written, nobody to answer */
        return;
    }
    if (ing->fail != GRPC_STATUS_OK) {
        yw_call_fail(call, ing->fail, ing->fail_msg);
    } else {
        Yaowei__Attribution__V1__IngestSummary sum;
        yaowei__attribution__v1__ingest_summary__init(&sum);
        sum.errors = attr_errs_list(&ing->errs, &sum.n_errors);
        sum.accepted = ing->accepted;
        sum.duplicates = ing->duplicates;
        sum.rejected = ing->rejected;
        sum.past_join_horizon = ing->past;
        (void)yw_call_reply(call, &sum.base);
    }
    yw_call_set_data(call, NULL);
    free(ing);
}

attr_ingest_t *attr__stream_ingest(yw_call_t *call)
{
    attr_ingest_t *ing = yw_call_data(call);
    if (ing == NULL && (ing = attr__ingest_new(call)) == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    return ing;
}

void attr__ingest_end(attr_ingest_t *ing)
{
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

void attr__on_ingest_done(yw_call_t *call)
{
    attr_ingest_t *ing = yw_call_data(call);
    if (ing == NULL) {
        return; /* answered already */
    }
    /* Over without its answer: the runtime failed it (a message that does not parse, not
     * UTF-8) or it died. Its call is not touched again; what it admitted is written as at
     * an end (a resend reports duplicates); the context goes once nothing of it is in
     * flight (attr__ingest_maybe_finish()). */
    ing->call = NULL;
    if (!ing->ended) {
        if (yw_call_method(call)->request == &yaowei__attribution__v1__exposure_event__descriptor) {
            attr__on_ingest_exposures_end(call);
        } else {
            attr__on_ingest_conversions_end(call);
        }
    }
    yw_call_set_data(call, NULL);
}
