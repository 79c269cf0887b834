/*
 * attr_exposure_store_open.c — the exposure store's start-up: the segments listed (pruned ones
 * deleted, version 1 ones upgraded), the index files that chain kept, their rollups and
 * ids loaded into the state, the log after the last file read into runs and indexed,
 * then the log and the threads started. See attr_exposure_store.h.
 *
 * Threads: the loop thread, before it serves (blocking).
 */
#include "services/attribution/attr_exposure_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_exposure_store_int.h"

/* ---- start-up ---- */

static int attr__is_in(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == x) {
            return 1;
        }
    }
    return 0;
}

/*
 * Rollup rows go into the state through a short pipeline: a file holds about one row
 * per exposure, in no order of creator, and each row's creator is a chain of cache
 * misses: its interner slot, the string the slot points at, the creator's entry, its
 * days. Each step of a row is prefetched ATTR__LOAD_STEP rows before the row needs it.
 */
#define ATTR__LOAD_RING 32 /* a power of two, more than 4 x ATTR__LOAD_STEP */
#define ATTR__LOAD_STEP 6
#define ATTR__LOAD_ID_MAX 256 /* ids are at most 256 bytes; a longer one goes alone */

typedef struct st_attr__load_row_t {
    char creator[ATTR__LOAD_ID_MAX];
    uint32_t len, id;
    int32_t day;
    int64_t impressions, views, clicks;
} attr__load_row_t;

typedef struct st_attr__load_ctx_t {
    attr_exposure_store_t *xs;
    uint64_t *hashes; /* a buffer of ids on their way to the Bloom filters */
    size_t n, cap;
    uint64_t max_seg;
    attr__load_row_t *ring;                 /* rows on their way into the rollups */
    uint64_t in, strs, looked, days, added; /* rows entered, and past each step */
} attr__load_ctx_t;

/** Moves the rows on by a step each (with `all`: through every step). 0 or -ENOMEM. */
static int attr__load_step(attr__load_ctx_t *c, int all)
{
    attr_state_t *st = c->xs->st;
#define ATTR__DUE(done, before) ((done) < (before) && (all || (before) - (done) > ATTR__LOAD_STEP))
    for (; ATTR__DUE(c->strs, c->in); c->strs++) {
        attr__load_row_t *r = &c->ring[c->strs % ATTR__LOAD_RING];
        attr_intern_prefetch_str(&st->creators, r->creator, r->len);
    }
    for (; ATTR__DUE(c->looked, c->strs); c->looked++) {
        attr__load_row_t *r = &c->ring[c->looked % ATTR__LOAD_RING];
        if (attr_intern(&st->creators, r->creator, r->len, &r->id) != 0) {
            return -ENOMEM;
        }
        attr_state_prefetch_counts(st, r->id, 0);
    }
    for (; ATTR__DUE(c->days, c->looked); c->days++) {
        attr_state_prefetch_counts(st, c->ring[c->days % ATTR__LOAD_RING].id, 1);
    }
    for (; ATTR__DUE(c->added, c->days); c->added++) {
        const attr__load_row_t *r = &c->ring[c->added % ATTR__LOAD_RING];
        int rc =
            attr_state_add_exposure_counts(st, r->id, r->day, r->impressions, r->views, r->clicks);
        if (rc != 0) {
            return rc;
        }
    }
#undef ATTR__DUE
    return 0;
}

static int attr__load_rollup(void *arg, const attr_xrollup_t *r)
{
    attr__load_ctx_t *c = arg;
    attr_state_t *st = c->xs->st;
    if (r->seg < c->xs->first_live_seg || st->skip_counts) {
        return 0; /* its counts are in the database, or in the snapshot loaded */
    }
    if (r->creator_len > ATTR__LOAD_ID_MAX || c->ring == NULL) {
        return attr_state_add_exposure_rollup(st, r->creator, r->creator_len, r->day,
                                              r->impressions, r->views, r->clicks);
    }
    attr__load_row_t *row = &c->ring[c->in % ATTR__LOAD_RING];
    memcpy(row->creator, r->creator, r->creator_len);
    row->len = r->creator_len;
    row->day = r->day;
    row->impressions = r->impressions;
    row->views = r->views;
    row->clicks = r->clicks;
    attr_intern_prefetch(&st->creators, row->creator, row->len);
    c->in++;
    return attr__load_step(c, 0);
}

static int attr__load_seg(void *arg, const attr_xseg_t *s)
{
    attr__load_ctx_t *c = arg;
    if (s->seg >= c->xs->first_live_seg) {
        attr_exposure_store__seg_add(c->xs, s->seg, s->events, s->max_arrival_ns);
    }
    return 0;
}

static int attr__load_hash(void *arg, const attr_xent_t *e)
{
    attr__load_ctx_t *c = arg;
    c->hashes[c->n++] = e->h;
    if (c->n == c->cap) {
        int rc = attr_state_index_add(c->xs->st, c->hashes, c->n, c->max_seg);
        c->n = 0;
        return rc;
    }
    return 0;
}

/** Loads one file: its rollups, its segments' figures and its ids (Bloom filters). */
static int attr__load_file(attr_exposure_store_t *xs, attr_xidx_t *x, attr__load_ctx_t *c)
{
    int rc = attr_xidx_rollups(x, attr__load_rollup, c);
    if (rc == 0) {
        rc = attr__load_step(c, 1);
    }
    if (rc == 0) {
        rc = attr_xidx_segs(x, attr__load_seg, c);
    }
    c->n = 0;
    c->max_seg = attr_xidx_meta(x)->max_seg;
    if (rc == 0) {
        rc = attr_xidx_scan(x, ATTR_XIDX_DEDUP, attr__load_hash, c);
    }
    if (rc == 0 && c->n > 0) {
        rc = attr_state_index_add(xs->st, c->hashes, c->n, c->max_seg);
    }
    return rc;
}

/**
 * Whether a file starting at `start` continues one that ended at `end`: the same
 * position, or the beginning (offset 0) of a later segment (a run opened at start-up:
 * the previous segments were read to their end).
 */
static int attr__continues(attr_xpos_t start, attr_xpos_t end)
{
    return attr_xpos_cmp(start, end) == 0 || (start.off == 0 && start.seq > end.seq);
}

/**
 * attr_runs_load(): keeps the index files that are whole and chain from the log's live
 * start (`arg`: the first segment). A file a merged one covers goes alone; at a gap,
 * every later file goes too (the log is read again).
 */
static attr_runs_verdict_t attr__judge_file(void *arg, const char *path, const attr_xidx_t *x,
                                            const char *why, const attr_xidx_t *prev_x)
{
    uint64_t first_seg = *(const uint64_t *)arg;
    const attr_xmeta_t *m = x != NULL ? attr_xidx_meta(x) : NULL;
    const attr_xmeta_t *prev = prev_x != NULL ? attr_xidx_meta(prev_x) : NULL;
    attr_runs_verdict_t v = ATTR_RUNS_DROP_REST;
    if (x == NULL) {
        v = ATTR_RUNS_DROP;
    } else if (prev != NULL && m->last_run <= prev->last_run) {
        why = "covered by a merged file (a merge was interrupted)";
        v = ATTR_RUNS_DROP;
    } else if (prev != NULL &&
               (m->first_run != prev->last_run + 1 || !attr__continues(m->start, prev->end))) {
        why = "does not continue the previous file (one is missing): rebuilt from the log";
    } else if (prev == NULL &&
               (m->start.seq > first_seg || (m->start.seq == first_seg && m->start.off != 0))) {
        why = "the log before it is not indexed: rebuilt from the log";
    } else {
        return ATTR_RUNS_KEEP;
    }
    yw_log(YW_LOG_WARN, "index file %s: %s; deleting it", path, why);
    return v;
}

/* -- the tail of the log: read, committed into runs, indexed, at start-up -- */

typedef struct st_attr__tail_t {
    attr_exposure_store_t *xs;
    int64_t now;
    uint64_t seq;
    uint64_t frame_off; /* of the frame being read; UINT64_MAX: none yet */
    uint64_t frame_end;
    int64_t frame_arrival;
    uint64_t frame_events;
    const char **prods;
    size_t *lens;
    size_t cap;
    attr_xlog_recbuf_t buf;
    attr_exposure_store_stats_t *stats;
    int rc;
    char *err;
    size_t errlen;
} attr__tail_t;

/** Builds and publishes the sealed open run now (start-up: nobody else is looking). */
static int attr__seal_sync(attr_exposure_store_t *xs, attr_exposure_store_stats_t *stats, char *err,
                           size_t errlen)
{
    int rc = attr_exposure_store__seal_run(xs, 1, err, errlen);
    if (rc == 0) {
        stats->tail_runs++;
    }
    return rc;
}

/** The end of a frame of the tail: the run's stretch grows; seal it when full. */
static int attr__tail_frame_done(attr__tail_t *t)
{
    attr_exposure_store_t *xs = t->xs;
    if (t->frame_off == UINT64_MAX) {
        return 0;
    }
    xs->log_end = (attr_xpos_t){t->seq, t->frame_end};
    attr_exposure_store__seg_add(xs, t->seq, t->frame_events, t->frame_arrival);
    if (attr_exposure_store__run_seg_add(xs, t->seq, t->frame_events, t->frame_arrival) != 0) {
        return -ENOMEM;
    }
    t->frame_off = UINT64_MAX;
    attr_run_t *run = attr_state_open_run(xs->st);
    if (attr_exposure_store__run_full(xs, run)) {
        return attr__seal_sync(xs, t->stats, t->err, t->errlen);
    }
    return 0;
}

static int attr__tail_visit(void *arg, const attr_xlog_event_t *ev)
{
    attr__tail_t *t = arg;
    attr_exposure_store_t *xs = t->xs;
    if (ev->frame_off != t->frame_off) {
        int rc = attr__tail_frame_done(t);
        if (rc != 0) {
            return rc;
        }
        t->frame_off = ev->frame_off;
        t->frame_end = ev->frame_end;
        t->frame_arrival = ev->arrival_ns;
        t->frame_events = 0;
    }
    t->frame_events++;
    /* Two arrays of one capacity: each grows to the same new one. */
    size_t cap_lens = t->cap;
    if (YW_VEC_RESERVE(t->lens, cap_lens, ev->n_products, 16) != 0 ||
        YW_VEC_RESERVE(t->prods, t->cap, ev->n_products, 16) != 0) {
        return -ENOMEM;
    }
    for (uint32_t k = 0; k < ev->n_products; k++) {
        t->prods[k] = ev->products[k].s;
        t->lens[k] = ev->products[k].len;
    }
    attr_exposure_in_t in = {
        .event_id = ev->event_id.s,
        .event_id_len = ev->event_id.len,
        .viewer_id = ev->viewer.s,
        .viewer_len = ev->viewer.len,
        .creator_id = ev->creator.s,
        .creator_len = ev->creator.len,
        .note_id = ev->note.s,
        .note_len = ev->note.len,
        .product_ids = t->prods,
        .product_lens = t->lens,
        .n_products = ev->n_products,
        .kind = ev->kind,
        .watch_ms = ev->watch_ms,
        .occur_ns = ev->occur_ns,
    };
    uint64_t seq;
    int rc = attr_exposure_admit(xs->st, &in, ev->arrival_ns, &seq, NULL);
    if (rc == ATTR_UNSURE) {
        size_t n_files;
        attr_xidx_t *const *files = attr_runs_files(xs->runs, &n_files);
        int dup = attr_exposure_store__find_eid(&xs->fds, files, n_files,
                                                yw_hash_bytes(ev->event_id.s, ev->event_id.len),
                                                ev->event_id.s, ev->event_id.len, &t->buf);
        if (dup < 0) {
            attr_exposure_abort(xs->st, seq);
            return dup;
        }
        attr_exposure_resolve(xs->st, seq, dup);
        rc = dup ? ATTR_DUPLICATE : ATTR_ADMITTED;
    }
    if (rc == ATTR_DUPLICATE) {
        t->stats->tail_duplicates++;
        return 0;
    }
    if (rc != ATTR_ADMITTED) {
        return rc < 0 ? rc : -ENOMEM;
    }
    rc = attr_exposure_commit_at(xs->st, seq, (uint32_t)t->seq, ev->rec_off, t->now);
    if (rc < 0) {
        return rc;
    }
    t->stats->tail_events++;
    return 0;
}

/** Reads the log from `from` on into runs, indexed as they fill (and the last one). */
static int attr__index_tail(attr_exposure_store_t *xs, const uint64_t *seqs, size_t n,
                            attr_xpos_t from, int64_t now, attr_exposure_store_stats_t *stats,
                            char *err, size_t errlen)
{
    attr__tail_t t;
    memset(&t, 0, sizeof t);
    t.xs = xs;
    t.now = now;
    t.stats = stats;
    t.err = err;
    t.errlen = errlen;
    xs->run_start = xs->log_end = from;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (seqs[i] < from.seq) {
            continue;
        }
        char path[4200];
        attr_xlog_path(xs->dir, seqs[i], path, sizeof path);
        int last = i + 1 == n;
        attr_xlog_segstat_t st;
        char rerr[512] = "";
        t.seq = seqs[i];
        t.frame_off = UINT64_MAX;
        uint64_t start = seqs[i] == from.seq ? from.off : 0;
        rc = attr_xlog_read_segment_from(path, start, last, attr__tail_visit, &t, &st, rerr,
                                         sizeof rerr);
        if (rc == -EBADMSG) {
            rc = 0;
            if (last) {
                /* Created but its header never reached the disk: nothing was in it. */
                yw_log(YW_LOG_WARN, "%s; deleting it (the last segment, torn at creation)", rerr);
                (void)unlink(path);
            } else {
                char bad[4300];
                snprintf(bad, sizeof bad, "%s.bad", path);
                yw_log(YW_LOG_ERROR, "%s; moved aside to %s, not replayed", rerr, bad);
                (void)rename(path, bad);
            }
            continue;
        }
        if (rc == 0) {
            rc = attr__tail_frame_done(&t);
        }
        if (rc != 0) {
            if (err[0] == '\0') {
                yw_errmsg_printf(err, errlen, "indexing %s: %s", path,
                                 rerr[0] ? rerr : strerror(-rc));
            }
            break;
        }
        if (st.torn) {
            yw_log(last ? YW_LOG_WARN : YW_LOG_ERROR,
                   "exposure log %s: %s at byte %llu; %s %llu bytes after it", path, st.torn_reason,
                   (unsigned long long)st.valid_bytes,
                   last ? "truncated (a torn tail: never acknowledged)" : "ignored",
                   (unsigned long long)(st.file_bytes - st.valid_bytes));
        }
        attr_exposure_store__seg(xs, seqs[i]); /* listed even when empty */
    }
    if (rc == 0) {
        rc = attr__seal_sync(xs, stats, err, errlen);
    }
    free(t.prods);
    free(t.lens);
    attr_xlog_recbuf_free(&t.buf);
    return rc;
}

/* -- open -- */

/**
 * Steps 1 to 4 of start-up (see the file's head): what touches neither the loop nor a
 * thread, so any thread may run it for a state of its own. Returns 0 with *out (its
 * runs not started) and *next_seq (the segment to write next), or a negative errno with
 * `err` and nothing left open.
 */
static int attr__open_files(const char *dir, uint32_t run_exposures, attr_state_t *st,
                            const uint64_t *pruned, size_t n_pruned, int64_t now_ns,
                            attr_exposure_store_t **out, uint64_t *next_seq_out,
                            attr_exposure_store_stats_t *stats, char *err, size_t errlen)
{
    *out = NULL;
    memset(stats, 0, sizeof *stats);
    err[0] = '\0';
    attr_exposure_store_t *xs = calloc(1, sizeof *xs);
    if (xs == NULL) {
        yw_errmsg_printf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xs->st = st;
    snprintf(xs->dir, sizeof xs->dir, "%s", dir);
    pthread_mutex_init(&xs->fds.mu, NULL);
    xs->fds.dir = xs->dir;
    xs->run_exposures = run_exposures ? run_exposures : ATTR_EXPOSURE_STORE_RUN;
    xs->run_bytes = ATTR_EXPOSURE_STORE_RUN_BYTES;
    st->run_max = 0; /* runs end where the store seals them */
    st->run_hint = xs->run_exposures;
    const attr_runs_cfg_t cfg = {
        .dir = dir,
        .what = "exposure index",
        .fanin = ATTR_EXPOSURE_STORE_FANIN,
        .lanes = 2,
        .keep_for_views = 1,
        .ops = &attr_exposure_store__sealed_ops,
        .ctx = xs,
    };
    if (attr_runs_open(&cfg, &xs->runs) != 0) {
        yw_errmsg_printf(err, errlen, "out of memory");
        attr_exposure_store__free(xs);
        return -ENOMEM;
    }

    /* 1. Segments: the pruned ones go, version 1 ones are rewritten. */
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rc = attr_xlog_list(dir, &seqs, &n);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot list: %s", dir, strerror(-rc));
        attr_runs_close(xs->runs, NULL, NULL); /* no thread yet: at once */
        attr_exposure_store__free(xs);
        return rc;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        attr_xlog_path(dir, seqs[i], path, sizeof path);
        if (attr__is_in(pruned, n_pruned, seqs[i])) {
            /* Its counts are in the database already: never replay it. */
            if (unlink(path) != 0) {
                yw_log(YW_LOG_WARN, "cannot delete pruned segment %s: %s", path, strerror(errno));
            }
            if (seqs[i] + 1 > xs->first_live_seg) {
                xs->first_live_seg = seqs[i] + 1;
            }
            continue;
        }
        if (attr_xlog_segment_version(path) == 1) {
            char uerr[512] = "";
            rc = attr_xlog_upgrade(path, uerr, sizeof uerr);
            if (rc != 0) {
                yw_errmsg_printf(err, errlen, "%s", uerr);
                break;
            }
            yw_log(YW_LOG_INFO, "exposure log %s rewritten in format 2", path);
        }
        seqs[k++] = seqs[i];
    }
    n = k;
    for (size_t i = 0; i < n_pruned; i++) {
        if (pruned[i] + 1 > xs->first_live_seg) {
            xs->first_live_seg = pruned[i] + 1;
        }
    }
    uint64_t first_seg = n > 0 ? seqs[0] : xs->first_live_seg;
    if (first_seg > xs->first_live_seg) {
        xs->first_live_seg = first_seg;
    }
    attr_runs_set_min_seg(xs->runs, xs->first_live_seg);

    /* 2. The index files that are whole and continue each other. */
    if (rc == 0) {
        rc = attr_runs_load(xs->runs, attr__judge_file, &first_seg, &stats->files_dropped, err,
                            errlen);
    }
    /* Files covering only pruned segments (pruned while a file was being merged, or
     * before a crash) go now rather than fill the Bloom filters. */
    if (rc == 0) {
        stats->files_dropped += attr_exposure_store__drop_pruned_files(xs);
    }
    size_t n_files;
    attr_xidx_t *const *files = attr_runs_files(xs->runs, &n_files);
    /* 3. Their rollups, segment figures and ids. */
    attr__load_ctx_t lc = {.xs = xs, .cap = 1u << 16};
    if (rc == 0 && ((lc.hashes = malloc(lc.cap * sizeof *lc.hashes)) == NULL ||
                    (lc.ring = malloc(ATTR__LOAD_RING * sizeof *lc.ring)) == NULL)) {
        rc = -ENOMEM;
        yw_errmsg_printf(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n_files && rc == 0; i++) {
        rc = attr__load_file(xs, files[i], &lc);
        if (rc != 0) {
            yw_errmsg_printf(err, errlen, "loading %s: %s", attr_xidx_path(files[i]),
                             strerror(-rc));
        }
        stats->indexed_events += attr_xidx_meta(files[i])->n_dedup;
    }
    free(lc.hashes);
    free(lc.ring);
    stats->files = n_files;
    if (n_files > 0) {
        st->next_run_id = attr_xidx_meta(files[n_files - 1])->last_run + 1;
    }
    /* 4. The log after the last file. (The service then looks up the candidates of the
     *    stored conversions in the files: attr_exposure_store_find_cands().) */
    attr_xpos_t from =
        n_files > 0 ? attr_xidx_meta(files[n_files - 1])->end : (attr_xpos_t){first_seg, 0};
    if (rc == 0) {
        rc = attr__index_tail(xs, seqs, n, from, now_ns, stats, err, errlen);
    }
    *next_seq_out = n > 0 ? seqs[n - 1] + 1 : (xs->first_live_seg ? xs->first_live_seg : 1);
    free(seqs);
    if (rc != 0) {
        /* Runs published at start-up stay the state's, freed with it. */
        attr_runs_close(xs->runs, NULL, NULL); /* no thread yet: at once */
        attr_exposure_store__free(xs);
        return rc;
    }
    *out = xs;
    return 0;
}

int attr_exposure_store_open(uv_loop_t *loop, const char *dir, uint32_t run_exposures,
                             attr_state_t *st, const uint64_t *pruned, size_t n_pruned,
                             int64_t now_ns, attr_exposure_store_t **out,
                             attr_exposure_store_stats_t *stats, char *err, size_t errlen)
{
    attr_exposure_store_t *xs = NULL;
    uint64_t next_seq = 0;
    *out = NULL;
    int rc = attr__open_files(dir, run_exposures, st, pruned, n_pruned, now_ns, &xs, &next_seq,
                              stats, err, errlen);
    if (rc != 0) {
        return rc;
    }
    xs->loop = loop;
    /* 5. A new segment, the threads. */
    rc = attr_xlog_open(loop, dir, next_seq, &xs->log, err, errlen);
    if (rc == 0) {
        attr_countdown_add(&xs->parts); /* the log */
        rc = attr_runs_start(xs->runs, loop);
        for (int k = 0; k < ATTR_EXPOSURE_STORE_LOOKERS && rc == 0; k++) {
            if ((rc = attr_work_open(loop, &xs->lookers[k])) == 0) {
                attr_countdown_add(&xs->parts);
            }
        }
        if (rc != 0) {
            yw_errmsg_printf(err, errlen, "cannot start a thread: %s", strerror(-rc));
        }
    }
    if (rc != 0) {
        if (attr_countdown_any(&xs->parts)) {
            /* Threads started: close them the normal way (frees the store at the end). */
            attr_exposure_store_close(xs, NULL, NULL);
        } else {
            /* Runs published at start-up stay the state's, freed with it. */
            attr_runs_close(xs->runs, NULL, NULL); /* no thread yet: at once */
            attr_exposure_store__free(xs);
        }
        return rc;
    }
    attr_exposure_store__seg(xs, next_seq);
    /* The first run starts where the log was read to (run_start == log_end now). */
    stats->segments = xs->n_segs;
    *out = xs;
    return 0;
}

int attr_exposure_store_index(const char *dir, uint32_t run_exposures,
                              const attr_settings_t *settings, const uint64_t *pruned,
                              size_t n_pruned, int64_t now_ns, attr_exposure_store_stats_t *stats,
                              char *err, size_t errlen)
{
    /* A state of its own: only its runs (sealed into files as they fill) and its Bloom
     * filters (from the files already there: duplicates in the log are found as the
     * engine finds them). Nothing is counted: the engine loads the files' rollups. */
    attr_state_t st;
    attr_state_init(&st);
    if (settings != NULL) {
        st.settings = *settings;
        attr_settings_rules(settings, &st.rules);
    }
    st.defer = 1;
    st.skip_counts = 1;
    attr_exposure_store_t *xs = NULL;
    uint64_t next_seq = 0;
    int rc = attr__open_files(dir, run_exposures, &st, pruned, n_pruned, now_ns, &xs, &next_seq,
                              stats, err, errlen);
    if (rc == 0) {
        attr_runs_close(xs->runs, NULL, NULL); /* never started: at once */
        attr_exposure_store__free(xs);
    }
    attr_state_free(&st);
    return rc;
}
