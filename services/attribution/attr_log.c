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
#define ATTR__VERSION 1u
#define ATTR__REC_DEF 0x01
#define ATTR__REC_EXP 0x02

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
    uint64_t *marks[ATTR_LOG_N_SPACES]; /* id -> seq of the segment that defined it */
    size_t marks_cap[ATTR_LOG_N_SPACES];
    unsigned char *buf;
    size_t buf_len, buf_cap;
};

/* ---- CRC-32C ---- */

static uint32_t attr__crc_table[256];
static pthread_once_t attr__crc_once = PTHREAD_ONCE_INIT;

static void attr__crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        attr__crc_table[i] = c;
    }
}

static uint32_t attr__crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    pthread_once(&attr__crc_once, attr__crc_init);
    uint32_t c = ~crc;
    while (n-- > 0) {
        c = attr__crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    }
    return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t attr__crc_hw(uint32_t crc, const unsigned char *p,
                                                               size_t n)
{
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return ~c32;
}
#endif

uint32_t attr_crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return attr__crc_hw(crc, p, n);
    }
#endif
    return attr__crc_sw(crc, p, n);
}

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

/** Whether `id` of `space` still needs a DEF in this segment; marks it defined. */
static int attr__needs_def(attr_log_t *log, int space, uint32_t id, int *err)
{
    if (id >= log->marks_cap[space]) {
        size_t cap = log->marks_cap[space] ? log->marks_cap[space] : 1024;
        while (cap <= id) {
            cap *= 2;
        }
        uint64_t *m = realloc(log->marks[space], cap * sizeof *m);
        if (m == NULL) {
            *err = -ENOMEM;
            return 0;
        }
        memset(m + log->marks_cap[space], 0, (cap - log->marks_cap[space]) * sizeof *m);
        log->marks[space] = m;
        log->marks_cap[space] = cap;
    }
    if (log->marks[space][id] == log->seq) {
        return 0;
    }
    log->marks[space][id] = log->seq;
    return 1;
}

static int attr__put_def(attr_log_t *log, int space, const attr_log_str_t *s)
{
    int err = 0;
    if (!attr__needs_def(log, space, s->id, &err)) {
        return err;
    }
    unsigned char *p = log->buf + log->buf_len;
    size_t n = 0;
    p[n++] = ATTR__REC_DEF;
    p[n++] = (unsigned char)space;
    n += attr__put_varint(p + n, s->id);
    n += attr__put_varint(p + n, s->len);
    memcpy(p + n, s->s, s->len);
    n += s->len;
    log->buf_len += n;
    return 0;
}

/** Appends the frame of `b` to the buffer. On error the buffer is as before. */
static int attr__encode_frame(attr_log_t *log, const attr_log_batch_t *b)
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
        /* Worst case: four DEFs plus one per product, and the EXP record. */
        size_t worst = 3 * (12 + 1024) + e->n_products * (12 + 1024 + 10) + 16 + e->event_id_len +
                       3 * 10 + 1 + 10 + 10 + 10;
        size_t strs = e->viewer.len + e->creator.len + e->note.len;
        for (uint32_t k = 0; k < e->n_products; k++) {
            strs += e->products[k].len;
        }
        rc = attr__buf_reserve(log, worst + strs);
        if (rc == 0) {
            rc = attr__put_def(log, ATTR_LOG_VIEWER, &e->viewer);
        }
        if (rc == 0) {
            rc = attr__put_def(log, ATTR_LOG_CREATOR, &e->creator);
        }
        if (rc == 0) {
            rc = attr__put_def(log, ATTR_LOG_NOTE, &e->note);
        }
        for (uint32_t k = 0; rc == 0 && k < e->n_products; k++) {
            rc = attr__put_def(log, ATTR_LOG_PRODUCT, &e->products[k]);
        }
        if (rc != 0) {
            log->buf_len = start;
            return rc;
        }
        unsigned char *p = log->buf + log->buf_len;
        size_t n = 0;
        p[n++] = ATTR__REC_EXP;
        n += attr__put_varint(p + n, e->event_id_len);
        memcpy(p + n, e->event_id, e->event_id_len);
        n += e->event_id_len;
        n += attr__put_varint(p + n, e->viewer.id);
        n += attr__put_varint(p + n, e->creator.id);
        n += attr__put_varint(p + n, e->note.id);
        p[n++] = e->kind;
        n += attr__put_varint(p + n, (uint64_t)e->watch_ms);
        n += attr__put_varint(p + n, attr__zigzag(e->occur_ns - b->arrival_ns));
        n += attr__put_varint(p + n, e->n_products);
        for (uint32_t k = 0; k < e->n_products; k++) {
            n += attr__put_varint(p + n, e->products[k].id);
        }
        log->buf_len += n;
    }
    size_t body = log->buf_len - start - 8;
    attr__put_u32(log->buf + start, (uint32_t)body);
    attr__put_u32(log->buf + start + 4, attr_crc32c(0, log->buf + start + 8, body));
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
        int rc = attr__encode_frame(log, b);
        if (rc != 0) {
            /* Its DEF marks may be set: start the next frame in a new segment. */
            b->status = rc;
            log->need_rotate = 1;
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
    for (int s = 0; s < ATTR_LOG_N_SPACES; s++) {
        free(log->marks[s]);
    }
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
} attr__reader_t;

/**
 * Decodes one frame body. With `visit` NULL only checks it (DEFs are applied either
 * way). Returns 0, -EBADMSG for a malformed body, -ENOMEM, or what visit returned.
 */
static int attr__decode_body(attr__reader_t *r, const unsigned char *b, size_t len,
                             attr_log_visit_fn visit, void *arg, uint64_t *events)
{
    if (len < 12) {
        return -EBADMSG;
    }
    int64_t arrival = (int64_t)attr__get_u64(b);
    uint32_t n_events = attr__get_u32(b + 8);
    size_t pos = 12;
    uint32_t seen = 0;
    while (pos < len) {
        unsigned char tag = b[pos++];
        uint64_t v, l;
        if (tag == ATTR__REC_DEF) {
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
        }
        if (tag != ATTR__REC_EXP) {
            return -EBADMSG;
        }
        attr_log_event_t ev;
        memset(&ev, 0, sizeof ev);
        if (attr__get_varint(b, len, &pos, &l) != 0 || l > len - pos) {
            return -EBADMSG;
        }
        ev.event_id.s = (const char *)b + pos;
        ev.event_id.len = (uint32_t)l;
        pos += l;
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
            attr__get_varint(b, len, &pos, &occ) != 0 || attr__get_varint(b, len, &pos, &np) != 0 ||
            np > len) {
            return -EBADMSG;
        }
        ev.watch_ms = (int64_t)watch;
        ev.arrival_ns = arrival;
        ev.occur_ns = arrival + attr__unzigzag(occ);
        if (np > r->products_cap) {
            size_t cap = r->products_cap ? r->products_cap : 16;
            while (cap < np) {
                cap *= 2;
            }
            attr_str_t *p = realloc(r->products, cap * sizeof *p);
            if (p == NULL) {
                return -ENOMEM;
            }
            r->products = p;
            r->products_cap = cap;
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

static int attr__read_file(const char *path, unsigned char **buf, size_t *len)
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
    unsigned char *b = malloc(size ? size : 1);
    if (b == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            int e = r < 0 ? -errno : -EIO;
            free(b);
            close(fd);
            return e;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = size;
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

int attr_log_read_segment(const char *path, int repair, attr_log_visit_fn visit, void *arg,
                          attr_log_segstat_t *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->max_arrival_ns = INT64_MIN;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = attr__read_file(path, &buf, &len);
    if (rc != 0) {
        attr__fmt_err(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    st->file_bytes = len;
    if (len < ATTR__HDR_BYTES || memcmp(buf, ATTR__MAGIC, 8) != 0 ||
        attr__get_u32(buf + 8) != ATTR__VERSION) {
        attr__fmt_err(err, errlen, "%s: not an exposure log segment (bad or short header)", path);
        free(buf);
        return -EBADMSG;
    }
    st->seq = attr__get_u64(buf + 16);
    attr__reader_t r;
    memset(&r, 0, sizeof r);
    size_t off = ATTR__HDR_BYTES;
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
        rc = attr__decode_body(&r, body, blen, NULL, NULL, NULL);
        if (rc == 0 && visit != NULL) {
            rc = attr__decode_body(&r, body, blen, visit, arg, &st->events);
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
    st->valid_bytes = off;
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
