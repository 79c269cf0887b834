/*
 * call_fake.h — the server runtime's test seam: a call of one method, run through the
 * real call path of call.c (the request unpacked and its strings checked, the handler
 * callbacks, yw_call_reply() / send / finish / fail, flow control, cancellation, the
 * call's log line, on_done, freeing) with no gRPC server, connection or network. Where
 * call.c hands a batch to gRPC C core, a fake call's transport takes it instead: it keeps
 * what the handler sent and completes the batch later on the loop, as gRPC would. Calls
 * gRPC delivers never look at the fake (one pointer test where call.c would call gRPC).
 *
 * A test makes a call of a method of a service, by name, with a request, request
 * metadata (x-request-id, others), a caller, a deadline and the service ctx its
 * handlers get (for the services, the yw_app_t of yw_app_open()); runs
 * the runtime's loop until the call is over; and reads what a client would have got:
 * the messages sent (packed, or unpacked with the method's response descriptor), the
 * status code and message, and the request id a failure carries. A client stream is fed
 * one message at a time, then half-closed; a server stream's messages are kept as they
 * are sent; the client may cancel, and a deadline passes as gRPC's does (the call is
 * cancelled under the handler, the client sees DEADLINE_EXCEEDED).
 *
 *     yw_fake_call_config_t cfg = {
 *         .service = &creator_service,
 *         .method = "GetCreator",
 *         .service_ctx = app,
 *         .request = &req.base,
 *     };
 *     yw_fake_call_t *fc;
 *     YW_CHECK_INT(yw_fake_call_start(yw_app_runtime(app), &cfg, &fc), ==, 0);
 *     YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
 *     const char *msg;
 *     YW_CHECK_INT(yw_fake_call_status(fc, &msg), ==, GRPC_STATUS_NOT_FOUND);
 *     yw_fake_call_destroy(fc);
 *
 * What differs from a served call: the caller is not authorized (yw_call_caller() is the
 * one configured), yw_call_grpc() is NULL (a peer call made with the fake call as its
 * parent carries its request id, not its deadline), the call is counted in no metrics,
 * and yw_call_server() is a server of the fake's own that never starts.
 *
 * In process: the same transport serves the calls of an in-process channel (client.h,
 * yw_channel_create_local()), a service calling a service of its own server without a
 * connection: the config names the server, a callback tells the end of the call, and
 * yw_fake_call_detach() frees it without running the loop.
 *
 * Ownership: the fake call owns everything it returns (messages, status text) until
 * yw_fake_call_destroy(). The yw_call_t the handler sees is the runtime's, freed by it
 * when the call is over, as always. Loop thread only, as everything of server.h: the
 * thread that calls these functions runs the loop inside the run functions.
 */
#ifndef YW_CALL_FAKE_H
#define YW_CALL_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "common/runtime.h"
#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_fake_call_t yw_fake_call_t;

/** How long a run function runs the loop at most before it gives up (-ETIMEDOUT). */
#define YW_FAKE_CALL_RUN_MS 20000

/** What a fake call is made of. Copied by yw_fake_call_start(); strings are copied too. */
typedef struct st_yw_fake_call_config_t {
    /** The service called; the call sees it as served, its `ctx` replaced. */
    const yw_service_t *service;
    /** The name of the method called, e.g. "GetCreator". */
    const char *method;
    /** What yw_call_service_ctx() returns: the yw_app_t for a service on the app. */
    void *service_ctx;
    /**
     * Unary and server streaming: the request, packed here as a client sends it. NULL:
     * the `request_len` bytes at `request_bytes` (e.g. not a valid message); both NULL:
     * no message at all.
     */
    const ProtobufCMessage *request;
    const uint8_t *request_bytes;
    size_t request_len;
    /** The `x-request-id` request metadata; NULL: none (the runtime makes an id up). */
    const char *request_id;
    /** Further request metadata: key, value, key, value..., then NULL (lower-case keys). */
    const char *const *metadata;
    /** What yw_call_caller() returns, as if auth.h had authenticated it; NULL: none. */
    const char *caller;
    /** Milliseconds from the start to the call's deadline; 0: no deadline. */
    int64_t timeout_ms;
    /**
     * In process (client.h, yw_channel_create_local()): serve the call on this started
     * server, as one of its own calls (its services' ctx, its per-method metrics, its
     * count of calls in flight, which its stop waits for), without the auth check (the
     * call comes from the process itself). `method` is then the full path
     * ("/pkg.Service/Method") and `service` and `service_ctx` are not used. NULL: the
     * fake's own server, never started.
     */
    yw_server_t *server;
    /**
     * Called once on the loop, from a callback of its own, when the client has its
     * status (yw_fake_call_status(): the handler's, with the messages sent before it; or
     * CANCELLED / DEADLINE_EXCEEDED, the handler maybe still running, as a gRPC client
     * hears of its deadline without waiting for the server). NULL: none.
     */
    void (*on_status)(yw_fake_call_t *fc, void *arg);
    void *on_status_arg;
} yw_fake_call_config_t;

/**
 * Makes a fake call on `rt` as `cfg` says. It arrives (its handler runs) once the loop
 * runs, as a call from gRPC does. Returns 0, -ENOENT when the service has no method of
 * that name, -EINVAL when the config lacks the service or the method or its request
 * cannot be packed, or -ENOMEM; on error *out is untouched.
 */
int yw_fake_call_start(yw_runtime_t *rt, const yw_fake_call_config_t *cfg, yw_fake_call_t **out);

/**
 * Client and bidi streaming: the client sends `msg` (packed now). The runtime reads it
 * when the call reads (at once, unless the handler paused reads). Returns 0, -EINVAL for
 * a unary or server-streaming method or a message that cannot be packed, -EPIPE after
 * yw_fake_call_close_send(), -ECANCELED once the call was cancelled or is over.
 */
int yw_fake_call_send(yw_fake_call_t *fc, const ProtobufCMessage *msg);

/**
 * Client and bidi streaming: the client half-closes; once the messages sent before are
 * read, the handler's on_end runs. Returns 0, -EINVAL for a unary or server-streaming
 * method, -EPIPE when already half-closed, -ECANCELED once cancelled or over.
 */
int yw_fake_call_close_send(yw_fake_call_t *fc);

/**
 * The client cancels the call, as grpc_call_cancel() does: the handler sees it cancelled
 * (yw_call_is_cancelled(); on_end of streams), what it sends goes nowhere, and the
 * status the client sees is CANCELLED unless a status went out before. Harmless once
 * the call is over.
 */
void yw_fake_call_cancel(yw_fake_call_t *fc);

/**
 * Runs the loop until the call is over: its status went out (or it was cancelled) and
 * the runtime freed it, after on_done. Returns 0, or -ETIMEDOUT after
 * YW_FAKE_CALL_RUN_MS (the handler never finished the call).
 */
int yw_fake_call_run(yw_fake_call_t *fc);

/**
 * Runs the loop until `until(fc, arg)` returns non-zero or the call is over; `until` is
 * asked after each step of the call and every few milliseconds. Returns 0 when `until`
 * said so, -ECANCELED when the call is over and `until` still says no, -ETIMEDOUT after
 * YW_FAKE_CALL_RUN_MS.
 */
int yw_fake_call_run_until(yw_fake_call_t *fc, int (*until)(yw_fake_call_t *fc, void *arg),
                           void *arg);

/** Non-zero once the call is over (see yw_fake_call_run()). */
int yw_fake_call_over(const yw_fake_call_t *fc);

/** How many of the messages sent by the client (yw_fake_call_send()) the runtime read. */
size_t yw_fake_call_n_read(const yw_fake_call_t *fc);

/** How many messages reached the client (yw_call_reply(), yw_call_send()). */
size_t yw_fake_call_n_sent(const yw_fake_call_t *fc);

/** Message `i` that reached the client, packed, with its length in *len; NULL past the end. */
const uint8_t *yw_fake_call_sent(const yw_fake_call_t *fc, size_t i, size_t *len);

/**
 * Message `i` that reached the client, unpacked with the method's response descriptor;
 * NULL past the end or when it does not unpack. Owned by the fake call.
 */
const ProtobufCMessage *yw_fake_call_response(yw_fake_call_t *fc, size_t i);

/**
 * The status the client got: the one the handler finished the call with, or CANCELLED
 * or DEADLINE_EXCEEDED when the call was cancelled or its deadline passed before; -1
 * while there is none yet. *msg (when not NULL) gets its message ("" when none), owned
 * by the fake call.
 */
int yw_fake_call_status(const yw_fake_call_t *fc, const char **msg);

/** The `x-request-id` trailing metadata of the status (a failure's), or NULL. */
const char *yw_fake_call_trailing_request_id(const yw_fake_call_t *fc);

/**
 * Frees the fake call and what it kept. A call not over yet is cancelled first and the
 * loop runs until the runtime freed it (it is leaked, with a log line, if its handler
 * never finishes it).
 */
void yw_fake_call_destroy(yw_fake_call_t *fc);

/**
 * Frees the fake call once it is over (the runtime freed the call) and its on_status
 * ran, without running the loop (the loop that runs anyway does): for a call made from a
 * callback on the loop (client.h's in-process channel). `fc` must not be used after
 * this, but inside on_status (which still runs).
 */
void yw_fake_call_detach(yw_fake_call_t *fc);

#ifdef __cplusplus
}
#endif
#endif
