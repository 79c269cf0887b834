/*
 * test_creator_store.c — unit tests of services/creator_profile/creator_store.c: the
 * schema and every store job, run the way the service runs them (yw_store_write /
 * yw_store_read on a real SQLite file in a fresh temporary directory, done on the loop),
 * with exact statuses and messages, and stats checked against hand-computed values.
 *
 * With YW_TEST_PG_URI set (an empty PostgreSQL database), the same tests run on
 * PostgreSQL with creator_pg_migrations: each test starts from empty tables.
 */
#include "services/creator_profile/creator_store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/sql.h"
#include "services/creator_profile/creator_day.h"
#include "tests/unit/test.h"

/* PostgreSQL instead of SQLite: YW_TEST_PG_URI, read in main(); NULL for SQLite. */
static const char *g_pg_uri;

/* ---- fixture ---------------------------------------------------------------------- */

typedef struct {
    char dir[256];
    char path[300];
    uv_loop_t loop;
    yw_store_t *store;
} fixture_t;

static int g_done;
static grpc_status_code g_status;

static void on_done(yw_store_job_t *job, grpc_status_code status)
{
    (void)job;
    g_done++;
    g_status = status;
}

static void open_store(fixture_t *f)
{
    char err[256];
    yw_store_config_t cfg = {
        .path = f->path,
        .migrations = creator_migrations,
        .n_migrations = CREATOR_N_MIGRATIONS,
        .pg_uri = g_pg_uri,
        .pg_migrations = creator_pg_migrations,
        .n_pg_migrations = CREATOR_N_PG_MIGRATIONS,
        .pg_schema = "creator_profile",
        .pg_pool = 2,
    };
    int rc = yw_store_open(&f->loop, &cfg, &f->store, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "yw_store_open: %s\n", err);
    }
    YW_CHECK_INT(rc, ==, 0);
}

static const char sql_truncate[] =
    "TRUNCATE creators, creator_categories, create_requests, note_stats";

static grpc_status_code truncate_fn(yw_store_conn_t *conn, void *arg)
{
    (void)arg;
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, sql_truncate, msg, sizeof msg);
    if (st == NULL) {
        fprintf(stderr, "%s\n", msg);
        return GRPC_STATUS_INTERNAL;
    }
    int rc = yw_sql_step(st);
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : GRPC_STATUS_INTERNAL;
}

static void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/creatorXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/creator_profile.db", f->dir);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    open_store(f);
    if (g_pg_uri != NULL) {
        /* One database for every test: start from empty tables. */
        char err[256];
        YW_CHECK_INT(yw_store_run_sync(f->store, truncate_fn, NULL, err, sizeof err), ==,
                     GRPC_STATUS_OK);
    }
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void close_store(fixture_t *f)
{
    int closed = 0;
    yw_store_close(f->store, on_closed, &closed);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(closed, ==, 1);
    f->store = NULL;
}

static void fixture_done(fixture_t *f)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[320];
    if (f->store != NULL) {
        close_store(f);
    }
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        (void)unlink(p);
    }
    YW_CHECK_INT(rmdir(f->dir), ==, 0);
}

/* Queues `job` and runs the loop until its done ran; returns the status. */
static grpc_status_code run(fixture_t *f, yw_store_job_t *job, int write)
{
    g_done = 0;
    job->done = on_done;
    YW_CHECK_INT(write ? yw_store_write(f->store, job) : yw_store_read(f->store, job), ==, 0);
    while (g_done == 0) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(g_done, ==, 1);
    return g_status;
}

typedef struct {
    const char *sql;
    int64_t value;
} query_t;

/* On either database (sql.h): the statements are cached by address, the queries are
 * string literals. */
static grpc_status_code query_fn(yw_store_conn_t *conn, void *arg)
{
    query_t *q = arg;
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, q->sql, msg, sizeof msg);
    if (st == NULL) {
        fprintf(stderr, "%s\n", msg);
        return GRPC_STATUS_INTERNAL;
    }
    int rc = yw_sql_step(st);
    q->value = rc == YW_SQL_ROW ? yw_sql_column_i64(st, 0) : -1;
    yw_sql_done(st);
    return rc == YW_SQL_ROW ? GRPC_STATUS_OK : GRPC_STATUS_INTERNAL;
}

/* The integer a one-row query returns, read with yw_store_run_sync. */
static int64_t query(fixture_t *f, const char *sql)
{
    char err[256];
    query_t q = {sql, 0};
    YW_CHECK_INT(yw_store_run_sync(f->store, query_fn, &q, err, sizeof err), ==, GRPC_STATUS_OK);
    return q.value;
}

/* ---- request builders ---- */

typedef struct {
    Yaowei__Creator__V1__Creator c;
    Google__Protobuf__Timestamp ts;
    char *cats[4];
} creator_msg_t;

static void creator_msg(creator_msg_t *m, const char *id, const char *region, const char *cat0,
                        const char *cat1, int64_t followers)
{
    Yaowei__Creator__V1__Creator c = YAOWEI__CREATOR__V1__CREATOR__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    m->c = c;
    m->ts = ts;
    m->c.creator_id = (char *)id;
    m->c.display_name = "Name";
    m->c.region = (char *)region;
    m->c.n_categories = 0;
    if (cat0 != NULL) {
        m->cats[m->c.n_categories++] = (char *)cat0;
    }
    if (cat1 != NULL) {
        m->cats[m->c.n_categories++] = (char *)cat1;
    }
    m->c.categories = m->c.n_categories ? m->cats : NULL;
    m->c.followers = followers;
}

/* Creates a creator; returns the job's status and leaves the job's record in *out. */
static grpc_status_code create_with(fixture_t *f, const char *request_id,
                                    const Yaowei__Creator__V1__Creator *c, creator_create_job_t *j)
{
    creator_create_job_init(j, on_done);
    j->request_id = request_id;
    j->creator = c;
    j->now_seconds = 1700000000;
    j->now_nanos = 123;
    return run(f, &j->job, 1);
}

static void create_simple(fixture_t *f, const char *id, const char *region, const char *cat0,
                          const char *cat1, int64_t followers)
{
    creator_msg_t m;
    creator_create_job_t j;
    creator_msg(&m, id, region, cat0, cat1, followers);
    YW_CHECK_INT(create_with(f, NULL, &m.c, &j), ==, GRPC_STATUS_OK);
    creator_create_job_dispose(&j);
}

/* ---- schema ---- */

YW_TEST(schema_migrates_to_version_1)
{
    fixture_t f;
    fixture_init(&f);
    YW_CHECK_INT(yw_store_schema_version(f.store), ==, 1);
    if (g_pg_uri != NULL) {
        YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN "
                               "('creators', 'creator_categories', 'create_requests', "
                               "'note_stats')"),
                     ==, 4);
        YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM pg_indexes WHERE indexname = "
                               "'note_stats_creator_day'"),
                     ==, 1);
        /* Keys compare bytes, as SQLite's BINARY: 'B' < '_' < 'a'. */
        YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM information_schema.columns WHERE "
                               "table_name = 'creators' AND column_name = 'creator_id' AND "
                               "collation_name = 'C'"),
                     ==, 1);
    } else {
        YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                               "name IN ('creators', 'creator_categories', 'create_requests', "
                               "'note_stats')"),
                     ==, 4);
        YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND "
                               "name = 'note_stats_creator_day'"),
                     ==, 1);
    }
    /* Reopening an up-to-date file changes nothing. */
    close_store(&f);
    open_store(&f);
    YW_CHECK_INT(yw_store_schema_version(f.store), ==, 1);
    fixture_done(&f);
}

/* ---- CreateCreator ---- */

YW_TEST(create_stores_and_returns_creator)
{
    fixture_t f;
    creator_msg_t m;
    creator_create_job_t j;
    fixture_init(&f);
    creator_msg(&m, "c-1", "CN-31", "food", "travel", 56789);
    YW_CHECK_INT(create_with(&f, "", &m.c, &j), ==, GRPC_STATUS_OK);
    YW_CHECK(j.result != NULL);
    YW_CHECK_INT(j.replayed, ==, 0);
    const Yaowei__Creator__V1__Creator *r = &j.result->msg;
    YW_CHECK_STR(r->creator_id, "c-1");
    YW_CHECK_STR(r->display_name, "Name");
    YW_CHECK_STR(r->region, "CN-31");
    YW_CHECK_INT(r->n_categories, ==, 2);
    YW_CHECK_STR(r->categories[0], "food");
    YW_CHECK_STR(r->categories[1], "travel");
    YW_CHECK_INT(r->followers, ==, 56789);
    /* UNSPECIFIED on create means ACTIVE; create_time and update_time are "now". */
    YW_CHECK_INT(r->status, ==, YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_ACTIVE);
    YW_CHECK_INT(r->create_time->seconds, ==, 1700000000);
    YW_CHECK_INT(r->create_time->nanos, ==, 123);
    YW_CHECK_INT(r->update_time->seconds, ==, 1700000000);
    creator_create_job_dispose(&j);
    YW_CHECK(j.result == NULL);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creators"), ==, 1);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories WHERE creator_id = 'c-1'"), ==,
                 2);
    YW_CHECK_INT(query(&f, "SELECT status FROM creators"), ==, 1);
    fixture_done(&f);
}

YW_TEST(create_keeps_caller_create_time_and_status)
{
    fixture_t f;
    creator_msg_t m;
    creator_create_job_t j;
    fixture_init(&f);
    creator_msg(&m, "c-2", "", NULL, NULL, 0);
    m.ts.seconds = 1683356889;
    m.ts.nanos = 5;
    m.c.create_time = &m.ts;
    m.c.status = YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_SUSPENDED;
    YW_CHECK_INT(create_with(&f, NULL, &m.c, &j), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.result->msg.create_time->seconds, ==, 1683356889);
    YW_CHECK_INT(j.result->msg.create_time->nanos, ==, 5);
    YW_CHECK_INT(j.result->msg.update_time->seconds, ==, 1700000000);
    YW_CHECK_INT(j.result->msg.status, ==,
                 YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_SUSPENDED);
    YW_CHECK_INT(j.result->msg.n_categories, ==, 0);
    creator_create_job_dispose(&j);
    fixture_done(&f);
}

YW_TEST(create_existing_id_is_already_exists)
{
    fixture_t f;
    creator_msg_t m;
    creator_create_job_t j;
    fixture_init(&f);
    create_simple(&f, "dup", "CN-31", "food", NULL, 1);
    creator_msg(&m, "dup", "US-CA", NULL, NULL, 2);
    YW_CHECK_INT(create_with(&f, NULL, &m.c, &j), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_STR(j.job.errmsg, "creator.creator_id: creator \"dup\" already exists");
    YW_CHECK(j.result == NULL);
    /* With a new request_id too; and the original is untouched. */
    YW_CHECK_INT(create_with(&f, "req-new", &m.c, &j), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(query(&f, "SELECT followers FROM creators WHERE creator_id = 'dup'"), ==, 1);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM create_requests"), ==, 0);
    fixture_done(&f);
}

YW_TEST(create_request_id_is_idempotent)
{
    fixture_t f;
    creator_msg_t m;
    creator_create_job_t j1, j2, j3;
    fixture_init(&f);
    creator_msg(&m, "idem", "CN-31", "food", NULL, 10);
    YW_CHECK_INT(create_with(&f, "req-1", &m.c, &j1), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j1.replayed, ==, 0);
    /* The retry returns the creator as it is now, without writing. */
    m.c.followers = 999;
    YW_CHECK_INT(create_with(&f, "req-1", &m.c, &j2), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j2.replayed, ==, 1);
    YW_CHECK_INT(j2.result->msg.followers, ==, 10);
    YW_CHECK_STR(j2.result->msg.categories[0], "food");
    YW_CHECK_INT(j2.result->msg.create_time->seconds, ==, j1.result->msg.create_time->seconds);
    /* The same request_id for another creator_id is a caller error. */
    creator_msg(&m, "other", "", NULL, NULL, 0);
    YW_CHECK_INT(create_with(&f, "req-1", &m.c, &j3), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j3.job.errmsg,
                 "request_id: already used to create creator \"idem\", not \"other\"");
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creators"), ==, 1);
    creator_create_job_dispose(&j1);
    creator_create_job_dispose(&j2);
    creator_create_job_dispose(&j3);
    fixture_done(&f);
}

/* ---- UpdateCreator ---- */

static grpc_status_code update_with(fixture_t *f, const Yaowei__Creator__V1__Creator *c,
                                    unsigned mask, creator_update_job_t *j)
{
    creator_update_job_init(j, on_done);
    j->creator = c;
    j->mask = mask;
    j->now_seconds = 1800000000;
    j->now_nanos = 9;
    return run(f, &j->job, 1);
}

YW_TEST(update_changes_only_masked_fields)
{
    fixture_t f;
    creator_msg_t m;
    creator_update_job_t j;
    fixture_init(&f);
    create_simple(&f, "u", "CN-31", "food", NULL, 100);
    creator_msg(&m, "u", "US-CA", "beauty", "tech", 999);
    m.c.display_name = "New name";
    YW_CHECK_INT(update_with(&f, &m.c, CREATOR_FIELD_DISPLAY_NAME | CREATOR_FIELD_FOLLOWERS, &j),
                 ==, GRPC_STATUS_OK);
    const Yaowei__Creator__V1__Creator *r = &j.result->msg;
    YW_CHECK_STR(r->display_name, "New name");
    YW_CHECK_INT(r->followers, ==, 999);
    YW_CHECK_STR(r->region, "CN-31");
    YW_CHECK_INT(r->n_categories, ==, 1);
    YW_CHECK_STR(r->categories[0], "food");
    YW_CHECK_INT(r->status, ==, 1);
    YW_CHECK_INT(r->create_time->seconds, ==, 1700000000);
    YW_CHECK_INT(r->update_time->seconds, ==, 1800000000);
    YW_CHECK_INT(r->update_time->nanos, ==, 9);
    creator_update_job_dispose(&j);
    YW_CHECK_INT(query(&f, "SELECT followers FROM creators WHERE creator_id = 'u'"), ==, 999);
    YW_CHECK_INT(query(&f, "SELECT update_time_s FROM creators WHERE creator_id = 'u'"), ==,
                 1800000000);

    /* Categories and status: the category index follows. */
    m.c.status = YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_SUSPENDED;
    YW_CHECK_INT(update_with(&f, &m.c, CREATOR_FIELD_CATEGORIES | CREATOR_FIELD_STATUS, &j), ==,
                 GRPC_STATUS_OK);
    r = &j.result->msg;
    YW_CHECK_INT(r->n_categories, ==, 2);
    YW_CHECK_STR(r->categories[0], "beauty");
    YW_CHECK_STR(r->categories[1], "tech");
    YW_CHECK_INT(r->status, ==, 2);
    YW_CHECK_STR(r->region, "CN-31");
    YW_CHECK_STR(r->display_name, "New name");
    creator_update_job_dispose(&j);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories WHERE creator_id = 'u' AND "
                           "category IN ('beauty', 'tech')"),
                 ==, 2);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories WHERE category = 'food'"), ==,
                 0);

    /* Everything; status UNSPECIFIED means ACTIVE, no categories clears them. */
    creator_msg(&m, "u", "JP-13", NULL, NULL, 7);
    YW_CHECK_INT(update_with(&f, &m.c, CREATOR_FIELD_ALL, &j), ==, GRPC_STATUS_OK);
    r = &j.result->msg;
    YW_CHECK_STR(r->region, "JP-13");
    YW_CHECK_STR(r->display_name, "Name");
    YW_CHECK_INT(r->n_categories, ==, 0);
    YW_CHECK_INT(r->followers, ==, 7);
    YW_CHECK_INT(r->status, ==, 1);
    creator_update_job_dispose(&j);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories"), ==, 0);
    fixture_done(&f);
}

YW_TEST(update_missing_is_not_found)
{
    fixture_t f;
    creator_msg_t m;
    creator_update_job_t j;
    fixture_init(&f);
    creator_msg(&m, "ghost", "", NULL, NULL, 1);
    YW_CHECK_INT(update_with(&f, &m.c, CREATOR_FIELD_REGION, &j), ==, GRPC_STATUS_NOT_FOUND);
    YW_CHECK_STR(j.job.errmsg, "creator.creator_id: creator \"ghost\" not found");
    YW_CHECK(j.result == NULL);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creators"), ==, 0);
    fixture_done(&f);
}

/* ---- RecordNoteStats ---- */

/* Rows of a batch in a test: more than two upsert chunks on PostgreSQL. */
#define ROWS_MAX 300

typedef struct {
    Yaowei__Creator__V1__NoteDailyStats rows[ROWS_MAX];
    Yaowei__Creator__V1__NoteDailyStats *ptrs[ROWS_MAX];
    char days[ROWS_MAX][CREATOR_DAY_BUFSZ];
    size_t n;
} rows_t;

static Yaowei__Creator__V1__NoteDailyStats *add_row(rows_t *rs, const char *note,
                                                    const char *creator, int64_t day, int video,
                                                    int64_t imp, int64_t views, double cr,
                                                    int64_t likes, int64_t follows)
{
    Yaowei__Creator__V1__NoteDailyStats init = YAOWEI__CREATOR__V1__NOTE_DAILY_STATS__INIT;
    YW_CHECK(rs->n < ROWS_MAX);
    Yaowei__Creator__V1__NoteDailyStats *r = &rs->rows[rs->n];
    *r = init;
    creator_day_format(day, rs->days[rs->n]);
    r->note_id = (char *)note;
    r->creator_id = (char *)creator;
    r->day = rs->days[rs->n];
    r->is_video = video;
    r->impressions = imp;
    r->views = views;
    r->video_plays = video ? views : 0;
    r->completion_rate = cr;
    r->likes = likes;
    r->collects = 1;
    r->comments = 2;
    r->shares = 3;
    r->follows_gained = follows;
    rs->ptrs[rs->n] = r;
    rs->n++;
    return r;
}

static grpc_status_code record(fixture_t *f, rows_t *rs, creator_record_stats_job_t *j)
{
    creator_record_stats_job_init(j, on_done);
    j->stats = rs->ptrs;
    j->n_stats = rs->n;
    return run(f, &j->job, 1);
}

static int64_t day_of(const char *s)
{
    int64_t d = -1;
    YW_CHECK_INT(creator_day_parse(s, &d), ==, 0);
    return d;
}

YW_TEST(record_upserts_by_note_and_day)
{
    fixture_t f;
    rows_t rs = {.n = 0};
    creator_record_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    fixture_init(&f);
    create_simple(&f, "a", "", NULL, NULL, 0);
    add_row(&rs, "n1", "a", e, 1, 100, 10, 0.5, 1, 0);
    add_row(&rs, "n1", "a", e - 1, 1, 50, 5, 0.5, 1, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.upserted, ==, 2);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats"), ==, 2);

    /* The same (note, day) again, twice in one batch: the later row wins. */
    rs.n = 0;
    add_row(&rs, "n1", "a", e, 1, 300, 77, 0.5, 7, 0);
    add_row(&rs, "n1", "a", e, 1, 300, 88, 0.5, 7, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.upserted, ==, 2);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats"), ==, 2);
    YW_CHECK_INT(query(&f, "SELECT views FROM note_stats WHERE note_id = 'n1' AND day = 19863"), ==,
                 88);
    YW_CHECK_INT(e, ==, 19863);
    fixture_done(&f);
}

YW_TEST(record_unknown_creator_rejects_whole_batch)
{
    fixture_t f;
    rows_t rs = {.n = 0};
    creator_record_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    fixture_init(&f);
    create_simple(&f, "a", "", NULL, NULL, 0);
    add_row(&rs, "old", "a", e, 0, 100, 50, 0, 5, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_OK);

    rs.n = 0;
    add_row(&rs, "old", "a", e, 0, 100, 999, 0, 99, 0); /* would overwrite */
    add_row(&rs, "new1", "a", e, 0, 10, 5, 0, 0, 0);
    add_row(&rs, "new2", "nobody", e, 0, 10, 5, 0, 0, 0);
    add_row(&rs, "new3", "a", e, 0, 10, 5, 0, 0, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg, "stats[2].creator_id: creator \"nobody\" does not exist");
    /* Nothing of the batch was stored. */
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats"), ==, 1);
    YW_CHECK_INT(query(&f, "SELECT views FROM note_stats WHERE note_id = 'old'"), ==, 50);
    fixture_done(&f);
}

YW_TEST(record_note_of_another_creator_is_rejected)
{
    fixture_t f;
    rows_t rs = {.n = 0};
    creator_record_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    fixture_init(&f);
    create_simple(&f, "a", "", NULL, NULL, 0);
    create_simple(&f, "b", "", NULL, NULL, 0);
    add_row(&rs, "n1", "a", e - 1, 0, 100, 50, 0, 5, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_OK);
    rs.n = 0;
    add_row(&rs, "n2", "b", e, 0, 1, 1, 0, 0, 0);
    add_row(&rs, "n1", "b", e, 0, 1, 1, 0, 0, 0);
    YW_CHECK_INT(record(&f, &rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg, "stats[1].note_id: note \"n1\" belongs to creator \"a\", not \"b\"");
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats"), ==, 1);
    fixture_done(&f);
}

YW_TEST(record_checks_rows_in_order)
{
    fixture_t *f = malloc(sizeof *f);
    rows_t *rs = calloc(1, sizeof *rs);
    creator_record_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    YW_CHECK(f != NULL && rs != NULL);
    fixture_init(f);
    create_simple(f, "a", "", NULL, NULL, 0);
    create_simple(f, "b", "", NULL, NULL, 0);
    /* A note new to the database belongs to the batch's first row naming it. */
    add_row(rs, "n9", "a", e, 0, 1, 1, 0, 0, 0);
    add_row(rs, "n8", "b", e, 0, 1, 1, 0, 0, 0);
    add_row(rs, "n9", "b", e - 1, 0, 1, 1, 0, 0, 0);
    add_row(rs, "n7", "nobody", e, 0, 1, 1, 0, 0, 0);
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg, "stats[2].note_id: note \"n9\" belongs to creator \"a\", not \"b\"");
    /* The first bad row wins, whatever is wrong with it. */
    rs->rows[1].day = "2024-02-30";
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg, "stats[1].day: not a date");
    rs->rows[1].day = rs->days[1];
    rs->rows[2].creator_id = "a";
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg, "stats[3].creator_id: creator \"nobody\" does not exist");
    YW_CHECK_INT(query(f, "SELECT COUNT(*) FROM note_stats"), ==, 0);
    fixture_done(f);
    free(rs);
    free(f);
}

YW_TEST(record_large_batch)
{
    fixture_t *f = malloc(sizeof *f);
    rows_t *rs = calloc(1, sizeof *rs);
    creator_record_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    static char notes[150][16];
    YW_CHECK(f != NULL && rs != NULL);
    fixture_init(f);
    create_simple(f, "a", "", NULL, NULL, 0);
    create_simple(f, "b", "", NULL, NULL, 0);
    add_row(rs, "n3", "b", e - 5, 0, 1, 1, 0, 0, 0);
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_OK);
    /* 299 rows (chunks of 128, 128, 32, 8, 2, 1 on PostgreSQL), one (note, day) twice. */
    rs->n = 0;
    for (int i = 0; i < 149; i++) {
        snprintf(notes[i], sizeof notes[i], "n%d", i);
        const char *who = i == 3 || i % 7 == 0 ? "b" : "a";
        add_row(rs, notes[i], who, e, 0, 10, i, 0, 1, 0);
        add_row(rs, notes[i], who, e - 1, 0, 10, 1000 + i, 0, 1, 0);
    }
    add_row(rs, "n5", "a", e, 0, 10, 5555, 0, 1, 0); /* the later row wins */
    YW_CHECK_INT(rs->n, ==, 299);
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.upserted, ==, 299);
    YW_CHECK_INT(query(f, "SELECT COUNT(*) FROM note_stats"), ==, 299);
    YW_CHECK_INT(query(f, "SELECT views FROM note_stats WHERE note_id = 'n5' AND day = 19863"), ==,
                 5555);
    YW_CHECK_INT(query(f, "SELECT views FROM note_stats WHERE note_id = 'n148' AND day = 19862"),
                 ==, 1148);
    YW_CHECK_INT(query(f, "SELECT COUNT(*) FROM note_stats WHERE creator_id = 'b'"), ==, 47);
    /* The same batch with n3 given to "a" in its last row: refused there, nothing stored. */
    rs->rows[298].note_id = "n3";
    YW_CHECK_INT(record(f, rs, &j), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(j.job.errmsg,
                 "stats[298].note_id: note \"n3\" belongs to creator \"b\", not \"a\"");
    YW_CHECK_INT(query(f, "SELECT views FROM note_stats WHERE note_id = 'n5' AND day = 19863"), ==,
                 5555);
    fixture_done(f);
    free(rs);
    free(f);
}

/* ---- DeleteCreator ---- */

static grpc_status_code delete_id(fixture_t *f, const char *id, creator_delete_job_t *j)
{
    creator_delete_job_init(j, on_done);
    j->creator_id = id;
    return run(f, &j->job, 1);
}

YW_TEST(delete_removes_creator_and_everything_of_it)
{
    fixture_t f;
    creator_msg_t m;
    creator_create_job_t cj;
    creator_delete_job_t dj;
    creator_record_stats_job_t sj;
    rows_t rs = {.n = 0};
    fixture_init(&f);
    creator_msg(&m, "d", "CN-31", "food", "tech", 5);
    YW_CHECK_INT(create_with(&f, "req-d", &m.c, &cj), ==, GRPC_STATUS_OK);
    creator_create_job_dispose(&cj);
    create_simple(&f, "keep", "CN-31", "food", NULL, 5);
    add_row(&rs, "dn", "d", day_of("2024-05-01"), 0, 1, 1, 0, 0, 0);
    add_row(&rs, "kn", "keep", day_of("2024-05-01"), 0, 1, 1, 0, 0, 0);
    YW_CHECK_INT(record(&f, &rs, &sj), ==, GRPC_STATUS_OK);

    YW_CHECK_INT(delete_id(&f, "d", &dj), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creators WHERE creator_id = 'd'"), ==, 0);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories WHERE creator_id = 'd'"), ==,
                 0);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats WHERE creator_id = 'd'"), ==, 0);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM create_requests"), ==, 0);
    /* The other creator keeps its rows. */
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM note_stats WHERE creator_id = 'keep'"), ==, 1);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creator_categories WHERE creator_id = 'keep'"), ==,
                 1);

    YW_CHECK_INT(delete_id(&f, "d", &dj), ==, GRPC_STATUS_NOT_FOUND);
    YW_CHECK_STR(dj.job.errmsg, "creator_id: creator \"d\" not found");

    /* The request id went with the creator: the same request creates it anew. */
    YW_CHECK_INT(create_with(&f, "req-d", &m.c, &cj), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(cj.replayed, ==, 0);
    creator_create_job_dispose(&cj);
    fixture_done(&f);
}

/* ---- ListCreators ---- */

static grpc_status_code list(fixture_t *f, creator_list_job_t *j, const char *after, int32_t size,
                             const char *category, const char *region, int64_t min, int64_t max)
{
    creator_list_job_init(j, on_done);
    j->after = after;
    j->page_size = size;
    j->category = category;
    j->region = region;
    j->min_followers = min;
    j->max_followers = max;
    return run(f, &j->job, 0);
}

/* The ids of a page, joined with ",". */
static const char *page_ids(const creator_list_job_t *j, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < j->n_records && o < len; i++) {
        o +=
            (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "", j->records[i]->msg.creator_id);
    }
    return buf;
}

static void list_fixture(fixture_t *f)
{
    static const char *const regions[] = {"CN-31", "CN-11", "US-CA"};
    static const char *const cats[][2] = {
        {"food", NULL}, {"travel", "food"}, {"beauty", NULL}, {"tech", "travel"}};
    char id[16];
    /* Created out of order on purpose. */
    for (int k = 0; k < 12; k++) {
        int i = (k * 5) % 12;
        snprintf(id, sizeof id, "l-%02d", i);
        create_simple(f, id, regions[i % 3], cats[i % 4][0], cats[i % 4][1], i * 10);
    }
}

YW_TEST(list_pages_in_creator_id_order)
{
    fixture_t f;
    creator_list_job_t j;
    char buf[512];
    fixture_init(&f);
    list_fixture(&f);
    YW_CHECK_INT(list(&f, &j, "", 5, "", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-00,l-01,l-02,l-03,l-04");
    YW_CHECK_INT(j.more, ==, 1);
    /* Records are whole creators. */
    YW_CHECK_INT(j.records[1]->msg.n_categories, ==, 2);
    YW_CHECK_STR(j.records[1]->msg.categories[0], "travel");
    YW_CHECK_STR(j.records[1]->msg.region, "CN-11");
    YW_CHECK_INT(j.records[1]->msg.followers, ==, 10);
    creator_list_job_dispose(&j);
    YW_CHECK(j.records == NULL);
    YW_CHECK_INT(list(&f, &j, "l-04", 5, "", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-05,l-06,l-07,l-08,l-09");
    YW_CHECK_INT(j.more, ==, 1);
    creator_list_job_dispose(&j);
    YW_CHECK_INT(list(&f, &j, "l-09", 5, "", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-10,l-11");
    YW_CHECK_INT(j.more, ==, 0);
    creator_list_job_dispose(&j);
    /* A page that ends exactly at the last creator says there is no more. */
    YW_CHECK_INT(list(&f, &j, "l-07", 4, "", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-08,l-09,l-10,l-11");
    YW_CHECK_INT(j.more, ==, 0);
    creator_list_job_dispose(&j);
    /* The cursor need not exist any more. */
    YW_CHECK_INT(list(&f, &j, "l-055", 2, "", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-06,l-07");
    creator_list_job_dispose(&j);
    fixture_done(&f);
}

YW_TEST(list_filters)
{
    fixture_t f;
    creator_list_job_t j;
    char buf[512];
    fixture_init(&f);
    list_fixture(&f);
    /* food: i % 4 in {0, 1} */
    YW_CHECK_INT(list(&f, &j, "", 100, "food", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-00,l-01,l-04,l-05,l-08,l-09");
    creator_list_job_dispose(&j);
    /* ... paged, across the category index */
    YW_CHECK_INT(list(&f, &j, "l-01", 2, "food", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-04,l-05");
    YW_CHECK_INT(j.more, ==, 1);
    creator_list_job_dispose(&j);
    /* region CN-31: i % 3 == 0 */
    YW_CHECK_INT(list(&f, &j, "", 100, "", "CN-31", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-00,l-03,l-06,l-09");
    creator_list_job_dispose(&j);
    /* followers in [30, 60] */
    YW_CHECK_INT(list(&f, &j, "", 100, "", "", 30, 60), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-03,l-04,l-05,l-06");
    creator_list_job_dispose(&j);
    /* min only */
    YW_CHECK_INT(list(&f, &j, "", 100, "", "", 95, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-10,l-11");
    creator_list_job_dispose(&j);
    /* travel (i % 4 in {1, 3}) in US-CA (i % 3 == 2) with followers >= 50 */
    YW_CHECK_INT(list(&f, &j, "", 100, "travel", "US-CA", 50, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-05,l-11");
    creator_list_job_dispose(&j);
    /* region and followers, by the region index */
    YW_CHECK_INT(list(&f, &j, "l-00", 100, "", "CN-31", 0, 60), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(page_ids(&j, buf, sizeof buf), "l-03,l-06");
    creator_list_job_dispose(&j);
    YW_CHECK_INT(list(&f, &j, "", 100, "nothing-here", "", 0, 0), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.n_records, ==, 0);
    YW_CHECK_INT(j.more, ==, 0);
    creator_list_job_dispose(&j);
    fixture_done(&f);
}

/* ---- GetCreatorStats / BatchGetCreatorStats ---- */

static grpc_status_code stats(fixture_t *f, creator_stats_job_t *j, char *const *ids, size_t n,
                              int32_t window, int64_t end)
{
    creator_stats_job_init(j, on_done);
    j->creator_ids = ids;
    j->n_ids = n;
    j->window_days = window;
    j->end_day = end;
    return run(f, &j->job, 0);
}

#define CHECK_NEAR(a, b)                                                                           \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= 1e-12 * (fabs(b_) > 1 ? fabs(b_) : 1))) {                           \
            fprintf(stderr, "%s:%d: %s = %.17g, want %.17g\n", __FILE__, __LINE__, #a, a_, b_);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * Creator "s" around E = 2024-05-20:
 *   A video: E (imp 1000, views 400, cr .5, likes 40, follows 3), E-1 (2000, 900, .4, 70, 6),
 *            E-8 (500, 100, .3, 9, 1)
 *   B text:  E-2 (800, 120, 0, 11, 2), E-10 (300, 60, 0, 3, 0)
 *   G text:  E-4 (250, 50, 0, 5, 0)
 *   X video: E-6 (0 impressions, 0 views, cr .9, 0, 0)
 *   Z text:  E-40 (900, 300, 0, 20, 4)
 * Every row also has collects 1, comments 2, shares 3.
 */
static void stats_fixture(fixture_t *f, int64_t e)
{
    rows_t rs = {.n = 0};
    creator_record_stats_job_t j;
    create_simple(f, "s", "", NULL, NULL, 0);
    create_simple(f, "empty", "", NULL, NULL, 0);
    add_row(&rs, "A", "s", e, 1, 1000, 400, 0.5, 40, 3);
    add_row(&rs, "A", "s", e - 1, 1, 2000, 900, 0.4, 70, 6);
    add_row(&rs, "A", "s", e - 8, 1, 500, 100, 0.3, 9, 1);
    add_row(&rs, "B", "s", e - 2, 0, 800, 120, 0, 11, 2);
    add_row(&rs, "B", "s", e - 10, 0, 300, 60, 0, 3, 0);
    add_row(&rs, "G", "s", e - 4, 0, 250, 50, 0, 5, 0);
    add_row(&rs, "X", "s", e - 6, 1, 0, 0, 0.9, 0, 0);
    add_row(&rs, "Z", "s", e - 40, 0, 900, 300, 0, 20, 4);
    YW_CHECK_INT(record(f, &rs, &j), ==, GRPC_STATUS_OK);
}

YW_TEST(stats_seven_day_window_by_hand)
{
    fixture_t f;
    creator_stats_job_t j;
    char *ids[] = {"s"};
    int64_t e = day_of("2024-05-20");
    fixture_init(&f);
    stats_fixture(&f, e);
    YW_CHECK_INT(stats(&f, &j, ids, 1, 7, e), ==, GRPC_STATUS_OK);
    const Yaowei__Creator__V1__CreatorStats *s = &j.stats[0];
    YW_CHECK_STR(s->creator_id, "s");
    YW_CHECK_INT(s->window_days, ==, 7);
    YW_CHECK_STR(s->start_day, "2024-05-14");
    YW_CHECK_STR(s->end_day, "2024-05-20");
    /* In [E-6, E]: A (E, E-1), B (E-2), G (E-4), X (E-6). */
    YW_CHECK_INT(s->notes, ==, 4);
    YW_CHECK_INT(s->video_notes, ==, 2);
    YW_CHECK_INT(s->impressions, ==, 1000 + 2000 + 800 + 250 + 0);
    YW_CHECK_INT(s->views, ==, 400 + 900 + 120 + 50 + 0);
    YW_CHECK_INT(s->video_plays, ==, 400 + 900 + 0);
    YW_CHECK_INT(s->likes, ==, 40 + 70 + 11 + 5 + 0);
    YW_CHECK_INT(s->collects, ==, 5);
    YW_CHECK_INT(s->comments, ==, 10);
    YW_CHECK_INT(s->shares, ==, 15);
    YW_CHECK_INT(s->engagements, ==, 126 + 5 + 10 + 15);
    CHECK_NEAR(s->engagement_rate, 156.0 / 4050.0);
    /* Per-note views: A 1300, B 120, G 50, X 0 -> median (50 + 120) / 2. */
    CHECK_NEAR(s->median_views_per_note, 85.0);
    CHECK_NEAR(s->video_share, 0.5);
    YW_CHECK_INT(s->follower_gain, ==, 3 + 6 + 2);
    /* Video rows weighted by impressions: X has none and weighs nothing. */
    CHECK_NEAR(s->avg_completion_rate, (0.5 * 1000 + 0.4 * 2000) / 3000.0);
    /* [E-6, E] and [E-13, E-7], whatever the window. */
    YW_CHECK_INT(s->views_last_7d, ==, 1470);
    YW_CHECK_INT(s->views_prev_7d, ==, 100 + 60);
    YW_CHECK_INT(s->active_days, ==, 5);
    creator_stats_job_dispose(&j);
    YW_CHECK(j.stats == NULL);
    fixture_done(&f);
}

YW_TEST(stats_other_windows)
{
    fixture_t f;
    creator_stats_job_t j;
    char *ids[] = {"s"};
    int64_t e = day_of("2024-05-20");
    fixture_init(&f);
    stats_fixture(&f, e);

    /* One day: only A@E; the 7-day sums do not depend on the window. */
    YW_CHECK_INT(stats(&f, &j, ids, 1, 1, e), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(j.stats[0].start_day, "2024-05-20");
    YW_CHECK_INT(j.stats[0].notes, ==, 1);
    YW_CHECK_INT(j.stats[0].views, ==, 400);
    CHECK_NEAR(j.stats[0].median_views_per_note, 400.0);
    CHECK_NEAR(j.stats[0].video_share, 1.0);
    CHECK_NEAR(j.stats[0].avg_completion_rate, 0.5);
    YW_CHECK_INT(j.stats[0].views_last_7d, ==, 1470);
    YW_CHECK_INT(j.stats[0].views_prev_7d, ==, 160);
    YW_CHECK_INT(j.stats[0].active_days, ==, 1);
    creator_stats_job_dispose(&j);

    /* 30 days: everything but Z. */
    YW_CHECK_INT(stats(&f, &j, ids, 1, 30, e), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(j.stats[0].start_day, "2024-04-21");
    YW_CHECK_INT(j.stats[0].notes, ==, 4);
    YW_CHECK_INT(j.stats[0].views, ==, 1470 + 100 + 60);
    /* A 1400, B 180, G 50, X 0 -> (50 + 180) / 2 */
    CHECK_NEAR(j.stats[0].median_views_per_note, 115.0);
    CHECK_NEAR(j.stats[0].avg_completion_rate, (0.5 * 1000 + 0.4 * 2000 + 0.3 * 500) / 3500.0);
    YW_CHECK_INT(j.stats[0].active_days, ==, 7);
    YW_CHECK_INT(j.stats[0].follower_gain, ==, 12);
    creator_stats_job_dispose(&j);

    /* 366 days: Z too -> 5 notes, median the third of 0, 50, 180, 300, 1400. */
    YW_CHECK_INT(stats(&f, &j, ids, 1, 366, e), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.stats[0].notes, ==, 5);
    CHECK_NEAR(j.stats[0].median_views_per_note, 180.0);
    CHECK_NEAR(j.stats[0].video_share, 2.0 / 5.0);
    creator_stats_job_dispose(&j);

    /* A window that ends before every row. */
    YW_CHECK_INT(stats(&f, &j, ids, 1, 5, e - 100), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.stats[0].notes, ==, 0);
    YW_CHECK_INT(j.stats[0].views_last_7d, ==, 0);
    creator_stats_job_dispose(&j);
    fixture_done(&f);
}

YW_TEST(stats_of_creator_without_rows_are_zero)
{
    fixture_t f;
    creator_stats_job_t j;
    char *ids[] = {"empty"};
    fixture_init(&f);
    stats_fixture(&f, day_of("2024-05-20"));
    YW_CHECK_INT(stats(&f, &j, ids, 1, 10, day_of("2024-03-01")), ==, GRPC_STATUS_OK);
    const Yaowei__Creator__V1__CreatorStats *s = &j.stats[0];
    YW_CHECK_STR(s->creator_id, "empty");
    YW_CHECK_STR(s->start_day, "2024-02-21");
    YW_CHECK_STR(s->end_day, "2024-03-01");
    YW_CHECK_INT(s->notes + s->video_notes + s->impressions + s->views + s->engagements, ==, 0);
    YW_CHECK(s->engagement_rate == 0.0 && s->video_share == 0.0);
    YW_CHECK(s->median_views_per_note == 0.0 && s->avg_completion_rate == 0.0);
    YW_CHECK_INT(s->active_days, ==, 0);
    creator_stats_job_dispose(&j);
    fixture_done(&f);
}

YW_TEST(batch_stats_in_request_order_and_missing_ids)
{
    fixture_t f;
    creator_stats_job_t j;
    int64_t e = day_of("2024-05-20");
    char *ids[] = {"empty", "s", "empty"};
    char *bad[] = {"s", "nobody", "s", "ghost"};
    fixture_init(&f);
    stats_fixture(&f, e);
    YW_CHECK_INT(stats(&f, &j, ids, 3, 7, e), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(j.stats[0].creator_id, "empty");
    YW_CHECK_STR(j.stats[1].creator_id, "s");
    YW_CHECK_STR(j.stats[2].creator_id, "empty");
    YW_CHECK_INT(j.stats[0].notes, ==, 0);
    YW_CHECK_INT(j.stats[1].notes, ==, 4);
    YW_CHECK_INT(j.stats[1].views, ==, 1470);
    YW_CHECK_INT(j.n_missing, ==, 0);
    creator_stats_job_dispose(&j);

    YW_CHECK_INT(stats(&f, &j, bad, 4, 7, e), ==, GRPC_STATUS_NOT_FOUND);
    YW_CHECK_INT(j.n_missing, ==, 2);
    YW_CHECK_INT(j.missing[0], ==, 1);
    YW_CHECK_INT(j.missing[1], ==, 3);
    YW_CHECK_STR(j.job.errmsg, "creator \"nobody\" not found");
    creator_stats_job_dispose(&j);
    fixture_done(&f);
}

/* ---- start-up load ---- */

typedef struct {
    char ids[8][16];
    int n;
    int fail_at;
} loaded_t;

static int collect(creator_record_t *rec, void *ctx)
{
    loaded_t *l = ctx;
    if (l->n == l->fail_at) {
        creator_record_free(rec);
        return -ENOMEM;
    }
    YW_CHECK(l->n < 8);
    snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", rec->msg.creator_id);
    if (strcmp(rec->msg.creator_id, "b") == 0) {
        YW_CHECK_INT(rec->msg.n_categories, ==, 2);
        YW_CHECK_STR(rec->msg.categories[1], "tech");
        YW_CHECK_INT(rec->msg.followers, ==, 20);
    }
    creator_record_free(rec);
    return 0;
}

YW_TEST(load_all_reads_every_creator_after_reopen)
{
    fixture_t f;
    char err[256];
    fixture_init(&f);
    create_simple(&f, "c", "", NULL, NULL, 30);
    create_simple(&f, "a", "", "food", NULL, 10);
    create_simple(&f, "b", "CN-31", "food", "tech", 20);
    close_store(&f);
    open_store(&f);
    loaded_t l = {.n = 0, .fail_at = -1};
    creator_load_t load = {.each = collect, .ctx = &l};
    YW_CHECK_INT(yw_store_run_sync(f.store, creator_store_load_all, &load, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(l.n, ==, 3);
    YW_CHECK_STR(l.ids[0], "a");
    YW_CHECK_STR(l.ids[1], "b");
    YW_CHECK_STR(l.ids[2], "c");

    /* A callback that fails stops the load and says so. */
    loaded_t l2 = {.n = 0, .fail_at = 1};
    load.ctx = &l2;
    YW_CHECK_INT(yw_store_run_sync(f.store, creator_store_load_all, &load, err, sizeof err), ==,
                 GRPC_STATUS_INTERNAL);
    YW_CHECK_STR(load.errmsg, "loading creators: Cannot allocate memory");
    fixture_done(&f);
}

/* ---- several replicas on one PostgreSQL ---- */

/* A job's own status (g_status is the last one's). */
typedef struct {
    grpc_status_code status;
    int done;
} outcome_t;

static outcome_t g_outcomes[2];

static void on_done_a(yw_store_job_t *job, grpc_status_code status)
{
    (void)job;
    g_outcomes[0].status = status;
    g_outcomes[0].done = 1;
}

static void on_done_b(yw_store_job_t *job, grpc_status_code status)
{
    (void)job;
    g_outcomes[1].status = status;
    g_outcomes[1].done = 1;
}

/* Queues job a on store `sa` and job b on `sb` together; runs the loop until both are done. */
static void run_both(uv_loop_t *loop, yw_store_t *sa, yw_store_job_t *a, yw_store_t *sb,
                     yw_store_job_t *b)
{
    memset(g_outcomes, 0, sizeof g_outcomes);
    a->done = on_done_a;
    b->done = on_done_b;
    YW_CHECK_INT(yw_store_write(sa, a), ==, 0);
    YW_CHECK_INT(yw_store_write(sb, b), ==, 0);
    while (!g_outcomes[0].done || !g_outcomes[1].done) {
        uv_run(loop, UV_RUN_ONCE);
    }
}

typedef struct {
    char seen[128][32];
    int n;
    int reconnects;
} heard_t;

static void on_heard(void *arg, const char *payload)
{
    heard_t *h = arg;
    if (payload == NULL) {
        h->reconnects++;
    } else if (h->n < 128) {
        snprintf(h->seen[h->n++], sizeof h->seen[0], "%s", payload);
    }
}

static int heard(const heard_t *h, const char *id)
{
    for (int i = 0; i < h->n; i++) {
        if (strcmp(h->seen[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

YW_TEST(pg_two_replicas)
{
    if (g_pg_uri == NULL) {
        printf("     (skipped: PostgreSQL only)\n");
        return;
    }
    fixture_t f;
    char err[256];
    fixture_init(&f);
    yw_store_t *other = NULL; /* a second replica: its own pool on the same database */
    yw_store_config_t cfg = {.pg_uri = g_pg_uri,
                             .pg_migrations = creator_pg_migrations,
                             .n_pg_migrations = CREATOR_N_PG_MIGRATIONS,
                             .pg_schema = "creator_profile",
                             .pg_pool = 2};
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &other, err, sizeof err), ==, 0);
    heard_t h = {.n = 0};
    YW_CHECK_INT(yw_store_listen(other, "yw_creators", on_heard, &h), ==, 0);
    uv_timer_t tick;
    YW_CHECK_INT(uv_timer_init(&f.loop, &tick), ==, 0);
    YW_CHECK_INT(uv_timer_start(&tick, on_tick, 20, 20), ==, 0);
    /* LISTEN comes into force on the listener's thread: it says so with a NULL payload. */
    for (int i = 0; h.reconnects == 0; i++) {
        YW_CHECK(i < 5000); /* 100 s of 20 ms ticks */
        uv_run(&f.loop, UV_RUN_ONCE);
    }

    /* One request id on both replicas at once: one creates, the other replays it. */
    for (int round = 0; round < 10; round++) {
        char id[32], rid[32];
        snprintf(id, sizeof id, "same-%d", round);
        snprintf(rid, sizeof rid, "req-%d", round);
        creator_msg_t m;
        creator_create_job_t ja, jb;
        creator_msg(&m, id, "", "food", NULL, round);
        creator_create_job_init(&ja, NULL);
        creator_create_job_init(&jb, NULL);
        ja.request_id = jb.request_id = rid;
        ja.creator = jb.creator = &m.c;
        ja.now_seconds = 1700000000;
        jb.now_seconds = 1700000001;
        run_both(&f.loop, f.store, &ja.job, other, &jb.job);
        YW_CHECK_INT(g_outcomes[0].status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(g_outcomes[1].status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(ja.replayed + jb.replayed, ==, 1);
        /* The replay returns the creator as the first call stored it. */
        YW_CHECK_INT(ja.result->msg.update_time->seconds, ==, jb.result->msg.update_time->seconds);
        creator_create_job_dispose(&ja);
        creator_create_job_dispose(&jb);
    }
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM creators"), ==, 10);
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM create_requests"), ==, 10);

    /* One creator_id under two request ids: one wins, the other is ALREADY_EXISTS. */
    for (int round = 0; round < 10; round++) {
        char id[32], ra[32], rb[32];
        snprintf(id, sizeof id, "race-%d", round);
        snprintf(ra, sizeof ra, "ra-%d", round);
        snprintf(rb, sizeof rb, "rb-%d", round);
        creator_msg_t m;
        creator_create_job_t ja, jb;
        creator_msg(&m, id, "", NULL, NULL, 0);
        creator_create_job_init(&ja, NULL);
        creator_create_job_init(&jb, NULL);
        ja.request_id = ra;
        jb.request_id = rb;
        ja.creator = jb.creator = &m.c;
        run_both(&f.loop, f.store, &ja.job, other, &jb.job);
        int ok_a = g_outcomes[0].status == GRPC_STATUS_OK;
        int ok_b = g_outcomes[1].status == GRPC_STATUS_OK;
        YW_CHECK_INT(ok_a + ok_b, ==, 1);
        const creator_create_job_t *loser = ok_a ? &jb : &ja;
        YW_CHECK_INT(g_outcomes[ok_a ? 1 : 0].status, ==, GRPC_STATUS_ALREADY_EXISTS);
        char want[128];
        snprintf(want, sizeof want, "creator.creator_id: creator \"%s\" already exists", id);
        YW_CHECK_STR(loser->job.errmsg, want);
        creator_create_job_dispose(&ja);
        creator_create_job_dispose(&jb);
    }
    YW_CHECK_INT(query(&f, "SELECT COUNT(*) FROM create_requests"), ==, 20);

    /* One new note for two creators at once: the first owner wins, the other is refused. */
    for (int round = 0; round < 10; round++) {
        char note[32];
        snprintf(note, sizeof note, "note-%d", round);
        rows_t ra = {.n = 0}, rb = {.n = 0};
        add_row(&ra, note, "same-0", 19000, 0, 10, 5, 0, 1, 0);
        add_row(&rb, note, "same-1", 19001, 0, 10, 5, 0, 1, 0);
        creator_record_stats_job_t ja, jb;
        creator_record_stats_job_init(&ja, NULL);
        creator_record_stats_job_init(&jb, NULL);
        ja.stats = ra.ptrs;
        ja.n_stats = ra.n;
        jb.stats = rb.ptrs;
        jb.n_stats = rb.n;
        run_both(&f.loop, f.store, &ja.job, other, &jb.job);
        int ok_a = g_outcomes[0].status == GRPC_STATUS_OK;
        int ok_b = g_outcomes[1].status == GRPC_STATUS_OK;
        YW_CHECK_INT(ok_a + ok_b, ==, 1);
        YW_CHECK_INT(g_outcomes[ok_a ? 1 : 0].status, ==, GRPC_STATUS_INVALID_ARGUMENT);
        YW_CHECK(strstr((ok_a ? &jb : &ja)->job.errmsg, "stats[0].note_id: note") != NULL);
    }
    YW_CHECK_INT(query(&f, "SELECT COUNT(DISTINCT creator_id) FROM note_stats WHERE note_id = "
                           "'note-3'"),
                 ==, 1);

    /* The other replica heard of every creator written, its own writes included. */
    for (int waited = 0; waited < 200 && !(heard(&h, "same-9") && heard(&h, "race-9")); waited++) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    YW_CHECK(heard(&h, "same-0"));
    YW_CHECK(heard(&h, "same-9"));
    YW_CHECK(heard(&h, "race-9"));

    int closed = 0;
    yw_store_close(other, on_closed, &closed);
    fixture_done(&f);
    YW_CHECK_INT(closed, ==, 1);
}

int main(int argc, char **argv)
{
    g_pg_uri = getenv("YW_TEST_PG_URI");
    if (g_pg_uri != NULL && g_pg_uri[0] == '\0') {
        g_pg_uri = NULL;
    }
    if (g_pg_uri != NULL) {
        printf("on PostgreSQL: %s\n", g_pg_uri);
    }
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(schema_migrates_to_version_1),
        YW_TEST_ENTRY(create_stores_and_returns_creator),
        YW_TEST_ENTRY(create_keeps_caller_create_time_and_status),
        YW_TEST_ENTRY(create_existing_id_is_already_exists),
        YW_TEST_ENTRY(create_request_id_is_idempotent),
        YW_TEST_ENTRY(update_changes_only_masked_fields),
        YW_TEST_ENTRY(update_missing_is_not_found),
        YW_TEST_ENTRY(record_upserts_by_note_and_day),
        YW_TEST_ENTRY(record_unknown_creator_rejects_whole_batch),
        YW_TEST_ENTRY(record_note_of_another_creator_is_rejected),
        YW_TEST_ENTRY(record_checks_rows_in_order),
        YW_TEST_ENTRY(record_large_batch),
        YW_TEST_ENTRY(delete_removes_creator_and_everything_of_it),
        YW_TEST_ENTRY(list_pages_in_creator_id_order),
        YW_TEST_ENTRY(list_filters),
        YW_TEST_ENTRY(stats_seven_day_window_by_hand),
        YW_TEST_ENTRY(stats_other_windows),
        YW_TEST_ENTRY(stats_of_creator_without_rows_are_zero),
        YW_TEST_ENTRY(batch_stats_in_request_order_and_missing_ids),
        YW_TEST_ENTRY(load_all_reads_every_creator_after_reopen),
        YW_TEST_ENTRY(pg_two_replicas),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
