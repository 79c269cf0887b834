/*
 * test_tier_service.c — unit tests of services/tier_scoring/tier_service.c and the
 * RefreshPopulation handler of tier_rebuild.c: each handler of TierScoringService called
 * through the runtime with fake calls (common/call_fake.h), on the service opened as its
 * binary opens it (tier_service_init(): its store in a temp dir, the policy, the saved
 * population, the refresher), with no server of its own.
 *
 * Creator profile, the peer tier scoring reads, is a fake on a thread of its own (a real
 * gRPC server on a loopback port, as a peer process is): five creators, one of each tier
 * but two mid ones, answering ListCreators (one page), BatchGetCreators and
 * BatchGetCreatorStats, NOT_FOUND naming the missing ids as creator profile does. Tests
 * of a peer that is down point tier scoring at a port nobody serves.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/server.h"
#include "services/tier_scoring/tier_service.h"
#include "services/tier_scoring/tier_store.h"
#include "tests/unit/handler_fixture.h"
#include "tests/unit/test.h"
#include "yaowei/creator/v1/creator.pb-c.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define HEAD YAOWEI__TIER__V1__TIER__TIER_HEAD
#define MID YAOWEI__TIER__V1__TIER__TIER_MID
#define TAIL YAOWEI__TIER__V1__TIER__TIER_TAIL
#define AMATEUR YAOWEI__TIER__V1__TIER__TIER_AMATEUR

typedef Yaowei__Tier__V1__TierPolicy policy_t;

/* ---- the fake creator profile ---- */

typedef struct {
    const char *id, *category;
    int64_t followers, impressions, engagements;
} peer_creator_t;

/* Under the default policy (head 500,000, mid 50,000, tail 5,000 followers). */
static const peer_creator_t peer_creators[] = {
    {"head-1", "tea", 600000, 50000, 4000}, {"mid-1", "tea", 60000, 8000, 700},
    {"mid-2", "food", 80000, 9000, 100},    {"tail-1", "tea", 6000, 1000, 90},
    {"amateur-1", "tea", 100, 100, 5},
};
#define N_PEER_CREATORS (sizeof peer_creators / sizeof peer_creators[0])

static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port; /* 0 until it serves */
    yw_runtime_t *rt;
    yw_server_t *srv;
    uv_async_t stop;
    atomic_int lists; /* ListCreators calls served */
} peer;

static const peer_creator_t *peer_find(const char *id)
{
    for (size_t i = 0; i < N_PEER_CREATORS; i++) {
        if (strcmp(peer_creators[i].id, id) == 0) {
            return &peer_creators[i];
        }
    }
    return NULL;
}

static void peer_creator_msg(const peer_creator_t *p, Yaowei__Creator__V1__Creator *c,
                             char **category)
{
    yaowei__creator__v1__creator__init(c);
    c->creator_id = (char *)p->id;
    c->followers = p->followers;
    *category = (char *)p->category;
    c->categories = category;
    c->n_categories = 1;
}

/* NOT_FOUND as creator profile says it, when one of `ids` is not in the table. */
static int peer_missing(yw_call_t *call, char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (peer_find(ids[i]) == NULL) {
            yw_call_finish(call, GRPC_STATUS_NOT_FOUND,
                           "creator_ids[%zu]: creator \"%s\" not found", i, ids[i]);
            return 1;
        }
    }
    return 0;
}

static void peer_list(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    atomic_fetch_add(&peer.lists, 1);
    Yaowei__Creator__V1__Creator cs[N_PEER_CREATORS], *ptrs[N_PEER_CREATORS];
    char *cats[N_PEER_CREATORS];
    for (size_t i = 0; i < N_PEER_CREATORS; i++) {
        peer_creator_msg(&peer_creators[i], &cs[i], &cats[i]);
        ptrs[i] = &cs[i];
    }
    Yaowei__Creator__V1__ListCreatorsResponse resp =
        YAOWEI__CREATOR__V1__LIST_CREATORS_RESPONSE__INIT;
    resp.creators = ptrs;
    resp.n_creators = N_PEER_CREATORS;
    yw_call_reply(call, &resp.base);
}

static void peer_batch_get(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__BatchGetCreatorsRequest *req = (const void *)msg;
    if (peer_missing(call, req->creator_ids, req->n_creator_ids)) {
        return;
    }
    Yaowei__Creator__V1__Creator cs[16], *ptrs[16];
    char *cats[16];
    YW_CHECK(req->n_creator_ids <= 16);
    for (size_t i = 0; i < req->n_creator_ids; i++) {
        peer_creator_msg(peer_find(req->creator_ids[i]), &cs[i], &cats[i]);
        ptrs[i] = &cs[i];
    }
    Yaowei__Creator__V1__BatchGetCreatorsResponse resp =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATORS_RESPONSE__INIT;
    resp.creators = ptrs;
    resp.n_creators = req->n_creator_ids;
    yw_call_reply(call, &resp.base);
}

static void peer_batch_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__BatchGetCreatorStatsRequest *req = (const void *)msg;
    if (peer_missing(call, req->creator_ids, req->n_creator_ids)) {
        return;
    }
    Yaowei__Creator__V1__CreatorStats ss[16], *ptrs[16];
    YW_CHECK(req->n_creator_ids <= 16);
    for (size_t i = 0; i < req->n_creator_ids; i++) {
        const peer_creator_t *p = peer_find(req->creator_ids[i]);
        yaowei__creator__v1__creator_stats__init(&ss[i]);
        ss[i].creator_id = req->creator_ids[i];
        ss[i].window_days = req->window_days;
        ss[i].notes = 10;
        ss[i].impressions = p->impressions;
        ss[i].engagements = p->engagements;
        ss[i].views_last_7d = p->impressions / 2;
        ss[i].views_prev_7d = p->impressions / 4;
        ptrs[i] = &ss[i];
    }
    Yaowei__Creator__V1__BatchGetCreatorStatsResponse resp =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_RESPONSE__INIT;
    resp.stats = ptrs;
    resp.n_stats = req->n_creator_ids;
    yw_call_reply(call, &resp.base);
}

#define CREATOR_SERVICE "yaowei.creator.v1.CreatorProfileService"
static const yw_method_t peer_methods[] = {
    YW_METHOD(UNARY, CREATOR_SERVICE, "ListCreators", yaowei__creator__v1__list_creators_request,
              yaowei__creator__v1__list_creators_response, .on_message = peer_list),
    YW_METHOD(UNARY, CREATOR_SERVICE, "BatchGetCreators",
              yaowei__creator__v1__batch_get_creators_request,
              yaowei__creator__v1__batch_get_creators_response, .on_message = peer_batch_get),
    YW_METHOD(UNARY, CREATOR_SERVICE, "BatchGetCreatorStats",
              yaowei__creator__v1__batch_get_creator_stats_request,
              yaowei__creator__v1__batch_get_creator_stats_response,
              .on_message = peer_batch_stats),
};
static const yw_service_t peer_service = {
    .name = CREATOR_SERVICE, .methods = peer_methods, .n_methods = 3};

static void peer_down(void *arg)
{
    (void)arg;
    yw_server_destroy(peer.srv);
    yw_runtime_stop(peer.rt);
}

static void peer_on_stop(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, NULL);
    yw_server_shutdown(peer.srv, peer_down, NULL);
}

static void *peer_main(void *arg)
{
    (void)arg;
    char err[256];
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 100};
    YW_CHECK_INT(yw_runtime_create(&peer.rt), ==, 0);
    YW_CHECK_INT(yw_server_create(peer.rt, &cfg, &peer.srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(peer.srv, &peer_service), ==, 0);
    YW_CHECK_INT(yw_server_start(peer.srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(uv_async_init(yw_runtime_loop(peer.rt), &peer.stop, peer_on_stop), ==, 0);
    pthread_mutex_lock(&peer.mu);
    peer.port = yw_server_port(peer.srv);
    pthread_cond_signal(&peer.cv);
    pthread_mutex_unlock(&peer.mu);
    yw_runtime_run(peer.rt);
    yw_runtime_destroy(peer.rt);
    return NULL;
}

static void peer_start(void)
{
    pthread_mutex_init(&peer.mu, NULL);
    pthread_cond_init(&peer.cv, NULL);
    YW_CHECK_INT(pthread_create(&peer.thread, NULL, peer_main, NULL), ==, 0);
    pthread_mutex_lock(&peer.mu);
    while (peer.port == 0) {
        pthread_cond_wait(&peer.cv, &peer.mu);
    }
    pthread_mutex_unlock(&peer.mu);
}

static void peer_stop(void)
{
    YW_CHECK_INT(uv_async_send(&peer.stop), ==, 0);
    YW_CHECK_INT(pthread_join(peer.thread, NULL), ==, 0);
    peer.port = 0;
}

/* ---- the service under test ---- */

static handler_fx_t fx;
static char peer_flag[64];

/* Tier scoring, reading creator profile at the fake (`up`) or at a port nobody serves. */
static void open_service(int up)
{
    if (up) {
        peer_start();
    }
    snprintf(peer_flag, sizeof peer_flag, "--creator-profile-addr=127.0.0.1:%d",
             up ? peer.port : 1);
    /* Only start-up and RefreshPopulation refresh: the tests say when. */
    const char *flags[] = {peer_flag, "--refresh-interval-ms=600000", NULL};
    handler_fx_open(&fx, &tier_app, flags);
}

static void close_service(void)
{
    handler_fx_close(&fx);
    if (peer.port != 0) {
        peer_stop();
    }
}

static const Yaowei__Tier__V1__RefreshPopulationResponse *refresh(yw_fake_call_t **fc)
{
    Yaowei__Tier__V1__RefreshPopulationRequest req =
        YAOWEI__TIER__V1__REFRESH_POPULATION_REQUEST__INIT;
    *fc = handler_fx_call(&fx, "RefreshPopulation", &req.base);
    return handler_fx_reply(*fc);
}

/* A refresh that read the fake's five creators is in force. */
static void refreshed(void)
{
    yw_fake_call_t *fc;
    YW_CHECK_INT(refresh(&fc)->total_creators, ==, N_PEER_CREATORS);
    yw_fake_call_destroy(fc);
}

static yw_fake_call_t *tiers_call(char **ids, size_t n)
{
    Yaowei__Tier__V1__BatchGetCreatorTiersRequest req =
        YAOWEI__TIER__V1__BATCH_GET_CREATOR_TIERS_REQUEST__INIT;
    req.creator_ids = ids;
    req.n_creator_ids = n;
    return handler_fx_call(&fx, "BatchGetCreatorTiers", &req.base);
}

static yw_fake_call_t *update_call(policy_t *p, char **paths, size_t n_paths)
{
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    mask.paths = paths;
    mask.n_paths = n_paths;
    Yaowei__Tier__V1__UpdateTierPolicyRequest req =
        YAOWEI__TIER__V1__UPDATE_TIER_POLICY_REQUEST__INIT;
    req.policy = p;
    req.update_mask = n_paths > 0 ? &mask : NULL;
    return handler_fx_call(&fx, "UpdateTierPolicy", &req.base);
}

static int64_t policy_version(void)
{
    Yaowei__Tier__V1__GetTierPolicyRequest req = YAOWEI__TIER__V1__GET_TIER_POLICY_REQUEST__INIT;
    yw_fake_call_t *fc = handler_fx_call(&fx, "GetTierPolicy", &req.base);
    int64_t v = ((const policy_t *)handler_fx_reply(fc))->version;
    yw_fake_call_destroy(fc);
    return v;
}

/* ---- GetTierPolicy, UpdateTierPolicy ---- */

YW_TEST(the_policy_starts_as_the_default_version_1)
{
    open_service(0);
    Yaowei__Tier__V1__GetTierPolicyRequest req = YAOWEI__TIER__V1__GET_TIER_POLICY_REQUEST__INIT;
    yw_fake_call_t *fc = handler_fx_call(&fx, "GetTierPolicy", &req.base);
    const policy_t *p = handler_fx_reply(fc);
    YW_CHECK_INT(p->version, ==, 1);
    YW_CHECK_INT(p->head_min_followers, ==, 500000);
    YW_CHECK_INT(p->mid_min_followers, ==, 50000);
    YW_CHECK_INT(p->tail_min_followers, ==, 5000);
    YW_CHECK(p->update_time != NULL && p->update_time->seconds > 0);
    yw_fake_call_destroy(fc);
    close_service();
}

YW_TEST(an_update_names_the_field_it_refuses_and_changes_nothing)
{
    open_service(0);
    Yaowei__Tier__V1__UpdateTierPolicyRequest none =
        YAOWEI__TIER__V1__UPDATE_TIER_POLICY_REQUEST__INIT;
    handler_fx_fails(&fx, "UpdateTierPolicy", &none.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "policy: required");
    policy_t p = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    p.mid_min_followers = 600000; /* above head */
    char *mid[] = {"mid_min_followers"};
    handler_fx_expect_fail(update_call(&p, mid, 1), GRPC_STATUS_INVALID_ARGUMENT,
                           "policy.head_min_followers: thresholds must strictly decrease");
    char *unknown[] = {"followers"};
    handler_fx_expect_fail(update_call(&p, unknown, 1), GRPC_STATUS_INVALID_ARGUMENT,
                           "update_mask.paths[0]: unknown field \"followers\"");
    p.window_days = 0;
    char *window[] = {"window_days"};
    handler_fx_expect_fail(update_call(&p, window, 1), GRPC_STATUS_INVALID_ARGUMENT,
                           "policy.window_days: must be within 1..366, got 0");
    p.version = 7; /* not the version in force */
    p.window_days = 14;
    handler_fx_expect_fail(update_call(&p, window, 1), GRPC_STATUS_ABORTED,
                           "policy.version: 7 is not the version in force (1)");
    YW_CHECK_INT(policy_version(), ==, 1);
    close_service();
}

YW_TEST(an_update_changes_the_masked_fields_bumps_the_version_and_persists)
{
    open_service(0);
    policy_t p = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    p.version = 1;
    p.tail_min_followers = 8000;
    p.mid_min_followers = 1; /* not in the mask: ignored */
    char *tail[] = {"tail_min_followers"};
    yw_fake_call_t *fc = update_call(&p, tail, 1);
    const policy_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->version, ==, 2);
    YW_CHECK_INT(got->tail_min_followers, ==, 8000);
    YW_CHECK_INT(got->mid_min_followers, ==, 50000);
    yw_fake_call_destroy(fc);
    handler_fx_reopen(&fx);
    YW_CHECK_INT(policy_version(), ==, 2);
    close_service();
}

/* ---- RefreshPopulation and the population methods ---- */

YW_TEST(refresh_population_answers_once_the_creators_read_are_in_force)
{
    open_service(1);
    int lists = atomic_load(&peer.lists);
    yw_fake_call_t *fc;
    const Yaowei__Tier__V1__RefreshPopulationResponse *r = refresh(&fc);
    YW_CHECK_INT(r->total_creators, ==, N_PEER_CREATORS);
    YW_CHECK_INT(r->policy_version, ==, 1);
    YW_CHECK(r->refresh_time != NULL && r->refresh_time->seconds > 0);
    YW_CHECK_INT(atomic_load(&peer.lists), >, lists); /* a refresh after the call came */
    yw_fake_call_destroy(fc);
    close_service();
}

YW_TEST(refresh_population_fails_unavailable_while_creator_profile_is_down)
{
    open_service(0);
    Yaowei__Tier__V1__RefreshPopulationRequest req =
        YAOWEI__TIER__V1__REFRESH_POPULATION_REQUEST__INIT;
    handler_fx_fails(&fx, "RefreshPopulation", &req.base, GRPC_STATUS_UNAVAILABLE,
                     "creator profile is unavailable: the refresh failed: ");
    close_service();
}

YW_TEST(population_methods_are_unavailable_before_any_population)
{
    open_service(0);
    Yaowei__Tier__V1__ListCreatorsByTierRequest list =
        YAOWEI__TIER__V1__LIST_CREATORS_BY_TIER_REQUEST__INIT;
    list.tier = MID;
    handler_fx_fails(&fx, "ListCreatorsByTier", &list.base, GRPC_STATUS_UNAVAILABLE,
                     "the creator population has not been read from creator profile yet");
    Yaowei__Tier__V1__GetTierDistributionRequest dist =
        YAOWEI__TIER__V1__GET_TIER_DISTRIBUTION_REQUEST__INIT;
    handler_fx_fails(&fx, "GetTierDistribution", &dist.base, GRPC_STATUS_UNAVAILABLE,
                     "the creator population has not been read");
    char *ids[] = {"mid-1"};
    handler_fx_expect_fail(tiers_call(ids, 1), GRPC_STATUS_UNAVAILABLE,
                           "the creator population has not been read");
    close_service();
}

YW_TEST(creator_tiers_in_request_order_with_the_unknown_in_not_found)
{
    open_service(1);
    refreshed();
    char *ids[] = {"tail-1", "ghost", "head-1", "mid-1", "amateur-1", "tail-1"};
    yw_fake_call_t *fc = tiers_call(ids, 6);
    const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *r = handler_fx_reply(fc);
    static const char *const want_ids[] = {"tail-1", "head-1", "mid-1", "amateur-1", "tail-1"};
    static const int want_tiers[] = {TAIL, HEAD, MID, AMATEUR, TAIL};
    YW_CHECK_INT(r->n_tiers, ==, 5);
    for (size_t i = 0; i < 5; i++) {
        YW_CHECK_STR(r->tiers[i]->creator_id, want_ids[i]);
        YW_CHECK_INT(r->tiers[i]->tier, ==, want_tiers[i]);
    }
    YW_CHECK_INT(r->tiers[1]->followers, ==, 600000);
    YW_CHECK_INT(r->n_not_found, ==, 1);
    YW_CHECK_STR(r->not_found[0], "ghost");
    YW_CHECK_INT(r->policy_version, ==, 1);
    yw_fake_call_destroy(fc);
    char *bad[] = {"mid-1", ""};
    handler_fx_expect_fail(tiers_call(bad, 2), GRPC_STATUS_INVALID_ARGUMENT,
                           "creator_ids[1]: required");
    close_service();
}

YW_TEST(creator_tiers_follow_the_policy_in_force_at_once)
{
    open_service(1);
    refreshed();
    policy_t p = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    p.mid_min_followers = 70000; /* mid-1 (60,000) falls to tail, mid-2 (80,000) stays */
    char *mid[] = {"mid_min_followers"};
    yw_fake_call_destroy(update_call(&p, mid, 1));
    char *ids[] = {"mid-1", "mid-2"};
    yw_fake_call_t *fc = tiers_call(ids, 2);
    const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *r = handler_fx_reply(fc);
    YW_CHECK_INT(r->tiers[0]->tier, ==, TAIL);
    YW_CHECK_INT(r->tiers[1]->tier, ==, MID);
    YW_CHECK_INT(r->policy_version, ==, 2);
    yw_fake_call_destroy(fc);
    close_service();
}

/* ---- another replica's policy ---- */

static int g_other_done, g_other_closed;
static grpc_status_code g_other_status;

static void other_done(yw_store_job_t *job, grpc_status_code status)
{
    (void)job;
    g_other_done = 1;
    g_other_status = status;
}

static void other_closed(void *arg)
{
    (void)arg;
    g_other_closed = 1;
}

/*
 * Another replica on the same database (a second store on the service's file, on a loop
 * of its own) writes an update of `mask` (one path) from `p`; returns the version written.
 */
static int64_t other_replica_updates(policy_t *p, char **mask)
{
    char path[400], err[256];
    snprintf(path, sizeof path, "%s/tier_scoring.db", fx.dir);
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_config_t cfg = {
        .path = path, .migrations = tier_migrations, .n_migrations = TIER_N_MIGRATIONS};
    yw_store_t *store = NULL;
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, 0);
    Google__Protobuf__FieldMask fm = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    fm.paths = mask;
    fm.n_paths = 1;
    Yaowei__Tier__V1__UpdateTierPolicyRequest req =
        YAOWEI__TIER__V1__UPDATE_TIER_POLICY_REQUEST__INIT;
    req.policy = p;
    req.update_mask = &fm;
    tier_policy_job_t j = {0};
    j.job.work = tier_store_update_policy;
    j.job.done = other_done;
    j.req = &req;
    j.now_s = 1700000000;
    g_other_done = 0;
    YW_CHECK_INT(yw_store_write(store, &j.job), ==, 0);
    while (!g_other_done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(g_other_status, ==, GRPC_STATUS_OK);
    g_other_closed = 0;
    yw_store_close(store, other_closed, NULL);
    YW_CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(g_other_closed, ==, 1);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
    return j.policy.version;
}

/* Runs the service's loop until the policy in force is `version` (at most 5 s). */
static void wait_policy_version(int64_t version)
{
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(fx.app));
    uint64_t t0 = uv_hrtime();
    while (policy_version() != version) {
        YW_CHECK(uv_hrtime() - t0 < UINT64_C(5000000000));
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

/*
 * What a replica does on a notice of TIER_POLICY_CHANNEL (PostgreSQL's; SQLite never
 * sends one, so the test calls the listener itself): a version newer than the one in
 * force is read from the database and put in force as a local update would be (tiers at
 * once); a notice of a version not newer reads nothing; NULL (the listener reconnected)
 * reads the policy again. The next update here merges into the database's version.
 */
YW_TEST(a_policy_another_replica_wrote_comes_into_force_on_its_notice)
{
    open_service(1);
    refreshed();
    policy_t p = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    p.mid_min_followers = 70000; /* mid-1 (60,000) falls to tail, mid-2 (80,000) stays */
    char *mid[] = {"mid_min_followers"};
    YW_CHECK_INT(other_replica_updates(&p, mid), ==, 2);
    YW_CHECK_INT(policy_version(), ==, 1); /* not heard of yet */
    /* Not newer than the one in force: ignored (a read would find version 2). */
    tier_on_policy_notice(fx.app, "1");
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(fx.app));
    for (uint64_t t0 = uv_hrtime(); uv_hrtime() - t0 < UINT64_C(200000000);) {
        uv_run(loop, UV_RUN_NOWAIT);
    }
    YW_CHECK_INT(policy_version(), ==, 1);
    tier_on_policy_notice(fx.app, "2");
    wait_policy_version(2);
    char *ids[] = {"mid-1", "mid-2"};
    yw_fake_call_t *fc = tiers_call(ids, 2);
    const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *r = handler_fx_reply(fc);
    YW_CHECK_INT(r->tiers[0]->tier, ==, TAIL);
    YW_CHECK_INT(r->tiers[1]->tier, ==, MID);
    YW_CHECK_INT(r->policy_version, ==, 2);
    yw_fake_call_destroy(fc);

    /* Missed notices (a reconnect): the policy is read again all the same. */
    p.rising_top_fraction = 0.5;
    char *rising[] = {"rising_top_fraction"};
    YW_CHECK_INT(other_replica_updates(&p, rising), ==, 3);
    tier_on_policy_notice(fx.app, NULL);
    wait_policy_version(3);

    /* An update here merges into version 3 and writes 4. */
    policy_t q = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    q.version = 3;
    q.window_days = 14;
    char *window[] = {"window_days"};
    fc = update_call(&q, window, 1);
    const policy_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->version, ==, 4);
    YW_CHECK_INT(got->mid_min_followers, ==, 70000);
    YW_CHECK(got->rising_top_fraction == 0.5);
    YW_CHECK_INT(got->window_days, ==, 14);
    yw_fake_call_destroy(fc);
    close_service();
}

YW_TEST(list_by_tier_pages_best_first_and_validates)
{
    open_service(1);
    refreshed();
    Yaowei__Tier__V1__ListCreatorsByTierRequest req =
        YAOWEI__TIER__V1__LIST_CREATORS_BY_TIER_REQUEST__INIT;
    req.tier = MID;
    req.page_size = 1;
    req.page_token = "";
    yw_fake_call_t *first = handler_fx_call(&fx, "ListCreatorsByTier", &req.base);
    const Yaowei__Tier__V1__ListCreatorsByTierResponse *a = handler_fx_reply(first);
    YW_CHECK_INT(a->total_size, ==, 2);
    YW_CHECK_INT(a->n_scores, ==, 1);
    YW_CHECK(a->next_page_token[0] != '\0');
    req.page_token = a->next_page_token;
    yw_fake_call_t *second = handler_fx_call(&fx, "ListCreatorsByTier", &req.base);
    const Yaowei__Tier__V1__ListCreatorsByTierResponse *b = handler_fx_reply(second);
    YW_CHECK_INT(b->n_scores, ==, 1);
    YW_CHECK_STR(b->next_page_token, "");
    /* Both mid creators, best first. */
    YW_CHECK(strcmp(a->scores[0]->creator_id, b->scores[0]->creator_id) != 0);
    YW_CHECK(a->scores[0]->score >= b->scores[0]->score);
    YW_CHECK_INT(a->scores[0]->tier, ==, MID);
    /* A token is bound to its tier and category. */
    req.tier = TAIL;
    handler_fx_fails(&fx, "ListCreatorsByTier", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "page_token:");
    yw_fake_call_destroy(first);
    yw_fake_call_destroy(second);
    req.page_token = "";
    req.tier = YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED;
    handler_fx_fails(&fx, "ListCreatorsByTier", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "tier: must be TIER_HEAD, TIER_MID, TIER_TAIL or TIER_AMATEUR");
    req.tier = MID;
    req.page_size = -1;
    handler_fx_fails(&fx, "ListCreatorsByTier", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "page_size: must not be negative, got -1");
    close_service();
}

YW_TEST(tier_distribution_counts_each_tier_and_filters_by_category)
{
    open_service(1);
    refreshed();
    Yaowei__Tier__V1__GetTierDistributionRequest req =
        YAOWEI__TIER__V1__GET_TIER_DISTRIBUTION_REQUEST__INIT;
    req.category = "";
    yw_fake_call_t *fc = handler_fx_call(&fx, "GetTierDistribution", &req.base);
    const Yaowei__Tier__V1__TierDistribution *d = handler_fx_reply(fc);
    YW_CHECK_INT(d->total_creators, ==, 5);
    YW_CHECK_INT(d->n_tiers, ==, 4);
    static const int64_t want[] = {1, 2, 1, 1}; /* head, mid, tail, amateur */
    for (size_t t = 0; t < 4; t++) {
        YW_CHECK_INT(d->tiers[t]->tier, ==, (int)t + 1);
        YW_CHECK_INT(d->tiers[t]->creators, ==, want[t]);
    }
    yw_fake_call_destroy(fc);
    req.category = "food";
    fc = handler_fx_call(&fx, "GetTierDistribution", &req.base);
    d = handler_fx_reply(fc);
    YW_CHECK_INT(d->total_creators, ==, 1);
    YW_CHECK_INT(d->tiers[1]->creators, ==, 1); /* mid-2 */
    yw_fake_call_destroy(fc);
    close_service();
}

/* ---- ScoreCreator, BatchScoreCreators ---- */

YW_TEST(score_creator_reads_creator_profile_and_scores_under_the_policy)
{
    open_service(1);
    Yaowei__Tier__V1__ScoreCreatorRequest req = YAOWEI__TIER__V1__SCORE_CREATOR_REQUEST__INIT;
    req.creator_id = "mid-1";
    yw_fake_call_t *fc = handler_fx_call(&fx, "ScoreCreator", &req.base);
    const Yaowei__Tier__V1__TierScore *s = handler_fx_reply(fc);
    YW_CHECK_STR(s->creator_id, "mid-1");
    YW_CHECK_INT(s->tier, ==, MID);
    YW_CHECK_INT(s->followers, ==, 60000);
    YW_CHECK_STR(s->category, "tea");
    YW_CHECK_INT(s->policy_version, ==, 1);
    YW_CHECK(s->score > 0.0 && s->score <= 100.0);
    YW_CHECK(s->components != NULL);
    yw_fake_call_destroy(fc);
    req.creator_id = "nobody";
    handler_fx_fails(&fx, "ScoreCreator", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator_id: creator \"nobody\" not found");
    req.creator_id = "";
    handler_fx_fails(&fx, "ScoreCreator", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "creator_id: required");
    close_service();
}

YW_TEST(batch_score_creators_in_request_order_and_names_the_missing)
{
    open_service(1);
    char *ids[] = {"amateur-1", "head-1", "amateur-1"};
    Yaowei__Tier__V1__BatchScoreCreatorsRequest req =
        YAOWEI__TIER__V1__BATCH_SCORE_CREATORS_REQUEST__INIT;
    req.creator_ids = ids;
    req.n_creator_ids = 3;
    yw_fake_call_t *fc = handler_fx_call(&fx, "BatchScoreCreators", &req.base);
    const Yaowei__Tier__V1__BatchScoreCreatorsResponse *r = handler_fx_reply(fc);
    YW_CHECK_INT(r->n_scores, ==, 3);
    YW_CHECK_STR(r->scores[0]->creator_id, "amateur-1");
    YW_CHECK_INT(r->scores[0]->tier, ==, AMATEUR);
    YW_CHECK_STR(r->scores[1]->creator_id, "head-1");
    YW_CHECK_INT(r->scores[1]->tier, ==, HEAD);
    YW_CHECK(r->scores[0]->score == r->scores[2]->score);
    yw_fake_call_destroy(fc);
    char *missing[] = {"head-1", "ghost"};
    req.creator_ids = missing;
    req.n_creator_ids = 2;
    handler_fx_fails(&fx, "BatchScoreCreators", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator_ids[1]: creator \"ghost\" not found");
    req.n_creator_ids = 0;
    fc = handler_fx_call(&fx, "BatchScoreCreators", &req.base);
    YW_CHECK_INT(
        ((const Yaowei__Tier__V1__BatchScoreCreatorsResponse *)handler_fx_reply(fc))->n_scores, ==,
        0);
    yw_fake_call_destroy(fc);
    close_service();
}

YW_TEST(score_creator_is_unavailable_while_creator_profile_is_down)
{
    open_service(0);
    Yaowei__Tier__V1__ScoreCreatorRequest req = YAOWEI__TIER__V1__SCORE_CREATOR_REQUEST__INIT;
    req.creator_id = "mid-1";
    handler_fx_fails(&fx, "ScoreCreator", &req.base, GRPC_STATUS_UNAVAILABLE,
                     "creator profile is unavailable (BatchGetCreators: ");
    close_service();
}

YW_TEST(the_saved_population_serves_after_a_restart_without_creator_profile)
{
    open_service(1);
    refreshed();
    peer_stop();
    handler_fx_reopen(&fx);
    char *ids[] = {"mid-2"};
    yw_fake_call_t *fc = tiers_call(ids, 1);
    const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *r = handler_fx_reply(fc);
    YW_CHECK_INT(r->n_tiers, ==, 1);
    YW_CHECK_INT(r->tiers[0]->tier, ==, MID);
    yw_fake_call_destroy(fc);
    close_service();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(the_policy_starts_as_the_default_version_1),
        YW_TEST_ENTRY(an_update_names_the_field_it_refuses_and_changes_nothing),
        YW_TEST_ENTRY(an_update_changes_the_masked_fields_bumps_the_version_and_persists),
        YW_TEST_ENTRY(refresh_population_answers_once_the_creators_read_are_in_force),
        YW_TEST_ENTRY(refresh_population_fails_unavailable_while_creator_profile_is_down),
        YW_TEST_ENTRY(population_methods_are_unavailable_before_any_population),
        YW_TEST_ENTRY(creator_tiers_in_request_order_with_the_unknown_in_not_found),
        YW_TEST_ENTRY(creator_tiers_follow_the_policy_in_force_at_once),
        YW_TEST_ENTRY(a_policy_another_replica_wrote_comes_into_force_on_its_notice),
        YW_TEST_ENTRY(list_by_tier_pages_best_first_and_validates),
        YW_TEST_ENTRY(tier_distribution_counts_each_tier_and_filters_by_category),
        YW_TEST_ENTRY(score_creator_reads_creator_profile_and_scores_under_the_policy),
        YW_TEST_ENTRY(batch_score_creators_in_request_order_and_names_the_missing),
        YW_TEST_ENTRY(score_creator_is_unavailable_while_creator_profile_is_down),
        YW_TEST_ENTRY(the_saved_population_serves_after_a_restart_without_creator_profile),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
