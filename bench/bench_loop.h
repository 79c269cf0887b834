/*
 * bench_loop.h — the closed loop every unary load generator of bench/ runs, on the
 * project's own client runtime (common/client.h): `inflight` calls of one method are
 * kept in flight on one channel; each reply starts the next call of its slot (after a
 * failed call, BENCH_FAIL_PAUSE_MS later: no spinning on a peer that is away). With
 * several addresses (an attribution cluster's nodes) there is one channel per address
 * and slot i calls address i mod n, so the calls in flight are spread evenly.
 *
 * Time-bounded (max_requests 0): replies that arrive in the measured window — after
 * `warmup_ms`, for `measure_ms` — are counted, with their latencies, and the CPU time of
 * the server processes is sampled at the window's two ends. Then no call is started any
 * more, and the run ends when the calls in flight have come back (they count for
 * nothing). Count-bounded (max_requests > 0, e.g. a preload): exactly that many calls
 * are made, all replies are "measured", and the window is the whole run.
 */
#ifndef BENCH_LOOP_H
#define BENCH_LOOP_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "bench/bench_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Builds request number `n` (0, 1, ... across all slots) for call slot `slot`
 * (0 .. inflight-1). The message belongs to the caller and must stay valid until that
 * slot's reply callback has run.
 */
typedef const ProtobufCMessage *(*bench_next_cb_t)(void *arg, long slot, uint64_t n);

/**
 * The reply of slot `slot`'s call: `resp` is NULL unless `code` is OK and is freed after
 * the callback; `measured` says whether it arrived in the measured window.
 */
typedef void (*bench_reply_cb_t)(void *arg, long slot, grpc_status_code code,
                                 const ProtobufCMessage *resp, int measured);

/** A slot whose call failed starts its next one this much later, not at once. */
#define BENCH_FAIL_PAUSE_MS 100

/** At most this many addresses in bench_loop_cfg_t.addr. */
#define BENCH_ADDRS_MAX 8

typedef struct st_bench_loop_cfg_t {
    const char *addr;   /* HOST:PORT, or HOST:PORT,HOST:PORT,... (at most BENCH_ADDRS_MAX) */
    const char *method; /* "/pkg.Service/Method" */
    const ProtobufCMessageDescriptor *resp_desc;
    long inflight;
    long long warmup_ms, measure_ms;
    long long max_requests;     /* > 0: count-bounded */
    int64_t timeout_ms;         /* per call */
    const bench_pids_t *server; /* CPU sampled over the window; may be NULL */
    bench_next_cb_t next;
    bench_reply_cb_t reply; /* may be NULL */
    void *arg;
} bench_loop_cfg_t;

typedef struct st_bench_loop_result_t {
    double seconds;                /* the measured window */
    unsigned long long requests;   /* calls started in all */
    unsigned long long ok, errors; /* replies in the window */
    bench_lat_t lat;               /* of the OK replies in the window */
    double server_cpu_s;           /* over the window */
    double client_cpu_s;           /* this process, over the window */
    char first_error[256];         /* of any reply, "" when none */
} bench_loop_result_t;

/**
 * Runs the loop to its end. Returns 0, or a negative errno when the runtime or a
 * channel cannot be set up or `addr` is not a list of 1..BENCH_ADDRS_MAX non-empty
 * addresses (-EINVAL) (details on stderr). `res` is filled in either case; free
 * res->lat with bench_lat_free().
 */
int bench_loop_run(const bench_loop_cfg_t *cfg, bench_loop_result_t *res);

#ifdef __cplusplus
}
#endif
#endif
