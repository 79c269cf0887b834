/*
 * attr_runs.h — sorted runs: the one mechanism behind both sorted indexes of the
 * service, the exposure index (attr_exposure_store.h) and the conversion key index
 * (attr_ckey.h). The caller collects records in a run in memory and says what a run is
 * (how its file is built, what happens when it is published, how it is freed); this
 * module does the rest:
 *
 *   attr_runs_seal(run) -> the builder thread writes its sorted file (the caller's
 *     `build`: attr_xidx_write(), synced, renamed) -> published: the file joins the
 *     list (ordered by run), the caller's `published` runs, the run is released (the
 *     caller's `release`) once no view taken before the publication is left
 *   a build that fails keeps its run (memory) and is tried again, oldest first, at
 *     attr_runs_tick()
 *   `fanin` files of one size class (how many times `fanin` fits in the runs they
 *     cover) with consecutive runs -> merged into one on a merger thread (with two
 *     lanes, files of class 0 merge on one thread, bigger ones on another: a big merge
 *     never holds up the small ones)
 *   files the caller no longer needs (attr_runs_drop_if()) -> deleted on the builder
 *     thread; lookups that hold them keep reading them
 *   start-up: attr_runs_load() keeps the files the caller's `judge` accepts and deletes
 *     the others, attr_runs_build_now() builds a run in place (no thread yet)
 *
 * A view (attr_runs_view()) is the list of files at one moment, each referenced, for
 * lookups on other threads. With `keep_for_views`, a run published after a view was
 * taken stays in memory until the view is dropped, so that memory and any view
 * together always hold every record.
 *
 * Ownership: a sealed run is the module's until its `release` (or, at close, its
 * `discard`) is called; the files are the module's (one reference each); views hold a
 * reference on each of their files.
 *
 * Threads: every function is loop-thread only; `build` runs on the builder thread (or
 * on the loop in attr_runs_build_now()) and must touch nothing the loop changes
 * meanwhile; every other callback runs on the loop.
 */
#ifndef ATTR_RUNS_H
#define ATTR_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "services/attribution/attr_xidx.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Files merged at once at most (attr_runs_cfg_t.fanin). */
#define ATTR_RUNS_FANIN_MAX 16

/** What the caller's `judge` decides for a file found at start-up. */
typedef enum {
    ATTR_RUNS_KEEP = 0,      /* it joins the list */
    ATTR_RUNS_DROP = 1,      /* it is deleted; the next file is judged */
    ATTR_RUNS_DROP_REST = 2, /* it and every later file are deleted (the chain broke) */
} attr_runs_verdict_t;

/** What a run is: the caller's callbacks. `ctx` is attr_runs_cfg_t.ctx. */
typedef struct st_attr_runs_ops_t {
    /**
     * Builder thread (or the loop at start-up): writes the sorted file of `run` into
     * `dir` and opens it (one reference into *out). 0 or a negative errno with a
     * message in `err`.
     */
    int (*build)(void *ctx, void *run, const char *dir, attr_xidx_t **out, char *err,
                 size_t errlen);
    /**
     * Optional. The file of `run` was published (it is in the list and every new view
     * from now on). A non-zero return keeps the run in memory for good (until close).
     */
    int (*published)(void *ctx, void *run, const attr_xidx_t *x);
    /** Optional. A build failed (logged already); the run is kept and retried. */
    void (*failed)(void *ctx, void *run);
    /** The run may leave memory: its file serves every lookup that could need it. */
    void (*release)(void *ctx, void *run);
    /** At close: a run still held here (not built, or not yet released). */
    void (*discard)(void *ctx, void *run);
    /**
     * Optional. A merge ended: it replaced its inputs with `out`, or failed (NULL). The
     * files may be dropped from here (attr_runs_drop_if()); merges are idle on this lane.
     */
    void (*merged)(void *ctx, const attr_xidx_t *out);
} attr_runs_ops_t;

/** How the runs are kept. Copied by attr_runs_open() (`dir` and `what` too). */
typedef struct st_attr_runs_cfg_t {
    const char *dir;    /* where the files are (must exist) */
    const char *what;   /* for the log lines: "exposure index", "conversion keys" */
    unsigned fanin;     /* files merged at once: 2..ATTR_RUNS_FANIN_MAX */
    int lanes;          /* merger threads: 1 (one merge at a time) or 2 (class 0 / bigger) */
    int keep_for_views; /* non-zero: a published run stays while an older view is left */
    const attr_runs_ops_t *ops;
    void *ctx;
} attr_runs_cfg_t;

typedef struct st_attr_runs_t attr_runs_t;

/** The files at one moment, referenced. Read `files` and `n`; the rest is private. */
typedef struct st_attr_runs_view_t {
    attr_xidx_t **files;
    size_t n;
    /* private */
    uint64_t gen;
    int refs;
    struct st_attr_runs_view_t *prev, *next;
} attr_runs_view_t;

/**
 * Makes the (empty) set of runs; no thread yet (attr_runs_start()), so that start-up
 * can load files and build runs in place first. Returns 0 or -ENOMEM.
 */
int attr_runs_open(const attr_runs_cfg_t *cfg, attr_runs_t **out);

/**
 * Start-up: opens the files in the directory in order of run and asks `judge` about
 * each: `x` is the file (NULL when it cannot be opened: `why` says why), `prev` the
 * last file kept (NULL: none). Deleted files are counted into `*dropped` (may be NULL).
 * Returns 0 or a negative errno (a listing error, -ENOMEM) with a message in `err`.
 */
int attr_runs_load(attr_runs_t *r,
                   attr_runs_verdict_t (*judge)(void *arg, const char *path, const attr_xidx_t *x,
                                                const char *why, const attr_xidx_t *prev),
                   void *arg, uint64_t *dropped, char *err, size_t errlen);

/** Starts the builder and the merger threads. Returns 0 or a negative errno. */
int attr_runs_start(attr_runs_t *r, uv_loop_t *loop);

/**
 * Seals `run`: queues its build (a build that cannot be queued is kept as failed and
 * retried at attr_runs_tick()). Returns 0 (the run is the module's now) or -ENOMEM
 * (it stays the caller's).
 */
int attr_runs_seal(attr_runs_t *r, void *run);

/**
 * Start-up only, before attr_runs_start(): builds the file of `run` here and now, and
 * publishes it. Returns 0 (the run is the module's now) or a negative errno with a
 * message in `err` (it stays the caller's).
 */
int attr_runs_build_now(attr_runs_t *r, void *run, char *err, size_t errlen);

/** Sealed runs whose file is not published yet. */
int attr_runs_unbuilt(const attr_runs_t *r);

/** Whether a build failed and waits for its retry. */
int attr_runs_failing(const attr_runs_t *r);

/** Retries the failed builds (oldest first) and starts merges. */
void attr_runs_tick(attr_runs_t *r);

/** The published files, in order of run (valid until the next change: loop thread). */
attr_xidx_t *const *attr_runs_files(const attr_runs_t *r, size_t *n);

/**
 * Takes a view: the files now, referenced (NULL: no memory). Views taken while the
 * files do not change are shared. Drop it with attr_runs_view_put().
 */
attr_runs_view_t *attr_runs_view(attr_runs_t *r);

/** Drops a view (NULL is ignored); runs no view needs any more are released. */
void attr_runs_view_put(attr_runs_t *r, attr_runs_view_t *v);

/**
 * Keeps published runs in memory (`hold` non-zero) until called again with zero, when
 * the ones no view needs are released.
 */
void attr_runs_hold(attr_runs_t *r, int hold);

/**
 * Merges from now on drop the entries of segments below `seg` (pruned):
 * attr_xidx_merge()'s `min_seg`.
 */
void attr_runs_set_min_seg(attr_runs_t *r, uint64_t seg);

/**
 * Deletes (off the loop) the files `drop` says yes to, not while a merge runs: with
 * `front_only`, only from the front of the list (so that the chain of runs stays whole
 * for the next start), else anywhere. `latest` is the highest max_arrival_ns of the
 * file's seg rows. Returns how many files went.
 */
size_t attr_runs_drop_if(attr_runs_t *r, int front_only,
                         int (*drop)(void *arg, const attr_xidx_t *x, int64_t latest), void *arg);

/** Deletes the file at `path` on the builder thread (before attr_runs_start(): now). */
void attr_runs_unlink(attr_runs_t *r, const char *path);

/** What the runs hold, for logs and metrics. */
typedef struct st_attr_runs_info_t {
    uint64_t files, join_entries, dedup_entries, views, waiting;
    uint64_t built, merges, failures;
    size_t fence_bytes;
} attr_runs_info_t;

/** Fills `info`. */
void attr_runs_info(const attr_runs_t *r, attr_runs_info_t *info);

/**
 * Closes: a merge in progress gives up, the builder finishes the builds queued
 * (blocking: for shutdown), runs still held are discarded, then `closed` runs on the
 * loop and the module is freed. Seal the last run before, if it is to be written.
 * Without threads (attr_runs_start() not called) everything is freed at once and
 * `closed` runs before this returns.
 */
void attr_runs_close(attr_runs_t *r, void (*closed)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
