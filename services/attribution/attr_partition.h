/*
 * attr_partition.h — a partition's data as a cluster node keeps it: its log in NATS (the
 * truth, attr_cluster.h) and a directory the node's engine for it runs over (a view).
 *
 * What the log holds, per record kind (header Yw-Kind):
 *   "lease"  a lease marker (the fence of a new owner); nothing to apply
 *   "xlog"   bytes of the exposure log, as its ship function got them (attr_xlog.h):
 *            le64 segment | le64 segment creation time (ns) | le64 offset | the bytes
 *   "db"     one transaction of attribution.db: a SQLite changeset (common/store.h)
 * Index files, conversion keys and the snapshot are not in the log: the engine rebuilds
 * them from the log's exposures and the database when it opens the directory.
 *
 * A node that takes a partition materializes the log into a fresh directory
 * (attr_partition_materialize()), then opens its engine there with the ship functions
 * below, so that from then on everything the engine makes durable is appended to the
 * log, fenced, before it is acknowledged.
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

/**
 * Builds partition `p`'s directory `dir` (which must not exist; its parent must) from its
 * log, read to its end: the exposure log's segments under dir/exposures, dir/
 * attribution.db migrated and with every shipped transaction applied in order. Blocks:
 * run it off the loop. Returns 0 with the last sequence read in *last, or a negative
 * errno with `err` (the directory is then incomplete: remove it).
 */
int attr_partition_materialize(attr_cluster_t *c, int p, const char *dir, uint64_t *last,
                               uint64_t *records, char *err, size_t errlen);

/** attr_xlog_ship_fn: appends the bytes as an "xlog" record of the partition. */
int attr_partition_ship_xlog(void *arg, uint64_t seg, int64_t created_ns, uint64_t off,
                             const void *bytes, size_t len);

/** The store's ship function: appends the changeset as a "db" record of the partition. */
int attr_partition_ship_db(void *arg, const void *changeset, size_t len, char *err, size_t errlen);

/** Removes `dir` and everything under it (a partition's directory). Returns 0 or -errno. */
int attr_partition_remove_dir(const char *dir);

#ifdef __cplusplus
}
#endif
#endif
