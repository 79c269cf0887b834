/*
 * test_attr_runs.c — attr_runs.c with real index files in a temporary directory: a
 * sealed run is built off the loop and published, then released (at once, or once the
 * views older than its publication are gone); `fanin` files merge into one; a failed
 * build keeps its run and is retried; files are dropped from the front or anywhere; at
 * start-up the judge decides which files stay.
 */
#include "services/attribution/attr_runs.h"

#include <errno.h>
#include <sys/stat.h>

#include "tests/unit/test.h"

/* A run of the test: keys (h = i, seg 0, off = i) and a time for its seg row. */
typedef struct {
    uint64_t id;
    size_t n;
    int64_t latest;
    int fail; /* builds that fail before one succeeds */
    int released, discarded, published;
} run_t;

typedef struct {
    char dir[256];
    uv_loop_t loop;
    attr_runs_t *r;
    int closed;
    int released, discarded, published, failed, merged;
} fx_t;

static int build(void *ctx, void *run, const char *dir, attr_xidx_t **out, char *err, size_t errlen)
{
    (void)ctx;
    run_t *rn = run;
    if (rn->fail > 0) {
        rn->fail--;
        snprintf(err, errlen, "run %llu: a failure of the test", (unsigned long long)rn->id);
        return -EIO;
    }
    attr_xent_t *e = malloc((rn->n ? rn->n : 1) * sizeof *e);
    YW_CHECK(e != NULL);
    for (size_t i = 0; i < rn->n; i++) {
        e[i] = (attr_xent_t){rn->id * 1000 + i, 1, (uint32_t)i};
    }
    attr_xmeta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.first_run = meta.last_run = rn->id;
    attr_xseg_t seg = {1, rn->n, rn->latest};
    char path[4200];
    int rc = attr_xidx_write(dir, &meta, e, rn->n, NULL, 0, NULL, 0, &seg, 1, path, sizeof path,
                             err, errlen);
    free(e);
    return rc == 0 ? attr_xidx_open(path, 0, out, err, errlen) : rc;
}

static int published(void *ctx, void *run, const attr_xidx_t *x)
{
    YW_CHECK_INT(attr_xidx_meta(x)->first_run, ==, ((run_t *)run)->id);
    ((run_t *)run)->published++;
    ((fx_t *)ctx)->published++;
    return 0;
}

static void failed(void *ctx, void *run)
{
    (void)run;
    ((fx_t *)ctx)->failed++;
}

static void release(void *ctx, void *run)
{
    ((run_t *)run)->released++;
    ((fx_t *)ctx)->released++;
}

static void discard(void *ctx, void *run)
{
    ((run_t *)run)->discarded++;
    ((fx_t *)ctx)->discarded++;
}

static void merged(void *ctx, const attr_xidx_t *out)
{
    if (out != NULL) {
        ((fx_t *)ctx)->merged++;
    }
}

static const attr_runs_ops_t ops = {
    .build = build,
    .published = published,
    .failed = failed,
    .release = release,
    .discard = discard,
    .merged = merged,
};

static void fx_open(fx_t *f, unsigned fanin, int lanes, int keep_for_views, int start)
{
    const attr_runs_cfg_t cfg = {
        .dir = f->dir,
        .what = "test runs",
        .fanin = fanin,
        .lanes = lanes,
        .keep_for_views = keep_for_views,
        .ops = &ops,
        .ctx = f,
    };
    YW_CHECK_INT(attr_runs_open(&cfg, &f->r), ==, 0);
    if (start) {
        YW_CHECK_INT(attr_runs_start(f->r, &f->loop), ==, 0);
    }
}

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof *f);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/runsXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
}

static void on_closed(void *arg)
{
    ((fx_t *)arg)->closed = 1;
}

static void fx_close(fx_t *f)
{
    f->closed = 0;
    attr_runs_close(f->r, on_closed, f);
    while (!f->closed) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    f->r = NULL;
}

static void fx_done(fx_t *f)
{
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    YW_CHECK_INT(system(cmd), ==, 0);
}

static size_t n_files(const fx_t *f)
{
    size_t n;
    (void)attr_runs_files(f->r, &n);
    return n;
}

/* Runs the loop until `*counter` reaches `want` (and `files` files are listed, if >= 0). */
static void wait_for(fx_t *f, const int *counter, int want, long files)
{
    for (int i = 0; i < 20000; i++) {
        if (*counter >= want && (files < 0 || n_files(f) == (size_t)files)) {
            return;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    YW_CHECK(!"it never came");
}

YW_TEST(a_sealed_run_is_built_published_and_released)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 4, 1, 0, 1);
    run_t a = {.id = 1, .n = 100, .latest = 5};
    YW_CHECK_INT(attr_runs_seal(f.r, &a), ==, 0);
    YW_CHECK_INT(attr_runs_unbuilt(f.r), ==, 1);
    wait_for(&f, &f.released, 1, 1);
    YW_CHECK_INT(a.published, ==, 1);
    YW_CHECK_INT(a.released, ==, 1);
    YW_CHECK_INT(attr_runs_unbuilt(f.r), ==, 0);
    attr_runs_info_t info;
    attr_runs_info(f.r, &info);
    YW_CHECK_INT(info.files, ==, 1);
    YW_CHECK_INT(info.join_entries, ==, 100);
    YW_CHECK_INT(info.built, ==, 1);
    fx_close(&f);
    YW_CHECK_INT(f.discarded, ==, 0);
    fx_done(&f);
}

YW_TEST(a_view_keeps_the_runs_published_after_it)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 4, 1, 1, 1);
    run_t a = {.id = 1, .n = 10}, b = {.id = 2, .n = 10};
    YW_CHECK_INT(attr_runs_seal(f.r, &a), ==, 0);
    wait_for(&f, &f.released, 1, 1); /* no view: released at once */
    attr_runs_view_t *v = attr_runs_view(f.r);
    YW_CHECK(v != NULL);
    YW_CHECK_INT(v->n, ==, 1);
    YW_CHECK(attr_runs_view(f.r) == v); /* nothing changed: the same view */
    attr_runs_view_put(f.r, v);
    YW_CHECK_INT(attr_runs_seal(f.r, &b), ==, 0);
    wait_for(&f, &f.published, 2, 2);
    YW_CHECK_INT(b.released, ==, 0); /* the view is older than its file */
    attr_runs_hold(f.r, 1);
    attr_runs_view_put(f.r, v);
    YW_CHECK_INT(b.released, ==, 0); /* held */
    attr_runs_hold(f.r, 0);
    YW_CHECK_INT(b.released, ==, 1);
    fx_close(&f);
    fx_done(&f);
}

YW_TEST(fanin_files_merge_into_one)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 4, 2, 0, 1);
    run_t r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (run_t){.id = (uint64_t)i + 1, .n = 50, .latest = 10 * (i + 1)};
        YW_CHECK_INT(attr_runs_seal(f.r, &r[i]), ==, 0);
    }
    wait_for(&f, &f.merged, 1, 1);
    size_t n;
    attr_xidx_t *const *files = attr_runs_files(f.r, &n);
    YW_CHECK_INT(attr_xidx_meta(files[0])->first_run, ==, 1);
    YW_CHECK_INT(attr_xidx_meta(files[0])->last_run, ==, 4);
    YW_CHECK_INT(attr_xidx_meta(files[0])->n_join, ==, 200);
    attr_runs_info_t info;
    attr_runs_info(f.r, &info);
    YW_CHECK_INT(info.merges, ==, 1);
    fx_close(&f);
    fx_done(&f);
}

YW_TEST(a_failed_build_is_kept_and_retried)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 4, 1, 0, 1);
    run_t a = {.id = 1, .n = 10, .fail = 1};
    YW_CHECK_INT(attr_runs_seal(f.r, &a), ==, 0);
    wait_for(&f, &f.failed, 1, 0);
    YW_CHECK(attr_runs_failing(f.r));
    YW_CHECK_INT(attr_runs_unbuilt(f.r), ==, 1);
    YW_CHECK_INT(a.released, ==, 0);
    attr_runs_tick(f.r);
    wait_for(&f, &f.released, 1, 1);
    YW_CHECK(!attr_runs_failing(f.r));
    attr_runs_info_t info;
    attr_runs_info(f.r, &info);
    YW_CHECK_INT(info.failures, ==, 1);
    fx_close(&f);
    fx_done(&f);
}

YW_TEST(a_build_that_never_succeeds_is_discarded_at_close)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 4, 1, 0, 1);
    run_t a = {.id = 1, .n = 10, .fail = 1000};
    YW_CHECK_INT(attr_runs_seal(f.r, &a), ==, 0);
    wait_for(&f, &f.failed, 1, 0);
    fx_close(&f);
    YW_CHECK_INT(a.discarded, ==, 1);
    YW_CHECK_INT(a.released, ==, 0);
    fx_done(&f);
}

static int older_than(void *arg, const attr_xidx_t *x, int64_t latest)
{
    (void)x;
    return latest < *(const int64_t *)arg;
}

static attr_runs_verdict_t keep_all(void *arg, const char *path, const attr_xidx_t *x,
                                    const char *why, const attr_xidx_t *prev)
{
    (void)arg;
    (void)path;
    (void)why;
    (void)prev;
    return x != NULL ? ATTR_RUNS_KEEP : ATTR_RUNS_DROP;
}

YW_TEST(files_are_dropped_from_the_front_or_anywhere)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 16, 1, 0, 1);
    /* latest: 10, 30, 20, 40 */
    run_t r[4] = {{.id = 1, .n = 5, .latest = 10},
                  {.id = 2, .n = 5, .latest = 30},
                  {.id = 3, .n = 5, .latest = 20},
                  {.id = 4, .n = 5, .latest = 40}};
    for (int i = 0; i < 4; i++) {
        YW_CHECK_INT(attr_runs_seal(f.r, &r[i]), ==, 0);
    }
    wait_for(&f, &f.released, 4, 4);
    int64_t limit = 25;
    YW_CHECK_INT(attr_runs_drop_if(f.r, 1, older_than, &limit), ==, 1); /* 20 is behind 30 */
    YW_CHECK_INT(n_files(&f), ==, 3);
    YW_CHECK_INT(attr_runs_drop_if(f.r, 0, older_than, &limit), ==, 1); /* now 20 goes */
    size_t n;
    attr_xidx_t *const *files = attr_runs_files(f.r, &n);
    YW_CHECK_INT(n, ==, 2);
    YW_CHECK_INT(attr_xidx_meta(files[0])->first_run, ==, 2);
    YW_CHECK_INT(attr_xidx_meta(files[1])->first_run, ==, 4);
    fx_close(&f);
    /* The dropped files are gone from the disk too. */
    fx_open(&f, 16, 1, 0, 0);
    char err[256];
    YW_CHECK_INT(attr_runs_load(f.r, keep_all, NULL, NULL, err, sizeof err), ==, 0);
    YW_CHECK_INT(n_files(&f), ==, 2);
    fx_close(&f);
    fx_done(&f);
}

/* The judge of the test: keeps a chain of consecutive runs, drops the rest at a gap. */
static attr_runs_verdict_t judge(void *arg, const char *path, const attr_xidx_t *x, const char *why,
                                 const attr_xidx_t *prev)
{
    (void)path;
    (void)why;
    int *judged = arg;
    (*judged)++;
    if (x == NULL) {
        return ATTR_RUNS_DROP;
    }
    if (prev != NULL && attr_xidx_meta(x)->first_run != attr_xidx_meta(prev)->last_run + 1) {
        return ATTR_RUNS_DROP_REST;
    }
    return ATTR_RUNS_KEEP;
}

YW_TEST(start_up_keeps_what_the_judge_accepts)
{
    fx_t f;
    fx_init(&f);
    fx_open(&f, 16, 1, 0, 0);
    /* Built in place, before any thread: runs 1, 2, 4, 5 (3 is missing). */
    run_t r[4] = {{.id = 1, .n = 5}, {.id = 2, .n = 5}, {.id = 4, .n = 5}, {.id = 5, .n = 5}};
    char err[512] = "";
    for (int i = 0; i < 4; i++) {
        YW_CHECK_INT(attr_runs_build_now(f.r, &r[i], err, sizeof err), ==, 0);
        YW_CHECK_INT(r[i].released, ==, 1);
    }
    YW_CHECK_INT(n_files(&f), ==, 4);
    fx_close(&f); /* no thread: closed at once */
    YW_CHECK_INT(f.closed, ==, 1);
    /* A damaged file of its own. */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/idx-%020d-%020d.xidx", f.dir, 9, 9);
    FILE *fp = fopen(bad, "w");
    YW_CHECK(fp != NULL);
    fputs("not an index", fp);
    fclose(fp);
    fx_open(&f, 16, 1, 0, 0);
    int judged = 0;
    uint64_t dropped = 0;
    YW_CHECK_INT(attr_runs_load(f.r, judge, &judged, &dropped, err, sizeof err), ==, 0);
    YW_CHECK_INT(judged, ==, 3); /* 1, 2, then 4 breaks the chain: 5 and 9 are not asked */
    YW_CHECK_INT(dropped, ==, 3);
    YW_CHECK_INT(n_files(&f), ==, 2);
    fx_close(&f);
    struct stat st;
    YW_CHECK_INT(stat(bad, &st), ==, -1);
    fx_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_sealed_run_is_built_published_and_released),
        YW_TEST_ENTRY(a_view_keeps_the_runs_published_after_it),
        YW_TEST_ENTRY(fanin_files_merge_into_one),
        YW_TEST_ENTRY(a_failed_build_is_kept_and_retried),
        YW_TEST_ENTRY(a_build_that_never_succeeds_is_discarded_at_close),
        YW_TEST_ENTRY(files_are_dropped_from_the_front_or_anywhere),
        YW_TEST_ENTRY(start_up_keeps_what_the_judge_accepts),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
