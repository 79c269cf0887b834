/*
 * test_server_raw.h — a client call on gRPC C core for the server tests, of any kind
 * (client.h makes unary calls only): it sends its messages in order, half-closes, reads
 * every response and the status, all on the runtime's loop thread (the tags go through
 * yw_runtime_cq()). Used by test_server.c and test_health.c.
 */
#ifndef TEST_SERVER_RAW_H
#define TEST_SERVER_RAW_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "common/runtime.h"

/** Responses kept per call; more fail the test. */
#define RAW_MAX_RESPONSES 16

typedef struct st_raw_call_t raw_call_t;

/** Called on the loop for each response (`msg` is kept in `resps`) and once at the end. */
typedef void (*raw_message_cb)(raw_call_t *rc, const ProtobufCMessage *msg);
typedef void (*raw_done_cb)(raw_call_t *rc);

struct st_raw_call_t {
    /* what the test sets before raw_call_start() */
    const ProtobufCMessage *const *sends; /* sent in order, then the half-close */
    size_t n_sends;
    const ProtobufCMessageDescriptor *resp_desc;
    int64_t timeout_ms;        /* 0: no deadline */
    const char *request_id;    /* NULL: no x-request-id metadata */
    raw_message_cb on_message; /* may be NULL */
    raw_done_cb on_done;       /* may be NULL */
    void *arg;
    /* what the call got */
    ProtobufCMessage *resps[RAW_MAX_RESPONSES]; /* unpacked; freed by raw_call_free() */
    size_t n_resps;
    grpc_status_code status;
    char detail[512];
    char trailing_request_id[160]; /* x-request-id of the trailing metadata, or "" */
    int done;
    /* internal */
    grpc_channel *ch;
    grpc_call *call;
    yw_tag_t t_start, t_send, t_recv, t_status;
    size_t sent;
    int pending;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata md;
    grpc_metadata_array imd, tmd;
    grpc_slice details;
};

/**
 * Starts `method` ("/pkg.Service/Method") on a new plaintext channel to 127.0.0.1:`port`.
 * The test checks what the call got once on_done ran (or the loop stopped).
 */
void raw_call_start(raw_call_t *rc, yw_runtime_t *rt, int port, const char *method);

/** Cancels the call from the client's side (the status then says CANCELLED). */
void raw_call_cancel(raw_call_t *rc);

/** Frees the responses, the call and its channel; after on_done. */
void raw_call_free(raw_call_t *rc);

#endif
