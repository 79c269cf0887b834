/*
 * test_attr_report.c — unit tests of services/attribution/attr_report.c through its
 * handlers (GetCreatorReport, GetTierReport, ListTopCreators) with fake calls
 * (attr_handler_fixture.h): a creator's sums and rates over a range, the rules of ranges
 * and models, a tier report that says tier scoring could not label anybody, and top
 * creators paged by GMV with tokens bound to their query.
 */
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

typedef Yaowei__Attribution__V1__GetCreatorReportRequest creator_req_t;
typedef Yaowei__Attribution__V1__ListTopCreatorsRequest top_req_t;
typedef Yaowei__Attribution__V1__ListTopCreatorsResponse top_resp_t;

/* Creator "c": four impressions and a click, then an order of 2000. */
static void seed_one_creator(void)
{
    int64_t t = afx_now_s() - 3600;
    afx_exposure_t xs[5];
    static const char *const ids[] = {"i0", "i1", "i2", "i3", "k"};
    for (size_t i = 0; i < 4; i++) {
        afx_exposure(&xs[i], ids[i], "v", "c", "p", IMPRESSION, t - 100 - (int64_t)i);
    }
    afx_exposure(&xs[4], ids[4], "v", "c", "p", CLICK, t - 50);
    afx_check_summary(afx_record_exposures(xs, 5), 5, 0, 0, NULL, 0);
    afx_accept_conversion("o", "v", "p", 2000, t);
}

YW_TEST(a_creator_report_sums_the_range)
{
    afx_open(NULL);
    seed_one_creator();
    yw_fake_call_t *fc = afx_creator_report("c", DEFAULT_MODEL);
    const afx_creator_report_t *r = handler_fx_reply(fc);
    YW_CHECK_STR(r->creator_id, "c");
    YW_CHECK_INT(r->model, ==, LAST_TOUCH);
    YW_CHECK_INT(r->impressions, ==, 4);
    YW_CHECK_INT(r->clicks, ==, 1);
    YW_CHECK(r->attributed_conversions == 1.0);
    YW_CHECK_INT(r->attributed_gmv_minor, ==, 2000);
    YW_CHECK(r->gpm == 2000.0 * 1000.0 / 4.0);
    YW_CHECK(r->conversion_rate == 0.25);
    YW_CHECK_STR(r->currency, "CNY");
    yw_fake_call_destroy(fc);
    /* A range of later days holds none of it. */
    Google__Protobuf__Timestamp start, end;
    afx_range(&start, &end, afx_today_s() + DAY_S, afx_today_s() + 2 * DAY_S);
    creator_req_t req = YAOWEI__ATTRIBUTION__V1__GET_CREATOR_REPORT_REQUEST__INIT;
    req.creator_id = "c";
    req.start_time = &start;
    req.end_time = &end;
    fc = handler_fx_call(&afx_fx, "GetCreatorReport", &req.base);
    r = handler_fx_reply(fc);
    YW_CHECK_INT(r->impressions, ==, 0);
    YW_CHECK_INT(r->attributed_gmv_minor, ==, 0);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(ranges_models_and_ids_are_checked)
{
    afx_open(NULL);
    int64_t today = afx_today_s();
    Google__Protobuf__Timestamp start, end;
    creator_req_t req = YAOWEI__ATTRIBUTION__V1__GET_CREATOR_REPORT_REQUEST__INIT;
    req.creator_id = "c";
    req.start_time = &start;
    req.end_time = &end;
    afx_range(&start, &end, today + 5, today + DAY_S);
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "start_time: must be at 00:00:00 UTC");
    afx_range(&start, &end, today, today);
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "end_time: must be after start_time");
    afx_range(&start, &end, today - 500 * DAY_S, today);
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "end_time: the range is 500 days; at most 400");
    req.end_time = NULL;
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "end_time: is required");
    afx_range(&start, &end, today, today + DAY_S);
    req.end_time = &end;
    req.model = 9;
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "model: not an AttributionModel value: 9");
    req.model = DEFAULT_MODEL;
    req.creator_id = "";
    handler_fx_fails(&afx_fx, "GetCreatorReport", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "creator_id: is required");
    afx_close();
}

YW_TEST(a_tier_report_without_tier_scoring_says_so)
{
    afx_open(NULL);
    seed_one_creator();
    afx_accept_conversion("alone", "nobody", "p", 4242, afx_now_s() - 3600);
    Google__Protobuf__Timestamp start, end;
    afx_range(&start, &end, afx_today_s() - 20 * DAY_S, afx_today_s() + DAY_S);
    Yaowei__Attribution__V1__GetTierReportRequest req =
        YAOWEI__ATTRIBUTION__V1__GET_TIER_REPORT_REQUEST__INIT;
    req.start_time = &start;
    req.end_time = &end;
    yw_fake_call_t *fc = handler_fx_call(&afx_fx, "GetTierReport", &req.base);
    const Yaowei__Attribution__V1__TierReport *r = handler_fx_reply(fc);
    /* Every creator unlabelled: one row, TIER_UNSPECIFIED, with everything in it. */
    YW_CHECK_INT(r->n_rows, ==, 1);
    YW_CHECK_INT(r->rows[0]->tier, ==, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
    YW_CHECK_INT(r->rows[0]->creators, ==, 1);
    YW_CHECK_INT(r->unlabeled_creators, ==, 1);
    YW_CHECK_INT(r->rows[0]->impressions, ==, 4);
    YW_CHECK(r->rows[0]->impression_share == 1.0);
    YW_CHECK_INT(r->rows[0]->attributed_gmv_minor, ==, 2000);
    YW_CHECK_INT(r->unattributed_conversions, ==, 1);
    YW_CHECK_INT(r->unattributed_gmv_minor, ==, 4242);
    YW_CHECK(strstr(r->tier_labels_error, "tier scoring") != NULL);
    yw_fake_call_destroy(fc);
    afx_close();
}

/* Creators t1..t3 with one click each and orders of 1000, 3000, 2000. */
static void seed_three_creators(void)
{
    int64_t t = afx_now_s() - 3600;
    static const char *const creators[] = {"t1", "t2", "t3"};
    static const char *const products[] = {"p1", "p2", "p3"};
    static const char *const orders[] = {"o1", "o2", "o3"};
    static const int64_t amounts[] = {1000, 3000, 2000};
    for (size_t i = 0; i < 3; i++) {
        afx_accept_exposure(creators[i], "v", creators[i], products[i], CLICK, t - 100);
        afx_accept_conversion(orders[i], "v", products[i], amounts[i], t);
    }
}

static yw_fake_call_t *top_call(top_req_t *req, Google__Protobuf__Timestamp *start,
                                Google__Protobuf__Timestamp *end, int64_t from_s)
{
    afx_range(start, end, from_s, afx_today_s() + DAY_S);
    req->start_time = start;
    req->end_time = end;
    return handler_fx_call(&afx_fx, "ListTopCreators", &req->base);
}

YW_TEST(top_creators_page_by_gmv_with_tokens_bound_to_their_query)
{
    afx_open(NULL);
    seed_three_creators();
    int64_t from = afx_today_s() - 20 * DAY_S;
    Google__Protobuf__Timestamp start, end;
    top_req_t req = YAOWEI__ATTRIBUTION__V1__LIST_TOP_CREATORS_REQUEST__INIT;
    req.page_size = 2;
    yw_fake_call_t *first = top_call(&req, &start, &end, from);
    const top_resp_t *a = handler_fx_reply(first);
    YW_CHECK_INT(a->n_creators, ==, 2);
    YW_CHECK_STR(a->creators[0]->creator_id, "t2");
    YW_CHECK_INT(a->creators[0]->attributed_gmv_minor, ==, 3000);
    YW_CHECK_STR(a->creators[1]->creator_id, "t3");
    YW_CHECK(a->next_page_token[0] != '\0');
    YW_CHECK(strstr(a->tier_labels_error, "tier scoring") != NULL);
    req.page_token = a->next_page_token;
    yw_fake_call_t *second = top_call(&req, &start, &end, from);
    const top_resp_t *b = handler_fx_reply(second);
    YW_CHECK_INT(b->n_creators, ==, 1);
    YW_CHECK_STR(b->creators[0]->creator_id, "t1");
    YW_CHECK_STR(b->next_page_token, "");
    yw_fake_call_destroy(second);
    /* The token with another range is refused. */
    handler_fx_expect_fail(top_call(&req, &start, &end, from + DAY_S), GRPC_STATUS_INVALID_ARGUMENT,
                           "page_token:");
    yw_fake_call_destroy(first);
    req.page_token = "";
    req.page_size = -1;
    handler_fx_expect_fail(top_call(&req, &start, &end, from), GRPC_STATUS_INVALID_ARGUMENT,
                           "page_size: must be >= 0, got -1");
    req.page_size = 0;
    Yaowei__Tier__V1__Tier tiers[] = {(Yaowei__Tier__V1__Tier)9};
    req.tiers = tiers;
    req.n_tiers = 1;
    handler_fx_expect_fail(top_call(&req, &start, &end, from), GRPC_STATUS_INVALID_ARGUMENT,
                           "tiers[0]: not a Tier value: 9");
    req.n_tiers = 0;
    req.order_by = (Yaowei__Attribution__V1__TopCreatorsOrder)7;
    handler_fx_expect_fail(top_call(&req, &start, &end, from), GRPC_STATUS_INVALID_ARGUMENT,
                           "order_by: not a TopCreatorsOrder value: 7");
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_creator_report_sums_the_range),
        YW_TEST_ENTRY(ranges_models_and_ids_are_checked),
        YW_TEST_ENTRY(a_tier_report_without_tier_scoring_says_so),
        YW_TEST_ENTRY(top_creators_page_by_gmv_with_tokens_bound_to_their_query),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
