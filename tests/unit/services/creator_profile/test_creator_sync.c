/*
 * test_creator_sync.c — unit tests of services/creator_profile/creator_sync.c: lock keys,
 * sorted distinct note ids, and the reload bookkeeping that keeps a replica's cache in
 * step (one reload per creator at a time, stale results dropped, full reloads that keep
 * what changed meanwhile). The reads are fakes that record what was asked.
 */
#include "services/creator_profile/creator_sync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/test.h"

/* ---- fakes ---- */

typedef struct {
    char asked[16][64]; /* ids of reloads started, in order */
    int n_asked;
    int n_full;
    int refuse; /* non-zero: reloads cannot start */
} fake_t;

static int fake_reload(void *arg, const char *id)
{
    fake_t *f = arg;
    if (f->refuse) {
        return -ESHUTDOWN;
    }
    YW_CHECK(f->n_asked < 16);
    snprintf(f->asked[f->n_asked++], sizeof f->asked[0], "%s", id);
    return 0;
}

static int fake_reload_all(void *arg)
{
    fake_t *f = arg;
    if (f->refuse) {
        return -ESHUTDOWN;
    }
    f->n_full++;
    return 0;
}

/* A record of `id` whose display name tells versions apart. */
static creator_record_t *rec(const char *id, const char *name)
{
    creator_fields_t fields = {
        .creator_id = id,
        .display_name = name,
        .region = "",
        .categories = NULL,
        .categories_joined = "",
        .followers = 1,
        .status = 1,
    };
    creator_record_t *r = creator_record_new(&fields);
    YW_CHECK(r != NULL);
    return r;
}

/* The cached display name of `id`, or "-" when it is not cached. */
static const char *name_of(const creator_cache_t *c, const char *id)
{
    const creator_record_t *r = creator_cache_get(c, id);
    return r != NULL ? r->msg.display_name : "-";
}

typedef struct {
    creator_cache_t cache;
    creator_sync_t sync;
    fake_t fake;
} fixture_t;

static void open_fx(fixture_t *fx)
{
    memset(fx, 0, sizeof *fx);
    YW_CHECK_INT(creator_cache_init(&fx->cache), ==, 0);
    creator_sync_ops_t ops = {fake_reload, fake_reload_all, &fx->fake};
    YW_CHECK_INT(creator_sync_init(&fx->sync, &fx->cache, &ops), ==, 0);
}

static void close_fx(fixture_t *fx)
{
    creator_sync_dispose(&fx->sync);
    creator_cache_dispose(&fx->cache);
}

/* ---- names ---- */

YW_TEST(lock_key)
{
    char buf[CREATOR_LOCK_KEY_MAX];
    YW_CHECK_INT(creator_lock_key(CREATOR_LOCK_REQUEST, "r-1", buf, sizeof buf), ==, 19);
    YW_CHECK_STR(buf, "creator-request:r-1");
    char id[129];
    memset(id, 'n', 128);
    id[128] = '\0';
    YW_CHECK(creator_lock_key(CREATOR_LOCK_REQUEST, id, buf, sizeof buf) > 0);
    YW_CHECK_INT(creator_lock_key("abc", "de", buf, 5), ==, -ENOSPC);
    YW_CHECK_INT(creator_lock_key("abc", "d", buf, 5), ==, 4);
}

YW_TEST(sort_unique)
{
    const char *ids[] = {"n2", "n1", "n2", "N3", "n1", "n10"};
    size_t n = creator_sort_unique(ids, 6);
    YW_CHECK_INT(n, ==, 4);
    YW_CHECK_STR(ids[0], "N3"); /* bytes: 'N' < 'n' */
    YW_CHECK_STR(ids[1], "n1");
    YW_CHECK_STR(ids[2], "n10");
    YW_CHECK_STR(ids[3], "n2");
    YW_CHECK_INT(creator_sort_unique(ids, 0), ==, 0);
}

/* ---- notification payloads ---- */

YW_TEST(payload_round_trip)
{
    char buf[CREATOR_PAYLOAD_MAX];
    creator_notice_t n;
    YW_CHECK(creator_notify_payload("c-1", "0a1b", 0, 1700000000, 5, buf, sizeof buf) > 0);
    YW_CHECK_STR(buf, "c-1 0a1b:1700000000.5");
    YW_CHECK_INT(creator_notify_parse(buf, &n), ==, 0);
    YW_CHECK_STR(n.id, "c-1");
    YW_CHECK_STR(n.replica, "0a1b");
    YW_CHECK(!n.deleted && n.seconds == 1700000000 && n.nanos == 5);
    YW_CHECK(creator_notify_payload("c_2", "ff", 1, 0, 0, buf, sizeof buf) > 0);
    YW_CHECK_STR(buf, "c_2 ff:deleted");
    YW_CHECK_INT(creator_notify_parse(buf, &n), ==, 0);
    YW_CHECK(n.deleted && strcmp(n.id, "c_2") == 0 && strcmp(n.replica, "ff") == 0);
    /* No replica: the id alone, as before the token. */
    YW_CHECK_INT(creator_notify_payload("c3", NULL, 0, 9, 9, buf, sizeof buf), ==, 2);
    YW_CHECK_STR(buf, "c3");
    YW_CHECK_INT(creator_notify_parse("c3", &n), ==, 0);
    YW_CHECK(strcmp(n.id, "c3") == 0 && n.replica[0] == '\0');
    YW_CHECK_INT(creator_notify_payload("c3", "ab", 0, 1, 2, buf, 6), ==, -ENOSPC);
}

YW_TEST(payload_malformed)
{
    creator_notice_t n;
    static const char *const bad[] = {
        "c1 ",        "c1 ab",         "c1 ab:",    "c1 :1.2",    "c1 AB:1.2",
        "c1 ab:1",    "c1 ab:1.",      "c1 ab:x.1", "c1 ab:1.2x", "c1 ab:1.1000000000",
        "c1 ab:1.-1", "c1 ab:deleted!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        YW_CHECK_INT(creator_notify_parse(bad[i], &n), ==, -EINVAL);
        YW_CHECK_STR(n.id, "c1"); /* still a change of c1 */
        YW_CHECK_STR(n.replica, "");
    }
    YW_CHECK_INT(creator_notify_parse("", &n), ==, -EINVAL);
    YW_CHECK_INT(creator_notify_parse(" ab:1.2", &n), ==, -EINVAL);
}

/* A record of `id` with update_time (s, ns). */
static creator_record_t *rec_at(const char *id, const char *name, int64_t s, int32_t ns)
{
    creator_record_t *r = rec(id, name);
    r->update_time.seconds = s;
    r->update_time.nanos = ns;
    return r;
}

YW_TEST(own_notification_skipped_when_held)
{
    fixture_t fx;
    open_fx(&fx);
    /* Our write of c1 at (10, 1), applied and read again (as creator_sync_local does). */
    creator_sync_local(&fx.sync, "c1", rec_at("c1", "v1", 10, 1));
    YW_CHECK_INT(fx.fake.n_asked, ==, 1);
    creator_sync_notified(&fx.sync, "c1 me:10.1", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 1); /* not read a third time */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec_at("c1", "v1", 10, 1));
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    /* Another replica's write with the same time: read. */
    creator_sync_notified(&fx.sync, "c1 other:10.1", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 2);
    creator_sync_reloaded(&fx.sync, "c1", 1, rec_at("c1", "v2", 11, 0));
    /* Ours, but the cache holds something else (our done callback has not run): read. */
    creator_sync_notified(&fx.sync, "c1 me:12.0", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 3);
    creator_sync_reloaded(&fx.sync, "c1", 1, rec_at("c1", "v3", 12, 0));
    /* Without a token: read. */
    creator_sync_notified(&fx.sync, "c1", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 4);
    YW_CHECK_STR(fx.fake.asked[3], "c1");
    creator_sync_reloaded(&fx.sync, "c1", 1, rec_at("c1", "v3", 12, 0));
    /* Our delete: skipped once the cache holds no c1, read while it still does. */
    creator_sync_notified(&fx.sync, "c1 me:deleted", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 5);
    creator_sync_reloaded(&fx.sync, "c1", 1, NULL);
    creator_sync_notified(&fx.sync, "c1 me:deleted", "me");
    YW_CHECK_INT(fx.fake.n_asked, ==, 5);
    /* A payload that names no creator: a full reload later. */
    YW_CHECK(!fx.sync.failed);
    creator_sync_notified(&fx.sync, "", "me");
    YW_CHECK(fx.sync.failed);
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

/* ---- one creator ---- */

YW_TEST(notification_reloads_and_applies)
{
    fixture_t fx;
    open_fx(&fx);
    creator_sync_changed(&fx.sync, "c1");
    YW_CHECK_INT(fx.fake.n_asked, ==, 1);
    YW_CHECK_STR(fx.fake.asked[0], "c1");
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "v1"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v1");
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    /* Gone in the database: removed from the cache. */
    creator_sync_changed(&fx.sync, "c1");
    creator_sync_reloaded(&fx.sync, "c1", 1, NULL);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "-");
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(notifications_during_a_reload_coalesce)
{
    fixture_t fx;
    open_fx(&fx);
    creator_sync_changed(&fx.sync, "c1");
    creator_sync_changed(&fx.sync, "c1");
    creator_sync_changed(&fx.sync, "c1");
    YW_CHECK_INT(fx.fake.n_asked, ==, 1); /* one at a time */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "v1"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v1"); /* applied: nothing newer was applied */
    YW_CHECK_INT(fx.fake.n_asked, ==, 2);         /* and read once more */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "v2"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v2");
    YW_CHECK_INT(fx.fake.n_asked, ==, 2);
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(local_write_drops_an_older_reload)
{
    fixture_t fx;
    open_fx(&fx);
    creator_sync_changed(&fx.sync, "c1"); /* a reload that began before our write */
    creator_sync_local(&fx.sync, "c1", rec("c1", "mine"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "mine"); /* read-your-writes, at once */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "older"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "mine"); /* the older read is dropped */
    YW_CHECK_INT(fx.fake.n_asked, ==, 2);           /* and the creator read again */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "newest"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "newest");
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(local_write_reads_again)
{
    fixture_t fx;
    open_fx(&fx);
    /* A done callback late after another replica's newer write was reloaded. */
    creator_sync_local(&fx.sync, "c1", rec("c1", "late"));
    YW_CHECK_INT(fx.fake.n_asked, ==, 1);
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "theirs"));
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "theirs");
    /* A local delete. */
    creator_sync_local(&fx.sync, "c1", NULL);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "-");
    creator_sync_reloaded(&fx.sync, "c1", 1, NULL);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "-");
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(failed_reload_is_flagged)
{
    fixture_t fx;
    open_fx(&fx);
    creator_cache_put(&fx.cache, rec("c1", "v1"));
    creator_sync_changed(&fx.sync, "c1");
    creator_sync_reloaded(&fx.sync, "c1", 0, NULL);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v1"); /* kept */
    YW_CHECK(fx.sync.failed);
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    /* A reload that cannot start is flagged the same way. */
    fx.sync.failed = 0;
    fx.fake.refuse = 1;
    creator_sync_changed(&fx.sync, "c2");
    YW_CHECK(fx.sync.failed);
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(many_creators)
{
    fixture_t fx;
    open_fx(&fx);
    char id[32];
    fx.fake.refuse = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "c%d", i);
        fx.fake.n_asked = 0; /* the fake keeps 16; the table must hold 500 */
        creator_sync_changed(&fx.sync, id);
    }
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 500);
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "c%d", i);
        creator_sync_reloaded(&fx.sync, id, 1, rec(id, "v"));
    }
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    YW_CHECK_INT(creator_cache_size(&fx.cache), ==, 500);
    close_fx(&fx);
}

/* ---- every creator ---- */

YW_TEST(full_reload_replaces_the_cache)
{
    fixture_t fx;
    open_fx(&fx);
    creator_cache_put(&fx.cache, rec("gone", "v1"));
    creator_cache_put(&fx.cache, rec("c1", "v1"));
    creator_sync_changed_all(&fx.sync);
    creator_sync_changed_all(&fx.sync); /* coalesced into one more */
    YW_CHECK_INT(fx.fake.n_full, ==, 1);
    creator_cache_t fresh;
    YW_CHECK_INT(creator_cache_init(&fresh), ==, 0);
    creator_cache_put(&fresh, rec("c1", "v2"));
    creator_cache_put(&fresh, rec("c2", "v1"));
    creator_sync_reloaded_all(&fx.sync, 1, &fresh);
    creator_cache_dispose(&fresh);
    YW_CHECK_STR(name_of(&fx.cache, "gone"), "-");
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v2");
    YW_CHECK_STR(name_of(&fx.cache, "c2"), "v1");
    YW_CHECK_INT(fx.fake.n_full, ==, 2); /* the second one, asked meanwhile */
    close_fx(&fx);
}

YW_TEST(full_reload_keeps_what_changed_meanwhile)
{
    fixture_t fx;
    open_fx(&fx);
    creator_sync_changed(&fx.sync, "old"); /* began before the full read */
    creator_sync_changed_all(&fx.sync);
    creator_sync_local(&fx.sync, "c1", rec("c1", "mine")); /* during the full read */
    creator_sync_local(&fx.sync, "c3", NULL);              /* a delete during it */
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "mine"));
    creator_sync_reloaded(&fx.sync, "c3", 1, NULL);
    int asked = fx.fake.n_asked;
    creator_cache_t fresh;
    YW_CHECK_INT(creator_cache_init(&fresh), ==, 0);
    creator_cache_put(&fresh, rec("c1", "before-mine"));
    creator_cache_put(&fresh, rec("c3", "before-delete"));
    creator_cache_put(&fresh, rec("old", "full"));
    creator_sync_reloaded_all(&fx.sync, 1, &fresh);
    creator_cache_dispose(&fresh);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "mine");
    YW_CHECK_STR(name_of(&fx.cache, "c3"), "-");
    YW_CHECK_STR(name_of(&fx.cache, "old"), "full");
    /* c1 and c3 are read again; "old" is still in flight and will be. */
    YW_CHECK_INT(fx.fake.n_asked, ==, asked + 2);
    creator_sync_reloaded(&fx.sync, "old", 1, rec("old", "older-than-full"));
    YW_CHECK_STR(name_of(&fx.cache, "old"), "full"); /* dropped */
    YW_CHECK_INT(fx.fake.n_asked, ==, asked + 3);
    creator_sync_reloaded(&fx.sync, "old", 1, rec("old", "new"));
    creator_sync_reloaded(&fx.sync, "c1", 1, rec("c1", "mine"));
    creator_sync_reloaded(&fx.sync, "c3", 1, NULL);
    YW_CHECK_STR(name_of(&fx.cache, "old"), "new");
    YW_CHECK_INT(creator_sync_pending(&fx.sync), ==, 0);
    close_fx(&fx);
}

YW_TEST(failed_full_reload_keeps_the_cache)
{
    fixture_t fx;
    open_fx(&fx);
    creator_cache_put(&fx.cache, rec("c1", "v1"));
    creator_sync_changed_all(&fx.sync);
    creator_cache_t fresh;
    YW_CHECK_INT(creator_cache_init(&fresh), ==, 0);
    creator_sync_reloaded_all(&fx.sync, 0, &fresh);
    creator_cache_dispose(&fresh);
    YW_CHECK_STR(name_of(&fx.cache, "c1"), "v1");
    YW_CHECK(fx.sync.failed);
    close_fx(&fx);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(lock_key),
        YW_TEST_ENTRY(sort_unique),
        YW_TEST_ENTRY(payload_round_trip),
        YW_TEST_ENTRY(payload_malformed),
        YW_TEST_ENTRY(own_notification_skipped_when_held),
        YW_TEST_ENTRY(notification_reloads_and_applies),
        YW_TEST_ENTRY(notifications_during_a_reload_coalesce),
        YW_TEST_ENTRY(local_write_drops_an_older_reload),
        YW_TEST_ENTRY(local_write_reads_again),
        YW_TEST_ENTRY(failed_reload_is_flagged),
        YW_TEST_ENTRY(many_creators),
        YW_TEST_ENTRY(full_reload_replaces_the_cache),
        YW_TEST_ENTRY(full_reload_keeps_what_changed_meanwhile),
        YW_TEST_ENTRY(failed_full_reload_keeps_the_cache),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
