/*
 * attr_service.c — yaowei.attribution.v1.AttributionService on the shared runtime: the
 * method table, the service's flags, start (attr_service_init(): the flags, then one
 * engine over --data-dir, attr_engine.h) and stop (the engine closed). The process's side
 * is attr_host_t, the app's state: the engine, the node of a cluster, and the hook that
 * routes a call to its engine (attr__svc()). The handlers live one subsystem a file
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
 * are freed by their completion callbacks. An engine is freed when the last of its
 * handles and jobs is gone after it began to close (see attr__unref, attr_engine.c).
 */
#include "services/attribution/attr_front.h"
#include "services/attribution/attr_partition_service.h"
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "services/attribution/attr_validate.h"

#define ATTR_SERVICE_NAME "yaowei.attribution.v1.AttributionService"

int64_t attr__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * ATTR_NS_PER_S + ts.tv_nsec;
}

attr_svc_t *attr__svc(const yw_call_t *call)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host == NULL) {
        return NULL;
    }
    return host->resolve != NULL ? host->resolve(host->resolve_arg, call) : host->engine;
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
 * The engine's config from the service's flags (attr_options) and what the app lends it:
 * its runtime, --data-dir and its store, the metrics, the disk gate, the page key.
 * Returns 0 or -EINVAL with `err`.
 */
static int attr__options_read(yw_app_t *app, attr_engine_config_t *cfg, char *err, size_t errlen)
{
    attr_engine_config_defaults(cfg);
    long long ttl_s = cfg->tier_label_ttl_ns / ATTR_NS_PER_S, audit_ms = 0, runs = -1;
    long long run_mb = (long long)(cfg->index_run_bytes >> 20);
    long long pending_mb = (long long)(cfg->ingest_pending_bytes >> 20);
    long long cache_mb = (long long)(cfg->conversion_cache_bytes >> 20);
    long long bloom_mb = (long long)(cfg->dedup_filter_bytes >> 20);
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
        rc = attr__option_int(app, "conversion-cache-mb", 0, 1 << 20, &cache_mb, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "dedup-filter-mb", 0, 1 << 20, &bloom_mb, err, errlen);
    }
    if (rc != 0) {
        return rc;
    }
    cfg->tier_label_ttl_ns = ttl_s * ATTR_NS_PER_S;
    cfg->audit_rollups_ns = audit_ms * (ATTR_NS_PER_S / 1000);
    if (runs >= 0) {
        cfg->index_run_exposures = (uint32_t)runs; /* (unset: 0, the exposure store's default) */
    }
    cfg->index_run_bytes = (size_t)run_mb << 20;
    cfg->ingest_pending_bytes = (size_t)pending_mb << 20;
    cfg->conversion_cache_bytes = (size_t)cache_mb << 20;
    cfg->dedup_filter_bytes = (size_t)bloom_mb << 20;
    cfg->rt = yw_app_runtime(app);
    cfg->data_dir = yw_app_option(app, "data-dir");
    cfg->store = yw_app_store(app);
    cfg->tier_addr = yw_app_option(app, "tier-scoring-addr");
    cfg->metrics = yw_app_metrics(app);
    cfg->disk = yw_app_disk(app);
    cfg->page_key = yw_app_page_key(app);
    return 0;
}

void attr__host_unref(attr_host_t *host)
{
    if (--host->refs > 0) {
        return;
    }
    yw_app_t *app = host->app;
    int stopping = host->stopping;
    attr__node_close(host); /* after the partitions' engines: their last writes are shipped */
    attr_front_destroy(host->front);
    free(host->parts);
    free(host);
    if (stopping) {
        yw_app_fini_done(app); /* the store closes next */
    }
}

int attr_service_init(yw_app_t *app, char *err, size_t errlen)
{
    attr_host_t *host = calloc(1, sizeof *host);
    if (host == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    host->app = app;
    host->refs = 1; /* the app's, until its engine is closed */
    attr_engine_config_t cfg;
    int rc = attr__options_read(app, &cfg, err, errlen);
    host->ecfg = cfg;
    if (rc == 0) {
        rc = attr__node_open(host, err, errlen);
    }
    /* A node answers PartitionService for the partitions it holds (the front asks every
     * partition for its sums: attr_partition_service.h), held as AttributionService's
     * forwarded calls are. */
    if (rc == 0 && host->clustered) {
        static yw_service_t psvc;
        psvc = attr_partition_service;
        psvc.ctx = app; /* yw_app_from_call() */
        psvc.admit = attr__node_admit;
        psvc.released = attr__node_released;
        rc = yw_server_add_service(yw_app_server(app), &psvc);
        if (rc != 0) {
            snprintf(err, errlen, "cannot add %s", ATTR_PARTITION_SERVICE_NAME);
        }
    }
    /* A cluster node runs an engine per partition it holds (attr_node_parts.c), none over
     * --data-dir itself. */
    if (rc == 0 && !host->clustered) {
        rc = attr_engine_open(&cfg, &host->engine, err, errlen);
    }
    if (rc != 0) {
        attr__node_close(host);
        attr__host_unref(host);
        return rc;
    }
    yw_app_set_state(app, host);
    return 0;
}

/* ---- stop ---- */

void attr_service_fini(yw_app_t *app)
{
    attr_host_t *host = yw_app_state(app);
    if (host == NULL) {
        return;
    }
    host->stopping = 1;
    /* A cluster node stays in its cluster until its partitions' engines are closed
     * (attr__host_unref()): what they write while closing is shipped to their logs. */
}

/* The engine is closed (its snapshot written): the app's reference goes. */
static void attr__on_engine_closed(void *arg)
{
    attr__host_unref(arg);
}

void attr_service_fini_async(yw_app_t *app)
{
    attr_host_t *host = yw_app_state(app);
    if (host == NULL) {
        yw_app_fini_done(app);
        return;
    }
    yw_app_set_state(app, NULL);
    host->stopping = 1;
    attr__parts_close(host); /* a cluster node's partitions, each holding the host */
    attr_svc_t *svc = host->engine;
    host->engine = NULL;
    if (svc == NULL) {
        attr__host_unref(host);
        return;
    }
    /* Every call is gone (the server stopped); yw_app_fini_done() once it is closed. */
    attr_engine_close(svc, attr__on_engine_closed, host);
}

/* ---- the method table ---- */

/* A client's RecordExposures to a cluster node goes to the front (attr_front.h); a part
 * forwarded to this node (yw-partition) to the partition's engine, as standalone. */
static void attr__dispatch_record_exposures(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host != NULL && host->front != NULL && attr_front_call_partition(host->front, call) == -1) {
        attr_front_record_exposures(host->front, call,
                                    (const Yaowei__Attribution__V1__RecordExposuresRequest *)msg);
        return;
    }
    attr__on_record_exposures(call, msg);
}

/* The front of a cluster node, for a client's call (not one forwarded for a partition). */
static attr_front_t *attr__front_of(yw_call_t *call)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host == NULL || host->front == NULL || attr_front_call_partition(host->front, call) != -1) {
        return NULL;
    }
    return host->front;
}

static void attr__dispatch_creator_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_creator_report(f, call,
                                  (const Yaowei__Attribution__V1__GetCreatorReportRequest *)msg);
        return;
    }
    attr__on_creator_report(call, msg);
}

static void attr__dispatch_tier_report(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_tier_report(f, call, (const Yaowei__Attribution__V1__GetTierReportRequest *)msg);
        return;
    }
    attr__on_tier_report(call, msg);
}

static void attr__dispatch_top_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_top_creators(f, call,
                                (const Yaowei__Attribution__V1__ListTopCreatorsRequest *)msg);
        return;
    }
    attr__on_top_creators(call, msg);
}

static void attr__dispatch_get_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_get_settings(f, call);
        return;
    }
    attr__on_get_settings(call, msg);
}

static void attr__dispatch_update_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_update_settings(
            f, call, (const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *)msg);
        return;
    }
    attr__on_update_settings(call, msg);
}

static void attr__dispatch_record_conversions(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host != NULL && host->front != NULL && attr_front_call_partition(host->front, call) == -1) {
        attr_front_record_conversions(
            host->front, call, (const Yaowei__Attribution__V1__RecordConversionsRequest *)msg);
        return;
    }
    attr__on_record_conversions(call, msg);
}

static void attr__dispatch_record_refunds(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_record_refunds(f, call,
                                  (const Yaowei__Attribution__V1__RecordRefundsRequest *)msg);
        return;
    }
    attr__on_record_refunds(call, msg);
}

static void attr__dispatch_explain(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__front_of(call);
    if (f != NULL) {
        attr_front_explain(f, call, (const Yaowei__Attribution__V1__ExplainConversionRequest *)msg);
        return;
    }
    attr__on_explain(call, msg);
}

/* A client's IngestExposures / IngestConversions stream to a cluster node goes to the front
 * too (its parts are forwarded as Record calls); a forwarded or standalone one to the
 * engine. */
static attr_front_t *attr__stream_front(yw_call_t *call)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    return host != NULL && host->front != NULL && attr_front_call_partition(host->front, call) == -1
               ? host->front
               : NULL;
}

static int attr__is_exposures(yw_call_t *call)
{
    return yw_call_method(call)->request == &yaowei__attribution__v1__exposure_event__descriptor;
}

static void attr__dispatch_ingest_event(yw_call_t *call, const ProtobufCMessage *msg)
{
    attr_front_t *f = attr__stream_front(call);
    if (f != NULL) {
        attr_front_stream_message(f, call, msg);
    } else if (attr__is_exposures(call)) {
        attr__on_ingest_exposure(call, msg);
    } else {
        attr__on_ingest_conversion(call, msg);
    }
}

static void attr__dispatch_ingest_end(yw_call_t *call)
{
    attr_front_t *f = attr__stream_front(call);
    if (f != NULL) {
        attr_front_stream_end(f, call);
    } else if (attr__is_exposures(call)) {
        attr__on_ingest_exposures_end(call);
    } else {
        attr__on_ingest_conversions_end(call);
    }
}

static void attr__dispatch_ingest_done(yw_call_t *call)
{
    if (attr__stream_front(call) != NULL) {
        attr_front_stream_done(call);
    } else {
        attr__on_ingest_done(call);
    }
}

static const yw_method_t attr_methods[] = {
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordExposures",
              yaowei__attribution__v1__record_exposures_request,
              yaowei__attribution__v1__ingest_summary,
              .on_message = attr__dispatch_record_exposures, .items = "events"),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordConversions",
              yaowei__attribution__v1__record_conversions_request,
              yaowei__attribution__v1__ingest_summary,
              .on_message = attr__dispatch_record_conversions, .items = "events"),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "RecordRefunds",
              yaowei__attribution__v1__record_refunds_request,
              yaowei__attribution__v1__ingest_summary, .on_message = attr__dispatch_record_refunds,
              .items = "events"),
    YW_METHOD(CLIENT_STREAMING, ATTR_SERVICE_NAME, "IngestExposures",
              yaowei__attribution__v1__exposure_event, yaowei__attribution__v1__ingest_summary,
              .on_message = attr__dispatch_ingest_event, .on_end = attr__dispatch_ingest_end,
              .on_done = attr__dispatch_ingest_done, .items = ""),
    YW_METHOD(CLIENT_STREAMING, ATTR_SERVICE_NAME, "IngestConversions",
              yaowei__attribution__v1__conversion_event, yaowei__attribution__v1__ingest_summary,
              .on_message = attr__dispatch_ingest_event, .on_end = attr__dispatch_ingest_end,
              .on_done = attr__dispatch_ingest_done, .items = ""),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "ExplainConversion",
              yaowei__attribution__v1__explain_conversion_request,
              yaowei__attribution__v1__conversion_attribution,
              .on_message = attr__dispatch_explain),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetCreatorReport",
              yaowei__attribution__v1__get_creator_report_request,
              yaowei__attribution__v1__creator_report, .on_message = attr__dispatch_creator_report),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetTierReport",
              yaowei__attribution__v1__get_tier_report_request,
              yaowei__attribution__v1__tier_report, .on_message = attr__dispatch_tier_report),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "ListTopCreators",
              yaowei__attribution__v1__list_top_creators_request,
              yaowei__attribution__v1__list_top_creators_response,
              .on_message = attr__dispatch_top_creators),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "GetAttributionSettings",
              yaowei__attribution__v1__get_attribution_settings_request,
              yaowei__attribution__v1__attribution_settings,
              .on_message = attr__dispatch_get_settings),
    YW_METHOD(UNARY, ATTR_SERVICE_NAME, "UpdateAttributionSettings",
              yaowei__attribution__v1__update_attribution_settings_request,
              yaowei__attribution__v1__attribution_settings,
              .on_message = attr__dispatch_update_settings),
};

const yw_service_t attr_service = {
    .name = ATTR_SERVICE_NAME,
    .methods = attr_methods,
    .n_methods = sizeof attr_methods / sizeof attr_methods[0],
    .ctx = NULL,
    .admit = attr__node_admit,
    .released = attr__node_released,
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
     "HOST:PORT the other nodes call this one at; empty: --listen's host (the host name when "
     "it listens on every address) and the gRPC port",
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
    {"log-linger-ms", "YW_LOG_LINGER_MS", "10",
     "under a concurrent load of RecordExposures (two or more calls in flight at the node "
     "that split them), ms a partition's log waits before it appends a part to NATS, so "
     "that the other calls' parts go in the same message (fewer, larger messages; such a "
     "call waits up to that much more; one call at a time never waits; 0: never)",
     YW_OPTION_VALUE, NULL},
    {"snapshot-kb", "YW_SNAPSHOT_KB", "65536",
     "KiB of a partition's log since its last snapshot after which its owner publishes a new "
     "one and the log before it is purged (what a node taking the partition reads; 0: never)",
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
