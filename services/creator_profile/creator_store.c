/*
 * creator_store.c — schema and store jobs of the creator profile. See creator_store.h.
 *
 * Every function here runs on a store thread with the connection it is given, touches
 * nothing but its job, and reports failures through job->errmsg. The SQL is sql.h's: one
 * text for SQLite and PostgreSQL wherever the two agree (ON CONFLICT, COALESCE(SUM()),
 * `x <> 0` for booleans, JOIN), picked by backend where they do not (row locks, which
 * SQLite's single writer does not need). Statements are cached per connection, keyed by
 * the SQL's address (the SQL strings below are static arrays for that reason), and are
 * done (reset) after each use so that no read stays open between uses. Each statement's
 * parameters keep one type: PostgreSQL prepares with the types of the first binding.
 *
 * Across processes (several replicas on one PostgreSQL), write jobs run READ COMMITTED:
 * every statement sees what committed before it started. What keeps them correct:
 *   - CreateCreator takes yw_sql_job_lock("creator-request:<request_id>") before looking
 *     the request id up, so two creates with one request id take turns and the second
 *     replays the first; two creates of one creator_id race on its primary key, and the
 *     loser's insert fails ALREADY_EXISTS.
 *   - UpdateCreator reads the creator FOR NO KEY UPDATE (PostgreSQL), so concurrent
 *     updates of one creator merge their masks in turn instead of losing one.
 *   - RecordNoteStats locks each new note of the batch (the lock of yw_sql_job_lock(
 *     "creator-note:<note_id>"), all in one statement, in byte order: no deadlock between
 *     two batches) before checking owners: two batches cannot both give one new note a
 *     first owner. A note with rows keeps its owner. It reads the batch's creators FOR
 *     KEY SHARE (PostgreSQL), so a creator cannot be deleted between the check and the
 *     commit. On PostgreSQL a batch takes a few statements whatever its size (see
 *     record_stats_pg() in creator_store_notes.c); on SQLite it goes row by row.
 *   - Every committed write of a creator notifies "yw_creators" with its id and the
 *     writer's token (yw_sql_job_notify, creator_notify_payload()), which the other
 *     replicas' caches reload from, and the writer skips when it holds it (creator_sync.h).
 */
#include "services/creator_profile/creator_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sql.h"
#include "common/utf8.h"
#include "common/vec.h"
#include "services/creator_profile/creator_day.h"
#include "services/creator_profile/creator_store_int.h"
#include "services/creator_profile/creator_sync.h"

/* ---- schema ---- */

static const char schema_v1[] =
    "CREATE TABLE creators ("
    "  creator_id TEXT NOT NULL PRIMARY KEY,"
    "  display_name TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  categories TEXT NOT NULL,"
    "  followers INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  create_time_s INTEGER NOT NULL,"
    "  create_time_ns INTEGER NOT NULL,"
    "  update_time_s INTEGER NOT NULL,"
    "  update_time_ns INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX creators_region ON creators(region, creator_id);"
    "CREATE TABLE creator_categories ("
    "  creator_id TEXT NOT NULL REFERENCES creators(creator_id) ON DELETE CASCADE,"
    "  category TEXT NOT NULL,"
    "  PRIMARY KEY (creator_id, category)"
    ") WITHOUT ROWID;"
    "CREATE INDEX creator_categories_category ON creator_categories(category, creator_id);"
    "CREATE TABLE create_requests ("
    "  request_id TEXT NOT NULL PRIMARY KEY,"
    "  creator_id TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX create_requests_creator ON create_requests(creator_id);"
    "CREATE TABLE note_stats ("
    "  note_id TEXT NOT NULL,"
    "  day INTEGER NOT NULL,"
    "  creator_id TEXT NOT NULL REFERENCES creators(creator_id) ON DELETE CASCADE,"
    "  is_video INTEGER NOT NULL,"
    "  impressions INTEGER NOT NULL,"
    "  views INTEGER NOT NULL,"
    "  video_plays INTEGER NOT NULL,"
    "  avg_watch_ms INTEGER NOT NULL,"
    "  completion_rate REAL NOT NULL,"
    "  likes INTEGER NOT NULL,"
    "  collects INTEGER NOT NULL,"
    "  comments INTEGER NOT NULL,"
    "  shares INTEGER NOT NULL,"
    "  follows_gained INTEGER NOT NULL,"
    "  PRIMARY KEY (note_id, day)"
    ") WITHOUT ROWID;"
    "CREATE INDEX note_stats_creator_day ON note_stats(creator_id, day);";

const yw_migration_t creator_migrations[CREATOR_N_MIGRATIONS] = {
    {1, schema_v1},
};

/*
 * The same tables on PostgreSQL. Every text key and every column a query orders or pages
 * by is COLLATE "C": byte order, as SQLite's BINARY compares, so page tokens and ORDER BY
 * mean the same on both. The table names are the creator profile's own in a database it
 * may share with tier scoring (tier_*).
 */
static const char pg_schema_v1[] =
    "CREATE TABLE creators ("
    "  creator_id TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,"
    "  display_name TEXT NOT NULL,"
    "  region TEXT COLLATE \"C\" NOT NULL,"
    "  categories TEXT NOT NULL,"
    "  followers BIGINT NOT NULL,"
    "  status BIGINT NOT NULL,"
    "  create_time_s BIGINT NOT NULL,"
    "  create_time_ns BIGINT NOT NULL,"
    "  update_time_s BIGINT NOT NULL,"
    "  update_time_ns BIGINT NOT NULL"
    ");"
    "CREATE INDEX creators_region ON creators(region, creator_id);"
    "CREATE TABLE creator_categories ("
    "  creator_id TEXT COLLATE \"C\" NOT NULL"
    "    REFERENCES creators(creator_id) ON DELETE CASCADE,"
    "  category TEXT COLLATE \"C\" NOT NULL,"
    "  PRIMARY KEY (creator_id, category)"
    ");"
    "CREATE INDEX creator_categories_category ON creator_categories(category, creator_id);"
    "CREATE TABLE create_requests ("
    "  request_id TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,"
    "  creator_id TEXT COLLATE \"C\" NOT NULL"
    ");"
    "CREATE INDEX create_requests_creator ON create_requests(creator_id);"
    "CREATE TABLE note_stats ("
    "  note_id TEXT COLLATE \"C\" NOT NULL,"
    "  day BIGINT NOT NULL,"
    "  creator_id TEXT COLLATE \"C\" NOT NULL"
    "    REFERENCES creators(creator_id) ON DELETE CASCADE,"
    "  is_video BIGINT NOT NULL,"
    "  impressions BIGINT NOT NULL,"
    "  views BIGINT NOT NULL,"
    "  video_plays BIGINT NOT NULL,"
    "  avg_watch_ms BIGINT NOT NULL,"
    "  completion_rate DOUBLE PRECISION NOT NULL,"
    "  likes BIGINT NOT NULL,"
    "  collects BIGINT NOT NULL,"
    "  comments BIGINT NOT NULL,"
    "  shares BIGINT NOT NULL,"
    "  follows_gained BIGINT NOT NULL,"
    "  PRIMARY KEY (note_id, day)"
    ");"
    "CREATE INDEX note_stats_creator_day ON note_stats(creator_id, day);";

const yw_migration_t creator_pg_migrations[CREATOR_N_PG_MIGRATIONS] = {
    {1, pg_schema_v1},
};

/* ---- helpers ---- */

#define CREATOR_COLUMNS                                                                            \
    "c.creator_id, c.display_name, c.region, c.categories, c.followers, c.status, "                \
    "c.create_time_s, c.create_time_ns, c.update_time_s, c.update_time_ns"

/* The SQL for this connection's database: `pg` on PostgreSQL, `lite` on SQLite. */
static const char *pick_sql(const yw_store_conn_t *conn, const char *lite, const char *pg)
{
    return yw_sql_backend(conn) == YW_SQL_POSTGRES ? pg : lite;
}

/* A record from a row of CREATOR_COLUMNS starting at column 0; NULL when out of memory. */
static creator_record_t *record_from_row(yw_sql_t *st)
{
    creator_fields_t f = {
        .creator_id = yw_sql_column_text(st, 0, NULL),
        .display_name = yw_sql_column_text(st, 1, NULL),
        .region = yw_sql_column_text(st, 2, NULL),
        .categories = NULL,
        .categories_joined = yw_sql_column_text(st, 3, NULL),
        .followers = yw_sql_column_i64(st, 4),
        .status = (int)yw_sql_column_i64(st, 5),
        .create_seconds = yw_sql_column_i64(st, 6),
        .create_nanos = (int32_t)yw_sql_column_i64(st, 7),
        .update_seconds = yw_sql_column_i64(st, 8),
        .update_nanos = (int32_t)yw_sql_column_i64(st, 9),
    };
    return creator_record_new(&f);
}

static const char sql_select_creator[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c WHERE c.creator_id = ?1";
/* For an update: the row stays locked (against other updates, not readers) until commit. */
static const char sql_select_creator_for_update_pg[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c WHERE c.creator_id = ?1 FOR NO KEY UPDATE";

/*
 * Reads one creator with `sql` (sql_select_creator or a locking variant) into *out (NULL
 * when it does not exist). Returns OK, or a failure reported in job->errmsg.
 */
static grpc_status_code load_creator_with(yw_store_conn_t *conn, yw_store_job_t *job,
                                          const char *sql, const char *id, creator_record_t **out)
{
    grpc_status_code code = GRPC_STATUS_OK;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql, &code);
    *out = NULL;
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, id);
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW) {
        *out = record_from_row(st);
        if (*out == NULL) {
            code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory reading creator");
        }
    } else if (rc != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "read creator");
    }
    yw_sql_done(st);
    return code;
}

static grpc_status_code load_creator(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                     creator_record_t **out)
{
    return load_creator_with(conn, job, sql_select_creator, id, out);
}

static const char sql_creator_exists[] = "SELECT 1 FROM creators WHERE creator_id = ?1";

grpc_status_code creator_store__exists(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                       int *exists)
{
    grpc_status_code code = GRPC_STATUS_OK;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_creator_exists, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, id);
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW || rc == YW_SQL_DONE) {
        *exists = rc == YW_SQL_ROW;
    } else {
        code = yw_sql_job_fail(conn, job, "look up creator");
    }
    yw_sql_done(st);
    return code;
}

grpc_status_code creator_store__step_done(yw_store_conn_t *conn, yw_store_job_t *job, yw_sql_t *st,
                                          const char *what)
{
    grpc_status_code code = GRPC_STATUS_OK;
    if (yw_sql_step(st) != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, what);
    }
    yw_sql_done(st);
    return code;
}

/* Takes the lock named `prefix` + `key` until the write job's transaction ends. */
static grpc_status_code lock_key(yw_store_conn_t *conn, yw_store_job_t *job, const char *prefix,
                                 const char *key)
{
    char name[CREATOR_LOCK_KEY_MAX];
    if (creator_lock_key(prefix, key, name, sizeof name) < 0) {
        char q[300];
        return yw_store_job_failf(job, GRPC_STATUS_INTERNAL, "lock %s%s: name too long", prefix,
                                  yw_quote(key, YW_QUOTE_MAX, q, sizeof q));
    }
    return yw_sql_job_lock(conn, job, name);
}

/*
 * Tells the replicas' caches that creator `id` changed, once this write commits: with the
 * token of `replica` (NULL: none) and the update_time written (`deleted`: none), by which
 * that replica knows its own write (creator_sync.h).
 */
static grpc_status_code notify_creator(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                       const char *replica, int deleted, int64_t seconds,
                                       int32_t nanos)
{
    char payload[CREATOR_PAYLOAD_MAX];
    if (creator_notify_payload(id, replica, deleted, seconds, nanos, payload, sizeof payload) < 0) {
        return yw_store_job_failf(job, GRPC_STATUS_INTERNAL, "notify: payload too long");
    }
    return yw_sql_job_notify(conn, job, CREATOR_CHANNEL, payload);
}

static const char sql_insert_category[] = "INSERT INTO creator_categories(creator_id, category) "
                                          "VALUES (?1, ?2) ON CONFLICT DO NOTHING";
static const char sql_delete_categories[] = "DELETE FROM creator_categories WHERE creator_id = ?1";

/* Makes creator_categories hold exactly `categories` for `id`. */
static grpc_status_code write_categories(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                         char *const *categories, size_t n, int replace)
{
    grpc_status_code code = GRPC_STATUS_OK;
    yw_sql_t *st;
    if (replace) {
        if ((st = yw_sql_job_stmt(conn, job, sql_delete_categories, &code)) == NULL) {
            return code;
        }
        yw_sql_bind_text(st, 1, id);
        if ((code = creator_store__step_done(conn, job, st, "delete categories")) !=
            GRPC_STATUS_OK) {
            return code;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = yw_sql_job_stmt(conn, job, sql_insert_category, &code)) == NULL) {
            return code;
        }
        yw_sql_bind_text(st, 1, id);
        yw_sql_bind_text(st, 2, categories[i]);
        if ((code = creator_store__step_done(conn, job, st, "insert category")) != GRPC_STATUS_OK) {
            return code;
        }
    }
    return GRPC_STATUS_OK;
}

static int stored_status(Yaowei__Creator__V1__CreatorStatus s)
{
    return s == YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_UNSPECIFIED
               ? YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_ACTIVE
               : (int)s;
}

/* ---- CreateCreator ---- */

static const char sql_find_request[] =
    "SELECT creator_id FROM create_requests WHERE request_id = ?1";
static const char sql_insert_request[] =
    "INSERT INTO create_requests(request_id, creator_id) VALUES (?1, ?2)";
static const char sql_insert_creator[] =
    "INSERT INTO creators(creator_id, display_name, region, categories, followers, status, "
    "create_time_s, create_time_ns, update_time_s, update_time_ns) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/*
 * The creator an earlier call with `request_id` created. *found is 0 when the request id
 * is new. The caller holds the request id's lock: an earlier call's commit is visible.
 */
static grpc_status_code replay_request(yw_store_conn_t *conn, creator_create_job_t *j, int *found)
{
    yw_store_job_t *job = &j->job;
    grpc_status_code code = GRPC_STATUS_OK;
    char q1[300], q2[300], prior[CREATOR_ID_MAX + 1];
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_find_request, &code);
    *found = 0;
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, j->request_id);
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW) {
        snprintf(prior, sizeof prior, "%s", yw_sql_column_text(st, 0, NULL));
        *found = 1;
    } else if (rc != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "look up request_id");
    }
    yw_sql_done(st);
    if (code != GRPC_STATUS_OK || !*found) {
        return code;
    }
    if (strcmp(prior, j->creator->creator_id) != 0) {
        return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                  "request_id: already used to create creator %s, not %s",
                                  yw_quote(prior, YW_QUOTE_MAX, q1, sizeof q1),
                                  yw_quote(j->creator->creator_id, YW_QUOTE_MAX, q2, sizeof q2));
    }
    if ((code = load_creator(conn, job, prior, &j->result)) != GRPC_STATUS_OK) {
        return code;
    }
    if (j->result == NULL) {
        /* Request ids are deleted with their creator; this cannot happen. */
        return yw_store_job_failf(job, GRPC_STATUS_INTERNAL,
                                  "request_id: creator %s it created is missing",
                                  yw_quote(prior, YW_QUOTE_MAX, q1, sizeof q1));
    }
    j->replayed = 1;
    return GRPC_STATUS_OK;
}

/* The creator_id is taken: the message of CreateCreator's ALREADY_EXISTS. */
static grpc_status_code creator_taken(yw_store_job_t *job, const char *id)
{
    char q[300];
    return yw_store_job_failf(job, GRPC_STATUS_ALREADY_EXISTS,
                              "creator.creator_id: creator %s already exists",
                              yw_quote(id, YW_QUOTE_MAX, q, sizeof q));
}

grpc_status_code creator_store_create(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_create_job_t *j = (creator_create_job_t *)job;
    const Yaowei__Creator__V1__Creator *c = j->creator;
    grpc_status_code code = GRPC_STATUS_OK;
    char joined[CREATOR_CATEGORIES_JOINED_MAX];
    int has_request = j->request_id != NULL && j->request_id[0] != '\0';
    int found = 0, exists = 0;

    if (has_request) {
        /* Creates with one request id take turns on every replica (AIP-155). */
        if ((code = lock_key(conn, job, CREATOR_LOCK_REQUEST, j->request_id)) != GRPC_STATUS_OK ||
            (code = replay_request(conn, j, &found)) != GRPC_STATUS_OK || found) {
            return code;
        }
    }
    if ((code = creator_store__exists(conn, job, c->creator_id, &exists)) != GRPC_STATUS_OK) {
        return code;
    }
    if (exists) {
        return creator_taken(job, c->creator_id);
    }
    if (creator_categories_join(c->categories, c->n_categories, joined, sizeof joined) < 0) {
        return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                  "creator.categories: too long");
    }
    creator_fields_t f = {
        .creator_id = c->creator_id,
        .display_name = c->display_name,
        .region = c->region,
        .categories = c->categories,
        .n_categories = c->n_categories,
        .followers = c->followers,
        .status = stored_status(c->status),
        .create_seconds = c->create_time != NULL ? c->create_time->seconds : j->now_seconds,
        .create_nanos = c->create_time != NULL ? c->create_time->nanos : j->now_nanos,
        .update_seconds = j->now_seconds,
        .update_nanos = j->now_nanos,
    };
    /* Empty categories list: creator_record_new() reads the array only when non-NULL. */
    static char *const no_categories[1] = {NULL};
    if (f.categories == NULL) {
        f.categories = no_categories;
        f.n_categories = 0;
    }

    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_insert_creator, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_text(&b, f.creator_id);
    yw_sql_bind_next_text(&b, f.display_name);
    yw_sql_bind_next_text(&b, f.region);
    yw_sql_bind_next_text(&b, joined);
    yw_sql_bind_next_i64(&b, f.followers);
    yw_sql_bind_next_i64(&b, f.status);
    yw_sql_bind_next_i64(&b, f.create_seconds);
    yw_sql_bind_next_i64(&b, f.create_nanos);
    yw_sql_bind_next_i64(&b, f.update_seconds);
    yw_sql_bind_next_i64(&b, f.update_nanos);
    if ((code = creator_store__step_done(conn, job, st, "insert creator")) != GRPC_STATUS_OK) {
        /*
         * A constraint: another replica created this creator_id after the check above
         * (its insert committed while ours waited on the key).
         */
        return code == GRPC_STATUS_ALREADY_EXISTS ? creator_taken(job, c->creator_id) : code;
    }
    if ((code = write_categories(conn, job, f.creator_id, f.categories, f.n_categories, 0)) !=
        GRPC_STATUS_OK) {
        return code;
    }
    if (has_request) {
        if ((st = yw_sql_job_stmt(conn, job, sql_insert_request, &code)) == NULL) {
            return code;
        }
        yw_sql_bind_text(st, 1, j->request_id);
        yw_sql_bind_text(st, 2, c->creator_id);
        if ((code = creator_store__step_done(conn, job, st, "insert request_id")) !=
            GRPC_STATUS_OK) {
            return code;
        }
    }
    if ((code = notify_creator(conn, job, c->creator_id, j->replica, 0, f.update_seconds,
                               f.update_nanos)) != GRPC_STATUS_OK) {
        return code;
    }
    j->result = creator_record_new(&f);
    if (j->result == NULL) {
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory building creator");
    }
    return GRPC_STATUS_OK;
}

void creator_create_job_init(creator_create_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_create;
    j->job.done = done;
}

void creator_create_job_dispose(creator_create_job_t *j)
{
    creator_record_free(j->result);
    j->result = NULL;
}

/* ---- UpdateCreator ---- */

static const char sql_update_creator[] =
    "UPDATE creators SET display_name = ?2, region = ?3, categories = ?4, followers = ?5, "
    "status = ?6, update_time_s = ?7, update_time_ns = ?8 WHERE creator_id = ?1";

grpc_status_code creator_store_update(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_update_job_t *j = (creator_update_job_t *)job;
    const Yaowei__Creator__V1__Creator *c = j->creator;
    creator_record_t *cur = NULL;
    grpc_status_code code;
    char joined[CREATOR_CATEGORIES_JOINED_MAX], q[300];

    /* Locked until commit on PostgreSQL: a concurrent update waits and reads ours. */
    code = load_creator_with(conn, job,
                             pick_sql(conn, sql_select_creator, sql_select_creator_for_update_pg),
                             c->creator_id, &cur);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    if (cur == NULL) {
        return yw_store_job_failf(job, GRPC_STATUS_NOT_FOUND,
                                  "creator.creator_id: creator %s not found",
                                  yw_quote(c->creator_id, YW_QUOTE_MAX, q, sizeof q));
    }
    const Yaowei__Creator__V1__Creator *now = &cur->msg;
    int set_cats = (j->mask & CREATOR_FIELD_CATEGORIES) != 0;
    static char *const no_categories[1] = {NULL};
    creator_fields_t f = {
        .creator_id = now->creator_id,
        .display_name =
            (j->mask & CREATOR_FIELD_DISPLAY_NAME) ? c->display_name : now->display_name,
        .region = (j->mask & CREATOR_FIELD_REGION) ? c->region : now->region,
        .categories = set_cats ? c->categories : now->categories,
        .n_categories = set_cats ? c->n_categories : now->n_categories,
        .followers = (j->mask & CREATOR_FIELD_FOLLOWERS) ? c->followers : now->followers,
        .status = (j->mask & CREATOR_FIELD_STATUS) ? stored_status(c->status) : (int)now->status,
        .create_seconds = now->create_time->seconds,
        .create_nanos = now->create_time->nanos,
        .update_seconds = j->now_seconds,
        .update_nanos = j->now_nanos,
    };
    if (f.categories == NULL) {
        f.categories = no_categories;
        f.n_categories = 0;
    }
    if (creator_categories_join(f.categories, f.n_categories, joined, sizeof joined) < 0) {
        creator_record_free(cur);
        return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                  "creator.categories: too long");
    }
    /* `f` borrows strings of `cur` (kept until the new record is built) and of the request. */
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_update_creator, &code);
    if (st == NULL) {
        creator_record_free(cur);
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_text(&b, f.creator_id);
    yw_sql_bind_next_text(&b, f.display_name);
    yw_sql_bind_next_text(&b, f.region);
    yw_sql_bind_next_text(&b, joined);
    yw_sql_bind_next_i64(&b, f.followers);
    yw_sql_bind_next_i64(&b, f.status);
    yw_sql_bind_next_i64(&b, f.update_seconds);
    yw_sql_bind_next_i64(&b, f.update_nanos);
    int step = yw_sql_step(st);
    if (step != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "update creator");
    } else if (yw_sql_changes(st) != 1) {
        /* Deleted meanwhile (the row lock of the read makes this SQLite-impossible). */
        code = yw_store_job_failf(job, GRPC_STATUS_NOT_FOUND,
                                  "creator.creator_id: creator %s not found",
                                  yw_quote(c->creator_id, YW_QUOTE_MAX, q, sizeof q));
    }
    yw_sql_done(st);
    if (code == GRPC_STATUS_OK && set_cats) {
        code = write_categories(conn, job, f.creator_id, f.categories, f.n_categories, 1);
    }
    if (code == GRPC_STATUS_OK) {
        code = notify_creator(conn, job, f.creator_id, j->replica, 0, f.update_seconds,
                              f.update_nanos);
    }
    if (code == GRPC_STATUS_OK) {
        j->result = creator_record_new(&f);
        if (j->result == NULL) {
            code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory building creator");
        }
    }
    creator_record_free(cur);
    return code;
}

void creator_update_job_init(creator_update_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_update;
    j->job.done = done;
}

void creator_update_job_dispose(creator_update_job_t *j)
{
    creator_record_free(j->result);
    j->result = NULL;
}

/* ---- DeleteCreator ---- */

static const char sql_delete_creator[] = "DELETE FROM creators WHERE creator_id = ?1";
static const char sql_delete_note_stats[] = "DELETE FROM note_stats WHERE creator_id = ?1";
static const char sql_delete_requests[] = "DELETE FROM create_requests WHERE creator_id = ?1";

grpc_status_code creator_store_delete(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_delete_job_t *j = (creator_delete_job_t *)job;
    static const struct {
        const char *sql;
        const char *what;
    } steps[] = {
        {sql_delete_creator, "delete creator"},
        {sql_delete_categories, "delete categories"},
        {sql_delete_note_stats, "delete note stats"},
        {sql_delete_requests, "delete request ids"},
    };
    grpc_status_code code = GRPC_STATUS_OK;
    char q[300];
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        yw_sql_t *st = yw_sql_job_stmt(conn, job, steps[i].sql, &code);
        if (st == NULL) {
            return code;
        }
        yw_sql_bind_text(st, 1, j->creator_id);
        int gone = 0;
        if (yw_sql_step(st) != YW_SQL_DONE) {
            code = yw_sql_job_fail(conn, job, steps[i].what);
        } else {
            gone = i == 0 && yw_sql_changes(st) == 0;
        }
        yw_sql_done(st);
        if (code != GRPC_STATUS_OK) {
            return code;
        }
        if (gone) {
            return yw_store_job_failf(job, GRPC_STATUS_NOT_FOUND,
                                      "creator_id: creator %s not found",
                                      yw_quote(j->creator_id, YW_QUOTE_MAX, q, sizeof q));
        }
    }
    return notify_creator(conn, job, j->creator_id, j->replica, 1, 0, 0);
}

void creator_delete_job_init(creator_delete_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_delete;
    j->job.done = done;
}

/* ---- ListCreators ---- */

/*
 * Three plans, each a keyset scan in creator_id order that an index serves: by category
 * (creator_categories_category), by region (creators_region), or over every creator.
 * The followers range is checked on each row. LIMIT is page_size + 1: the extra row
 * tells whether another page follows. Each plan numbers only the parameters it uses
 * (PostgreSQL must know every parameter's type, and a parameter compared with a column
 * first gets the column's type): the filters are bound in the order of
 * this comment's plans — category, region (when the plan has them), then after,
 * min_followers, max_followers, limit.
 */
static const char sql_list_by_category[] =
    "SELECT " CREATOR_COLUMNS " FROM creator_categories cc JOIN creators c "
    "ON c.creator_id = cc.creator_id "
    "WHERE cc.category = ?1 AND (c.region = ?2 OR ?2 = '') AND cc.creator_id > ?3 "
    "AND c.followers >= ?4 AND (c.followers <= ?5 OR ?5 = 0) "
    "ORDER BY cc.creator_id LIMIT ?6";
static const char sql_list_by_region[] = "SELECT " CREATOR_COLUMNS " FROM creators c "
                                         "WHERE c.region = ?1 AND c.creator_id > ?2 "
                                         "AND c.followers >= ?3 AND (c.followers <= ?4 OR ?4 = 0) "
                                         "ORDER BY c.creator_id LIMIT ?5";
static const char sql_list_all[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c "
    "WHERE c.creator_id > ?1 AND c.followers >= ?2 AND (c.followers <= ?3 OR ?3 = 0) "
    "ORDER BY c.creator_id LIMIT ?4";

grpc_status_code creator_store_list(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_list_job_t *j = (creator_list_job_t *)job;
    grpc_status_code code = GRPC_STATUS_OK;
    const char *category = j->category != NULL ? j->category : "";
    const char *region = j->region != NULL ? j->region : "";
    const char *sql = category[0] != '\0' ? sql_list_by_category
                      : region[0] != '\0' ? sql_list_by_region
                                          : sql_list_all;
    int rc;

    j->records = calloc((size_t)j->page_size + 1, sizeof *j->records);
    j->n_records = 0;
    j->more = 0;
    if (j->records == NULL) {
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory listing creators");
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    if (sql == sql_list_by_category) {
        yw_sql_bind_next_text(&b, category);
    }
    if (sql != sql_list_all) {
        yw_sql_bind_next_text(&b, region);
    }
    yw_sql_bind_next_text(&b, j->after);
    yw_sql_bind_next_i64(&b, j->min_followers);
    yw_sql_bind_next_i64(&b, j->max_followers);
    yw_sql_bind_next_i64(&b, (int64_t)j->page_size + 1);
    while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
        if (j->n_records == (size_t)j->page_size) {
            j->more = 1;
            break;
        }
        creator_record_t *r = record_from_row(st);
        if (r == NULL) {
            yw_sql_done(st);
            return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory listing creators");
        }
        j->records[j->n_records++] = r;
    }
    if (rc != YW_SQL_ROW && rc != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "list creators");
    }
    yw_sql_done(st);
    return code;
}

void creator_list_job_init(creator_list_job_t *j,
                           void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_list;
    j->job.done = done;
}

void creator_list_job_dispose(creator_list_job_t *j)
{
    for (size_t i = 0; i < j->n_records; i++) {
        creator_record_free(j->records[i]);
    }
    free(j->records);
    j->records = NULL;
    j->n_records = 0;
}

/* ---- GetCreatorStats / BatchGetCreatorStats ---- */

/*
 * One row per note with rows in [lo, end], where lo reaches back far enough for both
 * the window and views_prev_7d. Columns 0-10 sum the window only; 11-12 are the two
 * 7-day view sums; 13 counts the note's rows in the window (0: the note only has rows
 * in the prev-7d range and is not one of the window's notes).
 * ?1 creator_id, ?2 window start, ?3 lo, ?4 end - 6, ?5 end - 13, ?6 end. Column 9 is a
 * double (SUM of doubles; COALESCE(SUM(), 0.0) is SQLite's TOTAL() in both databases);
 * the other sums are integers (PostgreSQL's SUM of BIGINT is NUMERIC, read as int64 from
 * its text). Notes come in note_id order so that the double sum is the same on both.
 */
static const char sql_note_sums[] =
    "SELECT MAX(CASE WHEN day >= ?2 THEN is_video ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN impressions ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN views ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN video_plays ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN likes ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN collects ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN comments ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN shares ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN follows_gained ELSE 0 END),"
    " COALESCE(SUM(CASE WHEN day >= ?2 AND is_video <> 0 THEN completion_rate * impressions"
    " ELSE 0.0 END), 0.0),"
    " SUM(CASE WHEN day >= ?2 AND is_video <> 0 THEN impressions ELSE 0 END),"
    " SUM(CASE WHEN day >= ?4 THEN views ELSE 0 END),"
    " SUM(CASE WHEN day >= ?5 AND day < ?4 THEN views ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN 1 ELSE 0 END)"
    " FROM note_stats WHERE creator_id = ?1 AND day BETWEEN ?3 AND ?6 GROUP BY note_id ORDER BY "
    "note_id";
static const char sql_active_days[] =
    "SELECT COUNT(DISTINCT day) FROM note_stats WHERE creator_id = ?1 AND day BETWEEN ?2 AND ?3";

/* Saturating addition: sums of many notes stay defined even past int64. */
static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int64_t *v;
    size_t n, cap;
} i64_vec_t;

static int vec_push(i64_vec_t *vec, int64_t x)
{
    int rc = YW_VEC_GROW(vec->v, vec->n, vec->cap, 1, 64);
    if (rc != 0) {
        return rc;
    }
    vec->v[vec->n++] = x;
    return 0;
}

static double median(i64_vec_t *vec)
{
    if (vec->n == 0) {
        return 0.0;
    }
    qsort(vec->v, vec->n, sizeof *vec->v, cmp_i64);
    size_t m = vec->n / 2;
    return vec->n % 2 ? (double)vec->v[m] : ((double)vec->v[m - 1] + (double)vec->v[m]) / 2.0;
}

static grpc_status_code one_creator_stats(yw_store_conn_t *conn, creator_stats_job_t *j,
                                          const char *id, Yaowei__Creator__V1__CreatorStats *out,
                                          i64_vec_t *views)
{
    yw_store_job_t *job = &j->job;
    grpc_status_code code = GRPC_STATUS_OK;
    const int64_t end = j->end_day, start = end - j->window_days + 1;
    const int64_t lo = start < end - 13 ? start : end - 13;
    double weighted_completion = 0.0;
    int64_t video_impressions = 0;
    int rc;

    views->n = 0;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_note_sums, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_text(&b, id);
    yw_sql_bind_next_i64(&b, start);
    yw_sql_bind_next_i64(&b, lo);
    yw_sql_bind_next_i64(&b, end - 6);
    yw_sql_bind_next_i64(&b, end - 13);
    yw_sql_bind_next_i64(&b, end);
    while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
        out->views_last_7d = add_sat(out->views_last_7d, yw_sql_column_i64(st, 11));
        out->views_prev_7d = add_sat(out->views_prev_7d, yw_sql_column_i64(st, 12));
        if (yw_sql_column_i64(st, 13) == 0) {
            continue;
        }
        int64_t note_views = yw_sql_column_i64(st, 2);
        out->notes++;
        out->video_notes += yw_sql_column_i64(st, 0) != 0;
        out->impressions = add_sat(out->impressions, yw_sql_column_i64(st, 1));
        out->views = add_sat(out->views, note_views);
        out->video_plays = add_sat(out->video_plays, yw_sql_column_i64(st, 3));
        out->likes = add_sat(out->likes, yw_sql_column_i64(st, 4));
        out->collects = add_sat(out->collects, yw_sql_column_i64(st, 5));
        out->comments = add_sat(out->comments, yw_sql_column_i64(st, 6));
        out->shares = add_sat(out->shares, yw_sql_column_i64(st, 7));
        out->follower_gain = add_sat(out->follower_gain, yw_sql_column_i64(st, 8));
        weighted_completion += yw_sql_column_f64(st, 9);
        video_impressions = add_sat(video_impressions, yw_sql_column_i64(st, 10));
        if (vec_push(views, note_views) != 0) {
            yw_sql_done(st);
            return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory computing stats");
        }
    }
    if (rc != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "sum note stats");
        yw_sql_done(st);
        return code;
    }
    yw_sql_done(st);

    if ((st = yw_sql_job_stmt(conn, job, sql_active_days, &code)) == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, id);
    yw_sql_bind_i64(st, 2, start);
    yw_sql_bind_i64(st, 3, end);
    if (yw_sql_step(st) == YW_SQL_ROW) {
        out->active_days = (int32_t)yw_sql_column_i64(st, 0);
    } else {
        code = yw_sql_job_fail(conn, job, "count active days");
    }
    yw_sql_done(st);
    if (code != GRPC_STATUS_OK) {
        return code;
    }

    out->engagements =
        add_sat(add_sat(out->likes, out->collects), add_sat(out->comments, out->shares));
    out->engagement_rate =
        out->impressions > 0 ? (double)out->engagements / (double)out->impressions : 0.0;
    out->video_share = out->notes > 0 ? (double)out->video_notes / (double)out->notes : 0.0;
    out->median_views_per_note = median(views);
    /*
     * Impression-weighted mean completion rate of the video rows; 0 when they have no
     * impressions to weigh by.
     */
    out->avg_completion_rate =
        video_impressions > 0 ? weighted_completion / (double)video_impressions : 0.0;
    return GRPC_STATUS_OK;
}

grpc_status_code creator_store_stats(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_stats_job_t *j = (creator_stats_job_t *)job;
    grpc_status_code code = GRPC_STATUS_OK;
    i64_vec_t views = {NULL, 0, 0};

    creator_day_format(j->end_day - j->window_days + 1, j->start_day);
    creator_day_format(j->end_day, j->end_day_str);
    j->n_missing = 0;
    j->stats = calloc(j->n_ids ? j->n_ids : 1, sizeof *j->stats);
    j->missing = calloc(j->n_ids ? j->n_ids : 1, sizeof *j->missing);
    if (j->stats == NULL || j->missing == NULL) {
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory computing stats");
    }
    for (size_t i = 0; i < j->n_ids; i++) {
        Yaowei__Creator__V1__CreatorStats init = YAOWEI__CREATOR__V1__CREATOR_STATS__INIT;
        j->stats[i] = init;
    }
    /* Every id is looked up first, so that NOT_FOUND names all the missing ones. */
    for (size_t i = 0; i < j->n_ids; i++) {
        int exists = 0;
        if ((code = creator_store__exists(conn, job, j->creator_ids[i], &exists)) !=
            GRPC_STATUS_OK) {
            return code;
        }
        if (!exists) {
            j->missing[j->n_missing++] = i;
        }
    }
    if (j->n_missing > 0) {
        char q[300];
        return yw_store_job_failf(
            job, GRPC_STATUS_NOT_FOUND, "creator %s not found",
            yw_quote(j->creator_ids[j->missing[0]], YW_QUOTE_MAX, q, sizeof q));
    }
    for (size_t i = 0; i < j->n_ids && code == GRPC_STATUS_OK; i++) {
        Yaowei__Creator__V1__CreatorStats *s = &j->stats[i];
        s->creator_id = j->creator_ids[i];
        s->window_days = j->window_days;
        s->start_day = j->start_day;
        s->end_day = j->end_day_str;
        code = one_creator_stats(conn, j, j->creator_ids[i], s, &views);
    }
    free(views.v);
    return code;
}

void creator_stats_job_init(creator_stats_job_t *j,
                            void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_stats;
    j->job.done = done;
}

void creator_stats_job_dispose(creator_stats_job_t *j)
{
    free(j->stats);
    free(j->missing);
    j->stats = NULL;
    j->missing = NULL;
    j->n_missing = 0;
}

/* ---- start-up ---- */

static const char sql_load_all[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c ORDER BY c.creator_id";

grpc_status_code creator_store_load_all(yw_store_conn_t *conn, void *arg)
{
    creator_load_t *load = arg;
    load->errmsg[0] = '\0';
    yw_sql_t *st = yw_sql_prepare(conn, sql_load_all, load->errmsg, sizeof load->errmsg);
    int rc;
    if (st == NULL) {
        return yw_sql_fail(conn, "loading creators", load->errmsg, sizeof load->errmsg);
    }
    while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
        creator_record_t *r = record_from_row(st);
        if (r == NULL) {
            yw_sql_done(st);
            snprintf(load->errmsg, sizeof load->errmsg, "out of memory loading creators");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        int err = load->each(r, load->ctx);
        if (err != 0) {
            yw_sql_done(st);
            snprintf(load->errmsg, sizeof load->errmsg, "loading creators: %s", strerror(-err));
            return GRPC_STATUS_INTERNAL;
        }
    }
    if (rc != YW_SQL_DONE) {
        grpc_status_code code =
            yw_sql_fail(conn, "loading creators", load->errmsg, sizeof load->errmsg);
        yw_sql_done(st);
        return code;
    }
    yw_sql_done(st);
    return GRPC_STATUS_OK;
}

/* ---- one creator / every creator, for the cache ---- */

grpc_status_code creator_store_get(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_get_job_t *j = (creator_get_job_t *)job;
    return load_creator(conn, job, j->creator_id, &j->result);
}

void creator_get_job_init(creator_get_job_t *j,
                          void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_get;
    j->job.done = done;
}

void creator_get_job_dispose(creator_get_job_t *j)
{
    creator_record_free(j->result);
    j->result = NULL;
}

/* creator_load_t.each of the load job: into the job's own cache (no other thread sees it). */
static int put_fresh(creator_record_t *rec, void *ctx)
{
    creator_cache_put(ctx, rec);
    return 0;
}

grpc_status_code creator_store_load_job(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_load_job_t *j = (creator_load_job_t *)job;
    creator_load_t load = {.each = put_fresh, .ctx = &j->fresh};
    grpc_status_code code = creator_store_load_all(conn, &load);
    if (code != GRPC_STATUS_OK) {
        snprintf(job->errmsg, sizeof job->errmsg, "%s", load.errmsg);
    }
    return code;
}

int creator_load_job_init(creator_load_job_t *j,
                          void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_load_job;
    j->job.done = done;
    return creator_cache_init(&j->fresh);
}

void creator_load_job_dispose(creator_load_job_t *j)
{
    creator_cache_dispose(&j->fresh);
}
