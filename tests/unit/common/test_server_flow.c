/*
 * Unit tests of common/server.c's flow control on client streams
 * (yw_call_pause_reads() / yw_call_resume_reads()): a real server on a loopback port and
 * a client stream on gRPC core, on one loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/client.h"
#include "common/runtime.h"
#include "common/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tests/unit/test.h"

/* What the client does after the server paused. */
enum { END_NORMAL, END_DEADLINE, END_CLIENT_CANCEL, END_SHUTDOWN };

#define BIG ((size_t)64 * 1024)

typedef struct {
    yw_runtime_t *rt;
    yw_server_t *srv;
    int end_mode;
    int n_send;       /* messages the client sends before its half-close */
    size_t msg_bytes; /* size of each message's string */
    int pause_at;     /* the server pauses after this many messages */
    int64_t deadline_ms;
    /* server side */
    yw_call_t *call;
    int received;
    int received_at_resume;
    int sent_at_resume;
    int resumed;
    int ended;
    int end_cancelled;
    int end_resume_rc, end_pause_rc, late_resume_rc;
    int done_calls;
    int unary_pause_rc, unary_resume_rc;
    uv_timer_t timer;
    uv_timer_t cancel_timer; /* END_CLIENT_CANCEL: started once the server paused */
    /* client side */
    grpc_channel *ch;
    grpc_call *cc;
    yw_tag_t t_send, t_recv, t_close, t_md;
    int pending;
    int sent;
    int half_closed;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    int client_done;
    int shutdown_started;
    int server_down;
    char *payload;
} flow_t;

static flow_t *the_flow;

#define FLOW_OF(tag, field) ((flow_t *)((char *)(tag)-offsetof(flow_t, field)))

/* ---- the server: counts messages, pauses after pause_at ---- */

/* The loop stops once the client saw the end and the server is down. */
static void flow_on_down(void *arg)
{
    flow_t *f = arg;
    f->server_down = 1;
    yw_server_destroy(f->srv);
    f->srv = NULL;
    if (f->client_done && f->pending == 0) {
        yw_runtime_stop(f->rt);
    }
}

static void flow_shutdown(flow_t *f)
{
    if (!f->shutdown_started) {
        f->shutdown_started = 1;
        yw_server_shutdown(f->srv, flow_on_down, f);
    }
}

static void flow_maybe_stop(flow_t *f)
{
    if (!f->client_done || f->pending > 0) {
        return;
    }
    if (f->server_down) {
        yw_runtime_stop(f->rt);
    } else {
        flow_shutdown(f);
    }
}

static void flow_on_resume_timer(uv_timer_t *t)
{
    flow_t *f = t->data;
    f->received_at_resume = f->received;
    f->sent_at_resume = f->sent;
    f->resumed = 1;
    YW_CHECK(yw_call_reads_paused(f->call));
    YW_CHECK_INT(yw_call_resume_reads(f->call), ==, 0);
    YW_CHECK(!yw_call_reads_paused(f->call));
    /* A second resume is harmless. */
    YW_CHECK_INT(yw_call_resume_reads(f->call), ==, 0);
}

static void flow_on_shutdown_timer(uv_timer_t *t)
{
    flow_shutdown(t->data);
}

static void flow_on_cancel_timer(uv_timer_t *t);

static void flow_on_message(yw_call_t *call, const ProtobufCMessage *msg)
{
    flow_t *f = the_flow;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    YW_CHECK_INT(strlen(req->service), ==, f->msg_bytes);
    f->call = call;
    f->received++;
    if (f->received == f->pause_at) {
        YW_CHECK_INT(yw_call_pause_reads(call), ==, 0);
        YW_CHECK_INT(yw_call_pause_reads(call), ==, 0); /* twice: harmless */
        if (f->end_mode == END_NORMAL) {
            uv_timer_start(&f->timer, flow_on_resume_timer, 300, 0);
        } else if (f->end_mode == END_SHUTDOWN) {
            uv_timer_start(&f->timer, flow_on_shutdown_timer, 100, 0);
        } else if (f->end_mode == END_CLIENT_CANCEL) {
            /* From the pause, not from the call's start: on a slow machine the call may
             * reach the server later than a fixed time after it was made. */
            uv_timer_start(&f->cancel_timer, flow_on_cancel_timer, 100, 0);
        }
    } else if (f->received == f->pause_at + 1) {
        /* Pause and resume inside on_message: the runtime reads on after it returns. */
        YW_CHECK_INT(yw_call_pause_reads(call), ==, 0);
        YW_CHECK_INT(yw_call_resume_reads(call), ==, 0);
    }
}

static void flow_on_late_finish(uv_timer_t *t)
{
    flow_t *f = t->data;
    /* The stream ended while paused; resuming now is safe and does nothing. */
    f->late_resume_rc = yw_call_resume_reads(f->call);
    yw_call_finish(f->call, GRPC_STATUS_CANCELLED, "stream ended while paused");
    /* Still valid until this callback returns (server.h): resuming stays harmless. */
    YW_CHECK_INT(yw_call_resume_reads(f->call), ==, -ECANCELED);
}

static void flow_on_end(yw_call_t *call)
{
    flow_t *f = the_flow;
    f->call = call;
    f->ended = 1;
    f->end_cancelled = yw_call_is_cancelled(call);
    f->end_resume_rc = yw_call_resume_reads(call);
    f->end_pause_rc = yw_call_pause_reads(call);
    if (f->end_cancelled) {
        /* Finish later, as a handler with work in flight does. */
        uv_timer_start(&f->timer, flow_on_late_finish, 50, 0);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    YW_CHECK_INT(yw_call_reply(call, &resp.base), ==, 0);
}

static void flow_on_done(yw_call_t *call)
{
    (void)call;
    the_flow->done_calls++;
}

static void flow_on_unary(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    the_flow->unary_pause_rc = yw_call_pause_reads(call);
    the_flow->unary_resume_rc = yw_call_resume_reads(call);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    (void)yw_call_reply(call, &resp.base);
}

static const yw_method_t flow_methods[] = {
    {"/yw.test.Flow/Count", YW_METHOD_CLIENT_STREAMING,
     &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, flow_on_message, flow_on_end,
     flow_on_done, NULL},
    {"/yw.test.Flow/Unary", YW_METHOD_UNARY, &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, flow_on_unary, NULL, NULL, NULL},
};
static const yw_service_t flow_service = {
    .name = "yw.test.Flow", .methods = flow_methods, .n_methods = 2};

/* ---- the client: sends as fast as gRPC takes the messages ---- */

static int flow_batch(flow_t *f, const grpc_op *ops, size_t n, yw_tag_t *tag)
{
    YW_CHECK_INT(grpc_call_start_batch(f->cc, ops, n, tag, NULL), ==, GRPC_CALL_OK);
    f->pending++;
    return 0;
}

static void flow_send_next(flow_t *f)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    if (f->sent == f->n_send) {
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        f->half_closed = 1;
        flow_batch(f, &op, 1, &f->t_close);
        return;
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = f->payload;
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(s));
    f->send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = f->send_bb;
    flow_batch(f, &op, 1, &f->t_send);
}

static void flow_on_send(yw_tag_t *tag, int ok)
{
    flow_t *f = FLOW_OF(tag, t_send);
    f->pending--;
    grpc_byte_buffer_destroy(f->send_bb);
    f->send_bb = NULL;
    if (ok) {
        f->sent++;
        flow_send_next(f);
    }
    flow_maybe_stop(f);
}

static void flow_on_misc(yw_tag_t *tag, int ok)
{
    (void)tag;
    (void)ok;
    flow_t *f = the_flow;
    f->pending--;
    flow_maybe_stop(f);
}

static void flow_on_status(yw_tag_t *tag, int ok)
{
    flow_t *f = FLOW_OF(tag, t_recv);
    YW_CHECK(ok);
    f->pending--;
    f->client_done = 1;
    flow_maybe_stop(f);
}

static void flow_on_cancel_timer(uv_timer_t *t)
{
    flow_t *f = t->data;
    grpc_call_cancel(f->cc, NULL);
}

static void flow_run(flow_t *f)
{
    the_flow = f;
    f->payload = malloc(f->msg_bytes + 1);
    memset(f->payload, 'x', f->msg_bytes);
    f->payload[f->msg_bytes] = '\0';
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    yw_server_config_t cfg = {
        .listen = "127.0.0.1:0",
        .grace_ms = 200,
    };
    char err[256];
    YW_CHECK_INT(yw_server_create(f->rt, &cfg, &f->srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f->srv, &flow_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f->srv, err, sizeof err), ==, 0);
    uv_timer_init(yw_runtime_loop(f->rt), &f->timer);
    f->timer.data = f;
    uv_timer_init(yw_runtime_loop(f->rt), &f->cancel_timer);
    f->cancel_timer.data = f;

    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f->srv));
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    f->ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    gpr_timespec deadline = f->deadline_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(f->deadline_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    f->cc = grpc_channel_create_call(f->ch, NULL, GRPC_PROPAGATE_DEFAULTS, yw_runtime_cq(f->rt),
                                     grpc_slice_from_static_string("/yw.test.Flow/Count"), NULL,
                                     deadline, NULL);
    YW_CHECK(f->cc != NULL);
    f->t_send.cb = flow_on_send;
    f->t_recv.cb = flow_on_status;
    f->t_close.cb = flow_on_misc;
    f->t_md.cb = flow_on_misc;
    f->details = grpc_empty_slice();
    grpc_metadata_array_init(&f->imd);
    grpc_metadata_array_init(&f->tmd);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &f->imd;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &f->recv_bb;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &f->tmd;
    ops[2].data.recv_status_on_client.status = &f->status;
    ops[2].data.recv_status_on_client.status_details = &f->details;
    flow_batch(f, ops, 3, &f->t_recv);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    flow_batch(f, ops, 1, &f->t_md);
    flow_send_next(f);
    yw_runtime_run(f->rt);

    uv_close((uv_handle_t *)&f->cancel_timer, NULL);
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_run(yw_runtime_loop(f->rt), UV_RUN_NOWAIT);
    YW_CHECK(f->server_down);
    YW_CHECK_INT(f->done_calls, ==, 1); /* the stream was freed */
    grpc_call_unref(f->cc);
    grpc_channel_destroy(f->ch);
    if (f->recv_bb != NULL) {
        grpc_byte_buffer_destroy(f->recv_bb);
    }
    grpc_metadata_array_destroy(&f->imd);
    grpc_metadata_array_destroy(&f->tmd);
    grpc_slice_unref(f->details);
    yw_runtime_destroy(f->rt);
    free(f->payload);
}

YW_TEST(paused_stream_holds_the_client_back_and_resume_reads_the_rest)
{
    flow_t f;
    memset(&f, 0, sizeof f);
    f.end_mode = END_NORMAL;
    f.n_send = 256; /* 16 MiB: more than HTTP/2 windows and buffers hold */
    f.msg_bytes = BIG;
    f.pause_at = 3;
    flow_run(&f);
    YW_CHECK(f.resumed);
    /* Paused for 300 ms: not one more message was read, and the client could not send
     * them all (the stream's window closed). */
    YW_CHECK_INT(f.received_at_resume, ==, 3);
    YW_CHECK_INT(f.sent_at_resume, <, f.n_send);
    /* Resumed: everything arrived, in one piece, and the call ended normally. */
    YW_CHECK_INT(f.received, ==, f.n_send);
    YW_CHECK(f.ended);
    YW_CHECK(!f.end_cancelled);
    YW_CHECK_INT(f.end_resume_rc, ==, -ECANCELED);
    YW_CHECK_INT(f.end_pause_rc, ==, -ECANCELED);
    YW_CHECK_INT(f.status, ==, GRPC_STATUS_OK);
    YW_CHECK(f.recv_bb != NULL);
}

static void run_ended_while_paused(int mode, grpc_status_code want)
{
    flow_t f;
    memset(&f, 0, sizeof f);
    f.end_mode = mode;
    f.n_send = 100000; /* never all sent: the server stays paused */
    f.msg_bytes = 1024;
    f.pause_at = 1;
    /* Long enough for the first message to arrive on a loaded machine (ASan, 2 cores). */
    f.deadline_ms = mode == END_DEADLINE ? 1500 : 0;
    flow_run(&f);
    YW_CHECK_INT(f.received, ==, 1);
    YW_CHECK_INT(f.sent, <, f.n_send);
    YW_CHECK(f.ended);
    YW_CHECK(f.end_cancelled);
    YW_CHECK_INT(f.end_resume_rc, ==, -ECANCELED);
    YW_CHECK_INT(f.end_pause_rc, ==, -ECANCELED);
    YW_CHECK_INT(f.late_resume_rc, ==, -ECANCELED);
    YW_CHECK_INT(f.status, ==, want);
}

YW_TEST(deadline_passing_while_paused_ends_the_stream)
{
    run_ended_while_paused(END_DEADLINE, GRPC_STATUS_DEADLINE_EXCEEDED);
}

YW_TEST(client_cancel_while_paused_ends_the_stream)
{
    run_ended_while_paused(END_CLIENT_CANCEL, GRPC_STATUS_CANCELLED);
}

YW_TEST(shutdown_ends_a_paused_stream_after_the_grace)
{
    /* The server cancels what is left after grace_ms (200): the client sees it end. */
    flow_t f;
    memset(&f, 0, sizeof f);
    f.end_mode = END_SHUTDOWN;
    f.n_send = 100000;
    f.msg_bytes = 1024;
    f.pause_at = 1;
    flow_run(&f);
    YW_CHECK_INT(f.received, ==, 1);
    YW_CHECK(f.ended);
    YW_CHECK(f.end_cancelled);
    YW_CHECK_INT(f.late_resume_rc, ==, -ECANCELED);
    YW_CHECK(f.status != GRPC_STATUS_OK);
}

/* ---- unary methods have nothing to pause ---- */

static void on_unary_reply(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    flow_t *f = arg;
    (void)detail;
    YW_CHECK_INT(code, ==, GRPC_STATUS_OK);
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    f->client_done = 1;
    flow_shutdown(f);
}

YW_TEST(unary_calls_cannot_be_paused)
{
    flow_t f;
    memset(&f, 0, sizeof f);
    the_flow = &f;
    YW_CHECK_INT(yw_runtime_create(&f.rt), ==, 0);
    yw_server_config_t cfg = {
        .listen = "127.0.0.1:0",
        .grace_ms = 200,
    };
    char err[256];
    YW_CHECK_INT(yw_server_create(f.rt, &cfg, &f.srv, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_server_add_service(f.srv, &flow_service), ==, 0);
    YW_CHECK_INT(yw_server_start(f.srv, err, sizeof err), ==, 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(f.srv));
    yw_channel_t *ch;
    YW_CHECK_INT(yw_channel_create(f.rt, target, &ch), ==, 0);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    YW_CHECK_INT(yw_client_unary(ch, "/yw.test.Flow/Unary", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 5000,
                                 on_unary_reply, &f),
                 ==, 0);
    yw_runtime_run(f.rt);
    yw_channel_destroy(ch);
    YW_CHECK(f.server_down);
    YW_CHECK_INT(f.unary_pause_rc, ==, -EINVAL);
    YW_CHECK_INT(f.unary_resume_rc, ==, -EINVAL);
    yw_runtime_destroy(f.rt);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(paused_stream_holds_the_client_back_and_resume_reads_the_rest),
        YW_TEST_ENTRY(deadline_passing_while_paused_ends_the_stream),
        YW_TEST_ENTRY(client_cancel_while_paused_ends_the_stream),
        YW_TEST_ENTRY(shutdown_ends_a_paused_stream_after_the_grace),
        YW_TEST_ENTRY(unary_calls_cannot_be_paused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
