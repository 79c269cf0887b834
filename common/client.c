/*
 * client.c — asynchronous unary calls to peer services, completing on the loop.
 * See client.h. One batch per call (send metadata, message and close; receive
 * metadata, message and status); its tag runs the callback on the loop.
 */
#include "common/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/log.h"

typedef struct st_yw__ccall_t {
    yw_tag_t tag; /* first: the runtime hands us this pointer */
    yw_channel_t *ch;
    grpc_call *call;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const ProtobufCMessageDescriptor *desc;
    yw_unary_cb_t cb;
    void *arg;
    struct st_yw__ccall_t *prev, *next;
    grpc_metadata md[1 + YW_CLIENT_MAX_MD]; /* x-request-id (with a parent), then the caller's */
    size_t n_md;
    char rid[YW_REQUEST_ID_MAX + 1]; /* the parent's request id, or "" */
} yw__ccall_t;

struct st_yw_channel_t {
    yw_runtime_t *rt;
    grpc_channel *channel;
    yw__ccall_t *calls; /* in flight */
    int closing;
    int in_callback; /* a completion callback is running: free after it */
};

int yw_channel_create(yw_runtime_t *rt, const char *target, yw_channel_t **out)
{
    yw_channel_t *ch = calloc(1, sizeof *ch);
    if (ch == NULL) {
        return -ENOMEM;
    }
    /* gRPC's default reconnect backoff grows to 120 s: a peer that was down for a while
     * would keep failing calls long after it came back. Bounded here, once, so every
     * service's peer calls succeed again within about a second of the peer's return. */
    grpc_arg args[3];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[0].value.integer = YW_CHANNEL_MIN_BACKOFF_MS;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[1].value.integer = YW_CHANNEL_MIN_BACKOFF_MS;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[2].value.integer = YW_CHANNEL_MAX_BACKOFF_MS;
    grpc_channel_args chargs = {.num_args = 3, .args = args};
    /* TLS when the runtime has peer credentials (--peer-tls-ca), else plaintext. */
    grpc_channel_credentials *tls = yw_runtime_channel_credentials(rt);
    grpc_channel_credentials *creds = tls != NULL ? tls : grpc_insecure_credentials_create();
    ch->channel = grpc_channel_create(target, creds, &chargs);
    if (tls == NULL) {
        grpc_channel_credentials_release(creds);
    }
    if (ch->channel == NULL) {
        free(ch);
        return -EINVAL;
    }
    ch->rt = rt;
    *out = ch;
    return 0;
}

static void yw__channel_free(yw_channel_t *ch)
{
    grpc_channel_destroy(ch->channel);
    free(ch);
}

void yw_channel_destroy(yw_channel_t *ch)
{
    ch->closing = 1;
    if (ch->calls == NULL && !ch->in_callback) {
        yw__channel_free(ch);
        return;
    }
    for (yw__ccall_t *c = ch->calls; c != NULL; c = c->next) {
        grpc_call_cancel(c->call, NULL);
    }
}

static const char *yw__ccall_request_id(void *arg)
{
    const char *rid = arg;
    return rid[0] != '\0' ? rid : NULL;
}

/* The metadata slices the call made (x-request-id's key is static: unref is a no-op). */
static void yw__md_unref(yw__ccall_t *c)
{
    for (size_t i = 0; i < c->n_md; i++) {
        grpc_slice_unref(c->md[i].key);
        grpc_slice_unref(c->md[i].value);
    }
}

static void yw__on_unary_done(yw_tag_t *tag, int ok)
{
    yw__ccall_t *c = (yw__ccall_t *)tag;
    yw_channel_t *ch = c->ch;
    grpc_status_code code = ok ? c->status : GRPC_STATUS_UNAVAILABLE;
    char detail[512];
    size_t dlen = GRPC_SLICE_LENGTH(c->details);
    if (dlen >= sizeof detail) {
        dlen = sizeof detail - 1;
    }
    memcpy(detail, GRPC_SLICE_START_PTR(c->details), dlen);
    detail[dlen] = '\0';
    ProtobufCMessage *resp = NULL;
    if (code == GRPC_STATUS_OK) {
        if (c->recv_bb == NULL) {
            code = GRPC_STATUS_INTERNAL;
            snprintf(detail, sizeof detail, "response: the %s message is missing", c->desc->name);
        } else {
            grpc_byte_buffer_reader reader;
            if (grpc_byte_buffer_reader_init(&reader, c->recv_bb)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
                grpc_byte_buffer_reader_destroy(&reader);
                resp = protobuf_c_message_unpack(c->desc, NULL, GRPC_SLICE_LENGTH(all),
                                                 GRPC_SLICE_START_PTR(all));
                grpc_slice_unref(all);
            }
            if (resp == NULL) {
                code = GRPC_STATUS_INTERNAL;
                snprintf(detail, sizeof detail, "response: not a valid %s message", c->desc->name);
            }
        }
    }
    /* Unlink first: the callback may destroy the channel. */
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        ch->calls = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    ch->in_callback++;
    /* Lines the callback logs carry the parent call's request id. */
    yw_log_ctx_t ctx = {yw__ccall_request_id, c->rid};
    yw_log_ctx_t prev = yw_log_swap_ctx(ctx);
    c->cb(c->arg, code, detail, resp);
    (void)yw_log_swap_ctx(prev);
    ch->in_callback--;
    if (c->send_bb != NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
    }
    if (c->recv_bb != NULL) {
        grpc_byte_buffer_destroy(c->recv_bb);
    }
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    yw__md_unref(c);
    grpc_call_unref(c->call);
    free(c);
    if (ch->closing && ch->calls == NULL && !ch->in_callback) {
        yw__channel_free(ch);
    }
}

int yw_client_unary(yw_channel_t *ch, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                    int64_t timeout_ms, yw_unary_cb_t cb, void *arg)
{
    return yw_client_unary_md(ch, method, req, resp_desc, parent, timeout_ms, NULL, 0, cb, arg);
}

int yw_client_unary_md(yw_channel_t *ch, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                       int64_t timeout_ms, const yw_client_md_t *md, size_t n_md, yw_unary_cb_t cb,
                       void *arg)
{
    if (ch->closing) {
        return -ESHUTDOWN;
    }
    if (n_md > YW_CLIENT_MAX_MD) {
        return -EINVAL;
    }
    yw__ccall_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    size_t len = protobuf_c_message_get_packed_size(req);
    grpc_slice slice = grpc_slice_malloc(len);
    if (protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(slice)) != len) {
        grpc_slice_unref(slice);
        free(c);
        return -EINVAL;
    }
    c->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);

    gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    if (timeout_ms > 0) {
        deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    }
    /* With a parent, gRPC takes the earlier of its deadline and ours. */
    /* The method slice need only live through grpc_channel_create_call(). */
    grpc_slice method_slice = grpc_slice_from_copied_string(method);
    c->call = grpc_channel_create_call(ch->channel, parent ? yw_call_grpc(parent) : NULL,
                                       GRPC_PROPAGATE_DEFAULTS, yw_runtime_cq(ch->rt), method_slice,
                                       NULL, deadline, NULL);
    grpc_slice_unref(method_slice);
    if (c->call == NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
        free(c);
        return -EINVAL;
    }
    c->tag.cb = yw__on_unary_done;
    c->ch = ch;
    c->desc = resp_desc;
    c->cb = cb;
    c->arg = arg;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (parent != NULL) {
        /* The parent's request id goes on, so that the peer logs the same id. */
        const char *rid = yw_call_request_id(parent);
        size_t len = strlen(rid);
        memcpy(c->rid, rid, len + 1);
        c->md[0].key = grpc_slice_from_static_string("x-request-id");
        c->md[0].value = grpc_slice_from_copied_buffer(rid, len);
        c->n_md = 1;
    }
    for (size_t i = 0; i < n_md; i++) {
        c->md[c->n_md].key = grpc_slice_from_copied_string(md[i].key);
        c->md[c->n_md].value = grpc_slice_from_copied_string(md[i].value);
        c->n_md++;
    }
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    if (grpc_call_start_batch(c->call, ops, 6, &c->tag, NULL) != GRPC_CALL_OK) {
        yw__md_unref(c);
        grpc_call_unref(c->call);
        grpc_byte_buffer_destroy(c->send_bb);
        grpc_metadata_array_destroy(&c->initial_md);
        grpc_metadata_array_destroy(&c->trailing_md);
        free(c);
        return -EIO;
    }
    c->next = ch->calls;
    if (ch->calls != NULL) {
        ch->calls->prev = c;
    }
    ch->calls = c;
    return 0;
}
