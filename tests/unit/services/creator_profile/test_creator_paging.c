/*
 * test_creator_paging.c — unit tests of services/creator_profile/creator_paging.c:
 * page sizes, the base64url codec, and page tokens bound to their filters.
 */
#include "services/creator_profile/creator_paging.h"

#include <errno.h>

#include "tests/unit/test.h"

static char err[512];

YW_TEST(page_size_default_and_clamp)
{
    YW_CHECK_INT(creator_page_size(0), ==, 50);
    YW_CHECK_INT(creator_page_size(1), ==, 1);
    YW_CHECK_INT(creator_page_size(50), ==, 50);
    YW_CHECK_INT(creator_page_size(1000), ==, 1000);
    YW_CHECK_INT(creator_page_size(1001), ==, 1000);
    YW_CHECK_INT(creator_page_size(INT32_MAX), ==, 1000);
}

YW_TEST(b64url_rfc4648_vectors)
{
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        uint8_t back[32];
        size_t n = strlen(v[i].in);
        YW_CHECK_INT(creator_b64url_encode((const uint8_t *)v[i].in, n, out, sizeof out), ==,
                     strlen(v[i].out));
        YW_CHECK_STR(out, v[i].out);
        YW_CHECK_INT(creator_b64url_decode(out, strlen(out), back, sizeof back), ==, n);
        YW_CHECK(memcmp(back, v[i].in, n) == 0);
    }
    /* The URL-safe alphabet: 62 and 63 are '-' and '_'. */
    const uint8_t hi[] = {0xfb, 0xff};
    char out[8];
    YW_CHECK_INT(creator_b64url_encode(hi, 2, out, sizeof out), ==, 3);
    YW_CHECK_STR(out, "-_8");
}

YW_TEST(b64url_round_trips_every_byte)
{
    uint8_t in[256], back[256];
    char out[400];
    for (int i = 0; i < 256; i++) {
        in[i] = (uint8_t)(255 - i);
    }
    for (size_t n = 0; n <= sizeof in; n += 1) {
        int len = creator_b64url_encode(in, n, out, sizeof out);
        YW_CHECK(len >= 0);
        YW_CHECK(strspn(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                 (size_t)len);
        YW_CHECK_INT(creator_b64url_decode(out, (size_t)len, back, sizeof back), ==, n);
        YW_CHECK(memcmp(in, back, n) == 0);
    }
}

YW_TEST(b64url_rejects_garbage)
{
    uint8_t out[16];
    char small[4];
    YW_CHECK_INT(creator_b64url_decode("Zm9v=", 5, out, sizeof out), ==, -EINVAL); /* padding */
    YW_CHECK_INT(creator_b64url_decode("Zm+v", 4, out, sizeof out), ==, -EINVAL);  /* '+' */
    YW_CHECK_INT(creator_b64url_decode("%%%", 3, out, sizeof out), ==, -EINVAL);
    YW_CHECK_INT(creator_b64url_decode("Zm9vY", 5, out, sizeof out), ==, -EINVAL); /* length */
    YW_CHECK_INT(creator_b64url_decode("Zh", 2, out, sizeof out), ==, -EINVAL);    /* bits */
    YW_CHECK_INT(creator_b64url_decode("Zm9vYmFy", 8, out, 5), ==, -ENOSPC);
    YW_CHECK_INT(creator_b64url_encode((const uint8_t *)"foo", 3, small, sizeof small), ==,
                 -ENOSPC);
}

YW_TEST(filter_hash_depends_on_every_filter)
{
    uint64_t base = creator_page_filter_hash("food", "CN-31", 10, 100);
    YW_CHECK(base == creator_page_filter_hash("food", "CN-31", 10, 100));
    YW_CHECK(base != creator_page_filter_hash("travel", "CN-31", 10, 100));
    YW_CHECK(base != creator_page_filter_hash("food", "CN-11", 10, 100));
    YW_CHECK(base != creator_page_filter_hash("food", "CN-31", 11, 100));
    YW_CHECK(base != creator_page_filter_hash("food", "CN-31", 10, 0));
    /* Fields are delimited: moving a byte from one to the next changes the hash. */
    YW_CHECK(creator_page_filter_hash("ab", "", 0, 0) != creator_page_filter_hash("a", "b", 0, 0));
    YW_CHECK(creator_page_filter_hash(NULL, NULL, 0, 0) == creator_page_filter_hash("", "", 0, 0));
}

YW_TEST(token_round_trip)
{
    char token[CREATOR_PAGE_TOKEN_BUFSZ], after[CREATOR_ID_MAX + 1];
    char long_id[CREATOR_ID_MAX + 1];
    uint64_t h = creator_page_filter_hash("food", "", 0, 0);
    YW_CHECK_INT(creator_page_token_encode("l-07", h, token), ==, 0);
    YW_CHECK(strchr(token, '=') == NULL && strchr(token, '+') == NULL &&
             strchr(token, '/') == NULL);
    YW_CHECK_INT(creator_page_token_decode(token, h, after, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(after, "l-07");

    memset(long_id, 'Z', CREATOR_ID_MAX);
    long_id[CREATOR_ID_MAX] = '\0';
    YW_CHECK_INT(creator_page_token_encode(long_id, h, token), ==, 0);
    YW_CHECK(strlen(token) < CREATOR_PAGE_TOKEN_BUFSZ);
    YW_CHECK_INT(creator_page_token_decode(token, h, after, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(after, long_id);

    /* Empty: the first page. */
    strcpy(after, "junk");
    YW_CHECK_INT(creator_page_token_decode("", h, after, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(after, "");
    YW_CHECK_INT(creator_page_token_decode(NULL, h, after, err, sizeof err), ==, GRPC_STATUS_OK);

    /* Only valid ids make tokens. */
    YW_CHECK_INT(creator_page_token_encode("bad id", h, token), ==, -EINVAL);
    YW_CHECK_INT(creator_page_token_encode("", h, token), ==, -EINVAL);
}

YW_TEST(token_from_other_filters_is_invalid)
{
    char token[CREATOR_PAGE_TOKEN_BUFSZ], after[CREATOR_ID_MAX + 1];
    uint64_t h = creator_page_filter_hash("food", "", 0, 0);
    uint64_t other = creator_page_filter_hash("food", "", 1, 0);
    YW_CHECK_INT(creator_page_token_encode("l-07", h, token), ==, 0);
    err[0] = '\0';
    YW_CHECK_INT(creator_page_token_decode(token, other, after, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "page_token: was issued for other filters; category, region, "
                      "min_followers and max_followers must stay the same across pages");
    YW_CHECK_STR(after, "");
}

YW_TEST(garbage_tokens_are_invalid)
{
    static const char *const bad[] = {
        "not-a-token",
        "AAAA",
        "%%%",
        "Zm9vYmFy",
        "====",
        /* A well-formed token with a different version byte. */
        "AgAAAAAAAAAAAAAAAGw",
    };
    char after[CREATOR_ID_MAX + 1];
    char longtok[600];
    uint64_t h = creator_page_filter_hash("", "", 0, 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        YW_CHECK_INT(creator_page_token_decode(bad[i], h, after, err, sizeof err), ==,
                     GRPC_STATUS_INVALID_ARGUMENT);
        static const char want[] = "page_token: not a token this service issued; pass the "
                                   "next_page_token of the previous ListCreators response, "
                                   "or empty for the first page";
        YW_CHECK_STR(err, want);
    }
    memset(longtok, 'A', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    YW_CHECK_INT(creator_page_token_decode(longtok, h, after, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
}

YW_TEST(tampered_tokens_are_invalid)
{
    char token[CREATOR_PAGE_TOKEN_BUFSZ], after[CREATOR_ID_MAX + 1];
    uint64_t h = creator_page_filter_hash("", "US-CA", 0, 0);
    YW_CHECK_INT(creator_page_token_encode("creator-12345", h, token), ==, 0);
    size_t n = strlen(token);
    /* Change every character in turn: none of the results is accepted. */
    for (size_t i = 0; i < n; i++) {
        char t[CREATOR_PAGE_TOKEN_BUFSZ];
        strcpy(t, token);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        YW_CHECK_INT(creator_page_token_decode(t, h, after, err, sizeof err), ==,
                     GRPC_STATUS_INVALID_ARGUMENT);
        YW_CHECK(strncmp(err, "page_token: ", 12) == 0);
    }
    /* Cut short. */
    token[n - 2] = '\0';
    YW_CHECK_INT(creator_page_token_decode(token, h, after, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(page_size_default_and_clamp),
        YW_TEST_ENTRY(b64url_rfc4648_vectors),
        YW_TEST_ENTRY(b64url_round_trips_every_byte),
        YW_TEST_ENTRY(b64url_rejects_garbage),
        YW_TEST_ENTRY(filter_hash_depends_on_every_filter),
        YW_TEST_ENTRY(token_round_trip),
        YW_TEST_ENTRY(token_from_other_filters_is_invalid),
        YW_TEST_ENTRY(garbage_tokens_are_invalid),
        YW_TEST_ENTRY(tampered_tokens_are_invalid),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
