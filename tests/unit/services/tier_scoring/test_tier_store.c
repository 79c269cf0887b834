/*
 * test_tier_store.c — unit tests of services/tier_scoring/tier_store.c on a real
 * SQLite file: the default policy is written once, policy versions persist and a
 * version cannot be written twice, and a saved population loads back (inputs, window,
 * time) across a reopen, replacing the one saved before.
 *
 * Every test works in a fresh directory from mkdtemp() and runs its own uv loop.
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
    yw_store_config_t cfg = {
        .path = f->path,
        .migrations = tier_migrations,
        .n_migrations = TIER_N_MIGRATIONS,
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

YW_TEST(policy_versions_persist)
{
    fixture_t f;
    fixture_init(&f);
    tier_load_t l;
    load(&f, &l);
    tier_snapshot_unref(l.snapshot);

    tier_policy_job_t j = {0};
    j.job.work = tier_store_put_policy;
    j.policy = l.policy;
    j.policy.version = 2;
    j.policy.mid_min_followers = 40000;
    j.policy.weights.consistency = 0.5;
    j.policy.window_days = 14;
    YW_CHECK_INT(write_job(&f, &j.job), ==, GRPC_STATUS_OK);
    /* The same version again: refused, nothing changes. */
    j.policy.window_days = 99;
    YW_CHECK_INT(write_job(&f, &j.job), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK(strstr(j.job.errmsg, "policy.version") != NULL);

    close_store(&f);
    open_store(&f);
    load(&f, &l);
    YW_CHECK(!l.policy_created);
    YW_CHECK_INT(l.policy.version, ==, 2);
    YW_CHECK_INT(l.policy.mid_min_followers, ==, 40000);
    YW_CHECK(l.policy.weights.consistency == 0.5);
    YW_CHECK_INT(l.policy.window_days, ==, 14);
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
    /* A second save replaces the first. */
    tier_population_t *pop = population("c", 40);
    j.pop = pop;
    YW_CHECK_INT(write_job(&f, &j.job), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(j.saved, ==, 40);

    close_store(&f);
    open_store(&f);
    tier_load_t l;
    load(&f, &l);
    tier_snapshot_t *s = l.snapshot;
    YW_CHECK_INT(s->n, ==, 40);
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
        YW_TEST_ENTRY(population_saved_and_loaded),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
