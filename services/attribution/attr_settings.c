/*
 * attr_settings.c — GetAttributionSettings and UpdateAttributionSettings. New settings
 * are stored, then every conversion is restated under them: the gate closes, the stored
 * conversions not in memory are credited on a reader thread into a new copy of the
 * rollups (attr_restate_t), the cached ones on the loop, and the copy replaces the
 * rollups. The rollup audit (--audit-rollups-ms) reads the same way and compares.
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/attribution/attr_validate.h"

static void attr__settings_msg(const attr_settings_t *s,
                               Yaowei__Attribution__V1__AttributionSettings *m,
                               Google__Protobuf__Duration d[4], Google__Protobuf__Timestamp *ts,
                               char currency[4])
{
    yaowei__attribution__v1__attribution_settings__init(m);
    int64_t v[4] = {s->click_window_ns, s->view_window_ns, s->half_life_ns, s->late_window_ns};
    for (int i = 0; i < 4; i++) {
        google__protobuf__duration__init(&d[i]);
        d[i].seconds = v[i] / ATTR_NS_PER_S;
        d[i].nanos = (int32_t)(v[i] % ATTR_NS_PER_S);
    }
    m->click_window = &d[0];
    m->view_window = &d[1];
    m->time_decay_half_life = &d[2];
    m->late_window = &d[3];
    m->engaged_view_ms = s->engaged_view_ms;
    m->default_model = (Yaowei__Attribution__V1__AttributionModel)s->default_model;
    memcpy(currency, s->currency, 4);
    m->currency = currency;
    m->version = s->version;
    attr__ts(s->update_ns, ts);
    m->update_time = ts;
}

static void attr__reply_settings(yw_call_t *call, const attr_settings_t *s)
{
    Yaowei__Attribution__V1__AttributionSettings m;
    Google__Protobuf__Duration d[4];
    Google__Protobuf__Timestamp ts;
    char cur[4];
    attr__settings_msg(s, &m, d, &ts, cur);
    (void)yw_call_reply(call, &m.base);
}

void attr__on_get_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    attr__reply_settings(call, &attr__svc(call)->st.settings);
}

/** UpdateAttributionSettings: the new settings on their way to the database. */
typedef struct st_attr_settings_write_t {
    attr_settings_job_t j;
    attr_svc_t *svc;
    yw_call_t *call;
} attr_settings_write_t;

/**
 * A restatement: the stored conversions that are not in memory, read on a reader thread
 * and credited under the new settings into `tmp` (its rollups and conversion filter);
 * the ones in memory (`skip`) are the loop's to restate. Meanwhile nothing changes
 * conversions or rollups (the gate, attr__gate()).
 */
typedef struct st_attr_restate_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    attr_settings_write_t *sw;
    char **skip; /* the cached ones' ids, sorted (strcmp) */
    size_t n_skip;
    uint64_t *skip_seq; /* the pending ones' seqs (a stored row may be theirs), sorted */
    size_t n_skip_seq;
    attr_state_t tmp;
    int64_t now;
    int64_t horizon_before;
    uint64_t restated;
    int audit;    /* not a restatement: attr__audit() (sw is NULL) */
    uint64_t gen; /* svc->restatements when it began */
    char err[256];
} attr_restate_t;

static int attr__cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int attr__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int attr__restate_visit(void *arg, const attr_convset_t *one)
{
    attr_restate_t *rs = arg;
    const attr_stored_conv_t *sc = &one->convs[0];
    const char *id = sc->in.order_id;
    if (rs->n_skip > 0 && bsearch(&id, rs->skip, rs->n_skip, sizeof *rs->skip, attr__cmp_str)) {
        return 0;
    }
    /* A pending one's own row (not committed: not in the rollups yet). Not by id: a
     * pending duplicate of a stored order must not hide the stored one. */
    if (rs->n_skip_seq > 0 &&
        bsearch(&sc->in.seq, rs->skip_seq, rs->n_skip_seq, sizeof *rs->skip_seq, attr__cmp_u64)) {
        return 0;
    }
    attr_conv_t *c = attr_conv_new(&sc->in, sc->refunded);
    int rc = c != NULL ? attr__add_stored_touches(&rs->tmp, c, one, 0) : -ENOMEM;
    if (rc == 0) {
        rc = attr_conv_apply(&rs->tmp, c);
    }
    if (rc == 0 && !attr_exposure_past_horizon(&rs->tmp, c->occur_ns, rs->now)) {
        rc = attr_state_conv_filter_add(&rs->tmp, c->vp_hash, c->occur_ns);
    }
    attr_conv_free(c);
    rs->restated++;
    return rc;
}

static grpc_status_code attr__restate_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_restate_t *rs = (attr_restate_t *)job;
    int rc = attr_store_scan_conversions(conn, attr__restate_visit, rs, rs->err, sizeof rs->err);
    if (rc != 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "restating the stored conversions: %.200s",
                 rs->err[0] ? rs->err : strerror(-rc));
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_OK;
}

static void attr__restate_free(attr_restate_t *rs)
{
    for (size_t i = 0; i < rs->n_skip; i++) {
        free(rs->skip[i]);
    }
    free(rs->skip);
    free(rs->skip_seq);
    attr_state_free(&rs->tmp);
    free(rs);
}

static int attr__restate_submit(attr_restate_t *rs);
static int attr__restate_start(attr_svc_t *svc, attr_settings_write_t *sw, attr_restate_t **out);

/** One figure that differs (attr_state_audit()): logged, the first few. */
static void attr__audit_diff(void *arg, const char *creator, size_t len, int32_t day,
                             const char *what, int64_t got, int64_t want)
{
    int *n = arg;
    if ((*n)++ < 20) {
        yw_log(YW_LOG_ERROR, "audit: creator %.*s day %d %s: rollups %lld, recomputed %lld",
               (int)(creator != NULL ? len : 1), creator != NULL ? creator : "-", (int)day, what,
               (long long)got, (long long)want);
    }
}

/** An audit's stored conversions are read: the rollups are checked against them. */
static void attr__audit_done(attr_restate_t *rs, grpc_status_code status)
{
    attr_svc_t *svc = rs->svc;
    /* A restatement begun meanwhile changes the settings or the rollups under it. */
    if (status == GRPC_STATUS_OK && !svc->stopping && rs->gen == svc->restatements) {
        int n = 0;
        int rc = attr_state_audit(&svc->st, &rs->tmp, attr__audit_diff, &n);
        svc->audits++;
        if (rc != 0) {
            yw_metric_add(svc->audit_diffs, rc > 0 ? (uint64_t)rc : 1);
        }
        yw_log(rc == 0 ? YW_LOG_DEBUG : YW_LOG_ERROR,
               "audit %llu: %d rollup figures differ from the %llu stored and %zu cached "
               "conversions",
               (unsigned long long)svc->audits, rc, (unsigned long long)rs->restated,
               svc->st.n_cached);
    }
    attr__restate_free(rs);
    attr__gate_open(svc); /* (evicts once it opens) */
    attr__unref(svc);
}

/**
 * The rollup audit (--audit-rollups-ms, a test aid): at a tick, with nothing else in the
 * gate, the credit rollups are recomputed from the stored conversions not in memory plus
 * the cached ones, and compared (attr_state_audit()); differences are logged as errors.
 */
void attr__audit(attr_svc_t *svc, int64_t now)
{
    if (svc->audit_ns == 0 || now - svc->audit_last_ns < svc->audit_ns || svc->restating ||
        svc->settings_busy || svc->restate != NULL || svc->stopping) {
        return;
    }
    svc->audit_last_ns = now;
    attr_restate_t *rs = NULL;
    (void)attr__restate_start(svc, NULL, &rs);
}

static void attr__on_restate_read(yw_store_job_t *job, grpc_status_code status)
{
    attr_restate_t *rs = (attr_restate_t *)job;
    attr_svc_t *svc = rs->svc;
    attr_state_t *st = &svc->st;
    attr_settings_write_t *sw = rs->sw;
    if (rs->audit) {
        attr__audit_done(rs, status);
        return;
    }
    if (status != GRPC_STATUS_OK) {
        if (!svc->stopping) {
            /* The new settings are stored: the rollups must follow. Again at a tick. */
            yw_log(YW_LOG_ERROR, "settings v%lld: %s (will retry)",
                   (long long)sw->j.settings.version, job->errmsg);
            svc->restate = rs;
            attr__unref(svc); /* the read's (a retry takes its own) */
            return;
        }
        yw_call_fail(sw->call, GRPC_STATUS_UNAVAILABLE,
                     "settings: stored, but shutting down before they were applied; they "
                     "are in force after a restart");
        free(sw);
        attr__restate_free(rs);
        svc->settings_busy = 0;
        attr__gate_open(svc);
        attr__unref(svc);
        return;
    }
    int rc = attr_state_replace_credits(st, &rs->tmp, &sw->j.settings);
    if (rc == 0) {
        attr_state_conv_filter_take(st, &rs->tmp);
        int64_t now = attr__now();
        for (attr_conv_t *c = st->lru_head; c != NULL && rc == 0; c = c->lru_next) {
            if (!attr_exposure_past_horizon(st, c->occur_ns, now)) {
                rc = attr_state_conv_filter_add(st, c->vp_hash, c->occur_ns);
            }
        }
    }
    if (rc != 0) {
        yw_log(YW_LOG_ERROR,
               "settings v%lld: cannot restate the conversions (%s): reports "
               "stay wrong until a restart",
               (long long)sw->j.settings.version, strerror(-rc));
    }
    yw_log(YW_LOG_INFO,
           "settings v%lld in force; %llu conversions restated (%zu of them in memory); join "
           "horizon %llds (was %llds)",
           (long long)sw->j.settings.version, (unsigned long long)(rs->restated + st->n_cached),
           st->n_cached, (long long)(attr_settings_horizon(&sw->j.settings) / ATTR_NS_PER_S),
           (long long)(rs->horizon_before / ATTR_NS_PER_S));
    attr__reply_settings(sw->call, &st->settings);
    free(sw);
    attr__restate_free(rs);
    svc->settings_busy = 0;
    attr__gate_open(svc); /* (evicts once it opens) */
    /* The restatement's copy of the credit rollups was built on a reader thread: its
     * arena keeps the pages unless given back. */
    (void)malloc_trim(0);
    attr__unref(svc);
}

static int attr__restate_submit(attr_restate_t *rs)
{
    attr_svc_t *svc = rs->svc;
    attr_state_free(&rs->tmp);
    attr_state_init(&rs->tmp);
    rs->tmp.settings = rs->sw != NULL ? rs->sw->j.settings : svc->st.settings;
    attr_settings_rules(&rs->tmp.settings, &rs->tmp.rules);
    rs->restated = 0;
    rs->err[0] = '\0';
    rs->job.work = attr__restate_work;
    rs->job.done = attr__on_restate_read;
    int rc = yw_store_read(svc->store, &rs->job);
    if (rc == 0) {
        svc->refs++;
    }
    return rc;
}

/**
 * Closes the gate and starts reading the stored conversions that are not in memory into
 * a restatement under sw's settings, or (sw NULL) an audit under the current ones
 * (attr__audit()). Returns 0 (*out on its way) or a negative errno (the gate stays open).
 */
static int attr__restate_start(attr_svc_t *svc, attr_settings_write_t *sw, attr_restate_t **out)
{
    attr_state_t *st = &svc->st;
    attr_restate_t *rs = calloc(1, sizeof *rs);
    int rc = rs != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        rs->svc = svc;
        rs->sw = sw;
        rs->audit = sw == NULL;
        svc->restatements += !rs->audit;
        rs->gen = svc->restatements;
        rs->now = attr__now();
        rs->horizon_before = attr_settings_horizon(&st->settings);
        attr_state_init(&rs->tmp);
        if ((rs->skip = malloc((st->orders.count ? st->orders.count : 1) * sizeof *rs->skip)) ==
                NULL ||
            (rs->skip_seq = malloc((st->pend_orders.count ? st->pend_orders.count : 1) *
                                   sizeof *rs->skip_seq)) == NULL) {
            rc = -ENOMEM;
        }
    }
    for (size_t i = 0; rc == 0 && i < st->pend_orders.cap; i++) {
        if (st->pend_orders.slots[i].hash != 0) {
            const attr_conv_t *c = st->pend_orders.slots[i].val;
            rs->skip_seq[rs->n_skip_seq++] = c->seq;
        }
    }
    for (size_t i = 0; rc == 0 && i < st->orders.cap; i++) {
        if (st->orders.slots[i].hash != 0) {
            const attr_conv_t *c = st->orders.slots[i].val;
            if ((rs->skip[rs->n_skip] = attr__strndup(c->order_id, c->order_id_len)) == NULL) {
                rc = -ENOMEM;
            } else {
                rs->n_skip++;
            }
        }
    }
    if (rc == 0) {
        qsort(rs->skip, rs->n_skip, sizeof *rs->skip, attr__cmp_str);
        qsort(rs->skip_seq, rs->n_skip_seq, sizeof *rs->skip_seq, attr__cmp_u64);
        attr__gate_close(svc);
        rc = attr__restate_submit(rs);
        if (rc != 0) {
            attr__gate_open(svc);
        }
    }
    if (rc != 0 && rs != NULL) {
        attr__restate_free(rs);
        rs = NULL;
    }
    *out = rs;
    return rc;
}

static void attr__on_settings_written(yw_store_job_t *job, grpc_status_code status)
{
    attr_settings_write_t *sw = (attr_settings_write_t *)job;
    attr_svc_t *svc = sw->svc;
    if (status != GRPC_STATUS_OK) {
        svc->settings_busy = 0;
        yw_call_finish(sw->call, status, "settings: %s", job->errmsg);
        free(sw);
        attr__unref(svc); /* the write's */
        return;
    }
    /* Durable: now restate every conversion under the new settings. Until that is done
     * nothing changes conversions or rollups (they wait), nothing leaves the cache, and
     * the conversions in memory (pending or cached) are restated from memory. */
    attr_restate_t *rs = NULL;
    int rc = attr__restate_start(svc, sw, &rs);
    if (rc != 0) {
        /* Stored but not in force: the next start-up credits everything under it. */
        yw_log(YW_LOG_ERROR, "settings v%lld stored but cannot be applied now: %s",
               (long long)sw->j.settings.version, strerror(-rc));
        svc->settings_busy = 0;
        yw_call_finish(sw->call, GRPC_STATUS_UNAVAILABLE,
                       "settings: stored, but cannot restate the conversions now (%s); they "
                       "are in force after a restart",
                       strerror(-rc));
        free(sw);
    }
    attr__unref(svc); /* the write's (a restatement on its way holds its own) */
}

/* A non-negative integer metadata value into *out (-1 when absent); -1 when malformed. */
static int attr__md_int(yw_call_t *call, const char *key, int64_t *out)
{
    size_t len = 0;
    const char *v = yw_call_metadata(call, key, &len);
    *out = -1;
    if (v == NULL) {
        return 0;
    }
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (INT64_MAX - 9) / 10) {
            yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "metadata %s: not a non-negative integer", key);
            return -1;
        }
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

/*
 * The settings metadata of an update a cluster's front forwards to a partition (ignored
 * on a call that names no partition: a client's): yw-settings-expect (the version the
 * partition must be at, else ABORTED), yw-settings-version (the version to set: a
 * partition there already answers its settings unchanged), yw-settings-time (the update
 * time every partition records). Returns 0, or -1 with the call failed.
 */
static int attr__settings_md(yw_call_t *call, int64_t *expect, int64_t *target, int64_t *when)
{
    if (yw_call_metadata(call, "yw-partition", NULL) == NULL) {
        return 0;
    }
    if (attr__md_int(call, "yw-settings-expect", expect) != 0 ||
        attr__md_int(call, "yw-settings-version", target) != 0 ||
        attr__md_int(call, "yw-settings-time", when) != 0) {
        return -1;
    }
    return 0;
}

void attr__on_update_settings(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req =
        (const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *)msg;
    attr_svc_t *svc = attr__svc(call);
    attr_state_t *st = &svc->st;
    attr_settings_t next;
    unsigned changed = 0;
    char err[256];
    /* A cluster's front sets every partition to one version (attr_front_settings.c). */
    int64_t expect = -1, target = -1, when = -1;
    if (attr__settings_md(call, &expect, &target, &when) != 0) {
        return;
    }
    if (expect >= 0 && st->settings.version != expect) {
        yw_call_finish(call, GRPC_STATUS_ABORTED,
                       "settings: version %lld, not %lld: they changed meanwhile; retry",
                       (long long)st->settings.version, (long long)expect);
        return;
    }
    if (target > 0 && st->settings.version >= target) {
        attr__reply_settings(call, &st->settings); /* already there: once per version */
        return;
    }
    grpc_status_code code =
        attr_settings_apply(req, &st->settings, &next, &changed, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (yw_disk_writable(svc->disk, err, sizeof err) != 0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
        return;
    }
    if (strcmp(next.currency, st->settings.currency) != 0 &&
        (st->n_stored_convs > 0 || st->orders.count > 0 || st->pend_orders.count > 0)) {
        yw_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                       "settings.currency: cannot change from %s while conversions are stored",
                       st->settings.currency);
        return;
    }
    if (svc->settings_busy) {
        yw_call_fail(call, GRPC_STATUS_ABORTED, "settings: another update is being written; retry");
        return;
    }
    attr_settings_write_t *sw = calloc(1, sizeof *sw);
    if (sw == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    next.version = target > 0 ? target : st->settings.version + 1;
    next.update_ns = when > 0 ? when : attr__now();
    sw->svc = svc;
    sw->call = call;
    sw->j.settings = next;
    sw->j.job.work = attr_store_put_settings;
    sw->j.job.done = attr__on_settings_written;
    int rc = yw_store_write(svc->store, &sw->j.job);
    if (rc != 0) {
        free(sw);
        yw_call_finish(call, GRPC_STATUS_UNAVAILABLE, "settings: cannot queue a write: %s",
                       strerror(-rc));
        return;
    }
    svc->settings_busy = 1;
    svc->refs++;
}

void attr__restate_retry(attr_svc_t *svc)
{
    if (svc->restate != NULL && !svc->stopping) {
        attr_restate_t *rs = svc->restate;
        svc->restate = NULL;
        if (attr__restate_submit(rs) != 0) {
            svc->restate = rs;
        }
    }
}

void attr__restate_cancel(attr_svc_t *svc)
{
    if (svc->restate != NULL) {
        /* A restatement waiting to be tried again: it will be at the next start-up (the
         * settings are stored); what waited for it goes on now. */
        attr_restate_t *rs = svc->restate;
        svc->restate = NULL;
        yw_call_fail(rs->sw->call, GRPC_STATUS_UNAVAILABLE,
                     "settings: stored, but shutting down before they were applied; they "
                     "are in force after a restart");
        free(rs->sw);
        attr__restate_free(rs);
        svc->settings_busy = 0;
        attr__gate_open(svc);
    }
}
