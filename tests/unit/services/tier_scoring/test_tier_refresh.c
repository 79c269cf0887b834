/*
 * Unit tests of services/tier_scoring/tier_refresh.c against a fake creator profile (a
 * real gRPC server in the same process, on the same loop) serving ListCreators and
 * BatchGetCreatorStats over three creators. What RefreshPopulation relies on: refreshes
 * are numbered in the order they start, tier_refresher_trigger() says which one will
 * serve it, triggers during a refresh share the one after it, and a failure names its
 * refresh and creator profile's status.
 */
#include <stdio.h>
#include <string.h>

#include "common/client.h"
#include "common/runtime.h"
#include "common/server.h"
#include "services/tier_scoring/tier_refresh.h"
#include "tests/unit/test.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#define N_CREATORS 3
#define MAX_EVENTS 8

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    yw_channel_t *ch;
    tier_refresher_t *r;
    uv_timer_t timer;
    int timer_open;
    /* the fake */
    int hold_lists;   /* hold ListCreators calls until release() */
    yw_call_t *held;  /* the one held */
    int lists, stats; /* calls served */
    int stop_on_held; /* stop the loop once a ListCreators call is held */
    /* what the refresher delivered */
    uint64_t snap_seq[MAX_EVENTS];
    size_t snap_n[MAX_EVENTS];
    int snaps;
    uint64_t fail_seq[MAX_EVENTS];
    grpc_status_code fail_code[MAX_EVENTS];
    char fail_error[MAX_EVENTS][256];
    int fails;
    int stop_after; /* stop the loop once snaps + fails reach this */
    int closed;
} fx_t;

static fx_t *fx;

static const char *const ids[N_CREATORS] = {"c-a", "c-b", "c-c"};

static void answer_list(yw_call_t *call)
{
    Yaowei__Creator__V1__Creator cs[N_CREATORS];
    Yaowei__Creator__V1__Creator *ptrs[N_CREATORS];
    for (int i = 0; i < N_CREATORS; i++) {
        yaowei__creator__v1__creator__init(&cs[i]);
        cs[i].creator_id = (char *)ids[i];
        cs[i].followers = 1000LL * (i + 1);
        ptrs[i] = &cs[i];
    }
    Yaowei__Creator__V1__ListCreatorsResponse resp =
        YAOWEI__CREATOR__V1__LIST_CREATORS_RESPONSE__INIT;
    resp.n_creators = N_CREATORS;
    resp.creators = ptrs;
    (void)yw_call_reply(call, &resp.base);
}

static void on_list(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    fx->lists++;
    if (fx->hold_lists) {
        YW_CHECK(fx->held == NULL);
        fx->held = call;
        if (fx->stop_on_held) {
            yw_runtime_stop(fx->rt);
        }
        return;
    }
    answer_list(call);
}

static void on_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__BatchGetCreatorStatsRequest *req = (const void *)msg;
    fx->stats++;
    YW_CHECK_INT(req->n_creator_ids, ==, N_CREATORS);
    Yaowei__Creator__V1__CreatorStats ss[N_CREATORS];
    Yaowei__Creator__V1__CreatorStats *ptrs[N_CREATORS];
    for (size_t i = 0; i < N_CREATORS; i++) {
        yaowei__creator__v1__creator_stats__init(&ss[i]);
        ss[i].creator_id = req->creator_ids[i];
        ss[i].window_days = req->window_days;
        ptrs[i] = &ss[i];
    }
    Yaowei__Creator__V1__BatchGetCreatorStatsResponse resp =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_RESPONSE__INIT;
    resp.n_stats = N_CREATORS;
    resp.stats = ptrs;
    (void)yw_call_reply(call, &resp.base);
}

static const yw_method_t fake_methods[] = {
    {"/yaowei.creator.v1.CreatorProfileService/ListCreators", YW_METHOD_UNARY,
     &yaowei__creator__v1__list_creators_request__descriptor,
     &yaowei__creator__v1__list_creators_response__descriptor, on_list, NULL, NULL, NULL},
    {"/yaowei.creator.v1.CreatorProfileService/BatchGetCreatorStats", YW_METHOD_UNARY,
     &yaowei__creator__v1__batch_get_creator_stats_request__descriptor,
     &yaowei__creator__v1__batch_get_creator_stats_response__descriptor, on_stats, NULL, NULL,
     NULL},
};
static const yw_service_t fake_service = {
    .name = "yaowei.creator.v1.CreatorProfileService", .methods = fake_methods, .n_methods = 2};

static void maybe_stop(fx_t *f)
{
    if (f->stop_after > 0 && f->snaps + f->fails >= f->stop_after) {
        yw_runtime_stop(f->rt);
    }
}

static void on_snapshot(void *arg, tier_snapshot_t *snap)
{
    fx_t *f = arg;
    YW_CHECK(f->snaps < MAX_EVENTS);
    f->snap_seq[f->snaps] = snap->seq;
    f->snap_n[f->snaps] = snap->n;
    f->snaps++;
    tier_snapshot_unref(snap);
    maybe_stop(f);
}

static void on_failed(void *arg, uint64_t seq, grpc_status_code code, const char *error)
{
    fx_t *f = arg;
    YW_CHECK(f->fails < MAX_EVENTS);
    f->fail_seq[f->fails] = seq;
    f->fail_code[f->fails] = code;
    snprintf(f->fail_error[f->fails], sizeof f->fail_error[0], "%s", error);
    f->fails++;
    maybe_stop(f);
}

static int32_t window_days(void *arg)
{
    (void)arg;
    return 30;
}

/* The fake on a free port, and a refresher calling it (`up` 0: a port nobody serves). */
static void start(fx_t *f, int up)
{
    memset(f, 0, sizeof *f);
    fx = f;
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 100};
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &fake_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", up ? yw_server_port(f->srv) : 1);
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
    tier_refresher_config_t rcfg = {
        .loop = yw_runtime_loop(f->rt),
        .peer = f->ch,
        .interval_ms = 600000, /* only triggers start refreshes here */
        .call_timeout_ms = 5000,
        .window_days = window_days,
        .on_snapshot = on_snapshot,
        .on_failed = on_failed,
        .arg = f,
    };
    YW_CHECK_INT(tier_refresher_create(&rcfg, &f->r), ==, 0);
}

static void on_closed(void *arg)
{
    fx_t *f = arg;
    f->closed = 1;
}

static void on_down(void *arg)
{
    fx_t *f = arg;
    yw_server_destroy(f->srv);
    yw_runtime_stop(f->rt);
}

static void stop(fx_t *f)
{
    if (f->held != NULL) {
        answer_list(f->held);
        f->held = NULL;
    }
    tier_refresher_close(f->r, on_closed, f);
    yw_channel_destroy(f->ch);
    yw_server_shutdown(f->srv, on_down, f);
    yw_runtime_run(f->rt);
    YW_CHECK(f->closed);
    yw_runtime_destroy(f->rt);
}

static void on_quiet(uv_timer_t *t)
{
    fx_t *f = t->data;
    uv_close((uv_handle_t *)t, NULL);
    yw_runtime_stop(f->rt);
}

/* Runs the loop for `ms` more (to see that nothing else happens). */
static void run_for(fx_t *f, uint64_t ms)
{
    YW_CHECK_INT(uv_timer_init(yw_runtime_loop(f->rt), &f->timer), ==, 0);
    f->timer.data = f;
    YW_CHECK_INT(uv_timer_start(&f->timer, on_quiet, ms, 0), ==, 0);
    f->stop_after = 0;
    yw_runtime_run(f->rt);
}

YW_TEST(refreshes_are_numbered_and_triggers_say_which_serves_them)
{
    fx_t f;
    start(&f, 1);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 1);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 1); /* not started yet: the same one */
    f.stop_after = 1;
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.snaps, ==, 1);
    YW_CHECK_INT(f.snap_seq[0], ==, 1);
    YW_CHECK_INT(f.snap_n[0], ==, N_CREATORS);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 2);
    f.stop_after = 2;
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.snap_seq[1], ==, 2);
    run_for(&f, 100);
    YW_CHECK_INT(f.snaps, ==, 2); /* the two triggers before the first start were one */
    YW_CHECK_INT(f.lists, ==, 2);
    YW_CHECK_STR(tier_refresher_last_error(f.r), "");
    stop(&f);
}

YW_TEST(triggers_during_a_refresh_share_the_next_one)
{
    fx_t f;
    start(&f, 1);
    f.hold_lists = 1;
    f.stop_on_held = 1;
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 1);
    yw_runtime_run(f.rt); /* until refresh 1 waits on creator profile */
    YW_CHECK(f.held != NULL);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 2);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 2);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 2);
    f.hold_lists = 0;
    f.stop_on_held = 0;
    yw_call_t *held = f.held;
    f.held = NULL;
    answer_list(held);
    f.stop_after = 2;
    yw_runtime_run(f.rt);
    run_for(&f, 100);
    YW_CHECK_INT(f.snaps, ==, 2);
    YW_CHECK_INT(f.snap_seq[0], ==, 1);
    YW_CHECK_INT(f.snap_seq[1], ==, 2);
    YW_CHECK_INT(f.lists, ==, 2);
    YW_CHECK_INT(f.stats, ==, 2);
    stop(&f);
}

YW_TEST(a_failed_refresh_names_its_number_and_the_status)
{
    fx_t f;
    start(&f, 0);
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 1);
    f.stop_after = 1;
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.snaps, ==, 0);
    YW_CHECK_INT(f.fails, ==, 1);
    YW_CHECK_INT(f.fail_seq[0], ==, 1);
    YW_CHECK_INT(f.fail_code[0], ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(f.fail_error[0], "ListCreators: UNAVAILABLE") != NULL);
    YW_CHECK_STR(tier_refresher_last_error(f.r), f.fail_error[0]);
    /* The next trigger is a refresh of its own, numbered after the failed one. */
    YW_CHECK_INT(tier_refresher_trigger(f.r), ==, 2);
    f.stop_after = 2;
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.fail_seq[1], ==, 2);
    stop(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(refreshes_are_numbered_and_triggers_say_which_serves_them),
        YW_TEST_ENTRY(triggers_during_a_refresh_share_the_next_one),
        YW_TEST_ENTRY(a_failed_refresh_names_its_number_and_the_status),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
