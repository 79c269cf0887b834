/*
 * test_creator_batch.c — unit tests of services/creator_profile/creator_batch.c: array
 * literals (quoting) and the chunked upsert statements of RecordNoteStats on PostgreSQL.
 */
#include "services/creator_profile/creator_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/test.h"

YW_TEST(text_array_quotes)
{
    const char *items[] = {"n1", "a\"b", "c\\d", "x,y {z}", ""};
    char *s = NULL;
    YW_CHECK_INT(creator_pg_text_array(items, 5, &s), ==, 0);
    YW_CHECK_STR(s, "{\"n1\",\"a\\\"b\",\"c\\\\d\",\"x,y {z}\",\"\"}");
    free(s);
    YW_CHECK_INT(creator_pg_text_array(items, 0, &s), ==, 0);
    YW_CHECK_STR(s, "{}");
    free(s);
}

YW_TEST(chunk_sizes)
{
    YW_CHECK_INT(creator_upsert_chunk(0), ==, 0);
    YW_CHECK_INT(creator_upsert_chunk(1), ==, 1);
    YW_CHECK_INT(creator_upsert_chunk(3), ==, 2);
    YW_CHECK_INT(creator_upsert_chunk(100), ==, 64);
    YW_CHECK_INT(creator_upsert_chunk(128), ==, 128);
    YW_CHECK_INT(creator_upsert_chunk(1000), ==, CREATOR_UPSERT_CHUNK_MAX);
    /* Every remainder is taken in whole chunks, at most rows/MAX + 8 statements. */
    for (size_t n = 0; n <= 1000; n++) {
        size_t left = n, stmts = 0;
        while (left > 0) {
            size_t k = creator_upsert_chunk(left);
            YW_CHECK(k > 0 && k <= left && creator_upsert_sql(k) != NULL);
            left -= k;
            stmts++;
        }
        YW_CHECK(stmts <= n / CREATOR_UPSERT_CHUNK_MAX + 8);
    }
}

/* The number of `?N` parameters in `sql`, and whether they run 1..N in order. */
static size_t count_params(const char *sql, int *in_order)
{
    size_t n = 0;
    *in_order = 1;
    for (const char *p = strchr(sql, '?'); p != NULL; p = strchr(p + 1, '?')) {
        n++;
        if (strtoul(p + 1, NULL, 10) != n) {
            *in_order = 0;
        }
    }
    return n;
}

YW_TEST(upsert_sql)
{
    YW_CHECK(creator_upsert_sql(0) == NULL);
    YW_CHECK(creator_upsert_sql(3) == NULL);
    YW_CHECK(creator_upsert_sql((size_t)2 * CREATOR_UPSERT_CHUNK_MAX) == NULL);
    const char *one = creator_upsert_sql(1);
    YW_CHECK(one != NULL && one == creator_upsert_sql(1)); /* one static string per size */
    YW_CHECK(strstr(one, "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                         "ON CONFLICT (note_id, day) DO UPDATE SET") != NULL);
    YW_CHECK(strstr(one, "follows_gained = excluded.follows_gained") != NULL);
    for (size_t rows = 1; rows <= CREATOR_UPSERT_CHUNK_MAX; rows *= 2) {
        const char *sql = creator_upsert_sql(rows);
        int in_order;
        YW_CHECK(sql != NULL);
        YW_CHECK_INT(count_params(sql, &in_order), ==, rows * CREATOR_UPSERT_COLUMNS);
        YW_CHECK(in_order);
        char last[64];
        snprintf(last, sizeof last, ", ?%zu) ON CONFLICT", rows * CREATOR_UPSERT_COLUMNS);
        YW_CHECK(strstr(sql, last) != NULL); /* complete, not cut short */
    }
    YW_CHECK(strstr(creator_upsert_sql(2), "?14), (?15, ") != NULL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(text_array_quotes),
        YW_TEST_ENTRY(chunk_sizes),
        YW_TEST_ENTRY(upsert_sql),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
