/*
 * test_tier_policy.c — unit tests of services/tier_scoring/tier_policy.c: every rule
 * of a policy with the message naming its field, update_mask merging, the version
 * bump and the version precondition, and the conversion to the message.
 */
#include "services/tier_scoring/tier_policy.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>

#include "tests/unit/test.h"

/* Runs `code_expr`, which writes its message into `err_` (declared here), and checks the
 * status and that the message contains `want_msg`. */
#define CHECK_MSG(code_expr, want_code, want_msg)                                                  \
    do {                                                                                           \
        char err_[512] = "";                                                                       \
        grpc_status_code c_ = (code_expr);                                                         \
        if (c_ != (want_code) || strstr(err_, (want_msg)) == NULL) {                               \
            fprintf(stderr, "%s:%d: got %d \"%s\", want %d containing \"%s\"\n", __FILE__,         \
                    __LINE__, (int)c_, err_, (int)(want_code), (want_msg));                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static tier_policy_t valid(void)
{
    tier_policy_t p;
    tier_policy_default(&p);
    return p;
}

static grpc_status_code validate(const tier_policy_t *p, char *err)
{
    return tier_policy_validate(p, err, 512);
}

YW_TEST(default_policy_is_valid)
{
    tier_policy_t p = valid();
    char err[512] = "";
    YW_CHECK_INT(validate(&p, err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(p.version, ==, 1);
    YW_CHECK_INT(p.head_min_followers, ==, 500000);
    YW_CHECK_INT(p.mid_min_followers, ==, 50000);
    YW_CHECK_INT(p.tail_min_followers, ==, 5000);
    YW_CHECK_INT(p.window_days, ==, 30);
}

YW_TEST(thresholds_must_strictly_decrease)
{
    tier_policy_t p = valid();
    p.tail_min_followers = 0;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.tail_min_followers: must be at least 1, got 0");
    p = valid();
    p.mid_min_followers = p.tail_min_followers;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.mid_min_followers: thresholds must strictly decrease");
    p = valid();
    p.head_min_followers = 40000;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.head_min_followers: thresholds must strictly decrease (head > mid > tail): "
              "got head 40000 <= mid 50000");
    p = valid();
    p.head_min_followers = -1;
    p.mid_min_followers = -2;
    p.tail_min_followers = -3;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "policy.tail_min_followers");
}

YW_TEST(weights_non_negative_and_not_all_zero)
{
    tier_policy_t p = valid();
    p.weights.video_momentum = -0.5;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.weights.video_momentum: must be a finite number >= 0, got -0.5");
    p = valid();
    p.weights.reach = NAN;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "policy.weights.reach: must be");
    p = valid();
    p.weights.consistency = INFINITY;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "policy.weights.consistency");
    p = valid();
    p.weights = (tier_weights_t){0};
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.weights: must not all be zero");
    p = valid();
    p.weights = (tier_weights_t){.engagement = 1.0}; /* one weight is enough */
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_OK, "");
}

YW_TEST(rising_fraction_within_zero_exclusive_one_inclusive)
{
    tier_policy_t p = valid();
    p.rising_top_fraction = 0.0;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.rising_top_fraction: must be within (0, 1], got 0");
    p.rising_top_fraction = 1.5;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "got 1.5");
    p.rising_top_fraction = NAN;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "policy.rising_top_fraction");
    p.rising_top_fraction = 1.0;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_OK, "");
}

YW_TEST(window_days_within_1_366)
{
    tier_policy_t p = valid();
    p.window_days = 0;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT,
              "policy.window_days: must be within 1..366, got 0");
    p.window_days = 367;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_INVALID_ARGUMENT, "got 367");
    p.window_days = 366;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_OK, "");
    p.window_days = 1;
    CHECK_MSG(validate(&p, err_), GRPC_STATUS_OK, "");
}

/* A full policy message from `p`. */
typedef struct {
    Yaowei__Tier__V1__UpdateTierPolicyRequest req;
    Yaowei__Tier__V1__TierPolicy policy;
    Yaowei__Tier__V1__ScoreWeights weights;
    Google__Protobuf__Timestamp ts;
    Google__Protobuf__FieldMask mask;
    char *paths[4];
} update_t;

static void update_from(update_t *u, const tier_policy_t *p)
{
    yaowei__tier__v1__update_tier_policy_request__init(&u->req);
    tier_policy_to_msg(p, &u->policy, &u->weights, &u->ts);
    u->policy.version = 0;
    u->req.policy = &u->policy;
}

static void with_mask(update_t *u, size_t n, ...)
{
    google__protobuf__field_mask__init(&u->mask);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        u->paths[i] = va_arg(ap, char *);
    }
    va_end(ap);
    u->mask.n_paths = n;
    u->mask.paths = u->paths;
    u->req.update_mask = &u->mask;
}

YW_TEST(update_replaces_and_bumps_the_version)
{
    tier_policy_t cur = valid();
    cur.version = 4;
    tier_policy_t want = valid();
    want.head_min_followers = 1000000;
    want.weights.reach = 1.0;
    want.window_days = 7;
    update_t u;
    update_from(&u, &want);
    tier_policy_t next;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_), GRPC_STATUS_OK, "");
    YW_CHECK_INT(next.version, ==, 5);
    YW_CHECK_INT(next.head_min_followers, ==, 1000000);
    YW_CHECK(next.weights.reach == 1.0);
    YW_CHECK_INT(next.window_days, ==, 7);
    /* The version in force is accepted as a precondition; another one is ABORTED. */
    u.policy.version = 4;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_), GRPC_STATUS_OK, "");
    u.policy.version = 3;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_), GRPC_STATUS_ABORTED,
              "policy.version: 3 is not the version in force (4)");
}

YW_TEST(update_without_weights_replaces_them_with_zeros)
{
    tier_policy_t cur = valid();
    update_t u;
    update_from(&u, &cur);
    u.policy.weights = NULL;
    tier_policy_t next;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_),
              GRPC_STATUS_INVALID_ARGUMENT, "policy.weights: must not all be zero");
    yaowei__tier__v1__update_tier_policy_request__init(&u.req);
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_),
              GRPC_STATUS_INVALID_ARGUMENT, "policy: required");
}

YW_TEST(update_mask_changes_only_the_fields_named)
{
    tier_policy_t cur = valid();
    cur.version = 2;
    update_t u;
    Yaowei__Tier__V1__ScoreWeights w = YAOWEI__TIER__V1__SCORE_WEIGHTS__INIT;
    w.engagement = 0.9;
    yaowei__tier__v1__update_tier_policy_request__init(&u.req);
    yaowei__tier__v1__tier_policy__init(&u.policy);
    u.policy.rising_top_fraction = 0.2;
    u.policy.weights = &w;
    u.req.policy = &u.policy;
    with_mask(&u, 2, "rising_top_fraction", "weights.engagement");
    tier_policy_t next;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_), GRPC_STATUS_OK, "");
    YW_CHECK_INT(next.version, ==, 3);
    YW_CHECK(next.rising_top_fraction == 0.2);
    YW_CHECK(next.weights.engagement == 0.9);
    YW_CHECK(next.weights.reach == cur.weights.reach);
    YW_CHECK_INT(next.head_min_followers, ==, cur.head_min_followers);
    YW_CHECK_INT(next.window_days, ==, cur.window_days);

    /* The merged policy is validated: a head threshold under mid's is refused. */
    u.policy.head_min_followers = 10000;
    with_mask(&u, 1, "head_min_followers");
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_),
              GRPC_STATUS_INVALID_ARGUMENT,
              "policy.head_min_followers: thresholds must strictly decrease");

    /* "weights" takes all four (here zero: refused). */
    with_mask(&u, 1, "weights");
    w = (Yaowei__Tier__V1__ScoreWeights)YAOWEI__TIER__V1__SCORE_WEIGHTS__INIT;
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_),
              GRPC_STATUS_INVALID_ARGUMENT, "policy.weights: must not all be zero");

    with_mask(&u, 2, "window_days", "followers");
    CHECK_MSG(tier_policy_update(&cur, &u.req, &next, err_, sizeof err_),
              GRPC_STATUS_INVALID_ARGUMENT, "update_mask.paths[1]: unknown field \"followers\"");
}

YW_TEST(policy_to_message)
{
    tier_policy_t p = valid();
    p.version = 9;
    p.update_time_s = 1700000000;
    p.update_time_ns = 5;
    Yaowei__Tier__V1__TierPolicy msg;
    Yaowei__Tier__V1__ScoreWeights w;
    Google__Protobuf__Timestamp ts;
    tier_policy_to_msg(&p, &msg, &w, &ts);
    YW_CHECK_INT(msg.version, ==, 9);
    YW_CHECK_INT(msg.mid_min_followers, ==, 50000);
    YW_CHECK(msg.weights == &w && w.engagement == 0.35);
    YW_CHECK(msg.update_time == &ts && ts.seconds == 1700000000 && ts.nanos == 5);
    YW_CHECK(msg.rising_top_fraction == 0.1);
    /* It packs. */
    uint8_t buf[256];
    YW_CHECK(protobuf_c_message_get_packed_size(&msg.base) <= sizeof buf);
    YW_CHECK(protobuf_c_message_pack(&msg.base, buf) > 0);
}

/* The payload of a policy notice: the version, in decimal, and nothing else. */
YW_TEST(notice_version_is_a_positive_decimal)
{
    int64_t v = 0;
    YW_CHECK_INT(tier_policy_notice_version("1", &v), ==, 0);
    YW_CHECK_INT(v, ==, 1);
    YW_CHECK_INT(tier_policy_notice_version("42", &v), ==, 0);
    YW_CHECK_INT(v, ==, 42);
    YW_CHECK_INT(tier_policy_notice_version("9223372036854775807", &v), ==, 0);
    YW_CHECK_INT(v, ==, INT64_MAX);
    static const char *const bad[] = {
        "",
        "0",
        "-1",
        "+1",
        " 1",
        "1 ",
        "01",
        "1x",
        "x",
        "9223372036854775808",
        "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        YW_CHECK_INT(tier_policy_notice_version(bad[i], &v), ==, -EINVAL);
        YW_CHECK_INT(v, ==, 7); /* untouched */
    }
    YW_CHECK_INT(tier_policy_notice_version(NULL, &v), ==, -EINVAL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(default_policy_is_valid),
        YW_TEST_ENTRY(notice_version_is_a_positive_decimal),
        YW_TEST_ENTRY(thresholds_must_strictly_decrease),
        YW_TEST_ENTRY(weights_non_negative_and_not_all_zero),
        YW_TEST_ENTRY(rising_fraction_within_zero_exclusive_one_inclusive),
        YW_TEST_ENTRY(window_days_within_1_366),
        YW_TEST_ENTRY(update_replaces_and_bumps_the_version),
        YW_TEST_ENTRY(update_without_weights_replaces_them_with_zeros),
        YW_TEST_ENTRY(update_mask_changes_only_the_fields_named),
        YW_TEST_ENTRY(policy_to_message),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
