/*
 * test_store_open.c — unit tests of common/store_open.c: migrations applied once and in
 * order, a failing migration or one that breaks a foreign key leaves the previous
 * version, and a newer, foreign or corrupt file is refused and left as it was.
 */
#include "common/store.h"

#include <errno.h>
#include <fcntl.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

/* ---- open and migrations ---------------------------------------------------------- */

YW_TEST(migrations_applied)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'child'"),
                 ==, 1);
    /* WAL stays the file's mode; the WAL file itself is gone after a clean close. */
    YW_CHECK_INT(raw_query_int(f.path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), ==,
                 1);
    fixture_done(&f);
}

YW_TEST(reopen_does_not_rerun_migrations)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 1);
    close_store(&f, store);
    f.closed = 0;
    /* Migration 1 would fail (table exists) and insert a second seed if it ran again. */
    store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    f.closed = 0;
    store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    fixture_done(&f);
}

YW_TEST(failing_migration_leaves_previous_version)
{
    fixture_t f;
    fixture_init(&f);
    static const yw_migration_t bad[] = {
        {1, "CREATE TABLE a(x);"},
        {2, "CREATE TABLE b(x); CREATE TABLE a(x);"},
    };
    yw_store_config_t cfg = {.path = f.path, .migrations = bad, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "migration 2") != NULL);
    YW_CHECK(strstr(err, "already exists") != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'b'"), ==,
                 0);
    fixture_done(&f);
}

YW_TEST(migration_breaking_a_foreign_key_refused)
{
    fixture_t f;
    fixture_init(&f);
    /* Rebuilding a parent table works with foreign keys off; orphans do not pass. */
    static const yw_migration_t steps[] = {
        {1, "CREATE TABLE p(id INTEGER PRIMARY KEY);"
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));"
            "INSERT INTO p VALUES(1); INSERT INTO c VALUES(1, 1);"},
        {2, "CREATE TABLE p_new(id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO p_new(id) SELECT id FROM p; DROP TABLE p;"
            "ALTER TABLE p_new RENAME TO p;"},
        {3, "INSERT INTO c VALUES(2, 999);"},
    };
    yw_store_config_t cfg = {.path = f.path, .migrations = steps, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    if (e != 0) {
        fprintf(stderr, "open: %s\n", err);
    }
    YW_CHECK_INT(e, ==, 0);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM c JOIN p ON p.id = c.p_id"), ==, 1);

    cfg.n_migrations = 3;
    store = NULL;
    e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK_INT(e, ==, -EINVAL);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "migration 3") != NULL);
    YW_CHECK(strstr(err, "table c") != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM c"), ==, 1);
    fixture_done(&f);
}

YW_TEST(newer_schema_refused)
{
    fixture_t f;
    fixture_init(&f);
    raw_exec(f.path, "CREATE TABLE future(x); PRAGMA user_version = 5;");
    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "newer") != NULL);
    YW_CHECK(strstr(err, f.path) != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 5);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'kv'"), ==,
                 0);
    fixture_done(&f);
}

YW_TEST(garbage_file_refused_and_untouched)
{
    fixture_t f;
    fixture_init(&f);
    unsigned char junk[8192];
    srand(42);
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (unsigned char)rand();
    }
    FILE *fp = fopen(f.path, "wb");
    YW_CHECK(fp != NULL);
    YW_CHECK_INT(fwrite(junk, 1, sizeof junk, fp), ==, sizeof junk);
    YW_CHECK_INT(fclose(fp), ==, 0);

    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "file is not a database") != NULL);
    YW_CHECK(strstr(err, f.path) != NULL);

    unsigned char back[sizeof junk + 1];
    fp = fopen(f.path, "rb");
    YW_CHECK(fp != NULL);
    YW_CHECK_INT(fread(back, 1, sizeof back, fp), ==, sizeof junk);
    YW_CHECK_INT(fclose(fp), ==, 0);
    YW_CHECK(memcmp(junk, back, sizeof junk) == 0);
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    YW_CHECK(!file_exists(wal));
    fixture_done(&f);
}

YW_TEST(corrupt_database_refused)
{
    fixture_t f;
    fixture_init(&f);
    raw_exec(f.path,
             "PRAGMA page_size = 4096; CREATE TABLE t(x TEXT);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
             "  INSERT INTO t SELECT printf('%0100d', i) FROM n;"
             "CREATE INDEX t_x ON t(x);");
    /* Scribble over page 3 (an inner page of the table or the index). */
    int fd = open(f.path, O_WRONLY);
    YW_CHECK(fd >= 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    YW_CHECK_INT(pwrite(fd, junk, sizeof junk, (off_t)2 * 4096), ==, sizeof junk);
    YW_CHECK_INT(close(fd), ==, 0);

    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    if (strstr(err, "corrupt") == NULL) {
        fprintf(stderr, "err: %s\n", err);
    }
    YW_CHECK(strstr(err, "corrupt") != NULL);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(migrations_applied),
        YW_TEST_ENTRY(reopen_does_not_rerun_migrations),
        YW_TEST_ENTRY(failing_migration_leaves_previous_version),
        YW_TEST_ENTRY(migration_breaking_a_foreign_key_refused),
        YW_TEST_ENTRY(newer_schema_refused),
        YW_TEST_ENTRY(garbage_file_refused_and_untouched),
        YW_TEST_ENTRY(corrupt_database_refused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
