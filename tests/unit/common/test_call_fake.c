/*
 * Unit tests of common/call_fake.c: fake calls run a method's handler through call.c's
 * real call path (unpacking, UTF-8 check, reply, send, finish, flow control, cancel,
 * deadline, on_done) with no server and no network. The service is a small echo service
 * whose messages are grpc.health.v1's, used as plain test messages (as test_server.c
 * does over real gRPC).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/call_fake.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/test.h"

#define ECHO_SERVICE "yw.test.Echo"

typedef Grpc__Health__V1__HealthCheckRequest request_t;
typedef Grpc__Health__V1__HealthCheckResponse response_t;

static int service_marker;
static int handler_runs, on_end_runs, on_done_runs, end_cancelled;
static yw_call_t *held;  /* a call the handler left unfinished, for the test to finish */
static char arrivals[8]; /* the first letter of each Echo's `service`, in arrival order */

/* ---- the service ---- */

static void echo(yw_call_t *call, const ProtobufCMessage *msg)
{
    const request_t *req = (const request_t *)msg;
    if (handler_runs < (int)sizeof arrivals - 1) {
        arrivals[handler_runs] = req->service[0];
    }
    handler_runs++;
    YW_CHECK(yw_call_service_ctx(call) == &service_marker);
    YW_CHECK_STR(yw_call_method(call)->path, "/" ECHO_SERVICE "/Echo");
    if (strcmp(req->service, "fail") == 0) {
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "service: \"fail\" refused");
    } else if (strcmp(req->service, "hold") == 0) {
        held = call; /* finished by the test */
    } else if (strcmp(req->service, "who") == 0) {
        size_t len = 0;
        const char *tenant = yw_call_metadata(call, "x-tenant", &len);
        yw_call_finish(call, GRPC_STATUS_OK, "%s %s %.*s", yw_call_request_id(call),
                       yw_call_caller(call) ? yw_call_caller(call) : "-", (int)len,
                       tenant ? tenant : "");
    } else {
        response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        yw_call_reply(call, &resp.base);
    }
}

/* Server streaming: three messages (status 1, 2, 3), then OK. */
static void count(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    for (int i = 1; i <= 3; i++) {
        response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)i;
        YW_CHECK_INT(yw_call_send(call, &resp.base), ==, 0);
    }
    yw_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* Client streaming: counts the messages; "pause" pauses reads (the test resumes). */
static void sum_message(yw_call_t *call, const ProtobufCMessage *msg)
{
    const request_t *req = (const request_t *)msg;
    held = call;
    yw_call_set_data(call, (void *)((uintptr_t)yw_call_data(call) + 1));
    if (strcmp(req->service, "pause") == 0) {
        YW_CHECK_INT(yw_call_pause_reads(call), ==, 0);
    }
}

static void sum_end(yw_call_t *call)
{
    on_end_runs++;
    end_cancelled = yw_call_is_cancelled(call);
    response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status =
        (Grpc__Health__V1__HealthCheckResponse__ServingStatus)(uintptr_t)yw_call_data(call);
    yw_call_reply(call, &resp.base);
}

static void done(yw_call_t *call)
{
    (void)call;
    on_done_runs++;
}

static const yw_method_t echo_methods[] = {
    YW_METHOD(UNARY, ECHO_SERVICE, "Echo", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = echo, .on_done = done),
    YW_METHOD(SERVER_STREAMING, ECHO_SERVICE, "Count", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = count),
    YW_METHOD(CLIENT_STREAMING, ECHO_SERVICE, "Sum", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = sum_message, .on_end = sum_end,
              .on_done = done),
};

static const yw_service_t echo_service = {
    .name = ECHO_SERVICE,
    .methods = echo_methods,
    .n_methods = sizeof echo_methods / sizeof echo_methods[0],
    .ctx = &service_marker,
};

/* ---- helpers ---- */

static yw_runtime_t *rt_new(void)
{
    yw_runtime_t *rt = NULL;
    YW_CHECK_INT(yw_runtime_create(&rt), ==, 0);
    return rt;
}

/* A call of the echo service as `cfg` says (its service and ctx filled in). */
static yw_fake_call_t *start_cfg(yw_runtime_t *rt, yw_fake_call_config_t cfg)
{
    cfg.service = &echo_service;
    cfg.service_ctx = &service_marker;
    yw_fake_call_t *fc = NULL;
    YW_CHECK_INT(yw_fake_call_start(rt, &cfg, &fc), ==, 0);
    return fc;
}

static yw_fake_call_t *start(yw_runtime_t *rt, const char *method, const request_t *req)
{
    return start_cfg(rt, (yw_fake_call_config_t){
                             .method = method,
                             .request = req != NULL ? &req->base : NULL,
                         });
}

static void send_one(yw_fake_call_t *fc, const char *service)
{
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    YW_CHECK_INT(yw_fake_call_send(fc, &req.base), ==, 0);
}

static int status_of(yw_fake_call_t *fc, size_t i)
{
    const response_t *r = (const response_t *)yw_fake_call_response(fc, i);
    YW_CHECK(r != NULL);
    return (int)r->status;
}

static int read_one(yw_fake_call_t *fc, void *arg)
{
    (void)arg;
    return yw_fake_call_n_read(fc) >= 1;
}

static int never(yw_fake_call_t *fc, void *arg)
{
    uint64_t *until_ns = arg;
    (void)fc;
    return uv_hrtime() >= *until_ns;
}

/* Runs the loop for `ms` (the call may progress meanwhile). */
static void run_for(yw_fake_call_t *fc, uint64_t ms)
{
    uint64_t until = uv_hrtime() + ms * 1000000u;
    YW_CHECK_INT(yw_fake_call_run_until(fc, never, &until), ==, 0);
}

/* ---- tests ---- */

YW_TEST(methods_are_found_by_name)
{
    yw_runtime_t *rt = rt_new();
    yw_fake_call_t *fc = NULL;
    yw_fake_call_config_t cfg = {.service = &echo_service, .method = "Su"};
    YW_CHECK_INT(yw_fake_call_start(rt, &cfg, &fc), ==, -ENOENT);
    cfg.method = "Nope";
    YW_CHECK_INT(yw_fake_call_start(rt, &cfg, &fc), ==, -ENOENT);
    cfg.method = NULL;
    YW_CHECK_INT(yw_fake_call_start(rt, &cfg, &fc), ==, -EINVAL);
    YW_CHECK(fc == NULL);
    yw_runtime_destroy(rt);
}

YW_TEST(a_unary_reply_reaches_the_client_and_the_call_is_freed)
{
    yw_runtime_t *rt = rt_new();
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    yw_fake_call_t *fc = start(rt, "Echo", &req);
    YW_CHECK_INT(handler_runs, ==, 0); /* it arrives when the loop runs */
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, -1);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK(yw_fake_call_over(fc));
    YW_CHECK_INT(handler_runs, ==, 1);
    YW_CHECK_INT(on_done_runs, ==, 1);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 1);
    YW_CHECK_INT(status_of(fc, 0), ==, 1);
    size_t len = 0;
    YW_CHECK(yw_fake_call_sent(fc, 0, &len) != NULL && len == 2); /* field 1, varint 1 */
    YW_CHECK(yw_fake_call_sent(fc, 1, &len) == NULL);
    const char *msg = NULL;
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(msg, "");
    YW_CHECK(yw_fake_call_trailing_request_id(fc) == NULL); /* OK calls carry none */
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(calls_arrive_in_the_order_they_were_started)
{
    yw_runtime_t *rt = rt_new();
    request_t reqs[3] = {GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT,
                         GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT,
                         GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT};
    reqs[0].service = "a";
    reqs[1].service = "b";
    reqs[2].service = "c";
    yw_fake_call_t *fcs[3];
    for (size_t i = 0; i < 3; i++) {
        fcs[i] = start(rt, "Echo", &reqs[i]);
    }
    for (size_t i = 0; i < 3; i++) {
        YW_CHECK_INT(yw_fake_call_run(fcs[i]), ==, 0);
    }
    YW_CHECK_STR(arrivals, "abc");
    for (size_t i = 0; i < 3; i++) {
        yw_fake_call_destroy(fcs[i]);
    }
    yw_runtime_destroy(rt);
}

static int refuse(yw_call_t *call)
{
    yw_call_fail(call, GRPC_STATUS_UNAVAILABLE, "the service is not serving now");
    return -1;
}

YW_TEST(a_service_that_does_not_admit_a_call_answers_it_itself)
{
    yw_runtime_t *rt = rt_new();
    yw_service_t closed = echo_service;
    closed.admit = refuse;
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    yw_fake_call_config_t cfg = {.service = &closed, .method = "Echo", .request = &req.base};
    yw_fake_call_t *fc = NULL;
    YW_CHECK_INT(yw_fake_call_start(rt, &cfg, &fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    const char *msg = NULL;
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_STR(msg, "the service is not serving now");
    YW_CHECK_INT(handler_runs, ==, 0);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(a_failure_carries_its_message_and_the_request_id)
{
    yw_runtime_t *rt = rt_new();
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "fail";
    yw_fake_call_t *fc = start_cfg(rt, (yw_fake_call_config_t){
                                           .method = "Echo",
                                           .request = &req.base,
                                           .request_id = "req-42",
                                       });
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    const char *msg = NULL;
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(msg, "service: \"fail\" refused");
    YW_CHECK_STR(yw_fake_call_trailing_request_id(fc), "req-42");
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 0);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(the_handler_sees_the_metadata_and_the_caller)
{
    yw_runtime_t *rt = rt_new();
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "who";
    static const char *const md[] = {"x-tenant", "acme", NULL};
    yw_fake_call_t *fc = start_cfg(rt, (yw_fake_call_config_t){
                                           .method = "Echo",
                                           .request = &req.base,
                                           .request_id = "rid-7",
                                           .metadata = md,
                                           .caller = "demo",
                                       });
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    const char *msg = NULL;
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(msg, "rid-7 demo acme");
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(requests_are_checked_by_the_runtime_before_the_handler)
{
    yw_runtime_t *rt = rt_new();
    /* Not a message: field 1 says 100 bytes follow, none do. */
    static const uint8_t junk[] = {0x0a, 0x64};
    yw_fake_call_t *fc = start_cfg(rt, (yw_fake_call_config_t){
                                           .method = "Echo",
                                           .request_bytes = junk,
                                           .request_len = sizeof junk,
                                       });
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    const char *msg = NULL;
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(msg, "malformed protobuf") != NULL);
    yw_fake_call_destroy(fc);
    /* A string that is not UTF-8, named by its field. */
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "bad \xff";
    fc = start(rt, "Echo", &req);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(msg, "service: ", 9) == 0);
    yw_fake_call_destroy(fc);
    /* No message at all. */
    fc = start(rt, "Echo", NULL);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(msg, "is missing") != NULL);
    yw_fake_call_destroy(fc);
    YW_CHECK_INT(handler_runs, ==, 0);
    yw_runtime_destroy(rt);
}

YW_TEST(a_server_stream_collects_every_message_in_order)
{
    yw_runtime_t *rt = rt_new();
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    yw_fake_call_t *fc = start(rt, "Count", &req);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 3);
    for (size_t i = 0; i < 3; i++) {
        YW_CHECK_INT(status_of(fc, i), ==, (int)i + 1);
    }
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, GRPC_STATUS_OK);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(a_client_stream_is_read_in_order_then_answered_once)
{
    yw_runtime_t *rt = rt_new();
    yw_fake_call_t *fc = start(rt, "Sum", NULL);
    for (int i = 0; i < 3; i++) {
        send_one(fc, "one");
    }
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, -EPIPE);
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    YW_CHECK_INT(yw_fake_call_send(fc, &req.base), ==, -EPIPE);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_n_read(fc), ==, 3);
    YW_CHECK_INT(on_end_runs, ==, 1);
    YW_CHECK(!end_cancelled);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 1);
    YW_CHECK_INT(status_of(fc, 0), ==, 3);
    YW_CHECK_INT(on_done_runs, ==, 1);
    yw_fake_call_destroy(fc);
    /* Unary methods take no streamed messages. */
    fc = start(rt, "Echo", &req);
    YW_CHECK_INT(yw_fake_call_send(fc, &req.base), ==, -EINVAL);
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, -EINVAL);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(a_paused_stream_reads_nothing_until_resumed)
{
    yw_runtime_t *rt = rt_new();
    yw_fake_call_t *fc = start(rt, "Sum", NULL);
    send_one(fc, "pause");
    send_one(fc, "one");
    send_one(fc, "one");
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_run_until(fc, read_one, NULL), ==, 0);
    run_for(fc, 30);
    YW_CHECK_INT(yw_fake_call_n_read(fc), ==, 1);
    YW_CHECK(yw_call_reads_paused(held));
    YW_CHECK_INT(yw_call_resume_reads(held), ==, 0);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_n_read(fc), ==, 3);
    YW_CHECK_INT(status_of(fc, 0), ==, 3);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(a_cancel_ends_the_stream_and_the_client_sees_cancelled)
{
    yw_runtime_t *rt = rt_new();
    yw_fake_call_t *fc = start(rt, "Sum", NULL);
    send_one(fc, "one");
    YW_CHECK_INT(yw_fake_call_run_until(fc, read_one, NULL), ==, 0);
    yw_fake_call_cancel(fc);
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    YW_CHECK_INT(yw_fake_call_send(fc, &req.base), ==, -ECANCELED);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(on_end_runs, ==, 1);
    YW_CHECK(end_cancelled);
    YW_CHECK_INT(on_done_runs, ==, 1);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 0); /* the reply went nowhere */
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, GRPC_STATUS_CANCELLED);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

static int held_cancelled(yw_fake_call_t *fc, void *arg)
{
    (void)fc;
    (void)arg;
    return held != NULL && yw_call_is_cancelled(held);
}

YW_TEST(a_deadline_cancels_the_call_under_its_handler)
{
    yw_runtime_t *rt = rt_new();
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "hold";
    yw_fake_call_t *fc = start_cfg(rt, (yw_fake_call_config_t){
                                           .method = "Echo",
                                           .request = &req.base,
                                           .timeout_ms = 40,
                                       });
    YW_CHECK_INT(yw_fake_call_run_until(fc, held_cancelled, NULL), ==, 0);
    YW_CHECK(yw_call_remaining_ms(held) <= 0);
    YW_CHECK(!yw_fake_call_over(fc)); /* the handler still holds it */
    YW_CHECK_INT(yw_call_abandoned(held), ==, 1);
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, GRPC_STATUS_DEADLINE_EXCEEDED);
    YW_CHECK_INT(on_done_runs, ==, 1);
    yw_fake_call_destroy(fc);
    yw_runtime_destroy(rt);
}

YW_TEST(destroy_cancels_a_call_still_in_flight)
{
    yw_runtime_t *rt = rt_new();
    yw_fake_call_t *fc = start(rt, "Sum", NULL);
    send_one(fc, "one");
    YW_CHECK_INT(yw_fake_call_run_until(fc, read_one, NULL), ==, 0);
    yw_fake_call_destroy(fc);
    YW_CHECK_INT(on_end_runs, ==, 1);
    YW_CHECK(end_cancelled);
    YW_CHECK_INT(on_done_runs, ==, 1);
    yw_runtime_destroy(rt);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(methods_are_found_by_name),
        YW_TEST_ENTRY(a_unary_reply_reaches_the_client_and_the_call_is_freed),
        YW_TEST_ENTRY(calls_arrive_in_the_order_they_were_started),
        YW_TEST_ENTRY(a_service_that_does_not_admit_a_call_answers_it_itself),
        YW_TEST_ENTRY(a_failure_carries_its_message_and_the_request_id),
        YW_TEST_ENTRY(the_handler_sees_the_metadata_and_the_caller),
        YW_TEST_ENTRY(requests_are_checked_by_the_runtime_before_the_handler),
        YW_TEST_ENTRY(a_server_stream_collects_every_message_in_order),
        YW_TEST_ENTRY(a_client_stream_is_read_in_order_then_answered_once),
        YW_TEST_ENTRY(a_paused_stream_reads_nothing_until_resumed),
        YW_TEST_ENTRY(a_cancel_ends_the_stream_and_the_client_sees_cancelled),
        YW_TEST_ENTRY(a_deadline_cancels_the_call_under_its_handler),
        YW_TEST_ENTRY(destroy_cancels_a_call_still_in_flight),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
