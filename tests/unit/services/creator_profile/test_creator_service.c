/*
 * test_creator_service.c — unit tests of services/creator_profile/creator_service.c: each
 * handler of CreatorProfileService called through the runtime with fake calls
 * (common/call_fake.h), on the service opened as its binary opens it (its SQLite store
 * in a temp dir, the cache loaded by creator_service_init()), with no server. Errors
 * must name the field; replies must be what the method documents.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "services/creator_profile/creator_service.h"
#include "tests/unit/handler_fixture.h"
#include "tests/unit/test.h"
#include "yaowei/creator/v1/creator.pb-c.h"

typedef Yaowei__Creator__V1__Creator creator_t;

static handler_fx_t fx;

static void open_service(void)
{
    handler_fx_open(&fx, &creator_app, NULL);
}

/* ---- requests ---- */

static yw_fake_call_t *create_call(const char *request_id, const char *id, int64_t followers,
                                   const char *region)
{
    creator_t c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    c.creator_id = (char *)id;
    c.display_name = "Name";
    c.region = (char *)region;
    c.followers = followers;
    Yaowei__Creator__V1__CreateCreatorRequest req =
        YAOWEI__CREATOR__V1__CREATE_CREATOR_REQUEST__INIT;
    req.request_id = (char *)request_id;
    req.creator = &c;
    return handler_fx_call(&fx, "CreateCreator", &req.base);
}

/* Creates a creator; its followers and region as given. */
static void create(const char *id, int64_t followers, const char *region)
{
    yw_fake_call_t *fc = create_call("", id, followers, region);
    const creator_t *got = handler_fx_reply(fc);
    YW_CHECK_STR(got->creator_id, id);
    yw_fake_call_destroy(fc);
}

static yw_fake_call_t *get_call(const char *id)
{
    Yaowei__Creator__V1__GetCreatorRequest req = YAOWEI__CREATOR__V1__GET_CREATOR_REQUEST__INIT;
    req.creator_id = (char *)id;
    return handler_fx_call(&fx, "GetCreator", &req.base);
}

static Yaowei__Creator__V1__NoteDailyStats stats_row(const char *note, const char *creator,
                                                     const char *day, int64_t impressions,
                                                     int64_t views)
{
    Yaowei__Creator__V1__NoteDailyStats r = YAOWEI__CREATOR__V1__NOTE_DAILY_STATS__INIT;
    r.note_id = (char *)note;
    r.creator_id = (char *)creator;
    r.day = (char *)day;
    r.impressions = impressions;
    r.views = views;
    r.likes = 1;
    return r;
}

static yw_fake_call_t *record_call(Yaowei__Creator__V1__NoteDailyStats *rows, size_t n)
{
    Yaowei__Creator__V1__NoteDailyStats *ptrs[8];
    YW_CHECK(n <= 8);
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = &rows[i];
    }
    Yaowei__Creator__V1__RecordNoteStatsRequest req =
        YAOWEI__CREATOR__V1__RECORD_NOTE_STATS_REQUEST__INIT;
    req.n_stats = n;
    req.stats = n > 0 ? ptrs : NULL;
    return handler_fx_call(&fx, "RecordNoteStats", &req.base);
}

/* ---- CreateCreator, GetCreator ---- */

YW_TEST(create_replies_the_creator_and_get_finds_it)
{
    open_service();
    yw_fake_call_t *fc = create_call("req-1", "alice", 1200, "east");
    const creator_t *made = handler_fx_reply(fc);
    YW_CHECK_STR(made->creator_id, "alice");
    YW_CHECK_STR(made->region, "east");
    YW_CHECK_INT(made->followers, ==, 1200);
    YW_CHECK(made->create_time != NULL && made->create_time->seconds > 0);
    int64_t created = made->create_time->seconds;
    yw_fake_call_destroy(fc);
    fc = get_call("alice");
    const creator_t *got = handler_fx_reply(fc);
    YW_CHECK_STR(got->display_name, "Name");
    YW_CHECK_INT(got->create_time->seconds, ==, created);
    yw_fake_call_destroy(fc);
    handler_fx_close(&fx);
}

YW_TEST(create_names_the_field_it_refuses)
{
    open_service();
    Yaowei__Creator__V1__CreateCreatorRequest none =
        YAOWEI__CREATOR__V1__CREATE_CREATOR_REQUEST__INIT;
    handler_fx_fails(&fx, "CreateCreator", &none.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "creator: required");
    handler_fx_expect_fail(create_call("", "", 1, ""), GRPC_STATUS_INVALID_ARGUMENT,
                           "creator.creator_id: required");
    handler_fx_expect_fail(create_call("", "a b", 1, ""), GRPC_STATUS_INVALID_ARGUMENT,
                           "creator.creator_id: must be 1-");
    handler_fx_expect_fail(create_call("", "bob", -1, ""), GRPC_STATUS_INVALID_ARGUMENT,
                           "creator.followers: must be >= 0, got -1");
    /* Nothing was created by the refused calls. */
    handler_fx_expect_fail(get_call("bob"), GRPC_STATUS_NOT_FOUND, "creator_id: creator");
    handler_fx_close(&fx);
}

YW_TEST(a_retried_create_returns_the_first_creator_and_another_request_is_already_exists)
{
    open_service();
    yw_fake_call_t *first = create_call("req-7", "carol", 10, "");
    const creator_t *a = handler_fx_reply(first);
    /* The retry asks for other followers: it still gets the creator of the first call. */
    yw_fake_call_t *again = create_call("req-7", "carol", 99, "");
    const creator_t *b = handler_fx_reply(again);
    YW_CHECK_INT(b->followers, ==, 10);
    YW_CHECK_INT(b->create_time->seconds, ==, a->create_time->seconds);
    YW_CHECK_INT(b->create_time->nanos, ==, a->create_time->nanos);
    yw_fake_call_destroy(first);
    yw_fake_call_destroy(again);
    handler_fx_expect_fail(create_call("req-8", "carol", 10, ""), GRPC_STATUS_ALREADY_EXISTS,
                           "creator.creator_id: creator \"carol\" already exists");
    handler_fx_close(&fx);
}

YW_TEST(get_names_the_creator_it_does_not_find)
{
    open_service();
    handler_fx_expect_fail(get_call("nobody"), GRPC_STATUS_NOT_FOUND,
                           "creator_id: creator \"nobody\" not found");
    handler_fx_expect_fail(get_call(""), GRPC_STATUS_INVALID_ARGUMENT, "creator_id: required");
    handler_fx_close(&fx);
}

/* ---- BatchGetCreators ---- */

YW_TEST(batch_get_answers_in_request_order_and_names_every_missing_id)
{
    open_service();
    create("c1", 1, "");
    create("c2", 2, "");
    char *ids[] = {"c2", "c1", "c2"};
    Yaowei__Creator__V1__BatchGetCreatorsRequest req =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATORS_REQUEST__INIT;
    req.creator_ids = ids;
    req.n_creator_ids = 3;
    yw_fake_call_t *fc = handler_fx_call(&fx, "BatchGetCreators", &req.base);
    const Yaowei__Creator__V1__BatchGetCreatorsResponse *resp = handler_fx_reply(fc);
    YW_CHECK_INT(resp->n_creators, ==, 3);
    YW_CHECK_STR(resp->creators[0]->creator_id, "c2");
    YW_CHECK_STR(resp->creators[1]->creator_id, "c1");
    YW_CHECK_STR(resp->creators[2]->creator_id, "c2");
    yw_fake_call_destroy(fc);
    char *some_missing[] = {"c1", "x1", "c2", "x2"};
    req.creator_ids = some_missing;
    req.n_creator_ids = 4;
    handler_fx_fails(&fx, "BatchGetCreators", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator_ids: 2 creators not found: creator_ids[1] \"x1\", creator_ids[3] "
                     "\"x2\"");
    char *bad[] = {"c1", ""};
    req.creator_ids = bad;
    req.n_creator_ids = 2;
    handler_fx_fails(&fx, "BatchGetCreators", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "creator_ids[1]: required");
    handler_fx_close(&fx);
}

/* ---- UpdateCreator, DeleteCreator ---- */

YW_TEST(update_changes_only_the_masked_fields)
{
    open_service();
    create("dave", 100, "west");
    creator_t c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    c.creator_id = "dave";
    c.region = "north";
    c.followers = 5000;
    char *paths[] = {"followers"};
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    mask.paths = paths;
    mask.n_paths = 1;
    Yaowei__Creator__V1__UpdateCreatorRequest req =
        YAOWEI__CREATOR__V1__UPDATE_CREATOR_REQUEST__INIT;
    req.creator = &c;
    req.update_mask = &mask;
    yw_fake_call_t *fc = handler_fx_call(&fx, "UpdateCreator", &req.base);
    const creator_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->followers, ==, 5000);
    YW_CHECK_STR(got->region, "west"); /* not in the mask */
    YW_CHECK(got->update_time != NULL && got->update_time->seconds > 0);
    yw_fake_call_destroy(fc);
    /* GetCreator sees the update (the cache changed before the reply). */
    fc = get_call("dave");
    YW_CHECK_INT(((const creator_t *)handler_fx_reply(fc))->followers, ==, 5000);
    yw_fake_call_destroy(fc);
    char *unknown[] = {"email"};
    mask.paths = unknown;
    handler_fx_fails(&fx, "UpdateCreator", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "update_mask.paths[0]: unknown field \"email\"");
    mask.paths = paths;
    c.creator_id = "erin";
    handler_fx_fails(&fx, "UpdateCreator", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator.creator_id: creator \"erin\" not found");
    handler_fx_close(&fx);
}

YW_TEST(delete_removes_the_creator_once)
{
    open_service();
    create("fay", 1, "");
    Yaowei__Creator__V1__DeleteCreatorRequest req =
        YAOWEI__CREATOR__V1__DELETE_CREATOR_REQUEST__INIT;
    req.creator_id = "fay";
    yw_fake_call_t *fc = handler_fx_call(&fx, "DeleteCreator", &req.base);
    handler_fx_reply(fc);
    yw_fake_call_destroy(fc);
    handler_fx_expect_fail(get_call("fay"), GRPC_STATUS_NOT_FOUND, "creator_id: creator");
    handler_fx_fails(&fx, "DeleteCreator", &req.base, GRPC_STATUS_NOT_FOUND, "creator");
    handler_fx_close(&fx);
}

/* ---- ListCreators ---- */

YW_TEST(list_pages_in_creator_id_order_and_refuses_a_token_of_other_filters)
{
    open_service();
    create("l3", 30, "east");
    create("l1", 10, "east");
    create("l2", 20, "west");
    create("l4", 40, "east");
    Yaowei__Creator__V1__ListCreatorsRequest req = YAOWEI__CREATOR__V1__LIST_CREATORS_REQUEST__INIT;
    req.page_size = 2;
    req.region = "east";
    const char *want[] = {"l1", "l3", "l4"};
    size_t seen = 0;
    char token[512] = "";
    for (int page = 0; page < 3; page++) {
        req.page_token = token;
        yw_fake_call_t *fc = handler_fx_call(&fx, "ListCreators", &req.base);
        const Yaowei__Creator__V1__ListCreatorsResponse *resp = handler_fx_reply(fc);
        for (size_t i = 0; i < resp->n_creators; i++) {
            YW_CHECK(seen < 3);
            YW_CHECK_STR(resp->creators[i]->creator_id, want[seen++]);
        }
        snprintf(token, sizeof token, "%s", resp->next_page_token);
        yw_fake_call_destroy(fc);
        if (token[0] == '\0') {
            break;
        }
    }
    YW_CHECK_INT(seen, ==, 3);
    /* A token of the first page, asked with another region. */
    req.page_token = "";
    yw_fake_call_t *fc = handler_fx_call(&fx, "ListCreators", &req.base);
    const Yaowei__Creator__V1__ListCreatorsResponse *first = handler_fx_reply(fc);
    snprintf(token, sizeof token, "%s", first->next_page_token);
    yw_fake_call_destroy(fc);
    req.page_token = token;
    req.region = "west";
    handler_fx_fails(&fx, "ListCreators", &req.base, GRPC_STATUS_INVALID_ARGUMENT, "page_token:");
    req.page_token = "";
    req.page_size = -1;
    handler_fx_fails(&fx, "ListCreators", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "page_size: must be >= 0, got -1");
    handler_fx_close(&fx);
}

/* ---- RecordNoteStats, GetCreatorStats, BatchGetCreatorStats ---- */

YW_TEST(record_note_stats_upserts_and_refuses_a_batch_with_one_bad_row)
{
    open_service();
    create("gus", 1, "");
    Yaowei__Creator__V1__NoteDailyStats rows[3] = {
        stats_row("n1", "gus", "2024-03-01", 100, 10),
        stats_row("n1", "gus", "2024-03-02", 50, 5),
        stats_row("n2", "gus", "2024-03-02", 10, 1),
    };
    yw_fake_call_t *fc = record_call(rows, 3);
    YW_CHECK_INT(
        ((const Yaowei__Creator__V1__RecordNoteStatsResponse *)handler_fx_reply(fc))->upserted, ==,
        3);
    yw_fake_call_destroy(fc);
    /* One unknown creator rejects the whole batch, naming its row. */
    rows[0].views = 999;
    rows[1].creator_id = "nobody";
    handler_fx_expect_fail(record_call(rows, 3), GRPC_STATUS_INVALID_ARGUMENT,
                           "stats[1].creator_id: creator \"nobody\" does not exist");
    rows[1].creator_id = "gus";
    rows[2].likes = -1;
    handler_fx_expect_fail(record_call(rows, 3), GRPC_STATUS_INVALID_ARGUMENT,
                           "stats[2].likes: must be >= 0, got -1");
    rows[2].likes = 0;
    rows[0].day = "2999-01-01";
    handler_fx_expect_fail(record_call(rows, 3), GRPC_STATUS_INVALID_ARGUMENT,
                           "stats[0].day: must not be after today");
    fc = record_call(NULL, 0);
    YW_CHECK_INT(
        ((const Yaowei__Creator__V1__RecordNoteStatsResponse *)handler_fx_reply(fc))->upserted, ==,
        0);
    yw_fake_call_destroy(fc);
    /* The refused batches changed nothing: the views are the first batch's. */
    Yaowei__Creator__V1__GetCreatorStatsRequest req =
        YAOWEI__CREATOR__V1__GET_CREATOR_STATS_REQUEST__INIT;
    req.creator_id = "gus";
    req.window_days = 7;
    req.end_day = "2024-03-02";
    fc = handler_fx_call(&fx, "GetCreatorStats", &req.base);
    const Yaowei__Creator__V1__CreatorStats *st = handler_fx_reply(fc);
    YW_CHECK_INT(st->views, ==, 16);
    yw_fake_call_destroy(fc);
    handler_fx_close(&fx);
}

YW_TEST(creator_stats_sum_the_window_ending_on_end_day)
{
    open_service();
    create("hal", 1, "");
    Yaowei__Creator__V1__NoteDailyStats rows[4] = {
        stats_row("a", "hal", "2024-03-10", 1000, 400),
        stats_row("a", "hal", "2024-03-09", 2000, 900),
        stats_row("b", "hal", "2024-03-04", 800, 120), /* the window's first day */
        stats_row("b", "hal", "2024-03-03", 300, 60),  /* one day before it */
    };
    yw_fake_call_destroy(record_call(rows, 4));
    Yaowei__Creator__V1__GetCreatorStatsRequest req =
        YAOWEI__CREATOR__V1__GET_CREATOR_STATS_REQUEST__INIT;
    req.creator_id = "hal";
    req.window_days = 7;
    req.end_day = "2024-03-10";
    yw_fake_call_t *fc = handler_fx_call(&fx, "GetCreatorStats", &req.base);
    const Yaowei__Creator__V1__CreatorStats *st = handler_fx_reply(fc);
    YW_CHECK_STR(st->creator_id, "hal");
    YW_CHECK_STR(st->start_day, "2024-03-04");
    YW_CHECK_STR(st->end_day, "2024-03-10");
    YW_CHECK_INT(st->notes, ==, 2);
    YW_CHECK_INT(st->impressions, ==, 1000 + 2000 + 800);
    YW_CHECK_INT(st->views, ==, 400 + 900 + 120);
    YW_CHECK_INT(st->active_days, ==, 3);
    yw_fake_call_destroy(fc);
    req.window_days = -1;
    handler_fx_fails(&fx, "GetCreatorStats", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "window_days: must be within 1..366");
    req.window_days = 7;
    req.end_day = "2024-02-30";
    handler_fx_fails(&fx, "GetCreatorStats", &req.base, GRPC_STATUS_INVALID_ARGUMENT,
                     "end_day: must be a calendar date");
    req.end_day = "";
    req.creator_id = "ida";
    handler_fx_fails(&fx, "GetCreatorStats", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator_id: creator \"ida\" not found");
    handler_fx_close(&fx);
}

YW_TEST(batch_creator_stats_in_request_order_and_names_the_missing)
{
    open_service();
    create("j1", 1, "");
    create("j2", 1, "");
    Yaowei__Creator__V1__NoteDailyStats rows[2] = {
        stats_row("x", "j1", "2024-03-10", 10, 7),
        stats_row("y", "j2", "2024-03-10", 10, 3),
    };
    yw_fake_call_destroy(record_call(rows, 2));
    char *ids[] = {"j2", "j1"};
    Yaowei__Creator__V1__BatchGetCreatorStatsRequest req =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_REQUEST__INIT;
    req.creator_ids = ids;
    req.n_creator_ids = 2;
    req.end_day = "2024-03-10";
    yw_fake_call_t *fc = handler_fx_call(&fx, "BatchGetCreatorStats", &req.base);
    const Yaowei__Creator__V1__BatchGetCreatorStatsResponse *resp = handler_fx_reply(fc);
    YW_CHECK_INT(resp->n_stats, ==, 2);
    YW_CHECK_STR(resp->stats[0]->creator_id, "j2");
    YW_CHECK_INT(resp->stats[0]->views, ==, 3);
    YW_CHECK_STR(resp->stats[1]->creator_id, "j1");
    YW_CHECK_INT(resp->stats[1]->views, ==, 7);
    YW_CHECK_INT(resp->stats[1]->window_days, ==, 30); /* 0 means 30 */
    yw_fake_call_destroy(fc);
    char *missing[] = {"j1", "zed"};
    req.creator_ids = missing;
    handler_fx_fails(&fx, "BatchGetCreatorStats", &req.base, GRPC_STATUS_NOT_FOUND,
                     "creator_ids[1]: creator \"zed\" not found");
    req.n_creator_ids = 0;
    fc = handler_fx_call(&fx, "BatchGetCreatorStats", &req.base);
    YW_CHECK_INT(
        ((const Yaowei__Creator__V1__BatchGetCreatorStatsResponse *)handler_fx_reply(fc))->n_stats,
        ==, 0);
    yw_fake_call_destroy(fc);
    handler_fx_close(&fx);
}

/* ---- the call's life ---- */

YW_TEST(no_work_is_started_for_a_caller_whose_deadline_passed)
{
    open_service();
    creator_t c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    c.creator_id = "late";
    Yaowei__Creator__V1__CreateCreatorRequest req =
        YAOWEI__CREATOR__V1__CREATE_CREATOR_REQUEST__INIT;
    req.creator = &c;
    yw_fake_call_config_t cfg = {
        .service = &creator_service,
        .method = "CreateCreator",
        .service_ctx = fx.app,
        .request = &req.base,
        .timeout_ms = 1,
    };
    yw_fake_call_t *fc = NULL;
    YW_CHECK_INT(yw_fake_call_start(yw_app_runtime(fx.app), &cfg, &fc), ==, 0);
    usleep(5000); /* the deadline passes before the call arrives */
    handler_fx_run(fc);
    YW_CHECK_INT(yw_fake_call_status(fc, NULL), ==, GRPC_STATUS_DEADLINE_EXCEEDED);
    yw_fake_call_destroy(fc);
    handler_fx_expect_fail(get_call("late"), GRPC_STATUS_NOT_FOUND, "creator_id:");
    handler_fx_close(&fx);
}

YW_TEST(creators_are_loaded_again_at_a_restart)
{
    open_service();
    create("kim", 77, "south");
    handler_fx_reopen(&fx);
    yw_fake_call_t *fc = get_call("kim");
    const creator_t *got = handler_fx_reply(fc);
    YW_CHECK_INT(got->followers, ==, 77);
    YW_CHECK_STR(got->region, "south");
    yw_fake_call_destroy(fc);
    handler_fx_close(&fx);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(create_replies_the_creator_and_get_finds_it),
        YW_TEST_ENTRY(create_names_the_field_it_refuses),
        YW_TEST_ENTRY(
            a_retried_create_returns_the_first_creator_and_another_request_is_already_exists),
        YW_TEST_ENTRY(get_names_the_creator_it_does_not_find),
        YW_TEST_ENTRY(batch_get_answers_in_request_order_and_names_every_missing_id),
        YW_TEST_ENTRY(update_changes_only_the_masked_fields),
        YW_TEST_ENTRY(delete_removes_the_creator_once),
        YW_TEST_ENTRY(list_pages_in_creator_id_order_and_refuses_a_token_of_other_filters),
        YW_TEST_ENTRY(record_note_stats_upserts_and_refuses_a_batch_with_one_bad_row),
        YW_TEST_ENTRY(creator_stats_sum_the_window_ending_on_end_day),
        YW_TEST_ENTRY(batch_creator_stats_in_request_order_and_names_the_missing),
        YW_TEST_ENTRY(no_work_is_started_for_a_caller_whose_deadline_passed),
        YW_TEST_ENTRY(creators_are_loaded_again_at_a_restart),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
