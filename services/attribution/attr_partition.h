/*
 * attr_partition.h — a partition's data as a cluster node keeps it: its log in NATS (the
 * truth, attr_cluster.h) and a directory the node's engine for it runs over (a view).
 *
 * What the log holds, per record kind (header Yw-Kind):
 *   "lease"  a lease marker (the fence of a new owner); nothing to apply
 *   "xlog"   bytes of the exposure log, as its ship function got them (attr_xlog.h):
 *            le64 segment | le64 segment creation time (ns) | le64 offset | the bytes
 *   "db"     one transaction of attribution.db: a SQLite changeset (common/store.h)
 * Index files, conversion keys and the snapshot are not in the log: a build writes the
 * index files from the log's exposures (attr_partition_index()), the engine rebuilds
 * the rest from them and the database when it opens the directory.
 *
 * A node that takes a partition materializes the log into a fresh directory
 * (attr_partition_materialize(): the latest snapshot, then the log after it), then opens
 * its engine there with the ship functions below, so that from then on everything the
 * engine makes durable is appended to the log, fenced, before it is acknowledged. The
 * owner publishes a snapshot (attr_partition_snapshot()) once enough log has gathered
 * since the last one, so a build reads a bounded log: the log before a snapshot is purged.
 */
#ifndef ATTR_PARTITION_H
#define ATTR_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_cluster.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of the header of an "xlog" record. */
#define ATTR_PARTITION_XLOG_HDR 24

/** Kept by a partition's engine for its ship functions. */
typedef struct st_attr_partition_ship_t {
    attr_cluster_t *cluster;
    int partition;
    /** Records appended, bytes appended (the ship functions' threads; for metrics). */
    _Atomic uint64_t appends, bytes;
    /**
     * Set by a ship function that failed. What failed to ship was not acknowledged, but
     * part of it may be in the log while the engine dropped it: the engine's view may
     * now differ from the log, so the node must close it and build the partition again
     * from the log (the view is always what the log gives).
     */
    _Atomic int failed;
    /* The exposure log's writer thread's buffer (one writer per engine). */
    unsigned char *buf;
    size_t cap;
} attr_partition_ship_t;

/** Frees what the ship functions kept (once the engine that used them is closed). */
void attr_partition_ship_free(attr_partition_ship_t *ps);

/** What building a partition's directory found. */
typedef struct st_attr_partition_built_t {
    uint64_t covers;     /* the sequence the snapshot it started from covers (0: none) */
    uint64_t snap_bytes; /* that snapshot's bytes */
    int64_t snap_time_ns; /* when it was published (realtime; 0: none) */
    uint64_t last;       /* the last log record applied (covers when none after it) */
    uint64_t records;    /* log records read after the snapshot, and their bytes */
    uint64_t bytes;
} attr_partition_built_t;

/**
 * Builds partition `p`'s directory `dir` (which must not exist; its parent must): the
 * latest snapshot (attr_partition_load_snapshot()), then the log after it, read to its
 * end: the exposure log's segments under dir/exposures, dir/attribution.db migrated and
 * with every shipped transaction applied in order. A snapshot replaced while it is read
 * (-ESTALE) is started again from the newest. Blocks: run it off the loop. Returns 0 with
 * *built, or a negative errno with `err` (the directory is then incomplete: remove it).
 */
int attr_partition_materialize(attr_cluster_t *c, int p, const char *dir,
                               attr_partition_built_t *built, char *err, size_t errlen);

/**
 * Loads partition `p`'s latest snapshot into `dir` (which must exist), if there is one:
 * *covers the log sequence it covers (0 and nothing written when there is none), *bytes
 * its size, *time_ns when it was published. Blocks. Returns 0, -ESTALE when it was replaced while read (start again), or
 * a negative errno with `err`.
 */
int attr_partition_load_snapshot(attr_cluster_t *c, int p, const char *dir, uint64_t *covers,
                                 uint64_t *bytes, int64_t *time_ns, char *err, size_t errlen);

/** What a snapshot made by attr_partition_snapshot() is. */
typedef struct st_attr_partition_snap_t {
    int skipped;          /* nothing in the log since the latest snapshot: none made */
    int purge_failed;     /* published, but what it replaces is not purged yet */
    uint64_t covers;      /* the log record it covers */
    uint64_t bytes;       /* its size */
    uint32_t chunks;      /* in this many chunks */
    uint64_t log_records; /* log records after the previous snapshot it took in */
} attr_partition_snap_t;

/**
 * Makes and publishes a snapshot of partition `p` (attr_cluster.h, "Snapshots"): the
 * latest snapshot and the log after it built into `dir` (a scratch directory, removed
 * before and after) as attr_partition_materialize() does, the pruned exposure segments
 * dropped, the rest packed into chunks, the head published; then the log before the
 * record it covers is purged. Made from the log alone, a snapshot does not depend on
 * which node makes it or on its engine. Blocks: off the loop. Returns 0 with *out, or a
 * negative errno with `err` (-ESTALE: another node's snapshot came first).
 */
int attr_partition_snapshot(attr_cluster_t *c, int p, const char *dir, attr_partition_snap_t *out,
                            char *err, size_t errlen);

/** attr_xlog_ship_fn: appends the bytes as an "xlog" record of the partition. */
int attr_partition_ship_xlog(void *arg, uint64_t seg, int64_t created_ns, uint64_t off,
                             const void *bytes, size_t len);

/** The store's ship function: appends the changeset as a "db" record of the partition. */
int attr_partition_ship_db(void *arg, const void *changeset, size_t len, char *err, size_t errlen);

/**
 * The exposure log segments partition directory `dir`'s database says were pruned (their
 * counts are in the database): *seqs (the caller frees it), *n. Blocks. Returns 0, or a
 * negative errno with `err`.
 */
int attr_partition_pruned(const char *dir, uint64_t **seqs, size_t *n, char *err, size_t errlen);

/**
 * Writes the index files of a materialized partition directory `dir` (the log after the
 * last of them read and indexed: attr_exposure_store_index()), so that the engine opening
 * it on the loop loads them instead of reading the log there. `run_exposures`: the
 * engine's (0: the default). Blocks: off the loop. Returns 0 with *indexed (exposures
 * read from the log), or a negative errno with `err`.
 */
int attr_partition_index(const char *dir, uint32_t run_exposures, uint64_t *indexed, char *err,
                         size_t errlen);

/** Removes `dir` and everything under it (a partition's directory). Returns 0 or -errno. */
int attr_partition_remove_dir(const char *dir);

#ifdef __cplusplus
}
#endif
#endif
