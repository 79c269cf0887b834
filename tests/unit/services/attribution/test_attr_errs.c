/*
 * test_attr_errs.c — unit tests of services/attribution/attr_errs.c: whatever order
 * rejections are noted in, IngestSummary.errors lists the ATTR_ERRORS_MAX lowest
 * indexes, ascending, each with its own reason.
 */
#include "services/attribution/attr_errs.h"

#include "tests/unit/test.h"

static void add(attr_errs_t *e, int64_t index)
{
    char reason[64];
    snprintf(reason, sizeof reason, "reason of %lld", (long long)index);
    attr_errs_add(e, index, reason);
}

/* The list is exactly want[0..n), with the reasons that go with them. */
static void check(attr_errs_t *e, const int64_t *want, size_t n)
{
    size_t got;
    Yaowei__Attribution__V1__IngestError **l = attr_errs_list(e, &got);
    YW_CHECK_INT(got, ==, n);
    for (size_t i = 0; i < n; i++) {
        char reason[64];
        snprintf(reason, sizeof reason, "reason of %lld", (long long)want[i]);
        YW_CHECK_INT(l[i]->index, ==, want[i]);
        YW_CHECK_STR(l[i]->reason, reason);
    }
}

YW_TEST(an_empty_list_lists_nothing)
{
    static attr_errs_t e;
    check(&e, NULL, 0);
}

YW_TEST(out_of_order_rejections_come_out_ascending)
{
    static attr_errs_t e;
    /* A RecordRefunds call whose rejects come in two passes: validation rejects 1 and 3, the order
     * lookup then rejects 0, 2 and 4. */
    int64_t in[] = {1, 3, 0, 2, 4};
    for (size_t i = 0; i < 5; i++) {
        add(&e, in[i]);
    }
    int64_t want[] = {0, 1, 2, 3, 4};
    check(&e, want, 5);
}

YW_TEST(a_full_list_keeps_the_lowest_hundred)
{
    static attr_errs_t e;
    /* 300 rejections: 100..299 first (validation), then 0..199 interleaved descending
     * (a later stage): the list ends as 0..99. */
    for (int64_t i = 100; i < 300; i += 2) {
        add(&e, i);
    }
    for (int64_t i = 199; i >= 0; i -= 2) {
        add(&e, i);
    }
    for (int64_t i = 0; i < 100; i += 2) {
        add(&e, i);
    }
    int64_t want[ATTR_ERRORS_MAX];
    for (int64_t i = 0; i < ATTR_ERRORS_MAX; i++) {
        want[i] = i;
    }
    check(&e, want, ATTR_ERRORS_MAX);
    /* Higher than every one kept: dropped. */
    add(&e, 100);
    check(&e, want, ATTR_ERRORS_MAX);
}

YW_TEST(random_orders_match_a_sort)
{
    static attr_errs_t e;
    enum { N = 1000 };
    static int64_t idx[N];
    for (int round = 0; round < 20; round++) {
        memset(&e, 0, sizeof e);
        for (int64_t i = 0; i < N; i++) {
            idx[i] = i * 3;
        }
        srand((unsigned)round);
        for (size_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)rand() % (i + 1);
            int64_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        size_t n = round == 0 ? 50 : N; /* also a list that never fills */
        int64_t least = INT64_MAX;
        for (size_t i = 0; i < n; i++) {
            add(&e, idx[i]);
            least = idx[i] < least ? idx[i] : least;
        }
        if (n == N) {
            int64_t want[ATTR_ERRORS_MAX];
            for (int64_t i = 0; i < ATTR_ERRORS_MAX; i++) {
                want[i] = i * 3;
            }
            check(&e, want, ATTR_ERRORS_MAX);
        } else {
            size_t got;
            Yaowei__Attribution__V1__IngestError **l = attr_errs_list(&e, &got);
            YW_CHECK_INT(got, ==, n);
            YW_CHECK_INT(l[0]->index, ==, least);
            for (size_t i = 1; i < got; i++) {
                YW_CHECK(l[i - 1]->index < l[i]->index);
            }
        }
    }
}

YW_TEST(a_long_reason_is_cut)
{
    static attr_errs_t e;
    char reason[ATTR_REASON_MAX * 2];
    memset(reason, 'x', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    attr_errs_add(&e, 7, reason);
    size_t n;
    Yaowei__Attribution__V1__IngestError **l = attr_errs_list(&e, &n);
    YW_CHECK_INT(n, ==, 1);
    YW_CHECK_INT(strlen(l[0]->reason), ==, ATTR_REASON_MAX - 1);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(an_empty_list_lists_nothing),
        YW_TEST_ENTRY(out_of_order_rejections_come_out_ascending),
        YW_TEST_ENTRY(a_full_list_keeps_the_lowest_hundred),
        YW_TEST_ENTRY(random_orders_match_a_sort),
        YW_TEST_ENTRY(a_long_reason_is_cut),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
