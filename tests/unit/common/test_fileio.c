/* Unit tests of common/fileio.c: whole-buffer reads and writes, the directory fsync,
 * small reads and the process's memory. Each test works in a fresh mkdtemp() directory. */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>

#include "tests/unit/test.h"

static int temp_file(char *dir, size_t dirlen, char *path, size_t pathlen)
{
    snprintf(dir, dirlen, "/tmp/yw-fileio-XXXXXX");
    YW_CHECK(mkdtemp(dir) != NULL);
    snprintf(path, pathlen, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    YW_CHECK(fd >= 0);
    return fd;
}

YW_TEST(write_then_read_back_at_offsets)
{
    char dir[64], path[96];
    int fd = temp_file(dir, sizeof dir, path, sizeof path);
    YW_CHECK_INT(yw_pwrite_all(fd, "hello", 5, 0), ==, 0);
    YW_CHECK_INT(yw_pwrite_all(fd, "world", 5, 100), ==, 0);
    char buf[8] = {0};
    YW_CHECK_INT(yw_pread_exact(fd, buf, 5, 100), ==, 0);
    YW_CHECK_STR(buf, "world");
    size_t got = 0;
    char big[200];
    YW_CHECK_INT(yw_pread_all(fd, big, sizeof big, 0, &got), ==, 0);
    YW_CHECK_INT(got, ==, 105); /* stops at the end of the file */
    YW_CHECK(memcmp(big, "hello", 5) == 0);
    YW_CHECK_INT(yw_pread_exact(fd, big, 10, 100), ==, -EBADMSG);
    YW_CHECK_INT(yw_pwrite_all(fd, "", 0, 0), ==, 0);
    close(fd);
    unlink(path);
    YW_CHECK_INT(yw_fsync_dir(dir), ==, 0);
    rmdir(dir);
}

YW_TEST(errors_are_negative_errno)
{
    char buf[4];
    size_t got = 1;
    YW_CHECK_INT(yw_pread_all(-1, buf, sizeof buf, 0, &got), ==, -EBADF);
    YW_CHECK_INT(got, ==, 0);
    YW_CHECK_INT(yw_pread_exact(-1, buf, sizeof buf, 0), ==, -EBADF);
    YW_CHECK_INT(yw_pwrite_all(-1, buf, sizeof buf, 0), ==, -EBADF);
    YW_CHECK_INT(yw_fsync_dir("/nonexistent/yw-fileio"), ==, -ENOENT);
    YW_CHECK_INT(yw_read_small("/nonexistent/yw-fileio", buf, sizeof buf), ==, -ENOENT);
}

YW_TEST(read_small_truncates_and_terminates)
{
    char dir[64], path[96];
    int fd = temp_file(dir, sizeof dir, path, sizeof path);
    YW_CHECK_INT(yw_pwrite_all(fd, "0123456789", 10, 0), ==, 0);
    close(fd);
    char buf[5];
    YW_CHECK_INT(yw_read_small(path, buf, sizeof buf), ==, 4);
    YW_CHECK_STR(buf, "0123");
    unlink(path);
    rmdir(dir);
}

YW_TEST(process_memory_is_plausible)
{
    uint64_t rss = 0, vsz = 0;
    YW_CHECK_INT(yw_process_memory(&rss, &vsz), ==, 0);
    YW_CHECK(rss > 0);
    YW_CHECK(vsz >= rss);
    YW_CHECK_INT(yw_process_memory(NULL, NULL), ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(write_then_read_back_at_offsets),
        YW_TEST_ENTRY(errors_are_negative_errno),
        YW_TEST_ENTRY(read_small_truncates_and_terminates),
        YW_TEST_ENTRY(process_memory_is_plausible),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
