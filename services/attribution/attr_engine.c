/*
 * attr_engine.c — an engine's life (attr_engine.h): open (the directory, the store unless
 * one was given, attr__recover(), the channel to tier scoring, the timers) and close (the
 * steps of a clean stop, then the store it opened). An engine stays until the last of its
 * handles and jobs is gone after it began to stop (attr__unref()): only then is it freed
 * and its `closed` callback run.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

/** Defaults of --tier-label-ttl-s, --ingest-pending-mb (bytes of admitted exposures not
 *  yet committed), --conversion-cache-mb and --dedup-filter-mb. */
#define ATTR_TIER_TTL_S_DEFAULT 300
#define ATTR_PENDING_MB_DEFAULT 64
#define ATTR_CACHE_MB_DEFAULT 16
#define ATTR_BLOOM_MB_DEFAULT 64

/** How often a stopping engine looks whether all but its hold is done. */
#define ATTR_FINI_POLL_MS 10

void attr_engine_config_defaults(attr_engine_config_t *cfg)
{
    *cfg = (attr_engine_config_t){
        .tier_label_ttl_ns = ATTR_TIER_TTL_S_DEFAULT * ATTR_NS_PER_S,
        .index_run_bytes = ATTR_EXPOSURE_STORE_RUN_BYTES,
        .ingest_pending_bytes = (size_t)ATTR_PENDING_MB_DEFAULT << 20,
        .conversion_cache_bytes = (size_t)ATTR_CACHE_MB_DEFAULT << 20,
        .dedup_filter_bytes = (size_t)ATTR_BLOOM_MB_DEFAULT << 20,
    };
}

void attr__svc_free(attr_svc_t *svc)
{
    attr__spare_xb_free(svc);
    attr_state_free(&svc->st);
    free(svc);
}

/** The very end: frees the engine, then tells whoever closed it. */
static void attr__svc_end(attr_svc_t *svc)
{
    void (*closed)(void *arg) = svc->closed;
    void *arg = svc->closed_arg;
    attr__svc_free(svc);
    if (closed != NULL) {
        closed(arg);
    }
}

static void attr__on_store_closed(void *arg)
{
    attr__svc_end(arg);
}

void attr__unref(attr_svc_t *svc)
{
    if (--svc->refs != 0 || !svc->stopping) {
        return;
    }
    if (svc->own_store && svc->store != NULL) {
        /* Last: every job of the engine has completed (each held a reference). */
        yw_store_t *store = svc->store;
        svc->store = NULL;
        yw_store_close(store, attr__on_store_closed, svc);
        return;
    }
    attr__svc_end(svc);
}

static void attr__on_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data);
}

static void attr__on_xs_closed(void *arg)
{
    attr__unref(arg);
}

/* ---- open ---- */

/** The config's budgets and paths into `svc` and its state's budgets. */
static int attr__config_apply(attr_svc_t *svc, const attr_engine_config_t *cfg, char *err,
                              size_t errlen)
{
    if (cfg->rt == NULL || cfg->data_dir == NULL || cfg->tier_addr == NULL ||
        cfg->page_key == NULL) {
        snprintf(err, errlen,
                 "attribution engine: a runtime, a data dir, tier scoring's "
                 "address and a page key are required");
        return -EINVAL;
    }
    if (cfg->store != NULL && cfg->ship_db != NULL) {
        snprintf(err, errlen,
                 "attribution engine: a store lent to it ships as its opener "
                 "configured it (ship_db is for a store it opens)");
        return -EINVAL;
    }
    /* Room for the longest name under it (the snapshot, the key index's files). */
    if (strlen(cfg->data_dir) + 64 > sizeof svc->data_dir) {
        snprintf(err, errlen, "%.200s...: the data dir's path is too long", cfg->data_dir);
        return -ENAMETOOLONG;
    }
    svc->rt = cfg->rt;
    svc->loop = yw_runtime_loop(cfg->rt);
    svc->metrics = cfg->metrics;
    svc->disk = cfg->disk;
    svc->page_key = cfg->page_key;
    svc->store = cfg->store;
    svc->ship_xlog = cfg->ship_xlog;
    svc->ship_xlog_arg = cfg->ship_xlog_arg;
    svc->ship_linger_ns = cfg->ship_linger_ns;
    svc->tier_ttl_ns = cfg->tier_label_ttl_ns;
    svc->audit_ns = cfg->audit_rollups_ns;
    svc->run_exposures = cfg->index_run_exposures; /* (0: the exposure store's default) */
    svc->run_bytes = cfg->index_run_bytes;
    svc->pending_budget = cfg->ingest_pending_bytes;
    /* 0: keep only what must stay (every conversion goes back to the database as soon
     * as it may: the tests' way to read everything back from it). */
    attr_state_set_cache_budget(&svc->st,
                                cfg->conversion_cache_bytes > 0 ? cfg->conversion_cache_bytes : 1);
    svc->st.bloom_budget = cfg->dedup_filter_bytes; /* 0: no limit */
    snprintf(svc->data_dir, sizeof svc->data_dir, "%s", cfg->data_dir);
    snprintf(svc->exp_dir, sizeof svc->exp_dir, "%s/exposures", svc->data_dir);
    return 0;
}

/* The writer thread found the disk full (yw_store_config_t.on_full): any thread. */
static void attr__on_store_full(void *arg)
{
    yw_disk_report_full(arg);
}

/**
 * The engine's directory, and its database unless the config lent one: opened (created
 * or migrated) under the directory, shipping through the config's ship_db, closed by
 * the engine at the end. Returns 0 or a negative errno with `err`.
 */
static int attr__open_dir(attr_svc_t *svc, const attr_engine_config_t *cfg, char *err,
                          size_t errlen)
{
    if (mkdir(svc->data_dir, 0750) != 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "%s: cannot create: %s", svc->data_dir, strerror(-rc));
        return rc;
    }
    if (svc->store != NULL) {
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/attribution.db", svc->data_dir);
    yw_store_config_t scfg = {
        .path = path,
        .migrations = attr_migrations,
        .n_migrations = attr_n_migrations,
        .on_full = attr__on_store_full,
        .on_full_arg = svc->disk,
        .ship = cfg->ship_db,
        .ship_arg = cfg->ship_db_arg,
    };
    int rc = yw_store_open(svc->loop, &scfg, &svc->store, err, errlen);
    if (rc != 0) {
        svc->store = NULL;
        return rc;
    }
    svc->own_store = 1;
    return 0;
}

/**
 * Start-up's last step: the channel to tier scoring, the maintenance timer (more often
 * when the audit asks), the slice timer of RecordExposures. Returns 0 or a negative
 * errno with `err`; what was opened is in `svc` (attr__start_failed() closes it).
 */
static int attr__start_timers(attr_svc_t *svc, const char *tier_addr, int64_t now, char *err,
                              size_t errlen)
{
    int rc = attr_tier_create(svc->rt, tier_addr, svc->tier_ttl_ns, &svc->tier);
    if (rc != 0) {
        snprintf(err, errlen, "--tier-scoring-addr %s: cannot open a channel", tier_addr);
        return rc;
    }
    if ((rc = uv_timer_init(svc->loop, &svc->timer)) != 0) {
        return rc;
    }
    svc->timer.data = svc;
    svc->timer_open = 1;
    svc->refs++;
    uint64_t every = ATTR_MAINT_MS;
    if (svc->audit_ns > 0 && svc->audit_ns / (ATTR_NS_PER_S / 1000) < ATTR_MAINT_MS) {
        every = (uint64_t)(svc->audit_ns / (ATTR_NS_PER_S / 1000));
    }
    svc->maint_last_ns = now;
    if ((rc = uv_timer_start(&svc->timer, attr__on_timer, every, every)) != 0) {
        snprintf(err, errlen, "maintenance timer: %s", uv_strerror(rc));
        return rc;
    }
    if ((rc = uv_timer_init(svc->loop, &svc->slice_timer)) != 0) {
        return rc;
    }
    svc->slice_timer.data = svc;
    svc->slice_timer_open = 1;
    svc->refs++;
    return 0;
}

/**
 * Opening failed: releases what was opened; the loop runs the close callbacks, and the
 * last of them frees the engine (after closing the store it opened). Returns `rc`.
 */
static int attr__start_failed(attr_svc_t *svc, int rc)
{
    svc->stopping = 1;
    svc->refs++; /* a hold, while the closes are started */
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
    if (svc->xs != NULL) {
        attr_exposure_store_close(svc->xs, attr__on_xs_closed, svc);
    }
    attr__unref(svc); /* nothing was opened: freed now (or once its own store closed) */
    return rc;
}

/** The line that says the engine is ready, with what start-up found. */
static void attr__log_ready(const attr_svc_t *svc, const attr_recovery_t *rec, long long cache_mb)
{
    const attr_exposure_store_stats_t *xst = &rec->xst;
    yw_log(YW_LOG_INFO,
           "attribution ready%s: %llu conversions (%zu in memory, cache %lld MiB), %llu "
           "rollup rows of pruned segments; exposure log: %llu segments, %llu exposures in %llu "
           "index files (%llu dropped), %llu read from the log's tail into %llu new ones "
           "(%llu duplicates skipped); %llu conversions looked up (%llu only after the touch "
           "mark), %llu touches found; "
           "settings v%lld, join horizon %llds",
           rec->from_snap ? " (from the snapshot)" : "", (unsigned long long)rec->conversions,
           svc->st.n_cached, cache_mb, (unsigned long long)rec->rollups,
           (unsigned long long)xst->segments, (unsigned long long)xst->indexed_events,
           (unsigned long long)xst->files, (unsigned long long)xst->files_dropped,
           (unsigned long long)xst->tail_events, (unsigned long long)xst->tail_runs,
           (unsigned long long)xst->tail_duplicates, (unsigned long long)xst->conversions_looked_up,
           (unsigned long long)rec->after_mark, (unsigned long long)xst->candidates_found,
           (long long)svc->st.settings.version,
           (long long)(attr_settings_horizon(&svc->st.settings) / ATTR_NS_PER_S));
}

int attr_engine_open(const attr_engine_config_t *cfg, attr_svc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    attr_svc_t *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    attr_state_init(&svc->st);
    int rc = attr__config_apply(svc, cfg, err, errlen);
    if (rc == 0) {
        rc = attr__open_dir(svc, cfg, err, errlen);
    }
    if (rc != 0) {
        return attr__start_failed(svc, rc);
    }
    int64_t now = attr__now();
    attr_recovery_t rec;
    rc = attr__recover(svc, now, &rec, err, errlen);
    if (rc == 0) {
        attr__metrics_register(svc);
        rc = attr__start_timers(svc, cfg->tier_addr, now, err, errlen);
    }
    if (rc != 0) {
        return attr__start_failed(svc, rc);
    }
    attr__log_ready(svc, &rec, (long long)(cfg->conversion_cache_bytes >> 20));
    attr__account_memory(svc, 1);
    attr__schedule_persist(svc);
    *out = svc;
    return 0;
}

/* ---- close ---- */

static void attr__on_fini_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data); /* the hold of attr_engine_close(): frees */
}

void attr__fini_done(attr_svc_t *svc)
{
    svc->fini_wait = 0;
    uv_timer_stop(&svc->fini_timer);
    uv_close((uv_handle_t *)&svc->fini_timer, attr__on_fini_timer_closed);
}

/**
 * Stopping (the timer of attr_engine_close()): once only the hold is left (the log, the
 * index builders, the key index, the jobs are done), stores the touches still in memory,
 * then writes the snapshot (unless memory is suspect), then lets the engine go.
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
    attr__snap_write_at_stop(svc);
}

void attr_engine_close(attr_svc_t *svc, void (*closed)(void *arg), void *arg)
{
    svc->closed = closed;
    svc->closed_arg = arg;
    svc->stopping = 1;
    /* A hold: the engine stays until the snapshot is written (attr__fini_step()) once
     * what is closed below is. Store jobs still queued complete before the store closes. */
    svc->refs++;
    svc->fini_wait = 1;
    if (svc->explain_next != NULL) {
        attr__explain_read_submit(svc); /* the calls waiting are answered */
    }
    attr__restate_cancel(svc); /* a restatement waiting to be tried again */
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
    int rc = uv_timer_init(svc->loop, &svc->fini_timer);
    if (rc != 0) {
        yw_log(YW_LOG_WARN, "no snapshot written: %s", uv_strerror(rc));
        svc->fini_wait = 0;
        attr__unref(svc);
        return;
    }
    svc->fini_timer.data = svc;
    if ((rc = uv_timer_start(&svc->fini_timer, attr__fini_step, 0, ATTR_FINI_POLL_MS)) != 0) {
        yw_log(YW_LOG_WARN, "no snapshot written: %s", uv_strerror(rc));
        attr__fini_done(svc);
    }
}
