/*
 * Unit tests of common/runtime.c, server.c and client.c together: a real server on a
 * loopback port, called through the client runtime, all on one loop thread. The server
 * serves health (health.h), added the way the app adds it.
 */
#include <stdio.h>
#include <string.h>

#include "common/client.h"
#include "common/health.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/test.h"

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    yw_health_t *health;
    yw_channel_t *ch;
    int calls_done;
    int calls_expected;
    grpc_status_code codes[8];
    char details[8][256];
    int serving[8];
    int server_down;
    uv_timer_t timer;
    int timer_fired;
} fixture_t;

static void start(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {
        .listen = "127.0.0.1:0",
        .grace_ms = 200,
    };
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_health_create(&f->health), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, yw_health_service(f->health)), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    yw_health_set(f->health, "", 1);
    yw_health_set(f->health, "grpc.health.v1.Health", 1);
    YW_CHECK(yw_server_port(f->srv) > 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
}

static void on_down(void *arg)
{
    fixture_t *f = arg;
    f->server_down = 1;
    yw_server_destroy(f->srv);
    yw_health_destroy(f->health);
    f->health = NULL;
    yw_runtime_stop(f->rt);
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    fixture_t *f = arg;
    int i = f->calls_done++;
    f->codes[i] = code;
    snprintf(f->details[i], sizeof f->details[i], "%s", detail);
    if (resp != NULL) {
        f->serving[i] = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (f->calls_done == f->calls_expected) {
        yw_channel_destroy(f->ch);
        f->ch = NULL;
        yw_server_shutdown(f->srv, on_down, f);
    }
}

static void check(fixture_t *f, const char *method, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    YW_CHECK_INT(yw_client_unary(f->ch, method, &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 5000,
                                 on_reply, f),
                 ==, 0);
}

YW_TEST(health_check_over_the_loop)
{
    fixture_t f;
    start(&f);
    f.calls_expected = 3;
    check(&f, "/grpc.health.v1.Health/Check", "");
    check(&f, "/grpc.health.v1.Health/Check", "grpc.health.v1.Health");
    check(&f, "/grpc.health.v1.Health/Check", "no.such.Service");
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.calls_done, ==, 3);
    YW_CHECK(f.server_down);
    int ok = 0, not_found = 0;
    for (int i = 0; i < 3; i++) {
        if (f.codes[i] == GRPC_STATUS_OK) {
            YW_CHECK_INT(f.serving[i], ==,
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
            ok++;
        } else {
            YW_CHECK_INT(f.codes[i], ==, GRPC_STATUS_NOT_FOUND);
            YW_CHECK(strstr(f.details[i], "no.such.Service") != NULL);
            not_found++;
        }
    }
    YW_CHECK_INT(ok, ==, 2);
    YW_CHECK_INT(not_found, ==, 1);
    yw_runtime_destroy(f.rt);
}

YW_TEST(unknown_method_is_unimplemented)
{
    fixture_t f;
    start(&f);
    f.calls_expected = 1;
    check(&f, "/no.such.Service/Nothing", "");
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.codes[0], ==, GRPC_STATUS_UNIMPLEMENTED);
    YW_CHECK(strstr(f.details[0], "/no.such.Service/Nothing") != NULL);
    yw_runtime_destroy(f.rt);
}

YW_TEST(malformed_request_is_invalid_argument)
{
    /* A HealthCheckRequest whose field 1 (a string) arrives as a varint. */
    fixture_t f;
    start(&f);
    f.calls_expected = 1;
    Grpc__Health__V1__HealthCheckResponse bogus = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    bogus.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    YW_CHECK_INT(yw_client_unary(f.ch, "/grpc.health.v1.Health/Check", &bogus.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 5000,
                                 on_reply, &f),
                 ==, 0);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.codes[0], ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(f.details[0], "HealthCheckRequest") != NULL);
    yw_runtime_destroy(f.rt);
}

static void on_timer(uv_timer_t *t)
{
    fixture_t *f = t->data;
    f->timer_fired = 1;
    uv_close((uv_handle_t *)t, NULL);
    yw_channel_destroy(f->ch);
    f->ch = NULL;
    yw_server_shutdown(f->srv, on_down, f);
}

YW_TEST(libuv_timers_fire_while_grpc_is_idle)
{
    fixture_t f;
    start(&f);
    uv_timer_init(yw_runtime_loop(f.rt), &f.timer);
    f.timer.data = &f;
    uv_update_time(yw_runtime_loop(f.rt));
    uint64_t t0 = uv_hrtime();
    uv_timer_start(&f.timer, on_timer, 50, 0);
    yw_runtime_run(f.rt);
    YW_CHECK(f.timer_fired);
    YW_CHECK(uv_hrtime() - t0 >= 50 * 1000000ull);
    yw_runtime_destroy(f.rt);
}

typedef struct {
    uv_work_t work;
    fixture_t *f;
    int after_ran;
} work_t;

static void work_cb(uv_work_t *w)
{
    (void)w;
}

static void after_work_cb(uv_work_t *w, int status)
{
    work_t *wk = w->data;
    YW_CHECK_INT(status, ==, 0);
    wk->after_ran = 1;
    yw_channel_destroy(wk->f->ch);
    wk->f->ch = NULL;
    yw_server_shutdown(wk->f->srv, on_down, wk->f);
}

YW_TEST(thread_pool_completion_wakes_the_loop)
{
    /* The loop sleeps in grpc_completion_queue_next with no timer; only the waker can
     * tell it that the thread pool finished. */
    fixture_t f;
    start(&f);
    work_t wk = {.f = &f};
    wk.work.data = &wk;
    YW_CHECK_INT(uv_queue_work(yw_runtime_loop(f.rt), &wk.work, work_cb, after_work_cb), ==, 0);
    yw_runtime_run(f.rt);
    YW_CHECK(wk.after_ran);
    yw_runtime_destroy(f.rt);
}

YW_TEST(second_server_on_a_taken_port_fails)
{
    fixture_t f;
    start(&f);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", yw_server_port(f.srv));
    yw_server_config_t cfg = {
        .listen = listen,
    };
    yw_server_t *second = NULL;
    char err[256];
    YW_CHECK_INT(yw_server_create(f.rt, &cfg, &second, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_start(second, err, sizeof err), ==, -EADDRINUSE);
    YW_CHECK(strstr(err, listen) != NULL);
    yw_server_destroy(second);
    yw_channel_destroy(f.ch);
    f.ch = NULL;
    yw_server_shutdown(f.srv, on_down, &f);
    yw_runtime_run(f.rt);
    yw_runtime_destroy(f.rt);
}

/* ---- request ids and metrics: a relay service that calls itself ---- */

typedef struct {
    fixture_t f;
    yw_metrics_t *metrics;
    char outer_id[YW_REQUEST_ID_MAX + 1];
    char inner_id[YW_REQUEST_ID_MAX + 1];
} relay_t;

static void relay_on_inner(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    yw_call_t *outer = arg;
    (void)detail;
    YW_CHECK_INT(code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_call_reply(outer, resp), ==, 0);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void relay_outer(yw_call_t *call, const ProtobufCMessage *msg)
{
    relay_t *r = yw_call_service_ctx(call);
    snprintf(r->outer_id, sizeof r->outer_id, "%s", yw_call_request_id(call));
    YW_CHECK_INT(yw_client_unary(r->f.ch, "/yw.test.Relay/Inner", msg,
                                 &grpc__health__v1__health_check_response__descriptor, call, 0,
                                 relay_on_inner, call),
                 ==, 0);
}

static void relay_inner(yw_call_t *call, const ProtobufCMessage *msg)
{
    relay_t *r = yw_call_service_ctx(call);
    (void)msg;
    snprintf(r->inner_id, sizeof r->inner_id, "%s", yw_call_request_id(call));
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    YW_CHECK_INT(yw_call_reply(call, &resp.base), ==, 0);
}

static const yw_method_t relay_methods[] = {
    {"/yw.test.Relay/Outer", YW_METHOD_UNARY, &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, relay_outer, NULL, NULL, NULL},
    {"/yw.test.Relay/Inner", YW_METHOD_UNARY, &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, relay_inner, NULL, NULL, NULL},
};

static int64_t metric(yw_metrics_t *m, const char *method, const char *code)
{
    char labels[256];
    snprintf(labels, sizeof labels,
             "grpc_method=%s,grpc_service=yw.test.Relay,grpc_type=unary,grpc_code=%s", method,
             code);
    yw_metric_t *h = NULL;
    YW_CHECK_INT(yw_metrics_counter(m, "grpc_server_handled_total", NULL, labels, &h), ==, 0);
    return yw_metric_value(h);
}

YW_TEST(request_id_goes_to_peers_and_calls_are_counted)
{
    relay_t r;
    memset(&r, 0, sizeof r);
    fixture_t *f = &r.f;
    YW_CHECK_INT(yw_metrics_create(0, &r.metrics), ==, 0);
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {
        .listen = "127.0.0.1:0",
        .grace_ms = 200,
        .metrics = r.metrics,
    };
    static yw_service_t svc = {.name = "yw.test.Relay", .methods = relay_methods, .n_methods = 2};
    svc.ctx = &r;
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &svc), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
    f->calls_expected = 2;
    check(f, "/yw.test.Relay/Outer", "");
    check(f, "/no.such.Service/Nothing", "");
    yw_runtime_run(f->rt);
    YW_CHECK(f->server_down);
    yw_runtime_destroy(f->rt);

    /* The client sent no x-request-id: the outer call made one and passed it on. */
    YW_CHECK_INT(strlen(r.outer_id), ==, 16);
    YW_CHECK_INT(strspn(r.outer_id, "0123456789abcdef"), ==, 16);
    YW_CHECK_STR(r.inner_id, r.outer_id);

    YW_CHECK_INT(metric(r.metrics, "Outer", "OK"), ==, 1);
    YW_CHECK_INT(metric(r.metrics, "Inner", "OK"), ==, 1);
    yw_metric_t *g = NULL;
    YW_CHECK_INT(yw_metrics_gauge(r.metrics, "grpc_server_calls_in_flight", NULL, NULL, &g), ==, 0);
    YW_CHECK_INT(yw_metric_value(g), ==, 0);
    char *text = NULL;
    size_t len = 0;
    YW_CHECK_INT(yw_metrics_render(r.metrics, &text, &len), ==, 0);
    YW_CHECK(strstr(text, "grpc_server_handled_total{grpc_code=\"Unimplemented\","
                          "grpc_method=\"unknown\",grpc_service=\"unknown\","
                          "grpc_type=\"unary\"} 1\n") != NULL);
    YW_CHECK(strstr(text, "grpc_server_started_total{grpc_method=\"Outer\","
                          "grpc_service=\"yw.test.Relay\",grpc_type=\"unary\"} 1\n") != NULL);
    YW_CHECK(strstr(text, "grpc_server_handling_seconds_count{grpc_method=\"Inner\","
                          "grpc_service=\"yw.test.Relay\",grpc_type=\"unary\"} 1\n") != NULL);
    free(text);
    yw_metrics_destroy(r.metrics);
}

/* ---- a handler that replies after its caller gave up, then still touches the call ---- */

typedef struct {
    fixture_t f;
    yw_call_t *held;
    uv_timer_t late;
    uv_timer_t watchdog;
    int replied;
} late_t;

static late_t *late_fixture;

/* The client's deadline for the held call. The channel is connected first (a call that
 * answers at once), so the call reaches the server well within it; the handler then
 * replies only once the client has seen the deadline pass, however slow the machine. */
#define LATE_DEADLINE_MS 500

static void on_late_timer(uv_timer_t *t)
{
    late_t *l = t->data;
    if (l->f.calls_done == 0) {
        return; /* the client has not given up yet: look again at the next tick */
    }
    uv_close((uv_handle_t *)t, NULL);
    uv_close((uv_handle_t *)&l->watchdog, NULL);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    /* The client's deadline passed: the call is cancelled, and nothing else holds it.
     * Replying must not free it under us (server.h): the handler may still clear its
     * data and log right after. */
    (void)yw_call_reply(l->held, &resp.base);
    yw_call_set_data(l->held, NULL);
    yw_call_log(l->held, YW_LOG_DEBUG, "replied late");
    l->replied = 1;
    l->held = NULL;
    yw_channel_destroy(l->f.ch);
    l->f.ch = NULL;
    yw_server_shutdown(l->f.srv, on_down, &l->f);
}

static void on_hold(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    late_t *l = late_fixture;
    l->held = call;
    yw_call_set_data(call, l);
    uv_timer_init(yw_runtime_loop(l->f.rt), &l->late);
    l->late.data = l;
    uv_timer_start(&l->late, on_late_timer, 20, 20);
}

static void on_watchdog(uv_timer_t *t)
{
    late_t *l = t->data;
    fprintf(stderr, "the held call %s after 30 s\n",
            l->held == NULL ? "never reached the server" : "was never given up by the client");
    YW_CHECK(!"the held call's test did not finish");
}

/* The channel is connected (an unknown method answers at once): the held call now. */
static void on_connected(void *arg, grpc_status_code code, const char *detail,
                         ProtobufCMessage *resp)
{
    late_t *l = arg;
    (void)detail;
    YW_CHECK_INT(code, ==, GRPC_STATUS_UNIMPLEMENTED);
    YW_CHECK(resp == NULL);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    YW_CHECK_INT(yw_client_unary(l->f.ch, "/yw.test.Slow/Hold", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL,
                                 LATE_DEADLINE_MS, on_reply, &l->f),
                 ==, 0);
}

static const yw_method_t hold_methods[] = {
    {"/yw.test.Slow/Hold", YW_METHOD_UNARY, &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, on_hold, NULL, NULL, NULL},
};
static const yw_service_t hold_service = {
    .name = "yw.test.Slow", .methods = hold_methods, .n_methods = 1};

YW_TEST(reply_after_the_client_gave_up_leaves_the_call_usable_until_return)
{
    late_t l;
    memset(&l, 0, sizeof l);
    late_fixture = &l;
    fixture_t *f = &l.f;
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {
        .listen = "127.0.0.1:0",
        .grace_ms = 200,
    };
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &hold_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
    f->calls_expected = 2; /* never reached: the late reply shuts down */
    /* A test that cannot finish fails saying why, rather than hanging to the timeout. */
    uv_timer_init(yw_runtime_loop(f->rt), &l.watchdog);
    l.watchdog.data = &l;
    uv_timer_start(&l.watchdog, on_watchdog, 30000, 0);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    YW_CHECK_INT(yw_client_unary(f->ch, "/no.such.Service/Connect", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 30000,
                                 on_connected, &l),
                 ==, 0);
    yw_runtime_run(f->rt);
    YW_CHECK(l.replied);
    YW_CHECK_INT(f->calls_done, ==, 1);
    YW_CHECK_INT(f->codes[0], ==, GRPC_STATUS_DEADLINE_EXCEEDED);
    YW_CHECK(f->server_down);
    yw_runtime_destroy(f->rt);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(reply_after_the_client_gave_up_leaves_the_call_usable_until_return),
        YW_TEST_ENTRY(health_check_over_the_loop),
        YW_TEST_ENTRY(unknown_method_is_unimplemented),
        YW_TEST_ENTRY(malformed_request_is_invalid_argument),
        YW_TEST_ENTRY(libuv_timers_fire_while_grpc_is_idle),
        YW_TEST_ENTRY(thread_pool_completion_wakes_the_loop),
        YW_TEST_ENTRY(second_server_on_a_taken_port_fails),
        YW_TEST_ENTRY(request_id_goes_to_peers_and_calls_are_counted),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
