/*
 * attr_exposure_store_int.h — private to the exposure store's three files: its structure and
 * what they share. attr_exposure_store.c: the store, its sealed runs, the log's appends,
 * maintenance and close; attr_exposure_store_lookup.c: lookups in the index files (event ids,
 * candidates) on the lookup threads; attr_exposure_store_open.c: start-up (the files kept, their
 * rollups and ids loaded, the log's tail indexed). Nothing else includes it.
 *
 * Threads: as attr_exposure_store.h; the segment descriptors (`fds`) are shared with the lookup
 * threads under their mutex.
 */
#ifndef ATTR_EXPOSURE_STORE_INT_H
#define ATTR_EXPOSURE_STORE_INT_H

#include <pthread.h>

#include "services/attribution/attr_countdown.h"
#include "services/attribution/attr_runs.h"
#include "services/attribution/attr_exposure_store.h"

/* Segment files, opened once for lookups (any thread). */

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

/* The store. */

typedef struct st_attr__seg_t {
    uint64_t seq;
    uint64_t events;
    int64_t max_arrival_ns;
} attr__seg_t;

struct st_attr_exposure_store_t {
    uv_loop_t *loop;
    attr_state_t *st;
    char dir[4096];
    attr_xlog_t *log;
    attr_runs_t *runs; /* the sealed runs, their index files, merges; views of the files */
    attr_work_t *lookers[ATTR_EXPOSURE_STORE_LOOKERS];
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

    attr_xlog_batch_t *held_head, *held_tail; /* appends held back while builds are behind */

    uint32_t run_exposures; /* seal the open run at this size */
    size_t run_bytes;       /* ... or once its strings and join keys take this many bytes */
    int closing;
    attr_countdown_t parts; /* the log, the lookup threads and the runs, until closed */

    attr_xlog_recbuf_t *startup_buf; /* attr_exposure_store_find_cands()'s */
};

/* ---- attr_exposure_store.c ---- */

/** The store's runs: what a sealed run of exposures is to attr_runs.h. */
extern const attr_runs_ops_t attr_exposure_store__sealed_ops;

/** Segment `seq` in the list (added, in order, if new); NULL: no memory. */
attr__seg_t *attr_exposure_store__seg(attr_exposure_store_t *xs, uint64_t seq);

/** Adds exposures to segment `seq`'s figures. */
void attr_exposure_store__seg_add(attr_exposure_store_t *xs, uint64_t seq, uint64_t events,
                                  int64_t max_arrival);

/** Adds exposures to the open run's share of segment `seq`. 0 or -ENOMEM. */
int attr_exposure_store__run_seg_add(attr_exposure_store_t *xs, uint64_t seq, uint64_t events,
                                     int64_t arrival);

/** Whether the open run is due to be sealed. */
int attr_exposure_store__run_full(const attr_exposure_store_t *xs, const attr_run_t *run);

/**
 * Seals the open run; with `now` (start-up) builds and publishes its file here. 0 or a
 * negative errno with a message in `err` (may be NULL).
 */
int attr_exposure_store__seal_run(attr_exposure_store_t *xs, int now, char *err, size_t errlen);

/** Drops the files whose every entry is in a pruned segment; returns how many. */
size_t attr_exposure_store__drop_pruned_files(attr_exposure_store_t *xs);

/** Frees the store (its runs, log and threads are closed already, or never opened). */
void attr_exposure_store__free(attr_exposure_store_t *xs);

/* ---- attr_exposure_store_lookup.c ---- */

/** Closes segment `seq` once its last reader is done; no new reader gets it. */
void attr_exposure_store__segfd_kill(attr__segfds_t *f, uint64_t seq);

/** Closes every segment descriptor. */
void attr_exposure_store__segfds_free(attr__segfds_t *f);

/**
 * Whether the id (hash `h`) is in one of `files`: 1, 0, or a negative errno (cannot
 * tell). Any thread; `buf` is the caller's.
 */
int attr_exposure_store__find_eid(attr__segfds_t *fds, attr_xidx_t *const *files, size_t n,
                                  uint64_t h, const char *eid, uint32_t len,
                                  attr_xlog_recbuf_t *buf);

#endif
