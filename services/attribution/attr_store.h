/*
 * attr_store.h — attribution.db (SQLite via common/store.h): everything but the raw
 * exposures, which live in the exposure log (attr_xlog.h).
 *
 * Schema (version 2):
 *   settings(id = 1, click_window_ns, view_window_ns, half_life_ns, engaged_view_ms,
 *            late_window_ns, default_model, currency, version, update_ns)
 *   conversions(order_id PK, viewer_id, product_id, quantity, amount_minor, currency,
 *               occur_ns, ingest_ns, seq UNIQUE (version 2)) — the source of truth for
 *               conversions: memory holds a cache of them; seq numbers them in the order
 *               they were stored, for the conversion key index (attr_ckey.h)
 *   refunds(refund_id PK, order_id -> conversions, amount_minor, occur_ns, ingest_ns)
 *   conversion_touches(order_id -> conversions, event_id, creator_id, note_id, kind,
 *               watch_ms, occur_ns; PK (order_id, event_id)) — the candidate touches of
 *               each conversion, copied from the exposures, so that refunds and settings
 *               changes can restate a conversion after its exposures were pruned
 *   exposure_rollups(creator_id, day, impressions, views, clicks; PK (creator_id, day))
 *               — the counts of exposure log segments that were pruned
 *   pruned_segments(seq PK, pruned_ns, events) — segments whose counts are in
 *               exposure_rollups (a file still present is deleted, never replayed)
 *
 * Jobs: every struct starts with its yw_store_job_t; fill the inputs, set job.done,
 * yw_store_write(). Inputs are borrowed: the caller keeps them alive and unchanged until
 * `done` runs. Work functions run on the store's writer thread and touch nothing but
 * the job and the connection.
 */
#ifndef ATTR_STORE_H
#define ATTR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/store.h"
#include "services/attribution/attr_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The schema's migrations (ATTR_N_MIGRATIONS of them: a constant for static tables). */
#define ATTR_N_MIGRATIONS 3
extern const yw_migration_t attr_migrations[];
extern const size_t attr_n_migrations;

/* ---- start-up ---- */

/** What attr_store_load() fills in. */
/**
 * How far the stored candidate touches are complete: every conversion with a seq up to
 * `seq` has, stored, every touch of an exposure at or before (seg, off) of the exposure
 * log. Written with the touches (attr_store_put_touches()); a start after a crash looks
 * up again, for those conversions, only the exposures after it. All 0: none.
 */
typedef struct st_attr_touch_mark_t {
    uint64_t seq, seg, off;
} attr_touch_mark_t;

typedef struct st_attr_load_t {
    attr_state_t *st;
    int64_t now_ns;
    int settings_found; /* 0: defaults (not yet stored) */
    uint64_t *pruned;   /* malloc'd, ascending */
    size_t n_pruned;
    uint64_t conversions, rollups;
    uint64_t max_seq; /* the highest conversions.seq (0: none) */
    int skip_rollups; /* in: leave the exposure rollups of pruned segments (a snapshot has them) */
    int want_marks;   /* in: also the sums below (a snapshot's marks, attr_snap.h) */
    attr_sum_t amount_sum, refund_sum; /* exact (SQLite's sum() stops at int64) */
    uint64_t refunds, touches;
    attr_touch_mark_t touch_mark; /* out (attr_store_load()) */
    char err[256];
} attr_load_t;

/**
 * Loads settings, exposure rollups of pruned segments and the pruned segment list, and
 * counts the conversions (st->n_stored_convs). The conversions themselves stay in the
 * database (attr_store_scan_conversions() goes through them). For yw_store_run_sync();
 * `arg` is an attr_load_t.
 */
grpc_status_code attr_store_load(yw_store_conn_t *conn, void *arg);

/**
 * The settings stored in `db` (a plain connection to an attribution.db, as a cluster
 * node's build has): 1 with *out, 0 when none are stored yet (*out: the defaults), or
 * -EIO.
 */
int attr_store_read_settings(sqlite3 *db, attr_settings_t *out);

/**
 * The exposure log segments `db` (as for attr_store_read_settings()) says were pruned,
 * ascending: *seqs (the caller frees it), *n. Returns 0, -ENOMEM or -EIO.
 */
int attr_store_read_pruned(sqlite3 *db, uint64_t **seqs, size_t *n);

/**
 * The marks of a snapshot alone (attr_snap.h): the pruned segments, the conversions'
 * count, highest seq and sum, the refunds' count and sum, the touches' count. `st` is
 * not used. For yw_store_run_sync() or a job; `arg` is an attr_load_t.
 */
grpc_status_code attr_store_marks(yw_store_conn_t *conn, void *arg);

/** The exposure rollups of pruned segments alone (what `skip_rollups` left). */
grpc_status_code attr_store_load_rollups(yw_store_conn_t *conn, void *arg);

/* ---- stored conversions, read back ---- */

/** A candidate touch as stored (strings: see attr_convset_t). */
typedef struct st_attr_stored_touch_t {
    const char *event_id, *creator_id, *note_id;
    size_t creator_len, note_len;
    int kind;
    int64_t watch_ms, occur_ns;
} attr_stored_touch_t;

/** A conversion as stored, with the sum of its refunds and its touches. */
typedef struct st_attr_stored_conv_t {
    attr_conv_in_t in;
    int64_t refunded;
    size_t first_touch, n_touches; /* into the set's touches */
} attr_stored_conv_t;

/**
 * Conversions read back by a job: their strings are copies in the set's arena, valid
 * until attr_convset_free(). Start it zeroed.
 */
typedef struct st_attr_convset_t {
    attr_stored_conv_t *convs;
    size_t n, cap;
    attr_stored_touch_t *touches;
    size_t n_touches, cap_touches;
    yw_arena_t strs; /* the copies of the strings */
} attr_convset_t;

void attr_convset_free(attr_convset_t *set);

/** The touches of set->convs[i]. */
static inline const attr_stored_touch_t *attr_convset_touches(const attr_convset_t *set, size_t i)
{
    return set->touches + set->convs[i].first_touch;
}

/**
 * Reads conversion `order_id` with its touches and refunds into `set`: 1 when found, 0
 * when not, or a negative errno (-ENOMEM, -EIO with SQLite's message in err).
 */
int attr_store_get_conversion(yw_store_conn_t *conn, const char *order_id, size_t len,
                              attr_convset_t *set, char *err, size_t errlen);

/**
 * Reads conversion number `seq` into `set` if it is of this viewer and product, at or
 * after `min_occur_ns`, and not in the set already (the conversion key index points by
 * hash: the strings decide). Returns 1 when added, 0 when not, or a negative errno.
 */
int attr_store_get_conversion_by_seq(yw_store_conn_t *conn, uint64_t seq, const char *viewer,
                                     const char *product, int64_t min_occur_ns, attr_convset_t *set,
                                     char *err, size_t errlen);

/** Whether refund `refund_id` is stored: 1, 0, or a negative errno. */
int attr_store_refund_exists(yw_store_conn_t *conn, const char *refund_id, char *err,
                             size_t errlen);

/**
 * Calls `fn` for every stored conversion in order_id order, with its touches and the
 * sum of its refunds (`set` holds the one conversion and its touches: valid during the
 * call only). Stops at fn's first non-zero return and returns it; else 0, or a negative
 * errno with a message in err.
 */
typedef int (*attr_conv_visit_fn)(void *arg, const attr_convset_t *one);
int attr_store_scan_conversions(yw_store_conn_t *conn, attr_conv_visit_fn fn, void *arg, char *err,
                                size_t errlen);

/* ---- writes ---- */

typedef struct st_attr_conv_row_t {
    const char *order_id, *viewer_id, *product_id;
    int64_t quantity, amount_minor, occur_ns;
    uint64_t seq;
} attr_conv_row_t;

typedef struct st_attr_conv_job_t {
    yw_store_job_t job;
    void *data;
    const attr_conv_row_t *rows;
    size_t n;
    const char *currency;
    int64_t ingest_ns;
    /* out: n entries (the caller's), 1 where the row went in, 0 where its order_id was
     * stored already (a duplicate: nothing changed) */
    uint8_t *inserted;
} attr_conv_job_t;

/** Inserts conversions; an order_id stored already is a duplicate, not an error. */
grpc_status_code attr_store_put_conversions(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_refund_row_t {
    const char *refund_id, *order_id;
    int64_t amount_minor, occur_ns;
} attr_refund_row_t;

typedef struct st_attr_refund_job_t {
    yw_store_job_t job;
    void *data;
    const attr_refund_row_t *rows;
    size_t n;
    int64_t ingest_ns;
} attr_refund_job_t;

/** Inserts refunds (each order must exist: foreign key). */
grpc_status_code attr_store_put_refunds(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_touch_row_t {
    const char *order_id, *event_id, *creator_id, *note_id;
    int kind;
    int64_t watch_ms, occur_ns;
} attr_touch_row_t;

typedef struct st_attr_touch_job_t {
    yw_store_job_t job;
    void *data;
    const attr_touch_row_t *rows;
    size_t n;
    attr_touch_mark_t mark; /* stored with them unless all 0 */
} attr_touch_job_t;

/** Inserts candidate touches (ones already there are kept) and the touch mark. */
grpc_status_code attr_store_put_touches(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_settings_job_t {
    yw_store_job_t job;
    void *data;
    attr_settings_t settings;
} attr_settings_job_t;

/** Stores the settings (the one row). */
grpc_status_code attr_store_put_settings(yw_store_conn_t *conn, yw_store_job_t *job);

typedef struct st_attr_prune_job_t {
    yw_store_job_t job;
    void *data;
    char path[4096]; /* the segment file */
    uint64_t seq;
    int64_t now_ns;
    /* out */
    uint64_t events;
} attr_prune_job_t;

/**
 * Reads segment `path`, adds its exposure counts per (creator, day) to
 * exposure_rollups and records the segment as pruned, in one transaction. The caller
 * deletes the file after `done` reports OK.
 */
grpc_status_code attr_store_prune_segment(yw_store_conn_t *conn, yw_store_job_t *job);

#ifdef __cplusplus
}
#endif
#endif
