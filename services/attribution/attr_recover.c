/*
 * attr_recover.c — start-up in named steps (attr__recover()): the snapshot of the last
 * clean stop (0), the database (1), the conversion key index and, when it matches the
 * data, the snapshot (2), the exposure store (3), the stored conversions credited again
 * unless the snapshot had them (4). And the other end: the snapshot written at a clean
 * stop (attr__snap_write_at_stop()), so that the next start need not recompute.
 *
 * Everything here runs on the loop before the server takes calls (start-up blocks on
 * the store: yw_store_run_sync()), or at the very end of stopping.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "services/attribution/attr_snap.h"
#include "services/attribution/attr_validate.h"

static grpc_status_code attr__store_default_settings(yw_store_conn_t *conn, void *arg)
{
    attr_settings_job_t *j = arg;
    return attr_store_put_settings(conn, &j->job);
}

/* -- the snapshot of a clean stop (attr_snap.h) -- */

/** The marks of the data now: settings, conversions, refunds, touches, pruned, log. */
static void attr__marks_of(const attr_svc_t *svc, const attr_load_t *ld, attr_snap_marks_t *m)
{
    memset(m, 0, sizeof *m);
    m->settings = svc->st.settings;
    m->conversions = ld->conversions;
    m->max_seq = ld->max_seq;
    m->amount_sum = ld->amount_sum;
    m->refunds = ld->refunds;
    m->refund_sum = ld->refund_sum;
    m->touches = ld->touches;
    m->pruned_n = ld->n_pruned;
    m->pruned_hash = attr_snap_pruned_hash(ld->pruned, ld->n_pruned);
}

static void attr__snap_path(const attr_svc_t *svc, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", svc->data_dir, ATTR_SNAP_FILE);
}

/** The marks of a clean stop, read on the writer's queue (after every write). */
typedef struct st_attr_marks_read_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_load_t ld;
} attr_marks_read_t;

static grpc_status_code attr__marks_read_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_marks_read_t *mr = (attr_marks_read_t *)job;
    grpc_status_code code = attr_store_marks(conn, &mr->ld);
    if (code != GRPC_STATUS_OK) {
        snprintf(job->errmsg, sizeof job->errmsg, "%s", mr->ld.err);
    }
    return code;
}

static void attr__on_marks_read(yw_store_job_t *job, grpc_status_code status)
{
    attr_marks_read_t *mr = (attr_marks_read_t *)job;
    attr_svc_t *svc = mr->svc;
    char path[4200], err[512] = "";
    attr__snap_path(svc, path, sizeof path);
    attr_snap_marks_t m;
    attr__marks_of(svc, &mr->ld, &m);
    int rc = status == GRPC_STATUS_OK ? 0 : -EIO;
    if (rc != 0) {
        snprintf(err, sizeof err, "reading its marks: %s", job->errmsg);
    } else if ((rc = attr_snap_log_end(svc->exp_dir, &m.log_last_seg, &m.log_last_size)) != 0) {
        snprintf(err, sizeof err, "the exposure log's end: %s", strerror(-rc));
    } else if (m.conversions != svc->st.n_stored_convs) {
        rc = -EIO;
        snprintf(err, sizeof err, "%llu conversions in memory, %llu stored",
                 (unsigned long long)svc->st.n_stored_convs, (unsigned long long)m.conversions);
    }
    uint64_t t0 = uv_hrtime();
    if (rc == 0) {
        rc = attr_snap_write(path, &svc->st, &m, err, sizeof err);
    }
    if (rc == 0) {
        yw_log(YW_LOG_INFO,
               "snapshot written for the next start: %u creators, %llu conversions, "
               "%.0f ms",
               attr_state_n_creators(&svc->st), (unsigned long long)m.conversions,
               (double)(uv_hrtime() - t0) / 1e6);
    } else {
        yw_log(YW_LOG_WARN, "no snapshot written (the next start recomputes): %s", err);
    }
    free(mr->ld.pruned);
    free(mr);
    attr__unref(svc); /* the job (the hold stays) */
    attr__fini_done(svc);
}

/**
 * Stopping, once only the hold is left and the touches are stored: the marks are read on
 * the writer's queue, then the snapshot is written (attr__on_marks_read()); a suspect
 * memory writes none and deletes an old one.
 */
void attr__snap_write_at_stop(attr_svc_t *svc)
{
    char path[4200];
    attr__snap_path(svc, path, sizeof path);
    if (svc->suspect) {
        yw_log(YW_LOG_WARN, "no snapshot written: memory may disagree with the data after an "
                            "error logged before (the next start recomputes)");
        (void)unlink(path);
        attr__fini_done(svc);
        return;
    }
    attr_marks_read_t *mr = calloc(1, sizeof *mr);
    if (mr != NULL) {
        mr->svc = svc;
        mr->job.work = attr__marks_read_work;
        mr->job.done = attr__on_marks_read;
        if (yw_store_write(svc->store, &mr->job) == 0) {
            svc->refs++;
            return;
        }
        free(mr);
    }
    yw_log(YW_LOG_WARN, "no snapshot written: cannot read its marks");
    attr__fini_done(svc);
}

/**
 * Start-up from the snapshot of the last clean stop, when it matches the data. Returns
 * 1 when it was loaded (the rollups, credits and conversion filter are in the state),
 * 0 when the start-up recomputes (`st` is empty again). The file is deleted either way:
 * the state moves on from here.
 */
static int attr__snap_start(attr_svc_t *svc, attr_snap_t *snap, const attr_load_t *ld,
                            uint64_t ck_safe)
{
    char path[4200], why[512] = "";
    attr__snap_path(svc, path, sizeof path);
    uint64_t t0 = uv_hrtime();
    attr_snap_marks_t now;
    attr__marks_of(svc, ld, &now);
    int used = 0, rc = attr_snap_log_end(svc->exp_dir, &now.log_last_seg, &now.log_last_size);
    if (rc != 0) {
        snprintf(why, sizeof why, "the exposure log's end: %s", strerror(-rc));
    } else if (!attr_snap_matches(snap, &now, why, sizeof why)) {
        /* why says what */
    } else if (ck_safe < ld->max_seq) {
        snprintf(why, sizeof why, "the conversion key index lacks the keys after %llu",
                 (unsigned long long)ck_safe);
    } else if (attr_snap_load(snap, &svc->st, why, sizeof why) != 0) {
        /* why says what */
    } else if (attr_snap_check_totals(&svc->st, &now, why, sizeof why)) {
        used = 1;
    }
    if (!used) {
        /* Back to an empty state with the settings loaded. */
        attr_state_t *st = &svc->st;
        attr_settings_t set = st->settings;
        size_t cache = st->cache_budget, bloom = st->bloom_budget;
        uint64_t stored = st->n_stored_convs;
        attr_state_free(st);
        attr_state_init(st);
        st->settings = set;
        attr_settings_rules(&set, &st->rules);
        st->cache_budget = cache;
        st->bloom_budget = bloom;
        st->n_stored_convs = stored;
        st->defer = 1;
        yw_log(YW_LOG_WARN, "snapshot %s not used (recomputing from the data): %s", path, why);
    } else {
        yw_log(YW_LOG_INFO, "snapshot loaded and checked: %u creators, %llu conversions, %.0f ms",
               attr_state_n_creators(&svc->st), (unsigned long long)now.conversions,
               (double)(uv_hrtime() - t0) / 1e6);
    }
    if (unlink(path) != 0) {
        yw_log(YW_LOG_WARN, "%s: cannot delete: %s", path, strerror(errno));
    }
    return used;
}

/* -- the stored conversions at start-up -- */

/** Crediting the stored conversions at start-up (attr__credit_one(), on the store thread). */
typedef struct st_attr_credit_ctx_t {
    attr_svc_t *svc;
    int64_t now;
    uint64_t ck_safe;       /* the key index has the keys up to this seq */
    attr_touch_mark_t mark; /* the stored touches are complete up to it */
    attr_conv_t *c;
    uint64_t seen, looked_up, looked_up_after, found;
    int rc;
} attr_credit_ctx_t;

/** A candidate of the conversion being credited, found in the index files. */
static int attr__stored_cand(void *arg, const attr_xlog_event_t *ev)
{
    attr_credit_ctx_t *x = arg;
    attr_state_t *st = &x->svc->st;
    if (attr_exposure_past_horizon(st, ev->occur_ns, x->now)) {
        return 0;
    }
    char eid[ATTR_ID_MAX + 1];
    if (ev->event_id.len > ATTR_ID_MAX) {
        return 0; /* longer than any valid id */
    }
    memcpy(eid, ev->event_id.s, ev->event_id.len);
    eid[ev->event_id.len] = '\0';
    size_t before = x->c->n_cands;
    int rc = attr_conv_add_cand(st, x->c, eid, ev->creator.s, ev->creator.len, ev->note.s,
                                ev->note.len, ev->kind, ev->watch_ms, ev->occur_ns, 0);
    x->found += x->c->n_cands - before;
    return rc;
}

/**
 * One stored conversion at start-up: into the cache, with its stored touches and those
 * the index files hold that it does not have yet (found after a crash that came before
 * they were stored: they are stored now); credited into the rollups; in the conversion
 * filter when within the horizon. The cache keeps what its budget allows.
 */
static int attr__credit_one(void *arg, const attr_convset_t *one)
{
    attr_credit_ctx_t *x = arg;
    attr_svc_t *svc = x->svc;
    attr_state_t *st = &svc->st;
    const attr_stored_conv_t *sc = &one->convs[0];
    attr_conv_t *c = NULL;
    int rc = attr_conv_load(st, &sc->in, sc->refunded, &c);
    if (rc == 0) {
        rc = attr__add_stored_touches(st, c, one, 0);
    }
    /* An order older than the horizon cannot have a touch still kept. */
    if (rc == 0 && !attr_exposure_past_horizon(st, c->occur_ns, x->now)) {
        attr_xjoin_q_t q = {c->vp_hash,    c->viewer,      c->product,
                            c->viewer_len, c->product_len, c->occur_ns};
        x->c = c;
        /* Its stored touches are complete up to the mark: only the exposures after. */
        int after = c->seq <= x->mark.seq;
        rc = attr_exposure_store_find_cands(svc->xs, &q, after ? x->mark.seg : 0,
                                            after ? x->mark.off : 0, attr__stored_cand, x);
        x->looked_up++;
        x->looked_up_after += after;
        if (rc == 0) {
            rc = attr_state_conv_filter_add(st, c->vp_hash, c->occur_ns);
        }
    }
    if (rc == 0 && c->seq > x->ck_safe) {
        rc = attr_ckey_add(svc->ck, c->vp_hash, c->seq, c->occur_ns);
        if (rc == 0 && attr_ckey_full(svc->ck)) {
            /* Not all visited yet: what the index had stays what it claims. */
            rc = attr_ckey_seal(svc->ck, x->ck_safe);
        }
    }
    if (rc == 0) {
        rc = attr_conv_loaded(st, c, 1);
    }
    if (rc == -EEXIST) {
        rc = 0; /* cannot happen: order ids are unique */
    }
    if (++x->seen % 1024 == 0) {
        attr__evict(svc);
    }
    return rc;
}

static grpc_status_code attr__credit_scan(yw_store_conn_t *conn, void *arg)
{
    attr_credit_ctx_t *x = arg;
    char err[256] = "";
    x->rc = attr_store_scan_conversions(conn, attr__credit_one, x, err, sizeof err);
    if (x->rc != 0) {
        yw_log(YW_LOG_ERROR, "crediting the stored conversions: %s",
               err[0] ? err : strerror(-x->rc));
        return GRPC_STATUS_INTERNAL;
    }
    return GRPC_STATUS_OK;
}

static int attr__credit_stored(attr_svc_t *svc, int64_t now, uint64_t ck_safe,
                               const attr_touch_mark_t *mark, attr_exposure_store_stats_t *xst,
                               uint64_t *after, char *err, size_t errlen)
{
    attr_credit_ctx_t x = {.svc = svc, .now = now, .ck_safe = ck_safe, .mark = *mark};
    char serr[256] = "";
    grpc_status_code code = yw_store_run_sync(svc->store, attr__credit_scan, &x, serr, sizeof serr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "crediting the stored conversions: %s",
                 x.rc != 0 ? strerror(-x.rc) : serr);
        return x.rc != 0 ? x.rc : -EIO;
    }
    xst->conversions_looked_up = x.looked_up;
    *after = x.looked_up_after;
    xst->candidates_found = x.found;
    attr__evict(svc);
    return 0;
}

/* -- the steps of start-up -- */

/**
 * 0. The snapshot of the last clean stop, if any (used in step 2 if it matches the
 * data); a snapshot that cannot be read is deleted. Returns it or NULL.
 */
static attr_snap_t *attr__snap_open(const attr_svc_t *svc)
{
    char snap_path[4200], snap_err[512] = "";
    attr__snap_path(svc, snap_path, sizeof snap_path);
    attr_snap_t *snap = NULL;
    int src = attr_snap_read(snap_path, &snap, snap_err, sizeof snap_err);
    if (src != 0 && src != -ENOENT) {
        yw_log(YW_LOG_WARN, "snapshot not used (recomputing from the data): %s", snap_err);
        (void)unlink(snap_path);
    }
    return snap;
}

/**
 * 1. The database: settings (the defaults stored at the first start), the rollups of
 * pruned segments unless there is a snapshot (the conversions stay there: step 4 goes
 * through them). `ld` is the caller's (ld->pruned freed by it). Returns 0 or -EIO.
 */
static int attr__load_db(attr_svc_t *svc, int have_snap, int64_t now, attr_load_t *ld, char *err,
                         size_t errlen)
{
    memset(ld, 0, sizeof *ld);
    ld->st = &svc->st;
    ld->now_ns = now;
    ld->skip_rollups = have_snap;
    ld->want_marks = have_snap;
    svc->st.defer = 1;
    char serr[256] = "";
    grpc_status_code code = yw_store_run_sync(svc->store, attr_store_load, ld, serr, sizeof serr);
    if (code != GRPC_STATUS_OK) {
        snprintf(err, errlen, "loading attribution.db: %s", ld->err[0] ? ld->err : serr);
        return -EIO;
    }
    if (!ld->settings_found) {
        attr_settings_job_t defaults;
        memset(&defaults, 0, sizeof defaults);
        defaults.settings = svc->st.settings;
        defaults.settings.version = 1;
        defaults.settings.update_ns = now;
        code = yw_store_run_sync(svc->store, attr__store_default_settings, &defaults, serr,
                                 sizeof serr);
        if (code != GRPC_STATUS_OK) {
            snprintf(err, errlen, "storing the default settings: %s",
                     defaults.job.errmsg[0] ? defaults.job.errmsg : serr);
            return -EIO;
        }
        svc->st.settings = defaults.settings;
    }
    return 0;
}

/**
 * 2. The conversion key index (svc->ck, a reference); the snapshot, when it matches the
 * data (attr_snap.h): it has the rollups, the credits and the conversion filter that
 * steps 3 and 4 would otherwise recompute; else the rollups of pruned segments it stood
 * for. *ck_safe: the key index has every key up to it; *from_snap: the snapshot was
 * loaded. Returns 0 or a negative errno with `err`.
 */
static int attr__open_keys(attr_svc_t *svc, attr_snap_t *snap, attr_load_t *ld, uint64_t *ck_safe,
                           int *from_snap, char *err, size_t errlen)
{
    uv_loop_t *loop = svc->loop;
    char ck_dir[4200];
    snprintf(ck_dir, sizeof ck_dir, "%s/conversion-keys", svc->data_dir);
    *ck_safe = 0;
    *from_snap = 0;
    int rc = 0;
    if (mkdir(ck_dir, 0750) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot create: %s", ck_dir, strerror(-rc));
        return rc;
    }
    if ((rc = attr_ckey_open(loop, ck_dir, &svc->ck, ck_safe, err, errlen)) != 0) {
        return rc;
    }
    svc->refs++;
    if (snap == NULL) {
        return 0;
    }
    *from_snap = attr__snap_start(svc, snap, ld, *ck_safe);
    if (!*from_snap) {
        char serr[256] = "";
        grpc_status_code code =
            yw_store_run_sync(svc->store, attr_store_load_rollups, ld, serr, sizeof serr);
        if (code != GRPC_STATUS_OK) {
            snprintf(err, errlen, "loading attribution.db: %s", ld->err[0] ? ld->err : serr);
            return -EIO;
        }
    }
    return 0;
}

/**
 * 3. The exposures (svc->xs, a reference): the index files cover most of the log; what
 * they do not is read and indexed (and counted, unless the snapshot has the counts).
 * Returns 0 or a negative errno with `err` (svc->xs may be open then too).
 */
static int attr__open_exposures(attr_svc_t *svc, const attr_load_t *ld, int from_snap, int64_t now,
                                attr_exposure_store_stats_t *xst, char *err, size_t errlen)
{
    uv_loop_t *loop = svc->loop;
    memset(xst, 0, sizeof *xst);
    svc->st.skip_counts = from_snap;
    int rc = attr_exposure_store_open(loop, svc->exp_dir, svc->run_exposures, &svc->st, ld->pruned,
                                      ld->n_pruned, now, &svc->xs, xst, err, errlen);
    if (svc->xs != NULL) {
        attr_exposure_store_set_run_bytes(svc->xs, svc->run_bytes);
        if (svc->ship_xlog != NULL) {
            attr_exposure_store_set_ship(svc->xs, svc->ship_xlog, svc->ship_xlog_arg,
                                         svc->ship_linger_ns);
        }
        svc->refs++; /* the exposure store */
    }
    svc->st.skip_counts = 0;
    svc->st.defer = 0;
    return rc;
}

/**
 * The seq of the next conversion admitted. Seqs are never reused. Invariant: a new
 * conversion's seq is above every seq a claim was made up to, not only above the
 * highest stored one. The key index's files claim "every stored conversion up to `safe`
 * has its key here" and the touch mark "every conversion up to its seq has its touches
 * stored"; seqs burned by duplicates above the highest stored seq were under those
 * claims, and reusing them after a restart put a new conversion under a claim that did
 * not cover it: after a kill -9 its key was never indexed again, and late exposures
 * missed it for good (the differential test, seed 2425).
 */
static uint64_t attr__first_seq(const attr_load_t *ld, uint64_t ck_safe)
{
    uint64_t seq = ld->max_seq;
    if (ck_safe > seq) {
        seq = ck_safe;
    }
    if (ld->touch_mark.seq > seq) {
        seq = ld->touch_mark.seq;
    }
    return seq + 1;
}

int attr__recover(attr_svc_t *svc, int64_t now, attr_recovery_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (mkdir(svc->exp_dir, 0750) != 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "%s: cannot create: %s", svc->exp_dir, strerror(-rc));
        return rc;
    }
    attr_snap_t *snap = attr__snap_open(svc);
    attr_load_t ld;
    uint64_t ck_safe = 0;
    int rc = attr__load_db(svc, snap != NULL, now, &ld, err, errlen);
    if (rc == 0) {
        rc = attr__open_keys(svc, snap, &ld, &ck_safe, &out->from_snap, err, errlen);
    }
    attr_snap_free(snap);
    if (rc == 0) {
        rc = attr__open_exposures(svc, &ld, out->from_snap, now, &out->xst, err, errlen);
    }
    free(ld.pruned);
    ld.pruned = NULL;
    if (rc != 0) {
        return rc;
    }
    /* 4. Unless the snapshot was loaded: the stored conversions, one after the other:
     *    credited into the rollups, their touches looked up again in the index files
     *    (the ones found since are stored), their keys indexed where the index lacks them. */
    svc->next_conv_seq = attr__first_seq(&ld, ck_safe);
    if (!out->from_snap) {
        rc = attr__credit_stored(svc, now, ck_safe, &ld.touch_mark, &out->xst, &out->after_mark,
                                 err, errlen);
    }
    /* Every touch of an exposure in the log now is stored or in the persist list: the
     * first touch mark (attr__touch_mark()) covers the log up to its end. */
    svc->touch_mark = ld.touch_mark;
    if (rc == 0) {
        uint64_t seg = 0, size = 0;
        (void)attr_snap_log_end(svc->exp_dir, &seg, &size);
        svc->committed_seg = seg;
        svc->committed_off = size;
    }
    out->conversions = ld.conversions;
    out->rollups = ld.rollups;
    return rc;
}
