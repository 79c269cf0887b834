/* Unit tests of common/log.c: every line is one valid JSON object, whatever the bytes. */
#include <jansson.h>

#include "common/log.h"
#include "tests/unit/test.h"

static int saved_stderr = -1;

/* Sends stderr to a temporary file; returns it, to be read back with line(). */
static FILE *capture(void)
{
    FILE *f = tmpfile();
    YW_CHECK(f != NULL);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    YW_CHECK(dup2(fileno(f), STDERR_FILENO) == STDERR_FILENO);
    yw_log_init("test \xff svc", YW_LOG_DEBUG);
    return f;
}

/*
 * Reads every line written since capture(), checks each parses as one JSON object
 * (jansson refuses invalid UTF-8) of at most 2048 bytes, and returns the n-th (its
 * length in *wantlen). stderr is back where it was once it returns, so that a failed
 * check can be read.
 */
static json_t *line(FILE *f, int want, int *count, size_t *wantlen)
{
    fflush(stderr);
    YW_CHECK(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    rewind(f);
    char buf[4096];
    json_t *found = NULL;
    int n = 0;
    while (fgets(buf, sizeof buf, f) != NULL) {
        size_t len = strlen(buf);
        YW_CHECK(len > 0 && buf[len - 1] == '\n');
        YW_CHECK(len <= 2048);
        json_error_t e;
        json_t *j = json_loads(buf, 0, &e);
        if (j == NULL) {
            fprintf(stderr, "not JSON (%s): %s", e.text, buf);
        }
        YW_CHECK(j != NULL && json_is_object(j));
        YW_CHECK(json_string_value(json_object_get(j, "time")) != NULL);
        YW_CHECK(json_string_value(json_object_get(j, "level")) != NULL);
        if (n == want) {
            found = j;
            if (wantlen != NULL) {
                *wantlen = len;
            }
        } else {
            json_decref(j);
        }
        n++;
    }
    if (count != NULL) {
        *count = n;
    }
    return found;
}

static const char *str(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    YW_CHECK(s != NULL);
    return s;
}

YW_TEST(bytes_that_are_not_utf8_become_replacement_characters)
{
    FILE *f = capture();
    yw_log(YW_LOG_INFO, "id %s and %s, kept: %s", "\xff\xfe", "\xed\xa0\x80",
           "\xe8\x85\xb0\xe5\xb0\xbe");
    json_t *j = line(f, 0, NULL, NULL);
    YW_CHECK_STR(str(j, "msg"),
                 "id \xef\xbf\xbd\xef\xbf\xbd and \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd,"
                 " kept: \xe8\x85\xb0\xe5\xb0\xbe");
    YW_CHECK_STR(str(j, "service"), "test \xef\xbf\xbd svc");
    json_decref(j);
}

YW_TEST(quotes_backslashes_and_controls_are_escaped)
{
    FILE *f = capture();
    yw_log_call("/a\"b", "INVALID_ARGUMENT", "x\\y\n\t\r\x01\x1b[31m\x1f\x7f", 1.5, "r\"1");
    json_t *j = line(f, 0, NULL, NULL);
    YW_CHECK_STR(str(j, "method"), "/a\"b");
    YW_CHECK_STR(str(j, "msg"), "x\\y\n\t\r\x01\x1b[31m\x1f\x7f");
    YW_CHECK_STR(str(j, "request_id"), "r\"1");
    YW_CHECK(json_real_value(json_object_get(j, "duration_ms")) == 1.5);
    json_decref(j);
}

/* Whether `s` is `unit` repeated, at least once. */
static int repeats(const char *s, const char *unit)
{
    size_t n = strlen(unit), len = strlen(s);
    if (len == 0 || len % n != 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i += n) {
        if (memcmp(s + i, unit, n) != 0) {
            return 0;
        }
    }
    return 1;
}

/*
 * A value too long for the line is cut to fill it: whole characters and whole escapes
 * only (a split one would not parse), so the line ends less than one of them short of
 * 2048 bytes. A field that no longer fits at all is left out.
 */
YW_TEST(long_values_are_cut_between_characters)
{
    FILE *f = capture();
    yw_log_ctx_t prev = yw_log_swap_ctx((yw_log_ctx_t){NULL, NULL});
    /* Not UTF-8: each byte is written as \ufffd, 6 bytes. */
    char invalid[1100];
    memset(invalid, 0xff, sizeof invalid - 1);
    invalid[sizeof invalid - 1] = '\0';
    yw_log(YW_LOG_WARN, "%s", invalid);
    yw_log_call("/m", "INTERNAL", invalid, 2.0, "req-1");
    /* Three-byte characters, written as they are. */
    char wide[3 * 800 + 1] = "";
    for (int i = 0; i < 800; i++) {
        memcpy(wide + 3 * i, "\xe8\x85\xb0", 4);
    }
    yw_log_call("/m", "INTERNAL", wide, 2.0, "req-2");
    /* Quotes: each is the two bytes \". */
    char quotes[1500];
    memset(quotes, '"', sizeof quotes - 1);
    quotes[sizeof quotes - 1] = '\0';
    yw_log_call("/m", "UNKNOWN", quotes, 2.0, "req-3");
    yw_log_swap_ctx(prev);

    int n = 0;
    size_t len = 0;
    json_decref(line(f, 0, &n, NULL));
    YW_CHECK_INT(n, ==, 4);
    static const struct {
        const char *unit; /* what the cut msg repeats */
        size_t size;      /* bytes it takes in the line */
    } want[] = {{"\xef\xbf\xbd", 6}, {"\xef\xbf\xbd", 6}, {"\xe8\x85\xb0", 3}, {"\"", 2}};
    for (int i = 0; i < 4; i++) {
        json_t *j = line(f, i, NULL, &len);
        YW_CHECK(repeats(str(j, "msg"), want[i].unit));
        YW_CHECK_INT(len, >, 2048 - want[i].size); /* less than one unit short */
        YW_CHECK(json_object_get(j, "request_id") == NULL);
        json_decref(j);
    }
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(bytes_that_are_not_utf8_become_replacement_characters),
        YW_TEST_ENTRY(quotes_backslashes_and_controls_are_escaped),
        YW_TEST_ENTRY(long_values_are_cut_between_characters),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
