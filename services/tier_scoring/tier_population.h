/*
 * tier_population.h — every creator's score, and what percentiles, the rising flag,
 * ListCreatorsByTier and GetTierDistribution need from them. Pure: no I/O, no clock.
 *
 * Two layers:
 * - a snapshot (tier_snapshot_t): what one refresh read from creator profile, every
 *   creator in creator_id order with its primary category and its inputs;
 * - a population (tier_population_t): a snapshot scored under one policy: a result per
 *   creator, the Beta prior of each category, and the creators of each tier and of
 *   each (category, tier) sorted best first, with each creator's percentile and rising
 *   flag.
 * Both are immutable once built and reference-counted (atomically), so a population can
 * be built on a worker thread from a snapshot the loop still reads, and saved by the
 * store's writer while handlers read it. Whoever holds a reference may read; the last
 * unref frees.
 */
#ifndef TIER_POPULATION_H
#define TIER_POPULATION_H

#include <stddef.h>
#include <stdint.h>

#include "services/tier_scoring/tier_score.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One creator as the refresher read it. */
typedef struct st_tier_creator_t {
    char *creator_id; /* owned by the snapshot */
    char *category;   /* primary category, "" when none; owned by the snapshot */
    tier_input_t in;
} tier_creator_t;

#define TIER_DAY_BUFSZ 16

typedef struct st_tier_snapshot_t {
    tier_creator_t *creators; /* n, in creator_id order (strcmp) once sealed */
    size_t n;
    size_t cap;
    int32_t window_days;          /* the stats' window */
    char end_day[TIER_DAY_BUFSZ]; /* its last day, "YYYY-MM-DD" ("" for today) */
    int64_t time_s;               /* when it was read; 0: never (empty start) */
    int32_t time_ns;
    uint64_t seq; /* the refresh that read it (tier_refresh.h: 1, 2, ...); 0: loaded */
    unsigned refs;
} tier_snapshot_t;

/** A new empty snapshot with one reference, or NULL (out of memory). */
tier_snapshot_t *tier_snapshot_new(void);

/** Appends a creator (strings copied). Before tier_snapshot_seal(). 0 or -ENOMEM. */
int tier_snapshot_add(tier_snapshot_t *s, const char *creator_id, const char *category,
                      const tier_input_t *in);

/**
 * Sorts the creators by creator_id and drops repeated ids (the first added stays).
 * Returns 0, or -ENOMEM (the snapshot is then unchanged and not sealed).
 */
int tier_snapshot_seal(tier_snapshot_t *s);

tier_snapshot_t *tier_snapshot_ref(tier_snapshot_t *s);
/** Drops a reference; frees at the last. NULL is a no-op. */
void tier_snapshot_unref(tier_snapshot_t *s);

/** Index of `creator_id` in a sealed snapshot, or -1. */
long tier_snapshot_find(const tier_snapshot_t *s, const char *creator_id);

/** Where a creator stands in the population. */
typedef struct st_tier_standing_t {
    double percentile;
    int rising;
} tier_standing_t;

/** Creators of one tier, or of one (category, tier), best first (score, then id). */
typedef struct st_tier_group_t {
    const char *category; /* NULL: the whole tier; else points into the snapshot */
    tier_level_t tier;
    size_t n;
    const size_t *idx;    /* creator indexes in the snapshot */
    const double *scores; /* scores[i] is the score of idx[i]; descending */
} tier_group_t;

typedef struct st_tier_category_prior_t {
    const char *category; /* points into the snapshot */
    tier_prior_t prior;
    size_t creators; /* with impressions: what the estimate read */
} tier_category_prior_t;

typedef struct st_tier_population_t {
    tier_snapshot_t *snap; /* a reference */
    tier_policy_t policy;  /* the policy the scores were computed under */
    int64_t compute_time_s;
    int32_t compute_time_ns;
    tier_result_t *results;        /* snap->n, parallel to snap->creators */
    tier_standing_t *standings;    /* snap->n */
    tier_prior_t global_prior;     /* every creator's; or the fixed default */
    tier_category_prior_t *priors; /* by category (strcmp); a category missing here uses
                                      global_prior */
    size_t n_priors;
    tier_group_t tiers[TIER_LEVELS]; /* tiers[t - 1] for tier t */
    tier_group_t *groups;            /* by (category, tier) */
    size_t n_groups;
    /* storage of the groups */
    size_t *order_tier, *order_cat;
    double *scores_tier, *scores_cat;
    unsigned refs;
} tier_population_t;

/**
 * Scores every creator of `snap` (sealed) under `policy` and builds the groups. The
 * population takes its own reference of `snap`. Safe on any thread as long as nobody
 * writes `snap` (sealed snapshots are never written). Returns 0 or -ENOMEM.
 */
int tier_population_build(tier_snapshot_t *snap, const tier_policy_t *policy, int64_t now_s,
                          int32_t now_ns, tier_population_t **out);

tier_population_t *tier_population_ref(tier_population_t *p);
/** Drops a reference; frees at the last (and drops its snapshot reference). NULL: no-op. */
void tier_population_unref(tier_population_t *p);

/** The prior a creator of `category` is scored with: the category's, else the global one. */
const tier_prior_t *tier_population_prior(const tier_population_t *p, const char *category);

/**
 * The group of `tier` (HEAD..AMATEUR) and `category` (NULL or "": the whole tier). A
 * missing (category, tier) gives an empty group with `category` NULL.
 */
tier_group_t tier_population_group(const tier_population_t *p, tier_level_t tier,
                                   const char *category);

/**
 * Where a score computed now (`r`, of creator `creator_id` in primary category
 * `category`, "" for none) stands in the
 * population: percentile within (r->tier, category), rank within r->tier for rising
 * under `rising_top_fraction`. The creator's own entry, when the population has one in
 * the same group, is replaced by the new score (not counted twice).
 */
tier_standing_t tier_population_standing(const tier_population_t *p, const char *creator_id,
                                         const char *category, const tier_result_t *r,
                                         double rising_top_fraction);

/**
 * The position in `g` of the first creator strictly after (score, creator_id) in
 * best-first order: a lower score, or the same score and a greater id.
 */
size_t tier_group_seek(const tier_group_t *g, const tier_population_t *p, double score,
                       const char *creator_id);

/** Count of scores in `g` strictly above `score`. */
size_t tier_group_count_above(const tier_group_t *g, double score);

/** Creators of `g` flagged rising. */
size_t tier_group_rising(const tier_group_t *g, const tier_population_t *p);

/** Mean score of `g`; 0 when empty. */
double tier_group_mean(const tier_group_t *g);

#ifdef __cplusplus
}
#endif
#endif
