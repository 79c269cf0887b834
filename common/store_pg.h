/*
 * store_pg.h — the PostgreSQL backend's pure helpers, kept apart so that they are tested
 * without a server (tests/unit/common/test_store_pg.c): ?N placeholders to $N, SQLSTATE
 * to gRPC status, and a connection URI with its password hidden. The backend itself is
 * store.h's (store_pg.c, store_pg_sql.c; store_pg_internal.h holds what they share).
 */
#ifndef YW_STORE_PG_H
#define YW_STORE_PG_H

#include <stddef.h>

#include <grpc/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Copies `sql` into `out` (`outlen` bytes, at least strlen(sql) + 1: the text keeps its
 * length) with every ?N parameter made $N, except inside '...' strings, "..."
 * identifiers and comments (a lone `?`, PostgreSQL's jsonb operator, is left alone).
 * Sets `*nparams` to the highest N. Returns 0, or -ENOSPC when `out` is too small, or
 * -EINVAL for a ?0 or a ?N past 65535. Not parsed: E'...' strings' backslash escapes
 * and $$...$$ bodies (keep `?` out of those).
 */
int yw_pg_translate(const char *sql, char *out, size_t outlen, int *nparams);

/**
 * The status for a SQLSTATE (5 characters; NULL or "" when libpq gave none: a lost
 * connection): class 23 ALREADY_EXISTS; class 53 RESOURCE_EXHAUSTED; class 08,
 * 57P01/57P02/57P03 (shutting down), 25006 (read-only: a standby), 40001
 * (serialization), 40P01 (deadlock) and none UNAVAILABLE; anything else INTERNAL.
 */
grpc_status_code yw_pg_sqlstate_status(const char *sqlstate);

/**
 * Copies the libpq URI or conninfo `uri` into `out` with its password replaced by
 * "***" (user:password@ in a URI, password= in its query or in a conninfo string), for
 * messages and logs. Truncates to `outlen`.
 */
void yw_pg_redact_uri(const char *uri, char *out, size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
