/*
 * tier_replicas.c — what keeps replicas of tier scoring on one PostgreSQL database in
 * agreement (tier_state.h declares it). Loop thread.
 *
 * The policy. Every replica serves the policy in force from memory; the database holds
 * every version and the highest is the one in force. An update, on whichever replica,
 * writes version + 1 of the database's policy under a lock and notifies
 * TIER_POLICY_CHANNEL (tier_store.h); every replica listens, reads the policy in force
 * and puts it in force as a local update does (tier_policy_in_force()): within the time
 * of a notification and a one-row read. Notices can be missed, so the policy is also
 * read again each time LISTEN comes into force (the store then calls with no payload:
 * at start, which covers a version written between the start-up load and the LISTEN,
 * and after every reconnection) and after every refresh (every --refresh-interval-ms).
 * On SQLite there is one process and none of this runs: the listener is never called,
 * and refreshes do not read the policy.
 *
 * The population needs no such notice: each replica refreshes its own from creator
 * profile (at start, every interval, right after a policy comes into force here, and on
 * RefreshPopulation), so each is never older than the interval plus one refresh, the
 * same bound as one process; scores computed from the same inputs under the same policy
 * agree. Loading another replica's population after each of its saves would read every
 * creator once more per replica for nothing fresher. The saved population is what a
 * replica starts with.
 *
 * While the database is away, health is NOT_SERVING (common/app.c, for every service on
 * PostgreSQL: load balancers and readiness probes prefer replicas that reach it), and
 * yet every method but UpdateTierPolicy answers from memory: the policy in force,
 * the population, BatchGetCreatorTiers; ScoreCreator and RefreshPopulation read creator
 * profile, not the database (a refreshed population is put in force; its save fails and
 * is logged). UpdateTierPolicy fails UNAVAILABLE and changes nothing. When the database
 * is back, health is SERVING again; if the listener lost its connection meanwhile, the
 * policy is read again.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/tier_scoring/tier_service.h"
#include "services/tier_scoring/tier_state.h"
#include "services/tier_scoring/tier_store.h"

int tier_policy_in_force(tier_state_t *st, const tier_policy_t *p)
{
    if (p->version <= st->policy.version) {
        return 0;
    }
    st->policy = *p;
    tier_rebuild(st);
    tier_refresher_trigger(st->refresher);
    return 1;
}

static void on_policy_timer(uv_timer_t *t)
{
    tier_policy_recheck(t->data);
}

void tier_policy_recheck_later(tier_state_t *st)
{
    if (!st->policy_timer_open || st->closing) {
        return;
    }
    int rc = uv_timer_start(&st->policy_timer, on_policy_timer, TIER_POLICY_RETRY_MS, 0);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "reading the policy in force: cannot arm the retry timer: %s",
               uv_strerror(rc));
    }
}

static void policy_read_done(yw_store_job_t *job, grpc_status_code status)
{
    tier_policy_read_t *j = (tier_policy_read_t *)job;
    tier_state_t *st = j->data;
    st->policy_reading = 0;
    if (status != GRPC_STATUS_OK) {
        /* Once per outage at WARN: the retries go on every second while it lasts. */
        yw_log(st->policy_read_failing ? YW_LOG_DEBUG : YW_LOG_WARN,
               "reading the policy in force failed (tried again every %d ms): %s: %s",
               TIER_POLICY_RETRY_MS, yw_status_name(status), job->errmsg);
        st->policy_read_failing = 1;
        tier_policy_recheck_later(st);
    } else {
        if (st->policy_read_failing) {
            st->policy_read_failing = 0;
            yw_log(YW_LOG_INFO, "the policy in force is read again");
        }
        if (!st->closing && tier_policy_in_force(st, &j->policy)) {
            yw_log(YW_LOG_INFO, "policy version %" PRId64 " in force (written by another replica)",
                   st->policy.version);
        }
    }
    free(j);
    if (st->policy_read_again && !st->closing) {
        st->policy_read_again = 0;
        tier_policy_recheck(st);
    }
    tier_state_release(st);
}

void tier_policy_recheck(tier_state_t *st)
{
    if (st->closing) {
        return;
    }
    if (st->policy_reading) {
        st->policy_read_again = 1;
        return;
    }
    if (st->policy_timer_open) {
        uv_timer_stop(&st->policy_timer); /* this read is the retry */
    }
    tier_policy_read_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        yw_log(YW_LOG_WARN, "reading the policy in force: out of memory");
        tier_policy_recheck_later(st);
        return;
    }
    j->job.work = tier_store_read_policy;
    j->job.done = policy_read_done;
    j->data = st;
    /* A write job although it writes nothing: writes go to the primary, which has every
     * committed version; reads may go to a standby that has not replayed it yet. */
    int rc = yw_store_write(st->store, &j->job);
    if (rc < 0) {
        yw_log(YW_LOG_WARN, "reading the policy in force: cannot queue the read: %s",
               strerror(-rc));
        free(j);
        tier_policy_recheck_later(st);
        return;
    }
    st->policy_reading = 1;
    st->holds++;
}

void tier_on_policy_notice(void *arg, const char *payload)
{
    tier_state_t *st = yw_app_state(arg);
    if (st == NULL) {
        return;
    }
    int64_t version;
    if (payload != NULL && tier_policy_notice_version(payload, &version) == 0 &&
        version <= st->policy.version) {
        return;
    }
    tier_policy_recheck(st);
}

static void on_policy_timer_closed(uv_handle_t *h)
{
    tier_state_release(h->data);
}

int tier_policy_timer_open(tier_state_t *st)
{
    int rc = uv_timer_init(st->loop, &st->policy_timer);
    if (rc != 0) {
        return rc;
    }
    st->policy_timer.data = st;
    st->policy_timer_open = 1;
    st->holds++;
    return 0;
}

void tier_policy_timer_close(tier_state_t *st)
{
    if (st->policy_timer_open) {
        st->policy_timer_open = 0;
        uv_close((uv_handle_t *)&st->policy_timer, on_policy_timer_closed);
    }
}

