/*
 * test_attr_exposure_store.c — unit tests of services/attribution/attr_exposure_store.c, with a
 * real log and real index files in a temporary directory: a sealed run's index is published and the
 * run leaves memory; an id then in the index only is found through the Bloom filter and the disk
 * (exactly: a new id is not a duplicate); conversions find their candidates on disk; a restart
 * loads the files (rollups, ids) instead of reading the log, and a stored conversion finds its
 * touches in them; missing, damaged or out-of-chain files are rebuilt from the log; files are
 * merged; pruning drops what only covers pruned segments; the log indexed apart (a cluster
 * node's build) gives the files an open then loads.
 */
#include "services/attribution/attr_exposure_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/unit/test.h"

#define S_ INT64_C(1000000000)
#define D_ (86400 * S_)

typedef struct {
    char dir[256];
    uv_loop_t loop;
    attr_state_t st;
    attr_exposure_store_t *xs;
    int64_t now;
    int closed;
} fx_t;

static void fx_open(fx_t *f, int fresh_dir)
{
    if (fresh_dir) {
        const char *tmp = getenv("TEST_TMPDIR");
        snprintf(f->dir, sizeof f->dir, "%s/xstoreXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        YW_CHECK(mkdtemp(f->dir) != NULL);
        YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        f->now = (int64_t)ts.tv_sec * S_;
    }
    attr_state_init(&f->st);
}

static attr_exposure_store_stats_t fx_start(fx_t *f)
{
    f->st.defer = 1;
    attr_exposure_store_stats_t stats;
    char err[512] = "";
    int rc = attr_exposure_store_open(&f->loop, f->dir, 0, &f->st, NULL, 0, f->now, &f->xs, &stats,
                                      err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", err);
    }
    YW_CHECK_INT(rc, ==, 0);
    YW_CHECK_INT(attr_state_flush(&f->st), ==, 0);
    f->st.defer = 0;
    return stats;
}

static void on_closed(void *arg)
{
    ((fx_t *)arg)->closed = 1;
}

static void fx_stop(fx_t *f)
{
    f->closed = 0;
    attr_exposure_store_close(f->xs, on_closed, f);
    while (!f->closed) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    f->xs = NULL;
    attr_state_free(&f->st);
}

static void fx_done(fx_t *f)
{
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    YW_CHECK_INT(system(cmd), ==, 0);
}

/* ---- ingesting through the store as the service does ---- */

typedef struct {
    attr_xlog_batch_t lb;
    fx_t *f;
    uint64_t seqs[64];
    attr_xlog_exposure_t evs[64];
    attr_xlog_str_t prods[64];
    uint32_t offs[64];
    int done;
} batch_t;

static void on_batch(attr_xlog_batch_t *lb, int status)
{
    batch_t *b = lb->data;
    YW_CHECK_INT(status, ==, 0);
    for (size_t i = 0; i < lb->n; i++) {
        YW_CHECK(attr_exposure_commit_at(&b->f->st, b->seqs[i], (uint32_t)lb->seq, b->offs[i],
                                         b->f->now) >= 0);
    }
    attr_exposure_store_committed(b->f->xs, lb);
    b->done = 1;
}

/* Exposures `id`-0 .. `id`-(n-1) of viewer v on product p (one product each). */
static void ingest(fx_t *f, const char *id, int n, const char *viewer, const char *creator,
                   const char *product, int kind, int64_t at)
{
    static batch_t b;
    memset(&b, 0, sizeof b);
    b.f = f;
    YW_CHECK(n <= 64);
    char ids[64][32];
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%s-%d", id, i);
        const char *prods[1] = {product};
        attr_exposure_in_t in = {
            .event_id = ids[i],
            .event_id_len = strlen(ids[i]),
            .viewer_id = viewer,
            .viewer_len = strlen(viewer),
            .creator_id = creator,
            .creator_len = strlen(creator),
            .note_id = "note",
            .note_len = 4,
            .product_ids = prods,
            .n_products = 1,
            .kind = kind,
            .watch_ms = 20000,
            .occur_ns = at,
        };
        attr_interned_t out[4];
        YW_CHECK_INT(attr_exposure_admit(&f->st, &in, f->now, &b.seqs[i], out), ==, ATTR_ADMITTED);
        const attr_pexp_t *p = attr_exposure_pending(&f->st, b.seqs[i]);
        attr_xlog_exposure_t *e = &b.evs[i];
        e->event_id = p->event_id.s;
        e->event_id_len = p->event_id.len;
        e->kind = (uint8_t)kind;
        e->watch_ms = p->watch_ms;
        e->occur_ns = at;
        e->viewer = (attr_xlog_str_t){out[0].s, out[0].len, 0};
        e->creator = (attr_xlog_str_t){out[1].s, out[1].len, 0};
        e->note = (attr_xlog_str_t){out[2].s, out[2].len, 0};
        b.prods[i] = (attr_xlog_str_t){out[3].s, out[3].len, 0};
        e->products = &b.prods[i];
        e->n_products = 1;
    }
    b.lb.events = b.evs;
    b.lb.n = (size_t)n;
    b.lb.arrival_ns = f->now;
    b.lb.done = on_batch;
    b.lb.data = &b;
    b.lb.rec_off = b.offs;
    YW_CHECK_INT(attr_exposure_store_append(f->xs, &b.lb), ==, 0);
    while (!b.done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* Seals the open run (by age) and waits until its file is published. */
static void index_now(fx_t *f)
{
    attr_exposure_store_info_t before, now;
    attr_exposure_store_info(f->xs, &before);
    attr_exposure_store_tick(f->xs, f->now + 3600 * S_);
    do {
        uv_run(&f->loop, UV_RUN_ONCE);
        attr_exposure_store_info(f->xs, &now);
    } while (now.runs_built == before.runs_built);
}

/* ---- asking ---- */

typedef struct {
    attr_xconfirm_t cf;
    const attr_pexp_t *ev[1];
    uint8_t dup[1];
    int done;
} confirm_t;

static void on_confirmed(attr_xconfirm_t *cf)
{
    ((confirm_t *)cf->data)->done = 1;
}

/* Admits one exposure with id `eid`: ATTR_DUPLICATE, or ATTR_ADMITTED after (if the
 * Bloom filter was unsure) asking the disk; the admission is aborted afterwards. */
static int admit_once(fx_t *f, const char *eid, int *asked_disk)
{
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = {.event_id = eid,
                             .event_id_len = strlen(eid),
                             .viewer_id = "v",
                             .viewer_len = 1,
                             .creator_id = "c",
                             .creator_len = 1,
                             .note_id = "",
                             .note_len = 0,
                             .product_ids = prods,
                             .n_products = 1,
                             .kind = ATTR_KIND_CLICK,
                             .occur_ns = f->now};
    uint64_t seq;
    int rc = attr_exposure_admit(&f->st, &in, f->now, &seq, NULL);
    *asked_disk = 0;
    if (rc == ATTR_UNSURE) {
        *asked_disk = 1;
        static confirm_t c;
        memset(&c, 0, sizeof c);
        c.ev[0] = attr_exposure_pending(&f->st, seq);
        c.cf.n = 1;
        c.cf.events = c.ev;
        c.cf.dup = c.dup;
        c.cf.done = on_confirmed;
        c.cf.data = &c;
        attr_exposure_store_confirm_begin(f->xs, &c.cf);
        YW_CHECK_INT(attr_exposure_store_confirm(f->xs, &c.cf), ==, 0);
        while (!c.done) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
        YW_CHECK_INT(c.cf.status, ==, 0);
        attr_exposure_resolve(&f->st, seq, c.dup[0]);
        rc = c.dup[0] ? ATTR_DUPLICATE : ATTR_ADMITTED;
    }
    if (rc == ATTR_ADMITTED) {
        attr_exposure_abort(&f->st, seq);
    }
    return rc;
}

typedef struct {
    attr_xjoin_t jr;
    attr_xjoin_q_t q;
    int done;
} join_t;

static void on_joined(attr_xjoin_t *jr)
{
    ((join_t *)jr->data)->done = 1;
}

/* The candidates on disk of (viewer, product) at `at`; their event ids into `ids`. */
static size_t disk_cands(fx_t *f, const char *viewer, const char *product, int64_t at,
                         char ids[][32], size_t max)
{
    static join_t j;
    memset(&j, 0, sizeof j);
    j.q = (attr_xjoin_q_t){attr_vp_hash(yw_hash_bytes(viewer, strlen(viewer)),
                                        yw_hash_bytes(product, strlen(product))),
                           viewer,
                           product,
                           (uint32_t)strlen(viewer),
                           (uint32_t)strlen(product),
                           at};
    j.jr.n = 1;
    j.jr.q = &j.q;
    j.jr.done = on_joined;
    j.jr.data = &j;
    YW_CHECK_INT(attr_exposure_store_join(f->xs, &j.jr), ==, 0);
    while (!j.done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(j.jr.status, ==, 0);
    size_t n;
    const attr_xcand_t *c = attr_xjoin_cands(&j.jr, 0, &n);
    for (size_t i = 0; i < n && i < max; i++) {
        snprintf(ids[i], 32, "%s", c[i].event_id);
    }
    attr_xjoin_free(&j.jr);
    return n;
}

static int64_t impressions(fx_t *f, const char *creator)
{
    int64_t id = attr_intern_find(&f->st.creators, creator, strlen(creator));
    if (id < 0) {
        return 0;
    }
    attr_sums_t s;
    attr_state_creator_sums(&f->st, (uint32_t)id, attr_day_of(f->now) - 30, attr_day_of(f->now) + 2,
                            ATTR_MODEL_LAST_TOUCH, &s);
    return s.impressions;
}

static int count_files(const char *dir)
{
    char **paths = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xidx_list(dir, &paths, &n), ==, 0);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    return (int)n;
}

/* Deletes every index file in `dir`; returns how many there were. */
static int remove_files(const char *dir)
{
    char **paths = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xidx_list(dir, &paths, &n), ==, 0);
    for (size_t i = 0; i < n; i++) {
        YW_CHECK_INT(unlink(paths[i]), ==, 0);
        free(paths[i]);
    }
    free(paths);
    return (int)n;
}

/* attr_exposure_store_find_cands()'s callback: the found exposure becomes a candidate. */
static fx_t *cand_fx;

static int add_found(void *arg, const attr_xlog_event_t *ev)
{
    attr_conv_t *c = arg;
    char eid[64];
    snprintf(eid, sizeof eid, "%.*s", (int)ev->event_id.len, ev->event_id.s);
    return attr_conv_add_cand(&cand_fx->st, c, eid, ev->creator.s, ev->creator.len, ev->note.s,
                              ev->note.len, ev->kind, ev->watch_ms, ev->occur_ns, 0);
}

/* ---- tests ---- */

YW_TEST(an_indexed_run_leaves_memory_and_is_found_on_disk)
{
    static fx_t f;
    fx_open(&f, 1);
    fx_start(&f);
    ingest(&f, "a", 10, "v1", "alice", "p1", ATTR_KIND_CLICK, f.now - 3600 * S_);
    YW_CHECK_INT(f.st.exposures_live, ==, 10);
    index_now(&f);
    attr_exposure_store_info_t info;
    attr_exposure_store_info(f.xs, &info);
    /* The run is published and released: nothing of it is in memory but its ids' bits. */
    YW_CHECK_INT(info.files, ==, 1);
    YW_CHECK_INT(info.runs_waiting, ==, 0);
    YW_CHECK_INT(f.st.exposures_live, ==, 0);
    YW_CHECK_INT(f.st.n_runs, ==, 0);
    YW_CHECK(info.bloom_bytes > 0);
    /* Its ids: "maybe" in the filter, confirmed on disk. A new id is not a duplicate. */
    int asked;
    YW_CHECK_INT(admit_once(&f, "a-3", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(asked, ==, 1);
    YW_CHECK_INT(admit_once(&f, "a-10", &asked), ==, ATTR_ADMITTED);
    /* Conversions find their candidates in the file: all ten, not after `at`. */
    char ids[16][32];
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 16), ==, 10);
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now - 2 * 3600 * S_, ids, 16), ==, 0);
    YW_CHECK_INT(disk_cands(&f, "v2", "p1", f.now, ids, 16), ==, 0);
    YW_CHECK_INT(disk_cands(&f, "v1", "p2", f.now, ids, 16), ==, 0);
    fx_stop(&f);
    fx_done(&f);
}

YW_TEST(a_restart_loads_the_files_instead_of_the_log)
{
    static fx_t f;
    cand_fx = &f;
    fx_open(&f, 1);
    fx_start(&f);
    ingest(&f, "a", 20, "v1", "alice", "p1", ATTR_KIND_IMPRESSION, f.now - 3600 * S_);
    index_now(&f);
    ingest(&f, "b", 5, "v1", "bob", "p1", ATTR_KIND_CLICK, f.now - 1800 * S_);
    /* Closing indexes the open run too. */
    fx_stop(&f);
    YW_CHECK_INT(count_files(f.dir), ==, 2);

    /* A stored conversion: the service looks its touches up in the files at start-up,
     * after the store is open (attr_exposure_store_find_cands()). */
    fx_open(&f, 0);
    attr_exposure_store_stats_t st = fx_start(&f);
    YW_CHECK_INT(st.files, ==, 2);
    YW_CHECK_INT(st.indexed_events, ==, 25);
    YW_CHECK_INT(st.tail_events, ==, 0); /* nothing read from the log */
    attr_conv_in_t cin = {.order_id = "o1",
                          .order_id_len = 2,
                          .viewer_id = "v1",
                          .viewer_len = 2,
                          .product_id = "p1",
                          .product_len = 2,
                          .quantity = 1,
                          .amount_minor = 1000,
                          .occur_ns = f.now};
    attr_conv_t *c = NULL;
    YW_CHECK_INT(attr_conv_load(&f.st, &cin, 0, &c), ==, 0);
    attr_xjoin_q_t q = {c->vp_hash,    c->viewer,      c->product,
                        c->viewer_len, c->product_len, c->occur_ns};
    /* Only after a place in the log (the touch mark): both runs went to segment 1, so
     * after (1, 0) is every one, after its end none, after segment 2 no file is read. */
    YW_CHECK_INT(attr_exposure_store_find_cands(f.xs, &q, 1, UINT32_MAX, add_found, c), ==, 0);
    YW_CHECK_INT(c->n_cands, ==, 0);
    YW_CHECK_INT(attr_exposure_store_find_cands(f.xs, &q, 2, 0, add_found, c), ==, 0);
    YW_CHECK_INT(c->n_cands, ==, 0);
    YW_CHECK_INT(attr_exposure_store_find_cands(f.xs, &q, 1, 0, add_found, c), ==, 0);
    YW_CHECK_INT(c->n_cands, ==, 25);
    YW_CHECK_INT(attr_exposure_store_find_cands(f.xs, &q, 0, 0, add_found, c), ==, 0);
    YW_CHECK_INT(attr_conv_loaded(&f.st, c, 1), ==, 0);
    YW_CHECK_INT(c->n_cands, ==, 25);
    YW_CHECK_INT(c->n_elig, ==, 5); /* clicks win */
    YW_CHECK_INT(impressions(&f, "alice"), ==, 20);
    int asked;
    YW_CHECK_INT(admit_once(&f, "a-0", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "b-4", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "b-5", &asked), ==, ATTR_ADMITTED);
    fx_stop(&f);
    fx_done(&f);
}

YW_TEST(missing_damaged_or_unchained_files_are_rebuilt_from_the_log)
{
    static fx_t f;
    fx_open(&f, 1);
    fx_start(&f);
    ingest(&f, "a", 10, "v1", "alice", "p1", ATTR_KIND_IMPRESSION, f.now - 3600 * S_);
    index_now(&f);
    ingest(&f, "b", 10, "v1", "alice", "p1", ATTR_KIND_IMPRESSION, f.now - 3600 * S_);
    index_now(&f);
    ingest(&f, "c", 10, "v1", "alice", "p1", ATTR_KIND_IMPRESSION, f.now - 3600 * S_);
    fx_stop(&f);
    char **paths = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xidx_list(f.dir, &paths, &n), ==, 0);
    YW_CHECK_INT(n, ==, 3);
    /* The middle file goes missing (its exposures, and the third file's, are read from
     * the log again); the first file stays. */
    YW_CHECK_INT(unlink(paths[1]), ==, 0);
    fx_open(&f, 0);
    attr_exposure_store_stats_t st = fx_start(&f);
    YW_CHECK_INT(st.files, ==, 1);
    YW_CHECK_INT(st.files_dropped, ==, 1);
    YW_CHECK_INT(st.tail_events, ==, 20);
    YW_CHECK_INT(impressions(&f, "alice"), ==, 30);
    int asked;
    YW_CHECK_INT(admit_once(&f, "a-9", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "b-9", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "c-9", &asked), ==, ATTR_DUPLICATE);
    char ids[40][32];
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 40), ==, 30);
    fx_stop(&f);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);

    /* A damaged file: dropped, and everything from it on rebuilt. */
    YW_CHECK_INT(attr_xidx_list(f.dir, &paths, &n), ==, 0);
    YW_CHECK_INT(n, ==, 2);
    int fd = open(paths[0], O_RDWR);
    YW_CHECK(fd >= 0);
    unsigned char b = 0x5a;
    YW_CHECK_INT(pwrite(fd, &b, 1, 200), ==, 1);
    close(fd);
    fx_open(&f, 0);
    st = fx_start(&f);
    YW_CHECK_INT(st.files, ==, 0);
    YW_CHECK_INT(st.tail_events, ==, 30);
    YW_CHECK_INT(impressions(&f, "alice"), ==, 30);
    YW_CHECK_INT(admit_once(&f, "a-0", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 40), ==, 30);
    fx_stop(&f);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);

    /* The log's tail past the last file (a crash before its run was indexed): read. */
    YW_CHECK_INT(remove_files(f.dir), ==, 1);
    fx_open(&f, 0);
    st = fx_start(&f);
    YW_CHECK_INT(st.tail_events, ==, 30);
    YW_CHECK_INT(st.tail_runs, ==, 1);
    YW_CHECK_INT(impressions(&f, "alice"), ==, 30);
    fx_stop(&f);
    fx_done(&f);
}

YW_TEST(files_are_merged_and_pruned)
{
    static fx_t f;
    fx_open(&f, 1);
    fx_start(&f);
    for (int r = 0; r < ATTR_EXPOSURE_STORE_FANIN; r++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", r);
        ingest(&f, id, 3, "v1", "alice", "p1", ATTR_KIND_CLICK, f.now - 3600 * S_);
        index_now(&f);
    }
    /* The eighth file of size class 0 triggers a merge into one. */
    attr_exposure_store_info_t info;
    do {
        uv_run(&f.loop, UV_RUN_ONCE);
        attr_exposure_store_info(f.xs, &info);
    } while (info.merges == 0);
    YW_CHECK_INT(info.files, ==, 1);
    YW_CHECK_INT(info.file_entries, ==, 3 * ATTR_EXPOSURE_STORE_FANIN);
    char ids[32][32];
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 32), ==, 3 * ATTR_EXPOSURE_STORE_FANIN);
    int asked;
    YW_CHECK_INT(admit_once(&f, "r5-2", &asked), ==, ATTR_DUPLICATE);
    uint64_t seg = attr_exposure_store_current_seq(f.xs);
    fx_stop(&f);
    YW_CHECK_INT(count_files(f.dir), ==, 1);

    /* After a restart (a new segment), the first segment is pruned: the merged file
     * covered only it, so it goes, and its ids are forgotten. */
    fx_open(&f, 0);
    fx_start(&f);
    ingest(&f, "new", 2, "v1", "alice", "p1", ATTR_KIND_CLICK, f.now - 60 * S_);
    index_now(&f);
    YW_CHECK(attr_exposure_store_current_seq(f.xs) > seg);
    uint64_t oldest;
    char path[4096];
    YW_CHECK_INT(attr_exposure_store_prunable(f.xs, f.now - D_, &oldest, path), ==, 0);
    YW_CHECK_INT(attr_exposure_store_prunable(f.xs, f.now + D_, &oldest, path), ==, 1);
    YW_CHECK_INT(oldest, ==, seg);
    attr_exposure_store_pruned(f.xs, seg);
    attr_exposure_store_info(f.xs, &info);
    YW_CHECK_INT(info.files, ==, 1);
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 32), ==, 2);
    YW_CHECK_INT(admit_once(&f, "r5-2", &asked), ==, ATTR_ADMITTED);
    YW_CHECK_INT(admit_once(&f, "new-1", &asked), ==, ATTR_DUPLICATE);
    fx_stop(&f);
    /* The segment file and the merged index are deleted (by the builder thread). */
    char seg_path[4200];
    attr_xlog_path(f.dir, seg, seg_path, sizeof seg_path);
    YW_CHECK(access(seg_path, F_OK) != 0);
    YW_CHECK_INT(count_files(f.dir), ==, 1);
    fx_done(&f);
}

YW_TEST(a_lookup_in_flight_keeps_newer_runs_in_memory)
{
    static fx_t f;
    fx_open(&f, 1);
    fx_start(&f);
    ingest(&f, "a", 4, "v1", "alice", "p1", ATTR_KIND_CLICK, f.now - 3600 * S_);
    /* A check begins (its view: no file yet), then the run is published. */
    static confirm_t c;
    memset(&c, 0, sizeof c);
    attr_exposure_store_confirm_begin(f.xs, &c.cf);
    index_now(&f);
    attr_exposure_store_info_t info;
    attr_exposure_store_info(f.xs, &info);
    YW_CHECK_INT(info.files, ==, 1);
    YW_CHECK_INT(info.runs_waiting, ==, 1); /* the view does not see the file: kept */
    YW_CHECK_INT(f.st.n_runs, ==, 1);
    attr_exposure_store_confirm_cancel(f.xs, &c.cf);
    attr_exposure_store_info(f.xs, &info);
    YW_CHECK_INT(info.runs_waiting, ==, 0);
    YW_CHECK_INT(f.st.n_runs, ==, 0);
    fx_stop(&f);
    fx_done(&f);
}

/* A cluster node's build: the log alone (no index file) indexed apart, off any loop,
 * then opened: the open loads the files and reads nothing from the log, and finds what
 * an open that read the log itself would (counts, duplicates, candidates). */
YW_TEST(indexing_apart_writes_the_files_an_open_then_loads)
{
    static fx_t f;
    fx_open(&f, 1);
    fx_start(&f);
    ingest(&f, "a", 20, "v1", "alice", "p1", ATTR_KIND_IMPRESSION, f.now - 3600 * S_);
    index_now(&f);
    ingest(&f, "b", 5, "v1", "bob", "p1", ATTR_KIND_CLICK, f.now - 1800 * S_);
    fx_stop(&f);
    YW_CHECK_INT(remove_files(f.dir), ==, 2);

    attr_exposure_store_stats_t st;
    char err[512] = "";
    YW_CHECK_INT(attr_exposure_store_index(f.dir, 0, NULL, NULL, 0, f.now, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.tail_events, ==, 25);
    YW_CHECK_INT(st.tail_duplicates, ==, 0);
    YW_CHECK(count_files(f.dir) >= 1);
    /* Again: the files cover the whole log now, nothing is read. */
    YW_CHECK_INT(attr_exposure_store_index(f.dir, 0, NULL, NULL, 0, f.now, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.tail_events, ==, 0);
    YW_CHECK_INT(st.indexed_events, ==, 25);

    fx_open(&f, 0);
    st = fx_start(&f);
    YW_CHECK_INT(st.tail_events, ==, 0);
    YW_CHECK_INT(st.indexed_events, ==, 25);
    YW_CHECK_INT(impressions(&f, "alice"), ==, 20);
    int asked;
    YW_CHECK_INT(admit_once(&f, "a-0", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "b-4", &asked), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(admit_once(&f, "b-5", &asked), ==, ATTR_ADMITTED);
    char ids[40][32];
    YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 40), ==, 25);
    fx_stop(&f);

    /* A directory that cannot be read: an error that names it, nothing written. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none", f.dir);
    err[0] = '\0';
    YW_CHECK(attr_exposure_store_index(missing, 0, NULL, NULL, 0, f.now, &st, err, sizeof err) < 0);
    YW_CHECK(strstr(err, missing) != NULL);
    fx_done(&f);
}

/* Which exposures the files index for joins follows the join horizon: the indexing
 * apart must have the engine's settings, not the defaults. Exposures 20 days old are
 * past the default horizon (14 days) and within one of 37. */
YW_TEST(indexing_apart_follows_the_settings_join_horizon)
{
    static fx_t f;
    attr_settings_t wide;
    attr_settings_default(&wide);
    wide.late_window_ns = 30 * D_;
    fx_open(&f, 1);
    f.st.settings = wide;
    fx_start(&f);
    ingest(&f, "old", 5, "v1", "alice", "p1", ATTR_KIND_CLICK, f.now - 20 * D_);
    fx_stop(&f);
    char err[512] = "";
    attr_exposure_store_stats_t st;
    char ids[8][32];
    for (int with = 0; with < 2; with++) {
        YW_CHECK_INT(remove_files(f.dir), ==, 1);
        YW_CHECK_INT(attr_exposure_store_index(f.dir, 0, with ? &wide : NULL, NULL, 0, f.now, &st,
                                               err, sizeof err),
                     ==, 0);
        YW_CHECK_INT(st.tail_events, ==, 5);
        fx_open(&f, 0);
        f.st.settings = wide;
        st = fx_start(&f);
        YW_CHECK_INT(st.tail_events, ==, 0);
        /* The defaults' files have no join keys for them: a late order finds none. */
        YW_CHECK_INT(disk_cands(&f, "v1", "p1", f.now, ids, 8), ==, with ? 5 : 0);
        fx_stop(&f);
    }
    fx_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(an_indexed_run_leaves_memory_and_is_found_on_disk),
        YW_TEST_ENTRY(a_restart_loads_the_files_instead_of_the_log),
        YW_TEST_ENTRY(missing_damaged_or_unchained_files_are_rebuilt_from_the_log),
        YW_TEST_ENTRY(files_are_merged_and_pruned),
        YW_TEST_ENTRY(a_lookup_in_flight_keeps_newer_runs_in_memory),
        YW_TEST_ENTRY(indexing_apart_writes_the_files_an_open_then_loads),
        YW_TEST_ENTRY(indexing_apart_follows_the_settings_join_horizon),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
