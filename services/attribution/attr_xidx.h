/*
 * attr_xidx.h — exposure index files: the join index and the event-id index of the
 * exposure log (attr_xlog.h), on disk, sorted, so that memory does not grow with the
 * exposures kept. One file covers a stretch of the log (the exposures of one or more
 * "runs": see attr_state.h) and holds:
 *
 *   join   (hash of viewer and product, segment, record offset) for every product of
 *          every exposure that could join, sorted by hash: the candidates of a
 *          conversion are one binary search away
 *   dedup  (hash of event id, segment, record offset) for every exposure, sorted by
 *          hash: is an event id stored?
 *   rollups (segment, creator, day, impressions, views, clicks): the reports' counts of
 *          the exposures it covers, so that start-up need not read the log
 *   segs   (segment, exposures, latest arrival): what pruning needs to know
 *
 * Hashes only point at records: the record (attr_xlog_read_record()) is the truth, and
 * every match is checked against it (a hash collision costs a read, never a wrong
 * answer).
 *
 * On disk, <dir>/idx-<first run, 20 digits>-<last run, 20 digits>.xidx:
 *   header (128 bytes): "YWEXPIDX" | u32 version (1) | u32 entries per fence block |
 *     u64 first_run | u64 last_run | u64 start_seq | u64 start_off | u64 end_seq |
 *     u64 end_off | u64 n_join | u64 n_dedup | u64 n_rollups | u64 rollup_bytes |
 *     u64 n_segs | u64 min_seg | u64 max_seg | u32 crc32c(body) | u32 crc32c(header)
 *   body: join entries (16 bytes each: u64 hash | u32 seg | u32 off) | dedup entries |
 *     rollup rows (u64 seg | i32 day | u32 len | i64 impressions | i64 views |
 *     i64 clicks | creator bytes, padded to 8) | seg rows (u64 seg | u64 events |
 *     i64 max_arrival_ns) | join fences | dedup fences (u64: the hash of every
 *     ATTR_XIDX_BLOCK-th entry)
 * Little-endian. A file is written aside, synced and renamed into place, so a file under
 * its name is whole; the CRCs catch the rest. Only the fences stay in memory (8 bytes
 * per 64 entries); lookups read one 1 KiB block per file with pread (the page cache,
 * not this process, holds the bytes). Writes are pushed to the disk as they go
 * (sync_file_range every ATTR_XIDX_SYNC_BYTES), so that a big merge never leaves
 * hundreds of megabytes for one final flush that the log's fdatasync would queue
 * behind.
 *
 * Threads: an open attr_xidx_t is immutable and reference-counted: any thread may look
 * up in it and drop a reference; the last reference closes it.
 */
#ifndef ATTR_XIDX_H
#define ATTR_XIDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Entries per fence block (a 1 KiB read; fences cost 1/8 byte per entry). */
#define ATTR_XIDX_BLOCK 64

/** Written bytes pushed to the disk at a time while writing a file. */
#define ATTR_XIDX_SYNC_BYTES (1u << 20)

enum { ATTR_XIDX_JOIN = 0, ATTR_XIDX_DEDUP = 1 };

/** One entry of the join or the dedup section. */
typedef struct st_attr_xent_t {
    uint64_t h;
    uint32_t seg;
    uint32_t off;
} attr_xent_t;

/** A position in the exposure log: segment and byte offset (a frame boundary). */
typedef struct st_attr_xpos_t {
    uint64_t seq;
    uint64_t off;
} attr_xpos_t;

/** -1, 0, 1 as a is before, at, after b. */
int attr_xpos_cmp(attr_xpos_t a, attr_xpos_t b);

/** One rollup row (the creator points into the reader's buffer or the writer's data). */
typedef struct st_attr_xrollup_t {
    uint64_t seg;
    int32_t day;
    const char *creator;
    uint32_t creator_len;
    int64_t impressions, views, clicks;
} attr_xrollup_t;

/** One segment's share of a file. */
typedef struct st_attr_xseg_t {
    uint64_t seg;
    uint64_t events;
    int64_t max_arrival_ns;
} attr_xseg_t;

typedef struct st_attr_xmeta_t {
    uint64_t first_run, last_run;
    attr_xpos_t start, end; /* the log stretch covered: [start, end) */
    uint64_t n_join, n_dedup, n_rollups, rollup_bytes, n_segs;
    uint64_t min_seg, max_seg; /* of the entries (0, 0 when none) */
} attr_xmeta_t;

typedef struct st_attr_xidx_t attr_xidx_t;

/**
 * Writes a new file for runs meta->first_run..last_run into `dir`: sorts `join` and
 * `dedup` in place (by hash, then segment and offset), writes aside, syncs, renames.
 * meta's counts and min/max_seg are filled from the arrays. The full path goes to
 * `path` (at least 4200 bytes). Returns 0 or a negative errno with a message in `err`.
 */
int attr_xidx_write(const char *dir, attr_xmeta_t *meta, attr_xent_t *join, size_t n_join,
                    attr_xent_t *dedup, size_t n_dedup, const attr_xrollup_t *rollups,
                    size_t n_rollups, const attr_xseg_t *segs, size_t n_segs, char *path,
                    size_t pathlen, char *err, size_t errlen);

/**
 * Merges `n` files covering consecutive stretches of the log (in order) into one:
 * entries of segments below `min_seg` (pruned) are dropped. The inputs are unlinked
 * once the output is in place (they stay readable through open references). `stop`
 * (may be NULL) is read as it goes: non-zero abandons the merge (-ECANCELED; the
 * inputs stay). Returns 0 or a negative errno with a message in `err`.
 */
int attr_xidx_merge(const char *dir, attr_xidx_t *const *in, size_t n, uint64_t min_seg,
                    const _Atomic int *stop, char *path, size_t pathlen, char *err, size_t errlen);

/**
 * Opens a file: reads and checks its header and fences (and, with `verify`, the CRC
 * of the whole body). Returns 0 with one reference in *out, -EBADMSG for a file that
 * is not whole or not an index, or a negative errno; `err` says which.
 */
int attr_xidx_open(const char *path, int verify, attr_xidx_t **out, char *err, size_t errlen);

void attr_xidx_ref(attr_xidx_t *x);
/** Drops a reference; the last one closes the file and frees it. NULL is ignored. */
void attr_xidx_unref(attr_xidx_t *x);

const attr_xmeta_t *attr_xidx_meta(const attr_xidx_t *x);
const char *attr_xidx_path(const attr_xidx_t *x);
/** Bytes of memory it holds (fences and the structure). */
size_t attr_xidx_mem(const attr_xidx_t *x);

/** Per matching entry (or per row); non-zero stops the walk and is returned. */
typedef int (*attr_xidx_entry_fn)(void *arg, const attr_xent_t *e);
typedef int (*attr_xidx_rollup_fn)(void *arg, const attr_xrollup_t *r);
typedef int (*attr_xidx_seg_fn)(void *arg, const attr_xseg_t *s);

/**
 * Calls `fn` for every entry of `section` whose hash is `h`, in (segment, offset)
 * order. Returns 0, what fn returned, or a negative errno of pread (-EBADMSG: the file
 * is not what its fences say).
 */
int attr_xidx_find(const attr_xidx_t *x, int section, uint64_t h, attr_xidx_entry_fn fn, void *arg);

/** Calls `fn` for every entry of `section`, in order (a sequential read). */
int attr_xidx_scan(const attr_xidx_t *x, int section, attr_xidx_entry_fn fn, void *arg);

int attr_xidx_rollups(const attr_xidx_t *x, attr_xidx_rollup_fn fn, void *arg);
int attr_xidx_segs(const attr_xidx_t *x, attr_xidx_seg_fn fn, void *arg);

/**
 * The index files in `dir` (full paths, in order of first run; malloc'd array of
 * malloc'd strings: free both). Leftover "*.tmp" files of interrupted writes are
 * deleted on the way.
 */
int attr_xidx_list(const char *dir, char ***paths, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
