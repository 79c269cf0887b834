/*
 * creator_store.c — schema and store jobs of the creator profile. See creator_store.h.
 *
 * Every function here runs on a store thread with the connection it is given, touches
 * nothing but its job, and reports failures through job->errmsg. Statements come from
 * yw_store_stmt() (cached per connection, keyed by the SQL's address: the SQL strings
 * below are static arrays for that reason) and are reset after each use so that no
 * read stays open between uses.
 */
#include "services/creator_profile/creator_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "common/vec.h"
#include "services/creator_profile/creator_day.h"

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

/* ---- helpers ---- */

#define CREATOR_COLUMNS                                                                            \
    "c.creator_id, c.display_name, c.region, c.categories, c.followers, c.status, "                \
    "c.create_time_s, c.create_time_ns, c.update_time_s, c.update_time_ns"

/* A record from a row of CREATOR_COLUMNS starting at column 0; NULL when out of memory. */
static creator_record_t *record_from_row(sqlite3_stmt *st)
{
    creator_fields_t f = {
        .creator_id = yw_store_column_text(st, 0, NULL),
        .display_name = yw_store_column_text(st, 1, NULL),
        .region = yw_store_column_text(st, 2, NULL),
        .categories = NULL,
        .categories_joined = yw_store_column_text(st, 3, NULL),
        .followers = sqlite3_column_int64(st, 4),
        .status = sqlite3_column_int(st, 5),
        .create_seconds = sqlite3_column_int64(st, 6),
        .create_nanos = sqlite3_column_int(st, 7),
        .update_seconds = sqlite3_column_int64(st, 8),
        .update_nanos = sqlite3_column_int(st, 9),
    };
    return creator_record_new(&f);
}

static const char sql_select_creator[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c WHERE c.creator_id = ?1";

/*
 * Reads one creator into *out (NULL when it does not exist). Returns OK, or a failure
 * reported in job->errmsg.
 */
static grpc_status_code load_creator(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                     creator_record_t **out)
{
    grpc_status_code code = GRPC_STATUS_OK;
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_select_creator, &code);
    *out = NULL;
    if (st == NULL) {
        return code;
    }
    int rc = yw_store_bind_text(st, 1, id);
    if (rc != SQLITE_OK) {
        code = yw_store_job_fail(conn, job, rc, "bind creator_id");
    } else if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = record_from_row(st);
        if (*out == NULL) {
            code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory reading creator");
        }
    } else if (rc != SQLITE_DONE) {
        code = yw_store_job_fail(conn, job, rc, "read creator");
    }
    yw_store_stmt_done(st);
    return code;
}

static const char sql_creator_exists[] = "SELECT 1 FROM creators WHERE creator_id = ?1";

/* *exists gets whether creator `id` exists. */
static grpc_status_code creator_exists(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                       int *exists)
{
    grpc_status_code code = GRPC_STATUS_OK;
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_creator_exists, &code);
    if (st == NULL) {
        return code;
    }
    int rc = yw_store_bind_text(st, 1, id);
    if (rc != SQLITE_OK) {
        code = yw_store_job_fail(conn, job, rc, "bind creator_id");
    } else if ((rc = sqlite3_step(st)) == SQLITE_ROW || rc == SQLITE_DONE) {
        *exists = rc == SQLITE_ROW;
    } else {
        code = yw_store_job_fail(conn, job, rc, "look up creator");
    }
    yw_store_stmt_done(st);
    return code;
}

/* Runs a statement that returns no rows. */
static grpc_status_code step_done(yw_store_conn_t *conn, yw_store_job_t *job, sqlite3_stmt *st,
                                  const char *what)
{
    int rc = sqlite3_step(st);
    yw_store_stmt_done(st);
    return rc == SQLITE_DONE ? GRPC_STATUS_OK : yw_store_job_fail(conn, job, rc, what);
}

static const char sql_insert_category[] =
    "INSERT OR IGNORE INTO creator_categories(creator_id, category) VALUES (?1, ?2)";
static const char sql_delete_categories[] = "DELETE FROM creator_categories WHERE creator_id = ?1";

/* Makes creator_categories hold exactly `categories` for `id`. */
static grpc_status_code write_categories(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                         char *const *categories, size_t n, int replace)
{
    grpc_status_code code = GRPC_STATUS_OK;
    sqlite3_stmt *st;
    int rc;
    if (replace) {
        if ((st = yw_store_job_stmt(conn, job, sql_delete_categories, &code)) == NULL) {
            return code;
        }
        if ((rc = yw_store_bind_text(st, 1, id)) != SQLITE_OK) {
            yw_store_stmt_done(st);
            return yw_store_job_fail(conn, job, rc, "bind creator_id");
        }
        if ((code = step_done(conn, job, st, "delete categories")) != GRPC_STATUS_OK) {
            return code;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = yw_store_job_stmt(conn, job, sql_insert_category, &code)) == NULL) {
            return code;
        }
        if ((rc = yw_store_bind_text(st, 1, id)) != SQLITE_OK ||
            (rc = yw_store_bind_text(st, 2, categories[i])) != SQLITE_OK) {
            yw_store_stmt_done(st);
            return yw_store_job_fail(conn, job, rc, "bind category");
        }
        if ((code = step_done(conn, job, st, "insert category")) != GRPC_STATUS_OK) {
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
 * is new.
 */
static grpc_status_code replay_request(yw_store_conn_t *conn, creator_create_job_t *j, int *found)
{
    yw_store_job_t *job = &j->job;
    grpc_status_code code = GRPC_STATUS_OK;
    char q1[300], q2[300], prior[CREATOR_ID_MAX + 1];
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_find_request, &code);
    *found = 0;
    if (st == NULL) {
        return code;
    }
    int rc = yw_store_bind_text(st, 1, j->request_id);
    if (rc != SQLITE_OK) {
        code = yw_store_job_fail(conn, job, rc, "bind request_id");
    } else if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(prior, sizeof prior, "%s", yw_store_column_text(st, 0, NULL));
        *found = 1;
    } else if (rc != SQLITE_DONE) {
        code = yw_store_job_fail(conn, job, rc, "look up request_id");
    }
    yw_store_stmt_done(st);
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

grpc_status_code creator_store_create(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_create_job_t *j = (creator_create_job_t *)job;
    const Yaowei__Creator__V1__Creator *c = j->creator;
    grpc_status_code code = GRPC_STATUS_OK;
    char joined[CREATOR_CATEGORIES_JOINED_MAX], q[300];
    int has_request = j->request_id != NULL && j->request_id[0] != '\0';
    int found = 0, exists = 0, rc;

    if (has_request && ((code = replay_request(conn, j, &found)) != GRPC_STATUS_OK || found)) {
        return code;
    }
    if ((code = creator_exists(conn, job, c->creator_id, &exists)) != GRPC_STATUS_OK) {
        return code;
    }
    if (exists) {
        return yw_store_job_failf(job, GRPC_STATUS_ALREADY_EXISTS,
                                  "creator.creator_id: creator %s already exists",
                                  yw_quote(c->creator_id, YW_QUOTE_MAX, q, sizeof q));
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

    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_insert_creator, &code);
    if (st == NULL) {
        return code;
    }
    if ((rc = yw_store_bind_text(st, 1, f.creator_id)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 2, f.display_name)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 3, f.region)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 4, joined)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, f.followers)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(st, 6, f.status)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 7, f.create_seconds)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(st, 8, f.create_nanos)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 9, f.update_seconds)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(st, 10, f.update_nanos)) != SQLITE_OK) {
        yw_store_stmt_done(st);
        return yw_store_job_fail(conn, job, rc, "bind creator");
    }
    if ((code = step_done(conn, job, st, "insert creator")) != GRPC_STATUS_OK) {
        return code;
    }
    if ((code = write_categories(conn, job, f.creator_id, f.categories, f.n_categories, 0)) !=
        GRPC_STATUS_OK) {
        return code;
    }
    if (has_request) {
        if ((st = yw_store_job_stmt(conn, job, sql_insert_request, &code)) == NULL) {
            return code;
        }
        if ((rc = yw_store_bind_text(st, 1, j->request_id)) != SQLITE_OK ||
            (rc = yw_store_bind_text(st, 2, c->creator_id)) != SQLITE_OK) {
            yw_store_stmt_done(st);
            return yw_store_job_fail(conn, job, rc, "bind request_id");
        }
        if ((code = step_done(conn, job, st, "insert request_id")) != GRPC_STATUS_OK) {
            return code;
        }
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
    int rc;

    if ((code = load_creator(conn, job, c->creator_id, &cur)) != GRPC_STATUS_OK) {
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
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_update_creator, &code);
    if (st == NULL) {
        creator_record_free(cur);
        return code;
    }
    if ((rc = yw_store_bind_text(st, 1, f.creator_id)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 2, f.display_name)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 3, f.region)) != SQLITE_OK ||
        (rc = yw_store_bind_text(st, 4, joined)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, f.followers)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(st, 6, f.status)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 7, f.update_seconds)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(st, 8, f.update_nanos)) != SQLITE_OK) {
        yw_store_stmt_done(st);
        creator_record_free(cur);
        return yw_store_job_fail(conn, job, rc, "bind creator");
    }
    code = step_done(conn, job, st, "update creator");
    if (code == GRPC_STATUS_OK && set_cats) {
        code = write_categories(conn, job, f.creator_id, f.categories, f.n_categories, 1);
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
        sqlite3_stmt *st = yw_store_job_stmt(conn, job, steps[i].sql, &code);
        if (st == NULL) {
            return code;
        }
        int rc = yw_store_bind_text(st, 1, j->creator_id);
        if (rc != SQLITE_OK) {
            yw_store_stmt_done(st);
            return yw_store_job_fail(conn, job, rc, "bind creator_id");
        }
        if ((code = step_done(conn, job, st, steps[i].what)) != GRPC_STATUS_OK) {
            return code;
        }
        if (i == 0 && sqlite3_changes(yw_store_db(conn)) == 0) {
            return yw_store_job_failf(job, GRPC_STATUS_NOT_FOUND,
                                      "creator_id: creator %s not found",
                                      yw_quote(j->creator_id, YW_QUOTE_MAX, q, sizeof q));
        }
    }
    return GRPC_STATUS_OK;
}

void creator_delete_job_init(creator_delete_job_t *j,
                             void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_delete;
    j->job.done = done;
}

/* ---- RecordNoteStats ---- */

static const char sql_note_owner[] = "SELECT creator_id FROM note_stats WHERE note_id = ?1 LIMIT 1";
static const char sql_upsert_stats[] =
    "INSERT OR REPLACE INTO note_stats(note_id, day, creator_id, is_video, impressions, views, "
    "video_plays, avg_watch_ms, completion_rate, likes, collects, comments, shares, "
    "follows_gained) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/* Row i's note must be new or already belong to row i's creator. */
static grpc_status_code check_note_owner(yw_store_conn_t *conn, yw_store_job_t *job, size_t i,
                                         const Yaowei__Creator__V1__NoteDailyStats *s)
{
    grpc_status_code code = GRPC_STATUS_OK;
    char q1[300], q2[300], q3[300];
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_note_owner, &code);
    if (st == NULL) {
        return code;
    }
    int rc = yw_store_bind_text(st, 1, s->note_id);
    if (rc != SQLITE_OK) {
        code = yw_store_job_fail(conn, job, rc, "bind note_id");
    } else if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *owner = yw_store_column_text(st, 0, NULL);
        if (strcmp(owner, s->creator_id) != 0) {
            code = yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                      "stats[%zu].note_id: note %s belongs to creator %s, not %s",
                                      i, yw_quote(s->note_id, YW_QUOTE_MAX, q1, sizeof q1),
                                      yw_quote(owner, YW_QUOTE_MAX, q2, sizeof q2),
                                      yw_quote(s->creator_id, YW_QUOTE_MAX, q3, sizeof q3));
        }
    } else if (rc != SQLITE_DONE) {
        code = yw_store_job_fail(conn, job, rc, "look up note");
    }
    yw_store_stmt_done(st);
    return code;
}

grpc_status_code creator_store_record_stats(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_record_stats_job_t *j = (creator_record_stats_job_t *)job;
    grpc_status_code code = GRPC_STATUS_OK;
    const char *known =
        NULL; /* the last creator_id seen to exist: batches are mostly one creator */
    char q[300];
    int rc;

    j->upserted = 0;
    for (size_t i = 0; i < j->n_stats; i++) {
        const Yaowei__Creator__V1__NoteDailyStats *s = j->stats[i];
        int64_t day;
        if (creator_day_parse(s->day, &day) != 0) {
            return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                      "stats[%zu].day: not a date", i);
        }
        if (known == NULL || strcmp(known, s->creator_id) != 0) {
            int exists = 0;
            if ((code = creator_exists(conn, job, s->creator_id, &exists)) != GRPC_STATUS_OK) {
                return code;
            }
            if (!exists) {
                return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                                          "stats[%zu].creator_id: creator %s does not exist", i,
                                          yw_quote(s->creator_id, YW_QUOTE_MAX, q, sizeof q));
            }
            known = s->creator_id;
        }
        if ((code = check_note_owner(conn, job, i, s)) != GRPC_STATUS_OK) {
            return code;
        }
        sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_upsert_stats, &code);
        if (st == NULL) {
            return code;
        }
        if ((rc = yw_store_bind_text(st, 1, s->note_id)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 2, day)) != SQLITE_OK ||
            (rc = yw_store_bind_text(st, 3, s->creator_id)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 4, s->is_video ? 1 : 0)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 5, s->impressions)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 6, s->views)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 7, s->video_plays)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 8, s->avg_watch_ms)) != SQLITE_OK ||
            (rc = sqlite3_bind_double(st, 9, s->completion_rate)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 10, s->likes)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 11, s->collects)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 12, s->comments)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 13, s->shares)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 14, s->follows_gained)) != SQLITE_OK) {
            yw_store_stmt_done(st);
            return yw_store_job_fail(conn, job, rc, "bind note stats");
        }
        if ((code = step_done(conn, job, st, "upsert note stats")) != GRPC_STATUS_OK) {
            return code;
        }
        j->upserted++;
    }
    return GRPC_STATUS_OK;
}

void creator_record_stats_job_init(creator_record_stats_job_t *j,
                                   void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_record_stats;
    j->job.done = done;
}

/* ---- ListCreators ---- */

/*
 * Three plans, each a keyset scan in creator_id order that an index serves: by category
 * (creator_categories_category), by region (creators_region), or over every creator.
 * The followers range is checked on each row. LIMIT is page_size + 1: the extra row
 * tells whether another page follows.
 */
static const char sql_list_by_category[] =
    "SELECT " CREATOR_COLUMNS " FROM creator_categories cc CROSS JOIN creators c "
    "ON c.creator_id = cc.creator_id "
    "WHERE cc.category = ?1 AND cc.creator_id > ?2 AND (?3 = '' OR c.region = ?3) "
    "AND c.followers >= ?4 AND (?5 = 0 OR c.followers <= ?5) "
    "ORDER BY cc.creator_id LIMIT ?6";
static const char sql_list_by_region[] = "SELECT " CREATOR_COLUMNS " FROM creators c "
                                         "WHERE c.region = ?3 AND c.creator_id > ?2 "
                                         "AND c.followers >= ?4 AND (?5 = 0 OR c.followers <= ?5) "
                                         "ORDER BY c.creator_id LIMIT ?6";
static const char sql_list_all[] =
    "SELECT " CREATOR_COLUMNS " FROM creators c "
    "WHERE c.creator_id > ?2 AND c.followers >= ?4 AND (?5 = 0 OR c.followers <= ?5) "
    "ORDER BY c.creator_id LIMIT ?6";

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
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql, &code);
    if (st == NULL) {
        return code;
    }
    /* Parameters a plan does not use are still bound: binding an unused index is fine. */
    if ((sql == sql_list_by_category && (rc = yw_store_bind_text(st, 1, category)) != SQLITE_OK) ||
        (rc = yw_store_bind_text(st, 2, j->after)) != SQLITE_OK ||
        (sql != sql_list_all && (rc = yw_store_bind_text(st, 3, region)) != SQLITE_OK) ||
        (rc = sqlite3_bind_int64(st, 4, j->min_followers)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, j->max_followers)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 6, (int64_t)j->page_size + 1)) != SQLITE_OK) {
        yw_store_stmt_done(st);
        return yw_store_job_fail(conn, job, rc, "bind list filters");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (j->n_records == (size_t)j->page_size) {
            j->more = 1;
            break;
        }
        creator_record_t *r = record_from_row(st);
        if (r == NULL) {
            yw_store_stmt_done(st);
            return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory listing creators");
        }
        j->records[j->n_records++] = r;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        code = yw_store_job_fail(conn, job, rc, "list creators");
    }
    yw_store_stmt_done(st);
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
 * ?1 creator_id, ?2 window start, ?3 lo, ?4 end - 6, ?5 end - 13, ?6 end.
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
    " TOTAL(CASE WHEN day >= ?2 AND is_video THEN completion_rate * impressions ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 AND is_video THEN impressions ELSE 0 END),"
    " SUM(CASE WHEN day >= ?4 THEN views ELSE 0 END),"
    " SUM(CASE WHEN day >= ?5 AND day < ?4 THEN views ELSE 0 END),"
    " SUM(CASE WHEN day >= ?2 THEN 1 ELSE 0 END)"
    " FROM note_stats WHERE creator_id = ?1 AND day BETWEEN ?3 AND ?6 GROUP BY note_id";
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
    sqlite3_stmt *st = yw_store_job_stmt(conn, job, sql_note_sums, &code);
    if (st == NULL) {
        return code;
    }
    if ((rc = yw_store_bind_text(st, 1, id)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 2, start)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 3, lo)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 4, end - 6)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, end - 13)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 6, end)) != SQLITE_OK) {
        yw_store_stmt_done(st);
        return yw_store_job_fail(conn, job, rc, "bind stats window");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out->views_last_7d = add_sat(out->views_last_7d, sqlite3_column_int64(st, 11));
        out->views_prev_7d = add_sat(out->views_prev_7d, sqlite3_column_int64(st, 12));
        if (sqlite3_column_int64(st, 13) == 0) {
            continue;
        }
        int64_t note_views = sqlite3_column_int64(st, 2);
        out->notes++;
        out->video_notes += sqlite3_column_int64(st, 0) != 0;
        out->impressions = add_sat(out->impressions, sqlite3_column_int64(st, 1));
        out->views = add_sat(out->views, note_views);
        out->video_plays = add_sat(out->video_plays, sqlite3_column_int64(st, 3));
        out->likes = add_sat(out->likes, sqlite3_column_int64(st, 4));
        out->collects = add_sat(out->collects, sqlite3_column_int64(st, 5));
        out->comments = add_sat(out->comments, sqlite3_column_int64(st, 6));
        out->shares = add_sat(out->shares, sqlite3_column_int64(st, 7));
        out->follower_gain = add_sat(out->follower_gain, sqlite3_column_int64(st, 8));
        weighted_completion += sqlite3_column_double(st, 9);
        video_impressions = add_sat(video_impressions, sqlite3_column_int64(st, 10));
        if (vec_push(views, note_views) != 0) {
            yw_store_stmt_done(st);
            return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory computing stats");
        }
    }
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_job_fail(conn, job, rc, "sum note stats");
    }

    if ((st = yw_store_job_stmt(conn, job, sql_active_days, &code)) == NULL) {
        return code;
    }
    if ((rc = yw_store_bind_text(st, 1, id)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 2, start)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 3, end)) != SQLITE_OK) {
        yw_store_stmt_done(st);
        return yw_store_job_fail(conn, job, rc, "bind stats window");
    }
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out->active_days = sqlite3_column_int(st, 0);
    }
    yw_store_stmt_done(st);
    if (rc != SQLITE_ROW) {
        return yw_store_job_fail(conn, job, rc, "count active days");
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
        if ((code = creator_exists(conn, job, j->creator_ids[i], &exists)) != GRPC_STATUS_OK) {
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
    sqlite3_stmt *st = yw_store_prepare(conn, sql_load_all, load->errmsg, sizeof load->errmsg);
    int rc;
    if (st == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        creator_record_t *r = record_from_row(st);
        if (r == NULL) {
            yw_store_stmt_done(st);
            snprintf(load->errmsg, sizeof load->errmsg, "out of memory loading creators");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        int err = load->each(r, load->ctx);
        if (err != 0) {
            yw_store_stmt_done(st);
            snprintf(load->errmsg, sizeof load->errmsg, "loading creators: %s", strerror(-err));
            return GRPC_STATUS_INTERNAL;
        }
    }
    if (rc != SQLITE_DONE) {
        grpc_status_code code =
            yw_store_fail(conn, rc, "loading creators", load->errmsg, sizeof load->errmsg);
        yw_store_stmt_done(st);
        return code;
    }
    yw_store_stmt_done(st);
    return GRPC_STATUS_OK;
}
