/*
 * disk.c — the reserve and the write gate of the data directory. See disk.h.
 *
 * Threads: `full`, `enospc` and `avail` are atomics, read and written from any thread.
 * Everything else is the loop's, except what a look (yw__look()) uses: one look runs at
 * a time (`looking`), on the thread pool or, in yw_disk_open(), on the loop before any
 * other; it owns `have_reserve` and writes its outcome into `look` for the loop to log.
 */
#include "common/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"

#define YW__MIB (1024.0 * 1024.0)
/* The reserve is at most this fraction of the file system. */
#define YW__RESERVE_SHARE 16
/* Writes resume with at least this much free, even with no reserve. */
#define YW__RESUME_MIN (1ull << 20)

/** What a look found, for the loop to log. */
typedef struct st_yw__look_t {
    int rc;          /* of statfs: 0 or a negative errno */
    int became_full; /* 1: full now, writable before */
    int resumed;     /* 1: writable now, full before */
    int reserve_rc;  /* of preallocating the reserve: 0 or a negative errno */
    uint64_t avail;
} yw__look_t;

struct st_yw_disk_t {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_async_t async;
    uv_work_t work;
    char *dir;
    char *reserve_path;
    uint64_t reserve;
    int (*statfs)(void *arg, const char *dir, uint64_t *avail, uint64_t *size);
    void *statfs_arg;
    yw_metric_t *g_full, *g_free;

    atomic_int full;
    atomic_int enospc;
    atomic_int stopping; /* yw_disk_release(): no reserve from now on */
    _Atomic uint64_t avail;

    int have_reserve; /* the look's */
    yw__look_t look;
    int looking, look_again, closing, open_handles;
};

static int yw__statvfs(void *arg, const char *dir, uint64_t *avail, uint64_t *size)
{
    (void)arg;
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) {
        return -errno;
    }
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    *size = (uint64_t)sv.f_blocks * sv.f_frsize;
    return 0;
}

/* Preallocates the reserve file (an existing one is kept, cut to size). */
static int yw__reserve_create(const yw_disk_t *d)
{
    int fd = open(d->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -errno;
    }
    int e = posix_fallocate(fd, 0, (off_t)d->reserve);
    if (e == 0 && ftruncate(fd, (off_t)d->reserve) != 0) {
        e = errno;
    }
    close(fd);
    if (e != 0) {
        (void)unlink(d->reserve_path); /* half a reserve would only take space */
    }
    return -e;
}

static uint64_t yw__resume_at(const yw_disk_t *d)
{
    return 2 * d->reserve > YW__RESUME_MIN ? 2 * d->reserve : YW__RESUME_MIN;
}

/* One look at the file system: the state machine of disk.h. */
static void yw__look(yw_disk_t *d, yw__look_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t avail = 0, size = 0;
    int reported = atomic_exchange(&d->enospc, 0);
    int was_full = atomic_load(&d->full), full = was_full;
    if (d->have_reserve && access(d->reserve_path, F_OK) != 0 && errno == ENOENT) {
        d->have_reserve = 0; /* deleted behind our back: made again below */
    }
    if ((out->rc = d->statfs(d->statfs_arg, d->dir, &avail, &size)) != 0) {
        full = full || reported; /* nothing known but what the writes said */
    } else if (reported || (!full && avail < d->reserve)) {
        full = 1;
    } else if (full && avail >= yw__resume_at(d)) {
        if (d->reserve == 0 || d->have_reserve || (out->reserve_rc = yw__reserve_create(d)) == 0) {
            d->have_reserve = d->reserve > 0;
            full = 0;
        }
    }
    if (full && d->have_reserve) {
        if (unlink(d->reserve_path) == 0 || errno == ENOENT) {
            d->have_reserve = 0;
            (void)d->statfs(d->statfs_arg, d->dir, &avail, &size);
        }
    }
    if (!full && !d->have_reserve && d->reserve > 0 && !atomic_load(&d->stopping)) {
        /* At the first look, or after it was deleted behind our back. */
        if ((out->reserve_rc = yw__reserve_create(d)) == 0) {
            d->have_reserve = 1;
            (void)d->statfs(d->statfs_arg, d->dir, &avail, &size);
        } else {
            full = 1;
        }
    }
    if (atomic_load(&d->stopping) && d->have_reserve) {
        (void)unlink(d->reserve_path); /* after any creation above: released for good */
        d->have_reserve = 0;
    }
    atomic_store(&d->full, full);
    atomic_store(&d->avail, avail);
    yw_metric_gauge_set(d->g_full, full);
    yw_metric_gauge_set(d->g_free, (int64_t)avail);
    out->avail = avail;
    out->became_full = full && !was_full;
    out->resumed = !full && was_full;
}

/* Logs what a look changed. Loop thread. */
static void yw__log_look(const yw_disk_t *d, const yw__look_t *l)
{
    if (l->rc != 0) {
        yw_log(YW_LOG_WARN, "disk: cannot look at the file system of %s: %s", d->dir,
               strerror(-l->rc));
    }
    if (l->reserve_rc != 0) {
        yw_log(YW_LOG_WARN, "disk: cannot preallocate the reserve %s (%.1f MiB): %s",
               d->reserve_path, (double)d->reserve / YW__MIB, strerror(-l->reserve_rc));
    }
    if (l->became_full) {
        yw_log(YW_LOG_ERROR,
               "disk full: %.1f MiB free in %s (reserve %.1f MiB released); writes are refused "
               "(RESOURCE_EXHAUSTED) until %.1f MiB are free",
               (double)l->avail / YW__MIB, d->dir, (double)d->reserve / YW__MIB,
               (double)yw__resume_at(d) / YW__MIB);
    }
    if (l->resumed) {
        yw_log(YW_LOG_INFO,
               "disk: %.1f MiB free in %s, reserve of %.1f MiB in place: writes "
               "resume",
               (double)l->avail / YW__MIB, d->dir, (double)d->reserve / YW__MIB);
    }
}

static void yw__free(yw_disk_t *d)
{
    free(d->dir);
    free(d->reserve_path);
    free(d);
}

static void yw__maybe_free(yw_disk_t *d)
{
    if (d->closing && d->open_handles == 0 && !d->looking) {
        yw__free(d);
    }
}

static void yw__look_work(uv_work_t *w)
{
    yw_disk_t *d = w->data;
    yw__look(d, &d->look);
}

static void yw__start_look(yw_disk_t *d);

static void yw__look_done(uv_work_t *w, int status)
{
    yw_disk_t *d = w->data;
    d->looking = 0;
    if (status == 0) {
        yw__log_look(d, &d->look);
    }
    if (d->look_again && !d->closing) {
        d->look_again = 0;
        yw__start_look(d);
    }
    yw__maybe_free(d);
}

static void yw__start_look(yw_disk_t *d)
{
    if (d->closing) {
        return;
    }
    if (d->looking) {
        d->look_again = 1; /* a write reported ENOSPC during the look */
        return;
    }
    d->work.data = d;
    if (uv_queue_work(d->loop, &d->work, yw__look_work, yw__look_done) == 0) {
        d->looking = 1;
    }
}

static void yw__on_timer(uv_timer_t *t)
{
    yw__start_look(t->data);
}

static void yw__on_async(uv_async_t *a)
{
    yw__start_look(a->data);
}

static void yw__on_closed(uv_handle_t *h)
{
    yw_disk_t *d = h->data;
    d->open_handles--;
    yw__maybe_free(d);
}

int yw_disk_open(uv_loop_t *loop, const yw_disk_config_t *cfg, yw_disk_t **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    yw_disk_t *d = calloc(1, sizeof *d);
    if (d == NULL || (d->dir = strdup(cfg->dir)) == NULL ||
        (d->reserve_path = strdup(cfg->reserve_path)) == NULL) {
        if (d != NULL) {
            yw__free(d);
        }
        snprintf(err, errlen, "disk: out of memory");
        return -ENOMEM;
    }
    d->loop = loop;
    d->statfs = cfg->statfs != NULL ? cfg->statfs : yw__statvfs;
    d->statfs_arg = cfg->statfs_arg;
    atomic_init(&d->full, 0);
    atomic_init(&d->enospc, 0);
    atomic_init(&d->stopping, 0);
    atomic_init(&d->avail, 0);
    uint64_t avail = 0, size = 0;
    int rc = d->statfs(d->statfs_arg, d->dir, &avail, &size);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot look at its file system: %s", d->dir, strerror(-rc));
        yw__free(d);
        return rc;
    }
    d->reserve = cfg->reserve_bytes < size / YW__RESERVE_SHARE ? cfg->reserve_bytes
                                                               : size / YW__RESERVE_SHARE;
    struct stat st;
    d->have_reserve = stat(d->reserve_path, &st) == 0; /* from the last run: ours */
    if (cfg->metrics != NULL) {
        (void)yw_metrics_gauge(cfg->metrics, "yaowei_disk_full",
                               "1 while the data directory's disk is full and writes are "
                               "refused (RESOURCE_EXHAUSTED).",
                               NULL, &d->g_full);
        (void)yw_metrics_gauge(cfg->metrics, "yaowei_disk_free_bytes",
                               "Free space of the data directory's file system at the last "
                               "look (the reserve file not counted).",
                               NULL, &d->g_free);
    }
    yw__look(d, &d->look);
    yw__log_look(d, &d->look);

    int check_ms = cfg->check_ms > 0 ? cfg->check_ms : YW_DISK_CHECK_MS_DEFAULT;
    if ((rc = uv_timer_init(loop, &d->timer)) != 0) {
        snprintf(err, errlen, "disk: %s", uv_strerror(rc));
        yw__free(d);
        return rc;
    }
    d->timer.data = d;
    d->open_handles = 1;
    if ((rc = uv_async_init(loop, &d->async, yw__on_async)) != 0) {
        snprintf(err, errlen, "disk: %s", uv_strerror(rc));
        d->closing = 1; /* freed when the timer is closed */
        uv_close((uv_handle_t *)&d->timer, yw__on_closed);
        return rc;
    }
    d->async.data = d;
    d->open_handles = 2;
    (void)uv_timer_start(&d->timer, yw__on_timer, (uint64_t)check_ms, (uint64_t)check_ms);
    *out = d;
    return 0;
}

int yw_disk_writable(const yw_disk_t *d, char *err, size_t errlen)
{
    if (d == NULL || !atomic_load(&d->full)) {
        return 0;
    }
    snprintf(err, errlen,
             "disk full: %.1f MiB free for the data directory; writes are refused until %.1f "
             "MiB are free, then resume by themselves (reads go on)",
             (double)atomic_load(&d->avail) / YW__MIB, (double)yw__resume_at(d) / YW__MIB);
    return -ENOSPC;
}

void yw_disk_report_full(yw_disk_t *d)
{
    if (d == NULL) {
        return;
    }
    atomic_store(&d->enospc, 1);
    atomic_store(&d->full, 1);
    (void)uv_async_send(&d->async);
}

uint64_t yw_disk_reserve(const yw_disk_t *d)
{
    return d->reserve;
}

void yw_disk_release(yw_disk_t *d)
{
    if (d == NULL || atomic_exchange(&d->stopping, 1)) {
        return;
    }
    /* A look in flight deletes it at its end (it reads `stopping` last). */
    if (!d->looking && d->have_reserve) {
        (void)unlink(d->reserve_path);
        d->have_reserve = 0;
    }
}

void yw_disk_close(yw_disk_t *d)
{
    if (d == NULL || d->closing) {
        return;
    }
    d->closing = 1;
    if (d->looking) {
        (void)uv_cancel((uv_req_t *)&d->work); /* done runs either way */
    }
    uv_close((uv_handle_t *)&d->timer, yw__on_closed);
    uv_close((uv_handle_t *)&d->async, yw__on_closed);
}
