/*
 * test_attr_rollups.c — unit tests of services/attribution/attr_rollups.c: exposure
 * counts per creator and day, and what keeps them bounded and exact: 16-byte cells,
 * figures past 32 bits kept whole (wide), credit sums past int64, split credit cells
 * going wide and back, many wide figures found through their index, single-touch
 * credits apart from split ones. Expectations are computed by hand in the comments.
 */
#include "services/attribution/attr_state.h"

#include <errno.h>

#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_state_fixture.h"
#include "tests/unit/test.h"

YW_TEST(exposure_rollups_per_creator_and_day)
{
    attr_state_t st;
    attr_state_init(&st);
    fx_expose(&st, "e1", "v1", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0, T0);
    fx_expose(&st, "e2", "v2", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0 + H_, T0 + H_);
    fx_expose(&st, "e3", "v1", "alice", "p", ATTR_KIND_VIEW, 3000, T0, T0);
    fx_expose(&st, "e4", "v1", "alice", "p", ATTR_KIND_CLICK, 0, T0, T0);
    fx_expose(&st, "e5", "v1", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0 - D_, T0);
    fx_expose(&st, "e6", "v1", "bob", "p", ATTR_KIND_IMPRESSION, 0, T0, T0);
    uint32_t alice = (uint32_t)attr_intern_find(&st.creators, "alice", 5);
    attr_sums_t s;
    attr_state_creator_sums(&st, alice, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 2); /* e1, e2 (e5 is the day before) */
    YW_CHECK_INT(s.views, ==, 1);       /* a short view is still a VIEW in reports */
    YW_CHECK_INT(s.clicks, ==, 1);
    attr_state_creator_sums(&st, alice, DAY0 - 1, DAY0, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 1);
    attr_state_creator_sums(&st, alice, DAY0 - 1, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 3);
    /* Rollups of a pruned segment add up with what is in memory. */
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 10, 20, 30), ==, 0);
    attr_state_creator_sums(&st, alice, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 12);
    YW_CHECK_INT(s.views, ==, 21);
    YW_CHECK_INT(s.clicks, ==, 31);
    attr_state_free(&st);
}

/* ---- memory: compact rollups, the conversion cache, the conversion filter ---- */

YW_TEST(rollup_figures_past_32_bits_are_kept_whole)
{
    attr_state_t st;
    attr_state_init(&st);
    /* Counts of pruned segments can be anything: past UINT32_MAX they go wide, and back. */
    int64_t big = INT64_C(5000000000);
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, big, 1, 2), ==, 0);
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 1, (int64_t)UINT32_MAX, 0),
                 ==, 0);
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "alice", 5);
    attr_sums_t s;
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, big + 1);
    YW_CHECK_INT(s.views, ==, (int64_t)UINT32_MAX + 1);
    YW_CHECK_INT(s.clicks, ==, 2);
    YW_CHECK_INT(st.n_wide, ==, 2);
    /* Committed exposures cross the 32 bits too: clicks from UINT32_MAX - 3 on. */
    YW_CHECK_INT(
        attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 0, 0, (int64_t)UINT32_MAX - 5), ==,
        0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        fx_expose(&st, id, "v", "alice", "p", ATTR_KIND_CLICK, 0, T0, T0);
    }
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.clicks, ==, (int64_t)UINT32_MAX + 1);
    YW_CHECK_INT(st.n_wide, ==, 3);
    /* A 16-byte cell per creator and day. */
    YW_CHECK_INT(sizeof(attr_day_t), ==, 16);
    YW_CHECK_INT(sizeof(attr_cday_t), ==, 16);
    attr_state_free(&st);
}

YW_TEST(rollup_memory_is_kept_up_to_date_not_walked)
{
    attr_state_t st;
    attr_state_init(&st);
    /* 300 creators, up to 60 days each, in no order of day: their arrays grow again and
     * again; then credits (cdays) for some. */
    for (int d = 0; d < 60; d++) {
        for (int c = 0; c < 300; c++) {
            if ((c + d) % 3 == 0) {
                continue;
            }
            char id[16];
            int n = snprintf(id, sizeof id, "c%d", c);
            int32_t day = DAY0 - 30 + (d * 7 + c) % 60;
            YW_CHECK_INT(attr_state_add_exposure_rollup(&st, id, (size_t)n, day, 1, 0, 0), ==, 0);
        }
    }
    YW_CHECK(st.cell_bytes > 300 * 16);
    YW_CHECK_INT(st.cell_bytes, ==, fx_cell_bytes(&st));
    int64_t now = T0 + H_;
    for (int i = 0; i < 50; i++) {
        char e[16], v[16], o[16];
        snprintf(e, sizeof e, "e%d", i);
        snprintf(v, sizeof v, "v%d", i);
        snprintf(o, sizeof o, "o%d", i);
        fx_expose(&st, e, v, i % 2 ? "c1" : "c2", "p", ATTR_KIND_CLICK, 0, T0 - (i % 5) * D_, now);
        fx_convert(&st, o, v, "p", 100, T0 + (i % 3) * D_, now);
    }
    YW_CHECK_INT(st.cell_bytes, ==, fx_cell_bytes(&st));
    attr_state_mem_t m;
    attr_state_mem(&st, &m);
    YW_CHECK(m.rollups >= st.cell_bytes + st.cap_creator_meta * sizeof *st.creator_meta);
    attr_state_free(&st);
    YW_CHECK_INT(st.cell_bytes, ==, 0);
}

/* Orders at the largest amount allowed, 10^15: 9,224 of them pass int64. */
#define BIG_N 9300
#define BIG ((attr_sum_t)BIG_N * ATTR_AMOUNT_MAX)

YW_TEST(credit_sums_past_int64_are_exact)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    /* A alone on (v1, p1); A then B on (v2, p2): split, last touch B, first touch A;
     * nobody on (v9, p9). BIG_N orders of each. */
    fx_expose(&st, "a1", "v1", "A", "p1", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    fx_expose(&st, "a2", "v2", "A", "p2", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    fx_expose(&st, "b2", "v2", "B", "p2", ATTR_KIND_CLICK, 0, T0 - D_, now);
    for (int i = 0; i < BIG_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "one-%d", i);
        fx_convert(&st, id, "v1", "p1", ATTR_AMOUNT_MAX, T0, now);
        snprintf(id, sizeof id, "split-%d", i);
        fx_convert(&st, id, "v2", "p2", ATTR_AMOUNT_MAX, T0, now);
        snprintf(id, sizeof id, "none-%d", i);
        fx_convert(&st, id, "v9", "p9", ATTR_AMOUNT_MAX, T0, now);
    }
    YW_CHECK(BIG > INT64_MAX);
    /* A: every single order (all models) plus the split ones under first touch; B the
     * split ones under last touch; linear halves them exactly (10^15 is even). */
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_LAST_TOUCH).gmv, ==, BIG);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * BIG);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_LINEAR).gmv, ==, BIG + BIG / 2);
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, BIG);
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 0);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_FIRST_TOUCH).credit, ==,
                  (attr_sum_t)2 * BIG_N * ATTR_CREDIT_ONE);
    for (int m = 1; m <= ATTR_N_MODELS; m++) {
        YW_CHECK_I128(fx_sums(&st, "A", m).gmv + fx_sums(&st, "B", m).gmv, ==, 2 * BIG);
    }
    attr_sum_t n = 0, g = 0;
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(n, ==, BIG_N);
    YW_CHECK_I128(g, ==, BIG);
    YW_CHECK_INT(attr_sum_clamp(g), ==, INT64_MAX);
    YW_CHECK_INT(attr_sum_clamp(-g), ==, INT64_MIN);
    YW_CHECK_INT(attr_sum_clamp(77), ==, 77);
    /* Refunds restate: each takes 10^15 - 1 off an order; the sums come back within
     * int64 and out of the wide figures, exactly. */
    size_t wide_before = st.n_wide;
    YW_CHECK(wide_before > 0);
    const char *kinds[] = {"one", "split"};
    int refunds = 400;
    for (int i = 0; i < refunds; i++) {
        for (int k = 0; k < 2; k++) {
            char oid[32], rid[32];
            snprintf(oid, sizeof oid, "%s-%d", kinds[k], BIG_N - 1 - i);
            snprintf(rid, sizeof rid, "r-%s-%d", kinds[k], i);
            attr_refund_t *r = NULL;
            int64_t left = 0;
            YW_CHECK_INT(attr_refund_admit(&st, rid, strlen(rid), oid, strlen(oid),
                                           ATTR_AMOUNT_MAX - 1, now, &r, &left),
                         ==, ATTR_ADMITTED);
            YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
        }
    }
    attr_sum_t kept = (attr_sum_t)(BIG_N - refunds) * ATTR_AMOUNT_MAX + refunds;
    YW_CHECK(kept < INT64_MAX);
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * kept);
    YW_CHECK(st.n_wide < wide_before);
    /* A settings change restates every order: the same sums. */
    attr_settings_t s = st.settings;
    s.version = 2;
    s.engaged_view_ms = 1;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_I128(fx_sums(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * kept);
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(g, ==, BIG);
    attr_state_free(&st);
}

YW_TEST(split_credit_cells_past_int64_go_wide_and_back)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    fx_expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    fx_expose(&st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    /* Two touches, several orders in one creator and day: their 64-bit per-model cell
     * (B's, under last touch) passes INT64_MAX at the 9,224th. */
    attr_conv_t *c = NULL;
    for (int i = 0; i < 9224; i++) {
        char id[32];
        snprintf(id, sizeof id, "o-%d", i);
        c = fx_convert(&st, id, "v", "p", ATTR_AMOUNT_MAX, T0, now);
    }
    uint32_t b = (uint32_t)attr_intern_find(&st.creators, "B", 1);
    const attr_multi_t *mu = &st.multi[st.creator_meta[b].cdays[0].multi - 1];
    YW_CHECK_INT(mu->gmv[ATTR_MODEL_LAST_TOUCH - 1], ==, INT64_MIN); /* wide */
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==,
                  (attr_sum_t)9224 * ATTR_AMOUNT_MAX);
    /* A refund of the last order brings it back under INT64_MAX: back in its cell. */
    attr_refund_t *r = NULL;
    int64_t left = 0;
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-9223", 6, ATTR_AMOUNT_MAX, now, &r, &left), ==,
                 ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 2);
    YW_CHECK_INT(mu->gmv[ATTR_MODEL_LAST_TOUCH - 1], ==, 9223 * ATTR_AMOUNT_MAX);
    YW_CHECK_I128(fx_sums(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==,
                  (attr_sum_t)9223 * ATTR_AMOUNT_MAX);
    attr_state_free(&st);
}

YW_TEST(many_wide_figures_are_found_through_their_index)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    /* 3,000 creators, each with an order of 5 x 10^9 minor units: past 32 bits, wide. */
    enum { N = 3000 };
    const int64_t big = INT64_C(5000000000);
    for (int i = 0; i < N; i++) {
        char e[32], v[32], c[32], o[32];
        snprintf(e, sizeof e, "e%d", i);
        snprintf(v, sizeof v, "v%d", i);
        snprintf(c, sizeof c, "c%d", i);
        snprintf(o, sizeof o, "o%d", i);
        fx_expose(&st, e, v, c, "p", ATTR_KIND_CLICK, 0, T0 - H_, now);
        fx_convert(&st, o, v, "p", big, T0, now);
    }
    YW_CHECK_INT(st.n_wide, ==, N);
    /* Every other one refunded under 32 bits: out of the wide figures (each removal
     * moves the last one into its place, and its index entry with it). */
    for (int i = 0; i < N; i += 2) {
        char o[32], r[32];
        snprintf(o, sizeof o, "o%d", i);
        snprintf(r, sizeof r, "r%d", i);
        attr_refund_t *rf = NULL;
        int64_t left = 0;
        YW_CHECK_INT(attr_refund_admit(&st, r, strlen(r), o, strlen(o), big - 7, now, &rf, &left),
                     ==, ATTR_ADMITTED);
        YW_CHECK_INT(attr_refund_commit(&st, rf), ==, 0);
    }
    YW_CHECK_INT(st.n_wide, ==, N / 2);
    for (int i = 0; i < N; i++) {
        char c[32];
        snprintf(c, sizeof c, "c%d", i);
        YW_CHECK_I128(fx_sums(&st, c, ATTR_MODEL_LINEAR).gmv, ==, i % 2 == 0 ? 7 : big);
    }
    /* A settings change restates every order: its figures out and in again. */
    attr_settings_t s = st.settings;
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(st.n_wide, ==, N / 2);
    YW_CHECK_I128(fx_sums(&st, "c2999", ATTR_MODEL_LAST_TOUCH).gmv, ==, big);
    YW_CHECK_I128(fx_sums(&st, "c2998", ATTR_MODEL_LAST_TOUCH).gmv, ==, 7);
    attr_state_free(&st);
}

YW_TEST(single_touch_credits_are_singles_split_ones_multi)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    fx_expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    fx_convert(&st, "o1", "v", "p", 1000, T0, now);
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "A", 1);
    YW_CHECK_INT(st.creator_meta[a].n_cdays, ==, 1);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].singles, ==, 1);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].multi, ==, 0);
    YW_CHECK_INT(st.n_multi, ==, 0);
    /* A second click splits the order: per-model figures, and the single goes. */
    fx_expose(&st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].singles, ==, 0);
    YW_CHECK(st.creator_meta[a].cdays[0].multi != 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LINEAR) +
                     fx_creator_gmv(&st, "B", ATTR_MODEL_LINEAR),
                 ==, 1000);
    attr_state_free(&st);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(exposure_rollups_per_creator_and_day),
        YW_TEST_ENTRY(rollup_figures_past_32_bits_are_kept_whole),
        YW_TEST_ENTRY(rollup_memory_is_kept_up_to_date_not_walked),
        YW_TEST_ENTRY(credit_sums_past_int64_are_exact),
        YW_TEST_ENTRY(split_credit_cells_past_int64_go_wide_and_back),
        YW_TEST_ENTRY(many_wide_figures_are_found_through_their_index),
        YW_TEST_ENTRY(single_touch_credits_are_singles_split_ones_multi),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
