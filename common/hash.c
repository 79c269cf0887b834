/* hash.c — 64-bit hashes of bytes and integers. See hash.h. */
#include "common/hash.h"

#include <string.h>

/** The 128-bit product of a and b folded to 64 bits (the "mum" step). */
static inline uint64_t yw__mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t yw_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = yw__mum(h ^ v, UINT64_C(0xbf58476d1ce4e5b9));
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n > 0) {
        memcpy(&v, s, n);
    }
    h = yw__mum(h ^ v ^ ((uint64_t)n << 59), UINT64_C(0x94d049bb133111eb));
    return yw__mum(h, UINT64_C(0x2545F4914F6CDD1D));
}

uint64_t yw_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}
