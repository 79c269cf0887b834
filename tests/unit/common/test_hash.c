/* Unit tests of common/hash.c: fixed values (index files store hashes, so they must never
 * change), and the spread of nearby keys. */
#include "common/hash.h"

#include "tests/unit/test.h"

YW_TEST(values_never_change)
{
    /* Pinned: attribution's index files hold join keys built from these. */
    YW_CHECK(yw_hash_u64(0) == 0);
    YW_CHECK(yw_hash_u64(1) == UINT64_C(0xb456bcfc34c2cb2c));
    YW_CHECK(yw_hash_bytes("", 0) == yw_hash_bytes(NULL, 0));
    YW_CHECK(yw_hash_bytes("viewer-1", 8) == UINT64_C(0x281c5da2592ab515));
    YW_CHECK(yw_hash_bytes("product-0042", 12) == UINT64_C(0x032d8d33b003a778));
}

YW_TEST(length_and_content_both_count)
{
    YW_CHECK(yw_hash_bytes("a", 1) != yw_hash_bytes("b", 1));
    YW_CHECK(yw_hash_bytes("a\0", 2) != yw_hash_bytes("a", 1));
    YW_CHECK(yw_hash_bytes("abcdefgh1", 9) != yw_hash_bytes("abcdefgh2", 9));
    /* The low bits (the ones a power-of-two table uses) differ for nearby keys. */
    char key[16];
    uint64_t seen = 0;
    for (int i = 0; i < 64; i++) {
        int n = snprintf(key, sizeof key, "c%d", i);
        seen |= UINT64_C(1) << (yw_hash_bytes(key, (size_t)n) & 63);
    }
    YW_CHECK(__builtin_popcountll(seen) > 30);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(values_never_change),
        YW_TEST_ENTRY(length_and_content_both_count),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
