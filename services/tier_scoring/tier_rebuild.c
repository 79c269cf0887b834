/*
 * tier_rebuild.c — the population in force (tier_service.h): builds on the libuv thread
 * pool, swapped in on the loop, saved by one write job at a time (the newest wins), and
 * the RefreshPopulation calls that wait for a build (a list and one timer for their
 * deadlines and cancellations). Loop thread, except build_work().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/tier_scoring/tier_state.h"
#include "services/tier_scoring/tier_store.h"
#include "yaowei/tier/v1/tier.pb-c.h"

typedef struct st_tier_build_t tier_build_t;

/** How often RefreshPopulation calls that wait are checked for cancellation. */
#define TIER_WAIT_POLL_MS 200

/* ---- builds and saves of the population ---- */

struct st_tier_build_t {
    uv_work_t work;
    tier_state_t *st;
    tier_snapshot_t *snap; /* a reference */
    tier_policy_t policy;
    int64_t now_s;
    int32_t now_ns;
    tier_population_t *out;
    int rc;
};

static void save_population(tier_state_t *st);
static void waiters_answer(tier_state_t *st);

static void save_done(yw_store_job_t *job, grpc_status_code status)
{
    tier_save_job_t *j = (tier_save_job_t *)job;
    tier_state_t *st = j->data;
    if (status != GRPC_STATUS_OK) {
        yw_log(YW_LOG_WARN, "saving the population failed: %s: %s", yw_status_name(status),
               job->errmsg);
    } else if (j->skipped) {
        yw_log(YW_LOG_DEBUG, "population not saved: another replica was saving its own");
    } else {
        yw_log(YW_LOG_DEBUG, "population saved: %zu creators", j->saved);
    }
    tier_population_unref((tier_population_t *)j->pop);
    free(j);
    st->saving = 0;
    if (st->save_again && !st->closing) {
        st->save_again = 0;
        save_population(st);
    }
    tier_state_release(st);
}

/* Saves the newest population (one save at a time; a save asked for meanwhile follows). */
static void save_population(tier_state_t *st)
{
    if (st->closing) {
        return;
    }
    if (st->saving) {
        st->save_again = 1;
        return;
    }
    char err[TIER_ERR_BUFSZ];
    if (yw_disk_writable(st->disk, err, sizeof err) != 0) {
        yw_log(YW_LOG_WARN, "saving the population: skipped, the next refresh saves it: %s", err);
        return;
    }
    tier_save_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        yw_log(YW_LOG_WARN, "saving the population: out of memory");
        return;
    }
    j->job.work = tier_store_save;
    j->job.done = save_done;
    j->data = st;
    j->pop = tier_population_ref(st->pop);
    int rc = yw_store_write(st->store, &j->job);
    if (rc < 0) {
        yw_log(YW_LOG_WARN, "saving the population: cannot queue the write: %s", strerror(-rc));
        tier_population_unref(st->pop);
        free(j);
        return;
    }
    st->saving = 1;
    st->holds++;
}

static void build_work(uv_work_t *w)
{
    tier_build_t *b = w->data;
    b->rc = tier_population_build(b->snap, &b->policy, b->now_s, b->now_ns, &b->out);
}

static void build_after(uv_work_t *w, int status)
{
    tier_build_t *b = w->data;
    tier_state_t *st = b->st;
    st->building = 0;
    if (status != 0 || b->rc != 0) {
        const char *why = strerror(status != 0 ? -status : -b->rc);
        yw_log(YW_LOG_ERROR, "scoring the population failed: %s", why);
        char err[TIER_ERR_BUFSZ];
        snprintf(err, sizeof err, "scoring the refreshed population failed: %s", why);
        tier_waiters_fail(st, 1, b->snap->seq, GRPC_STATUS_INTERNAL, err);
    } else if (st->closing) {
        tier_population_unref(b->out);
    } else {
        tier_population_unref(st->pop);
        st->pop = b->out;
        yw_log(YW_LOG_DEBUG, "population scored: %zu creators under policy version %" PRId64,
               st->pop->snap->n, st->pop->policy.version);
        save_population(st);
        waiters_answer(st);
    }
    tier_snapshot_unref(b->snap);
    free(b);
    if (st->build_again && !st->closing) {
        st->build_again = 0;
        tier_rebuild(st);
    }
    tier_state_release(st);
}

void tier_rebuild(tier_state_t *st)
{
    if (st->closing) {
        return;
    }
    if (st->building) {
        st->build_again = 1;
        return;
    }
    tier_build_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        yw_log(YW_LOG_ERROR, "scoring the population: out of memory");
        return;
    }
    b->st = st;
    b->snap = tier_snapshot_ref(st->snapshot);
    b->policy = st->policy;
    yw_wallclock_now(&b->now_s, &b->now_ns);
    b->work.data = b;
    int rc = uv_queue_work(st->loop, &b->work, build_work, build_after);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "scoring the population: %s", uv_strerror(rc));
        tier_snapshot_unref(b->snap);
        free(b);
        return;
    }
    st->building = 1;
    st->holds++;
}

void tier_on_snapshot(void *arg, tier_snapshot_t *snap)
{
    tier_state_t *st = arg;
    tier_snapshot_unref(st->snapshot);
    st->snapshot = snap;
    tier_rebuild(st);
    /* Replicas: a safety net under the policy notices (tier_replicas.c), once a refresh. */
    if (yw_store_is_postgres(st->store)) {
        tier_policy_recheck(st);
    }
}

/* ---- RefreshPopulation ---- */

/* A RefreshPopulation call, waiting until a population built from refresh `seq` (or a
 * later one) is in force. */
struct st_tier_waiter_t {
    yw_call_t *call;
    uint64_t seq;
    tier_waiter_t *next;
};

static void on_wait_timer(uv_timer_t *t);

/* Arms the wait timer for the nearest deadline of a waiting call (polling for
 * cancellation meanwhile), or stops it when nobody waits. */
static void wait_timer_update(tier_state_t *st)
{
    if (!st->wait_timer_open) {
        return;
    }
    if (st->waiters == NULL) {
        uv_timer_stop(&st->wait_timer);
        return;
    }
    int64_t next = TIER_WAIT_POLL_MS;
    for (const tier_waiter_t *w = st->waiters; w != NULL; w = w->next) {
        int64_t ms = yw_call_remaining_ms(w->call);
        if (ms < next) {
            next = ms > 0 ? ms : 0;
        }
    }
    int rc = uv_timer_start(&st->wait_timer, on_wait_timer, (uint64_t)next, 0);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "RefreshPopulation: cannot arm the wait timer: %s", uv_strerror(rc));
    }
}

/* Finishes the waiting calls whose caller is gone: at their deadline, or cancelled. */
static void on_wait_timer(uv_timer_t *t)
{
    tier_state_t *st = t->data;
    for (tier_waiter_t **pp = &st->waiters; *pp != NULL;) {
        tier_waiter_t *w = *pp;
        if (!yw_call_is_cancelled(w->call)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (yw_call_remaining_ms(w->call) <= 0) {
            yw_call_finish(w->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                           "deadline exceeded waiting for refresh %" PRIu64
                           " of the population (it goes on)",
                           w->seq);
        } else {
            yw_call_finish(w->call, GRPC_STATUS_CANCELLED,
                           "cancelled while waiting for refresh %" PRIu64
                           " of the population (the caller went away, or the service is "
                           "shutting down)",
                           w->seq);
        }
        free(w);
    }
    wait_timer_update(st);
}

static void reply_refreshed(yw_call_t *call, const tier_population_t *pop)
{
    Google__Protobuf__Timestamp refreshed = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    refreshed.seconds = pop->snap->time_s;
    refreshed.nanos = pop->snap->time_ns;
    Yaowei__Tier__V1__RefreshPopulationResponse resp =
        YAOWEI__TIER__V1__REFRESH_POPULATION_RESPONSE__INIT;
    resp.refresh_time = &refreshed;
    resp.total_creators = (int64_t)pop->snap->n;
    resp.policy_version = pop->policy.version;
    yw_call_reply(call, &resp.base);
}

/* A population was swapped in: answer the calls that waited for its refresh or an
 * earlier one. */
static void waiters_answer(tier_state_t *st)
{
    uint64_t built = st->pop->snap->seq; /* 0 (loaded from the store) answers nobody */
    for (tier_waiter_t **pp = &st->waiters; *pp != NULL;) {
        tier_waiter_t *w = *pp;
        if (w->seq > built) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        reply_refreshed(w->call, st->pop);
        free(w);
    }
    wait_timer_update(st);
}

/* Fails the calls waiting for a refresh numbered within [seq_min, seq_max]. */
void tier_waiters_fail(tier_state_t *st, uint64_t seq_min, uint64_t seq_max, grpc_status_code code,
                       const char *why)
{
    for (tier_waiter_t **pp = &st->waiters; *pp != NULL;) {
        tier_waiter_t *w = *pp;
        if (w->seq < seq_min || w->seq > seq_max) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        yw_call_fail(w->call, code, why);
        free(w);
    }
    wait_timer_update(st);
}

/*
 * Refresh `seq` failed: the calls waiting for it fail (a later refresh is not theirs to
 * wait for: they asked for one, and it failed). Those waiting for an earlier one that
 * succeeded are answered when its population is built.
 */
void tier_on_refresh_failed(void *arg, uint64_t seq, grpc_status_code code, const char *error)
{
    tier_state_t *st = arg;
    char err[TIER_ERR_BUFSZ];
    if (code == GRPC_STATUS_RESOURCE_EXHAUSTED) {
        snprintf(err, sizeof err, "the refresh failed: %s", error);
    } else {
        code = GRPC_STATUS_UNAVAILABLE;
        snprintf(err, sizeof err, "creator profile is unavailable: the refresh failed: %s", error);
    }
    tier_waiters_fail(st, seq, seq, code, err);
}

/*
 * Refreshes the population now and answers once a refresh that started at or after this
 * call has been read from creator profile and scored. Calls that arrive together share
 * one refresh.
 */
void tier_refresh_population(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    tier_state_t *st = tier_state_of(call);
    if (yw_call_abandoned(call)) {
        return;
    }
    tier_waiter_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = call;
    w->seq = tier_refresher_trigger(st->refresher);
    w->next = st->waiters;
    st->waiters = w;
    wait_timer_update(st);
}
