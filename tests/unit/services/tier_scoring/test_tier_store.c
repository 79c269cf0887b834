/*
 * test_tier_store.c — unit tests of services/tier_scoring/tier_store.c on a real
 * SQLite file: the default policy is written once, policy updates merge into the
 * database's version in force and persist (two stores on one file stand for two
 * replicas: versions do not fork), and a saved population loads back (inputs, window,
 * time) across a reopen, replacing the one saved before.
 *
 * Every test works in a fresh directory from mkdtemp() and runs its own uv loop.
 *
 * With YW_TEST_PG_URI set (an empty PostgreSQL database per test: argv[1] names the
 * test), the same tests run on PostgreSQL with tier_pg_migrations instead: the jobs' SQL
 * is the same on both.
 */
#include "services/tier_scoring/tier_store.h"

#include <sys/stat.h>

#include "tests/unit/test.h"

typedef struct {
    char dir[256];
    char path[300];
    uv_loop_t loop;
    yw_store_t *store;
    int closed;
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
    const char *pg_uri = getenv("YW_TEST_PG_URI");
    yw_store_config_t cfg = {
        .path = f->path,
        .migrations = tier_migrations,
        .n_migrations = TIER_N_MIGRATIONS,
        .pg_uri = pg_uri != NULL && pg_uri[0] != '\0' ? pg_uri : NULL,
        .pg_migrations = tier_pg_migrations,
        .n_pg_migrations = TIER_N_PG_MIGRATIONS,
        .pg_schema = "tier_scoring",
        .pg_pool = 2,
    };
    YW_CHECK_INT(yw_store_open(&f->loop, &cfg, &f->store, err, sizeof err), ==, 0);
}

static void on_closed(void *arg)
{
    ((fixture_t *)arg)->closed++;
}

static void close_store(fixture_t *f)
{
    f->closed = 0;
    yw_store_close(f->store, on_closed, f);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f->closed, ==, 1);
    f->store = NULL;
}

static void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/tierXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/tier_scoring.db", f->dir);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    open_store(f);
}

static void fixture_done(fixture_t *f)
{
    close_store(f);
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[320];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        (void)unlink(p);
    }
    YW_CHECK_INT(rmdir(f->dir), ==, 0);
}

static grpc_status_code write_job(fixture_t *f, yw_store_job_t *job)
{
    g_done = 0;
    job->done = on_done;
    YW_CHECK_INT(yw_store_write(f->store, job), ==, 0);
    while (g_done == 0) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    return g_status;
}

static void load(fixture_t *f, tier_load_t *l)
{
    char err[256];
    memset(l, 0, sizeof *l);
    l->now_s = 1700000000;
    YW_CHECK_INT(yw_store_run_sync(f->store, tier_store_load, l, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK(l->snapshot != NULL);
}

YW_TEST(default_policy_written_once)
{
    fixture_t f;
    fixture_init(&f);
    tier_load_t l;
    load(&f, &l);
    YW_CHECK(l.policy_created);
    YW_CHECK_INT(l.policy.version, ==, 1);
    YW_CHECK_INT(l.policy.head_min_followers, ==, 500000);
    YW_CHECK_INT(l.policy.update_time_s, ==, 1700000000);
    YW_CHECK_INT(l.snapshot->n, ==, 0);
    YW_CHECK_INT(l.snapshot->time_s, ==, 0);
    tier_snapshot_unref(l.snapshot);
    load(&f, &l);
    YW_CHECK(!l.policy_created);
    YW_CHECK_INT(l.policy.version, ==, 1);
    tier_snapshot_unref(l.snapshot);
    fixture_done(&f);
}

/* An UpdateTierPolicy request setting `mask` (one path) of `in`, for the update job. */
static tier_policy_job_t *update_job(Yaowei__Tier__V1__TierPolicy *in, char **mask)
{
    /* Two in turn, so that two can be in flight. */
    static Yaowei__Tier__V1__UpdateTierPolicyRequest reqs[2];
    static Google__Protobuf__FieldMask fms[2];
    static tier_policy_job_t jobs[2];
    static int next;
    int k = next;
    next = (next + 1) % 2;
    yaowei__tier__v1__update_tier_policy_request__init(&reqs[k]);
    google__protobuf__field_mask__init(&fms[k]);
    fms[k].n_paths = 1;
    fms[k].paths = mask;
    reqs[k].policy = in;
    reqs[k].update_mask = &fms[k];
    memset(&jobs[k], 0, sizeof jobs[k]);
    jobs[k].job.work = tier_store_update_policy;
    jobs[k].req = &reqs[k];
    jobs[k].now_s = 1700000100;
    jobs[k].now_ns = 5;
    return &jobs[k];
}

YW_TEST(policy_versions_persist)
{
    fixture_t f;
    fixture_init(&f);
    tier_load_t l;
    load(&f, &l);
    tier_snapshot_unref(l.snapshot);

    Yaowei__Tier__V1__TierPolicy in = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    in.mid_min_followers = 40000;
    char *mid[] = {"mid_min_followers"};
    tier_policy_job_t *j = update_job(&in, mid);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j->policy.version, ==, 2);
    YW_CHECK_INT(j->policy.mid_min_followers, ==, 40000);
    YW_CHECK_INT(j->policy.update_time_s, ==, 1700000100);
    /* The version the caller read is no longer in force: refused, nothing changes. */
    in.version = 1;
    in.window_days = 14;
    char *window[] = {"window_days"};
    j = update_job(&in, window);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_ABORTED);
    YW_CHECK(strstr(j->refusal, "policy.version: 1 is not the version in force (2)") != NULL);
    YW_CHECK(strstr(j->job.errmsg, "policy.version") == j->job.errmsg);
    /* A rule broken: refused with the field's name. */
    in.version = 0;
    in.window_days = 0;
    j = update_job(&in, window);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strstr(j->refusal, "policy.window_days: must be within 1..366, got 0") != NULL);
    in.window_days = 14;
    j = update_job(&in, window);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j->policy.version, ==, 3);
    YW_CHECK_STR(j->refusal, "");

    close_store(&f);
    open_store(&f);
    load(&f, &l);
    YW_CHECK(!l.policy_created);
    YW_CHECK_INT(l.policy.version, ==, 3);
    YW_CHECK_INT(l.policy.mid_min_followers, ==, 40000);
    YW_CHECK_INT(l.policy.window_days, ==, 14);
    YW_CHECK_INT(l.policy.update_time_s, ==, 1700000100);
    YW_CHECK_INT(l.policy.update_time_ns, ==, 5);
    tier_snapshot_unref(l.snapshot);

    tier_policy_read_t r = {0};
    r.job.work = tier_store_read_policy;
    YW_CHECK_INT(write_job(&f, &r.job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(r.policy.version, ==, 3);
    YW_CHECK_INT(r.policy.window_days, ==, 14);
    fixture_done(&f);
}

/*
 * Two stores on one database (two replicas): an update merges into the version in force
 * in the database, not into what its process last read, so versions never fork; and a
 * caller's version check is against the database's.
 */
YW_TEST(policy_versions_do_not_fork_across_processes)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *a = f.store;
    tier_load_t l;
    load(&f, &l);
    tier_snapshot_unref(l.snapshot);
    open_store(&f); /* a second store, "b", on the same file */
    yw_store_t *b = f.store;
    load(&f, &l); /* b read version 1 too */
    YW_CHECK(!l.policy_created);
    YW_CHECK_INT(l.policy.version, ==, 1);
    tier_snapshot_unref(l.snapshot);

    Yaowei__Tier__V1__TierPolicy in = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    char *mid[] = {"mid_min_followers"};
    in.mid_min_followers = 40000;
    f.store = a;
    tier_policy_job_t *j = update_job(&in, mid);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j->policy.version, ==, 2);
    /* b still believes version 1 is in force; its caller read version 1 from it. */
    in.version = 1;
    in.mid_min_followers = 30000;
    f.store = b;
    j = update_job(&in, mid);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_ABORTED);
    YW_CHECK(strstr(j->refusal, "not the version in force (2)") != NULL);
    /* Version 0 (whatever is in force): merged into a's version 2, written as 3. */
    in.version = 0;
    char *rising[] = {"rising_top_fraction"};
    in.rising_top_fraction = 0.25;
    j = update_job(&in, rising);
    YW_CHECK_INT(write_job(&f, &j->job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j->policy.version, ==, 3);
    YW_CHECK_INT(j->policy.mid_min_followers, ==, 40000);
    YW_CHECK(j->policy.rising_top_fraction == 0.25);

    /* Both at once (PostgreSQL: two connections; the lock makes them take turns): 4 and
     * 5, in either order, the later merged into the earlier. */
    Yaowei__Tier__V1__TierPolicy in2 = YAOWEI__TIER__V1__TIER_POLICY__INIT;
    char *window[] = {"window_days"};
    in2.window_days = 21;
    tier_policy_job_t *ja = update_job(&in2, window), *jb = update_job(&in, mid);
    ja->job.done = on_done;
    jb->job.done = on_done;
    g_done = 0;
    YW_CHECK_INT(yw_store_write(a, &ja->job), ==, 0);
    YW_CHECK_INT(yw_store_write(b, &jb->job), ==, 0);
    while (g_done < 2) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_STR(ja->job.errmsg, "");
    YW_CHECK_STR(jb->job.errmsg, "");
    YW_CHECK_INT(ja->policy.version + jb->policy.version, ==, 4 + 5);
    const tier_policy_t *later = ja->policy.version == 5 ? &ja->policy : &jb->policy;
    YW_CHECK_INT(later->window_days, ==, 21);
    YW_CHECK_INT(later->mid_min_followers, ==, 30000);

    /* Close b while a keeps the loop alive. */
    f.closed = 0;
    yw_store_close(b, on_closed, &f);
    while (f.closed == 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    f.store = a;
    load(&f, &l);
    YW_CHECK_INT(l.policy.version, ==, 5);
    YW_CHECK_INT(l.policy.mid_min_followers, ==, 30000);
    YW_CHECK_INT(l.policy.window_days, ==, 21);
    YW_CHECK(l.policy.rising_top_fraction == 0.25);
    tier_snapshot_unref(l.snapshot);
    fixture_done(&f);
}

static tier_population_t *population(const char *prefix, int n)
{
    tier_snapshot_t *s = tier_snapshot_new();
    YW_CHECK(s != NULL);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%03d", prefix, i);
        tier_input_t in = {
            .followers = 1000 * (i + 1),
            .window_days = 14,
            .notes = i,
            .video_notes = i / 2,
            .impressions = 500 * i,
            .engagements = 20 * i,
            .views_last_7d = 30 * i,
            .views_prev_7d = 10 * i,
            .avg_completion_rate = 0.25,
        };
        YW_CHECK_INT(tier_snapshot_add(s, id, i % 2 ? "food" : "", &in), ==, 0);
    }
    YW_CHECK_INT(tier_snapshot_seal(s), ==, 0);
    s->window_days = 14;
    snprintf(s->end_day, sizeof s->end_day, "2024-05-06");
    s->time_s = 1715000000;
    s->time_ns = 123;
    tier_policy_t p;
    tier_policy_default(&p);
    tier_population_t *pop = NULL;
    YW_CHECK_INT(tier_population_build(s, &p, 1715000001, 0, &pop), ==, 0);
    tier_snapshot_unref(s);
    return pop;
}

/* Field by field: the struct has padding. */
static int same_input(const tier_input_t *a, const tier_input_t *b)
{
    return a->followers == b->followers && a->window_days == b->window_days &&
           a->notes == b->notes && a->video_notes == b->video_notes &&
           a->impressions == b->impressions && a->engagements == b->engagements &&
           a->views_last_7d == b->views_last_7d && a->views_prev_7d == b->views_prev_7d &&
           a->avg_completion_rate == b->avg_completion_rate;
}

YW_TEST(population_saved_and_loaded)
{
    fixture_t f;
    fixture_init(&f);
    tier_population_t *first = population("old", 5);
    tier_save_job_t j = {0};
    j.job.work = tier_store_save;
    j.pop = first;
    YW_CHECK_INT(write_job(&f, &j.job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.saved, ==, 5);
    /* A second save replaces the first: two inserts of 100 rows and 50 of one. */
    tier_population_t *pop = population("c", 250);
    j.pop = pop;
    YW_CHECK_INT(write_job(&f, &j.job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.saved, ==, 250);
    YW_CHECK(!j.skipped);

    close_store(&f);
    open_store(&f);
    tier_load_t l;
    load(&f, &l);
    tier_snapshot_t *s = l.snapshot;
    YW_CHECK_INT(s->n, ==, 250);
    YW_CHECK_INT(s->time_s, ==, 1715000000);
    YW_CHECK_INT(s->time_ns, ==, 123);
    YW_CHECK_INT(s->window_days, ==, 14);
    YW_CHECK_STR(s->end_day, "2024-05-06");
    YW_CHECK_INT(tier_snapshot_find(s, "old000"), ==, -1);
    for (size_t i = 0; i < s->n; i++) {
        const tier_creator_t *a = &s->creators[i], *b = &pop->snap->creators[i];
        YW_CHECK_STR(a->creator_id, b->creator_id);
        YW_CHECK_STR(a->category, b->category);
        YW_CHECK(same_input(&a->in, &b->in));
    }
    /* Rebuilt from what was saved, the scores are the same. */
    tier_population_t *again = NULL;
    YW_CHECK_INT(tier_population_build(s, &pop->policy, 0, 0, &again), ==, 0);
    for (size_t i = 0; i < s->n; i++) {
        YW_CHECK(again->results[i].score == pop->results[i].score);
        YW_CHECK(again->standings[i].percentile == pop->standings[i].percentile);
    }
    tier_population_unref(again);
    tier_snapshot_unref(s);
    tier_population_unref(pop);
    tier_population_unref(first);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(default_policy_written_once),
        YW_TEST_ENTRY(policy_versions_persist),
        YW_TEST_ENTRY(policy_versions_do_not_fork_across_processes),
        YW_TEST_ENTRY(population_saved_and_loaded),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
