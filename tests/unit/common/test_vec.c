/* Unit tests of common/vec.c: growth from the minimum by doubling, and the overflow edges. */
#include "common/vec.h"

#include <errno.h>
#include <stdint.h>

#include "tests/unit/test.h"

/* Under AddressSanitizer, an allocation bigger than the machine returns NULL (as malloc
 * does) instead of stopping the test: the failure path is what is tested. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

YW_TEST(starts_at_the_minimum_and_doubles)
{
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 1, 64), ==, 0);
    YW_CHECK(v != NULL);
    YW_CHECK_INT(cap, ==, 64);
    for (uint64_t i = 0; i < 1000; i++) {
        YW_CHECK_INT(YW_VEC_GROW(v, n, cap, 1, 64), ==, 0);
        v[n++] = i;
    }
    YW_CHECK_INT(cap, ==, 1024);
    for (uint64_t i = 0; i < 1000; i++) {
        YW_CHECK_INT(v[i], ==, i);
    }
    free(v);
}

YW_TEST(big_requests_skip_ahead)
{
    int *v = NULL;
    size_t cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 100, 8), ==, 0);
    YW_CHECK_INT(cap, ==, 128);
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 129, 8), ==, 0);
    YW_CHECK_INT(cap, ==, 256);
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 2000, 8), ==, 0);
    YW_CHECK_INT(cap, ==, 2048);
    free(v);
}

YW_TEST(enough_room_changes_nothing)
{
    char *v = NULL;
    size_t cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 10, 16), ==, 0);
    char *before = v;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 16, 16), ==, 0);
    YW_CHECK(v == before);
    YW_CHECK_INT(cap, ==, 16);
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 0, 16), ==, 0);
    YW_CHECK_INT(cap, ==, 16);
    free(v);
}

YW_TEST(zero_minimum_counts_as_one)
{
    short *v = NULL;
    size_t cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 1, 0), ==, 0);
    YW_CHECK_INT(cap, ==, 1);
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 3, 0), ==, 0);
    YW_CHECK_INT(cap, ==, 4);
    free(v);
}

YW_TEST(byte_size_overflow_fails_and_keeps_the_array)
{
    uint64_t *v = NULL;
    size_t cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 4, 4), ==, 0);
    v[3] = 42;
    uint64_t *before = v;
    /* SIZE_MAX / 8 + 1 elements of 8 bytes: the byte size wraps. */
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, SIZE_MAX / 8 + 1, 4), ==, -ENOMEM);
    YW_CHECK(v == before);
    YW_CHECK_INT(cap, ==, 4);
    YW_CHECK_INT(v[3], ==, 42);
    /* SIZE_MAX elements: the doubling itself would overflow. */
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, SIZE_MAX, 4), ==, -ENOMEM);
    YW_CHECK(v == before);
    YW_CHECK_INT(cap, ==, 4);
    free(v);
}

YW_TEST(doubling_past_half_of_size_max_stops_at_the_request)
{
    void *v = NULL;
    size_t cap = SIZE_MAX / 2 + 2; /* as if it were that big: the next double would wrap */
    /* Asking for one element more must not wrap the capacity to a small number; the
     * allocation of SIZE_MAX bytes then fails, leaving everything as it was. */
    YW_CHECK_INT(yw_vec_reserve(&v, &cap, SIZE_MAX, 1, 8), ==, -ENOMEM);
    YW_CHECK(v == NULL);
    YW_CHECK(cap == SIZE_MAX / 2 + 2);
}

YW_TEST(count_overflow_fails)
{
    int *v = NULL;
    size_t n = SIZE_MAX - 1, cap = 0;
    YW_CHECK_INT(YW_VEC_GROW(v, n, cap, 2, 8), ==, -ENOMEM);
    YW_CHECK(v == NULL);
    YW_CHECK_INT(cap, ==, 0);
    size_t sum = 0;
    YW_CHECK_INT(yw_vec_add(SIZE_MAX, 1, &sum), ==, -ENOMEM);
    YW_CHECK_INT(yw_vec_add(SIZE_MAX - 1, 1, &sum), ==, 0);
    YW_CHECK(sum == SIZE_MAX);
}

YW_TEST(allocation_failure_fails_cleanly)
{
    char *v = NULL;
    size_t cap = 0;
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, 8, 8), ==, 0);
    v[0] = 'x';
    /* More than any machine has (but no overflow): realloc fails. */
    YW_CHECK_INT(YW_VEC_RESERVE(v, cap, SIZE_MAX / 4, 8), ==, -ENOMEM);
    YW_CHECK_INT(cap, ==, 8);
    YW_CHECK_INT(v[0], ==, 'x');
    free(v);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(starts_at_the_minimum_and_doubles),
        YW_TEST_ENTRY(big_requests_skip_ahead),
        YW_TEST_ENTRY(enough_room_changes_nothing),
        YW_TEST_ENTRY(zero_minimum_counts_as_one),
        YW_TEST_ENTRY(byte_size_overflow_fails_and_keeps_the_array),
        YW_TEST_ENTRY(doubling_past_half_of_size_max_stops_at_the_request),
        YW_TEST_ENTRY(count_overflow_fails),
        YW_TEST_ENTRY(allocation_failure_fails_cleanly),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
