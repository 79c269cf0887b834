/* test_server_raw.c — see test_server_raw.h. */
#include "tests/unit/common/test_server_raw.h"

#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "tests/unit/test.h"

#define RAW_OF(tag, field) ((raw_call_t *)((char *)(tag)-offsetof(raw_call_t, field)))

static void raw_batch(raw_call_t *rc, const grpc_op *ops, size_t n, yw_tag_t *tag)
{
    YW_CHECK_INT(grpc_call_start_batch(rc->call, ops, n, tag, NULL), ==, GRPC_CALL_OK);
    rc->pending++;
}

static void raw_maybe_done(raw_call_t *rc)
{
    if (rc->pending == 0 && !rc->done) {
        rc->done = 1;
        if (rc->on_done != NULL) {
            rc->on_done(rc);
        }
    }
}

static void raw_send_next(raw_call_t *rc)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    if (rc->sent == rc->n_sends) {
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        rc->sent++;
        raw_batch(rc, &op, 1, &rc->t_send);
        return;
    }
    const ProtobufCMessage *m = rc->sends[rc->sent];
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    rc->send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = rc->send_bb;
    raw_batch(rc, &op, 1, &rc->t_send);
}

static void raw_on_send(yw_tag_t *tag, int ok)
{
    raw_call_t *rc = RAW_OF(tag, t_send);
    rc->pending--;
    if (rc->send_bb != NULL) {
        grpc_byte_buffer_destroy(rc->send_bb);
        rc->send_bb = NULL;
        if (ok) {
            rc->sent++;
            raw_send_next(rc);
        }
    }
    raw_maybe_done(rc);
}

static void raw_recv_next(raw_call_t *rc)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &rc->recv_bb;
    raw_batch(rc, &op, 1, &rc->t_recv);
}

static void raw_on_recv(yw_tag_t *tag, int ok)
{
    raw_call_t *rc = RAW_OF(tag, t_recv);
    rc->pending--;
    if (ok && rc->recv_bb != NULL) {
        grpc_byte_buffer_reader reader;
        YW_CHECK(grpc_byte_buffer_reader_init(&reader, rc->recv_bb));
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        grpc_byte_buffer_destroy(rc->recv_bb);
        rc->recv_bb = NULL;
        ProtobufCMessage *m = protobuf_c_message_unpack(rc->resp_desc, NULL, GRPC_SLICE_LENGTH(all),
                                                        GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
        YW_CHECK(m != NULL);
        YW_CHECK(rc->n_resps < RAW_MAX_RESPONSES);
        rc->resps[rc->n_resps++] = m;
        if (rc->on_message != NULL) {
            rc->on_message(rc, m);
        }
        raw_recv_next(rc);
    }
    raw_maybe_done(rc);
}

static void raw_on_start(yw_tag_t *tag, int ok)
{
    raw_call_t *rc = RAW_OF(tag, t_start);
    (void)ok;
    rc->pending--;
    raw_maybe_done(rc);
}

static void raw_on_status(yw_tag_t *tag, int ok)
{
    raw_call_t *rc = RAW_OF(tag, t_status);
    YW_CHECK(ok);
    rc->pending--;
    size_t n = GRPC_SLICE_LENGTH(rc->details);
    snprintf(rc->detail, sizeof rc->detail, "%.*s", (int)(n < 511 ? n : 511),
             (const char *)GRPC_SLICE_START_PTR(rc->details));
    for (size_t i = 0; i < rc->tmd.count; i++) {
        const grpc_metadata *m = &rc->tmd.metadata[i];
        if (grpc_slice_str_cmp(m->key, "x-request-id") == 0) {
            size_t len = GRPC_SLICE_LENGTH(m->value);
            snprintf(rc->trailing_request_id, sizeof rc->trailing_request_id, "%.*s",
                     (int)(len < 159 ? len : 159), (const char *)GRPC_SLICE_START_PTR(m->value));
        }
    }
    raw_maybe_done(rc);
}

void raw_call_start(raw_call_t *rc, yw_runtime_t *rt, int port, const char *method)
{
    rc->t_start.cb = raw_on_start;
    rc->t_send.cb = raw_on_send;
    rc->t_recv.cb = raw_on_recv;
    rc->t_status.cb = raw_on_status;
    grpc_metadata_array_init(&rc->imd);
    grpc_metadata_array_init(&rc->tmd);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    rc->ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    gpr_timespec deadline = rc->timeout_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(rc->timeout_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice path = grpc_slice_from_copied_string(method);
    rc->call = grpc_channel_create_call(rc->ch, NULL, GRPC_PROPAGATE_DEFAULTS, yw_runtime_cq(rt),
                                        path, NULL, deadline, NULL);
    grpc_slice_unref(path);
    YW_CHECK(rc->call != NULL);

    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (rc->request_id != NULL) {
        rc->md.key = grpc_slice_from_static_string("x-request-id");
        rc->md.value = grpc_slice_from_static_string(rc->request_id);
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &rc->md;
    }
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &rc->imd;
    raw_batch(rc, ops, 2, &rc->t_start);

    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &rc->tmd;
    st.data.recv_status_on_client.status = &rc->status;
    st.data.recv_status_on_client.status_details = &rc->details;
    raw_batch(rc, &st, 1, &rc->t_status);
    raw_send_next(rc);
    raw_recv_next(rc);
}

void raw_call_cancel(raw_call_t *rc)
{
    grpc_call_cancel(rc->call, NULL);
}

void raw_call_free(raw_call_t *rc)
{
    for (size_t i = 0; i < rc->n_resps; i++) {
        protobuf_c_message_free_unpacked(rc->resps[i], NULL);
    }
    rc->n_resps = 0;
    grpc_metadata_array_destroy(&rc->imd);
    grpc_metadata_array_destroy(&rc->tmd);
    grpc_slice_unref(rc->details);
    grpc_call_unref(rc->call);
    grpc_channel_destroy(rc->ch);
}
