/*
 * hash.h — the 64-bit hashes of the in-memory tables: one for byte strings, one mix for
 * integers. Fast and well spread, not keyed: use them where the keys are not chosen by
 * an attacker who gains by collisions, or where the table bounds its probe lengths.
 *
 * Some of these values are written into files (attribution's index files store join
 * keys built from them): never change either function.
 */
#ifndef YW_HASH_H
#define YW_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A 64-bit hash of the `n` bytes at `p` (`p` may be NULL when n is 0). */
uint64_t yw_hash_bytes(const void *p, size_t n);

/** A 64-bit mix of one integer (MurmurHash3's finaliser: a bijection). */
uint64_t yw_hash_u64(uint64_t x);

#ifdef __cplusplus
}
#endif
#endif
