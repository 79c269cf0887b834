/*
 * Unit tests of common/server.c, call.c and server_metrics.c: a service declared with
 * YW_METHOD() (unary, server streaming, client streaming) on a real server on a loopback
 * port, called over gRPC C core (test_server_raw.h) on the same loop thread. The
 * messages are grpc.health.v1's, used as plain test messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/common/test_server_raw.h"
#include "tests/unit/test.h"

#define ECHO_SERVICE "yw.test.Echo"
#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING

typedef Grpc__Health__V1__HealthCheckRequest request_t;
typedef Grpc__Health__V1__HealthCheckResponse response_t;

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    yw_metrics_t *metrics;
    raw_call_t calls[8];
    size_t n_calls, n_done;
    int server_down;
    int on_done_runs; /* on_done of the streaming methods */
    int twice_rc[2];  /* "twice": a second finish and a second reply */
    int refuse;       /* the service's admit hook refuses every call */
    int admitted;     /* calls the admit hook saw */
    int released;     /* calls the released hook saw */
} fixture_t;

static fixture_t *the_fixture;
static int service_marker;

/* ---- the service ---- */

/* Unary Echo: what the request's `service` field asks for. */
static void echo(yw_call_t *call, const ProtobufCMessage *msg)
{
    const request_t *req = (const request_t *)msg;
    YW_CHECK_STR(yw_call_method(call)->path, "/" ECHO_SERVICE "/Echo");
    YW_CHECK(yw_call_service_ctx(call) == &service_marker);
    YW_CHECK(yw_call_caller(call) == NULL); /* no auth config */
    YW_CHECK(yw_call_server(call) == the_fixture->srv);
    YW_CHECK(!yw_call_is_cancelled(call));
    YW_CHECK(yw_call_remaining_ms(call) > 0);
    size_t len = 0;
    const char *rid = yw_call_metadata(call, "x-request-id", &len);
    if (rid != NULL) {
        YW_CHECK_INT(len, ==, strlen(yw_call_request_id(call)));
        YW_CHECK(memcmp(rid, yw_call_request_id(call), len) == 0);
    } else {
        YW_CHECK_INT(strlen(yw_call_request_id(call)), ==, 16); /* made up: 16 hex digits */
    }
    response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = SERVING;
    if (strcmp(req->service, "fail") == 0) {
        YW_CHECK_INT(yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "service: \"fail\" refused"),
                     ==, 0);
    } else if (strcmp(req->service, "finish") == 0) {
        YW_CHECK_INT(yw_call_finish(call, GRPC_STATUS_NOT_FOUND, "creator %s: not found", "c1"), ==,
                     0);
    } else if (strcmp(req->service, "twice") == 0) {
        YW_CHECK_INT(yw_call_reply(call, &resp.base), ==, 0);
        the_fixture->twice_rc[0] = yw_call_fail(call, GRPC_STATUS_INTERNAL, "too late");
        the_fixture->twice_rc[1] = yw_call_reply(call, &resp.base);
    } else {
        YW_CHECK_INT(yw_call_reply(call, &resp.base), ==, 0);
    }
}

/* Server-streaming Count: three messages (status 1, 2, 3), then OK. */
static void count(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    for (int i = 1; i <= 3; i++) {
        response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)i;
        YW_CHECK_INT(yw_call_send(call, &resp.base), ==, 0);
    }
    YW_CHECK_INT(yw_call_finish(call, GRPC_STATUS_OK, NULL), ==, 0);
    YW_CHECK_INT(yw_call_send(call, msg), ==, -ECANCELED); /* after the finish */
}

/* Client-streaming Sum: counts the messages, replies the count at the half-close. */
static void sum_message(yw_call_t *call, const ProtobufCMessage *msg)
{
    const request_t *req = (const request_t *)msg;
    int *n = yw_call_data(call);
    if (n == NULL) {
        n = calloc(1, sizeof *n);
        YW_CHECK(n != NULL);
        yw_call_set_data(call, n);
    }
    YW_CHECK_STR(req->service, "one");
    (*n)++;
}

static void sum_end(yw_call_t *call)
{
    YW_CHECK(!yw_call_is_cancelled(call));
    const int *n = yw_call_data(call);
    response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)(n ? *n : 0);
    YW_CHECK_INT(yw_call_reply(call, &resp.base), ==, 0);
}

static void stream_done(yw_call_t *call)
{
    free(yw_call_data(call));
    yw_call_set_data(call, NULL);
    the_fixture->on_done_runs++;
}

static const yw_method_t echo_methods[] = {
    YW_METHOD(UNARY, ECHO_SERVICE, "Echo", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = echo),
    YW_METHOD(SERVER_STREAMING, ECHO_SERVICE, "Count", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = count, .on_done = stream_done),
    YW_METHOD(CLIENT_STREAMING, ECHO_SERVICE, "Sum", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = sum_message, .on_end = sum_end,
              .on_done = stream_done),
};

static int admit(yw_call_t *call)
{
    the_fixture->admitted++;
    if (!the_fixture->refuse) {
        return 0;
    }
    yw_call_fail(call, GRPC_STATUS_UNAVAILABLE, "refused by the service: not now");
    return -1;
}

static void released(yw_call_t *call)
{
    (void)call;
    the_fixture->released++;
}

static yw_service_t echo_service = {
    .name = ECHO_SERVICE,
    .methods = echo_methods,
    .n_methods = sizeof echo_methods / sizeof echo_methods[0],
    .ctx = &service_marker,
    .admit = admit,
    .released = released,
};

/* ---- the fixture: the loop runs until every call is done and the server is down ---- */

static void on_down(void *arg)
{
    fixture_t *f = arg;
    f->server_down = 1;
    yw_server_destroy(f->srv);
    yw_runtime_stop(f->rt);
}

static void on_call_done(raw_call_t *rc)
{
    fixture_t *f = rc->arg;
    if (++f->n_done == f->n_calls) {
        yw_server_shutdown(f->srv, on_down, f);
    }
}

static void start(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    the_fixture = f;
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    YW_CHECK_INT(yw_metrics_create(0, &f->metrics), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 200, .metrics = f->metrics};
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &echo_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    YW_CHECK(yw_server_port(f->srv) > 0);
}

/* Starts a call of `method` sending `msgs`; the test runs the loop once all are started. */
static raw_call_t *call(fixture_t *f, const char *method, const ProtobufCMessage *const *msgs,
                        size_t n, const char *request_id)
{
    raw_call_t *rc = &f->calls[f->n_calls++];
    rc->sends = msgs;
    rc->n_sends = n;
    rc->resp_desc = &grpc__health__v1__health_check_response__descriptor;
    rc->timeout_ms = 5000;
    rc->request_id = request_id;
    rc->on_done = on_call_done;
    rc->arg = f;
    raw_call_start(rc, f->rt, yw_server_port(f->srv), method);
    return rc;
}

static void finish(fixture_t *f)
{
    for (size_t i = 0; i < f->n_calls; i++) {
        raw_call_free(&f->calls[i]);
    }
    yw_runtime_destroy(f->rt);
    yw_metrics_destroy(f->metrics);
}

static int status_of(const raw_call_t *rc, size_t i)
{
    YW_CHECK(i < rc->n_resps);
    return ((const response_t *)rc->resps[i])->status;
}

/* ---- tests ---- */

YW_TEST(unary_replies_fails_and_finishes)
{
    fixture_t f;
    start(&f);
    request_t ok = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT, fail = ok, fin = ok, twice = ok;
    ok.service = "ok";
    fail.service = "fail";
    fin.service = "finish";
    twice.service = "twice";
    const ProtobufCMessage *m_ok[] = {&ok.base}, *m_fail[] = {&fail.base}, *m_fin[] = {&fin.base},
                           *m_twice[] = {&twice.base};
    raw_call_t *c_ok = call(&f, "/" ECHO_SERVICE "/Echo", m_ok, 1, "rid-ok");
    raw_call_t *c_fail = call(&f, "/" ECHO_SERVICE "/Echo", m_fail, 1, "rid-fail");
    raw_call_t *c_fin = call(&f, "/" ECHO_SERVICE "/Echo", m_fin, 1, NULL);
    raw_call_t *c_twice = call(&f, "/" ECHO_SERVICE "/Echo", m_twice, 1, NULL);
    yw_runtime_run(f.rt);
    YW_CHECK(f.server_down);

    YW_CHECK_INT(c_ok->status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(c_ok->n_resps, ==, 1);
    YW_CHECK_INT(status_of(c_ok, 0), ==, SERVING);
    YW_CHECK_STR(c_ok->trailing_request_id, ""); /* OK calls carry no request id back */

    YW_CHECK_INT(c_fail->status, ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(c_fail->detail, "service: \"fail\" refused");
    YW_CHECK_STR(c_fail->trailing_request_id, "rid-fail");
    YW_CHECK_INT(c_fail->n_resps, ==, 0);

    YW_CHECK_INT(c_fin->status, ==, GRPC_STATUS_NOT_FOUND);
    YW_CHECK_STR(c_fin->detail, "creator c1: not found");
    YW_CHECK_INT(strlen(c_fin->trailing_request_id), ==, 16);

    YW_CHECK_INT(c_twice->status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(f.twice_rc[0], ==, -EALREADY);
    YW_CHECK_INT(f.twice_rc[1], ==, -EALREADY);
    /* Each admitted call is released once, at its end. */
    YW_CHECK_INT(f.admitted, ==, 4);
    YW_CHECK_INT(f.released, ==, 4);
    finish(&f);
}

YW_TEST(server_stream_sends_in_order_then_the_status)
{
    fixture_t f;
    start(&f);
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    const ProtobufCMessage *msgs[] = {&req.base};
    raw_call_t *c = call(&f, "/" ECHO_SERVICE "/Count", msgs, 1, NULL);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(c->status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(c->n_resps, ==, 3);
    for (size_t i = 0; i < 3; i++) {
        YW_CHECK_INT(status_of(c, i), ==, (int)i + 1);
    }
    YW_CHECK_INT(f.on_done_runs, ==, 1);
    finish(&f);
}

YW_TEST(client_stream_reads_every_message_until_the_half_close)
{
    fixture_t f;
    start(&f);
    request_t one = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    one.service = "one";
    const ProtobufCMessage *three[] = {&one.base, &one.base, &one.base};
    raw_call_t *c3 = call(&f, "/" ECHO_SERVICE "/Sum", three, 3, NULL);
    raw_call_t *c0 = call(&f, "/" ECHO_SERVICE "/Sum", NULL, 0, NULL);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(c3->status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(c3->n_resps, ==, 1);
    YW_CHECK_INT(status_of(c3, 0), ==, 3);
    YW_CHECK_INT(c0->status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(status_of(c0, 0), ==, 0);
    YW_CHECK_INT(f.on_done_runs, ==, 2);
    finish(&f);
}

YW_TEST(requests_that_do_not_parse_or_are_not_utf8_are_invalid_argument)
{
    fixture_t f;
    start(&f);
    /* Field 1 (a string) as a varint: not a HealthCheckRequest. */
    response_t bogus = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    bogus.status = SERVING;
    request_t bad = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    bad.service = "caf\xc3";
    const ProtobufCMessage *m_bogus[] = {&bogus.base}, *m_bad[] = {&bad.base};
    raw_call_t *c_bogus = call(&f, "/" ECHO_SERVICE "/Echo", m_bogus, 1, NULL);
    raw_call_t *c_bad = call(&f, "/" ECHO_SERVICE "/Sum", m_bad, 1, NULL);
    raw_call_t *c_unknown = call(&f, "/" ECHO_SERVICE "/Nothing", m_bad, 1, NULL);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(c_bogus->status, ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(c_bogus->detail, "HealthCheckRequest") != NULL);
    YW_CHECK_INT(c_bad->status, ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(c_bad->detail, "service: must be valid UTF-8") != NULL);
    YW_CHECK_INT(c_unknown->status, ==, GRPC_STATUS_UNIMPLEMENTED);
    finish(&f);
}

/* Requests of 256 KiB and more are unpacked and checked on libuv's thread pool: the
 * handler gets them on the loop all the same, and a bad one fails as a small one does. */
YW_TEST(large_requests_are_unpacked_off_the_loop_and_judged_the_same)
{
    fixture_t f;
    start(&f);
    size_t n = 300 << 10;
    char *big = malloc(n + 1), *bad_big = malloc(n + 1);
    YW_CHECK(big != NULL && bad_big != NULL);
    memset(big, 'a', n);
    big[n] = '\0';
    memcpy(bad_big, big, n + 1);
    bad_big[n - 1] = '\xc3'; /* a lead byte with nothing after it */
    request_t ok = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT, bad = ok;
    ok.service = big;
    bad.service = bad_big;
    const ProtobufCMessage *m_ok[] = {&ok.base}, *m_bad[] = {&bad.base};
    raw_call_t *c_ok[3], *c_bad;
    for (int i = 0; i < 3; i++) {
        c_ok[i] = call(&f, "/" ECHO_SERVICE "/Echo", m_ok, 1, NULL);
    }
    c_bad = call(&f, "/" ECHO_SERVICE "/Echo", m_bad, 1, NULL);
    yw_runtime_run(f.rt);
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(c_ok[i]->status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(c_ok[i]->n_resps, ==, 1);
        YW_CHECK_INT(status_of(c_ok[i], 0), ==, SERVING);
    }
    YW_CHECK_INT(c_bad->status, ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(c_bad->detail, "service: must be valid UTF-8") != NULL);
    free(big);
    free(bad_big);
    finish(&f);
}

YW_TEST(every_call_is_counted_by_method_and_code)
{
    fixture_t f;
    start(&f);
    request_t ok = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT, fail = ok;
    ok.service = "ok";
    fail.service = "fail";
    const ProtobufCMessage *m_ok[] = {&ok.base}, *m_fail[] = {&fail.base};
    call(&f, "/" ECHO_SERVICE "/Echo", m_ok, 1, NULL);
    call(&f, "/" ECHO_SERVICE "/Echo", m_ok, 1, NULL);
    call(&f, "/" ECHO_SERVICE "/Echo", m_fail, 1, NULL);
    yw_runtime_run(f.rt);
    char *text = NULL;
    size_t len = 0;
    YW_CHECK_INT(yw_metrics_render(f.metrics, &text, &len), ==, 0);
    YW_CHECK(strstr(text,
                    "grpc_server_started_total{grpc_method=\"Echo\",grpc_service=\"" ECHO_SERVICE
                    "\",grpc_type=\"unary\"} 3") != NULL);
    /* The registry renders labels sorted by name. */
    YW_CHECK(strstr(text, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Echo\","
                          "grpc_service=\"" ECHO_SERVICE "\",grpc_type=\"unary\"} 2") != NULL);
    YW_CHECK(strstr(text,
                    "grpc_server_handled_total{grpc_code=\"InvalidArgument\",grpc_method="
                    "\"Echo\",grpc_service=\"" ECHO_SERVICE "\",grpc_type=\"unary\"} 1") != NULL);
    YW_CHECK(strstr(text, "grpc_type=\"client_stream\"") != NULL);
    YW_CHECK(strstr(text, "grpc_server_calls_in_flight 0") != NULL);
    free(text);
    finish(&f);
}

YW_TEST(yw_method_fills_the_table)
{
    const yw_method_t *m = &echo_methods[2];
    YW_CHECK_STR(m->path, "/yw.test.Echo/Sum");
    YW_CHECK_INT(m->kind, ==, YW_METHOD_CLIENT_STREAMING);
    YW_CHECK(m->request == &grpc__health__v1__health_check_request__descriptor);
    YW_CHECK(m->response == &grpc__health__v1__health_check_response__descriptor);
    YW_CHECK(m->on_message == sum_message && m->on_end == sum_end && m->on_done == stream_done);
    YW_CHECK(m->items == NULL);
    YW_CHECK_INT(echo_methods[0].kind, ==, YW_METHOD_UNARY);
    YW_CHECK(echo_methods[0].on_end == NULL && echo_methods[0].on_done == NULL);
    YW_CHECK_INT(echo_methods[1].kind, ==, YW_METHOD_SERVER_STREAMING);
}

static void stop_runtime(void *arg)
{
    yw_runtime_stop(arg);
}

YW_TEST(services_are_added_before_the_start_only)
{
    yw_runtime_t *rt;
    YW_CHECK_INT(yw_runtime_create(&rt), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0"};
    yw_server_t *srv;
    char err[256];
    YW_CHECK_INT(yw_server_create(rt, &cfg, &srv, err, sizeof err), ==, 0);
    YW_CHECK(yw_server_runtime(srv) == rt);
    const char *names[4];
    YW_CHECK_INT(yw_server_service_names(srv, names, 4), ==, 0); /* none of its own */
    static const yw_service_t other = {
        .name = "yw.test.Other", .methods = echo_methods, .n_methods = 0};
    YW_CHECK_INT(yw_server_add_service(srv, &echo_service), ==, 0);
    YW_CHECK_INT(yw_server_add_service(srv, &other), ==, 0);
    YW_CHECK_INT(yw_server_service_names(srv, names, 1), ==, 2);
    YW_CHECK_STR(names[0], ECHO_SERVICE);
    YW_CHECK_INT(yw_server_start(srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(srv, &other), ==, -EINVAL);
    YW_CHECK_INT(yw_server_service_names(srv, names, 4), ==, 2);
    YW_CHECK_STR(names[1], "yw.test.Other");
    yw_server_shutdown(srv, stop_runtime, rt);
    yw_server_shutdown(srv, NULL, NULL); /* a second shutdown is ignored */
    yw_runtime_run(rt);
    yw_server_destroy(srv);
    yw_runtime_destroy(rt);
}

YW_TEST(a_service_admit_hook_refuses_calls_before_the_handlers)
{
    fixture_t f;
    start(&f);
    f.refuse = 1;
    request_t ok = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ok.service = "ok";
    const ProtobufCMessage *m_ok[] = {&ok.base}, *m_two[] = {&ok.base, &ok.base};
    raw_call_t *c_unary = call(&f, "/" ECHO_SERVICE "/Echo", m_ok, 1, NULL);
    raw_call_t *c_stream = call(&f, "/" ECHO_SERVICE "/Sum", m_two, 2, NULL);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(f.admitted, ==, 2);
    YW_CHECK_INT(f.released, ==, 0); /* refused calls were never admitted */
    YW_CHECK_INT(c_unary->status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_STR(c_unary->detail, "refused by the service: not now");
    YW_CHECK_INT(c_unary->n_resps, ==, 0);
    YW_CHECK_INT(c_stream->status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(c_stream->n_resps, ==, 0);
    /* (n_resps 0: neither handler ran, each replies when it does) */
    finish(&f);
}

YW_TEST(status_names)
{
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_OK), "OK");
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    YW_CHECK_STR(yw_status_name((grpc_status_code)99), "UNKNOWN");
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(unary_replies_fails_and_finishes),
        YW_TEST_ENTRY(server_stream_sends_in_order_then_the_status),
        YW_TEST_ENTRY(client_stream_reads_every_message_until_the_half_close),
        YW_TEST_ENTRY(requests_that_do_not_parse_or_are_not_utf8_are_invalid_argument),
        YW_TEST_ENTRY(large_requests_are_unpacked_off_the_loop_and_judged_the_same),
        YW_TEST_ENTRY(every_call_is_counted_by_method_and_code),
        YW_TEST_ENTRY(yw_method_fills_the_table),
        YW_TEST_ENTRY(services_are_added_before_the_start_only),
        YW_TEST_ENTRY(a_service_admit_hook_refuses_calls_before_the_handlers),
        YW_TEST_ENTRY(status_names),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
