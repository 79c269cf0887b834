/*
 * test_attr_store.c — unit tests of services/attribution/attr_store.c against a real
 * SQLite file: conversions, refunds, candidate touches and settings written by the
 * jobs come back (attr_store_load(), then the scan of the conversions) into a fresh
 * state with the same credits; stored conversions read back by id, by (viewer,
 * product) and in order; a stored order_id is a duplicate, not an error;
 * pruning a log segment moves its exposure counts into exposure_rollups, so that the
 * rollups survive the segment.
 */
#include "services/attribution/attr_store.h"

#include <errno.h>
#include <sys/stat.h>

#include "services/attribution/attr_xlog.h"
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

/* The service's start-up pass, without index files: every stored conversion into the
 * state, credited into the rollups. */
static int credit_one(void *arg, const attr_convset_t *one)
{
    attr_state_t *st = arg;
    const attr_stored_conv_t *sc = &one->convs[0];
    attr_conv_t *c = NULL;
    YW_CHECK_INT(attr_conv_load(st, &sc->in, sc->refunded, &c), ==, 0);
    const attr_stored_touch_t *t = attr_convset_touches(one, 0);
    for (size_t k = 0; k < sc->n_touches; k++) {
        YW_CHECK_INT(attr_conv_add_cand(st, c, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                        t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                        t[k].occur_ns, 1),
                     ==, 0);
    }
    YW_CHECK_INT(attr_conv_loaded(st, c, 1), ==, 0);
    return 0;
}

static grpc_status_code credit_all(yw_store_conn_t *conn, void *arg)
{
    char err[256];
    return attr_store_scan_conversions(conn, credit_one, arg, err, sizeof err) == 0
               ? GRPC_STATUS_OK
               : GRPC_STATUS_INTERNAL;
}

YW_TEST(conversions_touches_refunds_settings_come_back)
{
    fixture_t f;
    fixture_init(&f);
    attr_conv_row_t conv = {"o1", "v1", "p1", 1, 1000, T0, 1};
    attr_conv_job_t cj = {.rows = &conv, .n = 1, .currency = "CNY", .ingest_ns = T0};
    cj.job.work = attr_store_put_conversions;
    write_now(&f, &cj.job);
    attr_touch_row_t touches[] = {
        {"o1", "ea", "alice", "n1", ATTR_KIND_CLICK, 0, T0 - 2 * D_},
        {"o1", "eb", "bob", "n2", ATTR_KIND_CLICK, 0, T0 - D_},
        {"o1", "eb", "bob", "n2", ATTR_KIND_CLICK, 0, T0 - D_}, /* twice: kept once */
    };
    attr_touch_job_t tj = {.rows = touches, .n = 3, .mark = {1, 4, 5000}};
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
    YW_CHECK_INT(st.n_stored_convs, ==, 1);
    /* The touch mark stored with the touches. */
    YW_CHECK_INT(ld.touch_mark.seq, ==, 1);
    YW_CHECK_INT(ld.touch_mark.seg, ==, 4);
    YW_CHECK_INT(ld.touch_mark.off, ==, 5000);
    /* The snapshot's marks: 1 conversion of 1000, 1 refund of 100, 2 touches. */
    attr_load_t mk;
    memset(&mk, 0, sizeof mk);
    YW_CHECK_INT(yw_store_run_sync(f.store, attr_store_marks, &mk, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(mk.conversions, ==, 1);
    YW_CHECK_INT(mk.amount_sum, ==, 1000);
    YW_CHECK_INT(mk.refunds, ==, 1);
    YW_CHECK_INT(mk.refund_sum, ==, 100);
    YW_CHECK_INT(mk.touches, ==, 2);
    free(mk.pruned);
    /* Loading counts them; the conversions themselves stay in the database. */
    YW_CHECK(attr_conv_find(&st, "o1", 2) == NULL);
    YW_CHECK_INT(yw_store_run_sync(f.store, credit_all, &st, err, sizeof err), ==, GRPC_STATUS_OK);
    attr_conv_t *c = attr_conv_find(&st, "o1", 2);
    YW_CHECK(c != NULL);
    YW_CHECK_INT(attr_conv_net(c), ==, 900);
    YW_CHECK_INT(c->n_cands, ==, 2);
    YW_CHECK_INT(c->n_elig, ==, 2);
    YW_CHECK_INT(c->cands[0].persisted, ==, 1);
    YW_CHECK_STR(attr_cand_note(&c->cands[1]), "n2");
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

/* The reads of a job: by id, by (viewer, product), refund ids. */
typedef struct {
    attr_convset_t set;
    int got, by_key, refund, norefund, missing;
} reads_t;

static grpc_status_code do_reads(yw_store_conn_t *conn, void *arg)
{
    reads_t *r = arg;
    char err[256];
    r->got = attr_store_get_conversion(conn, "o10", 3, &r->set, err, sizeof err);
    r->missing = attr_store_get_conversion(conn, "o9", 2, &r->set, err, sizeof err);
    /* By number, as the key index points: o10 is in the set already; o3 (seq 4) is before
     * the time asked for; o1 (seq 3) is another viewer's: only o2 (seq 1) comes. */
    r->by_key = 0;
    for (uint64_t seq = 1; seq <= 5; seq++) {
        r->by_key +=
            attr_store_get_conversion_by_seq(conn, seq, "v", "p", T0, &r->set, err, sizeof err);
    }
    r->refund = attr_store_refund_exists(conn, "r-a", err, sizeof err);
    r->norefund = attr_store_refund_exists(conn, "r-z", err, sizeof err);
    return GRPC_STATUS_OK;
}

/* Version 1's insert (no seq column), for the migration test. */
static grpc_status_code v1_put_conversion(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_conv_job_t *j = (attr_conv_job_t *)job;
    sqlite3_stmt *s = yw_store_stmt(conn, "INSERT INTO conversions(order_id, viewer_id, product_id,"
                                          " quantity, amount_minor, currency, occur_ns, ingest_ns)"
                                          " VALUES (?1, ?2, ?3, 1, ?4, 'CNY', ?5, ?6)");
    YW_CHECK(s != NULL);
    YW_CHECK_INT(sqlite3_bind_text(s, 1, j->rows[0].order_id, -1, SQLITE_STATIC), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_bind_text(s, 2, j->rows[0].viewer_id, -1, SQLITE_STATIC), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_bind_text(s, 3, j->rows[0].product_id, -1, SQLITE_STATIC), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_bind_int64(s, 4, j->rows[0].amount_minor), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_bind_int64(s, 5, j->rows[0].occur_ns), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_bind_int64(s, 6, j->ingest_ns), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_step(s), ==, SQLITE_DONE);
    return GRPC_STATUS_OK;
}

static grpc_status_code read_seqs(yw_store_conn_t *conn, void *arg)
{
    reads_t *r = arg;
    char err[256];
    for (uint64_t seq = 1; seq <= 3; seq++) {
        YW_CHECK_INT(
            attr_store_get_conversion_by_seq(conn, seq, "v", "p", 0, &r->set, err, sizeof err), ==,
            1);
    }
    return GRPC_STATUS_OK;
}

typedef struct {
    char ids[8][8];
    int64_t refunded[8];
    size_t touches[8];
    int n;
} scan_t;

static int scan_one(void *arg, const attr_convset_t *one)
{
    scan_t *x = arg;
    YW_CHECK_INT(one->n, ==, 1);
    snprintf(x->ids[x->n], sizeof x->ids[x->n], "%s", one->convs[0].in.order_id);
    x->refunded[x->n] = one->convs[0].refunded;
    x->touches[x->n] = one->convs[0].n_touches;
    x->n++;
    return 0;
}

static grpc_status_code do_scan(yw_store_conn_t *conn, void *arg)
{
    char err[256];
    return attr_store_scan_conversions(conn, scan_one, arg, err, sizeof err) == 0
               ? GRPC_STATUS_OK
               : GRPC_STATUS_INTERNAL;
}

YW_TEST(stored_conversions_read_back_by_id_by_key_and_in_order)
{
    fixture_t f;
    fixture_init(&f);
    /* o1 < o10 < o2 < o3 in the database's order (bytes, then length). */
    attr_conv_row_t convs[] = {
        {"o2", "v", "p", 1, 200, T0 + 10, 1}, {"o10", "v", "p", 1, 100, T0 + 20, 2},
        {"o1", "w", "p", 1, 300, T0, 3},      {"o3", "v", "p", 1, 400, T0 - 10, 4},
        {"o1", "x", "y", 1, 999, T0, 5}, /* stored already: a duplicate, nothing changes */
    };
    uint8_t inserted[5] = {9, 9, 9, 9, 9};
    attr_conv_job_t cj = {
        .rows = convs, .n = 5, .currency = "CNY", .ingest_ns = T0, .inserted = inserted};
    cj.job.work = attr_store_put_conversions;
    write_now(&f, &cj.job);
    YW_CHECK_INT(inserted[0] + inserted[1] + inserted[2] + inserted[3], ==, 4);
    YW_CHECK_INT(inserted[4], ==, 0);
    attr_touch_row_t touches[] = {
        {"o10", "e2", "bob", "n", ATTR_KIND_CLICK, 0, T0 - 1},
        {"o10", "e1", "ann", "n", ATTR_KIND_VIEW, 20000, T0 - 2},
        {"o3", "e3", "cid", "", ATTR_KIND_IMPRESSION, 0, T0 - 20},
    };
    attr_touch_job_t tj = {.rows = touches, .n = 3};
    tj.job.work = attr_store_put_touches;
    write_now(&f, &tj.job);
    attr_refund_row_t refunds[] = {
        {"r-a", "o10", 30, T0}, {"r-b", "o10", 20, T0}, {"r-c", "o2", 5, T0}};
    attr_refund_job_t rj = {.rows = refunds, .n = 3, .ingest_ns = T0};
    rj.job.work = attr_store_put_refunds;
    write_now(&f, &rj.job);

    reads_t r;
    memset(&r, 0, sizeof r);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(f.store, do_reads, &r, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(r.got, ==, 1);
    YW_CHECK_INT(r.missing, ==, 0);
    YW_CHECK_INT(r.by_key, ==, 1);
    YW_CHECK_INT(r.refund, ==, 1);
    YW_CHECK_INT(r.norefund, ==, 0);
    YW_CHECK_INT(r.set.n, ==, 2);
    YW_CHECK_STR(r.set.convs[0].in.order_id, "o10");
    YW_CHECK_INT(r.set.convs[0].refunded, ==, 50);
    YW_CHECK_INT(r.set.convs[0].in.amount_minor, ==, 100);
    YW_CHECK_INT(r.set.convs[0].in.seq, ==, 2);
    YW_CHECK_INT(r.set.convs[0].n_touches, ==, 2);
    YW_CHECK_STR(attr_convset_touches(&r.set, 0)[0].event_id, "e1");
    YW_CHECK_STR(attr_convset_touches(&r.set, 0)[1].creator_id, "bob");
    YW_CHECK_STR(r.set.convs[1].in.order_id, "o2");
    YW_CHECK_INT(r.set.convs[1].refunded, ==, 5);
    YW_CHECK_INT(r.set.convs[1].n_touches, ==, 0);
    attr_convset_free(&r.set);

    scan_t x;
    memset(&x, 0, sizeof x);
    YW_CHECK_INT(yw_store_run_sync(f.store, do_scan, &x, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(x.n, ==, 4);
    YW_CHECK_STR(x.ids[0], "o1");
    YW_CHECK_STR(x.ids[1], "o10");
    YW_CHECK_STR(x.ids[2], "o2");
    YW_CHECK_STR(x.ids[3], "o3");
    YW_CHECK_INT(x.refunded[0], ==, 0);
    YW_CHECK_INT(x.refunded[1], ==, 50);
    YW_CHECK_INT(x.refunded[2], ==, 5);
    YW_CHECK_INT(x.touches[1], ==, 2);
    YW_CHECK_INT(x.touches[3], ==, 1);
    YW_CHECK_INT(x.touches[0] + x.touches[2], ==, 0);
    fixture_done(&f);
}

static void on_batch(attr_xlog_batch_t *b, int status)
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
    attr_xlog_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_xlog_open(&f.loop, segdir, 5, &log, err, sizeof err), ==, 0);
    attr_xlog_str_t prod = {"p", 1, 0};
    attr_xlog_exposure_t ev[4];
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
        ev[i].viewer = (attr_xlog_str_t){"v", 1, 0};
        ev[i].creator = (attr_xlog_str_t){"alice", 5, 0};
        ev[i].note = (attr_xlog_str_t){"", 0, 0};
        ev[i].products = &prod;
        ev[i].n_products = 1;
    }
    int done = 0;
    attr_xlog_batch_t b = {.events = ev, .n = 4, .arrival_ns = T0, .done = on_batch, .data = &done};
    YW_CHECK_INT(attr_xlog_append(log, &b), ==, 0);
    while (!done) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    int closed = 0;
    attr_xlog_close(log, on_log_closed, &closed);
    while (!closed) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    /* Prune it twice over two segments' worth: counts add up (upsert). */
    attr_prune_job_t pj;
    memset(&pj, 0, sizeof pj);
    attr_xlog_path(segdir, 5, pj.path, sizeof pj.path);
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

YW_TEST(version_1_conversions_are_numbered_in_ingest_order)
{
    fixture_t f;
    fixture_init(&f);
    close_store(&f);
    /* A database of version 1 with three conversions (no seq column yet). */
    yw_store_config_t cfg = {.path = f.db, .migrations = attr_migrations, .n_migrations = 1};
    char err[256];
    int rc = unlink(f.db);
    YW_CHECK(rc == 0 || errno == ENOENT);
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &f.store, err, sizeof err), ==, 0);
    attr_conv_row_t rows[3] = {
        {"b", "v", "p", 1, 1, T0, 0}, {"a", "v", "p", 1, 2, T0, 0}, {"c", "v", "p", 1, 3, T0, 0}};
    const int64_t ingest[3] = {T0 + 2, T0 + 1, T0 + 3};
    for (int i = 0; i < 3; i++) {
        attr_conv_job_t cj = {.rows = &rows[i], .n = 1, .currency = "CNY", .ingest_ns = ingest[i]};
        cj.job.work = v1_put_conversion;
        write_now(&f, &cj.job);
    }
    close_store(&f);
    open_store(&f); /* migrates to version 2 */
    YW_CHECK_INT(yw_store_schema_version(f.store), ==, ATTR_N_MIGRATIONS);
    attr_state_t st;
    attr_load_t ld;
    load(&f, &st, &ld);
    YW_CHECK_INT(ld.conversions, ==, 3);
    YW_CHECK_INT(ld.max_seq, ==, 3);
    reads_t r;
    memset(&r, 0, sizeof r);
    YW_CHECK_INT(yw_store_run_sync(f.store, read_seqs, &r, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(r.set.n, ==, 3);
    YW_CHECK_STR(r.set.convs[0].in.order_id, "a"); /* ingested first */
    YW_CHECK_STR(r.set.convs[1].in.order_id, "b");
    YW_CHECK_STR(r.set.convs[2].in.order_id, "c");
    attr_convset_free(&r.set);
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
        YW_TEST_ENTRY(stored_conversions_read_back_by_id_by_key_and_in_order),
        YW_TEST_ENTRY(version_1_conversions_are_numbered_in_ingest_order),
        YW_TEST_ENTRY(pruning_a_segment_keeps_its_counts),
        YW_TEST_ENTRY(a_fresh_database_has_no_settings_yet),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
