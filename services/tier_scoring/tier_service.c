/*
 * tier_service.c — the handlers of yaowei.tier.v1.TierScoringService, the method table,
 * init and fini. Each handler reads like its method's documentation in tier.proto:
 * validate, do, reply. See tier_service.h for the state and its lifetime, tier_state.h
 * for its struct; the population in force and RefreshPopulation are tier_rebuild.c's.
 *
 * Replies are packed inside yw_call_reply(), so they may point at the population, the
 * peer's responses or the stack; everything a reply points at is freed after it.
 */
#include "services/tier_scoring/tier_service.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/client.h"
#include "common/page_token.h"
#include "services/tier_scoring/tier_policy.h"
#include "services/tier_scoring/tier_population.h"
#include "services/tier_scoring/tier_refresh.h"
#include "services/tier_scoring/tier_request.h"
#include "services/tier_scoring/tier_score.h"
#include "services/tier_scoring/tier_state.h"
#include "services/tier_scoring/tier_store.h"
#include "yaowei/creator/v1/creator.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define BATCH_GET_CREATORS "/yaowei.creator.v1.CreatorProfileService/BatchGetCreators"
#define BATCH_GET_STATS "/yaowei.creator.v1.CreatorProfileService/BatchGetCreatorStats"

_Static_assert((int)TIER_LEVEL_HEAD == (int)YAOWEI__TIER__V1__TIER__TIER_HEAD &&
                   (int)TIER_LEVEL_MID == (int)YAOWEI__TIER__V1__TIER__TIER_MID &&
                   (int)TIER_LEVEL_TAIL == (int)YAOWEI__TIER__V1__TIER__TIER_TAIL &&
                   (int)TIER_LEVEL_AMATEUR == (int)YAOWEI__TIER__V1__TIER__TIER_AMATEUR,
               "tier_level_t mirrors yaowei.tier.v1.Tier");

/* ---- replies ---- */

/*
 * Non-zero (and the call finished with UNAVAILABLE) when `snap` (the population's, or
 * the newest) was never read from creator profile: before any population is known.
 */
static int no_population(yw_call_t *call, const tier_state_t *st, const tier_snapshot_t *snap)
{
    if (snap->time_s != 0) {
        return 0;
    }
    const char *why = tier_refresher_last_error(st->refresher);
    char err[TIER_ERR_BUFSZ];
    snprintf(err, sizeof err,
             "the creator population has not been read from creator profile yet (%s)",
             why[0] != '\0' ? why : "the first refresh is in progress");
    yw_call_fail(call, GRPC_STATUS_UNAVAILABLE, err);
    return 1;
}

/*
 * One TierScore message. `components` is the caller's storage; `compute_time` may be
 * shared by many messages; strings are borrowed.
 */
static void score_msg(Yaowei__Tier__V1__TierScore *m, Yaowei__Tier__V1__ScoreComponents *components,
                      const char *creator_id, const char *category, int64_t followers,
                      const tier_result_t *r, const tier_standing_t *s, int64_t policy_version,
                      Google__Protobuf__Timestamp *compute_time)
{
    yaowei__tier__v1__tier_score__init(m);
    yaowei__tier__v1__score_components__init(components);
    components->reach = r->components.reach;
    components->engagement = r->components.engagement;
    components->video_momentum = r->components.video_momentum;
    components->consistency = r->components.consistency;
    m->creator_id = (char *)creator_id; /* protobuf-c wants non-const; only read */
    m->tier = (Yaowei__Tier__V1__Tier)r->tier;
    m->score = r->score;
    m->components = components;
    m->engagement_rate_raw = r->rate_raw;
    m->engagement_rate_smoothed = r->rate_smoothed;
    m->engagement_rate_lower_bound = r->rate_lower_bound;
    m->percentile = s->percentile;
    m->rising = s->rising != 0;
    m->insufficient_data = r->insufficient_data != 0;
    m->policy_version = policy_version;
    m->compute_time = compute_time;
    m->category = (char *)category;
    m->followers = followers;
}

/* Storage of up to n TierScore messages; free with scores_free(). */
typedef struct {
    Yaowei__Tier__V1__TierScore *msgs;
    Yaowei__Tier__V1__ScoreComponents *components;
    Yaowei__Tier__V1__TierScore **ptrs;
} scores_t;

static int scores_alloc(scores_t *s, size_t n)
{
    size_t k = n ? n : 1;
    s->msgs = calloc(k, sizeof *s->msgs);
    s->components = calloc(k, sizeof *s->components);
    s->ptrs = calloc(k, sizeof *s->ptrs);
    if (s->msgs == NULL || s->components == NULL || s->ptrs == NULL) {
        free(s->msgs);
        free(s->components);
        free(s->ptrs);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        s->ptrs[i] = &s->msgs[i];
    }
    return 0;
}

static void scores_free(scores_t *s)
{
    free(s->msgs);
    free(s->components);
    free(s->ptrs);
}

static int32_t window_days(void *arg)
{
    const tier_state_t *st = arg;
    return st->policy.window_days;
}

/* ---- ScoreCreator, BatchScoreCreators ---- */

/* One scoring of creators read fresh from creator profile. */
typedef struct st_tier_fetch_t {
    yw_call_t *call;
    tier_state_t *st;
    char *const *ids; /* borrowed from the request */
    size_t n;
    int single;           /* ScoreCreator: reply the one TierScore */
    tier_policy_t policy; /* in force when the call arrived */
    int pending;          /* peer calls in flight */
    Yaowei__Creator__V1__BatchGetCreatorsResponse *creators;
    Yaowei__Creator__V1__BatchGetCreatorStatsResponse *stats;
    /* the first failure, creators' before stats' */
    grpc_status_code code;
    const char *failed;
    char detail[512];
} tier_fetch_t;

static void fetch_free(tier_fetch_t *f)
{
    if (f->creators != NULL) {
        protobuf_c_message_free_unpacked(&f->creators->base, NULL);
    }
    if (f->stats != NULL) {
        protobuf_c_message_free_unpacked(&f->stats->base, NULL);
    }
    free(f);
}

/* Finishes the call with creator profile's failure, named for this service's caller. */
static void fail_peer(tier_fetch_t *f)
{
    char err[TIER_ERR_BUFSZ];
    switch (f->code) {
    case GRPC_STATUS_NOT_FOUND:
        if (f->single) {
            snprintf(err, sizeof err, "creator_id: creator \"%s\" not found", f->ids[0]);
        } else {
            /* creator profile names them as creator_ids[i], as this request does */
            snprintf(err, sizeof err, "%s", f->detail);
        }
        break;
    case GRPC_STATUS_UNAVAILABLE:
        snprintf(err, sizeof err, "creator profile is unavailable (%s: %s)", f->failed, f->detail);
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        snprintf(err, sizeof err, "deadline exceeded waiting for creator profile (%s)", f->failed);
        break;
    default:
        snprintf(err, sizeof err, "creator profile: %s: %s", f->failed, f->detail);
        break;
    }
    yw_call_fail(f->call, f->code, err);
}

/* Both reads are in: score each creator and reply, in request order. */
static void fetch_reply(tier_fetch_t *f)
{
    const Yaowei__Creator__V1__BatchGetCreatorsResponse *cr = f->creators;
    const Yaowei__Creator__V1__BatchGetCreatorStatsResponse *sr = f->stats;
    const tier_population_t *pop = f->st->pop;
    char err[TIER_ERR_BUFSZ];
    if (cr->n_creators != f->n || sr->n_stats != f->n) {
        snprintf(err, sizeof err, "creator profile answered %zu creators and %zu stats for %zu ids",
                 cr->n_creators, sr->n_stats, f->n);
        yw_call_fail(f->call, GRPC_STATUS_INTERNAL, err);
        return;
    }
    scores_t out;
    if (scores_alloc(&out, f->n) != 0) {
        yw_call_fail(f->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    yw_wallclock_now(&now.seconds, &now.nanos);
    for (size_t i = 0; i < f->n; i++) {
        const Yaowei__Creator__V1__Creator *c = cr->creators[i];
        const Yaowei__Creator__V1__CreatorStats *s = sr->stats[i];
        if (strcmp(c->creator_id, f->ids[i]) != 0 || strcmp(s->creator_id, f->ids[i]) != 0) {
            snprintf(err, sizeof err, "creator profile answered out of order at creator_ids[%zu]",
                     i);
            yw_call_fail(f->call, GRPC_STATUS_INTERNAL, err);
            scores_free(&out);
            return;
        }
        tier_input_t in;
        const char *category = tier_input_of(c, s, &in);
        tier_result_t r;
        tier_score_compute(&in, &f->policy, tier_population_prior(pop, category), &r);
        tier_standing_t standing = tier_population_standing(pop, c->creator_id, category, &r,
                                                            f->policy.rising_top_fraction);
        score_msg(&out.msgs[i], &out.components[i], c->creator_id, category, c->followers, &r,
                  &standing, f->policy.version, &now);
    }
    if (f->single) {
        yw_call_reply(f->call, &out.msgs[0].base);
    } else {
        Yaowei__Tier__V1__BatchScoreCreatorsResponse resp =
            YAOWEI__TIER__V1__BATCH_SCORE_CREATORS_RESPONSE__INIT;
        resp.n_scores = f->n;
        resp.scores = out.ptrs;
        yw_call_reply(f->call, &resp.base);
    }
    scores_free(&out);
}

/* One of the two reads ended (`creators`: BatchGetCreators, else BatchGetCreatorStats). */
static void fetch_step(tier_fetch_t *f, grpc_status_code code, const char *detail, int creators)
{
    if (code != GRPC_STATUS_OK && (f->code == GRPC_STATUS_OK || creators)) {
        f->code = code;
        f->failed = creators ? "BatchGetCreators" : "BatchGetCreatorStats";
        snprintf(f->detail, sizeof f->detail, "%s", detail);
    }
    if (--f->pending > 0) {
        return;
    }
    if (f->code != GRPC_STATUS_OK) {
        fail_peer(f);
    } else {
        fetch_reply(f);
    }
    fetch_free(f);
}

static void on_creators(void *arg, grpc_status_code code, const char *detail,
                        ProtobufCMessage *resp)
{
    tier_fetch_t *f = arg;
    f->creators = (Yaowei__Creator__V1__BatchGetCreatorsResponse *)resp;
    fetch_step(f, code, detail, 1);
}

static void on_stats(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    tier_fetch_t *f = arg;
    f->stats = (Yaowei__Creator__V1__BatchGetCreatorStatsResponse *)resp;
    fetch_step(f, code, detail, 0);
}

/*
 * Reads the creators and their stats from creator profile, in parallel, with the
 * call's deadline, then scores them (fetch_reply). Finishes the call in every case.
 */
static void fetch_and_score(yw_call_t *call, char *const *ids, size_t n, int single)
{
    tier_state_t *st = tier_state_of(call);
    tier_fetch_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    f->call = call;
    f->st = st;
    f->ids = ids;
    f->n = n;
    f->single = single;
    f->policy = st->policy;
    f->code = GRPC_STATUS_OK;
    /* The call's own deadline rules; a call without one gets the default. */
    int64_t timeout = yw_call_remaining_ms(call) == INT64_MAX ? st->peer_timeout_ms : 0;

    Yaowei__Creator__V1__BatchGetCreatorsRequest creq =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATORS_REQUEST__INIT;
    creq.n_creator_ids = n;
    creq.creator_ids = (char **)ids;
    Yaowei__Creator__V1__BatchGetCreatorStatsRequest sreq =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_REQUEST__INIT;
    sreq.n_creator_ids = n;
    sreq.creator_ids = (char **)ids;
    sreq.window_days = f->policy.window_days;

    char why[128];
    int rc = yw_client_unary(st->creator_profile, BATCH_GET_CREATORS, &creq.base,
                             &yaowei__creator__v1__batch_get_creators_response__descriptor, call,
                             timeout, on_creators, f);
    if (rc != 0) {
        snprintf(why, sizeof why, "creator profile: BatchGetCreators: cannot start the call: %s",
                 strerror(-rc));
        yw_call_fail(call, GRPC_STATUS_UNAVAILABLE, why);
        fetch_free(f);
        return;
    }
    f->pending = 1; /* set after the start: completions run later, on this loop */
    rc = yw_client_unary(st->creator_profile, BATCH_GET_STATS, &sreq.base,
                         &yaowei__creator__v1__batch_get_creator_stats_response__descriptor, call,
                         timeout, on_stats, f);
    if (rc != 0) {
        /* Reported when the creators' read completes (unless that one fails too). */
        f->code = GRPC_STATUS_UNAVAILABLE;
        f->failed = "BatchGetCreatorStats";
        snprintf(f->detail, sizeof f->detail, "cannot start the call: %s", strerror(-rc));
        return;
    }
    f->pending = 2;
}

/*
 * Scores one creator from its current profile and stats. NOT_FOUND when creator
 * profile does not know the creator; UNAVAILABLE or DEADLINE_EXCEEDED when creator
 * profile cannot be reached in time.
 */
static void score_creator(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Tier__V1__ScoreCreatorRequest *req = (const void *)msg;
    char err[TIER_ERR_BUFSZ];
    grpc_status_code code = tier_validate_id("creator_id", req->creator_id, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    fetch_and_score(call, &req->creator_id, 1, 1);
}

/*
 * Scores up to 1000 creators, in request order, with one batched read from creator
 * profile. NOT_FOUND names every unknown id.
 */
static void batch_score_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Tier__V1__BatchScoreCreatorsRequest *req = (const void *)msg;
    char err[TIER_ERR_BUFSZ];
    grpc_status_code code =
        tier_validate_ids("creator_ids", req->creator_ids, req->n_creator_ids, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (req->n_creator_ids == 0) {
        Yaowei__Tier__V1__BatchScoreCreatorsResponse resp =
            YAOWEI__TIER__V1__BATCH_SCORE_CREATORS_RESPONSE__INIT;
        yw_call_reply(call, &resp.base);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    fetch_and_score(call, req->creator_ids, req->n_creator_ids, 0);
}

/* ---- ListCreatorsByTier ---- */

/*
 * The population's creators of one tier (and optionally one primary category), highest
 * score first (ties by creator_id). AIP-158 paging.
 */
static void list_creators_by_tier(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Tier__V1__ListCreatorsByTierRequest *req = (const void *)msg;
    tier_state_t *st = tier_state_of(call);
    char err[TIER_ERR_BUFSZ];
    grpc_status_code code;
    if ((code = tier_validate_tier("tier", req->tier, err, sizeof err)) != GRPC_STATUS_OK ||
        (code = tier_validate_category("category", req->category, err, sizeof err)) !=
            GRPC_STATUS_OK ||
        (code = tier_validate_page_size(req->page_size, err, sizeof err)) != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    tier_level_t tier = (tier_level_t)req->tier;
    /* The token carries the (score, creator_id) of its page's last creator and is bound
     * to the tier and category: keyset pages in best-first order, so a token stays valid
     * across refreshes (the next page starts after that key, wherever it now is). */
    const yw_page_key_t *key = yw_app_page_key(yw_app_from_call(call));
    yw_page_query_t query;
    yw_page_query_init(&query, "ListCreatorsByTier", "tier and category");
    yw_page_query_add_int(&query, tier);
    yw_page_query_add_str(&query, req->category);
    yw_page_cursor_t after;
    double after_score = 0.0;
    if (yw_page_token_decode(key, &query, req->page_token, UINT64_MAX, &after, err, sizeof err) !=
        0) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return;
    }
    memcpy(&after_score, &after.n, sizeof after_score);
    if (req->page_token[0] != '\0' &&
        (!isfinite(after_score) ||
         tier_validate_id("page_token", after.key, err, sizeof err) != GRPC_STATUS_OK)) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_token: not a valid position");
        return;
    }
    if (no_population(call, st, st->pop->snap)) {
        return;
    }
    const tier_population_t *pop = st->pop;
    tier_group_t g = tier_population_group(pop, tier, req->category);
    size_t start =
        req->page_token[0] != '\0' ? tier_group_seek(&g, pop, after_score, after.key) : 0;
    size_t count = (size_t)yw_page_size(req->page_size, TIER_PAGE_SIZE_DEFAULT, TIER_PAGE_SIZE_MAX);
    if (count > g.n - start) {
        count = g.n - start;
    }
    scores_t out;
    if (scores_alloc(&out, count) != 0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Google__Protobuf__Timestamp computed = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    computed.seconds = pop->compute_time_s;
    computed.nanos = pop->compute_time_ns;
    for (size_t k = 0; k < count; k++) {
        size_t i = g.idx[start + k];
        const tier_creator_t *c = &pop->snap->creators[i];
        score_msg(&out.msgs[k], &out.components[k], c->creator_id, c->category, c->in.followers,
                  &pop->results[i], &pop->standings[i], pop->policy.version, &computed);
    }
    char token[YW_PAGE_TOKEN_BUFSZ] = "";
    if (start + count < g.n && count > 0) {
        size_t last = g.idx[start + count - 1];
        uint64_t bits;
        memcpy(&bits, &pop->results[last].score, sizeof bits);
        if (yw_page_token_encode(key, &query, bits, pop->snap->creators[last].creator_id, token) !=
            0) {
            yw_call_fail(call, GRPC_STATUS_INTERNAL, "next_page_token: cannot encode");
            scores_free(&out);
            return;
        }
    }
    Google__Protobuf__Timestamp refreshed = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    refreshed.seconds = pop->snap->time_s;
    refreshed.nanos = pop->snap->time_ns;
    Yaowei__Tier__V1__ListCreatorsByTierResponse resp =
        YAOWEI__TIER__V1__LIST_CREATORS_BY_TIER_RESPONSE__INIT;
    resp.n_scores = count;
    resp.scores = out.ptrs;
    resp.next_page_token = token;
    resp.total_size = (int64_t)g.n;
    resp.refresh_time = &refreshed;
    yw_call_reply(call, &resp.base);
    scores_free(&out);
}

/* ---- GetTierPolicy, UpdateTierPolicy ---- */

static void reply_policy(yw_call_t *call, const tier_policy_t *p)
{
    Yaowei__Tier__V1__TierPolicy msg;
    Yaowei__Tier__V1__ScoreWeights weights;
    Google__Protobuf__Timestamp update_time;
    tier_policy_to_msg(p, &msg, &weights, &update_time);
    yw_call_reply(call, &msg.base);
}

/* The policy in force. */
static void get_tier_policy(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    reply_policy(call, &tier_state_of(call)->policy);
}

struct st_tier_update_t {
    tier_policy_job_t pj; /* first: the store hands back its job; merges in the store */
    yw_call_t *call;
    const Yaowei__Tier__V1__UpdateTierPolicyRequest *req; /* the call's */
    tier_update_t *next;
};

static void next_update(tier_state_t *st);

static void update_done(yw_store_job_t *job, grpc_status_code status)
{
    tier_update_t *u = (tier_update_t *)job;
    tier_state_t *st = u->pj.data;
    st->updating = 0;
    if (status == GRPC_STATUS_OK) {
        /* Not newer only when this replica heard of its own version, or of a later one,
         * from the database before the write's done ran: it is in force already. */
        if (tier_policy_in_force(st, &u->pj.policy)) {
            yw_call_log(u->call, YW_LOG_INFO, "policy version %" PRId64 " in force",
                        st->policy.version);
        }
        reply_policy(u->call, &u->pj.policy);
    } else {
        const char *why = u->pj.refusal[0] != '\0' ? u->pj.refusal
                          : job->errmsg[0] != '\0' ? job->errmsg
                                                   : "store: the policy did not commit";
        yw_call_fail(u->call, status, why);
    }
    free(u);
    next_update(st);
}

/*
 * Takes the next queued UpdateTierPolicy and writes it: the job merges it into the policy
 * in force in the database (tier_store_update_policy(): other replicas write versions
 * too), validates it and writes the next version. Updates of this replica are written one
 * at a time, in arrival order, so each one merges into the version the previous one made.
 */
static void next_update(tier_state_t *st)
{
    while (!st->updating && st->updates != NULL) {
        tier_update_t *u = st->updates;
        st->updates = u->next;
        if (st->updates == NULL) {
            st->updates_tail = NULL;
        }
        if (yw_call_abandoned(u->call)) {
            free(u);
            continue;
        }
        char err[TIER_ERR_BUFSZ];
        if (yw_disk_writable(st->disk, err, sizeof err) != 0) {
            yw_call_fail(u->call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
            free(u);
            continue;
        }
        if (!yw_store_available(st->store)) {
            snprintf(err, sizeof err,
                     "store: the database is unavailable: the policy is not changed (version "
                     "%" PRId64 " stays in force here)",
                     st->policy.version);
            yw_call_fail(u->call, GRPC_STATUS_UNAVAILABLE, err);
            free(u);
            continue;
        }
        u->pj.req = u->req;
        yw_wallclock_now(&u->pj.now_s, &u->pj.now_ns);
        u->pj.job.work = tier_store_update_policy;
        u->pj.job.done = update_done;
        u->pj.data = st;
        int rc = yw_store_write(st->store, &u->pj.job);
        if (rc < 0) {
            yw_call_fail(u->call, GRPC_STATUS_UNAVAILABLE,
                         rc == -ESHUTDOWN ? "the service is shutting down"
                                          : "store: cannot queue the write");
            free(u);
            continue;
        }
        st->updating = 1;
    }
}

/*
 * Replaces the policy (or the fields named in update_mask), validates it, bumps its
 * version, persists it, rescores the population and starts a refresh.
 */
static void update_tier_policy(yw_call_t *call, const ProtobufCMessage *msg)
{
    tier_state_t *st = tier_state_of(call);
    tier_update_t *u = calloc(1, sizeof *u);
    if (u == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    u->call = call;
    u->req = (const Yaowei__Tier__V1__UpdateTierPolicyRequest *)msg;
    if (st->updates_tail != NULL) {
        st->updates_tail->next = u;
    } else {
        st->updates = u;
    }
    st->updates_tail = u;
    next_update(st);
}

/* ---- GetTierDistribution ---- */

/* Creators per tier and the score quantiles per tier, over the population. */
static void get_tier_distribution(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Tier__V1__GetTierDistributionRequest *req = (const void *)msg;
    tier_state_t *st = tier_state_of(call);
    char err[TIER_ERR_BUFSZ];
    grpc_status_code code = tier_validate_category("category", req->category, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (no_population(call, st, st->pop->snap)) {
        return;
    }
    const tier_population_t *pop = st->pop;
    Yaowei__Tier__V1__TierBucket buckets[TIER_LEVELS];
    Yaowei__Tier__V1__TierBucket *ptrs[TIER_LEVELS];
    int64_t total = 0;
    for (int t = 0; t < TIER_LEVELS; t++) {
        tier_group_t g = tier_population_group(pop, (tier_level_t)(t + 1), req->category);
        Yaowei__Tier__V1__TierBucket *b = &buckets[t];
        yaowei__tier__v1__tier_bucket__init(b);
        b->tier = (Yaowei__Tier__V1__Tier)(t + 1);
        b->creators = (int64_t)g.n;
        b->rising = (int64_t)tier_group_rising(&g, pop);
        b->score_mean = tier_group_mean(&g);
        b->score_min = tier_quantile_desc(g.scores, g.n, 0.0);
        b->score_p10 = tier_quantile_desc(g.scores, g.n, 0.10);
        b->score_p25 = tier_quantile_desc(g.scores, g.n, 0.25);
        b->score_p50 = tier_quantile_desc(g.scores, g.n, 0.50);
        b->score_p75 = tier_quantile_desc(g.scores, g.n, 0.75);
        b->score_p90 = tier_quantile_desc(g.scores, g.n, 0.90);
        b->score_max = tier_quantile_desc(g.scores, g.n, 1.0);
        ptrs[t] = b;
        total += (int64_t)g.n;
    }
    Google__Protobuf__Timestamp refreshed = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    refreshed.seconds = pop->snap->time_s;
    refreshed.nanos = pop->snap->time_ns;
    Yaowei__Tier__V1__TierDistribution resp = YAOWEI__TIER__V1__TIER_DISTRIBUTION__INIT;
    resp.category = req->category;
    resp.n_tiers = TIER_LEVELS;
    resp.tiers = ptrs;
    resp.total_creators = total;
    resp.policy_version = pop->policy.version;
    resp.refresh_time = &refreshed;
    yw_call_reply(call, &resp.base);
}

/* ---- BatchGetCreatorTiers ---- */

/*
 * The tiers of up to 1000 creators, answered from memory: the followers the newest
 * inputs hold, under the policy in force. Ids the population does not hold go in
 * not_found. UNAVAILABLE before any population is known.
 */
static void batch_get_creator_tiers(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Tier__V1__BatchGetCreatorTiersRequest *req = (const void *)msg;
    tier_state_t *st = tier_state_of(call);
    char err[TIER_ERR_BUFSZ];
    grpc_status_code code =
        tier_validate_ids("creator_ids", req->creator_ids, req->n_creator_ids, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    /* The newest inputs: a refresh's creators are found here as soon as it ends, while
     * the population built from them may still be scoring on the thread pool. */
    const tier_snapshot_t *snap = st->snapshot;
    if (no_population(call, st, snap)) {
        return;
    }
    size_t n = req->n_creator_ids, k = n ? n : 1;
    Yaowei__Tier__V1__CreatorTier *msgs = calloc(k, sizeof *msgs);
    Yaowei__Tier__V1__CreatorTier **tiers = calloc(k, sizeof *tiers);
    char **not_found = calloc(k, sizeof *not_found);
    if (msgs == NULL || tiers == NULL || not_found == NULL) {
        free(msgs);
        free(tiers);
        free(not_found);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t n_tiers = 0, n_not_found = 0;
    for (size_t i = 0; i < n; i++) {
        long at = tier_snapshot_find(snap, req->creator_ids[i]);
        if (at < 0) {
            not_found[n_not_found++] = req->creator_ids[i];
            continue;
        }
        const tier_creator_t *c = &snap->creators[at];
        Yaowei__Tier__V1__CreatorTier *m = &msgs[n_tiers];
        yaowei__tier__v1__creator_tier__init(m);
        m->creator_id = c->creator_id; /* borrowed: the reply is packed before we return */
        m->tier = (Yaowei__Tier__V1__Tier)tier_of(c->in.followers, &st->policy);
        m->followers = c->in.followers;
        tiers[n_tiers++] = m;
    }
    Google__Protobuf__Timestamp refreshed = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    refreshed.seconds = snap->time_s;
    refreshed.nanos = snap->time_ns;
    Yaowei__Tier__V1__BatchGetCreatorTiersResponse resp =
        YAOWEI__TIER__V1__BATCH_GET_CREATOR_TIERS_RESPONSE__INIT;
    resp.n_tiers = n_tiers;
    resp.tiers = tiers;
    resp.n_not_found = n_not_found;
    resp.not_found = not_found;
    resp.policy_version = st->policy.version;
    resp.population_refresh_time = &refreshed;
    yw_call_reply(call, &resp.base);
    free(msgs);
    free(tiers);
    free(not_found);
}

/* ---- the method table ---- */

static const yw_method_t tier_methods[] = {
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "ScoreCreator", yaowei__tier__v1__score_creator_request,
              yaowei__tier__v1__tier_score, .on_message = score_creator),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "BatchScoreCreators",
              yaowei__tier__v1__batch_score_creators_request,
              yaowei__tier__v1__batch_score_creators_response, .on_message = batch_score_creators),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "ListCreatorsByTier",
              yaowei__tier__v1__list_creators_by_tier_request,
              yaowei__tier__v1__list_creators_by_tier_response,
              .on_message = list_creators_by_tier),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "GetTierPolicy", yaowei__tier__v1__get_tier_policy_request,
              yaowei__tier__v1__tier_policy, .on_message = get_tier_policy),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "UpdateTierPolicy",
              yaowei__tier__v1__update_tier_policy_request, yaowei__tier__v1__tier_policy,
              .on_message = update_tier_policy),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "GetTierDistribution",
              yaowei__tier__v1__get_tier_distribution_request, yaowei__tier__v1__tier_distribution,
              .on_message = get_tier_distribution),
    /* New methods go last: the fuzz corpora pick methods by their index in this table. */
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "BatchGetCreatorTiers",
              yaowei__tier__v1__batch_get_creator_tiers_request,
              yaowei__tier__v1__batch_get_creator_tiers_response,
              .on_message = batch_get_creator_tiers),
    YW_METHOD(UNARY, TIER_SERVICE_NAME, "RefreshPopulation",
              yaowei__tier__v1__refresh_population_request,
              yaowei__tier__v1__refresh_population_response, .on_message = tier_refresh_population),
};

const yw_service_t tier_service = {
    .name = TIER_SERVICE_NAME,
    .methods = tier_methods,
    .n_methods = sizeof tier_methods / sizeof tier_methods[0],
    .ctx = NULL,
};

/* ---- init and fini ---- */

const yw_option_t tier_options[TIER_N_OPTIONS] = {
    {"refresh-interval-ms", "YW_REFRESH_INTERVAL_MS", "60000",
     "time between the end of one population refresh (a read of every creator from creator "
     "profile) and the start of the next",
     YW_OPTION_VALUE, NULL},
    {"creator-profile-timeout-ms", "YW_CREATOR_PROFILE_TIMEOUT_MS", "2000",
     "deadline of ScoreCreator's reads from creator profile when the caller set none",
     YW_OPTION_VALUE, NULL},
};

/* A positive integer option; -EINVAL with a message naming the flag otherwise. */
static int positive_option(yw_app_t *app, const char *name, long long max, long long *out,
                           char *err, size_t errlen)
{
    const char *v = yw_app_option(app, name);
    char *end = NULL;
    errno = 0;
    long long n = v != NULL ? strtoll(v, &end, 10) : 0;
    if (v == NULL || end == v || *end != '\0' || errno != 0 || n < 1 || n > max) {
        snprintf(err, errlen, "--%s: must be an integer within 1..%lld, got \"%.32s\"", name, max,
                 v != NULL ? v : "");
        return -EINVAL;
    }
    *out = n;
    return 0;
}

static void on_refresher_closed(void *arg)
{
    tier_state_release(arg);
}

static void on_wait_timer_closed(uv_handle_t *h)
{
    tier_state_release(h->data);
}

static void close_wait_timer(tier_state_t *st)
{
    if (st->wait_timer_open) {
        st->wait_timer_open = 0;
        uv_close((uv_handle_t *)&st->wait_timer, on_wait_timer_closed);
    }
}

int tier_service_init(yw_app_t *app, char *err, size_t errlen)
{
    long long interval = 0, timeout = 0;
    int rc;
    if ((rc = positive_option(app, "refresh-interval-ms", 86400000LL, &interval, err, errlen)) !=
            0 ||
        (rc = positive_option(app, "creator-profile-timeout-ms", 3600000LL, &timeout, err,
                              errlen)) != 0) {
        return rc;
    }
    tier_state_t *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->app = app;
    st->store = yw_app_store(app);
    st->disk = yw_app_disk(app);
    st->loop = yw_runtime_loop(yw_app_runtime(app));
    st->peer_timeout_ms = timeout;
    st->holds = 1;

    tier_load_t load = {0};
    yw_wallclock_now(&load.now_s, &load.now_ns);
    grpc_status_code code = yw_store_run_sync(st->store, tier_store_load, &load, err, errlen);
    if (code != GRPC_STATUS_OK) {
        if (load.errmsg[0] != '\0') {
            snprintf(err, errlen, "loading the policy and the population: %s", load.errmsg);
        }
        free(st);
        return -EIO;
    }
    st->policy = load.policy;
    st->snapshot = load.snapshot;
    /* Notices go to the app, whose state is NULL from fini on (the store, with its
     * listener, outlives the state). The first call, with no payload, comes once LISTEN
     * is in force: versions written between the load and then are read there. */
    if ((rc = yw_store_listen(st->store, TIER_POLICY_CHANNEL, tier_on_policy_notice, app)) != 0) {
        snprintf(err, errlen, "cannot listen for policy updates on %s: %s", TIER_POLICY_CHANNEL,
                 strerror(-rc));
        tier_snapshot_unref(st->snapshot);
        free(st);
        return rc;
    }
    int64_t now_s;
    int32_t now_ns;
    yw_wallclock_now(&now_s, &now_ns);
    if ((rc = tier_population_build(st->snapshot, &st->policy, now_s, now_ns, &st->pop)) != 0) {
        snprintf(err, errlen, "scoring the saved population: %s", strerror(-rc));
        tier_snapshot_unref(st->snapshot);
        free(st);
        return rc;
    }
    const char *addr = yw_app_option(app, "creator-profile-addr");
    if ((rc = yw_channel_create(yw_app_runtime(app), addr, &st->creator_profile)) != 0) {
        snprintf(err, errlen, "--creator-profile-addr %s: cannot open a channel: %s", addr,
                 strerror(-rc));
        tier_state_release(st);
        return rc;
    }
    if ((rc = uv_timer_init(st->loop, &st->wait_timer)) != 0) {
        snprintf(err, errlen, "cannot create a timer: %s", uv_strerror(rc));
        yw_channel_destroy(st->creator_profile);
        tier_state_release(st);
        return rc;
    }
    st->wait_timer.data = st;
    st->wait_timer_open = 1;
    st->holds++; /* the wait timer's, until it is closed */
    if ((rc = tier_policy_timer_open(st)) != 0) {
        snprintf(err, errlen, "cannot create a timer: %s", uv_strerror(rc));
        yw_channel_destroy(st->creator_profile);
        close_wait_timer(st);
        tier_state_release(st);
        return rc;
    }
    tier_refresher_config_t rcfg = {
        .loop = st->loop,
        .peer = st->creator_profile,
        .interval_ms = (uint64_t)interval,
        .call_timeout_ms = TIER_REFRESH_CALL_TIMEOUT_MS,
        .window_days = window_days,
        .on_snapshot = tier_on_snapshot,
        .on_failed = tier_on_refresh_failed,
        .arg = st,
    };
    if ((rc = tier_refresher_create(&rcfg, &st->refresher)) != 0) {
        snprintf(err, errlen, "cannot create the refresher: %s", uv_strerror(rc));
        yw_channel_destroy(st->creator_profile);
        close_wait_timer(st);
        tier_policy_timer_close(st);
        tier_state_release(st);
        return rc;
    }
    st->holds++; /* the refresher's, until it is closed */
    tier_refresher_trigger(st->refresher);
    yw_app_set_state(app, st);
    yw_log(YW_LOG_INFO,
           "policy version %" PRId64 "%s; saved population: %zu creators; creator profile at %s, "
           "refresh every %lld ms",
           st->policy.version, load.policy_created ? " (default, created)" : "", st->snapshot->n,
           addr, interval);
    return 0;
}

const yw_app_def_t tier_app = {
    .program = "tier_scoring",
    .summary = "yaowei tier scoring: head / mid / tail / amateur tiers and long-tail-fair "
               "scores of creators (yaowei.tier.v1.TierScoringService)",
    .service = &tier_service,
    .db_file = "tier_scoring.db",
    .migrations = tier_migrations,
    .n_migrations = TIER_N_MIGRATIONS,
    .pg_migrations = tier_pg_migrations,
    .n_pg_migrations = TIER_N_PG_MIGRATIONS,
    .options = tier_options,
    .n_options = TIER_N_OPTIONS,
    .init = tier_service_init,
    .fini = tier_service_fini,
    .default_listen = "127.0.0.1:50052",
};

void tier_service_fini(yw_app_t *app)
{
    tier_state_t *st = yw_app_state(app);
    if (st == NULL) {
        return;
    }
    yw_app_set_state(app, NULL);
    st->closing = 1;
    /* The server is down, so every call is finished; a waiter left would be a bug. */
    tier_waiters_fail(st, 0, UINT64_MAX, GRPC_STATUS_UNAVAILABLE, "the service is shutting down");
    close_wait_timer(st);
    tier_policy_timer_close(st);
    /* Close the refresher first: destroying the peer then cancels its call. */
    tier_refresher_close(st->refresher, on_refresher_closed, st);
    yw_channel_destroy(st->creator_profile);
    st->creator_profile = NULL;
    tier_state_release(st);
}
