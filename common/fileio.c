/* fileio.c — whole-buffer file I/O. See fileio.h. */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int yw_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const unsigned char *c = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, c, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int yw_pread_all(int fd, void *p, size_t n, uint64_t off, size_t *got)
{
    unsigned char *c = p;
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, c + *got, n - *got, (off_t)(off + *got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            break; /* the end of the file */
        }
        *got += (size_t)r;
    }
    return 0;
}

int yw_pread_exact(int fd, void *p, size_t n, uint64_t off)
{
    size_t got;
    int rc = yw_pread_all(fd, p, n, off, &got);
    if (rc != 0) {
        return rc;
    }
    return got == n ? 0 : -EBADMSG;
}

int yw_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) != 0 ? -errno : 0;
    (void)close(fd);
    return rc;
}

ssize_t yw_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n;
    do {
        n = read(fd, buf, cap - 1);
    } while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : 0;
    (void)close(fd);
    if (n < 0) {
        return -err;
    }
    buf[n] = '\0';
    return n;
}

int yw_process_memory(uint64_t *resident, uint64_t *virtual_size)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        return -EINVAL;
    }
    char buf[256];
    ssize_t n = yw_read_small("/proc/self/statm", buf, sizeof buf);
    if (n < 0) {
        return (int)n;
    }
    unsigned long long vsz, rss;
    if (sscanf(buf, "%llu %llu", &vsz, &rss) != 2) {
        return -EBADMSG;
    }
    if (resident != NULL) {
        *resident = (uint64_t)rss * (uint64_t)page;
    }
    if (virtual_size != NULL) {
        *virtual_size = (uint64_t)vsz * (uint64_t)page;
    }
    return 0;
}
