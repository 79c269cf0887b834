/*
 * client.h — calls to a peer service from the loop thread. Unary calls are
 * asynchronous; their completion runs on the loop. A call made while serving an
 * inbound call passes it as `parent`: the outgoing call then carries the inbound
 * call's remaining deadline and is cancelled with it (GRPC_PROPAGATE_DEFAULTS), carries
 * its request id as `x-request-id` metadata (yw_call_request_id()), and its completion
 * callback logs with that request id (log.h).
 */
#ifndef YW_CLIENT_H
#define YW_CLIENT_H

#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "common/runtime.h"
#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_channel_t yw_channel_t;

/** Reconnect backoff of every channel: a peer that comes back is reached again within
 * about YW_CHANNEL_MAX_BACKOFF_MS; while it is down, calls fail at once (UNAVAILABLE). */
#define YW_CHANNEL_MIN_BACKOFF_MS 100
#define YW_CHANNEL_MAX_BACKOFF_MS 1000

/**
 * Opens a channel to "HOST:PORT": TLS with the runtime's channel credentials when it
 * has them (yw_runtime_set_channel_credentials(), --peer-tls-ca), else plaintext.
 * Returns 0 or a negative errno.
 */
int yw_channel_create(yw_runtime_t *rt, const char *target, yw_channel_t **out);

/**
 * A channel to a server of this process (started): its calls are served in process by
 * that server's own handlers, through the runtime's call path (call_fake.h) instead of a
 * connection: no HTTP/2, no socket, no gRPC call on either side. For a service that
 * calls itself (attribution's cluster front, for the partitions its own node holds).
 * What differs from a channel to the same server's address: no auth check (the call
 * comes from the process itself), and a call is not cancelled with its parent (it runs
 * to its end, or to the earlier of the parent's deadline and its own). The request is
 * packed and unpacked as on the wire, so the handler sees what a peer would send.
 * Returns 0 or -ENOMEM.
 */
int yw_channel_create_local(yw_runtime_t *rt, yw_server_t *srv, yw_channel_t **out);

/** Closes the channel; calls still in flight complete with CANCELLED first. */
void yw_channel_destroy(yw_channel_t *ch);

/**
 * Completion of a unary call, on the loop. `resp` is NULL unless code is OK; the
 * callee owns it and frees it with protobuf_c_message_free_unpacked(resp, NULL).
 * `detail` is valid only during the callback.
 */
typedef void (*yw_unary_cb_t)(void *arg, grpc_status_code code, const char *detail,
                              ProtobufCMessage *resp);

/**
 * Starts a unary call of `method` ("/pkg.Service/Method"). The deadline is the
 * parent's when `parent` is given and `timeout_ms` <= 0, else now + timeout_ms (the
 * earlier of the two when both are set). Returns 0 (cb will run exactly once) or a
 * negative errno (cb never runs).
 */
int yw_client_unary(yw_channel_t *ch, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                    int64_t timeout_ms, yw_unary_cb_t cb, void *arg);

/** At most this many metadata pairs of the caller's per call (yw_client_unary_md()). */
#define YW_CLIENT_MAX_MD 4

/** A metadata pair: lowercase key (not "grpc-"), ASCII value; both copied by the call. */
typedef struct st_yw_client_md_t {
    const char *key;
    const char *value;
} yw_client_md_t;

/**
 * yw_client_unary() with `n_md` (at most YW_CLIENT_MAX_MD) metadata pairs of the
 * caller's sent along, after x-request-id. -EINVAL for more.
 */
int yw_client_unary_md(yw_channel_t *ch, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                       int64_t timeout_ms, const yw_client_md_t *md, size_t n_md, yw_unary_cb_t cb,
                       void *arg);

#ifdef __cplusplus
}
#endif
#endif
