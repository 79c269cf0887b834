/*
 * server.c — the gRPC server runtime: method tables on gRPC C core, on the loop thread.
 * See server.h for the contract and DESIGN.md for the runtime model.
 *
 * Every method of every service is registered with gRPC C core and keeps
 * `calls_per_method` calls requested; a new call is requested after each arrival.
 * Unary and server-streaming requests arrive with the call
 * (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER), except on methods that need a caller
 * (--auth-config): those arrive with their headers alone, are authorized from them, and
 * only then is their one message read (RECV_MESSAGE), so that an unauthenticated caller
 * never gets its body read into memory. Streaming requests are read one RECV_MESSAGE at
 * a time. What gRPC may buffer in all is bounded by a resource quota
 * (grpc_memory_bytes). Calls to unregistered methods arrive through generic
 * requested calls and are answered UNIMPLEMENTED at once.
 *
 * Each call has at most one operation of each kind in flight (close, receive, send);
 * `pending` counts them, and the call is freed only when none is left and its status
 * went out (or the call died). RECV_CLOSE_ON_SERVER is started first on every call: it
 * always completes, and its `cancelled` flag is how cancellation and deadlines are
 * seen.
 *
 * Flow control of client streams: the next RECV_MESSAGE is posted when the previous
 * message's on_message returns, unless the handler paused reads
 * (yw_call_pause_reads()); then it is posted by yw_call_resume_reads(). Until then
 * gRPC reads nothing more of the stream, its HTTP/2 window closes, and the client's
 * sends wait. A paused stream still ends: RECV_CLOSE_ON_SERVER completes on a cancel,
 * a deadline or the shutdown's grace, and on_end runs then (nothing is being received).
 */
#include "common/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/auth.h"
#include "common/health.h"
#include "common/log.h"
#include "common/reflection.h"
#include "common/utf8.h"

#define YW__GENERIC_CALLS 4
#define YW__MAX_SERVICES 16
#define YW__REAP_MS 1000

#define YW__N_CODES 17

/* The metric handles of one method (or of every unknown method); NULL when off. */
typedef struct st_yw__method_metrics_t {
    char *labels; /* grpc_method=...,grpc_service=...,grpc_type=... */
    yw_metric_t *started;
    yw_metric_t *latency;
    yw_metric_t *handled[YW__N_CODES]; /* registered on a code's first call */
} yw__method_metrics_t;

typedef struct st_yw__reg_t {
    yw_server_t *srv;
    const yw_service_t *svc;
    const yw_method_t *method;
    void *handle;
    yw__method_metrics_t *mm;
    uint64_t auth_roles; /* roles that may call it (auth.h) */
    int auth_open;       /* no check: no auth config, or health */
    int read_later;      /* unary or server streaming, message read after authorization */
} yw__reg_t;

typedef struct st_yw__outmsg_t {
    struct st_yw__outmsg_t *next;
    grpc_byte_buffer *bb;
} yw__outmsg_t;

struct st_yw_call_t {
    yw_server_t *srv;
    const yw__reg_t *reg; /* NULL: a call to an unknown method */
    grpc_call *call;
    yw_tag_t tag_new, tag_close, tag_recv, tag_send, tag_reap;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* unknown methods only */
    grpc_byte_buffer *payload;
    ProtobufCMessage *request; /* unary and server streaming */
    int close_cancelled;       /* RECV_CLOSE_ON_SERVER said cancelled */
    int closed;                /* RECV_CLOSE_ON_SERVER completed */
    int close_started;         /* RECV_CLOSE_ON_SERVER was started */
    int close_in_send;         /* ... as part of the send batch in flight */
    int dead;                  /* a batch failed: nothing more goes out */
    int pending;
    int finished;     /* the handler finished it (status queued) */
    int status_sent;  /* status went out, or never will (dead) */
    int md_sent;      /* initial metadata went out */
    int sending;      /* a send batch is in flight */
    int ended;        /* on_end was called */
    int receiving;    /* a RECV_MESSAGE is in flight */
    int paused;       /* yw_call_pause_reads(): no RECV_MESSAGE until resumed */
    int delivering;   /* on_message of a streamed message is running (yw__on_recv) */
    int reap_queued;  /* a deferred yw__call_maybe_free() is queued (holds `pending`) */
    yw__outmsg_t *out_head, *out_tail;
    grpc_byte_buffer *send_bb; /* the message of the send in flight */
    grpc_status_code code;
    char *status_msg;
    grpc_slice status_slice;
    void *data;
    uint64_t start_ns;
    struct st_yw_call_t *prev, *next; /* live calls, for shutdown accounting */
    grpc_metadata rid_md;             /* x-request-id in the trailing metadata of a failure */
    int rid_md_set;                   /* rid_md.value holds a slice */
    size_t rid_len;                   /* 0 until yw_call_request_id() first ran */
    const char *caller;               /* auth.h caller name, or NULL */
    char rid[YW_REQUEST_ID_MAX + 1];
};

struct st_yw_server_t {
    yw_runtime_t *rt;
    grpc_server *server;
    yw_server_config_t cfg;
    char *listen;
    int port;
    int started;
    int shutting_down;
    int shutdown_notified;
    int grace_fired;
    yw_tag_t tag_shutdown;
    void (*shutdown_cb)(void *arg);
    void *shutdown_arg;
    const yw_service_t *services[YW__MAX_SERVICES];
    size_t n_services;
    yw__reg_t *regs;
    size_t n_regs;
    size_t live_calls; /* accepted and not yet freed */
    size_t requested;  /* requested from gRPC and not yet arrived */
    yw_health_t *health;
    yw_reflection_t *reflection;
    uv_timer_t grace_timer;
    uv_timer_t reap_timer;
    int handles_open;
    int destroy_pending;
    yw__method_metrics_t *mm; /* n_regs + 1: the last counts unknown methods */
    yw_metric_t *in_flight;
    grpc_resource_quota *quota; /* gRPC's memory budget (grpc_memory_bytes) */
};

/* ---- status names ---- */

const char *yw_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK",           "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",       "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((int)code >= 0 && (size_t)code < sizeof names / sizeof names[0]) {
        return names[code];
    }
    return "UNKNOWN";
}

/* ---- helpers ---- */

#define YW__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static uint64_t yw__now_ns(void)
{
    return uv_hrtime();
}

static void yw__request_call(yw_server_t *srv, const yw__reg_t *reg);
static void yw__call_pump(yw_call_t *c);
static void yw__call_maybe_free(yw_call_t *c);
static void yw__call_free_later(yw_call_t *c);
static void yw__server_check_down(yw_server_t *srv);

/*
 * Packs a reply. A reply whose strings are not all UTF-8 (only data stored before the
 * runtime checked every request can make one) goes out repaired (utf8.h): a client
 * could not parse it otherwise. NULL when it cannot be packed.
 */
static grpc_byte_buffer *yw__pack(const ProtobufCMessage *msg)
{
    ProtobufCMessage *repaired = NULL;
    if (yw_utf8_check_message(msg, NULL, NULL, 0) != 0) {
        if ((repaired = yw_utf8_repaired_copy(msg)) == NULL) {
            return NULL;
        }
        yw_log(YW_LOG_WARN, "%s reply: strings that are not UTF-8 sent with U+FFFD in their place",
               msg->descriptor->name);
        msg = repaired;
    }
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    size_t n = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    if (repaired != NULL) {
        protobuf_c_message_free_unpacked(repaired, NULL);
    }
    if (n != len) {
        grpc_slice_unref(slice);
        return NULL;
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

/*
 * The runtime's rule for every request (proto3 strings are UTF-8): finishes the call
 * with INVALID_ARGUMENT naming the field and returns -1 when a string of `msg` is not
 * UTF-8. The events of a batch method (yw_method_t.items) are the handler's to judge.
 */
static int yw__check_strings(yw_call_t *c, const ProtobufCMessage *msg)
{
    const char *items = c->reg->method->items;
    if (items != NULL && items[0] == '\0') {
        return 0; /* each message of the stream is an event */
    }
    char err[256];
    if (yw_utf8_check_message(msg, items, err, sizeof err) == 0) {
        return 0;
    }
    yw_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, err);
    return -1;
}

/* Unpacks a request. Peeks the single slice when there is one; copies otherwise. */
static ProtobufCMessage *yw__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        grpc_slice s = bb->data.raw.slice_buffer.slices[0];
        return protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        return NULL;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return m;
}

/* ---- call accessors ---- */

void *yw_call_service_ctx(const yw_call_t *call)
{
    return call->reg ? call->reg->svc->ctx : NULL;
}

const yw_method_t *yw_call_method(const yw_call_t *call)
{
    return call->reg ? call->reg->method : NULL;
}

yw_server_t *yw_call_server(const yw_call_t *call)
{
    return call->srv;
}

const char *yw_call_caller(const yw_call_t *call)
{
    return call->caller;
}

void yw_call_set_data(yw_call_t *call, void *data)
{
    call->data = data;
}

void *yw_call_data(const yw_call_t *call)
{
    return call->data;
}

grpc_call *yw_call_grpc(const yw_call_t *call)
{
    return call->call;
}

gpr_timespec yw_call_deadline(const yw_call_t *call)
{
    return call->deadline;
}

int64_t yw_call_remaining_ms(const yw_call_t *call)
{
    return yw_deadline_remaining_ms(call->deadline);
}

int yw_call_is_cancelled(const yw_call_t *call)
{
    return call->close_cancelled || call->dead || yw_call_remaining_ms(call) <= 0 ||
           (call->srv->grace_fired);
}

const char *yw_call_metadata(const yw_call_t *call, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < call->md.count; i++) {
        const grpc_metadata *m = &call->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0) {
            if (len != NULL) {
                *len = GRPC_SLICE_LENGTH(m->value);
            }
            return (const char *)GRPC_SLICE_START_PTR(m->value);
        }
    }
    return NULL;
}

/* ---- request ids ---- */

/* 64 random bits per id: splitmix64 over a per-thread seed from getrandom(). */
static uint64_t yw__random64(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local int seeded;
    if (!seeded) {
        if (getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state) {
            state = uv_hrtime() ^ (uint64_t)(uintptr_t)&state;
        }
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

const char *yw_call_request_id(const yw_call_t *ccall)
{
    /* Logically const: the id is made once and cached in the call. */
    yw_call_t *call = (yw_call_t *)ccall;
    if (call->rid_len > 0) {
        return call->rid;
    }
    size_t len = 0;
    const char *id = yw_call_metadata(call, "x-request-id", &len);
    if (id != NULL && len > 0) {
        if (len > YW_REQUEST_ID_MAX) {
            len = YW_REQUEST_ID_MAX;
        }
        memcpy(call->rid, id, len);
    } else {
        static const char hex[] = "0123456789abcdef";
        uint64_t r = yw__random64();
        len = 16;
        for (size_t i = 0; i < len; i++) {
            call->rid[i] = hex[(r >> (60 - 4 * i)) & 0xf];
        }
    }
    call->rid[len] = '\0';
    call->rid_len = len;
    return call->rid;
}

void yw_call_log(const yw_call_t *call, yw_log_level_t level, const char *fmt, ...)
{
    if (!yw_log_enabled(level)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    yw_logv_call_ctx(level, call->reg ? call->reg->method->path : NULL, yw_call_request_id(call),
                     fmt, ap);
    va_end(ap);
}

static const char *yw__ctx_request_id(void *arg)
{
    return yw_call_request_id(arg);
}

/* Lines that yw_log() writes until the matching yw__leave() carry the call's request id. */
static yw_log_ctx_t yw__enter(yw_call_t *c)
{
    yw_log_ctx_t ctx = {yw__ctx_request_id, c};
    return yw_log_swap_ctx(ctx);
}

static void yw__leave(yw_log_ctx_t prev)
{
    (void)yw_log_swap_ctx(prev);
}

/* ---- sending ---- */

/* Queues one packed message without starting a send. */
static int yw__call_enqueue(yw_call_t *call, const ProtobufCMessage *msg)
{
    if (call->finished || call->dead || call->close_cancelled) {
        return -ECANCELED;
    }
    grpc_byte_buffer *bb = yw__pack(msg);
    yw__outmsg_t *o = bb ? malloc(sizeof *o) : NULL;
    if (o == NULL) {
        if (bb != NULL) {
            grpc_byte_buffer_destroy(bb);
        }
        yw_call_finish(call, GRPC_STATUS_INTERNAL, "response: could not be packed");
        return -ENOMEM;
    }
    o->next = NULL;
    o->bb = bb;
    if (call->out_tail != NULL) {
        call->out_tail->next = o;
    } else {
        call->out_head = o;
    }
    call->out_tail = o;
    return 0;
}

int yw_call_send(yw_call_t *call, const ProtobufCMessage *msg)
{
    int rc = yw__call_enqueue(call, msg);
    if (rc == 0) {
        yw__call_pump(call);
    }
    return rc;
}

int yw_call_finish(yw_call_t *call, grpc_status_code code, const char *fmt, ...)
{
    if (call->finished) {
        return -EALREADY;
    }
    call->finished = 1;
    call->code = code;
    if (fmt != NULL && fmt[0] != '\0') {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        /* A message may quote a client's bytes: it leaves as UTF-8 (utf8.h). */
        char text[YW_UTF8_REPAIR_CAP(sizeof buf)];
        yw_utf8_repair(text, sizeof text, buf, strlen(buf));
        call->status_msg = strdup(text);
    }
    yw__call_pump(call);
    yw__call_free_later(call);
    return 0;
}

int yw_call_fail(yw_call_t *call, grpc_status_code code, const char *msg)
{
    return yw_call_finish(call, code, "%s", msg != NULL ? msg : "");
}

int yw_call_abandoned(yw_call_t *call)
{
    if (!yw_call_is_cancelled(call)) {
        return 0;
    }
    if (yw_call_remaining_ms(call) <= 0) {
        yw_call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                     "deadline exceeded before the work started");
    } else {
        yw_call_fail(call, GRPC_STATUS_CANCELLED, "call cancelled before the work started");
    }
    return 1;
}

int yw_call_reply(yw_call_t *call, const ProtobufCMessage *resp)
{
    if (call->finished) {
        return -EALREADY;
    }
    /* Queue without sending, so that metadata, message and status leave in one batch
     * (one write on the wire instead of two). */
    int rc = yw__call_enqueue(call, resp);
    if (rc == -ECANCELED) {
        /* The client is gone: finish quietly so the call can be freed. */
        return yw_call_finish(call, GRPC_STATUS_CANCELLED, "cancelled");
    }
    if (rc != 0) {
        return rc;
    }
    return yw_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void yw__drop_queue(yw_call_t *c)
{
    while (c->out_head != NULL) {
        yw__outmsg_t *o = c->out_head;
        c->out_head = o->next;
        grpc_byte_buffer_destroy(o->bb);
        free(o);
    }
    c->out_tail = NULL;
}

static void yw__on_call_reap(yw_tag_t *tag, int ok)
{
    yw_call_t *c = YW__CONTAINER(tag, yw_call_t, tag_reap);
    (void)ok;
    c->reap_queued = 0;
    c->pending--;
    yw__call_maybe_free(c);
}

/*
 * After a handler finished a call that nothing holds any more (it was cancelled, or its
 * last operation already completed), the call is freed once the handler's callback has
 * returned, never inside yw_call_finish(): the handler may still touch it (clear its
 * data, log) right after replying. When something holds the call (an operation in
 * flight, a runtime callback on the stack) that holder frees it, as before.
 */
static void yw__call_free_later(yw_call_t *c)
{
    if (c->pending > 0 || !c->closed || c->reap_queued) {
        return;
    }
    c->pending++;
    c->reap_queued = 1;
    if (yw_runtime_defer(c->srv->rt, &c->tag_reap) != 0) {
        /* Out of memory: free now, as the runtime did before the deferral. */
        c->reap_queued = 0;
        c->pending--;
        yw__call_maybe_free(c);
    }
}

static void yw__on_send(yw_tag_t *tag, int ok)
{
    yw_call_t *c = YW__CONTAINER(tag, yw_call_t, tag_send);
    c->sending = 0;
    if (c->send_bb != NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
    }
    if (!ok) {
        c->dead = 1;
    }
    if (c->close_in_send) {
        c->close_in_send = 0;
        c->closed = 1;
    }
    yw__call_pump(c);
    /* Each tag callback keeps its own count in `pending` until its end, so that a
     * handler finishing the call from inside it cannot free the call under it. */
    c->pending--;
    yw__call_maybe_free(c);
}

/* Starts the next send batch: initial metadata, the next queued message, the status. */
static void yw__call_pump(yw_call_t *c)
{
    if (c->sending || c->status_sent) {
        return;
    }
    if (c->dead || c->close_cancelled) {
        yw__drop_queue(c);
        if (c->finished) {
            c->status_sent = 1; /* nobody is listening any more */
        }
        return;
    }
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (c->out_head != NULL) {
        yw__outmsg_t *o = c->out_head;
        c->out_head = o->next;
        if (c->out_head == NULL) {
            c->out_tail = NULL;
        }
        c->send_bb = o->bb;
        free(o);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_bb;
        n++;
    }
    int with_status = c->finished && c->out_head == NULL;
    if (with_status) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.trailing_metadata_count = 0;
        if (c->code != GRPC_STATUS_OK) {
            /* A failed call tells the client its request id (the one in the log line) in
             * the trailing metadata; OK calls pay nothing for it. gRPC refs the value
             * slice; ours is unreffed when the call is freed. */
            const char *rid = yw_call_request_id(c);
            c->rid_md.key = grpc_slice_from_static_string("x-request-id");
            c->rid_md.value = grpc_slice_from_copied_buffer(rid, c->rid_len);
            c->rid_md_set = 1;
            ops[n].data.send_status_from_server.trailing_metadata_count = 1;
            ops[n].data.send_status_from_server.trailing_metadata = &c->rid_md;
        }
        ops[n].data.send_status_from_server.status = c->code;
        if (c->status_msg != NULL) {
            c->status_slice = grpc_slice_from_copied_string(c->status_msg);
            ops[n].data.send_status_from_server.status_details = &c->status_slice;
        }
        n++;
    }
    if (n == 0) {
        return;
    }
    if (with_status && !c->close_started) {
        /* A unary handler that answered at once: one batch does it all. */
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n].data.recv_close_on_server.cancelled = &c->close_cancelled;
        n++;
        c->close_started = 1;
        c->close_in_send = 1;
    }
    if (!c->md_sent) {
        memmove(&ops[1], &ops[0], n * sizeof ops[0]);
        memset(&ops[0], 0, sizeof ops[0]);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->md_sent = 1;
    }
    c->sending = 1;
    c->pending++;
    if (with_status) {
        c->status_sent = 1;
    }
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, &c->tag_send, NULL);
    if (err != GRPC_CALL_OK) {
        /* A refused batch leaves the call unusable: cancel it and give up sending. */
        yw_call_log(c, YW_LOG_WARN, "send batch refused (%d)", (int)err);
        c->pending--;
        c->sending = 0;
        c->dead = 1;
        c->status_sent = c->finished;
        if (c->close_in_send) {
            c->close_in_send = 0;
            c->closed = 1;
        }
        if (c->send_bb != NULL) {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
        yw__drop_queue(c);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "send failed", NULL);
    }
}

/* ---- call lifecycle ---- */

static void yw__call_end_stream(yw_call_t *c)
{
    if (c->ended || c->finished || c->reg == NULL || c->reg->method->on_end == NULL) {
        return;
    }
    c->ended = 1;
    yw_log_ctx_t prev = yw__enter(c);
    c->reg->method->on_end(c);
    yw__leave(prev);
}

/* Counts a call that ended, once, right before it is freed. Loop thread; no lock, no
 * allocation except the first time a method ends with a given code. */
static void yw__count_end(yw_call_t *c, grpc_status_code code, uint64_t ns)
{
    yw_server_t *srv = c->srv;
    yw__method_metrics_t *mm = c->reg ? c->reg->mm : (srv->mm ? &srv->mm[srv->n_regs] : NULL);
    if (mm == NULL) {
        return;
    }
    size_t k = (int)code >= 0 && (int)code < YW__N_CODES ? (size_t)code : GRPC_STATUS_UNKNOWN;
    if (mm->handled[k] == NULL) {
        static const char *const names[YW__N_CODES] = {
            "OK",          "Canceled",          "Unknown",          "InvalidArgument",
            "DeadlineExceeded", "NotFound",     "AlreadyExists",    "PermissionDenied",
            "ResourceExhausted", "FailedPrecondition", "Aborted",   "OutOfRange",
            "Unimplemented", "Internal",        "Unavailable",      "DataLoss",
            "Unauthenticated",
        };
        char labels[512];
        snprintf(labels, sizeof labels, "%s,grpc_code=%s", mm->labels, names[k]);
        /* On failure (out of memory) the handle stays NULL: this call goes uncounted. */
        (void)yw_metrics_counter(srv->cfg.metrics, "grpc_server_handled_total",
                                 "Calls completed on the server, by method and status code.",
                                 labels, &mm->handled[k]);
    }
    yw_metric_inc(mm->handled[k]);
    yw_metric_observe(mm->latency, ns);
    yw_metric_gauge_add(srv->in_flight, -1);
}

static void yw__call_maybe_free(yw_call_t *c)
{
    if (c->pending > 0 || !c->closed) {
        return;
    }
    if (!c->status_sent) {
        if (!(c->finished && (c->dead || c->close_cancelled))) {
            return; /* the handler still owns the call */
        }
    }
    yw_server_t *srv = c->srv;
    grpc_status_code code = c->finished ? c->code : GRPC_STATUS_CANCELLED;
    if (c->close_cancelled && code == GRPC_STATUS_OK && !c->status_sent) {
        code = GRPC_STATUS_CANCELLED;
    }
    uint64_t ns = yw__now_ns() - c->start_ns;
    yw__count_end(c, code, ns);
    if (c->reg != NULL) {
        const char *status = yw_status_name(code);
        if (yw_log_enabled(yw_log_call_level(status))) {
            yw_log_call(c->reg->method->path, status, c->status_msg, (double)ns / 1e6,
                        yw_call_request_id(c));
        }
        if (c->reg->method->on_done != NULL) {
            yw_log_ctx_t prev = yw__enter(c);
            c->reg->method->on_done(c);
            yw__leave(prev);
        }
    }
    if (c->rid_md_set) {
        grpc_slice_unref(c->rid_md.value);
    }
    yw__drop_queue(c);
    if (c->request != NULL) {
        protobuf_c_message_free_unpacked(c->request, NULL);
    }
    if (c->payload != NULL) {
        grpc_byte_buffer_destroy(c->payload);
    }
    if (c->status_msg != NULL) {
        grpc_slice_unref(c->status_slice);
        free(c->status_msg);
    }
    grpc_metadata_array_destroy(&c->md);
    if (c->reg == NULL) {
        grpc_call_details_destroy(&c->details);
    }
    if (c->call != NULL) {
        grpc_call_unref(c->call);
    }
    srv->live_calls--;
    free(c);
    yw__server_check_down(srv);
}

static void yw__on_close(yw_tag_t *tag, int ok)
{
    yw_call_t *c = YW__CONTAINER(tag, yw_call_t, tag_close);
    (void)ok;
    c->closed = 1;
    if (c->close_cancelled) {
        yw__drop_queue(c);
        if (c->reg != NULL && c->reg->method->kind != YW_METHOD_UNARY && !c->receiving) {
            yw__call_end_stream(c);
        }
    }
    c->pending--;
    yw__call_maybe_free(c);
}

static void yw__start_recv(yw_call_t *c);
static void yw__dispatch_new(yw_call_t *c);
static int yw__start_close_or_fail(yw_call_t *c);

static void yw__dispatch_request(yw_call_t *c);

static void yw__on_recv(yw_tag_t *tag, int ok)
{
    yw_call_t *c = YW__CONTAINER(tag, yw_call_t, tag_recv);
    c->receiving = 0;
    if (c->reg->read_later) {
        /* The one message of an authorized unary or server-streaming call. */
        if (!c->finished) {
            if (!ok || c->close_cancelled) {
                yw_call_finish(c, GRPC_STATUS_CANCELLED, "cancelled before the request arrived");
            } else {
                yw__dispatch_request(c);
            }
        }
        c->pending--;
        yw__call_maybe_free(c);
        return;
    }
    grpc_byte_buffer *bb = c->payload;
    c->payload = NULL;
    if (c->finished || c->ended) {
        if (bb != NULL) {
            grpc_byte_buffer_destroy(bb);
        }
    } else if (!ok || bb == NULL) {
        yw__call_end_stream(c); /* half-close, or the call died */
    } else {
        const yw_method_t *m = c->reg->method;
        ProtobufCMessage *msg = yw__unpack(m->request, bb);
        grpc_byte_buffer_destroy(bb);
        if (msg == NULL) {
            yw_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                           "request: not a valid %s message (malformed protobuf)", m->request->name);
        } else if (yw__check_strings(c, msg) != 0) {
            protobuf_c_message_free_unpacked(msg, NULL);
        } else {
            yw_log_ctx_t prev = yw__enter(c);
            c->delivering = 1;
            m->on_message(c, msg);
            c->delivering = 0;
            yw__leave(prev);
            protobuf_c_message_free_unpacked(msg, NULL);
            if (!c->finished && !c->ended && !c->paused) {
                yw__start_recv(c);
            }
        }
    }
    c->pending--;
    yw__call_maybe_free(c);
}

/* Posts the next RECV_MESSAGE. Returns -EIO when gRPC refused it: the call is then
 * cancelled and dead, and on_end has not run yet (the caller decides when it does). */
static int yw__post_recv(yw_call_t *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->payload;
    c->pending++;
    c->receiving = 1;
    if (grpc_call_start_batch(c->call, &op, 1, &c->tag_recv, NULL) != GRPC_CALL_OK) {
        c->pending--;
        c->receiving = 0;
        c->dead = 1;
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "receive failed", NULL);
        return -EIO;
    }
    return 0;
}

static void yw__start_recv(yw_call_t *c)
{
    if (c->close_cancelled) {
        yw__call_end_stream(c);
        return;
    }
    if (yw__post_recv(c) != 0) {
        yw__call_end_stream(c);
    }
}

static int yw__is_client_stream(const yw_call_t *c)
{
    return c->reg != NULL && (c->reg->method->kind == YW_METHOD_CLIENT_STREAMING ||
                              c->reg->method->kind == YW_METHOD_BIDI_STREAMING);
}

int yw_call_pause_reads(yw_call_t *call)
{
    if (!yw__is_client_stream(call)) {
        return -EINVAL;
    }
    if (call->ended || call->finished || call->dead || call->close_cancelled) {
        return -ECANCELED;
    }
    call->paused = 1;
    return 0;
}

int yw_call_resume_reads(yw_call_t *call)
{
    if (!yw__is_client_stream(call)) {
        return -EINVAL;
    }
    int was_paused = call->paused;
    call->paused = 0;
    if (call->ended || call->finished || call->dead || call->close_cancelled) {
        return -ECANCELED;
    }
    if (!was_paused || call->receiving || call->delivering) {
        return 0; /* a read is in flight, or yw__on_recv posts the next one */
    }
    /* On a refusal the call is cancelled: RECV_CLOSE_ON_SERVER then completes and
     * yw__on_close() runs on_end, never inside this function (server.h). */
    return yw__post_recv(call) == 0 ? 0 : -ECANCELED;
}

int yw_call_reads_paused(const yw_call_t *call)
{
    return call->paused;
}

static int yw__start_close(yw_call_t *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->pending++;
    c->close_started = 1;
    if (grpc_call_start_batch(c->call, &op, 1, &c->tag_close, NULL) != GRPC_CALL_OK) {
        c->pending--;
        return -EIO;
    }
    return 0;
}

static void yw__on_new_call(yw_tag_t *tag, int ok)
{
    yw_call_t *c = YW__CONTAINER(tag, yw_call_t, tag_new);
    yw_server_t *srv = c->srv;
    srv->requested--;
    if (!ok || c->call == NULL) {
        /* The server is shutting down: this request will never be served. */
        grpc_metadata_array_destroy(&c->md);
        if (c->reg == NULL) {
            grpc_call_details_destroy(&c->details);
        }
        if (c->payload != NULL) {
            grpc_byte_buffer_destroy(c->payload);
        }
        free(c);
        yw__server_check_down(srv);
        return;
    }
    srv->live_calls++;
    c->start_ns = yw__now_ns();
    yw__method_metrics_t *mm = c->reg ? c->reg->mm : (srv->mm ? &srv->mm[srv->n_regs] : NULL);
    if (mm != NULL) {
        yw_metric_inc(mm->started);
        yw_metric_gauge_add(srv->in_flight, 1);
    }
    c->pending++; /* held until the end of this callback, see yw__on_send */
    if (!srv->shutting_down) {
        yw__request_call(srv, c->reg);
    }
    /* Streams start RECV_CLOSE_ON_SERVER first: it is how cancellation is seen. A unary
     * handler that answers at once gets it folded into its one send batch; one that
     * goes asynchronous gets it started right after it returns. */
    int unary = c->reg == NULL || c->reg->method->kind == YW_METHOD_UNARY;
    if (unary || yw__start_close_or_fail(c) == 0) {
        yw__dispatch_new(c);
    }
    if (unary && !c->close_started) {
        yw__start_close_or_fail(c);
    }
    c->pending--;
    yw__call_maybe_free(c);
}

/* Starts RECV_CLOSE_ON_SERVER; when gRPC refuses it, the call is cancelled and dead. */
static int yw__start_close_or_fail(yw_call_t *c)
{
    if (yw__start_close(c) == 0) {
        return 0;
    }
    c->closed = 1;
    c->dead = 1;
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "close failed", NULL);
    if (!c->finished) {
        c->finished = 1;
        c->code = GRPC_STATUS_INTERNAL;
    }
    return -EIO;
}

/* Who may call what (auth.h): finishes the call and returns -1 when the caller may not. */
static int yw__authorize(yw_call_t *c)
{
    size_t alen = 0;
    const char *authz = yw_call_metadata(c, "authorization", &alen);
    char msg[320];
    grpc_status_code st = yw_auth_check(c->srv->cfg.auth, c->call, authz, alen, c->reg->auth_roles,
                                        &c->caller, msg, sizeof msg);
    if (st == GRPC_STATUS_OK) {
        return 0;
    }
    yw_call_finish(c, st, "%s: %s", c->reg->method->path, msg);
    return -1;
}

static void yw__dispatch_new(yw_call_t *c)
{
    if (c->reg == NULL) {
        c->deadline = c->details.deadline;
        char path[256];
        size_t len = GRPC_SLICE_LENGTH(c->details.method);
        snprintf(path, sizeof path, "%.*s", (int)(len < 255 ? len : 255),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        yw_call_log(c, YW_LOG_INFO, "unknown method %s: UNIMPLEMENTED", path);
        yw_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "method %s is not implemented by this server",
                       path);
        return;
    }
    if (!c->reg->auth_open && yw__authorize(c) != 0) {
        return;
    }
    if (c->reg->read_later) {
        /* Authorized from the headers: now read the message (yw__on_recv dispatches). */
        if (yw__post_recv(c) != 0) {
            yw_call_finish(c, GRPC_STATUS_INTERNAL, "request: could not be read");
        }
        return;
    }
    yw__dispatch_request(c);
}

/* Unpacks the request of a unary or server-streaming call (its one message, in
 * c->payload) and hands it to on_message; streams start reading instead. */
static void yw__dispatch_request(yw_call_t *c)
{
    const yw_method_t *m = c->reg->method;
    if (m->kind == YW_METHOD_UNARY || m->kind == YW_METHOD_SERVER_STREAMING) {
        grpc_byte_buffer *bb = c->payload;
        c->payload = NULL;
        if (bb == NULL) {
            yw_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "request: the %s message is missing",
                           m->request->name);
            return;
        }
        c->request = yw__unpack(m->request, bb);
        grpc_byte_buffer_destroy(bb);
        if (c->request == NULL) {
            yw_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                           "request: not a valid %s message (malformed protobuf)", m->request->name);
            return;
        }
        if (yw__check_strings(c, c->request) != 0) {
            return;
        }
        yw_log_ctx_t prev = yw__enter(c);
        m->on_message(c, c->request);
        yw__leave(prev);
    } else {
        yw__start_recv(c);
    }
}

static void yw__request_call(yw_server_t *srv, const yw__reg_t *reg)
{
    yw_call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        yw_log(YW_LOG_ERROR, "out of memory requesting a call");
        return;
    }
    c->srv = srv;
    c->reg = reg;
    c->tag_new.cb = yw__on_new_call;
    c->tag_close.cb = yw__on_close;
    c->tag_recv.cb = yw__on_recv;
    c->tag_send.cb = yw__on_send;
    c->tag_reap.cb = yw__on_call_reap;
    grpc_metadata_array_init(&c->md);
    grpc_completion_queue *cq = yw_runtime_cq(srv->rt);
    grpc_call_error err;
    if (reg != NULL) {
        int with_payload = (reg->method->kind == YW_METHOD_UNARY ||
                            reg->method->kind == YW_METHOD_SERVER_STREAMING) &&
                           !reg->read_later;
        err = grpc_server_request_registered_call(srv->server, reg->handle, &c->call, &c->deadline,
                                                  &c->md, with_payload ? &c->payload : NULL, cq, cq,
                                                  &c->tag_new);
    } else {
        grpc_call_details_init(&c->details);
        err = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, cq, cq,
                                       &c->tag_new);
    }
    if (err != GRPC_CALL_OK) {
        yw_log(YW_LOG_ERROR, "grpc_server_request_call failed (%d)", (int)err);
        grpc_metadata_array_destroy(&c->md);
        if (reg == NULL) {
            grpc_call_details_destroy(&c->details);
        }
        free(c);
        return;
    }
    srv->requested++;
}

/* ---- metrics ---- */

/* Registers the handles of one method: started, OK and latency up front, so that the
 * series exist from the start; other codes on their first call. */
static int yw__method_metrics_init(yw_server_t *srv, yw__method_metrics_t *mm, const char *path,
                                   yw_method_kind_t kind)
{
    static const char *const kinds[] = {"unary", "server_stream", "client_stream", "bidi_stream"};
    char service[256] = "unknown", method[256] = "unknown", labels[600];
    if (path != NULL) {
        const char *slash = strrchr(path, '/');
        const char *start = path[0] == '/' ? path + 1 : path;
        if (slash != NULL && slash > start) {
            snprintf(service, sizeof service, "%.*s", (int)(slash - start), start);
            snprintf(method, sizeof method, "%s", slash + 1);
        }
    }
    snprintf(labels, sizeof labels, "grpc_method=%s,grpc_service=%s,grpc_type=%s", method, service,
             kinds[kind]);
    if ((mm->labels = strdup(labels)) == NULL) {
        return -ENOMEM;
    }
    yw_metrics_t *m = srv->cfg.metrics;
    char ok[640];
    snprintf(ok, sizeof ok, "%s,grpc_code=OK", labels);
    int rc;
    if ((rc = yw_metrics_counter(m, "grpc_server_started_total",
                                 "Calls started on the server, by method.", labels,
                                 &mm->started)) != 0 ||
        (rc = yw_metrics_counter(m, "grpc_server_handled_total",
                                 "Calls completed on the server, by method and status code.", ok,
                                 &mm->handled[GRPC_STATUS_OK])) != 0 ||
        (rc = yw_metrics_histogram(
             m, "grpc_server_handling_seconds",
             "Time from a call's arrival to its end (status sent), by method.", labels,
             yw_metrics_latency_bounds_ns, YW_METRICS_N_LATENCY_BOUNDS, 1e-9, &mm->latency)) != 0) {
        return rc;
    }
    return 0;
}

static int yw__metrics_init(yw_server_t *srv, char *err, size_t errlen)
{
    if (srv->cfg.metrics == NULL) {
        return 0;
    }
    srv->mm = calloc(srv->n_regs + 1, sizeof *srv->mm);
    if (srv->mm == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = yw_metrics_gauge(srv->cfg.metrics, "grpc_server_calls_in_flight",
                              "Calls accepted and not yet ended.", NULL, &srv->in_flight);
    for (size_t i = 0; rc == 0 && i <= srv->n_regs; i++) {
        if (i < srv->n_regs) {
            srv->regs[i].mm = &srv->mm[i];
            rc = yw__method_metrics_init(srv, &srv->mm[i], srv->regs[i].method->path,
                                         srv->regs[i].method->kind);
        } else {
            rc = yw__method_metrics_init(srv, &srv->mm[i], NULL, YW_METHOD_UNARY);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "metrics: cannot register the server's metrics (%d)", rc);
    }
    return rc;
}

static void yw__metrics_free(yw_server_t *srv)
{
    if (srv->mm != NULL) {
        for (size_t i = 0; i <= srv->n_regs; i++) {
            free(srv->mm[i].labels);
        }
        free(srv->mm);
        srv->mm = NULL;
    }
}

/* ---- auth ---- */

/* Resolves each method's roles once, so that a call costs one AND; health stays open. */
static int yw__auth_init(yw_server_t *srv, char *err, size_t errlen)
{
    const yw_auth_t *auth = srv->cfg.auth;
    if (auth == NULL) {
        for (size_t i = 0; i < srv->n_regs; i++) {
            srv->regs[i].auth_open = 1;
        }
        return 0;
    }
    const char **paths = calloc(srv->n_regs ? srv->n_regs : 1, sizeof *paths);
    if (paths == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < srv->n_regs; i++) {
        paths[i] = srv->regs[i].method->path;
    }
    int rc = yw_auth_check_rules(auth, paths, srv->n_regs, err, errlen);
    free(paths);
    if (rc != 0) {
        return rc;
    }
    const yw_service_t *health = yw_health_service(srv->health);
    for (size_t i = 0; i < srv->n_regs; i++) {
        srv->regs[i].auth_open = srv->regs[i].svc == health;
        srv->regs[i].auth_roles = yw_auth_method_roles(auth, srv->regs[i].method->path);
    }
    return 0;
}

/* ---- server ---- */

static void yw__on_reap(uv_timer_t *t)
{
    yw_server_t *srv = t->data;
    yw_health_reap(srv->health);
}

int yw_server_create(yw_runtime_t *rt, const yw_server_config_t *cfg, yw_server_t **out,
                     char *err, size_t errlen)
{
    yw_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    srv->rt = rt;
    srv->cfg = *cfg;
    if (srv->cfg.max_receive_bytes <= 0) {
        srv->cfg.max_receive_bytes = 4 << 20;
    }
    if (srv->cfg.max_send_bytes <= 0) {
        srv->cfg.max_send_bytes = 16 << 20;
    }
    if (srv->cfg.grace_ms <= 0) {
        srv->cfg.grace_ms = 5000;
    }
    if (srv->cfg.calls_per_method <= 0) {
        srv->cfg.calls_per_method = 32;
    }
    if (srv->cfg.grpc_memory_bytes == 0) {
        srv->cfg.grpc_memory_bytes = YW_SERVER_GRPC_MEMORY_DEFAULT;
    }
    srv->listen = strdup(cfg->listen ? cfg->listen : "127.0.0.1:0");
    srv->cfg.listen = srv->listen;
    int rc = yw_health_create(&srv->health);
    if (rc != 0) {
        snprintf(err, errlen, "health: cannot create (%d)", rc);
        goto fail;
    }
    if (!cfg->reflection_off) {
        rc = yw_reflection_create(cfg->descriptor_set, cfg->descriptor_set_len, &srv->reflection,
                                  err, errlen);
        if (rc != 0) {
            goto fail;
        }
    }
    srv->tag_shutdown.cb = NULL;
    if ((rc = yw_server_add_service(srv, yw_health_service(srv->health))) != 0 ||
        (srv->reflection != NULL &&
         ((rc = yw_server_add_service(srv, yw_reflection_service_v1(srv->reflection))) != 0 ||
          (rc = yw_server_add_service(srv, yw_reflection_service_v1alpha(srv->reflection))) !=
              0))) {
        snprintf(err, errlen, "cannot add the health and reflection services");
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    if (srv->reflection != NULL) {
        yw_reflection_destroy(srv->reflection);
    }
    if (srv->health != NULL) {
        yw_health_destroy(srv->health);
    }
    free(srv->listen);
    free(srv);
    return rc < 0 ? rc : -EINVAL;
}

int yw_server_add_service(yw_server_t *srv, const yw_service_t *svc)
{
    if (srv->started || srv->n_services == YW__MAX_SERVICES) {
        return -EINVAL;
    }
    srv->services[srv->n_services++] = svc;
    return 0;
}

yw_runtime_t *yw_server_runtime(yw_server_t *srv)
{
    return srv->rt;
}

int yw_server_port(const yw_server_t *srv)
{
    return srv->port;
}

size_t yw_server_service_names(const yw_server_t *srv, const char **names, size_t max)
{
    for (size_t i = 0; i < srv->n_services && i < max; i++) {
        names[i] = srv->services[i]->name;
    }
    return srv->n_services;
}

int yw_server_start(yw_server_t *srv, char *err, size_t errlen)
{
    grpc_arg args[7];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = srv->cfg.max_receive_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = srv->cfg.max_send_bytes;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = srv->cfg.reuse_port ? 1 : 0;
    size_t nargs = 3;
    if (srv->cfg.max_streams_per_connection > 0) {
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
        args[nargs].value.integer = srv->cfg.max_streams_per_connection;
        nargs++;
    }
    if (srv->cfg.stream_window_bytes > 0) {
        /* Fixed stream windows: a paused stream holds at most one window in gRPC. */
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_BDP_PROBE;
        args[nargs].value.integer = 0;
        nargs++;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
        args[nargs].value.integer = srv->cfg.stream_window_bytes;
        nargs++;
    }
    /* The transport's memory budget: gRPC resets the stream that takes it over. */
    srv->quota = grpc_resource_quota_create("yw_server");
    if (srv->quota == NULL) {
        snprintf(err, errlen, "grpc_resource_quota_create failed");
        return -ENOMEM;
    }
    grpc_resource_quota_resize(srv->quota, srv->cfg.grpc_memory_bytes);
    args[nargs].type = GRPC_ARG_POINTER;
    args[nargs].key = GRPC_ARG_RESOURCE_QUOTA;
    args[nargs].value.pointer.p = srv->quota;
    args[nargs].value.pointer.vtable = grpc_resource_quota_arg_vtable();
    nargs++;
    grpc_channel_args chargs = {.num_args = nargs, .args = args};
    srv->server = grpc_server_create(&chargs, NULL);
    if (srv->server == NULL) {
        snprintf(err, errlen, "grpc_server_create failed");
        return -ENOMEM;
    }
    grpc_completion_queue *cq = yw_runtime_cq(srv->rt);
    grpc_server_register_completion_queue(srv->server, cq, NULL);

    for (size_t i = 0; i < srv->n_services; i++) {
        srv->n_regs += srv->services[i]->n_methods;
    }
    srv->regs = calloc(srv->n_regs ? srv->n_regs : 1, sizeof *srv->regs);
    if (srv->regs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t r = 0;
    for (size_t i = 0; i < srv->n_services; i++) {
        const yw_service_t *svc = srv->services[i];
        for (size_t j = 0; j < svc->n_methods; j++, r++) {
            const yw_method_t *m = &svc->methods[j];
            int with_payload = m->kind == YW_METHOD_UNARY || m->kind == YW_METHOD_SERVER_STREAMING;
            /* A method that needs a caller reads its message only once authorized. */
            if (with_payload && srv->cfg.auth != NULL && svc != yw_health_service(srv->health)) {
                with_payload = 0;
                srv->regs[r].read_later = 1;
            }
            srv->regs[r].srv = srv;
            srv->regs[r].svc = svc;
            srv->regs[r].method = m;
            srv->regs[r].handle = grpc_server_register_method(
                srv->server, m->path, NULL,
                with_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
            if (srv->regs[r].handle == NULL) {
                snprintf(err, errlen, "cannot register method %s (registered twice?)", m->path);
                return -EINVAL;
            }
        }
    }
    int mrc = yw__metrics_init(srv, err, errlen);
    if (mrc == 0) {
        mrc = yw__auth_init(srv, err, errlen);
    }
    if (mrc != 0) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        return mrc;
    }
    grpc_server_credentials *creds = srv->cfg.credentials;
    if (creds == NULL) {
        creds = grpc_insecure_server_credentials_create();
    }
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    if (creds != srv->cfg.credentials) {
        grpc_server_credentials_release(creds);
    }
    srv->cfg.credentials = NULL; /* borrowed until here */
    if (srv->port == 0) {
        snprintf(err, errlen, "--listen %s: cannot bind (address in use or invalid)", srv->listen);
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        return -EADDRINUSE;
    }
    grpc_server_start(srv->server);
    srv->started = 1;
    for (size_t i = 0; i < srv->n_regs; i++) {
        for (int k = 0; k < srv->cfg.calls_per_method; k++) {
            yw__request_call(srv, &srv->regs[i]);
        }
    }
    for (int k = 0; k < YW__GENERIC_CALLS; k++) {
        yw__request_call(srv, NULL);
    }
    uv_loop_t *loop = yw_runtime_loop(srv->rt);
    uv_timer_init(loop, &srv->grace_timer);
    uv_timer_init(loop, &srv->reap_timer);
    srv->grace_timer.data = srv;
    srv->reap_timer.data = srv;
    srv->handles_open = 2;
    uv_timer_start(&srv->reap_timer, yw__on_reap, YW__REAP_MS, YW__REAP_MS);
    uv_unref((uv_handle_t *)&srv->reap_timer);
    yw_health_set(srv->health, "", 1);
    for (size_t i = 0; i < srv->n_services; i++) {
        yw_health_set(srv->health, srv->services[i]->name, 1);
    }
    return 0;
}

static void yw__server_check_down(yw_server_t *srv)
{
    if (!srv->shutting_down || !srv->shutdown_notified || srv->live_calls > 0 ||
        srv->requested > 0 || srv->shutdown_cb == NULL) {
        return;
    }
    uv_timer_stop(&srv->grace_timer);
    uv_timer_stop(&srv->reap_timer);
    void (*cb)(void *) = srv->shutdown_cb;
    srv->shutdown_cb = NULL;
    cb(srv->shutdown_arg);
}

static void yw__on_shutdown_notify(yw_tag_t *tag, int ok)
{
    yw_server_t *srv = YW__CONTAINER(tag, yw_server_t, tag_shutdown);
    (void)ok;
    srv->shutdown_notified = 1;
    yw__server_check_down(srv);
}

static void yw__on_grace(uv_timer_t *t)
{
    yw_server_t *srv = t->data;
    yw_log(YW_LOG_WARN, "grace period over: cancelling %zu call(s) in flight", srv->live_calls);
    srv->grace_fired = 1;
    grpc_server_cancel_all_calls(srv->server);
}

static void yw__noop_done(void *arg)
{
    (void)arg;
}

void yw_server_shutdown(yw_server_t *srv, void (*done)(void *arg), void *arg)
{
    if (srv->shutting_down) {
        return;
    }
    srv->shutting_down = 1;
    srv->shutdown_cb = done ? done : yw__noop_done;
    srv->shutdown_arg = arg;
    if (!srv->started) {
        srv->shutdown_notified = 1;
        yw__server_check_down(srv);
        return;
    }
    yw_health_shutdown(srv->health);
    srv->tag_shutdown.cb = yw__on_shutdown_notify;
    grpc_server_shutdown_and_notify(srv->server, yw_runtime_cq(srv->rt), &srv->tag_shutdown);
    uv_timer_start(&srv->grace_timer, yw__on_grace, (uint64_t)srv->cfg.grace_ms, 0);
}

static void yw__server_free(yw_server_t *srv)
{
    if (srv->quota != NULL) {
        grpc_resource_quota_unref(srv->quota); /* the server's channels hold their own refs */
    }
    yw_reflection_destroy(srv->reflection);
    yw_health_destroy(srv->health);
    yw__metrics_free(srv);
    free(srv->regs);
    free(srv->listen);
    free(srv);
}

static void yw__on_timer_closed(uv_handle_t *h)
{
    yw_server_t *srv = h->data;
    if (--srv->handles_open == 0) {
        yw__server_free(srv);
    }
}

void yw_server_destroy(yw_server_t *srv)
{
    if (srv->server != NULL) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
    }
    if (srv->handles_open > 0) {
        uv_close((uv_handle_t *)&srv->grace_timer, yw__on_timer_closed);
        uv_close((uv_handle_t *)&srv->reap_timer, yw__on_timer_closed);
    } else {
        yw__server_free(srv);
    }
}
