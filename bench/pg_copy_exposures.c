/*
 * pg_copy_exposures — the peer a user would pick instead of attribution's exposure log:
 * PostgreSQL, loading the same exposures (bench/bench_events.h, --seed, from --first)
 * with COPY, one transaction of --batch exposures at a time on each of --inflight
 * connections (the service gets --inflight RecordExposures calls of --batch). A COPY in
 * autocommit commits when it ends, so with the server's synchronous_commit=on an
 * acknowledged batch is durable, as the service's are.
 *
 * Rows are one per (exposure, product), so that the join index (viewer_id, product_id,
 * occur_time) answers "which exposures of this viewer showed this product before this
 * time", as the service's in-memory join index does. bench/bench.py creates the table:
 *
 *   exposure_touches (event_id text, viewer_id text, product_id text,
 *                     occur_time timestamptz, creator_id text, note_id text,
 *                     kind smallint, watch_ms bigint)
 *
 * Measures like bench/ingest_exposures: batches whose commit returns in the window
 * (after --warmup, for --seconds) count; or --count exposures, all counted. Prints:
 *
 *   pg_copy_exposures batch=1000 inflight=4 seconds=... sent=... accepted=... errors=...
 *   exposures_per_s=... p50_ms=... p99_ms=... server_cpu_us_per_exposure=...
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench/bench_events.h"
#include "bench/bench_util.h"
#include "common/config.h"

#define COPY_SQL                                                                                   \
    "COPY exposure_touches (event_id, viewer_id, product_id, occur_time, creator_id, note_id, "    \
    "kind, watch_ms) FROM STDIN"

typedef struct {
    bench_events_t ev;
    const char *conninfo;
    uint64_t first;
    long batch;
    long long count;          /* 0: time-bounded */
    uint64_t window_start_ns; /* batches committed at or after this count */
    uint64_t stop_ns;         /* no batch starts at or after this */
    atomic_ullong next_batch; /* batch numbers handed out */
    atomic_int failed;
    pthread_mutex_t mu; /* guards what follows */
    unsigned long long sent, accepted, errors;
    uint64_t last_commit_ns;
    bench_lat_t lat;
    char first_error[256];
} run_t;

/** Appends one COPY text row per product of `x` to `p`; returns the new end. */
static char *rows(char *p, const bench_exposure_t *x)
{
    struct tm tm;
    time_t t = (time_t)x->occur_s;
    gmtime_r(&t, &tm);
    char ts[80];
    snprintf(ts, sizeof ts, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, x->occur_nanos / 1000);
    for (int k = 0; k < x->n_products; k++) {
        p += sprintf(p, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%lld\n", x->event_id, x->viewer_id,
                     x->product_ids[k], ts, x->creator_id, x->note_id, x->kind,
                     (long long)x->watch_ms);
    }
    return p;
}

static void fail(run_t *r, const char *what, PGconn *conn)
{
    pthread_mutex_lock(&r->mu);
    r->errors++;
    if (r->first_error[0] == '\0') {
        snprintf(r->first_error, sizeof r->first_error, "%s: %s", what,
                 conn ? PQerrorMessage(conn) : "");
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->failed, 1);
}

/** One COPY of `len` bytes in its own transaction. Returns 0 or -1 (reported). */
static int copy_batch(run_t *r, PGconn *conn, const char *buf, size_t len)
{
    PGresult *res = PQexec(conn, COPY_SQL);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        PQclear(res);
        fail(r, "COPY", conn);
        return -1;
    }
    PQclear(res);
    if (PQputCopyData(conn, buf, (int)len) != 1 || PQputCopyEnd(conn, NULL) != 1) {
        fail(r, "COPY data", conn);
        return -1;
    }
    int rc = 0;
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0) {
            fail(r, "COPY end", conn);
            rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

static void *worker(void *arg)
{
    run_t *r = arg;
    PGconn *conn = PQconnectdb(r->conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fail(r, "connect", conn);
        PQfinish(conn);
        return NULL;
    }
    /* A row is at most ~250 bytes; BENCH_PRODUCTS_MAX rows per exposure. */
    size_t cap = (size_t)r->batch * BENCH_PRODUCTS_MAX * 256;
    char *buf = malloc(cap);
    bench_exposure_t x;
    while (buf != NULL && !atomic_load(&r->failed)) {
        uint64_t b = atomic_fetch_add(&r->next_batch, 1);
        uint64_t base = b * (uint64_t)r->batch;
        size_t k = (size_t)r->batch;
        if (r->count > 0) {
            if (base >= (uint64_t)r->count) {
                break;
            }
            if (base + k > (uint64_t)r->count) {
                k = (size_t)((uint64_t)r->count - base);
            }
        } else if (bench_now_ns() >= r->stop_ns) {
            break;
        }
        char *p = buf;
        for (size_t i = 0; i < k; i++) {
            bench_exposure(&r->ev, r->first + base + i, &x);
            p = rows(p, &x);
        }
        uint64_t t0 = bench_now_ns();
        if (copy_batch(r, conn, buf, (size_t)(p - buf)) != 0) {
            break;
        }
        uint64_t t1 = bench_now_ns();
        pthread_mutex_lock(&r->mu);
        r->sent += k;
        if (t1 >= r->window_start_ns && (r->count > 0 || t1 < r->stop_ns)) {
            r->accepted += k;
            (void)bench_lat_add(&r->lat, t1 - t0);
        }
        if (t1 > r->last_commit_ns) {
            r->last_commit_ns = t1;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (buf == NULL) {
        fail(r, "out of memory", NULL);
    }
    free(buf);
    PQfinish(conn);
    return NULL;
}

/** Sleeps until the monotonic time `ns`. */
static void sleep_until(uint64_t ns)
{
    uint64_t now;
    while ((now = bench_now_ns()) < ns) {
        uint64_t d = ns - now;
        struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"conninfo", NULL, "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
         "libpq connection string", YW_OPTION_VALUE, NULL},
        {"batch", NULL, "1000", "exposures per COPY (one transaction)", YW_OPTION_VALUE, NULL},
        {"inflight", NULL, "4", "connections, each with one COPY at a time", YW_OPTION_VALUE, NULL},
        {"count", NULL, "0", "load exactly this many exposures instead of timing", YW_OPTION_VALUE,
         NULL},
        {"seconds", NULL, "10", "measured duration", YW_OPTION_VALUE, NULL},
        {"warmup", NULL, "1", "seconds before measuring", YW_OPTION_VALUE, NULL},
        {"seed", NULL, "0", "event seed (bench/bench_events.h); 0: from the clock", YW_OPTION_VALUE,
         NULL},
        {"first", NULL, "0", "index of the first exposure", YW_OPTION_VALUE, NULL},
        {"server-pids", NULL, "",
         "PID[,PID]: report their CPU per exposure (+PID: with "
         "children, e.g. +postmaster)",
         YW_OPTION_VALUE, NULL},
        BENCH_POPULATION_OPTIONS,
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "pg_copy_exposures",
                             "durable exposures/s into PostgreSQL with COPY");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long batch, inflight, count, seconds, warmup, seed, first;
    bench_events_t ev;
    char err[256];
    if (yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "count", &count, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "first", &first, err, sizeof err) != 0 ||
        bench_population_parse(opts, n, &ev, err, sizeof err) != 0) {
        fprintf(stderr, "pg_copy_exposures: %s\n", err);
        return 2;
    }
    if (batch < 1 || batch > 1000000 || inflight < 1 || inflight > 64 || count < 0 || seconds < 1 ||
        warmup < 0 || seed < 0 || first < 0) {
        fprintf(stderr, "pg_copy_exposures: bad option values (--batch 1..1000000, --inflight "
                        "1..64, --seconds >= 1, others >= 0)\n");
        return 2;
    }
    bench_pids_t server;
    if (bench_pids_parse(yw_config_get(opts, n, "server-pids"), &server) != 0) {
        fprintf(stderr, "pg_copy_exposures: --server-pids: expected [+]PID[,...]\n");
        return 2;
    }
    static run_t r;
    r.ev = ev;
    r.ev.seed = bench_seed(seed);
    r.conninfo = yw_config_get(opts, n, "conninfo");
    r.first = (uint64_t)first;
    r.batch = (long)batch;
    r.count = count;
    pthread_mutex_init(&r.mu, NULL);
    uint64_t start = bench_now_ns();
    r.window_start_ns = count > 0 ? start : start + (uint64_t)warmup * 1000000000u;
    r.stop_ns = r.window_start_ns + (uint64_t)seconds * 1000000000u;
    pthread_t th[64];
    int started = 0;
    for (; started < inflight; started++) {
        if (pthread_create(&th[started], NULL, worker, &r) != 0) {
            fail(&r, "pthread_create", NULL);
            break;
        }
    }
    double cpu0 = 0, cpu1 = 0;
    if (count == 0) {
        sleep_until(r.window_start_ns);
        cpu0 = bench_cpu_seconds(&server);
        sleep_until(r.stop_ns);
        cpu1 = bench_cpu_seconds(&server);
    } else {
        cpu0 = bench_cpu_seconds(&server);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    if (count > 0) {
        cpu1 = bench_cpu_seconds(&server);
    }
    double secs = count > 0 ? (double)(r.last_commit_ns - start) / 1e9
                            : (double)(r.stop_ns - r.window_start_ns) / 1e9;
    if (secs <= 0) {
        secs = 1e-9;
    }
    printf("pg_copy_exposures batch=%lld inflight=%lld seconds=%.2f sent=%llu accepted=%llu "
           "errors=%llu exposures_per_s=%.0f p50_ms=%.1f p99_ms=%.1f "
           "server_cpu_us_per_exposure=%.2f\n",
           batch, inflight, secs, r.sent, r.accepted, r.errors, (double)r.accepted / secs,
           bench_lat_quantile(&r.lat, 0.50) / 1000.0, bench_lat_quantile(&r.lat, 0.99) / 1000.0,
           r.accepted > 0 ? (cpu1 - cpu0) * 1e6 / (double)r.accepted : 0.0);
    if (r.first_error[0] != '\0') {
        fprintf(stderr, "pg_copy_exposures: first error: %s\n", r.first_error);
    }
    bench_lat_free(&r.lat);
    pthread_mutex_destroy(&r.mu);
    return r.accepted > 0 && r.errors == 0 ? 0 : 1;
}
