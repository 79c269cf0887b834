/*
 * test_attr_engine.c — unit tests of services/attribution/attr_engine.c: engines opened
 * and closed as instances, several in one process on one loop. Two engines over two temp
 * dirs each open their own attribution.db, exposures/ and conversion-keys/; a change
 * written through one's store is found by it alone after both are closed (each close
 * calling back once, each writing its dir's snapshot) and reopened. An engine lent a
 * store leaves it open. Only the engine given the metrics registry registers series.
 * An engine ships the transactions of the store it opens, and fails to open when the
 * ship is refused, releasing what it opened on the loop.
 * Opening over a dir that cannot be made fails with the path and leaves nothing behind.
 * Tier scoring is at a port nobody serves (no report asks it).
 */
#include "services/attribution/attr_engine.h"

#include <errno.h>
#include <sys/stat.h>

#include "services/attribution/attr_service_int.h"
#include "services/attribution/attr_snap.h"
#include "services/attribution/attr_store.h"
#include "tests/unit/test.h"

typedef struct {
    char root[256];
    char dir[2][300];
    yw_runtime_t *rt;
    yw_page_key_t key;
    int closed[2];   /* how often each engine's `closed` ran */
    int want_closed; /* the loop stops once this many closes ran */
    int n_closed;
} fixture_t;

static fixture_t *g_f;

static void fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    g_f = f;
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/attrengineXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->root) != NULL);
    for (int i = 0; i < 2; i++) {
        /* (Through a copy: gcc -O1 takes f->root and f->dir[i] to overlap.) */
        char root[sizeof f->root];
        memcpy(root, f->root, sizeof root);
        snprintf(f->dir[i], sizeof f->dir[i], "%s/p%d", root, i);
    }
    YW_CHECK_INT(yw_runtime_create(&f->rt), ==, 0);
    YW_CHECK_INT(yw_page_key_random(&f->key), ==, 0);
}

static void fixture_done(fixture_t *f)
{
    yw_runtime_destroy(f->rt);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    YW_CHECK_INT(system(cmd), ==, 0);
}

static attr_engine_config_t config(fixture_t *f, int i)
{
    attr_engine_config_t cfg;
    attr_engine_config_defaults(&cfg);
    cfg.rt = f->rt;
    cfg.data_dir = f->dir[i];
    cfg.tier_addr = "127.0.0.1:1";
    cfg.page_key = &f->key;
    cfg.conversion_cache_bytes = 1 << 20;
    cfg.dedup_filter_bytes = 1 << 20;
    return cfg;
}

static attr_svc_t *open_engine(fixture_t *f, int i)
{
    attr_engine_config_t cfg = config(f, i);
    attr_svc_t *svc = NULL;
    char err[512] = "";
    int rc = attr_engine_open(&cfg, &svc, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "attr_engine_open %s: %s\n", f->dir[i], err);
    }
    YW_CHECK_INT(rc, ==, 0);
    YW_CHECK(svc != NULL);
    return svc;
}

static void on_closed(void *arg)
{
    int *n = arg;
    (*n)++;
    if (++g_f->n_closed == g_f->want_closed) {
        yw_runtime_stop(g_f->rt);
    }
}

/* Closes the engines given (NULL: none there) and runs the loop until each called back. */
static void close_engines(fixture_t *f, attr_svc_t *a, attr_svc_t *b)
{
    f->n_closed = 0;
    f->want_closed = (a != NULL) + (b != NULL);
    f->closed[0] = f->closed[1] = 0;
    if (a != NULL) {
        attr_engine_close(a, on_closed, &f->closed[0]);
    }
    if (b != NULL) {
        attr_engine_close(b, on_closed, &f->closed[1]);
    }
    YW_CHECK_INT(f->closed[0] + f->closed[1], ==, 0); /* never from within the close */
    yw_runtime_run(f->rt);
    YW_CHECK_INT(f->closed[0], ==, a != NULL);
    YW_CHECK_INT(f->closed[1], ==, b != NULL);
}

static int is_dir(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static grpc_status_code put_settings(yw_store_conn_t *conn, void *arg)
{
    attr_settings_job_t *j = arg;
    return attr_store_put_settings(conn, &j->job);
}

/* Stores `s` in `store`, as UpdateAttributionSettings stores them. */
static void store_settings(yw_store_t *store, const attr_settings_t *s)
{
    attr_settings_job_t j;
    memset(&j, 0, sizeof j);
    j.settings = *s;
    char err[256] = "";
    YW_CHECK_INT(yw_store_run_sync(store, put_settings, &j, err, sizeof err), ==, GRPC_STATUS_OK);
}

YW_TEST(two_engines_in_one_process_keep_their_own_files_and_state)
{
    fixture_t f;
    fixture_init(&f);
    attr_svc_t *a = open_engine(&f, 0), *b = open_engine(&f, 1);
    for (int i = 0; i < 2; i++) {
        YW_CHECK(is_file(f.dir[i], "attribution.db"));
        YW_CHECK(is_dir(f.dir[i], "exposures"));
        YW_CHECK(is_dir(f.dir[i], "conversion-keys"));
        YW_CHECK(!is_file(f.dir[i], ATTR_SNAP_FILE));
    }
    YW_CHECK(a->store != NULL && b->store != NULL && a->store != b->store);
    /* Both start at the defaults, stored at their first start. */
    YW_CHECK_INT(a->st.settings.version, ==, 1);
    YW_CHECK_INT(b->st.settings.version, ==, 1);
    /* A's database gets settings of its own. */
    attr_settings_t s = a->st.settings;
    s.version = 7;
    s.default_model = b->st.settings.default_model == 2 ? 3 : 2;
    store_settings(a->store, &s);

    close_engines(&f, a, b);
    /* Each wrote its snapshot at the clean stop, in its own dir. */
    YW_CHECK(is_file(f.dir[0], ATTR_SNAP_FILE));
    YW_CHECK(is_file(f.dir[1], ATTR_SNAP_FILE));

    /* Reopened (B first, the other order): A finds what was written through it, B not. */
    b = open_engine(&f, 1);
    a = open_engine(&f, 0);
    YW_CHECK_INT(a->st.settings.version, ==, 7);
    YW_CHECK_INT(a->st.settings.default_model, ==, s.default_model);
    YW_CHECK_INT(b->st.settings.version, ==, 1);
    YW_CHECK_INT(b->st.settings.default_model, !=, s.default_model);
    /* Start-up took (and deleted) each one's snapshot. */
    YW_CHECK(!is_file(f.dir[0], ATTR_SNAP_FILE));
    YW_CHECK(!is_file(f.dir[1], ATTR_SNAP_FILE));
    close_engines(&f, a, b);

    /* One engine alone, reopened once more: still its own state. */
    a = open_engine(&f, 0);
    YW_CHECK_INT(a->st.settings.version, ==, 7);
    close_engines(&f, a, NULL);
    fixture_done(&f);
}

static void on_store_closed(void *arg)
{
    *(int *)arg = 1;
    yw_runtime_stop(g_f->rt);
}

YW_TEST(an_engine_lent_a_store_leaves_it_open)
{
    fixture_t f;
    fixture_init(&f);
    YW_CHECK_INT(mkdir(f.dir[0], 0750), ==, 0);
    char db[400];
    snprintf(db, sizeof db, "%s/attribution.db", f.dir[0]);
    yw_store_config_t scfg = {
        .path = db, .migrations = attr_migrations, .n_migrations = attr_n_migrations};
    yw_store_t *store = NULL;
    char err[512] = "";
    YW_CHECK_INT(yw_store_open(yw_runtime_loop(f.rt), &scfg, &store, err, sizeof err), ==, 0);
    attr_engine_config_t cfg = config(&f, 0);
    cfg.store = store;
    attr_svc_t *svc = NULL;
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), ==, 0);
    YW_CHECK(svc->store == store);
    attr_settings_t s = svc->st.settings;
    close_engines(&f, svc, NULL);
    /* Still open: a write goes through. */
    s.version = 2;
    store_settings(store, &s);
    int closed = 0;
    yw_store_close(store, on_store_closed, &closed);
    yw_runtime_run(f.rt);
    YW_CHECK_INT(closed, ==, 1);
    fixture_done(&f);
}

/* How many lines of `text` start with `prefix`. */
static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, len) == 0) {
            n++;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return n;
}

YW_TEST(only_the_engine_given_the_registry_registers_metrics)
{
    fixture_t f;
    fixture_init(&f);
    yw_metrics_t *m = NULL;
    YW_CHECK_INT(yw_metrics_create(0, &m), ==, 0);
    attr_engine_config_t cfg = config(&f, 0);
    cfg.metrics = m;
    attr_svc_t *a = NULL;
    char err[512] = "";
    YW_CHECK_INT(attr_engine_open(&cfg, &a, err, sizeof err), ==, 0);
    attr_svc_t *b = open_engine(&f, 1); /* no registry */
    YW_CHECK(a->mem[0] != NULL && b->mem[0] == NULL);
    char *text = NULL;
    size_t len = 0;
    YW_CHECK_INT(yw_metrics_render(m, &text, &len), ==, 0);
    YW_CHECK_INT(count_lines(text, "yaowei_attribution_memory_bytes{part=\"rollups\"}"), ==, 1);
    free(text);
    close_engines(&f, a, b);
    yw_metrics_destroy(m);
    fixture_done(&f);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    int *n = arg;
    (*n)++;
}

/* A timer that stops the loop once it is the only handle left on it (closing or not). */
static void on_idle_check(uv_timer_t *t)
{
    int n = 0;
    uv_walk(t->loop, count_handle, &n);
    if (n == 1) {
        yw_runtime_stop(((fixture_t *)t->data)->rt);
    }
}

/* A ship function of attribution.db's transactions: counts them; refuses when asked. */
typedef struct {
    int calls;
    int refuse;
} ship_t;

static int ship_db(void *arg, const void *changeset, size_t len, char *err, size_t errlen)
{
    ship_t *sh = arg;
    sh->calls++;
    if (sh->refuse) {
        snprintf(err, errlen, "the log refused it");
        return -1;
    }
    return changeset != NULL && len > 0 ? 0 : -1;
}

YW_TEST(an_engine_ships_the_transactions_of_the_store_it_opens)
{
    fixture_t f;
    fixture_init(&f);
    ship_t sh = {0};
    attr_engine_config_t cfg = config(&f, 0);
    cfg.ship_db = ship_db;
    cfg.ship_db_arg = &sh;
    attr_svc_t *svc = NULL;
    char err[512] = "";
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), ==, 0);
    YW_CHECK_INT(sh.calls, >=, 1); /* the default settings, stored at the first start */
    int before = sh.calls;
    attr_settings_t s = svc->st.settings;
    s.version = 2;
    store_settings(svc->store, &s);
    YW_CHECK_INT(sh.calls, ==, before + 1);
    close_engines(&f, svc, NULL);
    /* A refused transaction is not stored: the first start of another dir fails. */
    sh.refuse = 1;
    cfg = config(&f, 1);
    cfg.ship_db = ship_db;
    cfg.ship_db_arg = &sh;
    svc = (attr_svc_t *)&f;
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), <, 0);
    YW_CHECK(svc == NULL);
    YW_CHECK(strstr(err, "refused") != NULL);
    /* What it opened (its store, its threads) closes on the loop, and nothing is left. */
    uv_timer_t t;
    YW_CHECK_INT(uv_timer_init(yw_runtime_loop(f.rt), &t), ==, 0);
    t.data = &f;
    YW_CHECK_INT(uv_timer_start(&t, on_idle_check, 1, 1), ==, 0);
    yw_runtime_run(f.rt);
    uv_close((uv_handle_t *)&t, NULL);
    /* A lent store ships as its opener configured it: ship_db with one is refused (before
     * the store is looked at: any pointer will do). */
    cfg = config(&f, 1);
    cfg.store = (yw_store_t *)&f;
    cfg.ship_db = ship_db;
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), ==, -EINVAL);
    YW_CHECK(svc == NULL);
    fixture_done(&f);
}

YW_TEST(an_engine_that_cannot_make_its_dir_fails_naming_it)
{
    fixture_t f;
    fixture_init(&f);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/missing/p0", f.root);
    attr_engine_config_t cfg = config(&f, 0);
    cfg.data_dir = dir;
    attr_svc_t *svc = (attr_svc_t *)&f; /* set to NULL on failure */
    char err[512] = "";
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), ==, -ENOENT);
    YW_CHECK(svc == NULL);
    YW_CHECK(strstr(err, dir) != NULL);
    cfg = config(&f, 0);
    cfg.page_key = NULL;
    YW_CHECK_INT(attr_engine_open(&cfg, &svc, err, sizeof err), ==, -EINVAL);
    YW_CHECK(svc == NULL);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(two_engines_in_one_process_keep_their_own_files_and_state),
        YW_TEST_ENTRY(an_engine_lent_a_store_leaves_it_open),
        YW_TEST_ENTRY(only_the_engine_given_the_registry_registers_metrics),
        YW_TEST_ENTRY(an_engine_ships_the_transactions_of_the_store_it_opens),
        YW_TEST_ENTRY(an_engine_that_cannot_make_its_dir_fails_naming_it),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
