/*
 * client.c — asynchronous unary calls to peer services, completing on the loop.
 * See client.h. One batch per call (send metadata, message and close; receive
 * metadata, message and status); its tag runs the callback on the loop.
 */
#include "common/client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/call_fake.h"
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

/* A call of an in-process channel: a fake call (call_fake.h) on the channel's server. */
typedef struct st_yw__lcall_t {
    yw_channel_t *ch;
    yw_fake_call_t *fc; /* valid until its on_status returned (detached: freed after) */
    const ProtobufCMessageDescriptor *desc;
    yw_unary_cb_t cb;
    void *arg;
    struct st_yw__lcall_t *prev, *next;
    char rid[YW_REQUEST_ID_MAX + 1]; /* the parent's request id, or "" */
} yw__lcall_t;

struct st_yw_channel_t {
    yw_runtime_t *rt;
    grpc_channel *channel; /* NULL: in process (`local`) */
    yw_server_t *local;    /* an in-process channel's server */
    yw__ccall_t *calls;    /* in flight */
    yw__lcall_t *lcalls;   /* in flight, in process */
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

int yw_channel_create_local(yw_runtime_t *rt, yw_server_t *srv, yw_channel_t **out)
{
    yw_channel_t *ch = calloc(1, sizeof *ch);
    if (ch == NULL) {
        return -ENOMEM;
    }
    ch->rt = rt;
    ch->local = srv;
    *out = ch;
    return 0;
}

static void yw__channel_free(yw_channel_t *ch)
{
    if (ch->channel != NULL) {
        grpc_channel_destroy(ch->channel);
    }
    free(ch);
}

/* Frees a closing channel once nothing is in flight or in a callback. */
static void yw__channel_maybe_free(yw_channel_t *ch)
{
    if (ch->closing && ch->calls == NULL && ch->lcalls == NULL && !ch->in_callback) {
        yw__channel_free(ch);
    }
}

void yw_channel_destroy(yw_channel_t *ch)
{
    ch->closing = 1;
    for (yw__ccall_t *c = ch->calls; c != NULL; c = c->next) {
        grpc_call_cancel(c->call, NULL);
    }
    for (yw__lcall_t *l = ch->lcalls; l != NULL; l = l->next) {
        yw_fake_call_cancel(l->fc);
    }
    yw__channel_maybe_free(ch);
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

/* An OK call's one message `data` (NULL: none came) unpacked; NULL with *code INTERNAL
 * and `detail` saying why when it is missing or not a `desc` message. */
static ProtobufCMessage *yw__reply(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                   size_t len, grpc_status_code *code, char *detail, size_t dlen)
{
    ProtobufCMessage *resp = data != NULL ? protobuf_c_message_unpack(desc, NULL, len, data) : NULL;
    if (resp == NULL) {
        *code = GRPC_STATUS_INTERNAL;
        snprintf(detail, dlen,
                 data != NULL ? "response: not a valid %s message"
                              : "response: the %s message is missing",
                 desc->name);
    }
    return resp;
}

/* Runs a call's callback: lines it logs carry the parent call's request id `rid`; the
 * channel is not freed under it. */
static void yw__tell(yw_channel_t *ch, char *rid, yw_unary_cb_t cb, void *arg,
                     grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    ch->in_callback++;
    yw_log_ctx_t ctx = {yw__ccall_request_id, rid};
    yw_log_ctx_t prev = yw_log_swap_ctx(ctx);
    cb(arg, code, detail, resp);
    (void)yw_log_swap_ctx(prev);
    ch->in_callback--;
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
    grpc_byte_buffer_reader reader;
    if (code != GRPC_STATUS_OK) {
        /* the peer's failure */
    } else if (c->recv_bb != NULL && grpc_byte_buffer_reader_init(&reader, c->recv_bb)) {
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        resp = yw__reply(c->desc, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &code, detail,
                         sizeof detail);
        grpc_slice_unref(all);
    } else {
        resp = yw__reply(c->desc, NULL, 0, &code, detail, sizeof detail);
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
    yw__tell(ch, c->rid, c->cb, c->arg, code, detail, resp);
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
    yw__channel_maybe_free(ch);
}

/* ---- in process ---- */

/* The end of an in-process call: its status and its one message, as a peer's. */
static void yw__on_local_status(yw_fake_call_t *fc, void *arg)
{
    yw__lcall_t *l = arg;
    yw_channel_t *ch = l->ch;
    const char *msg = "";
    int st = yw_fake_call_status(fc, &msg);
    grpc_status_code code = st >= 0 ? (grpc_status_code)st : GRPC_STATUS_UNKNOWN;
    char detail[512];
    snprintf(detail, sizeof detail, "%s", msg);
    ProtobufCMessage *resp = NULL;
    if (code == GRPC_STATUS_OK) {
        size_t len = 0;
        const uint8_t *data = yw_fake_call_sent(fc, 0, &len);
        resp = yw__reply(l->desc, data, len, &code, detail, sizeof detail);
    }
    if (l->prev != NULL) {
        l->prev->next = l->next;
    } else {
        ch->lcalls = l->next;
    }
    if (l->next != NULL) {
        l->next->prev = l->prev;
    }
    yw__tell(ch, l->rid, l->cb, l->arg, code, detail, resp);
    free(l);
    yw__channel_maybe_free(ch);
}

/* yw_client_unary_md() on an in-process channel. */
static int yw__local_unary(yw_channel_t *ch, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                           int64_t timeout_ms, const yw_client_md_t *md, size_t n_md,
                           yw_unary_cb_t cb, void *arg)
{
    yw__lcall_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return -ENOMEM;
    }
    /* The earlier of the parent's deadline and ours; one already past is a millisecond
     * away (the call then ends DEADLINE_EXCEEDED, as gRPC's would). */
    int64_t t = timeout_ms > 0 ? timeout_ms : 0;
    if (parent != NULL) {
        int64_t left = yw_call_remaining_ms(parent);
        if (left != INT64_MAX && (t == 0 || left < t)) {
            t = left > 0 ? left : 1;
        }
        snprintf(l->rid, sizeof l->rid, "%s", yw_call_request_id(parent));
    }
    const char *pairs[2 * YW_CLIENT_MAX_MD + 1];
    for (size_t i = 0; i < n_md; i++) {
        pairs[2 * i] = md[i].key;
        pairs[2 * i + 1] = md[i].value;
    }
    pairs[2 * n_md] = NULL;
    yw_fake_call_config_t cfg = {
        .server = ch->local,
        .method = method,
        .request = req,
        .request_id = l->rid[0] != '\0' ? l->rid : NULL,
        .metadata = pairs,
        .timeout_ms = t,
        .on_status = yw__on_local_status,
        .on_status_arg = l,
    };
    int rc = yw_fake_call_start(ch->rt, &cfg, &l->fc);
    if (rc != 0) {
        free(l);
        return rc;
    }
    yw_fake_call_detach(l->fc);
    l->ch = ch;
    l->desc = resp_desc;
    l->cb = cb;
    l->arg = arg;
    l->next = ch->lcalls;
    if (ch->lcalls != NULL) {
        ch->lcalls->prev = l;
    }
    ch->lcalls = l;
    return 0;
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
    if (ch->local != NULL) {
        return yw__local_unary(ch, method, req, resp_desc, parent, timeout_ms, md, n_md, cb, arg);
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
