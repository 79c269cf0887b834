/*
 * test_attr_ckey.c — unit tests of services/attribution/attr_ckey.c, with real files in a
 * temporary directory: keys are found in memory, then in the file their run became
 * (and leave memory); eight files of a size class merge into one; a restart keeps the
 * files and says up to which seq they are complete; a damaged file drops it and the later
 * ones; old files are deleted from the front.
 */
#include "services/attribution/attr_ckey.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test.h"

#define D_ (INT64_C(86400) * 1000000000)
#define T0 (INT64_C(20000) * D_)

typedef struct {
    char dir[256];
    uv_loop_t loop;
    attr_ckey_t *ck;
    uint64_t safe;
    int closed;
} fx_t;

static void fx_init(fx_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/ckeyXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
}

static void fx_open(fx_t *f)
{
    char err[512] = "";
    int rc = attr_ckey_open(&f->loop, f->dir, &f->ck, &f->safe, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", err);
    }
    YW_CHECK_INT(rc, ==, 0);
}

static void on_closed(void *arg)
{
    ((fx_t *)arg)->closed = 1;
}

static void fx_close(fx_t *f)
{
    f->closed = 0;
    attr_ckey_close(f->ck, on_closed, f);
    while (!f->closed) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    f->ck = NULL;
}

static void fx_done(fx_t *f)
{
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    YW_CHECK_INT(system(cmd), ==, 0);
}

/* Runs the loop until `written` runs were written (this open) and `files` files are kept. */
static void wait_files(fx_t *f, uint64_t written, uint64_t files)
{
    for (int i = 0; i < 100000; i++) {
        attr_ckey_info_t info;
        attr_ckey_info(f->ck, &info);
        if (info.runs_written == written && info.files == files) {
            return;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    YW_CHECK(!"the files never came");
}

/* The key of conversion `seq` (a few seqs share a key, as viewers buy one product twice). */
static uint64_t key_of(uint64_t seq)
{
    return (seq % 1000) * UINT64_C(0x9E3779B97F4A7C15) + 1;
}

typedef struct {
    uint64_t seqs[64];
    size_t n;
} found_t;

static void on_found(void *arg, uint64_t seq)
{
    found_t *x = arg;
    if (x->n < 64) {
        x->seqs[x->n] = seq;
    }
    x->n++;
}

static size_t find_all(fx_t *f, uint64_t vp, found_t *x)
{
    memset(x, 0, sizeof *x);
    attr_ckey_find_mem(f->ck, vp, on_found, x);
    attr_ckey_snap_t *snap = attr_ckey_snap(f->ck);
    YW_CHECK(snap != NULL);
    YW_CHECK_INT(attr_ckey_snap_find(snap, vp, on_found, x), ==, 0);
    attr_ckey_snap_free(snap);
    return x->n;
}

/* Adds seqs [from, to) and seals the runs that fill (safe: everything added so far). */
static void add_range(fx_t *f, uint64_t from, uint64_t to, int64_t occur)
{
    for (uint64_t s = from; s < to; s++) {
        YW_CHECK_INT(attr_ckey_add(f->ck, key_of(s), s, occur), ==, 0);
        if (attr_ckey_full(f->ck)) {
            YW_CHECK_INT(attr_ckey_seal(f->ck, s), ==, 0);
        }
    }
}

YW_TEST(keys_move_from_memory_to_files_and_merge)
{
    static fx_t f;
    fx_init(&f);
    fx_open(&f);
    YW_CHECK_INT(f.safe, ==, 0);
    add_range(&f, 1, 4, T0);
    found_t x;
    YW_CHECK_INT(find_all(&f, key_of(2), &x), ==, 1);
    YW_CHECK_INT(x.seqs[0], ==, 2);
    YW_CHECK_INT(find_all(&f, key_of(2) + 1, &x), ==, 0);
    /* A full run becomes a file; its keys are then found there, once. */
    add_range(&f, 4, ATTR_CKEY_RUN + 1, T0);
    wait_files(&f, 1, 1);
    YW_CHECK_INT(find_all(&f, key_of(2), &x), ==, (size_t)ATTR_CKEY_RUN / 1000 + 1);
    attr_ckey_info_t info;
    attr_ckey_info(f.ck, &info);
    YW_CHECK_INT(info.file_keys, ==, ATTR_CKEY_RUN);
    /* Seven more files: the eight merge into one. */
    add_range(&f, ATTR_CKEY_RUN + 1, 8 * ATTR_CKEY_RUN + 1, T0 + D_);
    wait_files(&f, 8, 1);
    attr_ckey_info(f.ck, &info);
    YW_CHECK_INT(info.merges, ==, 1);
    YW_CHECK_INT(info.file_keys, ==, 8 * ATTR_CKEY_RUN);
    YW_CHECK_INT(find_all(&f, key_of(7), &x), ==, (size_t)(8 * ATTR_CKEY_RUN) / 1000 + 1);
    /* Memory holds fences only (1/64 of the keys' 16 bytes), plus the empty open run. */
    YW_CHECK(info.mem_bytes < 8 * ATTR_CKEY_RUN / 64 * 8 + 4096);
    fx_close(&f);
    fx_done(&f);
}

YW_TEST(a_restart_keeps_whole_files_and_says_what_they_hold)
{
    static fx_t f;
    fx_init(&f);
    fx_open(&f);
    add_range(&f, 1, 2 * ATTR_CKEY_RUN + 1, T0);
    wait_files(&f, 2, 2);
    add_range(&f, 2 * ATTR_CKEY_RUN + 1, 2 * ATTR_CKEY_RUN + 11, T0); /* in memory only */
    fx_close(&f);
    fx_open(&f);
    /* The two files, complete up to the safe seq of the last: the ten in memory are
     * the caller's to add again. */
    YW_CHECK_INT(f.safe, ==, 2 * ATTR_CKEY_RUN);
    attr_ckey_info_t info;
    attr_ckey_info(f.ck, &info);
    YW_CHECK_INT(info.files, ==, 2);
    found_t x;
    YW_CHECK_INT(find_all(&f, key_of(5), &x), ==, (size_t)(2 * ATTR_CKEY_RUN) / 1000 + 1);
    add_range(&f, 2 * ATTR_CKEY_RUN + 1, 3 * ATTR_CKEY_RUN + 1, T0 + 5 * D_);
    wait_files(&f, 1, 3);
    fx_close(&f);

    /* The second file damaged: it and the third go; the first says up to where. */
    char **paths = NULL;
    size_t n = 0;
    YW_CHECK_INT(attr_xidx_list(f.dir, &paths, &n), ==, 0);
    YW_CHECK_INT(n, ==, 3);
    int fd = open(paths[1], O_RDWR);
    YW_CHECK(fd >= 0);
    unsigned char b = 0x5a;
    YW_CHECK_INT(pwrite(fd, &b, 1, 300), ==, 1);
    close(fd);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    fx_open(&f);
    YW_CHECK_INT(f.safe, ==, ATTR_CKEY_RUN);
    attr_ckey_info(f.ck, &info);
    YW_CHECK_INT(info.files, ==, 1);
    /* Old files go from the front: the first (T0) is past a limit of T0 + 1 day. */
    add_range(&f, ATTR_CKEY_RUN + 1, 2 * ATTR_CKEY_RUN + 1, T0 + 5 * D_);
    wait_files(&f, 1, 2);
    attr_ckey_tick(f.ck, T0 + D_);
    wait_files(&f, 1, 1);
    /* Only the second file's seqs are left (the key is shared by seqs 1000 apart). */
    YW_CHECK_INT(find_all(&f, key_of(5), &x), ==, 66);
    for (size_t i = 0; i < 64; i++) {
        YW_CHECK(x.seqs[i] > ATTR_CKEY_RUN);
    }
    fx_close(&f);
    YW_CHECK_INT(attr_xidx_list(f.dir, &paths, &n), ==, 0);
    YW_CHECK_INT(n, ==, 1);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    fx_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(keys_move_from_memory_to_files_and_merge),
        YW_TEST_ENTRY(a_restart_keeps_whole_files_and_says_what_they_hold),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
