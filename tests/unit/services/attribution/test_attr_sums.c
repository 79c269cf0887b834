/*
 * test_attr_sums.c — unit tests of services/attribution/attr_sums.c: a state's sums over
 * a range (each creator with anything in range, once; one creator alone; the
 * unattributed conversions), and partitions' sums merged: by creator name, exactly
 * (past int64, past 2^64, negative), the names copied, an overflow of 128 bits refused
 * with nothing changed. The events split by viewer over two partitions, merged, give
 * the sums of one state holding them all, under every model and range.
 */
#include "services/attribution/attr_sums.h"

#include <errno.h>

#include "tests/unit/services/attribution/attr_parts_fixture.h"
#include "tests/unit/test.h"

static attr_sums_t sums(attr_sum_t impressions, attr_sum_t views, attr_sum_t clicks,
                        attr_sum_t credit, attr_sum_t gmv)
{
    return (attr_sums_t){impressions, views, clicks, credit, gmv};
}

static void check_sums_eq(const attr_sums_t *a, const attr_sums_t *b)
{
    YW_CHECK_I128(a->impressions, ==, b->impressions);
    YW_CHECK_I128(a->views, ==, b->views);
    YW_CHECK_I128(a->clicks, ==, b->clicks);
    YW_CHECK_I128(a->credit, ==, b->credit);
    YW_CHECK_I128(a->gmv, ==, b->gmv);
}

/* The entry of `creator` in `rs`, or NULL. */
static const attr_creator_sums_t *find(const attr_range_sums_t *rs, const char *creator)
{
    for (size_t i = 0; i < rs->n; i++) {
        if (rs->creators[i].len == strlen(creator) &&
            strcmp(rs->creators[i].creator, creator) == 0) {
            return &rs->creators[i];
        }
    }
    return NULL;
}

/* `a` and `b` hold the same creators (each once) with the same sums, in any order. */
static void check_same_entries(const attr_range_sums_t *a, const attr_range_sums_t *b)
{
    YW_CHECK_INT(a->n, ==, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const attr_creator_sums_t *o = find(b, a->creators[i].creator);
        YW_CHECK(o != NULL);
        check_sums_eq(&a->creators[i].s, &o->s);
    }
    YW_CHECK_I128(a->unattr_count, ==, b->unattr_count);
    YW_CHECK_I128(a->unattr_gmv, ==, b->unattr_gmv);
}

YW_TEST(a_states_sums_hold_each_creator_with_anything_in_range_once)
{
    attr_state_t st;
    attr_state_init(&st);
    fx_parts_feed(&st, FX_ALL);
    attr_range_sums_t rs;
    YW_CHECK_INT(attr_sums_of_state(&st, DAY0 - 30, DAY0 + 30, ATTR_MODEL_LAST_TOUCH, NULL, 0, &rs),
                 ==, 0);
    YW_CHECK_INT(rs.n, ==, 4);
    /* A: x1, x3, x8; o1 and o6 (1000 + 2500) alone, o2 and o7 to B (last touch). */
    const attr_creator_sums_t *a = find(&rs, "A");
    YW_CHECK(a != NULL);
    attr_sums_t want = sums(2, 0, 1, (attr_sum_t)2 * ATTR_CREDIT_ONE, 3500);
    check_sums_eq(&a->s, &want);
    /* Unattributed: o4 and o5. */
    YW_CHECK_I128(rs.unattr_count, ==, 2);
    YW_CHECK_I128(rs.unattr_gmv, ==, 1200);
    /* Each creator with its id in the state (a standalone report takes it as it is). */
    YW_CHECK(rs.ids_of == &st);
    for (size_t i = 0; i < rs.n; i++) {
        size_t len = 0;
        const char *name = attr_intern_str(&st.creators, rs.creators[i].id, &len);
        YW_CHECK(name == rs.creators[i].creator && len == rs.creators[i].len);
    }
    free(rs.creators);
    /* DAY0 alone: D's click (3 days before) is out, so is o5 (the day before); C's
     * exposures are the day before and last touch gives it nothing of o3 (B's). */
    YW_CHECK_INT(attr_sums_of_state(&st, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, NULL, 0, &rs), ==,
                 0);
    YW_CHECK(find(&rs, "D") == NULL && find(&rs, "C") == NULL);
    YW_CHECK_INT(rs.n, ==, 2);
    YW_CHECK_I128(rs.unattr_count, ==, 1);
    free(rs.creators);
    /* One creator alone; an unknown one gives no row but still the unattributed. */
    YW_CHECK_INT(attr_sums_of_state(&st, DAY0 - 30, DAY0 + 30, 1, "B", 1, &rs), ==, 0);
    YW_CHECK_INT(rs.n, ==, 1);
    YW_CHECK(strcmp(rs.creators[0].creator, "B") == 0);
    free(rs.creators);
    YW_CHECK_INT(attr_sums_of_state(&st, DAY0 - 30, DAY0 + 30, 1, "nobody", 6, &rs), ==, 0);
    YW_CHECK_INT(rs.n, ==, 0);
    YW_CHECK_I128(rs.unattr_count, ==, 2);
    free(rs.creators);
    attr_state_free(&st);
}

YW_TEST(partitions_merged_give_the_sums_of_one_state_holding_every_event)
{
    attr_state_t all, part[FX_PARTS];
    fx_parts_open(&all, part);
    const int32_t ranges[][2] = {{DAY0 - 30, DAY0 + 30}, {DAY0, DAY0 + 1}, {DAY0 - 1, DAY0}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        for (int model = 1; model <= ATTR_N_MODELS; model++) {
            int32_t d0 = ranges[r][0], d1 = ranges[r][1];
            attr_range_sums_t want;
            YW_CHECK_INT(attr_sums_of_state(&all, d0, d1, model, NULL, 0, &want), ==, 0);
            attr_sums_merge_t m;
            attr_sums_merge_init(&m);
            size_t rows = 0;
            for (int p = 0; p < FX_PARTS; p++) {
                attr_range_sums_t got;
                YW_CHECK_INT(attr_sums_of_state(&part[p], d0, d1, model, NULL, 0, &got), ==, 0);
                rows += got.n;
                YW_CHECK_INT(attr_sums_merge(&m, &got), ==, 0);
                free(got.creators);
            }
            if (r == 0) {
                /* A, B and C are in both partitions (D only in one): 7 rows, 4 creators. */
                YW_CHECK_INT(rows, ==, 7);
            }
            check_same_entries(&want, &m.sums);
            YW_CHECK(m.sums.ids_of == NULL); /* names from elsewhere: looked up by name */
            free(want.creators);
            attr_sums_merge_free(&m);
        }
    }
    fx_parts_close(&all, part);
}

YW_TEST(merged_sums_are_exact_past_int64_and_past_2_64)
{
    attr_sum_t two64 = (attr_sum_t)1 << 64;
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    attr_sums_t s0 = sums(INT64_MAX, 1, 2, INT64_MAX, INT64_MAX);
    attr_sums_t s1 = sums(INT64_MAX, two64, -5, 3, two64 + 7);
    YW_CHECK_INT(attr_sums_merge_creator(&m, "A", 1, &s0), ==, 0);
    YW_CHECK_INT(attr_sums_merge_creator(&m, "B", 1, &s0), ==, 0);
    YW_CHECK_INT(attr_sums_merge_creator(&m, "A", 1, &s1), ==, 0);
    YW_CHECK_INT(attr_sums_merge_unattributed(&m, INT64_MAX, INT64_MAX), ==, 0);
    YW_CHECK_INT(attr_sums_merge_unattributed(&m, 1, two64), ==, 0);
    YW_CHECK_INT(m.sums.n, ==, 2);
    /* Creators in the order they first came. */
    YW_CHECK(strcmp(m.sums.creators[0].creator, "A") == 0);
    attr_sums_t want = sums((attr_sum_t)2 * INT64_MAX, two64 + 1, -3, (attr_sum_t)INT64_MAX + 3,
                            (attr_sum_t)INT64_MAX + two64 + 7);
    check_sums_eq(&m.sums.creators[0].s, &want);
    check_sums_eq(&m.sums.creators[1].s, &s0);
    YW_CHECK_I128(m.sums.unattr_count, ==, (attr_sum_t)INT64_MAX + 1);
    YW_CHECK_I128(m.sums.unattr_gmv, ==, (attr_sum_t)INT64_MAX + two64);
    attr_sums_merge_free(&m);
}

YW_TEST(a_sum_past_128_bits_is_refused_and_changes_nothing)
{
    attr_sum_t max = (attr_sum_t)(~(unsigned __int128)0 >> 1);
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    attr_sums_t big = sums(1, 1, 1, 1, max);
    attr_sums_t one = sums(1, 1, 1, 1, 1);
    YW_CHECK_INT(attr_sums_merge_creator(&m, "A", 1, &big), ==, 0);
    YW_CHECK_INT(attr_sums_merge_creator(&m, "A", 1, &one), ==, -ERANGE);
    check_sums_eq(&m.sums.creators[0].s, &big); /* its other figures were not added either */
    YW_CHECK_INT(attr_sums_merge_unattributed(&m, 0, max), ==, 0);
    YW_CHECK_INT(attr_sums_merge_unattributed(&m, 5, 1), ==, -ERANGE);
    YW_CHECK_I128(m.sums.unattr_count, ==, 0);
    YW_CHECK_I128(m.sums.unattr_gmv, ==, max);
    attr_sums_t acc = sums(0, 0, 0, 0, -max - 1);
    YW_CHECK_INT(attr_sums_add(&acc, &(attr_sums_t){0, 0, 0, 0, -1}), ==, -ERANGE);
    YW_CHECK_I128(acc.gmv, ==, -max - 1);
    attr_sums_merge_free(&m);
}

YW_TEST(merged_names_are_copies)
{
    attr_sums_merge_t m;
    attr_sums_merge_init(&m);
    char name[32] = "creator-1";
    attr_sums_t s = sums(1, 0, 0, 0, 0);
    /* Many creators: the merge's arrays grow and the names stay put. */
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "creator-%d", i);
        YW_CHECK_INT(attr_sums_merge_creator(&m, name, strlen(name), &s), ==, 0);
    }
    memset(name, 'x', sizeof name - 1);
    YW_CHECK_INT(m.sums.n, ==, 1000);
    YW_CHECK(strcmp(m.sums.creators[0].creator, "creator-0") == 0);
    YW_CHECK(strcmp(m.sums.creators[999].creator, "creator-999") == 0);
    YW_CHECK_INT(m.sums.creators[999].len, ==, 11);
    attr_sums_merge_free(&m);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_states_sums_hold_each_creator_with_anything_in_range_once),
        YW_TEST_ENTRY(partitions_merged_give_the_sums_of_one_state_holding_every_event),
        YW_TEST_ENTRY(merged_sums_are_exact_past_int64_and_past_2_64),
        YW_TEST_ENTRY(a_sum_past_128_bits_is_refused_and_changes_nothing),
        YW_TEST_ENTRY(merged_names_are_copies),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
