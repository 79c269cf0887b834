/*
 * attr_service.c — yaowei.attribution.v1.AttributionService on the shared runtime: the
 * method table, the service's flags, start (attr_service_init(): the flags, then
 * attr__recover(), then the timers) and stop. The handlers live one subsystem a file
 * (attr_service_int.h lists them); each reads like its method's documentation in
 * attribution.proto: validate, do, reply. The plumbing they share:
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
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "services/attribution/attr_validate.h"

#define ATTR_SERVICE_NAME "yaowei.attribution.v1.AttributionService"
/** Default of --ingest-pending-mb: bytes of admitted exposures not yet committed. */
#define ATTR_PENDING_MB_DEFAULT 64

/** How often a stopping service looks whether all but its hold is done. */
#define ATTR_FINI_POLL_MS 10
/** Defaults of --conversion-cache-mb and --dedup-filter-mb. */
#define ATTR_CACHE_MB_DEFAULT 16
#define ATTR_BLOOM_MB_DEFAULT 64

int64_t attr__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * ATTR_NS_PER_S + ts.tv_nsec;
}

void attr__svc_free(attr_svc_t *svc)
{
    attr__spare_xb_free(svc);
    attr_state_free(&svc->st);
    free(svc);
}

void attr__unref(attr_svc_t *svc)
{
    if (--svc->refs == 0 && svc->stopping) {
        attr__svc_free(svc);
    }
}

attr_svc_t *attr__svc(const yw_call_t *call)
{
    return yw_app_state(yw_app_from_call(call));
}

void attr__ts(int64_t ns, Google__Protobuf__Timestamp *ts)
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

int attr__model_arg(yw_call_t *call, const attr_settings_t *settings, int asked, int *model)
{
    *model = attr_model_resolve(asked, settings->default_model);
    if (*model < 0) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "model: not an AttributionModel value: %d", asked);
        return -EINVAL;
    }
    return 0;
}

static void attr__on_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data);
}

static void attr__on_xs_closed(void *arg)
{
    attr__unref(arg);
}

/* ---- start ---- */

int attr__option_int(yw_app_t *app, const char *name, long long min, long long max, long long *out,
                     char *err, size_t errlen)
{
    const char *s = yw_app_option(app, name);
    if (s == NULL) {
        return 0;
    }
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max) {
        snprintf(err, errlen, "--%s: must be within %lld..%lld, got %s", name, min, max, s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/**
 * The service's flags (attr_options) into `svc` and its state's budgets; *cache_mb is
 * --conversion-cache-mb as given (for the ready line). Returns 0 or -EINVAL with `err`.
 */
static int attr__options_read(attr_svc_t *svc, yw_app_t *app, long long *cache_mb, char *err,
                              size_t errlen)
{
    long long ttl_s = 300, audit_ms = 0, runs = -1;
    long long run_mb = ATTR_EXPOSURE_STORE_RUN_BYTES >> 20, pending_mb = ATTR_PENDING_MB_DEFAULT;
    long long bloom_mb = ATTR_BLOOM_MB_DEFAULT;
    *cache_mb = ATTR_CACHE_MB_DEFAULT;
    int rc = attr__option_int(app, "tier-label-ttl-s", 0, 86400, &ttl_s, err, errlen);
    if (rc == 0) {
        rc = attr__option_int(app, "audit-rollups-ms", 0, 86400000, &audit_ms, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "index-run-exposures", 16, 1 << 22, &runs, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "index-run-mb", 1, 4096, &run_mb, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "ingest-pending-mb", 1, 65536, &pending_mb, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "conversion-cache-mb", 0, 1 << 20, cache_mb, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "dedup-filter-mb", 0, 1 << 20, &bloom_mb, err, errlen);
    }
    if (rc != 0) {
        return rc;
    }
    svc->tier_ttl_ns = ttl_s * ATTR_NS_PER_S;
    svc->audit_ns = audit_ms * (ATTR_NS_PER_S / 1000);
    if (runs >= 0) {
        svc->run_exposures = (uint32_t)runs; /* (unset: 0, the exposure store's default) */
    }
    svc->run_bytes = (size_t)run_mb << 20;
    svc->pending_budget = (size_t)pending_mb << 20;
    /* 0: keep only what must stay (every conversion goes back to the database as soon
     * as it may: the tests' way to read everything back from it). */
    attr_state_set_cache_budget(&svc->st, *cache_mb > 0 ? (size_t)*cache_mb << 20 : 1);
    svc->st.bloom_budget = (size_t)bloom_mb << 20; /* 0: no limit */
    snprintf(svc->data_dir, sizeof svc->data_dir, "%s", yw_app_option(app, "data-dir"));
    snprintf(svc->exp_dir, sizeof svc->exp_dir, "%s/exposures", svc->data_dir);
    return 0;
}

/**
 * Start-up's last step: the channel to tier scoring, the maintenance timer (more often
 * when the audit asks), the slice timer of RecordExposures. Returns 0 or a negative
 * errno with `err`; what was opened is in `svc` (attr__start_failed() closes it).
 */
static int attr__start_timers(attr_svc_t *svc, int64_t now, char *err, size_t errlen)
{
    yw_app_t *app = svc->app;
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(app));
    const char *tier_addr = yw_app_option(app, "tier-scoring-addr");
    int rc = attr_tier_create(yw_app_runtime(app), tier_addr, svc->tier_ttl_ns, &svc->tier);
    if (rc != 0) {
        snprintf(err, errlen, "--tier-scoring-addr %s: cannot open a channel", tier_addr);
        return rc;
    }
    if ((rc = uv_timer_init(loop, &svc->timer)) != 0) {
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
    if ((rc = uv_timer_init(loop, &svc->slice_timer)) != 0) {
        return rc;
    }
    svc->slice_timer.data = svc;
    svc->slice_timer_open = 1;
    svc->refs++;
    return 0;
}

/**
 * Start-up failed (the app exits): releases what was started; the loop still runs the
 * close callbacks, and the last of them frees the service. Returns `rc`.
 */
static int attr__start_failed(attr_svc_t *svc, int rc)
{
    if (svc->ck == NULL && svc->xs == NULL && !svc->timer_open && !svc->slice_timer_open) {
        attr__svc_free(svc); /* nothing was opened */
        return rc;
    }
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
    if (svc->xs != NULL) {
        attr_exposure_store_close(svc->xs, attr__on_xs_closed, svc);
    }
    return rc;
}

/** The line that says the service is ready, with what start-up found. */
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
    long long cache_mb = 0;
    int rc = attr__options_read(svc, app, &cache_mb, err, errlen);
    if (rc == 0) {
        rc = attr__node_open(svc, err, errlen);
    }
    if (rc != 0) {
        return attr__start_failed(svc, rc);
    }
    int64_t now = attr__now();
    attr_recovery_t rec;
    rc = attr__recover(svc, now, &rec, err, errlen);
    if (rc == 0) {
        attr__metrics_register(svc);
        rc = attr__start_timers(svc, now, err, errlen);
    }
    if (rc != 0) {
        return attr__start_failed(svc, rc);
    }
    yw_app_set_state(app, svc);
    attr__log_ready(svc, &rec, cache_mb);
    attr__account_memory(svc, 1);
    attr__schedule_persist(svc);
    return 0;
}

/* ---- stop ---- */

static void attr__on_fini_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data); /* the hold of attr_service_fini_async(): frees */
}

/** The end of stopping: the store closes next, the hold goes with the timer. */
void attr__fini_done(attr_svc_t *svc)
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
    attr__snap_write_at_stop(svc);
}

void attr_service_fini(yw_app_t *app)
{
    attr_svc_t *svc = yw_app_state(app);
    if (svc == NULL) {
        return;
    }
    svc->stopping = 1;
    attr__node_close(svc);
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

static const yw_method_t attr_methods[] = {
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordExposures",
              yaowei__attribution__v1__record_exposures_request,
              yaowei__attribution__v1__ingest_summary, .on_message = attr__on_record_exposures,
              .items = "events"),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordConversions",
              yaowei__attribution__v1__record_conversions_request,
              yaowei__attribution__v1__ingest_summary, .on_message = attr__on_record_conversions,
              .items = "events"),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordRefunds",
              yaowei__attribution__v1__record_refunds_request,
              yaowei__attribution__v1__ingest_summary, .on_message = attr__on_record_refunds,
              .items = "events"),
    YW_METHOD(CLIENT_STREAMING, ATTR_SERVICE_NAME, "IngestExposures",
              yaowei__attribution__v1__exposure_event, yaowei__attribution__v1__ingest_summary,
              .on_message = attr__on_ingest_exposure, .on_end = attr__on_ingest_exposures_end,
              .items = ""),
    YW_METHOD(CLIENT_STREAMING, ATTR_SERVICE_NAME, "IngestConversions",
              yaowei__attribution__v1__conversion_event, yaowei__attribution__v1__ingest_summary,
              .on_message = attr__on_ingest_conversion, .on_end = attr__on_ingest_conversions_end,
              .items = ""),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "ExplainConversion",
              yaowei__attribution__v1__explain_conversion_request,
              yaowei__attribution__v1__conversion_attribution, .on_message = attr__on_explain),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetCreatorReport",
              yaowei__attribution__v1__get_creator_report_request,
              yaowei__attribution__v1__creator_report, .on_message = attr__on_creator_report),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetTierReport",
              yaowei__attribution__v1__get_tier_report_request,
              yaowei__attribution__v1__tier_report, .on_message = attr__on_tier_report),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "ListTopCreators",
              yaowei__attribution__v1__list_top_creators_request,
              yaowei__attribution__v1__list_top_creators_response,
              .on_message = attr__on_top_creators),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetAttributionSettings",
              yaowei__attribution__v1__get_attribution_settings_request,
              yaowei__attribution__v1__attribution_settings, .on_message = attr__on_get_settings),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "UpdateAttributionSettings",
              yaowei__attribution__v1__update_attribution_settings_request,
              yaowei__attribution__v1__attribution_settings,
              .on_message = attr__on_update_settings),
};

const yw_service_t attr_service = {
    .name = ATTR_SERVICE_NAME,
    .methods = attr_methods,
    .n_methods = sizeof attr_methods / sizeof attr_methods[0],
    .ctx = NULL,
    .admit = attr__node_admit,
};

const yw_option_t attr_options[] = {
    {"tier-label-ttl-s", "YW_TIER_LABEL_TTL_S", "300",
     "seconds a creator's tier label from tier scoring is reused", YW_OPTION_VALUE, NULL},
    {"index-run-exposures", "YW_INDEX_RUN_EXPOSURES", "65536",
     "exposures held in memory per run before its index file is written (about 180 bytes "
     "each, two runs at a time)",
     YW_OPTION_VALUE, NULL},
    {"index-run-mb", "YW_INDEX_RUN_MB", "16",
     "a run is also indexed once its exposures' strings take this many MiB (wide "
     "exposures; the open run and at most 2 sealed ones are in memory)",
     YW_OPTION_VALUE, NULL},
    {"ingest-pending-mb", "YW_INGEST_PENDING_MB", "64",
     "MiB of exposures read and not yet committed, all calls together: past it each "
     "stream or RecordExposures call waits with one frame in flight",
     YW_OPTION_VALUE, NULL},
    {"conversion-cache-mb", "YW_CONVERSION_CACHE_MB", "16",
     "MiB of conversions kept in memory (the database holds them all; about 600 bytes each; "
     "0: only those in use)",
     YW_OPTION_VALUE, NULL},
    {"audit-rollups-ms", "YW_AUDIT_ROLLUPS_MS", "0",
     "a test aid: every so many milliseconds, check the credit rollups against the stored and "
     "cached conversions (reads every stored conversion; differences are logged and counted "
     "in yaowei_attribution_audit_differences_total; 0: never)",
     YW_OPTION_VALUE, NULL},
    {"dedup-filter-mb", "YW_DEDUP_FILTER_MB", "64",
     "MiB the Bloom filters of indexed event ids may hold (2 bytes per exposure kept; past it "
     "new filters get fewer bits and more ids are checked on disk; 0: no limit)",
     YW_OPTION_VALUE, NULL},
    /* Cluster mode (attr_node.c, attr_cluster.h): empty --cluster is standalone. */
    {"cluster", "YW_CLUSTER", "",
     "comma-separated NATS URLs of the cluster (nats://host:4222,...); empty: standalone",
     YW_OPTION_VALUE, NULL},
    {"node-id", "YW_NODE_ID", "",
     "this node's stable, unique name in the cluster (letters, digits, - _ =); empty: the "
     "host name",
     YW_OPTION_VALUE, NULL},
    {"advertise-addr", "YW_ADVERTISE_ADDR", "",
     "HOST:PORT the other nodes call this one at; empty: the host name and the gRPC port",
     YW_OPTION_VALUE, NULL},
    {"partitions", "YW_PARTITIONS", "64",
     "partitions of the cluster, fixed when its streams are first created (a node started "
     "with another count refuses to start)",
     YW_OPTION_VALUE, NULL},
    {"replicas", "YW_REPLICAS", "3",
     "JetStream replicas of every stream and bucket the cluster creates (1 for a one-server "
     "NATS in development)",
     YW_OPTION_VALUE, NULL},
    {"lease-ttl-ms", "YW_LEASE_TTL_MS", "5000",
     "how long a partition stays with a node that stopped renewing its lease (fixed when the "
     "cluster's buckets are first created)",
     YW_OPTION_VALUE, NULL},
    {"cluster-tls-ca", "YW_CLUSTER_TLS_CA", "",
     "PEM file of the CAs of the NATS servers' certificates: connect with TLS", YW_OPTION_VALUE,
     NULL},
    {"cluster-creds", "YW_CLUSTER_CREDS", "", "NATS credentials file (JWT and NKey seed)",
     YW_OPTION_VALUE, NULL},
};
const size_t attr_n_options = sizeof attr_options / sizeof attr_options[0];
_Static_assert(sizeof attr_options / sizeof attr_options[0] == ATTR_N_OPTIONS, "ATTR_N_OPTIONS");

const yw_app_def_t attr_app = {
    .program = "attribution",
    .summary = "yaowei attribution: joins video exposures to orders, credits creators, "
               "reports by creator and tier (yaowei.attribution.v1.AttributionService)",
    .service = &attr_service,
    .db_file = "attribution.db",
    .migrations = attr_migrations,
    .n_migrations = ATTR_N_MIGRATIONS,
    .options = attr_options,
    .n_options = ATTR_N_OPTIONS,
    .init = attr_service_init,
    .fini = attr_service_fini,
    .fini_async = attr_service_fini_async,
    .default_listen = "127.0.0.1:50053",
};
