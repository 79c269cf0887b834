/*
 * attr_service.c — the AttributionService handlers. Each reads like its method's
 * documentation in attribution.proto: validate, do, reply. The plumbing they share:
 *
 *  - Ingestion (attr_ingest_t, one per Record or Ingest call): events are judged one by
 *    one in order (validate, then admit: the duplicate check), the admitted ones are
 *    gathered in batches (exposures: frames of the exposure log; conversions and
 *    refunds: SQLite write jobs), and the IngestSummary goes out when the input has
 *    ended and every batch is durable. Only then do the events become visible
 *    (attr_*_commit), so nothing is reported that a crash could take back.
 *  - Reports read the rollups and materialised credits of attr_state.h; tier reports
 *    first refresh missing or stale tier labels (attr_tier.h).
 *  - Exposures on disk (the log and its index files, attr_xstore.h): an exposure whose
 *    id the Bloom filters are unsure of is looked up there before its batch goes to
 *    the log; a conversion's candidates are looked up there before it is committed.
 *  - Maintenance (a timer): seals idle runs, prunes old log segments (their counts go
 *    to SQLite first), persists new candidate touches.
 *
 * Ownership: per-call contexts are allocated by the handler, hung on the call with
 * yw_call_set_data() and freed by the code that finishes the call. Batches and jobs
 * are freed by their completion callbacks. The service state is freed when the last
 * of its handles and jobs is gone after fini (see attr__unref).
 */
#include "services/attribution/attr_service.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "services/attribution/attr_log.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_store.h"
#include "services/attribution/attr_tier.h"
#include "services/attribution/attr_validate.h"
#include "services/attribution/attr_xstore.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define ATTR_SERVICE_NAME "yaowei.attribution.v1.AttributionService"
#define ATTR_ERRORS_MAX 100
#define ATTR_REASON_MAX 200
/** Events per exposure frame / conversion job while a call is being read. */
#define ATTR_FRAME_EVENTS 2048
#define ATTR_MAINT_MS 5000
#define ATTR_SWEEP_BUDGET 200000
#define ATTR_PAGE_DEFAULT 50
#define ATTR_PAGE_MAX 1000
/** How many events ahead RecordExposures prefetches. */
#define ATTR_PREFETCH_AHEAD 3

typedef struct st_attr_svc_t {
    yw_app_t *app;
    yw_store_t *store;
    attr_state_t st;
    attr_xstore_t *xs;
    attr_tier_t *tier;
    uv_timer_t timer;
    int timer_open;
    char exp_dir[4096];
    int persist_busy, prune_busy, settings_busy;
    int refs; /* open handles, the log, jobs in flight: freed at 0 once stopping */
    int stopping;
    int64_t tier_ttl_ns;
    uint32_t run_exposures;
} attr_svc_t;

static int64_t attr__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * ATTR_NS_PER_S + ts.tv_nsec;
}

static void attr__svc_free(attr_svc_t *svc)
{
    attr_state_free(&svc->st);
    free(svc);
}

static void attr__unref(attr_svc_t *svc)
{
    if (--svc->refs == 0 && svc->stopping) {
        attr__svc_free(svc);
    }
}

static attr_svc_t *attr__svc(const yw_call_t *call)
{
    return yw_app_state(yw_app_from_call(call));
}

static void attr__ts(int64_t ns, Google__Protobuf__Timestamp *ts)
{
    google__protobuf__timestamp__init(ts);
    int64_t s = ns / ATTR_NS_PER_S, n = ns % ATTR_NS_PER_S;
    if (n < 0) {
        s--;
        n += ATTR_NS_PER_S;
    }
    ts->seconds = s;
    ts->nanos = (int32_t)n;
}

static void attr__schedule_persist(attr_svc_t *svc);

/* ---- ingestion ---- */

typedef struct st_attr_ingest_t attr_ingest_t;

/** Flags of an exposure in a batch. */
enum { ATTR_XB_UNSURE = 1, ATTR_XB_PAST = 2, ATTR_XB_DUP = 4 };

/**
 * Exposures admitted by one call, on their way to the log as one frame. The log
 * records are built as events are admitted (from the state's copies of their strings,
 * which stay until commit or abort); `products` pointers are set when the frame is
 * handed to the log, once `prods` stops growing. Ids the Bloom filters were unsure of
 * are looked up on disk first (`cf`); the duplicates found drop out of the batch.
 */
typedef struct st_attr_xbatch_t {
    attr_log_batch_t lb;
    attr_ingest_t *ing;
    uint64_t *seqs;
    attr_log_exposure_t *evs;
    uint32_t *offs; /* the records' offsets in the segment (filled by the writer) */
    uint8_t *flags; /* ATTR_XB_* */
    size_t n, cap;
    attr_log_str_t *prods;
    size_t n_prods, cap_prods;
    size_t n_unsure;
    attr_xconfirm_t cf;
    const attr_pexp_t **cf_events;
    uint8_t *cf_dup;
} attr_xbatch_t;

/**
 * Conversions admitted by one call: written to SQLite while their candidates are looked
 * up in the exposure index files (`jr`; read-only, so it need not wait for the write),
 * committed once both are back.
 */
typedef struct st_attr_cjob_t {
    attr_conv_job_t j;
    attr_ingest_t *ing;
    attr_conv_t **convs;
    attr_conv_row_t *rows;
    size_t n, cap;
    int64_t past;
    attr_xjoin_t jr;
    attr_xjoin_q_t *q;
    int waiting;              /* of the write and the lookup, how many are not back */
    int joined;               /* the lookup ran (jr holds its results) */
    grpc_status_code written; /* the write's status */
} attr_cjob_t;

typedef struct st_attr_rjob_t {
    attr_refund_job_t j;
    attr_ingest_t *ing;
    attr_refund_t **refunds;
    attr_refund_row_t *rows;
    size_t n, cap;
} attr_rjob_t;

struct st_attr_ingest_t {
    attr_svc_t *svc;
    yw_call_t *call;
    int64_t next_index;
    int64_t accepted, duplicates, rejected, past;
    Yaowei__Attribution__V1__IngestError errs[ATTR_ERRORS_MAX];
    char reasons[ATTR_ERRORS_MAX][ATTR_REASON_MAX];
    size_t n_errs;
    int in_flight;
    int ended;
    grpc_status_code fail;
    char fail_msg[256];
    attr_xbatch_t *xb;
    attr_cjob_t *cj;
    attr_rjob_t *rj;
};

static attr_ingest_t *attr__ingest_new(yw_call_t *call)
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

static void attr__ingest_fail(attr_ingest_t *ing, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attr__ingest_fail(attr_ingest_t *ing, grpc_status_code code, const char *fmt, ...)
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

/** Counts a rejected event; keeps the first ATTR_ERRORS_MAX reasons. */
static void attr__reject(attr_ingest_t *ing, int64_t index, const char *reason)
{
    ing->rejected++;
    if (ing->n_errs < ATTR_ERRORS_MAX) {
        Yaowei__Attribution__V1__IngestError *e = &ing->errs[ing->n_errs];
        yaowei__attribution__v1__ingest_error__init(e);
        e->index = index;
        snprintf(ing->reasons[ing->n_errs], ATTR_REASON_MAX, "%s", reason);
        e->reason = ing->reasons[ing->n_errs];
        ing->n_errs++;
    }
}

/** Sends the summary (or the failure) once the input ended and nothing is in flight. */
static void attr__ingest_maybe_finish(attr_ingest_t *ing)
{
    if (!ing->ended || ing->in_flight > 0) {
        return;
    }
    yw_call_t *call = ing->call;
    if (ing->fail != GRPC_STATUS_OK) {
        yw_call_finish(call, ing->fail, "%s", ing->fail_msg);
    } else {
        Yaowei__Attribution__V1__IngestSummary sum;
        yaowei__attribution__v1__ingest_summary__init(&sum);
        Yaowei__Attribution__V1__IngestError *ptrs[ATTR_ERRORS_MAX];
        for (size_t i = 0; i < ing->n_errs; i++) {
            ptrs[i] = &ing->errs[i];
        }
        sum.accepted = ing->accepted;
        sum.duplicates = ing->duplicates;
        sum.rejected = ing->rejected;
        sum.n_errors = ing->n_errs;
        sum.errors = ptrs;
        sum.past_join_horizon = ing->past;
        (void)yw_call_reply(call, &sum.base);
    }
    yw_call_set_data(call, NULL);
    free(ing);
}

/* -- exposures -- */

static void attr__xbatch_free(attr_xbatch_t *xb)
{
    if (xb->cf.view != NULL) {
        attr_xstore_confirm_cancel(xb->ing->svc->xs, &xb->cf);
    }
    free(xb->seqs);
    free(xb->evs);
    free(xb->offs);
    free(xb->flags);
    free(xb->prods);
    free(xb->cf_events);
    free(xb->cf_dup);
    free(xb);
}

/** The end of a batch's way (written, failed or all duplicates): the call may finish. */
static void attr__xbatch_done(attr_xbatch_t *xb)
{
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    attr__xbatch_free(xb);
    ing->in_flight--;
    svc->refs--;
    attr__schedule_persist(svc);
    attr__ingest_maybe_finish(ing);
}

/** Forgets every exposure of a batch that will not be written. */
static void attr__xbatch_abort(attr_xbatch_t *xb)
{
    for (size_t i = 0; i < xb->n; i++) {
        attr_exposure_abort(&xb->ing->svc->st, xb->seqs[i]);
    }
}

static void attr__on_xbatch(attr_log_batch_t *lb, int status)
{
    attr_xbatch_t *xb = lb->data;
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    int64_t now = attr__now();
    if (status == 0) {
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
            yw_log(YW_LOG_ERROR, "out of memory applying exposures: reports may lag until "
                                 "restart (the exposures are durable)");
        }
        ing->accepted += (int64_t)xb->n;
        attr_xstore_committed(svc->xs, lb);
    } else {
        attr__xbatch_abort(xb);
        yw_log(YW_LOG_ERROR, "exposure log: cannot write %zu exposures: %s", xb->n,
               strerror(-status));
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE,
                          "exposure log: cannot write (%s); events of this call may be "
                          "partly stored: resend it (duplicates are detected)",
                          strerror(-status));
    }
    attr__xbatch_done(xb);
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
    int rc = attr_xstore_append(svc->xs, &xb->lb);
    if (rc != 0) {
        attr__xbatch_abort(xb);
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "exposure log: cannot queue a batch: %s",
                          strerror(-rc));
        attr__xbatch_done(xb);
    }
}

/** The disk said which unsure ids are stored: those are duplicates; write the rest. */
static void attr__on_confirmed(attr_xconfirm_t *cf)
{
    attr_xbatch_t *xb = cf->data;
    attr_ingest_t *ing = xb->ing;
    attr_state_t *st = &ing->svc->st;
    if (cf->status != 0) {
        attr__xbatch_abort(xb);
        yw_log(YW_LOG_ERROR, "cannot look up event ids in the exposure index: %s",
               strerror(-cf->status));
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE,
                          "exposure index: cannot check event ids (%s); events of this call "
                          "may be partly stored: resend it (duplicates are detected)",
                          strerror(-cf->status));
        attr__xbatch_done(xb);
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
    attr__xbatch_write(xb);
}

/** Hands the batch being filled on: to the disk check if it has unsure ids, else the log. */
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
    if (xb->n_unsure == 0) {
        attr__xbatch_write(xb);
        return;
    }
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
        rc = attr_xstore_confirm(svc->xs, &xb->cf);
    }
    if (rc != 0) {
        attr__xbatch_abort(xb);
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "exposure index: cannot check ids: %s",
                          strerror(-rc));
        attr__xbatch_done(xb);
    }
}

/** Room for one more exposure with `np` products in the batch being filled. */
static attr_xbatch_t *attr__xbatch_room(attr_ingest_t *ing, size_t np)
{
    attr_xbatch_t *xb = ing->xb;
    if (xb == NULL) {
        if ((xb = calloc(1, sizeof *xb)) == NULL) {
            return NULL;
        }
        xb->ing = ing;
        ing->xb = xb;
    }
    if (xb->n == xb->cap) {
        size_t nc = xb->cap ? xb->cap * 2 : 256;
        uint64_t *seqs = realloc(xb->seqs, nc * sizeof *seqs);
        if (seqs == NULL) {
            return NULL;
        }
        xb->seqs = seqs;
        attr_log_exposure_t *evs = realloc(xb->evs, nc * sizeof *evs);
        if (evs == NULL) {
            return NULL;
        }
        xb->evs = evs;
        uint32_t *offs = realloc(xb->offs, nc * sizeof *offs);
        if (offs == NULL) {
            return NULL;
        }
        xb->offs = offs;
        uint8_t *flags = realloc(xb->flags, nc * sizeof *flags);
        if (flags == NULL) {
            return NULL;
        }
        xb->flags = flags;
        xb->cap = nc;
    }
    if (xb->n_prods + np > xb->cap_prods) {
        size_t nc = xb->cap_prods ? xb->cap_prods * 2 : 512;
        while (nc < xb->n_prods + np) {
            nc *= 2;
        }
        attr_log_str_t *prods = realloc(xb->prods, nc * sizeof *prods);
        if (prods == NULL) {
            return NULL;
        }
        xb->prods = prods;
        xb->cap_prods = nc;
    }
    return xb;
}

static attr_log_str_t attr__log_str(const attr_interned_t *in)
{
    attr_log_str_t s = {in->s, in->len, in->id};
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
        attr_xstore_confirm_begin(svc->xs, &xb->cf);
        flags |= ATTR_XB_UNSURE;
        xb->n_unsure++;
    }
    const attr_pexp_t *e = attr_exposure_pending(st, seq);
    attr_log_exposure_t *le = &xb->evs[xb->n];
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
    if (xb->n >= ATTR_FRAME_EVENTS) {
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

static void attr__on_record_exposures(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordExposuresRequest *req =
        (const Yaowei__Attribution__V1__RecordExposuresRequest *)msg;
    if (req->n_events > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                       ATTR_BATCH_MAX, req->n_events);
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    if (ing == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    int64_t now = attr__now();
    for (size_t i = 0; i < req->n_events; i++) {
        /* Overlap the cache misses of the next events' lookups with this one's work. */
        if (i + ATTR_PREFETCH_AHEAD < req->n_events) {
            attr__prefetch(&ing->svc->st, req->events[i + ATTR_PREFETCH_AHEAD]);
        }
        attr__ingest_exposure(ing, req->events[i], now);
    }
    attr__xbatch_submit(ing);
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

static attr_ingest_t *attr__stream_ingest(yw_call_t *call)
{
    attr_ingest_t *ing = yw_call_data(call);
    if (ing == NULL && (ing = attr__ingest_new(call)) == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    return ing;
}

static void attr__on_ingest_exposure(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing != NULL) {
        attr__ingest_exposure(ing, (const Yaowei__Attribution__V1__ExposureEvent *)msg,
                              attr__now());
    }
}

static void attr__on_ingest_exposures_end(yw_call_t *call)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing == NULL) {
        return;
    }
    /* Also when the client went away: what was admitted is written (a resend then
     * reports duplicates), and the call is finished (the reply is dropped). */
    attr__xbatch_submit(ing);
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

/* -- conversions -- */

static void attr__cjob_free(attr_cjob_t *cj)
{
    attr_xjoin_free(&cj->jr);
    free(cj->q);
    free(cj->convs);
    free(cj->rows);
    free(cj);
}

/** Both the write and the lookup are back: commit (or forget) the job's conversions. */
static void attr__cjob_finish(attr_cjob_t *cj)
{
    attr_ingest_t *ing = cj->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    if (cj->written != GRPC_STATUS_OK) {
        for (size_t i = 0; i < cj->n; i++) {
            attr_conversion_abort(st, cj->convs[i]);
        }
        attr__ingest_fail(ing, cj->written, "conversions: %s", cj->j.job.errmsg);
    } else {
        /* Durable. Before it is visible: its touches in the index files. */
        int64_t now = attr__now();
        attr_xjoin_t *jr = &cj->jr;
        if (cj->joined && jr->status != 0) {
            /* Credited from what memory holds; a restart looks them up again. */
            yw_log(YW_LOG_ERROR,
                   "cannot look up the touches of %zu orders in the exposure "
                   "index (credited from the exposures in memory only until "
                   "restart): %s",
                   cj->n, strerror(-jr->status));
        }
        for (size_t i = 0; i < cj->n; i++) {
            size_t nc = 0;
            const attr_xcand_t *cs =
                cj->joined && jr->status == 0 ? attr_xjoin_cands(jr, i, &nc) : NULL;
            for (size_t k = 0; k < nc; k++) {
                const attr_xcand_t *c = &cs[k];
                if (attr_exposure_past_horizon(st, c->occur_ns, now)) {
                    continue;
                }
                if (attr_conversion_add_cand(st, cj->convs[i], c->event_id, c->creator,
                                             c->creator_len, c->note, c->note_len, c->kind,
                                             c->watch_ms, c->occur_ns, 0) != 0) {
                    yw_log(YW_LOG_ERROR, "out of memory adding touches to order %s",
                           cj->convs[i]->order_id);
                }
            }
            if (attr_conversion_commit(st, cj->convs[i], now) != 0) {
                yw_log(YW_LOG_ERROR, "out of memory crediting order %s", cj->convs[i]->order_id);
            }
        }
        ing->accepted += (int64_t)cj->n;
        ing->past += cj->past;
    }
    attr__cjob_free(cj);
    ing->in_flight--;
    svc->refs--;
    attr__schedule_persist(svc);
    attr__ingest_maybe_finish(ing);
}

static void attr__on_cjoined(attr_xjoin_t *jr)
{
    attr_cjob_t *cj = jr->data;
    cj->joined = 1;
    if (--cj->waiting == 0) {
        attr__cjob_finish(cj);
    }
}

static void attr__on_cjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_cjob_t *cj = (attr_cjob_t *)job;
    cj->written = status;
    if (--cj->waiting == 0) {
        attr__cjob_finish(cj);
    }
}

/** Starts looking up the job's conversions in the index files; 0 when on its way. */
static int attr__cjob_join(attr_cjob_t *cj)
{
    attr_svc_t *svc = cj->ing->svc;
    attr_state_t *st = &svc->st;
    if ((cj->q = calloc(cj->n, sizeof *cj->q)) == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cj->n; i++) {
        const attr_conv_t *c = cj->convs[i];
        size_t vlen, plen;
        attr_xjoin_q_t *q = &cj->q[i];
        q->vp_hash = c->vp_hash;
        q->viewer = attr_intern_str(&st->viewers, c->viewer, &vlen);
        q->product = attr_intern_str(&st->products, c->product, &plen);
        q->viewer_len = (uint32_t)vlen;
        q->product_len = (uint32_t)plen;
        q->occur_ns = c->occur_ns;
    }
    cj->jr.n = cj->n;
    cj->jr.q = cj->q;
    cj->jr.done = attr__on_cjoined;
    cj->jr.data = cj;
    return attr_xstore_join(svc->xs, &cj->jr);
}

static void attr__cjob_submit(attr_ingest_t *ing)
{
    attr_cjob_t *cj = ing->cj;
    ing->cj = NULL;
    if (cj == NULL) {
        return;
    }
    attr_svc_t *svc = ing->svc;
    cj->j.job.work = attr_store_put_conversions;
    cj->j.job.done = attr__on_cjob;
    cj->j.rows = cj->rows;
    cj->j.n = cj->n;
    cj->j.currency = svc->st.settings.currency;
    cj->j.ingest_ns = attr__now();
    cj->waiting = 1;
    int rc = yw_store_write(svc->store, &cj->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < cj->n; i++) {
            attr_conversion_abort(&svc->st, cj->convs[i]);
        }
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "conversions: cannot queue a write: %s",
                          strerror(-rc));
        attr__cjob_free(cj);
        return;
    }
    ing->in_flight++;
    svc->refs++;
    /* Without an index file, the runs in memory hold every exposure: nothing to look up. */
    if (attr_xstore_has_files(svc->xs)) {
        cj->waiting++;
        if ((rc = attr__cjob_join(cj)) != 0) {
            cj->waiting--;
            yw_log(YW_LOG_ERROR,
                   "cannot look up the touches of %zu orders in the exposure "
                   "index (credited from the exposures in memory only until "
                   "restart): %s",
                   cj->n, strerror(-rc));
        }
    }
}

static void attr__ingest_conversion(attr_ingest_t *ing,
                                    const Yaowei__Attribution__V1__ConversionEvent *ev, int64_t now)
{
    int64_t index = ing->next_index++;
    attr_state_t *st = &ing->svc->st;
    char err[ATTR_REASON_MAX];
    int64_t occur;
    if (attr_validate_conversion(ev, st->settings.currency, now, &occur, err, sizeof err) != 0) {
        attr__reject(ing, index, err);
        return;
    }
    attr_conversion_in_t in = {
        .order_id = ev->order_id,
        .order_id_len = strlen(ev->order_id),
        .viewer_id = ev->viewer_id,
        .viewer_len = strlen(ev->viewer_id),
        .product_id = ev->product_id,
        .product_len = strlen(ev->product_id),
        .quantity = ev->quantity,
        .amount_minor = ev->amount_minor,
        .occur_ns = occur,
    };
    attr_conv_t *c = NULL;
    int rc = attr_conversion_admit(st, &in, &c);
    if (rc == ATTR_DUPLICATE) {
        ing->duplicates++;
        return;
    }
    if (rc != ATTR_ADMITTED) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_cjob_t *cj = ing->cj;
    if (cj == NULL && (cj = ing->cj = calloc(1, sizeof *cj)) != NULL) {
        cj->ing = ing;
    }
    if (cj != NULL && cj->n == cj->cap) {
        size_t nc = cj->cap ? cj->cap * 2 : 64;
        attr_conv_t **cv = realloc(cj->convs, nc * sizeof *cv);
        if (cv != NULL) {
            cj->convs = cv;
        }
        attr_conv_row_t *rw = cv ? realloc(cj->rows, nc * sizeof *rw) : NULL;
        if (rw != NULL) {
            cj->rows = rw;
            cj->cap = nc;
        }
    }
    if (cj == NULL || cj->n == cj->cap) {
        attr_conversion_abort(st, c);
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_conv_row_t *row = &cj->rows[cj->n];
    row->order_id = c->order_id;
    row->viewer_id = attr_intern_str(&st->viewers, c->viewer, NULL);
    row->product_id = attr_intern_str(&st->products, c->product, NULL);
    row->quantity = c->quantity;
    row->amount_minor = c->amount;
    row->occur_ns = c->occur_ns;
    cj->convs[cj->n++] = c;
    if (attr_conversion_past_horizon(st, occur, now)) {
        cj->past++;
    }
    if (cj->n >= ATTR_FRAME_EVENTS) {
        attr__cjob_submit(ing);
    }
}

static void attr__on_record_conversions(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordConversionsRequest *req =
        (const Yaowei__Attribution__V1__RecordConversionsRequest *)msg;
    if (req->n_events > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                       ATTR_BATCH_MAX, req->n_events);
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    if (ing == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    int64_t now = attr__now();
    for (size_t i = 0; i < req->n_events; i++) {
        attr__ingest_conversion(ing, req->events[i], now);
    }
    attr__cjob_submit(ing);
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

static void attr__on_ingest_conversion(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing != NULL) {
        attr__ingest_conversion(ing, (const Yaowei__Attribution__V1__ConversionEvent *)msg,
                                attr__now());
    }
}

static void attr__on_ingest_conversions_end(yw_call_t *call)
{
    attr_ingest_t *ing = attr__stream_ingest(call);
    if (ing == NULL) {
        return;
    }
    attr__cjob_submit(ing);
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

/* -- refunds -- */

static void attr__on_rjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_rjob_t *rj = (attr_rjob_t *)job;
    attr_ingest_t *ing = rj->ing;
    attr_svc_t *svc = ing->svc;
    if (status == GRPC_STATUS_OK) {
        for (size_t i = 0; i < rj->n; i++) {
            if (attr_refund_commit(&svc->st, rj->refunds[i]) != 0) {
                yw_log(YW_LOG_ERROR, "out of memory applying refund %s", rj->refunds[i]->refund_id);
            }
        }
        ing->accepted += (int64_t)rj->n;
    } else {
        for (size_t i = 0; i < rj->n; i++) {
            attr_refund_abort(&svc->st, rj->refunds[i]);
        }
        attr__ingest_fail(ing, status, "refunds: %s", job->errmsg);
    }
    free(rj->refunds);
    free(rj->rows);
    free(rj);
    ing->in_flight--;
    svc->refs--;
    attr__ingest_maybe_finish(ing);
}

static void attr__on_record_refunds(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordRefundsRequest *req =
        (const Yaowei__Attribution__V1__RecordRefundsRequest *)msg;
    if (req->n_events > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                       ATTR_BATCH_MAX, req->n_events);
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    attr_rjob_t *rj = calloc(1, sizeof *rj);
    size_t cap = req->n_events ? req->n_events : 1;
    if (ing == NULL || rj == NULL || (rj->refunds = malloc(cap * sizeof *rj->refunds)) == NULL ||
        (rj->rows = malloc(cap * sizeof *rj->rows)) == NULL) {
        if (rj != NULL) {
            free(rj->refunds);
        }
        free(rj);
        if (ing != NULL) {
            yw_call_set_data(call, NULL);
            free(ing);
        }
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    int64_t now = attr__now();
    for (size_t i = 0; i < req->n_events; i++) {
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        int64_t index = ing->next_index++;
        char err[ATTR_REASON_MAX];
        int64_t occur;
        if (attr_validate_refund(ev, now, &occur, err, sizeof err) != 0) {
            attr__reject(ing, index, err);
            continue;
        }
        attr_refund_t *r = NULL;
        int64_t left = 0;
        /* In order: an earlier refund of this batch counts against what is left. */
        int rc = attr_refund_admit(st, ev->refund_id, strlen(ev->refund_id), ev->order_id,
                                   strlen(ev->order_id), ev->amount_minor, occur, &r, &left);
        switch (rc) {
        case ATTR_ADMITTED:
            rj->refunds[rj->n] = r;
            rj->rows[rj->n].refund_id = r->refund_id;
            rj->rows[rj->n].order_id = r->conv->order_id;
            rj->rows[rj->n].amount_minor = r->amount;
            rj->rows[rj->n].occur_ns = r->occur_ns;
            rj->n++;
            break;
        case ATTR_DUPLICATE:
            ing->duplicates++;
            break;
        case ATTR_UNKNOWN_ORDER:
            snprintf(err, sizeof err, "order_id: no conversion has order_id \"%.64s\"",
                     ev->order_id);
            attr__reject(ing, index, err);
            break;
        case ATTR_TOO_LARGE:
            snprintf(err, sizeof err,
                     "amount_minor: %lld is more than what is left of order \"%.64s\" (%lld)",
                     (long long)ev->amount_minor, ev->order_id, (long long)left);
            attr__reject(ing, index, err);
            break;
        default:
            attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
    }
    ing->ended = 1;
    if (rj->n == 0) {
        free(rj->refunds);
        free(rj->rows);
        free(rj);
        attr__ingest_maybe_finish(ing);
        return;
    }
    rj->ing = ing;
    rj->j.job.work = attr_store_put_refunds;
    rj->j.job.done = attr__on_rjob;
    rj->j.rows = rj->rows;
    rj->j.n = rj->n;
    rj->j.ingest_ns = now;
    int rc = yw_store_write(svc->store, &rj->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < rj->n; i++) {
            attr_refund_abort(st, rj->refunds[i]);
        }
        free(rj->refunds);
        free(rj->rows);
        free(rj);
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "refunds: cannot queue a write: %s",
                          strerror(-rc));
        attr__ingest_maybe_finish(ing);
        return;
    }
    ing->in_flight++;
    svc->refs++;
}

/* ---- candidate persistence ---- */

typedef struct st_attr_pjob_t {
    attr_touch_job_t j;
    attr_svc_t *svc;
    attr_conv_t **convs;
    uint32_t *upto;
    size_t n_convs;
    attr_touch_row_t *rows;
} attr_pjob_t;

static void attr__on_pjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_pjob_t *pj = (attr_pjob_t *)job;
    attr_svc_t *svc = pj->svc;
    for (size_t i = 0; i < pj->n_convs; i++) {
        if (status == GRPC_STATUS_OK) {
            attr_state_mark_persisted(pj->convs[i], pj->upto[i]);
        } else {
            (void)attr_state_repersist(&svc->st, pj->convs[i]);
        }
    }
    if (status != GRPC_STATUS_OK) {
        yw_log(YW_LOG_WARN, "cannot persist candidate touches (will retry): %s", job->errmsg);
    }
    free(pj->convs);
    free(pj->upto);
    free(pj->rows);
    free(pj);
    svc->persist_busy = 0;
    svc->refs--;
    if (svc->refs == 0 && svc->stopping) {
        attr__svc_free(svc);
        return;
    }
    if (status == GRPC_STATUS_OK) {
        attr__schedule_persist(svc);
    }
}

/** Writes the candidate touches not yet in the database, one job at a time. */
static void attr__schedule_persist(attr_svc_t *svc)
{
    if (svc->persist_busy || svc->stopping || svc->st.n_persist == 0) {
        return;
    }
    attr_state_t *st = &svc->st;
    attr_pjob_t *pj = calloc(1, sizeof *pj);
    if (pj == NULL) {
        return;
    }
    if (attr_state_take_persist(st, &pj->convs, &pj->n_convs) != 0) {
        free(pj);
        return;
    }
    size_t rows = 0;
    for (size_t i = 0; i < pj->n_convs; i++) {
        for (uint32_t k = 0; k < pj->convs[i]->n_cands; k++) {
            rows += !pj->convs[i]->cands[k].persisted;
        }
    }
    pj->upto = malloc((pj->n_convs ? pj->n_convs : 1) * sizeof *pj->upto);
    pj->rows = malloc((rows ? rows : 1) * sizeof *pj->rows);
    if (pj->upto == NULL || pj->rows == NULL) {
        for (size_t i = 0; i < pj->n_convs; i++) {
            (void)attr_state_repersist(st, pj->convs[i]);
        }
        free(pj->convs);
        free(pj->upto);
        free(pj->rows);
        free(pj);
        return;
    }
    size_t r = 0;
    for (size_t i = 0; i < pj->n_convs; i++) {
        attr_conv_t *c = pj->convs[i];
        pj->upto[i] = c->n_cands;
        for (uint32_t k = 0; k < c->n_cands; k++) {
            const attr_cand_t *t = &c->cands[k];
            if (t->persisted) {
                continue;
            }
            attr_touch_row_t *row = &pj->rows[r++];
            row->order_id = c->order_id;
            row->event_id = t->event_id;
            row->creator_id = attr_intern_str(&st->creators, t->creator, NULL);
            row->note_id = attr_intern_str(&st->notes, t->note, NULL);
            row->kind = t->kind;
            row->watch_ms = t->watch_ms;
            row->occur_ns = t->occur_ns;
        }
    }
    pj->svc = svc;
    pj->j.job.work = attr_store_put_touches;
    pj->j.job.done = attr__on_pjob;
    pj->j.rows = pj->rows;
    pj->j.n = r;
    if (yw_store_write(svc->store, &pj->j.job) != 0) {
        for (size_t i = 0; i < pj->n_convs; i++) {
            (void)attr_state_repersist(st, pj->convs[i]);
        }
        free(pj->convs);
        free(pj->upto);
        free(pj->rows);
        free(pj);
        return;
    }
    svc->persist_busy = 1;
    svc->refs++;
}

/* ---- ExplainConversion ---- */

static void attr__on_explain(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__ExplainConversionRequest *req =
        (const Yaowei__Attribution__V1__ExplainConversionRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    if (req->order_id == NULL || req->order_id[0] == '\0') {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "order_id: is required");
        return;
    }
    int model = attr_model_resolve((int)req->model, st->settings.default_model);
    if (model < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "model: not an AttributionModel value: %d", (int)req->model);
        return;
    }
    const attr_conv_t *c = attr_conversion_find(st, req->order_id, strlen(req->order_id));
    if (c == NULL) {
        yw_call_finish(call, GRPC_STATUS_NOT_FOUND,
                       "order_id: no conversion has order_id \"%.64s\"", req->order_id);
        return;
    }
    size_t n = c->n_elig;
    Yaowei__Attribution__V1__AttributedTouch *touches = calloc(n ? n : 1, sizeof *touches);
    Yaowei__Attribution__V1__AttributedTouch **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    Google__Protobuf__Timestamp *times = calloc(n ? n : 1, sizeof *times);
    if (touches == NULL || ptrs == NULL || times == NULL) {
        free(touches);
        free(ptrs);
        free(times);
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const attr_cand_t *t = &c->cands[c->elig[i]];
        Yaowei__Attribution__V1__AttributedTouch *a = &touches[i];
        yaowei__attribution__v1__attributed_touch__init(a);
        a->event_id = t->event_id;
        a->creator_id = (char *)attr_intern_str(&st->creators, t->creator, NULL);
        a->note_id = (char *)attr_intern_str(&st->notes, t->note, NULL);
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
    resp.currency = st->settings.currency;
    resp.model = (Yaowei__Attribution__V1__AttributionModel)model;
    resp.attributed = n > 0;
    resp.n_touches = n;
    resp.touches = ptrs;
    resp.viewer_id = (char *)attr_intern_str(&st->viewers, c->viewer, NULL);
    resp.product_id = (char *)attr_intern_str(&st->products, c->product, NULL);
    resp.occur_time = &occur;
    resp.gross_amount_minor = c->amount;
    resp.refunded_minor = c->refunded;
    resp.settings_version = c->settings_version;
    (void)yw_call_reply(call, &resp.base);
    free(touches);
    free(ptrs);
    free(times);
}

/* ---- reports ---- */

static double attr__credit(int64_t units)
{
    return (double)units / (double)ATTR_CREDIT_ONE;
}

static double attr__per(double num, int64_t impressions, double scale)
{
    return impressions > 0 ? num * scale / (double)impressions : 0.0;
}

static void attr__on_creator_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetCreatorReportRequest *req =
        (const Yaowei__Attribution__V1__GetCreatorReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    char err[256];
    int32_t d0, d1;
    if (req->creator_id == NULL || req->creator_id[0] == '\0') {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "creator_id: is required");
        return;
    }
    if (attr_validate_range(req->start_time, req->end_time, &d0, &d1, err, sizeof err) !=
        GRPC_STATUS_OK) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    int model = attr_model_resolve((int)req->model, st->settings.default_model);
    if (model < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "model: not an AttributionModel value: %d", (int)req->model);
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
    r.impressions = s.impressions;
    r.views = s.views;
    r.clicks = s.clicks;
    r.attributed_conversions = attr__credit(s.credit);
    r.attributed_gmv_minor = s.gmv;
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
    uint32_t query_check;
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
    int64_t creators[NT] = {0}, impr[NT] = {0}, views[NT] = {0}, clicks[NT] = {0}, credit[NT] = {0},
            gmv[NT] = {0};
    int64_t all_impr = 0, all_gmv = 0, unlabeled = 0;
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
        row->impressions = impr[t];
        row->views = views[t];
        row->clicks = clicks[t];
        row->impression_share = all_impr > 0 ? (double)impr[t] / (double)all_impr : 0.0;
        row->attributed_conversions = attr__credit(credit[t]);
        row->attributed_gmv_minor = gmv[t];
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
    attr_state_unattributed(st, r->d0, r->d1, &rep.unattributed_conversions,
                            &rep.unattributed_gmv_minor);
    rep.currency = st->settings.currency;
    rep.unlabeled_creators = unlabeled;
    rep.tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
    (void)yw_call_reply(r->call, &rep.base);
    attr__report_free(r);
}

static void attr__on_tier_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__GetTierReportRequest *req =
        (const Yaowei__Attribution__V1__GetTierReportRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    char err[256];
    int32_t d0, d1;
    if (attr_validate_range(req->start_time, req->end_time, &d0, &d1, err, sizeof err) !=
        GRPC_STATUS_OK) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    int model = attr_model_resolve((int)req->model, svc->st.settings.default_model);
    if (model < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "model: not an AttributionModel value: %d", (int)req->model);
        return;
    }
    attr_report_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->svc = svc;
    r->call = call;
    r->d0 = d0;
    r->d1 = d1;
    r->model = model;
    r->finish = attr__finish_tier_report;
    yw_call_set_data(call, r);
    if (attr__collect(&svc->st, r) != 0) {
        attr__report_free(r);
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr__with_labels(r);
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

static void attr__finish_top(attr_report_t *r, const char *tier_error)
{
    (void)tier_error; /* unlabelled creators are under TIER_UNSPECIFIED; logged */
    attr_state_t *st = &r->svc->st;
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
        yw_call_finish(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__report_free(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const attr_entry_t *e = &r->entries[from + i];
        Yaowei__Attribution__V1__CreatorRow *row = &rows[i];
        yaowei__attribution__v1__creator_row__init(row);
        row->creator_id = (char *)e->name;
        row->tier = (Yaowei__Tier__V1__Tier)attr_tier_of(st, e->creator);
        row->impressions = e->s.impressions;
        row->views = e->s.views;
        row->clicks = e->s.clicks;
        row->attributed_conversions = attr__credit(e->s.credit);
        row->attributed_gmv_minor = e->s.gmv;
        row->gpm = e->gpm;
        row->conversion_rate = attr__per(attr__credit(e->s.credit), e->s.impressions, 1.0);
        ptrs[i] = row;
    }
    char token[64] = "";
    if (to < k) {
        snprintf(token, sizeof token, "%016llx%08x", (unsigned long long)to, r->query_check);
    }
    Yaowei__Attribution__V1__ListTopCreatorsResponse resp;
    yaowei__attribution__v1__list_top_creators_response__init(&resp);
    resp.n_creators = n;
    resp.creators = ptrs;
    resp.next_page_token = token;
    resp.currency = st->settings.currency;
    (void)yw_call_reply(r->call, &resp.base);
    free(rows);
    free(ptrs);
    attr__report_free(r);
}

static void attr__on_top_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__ListTopCreatorsRequest *req =
        (const Yaowei__Attribution__V1__ListTopCreatorsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    char err[256];
    int32_t d0, d1;
    if (attr_validate_range(req->start_time, req->end_time, &d0, &d1, err, sizeof err) !=
        GRPC_STATUS_OK) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    int model = attr_model_resolve((int)req->model, svc->st.settings.default_model);
    if (model < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "model: not an AttributionModel value: %d", (int)req->model);
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
    size_t page = req->page_size == 0              ? ATTR_PAGE_DEFAULT
                  : req->page_size > ATTR_PAGE_MAX ? ATTR_PAGE_MAX
                                                   : (size_t)req->page_size;
    /* The token names the query it belongs to; another query's token is refused. */
    int64_t q[5] = {d0, d1, model, order == 2 ? 2 : 1, mask};
    uint32_t check = (uint32_t)attr_hash_bytes(q, sizeof q);
    size_t offset = 0;
    if (req->page_token != NULL && req->page_token[0] != '\0') {
        unsigned long long off = 0;
        unsigned int chk = 0;
        char tail = 0;
        if (strlen(req->page_token) != 24 ||
            sscanf(req->page_token, "%16llx%8x%c", &off, &chk, &tail) != 2 || chk != check) {
            yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "page_token: not a next_page_token of this query (range, model, "
                           "tiers and order_by must stay the same)");
            return;
        }
        offset = (size_t)off;
    }
    attr_report_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->svc = svc;
    r->call = call;
    r->d0 = d0;
    r->d1 = d1;
    r->model = model;
    r->tiers_mask = mask;
    r->order_by = order;
    r->offset = offset;
    r->page_size = page;
    r->query_check = check;
    r->finish = attr__finish_top;
    yw_call_set_data(call, r);
    if (attr__collect(&svc->st, r) != 0) {
        attr__report_free(r);
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr__with_labels(r);
}

/* ---- settings ---- */

static void attr__settings_msg(const attr_settings_t *s,
                               Yaowei__Attribution__V1__AttributionSettings *m,
                               Google__Protobuf__Duration d[4], Google__Protobuf__Timestamp *ts,
                               char currency[4])
{
    yaowei__attribution__v1__attribution_settings__init(m);
    int64_t v[4] = {s->click_window_ns, s->view_window_ns, s->half_life_ns, s->late_window_ns};
    for (int i = 0; i < 4; i++) {
        google__protobuf__duration__init(&d[i]);
        d[i].seconds = v[i] / ATTR_NS_PER_S;
        d[i].nanos = (int32_t)(v[i] % ATTR_NS_PER_S);
    }
    m->click_window = &d[0];
    m->view_window = &d[1];
    m->time_decay_half_life = &d[2];
    m->late_window = &d[3];
    m->engaged_view_ms = s->engaged_view_ms;
    m->default_model = (Yaowei__Attribution__V1__AttributionModel)s->default_model;
    memcpy(currency, s->currency, 4);
    m->currency = currency;
    m->version = s->version;
    attr__ts(s->update_ns, ts);
    m->update_time = ts;
}

static void attr__reply_settings(yw_call_t *call, const attr_settings_t *s)
{
    Yaowei__Attribution__V1__AttributionSettings m;
    Google__Protobuf__Duration d[4];
    Google__Protobuf__Timestamp ts;
    char cur[4];
    attr__settings_msg(s, &m, d, &ts, cur);
    (void)yw_call_reply(call, &m.base);
}

static void attr__on_get_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    attr__reply_settings(call, &attr__svc(call)->st.settings);
}

typedef struct st_attr_sjob_t {
    attr_settings_job_t j;
    attr_svc_t *svc;
    yw_call_t *call;
} attr_sjob_t;

static void attr__on_sjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_sjob_t *sj = (attr_sjob_t *)job;
    attr_svc_t *svc = sj->svc;
    svc->settings_busy = 0;
    svc->refs--;
    if (status != GRPC_STATUS_OK) {
        yw_call_finish(sj->call, status, "settings: %s", job->errmsg);
        free(sj);
        return;
    }
    /* Durable: now restate every conversion under the new settings. */
    int64_t horizon_before = attr_settings_horizon(&svc->st.settings);
    if (attr_state_set_settings(&svc->st, &sj->j.settings) != 0) {
        yw_log(YW_LOG_ERROR, "out of memory restating conversions under settings v%lld",
               (long long)sj->j.settings.version);
    }
    yw_log(YW_LOG_INFO,
           "settings v%lld in force; %zu conversions restated; join horizon %llds "
           "(was %llds)",
           (long long)sj->j.settings.version, svc->st.n_convs,
           (long long)(attr_settings_horizon(&sj->j.settings) / ATTR_NS_PER_S),
           (long long)(horizon_before / ATTR_NS_PER_S));
    attr__reply_settings(sj->call, &svc->st.settings);
    free(sj);
}

static void attr__on_update_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req =
        (const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    attr_settings_t next;
    unsigned changed = 0;
    char err[256];
    grpc_status_code code =
        attr_settings_apply(req, &st->settings, &next, &changed, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_finish(call, code, "%s", err);
        return;
    }
    if (strcmp(next.currency, st->settings.currency) != 0 && st->orders.count > 0) {
        yw_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                       "settings.currency: cannot change from %s while conversions are stored",
                       st->settings.currency);
        return;
    }
    if (svc->settings_busy) {
        yw_call_finish(call, GRPC_STATUS_ABORTED,
                       "settings: another update is being written; retry");
        return;
    }
    attr_sjob_t *sj = calloc(1, sizeof *sj);
    if (sj == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    next.version = st->settings.version + 1;
    next.update_ns = attr__now();
    sj->svc = svc;
    sj->call = call;
    sj->j.settings = next;
    sj->j.job.work = attr_store_put_settings;
    sj->j.job.done = attr__on_sjob;
    int rc = yw_store_write(svc->store, &sj->j.job);
    if (rc != 0) {
        free(sj);
        yw_call_finish(call, GRPC_STATUS_UNAVAILABLE, "settings: cannot queue a write: %s",
                       strerror(-rc));
        return;
    }
    svc->settings_busy = 1;
    svc->refs++;
}

/* ---- maintenance ---- */

typedef struct st_attr_prune_t {
    attr_prune_job_t j;
    attr_svc_t *svc;
} attr_prune_t;

static void attr__on_prune(yw_store_job_t *job, grpc_status_code status)
{
    attr_prune_t *p = (attr_prune_t *)job;
    attr_svc_t *svc = p->svc;
    svc->prune_busy = 0;
    if (status == GRPC_STATUS_OK) {
        yw_log(YW_LOG_INFO, "pruned exposure log segment %llu (%llu exposures; counts kept)",
               (unsigned long long)p->j.seq, (unsigned long long)p->j.events);
        if (!svc->stopping) {
            attr_xstore_pruned(svc->xs, p->j.seq);
        }
    } else {
        yw_log(YW_LOG_WARN, "cannot prune segment %llu (will retry): %s",
               (unsigned long long)p->j.seq, job->errmsg);
    }
    free(p);
    attr__unref(svc);
}

/** Prunes the oldest segment whose every exposure is past the join horizon. */
static void attr__maybe_prune_segment(attr_svc_t *svc, int64_t now)
{
    if (svc->prune_busy || svc->stopping || svc->persist_busy || svc->st.n_persist > 0) {
        return;
    }
    int64_t limit = now - attr_settings_horizon(&svc->st.settings) - ATTR_FUTURE_NS;
    uint64_t seq;
    char path[4096];
    if (!attr_xstore_prunable(svc->xs, limit, &seq, path)) {
        return;
    }
    attr_prune_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return;
    }
    p->svc = svc;
    p->j.seq = seq;
    p->j.now_ns = now;
    snprintf(p->j.path, sizeof p->j.path, "%s", path);
    p->j.job.work = attr_store_prune_segment;
    p->j.job.done = attr__on_prune;
    if (yw_store_write(svc->store, &p->j.job) != 0) {
        free(p);
        return;
    }
    svc->prune_busy = 1;
    svc->refs++;
}

static void attr__on_timer(uv_timer_t *t)
{
    attr_svc_t *svc = t->data;
    int64_t now = attr__now();
    attr_xstore_tick(svc->xs, now);
    attr__schedule_persist(svc);
    attr__maybe_prune_segment(svc, now);
}

/* ---- start-up ---- */

static grpc_status_code attr__store_default_settings(yw_store_conn_t *conn, void *arg)
{
    attr_settings_job_t *j = arg;
    return attr_store_put_settings(conn, &j->job);
}

static void attr__on_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data);
}

static void attr__on_xs_closed(void *arg)
{
    attr__unref(arg);
}

int attr_service_init(yw_app_t *app, char *err, size_t errlen)
{
    attr_svc_t *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    svc->app = app;
    svc->store = yw_app_store(app);
    attr_state_init(&svc->st);
    long long ttl_s = 300;
    const char *ttl = yw_app_option(app, "tier-label-ttl-s");
    if (ttl != NULL) {
        char *end = NULL;
        ttl_s = strtoll(ttl, &end, 10);
        if (end == ttl || *end != '\0' || ttl_s < 0 || ttl_s > 86400) {
            snprintf(err, errlen, "--tier-label-ttl-s: must be within 0..86400, got %s", ttl);
            attr__svc_free(svc);
            return -EINVAL;
        }
    }
    svc->tier_ttl_ns = ttl_s * ATTR_NS_PER_S;
    const char *runs = yw_app_option(app, "index-run-exposures");
    if (runs != NULL) {
        char *end = NULL;
        long long v = strtoll(runs, &end, 10);
        if (end == runs || *end != '\0' || v < 16 || v > (1 << 22)) {
            snprintf(err, errlen, "--index-run-exposures: must be within 16..4194304, got %s",
                     runs);
            attr__svc_free(svc);
            return -EINVAL;
        }
        svc->run_exposures = (uint32_t)v;
    }
    snprintf(svc->exp_dir, sizeof svc->exp_dir, "%s/exposures", yw_app_option(app, "data-dir"));
    if (mkdir(svc->exp_dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", svc->exp_dir, strerror(errno));
        attr__svc_free(svc);
        return -errno;
    }
    int64_t now = attr__now();

    /* 1. The database: settings, conversions and their touches, refunds, rollups. */
    attr_load_t ld;
    memset(&ld, 0, sizeof ld);
    ld.st = &svc->st;
    ld.now_ns = now;
    svc->st.defer = 1;
    char serr[256] = "";
    grpc_status_code code = yw_store_run_sync(svc->store, attr_store_load, &ld, serr, sizeof serr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "loading attribution.db: %s", ld.err[0] ? ld.err : serr);
        free(ld.pruned);
        attr__svc_free(svc);
        return -EIO;
    }
    if (!ld.settings_found) {
        attr_settings_job_t sj;
        memset(&sj, 0, sizeof sj);
        sj.settings = svc->st.settings;
        sj.settings.version = 1;
        sj.settings.update_ns = now;
        code = yw_store_run_sync(svc->store, attr__store_default_settings, &sj, serr, sizeof serr);
        if (code != GRPC_STATUS_OK) {
            snprintf(err, errlen, "storing the default settings: %s",
                     sj.job.errmsg[0] ? sj.job.errmsg : serr);
            free(ld.pruned);
            attr__svc_free(svc);
            return -EIO;
        }
        svc->st.settings = sj.settings;
    }

    /* 2. The exposures, after the conversions: their touches are found on the way. The
     *    index files cover most of the log; what they do not is read and indexed. */
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(app));
    attr_xstore_stats_t xst;
    int rc = attr_xstore_open(loop, svc->exp_dir, svc->run_exposures, &svc->st, ld.pruned,
                              ld.n_pruned, now, &svc->xs, &xst, err, errlen);
    free(ld.pruned);
    if (rc == 0) {
        rc = attr_state_flush(&svc->st);
        if (rc != 0) {
            snprintf(err, errlen, "out of memory crediting conversions");
        }
    }
    svc->st.defer = 0;
    if (rc != 0 && svc->xs == NULL) {
        attr__svc_free(svc);
        return rc;
    }
    svc->refs++; /* the exposure store */

    /* 3. Tier scoring; maintenance. */
    const char *tier_addr = yw_app_option(app, "tier-scoring-addr");
    if (rc == 0 && (rc = attr_tier_create(yw_app_runtime(app), tier_addr, svc->tier_ttl_ns,
                                          &svc->tier)) != 0) {
        snprintf(err, errlen, "--tier-scoring-addr %s: cannot open a channel", tier_addr);
    }
    if (rc == 0 && (rc = uv_timer_init(loop, &svc->timer)) == 0) {
        svc->timer.data = svc;
        svc->timer_open = 1;
        svc->refs++;
        rc = uv_timer_start(&svc->timer, attr__on_timer, ATTR_MAINT_MS, ATTR_MAINT_MS);
        if (rc != 0) {
            snprintf(err, errlen, "maintenance timer: %s", uv_strerror(rc));
        }
    }
    if (rc != 0) {
        /* The app exits; release what was started (the loop still runs close callbacks). */
        svc->stopping = 1;
        attr_tier_destroy(svc->tier);
        svc->tier = NULL;
        if (svc->timer_open) {
            uv_close((uv_handle_t *)&svc->timer, attr__on_timer_closed);
        }
        attr_xstore_close(svc->xs, attr__on_xs_closed, svc);
        return rc;
    }
    yw_app_set_state(app, svc);
    attr_xstore_info_t xi;
    attr_xstore_info(svc->xs, &xi);
    yw_log(YW_LOG_INFO,
           "attribution ready: %llu conversions, %llu refunds, %llu candidate touches, %llu "
           "rollup rows of pruned segments; exposure log: %llu segments, %llu exposures in %llu "
           "index files (%llu dropped), %llu read from the log's tail into %llu new ones "
           "(%llu duplicates skipped); %llu conversions looked up, %llu touches found; "
           "settings v%lld, join horizon %llds",
           (unsigned long long)ld.conversions, (unsigned long long)ld.refunds,
           (unsigned long long)ld.touches, (unsigned long long)ld.rollups,
           (unsigned long long)xst.segments, (unsigned long long)xst.indexed_events,
           (unsigned long long)xst.files, (unsigned long long)xst.files_dropped,
           (unsigned long long)xst.tail_events, (unsigned long long)xst.tail_runs,
           (unsigned long long)xst.tail_duplicates, (unsigned long long)xst.conversions_looked_up,
           (unsigned long long)xst.candidates_found, (long long)svc->st.settings.version,
           (long long)(attr_settings_horizon(&svc->st.settings) / ATTR_NS_PER_S));
    attr__schedule_persist(svc);
    return 0;
}

void attr_service_fini(yw_app_t *app)
{
    attr_svc_t *svc = yw_app_state(app);
    if (svc == NULL) {
        return;
    }
    yw_app_set_state(app, NULL);
    svc->stopping = 1;
    /* Every call is gone (the server stopped). Lookups finish, the log syncs, the open
     * run is indexed (blocking: shutdown). */
    attr_tier_destroy(svc->tier);
    svc->tier = NULL;
    uv_timer_stop(&svc->timer);
    uv_close((uv_handle_t *)&svc->timer, attr__on_timer_closed);
    attr_xstore_close(svc->xs, attr__on_xs_closed, svc);
    /* Store jobs still queued complete while the store closes; the last one frees. */
}

/* ---- the method table ---- */

#define ATTR_M(name) "/" ATTR_SERVICE_NAME "/" name

static const yw_method_t attr_methods[] = {
    {ATTR_M("RecordExposures"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_exposures_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_exposures, NULL, NULL},
    {ATTR_M("RecordConversions"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_conversions_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_conversions, NULL, NULL},
    {ATTR_M("RecordRefunds"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_refunds_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_refunds, NULL, NULL},
    {ATTR_M("IngestExposures"), YW_METHOD_CLIENT_STREAMING,
     &yaowei__attribution__v1__exposure_event__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_ingest_exposure,
     attr__on_ingest_exposures_end, NULL},
    {ATTR_M("IngestConversions"), YW_METHOD_CLIENT_STREAMING,
     &yaowei__attribution__v1__conversion_event__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_ingest_conversion,
     attr__on_ingest_conversions_end, NULL},
    {ATTR_M("ExplainConversion"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__explain_conversion_request__descriptor,
     &yaowei__attribution__v1__conversion_attribution__descriptor, attr__on_explain, NULL, NULL},
    {ATTR_M("GetCreatorReport"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_creator_report_request__descriptor,
     &yaowei__attribution__v1__creator_report__descriptor, attr__on_creator_report, NULL, NULL},
    {ATTR_M("GetTierReport"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_tier_report_request__descriptor,
     &yaowei__attribution__v1__tier_report__descriptor, attr__on_tier_report, NULL, NULL},
    {ATTR_M("ListTopCreators"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__list_top_creators_request__descriptor,
     &yaowei__attribution__v1__list_top_creators_response__descriptor, attr__on_top_creators, NULL,
     NULL},
    {ATTR_M("GetAttributionSettings"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_attribution_settings_request__descriptor,
     &yaowei__attribution__v1__attribution_settings__descriptor, attr__on_get_settings, NULL, NULL},
    {ATTR_M("UpdateAttributionSettings"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__update_attribution_settings_request__descriptor,
     &yaowei__attribution__v1__attribution_settings__descriptor, attr__on_update_settings, NULL,
     NULL},
};

const yw_service_t attr_service = {
    .name = ATTR_SERVICE_NAME,
    .methods = attr_methods,
    .n_methods = sizeof attr_methods / sizeof attr_methods[0],
    .ctx = NULL,
};

const yw_option_t attr_options[] = {
    {"tier-label-ttl-s", "YW_TIER_LABEL_TTL_S", "300",
     "seconds a creator's tier label from tier scoring is reused", NULL},
    {"index-run-exposures", "YW_INDEX_RUN_EXPOSURES", "65536",
     "exposures held in memory per run before its index file is written (about 180 bytes "
     "each, two runs at a time)",
     NULL},
};
const size_t attr_n_options = sizeof attr_options / sizeof attr_options[0];
