/*
 * Unit tests of common/health.c: grpc.health.v1.Health added to a real server on a
 * loopback port the way the app adds it, Check over client.h, Watch over gRPC core
 * (test_server_raw.h), on one loop thread.
 */
#include <stdio.h>
#include <string.h>

#include "common/client.h"
#include "common/health.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/common/test_server_raw.h"
#include "tests/unit/test.h"

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
#define CHECK_PATH "/grpc.health.v1.Health/Check"
#define WATCH_PATH "/grpc.health.v1.Health/Watch"

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    yw_health_t *health;
    yw_channel_t *ch;
    /* Check */
    int checks_expected, checks_done;
    grpc_status_code codes[4];
    int statuses[4];
    char details[4][256];
    /* Watch */
    raw_call_t watch, unknown;
    int watches_expected, watches_done;
    int server_down;
    uv_timer_t timer;
} fixture_t;

static void start(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 2000};
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_health_create(&f->health), ==, 0);
    const yw_service_t *svc = yw_health_service(f->health);
    YW_CHECK_STR(svc->name, "grpc.health.v1.Health");
    YW_CHECK(svc->no_auth); /* probes carry no credentials */
    YW_CHECK(svc->ctx == f->health);
    YW_CHECK_INT(yw_server_add_service(f->srv, svc), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    yw_health_set(f->health, "", 1);
    yw_health_set(f->health, "yw.test.Up", 1);
    yw_health_set(f->health, "yw.test.Down", 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
}

/* The loop stops once the server is down and every Watch saw its end. */
static void maybe_stop(fixture_t *f)
{
    if (f->server_down && f->watches_done == f->watches_expected) {
        yw_runtime_stop(f->rt);
    }
}

static void on_down(void *arg)
{
    fixture_t *f = arg;
    yw_server_destroy(f->srv);
    yw_health_destroy(f->health);
    f->server_down = 1;
    maybe_stop(f);
}

/* As the app stops: health first (every Watch ends), then the server. */
static void stop(fixture_t *f)
{
    if (f->ch != NULL) {
        yw_channel_destroy(f->ch);
        f->ch = NULL;
    }
    yw_health_shutdown(f->health);
    yw_server_shutdown(f->srv, on_down, f);
}

static void on_check(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    fixture_t *f = arg;
    int i = f->checks_done++;
    f->codes[i] = code;
    snprintf(f->details[i], sizeof f->details[i], "%s", detail);
    f->statuses[i] = -1;
    if (resp != NULL) {
        f->statuses[i] = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (f->checks_done == f->checks_expected) {
        stop(f);
    }
}

static void check(fixture_t *f, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    YW_CHECK_INT(yw_client_unary(f->ch, CHECK_PATH, &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 5000,
                                 on_check, f),
                 ==, 0);
}

YW_TEST(check_answers_each_name_and_not_found_for_unknown_ones)
{
    fixture_t f;
    start(&f);
    f.checks_expected = 4;
    check(&f, "");
    check(&f, "yw.test.Up");
    check(&f, "yw.test.Down");
    check(&f, "no.such.Service");
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.checks_done, ==, 4);
    /* Replies may come back in any order: count them. */
    int serving = 0, not_serving = 0, not_found = 0;
    for (int i = 0; i < 4; i++) {
        if (f.codes[i] == GRPC_STATUS_NOT_FOUND) {
            YW_CHECK_STR(f.details[i], "service \"no.such.Service\" is unknown");
            not_found++;
        } else {
            YW_CHECK_INT(f.codes[i], ==, GRPC_STATUS_OK);
            serving += f.statuses[i] == SERVING;
            not_serving += f.statuses[i] == NOT_SERVING;
        }
    }
    YW_CHECK_INT(serving, ==, 2);
    YW_CHECK_INT(not_serving, ==, 1);
    YW_CHECK_INT(not_found, ==, 1);
    yw_runtime_destroy(f.rt);
}

/* ---- Watch ---- */

static void on_watch_done(raw_call_t *rc)
{
    fixture_t *f = rc->arg;
    f->watches_done++;
    maybe_stop(f);
}

/* The current status arrived: change it once, then (second message) shut down. */
static void on_watch_message(raw_call_t *rc, const ProtobufCMessage *msg)
{
    fixture_t *f = rc->arg;
    int status = ((const Grpc__Health__V1__HealthCheckResponse *)msg)->status;
    if (rc->n_resps == 1) {
        YW_CHECK_INT(status, ==, SERVING);
        yw_health_set(f->health, "yw.test.Up", 1); /* unchanged: nothing is sent */
        yw_health_set(f->health, "yw.test.Up", 0);
    } else if (rc->n_resps == 2) {
        YW_CHECK_INT(status, ==, NOT_SERVING);
        stop(f);
    }
}

static void start_watch(fixture_t *f, raw_call_t *rc, Grpc__Health__V1__HealthCheckRequest *req,
                        raw_message_cb on_message)
{
    static const ProtobufCMessage *msgs[1];
    rc->sends = msgs;
    msgs[0] = &req->base;
    rc->n_sends = 1;
    rc->resp_desc = &grpc__health__v1__health_check_response__descriptor;
    rc->timeout_ms = 10000;
    rc->on_message = on_message;
    rc->on_done = on_watch_done;
    rc->arg = f;
    raw_call_start(rc, f->rt, yw_server_port(f->srv), WATCH_PATH);
}

YW_TEST(watch_sends_the_status_then_each_change_and_ends_at_shutdown)
{
    fixture_t f;
    start(&f);
    f.watches_expected = 2;
    Grpc__Health__V1__HealthCheckRequest up = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    up.service = "yw.test.Up";
    Grpc__Health__V1__HealthCheckRequest nobody = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    nobody.service = "no.such.Service";
    start_watch(&f, &f.unknown, &nobody, NULL);
    start_watch(&f, &f.watch, &up, on_watch_message);
    yw_runtime_run(f.rt);
    /* SERVING, then NOT_SERVING; shutdown sends nothing new (NOT_SERVING already). */
    YW_CHECK_INT(f.watch.n_resps, ==, 2);
    YW_CHECK_INT(f.watch.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_STR(f.watch.detail, "server is shutting down");
    /* An unknown name is watched too: SERVICE_UNKNOWN, then NOT_SERVING at shutdown. */
    YW_CHECK_INT(f.unknown.n_resps, >=, 1);
    YW_CHECK_INT(((Grpc__Health__V1__HealthCheckResponse *)f.unknown.resps[0])->status, ==,
                 SERVICE_UNKNOWN);
    YW_CHECK_INT(f.unknown.status, ==, GRPC_STATUS_UNAVAILABLE);
    raw_call_free(&f.watch);
    raw_call_free(&f.unknown);
    yw_runtime_destroy(f.rt);
}

/* ---- a Watch whose client goes away is reaped ---- */

/* What the app does about once a second; here every 20 ms until the watch has ended. */
static void on_reap_timer(uv_timer_t *t)
{
    fixture_t *f = t->data;
    yw_health_reap(f->health);
    if (f->watch.done) {
        uv_close((uv_handle_t *)t, NULL);
        stop(f);
    }
}

static void on_first_then_cancel(raw_call_t *rc, const ProtobufCMessage *msg)
{
    (void)msg;
    raw_call_cancel(rc);
}

YW_TEST(a_cancelled_watch_is_reaped)
{
    fixture_t f;
    start(&f);
    Grpc__Health__V1__HealthCheckRequest up = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    up.service = "yw.test.Up";
    static const ProtobufCMessage *msgs[1];
    msgs[0] = &up.base;
    f.watch.sends = msgs;
    f.watch.n_sends = 1;
    f.watch.resp_desc = &grpc__health__v1__health_check_response__descriptor;
    f.watch.on_message = on_first_then_cancel;
    f.watch.on_done = on_watch_done;
    f.watches_expected = 1;
    f.watch.arg = &f;
    raw_call_start(&f.watch, f.rt, yw_server_port(f.srv), WATCH_PATH);
    uv_timer_init(yw_runtime_loop(f.rt), &f.timer);
    f.timer.data = &f;
    uv_timer_start(&f.timer, on_reap_timer, 20, 20);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.watch.status, ==, GRPC_STATUS_CANCELLED);
    YW_CHECK_INT(f.watch.n_resps, ==, 1);
    raw_call_free(&f.watch);
    yw_runtime_destroy(f.rt);
}

YW_TEST(after_shutdown_every_name_stays_not_serving)
{
    fixture_t f;
    start(&f);
    yw_health_shutdown(f.health);
    yw_health_set(f.health, "yw.test.Up", 1); /* shutdown is one way */
    yw_health_set(f.health, "yw.test.New", 1);
    f.checks_expected = 3;
    check(&f, "");
    check(&f, "yw.test.Up");
    check(&f, "yw.test.New");
    yw_runtime_run(f.rt);
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(f.codes[i], ==, GRPC_STATUS_OK);
        YW_CHECK_INT(f.statuses[i], ==, NOT_SERVING);
    }
    yw_runtime_destroy(f.rt);
    yw_health_destroy(NULL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(check_answers_each_name_and_not_found_for_unknown_ones),
        YW_TEST_ENTRY(watch_sends_the_status_then_each_change_and_ends_at_shutdown),
        YW_TEST_ENTRY(a_cancelled_watch_is_reaped),
        YW_TEST_ENTRY(after_shutdown_every_name_stays_not_serving),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
