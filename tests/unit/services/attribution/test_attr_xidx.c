/*
 * test_attr_xidx.c — unit tests of services/attribution/attr_xidx.c: index files
 * written and read back (every entry of a hash, across block boundaries, in order;
 * nothing for an absent hash), rollup and segment rows, a damaged or short file refused,
 * merges (order, pruned segments dropped, inputs gone, metadata), listing.
 */
#include "services/attribution/attr_xidx.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/unit/test.h"

static void make_dir(char *dir, size_t len)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(dir, len, "%s/xidxXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(dir) != NULL);
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    YW_CHECK_INT(system(cmd), ==, 0);
}

typedef struct {
    int n;
    attr_xent_t e[4096];
} found_t;

static int collect(void *arg, const attr_xent_t *e)
{
    found_t *f = arg;
    YW_CHECK(f->n < 4096);
    f->e[f->n++] = *e;
    return 0;
}

/* Hash of entry i: 600 distinct hashes, each 1 + i % 7 times (runs cross blocks). */
static uint64_t hash_of(int k)
{
    return (uint64_t)k * 0x9E3779B97F4A7C15ull;
}

static size_t fill(attr_xent_t *e, uint32_t seg)
{
    size_t n = 0;
    for (int k = 0; k < 600; k++) {
        for (int r = 0; r <= k % 7; r++) {
            e[n++] = (attr_xent_t){hash_of(k), seg, (uint32_t)(1000 * k + r)};
        }
    }
    return n;
}

static char *write_file(const char *dir, uint64_t run, uint32_t seg, attr_xpos_t start,
                        attr_xpos_t end)
{
    static attr_xent_t join[4000], dedup[4000];
    size_t nj = fill(join, seg), nd = fill(dedup, seg);
    /* Shuffle a little: the writer sorts. */
    for (size_t i = 0; i + 1 < nj; i += 2) {
        attr_xent_t t = join[i];
        join[i] = join[nj - 1 - i];
        join[nj - 1 - i] = t;
    }
    attr_xrollup_t rows[2] = {
        {.seg = seg,
         .day = 20000,
         .creator = "alice",
         .creator_len = 5,
         .impressions = 3,
         .views = 2,
         .clicks = 1},
        {.seg = seg,
         .day = 20001,
         .creator = "bob-the-long-name",
         .creator_len = 17,
         .impressions = 7},
    };
    attr_xseg_t segs[1] = {{seg, nd, 12345}};
    attr_xmeta_t meta = {.first_run = run, .last_run = run, .start = start, .end = end};
    static char path[4200];
    char err[512] = "";
    YW_CHECK_INT(attr_xidx_write(dir, &meta, join, nj, dedup, nd, rows, 2, segs, 1, path,
                                 sizeof path, err, sizeof err),
                 ==, 0);
    YW_CHECK_INT(meta.n_join, ==, nj);
    YW_CHECK_INT(meta.min_seg, ==, seg);
    YW_CHECK_INT(meta.max_seg, ==, seg);
    return path;
}

typedef struct {
    int n;
    int64_t imp;
    char names[4][32];
    uint64_t seg_events;
} rows_t;

static int on_row(void *arg, const attr_xrollup_t *r)
{
    rows_t *t = arg;
    snprintf(t->names[t->n++ % 4], 32, "%.*s", (int)r->creator_len, r->creator);
    t->imp += r->impressions;
    return 0;
}

static int on_seg(void *arg, const attr_xseg_t *s)
{
    ((rows_t *)arg)->seg_events += s->events;
    return 0;
}

YW_TEST(entries_of_a_hash_come_back_in_order)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    char *path = write_file(dir, 1, 3, (attr_xpos_t){3, 0}, (attr_xpos_t){3, 999});
    attr_xidx_t *x = NULL;
    char err[512] = "";
    YW_CHECK_INT(attr_xidx_open(path, 1, &x, err, sizeof err), ==, 0);
    const attr_xmeta_t *m = attr_xidx_meta(x);
    YW_CHECK_INT(m->first_run, ==, 1);
    YW_CHECK_INT(m->end.off, ==, 999);
    YW_CHECK_INT(m->n_dedup, ==, m->n_join);
    static found_t f;
    for (int section = 0; section < 2; section++) {
        for (int k = 0; k < 600; k++) {
            f.n = 0;
            YW_CHECK_INT(attr_xidx_find(x, section, hash_of(k), collect, &f), ==, 0);
            YW_CHECK_INT(f.n, ==, 1 + k % 7);
            for (int r = 0; r < f.n; r++) {
                YW_CHECK(f.e[r].h == hash_of(k));
                YW_CHECK_INT(f.e[r].off, ==, 1000 * k + r);
            }
        }
        /* Absent: below, between and above everything. */
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(x, section, hash_of(600), collect, &f), ==, 0);
        YW_CHECK_INT(attr_xidx_find(x, section, 1, collect, &f), ==, 0);
        YW_CHECK_INT(attr_xidx_find(x, section, UINT64_MAX, collect, &f), ==, 0);
        YW_CHECK_INT(f.n, ==, 0);
    }
    rows_t t;
    memset(&t, 0, sizeof t);
    YW_CHECK_INT(attr_xidx_rollups(x, on_row, &t), ==, 0);
    YW_CHECK_INT(t.n, ==, 2);
    YW_CHECK_INT(t.imp, ==, 10);
    YW_CHECK_STR(t.names[1], "bob-the-long-name");
    YW_CHECK_INT(attr_xidx_segs(x, on_seg, &t), ==, 0);
    YW_CHECK_INT(t.seg_events, ==, m->n_dedup);
    /* A sequential scan sees every entry, sorted. */
    static found_t all;
    all.n = 0;
    YW_CHECK_INT(attr_xidx_scan(x, ATTR_XIDX_DEDUP, collect, &all), ==, 0);
    YW_CHECK_INT(all.n, ==, m->n_dedup);
    for (int i = 1; i < all.n; i++) {
        YW_CHECK(all.e[i - 1].h <= all.e[i].h);
    }
    attr_xidx_unref(x);
    remove_dir(dir);
}

static int stop_at_first(void *arg, const attr_xent_t *e)
{
    (void)arg;
    (void)e;
    return 7;
}

YW_TEST(a_walk_stops_when_asked)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    char *path = write_file(dir, 1, 3, (attr_xpos_t){3, 0}, (attr_xpos_t){3, 999});
    attr_xidx_t *x = NULL;
    char err[512];
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, hash_of(6), stop_at_first, NULL), ==, 7);
    attr_xidx_unref(x);
    remove_dir(dir);
}

YW_TEST(a_damaged_or_short_file_is_refused)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    char *path = write_file(dir, 1, 3, (attr_xpos_t){3, 0}, (attr_xpos_t){3, 999});
    struct stat s;
    YW_CHECK_INT(stat(path, &s), ==, 0);
    /* One flipped byte in the body: the header is fine, the CRC of the body is not. */
    int fd = open(path, O_RDWR);
    YW_CHECK(fd >= 0);
    unsigned char c;
    YW_CHECK_INT(pread(fd, &c, 1, 1000), ==, 1);
    c ^= 0x40;
    YW_CHECK_INT(pwrite(fd, &c, 1, 1000), ==, 1);
    attr_xidx_t *x = NULL;
    char err[512] = "";
    YW_CHECK_INT(attr_xidx_open(path, 1, &x, err, sizeof err), ==, -EBADMSG);
    YW_CHECK(strstr(err, "CRC") != NULL);
    YW_CHECK(x == NULL);
    /* Without the check it opens (the fences are whole). */
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, 0);
    attr_xidx_unref(x);
    /* Cut short: refused at once. */
    YW_CHECK_INT(ftruncate(fd, s.st_size - 8), ==, 0);
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, -EBADMSG);
    YW_CHECK(strstr(err, "not a whole") != NULL);
    /* Not an index at all. */
    YW_CHECK_INT(ftruncate(fd, 10), ==, 0);
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, -EBADMSG);
    close(fd);
    remove_dir(dir);
}

YW_TEST(merging_keeps_order_and_drops_pruned_segments)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    attr_xidx_t *in[3];
    char err[512] = "";
    for (int i = 0; i < 3; i++) {
        char *p = write_file(dir, 10 + (uint64_t)i, 5 + (uint32_t)i, (attr_xpos_t){5 + i, 0},
                             (attr_xpos_t){6 + i, 0});
        YW_CHECK_INT(attr_xidx_open(p, 1, &in[i], err, sizeof err), ==, 0);
    }
    char path[4200];
    /* Segment 5 is pruned: the first file's entries go. */
    /* Asked to stop: gives up, the inputs stay. */
    _Atomic int stop = 1;
    YW_CHECK_INT(attr_xidx_merge(dir, in, 3, 6, &stop, path, sizeof path, err, sizeof err), ==,
                 -ECANCELED);
    for (int i = 0; i < 3; i++) {
        YW_CHECK(access(attr_xidx_path(in[i]), F_OK) == 0);
    }
    YW_CHECK_INT(attr_xidx_merge(dir, in, 3, 6, NULL, path, sizeof path, err, sizeof err), ==, 0);
    YW_CHECK(strstr(path, "idx-00000000000000000010-00000000000000000012.xidx") != NULL);
    /* The inputs are gone from the directory but still readable through them. */
    for (int i = 0; i < 3; i++) {
        YW_CHECK(access(attr_xidx_path(in[i]), F_OK) != 0);
    }
    static found_t f;
    f.n = 0;
    YW_CHECK_INT(attr_xidx_find(in[0], ATTR_XIDX_JOIN, hash_of(6), collect, &f), ==, 0);
    YW_CHECK_INT(f.n, ==, 7);
    attr_xidx_t *m = NULL;
    YW_CHECK_INT(attr_xidx_open(path, 1, &m, err, sizeof err), ==, 0);
    const attr_xmeta_t *mm = attr_xidx_meta(m);
    YW_CHECK_INT(mm->first_run, ==, 10);
    YW_CHECK_INT(mm->last_run, ==, 12);
    YW_CHECK_INT(mm->start.seq, ==, 5);
    YW_CHECK_INT(mm->end.seq, ==, 8);
    YW_CHECK_INT(mm->min_seg, ==, 6);
    YW_CHECK_INT(mm->max_seg, ==, 7);
    YW_CHECK_INT(mm->n_dedup, ==, 2 * attr_xidx_meta(in[0])->n_dedup);
    for (int k = 0; k < 600; k += 37) {
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(m, ATTR_XIDX_DEDUP, hash_of(k), collect, &f), ==, 0);
        YW_CHECK_INT(f.n, ==, 2 * (1 + k % 7));
        /* (segment, offset) order within a hash */
        for (int r = 1; r < f.n; r++) {
            YW_CHECK(f.e[r - 1].seg < f.e[r].seg ||
                     (f.e[r - 1].seg == f.e[r].seg && f.e[r - 1].off < f.e[r].off));
        }
        YW_CHECK_INT(f.e[0].seg, ==, 6);
    }
    rows_t t;
    memset(&t, 0, sizeof t);
    YW_CHECK_INT(attr_xidx_rollups(m, on_row, &t), ==, 0);
    YW_CHECK_INT(t.n, ==, 4); /* segment 5's rows dropped */
    YW_CHECK_INT(attr_xidx_segs(m, on_seg, &t), ==, 0);
    YW_CHECK_INT(t.seg_events, ==, mm->n_dedup);
    for (int i = 0; i < 3; i++) {
        attr_xidx_unref(in[i]);
    }
    /* Listing: the merged file, and a leftover temporary file is deleted. */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s/idx-00000000000000000013-00000000000000000013.xidx.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT, 0640);
    YW_CHECK(fd >= 0);
    close(fd);
    char **paths = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xidx_list(dir, &paths, &n), ==, 0);
    YW_CHECK_INT(n, ==, 1);
    YW_CHECK_STR(paths[0], path);
    free(paths[0]);
    free(paths);
    YW_CHECK(access(tmp, F_OK) != 0);
    attr_xidx_unref(m);
    remove_dir(dir);
}

YW_TEST(large_sections_sort_and_find)
{
    /* Enough entries for the radix sort (>= 4096) and many fence blocks. */
    char dir[256];
    make_dir(dir, sizeof dir);
    size_t n = 50000;
    attr_xent_t *e = malloc(n * sizeof *e);
    YW_CHECK(e != NULL);
    for (size_t i = 0; i < n; i++) {
        /* 25,000 hashes, each twice; the second copy later in the log */
        uint64_t k = i % 25000;
        e[i] = (attr_xent_t){k * 0xff51afd7ed558ccdull, 1, (uint32_t)i};
    }
    attr_xmeta_t meta = {.first_run = 1, .last_run = 1};
    char path[4200], err[512];
    YW_CHECK_INT(attr_xidx_write(dir, &meta, e, n, e + 0, 0, NULL, 0, NULL, 0, path, sizeof path,
                                 err, sizeof err),
                 ==, 0);
    attr_xidx_t *x = NULL;
    YW_CHECK_INT(attr_xidx_open(path, 1, &x, err, sizeof err), ==, 0);
    static found_t f;
    for (uint64_t k = 0; k < 25000; k += 97) {
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, k * 0xff51afd7ed558ccdull, collect, &f), ==,
                     0);
        YW_CHECK_INT(f.n, ==, 2);
        YW_CHECK_INT(f.e[0].off, ==, k); /* stable: log order kept within a hash */
        YW_CHECK_INT(f.e[1].off, ==, k + 25000);
    }
    YW_CHECK(attr_xidx_mem(x) < 50000 * 16 / 100); /* only the fences stay in memory */
    attr_xidx_unref(x);
    free(e);
    remove_dir(dir);
}

YW_TEST(skewed_hashes_are_found_too)
{
    /* Lookups aim by interpolation (hashes are meant to be uniform): check that skewed
     * keys (cubes, a dense cluster, a long run of one hash) are still all found. */
    char dir[256];
    make_dir(dir, sizeof dir);
    size_t n = 30000, k = 0;
    attr_xent_t *e = malloc(n * sizeof *e);
    YW_CHECK(e != NULL);
    for (uint64_t i = 0; i < 10000; i++) {
        e[k++] = (attr_xent_t){i * i * i, 1, (uint32_t)k}; /* cubes */
    }
    for (uint64_t i = 0; i < 10000; i++) {
        e[k++] = (attr_xent_t){UINT64_C(1) << 62 | i, 1, (uint32_t)k}; /* a dense cluster */
    }
    for (uint64_t i = 0; i < 10000; i++) {
        e[k++] = (attr_xent_t){UINT64_MAX - 5, 1, (uint32_t)k}; /* one hash, 10,000 times */
    }
    attr_xmeta_t meta = {.first_run = 1, .last_run = 1};
    char path[4200], err[512];
    YW_CHECK_INT(attr_xidx_write(dir, &meta, e, n, e, 0, NULL, 0, NULL, 0, path, sizeof path, err,
                                 sizeof err),
                 ==, 0);
    attr_xidx_t *x = NULL;
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, 0);
    static found_t f;
    for (uint64_t i = 0; i < 10000; i += 7) {
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, i * i * i, collect, &f), ==, 0);
        YW_CHECK_INT(f.n, ==, 1);
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, UINT64_C(1) << 62 | i, collect, &f), ==, 0);
        YW_CHECK_INT(f.n, ==, 1);
        f.n = 0;
        YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, i * i * i + 1, collect, &f), ==, 0);
        YW_CHECK_INT(f.n, ==, i == 0 ? 1 : 0); /* 0 + 1 is the cube of 1 */
    }
    /* The run of one hash (10,000 entries, 157 blocks): see the next test. */
    attr_xidx_unref(x);
    free(e);
    remove_dir(dir);
}

static int count_only(void *arg, const attr_xent_t *e)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

YW_TEST(a_long_run_of_one_hash_is_found_whole)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    size_t n = 20000;
    attr_xent_t *e = malloc(n * sizeof *e);
    YW_CHECK(e != NULL);
    for (size_t i = 0; i < n; i++) {
        e[i] = (attr_xent_t){i < 5000 ? i : (i < 15000 ? UINT64_C(42) << 40 : UINT64_MAX - i), 2,
                             (uint32_t)i};
    }
    attr_xmeta_t meta = {.first_run = 1, .last_run = 1};
    char path[4200], err[512];
    YW_CHECK_INT(attr_xidx_write(dir, &meta, e, n, e, 0, NULL, 0, NULL, 0, path, sizeof path, err,
                                 sizeof err),
                 ==, 0);
    attr_xidx_t *x = NULL;
    YW_CHECK_INT(attr_xidx_open(path, 0, &x, err, sizeof err), ==, 0);
    int count = 0;
    YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, UINT64_C(42) << 40, count_only, &count), ==, 0);
    YW_CHECK_INT(count, ==, 10000);
    count = 0;
    YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, 4999, count_only, &count), ==, 0);
    YW_CHECK_INT(count, ==, 1);
    count = 0;
    YW_CHECK_INT(attr_xidx_find(x, ATTR_XIDX_JOIN, UINT64_MAX - 15000, count_only, &count), ==, 0);
    YW_CHECK_INT(count, ==, 1);
    attr_xidx_unref(x);
    free(e);
    remove_dir(dir);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(entries_of_a_hash_come_back_in_order),
        YW_TEST_ENTRY(a_walk_stops_when_asked),
        YW_TEST_ENTRY(a_damaged_or_short_file_is_refused),
        YW_TEST_ENTRY(merging_keeps_order_and_drops_pruned_segments),
        YW_TEST_ENTRY(large_sections_sort_and_find),
        YW_TEST_ENTRY(skewed_hashes_are_found_too),
        YW_TEST_ENTRY(a_long_run_of_one_hash_is_found_whole),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
