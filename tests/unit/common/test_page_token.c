/*
 * test_page_token.c — unit tests of common/page_token.c: page sizes, the page key file,
 * and tokens that round-trip, are bound to their query, carry only what they may, and
 * refuse every edit.
 */
#include "common/page_token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test.h"

static char err[512];

static void key_of(yw_page_key_t *k, uint8_t fill)
{
    memset(k->bytes, fill, sizeof k->bytes);
}

static void query_of(yw_page_query_t *q, const char *category, int64_t min)
{
    yw_page_query_init(q, "ListThings", "category and min_things");
    yw_page_query_add_str(q, category);
    yw_page_query_add_int(q, min);
}

YW_TEST(page_size_default_and_clamp)
{
    YW_CHECK_INT(yw_page_size(0, 50, 1000), ==, 50);
    YW_CHECK_INT(yw_page_size(1, 50, 1000), ==, 1);
    YW_CHECK_INT(yw_page_size(1000, 50, 1000), ==, 1000);
    YW_CHECK_INT(yw_page_size(1001, 50, 1000), ==, 1000);
    YW_CHECK_INT(yw_page_size(INT32_MAX, 50, 1000), ==, 1000);
}

YW_TEST(round_trip)
{
    yw_page_key_t k;
    yw_page_query_t q;
    yw_page_cursor_t cur;
    char tok[YW_PAGE_TOKEN_BUFSZ], id[YW_PAGE_KEY_MAX + 1];
    key_of(&k, 7);
    query_of(&q, "food", 10);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 42, "c-07", tok), ==, 0);
    /* base64url without padding: safe in a URL, a JSON string, a shell word. */
    YW_CHECK(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
             strlen(tok));
    YW_CHECK_INT(yw_page_token_decode(&k, &q, tok, 100, &cur, err, sizeof err), ==, 0);
    YW_CHECK_INT(cur.n, ==, 42);
    YW_CHECK_STR(cur.key, "c-07");

    /* The longest key, the largest number, and no key at all. */
    memset(id, 'Z', YW_PAGE_KEY_MAX);
    id[YW_PAGE_KEY_MAX] = '\0';
    YW_CHECK_INT(yw_page_token_encode(&k, &q, UINT64_MAX, id, tok), ==, 0);
    YW_CHECK(strlen(tok) < YW_PAGE_TOKEN_BUFSZ);
    YW_CHECK_INT(yw_page_token_decode(&k, &q, tok, UINT64_MAX, &cur, err, sizeof err), ==, 0);
    YW_CHECK(cur.n == UINT64_MAX);
    YW_CHECK_STR(cur.key, id);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 3, NULL, tok), ==, 0);
    YW_CHECK_INT(yw_page_token_decode(&k, &q, tok, 3, &cur, err, sizeof err), ==, 0);
    YW_CHECK_INT(cur.n, ==, 3);
    YW_CHECK_STR(cur.key, "");

    /* Empty and NULL: the first page. */
    strcpy(cur.key, "junk");
    cur.n = 9;
    YW_CHECK_INT(yw_page_token_decode(&k, &q, "", 0, &cur, err, sizeof err), ==, 0);
    YW_CHECK_INT(cur.n, ==, 0);
    YW_CHECK_STR(cur.key, "");
    YW_CHECK_INT(yw_page_token_decode(&k, &q, NULL, 0, &cur, err, sizeof err), ==, 0);

    /* A key too long for a token. */
    char longer[YW_PAGE_KEY_MAX + 2];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 0, longer, tok), ==, -EINVAL);
}

YW_TEST(bound_to_its_query)
{
    yw_page_key_t k;
    yw_page_query_t q, other;
    yw_page_cursor_t cur;
    char tok[YW_PAGE_TOKEN_BUFSZ];
    key_of(&k, 1);
    query_of(&q, "food", 10);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 5, "c-1", tok), ==, 0);
    static const char want[] = "page_token: issued for another query; category and min_things "
                               "must stay the same across pages";
    query_of(&other, "food", 11);
    YW_CHECK_INT(yw_page_token_decode(&k, &other, tok, 10, &cur, err, sizeof err), ==, -EINVAL);
    YW_CHECK_STR(err, want);
    YW_CHECK_STR(cur.key, "");
    query_of(&other, "travel", 10);
    YW_CHECK_INT(yw_page_token_decode(&k, &other, tok, 10, &cur, err, sizeof err), ==, -EINVAL);
    YW_CHECK_STR(err, want);
    /* Another method with the same filters. */
    yw_page_query_init(&other, "ListOthers", "category and min_things");
    yw_page_query_add_str(&other, "food");
    yw_page_query_add_int(&other, 10);
    YW_CHECK_INT(yw_page_token_decode(&k, &other, tok, 10, &cur, err, sizeof err), ==, -EINVAL);
    /* Filters are delimited: moving a byte from one to the next is another query. */
    yw_page_query_t a, b;
    yw_page_query_init(&a, "M", "x and y");
    yw_page_query_add_str(&a, "ab");
    yw_page_query_add_str(&a, "");
    yw_page_query_init(&b, "M", "x and y");
    yw_page_query_add_str(&b, "a");
    yw_page_query_add_str(&b, "b");
    YW_CHECK_INT(yw_page_token_encode(&k, &a, 0, "k", tok), ==, 0);
    YW_CHECK_INT(yw_page_token_decode(&k, &b, tok, 0, &cur, err, sizeof err), ==, -EINVAL);
    YW_CHECK_INT(yw_page_token_decode(&k, &a, tok, 0, &cur, err, sizeof err), ==, 0);
}

YW_TEST(query_overflow_makes_no_token)
{
    yw_page_key_t k;
    yw_page_query_t q;
    yw_page_cursor_t cur;
    char tok[YW_PAGE_TOKEN_BUFSZ], big[YW_PAGE_QUERY_MAX + 1];
    key_of(&k, 1);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    yw_page_query_init(&q, "M", "x");
    yw_page_query_add_str(&q, big);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 0, "k", tok), ==, -EINVAL);
    YW_CHECK_INT(yw_page_token_decode(&k, &q, "AAAA", 0, &cur, err, sizeof err), ==, -EINVAL);
}

YW_TEST(bounds_checked)
{
    yw_page_key_t k;
    yw_page_query_t q;
    yw_page_cursor_t cur;
    char tok[YW_PAGE_TOKEN_BUFSZ];
    key_of(&k, 3);
    query_of(&q, "", 0);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 101, "c", tok), ==, 0);
    YW_CHECK_INT(yw_page_token_decode(&k, &q, tok, 100, &cur, err, sizeof err), ==, -EINVAL);
    YW_CHECK_STR(err, "page_token: its position is out of range for ListThings");
    YW_CHECK_INT(cur.n, ==, 0);
    YW_CHECK_INT(yw_page_token_decode(&k, &q, tok, 101, &cur, err, sizeof err), ==, 0);
}

static void check_refused(const yw_page_key_t *k, const yw_page_query_t *q, const char *tok)
{
    yw_page_cursor_t cur;
    err[0] = '\0';
    YW_CHECK_INT(yw_page_token_decode(k, q, tok, UINT64_MAX, &cur, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strncmp(err, "page_token: not a next_page_token this service issued", 53) == 0);
    YW_CHECK(strstr(err, "ListThings") != NULL);
    YW_CHECK_INT(cur.n, ==, 0);
    YW_CHECK_STR(cur.key, "");
}

YW_TEST(every_edit_is_refused)
{
    yw_page_key_t k;
    yw_page_query_t q;
    char tok[YW_PAGE_TOKEN_BUFSZ], t[YW_PAGE_TOKEN_BUFSZ];
    key_of(&k, 9);
    query_of(&q, "food", 0);
    YW_CHECK_INT(yw_page_token_encode(&k, &q, 12345, "creator-12345", tok), ==, 0);
    size_t n = strlen(tok);
    /* Every character changed in turn, to two others: none of the results is accepted. */
    for (size_t i = 0; i < n; i++) {
        for (int alt = 0; alt < 2; alt++) {
            strcpy(t, tok);
            t[i] = alt == 0 ? (t[i] == 'A' ? 'B' : 'A') : (t[i] == '_' ? '-' : '_');
            check_refused(&k, &q, t);
        }
    }
    /* Cut short, one more character, another key. */
    for (size_t cut = 1; cut < n; cut++) {
        memcpy(t, tok, cut);
        t[cut] = '\0';
        check_refused(&k, &q, t);
    }
    char longer[YW_PAGE_TOKEN_BUFSZ + 1];
    snprintf(longer, sizeof longer, "%sA", tok);
    check_refused(&k, &q, longer);
    yw_page_key_t other;
    key_of(&other, 10);
    check_refused(&other, &q, tok);
}

YW_TEST(garbage_is_refused)
{
    static const char *const bad[] = {
        "not-a-token",
        "AAAA",
        "%%%",
        "Zm9vYmFy",
        "====",
        "Zm9v=",
        "Zm+v",
        " AAAA",
        "AAAA\n",
        /* the format of the FNV-checked tokens before: version 1 */
        "AQAAAAAAAAAAAAAAAGw",
    };
    yw_page_key_t k;
    yw_page_query_t q;
    char longtok[600];
    key_of(&k, 2);
    query_of(&q, "", 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check_refused(&k, &q, bad[i]);
    }
    memset(longtok, 'A', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    check_refused(&k, &q, longtok);
}

YW_TEST(key_file_is_created_once_and_kept)
{
    char dir[] = "/tmp/yw-page-key-XXXXXX";
    YW_CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/page_token.key", dir);
    yw_page_key_t a, b;
    YW_CHECK_INT(yw_page_key_load(path, &a, err, sizeof err), ==, 0);
    struct stat sb;
    YW_CHECK_INT(stat(path, &sb), ==, 0);
    YW_CHECK_INT(sb.st_size, ==, YW_PAGE_KEY_BYTES);
    YW_CHECK_INT(sb.st_mode & 0777, ==, 0600);
    /* Read back, not made again: tokens survive a restart. */
    YW_CHECK_INT(yw_page_key_load(path, &b, err, sizeof err), ==, 0);
    YW_CHECK(memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0);
    /* Random: not all zero, and another file gets another key. */
    yw_page_key_t zero = {{0}};
    YW_CHECK(memcmp(a.bytes, zero.bytes, sizeof a.bytes) != 0);
    YW_CHECK_INT(yw_page_key_random(&b), ==, 0);
    YW_CHECK(memcmp(a.bytes, b.bytes, sizeof a.bytes) != 0);
    /* A file of the wrong size is refused, named, and left alone. */
    int fd = open(path, O_WRONLY | O_APPEND);
    YW_CHECK(fd >= 0);
    YW_CHECK_INT(write(fd, "x", 1), ==, 1);
    close(fd);
    YW_CHECK_INT(yw_page_key_load(path, &b, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, path) != NULL);
    YW_CHECK_INT(stat(path, &sb), ==, 0);
    YW_CHECK_INT(sb.st_size, ==, YW_PAGE_KEY_BYTES + 1);
    /* A directory that is not there: an error naming the file. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/page_token.key", dir);
    YW_CHECK_INT(yw_page_key_load(missing, &b, err, sizeof err), ==, -ENOENT);
    YW_CHECK(strstr(err, "page_token.key") != NULL);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(page_size_default_and_clamp),
        YW_TEST_ENTRY(round_trip),
        YW_TEST_ENTRY(bound_to_its_query),
        YW_TEST_ENTRY(query_overflow_makes_no_token),
        YW_TEST_ENTRY(bounds_checked),
        YW_TEST_ENTRY(every_edit_is_refused),
        YW_TEST_ENTRY(garbage_is_refused),
        YW_TEST_ENTRY(key_file_is_created_once_and_kept),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
