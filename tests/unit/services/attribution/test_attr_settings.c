/*
 * test_attr_settings.c — unit tests of services/attribution/attr_settings.c through its
 * handlers (GetAttributionSettings, UpdateAttributionSettings) with fake calls
 * (attr_handler_fixture.h): the defaults, an update refused naming its field, an update
 * that restates every conversion and persists, the currency frozen once conversions are
 * stored, and one update at a time.
 */
#include <string.h>

#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

typedef Yaowei__Attribution__V1__AttributionSettings settings_t;
typedef Yaowei__Attribution__V1__UpdateAttributionSettingsRequest update_t;

static yw_fake_call_t *get_settings(void)
{
    Yaowei__Attribution__V1__GetAttributionSettingsRequest req =
        YAOWEI__ATTRIBUTION__V1__GET_ATTRIBUTION_SETTINGS_REQUEST__INIT;
    return handler_fx_call(&afx_fx, "GetAttributionSettings", &req.base);
}

static int64_t settings_version(void)
{
    yw_fake_call_t *fc = get_settings();
    int64_t v = ((const settings_t *)handler_fx_reply(fc))->version;
    yw_fake_call_destroy(fc);
    return v;
}

/* An update of the click window alone (no mask: the fields set), to `seconds`. */
static void click_window(update_t *req, settings_t *s, Google__Protobuf__Duration *d,
                         int64_t seconds)
{
    yaowei__attribution__v1__update_attribution_settings_request__init(req);
    yaowei__attribution__v1__attribution_settings__init(s);
    google__protobuf__duration__init(d);
    d->seconds = seconds;
    s->click_window = d;
    req->settings = s;
}

YW_TEST(the_settings_start_as_the_defaults)
{
    afx_open(NULL);
    yw_fake_call_t *fc = get_settings();
    const settings_t *s = handler_fx_reply(fc);
    YW_CHECK_INT(s->click_window->seconds, ==, 7 * DAY_S);
    YW_CHECK_INT(s->view_window->seconds, ==, DAY_S);
    YW_CHECK_INT(s->time_decay_half_life->seconds, ==, 7 * DAY_S);
    YW_CHECK_INT(s->late_window->seconds, ==, 7 * DAY_S);
    YW_CHECK_INT(s->engaged_view_ms, ==, 10000);
    YW_CHECK_INT(s->default_model, ==, LAST_TOUCH);
    YW_CHECK_STR(s->currency, "CNY");
    YW_CHECK_INT(s->version, ==, 1);
    yw_fake_call_destroy(fc);
    afx_close();
}

YW_TEST(an_update_names_the_field_it_refuses_and_changes_nothing)
{
    afx_open(NULL);
    update_t req;
    settings_t s;
    Google__Protobuf__Duration d;
    click_window(&req, &s, &d, 0);
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "settings.click_window: must be within [1s, 7776000s], got 0.000s");
    char *paths[] = {"clickWindow"};
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    mask.paths = paths;
    mask.n_paths = 1;
    req.update_mask = &mask;
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "update_mask.paths[0]: unknown field \"clickWindow\"");
    click_window(&req, &s, &d, DAY_S);
    s.default_model = 9;
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "settings.default_model: must be one of");
    s.default_model = DEFAULT_MODEL;
    s.currency = "cny";
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "settings.currency: must be an ISO 4217 code (3 capital letters)");
    req.settings = NULL;
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "settings: is required");
    YW_CHECK_INT(settings_version(), ==, 1);
    afx_close();
}

YW_TEST(an_update_restates_every_conversion_and_persists)
{
    afx_open(NULL);
    afx_seed_three_clicks("o", afx_now_s() - 3600);
    static const int64_t a_first[] = {1001, 0, 0};
    afx_check_minor("o", FIRST_TOUCH, a_first, 3);
    /* Clicks count two days only: A (3 d) falls out, B (exactly 2 d) stays. */
    update_t req;
    settings_t s;
    Google__Protobuf__Duration d;
    click_window(&req, &s, &d, 2 * DAY_S);
    yw_fake_call_t *fc = handler_fx_call(&afx_fx, "UpdateAttributionSettings", &req.base);
    const settings_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->version, ==, 2);
    YW_CHECK_INT(got->click_window->seconds, ==, 2 * DAY_S);
    YW_CHECK_INT(got->view_window->seconds, ==, DAY_S); /* not set: unchanged */
    yw_fake_call_destroy(fc);
    fc = afx_explain("o", FIRST_TOUCH);
    const afx_explained_t *ex = handler_fx_reply(fc);
    YW_CHECK_INT(ex->n_touches, ==, 2);
    YW_CHECK_STR(ex->touches[0]->creator_id, "B");
    YW_CHECK_INT(ex->touches[0]->attributed_minor, ==, 1001);
    YW_CHECK_INT(ex->settings_version, ==, 2);
    yw_fake_call_destroy(fc);
    fc = afx_creator_report("A", FIRST_TOUCH);
    YW_CHECK_INT(((const afx_creator_report_t *)handler_fx_reply(fc))->attributed_gmv_minor, ==, 0);
    yw_fake_call_destroy(fc);
    handler_fx_reopen(&afx_fx);
    YW_CHECK_INT(settings_version(), ==, 2);
    static const int64_t b_first[] = {1001, 0};
    afx_check_minor("o", FIRST_TOUCH, b_first, 2);
    afx_close();
}

YW_TEST(the_currency_cannot_change_once_conversions_are_stored)
{
    afx_open(NULL);
    update_t req = YAOWEI__ATTRIBUTION__V1__UPDATE_ATTRIBUTION_SETTINGS_REQUEST__INIT;
    settings_t s = YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_SETTINGS__INIT;
    s.currency = "USD";
    req.settings = &s;
    yw_fake_call_t *fc = handler_fx_call(&afx_fx, "UpdateAttributionSettings", &req.base);
    YW_CHECK_STR(((const settings_t *)handler_fx_reply(fc))->currency, "USD");
    yw_fake_call_destroy(fc);
    afx_accept_conversion("o", "v", "p", 10, afx_now_s() - 60);
    s.currency = "CNY";
    handler_fx_fails(&afx_fx, "UpdateAttributionSettings", &req.base,
                     GRPC_STATUS_FAILED_PRECONDITION,
                     "settings.currency: cannot change from USD while conversions are stored");
    afx_close();
}

YW_TEST(a_second_update_while_one_is_written_is_aborted)
{
    afx_open(NULL);
    update_t req;
    settings_t s;
    Google__Protobuf__Duration d;
    click_window(&req, &s, &d, 3 * DAY_S);
    /* Both arrive in one turn of the loop, before the first one's write is done. */
    yw_fake_call_t *first = handler_fx_start(&afx_fx, "UpdateAttributionSettings", &req.base);
    yw_fake_call_t *second = handler_fx_start(&afx_fx, "UpdateAttributionSettings", &req.base);
    handler_fx_run(first);
    handler_fx_run(second);
    YW_CHECK_INT(((const settings_t *)handler_fx_reply(first))->version, ==, 2);
    yw_fake_call_destroy(first);
    handler_fx_expect_fail(second, GRPC_STATUS_ABORTED,
                           "settings: another update is being written; retry");
    YW_CHECK_INT(settings_version(), ==, 2);
    afx_close();
}

/* What a cluster's front sends a partition: the version to set, once (attr_front_settings.c). */
YW_TEST(a_forwarded_update_sets_the_version_and_time_it_names_once)
{
    afx_open(NULL);
    update_t req;
    settings_t s;
    Google__Protobuf__Duration d;
    click_window(&req, &s, &d, 3 * DAY_S);
    const char *const first[] = {"yw-partition",
                                 "0",
                                 "yw-settings-expect",
                                 "1",
                                 "yw-settings-version",
                                 "5",
                                 "yw-settings-time",
                                 "1700000000000000000",
                                 NULL};
    yw_fake_call_t *fc = handler_fx_call_md(&afx_fx, "UpdateAttributionSettings", &req.base, first);
    const settings_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->version, ==, 5);
    YW_CHECK_INT(got->click_window->seconds, ==, 3 * DAY_S);
    YW_CHECK_INT(got->update_time->seconds, ==, 1700000000);
    yw_fake_call_destroy(fc);
    /* Sent again (a retry of the front), other values: answered unchanged. */
    click_window(&req, &s, &d, 2 * DAY_S);
    const char *const again[] = {"yw-partition", "3", "yw-settings-version", "5", NULL};
    fc = handler_fx_call_md(&afx_fx, "UpdateAttributionSettings", &req.base, again);
    got = handler_fx_reply(fc);
    YW_CHECK_INT(got->version, ==, 5);
    YW_CHECK_INT(got->click_window->seconds, ==, 3 * DAY_S);
    yw_fake_call_destroy(fc);
    /* Expecting another version: ABORTED, nothing changed. */
    const char *const stale[] = {"yw-partition", "0", "yw-settings-expect", "4", NULL};
    fc = handler_fx_call_md(&afx_fx, "UpdateAttributionSettings", &req.base, stale);
    handler_fx_expect_fail_at(__FILE__, __LINE__, fc, GRPC_STATUS_ABORTED, "settings: version 5");
    YW_CHECK_INT(settings_version(), ==, 5);
    /* On a call that names no partition (a client's), the metadata means nothing. */
    const char *const client[] = {"yw-settings-version", "9", NULL};
    fc = handler_fx_call_md(&afx_fx, "UpdateAttributionSettings", &req.base, client);
    YW_CHECK_INT(((const settings_t *)handler_fx_reply(fc))->version, ==, 6);
    yw_fake_call_destroy(fc);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(the_settings_start_as_the_defaults),
        YW_TEST_ENTRY(an_update_names_the_field_it_refuses_and_changes_nothing),
        YW_TEST_ENTRY(an_update_restates_every_conversion_and_persists),
        YW_TEST_ENTRY(the_currency_cannot_change_once_conversions_are_stored),
        YW_TEST_ENTRY(a_second_update_while_one_is_written_is_aborted),
        YW_TEST_ENTRY(a_forwarded_update_sets_the_version_and_time_it_names_once),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
