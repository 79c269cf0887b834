/* attr_crc32c.c — CRC-32C with the CRC32 instruction or a table. See attr_crc32c.h. */
#include "services/attribution/attr_crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* The reflected Castagnoli polynomial. */
#define ATTR__CRC32C_POLY 0x82F63B78u

static uint32_t attr__crc32c_tab[256];
static pthread_once_t attr__crc32c_once = PTHREAD_ONCE_INIT;

static void attr__crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ ATTR__CRC32C_POLY : c >> 1;
        }
        attr__crc32c_tab[i] = c;
    }
}

uint32_t attr_crc32c_table(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&attr__crc32c_once, attr__crc32c_init);
    const unsigned char *b = p;
    uint32_t c = ~crc;
    while (n-- > 0) {
        c = attr__crc32c_tab[(c ^ *b++) & 0xff] ^ (c >> 8);
    }
    return ~c;
}

#if defined(__x86_64__)
int attr_crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t attr_crc32c_hw(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, b, 8); /* any alignment */
        c = _mm_crc32_u64(c, v);
        b += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0) {
        c32 = _mm_crc32_u8(c32, *b++);
    }
    return ~c32;
}
#else
int attr_crc32c_hw_available(void)
{
    return 0;
}

uint32_t attr_crc32c_hw(uint32_t crc, const void *p, size_t n)
{
    return attr_crc32c_table(crc, p, n); /* no such instruction here */
}
#endif

uint32_t attr_crc32c(uint32_t crc, const void *p, size_t n)
{
    /* Chosen once: __builtin_cpu_supports() reads what the CPU said at start-up. */
    static int hw = -1;
    int use = __atomic_load_n(&hw, __ATOMIC_RELAXED);
    if (use < 0) {
        use = attr_crc32c_hw_available();
        __atomic_store_n(&hw, use, __ATOMIC_RELAXED);
    }
    return use ? attr_crc32c_hw(crc, p, n) : attr_crc32c_table(crc, p, n);
}
