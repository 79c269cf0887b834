/*
 * test_attr_state.c — unit tests of services/attribution/attr_state.c: the default
 * settings and their horizon, the rules they give, and the memory of a state counted by
 * part (each part of attr_state_mem_t grows with what that part holds, and nothing is
 * left after attr_state_free()). The parts have their own tests (test_attr_exposures.c,
 * test_attr_orders.c, test_attr_rollups.c).
 */
#include "services/attribution/attr_state.h"

#include "tests/unit/services/attribution/attr_state_fixture.h"
#include "tests/unit/test.h"

YW_TEST(default_settings_and_their_horizon)
{
    attr_settings_t s;
    attr_settings_default(&s);
    YW_CHECK_INT(s.click_window_ns, ==, 7 * D_);
    YW_CHECK_INT(s.view_window_ns, ==, D_);
    YW_CHECK_INT(s.late_window_ns, ==, 7 * D_);
    YW_CHECK_INT(s.default_model, ==, ATTR_MODEL_LAST_TOUCH);
    YW_CHECK_STR(s.currency, "CNY");
    YW_CHECK_INT(s.version, ==, 0);
    /* max(7 d, 1 d) + 7 d */
    YW_CHECK_INT(attr_settings_horizon(&s), ==, 14 * D_);
    s.view_window_ns = 10 * D_;
    YW_CHECK_INT(attr_settings_horizon(&s), ==, 17 * D_);
    attr_rules_t r;
    attr_settings_rules(&s, &r);
    YW_CHECK_INT(r.click_window_ns, ==, 7 * D_);
    YW_CHECK_INT(r.view_window_ns, ==, 10 * D_);
    YW_CHECK_INT(r.half_life_ns, ==, s.half_life_ns);
    YW_CHECK_INT(r.engaged_view_ms, ==, s.engaged_view_ms);

    attr_state_t st;
    YW_CHECK_INT(attr_state_init(&st), ==, 0);
    YW_CHECK_INT(st.settings.click_window_ns, ==, 7 * D_);
    YW_CHECK_INT(st.rules.view_window_ns, ==, D_);
    attr_state_free(&st);
}

YW_TEST(memory_is_counted_by_part)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_state_mem_t m0;
    attr_state_mem(&st, &m0);
    YW_CHECK_INT(m0.conversions, ==, 0);
    YW_CHECK_INT(m0.runs, ==, 0);
    YW_CHECK_INT(m0.bloom, ==, 0);

    fx_expose(&st, "e1", "v", "alice", "p", ATTR_KIND_CLICK, 0, T0 - H_, T0);
    attr_state_mem_t m1;
    attr_state_mem(&st, &m1);
    YW_CHECK(m1.runs > 0);     /* the open run */
    YW_CHECK(m1.rollups > 0);  /* alice's day */
    YW_CHECK(m1.creators > 0); /* alice interned */
    YW_CHECK_INT(m1.conversions, ==, 0);

    (void)fx_convert(&st, "o1", "v", "p", 100, T0, T0);
    attr_state_mem_t m2;
    attr_state_mem(&st, &m2);
    YW_CHECK_INT(m2.conversions, ==, st.cache_bytes);
    YW_CHECK(m2.conversions > 0);
    YW_CHECK(m2.conv_index > 0);
    YW_CHECK(m2.conv_filter > 0); /* within the horizon: its key is in the filter */
    YW_CHECK_INT(m2.runs, ==, m1.runs);

    uint64_t h = yw_hash_u64(1);
    YW_CHECK_INT(attr_state_index_add(&st, &h, 1, 1), ==, 0);
    attr_state_mem_t m3;
    attr_state_mem(&st, &m3);
    YW_CHECK_INT(m3.bloom, ==, attr_state_bloom_bytes(&st));
    YW_CHECK(m3.bloom > 0);

    attr_state_free(&st);
    attr_state_mem(&st, &m0);
    YW_CHECK_INT(m0.rollups + m0.creators + m0.conversions + m0.conv_index + m0.conv_filter +
                     m0.refunds + m0.pending + m0.runs + m0.bloom + m0.work,
                 ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(default_settings_and_their_horizon),
        YW_TEST_ENTRY(memory_is_counted_by_part),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
