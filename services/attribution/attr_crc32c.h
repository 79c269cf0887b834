/*
 * attr_crc32c.h — CRC-32C (Castagnoli), the checksum of the exposure log's frames.
 *
 * attr_crc32c() uses the CPU's CRC32 instruction (SSE4.2, eight bytes a step) when the
 * CPU has it, chosen once at run time, and a table a byte at a time otherwise. Both
 * paths are public so that a test can hold them against each other.
 *
 * Threads: any thread; nothing here has state but the table, built once.
 */
#ifndef ATTR_CRC32C_H
#define ATTR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** CRC-32C of `n` bytes, continuing from `crc` (start with 0). The fastest path here. */
uint32_t attr_crc32c(uint32_t crc, const void *p, size_t n);

/** attr_crc32c() with the table, a byte at a time (any CPU). */
uint32_t attr_crc32c_table(uint32_t crc, const void *p, size_t n);

/** Whether this CPU has the CRC32 instruction (x86-64 with SSE4.2). */
int attr_crc32c_hw_available(void);

/** attr_crc32c() with the CRC32 instruction: call only when attr_crc32c_hw_available(). */
uint32_t attr_crc32c_hw(uint32_t crc, const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
