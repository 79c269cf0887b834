/*
 * disk.h — the data directory's free space, one mechanism for every service: a reserve
 * kept for the writes that must finish when the disk fills up (SQLite's WAL checkpoints,
 * the writes in flight, a clean shutdown), and a gate that refuses new writes while space
 * is short and opens again by itself once space is back.
 *
 * The reserve is a file of `reserve_bytes` (at most 1/16 of the file system, decided at
 * open), preallocated with fallocate. The file system is looked at every `check_ms` on
 * the libuv thread pool (statvfs; never on the loop), and at once when a write reports
 * ENOSPC (yw_disk_report_full(), from any thread):
 *
 * - writable -> full: a write failed with ENOSPC, or less than the reserve is free
 *   besides it. The reserve file is deleted: its space is what the writes in flight, the
 *   checkpoints and the shutdown use, never new writes.
 * - full -> writable: at least twice the reserve (and at least 1 MiB) is free, so that
 *   after the reserve is preallocated again the reserve is still free besides it. Freeing
 *   less does not reopen the gate: retries cannot fill the disk up again.
 *
 * While full, yw_disk_writable() is -ENOSPC with a message for callers (services answer
 * RESOURCE_EXHAUSTED), reads go on, health stays SERVING. Gauges: yaowei_disk_full (1
 * while writes are refused), yaowei_disk_free_bytes (free space at the last look).
 */
#ifndef YW_DISK_H
#define YW_DISK_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The reserve when none is configured: 64 MiB (at most 1/16 of the file system). */
#define YW_DISK_RESERVE_DEFAULT (64ull << 20)
/** How often the file system is looked at, when not told otherwise. */
#define YW_DISK_CHECK_MS_DEFAULT 1000

typedef struct st_yw_disk_t yw_disk_t;

typedef struct st_yw_disk_config_t {
    /** The directory whose file system is watched (--data-dir). */
    const char *dir;
    /** The reserve file, in `dir`, e.g. "<dir>/attribution.reserve". */
    const char *reserve_path;
    /** Bytes to keep in reserve; 0: no reserve file (a full disk still closes the gate). */
    uint64_t reserve_bytes;
    /** 0 means YW_DISK_CHECK_MS_DEFAULT. */
    int check_ms;
    /** Optional: registers the gauges there. Must outlive the disk. */
    yw_metrics_t *metrics;
    /**
     * For tests: what the file system has free and its size, in bytes; 0 or a negative
     * errno. NULL: statvfs(dir) (f_bavail and f_blocks times f_frsize). Called on the
     * thread pool, and once in yw_disk_open().
     */
    int (*statfs)(void *arg, const char *dir, uint64_t *avail, uint64_t *size);
    void *statfs_arg;
} yw_disk_config_t;

/**
 * Looks at the file system once (preallocating the reserve, or finding the disk already
 * full) and starts watching it on `loop`. Returns 0, or a negative errno with a message in
 * `err` (the directory cannot be looked at). Loop thread.
 */
int yw_disk_open(uv_loop_t *loop, const yw_disk_config_t *cfg, yw_disk_t **out, char *err,
                 size_t errlen);

/**
 * 0 when writes may go on; -ENOSPC while the disk is full, with a message in `err` that
 * says how much is free and how much lets writes resume. Any thread; NULL is writable.
 */
int yw_disk_writable(const yw_disk_t *d, char *err, size_t errlen);

/**
 * A write failed with ENOSPC (or SQLITE_FULL): refuse writes from now on and look at the
 * file system at once (the reserve is released). Any thread; NULL does nothing.
 */
void yw_disk_report_full(yw_disk_t *d);

/** The reserve in force (after the cap), in bytes. */
uint64_t yw_disk_reserve(const yw_disk_t *d);

/**
 * Gives the reserve up for good, at shutdown: its space is what the last writes (a
 * snapshot, the store's final checkpoint) may use, and a process that is not running
 * keeps no space from others. The gate goes on as before. Loop thread; idempotent; NULL
 * does nothing.
 */
void yw_disk_release(yw_disk_t *d);

/**
 * Stops watching and frees `d` once its handles are closed and a look in flight is done;
 * the loop must keep running until then (it does: the handles keep it alive). Call
 * yw_disk_release() first to delete the reserve (a process killed leaves it, and the next
 * start takes it over). Loop thread; NULL does nothing.
 */
void yw_disk_close(yw_disk_t *d);

#ifdef __cplusplus
}
#endif
#endif
