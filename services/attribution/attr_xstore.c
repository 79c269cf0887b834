/*
 * attr_xstore.c — the exposure store: log, index files, runs, lookups, recovery. See
 * attr_xstore.h for the life of an exposure through it.
 *
 * Ownership: the store owns the log, its lookup workers, its attr_runs_t (which owns the
 * published files, the views and the sealed runs' wrappers) and the jobs it queues
 * (freed by their `after`). Runs belong to the state; the store decides when a sealed
 * one is released. Requests (confirm, join) are the caller's.
 */
#define _GNU_SOURCE /* O_NOATIME */
#include "services/attribution/attr_xstore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "services/attribution/attr_runs.h"

/* ---- segment files, opened once for lookups (any thread) ---- */

typedef struct st_attr__segfd_t {
    uint64_t seq;
    int fd;
    int refs;
    int dead; /* pruned: close when the last reader is gone */
} attr__segfd_t;

typedef struct st_attr__segfds_t {
    pthread_mutex_t mu;
    attr__segfd_t *v;
    size_t n, cap;
    const char *dir;
} attr__segfds_t;

static attr__segfd_t *attr__segfd_find(attr__segfds_t *f, uint64_t seq)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->v[i].seq == seq) {
            return &f->v[i];
        }
    }
    return NULL;
}

/** An open descriptor of segment `seq` (release it), or a negative errno (-ENOENT: gone). */
static int attr__segfd_acquire(attr__segfds_t *f, uint64_t seq)
{
    pthread_mutex_lock(&f->mu);
    attr__segfd_t *s = attr__segfd_find(f, seq);
    int rc;
    if (s != NULL && s->dead) {
        rc = -ENOENT;
    } else if (s != NULL) {
        s->refs++;
        rc = s->fd;
    } else {
        char path[4200];
        attr_log_path(f->dir, seq, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
        if (fd < 0 && errno == EPERM) {
            fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0) {
            rc = -errno;
        } else if (f->n == f->cap) {
            size_t nc = f->cap ? f->cap * 2 : 64;
            attr__segfd_t *p = realloc(f->v, nc * sizeof *p);
            if (p == NULL) {
                close(fd);
                rc = -ENOMEM;
            } else {
                f->v = p;
                f->cap = nc;
                f->v[f->n++] = (attr__segfd_t){seq, fd, 1, 0};
                rc = fd;
            }
        } else {
            f->v[f->n++] = (attr__segfd_t){seq, fd, 1, 0};
            rc = fd;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void attr__segfd_drop(attr__segfds_t *f, attr__segfd_t *s)
{
    close(s->fd);
    *s = f->v[--f->n];
}

static void attr__segfd_release(attr__segfds_t *f, uint64_t seq)
{
    pthread_mutex_lock(&f->mu);
    attr__segfd_t *s = attr__segfd_find(f, seq);
    if (s != NULL && --s->refs == 0 && s->dead) {
        attr__segfd_drop(f, s);
    }
    pthread_mutex_unlock(&f->mu);
}

/** Segment `seq` is going away: no new reader; closed when the last one is done. */
static void attr__segfd_kill(attr__segfds_t *f, uint64_t seq)
{
    pthread_mutex_lock(&f->mu);
    attr__segfd_t *s = attr__segfd_find(f, seq);
    if (s != NULL) {
        s->dead = 1;
        if (s->refs == 0) {
            attr__segfd_drop(f, s);
        }
    }
    pthread_mutex_unlock(&f->mu);
}

static void attr__segfds_free(attr__segfds_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        close(f->v[i].fd);
    }
    free(f->v);
    pthread_mutex_destroy(&f->mu);
}

/* ---- the store ---- */

typedef struct st_attr__seg_t {
    uint64_t seq;
    uint64_t events;
    int64_t max_arrival_ns;
} attr__seg_t;

struct st_attr_xstore_t {
    uv_loop_t *loop;
    attr_state_t *st;
    char dir[4096];
    attr_log_t *log;
    attr_runs_t *runs; /* the sealed runs, their index files, merges; views of the files */
    attr_work_t *lookers[ATTR_XSTORE_LOOKERS];
    unsigned next_looker; /* round robin for single jobs */
    attr__segfds_t fds;

    attr__seg_t *segs; /* ascending; the last is being written */
    size_t n_segs, cap_segs;
    uint64_t first_live_seg;

    /* the open run's stretch of the log and its segments */
    attr_xpos_t run_start, log_end;
    attr_xseg_t *run_segs;
    size_t n_run_segs, cap_run_segs;
    int64_t run_first_ns;

    attr_log_batch_t *held_head, *held_tail; /* appends held back while builds are behind */

    uint32_t run_exposures; /* seal the open run at this size */
    size_t run_bytes;       /* ... or once its strings and join keys take this many bytes */
    int closing;
    int close_left;
    void (*closed)(void *arg);
    void *closed_arg;

    attr_log_recbuf_t *startup_buf; /* attr_xstore_find_cands()'s */
};

static int64_t attr__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int attr__grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        nc *= 2;
    }
    void *p = realloc(*arr, nc * size);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

#define ATTR__GROW(arr, cap, need) attr__grow((void **)&(arr), &(cap), (need), sizeof *(arr))

static attr__seg_t *attr__seg(attr_xstore_t *xs, uint64_t seq)
{
    for (size_t i = xs->n_segs; i-- > 0;) {
        if (xs->segs[i].seq == seq) {
            return &xs->segs[i];
        }
        if (xs->segs[i].seq < seq) {
            break;
        }
    }
    if (ATTR__GROW(xs->segs, xs->cap_segs, xs->n_segs + 1) != 0) {
        return NULL;
    }
    /* Keep them sorted (new ones come last, but start-up adds in any order). */
    size_t at = xs->n_segs;
    while (at > 0 && xs->segs[at - 1].seq > seq) {
        at--;
    }
    memmove(&xs->segs[at + 1], &xs->segs[at], (xs->n_segs - at) * sizeof *xs->segs);
    xs->segs[at] = (attr__seg_t){seq, 0, INT64_MIN};
    xs->n_segs++;
    return &xs->segs[at];
}

static void attr__seg_add(attr_xstore_t *xs, uint64_t seq, uint64_t events, int64_t max_arrival)
{
    attr__seg_t *s = attr__seg(xs, seq);
    if (s != NULL) {
        s->events += events;
        if (max_arrival > s->max_arrival_ns) {
            s->max_arrival_ns = max_arrival;
        }
    }
}

static int attr__run_seg_add(attr_xstore_t *xs, uint64_t seq, uint64_t events, int64_t arrival)
{
    if (xs->n_run_segs > 0 && xs->run_segs[xs->n_run_segs - 1].seg == seq) {
        attr_xseg_t *s = &xs->run_segs[xs->n_run_segs - 1];
        s->events += events;
        if (arrival > s->max_arrival_ns) {
            s->max_arrival_ns = arrival;
        }
        return 0;
    }
    if (ATTR__GROW(xs->run_segs, xs->cap_run_segs, xs->n_run_segs + 1) != 0) {
        return -ENOMEM;
    }
    xs->run_segs[xs->n_run_segs++] = (attr_xseg_t){seq, events, arrival};
    return 0;
}

/* ---- looking up in the files (any thread) ---- */

typedef struct st_attr__eid_ctx_t {
    attr__segfds_t *fds;
    attr_log_recbuf_t *buf;
    const char *eid;
    uint32_t len;
} attr__eid_ctx_t;

static int attr__eid_entry(void *arg, const attr_xent_t *e)
{
    attr__eid_ctx_t *c = arg;
    int fd = attr__segfd_acquire(c->fds, e->seg);
    if (fd < 0) {
        return fd == -ENOENT ? 0 : fd; /* pruned: not kept any more */
    }
    attr_log_event_t ev;
    int rc = attr_log_read_record(fd, e->off, c->buf, &ev);
    attr__segfd_release(c->fds, e->seg);
    if (rc != 0) {
        return rc;
    }
    return ev.event_id.len == c->len && memcmp(ev.event_id.s, c->eid, c->len) == 0;
}

/** 1: the id is in one of the files; 0: it is not; a negative errno: cannot tell. */
static int attr__find_eid(attr__segfds_t *fds, attr_xidx_t *const *files, size_t n, uint64_t h,
                          const char *eid, uint32_t len, attr_log_recbuf_t *buf)
{
    attr__eid_ctx_t c = {fds, buf, eid, len};
    for (size_t i = n; i-- > 0;) {
        int rc = attr_xidx_find(files[i], ATTR_XIDX_DEDUP, h, attr__eid_entry, &c);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

typedef int (*attr__cand_fn)(void *arg, const attr_log_event_t *ev);

typedef struct st_attr__join_ctx_t {
    attr__segfds_t *fds;
    attr_log_recbuf_t *buf;
    const attr_xjoin_q_t *q;
    attr__cand_fn fn;
    void *arg;
    uint64_t after_seg, after_off; /* only the exposures after this place in the log */
} attr__join_ctx_t;

static int attr__join_entry(void *arg, const attr_xent_t *e)
{
    attr__join_ctx_t *c = arg;
    if (e->seg < c->after_seg || (e->seg == c->after_seg && e->off <= c->after_off)) {
        return 0;
    }
    int fd = attr__segfd_acquire(c->fds, e->seg);
    if (fd < 0) {
        return fd == -ENOENT ? 0 : fd;
    }
    attr_log_event_t ev;
    int rc = attr_log_read_record(fd, e->off, c->buf, &ev);
    attr__segfd_release(c->fds, e->seg);
    if (rc != 0) {
        return rc;
    }
    const attr_xjoin_q_t *q = c->q;
    if (ev.occur_ns > q->occur_ns || ev.viewer.len != q->viewer_len ||
        memcmp(ev.viewer.s, q->viewer, q->viewer_len) != 0) {
        return 0;
    }
    for (uint32_t k = 0; k < ev.n_products; k++) {
        if (ev.products[k].len == q->product_len &&
            memcmp(ev.products[k].s, q->product, q->product_len) == 0) {
            return c->fn(c->arg, &ev);
        }
    }
    return 0; /* a hash collision */
}

/**
 * Calls fn for every exposure in the files that is a candidate of q, of those after
 * (after_seg, after_off) in the log (0, 0: all). 0 or an errno.
 */
static int attr__find_cands(attr__segfds_t *fds, attr_xidx_t *const *files, size_t n,
                            const attr_xjoin_q_t *q, attr_log_recbuf_t *buf, attr__cand_fn fn,
                            void *arg, uint64_t after_seg, uint64_t after_off)
{
    attr__join_ctx_t c = {fds, buf, q, fn, arg, after_seg, after_off};
    for (size_t i = 0; i < n; i++) {
        if (after_seg != 0 && attr_xidx_meta(files[i])->max_seg < after_seg) {
            continue; /* every exposure in it is before */
        }
        int rc = attr_xidx_find(files[i], ATTR_XIDX_JOIN, q->vp_hash, attr__join_entry, &c);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- a sealed run and its index file (attr_runs.h does the rest) ---- */

/** A sealed run of the state on its way to its index file. */
typedef struct st_attr__sealed_t {
    attr_xstore_t *xs;
    attr_run_t *run; /* the state's */
    attr_xmeta_t meta;
    attr_xseg_t *segs;
    size_t n_segs;
    /* out of the build: the sorted event-id hashes, for the Bloom filters */
    uint64_t *hashes;
    size_t n_hashes;
} attr__sealed_t;

/** Rollup rows of a run, one per (segment, creator, day) (malloc'd array in *out; the
 *  creators point at interned strings). A hash table, not a sort: it runs per run. */
static int attr__run_rollups(const attr_run_t *run, attr_xrollup_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t cap = 64;
    while (cap < 2 * (size_t)run->n) {
        cap *= 2;
    }
    uint32_t *slots = calloc(cap, sizeof *slots);
    attr_xrollup_t *rows = malloc((run->n ? run->n : 1) * sizeof *rows);
    if (slots == NULL || rows == NULL) {
        free(slots);
        free(rows);
        return -ENOMEM;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        const attr_rexp_t *r = &run->recs[i];
        int32_t day = attr_day_of(r->occur_ns);
        uint64_t h = attr_hash_u64((uint64_t)(uintptr_t)r->creator * UINT64_C(0x9E3779B97F4A7C15) ^
                                   ((uint64_t)r->seg << 32) ^ (uint32_t)day);
        size_t j = h & (cap - 1);
        attr_xrollup_t *row = NULL;
        for (; slots[j] != 0; j = (j + 1) & (cap - 1)) {
            attr_xrollup_t *x = &rows[slots[j] - 1];
            if (x->creator == r->creator && x->seg == r->seg && x->day == day) {
                row = x;
                break;
            }
        }
        if (row == NULL) {
            row = &rows[n];
            *row = (attr_xrollup_t){.seg = r->seg,
                                    .day = day,
                                    .creator = r->creator,
                                    .creator_len = attr_intern_len(r->creator)};
            slots[j] = (uint32_t)++n;
        }
        row->impressions += r->kind == ATTR_KIND_IMPRESSION;
        row->views += r->kind == ATTR_KIND_VIEW;
        row->clicks += r->kind == ATTR_KIND_CLICK;
    }
    free(slots);
    *out = rows;
    *n_out = n;
    return 0;
}

/**
 * attr_runs_ops_t.build: writes and opens the index file of a sealed run; its sorted id
 * hashes go to b->hashes.
 */
static int attr__build_file(void *ctx, void *sealed, const char *dir, attr_xidx_t **out, char *err,
                            size_t errlen)
{
    (void)ctx;
    attr__sealed_t *b = sealed;
    const attr_run_t *run = b->run;
    size_t nj = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        if (run->recs[i].joinable) {
            nj += run->recs[i].n_products;
        }
    }
    attr_xent_t *join = malloc((nj ? nj : 1) * sizeof *join);
    attr_xent_t *dedup = malloc((run->n ? run->n : 1) * sizeof *dedup);
    attr_xrollup_t *rows = NULL;
    size_t n_rows = 0;
    int rc = join != NULL && dedup != NULL ? attr__run_rollups(run, &rows, &n_rows) : -ENOMEM;
    if (rc != 0) {
        snprintf(err, errlen, "run %llu: out of memory", (unsigned long long)run->id);
        free(join);
        free(dedup);
        return rc;
    }
    size_t j = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        attr_run_rec_t rec;
        attr_run_rec(run, i, &rec);
        dedup[i] = (attr_xent_t){rec.eid_hash, rec.seg, rec.off};
        if (!rec.joinable) {
            continue;
        }
        uint64_t hv = attr_hash_bytes(rec.viewer, rec.viewer_len);
        const char *at = rec.products;
        for (uint16_t k = 0; k < rec.n_products; k++) {
            uint32_t plen;
            const char *p = attr_run_next_product(&at, &plen);
            join[j++] = (attr_xent_t){attr_vp_hash(hv, attr_hash_bytes(p, plen)), rec.seg, rec.off};
        }
    }
    char path[4200];
    rc = attr_xidx_write(dir, &b->meta, join, nj, dedup, run->n, rows, n_rows, b->segs, b->n_segs,
                         path, sizeof path, err, errlen);
    free(join);
    free(rows);
    if (rc == 0) {
        rc = attr_xidx_open(path, 0, out, err, errlen);
    }
    if (rc == 0) {
        /* The dedup entries are sorted now: their hashes load the Bloom filter fastest. */
        uint64_t *h = (uint64_t *)dedup; /* reuse the memory: 8 of every 16 bytes */
        for (uint32_t i = 0; i < run->n; i++) {
            h[i] = dedup[i].h;
        }
        b->hashes = h;
        b->n_hashes = run->n;
        return 0;
    }
    free(dedup);
    char what[600];
    snprintf(what, sizeof what, "index of run %llu (%u exposures): %s", (unsigned long long)run->id,
             run->n, err);
    snprintf(err, errlen, "%s", what);
    return rc;
}

static void attr__sealed_free(attr__sealed_t *b)
{
    free(b->segs);
    free(b->hashes);
    free(b);
}

static void attr__release_held(attr_xstore_t *xs);

/** attr_runs_ops_t.published: the run's ids go into the Bloom filters. */
static int attr__sealed_published(void *ctx, void *sealed, const attr_xidx_t *x)
{
    (void)x;
    attr_xstore_t *xs = ctx;
    attr__sealed_t *b = sealed;
    int rc = attr_state_index_add(xs->st, b->hashes, b->n_hashes, b->meta.max_seg);
    free(b->hashes);
    b->hashes = NULL;
    if (rc != 0) {
        yw_log(YW_LOG_ERROR,
               "index of run %llu: out of memory loading its ids; the run stays "
               "in memory",
               (unsigned long long)b->run->id);
    }
    attr__release_held(xs);
    return rc;
}

/**
 * attr_runs_ops_t.failed: do not hold appends back for a build that may keep failing
 * (memory grows instead, and the errors say why).
 */
static void attr__sealed_failed(void *ctx, void *sealed)
{
    (void)sealed;
    attr__release_held(ctx);
}

/** attr_runs_ops_t.release: the run leaves memory (the state's). */
static void attr__sealed_release(void *ctx, void *sealed)
{
    attr_xstore_t *xs = ctx;
    attr__sealed_t *b = sealed;
    attr_state_release_run(xs->st, b->run);
    attr__sealed_free(b);
}

/** attr_runs_ops_t.discard: at close; the run stays the state's, freed with it. */
static void attr__sealed_discard(void *ctx, void *sealed)
{
    (void)ctx;
    attr__sealed_free(sealed);
}

/** The log line of a merge. */
static void attr__log_merged(attr_xstore_t *xs, const attr_xidx_t *out)
{
    const attr_xmeta_t *mm = attr_xidx_meta(out);
    attr_xstore_info_t info;
    attr_xstore_info(xs, &info);
    yw_log(YW_LOG_INFO,
           "merged the index files of runs %llu-%llu (%llu exposures); now %llu files "
           "of %llu exposures, memory: fences %zu KiB, Bloom filters %zu KiB, %zu "
           "runs not yet released %zu KiB",
           (unsigned long long)mm->first_run, (unsigned long long)mm->last_run,
           (unsigned long long)mm->n_dedup, (unsigned long long)info.files,
           (unsigned long long)info.file_entries, info.fence_bytes >> 10, info.bloom_bytes >> 10,
           xs->st->n_runs, info.run_bytes >> 10);
}

static size_t attr__drop_pruned_files(attr_xstore_t *xs);

/**
 * attr_runs_ops_t.merged: a line on what the store holds now; the files pruned during
 * the merge go.
 */
static void attr__files_merged(void *ctx, const attr_xidx_t *out)
{
    attr_xstore_t *xs = ctx;
    if (out != NULL) {
        attr__log_merged(xs, out);
    }
    (void)attr__drop_pruned_files(xs);
}

static const attr_runs_ops_t attr__sealed_ops = {
    .build = attr__build_file,
    .published = attr__sealed_published,
    .failed = attr__sealed_failed,
    .release = attr__sealed_release,
    .discard = attr__sealed_discard,
    .merged = attr__files_merged,
};

/**
 * Seals the open run: a sealed run with the open run's stretch of the log, which starts
 * anew. With `now` (start-up: nobody else is looking) its file is built and published
 * here; else it is queued for the builder. Returns 0 or a negative errno with a message
 * in `err` (may be NULL).
 */
static int attr__seal_run(attr_xstore_t *xs, int now, char *err, size_t errlen)
{
    attr_run_t *run = attr_state_seal_run(xs->st);
    if (run == NULL) {
        return 0;
    }
    attr__sealed_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        yw_log(YW_LOG_ERROR, "out of memory sealing run %llu: it stays in memory",
               (unsigned long long)run->id);
        if (err != NULL) {
            snprintf(err, errlen, "out of memory");
        }
        return -ENOMEM;
    }
    b->xs = xs;
    b->run = run;
    b->meta.first_run = b->meta.last_run = run->id;
    b->meta.start = xs->run_start;
    b->meta.end = xs->log_end;
    b->segs = xs->run_segs;
    b->n_segs = xs->n_run_segs;
    char berr[512] = "";
    int rc =
        now ? attr_runs_build_now(xs->runs, b, berr, sizeof berr) : attr_runs_seal(xs->runs, b);
    if (rc != 0) {
        if (now) {
            snprintf(err, errlen, "indexing the log's tail: %s", berr);
        } else {
            yw_log(YW_LOG_ERROR, "out of memory sealing run %llu: it stays in memory",
                   (unsigned long long)run->id);
        }
        free(b->hashes);
        free(b);
        return rc;
    }
    xs->run_segs = NULL;
    xs->n_run_segs = xs->cap_run_segs = 0;
    xs->run_start = xs->log_end;
    xs->run_first_ns = 0;
    return 0;
}

static void attr__seal(attr_xstore_t *xs)
{
    (void)attr__seal_run(xs, 0, NULL, 0);
}

/** attr_runs_drop_if(): a file whose every entry is in a pruned segment. */
static int attr__file_pruned(void *arg, const attr_xidx_t *x, int64_t latest)
{
    (void)latest;
    const attr_xstore_t *xs = arg;
    const attr_xmeta_t *m = attr_xidx_meta(x);
    return m->max_seg < xs->first_live_seg && m->end.seq < xs->first_live_seg;
}

/** Drops the files whose every entry is in a pruned segment (not during a merge). */
static size_t attr__drop_pruned_files(attr_xstore_t *xs)
{
    return attr_runs_drop_if(xs->runs, 0, attr__file_pruned, xs);
}

/* ---- the log ---- */

/**
 * Whether the open run is due to be sealed: at run_exposures exposures, or once what
 * grows with the exposures' sizes (their strings, their products' join keys) reaches
 * run_bytes, so that wide exposures do not make a run hundreds of MB.
 */
static int attr__run_full(const attr_xstore_t *xs, const attr_run_t *run)
{
    return run != NULL &&
           (run->n >= xs->run_exposures ||
            run->arena_len + run->join_n * sizeof *run->join_slots * 2 >= xs->run_bytes);
}

void attr_xstore_set_run_bytes(attr_xstore_t *xs, size_t bytes)
{
    xs->run_bytes = bytes > 0 ? bytes : ATTR_XSTORE_RUN_BYTES;
}

/**
 * Whether appends wait: when ATTR_XSTORE_MAX_UNBUILT sealed runs are not indexed yet
 * (the builder is behind), the log takes nothing new until one is, so that memory stays
 * bounded and the clients' acknowledgements slow down instead. Not while builds fail.
 */
static int attr__must_hold(const attr_xstore_t *xs)
{
    return attr_runs_unbuilt(xs->runs) >= ATTR_XSTORE_MAX_UNBUILT && !attr_runs_failing(xs->runs) &&
           !xs->closing;
}

static void attr__release_held(attr_xstore_t *xs)
{
    while (xs->held_head != NULL && !attr__must_hold(xs)) {
        attr_log_batch_t *b = xs->held_head;
        xs->held_head = b->next;
        if (xs->held_head == NULL) {
            xs->held_tail = NULL;
        }
        int rc = attr_log_append(xs->log, b);
        if (rc != 0) {
            b->done(b, rc); /* the log is closed: the batch fails like any other */
        }
    }
}

int attr_xstore_append(attr_xstore_t *xs, attr_log_batch_t *batch)
{
    if (xs->held_head == NULL && !attr__must_hold(xs)) {
        return attr_log_append(xs->log, batch);
    }
    /* Behind the ones already held: the log keeps the order of appends. */
    batch->next = NULL;
    if (xs->held_tail != NULL) {
        xs->held_tail->next = batch;
    } else {
        xs->held_head = batch;
    }
    xs->held_tail = batch;
    return 0;
}

uint64_t attr_xstore_current_seq(attr_xstore_t *xs)
{
    return attr_log_current_seq(xs->log);
}

void attr_xstore_committed(attr_xstore_t *xs, const attr_log_batch_t *batch)
{
    xs->log_end = (attr_xpos_t){batch->seq, batch->frame_end};
    attr__seg_add(xs, batch->seq, batch->n, batch->arrival_ns);
    if (attr__run_seg_add(xs, batch->seq, batch->n, batch->arrival_ns) != 0) {
        yw_log(YW_LOG_ERROR, "out of memory tracking the open run's segments");
    }
    if (xs->run_first_ns == 0) {
        xs->run_first_ns = attr__now_ns();
    }
    attr_run_t *run = attr_state_open_run(xs->st);
    if (attr__run_full(xs, run)) {
        attr__seal(xs);
    }
}

/* ---- lookups (the looker thread) ---- */

static void attr__confirm_work(attr_job_t *job)
{
    attr_xconfirm_t *r = (attr_xconfirm_t *)job;
    attr_log_recbuf_t buf;
    memset(&buf, 0, sizeof buf);
    r->status = 0;
    for (size_t i = 0; i < r->n; i++) {
        const attr_pexp_t *p = r->events[i];
        int rc = attr__find_eid(&r->xs->fds, r->view->files, r->view->n, p->eid_hash, p->event_id.s,
                                p->event_id.len, &buf);
        if (rc < 0) {
            r->status = rc;
            break;
        }
        r->dup[i] = (uint8_t)rc;
    }
    attr_log_recbuf_free(&buf);
}

static void attr__confirm_after(attr_job_t *job)
{
    attr_xconfirm_t *r = (attr_xconfirm_t *)job;
    attr_xstore_t *xs = r->xs;
    attr_runs_view_t *v = r->view;
    r->view = NULL;
    r->done(r); /* may free r */
    attr_runs_view_put(xs->runs, v);
}

void attr_xstore_confirm_begin(attr_xstore_t *xs, attr_xconfirm_t *req)
{
    req->xs = xs;
    if (req->view == NULL) {
        req->view = attr_runs_view(xs->runs);
    }
}

int attr_xstore_confirm(attr_xstore_t *xs, attr_xconfirm_t *req)
{
    req->xs = xs;
    if (req->view == NULL && (req->view = attr_runs_view(xs->runs)) == NULL) {
        return -ENOMEM;
    }
    req->job.work = attr__confirm_work;
    req->job.after = attr__confirm_after;
    int rc = attr_work_submit(xs->lookers[xs->next_looker++ % ATTR_XSTORE_LOOKERS], &req->job);
    if (rc != 0) {
        attr_xstore_confirm_cancel(xs, req);
    }
    return rc;
}

void attr_xstore_confirm_cancel(attr_xstore_t *xs, attr_xconfirm_t *req)
{
    attr_runs_view_put(xs->runs, req->view);
    req->view = NULL;
}

/** One part of a join request: q[from, to), on one lookup thread. */
struct st_attr__jpart_t {
    attr_job_t job;
    attr_xjoin_t *req;
    size_t from, to;
    /* out: the candidates of q[from + j] are cands[first[j]] .. cands[first[j + 1] - 1] */
    attr_xcand_t *cands;
    size_t n_cands, cap_cands;
    size_t *first;
    char **blocks;
    size_t n_blocks, cap_blocks, block_left;
    int status;
};

#define ATTR__JBLOCK 16384

/** Copies a string into the part's blocks; NULL: no memory. */
static const char *attr__join_copy(attr__jpart_t *r, const char *s, uint32_t len)
{
    char *p;
    if ((size_t)len + 1 > ATTR__JBLOCK) {
        /* A block of its own (ids are short: this is for the odd long one). */
        if (attr__grow((void **)&r->blocks, &r->cap_blocks, r->n_blocks + 1, sizeof *r->blocks) !=
                0 ||
            (p = malloc((size_t)len + 1)) == NULL) {
            return NULL;
        }
        /* Keep the current block last: insert before it. */
        if (r->n_blocks > 0) {
            r->blocks[r->n_blocks] = r->blocks[r->n_blocks - 1];
            r->blocks[r->n_blocks - 1] = p;
        } else {
            r->blocks[0] = p;
            r->block_left = 0;
        }
        r->n_blocks++;
    } else {
        if ((size_t)len + 1 > r->block_left) {
            if (attr__grow((void **)&r->blocks, &r->cap_blocks, r->n_blocks + 1,
                           sizeof *r->blocks) != 0) {
                return NULL;
            }
            char *b = malloc(ATTR__JBLOCK);
            if (b == NULL) {
                return NULL;
            }
            r->blocks[r->n_blocks++] = b;
            r->block_left = ATTR__JBLOCK;
        }
        p = r->blocks[r->n_blocks - 1] + (ATTR__JBLOCK - r->block_left);
        r->block_left -= (size_t)len + 1;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static int attr__join_emit(void *arg, const attr_log_event_t *ev)
{
    attr__jpart_t *r = arg;
    if (attr__grow((void **)&r->cands, &r->cap_cands, r->n_cands + 1, sizeof *r->cands) != 0) {
        return -ENOMEM;
    }
    attr_xcand_t *c = &r->cands[r->n_cands];
    c->event_id = attr__join_copy(r, ev->event_id.s, ev->event_id.len);
    c->creator = attr__join_copy(r, ev->creator.s, ev->creator.len);
    c->note = attr__join_copy(r, ev->note.s, ev->note.len);
    if (c->event_id == NULL || c->creator == NULL || c->note == NULL) {
        return -ENOMEM;
    }
    c->event_id_len = ev->event_id.len;
    c->creator_len = ev->creator.len;
    c->note_len = ev->note.len;
    c->kind = ev->kind;
    c->watch_ms = ev->watch_ms;
    c->occur_ns = ev->occur_ns;
    r->n_cands++;
    return 0;
}

static void attr__join_work(attr_job_t *job)
{
    attr__jpart_t *r = (attr__jpart_t *)job;
    const attr_xjoin_t *req = r->req;
    attr_log_recbuf_t buf;
    memset(&buf, 0, sizeof buf);
    r->status = 0;
    r->first = malloc((r->to - r->from + 1) * sizeof *r->first);
    if (r->first == NULL) {
        r->status = -ENOMEM;
        return;
    }
    for (size_t i = r->from; i < r->to; i++) {
        r->first[i - r->from] = r->n_cands;
        int rc = attr__find_cands(&req->xs->fds, req->view->files, req->view->n, &req->q[i], &buf,
                                  attr__join_emit, r, 0, 0);
        if (rc != 0) {
            r->status = rc;
            break;
        }
    }
    r->first[r->to - r->from] = r->n_cands;
    attr_log_recbuf_free(&buf);
}

static void attr__join_after(attr_job_t *job)
{
    attr__jpart_t *part = (attr__jpart_t *)job;
    attr_xjoin_t *r = part->req;
    if (part->status != 0 && r->status == 0) {
        r->status = part->status;
    }
    if (--r->parts_left > 0) {
        return;
    }
    attr_xstore_t *xs = r->xs;
    if (r->keep_view) {
        r->done(r); /* the caller releases the view (attr_xstore_join_release()) */
        return;
    }
    attr_runs_view_t *v = r->view;
    r->view = NULL;
    r->done(r); /* may free r */
    attr_runs_view_put(xs->runs, v);
}

void attr_xstore_join_release(attr_xstore_t *xs, attr_xjoin_t *req)
{
    attr_runs_view_t *v = req->view;
    req->view = NULL;
    attr_runs_view_put(xs->runs, v);
}

int attr_xstore_join(attr_xstore_t *xs, attr_xjoin_t *req)
{
    req->xs = xs;
    req->status = 0;
    req->n_parts = req->n >= 2 * ATTR_XSTORE_LOOKERS ? ATTR_XSTORE_LOOKERS : 1;
    req->parts = calloc((size_t)req->n_parts, sizeof *req->parts);
    if (req->parts == NULL) {
        return -ENOMEM;
    }
    if ((req->view = attr_runs_view(xs->runs)) == NULL) {
        free(req->parts);
        req->parts = NULL;
        return -ENOMEM;
    }
    req->parts_left = req->n_parts;
    for (int k = 0; k < req->n_parts; k++) {
        attr__jpart_t *part = &req->parts[k];
        part->req = req;
        part->from = req->n * (size_t)k / (size_t)req->n_parts;
        part->to = req->n * (size_t)(k + 1) / (size_t)req->n_parts;
        part->job.work = attr__join_work;
        part->job.after = attr__join_after;
        if (attr_work_submit(xs->lookers[k], &part->job) != 0) {
            /* Closing (nothing was submitted before: all lookers close together). */
            if (k == 0) {
                attr_runs_view_put(xs->runs, req->view);
                req->view = NULL;
                free(req->parts);
                req->parts = NULL;
                return -ESHUTDOWN;
            }
            /* The parts on their way still end the request: fail this one's share. */
            part->status = -ESHUTDOWN;
            req->parts_left -= req->n_parts - k;
            req->status = -ESHUTDOWN;
            break;
        }
    }
    return 0;
}

const attr_xcand_t *attr_xjoin_cands(const attr_xjoin_t *req, size_t i, size_t *n)
{
    *n = 0;
    for (int k = 0; k < req->n_parts; k++) {
        const attr__jpart_t *p = &req->parts[k];
        if (i >= p->from && i < p->to) {
            if (p->first == NULL || p->status != 0) {
                return NULL;
            }
            size_t j = i - p->from;
            *n = p->first[j + 1] - p->first[j];
            /* (None found: cands may be NULL, as with no file to look in.) */
            return *n > 0 ? p->cands + p->first[j] : NULL;
        }
    }
    return NULL;
}

void attr_xjoin_free(attr_xjoin_t *req)
{
    for (int k = 0; k < req->n_parts && req->parts != NULL; k++) {
        attr__jpart_t *p = &req->parts[k];
        for (size_t i = 0; i < p->n_blocks; i++) {
            free(p->blocks[i]);
        }
        free(p->blocks);
        free(p->cands);
        free(p->first);
    }
    free(req->parts);
    req->parts = NULL;
    req->n_parts = 0;
}

void attr_xstore_hold_runs(attr_xstore_t *xs, int hold)
{
    attr_runs_hold(xs->runs, hold);
}

/* ---- maintenance ---- */

void attr_xstore_tick(attr_xstore_t *xs, int64_t now_ns)
{
    if (xs->closing) {
        return;
    }
    if (xs->run_first_ns != 0 && now_ns - xs->run_first_ns >= ATTR_XSTORE_RUN_AGE_MS * 1000000LL) {
        attr__seal(xs);
    }
    attr_runs_tick(xs->runs); /* failed builds again, merges */
}

int attr_xstore_prunable(attr_xstore_t *xs, int64_t limit_ns, uint64_t *seq, char *path)
{
    if (xs->n_segs < 2 || xs->segs[0].seq == attr_log_current_seq(xs->log) ||
        xs->segs[0].max_arrival_ns >= limit_ns) {
        return 0;
    }
    *seq = xs->segs[0].seq;
    attr_log_path(xs->dir, *seq, path, 4096);
    return 1;
}

void attr_xstore_pruned(attr_xstore_t *xs, uint64_t seq)
{
    for (size_t i = 0; i < xs->n_segs; i++) {
        if (xs->segs[i].seq == seq) {
            memmove(&xs->segs[i], &xs->segs[i + 1], (xs->n_segs - i - 1) * sizeof *xs->segs);
            xs->n_segs--;
            break;
        }
    }
    char path[4200];
    attr_log_path(xs->dir, seq, path, sizeof path);
    attr__segfd_kill(&xs->fds, seq);
    attr_runs_unlink(xs->runs, path);
    if (seq + 1 > xs->first_live_seg) {
        xs->first_live_seg = seq + 1;
        attr_runs_set_min_seg(xs->runs, xs->first_live_seg);
    }
    attr_state_index_forget(xs->st, seq);
    attr__drop_pruned_files(xs);
}

void attr_xstore_info(const attr_xstore_t *xs, attr_xstore_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->segments = xs->n_segs;
    attr_runs_info_t ri;
    attr_runs_info(xs->runs, &ri);
    info->files = ri.files;
    info->file_entries = ri.dedup_entries;
    info->fence_bytes = ri.fence_bytes;
    info->views = ri.views;
    info->runs_waiting = ri.waiting;
    info->runs_built = ri.built;
    info->merges = ri.merges;
    info->build_failures = ri.failures;
    info->bloom_bytes = attr_state_bloom_bytes(xs->st);
    for (size_t i = 0; i < xs->st->n_runs; i++) {
        info->run_bytes += attr_run_bytes(xs->st->runs[i]);
    }
}

/* ---- start-up ---- */

static void attr__err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attr__err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int attr__is_in(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == x) {
            return 1;
        }
    }
    return 0;
}

/*
 * Rollup rows go into the state through a short pipeline: a file holds about one row
 * per exposure, in no order of creator, and each row's creator is a chain of cache
 * misses: its interner slot, the string the slot points at, the creator's entry, its
 * days. Each step of a row is prefetched ATTR__LOAD_STEP rows before the row needs it.
 */
#define ATTR__LOAD_RING 32 /* a power of two, more than 4 x ATTR__LOAD_STEP */
#define ATTR__LOAD_STEP 6
#define ATTR__LOAD_ID_MAX 256 /* ids are at most 256 bytes; a longer one goes alone */

typedef struct st_attr__load_row_t {
    char creator[ATTR__LOAD_ID_MAX];
    uint32_t len, id;
    int32_t day;
    int64_t impressions, views, clicks;
} attr__load_row_t;

typedef struct st_attr__load_ctx_t {
    attr_xstore_t *xs;
    uint64_t *hashes; /* a buffer of ids on their way to the Bloom filters */
    size_t n, cap;
    uint64_t max_seg;
    attr__load_row_t *ring; /* rows on their way into the rollups */
    uint64_t in, strs, looked, days, added; /* rows entered, and past each step */
} attr__load_ctx_t;

/** Moves the rows on by a step each (with `all`: through every step). 0 or -ENOMEM. */
static int attr__load_step(attr__load_ctx_t *c, int all)
{
    attr_state_t *st = c->xs->st;
#define ATTR__DUE(done, before) ((done) < (before) && (all || (before) - (done) > ATTR__LOAD_STEP))
    for (; ATTR__DUE(c->strs, c->in); c->strs++) {
        attr__load_row_t *r = &c->ring[c->strs % ATTR__LOAD_RING];
        attr_intern_prefetch_str(&st->creators, r->creator, r->len);
    }
    for (; ATTR__DUE(c->looked, c->strs); c->looked++) {
        attr__load_row_t *r = &c->ring[c->looked % ATTR__LOAD_RING];
        if (attr_intern(&st->creators, r->creator, r->len, &r->id) != 0) {
            return -ENOMEM;
        }
        attr_state_prefetch_counts(st, r->id, 0);
    }
    for (; ATTR__DUE(c->days, c->looked); c->days++) {
        attr_state_prefetch_counts(st, c->ring[c->days % ATTR__LOAD_RING].id, 1);
    }
    for (; ATTR__DUE(c->added, c->days); c->added++) {
        const attr__load_row_t *r = &c->ring[c->added % ATTR__LOAD_RING];
        int rc = attr_state_add_exposure_counts(st, r->id, r->day, r->impressions, r->views,
                                                r->clicks);
        if (rc != 0) {
            return rc;
        }
    }
#undef ATTR__DUE
    return 0;
}

static int attr__load_rollup(void *arg, const attr_xrollup_t *r)
{
    attr__load_ctx_t *c = arg;
    attr_state_t *st = c->xs->st;
    if (r->seg < c->xs->first_live_seg || st->skip_counts) {
        return 0; /* its counts are in the database, or in the snapshot loaded */
    }
    if (r->creator_len > ATTR__LOAD_ID_MAX || c->ring == NULL) {
        return attr_state_add_exposure_rollup(st, r->creator, r->creator_len, r->day,
                                              r->impressions, r->views, r->clicks);
    }
    attr__load_row_t *row = &c->ring[c->in % ATTR__LOAD_RING];
    memcpy(row->creator, r->creator, r->creator_len);
    row->len = r->creator_len;
    row->day = r->day;
    row->impressions = r->impressions;
    row->views = r->views;
    row->clicks = r->clicks;
    attr_intern_prefetch(&st->creators, row->creator, row->len);
    c->in++;
    return attr__load_step(c, 0);
}

static int attr__load_seg(void *arg, const attr_xseg_t *s)
{
    attr__load_ctx_t *c = arg;
    if (s->seg >= c->xs->first_live_seg) {
        attr__seg_add(c->xs, s->seg, s->events, s->max_arrival_ns);
    }
    return 0;
}

static int attr__load_hash(void *arg, const attr_xent_t *e)
{
    attr__load_ctx_t *c = arg;
    c->hashes[c->n++] = e->h;
    if (c->n == c->cap) {
        int rc = attr_state_index_add(c->xs->st, c->hashes, c->n, c->max_seg);
        c->n = 0;
        return rc;
    }
    return 0;
}

/** Loads one file: its rollups, its segments' figures and its ids (Bloom filters). */
static int attr__load_file(attr_xstore_t *xs, attr_xidx_t *x, attr__load_ctx_t *c)
{
    int rc = attr_xidx_rollups(x, attr__load_rollup, c);
    if (rc == 0) {
        rc = attr__load_step(c, 1);
    }
    if (rc == 0) {
        rc = attr_xidx_segs(x, attr__load_seg, c);
    }
    c->n = 0;
    c->max_seg = attr_xidx_meta(x)->max_seg;
    if (rc == 0) {
        rc = attr_xidx_scan(x, ATTR_XIDX_DEDUP, attr__load_hash, c);
    }
    if (rc == 0 && c->n > 0) {
        rc = attr_state_index_add(xs->st, c->hashes, c->n, c->max_seg);
    }
    return rc;
}

/**
 * Whether a file starting at `start` continues one that ended at `end`: the same
 * position, or the beginning (offset 0) of a later segment (a run opened at start-up:
 * the previous segments were read to their end).
 */
static int attr__continues(attr_xpos_t start, attr_xpos_t end)
{
    return attr_xpos_cmp(start, end) == 0 || (start.off == 0 && start.seq > end.seq);
}

/**
 * attr_runs_load(): keeps the index files that are whole and chain from the log's live
 * start (`arg`: the first segment). A file a merged one covers goes alone; at a gap,
 * every later file goes too (the log is read again).
 */
static attr_runs_verdict_t attr__judge_file(void *arg, const char *path, const attr_xidx_t *x,
                                            const char *why, const attr_xidx_t *prev_x)
{
    uint64_t first_seg = *(const uint64_t *)arg;
    const attr_xmeta_t *m = x != NULL ? attr_xidx_meta(x) : NULL;
    const attr_xmeta_t *prev = prev_x != NULL ? attr_xidx_meta(prev_x) : NULL;
    attr_runs_verdict_t v = ATTR_RUNS_DROP_REST;
    if (x == NULL) {
        v = ATTR_RUNS_DROP;
    } else if (prev != NULL && m->last_run <= prev->last_run) {
        why = "covered by a merged file (a merge was interrupted)";
        v = ATTR_RUNS_DROP;
    } else if (prev != NULL &&
               (m->first_run != prev->last_run + 1 || !attr__continues(m->start, prev->end))) {
        why = "does not continue the previous file (one is missing): rebuilt from the log";
    } else if (prev == NULL &&
               (m->start.seq > first_seg || (m->start.seq == first_seg && m->start.off != 0))) {
        why = "the log before it is not indexed: rebuilt from the log";
    } else {
        return ATTR_RUNS_KEEP;
    }
    yw_log(YW_LOG_WARN, "index file %s: %s; deleting it", path, why);
    return v;
}

/* -- the tail of the log: read, committed into runs, indexed, at start-up -- */

typedef struct st_attr__tail_t {
    attr_xstore_t *xs;
    int64_t now;
    uint64_t seq;
    uint64_t frame_off; /* of the frame being read; UINT64_MAX: none yet */
    uint64_t frame_end;
    int64_t frame_arrival;
    uint64_t frame_events;
    const char **prods;
    size_t *lens;
    size_t cap;
    attr_log_recbuf_t buf;
    attr_xstore_stats_t *stats;
    int rc;
    char *err;
    size_t errlen;
} attr__tail_t;

/** Builds and publishes the sealed open run now (start-up: nobody else is looking). */
static int attr__seal_sync(attr_xstore_t *xs, attr_xstore_stats_t *stats, char *err, size_t errlen)
{
    int rc = attr__seal_run(xs, 1, err, errlen);
    if (rc == 0) {
        stats->tail_runs++;
    }
    return rc;
}

/** The end of a frame of the tail: the run's stretch grows; seal it when full. */
static int attr__tail_frame_done(attr__tail_t *t)
{
    attr_xstore_t *xs = t->xs;
    if (t->frame_off == UINT64_MAX) {
        return 0;
    }
    xs->log_end = (attr_xpos_t){t->seq, t->frame_end};
    attr__seg_add(xs, t->seq, t->frame_events, t->frame_arrival);
    if (attr__run_seg_add(xs, t->seq, t->frame_events, t->frame_arrival) != 0) {
        return -ENOMEM;
    }
    t->frame_off = UINT64_MAX;
    attr_run_t *run = attr_state_open_run(xs->st);
    if (attr__run_full(xs, run)) {
        return attr__seal_sync(xs, t->stats, t->err, t->errlen);
    }
    return 0;
}

static int attr__tail_visit(void *arg, const attr_log_event_t *ev)
{
    attr__tail_t *t = arg;
    attr_xstore_t *xs = t->xs;
    if (ev->frame_off != t->frame_off) {
        int rc = attr__tail_frame_done(t);
        if (rc != 0) {
            return rc;
        }
        t->frame_off = ev->frame_off;
        t->frame_end = ev->frame_end;
        t->frame_arrival = ev->arrival_ns;
        t->frame_events = 0;
    }
    t->frame_events++;
    if (ev->n_products > t->cap) {
        size_t nc = (size_t)ev->n_products * 2;
        const char **p = realloc(t->prods, nc * sizeof *p);
        if (p == NULL) {
            return -ENOMEM;
        }
        t->prods = p;
        size_t *l = realloc(t->lens, nc * sizeof *l);
        if (l == NULL) {
            return -ENOMEM;
        }
        t->lens = l;
        t->cap = nc;
    }
    for (uint32_t k = 0; k < ev->n_products; k++) {
        t->prods[k] = ev->products[k].s;
        t->lens[k] = ev->products[k].len;
    }
    attr_exposure_in_t in = {
        .event_id = ev->event_id.s,
        .event_id_len = ev->event_id.len,
        .viewer_id = ev->viewer.s,
        .viewer_len = ev->viewer.len,
        .creator_id = ev->creator.s,
        .creator_len = ev->creator.len,
        .note_id = ev->note.s,
        .note_len = ev->note.len,
        .product_ids = t->prods,
        .product_lens = t->lens,
        .n_products = ev->n_products,
        .kind = ev->kind,
        .watch_ms = ev->watch_ms,
        .occur_ns = ev->occur_ns,
    };
    uint64_t seq;
    int rc = attr_exposure_admit(xs->st, &in, ev->arrival_ns, &seq, NULL);
    if (rc == ATTR_UNSURE) {
        size_t n_files;
        attr_xidx_t *const *files = attr_runs_files(xs->runs, &n_files);
        int dup = attr__find_eid(&xs->fds, files, n_files,
                                 attr_hash_bytes(ev->event_id.s, ev->event_id.len), ev->event_id.s,
                                 ev->event_id.len, &t->buf);
        if (dup < 0) {
            attr_exposure_abort(xs->st, seq);
            return dup;
        }
        attr_exposure_resolve(xs->st, seq, dup);
        rc = dup ? ATTR_DUPLICATE : ATTR_ADMITTED;
    }
    if (rc == ATTR_DUPLICATE) {
        t->stats->tail_duplicates++;
        return 0;
    }
    if (rc != ATTR_ADMITTED) {
        return rc < 0 ? rc : -ENOMEM;
    }
    rc = attr_exposure_commit_at(xs->st, seq, (uint32_t)t->seq, ev->rec_off, t->now);
    if (rc < 0) {
        return rc;
    }
    t->stats->tail_events++;
    return 0;
}

/** Reads the log from `from` on into runs, indexed as they fill (and the last one). */
static int attr__index_tail(attr_xstore_t *xs, const uint64_t *seqs, size_t n, attr_xpos_t from,
                            int64_t now, attr_xstore_stats_t *stats, char *err, size_t errlen)
{
    attr__tail_t t;
    memset(&t, 0, sizeof t);
    t.xs = xs;
    t.now = now;
    t.stats = stats;
    t.err = err;
    t.errlen = errlen;
    xs->run_start = xs->log_end = from;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (seqs[i] < from.seq) {
            continue;
        }
        char path[4200];
        attr_log_path(xs->dir, seqs[i], path, sizeof path);
        int last = i + 1 == n;
        attr_log_segstat_t st;
        char rerr[512] = "";
        t.seq = seqs[i];
        t.frame_off = UINT64_MAX;
        uint64_t start = seqs[i] == from.seq ? from.off : 0;
        rc = attr_log_read_segment_from(path, start, last, attr__tail_visit, &t, &st, rerr,
                                        sizeof rerr);
        if (rc == -EBADMSG) {
            rc = 0;
            if (last) {
                /* Created but its header never reached the disk: nothing was in it. */
                yw_log(YW_LOG_WARN, "%s; deleting it (the last segment, torn at creation)", rerr);
                (void)unlink(path);
            } else {
                char bad[4300];
                snprintf(bad, sizeof bad, "%s.bad", path);
                yw_log(YW_LOG_ERROR, "%s; moved aside to %s, not replayed", rerr, bad);
                (void)rename(path, bad);
            }
            continue;
        }
        if (rc == 0) {
            rc = attr__tail_frame_done(&t);
        }
        if (rc != 0) {
            if (err[0] == '\0') {
                attr__err(err, errlen, "indexing %s: %s", path, rerr[0] ? rerr : strerror(-rc));
            }
            break;
        }
        if (st.torn) {
            yw_log(last ? YW_LOG_WARN : YW_LOG_ERROR,
                   "exposure log %s: %s at byte %llu; %s %llu bytes after it", path, st.torn_reason,
                   (unsigned long long)st.valid_bytes,
                   last ? "truncated (a torn tail: never acknowledged)" : "ignored",
                   (unsigned long long)(st.file_bytes - st.valid_bytes));
        }
        attr__seg(xs, seqs[i]); /* listed even when empty */
    }
    if (rc == 0) {
        rc = attr__seal_sync(xs, stats, err, errlen);
    }
    free(t.prods);
    free(t.lens);
    attr_log_recbuf_free(&t.buf);
    return rc;
}

/* -- the candidates of stored conversions, at start-up -- */

int attr_xstore_find_cands(attr_xstore_t *xs, const attr_xjoin_q_t *q, uint64_t after_seg,
                           uint64_t after_off, int (*fn)(void *arg, const attr_log_event_t *ev),
                           void *arg)
{
    size_t n_files;
    attr_xidx_t *const *files = attr_runs_files(xs->runs, &n_files);
    if (n_files == 0) {
        return 0;
    }
    if (xs->startup_buf == NULL && (xs->startup_buf = calloc(1, sizeof *xs->startup_buf)) == NULL) {
        return -ENOMEM;
    }
    return attr__find_cands(&xs->fds, files, n_files, q, xs->startup_buf, fn, arg, after_seg,
                            after_off);
}

/* -- open / close -- */

/** Frees the store (its runs module is closed already). */
static void attr__xstore_free(attr_xstore_t *xs)
{
    free(xs->segs);
    free(xs->run_segs);
    if (xs->startup_buf != NULL) {
        attr_log_recbuf_free(xs->startup_buf);
        free(xs->startup_buf);
    }
    attr__segfds_free(&xs->fds);
    free(xs);
}

static void attr__on_part_closed(void *arg)
{
    attr_xstore_t *xs = arg;
    if (--xs->close_left > 0) {
        return;
    }
    void (*closed)(void *) = xs->closed;
    void *closed_arg = xs->closed_arg;
    attr__xstore_free(xs);
    if (closed != NULL) {
        closed(closed_arg);
    }
}

int attr_xstore_open(uv_loop_t *loop, const char *dir, uint32_t run_exposures, attr_state_t *st,
                     const uint64_t *pruned, size_t n_pruned, int64_t now_ns, attr_xstore_t **out,
                     attr_xstore_stats_t *stats, char *err, size_t errlen)
{
    *out = NULL;
    memset(stats, 0, sizeof *stats);
    err[0] = '\0';
    attr_xstore_t *xs = calloc(1, sizeof *xs);
    if (xs == NULL) {
        attr__err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xs->loop = loop;
    xs->st = st;
    snprintf(xs->dir, sizeof xs->dir, "%s", dir);
    pthread_mutex_init(&xs->fds.mu, NULL);
    xs->fds.dir = xs->dir;
    xs->run_exposures = run_exposures ? run_exposures : ATTR_XSTORE_RUN;
    xs->run_bytes = ATTR_XSTORE_RUN_BYTES;
    st->run_max = 0; /* runs end where the store seals them */
    st->run_hint = xs->run_exposures;
    const attr_runs_cfg_t cfg = {
        .dir = dir,
        .what = "exposure index",
        .fanin = ATTR_XSTORE_FANIN,
        .lanes = 2,
        .keep_for_views = 1,
        .ops = &attr__sealed_ops,
        .ctx = xs,
    };
    if (attr_runs_open(&cfg, &xs->runs) != 0) {
        attr__err(err, errlen, "out of memory");
        attr__xstore_free(xs);
        return -ENOMEM;
    }

    /* 1. Segments: the pruned ones go, version 1 ones are rewritten. */
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rc = attr_log_list(dir, &seqs, &n);
    if (rc != 0) {
        attr__err(err, errlen, "%s: cannot list: %s", dir, strerror(-rc));
        attr_runs_close(xs->runs, NULL, NULL); /* no thread yet: at once */
        attr__xstore_free(xs);
        return rc;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        attr_log_path(dir, seqs[i], path, sizeof path);
        if (attr__is_in(pruned, n_pruned, seqs[i])) {
            /* Its counts are in the database already: never replay it. */
            if (unlink(path) != 0) {
                yw_log(YW_LOG_WARN, "cannot delete pruned segment %s: %s", path, strerror(errno));
            }
            if (seqs[i] + 1 > xs->first_live_seg) {
                xs->first_live_seg = seqs[i] + 1;
            }
            continue;
        }
        if (attr_log_segment_version(path) == 1) {
            char uerr[512] = "";
            rc = attr_log_upgrade(path, uerr, sizeof uerr);
            if (rc != 0) {
                attr__err(err, errlen, "%s", uerr);
                break;
            }
            yw_log(YW_LOG_INFO, "exposure log %s rewritten in format 2", path);
        }
        seqs[k++] = seqs[i];
    }
    n = k;
    for (size_t i = 0; i < n_pruned; i++) {
        if (pruned[i] + 1 > xs->first_live_seg) {
            xs->first_live_seg = pruned[i] + 1;
        }
    }
    uint64_t first_seg = n > 0 ? seqs[0] : xs->first_live_seg;
    if (first_seg > xs->first_live_seg) {
        xs->first_live_seg = first_seg;
    }
    attr_runs_set_min_seg(xs->runs, xs->first_live_seg);

    /* 2. The index files that are whole and continue each other. */
    if (rc == 0) {
        rc = attr_runs_load(xs->runs, attr__judge_file, &first_seg, &stats->files_dropped, err,
                            errlen);
    }
    /* Files covering only pruned segments (pruned while a file was being merged, or
     * before a crash) go now rather than fill the Bloom filters. */
    if (rc == 0) {
        stats->files_dropped += attr__drop_pruned_files(xs);
    }
    size_t n_files;
    attr_xidx_t *const *files = attr_runs_files(xs->runs, &n_files);
    /* 3. Their rollups, segment figures and ids. */
    attr__load_ctx_t lc = {.xs = xs, .cap = 1u << 16};
    if (rc == 0 && ((lc.hashes = malloc(lc.cap * sizeof *lc.hashes)) == NULL ||
                    (lc.ring = malloc(ATTR__LOAD_RING * sizeof *lc.ring)) == NULL)) {
        rc = -ENOMEM;
        attr__err(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n_files && rc == 0; i++) {
        rc = attr__load_file(xs, files[i], &lc);
        if (rc != 0) {
            attr__err(err, errlen, "loading %s: %s", attr_xidx_path(files[i]), strerror(-rc));
        }
        stats->indexed_events += attr_xidx_meta(files[i])->n_dedup;
    }
    free(lc.hashes);
    free(lc.ring);
    stats->files = n_files;
    if (n_files > 0) {
        st->next_run_id = attr_xidx_meta(files[n_files - 1])->last_run + 1;
    }
    /* 4. The log after the last file. (The service then looks up the candidates of the
     *    stored conversions in the files: attr_xstore_find_cands().) */
    attr_xpos_t from =
        n_files > 0 ? attr_xidx_meta(files[n_files - 1])->end : (attr_xpos_t){first_seg, 0};
    if (rc == 0) {
        rc = attr__index_tail(xs, seqs, n, from, now_ns, stats, err, errlen);
    }
    uint64_t next_seq = n > 0 ? seqs[n - 1] + 1 : (xs->first_live_seg ? xs->first_live_seg : 1);
    free(seqs);
    /* 5. A new segment, the threads. */
    if (rc == 0) {
        rc = attr_log_open(loop, dir, next_seq, &xs->log, err, errlen);
    }
    if (rc == 0) {
        xs->close_left++;
        rc = attr_runs_start(xs->runs, loop);
        for (int k = 0; k < ATTR_XSTORE_LOOKERS && rc == 0; k++) {
            if ((rc = attr_work_open(loop, &xs->lookers[k])) == 0) {
                xs->close_left++;
            }
        }
        if (rc != 0) {
            attr__err(err, errlen, "cannot start a thread: %s", strerror(-rc));
        }
    }
    if (rc != 0) {
        if (xs->close_left > 0) {
            /* Threads started: close them the normal way (frees the store at the end). */
            attr_xstore_close(xs, NULL, NULL);
        } else {
            /* Runs published at start-up stay the state's, freed with it. */
            attr_runs_close(xs->runs, NULL, NULL); /* no thread yet: at once */
            attr__xstore_free(xs);
        }
        return rc;
    }
    attr__seg(xs, next_seq);
    /* The first run starts where the log was read to (run_start == log_end now). */
    stats->segments = xs->n_segs;
    *out = xs;
    return 0;
}

void attr_xstore_close(attr_xstore_t *xs, void (*closed)(void *arg), void *arg)
{
    xs->closing = 1;
    xs->closed = closed;
    xs->closed_arg = arg;
    /* Hold one count ourselves, so that no part's callback frees us midway; the runs are
     * a part too. */
    xs->close_left += 2;
    /* Lookups first (their callbacks may append to the log), then what is held back,
     * then the log (its callbacks commit and may seal runs), then the open run and the
     * runs' threads (the builder finishes, a merge in progress gives up). */
    for (int k = 0; k < ATTR_XSTORE_LOOKERS; k++) {
        if (xs->lookers[k] != NULL) {
            attr_work_close(xs->lookers[k], attr__on_part_closed, xs);
        }
    }
    if (xs->log != NULL) {
        attr__release_held(xs); /* closing: nothing is held any more */
        attr_log_close(xs->log, attr__on_part_closed, xs);
    }
    attr__seal(xs);
    attr_runs_close(xs->runs, attr__on_part_closed, xs);
    attr__on_part_closed(xs);
}
