/*
 * test_attr_ingest_conversions.c — unit tests of
 * services/attribution/attr_ingest_conversions.c through its handlers (RecordConversions,
 * IngestConversions) with fake calls (attr_handler_fixture.h): each event judged alone
 * with a reason naming its field, duplicates by order_id, a conversion credited to the
 * exposures of its viewer and product before it, stream indexes, and conversions kept
 * across a restart.
 */
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

YW_TEST(each_event_is_judged_alone_naming_its_field)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 60;
    afx_conversion_t cs[9];
    afx_conversion(&cs[0], "o0", "v", "p", 1000, t); /* ok */
    afx_conversion(&cs[1], "o0", "v", "p", 5, t);    /* duplicate: other fields differ */
    afx_conversion(&cs[2], "", "v", "p", 1000, t);
    afx_conversion(&cs[3], "o3", "", "p", 1000, t);
    afx_conversion(&cs[4], "o4", "v", "", 1000, t);
    afx_conversion(&cs[5], "o5", "v", "p", 0, t);
    afx_conversion(&cs[6], "o6", "v", "p", 10, t);
    cs[6].ev.currency = "USD";
    afx_conversion(&cs[7], "o7", "v", "p", 10, t); /* ok: the deployment's currency */
    cs[7].ev.currency = "CNY";
    afx_conversion(&cs[8], "o8", "v", "p", 10, t + 3660);
    yw_fake_call_t *fc = afx_record_conversions(cs, 9);
    const afx_summary_t *s = handler_fx_reply(fc);
    YW_CHECK_STR(afx_reason(s, 2), "order_id: is required");
    YW_CHECK_STR(afx_reason(s, 3), "viewer_id: is required");
    YW_CHECK_STR(afx_reason(s, 4), "product_id: is required");
    YW_CHECK_STR(afx_reason(s, 5), "amount_minor: must be > 0, got 0");
    YW_CHECK_STR(afx_reason(s, 6),
                 "currency: must be CNY (the deployment's) or empty, got \"USD\"");
    YW_CHECK(strncmp(afx_reason(s, 8), "occur_time: is ", 15) == 0);
    static const int64_t bad[] = {2, 3, 4, 5, 6, 8};
    afx_check_summary(fc, 2, 1, 6, bad, 6);
    afx_close();
}

YW_TEST(a_conversion_is_credited_to_the_exposures_before_it)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 3600;
    afx_exposure_t xs[4];
    afx_exposure(&xs[0], "a", "v", "A", "p", CLICK, t - 2 * DAY_S);
    afx_exposure(&xs[1], "b", "v", "B", "p", CLICK, t - DAY_S);
    afx_exposure(&xs[2], "f", "v", "F", "p", CLICK, t + 1);      /* after the order */
    afx_exposure(&xs[3], "g", "v", "G", "other", CLICK, t - 60); /* another product */
    afx_check_summary(afx_record_exposures(xs, 4), 4, 0, 0, NULL, 0);
    afx_accept_conversion("o1", "v", "p", 1001, t);
    yw_fake_call_t *fc = afx_explain("o1", DEFAULT_MODEL);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK(ex->attributed);
    YW_CHECK_INT(ex->model, ==, LAST_TOUCH);
    YW_CHECK_INT(ex->n_touches, ==, 2);
    YW_CHECK_STR(ex->touches[0]->creator_id, "A");
    YW_CHECK_STR(ex->touches[1]->creator_id, "B");
    YW_CHECK_INT(ex->touches[1]->attributed_minor, ==, 1001);
    yw_fake_call_destroy(fc);
    fc = afx_creator_report("B", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->attributed_gmv_minor, ==,
                 1001);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(a_stream_is_judged_with_stream_indexes)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 60;
    afx_conversion_t cs[3];
    afx_conversion(&cs[0], "s1", "v", "p", 700, t);
    afx_conversion(&cs[1], "s2", "v", "p", -1, t);
    afx_conversion(&cs[2], "s1", "v", "p", 700, t);
    yw_fake_call_t *fc = handler_fx_start(&afx_fx, "IngestConversions", NULL);
    for (size_t i = 0; i < 3; i++) {
        YW_CHECK_INT(yw_fake_call_send(fc, &cs[i].ev.base), ==, 0);
    }
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    handler_fx_run(fc);
    static const int64_t bad[] = {1};
    afx_check_summary(fc, 1, 1, 1, bad, 1);
    static const int64_t none[1] = {0};
    afx_check_minor("s1", DEFAULT_MODEL, none, 0); /* unattributed, but there */
    afx_close();
}

YW_TEST(conversions_are_kept_across_a_restart)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 3600;
    afx_accept_exposure("r", "v", "R", "p", CLICK, t - 60);
    afx_accept_conversion("kept", "v", "p", 321, t);
    handler_fx_reopen(&afx_fx);
    static const int64_t all[] = {321};
    afx_check_minor("kept", DEFAULT_MODEL, all, 1);
    /* And it is still a duplicate. */
    afx_conversion_t c;
    afx_conversion(&c, "kept", "v", "p", 321, t);
    afx_check_summary(afx_record_conversions(&c, 1), 0, 1, 0, NULL, 0);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(each_event_is_judged_alone_naming_its_field),
        YW_TEST_ENTRY(a_conversion_is_credited_to_the_exposures_before_it),
        YW_TEST_ENTRY(a_stream_is_judged_with_stream_indexes),
        YW_TEST_ENTRY(conversions_are_kept_across_a_restart),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
