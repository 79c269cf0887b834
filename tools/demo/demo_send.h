/*
 * demo_send.h — how the demo talks to the services, on the shared client runtime
 * (common/client.h), from the loop thread:
 *
 * - demo_chans_t: the channels to a service's nodes (one, or the nodes of an
 *   attribution cluster), each call going to the next node in turn;
 * - demo_arena_t: a bump allocator that a batch's protobuf-c request (structs, arrays,
 *   strings) is built in, reset for the next batch; nothing in it is freed one by one;
 * - demo_pipe_run(): sends a stream of batches with at most `inflight` calls in flight,
 *   resends a batch (the same request) when the call ends UNAVAILABLE, and shows
 *   progress; returns when every batch was answered or one failed for good;
 * - demo_call(): one unary call, waited for, retried on UNAVAILABLE.
 *
 * Both run the runtime's loop (yw_runtime_run) until they are done, so they are called
 * from main, one at a time, with nothing else in flight.
 */
#ifndef DEMO_SEND_H
#define DEMO_SEND_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "common/client.h"
#include "common/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Attempts of a call that keeps ending UNAVAILABLE (backoff 100 ms doubling to 2 s). */
#define DEMO_SEND_ATTEMPTS 20

/** Nodes of one service the demo may be given. */
#define DEMO_CHANS_MAX 16

/**
 * The channels to the nodes of one service: every node of an attribution cluster serves
 * every call, so each call (a resend too) goes to the next node in turn. Filled by
 * demo_chans_open(); demo_chans_close() frees what it holds (a zeroed one holds nothing).
 */
typedef struct st_demo_chans_t {
    yw_channel_t *ch[DEMO_CHANS_MAX];
    /** The nodes' "HOST:PORT", in the order given (point into `buf`). */
    const char *addr[DEMO_CHANS_MAX];
    int n;
    /** Calls started: the next goes to ch[next % n]. */
    unsigned next;
    /** Calls started on each node (resends included). */
    uint64_t calls[DEMO_CHANS_MAX];
    char *buf;
} demo_chans_t;

/**
 * Opens a channel to each of `addrs`, comma-separated HOST:PORT ("127.0.0.1:50053" or
 * "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"). Returns 0, -EINVAL for an empty
 * address, a repeated one or more than DEMO_CHANS_MAX (`err` says which), or another
 * negative errno; on error nothing stays open.
 */
int demo_chans_open(yw_runtime_t *rt, const char *addrs, demo_chans_t *c, char *err, size_t errlen);

/** Closes the channels (calls in flight complete with CANCELLED first). */
void demo_chans_close(demo_chans_t *c);

/** The channel of the next call: each node in turn. */
yw_channel_t *demo_chans_next(demo_chans_t *c);

/** A view of node i of `c` alone (for a call that must reach that node). */
demo_chans_t demo_chans_one(const demo_chans_t *c, int i);

typedef struct st_demo_arena_chunk_t demo_arena_chunk_t;

/** A chunked bump allocator; zero-initialise it ({0}) before use. */
typedef struct st_demo_arena_t {
    demo_arena_chunk_t *first, *cur;
} demo_arena_t;

/** `n` bytes aligned to 16, valid until the next reset; NULL when out of memory. */
void *demo_arena_alloc(demo_arena_t *a, size_t n);

/** A formatted copy in the arena; NULL when out of memory. */
char *demo_arena_printf(demo_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Forgets every allocation (keeps the memory for the next batch). */
void demo_arena_reset(demo_arena_t *a);

/** Frees the arena's memory. */
void demo_arena_free(demo_arena_t *a);

/** A stream of batches for demo_pipe_run(). */
typedef struct st_demo_pipe_def_t {
    /** Progress label, e.g. "exposures", and what it counts ("events", "rows"). */
    const char *label;
    const char *unit;
    /** "/pkg.Service/Method" and its response type. */
    const char *method;
    const ProtobufCMessageDescriptor *resp_desc;
    /** Calls in flight at most (>= 1). */
    int inflight;
    /** Events the stream holds in all, for progress (0: unknown). */
    uint64_t total;
    /** Deadline of each call. */
    int64_t timeout_ms;
    /**
     * Builds the next request in `arena` (reset before): returns 0 with *req set and
     * *n_events its events, 0 with *req NULL at the end of the stream, or a negative
     * errno (err says why). The request must stay valid until the next fill of the
     * same arena.
     */
    int (*fill)(void *src, demo_arena_t *arena, ProtobufCMessage **req, size_t *n_events, char *err,
                size_t errlen);
    /** An OK reply to `req` (both borrowed). Returns 0, or a negative errno to stop (err
     * says why). */
    int (*done)(void *src, const ProtobufCMessage *req, const ProtobufCMessage *resp,
                size_t n_events, char *err, size_t errlen);
    /**
     * A call that failed for good (not OK, and not UNAVAILABLE with attempts left):
     * returns 0 to go on with the next batch, or a negative errno to stop. NULL: any
     * failure stops the stream.
     */
    int (*failed)(void *src, grpc_status_code code, const char *detail, size_t n_events, char *err,
                  size_t errlen);
    void *src;
} demo_pipe_def_t;

/** What a stream took. */
typedef struct st_demo_pipe_stats_t {
    uint64_t calls;
    /** Events of the batches answered (OK or failed and let go by `failed`). */
    uint64_t events;
    /** Calls resent after UNAVAILABLE. */
    uint64_t retries;
    double seconds;
} demo_pipe_stats_t;

/**
 * Sends the stream of `def` to the nodes of `chans`, each call (a resend too) to the next
 * node in turn, and waits until it is done. Progress goes to stderr in `progress_mode`
 * (demo_progress.h). Returns 0, or a negative errno with the method, the status and what
 * failed in `err`.
 */
int demo_pipe_run(yw_runtime_t *rt, demo_chans_t *chans, const demo_pipe_def_t *def,
                  int progress_mode, demo_pipe_stats_t *stats, char *err, size_t errlen);

/**
 * One unary call to the next node of `chans`, waited for; UNAVAILABLE is retried up to
 * `attempts` times in all (100 ms apart, doubling to 2 s), each time on the next node.
 * Returns the final status: with OK, *resp is the reply (the caller frees it with
 * protobuf_c_message_free_unpacked()); otherwise `err` holds "STATUS: detail". Returns
 * GRPC_STATUS_INTERNAL when the call cannot start.
 */
grpc_status_code demo_call(yw_runtime_t *rt, demo_chans_t *chans, const char *method,
                           const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                           int64_t timeout_ms, int attempts, ProtobufCMessage **resp, char *err,
                           size_t errlen);

/** Nanoseconds of a monotonic clock. */
uint64_t demo_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
