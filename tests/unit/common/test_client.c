/*
 * Unit tests of common/client.c: unary calls to a real server on a loopback port, on the
 * loop thread: the reply, the peer's status, the deadline, a peer that is not there, a
 * channel destroyed with a call in flight, and what an inbound call passes on as parent
 * (its deadline and its request id). Each runs twice: over a connection, and over an
 * in-process channel to the same server (yw_channel_create_local()), which must give the
 * same answers; then what only the in-process channel does (a server not started, a
 * method it does not serve, the server's stop waiting for its calls, no auth check).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/auth.h"
#include "common/client.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/test.h"

#define PEER "yw.test.Peer"
#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING

typedef Grpc__Health__V1__HealthCheckRequest request_t;
typedef Grpc__Health__V1__HealthCheckResponse response_t;

typedef struct {
    grpc_status_code code;
    char detail[512];
    int status; /* of the response, -1 without one */
} result_t;

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    yw_channel_t *ch;
    result_t results[8];
    int expected, done;
    yw_call_t *held;       /* "hold": answered by nobody until the client gives up */
    result_t *held_result; /* what its client got */
    char outer_rid[160], inner_rid[160];
    char inner_md[64]; /* the inner call's yw-test-partition metadata */
    uv_timer_t timer;
    int64_t inner_remaining_ms;
    int local; /* the channel is in process */
} fixture_t;

static fixture_t *the_fixture;

/* ---- the peer ---- */

static void relay_done(void *arg, grpc_status_code code, const char *detail,
                       ProtobufCMessage *resp);

/* "ok": SERVING; "fail": FAILED_PRECONDITION; "hold": never answered; "relay": calls
 * "inner" with this call as parent and answers what it got. */
static void peer(yw_call_t *call, const ProtobufCMessage *msg)
{
    fixture_t *f = the_fixture;
    const request_t *req = (const request_t *)msg;
    response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = SERVING;
    if (strcmp(req->service, "fail") == 0) {
        yw_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "peer: refused");
    } else if (strcmp(req->service, "hold") == 0) {
        f->held = call;
    } else if (strcmp(req->service, "relay-md") == 0) {
        snprintf(f->outer_rid, sizeof f->outer_rid, "%s", yw_call_request_id(call));
        request_t inner = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        inner.service = "inner";
        const yw_client_md_t md[] = {{"yw-test-partition", "17"}, {"yw-test-other", "x"}};
        YW_CHECK_INT(yw_client_unary_md(f->ch, "/" PEER "/Call", &inner.base,
                                        &grpc__health__v1__health_check_response__descriptor, call,
                                        0, md, 2, relay_done, call),
                     ==, 0);
        yw_client_md_t many[YW_CLIENT_MAX_MD + 1] = {{"a", "b"}};
        YW_CHECK_INT(yw_client_unary_md(f->ch, "/" PEER "/Call", &inner.base,
                                        &grpc__health__v1__health_check_response__descriptor, call,
                                        0, many, YW_CLIENT_MAX_MD + 1, relay_done, call),
                     ==, -EINVAL);
    } else if (strcmp(req->service, "relay") == 0) {
        snprintf(f->outer_rid, sizeof f->outer_rid, "%s", yw_call_request_id(call));
        request_t inner = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        inner.service = "inner";
        YW_CHECK_INT(yw_client_unary(f->ch, "/" PEER "/Call", &inner.base,
                                     &grpc__health__v1__health_check_response__descriptor, call, 0,
                                     relay_done, call),
                     ==, 0);
    } else if (strcmp(req->service, "inner") == 0) {
        snprintf(f->inner_rid, sizeof f->inner_rid, "%s", yw_call_request_id(call));
        f->inner_remaining_ms = yw_call_remaining_ms(call);
        size_t mlen = 0;
        const char *m = yw_call_metadata(call, "yw-test-partition", &mlen);
        snprintf(f->inner_md, sizeof f->inner_md, "%.*s", m ? (int)mlen : 0, m ? m : "");
        yw_call_reply(call, &resp.base);
    } else {
        yw_call_reply(call, &resp.base);
    }
}

static void relay_done(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    yw_call_t *call = arg;
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, detail);
        return;
    }
    yw_call_reply(call, resp);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void peer_done(yw_call_t *call)
{
    if (the_fixture->held == call) {
        the_fixture->held = NULL;
    }
}

static const yw_method_t peer_methods[] = {
    YW_METHOD(UNARY, PEER, "Call", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = peer, .on_done = peer_done),
};

static const yw_service_t peer_service = {.name = PEER, .methods = peer_methods, .n_methods = 1};

/* ---- the fixture ---- */

static void on_down(void *arg)
{
    fixture_t *f = arg;
    yw_server_destroy(f->srv);
    yw_runtime_stop(f->rt);
}

/* A started server with the peer service, and a channel to it: in process or not. */
static void start_with(fixture_t *f, int local, const yw_auth_t *auth)
{
    memset(f, 0, sizeof *f);
    the_fixture = f;
    f->local = local;
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {.listen = "127.0.0.1:0", .grace_ms = 100, .auth = auth};
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &peer_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    if (local) {
        YW_CHECK_INT(yw_channel_create_local(f->rt, f->srv, &f->ch), ==, 0);
        return;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    YW_CHECK_INT(yw_channel_create(f->rt, target, &f->ch), ==, 0);
}

static void start(fixture_t *f, int local)
{
    start_with(f, local, NULL);
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    fixture_t *f = the_fixture;
    result_t *r = arg;
    r->code = code;
    snprintf(r->detail, sizeof r->detail, "%s", detail);
    r->status = -1;
    if (r == f->held_result && f->held != NULL) {
        /* Its client gave up: the handler still has to finish it (harmless now). */
        yw_call_fail(f->held, GRPC_STATUS_CANCELLED, "the client went away");
        f->held = NULL;
    }
    if (resp != NULL) {
        r->status = ((response_t *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (++f->done == f->expected) {
        yw_server_shutdown(f->srv, on_down, f);
    }
}

static result_t *call(fixture_t *f, const char *what, int64_t timeout_ms)
{
    result_t *r = &f->results[f->expected++];
    if (strcmp(what, "hold") == 0) {
        f->held_result = r;
    }
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)what;
    YW_CHECK_INT(yw_client_unary(f->ch, "/" PEER "/Call", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL,
                                 timeout_ms, on_reply, r),
                 ==, 0);
    return r;
}

static void finish(fixture_t *f)
{
    if (f->ch != NULL) {
        yw_channel_destroy(f->ch);
    }
    yw_runtime_destroy(f->rt);
}

/* ---- tests ---- */

static void reply_status_and_deadline_on(int local)
{
    fixture_t f;
    start(&f, local);
    result_t *ok = call(&f, "ok", 5000);
    result_t *fail = call(&f, "fail", 5000);
    result_t *held = call(&f, "hold", 100);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(ok->code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(ok->status, ==, SERVING);
    YW_CHECK_INT(fail->code, ==, GRPC_STATUS_FAILED_PRECONDITION);
    YW_CHECK_STR(fail->detail, "peer: refused");
    YW_CHECK_INT(fail->status, ==, -1);
    YW_CHECK_INT(held->code, ==, GRPC_STATUS_DEADLINE_EXCEEDED);
    finish(&f);
}

static void a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id_on(int local)
{
    fixture_t f;
    start(&f, local);
    result_t *relayed = call(&f, "relay", 3000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(relayed->code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(relayed->status, ==, SERVING);
    /* The outer call made up a request id; the inner call got it as x-request-id. */
    YW_CHECK_INT(strlen(f.outer_rid), ==, 16);
    YW_CHECK_STR(f.inner_rid, f.outer_rid);
    /* timeout_ms 0 with a parent: the parent's deadline (3 s, give or take gRPC's
     * rounding of the timeout on the wire), never none. */
    YW_CHECK(f.inner_remaining_ms > 0 && f.inner_remaining_ms <= 3500);
    finish(&f);
}

static void metadata_of_the_caller_goes_along_with_the_request_id_on(int local)
{
    fixture_t f;
    start(&f, local);
    result_t *relayed = call(&f, "relay-md", 3000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(relayed->code, ==, GRPC_STATUS_OK);
    YW_CHECK_STR(f.inner_md, "17");
    YW_CHECK_STR(f.inner_rid, f.outer_rid);
    finish(&f);
}

/* Once the peer holds the call, the channel goes. */
static void drop_channel_once_held(uv_timer_t *t)
{
    fixture_t *f = t->data;
    if (f->held != NULL) {
        uv_close((uv_handle_t *)t, NULL);
        yw_channel_destroy(f->ch);
        f->ch = NULL;
    }
}

static void destroying_the_channel_cancels_calls_in_flight_on(int local)
{
    fixture_t f;
    start(&f, local);
    result_t *held = call(&f, "hold", 0);
    uv_timer_init(yw_runtime_loop(f.rt), &f.timer);
    f.timer.data = &f;
    uv_timer_start(&f.timer, drop_channel_once_held, 5, 5);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(held->code, ==, GRPC_STATUS_CANCELLED);
    finish(&f);
}

YW_TEST(a_peer_that_is_not_there_is_unavailable)
{
    fixture_t f;
    start(&f, 0);
    yw_channel_t *nowhere;
    YW_CHECK_INT(yw_channel_create(f.rt, "127.0.0.1:1", &nowhere), ==, 0);
    yw_channel_destroy(f.ch);
    f.ch = nowhere;
    result_t *r = call(&f, "ok", 2000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(r->code, ==, GRPC_STATUS_UNAVAILABLE);
    finish(&f);
}

YW_TEST(reply_status_and_deadline)
{
    reply_status_and_deadline_on(0);
}

YW_TEST(reply_status_and_deadline_in_process)
{
    reply_status_and_deadline_on(1);
}

YW_TEST(a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id)
{
    a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id_on(0);
}

YW_TEST(a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id_in_process)
{
    a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id_on(1);
}

YW_TEST(metadata_of_the_caller_goes_along_with_the_request_id)
{
    metadata_of_the_caller_goes_along_with_the_request_id_on(0);
}

YW_TEST(metadata_of_the_caller_goes_along_with_the_request_id_in_process)
{
    metadata_of_the_caller_goes_along_with_the_request_id_on(1);
}

YW_TEST(destroying_the_channel_cancels_calls_in_flight)
{
    destroying_the_channel_cancels_calls_in_flight_on(0);
}

YW_TEST(destroying_the_channel_cancels_calls_in_flight_in_process)
{
    destroying_the_channel_cancels_calls_in_flight_on(1);
}

/* ---- in process only ---- */

YW_TEST(in_process_a_server_not_started_or_a_method_it_lacks_is_refused_at_once)
{
    fixture_t f;
    start(&f, 1);
    request_t req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "ok";
    /* Not a method of the server: refused before anything is sent, no callback. */
    YW_CHECK_INT(yw_client_unary(f.ch, "/" PEER "/Nope", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 0,
                                 on_reply, &f.results[7]),
                 ==, -ENOENT);
    /* A server that never started has registered no method yet. */
    yw_server_t *idle;
    yw_server_config_t cfg = {.listen = "127.0.0.1:0"};
    char err[256];
    YW_CHECK_INT(yw_server_create(f.rt, &cfg, &idle, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(idle, &peer_service), ==, 0);
    yw_channel_t *ch;
    YW_CHECK_INT(yw_channel_create_local(f.rt, idle, &ch), ==, 0);
    YW_CHECK_INT(yw_client_unary(ch, "/" PEER "/Call", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 0,
                                 on_reply, &f.results[7]),
                 ==, -EINVAL);
    yw_channel_destroy(ch);
    yw_server_destroy(idle);
    result_t *ok = call(&f, "ok", 5000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(ok->code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(ok->status, ==, SERVING);
    finish(&f);
}

/* The server is asked to stop while the peer holds an in-process call: the stop waits
 * for it (one of the server's calls in flight) until its grace period cancels it, as
 * it cancels the calls gRPC brought. */
static void shutdown_once_held(uv_timer_t *t)
{
    fixture_t *f = t->data;
    if (f->held != NULL) {
        uv_close((uv_handle_t *)t, NULL);
        yw_server_shutdown(f->srv, on_down, f);
    }
}

YW_TEST(in_process_calls_are_the_servers_calls_in_flight)
{
    fixture_t f;
    start(&f, 1);
    result_t *held = call(&f, "hold", 0);
    f.expected = 2; /* on_reply does not stop the server: shutdown_once_held does */
    uv_timer_init(yw_runtime_loop(f.rt), &f.timer);
    f.timer.data = &f;
    uv_timer_start(&f.timer, shutdown_once_held, 5, 5);
    yw_runtime_run(f.rt); /* until on_down: the server waited for the held call */
    /* Cancelled by the grace period with gRPC's own status for that. */
    YW_CHECK_INT(held->code, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(f.held == NULL);
    finish(&f);
}

/* With auth on, a connection without credentials is refused; the process's own calls
 * are not checked (the inbound call that made them was). */
YW_TEST(in_process_calls_are_not_checked_by_auth)
{
    static const char json[] =
        "{\"callers\": [{\"name\": \"ops\", \"token_sha256\": "
        "\"0000000000000000000000000000000000000000000000000000000000000000\", "
        "\"roles\": [\"admin\"]}], \"methods\": {\"*\": [\"admin\"]}}";
    yw_auth_t *auth = NULL;
    char err[256];
    YW_CHECK_INT(yw_auth_parse(json, strlen(json), "test", &auth, err, sizeof err), ==, 0);
    fixture_t f;
    start_with(&f, 0, auth);
    result_t *refused = call(&f, "ok", 5000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(refused->code, ==, GRPC_STATUS_UNAUTHENTICATED);
    finish(&f);

    start_with(&f, 1, auth);
    result_t *ok = call(&f, "ok", 5000);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(ok->code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(ok->status, ==, SERVING);
    finish(&f);
    yw_auth_destroy(auth);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(reply_status_and_deadline),
        YW_TEST_ENTRY(reply_status_and_deadline_in_process),
        YW_TEST_ENTRY(a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id),
        YW_TEST_ENTRY(
            a_call_made_for_an_inbound_call_carries_its_deadline_and_request_id_in_process),
        YW_TEST_ENTRY(metadata_of_the_caller_goes_along_with_the_request_id),
        YW_TEST_ENTRY(metadata_of_the_caller_goes_along_with_the_request_id_in_process),
        YW_TEST_ENTRY(destroying_the_channel_cancels_calls_in_flight),
        YW_TEST_ENTRY(destroying_the_channel_cancels_calls_in_flight_in_process),
        YW_TEST_ENTRY(a_peer_that_is_not_there_is_unavailable),
        YW_TEST_ENTRY(in_process_a_server_not_started_or_a_method_it_lacks_is_refused_at_once),
        YW_TEST_ENTRY(in_process_calls_are_the_servers_calls_in_flight),
        YW_TEST_ENTRY(in_process_calls_are_not_checked_by_auth),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
