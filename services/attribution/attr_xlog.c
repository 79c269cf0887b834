/*
 * attr_xlog.c — the exposure log's writing: segment files, frames with CRC-32C, a writer
 * thread with group commit. See attr_xlog.h for the format; reading (replay with
 * torn-tail repair, records read alone, the upgrade of version 1) is attr_xlog_read.c.
 *
 * Threads: the loop queues batches under `mu`; the writer takes the whole queue at once
 * (a group), encodes one frame per batch, writes them with one write() per segment
 * touched and one fdatasync(), then hands the batches back through the `done` queue and
 * `async`. Everything below "writer thread only" is touched by the writer alone (and by
 * open/close before the thread starts or after it was joined).
 */
#include "services/attribution/attr_xlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/vec.h"
#include "services/attribution/attr_xlog_int.h"

/** How long one loop turn runs the `done` callbacks of written frames (attr__drain_done()). */
#define ATTR_XLOG_DONE_NS (2 * 1000 * 1000)

struct st_attr_xlog_t {
    uv_loop_t *loop;
    uv_async_t async;
    char *dir;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    attr_xlog_batch_t *q_head, *q_tail; /* queued for the writer */
    attr_xlog_batch_t *d_head, *d_tail; /* written (or failed), for the loop */
    int closing;
    void (*closed)(void *arg);
    void *closed_arg;
    _Atomic uint64_t cur_seq;

    /* writer thread only */
    int fd;
    uint64_t seq;
    uint64_t size; /* synced length of the segment */
    int need_rotate;
    int64_t created_ns; /* the segment's, as its header says */
    attr_xlog_ship_fn ship;
    void *ship_arg;
    uint64_t linger_ns; /* the writer's wait before it takes a shipped group (0: none) */
    unsigned char *buf;
    size_t buf_len, buf_cap;
};

/* ---- paths ---- */

void attr_xlog_path(const char *dir, uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/seg-%020llu.log", dir, (unsigned long long)seq);
}

static int attr__parse_name(const char *name, uint64_t *seq)
{
    if (strncmp(name, "seg-", 4) != 0 || strlen(name) != 4 + 20 + 4 ||
        strcmp(name + 24, ".log") != 0) {
        return -1;
    }
    uint64_t v = 0;
    for (int i = 4; i < 24; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return -1;
        }
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 0;
}

static int attr__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int attr_xlog_list(const char *dir, uint64_t **seqs, size_t *n)
{
    *seqs = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    size_t cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t seq;
        if (attr__parse_name(e->d_name, &seq) != 0) {
            continue;
        }
        if (YW_VEC_GROW(*seqs, *n, cap, 1, 16) != 0) {
            closedir(d);
            free(*seqs);
            *seqs = NULL;
            *n = 0;
            return -ENOMEM;
        }
        (*seqs)[(*n)++] = seq;
    }
    int rc = errno != 0 ? -errno : 0;
    closedir(d);
    if (rc != 0) {
        free(*seqs);
        *seqs = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1) {
        qsort(*seqs, *n, sizeof **seqs, attr__cmp_u64);
    }
    return 0;
}

/* ---- writing (writer thread) ---- */

/**
 * Creates segment `seq` created at `created_ns` (0: now, written back): header written
 * and synced, directory synced.
 */
static int attr__create_segment(const char *dir, uint64_t seq, int64_t *created_ns, int *fd_out)
{
    char path[4096];
    attr_xlog_path(dir, seq, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -errno;
    }
    if (*created_ns == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *created_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
    unsigned char hdr[ATTR_XLOG__HDR_BYTES];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, ATTR_XLOG__MAGIC, 8);
    yw_put_le32(hdr + 8, ATTR_XLOG__VERSION);
    yw_put_le64(hdr + 16, seq);
    yw_put_le64(hdr + 24, (uint64_t)*created_ns);
    int rc = yw_pwrite_all(fd, hdr, sizeof hdr, 0);
    if (rc == 0 && fdatasync(fd) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = yw_fsync_dir(dir);
    }
    if (rc != 0) {
        close(fd);
        (void)unlink(path);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int attr__buf_reserve(attr_xlog_t *log, size_t more)
{
    return YW_VEC_GROW(log->buf, log->buf_len, log->buf_cap, more, 1u << 20);
}

/** The bytes of a record after its tag and length. */
size_t attr_xlog__record_body_len(const attr_xlog_exposure_t *e)
{
    size_t n = 1 + yw_varint_len((uint64_t)e->watch_ms) + yw_varint_len(yw_zigzag(e->occur_ns)) +
               attr_xlog__str_len(e->event_id_len) + attr_xlog__str_len(e->viewer.len) +
               attr_xlog__str_len(e->creator.len) + attr_xlog__str_len(e->note.len) +
               yw_varint_len(e->n_products);
    for (uint32_t k = 0; k < e->n_products; k++) {
        n += attr_xlog__str_len(e->products[k].len);
    }
    return n;
}

/** Encodes one record at p (room for 1 + 10 + body bytes); returns its length. */
size_t attr_xlog__encode_record(unsigned char *p, const attr_xlog_exposure_t *e, size_t body)
{
    size_t n = 0;
    p[n++] = ATTR_XLOG__REC_EXP2;
    n += yw_varint_put(p + n, body);
    p[n++] = e->kind;
    n += yw_varint_put(p + n, (uint64_t)e->watch_ms);
    n += yw_varint_put(p + n, yw_zigzag(e->occur_ns));
    n += attr_xlog__put_str(p + n, e->event_id, e->event_id_len);
    n += attr_xlog__put_str(p + n, e->viewer.s, e->viewer.len);
    n += attr_xlog__put_str(p + n, e->creator.s, e->creator.len);
    n += attr_xlog__put_str(p + n, e->note.s, e->note.len);
    n += yw_varint_put(p + n, e->n_products);
    for (uint32_t k = 0; k < e->n_products; k++) {
        n += attr_xlog__put_str(p + n, e->products[k].s, e->products[k].len);
    }
    return n;
}

/**
 * Appends the frame of `b` to the buffer (its records at segment offset `base` + their
 * place in the buffer: filled into b->rec_off when set). On error the buffer is as
 * before.
 */
static int attr__encode_frame(attr_xlog_t *log, attr_xlog_batch_t *b, uint64_t base)
{
    size_t start = log->buf_len;
    int rc = attr__buf_reserve(log, 8 + 12);
    if (rc != 0) {
        return rc;
    }
    log->buf_len += 8;
    yw_put_le64(log->buf + log->buf_len, (uint64_t)b->arrival_ns);
    yw_put_le32(log->buf + log->buf_len + 8, (uint32_t)b->n);
    log->buf_len += 12;
    for (size_t i = 0; i < b->n; i++) {
        const attr_xlog_exposure_t *e = &b->events[i];
        size_t body = attr_xlog__record_body_len(e);
        rc = attr__buf_reserve(log, 1 + 10 + body);
        if (rc != 0) {
            log->buf_len = start;
            return rc;
        }
        if (b->rec_off != NULL) {
            b->rec_off[i] = (uint32_t)(base + log->buf_len);
        }
        log->buf_len += attr_xlog__encode_record(log->buf + log->buf_len, e, body);
    }
    size_t len = log->buf_len - start - 8;
    yw_put_le32(log->buf + start, (uint32_t)len);
    yw_put_le32(log->buf + start + 4, attr_crc32c(0, log->buf + start + 8, len));
    b->frame_off = base + start;
    b->frame_end = base + log->buf_len;
    return 0;
}

/**
 * Writes the buffer and syncs; sets the status of the batches from `first` up to (not
 * including) `stop`. On failure truncates back to the synced length and asks for a new
 * segment (the failed frames' DEFs must not be relied on).
 */
static void attr__flush(attr_xlog_t *log, attr_xlog_batch_t *first, attr_xlog_batch_t *stop)
{
    if (log->buf_len == 0) {
        return;
    }
    int rc = yw_pwrite_all(log->fd, log->buf, log->buf_len, log->size);
    /* A shipped log is not synced here: the copy its ship function made is the durable
     * one (a cluster's replicated log), this file a view rebuilt from it after a crash. */
    if (rc == 0 && log->ship == NULL && fdatasync(log->fd) != 0) {
        rc = -errno;
    }
    if (rc == 0 && log->ship != NULL) {
        /* Not acknowledged unless shipped: a failure is a write error (cut off, new segment). */
        rc = log->ship(log->ship_arg, log->seq, log->created_ns, log->size, log->buf, log->buf_len);
    }
    if (rc == 0) {
        log->size += log->buf_len;
    } else {
        /* Whatever reached the file past `size` was never acknowledged: cut it off. */
        if (ftruncate(log->fd, (off_t)log->size) == 0) {
            (void)fdatasync(log->fd);
        }
        log->need_rotate = 1;
    }
    for (attr_xlog_batch_t *b = first; b != stop; b = b->next) {
        if (b->status == 0) {
            b->status = rc;
        }
    }
    log->buf_len = 0;
}

static int attr__rotate(attr_xlog_t *log)
{
    if (log->fd >= 0) {
        close(log->fd);
        log->fd = -1;
    }
    uint64_t seq = log->seq + 1;
    int fd = -1;
    int64_t created = 0;
    int rc = attr__create_segment(log->dir, seq, &created, &fd);
    if (rc != 0) {
        log->need_rotate = 1;
        return rc;
    }
    log->fd = fd;
    log->seq = seq;
    log->created_ns = created;
    log->size = ATTR_XLOG__HDR_BYTES;
    log->need_rotate = 0;
    atomic_store(&log->cur_seq, seq);
    return 0;
}

static void attr__write_group(attr_xlog_t *log, attr_xlog_batch_t *group)
{
    attr_xlog_batch_t *pending = group; /* first batch whose frame is in the buffer */
    for (attr_xlog_batch_t *b = group; b != NULL; b = b->next) {
        b->status = 0;
        if (log->need_rotate || log->size + log->buf_len >= ATTR_XLOG_SEGMENT_BYTES) {
            attr__flush(log, pending, b);
            pending = b;
            int rc = attr__rotate(log);
            if (rc != 0) {
                b->status = rc;
                pending = b->next;
                continue;
            }
        }
        int rc = attr__encode_frame(log, b, log->size);
        if (rc != 0) {
            b->status = rc;
            continue;
        }
        b->seq = log->seq;
    }
    attr__flush(log, pending, NULL);
}

static void *attr__writer_main(void *arg)
{
    attr_xlog_t *log = arg;
    for (;;) {
        pthread_mutex_lock(&log->mu);
        while (log->q_head == NULL && !log->closing) {
            pthread_cond_wait(&log->cv, &log->mu);
        }
        if (log->ship != NULL && log->linger_ns > 0 && log->q_head != NULL && log->q_head->linger &&
            !log->closing) {
            /* The batches that come meanwhile join this group (attr_xlog_set_ship()). */
            pthread_mutex_unlock(&log->mu);
            struct timespec ts = {(time_t)(log->linger_ns / 1000000000u),
                                  (long)(log->linger_ns % 1000000000u)};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
            pthread_mutex_lock(&log->mu);
        }
        attr_xlog_batch_t *group = log->q_head, *last = log->q_tail;
        log->q_head = log->q_tail = NULL;
        pthread_mutex_unlock(&log->mu);
        if (group == NULL) {
            break; /* closing, and nothing left */
        }
        attr__write_group(log, group);
        pthread_mutex_lock(&log->mu);
        if (log->d_tail != NULL) {
            log->d_tail->next = group;
        } else {
            log->d_head = group;
        }
        log->d_tail = last;
        pthread_mutex_unlock(&log->mu);
        (void)uv_async_send(&log->async);
    }
    if (log->fd >= 0) {
        close(log->fd);
        log->fd = -1;
    }
    return NULL;
}

/* ---- loop side ---- */

static void attr__free(attr_xlog_t *log)
{
    free(log->buf);
    free(log->dir);
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->cv);
    free(log);
}

static void attr__on_async_closed(uv_handle_t *h)
{
    attr_xlog_t *log = h->data;
    void (*closed)(void *) = log->closed;
    void *arg = log->closed_arg;
    attr__free(log);
    if (closed != NULL) {
        closed(arg);
    }
}

/**
 * Runs the `done` callbacks of the batches the writer handed back, in log order, for at
 * most `budget_ns` of this loop turn (0: all of them). A group commit hands back many
 * frames at once and each `done` commits its frame to the state (a few milliseconds for a
 * wide frame): what is left stays first in line for the next turn, so that gRPC's
 * completions get the loop in between (a small call waits for one budget, not for every
 * frame of the group).
 */
static void attr__drain_done(attr_xlog_t *log, uint64_t budget_ns)
{
    pthread_mutex_lock(&log->mu);
    attr_xlog_batch_t *done = log->d_head;
    log->d_head = log->d_tail = NULL;
    pthread_mutex_unlock(&log->mu);
    uint64_t t0 = uv_hrtime();
    while (done != NULL) {
        if (budget_ns > 0 && uv_hrtime() - t0 >= budget_ns) {
            attr_xlog_batch_t *last = done;
            while (last->next != NULL) {
                last = last->next;
            }
            pthread_mutex_lock(&log->mu);
            last->next = log->d_head;
            log->d_head = done;
            if (log->d_tail == NULL) {
                log->d_tail = last;
            }
            pthread_mutex_unlock(&log->mu);
            (void)uv_async_send(&log->async);
            return;
        }
        attr_xlog_batch_t *next = done->next;
        done->done(done, done->status);
        done = next;
    }
}

static void attr__on_async(uv_async_t *h)
{
    attr__drain_done(h->data, ATTR_XLOG_DONE_NS);
}

void attr_xlog_set_ship(attr_xlog_t *log, attr_xlog_ship_fn fn, void *arg, uint64_t linger_ns)
{
    log->ship = fn;
    log->ship_arg = arg;
    log->linger_ns = linger_ns;
}

/* ---- placing shipped bytes (a copy of a log elsewhere) ---- */

void attr_xlog_placer_init(attr_xlog_placer_t *pl, const char *dir)
{
    memset(pl, 0, sizeof *pl);
    snprintf(pl->dir, sizeof pl->dir, "%s", dir);
    pl->fd = -1;
}

/* Syncs and closes the open segment, if any. */
static int attr__placer_close(attr_xlog_placer_t *pl)
{
    int rc = 0;
    if (pl->fd >= 0) {
        if (fdatasync(pl->fd) != 0) {
            rc = -errno;
        }
        close(pl->fd);
        pl->fd = -1;
    }
    return rc;
}

int attr_xlog_place(attr_xlog_placer_t *pl, uint64_t seg, int64_t created_ns, uint64_t off,
                    const void *bytes, size_t len)
{
    int rc = 0;
    if (pl->fd < 0 || pl->seg != seg) {
        if ((rc = attr__placer_close(pl)) != 0) {
            return rc;
        }
        char path[4200];
        attr_xlog_path(pl->dir, seg, path, sizeof path);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            rc = attr__create_segment(pl->dir, seg, &created_ns, &fd);
        } else if (fd < 0) {
            rc = -errno;
        }
        if (rc != 0) {
            return rc;
        }
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        pl->fd = fd;
        pl->seg = seg;
        pl->size = (uint64_t)sb.st_size;
    }
    if (off != pl->size) {
        return -EPROTO; /* a gap or an overlap: not a copy of one log */
    }
    if ((rc = yw_pwrite_all(pl->fd, bytes, len, off)) != 0) {
        return rc;
    }
    pl->size += len;
    return 0;
}

int attr_xlog_placer_finish(attr_xlog_placer_t *pl)
{
    int rc = attr__placer_close(pl);
    if (rc == 0) {
        rc = yw_fsync_dir(pl->dir);
    }
    return rc;
}

int attr_xlog_open(uv_loop_t *loop, const char *dir, uint64_t first_seq, attr_xlog_t **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    attr_xlog_t *log = calloc(1, sizeof *log);
    if (log == NULL || (log->dir = strdup(dir)) == NULL) {
        free(log);
        snprintf(err, errlen, "exposure log: out of memory");
        return -ENOMEM;
    }
    log->loop = loop;
    log->fd = -1;
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, NULL);
    log->seq = first_seq > 0 ? first_seq - 1 : 0;
    int rc = attr__rotate(log);
    if (rc != 0) {
        snprintf(err, errlen, "exposure log: cannot create segment %llu in %s: %s",
                 (unsigned long long)(log->seq + 1), dir, strerror(-rc));
        attr__free(log);
        return rc;
    }
    rc = uv_async_init(loop, &log->async, attr__on_async);
    if (rc != 0) {
        snprintf(err, errlen, "exposure log: uv_async_init: %s", uv_strerror(rc));
        close(log->fd);
        attr__free(log);
        return rc;
    }
    log->async.data = log;
    /* The writer takes no signals: the loop thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&log->thread, NULL, attr__writer_main, log);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        snprintf(err, errlen, "exposure log: cannot start the writer thread: %s", strerror(e));
        close(log->fd);
        log->fd = -1;
        log->closed = NULL;
        uv_close((uv_handle_t *)&log->async, attr__on_async_closed);
        return -e;
    }
    log->thread_started = 1;
    *out = log;
    return 0;
}

int attr_xlog_append(attr_xlog_t *log, attr_xlog_batch_t *batch)
{
    batch->next = NULL;
    batch->status = 0;
    batch->seq = 0;
    pthread_mutex_lock(&log->mu);
    if (log->closing) {
        pthread_mutex_unlock(&log->mu);
        return -ESHUTDOWN;
    }
    if (log->q_tail != NULL) {
        log->q_tail->next = batch;
    } else {
        log->q_head = batch;
    }
    log->q_tail = batch;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    return 0;
}

uint64_t attr_xlog_current_seq(attr_xlog_t *log)
{
    return atomic_load(&log->cur_seq);
}

void attr_xlog_close(attr_xlog_t *log, void (*closed)(void *arg), void *arg)
{
    pthread_mutex_lock(&log->mu);
    if (log->closing) {
        pthread_mutex_unlock(&log->mu);
        return;
    }
    log->closing = 1;
    log->closed = closed;
    log->closed_arg = arg;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    /*
     * Synchronous: the writer finishes what is queued (one last group commit) and
     * exits. Waiting here keeps shutdown simple: nothing of the log outlives this call
     * but the async handle, whose close callback frees the rest.
     */
    if (log->thread_started) {
        pthread_join(log->thread, NULL);
        log->thread_started = 0;
    }
    attr__drain_done(log, 0);
    uv_close((uv_handle_t *)&log->async, attr__on_async_closed);
}
