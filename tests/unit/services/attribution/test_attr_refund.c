/*
 * test_attr_refund.c — unit tests of services/attribution/attr_refund.c through the
 * RecordRefunds handler with fake calls (attr_handler_fixture.h): refunds judged in order
 * (an earlier refund of the call counts against what is left), rejects from validation
 * and from the order lookup listed together in ascending order, the net amount reduced
 * in explanations and reports, and orders out of memory read back from the store.
 */
#include <stdio.h>
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

/* Order "o" of 1000, an hour ago, with no exposure. */
static void one_order(void)
{
    afx_accept_conversion("o", "v", "p", 1000, afx_now_s() - 3600);
}

YW_TEST(refunds_are_judged_in_order_against_what_is_left)
{
    afx_open(NULL);
    one_order();
    int64_t now = afx_now_s();
    afx_refund_t rs[7];
    afx_refund(&rs[0], "r1", "o", 600, now); /* ok: 400 left */
    afx_refund(&rs[1], "r2", "o", 500, now); /* more than is left */
    afx_refund(&rs[2], "r1", "o", 1, now);   /* duplicate of 0 */
    afx_refund(&rs[3], "r3", "ghost", 1, now);
    afx_refund(&rs[4], "r3", "o", 0, now);
    afx_refund(&rs[5], "", "o", 1, now);
    afx_refund(&rs[6], "r3", "o", 400, now); /* ok: exactly what is left */
    yw_fake_call_t *fc = afx_record_refunds(rs, 7);
    const afx_summary_t *s = handler_fx_reply(fc);
    YW_CHECK_STR(afx_reason(s, 1),
                 "amount_minor: 500 is more than what is left of order \"o\" (400)");
    YW_CHECK_STR(afx_reason(s, 3), "order_id: no conversion has order_id \"ghost\"");
    YW_CHECK_STR(afx_reason(s, 4), "amount_minor: must be > 0, got 0");
    YW_CHECK_STR(afx_reason(s, 5), "refund_id: is required");
    static const int64_t bad[] = {1, 3, 4, 5};
    afx_check_summary(fc, 2, 1, 4, bad, 4);
    /* Nothing is left: another refund is rejected. */
    afx_refund_t more;
    afx_refund(&more, "r4", "o", 1, now);
    static const int64_t first[] = {0};
    afx_check_summary(afx_record_refunds(&more, 1), 0, 0, 1, first, 1);
    afx_close();
}

YW_TEST(rejects_of_validation_and_of_the_lookup_ascend_together)
{
    afx_open(NULL);
    one_order();
    int64_t now = afx_now_s();
    afx_refund_t rs[5];
    afx_refund(&rs[0], "a", "ghost", 10, now); /* after the lookup */
    afx_refund(&rs[1], "b", "o", 0, now);      /* validation */
    afx_refund(&rs[2], "c", "o", 5000, now);   /* after the lookup */
    afx_refund(&rs[3], "", "o", 10, now);      /* validation */
    afx_refund(&rs[4], "e", "ghost", 10, now); /* after the lookup */
    yw_fake_call_t *fc = afx_record_refunds(rs, 5);
    YW_CHECK(strstr(afx_reason(handler_fx_reply(fc), 2), "(1000)") != NULL);
    static const int64_t all[] = {0, 1, 2, 3, 4};
    afx_check_summary(fc, 0, 0, 5, all, 5);
    afx_close();
}

YW_TEST(a_refund_reduces_the_net_in_explanations_and_reports)
{
    afx_open(NULL);
    afx_seed_three_clicks("o3", afx_now_s() - 3600);
    afx_refund_t r;
    afx_refund(&r, "r", "o3", 301, afx_now_s());
    afx_check_summary(afx_record_refunds(&r, 1), 1, 0, 0, NULL, 0);
    yw_fake_call_t *fc = afx_explain("o3", LINEAR);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK_INT(ex->amount_minor, ==, 700);
    YW_CHECK_INT(ex->gross_amount_minor, ==, 1001);
    YW_CHECK_INT(ex->refunded_minor, ==, 301);
    yw_fake_call_destroy(fc);
    static const int64_t thirds[] = {233, 233, 234};
    afx_check_minor("o3", LINEAR, thirds, 3);
    fc = afx_creator_report("C", DEFAULT_MODEL);
    const afx_creator_report_t *rep = handler_fx_reply(fc);
    YW_CHECK_INT(rep->attributed_gmv_minor, ==, 700);
    YW_CHECK(rep->attributed_conversions == 1.0); /* credits do not shrink with money */
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(orders_out_of_memory_are_read_back_to_be_refunded)
{
    /* No conversion cache: every order leaves memory once it is stored. */
    const char *flags[] = {"--conversion-cache-mb=0", NULL};
    afx_open(flags);
    one_order();
    handler_fx_reopen(&afx_fx);
    int64_t now = afx_now_s();
    afx_refund_t rs[3];
    afx_refund(&rs[0], "r1", "o", 900, now);
    afx_refund(&rs[1], "r2", "o", 101, now); /* more than the 100 left */
    afx_refund(&rs[2], "r3", "o", 100, now);
    static const int64_t bad[] = {1};
    afx_check_summary(afx_record_refunds(rs, 3), 2, 0, 1, bad, 1);
    /* The refund ids are stored: sent again, they are duplicates. */
    afx_check_summary(afx_record_refunds(rs, 1), 0, 1, 0, NULL, 0);
    yw_fake_call_t *fc = afx_explain("o", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_explained_t *)handler_fx_reply(fc))->refunded_minor, ==, 1000);
    yw_fake_call_destroy(fc);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(refunds_are_judged_in_order_against_what_is_left),
        YW_TEST_ENTRY(rejects_of_validation_and_of_the_lookup_ascend_together),
        YW_TEST_ENTRY(a_refund_reduces_the_net_in_explanations_and_reports),
        YW_TEST_ENTRY(orders_out_of_memory_are_read_back_to_be_refunded),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
