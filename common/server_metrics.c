/*
 * server_metrics.c — the server runtime's Prometheus families (metrics.h), per method:
 * grpc_server_started_total, grpc_server_handled_total (by status code),
 * grpc_server_handling_seconds, and grpc_server_calls_in_flight. Calls to unknown
 * methods are counted under grpc_method="unknown". Loop thread; the registry's updates
 * are lock-free.
 */
#include "common/server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registers the handles of one method: started, OK and latency up front, so that the
 * series exist from the start; other codes on their first call. */
static int yw__method_metrics_init(yw_server_t *srv, yw__method_metrics_t *mm, const char *path,
                                   yw_method_kind_t kind)
{
    static const char *const kinds[] = {"unary", "server_stream", "client_stream", "bidi_stream"};
    char service[256] = "unknown", method[256] = "unknown", labels[600];
    if (path != NULL) {
        const char *slash = strrchr(path, '/');
        const char *start = path[0] == '/' ? path + 1 : path;
        if (slash != NULL && slash > start) {
            snprintf(service, sizeof service, "%.*s", (int)(slash - start), start);
            snprintf(method, sizeof method, "%s", slash + 1);
        }
    }
    snprintf(labels, sizeof labels, "grpc_method=%s,grpc_service=%s,grpc_type=%s", method, service,
             kinds[kind]);
    if ((mm->labels = strdup(labels)) == NULL) {
        return -ENOMEM;
    }
    yw_metrics_t *m = srv->cfg.metrics;
    char ok[640];
    snprintf(ok, sizeof ok, "%s,grpc_code=OK", labels);
    int rc;
    if ((rc = yw_metrics_counter(m, "grpc_server_started_total",
                                 "Calls started on the server, by method.", labels,
                                 &mm->started)) != 0 ||
        (rc = yw_metrics_counter(m, "grpc_server_handled_total",
                                 "Calls completed on the server, by method and status code.", ok,
                                 &mm->handled[GRPC_STATUS_OK])) != 0 ||
        (rc = yw_metrics_histogram(
             m, "grpc_server_handling_seconds",
             "Time from a call's arrival to its end (status sent), by method.", labels,
             yw_metrics_latency_bounds_ns, YW_METRICS_N_LATENCY_BOUNDS, 1e-9, &mm->latency)) != 0) {
        return rc;
    }
    return 0;
}

int yw__metrics_init(yw_server_t *srv, char *err, size_t errlen)
{
    if (srv->cfg.metrics == NULL) {
        return 0;
    }
    srv->mm = calloc(srv->n_regs + 1, sizeof *srv->mm);
    if (srv->mm == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = yw_metrics_gauge(srv->cfg.metrics, "grpc_server_calls_in_flight",
                              "Calls accepted and not yet ended.", NULL, &srv->in_flight);
    for (size_t i = 0; rc == 0 && i <= srv->n_regs; i++) {
        if (i < srv->n_regs) {
            srv->regs[i].mm = &srv->mm[i];
            rc = yw__method_metrics_init(srv, &srv->mm[i], srv->regs[i].method->path,
                                         srv->regs[i].method->kind);
        } else {
            rc = yw__method_metrics_init(srv, &srv->mm[i], NULL, YW_METHOD_UNARY);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "metrics: cannot register the server's metrics (%d)", rc);
    }
    return rc;
}

void yw__metrics_free(yw_server_t *srv)
{
    if (srv->mm != NULL) {
        for (size_t i = 0; i <= srv->n_regs; i++) {
            free(srv->mm[i].labels);
        }
        free(srv->mm);
        srv->mm = NULL;
    }
}

/* ---- auth ---- */

/* The metrics of the call's method, or of unknown methods; NULL when nothing is counted. */
static yw__method_metrics_t *yw__call_metrics(const yw_call_t *c)
{
    const yw_server_t *srv = c->srv;
    return c->reg ? c->reg->mm : (srv->mm ? &srv->mm[srv->n_regs] : NULL);
}

void yw__count_start(yw_call_t *c)
{
    yw__method_metrics_t *mm = yw__call_metrics(c);
    if (mm != NULL) {
        yw_metric_inc(mm->started);
        yw_metric_gauge_add(c->srv->in_flight, 1);
    }
}

void yw__count_end(yw_call_t *c, grpc_status_code code, uint64_t ns)
{
    yw_server_t *srv = c->srv;
    yw__method_metrics_t *mm = yw__call_metrics(c);
    if (mm == NULL) {
        return;
    }
    size_t k = (int)code >= 0 && (int)code < YW__N_CODES ? (size_t)code : GRPC_STATUS_UNKNOWN;
    if (mm->handled[k] == NULL) {
        /* clang-format off */
        static const char *const names[YW__N_CODES] = {
            "OK",          "Canceled",          "Unknown",          "InvalidArgument",
            "DeadlineExceeded", "NotFound",     "AlreadyExists",    "PermissionDenied",
            "ResourceExhausted", "FailedPrecondition", "Aborted",   "OutOfRange",
            "Unimplemented", "Internal",        "Unavailable",      "DataLoss",
            "Unauthenticated",
        };
        /* clang-format on */
        char labels[512];
        snprintf(labels, sizeof labels, "%s,grpc_code=%s", mm->labels, names[k]);
        /* On failure (out of memory) the handle stays NULL: this call goes uncounted. */
        (void)yw_metrics_counter(srv->cfg.metrics, "grpc_server_handled_total",
                                 "Calls completed on the server, by method and status code.",
                                 labels, &mm->handled[k]);
    }
    /* Out of the gauge first: a scrape that sees the call counted sees it out. */
    yw_metric_gauge_add(srv->in_flight, -1);
    yw_metric_inc(mm->handled[k]);
    yw_metric_observe(mm->latency, ns);
}
