/* tier_policy.c — policy rules and UpdateTierPolicy merging. See tier_policy.h. */
#include "services/tier_scoring/tier_policy.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/field_mask.h"
#include "common/utf8.h"

/* Bits of the fields an update_mask names. */
enum {
    F_HEAD = 1u << 0,
    F_MID = 1u << 1,
    F_TAIL = 1u << 2,
    F_W_REACH = 1u << 3,
    F_W_ENGAGEMENT = 1u << 4,
    F_W_VIDEO = 1u << 5,
    F_W_CONSISTENCY = 1u << 6,
    F_RISING = 1u << 7,
    F_WINDOW = 1u << 8,
    F_WEIGHTS = F_W_REACH | F_W_ENGAGEMENT | F_W_VIDEO | F_W_CONSISTENCY,
    F_ALL = (1u << 9) - 1,
};

static const yw_field_mask_path_t mask_paths[] = {
    {"*", F_ALL},
    {"head_min_followers", F_HEAD},
    {"mid_min_followers", F_MID},
    {"tail_min_followers", F_TAIL},
    {"weights", F_WEIGHTS},
    {"weights.reach", F_W_REACH},
    {"weights.engagement", F_W_ENGAGEMENT},
    {"weights.video_momentum", F_W_VIDEO},
    {"weights.consistency", F_W_CONSISTENCY},
    {"rising_top_fraction", F_RISING},
    {"window_days", F_WINDOW},
};

static grpc_status_code check_weight(const char *name, double w, char *err, size_t errlen)
{
    if (!isfinite(w) || w < 0.0) {
        snprintf(err, errlen, "policy.weights.%s: must be a finite number >= 0, got %g", name, w);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_policy_validate(const tier_policy_t *p, char *err, size_t errlen)
{
    if (p->tail_min_followers < 1) {
        snprintf(err, errlen, "policy.tail_min_followers: must be at least 1, got %" PRId64,
                 p->tail_min_followers);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (p->mid_min_followers <= p->tail_min_followers) {
        snprintf(err, errlen,
                 "policy.mid_min_followers: thresholds must strictly decrease (head > mid > "
                 "tail): got mid %" PRId64 " <= tail %" PRId64,
                 p->mid_min_followers, p->tail_min_followers);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (p->head_min_followers <= p->mid_min_followers) {
        snprintf(err, errlen,
                 "policy.head_min_followers: thresholds must strictly decrease (head > mid > "
                 "tail): got head %" PRId64 " <= mid %" PRId64,
                 p->head_min_followers, p->mid_min_followers);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    const tier_weights_t *w = &p->weights;
    grpc_status_code code;
    if ((code = check_weight("reach", w->reach, err, errlen)) != GRPC_STATUS_OK ||
        (code = check_weight("engagement", w->engagement, err, errlen)) != GRPC_STATUS_OK ||
        (code = check_weight("video_momentum", w->video_momentum, err, errlen)) != GRPC_STATUS_OK ||
        (code = check_weight("consistency", w->consistency, err, errlen)) != GRPC_STATUS_OK) {
        return code;
    }
    double sum = w->reach + w->engagement + w->video_momentum + w->consistency;
    if (!(sum > 0.0)) {
        snprintf(err, errlen, "policy.weights: must not all be zero");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (!isfinite(sum)) {
        snprintf(err, errlen, "policy.weights: their sum must be finite");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (!(p->rising_top_fraction > 0.0 && p->rising_top_fraction <= 1.0)) {
        snprintf(err, errlen, "policy.rising_top_fraction: must be within (0, 1], got %g",
                 p->rising_top_fraction);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (p->window_days < 1 || p->window_days > TIER_WINDOW_MAX) {
        snprintf(err, errlen, "policy.window_days: must be within 1..%d, got %d", TIER_WINDOW_MAX,
                 (int)p->window_days);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

/* The fields the mask names; INVALID_ARGUMENT for an unknown path. */
static grpc_status_code mask_bits(const Google__Protobuf__FieldMask *mask, unsigned *bits,
                                  char *err, size_t errlen)
{
    *bits = 0;
    if (mask == NULL || mask->n_paths == 0) {
        *bits = F_ALL;
        return GRPC_STATUS_OK;
    }
    size_t bad;
    if (yw_field_mask_bits(mask, mask_paths, sizeof mask_paths / sizeof mask_paths[0], bits,
                           &bad) != 0) {
        char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
        snprintf(err, errlen,
                 "update_mask.paths[%zu]: unknown field %s; known: head_min_followers, "
                 "mid_min_followers, tail_min_followers, weights, weights.reach, "
                 "weights.engagement, weights.video_momentum, weights.consistency, "
                 "rising_top_fraction, window_days, *",
                 bad, yw_quote(mask->paths[bad], YW_QUOTE_MAX, q, sizeof q));
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_policy_update(const tier_policy_t *current,
                                    const Yaowei__Tier__V1__UpdateTierPolicyRequest *req,
                                    tier_policy_t *next, char *err, size_t errlen)
{
    const Yaowei__Tier__V1__TierPolicy *in = req->policy;
    if (in == NULL) {
        snprintf(err, errlen, "policy: required");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    unsigned bits;
    grpc_status_code code = mask_bits(req->update_mask, &bits, err, errlen);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    if (in->version != 0 && in->version != current->version) {
        snprintf(err, errlen,
                 "policy.version: %" PRId64 " is not the version in force (%" PRId64
                 "); read the policy again, or send 0 to update whatever the version",
                 in->version, current->version);
        return GRPC_STATUS_ABORTED;
    }
    static const Yaowei__Tier__V1__ScoreWeights zero_weights =
        YAOWEI__TIER__V1__SCORE_WEIGHTS__INIT;
    const Yaowei__Tier__V1__ScoreWeights *w = in->weights != NULL ? in->weights : &zero_weights;

    *next = *current;
    next->version = current->version + 1;
    if (bits & F_HEAD) {
        next->head_min_followers = in->head_min_followers;
    }
    if (bits & F_MID) {
        next->mid_min_followers = in->mid_min_followers;
    }
    if (bits & F_TAIL) {
        next->tail_min_followers = in->tail_min_followers;
    }
    if (bits & F_W_REACH) {
        next->weights.reach = w->reach;
    }
    if (bits & F_W_ENGAGEMENT) {
        next->weights.engagement = w->engagement;
    }
    if (bits & F_W_VIDEO) {
        next->weights.video_momentum = w->video_momentum;
    }
    if (bits & F_W_CONSISTENCY) {
        next->weights.consistency = w->consistency;
    }
    if (bits & F_RISING) {
        next->rising_top_fraction = in->rising_top_fraction;
    }
    if (bits & F_WINDOW) {
        next->window_days = in->window_days;
    }
    return tier_policy_validate(next, err, errlen);
}

void tier_policy_to_msg(const tier_policy_t *p, Yaowei__Tier__V1__TierPolicy *msg,
                        Yaowei__Tier__V1__ScoreWeights *weights,
                        Google__Protobuf__Timestamp *update_time)
{
    yaowei__tier__v1__tier_policy__init(msg);
    yaowei__tier__v1__score_weights__init(weights);
    google__protobuf__timestamp__init(update_time);
    weights->reach = p->weights.reach;
    weights->engagement = p->weights.engagement;
    weights->video_momentum = p->weights.video_momentum;
    weights->consistency = p->weights.consistency;
    update_time->seconds = p->update_time_s;
    update_time->nanos = p->update_time_ns;
    msg->version = p->version;
    msg->head_min_followers = p->head_min_followers;
    msg->mid_min_followers = p->mid_min_followers;
    msg->tail_min_followers = p->tail_min_followers;
    msg->weights = weights;
    msg->rising_top_fraction = p->rising_top_fraction;
    msg->window_days = p->window_days;
    msg->update_time = update_time;
}

int tier_policy_notice_version(const char *payload, int64_t *version)
{
    if (payload == NULL || payload[0] < '1' || payload[0] > '9') {
        return -EINVAL; /* also refuses a sign, a space and leading zeros */
    }
    int64_t v = 0;
    for (const char *c = payload; *c != '\0'; c++) {
        if (*c < '0' || *c > '9' || v > (INT64_MAX - (*c - '0')) / 10) {
            return -EINVAL;
        }
        v = v * 10 + (*c - '0');
    }
    *version = v;
    return 0;
}
