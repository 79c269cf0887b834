/*
 * attr_ingest_conversions.c — RecordConversions and IngestConversions. Admitted
 * conversions are gathered in a batch (attr_conv_batch_t) that is written to SQLite
 * while their candidate touches are looked up in the exposure index files; once both
 * are back the batch is committed (credited) behind the gate and the keys go into the
 * conversion key index (attr_ckey.h), so that a late exposure finds the order.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_validate.h"

/**
 * Conversions admitted by one call: written to SQLite while their candidates are looked
 * up in the exposure index files (`jr`; read-only, so it need not wait for the write),
 * committed once both are back.
 */
typedef struct st_attr_conv_batch_t {
    attr_conv_job_t j;
    attr_ingest_t *ing;
    attr_conv_t **convs;
    attr_conv_row_t *rows;
    uint8_t *past;     /* per conversion: past the horizon when admitted */
    uint8_t *inserted; /* per conversion, from the write: 0 for a stored order_id */
    size_t n, cap;
    attr_xjoin_t jr;
    attr_xjoin_q_t *q;
    int waiting;              /* of the write and the lookup, how many are not back */
    int joined;               /* the lookup ran (jr holds its results) */
    grpc_status_code written; /* the write's status */
    attr_held_t held;
} attr_conv_batch_t;

static void attr__conv_batch_free(attr_conv_batch_t *cb)
{
    /* The lookup's view, kept until the conversions were committed (or forgotten). */
    attr_exposure_store_join_release(cb->ing->svc->xs, &cb->jr);
    attr_xjoin_free(&cb->jr);
    free(cb->q);
    free(cb->convs);
    free(cb->rows);
    free(cb->past);
    free(cb->inserted);
    free(cb);
}

static void attr__conv_key(attr_svc_t *svc, const attr_conv_t *c, int64_t now);

/**
 * Both the write and the lookup are back: commit (or forget) the job's conversions. The
 * lookup's view was kept until now, so that an exposure committed since it began is
 * still in a run in memory: the commit's capture from the runs finds it (it could not
 * find the conversion, pending then). Released by attr__conv_batch_free().
 */
static void attr__conv_batch_commit(attr_held_t *h)
{
    attr_conv_batch_t *cb = (attr_conv_batch_t *)((char *)h - offsetof(attr_conv_batch_t, held));
    attr_ingest_t *ing = cb->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    if (cb->written != GRPC_STATUS_OK) {
        for (size_t i = 0; i < cb->n; i++) {
            attr_conv_abort(st, cb->convs[i]);
        }
        attr__ingest_fail(ing, cb->written, "conversions: %s", cb->j.job.errmsg);
    } else {
        /* Durable. Before it is visible: its touches in the index files. */
        int64_t now = attr__now();
        attr_xjoin_t *jr = &cb->jr;
        if (cb->joined && jr->status != 0) {
            /* Credited from what memory holds; a restart looks them up again. */
            svc->suspect = 1;
            yw_log(YW_LOG_ERROR,
                   "cannot look up the touches of %zu orders in the exposure "
                   "index (credited from the exposures in memory only until "
                   "restart): %s",
                   cb->n, strerror(-jr->status));
        }
        for (size_t i = 0; i < cb->n; i++) {
            attr_conv_t *c = cb->convs[i];
            if (!cb->inserted[i]) {
                /* Its order_id was stored already (by an earlier call): a duplicate. */
                attr_conv_abort(st, c);
                ing->duplicates++;
                continue;
            }
            size_t nc = 0;
            const attr_xcand_t *cs =
                cb->joined && jr->status == 0 ? attr_xjoin_cands(jr, i, &nc) : NULL;
            for (size_t k = 0; k < nc; k++) {
                const attr_xcand_t *x = &cs[k];
                if (attr_exposure_past_horizon(st, x->occur_ns, now)) {
                    continue;
                }
                if (attr_conv_add_cand(st, c, x->event_id, x->creator, x->creator_len, x->note,
                                       x->note_len, x->kind, x->watch_ms, x->occur_ns, 0) != 0) {
                    svc->suspect = 1;
                    yw_log(YW_LOG_ERROR, "out of memory adding touches to order %s", c->order_id);
                }
            }
            int crc = attr_conv_commit(st, c, now);
            if (crc == -EEXIST) {
                /* Inserted, yet its id is cached as stored: cannot be (ids are unique). */
                svc->suspect = 1;
                yw_log(YW_LOG_ERROR, "order %s stored twice?", c->order_id);
                attr_conv_abort(st, c);
                continue;
            }
            if (crc != 0) {
                svc->suspect = 1;
                yw_log(YW_LOG_ERROR, "out of memory crediting order %s", c->order_id);
            }
            attr__conv_key(svc, c, now);
            ing->accepted++;
            ing->past += cb->past[i];
        }
    }
    attr__conv_batch_free(cb);
    ing->in_flight--;
    attr__schedule_persist(svc);
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
    attr__unref(svc); /* the batch's */
}

/**
 * The seq up to which every stored conversion's key is in the key index: all but the
 * pending ones (stored, maybe, but not yet committed) are.
 */
uint64_t attr__safe_seq(const attr_svc_t *svc)
{
    uint64_t safe = svc->next_conv_seq - 1;
    const attr_strmap_t *m = &svc->st.pend_orders;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].hash != 0) {
            const attr_conv_t *c = m->slots[i].val;
            if (c->state == ATTR_PENDING && c->seq <= safe) {
                safe = c->seq - 1;
            }
        }
    }
    return safe;
}

/**
 * A conversion stored and committed: its key goes in the key index (also past the join
 * horizon: a settings change may widen it; the files of old keys are deleted by age). A
 * failure is logged: a late exposure may then miss it while it is not in memory.
 */
static void attr__conv_key(attr_svc_t *svc, const attr_conv_t *c, int64_t now)
{
    (void)now;
    int rc = attr_ckey_add(svc->ck, c->vp_hash, c->seq, c->occur_ns);
    if (rc == 0 && attr_ckey_full(svc->ck)) {
        rc = attr_ckey_seal(svc->ck, attr__safe_seq(svc));
    }
    if (rc != 0) {
        svc->suspect = 1;
        yw_log(YW_LOG_ERROR, "out of memory indexing the key of order %s", c->order_id);
    }
}

static void attr__conv_batch_finish(attr_conv_batch_t *cb)
{
    attr__gate(cb->ing->svc, &cb->held, attr__conv_batch_commit);
}

static void attr__on_conv_batch_joined(attr_xjoin_t *jr)
{
    attr_conv_batch_t *cb = jr->data;
    cb->joined = 1;
    if (--cb->waiting == 0) {
        attr__conv_batch_finish(cb);
    }
}

static void attr__on_conv_batch_written(yw_store_job_t *job, grpc_status_code status)
{
    attr_conv_batch_t *cb = (attr_conv_batch_t *)job;
    cb->written = status;
    if (--cb->waiting == 0) {
        attr__conv_batch_finish(cb);
    }
}

/** Starts looking up the job's conversions in the index files; 0 when on its way. */
static int attr__conv_batch_join(attr_conv_batch_t *cb)
{
    attr_svc_t *svc = cb->ing->svc;
    if ((cb->q = calloc(cb->n, sizeof *cb->q)) == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cb->n; i++) {
        const attr_conv_t *c = cb->convs[i];
        attr_xjoin_q_t *q = &cb->q[i];
        q->vp_hash = c->vp_hash;
        q->viewer = c->viewer;
        q->product = c->product;
        q->viewer_len = c->viewer_len;
        q->product_len = c->product_len;
        q->occur_ns = c->occur_ns;
    }
    cb->jr.n = cb->n;
    cb->jr.q = cb->q;
    cb->jr.keep_view = 1; /* until the commit: see attr__conv_batch_commit() */
    cb->jr.done = attr__on_conv_batch_joined;
    cb->jr.data = cb;
    return attr_exposure_store_join(svc->xs, &cb->jr);
}

/** Writes a job's conversions and looks up their touches (after a restatement). */
static void attr__conv_batch_start(attr_held_t *h)
{
    attr_conv_batch_t *cb = (attr_conv_batch_t *)((char *)h - offsetof(attr_conv_batch_t, held));
    attr_ingest_t *ing = cb->ing;
    attr_svc_t *svc = ing->svc;
    cb->j.job.work = attr_store_put_conversions;
    cb->j.job.done = attr__on_conv_batch_written;
    cb->j.rows = cb->rows;
    cb->j.n = cb->n;
    cb->j.currency = svc->st.settings.currency;
    cb->j.ingest_ns = attr__now();
    cb->j.inserted = cb->inserted;
    cb->waiting = 1;
    int rc = yw_store_write(svc->store, &cb->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < cb->n; i++) {
            attr_conv_abort(&svc->st, cb->convs[i]);
        }
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "conversions: cannot queue a write: %s",
                          strerror(-rc));
        attr__conv_batch_free(cb);
        ing->in_flight--;
        attr__ingest_maybe_finish(ing);
        attr__unref(svc); /* the batch's */
        return;
    }
    /* Always a lookup, even when no index file exists yet: its view is what keeps the
     * runs published while the job is on its way in memory until the commit captures
     * from them. Invariant (attr__conv_batch_commit()): the view's files plus the runs in
     * memory at the commit hold every exposure committed before the commit. Skipping
     * the lookup when there were no files broke it: a run sealed and published during
     * the write left memory unseen, and the order missed its exposures until a restart
     * joined them again (memory and restart disagreed). */
    cb->waiting++;
    if ((rc = attr__conv_batch_join(cb)) != 0) {
        cb->waiting--;
        svc->suspect = 1;
        yw_log(YW_LOG_ERROR,
               "cannot look up the touches of %zu orders in the exposure index (credited "
               "from the exposures in memory only until restart): %s",
               cb->n, strerror(-rc));
    }
}

static void attr__conv_batch_submit(attr_ingest_t *ing)
{
    attr_conv_batch_t *cb = ing->cb;
    ing->cb = NULL;
    if (cb == NULL) {
        return;
    }
    attr_svc_t *svc = ing->svc;
    if ((cb->inserted = calloc(cb->n ? cb->n : 1, 1)) == NULL) {
        for (size_t i = 0; i < cb->n; i++) {
            attr_conv_abort(&svc->st, cb->convs[i]);
        }
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__conv_batch_free(cb);
        return;
    }
    ing->in_flight++;
    svc->refs++;
    attr__gate(svc, &cb->held, attr__conv_batch_start);
}

static void attr__ingest_conversion(attr_ingest_t *ing,
                                    const Yaowei__Attribution__V1__ConversionEvent *ev, int64_t now)
{
    int64_t index = ing->next_index++;
    attr_state_t *st = &ing->svc->st;
    char err[ATTR_REASON_MAX];
    int64_t occur;
    if (attr__disk_full(ing)) {
        return;
    }
    if (attr_validate_conversion(ev, st->settings.currency, now, &occur, err, sizeof err) != 0) {
        attr__reject(ing, index, err);
        return;
    }
    attr_conv_in_t in = {
        .order_id = ev->order_id,
        .order_id_len = strlen(ev->order_id),
        .viewer_id = ev->viewer_id,
        .viewer_len = strlen(ev->viewer_id),
        .product_id = ev->product_id,
        .product_len = strlen(ev->product_id),
        .quantity = ev->quantity,
        .amount_minor = ev->amount_minor,
        .occur_ns = occur,
        .seq = ing->svc->next_conv_seq,
    };
    attr_conv_t *c = NULL;
    int rc = attr_conv_admit(st, &in, &c);
    if (rc == ATTR_ADMITTED) {
        ing->svc->next_conv_seq++;
    }
    if (rc == ATTR_DUPLICATE) {
        ing->duplicates++;
        return;
    }
    if (rc != ATTR_ADMITTED) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_conv_batch_t *cb = ing->cb;
    if (cb == NULL && (cb = ing->cb = calloc(1, sizeof *cb)) != NULL) {
        cb->ing = ing;
    }
    if (cb != NULL && cb->n == cb->cap) {
        /* Three arrays of one capacity: each grows from cb->cap to the same new one. */
        size_t c = cb->cap, c2 = cb->cap, c3 = cb->cap;
        if (YW_VEC_RESERVE(cb->convs, c, cb->n + 1, 64) == 0 &&
            YW_VEC_RESERVE(cb->rows, c2, cb->n + 1, 64) == 0 &&
            YW_VEC_RESERVE(cb->past, c3, cb->n + 1, 64) == 0) {
            cb->cap = c;
        }
    }
    if (cb == NULL || cb->n == cb->cap) {
        attr_conv_abort(st, c);
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_conv_row_t *row = &cb->rows[cb->n];
    row->order_id = c->order_id;
    row->viewer_id = c->viewer;
    row->product_id = c->product;
    row->quantity = c->quantity;
    row->amount_minor = c->amount;
    row->occur_ns = c->occur_ns;
    row->seq = c->seq;
    cb->past[cb->n] = (uint8_t)attr_conv_past_horizon(st, occur, now);
    cb->convs[cb->n++] = c;
    if (cb->n >= ATTR_FRAME_EVENTS) {
        attr__conv_batch_submit(ing);
    }
}

void attr__on_record_conversions(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordConversionsRequest *req =
        (const Yaowei__Attribution__V1__RecordConversionsRequest *)msg;
    if (attr__events_max(call, req->n_events) != 0) {
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    if (ing == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    int64_t now = attr__now();
    for (size_t i = 0; i < req->n_events; i++) {
        attr__ingest_conversion(ing, req->events[i], now);
    }
    attr__conv_batch_submit(ing);
    attr__ingest_end(ing);
}

void attr__on_ingest_conversion(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing != NULL) {
        attr__ingest_conversion(ing, (const Yaowei__Attribution__V1__ConversionEvent *)msg,
                                attr__now());
        attr__stream_flow(ing);
    }
}

void attr__on_ingest_conversions_end(yw_call_t *call)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing == NULL) {
        return;
    }
    attr__conv_batch_submit(ing);
    attr__ingest_end(ing);
}
