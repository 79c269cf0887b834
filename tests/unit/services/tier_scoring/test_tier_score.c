/*
 * test_tier_score.c — unit tests of services/tier_scoring/tier_score.c: tiers at the
 * thresholds, the method-of-moments prior and its fallbacks, each component and the
 * weighted score against hand-computed values, a small creator who must not outrank a
 * big one on a few lucky engagements, percentile, rising and quantiles.
 *
 * Expected values are computed by hand from the formulas in tier_score.h (the long
 * decimals were worked out with a calculator, not with this code).
 */
#include "services/tier_scoring/tier_score.h"

#include <math.h>

#include "tests/unit/test.h"

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double yw_x_ = (a), yw_y_ = (b);                                                           \
        if (!(fabs(yw_x_ - yw_y_) <= (tol))) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s ~ %s (%.12g vs %.12g)\n", __FILE__, __LINE__, \
                    #a, #b, yw_x_, yw_y_);                                                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static tier_policy_t policy(void)
{
    tier_policy_t p;
    tier_policy_default(&p);
    return p;
}

static tier_input_t input(int64_t followers, int64_t impressions, int64_t engagements)
{
    return (tier_input_t){
        .followers = followers,
        .window_days = 30,
        .notes = 1,
        .impressions = impressions,
        .engagements = engagements,
    };
}

/* ---- tiers ---- */

YW_TEST(tiers_at_the_default_thresholds)
{
    tier_policy_t p = policy();
    YW_CHECK_INT(tier_of(INT64_MAX, &p), ==, TIER_LEVEL_HEAD);
    YW_CHECK_INT(tier_of(500000, &p), ==, TIER_LEVEL_HEAD);
    YW_CHECK_INT(tier_of(499999, &p), ==, TIER_LEVEL_MID);
    YW_CHECK_INT(tier_of(50000, &p), ==, TIER_LEVEL_MID);
    YW_CHECK_INT(tier_of(49999, &p), ==, TIER_LEVEL_TAIL);
    YW_CHECK_INT(tier_of(5000, &p), ==, TIER_LEVEL_TAIL);
    YW_CHECK_INT(tier_of(4999, &p), ==, TIER_LEVEL_AMATEUR);
    YW_CHECK_INT(tier_of(0, &p), ==, TIER_LEVEL_AMATEUR);
    YW_CHECK_STR(tier_name(TIER_LEVEL_MID), "TIER_MID");
    YW_CHECK_STR(tier_name((tier_level_t)9), "TIER_UNSPECIFIED");
}

YW_TEST(thresholds_are_policy)
{
    tier_policy_t p = policy();
    p.head_min_followers = 100;
    p.mid_min_followers = 10;
    p.tail_min_followers = 1;
    YW_CHECK_INT(tier_of(100, &p), ==, TIER_LEVEL_HEAD);
    YW_CHECK_INT(tier_of(99, &p), ==, TIER_LEVEL_MID);
    YW_CHECK_INT(tier_of(1, &p), ==, TIER_LEVEL_TAIL);
    YW_CHECK_INT(tier_of(0, &p), ==, TIER_LEVEL_AMATEUR);
}

/* ---- priors ---- */

YW_TEST(prior_by_method_of_moments)
{
    /* (impressions, engagements): rates 5%, 3%, 10%, 2%, 7%.
     * mu = 670 / 10000 = 0.067
     * V = mean (r - mu)^2 = (0.017^2 + 0.037^2 + 0.033^2 + 0.047^2 + 0.003^2) / 5
     *   = (0.000289 + 0.001369 + 0.001089 + 0.002209 + 0.000009) / 5 = 0.000993
     * N = mu (1 - mu) mean(1/n) = 0.062511 * (0.001 + 0.0005 + 0.00025 + 0.001 + 0.0005) / 5
     *   = 0.062511 * 0.00065 = 0.00004063215
     * tau2 = 0.00095236785; s = 0.062511 / tau2 - 1 = 64.637453007...
     * alpha = 0.067 s = 4.33070935..., beta = 0.933 s = 60.30674365... */
    static const int64_t n[] = {1000, 2000, 4000, 1000, 2000};
    static const int64_t e[] = {50, 60, 400, 20, 140};
    tier_moments_t m = {0};
    for (int i = 0; i < 5; i++) {
        tier_moments_add(&m, n[i], e[i]);
    }
    tier_moments_add(&m, 0, 0); /* no impressions: not counted */
    YW_CHECK_INT(m.creators, ==, 5);
    tier_prior_t prior;
    YW_CHECK_INT(tier_prior_estimate(&m, &prior), ==, 0);
    YW_CHECK_INT(prior.source, ==, TIER_PRIOR_CATEGORY);
    CHECK_NEAR(prior.alpha, 4.330709351486403, 1e-9);
    CHECK_NEAR(prior.beta, 60.30674365577335, 1e-9);
    CHECK_NEAR(tier_prior_mean(&prior), 0.067, 1e-12);
}

YW_TEST(prior_falls_back_when_a_category_cannot_support_one)
{
    tier_prior_t prior;
    /* One creator: its rate says nothing of the spread. */
    tier_moments_t one = {0};
    tier_moments_add(&one, 400000, 60000);
    YW_CHECK_INT(tier_prior_estimate(&one, &prior), ==, -1);
    /* Four creators: still too few. */
    tier_moments_t four = {0};
    for (int i = 0; i < 4; i++) {
        tier_moments_add(&four, 1000 * (i + 1), 30 * (i + 1) + 10 * i * i);
    }
    YW_CHECK_INT(tier_prior_estimate(&four, &prior), ==, -1);
    /* Zero variance: everybody engages at exactly 5%. */
    tier_moments_t flat = {0};
    for (int i = 0; i < 8; i++) {
        tier_moments_add(&flat, 20000, 1000);
    }
    YW_CHECK_INT(tier_prior_estimate(&flat, &prior), ==, -1);
    /* Spread within binomial noise only (n = 100 each: noise sd ~2.2%). */
    tier_moments_t noisy = {0};
    static const int64_t e[] = {4, 5, 6, 5, 4, 6};
    for (int i = 0; i < 6; i++) {
        tier_moments_add(&noisy, 100, e[i]);
    }
    YW_CHECK_INT(tier_prior_estimate(&noisy, &prior), ==, -1);
    /* Nobody engages at all. */
    tier_moments_t zero = {0};
    for (int i = 0; i < 6; i++) {
        tier_moments_add(&zero, 1000 * (i + 1), 0);
    }
    YW_CHECK_INT(tier_prior_estimate(&zero, &prior), ==, -1);
    /* The fixed default: Beta(5, 95). */
    prior = tier_prior_default();
    CHECK_NEAR(prior.alpha, 5.0, 1e-12);
    CHECK_NEAR(prior.beta, 95.0, 1e-12);
    YW_CHECK_INT(prior.source, ==, TIER_PRIOR_DEFAULT);
}

YW_TEST(prior_strength_is_clamped)
{
    tier_prior_t prior;
    /* Wildly spread rates: s = mu(1-mu)/tau2 - 1 would be ~1: clamped up to 10. */
    tier_moments_t wide = {0};
    static const int64_t e[] = {0, 9000, 100, 9500, 50, 8000};
    for (int i = 0; i < 6; i++) {
        tier_moments_add(&wide, 10000, e[i]);
    }
    YW_CHECK_INT(tier_prior_estimate(&wide, &prior), ==, 0);
    CHECK_NEAR(prior.alpha + prior.beta, TIER_PRIOR_STRENGTH_MIN, 1e-9);
    /* Rates 5.00% and 5.01% on huge counts: tau2 tiny, s huge: clamped down to 10000. */
    tier_moments_t tight = {0};
    for (int i = 0; i < 6; i++) {
        tier_moments_add(&tight, 100000000, 5000000 + (i % 2) * 10000);
    }
    YW_CHECK_INT(tier_prior_estimate(&tight, &prior), ==, 0);
    CHECK_NEAR(prior.alpha + prior.beta, TIER_PRIOR_STRENGTH_MAX, 1e-6);
}

/* ---- components and score ---- */

YW_TEST(components_at_round_numbers)
{
    /* follower term log10(1 + 1e7) / log10(1 + 1e7) = 1; impressions 1e8 in 30 days:
     * 1; reach 100. 12 notes in 28 days: 3 a week: consistency 100. 6 of them video,
     * completion 0.5, views 300 this week and 0 the week before: growth
     * 0.5 + log2(400 / 100) / 4 = 1; video momentum 100 (0.5 + 0.5 + 1) / 3. */
    tier_policy_t p = policy();
    tier_prior_t prior = tier_prior_default();
    tier_input_t in = {
        .followers = 10000000,
        .window_days = 30,
        .notes = 12,
        .video_notes = 6,
        .impressions = 100000000,
        .engagements = 5000000,
        .views_last_7d = 300,
        .views_prev_7d = 0,
        .avg_completion_rate = 0.5,
    };
    tier_result_t r;
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.components.reach, 100.0, 1e-9);
    in.window_days = 28;
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.components.consistency, 100.0, 1e-9);
    CHECK_NEAR(r.components.video_momentum, 100.0 * 2.0 / 3.0, 1e-9);
    /* 6 notes in 28 days: 1.5 a week: 50. Views halved week over week:
     * 0.5 + log2((50 + 100) / (200 + 100)) / 4 = 0.25. */
    in.notes = 6;
    in.video_notes = 3;
    in.views_last_7d = 50;
    in.views_prev_7d = 200;
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.components.consistency, 50.0, 1e-9);
    CHECK_NEAR(r.components.video_momentum, 100.0 * (0.5 + 0.5 + 0.25) / 3.0, 1e-9);
    /* A rate at the prior's mean on a huge count: L ~ m, engagement ~ 50. */
    CHECK_NEAR(r.components.engagement, 50.0, 0.05);
}

YW_TEST(score_by_hand)
{
    /* followers 120,000; 30-day window; 10 notes (4 video); 250,000 impressions;
     * 12,000 engagements; views 30,000 this week, 15,000 the week before; completion
     * 0.4; prior Beta(5, 95).
     *   reach       = 100 * (log10(120001)/log10(10000001) + log10(250001)/log10(100000001)) / 2
     *               = 100 * (0.725598 + 0.674743) / 2 = 70.01703
     *   posterior   = Beta(12005, 238095): mean 0.04800080, sd 0.00042745,
     *               L = 0.04800080 - 1.96 * 0.00042745 = 0.04716300
     *   engagement  = 100 * 0.047163 / (0.047163 + 0.05) = 48.54008
     *   growth      = 0.5 + log2(30100 / 15100) / 4 = 0.748804
     *   momentum    = 100 * (0.4 + 0.4 + 0.748804) / 3 = 51.62679
     *   consistency = 100 * (10 * 7 / 30) / 3 = 77.77778
     *   score       = 0.25 * 70.01703 + 0.35 * 48.54008 + 0.25 * 51.62679 + 0.15 * 77.77778
     *               = 59.06665 */
    tier_policy_t p = policy();
    tier_prior_t prior = tier_prior_default();
    tier_input_t in = {
        .followers = 120000,
        .window_days = 30,
        .notes = 10,
        .video_notes = 4,
        .impressions = 250000,
        .engagements = 12000,
        .views_last_7d = 30000,
        .views_prev_7d = 15000,
        .avg_completion_rate = 0.4,
    };
    tier_result_t r;
    tier_score_compute(&in, &p, &prior, &r);
    YW_CHECK_INT(r.tier, ==, TIER_LEVEL_MID);
    CHECK_NEAR(r.components.reach, 70.01702756, 1e-6);
    CHECK_NEAR(r.components.engagement, 48.54008142, 1e-6);
    CHECK_NEAR(r.components.video_momentum, 51.62679115, 1e-6);
    CHECK_NEAR(r.components.consistency, 77.77777778, 1e-6);
    CHECK_NEAR(r.score, 59.06664984, 1e-6);
    CHECK_NEAR(r.rate_raw, 0.048, 1e-12);
    CHECK_NEAR(r.rate_smoothed, 0.04800079968, 1e-9);
    CHECK_NEAR(r.rate_lower_bound, 0.04716299866, 1e-9);
    YW_CHECK(!r.insufficient_data);
}

YW_TEST(weights_are_relative)
{
    tier_policy_t p = policy();
    tier_prior_t prior = tier_prior_default();
    tier_input_t in = input(120000, 250000, 12000);
    tier_result_t r;
    p.weights = (tier_weights_t){.engagement = 7.0};
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.score, r.components.engagement, 1e-9);
    p.weights = (tier_weights_t){.reach = 2.0, .consistency = 2.0};
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.score, (r.components.reach + r.components.consistency) / 2.0, 1e-9);
}

YW_TEST(no_stats_scores_reach_only_and_says_so)
{
    /* 20,000 followers, nothing in the window: reach = 100 * log10(20001)/log10(10000001)
     * / 2 = 30.72180; score = 0.25 * 30.72180 = 7.68045. */
    tier_policy_t p = policy();
    tier_prior_t prior = tier_prior_default();
    tier_input_t in = {.followers = 20000, .window_days = 30};
    tier_result_t r;
    tier_score_compute(&in, &p, &prior, &r);
    YW_CHECK_INT(r.tier, ==, TIER_LEVEL_TAIL);
    YW_CHECK(r.insufficient_data);
    CHECK_NEAR(r.components.reach, 30.72179774, 1e-6);
    CHECK_NEAR(r.components.engagement, 0.0, 0.0);
    CHECK_NEAR(r.components.video_momentum, 0.0, 0.0);
    CHECK_NEAR(r.components.consistency, 0.0, 0.0);
    CHECK_NEAR(r.score, 7.68044943, 1e-6);
    CHECK_NEAR(r.rate_raw, 0.0, 0.0);
    CHECK_NEAR(r.rate_smoothed, 0.0, 0.0);
    /* Notes but no impressions: engagement cannot be computed either. */
    in.notes = 3;
    tier_score_compute(&in, &p, &prior, &r);
    YW_CHECK(r.insufficient_data);
    CHECK_NEAR(r.components.engagement, 0.0, 0.0);
    YW_CHECK(r.components.consistency > 0.0);
}

YW_TEST(engagements_above_impressions_are_clamped)
{
    tier_policy_t p = policy();
    tier_prior_t prior = tier_prior_default();
    tier_input_t in = input(1000, 100, 150);
    tier_result_t r;
    tier_score_compute(&in, &p, &prior, &r);
    CHECK_NEAR(r.rate_raw, 1.5, 1e-12);                /* raw is what was reported */
    CHECK_NEAR(r.rate_smoothed, 105.0 / 200.0, 1e-12); /* Beta(5 + 100, 95 + 0) */
    YW_CHECK(r.components.engagement <= 100.0);
}

/*
 * The small-creator case: 10 engagements on 40 impressions must not outrank 60,000 on 400,000 — in a
 * category engaging at a usual rate, with the fixed default prior, and even when the
 * category's prior is the pooled rate of just these two (15%) at the weakest and the
 * strongest strength allowed.
 */
YW_TEST(small_creator_does_not_outrank_big_one)
{
    tier_policy_t p = policy();
    tier_input_t small = input(10000, 40, 10);
    tier_input_t big = input(10000, 400000, 60000);
    double mu = 60010.0 / 400040.0;
    tier_prior_t priors[] = {
        tier_prior_default(),                                      /* Beta(5, 95) */
        {mu * 10.0, (1.0 - mu) * 10.0, TIER_PRIOR_CATEGORY},       /* weakest */
        {mu * 10000.0, (1.0 - mu) * 10000.0, TIER_PRIOR_CATEGORY}, /* strongest */
        {0.04 * 300.0, 0.96 * 300.0, TIER_PRIOR_CATEGORY},         /* a usual 4% category */
    };
    for (size_t i = 0; i < sizeof priors / sizeof priors[0]; i++) {
        tier_result_t rs, rb;
        tier_score_compute(&small, &p, &priors[i], &rs);
        tier_score_compute(&big, &p, &priors[i], &rb);
        CHECK_NEAR(rs.rate_raw, 0.25, 1e-12);
        CHECK_NEAR(rb.rate_raw, 0.15, 1e-12);
        YW_CHECK(rs.rate_raw > rb.rate_raw); /* raw, the small one looks better */
        YW_CHECK(rs.components.engagement < rb.components.engagement);
        YW_CHECK(rs.rate_lower_bound < rb.rate_lower_bound);
        YW_CHECK(rs.score < rb.score);
    }
    /* By hand, default prior: small posterior Beta(15, 125): mean 0.107143, sd 0.026047,
     * L = 0.056090, engagement 100 * 0.05609 / 0.10609 = 52.87025; big Beta(60005,
     * 340095): mean 0.149975, L = 0.148869, engagement 74.85778. */
    tier_prior_t d = tier_prior_default();
    tier_result_t rs, rb;
    tier_score_compute(&small, &p, &d, &rs);
    tier_score_compute(&big, &p, &d, &rb);
    CHECK_NEAR(rs.rate_smoothed, 0.10714285714, 1e-9);
    CHECK_NEAR(rs.components.engagement, 52.87025346, 1e-6);
    CHECK_NEAR(rb.rate_smoothed, 0.14997500625, 1e-9);
    CHECK_NEAR(rb.components.engagement, 74.85777623, 1e-6);
    YW_CHECK(rs.rate_smoothed < rb.rate_smoothed);
}

/* ---- standing ---- */

YW_TEST(percentile_counts_at_or_below)
{
    CHECK_NEAR(tier_percentile(1, 1), 100.0, 0.0);
    CHECK_NEAR(tier_percentile(10, 10), 100.0, 0.0);
    CHECK_NEAR(tier_percentile(1, 10), 10.0, 1e-12);
    CHECK_NEAR(tier_percentile(3, 4), 75.0, 1e-12);
    CHECK_NEAR(tier_percentile(0, 0), 0.0, 0.0);
}

YW_TEST(rising_is_the_top_slice_of_mid_and_tail)
{
    /* 10 creators, top 10%: the first only. */
    YW_CHECK(tier_is_rising(TIER_LEVEL_MID, 1, 10, 0.1));
    YW_CHECK(!tier_is_rising(TIER_LEVEL_MID, 2, 10, 0.1));
    /* 30 creators: 0.1 * 30 is 3 (not 2.9999). */
    YW_CHECK(tier_is_rising(TIER_LEVEL_TAIL, 3, 30, 0.1));
    YW_CHECK(!tier_is_rising(TIER_LEVEL_TAIL, 4, 30, 0.1));
    /* Small tiers still have one. */
    YW_CHECK(tier_is_rising(TIER_LEVEL_TAIL, 1, 3, 0.1));
    YW_CHECK(!tier_is_rising(TIER_LEVEL_TAIL, 2, 3, 0.1));
    /* Everybody with fraction 1. */
    YW_CHECK(tier_is_rising(TIER_LEVEL_MID, 7, 7, 1.0));
    /* Never HEAD or AMATEUR. */
    YW_CHECK(!tier_is_rising(TIER_LEVEL_HEAD, 1, 10, 0.5));
    YW_CHECK(!tier_is_rising(TIER_LEVEL_AMATEUR, 1, 10, 0.5));
}

YW_TEST(quantiles_interpolate)
{
    static const double desc[] = {5, 4, 3, 2, 1};
    CHECK_NEAR(tier_quantile_desc(desc, 5, 0.0), 1.0, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 5, 0.25), 2.0, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 5, 0.5), 3.0, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 5, 0.1), 1.4, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 5, 0.9), 4.6, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 5, 1.0), 5.0, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 1, 0.5), 5.0, 1e-12);
    CHECK_NEAR(tier_quantile_desc(desc, 0, 0.5), 0.0, 0.0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(tiers_at_the_default_thresholds),
        YW_TEST_ENTRY(thresholds_are_policy),
        YW_TEST_ENTRY(prior_by_method_of_moments),
        YW_TEST_ENTRY(prior_falls_back_when_a_category_cannot_support_one),
        YW_TEST_ENTRY(prior_strength_is_clamped),
        YW_TEST_ENTRY(components_at_round_numbers),
        YW_TEST_ENTRY(score_by_hand),
        YW_TEST_ENTRY(weights_are_relative),
        YW_TEST_ENTRY(no_stats_scores_reach_only_and_says_so),
        YW_TEST_ENTRY(engagements_above_impressions_are_clamped),
        YW_TEST_ENTRY(small_creator_does_not_outrank_big_one),
        YW_TEST_ENTRY(percentile_counts_at_or_below),
        YW_TEST_ENTRY(rising_is_the_top_slice_of_mid_and_tail),
        YW_TEST_ENTRY(quantiles_interpolate),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
