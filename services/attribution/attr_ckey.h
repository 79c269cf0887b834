/*
 * attr_ckey.h — the conversion key index: for a (viewer, product) key, the sequence
 * numbers of the stored conversions that have it, so that a late exposure finds the
 * conversions it joins that are no longer in memory (the conversions live in
 * attribution.db, attr_store.h; memory holds a cache of them, attr_state.h).
 *
 * Why not an SQLite index on (viewer_id, product_id): keys arrive in random order, so
 * every insert dirties a page of its own, and a group commit of 1,000 conversions wrote
 * about 4 MB to the WAL and synced it: conversions were 2.5 times slower. Here keys are
 * appended to a run in memory and written as sorted files, the way the exposure index
 * is (the file format of attr_xidx.h, the runs' life of attr_runs.h):
 *
 *   attr_ckey_add() -> the open run (memory: 16 bytes a key and a hash slot)
 *   ATTR_CKEY_RUN keys -> attr_ckey_seal() -> the worker sorts and writes it (attr_xidx_write():
 *     join entries (key hash, seq >> 32, seq & 0xffffffff), written aside, synced,
 *     renamed) -> published: only its fences stay in memory
 *   ATTR_CKEY_FANIN files of one size class in a row -> merged into one
 *   a file whose conversions are all past the join horizon -> deleted
 *
 * A key is only a pointer: the caller reads the conversion by its seq and checks its
 * viewer, product and time (a hash collision costs a read, never a wrong join).
 *
 * Recovery: keys are derived data. A file records (in its meta's end.seq) a `safe` seq:
 * when it was sealed every stored conversion up to it had its key in this file or an
 * earlier one. At start-up the files that are whole and consecutive (by run number) are
 * kept, and attr_ckey_open() says up to which seq they are complete: the caller adds the
 * keys of the stored conversions after it again (a key twice is harmless). A file that
 * is damaged or out of the chain drops it and every later one.
 *
 * Threads: everything here is loop-thread only but the snapshot functions
 * (attr_ckey_snap_find(), attr_ckey_snap_free()), which any thread may call; the worker
 * writes and merges files.
 */
#ifndef ATTR_CKEY_H
#define ATTR_CKEY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "services/attribution/attr_xidx.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Keys per run (the open run costs about 24 bytes a key: 1.5 MiB). */
#define ATTR_CKEY_RUN 65536
/** Files of one size class merged at once. */
#define ATTR_CKEY_FANIN 8

typedef struct st_attr_ckey_t attr_ckey_t;

/**
 * Opens the index in `dir` (which must exist): keeps the files that are whole and
 * consecutive, deletes the others. `*safe_seq` gets the seq up to which the kept files
 * hold every stored conversion's key (0: none; add the keys of every conversion after
 * it). Starts the worker. Blocking (start-up). Returns 0 or a negative errno with a
 * message in `err`.
 */
int attr_ckey_open(uv_loop_t *loop, const char *dir, attr_ckey_t **out, uint64_t *safe_seq,
                   char *err, size_t errlen);

/** Waits for the worker (blocking: shutdown) and frees the index; `closed` runs later. */
void attr_ckey_close(attr_ckey_t *ck, void (*closed)(void *arg), void *arg);

/**
 * Adds the key of a stored conversion (`vp`: attr_vp_hash() of its viewer and product;
 * `occur_ns`: its time, for pruning). Returns 0 or -ENOMEM. When attr_ckey_full() says
 * so, seal the open run.
 */
int attr_ckey_add(attr_ckey_t *ck, uint64_t vp, uint64_t seq, int64_t occur_ns);

/** Whether the open run has ATTR_CKEY_RUN keys (attr_ckey_seal() it). */
int attr_ckey_full(const attr_ckey_t *ck);

/**
 * Seals the open run and queues its file, with `safe_seq`: every stored conversion up to
 * it has its key added by now (the caller knows which are still on their way). Returns
 * 0 or -ENOMEM.
 */
int attr_ckey_seal(attr_ckey_t *ck, uint64_t safe_seq);

/**
 * The seqs of the keys `vp` in memory (the open run and the runs not yet written):
 * calls fn for each. Loop thread.
 */
void attr_ckey_find_mem(const attr_ckey_t *ck, uint64_t vp, void (*fn)(void *arg, uint64_t seq),
                        void *arg);

/** The published files at one moment, referenced (they stay readable until freed). */
typedef struct st_attr_ckey_snap_t {
    attr_xidx_t **files;
    size_t n;
} attr_ckey_snap_t;

/** Takes a snapshot (NULL: no memory). Loop thread. */
attr_ckey_snap_t *attr_ckey_snap(attr_ckey_t *ck);

/**
 * Calls fn for the seq of every key `vp` in the snapshot's files. Returns 0 or a negative
 * errno of the reads. Any thread.
 */
int attr_ckey_snap_find(const attr_ckey_snap_t *snap, uint64_t vp,
                        void (*fn)(void *arg, uint64_t seq), void *arg);

/** Drops a snapshot. Any thread. NULL is ignored. */
void attr_ckey_snap_free(attr_ckey_snap_t *snap);

/**
 * Maintenance: deletes the files whose conversions all happened before `limit_ns` (past
 * the join horizon: no exposure can join them any more) and starts merges.
 */
void attr_ckey_tick(attr_ckey_t *ck, int64_t limit_ns);

/** What the index holds, for logs and metrics. */
typedef struct st_attr_ckey_info_t {
    uint64_t files, file_keys, runs_written, merges, failures;
    size_t mem_bytes; /* the runs in memory and the files' fences */
} attr_ckey_info_t;

void attr_ckey_info(const attr_ckey_t *ck, attr_ckey_info_t *info);

#ifdef __cplusplus
}
#endif
#endif
