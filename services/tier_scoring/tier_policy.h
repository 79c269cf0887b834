/*
 * tier_policy.h — the rules of a tier policy and UpdateTierPolicy's request: which
 * policies are valid, how an update_mask merges a request into the policy in force,
 * and the conversion to the yaowei.tier.v1.TierPolicy message. Pure functions: no
 * clock, no I/O, no allocation.
 *
 * Each check returns GRPC_STATUS_OK, or a status with a message in `err` that starts
 * with the field's path and states the rule, e.g. `policy.weights: must not all be
 * zero`.
 */
#ifndef TIER_POLICY_H
#define TIER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "services/tier_scoring/tier_score.h"
#include "yaowei/tier/v1/tier.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TIER_WINDOW_MAX 366

/**
 * INVALID_ARGUMENT unless: tail_min_followers >= 1, mid > tail and head > mid
 * (thresholds strictly decreasing); every weight finite and >= 0 and not all zero;
 * rising_top_fraction within (0, 1]; window_days within 1..366. Checked in that order;
 * the first rule broken is reported. version and update_time are not checked.
 */
grpc_status_code tier_policy_validate(const tier_policy_t *p, char *err, size_t errlen);

/**
 * UpdateTierPolicy: the policy that replaces `current`. `req->policy` is required;
 * `req->policy->version` must be 0 or current->version (else ABORTED: the caller read
 * an older version); the update_mask paths must be known (see tier.proto; none or "*"
 * means every field); the merged policy must pass tier_policy_validate(). On success
 * `*next` is the merged policy with version current->version + 1 and current's
 * update_time (the caller stamps it).
 */
grpc_status_code tier_policy_update(const tier_policy_t *current,
                                    const Yaowei__Tier__V1__UpdateTierPolicyRequest *req,
                                    tier_policy_t *next, char *err, size_t errlen);

/**
 * The version a policy notice names (the payload of TIER_POLICY_CHANNEL, tier_store.h):
 * a decimal integer within 1..INT64_MAX, nothing else. Returns 0 with `*version`, or
 * -EINVAL for anything else (a reader then reads the policy in force anyway).
 */
int tier_policy_notice_version(const char *payload, int64_t *version);

/**
 * Fills `msg` from `p`. `weights` and `update_time` are the caller's storage (e.g. on
 * the stack), linked from `msg`; nothing is allocated.
 */
void tier_policy_to_msg(const tier_policy_t *p, Yaowei__Tier__V1__TierPolicy *msg,
                        Yaowei__Tier__V1__ScoreWeights *weights,
                        Google__Protobuf__Timestamp *update_time);

#ifdef __cplusplus
}
#endif
#endif
