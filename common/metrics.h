/*
 * metrics.h — Prometheus metrics for every yaowei service: a registry of counters,
 * gauges and histograms that any thread updates without a lock, rendered in the
 * Prometheus text exposition format (version 0.0.4), and an HTTP endpoint
 * (libmicrohttpd, on a thread of its own) that serves it at GET /metrics on the port
 * given by --metrics-listen.
 *
 * Threads, stated once:
 * - Updates (yw_metric_inc/add/set/observe) are lock-free relaxed atomic adds on memory
 *   allocated at registration: any thread, no allocation, no lock, a few ns each. The
 *   loop thread never waits for a scrape.
 * - Registration (yw_metrics_counter/gauge/histogram, and the by-name helpers the first
 *   time they see a series) takes a registration mutex that only registrations take;
 *   the scrape walks the registry without it (series are published with release stores
 *   and never removed). Register on start-up, keep the handle, and update the handle
 *   on hot paths.
 * - Handles stay valid until yw_metrics_destroy(). Every update function accepts a NULL
 *   handle and does nothing, so code runs unchanged where no registry exists.
 *
 * Labels are given as "key=value,key=value" (keys [a-zA-Z_][a-zA-Z0-9_]*; a value may
 * hold anything but a comma; it is escaped on output). The same series is found
 * whatever order its labels are given in.
 *
 * What yw_app_main() registers for every service (see README "Operating"): the
 * grpc_server_* family (per method and status code), yaowei_store_* (group commits),
 * and process_* (memory, CPU, file descriptors). A service adds its own on start-up:
 *
 *   // in init(), on the loop thread:
 *   yw_metrics_t *m = yw_app_metrics(app);
 *   yw_metric_t *ingested;
 *   rc = yw_metrics_counter(m, "yaowei_events_total",
 *                           "Events received by kind and outcome.",
 *                           "kind=exposure,result=ingested", &ingested);
 *   // later, any thread:
 *   yw_metric_add(ingested, batch_accepted);
 *
 *   // or by name, where a lookup per update is cheap enough (not per call):
 *   yw_metrics_counter_add(m, "yaowei_events_total", "kind=exposure,result=duplicate", dups);
 *
 * Names used by the services (keep to them so that dashboards work across services):
 *   yaowei_events_total{kind="exposure|conversion",result="ingested|duplicate|rejected"}
 *   yaowei_attribution_results_total{model="...",result="attributed|unattributed"}
 *   yaowei_attributed_amount_minor_total{model="...",currency="CNY"}
 */
#ifndef YW_METRICS_H
#define YW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_metrics_t yw_metrics_t;
typedef struct st_yw_metric_t yw_metric_t;
typedef struct st_yw_metrics_http_t yw_metrics_http_t;

/** yw_metrics_create() flag: also render process_* metrics (memory, CPU, fds). */
#define YW_METRICS_PROCESS 1u

/** The most labels one series may have. */
#define YW_METRICS_MAX_LABELS 8

/**
 * Latency buckets in nanoseconds, for yw_metrics_histogram() with scale 1e-9 (seconds):
 * 100 µs, 250 µs, 500 µs, 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms,
 * 500 ms, 1 s, 2.5 s, 5 s, 10 s (+Inf is implied).
 */
extern const uint64_t yw_metrics_latency_bounds_ns[];
#define YW_METRICS_N_LATENCY_BOUNDS 16

/**
 * Creates an empty registry. `flags`: 0 or YW_METRICS_PROCESS. Returns 0 or -ENOMEM.
 * The caller owns it and frees it with yw_metrics_destroy().
 */
int yw_metrics_create(unsigned flags, yw_metrics_t **out);

/**
 * Frees the registry and every handle in it. Nothing may use it any more: stop its
 * HTTP endpoint first, and the threads that update its handles.
 */
void yw_metrics_destroy(yw_metrics_t *m);

/**
 * Registers (or finds) the counter series `name{labels}` and sets *out to its handle.
 * `help` is the family's # HELP text (the first registration of a name sets it; may be
 * NULL); `labels` may be NULL or "". Returns 0, -EINVAL (a bad name or labels, or the
 * name is already a family of another type), or -ENOMEM.
 */
int yw_metrics_counter(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                       yw_metric_t **out);

/** As yw_metrics_counter(), for a gauge (a signed 64-bit value that goes up and down). */
int yw_metrics_gauge(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                     yw_metric_t **out);

/**
 * As yw_metrics_counter(), for a histogram: observations are unsigned integers in the
 * caller's unit (e.g. nanoseconds), `bounds` are the upper bounds of the buckets in that
 * unit, strictly increasing (at most 32; +Inf is added), and `scale` converts the unit
 * to the one exposed (1e-9 for ns -> seconds, 1 for plain counts). Every series of a
 * family has the same bounds and scale: a different one is -EINVAL.
 */
int yw_metrics_histogram(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                         const uint64_t *bounds, size_t n_bounds, double scale, yw_metric_t **out);

/** Counter: += 1. Any thread; NULL does nothing. */
void yw_metric_inc(yw_metric_t *counter);

/** Counter: += v. Any thread; NULL does nothing. */
void yw_metric_add(yw_metric_t *counter, uint64_t v);

/** Gauge: += delta (may be negative). Any thread; NULL does nothing. */
void yw_metric_gauge_add(yw_metric_t *gauge, int64_t delta);

/** Gauge: = v. Any thread; NULL does nothing. */
void yw_metric_gauge_set(yw_metric_t *gauge, int64_t v);

/** Histogram: records one observation `v` (in the histogram's unit). NULL does nothing. */
void yw_metric_observe(yw_metric_t *histogram, uint64_t v);

/**
 * The current value: a counter's count, a gauge's value, a histogram's number of
 * observations. 0 for NULL. For tests and for services that read their own figures.
 */
int64_t yw_metric_value(const yw_metric_t *metric);

/**
 * By name, for code that does not keep handles: finds or registers the counter
 * `name{labels}` and adds `v`. Costs a lookup (a walk of the registry and a label
 * parse) per call: fine per batch or per event-loop tick, not per gRPC call — keep a
 * handle there. Returns 0 or the errors of yw_metrics_counter(); NULL `m` is 0.
 */
int yw_metrics_counter_add(yw_metrics_t *m, const char *name, const char *labels, uint64_t v);

/** By name, as yw_metrics_counter_add(), for a gauge: sets it to `v`. */
int yw_metrics_gauge_set(yw_metrics_t *m, const char *name, const char *labels, int64_t v);

/**
 * Renders every family that has at least one series, in registration order, then the
 * process_* metrics when the registry was created with YW_METRICS_PROCESS. Any thread;
 * takes no lock that an update or a registration waits on. On success *out is a
 * NUL-terminated malloc'd string the caller frees, *len its length. Returns 0 or
 * -ENOMEM.
 */
int yw_metrics_render(yw_metrics_t *m, char **out, size_t *len);

/**
 * Serves `m` over HTTP on `listen` ("HOST:PORT", "[v6addr]:PORT"; port 0 picks a free
 * one, see yw_metrics_http_port()) from a libmicrohttpd thread: GET or HEAD /metrics
 * answers 200 in the text format, any other path 404, any other method 405. Returns 0,
 * or a negative errno with a message in `err` (the address does not parse or resolve,
 * or cannot be bound). `m` must outlive the endpoint.
 */
int yw_metrics_http_start(yw_metrics_t *m, const char *listen, yw_metrics_http_t **out, char *err,
                          size_t errlen);

/** The bound TCP port of the endpoint. */
int yw_metrics_http_port(const yw_metrics_http_t *h);

/**
 * Stops the endpoint: closes the socket and joins its thread (waits for a scrape in
 * progress to finish), then frees it. NULL does nothing.
 */
void yw_metrics_http_stop(yw_metrics_http_t *h);

#ifdef __cplusplus
}
#endif
#endif
