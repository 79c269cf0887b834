/*
 * store_open.c — the database file at open: the writer's connection checked (a foreign,
 * corrupt or newer file is refused and left untouched), put in WAL mode with full fsync,
 * migrated, foreign keys on; the readers' read-only connections. See store.h; what the
 * store's files share is in store_internal.h.
 */
#include "common/store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/errmsg.h"
#include "common/sql.h"

/**
 * A negative errno for a failed SQLite call on `db` (which may be NULL). The OS error is
 * only trusted for the codes that come from the OS; SQLite keeps the last one around.
 */
static int yw__errno(sqlite3 *db, int rc)
{
    int primary = yw__store_primary(rc);
    if (db != NULL && (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR)) {
        int sys = sqlite3_system_errno(db);
        if (sys > 0) {
            return -sys;
        }
    }
    switch (primary) {
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_NOTADB:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/** Reads one integer from a one-row query such as "PRAGMA user_version". */
static int yw__query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return rc;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(stmt, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(stmt);
    return rc;
}

/** Fails with the path, what failed and SQLite's message. */
static int yw__open_fail(sqlite3 *db, int rc, const char *path, const char *what, char *err,
                         size_t errlen)
{
    int e = yw__errno(db, rc);
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (yw__store_primary(rc) == SQLITE_CANTOPEN && e != -ENOENT) {
        yw_errmsg_printf(err, errlen, "%s: %s: %s (%s)", path, what, msg, strerror(-e));
    } else {
        yw_errmsg_printf(err, errlen, "%s: %s: %s", path, what, msg);
    }
    return e;
}

/**
 * Refuses a file that is not a SQLite database or fails `PRAGMA quick_check`. Runs
 * before anything writes, so a foreign file is left exactly as it was.
 */
static int yw__check_integrity(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int version = 0;
    int rc = yw__query_int(db, "PRAGMA user_version", &version);
    if (yw__store_primary(rc) == SQLITE_NOTADB) {
        yw_errmsg_printf(err, errlen, "%s: file is not a database", path);
        return -EINVAL;
    }
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "cannot read the database", err, errlen);
    }
    sqlite3_stmt *stmt = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "quick_check", err, errlen);
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(stmt, 0);
        if (res == NULL || strcmp(res, "ok") != 0) {
            yw_errmsg_printf(err, errlen, "%s: database is corrupt: %s", path,
                             res ? res : "(null)");
            sqlite3_finalize(stmt);
            return -EIO;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        int e = yw__store_primary(rc) == SQLITE_CORRUPT || yw__store_primary(rc) == SQLITE_NOTADB
                    ? -EIO
                    : yw__errno(db, rc);
        yw_errmsg_printf(err, errlen, "%s: database is corrupt: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return e;
    }
    sqlite3_finalize(stmt);
    return 0;
}

/**
 * WAL, full fsync on commit, and a busy timeout for the writer. A shipped database
 * (`shipped`: yw_store_config_t.ship) is not synced at all: the copy its ship function
 * made is the durable one, and this file a view rebuilt from it after a crash.
 */
static int yw__configure_writer(sqlite3 *db, const char *path, int shipped, char *err,
                                size_t errlen)
{
    int rc = sqlite3_busy_timeout(db, YW__BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "busy_timeout", err, errlen);
    }
    sqlite3_stmt *stmt = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return yw__open_fail(db, rc, path, "journal_mode=WAL", err, errlen);
    }
    const char *mode = (const char *)sqlite3_column_text(stmt, 0);
    if (mode == NULL || strcasecmp(mode, "wal") != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot use WAL (journal_mode is %s)", path,
                         mode ? mode : "(null)");
        sqlite3_finalize(stmt);
        return -ENOTSUP;
    }
    sqlite3_finalize(stmt);
    const char *sync = shipped ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=FULL";
    rc = sqlite3_exec(db, sync, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, sync, err, errlen);
    }
    return 0;
}

/** Turns foreign keys on, after the migrations (which run with them off). */
static int yw__enable_foreign_keys(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "PRAGMA foreign_keys=ON", err, errlen);
    }
    /* foreign_keys=ON is a no-op in a build without them: say so rather than ignore. */
    int fk = 0;
    rc = yw__query_int(db, "PRAGMA foreign_keys", &fk);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, path, "PRAGMA foreign_keys", err, errlen);
    }
    if (fk != 1) {
        yw_errmsg_printf(err, errlen, "%s: this SQLite does not enforce foreign keys", path);
        return -ENOTSUP;
    }
    return 0;
}

/**
 * Fails when a migration left rows that break a foreign key: migrations run with
 * foreign keys off (so that a table can be rebuilt, as SQLite's ALTER TABLE docs
 * describe), and this check before COMMIT stands in for them.
 */
static int yw__foreign_key_check(sqlite3 *db, const char *path, int version, char *err,
                                 size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    if (rc == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(stmt, 0);
        const char *parent = (const char *)sqlite3_column_text(stmt, 2);
        yw_errmsg_printf(err, errlen,
                         "%s: migration %d: a row of table %s references a missing row of table %s",
                         path, version, table ? table : "?", parent ? parent : "?");
        sqlite3_finalize(stmt);
        return -EINVAL;
    }
    if (rc != SQLITE_DONE) {
        int e = yw__open_fail(db, rc, path, "PRAGMA foreign_key_check", err, errlen);
        sqlite3_finalize(stmt);
        return e;
    }
    sqlite3_finalize(stmt);
    return 0;
}

/**
 * Applies every migration newer than the file's user_version, each in its own
 * transaction that also sets user_version. The version is read again inside the
 * transaction: another process opening the same file may have migrated it meanwhile.
 */
static int yw__migrate(sqlite3 *db, const yw_store_config_t *cfg, int *version, char *err,
                       size_t errlen)
{
    int current = 0;
    int rc = yw__query_int(db, "PRAGMA user_version", &current);
    if (rc != SQLITE_OK) {
        return yw__open_fail(db, rc, cfg->path, "PRAGMA user_version", err, errlen);
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        const yw_migration_t *m = &cfg->migrations[i];
        if (m->version <= current) {
            continue;
        }
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            return yw__open_fail(db, rc, cfg->path, "begin migration", err, errlen);
        }
        rc = yw__query_int(db, "PRAGMA user_version", &current);
        if (rc != SQLITE_OK) {
            int e = yw__open_fail(db, rc, cfg->path, "PRAGMA user_version", err, errlen);
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return e;
        }
        if (m->version <= current) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                int e = yw__open_fail(db, rc, cfg->path, "commit", err, errlen);
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                return e;
            }
            continue;
        }
        char set_version[64];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version=%d", m->version);
        char what[64];
        rc = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
        snprintf(what, sizeof what, "migration %d", m->version);
        if (rc == SQLITE_OK) {
            int e = yw__foreign_key_check(db, cfg->path, m->version, err, errlen);
            if (e != 0) {
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                return e;
            }
            rc = sqlite3_exec(db, set_version, NULL, NULL, NULL);
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            snprintf(what, sizeof what, "commit of migration %d", m->version);
        }
        if (rc != SQLITE_OK) {
            int e = yw__open_fail(db, rc, cfg->path, what, err, errlen);
            if (!sqlite3_get_autocommit(db)) {
                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            }
            return e;
        }
        current = m->version;
    }
    *version = current;
    return 0;
}

/** Opens the writer connection: checked, configured, migrated. */
int yw__store_open_writer(yw_store_t *store, const yw_store_config_t *cfg, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        cfg->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = yw__open_fail(db, rc, cfg->path, "cannot open", err, errlen);
        sqlite3_close_v2(db);
        return e;
    }
    store->writer.backend = YW_SQL_SQLITE;
    store->writer.db = db;
    (void)sqlite3_extended_result_codes(db, 1);
    /* SQLite falls back to read-only when it may not write the file; we need to write. */
    if (sqlite3_db_readonly(db, "main") != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot open for writing (read-only file or directory)",
                         cfg->path);
        return -EACCES;
    }
    int e = yw__check_integrity(db, cfg->path, err, errlen);
    if (e == 0) {
        e = yw__configure_writer(db, cfg->path, cfg->ship != NULL, err, errlen);
    }
    if (e == 0) {
        e = yw__migrate(db, cfg, &store->schema_version, err, errlen);
    }
    if (e == 0) {
        e = yw__enable_foreign_keys(db, cfg->path, err, errlen);
    }
    if (e == 0 && store->schema_version > (int)cfg->n_migrations) {
        yw_errmsg_printf(err, errlen,
                         "%s: schema version %d is newer than this build knows (%zu); refusing to "
                         "open it",
                         cfg->path, store->schema_version, cfg->n_migrations);
        e = -ENOTSUP;
    }
    return e;
}

int yw__store_open_reader(yw_store_conn_t *conn, const char *path, char *err, size_t errlen)
{
    conn->backend = YW_SQL_SQLITE;
    int rc = sqlite3_open_v2(path, &conn->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = yw__open_fail(conn->db, rc, path, "cannot open reader", err, errlen);
        sqlite3_close_v2(conn->db);
        conn->db = NULL;
        return e;
    }
    (void)sqlite3_extended_result_codes(conn->db, 1);
    rc = sqlite3_busy_timeout(conn->db, YW__BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        return yw__open_fail(conn->db, rc, path, "busy_timeout", err, errlen);
    }
    return 0;
}

int yw_store_open_file(const yw_store_config_t *cfg, sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    yw_store_t *tmp = calloc(1, sizeof *tmp);
    if (tmp == NULL) {
        yw_errmsg_printf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int e = yw__store_open_writer(tmp, cfg, err, errlen);
    if (e == 0) {
        *out = tmp->writer.db;
    } else if (tmp->writer.db != NULL) {
        sqlite3_close_v2(tmp->writer.db);
    }
    free(tmp);
    return e;
}
