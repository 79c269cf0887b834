/*
 * server_internal.h — the private half of the server runtime (server.h), shared by the
 * files that implement it: server.c (creating, starting and stopping a server, method
 * registration, auth), call.c (a call's life: receiving, dispatching, sending, freeing)
 * and server_metrics.c (the grpc_server_* metrics of every method); and call_fake.c, the
 * transport of calls that come without gRPC (call_fake.h: the tests' fake calls and the
 * in-process channel's calls, client.h). Nothing else includes it. Loop
 * thread only, as everything of server.h.
 */
#ifndef YW_SERVER_INTERNAL_H
#define YW_SERVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "common/arena.h"
#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Calls requested for unknown methods (answered UNIMPLEMENTED). */
#define YW__GENERIC_CALLS 4
/* Services one server can hold. */
#define YW__MAX_SERVICES 16
/* gRPC status codes 0..16, for the per-code metrics. */
#define YW__N_CODES 17

#define YW__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

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
    int auth_open;       /* no check: no auth config, or a no_auth service */
    int read_later;      /* unary or server streaming, message read after authorization */
} yw__reg_t;

/*
 * What a fake call (call_fake.h) has instead of gRPC C core: the three things call.c asks
 * of a grpc_call, done by the fake's transport. A call gRPC delivered has none
 * (yw_call_t.fake is NULL) and goes to gRPC directly.
 */
typedef struct st_yw__fake_ops_t {
    /* grpc_call_start_batch(): each batch's tag completes later, on the loop. */
    grpc_call_error (*start_batch)(yw_call_t *c, const grpc_op *ops, size_t n, yw_tag_t *tag);
    /* grpc_call_cancel_with_status() */
    void (*cancel)(yw_call_t *c, grpc_status_code code, const char *why);
    /* grpc_call_unref(), right before the call is freed: the fake must forget `c`. */
    void (*unref)(yw_call_t *c);
} yw__fake_ops_t;

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
    /* Where requests are unpacked (call.c, yw__unpack()): the unary request lives until
     * the call is freed, a stream's message until its on_message returns (the arena is
     * then reset for the next one). Freed with the call. */
    yw_arena_t req_arena;
    /* A large request is unpacked and checked on libuv's thread pool (yw__dispatch_request):
     * its message while that runs, and what the UTF-8 check said (work_err[0] != 0: the
     * reason it failed). */
    uv_work_t work;
    grpc_byte_buffer *work_bb;
    char work_err[256];
    size_t request_bytes; /* its size on the wire; a large one is freed on the pool too */
    int end_done;         /* yw__call_maybe_free() counted, logged and ran on_done */
    int close_cancelled;  /* RECV_CLOSE_ON_SERVER said cancelled */
    int closed;           /* RECV_CLOSE_ON_SERVER completed */
    int close_started;    /* RECV_CLOSE_ON_SERVER was started */
    int close_in_send;    /* ... as part of the send batch in flight */
    int dead;             /* a batch failed: nothing more goes out */
    int pending;
    int finished;    /* the handler finished it (status queued) */
    int status_sent; /* status went out, or never will (dead) */
    int md_sent;     /* initial metadata went out */
    int sending;     /* a send batch is in flight */
    int ended;       /* on_end was called */
    int receiving;   /* a RECV_MESSAGE is in flight */
    int paused;      /* yw_call_pause_reads(): no RECV_MESSAGE until resumed */
    int delivering;  /* on_message of a streamed message is running (yw__on_recv) */
    int admitted;    /* the service's admit let it through: released() runs at its end */
    int reap_queued; /* a deferred yw__call_maybe_free() is queued (holds `pending`) */
    yw__outmsg_t *out_head, *out_tail;
    grpc_byte_buffer *send_bb; /* the message of the send in flight */
    grpc_status_code code;
    char *status_msg;
    grpc_slice status_slice;
    void *data;
    uint64_t start_ns;
    struct st_yw_call_t *prev, *next; /* in-process calls of the server (srv->inproc) */
    grpc_metadata rid_md;             /* x-request-id in the trailing metadata of a failure */
    int rid_md_set;                   /* rid_md.value holds a slice */
    size_t rid_len;                   /* 0 until yw_call_request_id() first ran */
    const char *caller;               /* auth.h caller name, or NULL */
    const yw__fake_ops_t *fake;       /* a fake call's transport (call_fake.h); NULL: gRPC's */
    void *fake_arg;                   /* the fake's own state */
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
    yw_call_t *inproc; /* the live calls that came in process (call_fake.h), not gRPC */
    size_t requested;  /* requested from gRPC and not yet arrived */
    uv_timer_t grace_timer;
    int handles_open; /* uv handles (the grace timer) not yet closed */
    int destroy_pending;
    yw__method_metrics_t *mm; /* n_regs + 1: the last counts unknown methods */
    yw_metric_t *in_flight;
    grpc_resource_quota *quota; /* gRPC's memory budget (grpc_memory_bytes) */
};

/* ---- call.c ---- */

/*
 * Requests one call of `reg` from gRPC (NULL: a call to any unknown method); its
 * arrival dispatches it. On failure (out of memory, gRPC refused) it is logged and one
 * fewer call is kept requested.
 */
void yw__request_call(yw_server_t *srv, const yw__reg_t *reg);

/* Sets up a zeroed call of `reg` (NULL: an unknown method) on `srv` before it arrives. */
void yw__call_init(yw_call_t *c, yw_server_t *srv, const yw__reg_t *reg);

/*
 * The call has arrived (its deadline and metadata are in place, and for a unary or
 * server-streaming method read with the call its request in `payload`): counts it and
 * hands it to its handler.
 */
void yw__call_arrived(yw_call_t *c);

/* ---- server.c ---- */

/* Runs the shutdown callback once shutting down and no call is left (live or requested). */
void yw__server_check_down(yw_server_t *srv);

/* ---- server_metrics.c ---- */

/*
 * Registers the grpc_server_* metrics of every registered method and of unknown methods
 * in srv->cfg.metrics (nothing when NULL) and points each srv->regs[i].mm at its own.
 * Returns 0, or a negative errno with a message in `err`.
 */
int yw__metrics_init(yw_server_t *srv, char *err, size_t errlen);

/* Frees what yw__metrics_init() allocated (the registry keeps the metrics). */
void yw__metrics_free(yw_server_t *srv);

/* Counts a call that arrived: started_total and calls_in_flight. */
void yw__count_start(yw_call_t *c);

/*
 * Counts a call that ended with `code` after `ns` nanoseconds, once, right before it is
 * freed: handled_total, handling_seconds and calls_in_flight. No lock, no allocation
 * except the first time a method ends with a given code.
 */
void yw__count_end(yw_call_t *c, grpc_status_code code, uint64_t ns);

#ifdef __cplusplus
}
#endif
#endif
