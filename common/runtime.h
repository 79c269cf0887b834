/*
 * runtime.h — one thread drives both gRPC C core and libuv.
 *
 * The loop waits in grpc_completion_queue_next() with the deadline libuv wants next
 * (uv_backend_timeout), drains every other ready completion with a zero deadline,
 * dispatches each one, then runs uv_run(UV_RUN_NOWAIT). A small waker thread polls
 * uv_backend_fd() and, when libuv has work (thread-pool completions, uv_async, signals),
 * queues a tag into the completion queue so the loop wakes at once. See DESIGN.md,
 * "Runtime model". All application state of a service is touched only on this thread.
 */
#ifndef YW_RUNTIME_H
#define YW_RUNTIME_H

#include <grpc/grpc.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Every tag that goes into the completion queue starts with this struct. `cb` runs on
 * the loop thread with the `ok` flag of the completion.
 */
typedef struct st_yw_tag_t {
    void (*cb)(struct st_yw_tag_t *tag, int ok);
} yw_tag_t;

typedef struct st_yw_runtime_t yw_runtime_t;

/**
 * Creates the runtime: a libuv loop, a completion queue and the waker thread. Calls
 * grpc_init(). Returns 0 or a negative errno; on error nothing is left allocated.
 */
int yw_runtime_create(yw_runtime_t **out);

/** The loop that application code runs on. Valid until yw_runtime_destroy(). */
uv_loop_t *yw_runtime_loop(yw_runtime_t *rt);

/** The completion queue every server and channel of this runtime uses. */
grpc_completion_queue *yw_runtime_cq(yw_runtime_t *rt);

/**
 * Runs until yw_runtime_stop() is called and the loop has nothing more to do for the
 * completion queue. Returns 0.
 */
int yw_runtime_run(yw_runtime_t *rt);

/**
 * Runs tag->cb(tag, 1) on the loop right after the callback that is running now returns
 * (a completion's, or libuv's), before the loop waits again. For work that must not
 * happen under the caller's feet, e.g. freeing an object the caller may still touch.
 * Returns 0 or -ENOMEM. Loop thread only.
 */
int yw_runtime_defer(yw_runtime_t *rt, yw_tag_t *tag);

/** Asks yw_runtime_run() to return after the current iteration. Loop thread only. */
void yw_runtime_stop(yw_runtime_t *rt);

/**
 * Stops the waker, shuts down and drains the completion queue, closes the loop and
 * calls grpc_shutdown(). Every server and channel must be destroyed before.
 */
void yw_runtime_destroy(yw_runtime_t *rt);

/**
 * Credentials every channel created on this runtime uses (client.h): TLS to peers
 * (tls.h, --peer-tls-ca). NULL, the default, is plaintext. The runtime takes the
 * reference and releases it in yw_runtime_destroy(); a second call releases the
 * previous one. Set it before creating channels. Loop thread.
 */
void yw_runtime_set_channel_credentials(yw_runtime_t *rt, grpc_channel_credentials *creds);

/** The credentials set above (borrowed), or NULL for plaintext. */
grpc_channel_credentials *yw_runtime_channel_credentials(yw_runtime_t *rt);

/** The wall clock (UTC) as a protobuf Timestamp's seconds and nanos. */
void yw_wallclock_now(int64_t *seconds, int32_t *nanos);

/** Milliseconds left until `deadline` (any clock), INT64_MAX for an infinite one. */
int64_t yw_deadline_remaining_ms(gpr_timespec deadline);

#ifdef __cplusplus
}
#endif
#endif
