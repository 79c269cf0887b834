/*
 * attr_node.c — this attribution process as a node of a cluster (--cluster): its flags,
 * joining once the server serves, health from what the cluster thread reports, the
 * cluster metrics, leaving at stop. The node is the process's (attr_host_t), not an
 * engine's. Membership and leases are attr_cluster.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "services/attribution/attr_cluster.h"
#include "services/attribution/attr_front.h"
#include "services/attribution/attr_service_int.h"

/* Starting the cluster waits for the server's port (--advertise-addr's default). */
typedef struct st_attr_node_start_t {
    uv_timer_t timer;
    attr_host_t *host;
    attr_cluster_config_t cfg;
    char node_id[ATTR_CLUSTER_NODE_ID_MAX + 2];
    char advertise[300];
} attr_node_start_t;

/* Loop: what the cluster thread reports becomes health, metrics and log lines. */
static void attr__on_cluster(void *arg, const attr_cluster_status_t *st)
{
    attr_host_t *host = arg;
    if (st->fatal) {
        yw_app_fail(host->app, st->error);
        return;
    }
    yw_metric_gauge_set(host->cl_connected, st->connected);
    yw_metric_gauge_set(host->cl_ready, st->ready);
    yw_metric_gauge_set(host->cl_nodes, st->nodes);
    yw_metric_gauge_set(host->cl_not_answering, st->not_answering);
    yw_metric_gauge_set(host->cl_assigned, st->assigned);
    yw_metric_gauge_set(host->cl_owned, st->owned);
    int64_t lost = (int64_t)st->leases_lost - yw_metric_value(host->cl_lost);
    if (lost > 0) {
        yw_metric_add(host->cl_lost, (uint64_t)lost);
    }
    host->assigned = st->assigned;
    attr__parts_sync(host);
    attr__node_health(host);
}

void attr__node_health(attr_host_t *host)
{
    if (host->cluster == NULL) {
        return;
    }
    /* SERVING: connected, and every partition the assignment gives this node is held and
     * served (built from its log, its engine open). */
    const attr_cluster_status_t *st = attr_cluster_status(host->cluster);
    yw_app_set_serving(host->app, st->connected && st->ready && st->nodes > 0 &&
                                      st->owned == st->assigned &&
                                      attr__parts_serving(host) == st->assigned);
}

/* resolve (attr_host_t): a forwarded call's engine is its partition's. */
static attr_svc_t *attr__resolve(void *arg, const yw_call_t *call)
{
    attr_host_t *host = arg;
    int p = attr_front_call_partition(host->front, (yw_call_t *)call);
    return p >= 0 ? attr__parts_engine(host, p) : NULL;
}

static void attr__node_metrics(attr_host_t *host)
{
    yw_metrics_t *m = yw_app_metrics(host->app);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_connected",
                           "1 while this node is connected to NATS.", NULL, &host->cl_connected);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_ready",
                           "1 once the cluster's buckets and stream are there and agree.", NULL,
                           &host->cl_ready);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_nodes",
                           "Live nodes of the cluster, as this node last saw them.", NULL,
                           &host->cl_nodes);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partitions",
                           "Partitions the assignment gives this node (state=assigned) and "
                           "those it holds the lease of (state=owned).",
                           "state=assigned", &host->cl_assigned);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partitions", NULL, "state=owned",
                           &host->cl_owned);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_leases_lost_total",
                             "Leases this node lost without letting them go (renewal refused "
                             "or too late: paused, cut off from NATS).",
                             NULL, &host->cl_lost);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_partitions", NULL, "state=serving",
                           &host->cl_serving);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_partition_builds_total",
                             "Partitions built from their log and served by this node.", NULL,
                             &host->cl_builds);
    (void)yw_metrics_gauge(m, "yaowei_attribution_cluster_nodes_not_answering",
                           "Live nodes (their keys not expired) that do not answer this node's "
                           "probe: their process is gone, or two probes in a row timed out. "
                           "Their partitions are built ahead here until their leases run out.",
                           NULL, &host->cl_not_answering);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_partition_builds_ahead_total",
                             "Partitions built ahead of their lease (a node that held them "
                             "did not answer): served as soon as the lease was this node's "
                             "(result=served), or dropped (result=dropped: the node answered "
                             "again, or the assignment changed).",
                             "result=served", &host->cl_ahead_served);
    (void)yw_metrics_counter(m, "yaowei_attribution_cluster_partition_builds_ahead_total", NULL,
                             "result=dropped", &host->cl_ahead_dropped);
    static const uint64_t ms[] = {10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
    (void)yw_metrics_histogram(m, "yaowei_attribution_cluster_partition_build_seconds",
                               "Time from taking a partition's lease to serving it (its log read "
                               "into a directory, its engine opened).",
                               NULL, ms, sizeof ms / sizeof ms[0], 1e-3, &host->cl_build_ms);
    static const uint64_t open_ms[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
    (void)yw_metrics_histogram(m, "yaowei_attribution_cluster_partition_open_seconds",
                               "Of a build, the time its engine took to open (recovery of the "
                               "built directory), on the loop: calls wait meanwhile.",
                               NULL, open_ms, sizeof open_ms / sizeof open_ms[0], 1e-3,
                               &host->cl_open_ms);
}

static void attr__on_start_closed(uv_handle_t *h)
{
    attr_node_start_t *s = h->data;
    attr__host_unref(s->host);
    free(s);
}

/* Loop, once the server serves: the advertised address is known, the thread starts. */
static void attr__on_start(uv_timer_t *t)
{
    attr_node_start_t *s = t->data;
    attr_host_t *host = s->host;
    host->node_start = NULL;
    if (s->cfg.advertise == NULL) {
        /* --listen's host when it names one (127.0.0.1, 10.0.0.5); the host name when it
         * is a wildcard (0.0.0.0, [::]), which peers must then resolve to this node. */
        char name[256] = "localhost";
        const char *listen = yw_app_option(host->app, "listen");
        const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
        size_t hlen = colon != NULL ? (size_t)(colon - listen) : 0;
        if (hlen > 0 && hlen < sizeof name && strncmp(listen, "0.0.0.0", hlen) != 0 &&
            strncmp(listen, "[::]", hlen) != 0 && strncmp(listen, "::", hlen) != 0) {
            memcpy(name, listen, hlen);
            name[hlen] = '\0';
        } else {
            (void)gethostname(name, sizeof name - 1);
        }
        snprintf(s->advertise, sizeof s->advertise, "%s:%d", name,
                 yw_server_port(yw_app_server(host->app)));
        s->cfg.advertise = s->advertise;
    }
    char err[300];
    int rc = host->stopping
                 ? 0
                 : attr_cluster_start(yw_runtime_loop(yw_app_runtime(host->app)), &s->cfg,
                                      attr__on_cluster, host, &host->cluster, err, sizeof err);
    if (rc == 0 && host->cluster != NULL) {
        rc = attr_front_create(yw_app_runtime(host->app), yw_app_server(host->app), host->cluster,
                               host->ecfg.tier_addr, host->ecfg.tier_label_ttl_ns,
                               yw_app_metrics(host->app), &host->front);
        if (rc == 0) {
            rc = attr__parts_init(host, err, sizeof err);
        } else {
            snprintf(err, sizeof err, "cluster: out of memory");
        }
        if (rc == 0) {
            host->resolve = attr__resolve;
            host->resolve_arg = host;
        }
    }
    if (rc != 0) {
        yw_app_fail(host->app, err);
    }
    uv_close((uv_handle_t *)t, attr__on_start_closed);
}

int attr__node_open(attr_host_t *host, char *err, size_t errlen)
{
    yw_app_t *app = host->app;
    const char *urls = yw_app_option(app, "cluster");
    if (urls == NULL || urls[0] == '\0') {
        return 0;
    }
    attr_node_start_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    long long partitions = 64, replicas = 3, ttl_ms = 5000, linger_ms = 10;
    int rc = attr__option_int(app, "partitions", 1, ATTR_CLUSTER_MAX_PARTITIONS, &partitions, err,
                              errlen);
    if (rc == 0) {
        rc = attr__option_int(app, "replicas", 1, 5, &replicas, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "lease-ttl-ms", 1000, 600000, &ttl_ms, err, errlen);
    }
    if (rc == 0) {
        rc = attr__option_int(app, "log-linger-ms", 0, 1000, &linger_ms, err, errlen);
    }
    const char *node_id = yw_app_option(app, "node-id");
    if (node_id == NULL || node_id[0] == '\0') {
        if (gethostname(s->node_id, sizeof s->node_id - 1) != 0) {
            snprintf(s->node_id, sizeof s->node_id, "attribution");
        }
        node_id = s->node_id;
    }
    const char *advertise = yw_app_option(app, "advertise-addr");
    s->cfg = (attr_cluster_config_t){
        .urls = urls,
        .node_id = node_id,
        .advertise = (advertise != NULL && advertise[0] != '\0') ? advertise : "(the port)",
        .partitions = (int)partitions,
        .replicas = (int)replicas,
        .lease_ttl_ms = ttl_ms,
        .tls_ca = yw_app_option(app, "cluster-tls-ca"),
        .creds = yw_app_option(app, "cluster-creds"),
    };
    if (rc == 0) {
        rc = attr_cluster_config_check(&s->cfg, err, errlen);
    }
    if (rc == 0) {
        rc = uv_timer_init(yw_runtime_loop(yw_app_runtime(app)), &s->timer);
    }
    if (rc == 0) {
        rc = uv_timer_start(&s->timer, attr__on_start, 0, 0);
    }
    if (rc != 0) {
        free(s);
        return rc;
    }
    if (advertise == NULL || advertise[0] == '\0') {
        s->cfg.advertise = NULL; /* this host and the server's port, once it serves */
    }
    s->timer.data = s;
    s->host = host;
    host->refs++;
    host->node_start = s;
    host->clustered = 1;
    host->ecfg.ship_linger_ns = (uint64_t)linger_ms * 1000000u; /* every partition's engine */
    attr__node_metrics(host);
    yw_app_set_serving(app, 0); /* until the partitions assigned to it are held */
    yw_log(YW_LOG_INFO,
           "cluster mode: node %s, NATS %s, %lld partitions, %lld replicas, lease %lld ms, log "
           "linger %lld ms",
           node_id, urls, partitions, replicas, ttl_ms, linger_ms);
    return 0;
}

void attr__node_close(attr_host_t *host)
{
    if (host->node_start != NULL) {
        uv_close((uv_handle_t *)&host->node_start->timer, attr__on_start_closed);
        host->node_start = NULL;
    }
    attr_cluster_stop(host->cluster);
    host->cluster = NULL;
}

int attr__node_admit(yw_call_t *call)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host == NULL || !host->clustered) {
        return 0;
    }
    if (host->front == NULL || host->parts == NULL) {
        yw_call_fail(call, GRPC_STATUS_UNAVAILABLE, "this node has not joined its cluster yet");
        return -1;
    }
    int p = attr_front_call_partition(host->front, call);
    if (p == -2) {
        return -1; /* failed already */
    }
    if (p >= 0) {
        return attr__parts_hold(host, call, p);
    }
    const char *path = yw_call_method(call)->path;
    static const char *const front[] = {
        "/yaowei.attribution.v1.AttributionService/RecordExposures",
        "/yaowei.attribution.v1.AttributionService/RecordConversions",
        "/yaowei.attribution.v1.AttributionService/GetCreatorReport",
        "/yaowei.attribution.v1.AttributionService/GetTierReport",
        "/yaowei.attribution.v1.AttributionService/ListTopCreators",
        "/yaowei.attribution.v1.AttributionService/GetAttributionSettings",
        "/yaowei.attribution.v1.AttributionService/UpdateAttributionSettings",
        "/yaowei.attribution.v1.AttributionService/IngestExposures",
        "/yaowei.attribution.v1.AttributionService/IngestConversions",
        "/yaowei.attribution.v1.AttributionService/RecordRefunds",
        "/yaowei.attribution.v1.AttributionService/ExplainConversion",
    };
    for (size_t i = 0; i < sizeof front / sizeof front[0]; i++) {
        if (strcmp(path, front[i]) == 0) {
            return 0;
        }
    }
    yw_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                   "%s: not served to clients in cluster mode (a cluster node serves every "
                   "method of AttributionService; this one only to the other nodes, naming a "
                   "partition)",
                   path);
    return -1;
}

void attr__node_released(yw_call_t *call)
{
    attr_host_t *host = yw_app_state(yw_app_from_call(call));
    if (host == NULL || host->front == NULL || host->parts == NULL) {
        return;
    }
    int p = attr_front_call_partition(host->front, call);
    if (p >= 0) {
        attr__parts_release(host, p);
    }
}
