/*
 * tier_score.h — the scoring maths of tier scoring: tiers from followers, the Beta
 * prior of a category (empirical Bayes, method of moments), the four components, the
 * weighted score, percentiles and the rising flag. Pure functions: no I/O, no clock,
 * no allocation, no protobuf. Every formula is stated here once; README.md and
 * tier.proto describe the same in words.
 *
 * Engagement is fair to small creators. A creator's engagement rate is smoothed with
 * the Beta(alpha, beta) prior of its primary category: smoothed = (alpha + e) /
 * (alpha + beta + n) for e engagements on n impressions, so a rate measured on few
 * impressions stays near the category's mean. The engagement component then counts the
 * lower bound of the 95% interval of that posterior (mean - 1.96 sd), so a rate
 * measured on 40 impressions counts for less than the same rate measured on 400,000:
 * 10 engagements on 40 impressions never outrank 60,000 on 400,000 in a category
 * whose creators engage at the usual few percent.
 */
#ifndef TIER_SCORE_H
#define TIER_SCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Tiers; the values are those of yaowei.tier.v1.Tier. */
typedef enum {
    TIER_LEVEL_UNSPECIFIED = 0,
    TIER_LEVEL_HEAD = 1,
    TIER_LEVEL_MID = 2,
    TIER_LEVEL_TAIL = 3,
    TIER_LEVEL_AMATEUR = 4,
} tier_level_t;

/** Number of real tiers (HEAD..AMATEUR). */
#define TIER_LEVELS 4

/* ---- constants of the formulas (see each function) ---- */

/** Followers at which reach's follower term is full: 10,000,000. */
#define TIER_REACH_FOLLOWERS_FULL 1e7
/** Impressions per 30 days at which reach's impression term is full: 100,000,000. */
#define TIER_REACH_IMPRESSIONS_FULL 1e8
/** Notes per week at which consistency is full. */
#define TIER_CONSISTENCY_NOTES_PER_WEEK 3.0
/** Pseudo-count of views added to both weeks of the growth ratio. */
#define TIER_GROWTH_PSEUDO_VIEWS 100.0
/** z of the lower bound the engagement component counts (95% two-sided). */
#define TIER_ENGAGEMENT_Z 1.96
/** A category needs this many creators with impressions for a prior of its own. */
#define TIER_PRIOR_MIN_CREATORS 5
/** The prior's strength (alpha + beta, in impressions) is kept within these bounds. */
#define TIER_PRIOR_STRENGTH_MIN 10.0
#define TIER_PRIOR_STRENGTH_MAX 10000.0
/** The fixed prior when no population supports one: mean 5%, worth 100 impressions. */
#define TIER_PRIOR_DEFAULT_MEAN 0.05
#define TIER_PRIOR_DEFAULT_STRENGTH 100.0

/** Relative weights of the components; non-negative, not all zero. */
typedef struct st_tier_weights_t {
    double reach;
    double engagement;
    double video_momentum;
    double consistency;
} tier_weights_t;

/** The policy (yaowei.tier.v1.TierPolicy) in C. Validated by tier_policy.h. */
typedef struct st_tier_policy_t {
    int64_t version;
    int64_t head_min_followers;
    int64_t mid_min_followers;
    int64_t tail_min_followers;
    tier_weights_t weights;
    double rising_top_fraction;
    int32_t window_days;
    int64_t update_time_s; /* when this version was made (Unix time) */
    int32_t update_time_ns;
} tier_policy_t;

/** What a score reads: the creator's followers and its rolling stats over a window. */
typedef struct st_tier_input_t {
    int64_t followers;
    int32_t window_days; /* the window the stats cover, 1..366 */
    int64_t notes;       /* distinct notes with stats in the window; 0: no stats */
    int64_t video_notes;
    int64_t impressions;
    int64_t engagements; /* likes + collects + comments + shares */
    int64_t views_last_7d;
    int64_t views_prev_7d;
    double avg_completion_rate; /* impression-weighted, of video notes, in [0, 1] */
} tier_input_t;

/** A Beta(alpha, beta) prior of engagement rates. */
typedef enum {
    TIER_PRIOR_CATEGORY = 0, /* estimated from the category's creators */
    TIER_PRIOR_GLOBAL = 1,   /* estimated from every creator (category too small or flat) */
    TIER_PRIOR_DEFAULT = 2,  /* fixed (no population supports an estimate) */
} tier_prior_source_t;

typedef struct st_tier_prior_t {
    double alpha;
    double beta;
    tier_prior_source_t source;
} tier_prior_t;

/** Accumulates the moments of one group of creators for tier_prior_estimate(). */
typedef struct st_tier_moments_t {
    size_t creators; /* with impressions */
    double impressions;
    double engagements;
    /* rates r_i = e_i / n_i and inverse impressions, for the variance */
    double sum_r;
    double sum_r2;
    double sum_inv_n;
} tier_moments_t;

typedef struct st_tier_components_t {
    double reach;
    double engagement;
    double video_momentum;
    double consistency;
} tier_components_t;

/** A computed score (yaowei.tier.v1.TierScore without percentile and rising). */
typedef struct st_tier_result_t {
    tier_level_t tier;
    double score;
    tier_components_t components;
    double rate_raw;
    double rate_smoothed;
    double rate_lower_bound;
    int insufficient_data;
} tier_result_t;

/** The default policy: 500,000 / 50,000 / 5,000 followers, weights 0.25 / 0.35 / 0.25 /
 * 0.15, rising top 10%, 30-day window; version 1. */
void tier_policy_default(tier_policy_t *p);

/** The tier of `followers` under `p`: >= head HEAD, >= mid MID, >= tail TAIL, else AMATEUR. */
tier_level_t tier_of(int64_t followers, const tier_policy_t *p);

/** "TIER_HEAD", ...; "TIER_UNSPECIFIED" for anything else. */
const char *tier_name(tier_level_t t);

/** Adds one creator to `m` (creators without impressions are skipped). */
void tier_moments_add(tier_moments_t *m, int64_t impressions, int64_t engagements);

/**
 * The Beta prior the creators of `m` support, by the method of moments:
 *   mu  = sum e_i / sum n_i (engagements clamped to impressions), the pooled rate;
 *   V   = mean of (r_i - mu)^2, the observed variance of the rates;
 *   N   = mean of mu (1 - mu) / n_i, what binomial sampling alone adds to V;
 *   tau2 = V - N, the variance of the creators' true rates;
 *   strength s = mu (1 - mu) / tau2 - 1, within [TIER_PRIOR_STRENGTH_MIN, _MAX];
 *   alpha = mu s, beta = (1 - mu) s.
 * Returns 0, or -1 when `m` supports no estimate: fewer than TIER_PRIOR_MIN_CREATORS
 * creators with impressions (one creator says nothing of the spread), mu of 0 or 1, or
 * no spread beyond sampling noise (tau2 <= 0). `source` is left to the caller.
 */
int tier_prior_estimate(const tier_moments_t *m, tier_prior_t *out);

/** The fixed prior: Beta(5, 95) (mean 5%, strength 100 impressions). */
tier_prior_t tier_prior_default(void);

/** alpha / (alpha + beta). */
double tier_prior_mean(const tier_prior_t *p);

/**
 * Scores `in` under `policy` with the prior of the creator's category:
 *   tier        tier_of(followers)
 *   reach       100 * (f + i) / 2, f = min(1, log10(1 + followers) / log10(1 + 1e7)),
 *               i = min(1, log10(1 + imp30) / log10(1 + 1e8)),
 *               imp30 = impressions * 30 / window_days
 *   engagement  100 * L / (L + m): m = prior mean, L = max(0, mean - 1.96 sd) of the
 *               posterior Beta(alpha + e, beta + n - e) (e clamped to n); 0 without
 *               impressions
 *   video_momentum 100 * (share + completion + growth) / 3: share = video_notes / notes,
 *               completion = avg_completion_rate, growth = 0.5 + log2((v7 + 100) /
 *               (p7 + 100)) / 4 within [0, 1]; 0 without notes
 *   consistency 100 * min(1, (notes * 7 / window_days) / 3)
 *   score       sum of weight * component / sum of weights
 * insufficient_data: no notes or no impressions in the window. rate_raw = e / n
 * (unclamped), rate_smoothed = posterior mean; both 0 without impressions.
 */
void tier_score_compute(const tier_input_t *in, const tier_policy_t *policy,
                        const tier_prior_t *prior, tier_result_t *out);

/**
 * Percentile of a score in its group: 100 * at_or_below / total, where `total` counts
 * the creator itself and `at_or_below` the creators (itself included) whose score is
 * at or below its own. 0 when total is 0.
 */
double tier_percentile(size_t at_or_below, size_t total);

/**
 * The rising flag: MID and TAIL creators whose rank in their tier (1 + the creators
 * with a strictly higher score) is within max(1, floor(fraction * total)).
 */
int tier_is_rising(tier_level_t tier, size_t rank, size_t total, double fraction);

/**
 * Quantile `q` (0..1) of `n` scores sorted best first (descending), linearly
 * interpolated between order statistics (the "type 7" definition). 0 when n is 0.
 */
double tier_quantile_desc(const double *desc, size_t n, double q);

#ifdef __cplusplus
}
#endif
#endif
