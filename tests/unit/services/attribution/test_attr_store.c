/*
 * test_attr_store.c — unit tests of services/attribution/attr_store.c against a real
 * SQLite file: conversions, refunds, candidate touches and settings written by the
 * jobs come back through attr_store_load() into a fresh state with the same credits;
 * pruning a log segment moves its exposure counts into exposure_rollups, so that the
 * rollups survive the segment.
 */
#include "services/attribution/attr_store.h"

#include <errno.h>
#include <sys/stat.h>

#include "services/attribution/attr_log.h"
#include "tests/unit/test.h"

#define D_ ATTR_NS_PER_DAY
#define T0 (INT64_C(20000) * D_ + 12 * 3600 * ATTR_NS_PER_S)

typedef struct {
    char dir[256];
    char db[300];
    uv_loop_t loop;
    yw_store_t *store;
    int closed;
} fixture_t;

static void on_closed(void *arg)
{
    ((fixture_t *)arg)->closed = 1;
}

static void open_store(fixture_t *f)
{
    yw_store_config_t cfg = {
        .path = f->db, .migrations = attr_migrations, .n_migrations = attr_n_migrations};
    char err[256];
    YW_CHECK_INT(yw_store_open(&f->loop, &cfg, &f->store, err, sizeof err), ==, 0);
}

static void close_store(fixture_t *f)
{
    f->closed = 0;
    yw_store_close(f->store, on_closed, f);
    while (!f->closed) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/attrstoreXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->db, sizeof f->db, "%s/attribution.db", f->dir);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    open_store(f);
}

static void fixture_done(fixture_t *f)
{
    close_store(f);
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    YW_CHECK_INT(system(cmd), ==, 0);
}

/* Runs a job's work function now, in its own transaction. */
static grpc_status_code run_job(yw_store_conn_t *conn, void *arg)
{
    yw_store_job_t *job = arg;
    return job->work(conn, job);
}

static void write_now(fixture_t *f, yw_store_job_t *job)
{
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(f->store, run_job, job, err, sizeof err), ==, GRPC_STATUS_OK);
}

static void load(fixture_t *f, attr_state_t *st, attr_load_t *ld)
{
    attr_state_init(st);
    st->defer = 1;
    memset(ld, 0, sizeof *ld);
    ld->st = st;
    ld->now_ns = T0 + 3600 * ATTR_NS_PER_S;
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(f->store, attr_store_load, ld, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(attr_state_flush(st), ==, 0);
    st->defer = 0;
}

static int64_t gmv(attr_state_t *st, const char *creator, int model)
{
    int64_t id = attr_intern_find(&st->creators, creator, strlen(creator));
    YW_CHECK(id >= 0);
    attr_sums_t s;
    attr_state_creator_sums(st, (uint32_t)id, 19990, 20010, model, &s);
    return s.gmv;
}

YW_TEST(conversions_touches_refunds_settings_come_back)
{
    fixture_t f;
    fixture_init(&f);
    attr_conv_row_t conv = {"o1", "v1", "p1", 1, 1000, T0};
    attr_conv_job_t cj = {.rows = &conv, .n = 1, .currency = "CNY", .ingest_ns = T0};
    cj.job.work = attr_store_put_conversions;
    write_now(&f, &cj.job);
    attr_touch_row_t touches[] = {
        {"o1", "ea", "alice", "n1", ATTR_KIND_CLICK, 0, T0 - 2 * D_},
        {"o1", "eb", "bob", "n2", ATTR_KIND_CLICK, 0, T0 - D_},
        {"o1", "eb", "bob", "n2", ATTR_KIND_CLICK, 0, T0 - D_}, /* twice: kept once */
    };
    attr_touch_job_t tj = {.rows = touches, .n = 3};
    tj.job.work = attr_store_put_touches;
    write_now(&f, &tj.job);
    attr_refund_row_t refund = {"r1", "o1", 100, T0};
    attr_refund_job_t rj = {.rows = &refund, .n = 1, .ingest_ns = T0};
    rj.job.work = attr_store_put_refunds;
    write_now(&f, &rj.job);
    attr_settings_job_t sj;
    memset(&sj, 0, sizeof sj);
    attr_settings_default(&sj.settings);
    sj.settings.default_model = ATTR_MODEL_LINEAR;
    sj.settings.version = 3;
    sj.job.work = attr_store_put_settings;
    write_now(&f, &sj.job);
    /* A refund of an unknown order breaks the foreign key: the job fails. */
    attr_refund_row_t orphan = {"r2", "nope", 1, T0};
    attr_refund_job_t oj = {.rows = &orphan, .n = 1, .ingest_ns = T0};
    oj.job.work = attr_store_put_refunds;
    char err[256];
    YW_CHECK(yw_store_run_sync(f.store, run_job, &oj.job, err, sizeof err) != GRPC_STATUS_OK);

    attr_state_t st;
    attr_load_t ld;
    load(&f, &st, &ld);
    YW_CHECK_INT(ld.settings_found, ==, 1);
    YW_CHECK_INT(st.settings.version, ==, 3);
    YW_CHECK_INT(st.settings.default_model, ==, ATTR_MODEL_LINEAR);
    YW_CHECK_INT(ld.conversions, ==, 1);
    YW_CHECK_INT(ld.touches, ==, 2);
    YW_CHECK_INT(ld.refunds, ==, 1);
    attr_conv_t *c = attr_conversion_find(&st, "o1", 2);
    YW_CHECK(c != NULL);
    YW_CHECK_INT(attr_conv_net(c), ==, 900);
    YW_CHECK_INT(c->n_elig, ==, 2);
    YW_CHECK_INT(c->cands[0].persisted, ==, 1);
    /* Credited from the persisted touches alone (no exposure in memory). */
    YW_CHECK_INT(gmv(&st, "bob", ATTR_MODEL_LAST_TOUCH), ==, 900);
    YW_CHECK_INT(gmv(&st, "alice", ATTR_MODEL_FIRST_TOUCH), ==, 900);
    YW_CHECK_INT(gmv(&st, "alice", ATTR_MODEL_LINEAR), ==, 450);
    /* Nothing is waiting to be persisted: it came from the database. */
    YW_CHECK_INT(st.n_persist, ==, 0);
    free(ld.pruned);
    attr_state_free(&st);
    fixture_done(&f);
}

static void on_batch(attr_log_batch_t *b, int status)
{
    YW_CHECK_INT(status, ==, 0);
    *(int *)b->data = 1;
}

static void on_log_closed(void *arg)
{
    *(int *)arg = 1;
}

YW_TEST(pruning_a_segment_keeps_its_counts)
{
    fixture_t f;
    fixture_init(&f);
    char segdir[300];
    snprintf(segdir, sizeof segdir, "%s/exposures", f.dir);
    YW_CHECK_INT(mkdir(segdir, 0750), ==, 0);
    attr_log_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_log_open(&f.loop, segdir, 5, &log, err, sizeof err), ==, 0);
    attr_log_str_t prod = {"p", 1, 0};
    attr_log_exposure_t ev[4];
    const int kinds[4] = {ATTR_KIND_IMPRESSION, ATTR_KIND_IMPRESSION, ATTR_KIND_VIEW,
                          ATTR_KIND_CLICK};
    const char *ids[4] = {"e0", "e1", "e2", "e3"};
    for (int i = 0; i < 4; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].event_id = ids[i];
        ev[i].event_id_len = 2;
        ev[i].kind = (uint8_t)kinds[i];
        /* e3 is on the next day */
        ev[i].occur_ns = T0 + (i == 3 ? D_ : 0);
        ev[i].viewer = (attr_log_str_t){"v", 1, 0};
        ev[i].creator = (attr_log_str_t){"alice", 5, 0};
        ev[i].note = (attr_log_str_t){"", 0, 0};
        ev[i].products = &prod;
        ev[i].n_products = 1;
    }
    int done = 0;
    attr_log_batch_t b = {.events = ev, .n = 4, .arrival_ns = T0, .done = on_batch, .data = &done};
    YW_CHECK_INT(attr_log_append(log, &b), ==, 0);
    while (!done) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    int closed = 0;
    attr_log_close(log, on_log_closed, &closed);
    while (!closed) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    /* Prune it twice over two segments' worth: counts add up (upsert). */
    attr_prune_job_t pj;
    memset(&pj, 0, sizeof pj);
    attr_log_path(segdir, 5, pj.path, sizeof pj.path);
    pj.seq = 5;
    pj.now_ns = T0;
    pj.job.work = attr_store_prune_segment;
    write_now(&f, &pj.job);
    YW_CHECK_INT(pj.events, ==, 4);
    /* The same segment cannot be recorded twice (seq is the key). */
    YW_CHECK(yw_store_run_sync(f.store, run_job, &pj.job, err, sizeof err) != GRPC_STATUS_OK);
    YW_CHECK_INT(unlink(pj.path), ==, 0);

    attr_state_t st;
    attr_load_t ld;
    load(&f, &st, &ld);
    YW_CHECK_INT(ld.n_pruned, ==, 1);
    YW_CHECK_INT(ld.pruned[0], ==, 5);
    YW_CHECK_INT(ld.rollups, ==, 2);
    uint32_t alice = (uint32_t)attr_intern_find(&st.creators, "alice", 5);
    attr_sums_t s;
    attr_state_creator_sums(&st, alice, 20000, 20001, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 2);
    YW_CHECK_INT(s.views, ==, 1);
    YW_CHECK_INT(s.clicks, ==, 0);
    attr_state_creator_sums(&st, alice, 20000, 20002, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.clicks, ==, 1);
    free(ld.pruned);
    attr_state_free(&st);
    fixture_done(&f);
}

YW_TEST(a_fresh_database_has_no_settings_yet)
{
    fixture_t f;
    fixture_init(&f);
    attr_state_t st;
    attr_load_t ld;
    load(&f, &st, &ld);
    YW_CHECK_INT(ld.settings_found, ==, 0);
    YW_CHECK_INT(st.settings.click_window_ns, ==, 7 * D_);
    YW_CHECK_STR(st.settings.currency, "CNY");
    free(ld.pruned);
    attr_state_free(&st);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(conversions_touches_refunds_settings_come_back),
        YW_TEST_ENTRY(pruning_a_segment_keeps_its_counts),
        YW_TEST_ENTRY(a_fresh_database_has_no_settings_yet),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
