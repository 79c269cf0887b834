/*
 * test_attr_bloom.c — unit tests of services/attribution/attr_bloom.c: no false
 * negatives, a false-positive rate near what the size promises, sizes rounded to
 * blocks.
 */
#include "services/attribution/attr_bloom.h"

#include "services/attribution/attr_hash.h"
#include "tests/unit/test.h"

YW_TEST(every_key_added_is_maybe)
{
    attr_bloom_t b;
    YW_CHECK_INT(attr_bloom_init(&b, 100000, 16), ==, 0);
    for (uint64_t i = 0; i < 100000; i++) {
        attr_bloom_add(&b, yw_hash_u64(i));
    }
    YW_CHECK_INT(b.n_keys, ==, 100000);
    for (uint64_t i = 0; i < 100000; i++) {
        YW_CHECK(attr_bloom_maybe(&b, yw_hash_u64(i)));
    }
    attr_bloom_free(&b);
}

YW_TEST(false_positives_are_rare_at_16_bits_and_few_at_10)
{
    const uint64_t n = 200000;
    const unsigned bits[2] = {16, 10};
    /* Split-block filters at 16 bits/key: about 0.05 %; at 10 bits: about 1 %. */
    const uint64_t most[2] = {n / 500, n / 40}; /* 0.2 % and 2.5 % of n */
    for (int t = 0; t < 2; t++) {
        attr_bloom_t b;
        YW_CHECK_INT(attr_bloom_init(&b, n, bits[t]), ==, 0);
        for (uint64_t i = 0; i < n; i++) {
            attr_bloom_add(&b, yw_hash_u64(i));
        }
        uint64_t fp = 0;
        for (uint64_t i = n; i < 2 * n; i++) {
            fp += (uint64_t)attr_bloom_maybe(&b, yw_hash_u64(i));
        }
        YW_CHECK_INT(fp, <, most[t]);
        YW_CHECK_INT(fp, >, 0); /* it is a filter, not a set */
        attr_bloom_free(&b);
    }
}

YW_TEST(sizes_round_up_to_whole_blocks)
{
    attr_bloom_t b;
    YW_CHECK_INT(attr_bloom_init(&b, 0, 16), ==, 0);
    YW_CHECK_INT(b.n_blocks, ==, 1);
    YW_CHECK_INT(attr_bloom_bytes(&b), ==, 32);
    YW_CHECK(!attr_bloom_maybe(&b, 12345));
    attr_bloom_free(&b);
    YW_CHECK_INT(attr_bloom_init(&b, 17, 16), ==, 0); /* 272 bits: 2 blocks */
    YW_CHECK_INT(b.n_blocks, ==, 2);
    attr_bloom_free(&b);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(every_key_added_is_maybe),
        YW_TEST_ENTRY(false_positives_are_rare_at_16_bits_and_few_at_10),
        YW_TEST_ENTRY(sizes_round_up_to_whole_blocks),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
