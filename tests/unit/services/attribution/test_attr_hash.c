/*
 * test_attr_hash.c — unit tests of services/attribution/attr_hash.c: the interner keeps
 * every id through its growths; attr_calloc_hot() gives zeroed tables whose pages are
 * already written (a probe's read then write costs no page fault), and NULL on overflow.
 */
#include "services/attribution/attr_hash.h"

#include <stdint.h>
#include <sys/resource.h>

#include "tests/unit/test.h"

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

YW_TEST(interned_ids_stay_through_growth)
{
    attr_intern_t in;
    attr_intern_init(&in);
    char s[32];
    for (uint32_t i = 0; i < 100000; i++) {
        int n = snprintf(s, sizeof s, "creator-%u", i);
        uint32_t id = UINT32_MAX;
        YW_CHECK_INT(attr_intern(&in, s, (size_t)n, &id), ==, 0);
        YW_CHECK_INT(id, ==, i);
    }
    for (uint32_t i = 0; i < 100000; i += 7) {
        int n = snprintf(s, sizeof s, "creator-%u", i);
        YW_CHECK_INT(attr_intern_find(&in, s, (size_t)n), ==, (int64_t)i);
        uint32_t id = UINT32_MAX;
        YW_CHECK_INT(attr_intern(&in, s, (size_t)n, &id), ==, 0); /* again: the same id */
        YW_CHECK_INT(id, ==, i);
        YW_CHECK_STR(attr_intern_str(&in, i, NULL), s);
    }
    YW_CHECK_INT(attr_intern_find(&in, "creator-100000", 14), ==, -1);
    attr_intern_free(&in);
}

YW_TEST(hot_tables_are_zero_and_their_pages_written)
{
    /* 2 MiB: under attr_hint_huge()'s threshold, so pages are 4 KiB ones, and a fresh
     * mapping of malloc's (over its mmap threshold). */
    const size_t n = (2u << 20) / sizeof(uint64_t), pages = (2u << 20) / 4096;
    uint64_t *t = attr_calloc_hot(n, sizeof *t);
    YW_CHECK(t != NULL);
    /* What a hash table's probes do: read a slot, then write it. A page first mapped
     * by a read (the shared zero page) would fault again on the write: 2 faults a page
     * of a plain calloc(). */
    long before = minor_faults();
    uint64_t zeros = 0;
    for (size_t i = 0; i < n; i += 64) {
        zeros += t[i] == 0;
        t[i] = i + 1;
    }
    long faults = minor_faults() - before;
    YW_CHECK_INT(zeros, ==, n / 64);
    YW_CHECK_INT(faults, <, (long)pages / 4);
    for (size_t i = 0; i < n; i++) {
        YW_CHECK_INT(t[i], ==, i % 64 == 0 ? i + 1 : 0);
    }
    free(t);
}

YW_TEST(hot_tables_refuse_an_overflowing_size)
{
    YW_CHECK(attr_calloc_hot(SIZE_MAX / 2, 4) == NULL);
    void *p = attr_calloc_hot(0, 8); /* calloc()'s answer for nothing: NULL or freeable */
    free(p);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(interned_ids_stay_through_growth),
        YW_TEST_ENTRY(hot_tables_are_zero_and_their_pages_written),
        YW_TEST_ENTRY(hot_tables_refuse_an_overflowing_size),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
