/*
 * Unit tests of services/attribution/attr_tier.c: tier labels asked of a fake tier
 * scoring (a real gRPC server in the same process, on the same loop, serving
 * BatchGetCreatorTiers), so that the batches, the calls in flight, the shared deadline,
 * the halving of refused batches and the cache of not_found answers can be watched from
 * the server's side.
 *
 * The fake answers from the id: "ghost..." is not_found, "h..." HEAD, "m..." MID,
 * "t..." TAIL, anything else AMATEUR; a batch holding "bad" is INVALID_ARGUMENT. Calls
 * are held and answered by a timer tick (every 2 ms), so that calls overlap as they
 * would over a network. With `wait_for` set, a tick answers only once that many calls
 * are held (or every call expected has come): so the number held at once is exactly
 * what the client keeps in flight. Only the first `answer_max` calls are ever answered;
 * the later ones are held until the client gives up.
 *
 * The fake serves BatchScoreCreators too; set `old` and it answers BatchGetCreatorTiers
 * UNIMPLEMENTED at once, as a tier scoring from before that method does. It answers a
 * BatchScoreCreators batch holding ghosts with NOT_FOUND naming them as creator profile
 * does ("creator_ids[i] ...").
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/client.h"
#include "common/runtime.h"
#include "common/server.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_tier.h"
#include "tests/unit/test.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#define NOW_NS (1700000000LL * 1000000000LL)
#define S_NS 1000000000LL
#define MAX_CALLS 64

typedef struct {
    yw_call_t *call;
    const Yaowei__Tier__V1__BatchGetCreatorTiersRequest *req;
    const Yaowei__Tier__V1__BatchScoreCreatorsRequest *score_req; /* the older fake's */
    int answered;
} held_t;

typedef struct {
    /* the fake tier scoring */
    yw_runtime_t *rt;
    yw_server_t *srv;
    uv_timer_t tick;
    held_t calls[MAX_CALLS];
    int n_calls;
    /* what each call asked, as the server saw it on arrival (requests go with the call) */
    int64_t remaining_ms[MAX_CALLS]; /* its deadline */
    uint64_t recv_ns[MAX_CALLS];     /* when it came (uv_hrtime()) */
    size_t n_ids[MAX_CALLS];
    int only_ghosts[MAX_CALLS];
    size_t ids_seen;
    int holding, max_holding;
    int answer_max;   /* answer the first this many calls; hold the others */
    int wait_for;     /* answer once this many are held ... */
    int expect_calls; /* ... or this many have come */
    int old;          /* BatchGetCreatorTiers is UNIMPLEMENTED */
    int n_unimplemented;
    /* attribution's side */
    attr_state_t st;
    attr_tier_t *tier;
    int done;
    int want_done; /* on_done stops the loop once this many are done (0: 1) */
    char error[512];
    int has_error;
} fx_t;

static fx_t *fx;

static int tier_of_id(const char *id)
{
    switch (id[0]) {
    case 'h':
        return YAOWEI__TIER__V1__TIER__TIER_HEAD;
    case 'm':
        return YAOWEI__TIER__V1__TIER__TIER_MID;
    case 't':
        return YAOWEI__TIER__V1__TIER__TIER_TAIL;
    default:
        return YAOWEI__TIER__V1__TIER__TIER_AMATEUR;
    }
}

/* The older fake's answer: a TierScore per id, or NOT_FOUND naming the ghosts. */
static void answer_scores(held_t *h)
{
    const Yaowei__Tier__V1__BatchScoreCreatorsRequest *req = h->score_req;
    size_t n = req->n_creator_ids;
    char msg[512];
    size_t o = 0, ghosts = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(req->creator_ids[i], "ghost", 5) == 0) {
            ghosts++;
            if (o < sizeof msg) {
                o += (size_t)snprintf(msg + o, sizeof msg - o, "%s creator_ids[%zu] \"%s\"",
                                      ghosts > 1 ? "," : "", i, req->creator_ids[i]);
            }
        }
    }
    if (ghosts > 0) {
        yw_call_finish(h->call, GRPC_STATUS_NOT_FOUND, "creator_ids: %zu creators not found:%s",
                       ghosts, msg);
        return;
    }
    Yaowei__Tier__V1__TierScore *msgs = calloc(n + 1, sizeof *msgs);
    Yaowei__Tier__V1__TierScore **scores = calloc(n + 1, sizeof *scores);
    YW_CHECK(msgs != NULL && scores != NULL);
    for (size_t i = 0; i < n; i++) {
        yaowei__tier__v1__tier_score__init(&msgs[i]);
        msgs[i].creator_id = req->creator_ids[i];
        msgs[i].tier = (Yaowei__Tier__V1__Tier)tier_of_id(req->creator_ids[i]);
        scores[i] = &msgs[i];
    }
    Yaowei__Tier__V1__BatchScoreCreatorsResponse resp =
        YAOWEI__TIER__V1__BATCH_SCORE_CREATORS_RESPONSE__INIT;
    resp.n_scores = n;
    resp.scores = scores;
    (void)yw_call_reply(h->call, &resp.base);
    free(msgs);
    free(scores);
}

static void answer(held_t *h)
{
    const Yaowei__Tier__V1__BatchGetCreatorTiersRequest *req = h->req;
    h->answered = 1;
    fx->holding--;
    if (h->score_req != NULL) {
        answer_scores(h);
        return;
    }
    for (size_t i = 0; i < req->n_creator_ids; i++) {
        if (strcmp(req->creator_ids[i], "bad") == 0) {
            yw_call_finish(h->call, GRPC_STATUS_INVALID_ARGUMENT,
                           "creator_ids[%zu]: must be 1-128 characters of [A-Za-z0-9_.-]", i);
            return;
        }
    }
    size_t n = req->n_creator_ids;
    Yaowei__Tier__V1__CreatorTier *msgs = calloc(n + 1, sizeof *msgs);
    Yaowei__Tier__V1__CreatorTier **tiers = calloc(n + 1, sizeof *tiers);
    char **not_found = calloc(n + 1, sizeof *not_found);
    YW_CHECK(msgs != NULL && tiers != NULL && not_found != NULL);
    size_t nt = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        char *id = req->creator_ids[i];
        if (strncmp(id, "ghost", 5) == 0) {
            not_found[nf++] = id;
            continue;
        }
        yaowei__tier__v1__creator_tier__init(&msgs[nt]);
        msgs[nt].creator_id = id;
        msgs[nt].tier = (Yaowei__Tier__V1__Tier)tier_of_id(id);
        tiers[nt] = &msgs[nt];
        nt++;
    }
    Yaowei__Tier__V1__BatchGetCreatorTiersResponse resp =
        YAOWEI__TIER__V1__BATCH_GET_CREATOR_TIERS_RESPONSE__INIT;
    resp.n_tiers = nt;
    resp.tiers = tiers;
    resp.n_not_found = nf;
    resp.not_found = not_found;
    resp.policy_version = 1;
    (void)yw_call_reply(h->call, &resp.base);
    free(msgs);
    free(tiers);
    free(not_found);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    if (fx->wait_for > 0 && fx->holding < fx->wait_for && fx->n_calls < fx->expect_calls) {
        return;
    }
    for (int i = 0; i < fx->n_calls && i < fx->answer_max; i++) {
        if (!fx->calls[i].answered) {
            answer(&fx->calls[i]);
        }
    }
}

static void on_batch_get(yw_call_t *call, const ProtobufCMessage *msg)
{
    if (fx->old) {
        fx->n_unimplemented++;
        yw_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    YW_CHECK(fx->n_calls < MAX_CALLS);
    held_t *h = &fx->calls[fx->n_calls];
    fx->remaining_ms[fx->n_calls] = yw_call_remaining_ms(call);
    fx->recv_ns[fx->n_calls] = uv_hrtime();
    fx->n_calls++;
    h->call = call;
    h->req = (const Yaowei__Tier__V1__BatchGetCreatorTiersRequest *)msg;
    fx->ids_seen += h->req->n_creator_ids;
    fx->n_ids[fx->n_calls - 1] = h->req->n_creator_ids;
    fx->only_ghosts[fx->n_calls - 1] = 1;
    for (size_t i = 0; i < h->req->n_creator_ids; i++) {
        if (strncmp(h->req->creator_ids[i], "ghost", 5) != 0) {
            fx->only_ghosts[fx->n_calls - 1] = 0;
        }
    }
    if (++fx->holding > fx->max_holding) {
        fx->max_holding = fx->holding;
    }
}

static void on_batch_score(yw_call_t *call, const ProtobufCMessage *msg)
{
    YW_CHECK(fx->n_calls < MAX_CALLS);
    held_t *h = &fx->calls[fx->n_calls];
    fx->remaining_ms[fx->n_calls] = yw_call_remaining_ms(call);
    fx->recv_ns[fx->n_calls] = uv_hrtime();
    h->call = call;
    h->score_req = (const Yaowei__Tier__V1__BatchScoreCreatorsRequest *)msg;
    fx->ids_seen += h->score_req->n_creator_ids;
    fx->n_ids[fx->n_calls] = h->score_req->n_creator_ids;
    fx->n_calls++;
    if (++fx->holding > fx->max_holding) {
        fx->max_holding = fx->holding;
    }
}

static const yw_method_t fake_methods[] = {
    {ATTR_TIER_METHOD, YW_METHOD_UNARY,
     &yaowei__tier__v1__batch_get_creator_tiers_request__descriptor,
     &yaowei__tier__v1__batch_get_creator_tiers_response__descriptor, on_batch_get, NULL, NULL,
     NULL},
    {ATTR_TIER_FALLBACK_METHOD, YW_METHOD_UNARY,
     &yaowei__tier__v1__batch_score_creators_request__descriptor,
     &yaowei__tier__v1__batch_score_creators_response__descriptor, on_batch_score, NULL, NULL,
     NULL},
};
static const yw_service_t fake_service = {
    .name = "yaowei.tier.v1.TierScoringService", .methods = fake_methods, .n_methods = 2};

/* Starts the fake and attribution's side. `up` 0: attr_tier calls a port nobody serves. */
static void start_ticking(fx_t *f, int up, int64_t ttl_ns, uint64_t first_tick_ms)
{
    memset(f, 0, sizeof *f);
    fx = f;
    f->answer_max = MAX_CALLS;
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 100};
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &fake_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(uv_timer_init(yw_runtime_loop(f->rt), &f->tick), ==, 0);
    YW_CHECK_INT(uv_timer_start(&f->tick, on_tick, first_tick_ms, 2), ==, 0);
    char target[64];
    /* Port 1 on loopback: refused at once. */
    snprintf(target, sizeof target, "127.0.0.1:%d", up ? yw_server_port(f->srv) : 1);
    YW_CHECK_INT(attr_tier_create(f->rt, target, ttl_ns, &f->tier), ==, 0);
    YW_CHECK_INT(attr_state_init(&f->st), ==, 0);
}

static void start(fx_t *f, int up, int64_t ttl_ns)
{
    start_ticking(f, up, ttl_ns, 2);
}

/* A tier scoring from before BatchGetCreatorTiers. */
static void start_old(fx_t *f, int64_t ttl_ns)
{
    start(f, 1, ttl_ns);
    f->old = 1;
}

static void on_down(void *arg)
{
    fx_t *f = arg;
    yw_server_destroy(f->srv);
    yw_runtime_stop(f->rt);
}

/* Releases the held calls, stops everything and frees what start() made. */
static void stop(fx_t *f)
{
    for (int i = 0; i < f->n_calls; i++) {
        if (!f->calls[i].answered) {
            answer(&f->calls[i]); /* cancelled by now: harmless */
        }
    }
    uv_close((uv_handle_t *)&f->tick, NULL);
    attr_tier_destroy(f->tier);
    yw_server_shutdown(f->srv, on_down, f);
    yw_runtime_run(f->rt);
    yw_runtime_destroy(f->rt);
    attr_state_free(&f->st);
}

/* Adds creators "<prefix><i>" for i in [0, n) to the state; their ids go to out[]. */
static void add_creators(fx_t *f, const char *prefix, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++) {
        char id[64];
        int len = snprintf(id, sizeof id, "%s%zu", prefix, i);
        YW_CHECK_INT(attr_state_add_exposure_rollup(&f->st, id, (size_t)len, 20000, 1, 0, 0), ==,
                     0);
        int64_t c = attr_intern_find(&f->st.creators, id, (size_t)len);
        YW_CHECK(c >= 0);
        out[i] = (uint32_t)c;
    }
}

static void on_done(void *arg, const char *error)
{
    fx_t *f = arg;
    f->done++;
    f->has_error = error != NULL;
    snprintf(f->error, sizeof f->error, "%s", error != NULL ? error : "");
    if (f->done >= (f->want_done > 0 ? f->want_done : 1)) {
        yw_runtime_stop(f->rt);
    }
}

/* One refresh of ids[0..n) at `now_ns`, run to its end. Returns attr_tier_refresh()'s. */
static int refresh(fx_t *f, const uint32_t *ids, size_t n, int64_t now_ns)
{
    f->done = 0;
    int rc = attr_tier_refresh(f->tier, &f->st, ids, n, now_ns, NULL, on_done, f);
    if (rc == 1) {
        yw_runtime_run(f->rt);
        YW_CHECK_INT(f->done, ==, 1);
    }
    return rc;
}

YW_TEST(batches_go_four_at_a_time_and_label_everyone)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    attr_tier_set_limits(f.tier, 10, 4, 5000);
    f.wait_for = 4;
    f.expect_calls = 10;
    uint32_t ids[95];
    add_creators(&f, "m", 40, ids);
    add_creators(&f, "t", 55, ids + 40);
    YW_CHECK_INT(refresh(&f, ids, 95, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.n_calls, ==, 10); /* 9 of 10 ids and one of 5 */
    YW_CHECK_INT(f.ids_seen, ==, 95);
    YW_CHECK_INT(f.max_holding, ==, 4); /* never more than 4 in flight, and 4 used */
    for (size_t i = 0; i < 95; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==,
                     i < 40 ? YAOWEI__TIER__V1__TIER__TIER_MID : YAOWEI__TIER__V1__TIER__TIER_TAIL);
    }
    /* Cached: nothing to ask within the TTL; everything again after it. */
    YW_CHECK_INT(refresh(&f, ids, 95, NOW_NS + 299 * S_NS), ==, 0);
    f.expect_calls = 20;
    YW_CHECK_INT(refresh(&f, ids, 95, NOW_NS + 300 * S_NS), ==, 1);
    YW_CHECK_INT(f.n_calls, ==, 20);
    stop(&f);
}

YW_TEST(the_default_is_four_in_flight_of_a_thousand)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    static uint32_t ids[6500];
    add_creators(&f, "h", 6500, ids);
    f.wait_for = ATTR_TIER_INFLIGHT;
    f.expect_calls = 7;
    YW_CHECK_INT(refresh(&f, ids, 6500, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.n_calls, ==, 7);
    YW_CHECK_INT(f.max_holding, ==, ATTR_TIER_INFLIGHT);
    for (int i = 0; i < f.n_calls; i++) {
        YW_CHECK(f.n_ids[i] <= ATTR_TIER_BATCH);
    }
    YW_CHECK_INT(attr_tier_of(&f.st, ids[6499]), ==, YAOWEI__TIER__V1__TIER__TIER_HEAD);
    stop(&f);
}

YW_TEST(batches_share_one_deadline_and_the_rest_stay_unlabelled)
{
    fx_t f;
    /* The first answers come 200 ms into the refresh's 600. */
    start_ticking(&f, 1, 300 * S_NS, 200);
    attr_tier_set_limits(f.tier, 10, 4, 600);
    f.answer_max = 2; /* the first two are answered; the others hang */
    uint32_t ids[100];
    add_creators(&f, "m", 100, ids);
    /* The 200 ms count from now, not from the set-up (the loop's clock is fresh). */
    uv_update_time(yw_runtime_loop(f.rt));
    YW_CHECK_INT(uv_timer_start(&f.tick, on_tick, 200, 2), ==, 0);
    YW_CHECK_INT(refresh(&f, ids, 100, NOW_NS), ==, 1);
    /* 4 at once, then one for each of the two answered: 6 calls, the last 4 hanging until
     * the refresh's deadline; the 4 batches never sent are dropped. */
    YW_CHECK_INT(f.n_calls, ==, 6);
    YW_CHECK_INT(f.max_holding, ==, 4);
    YW_CHECK(f.has_error);
    YW_CHECK(strstr(f.error, "DEADLINE_EXCEEDED") != NULL);
    for (int i = 0; i < 6; i++) {
        YW_CHECK(f.remaining_ms[i] <= 600);
    }
    /* Sent after the first answers came back (about 200 ms in): they got what was left
     * of the 600 ms, not 600 ms of their own: what the first had, less the time between
     * (measured, not assumed: on a busy machine the first answer may come sooner). */
    for (int i = 4; i < 6; i++) {
        int64_t between_ms = (int64_t)((f.recv_ns[i] - f.recv_ns[0]) / 1000000);
        YW_CHECK(f.remaining_ms[i] <= f.remaining_ms[0] - between_ms + 20);
    }
    size_t labelled = 0, unlabelled = 0;
    for (size_t i = 0; i < 100; i++) {
        YW_CHECK_INT(attr_tier_known(&f.st, ids[i]), ==, f.st.creator_meta[ids[i]].tier_ns != 0);
        if (attr_tier_known(&f.st, ids[i])) {
            YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_MID);
            labelled++;
        } else {
            YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
            unlabelled++;
        }
    }
    YW_CHECK_INT(labelled, ==, 20);
    YW_CHECK_INT(unlabelled, ==, 80);
    /* The next refresh asks only for the 80 still missing (the 20 are cached). */
    f.answer_max = MAX_CALLS;
    int before = f.n_calls;
    size_t seen = f.ids_seen;
    YW_CHECK_INT(refresh(&f, ids, 100, NOW_NS + S_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.n_calls - before, ==, 8);
    YW_CHECK_INT(f.ids_seen - seen, ==, 80);
    for (size_t i = 0; i < 100; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_MID);
    }
    stop(&f);
}

YW_TEST(not_found_is_unlabelled_and_asked_again_after_a_minute)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    uint32_t ids[6];
    add_creators(&f, "h", 3, ids);
    add_creators(&f, "ghost", 3, ids + 3);
    YW_CHECK_INT(refresh(&f, ids, 6, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error); /* not an error */
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_HEAD);
        YW_CHECK_INT(attr_tier_of(&f.st, ids[3 + i]), ==, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
        /* An answer that it does not know them is a label all the same. */
        YW_CHECK(attr_tier_known(&f.st, ids[i]) && attr_tier_known(&f.st, ids[3 + i]));
    }
    YW_CHECK_INT(refresh(&f, ids, 6, NOW_NS + 59 * S_NS), ==, 0);
    size_t seen = f.ids_seen;
    YW_CHECK_INT(refresh(&f, ids, 6, NOW_NS + 60 * S_NS), ==, 1);
    YW_CHECK_INT(f.ids_seen - seen, ==, 3); /* only the ghosts */
    YW_CHECK(f.only_ghosts[f.n_calls - 1]);
    stop(&f);
}

YW_TEST(not_found_is_asked_again_every_time_under_ttl_zero)
{
    fx_t f;
    start(&f, 1, 0); /* --tier-label-ttl-s 0: every report asks again */
    uint32_t ids[2];
    add_creators(&f, "ghost", 1, ids);
    add_creators(&f, "m", 1, ids + 1);
    YW_CHECK_INT(refresh(&f, ids, 2, NOW_NS), ==, 1);
    YW_CHECK_INT(refresh(&f, ids, 2, NOW_NS), ==, 1);
    YW_CHECK_INT(f.ids_seen, ==, 4);
    stop(&f);
}

YW_TEST(a_refused_batch_is_halved_until_the_bad_id_stands_alone)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    attr_tier_set_limits(f.tier, 8, 4, 5000);
    uint32_t ids[17];
    add_creators(&f, "t", 16, ids);
    YW_CHECK_INT(attr_state_add_exposure_rollup(&f.st, "bad", 3, 20000, 1, 0, 0), ==, 0);
    ids[16] = (uint32_t)attr_intern_find(&f.st.creators, "bad", 3);
    /* "bad" in the middle of the second batch. */
    uint32_t order[17];
    memcpy(order, ids, 11 * sizeof ids[0]);
    order[11] = ids[16];
    memcpy(order + 12, ids + 11, 5 * sizeof ids[0]);
    YW_CHECK_INT(refresh(&f, order, 17, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK(f.max_holding <= 4);
    for (size_t i = 0; i < 16; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    }
    YW_CHECK(f.st.creator_meta[ids[16]].tier_ns != 0);
    YW_CHECK_INT(attr_tier_of(&f.st, ids[16]), ==, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
    stop(&f);
}

YW_TEST(ids_tier_scoring_cannot_take_are_not_sent)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    uint32_t ids[1];
    YW_CHECK_INT(attr_state_add_exposure_rollup(&f.st, "a b", 3, 20000, 1, 0, 0), ==, 0);
    ids[0] = (uint32_t)attr_intern_find(&f.st.creators, "a b", 3);
    YW_CHECK_INT(refresh(&f, ids, 1, NOW_NS), ==, 0);
    YW_CHECK_INT(f.n_calls, ==, 0);
    YW_CHECK(f.st.creator_meta[ids[0]].tier_ns != 0);
    YW_CHECK_INT(attr_tier_of(&f.st, ids[0]), ==, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
    stop(&f);
}

YW_TEST(tier_scoring_down_stops_after_the_first_failures)
{
    fx_t f;
    start(&f, 0, 300 * S_NS);
    attr_tier_set_limits(f.tier, 10, 4, 5000);
    uint32_t ids[100];
    add_creators(&f, "h", 100, ids);
    YW_CHECK_INT(refresh(&f, ids, 100, NOW_NS), ==, 1);
    YW_CHECK(f.has_error);
    YW_CHECK(strstr(f.error, "UNAVAILABLE") != NULL);
    for (size_t i = 0; i < 100; i++) {
        YW_CHECK(f.st.creator_meta[ids[i]].tier_ns == 0); /* asked again next time */
    }
    stop(&f);
}

YW_TEST(concurrent_refreshes_share_one_fetch)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    attr_tier_set_limits(f.tier, 10, 4, 5000);
    uint32_t ids[50];
    add_creators(&f, "m", 50, ids);
    /* Eight reports at once over the same creators (none labelled yet). */
    f.want_done = 8;
    for (int i = 0; i < 8; i++) {
        YW_CHECK_INT(attr_tier_refresh(f.tier, &f.st, ids, 50, NOW_NS, NULL, on_done, &f), ==, 1);
    }
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.done, ==, 8);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.n_calls, ==, 5); /* one fetch: 50 ids in batches of 10 */
    YW_CHECK_INT(f.ids_seen, ==, 50);
    for (size_t i = 0; i < 50; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_MID);
    }
    stop(&f);
}

YW_TEST(a_refresh_joins_what_is_in_flight_and_asks_only_for_the_rest)
{
    fx_t f;
    start(&f, 1, 300 * S_NS);
    attr_tier_set_limits(f.tier, 10, 4, 5000);
    uint32_t ids[30];
    add_creators(&f, "t", 30, ids);
    f.want_done = 3;
    /* [0, 20) starts a fetch; [10, 30) waits for it and fetches [20, 30); [0, 30) asks
     * for nothing new. */
    YW_CHECK_INT(attr_tier_refresh(f.tier, &f.st, ids, 20, NOW_NS, NULL, on_done, &f), ==, 1);
    YW_CHECK_INT(attr_tier_refresh(f.tier, &f.st, ids + 10, 20, NOW_NS, NULL, on_done, &f), ==, 1);
    YW_CHECK_INT(attr_tier_refresh(f.tier, &f.st, ids, 30, NOW_NS, NULL, on_done, &f), ==, 1);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.done, ==, 3);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.ids_seen, ==, 30);
    YW_CHECK_INT(f.n_calls, ==, 3);
    for (size_t i = 0; i < 30; i++) {
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    }
    /* Over: asked again once the labels expire, not before. */
    YW_CHECK_INT(refresh(&f, ids, 30, NOW_NS + 299 * S_NS), ==, 0);
    f.want_done = 0;
    YW_CHECK_INT(refresh(&f, ids, 30, NOW_NS + 300 * S_NS), ==, 1);
    YW_CHECK_INT(f.ids_seen, ==, 60);
    stop(&f);
}

YW_TEST(an_older_tier_scoring_is_asked_with_batch_score_creators)
{
    fx_t f;
    start_old(&f, 300 * S_NS);
    attr_tier_set_limits(f.tier, 10, 4, 5000);
    uint32_t ids[28];
    add_creators(&f, "h", 20, ids);
    add_creators(&f, "ghost", 3, ids + 20);
    add_creators(&f, "m", 5, ids + 23);
    YW_CHECK(!attr_tier_fallback(f.tier));
    YW_CHECK_INT(refresh(&f, ids, 28, NOW_NS), ==, 1);
    YW_CHECK_STR(f.error, "");
    YW_CHECK(attr_tier_fallback(f.tier));
    for (size_t i = 0; i < 28; i++) {
        int want = i < 20   ? YAOWEI__TIER__V1__TIER__TIER_HEAD
                   : i < 23 ? YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED
                            : YAOWEI__TIER__V1__TIER__TIER_MID;
        YW_CHECK_INT(attr_tier_of(&f.st, ids[i]), ==, want);
        YW_CHECK(f.st.creator_meta[ids[i]].tier_ns != 0); /* the ghosts too: not_found */
    }
    /* The three batches went as BatchGetCreatorTiers (UNIMPLEMENTED), then as
     * BatchScoreCreators: the batch holding the ghosts once more without them. */
    YW_CHECK_INT(f.n_unimplemented, ==, 3);
    YW_CHECK_INT(f.n_calls, ==, 4);
    YW_CHECK_INT(f.ids_seen, ==, 10 + 10 + 8 + 5);
    /* Later refreshes go straight to BatchScoreCreators: the ghosts, after a minute, are
     * named by the NOT_FOUND of their one call. */
    YW_CHECK_INT(refresh(&f, ids, 28, NOW_NS + 100 * S_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK_INT(f.n_unimplemented, ==, 3);
    YW_CHECK_INT(f.n_calls, ==, 5);
    YW_CHECK_INT(f.ids_seen, ==, 33 + 3);
    /* kept a minute: dated back by TTL - 60 s */
    YW_CHECK(f.st.creator_meta[ids[20]].tier_ns == NOW_NS + 100 * S_NS - 240 * S_NS);
    YW_CHECK(attr_tier_fallback(f.tier));
    stop(&f);
}

YW_TEST(an_upgraded_tier_scoring_is_found_by_the_reprobe)
{
    fx_t f;
    start_old(&f, 0);
    attr_tier_set_reprobe(f.tier, 1);
    uint32_t ids[3];
    add_creators(&f, "t", 3, ids);
    YW_CHECK_INT(refresh(&f, ids, 3, NOW_NS), ==, 1);
    YW_CHECK(attr_tier_fallback(f.tier));
    YW_CHECK_INT(f.n_unimplemented, ==, 1);
    YW_CHECK_INT(f.n_calls, ==, 1);
    /* Still old: the probe is UNIMPLEMENTED again, the batch goes as BatchScoreCreators. */
    usleep(5000);
    YW_CHECK_INT(refresh(&f, ids, 3, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK(attr_tier_fallback(f.tier));
    YW_CHECK_INT(f.n_unimplemented, ==, 2);
    YW_CHECK_INT(f.n_calls, ==, 2);
    YW_CHECK_INT(attr_tier_of(&f.st, ids[2]), ==, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    /* Upgraded: the probe is answered and the fallback ends. */
    f.old = 0;
    usleep(5000);
    YW_CHECK_INT(refresh(&f, ids, 3, NOW_NS), ==, 1);
    YW_CHECK(!f.has_error);
    YW_CHECK(!attr_tier_fallback(f.tier));
    YW_CHECK_INT(f.n_calls, ==, 3); /* BatchGetCreatorTiers, held and answered */
    YW_CHECK_INT(f.n_unimplemented, ==, 2);
    YW_CHECK_INT(attr_tier_of(&f.st, ids[2]), ==, YAOWEI__TIER__V1__TIER__TIER_TAIL);
    stop(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(batches_go_four_at_a_time_and_label_everyone),
        YW_TEST_ENTRY(the_default_is_four_in_flight_of_a_thousand),
        YW_TEST_ENTRY(batches_share_one_deadline_and_the_rest_stay_unlabelled),
        YW_TEST_ENTRY(not_found_is_unlabelled_and_asked_again_after_a_minute),
        YW_TEST_ENTRY(not_found_is_asked_again_every_time_under_ttl_zero),
        YW_TEST_ENTRY(a_refused_batch_is_halved_until_the_bad_id_stands_alone),
        YW_TEST_ENTRY(ids_tier_scoring_cannot_take_are_not_sent),
        YW_TEST_ENTRY(tier_scoring_down_stops_after_the_first_failures),
        YW_TEST_ENTRY(concurrent_refreshes_share_one_fetch),
        YW_TEST_ENTRY(a_refresh_joins_what_is_in_flight_and_asks_only_for_the_rest),
        YW_TEST_ENTRY(an_older_tier_scoring_is_asked_with_batch_score_creators),
        YW_TEST_ENTRY(an_upgraded_tier_scoring_is_found_by_the_reprobe),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
