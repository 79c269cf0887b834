/*
 * bench_util.h — what every load generator of bench/ measures the same way: the CPU
 * time of the server processes over exactly the measured window (utime + stime from
 * /proc/PID/stat), latency percentiles, and one clock.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_PIDS_MAX 16

/** Server processes whose CPU time a run reports. */
typedef struct st_bench_pids_t {
    int n;
    int pid[BENCH_PIDS_MAX];
    /** Count the process's children too (PostgreSQL: the postmaster's backends). */
    int children[BENCH_PIDS_MAX];
} bench_pids_t;

/**
 * Parses "PID[,PID...]" (NULL or "" is none); a PID written "+PID" counts its direct
 * children too. Returns 0 or -EINVAL.
 */
int bench_pids_parse(const char *list, bench_pids_t *out);

/** CPU seconds (user + system) used so far by the processes of `p`; 0 when none. */
double bench_cpu_seconds(const bench_pids_t *p);

/** Peak resident set (VmHWM) of `pid` in KiB, or -1 when it cannot be read. */
long bench_peak_rss_kib(int pid);

/** Latencies in microseconds; grows as needed. Zero-initialise. */
typedef struct st_bench_lat_t {
    uint32_t *us;
    size_t n, cap;
    int sorted;
} bench_lat_t;

/** Records one latency of `ns` nanoseconds. Returns 0 or -ENOMEM. */
int bench_lat_add(bench_lat_t *l, uint64_t ns);

/** The q-quantile (0 < q <= 1, nearest rank) in microseconds; 0 when empty. */
uint32_t bench_lat_quantile(bench_lat_t *l, double q);

void bench_lat_free(bench_lat_t *l);

/** Monotonic nanoseconds. */
uint64_t bench_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
