/*
 * attr_node_parts.c — the partitions a cluster node holds, each an engine over its own
 * directory (--data-dir/partitions/<p>), built from the partition's log.
 *
 * A partition's life on a node:
 *   OFF       --(the lease is ours, or will be: attr_cluster_ahead())--> BUILDING
 *   BUILDING  the log read into a fresh directory on a thread of the pool
 *             (attr_partition_materialize()) and its exposures indexed there too
 *             (attr_partition_index()), then the engine opened over it with the
 *             ship functions: from then on what it makes durable goes to the log first.
 *             Engines open on the loop, one per turn of it: the partitions built
 *             together in a failover wait in a queue (host->open_head) that a timer
 *             empties one at a time, so that calls, health, the cluster's news and the
 *             builds' completions run between two openings
 *   AHEAD     built ahead of its lease: a node that does not answer holds it, and the
 *             assignment gives it to this node once that lease runs out. The directory
 *             waits; once the lease is ours the engine opens over it (no build then),
 *             provided nothing came into the log after what the build read but this
 *             node's lease marker (attr_cluster_follows(); else built again). Dropped
 *             (OFF, the directory removed) if the node answers again
 *   SERVING   forwarded calls (yw-partition metadata) reach its engine
 *   CLOSING   the lease went (or a ship failed: the view may differ from the log): new
 *             calls are refused UNAVAILABLE, the engine closes once the calls on it are
 *             over, the directory is removed; OFF again (and built again if ours)
 * Engines open and close on the loop (their recovery blocks it while it runs: it loads
 * the index files the build wrote, which takes about a tenth of indexing the log there,
 * as openings did before; the queue above bounds a stall to one of them).
 *
 * Snapshots: once a partition it serves has --snapshot-kb of log since its latest
 * snapshot, the node makes one on a thread of the pool (attr_partition_snapshot(), in the
 * scratch directory --data-dir/partitions/snap-<p>), one partition at a time, the one
 * with the most log first; the log before it is then purged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/metrics.h"
#include "services/attribution/attr_cluster.h"
#include "services/attribution/attr_partition.h"
#include "services/attribution/attr_service_int.h"

enum { ATTR_PART_OFF, ATTR_PART_BUILDING, ATTR_PART_SERVING, ATTR_PART_CLOSING, ATTR_PART_AHEAD };

typedef struct st_attr_part_t {
    attr_host_t *host;
    int p;
    int state;
    attr_svc_t *engine;
    attr_partition_ship_t ship;
    int calls; /* forwarded calls on the engine (attr__parts_hold()) */
    char dir[4200];
    /* BUILDING: the thread pool's work and what it found; then, built, its place in the
     * queue of engines to open */
    uv_work_t work;
    struct st_attr_part_t *open_next;
    int rc;
    uint64_t last, records, covers;
    uint64_t indexed, index_ns;    /* exposures the build indexed, in this long */
    uint64_t started_ns, built_ns; /* the build began; its work on the pool ended */
    uint64_t leased_ns;            /* the lease was seen ours (the build's start unless ahead) */
    char err[256];
    /* Log bytes since the latest snapshot: `snap_base` when built, plus what the ship
     * functions appended since `snap_ship` (ship.bytes then). */
    uint64_t snap_base, snap_ship;
    uint64_t snap_after_ns; /* no snapshot try before (uv_hrtime(); after a failure) */
    int64_t snap_time_ns;   /* when its latest snapshot known here was made (realtime; 0: none) */
    /* Its series: served here, log KiB since its snapshot, that snapshot's age. */
    yw_metric_t *m_serving, *m_log_kb, *m_snap_age;
} attr_part_t;

/* Opens the built partitions' engines, one per turn of the loop (a 0 ms timer fires once
 * per turn, after that turn's I/O). Holds the host until its timer is closed. */
typedef struct st_attr_opener_t {
    uv_timer_t timer;
    attr_host_t *host;
} attr_opener_t;

/* The node's snapshot maker: a timer, and the one snapshot being made. */
typedef struct st_attr_snapper_t {
    uv_timer_t timer;
    attr_host_t *host;
    uint64_t threshold; /* bytes of log (--snapshot-kb); 0: never */
    uv_work_t work;
    attr_part_t *busy; /* the partition being snapshotted, NULL when none */
    uint64_t ship_at;  /* its ship.bytes when it started */
    uint64_t started_ns;
    int rc;
    attr_partition_snap_t out;
    char dir[4200];
    char err[256];
    int closed; /* the timer is closed: freed when the snapshot being made is done */
    unsigned ticks;
    yw_metric_t *made, *bytes, *ms;
} attr_snapper_t;

/** Looks for a partition to snapshot every this many ms. */
#define ATTR_SNAP_TICK_MS 1000
/** The node trims the allocator every this many ticks. */
#define ATTR_TRIM_TICKS 5
/** After a failed snapshot, the partition's next try waits this long (ns). */
#define ATTR_SNAP_RETRY_NS (30ull * 1000000000ull)

static void attr__snapper_start(attr_host_t *host);
static void attr__snapper_stop(attr_host_t *host);
static int attr__opener_start(attr_host_t *host);
static void attr__opener_stop(attr_host_t *host);

static const char *const attr__state_names[] = {"off", "building", "serving", "closing",
                                                "built ahead"};

/* Bytes of the partition's log since its latest snapshot (what a taker reads after it). */
static uint64_t attr__log_since_snapshot(const attr_part_t *pt)
{
    return pt->snap_base + (pt->ship.bytes - pt->snap_ship);
}

/* The partition's own series, labelled partition="<p>". */
static void attr__part_metrics(attr_host_t *host, attr_part_t *pt)
{
    yw_metrics_t *m = yw_app_metrics(host->app);
    char label[32];
    snprintf(label, sizeof label, "partition=%d", pt->p);
    int first = pt->p == 0;
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partition_serving",
                           first ? "1 while this node serves the partition (its engine open)."
                                 : NULL,
                           label, &pt->m_serving);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partition_log_kib",
                           first ? "KiB of the partition's log since its latest snapshot (what a "
                                   "node taking it reads after the snapshot), where served."
                                 : NULL,
                           label, &pt->m_log_kb);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partition_snapshot_age_seconds",
                           first ? "Seconds since the partition's latest snapshot known to this "
                                   "node was made, where served; -1: it has none."
                                 : NULL,
                           label, &pt->m_snap_age);
}

/* The per-partition series, from what the node knows now (every snapshot tick). */
static void attr__parts_gauges(attr_host_t *host)
{
    int64_t now = attr__now();
    for (int p = 0; p < host->n_parts; p++) {
        attr_part_t *pt = &host->parts[p];
        int serving = pt->state == ATTR_PART_SERVING;
        yw_metric_gauge_set(pt->m_serving, serving);
        uint64_t since = serving ? attr__log_since_snapshot(pt) : 0;
        yw_metric_gauge_set(pt->m_log_kb, (int64_t)(since >> 10));
        yw_metric_gauge_set(pt->m_snap_age, !serving || pt->snap_time_ns == 0
                                                ? -1
                                                : (now - pt->snap_time_ns) / 1000000000);
    }
}

int attr__parts_init(attr_host_t *host, char *err, size_t errlen)
{
    int np = attr_cluster_partitions(host->cluster);
    snprintf(host->parts_dir, sizeof host->parts_dir, "%s/partitions", host->ecfg.data_dir);
    int rc = attr_partition_remove_dir(host->parts_dir);
    if (rc == 0 && mkdir(host->parts_dir, 0750) != 0) {
        rc = -errno;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%.200s: %s", host->parts_dir, strerror(-rc));
        return rc;
    }
    host->parts = calloc((size_t)np, sizeof *host->parts);
    if (host->parts == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    host->n_parts = np;
    for (int p = 0; p < np; p++) {
        attr_part_t *pt = &host->parts[p];
        pt->host = host;
        pt->p = p;
        pt->ship.cluster = host->cluster;
        pt->ship.partition = p;
        snprintf(pt->dir, sizeof pt->dir, "%s/%d", host->parts_dir, p);
        attr__part_metrics(host, pt);
    }
    if (attr__opener_start(host) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    attr__snapper_start(host);
    return 0;
}

int attr__parts_serving(const attr_host_t *host)
{
    int n = 0;
    for (int p = 0; p < host->n_parts; p++) {
        n += host->parts[p].state == ATTR_PART_SERVING;
    }
    return n;
}

/* ---- building ---- */

static void attr__build_work(uv_work_t *w)
{
    attr_part_t *pt = w->data;
    /* Whatever an earlier view left goes first: the view is the log's, nothing else. */
    pt->rc = attr_partition_remove_dir(pt->dir);
    if (pt->rc == 0) {
        attr_partition_built_t b;
        pt->rc = attr_partition_materialize(pt->host->cluster, pt->p, pt->dir, &b, pt->err,
                                            sizeof pt->err);
        pt->last = b.last;
        pt->records = b.records;
        pt->covers = b.covers;
        pt->snap_base = b.bytes;
        pt->snap_time_ns = b.snap_time_ns;
        if (pt->rc == 0) {
            /* The index files too, here rather than in the engine's opening on the loop:
             * the opening then loads them (a tenth of the time) and the builds index in
             * parallel on the pool. */
            uint64_t t0 = uv_hrtime();
            pt->rc = attr_partition_index(pt->dir, pt->host->ecfg.index_run_exposures, &pt->indexed,
                                          pt->err, sizeof pt->err);
            pt->index_ns = uv_hrtime() - t0;
        }
    } else {
        snprintf(pt->err, sizeof pt->err, "cannot remove its old directory: %s", strerror(-pt->rc));
    }
}

/* The engine's config: the flags', its directory, its ship functions, its budget share. */
static void attr__part_config(const attr_part_t *pt, attr_engine_config_t *cfg)
{
    const attr_host_t *host = pt->host;
    *cfg = host->ecfg;
    int share = host->assigned > 0 ? host->assigned : 1;
    cfg->data_dir = pt->dir;
    cfg->store = NULL; /* its own attribution.db, whose transactions it ships */
    cfg->metrics = NULL;
    cfg->ingest_pending_bytes = cfg->ingest_pending_bytes / (size_t)share;
    if (cfg->ingest_pending_bytes < (1u << 20)) {
        cfg->ingest_pending_bytes = 1u << 20;
    }
    cfg->conversion_cache_bytes /= (size_t)share;
    cfg->dedup_filter_bytes /= (size_t)share;
    cfg->ship_xlog = attr_partition_ship_xlog;
    cfg->ship_xlog_arg = (void *)&pt->ship;
    cfg->ship_db = attr_partition_ship_db;
    cfg->ship_db_arg = (void *)&pt->ship;
}

static void attr__build_over(attr_part_t *pt);

/* Opens a built partition's engine (not when stopping, nor when its lease went while it
 * waited: the sync builds it again once it is ours), then drops the build's hold on the
 * host (which may free it when stopping) and syncs. */
static void attr__open_built(attr_part_t *pt)
{
    attr_host_t *host = pt->host;
    pt->state = ATTR_PART_OFF;
    int ours = !host->stopping && attr_cluster_owns(host->cluster, pt->p);
    if (ours && !attr_cluster_follows(host->cluster, pt->p, pt->last)) {
        /* Another node appended after what the build read (a build ahead whose node was
         * not gone after all), or the lease went and came back during the build. */
        yw_log(YW_LOG_WARN,
               "partition %d: its log has records the build did not read (it read to "
               "sequence %llu): built again",
               pt->p, (unsigned long long)pt->last);
    } else if (ours) {
        attr_engine_config_t cfg;
        attr__part_config(pt, &cfg);
        char err[300];
        pt->ship.failed = 0;
        pt->snap_ship = pt->ship.bytes;
        uint64_t open_ns = uv_hrtime();
        int rc = attr_engine_open(&cfg, &pt->engine, err, sizeof err);
        if (rc == 0) {
            pt->state = ATTR_PART_SERVING;
            uint64_t now = uv_hrtime();
            uint64_t ms = (now - pt->leased_ns) / 1000000;
            int ahead = pt->leased_ns != pt->started_ns;
            uint64_t open_ms = (now - open_ns) / 1000000;
            yw_metric_inc(host->cl_builds);
            if (ahead) {
                yw_metric_inc(host->cl_ahead_served);
            }
            yw_metric_observe(host->cl_build_ms, ms);
            yw_metric_observe(host->cl_open_ms, open_ms);
            yw_log(YW_LOG_INFO,
                   "partition %d: serving (%sthe snapshot covering %llu, then %llu log "
                   "records to sequence %llu; %llu exposures indexed in %llu ms; %llu ms, "
                   "of which %llu waiting to open and %llu opening its engine on the loop)",
                   pt->p, ahead ? "built ahead: " : "", (unsigned long long)pt->covers,
                   (unsigned long long)pt->records, (unsigned long long)pt->last,
                   (unsigned long long)pt->indexed, (unsigned long long)(pt->index_ns / 1000000),
                   (unsigned long long)ms, (unsigned long long)((open_ns - pt->built_ns) / 1000000),
                   (unsigned long long)open_ms);
        } else {
            yw_log(YW_LOG_ERROR, "partition %d: cannot open its engine: %s (tried again)", pt->p,
                   err);
        }
    }
    attr__build_over(pt);
}

/* The head of the queue of engines to open, taken out of it; NULL when empty. */
static attr_part_t *attr__open_pop(attr_host_t *host)
{
    attr_part_t *pt = host->open_head;
    if (pt != NULL) {
        host->open_head = pt->open_next;
        if (host->open_head == NULL) {
            host->open_tail = NULL;
        }
    }
    return pt;
}

/* A turn of the loop: one engine opens; the timer goes again while more wait. (The
 * opener's hold keeps the host through attr__open_built().) */
static void attr__on_open_timer(uv_timer_t *t)
{
    attr_opener_t *op = t->data;
    attr_part_t *pt = attr__open_pop(op->host);
    if (pt != NULL) {
        attr__open_built(pt);
    }
    if (op->host->open_head != NULL) {
        (void)uv_timer_start(t, attr__on_open_timer, 0, 0);
    }
}

static void attr__on_opener_closed(uv_handle_t *h)
{
    attr_opener_t *op = h->data;
    attr_host_t *host = op->host;
    free(op);
    attr__host_unref(host); /* the opener's hold */
}

/* Starts the opener (from attr__parts_init()). Returns 0 or -ENOMEM. */
static int attr__opener_start(attr_host_t *host)
{
    attr_opener_t *op = calloc(1, sizeof *op);
    if (op == NULL) {
        return -ENOMEM;
    }
    op->host = host;
    (void)uv_timer_init(yw_runtime_loop(yw_app_runtime(host->app)), &op->timer);
    op->timer.data = op;
    host->opener = op;
    host->refs++;
    return 0;
}

/* Stopping: what waits to open is dropped (each build's hold with it), then the timer
 * closes. host->opener is NULL from here on: a build done later is dropped at once (a
 * closing timer would never fire for it). */
static void attr__opener_stop(attr_host_t *host)
{
    attr_opener_t *op = host->opener;
    if (op == NULL) {
        return;
    }
    host->opener = NULL;
    for (attr_part_t *pt; (pt = attr__open_pop(host)) != NULL;) {
        attr__open_built(pt); /* stopping: not opened */
    }
    uv_close((uv_handle_t *)&op->timer, attr__on_opener_closed);
}

/* Into the queue of engines to open, with the hold of its build. */
static void attr__open_queue(attr_part_t *pt)
{
    attr_host_t *host = pt->host;
    pt->state = ATTR_PART_BUILDING;
    pt->built_ns = uv_hrtime();
    pt->open_next = NULL;
    if (host->open_tail != NULL) {
        host->open_tail->open_next = pt;
    } else {
        host->open_head = pt;
    }
    host->open_tail = pt;
    if (!uv_is_active((uv_handle_t *)&host->opener->timer)) {
        (void)uv_timer_start(&host->opener->timer, attr__on_open_timer, 0, 0);
    }
}

/* A partition built ahead that will not be ours after all: its directory goes. */
static void attr__drop_ahead(attr_part_t *pt)
{
    pt->state = ATTR_PART_OFF;
    yw_metric_inc(pt->host->cl_ahead_dropped);
    int rc = attr_partition_remove_dir(pt->dir);
    yw_log(YW_LOG_INFO,
           "partition %d: built ahead, dropped (the assignment no longer brings it here)%s%s",
           pt->p, rc != 0 ? "; cannot remove its directory: " : "", rc != 0 ? strerror(-rc) : "");
}

static void attr__build_done(uv_work_t *w, int status)
{
    attr_part_t *pt = w->data;
    attr_host_t *host = pt->host;
    if (status == 0 && pt->rc == 0 && host->opener == NULL) {
        attr__open_built(pt); /* built as the node stopped: dropped */
        return;
    }
    if (status == 0 && pt->rc == 0) {
        if (attr_cluster_owns(host->cluster, pt->p)) {
            if (pt->leased_ns == 0) {
                pt->leased_ns = uv_hrtime(); /* built ahead, the lease came meanwhile */
            }
            attr__open_queue(pt); /* the build's hold goes with it */
            return;
        }
        if (attr_cluster_ahead(host->cluster, pt->p)) {
            pt->state = ATTR_PART_AHEAD;
            yw_log(YW_LOG_INFO,
                   "partition %d: built ahead of its lease (to sequence %llu, %llu exposures "
                   "indexed in %llu ms)",
                   pt->p, (unsigned long long)pt->last, (unsigned long long)pt->indexed,
                   (unsigned long long)(pt->index_ns / 1000000));
        } else {
            attr__drop_ahead(pt);
        }
        attr__build_over(pt);
        return;
    }
    pt->state = ATTR_PART_OFF;
    if (pt->rc != 0) {
        yw_log(YW_LOG_ERROR, "partition %d: cannot build it from its log: %s (tried again)", pt->p,
               pt->err);
    }
    attr__build_over(pt);
}

/* A build is over (served or not): the gauge, the build's hold dropped, then a sync. */
static void attr__build_over(attr_part_t *pt)
{
    attr_host_t *host = pt->host;
    yw_metric_gauge_set(host->cl_serving, attr__parts_serving(host));
    int stopping = host->stopping;
    attr__host_unref(host); /* the build's hold (may free the host when stopping) */
    if (!stopping) {
        attr__parts_sync(host);
        attr__node_health(host);
    }
}

static void attr__build(attr_part_t *pt)
{
    attr_host_t *host = pt->host;
    pt->state = ATTR_PART_BUILDING;
    pt->started_ns = uv_hrtime();
    /* Ahead of its lease (attr_cluster_ahead()): the lease's time is set when it comes. */
    pt->leased_ns = attr_cluster_owns(host->cluster, pt->p) ? pt->started_ns : 0;
    pt->err[0] = '\0';
    pt->work.data = pt;
    host->refs++;
    int rc = uv_queue_work(yw_runtime_loop(yw_app_runtime(host->app)), &pt->work, attr__build_work,
                           attr__build_done);
    if (rc != 0) {
        pt->state = ATTR_PART_OFF;
        host->refs--;
        yw_log(YW_LOG_ERROR, "partition %d: cannot start building: %s", pt->p, uv_strerror(rc));
    }
}

/* ---- closing ---- */

static void attr__on_engine_closed(void *arg)
{
    attr_part_t *pt = arg;
    attr_host_t *host = pt->host;
    attr_partition_ship_free(&pt->ship);
    int rc = attr_partition_remove_dir(pt->dir);
    if (rc != 0) {
        yw_log(YW_LOG_WARN, "partition %d: cannot remove %s: %s", pt->p, pt->dir, strerror(-rc));
    }
    pt->state = ATTR_PART_OFF;
    yw_log(YW_LOG_INFO, "partition %d: closed", pt->p);
    yw_metric_gauge_set(host->cl_serving, attr__parts_serving(host));
    int stopping = host->stopping;
    attr__host_unref(host); /* the close's hold (may free the host when stopping) */
    if (!stopping) {
        attr__parts_sync(host);
        attr__node_health(host);
    }
}

/* Closes the engine once no call is on it (CLOSING until then). */
static void attr__close(attr_part_t *pt)
{
    pt->state = ATTR_PART_CLOSING;
    if (pt->calls > 0) {
        return; /* attr__parts_release() closes it */
    }
    attr_svc_t *svc = pt->engine;
    pt->engine = NULL;
    pt->host->refs++;
    attr_engine_close(svc, attr__on_engine_closed, pt);
}

void attr__parts_sync(attr_host_t *host)
{
    if (host->cluster == NULL || host->parts == NULL || host->stopping) {
        return;
    }
    for (int p = 0; p < host->n_parts; p++) {
        attr_part_t *pt = &host->parts[p];
        int ours = attr_cluster_owns(host->cluster, p);
        if (pt->state == ATTR_PART_SERVING && (!ours || pt->ship.failed)) {
            yw_log(YW_LOG_WARN, "partition %d: %s: closing its engine", p,
                   pt->ship.failed ? "a write did not reach the log (the view is built again)"
                                   : "the lease went");
            attr__close(pt);
        } else if (pt->state == ATTR_PART_AHEAD && ours && host->opener != NULL) {
            pt->leased_ns = uv_hrtime();
            host->refs++; /* the hold a build has (attr__open_built() drops it) */
            attr__open_queue(pt);
        } else if (pt->state == ATTR_PART_AHEAD && !attr_cluster_ahead(host->cluster, p)) {
            attr__drop_ahead(pt);
        } else if (pt->state == ATTR_PART_OFF && (ours || attr_cluster_ahead(host->cluster, p))) {
            attr__build(pt);
        }
    }
}

void attr__parts_close(attr_host_t *host)
{
    attr__snapper_stop(host);
    attr__opener_stop(host);
    for (int p = 0; p < host->n_parts; p++) {
        attr_part_t *pt = &host->parts[p];
        if (pt->state == ATTR_PART_SERVING || (pt->state == ATTR_PART_CLOSING && pt->engine)) {
            pt->calls = 0; /* the server stopped: no call is left */
            attr__close(pt);
        }
        /* BUILDING: the pool's work holds the host; its done sees `stopping`. */
    }
}

/* ---- calls ---- */

int attr__parts_hold(attr_host_t *host, yw_call_t *call, int p)
{
    attr_part_t *pt = &host->parts[p];
    if (pt->state != ATTR_PART_SERVING || pt->ship.failed || !attr_cluster_owns(host->cluster, p)) {
        yw_call_finish(call, GRPC_STATUS_UNAVAILABLE,
                       "partition %d is not served by this node right now (%s): try again", p,
                       attr__state_names[pt->state]);
        if (pt->state == ATTR_PART_SERVING) {
            attr__parts_sync(host);
        }
        return -1;
    }
    pt->calls++;
    return 0;
}

void attr__parts_release(attr_host_t *host, int p)
{
    attr_part_t *pt = &host->parts[p];
    if (--pt->calls == 0 && pt->state == ATTR_PART_CLOSING && pt->engine != NULL) {
        attr__close(pt);
    }
}

attr_svc_t *attr__parts_engine(const attr_host_t *host, int p)
{
    return host->parts[p].engine;
}

/* ---- snapshots ---- */

static void attr__snap_work(uv_work_t *w)
{
    attr_snapper_t *sn = w->data;
    sn->rc = attr_partition_snapshot(sn->host->cluster, sn->busy->p, sn->dir, &sn->out, sn->err,
                                     sizeof sn->err);
}

static void attr__snap_done(uv_work_t *w, int status)
{
    attr_snapper_t *sn = w->data;
    attr_host_t *host = sn->host;
    attr_part_t *pt = sn->busy;
    sn->busy = NULL;
    uint64_t ms = (uv_hrtime() - sn->started_ns) / 1000000;
    if (status == 0 && sn->rc == 0) {
        /* What the snapshot took in no longer counts; what came during it does. */
        pt->snap_base = 0;
        pt->snap_ship = sn->ship_at;
        if (!sn->out.skipped) {
            pt->snap_time_ns = attr__now();
            yw_metric_inc(sn->made);
            yw_metric_add(sn->bytes, sn->out.bytes);
            yw_metric_observe(sn->ms, ms);
            yw_log(YW_LOG_INFO,
                   "partition %d: snapshot covering %llu published (%llu bytes in %u chunks, "
                   "%llu log records since the previous one, %llu ms)%s",
                   pt->p, (unsigned long long)sn->out.covers, (unsigned long long)sn->out.bytes,
                   sn->out.chunks, (unsigned long long)sn->out.log_records, (unsigned long long)ms,
                   sn->out.purge_failed ? "; the log before it is not purged yet" : "");
        }
    } else {
        pt->snap_after_ns = uv_hrtime() + ATTR_SNAP_RETRY_NS;
        yw_log(sn->rc == -ESTALE ? YW_LOG_INFO : YW_LOG_WARN,
               "partition %d: no snapshot this time: %s", pt->p,
               status != 0 ? uv_strerror(status) : sn->err);
    }
    if (sn->closed) {
        free(sn);
    }
    attr__host_unref(host); /* the work's hold */
}

/* The next partition to snapshot: served here, with the most log past the threshold. */
static attr_part_t *attr__snap_pick(attr_snapper_t *sn)
{
    attr_host_t *host = sn->host;
    attr_part_t *best = NULL;
    uint64_t most = 0, now = uv_hrtime();
    for (int p = 0; p < host->n_parts; p++) {
        attr_part_t *pt = &host->parts[p];
        if (pt->state != ATTR_PART_SERVING || pt->ship.failed || now < pt->snap_after_ns ||
            !attr_cluster_owns(host->cluster, p)) {
            continue;
        }
        uint64_t since = attr__log_since_snapshot(pt);
        if (since >= sn->threshold && since > most) {
            best = pt;
            most = since;
        }
    }
    return best;
}

/* ---- giving free heap back ---- */

/* The node's trim of the allocator (once for the process, not per partition engine), on
 * a thread of the pool (host->trim_work). Not on the loop: mallinfo2() and malloc_trim()
 * walk every arena, and with 32 partitions' engines (10 million exposures stored) one trim
 * took 0.5-0.6 s, a stall of every call and lease renewal news every 5 s (perf, bench
 * failover). */
static void attr__trim_work(uv_work_t *w)
{
    (void)w;
    (void)attr__trim_process();
}

static void attr__trim_done(uv_work_t *w, int status)
{
    (void)status;
    attr_host_t *host = w->data;
    host->trimming = 0;
    attr__host_unref(host); /* the work's hold */
}

/* 1 while partitions are being built or wait to open: their builds free and allocate
 * hundreds of MB, so the heap freed now is reused at once. A trim then only hands the
 * pages to the kernel for the builds to fault them back in, zeroed (clear_page and TLB
 * shootdowns were a fifth of the builds' CPU in a failover at 10 million). */
static int attr__parts_building(const attr_host_t *host)
{
    if (host->open_head != NULL) {
        return 1;
    }
    for (int p = 0; p < host->n_parts; p++) {
        if (host->parts[p].state == ATTR_PART_BUILDING) {
            return 1;
        }
    }
    return 0;
}

static void attr__trim_start(attr_host_t *host, uv_loop_t *loop)
{
    if (host->trimming || host->stopping || attr__parts_building(host)) {
        return;
    }
    host->trim_work.data = host;
    host->refs++;
    host->trimming = 1;
    if (uv_queue_work(loop, &host->trim_work, attr__trim_work, attr__trim_done) != 0) {
        host->trimming = 0;
        host->refs--;
    }
}

static void attr__snap_tick(uv_timer_t *t)
{
    attr_snapper_t *sn = t->data;
    attr_host_t *host = sn->host;
    attr__parts_gauges(host);
    if (++sn->ticks % ATTR_TRIM_TICKS == 0) {
        attr__trim_start(host, t->loop);
    }
    if (sn->busy != NULL || host->stopping || sn->threshold == 0) {
        return;
    }
    attr_part_t *pt = attr__snap_pick(sn);
    if (pt == NULL) {
        return;
    }
    sn->busy = pt;
    sn->ship_at = pt->ship.bytes;
    sn->started_ns = uv_hrtime();
    sn->err[0] = '\0';
    snprintf(sn->dir, sizeof sn->dir, "%s/snap-%d", host->parts_dir, pt->p);
    sn->work.data = sn;
    host->refs++;
    int rc = uv_queue_work(t->loop, &sn->work, attr__snap_work, attr__snap_done);
    if (rc != 0) {
        sn->busy = NULL;
        host->refs--;
    }
}

static void attr__snapper_start(attr_host_t *host)
{
    long long kb = 65536;
    char err[200];
    if (attr__option_int(host->app, "snapshot-kb", 0, 1ll << 30, &kb, err, sizeof err) != 0) {
        yw_log(YW_LOG_WARN, "%s: no snapshots", err);
        return;
    }
    attr_snapper_t *sn = calloc(1, sizeof *sn);
    if (sn == NULL) {
        return;
    }
    sn->host = host;
    sn->threshold = (uint64_t)kb << 10;
    sn->timer.data = sn;
    yw_metrics_t *m = yw_app_metrics(host->app);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_snapshots_total",
                             "Partition snapshots this node published.", NULL, &sn->made);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_snapshot_bytes_total",
                             "Bytes of the partition snapshots this node published.", NULL,
                             &sn->bytes);
    static const uint64_t ms[] = {10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
    (void)yw_metrics_histogram(m, "yaowei_attribution_cluster_snapshot_seconds",
                               "Time to make and publish a partition snapshot.", NULL, ms,
                               sizeof ms / sizeof ms[0], 1e-3, &sn->ms);
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(host->app));
    if (uv_timer_init(loop, &sn->timer) != 0) {
        free(sn);
        return;
    }
    (void)uv_timer_start(&sn->timer, attr__snap_tick, ATTR_SNAP_TICK_MS, ATTR_SNAP_TICK_MS);
    host->snapper = sn;
    host->refs++; /* the timer's, until it is closed */
}

static void attr__snapper_closed(uv_handle_t *h)
{
    attr_snapper_t *sn = h->data;
    attr_host_t *host = sn->host;
    sn->closed = 1;
    if (sn->busy == NULL) {
        free(sn);
    }
    attr__host_unref(host);
}

static void attr__snapper_stop(attr_host_t *host)
{
    attr_snapper_t *sn = host->snapper;
    if (sn == NULL) {
        return;
    }
    host->snapper = NULL;
    uv_close((uv_handle_t *)&sn->timer, attr__snapper_closed);
}
