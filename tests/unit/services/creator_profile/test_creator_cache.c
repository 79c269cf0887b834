/*
 * test_creator_cache.c — unit tests of services/creator_profile/creator_record.c and
 * creator_cache.c: one-allocation records (from arrays and from the joined form) and
 * the creator_id hash table (get, replace, remove, growth).
 */
#include "services/creator_profile/creator_cache.h"

#include <errno.h>

#include "tests/unit/test.h"

static creator_record_t *make(const char *id, const char *joined, int64_t followers)
{
    creator_fields_t f = {
        .creator_id = id,
        .display_name = "name",
        .region = "CN-31",
        .categories = NULL,
        .categories_joined = joined,
        .followers = followers,
        .status = 1,
        .create_seconds = 100,
        .create_nanos = 5,
        .update_seconds = 200,
        .update_nanos = 6,
    };
    creator_record_t *r = creator_record_new(&f);
    YW_CHECK(r != NULL);
    return r;
}

YW_TEST(record_from_array)
{
    char *cats[] = {"food", "travel"};
    creator_fields_t f = {
        .creator_id = "c-1",
        .display_name = "\xe8\x85\xb0\xe5\xb0\xbe",
        .region = "",
        .categories = cats,
        .n_categories = 2,
        .followers = 42,
        .status = 2,
        .create_seconds = 1683356889,
        .create_nanos = 7,
        .update_seconds = 1700000000,
        .update_nanos = 8,
    };
    creator_record_t *r = creator_record_new(&f);
    YW_CHECK(r != NULL);
    cats[0] = "changed"; /* copied, not borrowed */
    YW_CHECK_STR(r->msg.creator_id, "c-1");
    YW_CHECK_STR(r->msg.display_name, "\xe8\x85\xb0\xe5\xb0\xbe");
    YW_CHECK_STR(r->msg.region, "");
    YW_CHECK_INT(r->msg.n_categories, ==, 2);
    YW_CHECK_STR(r->msg.categories[0], "food");
    YW_CHECK_STR(r->msg.categories[1], "travel");
    YW_CHECK_INT(r->msg.followers, ==, 42);
    YW_CHECK_INT(r->msg.status, ==, 2);
    YW_CHECK(r->msg.create_time == &r->create_time);
    YW_CHECK_INT(r->msg.create_time->seconds, ==, 1683356889);
    YW_CHECK_INT(r->msg.create_time->nanos, ==, 7);
    YW_CHECK_INT(r->msg.update_time->seconds, ==, 1700000000);
    YW_CHECK_INT(r->msg.update_time->nanos, ==, 8);
    /* It packs as a message: the reply path uses it as is. */
    uint8_t buf[256];
    size_t n = protobuf_c_message_get_packed_size(&r->msg.base);
    YW_CHECK(n > 0 && n < sizeof buf);
    YW_CHECK_INT(protobuf_c_message_pack(&r->msg.base, buf), ==, n);
    Yaowei__Creator__V1__Creator *back = yaowei__creator__v1__creator__unpack(NULL, n, buf);
    YW_CHECK(back != NULL);
    YW_CHECK_STR(back->categories[1], "travel");
    YW_CHECK_INT(back->update_time->seconds, ==, 1700000000);
    yaowei__creator__v1__creator__free_unpacked(back, NULL);
    creator_record_free(r);
    creator_record_free(NULL);
}

YW_TEST(record_from_joined_categories)
{
    char joined[CREATOR_CATEGORIES_JOINED_MAX];
    char *cats[] = {"a", "bb", "ccc"};
    YW_CHECK_INT(creator_categories_join(cats, 3, joined, sizeof joined), ==, 8);
    YW_CHECK_STR(joined, "a\x1f"
                         "bb\x1f"
                         "ccc");
    creator_record_t *r = make("x", joined, 1);
    YW_CHECK_INT(r->msg.n_categories, ==, 3);
    YW_CHECK_STR(r->msg.categories[0], "a");
    YW_CHECK_STR(r->msg.categories[1], "bb");
    YW_CHECK_STR(r->msg.categories[2], "ccc");
    creator_record_free(r);

    YW_CHECK_INT(creator_categories_join(cats, 0, joined, sizeof joined), ==, 0);
    YW_CHECK_STR(joined, "");
    r = make("y", "", 1);
    YW_CHECK_INT(r->msg.n_categories, ==, 0);
    YW_CHECK(r->msg.categories == NULL);
    creator_record_free(r);

    r = make("z", "only", 1);
    YW_CHECK_INT(r->msg.n_categories, ==, 1);
    YW_CHECK_STR(r->msg.categories[0], "only");
    creator_record_free(r);

    char small[4];
    YW_CHECK_INT(creator_categories_join(cats, 3, small, sizeof small), ==, -ENOSPC);
    YW_CHECK_INT(creator_categories_join(cats, 1, small, 0), ==, -ENOSPC);
}

YW_TEST(cache_get_put_replace_remove)
{
    creator_cache_t c;
    YW_CHECK_INT(creator_cache_init(&c), ==, 0);
    YW_CHECK(creator_cache_get(&c, "a") == NULL);
    creator_cache_put(&c, make("a", "", 1));
    creator_cache_put(&c, make("b", "", 2));
    YW_CHECK_INT(creator_cache_size(&c), ==, 2);
    YW_CHECK_INT(creator_cache_get(&c, "a")->msg.followers, ==, 1);
    YW_CHECK_INT(creator_cache_get(&c, "b")->msg.followers, ==, 2);
    /* Replacing frees the old record (ASan would see a leak otherwise). */
    creator_cache_put(&c, make("a", "", 10));
    YW_CHECK_INT(creator_cache_size(&c), ==, 2);
    YW_CHECK_INT(creator_cache_get(&c, "a")->msg.followers, ==, 10);
    YW_CHECK_INT(creator_cache_remove(&c, "a"), ==, 0);
    YW_CHECK(creator_cache_get(&c, "a") == NULL);
    YW_CHECK_INT(creator_cache_remove(&c, "a"), ==, -ENOENT);
    YW_CHECK_INT(creator_cache_size(&c), ==, 1);
    YW_CHECK(creator_cache_get(&c, "ab") == NULL);
    creator_cache_dispose(&c);
    creator_cache_dispose(&c); /* twice is harmless */
}

YW_TEST(cache_grows_and_keeps_everything)
{
    creator_cache_t c;
    char id[32];
    const int n = 20000;
    YW_CHECK_INT(creator_cache_init(&c), ==, 0);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "creator-%d", i);
        creator_cache_put(&c, make(id, "food", i));
    }
    YW_CHECK_INT(creator_cache_size(&c), ==, n);
    YW_CHECK(c.mask + 1 >= (size_t)n);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "creator-%d", i);
        const creator_record_t *r = creator_cache_get(&c, id);
        YW_CHECK(r != NULL);
        YW_CHECK_INT(r->msg.followers, ==, i);
    }
    for (int i = 0; i < n; i += 2) {
        snprintf(id, sizeof id, "creator-%d", i);
        YW_CHECK_INT(creator_cache_remove(&c, id), ==, 0);
    }
    YW_CHECK_INT(creator_cache_size(&c), ==, n / 2);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "creator-%d", i);
        YW_CHECK((creator_cache_get(&c, id) != NULL) == (i % 2 == 1));
    }
    creator_cache_dispose(&c);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(record_from_array),
        YW_TEST_ENTRY(record_from_joined_categories),
        YW_TEST_ENTRY(cache_get_put_replace_remove),
        YW_TEST_ENTRY(cache_grows_and_keeps_everything),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
