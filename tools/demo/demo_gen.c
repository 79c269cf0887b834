/* demo_gen.c — the demo's world and traffic, deterministic by seed. See demo_gen.h. */
#include "tools/demo/demo_gen.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Independent random streams (demo_rng_seed's `stream`). */
enum { STREAM_WORLD = 1, STREAM_STATS, STREAM_EXPOSURES, STREAM_CONVERSIONS, STREAM_REFUNDS };

#define DAY_S 86400
#define HOUR_MS INT64_C(3600000)
/* How long a note keeps getting impressions after it was posted. */
#define FEED_LIFE_S (INT64_C(14) * DAY_S)
/* A duplicate is sent this many events after its original (a retried batch). */
#define DUP_DELAY_EXPOSURES 5000
#define DUP_DELAY_OTHERS 200

const char *const demo_category_names[DEMO_CATEGORIES] = {
    "beauty", "fashion", "food", "travel", "home", "tech", "parenting", "fitness",
};

/* Shares of creators by primary category (sum 1). */
static const double category_share[DEMO_CATEGORIES] = {0.18, 0.17, 0.16, 0.10,
                                                       0.11, 0.08, 0.10, 0.10};
/* Engagements per impression of an average creator of each category. */
static const double category_engagement[DEMO_CATEGORIES] = {0.065, 0.055, 0.070, 0.045,
                                                            0.050, 0.035, 0.060, 0.050};
/* Median price of a product of each category, in fen. */
static const double category_price[DEMO_CATEGORIES] = {12900, 19900, 5900,  59900,
                                                       14900, 69900, 12900, 15900};

const char *const demo_region_names[DEMO_REGIONS] = {
    "CN-31", "CN-11", "CN-44", "CN-33", "CN-32", "CN-51",
    "CN-42", "CN-35", "CN-37", "CN-50", "CN-43", "CN-61",
};
static const double region_share[DEMO_REGIONS] = {0.16, 0.13, 0.15, 0.11, 0.09, 0.07,
                                                  0.06, 0.05, 0.05, 0.05, 0.04, 0.04};

const char *demo_tier_name(int tier)
{
    static const char *const names[DEMO_TIERS] = {"HEAD", "MID", "TAIL", "AMATEUR"};
    return tier >= 0 && tier < DEMO_TIERS ? names[tier] : "?";
}

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void demo_rng_seed(demo_rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * UINT64_C(0xD1B54A32D192ED03));
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&x);
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t demo_rng_next(demo_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double demo_rng_uniform(demo_rng_t *r)
{
    return (double)(demo_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t demo_rng_below(demo_rng_t *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias (< n / 2^64) does not matter here. */
    return (uint64_t)(((unsigned __int128)demo_rng_next(r) * n) >> 64);
}

double demo_rng_normal(demo_rng_t *r)
{
    double u1 = ((double)(demo_rng_next(r) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
    double u2 = demo_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int bernoulli(demo_rng_t *r, double p)
{
    return p > 0 && demo_rng_uniform(r) < p;
}

static uint32_t poisson(demo_rng_t *r, double mean)
{
    if (mean <= 0) {
        return 0;
    }
    /* Knuth's product of uniforms, in chunks so that exp() never underflows. */
    uint32_t k = 0;
    while (mean > 0) {
        double step = mean > 30 ? 30 : mean;
        mean -= step;
        double limit = exp(-step), prod = demo_rng_uniform(r);
        while (prod > limit) {
            k++;
            prod *= demo_rng_uniform(r);
        }
    }
    return k;
}

static int pick_weighted(demo_rng_t *r, const double *share, int n)
{
    double u = demo_rng_uniform(r), acc = 0;
    for (int i = 0; i < n; i++) {
        acc += share[i];
        if (u < acc) {
            return i;
        }
    }
    return n - 1;
}

/* ---- parameters ---- */

void demo_params_default(demo_params_t *p)
{
    static const double notes[DEMO_TIERS] = {12, 10, 6, 2};
    static const double view[DEMO_TIERS] = {0.30, 0.30, 0.28, 0.25};
    static const double ctr[DEMO_TIERS] = {0.020, 0.030, 0.035, 0.025};
    static const double cvr[DEMO_TIERS] = {0.040, 0.060, 0.070, 0.050};
    memset(p, 0, sizeof *p);
    p->seed = 42;
    p->creators = 100000;
    p->viewers = 400000;
    p->products = 20000;
    p->days = 30;
    p->impressions = 4000000;
    p->followers_median = 1600;
    p->followers_spread = 0.9;
    p->head_min = 500000;
    p->mid_min = 50000;
    p->tail_min = 5000;
    p->feed_exponent = 1.2;
    memcpy(p->notes_per_30d, notes, sizeof notes);
    memcpy(p->view_rate, view, sizeof view);
    memcpy(p->ctr, ctr, sizeof ctr);
    memcpy(p->cvr, cvr, sizeof cvr);
    p->quality_spread = 0.15;
    p->assist_rate = 0.30;
    p->refund_rate = 0.06;
    p->organic_rate = 0.05;
    p->late_rate = 0.01;
    p->dup_rate = 0.01;
    p->invalid_rate = 0.005;
    p->stats_days = 3;
}

void demo_params_quick(demo_params_t *p)
{
    p->creators = 10000;
    p->viewers = 50000;
    p->products = 4000;
    p->impressions = 300000;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int bad_rate(double v)
{
    return !(v >= 0 && v <= 1); /* NaN fails too */
}

int demo_params_validate(const demo_params_t *p, char *err, size_t errlen)
{
    if (p->creators < 1 || p->creators > 999999) {
        return fail(err, errlen, "creators: must be within 1..999999, got %u", p->creators);
    }
    if (p->viewers < 1 || p->viewers > 99999999) {
        return fail(err, errlen, "viewers: must be within 1..99999999, got %u", p->viewers);
    }
    if (p->products < DEMO_CATEGORIES || p->products > 9999999) {
        return fail(err, errlen, "products: must be within %d..9999999, got %u", DEMO_CATEGORIES,
                    p->products);
    }
    if (p->days < 1 || p->days > 89) {
        return fail(err, errlen, "days: must be within 1..89, got %u", p->days);
    }
    if (p->impressions < 1 || p->impressions > UINT64_C(1000000000)) {
        return fail(err, errlen, "impressions: must be within 1..1000000000, got %llu",
                    (unsigned long long)p->impressions);
    }
    if (!(p->followers_median >= 1 && p->followers_median <= 1e8)) {
        return fail(err, errlen, "followers-median: must be within 1..1e8, got %g",
                    p->followers_median);
    }
    if (!(p->followers_spread >= 0 && p->followers_spread <= 3)) {
        return fail(err, errlen, "followers-spread: must be within 0..3, got %g",
                    p->followers_spread);
    }
    if (!(p->head_min > p->mid_min && p->mid_min > p->tail_min && p->tail_min >= 1)) {
        return fail(err, errlen,
                    "thresholds: must strictly decrease (head > mid > tail >= 1), got %lld, "
                    "%lld, %lld",
                    (long long)p->head_min, (long long)p->mid_min, (long long)p->tail_min);
    }
    if (!(p->feed_exponent >= 0 && p->feed_exponent <= 3)) {
        return fail(err, errlen, "feed-exponent: must be within 0..3, got %g", p->feed_exponent);
    }
    if (!(p->quality_spread >= 0 && p->quality_spread <= 1)) {
        return fail(err, errlen, "quality-spread: must be within 0..1, got %g", p->quality_spread);
    }
    for (int t = 0; t < DEMO_TIERS; t++) {
        if (!(p->notes_per_30d[t] >= 0 && p->notes_per_30d[t] <= 300)) {
            return fail(err, errlen, "notes[%s]: must be within 0..300, got %g", demo_tier_name(t),
                        p->notes_per_30d[t]);
        }
        if (bad_rate(p->view_rate[t]) || bad_rate(p->ctr[t]) || bad_rate(p->cvr[t])) {
            return fail(err, errlen, "view-rate, ctr, cvr[%s]: must be within [0, 1]",
                        demo_tier_name(t));
        }
    }
    if (bad_rate(p->assist_rate) || bad_rate(p->refund_rate) || bad_rate(p->late_rate) ||
        bad_rate(p->dup_rate) || bad_rate(p->invalid_rate)) {
        return fail(err, errlen,
                    "assist-rate, refund-rate, late-rate, dup-rate, invalid-rate: must be "
                    "within [0, 1]");
    }
    if (!(p->organic_rate >= 0 && p->organic_rate <= 0.9)) {
        return fail(err, errlen, "organic-rate: must be within [0, 0.9], got %g", p->organic_rate);
    }
    if (p->stats_days < 1 || p->stats_days > p->days) {
        return fail(err, errlen, "stats-days: must be within 1..days (%u), got %u", p->days,
                    p->stats_days);
    }
    if (p->now_s < (int64_t)p->days * DAY_S) {
        return fail(err, errlen, "now: %lld is too early", (long long)p->now_s);
    }
    return 0;
}

int demo_tier_of(const demo_params_t *p, int64_t followers)
{
    return followers >= p->head_min   ? DEMO_TIER_HEAD
           : followers >= p->mid_min  ? DEMO_TIER_MID
           : followers >= p->tail_min ? DEMO_TIER_TAIL
                                      : DEMO_TIER_AMATEUR;
}

/* ---- the world ---- */

void demo_world_destroy(demo_world_t *w)
{
    if (w == NULL) {
        return;
    }
    free(w->creators);
    free(w->notes);
    free(w->products);
    free(w->tag_off);
    free(w->tag_notes);
    free(w->alias_prob);
    free(w->alias_idx);
    free(w);
}

/* Vose's alias table over the creators' weights. */
static int build_alias(demo_world_t *w)
{
    uint32_t n = w->p.creators;
    if (n == 0) {
        return -EINVAL;
    }
    double total = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += w->creators[i].weight;
    }
    uint32_t *small = malloc(n * sizeof *small), *large = malloc(n * sizeof *large);
    w->alias_prob = malloc(n * sizeof *w->alias_prob);
    w->alias_idx = malloc(n * sizeof *w->alias_idx);
    if (small == NULL || large == NULL || w->alias_prob == NULL || w->alias_idx == NULL) {
        free(small);
        free(large);
        return -ENOMEM;
    }
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        w->alias_prob[i] = total > 0 ? w->creators[i].weight * n / total : 1.0;
        w->alias_idx[i] = i;
        if (w->alias_prob[i] < 1.0) {
            small[ns++] = i;
        } else {
            large[nl++] = i;
        }
    }
    while (ns > 0 && nl > 0) {
        uint32_t s = small[--ns], l = large[--nl];
        w->alias_idx[s] = l;
        w->alias_prob[l] += w->alias_prob[s] - 1.0;
        if (w->alias_prob[l] < 1.0) {
            small[ns++] = l;
        } else {
            large[nl++] = l;
        }
    }
    while (nl > 0) {
        w->alias_prob[large[--nl]] = 1.0;
    }
    while (ns > 0) {
        w->alias_prob[small[--ns]] = 1.0;
    }
    free(small);
    free(large);
    return 0;
}

static uint32_t pick_creator(const demo_world_t *w, demo_rng_t *r)
{
    uint32_t i = (uint32_t)demo_rng_below(r, w->p.creators);
    return demo_rng_uniform(r) < w->alias_prob[i] ? i : w->alias_idx[i];
}

/* A product of category `cat`: products k with k % DEMO_CATEGORIES == cat. */
static uint32_t pick_product(const demo_world_t *w, demo_rng_t *r, int cat)
{
    uint32_t per = (w->p.products - (uint32_t)cat + DEMO_CATEGORIES - 1) / DEMO_CATEGORIES;
    return (uint32_t)cat + DEMO_CATEGORIES * (uint32_t)demo_rng_below(r, per);
}

static int build_tags(demo_world_t *w)
{
    uint32_t np = w->p.products;
    w->tag_off = calloc((size_t)np + 1, sizeof *w->tag_off);
    size_t total = 0;
    for (size_t i = 0; i < w->n_notes; i++) {
        total += w->notes[i].n_products;
    }
    w->tag_notes = malloc((total ? total : 1) * sizeof *w->tag_notes);
    uint32_t *fill = calloc(np, sizeof *fill);
    if (w->tag_off == NULL || w->tag_notes == NULL || fill == NULL) {
        free(fill);
        return -ENOMEM;
    }
    for (size_t i = 0; i < w->n_notes; i++) {
        for (int k = 0; k < w->notes[i].n_products; k++) {
            w->tag_off[w->notes[i].products[k] + 1]++;
        }
    }
    for (uint32_t k = 0; k < np; k++) {
        w->tag_off[k + 1] += w->tag_off[k];
    }
    for (size_t i = 0; i < w->n_notes; i++) {
        for (int k = 0; k < w->notes[i].n_products; k++) {
            uint32_t p = w->notes[i].products[k];
            w->tag_notes[w->tag_off[p] + fill[p]++] = (uint32_t)i;
        }
    }
    free(fill);
    return 0;
}

int demo_world_create(const demo_params_t *p, demo_world_t **out, char *err, size_t errlen)
{
    int rc = demo_params_validate(p, err, errlen);
    if (rc != 0) {
        return rc;
    }
    demo_world_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -ENOMEM;
    }
    w->p = *p;
    w->start_s = p->now_s - p->now_s % DAY_S - (int64_t)(p->days - 1) * DAY_S;
    /* Ten minutes of margin under the wall clock; at least a minute into the period
     * (which the services' five minutes of tolerance for the future covers). */
    w->end_s = p->now_s - 600 > w->start_s + 60 ? p->now_s - 600 : w->start_s + 60;
    demo_rng_t r;
    demo_rng_seed(&r, p->seed, STREAM_WORLD);

    w->products = calloc(p->products, sizeof *w->products);
    w->creators = calloc(p->creators, sizeof *w->creators);
    if (w->products == NULL || w->creators == NULL) {
        demo_world_destroy(w);
        return -ENOMEM;
    }
    for (uint32_t k = 0; k < p->products; k++) {
        int cat = (int)(k % DEMO_CATEGORIES);
        double price = category_price[cat] * pow(10.0, 0.3 * demo_rng_normal(&r));
        w->products[k].category = (uint8_t)cat;
        w->products[k].price_minor = price < 100 ? 100 : (int64_t)llround(price);
    }

    double mu = log10(p->followers_median);
    size_t cap_notes = 0;
    for (uint32_t i = 0; i < p->creators; i++) {
        demo_creator_t *c = &w->creators[i];
        double f = pow(10.0, mu + p->followers_spread * demo_rng_normal(&r));
        c->followers = f > 1e10 ? INT64_C(10000000000) : (int64_t)llround(f);
        c->tier = (uint8_t)demo_tier_of(p, c->followers);
        c->weight = pow((double)c->followers + 1.0, p->feed_exponent);
        c->quality = pow(10.0, p->quality_spread * demo_rng_normal(&r));
        c->category = (uint8_t)pick_weighted(&r, category_share, DEMO_CATEGORIES);
        if (bernoulli(&r, 0.3)) {
            c->has_category2 = 1;
            c->category2 = (uint8_t)((c->category + 1 + demo_rng_below(&r, DEMO_CATEGORIES - 1)) %
                                     DEMO_CATEGORIES);
        }
        c->region = (uint8_t)pick_weighted(&r, region_share, DEMO_REGIONS);
        double mean = p->notes_per_30d[c->tier] * p->days / 30.0;
        c->n_notes = 1 + poisson(&r, mean > 1 ? mean - 1 : 0);
        cap_notes += c->n_notes;
        w->tier_creators[c->tier]++;
    }
    if (cap_notes > UINT32_MAX - 1) {
        demo_world_destroy(w);
        return fail(err, errlen, "notes: %zu notes are more than this generator numbers",
                    cap_notes);
    }
    w->notes = calloc(cap_notes, sizeof *w->notes);
    if (w->notes == NULL) {
        demo_world_destroy(w);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < p->creators; i++) {
        demo_creator_t *c = &w->creators[i];
        c->first_note = (uint32_t)w->n_notes;
        for (uint32_t k = 0; k < c->n_notes; k++) {
            demo_note_t *n = &w->notes[w->n_notes++];
            n->creator = i;
            n->post_day = (uint16_t)demo_rng_below(&r, p->days);
            int64_t post =
                w->start_s + (int64_t)n->post_day * DAY_S + (int64_t)demo_rng_below(&r, DAY_S);
            n->post_s = post < w->end_s - 60 ? post : w->end_s - 60;
            n->is_video = (uint8_t)bernoulli(&r, 0.6);
            n->completion = n->is_video ? 0.15 + 0.5 * demo_rng_uniform(&r) : 0;
            n->n_products = (uint8_t)(1 + bernoulli(&r, 0.3) + bernoulli(&r, 0.1));
            for (int j = 0; j < n->n_products; j++) {
                int cat = c->has_category2 && bernoulli(&r, 0.3) ? c->category2 : c->category;
                n->products[j] = pick_product(w, &r, cat);
            }
        }
    }
    if ((rc = build_alias(w)) != 0 || (rc = build_tags(w)) != 0) {
        demo_world_destroy(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- note stats ---- */

static uint32_t note_stat_days(const demo_world_t *w, const demo_note_t *n)
{
    uint32_t left = w->p.days - n->post_day;
    return left < w->p.stats_days ? left : w->p.stats_days;
}

uint64_t demo_stats_rows(const demo_world_t *w)
{
    uint64_t rows = 0;
    for (size_t i = 0; i < w->n_notes; i++) {
        rows += note_stat_days(w, &w->notes[i]);
    }
    return rows;
}

void demo_stats_begin(const demo_world_t *w, demo_stats_iter_t *it)
{
    demo_rng_seed(&it->rng, w->p.seed, STREAM_STATS);
    it->note = 0;
    it->k = 0;
}

static int64_t count_of(double v)
{
    return v < 0 ? 0 : (int64_t)llround(v);
}

static void make_row(const demo_world_t *w, demo_rng_t *r, uint32_t note, uint32_t age,
                     demo_stat_row_t *row)
{
    const demo_note_t *n = &w->notes[note];
    const demo_creator_t *c = &w->creators[n->creator];
    /* A fresh note reaches a slice of the followers plus some discovery traffic, and
     * fades by about half a day. */
    double base = 0.06 * pow((double)c->followers, 0.95) + 60.0;
    double imps = base * pow(0.55, age) * pow(10.0, 0.15 * demo_rng_normal(r));
    double views = imps * (n->is_video ? 0.40 : 0.25) * (0.8 + 0.4 * demo_rng_uniform(r));
    double er = category_engagement[c->category] * c->quality;
    double eng = imps * (er > 0.5 ? 0.5 : er) * pow(10.0, 0.1 * demo_rng_normal(r));
    memset(row, 0, sizeof *row);
    row->note = note;
    row->day = (uint16_t)(n->post_day + age);
    row->impressions = count_of(imps);
    row->views = count_of(views);
    if (n->is_video) {
        row->video_plays = row->views;
        row->avg_watch_ms = 5000 + (int64_t)demo_rng_below(r, 30000);
        double cr = n->completion + 0.03 * demo_rng_normal(r);
        row->completion_rate = cr < 0 ? 0 : cr > 1 ? 1 : cr;
    }
    row->likes = count_of(eng * 0.55);
    row->collects = count_of(eng * 0.25);
    row->comments = count_of(eng * 0.12);
    row->shares = count_of(eng * 0.08);
    row->follows_gained = count_of(imps * 0.002 * c->quality);
}

size_t demo_stats_next(const demo_world_t *w, demo_stats_iter_t *it, demo_stat_row_t *rows,
                       size_t max)
{
    size_t n = 0;
    while (n < max && it->note < w->n_notes) {
        const demo_note_t *note = &w->notes[it->note];
        if (it->k >= note_stat_days(w, note)) {
            it->note++;
            it->k = 0;
            continue;
        }
        make_row(w, &it->rng, (uint32_t)it->note, it->k++, &rows[n++]);
    }
    return n;
}

/* ---- events ---- */

/* A FIFO of copies waiting for their release (duplicates sent some events later). */
typedef struct {
    char *items;
    uint64_t *release;
    size_t elem, head, n, cap;
} fifo_t;

static int fifo_push(fifo_t *q, const void *item, uint64_t release)
{
    if (q->head > 0 && q->head + q->n == q->cap) {
        memmove(q->items, q->items + q->head * q->elem, q->n * q->elem);
        memmove(q->release, q->release + q->head, q->n * sizeof *q->release);
        q->head = 0;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        char *items = realloc(q->items, cap * q->elem);
        if (items == NULL) {
            return -ENOMEM;
        }
        q->items = items;
        uint64_t *rel = realloc(q->release, cap * sizeof *rel);
        if (rel == NULL) {
            return -ENOMEM;
        }
        q->release = rel;
        q->cap = cap;
    }
    memcpy(q->items + (q->head + q->n) * q->elem, item, q->elem);
    q->release[q->head + q->n] = release;
    q->n++;
    return 0;
}

/* Pops the oldest copy into `item` when it is due at `now` (or `force`); 1 if popped. */
static int fifo_pop_due(fifo_t *q, uint64_t now, int force, void *item)
{
    if (q->n == 0 || (!force && q->release[q->head] > now)) {
        return 0;
    }
    memcpy(item, q->items + q->head * q->elem, q->elem);
    q->head++;
    q->n--;
    return 1;
}

static void fifo_free(fifo_t *q)
{
    free(q->items);
    free(q->release);
}

/* A growable array of fixed-size records. */
typedef struct {
    char *items;
    size_t elem, n, cap;
} vec_t;

static int vec_push(vec_t *v, const void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        char *items = realloc(v->items, cap * v->elem);
        if (items == NULL) {
            return -ENOMEM;
        }
        v->items = items;
        v->cap = cap;
    }
    memcpy(v->items + v->n * v->elem, item, v->elem);
    v->n++;
    return 0;
}

typedef struct {
    uint32_t viewer, product;
    int32_t quantity;
    int64_t amount_minor, time_ms;
} order_t;

/* Events made by one impression, before they are handed out (impression, view, click,
 * two assist touches, and an invalid event after each). */
#define PEND_MAX 16

struct st_demo_events_t {
    const demo_world_t *w;
    demo_rng_t rng;
    uint64_t impressions_done;
    uint64_t next_seq; /* exposure event numbers */
    uint64_t emitted;  /* main-stream events handed out */
    demo_exposure_t pend[PEND_MAX];
    size_t n_pend, pend_pos;
    fifo_t dups;  /* of demo_exposure_t */
    vec_t late;   /* of demo_exposure_t */
    vec_t orders; /* of order_t */
    vec_t convs;  /* of demo_conversion_t */
    vec_t refunds;
    int finished;
    demo_truth_t truth;
};

int demo_events_create(const demo_world_t *w, demo_events_t **out)
{
    demo_events_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return -ENOMEM;
    }
    e->w = w;
    demo_rng_seed(&e->rng, w->p.seed, STREAM_EXPOSURES);
    e->dups.elem = sizeof(demo_exposure_t);
    e->late.elem = sizeof(demo_exposure_t);
    e->orders.elem = sizeof(order_t);
    e->convs.elem = sizeof(demo_conversion_t);
    e->refunds.elem = sizeof(demo_refund_t);
    *out = e;
    return 0;
}

void demo_events_destroy(demo_events_t *e)
{
    if (e == NULL) {
        return;
    }
    fifo_free(&e->dups);
    free(e->late.items);
    free(e->orders.items);
    free(e->convs.items);
    free(e->refunds.items);
    free(e);
}

/*
 * Routes one valid exposure: counts it, sends it late or in the main stream, and maybe
 * adds a duplicate and a broken event after it.
 */
static int route_exposure(demo_events_t *e, const demo_exposure_t *ev)
{
    const demo_world_t *w = e->w;
    demo_rng_t *r = &e->rng;
    demo_truth_t *t = &e->truth;
    int tier = w->creators[ev->creator].tier;
    t->exposures.sent++;
    t->exposures.accepted++;
    if (ev->kind == DEMO_KIND_IMPRESSION) {
        t->impressions[tier]++;
    } else if (ev->kind == DEMO_KIND_VIEW) {
        t->views[tier]++;
    } else {
        t->clicks[tier]++;
    }
    int late = bernoulli(r, w->p.late_rate);
    int dup = bernoulli(r, w->p.dup_rate);
    int bad = bernoulli(r, w->p.invalid_rate);
    demo_exposure_t broken = *ev;
    if (bad) {
        broken.seq = e->next_seq++;
        broken.bad = (uint8_t)(1 + demo_rng_below(r, DEMO_BAD_EXP_KINDS - 1));
        t->exposures.sent++;
        t->exposures.rejected++;
    }
    if (dup) {
        t->exposures.sent++;
        t->exposures.duplicates++;
    }
    if (late) {
        t->late_sent += 1 + (uint64_t)dup + (uint64_t)bad;
        if (vec_push(&e->late, ev) != 0 || (dup && vec_push(&e->late, ev) != 0) ||
            (bad && vec_push(&e->late, &broken) != 0)) {
            return -ENOMEM;
        }
        return 0;
    }
    e->pend[e->n_pend++] = *ev;
    if (dup && fifo_push(&e->dups, ev, e->emitted + DUP_DELAY_EXPOSURES) != 0) {
        return -ENOMEM;
    }
    if (bad) {
        e->pend[e->n_pend++] = broken;
    }
    return 0;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/*
 * The assist of an order: a click (after an impression) by the same viewer on another
 * creator's note that tags the same product, the biggest of a few candidates, earlier.
 */
static int make_assist(demo_events_t *e, uint32_t viewer, uint32_t product, uint32_t buyer_creator,
                       int64_t click_ms)
{
    const demo_world_t *w = e->w;
    demo_rng_t *r = &e->rng;
    uint32_t lo = w->tag_off[product], hi = w->tag_off[product + 1];
    int64_t at = click_ms - HOUR_MS - (int64_t)demo_rng_below(r, 47 * HOUR_MS);
    uint32_t best = UINT32_MAX;
    for (int k = 0; k < 4 && hi > lo; k++) {
        uint32_t cand = w->tag_notes[lo + demo_rng_below(r, hi - lo)];
        const demo_note_t *n = &w->notes[cand];
        if (n->creator == buyer_creator || n->post_s * 1000 > at - 60000) {
            continue;
        }
        if (best == UINT32_MAX ||
            w->creators[n->creator].weight > w->creators[w->notes[best].creator].weight) {
            best = cand;
        }
    }
    if (best == UINT32_MAX || at - 60000 < w->start_s * 1000) {
        return 0;
    }
    const demo_note_t *n = &w->notes[best];
    demo_exposure_t imp = {.seq = e->next_seq++,
                           .viewer = viewer,
                           .creator = n->creator,
                           .note = best,
                           .time_ms = at - 5000 - (int64_t)demo_rng_below(r, 55000),
                           .kind = DEMO_KIND_IMPRESSION};
    int rc = route_exposure(e, &imp);
    demo_exposure_t click = imp;
    click.seq = e->next_seq++;
    click.time_ms = at;
    click.kind = DEMO_KIND_CLICK;
    if (rc == 0) {
        rc = route_exposure(e, &click);
    }
    if (rc == 0) {
        e->truth.assisted_orders++;
    }
    return rc;
}

/* One feed impression and what follows it, into e->pend (and the late list, orders). */
static int gen_impression(demo_events_t *e)
{
    const demo_world_t *w = e->w;
    const demo_params_t *p = &w->p;
    demo_rng_t *r = &e->rng;
    uint32_t ci = pick_creator(w, r);
    const demo_creator_t *c = &w->creators[ci];
    uint32_t ni = c->first_note + (uint32_t)demo_rng_below(r, c->n_notes);
    const demo_note_t *n = &w->notes[ni];
    int64_t life_end =
        n->post_s + FEED_LIFE_S < w->end_s - 120 ? n->post_s + FEED_LIFE_S : w->end_s - 120;
    int64_t span_ms = life_end > n->post_s ? (life_end - n->post_s) * 1000 : 1;
    demo_exposure_t imp = {.seq = e->next_seq++,
                           .viewer = (uint32_t)demo_rng_below(r, p->viewers),
                           .creator = ci,
                           .note = ni,
                           .time_ms =
                               n->post_s * 1000 + (int64_t)demo_rng_below(r, (uint64_t)span_ms),
                           .kind = DEMO_KIND_IMPRESSION};
    int rc = route_exposure(e, &imp);
    if (rc == 0 && n->is_video && bernoulli(r, p->view_rate[c->tier])) {
        demo_exposure_t view = imp;
        view.seq = e->next_seq++;
        view.kind = DEMO_KIND_VIEW;
        view.time_ms += 1000 + (int64_t)demo_rng_below(r, 4000);
        /* Watch time: mostly short, a long tail (engaged views are >= 10 s). */
        view.watch_ms =
            (int32_t)clamp64(llround(-12000.0 * log(1.0 - demo_rng_uniform(r))), 0, 600000);
        rc = route_exposure(e, &view);
    }
    double ctr = p->ctr[c->tier] * c->quality;
    if (rc == 0 && bernoulli(r, ctr > 0.5 ? 0.5 : ctr)) {
        demo_exposure_t click = imp;
        click.seq = e->next_seq++;
        click.kind = DEMO_KIND_CLICK;
        click.time_ms += 5000 + (int64_t)demo_rng_below(r, 55000);
        rc = route_exposure(e, &click);
        if (rc == 0 && bernoulli(r, p->cvr[c->tier])) {
            order_t o;
            o.viewer = imp.viewer;
            o.product = n->products[demo_rng_below(r, n->n_products)];
            double u = demo_rng_uniform(r);
            o.quantity = u < 0.85 ? 1 : u < 0.97 ? 2 : 3;
            o.amount_minor = w->products[o.product].price_minor * o.quantity;
            /* Bought a few hours later, at most two days (within the click window). */
            int64_t delay = llround(-3.0 * HOUR_MS * log(1.0 - demo_rng_uniform(r)));
            delay = clamp64(delay, 60000, 48 * HOUR_MS);
            o.time_ms = clamp64(click.time_ms + delay, click.time_ms, w->end_s * 1000);
            e->truth.orders[c->tier]++;
            rc = vec_push(&e->orders, &o);
            if (rc == 0 && bernoulli(r, p->assist_rate)) {
                rc = make_assist(e, o.viewer, o.product, ci, click.time_ms);
            }
        }
    }
    return rc;
}

/* Orders that follow no exposure: organic_rate of all orders, any viewer, product and
 * time of the period. */
static int add_organic_orders(demo_events_t *e, demo_rng_t *r)
{
    const demo_world_t *w = e->w;
    double share = w->p.organic_rate;
    uint64_t n = (uint64_t)llround((double)e->orders.n * share / (1.0 - share));
    for (uint64_t i = 0; i < n; i++) {
        order_t o;
        o.viewer = (uint32_t)demo_rng_below(r, w->p.viewers);
        o.product = (uint32_t)demo_rng_below(r, w->p.products);
        o.quantity = 1;
        o.amount_minor = w->products[o.product].price_minor;
        o.time_ms = w->start_s * 1000 +
                    (int64_t)demo_rng_below(r, (uint64_t)(w->end_s - w->start_s) * 1000 + 1);
        if (vec_push(&e->orders, &o) != 0) {
            return -ENOMEM;
        }
        e->truth.organic_orders++;
    }
    return 0;
}

/* The conversions and the refunds, once every order is known. */
static int finish_streams(demo_events_t *e)
{
    const demo_world_t *w = e->w;
    const demo_params_t *p = &w->p;
    demo_truth_t *t = &e->truth;
    demo_rng_t r;
    demo_rng_seed(&r, p->seed, STREAM_CONVERSIONS);
    int rc = add_organic_orders(e, &r);
    if (rc != 0) {
        return rc;
    }
    const order_t *orders = (const order_t *)e->orders.items;
    size_t n_orders = e->orders.n;
    fifo_t dups = {.elem = sizeof(demo_conversion_t)};
    uint64_t bad_seq = 0;
    demo_conversion_t copy;
    for (size_t i = 0; i < n_orders && rc == 0; i++) {
        const order_t *o = &orders[i];
        demo_conversion_t cv = {.seq = i + 1,
                                .viewer = o->viewer,
                                .product = o->product,
                                .quantity = o->quantity,
                                .amount_minor = o->amount_minor,
                                .time_ms = o->time_ms};
        rc = vec_push(&e->convs, &cv);
        t->conversions.sent++;
        t->conversions.accepted++;
        t->gross_minor += o->amount_minor;
        if (rc == 0 && bernoulli(&r, p->dup_rate)) {
            rc = fifo_push(&dups, &cv, e->convs.n + DUP_DELAY_OTHERS);
            t->conversions.sent++;
            t->conversions.duplicates++;
        }
        if (rc == 0 && bernoulli(&r, p->invalid_rate)) {
            demo_conversion_t bad = cv;
            bad.seq = ++bad_seq;
            bad.bad = (uint8_t)(1 + demo_rng_below(&r, DEMO_BAD_CONV_KINDS - 1));
            rc = vec_push(&e->convs, &bad);
            t->conversions.sent++;
            t->conversions.rejected++;
        }
        while (rc == 0 && fifo_pop_due(&dups, e->convs.n, 0, &copy)) {
            rc = vec_push(&e->convs, &copy);
        }
    }
    while (rc == 0 && fifo_pop_due(&dups, 0, 1, &copy)) {
        rc = vec_push(&e->convs, &copy);
    }
    fifo_free(&dups);
    if (rc != 0) {
        return rc;
    }

    fifo_t rdups = {.elem = sizeof(demo_refund_t)};
    demo_refund_t rcopy;
    demo_rng_seed(&r, p->seed, STREAM_REFUNDS);
    uint64_t seq = 0, missing = 0;
    for (size_t i = 0; i < n_orders && rc == 0; i++) {
        const order_t *o = &orders[i];
        if (!bernoulli(&r, p->refund_rate)) {
            continue;
        }
        int64_t amount = bernoulli(&r, 0.5) ? o->amount_minor : o->amount_minor / 2;
        int64_t at = o->time_ms + HOUR_MS + (int64_t)demo_rng_below(&r, 71 * HOUR_MS);
        demo_refund_t rf = {.seq = ++seq,
                            .order = i + 1,
                            .amount_minor = amount > 0 ? amount : 1,
                            .time_ms = clamp64(at, o->time_ms, w->end_s * 1000)};
        rc = vec_push(&e->refunds, &rf);
        t->refunds.sent++;
        t->refunds.accepted++;
        t->refunded_minor += rf.amount_minor;
        if (rc == 0 && bernoulli(&r, p->dup_rate)) {
            rc = fifo_push(&rdups, &rf, e->refunds.n + DUP_DELAY_OTHERS);
            t->refunds.sent++;
            t->refunds.duplicates++;
        }
        if (rc == 0 && bernoulli(&r, p->invalid_rate)) {
            demo_refund_t bad = rf;
            bad.seq = ++seq;
            bad.bad = (uint8_t)(1 + demo_rng_below(&r, DEMO_BAD_REF_KINDS - 1));
            if (bad.bad == DEMO_BAD_REF_UNKNOWN_ORDER) {
                bad.order = ++missing;
            } else if (bad.bad == DEMO_BAD_REF_TOO_MUCH) {
                bad.amount_minor = o->amount_minor + 1;
            } else {
                bad.amount_minor = 0;
            }
            rc = vec_push(&e->refunds, &bad);
            t->refunds.sent++;
            t->refunds.rejected++;
        }
        while (rc == 0 && fifo_pop_due(&rdups, e->refunds.n, 0, &rcopy)) {
            rc = vec_push(&e->refunds, &rcopy);
        }
    }
    while (rc == 0 && fifo_pop_due(&rdups, 0, 1, &rcopy)) {
        rc = vec_push(&e->refunds, &rcopy);
    }
    fifo_free(&rdups);
    return rc;
}

int demo_events_exposures(demo_events_t *e, demo_exposure_t *out, size_t max, size_t *n)
{
    size_t k = 0;
    int rc = 0;
    while (k < max && !e->finished) {
        if (fifo_pop_due(&e->dups, e->emitted, 0, &out[k])) {
            k++;
            e->emitted++;
        } else if (e->pend_pos < e->n_pend) {
            out[k++] = e->pend[e->pend_pos++];
            e->emitted++;
        } else if (e->impressions_done < e->w->p.impressions) {
            e->n_pend = e->pend_pos = 0;
            e->impressions_done++;
            if ((rc = gen_impression(e)) != 0) {
                break;
            }
        } else if (fifo_pop_due(&e->dups, 0, 1, &out[k])) {
            k++;
            e->emitted++;
        } else {
            e->finished = 1;
            rc = finish_streams(e);
        }
    }
    *n = k;
    return rc;
}

const demo_conversion_t *demo_events_conversions(const demo_events_t *e, size_t *n)
{
    *n = e->finished ? e->convs.n : 0;
    return e->finished ? (const demo_conversion_t *)e->convs.items : NULL;
}

const demo_exposure_t *demo_events_late(const demo_events_t *e, size_t *n)
{
    *n = e->finished ? e->late.n : 0;
    return e->finished ? (const demo_exposure_t *)e->late.items : NULL;
}

const demo_refund_t *demo_events_refunds(const demo_events_t *e, size_t *n)
{
    *n = e->finished ? e->refunds.n : 0;
    return e->finished ? (const demo_refund_t *)e->refunds.items : NULL;
}

const demo_truth_t *demo_events_truth(const demo_events_t *e)
{
    return &e->truth;
}

int demo_plan(const demo_world_t *w, demo_truth_t *truth)
{
    demo_events_t *e = NULL;
    int rc = demo_events_create(w, &e);
    if (rc != 0) {
        return rc;
    }
    demo_exposure_t buf[1024];
    size_t n = 0;
    do {
        rc = demo_events_exposures(e, buf, sizeof buf / sizeof buf[0], &n);
    } while (rc == 0 && n > 0);
    if (rc == 0) {
        *truth = e->truth;
    }
    demo_events_destroy(e);
    return rc;
}
