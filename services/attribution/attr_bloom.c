/* attr_bloom.c — split-block Bloom filter. See attr_bloom.h. */
#include "services/attribution/attr_bloom.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_hash.h"

/* One odd multiplier per word of a block (the ones of the Parquet/Impala filter). */
static const uint32_t attr__salt[8] = {0x47b6137bu, 0x44974d91u, 0x8824ad5bu, 0xa2b7289du,
                                       0x705495c7u, 0x2df1424bu, 0x9efc4947u, 0x5c6bfb31u};

int attr_bloom_init(attr_bloom_t *b, uint64_t keys, unsigned bits_per_key)
{
    memset(b, 0, sizeof *b);
    uint64_t bits = keys * (uint64_t)(bits_per_key ? bits_per_key : 1);
    uint64_t blocks = (bits + 255) / 256;
    if (blocks == 0) {
        blocks = 1;
    }
    if (blocks >= (UINT64_C(1) << 32)) {
        return -ENOMEM;
    }
    b->words = attr_calloc_hot((size_t)blocks * 8, sizeof *b->words);
    if (b->words == NULL) {
        return -ENOMEM;
    }
    b->n_blocks = blocks;
    return 0;
}

void attr_bloom_free(attr_bloom_t *b)
{
    free(b->words);
    memset(b, 0, sizeof *b);
}

void attr_bloom_add(attr_bloom_t *b, uint64_t h)
{
    uint32_t *w = attr_bloom__block(b, h);
    uint32_t lo = (uint32_t)h;
    for (int i = 0; i < 8; i++) {
        w[i] |= UINT32_C(1) << ((lo * attr__salt[i]) >> 27);
    }
    b->n_keys++;
}

int attr_bloom_maybe(const attr_bloom_t *b, uint64_t h)
{
    const uint32_t *w = attr_bloom__block(b, h);
    uint32_t lo = (uint32_t)h;
    for (int i = 0; i < 8; i++) {
        if ((w[i] & (UINT32_C(1) << ((lo * attr__salt[i]) >> 27))) == 0) {
            return 0;
        }
    }
    return 1;
}
