/*
 * call_fake.c — fake calls (call_fake.h): a yw_call_t of call.c whose transport is this
 * file instead of gRPC C core (server_internal.h, yw__fake_ops_t). It emulates what the
 * server side of a grpc_call does with the batches call.c starts:
 *
 *   SEND_INITIAL_METADATA, SEND_MESSAGE, SEND_STATUS_FROM_SERVER  done at once: the
 *       message and the status are kept for the test (nothing goes out once the call
 *       was cancelled, and the batch then fails, as gRPC's does);
 *   RECV_MESSAGE  takes the next message the client sent, NULL at the half-close or
 *       after a cancel; until there is one, the batch waits;
 *   RECV_CLOSE_ON_SERVER  completes once the status went out (cancelled = 0) or the
 *       call was cancelled (cancelled = 1); until then, the batch waits.
 *
 * Every batch completes later, never inside the start: completions are queued and run
 * from an idle handle on the loop, one at a time, as the runtime runs gRPC's. One queue
 * for every fake call of the thread, so that calls started together arrive in the order
 * they were started.
 */
#include "common/call_fake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/log.h"
#include "common/server_internal.h"
#include "common/vec.h"

/* How often a run looks at its condition besides after each step of the call. */
#define YW__FAKE_POLL_MS 5

typedef struct {
    yw_fake_call_t *fc;
    yw_tag_t *tag;
    int ok;
} yw__fake_done_t;

/* The completions of the thread's fake calls, in the order they were queued. */
static _Thread_local struct {
    yw__fake_done_t *v;
    size_t n, cap;
} yw__fake_queue;

typedef struct {
    uint8_t *data;
    size_t len;
    ProtobufCMessage *unpacked; /* made on first use */
} yw__fake_msg_t;

struct st_yw_fake_call_t {
    yw_runtime_t *rt;
    yw_server_t *srv; /* the call's yw_call_server(): the config's, or the fake's own */
    int own_srv;      /* srv is the fake's (never started), destroyed with it */
    yw_service_t svc; /* the service, with the test's ctx */
    yw__reg_t reg;
    yw_call_t *call; /* NULL once the runtime freed it */
    yw_tag_t tag_arrive;
    /* request metadata: the strings the call's metadata slices point into */
    char **md_strings;
    size_t n_md_strings;
    char *caller;
    /* the client's side */
    grpc_byte_buffer **inbox; /* sent by the client; [inbox_head, n_inbox) not yet read */
    size_t inbox_head, n_inbox, cap_inbox;
    size_t n_read;
    int half_closed;
    int cancelled; /* by the client, the deadline, or the server (a refused batch) */
    /* batches waiting */
    grpc_byte_buffer **recv_into;
    yw_tag_t *recv_tag;
    int *close_cancelled;
    yw_tag_t *close_tag;
    uv_idle_t idle; /* runs the thread's completions */
    /* what the client got */
    yw__fake_msg_t *sent;
    size_t n_sent, cap_sent;
    int code; /* -1: no status yet */
    char *status_msg;
    char *trailing_rid;
    int status_sent;
    int over;
    /* running the loop */
    uv_timer_t deadline_timer, poll_timer;
    int (*until)(yw_fake_call_t *fc, void *arg);
    void *until_arg;
    gpr_timespec deadline;
    int running;
    uint64_t run_start_ns;
    int handles_open;
    /* the client told (in process: client.h's channel) */
    void (*on_status)(yw_fake_call_t *fc, void *arg);
    void *on_status_arg;
    uv_timer_t status_timer; /* runs on_status once the status is known */
    int told;                /* on_status ran */
    int detached;            /* yw_fake_call_detach(): freed once over and told */
};

static grpc_byte_buffer *yw__fake_bb(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* `msg` packed into a byte buffer, as a client sends it; NULL when it does not pack. */
static grpc_byte_buffer *yw__fake_pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL || protobuf_c_message_pack(msg, buf) != len) {
        free(buf);
        return NULL;
    }
    grpc_byte_buffer *bb = yw__fake_bb(buf, len);
    free(buf);
    return bb;
}

/* ---- running the loop ---- */

static int yw__fake_met(yw_fake_call_t *fc)
{
    return fc->over || (fc->until != NULL && fc->until(fc, fc->until_arg));
}

static int yw__fake_run_expired(const yw_fake_call_t *fc)
{
    return uv_hrtime() - fc->run_start_ns >= (uint64_t)YW_FAKE_CALL_RUN_MS * 1000000u;
}

/* A step of the call happened: the run stops once its condition is met. */
static void yw__fake_check(yw_fake_call_t *fc)
{
    if (fc->running && yw__fake_met(fc)) {
        fc->running = 0;
        yw_runtime_stop(fc->rt);
    }
}

static void yw__fake_on_idle(uv_idle_t *h)
{
    /* Completions queued by these callbacks run in this turn too, in order. */
    for (size_t i = 0; i < yw__fake_queue.n; i++) {
        yw__fake_done_t d = yw__fake_queue.v[i];
        d.tag->cb(d.tag, d.ok);
        yw__fake_check(d.fc);
    }
    yw__fake_queue.n = 0;
    uv_idle_stop(h);
    yw__fake_check(h->data);
}

/* Completes `tag` with `ok` on the loop, after the running callback. */
static void yw__fake_complete(yw_fake_call_t *fc, yw_tag_t *tag, int ok)
{
    if (YW_VEC_GROW(yw__fake_queue.v, yw__fake_queue.n, yw__fake_queue.cap, 1, 16) != 0) {
        /* Out of memory in a test: nothing sensible is left to do. */
        yw_log(YW_LOG_ERROR, "fake call: out of memory queueing a completion");
        abort();
    }
    yw__fake_queue.v[yw__fake_queue.n++] = (yw__fake_done_t){fc, tag, ok};
    uv_idle_start(&fc->idle, yw__fake_on_idle);
}

static void yw__fake_on_poll(uv_timer_t *t)
{
    yw_fake_call_t *fc = t->data;
    yw__fake_check(fc);
    if (fc->running && yw__fake_run_expired(fc)) {
        fc->running = 0;
        yw_runtime_stop(fc->rt);
    }
}

int yw_fake_call_run_until(yw_fake_call_t *fc, int (*until)(yw_fake_call_t *fc, void *arg),
                           void *arg)
{
    fc->until = until;
    fc->until_arg = arg;
    fc->run_start_ns = uv_hrtime();
    while (!yw__fake_met(fc)) {
        if (yw__fake_run_expired(fc)) {
            fc->until = NULL;
            return -ETIMEDOUT;
        }
        fc->running = 1;
        uv_timer_start(&fc->poll_timer, yw__fake_on_poll, YW__FAKE_POLL_MS, YW__FAKE_POLL_MS);
        yw_runtime_run(fc->rt);
        uv_timer_stop(&fc->poll_timer);
        fc->running = 0;
    }
    int met = until != NULL && until(fc, arg);
    fc->until = NULL;
    return until == NULL || met ? 0 : -ECANCELED;
}

int yw_fake_call_run(yw_fake_call_t *fc)
{
    return yw_fake_call_run_until(fc, NULL, NULL);
}

/* ---- the transport (yw__fake_ops_t) ---- */

static void yw__fake_on_status_timer(uv_timer_t *t);

static void yw__fake_set_status(yw_fake_call_t *fc, grpc_status_code code, const char *msg)
{
    if (fc->code >= 0) {
        return;
    }
    fc->code = (int)code;
    free(fc->status_msg);
    fc->status_msg = strdup(msg != NULL ? msg : "");
    if (fc->on_status != NULL) {
        /* Not from inside call.c: on the next turn of the loop. */
        uv_timer_start(&fc->status_timer, yw__fake_on_status_timer, 0, 0);
    }
}

/* The call is cancelled (client, deadline or server): what waits completes. */
static void yw__fake_cancelled(yw_fake_call_t *fc, grpc_status_code code, const char *why)
{
    if (fc->cancelled || fc->over) {
        return;
    }
    fc->cancelled = 1;
    if (!fc->status_sent) {
        yw__fake_set_status(fc, code, why);
    }
    if (fc->recv_tag != NULL) {
        *fc->recv_into = NULL;
        yw__fake_complete(fc, fc->recv_tag, 0);
        fc->recv_tag = NULL;
    }
    if (fc->close_tag != NULL) {
        *fc->close_cancelled = !fc->status_sent;
        yw__fake_complete(fc, fc->close_tag, 1);
        fc->close_tag = NULL;
    }
}

/* RECV_MESSAGE: the next message the client sent, or NULL at the half-close. */
static int yw__fake_try_recv(yw_fake_call_t *fc)
{
    if (fc->inbox_head < fc->n_inbox) {
        *fc->recv_into = fc->inbox[fc->inbox_head++];
        if (fc->inbox_head == fc->n_inbox) {
            fc->inbox_head = fc->n_inbox = 0;
        }
        fc->n_read++;
    } else if (fc->half_closed) {
        *fc->recv_into = NULL;
    } else {
        return 0;
    }
    yw__fake_complete(fc, fc->recv_tag, 1);
    fc->recv_tag = NULL;
    return 1;
}

static int yw__fake_keep_message(yw_fake_call_t *fc, grpc_byte_buffer *bb)
{
    if (YW_VEC_GROW(fc->sent, fc->n_sent, fc->cap_sent, 1, 4) != 0) {
        return -ENOMEM;
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        return -EIO;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    size_t len = GRPC_SLICE_LENGTH(all);
    uint8_t *data = malloc(len ? len : 1);
    if (data == NULL) {
        grpc_slice_unref(all);
        return -ENOMEM;
    }
    memcpy(data, GRPC_SLICE_START_PTR(all), len);
    grpc_slice_unref(all);
    fc->sent[fc->n_sent].data = data;
    fc->sent[fc->n_sent].len = len;
    fc->sent[fc->n_sent].unpacked = NULL;
    fc->n_sent++;
    return 0;
}

static void yw__fake_keep_status(yw_fake_call_t *fc, const grpc_op *op)
{
    const grpc_slice *details = op->data.send_status_from_server.status_details;
    char *msg = NULL;
    if (details != NULL) {
        msg = grpc_slice_to_c_string(*details);
    }
    yw__fake_set_status(fc, op->data.send_status_from_server.status, msg);
    gpr_free(msg);
    for (size_t i = 0; i < op->data.send_status_from_server.trailing_metadata_count; i++) {
        const grpc_metadata *m = &op->data.send_status_from_server.trailing_metadata[i];
        if (grpc_slice_str_cmp(m->key, "x-request-id") == 0) {
            free(fc->trailing_rid);
            fc->trailing_rid = grpc_slice_to_c_string(m->value);
        }
    }
    fc->status_sent = 1;
}

static grpc_call_error yw__fake_start_batch(yw_call_t *c, const grpc_op *ops, size_t n,
                                            yw_tag_t *tag)
{
    yw_fake_call_t *fc = c->fake_arg;
    int ok = 1, recv = 0, close = 0;
    for (size_t i = 0; i < n; i++) {
        switch (ops[i].op) {
        case GRPC_OP_SEND_INITIAL_METADATA:
            break;
        case GRPC_OP_SEND_MESSAGE:
            if (fc->cancelled || fc->status_sent) {
                ok = 0;
            } else if (yw__fake_keep_message(fc, ops[i].data.send_message.send_message) != 0) {
                return GRPC_CALL_ERROR;
            }
            break;
        case GRPC_OP_SEND_STATUS_FROM_SERVER:
            if (fc->cancelled || fc->status_sent) {
                ok = 0;
            } else {
                yw__fake_keep_status(fc, &ops[i]);
            }
            break;
        case GRPC_OP_RECV_MESSAGE:
            if (fc->recv_tag != NULL) {
                return GRPC_CALL_ERROR_TOO_MANY_OPERATIONS;
            }
            recv = 1;
            fc->recv_into = ops[i].data.recv_message.recv_message;
            break;
        case GRPC_OP_RECV_CLOSE_ON_SERVER:
            if (fc->close_tag != NULL) {
                return GRPC_CALL_ERROR_TOO_MANY_OPERATIONS;
            }
            close = 1;
            fc->close_cancelled = ops[i].data.recv_close_on_server.cancelled;
            break;
        default:
            return GRPC_CALL_ERROR_NOT_ON_SERVER;
        }
    }
    if (recv && close) {
        return GRPC_CALL_ERROR; /* call.c never asks for both at once */
    }
    if (recv) {
        fc->recv_tag = tag;
        if (fc->cancelled) {
            *fc->recv_into = NULL;
            fc->recv_tag = NULL;
            yw__fake_complete(fc, tag, 0);
        } else {
            yw__fake_try_recv(fc);
        }
    } else if (close && !fc->status_sent && !fc->cancelled) {
        fc->close_tag = tag; /* completes with the status or the cancel */
    } else {
        if (close) {
            *fc->close_cancelled = !fc->status_sent;
        }
        yw__fake_complete(fc, tag, ok);
    }
    if (fc->status_sent && fc->close_tag != NULL) {
        *fc->close_cancelled = 0;
        yw__fake_complete(fc, fc->close_tag, 1);
        fc->close_tag = NULL;
    }
    return GRPC_CALL_OK;
}

static void yw__fake_cancel(yw_call_t *c, grpc_status_code code, const char *why)
{
    yw__fake_cancelled(c->fake_arg, code, why);
}

static void yw__fake_close_handles(yw_fake_call_t *fc);

/* The client has its status: on_status runs; a detached fake whose call the runtime
 * freed goes. */
static void yw__fake_on_status_timer(uv_timer_t *t)
{
    yw_fake_call_t *fc = t->data;
    fc->told = 1;
    fc->on_status(fc, fc->on_status_arg);
    if (fc->detached && fc->over) {
        yw__fake_close_handles(fc); /* detached, over, told: freed once closed */
    }
}

static void yw__fake_unref(yw_call_t *c)
{
    yw_fake_call_t *fc = c->fake_arg;
    fc->call = NULL;
    fc->over = 1;
    uv_timer_stop(&fc->deadline_timer);
    /* A call that ended without a status (a batch the transport refused, out of memory):
     * the client is told all the same. */
    yw__fake_set_status(fc, GRPC_STATUS_INTERNAL, "the call ended without a status");
    if (fc->detached && (fc->told || fc->on_status == NULL)) {
        yw__fake_close_handles(fc); /* detached, over, told: freed once closed */
    }
    yw__fake_check(fc);
}

static const yw__fake_ops_t yw__fake_ops = {
    .start_batch = yw__fake_start_batch,
    .cancel = yw__fake_cancel,
    .unref = yw__fake_unref,
};

/* ---- making a call ---- */

static void yw__fake_on_arrive(yw_tag_t *tag, int ok)
{
    yw_fake_call_t *fc = YW__CONTAINER(tag, yw_fake_call_t, tag_arrive);
    (void)ok;
    yw__call_arrived(fc->call);
}

static void yw__fake_on_deadline(uv_timer_t *t)
{
    yw_fake_call_t *fc = t->data;
    /* libuv's clock may run ahead of the deadline's by a millisecond: the call is
     * cancelled once yw_call_remaining_ms() says the deadline passed, as gRPC does. */
    int64_t left = yw_deadline_remaining_ms(fc->deadline);
    if (left > 0) {
        uv_timer_start(t, yw__fake_on_deadline, (uint64_t)left, 0);
        return;
    }
    yw__fake_cancelled(fc, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
}

/* The method called `name` of `svc`'s table, or NULL. */
static const yw_method_t *yw__fake_method(const yw_service_t *svc, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < svc->n_methods; i++) {
        const char *path = svc->methods[i].path;
        const char *slash = strrchr(path, '/');
        if (slash != NULL && strlen(slash + 1) == nlen && memcmp(slash + 1, name, nlen) == 0) {
            return &svc->methods[i];
        }
    }
    return NULL;
}

/* The server's registration of the method at `path` ("/pkg.Service/Method"), or NULL
 * (none, or the server is not started: it registers its methods when it starts). */
static const yw__reg_t *yw__fake_served(const yw_server_t *srv, const char *path)
{
    for (size_t i = 0; srv->regs != NULL && i < srv->n_regs; i++) {
        if (strcmp(srv->regs[i].method->path, path) == 0) {
            return &srv->regs[i];
        }
    }
    return NULL;
}

/* Adds a copy of `s` to the strings the call's metadata points into; NULL: no memory. */
static const char *yw__fake_keep_string(yw_fake_call_t *fc, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL) {
        return NULL;
    }
    fc->md_strings[fc->n_md_strings++] = copy;
    return copy;
}

/* The request metadata: x-request-id first, then the config's pairs. */
static int yw__fake_metadata(yw_fake_call_t *fc, yw_call_t *c, const yw_fake_call_config_t *cfg)
{
    size_t n = cfg->request_id != NULL ? 1 : 0;
    for (const char *const *m = cfg->metadata; m != NULL && m[0] != NULL && m[1] != NULL; m += 2) {
        n++;
    }
    if (n == 0) {
        return 0;
    }
    fc->md_strings = calloc(2 * n, sizeof *fc->md_strings);
    /* grpc_metadata_array_destroy() frees the array with gpr_free(). */
    c->md.metadata = gpr_malloc(n * sizeof *c->md.metadata);
    if (fc->md_strings == NULL || c->md.metadata == NULL) {
        return -ENOMEM;
    }
    c->md.capacity = n;
    const char *pairs[2];
    const char *const *m = cfg->metadata;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && cfg->request_id != NULL) {
            pairs[0] = "x-request-id";
            pairs[1] = cfg->request_id;
        } else {
            pairs[0] = m[0];
            pairs[1] = m[1];
            m += 2;
        }
        const char *k = yw__fake_keep_string(fc, pairs[0]);
        const char *v = yw__fake_keep_string(fc, pairs[1]);
        if (k == NULL || v == NULL) {
            return -ENOMEM;
        }
        grpc_metadata *md = &c->md.metadata[c->md.count++];
        memset(md, 0, sizeof *md);
        md->key = grpc_slice_from_static_string(k);
        md->value = grpc_slice_from_static_buffer(v, strlen(v));
    }
    return 0;
}

static void yw__fake_free(yw_fake_call_t *fc)
{
    for (size_t i = 0; i < fc->n_md_strings; i++) {
        free(fc->md_strings[i]);
    }
    free(fc->md_strings);
    free(fc->caller);
    for (size_t i = fc->inbox_head; i < fc->n_inbox; i++) {
        grpc_byte_buffer_destroy(fc->inbox[i]);
    }
    free(fc->inbox);
    for (size_t i = 0; i < fc->n_sent; i++) {
        free(fc->sent[i].data);
        if (fc->sent[i].unpacked != NULL) {
            protobuf_c_message_free_unpacked(fc->sent[i].unpacked, NULL);
        }
    }
    free(fc->sent);
    free(fc->status_msg);
    free(fc->trailing_rid);
    if (fc->srv != NULL && fc->own_srv) {
        yw_server_destroy(fc->srv);
    }
    free(fc);
}

/* The call, as gRPC would hand it over: metadata, deadline, the unary request. */
static int yw__fake_make_call(yw_fake_call_t *fc, const yw_fake_call_config_t *cfg)
{
    const yw_method_t *m = fc->reg.method;
    yw_call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    yw__call_init(c, fc->srv, &fc->reg);
    c->fake = &yw__fake_ops;
    c->fake_arg = fc;
    fc->call = c;
    int rc = yw__fake_metadata(fc, c, cfg);
    if (rc != 0) {
        return rc;
    }
    c->caller = fc->caller;
    c->deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    if (cfg->timeout_ms > 0) {
        c->deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_millis(cfg->timeout_ms, GPR_TIMESPAN));
    }
    fc->deadline = c->deadline;
    if (m->kind == YW_METHOD_UNARY || m->kind == YW_METHOD_SERVER_STREAMING) {
        if (cfg->request != NULL) {
            c->payload = yw__fake_pack(cfg->request);
            if (c->payload == NULL) {
                return -EINVAL;
            }
        } else if (cfg->request_bytes != NULL) {
            c->payload = yw__fake_bb(cfg->request_bytes, cfg->request_len);
        }
    }
    return 0;
}

/* Frees a call that never arrived (what yw__call_init() and the metadata made). */
static void yw__fake_drop_call(yw_fake_call_t *fc)
{
    yw_call_t *c = fc->call;
    if (c == NULL) {
        return;
    }
    if (c->payload != NULL) {
        grpc_byte_buffer_destroy(c->payload);
    }
    grpc_metadata_array_destroy(&c->md);
    free(c);
    fc->call = NULL;
}

int yw_fake_call_start(yw_runtime_t *rt, const yw_fake_call_config_t *cfg, yw_fake_call_t **out)
{
    if (cfg->method == NULL || (cfg->service == NULL && cfg->server == NULL)) {
        return -EINVAL;
    }
    const yw__reg_t *served = NULL;
    const yw_method_t *method = NULL;
    if (cfg->server != NULL) {
        served = yw__fake_served(cfg->server, cfg->method);
        if (served == NULL) {
            return cfg->server->regs == NULL ? -EINVAL : -ENOENT;
        }
        if (cfg->server->shutting_down) {
            return -ESHUTDOWN;
        }
    } else {
        method = yw__fake_method(cfg->service, cfg->method);
        if (method == NULL) {
            return -ENOENT;
        }
    }
    yw_fake_call_t *fc = calloc(1, sizeof *fc);
    if (fc == NULL) {
        return -ENOMEM;
    }
    fc->rt = rt;
    fc->code = -1;
    fc->on_status = cfg->on_status;
    fc->on_status_arg = cfg->on_status_arg;
    int rc = 0;
    if (served != NULL) {
        fc->srv = cfg->server;
    } else {
        char err[128];
        yw_server_config_t scfg = {.listen = "fake"};
        rc = yw_server_create(rt, &scfg, &fc->srv, err, sizeof err);
        fc->own_srv = rc == 0;
    }
    if (rc == 0 && cfg->caller != NULL && (fc->caller = strdup(cfg->caller)) == NULL) {
        rc = -ENOMEM;
    }
    if (rc != 0) {
        yw__fake_free(fc);
        return rc;
    }
    if (served != NULL) {
        fc->reg = *served; /* the server's service, method and metrics */
    } else {
        fc->svc = *cfg->service;
        fc->svc.ctx = cfg->service_ctx;
        fc->reg.srv = fc->srv;
        fc->reg.svc = &fc->svc;
        fc->reg.method = method;
    }
    fc->reg.auth_open = 1;
    fc->reg.read_later = 0; /* no auth check to wait for: the request comes with the call */
    if ((rc = yw__fake_make_call(fc, cfg)) != 0) {
        yw__fake_drop_call(fc);
        yw__fake_free(fc);
        return rc;
    }
    uv_loop_t *loop = yw_runtime_loop(rt);
    uv_idle_init(loop, &fc->idle);
    uv_timer_init(loop, &fc->deadline_timer);
    uv_timer_init(loop, &fc->poll_timer);
    uv_timer_init(loop, &fc->status_timer);
    fc->idle.data = fc->deadline_timer.data = fc->poll_timer.data = fc->status_timer.data = fc;
    fc->handles_open = 4;
    if (cfg->timeout_ms > 0) {
        uv_timer_start(&fc->deadline_timer, yw__fake_on_deadline, (uint64_t)cfg->timeout_ms, 0);
    }
    fc->tag_arrive.cb = yw__fake_on_arrive;
    yw__fake_complete(fc, &fc->tag_arrive, 1);
    *out = fc;
    return 0;
}

/* ---- the client's side ---- */

/* Whether the client may still send on the call: 0, or the error to return. */
static int yw__fake_client_open(const yw_fake_call_t *fc)
{
    yw_method_kind_t k = fc->reg.method->kind;
    if (k != YW_METHOD_CLIENT_STREAMING && k != YW_METHOD_BIDI_STREAMING) {
        return -EINVAL;
    }
    if (fc->cancelled || fc->over) {
        return -ECANCELED;
    }
    return fc->half_closed ? -EPIPE : 0;
}

int yw_fake_call_send(yw_fake_call_t *fc, const ProtobufCMessage *msg)
{
    int rc = yw__fake_client_open(fc);
    if (rc != 0) {
        return rc;
    }
    if (YW_VEC_GROW(fc->inbox, fc->n_inbox, fc->cap_inbox, 1, 16) != 0) {
        return -ENOMEM;
    }
    grpc_byte_buffer *bb = yw__fake_pack(msg);
    if (bb == NULL) {
        return -EINVAL;
    }
    fc->inbox[fc->n_inbox++] = bb;
    if (fc->recv_tag != NULL) {
        yw__fake_try_recv(fc);
    }
    return 0;
}

int yw_fake_call_close_send(yw_fake_call_t *fc)
{
    int rc = yw__fake_client_open(fc);
    if (rc != 0) {
        return rc;
    }
    fc->half_closed = 1;
    if (fc->recv_tag != NULL) {
        yw__fake_try_recv(fc);
    }
    return 0;
}

void yw_fake_call_cancel(yw_fake_call_t *fc)
{
    yw__fake_cancelled(fc, GRPC_STATUS_CANCELLED, "Cancelled");
}

/* ---- what the client got ---- */

int yw_fake_call_over(const yw_fake_call_t *fc)
{
    return fc->over;
}

size_t yw_fake_call_n_read(const yw_fake_call_t *fc)
{
    return fc->n_read;
}

size_t yw_fake_call_n_sent(const yw_fake_call_t *fc)
{
    return fc->n_sent;
}

const uint8_t *yw_fake_call_sent(const yw_fake_call_t *fc, size_t i, size_t *len)
{
    if (i >= fc->n_sent) {
        return NULL;
    }
    if (len != NULL) {
        *len = fc->sent[i].len;
    }
    return fc->sent[i].data;
}

const ProtobufCMessage *yw_fake_call_response(yw_fake_call_t *fc, size_t i)
{
    if (i >= fc->n_sent) {
        return NULL;
    }
    yw__fake_msg_t *m = &fc->sent[i];
    if (m->unpacked == NULL) {
        m->unpacked = protobuf_c_message_unpack(fc->reg.method->response, NULL, m->len, m->data);
    }
    return m->unpacked;
}

int yw_fake_call_status(const yw_fake_call_t *fc, const char **msg)
{
    if (msg != NULL) {
        *msg = fc->code >= 0 && fc->status_msg != NULL ? fc->status_msg : "";
    }
    return fc->code;
}

const char *yw_fake_call_trailing_request_id(const yw_fake_call_t *fc)
{
    return fc->trailing_rid;
}

/* ---- the end ---- */

/* An empty queue of completions goes with the last fake call that leaves it empty. */
static void yw__fake_queue_trim(void)
{
    if (yw__fake_queue.n == 0) {
        free(yw__fake_queue.v);
        yw__fake_queue.v = NULL;
        yw__fake_queue.cap = 0;
    }
}

static void yw__fake_on_closed(uv_handle_t *h)
{
    yw_fake_call_t *fc = h->data;
    if (--fc->handles_open > 0) {
        return;
    }
    if (fc->detached) {
        yw__fake_queue_trim();
        yw__fake_free(fc);
    } else {
        yw_runtime_stop(fc->rt);
    }
}

static void yw__fake_close_handles(yw_fake_call_t *fc)
{
    uv_close((uv_handle_t *)&fc->idle, yw__fake_on_closed);
    uv_close((uv_handle_t *)&fc->deadline_timer, yw__fake_on_closed);
    uv_close((uv_handle_t *)&fc->poll_timer, yw__fake_on_closed);
    uv_close((uv_handle_t *)&fc->status_timer, yw__fake_on_closed);
}

void yw_fake_call_detach(yw_fake_call_t *fc)
{
    fc->detached = 1;
    if (fc->over && (fc->told || fc->on_status == NULL)) {
        yw__fake_close_handles(fc); /* detached, over, told: freed once closed */
    }
}

void yw_fake_call_destroy(yw_fake_call_t *fc)
{
    if (fc == NULL) {
        return;
    }
    if (!fc->over) {
        yw_fake_call_cancel(fc);
        if (yw_fake_call_run(fc) != 0) {
            yw_log(YW_LOG_ERROR, "fake call %s: its handler never finished it; leaked",
                   fc->reg.method->path);
            return;
        }
    }
    if (fc->on_status != NULL && !fc->told && fc->code >= 0) {
        /* on_status is due on the next turn: it runs now. */
        uv_timer_stop(&fc->status_timer);
        yw__fake_on_status_timer(&fc->status_timer);
    }
    yw__fake_close_handles(fc);
    yw_runtime_run(fc->rt); /* until the last close callback stops it */
    /* Another call's idle handle runs what is queued; an empty queue goes with the last. */
    yw__fake_queue_trim();
    yw__fake_free(fc);
}
