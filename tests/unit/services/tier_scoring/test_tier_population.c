/*
 * test_tier_population.c — unit tests of services/tier_scoring/tier_population.c:
 * snapshots in creator_id order, priors per category with their fallbacks (a category
 * with one creator), groups best first, percentiles and rising in the population and
 * for scores computed later, keyset seeking, reference counting.
 */
#include "services/tier_scoring/tier_population.h"

#include <math.h>

#include "tests/unit/test.h"

static void add(tier_snapshot_t *s, const char *id, const char *category, int64_t followers,
                int64_t impressions, int64_t engagements)
{
    tier_input_t in = {
        .followers = followers,
        .window_days = 30,
        .notes = impressions > 0 ? 4 : 0,
        .impressions = impressions,
        .engagements = engagements,
    };
    YW_CHECK_INT(tier_snapshot_add(s, id, category, &in), ==, 0);
}

static tier_policy_t policy(void)
{
    tier_policy_t p;
    tier_policy_default(&p);
    return p;
}

static tier_population_t *build(tier_snapshot_t *s, const tier_policy_t *p)
{
    tier_population_t *pop = NULL;
    YW_CHECK_INT(tier_population_build(s, p, 1700000000, 0, &pop), ==, 0);
    YW_CHECK(pop != NULL);
    return pop;
}

static const char *id_at(const tier_population_t *p, const tier_group_t *g, size_t k)
{
    return p->snap->creators[g->idx[k]].creator_id;
}

/*
 * Ten MID food creators m0..m9 whose scores rise with the index (same stats, more
 * followers), rates spread around 5%; two TAIL creators; one MID creator alone in
 * "solo"; one HEAD creator without a category; one AMATEUR with no stats.
 */
static tier_snapshot_t *fixture(void)
{
    tier_snapshot_t *s = tier_snapshot_new();
    YW_CHECK(s != NULL);
    char id[16];
    static const int64_t eng[] = {300, 500, 700, 400, 600, 350, 650, 450, 550, 500};
    for (int i = 9; i >= 0; i--) { /* out of order on purpose */
        snprintf(id, sizeof id, "m%d", i);
        add(s, id, "food", 50000 + 40000 * i, 10000, eng[i] + 100 * i);
    }
    add(s, "t0", "food", 6000, 8000, 400);
    add(s, "t1", "food", 30000, 8000, 420);
    add(s, "solo", "solo", 70000, 9000, 900);
    add(s, "h", "", 900000, 500000, 20000);
    add(s, "a", "food", 100, 0, 0);
    add(s, "m3", "food", 1, 1, 1); /* a repeated id: dropped */
    YW_CHECK_INT(tier_snapshot_seal(s), ==, 0);
    s->time_s = 1700000000;
    return s;
}

YW_TEST(snapshot_is_sorted_and_unique)
{
    tier_snapshot_t *s = fixture();
    YW_CHECK_INT(s->n, ==, 15);
    for (size_t i = 1; i < s->n; i++) {
        YW_CHECK(strcmp(s->creators[i - 1].creator_id, s->creators[i].creator_id) < 0);
    }
    long m3 = tier_snapshot_find(s, "m3");
    YW_CHECK(m3 >= 0);
    YW_CHECK_INT(tier_snapshot_find(s, "nobody"), ==, -1);
    tier_snapshot_unref(s);
}

YW_TEST(category_with_one_creator_uses_the_global_prior)
{
    tier_snapshot_t *s = fixture();
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    YW_CHECK_INT(pop->global_prior.source, ==, TIER_PRIOR_GLOBAL);
    const tier_prior_t *food = tier_population_prior(pop, "food");
    YW_CHECK_INT(food->source, ==, TIER_PRIOR_CATEGORY);
    const tier_prior_t *solo = tier_population_prior(pop, "solo");
    YW_CHECK_INT(solo->source, ==, TIER_PRIOR_GLOBAL);
    YW_CHECK(solo->alpha == pop->global_prior.alpha && solo->beta == pop->global_prior.beta);
    /* An unknown category (a creator created since the refresh) gets the global one. */
    YW_CHECK(tier_population_prior(pop, "new-category") == &pop->global_prior);
    /* The lone creator's score is what tier_score_compute gives with the global prior. */
    long i = tier_snapshot_find(s, "solo");
    tier_result_t r;
    tier_score_compute(&s->creators[i].in, &p, &pop->global_prior, &r);
    YW_CHECK(r.score == pop->results[i].score);
    /* Alone in its (category, tier): percentile 100. */
    YW_CHECK(pop->standings[i].percentile == 100.0);
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(too_few_creators_anywhere_use_the_default_prior)
{
    tier_snapshot_t *s = tier_snapshot_new();
    add(s, "x1", "food", 10000, 40, 10);
    add(s, "x2", "food", 10000, 400000, 60000);
    YW_CHECK_INT(tier_snapshot_seal(s), ==, 0);
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    YW_CHECK_INT(pop->global_prior.source, ==, TIER_PRIOR_DEFAULT);
    YW_CHECK_INT(tier_population_prior(pop, "food")->source, ==, TIER_PRIOR_DEFAULT);
    /* The small-creator case holds in this population of two. */
    long small = tier_snapshot_find(s, "x1"), big = tier_snapshot_find(s, "x2");
    YW_CHECK(pop->results[small].components.engagement < pop->results[big].components.engagement);
    YW_CHECK(pop->results[small].rate_smoothed < pop->results[big].rate_smoothed);
    YW_CHECK(pop->results[small].score < pop->results[big].score);
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(groups_are_best_first_with_percentiles_and_rising)
{
    tier_snapshot_t *s = fixture();
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);

    tier_group_t mid = tier_population_group(pop, TIER_LEVEL_MID, NULL);
    YW_CHECK_INT(mid.n, ==, 11); /* m0..m9 and solo */
    for (size_t k = 1; k < mid.n; k++) {
        YW_CHECK(mid.scores[k - 1] >= mid.scores[k]);
        YW_CHECK(mid.scores[k] == pop->results[mid.idx[k]].score);
    }
    tier_group_t food_mid = tier_population_group(pop, TIER_LEVEL_MID, "food");
    YW_CHECK_INT(food_mid.n, ==, 10);
    YW_CHECK_STR(food_mid.category, "food");
    /* m9 has the most followers and the best rate: first; top 10% of 11 is 1. */
    YW_CHECK_STR(id_at(pop, &food_mid, 0), "m9");
    size_t rising = 0;
    for (size_t k = 0; k < mid.n; k++) {
        const tier_standing_t *st = &pop->standings[mid.idx[k]];
        rising += st->rising != 0;
        YW_CHECK(st->rising == (k == 0));
    }
    YW_CHECK_INT(rising, ==, 1);
    YW_CHECK_INT(tier_group_rising(&mid, pop), ==, 1);
    /* Percentiles within (MID, food): 100, 90, ..., 10 from the top. */
    for (size_t k = 0; k < food_mid.n; k++) {
        double want = 100.0 * (double)(food_mid.n - k) / (double)food_mid.n;
        YW_CHECK(fabs(pop->standings[food_mid.idx[k]].percentile - want) < 1e-9);
    }
    /* Groups that do not exist are empty; HEAD never rises. */
    tier_group_t none = tier_population_group(pop, TIER_LEVEL_HEAD, "food");
    YW_CHECK_INT(none.n, ==, 0);
    tier_group_t head = tier_population_group(pop, TIER_LEVEL_HEAD, "");
    YW_CHECK_INT(head.n, ==, 1);
    YW_CHECK(!pop->standings[head.idx[0]].rising);
    tier_group_t amateur = tier_population_group(pop, TIER_LEVEL_AMATEUR, NULL);
    YW_CHECK_INT(amateur.n, ==, 1);
    YW_CHECK(pop->results[amateur.idx[0]].insufficient_data);
    YW_CHECK(fabs(tier_group_mean(&amateur) - amateur.scores[0]) < 1e-12);
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(seek_pages_through_a_group)
{
    tier_snapshot_t *s = fixture();
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    tier_group_t g = tier_population_group(pop, TIER_LEVEL_MID, NULL);
    size_t seen = 0, start = 0;
    while (start < g.n) {
        size_t end = start + 3 < g.n ? start + 3 : g.n;
        seen += end - start;
        size_t last = g.idx[end - 1];
        start = tier_group_seek(&g, pop, pop->results[last].score, s->creators[last].creator_id);
        YW_CHECK_INT(start, ==, end);
    }
    YW_CHECK_INT(seen, ==, g.n);
    /* A key that is no longer in the group (its creator left or moved) still seeks. */
    YW_CHECK_INT(tier_group_seek(&g, pop, g.scores[0] + 1.0, "zzz"), ==, 0);
    YW_CHECK_INT(tier_group_seek(&g, pop, -1.0, "a"), ==, g.n);
    /* Ties are ordered by creator_id. */
    YW_CHECK_INT(tier_group_seek(&g, pop, g.scores[1], ""), ==, 1);
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(standing_of_a_fresh_score)
{
    tier_snapshot_t *s = fixture();
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    tier_group_t food_mid = tier_population_group(pop, TIER_LEVEL_MID, "food");

    /* The same score as in the population: the same standing. */
    for (size_t k = 0; k < food_mid.n; k++) {
        size_t i = food_mid.idx[k];
        tier_standing_t st = tier_population_standing(pop, s->creators[i].creator_id, "food",
                                                      &pop->results[i], p.rising_top_fraction);
        YW_CHECK(st.percentile == pop->standings[i].percentile);
        YW_CHECK(st.rising == pop->standings[i].rising);
    }
    /* The last one now beats everybody: it replaces its own entry, not counted twice. */
    size_t last = food_mid.idx[food_mid.n - 1];
    tier_result_t r = pop->results[last];
    r.score = food_mid.scores[0] + 1.0;
    tier_standing_t st =
        tier_population_standing(pop, s->creators[last].creator_id, "food", &r, 0.1);
    YW_CHECK(st.percentile == 100.0);
    YW_CHECK(st.rising);
    /* A creator the population does not know yet joins its group: 11 with it. */
    r.score = food_mid.scores[food_mid.n - 1] - 1.0;
    st = tier_population_standing(pop, "newcomer", "food", &r, 0.1);
    YW_CHECK(fabs(st.percentile - 100.0 / 11.0) < 1e-9);
    YW_CHECK(!st.rising);
    /* In a category nobody else has: alone, percentile 100. */
    st = tier_population_standing(pop, "newcomer", "tea", &r, 0.1);
    YW_CHECK(st.percentile == 100.0);
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(empty_population)
{
    tier_snapshot_t *s = tier_snapshot_new();
    YW_CHECK_INT(tier_snapshot_seal(s), ==, 0);
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    YW_CHECK_INT(pop->global_prior.source, ==, TIER_PRIOR_DEFAULT);
    for (int t = TIER_LEVEL_HEAD; t <= TIER_LEVEL_AMATEUR; t++) {
        tier_group_t g = tier_population_group(pop, (tier_level_t)t, NULL);
        YW_CHECK_INT(g.n, ==, 0);
        YW_CHECK(tier_group_mean(&g) == 0.0);
        YW_CHECK(tier_quantile_desc(g.scores, g.n, 0.5) == 0.0);
    }
    tier_result_t r = {.tier = TIER_LEVEL_TAIL, .score = 12.0};
    tier_standing_t st = tier_population_standing(pop, "x", "", &r, 0.1);
    YW_CHECK(st.percentile == 100.0);
    YW_CHECK(st.rising); /* a tier of one has one rising creator */
    tier_population_unref(pop);
    tier_snapshot_unref(s);
}

YW_TEST(population_keeps_its_snapshot)
{
    tier_snapshot_t *s = fixture();
    tier_policy_t p = policy();
    tier_population_t *pop = build(s, &p);
    tier_snapshot_unref(s); /* the population still holds it */
    YW_CHECK_INT(pop->snap->n, ==, 15);
    YW_CHECK(tier_population_ref(pop) == pop);
    tier_population_unref(pop);
    YW_CHECK_STR(pop->snap->creators[0].creator_id, "a");
    YW_CHECK_INT(pop->policy.version, ==, 1);
    YW_CHECK_INT(pop->compute_time_s, ==, 1700000000);
    tier_population_unref(pop); /* LeakSanitizer checks that everything went */
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(snapshot_is_sorted_and_unique),
        YW_TEST_ENTRY(category_with_one_creator_uses_the_global_prior),
        YW_TEST_ENTRY(too_few_creators_anywhere_use_the_default_prior),
        YW_TEST_ENTRY(groups_are_best_first_with_percentiles_and_rising),
        YW_TEST_ENTRY(seek_pages_through_a_group),
        YW_TEST_ENTRY(standing_of_a_fresh_score),
        YW_TEST_ENTRY(empty_population),
        YW_TEST_ENTRY(population_keeps_its_snapshot),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
