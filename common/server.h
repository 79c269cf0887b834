/*
 * server.h — the gRPC server runtime shared by every yaowei service.
 *
 * A service declares a table of methods (full path, kind, request and response
 * protobuf-c descriptors, handler callbacks). The runtime does the rest on the loop
 * thread: requests calls from gRPC C core, parses each request with protobuf-c
 * (INVALID_ARGUMENT when it does not parse, or when a string field is not UTF-8: see
 * yw_method_t.items), hands it to the handler, packs the response (its strings
 * repaired if they are not UTF-8, which only data stored before that check can cause),
 * sends status and message (UTF-8 too), tracks deadlines and cancellation
 * (GRPC_OP_RECV_CLOSE_ON_SERVER), answers unknown methods with UNIMPLEMENTED, enforces
 * the maximum message size (RESOURCE_EXHAUSTED), authenticates callers and checks
 * their permission per method when given an auth config (auth.h: UNAUTHENTICATED,
 * PERMISSION_DENIED, from the call's headers, before any of its request message is
 * read), bounds what gRPC buffers (grpc_memory_bytes), serves TLS or mutual TLS when given
 * credentials (tls.h), logs one JSON line per call, counts
 * every call in the metrics registry it is given (grpc_server_* families, see
 * metrics.h), and shuts down gracefully. The server knows no service of its own:
 * health (health.h) and reflection (reflection.h) are services like any other, which
 * the app (app.h) adds to every server it runs.
 *
 * Declaring methods, stated once: every service writes its table with YW_METHOD()
 * (below). Failing a call, stated once: yw_call_fail() with a message that is already
 * written (a validator's), yw_call_finish() when the message is composed on the spot
 * from a format; never yw_call_finish(call, code, "%s", msg).
 *
 * Request ids: each call has one, the `x-request-id` request metadata when the client
 * sent one (at most YW_REQUEST_ID_MAX bytes are kept), else 16 random hex digits. It is
 * in the call's log line and in every yw_log() line written from its handler callbacks,
 * goes back to the client as `x-request-id` trailing metadata when the call fails (OK
 * calls, the hot path, carry nothing extra), and goes on to the peers the handler calls
 * with this call as `parent` (client.h).
 *
 * Call lifetime, stated once: a yw_call_t stays valid until the handler has finished it
 * (yw_call_reply() or yw_call_finish()) and every gRPC operation on it has completed.
 * A handler that goes asynchronous keeps the pointer and finishes the call later, even
 * when the call was cancelled meanwhile (finishing a cancelled call is harmless).
 * `on_done` runs once, right before the call is freed.
 *
 * Client streams are read one message at a time, and a handler may pause and resume
 * reading (yw_call_pause_reads()): HTTP/2 flow control then makes the client wait.
 */
#ifndef YW_SERVER_H
#define YW_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    YW_METHOD_UNARY,
    YW_METHOD_SERVER_STREAMING,
    YW_METHOD_CLIENT_STREAMING,
    YW_METHOD_BIDI_STREAMING,
} yw_method_kind_t;

typedef struct st_yw_call_t yw_call_t;
typedef struct st_yw_server_t yw_server_t;

/** One method of a service. Tables of these are static const data. */
typedef struct st_yw_method_t {
    /** Full path, "/package.Service/Method". */
    const char *path;
    yw_method_kind_t kind;
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    /**
     * Called on the loop for each request message. Unary and server-streaming methods
     * get exactly one; the message stays valid until the call is freed. Client- and
     * bidi-streaming methods get each message in order; it is valid only during the
     * callback. The next message is read when the callback returns, unless the handler
     * paused reads (yw_call_pause_reads()).
     */
    void (*on_message)(yw_call_t *call, const ProtobufCMessage *msg);
    /**
     * Client- and bidi-streaming methods: called exactly once, when the client
     * half-closes or the call ends early (yw_call_is_cancelled() tells which). The
     * handler must then finish the call. Server-streaming methods may set it too: it is
     * then called once if the call is cancelled before the handler finished it. NULL
     * for unary methods.
     */
    void (*on_end)(yw_call_t *call);
    /** Optional: the call is about to be freed; release per-call data. */
    void (*on_done)(yw_call_t *call);
    /**
     * Every string field of every request must be UTF-8: the runtime checks each one
     * before the handler sees the request (INVALID_ARGUMENT naming the field, e.g.
     * "creator_ids[3]: must be valid UTF-8"). A batch method whose events are judged
     * one by one, a bad event reported in the reply while the valid ones beside it are
     * kept, names here where its events are: the request's repeated message field, or
     * "" for a client stream whose every message is one event. The runtime then checks
     * the rest of the request only, and the handler checks each event with
     * yw_utf8_check_message() (utf8.h) among its own rules. NULL: no such events.
     */
    const char *items;
} yw_method_t;

/**
 * One entry of a method table: the one way a service declares a method, for every kind.
 * `method_kind` is UNARY, SERVER_STREAMING, CLIENT_STREAMING or BIDI_STREAMING (yw_method_kind_t
 * without its prefix); `service` the service's full name and `name` the method's, both
 * string literals (the path is "/service/name"); `req` and `resp` the protobuf-c names of
 * the request and response messages (their descriptors are `req##__descriptor` and
 * `resp##__descriptor`). The handler callbacks and `items` follow as designated
 * initializers of yw_method_t, `.on_message` always:
 *
 *     YW_METHOD(UNARY, "yaowei.creator.v1.CreatorProfileService", "GetCreator",
 *               yaowei__creator__v1__get_creator_request, yaowei__creator__v1__creator,
 *               .on_message = get_creator),
 *     YW_METHOD(CLIENT_STREAMING, ATTR_SERVICE_NAME, "IngestExposures",
 *               yaowei__attribution__v1__exposure_event,
 *               yaowei__attribution__v1__ingest_summary, .on_message = on_exposure,
 *               .on_end = on_exposures_end, .items = ""),
 */
#define YW_METHOD(method_kind, service, name, req, resp, ...)                                      \
    {                                                                                              \
        .path = "/" service "/" name, .kind = YW_METHOD_##method_kind,                             \
        .request = &req##__descriptor, .response = &resp##__descriptor, __VA_ARGS__                \
    }

/** A service: its full name (as health and reflection know it) and its methods. */
typedef struct st_yw_service_t {
    const char *name;
    const yw_method_t *methods;
    size_t n_methods;
    /** Handed back to handlers by yw_call_service_ctx(). */
    void *ctx;
    /**
     * Non-zero: every caller may call the service's methods, also when the server has an
     * auth config (yw_server_config_t.auth). Health sets it: load balancers and
     * orchestrators probe it without credentials.
     */
    int no_auth;
    /**
     * Optional: called on the loop for every call of the service once it is authorized,
     * before its first message reaches a handler. Returns 0 to go on; otherwise it has
     * finished the call itself (yw_call_fail()) and the handlers never see it. For
     * what refuses a whole service for a while (attribution's cluster mode, say).
     */
    int (*admit)(yw_call_t *call);
    /**
     * Optional: called on the loop once a call `admit` let through is over (after its
     * method's on_done), so that what admit counted can be counted down. The call's
     * metadata is still readable.
     */
    void (*released)(yw_call_t *call);
} yw_service_t;

typedef struct st_yw_server_config_t {
    /** "HOST:PORT"; port 0 picks a free one (yw_server_port() tells which). */
    const char *listen;
    /** Largest request message accepted; 0 means 4 MiB. */
    int max_receive_bytes;
    /** Largest response message sent; 0 means 16 MiB. */
    int max_send_bytes;
    /** Time calls in flight get to finish at shutdown before they are cancelled; 0 = 5 s. */
    int grace_ms;
    /** Calls kept requested per method; 0 means 32. */
    int calls_per_method;
    /** Non-zero: SO_REUSEPORT, so that several processes can serve one port. */
    int reuse_port;
    /**
     * Registry the server counts its calls in (grpc_server_started_total,
     * grpc_server_handled_total, grpc_server_handling_seconds,
     * grpc_server_calls_in_flight); NULL counts nothing. Must outlive the server.
     */
    yw_metrics_t *metrics;
    /**
     * How the port is served: TLS or mutual TLS credentials (tls.h), borrowed until
     * yw_server_start() returns. NULL: plaintext.
     */
    grpc_server_credentials *credentials;
    /**
     * Most concurrent streams (calls) one client connection may have open
     * (GRPC_ARG_MAX_CONCURRENT_STREAMS, announced in HTTP/2 SETTINGS: clients queue
     * further calls until one ends, so one connection cannot take every call slot).
     * 0: gRPC's default (no limit).
     */
    int max_streams_per_connection;
    /**
     * Caller authentication and per-method permissions (auth.h), checked before a
     * request reaches its handler; services marked no_auth (health) stay open.
     * Borrowed: must outlive the server. NULL: every caller may call every method.
     */
    const struct st_yw_auth_t *auth;
    /**
     * Memory budget of gRPC's transport (a resource quota, GRPC_ARG_RESOURCE_QUOTA):
     * what every connection together may hold in read buffers and partly received
     * messages. gRPC C core 1.51 checks max_receive_bytes only once a message has been
     * received whole, so without a budget one large request is buffered whole first;
     * with it, gRPC resets the stream that takes the transport over budget
     * (RESOURCE_EXHAUSTED, "Buffers full"). 0 means YW_SERVER_GRPC_MEMORY_DEFAULT.
     */
    size_t grpc_memory_bytes;
    /**
     * HTTP/2 receive window of each stream, in bytes (GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
     * with gRPC's bandwidth-delay probe off): what gRPC reads of a stream ahead of the
     * handler, so what a paused stream (yw_call_pause_reads()) holds at most. A message
     * being received still gets a window of its whole length. 0: gRPC's probe sizes the
     * windows (several MB each on a fast link, each stream's counted against
     * grpc_memory_bytes, so a few paused streams can take it over and be reset).
     */
    int stream_window_bytes;
} yw_server_config_t;

/** Default of yw_server_config_t.grpc_memory_bytes: 128 MiB. */
/* (stream_window_bytes has no default here: the app's --stream-window-kb gives it.) */
#define YW_SERVER_GRPC_MEMORY_DEFAULT ((size_t)128 << 20)

/**
 * Creates a server on `rt`, with no service yet (yw_server_add_service()). Returns 0 or
 * a negative errno, with a message in `err`.
 */
int yw_server_create(yw_runtime_t *rt, const yw_server_config_t *cfg, yw_server_t **out, char *err,
                     size_t errlen);

/**
 * Adds a service before yw_server_start(). The service and its table must outlive the
 * server. Returns 0, or -EINVAL once started or when the server holds 16 services.
 */
int yw_server_add_service(yw_server_t *srv, const yw_service_t *svc);

/**
 * Binds and starts serving every service added. Returns 0, or a negative errno with a
 * message in `err` (-EADDRINUSE when the port is taken: SO_REUSEPORT is off unless the
 * config says otherwise).
 */
int yw_server_start(yw_server_t *srv, char *err, size_t errlen);

/** The bound port, after yw_server_start(). */
int yw_server_port(const yw_server_t *srv);

/**
 * Begins graceful shutdown: new calls are refused, calls in flight get grace_ms, then
 * are cancelled. `done` runs on the loop once every call is gone; the server may then
 * be destroyed. Safe to call more than once (only the first call's `done` runs). Whoever
 * runs health (app.c) sets it NOT_SERVING first, so that long Watch calls end at once.
 */
void yw_server_shutdown(yw_server_t *srv, void (*done)(void *arg), void *arg);

/** Frees the server. Only after the shutdown callback ran (or if never started). */
void yw_server_destroy(yw_server_t *srv);

/** The runtime the server runs on. */
yw_runtime_t *yw_server_runtime(yw_server_t *srv);

/**
 * The names of the services added, in the order they were added, for reflection: at most
 * `max` go into `names`; returns how many there are.
 */
size_t yw_server_service_names(const yw_server_t *srv, const char **names, size_t max);

/* ---- calls, for handlers ---- */

/** The `ctx` of the service this call belongs to. */
void *yw_call_service_ctx(const yw_call_t *call);

/** The method being called. */
const yw_method_t *yw_call_method(const yw_call_t *call);

/** The server the call arrived on. */
yw_server_t *yw_call_server(const yw_call_t *call);

/**
 * The name of the caller (auth.h) the call was authenticated as, or NULL when the
 * server has no --auth-config (or the method is open, as health is).
 */
const char *yw_call_caller(const yw_call_t *call);

/** Per-call data for the handler; freed by the handler, e.g. in on_done. */
void yw_call_set_data(yw_call_t *call, void *data);
void *yw_call_data(const yw_call_t *call);

/** The raw gRPC call, e.g. as the parent of an outgoing call. */
grpc_call *yw_call_grpc(const yw_call_t *call);

/** The call's deadline (GPR_CLOCK_MONOTONIC), infinite when the client set none. */
gpr_timespec yw_call_deadline(const yw_call_t *call);

/** Milliseconds until the deadline, INT64_MAX when there is none, <= 0 when past. */
int64_t yw_call_remaining_ms(const yw_call_t *call);

/** Non-zero once the client cancelled, the deadline passed, or the server shuts down. */
int yw_call_is_cancelled(const yw_call_t *call);

/**
 * The value of request metadata `key` (lower case), or NULL. `*len` gets its length.
 * Valid while the call is.
 */
const char *yw_call_metadata(const yw_call_t *call, const char *key, size_t *len);

/** Longest request id kept from `x-request-id` metadata (longer ones are cut). */
#define YW_REQUEST_ID_MAX 128

/**
 * The call's request id: its `x-request-id` metadata, or one generated for it (16 hex
 * digits). NUL-terminated, never empty; valid while the call is. Made on first use and
 * kept in the call (loop thread only, as every call function).
 */
const char *yw_call_request_id(const yw_call_t *call);

/**
 * Writes a log line (log.h) for this call: its method and request id, then the
 * printf-style message. For callbacks the runtime does not tie to the call (a store
 * job's `done`, a timer); inside handler callbacks yw_log() adds the request id itself.
 */
void yw_call_log(const yw_call_t *call, yw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Unary and client-streaming: sends `resp` and status OK, and finishes the call.
 * Returns 0, or a negative errno when the call was already finished or the message
 * could not be packed (the call is then finished with INTERNAL).
 */
int yw_call_reply(yw_call_t *call, const ProtobufCMessage *resp);

/**
 * Server- and bidi-streaming: queues one response message. Messages go out in order,
 * one at a time. Returns 0, or -ECANCELED once the call has ended.
 */
int yw_call_send(yw_call_t *call, const ProtobufCMessage *msg);

/**
 * Finishes the call with `code` and a printf-style message composed here (after the
 * queued messages), e.g. yw_call_finish(call, GRPC_STATUS_NOT_FOUND, "creator %s: not
 * found", id). The message should name the field and the rule broken. For a message
 * written already, use yw_call_fail(), never a "%s" format. A second finish is ignored
 * and returns -EALREADY.
 */
int yw_call_finish(yw_call_t *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Fails the call with `code` and `msg` as it is (no formatting; NULL is ""): the way to
 * fail a call with a message written already, e.g. by a validator into its `err`
 * buffer. Returns what yw_call_finish() returns.
 */
int yw_call_fail(yw_call_t *call, grpc_status_code code, const char *msg);

/**
 * Client- and bidi-streaming: flow control. After yw_call_pause_reads() the runtime
 * posts no further receive on the call (a message whose receive is already in flight,
 * when called outside on_message, is still delivered), so gRPC reads nothing more of
 * the stream: its HTTP/2 window fills and the client's sends wait, instead of the
 * messages piling up in the server's memory. yw_call_resume_reads() posts the next
 * receive: on_message runs again for the next message, or on_end once the client has
 * half-closed. Meant for handlers whose work falls behind the stream (e.g. events read
 * but not yet accepted past a bound): pause from on_message, resume from the callback
 * that sees the work drain.
 *
 * Lifetime, stated once: a paused call still ends. A cancel by the client, a passing
 * deadline or the server's shutdown (after grace_ms) runs on_end as usual (with
 * yw_call_is_cancelled() true) while the call is paused; the handler then finishes it
 * as always, and the call is freed when nothing holds it. Pausing never keeps a call
 * alive by itself, and a stream the handler never resumes ends at its deadline or at
 * shutdown. Resuming is safe at any time while the call pointer is valid (server.h's
 * call lifetime above): after on_end, after a cancel, or after the handler finished the
 * call, it does nothing and returns -ECANCELED. Neither function calls a handler
 * callback before returning (from inside on_message, resume just lets the runtime post
 * the next receive when on_message returns). Pausing twice or resuming a call that is
 * not paused is harmless.
 *
 * Both return 0, -EINVAL for unary and server-streaming methods, or -ECANCELED when the
 * stream has ended (on_end ran or will run without further messages) or the call was
 * finished. Loop thread only, as every call function.
 */
int yw_call_pause_reads(yw_call_t *call);
int yw_call_resume_reads(yw_call_t *call);

/** Non-zero while reads are paused (yw_call_pause_reads() and no resume since). */
int yw_call_reads_paused(const yw_call_t *call);

/**
 * For handlers about to start work (store jobs, peer calls): returns 0 while somebody
 * still waits for the answer; otherwise finishes the call (DEADLINE_EXCEEDED when the
 * deadline passed, else CANCELLED) and returns 1, so that no work is started for a
 * caller that has gone.
 */
int yw_call_abandoned(yw_call_t *call);

/** The status text name, e.g. "INVALID_ARGUMENT". */
const char *yw_status_name(grpc_status_code code);

#ifdef __cplusplus
}
#endif
#endif
