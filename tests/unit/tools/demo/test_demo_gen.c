/*
 * Unit tests of tools/demo/demo_gen.c: the same seed makes the same world and events,
 * followers fall into the expected tier bands, feeds are top-heavy, the default
 * parameters make mid and tail convert better per impression than head, and the
 * generator's ground truth (duplicates, invalid events, late exposures) is exact.
 */
#include <errno.h>
#include <stdint.h>

#include "tests/unit/test.h"
#include "tools/demo/demo_gen.h"

/* A fixed clock: 2025-03-15 12:00:00 UTC. */
#define NOW_S INT64_C(1742040000)

static demo_params_t quick_params(uint64_t seed)
{
    demo_params_t p;
    demo_params_default(&p);
    demo_params_quick(&p);
    p.seed = seed;
    p.now_s = NOW_S;
    return p;
}

static demo_world_t *make_world(const demo_params_t *p)
{
    demo_world_t *w = NULL;
    char err[256] = "";
    int rc = demo_world_create(p, &w, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "demo_world_create: %d %s\n", rc, err);
    }
    YW_CHECK_INT(rc, ==, 0);
    return w;
}

/* FNV-1a over values (never over struct bytes: padding is not initialised). */
typedef struct {
    uint64_t h;
} fnv_t;

static void mix(fnv_t *f, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        f->h ^= (v >> (8 * i)) & 0xff;
        f->h *= UINT64_C(0x100000001b3);
    }
}

static void mix_exposure(fnv_t *f, const demo_exposure_t *e)
{
    mix(f, e->seq);
    mix(f, e->viewer);
    mix(f, e->creator);
    mix(f, e->note);
    mix(f, (uint64_t)e->watch_ms);
    mix(f, (uint64_t)e->time_ms);
    mix(f, e->kind);
    mix(f, e->bad);
}

/* Everything the world and every stream hold, hashed. */
static uint64_t digest(const demo_params_t *p)
{
    demo_world_t *w = make_world(p);
    fnv_t f = {UINT64_C(0xcbf29ce484222325)};
    for (uint32_t i = 0; i < w->p.creators; i++) {
        const demo_creator_t *c = &w->creators[i];
        mix(&f, (uint64_t)c->followers);
        mix(&f, c->category);
        mix(&f, c->region);
        mix(&f, c->n_notes);
    }
    demo_stats_iter_t it;
    demo_stat_row_t rows[512];
    demo_stats_begin(w, &it);
    size_t n;
    while ((n = demo_stats_next(w, &it, rows, 512)) > 0) {
        for (size_t i = 0; i < n; i++) {
            mix(&f, rows[i].note);
            mix(&f, rows[i].day);
            mix(&f, (uint64_t)rows[i].impressions);
            mix(&f, (uint64_t)rows[i].likes);
        }
    }
    demo_events_t *e = NULL;
    YW_CHECK_INT(demo_events_create(w, &e), ==, 0);
    demo_exposure_t buf[1000];
    do {
        YW_CHECK_INT(demo_events_exposures(e, buf, 1000, &n), ==, 0);
        for (size_t i = 0; i < n; i++) {
            mix_exposure(&f, &buf[i]);
        }
    } while (n > 0);
    const demo_conversion_t *cv = demo_events_conversions(e, &n);
    for (size_t i = 0; i < n; i++) {
        mix(&f, cv[i].seq);
        mix(&f, cv[i].viewer);
        mix(&f, cv[i].product);
        mix(&f, (uint64_t)cv[i].amount_minor);
        mix(&f, (uint64_t)cv[i].time_ms);
        mix(&f, cv[i].bad);
    }
    const demo_exposure_t *late = demo_events_late(e, &n);
    for (size_t i = 0; i < n; i++) {
        mix_exposure(&f, &late[i]);
    }
    const demo_refund_t *rf = demo_events_refunds(e, &n);
    for (size_t i = 0; i < n; i++) {
        mix(&f, rf[i].seq);
        mix(&f, rf[i].order);
        mix(&f, (uint64_t)rf[i].amount_minor);
        mix(&f, rf[i].bad);
    }
    demo_events_destroy(e);
    demo_world_destroy(w);
    return f.h;
}

YW_TEST(same_seed_same_world_and_events)
{
    demo_params_t p = quick_params(7);
    uint64_t a = digest(&p), b = digest(&p);
    YW_CHECK(a == b);
    demo_params_t q = quick_params(8);
    YW_CHECK(digest(&q) != a);
}

YW_TEST(tier_counts_fall_in_plausible_bands)
{
    /* Default size and thresholds: a few hundred head, ~4.5 % mid, ~24 % tail, the rest
     * amateur (log10 followers ~ N(log10 1600, 0.9)); bands are wide enough for any seed. */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        demo_params_t p;
        demo_params_default(&p);
        p.seed = seed;
        p.now_s = NOW_S;
        demo_world_t *w = make_world(&p);
        uint64_t sum = 0;
        for (int t = 0; t < DEMO_TIERS; t++) {
            sum += w->tier_creators[t];
        }
        YW_CHECK_INT(sum, ==, 100000);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_HEAD], >=, 150);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_HEAD], <=, 450);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_MID], >=, 3800);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_MID], <=, 5400);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_TAIL], >=, 22500);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_TAIL], <=, 26500);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_AMATEUR], >=, 68000);
        YW_CHECK_INT(w->tier_creators[DEMO_TIER_AMATEUR], <=, 73500);
        /* Each creator's tier is what its followers say under the thresholds. */
        for (uint32_t i = 0; i < p.creators; i++) {
            YW_CHECK_INT(w->creators[i].tier, ==, demo_tier_of(&p, w->creators[i].followers));
        }
        demo_world_destroy(w);
    }
}

YW_TEST(world_is_consistent)
{
    demo_params_t p = quick_params(3);
    demo_world_t *w = make_world(&p);
    size_t notes = 0;
    for (uint32_t i = 0; i < p.creators; i++) {
        const demo_creator_t *c = &w->creators[i];
        YW_CHECK_INT(c->n_notes, >=, 1);
        YW_CHECK_INT(c->first_note, ==, notes);
        YW_CHECK(c->category < DEMO_CATEGORIES && c->region < DEMO_REGIONS);
        YW_CHECK(!c->has_category2 || c->category2 != c->category);
        for (uint32_t k = 0; k < c->n_notes; k++) {
            const demo_note_t *n = &w->notes[c->first_note + k];
            YW_CHECK_INT(n->creator, ==, i);
            YW_CHECK(n->post_day < p.days);
            YW_CHECK(n->post_s >= w->start_s && n->post_s <= w->end_s);
            YW_CHECK(n->n_products >= 1 && n->n_products <= 3);
            for (int j = 0; j < n->n_products; j++) {
                uint32_t prod = n->products[j];
                YW_CHECK(prod < p.products);
                int cat = w->products[prod].category;
                YW_CHECK(cat == c->category || (c->has_category2 && cat == c->category2));
            }
        }
        notes += c->n_notes;
    }
    YW_CHECK_INT(notes, ==, w->n_notes);
    /* The period: `days` whole UTC days ending with the one holding now. */
    YW_CHECK_INT(w->start_s % 86400, ==, 0);
    YW_CHECK_INT(w->start_s, ==, NOW_S - NOW_S % 86400 - INT64_C(29) * 86400);
    YW_CHECK_INT(w->end_s, ==, NOW_S - 600);
    demo_world_destroy(w);
}

YW_TEST(stats_rows_cover_each_note_from_its_day)
{
    demo_params_t p = quick_params(4);
    demo_world_t *w = make_world(&p);
    demo_stats_iter_t it;
    demo_stat_row_t rows[777];
    demo_stats_begin(w, &it);
    uint64_t total = 0;
    size_t n;
    while ((n = demo_stats_next(w, &it, rows, 777)) > 0) {
        for (size_t i = 0; i < n; i++) {
            const demo_stat_row_t *r = &rows[i];
            const demo_note_t *note = &w->notes[r->note];
            YW_CHECK(r->day >= note->post_day && r->day < p.days);
            YW_CHECK(r->day < note->post_day + p.stats_days);
            YW_CHECK(r->impressions >= 0 && r->views <= r->impressions + 1);
            YW_CHECK(r->completion_rate >= 0 && r->completion_rate <= 1);
            YW_CHECK(note->is_video || (r->video_plays == 0 && r->completion_rate == 0));
        }
        total += n;
    }
    YW_CHECK_INT(total, ==, demo_stats_rows(w));
    demo_world_destroy(w);
}

/* Seen-before bits over sequence numbers. */
static int seen(uint8_t *bits, uint64_t seq)
{
    int was = (bits[seq / 8] >> (seq % 8)) & 1;
    bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
    return was;
}

static void count_exposure(const demo_world_t *w, const demo_exposure_t *e, uint8_t *bits,
                           demo_counts_t *c, uint64_t *imps)
{
    c->sent++;
    YW_CHECK(e->bad < DEMO_BAD_EXP_KINDS);
    if (e->bad) {
        YW_CHECK(!seen(bits, e->seq)); /* a broken event has a number of its own */
        c->rejected++;
    } else if (seen(bits, e->seq)) {
        c->duplicates++;
    } else {
        c->accepted++;
        YW_CHECK(e->time_ms >= w->start_s * 1000 && e->time_ms <= w->end_s * 1000);
        YW_CHECK(e->time_ms >= w->notes[e->note].post_s * 1000 - 60000);
        YW_CHECK_INT(w->notes[e->note].creator, ==, e->creator);
        YW_CHECK(e->kind >= DEMO_KIND_IMPRESSION && e->kind <= DEMO_KIND_CLICK);
        if (e->kind == DEMO_KIND_IMPRESSION) {
            imps[w->creators[e->creator].tier]++;
        }
    }
}

YW_TEST(injected_duplicates_and_invalid_events_are_exact)
{
    demo_params_t p = quick_params(11);
    /* More untidiness than the defaults, so that every kind has plenty. */
    p.dup_rate = 0.03;
    p.invalid_rate = 0.02;
    p.late_rate = 0.05;
    p.refund_rate = 0.3;
    demo_world_t *w = make_world(&p);
    demo_truth_t plan;
    YW_CHECK_INT(demo_plan(w, &plan), ==, 0);

    demo_events_t *e = NULL;
    YW_CHECK_INT(demo_events_create(w, &e), ==, 0);
    uint8_t *bits = calloc(1 << 20, 1); /* 8M sequence numbers */
    YW_CHECK(bits != NULL);
    demo_counts_t exp = {0}, conv = {0}, ref = {0};
    uint64_t imps[DEMO_TIERS] = {0};
    demo_exposure_t buf[999];
    size_t n;
    do {
        YW_CHECK_INT(demo_events_exposures(e, buf, 999, &n), ==, 0);
        for (size_t i = 0; i < n; i++) {
            count_exposure(w, &buf[i], bits, &exp, imps);
        }
    } while (n > 0);
    const demo_exposure_t *late = demo_events_late(e, &n);
    YW_CHECK(late != NULL);
    YW_CHECK_INT(n, ==, plan.late_sent);
    YW_CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
        count_exposure(w, &late[i], bits, &exp, imps);
    }
    const demo_truth_t *t = demo_events_truth(e);
    YW_CHECK_INT(exp.sent, ==, t->exposures.sent);
    YW_CHECK_INT(exp.accepted, ==, t->exposures.accepted);
    YW_CHECK_INT(exp.duplicates, ==, t->exposures.duplicates);
    YW_CHECK_INT(exp.rejected, ==, t->exposures.rejected);
    YW_CHECK(exp.duplicates > 0 && exp.rejected > 0);
    for (int k = 0; k < DEMO_TIERS; k++) {
        YW_CHECK_INT(imps[k], ==, t->impressions[k]);
    }

    memset(bits, 0, 1 << 20);
    const demo_conversion_t *cv = demo_events_conversions(e, &n);
    int64_t gross = 0;
    for (size_t i = 0; i < n; i++) {
        conv.sent++;
        if (cv[i].bad) {
            conv.rejected++;
        } else if (seen(bits, cv[i].seq)) {
            conv.duplicates++;
        } else {
            conv.accepted++;
            gross += cv[i].amount_minor;
            YW_CHECK(cv[i].time_ms <= w->end_s * 1000 && cv[i].amount_minor > 0);
        }
    }
    YW_CHECK_INT(conv.sent, ==, t->conversions.sent);
    YW_CHECK_INT(conv.accepted, ==, t->conversions.accepted);
    YW_CHECK_INT(conv.duplicates, ==, t->conversions.duplicates);
    YW_CHECK_INT(conv.rejected, ==, t->conversions.rejected);
    YW_CHECK_INT(gross, ==, t->gross_minor);
    uint64_t orders = t->organic_orders;
    for (int k = 0; k < DEMO_TIERS; k++) {
        orders += t->orders[k];
    }
    YW_CHECK_INT(orders, ==, conv.accepted);
    /* organic_rate of all orders follow no exposure. */
    YW_CHECK(t->organic_orders > 0);
    double organic = (double)t->organic_orders / (double)conv.accepted;
    YW_CHECK(organic > p.organic_rate - 0.005 && organic < p.organic_rate + 0.005);

    memset(bits, 0, 1 << 20);
    const demo_refund_t *rf = demo_events_refunds(e, &n);
    int64_t refunded = 0;
    for (size_t i = 0; i < n; i++) {
        ref.sent++;
        if (rf[i].bad) {
            ref.rejected++;
            YW_CHECK(rf[i].bad == DEMO_BAD_REF_UNKNOWN_ORDER || rf[i].bad == DEMO_BAD_REF_AMOUNT ||
                     (rf[i].bad == DEMO_BAD_REF_TOO_MUCH && rf[i].amount_minor > 1));
        } else if (seen(bits, rf[i].seq)) {
            ref.duplicates++;
        } else {
            ref.accepted++;
            refunded += rf[i].amount_minor;
            YW_CHECK(rf[i].order >= 1 && rf[i].order <= conv.accepted);
            YW_CHECK(rf[i].amount_minor > 0);
        }
    }
    YW_CHECK_INT(ref.sent, ==, t->refunds.sent);
    YW_CHECK_INT(ref.accepted, ==, t->refunds.accepted);
    YW_CHECK_INT(ref.duplicates, ==, t->refunds.duplicates);
    YW_CHECK_INT(ref.rejected, ==, t->refunds.rejected);
    YW_CHECK_INT(refunded, ==, t->refunded_minor);
    YW_CHECK(refunded < gross);

    /* The plan (a run without keeping events) is the same truth. */
    YW_CHECK_INT(plan.exposures.sent, ==, t->exposures.sent);
    YW_CHECK_INT(plan.exposures.duplicates, ==, t->exposures.duplicates);
    YW_CHECK_INT(plan.conversions.rejected, ==, t->conversions.rejected);
    YW_CHECK_INT(plan.refunds.accepted, ==, t->refunds.accepted);
    YW_CHECK_INT(plan.gross_minor, ==, t->gross_minor);
    free(bits);
    demo_events_destroy(e);
    demo_world_destroy(w);
}

YW_TEST(zero_rates_make_clean_traffic)
{
    demo_params_t p = quick_params(5);
    p.impressions = 50000;
    p.dup_rate = p.invalid_rate = p.late_rate = p.refund_rate = p.organic_rate = 0;
    demo_world_t *w = make_world(&p);
    demo_truth_t t;
    YW_CHECK_INT(demo_plan(w, &t), ==, 0);
    YW_CHECK_INT(t.exposures.duplicates + t.exposures.rejected + t.late_sent, ==, 0);
    YW_CHECK_INT(t.conversions.duplicates + t.conversions.rejected, ==, 0);
    YW_CHECK_INT(t.refunds.sent, ==, 0);
    YW_CHECK_INT(t.organic_orders, ==, 0);
    YW_CHECK_INT(t.exposures.sent, ==, t.exposures.accepted);
    uint64_t imps = 0;
    for (int k = 0; k < DEMO_TIERS; k++) {
        imps += t.impressions[k];
    }
    /* Every feed impression, plus one per assist. */
    YW_CHECK_INT(imps, ==, p.impressions + t.assisted_orders);
    demo_world_destroy(w);
}

YW_TEST(feeds_are_top_heavy_and_defaults_favour_mid_and_tail)
{
    demo_params_t p;
    demo_params_default(&p);
    p.now_s = NOW_S;
    p.impressions = 1000000;
    demo_world_t *w = make_world(&p);
    demo_truth_t t;
    YW_CHECK_INT(demo_plan(w, &t), ==, 0);
    double imps = 0;
    for (int k = 0; k < DEMO_TIERS; k++) {
        imps += (double)t.impressions[k];
    }
    /* A head creator gets far more of the feed than its share of creators. */
    double head_imp_share = (double)t.impressions[DEMO_TIER_HEAD] / imps;
    double head_creator_share = (double)w->tier_creators[DEMO_TIER_HEAD] / p.creators;
    YW_CHECK(head_imp_share > 20 * head_creator_share);
    YW_CHECK(head_imp_share > 0.25 && head_imp_share < 0.55);
    /* Orders per impression: mid and tail above head, as the defaults say. */
    double head = (double)t.orders[DEMO_TIER_HEAD] / (double)t.impressions[DEMO_TIER_HEAD];
    double mid = (double)t.orders[DEMO_TIER_MID] / (double)t.impressions[DEMO_TIER_MID];
    double tail = (double)t.orders[DEMO_TIER_TAIL] / (double)t.impressions[DEMO_TIER_TAIL];
    YW_CHECK(mid > 1.5 * head);
    YW_CHECK(tail > 1.5 * head);
    /* The funnel follows the parameters: clicks per impression of mid within 20 %. */
    double ctr_mid = (double)t.clicks[DEMO_TIER_MID] / (double)t.impressions[DEMO_TIER_MID];
    YW_CHECK(ctr_mid > 0.8 * p.ctr[DEMO_TIER_MID] && ctr_mid < 1.3 * p.ctr[DEMO_TIER_MID]);
    demo_world_destroy(w);
}

YW_TEST(the_parameters_decide_which_tier_converts)
{
    /* The opposite bet: head converts best. The generator just follows. */
    demo_params_t p = quick_params(9);
    p.impressions = 400000;
    for (int k = 0; k < DEMO_TIERS; k++) {
        p.ctr[k] = k == DEMO_TIER_HEAD ? 0.05 : 0.01;
        p.cvr[k] = k == DEMO_TIER_HEAD ? 0.10 : 0.02;
    }
    demo_world_t *w = make_world(&p);
    demo_truth_t t;
    YW_CHECK_INT(demo_plan(w, &t), ==, 0);
    double head = (double)t.orders[DEMO_TIER_HEAD] / (double)t.impressions[DEMO_TIER_HEAD];
    double mid = (double)t.orders[DEMO_TIER_MID] / (double)t.impressions[DEMO_TIER_MID];
    YW_CHECK(head > 5 * mid);
    demo_world_destroy(w);
}

YW_TEST(bad_parameters_are_rejected_by_name)
{
    char err[256];
    demo_params_t p = quick_params(1);
    YW_CHECK_INT(demo_params_validate(&p, err, sizeof err), ==, 0);
    p.ctr[DEMO_TIER_MID] = 1.5;
    YW_CHECK_INT(demo_params_validate(&p, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "MID") != NULL);
    p = quick_params(1);
    p.mid_min = p.head_min;
    YW_CHECK_INT(demo_params_validate(&p, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "thresholds") != NULL);
    p = quick_params(1);
    p.days = 90;
    YW_CHECK_INT(demo_params_validate(&p, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "days") != NULL);
    p = quick_params(1);
    p.dup_rate = -0.1;
    demo_world_t *w = NULL;
    YW_CHECK_INT(demo_world_create(&p, &w, err, sizeof err), ==, -EINVAL);
    YW_CHECK(w == NULL);
}

YW_TEST(rng_is_uniform_enough)
{
    demo_rng_t r;
    demo_rng_seed(&r, 1, 1);
    int buckets[10] = {0};
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        buckets[demo_rng_below(&r, 10)]++;
        double z = demo_rng_normal(&r);
        sum += z;
        sq += z * z;
    }
    for (int k = 0; k < 10; k++) {
        YW_CHECK(buckets[k] > 9500 && buckets[k] < 10500);
    }
    YW_CHECK(sum / 100000 > -0.02 && sum / 100000 < 0.02);
    YW_CHECK(sq / 100000 > 0.97 && sq / 100000 < 1.03);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(same_seed_same_world_and_events),
        YW_TEST_ENTRY(tier_counts_fall_in_plausible_bands),
        YW_TEST_ENTRY(world_is_consistent),
        YW_TEST_ENTRY(stats_rows_cover_each_note_from_its_day),
        YW_TEST_ENTRY(injected_duplicates_and_invalid_events_are_exact),
        YW_TEST_ENTRY(zero_rates_make_clean_traffic),
        YW_TEST_ENTRY(feeds_are_top_heavy_and_defaults_favour_mid_and_tail),
        YW_TEST_ENTRY(the_parameters_decide_which_tier_converts),
        YW_TEST_ENTRY(bad_parameters_are_rejected_by_name),
        YW_TEST_ENTRY(rng_is_uniform_enough),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
