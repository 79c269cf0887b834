/*
 * test_disk.c — unit tests of common/disk.c: the reserve file and the write gate, driven
 * by a fake file system (its free space set by the test) on a real loop.
 */
#include "common/disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test.h"

#define MIB (1ull << 20)

static _Atomic uint64_t fake_avail;
static _Atomic uint64_t fake_size;
static atomic_int fake_calls;

static int fake_statfs(void *arg, const char *dir, uint64_t *avail, uint64_t *size)
{
    (void)arg;
    (void)dir;
    atomic_fetch_add(&fake_calls, 1);
    *avail = atomic_load(&fake_avail);
    *size = atomic_load(&fake_size);
    return 0;
}

typedef struct {
    uv_loop_t loop;
    char dir[64];
    char reserve[128];
    yw_disk_t *disk;
} fx_t;

static void fx_open(fx_t *f, uint64_t reserve, uint64_t avail, uint64_t size)
{
    atomic_store(&fake_avail, avail);
    atomic_store(&fake_size, size);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    strcpy(f->dir, "/tmp/yw-disk-XXXXXX");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->reserve, sizeof f->reserve, "%s/svc.reserve", f->dir);
    yw_disk_config_t cfg = {.dir = f->dir,
                            .reserve_path = f->reserve,
                            .reserve_bytes = reserve,
                            .check_ms = 5,
                            .statfs = fake_statfs};
    char err[256];
    YW_CHECK_INT(yw_disk_open(&f->loop, &cfg, &f->disk, err, sizeof err), ==, 0);
}

static void fx_close(fx_t *f)
{
    yw_disk_close(f->disk);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    unlink(f->reserve);
    rmdir(f->dir);
}

/* Runs the loop until a few more looks were taken (each one 5 ms after the last). */
static void looks(fx_t *f, int n)
{
    int want = atomic_load(&fake_calls) + n;
    while (atomic_load(&fake_calls) < want) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    /* The look's outcome is stored before the loop hears of it: let it be done. */
    for (int i = 0; i < 3; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

static long long reserve_size(const fx_t *f)
{
    struct stat st;
    return stat(f->reserve, &st) == 0 ? (long long)st.st_size : -1;
}

static int writable(const fx_t *f)
{
    char err[256];
    return yw_disk_writable(f->disk, err, sizeof err) == 0;
}

YW_TEST(plenty_of_space_preallocates_the_reserve)
{
    fx_t f;
    fx_open(&f, 4 * MIB, 100 * MIB, 1024 * MIB);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(yw_disk_reserve(f.disk), ==, 4 * MIB);
    YW_CHECK_INT(reserve_size(&f), ==, 4 * MIB);
    looks(&f, 3);
    YW_CHECK(writable(&f));
    fx_close(&f);
    /* NULL is writable and takes reports. */
    YW_CHECK_INT(yw_disk_writable(NULL, NULL, 0), ==, 0);
    yw_disk_report_full(NULL);
}

YW_TEST(the_reserve_is_at_most_a_sixteenth)
{
    fx_t f;
    fx_open(&f, 64 * MIB, 10 * MIB, 16 * MIB);
    YW_CHECK_INT(yw_disk_reserve(f.disk), ==, 1 * MIB);
    YW_CHECK_INT(reserve_size(&f), ==, 1 * MIB);
    YW_CHECK(writable(&f));
    fx_close(&f);
}

YW_TEST(short_of_space_closes_the_gate_and_frees_the_reserve)
{
    fx_t f;
    fx_open(&f, 4 * MIB, 100 * MIB, 1024 * MIB);
    atomic_store(&fake_avail, 3 * MIB); /* less than the reserve besides it */
    looks(&f, 2);
    YW_CHECK(!writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    char err[256];
    YW_CHECK_INT(yw_disk_writable(f.disk, err, sizeof err), ==, -ENOSPC);
    YW_CHECK(strncmp(err, "disk full: ", 11) == 0);
    YW_CHECK(strstr(err, "8.0 MiB") != NULL); /* twice the reserve lets writes resume */
    /* Some space back, less than twice the reserve: still closed, whatever the retries. */
    atomic_store(&fake_avail, 7 * MIB);
    looks(&f, 3);
    YW_CHECK(!writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    /* Enough: the reserve first, then writes. */
    atomic_store(&fake_avail, 8 * MIB);
    looks(&f, 2);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, 4 * MIB);
    fx_close(&f);
}

static void *report_from_a_thread(void *arg)
{
    yw_disk_report_full(arg);
    return NULL;
}

YW_TEST(a_write_that_hit_enospc_closes_the_gate_at_once)
{
    fx_t f;
    /* 3 MiB free besides a 2 MiB reserve: writable. */
    fx_open(&f, 2 * MIB, 3 * MIB, 1024 * MIB);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, 2 * MIB);
    pthread_t t;
    YW_CHECK_INT(pthread_create(&t, NULL, report_from_a_thread, f.disk), ==, 0);
    YW_CHECK_INT(pthread_join(t, NULL), ==, 0);
    YW_CHECK(!writable(&f)); /* before any look */
    looks(&f, 3);
    YW_CHECK(!writable(&f));                /* 3 MiB free: less than twice the reserve */
    YW_CHECK_INT(reserve_size(&f), ==, -1); /* released for the checkpoints */
    atomic_store(&fake_avail, 10 * MIB);
    looks(&f, 2);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, 2 * MIB);
    /* A report while the disk says plenty (a file deleted meanwhile): the next look
     * without a report reopens. */
    yw_disk_report_full(f.disk);
    YW_CHECK(!writable(&f));
    looks(&f, 3);
    YW_CHECK(writable(&f));
    fx_close(&f);
}

YW_TEST(full_at_start_and_a_deleted_reserve_is_made_again)
{
    fx_t f;
    fx_open(&f, 4 * MIB, 1 * MIB, 1024 * MIB);
    YW_CHECK(!writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    atomic_store(&fake_avail, 50 * MIB);
    looks(&f, 2);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, 4 * MIB);
    YW_CHECK_INT(unlink(f.reserve), ==, 0);
    looks(&f, 2);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, 4 * MIB);
    fx_close(&f);
}

YW_TEST(no_reserve_still_gates_on_enospc)
{
    fx_t f;
    fx_open(&f, 0, 100 * MIB, 1024 * MIB);
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    atomic_store(&fake_avail, 0);
    looks(&f, 2);
    YW_CHECK(writable(&f)); /* nothing to keep in reserve: only a failed write tells */
    yw_disk_report_full(f.disk);
    looks(&f, 2);
    YW_CHECK(!writable(&f));
    atomic_store(&fake_avail, MIB - 1);
    looks(&f, 2);
    YW_CHECK(!writable(&f));
    atomic_store(&fake_avail, MIB);
    looks(&f, 2);
    YW_CHECK(writable(&f));
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    fx_close(&f);
}

YW_TEST(released_at_shutdown_for_good)
{
    fx_t f;
    fx_open(&f, 2 * MIB, 100 * MIB, 1024 * MIB);
    YW_CHECK_INT(reserve_size(&f), ==, 2 * MIB);
    yw_disk_release(f.disk);
    YW_CHECK_INT(reserve_size(&f), ==, -1);
    looks(&f, 3);
    YW_CHECK_INT(reserve_size(&f), ==, -1); /* not made again */
    YW_CHECK(writable(&f));                 /* the gate goes on */
    yw_disk_release(f.disk);
    fx_close(&f);
    yw_disk_release(NULL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(plenty_of_space_preallocates_the_reserve),
        YW_TEST_ENTRY(the_reserve_is_at_most_a_sixteenth),
        YW_TEST_ENTRY(short_of_space_closes_the_gate_and_frees_the_reserve),
        YW_TEST_ENTRY(a_write_that_hit_enospc_closes_the_gate_at_once),
        YW_TEST_ENTRY(full_at_start_and_a_deleted_reserve_is_made_again),
        YW_TEST_ENTRY(no_reserve_still_gates_on_enospc),
        YW_TEST_ENTRY(released_at_shutdown_for_good),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
