/*
 * test_attr_snap.c — unit tests of services/attribution/attr_snap.c: a state with
 * exposure counts, single-touch and split credits, an unattributed order, a refund and
 * the conversion filter goes through a snapshot file and comes back with the same
 * figures under every model; the marks decide whether it may be used; its totals are
 * checked against the data; a torn, altered or foreign file is refused.
 */
#include "services/attribution/attr_snap.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_state_fixture.h"
#include "tests/unit/test.h"

/**
 * Three creators: c-a and c-b click the same (viewer, product) (a split order of 1001,
 * refunded by 1), c-c alone gets an order of 500; an order with no touch (77) is
 * unattributed. The data: 3 conversions, 1578 gross, 1 refunded.
 */
static void fill(attr_state_t *st, attr_snap_marks_t *m)
{
    YW_CHECK_INT(attr_state_init(st), ==, 0);
    fx_expose(st, "e1", "v1", "c-a", "p1", ATTR_KIND_CLICK, 30000, T0 - 2 * D_, T0);
    fx_expose(st, "e2", "v1", "c-b", "p1", ATTR_KIND_CLICK, 30000, T0 - D_, T0);
    fx_expose(st, "e3", "v2", "c-c", "p2", ATTR_KIND_VIEW, 30000, T0 - H_, T0);
    fx_expose(st, "e4", "v3", "c-a", "p9", ATTR_KIND_IMPRESSION, 30000, T0 - 3 * D_, T0);
    attr_conv_t *split = fx_convert(st, "o1", "v1", "p1", 1001, T0, T0);
    (void)fx_convert(st, "o2", "v2", "p2", 500, T0, T0);
    (void)fx_convert(st, "o3", "v9", "p9", 77, T0, T0);
    attr_refund_t *r = NULL;
    int64_t left = 0;
    YW_CHECK_INT(attr_refund_admit(st, "r1", 2, "o1", 2, 1, T0, &r, &left), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(st, r), ==, 0);
    YW_CHECK_INT(split->n_elig, ==, 2);
    memset(m, 0, sizeof *m);
    m->settings = st->settings;
    m->conversions = 3;
    m->max_seq = 3;
    m->amount_sum = 1001 + 500 + 77;
    m->refunds = 1;
    m->refund_sum = 1;
    m->touches = 3;
    m->log_last_seg = 7;
    m->log_last_size = 4096;
}

static void path_of(char *dir, char *path)
{
    strcpy(dir, "/tmp/yw-snap-XXXXXX");
    YW_CHECK(mkdtemp(dir) != NULL);
    sprintf(path, "%s/%s", dir, ATTR_SNAP_FILE);
}

static void same_figures(const attr_state_t *a, const attr_state_t *b)
{
    YW_CHECK_INT(attr_state_n_creators(a), ==, attr_state_n_creators(b));
    for (uint32_t c = 0; c < attr_state_n_creators(a); c++) {
        YW_CHECK_STR(attr_intern_str(&a->creators, c, NULL),
                     attr_intern_str(&b->creators, c, NULL));
        for (int m = 1; m <= ATTR_N_MODELS; m++) {
            attr_sums_t x, y;
            attr_state_creator_sums(a, c, DAY0 - 30, DAY0 + 30, m, &x);
            attr_state_creator_sums(b, c, DAY0 - 30, DAY0 + 30, m, &y);
            YW_CHECK_I128(x.impressions, ==, y.impressions);
            YW_CHECK_I128(x.views, ==, y.views);
            YW_CHECK_I128(x.clicks, ==, y.clicks);
            YW_CHECK_I128(x.credit, ==, y.credit);
            YW_CHECK_I128(x.gmv, ==, y.gmv);
        }
    }
    attr_sum_t n1, g1, n2, g2;
    attr_state_unattributed(a, DAY0 - 30, DAY0 + 30, &n1, &g1);
    attr_state_unattributed(b, DAY0 - 30, DAY0 + 30, &n2, &g2);
    YW_CHECK_I128(n2, ==, n1);
    YW_CHECK_I128(g2, ==, g1);
}

/* `st` written with `m` to a new file (dir, path), read, matched and loaded into `back`,
 * with the same figures. Returns the snapshot read. */
static attr_snap_t *round_trip(const attr_state_t *st, const attr_snap_marks_t *m,
                               attr_state_t *back, char *dir, char *path)
{
    char err[512] = "";
    path_of(dir, path);
    YW_CHECK_INT(attr_snap_write(path, st, m, err, sizeof err), ==, 0);
    attr_snap_t *s = NULL;
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, 0);
    YW_CHECK(attr_snap_matches(s, m, err, sizeof err));
    YW_CHECK_INT(attr_state_init(back), ==, 0);
    YW_CHECK_INT(attr_snap_load(s, back, err, sizeof err), ==, 0);
    same_figures(st, back);
    return s;
}

YW_TEST(round_trip_keeps_every_figure_and_the_conversion_filter)
{
    attr_state_t st, back;
    attr_snap_marks_t m;
    fill(&st, &m);
    char dir[64], path[128], err[512] = "";
    attr_snap_t *s = round_trip(&st, &m, &back, dir, path);
    attr_sum_t n, g;
    attr_state_unattributed(&back, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(n, ==, 1);
    YW_CHECK_I128(g, ==, 77);
    /* c-a: the split order under LINEAR is half of 1000 net: 500; its impression too. */
    attr_sums_t a;
    attr_state_creator_sums(&back, 0, DAY0 - 30, DAY0 + 30, ATTR_MODEL_LINEAR, &a);
    YW_CHECK_INT(a.gmv, ==, 500);
    YW_CHECK_INT(a.clicks, ==, 1);
    YW_CHECK_INT(a.impressions, ==, 1);
    /* The conversion filter knows (v1, p1) and nothing of (v7, p7) here. */
    uint64_t hv = yw_hash_bytes("v1", 2);
    YW_CHECK(attr_state_conv_maybe(&back, attr_vp_hash(hv, yw_hash_bytes("p1", 2)), T0 - D_));
    YW_CHECK_INT(back.n_cfilters, ==, st.n_cfilters);
    YW_CHECK(memcmp(back.cfilters[0].bloom.words, st.cfilters[0].bloom.words,
                    attr_bloom_bytes(&st.cfilters[0].bloom)) == 0);
    YW_CHECK(attr_snap_check_totals(&back, &m, err, sizeof err));
    YW_CHECK_INT(back.cell_bytes, ==, fx_cell_bytes(&back)); /* counted as loaded */
    /* Rollups keep growing after the load (the arrays are the state's own). */
    fx_expose(&back, "e5", "v1", "c-a", "p1", ATTR_KIND_CLICK, 30000, T0 - 4 * D_, T0);
    attr_state_creator_sums(&back, 0, DAY0 - 30, DAY0 + 30, ATTR_MODEL_LINEAR, &a);
    YW_CHECK_INT(a.clicks, ==, 2);
    YW_CHECK_INT(back.cell_bytes, ==, fx_cell_bytes(&back));
    attr_snap_free(s);
    attr_state_free(&back);
    attr_state_free(&st);
    unlink(path);
    rmdir(dir);
}

/* 9,300 orders of the largest amount (10^15): every sum of them passes int64. */
#define BIG_N 9300

YW_TEST(sums_past_int64_round_trip_and_add_up)
{
    attr_state_t st, back;
    YW_CHECK_INT(attr_state_init(&st), ==, 0);
    /* c-a alone on (v1, p1); c-a and c-b on (v2, p2) (split); nobody on (v9, p9). */
    fx_expose(&st, "e1", "v1", "c-a", "p1", ATTR_KIND_CLICK, 30000, T0 - 2 * D_, T0);
    fx_expose(&st, "e2", "v2", "c-a", "p2", ATTR_KIND_CLICK, 30000, T0 - 2 * D_, T0);
    fx_expose(&st, "e3", "v2", "c-b", "p2", ATTR_KIND_CLICK, 30000, T0 - D_, T0);
    for (int i = 0; i < BIG_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "one-%d", i);
        (void)fx_convert(&st, id, "v1", "p1", ATTR_AMOUNT_MAX, T0, T0);
        snprintf(id, sizeof id, "split-%d", i);
        (void)fx_convert(&st, id, "v2", "p2", ATTR_AMOUNT_MAX, T0, T0);
        snprintf(id, sizeof id, "none-%d", i);
        (void)fx_convert(&st, id, "v9", "p9", ATTR_AMOUNT_MAX, T0, T0);
    }
    attr_snap_marks_t m;
    memset(&m, 0, sizeof m);
    m.settings = st.settings;
    m.conversions = 3 * BIG_N;
    m.max_seq = 3 * BIG_N;
    m.amount_sum = (attr_sum_t)3 * BIG_N * ATTR_AMOUNT_MAX;
    YW_CHECK(m.amount_sum > INT64_MAX);
    YW_CHECK(attr_snap_check_totals(&st, &m, NULL, 0) == 1);
    char dir[64], path[128], err[512] = "";
    attr_snap_t *s = round_trip(&st, &m, &back, dir, path);
    attr_snap_marks_t other = m;
    other.amount_sum += (attr_sum_t)1 << 64; /* differs in the high half only */
    YW_CHECK(!attr_snap_matches(s, &other, err, sizeof err));
    YW_CHECK(attr_snap_check_totals(&back, &m, err, sizeof err));
    attr_sums_t a;
    attr_state_creator_sums(&back, 0, DAY0 - 30, DAY0 + 30, ATTR_MODEL_FIRST_TOUCH, &a);
    YW_CHECK_I128(a.gmv, ==, (attr_sum_t)2 * BIG_N * ATTR_AMOUNT_MAX);
    attr_sum_t n, g;
    attr_state_unattributed(&back, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(g, ==, (attr_sum_t)BIG_N * ATTR_AMOUNT_MAX);
    /* One minor unit less in the data: the totals do not add up. */
    m.amount_sum -= 1;
    YW_CHECK(!attr_snap_check_totals(&back, &m, err, sizeof err));
    attr_snap_free(s);
    attr_state_free(&back);
    attr_state_free(&st);
    unlink(path);
    rmdir(dir);
}

YW_TEST(marks_that_differ_are_named)
{
    attr_state_t st;
    attr_snap_marks_t m;
    fill(&st, &m);
    char dir[64], path[128], err[512] = "";
    path_of(dir, path);
    YW_CHECK_INT(attr_snap_write(path, &st, &m, err, sizeof err), ==, 0);
    attr_snap_t *s = NULL;
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, 0);
    attr_snap_marks_t now = m;
    now.conversions++;
    YW_CHECK(!attr_snap_matches(s, &now, err, sizeof err));
    YW_CHECK(strstr(err, "conversions") != NULL);
    now = m;
    now.refund_sum++;
    YW_CHECK(!attr_snap_matches(s, &now, err, sizeof err));
    YW_CHECK(strstr(err, "refunds") != NULL);
    now = m;
    now.log_last_size += 10;
    YW_CHECK(!attr_snap_matches(s, &now, err, sizeof err));
    YW_CHECK(strstr(err, "log") != NULL);
    now = m;
    now.settings.click_window_ns -= D_;
    YW_CHECK(!attr_snap_matches(s, &now, err, sizeof err));
    YW_CHECK(strstr(err, "settings") != NULL);
    now = m;
    now.pruned_hash = attr_snap_pruned_hash((const uint64_t[]){1}, 1);
    now.pruned_n = 1;
    YW_CHECK(!attr_snap_matches(s, &now, err, sizeof err));
    YW_CHECK(strstr(err, "pruned") != NULL);
    attr_snap_free(s);
    attr_state_free(&st);
    unlink(path);
    rmdir(dir);
}

YW_TEST(totals_that_do_not_add_up_are_refused)
{
    attr_state_t st;
    attr_snap_marks_t m;
    fill(&st, &m);
    char err[512] = "";
    YW_CHECK(attr_snap_check_totals(&st, &m, err, sizeof err));
    attr_snap_marks_t bad = m;
    bad.conversions = 4; /* one order the credits do not hold */
    YW_CHECK(!attr_snap_check_totals(&st, &bad, err, sizeof err));
    bad = m;
    bad.refund_sum = 2; /* a refund they do not hold */
    YW_CHECK(!attr_snap_check_totals(&st, &bad, err, sizeof err));
    YW_CHECK(strstr(err, "model") != NULL);
    attr_state_free(&st);
}

YW_TEST(a_torn_altered_or_foreign_file_is_refused)
{
    attr_state_t st;
    attr_snap_marks_t m;
    fill(&st, &m);
    char dir[64], path[128], err[512] = "";
    path_of(dir, path);
    attr_snap_t *s = NULL;
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, -ENOENT);
    YW_CHECK_INT(attr_snap_write(path, &st, &m, err, sizeof err), ==, 0);
    struct stat sb;
    YW_CHECK_INT(stat(path, &sb), ==, 0);
    /* One bit of the body. */
    int fd = open(path, O_RDWR);
    YW_CHECK(fd >= 0);
    unsigned char b;
    YW_CHECK_INT(pread(fd, &b, 1, sb.st_size - 40), ==, 1);
    b ^= 1;
    YW_CHECK_INT(pwrite(fd, &b, 1, sb.st_size - 40), ==, 1);
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, -EBADMSG);
    YW_CHECK(strstr(err, "CRC") != NULL);
    /* Torn. */
    YW_CHECK_INT(ftruncate(fd, sb.st_size - 1), ==, 0);
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, -EBADMSG);
    /* Foreign. */
    YW_CHECK_INT(pwrite(fd, "NOTASNAP", 8, 0), ==, 8);
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, -EBADMSG);
    close(fd);
    /* A state that holds creators already is not loaded into. */
    YW_CHECK_INT(attr_snap_write(path, &st, &m, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_snap_read(path, &s, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_snap_load(s, &st, err, sizeof err), ==, -EINVAL);
    attr_snap_free(s);
    attr_state_free(&st);
    unlink(path);
    rmdir(dir);
}

YW_TEST(log_end_is_the_last_segment_and_its_size)
{
    char dir[64], path[128];
    strcpy(dir, "/tmp/yw-snaplog-XXXXXX");
    YW_CHECK(mkdtemp(dir) != NULL);
    uint64_t seg = 9, size = 9;
    YW_CHECK_INT(attr_snap_log_end(dir, &seg, &size), ==, 0);
    YW_CHECK_INT(seg, ==, 0);
    YW_CHECK_INT(size, ==, 0);
    for (int n = 2; n <= 11; n += 9) {
        sprintf(path, "%s/seg-%020d.log", dir, n);
        int fd = open(path, O_WRONLY | O_CREAT, 0600);
        YW_CHECK(fd >= 0);
        YW_CHECK_INT(write(fd, "abc", (size_t)(n == 11 ? 3 : 1)), ==, n == 11 ? 3 : 1);
        close(fd);
    }
    YW_CHECK_INT(attr_snap_log_end(dir, &seg, &size), ==, 0);
    YW_CHECK_INT(seg, ==, 11);
    YW_CHECK_INT(size, ==, 3);
    for (int n = 2; n <= 11; n += 9) {
        sprintf(path, "%s/seg-%020d.log", dir, n);
        unlink(path);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(round_trip_keeps_every_figure_and_the_conversion_filter),
        YW_TEST_ENTRY(sums_past_int64_round_trip_and_add_up),
        YW_TEST_ENTRY(marks_that_differ_are_named),
        YW_TEST_ENTRY(totals_that_do_not_add_up_are_refused),
        YW_TEST_ENTRY(a_torn_altered_or_foreign_file_is_refused),
        YW_TEST_ENTRY(log_end_is_the_last_segment_and_its_size),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
