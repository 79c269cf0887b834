/*
 * attr_runs.c — sorted runs: build, publish, merge and drop the sorted files of runs
 * off the loop. See attr_runs.h.
 *
 * Ownership: the module owns its threads, the published files (one reference each, with
 * each file's `latest`), the views (each with a reference on its files), the runs from
 * their seal until their release, and the jobs it queues (freed by their `after`).
 */
#include "services/attribution/attr_runs.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_countdown.h"
#include "services/attribution/attr_work.h"

/** A sealed run on its way to its file: the builder's job. */
typedef struct st_attr__rbuild_t {
    attr_job_t job;
    attr_runs_t *r;
    void *run;
    /* out (builder thread) */
    attr_xidx_t *x;
    int64_t latest;
    int rc;
    char err[512];
    struct st_attr__rbuild_t *next_failed;
} attr__rbuild_t;

/** A published run waiting for the views older than its publication to go. */
typedef struct st_attr__rwait_t {
    void *run;
    uint64_t gen; /* published at */
    int pinned;   /* `published` failed: kept until close */
} attr__rwait_t;

struct st_attr_runs_t {
    attr_runs_cfg_t cfg;
    char dir[4096];
    char what[64];
    attr_work_t *builder, *merger[2];
    int started;

    attr_xidx_t **files; /* published, by first run */
    int64_t *latest;     /* per file: the highest max_arrival_ns of its seg rows */
    size_t n_files, cap_files;
    uint64_t gen; /* bumped at every change of `files` */
    attr_runs_view_t *views, *cur_view;

    attr__rwait_t *waiting;
    size_t n_waiting, cap_waiting;
    attr__rbuild_t *failed; /* builds to retry, the newest first */
    int unbuilt;            /* sealed runs whose file is not published yet */
    int hold;               /* attr_runs_hold() */

    /* merges in progress, per lane, and their inputs */
    attr_xidx_t *in_merge[2][ATTR_RUNS_FANIN_MAX];
    int merging[2];
    _Atomic int stop_merge; /* set at close: a merge in progress gives up */
    uint64_t min_seg;

    uint64_t built, merges, failures;
    int closing;
    attr_countdown_t parts; /* the builder and the mergers, until closed */
};

/** Room for `need` files in both per-file arrays. */
static int attr__files_room(attr_runs_t *r, size_t need)
{
    size_t cap_files = r->cap_files, cap_latest = r->cap_files;
    if (YW_VEC_RESERVE(r->files, cap_files, need, 16) != 0 ||
        YW_VEC_RESERVE(r->latest, cap_latest, need, 16) != 0) {
        return -ENOMEM;
    }
    r->cap_files = cap_files;
    return 0;
}

static int attr__latest_seg(void *arg, const attr_xseg_t *s)
{
    int64_t *latest = arg;
    if (s->max_arrival_ns > *latest) {
        *latest = s->max_arrival_ns;
    }
    return 0;
}

/** A file's latest time (INT64_MAX when it cannot be read: never dropped for its age). */
static int64_t attr__file_latest(const attr_xidx_t *x)
{
    int64_t latest = INT64_MIN;
    return attr_xidx_segs(x, attr__latest_seg, &latest) == 0 ? latest : INT64_MAX;
}

/** Inserts a file in order of first run (start-up may publish out of order). */
static void attr__files_insert(attr_runs_t *r, attr_xidx_t *x, int64_t latest)
{
    size_t at = r->n_files;
    uint64_t first = attr_xidx_meta(x)->first_run;
    while (at > 0 && attr_xidx_meta(r->files[at - 1])->first_run > first) {
        at--;
    }
    memmove(&r->files[at + 1], &r->files[at], (r->n_files - at) * sizeof *r->files);
    memmove(&r->latest[at + 1], &r->latest[at], (r->n_files - at) * sizeof *r->latest);
    r->files[at] = x;
    r->latest[at] = latest;
    r->n_files++;
    r->gen++;
}

/** Removes files [at, at + n) from the list (their references are the caller's). */
static void attr__files_remove(attr_runs_t *r, size_t at, size_t n)
{
    memmove(&r->files[at], &r->files[at + n], (r->n_files - at - n) * sizeof *r->files);
    memmove(&r->latest[at], &r->latest[at + n], (r->n_files - at - n) * sizeof *r->latest);
    r->n_files -= n;
    r->gen++;
}

/* ---- views and the release of runs ---- */

attr_runs_view_t *attr_runs_view(attr_runs_t *r)
{
    if (r->cur_view != NULL && r->cur_view->gen == r->gen) {
        r->cur_view->refs++;
        return r->cur_view;
    }
    attr_runs_view_t *v = calloc(1, sizeof *v);
    if (v == NULL ||
        (v->files = malloc((r->n_files ? r->n_files : 1) * sizeof *v->files)) == NULL) {
        free(v);
        return NULL;
    }
    for (size_t i = 0; i < r->n_files; i++) {
        attr_xidx_ref(r->files[i]);
        v->files[i] = r->files[i];
    }
    v->n = r->n_files;
    v->gen = r->gen;
    v->refs = 1;
    v->next = r->views;
    if (r->views != NULL) {
        r->views->prev = v;
    }
    r->views = v;
    r->cur_view = v;
    return v;
}

/** Releases the published runs no view still needs (every view is as new as they are). */
static void attr__release_runs(attr_runs_t *r)
{
    if (r->hold) {
        return;
    }
    uint64_t min_gen = UINT64_MAX;
    for (const attr_runs_view_t *v = r->views; v != NULL; v = v->next) {
        if (v->gen < min_gen) {
            min_gen = v->gen;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_waiting; i++) {
        if (!r->waiting[i].pinned && r->waiting[i].gen <= min_gen) {
            r->cfg.ops->release(r->cfg.ctx, r->waiting[i].run);
        } else {
            r->waiting[k++] = r->waiting[i];
        }
    }
    r->n_waiting = k;
}

void attr_runs_view_put(attr_runs_t *r, attr_runs_view_t *v)
{
    if (v == NULL || --v->refs > 0) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        attr_xidx_unref(v->files[i]);
    }
    free(v->files);
    if (v->prev != NULL) {
        v->prev->next = v->next;
    } else {
        r->views = v->next;
    }
    if (v->next != NULL) {
        v->next->prev = v->prev;
    }
    if (r->cur_view == v) {
        r->cur_view = NULL;
    }
    free(v);
    attr__release_runs(r);
}

void attr_runs_hold(attr_runs_t *r, int hold)
{
    r->hold = hold;
    if (!hold) {
        attr__release_runs(r);
    }
}

/* ---- building ---- */

static void attr__maybe_merge(attr_runs_t *r);

/** A built run's file joins the list; its run leaves memory when no view needs it. */
static void attr__publish(attr_runs_t *r, void *run, attr_xidx_t *x, int64_t latest)
{
    attr__files_insert(r, x, latest); /* room was made at the seal */
    r->built++;
    int pinned = r->cfg.ops->published != NULL && r->cfg.ops->published(r->cfg.ctx, run, x) != 0;
    if (!r->cfg.keep_for_views && !pinned) {
        r->cfg.ops->release(r->cfg.ctx, run);
        return;
    }
    if (YW_VEC_RESERVE(r->waiting, r->cap_waiting, r->n_waiting + 1, 16) != 0) {
        /* Nowhere to note it: it stays in memory until close, like a pinned one. */
        yw_log(YW_LOG_ERROR, "%s: out of memory noting a published run; it stays in memory",
               r->what);
        r->cfg.ops->discard(r->cfg.ctx, run);
        return;
    }
    r->waiting[r->n_waiting++] = (attr__rwait_t){run, r->gen, pinned};
    attr__release_runs(r);
}

static void attr__build_work(attr_job_t *job)
{
    attr__rbuild_t *b = (attr__rbuild_t *)job;
    b->rc = b->r->cfg.ops->build(b->r->cfg.ctx, b->run, b->r->dir, &b->x, b->err, sizeof b->err);
    if (b->rc == 0) {
        b->latest = attr__file_latest(b->x);
    }
}

static void attr__build_after(attr_job_t *job)
{
    attr__rbuild_t *b = (attr__rbuild_t *)job;
    attr_runs_t *r = b->r;
    if (b->rc == 0) {
        r->unbuilt--;
        attr__publish(r, b->run, b->x, b->latest);
        free(b);
        attr__maybe_merge(r);
        return;
    }
    r->failures++;
    yw_log(YW_LOG_ERROR, "%s: cannot write a run's file (kept in memory, retried): %s", r->what,
           b->err);
    b->next_failed = r->failed;
    r->failed = b;
    if (r->cfg.ops->failed != NULL) {
        r->cfg.ops->failed(r->cfg.ctx, b->run);
    }
}

static int attr__build_submit(attr_runs_t *r, attr__rbuild_t *b)
{
    b->rc = 0;
    b->err[0] = '\0';
    b->x = NULL;
    b->job.work = attr__build_work;
    b->job.after = attr__build_after;
    return r->builder != NULL ? attr_work_submit(r->builder, &b->job) : -ESHUTDOWN;
}

int attr_runs_seal(attr_runs_t *r, void *run)
{
    attr__rbuild_t *b = calloc(1, sizeof *b);
    /* Room for its file now, so that publishing cannot fail. */
    if (b == NULL || attr__files_room(r, r->n_files + (size_t)r->unbuilt + 1) != 0) {
        free(b);
        return -ENOMEM;
    }
    b->r = r;
    b->run = run;
    r->unbuilt++;
    if (attr__build_submit(r, b) != 0) {
        b->rc = -ESHUTDOWN;
        snprintf(b->err, sizeof b->err, "shutting down");
        b->next_failed = r->failed;
        r->failed = b;
    }
    return 0;
}

int attr_runs_build_now(attr_runs_t *r, void *run, char *err, size_t errlen)
{
    attr_xidx_t *x = NULL;
    int rc = attr__files_room(r, r->n_files + (size_t)r->unbuilt + 1);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    rc = r->cfg.ops->build(r->cfg.ctx, run, r->dir, &x, err, errlen);
    if (rc != 0) {
        return rc;
    }
    attr__publish(r, run, x, attr__file_latest(x));
    return 0;
}

int attr_runs_unbuilt(const attr_runs_t *r)
{
    return r->unbuilt;
}

int attr_runs_failing(const attr_runs_t *r)
{
    return r->failed != NULL;
}

/* ---- merging ---- */

typedef struct st_attr__rmerge_t {
    attr_job_t job;
    attr_runs_t *r;
    int lane;
    attr_xidx_t *in[ATTR_RUNS_FANIN_MAX];
    size_t n;
    uint64_t min_seg;
    /* out (merger thread) */
    attr_xidx_t *out;
    int64_t latest;
    int rc;
    char err[512];
} attr__rmerge_t;

static void attr__merge_work(attr_job_t *job)
{
    attr__rmerge_t *m = (attr__rmerge_t *)job;
    char path[4200];
    m->rc = attr_xidx_merge(m->r->dir, m->in, m->n, m->min_seg, &m->r->stop_merge, path,
                            sizeof path, m->err, sizeof m->err);
    if (m->rc == 0) {
        m->rc = attr_xidx_open(path, 0, &m->out, m->err, sizeof m->err);
    }
    if (m->rc == 0) {
        m->latest = attr__file_latest(m->out);
    }
}

static void attr__merge_after(attr_job_t *job)
{
    attr__rmerge_t *m = (attr__rmerge_t *)job;
    attr_runs_t *r = m->r;
    const attr_xidx_t *out = NULL; /* the merged file, once published */
    r->merging[m->lane] = 0;
    memset(r->in_merge[m->lane], 0, sizeof r->in_merge[m->lane]);
    if (m->rc == 0) {
        /* The inputs are consecutive in `files` (nothing else removes files meanwhile). */
        size_t at = 0;
        while (at < r->n_files && r->files[at] != m->in[0]) {
            at++;
        }
        if (at + m->n <= r->n_files) {
            for (size_t i = 0; i < m->n; i++) {
                attr_xidx_unref(r->files[at + i]);
            }
            r->files[at] = m->out;
            r->latest[at] = m->latest;
            attr__files_remove(r, at + 1, m->n - 1);
            r->merges++;
            m->out = NULL;
            out = r->files[at];
        }
    } else if (m->rc != -ECANCELED) {
        yw_log(YW_LOG_WARN, "%s: cannot merge files (will try again later): %s", r->what, m->err);
    }
    attr_xidx_unref(m->out);
    for (size_t i = 0; i < m->n; i++) {
        attr_xidx_unref(m->in[i]);
    }
    free(m);
    if (r->cfg.ops->merged != NULL) {
        r->cfg.ops->merged(r->cfg.ctx, out);
    }
    if (!r->closing) {
        attr__maybe_merge(r);
    }
}

/** How many times `fanin` fits in the runs a file covers. */
static unsigned attr__size_class(const attr_runs_t *r, const attr_xidx_t *x)
{
    uint64_t runs = attr_xidx_meta(x)->last_run - attr_xidx_meta(x)->first_run + 1;
    unsigned c = 0;
    while (runs >= r->cfg.fanin) {
        runs /= r->cfg.fanin;
        c++;
    }
    return c;
}

static int attr__in_merge(const attr_runs_t *r, const attr_xidx_t *x)
{
    for (int l = 0; l < 2; l++) {
        for (unsigned k = 0; k < r->cfg.fanin; k++) {
            if (r->in_merge[l][k] == x) {
                return 1;
            }
        }
    }
    return 0;
}

/**
 * Merges, on each lane that is free, the oldest `fanin` consecutive files of one size
 * class (with two lanes: class 0 on lane 0, bigger ones on lane 1) that no merge holds.
 */
static void attr__maybe_merge(attr_runs_t *r)
{
    if (r->closing || !r->started) {
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < r->n_files; i++) {
        const attr_xidx_t *x = r->files[i];
        int same = len > 0 && attr__size_class(r, x) == attr__size_class(r, r->files[i - 1]) &&
                   attr_xidx_meta(x)->first_run == attr_xidx_meta(r->files[i - 1])->last_run + 1;
        len = attr__in_merge(r, x) ? 0 : same ? len + 1 : 1;
        if (len < r->cfg.fanin) {
            continue;
        }
        int lane = r->cfg.lanes > 1 && attr__size_class(r, x) > 0 ? 1 : 0;
        if (r->merging[lane]) {
            len = 0;
            continue;
        }
        attr__rmerge_t *m = calloc(1, sizeof *m);
        if (m == NULL) {
            return;
        }
        m->r = r;
        m->lane = lane;
        m->n = r->cfg.fanin;
        m->min_seg = r->min_seg;
        for (size_t k = 0; k < m->n; k++) {
            m->in[k] = r->files[i + 1 - m->n + k];
            attr_xidx_ref(m->in[k]);
        }
        m->job.work = attr__merge_work;
        m->job.after = attr__merge_after;
        if (attr_work_submit(r->merger[lane], &m->job) != 0) {
            for (size_t k = 0; k < m->n; k++) {
                attr_xidx_unref(m->in[k]);
            }
            free(m);
            return;
        }
        r->merging[lane] = 1;
        memcpy(r->in_merge[lane], m->in, m->n * sizeof *m->in);
        len = 0;
    }
}

void attr_runs_set_min_seg(attr_runs_t *r, uint64_t seg)
{
    r->min_seg = seg;
}

void attr_runs_tick(attr_runs_t *r)
{
    if (r->closing) {
        return;
    }
    /* The failed builds, oldest first (the list has the newest first: reverse it). */
    attr__rbuild_t *b = r->failed, *rev = NULL;
    r->failed = NULL;
    while (b != NULL) {
        attr__rbuild_t *next = b->next_failed;
        b->next_failed = rev;
        rev = b;
        b = next;
    }
    while (rev != NULL) {
        attr__rbuild_t *next = rev->next_failed;
        if (attr__build_submit(r, rev) != 0) {
            rev->next_failed = r->failed;
            r->failed = rev;
        }
        rev = next;
    }
    attr__maybe_merge(r);
}

/* ---- deleting files off the loop ---- */

typedef struct st_attr__runlink_t {
    attr_job_t job;
    attr_xidx_t *x; /* NULL, or the file's last reference here: dropped after the unlink */
    char path[4200];
    int err;
} attr__runlink_t;

static void attr__unlink_work(attr_job_t *job)
{
    attr__runlink_t *u = (attr__runlink_t *)job;
    u->err = unlink(u->path) != 0 && errno != ENOENT ? errno : 0;
}

static void attr__unlink_after(attr_job_t *job)
{
    attr__runlink_t *u = (attr__runlink_t *)job;
    if (u->err != 0) {
        yw_log(YW_LOG_WARN, "cannot delete %s: %s", u->path, strerror(u->err));
    }
    attr_xidx_unref(u->x);
    free(u);
}

/** Deletes `path` on the builder (now, without one), then drops `x` (may be NULL). */
static void attr__unlink_later(attr_runs_t *r, const char *path, attr_xidx_t *x)
{
    attr__runlink_t *u = r->builder != NULL ? calloc(1, sizeof *u) : NULL;
    if (u != NULL) {
        u->x = x;
        snprintf(u->path, sizeof u->path, "%s", path);
        u->job.work = attr__unlink_work;
        u->job.after = attr__unlink_after;
        if (attr_work_submit(r->builder, &u->job) == 0) {
            return;
        }
        free(u);
    }
    /* Start-up (no thread yet, and blocking is fine), closing, or no memory. */
    if (unlink(path) != 0 && errno != ENOENT) {
        yw_log(YW_LOG_WARN, "cannot delete %s: %s", path, strerror(errno));
    }
    attr_xidx_unref(x);
}

void attr_runs_unlink(attr_runs_t *r, const char *path)
{
    attr__unlink_later(r, path, NULL);
}

size_t attr_runs_drop_if(attr_runs_t *r, int front_only,
                         int (*drop)(void *arg, const attr_xidx_t *x, int64_t latest), void *arg)
{
    if (r->merging[0] || r->merging[1]) {
        return 0;
    }
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < r->n_files; i++) {
        attr_xidx_t *x = r->files[i];
        if ((!front_only || k == 0) && drop(arg, x, r->latest[i])) {
            attr__unlink_later(r, attr_xidx_path(x), x);
            dropped++;
        } else {
            r->files[k] = x;
            r->latest[k] = r->latest[i];
            k++;
            if (front_only) {
                /* The rest stays as it is. */
                memmove(&r->files[k], &r->files[i + 1], (r->n_files - i - 1) * sizeof *r->files);
                memmove(&r->latest[k], &r->latest[i + 1], (r->n_files - i - 1) * sizeof *r->latest);
                k += r->n_files - i - 1;
                break;
            }
        }
    }
    if (dropped > 0) {
        r->n_files = k;
        r->gen++;
    }
    return dropped;
}

/* ---- start-up ---- */

int attr_runs_open(const attr_runs_cfg_t *cfg, attr_runs_t **out)
{
    *out = NULL;
    attr_runs_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->cfg = *cfg;
    snprintf(r->dir, sizeof r->dir, "%s", cfg->dir);
    snprintf(r->what, sizeof r->what, "%s", cfg->what);
    r->cfg.dir = r->dir;
    r->cfg.what = r->what;
    if (r->cfg.fanin < 2 || r->cfg.fanin > ATTR_RUNS_FANIN_MAX) {
        r->cfg.fanin = ATTR_RUNS_FANIN_MAX;
    }
    *out = r;
    return 0;
}

int attr_runs_load(attr_runs_t *r,
                   attr_runs_verdict_t (*judge)(void *arg, const char *path, const attr_xidx_t *x,
                                                const char *why, const attr_xidx_t *prev),
                   void *arg, uint64_t *dropped, char *err, size_t errlen)
{
    char **paths = NULL;
    size_t n = 0;
    int rc = attr_xidx_list(r->dir, &paths, &n);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot list the %s files: %s", r->dir, r->what, strerror(-rc));
        return rc;
    }
    int broken = 0;
    for (size_t i = 0; i < n; i++) {
        if (broken) {
            yw_log(YW_LOG_WARN, "%s %s: after a gap; deleting it", r->what, paths[i]);
        } else {
            attr_xidx_t *x = NULL;
            char xerr[512] = "";
            int orc = attr_xidx_open(paths[i], 1, &x, xerr, sizeof xerr);
            if (orc == -ENOMEM || (orc == 0 && attr__files_room(r, r->n_files + 1) != 0)) {
                attr_xidx_unref(x);
                rc = -ENOMEM;
                snprintf(err, errlen, "%s", orc == -ENOMEM ? xerr : "out of memory");
                break;
            }
            const attr_xidx_t *prev = r->n_files > 0 ? r->files[r->n_files - 1] : NULL;
            attr_runs_verdict_t v = judge(arg, paths[i], x, xerr, prev);
            if (v == ATTR_RUNS_KEEP && x != NULL) {
                r->files[r->n_files] = x;
                r->latest[r->n_files] = attr__file_latest(x);
                r->n_files++;
                r->gen++;
                continue;
            }
            attr_xidx_unref(x);
            broken = v == ATTR_RUNS_DROP_REST;
        }
        if (dropped != NULL) {
            (*dropped)++;
        }
        (void)unlink(paths[i]);
    }
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    return rc;
}

int attr_runs_start(attr_runs_t *r, uv_loop_t *loop)
{
    int rc = attr_work_open(loop, &r->builder);
    if (rc == 0) {
        attr_countdown_add(&r->parts);
    }
    for (int l = 0; l < r->cfg.lanes && l < 2 && rc == 0; l++) {
        if ((rc = attr_work_open(loop, &r->merger[l])) == 0) {
            attr_countdown_add(&r->parts);
        }
    }
    r->started = rc == 0;
    return rc;
}

/* ---- what there is ---- */

attr_xidx_t *const *attr_runs_files(const attr_runs_t *r, size_t *n)
{
    *n = r->n_files;
    return r->files;
}

void attr_runs_info(const attr_runs_t *r, attr_runs_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->files = r->n_files;
    for (size_t i = 0; i < r->n_files; i++) {
        const attr_xmeta_t *m = attr_xidx_meta(r->files[i]);
        info->join_entries += m->n_join;
        info->dedup_entries += m->n_dedup;
        info->fence_bytes += attr_xidx_mem(r->files[i]);
    }
    for (const attr_runs_view_t *v = r->views; v != NULL; v = v->next) {
        info->views++;
    }
    info->waiting = r->n_waiting;
    info->built = r->built;
    info->merges = r->merges;
    info->failures = r->failures;
}

/* ---- close ---- */

/** Frees the runs module once its threads have closed (attr_countdown_t.free_module). */
static void attr__runs_free(void *arg)
{
    attr_runs_t *r = arg;
    for (size_t i = 0; i < r->n_files; i++) {
        attr_xidx_unref(r->files[i]);
    }
    free(r->files);
    free(r->latest);
    for (size_t i = 0; i < r->n_waiting; i++) {
        r->cfg.ops->discard(r->cfg.ctx, r->waiting[i].run);
    }
    free(r->waiting);
    while (r->failed != NULL) {
        attr__rbuild_t *b = r->failed;
        r->failed = b->next_failed;
        r->cfg.ops->discard(r->cfg.ctx, b->run);
        free(b);
    }
    free(r);
}

void attr_runs_close(attr_runs_t *r, void (*closed)(void *arg), void *arg)
{
    r->closing = 1;
    attr_countdown_start(&r->parts, attr__runs_free, r, closed, arg);
    atomic_store(&r->stop_merge, 1);
    for (int l = 0; l < 2; l++) {
        if (r->merger[l] != NULL) {
            attr_work_close(r->merger[l], attr_countdown_part_closed, &r->parts);
        }
    }
    if (r->builder != NULL) {
        attr_work_close(r->builder, attr_countdown_part_closed, &r->parts);
    }
    attr_countdown_part_closed(&r->parts);
}
