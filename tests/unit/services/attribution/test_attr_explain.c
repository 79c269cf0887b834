/*
 * test_attr_explain.c — unit tests of services/attribution/attr_explain.c through the
 * ExplainConversion handler with fake calls (attr_handler_fixture.h): the credit of
 * three clicks under each model (hand-computed, as in attribution.proto), the request's
 * rules, an unattributed order, and orders out of memory read from the store (alone and
 * several together) with the same answer.
 */
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

/* The three clicks of afx_seed_three_clicks() under each model. */
static void check_models(const char *order)
{
    yw_fake_call_t *fc = afx_explain(order, DEFAULT_MODEL);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK_INT(ex->model, ==, LAST_TOUCH); /* the settings' default */
    YW_CHECK(ex->attributed);
    YW_CHECK_INT(ex->amount_minor, ==, 1001);
    YW_CHECK_STR(ex->currency, "CNY");
    YW_CHECK_STR(ex->viewer_id, "v");
    YW_CHECK_INT(ex->n_touches, ==, 3);
    static const char *const creators[] = {"A", "B", "C"};
    for (size_t i = 0; i < 3; i++) {
        YW_CHECK_STR(ex->touches[i]->creator_id, creators[i]);
        YW_CHECK_INT(ex->touches[i]->kind, ==, CLICK);
    }
    YW_CHECK(ex->touches[2]->credit == 1.0);
    yw_fake_call_destroy(fc);
    static const int64_t last[] = {0, 0, 1001}, first[] = {1001, 0, 0};
    /* 1001 / 3 each: 333 x 3 and the two units left to the later touches. */
    static const int64_t linear[] = {333, 334, 334};
    /* 40 / 20 / 40 %: 400.4, 200.2, 400.4, the unit left to the later of the tie. */
    static const int64_t position[] = {400, 200, 401};
    /* Half-life 7 d, weights 2^(-3/7), 2^(-2/7), 2^(-1/7): 301.22, 332.58, 367.20. */
    static const int64_t decay[] = {301, 333, 367};
    afx_check_minor(order, LAST_TOUCH, last, 3);
    afx_check_minor(order, FIRST_TOUCH, first, 3);
    afx_check_minor(order, LINEAR, linear, 3);
    afx_check_minor(order, POSITION_BASED, position, 3);
    afx_check_minor(order, TIME_DECAY, decay, 3);
}

YW_TEST(three_clicks_are_credited_as_each_model_says)
{
    afx_open(NULL);
    afx_seed_three_clicks("o", afx_now_s() - 3600);
    check_models("o");
    afx_close();
}

YW_TEST(the_request_is_checked_and_an_unknown_order_is_not_found)
{
    afx_open(NULL);
    afx_seed_three_clicks("o", afx_now_s() - 3600);
    handler_fx_expect_fail(afx_explain("", DEFAULT_MODEL), GRPC_STATUS_INVALID_ARGUMENT,
                           "order_id: is required");
    handler_fx_expect_fail(afx_explain("o", 9), GRPC_STATUS_INVALID_ARGUMENT,
                           "model: not an AttributionModel value: 9");
    handler_fx_expect_fail(afx_explain("nope", DEFAULT_MODEL), GRPC_STATUS_NOT_FOUND,
                           "order_id: no conversion has order_id \"nope\"");
    afx_close();
}

YW_TEST(an_order_without_exposures_is_explained_unattributed)
{
    afx_open(NULL);
    afx_accept_conversion("alone", "v", "p", 4242, afx_now_s() - 3600);
    yw_fake_call_t *fc = afx_explain("alone", DEFAULT_MODEL);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK(!ex->attributed);
    YW_CHECK_INT(ex->n_touches, ==, 0);
    YW_CHECK_INT(ex->amount_minor, ==, 4242);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(orders_out_of_memory_are_read_and_explained_the_same)
{
    const char *flags[] = {"--conversion-cache-mb=0", NULL};
    afx_open(flags);
    afx_seed_three_clicks("o", afx_now_s() - 3600);
    handler_fx_reopen(&afx_fx);
    check_models("o");
    /* Several calls at once share reads; each gets its own answer. */
    yw_fake_call_t *fcs[6];
    static const char *const orders[] = {"o", "nope", "o", "o", "nope", "o"};
    for (size_t i = 0; i < 6; i++) {
        Yaowei__Attribution__V1__ExplainConversionRequest req =
            YAOWEI__ATTRIBUTION__V1__EXPLAIN_CONVERSION_REQUEST__INIT;
        req.order_id = (char *)orders[i];
        req.model = FIRST_TOUCH;
        fcs[i] = handler_fx_start(&afx_fx, "ExplainConversion", &req.base);
    }
    for (size_t i = 0; i < 6; i++) {
        handler_fx_run(fcs[i]);
        if (strcmp(orders[i], "nope") == 0) {
            handler_fx_expect_fail(fcs[i], GRPC_STATUS_NOT_FOUND, "order_id: no conversion");
            continue;
        }
        const afx_explained_t *ex = handler_fx_reply(fcs[i]);
        YW_CHECK_INT(ex->touches[0]->attributed_minor, ==, 1001);
        yw_fake_call_destroy(fcs[i]);
    }
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(three_clicks_are_credited_as_each_model_says),
        YW_TEST_ENTRY(the_request_is_checked_and_an_unknown_order_is_not_found),
        YW_TEST_ENTRY(an_order_without_exposures_is_explained_unattributed),
        YW_TEST_ENTRY(orders_out_of_memory_are_read_and_explained_the_same),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
