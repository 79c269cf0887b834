/*
 * tier_peer.h — the connection to creator profile: yw_client_unary() on a channel that
 * is replaced when it keeps failing, so that calls succeed again as soon as creator
 * profile is back.
 *
 * Why: a gRPC channel that failed to connect waits out a reconnect backoff (1 s, then
 * 1.6 times longer after each failure, up to 120 s) and meanwhile fails every call at
 * once with UNAVAILABLE, also after the peer is back (measured: 7.3 s after a 20 s
 * outage with traffic). common/client.h creates channels without channel arguments, so
 * the backoff cannot be bounded there (GRPC_ARG_MAX_RECONNECT_BACKOFF_MS); instead, a
 * channel that answered UNAVAILABLE and is at least TIER_PEER_RENEW_MS old is replaced
 * by a new one for the calls that follow (a new channel connects on its first call). The
 * old one is destroyed once its own calls have completed. So after an outage, calls
 * work again within about TIER_PEER_RENEW_MS of creator profile's return, and a down
 * creator profile costs one new channel a second while calls keep coming.
 *
 * Loop thread only. Callbacks follow yw_client_unary()'s rules.
 */
#ifndef TIER_PEER_H
#define TIER_PEER_H

#include <stdint.h>

#include "common/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A channel is replaced after an UNAVAILABLE only when it is at least this old. */
#define TIER_PEER_RENEW_MS 1000

typedef struct st_tier_peer_t tier_peer_t;

/** Opens the first channel to `target`. Returns 0 or a negative errno. */
int tier_peer_create(yw_runtime_t *rt, uv_loop_t *loop, const char *target, tier_peer_t **out);

/** yw_client_unary() on the current channel. Returns 0 (cb runs once) or a negative errno. */
int tier_peer_unary(tier_peer_t *p, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                    int64_t timeout_ms, yw_unary_cb_t cb, void *arg);

/**
 * Closes every channel: calls in flight complete with CANCELLED (their callbacks still
 * run, on the loop); the peer is freed after the last one.
 */
void tier_peer_destroy(tier_peer_t *p);

#ifdef __cplusplus
}
#endif
#endif
