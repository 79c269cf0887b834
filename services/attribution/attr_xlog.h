/*
 * attr_xlog.h — the exposure log: the durable store of the exposure hot path.
 *
 * Why not SQLite: a random-key B-tree insert per exposure tops out near 12,000 rows/s
 * (measured on this kind of machine); appending to a file with one fdatasync per group
 * does over a million. So exposures are appended to a segmented, append-only binary log; what the
 * service needs to find them again (dedup, join) is an index built beside the log
 * (attr_xidx.h), and the few exposures not yet indexed are in memory (attr_state.h).
 *
 * On disk, under <dir>/ (the service uses --data-dir/exposures):
 *   seg-<seq, 20 digits>.log   a segment: a 32-byte header, then frames.
 *   header: "YWEXPSEG" | u32 version (2) | u32 0 | u64 seq | i64 created_ns
 *   frame:  u32 body_len | u32 crc32c(body) | body
 *   body:   i64 arrival_ns | u32 n_events | records...
 *   record: 0x03 | varint len (of what follows) | u8 kind | varint watch_ms |
 *           zigzag varint occur_ns | str event_id | str viewer | str creator | str note |
 *           varint n | n x str product            (str: varint length, bytes)
 * All integers little-endian. A record is self-contained (its strings inline, its time
 * absolute), so that it can be read alone from its offset (attr_xlog_read_record()):
 * the index points at records, not at frames. Version 1 segments (records with compact
 * ids defined by DEF records earlier in the segment) are still read, and
 * attr_xlog_upgrade() rewrites one as version 2. A new segment starts at every start-up,
 * after a write error, and past ATTR_XLOG_SEGMENT_BYTES.
 *
 * Durability: one writer thread takes every batch queued while it was busy (group
 * commit), writes their frames and calls fdatasync once; a batch's `done` runs on the
 * loop only after that returned 0. A failed write or sync truncates the segment back
 * to its last synced length, fails the batches of the group and starts a new segment.
 *
 * Recovery: attr_xlog_read_segment() replays frames in order and stops at the first one
 * that is incomplete or fails its CRC (a torn tail after a crash); with `repair` it
 * truncates the file there (and syncs), so the tail never comes back.
 *
 * Threads: attr_xlog_append() and the callbacks are loop-thread only. The strings a
 * batch points to must stay unchanged until its `done` has run. The reading functions
 * touch nothing shared: any thread may call them.
 */
#ifndef ATTR_XLOG_H
#define ATTR_XLOG_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "services/attribution/attr_crc32c.h" /* the frames' checksum */

#ifdef __cplusplus
extern "C" {
#endif

/** Segments are closed past this size. */
#define ATTR_XLOG_SEGMENT_BYTES (64u << 20)
/** A frame longer than this is corruption. */
#define ATTR_XLOG_MAX_FRAME (256u << 20)

/** Id spaces of the DEF records of version 1 segments. */
enum {
    ATTR_XLOG_VIEWER = 0,
    ATTR_XLOG_CREATOR = 1,
    ATTR_XLOG_NOTE = 2,
    ATTR_XLOG_PRODUCT = 3,
    ATTR_XLOG_N_SPACES = 4,
};

/** A string to write (`id` is the caller's: the format writes strings inline). */
typedef struct st_attr_xlog_str_t {
    const char *s;
    uint32_t len;
    uint32_t id;
} attr_xlog_str_t;

/** One exposure to append. */
typedef struct st_attr_xlog_exposure_t {
    const char *event_id;
    uint32_t event_id_len;
    uint8_t kind;
    int64_t watch_ms;
    int64_t occur_ns;
    attr_xlog_str_t viewer, creator, note;
    const attr_xlog_str_t *products;
    uint32_t n_products;
} attr_xlog_exposure_t;

typedef struct st_attr_xlog_batch_t attr_xlog_batch_t;

/**
 * A batch: one frame. The caller owns it and everything it points to; `done` runs once
 * on the loop with 0 (durable) or a negative errno (not written; nothing of it will be
 * replayed), after which the caller may free it.
 */
struct st_attr_xlog_batch_t {
    const attr_xlog_exposure_t *events;
    size_t n;
    int64_t arrival_ns;
    void (*done)(attr_xlog_batch_t *batch, int status);
    void *data;
    /* optional: n entries the writer fills with each record's offset in the segment */
    uint32_t *rec_off;
    /* 1: a shipped log's writer woken by this batch may let its group linger (more
     * batches are likely on their way: attr_xlog_set_ship()); 0: it writes at once */
    int linger;
    /* out: the segment the frame went to, where the frame starts and ends in it */
    uint64_t seq;
    uint64_t frame_off, frame_end;
    /* private while queued (the owner may use `next` while it is not) */
    attr_xlog_batch_t *next;
    int status;
};

typedef struct st_attr_xlog_t attr_xlog_t;

/**
 * Creates segment `first_seq` in `dir` (which must exist) and starts the writer thread.
 * Returns 0 or a negative errno with a message in `err`.
 */
int attr_xlog_open(uv_loop_t *loop, const char *dir, uint64_t first_seq, attr_xlog_t **out,
                   char *err, size_t errlen);

/**
 * Shipping (a cluster node's partition: the log's bytes copied to a replicated log
 * before anything is acknowledged). Called on the writer thread with each group's bytes
 * once they are written (a shipped log is not fsynced: the shipped copy is the durable
 * one, the file a view rebuilt from it after a crash), at offset `off` of segment `seg` (created at `created_ns`, as its
 * header says), before any batch of the group is done. Non-zero fails the group as a
 * write error does: the bytes are cut off the segment and a new segment starts; a copy
 * (attr_xlog_place()) of what was shipped is then a log with a torn tail, which the
 * replay cuts off the same way.
 */
typedef int (*attr_xlog_ship_fn)(void *arg, uint64_t seg, int64_t created_ns, uint64_t off,
                                 const void *bytes, size_t len);

/**
 * Sets the ship function; before the first attr_xlog_append() (loop thread). With
 * `linger_ns` > 0 the writer, woken by a batch that allows it (batch->linger), waits
 * that long before it takes the queue: the batches that come meanwhile (other calls'
 * parts of the same partition) go in the same group, so in one shipped message instead
 * of one each. That batch waits `linger_ns` more; under load the groups, and so the
 * messages, grow. (Kafka's producers call it linger.ms.)
 */
void attr_xlog_set_ship(attr_xlog_t *log, attr_xlog_ship_fn fn, void *arg, uint64_t linger_ns);

/** Writing a copy of a log from what its ship function was given, in order. */
typedef struct st_attr_xlog_placer_t {
    char dir[4096];
    int fd;
    uint64_t seg;
    uint64_t size;
} attr_xlog_placer_t;

/** A placer writing into `dir` (which must exist). */
void attr_xlog_placer_init(attr_xlog_placer_t *pl, const char *dir);

/**
 * Writes shipped bytes where they were in the original: segment `seg` (created with its
 * header when missing), offset `off`, which must be where the copy of that segment ends
 * (-EPROTO otherwise: a gap or an overlap). Returns 0 or a negative errno.
 */
int attr_xlog_place(attr_xlog_placer_t *pl, uint64_t seg, int64_t created_ns, uint64_t off,
                    const void *bytes, size_t len);

/** Syncs what was placed (the last segment and the directory). Returns 0 or -errno. */
int attr_xlog_placer_finish(attr_xlog_placer_t *pl);

/** Queues a batch. Returns 0 (done will run) or -ESHUTDOWN after close (it will not). */
int attr_xlog_append(attr_xlog_t *log, attr_xlog_batch_t *batch);

/** The sequence number of the segment being written. */
uint64_t attr_xlog_current_seq(attr_xlog_t *log);

/**
 * Writes what is queued, waits for the writer thread to exit (blocking: for shutdown),
 * runs the `done` callbacks of every batch, closes the file; `closed` runs later on the
 * loop (a uv handle close), when the log is freed.
 */
void attr_xlog_close(attr_xlog_t *log, void (*closed)(void *arg), void *arg);

/* ---- reading ---- */

typedef struct st_attr_str_t {
    const char *s;
    uint32_t len;
} attr_str_t;

/** One exposure read back. Strings point into the reader's buffer: copy them. */
typedef struct st_attr_xlog_event_t {
    attr_str_t event_id, viewer, creator, note;
    const attr_str_t *products;
    uint32_t n_products;
    int kind;
    int64_t watch_ms;
    int64_t occur_ns;
    int64_t arrival_ns; /* 0 from attr_xlog_read_record() (a record alone has none) */
    /* where it is: its record's offset (0 in version 1 segments: not addressable) and
     * the frame holding it */
    uint32_t rec_off;
    uint64_t frame_off, frame_end;
} attr_xlog_event_t;

/** What reading one segment found. */
typedef struct st_attr_xlog_segstat_t {
    uint64_t seq;
    uint64_t frames;
    uint64_t events;
    uint64_t valid_bytes; /* header + good frames */
    uint64_t file_bytes;
    int torn;               /* a bad or incomplete frame followed the good ones */
    int64_t max_arrival_ns; /* INT64_MIN when no frame */
    char torn_reason[128];
} attr_xlog_segstat_t;

/** Returns 0 to go on, anything else to stop reading (returned as is). */
typedef int (*attr_xlog_visit_fn)(void *arg, const attr_xlog_event_t *ev);

/**
 * Reads the segment at `path`, calling `visit` for every exposure of every good frame,
 * in order. Stops at the first bad frame; with `repair`, truncates the file there and
 * syncs it. Returns 0 (also with a torn tail: see st->torn), -EBADMSG when the header is
 * missing or wrong (nothing was visited), a negative errno for an I/O error, or what
 * `visit` returned. `visit` may be NULL (only the stats are wanted).
 */
int attr_xlog_read_segment(const char *path, int repair, attr_xlog_visit_fn visit, void *arg,
                           attr_xlog_segstat_t *st, char *err, size_t errlen);

/**
 * attr_xlog_read_segment() from byte `from` on (a frame boundary past the header, e.g. a
 * frame_end seen before; 0 means the first frame): frames before it are skipped
 * unread, and st->frames/events count only what was read. Version 2 segments only
 * (-EPROTO for version 1: upgrade it first).
 */
int attr_xlog_read_segment_from(const char *path, uint64_t from, int repair,
                                attr_xlog_visit_fn visit, void *arg, attr_xlog_segstat_t *st,
                                char *err, size_t errlen);

/** The version of the segment at `path` (1 or 2), or a negative errno (-EBADMSG). */
int attr_xlog_segment_version(const char *path);

/**
 * Rewrites a version 1 segment as version 2 (same frames, same events, same seq):
 * written aside, synced, renamed over it. Its torn tail, if any, is dropped. Returns 0
 * or a negative errno with a message in `err`.
 */
int attr_xlog_upgrade(const char *path, char *err, size_t errlen);

/** A growable buffer for attr_xlog_read_record(); start zeroed, free `p` when done. */
typedef struct st_attr_xlog_recbuf_t {
    unsigned char *p;
    size_t cap;
    attr_str_t *products;
    size_t products_cap;
} attr_xlog_recbuf_t;

void attr_xlog_recbuf_free(attr_xlog_recbuf_t *b);

/**
 * Reads the record at `off` of the (version 2) segment open as `fd` with pread: `ev`
 * points into `buf` until the next call with it. Returns 0, -EBADMSG when no record
 * starts there, -ENOMEM or a negative errno of pread.
 */
int attr_xlog_read_record(int fd, uint32_t off, attr_xlog_recbuf_t *buf, attr_xlog_event_t *ev);

/** The segment sequence numbers present in `dir`, ascending (malloc'd; free it). */
int attr_xlog_list(const char *dir, uint64_t **seqs, size_t *n);

/** Writes the path of segment `seq` of `dir` into buf. */
void attr_xlog_path(const char *dir, uint64_t seq, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
