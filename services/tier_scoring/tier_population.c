/* tier_population.c — snapshots, populations and their groups. See tier_population.h. */
#define _GNU_SOURCE /* qsort_r */
#include "services/tier_scoring/tier_population.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/vec.h"

/* ---- snapshots ---- */

tier_snapshot_t *tier_snapshot_new(void)
{
    tier_snapshot_t *s = calloc(1, sizeof *s);
    if (s != NULL) {
        s->refs = 1;
    }
    return s;
}

int tier_snapshot_add(tier_snapshot_t *s, const char *creator_id, const char *category,
                      const tier_input_t *in)
{
    if (YW_VEC_GROW(s->creators, s->n, s->cap, 1, 1024) != 0) {
        return -ENOMEM;
    }
    tier_creator_t *c = &s->creators[s->n];
    c->creator_id = strdup(creator_id);
    c->category = strdup(category != NULL ? category : "");
    if (c->creator_id == NULL || c->category == NULL) {
        free(c->creator_id);
        free(c->category);
        return -ENOMEM;
    }
    c->in = *in;
    s->n++;
    return 0;
}

/* By creator_id, then by position: the first of repeated ids sorts first. */
static int by_creator_id(const void *a, const void *b, void *ctx)
{
    const tier_creator_t *c = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int r = strcmp(c[i].creator_id, c[j].creator_id);
    return r != 0 ? r : (i < j ? -1 : i > j);
}

int tier_snapshot_seal(tier_snapshot_t *s)
{
    /* ListCreators pages come in creator_id order already: check before sorting. */
    int sorted = 1;
    for (size_t i = 1; i < s->n && sorted; i++) {
        sorted = strcmp(s->creators[i - 1].creator_id, s->creators[i].creator_id) < 0;
    }
    if (sorted) {
        return 0;
    }
    size_t *order = malloc(s->n * sizeof *order);
    tier_creator_t *out = malloc(s->n * sizeof *out);
    if (order == NULL || out == NULL) {
        free(order);
        free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++) {
        order[i] = i;
    }
    qsort_r(order, s->n, sizeof *order, by_creator_id, s->creators);
    size_t w = 0;
    for (size_t k = 0; k < s->n; k++) {
        tier_creator_t *c = &s->creators[order[k]];
        if (w > 0 && strcmp(out[w - 1].creator_id, c->creator_id) == 0) {
            free(c->creator_id);
            free(c->category);
        } else {
            out[w++] = *c;
        }
    }
    free(order);
    free(s->creators);
    s->creators = out;
    s->n = w;
    s->cap = s->n;
    return 0;
}

tier_snapshot_t *tier_snapshot_ref(tier_snapshot_t *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void tier_snapshot_unref(tier_snapshot_t *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->creators[i].creator_id);
        free(s->creators[i].category);
    }
    free(s->creators);
    free(s);
}

long tier_snapshot_find(const tier_snapshot_t *s, const char *creator_id)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->creators[mid].creator_id, creator_id);
        if (c == 0) {
            return (long)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* ---- building ---- */

/* Best first: higher score, then lower creator id. */
static int best_first(const tier_population_t *p, size_t a, size_t b)
{
    double sa = p->results[a].score, sb = p->results[b].score;
    if (sa != sb) {
        return sa > sb ? -1 : 1;
    }
    return strcmp(p->snap->creators[a].creator_id, p->snap->creators[b].creator_id);
}

static int cmp_category(const void *a, const void *b, void *ctx)
{
    const tier_population_t *p = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(p->snap->creators[i].category, p->snap->creators[j].category);
    return c != 0 ? c : (i < j ? -1 : i > j);
}

static int cmp_category_tier_best(const void *a, const void *b, void *ctx)
{
    const tier_population_t *p = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(p->snap->creators[i].category, p->snap->creators[j].category);
    if (c != 0) {
        return c;
    }
    if (p->results[i].tier != p->results[j].tier) {
        return p->results[i].tier < p->results[j].tier ? -1 : 1;
    }
    return best_first(p, i, j);
}

static int cmp_tier_best(const void *a, const void *b, void *ctx)
{
    const tier_population_t *p = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (p->results[i].tier != p->results[j].tier) {
        return p->results[i].tier < p->results[j].tier ? -1 : 1;
    }
    return best_first(p, i, j);
}

/*
 * Priors, then scores: order_cat sorted by category gives each category's creators in
 * one run; the global prior (every creator) is the fallback of a category too small or
 * too flat for its own, and the fixed default is the fallback of the global one.
 */
static int score_all(tier_population_t *p)
{
    const tier_snapshot_t *s = p->snap;
    tier_moments_t all = {0};
    for (size_t i = 0; i < s->n; i++) {
        tier_moments_add(&all, s->creators[i].in.impressions, s->creators[i].in.engagements);
    }
    if (tier_prior_estimate(&all, &p->global_prior) == 0) {
        p->global_prior.source = TIER_PRIOR_GLOBAL;
    } else {
        p->global_prior = tier_prior_default();
    }

    for (size_t i = 0; i < s->n; i++) {
        p->order_cat[i] = i;
    }
    qsort_r(p->order_cat, s->n, sizeof *p->order_cat, cmp_category, p);
    size_t runs = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i == 0 || strcmp(s->creators[p->order_cat[i - 1]].category,
                             s->creators[p->order_cat[i]].category) != 0) {
            runs++;
        }
    }
    p->priors = calloc(runs ? runs : 1, sizeof *p->priors);
    if (p->priors == NULL) {
        return -ENOMEM;
    }
    for (size_t start = 0; start < s->n;) {
        const char *cat = s->creators[p->order_cat[start]].category;
        size_t end = start;
        tier_moments_t m = {0};
        while (end < s->n && strcmp(s->creators[p->order_cat[end]].category, cat) == 0) {
            const tier_input_t *in = &s->creators[p->order_cat[end]].in;
            tier_moments_add(&m, in->impressions, in->engagements);
            end++;
        }
        tier_category_prior_t *cp = &p->priors[p->n_priors++];
        cp->category = cat;
        cp->creators = m.creators;
        if (tier_prior_estimate(&m, &cp->prior) != 0) {
            cp->prior = p->global_prior;
        }
        for (size_t k = start; k < end; k++) {
            size_t i = p->order_cat[k];
            tier_score_compute(&s->creators[i].in, &p->policy, &cp->prior, &p->results[i]);
        }
        start = end;
    }
    return 0;
}

/* Creators i and j are of the same (category, tier). */
static int same_group(const tier_population_t *p, size_t i, size_t j)
{
    return p->results[i].tier == p->results[j].tier &&
           strcmp(p->snap->creators[i].category, p->snap->creators[j].category) == 0;
}

static int group_all(tier_population_t *p)
{
    const tier_snapshot_t *s = p->snap;
    size_t n = s->n;
    qsort_r(p->order_cat, n, sizeof *p->order_cat, cmp_category_tier_best, p);
    size_t runs = 0;
    for (size_t k = 0; k < n; k++) {
        p->scores_cat[k] = p->results[p->order_cat[k]].score;
        if (k == 0 || !same_group(p, p->order_cat[k - 1], p->order_cat[k])) {
            runs++;
        }
    }
    p->groups = calloc(runs ? runs : 1, sizeof *p->groups);
    if (p->groups == NULL) {
        return -ENOMEM;
    }
    tier_group_t *g = NULL;
    for (size_t k = 0; k < n; k++) {
        size_t i = p->order_cat[k];
        if (k == 0 || !same_group(p, p->order_cat[k - 1], i)) {
            g = &p->groups[p->n_groups++];
            g->category = s->creators[i].category;
            g->tier = p->results[i].tier;
            g->idx = &p->order_cat[k];
            g->scores = &p->scores_cat[k];
            g->n = 0;
        }
        g->n++;
    }

    for (size_t i = 0; i < n; i++) {
        p->order_tier[i] = i;
    }
    qsort_r(p->order_tier, n, sizeof *p->order_tier, cmp_tier_best, p);
    for (int t = 0; t < TIER_LEVELS; t++) {
        p->tiers[t] = (tier_group_t){.category = NULL, .tier = (tier_level_t)(t + 1)};
    }
    for (size_t k = 0; k < n; k++) {
        p->scores_tier[k] = p->results[p->order_tier[k]].score;
        tier_group_t *g = &p->tiers[p->results[p->order_tier[k]].tier - 1];
        if (g->n == 0) {
            g->idx = &p->order_tier[k];
            g->scores = &p->scores_tier[k];
        }
        g->n++;
    }
    return 0;
}

int tier_population_build(tier_snapshot_t *snap, const tier_policy_t *policy, int64_t now_s,
                          int32_t now_ns, tier_population_t **out)
{
    tier_population_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return -ENOMEM;
    }
    p->refs = 1;
    p->snap = tier_snapshot_ref(snap);
    p->policy = *policy;
    p->compute_time_s = now_s;
    p->compute_time_ns = now_ns;
    size_t n = snap->n ? snap->n : 1;
    p->results = calloc(n, sizeof *p->results);
    p->standings = calloc(n, sizeof *p->standings);
    p->order_cat = calloc(n, sizeof *p->order_cat);
    p->order_tier = calloc(n, sizeof *p->order_tier);
    p->scores_cat = calloc(n, sizeof *p->scores_cat);
    p->scores_tier = calloc(n, sizeof *p->scores_tier);
    if (p->results == NULL || p->standings == NULL || p->order_cat == NULL ||
        p->order_tier == NULL || p->scores_cat == NULL || p->scores_tier == NULL ||
        score_all(p) != 0 || group_all(p) != 0) {
        tier_population_unref(p);
        return -ENOMEM;
    }
    for (size_t i = 0; i < snap->n; i++) {
        const tier_creator_t *c = &snap->creators[i];
        p->standings[i] = tier_population_standing(p, c->creator_id, c->category, &p->results[i],
                                                   policy->rising_top_fraction);
    }
    *out = p;
    return 0;
}

tier_population_t *tier_population_ref(tier_population_t *p)
{
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void tier_population_unref(tier_population_t *p)
{
    if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    tier_snapshot_unref(p->snap);
    free(p->results);
    free(p->standings);
    free(p->priors);
    free(p->groups);
    free(p->order_cat);
    free(p->order_tier);
    free(p->scores_cat);
    free(p->scores_tier);
    free(p);
}

/* ---- queries ---- */

const tier_prior_t *tier_population_prior(const tier_population_t *p, const char *category)
{
    size_t lo = 0, hi = p->n_priors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->priors[mid].category, category);
        if (c == 0) {
            return &p->priors[mid].prior;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return &p->global_prior;
}

/* The (category, tier) group, category matched exactly ("" is the uncategorized). */
static tier_group_t find_group(const tier_population_t *p, tier_level_t tier, const char *category)
{
    size_t lo = 0, hi = p->n_groups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const tier_group_t *g = &p->groups[mid];
        int c = strcmp(g->category, category);
        if (c == 0) {
            c = g->tier < tier ? -1 : g->tier > tier;
        }
        if (c == 0) {
            return *g;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (tier_group_t){.category = NULL, .tier = tier};
}

tier_group_t tier_population_group(const tier_population_t *p, tier_level_t tier,
                                   const char *category)
{
    if (tier < TIER_LEVEL_HEAD || tier > TIER_LEVEL_AMATEUR) {
        return (tier_group_t){.category = NULL, .tier = tier};
    }
    if (category == NULL || category[0] == '\0') {
        return p->tiers[tier - 1];
    }
    return find_group(p, tier, category);
}

size_t tier_group_count_above(const tier_group_t *g, double score)
{
    /* scores descending: the first position whose score is <= score */
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->scores[mid] > score) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

size_t tier_group_seek(const tier_group_t *g, const tier_population_t *p, double score,
                       const char *creator_id)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        double s = g->scores[mid];
        int after = s < score || (s == score && strcmp(p->snap->creators[g->idx[mid]].creator_id,
                                                       creator_id) > 0);
        if (after) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

size_t tier_group_rising(const tier_group_t *g, const tier_population_t *p)
{
    size_t n = 0;
    for (size_t k = 0; k < g->n; k++) {
        n += p->standings[g->idx[k]].rising != 0;
    }
    return n;
}

double tier_group_mean(const tier_group_t *g)
{
    if (g->n == 0) {
        return 0.0;
    }
    double sum = 0.0;
    for (size_t k = 0; k < g->n; k++) {
        sum += g->scores[k];
    }
    return sum / (double)g->n;
}

tier_standing_t tier_population_standing(const tier_population_t *p, const char *creator_id,
                                         const char *category, const tier_result_t *r,
                                         double rising_top_fraction)
{
    tier_standing_t st = {0};
    if (r->tier < TIER_LEVEL_HEAD || r->tier > TIER_LEVEL_AMATEUR) {
        return st;
    }
    /* The creator's own entry, if the population has one, is replaced by this score. */
    long self = tier_snapshot_find(p->snap, creator_id);
    int self_in_tier = self >= 0 && p->results[self].tier == r->tier;
    int self_in_group = self_in_tier && strcmp(p->snap->creators[self].category, category) == 0;
    int self_above = self >= 0 && p->results[self].score > r->score;

    tier_group_t g = find_group(p, r->tier, category);
    size_t others = g.n - (size_t)self_in_group;
    size_t others_above =
        tier_group_count_above(&g, r->score) - (size_t)(self_in_group && self_above);
    st.percentile = tier_percentile(others - others_above + 1, others + 1);

    const tier_group_t *t = &p->tiers[r->tier - 1];
    size_t rank = 1 + tier_group_count_above(t, r->score) - (size_t)(self_in_tier && self_above);
    size_t total = t->n - (size_t)self_in_tier + 1;
    st.rising = tier_is_rising(r->tier, rank, total, rising_top_fraction);
    return st;
}
