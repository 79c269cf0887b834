/*
 * test_attr_partition_service.c — unit tests of attr_partition_service.c and of the
 * reports rendered from sums (attr_report.c): a partition's sums as a CreatorSums
 * message, packed, unpacked and merged on another node, render the TierReport that the
 * state holding every event renders itself, byte for byte (tier labels cached in the
 * node's own front state, sums past int64 too); 128-bit figures (past 2^64, negative)
 * cross the wire whole; GetCreatorSums checks its range as the reports do and wants a
 * resolved model; messages of another credit scale or with a nameless row are refused.
 */
#include "services/attribution/attr_partition_service.h"

#include <errno.h>

#include "services/attribution/attr_report.h"
#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_parts_fixture.h"
#include "tests/unit/test.h"

#define RANGE_D0 (DAY0 - 30)
#define RANGE_D1 (DAY0 + 30)

/* Caches `tier` as the label of `creator` in `st` (as attr_tier.c would once answered). */
static void label(attr_state_t *st, const char *creator, int tier)
{
    uint32_t id;
    YW_CHECK_INT(attr_state_creator(st, creator, strlen(creator), &id, NULL), ==, 0);
    st->creator_meta[id].tier = tier;
    st->creator_meta[id].tier_ns = T0;
}

/* The same labels in every state: C is known to be unlabelled, D was never asked. */
static void label_all(attr_state_t *st)
{
    label(st, "A", YAOWEI__TIER__V1__TIER__TIER_HEAD);
    label(st, "B", YAOWEI__TIER__V1__TIER__TIER_TAIL);
    label(st, "C", YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED);
}

/* The TierReport rendered from `sums` with `front`'s labels, packed (malloc). */
static uint8_t *tier_report_bytes(attr_state_t *front, const attr_range_sums_t *sums, int32_t d0,
                                  int32_t d1, int model, const char *currency, size_t *len)
{
    attr_report_t *r = calloc(1, sizeof *r);
    YW_CHECK(r != NULL);
    r->d0 = d0;
    r->d1 = d1;
    r->model = model;
    YW_CHECK_INT(attr__report_set_sums(r, front, sums, currency), ==, 0);
    attr_tier_report_buf_t out;
    attr__tier_report_fill(r, "tier scoring: unavailable", &out);
    YW_CHECK(out.rep.n_rows > 0);
    *len = protobuf_c_message_get_packed_size(&out.rep.base);
    uint8_t *b = malloc(*len);
    YW_CHECK(b != NULL);
    YW_CHECK_INT(protobuf_c_message_pack(&out.rep.base, b), ==, *len);
    attr__report_free(r);
    return b;
}

/* A CreatorSums through the wire: packed, then unpacked (free_unpacked() it). */
static Yaowei__Attribution__Internal__V1__CreatorSums *wire(const attr_sums_msg_t *msg)
{
    size_t len = yaowei__attribution__internal__v1__creator_sums__get_packed_size(&msg->msg);
    uint8_t *buf = malloc(len ? len : 1);
    YW_CHECK(buf != NULL);
    YW_CHECK_INT(yaowei__attribution__internal__v1__creator_sums__pack(&msg->msg, buf), ==, len);
    Yaowei__Attribution__Internal__V1__CreatorSums *in =
        yaowei__attribution__internal__v1__creator_sums__unpack(NULL, len, buf);
    free(buf);
    YW_CHECK(in != NULL);
    return in;
}

/* What GetCreatorSums answers for `st` (`only`: one creator), merged into `m` on arrival. */
static void gather(attr_sums_merge_t *m, const attr_state_t *st, int32_t d0, int32_t d1, int model,
                   const char *only)
{
    attr_range_sums_t rs;
    YW_CHECK_INT(attr_sums_of_state(st, d0, d1, model, only, only != NULL ? strlen(only) : 0, &rs),
                 ==, 0);
    attr_sums_msg_t msg;
    YW_CHECK_INT(attr__sums_msg_make(&rs, &st->settings, &msg), ==, 0);
    Yaowei__Attribution__Internal__V1__CreatorSums *in = wire(&msg);
    attr__sums_msg_free(&msg);
    free(rs.creators);
    YW_CHECK_INT(in->n_rows, ==, rs.n);
    YW_CHECK(strcmp(in->currency, st->settings.currency) == 0);
    YW_CHECK_INT(in->settings_version, ==, st->settings.version);
    YW_CHECK_INT(in->credit_units_per_conversion, ==, ATTR_CREDIT_ONE);
    char err[256];
    YW_CHECK_INT(attr__sums_msg_merge(m, in, err, sizeof err), ==, 0);
    yaowei__attribution__internal__v1__creator_sums__free_unpacked(in, NULL);
}

/*
 * For every model and range: the TierReport of `all` rendered from its own sums equals
 * the one a node renders from the partitions' CreatorSums with a front of its own.
 */
static void check_round_trip(attr_state_t *all, attr_state_t *part, int n_parts)
{
    const int32_t ranges[][2] = {{RANGE_D0, RANGE_D1}, {DAY0, DAY0 + 1}, {DAY0 - 3, DAY0}};
    attr_state_t front;
    attr_state_init(&front);
    label_all(&front);
    label_all(all);
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        for (int model = 1; model <= ATTR_N_MODELS; model++) {
            int32_t d0 = ranges[r][0], d1 = ranges[r][1];
            attr_range_sums_t own;
            YW_CHECK_INT(attr_sums_of_state(all, d0, d1, model, NULL, 0, &own), ==, 0);
            size_t want_len;
            uint8_t *want =
                tier_report_bytes(all, &own, d0, d1, model, all->settings.currency, &want_len);
            free(own.creators);
            attr_sums_merge_t m;
            attr_sums_merge_init(&m);
            for (int p = 0; p < n_parts; p++) {
                gather(&m, &part[p], d0, d1, model, NULL);
            }
            size_t got_len;
            uint8_t *got = tier_report_bytes(&front, &m.sums, d0, d1, model,
                                             part[0].settings.currency, &got_len);
            attr_sums_merge_free(&m);
            YW_CHECK_INT(got_len, ==, want_len);
            YW_CHECK(memcmp(got, want, want_len) == 0);
            free(got);
            free(want);
        }
    }
    /* The front names creators and caches labels; it holds no figure. */
    for (uint32_t c = 0; c < attr_state_n_creators(&front); c++) {
        attr_sums_t s;
        attr_state_creator_sums(&front, c, RANGE_D0, RANGE_D1, ATTR_MODEL_LAST_TOUCH, &s);
        YW_CHECK(attr_sums_zero(&s));
    }
    attr_state_free(&front);
}

YW_TEST(partitions_sums_through_the_wire_render_the_tier_report_of_one_state)
{
    attr_state_t all, part[FX_PARTS];
    fx_parts_open(&all, part);
    check_round_trip(&all, part, FX_PARTS);
    /* One partition holding everything is the degenerate cluster. */
    check_round_trip(&all, &all, 1);
    fx_parts_close(&all, part);
}

/* Orders at the largest amount allowed, 10^15: 9,224 of them pass int64. */
#define BIG_N 9300
#define BIG ((attr_sum_t)BIG_N * ATTR_AMOUNT_MAX)

/* A alone on (v1, p1); A then B on (v2, p2); nobody on (v9, p9): BIG_N orders of each,
 * v1 in partition 0, v2 and v9 in partition 1 (`part` < 0: all). */
static void feed_big(attr_state_t *st, int part)
{
    int64_t now = T0 + H_;
    if (part != 1) {
        fx_expose(st, "a1", "v1", "A", "p1", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    }
    if (part != 0) {
        fx_expose(st, "a2", "v2", "A", "p2", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
        fx_expose(st, "b2", "v2", "B", "p2", ATTR_KIND_CLICK, 0, T0 - D_, now);
    }
    for (int i = 0; i < BIG_N; i++) {
        char id[32];
        if (part != 1) {
            snprintf(id, sizeof id, "one-%d", i);
            fx_convert(st, id, "v1", "p1", ATTR_AMOUNT_MAX, T0, now);
        }
        if (part != 0) {
            snprintf(id, sizeof id, "split-%d", i);
            fx_convert(st, id, "v2", "p2", ATTR_AMOUNT_MAX, T0, now);
            snprintf(id, sizeof id, "none-%d", i);
            fx_convert(st, id, "v9", "p9", ATTR_AMOUNT_MAX, T0, now);
        }
    }
}

YW_TEST(sums_past_int64_go_through_the_wire_and_render_alike)
{
    attr_state_t all, part[2];
    attr_state_init(&all);
    feed_big(&all, -1);
    for (int p = 0; p < 2; p++) {
        attr_state_init(&part[p]);
        feed_big(&part[p], p);
    }
    /* Each partition's sum of A under first touch is past int64, and so is the total. */
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    for (int p = 0; p < 2; p++) {
        gather(&m, &part[p], RANGE_D0, RANGE_D1, ATTR_MODEL_FIRST_TOUCH, "A");
    }
    YW_CHECK_INT(m.sums.n, ==, 1);
    YW_CHECK_I128(m.sums.creators[0].s.gmv, ==, 2 * BIG);
    YW_CHECK_I128(m.sums.creators[0].s.credit, ==, (attr_sum_t)2 * BIG_N * ATTR_CREDIT_ONE);
    YW_CHECK_I128(m.sums.unattr_gmv, ==, BIG);
    attr_sums_t s = fx_sums(&all, "A", ATTR_MODEL_FIRST_TOUCH);
    YW_CHECK_I128(s.gmv, ==, m.sums.creators[0].s.gmv);
    YW_CHECK_I128(s.clicks, ==, m.sums.creators[0].s.clicks);
    attr_sums_merge_free(&m);
    check_round_trip(&all, part, 2);
    attr_state_free(&all);
    for (int p = 0; p < 2; p++) {
        attr_state_free(&part[p]);
    }
}

YW_TEST(figures_of_128_bits_cross_the_wire_whole)
{
    attr_sum_t two64 = (attr_sum_t)1 << 64;
    attr_creator_sums_t rows[2] = {
        {"A",
         1,
         {.impressions = 7,
          .views = two64,
          .clicks = -1,
          .credit = -(two64 * 3 + 5),
          .gmv = (attr_sum_t)1 << 100},
         0},
        {"B", 1, {.impressions = INT64_MAX, .views = (attr_sum_t)INT64_MAX + 1, .gmv = -two64}, 0},
    };
    attr_range_sums_t rs = {rows, 2, (attr_sum_t)UINT64_MAX + 2, INT64_MIN, NULL};
    attr_settings_t settings;
    attr_settings_default(&settings);
    attr_sums_msg_t msg;
    YW_CHECK_INT(attr__sums_msg_make(&rs, &settings, &msg), ==, 0);
    /* A figure of 64 bits has hi 0: it costs its lo alone. */
    YW_CHECK_INT(msg.msg.rows[0]->impressions->hi, ==, 0);
    YW_CHECK_INT(msg.msg.rows[1]->views->hi, ==, 0);
    Yaowei__Attribution__Internal__V1__CreatorSums *in = wire(&msg);
    attr__sums_msg_free(&msg);
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    char err[256];
    YW_CHECK_INT(attr__sums_msg_merge(&m, in, err, sizeof err), ==, 0);
    yaowei__attribution__internal__v1__creator_sums__free_unpacked(in, NULL);
    YW_CHECK_INT(m.sums.n, ==, 2);
    for (int i = 0; i < 2; i++) {
        const attr_sums_t *a = &m.sums.creators[i].s, *b = &rows[i].s;
        YW_CHECK(strcmp(m.sums.creators[i].creator, rows[i].creator) == 0);
        YW_CHECK_I128(a->impressions, ==, b->impressions);
        YW_CHECK_I128(a->views, ==, b->views);
        YW_CHECK_I128(a->clicks, ==, b->clicks);
        YW_CHECK_I128(a->credit, ==, b->credit);
        YW_CHECK_I128(a->gmv, ==, b->gmv);
    }
    YW_CHECK_I128(m.sums.unattr_count, ==, rs.unattr_count);
    YW_CHECK_I128(m.sums.unattr_gmv, ==, rs.unattr_gmv);
    attr_sums_merge_free(&m);
}

YW_TEST(get_creator_sums_checks_its_range_as_reports_do_and_wants_a_resolved_model)
{
    Google__Protobuf__Timestamp t0 = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp t1 = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    t0.seconds = (int64_t)DAY0 * 86400;
    t1.seconds = (int64_t)(DAY0 + 7) * 86400;
    Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest req =
        YAOWEI__ATTRIBUTION__INTERNAL__V1__GET_CREATOR_SUMS_REQUEST__INIT;
    req.start_time = &t0;
    req.end_time = &t1;
    req.model = YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_LINEAR;
    int32_t d0, d1;
    int model;
    char err[256] = "", want[256] = "";
    YW_CHECK_INT(attr__creator_sums_args(&req, &d0, &d1, &model, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(d0, ==, DAY0);
    YW_CHECK_INT(d1, ==, DAY0 + 7);
    YW_CHECK_INT(model, ==, ATTR_MODEL_LINEAR);
    /* The settings' default is the asking node's to apply. */
    req.model = 0;
    YW_CHECK_INT(attr__creator_sums_args(&req, &d0, &d1, &model, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(err, "model: ") == err);
    req.model = 6;
    YW_CHECK_INT(attr__creator_sums_args(&req, &d0, &d1, &model, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    /* A range a report refuses is refused with the report's words. */
    req.model = 1;
    t1.seconds += 3600;
    YW_CHECK_INT(attr__creator_sums_args(&req, &d0, &d1, &model, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_INT(attr_validate_range(&t0, &t1, &d0, &d1, want, sizeof want), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strcmp(err, want) == 0);
    req.start_time = NULL;
    YW_CHECK_INT(attr__creator_sums_args(&req, &d0, &d1, &model, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
}

YW_TEST(sums_of_another_scale_or_a_nameless_row_are_refused_and_merge_nothing)
{
    attr_creator_sums_t rows[1] = {{"A", 1, {.impressions = 3}, 0}};
    attr_range_sums_t rs = {rows, 1, 1, 10, NULL};
    attr_settings_t settings;
    attr_settings_default(&settings);
    attr_sums_msg_t msg;
    YW_CHECK_INT(attr__sums_msg_make(&rs, &settings, &msg), ==, 0);
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    char err[256];
    msg.msg.credit_units_per_conversion = 1000;
    YW_CHECK_INT(attr__sums_msg_merge(&m, &msg.msg, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "credit_units_per_conversion: 1000") == err);
    msg.msg.credit_units_per_conversion = ATTR_CREDIT_ONE;
    msg.msg.rows[0]->creator_id = "";
    YW_CHECK_INT(attr__sums_msg_merge(&m, &msg.msg, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strcmp(err, "rows[0].creator_id: is empty") == 0);
    YW_CHECK_INT(m.sums.n, ==, 0);
    YW_CHECK_I128(m.sums.unattr_count, ==, 0);
    /* Absent figures are 0. */
    msg.msg.rows[0]->creator_id = "A";
    msg.msg.rows[0]->views = NULL;
    msg.msg.unattributed_gmv_minor = NULL;
    YW_CHECK_INT(attr__sums_msg_merge(&m, &msg.msg, err, sizeof err), ==, 0);
    YW_CHECK_I128(m.sums.creators[0].s.impressions, ==, 3);
    YW_CHECK_I128(m.sums.creators[0].s.views, ==, 0);
    YW_CHECK_I128(m.sums.unattr_count, ==, 1);
    YW_CHECK_I128(m.sums.unattr_gmv, ==, 0);
    attr__sums_msg_free(&msg);
    attr_sums_merge_free(&m);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(partitions_sums_through_the_wire_render_the_tier_report_of_one_state),
        YW_TEST_ENTRY(sums_past_int64_go_through_the_wire_and_render_alike),
        YW_TEST_ENTRY(figures_of_128_bits_cross_the_wire_whole),
        YW_TEST_ENTRY(get_creator_sums_checks_its_range_as_reports_do_and_wants_a_resolved_model),
        YW_TEST_ENTRY(sums_of_another_scale_or_a_nameless_row_are_refused_and_merge_nothing),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
