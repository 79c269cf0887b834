/*
 * demo_gen.h — the world and the traffic of the main job (tools/demo): creators with
 * heavy-tailed followers, their notes and the products those tag, 30 days of per-note
 * stats, and a stream of exposures, conversions and refunds with the refunds, late
 * exposures, duplicates and invalid events that real traffic has.
 *
 * Pure and deterministic: no I/O, no gRPC, no clock (the caller passes `now_s`), no
 * global state. The same parameters (seed and now_s included) give the same world and
 * the same events in the same order. Independent random streams feed the world, the
 * stats and the events, so that changing how many stats rows a note gets does not
 * change the exposures.
 *
 * The model, in words:
 * - followers are log-normal: log10(followers) ~ N(log10(followers_median),
 *   followers_spread). The defaults (median 1,600, spread 0.9) put ~0.3 % of creators
 *   at >= 500k (head), ~4.5 % at 50k-500k (mid), ~24 % at 5k-50k (tail) and the rest
 *   below (amateur);
 * - each creator has a primary category (and sometimes a second), a region, a quality
 *   q = 10^N(0, quality_spread) that scales both its engagement and its clicks;
 * - feeds are top-heavy: an impression picks its creator with probability proportional
 *   to followers^feed_exponent, then one of the creator's notes, a viewer and a time
 *   within the note's feed life (14 days from posting);
 * - after an impression, a video note is played (VIEW) with probability view_rate of the
 *   creator's tier, the product card is tapped (CLICK) with probability ctr * q, and a
 *   click becomes an order of one of the note's products with probability cvr, a few
 *   hours later. With probability assist_rate the buyer had tapped the same product on
 *   another (bigger) creator's note a day or so earlier: an assist touch, where the
 *   attribution models disagree. organic_rate of all orders follow no exposure at all;
 * - traffic is untidy: late_rate of exposures arrive after the conversions, dup_rate of
 *   events are sent twice (same id), invalid_rate of events come with one broken field,
 *   and refund_rate of orders are refunded (fully or half).
 */
#ifndef DEMO_GEN_H
#define DEMO_GEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Tiers, best first; TIER_HEAD..TIER_AMATEUR of yaowei.tier.v1.Tier are these + 1. */
enum { DEMO_TIER_HEAD, DEMO_TIER_MID, DEMO_TIER_TAIL, DEMO_TIER_AMATEUR, DEMO_TIERS };

#define DEMO_CATEGORIES 8
#define DEMO_REGIONS 12

/** Exposure kinds; the values are those of yaowei.attribution.v1.ExposureKind. */
enum { DEMO_KIND_IMPRESSION = 1, DEMO_KIND_VIEW = 2, DEMO_KIND_CLICK = 3 };

/** How an invalid exposure is broken (0: it is valid). */
enum {
    DEMO_BAD_EXP_NONE,
    DEMO_BAD_EXP_NO_VIEWER,   /* viewer_id empty */
    DEMO_BAD_EXP_NO_PRODUCTS, /* product_ids empty */
    DEMO_BAD_EXP_NO_KIND,     /* kind UNSPECIFIED */
    DEMO_BAD_EXP_WATCH,       /* watch_ms negative */
    DEMO_BAD_EXP_FUTURE,      /* occur_time a day ahead */
    DEMO_BAD_EXP_NO_ID,       /* event_id empty */
    DEMO_BAD_EXP_KINDS
};

/** How an invalid conversion is broken (0: it is valid). */
enum {
    DEMO_BAD_CONV_NONE,
    DEMO_BAD_CONV_AMOUNT,     /* amount_minor 0 */
    DEMO_BAD_CONV_CURRENCY,   /* currency "USD" */
    DEMO_BAD_CONV_NO_VIEWER,  /* viewer_id empty */
    DEMO_BAD_CONV_NO_PRODUCT, /* product_id empty */
    DEMO_BAD_CONV_KINDS
};

/** How an invalid refund is broken (0: it is valid). */
enum {
    DEMO_BAD_REF_NONE,
    DEMO_BAD_REF_UNKNOWN_ORDER, /* order_id of no conversion */
    DEMO_BAD_REF_TOO_MUCH,      /* more than the order's amount */
    DEMO_BAD_REF_AMOUNT,        /* amount_minor 0 */
    DEMO_BAD_REF_KINDS
};

/** "beauty", "fashion", ... (index = category). */
extern const char *const demo_category_names[DEMO_CATEGORIES];
/** ISO 3166-2:CN region codes, "CN-31", ... */
extern const char *const demo_region_names[DEMO_REGIONS];

/** "HEAD", "MID", "TAIL", "AMATEUR"; "?" out of range. */
const char *demo_tier_name(int tier);

/** Every knob of the generator. demo_params_default() fills the defaults. */
typedef struct st_demo_params_t {
    uint64_t seed;
    /** The wall clock the world is made against (UTC seconds): the period is the `days`
     * UTC days ending with the one holding now_s, and no event is later than now_s. */
    int64_t now_s;
    uint32_t creators;
    uint32_t viewers;
    uint32_t products;
    /** Days of the period (1..89). */
    uint32_t days;
    /** Feed impressions to generate (views, clicks, assists come on top). */
    uint64_t impressions;
    /** Log-normal followers: median and log10 standard deviation. */
    double followers_median;
    double followers_spread;
    /** Tier thresholds (followers), as tier scoring's policy. */
    int64_t head_min, mid_min, tail_min;
    /** An impression picks a creator with weight followers^feed_exponent. */
    double feed_exponent;
    /** Per tier (DEMO_TIER_*): notes posted per 30 days, views per impression of a video
     * note, clicks per impression (times the creator's quality), orders per click. */
    double notes_per_30d[DEMO_TIERS];
    double view_rate[DEMO_TIERS];
    double ctr[DEMO_TIERS];
    double cvr[DEMO_TIERS];
    /** log10 standard deviation of a creator's quality (0: all equal). */
    double quality_spread;
    /** Orders with an assist click on another creator's note before the buying click. */
    double assist_rate;
    /** Orders refunded (half of them fully, half by half). */
    double refund_rate;
    /** Share of orders that follow no exposure (search, the shop page): unattributed. */
    double organic_rate;
    /** Exposures held back and sent after the conversions. */
    double late_rate;
    /** Events sent twice, with the same id. */
    double dup_rate;
    /** Events followed by a broken event (one field invalid). */
    double invalid_rate;
    /** Days of stats rows each note gets, from the day it was posted. */
    uint32_t stats_days;
} demo_params_t;

/** The default size: 100,000 creators, 30 days, 4,000,000 impressions. */
void demo_params_default(demo_params_t *p);

/** Scales `p` down to the QUICK size (10,000 creators, 300,000 impressions, ...). */
void demo_params_quick(demo_params_t *p);

/** 0, or -EINVAL with the parameter and the rule broken in `err`. */
int demo_params_validate(const demo_params_t *p, char *err, size_t errlen);

/** The tier (DEMO_TIER_*) of `followers` under the thresholds of `p`. */
int demo_tier_of(const demo_params_t *p, int64_t followers);

typedef struct st_demo_creator_t {
    int64_t followers;
    /** followers^feed_exponent: the creator's share of the feed, unnormalised. */
    double weight;
    /** Multiplies engagement and clicks per impression. */
    double quality;
    uint32_t first_note, n_notes;
    uint8_t tier, category, category2, region;
    /** 1 when the creator has a second category (category2). */
    uint8_t has_category2;
} demo_creator_t;

typedef struct st_demo_note_t {
    uint32_t creator;
    /** 0-based day of the period it was posted on. */
    uint16_t post_day;
    uint8_t is_video;
    uint8_t n_products;
    uint32_t products[3];
    /** When it was posted (UTC seconds). */
    int64_t post_s;
    /** Video completion rate, 0 for an image note. */
    double completion;
} demo_note_t;

typedef struct st_demo_product_t {
    uint8_t category;
    int64_t price_minor;
} demo_product_t;

/** The world: made by demo_world_create(), read-only after. */
typedef struct st_demo_world_t {
    demo_params_t p;
    /** 00:00 UTC of the period's first day; exposures are within [start_s, end_s]. */
    int64_t start_s, end_s;
    demo_creator_t *creators;
    demo_note_t *notes;
    size_t n_notes;
    demo_product_t *products;
    /** Notes tagging product k: tag_notes[tag_off[k] .. tag_off[k + 1]). */
    uint32_t *tag_off, *tag_notes;
    /** Vose alias table over creators by weight. */
    double *alias_prob;
    uint32_t *alias_idx;
    uint64_t tier_creators[DEMO_TIERS];
} demo_world_t;

/** Makes the world of `p`. Returns 0, -EINVAL (err says why) or -ENOMEM. */
int demo_world_create(const demo_params_t *p, demo_world_t **out, char *err, size_t errlen);

void demo_world_destroy(demo_world_t *w);

/** xoshiro256**, seeded by splitmix64 from (seed, stream). */
typedef struct st_demo_rng_t {
    uint64_t s[4];
} demo_rng_t;

void demo_rng_seed(demo_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t demo_rng_next(demo_rng_t *r);
/** Uniform in [0, 1). */
double demo_rng_uniform(demo_rng_t *r);
/** Uniform in [0, n); n > 0. */
uint64_t demo_rng_below(demo_rng_t *r, uint64_t n);
/** Standard normal. */
double demo_rng_normal(demo_rng_t *r);

/* ---- per-note daily stats (CreatorProfileService.RecordNoteStats) ---- */

typedef struct st_demo_stat_row_t {
    uint32_t note;
    /** 0-based day of the period. */
    uint16_t day;
    int64_t impressions, views, video_plays, avg_watch_ms;
    int64_t likes, collects, comments, shares, follows_gained;
    double completion_rate;
} demo_stat_row_t;

typedef struct st_demo_stats_iter_t {
    demo_rng_t rng;
    size_t note;
    uint32_t k;
} demo_stats_iter_t;

/** Rows the stats stream holds in all. */
uint64_t demo_stats_rows(const demo_world_t *w);

void demo_stats_begin(const demo_world_t *w, demo_stats_iter_t *it);

/** Writes up to `max` next rows; returns how many (0 at the end). */
size_t demo_stats_next(const demo_world_t *w, demo_stats_iter_t *it, demo_stat_row_t *rows,
                       size_t max);

/* ---- events (AttributionService.RecordExposures, RecordConversions, RecordRefunds) ---- */

typedef struct st_demo_exposure_t {
    /** Event number: event_id "e-<seq>" (invalid events are numbered too). */
    uint64_t seq;
    uint32_t viewer, creator, note;
    int32_t watch_ms;
    int64_t time_ms;
    uint8_t kind;
    /** DEMO_BAD_EXP_*; 0 when valid. */
    uint8_t bad;
} demo_exposure_t;

typedef struct st_demo_conversion_t {
    /** Order number: order_id "o-<seq>" ("ox-<seq>" for an invalid one). */
    uint64_t seq;
    uint32_t viewer, product;
    int32_t quantity;
    int64_t amount_minor;
    int64_t time_ms;
    uint8_t bad;
} demo_conversion_t;

typedef struct st_demo_refund_t {
    /** refund_id "r-<seq>". */
    uint64_t seq;
    /** The order's number ("o-<order>"; "o-missing-<order>" for UNKNOWN_ORDER). */
    uint64_t order;
    int64_t amount_minor;
    int64_t time_ms;
    uint8_t bad;
} demo_refund_t;

/** What was sent of one kind of event, and what the services should make of it. */
typedef struct st_demo_counts_t {
    uint64_t sent;
    /** Distinct valid events: what should be accepted. */
    uint64_t accepted;
    /** Copies of earlier valid events (same id). */
    uint64_t duplicates;
    /** Broken events. */
    uint64_t rejected;
} demo_counts_t;

/** The generator's ground truth, complete once the main exposure stream has ended. */
typedef struct st_demo_truth_t {
    demo_counts_t exposures, conversions, refunds;
    /** Of the exposures, those in the late stream (all of its events). */
    uint64_t late_sent;
    /** Distinct valid exposures by kind and creator tier. */
    uint64_t impressions[DEMO_TIERS], views[DEMO_TIERS], clicks[DEMO_TIERS];
    /** Orders by the tier of the creator whose note was clicked last; assisted orders;
     * orders that follow no exposure. */
    uint64_t orders[DEMO_TIERS];
    uint64_t assisted_orders;
    uint64_t organic_orders;
    /** Valid conversions' amounts and valid refunds' amounts (minor units). */
    int64_t gross_minor, refunded_minor;
} demo_truth_t;

typedef struct st_demo_events_t demo_events_t;

/** Starts the event streams of `w` (which must outlive them). 0 or -ENOMEM. */
int demo_events_create(const demo_world_t *w, demo_events_t **out);

void demo_events_destroy(demo_events_t *e);

/**
 * The main exposure stream, in send order: writes up to `max` events to `out` and their
 * count to `*n` (0 at the end of the stream, after which the other streams and the
 * truth are complete). Returns 0 or -ENOMEM.
 */
int demo_events_exposures(demo_events_t *e, demo_exposure_t *out, size_t max, size_t *n);

/** The conversions (valid, duplicate and invalid), in send order; NULL before the main
 * stream ended. */
const demo_conversion_t *demo_events_conversions(const demo_events_t *e, size_t *n);

/** The late exposures, sent after the conversions; NULL before the main stream ended. */
const demo_exposure_t *demo_events_late(const demo_events_t *e, size_t *n);

/** The refunds, sent last; NULL before the main stream ended. */
const demo_refund_t *demo_events_refunds(const demo_events_t *e, size_t *n);

/** The ground truth (partial until the main stream ended). */
const demo_truth_t *demo_events_truth(const demo_events_t *e);

/** Runs every stream of `w` once, without keeping the events, into `*truth` (event
 * totals for progress and for the final check). 0 or -ENOMEM. */
int demo_plan(const demo_world_t *w, demo_truth_t *truth);

#ifdef __cplusplus
}
#endif
#endif
