/*
 * test_attr_ingest_exposures.c — unit tests of services/attribution/attr_ingest_exposures.c
 * through its handlers (RecordExposures, IngestExposures) with fake calls
 * (attr_handler_fixture.h): each event judged alone with a reason naming its field,
 * duplicates within and across calls, strings that are not UTF-8 rejected with their
 * event only, events past the join horizon counted, exposures counted by kind, and a late
 * exposure re-crediting an order at once.
 */
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

YW_TEST(each_event_is_judged_alone_naming_its_field)
{
    afx_open(NULL);
    int64_t now = afx_now_s();
    afx_exposure_t xs[12];
    afx_exposure(&xs[0], "e0", "v", "c", "p", IMPRESSION, now - 60); /* ok */
    afx_exposure(&xs[1], "e0", "v", "c", "p", CLICK, now - 60);      /* duplicate of 0 */
    afx_exposure(&xs[2], "", "v", "c", "p", CLICK, now - 60);
    afx_exposure(&xs[3], "e1", "", "c", "p", CLICK, now - 60);
    afx_exposure(&xs[4], "e1", "v", "", "p", CLICK, now - 60);
    afx_exposure(&xs[5], "e1", "v", "c", NULL, CLICK, now - 60);
    afx_exposure(&xs[6], "e1", "v", "c", "p", 0, now - 60);
    afx_exposure(&xs[7], "e1", "v", "c", "p", VIEW, now - 60);
    xs[7].ev.watch_ms = -5;
    afx_exposure(&xs[8], "e1", "v", "c", "p", VIEW, now + 3600);
    afx_exposure(&xs[9], "e1", "v", "c", "p", VIEW, now - 60); /* ok */
    xs[9].ev.watch_ms = 12000;
    afx_exposure(&xs[10], "e2", "v", "c", "p", CLICK, now + 200); /* ok: at most 5 min ahead */
    afx_exposure(&xs[11], "e3", "v", "c", "p", CLICK, now);
    xs[11].ev.occur_time = NULL;
    yw_fake_call_t *fc = afx_record_exposures(xs, 12);
    const afx_summary_t *s = handler_fx_reply(fc);
    YW_CHECK_STR(afx_reason(s, 2), "event_id: is required");
    YW_CHECK_STR(afx_reason(s, 3), "viewer_id: is required");
    YW_CHECK_STR(afx_reason(s, 4), "creator_id: is required");
    YW_CHECK_STR(afx_reason(s, 5), "product_ids: must not be empty");
    YW_CHECK(strncmp(afx_reason(s, 6), "kind: must be EXPOSURE_KIND_IMPRESSION", 38) == 0);
    YW_CHECK_STR(afx_reason(s, 7), "watch_ms: must be >= 0, got -5");
    YW_CHECK(strstr(afx_reason(s, 8), "in the future; at most 300 s is allowed") != NULL);
    YW_CHECK_STR(afx_reason(s, 11), "occur_time: is required");
    static const int64_t bad[] = {2, 3, 4, 5, 6, 7, 8, 11};
    afx_check_summary(fc, 3, 1, 8, bad, 8);
    /* The same batch again: every valid event is a duplicate now. */
    afx_check_summary(afx_record_exposures(xs, 12), 0, 4, 8, bad, 8);
    afx_close();
}

YW_TEST(an_event_that_is_not_utf8_is_rejected_alone)
{
    afx_open(NULL);
    afx_exposure_t xs[3];
    afx_exposure(&xs[0], "u0", "v", "c", "p", IMPRESSION, afx_now_s() - 60);
    afx_exposure(&xs[1], "u1", "v\xff", "c", "p", IMPRESSION, afx_now_s() - 60);
    afx_exposure(&xs[2], "u2", "v", "c", "p", IMPRESSION, afx_now_s() - 60);
    yw_fake_call_t *fc = afx_record_exposures(xs, 3);
    const afx_summary_t *s = handler_fx_reply(fc);
    YW_CHECK(strncmp(afx_reason(s, 1), "viewer_id: ", 11) == 0);
    YW_CHECK(strstr(afx_reason(s, 1), "UTF-8") != NULL);
    static const int64_t bad[] = {1};
    afx_check_summary(fc, 2, 0, 1, bad, 1);
    afx_close();
}

YW_TEST(exposures_past_the_join_horizon_are_taken_and_counted)
{
    afx_open(NULL);
    afx_exposure_t xs[2];
    /* The default horizon: the click window (7 d) and the late window (7 d). */
    afx_exposure(&xs[0], "old", "v", "c", "p", CLICK, afx_now_s() - 15 * DAY_S);
    afx_exposure(&xs[1], "new", "v", "c", "p", CLICK, afx_now_s() - 60);
    yw_fake_call_t *fc = afx_record_exposures(xs, 2);
    YW_CHECK_INT(((const afx_summary_t *)handler_fx_reply(fc))->past_join_horizon, ==, 1);
    afx_check_summary(fc, 2, 0, 0, NULL, 0);
    fc = afx_creator_report("c", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->clicks, ==, 2);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(a_stream_counts_exposures_by_kind)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 600;
    afx_exposure_t xs[5];
    afx_exposure(&xs[0], "k0", "v", "ck", "p", IMPRESSION, t);
    afx_exposure(&xs[1], "k1", "v", "ck", "p", IMPRESSION, t);
    afx_exposure(&xs[2], "k2", "v", "ck", "p", VIEW, t);
    afx_exposure(&xs[3], "k3", "v", "ck", "p", CLICK, t);
    afx_exposure(&xs[4], "k3", "v", "ck", "p", CLICK, t); /* a duplicate in the stream */
    yw_fake_call_t *fc = handler_fx_start(&afx_fx, "IngestExposures", NULL);
    for (size_t i = 0; i < 5; i++) {
        YW_CHECK_INT(yw_fake_call_send(fc, &xs[i].ev.base), ==, 0);
    }
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    handler_fx_run(fc);
    afx_check_summary(fc, 4, 1, 0, NULL, 0);
    fc = afx_creator_report("ck", DEFAULT_MODEL);
    const afx_creator_report_t *r = handler_fx_reply(fc);
    YW_CHECK_INT(r->impressions, ==, 2);
    YW_CHECK_INT(r->views, ==, 1);
    YW_CHECK_INT(r->clicks, ==, 1);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(a_late_exposure_re_credits_its_order_at_once)
{
    afx_open(NULL);
    int64_t t = afx_now_s() - 3600;
    afx_accept_exposure("l0", "v", "first", "p", IMPRESSION, t - 600);
    afx_accept_conversion("o1", "v", "p", 900, t);
    static const int64_t all[] = {900};
    afx_check_minor("o1", DEFAULT_MODEL, all, 1);
    /* A click of two days before the order arrives after it: clicks win. */
    afx_accept_exposure("l1", "v", "late", "p", CLICK, t - 2 * DAY_S);
    yw_fake_call_t *fc = afx_explain("o1", DEFAULT_MODEL);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK_INT(ex->n_touches, ==, 1);
    YW_CHECK_STR(ex->touches[0]->creator_id, "late");
    YW_CHECK_INT(ex->touches[0]->attributed_minor, ==, 900);
    yw_fake_call_destroy(fc);
    fc = afx_creator_report("first", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->attributed_gmv_minor, ==, 0);
    yw_fake_call_destroy(fc);
    /* One after the order changes nothing. */
    afx_accept_exposure("l2", "v", "after", "p", CLICK, t + 5);
    fc = afx_explain("o1", DEFAULT_MODEL);
    YW_CHECK_STR(((const afx_explained_t *)handler_fx_reply(fc))->touches[0]->creator_id, "late");
    yw_fake_call_destroy(fc);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(each_event_is_judged_alone_naming_its_field),
        YW_TEST_ENTRY(an_event_that_is_not_utf8_is_rejected_alone),
        YW_TEST_ENTRY(exposures_past_the_join_horizon_are_taken_and_counted),
        YW_TEST_ENTRY(a_stream_counts_exposures_by_kind),
        YW_TEST_ENTRY(a_late_exposure_re_credits_its_order_at_once),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
