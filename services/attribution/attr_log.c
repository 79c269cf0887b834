/*
 * attr_log.c — the exposure log: segment files, frames with CRC-32C, a writer thread
 * with group commit, and replay with torn-tail repair. See attr_log.h for the format.
 *
 * Threads: the loop queues batches under `mu`; the writer takes the whole queue at once
 * (a group), encodes one frame per batch, writes them with one write() per segment
 * touched and one fdatasync(), then hands the batches back through the `done` queue and
 * `async`. Everything below "writer thread only" is touched by the writer alone (and by
 * open/close before the thread starts or after it was joined).
 */
#include "services/attribution/attr_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ATTR__HDR_BYTES 32
#define ATTR__MAGIC "YWEXPSEG"
#define ATTR__VERSION 2u
#define ATTR__REC_DEF 0x01  /* version 1 */
#define ATTR__REC_EXP 0x02  /* version 1 */
#define ATTR__REC_EXP2 0x03 /* version 2 */
/** What attr_log_read_record() reads first: most records fit. */
#define ATTR__REC_PEEK 256

struct st_attr_log_t {
    uv_loop_t *loop;
    uv_async_t async;
    char *dir;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    attr_log_batch_t *q_head, *q_tail; /* queued for the writer */
    attr_log_batch_t *d_head, *d_tail; /* written (or failed), for the loop */
    int closing;
    void (*closed)(void *arg);
    void *closed_arg;
    _Atomic uint64_t cur_seq;

    /* writer thread only */
    int fd;
    uint64_t seq;
    uint64_t size; /* synced length of the segment */
    int need_rotate;
    unsigned char *buf;
    size_t buf_len, buf_cap;
};

/* ---- little-endian and varints ---- */

static void attr__put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void attr__put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t attr__get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t attr__get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static size_t attr__put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/** Reads a varint at *pos (< end); -1 when truncated or longer than 10 bytes. */
static int attr__get_varint(const unsigned char *buf, size_t end, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= end) {
            return -1;
        }
        unsigned char b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static uint64_t attr__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t attr__unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- paths ---- */

void attr_log_path(const char *dir, uint64_t seq, char *buf, size_t len)
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

int attr_log_list(const char *dir, uint64_t **seqs, size_t *n)
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
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *p = realloc(*seqs, nc * sizeof *p);
            if (p == NULL) {
                closedir(d);
                free(*seqs);
                *seqs = NULL;
                *n = 0;
                return -ENOMEM;
            }
            *seqs = p;
            cap = nc;
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

static int attr__write_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int attr__fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

/** Creates segment `seq`: header written and synced, directory synced. */
static int attr__create_segment(const char *dir, uint64_t seq, int *fd_out)
{
    char path[4096];
    attr_log_path(dir, seq, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -errno;
    }
    unsigned char hdr[ATTR__HDR_BYTES];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, ATTR__MAGIC, 8);
    attr__put_u32(hdr + 8, ATTR__VERSION);
    attr__put_u64(hdr + 16, seq);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    attr__put_u64(hdr + 24, (uint64_t)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
    int rc = attr__write_all(fd, hdr, sizeof hdr, 0);
    if (rc == 0 && fdatasync(fd) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = attr__fsync_dir(dir);
    }
    if (rc != 0) {
        close(fd);
        (void)unlink(path);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int attr__buf_reserve(attr_log_t *log, size_t more)
{
    if (log->buf_len + more <= log->buf_cap) {
        return 0;
    }
    size_t cap = log->buf_cap ? log->buf_cap : (1u << 20);
    while (cap < log->buf_len + more) {
        cap *= 2;
    }
    unsigned char *b = realloc(log->buf, cap);
    if (b == NULL) {
        return -ENOMEM;
    }
    log->buf = b;
    log->buf_cap = cap;
    return 0;
}

static size_t attr__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t attr__str_len(uint32_t len)
{
    return attr__varint_len(len) + len;
}

static size_t attr__put_str(unsigned char *p, const char *s, uint32_t len)
{
    size_t n = attr__put_varint(p, len);
    memcpy(p + n, s, len);
    return n + len;
}

/** The bytes of a record after its tag and length. */
static size_t attr__record_body_len(const attr_log_exposure_t *e)
{
    size_t n = 1 + attr__varint_len((uint64_t)e->watch_ms) +
               attr__varint_len(attr__zigzag(e->occur_ns)) + attr__str_len(e->event_id_len) +
               attr__str_len(e->viewer.len) + attr__str_len(e->creator.len) +
               attr__str_len(e->note.len) + attr__varint_len(e->n_products);
    for (uint32_t k = 0; k < e->n_products; k++) {
        n += attr__str_len(e->products[k].len);
    }
    return n;
}

/** Encodes one record at p (room for 1 + 10 + body bytes); returns its length. */
static size_t attr__encode_record(unsigned char *p, const attr_log_exposure_t *e, size_t body)
{
    size_t n = 0;
    p[n++] = ATTR__REC_EXP2;
    n += attr__put_varint(p + n, body);
    p[n++] = e->kind;
    n += attr__put_varint(p + n, (uint64_t)e->watch_ms);
    n += attr__put_varint(p + n, attr__zigzag(e->occur_ns));
    n += attr__put_str(p + n, e->event_id, e->event_id_len);
    n += attr__put_str(p + n, e->viewer.s, e->viewer.len);
    n += attr__put_str(p + n, e->creator.s, e->creator.len);
    n += attr__put_str(p + n, e->note.s, e->note.len);
    n += attr__put_varint(p + n, e->n_products);
    for (uint32_t k = 0; k < e->n_products; k++) {
        n += attr__put_str(p + n, e->products[k].s, e->products[k].len);
    }
    return n;
}

/**
 * Appends the frame of `b` to the buffer (its records at segment offset `base` + their
 * place in the buffer: filled into b->rec_off when set). On error the buffer is as
 * before.
 */
static int attr__encode_frame(attr_log_t *log, attr_log_batch_t *b, uint64_t base)
{
    size_t start = log->buf_len;
    int rc = attr__buf_reserve(log, 8 + 12);
    if (rc != 0) {
        return rc;
    }
    log->buf_len += 8;
    attr__put_u64(log->buf + log->buf_len, (uint64_t)b->arrival_ns);
    attr__put_u32(log->buf + log->buf_len + 8, (uint32_t)b->n);
    log->buf_len += 12;
    for (size_t i = 0; i < b->n; i++) {
        const attr_log_exposure_t *e = &b->events[i];
        size_t body = attr__record_body_len(e);
        rc = attr__buf_reserve(log, 1 + 10 + body);
        if (rc != 0) {
            log->buf_len = start;
            return rc;
        }
        if (b->rec_off != NULL) {
            b->rec_off[i] = (uint32_t)(base + log->buf_len);
        }
        log->buf_len += attr__encode_record(log->buf + log->buf_len, e, body);
    }
    size_t len = log->buf_len - start - 8;
    attr__put_u32(log->buf + start, (uint32_t)len);
    attr__put_u32(log->buf + start + 4, attr_crc32c(0, log->buf + start + 8, len));
    b->frame_off = base + start;
    b->frame_end = base + log->buf_len;
    return 0;
}

/**
 * Writes the buffer and syncs; sets the status of the batches from `first` up to (not
 * including) `stop`. On failure truncates back to the synced length and asks for a new
 * segment (the failed frames' DEFs must not be relied on).
 */
static void attr__flush(attr_log_t *log, attr_log_batch_t *first, attr_log_batch_t *stop)
{
    if (log->buf_len == 0) {
        return;
    }
    int rc = attr__write_all(log->fd, log->buf, log->buf_len, log->size);
    if (rc == 0 && fdatasync(log->fd) != 0) {
        rc = -errno;
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
    for (attr_log_batch_t *b = first; b != stop; b = b->next) {
        if (b->status == 0) {
            b->status = rc;
        }
    }
    log->buf_len = 0;
}

static int attr__rotate(attr_log_t *log)
{
    if (log->fd >= 0) {
        close(log->fd);
        log->fd = -1;
    }
    uint64_t seq = log->seq + 1;
    int fd = -1;
    int rc = attr__create_segment(log->dir, seq, &fd);
    if (rc != 0) {
        log->need_rotate = 1;
        return rc;
    }
    log->fd = fd;
    log->seq = seq;
    log->size = ATTR__HDR_BYTES;
    log->need_rotate = 0;
    atomic_store(&log->cur_seq, seq);
    return 0;
}

static void attr__write_group(attr_log_t *log, attr_log_batch_t *group)
{
    attr_log_batch_t *pending = group; /* first batch whose frame is in the buffer */
    for (attr_log_batch_t *b = group; b != NULL; b = b->next) {
        b->status = 0;
        if (log->need_rotate || log->size + log->buf_len >= ATTR_LOG_SEGMENT_BYTES) {
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
    attr_log_t *log = arg;
    for (;;) {
        pthread_mutex_lock(&log->mu);
        while (log->q_head == NULL && !log->closing) {
            pthread_cond_wait(&log->cv, &log->mu);
        }
        attr_log_batch_t *group = log->q_head, *last = log->q_tail;
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

static void attr__free(attr_log_t *log)
{
    free(log->buf);
    free(log->dir);
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->cv);
    free(log);
}

static void attr__on_async_closed(uv_handle_t *h)
{
    attr_log_t *log = h->data;
    void (*closed)(void *) = log->closed;
    void *arg = log->closed_arg;
    attr__free(log);
    if (closed != NULL) {
        closed(arg);
    }
}

/** Runs the `done` callbacks of the batches the writer handed back. */
static void attr__drain_done(attr_log_t *log)
{
    pthread_mutex_lock(&log->mu);
    attr_log_batch_t *done = log->d_head;
    log->d_head = log->d_tail = NULL;
    pthread_mutex_unlock(&log->mu);
    while (done != NULL) {
        attr_log_batch_t *next = done->next;
        done->done(done, done->status);
        done = next;
    }
}

static void attr__on_async(uv_async_t *h)
{
    attr__drain_done(h->data);
}

int attr_log_open(uv_loop_t *loop, const char *dir, uint64_t first_seq, attr_log_t **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    attr_log_t *log = calloc(1, sizeof *log);
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

int attr_log_append(attr_log_t *log, attr_log_batch_t *batch)
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

uint64_t attr_log_current_seq(attr_log_t *log)
{
    return atomic_load(&log->cur_seq);
}

void attr_log_close(attr_log_t *log, void (*closed)(void *arg), void *arg)
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
    attr__drain_done(log);
    uv_close((uv_handle_t *)&log->async, attr__on_async_closed);
}

/* ---- reading ---- */

static void attr__fmt_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attr__fmt_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/** Per-segment id -> string maps of the four spaces. */
typedef struct st_attr__idmap_t {
    attr_str_t *map[ATTR_LOG_N_SPACES];
    size_t cap[ATTR_LOG_N_SPACES];
} attr__idmap_t;

static void attr__idmap_free(attr__idmap_t *m)
{
    for (int s = 0; s < ATTR_LOG_N_SPACES; s++) {
        free(m->map[s]);
    }
}

static int attr__idmap_set(attr__idmap_t *m, int space, uint64_t id, attr_str_t v)
{
    if (id >= UINT32_MAX) {
        return -EBADMSG;
    }
    if (id >= m->cap[space]) {
        size_t cap = m->cap[space] ? m->cap[space] : 1024;
        while (cap <= id) {
            cap *= 2;
        }
        attr_str_t *p = realloc(m->map[space], cap * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        memset(p + m->cap[space], 0, (cap - m->cap[space]) * sizeof *p);
        m->map[space] = p;
        m->cap[space] = cap;
    }
    m->map[space][id] = v;
    return 0;
}

static const attr_str_t *attr__idmap_get(const attr__idmap_t *m, int space, uint64_t id)
{
    if (id >= m->cap[space] || m->map[space][id].s == NULL) {
        return NULL;
    }
    return &m->map[space][id];
}

typedef struct st_attr__reader_t {
    attr__idmap_t ids;
    attr_str_t *products;
    size_t products_cap;
    uint32_t version;
} attr__reader_t;

static int attr__products_room(attr_str_t **products, size_t *cap, uint64_t np)
{
    if (np <= *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap : 16;
    while (nc < np) {
        nc *= 2;
    }
    attr_str_t *p = realloc(*products, nc * sizeof *p);
    if (p == NULL) {
        return -ENOMEM;
    }
    *products = p;
    *cap = nc;
    return 0;
}

static int attr__get_str(const unsigned char *b, size_t end, size_t *pos, attr_str_t *out)
{
    uint64_t l;
    if (attr__get_varint(b, end, pos, &l) != 0 || l > end - *pos) {
        return -1;
    }
    out->s = (const char *)b + *pos;
    out->len = (uint32_t)l;
    *pos += l;
    return 0;
}

/**
 * Decodes the fields of a version 2 record from its kind byte at b[pos] to `end` (the
 * end of the record). Returns 0, -EBADMSG or -ENOMEM.
 */
static int attr__decode_exp2(const unsigned char *b, size_t pos, size_t end, attr_str_t **products,
                             size_t *products_cap, attr_log_event_t *ev)
{
    uint64_t watch, occ, np;
    if (pos >= end) {
        return -EBADMSG;
    }
    ev->kind = b[pos++];
    if (attr__get_varint(b, end, &pos, &watch) != 0 || attr__get_varint(b, end, &pos, &occ) != 0 ||
        attr__get_str(b, end, &pos, &ev->event_id) != 0 ||
        attr__get_str(b, end, &pos, &ev->viewer) != 0 ||
        attr__get_str(b, end, &pos, &ev->creator) != 0 ||
        attr__get_str(b, end, &pos, &ev->note) != 0 || attr__get_varint(b, end, &pos, &np) != 0 ||
        np > end - pos) {
        return -EBADMSG;
    }
    int rc = attr__products_room(products, products_cap, np);
    if (rc != 0) {
        return rc;
    }
    for (uint64_t k = 0; k < np; k++) {
        if (attr__get_str(b, end, &pos, &(*products)[k]) != 0) {
            return -EBADMSG;
        }
    }
    if (pos != end) {
        return -EBADMSG;
    }
    ev->watch_ms = (int64_t)watch;
    ev->occur_ns = attr__unzigzag(occ);
    ev->products = *products;
    ev->n_products = (uint32_t)np;
    return 0;
}

/**
 * Decodes one frame body (of the frame at `frame_off`, `len` bytes). With `visit` NULL
 * only checks it (DEFs are applied either way). Returns 0, -EBADMSG for a malformed
 * body, -ENOMEM, or what visit returned.
 */
static int attr__decode_body(attr__reader_t *r, const unsigned char *b, size_t len,
                             uint64_t frame_off, attr_log_visit_fn visit, void *arg,
                             uint64_t *events)
{
    if (len < 12) {
        return -EBADMSG;
    }
    int64_t arrival = (int64_t)attr__get_u64(b);
    uint32_t n_events = attr__get_u32(b + 8);
    size_t pos = 12;
    uint32_t seen = 0;
    while (pos < len) {
        size_t at = pos;
        unsigned char tag = b[pos++];
        uint64_t v, l;
        attr_log_event_t ev;
        memset(&ev, 0, sizeof ev);
        if (tag == ATTR__REC_EXP2 && r->version >= 2) {
            if (attr__get_varint(b, len, &pos, &l) != 0 || l > len - pos) {
                return -EBADMSG;
            }
            int rc = attr__decode_exp2(b, pos, pos + l, &r->products, &r->products_cap, &ev);
            if (rc != 0) {
                return rc;
            }
            pos += l;
            ev.rec_off = (uint32_t)(frame_off + 8 + at);
        } else if (tag == ATTR__REC_DEF && r->version == 1) {
            if (pos >= len) {
                return -EBADMSG;
            }
            int space = b[pos++];
            if (space >= ATTR_LOG_N_SPACES || attr__get_varint(b, len, &pos, &v) != 0 ||
                attr__get_varint(b, len, &pos, &l) != 0 || l > len - pos) {
                return -EBADMSG;
            }
            attr_str_t s = {(const char *)b + pos, (uint32_t)l};
            pos += l;
            int rc = attr__idmap_set(&r->ids, space, v, s);
            if (rc != 0) {
                return rc;
            }
            continue;
        } else if (tag == ATTR__REC_EXP && r->version == 1) {
            if (attr__get_str(b, len, &pos, &ev.event_id) != 0) {
                return -EBADMSG;
            }
            const attr_str_t *s;
            uint64_t vid, cid, nid;
            if (attr__get_varint(b, len, &pos, &vid) != 0 ||
                attr__get_varint(b, len, &pos, &cid) != 0 ||
                attr__get_varint(b, len, &pos, &nid) != 0 || pos >= len) {
                return -EBADMSG;
            }
            if ((s = attr__idmap_get(&r->ids, ATTR_LOG_VIEWER, vid)) == NULL) {
                return -EBADMSG;
            }
            ev.viewer = *s;
            if ((s = attr__idmap_get(&r->ids, ATTR_LOG_CREATOR, cid)) == NULL) {
                return -EBADMSG;
            }
            ev.creator = *s;
            if ((s = attr__idmap_get(&r->ids, ATTR_LOG_NOTE, nid)) == NULL) {
                return -EBADMSG;
            }
            ev.note = *s;
            ev.kind = b[pos++];
            uint64_t watch, occ, np;
            if (attr__get_varint(b, len, &pos, &watch) != 0 ||
                attr__get_varint(b, len, &pos, &occ) != 0 ||
                attr__get_varint(b, len, &pos, &np) != 0 || np > len) {
                return -EBADMSG;
            }
            ev.watch_ms = (int64_t)watch;
            ev.occur_ns = arrival + attr__unzigzag(occ);
            int rc = attr__products_room(&r->products, &r->products_cap, np);
            if (rc != 0) {
                return rc;
            }
            for (uint64_t k = 0; k < np; k++) {
                uint64_t pid;
                if (attr__get_varint(b, len, &pos, &pid) != 0 ||
                    (s = attr__idmap_get(&r->ids, ATTR_LOG_PRODUCT, pid)) == NULL) {
                    return -EBADMSG;
                }
                r->products[k] = *s;
            }
            ev.products = r->products;
            ev.n_products = (uint32_t)np;
        } else {
            return -EBADMSG;
        }
        ev.arrival_ns = arrival;
        ev.frame_off = frame_off;
        ev.frame_end = frame_off + 8 + len;
        seen++;
        if (visit != NULL) {
            int rc = visit(arg, &ev);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (seen != n_events) {
        return -EBADMSG;
    }
    if (events != NULL) {
        *events += seen;
    }
    return 0;
}

static int attr__pread_all(int fd, unsigned char *p, size_t n, uint64_t off, size_t *got);

/**
 * Reads the header and the bytes from `from` on (all of the file when `from` is at most
 * the header's end) into one buffer: the header, then the rest. `*skipped` gets how
 * many bytes were left out between the two (buffer offset + skipped = file offset past
 * the header).
 */
static int attr__read_file(const char *path, uint64_t from, unsigned char **buf, size_t *len,
                           size_t *skipped)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t size = (size_t)st.st_size;
    size_t skip = 0;
    if (from > ATTR__HDR_BYTES && size >= ATTR__HDR_BYTES) {
        skip = (from < size ? (size_t)from : size) - ATTR__HDR_BYTES;
    }
    size_t want = size - skip;
    unsigned char *b = malloc(want ? want : 1);
    if (b == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t head = want < ATTR__HDR_BYTES ? want : ATTR__HDR_BYTES, got1 = 0, got2 = 0;
    int rc = attr__pread_all(fd, b, head, 0, &got1);
    if (rc == 0 && want > head) {
        rc = attr__pread_all(fd, b + head, want - head, head + skip, &got2);
    }
    close(fd);
    if (rc == 0 && got1 + got2 != want) {
        rc = -EIO; /* shrank while being read */
    }
    if (rc != 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = want;
    *skipped = skip;
    return 0;
}

static int attr__truncate(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    if (ftruncate(fd, (off_t)len) != 0 || fdatasync(fd) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

static int attr__read(const char *path, uint64_t from, int repair, attr_log_visit_fn visit,
                      void *arg, attr_log_segstat_t *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->max_arrival_ns = INT64_MIN;
    unsigned char *buf = NULL;
    size_t len = 0, skip = 0;
    int rc = attr__read_file(path, from, &buf, &len, &skip);
    if (rc != 0) {
        attr__fmt_err(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    st->file_bytes = len + skip;
    uint32_t version = len >= ATTR__HDR_BYTES ? attr__get_u32(buf + 8) : 0;
    if (len < ATTR__HDR_BYTES || memcmp(buf, ATTR__MAGIC, 8) != 0 || version < 1 ||
        version > ATTR__VERSION) {
        attr__fmt_err(err, errlen, "%s: not an exposure log segment (bad or short header)", path);
        free(buf);
        return -EBADMSG;
    }
    if (skip > 0 && version < 2) {
        attr__fmt_err(err, errlen, "%s: a version 1 segment is read from its start only", path);
        free(buf);
        return -EPROTO;
    }
    st->seq = attr__get_u64(buf + 16);
    attr__reader_t r;
    memset(&r, 0, sizeof r);
    r.version = version;
    size_t off = ATTR__HDR_BYTES; /* in buf; the file offset is off + skip */
    rc = 0;
    while (off < len) {
        if (len - off < 8) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "incomplete frame header");
            st->torn = 1;
            break;
        }
        uint32_t blen = attr__get_u32(buf + off);
        uint32_t crc = attr__get_u32(buf + off + 4);
        if (blen < 12 || blen > ATTR_LOG_MAX_FRAME || blen > len - off - 8) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "frame length %u past the end", blen);
            st->torn = 1;
            break;
        }
        const unsigned char *body = buf + off + 8;
        if (attr_crc32c(0, body, blen) != crc) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "CRC mismatch");
            st->torn = 1;
            break;
        }
        /* Check the whole frame before visiting any of it. */
        uint64_t frame_off = off + skip;
        rc = attr__decode_body(&r, body, blen, frame_off, NULL, NULL, NULL);
        if (rc == 0 && visit != NULL) {
            rc = attr__decode_body(&r, body, blen, frame_off, visit, arg, &st->events);
        } else if (rc == 0) {
            st->events += attr__get_u32(body + 8);
        }
        if (rc == -EBADMSG) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "frame does not decode");
            st->torn = 1;
            rc = 0;
            break;
        }
        if (rc != 0) {
            break;
        }
        int64_t arrival = (int64_t)attr__get_u64(body);
        if (arrival > st->max_arrival_ns) {
            st->max_arrival_ns = arrival;
        }
        st->frames++;
        off += 8 + (size_t)blen;
    }
    st->valid_bytes = off + skip;
    attr__idmap_free(&r.ids);
    free(r.products);
    free(buf);
    if (rc != 0) {
        if (rc == -ENOMEM) {
            attr__fmt_err(err, errlen, "%s: out of memory", path);
        }
        return rc;
    }
    if (st->torn && repair) {
        int trc = attr__truncate(path, st->valid_bytes);
        if (trc != 0) {
            attr__fmt_err(err, errlen, "%s: cannot truncate the torn tail at %llu: %s", path,
                          (unsigned long long)st->valid_bytes, strerror(-trc));
            return trc;
        }
    }
    return 0;
}

int attr_log_read_segment(const char *path, int repair, attr_log_visit_fn visit, void *arg,
                          attr_log_segstat_t *st, char *err, size_t errlen)
{
    return attr__read(path, 0, repair, visit, arg, st, err, errlen);
}

int attr_log_read_segment_from(const char *path, uint64_t from, int repair, attr_log_visit_fn visit,
                               void *arg, attr_log_segstat_t *st, char *err, size_t errlen)
{
    return attr__read(path, from, repair, visit, arg, st, err, errlen);
}

int attr_log_segment_version(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    unsigned char hdr[ATTR__HDR_BYTES];
    ssize_t r = pread(fd, hdr, sizeof hdr, 0);
    int e = errno;
    close(fd);
    if (r < 0) {
        return -e;
    }
    if (r < (ssize_t)sizeof hdr || memcmp(hdr, ATTR__MAGIC, 8) != 0) {
        return -EBADMSG;
    }
    uint32_t v = attr__get_u32(hdr + 8);
    return v >= 1 && v <= ATTR__VERSION ? (int)v : -EBADMSG;
}

/* ---- reading one record ---- */

void attr_log_recbuf_free(attr_log_recbuf_t *b)
{
    free(b->p);
    free(b->products);
    memset(b, 0, sizeof *b);
}

static int attr__pread_all(int fd, unsigned char *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -errno;
        }
        if (r == 0) {
            break; /* the end of the file */
        }
        *got += (size_t)r;
    }
    return 0;
}

static int attr__recbuf_room(attr_log_recbuf_t *b, size_t n)
{
    if (n <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : ATTR__REC_PEEK;
    while (cap < n) {
        cap *= 2;
    }
    unsigned char *p = realloc(b->p, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int attr_log_read_record(int fd, uint32_t off, attr_log_recbuf_t *buf, attr_log_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    int rc = attr__recbuf_room(buf, ATTR__REC_PEEK);
    if (rc != 0) {
        return rc;
    }
    size_t got;
    if ((rc = attr__pread_all(fd, buf->p, ATTR__REC_PEEK, off, &got)) != 0) {
        return rc;
    }
    size_t pos = 1;
    uint64_t l;
    if (got < 2 || buf->p[0] != ATTR__REC_EXP2 || attr__get_varint(buf->p, got, &pos, &l) != 0 ||
        l > ATTR_LOG_MAX_FRAME) {
        return -EBADMSG;
    }
    size_t total = pos + (size_t)l;
    if (total > got) {
        if ((rc = attr__recbuf_room(buf, total)) != 0) {
            return rc;
        }
        size_t more;
        if ((rc = attr__pread_all(fd, buf->p + got, total - got, off + got, &more)) != 0) {
            return rc;
        }
        if (got + more < total) {
            return -EBADMSG;
        }
    }
    rc = attr__decode_exp2(buf->p, pos, total, &buf->products, &buf->products_cap, ev);
    ev->rec_off = off;
    return rc;
}

/* ---- upgrading a version 1 segment ---- */

typedef struct st_attr__upgrade_t {
    int fd;
    uint64_t size;
    int64_t frame_arrival;
    uint64_t frame_off;
    attr_log_exposure_t *evs;
    attr_log_str_t *prods;
    char *strs; /* copies of the frame's strings (the reader's buffer moves on) */
    size_t n, cap, n_prods, cap_prods, n_strs, cap_strs;
    unsigned char *buf;
    size_t buf_cap;
    int err;
} attr__upgrade_t;

static int attr__grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        nc *= 2;
    }
    void *q = realloc(*p, nc * size);
    if (q == NULL) {
        return -ENOMEM;
    }
    *p = q;
    *cap = nc;
    return 0;
}

/** Writes the frame gathered so far as a version 2 frame. */
static int attr__upgrade_flush(attr__upgrade_t *u)
{
    if (u->n == 0) {
        return 0;
    }
    /* Strings were gathered as offsets into `strs` (it may have moved): fix them up. */
    size_t p = 0;
    for (size_t i = 0; i < u->n; i++) {
        attr_log_exposure_t *e = &u->evs[i];
        e->event_id = u->strs + (uintptr_t)e->event_id;
        e->viewer.s = u->strs + (uintptr_t)e->viewer.s;
        e->creator.s = u->strs + (uintptr_t)e->creator.s;
        e->note.s = u->strs + (uintptr_t)e->note.s;
        e->products = u->prods + p;
        for (uint32_t k = 0; k < e->n_products; k++) {
            u->prods[p + k].s = u->strs + (uintptr_t)u->prods[p + k].s;
        }
        p += e->n_products;
    }
    size_t need = 8 + 12;
    for (size_t i = 0; i < u->n; i++) {
        need += 1 + 10 + attr__record_body_len(&u->evs[i]);
    }
    int rc = attr__grow((void **)&u->buf, &u->buf_cap, need, 1);
    if (rc != 0) {
        return rc;
    }
    size_t n = 8;
    attr__put_u64(u->buf + n, (uint64_t)u->frame_arrival);
    attr__put_u32(u->buf + n + 8, (uint32_t)u->n);
    n += 12;
    for (size_t i = 0; i < u->n; i++) {
        n += attr__encode_record(u->buf + n, &u->evs[i], attr__record_body_len(&u->evs[i]));
    }
    attr__put_u32(u->buf, (uint32_t)(n - 8));
    attr__put_u32(u->buf + 4, attr_crc32c(0, u->buf + 8, n - 8));
    rc = attr__write_all(u->fd, u->buf, n, u->size);
    if (rc != 0) {
        return rc;
    }
    u->size += n;
    u->n = u->n_prods = u->n_strs = 0;
    return 0;
}

/** Copies a string into `strs`; returns its offset there, as a pointer-sized integer. */
static int attr__upgrade_str(attr__upgrade_t *u, attr_str_t s, const char **at)
{
    int rc = attr__grow((void **)&u->strs, &u->cap_strs, u->n_strs + s.len + 1, 1);
    if (rc != 0) {
        return rc;
    }
    memcpy(u->strs + u->n_strs, s.s, s.len);
    *at = (const char *)(uintptr_t)u->n_strs;
    u->n_strs += s.len + 1;
    return 0;
}

static int attr__upgrade_visit(void *arg, const attr_log_event_t *ev)
{
    attr__upgrade_t *u = arg;
    int rc = 0;
    if (u->n > 0 && ev->frame_off != u->frame_off) {
        rc = attr__upgrade_flush(u);
    }
    u->frame_off = ev->frame_off;
    u->frame_arrival = ev->arrival_ns;
    if (rc == 0) {
        rc = attr__grow((void **)&u->evs, &u->cap, u->n + 1, sizeof *u->evs);
    }
    if (rc == 0) {
        rc = attr__grow((void **)&u->prods, &u->cap_prods, u->n_prods + ev->n_products,
                        sizeof *u->prods);
    }
    if (rc != 0) {
        return rc;
    }
    attr_log_exposure_t *e = &u->evs[u->n];
    memset(e, 0, sizeof *e);
    e->event_id_len = ev->event_id.len;
    e->kind = (uint8_t)ev->kind;
    e->watch_ms = ev->watch_ms;
    e->occur_ns = ev->occur_ns;
    e->viewer.len = ev->viewer.len;
    e->creator.len = ev->creator.len;
    e->note.len = ev->note.len;
    e->n_products = ev->n_products;
    if ((rc = attr__upgrade_str(u, ev->event_id, &e->event_id)) != 0 ||
        (rc = attr__upgrade_str(u, ev->viewer, &e->viewer.s)) != 0 ||
        (rc = attr__upgrade_str(u, ev->creator, &e->creator.s)) != 0 ||
        (rc = attr__upgrade_str(u, ev->note, &e->note.s)) != 0) {
        return rc;
    }
    for (uint32_t k = 0; k < ev->n_products; k++) {
        attr_log_str_t *p = &u->prods[u->n_prods++];
        p->len = ev->products[k].len;
        p->id = 0;
        if ((rc = attr__upgrade_str(u, ev->products[k], &p->s)) != 0) {
            return rc;
        }
    }
    u->n++;
    return 0;
}

int attr_log_upgrade(const char *path, char *err, size_t errlen)
{
    int version = attr_log_segment_version(path);
    if (version < 0) {
        attr__fmt_err(err, errlen, "%s: not an exposure log segment", path);
        return version;
    }
    if (version == (int)ATTR__VERSION) {
        return 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.upgrade", path);
    (void)unlink(tmp);
    attr__upgrade_t u;
    memset(&u, 0, sizeof u);
    u.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (u.fd < 0) {
        int e = -errno;
        attr__fmt_err(err, errlen, "%s: cannot create: %s", tmp, strerror(-e));
        return e;
    }
    unsigned char hdr[ATTR__HDR_BYTES];
    int rc = 0;
    {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t got = 0;
        if (fd < 0) {
            rc = -errno;
        } else {
            rc = attr__pread_all(fd, hdr, sizeof hdr, 0, &got);
            close(fd);
            if (rc == 0 && got != sizeof hdr) {
                rc = -EBADMSG;
            }
        }
    }
    if (rc == 0) {
        attr__put_u32(hdr + 8, ATTR__VERSION);
        rc = attr__write_all(u.fd, hdr, sizeof hdr, 0);
        u.size = sizeof hdr;
    }
    attr_log_segstat_t st;
    if (rc == 0) {
        rc = attr__read(path, 0, 0, attr__upgrade_visit, &u, &st, err, errlen);
    }
    if (rc == 0) {
        rc = attr__upgrade_flush(&u);
    }
    if (rc == 0 && fdatasync(u.fd) != 0) {
        rc = -errno;
    }
    close(u.fd);
    free(u.evs);
    free(u.prods);
    free(u.strs);
    free(u.buf);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            rc = attr__fsync_dir(dir);
        }
    }
    if (rc != 0) {
        (void)unlink(tmp);
        if (err != NULL && errlen > 0 && err[0] == '\0') {
            attr__fmt_err(err, errlen, "%s: cannot upgrade to version 2: %s", path, strerror(-rc));
        }
    }
    return rc;
}
