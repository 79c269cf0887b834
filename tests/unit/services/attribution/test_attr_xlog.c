/*
 * test_attr_xlog.c — unit tests of services/attribution/attr_xlog.c: CRC-32C, frames
 * written through the writer thread and read back, records read alone from the offsets
 * the writer reported, reading from a frame boundary on, upgrading a version 1 segment,
 * torn-tail detection and repair, a bad CRC in the middle, new segments per open.
 *
 * Every test works in a fresh directory from mkdtemp() and runs its own uv loop.
 */
#include "services/attribution/attr_xlog.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/unit/test.h"

typedef struct {
    char dir[256];
    uv_loop_t loop;
    int done_count;
    int last_status;
    int closed;
} fixture_t;

static void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/logXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    f->done_count = 0;
    f->closed = 0;
}

static void fixture_done(fixture_t *f)
{
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    uint64_t *seqs = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xlog_list(f->dir, &seqs, &n), ==, 0);
    for (size_t i = 0; i < n; i++) {
        char p[512];
        attr_xlog_path(f->dir, seqs[i], p, sizeof p);
        YW_CHECK_INT(unlink(p), ==, 0);
    }
    free(seqs);
    YW_CHECK_INT(rmdir(f->dir), ==, 0);
}

static void on_done(attr_xlog_batch_t *b, int status)
{
    fixture_t *f = b->data;
    f->done_count++;
    f->last_status = status;
}

static void on_closed(void *arg)
{
    ((fixture_t *)arg)->closed = 1;
}

static attr_xlog_str_t S(const char *s, uint32_t id)
{
    attr_xlog_str_t r = {s, (uint32_t)strlen(s), id};
    return r;
}

#define T0 INT64_C(1727000000000000000)

/* Record offsets and frame ends the writer reported for the last write_batches(). */
static uint32_t rec_offs[64][2];
static uint64_t frame_ends[64];

/* When set, write_batches() ships with it. */
static attr_xlog_ship_fn ship_fn;
static void *ship_arg;
static uint64_t ship_linger_ns;
/* When set, write_batches() waits this long after appending its first batch. */
static useconds_t first_gap_us;
/* The batches' linger flag in write_batches() (attr_xlog_batch_t.linger). */
static int batch_linger = 1;

/* Writes `nb` batches of two exposures each and closes the log. */
static void write_batches(fixture_t *f, uint64_t first_seq, int nb)
{
    attr_xlog_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_xlog_open(&f->loop, f->dir, first_seq, &log, err, sizeof err), ==, 0);
    if (ship_fn != NULL) {
        attr_xlog_set_ship(log, ship_fn, ship_arg, ship_linger_ns);
    }
    YW_CHECK_INT(attr_xlog_current_seq(log), ==, first_seq);
    static attr_xlog_str_t prods[2];
    prods[0] = S("p-1", 0);
    prods[1] = S("p-2", 1);
    attr_xlog_exposure_t ev[64][2];
    attr_xlog_batch_t b[64];
    static char ids[64][2][32];
    YW_CHECK(nb <= 64);
    for (int i = 0; i < nb; i++) {
        for (int k = 0; k < 2; k++) {
            snprintf(ids[i][k], sizeof ids[i][k], "e-%d-%d", i, k);
            attr_xlog_exposure_t *e = &ev[i][k];
            memset(e, 0, sizeof *e);
            e->event_id = ids[i][k];
            e->event_id_len = (uint32_t)strlen(ids[i][k]);
            e->kind = (uint8_t)(1 + (i + k) % 3);
            e->watch_ms = 1000 * i + k;
            e->occur_ns = T0 - (int64_t)(i * 1000 + k);
            e->viewer = S(k == 0 ? "viewer-a" : "viewer-b", (uint32_t)k);
            e->creator = S("creator-x", 0);
            e->note = S("", 0);
            e->products = prods;
            e->n_products = (uint32_t)(k + 1);
        }
        memset(&b[i], 0, sizeof b[i]);
        b[i].events = ev[i];
        b[i].n = 2;
        b[i].arrival_ns = T0 + i;
        b[i].done = on_done;
        b[i].data = f;
        b[i].rec_off = rec_offs[i];
        b[i].linger = batch_linger;
        YW_CHECK_INT(attr_xlog_append(log, &b[i]), ==, 0);
        if (i == 0 && first_gap_us > 0) {
            usleep(first_gap_us);
        }
    }
    while (f->done_count < nb) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(f->last_status, ==, 0);
    for (int i = 0; i < nb; i++) {
        YW_CHECK_INT(b[i].seq, ==, first_seq);
        YW_CHECK_INT(b[i].frame_off, ==, i == 0 ? 32 : frame_ends[i - 1]);
        frame_ends[i] = b[i].frame_end;
    }
    attr_xlog_close(log, on_closed, f);
    YW_CHECK_INT(attr_xlog_append(log, &b[0]), ==, -ESHUTDOWN);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f->closed, ==, 1);
    f->done_count = 0;
    f->closed = 0;
}

typedef struct {
    int n;
    char ids[256][32];
    int kinds[256];
    int64_t occur[256], watch[256], arrival[256];
    char viewer[256][16];
    int n_products[256];
    char last_product[256][8];
    int stop_after;
} visit_t;

static int visit(void *arg, const attr_xlog_event_t *ev)
{
    visit_t *v = arg;
    YW_CHECK(v->n < 256);
    snprintf(v->ids[v->n], 32, "%.*s", (int)ev->event_id.len, ev->event_id.s);
    snprintf(v->viewer[v->n], 16, "%.*s", (int)ev->viewer.len, ev->viewer.s);
    YW_CHECK(ev->creator.len == 9 && memcmp(ev->creator.s, "creator-x", 9) == 0);
    YW_CHECK_INT(ev->note.len, ==, 0);
    v->kinds[v->n] = ev->kind;
    v->occur[v->n] = ev->occur_ns;
    v->watch[v->n] = ev->watch_ms;
    v->arrival[v->n] = ev->arrival_ns;
    v->n_products[v->n] = (int)ev->n_products;
    const attr_str_t *lp = &ev->products[ev->n_products - 1];
    snprintf(v->last_product[v->n], 8, "%.*s", (int)lp->len, lp->s);
    v->n++;
    return v->stop_after > 0 && v->n >= v->stop_after ? 42 : 0;
}

YW_TEST(batches_written_are_read_back_in_order)
{
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 1, 5);
    char path[512];
    attr_xlog_path(f.dir, 1, path, sizeof path);
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.seq, ==, 1);
    YW_CHECK_INT(st.frames, ==, 5);
    YW_CHECK_INT(st.events, ==, 10);
    YW_CHECK_INT(st.torn, ==, 0);
    YW_CHECK_INT(st.valid_bytes, ==, st.file_bytes);
    YW_CHECK_INT(st.max_arrival_ns, ==, T0 + 4);
    YW_CHECK_INT(v.n, ==, 10);
    for (int i = 0; i < 5; i++) {
        for (int k = 0; k < 2; k++) {
            int j = 2 * i + k;
            char want[32];
            snprintf(want, sizeof want, "e-%d-%d", i, k);
            YW_CHECK_STR(v.ids[j], want);
            YW_CHECK_STR(v.viewer[j], k == 0 ? "viewer-a" : "viewer-b");
            YW_CHECK_INT(v.kinds[j], ==, 1 + (i + k) % 3);
            YW_CHECK_INT(v.watch[j], ==, 1000 * i + k);
            YW_CHECK_INT(v.occur[j], ==, T0 - (i * 1000 + k));
            YW_CHECK_INT(v.arrival[j], ==, T0 + i);
            YW_CHECK_INT(v.n_products[j], ==, k + 1);
            YW_CHECK_STR(v.last_product[j], k == 0 ? "p-1" : "p-2");
        }
    }
    /* A visitor's non-zero return stops the read and is returned. */
    memset(&v, 0, sizeof v);
    v.stop_after = 3;
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit, &v, &st, err, sizeof err), ==, 42);
    YW_CHECK_INT(v.n, ==, 3);
    fixture_done(&f);
}

/* The done callbacks of a group the writer hands back run for at most about 2 ms a loop
 * turn (each commits a frame on the service's loop): 20 frames whose callbacks take 1 ms
 * each take several turns, in log order. */
static attr_xlog_batch_t *slow_base;
static int slow_order[32], slow_n;

static void on_done_slow(attr_xlog_batch_t *b, int status)
{
    YW_CHECK_INT(status, ==, 0);
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < 1000000) {
    }
    slow_order[slow_n++] = (int)(b - slow_base);
}

YW_TEST(a_group_of_done_callbacks_is_spread_over_loop_turns)
{
    fixture_t f;
    fixture_init(&f);
    attr_xlog_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_xlog_open(&f.loop, f.dir, 1, &log, err, sizeof err), ==, 0);
    static attr_xlog_exposure_t ev[20];
    static attr_xlog_batch_t b[20];
    static char ids[20][16];
    static attr_xlog_str_t prod;
    prod = S("p", 0);
    slow_base = b;
    slow_n = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(ids[i], sizeof ids[i], "e-%d", i);
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].event_id = ids[i];
        ev[i].event_id_len = (uint32_t)strlen(ids[i]);
        ev[i].kind = 1;
        ev[i].occur_ns = T0;
        ev[i].viewer = S("v", 0);
        ev[i].creator = S("c", 0);
        ev[i].note = S("", 0);
        ev[i].products = &prod;
        ev[i].n_products = 1;
        memset(&b[i], 0, sizeof b[i]);
        b[i].events = &ev[i];
        b[i].n = 1;
        b[i].arrival_ns = T0;
        b[i].done = on_done_slow;
        b[i].data = &f;
        b[i].rec_off = rec_offs[i];
        YW_CHECK_INT(attr_xlog_append(log, &b[i]), ==, 0);
    }
    /* Wait until the writer handed every frame back (one turn runs some of them). */
    int turns = 0;
    while (slow_n == 0) {
        usleep(200000); /* the writer is done with all 20 by then */
        uv_run(&f.loop, UV_RUN_ONCE);
        turns++;
    }
    YW_CHECK(slow_n < 20);
    while (slow_n < 20) {
        uv_run(&f.loop, UV_RUN_ONCE);
        turns++;
    }
    YW_CHECK(turns >= 3);
    for (int i = 0; i < 20; i++) {
        YW_CHECK_INT(slow_order[i], ==, i);
    }
    attr_xlog_close(log, on_closed, &f);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    fixture_done(&f);
}

YW_TEST(records_are_read_alone_from_their_offsets)
{
    /* The index points at records: each one decodes alone, strings and time whole. */
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 1, 5);
    char path[512];
    attr_xlog_path(f.dir, 1, path, sizeof path);
    int fd = open(path, O_RDONLY);
    YW_CHECK(fd >= 0);
    attr_xlog_recbuf_t buf;
    memset(&buf, 0, sizeof buf);
    for (int i = 0; i < 5; i++) {
        for (int k = 0; k < 2; k++) {
            attr_xlog_event_t ev;
            YW_CHECK_INT(attr_xlog_read_record(fd, rec_offs[i][k], &buf, &ev), ==, 0);
            char want[32];
            snprintf(want, sizeof want, "e-%d-%d", i, k);
            YW_CHECK(ev.event_id.len == strlen(want) &&
                     memcmp(ev.event_id.s, want, ev.event_id.len) == 0);
            YW_CHECK(ev.viewer.len == 8 &&
                     memcmp(ev.viewer.s, k == 0 ? "viewer-a" : "viewer-b", 8) == 0);
            YW_CHECK(ev.creator.len == 9 && memcmp(ev.creator.s, "creator-x", 9) == 0);
            YW_CHECK_INT(ev.kind, ==, 1 + (i + k) % 3);
            YW_CHECK_INT(ev.watch_ms, ==, 1000 * i + k);
            YW_CHECK_INT(ev.occur_ns, ==, T0 - (i * 1000 + k));
            YW_CHECK_INT(ev.n_products, ==, k + 1);
            YW_CHECK(ev.products[k].len == 3 &&
                     memcmp(ev.products[k].s, k ? "p-2" : "p-1", 3) == 0);
            YW_CHECK_INT(ev.rec_off, ==, rec_offs[i][k]);
        }
    }
    /* Not at a record: refused, never misread. */
    attr_xlog_event_t ev;
    YW_CHECK_INT(attr_xlog_read_record(fd, 32, &buf, &ev), ==, -EBADMSG);
    YW_CHECK_INT(attr_xlog_read_record(fd, rec_offs[0][0] + 1, &buf, &ev), ==, -EBADMSG);
    attr_xlog_recbuf_free(&buf);
    close(fd);
    /* The same offsets come with the events of a replay. */
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(v.n, ==, 10);
    fixture_done(&f);
}

typedef struct {
    int n;
    uint32_t offs[64];
    uint64_t frame_end[64];
} offs_t;

static int visit_offs(void *arg, const attr_xlog_event_t *ev)
{
    offs_t *o = arg;
    YW_CHECK(o->n < 64);
    o->offs[o->n] = ev->rec_off;
    o->frame_end[o->n] = ev->frame_end;
    o->n++;
    return 0;
}

YW_TEST(reading_from_a_frame_boundary_skips_what_is_before)
{
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 1, 4);
    char path[512];
    attr_xlog_path(f.dir, 1, path, sizeof path);
    static offs_t o;
    memset(&o, 0, sizeof o);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit_offs, &o, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(o.n, ==, 8);
    for (int i = 0; i < 4; i++) {
        YW_CHECK_INT(o.offs[2 * i], ==, rec_offs[i][0]);
        YW_CHECK_INT(o.frame_end[2 * i], ==, frame_ends[i]);
    }
    /* From the end of the second frame: the last two frames only. */
    memset(&o, 0, sizeof o);
    YW_CHECK_INT(
        attr_xlog_read_segment_from(path, frame_ends[1], 0, visit_offs, &o, &st, err, sizeof err),
        ==, 0);
    YW_CHECK_INT(o.n, ==, 4);
    YW_CHECK_INT(o.offs[0], ==, rec_offs[2][0]);
    YW_CHECK_INT(st.frames, ==, 2);
    YW_CHECK_INT(st.valid_bytes, ==, frame_ends[3]);
    /* From the very end: nothing. */
    memset(&o, 0, sizeof o);
    YW_CHECK_INT(
        attr_xlog_read_segment_from(path, frame_ends[3], 0, visit_offs, &o, &st, err, sizeof err),
        ==, 0);
    YW_CHECK_INT(o.n, ==, 0);
    fixture_done(&f);
}

/* A version 1 segment, by hand: one frame with DEF records and two EXP records. */
static void write_v1_segment(const char *path)
{
    unsigned char b[512];
    size_t n = 0;
    memcpy(b, "YWEXPSEG", 8);
    uint32_t ver = 1, zero = 0;
    uint64_t seq = 9, created = 0;
    memcpy(b + 8, &ver, 4);
    memcpy(b + 12, &zero, 4);
    memcpy(b + 16, &seq, 8);
    memcpy(b + 24, &created, 8);
    n = 32;
    unsigned char body[400];
    size_t m = 0;
    int64_t arrival = T0;
    uint32_t nev = 2;
    memcpy(body, &arrival, 8);
    memcpy(body + 8, &nev, 4);
    m = 12;
    /* DEFs: viewer 0 "vw", creator 0 "cr", note 0 "", products 0 "pa", 1 "pb" */
    const struct {
        int space, id;
        const char *s;
    } defs[] = {{0, 0, "vw"}, {1, 0, "cr"}, {2, 0, ""}, {3, 0, "pa"}, {3, 1, "pb"}};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        body[m++] = 0x01;
        body[m++] = (unsigned char)defs[i].space;
        body[m++] = (unsigned char)defs[i].id;
        body[m++] = (unsigned char)strlen(defs[i].s);
        memcpy(body + m, defs[i].s, strlen(defs[i].s));
        m += strlen(defs[i].s);
    }
    for (int e = 0; e < 2; e++) {
        body[m++] = 0x02;
        body[m++] = 2;
        body[m++] = 'x';
        body[m++] = (unsigned char)('0' + e);
        body[m++] = 0;                                /* viewer */
        body[m++] = 0;                                /* creator */
        body[m++] = 0;                                /* note */
        body[m++] = (unsigned char)(e ? 3 : 1);       /* kind */
        body[m++] = 5;                                /* watch_ms */
        body[m++] = (unsigned char)(2 * (e + 1) - 1); /* zigzag(-(e+1)) */
        body[m++] = (unsigned char)(e + 1);           /* products */
        for (int k = 0; k <= e; k++) {
            body[m++] = (unsigned char)k;
        }
    }
    uint32_t blen = (uint32_t)m, crc = attr_crc32c(0, body, m);
    memcpy(b + n, &blen, 4);
    memcpy(b + n + 4, &crc, 4);
    memcpy(b + n + 8, body, m);
    n += 8 + m;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    YW_CHECK(fd >= 0);
    YW_CHECK_INT(write(fd, b, n), ==, (long long)n);
    close(fd);
}

YW_TEST(a_version_1_segment_is_read_and_upgraded)
{
    fixture_t f;
    fixture_init(&f);
    char path[512];
    attr_xlog_path(f.dir, 9, path, sizeof path);
    write_v1_segment(path);
    YW_CHECK_INT(attr_xlog_segment_version(path), ==, 1);
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char err[256] = "";
    /* Its creator is "cr", not what visit() checks: count through visit_offs. */
    static offs_t o;
    memset(&o, 0, sizeof o);
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit_offs, &o, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(o.n, ==, 2);
    YW_CHECK_INT(o.offs[0], ==, 0); /* not addressable in version 1 */
    /* Read from an offset: version 2 only. */
    YW_CHECK_INT(attr_xlog_read_segment_from(path, 40, 0, visit_offs, &o, &st, err, sizeof err), ==,
                 -EPROTO);
    YW_CHECK_INT(attr_xlog_upgrade(path, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_xlog_segment_version(path), ==, 2);
    memset(&o, 0, sizeof o);
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit_offs, &o, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(o.n, ==, 2);
    YW_CHECK_INT(st.seq, ==, 9);
    YW_CHECK_INT(st.max_arrival_ns, ==, T0);
    int fd = open(path, O_RDONLY);
    YW_CHECK(fd >= 0);
    attr_xlog_recbuf_t buf;
    memset(&buf, 0, sizeof buf);
    attr_xlog_event_t ev;
    YW_CHECK_INT(attr_xlog_read_record(fd, o.offs[1], &buf, &ev), ==, 0);
    YW_CHECK(ev.event_id.len == 2 && memcmp(ev.event_id.s, "x1", 2) == 0);
    YW_CHECK(ev.viewer.len == 2 && memcmp(ev.viewer.s, "vw", 2) == 0);
    YW_CHECK(ev.creator.len == 2 && memcmp(ev.creator.s, "cr", 2) == 0);
    YW_CHECK_INT(ev.kind, ==, 3);
    YW_CHECK_INT(ev.watch_ms, ==, 5);
    YW_CHECK_INT(ev.occur_ns, ==, T0 - 2);
    YW_CHECK_INT(ev.n_products, ==, 2);
    YW_CHECK(ev.products[1].len == 2 && memcmp(ev.products[1].s, "pb", 2) == 0);
    attr_xlog_recbuf_free(&buf);
    close(fd);
    /* Upgrading a version 2 segment changes nothing. */
    YW_CHECK_INT(attr_xlog_upgrade(path, err, sizeof err), ==, 0);
    fixture_done(&f);
}

YW_TEST(torn_tail_is_detected_and_truncated)
{
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 7, 3);
    char path[512];
    attr_xlog_path(f.dir, 7, path, sizeof path);
    struct stat s;
    YW_CHECK_INT(stat(path, &s), ==, 0);
    /* A crash in the middle of the third frame: cut 5 bytes off its end. */
    YW_CHECK_INT(truncate(path, s.st_size - 5), ==, 0);
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.torn, ==, 1);
    YW_CHECK_INT(st.frames, ==, 2);
    YW_CHECK_INT(v.n, ==, 4); /* nothing of the torn frame was visited */
    YW_CHECK_INT(stat(path, &s), ==, 0);
    YW_CHECK_INT(s.st_size, ==, (int64_t)st.valid_bytes);
    /* Read again: clean now. */
    memset(&v, 0, sizeof v);
    YW_CHECK_INT(attr_xlog_read_segment(path, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.torn, ==, 0);
    YW_CHECK_INT(v.n, ==, 4);
    /* Garbage appended (a frame header promising more than there is). */
    int fd = open(path, O_WRONLY | O_APPEND);
    YW_CHECK(fd >= 0);
    static const unsigned char junk[] = {0xff, 0xff, 0, 0, 1, 2, 3, 4, 5};
    YW_CHECK_INT(write(fd, junk, sizeof junk), ==, (long long)sizeof junk);
    close(fd);
    memset(&v, 0, sizeof v);
    YW_CHECK_INT(attr_xlog_read_segment(path, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.torn, ==, 1);
    YW_CHECK_INT(v.n, ==, 4);
    fixture_done(&f);
}

YW_TEST(bad_crc_stops_the_replay_there)
{
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 1, 3);
    char path[512];
    attr_xlog_path(f.dir, 1, path, sizeof path);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, NULL, NULL, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.frames, ==, 3);
    YW_CHECK_INT(st.events, ==, 6);
    /* Flip one byte in the last byte of the second frame... find it: frame 1 ends at
     * 32 + len1 + 8; flip the byte just before frame 3 starts. Simpler: flip a byte in
     * the middle of the file's second half and expect fewer frames. */
    struct stat s;
    YW_CHECK_INT(stat(path, &s), ==, 0);
    int fd = open(path, O_RDWR);
    YW_CHECK(fd >= 0);
    unsigned char c;
    off_t at = s.st_size - 3;
    YW_CHECK_INT(pread(fd, &c, 1, at), ==, 1);
    c ^= 0x5a;
    YW_CHECK_INT(pwrite(fd, &c, 1, at), ==, 1);
    close(fd);
    static visit_t v;
    memset(&v, 0, sizeof v);
    YW_CHECK_INT(attr_xlog_read_segment(path, 0, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(st.torn, ==, 1);
    YW_CHECK_STR(st.torn_reason, "CRC mismatch");
    YW_CHECK_INT(st.frames, ==, 2);
    YW_CHECK_INT(v.n, ==, 4);
    /* Without repair the file is left as it is. */
    struct stat s2;
    YW_CHECK_INT(stat(path, &s2), ==, 0);
    YW_CHECK_INT(s2.st_size, ==, s.st_size);
    fixture_done(&f);
}

YW_TEST(bad_header_is_refused)
{
    fixture_t f;
    fixture_init(&f);
    char path[512];
    attr_xlog_path(f.dir, 3, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT, 0640);
    YW_CHECK(fd >= 0);
    YW_CHECK_INT(write(fd, "YWEXP", 5), ==, 5);
    close(fd);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(path, 1, NULL, NULL, &st, err, sizeof err), ==, -EBADMSG);
    YW_CHECK(strstr(err, "bad or short header") != NULL);
    fixture_done(&f);
}

/* ---- shipping: the bytes a cluster node copies to its replicated log ---- */

typedef struct {
    attr_xlog_placer_t pl;
    int calls, fail_at; /* fail_at > 0: that call fails */
    uint64_t shipped;   /* bytes */
} ship_t;

static int ship_to_placer(void *arg, uint64_t seg, int64_t created_ns, uint64_t off,
                          const void *bytes, size_t len)
{
    ship_t *s = arg;
    if (++s->calls == s->fail_at) {
        return -EIO;
    }
    s->shipped += len;
    return attr_xlog_place(&s->pl, seg, created_ns, off, bytes, len);
}

static void read_whole(const char *path, char **buf, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    YW_CHECK(fp != NULL);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *buf = malloc(*len + 1);
    YW_CHECK(fread(*buf, 1, *len, fp) == *len);
    fclose(fp);
}

/* write_batches() into f, every group shipped to a placer into copy's directory. */
static void write_shipped(fixture_t *f, fixture_t *copy, ship_t *s, uint64_t first_seq, int nb)
{
    memset(s, 0, sizeof *s);
    attr_xlog_placer_init(&s->pl, copy->dir);
    ship_fn = ship_to_placer;
    ship_arg = s;
    write_batches(f, first_seq, nb);
    ship_fn = NULL;
    YW_CHECK_INT(attr_xlog_placer_finish(&s->pl), ==, 0);
}

YW_TEST(shipped_bytes_placed_elsewhere_make_the_same_log)
{
    fixture_t f, copy;
    fixture_init(&f);
    fixture_init(&copy);
    static ship_t s;
    write_shipped(&f, &copy, &s, 3, 7);
    YW_CHECK(s.shipped > 0);
    char a[512], b[512];
    attr_xlog_path(f.dir, 3, a, sizeof a);
    attr_xlog_path(copy.dir, 3, b, sizeof b);
    char *x, *y;
    size_t xl, yl;
    read_whole(a, &x, &xl);
    read_whole(b, &y, &yl);
    YW_CHECK_INT(xl, ==, yl); /* the header too: same segment, same creation time */
    YW_CHECK(memcmp(x, y, xl) == 0);
    free(x);
    free(y);
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char err[256] = "";
    YW_CHECK_INT(attr_xlog_read_segment(b, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(v.n, ==, 14);
    YW_CHECK_INT(st.torn, ==, 0);
    /* A gap is refused: bytes not placed where the copy ends. */
    attr_xlog_placer_init(&s.pl, copy.dir);
    YW_CHECK_INT(attr_xlog_place(&s.pl, 3, 0, (uint64_t)yl + 8, "x", 1), ==, -EPROTO);
    YW_CHECK_INT(attr_xlog_placer_finish(&s.pl), ==, 0);
    fixture_done(&copy);
    fixture_done(&f);
}

/* Seven batches, the first one 100 ms before the others, shipped with a linger of
 * 500 ms; the ships made. */
static int ships_of_seven(int linger_flag)
{
    fixture_t f, copy;
    fixture_init(&f);
    fixture_init(&copy);
    static ship_t s;
    ship_linger_ns = 500 * 1000000ull;
    first_gap_us = 100 * 1000;
    batch_linger = linger_flag;
    write_shipped(&f, &copy, &s, 1, 7);
    ship_linger_ns = 0;
    first_gap_us = 0;
    batch_linger = 1;
    static visit_t v;
    memset(&v, 0, sizeof v);
    attr_xlog_segstat_t st;
    char b[512], err[256] = "";
    attr_xlog_path(copy.dir, 1, b, sizeof b);
    YW_CHECK_INT(attr_xlog_read_segment(b, 1, visit, &v, &st, err, sizeof err), ==, 0);
    YW_CHECK_INT(v.n, ==, 14); /* every batch's two exposures, shipped in order */
    fixture_done(&copy);
    fixture_done(&f);
    return s.calls;
}

YW_TEST(a_lingering_writer_ships_the_batches_that_come_meanwhile_at_once)
{
    /* The writer, woken by the first batch, waits 500 ms: the other six are appended
     * meanwhile, and the seven go in one group, one ship. */
    YW_CHECK_INT(ships_of_seven(1), ==, 1);
}

YW_TEST(a_batch_that_does_not_allow_it_is_not_held)
{
    /* No batch allows a linger (a lone call's): the first is written and shipped at
     * once, alone, during the 100 ms; the six after it make one ship or more. */
    YW_CHECK_INT(ships_of_seven(0), >=, 2);
}

YW_TEST(a_failed_ship_fails_the_group_and_cuts_it_off)
{
    fixture_t f;
    fixture_init(&f);
    static ship_t s;
    memset(&s, 0, sizeof s);
    s.fail_at = 2;
    attr_xlog_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_xlog_open(&f.loop, f.dir, 1, &log, err, sizeof err), ==, 0);
    attr_xlog_set_ship(log, ship_to_placer, &s, 0);
    char copy_dir[300];
    snprintf(copy_dir, sizeof copy_dir, "%s/copy", f.dir);
    YW_CHECK_INT(mkdir(copy_dir, 0700), ==, 0);
    attr_xlog_placer_init(&s.pl, copy_dir);
    attr_xlog_exposure_t e;
    memset(&e, 0, sizeof e);
    e.event_id = "e-1";
    e.event_id_len = 3;
    e.kind = 1;
    e.occur_ns = T0;
    e.viewer = S("v", 0);
    e.creator = S("c", 0);
    e.note = S("", 0);
    attr_xlog_batch_t b1, b2;
    memset(&b1, 0, sizeof b1);
    b1.events = &e;
    b1.n = 1;
    b1.done = on_done;
    b1.data = &f;
    b2 = b1;
    YW_CHECK_INT(attr_xlog_append(log, &b1), ==, 0);
    while (f.done_count < 1) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(f.last_status, ==, 0);
    YW_CHECK_INT(attr_xlog_append(log, &b2), ==, 0);
    while (f.done_count < 2) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(f.last_status, ==, -EIO); /* not acknowledged */
    /* The next group goes to a new segment, shipped as well. */
    attr_xlog_batch_t b3 = b1;
    YW_CHECK_INT(attr_xlog_append(log, &b3), ==, 0);
    while (f.done_count < 3) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(f.last_status, ==, 0);
    YW_CHECK_INT(b3.seq, ==, 2);
    attr_xlog_close(log, on_closed, &f);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(attr_xlog_placer_finish(&s.pl), ==, 0);
    /* The segment holds the first frame only, as does the copy. */
    char path[512];
    attr_xlog_path(f.dir, 1, path, sizeof path);
    struct stat sb;
    YW_CHECK_INT(stat(path, &sb), ==, 0);
    YW_CHECK_INT((uint64_t)sb.st_size, ==, b1.frame_end);
    char cpath[512];
    attr_xlog_path(copy_dir, 1, cpath, sizeof cpath);
    struct stat cb;
    YW_CHECK_INT(stat(cpath, &cb), ==, 0);
    YW_CHECK_INT(cb.st_size, ==, sb.st_size);
    YW_CHECK_INT(unlink(cpath), ==, 0);
    attr_xlog_path(copy_dir, 2, cpath, sizeof cpath);
    YW_CHECK_INT(stat(cpath, &cb), ==, 0);
    YW_CHECK_INT((uint64_t)cb.st_size, ==, b3.frame_end);
    YW_CHECK_INT(unlink(cpath), ==, 0);
    YW_CHECK_INT(rmdir(copy_dir), ==, 0);
    fixture_done(&f);
}

YW_TEST(segments_are_listed_in_order)
{
    fixture_t f;
    fixture_init(&f);
    write_batches(&f, 12, 1);
    write_batches(&f, 3, 1);
    write_batches(&f, 100, 1);
    /* A stranger in the directory is ignored. */
    char other[512];
    snprintf(other, sizeof other, "%s/notes.txt", f.dir);
    int fd = open(other, O_WRONLY | O_CREAT, 0640);
    YW_CHECK(fd >= 0);
    close(fd);
    uint64_t *seqs = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xlog_list(f.dir, &seqs, &n), ==, 0);
    YW_CHECK_INT(n, ==, 3);
    YW_CHECK_INT(seqs[0], ==, 3);
    YW_CHECK_INT(seqs[1], ==, 12);
    YW_CHECK_INT(seqs[2], ==, 100);
    free(seqs);
    YW_CHECK_INT(unlink(other), ==, 0);
    /* Opening on an existing segment number fails (O_EXCL): never append to old ones. */
    attr_xlog_t *log = NULL;
    char err[256];
    YW_CHECK_INT(attr_xlog_open(&f.loop, f.dir, 12, &log, err, sizeof err), ==, -EEXIST);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(batches_written_are_read_back_in_order),
        YW_TEST_ENTRY(a_group_of_done_callbacks_is_spread_over_loop_turns),
        YW_TEST_ENTRY(records_are_read_alone_from_their_offsets),
        YW_TEST_ENTRY(reading_from_a_frame_boundary_skips_what_is_before),
        YW_TEST_ENTRY(a_version_1_segment_is_read_and_upgraded),
        YW_TEST_ENTRY(torn_tail_is_detected_and_truncated),
        YW_TEST_ENTRY(bad_crc_stops_the_replay_there),
        YW_TEST_ENTRY(bad_header_is_refused),
        YW_TEST_ENTRY(shipped_bytes_placed_elsewhere_make_the_same_log),
        YW_TEST_ENTRY(a_lingering_writer_ships_the_batches_that_come_meanwhile_at_once),
        YW_TEST_ENTRY(a_batch_that_does_not_allow_it_is_not_held),
        YW_TEST_ENTRY(a_failed_ship_fails_the_group_and_cuts_it_off),
        YW_TEST_ENTRY(segments_are_listed_in_order),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
