/*
 * attr_maint.c — maintenance: the candidate touches found since they were last stored
 * are written with the touch mark (attr__schedule_persist()); old log segments are
 * pruned once past the join horizon (their counts go to SQLite first); conversions over
 * the cache's budget are evicted when nothing needs them; memory is accounted by part.
 * The maintenance timer (attr__on_timer()) drives them and the rollup audit.
 */
#include "services/attribution/attr_service_int.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/log.h"
#include "services/attribution/attr_validate.h"

/** Free memory the allocator may keep before a tick gives it back (malloc_trim()). */
#define ATTR_TRIM_BYTES (8u << 20)
/** Log the memory line every this many maintenance ticks. */
#define ATTR_MEMLOG_TICKS 12

/* ---- candidate persistence ---- */

/**
 * Candidate touches on their way to the database with the touch mark: the conversions
 * they are of, and how many of each one's touches the write covers (`upto`).
 */
typedef struct st_attr_touch_persist_t {
    attr_touch_job_t j; /* j.mark: attr__touch_mark() when taken */
    attr_svc_t *svc;
    attr_conv_t **convs;
    uint32_t *upto;
    size_t n_convs;
    attr_touch_row_t *rows;
} attr_touch_persist_t;

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

static void attr__touch_persist_free(attr_touch_persist_t *tp)
{
    free(tp->convs);
    free(tp->upto);
    free(tp->rows);
    free(tp);
}

/** A write that cannot go: its conversions go back on the persist list, for the next. */
static void attr__touch_persist_abort(attr_state_t *st, attr_touch_persist_t *tp)
{
    for (size_t i = 0; i < tp->n_convs; i++) {
        (void)attr_state_repersist(st, tp->convs[i]);
    }
    attr__touch_persist_free(tp);
}

static void attr__on_touches_persisted(yw_store_job_t *job, grpc_status_code status)
{
    attr_touch_persist_t *tp = (attr_touch_persist_t *)job;
    attr_svc_t *svc = tp->svc;
    if (status == GRPC_STATUS_OK) {
        svc->touch_mark = tp->j.mark;
    }
    for (size_t i = 0; i < tp->n_convs; i++) {
        if (status == GRPC_STATUS_OK) {
            attr_state_mark_persisted(tp->convs[i], tp->upto[i]);
        } else {
            (void)attr_state_repersist(&svc->st, tp->convs[i]);
        }
    }
    if (status != GRPC_STATUS_OK) {
        yw_log(YW_LOG_WARN, "cannot persist candidate touches (will retry): %s", job->errmsg);
    }
    attr__touch_persist_free(tp);
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
void attr__schedule_persist(attr_svc_t *svc)
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
    attr_touch_persist_t *tp = calloc(1, sizeof *tp);
    if (tp == NULL) {
        return;
    }
    if (attr_state_take_persist(st, &tp->convs, &tp->n_convs) != 0) {
        free(tp);
        return;
    }
    size_t rows = 0;
    for (size_t i = 0; i < tp->n_convs; i++) {
        for (uint32_t k = 0; k < tp->convs[i]->n_cands; k++) {
            rows += !tp->convs[i]->cands[k].persisted;
        }
    }
    tp->upto = malloc((tp->n_convs ? tp->n_convs : 1) * sizeof *tp->upto);
    tp->rows = malloc((rows ? rows : 1) * sizeof *tp->rows);
    if (tp->upto == NULL || tp->rows == NULL) {
        attr__touch_persist_abort(st, tp);
        return;
    }
    size_t r = 0;
    for (size_t i = 0; i < tp->n_convs; i++) {
        attr_conv_t *c = tp->convs[i];
        tp->upto[i] = c->n_cands;
        for (uint32_t k = 0; k < c->n_cands; k++) {
            const attr_cand_t *t = &c->cands[k];
            if (t->persisted) {
                continue;
            }
            attr_touch_row_t *row = &tp->rows[r++];
            row->order_id = c->order_id;
            row->event_id = t->event_id;
            row->creator_id = attr_intern_str(&st->creators, t->creator, NULL);
            row->note_id = attr_cand_note(t);
            row->kind = t->kind;
            row->watch_ms = t->watch_ms;
            row->occur_ns = t->occur_ns;
        }
    }
    tp->svc = svc;
    tp->j.job.work = attr_store_put_touches;
    tp->j.job.done = attr__on_touches_persisted;
    tp->j.rows = tp->rows;
    tp->j.n = r;
    tp->j.mark = mark;
    if (yw_store_write(svc->store, &tp->j.job) != 0) {
        attr__touch_persist_abort(st, tp);
        return;
    }
    svc->persist_busy = 1;
    svc->refs++;
}

/* ---- maintenance ---- */

/** A log segment being pruned: its counts go to the database, then the file goes. */
typedef struct st_attr_segment_prune_t {
    attr_prune_job_t j;
    attr_svc_t *svc;
} attr_segment_prune_t;

static void attr__on_prune(yw_store_job_t *job, grpc_status_code status)
{
    attr_segment_prune_t *p = (attr_segment_prune_t *)job;
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
    attr_segment_prune_t *p = calloc(1, sizeof *p);
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
void attr__evict(attr_svc_t *svc)
{
    attr_state_t *st = &svc->st;
    if (st->cache_budget == 0 || st->cache_bytes <= st->cache_budget) {
        return;
    }
    /* Conversions committed since the oldest exposure batch in flight began may be
     * joined by it: they stay until it is committed. */
    st->evict_guard = attr__xbatch_guard(svc);
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
    uint64_t rss;
    return yw_process_memory(&rss, NULL) == 0 ? (int64_t)rss : -1;
}

struct mallinfo2 attr__trim_process(void)
{
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > ATTR_TRIM_BYTES) {
        /* Free memory the allocator kept (in holes between what is in use, after a burst
         * of ingestion): the pages go back to the kernel, so that the next burst starts
         * from what is in use. A few milliseconds every few seconds at most. */
        (void)malloc_trim(0);
        mi = mallinfo2();
    }
    return mi;
}

/**
 * Where the memory is: the state's parts, the index fences, SQLite, the allocator (in use
 * and free-but-kept, over all arenas), RSS. Gauges at every tick; a log line every
 * ATTR_MEMLOG_TICKS ticks (and with `force`).
 */
void attr__account_memory(attr_svc_t *svc, int force)
{
    attr_state_mem_t m;
    attr_state_mem(&svc->st, &m);
    attr_exposure_store_info_t xi;
    attr_exposure_store_info(svc->xs, &xi);
    attr_ckey_info_t ci;
    attr_ckey_info(svc->ck, &ci);
    /* The allocator and RSS are the process's: a cluster node's partition engines (no
     * metrics of their own) leave them alone; with dozens of engines, each walking every
     * malloc arena (mallinfo2) and trimming every tick cost about 5 % of a node's CPU
     * under ingestion (perf). The node trims once for the process (attr_node_parts.c). */
    int process = svc->metrics != NULL;
    struct mallinfo2 mi = {0};
    if (process) {
        mi = attr__trim_process();
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
        process ? attr__rss() : 0,
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

void attr__on_timer(uv_timer_t *t)
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
    attr__restate_retry(svc);
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

void attr__metrics_register(attr_svc_t *svc)
{
    yw_metrics_t *m = svc->metrics;
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
