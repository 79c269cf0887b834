/*
 * call.c — a call's life on the server runtime (server.h), on the loop thread: its
 * arrival, authorization, the unpacking of its request, the handler callbacks, the
 * queue of messages it sends, its status, and its end. server.c registers the methods
 * and starts and stops the server; server_metrics.c counts the calls.
 *
 * Unary and server-streaming requests arrive with the call
 * (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER), except on methods that need a caller
 * (--auth-config): those arrive with their headers alone, are authorized from them, and
 * only then is their one message read (RECV_MESSAGE), so that an unauthenticated caller
 * never gets its body read into memory. Streaming requests are read one RECV_MESSAGE at
 * a time. Calls to unregistered methods arrive through generic requested calls and are
 * answered UNIMPLEMENTED at once.
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
#include "common/server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>

#include "common/auth.h"
#include "common/log.h"
#include "common/utf8.h"

/*
 * Requests of at least this many bytes are unpacked and UTF-8 checked (and freed) on libuv's
 * thread pool, not on the loop: a 3.4 MB request of 800,000 strings took 50 ms of the loop's
 * CPU, and every other call waited behind it.
 */
#define YW__OFF_LOOP_BYTES ((size_t)256 << 10)
/* Blocks a stream's arena keeps between its messages (yw_arena_reset_keep()): 1 MiB. */
#define YW__STREAM_ARENA_BLOCKS ((size_t)64)

static uint64_t yw__now_ns(void)
{
    return uv_hrtime();
}

static void yw__call_pump(yw_call_t *c);
static void yw__call_maybe_free(yw_call_t *c);
static void yw__call_free_later(yw_call_t *c);

/* The call's batches go to gRPC C core, or to the transport of a fake call (call_fake.h). */
static grpc_call_error yw__start_batch(yw_call_t *c, const grpc_op *ops, size_t n, yw_tag_t *tag)
{
    if (c->fake != NULL) {
        return c->fake->start_batch(c, ops, n, tag);
    }
    return grpc_call_start_batch(c->call, ops, n, tag, NULL);
}

static void yw__cancel(yw_call_t *c, grpc_status_code code, const char *why)
{
    if (c->fake != NULL) {
        c->fake->cancel(c, code, why);
    } else {
        grpc_call_cancel_with_status(c->call, code, why, NULL);
    }
}

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

/* The UTF-8 check of a request's strings (utf8.h), any thread: err[0] stays 0 when every
 * string is UTF-8, else it holds the reason naming the field. The events of a batch
 * method (yw_method_t.items) are the handler's to judge; a stream whose every message is
 * an event (items "") is not checked here. */
static void yw__check_strings_into(const yw_call_t *c, const ProtobufCMessage *msg, char *err,
                                   size_t errlen)
{
    const char *items = c->reg->method->items;
    err[0] = '\0';
    if ((items == NULL || items[0] != '\0') &&
        yw_utf8_check_message(msg, items, err, errlen) == 0) {
        err[0] = '\0';
    }
}

/*
 * The runtime's rule for every request (proto3 strings are UTF-8): finishes the call
 * with INVALID_ARGUMENT naming the field and returns -1 when a string of `msg` is not
 * UTF-8. The events of a batch method (yw_method_t.items) are the handler's to judge.
 */
static int yw__check_strings(yw_call_t *c, const ProtobufCMessage *msg)
{
    char err[256];
    yw__check_strings_into(c, msg, err, sizeof err);
    if (err[0] == '\0') {
        return 0;
    }
    yw_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, err);
    return -1;
}

/*
 * Requests are unpacked into the call's arena (yw_call_t.req_arena), not with malloc: a
 * request of 1,000 events is some 10,000 small allocations, and under ingestion a cluster
 * node's loop spent about a fifth of its time unpacking and freeing them one by one
 * (perf: malloc, free and malloc_consolidate under protobuf_c_message_unpack and
 * protobuf_c_message_free_unpacked). A request is freed with the arena, at once.
 */
static void *yw__arena_pb_alloc(void *arena, size_t size)
{
    return yw_arena_alloc(arena, size > 0 ? size : 1, 16);
}

static void yw__arena_pb_free(void *arena, void *p)
{
    (void)arena;
    (void)p; /* the arena's: freed with it */
}

/* Unpacks a request into `arena`. Peeks the single slice when there is one; copies
 * otherwise. NULL (the arena emptied) when it does not parse. */
static ProtobufCMessage *yw__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                                    yw_arena_t *arena)
{
    ProtobufCAllocator alloc = {
        .alloc = yw__arena_pb_alloc, .free = yw__arena_pb_free, .allocator_data = arena};
    ProtobufCMessage *m = NULL;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        grpc_slice s = bb->data.raw.slice_buffer.slices[0];
        m = protobuf_c_message_unpack(desc, &alloc, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    } else {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, bb)) {
            return NULL;
        }
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        m = protobuf_c_message_unpack(desc, &alloc, GRPC_SLICE_LENGTH(all),
                                      GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    if (m == NULL) {
        yw_arena_reset(arena); /* what a failed unpack took */
    }
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

/* 64 random bits per id: splitmix64 over a per-thread seed from uv_random() (synchronous). */
static uint64_t yw__random64(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local int seeded;
    if (!seeded) {
        if (uv_random(NULL, NULL, &state, sizeof state, 0, NULL) != 0) {
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
    grpc_call_error err = yw__start_batch(c, ops, n, &c->tag_send);
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
        yw__cancel(c, GRPC_STATUS_INTERNAL, "send failed");
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

/* Frees the request: its arena (any thread; one owner at a time). */
static void yw__request_drop(yw_call_t *c)
{
    c->request = NULL;
    yw_arena_free(&c->req_arena);
}

/* Thread pool: frees the request (yw__call_maybe_free()). */
static void yw__free_request_work(uv_work_t *w)
{
    yw__request_drop(w->data);
}

/* Loop: the request is freed; the call goes on to be freed. */
static void yw__request_freed(uv_work_t *w, int status)
{
    yw_call_t *c = w->data;
    if (status != 0) {
        yw__request_drop(c); /* (not run: cancelled) */
    }
    c->pending--;
    yw__call_maybe_free(c);
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
    if (!c->end_done) {
        c->end_done = 1;
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
            if (c->admitted && c->reg->svc->released != NULL) {
                c->reg->svc->released(c);
            }
        }
        /* A large request is freed on the thread pool as it was unpacked there (its
         * arena's blocks: 6,400 of them for 100 MB); the call stays until that is done
         * (yw__request_freed). */
        if (c->request != NULL && c->request_bytes >= YW__OFF_LOOP_BYTES) {
            c->work.data = c;
            c->pending++;
            if (uv_queue_work(yw_runtime_loop(srv->rt), &c->work, yw__free_request_work,
                              yw__request_freed) == 0) {
                return;
            }
            c->pending--;
        }
    }
    if (c->rid_md_set) {
        grpc_slice_unref(c->rid_md.value);
    }
    yw__drop_queue(c);
    yw__request_drop(c);
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
    if (c->fake != NULL) {
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else if (srv->inproc == c) {
            srv->inproc = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        c->fake->unref(c);
    } else if (c->call != NULL) {
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
        ProtobufCMessage *msg = yw__unpack(m->request, bb, &c->req_arena);
        grpc_byte_buffer_destroy(bb);
        if (msg == NULL) {
            yw_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                           "request: not a valid %s message (malformed protobuf)",
                           m->request->name);
        } else if (yw__check_strings(c, msg) != 0) {
            yw_arena_reset(&c->req_arena);
        } else {
            yw_log_ctx_t prev = yw__enter(c);
            c->delivering = 1;
            m->on_message(c, msg);
            c->delivering = 0;
            yw__leave(prev);
            /* The message is gone; its blocks stay for the next one (a few: an odd wide
             * message does not keep its blocks for the rest of the stream). */
            yw_arena_reset_keep(&c->req_arena, YW__STREAM_ARENA_BLOCKS);
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
    if (yw__start_batch(c, &op, 1, &c->tag_recv) != GRPC_CALL_OK) {
        c->pending--;
        c->receiving = 0;
        c->dead = 1;
        yw__cancel(c, GRPC_STATUS_INTERNAL, "receive failed");
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
    if (yw__start_batch(c, &op, 1, &c->tag_close) != GRPC_CALL_OK) {
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
    if (!srv->shutting_down) {
        yw__request_call(srv, c->reg);
    }
    yw__call_arrived(c);
}

void yw__call_arrived(yw_call_t *c)
{
    c->srv->live_calls++;
    if (c->fake != NULL) {
        /* gRPC does not know it: the grace period cancels it (server.c) from this list. */
        c->next = c->srv->inproc;
        if (c->next != NULL) {
            c->next->prev = c;
        }
        c->srv->inproc = c;
    }
    c->start_ns = yw__now_ns();
    yw__count_start(c);
    c->pending++; /* held until the end of this callback, see yw__on_send */
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
    yw__cancel(c, GRPC_STATUS_INTERNAL, "close failed");
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
    if (c->reg->svc->admit != NULL) {
        if (c->reg->svc->admit(c) != 0) {
            return;
        }
        c->admitted = 1;
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

/* Hands an unpacked request to on_message, or fails the call (malformed, not UTF-8). */
static void yw__deliver_request(yw_call_t *c, const char *utf8_err)
{
    const yw_method_t *m = c->reg->method;
    if (c->request == NULL) {
        yw_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                       "request: not a valid %s message (malformed protobuf)", m->request->name);
        return;
    }
    if (utf8_err != NULL && utf8_err[0] != '\0') {
        yw_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, utf8_err);
        return;
    }
    yw_log_ctx_t prev = yw__enter(c);
    m->on_message(c, c->request);
    yw__leave(prev);
}

/* Thread pool: unpacks and checks c->work_bb (the loop does not touch the call meanwhile
 * but for its flags; c->pending holds it). */
static void yw__unpack_work(uv_work_t *w)
{
    yw_call_t *c = w->data;
    c->request = yw__unpack(c->reg->method->request, c->work_bb, &c->req_arena);
    c->work_err[0] = '\0';
    if (c->request != NULL) {
        yw__check_strings_into(c, c->request, c->work_err, sizeof c->work_err);
    }
}

/* Loop: the request is unpacked; on_message (a call cancelled meanwhile is answered all
 * the same: finishing a cancelled call is harmless). */
static void yw__unpacked(uv_work_t *w, int status)
{
    yw_call_t *c = w->data;
    grpc_byte_buffer_destroy(c->work_bb);
    c->work_bb = NULL;
    if (status != 0 && c->request == NULL) {
        yw_call_finish(c, GRPC_STATUS_INTERNAL, "request: could not be unpacked (%s)",
                       uv_strerror(status));
    } else if (!c->finished) {
        yw__deliver_request(c, c->work_err);
    }
    c->pending--;
    yw__call_maybe_free(c);
}

/* Unpacks the request of a unary or server-streaming call (its one message, in
 * c->payload) and hands it to on_message: on the loop, or for a large one on the thread
 * pool first (YW__OFF_LOOP_BYTES); streams start reading instead. */
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
        c->request_bytes = grpc_byte_buffer_length(bb);
        if (c->request_bytes >= YW__OFF_LOOP_BYTES) {
            c->work_bb = bb;
            c->work.data = c;
            c->pending++; /* until yw__unpacked() */
            if (uv_queue_work(yw_runtime_loop(c->srv->rt), &c->work, yw__unpack_work,
                              yw__unpacked) == 0) {
                return;
            }
            c->pending--;
            c->work_bb = NULL; /* no thread pool: on the loop, as a small one */
        }
        c->request = yw__unpack(m->request, bb, &c->req_arena);
        grpc_byte_buffer_destroy(bb);
        char err[256] = "";
        if (c->request != NULL) {
            yw__check_strings_into(c, c->request, err, sizeof err);
        }
        yw__deliver_request(c, err);
    } else {
        yw__start_recv(c);
    }
}

void yw__call_init(yw_call_t *c, yw_server_t *srv, const yw__reg_t *reg)
{
    c->srv = srv;
    c->reg = reg;
    c->tag_new.cb = yw__on_new_call;
    c->tag_close.cb = yw__on_close;
    c->tag_recv.cb = yw__on_recv;
    c->tag_send.cb = yw__on_send;
    c->tag_reap.cb = yw__on_call_reap;
    grpc_metadata_array_init(&c->md);
}

void yw__request_call(yw_server_t *srv, const yw__reg_t *reg)
{
    yw_call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        yw_log(YW_LOG_ERROR, "out of memory requesting a call");
        return;
    }
    yw__call_init(c, srv, reg);
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
