/*
 * test_attr_ingest.c — unit tests of services/attribution/attr_ingest.c, one ingestion
 * call, through the handlers with fake calls (attr_handler_fixture.h): the size limit of
 * a Record call, rejects listed in ascending index order (the lowest ATTR_ERRORS_MAX when
 * there are more), one summary per client stream at its end with stream indexes, flow
 * control over a stream longer than the frames in flight, and no summary for a stream
 * the client cancelled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

/* `n` distinct impressions of one viewer, creator and product, a minute ago. */
static afx_exposure_t *impressions(size_t n, char (*ids)[32])
{
    afx_exposure_t *xs = calloc(n, sizeof *xs);
    YW_CHECK(xs != NULL);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "e%zu", i);
        afx_exposure(&xs[i], ids[i], "v1", "c1", "p1", IMPRESSION, afx_now_s() - 60);
    }
    return xs;
}

YW_TEST(a_record_call_of_more_than_the_limit_is_refused_whole)
{
    afx_open(NULL);
    size_t n = ATTR_BATCH_MAX + 1;
    char(*ids)[32] = calloc(n, sizeof *ids);
    afx_exposure_t *xs = impressions(n, ids);
    char want[64];
    snprintf(want, sizeof want, "events: at most %d per call, got %zu", ATTR_BATCH_MAX, n);
    handler_fx_expect_fail(afx_record_exposures(xs, n), GRPC_STATUS_INVALID_ARGUMENT, want);
    /* Nothing of it was taken. */
    yw_fake_call_t *fc = afx_creator_report("c1", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->impressions, ==, 0);
    yw_fake_call_destroy(fc);
    free(xs);
    free(ids);
    afx_close();
}

YW_TEST(rejects_are_listed_in_ascending_order_past_duplicates)
{
    afx_open(NULL);
    char ids[12][32];
    afx_exposure_t *xs = impressions(12, ids);
    yw_fake_call_destroy(afx_record_exposures(xs, 4)); /* 0..3 stored */
    /* Again, with 1, 5, 7 and 10 broken: 0, 2 and 3 are duplicates now. */
    static const int64_t bad[] = {1, 5, 7, 10};
    for (size_t i = 0; i < 4; i++) {
        xs[bad[i]].ev.n_product_ids = 0;
    }
    yw_fake_call_t *fc = afx_record_exposures(xs, 12);
    const afx_summary_t *s = handler_fx_reply(fc);
    YW_CHECK_STR(afx_reason(s, 5), "product_ids: must not be empty");
    afx_check_summary(fc, 5, 3, 4, bad, 4);
    free(xs);
    afx_close();
}

YW_TEST(more_rejects_than_the_list_holds_list_the_lowest)
{
    afx_open(NULL);
    size_t n = 250;
    char(*ids)[32] = calloc(n, sizeof *ids);
    afx_exposure_t *xs = impressions(n, ids);
    for (size_t i = 0; i < n; i++) {
        xs[i].ev.viewer_id = "";
    }
    int64_t lowest[ATTR_ERRORS_MAX];
    for (size_t i = 0; i < ATTR_ERRORS_MAX; i++) {
        lowest[i] = (int64_t)i;
    }
    afx_check_summary(afx_record_exposures(xs, n), 0, 0, (int64_t)n, lowest, ATTR_ERRORS_MAX);
    free(xs);
    free(ids);
    afx_close();
}

YW_TEST(an_empty_stream_gets_an_empty_summary)
{
    afx_open(NULL);
    yw_fake_call_t *fc = handler_fx_start(&afx_fx, "IngestConversions", NULL);
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    handler_fx_run(fc);
    afx_check_summary(fc, 0, 0, 0, NULL, 0);
    afx_close();
}

YW_TEST(a_stream_longer_than_its_frames_in_flight_is_read_whole)
{
    afx_open(NULL);
    /* Over four frames of ATTR_FRAME_EVENTS: the stream pauses and resumes on the way. */
    size_t n = 9000;
    char(*ids)[32] = calloc(n, sizeof *ids);
    afx_exposure_t *xs = impressions(n, ids);
    xs[4321].ev.n_product_ids = 0;
    memcpy(ids[7000], ids[6999], sizeof ids[7000]); /* a duplicate of the one before */
    yw_fake_call_t *fc = handler_fx_start(&afx_fx, "IngestExposures", NULL);
    for (size_t i = 0; i < n; i++) {
        YW_CHECK_INT(yw_fake_call_send(fc, &xs[i].ev.base), ==, 0);
    }
    YW_CHECK_INT(yw_fake_call_close_send(fc), ==, 0);
    handler_fx_run(fc);
    YW_CHECK_INT(yw_fake_call_n_read(fc), ==, n);
    static const int64_t bad[] = {4321};
    afx_check_summary(fc, (int64_t)n - 2, 1, 1, bad, 1);
    fc = afx_creator_report("c1", DEFAULT_MODEL);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->impressions, ==, n - 2);
    yw_fake_call_destroy(fc);
    free(xs);
    free(ids);
    afx_close();
}

static int read_two(yw_fake_call_t *fc, void *arg)
{
    (void)arg;
    return yw_fake_call_n_read(fc) >= 2;
}

YW_TEST(a_cancelled_stream_gets_no_summary)
{
    afx_open(NULL);
    char ids[2][32];
    afx_exposure_t *xs = impressions(2, ids);
    yw_fake_call_t *fc = handler_fx_start(&afx_fx, "IngestExposures", NULL);
    YW_CHECK_INT(yw_fake_call_send(fc, &xs[0].ev.base), ==, 0);
    YW_CHECK_INT(yw_fake_call_send(fc, &xs[1].ev.base), ==, 0);
    YW_CHECK_INT(yw_fake_call_run_until(fc, read_two, NULL), ==, 0);
    yw_fake_call_cancel(fc);
    handler_fx_run(fc);
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, GRPC_STATUS_CANCELLED);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 0);
    yw_fake_call_destroy(fc);
    free(xs);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_record_call_of_more_than_the_limit_is_refused_whole),
        YW_TEST_ENTRY(rejects_are_listed_in_ascending_order_past_duplicates),
        YW_TEST_ENTRY(more_rejects_than_the_list_holds_list_the_lowest),
        YW_TEST_ENTRY(an_empty_stream_gets_an_empty_summary),
        YW_TEST_ENTRY(a_stream_longer_than_its_frames_in_flight_is_read_whole),
        YW_TEST_ENTRY(a_cancelled_stream_gets_no_summary),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
