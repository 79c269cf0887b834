/* tier_score.c — the scoring maths. See tier_score.h for every formula. */
#include "services/tier_scoring/tier_score.h"

#include <math.h>

void tier_policy_default(tier_policy_t *p)
{
    *p = (tier_policy_t){
        .version = 1,
        .head_min_followers = 500000,
        .mid_min_followers = 50000,
        .tail_min_followers = 5000,
        .weights = {.reach = 0.25, .engagement = 0.35, .video_momentum = 0.25, .consistency = 0.15},
        .rising_top_fraction = 0.1,
        .window_days = 30,
    };
}

tier_level_t tier_of(int64_t followers, const tier_policy_t *p)
{
    if (followers >= p->head_min_followers) {
        return TIER_LEVEL_HEAD;
    }
    if (followers >= p->mid_min_followers) {
        return TIER_LEVEL_MID;
    }
    if (followers >= p->tail_min_followers) {
        return TIER_LEVEL_TAIL;
    }
    return TIER_LEVEL_AMATEUR;
}

const char *tier_name(tier_level_t t)
{
    switch (t) {
    case TIER_LEVEL_HEAD:
        return "TIER_HEAD";
    case TIER_LEVEL_MID:
        return "TIER_MID";
    case TIER_LEVEL_TAIL:
        return "TIER_TAIL";
    case TIER_LEVEL_AMATEUR:
        return "TIER_AMATEUR";
    default:
        return "TIER_UNSPECIFIED";
    }
}

static double clamp01(double x)
{
    if (!(x > 0.0)) { /* NaN too */
        return 0.0;
    }
    return x < 1.0 ? x : 1.0;
}

/* ---- priors ---- */

void tier_moments_add(tier_moments_t *m, int64_t impressions, int64_t engagements)
{
    if (impressions <= 0) {
        return;
    }
    double n = (double)impressions;
    double e = engagements < 0 ? 0.0 : engagements > impressions ? n : (double)engagements;
    double r = e / n;
    m->creators++;
    m->impressions += n;
    m->engagements += e;
    m->sum_r += r;
    m->sum_r2 += r * r;
    m->sum_inv_n += 1.0 / n;
}

int tier_prior_estimate(const tier_moments_t *m, tier_prior_t *out)
{
    if (m->creators < TIER_PRIOR_MIN_CREATORS || m->impressions <= 0.0) {
        return -1;
    }
    double k = (double)m->creators;
    double mu = m->engagements / m->impressions;
    if (!(mu > 0.0 && mu < 1.0)) {
        return -1;
    }
    /* mean of (r - mu)^2 = mean r^2 - 2 mu mean r + mu^2 */
    double v = m->sum_r2 / k - 2.0 * mu * (m->sum_r / k) + mu * mu;
    double noise = mu * (1.0 - mu) * (m->sum_inv_n / k);
    double tau2 = v - noise;
    if (!(tau2 > 0.0)) {
        return -1;
    }
    double s = mu * (1.0 - mu) / tau2 - 1.0;
    if (!(s >= TIER_PRIOR_STRENGTH_MIN)) { /* NaN too */
        s = TIER_PRIOR_STRENGTH_MIN;
    } else if (s > TIER_PRIOR_STRENGTH_MAX) {
        s = TIER_PRIOR_STRENGTH_MAX;
    }
    out->alpha = mu * s;
    out->beta = (1.0 - mu) * s;
    out->source = TIER_PRIOR_CATEGORY;
    return 0;
}

tier_prior_t tier_prior_default(void)
{
    return (tier_prior_t){
        .alpha = TIER_PRIOR_DEFAULT_MEAN * TIER_PRIOR_DEFAULT_STRENGTH,
        .beta = (1.0 - TIER_PRIOR_DEFAULT_MEAN) * TIER_PRIOR_DEFAULT_STRENGTH,
        .source = TIER_PRIOR_DEFAULT,
    };
}

double tier_prior_mean(const tier_prior_t *p)
{
    return p->alpha / (p->alpha + p->beta);
}

/* ---- components ---- */

static double reach_of(const tier_input_t *in)
{
    double followers = in->followers > 0 ? (double)in->followers : 0.0;
    double f = clamp01(log10(1.0 + followers) / log10(1.0 + TIER_REACH_FOLLOWERS_FULL));
    double imp30 = 0.0;
    if (in->impressions > 0 && in->window_days > 0) {
        imp30 = (double)in->impressions * 30.0 / (double)in->window_days;
    }
    double i = clamp01(log10(1.0 + imp30) / log10(1.0 + TIER_REACH_IMPRESSIONS_FULL));
    return 100.0 * (f + i) / 2.0;
}

/* Fills the three rates and returns the engagement component; 0 without impressions. */
static double engagement_of(const tier_input_t *in, const tier_prior_t *prior, tier_result_t *out)
{
    out->rate_raw = 0.0;
    out->rate_smoothed = 0.0;
    out->rate_lower_bound = 0.0;
    if (in->impressions <= 0) {
        return 0.0;
    }
    double n = (double)in->impressions;
    double e_raw = in->engagements > 0 ? (double)in->engagements : 0.0;
    double e = e_raw < n ? e_raw : n;
    double a = prior->alpha + e;
    double b = prior->beta + (n - e);
    double mean = a / (a + b);
    double sd = sqrt(a * b / ((a + b) * (a + b) * (a + b + 1.0)));
    double lb = mean - TIER_ENGAGEMENT_Z * sd;
    out->rate_raw = e_raw / n;
    out->rate_smoothed = mean;
    out->rate_lower_bound = lb > 0.0 ? lb : 0.0;
    double m = tier_prior_mean(prior);
    return out->rate_lower_bound > 0.0 ? 100.0 * out->rate_lower_bound / (out->rate_lower_bound + m)
                                       : 0.0;
}

static double video_momentum_of(const tier_input_t *in)
{
    if (in->notes <= 0) {
        return 0.0;
    }
    double share = clamp01((double)in->video_notes / (double)in->notes);
    double completion = clamp01(in->avg_completion_rate);
    double v7 = in->views_last_7d > 0 ? (double)in->views_last_7d : 0.0;
    double p7 = in->views_prev_7d > 0 ? (double)in->views_prev_7d : 0.0;
    double growth = clamp01(
        0.5 + log2((v7 + TIER_GROWTH_PSEUDO_VIEWS) / (p7 + TIER_GROWTH_PSEUDO_VIEWS)) / 4.0);
    return 100.0 * (share + completion + growth) / 3.0;
}

static double consistency_of(const tier_input_t *in)
{
    if (in->notes <= 0 || in->window_days <= 0) {
        return 0.0;
    }
    double per_week = (double)in->notes * 7.0 / (double)in->window_days;
    return 100.0 * clamp01(per_week / TIER_CONSISTENCY_NOTES_PER_WEEK);
}

void tier_score_compute(const tier_input_t *in, const tier_policy_t *policy,
                        const tier_prior_t *prior, tier_result_t *out)
{
    out->tier = tier_of(in->followers, policy);
    out->components.reach = reach_of(in);
    out->components.engagement = engagement_of(in, prior, out);
    out->components.video_momentum = video_momentum_of(in);
    out->components.consistency = consistency_of(in);
    out->insufficient_data = in->notes <= 0 || in->impressions <= 0;

    const tier_weights_t *w = &policy->weights;
    double sum_w = w->reach + w->engagement + w->video_momentum + w->consistency;
    double sum = w->reach * out->components.reach + w->engagement * out->components.engagement +
                 w->video_momentum * out->components.video_momentum +
                 w->consistency * out->components.consistency;
    out->score = sum_w > 0.0 ? sum / sum_w : 0.0;
}

/* ---- standing in the population ---- */

double tier_percentile(size_t at_or_below, size_t total)
{
    if (total == 0) {
        return 0.0;
    }
    return 100.0 * (double)at_or_below / (double)total;
}

int tier_is_rising(tier_level_t tier, size_t rank, size_t total, double fraction)
{
    if (tier != TIER_LEVEL_MID && tier != TIER_LEVEL_TAIL) {
        return 0;
    }
    /* The epsilon keeps 0.1 * 30 from flooring to 2. */
    double slice = floor(fraction * (double)total + 1e-9);
    size_t top = slice < 1.0 ? 1 : (size_t)slice;
    return rank >= 1 && rank <= top;
}

double tier_quantile_desc(const double *desc, size_t n, double q)
{
    if (n == 0) {
        return 0.0;
    }
    q = clamp01(q);
    /* Ascending position h = q (n - 1); ascending index j is descending index n-1-j. */
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double x_lo = desc[n - 1 - lo];
    double x_hi = desc[n - 1 - hi];
    return x_lo + (h - (double)lo) * (x_hi - x_lo);
}
