/*
 * attr_exposure_store.c — the exposure store: the log's appends (held back while the builder is
 * behind), the open run's stretch of the log, sealed runs and their index files (for
 * attr_runs.h), maintenance and close. See attr_exposure_store.h for the life of an exposure
 * through it; lookups are in attr_exposure_store_lookup.c, start-up in attr_exposure_store_open.c.
 *
 * Ownership: the store owns the log, its lookup workers, its attr_runs_t (which owns the
 * published files, the views and the sealed runs' wrappers) and the jobs it queues
 * (freed by their `after`). Runs belong to the state; the store decides when a sealed
 * one is released. Requests (confirm, join) are the caller's.
 */
#include "services/attribution/attr_exposure_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_exposure_store_int.h"

static int64_t attr__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

attr__seg_t *attr_exposure_store__seg(attr_exposure_store_t *xs, uint64_t seq)
{
    for (size_t i = xs->n_segs; i-- > 0;) {
        if (xs->segs[i].seq == seq) {
            return &xs->segs[i];
        }
        if (xs->segs[i].seq < seq) {
            break;
        }
    }
    if (YW_VEC_RESERVE(xs->segs, xs->cap_segs, xs->n_segs + 1, 16) != 0) {
        return NULL;
    }
    /* Keep them sorted (new ones come last, but start-up adds in any order). */
    size_t at = xs->n_segs;
    while (at > 0 && xs->segs[at - 1].seq > seq) {
        at--;
    }
    memmove(&xs->segs[at + 1], &xs->segs[at], (xs->n_segs - at) * sizeof *xs->segs);
    xs->segs[at] = (attr__seg_t){seq, 0, INT64_MIN};
    xs->n_segs++;
    return &xs->segs[at];
}

void attr_exposure_store__seg_add(attr_exposure_store_t *xs, uint64_t seq, uint64_t events,
                                  int64_t max_arrival)
{
    attr__seg_t *s = attr_exposure_store__seg(xs, seq);
    if (s != NULL) {
        s->events += events;
        if (max_arrival > s->max_arrival_ns) {
            s->max_arrival_ns = max_arrival;
        }
    }
}

int attr_exposure_store__run_seg_add(attr_exposure_store_t *xs, uint64_t seq, uint64_t events,
                                     int64_t arrival)
{
    if (xs->n_run_segs > 0 && xs->run_segs[xs->n_run_segs - 1].seg == seq) {
        attr_xseg_t *s = &xs->run_segs[xs->n_run_segs - 1];
        s->events += events;
        if (arrival > s->max_arrival_ns) {
            s->max_arrival_ns = arrival;
        }
        return 0;
    }
    if (YW_VEC_RESERVE(xs->run_segs, xs->cap_run_segs, xs->n_run_segs + 1, 16) != 0) {
        return -ENOMEM;
    }
    xs->run_segs[xs->n_run_segs++] = (attr_xseg_t){seq, events, arrival};
    return 0;
}

/* ---- a sealed run and its index file (attr_runs.h does the rest) ---- */

/** A sealed run of the state on its way to its index file. */
typedef struct st_attr__sealed_t {
    attr_exposure_store_t *xs;
    attr_run_t *run; /* the state's */
    attr_xmeta_t meta;
    attr_xseg_t *segs;
    size_t n_segs;
    /* out of the build: the sorted event-id hashes, for the Bloom filters */
    uint64_t *hashes;
    size_t n_hashes;
} attr__sealed_t;

/** Rollup rows of a run, one per (segment, creator, day) (malloc'd array in *out; the
 *  creators point at interned strings). A hash table, not a sort: it runs per run. */
static int attr__run_rollups(const attr_run_t *run, attr_xrollup_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t cap = 64;
    while (cap < 2 * (size_t)run->n) {
        cap *= 2;
    }
    uint32_t *slots = calloc(cap, sizeof *slots);
    attr_xrollup_t *rows = malloc((run->n ? run->n : 1) * sizeof *rows);
    if (slots == NULL || rows == NULL) {
        free(slots);
        free(rows);
        return -ENOMEM;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        const attr_rexp_t *r = &run->recs[i];
        int32_t day = attr_day_of(r->occur_ns);
        uint64_t h = yw_hash_u64((uint64_t)(uintptr_t)r->creator * UINT64_C(0x9E3779B97F4A7C15) ^
                                 ((uint64_t)r->seg << 32) ^ (uint32_t)day);
        size_t j = h & (cap - 1);
        attr_xrollup_t *row = NULL;
        for (; slots[j] != 0; j = (j + 1) & (cap - 1)) {
            attr_xrollup_t *x = &rows[slots[j] - 1];
            if (x->creator == r->creator && x->seg == r->seg && x->day == day) {
                row = x;
                break;
            }
        }
        if (row == NULL) {
            row = &rows[n];
            *row = (attr_xrollup_t){.seg = r->seg,
                                    .day = day,
                                    .creator = r->creator,
                                    .creator_len = attr_intern_len(r->creator)};
            slots[j] = (uint32_t)++n;
        }
        row->impressions += r->kind == ATTR_KIND_IMPRESSION;
        row->views += r->kind == ATTR_KIND_VIEW;
        row->clicks += r->kind == ATTR_KIND_CLICK;
    }
    free(slots);
    *out = rows;
    *n_out = n;
    return 0;
}

/**
 * attr_runs_ops_t.build: writes and opens the index file of a sealed run; its sorted id
 * hashes go to b->hashes.
 */
static int attr__build_file(void *ctx, void *sealed, const char *dir, attr_xidx_t **out, char *err,
                            size_t errlen)
{
    (void)ctx;
    attr__sealed_t *b = sealed;
    const attr_run_t *run = b->run;
    size_t nj = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        if (run->recs[i].joinable) {
            nj += run->recs[i].n_products;
        }
    }
    attr_xent_t *join = malloc((nj ? nj : 1) * sizeof *join);
    attr_xent_t *dedup = malloc((run->n ? run->n : 1) * sizeof *dedup);
    attr_xrollup_t *rows = NULL;
    size_t n_rows = 0;
    int rc = join != NULL && dedup != NULL ? attr__run_rollups(run, &rows, &n_rows) : -ENOMEM;
    if (rc != 0) {
        snprintf(err, errlen, "run %llu: out of memory", (unsigned long long)run->id);
        free(join);
        free(dedup);
        return rc;
    }
    size_t j = 0;
    for (uint32_t i = 0; i < run->n; i++) {
        attr_run_rec_t rec;
        attr_run_rec(run, i, &rec);
        dedup[i] = (attr_xent_t){rec.eid_hash, rec.seg, rec.off};
        if (!rec.joinable) {
            continue;
        }
        uint64_t hv = yw_hash_bytes(rec.viewer, rec.viewer_len);
        const char *at = rec.products;
        for (uint16_t k = 0; k < rec.n_products; k++) {
            uint32_t plen;
            const char *p = attr_run_next_product(&at, &plen);
            join[j++] = (attr_xent_t){attr_vp_hash(hv, yw_hash_bytes(p, plen)), rec.seg, rec.off};
        }
    }
    char path[4200];
    rc = attr_xidx_write(dir, &b->meta, join, nj, dedup, run->n, rows, n_rows, b->segs, b->n_segs,
                         path, sizeof path, err, errlen);
    free(join);
    free(rows);
    if (rc == 0) {
        rc = attr_xidx_open(path, 0, out, err, errlen);
    }
    if (rc == 0) {
        /* The dedup entries are sorted now: their hashes load the Bloom filter fastest. */
        uint64_t *h = (uint64_t *)dedup; /* reuse the memory: 8 of every 16 bytes */
        for (uint32_t i = 0; i < run->n; i++) {
            h[i] = dedup[i].h;
        }
        b->hashes = h;
        b->n_hashes = run->n;
        return 0;
    }
    free(dedup);
    char what[600];
    snprintf(what, sizeof what, "index of run %llu (%u exposures): %s", (unsigned long long)run->id,
             run->n, err);
    snprintf(err, errlen, "%s", what);
    return rc;
}

static void attr__sealed_free(attr__sealed_t *b)
{
    free(b->segs);
    free(b->hashes);
    free(b);
}

static void attr__release_held(attr_exposure_store_t *xs);

/** attr_runs_ops_t.published: the run's ids go into the Bloom filters. */
static int attr__sealed_published(void *ctx, void *sealed, const attr_xidx_t *x)
{
    (void)x;
    attr_exposure_store_t *xs = ctx;
    attr__sealed_t *b = sealed;
    int rc = attr_state_index_add(xs->st, b->hashes, b->n_hashes, b->meta.max_seg);
    free(b->hashes);
    b->hashes = NULL;
    if (rc != 0) {
        yw_log(YW_LOG_ERROR,
               "index of run %llu: out of memory loading its ids; the run stays "
               "in memory",
               (unsigned long long)b->run->id);
    }
    attr__release_held(xs);
    return rc;
}

/**
 * attr_runs_ops_t.failed: do not hold appends back for a build that may keep failing
 * (memory grows instead, and the errors say why).
 */
static void attr__sealed_failed(void *ctx, void *sealed)
{
    (void)sealed;
    attr__release_held(ctx);
}

/** attr_runs_ops_t.release: the run leaves memory (the state's). */
static void attr__sealed_release(void *ctx, void *sealed)
{
    attr_exposure_store_t *xs = ctx;
    attr__sealed_t *b = sealed;
    attr_state_release_run(xs->st, b->run);
    attr__sealed_free(b);
}

/** attr_runs_ops_t.discard: at close; the run stays the state's, freed with it. */
static void attr__sealed_discard(void *ctx, void *sealed)
{
    (void)ctx;
    attr__sealed_free(sealed);
}

/** The log line of a merge. */
static void attr__log_merged(attr_exposure_store_t *xs, const attr_xidx_t *out)
{
    const attr_xmeta_t *mm = attr_xidx_meta(out);
    attr_exposure_store_info_t info;
    attr_exposure_store_info(xs, &info);
    yw_log(YW_LOG_INFO,
           "merged the index files of runs %llu-%llu (%llu exposures); now %llu files "
           "of %llu exposures, memory: fences %zu KiB, Bloom filters %zu KiB, %zu "
           "runs not yet released %zu KiB",
           (unsigned long long)mm->first_run, (unsigned long long)mm->last_run,
           (unsigned long long)mm->n_dedup, (unsigned long long)info.files,
           (unsigned long long)info.file_entries, info.fence_bytes >> 10, info.bloom_bytes >> 10,
           xs->st->n_runs, info.run_bytes >> 10);
}

size_t attr_exposure_store__drop_pruned_files(attr_exposure_store_t *xs);

/**
 * attr_runs_ops_t.merged: a line on what the store holds now; the files pruned during
 * the merge go.
 */
static void attr__files_merged(void *ctx, const attr_xidx_t *out)
{
    attr_exposure_store_t *xs = ctx;
    if (out != NULL) {
        attr__log_merged(xs, out);
    }
    (void)attr_exposure_store__drop_pruned_files(xs);
}

const attr_runs_ops_t attr_exposure_store__sealed_ops = {
    .build = attr__build_file,
    .published = attr__sealed_published,
    .failed = attr__sealed_failed,
    .release = attr__sealed_release,
    .discard = attr__sealed_discard,
    .merged = attr__files_merged,
};

/**
 * Seals the open run: a sealed run with the open run's stretch of the log, which starts
 * anew. With `now` (start-up: nobody else is looking) its file is built and published
 * here; else it is queued for the builder. Returns 0 or a negative errno with a message
 * in `err` (may be NULL).
 */
int attr_exposure_store__seal_run(attr_exposure_store_t *xs, int now, char *err, size_t errlen)
{
    attr_run_t *run = attr_state_seal_run(xs->st);
    if (run == NULL) {
        return 0;
    }
    attr__sealed_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        yw_log(YW_LOG_ERROR, "out of memory sealing run %llu: it stays in memory",
               (unsigned long long)run->id);
        if (err != NULL) {
            snprintf(err, errlen, "out of memory");
        }
        return -ENOMEM;
    }
    b->xs = xs;
    b->run = run;
    b->meta.first_run = b->meta.last_run = run->id;
    b->meta.start = xs->run_start;
    b->meta.end = xs->log_end;
    b->segs = xs->run_segs;
    b->n_segs = xs->n_run_segs;
    char berr[512] = "";
    int rc =
        now ? attr_runs_build_now(xs->runs, b, berr, sizeof berr) : attr_runs_seal(xs->runs, b);
    if (rc != 0) {
        if (now) {
            snprintf(err, errlen, "indexing the log's tail: %s", berr);
        } else {
            yw_log(YW_LOG_ERROR, "out of memory sealing run %llu: it stays in memory",
                   (unsigned long long)run->id);
        }
        free(b->hashes);
        free(b);
        return rc;
    }
    xs->run_segs = NULL;
    xs->n_run_segs = xs->cap_run_segs = 0;
    xs->run_start = xs->log_end;
    xs->run_first_ns = 0;
    return 0;
}

static void attr__seal(attr_exposure_store_t *xs)
{
    (void)attr_exposure_store__seal_run(xs, 0, NULL, 0);
}

/** attr_runs_drop_if(): a file whose every entry is in a pruned segment. */
static int attr__file_pruned(void *arg, const attr_xidx_t *x, int64_t latest)
{
    (void)latest;
    const attr_exposure_store_t *xs = arg;
    const attr_xmeta_t *m = attr_xidx_meta(x);
    return m->max_seg < xs->first_live_seg && m->end.seq < xs->first_live_seg;
}

/** Drops the files whose every entry is in a pruned segment (not during a merge). */
size_t attr_exposure_store__drop_pruned_files(attr_exposure_store_t *xs)
{
    return attr_runs_drop_if(xs->runs, 0, attr__file_pruned, xs);
}

/* ---- the log ---- */

/**
 * Whether the open run is due to be sealed: at run_exposures exposures, or once what
 * grows with the exposures' sizes (their strings, their products' join keys) reaches
 * run_bytes, so that wide exposures do not make a run hundreds of MB.
 */
int attr_exposure_store__run_full(const attr_exposure_store_t *xs, const attr_run_t *run)
{
    return run != NULL &&
           (run->n >= xs->run_exposures ||
            run->arena_len + run->join_n * sizeof *run->join_slots * 2 >= xs->run_bytes);
}

void attr_exposure_store_set_run_bytes(attr_exposure_store_t *xs, size_t bytes)
{
    xs->run_bytes = bytes > 0 ? bytes : ATTR_EXPOSURE_STORE_RUN_BYTES;
}

void attr_exposure_store_set_ship(attr_exposure_store_t *xs, attr_xlog_ship_fn fn, void *arg,
                                  uint64_t linger_ns)
{
    attr_xlog_set_ship(xs->log, fn, arg, linger_ns);
}

/**
 * Whether appends wait: when ATTR_EXPOSURE_STORE_MAX_UNBUILT sealed runs are not indexed yet
 * (the builder is behind), the log takes nothing new until one is, so that memory stays
 * bounded and the clients' acknowledgements slow down instead. Not while builds fail.
 */
static int attr__must_hold(const attr_exposure_store_t *xs)
{
    return attr_runs_unbuilt(xs->runs) >= ATTR_EXPOSURE_STORE_MAX_UNBUILT &&
           !attr_runs_failing(xs->runs) && !xs->closing;
}

static void attr__release_held(attr_exposure_store_t *xs)
{
    while (xs->held_head != NULL && !attr__must_hold(xs)) {
        attr_xlog_batch_t *b = xs->held_head;
        xs->held_head = b->next;
        if (xs->held_head == NULL) {
            xs->held_tail = NULL;
        }
        int rc = attr_xlog_append(xs->log, b);
        if (rc != 0) {
            b->done(b, rc); /* the log is closed: the batch fails like any other */
        }
    }
}

int attr_exposure_store_append(attr_exposure_store_t *xs, attr_xlog_batch_t *batch)
{
    if (xs->held_head == NULL && !attr__must_hold(xs)) {
        return attr_xlog_append(xs->log, batch);
    }
    /* Behind the ones already held: the log keeps the order of appends. */
    batch->next = NULL;
    if (xs->held_tail != NULL) {
        xs->held_tail->next = batch;
    } else {
        xs->held_head = batch;
    }
    xs->held_tail = batch;
    return 0;
}

uint64_t attr_exposure_store_current_seq(attr_exposure_store_t *xs)
{
    return attr_xlog_current_seq(xs->log);
}

void attr_exposure_store_committed(attr_exposure_store_t *xs, const attr_xlog_batch_t *batch)
{
    xs->log_end = (attr_xpos_t){batch->seq, batch->frame_end};
    attr_exposure_store__seg_add(xs, batch->seq, batch->n, batch->arrival_ns);
    if (attr_exposure_store__run_seg_add(xs, batch->seq, batch->n, batch->arrival_ns) != 0) {
        yw_log(YW_LOG_ERROR, "out of memory tracking the open run's segments");
    }
    if (xs->run_first_ns == 0) {
        xs->run_first_ns = attr__now_ns();
    }
    attr_run_t *run = attr_state_open_run(xs->st);
    if (attr_exposure_store__run_full(xs, run)) {
        attr__seal(xs);
    }
}

/* ---- maintenance ---- */

void attr_exposure_store_tick(attr_exposure_store_t *xs, int64_t now_ns)
{
    if (xs->closing) {
        return;
    }
    if (xs->run_first_ns != 0 &&
        now_ns - xs->run_first_ns >= ATTR_EXPOSURE_STORE_RUN_AGE_MS * 1000000LL) {
        attr__seal(xs);
    }
    attr_runs_tick(xs->runs); /* failed builds again, merges */
}

int attr_exposure_store_prunable(attr_exposure_store_t *xs, int64_t limit_ns, uint64_t *seq,
                                 char *path)
{
    if (xs->n_segs < 2 || xs->segs[0].seq == attr_xlog_current_seq(xs->log) ||
        xs->segs[0].max_arrival_ns >= limit_ns) {
        return 0;
    }
    *seq = xs->segs[0].seq;
    attr_xlog_path(xs->dir, *seq, path, 4096);
    return 1;
}

void attr_exposure_store_pruned(attr_exposure_store_t *xs, uint64_t seq)
{
    for (size_t i = 0; i < xs->n_segs; i++) {
        if (xs->segs[i].seq == seq) {
            memmove(&xs->segs[i], &xs->segs[i + 1], (xs->n_segs - i - 1) * sizeof *xs->segs);
            xs->n_segs--;
            break;
        }
    }
    char path[4200];
    attr_xlog_path(xs->dir, seq, path, sizeof path);
    attr_exposure_store__segfd_kill(&xs->fds, seq);
    attr_runs_unlink(xs->runs, path);
    if (seq + 1 > xs->first_live_seg) {
        xs->first_live_seg = seq + 1;
        attr_runs_set_min_seg(xs->runs, xs->first_live_seg);
    }
    attr_state_index_forget(xs->st, seq);
    attr_exposure_store__drop_pruned_files(xs);
}

void attr_exposure_store_info(const attr_exposure_store_t *xs, attr_exposure_store_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->segments = xs->n_segs;
    attr_runs_info_t ri;
    attr_runs_info(xs->runs, &ri);
    info->files = ri.files;
    info->file_entries = ri.dedup_entries;
    info->fence_bytes = ri.fence_bytes;
    info->views = ri.views;
    info->runs_waiting = ri.waiting;
    info->runs_built = ri.built;
    info->merges = ri.merges;
    info->build_failures = ri.failures;
    info->bloom_bytes = attr_state_bloom_bytes(xs->st);
    for (size_t i = 0; i < xs->st->n_runs; i++) {
        info->run_bytes += attr_run_bytes(xs->st->runs[i]);
    }
}

/* ---- close ---- */

/** Frees the store (its runs module is closed already). */
void attr_exposure_store__free(attr_exposure_store_t *xs)
{
    free(xs->segs);
    free(xs->run_segs);
    if (xs->startup_buf != NULL) {
        attr_xlog_recbuf_free(xs->startup_buf);
        free(xs->startup_buf);
    }
    attr_exposure_store__segfds_free(&xs->fds);
    free(xs);
}

/** attr_exposure_store__free() for the countdown (attr_countdown_t.free_module). */
static void attr__free_closed(void *xs)
{
    attr_exposure_store__free(xs);
}

void attr_exposure_store_close(attr_exposure_store_t *xs, void (*closed)(void *arg), void *arg)
{
    xs->closing = 1;
    attr_countdown_start(&xs->parts, attr__free_closed, xs, closed, arg);
    attr_countdown_add(&xs->parts); /* the runs: closed below, whether started or not */
    /* Lookups first (their callbacks may append to the log), then what is held back,
     * then the log (its callbacks commit and may seal runs), then the open run and the
     * runs' threads (the builder finishes, a merge in progress gives up). */
    for (int k = 0; k < ATTR_EXPOSURE_STORE_LOOKERS; k++) {
        if (xs->lookers[k] != NULL) {
            attr_work_close(xs->lookers[k], attr_countdown_part_closed, &xs->parts);
        }
    }
    if (xs->log != NULL) {
        attr__release_held(xs); /* closing: nothing is held any more */
        attr_xlog_close(xs->log, attr_countdown_part_closed, &xs->parts);
    }
    attr__seal(xs);
    attr_runs_close(xs->runs, attr_countdown_part_closed, &xs->parts);
    attr_countdown_part_closed(&xs->parts);
}
