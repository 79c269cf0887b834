/*
 * attr_ingest_exposures.c — RecordExposures and IngestExposures. Each event is
 * validated and admitted (the duplicate check) into the call's batch (attr_xbatch_t);
 * a full batch goes through the gate to the disk check of unsure ids, the preload of
 * the orders it may join (attr_order_load.c), the exposure log as one frame, and, once
 * durable, the commit to the state. RecordExposures is judged in slices across loop
 * turns (the slice timer), so that one big call cannot hold the loop.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_validate.h"

/** A frame is also handed on once its exposures hold this many bytes (their strings). */
#define ATTR_FRAME_BYTES (1u << 20)
/**
 * ... or this much commit work (an exposure counts 1 + its product ids): a frame is
 * committed in one loop turn, which must stay a few milliseconds (2,048 exposures of 100
 * products each took a tenth of a second).
 */
#define ATTR_FRAME_WORK 16384
/**
 * RecordExposures is judged in slices across loop turns, so that one big call cannot
 * hold the loop: a slice is this much work (an exposure counts 1 + its product ids), and
 * one turn of the slice timer runs slices for at most ATTR_SLICE_NS.
 */
#define ATTR_SLICE_WORK 8192
#define ATTR_SLICE_NS (2 * 1000 * 1000)
/** How many events ahead RecordExposures prefetches. */
#define ATTR_PREFETCH_AHEAD 3

/** Flags of an exposure in a batch. */
enum { ATTR_XB_UNSURE = 1, ATTR_XB_PAST = 2, ATTR_XB_DUP = 4 };

/**
 * Exposures admitted by one call, on their way to the log as one frame. The log
 * records are built as events are admitted (from the state's copies of their strings,
 * which stay until commit or abort); `products` pointers are set when the frame is
 * handed to the log, once `prods` stops growing. Before the frame is written: ids the
 * Bloom filters were unsure of are looked up on disk (`cf`; the duplicates found drop
 * out of the batch), and the stored conversions the exposures may join late are brought
 * into memory and pinned there (`rd`, `pins`), so that the commit finds them all.
 */
struct st_attr_xbatch_t {
    attr_xlog_batch_t lb;
    attr_ingest_t *ing;
    uint64_t *seqs;
    attr_xlog_exposure_t *evs;
    uint32_t *offs; /* the records' offsets in the segment (filled by the writer) */
    uint8_t *flags; /* ATTR_XB_* */
    size_t n, cap;
    attr_xlog_str_t *prods;
    size_t n_prods, cap_prods;
    size_t n_unsure;
    attr_xconfirm_t cf;
    const attr_pexp_t **cf_events;
    uint8_t *cf_dup;
    int waiting; /* of the disk check and the conversions' load, how many are not back */
    attr_order_read_t *rd;
    attr_conv_t **pins;
    size_t n_pins;
    /* submitted, not yet committed (svc->active): conversions committed from `guard` on
     * stay in memory until this batch commits */
    uint64_t guard;
    attr_xbatch_t *prev_active, *next_active;
    int active;
    attr_held_t held;
    int status;
    size_t bytes; /* of its exposures' strings, counted in svc->pending_bytes */
    size_t work;  /* exposures plus their product ids (ATTR_FRAME_WORK) */
};

/** Frees a batch that holds nothing but its arrays (a spare one, or one done with). */
static void attr__xbatch_destroy(attr_xbatch_t *xb)
{
    free(xb->seqs);
    free(xb->evs);
    free(xb->offs);
    free(xb->flags);
    free(xb->prods);
    free(xb);
}

void attr__spare_xb_free(attr_svc_t *svc)
{
    for (int i = 0; i < svc->n_spare_xb; i++) {
        attr__xbatch_destroy(svc->spare_xb[i]);
    }
    svc->n_spare_xb = 0;
}

/**
 * Frees a batch, or keeps it (up to ATTR_SPARE_XBATCHES, with its arrays) for the next
 * one: its arrays are 100 KiB and more, and glibc consolidates its fast bins whenever a
 * free leaves 64 KiB in one piece (several times per call at 1,000 exposures a call).
 */
static void attr__xbatch_free(attr_xbatch_t *xb)
{
    attr_svc_t *svc = xb->ing->svc;
    svc->pending_bytes -= xb->bytes;
    xb->bytes = 0;
    if (xb->cf.view != NULL) {
        attr_exposure_store_confirm_cancel(svc->xs, &xb->cf);
    }
    attr__order_read_free(xb->rd);
    free(xb->cf_events);
    free(xb->cf_dup);
    free(xb->pins);
    if (svc->n_spare_xb < ATTR_SPARE_XBATCHES) {
        attr_xbatch_t keep = {.seqs = xb->seqs,
                              .evs = xb->evs,
                              .offs = xb->offs,
                              .flags = xb->flags,
                              .cap = xb->cap,
                              .prods = xb->prods,
                              .cap_prods = xb->cap_prods};
        *xb = keep;
        svc->spare_xb[svc->n_spare_xb++] = xb;
        return;
    }
    attr__xbatch_destroy(xb);
}

static void attr__xbatch_activate(attr_svc_t *svc, attr_xbatch_t *xb)
{
    xb->guard = svc->st.next_commit_seq;
    xb->prev_active = NULL;
    xb->next_active = svc->active;
    if (svc->active != NULL) {
        svc->active->prev_active = xb;
    }
    svc->active = xb;
    xb->active = 1;
}

static void attr__xbatch_deactivate(attr_svc_t *svc, attr_xbatch_t *xb)
{
    if (!xb->active) {
        return;
    }
    if (xb->prev_active != NULL) {
        xb->prev_active->next_active = xb->next_active;
    } else {
        svc->active = xb->next_active;
    }
    if (xb->next_active != NULL) {
        xb->next_active->prev_active = xb->prev_active;
    }
    xb->active = 0;
}

/** The end of a batch's way (written, failed or all duplicates): the call may finish. */
static void attr__xbatch_done(attr_xbatch_t *xb)
{
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    for (size_t i = 0; i < xb->n_pins; i++) {
        attr_conv_unpin(xb->pins[i]);
    }
    attr__xbatch_deactivate(svc, xb);
    attr__xbatch_free(xb);
    ing->in_flight--;
    attr__schedule_persist(svc);
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
    attr__unref(svc); /* the batch's */
}

/** Forgets every exposure of a batch that will not be written. */
static void attr__xbatch_abort(attr_xbatch_t *xb)
{
    for (size_t i = 0; i < xb->n; i++) {
        attr_exposure_abort(&xb->ing->svc->st, xb->seqs[i]);
    }
}

/** Makes a durable batch visible (after any restatement in progress: in log order). */
static void attr__xbatch_commit(attr_held_t *h)
{
    attr_xbatch_t *xb = (attr_xbatch_t *)((char *)h - offsetof(attr_xbatch_t, held));
    attr_xlog_batch_t *lb = &xb->lb;
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    int64_t now = attr__now();
    if (xb->status == 0) {
        int oom = 0;
        for (size_t i = 0; i < xb->n; i++) {
            /* Overlap the cache misses of the next commits' rollup lookups with this one. */
            if (i + 8 < xb->n) {
                attr_exposure_prefetch_commit(st, xb->seqs[i + 8], 0);
            }
            if (i + 4 < xb->n) {
                attr_exposure_prefetch_commit(st, xb->seqs[i + 4], 1);
            }
            if (attr_exposure_commit_at(st, xb->seqs[i], (uint32_t)lb->seq, xb->offs[i], now) < 0) {
                oom = 1;
            }
            ing->past += (xb->flags[i] & ATTR_XB_PAST) != 0;
        }
        if (oom) {
            svc->suspect = 1;
            yw_log(YW_LOG_ERROR, "out of memory applying exposures: reports may lag until "
                                 "restart (the exposures are durable)");
        }
        ing->accepted += (int64_t)xb->n;
        if (xb->n > 0) {
            svc->committed_seg = lb->seq;
            svc->committed_off = xb->offs[xb->n - 1];
        }
        attr_exposure_store_committed(svc->xs, lb);
    } else {
        attr__xbatch_abort(xb);
        yw_log(YW_LOG_ERROR, "exposure log: cannot write %zu exposures: %s", xb->n,
               strerror(-xb->status));
        /* A full disk is no outage to retry blindly: the gate closes until space is back. */
        int full = xb->status == -ENOSPC || xb->status == -EDQUOT;
        if (full) {
            yw_disk_report_full(svc->disk);
        }
        attr__ingest_fail(ing, full ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE,
                          "exposure log: cannot write (%s%s); events of this call may be "
                          "partly stored: resend it%s (duplicates are detected)",
                          strerror(-xb->status), full ? ": disk full" : "",
                          full ? " once space is back" : "");
    }
    attr__xbatch_done(xb);
}

static void attr__on_xbatch(attr_xlog_batch_t *lb, int status)
{
    attr_xbatch_t *xb = lb->data;
    xb->status = status;
    attr__gate(xb->ing->svc, &xb->held, attr__xbatch_commit);
}

/** Hands a batch (nothing unsure left in it) to the exposure log as one frame. */
static void attr__xbatch_write(attr_xbatch_t *xb)
{
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    if (xb->n == 0) {
        attr__xbatch_done(xb); /* all duplicates: nothing to write */
        return;
    }
    size_t p = 0;
    for (size_t i = 0; i < xb->n; i++) {
        xb->evs[i].products = xb->prods + p;
        p += xb->evs[i].n_products;
    }
    xb->lb.events = xb->evs;
    xb->lb.n = xb->n;
    xb->lb.arrival_ns = attr__now();
    xb->lb.done = attr__on_xbatch;
    xb->lb.data = xb;
    xb->lb.rec_off = xb->offs;
    xb->lb.linger = ing->call != NULL && yw_call_metadata(ing->call, ATTR_LINGER_MD, NULL) != NULL;
    int rc = attr_exposure_store_append(svc->xs, &xb->lb);
    if (rc != 0) {
        attr__xbatch_abort(xb);
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "exposure log: cannot queue a batch: %s",
                          strerror(-rc));
        attr__xbatch_done(xb);
    }
}

/** One of the steps before the write is back (or failed: then the batch is aborted). */
static void attr__xbatch_step(attr_xbatch_t *xb)
{
    if (--xb->waiting > 0) {
        return;
    }
    if (xb->status != 0) {
        attr__xbatch_abort(xb);
        attr__xbatch_done(xb);
        return;
    }
    attr__xbatch_write(xb);
}

/** The disk said which unsure ids are stored: those are duplicates. */
static void attr__on_confirmed(attr_xconfirm_t *cf)
{
    attr_xbatch_t *xb = cf->data;
    attr_ingest_t *ing = xb->ing;
    attr_state_t *st = &ing->svc->st;
    if (cf->status != 0) {
        yw_log(YW_LOG_ERROR, "cannot look up event ids in the exposure index: %s",
               strerror(-cf->status));
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE,
                          "exposure index: cannot check event ids (%s); events of this call "
                          "may be partly stored: resend it (duplicates are detected)",
                          strerror(-cf->status));
        xb->status = cf->status;
        attr__xbatch_step(xb);
        return;
    }
    size_t u = 0;
    for (size_t i = 0; i < xb->n; i++) {
        if (xb->flags[i] & ATTR_XB_UNSURE) {
            int dup = xb->cf_dup[u++];
            attr_exposure_resolve(st, xb->seqs[i], dup);
            if (dup) {
                xb->flags[i] |= ATTR_XB_DUP;
                ing->duplicates++;
            }
        }
    }
    /* Drop the duplicates (their products too: they are stored event after event). */
    size_t j = 0, src = 0, dst = 0;
    for (size_t i = 0; i < xb->n; i++) {
        uint32_t np = xb->evs[i].n_products;
        if (!(xb->flags[i] & ATTR_XB_DUP)) {
            xb->seqs[j] = xb->seqs[i];
            xb->evs[j] = xb->evs[i];
            xb->flags[j] = xb->flags[i];
            memmove(xb->prods + dst, xb->prods + src, np * sizeof *xb->prods);
            dst += np;
            j++;
        }
        src += np;
    }
    xb->n = j;
    xb->n_prods = dst;
    attr__xbatch_step(xb);
}

static void attr__xpreloaded(attr_held_t *h);

/**
 * The stored conversions the batch may join are read: into memory, pinned (after the
 * restatement in progress, if any: the cache must not change under it; and in the order
 * of the writer's queue, which holding keeps).
 */
static void attr__on_xpreload(yw_store_job_t *job, grpc_status_code status)
{
    attr_order_read_t *rd = (attr_order_read_t *)job;
    attr_xbatch_t *xb = rd->data;
    rd->status = status;
    attr__gate(xb->ing->svc, &xb->held, attr__xpreloaded);
}

static void attr__xpreloaded(attr_held_t *h)
{
    attr_xbatch_t *xb = (attr_xbatch_t *)((char *)h - offsetof(attr_xbatch_t, held));
    attr_order_read_t *rd = xb->rd;
    yw_store_job_t *job = &rd->job;
    grpc_status_code status = rd->status;
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    int rc = status == GRPC_STATUS_OK ? 0 : -EIO;
    if (rc == 0 && rd->set.n > 0 && (xb->pins = malloc(rd->set.n * sizeof *xb->pins)) == NULL) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < rd->set.n; i++) {
        attr_conv_t *c = NULL;
        rc = attr__conv_from_set(svc, &rd->set, i, &c);
        if (c != NULL) {
            attr_conv_pin(c);
            xb->pins[xb->n_pins++] = c;
        }
    }
    if (rc != 0) {
        /* Written without them, the late exposures would miss orders: not written. */
        yw_log(YW_LOG_ERROR, "cannot read the orders %zu exposures may join: %s", xb->n,
               status != GRPC_STATUS_OK ? job->errmsg : strerror(-rc));
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE,
                          "conversions: cannot read the orders these exposures join (%s); "
                          "events of this call may be partly stored: resend it (duplicates "
                          "are detected)",
                          status != GRPC_STATUS_OK ? job->errmsg : strerror(-rc));
        xb->status = rc;
    }
    attr__order_read_free(rd);
    xb->rd = NULL;
    attr__xbatch_step(xb);
}

/** attr_ckey_find_mem()'s callback: a seq of key `key` of the job. */
typedef struct st_attr__memkey_t {
    attr_order_read_t *rd;
    size_t key;
    int oom;
} attr__memkey_t;

static void attr__memkey_add(void *arg, uint64_t seq)
{
    attr__memkey_t *mk = arg;
    attr_order_read_t *rd = mk->rd;
    if (YW_VEC_RESERVE(rd->mem, rd->cap_mem, rd->n_mem + 1, 16) != 0) {
        mk->oom = 1;
        return;
    }
    rd->mem[rd->n_mem][0] = mk->key;
    rd->mem[rd->n_mem][1] = seq;
    rd->n_mem++;
}

/**
 * Starts reading the stored conversions that the batch's exposures may join (the
 * conversion filter says maybe). Returns 1 when it is on its way, 0 when there is
 * nothing to read, or a negative errno.
 */
static int attr__xbatch_preload(attr_xbatch_t *xb)
{
    attr_svc_t *svc = xb->ing->svc;
    attr_state_t *st = &svc->st;
    if (st->n_cfilters == 0) {
        return 0;
    }
    int64_t now = attr__now();
    attr_order_read_t *rd = NULL;
    uint8_t maybe[ATTR_PRODUCTS_MAX];
    for (size_t i = 0; i < xb->n; i++) {
        const attr_pexp_t *p = attr_exposure_pending(st, xb->seqs[i]);
        if (p == NULL || p->n_products > ATTR_PRODUCTS_MAX ||
            attr_exposure_conv_maybe(st, xb->seqs[i], now, maybe) == 0) {
            continue;
        }
        if (rd == NULL && (rd = calloc(1, sizeof *rd)) == NULL) {
            return -ENOMEM;
        }
        uint64_t hv = yw_hash_bytes(p->viewer.s, p->viewer.len);
        for (uint32_t k = 0; k < p->n_products; k++) {
            if (!maybe[k]) {
                continue;
            }
            uint64_t vp = attr_vp_hash(hv, yw_hash_bytes(p->products[k].s, p->products[k].len));
            attr__memkey_t mk = {rd, rd->n_keys, 0};
            if (attr__order_read_add_key(rd, p->viewer.s, p->viewer.len, p->products[k].s,
                                         p->products[k].len, p->occur_ns, vp) != 0) {
                attr__order_read_free(rd);
                return -ENOMEM;
            }
            /* The keys still in memory now; the files' are looked up with the job. */
            attr_ckey_find_mem(svc->ck, vp, attr__memkey_add, &mk);
            if (mk.oom) {
                attr__order_read_free(rd);
                return -ENOMEM;
            }
        }
    }
    if (rd == NULL) {
        return 0;
    }
    if ((rd->snap = attr_ckey_snap(svc->ck)) == NULL) {
        attr__order_read_free(rd);
        return -ENOMEM;
    }
    rd->svc = svc;
    rd->data = xb;
    rd->job.work = attr__order_read_work;
    rd->job.done = attr__on_xpreload;
    int rc = yw_store_write(svc->store, &rd->job);
    if (rc != 0) {
        attr__order_read_free(rd);
        return rc;
    }
    xb->rd = rd;
    return 1;
}

/** Submits a batch now (or after the restatement in progress). */
static void attr__xbatch_start(attr_held_t *h)
{
    attr_xbatch_t *xb = (attr_xbatch_t *)((char *)h - offsetof(attr_xbatch_t, held));
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    /* From now on, conversions committed stay in memory until this batch commits. */
    attr__xbatch_activate(svc, xb);
    xb->waiting = 1;
    if (xb->n_unsure > 0) {
        xb->cf_events = malloc(xb->n_unsure * sizeof *xb->cf_events);
        xb->cf_dup = calloc(xb->n_unsure, sizeof *xb->cf_dup);
        int rc = xb->cf_events != NULL && xb->cf_dup != NULL ? 0 : -ENOMEM;
        if (rc == 0) {
            size_t u = 0;
            for (size_t i = 0; i < xb->n; i++) {
                if (xb->flags[i] & ATTR_XB_UNSURE) {
                    xb->cf_events[u++] = attr_exposure_pending(&svc->st, xb->seqs[i]);
                }
            }
            xb->cf.n = xb->n_unsure;
            xb->cf.events = xb->cf_events;
            xb->cf.dup = xb->cf_dup;
            xb->cf.done = attr__on_confirmed;
            xb->cf.data = xb;
            rc = attr_exposure_store_confirm(svc->xs, &xb->cf);
        }
        if (rc == 0) {
            xb->waiting++;
        } else {
            attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "exposure index: cannot check ids: %s",
                              strerror(-rc));
            xb->status = rc;
        }
    }
    if (xb->status == 0) {
        int rc = attr__xbatch_preload(xb);
        if (rc > 0) {
            xb->waiting++;
        } else if (rc < 0) {
            attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE,
                              "conversions: cannot read the orders these exposures join: %s",
                              strerror(-rc));
            xb->status = rc;
        }
    }
    attr__xbatch_step(xb);
}

/**
 * Hands the batch being filled on: its unsure ids to the disk check, the conversions it
 * may join into memory, then to the log.
 */
static void attr__xbatch_submit(attr_ingest_t *ing)
{
    attr_xbatch_t *xb = ing->xb;
    ing->xb = NULL;
    if (xb == NULL) {
        return;
    }
    attr_svc_t *svc = ing->svc;
    if (xb->n == 0) {
        attr__xbatch_free(xb); /* all duplicates or rejects: nothing to write */
        return;
    }
    ing->in_flight++;
    svc->refs++;
    attr__gate(svc, &xb->held, attr__xbatch_start);
}

/** Room for one more exposure with `np` products in the batch being filled. */
static attr_xbatch_t *attr__xbatch_room2(attr_ingest_t *ing, size_t want, size_t np)
{
    attr_xbatch_t *xb = ing->xb;
    if (xb == NULL) {
        attr_svc_t *svc = ing->svc;
        if (svc->n_spare_xb > 0) {
            xb = svc->spare_xb[--svc->n_spare_xb];
        } else if ((xb = calloc(1, sizeof *xb)) == NULL) {
            return NULL;
        }
        xb->ing = ing;
        ing->xb = xb;
    }
    size_t need = xb->n + want;
    if (need > xb->cap) {
        /* Four arrays of one capacity: each grows from xb->cap to the same new one. */
        size_t c = xb->cap;
        if (YW_VEC_RESERVE(xb->seqs, c, need, 256) != 0) {
            return NULL;
        }
        c = xb->cap;
        if (YW_VEC_RESERVE(xb->evs, c, need, 256) != 0) {
            return NULL;
        }
        c = xb->cap;
        if (YW_VEC_RESERVE(xb->offs, c, need, 256) != 0) {
            return NULL;
        }
        c = xb->cap;
        if (YW_VEC_RESERVE(xb->flags, c, need, 256) != 0) {
            return NULL;
        }
        xb->cap = c;
    }
    if (YW_VEC_RESERVE(xb->prods, xb->cap_prods, xb->n_prods + np, 512) != 0) {
        return NULL;
    }
    return xb;
}

static attr_xbatch_t *attr__xbatch_room(attr_ingest_t *ing, size_t np)
{
    return attr__xbatch_room2(ing, 1, np);
}

static attr_xlog_str_t attr__log_str(const attr_interned_t *in)
{
    attr_xlog_str_t s = {in->s, in->len, in->id};
    return s;
}

/** Judges one exposure: validate, then the duplicate check; gathers the admitted. */
static void attr__ingest_exposure(attr_ingest_t *ing,
                                  const Yaowei__Attribution__V1__ExposureEvent *ev, int64_t now)
{
    int64_t index = ing->next_index++;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    char err[ATTR_REASON_MAX];
    int64_t occur;
    if (attr__disk_full(ing)) {
        return;
    }
    if (attr_validate_exposure(ev, now, &occur, err, sizeof err) != 0) {
        attr__reject(ing, index, err);
        return;
    }
    attr_exposure_in_t in = {
        .event_id = ev->event_id,
        .event_id_len = strlen(ev->event_id),
        .viewer_id = ev->viewer_id,
        .viewer_len = strlen(ev->viewer_id),
        .creator_id = ev->creator_id,
        .creator_len = strlen(ev->creator_id),
        .note_id = ev->note_id ? ev->note_id : "",
        .note_len = ev->note_id ? strlen(ev->note_id) : 0,
        .product_ids = (const char *const *)ev->product_ids,
        .n_products = ev->n_product_ids,
        .kind = (int)ev->kind,
        .watch_ms = ev->watch_ms,
        .occur_ns = occur,
    };
    attr_xbatch_t *xb = attr__xbatch_room(ing, ev->n_product_ids);
    if (xb == NULL) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_interned_t strs[3 + ATTR_PRODUCTS_MAX];
    uint64_t seq;
    int rc = attr_exposure_admit(st, &in, now, &seq, strs);
    if (rc == ATTR_DUPLICATE) {
        ing->duplicates++;
        return;
    }
    if (rc != ATTR_ADMITTED && rc != ATTR_UNSURE) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    uint8_t flags = 0;
    if (rc == ATTR_UNSURE) {
        /* Look on disk before writing; the view taken now pins what memory must keep. */
        attr_exposure_store_confirm_begin(svc->xs, &xb->cf);
        flags |= ATTR_XB_UNSURE;
        xb->n_unsure++;
    }
    const attr_pexp_t *e = attr_exposure_pending(st, seq);
    attr_xlog_exposure_t *le = &xb->evs[xb->n];
    le->event_id = e->event_id.s;
    le->event_id_len = e->event_id.len;
    le->kind = e->kind;
    le->watch_ms = e->watch_ms;
    le->occur_ns = e->occur_ns;
    le->viewer = attr__log_str(&strs[0]);
    le->creator = attr__log_str(&strs[1]);
    le->note = attr__log_str(&strs[2]);
    le->products = NULL; /* set when written */
    le->n_products = (uint32_t)ev->n_product_ids;
    for (size_t k = 0; k < ev->n_product_ids; k++) {
        xb->prods[xb->n_prods++] = attr__log_str(&strs[3 + k]);
    }
    if (attr_exposure_past_horizon(st, occur, now)) {
        flags |= ATTR_XB_PAST;
    }
    xb->flags[xb->n] = flags;
    xb->seqs[xb->n++] = seq;
    /* Its bytes: the strings (the pending copy; the run's copy later is bounded by
     * --index-run-mb) and the fixed part. */
    size_t bytes = sizeof(attr_pexp_t) + in.event_id_len + in.viewer_len + in.creator_len +
                   in.note_len + ev->n_product_ids * sizeof(attr_xlog_str_t);
    for (size_t k = 0; k < ev->n_product_ids; k++) {
        bytes += strs[3 + k].len;
    }
    xb->bytes += bytes;
    svc->pending_bytes += bytes;
    xb->work += 1 + ev->n_product_ids;
    if (xb->n >= ATTR_FRAME_EVENTS || xb->bytes >= ATTR_FRAME_BYTES ||
        xb->work >= ATTR_FRAME_WORK) {
        attr__xbatch_submit(ing);
    }
}

/** Prefetches what admitting `ev` will look up first (ids of a well-formed event). */
static void attr__prefetch(const attr_state_t *st, const Yaowei__Attribution__V1__ExposureEvent *ev)
{
    if (ev->event_id == NULL || ev->viewer_id == NULL || ev->creator_id == NULL ||
        ev->n_product_ids > ATTR_PRODUCTS_MAX) {
        return;
    }
    attr_exposure_prefetch(st, ev->event_id, ev->viewer_id, ev->creator_id,
                           ev->note_id != NULL ? ev->note_id : "",
                           (const char *const *)ev->product_ids, ev->n_product_ids);
}

static void attr__record_slice(attr_ingest_t *ing);
static void attr__on_slices(uv_timer_t *t);

void attr__on_record_exposures(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordExposuresRequest *req =
        (const Yaowei__Attribution__V1__RecordExposuresRequest *)msg;
    if (attr__events_max(call, req->n_events) != 0) {
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    if (ing == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    int64_t now = attr__now();
    /* The batch's arrays at their size at once: growing them by doubling means big
     * frees and reallocations, which make glibc consolidate its fast bins. */
    size_t n = req->n_events < ATTR_FRAME_EVENTS ? req->n_events : ATTR_FRAME_EVENTS, np = 0;
    for (size_t i = 0; i < n; i++) {
        np += req->events[i]->n_product_ids;
    }
    (void)attr__xbatch_room2(ing, n, np);
    ing->rx = req;
    ing->rx_now = now;
    attr__record_slice(ing);
}

/**
 * Judges the next slice of a RecordExposures call (ATTR_SLICE_WORK), then queues the call
 * for its next slice (attr__on_slices), or waits for its frames in flight (flow control,
 * as a stream does: attr__stream_flow() queues it again), or, once every event is
 * judged, hands the last frame on and finishes as before. The events' order, the
 * summary and what is stored are those of one pass: only the loop gets turns between.
 */
static void attr__record_slice(attr_ingest_t *ing)
{
    const Yaowei__Attribution__V1__RecordExposuresRequest *req = ing->rx;
    if (attr__flow_full(ing)) {
        ing->flow_wait = 1;
        return;
    }
    size_t work = 0, i = ing->rx_next;
    for (; i < req->n_events && work < ATTR_SLICE_WORK; i++) {
        /* Overlap the cache misses of the next events' lookups with this one's work. */
        if (i + ATTR_PREFETCH_AHEAD < req->n_events) {
            attr__prefetch(&ing->svc->st, req->events[i + ATTR_PREFETCH_AHEAD]);
        }
        attr__ingest_exposure(ing, req->events[i], ing->rx_now);
        work += 1 + req->events[i]->n_product_ids;
    }
    ing->rx_next = i;
    if (i < req->n_events) {
        if (attr__flow_full(ing)) {
            ing->flow_wait = 1;
        } else {
            attr__slice_queue(ing);
        }
        return;
    }
    attr__xbatch_submit(ing);
    attr__ingest_end(ing);
}

/** Puts a sliced call at the end of the slice queue and makes sure the timer runs. */
void attr__slice_queue(attr_ingest_t *ing)
{
    attr_svc_t *svc = ing->svc;
    if (ing->queued) {
        return;
    }
    ing->queued = 1;
    ing->slice_next = NULL;
    if (svc->slice_tail != NULL) {
        svc->slice_tail->slice_next = ing;
    } else {
        svc->slice_head = ing;
    }
    svc->slice_tail = ing;
    if (svc->slice_timer_open && !uv_is_active((uv_handle_t *)&svc->slice_timer)) {
        /* Due at once: gRPC's completions that are ready go first (runtime.h). */
        (void)uv_timer_start(&svc->slice_timer, attr__on_slices, 0, 0);
    }
}

/** The slice timer: slices of the queued calls, in turn, for at most ATTR_SLICE_NS. */
static void attr__on_slices(uv_timer_t *t)
{
    attr_svc_t *svc = t->data;
    uint64_t t0 = uv_hrtime();
    while (svc->slice_head != NULL && uv_hrtime() - t0 < ATTR_SLICE_NS) {
        attr_ingest_t *ing = svc->slice_head;
        svc->slice_head = ing->slice_next;
        if (svc->slice_head == NULL) {
            svc->slice_tail = NULL;
        }
        ing->queued = 0;
        attr__record_slice(ing);
    }
    if (svc->slice_head != NULL) {
        (void)uv_timer_start(&svc->slice_timer, attr__on_slices, 0, 0);
    }
}

void attr__on_ingest_exposure(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing != NULL) {
        attr__ingest_exposure(ing, (const Yaowei__Attribution__V1__ExposureEvent *)msg,
                              attr__now());
        attr__stream_flow(ing);
    }
}

void attr__on_ingest_exposures_end(yw_call_t *call)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing == NULL) {
        return;
    }
    /* Also when the client went away: what was admitted is written (a resend then
     * reports duplicates), and the call is finished (the reply is dropped). */
    attr__xbatch_submit(ing);
    attr__ingest_end(ing);
}

uint64_t attr__xbatch_guard(const attr_svc_t *svc)
{
    uint64_t guard = UINT64_MAX;
    for (const attr_xbatch_t *xb = svc->active; xb != NULL; xb = xb->next_active) {
        if (xb->guard < guard) {
            guard = xb->guard;
        }
    }
    return guard;
}
