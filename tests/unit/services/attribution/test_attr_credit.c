/*
 * test_attr_credit.c — unit tests of services/attribution/attr_credit.c: every rule of
 * the README's "Attribution" against numbers computed by hand (window edges, engaged views,
 * priority, touch order, each model, the split to the minor unit).
 */
#include "services/attribution/attr_credit.h"

#include <errno.h>

#include "tests/unit/test.h"

#define DAY ATTR_NS_PER_DAY
#define T0 (INT64_C(20000) * DAY) /* 2024-10-04T00:00:00Z */

/* Scratch for attr_split(): enough for every test here. */
static int64_t scratch[64];

static attr_rules_t rules(void)
{
    attr_rules_t r;
    attr_rules_default(&r);
    return r;
}

static attr_touch_t touch(const char *id, int64_t at, int kind, int64_t watch_ms)
{
    attr_touch_t t = {.event_id = id, .occur_ns = at, .kind = kind, .watch_ms = watch_ms};
    return t;
}

YW_TEST(defaults_are_the_issue_s)
{
    attr_rules_t r = rules();
    YW_CHECK_INT(r.click_window_ns, ==, 7 * DAY);
    YW_CHECK_INT(r.view_window_ns, ==, 1 * DAY);
    YW_CHECK_INT(r.half_life_ns, ==, 7 * DAY);
    YW_CHECK_INT(r.engaged_view_ms, ==, 10000);
}

YW_TEST(click_window_edges_are_inclusive)
{
    attr_rules_t r = rules();
    attr_touch_t at_edge = touch("a", T0 - 7 * DAY, ATTR_KIND_CLICK, 0);
    attr_touch_t past_edge = touch("b", T0 - 7 * DAY - 1, ATTR_KIND_CLICK, 0);
    attr_touch_t at_conversion = touch("c", T0, ATTR_KIND_CLICK, 0);
    attr_touch_t after = touch("d", T0 + 1, ATTR_KIND_CLICK, 0);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &at_edge), ==, ATTR_CLASS_CLICK);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &past_edge), ==, ATTR_CLASS_NONE);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &at_conversion), ==, ATTR_CLASS_CLICK);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &after), ==, ATTR_CLASS_NONE);
}

YW_TEST(view_window_edges_are_inclusive_for_views_and_impressions)
{
    attr_rules_t r = rules();
    attr_touch_t v_edge = touch("a", T0 - DAY, ATTR_KIND_VIEW, 20000);
    attr_touch_t v_past = touch("b", T0 - DAY - 1, ATTR_KIND_VIEW, 20000);
    attr_touch_t i_edge = touch("c", T0 - DAY, ATTR_KIND_IMPRESSION, 0);
    attr_touch_t i_past = touch("d", T0 - DAY - 1, ATTR_KIND_IMPRESSION, 0);
    /* A short view is an impression, but keeps the view window (the same one). */
    attr_touch_t short_past = touch("e", T0 - DAY - 1, ATTR_KIND_VIEW, 5);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &v_edge), ==, ATTR_CLASS_ENGAGED_VIEW);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &v_past), ==, ATTR_CLASS_NONE);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &i_edge), ==, ATTR_CLASS_IMPRESSION);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &i_past), ==, ATTR_CLASS_NONE);
    YW_CHECK_INT(attr_candidate_class(&r, T0, &short_past), ==, ATTR_CLASS_NONE);
}

YW_TEST(short_view_counts_as_impression)
{
    attr_rules_t r = rules();
    YW_CHECK_INT(attr_touch_class(&r, ATTR_KIND_VIEW, 9999), ==, ATTR_CLASS_IMPRESSION);
    YW_CHECK_INT(attr_touch_class(&r, ATTR_KIND_VIEW, 10000), ==, ATTR_CLASS_ENGAGED_VIEW);
    YW_CHECK_INT(attr_touch_class(&r, ATTR_KIND_VIEW, 0), ==, ATTR_CLASS_IMPRESSION);
    YW_CHECK_INT(attr_touch_class(&r, ATTR_KIND_UNSPECIFIED, 0), ==, ATTR_CLASS_NONE);
    r.engaged_view_ms = 0; /* every view engaged */
    YW_CHECK_INT(attr_touch_class(&r, ATTR_KIND_VIEW, 0), ==, ATTR_CLASS_ENGAGED_VIEW);
}

YW_TEST(clicks_win_over_views_and_impressions)
{
    attr_rules_t r = rules();
    attr_touch_t c[] = {
        touch("v1", T0 - 3600 * ATTR_NS_PER_S, ATTR_KIND_VIEW, 60000),
        touch("k1", T0 - 3 * DAY, ATTR_KIND_CLICK, 0),
        touch("i1", T0 - 60 * ATTR_NS_PER_S, ATTR_KIND_IMPRESSION, 0),
        touch("k2", T0 - 2 * DAY, ATTR_KIND_CLICK, 0),
    };
    size_t out[4];
    int cls = -1;
    YW_CHECK_INT(attr_select(&r, T0, c, 4, out, &cls), ==, 2);
    YW_CHECK_INT(cls, ==, ATTR_CLASS_CLICK);
    YW_CHECK_INT(out[0], ==, 1); /* k1, earlier */
    YW_CHECK_INT(out[1], ==, 3);
}

YW_TEST(engaged_views_win_over_impressions_and_short_views)
{
    attr_rules_t r = rules();
    attr_touch_t c[] = {
        touch("i1", T0 - 100, ATTR_KIND_IMPRESSION, 0),
        touch("s1", T0 - 200, ATTR_KIND_VIEW, 9999),
        touch("v1", T0 - 300, ATTR_KIND_VIEW, 10000),
        /* a click outside its window does not count at all */
        touch("k1", T0 - 8 * DAY, ATTR_KIND_CLICK, 0),
    };
    size_t out[4];
    int cls = -1;
    YW_CHECK_INT(attr_select(&r, T0, c, 4, out, &cls), ==, 1);
    YW_CHECK_INT(cls, ==, ATTR_CLASS_ENGAGED_VIEW);
    YW_CHECK_INT(out[0], ==, 2);
}

YW_TEST(short_views_and_impressions_share_the_lowest_class)
{
    attr_rules_t r = rules();
    attr_touch_t c[] = {
        touch("i1", T0 - 100, ATTR_KIND_IMPRESSION, 0),
        touch("s1", T0 - 200, ATTR_KIND_VIEW, 10),
    };
    size_t out[2];
    int cls = -1;
    YW_CHECK_INT(attr_select(&r, T0, c, 2, out, &cls), ==, 2);
    YW_CHECK_INT(cls, ==, ATTR_CLASS_IMPRESSION);
    YW_CHECK_INT(out[0], ==, 1); /* s1 is earlier */
    YW_CHECK_INT(out[1], ==, 0);
}

YW_TEST(no_candidate_is_unattributed)
{
    attr_rules_t r = rules();
    attr_touch_t c[] = {touch("late", T0 + 1, ATTR_KIND_CLICK, 0),
                        touch("old", T0 - 2 * DAY, ATTR_KIND_IMPRESSION, 0)};
    size_t out[2];
    int cls = -1;
    YW_CHECK_INT(attr_select(&r, T0, c, 2, out, &cls), ==, 0);
    YW_CHECK_INT(cls, ==, ATTR_CLASS_NONE);
    YW_CHECK_INT(attr_select(&r, T0, c, 0, out, NULL), ==, 0);
}

YW_TEST(equal_times_order_by_event_id)
{
    attr_rules_t r = rules();
    attr_touch_t c[] = {
        touch("e-b", T0 - 5, ATTR_KIND_CLICK, 0), touch("e-a", T0 - 5, ATTR_KIND_CLICK, 0),
        touch("e-B", T0 - 5, ATTR_KIND_CLICK, 0), touch("e-0", T0 - 6, ATTR_KIND_CLICK, 0)};
    size_t out[4];
    YW_CHECK_INT(attr_select(&r, T0, c, 4, out, NULL), ==, 4);
    /* time first, then bytewise event_id: "e-B" < "e-a" < "e-b" */
    YW_CHECK_INT(out[0], ==, 3);
    YW_CHECK_INT(out[1], ==, 2);
    YW_CHECK_INT(out[2], ==, 1);
    YW_CHECK_INT(out[3], ==, 0);
}

/* Shares of `model` for touches at `at`, then `total` split; checks the amounts. */
static void check_split(int model, const int64_t *at, size_t n, int64_t total, const int64_t *want)
{
    attr_rules_t r = rules();
    int64_t num[8], den = 0, got[8];
    YW_CHECK_INT(attr_shares(&r, model, T0, at, n, num, &den), ==, 0);
    YW_CHECK_INT(attr_split(total, num, den, n, got, scratch), ==, 0);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        YW_CHECK_INT(got[i], ==, want[i]);
        sum += got[i];
    }
    YW_CHECK_INT(sum, ==, total);
}

static const int64_t three[] = {T0 - 3 * DAY, T0 - 2 * DAY, T0 - DAY};

YW_TEST(last_touch_takes_all)
{
    static const int64_t want[] = {0, 0, 10000};
    check_split(ATTR_MODEL_LAST_TOUCH, three, 3, 10000, want);
}

YW_TEST(first_touch_takes_all)
{
    static const int64_t want[] = {9999, 0, 0};
    check_split(ATTR_MODEL_FIRST_TOUCH, three, 3, 9999, want);
}

YW_TEST(linear_leftover_units_go_to_later_touches)
{
    /* 100/3 = 33 r 1 each: one unit left, remainders tie, the last touch gets it. */
    static const int64_t w100[] = {33, 33, 34};
    check_split(ATTR_MODEL_LINEAR, three, 3, 100, w100);
    /* 101/3 = 33 r 2 each: two left, to the last two. */
    static const int64_t w101[] = {33, 34, 34};
    check_split(ATTR_MODEL_LINEAR, three, 3, 101, w101);
    /* Rounding at the unit: 1 minor unit over three touches. */
    static const int64_t w1[] = {0, 0, 1};
    check_split(ATTR_MODEL_LINEAR, three, 3, 1, w1);
    static const int64_t w0[] = {0, 0, 0};
    check_split(ATTR_MODEL_LINEAR, three, 3, 0, w0);
}

YW_TEST(position_based_40_20_40)
{
    static const int64_t w3[] = {40, 20, 40};
    check_split(ATTR_MODEL_POSITION_BASED, three, 3, 100, w3);
    /* Four touches, 101: 40.4, 10.1, 10.1, 40.4 -> floors 40,10,10,40; one unit left,
     * the largest remainders (.4) tie between the first and the last: the last. */
    static const int64_t at4[] = {T0 - 4, T0 - 3, T0 - 2, T0 - 1};
    static const int64_t w4[] = {40, 10, 10, 41};
    check_split(ATTR_MODEL_POSITION_BASED, at4, 4, 101, w4);
    /* Five touches, 1000: 400, 66.67 x3, 400 -> 400,66,66,66,400 + 2 units to the two
     * latest middle touches (remainders .67 tie). */
    static const int64_t at5[] = {T0 - 5, T0 - 4, T0 - 3, T0 - 2, T0 - 1};
    static const int64_t w5[] = {400, 66, 67, 67, 400};
    check_split(ATTR_MODEL_POSITION_BASED, at5, 5, 1000, w5);
}

YW_TEST(position_based_one_and_two_touches)
{
    static const int64_t at1[] = {T0 - 1};
    static const int64_t w1[] = {777};
    check_split(ATTR_MODEL_POSITION_BASED, at1, 1, 777, w1);
    static const int64_t at2[] = {T0 - 2, T0 - 1};
    static const int64_t w2[] = {50, 51}; /* 50/50 of 101, the unit to the later */
    check_split(ATTR_MODEL_POSITION_BASED, at2, 2, 101, w2);
}

YW_TEST(time_decay_halves_per_half_life)
{
    /* Half-life 7 days: a touch 7 days before the latest weighs half -> 1/3 and 2/3.
     * 100 -> 33.33 and 66.67 -> 33 and 66 + one unit to the larger remainder (.67). */
    static const int64_t at[] = {T0 - 7 * DAY, T0};
    static const int64_t want[] = {33, 67};
    check_split(ATTR_MODEL_TIME_DECAY, at, 2, 100, want);

    attr_rules_t r = rules();
    int64_t num[3], den = 0;
    YW_CHECK_INT(attr_shares(&r, ATTR_MODEL_TIME_DECAY, T0, at, 2, num, &den), ==, 0);
    YW_CHECK_INT(num[1], ==, ATTR_DECAY_SCALE);
    YW_CHECK_INT(num[0], ==, ATTR_DECAY_SCALE / 2);
    YW_CHECK_INT(den, ==, 3 * (ATTR_DECAY_SCALE / 2));
    /* 14 and 7 days before the latest: 1/4, 1/2, 1 -> 1/7, 2/7, 4/7 of 700. */
    static const int64_t at3[] = {T0 - 14 * DAY, T0 - 7 * DAY, T0};
    static const int64_t want3[] = {100, 200, 400};
    check_split(ATTR_MODEL_TIME_DECAY, at3, 3, 700, want3);
    /* Equal times: equal weights, the leftover to the later. */
    static const int64_t same[] = {T0, T0};
    static const int64_t wsame[] = {0, 1};
    check_split(ATTR_MODEL_TIME_DECAY, same, 2, 1, wsame);
}

YW_TEST(credit_in_fixed_point_sums_to_one)
{
    attr_rules_t r = rules();
    int64_t num[3], den = 0, out[3];
    YW_CHECK_INT(attr_shares(&r, ATTR_MODEL_LINEAR, T0, three, 3, num, &den), ==, 0);
    YW_CHECK_INT(attr_split(ATTR_CREDIT_ONE, num, den, 3, out, scratch), ==, 0);
    YW_CHECK_INT(out[0], ==, 333333333);
    YW_CHECK_INT(out[1], ==, 333333333);
    YW_CHECK_INT(out[2], ==, 333333334);
}

YW_TEST(split_handles_large_amounts_exactly)
{
    /* INT64_MAX = 3q + 1: products need 128 bits; q, q, q + 1, summing exactly. */
    int64_t num[3] = {1, 1, 1}, out[3];
    int64_t q = INT64_MAX / 3;
    YW_CHECK_INT(INT64_MAX % 3, ==, 1);
    YW_CHECK_INT(attr_split(INT64_MAX, num, 3, 3, out, scratch), ==, 0);
    YW_CHECK_INT(out[0], ==, q);
    YW_CHECK_INT(out[1], ==, q);
    YW_CHECK_INT(out[2], ==, q + 1);
}

YW_TEST(bad_inputs_are_refused)
{
    attr_rules_t r = rules();
    int64_t num[2] = {1, 1}, den = 2, out[2];
    YW_CHECK_INT(attr_shares(&r, ATTR_MODEL_UNSPECIFIED, T0, three, 2, num, &den), ==, -EINVAL);
    YW_CHECK_INT(attr_shares(&r, 9, T0, three, 2, num, &den), ==, -EINVAL);
    YW_CHECK_INT(attr_shares(&r, ATTR_MODEL_LINEAR, T0, three, 0, num, &den), ==, -EINVAL);
    YW_CHECK_INT(attr_split(-1, num, 2, 2, out, scratch), ==, -EINVAL);
    YW_CHECK_INT(attr_split(10, num, 0, 2, out, scratch), ==, -EINVAL);
    YW_CHECK_INT(attr_split(10, num, 3, 2, out, scratch), ==, -EINVAL); /* 1+1 != 3... */
}

YW_TEST(days_floor_before_the_epoch)
{
    YW_CHECK_INT(attr_day_of(0), ==, 0);
    YW_CHECK_INT(attr_day_of(DAY - 1), ==, 0);
    YW_CHECK_INT(attr_day_of(DAY), ==, 1);
    YW_CHECK_INT(attr_day_of(-1), ==, -1);
    YW_CHECK_INT(attr_day_of(T0 + 5), ==, 20000);
}

YW_TEST(model_names)
{
    YW_CHECK_STR(attr_model_name(ATTR_MODEL_TIME_DECAY), "ATTRIBUTION_MODEL_TIME_DECAY");
    YW_CHECK_STR(attr_model_name(42), "?");
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(defaults_are_the_issue_s),
        YW_TEST_ENTRY(click_window_edges_are_inclusive),
        YW_TEST_ENTRY(view_window_edges_are_inclusive_for_views_and_impressions),
        YW_TEST_ENTRY(short_view_counts_as_impression),
        YW_TEST_ENTRY(clicks_win_over_views_and_impressions),
        YW_TEST_ENTRY(engaged_views_win_over_impressions_and_short_views),
        YW_TEST_ENTRY(short_views_and_impressions_share_the_lowest_class),
        YW_TEST_ENTRY(no_candidate_is_unattributed),
        YW_TEST_ENTRY(equal_times_order_by_event_id),
        YW_TEST_ENTRY(last_touch_takes_all),
        YW_TEST_ENTRY(first_touch_takes_all),
        YW_TEST_ENTRY(linear_leftover_units_go_to_later_touches),
        YW_TEST_ENTRY(position_based_40_20_40),
        YW_TEST_ENTRY(position_based_one_and_two_touches),
        YW_TEST_ENTRY(time_decay_halves_per_half_life),
        YW_TEST_ENTRY(credit_in_fixed_point_sums_to_one),
        YW_TEST_ENTRY(split_handles_large_amounts_exactly),
        YW_TEST_ENTRY(bad_inputs_are_refused),
        YW_TEST_ENTRY(days_floor_before_the_epoch),
        YW_TEST_ENTRY(model_names),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
