/*
 * fileio.h — whole-buffer file I/O: reads and writes that finish what they were asked
 * (a short read or write, or EINTR, continues where it stopped), the directory fsync
 * that makes a created or renamed file durable, and reads of small /proc files.
 *
 * Every function is blocking I/O: call it off the loop (a store or pool thread), except
 * where it says otherwise. Errors are negative errno values.
 */
#ifndef YW_FILEIO_H
#define YW_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Writes all `n` bytes of `p` at offset `off` of `fd`. Returns 0 or -errno. */
int yw_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

/**
 * Reads up to `n` bytes at offset `off` of `fd` into `p`, stopping early only at the end
 * of the file; `*got` gets the bytes read (also on error: those before it). Returns 0
 * or -errno.
 */
int yw_pread_all(int fd, void *p, size_t n, uint64_t off, size_t *got);

/**
 * Reads exactly `n` bytes at offset `off` of `fd` into `p`. Returns 0, -EBADMSG when the
 * file ends first (it is shorter than what described it said), or -errno.
 */
int yw_pread_exact(int fd, void *p, size_t n, uint64_t off);

/**
 * fsyncs the directory `dir`, so that the files created, renamed or removed in it
 * survive a crash. Returns 0 or -errno.
 */
int yw_fsync_dir(const char *dir);

/**
 * Reads the file at `path` (a small one: /proc, /sys) into `buf` (`cap` bytes, at least
 * 1), NUL-terminated; what does not fit in cap - 1 bytes is left out. Returns the bytes
 * read or -errno.
 */
ssize_t yw_read_small(const char *path, char *buf, size_t cap);

/**
 * The process's resident set and virtual size in bytes, from /proc/self/statm (either
 * pointer may be NULL). Quick enough for the loop (one read of a /proc file). Returns 0
 * or -errno (-EBADMSG when the file cannot be parsed).
 */
int yw_process_memory(uint64_t *resident, uint64_t *virtual_size);

#ifdef __cplusplus
}
#endif
#endif
