/*
 * test_store_pg.c — unit tests of the PostgreSQL store that need no server: ?N to $N,
 * SQLSTATE to status, passwords hidden in URIs, and open refusing a bad config or an
 * unreachable database with the URI named (without its password). Against a real
 * server: test_store_pg_live.c, run by tests/integration/test_store_pg.py.
 */
#include "common/store_pg.h"

#include <errno.h>

#include "common/store.h"
#include "tests/unit/test.h"

YW_TEST(translate_placeholders)
{
    char out[128];
    int n = -1;
    const char *in = "SELECT ?1, '?2 it''s', \"?3\", ?12 -- ?4\n/* ?5 */ data ? 'k', x?2";
    YW_CHECK_INT(yw_pg_translate(in, out, sizeof out, &n), ==, 0);
    YW_CHECK_STR(out, "SELECT $1, '?2 it''s', \"?3\", $12 -- ?4\n/* ?5 */ data ? 'k', x$2");
    YW_CHECK_INT(n, ==, 12);
    YW_CHECK_INT(yw_pg_translate("SELECT 1", out, sizeof out, &n), ==, 0);
    YW_CHECK_INT(n, ==, 0);
    YW_CHECK_INT(yw_pg_translate("SELECT ?0", out, sizeof out, &n), ==, -EINVAL);
    YW_CHECK_INT(yw_pg_translate("SELECT ?99999", out, sizeof out, &n), ==, -EINVAL);
    YW_CHECK_INT(yw_pg_translate("SELECT ?1", out, 9, &n), ==, -ENOSPC);
    YW_CHECK_INT(yw_pg_translate("SELECT ?1", out, 10, &n), ==, 0);
    /* An unterminated string or comment: copied as it is, no parameter inside. */
    YW_CHECK_INT(yw_pg_translate("SELECT '?1", out, sizeof out, &n), ==, 0);
    YW_CHECK_STR(out, "SELECT '?1");
    YW_CHECK_INT(yw_pg_translate("SELECT ?1 /* ?2", out, sizeof out, &n), ==, 0);
    YW_CHECK_STR(out, "SELECT $1 /* ?2");
    YW_CHECK_INT(n, ==, 1);
}

YW_TEST(sqlstate_to_status)
{
    YW_CHECK_INT(yw_pg_sqlstate_status("23505"), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_pg_sqlstate_status("23502"), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_pg_sqlstate_status("23503"), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_pg_sqlstate_status("53100"), ==, GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK_INT(yw_pg_sqlstate_status("53300"), ==, GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK_INT(yw_pg_sqlstate_status("08006"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("08001"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("57P01"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("57P02"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("57P03"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("25006"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("40001"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("40P01"), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status(NULL), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status(""), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_pg_sqlstate_status("42601"), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_pg_sqlstate_status("22P02"), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_pg_sqlstate_status("57014"), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_pg_sqlstate_status("25P02"), ==, GRPC_STATUS_INTERNAL);
}

YW_TEST(redact_uri)
{
    char out[128];
    yw_pg_redact_uri("postgresql://u:secret@h:5432/db?sslmode=require", out, sizeof out);
    YW_CHECK_STR(out, "postgresql://u:***@h:5432/db?sslmode=require");
    yw_pg_redact_uri("postgres://u:p%40ss@h1,h2/db", out, sizeof out);
    YW_CHECK_STR(out, "postgres://u:***@h1,h2/db");
    yw_pg_redact_uri("postgresql://u@h/db?password=secret&x=1", out, sizeof out);
    YW_CHECK_STR(out, "postgresql://u@h/db?password=***&x=1");
    yw_pg_redact_uri("host=h password='se cret' dbname=d", out, sizeof out);
    YW_CHECK_STR(out, "host=h password=*** dbname=d");
    yw_pg_redact_uri("password = s3 host=h", out, sizeof out);
    YW_CHECK_STR(out, "password=*** host=h");
    yw_pg_redact_uri("postgresql://h/db", out, sizeof out);
    YW_CHECK_STR(out, "postgresql://h/db");
    yw_pg_redact_uri("postgresql://u:secret@h/db", out, 12);
    YW_CHECK_STR(out, "postgresql:");
    yw_pg_redact_uri(NULL, out, sizeof out);
    YW_CHECK_STR(out, "");
}

static const yw_migration_t pg_migrations[] = {{1, "CREATE TABLE t(k TEXT PRIMARY KEY)"}};

YW_TEST(open_refuses)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = NULL;
    char err[256];
    yw_store_config_t cfg = {.pg_uri = "postgresql://u:secret@127.0.0.1:1/db",
                             .pg_migrations = pg_migrations,
                             .n_pg_migrations = 1,
                             .pg_open_wait_ms = 300,
                             .pg_timeout_ms = 200};
    /* pg_schema is required. */
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "pg_schema") != NULL);
    cfg.pg_schema = "test";
    cfg.pg_pool = -1;
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    cfg.pg_pool = 0;
    /* Nothing listens on port 1: tried until pg_open_wait_ms, then refused. */
    uint64_t t0 = uv_hrtime();
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, -ETIMEDOUT);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    YW_CHECK_INT(ms, >=, 250);
    YW_CHECK_INT(ms, <, 3000);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "postgresql://u:***@127.0.0.1:1/db") != NULL);
    YW_CHECK(strstr(err, "secret") == NULL);
    YW_CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(translate_placeholders),
        YW_TEST_ENTRY(sqlstate_to_status),
        YW_TEST_ENTRY(redact_uri),
        YW_TEST_ENTRY(open_refuses),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
