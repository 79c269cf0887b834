/*
 * fsync_ceiling — the physical ceiling of durable exposure ingestion on this disk: the
 * same exposures the service is sent (bench/bench_events.h, --seed, from --first), encoded
 * as the RecordExposuresRequest of each --batch (the bytes the service receives), appended
 * to a new file in --dir with one write() and one fdatasync() per batch, one batch after
 * the other. Only the write and the fdatasync are timed (making the events is not I/O):
 *
 *   fsync_ceiling batch=1000 batches=... events=... bytes_per_event=... io_seconds=...
 *   exposures_per_s=... p50_us=... p99_us=...
 *
 * p50/p99 are of write + fdatasync per batch. Stops after --seconds of I/O time or
 * --count events, whichever comes first; the file is removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_events.h"
#include "bench/bench_util.h"
#include "common/config.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"dir", NULL, "/var/tmp", "directory on the disk to measure", YW_OPTION_VALUE, NULL},
        {"batch", NULL, "1000", "exposures per write + fdatasync", YW_OPTION_VALUE, NULL},
        {"seconds", NULL, "5", "I/O time to measure", YW_OPTION_VALUE, NULL},
        {"count", NULL, "0", "stop after this many exposures (0: no limit)", YW_OPTION_VALUE, NULL},
        {"seed", NULL, "0", "event seed (bench/bench_events.h); 0: from the clock", YW_OPTION_VALUE,
         NULL},
        {"first", NULL, "0", "index of the first exposure", YW_OPTION_VALUE, NULL},
        BENCH_POPULATION_OPTIONS,
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "fsync_ceiling",
                             "exposures appended to a file, one fdatasync per batch");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long batch, seconds, count, seed, first;
    bench_events_t ev;
    char err[256];
    if (yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "count", &count, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "first", &first, err, sizeof err) != 0 ||
        bench_population_parse(opts, n, &ev, err, sizeof err) != 0) {
        fprintf(stderr, "fsync_ceiling: %s\n", err);
        return 2;
    }
    if (batch < 1 || batch > 100000 || seconds < 1 || count < 0 || seed < 0 || first < 0) {
        fprintf(stderr, "fsync_ceiling: bad option values (--batch 1..100000, --seconds >= 1, "
                        "others >= 0)\n");
        return 2;
    }
    ev.seed = bench_seed(seed);
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-ceiling-%d.log", yw_config_get(opts, n, "dir"),
             (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fsync_ceiling: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t b = (size_t)batch;
    bench_exposure_t *xs = calloc(b, sizeof *xs);
    Yaowei__Attribution__V1__ExposureEvent *evs = calloc(b, sizeof *evs);
    Yaowei__Attribution__V1__ExposureEvent **ptrs =
        calloc(b, sizeof(Yaowei__Attribution__V1__ExposureEvent *));
    Google__Protobuf__Timestamp *times = calloc(b, sizeof *times);
    char *(*prods)[BENCH_PRODUCTS_MAX] = calloc(b, sizeof *prods);
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    bench_lat_t lat = {0};
    uint64_t io_ns = 0, events = 0, bytes = 0, batches = 0;
    rc = xs && evs && ptrs && times && prods ? 0 : -ENOMEM;
    while (rc == 0 && io_ns < (uint64_t)seconds * 1000000000u &&
           (count == 0 || events < (uint64_t)count)) {
        size_t k = b;
        if (count > 0 && events + k > (uint64_t)count) {
            k = (size_t)((uint64_t)count - events);
        }
        for (size_t i = 0; i < k; i++) {
            bench_exposure(&ev, (uint64_t)first + events + i, &xs[i]);
            bench_exposure_pb(&xs[i], &evs[i], &times[i], prods[i]);
            ptrs[i] = &evs[i];
        }
        Yaowei__Attribution__V1__RecordExposuresRequest req =
            YAOWEI__ATTRIBUTION__V1__RECORD_EXPOSURES_REQUEST__INIT;
        req.n_events = k;
        req.events = ptrs;
        size_t len = yaowei__attribution__v1__record_exposures_request__get_packed_size(&req);
        if (len > buf_cap) {
            uint8_t *nb = realloc(buf, len);
            if (nb == NULL) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            buf_cap = len;
        }
        yaowei__attribution__v1__record_exposures_request__pack(&req, buf);
        uint64_t t0 = bench_now_ns();
        if ((rc = write_all(fd, buf, len)) != 0) {
            break;
        }
        if (fdatasync(fd) != 0) {
            rc = -errno;
            break;
        }
        uint64_t dt = bench_now_ns() - t0;
        io_ns += dt;
        (void)bench_lat_add(&lat, dt);
        events += k;
        bytes += len;
        batches++;
    }
    close(fd);
    unlink(path);
    free(xs);
    free(evs);
    free(ptrs);
    free(times);
    free(prods);
    free(buf);
    if (rc != 0) {
        fprintf(stderr, "fsync_ceiling: %s: %s\n", path, strerror(-rc));
        bench_lat_free(&lat);
        return 1;
    }
    double secs = io_ns > 0 ? (double)io_ns / 1e9 : 1e-9;
    printf("fsync_ceiling batch=%lld batches=%llu events=%llu bytes_per_event=%.1f io_seconds=%.2f "
           "exposures_per_s=%.0f p50_us=%u p99_us=%u\n",
           batch, (unsigned long long)batches, (unsigned long long)events,
           events ? (double)bytes / (double)events : 0.0, secs, (double)events / secs,
           bench_lat_quantile(&lat, 0.50), bench_lat_quantile(&lat, 0.99));
    bench_lat_free(&lat);
    return events > 0 ? 0 : 1;
}
