/*
 * attr_exposure_store_lookup.c — the exposure store's lookups in its index files: event ids the
 * Bloom filters were unsure of (confirm), the candidates of conversions (join, and at
 * start-up find_cands), on the lookup threads, each against a view of the files. See
 * attr_exposure_store.h.
 *
 * Threads: the segment descriptors are opened once and shared by every lookup thread
 * under their mutex; the rest runs on the loop but `work`, which reads files only.
 */
#define _GNU_SOURCE /* O_NOATIME */
#include "services/attribution/attr_exposure_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vec.h"
#include "services/attribution/attr_exposure_store_int.h"

/* ---- segment files, opened once for lookups (any thread) ---- */

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
        attr_xlog_path(f->dir, seq, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
        if (fd < 0 && errno == EPERM) {
            fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0) {
            rc = -errno;
        } else if (YW_VEC_GROW(f->v, f->n, f->cap, 1, 64) != 0) {
            close(fd);
            rc = -ENOMEM;
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
void attr_exposure_store__segfd_kill(attr__segfds_t *f, uint64_t seq)
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

void attr_exposure_store__segfds_free(attr__segfds_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        close(f->v[i].fd);
    }
    free(f->v);
    pthread_mutex_destroy(&f->mu);
}

/* ---- looking up in the files (any thread) ---- */

typedef struct st_attr__eid_ctx_t {
    attr__segfds_t *fds;
    attr_xlog_recbuf_t *buf;
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
    attr_xlog_event_t ev;
    int rc = attr_xlog_read_record(fd, e->off, c->buf, &ev);
    attr__segfd_release(c->fds, e->seg);
    if (rc != 0) {
        return rc;
    }
    return ev.event_id.len == c->len && memcmp(ev.event_id.s, c->eid, c->len) == 0;
}

/** 1: the id is in one of the files; 0: it is not; a negative errno: cannot tell. */
int attr_exposure_store__find_eid(attr__segfds_t *fds, attr_xidx_t *const *files, size_t n,
                                  uint64_t h, const char *eid, uint32_t len,
                                  attr_xlog_recbuf_t *buf)
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

typedef int (*attr__cand_fn)(void *arg, const attr_xlog_event_t *ev);

typedef struct st_attr__join_ctx_t {
    attr__segfds_t *fds;
    attr_xlog_recbuf_t *buf;
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
    attr_xlog_event_t ev;
    int rc = attr_xlog_read_record(fd, e->off, c->buf, &ev);
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
                            const attr_xjoin_q_t *q, attr_xlog_recbuf_t *buf, attr__cand_fn fn,
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

/* ---- lookups (the looker thread) ---- */

static void attr__confirm_work(attr_job_t *job)
{
    attr_xconfirm_t *r = (attr_xconfirm_t *)job;
    attr_xlog_recbuf_t buf;
    memset(&buf, 0, sizeof buf);
    r->status = 0;
    for (size_t i = 0; i < r->n; i++) {
        const attr_pexp_t *p = r->events[i];
        int rc = attr_exposure_store__find_eid(&r->xs->fds, r->view->files, r->view->n, p->eid_hash,
                                               p->event_id.s, p->event_id.len, &buf);
        if (rc < 0) {
            r->status = rc;
            break;
        }
        r->dup[i] = (uint8_t)rc;
    }
    attr_xlog_recbuf_free(&buf);
}

static void attr__confirm_after(attr_job_t *job)
{
    attr_xconfirm_t *r = (attr_xconfirm_t *)job;
    attr_exposure_store_t *xs = r->xs;
    attr_runs_view_t *v = r->view;
    r->view = NULL;
    r->done(r); /* may free r */
    attr_runs_view_put(xs->runs, v);
}

void attr_exposure_store_confirm_begin(attr_exposure_store_t *xs, attr_xconfirm_t *req)
{
    req->xs = xs;
    if (req->view == NULL) {
        req->view = attr_runs_view(xs->runs);
    }
}

int attr_exposure_store_confirm(attr_exposure_store_t *xs, attr_xconfirm_t *req)
{
    req->xs = xs;
    if (req->view == NULL && (req->view = attr_runs_view(xs->runs)) == NULL) {
        return -ENOMEM;
    }
    req->job.work = attr__confirm_work;
    req->job.after = attr__confirm_after;
    int rc =
        attr_work_submit(xs->lookers[xs->next_looker++ % ATTR_EXPOSURE_STORE_LOOKERS], &req->job);
    if (rc != 0) {
        attr_exposure_store_confirm_cancel(xs, req);
    }
    return rc;
}

void attr_exposure_store_confirm_cancel(attr_exposure_store_t *xs, attr_xconfirm_t *req)
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
        if (YW_VEC_RESERVE(r->blocks, r->cap_blocks, r->n_blocks + 1, 16) != 0 ||
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
            if (YW_VEC_RESERVE(r->blocks, r->cap_blocks, r->n_blocks + 1, 16) != 0) {
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

static int attr__join_emit(void *arg, const attr_xlog_event_t *ev)
{
    attr__jpart_t *r = arg;
    if (YW_VEC_RESERVE(r->cands, r->cap_cands, r->n_cands + 1, 16) != 0) {
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
    attr_xlog_recbuf_t buf;
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
    attr_xlog_recbuf_free(&buf);
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
    attr_exposure_store_t *xs = r->xs;
    if (r->keep_view) {
        r->done(r); /* the caller releases the view (attr_exposure_store_join_release()) */
        return;
    }
    attr_runs_view_t *v = r->view;
    r->view = NULL;
    r->done(r); /* may free r */
    attr_runs_view_put(xs->runs, v);
}

void attr_exposure_store_join_release(attr_exposure_store_t *xs, attr_xjoin_t *req)
{
    attr_runs_view_t *v = req->view;
    req->view = NULL;
    attr_runs_view_put(xs->runs, v);
}

int attr_exposure_store_join(attr_exposure_store_t *xs, attr_xjoin_t *req)
{
    req->xs = xs;
    req->status = 0;
    req->n_parts = req->n >= 2 * ATTR_EXPOSURE_STORE_LOOKERS ? ATTR_EXPOSURE_STORE_LOOKERS : 1;
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

void attr_exposure_store_hold_runs(attr_exposure_store_t *xs, int hold)
{
    attr_runs_hold(xs->runs, hold);
}

/* -- the candidates of stored conversions, at start-up -- */

int attr_exposure_store_find_cands(attr_exposure_store_t *xs, const attr_xjoin_q_t *q,
                                   uint64_t after_seg, uint64_t after_off,
                                   int (*fn)(void *arg, const attr_xlog_event_t *ev), void *arg)
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
