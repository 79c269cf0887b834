/*
 * attr_exposure_store.h — the exposure store: the exposure log (attr_xlog.h), the index files
 * beside it (attr_xidx.h) and the runs of the state (attr_state.h) that are not yet
 * indexed, kept together so that memory does not grow with the exposures kept.
 *
 *   admit/commit (attr_state.h, by the service) -> the open run (memory, exact)
 *   the run reaches ATTR_EXPOSURE_STORE_RUN exposures, or ATTR_EXPOSURE_STORE_RUN_AGE_MS passes
 *     -> sealed -> the builder thread writes its index file (sorted, synced, renamed)
 *     -> published: the file joins the lookups, its event ids the Bloom filters
 *     -> the run leaves memory once no lookup started before the publication is left
 *   ATTR_EXPOSURE_STORE_FANIN files of the same size class in a row -> merged into one
 *
 * Sealing, building, publishing, merging and the views are the sorted runs of
 * attr_runs.h; this store says what a run of exposures is and how its file is written.
 * Builds, merges and lookups run on threads of their own, so that none waits
 * behind another's long job; when the builder falls behind (ATTR_EXPOSURE_STORE_MAX_UNBUILT
 * sealed runs not indexed yet), appends to the log wait, so that memory stays bounded
 * and the clients' acknowledgements slow down instead. Lookups read the files with
 * pread (the page cache holds the bytes, not this process): attr_exposure_store_confirm() settles
 * event ids the Bloom filters were unsure of, attr_exposure_store_join() finds the candidates of
 * conversions. A lookup sees a "view": the files published when it began; the runs published after
 * stay in memory until it is done, so that memory and the view together always hold
 * every exposure.
 *
 * Start-up (attr_exposure_store_open()) rebuilds the rest: index files that are not whole, or
 * do not continue the previous one, are deleted; the log after the last file is read,
 * committed into runs and indexed; the rollups of the files go into the state, their
 * ids into the Bloom filters. Nothing is replayed that a file covers. The service then
 * looks up the candidates of its stored conversions in the files
 * (attr_exposure_store_find_cands()).
 *
 * Threads: everything here is loop-thread only, but for the work it hands to its two
 * threads. Callbacks run on the loop.
 */
#ifndef ATTR_EXPOSURE_STORE_H
#define ATTR_EXPOSURE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "services/attribution/attr_xlog.h"
#include "services/attribution/attr_runs.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_work.h"
#include "services/attribution/attr_xidx.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Exposures per run by default (the not-yet-indexed exposures in memory: about 2 runs). */
#define ATTR_EXPOSURE_STORE_RUN 65536
/**
 * Bytes of a run's strings and join keys at which it is sealed whatever its count (wide
 * exposures: 100 product ids of 250 bytes are 25 KB each).
 */
#define ATTR_EXPOSURE_STORE_RUN_BYTES ((size_t)16 << 20)
/** An open run older than this is sealed anyway (a quiet service indexes it too). */
#define ATTR_EXPOSURE_STORE_RUN_AGE_MS 10000
/** Files of one size class merged at once. */
#define ATTR_EXPOSURE_STORE_FANIN 8
/** Sealed runs not yet indexed at most: past it, appends wait for the builder. */
#define ATTR_EXPOSURE_STORE_MAX_UNBUILT 2
/** Lookup threads: a batch of conversions is looked up in this many parts at once. */
#define ATTR_EXPOSURE_STORE_LOOKERS 2

typedef struct st_attr_exposure_store_t attr_exposure_store_t;

/** What attr_exposure_store_open() found and did (for the start-up log line). */
typedef struct st_attr_exposure_store_stats_t {
    uint64_t segments, files, files_dropped, indexed_events;
    uint64_t tail_events, tail_duplicates, tail_runs;
    uint64_t conversions_looked_up, candidates_found;
} attr_exposure_store_stats_t;

/**
 * Opens the store in `dir` (which must exist) for the state `st` (settings, conversions
 * and the pruned-segment rollups already loaded; in `defer` mode): see above. Runs are
 * sealed at `run_exposures` exposures (0: ATTR_EXPOSURE_STORE_RUN). `pruned` lists the segments
 * whose counts are in the database (their files are deleted if still there). Starts
 * writing a new segment and the threads. Blocking (start-up). Returns 0 or a negative
 * errno with a message in `err`.
 */
int attr_exposure_store_open(uv_loop_t *loop, const char *dir, uint32_t run_exposures,
                             attr_state_t *st, const uint64_t *pruned, size_t n_pruned,
                             int64_t now_ns, attr_exposure_store_t **out,
                             attr_exposure_store_stats_t *stats, char *err, size_t errlen);

/**
 * Indexes the log in `dir` (the exposure store's directory, not open) as
 * attr_exposure_store_open() would at start-up, and stops there: the log after the last
 * index file is read and its index files written; nothing else stays. An open of the
 * directory then loads those files instead of reading the log (a cluster node builds a
 * partition's index on a thread of the pool, not on the loop). `settings`: those the
 * engine will have (its join horizon says which exposures the files index for joins;
 * NULL: the defaults); `pruned`, `now_ns`: as for the open. Blocking; any thread (no
 * loop, no thread of its own). Returns 0 with *stats, or a negative errno with `err`.
 */
int attr_exposure_store_index(const char *dir, uint32_t run_exposures,
                              const attr_settings_t *settings, const uint64_t *pruned,
                              size_t n_pruned, int64_t now_ns, attr_exposure_store_stats_t *stats,
                              char *err, size_t errlen);

/**
 * Seals runs also once their strings and join keys hold `bytes` (0:
 * ATTR_EXPOSURE_STORE_RUN_BYTES), from the next commit on. Loop thread.
 */
void attr_exposure_store_set_run_bytes(attr_exposure_store_t *xs, size_t bytes);

/**
 * Ships each synced group of the log's bytes through `fn` before any of its batches is
 * done, groups lingering `linger_ns` (attr_xlog_set_ship(): a cluster node's partition).
 * Before the first append; loop thread.
 */
void attr_exposure_store_set_ship(attr_exposure_store_t *xs, attr_xlog_ship_fn fn, void *arg,
                                  uint64_t linger_ns);

/**
 * Syncs and closes everything (blocking: for shutdown): lookups finish, the log writes
 * what is queued (the `done` callbacks run), the open run is indexed, the builder
 * finishes; `closed` runs later on the loop.
 */
void attr_exposure_store_close(attr_exposure_store_t *xs, void (*closed)(void *arg), void *arg);

/* ---- the log ---- */

/**
 * Queues a batch on the log (attr_xlog_append()), or holds it back (in order) while the
 * builder is behind. Returns 0 (its `done` will run) or a negative errno.
 */
int attr_exposure_store_append(attr_exposure_store_t *xs, attr_xlog_batch_t *batch);

/**
 * Tells the store that the exposures of a durable batch were committed into the state
 * (with attr_exposure_commit_at(), at batch->seq and their batch->rec_off): it extends
 * the open run's stretch of the log, and seals and indexes the run when full.
 */
void attr_exposure_store_committed(attr_exposure_store_t *xs, const attr_xlog_batch_t *batch);

/** The segment being written. */
uint64_t attr_exposure_store_current_seq(attr_exposure_store_t *xs);

/* ---- lookups ---- */

/** An event-id check: are these ids (ATTR_UNSURE admissions) in the index files? */
typedef struct st_attr_xconfirm_t {
    attr_job_t job; /* private */
    /* in (the caller's arrays, kept unchanged until `done`) */
    size_t n;
    const attr_pexp_t *const *events;
    /* out */
    uint8_t *dup; /* the caller's, n entries: 1 when found */
    int status;   /* 0, or a negative errno: nothing is known */
    void (*done)(struct st_attr_xconfirm_t *req);
    void *data;
    /* private */
    attr_exposure_store_t *xs;
    attr_runs_view_t *view;
} attr_xconfirm_t;

/**
 * Takes the view of `req` now: call it when the first unsure id of a batch is admitted
 * (the memory checks of that admission and of the later ones, with this view, then
 * cover every stored exposure). Idempotent.
 */
void attr_exposure_store_confirm_begin(attr_exposure_store_t *xs, attr_xconfirm_t *req);

/** Queues the check; `done` runs on the loop. Returns 0 or -ESHUTDOWN (it will not). */
int attr_exposure_store_confirm(attr_exposure_store_t *xs, attr_xconfirm_t *req);

/** Drops the view of a request that will not be submitted. */
void attr_exposure_store_confirm_cancel(attr_exposure_store_t *xs, attr_xconfirm_t *req);

/** One candidate touch found in the index files. Strings are the request's. */
typedef struct st_attr_xcand_t {
    const char *event_id, *creator, *note;
    uint32_t event_id_len, creator_len, note_len;
    int kind;
    int64_t watch_ms, occur_ns;
} attr_xcand_t;

/** What to look up for one conversion (strings kept unchanged until `done`). */
typedef struct st_attr_xjoin_q_t {
    uint64_t vp_hash;
    const char *viewer, *product;
    uint32_t viewer_len, product_len;
    int64_t occur_ns; /* candidates at or before it */
} attr_xjoin_q_t;

typedef struct st_attr__jpart_t attr__jpart_t;

typedef struct st_attr_xjoin_t {
    /* in */
    size_t n;
    const attr_xjoin_q_t *q;
    /* non-zero: the view stays after `done` until attr_exposure_store_join_release(), so that the
     * runs published since it began stay in memory until the caller commits what it
     * looked up (its capture from the runs then covers what the view did not) */
    int keep_view;
    /* out: read the candidates with attr_xjoin_cands() */
    int status;
    void (*done)(struct st_attr_xjoin_t *req);
    void *data;
    /* private */
    attr_exposure_store_t *xs;
    attr_runs_view_t *view;
    attr__jpart_t *parts;
    int n_parts, parts_left;
} attr_xjoin_t;

/**
 * Looks up the candidates of `req->n` conversions in the index files (the runs in
 * memory are the state's to search, at commit), in up to ATTR_EXPOSURE_STORE_LOOKERS parts at
 * once. `done` runs on the loop; then free the results with attr_xjoin_free(). Returns
 * 0, -ENOMEM or -ESHUTDOWN (done will not run).
 */
int attr_exposure_store_join(attr_exposure_store_t *xs, attr_xjoin_t *req);

/** The candidates found for q[i] (`*n` of them; valid until attr_xjoin_free()). */
const attr_xcand_t *attr_xjoin_cands(const attr_xjoin_t *req, size_t i, size_t *n);

/** Frees what a join request's lookup allocated (not the request itself). */
void attr_xjoin_free(attr_xjoin_t *req);

/** Drops the view a `keep_view` request kept (nothing when it kept none). */
void attr_exposure_store_join_release(attr_exposure_store_t *xs, attr_xjoin_t *req);

/**
 * Start-up only (blocking, on the loop thread before serving): calls `fn` for every
 * exposure in the index files that is a candidate of `q` (same viewer and product, at or
 * before it) and comes after (after_seg, after_off) in the log (0, 0: every one; a file
 * whose segments all come before is not read). Strings of `ev` are valid during the
 * call. Returns 0, fn's non-zero return, or a negative errno.
 */
int attr_exposure_store_find_cands(attr_exposure_store_t *xs, const attr_xjoin_q_t *q,
                                   uint64_t after_seg, uint64_t after_off,
                                   int (*fn)(void *arg, const attr_xlog_event_t *ev), void *arg);

/**
 * Keeps published runs in memory (`hold` non-zero) until called again with zero: for a
 * caller that holds commits back (attr_service.c while restating) and must still find,
 * when they commit, what a lookup's view did not cover. Memory stays bounded: runs fill
 * only by commits.
 */
void attr_exposure_store_hold_runs(attr_exposure_store_t *xs, int hold);

/* ---- maintenance ---- */

/** Seals an open run older than ATTR_EXPOSURE_STORE_RUN_AGE_MS; retries failed builds. */
void attr_exposure_store_tick(attr_exposure_store_t *xs, int64_t now_ns);

/**
 * The oldest segment, when every exposure of it arrived before `limit_ns` and it is
 * not the one being written: 1 with its seq and path (4096 bytes), else 0.
 */
int attr_exposure_store_prunable(attr_exposure_store_t *xs, int64_t limit_ns, uint64_t *seq,
                                 char *path);

/**
 * Segment `seq` (the oldest) is pruned (its counts are in the database): deletes it,
 * the index files that only cover pruned segments, and the Bloom filters of those.
 */
void attr_exposure_store_pruned(attr_exposure_store_t *xs, uint64_t seq);

/** What the store holds, for logs and metrics. */
typedef struct st_attr_exposure_store_info_t {
    uint64_t segments, files, file_entries, views, runs_waiting;
    uint64_t runs_built, merges, build_failures;
    size_t fence_bytes, bloom_bytes, run_bytes;
} attr_exposure_store_info_t;

void attr_exposure_store_info(const attr_exposure_store_t *xs, attr_exposure_store_info_t *info);

#ifdef __cplusplus
}
#endif
#endif
