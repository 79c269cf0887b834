/* Unit tests of common/arena.c: carving, alignment, big allocations, reset and reuse. */
#include "common/arena.h"

#include <stdint.h>

#include "tests/unit/test.h"

YW_TEST(small_allocations_share_a_block)
{
    yw_arena_t a;
    yw_arena_init(&a, 1024);
    char *p = yw_arena_alloc(&a, 10, 1);
    char *q = yw_arena_alloc(&a, 10, 1);
    YW_CHECK(p != NULL && q == p + 10);
    YW_CHECK_INT(a.n_blocks, ==, 1);
    YW_CHECK(yw_arena_alloc(&a, 0, 1) == NULL);
    yw_arena_free(&a);
    YW_CHECK_INT(a.n_blocks, ==, 0);
    YW_CHECK_INT(a.block_size, ==, 1024);
}

YW_TEST(alignment_is_kept)
{
    yw_arena_t a;
    yw_arena_init(&a, 1024);
    (void)yw_arena_alloc(&a, 3, 1);
    uint64_t *p = yw_arena_alloc(&a, 8, 8);
    YW_CHECK(p != NULL && ((uintptr_t)p & 7) == 0);
    (void)yw_arena_alloc(&a, 1, 1);
    uint32_t *q = yw_arena_alloc(&a, 4, 4);
    YW_CHECK(q != NULL && ((uintptr_t)q & 3) == 0);
    yw_arena_free(&a);
}

YW_TEST(a_full_block_starts_another_and_pointers_stay)
{
    yw_arena_t a;
    yw_arena_init(&a, 256);
    char *first = yw_arena_strdup(&a, "first", 5);
    for (int i = 0; i < 100; i++) {
        YW_CHECK(yw_arena_alloc(&a, 60, 1) != NULL);
    }
    YW_CHECK(a.n_blocks > 10);
    YW_CHECK_STR(first, "first");
    yw_arena_free(&a);
}

YW_TEST(big_allocations_are_their_own_and_the_block_goes_on)
{
    yw_arena_t a;
    yw_arena_init(&a, 1024);
    char *p = yw_arena_alloc(&a, 8, 1);
    char *big = yw_arena_alloc(&a, 1000, 1);
    char *q = yw_arena_alloc(&a, 8, 1);
    YW_CHECK(big != NULL);
    YW_CHECK(q == p + 8);
    YW_CHECK_INT(a.n_blocks, ==, 1);
    YW_CHECK_INT(a.n_bigs, ==, 1);
    YW_CHECK(yw_arena_bytes(&a) >= 1024 + 1000);
    yw_arena_free(&a);
}

YW_TEST(reset_reuses_the_blocks_and_frees_the_big_ones)
{
    yw_arena_t a;
    yw_arena_init(&a, 256);
    char *first = yw_arena_alloc(&a, 16, 1);
    for (int i = 0; i < 20; i++) {
        YW_CHECK(yw_arena_alloc(&a, 60, 1) != NULL);
    }
    YW_CHECK(yw_arena_alloc(&a, 200, 1) != NULL);
    size_t blocks = a.n_blocks;
    yw_arena_reset(&a);
    YW_CHECK_INT(a.n_bigs, ==, 0);
    YW_CHECK_INT(a.n_blocks, ==, blocks);
    YW_CHECK(yw_arena_alloc(&a, 16, 1) == first);
    for (int i = 0; i < 20; i++) {
        YW_CHECK(yw_arena_alloc(&a, 60, 1) != NULL);
    }
    YW_CHECK_INT(a.n_blocks, ==, blocks); /* no new block: the kept ones served */
    yw_arena_free(&a);
}

YW_TEST(reset_keep_frees_the_blocks_past_the_first)
{
    yw_arena_t a;
    yw_arena_init(&a, 256);
    char *first = yw_arena_alloc(&a, 16, 1);
    for (int i = 0; i < 40; i++) {
        YW_CHECK(yw_arena_alloc(&a, 60, 1) != NULL);
    }
    YW_CHECK_INT(a.n_blocks, >, 3);
    yw_arena_reset_keep(&a, 3);
    YW_CHECK_INT(a.n_blocks, ==, 3);
    YW_CHECK_INT(yw_arena_bytes(&a), ==, 3 * 256 + (a.cap_blocks + a.cap_bigs) * sizeof(char *));
    YW_CHECK(yw_arena_alloc(&a, 16, 1) == first);
    /* Fewer blocks than kept: all stay. */
    yw_arena_reset_keep(&a, 10);
    YW_CHECK_INT(a.n_blocks, ==, 3);
    /* None kept: the next allocation takes a new block. */
    yw_arena_reset_keep(&a, 0);
    YW_CHECK_INT(a.n_blocks, ==, 0);
    YW_CHECK(yw_arena_alloc(&a, 16, 1) != NULL);
    YW_CHECK_INT(a.n_blocks, ==, 1);
    yw_arena_free(&a);
}

YW_TEST(strdup_copies_and_terminates)
{
    yw_arena_t a;
    yw_arena_init(&a, 64);
    char *s = yw_arena_strdup(&a, "abcdef", 3);
    YW_CHECK_STR(s, "abc");
    char *e = yw_arena_strdup(&a, "", 0);
    YW_CHECK_STR(e, "");
    YW_CHECK(yw_arena_strdup(&a, "x", SIZE_MAX) == NULL);
    yw_arena_free(&a);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(small_allocations_share_a_block),
        YW_TEST_ENTRY(alignment_is_kept),
        YW_TEST_ENTRY(a_full_block_starts_another_and_pointers_stay),
        YW_TEST_ENTRY(big_allocations_are_their_own_and_the_block_goes_on),
        YW_TEST_ENTRY(reset_reuses_the_blocks_and_frees_the_big_ones),
        YW_TEST_ENTRY(reset_keep_frees_the_blocks_past_the_first),
        YW_TEST_ENTRY(strdup_copies_and_terminates),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
