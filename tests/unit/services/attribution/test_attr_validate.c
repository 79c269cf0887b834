/*
 * test_attr_validate.c — unit tests of services/attribution/attr_validate.c: every
 * per-event rule (README "Attribution") names its field; report ranges; settings updates under an
 * update_mask (AIP-134).
 */
#include "services/attribution/attr_validate.h"

#include <errno.h>

#include "tests/unit/test.h"

#define NOW (INT64_C(1730000000) * ATTR_NS_PER_S)

static Google__Protobuf__Timestamp ts_at(int64_t ns)
{
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    t.seconds = ns / ATTR_NS_PER_S;
    t.nanos = (int32_t)(ns % ATTR_NS_PER_S);
    return t;
}

static char *prods[] = {"p1", "p2"};

static Yaowei__Attribution__V1__ExposureEvent good_exposure(Google__Protobuf__Timestamp *t)
{
    Yaowei__Attribution__V1__ExposureEvent e = YAOWEI__ATTRIBUTION__V1__EXPOSURE_EVENT__INIT;
    e.event_id = "e1";
    e.viewer_id = "v1";
    e.creator_id = "c1";
    e.note_id = "";
    e.n_product_ids = 2;
    e.product_ids = prods;
    e.kind = YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_VIEW;
    e.watch_ms = 0;
    e.occur_time = t;
    return e;
}

/* The reason starts with `field`. */
#define CHECK_REASON(call, field)                                                                  \
    do {                                                                                           \
        char err_[256] = "";                                                                       \
        int64_t occ_;                                                                              \
        (void)occ_;                                                                                \
        YW_CHECK_INT(call, ==, -EINVAL);                                                           \
        if (strncmp(err_, field, strlen(field)) != 0) {                                            \
            fprintf(stderr, "reason \"%s\" does not start with %s\n", err_, field);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

YW_TEST(a_good_exposure_passes)
{
    Google__Protobuf__Timestamp t = ts_at(NOW - 1);
    Yaowei__Attribution__V1__ExposureEvent e = good_exposure(&t);
    char err[256];
    int64_t occ = 0;
    YW_CHECK_INT(attr_validate_exposure(&e, NOW, &occ, err, sizeof err), ==, 0);
    YW_CHECK_INT(occ, ==, NOW - 1);
    /* exactly 5 minutes ahead is still fine */
    t = ts_at(NOW + ATTR_FUTURE_NS);
    YW_CHECK_INT(attr_validate_exposure(&e, NOW, &occ, err, sizeof err), ==, 0);
}

YW_TEST(each_exposure_rule_names_its_field)
{
    Google__Protobuf__Timestamp t = ts_at(NOW);
    Yaowei__Attribution__V1__ExposureEvent e;
#define EXPOSURE_CASE(mutate, field)                                                               \
    do {                                                                                           \
        e = good_exposure(&t);                                                                     \
        mutate;                                                                                    \
        CHECK_REASON(attr_validate_exposure(&e, NOW, &occ_, err_, sizeof err_), field);            \
    } while (0)
    EXPOSURE_CASE(e.event_id = "", "event_id:");
    EXPOSURE_CASE(e.viewer_id = "", "viewer_id:");
    EXPOSURE_CASE(e.creator_id = "", "creator_id:");
    EXPOSURE_CASE(e.n_product_ids = 0, "product_ids:");
    static char *empty_prod[] = {"p1", ""};
    EXPOSURE_CASE(e.product_ids = empty_prod, "product_ids[1]:");
    EXPOSURE_CASE(e.kind = YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_UNSPECIFIED,
                  "kind:");
    EXPOSURE_CASE(e.kind = (Yaowei__Attribution__V1__ExposureKind)7, "kind:");
    EXPOSURE_CASE(e.watch_ms = -1, "watch_ms:");
    EXPOSURE_CASE(e.occur_time = NULL, "occur_time:");
    Google__Protobuf__Timestamp future = ts_at(NOW + ATTR_FUTURE_NS + 1);
    EXPOSURE_CASE(e.occur_time = &future, "occur_time:");
    Google__Protobuf__Timestamp bad = ts_at(NOW);
    bad.nanos = -1;
    EXPOSURE_CASE(e.occur_time = &bad, "occur_time.nanos:");
    Google__Protobuf__Timestamp old = ts_at(0);
    old.seconds = -5;
    EXPOSURE_CASE(e.occur_time = &old, "occur_time:");
    char long_id[ATTR_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    EXPOSURE_CASE(e.event_id = long_id, "event_id:");
    /* Strings are UTF-8: the event's own check (the runtime leaves a batch's events to it). */
    EXPOSURE_CASE(e.event_id = "e\xff\xfe", "event_id: must be valid UTF-8");
    EXPOSURE_CASE(e.viewer_id = "\xed\xa0\x80", "viewer_id: must be valid UTF-8");
    EXPOSURE_CASE(e.creator_id = "c\xc3", "creator_id: must be valid UTF-8");
    EXPOSURE_CASE(e.note_id = "\x80", "note_id: must be valid UTF-8");
    static char *bad_prod[] = {"p1", "p\xff"};
    EXPOSURE_CASE(e.product_ids = bad_prod, "product_ids[1]: must be valid UTF-8");
#undef EXPOSURE_CASE
}

YW_TEST(conversion_and_refund_rules)
{
    Google__Protobuf__Timestamp t = ts_at(NOW);
    Yaowei__Attribution__V1__ConversionEvent c;
#define CONV_CASE(mutate, field)                                                                   \
    do {                                                                                           \
        yaowei__attribution__v1__conversion_event__init(&c);                                       \
        c.order_id = "o";                                                                          \
        c.viewer_id = "v";                                                                         \
        c.product_id = "p";                                                                        \
        c.amount_minor = 1;                                                                        \
        c.currency = "";                                                                           \
        c.occur_time = &t;                                                                         \
        mutate;                                                                                    \
        CHECK_REASON(attr_validate_conversion(&c, "CNY", NOW, &occ_, err_, sizeof err_), field);   \
    } while (0)
    CONV_CASE(c.order_id = "", "order_id:");
    CONV_CASE(c.viewer_id = "", "viewer_id:");
    CONV_CASE(c.product_id = "", "product_id:");
    CONV_CASE(c.amount_minor = 0, "amount_minor:");
    CONV_CASE(c.amount_minor = -3, "amount_minor:");
    CONV_CASE(c.amount_minor = ATTR_AMOUNT_MAX + 1,
              "amount_minor: must be at most 1000000000000000 (10^15), got 1000000000000001");
    CONV_CASE(c.amount_minor = INT64_MAX,
              "amount_minor: must be at most 1000000000000000 (10^15), got 9223372036854775807");
    CONV_CASE(c.quantity = -1, "quantity:");
    CONV_CASE(c.currency = "USD", "currency:");
    CONV_CASE(c.occur_time = NULL, "occur_time:");
    CONV_CASE(c.order_id = "o\xff", "order_id: must be valid UTF-8");
    CONV_CASE(c.product_id = "\xed\xa0\x80", "product_id: must be valid UTF-8");
    CONV_CASE(c.currency = "\xff\xfe", "currency: must be valid UTF-8");
    /* A value quoted into a reason is escaped, never echoed raw. */
    CONV_CASE(c.currency = "U\x1b[31mSD\xe2\x82\xac",
              "currency: must be CNY (the deployment's) or empty, got "
              "\"U\\x1b[31mSD\\xe2\\x82\\xac\"");
#undef CONV_CASE
    char err[256];
    int64_t occ;
    yaowei__attribution__v1__conversion_event__init(&c);
    c.order_id = "o";
    c.viewer_id = "v";
    c.product_id = "p";
    c.amount_minor = ATTR_AMOUNT_MAX; /* the bound itself */
    c.currency = "CNY";
    c.occur_time = &t;
    YW_CHECK_INT(attr_validate_conversion(&c, "CNY", NOW, &occ, err, sizeof err), ==, 0);

    Yaowei__Attribution__V1__RefundEvent r = YAOWEI__ATTRIBUTION__V1__REFUND_EVENT__INIT;
    r.refund_id = "r";
    r.order_id = "o";
    r.amount_minor = 5;
    r.occur_time = &t;
    YW_CHECK_INT(attr_validate_refund(&r, NOW, &occ, err, sizeof err), ==, 0);
    r.refund_id = "";
    CHECK_REASON(attr_validate_refund(&r, NOW, &occ_, err_, sizeof err_), "refund_id:");
    r.refund_id = "r";
    r.order_id = "";
    CHECK_REASON(attr_validate_refund(&r, NOW, &occ_, err_, sizeof err_), "order_id:");
    r.order_id = "o\xed\xa0\x80";
    CHECK_REASON(attr_validate_refund(&r, NOW, &occ_, err_, sizeof err_),
                 "order_id: must be valid UTF-8");
    r.order_id = "o";
    r.amount_minor = 0;
    CHECK_REASON(attr_validate_refund(&r, NOW, &occ_, err_, sizeof err_), "amount_minor:");
    r.amount_minor = ATTR_AMOUNT_MAX + 1;
    CHECK_REASON(attr_validate_refund(&r, NOW, &occ_, err_, sizeof err_),
                 "amount_minor: must be at most 1000000000000000 (10^15)");
    r.amount_minor = ATTR_AMOUNT_MAX;
    YW_CHECK_INT(attr_validate_refund(&r, NOW, &occ, err, sizeof err), ==, 0);
}

YW_TEST(models_resolve)
{
    YW_CHECK_INT(attr_model_resolve(0, ATTR_MODEL_LINEAR), ==, ATTR_MODEL_LINEAR);
    YW_CHECK_INT(attr_model_resolve(ATTR_MODEL_TIME_DECAY, 1), ==, ATTR_MODEL_TIME_DECAY);
    YW_CHECK_INT(attr_model_resolve(6, 1), ==, -1);
    YW_CHECK_INT(attr_model_resolve(-1, 1), ==, -1);
}

YW_TEST(report_ranges_are_whole_days)
{
    int64_t day = 20000 * ATTR_NS_PER_DAY;
    Google__Protobuf__Timestamp a = ts_at(day), b = ts_at(day + 7 * ATTR_NS_PER_DAY);
    int32_t d0, d1;
    char err[256];
    YW_CHECK_INT(attr_validate_range(&a, &b, &d0, &d1, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(d0, ==, 20000);
    YW_CHECK_INT(d1, ==, 20007);
    Google__Protobuf__Timestamp off = ts_at(day + ATTR_NS_PER_S);
    YW_CHECK_INT(attr_validate_range(&off, &b, &d0, &d1, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(err, "start_time:", 11) == 0);
    YW_CHECK_INT(attr_validate_range(&a, &off, &d0, &d1, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(err, "end_time:", 9) == 0);
    YW_CHECK_INT(attr_validate_range(&b, &a, &d0, &d1, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_INT(attr_validate_range(NULL, &a, &d0, &d1, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    Google__Protobuf__Timestamp far = ts_at(day + 401 * ATTR_NS_PER_DAY);
    YW_CHECK_INT(attr_validate_range(&a, &far, &d0, &d1, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
}

YW_TEST(settings_update_mask)
{
    attr_settings_t cur, out;
    attr_settings_default(&cur);
    Google__Protobuf__Duration two_days = GOOGLE__PROTOBUF__DURATION__INIT;
    two_days.seconds = 2 * 86400;
    Yaowei__Attribution__V1__AttributionSettings s =
        YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_SETTINGS__INIT;
    s.click_window = &two_days;
    s.view_window = &two_days;
    s.default_model = YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_LINEAR;
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    char *paths[] = {"click_window"};
    mask.n_paths = 1;
    mask.paths = paths;
    Yaowei__Attribution__V1__UpdateAttributionSettingsRequest req =
        YAOWEI__ATTRIBUTION__V1__UPDATE_ATTRIBUTION_SETTINGS_REQUEST__INIT;
    req.settings = &s;
    req.update_mask = &mask;
    unsigned changed = 0;
    char err[256];
    /* Only the masked field changes. */
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(changed, ==, ATTR_SET_CLICK_WINDOW);
    YW_CHECK_INT(out.click_window_ns, ==, 2 * ATTR_NS_PER_DAY);
    YW_CHECK_INT(out.view_window_ns, ==, ATTR_NS_PER_DAY);
    YW_CHECK_INT(out.default_model, ==, ATTR_MODEL_LAST_TOUCH);
    /* No mask: the fields set. */
    req.update_mask = NULL;
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(changed, ==,
                 ATTR_SET_CLICK_WINDOW | ATTR_SET_VIEW_WINDOW | ATTR_SET_DEFAULT_MODEL);
    YW_CHECK_INT(out.default_model, ==, ATTR_MODEL_LINEAR);
    /* Unknown path; out of range; a named field left unset. */
    char *bad_paths[] = {"click_windows"};
    mask.paths = bad_paths;
    req.update_mask = &mask;
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(err, "update_mask.paths[0]:", 21) == 0);
    char *star[] = {"*"};
    mask.paths = star;
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT); /* half-life etc. not set */
    YW_CHECK(strncmp(err, "settings.time_decay_half_life:", 30) == 0);
    Google__Protobuf__Duration zero = GOOGLE__PROTOBUF__DURATION__INIT;
    s.click_window = &zero;
    mask.paths = paths;
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(err, "settings.click_window:", 22) == 0);
    /* Currency: three capitals. */
    char *cur_path[] = {"currency"};
    mask.paths = cur_path;
    s.currency = "usd";
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    s.currency = "U\x01"
                 "D";
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "settings.currency: must be an ISO 4217 code (3 capital letters), got "
                      "\"U\\x01D\"");
    s.currency = "USD";
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_STR(out.currency, "USD");
    req.settings = NULL;
    YW_CHECK_INT(attr_settings_apply(&req, &cur, &out, &changed, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_good_exposure_passes),
        YW_TEST_ENTRY(each_exposure_rule_names_its_field),
        YW_TEST_ENTRY(conversion_and_refund_rules),
        YW_TEST_ENTRY(models_resolve),
        YW_TEST_ENTRY(report_ranges_are_whole_days),
        YW_TEST_ENTRY(settings_update_mask),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
