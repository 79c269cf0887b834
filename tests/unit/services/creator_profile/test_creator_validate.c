/*
 * test_creator_validate.c — unit tests of services/creator_profile/creator_validate.c
 * and creator_day.c: every request rule, with the exact status and the exact message
 * (the field's path, index included, and the rule), and the calendar arithmetic.
 */
#include "services/creator_profile/creator_validate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <time.h>

#include "services/creator_profile/creator_day.h"
#include "tests/unit/test.h"

static char err[1024];

#define INVALID GRPC_STATUS_INVALID_ARGUMENT
#define OK GRPC_STATUS_OK

/* Runs `expr` (which writes `err`) and checks it fails with exactly `msg`. */
#define CHECK_INVALID(expr, msg)                                                                   \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        YW_CHECK_INT((expr), ==, INVALID);                                                         \
        YW_CHECK_STR(err, msg);                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        grpc_status_code c_ = (expr);                                                              \
        if (c_ != OK) {                                                                            \
            fprintf(stderr, "unexpected error: %s\n", err);                                        \
        }                                                                                          \
        YW_CHECK_INT(c_, ==, OK);                                                                  \
    } while (0)

static int64_t day_of(const char *s)
{
    int64_t d = -1;
    YW_CHECK_INT(creator_day_parse(s, &d), ==, 0);
    return d;
}

/* ---- creator_day ---- */

YW_TEST(day_parse_and_format_round_trip)
{
    static const struct {
        const char *s;
        int64_t day;
    } cases[] = {
        {"1970-01-01", 0},
        {"1970-01-02", 1},
        {"2000-02-29", 11016},
        {"2024-02-29", 19782},
        {"2024-03-01", 19783},
        {"1999-12-31", 10956},
        {"9999-12-31", CREATOR_DAY_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[CREATOR_DAY_BUFSZ];
        YW_CHECK_INT(day_of(cases[i].s), ==, cases[i].day);
        creator_day_format(cases[i].day, out);
        YW_CHECK_STR(out, cases[i].s);
    }
    /* Every day of four years, including a leap day, formats and parses back. */
    for (int64_t d = 19000; d < 19000 + 4 * 366; d++) {
        char out[CREATOR_DAY_BUFSZ];
        creator_day_format(d, out);
        YW_CHECK_INT(day_of(out), ==, d);
    }
}

YW_TEST(day_parse_rejects_non_dates)
{
    static const char *const bad[] = {
        "",           "2024-1-01",   "2024-01-1",   "20240101",   "2024/01/01",  "2024-13-01",
        "2024-00-10", "2024-01-00",  "2024-01-32",  "2023-02-29", "1900-02-29",  "2024-04-31",
        "1969-12-31", "2024-01-01 ", " 2024-01-01", "yesterday",  "2024-01-01x", "+024-01-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t d = 42;
        if (creator_day_parse(bad[i], &d) != -EINVAL) {
            fprintf(stderr, "accepted %s\n", bad[i]);
            abort();
        }
        YW_CHECK_INT(d, ==, 42);
    }
    int64_t d;
    YW_CHECK_INT(creator_day_parse(NULL, &d), ==, -EINVAL);
}

YW_TEST(day_today_is_now)
{
    int64_t t = creator_day_today();
    YW_CHECK_INT(t, ==, (int64_t)time(NULL) / 86400);
}

/* ---- helpers ---- */

YW_TEST(creator_id_rule)
{
    char id128[129], id129[130];
    memset(id128, 'a', 128);
    id128[128] = '\0';
    memset(id129, 'a', 129);
    id129[129] = '\0';
    YW_CHECK(creator_id_valid("a"));
    YW_CHECK(creator_id_valid("A.b-c_9"));
    YW_CHECK(creator_id_valid(id128));
    YW_CHECK(!creator_id_valid(id129));
    YW_CHECK(!creator_id_valid(""));
    YW_CHECK(!creator_id_valid(NULL));
    YW_CHECK(!creator_id_valid("has space"));
    YW_CHECK(!creator_id_valid("slash/no"));
    YW_CHECK(!creator_id_valid("\xc3\xbcnicode"));

    CHECK_OK(creator_validate_id("creator_id", "ok-1", err, sizeof err));
    CHECK_INVALID(creator_validate_id("creator_id", "", err, sizeof err), "creator_id: required");
    CHECK_INVALID(creator_validate_id("creator_ids[3]", "a b", err, sizeof err),
                  "creator_ids[3]: must be 1-128 characters of [A-Za-z0-9_.-], got \"a b\"");
}

/* ---- CreateCreator ---- */

typedef struct {
    Yaowei__Creator__V1__CreateCreatorRequest req;
    Yaowei__Creator__V1__Creator c;
    Google__Protobuf__Timestamp ts;
    char *cats[32];
} create_fx_t;

static void create_fx(create_fx_t *f)
{
    Yaowei__Creator__V1__CreateCreatorRequest req =
        YAOWEI__CREATOR__V1__CREATE_CREATOR_REQUEST__INIT;
    Yaowei__Creator__V1__Creator c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    f->req = req;
    f->c = c;
    f->ts = ts;
    f->cats[0] = "food";
    f->cats[1] = "travel";
    f->c.creator_id = "c-1";
    f->c.display_name = "Creator One";
    f->c.region = "CN-31";
    f->c.categories = f->cats;
    f->c.n_categories = 2;
    f->c.followers = 1234;
    f->req.creator = &f->c;
    f->req.request_id = "req-1";
}

YW_TEST(create_accepts_valid)
{
    create_fx_t f;
    create_fx(&f);
    CHECK_OK(creator_validate_create(&f.req, err, sizeof err));
    f.req.request_id = "";
    f.c.status = YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_SUSPENDED;
    f.c.create_time = &f.ts;
    f.ts.seconds = 1683356889;
    CHECK_OK(creator_validate_create(&f.req, err, sizeof err));
    f.c.n_categories = 0;
    f.c.categories = NULL;
    f.c.display_name = "\xe8\x85\xb0\xe5\xb0\xbe"; /* UTF-8 is fine in names */
    CHECK_OK(creator_validate_create(&f.req, err, sizeof err));
}

YW_TEST(create_requires_creator)
{
    create_fx_t f;
    create_fx(&f);
    f.req.creator = NULL;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err), "creator: required");
}

YW_TEST(create_rejects_bad_creator_id)
{
    create_fx_t f;
    create_fx(&f);
    f.c.creator_id = "";
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err), "creator.creator_id: required");
    f.c.creator_id = "slash/no";
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.creator_id: must be 1-128 characters of [A-Za-z0-9_.-], got "
                  "\"slash/no\"");
}

YW_TEST(create_rejects_long_or_bad_text)
{
    create_fx_t f;
    char name[258];
    memset(name, 'n', 257);
    name[257] = '\0';
    create_fx(&f);
    f.c.display_name = name;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.display_name: must be at most 256 bytes, got 257");
    name[256] = '\0';
    CHECK_OK(creator_validate_create(&f.req, err, sizeof err));
    f.c.display_name = "bad \xff utf8";
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.display_name: must be valid UTF-8");
    create_fx(&f);
    name[65] = '\0';
    f.c.region = name;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.region: must be at most 64 bytes, got 65");
    create_fx(&f);
    char rid[130];
    memset(rid, 'r', 129);
    rid[129] = '\0';
    f.req.request_id = rid;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "request_id: must be at most 128 bytes, got 129");
}

YW_TEST(create_rejects_bad_categories)
{
    create_fx_t f;
    char cat[66];
    create_fx(&f);
    for (int i = 0; i < 21; i++) {
        f.cats[i] = "c";
    }
    f.c.n_categories = 21;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.categories: at most 20 categories, got 21");
    f.c.n_categories = 20;
    CHECK_OK(creator_validate_create(&f.req, err, sizeof err));

    create_fx(&f);
    f.cats[1] = "";
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.categories[1]: must not be empty");
    memset(cat, 'k', 65);
    cat[65] = '\0';
    f.cats[1] = cat;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.categories[1]: must be at most 64 bytes, got 65");
    f.cats[1] = "a\x1f"
                "b"; /* the stored separator */
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.categories[1]: must not contain control characters");
    f.cats[1] = "\xc3";
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.categories[1]: must be valid UTF-8");
}

YW_TEST(create_rejects_negative_followers_and_unknown_status)
{
    create_fx_t f;
    create_fx(&f);
    f.c.followers = -1;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.followers: must be >= 0, got -1");
    create_fx(&f);
    f.c.status = (Yaowei__Creator__V1__CreatorStatus)7;
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.status: must be CREATOR_STATUS_ACTIVE (1) or "
                  "CREATOR_STATUS_SUSPENDED (2), got 7");
}

YW_TEST(create_rejects_out_of_range_create_time)
{
    create_fx_t f;
    create_fx(&f);
    f.c.create_time = &f.ts;
    f.ts.seconds = INT64_C(253402300800); /* 10000-01-01 */
    CHECK_INVALID(creator_validate_create(&f.req, err, sizeof err),
                  "creator.create_time: must be within 0001-01-01T00:00:00Z and "
                  "9999-12-31T23:59:59.999999999Z, got seconds=253402300800 nanos=0");
    f.ts.seconds = 0;
    f.ts.nanos = 1000000000;
    YW_CHECK_INT(creator_validate_create(&f.req, err, sizeof err), ==, INVALID);
    YW_CHECK(strncmp(err, "creator.create_time: ", 21) == 0);
    f.ts.nanos = -1;
    YW_CHECK_INT(creator_validate_create(&f.req, err, sizeof err), ==, INVALID);
}

/* ---- UpdateCreator ---- */

typedef struct {
    Yaowei__Creator__V1__UpdateCreatorRequest req;
    Yaowei__Creator__V1__Creator c;
    Google__Protobuf__FieldMask mask;
    char *paths[8];
} update_fx_t;

static void update_fx(update_fx_t *f, size_t n_paths, ...)
{
    Yaowei__Creator__V1__UpdateCreatorRequest req =
        YAOWEI__CREATOR__V1__UPDATE_CREATOR_REQUEST__INIT;
    Yaowei__Creator__V1__Creator c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    va_list ap;
    f->req = req;
    f->c = c;
    f->mask = mask;
    f->c.creator_id = "c-1";
    f->req.creator = &f->c;
    va_start(ap, n_paths);
    for (size_t i = 0; i < n_paths; i++) {
        f->paths[i] = va_arg(ap, char *);
    }
    va_end(ap);
    f->mask.n_paths = n_paths;
    f->mask.paths = f->paths;
    f->req.update_mask = &f->mask;
}

YW_TEST(update_mask_paths_become_bits)
{
    update_fx_t f;
    unsigned mask = 0;
    update_fx(&f, 2, "display_name", "followers");
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    YW_CHECK_INT(mask, ==, CREATOR_FIELD_DISPLAY_NAME | CREATOR_FIELD_FOLLOWERS);
    update_fx(&f, 3, "region", "categories", "status");
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    YW_CHECK_INT(mask, ==, CREATOR_FIELD_REGION | CREATOR_FIELD_CATEGORIES | CREATOR_FIELD_STATUS);
    /* No mask, an empty mask, or "*": every mutable field. */
    update_fx(&f, 0);
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    YW_CHECK_INT(mask, ==, CREATOR_FIELD_ALL);
    f.req.update_mask = NULL;
    mask = 0;
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    YW_CHECK_INT(mask, ==, CREATOR_FIELD_ALL);
    update_fx(&f, 1, "*");
    mask = 0;
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    YW_CHECK_INT(mask, ==, CREATOR_FIELD_ALL);
}

YW_TEST(update_rejects_unknown_path_by_index)
{
    update_fx_t f;
    unsigned mask = 0;
    update_fx(&f, 2, "region", "no_such_field");
    CHECK_INVALID(creator_validate_update(&f.req, &mask, err, sizeof err),
                  "update_mask.paths[1]: unknown field \"no_such_field\"; updatable fields are "
                  "display_name, region, categories, followers, status");
    update_fx(&f, 1, "creator_id");
    CHECK_INVALID(creator_validate_update(&f.req, &mask, err, sizeof err),
                  "update_mask.paths[0]: unknown field \"creator_id\"; updatable fields are "
                  "display_name, region, categories, followers, status");
    update_fx(&f, 1, "create_time");
    YW_CHECK_INT(creator_validate_update(&f.req, &mask, err, sizeof err), ==, INVALID);
    YW_CHECK(strncmp(err, "update_mask.paths[0]: ", 22) == 0);
}

YW_TEST(update_checks_only_masked_fields)
{
    update_fx_t f;
    unsigned mask = 0;
    update_fx(&f, 1, "region");
    f.c.followers = -5; /* not masked: ignored */
    CHECK_OK(creator_validate_update(&f.req, &mask, err, sizeof err));
    update_fx(&f, 1, "followers");
    f.c.followers = -5;
    CHECK_INVALID(creator_validate_update(&f.req, &mask, err, sizeof err),
                  "creator.followers: must be >= 0, got -5");
    update_fx(&f, 0);
    f.c.status = (Yaowei__Creator__V1__CreatorStatus)9;
    YW_CHECK_INT(creator_validate_update(&f.req, &mask, err, sizeof err), ==, INVALID);
    YW_CHECK(strncmp(err, "creator.status: ", 16) == 0);
}

YW_TEST(update_requires_creator_and_id)
{
    update_fx_t f;
    unsigned mask = 0;
    update_fx(&f, 1, "region");
    f.req.creator = NULL;
    CHECK_INVALID(creator_validate_update(&f.req, &mask, err, sizeof err), "creator: required");
    update_fx(&f, 1, "region");
    f.c.creator_id = "";
    CHECK_INVALID(creator_validate_update(&f.req, &mask, err, sizeof err),
                  "creator.creator_id: required");
}

/* ---- batch ids ---- */

YW_TEST(batch_ids_limit_and_each)
{
    static char *ids[1001];
    for (size_t i = 0; i < 1001; i++) {
        ids[i] = "same";
    }
    CHECK_OK(creator_validate_ids("creator_ids", ids, 1000, err, sizeof err));
    CHECK_OK(creator_validate_ids("creator_ids", ids, 0, err, sizeof err));
    CHECK_INVALID(creator_validate_ids("creator_ids", ids, 1001, err, sizeof err),
                  "creator_ids: at most 1000 ids, got 1001");
    ids[2] = "";
    CHECK_INVALID(creator_validate_ids("creator_ids", ids, 3, err, sizeof err),
                  "creator_ids[2]: required");
    ids[2] = "bad id";
    CHECK_INVALID(creator_validate_ids("creator_ids", ids, 3, err, sizeof err),
                  "creator_ids[2]: must be 1-128 characters of [A-Za-z0-9_.-], got \"bad id\"");
}

YW_TEST(missing_message_names_ids)
{
    char buf[4096];
    char *ids[40];
    char names[40][16];
    size_t missing[40];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        ids[i] = names[i];
        missing[i] = (size_t)i;
    }
    size_t one[] = {3};
    YW_CHECK_STR(creator_missing_message("creator_ids", ids, one, 1, buf, sizeof buf),
                 "creator_ids[3]: creator \"m3\" not found");
    size_t two[] = {0, 2};
    YW_CHECK_STR(creator_missing_message("creator_ids", ids, two, 2, buf, sizeof buf),
                 "creator_ids: 2 creators not found: creator_ids[0] \"m0\", creator_ids[2] \"m2\"");
    creator_missing_message("creator_ids", ids, missing, 40, buf, sizeof buf);
    YW_CHECK(strncmp(buf, "creator_ids: 40 creators not found: creator_ids[0] \"m0\",", 56) == 0);
    YW_CHECK(strstr(buf, "creator_ids[19] \"m19\", and 20 more") != NULL);
    YW_CHECK(strstr(buf, "m20") == NULL);
    /* A small buffer is never overrun. */
    char small[40];
    creator_missing_message("creator_ids", ids, missing, 40, small, sizeof small);
    YW_CHECK(strlen(small) < sizeof small);
}

/* ---- ListCreators ---- */

YW_TEST(list_rules)
{
    Yaowei__Creator__V1__ListCreatorsRequest req = YAOWEI__CREATOR__V1__LIST_CREATORS_REQUEST__INIT;
    CHECK_OK(creator_validate_list(&req, err, sizeof err));
    req.page_size = -1;
    CHECK_INVALID(creator_validate_list(&req, err, sizeof err), "page_size: must be >= 0, got -1");
    req.page_size = 5000; /* clamped later, not an error */
    CHECK_OK(creator_validate_list(&req, err, sizeof err));
    req.min_followers = -3;
    CHECK_INVALID(creator_validate_list(&req, err, sizeof err),
                  "min_followers: must be >= 0, got -3");
    req.min_followers = 10;
    req.max_followers = -1;
    CHECK_INVALID(creator_validate_list(&req, err, sizeof err),
                  "max_followers: must be >= 0 (0 means no upper bound), got -1");
    req.max_followers = 5;
    CHECK_INVALID(creator_validate_list(&req, err, sizeof err),
                  "max_followers: must be >= min_followers (10) or 0, got 5");
    req.max_followers = 10;
    CHECK_OK(creator_validate_list(&req, err, sizeof err));
    req.max_followers = 0;
    CHECK_OK(creator_validate_list(&req, err, sizeof err));
    char cat[66];
    memset(cat, 'c', 65);
    cat[65] = '\0';
    req.category = cat;
    CHECK_INVALID(creator_validate_list(&req, err, sizeof err),
                  "category: must be at most 64 bytes, got 65");
}

/* ---- RecordNoteStats ---- */

#define NROWS 6

typedef struct {
    Yaowei__Creator__V1__RecordNoteStatsRequest req;
    Yaowei__Creator__V1__NoteDailyStats rows[NROWS];
    Yaowei__Creator__V1__NoteDailyStats *ptrs[NROWS];
    int64_t today;
} stats_fx_t;

static void stats_fx(stats_fx_t *f)
{
    Yaowei__Creator__V1__RecordNoteStatsRequest req =
        YAOWEI__CREATOR__V1__RECORD_NOTE_STATS_REQUEST__INIT;
    Yaowei__Creator__V1__NoteDailyStats row = YAOWEI__CREATOR__V1__NOTE_DAILY_STATS__INIT;
    f->req = req;
    f->today = day_of("2024-05-10");
    for (int i = 0; i < NROWS; i++) {
        f->rows[i] = row;
        f->rows[i].note_id = "n-1";
        f->rows[i].creator_id = "c-1";
        f->rows[i].day = "2024-05-09";
        f->rows[i].impressions = 100;
        f->rows[i].views = 10;
        f->rows[i].completion_rate = 0.5;
        f->ptrs[i] = &f->rows[i];
    }
    f->req.stats = f->ptrs;
    f->req.n_stats = NROWS;
}

YW_TEST(stats_accepts_valid_rows)
{
    stats_fx_t f;
    stats_fx(&f);
    CHECK_OK(creator_validate_record_stats(&f.req, f.today, err, sizeof err));
    f.rows[0].day = "2024-05-10"; /* today itself is fine */
    f.rows[1].completion_rate = 0.0;
    f.rows[2].completion_rate = 1.0;
    f.rows[3].likes = CREATOR_COUNT_MAX;
    CHECK_OK(creator_validate_record_stats(&f.req, f.today, err, sizeof err));
    f.req.n_stats = 0;
    CHECK_OK(creator_validate_record_stats(&f.req, f.today, err, sizeof err));
}

YW_TEST(stats_names_row_and_field)
{
    stats_fx_t f;
    stats_fx(&f);
    f.rows[3].completion_rate = 1.5;
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[3].completion_rate: must be within [0, 1], got 1.5");
    f.rows[3].completion_rate = -0.1;
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[3].completion_rate: must be within [0, 1], got -0.1");
    f.rows[3].completion_rate = NAN;
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[3].completion_rate: must be within [0, 1], got nan");
    stats_fx(&f);
    f.rows[2].likes = -1;
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[2].likes: must be >= 0, got -1");
    stats_fx(&f);
    f.rows[1].views = CREATOR_COUNT_MAX + 1;
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[1].views: must be <= 1000000000000000, got 1000000000000001");
}

YW_TEST(stats_checks_every_count)
{
    static const char *const names[] = {"impressions",  "views",  "video_plays",
                                        "avg_watch_ms", "likes",  "collects",
                                        "comments",     "shares", "follows_gained"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        stats_fx_t f;
        stats_fx(&f);
        Yaowei__Creator__V1__NoteDailyStats *r = &f.rows[4];
        int64_t *fields[] = {&r->impressions,  &r->views,  &r->video_plays,
                             &r->avg_watch_ms, &r->likes,  &r->collects,
                             &r->comments,     &r->shares, &r->follows_gained};
        *fields[k] = -7;
        char want[128];
        snprintf(want, sizeof want, "stats[4].%s: must be >= 0, got -7", names[k]);
        CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err), want);
    }
}

YW_TEST(stats_day_rules)
{
    stats_fx_t f;
    stats_fx(&f);
    f.rows[0].day = "2024-05-11";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[0].day: must not be after today (2024-05-10 UTC), got \"2024-05-11\"");
    f.rows[0].day = "2023-02-29";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[0].day: must be a calendar date \"YYYY-MM-DD\" from 1970-01-01, got "
                  "\"2023-02-29\"");
    f.rows[0].day = "2024/01/02";
    YW_CHECK_INT(creator_validate_record_stats(&f.req, f.today, err, sizeof err), ==, INVALID);
    YW_CHECK(strncmp(err, "stats[0].day: must be a calendar date", 37) == 0);
    f.rows[0].day = "";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[0].day: required");
}

YW_TEST(stats_ids)
{
    stats_fx_t f;
    stats_fx(&f);
    f.rows[5].note_id = "";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[5].note_id: required");
    f.rows[5].note_id = "tab\there";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[5].note_id: must be UTF-8 without control characters, got "
                  "\"tab\\x09here\"");
    stats_fx(&f);
    f.rows[1].creator_id = "";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[1].creator_id: required");
    f.rows[1].creator_id = "a b";
    CHECK_INVALID(creator_validate_record_stats(&f.req, f.today, err, sizeof err),
                  "stats[1].creator_id: must be 1-128 characters of [A-Za-z0-9_.-], got \"a b\"");
}

YW_TEST(stats_first_bad_row_wins)
{
    stats_fx_t f;
    stats_fx(&f);
    f.rows[2].likes = -1;
    f.rows[4].completion_rate = 2.0;
    YW_CHECK_INT(creator_validate_record_stats(&f.req, f.today, err, sizeof err), ==, INVALID);
    YW_CHECK(strncmp(err, "stats[2].", 9) == 0);
}

static int known_creator(const char *id, void *ctx)
{
    (*(int *)ctx)++;
    return strcmp(id, "c-1") == 0 || strcmp(id, "c-2") == 0;
}

YW_TEST(stats_unknown_creator_is_named_in_row_order)
{
    stats_fx_t f;
    int asked = 0;
    stats_fx(&f);
    f.rows[3].creator_id = "c-2";
    CHECK_OK(creator_validate_record_stats_known(&f.req, f.today, known_creator, &asked, err,
                                                 sizeof err));
    /* Asked once per run of the same creator: c-1, c-2, c-1. */
    YW_CHECK_INT(asked, ==, 3);
    /* An unknown creator before a bad value: the unknown creator is the first bad row. */
    f.rows[1].creator_id = "nobody";
    f.rows[4].likes = -1;
    CHECK_INVALID(creator_validate_record_stats_known(&f.req, f.today, known_creator, &asked, err,
                                                      sizeof err),
                  "stats[1].creator_id: creator \"nobody\" does not exist");
    /* And after it: the bad value is. */
    f.rows[1].creator_id = "c-1";
    f.rows[0].likes = -1;
    f.rows[2].creator_id = "nobody";
    CHECK_INVALID(creator_validate_record_stats_known(&f.req, f.today, known_creator, &asked, err,
                                                      sizeof err),
                  "stats[0].likes: must be >= 0, got -1");
    /* Without a predicate nobody is asked. */
    f.rows[0].likes = 0;
    f.rows[4].likes = 0;
    CHECK_OK(creator_validate_record_stats(&f.req, f.today, err, sizeof err));
}

YW_TEST(stats_bad_row_is_told)
{
    stats_fx_t f;
    int asked = 0;
    size_t bad = 0;
    stats_fx(&f);
    CHECK_OK(creator_validate_record_stats_row(&f.req, f.today, known_creator, &asked, &bad, err,
                                               sizeof err));
    YW_CHECK_INT(bad, ==, f.req.n_stats);
    f.rows[3].likes = -1;
    CHECK_INVALID(
        creator_validate_record_stats_row(&f.req, f.today, NULL, NULL, &bad, err, sizeof err),
        "stats[3].likes: must be >= 0, got -1");
    YW_CHECK_INT(bad, ==, 3);
    f.rows[2].creator_id = "nobody";
    CHECK_INVALID(creator_validate_record_stats_row(&f.req, f.today, known_creator, &asked, &bad,
                                                    err, sizeof err),
                  "stats[2].creator_id: creator \"nobody\" does not exist");
    YW_CHECK_INT(bad, ==, 2);
}

YW_TEST(stats_row_limit)
{
    Yaowei__Creator__V1__RecordNoteStatsRequest req =
        YAOWEI__CREATOR__V1__RECORD_NOTE_STATS_REQUEST__INIT;
    static Yaowei__Creator__V1__NoteDailyStats row = YAOWEI__CREATOR__V1__NOTE_DAILY_STATS__INIT;
    static Yaowei__Creator__V1__NoteDailyStats *ptrs[10001];
    row.note_id = "n";
    row.creator_id = "c";
    row.day = "2024-01-01";
    for (int i = 0; i < 10001; i++) {
        ptrs[i] = &row;
    }
    req.stats = ptrs;
    req.n_stats = 10001;
    CHECK_INVALID(creator_validate_record_stats(&req, day_of("2024-05-10"), err, sizeof err),
                  "stats: at most 10000 rows, got 10001");
    req.n_stats = 10000;
    CHECK_OK(creator_validate_record_stats(&req, day_of("2024-05-10"), err, sizeof err));
}

/* ---- stats window ---- */

YW_TEST(window_rules)
{
    int32_t w = -1;
    int64_t end = -1, today = day_of("2024-05-10");
    CHECK_OK(creator_validate_window(0, "", today, &w, &end, err, sizeof err));
    YW_CHECK_INT(w, ==, 30);
    YW_CHECK_INT(end, ==, today);
    CHECK_OK(creator_validate_window(366, "2024-02-29", today, &w, &end, err, sizeof err));
    YW_CHECK_INT(w, ==, 366);
    YW_CHECK_INT(end, ==, day_of("2024-02-29"));
    CHECK_OK(creator_validate_window(1, NULL, today, &w, &end, err, sizeof err));
    YW_CHECK_INT(w, ==, 1);
    YW_CHECK_INT(end, ==, today);
    CHECK_INVALID(creator_validate_window(367, "", today, &w, &end, err, sizeof err),
                  "window_days: must be within 1..366 (0 means 30), got 367");
    CHECK_INVALID(creator_validate_window(-1, "", today, &w, &end, err, sizeof err),
                  "window_days: must be within 1..366 (0 means 30), got -1");
    CHECK_INVALID(creator_validate_window(7, "2024-13-01", today, &w, &end, err, sizeof err),
                  "end_day: must be a calendar date \"YYYY-MM-DD\" from 1970-01-01 or empty "
                  "(today), got \"2024-13-01\"");
    YW_CHECK_INT(creator_validate_window(7, "yesterday", today, &w, &end, err, sizeof err), ==,
                 INVALID);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(day_parse_and_format_round_trip),
        YW_TEST_ENTRY(day_parse_rejects_non_dates),
        YW_TEST_ENTRY(day_today_is_now),
        YW_TEST_ENTRY(creator_id_rule),
        YW_TEST_ENTRY(create_accepts_valid),
        YW_TEST_ENTRY(create_requires_creator),
        YW_TEST_ENTRY(create_rejects_bad_creator_id),
        YW_TEST_ENTRY(create_rejects_long_or_bad_text),
        YW_TEST_ENTRY(create_rejects_bad_categories),
        YW_TEST_ENTRY(create_rejects_negative_followers_and_unknown_status),
        YW_TEST_ENTRY(create_rejects_out_of_range_create_time),
        YW_TEST_ENTRY(update_mask_paths_become_bits),
        YW_TEST_ENTRY(update_rejects_unknown_path_by_index),
        YW_TEST_ENTRY(update_checks_only_masked_fields),
        YW_TEST_ENTRY(update_requires_creator_and_id),
        YW_TEST_ENTRY(batch_ids_limit_and_each),
        YW_TEST_ENTRY(missing_message_names_ids),
        YW_TEST_ENTRY(list_rules),
        YW_TEST_ENTRY(stats_accepts_valid_rows),
        YW_TEST_ENTRY(stats_names_row_and_field),
        YW_TEST_ENTRY(stats_checks_every_count),
        YW_TEST_ENTRY(stats_day_rules),
        YW_TEST_ENTRY(stats_ids),
        YW_TEST_ENTRY(stats_first_bad_row_wins),
        YW_TEST_ENTRY(stats_unknown_creator_is_named_in_row_order),
        YW_TEST_ENTRY(stats_bad_row_is_told),
        YW_TEST_ENTRY(stats_row_limit),
        YW_TEST_ENTRY(window_rules),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
