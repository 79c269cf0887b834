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
 *  - Exposures on disk (the log and its index files, attr_exposure_store.h): an exposure whose
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
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/page_token.h"
#include "common/utf8.h"
#include "services/attribution/attr_ckey.h"
#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_xlog.h"
#include "services/attribution/attr_snap.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_store.h"
#include "services/attribution/attr_tier.h"
#include "services/attribution/attr_validate.h"
#include "services/attribution/attr_exposure_store.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define ATTR_SERVICE_NAME "yaowei.attribution.v1.AttributionService"
/** Events per exposure frame / conversion job while a call is being read. */
#define ATTR_FRAME_EVENTS 2048
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
/** Default of --ingest-pending-mb: bytes of admitted exposures not yet committed. */
#define ATTR_PENDING_MB_DEFAULT 64
/** A client stream stops reading while this many of its frames / jobs are on their way. */
#define ATTR_STREAM_BATCHES 2
/** The same for a RecordExposures call (its events are in memory already). */
#define ATTR_RECORD_BATCHES 4
#define ATTR_MAINT_MS 5000
#define ATTR_SWEEP_BUDGET 200000
#define ATTR_PAGE_DEFAULT 50
#define ATTR_PAGE_MAX 1000
/** How many events ahead RecordExposures prefetches. */
#define ATTR_PREFETCH_AHEAD 3

/** How often a stopping service looks whether all but its hold is done. */
#define ATTR_FINI_POLL_MS 10
/** Defaults of --conversion-cache-mb and --dedup-filter-mb. */
#define ATTR_CACHE_MB_DEFAULT 16
#define ATTR_BLOOM_MB_DEFAULT 64
/** Exposure batches kept for reuse (with their arrays: 2,048 events cost about 240 KiB). */
#define ATTR_SPARE_XBATCHES 4
/** Free memory the allocator may keep before a tick gives it back (malloc_trim()). */
#define ATTR_TRIM_BYTES (8u << 20)
/** Log the memory line every this many maintenance ticks. */
#define ATTR_MEMLOG_TICKS 12

typedef struct st_attr_xbatch_t attr_xbatch_t;

/** Work held back while the settings restate the conversions (run in order after). */
typedef struct st_attr_held_t {
    void (*fn)(struct st_attr_held_t *h);
    struct st_attr_held_t *next;
} attr_held_t;

/** Memory gauges (yaowei_attribution_memory_bytes{part}), in the order of attr__parts. */
enum { ATTR_N_MEM_PARTS = 16 };

typedef struct st_attr_svc_t {
    yw_app_t *app;
    yw_store_t *store;
    attr_state_t st;
    attr_exposure_store_t *xs;
    attr_ckey_t *ck;        /* the conversion key index */
    uint64_t next_conv_seq; /* conversions.seq of the next conversion admitted */
    attr_tier_t *tier;
    uv_timer_t timer;
    int timer_open;
    char exp_dir[4096];
    int persist_busy, prune_busy, settings_busy;
    int refs; /* open handles, the log, jobs in flight: freed at 0 once stopping */
    int stopping;
    /* Stopping: the snapshot (attr_snap.h) is written once only the hold of
     * attr_service_fini_async() is left; its timer looks every ATTR_FINI_POLL_MS. */
    int fini_wait;
    uv_timer_t fini_timer;
    /* Memory may disagree with what the data gives (an error was logged that says "until
     * restart"): no snapshot of it is written. */
    int suspect;
    char data_dir[4000];
    /* The last committed exposure's place in the log (exposures commit in log order),
     * and the touch mark last stored (attr_touch_mark_t): a persist job stores the mark
     * of when it was taken. */
    uint64_t committed_seg, committed_off;
    attr_touch_mark_t touch_mark;
    int mark_due; /* the timer asks for the mark alone when nothing else is stored */
    int64_t tier_ttl_ns;
    uint32_t run_exposures;
    size_t run_bytes; /* --index-run-mb */
    /* Restating (a settings change being applied to the stored conversions): whatever
     * changes conversions or rollups waits in `held`, in order. */
    int restating;         /* how many hold the gate closed: a restatement, an audit */
    uint64_t restatements; /* begun so far (an audit across one compares nothing) */
    attr_held_t *held_head, *held_tail;
    struct st_attr_rsjob_t *restate; /* the restatement in progress, to retry */
    /* Exposure batches submitted and not yet committed: conversions committed after the
     * oldest of them stay in memory until it commits (it may join them). */
    attr_xbatch_t *active;
    /* Bytes of the exposures admitted and not yet through (their batches' `bytes`), and
     * the budget past which streams and sliced calls keep one frame in flight at most
     * (--ingest-pending-mb). */
    size_t pending_bytes, pending_budget;
    /* RecordExposures calls with events left to judge, judged a slice at a time, in
     * turn, from the slice timer (attr__on_slices). */
    struct st_attr_ingest_t *slice_head, *slice_tail;
    uv_timer_t slice_timer;
    int slice_timer_open;
    unsigned ticks;
    uint64_t bloom_thin_logged;
    struct st_attr_xbatch_t *spare_xb[ATTR_SPARE_XBATCHES]; /* see attr__xbatch_free() */
    int n_spare_xb;
    struct st_attr_ejob_t *explain_next; /* ExplainConversion calls waiting to be read */
    int explain_jobs;                    /* reads of them in flight */
    yw_metric_t *mem[ATTR_N_MEM_PARTS];
    yw_metric_t *cache_loads, *cache_evictions, *explain_reads;
    /* The rollup audit (--audit-rollups-ms; 0: off): every audit_ns, attr__audit(). */
    int64_t audit_ns, audit_last_ns;
    int64_t maint_last_ns;
    uint64_t audits;
    yw_metric_t *audit_diffs;
} attr_svc_t;

static int64_t attr__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * ATTR_NS_PER_S + ts.tv_nsec;
}

static void attr__spare_xb_free(attr_svc_t *svc);

static void attr__svc_free(attr_svc_t *svc)
{
    attr__spare_xb_free(svc);
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
static void attr__evict(attr_svc_t *svc);

/* ---- the restatement gate ---- */

/** Runs `h` now, or after the restatement in progress. */
static void attr__gate(attr_svc_t *svc, attr_held_t *h, void (*fn)(attr_held_t *h))
{
    h->fn = fn;
    h->next = NULL;
    if (!svc->restating) {
        fn(h);
        return;
    }
    if (svc->held_tail != NULL) {
        svc->held_tail->next = h;
    } else {
        svc->held_head = h;
    }
    svc->held_tail = h;
}

/**
 * A restatement or an audit is over: once none holds it, what waited runs, in order.
 * Eviction stays held until all of it ran. Invariant: a conversion read on the writer's
 * queue (an exposure batch's preload, a refund's load) is still in memory when the read
 * is used, if it was when the read was made, so that a stale row is never loaded over
 * newer credits (attr__conv_from_set()). The queue's order keeps it (the read's `done`
 * runs before the `done` of the write that lets the conversion go); holding the read's
 * use behind the gate does not, unless nothing leaves memory until the held work ran.
 * Evicting from the first held item on let a later held preload load an order without
 * the touches its credits in the rollups had (issue 11: reports drifted from the
 * explanations after a settings change; the rollup audit found it).
 */
static void attr__gate_open(attr_svc_t *svc)
{
    if (svc->restating > 0 && --svc->restating > 0) {
        return;
    }
    while (svc->held_head != NULL && !svc->restating) {
        attr_held_t *h = svc->held_head;
        svc->held_head = h->next;
        if (svc->held_head == NULL) {
            svc->held_tail = NULL;
        }
        h->fn(h);
    }
    if (svc->restating) {
        return; /* closed again by what ran */
    }
    svc->st.evict_hold = 0;
    /* Runs published meanwhile stayed in memory for the commits that waited (a
     * conversion's capture from the runs covers what its lookup's view did not). */
    if (svc->xs != NULL) {
        attr_exposure_store_hold_runs(svc->xs, 0);
    }
    attr__evict(svc);
}

/** Closes the gate: what changes conversions or rollups waits (attr__gate()). */
static void attr__gate_close(attr_svc_t *svc)
{
    svc->restating++;
    svc->st.evict_hold = 1;
    if (svc->xs != NULL) {
        attr_exposure_store_hold_runs(svc->xs, 1);
    }
}

/* ---- the conversion cache ---- */

/**
 * Reads stored conversions and refund ids on the writer's queue: it runs after every
 * write queued before it and its `done` before theirs queued after, so that what it
 * reads is never older than what memory has (a conversion changed in memory stays there
 * until its change is stored).
 */
typedef struct st_attr_ljob_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    void *data; /* the caller's */
    /* in: copies, owned */
    char **orders;
    size_t n_orders, cap_orders;
    char **keys; /* viewer, product pairs */
    int64_t *key_occur;
    uint64_t *key_vp;
    size_t n_keys, cap_keys;
    /* the keys' conversions: seqs found in memory (key index, seq), then in the files */
    uint64_t (*mem)[2];
    size_t n_mem, cap_mem;
    attr_ckey_snap_t *snap;
    char **refund_ids;
    size_t n_refund_ids, cap_refund_ids;
    /* out */
    attr_convset_t set;
    uint8_t *refund_stored;
    grpc_status_code status;
    char err[256];
} attr_ljob_t;

static void attr__ljob_free(attr_ljob_t *lj)
{
    if (lj == NULL) {
        return;
    }
    for (size_t i = 0; i < lj->n_orders; i++) {
        free(lj->orders[i]);
    }
    for (size_t i = 0; i < 2 * lj->n_keys; i++) {
        free(lj->keys[i]);
    }
    for (size_t i = 0; i < lj->n_refund_ids; i++) {
        free(lj->refund_ids[i]);
    }
    free(lj->orders);
    free(lj->keys);
    free(lj->key_occur);
    free(lj->key_vp);
    free(lj->mem);
    attr_ckey_snap_free(lj->snap);
    free(lj->refund_ids);
    free(lj->refund_stored);
    attr_convset_free(&lj->set);
    free(lj);
}

static char *attr__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int attr__push_str(char ***arr, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char **p = realloc(*arr, nc * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        *arr = p;
        *cap = nc;
    }
    if (((*arr)[*n] = attr__strndup(s, len)) == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

static int attr__ljob_add_order(attr_ljob_t *lj, const char *id, size_t len)
{
    for (size_t i = 0; i < lj->n_orders; i++) {
        if (strlen(lj->orders[i]) == len && memcmp(lj->orders[i], id, len) == 0) {
            return 0;
        }
    }
    return attr__push_str(&lj->orders, &lj->n_orders, &lj->cap_orders, id, len);
}

static int attr__ljob_add_key(attr_ljob_t *lj, const char *viewer, size_t vlen, const char *product,
                              size_t plen, int64_t occur_ns, uint64_t vp)
{
    if (lj->n_keys == lj->cap_keys) {
        size_t nc = lj->cap_keys ? lj->cap_keys * 2 : 16;
        char **k = realloc(lj->keys, 2 * nc * sizeof *k);
        if (k == NULL) {
            return -ENOMEM;
        }
        lj->keys = k;
        int64_t *o = realloc(lj->key_occur, nc * sizeof *o);
        if (o == NULL) {
            return -ENOMEM;
        }
        lj->key_occur = o;
        uint64_t *h = realloc(lj->key_vp, nc * sizeof *h);
        if (h == NULL) {
            return -ENOMEM;
        }
        lj->key_vp = h;
        lj->cap_keys = nc;
    }
    lj->key_vp[lj->n_keys] = vp;
    char *v = attr__strndup(viewer, vlen), *p = attr__strndup(product, plen);
    if (v == NULL || p == NULL) {
        free(v);
        free(p);
        return -ENOMEM;
    }
    lj->keys[2 * lj->n_keys] = v;
    lj->keys[2 * lj->n_keys + 1] = p;
    lj->key_occur[lj->n_keys++] = occur_ns;
    return 0;
}

/** The seqs one key's lookup in the key index found. */
typedef struct st_attr__seqs_t {
    uint64_t *v;
    size_t n, cap;
    int oom;
} attr__seqs_t;

static void attr__seqs_add(void *arg, uint64_t seq)
{
    attr__seqs_t *q = arg;
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 16;
        uint64_t *p = realloc(q->v, nc * sizeof *p);
        if (p == NULL) {
            q->oom = 1;
            return;
        }
        q->v = p;
        q->cap = nc;
    }
    q->v[q->n++] = seq;
}

/** Reads the stored conversions of key i (the key index's seqs; the strings decide). */
static int attr__ljob_key(yw_store_conn_t *conn, attr_ljob_t *lj, size_t i, attr__seqs_t *q)
{
    q->n = 0;
    for (size_t k = 0; k < lj->n_mem; k++) {
        if (lj->mem[k][0] == i) {
            attr__seqs_add(q, lj->mem[k][1]);
        }
    }
    int rc = lj->snap != NULL ? attr_ckey_snap_find(lj->snap, lj->key_vp[i], attr__seqs_add, q) : 0;
    if (rc == 0 && q->oom) {
        rc = -ENOMEM;
    }
    if (rc != 0) {
        snprintf(lj->err, sizeof lj->err, "conversion key index: %s", strerror(-rc));
        return rc;
    }
    for (size_t k = 0; k < q->n && rc >= 0; k++) {
        rc = attr_store_get_conversion_by_seq(conn, q->v[k], lj->keys[2 * i], lj->keys[2 * i + 1],
                                              lj->key_occur[i], &lj->set, lj->err, sizeof lj->err);
    }
    return rc < 0 ? rc : 0;
}

static grpc_status_code attr__ljob_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_ljob_t *lj = (attr_ljob_t *)job;
    int rc = 0;
    for (size_t i = 0; i < lj->n_orders && rc >= 0; i++) {
        rc = attr_store_get_conversion(conn, lj->orders[i], strlen(lj->orders[i]), &lj->set,
                                       lj->err, sizeof lj->err);
    }
    attr__seqs_t q = {0};
    for (size_t i = 0; i < lj->n_keys && rc >= 0; i++) {
        rc = attr__ljob_key(conn, lj, i, &q);
    }
    free(q.v);
    if (rc >= 0 && lj->n_refund_ids > 0 &&
        (lj->refund_stored = calloc(lj->n_refund_ids, 1)) == NULL) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; i < lj->n_refund_ids && rc >= 0; i++) {
        rc = attr_store_refund_exists(conn, lj->refund_ids[i], lj->err, sizeof lj->err);
        if (rc >= 0) {
            lj->refund_stored[i] = (uint8_t)rc;
        }
    }
    if (rc < 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "reading conversions: %.200s",
                 lj->err[0] ? lj->err : strerror(-rc));
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_OK;
}

/**
 * Whether a stored conversion read back is the row of the pending one of its id (its
 * write is done, its commit is not: not acknowledged yet). A stored row of another seq
 * is an acknowledged order, and the pending one a duplicate of it on its way: at most
 * one conversion of an id is pending, and it stays in memory until it commits.
 */
static int attr__pending_own(attr_state_t *st, const attr_conv_in_t *in)
{
    const attr_conv_t *p = attr_conv_pending(st, in->order_id, in->order_id_len);
    return p != NULL && p->seq == in->seq;
}

/**
 * A stored conversion read back, in memory: the cached one when there is one (memory is
 * never older than the database), NULL when it is pending (stored, not yet committed:
 * its commit will come), else loaded into the cache now. Returns 0 or -ENOMEM.
 */
static int attr__conv_from_set(attr_svc_t *svc, const attr_convset_t *set, size_t i,
                               attr_conv_t **out)
{
    attr_state_t *st = &svc->st;
    const attr_stored_conv_t *sc = &set->convs[i];
    *out = attr_conv_find(st, sc->in.order_id, sc->in.order_id_len);
    if (*out != NULL || attr__pending_own(st, &sc->in)) {
        return 0; /* (the pending one's own row: stored, not yet acknowledged) */
    }
    attr_conv_t *c = NULL;
    int rc = attr_conv_load(st, &sc->in, sc->refunded, &c);
    const attr_stored_touch_t *t = attr_convset_touches(set, i);
    for (size_t k = 0; rc == 0 && k < sc->n_touches; k++) {
        rc = attr_conv_add_cand(st, c, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                t[k].occur_ns, 1);
    }
    if (rc == 0) {
        rc = attr_conv_loaded(st, c, 0);
    }
    if (rc != 0) {
        /* Incomplete: it must not stay (nor be used). */
        if (c != NULL) {
            attr_conv_unload(st, c);
        }
        return -ENOMEM;
    }
    yw_metric_inc(svc->cache_loads);
    *out = c;
    return 0;
}

/* ---- ingestion ---- */

typedef struct st_attr_ingest_t attr_ingest_t;

/** Flags of an exposure in a batch. */
enum { ATTR_XB_UNSURE = 1, ATTR_XB_PAST = 2, ATTR_XB_DUP = 4 };

/**
 * Exposures admitted by one call, on their way to the log as one frame. The log
 * records are built as events are admitted (from the state's copies of their strings,
 * which stay until commit or abort); `products` pointers are set when the frame is
 * handed to the log, once `prods` stops growing. Before the frame is written: ids the
 * Bloom filters were unsure of are looked up on disk (`cf`; the duplicates found drop
 * out of the batch), and the stored conversions the exposures may join late are brought
 * into memory and pinned there (`lj`, `pins`), so that the commit finds them all.
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
    attr_ljob_t *lj;
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
    uint8_t *past;     /* per conversion: past the horizon when admitted */
    uint8_t *inserted; /* per conversion, from the write: 0 for a stored order_id */
    size_t n, cap;
    attr_xjoin_t jr;
    attr_xjoin_q_t *q;
    int waiting;              /* of the write and the lookup, how many are not back */
    int joined;               /* the lookup ran (jr holds its results) */
    grpc_status_code written; /* the write's status */
    attr_held_t held;
} attr_cjob_t;

/**
 * A RecordRefunds call: its events judged after the conversions they refund are in
 * memory and the stored refund ids are known (`lj`), then written, then committed.
 */
typedef struct st_attr_rjob_t {
    attr_refund_job_t j;
    attr_ingest_t *ing;
    const Yaowei__Attribution__V1__RecordRefundsRequest *req;
    int64_t now;
    uint8_t *valid; /* per event: passed validation (occur in occur[i]) */
    int64_t *occur;
    attr_ljob_t *lj;
    attr_refund_t **refunds;
    attr_refund_row_t *rows;
    size_t n, cap;
    attr_conv_t **pins; /* the conversions in memory when the call came: kept until judged */
    size_t n_pins;
    grpc_status_code written;
    attr_held_t held;
} attr_rjob_t;

struct st_attr_ingest_t {
    attr_svc_t *svc;
    yw_call_t *call;
    int64_t next_index;
    int64_t accepted, duplicates, rejected, past;
    attr_errs_t errs; /* the lowest rejected indexes, in order */
    int in_flight;
    int ended;
    grpc_status_code fail;
    char fail_msg[256];
    attr_xbatch_t *xb;
    attr_cjob_t *cj;
    attr_rjob_t *rj;
    /* RecordExposures, judged in slices (attr__record_slice): the request (valid until
     * the call is freed), the next event, the call's time; `queued` while in the slice
     * queue, `flow_wait` while its frames in flight hold it back. */
    const Yaowei__Attribution__V1__RecordExposuresRequest *rx;
    size_t rx_next;
    int64_t rx_now;
    int queued, flow_wait;
    struct st_attr_ingest_t *slice_next;
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

/**
 * Whether the data dir's disk is full (common/disk.h): the call's events are then
 * refused, the call failing RESOURCE_EXHAUSTED with the disk's message.
 */
static int attr__disk_full(attr_ingest_t *ing)
{
    char err[256];
    if (yw_disk_writable(yw_app_disk(ing->svc->app), err, sizeof err) == 0) {
        return 0;
    }
    attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", err);
    return 1;
}

/**
 * Counts a rejected event, at whatever stage it was judged; the summary lists the
 * ATTR_ERRORS_MAX lowest indexes, ascending (attr_errs.h).
 */
static void attr__reject(attr_ingest_t *ing, int64_t index, const char *reason)
{
    ing->rejected++;
    attr_errs_add(&ing->errs, index, reason);
}

/** The reason for an order_id no conversion has (its id quoted: utf8.h). Returns `buf`. */
static const char *attr__no_order(const char *order_id, char *buf, size_t n)
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
static int attr__flow_full(const attr_ingest_t *ing)
{
    return ing->in_flight >= (ing->rx != NULL ? ATTR_RECORD_BATCHES : ATTR_STREAM_BATCHES) ||
           (ing->in_flight > 0 && ing->svc->pending_bytes >= ing->svc->pending_budget);
}

static void attr__slice_queue(attr_ingest_t *ing);

static void attr__stream_flow(attr_ingest_t *ing)
{
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
static void attr__ingest_maybe_finish(attr_ingest_t *ing)
{
    if (!ing->ended) {
        attr__stream_flow(ing); /* a frame went through: the stream may read on */
        return;
    }
    if (ing->in_flight > 0) {
        return;
    }
    yw_call_t *call = ing->call;
    if (ing->fail != GRPC_STATUS_OK) {
        yw_call_finish(call, ing->fail, "%s", ing->fail_msg);
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

/* -- exposures -- */

static void attr__spare_xb_free(attr_svc_t *svc)
{
    for (int i = 0; i < svc->n_spare_xb; i++) {
        attr_xbatch_t *xb = svc->spare_xb[i];
        free(xb->seqs);
        free(xb->evs);
        free(xb->offs);
        free(xb->flags);
        free(xb->prods);
        free(xb);
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
    attr__ljob_free(xb->lj);
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
    free(xb->seqs);
    free(xb->evs);
    free(xb->offs);
    free(xb->flags);
    free(xb->prods);
    free(xb);
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
    svc->refs--;
    attr__schedule_persist(svc);
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
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
            yw_disk_report_full(yw_app_disk(svc->app));
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
    attr_ljob_t *lj = (attr_ljob_t *)job;
    attr_xbatch_t *xb = lj->data;
    lj->status = status;
    attr__gate(xb->ing->svc, &xb->held, attr__xpreloaded);
}

static void attr__xpreloaded(attr_held_t *h)
{
    attr_xbatch_t *xb = (attr_xbatch_t *)((char *)h - offsetof(attr_xbatch_t, held));
    attr_ljob_t *lj = xb->lj;
    yw_store_job_t *job = &lj->job;
    grpc_status_code status = lj->status;
    attr_ingest_t *ing = xb->ing;
    attr_svc_t *svc = ing->svc;
    int rc = status == GRPC_STATUS_OK ? 0 : -EIO;
    if (rc == 0 && lj->set.n > 0 && (xb->pins = malloc(lj->set.n * sizeof *xb->pins)) == NULL) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < lj->set.n; i++) {
        attr_conv_t *c = NULL;
        rc = attr__conv_from_set(svc, &lj->set, i, &c);
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
    attr__ljob_free(lj);
    xb->lj = NULL;
    attr__xbatch_step(xb);
}

/** attr_ckey_find_mem()'s callback: a seq of key `key` of the job. */
typedef struct st_attr__memkey_t {
    attr_ljob_t *lj;
    size_t key;
    int oom;
} attr__memkey_t;

static void attr__memkey_add(void *arg, uint64_t seq)
{
    attr__memkey_t *mk = arg;
    attr_ljob_t *lj = mk->lj;
    if (lj->n_mem == lj->cap_mem) {
        size_t nc = lj->cap_mem ? lj->cap_mem * 2 : 16;
        uint64_t(*p)[2] = realloc(lj->mem, nc * sizeof *p);
        if (p == NULL) {
            mk->oom = 1;
            return;
        }
        lj->mem = p;
        lj->cap_mem = nc;
    }
    lj->mem[lj->n_mem][0] = mk->key;
    lj->mem[lj->n_mem][1] = seq;
    lj->n_mem++;
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
    attr_ljob_t *lj = NULL;
    uint8_t maybe[ATTR_PRODUCTS_MAX];
    for (size_t i = 0; i < xb->n; i++) {
        const attr_pexp_t *p = attr_exposure_pending(st, xb->seqs[i]);
        if (p == NULL || p->n_products > ATTR_PRODUCTS_MAX ||
            attr_exposure_conv_maybe(st, xb->seqs[i], now, maybe) == 0) {
            continue;
        }
        if (lj == NULL && (lj = calloc(1, sizeof *lj)) == NULL) {
            return -ENOMEM;
        }
        uint64_t hv = attr_hash_bytes(p->viewer.s, p->viewer.len);
        for (uint32_t k = 0; k < p->n_products; k++) {
            if (!maybe[k]) {
                continue;
            }
            uint64_t vp = attr_vp_hash(hv, attr_hash_bytes(p->products[k].s, p->products[k].len));
            attr__memkey_t mk = {lj, lj->n_keys, 0};
            if (attr__ljob_add_key(lj, p->viewer.s, p->viewer.len, p->products[k].s,
                                   p->products[k].len, p->occur_ns, vp) != 0) {
                attr__ljob_free(lj);
                return -ENOMEM;
            }
            /* The keys still in memory now; the files' are looked up with the job. */
            attr_ckey_find_mem(svc->ck, vp, attr__memkey_add, &mk);
            if (mk.oom) {
                attr__ljob_free(lj);
                return -ENOMEM;
            }
        }
    }
    if (lj == NULL) {
        return 0;
    }
    if ((lj->snap = attr_ckey_snap(svc->ck)) == NULL) {
        attr__ljob_free(lj);
        return -ENOMEM;
    }
    lj->svc = svc;
    lj->data = xb;
    lj->job.work = attr__ljob_work;
    lj->job.done = attr__on_xpreload;
    int rc = yw_store_write(svc->store, &lj->job);
    if (rc != 0) {
        attr__ljob_free(lj);
        return rc;
    }
    xb->lj = lj;
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
    if (xb->n + want > xb->cap) {
        size_t nc = xb->cap ? xb->cap * 2 : 256;
        while (nc < xb->n + want) {
            nc *= 2;
        }
        uint64_t *seqs = realloc(xb->seqs, nc * sizeof *seqs);
        if (seqs == NULL) {
            return NULL;
        }
        xb->seqs = seqs;
        attr_xlog_exposure_t *evs = realloc(xb->evs, nc * sizeof *evs);
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
        attr_xlog_str_t *prods = realloc(xb->prods, nc * sizeof *prods);
        if (prods == NULL) {
            return NULL;
        }
        xb->prods = prods;
        xb->cap_prods = nc;
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
    ing->ended = 1;
    attr__ingest_maybe_finish(ing);
}

/** Puts a sliced call at the end of the slice queue and makes sure the timer runs. */
static void attr__slice_queue(attr_ingest_t *ing)
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
        attr__stream_flow(ing);
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
    /* The lookup's view, kept until the conversions were committed (or forgotten). */
    attr_exposure_store_join_release(cj->ing->svc->xs, &cj->jr);
    attr_xjoin_free(&cj->jr);
    free(cj->q);
    free(cj->convs);
    free(cj->rows);
    free(cj->past);
    free(cj->inserted);
    free(cj);
}

static void attr__conv_key(attr_svc_t *svc, const attr_conv_t *c, int64_t now);

/**
 * Both the write and the lookup are back: commit (or forget) the job's conversions. The
 * lookup's view was kept until now, so that an exposure committed since it began is
 * still in a run in memory: the commit's capture from the runs finds it (it could not
 * find the conversion, pending then). Released by attr__cjob_free().
 */
static void attr__cjob_commit(attr_held_t *h)
{
    attr_cjob_t *cj = (attr_cjob_t *)((char *)h - offsetof(attr_cjob_t, held));
    attr_ingest_t *ing = cj->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    if (cj->written != GRPC_STATUS_OK) {
        for (size_t i = 0; i < cj->n; i++) {
            attr_conv_abort(st, cj->convs[i]);
        }
        attr__ingest_fail(ing, cj->written, "conversions: %s", cj->j.job.errmsg);
    } else {
        /* Durable. Before it is visible: its touches in the index files. */
        int64_t now = attr__now();
        attr_xjoin_t *jr = &cj->jr;
        if (cj->joined && jr->status != 0) {
            /* Credited from what memory holds; a restart looks them up again. */
            svc->suspect = 1;
            yw_log(YW_LOG_ERROR,
                   "cannot look up the touches of %zu orders in the exposure "
                   "index (credited from the exposures in memory only until "
                   "restart): %s",
                   cj->n, strerror(-jr->status));
        }
        for (size_t i = 0; i < cj->n; i++) {
            attr_conv_t *c = cj->convs[i];
            if (!cj->inserted[i]) {
                /* Its order_id was stored already (by an earlier call): a duplicate. */
                attr_conv_abort(st, c);
                ing->duplicates++;
                continue;
            }
            size_t nc = 0;
            const attr_xcand_t *cs =
                cj->joined && jr->status == 0 ? attr_xjoin_cands(jr, i, &nc) : NULL;
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
            ing->past += cj->past[i];
        }
    }
    attr__cjob_free(cj);
    ing->in_flight--;
    svc->refs--;
    attr__schedule_persist(svc);
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
}

/**
 * The seq up to which every stored conversion's key is in the key index: all but the
 * pending ones (stored, maybe, but not yet committed) are.
 */
static uint64_t attr__safe_seq(const attr_svc_t *svc)
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

static void attr__cjob_finish(attr_cjob_t *cj)
{
    attr__gate(cj->ing->svc, &cj->held, attr__cjob_commit);
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
    if ((cj->q = calloc(cj->n, sizeof *cj->q)) == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cj->n; i++) {
        const attr_conv_t *c = cj->convs[i];
        attr_xjoin_q_t *q = &cj->q[i];
        q->vp_hash = c->vp_hash;
        q->viewer = c->viewer;
        q->product = c->product;
        q->viewer_len = c->viewer_len;
        q->product_len = c->product_len;
        q->occur_ns = c->occur_ns;
    }
    cj->jr.n = cj->n;
    cj->jr.q = cj->q;
    cj->jr.keep_view = 1; /* until the commit: see attr__cjob_commit() */
    cj->jr.done = attr__on_cjoined;
    cj->jr.data = cj;
    return attr_exposure_store_join(svc->xs, &cj->jr);
}

/** Writes a job's conversions and looks up their touches (after a restatement). */
static void attr__cjob_start(attr_held_t *h)
{
    attr_cjob_t *cj = (attr_cjob_t *)((char *)h - offsetof(attr_cjob_t, held));
    attr_ingest_t *ing = cj->ing;
    attr_svc_t *svc = ing->svc;
    cj->j.job.work = attr_store_put_conversions;
    cj->j.job.done = attr__on_cjob;
    cj->j.rows = cj->rows;
    cj->j.n = cj->n;
    cj->j.currency = svc->st.settings.currency;
    cj->j.ingest_ns = attr__now();
    cj->j.inserted = cj->inserted;
    cj->waiting = 1;
    int rc = yw_store_write(svc->store, &cj->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < cj->n; i++) {
            attr_conv_abort(&svc->st, cj->convs[i]);
        }
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "conversions: cannot queue a write: %s",
                          strerror(-rc));
        attr__cjob_free(cj);
        ing->in_flight--;
        svc->refs--;
        attr__ingest_maybe_finish(ing);
        return;
    }
    /* Always a lookup, even when no index file exists yet: its view is what keeps the
     * runs published while the job is on its way in memory until the commit captures
     * from them. Invariant (attr__cjob_commit()): the view's files plus the runs in
     * memory at the commit hold every exposure committed before the commit. Skipping
     * the lookup when there were no files broke it: a run sealed and published during
     * the write left memory unseen, and the order missed its exposures until a restart
     * joined them again (issue 11: memory and restart disagreed). */
    cj->waiting++;
    if ((rc = attr__cjob_join(cj)) != 0) {
        cj->waiting--;
        svc->suspect = 1;
        yw_log(YW_LOG_ERROR,
               "cannot look up the touches of %zu orders in the exposure index (credited "
               "from the exposures in memory only until restart): %s",
               cj->n, strerror(-rc));
    }
}

static void attr__cjob_submit(attr_ingest_t *ing)
{
    attr_cjob_t *cj = ing->cj;
    ing->cj = NULL;
    if (cj == NULL) {
        return;
    }
    attr_svc_t *svc = ing->svc;
    if ((cj->inserted = calloc(cj->n ? cj->n : 1, 1)) == NULL) {
        for (size_t i = 0; i < cj->n; i++) {
            attr_conv_abort(&svc->st, cj->convs[i]);
        }
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__cjob_free(cj);
        return;
    }
    ing->in_flight++;
    svc->refs++;
    attr__gate(svc, &cj->held, attr__cjob_start);
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
        }
        uint8_t *pf = rw ? realloc(cj->past, nc) : NULL;
        if (pf != NULL) {
            cj->past = pf;
            cj->cap = nc;
        }
    }
    if (cj == NULL || cj->n == cj->cap) {
        attr_conv_abort(st, c);
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory admitting events");
        return;
    }
    attr_conv_row_t *row = &cj->rows[cj->n];
    row->order_id = c->order_id;
    row->viewer_id = c->viewer;
    row->product_id = c->product;
    row->quantity = c->quantity;
    row->amount_minor = c->amount;
    row->occur_ns = c->occur_ns;
    row->seq = c->seq;
    cj->past[cj->n] = (uint8_t)attr_conv_past_horizon(st, occur, now);
    cj->convs[cj->n++] = c;
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
        attr__stream_flow(ing);
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

static void attr__rjob_unpin(attr_rjob_t *rj)
{
    for (size_t i = 0; i < rj->n_pins; i++) {
        attr_conv_unpin(rj->pins[i]);
    }
    rj->n_pins = 0;
}

static void attr__rjob_free(attr_rjob_t *rj)
{
    attr__rjob_unpin(rj);
    free(rj->pins);
    attr__ljob_free(rj->lj);
    free(rj->valid);
    free(rj->occur);
    free(rj->refunds);
    free(rj->rows);
    free(rj);
}

/** The end of a refund call's way: the call may finish. */
static void attr__rjob_done(attr_rjob_t *rj)
{
    attr_ingest_t *ing = rj->ing;
    attr_svc_t *svc = ing->svc;
    attr__rjob_free(rj);
    ing->ended = 1;
    ing->in_flight--;
    svc->refs--;
    attr__evict(svc);
    attr__ingest_maybe_finish(ing);
}

static void attr__rjob_commit(attr_held_t *h)
{
    attr_rjob_t *rj = (attr_rjob_t *)((char *)h - offsetof(attr_rjob_t, held));
    attr_ingest_t *ing = rj->ing;
    attr_svc_t *svc = ing->svc;
    grpc_status_code status = rj->written;
    if (status == GRPC_STATUS_OK) {
        for (size_t i = 0; i < rj->n; i++) {
            if (attr_refund_commit(&svc->st, rj->refunds[i]) != 0) {
                svc->suspect = 1;
                yw_log(YW_LOG_ERROR, "out of memory applying refund %s", rj->rows[i].refund_id);
            }
        }
        ing->accepted += (int64_t)rj->n;
    } else {
        for (size_t i = 0; i < rj->n; i++) {
            attr_refund_abort(&svc->st, rj->refunds[i]);
        }
        attr__ingest_fail(ing, status, "refunds: %s", rj->j.job.errmsg);
    }
    attr__rjob_done(rj);
}

static void attr__on_rjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_rjob_t *rj = (attr_rjob_t *)job;
    rj->written = status;
    attr__gate(rj->ing->svc, &rj->held, attr__rjob_commit);
}

/**
 * The conversions the refunds are of are in memory, the stored refund ids known: each
 * event is judged in order (an earlier refund of the call counts against what is left),
 * then the admitted ones are written.
 */
static void attr__rloaded(attr_held_t *h);

static void attr__on_rload(yw_store_job_t *job, grpc_status_code status)
{
    attr_ljob_t *lj = (attr_ljob_t *)job;
    attr_rjob_t *rj = lj->data;
    lj->status = status;
    /* After the restatement in progress (see attr__on_xpreload()). */
    attr__gate(rj->ing->svc, &rj->held, attr__rloaded);
}

static void attr__rloaded(attr_held_t *h)
{
    attr_rjob_t *rj = (attr_rjob_t *)((char *)h - offsetof(attr_rjob_t, held));
    attr_ljob_t *lj = rj->lj;
    yw_store_job_t *job = &lj->job;
    grpc_status_code status = lj->status;
    attr_ingest_t *ing = rj->ing;
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    const Yaowei__Attribution__V1__RecordRefundsRequest *req = rj->req;
    if (status != GRPC_STATUS_OK) {
        attr__ingest_fail(ing, status, "refunds: %s", job->errmsg);
        attr__rjob_done(rj);
        return;
    }
    for (size_t i = 0; i < lj->set.n; i++) {
        attr_conv_t *c;
        if (attr__conv_from_set(svc, &lj->set, i, &c) != 0) {
            attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            attr__rjob_done(rj);
            return;
        }
    }
    size_t u = 0; /* index into lj->refund_ids: one per valid event */
    for (size_t i = 0; i < req->n_events; i++) {
        if (!rj->valid[i]) {
            continue;
        }
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        int64_t index = (int64_t)i;
        char err[ATTR_REASON_MAX];
        if (lj->refund_stored[u++]) {
            ing->duplicates++;
            continue;
        }
        attr_refund_t *r = NULL;
        int64_t left = 0;
        int rc = attr_refund_admit(st, ev->refund_id, strlen(ev->refund_id), ev->order_id,
                                   strlen(ev->order_id), ev->amount_minor, rj->occur[i], &r, &left);
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
    attr__ljob_free(lj);
    rj->lj = NULL;
    attr__rjob_unpin(rj); /* the admitted refunds keep theirs in memory */
    if (rj->n == 0) {
        attr__rjob_done(rj);
        return;
    }
    rj->j.job.work = attr_store_put_refunds;
    rj->j.job.done = attr__on_rjob;
    rj->j.rows = rj->rows;
    rj->j.n = rj->n;
    rj->j.ingest_ns = rj->now;
    int rc = yw_store_write(svc->store, &rj->j.job);
    if (rc != 0) {
        for (size_t i = 0; i < rj->n; i++) {
            attr_refund_abort(st, rj->refunds[i]);
        }
        rj->n = 0;
        attr__ingest_fail(ing, GRPC_STATUS_UNAVAILABLE, "refunds: cannot queue a write: %s",
                          strerror(-rc));
        attr__rjob_done(rj);
    }
}

/** Reads the refunded conversions that are not in memory, and the stored refund ids. */
static void attr__rjob_start(attr_held_t *h)
{
    attr_rjob_t *rj = (attr_rjob_t *)((char *)h - offsetof(attr_rjob_t, held));
    attr_svc_t *svc = rj->ing->svc;
    attr_ljob_t *lj = rj->lj;
    lj->job.work = attr__ljob_work;
    lj->job.done = attr__on_rload;
    int rc = yw_store_write(svc->store, &lj->job);
    if (rc != 0) {
        attr__ingest_fail(rj->ing, GRPC_STATUS_UNAVAILABLE, "refunds: cannot queue a read: %s",
                          strerror(-rc));
        attr__rjob_done(rj);
    }
}

static void attr__on_record_refunds(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__RecordRefundsRequest *req =
        (const Yaowei__Attribution__V1__RecordRefundsRequest *)msg;
    char disk[256];
    if (req->n_events > ATTR_BATCH_MAX) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                       ATTR_BATCH_MAX, req->n_events);
        return;
    }
    if (yw_disk_writable(yw_app_disk(attr__svc(call)->app), disk, sizeof disk) != 0) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", disk);
        return;
    }
    attr_ingest_t *ing = attr__ingest_new(call);
    attr_rjob_t *rj = calloc(1, sizeof *rj);
    size_t cap = req->n_events ? req->n_events : 1;
    if (ing == NULL || rj == NULL || (rj->refunds = malloc(cap * sizeof *rj->refunds)) == NULL ||
        (rj->rows = malloc(cap * sizeof *rj->rows)) == NULL ||
        (rj->valid = calloc(cap, 1)) == NULL ||
        (rj->pins = malloc(cap * sizeof *rj->pins)) == NULL ||
        (rj->occur = malloc(cap * sizeof *rj->occur)) == NULL ||
        (rj->lj = calloc(1, sizeof *rj->lj)) == NULL) {
        if (rj != NULL) {
            attr__rjob_free(rj);
        }
        if (ing != NULL) {
            yw_call_set_data(call, NULL);
            free(ing);
        }
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    attr_svc_t *svc = ing->svc;
    attr_state_t *st = &svc->st;
    rj->ing = ing;
    rj->req = req; /* valid until the call is freed (a unary request) */
    rj->now = attr__now();
    rj->lj->svc = svc;
    rj->lj->data = rj;
    int oom = 0;
    for (size_t i = 0; i < req->n_events && !oom; i++) {
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        int64_t index = ing->next_index++;
        char err[ATTR_REASON_MAX];
        if (attr_validate_refund(ev, rj->now, &rj->occur[i], err, sizeof err) != 0) {
            attr__reject(ing, index, err);
            continue;
        }
        rj->valid[i] = 1;
        size_t olen = strlen(ev->order_id);
        /* Conversions not in memory are read first (those in memory stay there until
         * judged); refund ids are checked against the stored ones (the pending ones are
         * memory's to know). */
        attr_conv_t *c = attr_conv_find(st, ev->order_id, olen);
        if (c != NULL) {
            attr_conv_pin(c);
            rj->pins[rj->n_pins++] = c;
        }
        /* (Also with a pending one of that id: it may be a duplicate of a stored order,
         * which the read finds: attr__pending_own().) */
        if ((c == NULL && attr__ljob_add_order(rj->lj, ev->order_id, olen) != 0) ||
            attr__push_str(&rj->lj->refund_ids, &rj->lj->n_refund_ids, &rj->lj->cap_refund_ids,
                           ev->refund_id, strlen(ev->refund_id)) != 0) {
            oom = 1;
        }
    }
    ing->in_flight++;
    svc->refs++;
    if (oom) {
        attr__ingest_fail(ing, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__rjob_done(rj);
        return;
    }
    if (rj->lj->n_refund_ids == 0) {
        attr__rjob_done(rj); /* every event was rejected */
        return;
    }
    attr__gate(svc, &rj->held, attr__rjob_start);
}

/* ---- candidate persistence ---- */

typedef struct st_attr_pjob_t {
    attr_touch_job_t j; /* j.mark: attr__touch_mark() when taken */
    attr_svc_t *svc;
    attr_conv_t **convs;
    uint32_t *upto;
    size_t n_convs;
    attr_touch_row_t *rows;
} attr_pjob_t;

static uint64_t attr__safe_seq(const attr_svc_t *svc);

/**
 * The touch mark of now (attr_touch_mark_t): every touch memory holds is stored or in
 * the persist list, so once that list is stored, every conversion committed up to the
 * safe seq (none below it is pending) has every touch of an exposure committed so far:
 * found at its commit (the runs and the index files held every exposure committed
 * before it) or added when a later exposure committed (the conversion was brought into
 * memory for it).
 */
static attr_touch_mark_t attr__touch_mark(const attr_svc_t *svc)
{
    attr_touch_mark_t m = {attr__safe_seq(svc), svc->committed_seg, svc->committed_off};
    return m;
}

static void attr__on_pjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_pjob_t *pj = (attr_pjob_t *)job;
    attr_svc_t *svc = pj->svc;
    if (status == GRPC_STATUS_OK) {
        svc->touch_mark = pj->j.mark;
    }
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
    if (status == GRPC_STATUS_OK) {
        attr__schedule_persist(svc);
        attr__evict(svc); /* what was waiting for its touches to be stored may go */
    } else if (svc->stopping) {
        svc->suspect = 1; /* not retried: the next start looks the touches up again */
    }
    attr__unref(svc);
}

/**
 * Writes the candidate touches not yet in the database with the touch mark, one job at a
 * time; with none, the mark alone when it moved (the maintenance timer).
 */
static void attr__schedule_persist(attr_svc_t *svc)
{
    /* Also while stopping: the store stays open until the touches are stored
     * (attr__fini_step()). */
    if (svc->persist_busy || (svc->stopping && svc->suspect) ||
        (svc->st.n_persist == 0 && !svc->mark_due)) {
        return;
    }
    svc->mark_due = 0;
    /* (attr__safe_seq() walks the cached conversions: once a job, not once a batch.) */
    attr_touch_mark_t mark = attr__touch_mark(svc);
    if (svc->st.n_persist == 0 && memcmp(&mark, &svc->touch_mark, sizeof mark) == 0) {
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
            row->note_id = attr_cand_note(t);
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
    pj->j.mark = mark;
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
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
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
typedef struct st_attr_eask_t {
    yw_call_t *call;
    const char *order_id; /* the request's (valid until the call is freed) */
    int model;            /* as asked (0: the default at reply time) */
    int found;            /* index in the job's set + 1; 0: not stored */
} attr_eask_t;

/**
 * ExplainConversion of conversions that are not in memory, read on a reader thread. The
 * calls that come while ATTR_EXPLAIN_READS jobs are out wait in the next job (as group
 * commit does for writes): one thread hand-off and one wake-up for many calls.
 */
typedef struct st_attr_ejob_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_eask_t asks[ATTR_EXPLAIN_BATCH];
    size_t n;
    attr_convset_t set;
    char err[256];
} attr_ejob_t;

static grpc_status_code attr__ejob_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_ejob_t *ej = (attr_ejob_t *)job;
    for (size_t i = 0; i < ej->n; i++) {
        attr_eask_t *a = &ej->asks[i];
        int rc = attr_store_get_conversion(conn, a->order_id, strlen(a->order_id), &ej->set,
                                           ej->err, sizeof ej->err);
        if (rc < 0) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            snprintf(job->errmsg, sizeof job->errmsg, "reading order %s: %.160s",
                     yw_quote(a->order_id, YW_QUOTE_MAX, q, sizeof q), ej->err);
            return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
        }
        a->found = rc ? (int)ej->set.n : 0;
    }
    return GRPC_STATUS_OK;
}

/** Replies to one explanation read back (or not found). */
static void attr__explain_stored(attr_svc_t *svc, const attr_ejob_t *ej, const attr_eask_t *a,
                                 grpc_status_code status, const char *errmsg)
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
        yw_call_finish(a->call, status, "%s", errmsg);
        return;
    }
    if (a->found == 0 || attr__pending_own(st, &ej->set.convs[a->found - 1].in)) {
        /* (A pending one is stored but not acknowledged yet: not visible.) */
        char err[ATTR_REASON_MAX];
        yw_call_fail(a->call, GRPC_STATUS_NOT_FOUND, attr__no_order(a->order_id, err, sizeof err));
        return;
    }
    size_t at = (size_t)a->found - 1;
    const attr_stored_conv_t *sc = &ej->set.convs[at];
    attr_conv_t *x = attr_conv_new(&sc->in, sc->refunded);
    const attr_stored_touch_t *t = attr_convset_touches(&ej->set, at);
    int rc = x != NULL ? 0 : -ENOMEM;
    for (size_t k = 0; rc == 0 && k < sc->n_touches; k++) {
        rc = attr_conv_add_cand(st, x, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                t[k].occur_ns, 1);
    }
    if (rc == 0) {
        rc = attr_conv_compute(st, x);
    }
    if (rc == 0) {
        attr__explain_reply(a->call, st, x, model);
    } else {
        yw_call_finish(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    attr_conv_free(x);
}

static void attr__ejob_submit(attr_svc_t *svc);

static void attr__on_ejob(yw_store_job_t *job, grpc_status_code status)
{
    attr_ejob_t *ej = (attr_ejob_t *)job;
    attr_svc_t *svc = ej->svc;
    for (size_t i = 0; i < ej->n; i++) {
        attr__explain_stored(svc, ej, &ej->asks[i], status, job->errmsg);
    }
    attr_convset_free(&ej->set);
    free(ej);
    svc->explain_jobs--;
    if (svc->explain_next != NULL && !svc->stopping) {
        attr__ejob_submit(svc);
    }
    attr__unref(svc);
}

/** Submits the explanations waiting (svc->explain_next). */
static void attr__ejob_submit(attr_svc_t *svc)
{
    attr_ejob_t *ej = svc->explain_next;
    svc->explain_next = NULL;
    ej->job.work = attr__ejob_work;
    ej->job.done = attr__on_ejob;
    int rc = yw_store_read(svc->store, &ej->job);
    if (rc != 0) {
        for (size_t i = 0; i < ej->n; i++) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            yw_call_finish(ej->asks[i].call, GRPC_STATUS_UNAVAILABLE, "cannot read order %s: %s",
                           yw_quote(ej->asks[i].order_id, YW_QUOTE_MAX, q, sizeof q),
                           strerror(-rc));
        }
        free(ej);
        return;
    }
    svc->explain_jobs++;
    svc->refs++;
    yw_metric_add(svc->explain_reads, ej->n);
}

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
    attr_ejob_t *ej = svc->explain_next;
    if (ej == NULL && (ej = svc->explain_next = calloc(1, sizeof *ej)) == NULL) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ej->svc = svc;
    ej->asks[ej->n++] = (attr_eask_t){call, req->order_id, (int)req->model, 0};
    if (svc->explain_jobs < ATTR_EXPLAIN_READS || ej->n == ATTR_EXPLAIN_BATCH) {
        attr__ejob_submit(svc);
    }
}

/* ---- reports ---- */

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
    r.impressions = attr_sum_clamp(s.impressions);
    r.views = attr_sum_clamp(s.views);
    r.clicks = attr_sum_clamp(s.clicks);
    r.attributed_conversions = attr__credit(s.credit);
    r.attributed_gmv_minor = attr_sum_clamp(s.gmv);
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
    yw_page_query_t query; /* what its page tokens are bound to */
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
    int64_t creators[NT] = {0}, unlabeled = 0;
    attr_sum_t impr[NT] = {0}, views[NT] = {0}, clicks[NT] = {0}, credit[NT] = {0}, gmv[NT] = {0};
    attr_sum_t all_impr = 0, all_gmv = 0;
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
        row->impressions = attr_sum_clamp(impr[t]);
        row->views = attr_sum_clamp(views[t]);
        row->clicks = attr_sum_clamp(clicks[t]);
        row->impression_share = all_impr > 0 ? (double)impr[t] / (double)all_impr : 0.0;
        row->attributed_conversions = attr__credit(credit[t]);
        row->attributed_gmv_minor = attr_sum_clamp(gmv[t]);
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
    attr_sum_t un_count, un_gmv;
    attr_state_unattributed(st, r->d0, r->d1, &un_count, &un_gmv);
    rep.unattributed_conversions = attr_sum_clamp(un_count);
    rep.unattributed_gmv_minor = attr_sum_clamp(un_gmv);
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

/*
 * ListTopCreators once the labels are in. A tiers filter cannot be answered for a
 * creator tier scoring never labelled: while tier scoring fails, such a filter is
 * UNAVAILABLE (an empty page would say there are no such creators); labels it gave
 * before, however old, are used, as GetTierReport does, and tier_labels_error says so.
 */
static void attr__finish_top(attr_report_t *r, const char *tier_error)
{
    attr_state_t *st = &r->svc->st;
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
    if (to < k &&
        yw_page_token_encode(yw_app_page_key(r->svc->app), &r->query, to, NULL, token) != 0) {
        free(rows);
        free(ptrs);
        yw_call_finish(r->call, GRPC_STATUS_INTERNAL, "next_page_token: cannot encode");
        attr__report_free(r);
        return;
    }
    Yaowei__Attribution__V1__ListTopCreatorsResponse resp;
    yaowei__attribution__v1__list_top_creators_response__init(&resp);
    resp.n_creators = n;
    resp.creators = ptrs;
    resp.next_page_token = token;
    resp.currency = st->settings.currency;
    resp.tier_labels_error = (char *)(tier_error != NULL ? tier_error : "");
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
    if (yw_page_token_decode(yw_app_page_key(svc->app), &query, req->page_token,
                             attr_state_n_creators(&svc->st), &after, err, sizeof err) != 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
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
    r->tiers_mask = mask;
    r->order_by = order;
    r->offset = (size_t)after.n;
    r->page_size = page;
    r->query = query;
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

/**
 * A restatement: the stored conversions that are not in memory, read on a reader thread
 * and credited under the new settings into `tmp` (its rollups and conversion filter);
 * the ones in memory (`skip`) are the loop's to restate. Meanwhile nothing changes
 * conversions or rollups (the gate, attr__gate()).
 */
typedef struct st_attr_rsjob_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_sjob_t *sj;
    char **skip; /* the cached ones' ids, sorted (strcmp) */
    size_t n_skip;
    uint64_t *skip_seq; /* the pending ones' seqs (a stored row may be theirs), sorted */
    size_t n_skip_seq;
    attr_state_t tmp;
    int64_t now;
    int64_t horizon_before;
    uint64_t restated;
    int audit;    /* not a restatement: attr__audit() (sj is NULL) */
    uint64_t gen; /* svc->restatements when it began */
    char err[256];
} attr_rsjob_t;

static int attr__cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int attr__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int attr__restate_visit(void *arg, const attr_convset_t *one)
{
    attr_rsjob_t *rs = arg;
    const attr_stored_conv_t *sc = &one->convs[0];
    const char *id = sc->in.order_id;
    if (rs->n_skip > 0 && bsearch(&id, rs->skip, rs->n_skip, sizeof *rs->skip, attr__cmp_str)) {
        return 0;
    }
    /* A pending one's own row (not committed: not in the rollups yet). Not by id: a
     * pending duplicate of a stored order must not hide the stored one. */
    if (rs->n_skip_seq > 0 && bsearch(&sc->in.seq, rs->skip_seq, rs->n_skip_seq,
                                      sizeof *rs->skip_seq, attr__cmp_u64)) {
        return 0;
    }
    attr_conv_t *c = attr_conv_new(&sc->in, sc->refunded);
    const attr_stored_touch_t *t = attr_convset_touches(one, 0);
    int rc = c != NULL ? 0 : -ENOMEM;
    for (size_t k = 0; rc == 0 && k < sc->n_touches; k++) {
        rc = attr_conv_add_cand(&rs->tmp, c, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                t[k].occur_ns, 1);
    }
    if (rc == 0) {
        rc = attr_conv_apply(&rs->tmp, c);
    }
    if (rc == 0 && !attr_exposure_past_horizon(&rs->tmp, c->occur_ns, rs->now)) {
        rc = attr_state_conv_filter_add(&rs->tmp, c->vp_hash, c->occur_ns);
    }
    attr_conv_free(c);
    rs->restated++;
    return rc;
}

static grpc_status_code attr__rsjob_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_rsjob_t *rs = (attr_rsjob_t *)job;
    int rc = attr_store_scan_conversions(conn, attr__restate_visit, rs, rs->err, sizeof rs->err);
    if (rc != 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "restating the stored conversions: %.200s",
                 rs->err[0] ? rs->err : strerror(-rc));
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_OK;
}

static void attr__rsjob_free(attr_rsjob_t *rs)
{
    for (size_t i = 0; i < rs->n_skip; i++) {
        free(rs->skip[i]);
    }
    free(rs->skip);
    free(rs->skip_seq);
    attr_state_free(&rs->tmp);
    free(rs);
}

static int attr__rsjob_submit(attr_rsjob_t *rs);
static int attr__rsjob_start(attr_svc_t *svc, attr_sjob_t *sj, attr_rsjob_t **out);

/** One figure that differs (attr_state_audit()): logged, the first few. */
static void attr__audit_diff(void *arg, const char *creator, size_t len, int32_t day,
                             const char *what, int64_t got, int64_t want)
{
    int *n = arg;
    if ((*n)++ < 20) {
        yw_log(YW_LOG_ERROR, "audit: creator %.*s day %d %s: rollups %lld, recomputed %lld",
               (int)(creator != NULL ? len : 1), creator != NULL ? creator : "-", (int)day, what,
               (long long)got, (long long)want);
    }
}

/** An audit's stored conversions are read: the rollups are checked against them. */
static void attr__audit_done(attr_rsjob_t *rs, grpc_status_code status)
{
    attr_svc_t *svc = rs->svc;
    /* A restatement begun meanwhile changes the settings or the rollups under it. */
    if (status == GRPC_STATUS_OK && !svc->stopping && rs->gen == svc->restatements) {
        int n = 0;
        int rc = attr_state_audit(&svc->st, &rs->tmp, attr__audit_diff, &n);
        svc->audits++;
        if (rc != 0) {
            yw_metric_add(svc->audit_diffs, rc > 0 ? (uint64_t)rc : 1);
        }
        yw_log(rc == 0 ? YW_LOG_DEBUG : YW_LOG_ERROR,
               "audit %llu: %d rollup figures differ from the %llu stored and %zu cached "
               "conversions",
               (unsigned long long)svc->audits, rc, (unsigned long long)rs->restated,
               svc->st.n_cached);
    }
    attr__rsjob_free(rs);
    attr__gate_open(svc); /* (evicts once it opens) */
    attr__unref(svc);
}

/**
 * The rollup audit (--audit-rollups-ms, a test aid): at a tick, with nothing else in the
 * gate, the credit rollups are recomputed from the stored conversions not in memory plus
 * the cached ones, and compared (attr_state_audit()); differences are logged as errors.
 */
static void attr__audit(attr_svc_t *svc, int64_t now)
{
    if (svc->audit_ns == 0 || now - svc->audit_last_ns < svc->audit_ns || svc->restating ||
        svc->settings_busy || svc->restate != NULL || svc->stopping) {
        return;
    }
    svc->audit_last_ns = now;
    attr_rsjob_t *rs = NULL;
    (void)attr__rsjob_start(svc, NULL, &rs);
}

static void attr__on_rsjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_rsjob_t *rs = (attr_rsjob_t *)job;
    attr_svc_t *svc = rs->svc;
    attr_state_t *st = &svc->st;
    attr_sjob_t *sj = rs->sj;
    if (rs->audit) {
        attr__audit_done(rs, status);
        return;
    }
    if (status != GRPC_STATUS_OK) {
        if (!svc->stopping) {
            /* The new settings are stored: the rollups must follow. Again at a tick. */
            yw_log(YW_LOG_ERROR, "settings v%lld: %s (will retry)",
                   (long long)sj->j.settings.version, job->errmsg);
            svc->restate = rs;
            svc->refs--;
            return;
        }
        yw_call_finish(sj->call, GRPC_STATUS_UNAVAILABLE,
                       "settings: stored, but shutting down before they were applied; they "
                       "are in force after a restart");
        free(sj);
        attr__rsjob_free(rs);
        svc->settings_busy = 0;
        attr__gate_open(svc);
        attr__unref(svc);
        return;
    }
    int rc = attr_state_replace_credits(st, &rs->tmp, &sj->j.settings);
    if (rc == 0) {
        attr_state_conv_filter_take(st, &rs->tmp);
        int64_t now = attr__now();
        for (attr_conv_t *c = st->lru_head; c != NULL && rc == 0; c = c->lru_next) {
            if (!attr_exposure_past_horizon(st, c->occur_ns, now)) {
                rc = attr_state_conv_filter_add(st, c->vp_hash, c->occur_ns);
            }
        }
    }
    if (rc != 0) {
        yw_log(YW_LOG_ERROR,
               "settings v%lld: cannot restate the conversions (%s): reports "
               "stay wrong until a restart",
               (long long)sj->j.settings.version, strerror(-rc));
    }
    yw_log(YW_LOG_INFO,
           "settings v%lld in force; %llu conversions restated (%zu of them in memory); join "
           "horizon %llds (was %llds)",
           (long long)sj->j.settings.version, (unsigned long long)(rs->restated + st->n_cached),
           st->n_cached, (long long)(attr_settings_horizon(&sj->j.settings) / ATTR_NS_PER_S),
           (long long)(rs->horizon_before / ATTR_NS_PER_S));
    attr__reply_settings(sj->call, &st->settings);
    free(sj);
    attr__rsjob_free(rs);
    svc->settings_busy = 0;
    attr__gate_open(svc); /* (evicts once it opens) */
    /* The restatement's copy of the credit rollups was built on a reader thread: its
     * arena keeps the pages unless given back. */
    (void)malloc_trim(0);
    attr__unref(svc);
}

static int attr__rsjob_submit(attr_rsjob_t *rs)
{
    attr_svc_t *svc = rs->svc;
    attr_state_free(&rs->tmp);
    attr_state_init(&rs->tmp);
    rs->tmp.settings = rs->sj != NULL ? rs->sj->j.settings : svc->st.settings;
    attr_settings_rules(&rs->tmp.settings, &rs->tmp.rules);
    rs->restated = 0;
    rs->err[0] = '\0';
    rs->job.work = attr__rsjob_work;
    rs->job.done = attr__on_rsjob;
    int rc = yw_store_read(svc->store, &rs->job);
    if (rc == 0) {
        svc->refs++;
    }
    return rc;
}

/**
 * Closes the gate and starts reading the stored conversions that are not in memory into
 * a restatement under sj's settings, or (sj NULL) an audit under the current ones
 * (attr__audit()). Returns 0 (*out on its way) or a negative errno (the gate stays open).
 */
static int attr__rsjob_start(attr_svc_t *svc, attr_sjob_t *sj, attr_rsjob_t **out)
{
    attr_state_t *st = &svc->st;
    attr_rsjob_t *rs = calloc(1, sizeof *rs);
    int rc = rs != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        rs->svc = svc;
        rs->sj = sj;
        rs->audit = sj == NULL;
        svc->restatements += !rs->audit;
        rs->gen = svc->restatements;
        rs->now = attr__now();
        rs->horizon_before = attr_settings_horizon(&st->settings);
        attr_state_init(&rs->tmp);
        if ((rs->skip = malloc((st->orders.count ? st->orders.count : 1) * sizeof *rs->skip)) ==
                NULL ||
            (rs->skip_seq = malloc((st->pend_orders.count ? st->pend_orders.count : 1) *
                                   sizeof *rs->skip_seq)) == NULL) {
            rc = -ENOMEM;
        }
    }
    for (size_t i = 0; rc == 0 && i < st->pend_orders.cap; i++) {
        if (st->pend_orders.slots[i].hash != 0) {
            const attr_conv_t *c = st->pend_orders.slots[i].val;
            rs->skip_seq[rs->n_skip_seq++] = c->seq;
        }
    }
    for (size_t i = 0; rc == 0 && i < st->orders.cap; i++) {
        if (st->orders.slots[i].hash != 0) {
            const attr_conv_t *c = st->orders.slots[i].val;
            if ((rs->skip[rs->n_skip] = attr__strndup(c->order_id, c->order_id_len)) == NULL) {
                rc = -ENOMEM;
            } else {
                rs->n_skip++;
            }
        }
    }
    if (rc == 0) {
        qsort(rs->skip, rs->n_skip, sizeof *rs->skip, attr__cmp_str);
        qsort(rs->skip_seq, rs->n_skip_seq, sizeof *rs->skip_seq, attr__cmp_u64);
        attr__gate_close(svc);
        rc = attr__rsjob_submit(rs);
        if (rc != 0) {
            attr__gate_open(svc);
        }
    }
    if (rc != 0 && rs != NULL) {
        attr__rsjob_free(rs);
        rs = NULL;
    }
    *out = rs;
    return rc;
}

static void attr__on_sjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_sjob_t *sj = (attr_sjob_t *)job;
    attr_svc_t *svc = sj->svc;
    svc->refs--;
    if (status != GRPC_STATUS_OK) {
        svc->settings_busy = 0;
        yw_call_finish(sj->call, status, "settings: %s", job->errmsg);
        free(sj);
        return;
    }
    /* Durable: now restate every conversion under the new settings. Until that is done
     * nothing changes conversions or rollups (they wait), nothing leaves the cache, and
     * the conversions in memory (pending or cached) are restated from memory. */
    attr_rsjob_t *rs = NULL;
    int rc = attr__rsjob_start(svc, sj, &rs);
    if (rc != 0) {
        /* Stored but not in force: the next start-up credits everything under it. */
        yw_log(YW_LOG_ERROR, "settings v%lld stored but cannot be applied now: %s",
               (long long)sj->j.settings.version, strerror(-rc));
        svc->settings_busy = 0;
        yw_call_finish(sj->call, GRPC_STATUS_UNAVAILABLE,
                       "settings: stored, but cannot restate the conversions now (%s); they "
                       "are in force after a restart",
                       strerror(-rc));
        free(sj);
    }
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
    if (yw_disk_writable(yw_app_disk(svc->app), err, sizeof err) != 0) {
        yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", err);
        return;
    }
    if (strcmp(next.currency, st->settings.currency) != 0 &&
        (st->n_stored_convs > 0 || st->orders.count > 0 || st->pend_orders.count > 0)) {
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
            attr_exposure_store_pruned(svc->xs, p->j.seq);
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
    if (!attr_exposure_store_prunable(svc->xs, limit, &seq, path)) {
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

/* -- memory -- */

/** Evicts conversions over the cache's budget that nothing needs in memory any more. */
static void attr__evict(attr_svc_t *svc)
{
    attr_state_t *st = &svc->st;
    if (st->cache_budget == 0 || st->cache_bytes <= st->cache_budget) {
        return;
    }
    /* Conversions committed since the oldest exposure batch in flight began may be
     * joined by it: they stay until it is committed. */
    uint64_t guard = UINT64_MAX;
    for (attr_xbatch_t *xb = svc->active; xb != NULL; xb = xb->next_active) {
        if (xb->guard < guard) {
            guard = xb->guard;
        }
    }
    st->evict_guard = guard;
    size_t n = attr_state_evict(st);
    yw_metric_add(svc->cache_evictions, n);
}

/** The parts of yaowei_attribution_memory_bytes, in the order of svc->mem. */
static const char *const attr__parts[ATTR_N_MEM_PARTS] = {
    "rollups",          "creators",          "conversion_cache",
    "conversion_index", "conversion_filter", "conversion_keys",
    "refunds",          "exposures_pending", "index_runs",
    "dedup_filter",     "index_fences",      "work",
    "sqlite",           "malloc_in_use",     "malloc_free",
    "resident",
};

/** The process's resident set size in bytes (-1: unknown). */
static int64_t attr__rss(void)
{
    int64_t kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "VmRSS:", 6) == 0) {
                kib = strtoll(line + 6, NULL, 10);
                break;
            }
        }
        fclose(f);
    }
    return kib < 0 ? -1 : kib * 1024;
}

/**
 * Where the memory is: the state's parts, the index fences, SQLite, the allocator (in use
 * and free-but-kept, over all arenas), RSS. Gauges at every tick; a log line every
 * ATTR_MEMLOG_TICKS ticks (and with `force`).
 */
static void attr__account_memory(attr_svc_t *svc, int force)
{
    attr_state_mem_t m;
    attr_state_mem(&svc->st, &m);
    attr_exposure_store_info_t xi;
    attr_exposure_store_info(svc->xs, &xi);
    attr_ckey_info_t ci;
    attr_ckey_info(svc->ck, &ci);
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > ATTR_TRIM_BYTES) {
        /* Free memory the allocator kept (in holes between what is in use, after a burst
         * of ingestion): the pages go back to the kernel, so that the next burst starts
         * from what is in use. A few milliseconds every few seconds at most. */
        (void)malloc_trim(0);
        mi = mallinfo2();
    }
    int64_t v[ATTR_N_MEM_PARTS] = {
        (int64_t)m.rollups,
        (int64_t)m.creators,
        (int64_t)m.conversions,
        (int64_t)m.conv_index,
        (int64_t)m.conv_filter,
        (int64_t)ci.mem_bytes,
        (int64_t)m.refunds,
        (int64_t)m.pending,
        (int64_t)m.runs,
        (int64_t)m.bloom,
        (int64_t)xi.fence_bytes,
        (int64_t)m.work,
        (int64_t)sqlite3_memory_used(),
        (int64_t)(mi.uordblks + mi.hblkhd),
        (int64_t)mi.fordblks,
        attr__rss(),
    };
    for (int i = 0; i < ATTR_N_MEM_PARTS; i++) {
        yw_metric_gauge_set(svc->mem[i], v[i]);
    }
    if (!force && svc->ticks % ATTR_MEMLOG_TICKS != 0) {
        return;
    }
    char line[1024];
    size_t at = 0;
    for (int i = 0; i < ATTR_N_MEM_PARTS && at < sizeof line; i++) {
        int w = snprintf(line + at, sizeof line - at, "%s%s %.1f", i ? ", " : "", attr__parts[i],
                         (double)v[i] / 1048576.0);
        at += w > 0 ? (size_t)w : 0;
    }
    yw_log(YW_LOG_INFO,
           "memory MiB: %s; %zu conversions cached (budget %.1f MiB), %llu loaded, "
           "%llu evicted; at most %zu runs of exposures and %zu chunks of 1,024 "
           "pending exposures at once since the last line",
           line, svc->st.n_cached, (double)svc->st.cache_budget / 1048576.0,
           (unsigned long long)svc->st.n_loaded, (unsigned long long)svc->st.n_evicted,
           svc->st.runs_peak, svc->st.pend_peak);
    svc->st.runs_peak = svc->st.n_runs;
    svc->st.pend_peak = svc->st.n_pend;
}

static void attr__on_timer(uv_timer_t *t)
{
    attr_svc_t *svc = t->data;
    int64_t now = attr__now();
    attr__audit(svc, now);
    /* (The timer runs more often only for the audit.) */
    if (now - svc->maint_last_ns < (ATTR_MAINT_MS - 10) * (ATTR_NS_PER_S / 1000)) {
        return;
    }
    svc->maint_last_ns = now;
    svc->ticks++;
    if (!svc->restating) {
        attr_exposure_store_tick(svc->xs, now); /* (seals nothing while commits wait) */
    }
    svc->mark_due = 1;
    attr__schedule_persist(svc);
    attr__maybe_prune_segment(svc, now);
    if (svc->restate != NULL && !svc->stopping) {
        attr_rsjob_t *rs = svc->restate;
        svc->restate = NULL;
        if (attr__rsjob_submit(rs) != 0) {
            svc->restate = rs;
        }
    }
    if (!svc->restating) {
        attr_state_conv_filter_prune(&svc->st, now);
        attr_ckey_tick(svc->ck, now - attr_settings_horizon(&svc->st.settings));
    }
    attr__evict(svc);
    attr__account_memory(svc, 0);
    if (svc->st.bloom_thin > svc->bloom_thin_logged) {
        svc->bloom_thin_logged = svc->st.bloom_thin;
        yw_log(YW_LOG_WARN,
               "dedup filters: --dedup-filter-mb %zu is short for the exposures kept: a new "
               "filter got fewer than %d bits per id (more ids are checked on disk)",
               svc->st.bloom_budget >> 20, ATTR_BLOOM_BITS);
    }
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

/* -- the snapshot of a clean stop (attr_snap.h) -- */

/** The marks of the data now: settings, conversions, refunds, touches, pruned, log. */
static void attr__marks_of(const attr_svc_t *svc, const attr_load_t *ld, attr_snap_marks_t *m)
{
    memset(m, 0, sizeof *m);
    m->settings = svc->st.settings;
    m->conversions = ld->conversions;
    m->max_seq = ld->max_seq;
    m->amount_sum = ld->amount_sum;
    m->refunds = ld->refunds;
    m->refund_sum = ld->refund_sum;
    m->touches = ld->touches;
    m->pruned_n = ld->n_pruned;
    m->pruned_hash = attr_snap_pruned_hash(ld->pruned, ld->n_pruned);
}

static void attr__snap_path(const attr_svc_t *svc, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", svc->data_dir, ATTR_SNAP_FILE);
}

static void attr__fini_done(attr_svc_t *svc);

/** The marks of a clean stop, read on the writer's queue (after every write). */
typedef struct st_attr_mjob_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_load_t ld;
} attr_mjob_t;

static grpc_status_code attr__mjob_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_mjob_t *mj = (attr_mjob_t *)job;
    grpc_status_code code = attr_store_marks(conn, &mj->ld);
    if (code != GRPC_STATUS_OK) {
        snprintf(job->errmsg, sizeof job->errmsg, "%s", mj->ld.err);
    }
    return code;
}

static void attr__on_mjob(yw_store_job_t *job, grpc_status_code status)
{
    attr_mjob_t *mj = (attr_mjob_t *)job;
    attr_svc_t *svc = mj->svc;
    char path[4200], err[512] = "";
    attr__snap_path(svc, path, sizeof path);
    attr_snap_marks_t m;
    attr__marks_of(svc, &mj->ld, &m);
    int rc = status == GRPC_STATUS_OK ? 0 : -EIO;
    if (rc != 0) {
        snprintf(err, sizeof err, "reading its marks: %s", job->errmsg);
    } else if ((rc = attr_snap_log_end(svc->exp_dir, &m.log_last_seg, &m.log_last_size)) != 0) {
        snprintf(err, sizeof err, "the exposure log's end: %s", strerror(-rc));
    } else if (m.conversions != svc->st.n_stored_convs) {
        rc = -EIO;
        snprintf(err, sizeof err, "%llu conversions in memory, %llu stored",
                 (unsigned long long)svc->st.n_stored_convs, (unsigned long long)m.conversions);
    }
    uint64_t t0 = uv_hrtime();
    if (rc == 0) {
        rc = attr_snap_write(path, &svc->st, &m, err, sizeof err);
    }
    if (rc == 0) {
        yw_log(YW_LOG_INFO, "snapshot written for the next start: %u creators, %llu conversions, "
                            "%.0f ms",
               attr_state_n_creators(&svc->st), (unsigned long long)m.conversions,
               (double)(uv_hrtime() - t0) / 1e6);
    } else {
        yw_log(YW_LOG_WARN, "no snapshot written (the next start recomputes): %s", err);
    }
    free(mj->ld.pruned);
    free(mj);
    attr__unref(svc); /* the job (the hold stays) */
    attr__fini_done(svc);
}

static void attr__on_fini_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data); /* the hold of attr_service_fini_async(): frees */
}

/** The end of stopping: the store closes next, the hold goes with the timer. */
static void attr__fini_done(attr_svc_t *svc)
{
    svc->fini_wait = 0;
    yw_app_fini_done(svc->app);
    uv_timer_stop(&svc->fini_timer);
    uv_close((uv_handle_t *)&svc->fini_timer, attr__on_fini_timer_closed);
}

/**
 * Stopping (the timer of attr_service_fini_async()): once only the hold is left (the
 * log, the index builders, the key index, the jobs are done), stores the touches still
 * in memory, then writes the snapshot (unless memory is suspect), then lets the store
 * close.
 */
static void attr__fini_step(uv_timer_t *t)
{
    attr_svc_t *svc = t->data;
    /* (A persist job or the marks' job in flight holds a reference of its own.) */
    if (!svc->fini_wait || svc->refs != 1) {
        return;
    }
    if (svc->st.n_persist > 0 && !svc->suspect) {
        attr__schedule_persist(svc); /* the timer looks again once it is done */
        if (svc->persist_busy) {
            return;
        }
        svc->suspect = 1; /* cannot store them now: the next start looks them up again */
    }
    char path[4200];
    attr__snap_path(svc, path, sizeof path);
    if (svc->suspect) {
        yw_log(YW_LOG_WARN, "no snapshot written: memory may disagree with the data after an "
                            "error logged before (the next start recomputes)");
        (void)unlink(path);
        attr__fini_done(svc);
        return;
    }
    attr_mjob_t *mj = calloc(1, sizeof *mj);
    if (mj != NULL) {
        mj->svc = svc;
        mj->job.work = attr__mjob_work;
        mj->job.done = attr__on_mjob;
        if (yw_store_write(svc->store, &mj->job) == 0) {
            svc->refs++;
            return;
        }
        free(mj);
    }
    yw_log(YW_LOG_WARN, "no snapshot written: cannot read its marks");
    attr__fini_done(svc);
}

/**
 * Start-up from the snapshot of the last clean stop, when it matches the data. Returns
 * 1 when it was loaded (the rollups, credits and conversion filter are in the state),
 * 0 when the start-up recomputes (`st` is empty again). The file is deleted either way:
 * the state moves on from here.
 */
static int attr__snap_start(attr_svc_t *svc, attr_snap_t *snap, const attr_load_t *ld,
                            uint64_t ck_safe)
{
    char path[4200], why[512] = "";
    attr__snap_path(svc, path, sizeof path);
    uint64_t t0 = uv_hrtime();
    attr_snap_marks_t now;
    attr__marks_of(svc, ld, &now);
    int used = 0, rc = attr_snap_log_end(svc->exp_dir, &now.log_last_seg, &now.log_last_size);
    if (rc != 0) {
        snprintf(why, sizeof why, "the exposure log's end: %s", strerror(-rc));
    } else if (!attr_snap_matches(snap, &now, why, sizeof why)) {
        /* why says what */
    } else if (ck_safe < ld->max_seq) {
        snprintf(why, sizeof why, "the conversion key index lacks the keys after %llu",
                 (unsigned long long)ck_safe);
    } else if (attr_snap_load(snap, &svc->st, why, sizeof why) != 0) {
        /* why says what */
    } else if (attr_snap_check_totals(&svc->st, &now, why, sizeof why)) {
        used = 1;
    }
    if (!used) {
        /* Back to an empty state with the settings loaded. */
        attr_state_t *st = &svc->st;
        attr_settings_t set = st->settings;
        size_t cache = st->cache_budget, bloom = st->bloom_budget;
        uint64_t stored = st->n_stored_convs;
        attr_state_free(st);
        attr_state_init(st);
        st->settings = set;
        attr_settings_rules(&set, &st->rules);
        st->cache_budget = cache;
        st->bloom_budget = bloom;
        st->n_stored_convs = stored;
        st->defer = 1;
        yw_log(YW_LOG_WARN, "snapshot %s not used (recomputing from the data): %s", path, why);
    } else {
        yw_log(YW_LOG_INFO, "snapshot loaded and checked: %u creators, %llu conversions, %.0f ms",
               attr_state_n_creators(&svc->st), (unsigned long long)now.conversions,
               (double)(uv_hrtime() - t0) / 1e6);
    }
    if (unlink(path) != 0) {
        yw_log(YW_LOG_WARN, "%s: cannot delete: %s", path, strerror(errno));
    }
    return used;
}

/* -- the stored conversions at start-up -- */

typedef struct st_attr_credit_ctx_t {
    attr_svc_t *svc;
    int64_t now;
    uint64_t ck_safe; /* the key index has the keys up to this seq */
    attr_touch_mark_t mark; /* the stored touches are complete up to it */
    attr_conv_t *c;
    uint64_t seen, looked_up, looked_up_after, found;
    int rc;
} attr_credit_ctx_t;

/** A candidate of the conversion being credited, found in the index files. */
static int attr__stored_cand(void *arg, const attr_xlog_event_t *ev)
{
    attr_credit_ctx_t *x = arg;
    attr_state_t *st = &x->svc->st;
    if (attr_exposure_past_horizon(st, ev->occur_ns, x->now)) {
        return 0;
    }
    char eid[ATTR_ID_MAX + 1];
    if (ev->event_id.len > ATTR_ID_MAX) {
        return 0; /* longer than any valid id */
    }
    memcpy(eid, ev->event_id.s, ev->event_id.len);
    eid[ev->event_id.len] = '\0';
    size_t before = x->c->n_cands;
    int rc = attr_conv_add_cand(st, x->c, eid, ev->creator.s, ev->creator.len, ev->note.s,
                                ev->note.len, ev->kind, ev->watch_ms, ev->occur_ns, 0);
    x->found += x->c->n_cands - before;
    return rc;
}

/**
 * One stored conversion at start-up: into the cache, with its stored touches and those
 * the index files hold that it does not have yet (found after a crash that came before
 * they were stored: they are stored now); credited into the rollups; in the conversion
 * filter when within the horizon. The cache keeps what its budget allows.
 */
static int attr__credit_one(void *arg, const attr_convset_t *one)
{
    attr_credit_ctx_t *x = arg;
    attr_svc_t *svc = x->svc;
    attr_state_t *st = &svc->st;
    const attr_stored_conv_t *sc = &one->convs[0];
    attr_conv_t *c = NULL;
    int rc = attr_conv_load(st, &sc->in, sc->refunded, &c);
    const attr_stored_touch_t *t = attr_convset_touches(one, 0);
    for (size_t k = 0; rc == 0 && k < sc->n_touches; k++) {
        rc = attr_conv_add_cand(st, c, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                t[k].occur_ns, 1);
    }
    /* An order older than the horizon cannot have a touch still kept. */
    if (rc == 0 && !attr_exposure_past_horizon(st, c->occur_ns, x->now)) {
        attr_xjoin_q_t q = {c->vp_hash,    c->viewer,      c->product,
                            c->viewer_len, c->product_len, c->occur_ns};
        x->c = c;
        /* Its stored touches are complete up to the mark: only the exposures after. */
        int after = c->seq <= x->mark.seq;
        rc = attr_exposure_store_find_cands(svc->xs, &q, after ? x->mark.seg : 0,
                                            after ? x->mark.off : 0, attr__stored_cand, x);
        x->looked_up++;
        x->looked_up_after += after;
        if (rc == 0) {
            rc = attr_state_conv_filter_add(st, c->vp_hash, c->occur_ns);
        }
    }
    if (rc == 0 && c->seq > x->ck_safe) {
        rc = attr_ckey_add(svc->ck, c->vp_hash, c->seq, c->occur_ns);
        if (rc == 0 && attr_ckey_full(svc->ck)) {
            /* Not all visited yet: what the index had stays what it claims. */
            rc = attr_ckey_seal(svc->ck, x->ck_safe);
        }
    }
    if (rc == 0) {
        rc = attr_conv_loaded(st, c, 1);
    }
    if (rc == -EEXIST) {
        rc = 0; /* cannot happen: order ids are unique */
    }
    if (++x->seen % 1024 == 0) {
        attr__evict(svc);
    }
    return rc;
}

static grpc_status_code attr__credit_scan(yw_store_conn_t *conn, void *arg)
{
    attr_credit_ctx_t *x = arg;
    char err[256] = "";
    x->rc = attr_store_scan_conversions(conn, attr__credit_one, x, err, sizeof err);
    if (x->rc != 0) {
        yw_log(YW_LOG_ERROR, "crediting the stored conversions: %s",
               err[0] ? err : strerror(-x->rc));
        return GRPC_STATUS_INTERNAL;
    }
    return GRPC_STATUS_OK;
}

static int attr__credit_stored(attr_svc_t *svc, int64_t now, uint64_t ck_safe,
                               const attr_touch_mark_t *mark, attr_exposure_store_stats_t *xst,
                               uint64_t *after, char *err, size_t errlen)
{
    attr_credit_ctx_t x = {.svc = svc, .now = now, .ck_safe = ck_safe, .mark = *mark};
    char serr[256] = "";
    grpc_status_code code = yw_store_run_sync(svc->store, attr__credit_scan, &x, serr, sizeof serr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "crediting the stored conversions: %s",
                 x.rc != 0 ? strerror(-x.rc) : serr);
        return x.rc != 0 ? x.rc : -EIO;
    }
    xst->conversions_looked_up = x.looked_up;
    *after = x.looked_up_after;
    xst->candidates_found = x.found;
    attr__evict(svc);
    return 0;
}

static void attr__register_metrics(attr_svc_t *svc)
{
    yw_metrics_t *m = yw_app_metrics(svc->app);
    if (m == NULL) {
        return;
    }
    for (int i = 0; i < ATTR_N_MEM_PARTS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "part=%s", attr__parts[i]);
        (void)yw_metrics_gauge(m, "yaowei_attribution_memory_bytes",
                               "Bytes of memory attribution holds, by part (estimates; "
                               "malloc_*: the allocator over all arenas; resident: RSS).",
                               labels, &svc->mem[i]);
    }
    (void)yw_metrics_counter(m, "yaowei_attribution_conversion_cache_total",
                             "Conversions loaded into or evicted from the cache.", "event=loaded",
                             &svc->cache_loads);
    (void)yw_metrics_counter(m, "yaowei_attribution_conversion_cache_total", NULL, "event=evicted",
                             &svc->cache_evictions);
    (void)yw_metrics_counter(m, "yaowei_attribution_conversion_cache_total", NULL,
                             "event=explain_read", &svc->explain_reads);
    (void)yw_metrics_counter(m, "yaowei_attribution_audit_differences_total",
                             "Rollup figures found to differ from the conversions by the audit "
                             "(--audit-rollups-ms; always 0 unless there is a bug).",
                             NULL, &svc->audit_diffs);
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
    const char *audit = yw_app_option(app, "audit-rollups-ms");
    if (audit != NULL) {
        char *end = NULL;
        long long v = strtoll(audit, &end, 10);
        if (end == audit || *end != '\0' || v < 0 || v > 86400000) {
            snprintf(err, errlen, "--audit-rollups-ms: must be within 0..86400000, got %s", audit);
            attr__svc_free(svc);
            return -EINVAL;
        }
        svc->audit_ns = v * (ATTR_NS_PER_S / 1000);
    }
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
    long long run_mb = ATTR_EXPOSURE_STORE_RUN_BYTES >> 20, pending_mb = ATTR_PENDING_MB_DEFAULT;
    const char *rmb = yw_app_option(app, "index-run-mb");
    const char *pmb = yw_app_option(app, "ingest-pending-mb");
    if (rmb != NULL) {
        char *end = NULL;
        run_mb = strtoll(rmb, &end, 10);
        if (end == rmb || *end != '\0' || run_mb < 1 || run_mb > 4096) {
            snprintf(err, errlen, "--index-run-mb: must be within 1..4096, got %s", rmb);
            attr__svc_free(svc);
            return -EINVAL;
        }
    }
    if (pmb != NULL) {
        char *end = NULL;
        pending_mb = strtoll(pmb, &end, 10);
        if (end == pmb || *end != '\0' || pending_mb < 1 || pending_mb > 65536) {
            snprintf(err, errlen, "--ingest-pending-mb: must be within 1..65536, got %s", pmb);
            attr__svc_free(svc);
            return -EINVAL;
        }
    }
    svc->run_bytes = (size_t)run_mb << 20;
    svc->pending_budget = (size_t)pending_mb << 20;
    long long cache_mb = ATTR_CACHE_MB_DEFAULT;
    const char *cache = yw_app_option(app, "conversion-cache-mb");
    if (cache != NULL) {
        char *end = NULL;
        cache_mb = strtoll(cache, &end, 10);
        if (end == cache || *end != '\0' || cache_mb < 0 || cache_mb > (1 << 20)) {
            snprintf(err, errlen, "--conversion-cache-mb: must be within 0..1048576, got %s",
                     cache);
            attr__svc_free(svc);
            return -EINVAL;
        }
    }
    /* 0: keep only what must stay (every conversion goes back to the database as soon
     * as it may: the tests' way to read everything back from it). */
    attr_state_set_cache_budget(&svc->st, cache_mb > 0 ? (size_t)cache_mb << 20 : 1);
    long long bloom_mb = ATTR_BLOOM_MB_DEFAULT;
    const char *bloom = yw_app_option(app, "dedup-filter-mb");
    if (bloom != NULL) {
        char *end = NULL;
        bloom_mb = strtoll(bloom, &end, 10);
        if (end == bloom || *end != '\0' || bloom_mb < 0 || bloom_mb > (1 << 20)) {
            snprintf(err, errlen, "--dedup-filter-mb: must be within 0..1048576, got %s", bloom);
            attr__svc_free(svc);
            return -EINVAL;
        }
    }
    svc->st.bloom_budget = (size_t)bloom_mb << 20; /* 0: no limit */
    snprintf(svc->data_dir, sizeof svc->data_dir, "%s", yw_app_option(app, "data-dir"));
    snprintf(svc->exp_dir, sizeof svc->exp_dir, "%s/exposures", svc->data_dir);
    if (mkdir(svc->exp_dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", svc->exp_dir, strerror(errno));
        attr__svc_free(svc);
        return -errno;
    }
    int64_t now = attr__now();

    /* 0. The snapshot of the last clean stop, if any: used in step 2 if it matches. */
    char snap_path[4200], snap_err[512] = "";
    attr__snap_path(svc, snap_path, sizeof snap_path);
    attr_snap_t *snap = NULL;
    int src = attr_snap_read(snap_path, &snap, snap_err, sizeof snap_err);
    if (src != 0 && src != -ENOENT) {
        yw_log(YW_LOG_WARN, "snapshot not used (recomputing from the data): %s", snap_err);
        (void)unlink(snap_path);
    }

    /* 1. The database: settings, the rollups of pruned segments (the conversions stay
     *    there: step 3 goes through them). */
    attr_load_t ld;
    memset(&ld, 0, sizeof ld);
    ld.st = &svc->st;
    ld.now_ns = now;
    ld.skip_rollups = snap != NULL;
    ld.want_marks = snap != NULL;
    svc->st.defer = 1;
    char serr[256] = "";
    grpc_status_code code = yw_store_run_sync(svc->store, attr_store_load, &ld, serr, sizeof serr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "loading attribution.db: %s", ld.err[0] ? ld.err : serr);
        free(ld.pruned);
        attr_snap_free(snap);
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
            attr_snap_free(snap);
            attr__svc_free(svc);
            return -EIO;
        }
        svc->st.settings = sj.settings;
    }

    /* 2. The conversion key index; the snapshot, when it matches the data (attr_snap.h):
     *    it has the rollups, the credits and the conversion filter that step 3 and 4
     *    would otherwise recompute; else the rollups of pruned segments it stood for. */
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(app));
    uint64_t ck_safe = 0;
    char ck_dir[4200];
    snprintf(ck_dir, sizeof ck_dir, "%s/conversion-keys", svc->data_dir);
    int rc = 0;
    if (mkdir(ck_dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", ck_dir, strerror(errno));
        rc = -errno;
    } else if ((rc = attr_ckey_open(loop, ck_dir, &svc->ck, &ck_safe, err, errlen)) == 0) {
        svc->refs++;
    }
    int from_snap = 0;
    if (rc == 0 && snap != NULL) {
        from_snap = attr__snap_start(svc, snap, &ld, ck_safe);
        if (!from_snap) {
            code = yw_store_run_sync(svc->store, attr_store_load_rollups, &ld, serr, sizeof serr);
            if (code != GRPC_STATUS_OK) {
                snprintf(err, errlen, "loading attribution.db: %s", ld.err[0] ? ld.err : serr);
                rc = -EIO;
            }
        }
    }
    attr_snap_free(snap);
    if (rc != 0) {
        free(ld.pruned);
        if (svc->ck != NULL) {
            svc->stopping = 1;
            attr_ckey_close(svc->ck, attr__on_xs_closed, svc); /* frees at the last ref */
            return rc;
        }
        attr__svc_free(svc);
        return rc;
    }

    /* 3. The exposures: the index files cover most of the log; what they do not is read
     *    and indexed (and counted, unless the snapshot has the counts). */
    attr_exposure_store_stats_t xst;
    memset(&xst, 0, sizeof xst);
    svc->st.skip_counts = from_snap;
    rc = attr_exposure_store_open(loop, svc->exp_dir, svc->run_exposures, &svc->st, ld.pruned,
                                  ld.n_pruned, now, &svc->xs, &xst, err, errlen);
    if (svc->xs != NULL) {
        attr_exposure_store_set_run_bytes(svc->xs, svc->run_bytes);
    }
    svc->st.skip_counts = 0;
    free(ld.pruned);
    svc->st.defer = 0;
    if (rc != 0 && svc->xs == NULL) {
        svc->stopping = 1;
        attr_ckey_close(svc->ck, attr__on_xs_closed, svc); /* frees at the last ref */
        svc->ck = NULL;
        return rc;
    }
    svc->refs++; /* the exposure store */
    /* 4. Unless the snapshot was loaded: the stored conversions, one after the other:
     *    credited into the rollups, their touches looked up again in the index files
     *    (the ones found since are stored), their keys indexed where the index lacks them. */
    /* Seqs are never reused. Invariant: a new conversion's seq is above every seq a
     * claim was made up to, not only above the highest stored one. The key index's
     * files claim "every stored conversion up to `safe` has its key here" and the touch
     * mark "every conversion up to its seq has its touches stored"; seqs burned by
     * duplicates above the highest stored seq were under those claims, and reusing them
     * after a restart put a new conversion under a claim that did not cover it: after a
     * kill -9 its key was never indexed again, and late exposures missed it for good
     * (issue 11: the differential test, seed 2425). */
    svc->next_conv_seq = ld.max_seq;
    if (ck_safe > svc->next_conv_seq) {
        svc->next_conv_seq = ck_safe;
    }
    if (ld.touch_mark.seq > svc->next_conv_seq) {
        svc->next_conv_seq = ld.touch_mark.seq;
    }
    svc->next_conv_seq++;
    uint64_t after_mark = 0;
    if (rc == 0 && !from_snap) {
        rc = attr__credit_stored(svc, now, ck_safe, &ld.touch_mark, &xst, &after_mark, err,
                                 errlen);
    }
    /* Every touch of an exposure in the log now is stored or in the persist list: the
     * first touch mark (attr__touch_mark()) covers the log up to its end. */
    svc->touch_mark = ld.touch_mark;
    if (rc == 0) {
        uint64_t seg = 0, size = 0;
        (void)attr_snap_log_end(svc->exp_dir, &seg, &size);
        svc->committed_seg = seg;
        svc->committed_off = size;
    }
    if (rc == 0) {
        attr__register_metrics(svc);
    }

    /* 5. Tier scoring; maintenance. */
    const char *tier_addr = yw_app_option(app, "tier-scoring-addr");
    if (rc == 0 && (rc = attr_tier_create(yw_app_runtime(app), tier_addr, svc->tier_ttl_ns,
                                          &svc->tier)) != 0) {
        snprintf(err, errlen, "--tier-scoring-addr %s: cannot open a channel", tier_addr);
    }
    if (rc == 0 && (rc = uv_timer_init(loop, &svc->timer)) == 0) {
        svc->timer.data = svc;
        svc->timer_open = 1;
        svc->refs++;
        uint64_t every = ATTR_MAINT_MS;
        if (svc->audit_ns > 0 && svc->audit_ns / (ATTR_NS_PER_S / 1000) < ATTR_MAINT_MS) {
            every = (uint64_t)(svc->audit_ns / (ATTR_NS_PER_S / 1000));
        }
        svc->maint_last_ns = now;
        rc = uv_timer_start(&svc->timer, attr__on_timer, every, every);
        if (rc != 0) {
            snprintf(err, errlen, "maintenance timer: %s", uv_strerror(rc));
        }
    }
    if (rc == 0 && (rc = uv_timer_init(loop, &svc->slice_timer)) == 0) {
        svc->slice_timer.data = svc;
        svc->slice_timer_open = 1;
        svc->refs++;
    }
    if (rc != 0) {
        /* The app exits; release what was started (the loop still runs close callbacks). */
        svc->stopping = 1;
        attr_tier_destroy(svc->tier);
        svc->tier = NULL;
        if (svc->timer_open) {
            uv_close((uv_handle_t *)&svc->timer, attr__on_timer_closed);
        }
        if (svc->slice_timer_open) {
            svc->slice_timer_open = 0;
            uv_close((uv_handle_t *)&svc->slice_timer, attr__on_timer_closed);
        }
        if (svc->ck != NULL) {
            attr_ckey_close(svc->ck, attr__on_xs_closed, svc);
            svc->ck = NULL;
        }
        attr_exposure_store_close(svc->xs, attr__on_xs_closed, svc);
        return rc;
    }
    yw_app_set_state(app, svc);
    attr_exposure_store_info_t xi;
    attr_exposure_store_info(svc->xs, &xi);
    yw_log(YW_LOG_INFO,
           "attribution ready%s: %llu conversions (%zu in memory, cache %lld MiB), %llu "
           "rollup rows of pruned segments; exposure log: %llu segments, %llu exposures in %llu "
           "index files (%llu dropped), %llu read from the log's tail into %llu new ones "
           "(%llu duplicates skipped); %llu conversions looked up (%llu only after the touch "
           "mark), %llu touches found; "
           "settings v%lld, join horizon %llds",
           from_snap ? " (from the snapshot)" : "", (unsigned long long)ld.conversions,
           svc->st.n_cached, cache_mb,
           (unsigned long long)ld.rollups, (unsigned long long)xst.segments,
           (unsigned long long)xst.indexed_events, (unsigned long long)xst.files,
           (unsigned long long)xst.files_dropped, (unsigned long long)xst.tail_events,
           (unsigned long long)xst.tail_runs, (unsigned long long)xst.tail_duplicates,
           (unsigned long long)xst.conversions_looked_up, (unsigned long long)after_mark,
           (unsigned long long)xst.candidates_found,
           (long long)svc->st.settings.version,
           (long long)(attr_settings_horizon(&svc->st.settings) / ATTR_NS_PER_S));
    attr__account_memory(svc, 1);
    attr__schedule_persist(svc);
    return 0;
}

void attr_service_fini(yw_app_t *app)
{
    attr_svc_t *svc = yw_app_state(app);
    if (svc == NULL) {
        return;
    }
    svc->stopping = 1;
    if (svc->explain_next != NULL) {
        attr__ejob_submit(svc); /* the calls waiting are answered */
    }
    if (svc->restate != NULL) {
        /* A restatement waiting to be tried again: it will be at the next start-up (the
         * settings are stored); what waited for it goes on now. */
        attr_rsjob_t *rs = svc->restate;
        svc->restate = NULL;
        yw_call_finish(rs->sj->call, GRPC_STATUS_UNAVAILABLE,
                       "settings: stored, but shutting down before they were applied; they "
                       "are in force after a restart");
        free(rs->sj);
        attr__rsjob_free(rs);
        svc->settings_busy = 0;
        attr__gate_open(svc);
    }
    /* Every call is gone (the server stopped). Lookups finish, the log syncs, the open
     * run is indexed (blocking: shutdown). */
    attr_tier_destroy(svc->tier);
    svc->tier = NULL;
    uv_timer_stop(&svc->timer);
    uv_close((uv_handle_t *)&svc->timer, attr__on_timer_closed);
    svc->slice_timer_open = 0; /* no call is left, so none is queued */
    uv_close((uv_handle_t *)&svc->slice_timer, attr__on_timer_closed);
    /* The keys in memory to a file, so that the next start finds every key indexed (and
     * may start from the snapshot). */
    if (attr_ckey_seal(svc->ck, attr__safe_seq(svc)) != 0) {
        yw_log(YW_LOG_WARN, "cannot index the last conversion keys (the next start does)");
    }
    attr_ckey_close(svc->ck, attr__on_xs_closed, svc);
    svc->ck = NULL;
    /* Gone once closed: a restatement or an audit still reading (it holds the gate)
     * must not reach it when it ends (attr__gate_open()). */
    attr_exposure_store_t *xs = svc->xs;
    svc->xs = NULL;
    attr_exposure_store_close(xs, attr__on_xs_closed, svc);
    /* attr_service_fini_async() goes on once they are closed. */
}

void attr_service_fini_async(yw_app_t *app)
{
    attr_svc_t *svc = yw_app_state(app);
    if (svc == NULL) {
        yw_app_fini_done(app);
        return;
    }
    yw_app_set_state(app, NULL);
    /* A hold: the service stays until the snapshot is written (attr__fini_step()). Store
     * jobs still queued complete before the store closes. */
    svc->refs++;
    svc->fini_wait = 1;
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(app));
    int rc = uv_timer_init(loop, &svc->fini_timer);
    if (rc != 0) {
        yw_log(YW_LOG_WARN, "no snapshot written: %s", uv_strerror(rc));
        svc->fini_wait = 0;
        yw_app_fini_done(app);
        attr__unref(svc);
        return;
    }
    svc->fini_timer.data = svc;
    if ((rc = uv_timer_start(&svc->fini_timer, attr__fini_step, 0, ATTR_FINI_POLL_MS)) != 0) {
        yw_log(YW_LOG_WARN, "no snapshot written: %s", uv_strerror(rc));
        attr__fini_done(svc);
    }
}

/* ---- the method table ---- */

#define ATTR_M(name) "/" ATTR_SERVICE_NAME "/" name

static const yw_method_t attr_methods[] = {
    {ATTR_M("RecordExposures"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_exposures_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_exposures, NULL, NULL,
     "events"},
    {ATTR_M("RecordConversions"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_conversions_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_conversions, NULL, NULL,
     "events"},
    {ATTR_M("RecordRefunds"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__record_refunds_request__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_record_refunds, NULL, NULL,
     "events"},
    {ATTR_M("IngestExposures"), YW_METHOD_CLIENT_STREAMING,
     &yaowei__attribution__v1__exposure_event__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_ingest_exposure,
     attr__on_ingest_exposures_end, NULL, ""},
    {ATTR_M("IngestConversions"), YW_METHOD_CLIENT_STREAMING,
     &yaowei__attribution__v1__conversion_event__descriptor,
     &yaowei__attribution__v1__ingest_summary__descriptor, attr__on_ingest_conversion,
     attr__on_ingest_conversions_end, NULL, ""},
    {ATTR_M("ExplainConversion"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__explain_conversion_request__descriptor,
     &yaowei__attribution__v1__conversion_attribution__descriptor, attr__on_explain, NULL, NULL,
     NULL},
    {ATTR_M("GetCreatorReport"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_creator_report_request__descriptor,
     &yaowei__attribution__v1__creator_report__descriptor, attr__on_creator_report, NULL, NULL,
     NULL},
    {ATTR_M("GetTierReport"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_tier_report_request__descriptor,
     &yaowei__attribution__v1__tier_report__descriptor, attr__on_tier_report, NULL, NULL, NULL},
    {ATTR_M("ListTopCreators"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__list_top_creators_request__descriptor,
     &yaowei__attribution__v1__list_top_creators_response__descriptor, attr__on_top_creators, NULL,
     NULL, NULL},
    {ATTR_M("GetAttributionSettings"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__get_attribution_settings_request__descriptor,
     &yaowei__attribution__v1__attribution_settings__descriptor, attr__on_get_settings, NULL, NULL,
     NULL},
    {ATTR_M("UpdateAttributionSettings"), YW_METHOD_UNARY,
     &yaowei__attribution__v1__update_attribution_settings_request__descriptor,
     &yaowei__attribution__v1__attribution_settings__descriptor, attr__on_update_settings, NULL,
     NULL, NULL},
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
    {"index-run-mb", "YW_INDEX_RUN_MB", "16",
     "a run is also indexed once its exposures' strings take this many MiB (wide "
     "exposures; the open run and at most 2 sealed ones are in memory)",
     NULL},
    {"ingest-pending-mb", "YW_INGEST_PENDING_MB", "64",
     "MiB of exposures read and not yet committed, all calls together: past it each "
     "stream or RecordExposures call waits with one frame in flight",
     NULL},
    {"conversion-cache-mb", "YW_CONVERSION_CACHE_MB", "16",
     "MiB of conversions kept in memory (the database holds them all; about 600 bytes each; "
     "0: only those in use)",
     NULL},
    {"audit-rollups-ms", "YW_AUDIT_ROLLUPS_MS", "0",
     "a test aid: every so many milliseconds, check the credit rollups against the stored and "
     "cached conversions (reads every stored conversion; differences are logged and counted "
     "in yaowei_attribution_audit_differences_total; 0: never)",
     NULL},
    {"dedup-filter-mb", "YW_DEDUP_FILTER_MB", "64",
     "MiB the Bloom filters of indexed event ids may hold (2 bytes per exposure kept; past it "
     "new filters get fewer bits and more ids are checked on disk; 0: no limit)",
     NULL},
};
const size_t attr_n_options = sizeof attr_options / sizeof attr_options[0];
_Static_assert(sizeof attr_options / sizeof attr_options[0] == ATTR_N_OPTIONS, "ATTR_N_OPTIONS");
