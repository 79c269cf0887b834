/* Unit tests of tools/demo/demo_progress.c: counts, durations, progress lines, modes. */
#include <stdio.h>

#include "tests/unit/test.h"
#include "tools/demo/demo_progress.h"

YW_TEST(counts_get_thousands_separators)
{
    char b[32];
    YW_CHECK_STR(demo_fmt_count(b, sizeof b, 0), "0");
    YW_CHECK_STR(demo_fmt_count(b, sizeof b, 999), "999");
    YW_CHECK_STR(demo_fmt_count(b, sizeof b, 1000), "1,000");
    YW_CHECK_STR(demo_fmt_count(b, sizeof b, 1234567), "1,234,567");
    YW_CHECK_STR(demo_fmt_count(b, sizeof b, UINT64_MAX), "18,446,744,073,709,551,615");
    char small[6];
    YW_CHECK_STR(demo_fmt_count(small, sizeof small, 1234567), "1,234"); /* truncated */
}

YW_TEST(durations_read_naturally)
{
    char b[32];
    YW_CHECK_STR(demo_fmt_duration(b, sizeof b, 0), "0 s");
    YW_CHECK_STR(demo_fmt_duration(b, sizeof b, 17.4), "17 s");
    YW_CHECK_STR(demo_fmt_duration(b, sizeof b, 185), "3 min 05 s");
    YW_CHECK_STR(demo_fmt_duration(b, sizeof b, 3720), "1 h 02 min");
    YW_CHECK_STR(demo_fmt_duration(b, sizeof b, -3), "0 s");
}

YW_TEST(a_line_says_done_total_rate_and_time_left)
{
    char b[200];
    demo_progress_format(b, sizeof b, "exposures", "events", 250000, 1000000, 2.5);
    /* 100,000/s, 750,000 left: 7.5 s, rounded to 8. */
    YW_CHECK_STR(b, "exposures    250,000/1,000,000 events   25%  100,000/s  8 s left");
    demo_progress_format(b, sizeof b, "stats", "rows", 10, 0, 1.0);
    YW_CHECK_STR(b, "stats        10 rows  10/s");
    demo_progress_format(b, sizeof b, "x", "events", 0, 10, 0);
    YW_CHECK(strstr(b, "? left") != NULL);
}

YW_TEST(tty_mode_rewrites_one_line_and_lines_mode_prints_periodically)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    YW_CHECK(f != NULL);
    demo_progress_t p;
    uint64_t t = UINT64_C(1000000000);
    demo_progress_start(&p, f, DEMO_PROGRESS_TTY, "creators", "events", 100, t);
    demo_progress_update(&p, 10, t + 1000);      /* too soon: nothing */
    demo_progress_update(&p, 50, t + 300000000); /* drawn */
    demo_progress_update(&p, 60, t + 400000000); /* too soon again */
    demo_progress_finish(&p, t + 1000000000);
    fclose(f);
    YW_CHECK(strstr(text, "\rcreators     50/100 events") != NULL);
    YW_CHECK(strstr(text, "60/100") == NULL);
    YW_CHECK(strstr(text, "\rcreators     60 events in 1.0 s (60/s)") != NULL);
    YW_CHECK(strchr(text, '\n') == text + len - 1); /* one line, ended at the finish */
    free(text);

    f = open_memstream(&text, &len);
    YW_CHECK(f != NULL);
    demo_progress_start(&p, f, DEMO_PROGRESS_LINES, "refunds", "events", 10, t);
    demo_progress_update(&p, 5, t + 300000000);  /* lines: every 5 s only */
    demo_progress_update(&p, 6, t + 6000000000); /* drawn */
    demo_progress_finish(&p, t + 7000000000);
    fclose(f);
    YW_CHECK(strchr(text, '\r') == NULL);
    YW_CHECK(strstr(text, "refunds      6/10 events") != NULL);
    YW_CHECK(strstr(text, "5/10") == NULL);
    YW_CHECK(strstr(text, "refunds      6 events in 7.0 s (1/s)\n") != NULL);
    free(text);

    f = open_memstream(&text, &len);
    YW_CHECK(f != NULL);
    demo_progress_start(&p, f, DEMO_PROGRESS_OFF, "x", "events", 10, t);
    demo_progress_update(&p, 5, t + 6000000000);
    demo_progress_finish(&p, t + 7000000000);
    fclose(f);
    YW_CHECK_INT(len, ==, 0);
    free(text);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(counts_get_thousands_separators),
        YW_TEST_ENTRY(durations_read_naturally),
        YW_TEST_ENTRY(a_line_says_done_total_rate_and_time_left),
        YW_TEST_ENTRY(tty_mode_rewrites_one_line_and_lines_mode_prints_periodically),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
