/*
 * tier_store.c — tier scoring's schemas (SQLite, PostgreSQL) and store jobs, written once
 * with common/sql.h for both databases. See tier_store.h.
 */
#include "services/tier_scoring/tier_store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/sql.h"
#include "services/tier_scoring/tier_policy.h"

/* clang-format off */
static const char schema_v1[] =
    "CREATE TABLE tier_policies ("
    " version INTEGER PRIMARY KEY,"
    " head_min_followers INTEGER NOT NULL,"
    " mid_min_followers INTEGER NOT NULL,"
    " tail_min_followers INTEGER NOT NULL,"
    " weight_reach REAL NOT NULL,"
    " weight_engagement REAL NOT NULL,"
    " weight_video_momentum REAL NOT NULL,"
    " weight_consistency REAL NOT NULL,"
    " rising_top_fraction REAL NOT NULL,"
    " window_days INTEGER NOT NULL,"
    " update_time_s INTEGER NOT NULL,"
    " update_time_ns INTEGER NOT NULL);"
    "CREATE TABLE tier_population ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " read_time_s INTEGER NOT NULL,"
    " read_time_ns INTEGER NOT NULL,"
    " window_days INTEGER NOT NULL,"
    " end_day TEXT NOT NULL,"
    " policy_version INTEGER NOT NULL,"
    " compute_time_s INTEGER NOT NULL,"
    " compute_time_ns INTEGER NOT NULL,"
    " creators INTEGER NOT NULL);"
    "CREATE TABLE tier_creators ("
    " creator_id TEXT PRIMARY KEY,"
    " category TEXT NOT NULL,"
    " followers INTEGER NOT NULL,"
    " window_days INTEGER NOT NULL,"
    " notes INTEGER NOT NULL,"
    " video_notes INTEGER NOT NULL,"
    " impressions INTEGER NOT NULL,"
    " engagements INTEGER NOT NULL,"
    " views_last_7d INTEGER NOT NULL,"
    " views_prev_7d INTEGER NOT NULL,"
    " avg_completion_rate REAL NOT NULL,"
    " tier INTEGER NOT NULL,"
    " score REAL NOT NULL,"
    " reach REAL NOT NULL,"
    " engagement REAL NOT NULL,"
    " video_momentum REAL NOT NULL,"
    " consistency REAL NOT NULL,"
    " engagement_rate_raw REAL NOT NULL,"
    " engagement_rate_smoothed REAL NOT NULL,"
    " engagement_rate_lower_bound REAL NOT NULL,"
    " percentile REAL NOT NULL,"
    " rising INTEGER NOT NULL,"
    " insufficient_data INTEGER NOT NULL"
    ") WITHOUT ROWID;";
/* clang-format on */

const yw_migration_t tier_migrations[TIER_N_MIGRATIONS] = {
    {1, schema_v1},
};

/*
 * PostgreSQL's version 1: SQLite's tables with PostgreSQL's types. INTEGER columns are
 * BIGINT (every integer is bound as int64), REAL is DOUBLE PRECISION, and the text keys
 * are COLLATE "C" so that ORDER BY creator_id is byte order, as SQLite's BINARY is.
 */
/* clang-format off */
static const char pg_schema_v1[] =
    "CREATE TABLE tier_policies ("
    " version BIGINT PRIMARY KEY,"
    " head_min_followers BIGINT NOT NULL,"
    " mid_min_followers BIGINT NOT NULL,"
    " tail_min_followers BIGINT NOT NULL,"
    " weight_reach DOUBLE PRECISION NOT NULL,"
    " weight_engagement DOUBLE PRECISION NOT NULL,"
    " weight_video_momentum DOUBLE PRECISION NOT NULL,"
    " weight_consistency DOUBLE PRECISION NOT NULL,"
    " rising_top_fraction DOUBLE PRECISION NOT NULL,"
    " window_days BIGINT NOT NULL,"
    " update_time_s BIGINT NOT NULL,"
    " update_time_ns BIGINT NOT NULL);"
    "CREATE TABLE tier_population ("
    " id BIGINT PRIMARY KEY CHECK (id = 1),"
    " read_time_s BIGINT NOT NULL,"
    " read_time_ns BIGINT NOT NULL,"
    " window_days BIGINT NOT NULL,"
    " end_day TEXT COLLATE \"C\" NOT NULL,"
    " policy_version BIGINT NOT NULL,"
    " compute_time_s BIGINT NOT NULL,"
    " compute_time_ns BIGINT NOT NULL,"
    " creators BIGINT NOT NULL);"
    "CREATE TABLE tier_creators ("
    " creator_id TEXT COLLATE \"C\" PRIMARY KEY,"
    " category TEXT COLLATE \"C\" NOT NULL,"
    " followers BIGINT NOT NULL,"
    " window_days BIGINT NOT NULL,"
    " notes BIGINT NOT NULL,"
    " video_notes BIGINT NOT NULL,"
    " impressions BIGINT NOT NULL,"
    " engagements BIGINT NOT NULL,"
    " views_last_7d BIGINT NOT NULL,"
    " views_prev_7d BIGINT NOT NULL,"
    " avg_completion_rate DOUBLE PRECISION NOT NULL,"
    " tier BIGINT NOT NULL,"
    " score DOUBLE PRECISION NOT NULL,"
    " reach DOUBLE PRECISION NOT NULL,"
    " engagement DOUBLE PRECISION NOT NULL,"
    " video_momentum DOUBLE PRECISION NOT NULL,"
    " consistency DOUBLE PRECISION NOT NULL,"
    " engagement_rate_raw DOUBLE PRECISION NOT NULL,"
    " engagement_rate_smoothed DOUBLE PRECISION NOT NULL,"
    " engagement_rate_lower_bound DOUBLE PRECISION NOT NULL,"
    " percentile DOUBLE PRECISION NOT NULL,"
    " rising BIGINT NOT NULL CHECK (rising IN (0, 1)),"
    " insufficient_data BIGINT NOT NULL CHECK (insufficient_data IN (0, 1)));";
/* clang-format on */

const yw_migration_t tier_pg_migrations[TIER_N_PG_MIGRATIONS] = {
    {1, pg_schema_v1},
};

/* ---- policies ---- */

/* The lock of policy writers (yw_sql_job_lock()): they take turns across replicas. */
#define LOCK_POLICY "tier-policy"

#define POLICY_COLUMNS                                                                             \
    "version, head_min_followers, mid_min_followers, tail_min_followers, weight_reach, "           \
    "weight_engagement, weight_video_momentum, weight_consistency, rising_top_fraction, "          \
    "window_days, update_time_s, update_time_ns"

static const char sql_policy_current[] =
    "SELECT " POLICY_COLUMNS " FROM tier_policies ORDER BY version DESC LIMIT 1";
/* The default (version 1) at first start: of replicas starting together, one writes it. */
static const char sql_policy_insert_default[] =
    "INSERT INTO tier_policies(" POLICY_COLUMNS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT (version) DO NOTHING";
static const char sql_policy_insert[] =
    "INSERT INTO tier_policies(" POLICY_COLUMNS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

static void policy_from_row(yw_sql_t *st, tier_policy_t *p)
{
    p->version = yw_sql_column_i64(st, 0);
    p->head_min_followers = yw_sql_column_i64(st, 1);
    p->mid_min_followers = yw_sql_column_i64(st, 2);
    p->tail_min_followers = yw_sql_column_i64(st, 3);
    p->weights.reach = yw_sql_column_f64(st, 4);
    p->weights.engagement = yw_sql_column_f64(st, 5);
    p->weights.video_momentum = yw_sql_column_f64(st, 6);
    p->weights.consistency = yw_sql_column_f64(st, 7);
    p->rising_top_fraction = yw_sql_column_f64(st, 8);
    p->window_days = (int32_t)yw_sql_column_i64(st, 9);
    p->update_time_s = yw_sql_column_i64(st, 10);
    p->update_time_ns = (int32_t)yw_sql_column_i64(st, 11);
}

/*
 * Reads the policy in force into `p`: OK with *found set, or the store's status with
 * `msg`.
 */
static grpc_status_code read_policy(yw_store_conn_t *conn, tier_policy_t *p, int *found, char *msg,
                                    size_t len)
{
    *found = 0;
    yw_sql_t *st = yw_sql_prepare(conn, sql_policy_current, msg, len);
    if (st == NULL) {
        return yw_sql_fail(conn, "store: prepare the policy's read", msg, len);
    }
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW) {
        policy_from_row(st, p);
        *found = 1;
        rc = YW_SQL_DONE;
    }
    yw_sql_done(st);
    if (rc != YW_SQL_DONE) {
        return yw_sql_fail(conn, "store: read policy", msg, len);
    }
    return GRPC_STATUS_OK;
}

/*
 * Inserts `p` with `sql` (sql_policy_insert or sql_policy_insert_default): OK with
 * *changes the rows inserted (0 when the default's version existed), ALREADY_EXISTS
 * naming policy.version, or the store's status.
 */
static grpc_status_code insert_policy(yw_store_conn_t *conn, const char *sql,
                                      const tier_policy_t *p, int64_t *changes, char *msg,
                                      size_t len)
{
    yw_sql_t *st = yw_sql_prepare(conn, sql, msg, len);
    if (st == NULL) {
        return yw_sql_fail(conn, "store: prepare the policy's insert", msg, len);
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_i64(&b, p->version);
    yw_sql_bind_next_i64(&b, p->head_min_followers);
    yw_sql_bind_next_i64(&b, p->mid_min_followers);
    yw_sql_bind_next_i64(&b, p->tail_min_followers);
    yw_sql_bind_next_f64(&b, p->weights.reach);
    yw_sql_bind_next_f64(&b, p->weights.engagement);
    yw_sql_bind_next_f64(&b, p->weights.video_momentum);
    yw_sql_bind_next_f64(&b, p->weights.consistency);
    yw_sql_bind_next_f64(&b, p->rising_top_fraction);
    yw_sql_bind_next_i64(&b, p->window_days);
    yw_sql_bind_next_i64(&b, p->update_time_s);
    yw_sql_bind_next_i64(&b, p->update_time_ns);
    grpc_status_code code = GRPC_STATUS_OK;
    if (yw_sql_step(st) == YW_SQL_DONE) {
        *changes = yw_sql_changes(st);
    } else {
        code = yw_sql_fail(conn, "store: insert policy", msg, len);
        if (code == GRPC_STATUS_ALREADY_EXISTS) { /* the primary key: the version */
            snprintf(msg, len, "policy.version: version %" PRId64 " exists already", p->version);
        }
    }
    yw_sql_done(st);
    return code;
}

grpc_status_code tier_store_update_policy(yw_store_conn_t *conn, yw_store_job_t *job)
{
    tier_policy_job_t *j = (tier_policy_job_t *)job;
    char *msg = job->errmsg;
    size_t len = sizeof job->errmsg;
    j->refusal[0] = '\0';
    grpc_status_code code = yw_sql_job_lock(conn, job, LOCK_POLICY);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    /* The version in force is the database's, not this replica's copy: another replica
     * may have written one this one has not heard of yet. */
    tier_policy_t current;
    int found;
    if ((code = read_policy(conn, &current, &found, msg, len)) != GRPC_STATUS_OK) {
        return code;
    }
    if (!found) {
        snprintf(msg, len, "store: tier_policies holds no policy");
        return GRPC_STATUS_INTERNAL;
    }
    if ((code = tier_policy_update(&current, j->req, &j->policy, j->refusal, sizeof j->refusal)) !=
        GRPC_STATUS_OK) {
        size_t k = strnlen(j->refusal, len - 1); /* truncated: `refusal` has it all */
        memcpy(msg, j->refusal, k);
        msg[k] = '\0';
        return code;
    }
    j->policy.update_time_s = j->now_s;
    j->policy.update_time_ns = j->now_ns;
    int64_t changes = 0;
    if ((code = insert_policy(conn, sql_policy_insert, &j->policy, &changes, msg, len)) !=
        GRPC_STATUS_OK) {
        return code;
    }
    char payload[24];
    snprintf(payload, sizeof payload, "%" PRId64, j->policy.version);
    return yw_sql_job_notify(conn, job, TIER_POLICY_CHANNEL, payload);
}

grpc_status_code tier_store_read_policy(yw_store_conn_t *conn, yw_store_job_t *job)
{
    tier_policy_read_t *j = (tier_policy_read_t *)job;
    int found;
    grpc_status_code code = read_policy(conn, &j->policy, &found, job->errmsg, sizeof job->errmsg);
    if (code == GRPC_STATUS_OK && !found) {
        snprintf(job->errmsg, sizeof job->errmsg, "store: tier_policies holds no policy");
        return GRPC_STATUS_INTERNAL;
    }
    return code;
}

/* ---- the population ---- */

static const char sql_population_get[] =
    "SELECT read_time_s, read_time_ns, window_days, end_day FROM tier_population WHERE id = 1";
static const char sql_population_put[] =
    "INSERT INTO tier_population(id, read_time_s, read_time_ns, window_days, end_day, "
    "policy_version, compute_time_s, compute_time_ns, creators) "
    "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
    "ON CONFLICT (id) DO UPDATE SET read_time_s = excluded.read_time_s, "
    "read_time_ns = excluded.read_time_ns, window_days = excluded.window_days, "
    "end_day = excluded.end_day, policy_version = excluded.policy_version, "
    "compute_time_s = excluded.compute_time_s, compute_time_ns = excluded.compute_time_ns, "
    "creators = excluded.creators";
static const char sql_creators_clear[] = "DELETE FROM tier_creators";
static const char sql_creators_get[] =
    "SELECT creator_id, category, followers, window_days, notes, video_notes, impressions, "
    "engagements, views_last_7d, views_prev_7d, avg_completion_rate "
    "FROM tier_creators ORDER BY creator_id";
#define CREATOR_INSERT                                                                             \
    "INSERT INTO tier_creators(creator_id, category, followers, window_days, notes, video_notes, " \
    "impressions, engagements, views_last_7d, views_prev_7d, avg_completion_rate, tier, score, "   \
    "reach, engagement, video_momentum, consistency, engagement_rate_raw, "                        \
    "engagement_rate_smoothed, engagement_rate_lower_bound, percentile, rising, "                  \
    "insufficient_data) VALUES "
/* Parameters of one creator's row (bind_creator()). */
#define CREATOR_PARAMS 23
static const char sql_creator_put[] =
    CREATOR_INSERT "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
                   "?18, ?19, ?20, ?21, ?22, ?23)";

/*
 * CHUNK_ROWS creators in one INSERT (2,300 parameters: within SQLite's 32,766 and
 * PostgreSQL's 65,535): a statement is a round trip to PostgreSQL, and 50,000 of them
 * took seconds. Built once (chunk_sql_build()), the rest of a population row by row.
 */
#define CHUNK_ROWS 100
static char sql_creators_put_chunk[sizeof CREATOR_INSERT + (size_t)CHUNK_ROWS * CREATOR_PARAMS * 8];
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;

static void chunk_sql_build(void)
{
    char *w = sql_creators_put_chunk, *end = w + sizeof sql_creators_put_chunk;
    w += snprintf(w, (size_t)(end - w), "%s", CREATOR_INSERT);
    for (int r = 0; r < CHUNK_ROWS; r++) {
        for (int c = 0; c < CREATOR_PARAMS; c++) {
            w += snprintf(w, (size_t)(end - w), "%s?%d%s", c == 0 ? (r == 0 ? "(" : ", (") : ", ",
                          r * CREATOR_PARAMS + c + 1, c == CREATOR_PARAMS - 1 ? ")" : "");
        }
    }
    /* "?4600, " is 7 bytes, each row's "(" and ")" 3 more: 8 per parameter is enough */
}

/*
 * PostgreSQL: the population's saves of several replicas must not interleave (each
 * deletes every row and inserts its own). A save that finds another replica's in progress
 * skips its own rather than wait: that one is as fresh, give or take a refresh, and
 * waiting behind a save of 50,000 rows could outlast the store's statement timeout.
 * Its own key, not yw_sql_job_lock()'s (which waits): "tier pop" in ASCII.
 */
static const char sql_pg_try_lock_population[] =
    "SELECT CASE WHEN pg_try_advisory_xact_lock(?1) THEN 1 ELSE 0 END";
#define PG_LOCK_POPULATION INT64_C(0x7469657220706f70)

static grpc_status_code load_snapshot(yw_store_conn_t *conn, tier_load_t *load)
{
    char *msg = load->errmsg;
    size_t len = sizeof load->errmsg;
    yw_sql_t *st = yw_sql_prepare(conn, sql_population_get, msg, len);
    if (st == NULL) {
        return yw_sql_fail(conn, "store: prepare the population's read", msg, len);
    }
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW) {
        tier_snapshot_t *s = load->snapshot;
        s->time_s = yw_sql_column_i64(st, 0);
        s->time_ns = (int32_t)yw_sql_column_i64(st, 1);
        s->window_days = (int32_t)yw_sql_column_i64(st, 2);
        snprintf(s->end_day, sizeof s->end_day, "%s", yw_sql_column_text(st, 3, NULL));
        rc = YW_SQL_DONE;
    }
    yw_sql_done(st);
    if (rc != YW_SQL_DONE) {
        return yw_sql_fail(conn, "store: read population", msg, len);
    }

    if ((st = yw_sql_prepare(conn, sql_creators_get, msg, len)) == NULL) {
        return yw_sql_fail(conn, "store: prepare the creators' read", msg, len);
    }
    while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
        tier_input_t in = {
            .followers = yw_sql_column_i64(st, 2),
            .window_days = (int32_t)yw_sql_column_i64(st, 3),
            .notes = yw_sql_column_i64(st, 4),
            .video_notes = yw_sql_column_i64(st, 5),
            .impressions = yw_sql_column_i64(st, 6),
            .engagements = yw_sql_column_i64(st, 7),
            .views_last_7d = yw_sql_column_i64(st, 8),
            .views_prev_7d = yw_sql_column_i64(st, 9),
            .avg_completion_rate = yw_sql_column_f64(st, 10),
        };
        /* The primary key is never NULL: no need to tell NULL from "" here. */
        if (tier_snapshot_add(load->snapshot, yw_sql_column_text(st, 0, NULL),
                              yw_sql_column_text(st, 1, NULL), &in) != 0) {
            yw_sql_done(st);
            snprintf(msg, len, "store: out of memory loading creators");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
    }
    yw_sql_done(st);
    if (rc != YW_SQL_DONE) {
        return yw_sql_fail(conn, "store: read creators", msg, len);
    }
    if (tier_snapshot_seal(load->snapshot) != 0) {
        snprintf(msg, len, "store: out of memory sorting creators");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_store_load(yw_store_conn_t *conn, void *arg)
{
    tier_load_t *load = arg;
    char *msg = load->errmsg;
    size_t len = sizeof load->errmsg;
    msg[0] = '\0';
    load->snapshot = NULL;
    load->policy_created = 0;

    int found;
    grpc_status_code code = read_policy(conn, &load->policy, &found, msg, len);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    if (!found) {
        tier_policy_t p;
        tier_policy_default(&p);
        p.update_time_s = load->now_s;
        p.update_time_ns = load->now_ns;
        int64_t changes = 0;
        if ((code = insert_policy(conn, sql_policy_insert_default, &p, &changes, msg, len)) !=
            GRPC_STATUS_OK) {
            return code;
        }
        load->policy_created = changes > 0;
        /* Another replica may have written it (or a later version) first: read it back. */
        if ((code = read_policy(conn, &load->policy, &found, msg, len)) != GRPC_STATUS_OK) {
            return code;
        }
        if (!found) {
            snprintf(msg, len, "store: the default policy was written but cannot be read");
            return GRPC_STATUS_INTERNAL;
        }
    }

    if ((load->snapshot = tier_snapshot_new()) == NULL) {
        snprintf(msg, len, "store: out of memory loading creators");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    code = load_snapshot(conn, load);
    if (code != GRPC_STATUS_OK) {
        tier_snapshot_unref(load->snapshot);
        load->snapshot = NULL;
    }
    return code;
}

/* Binds creator i of `p` to the next CREATOR_PARAMS parameters of `b`. */
static void bind_creator(yw_sql_binder_t *bb, const tier_population_t *p, size_t i)
{
    const tier_creator_t *c = &p->snap->creators[i];
    const tier_result_t *r = &p->results[i];
    const tier_standing_t *s = &p->standings[i];
    yw_sql_binder_t b = *bb;
    yw_sql_bind_next_text(&b, c->creator_id);
    yw_sql_bind_next_text(&b, c->category);
    yw_sql_bind_next_i64(&b, c->in.followers);
    yw_sql_bind_next_i64(&b, c->in.window_days);
    yw_sql_bind_next_i64(&b, c->in.notes);
    yw_sql_bind_next_i64(&b, c->in.video_notes);
    yw_sql_bind_next_i64(&b, c->in.impressions);
    yw_sql_bind_next_i64(&b, c->in.engagements);
    yw_sql_bind_next_i64(&b, c->in.views_last_7d);
    yw_sql_bind_next_i64(&b, c->in.views_prev_7d);
    yw_sql_bind_next_f64(&b, c->in.avg_completion_rate);
    yw_sql_bind_next_i64(&b, r->tier);
    yw_sql_bind_next_f64(&b, r->score);
    yw_sql_bind_next_f64(&b, r->components.reach);
    yw_sql_bind_next_f64(&b, r->components.engagement);
    yw_sql_bind_next_f64(&b, r->components.video_momentum);
    yw_sql_bind_next_f64(&b, r->components.consistency);
    yw_sql_bind_next_f64(&b, r->rate_raw);
    yw_sql_bind_next_f64(&b, r->rate_smoothed);
    yw_sql_bind_next_f64(&b, r->rate_lower_bound);
    yw_sql_bind_next_f64(&b, s->percentile);
    yw_sql_bind_next_i64(&b, s->rising != 0);
    yw_sql_bind_next_i64(&b, r->insufficient_data != 0);
    *bb = b;
}

/* Runs a statement without parameters or rows; the store's status with `what` if it fails. */
static grpc_status_code exec_plain(yw_store_conn_t *conn, yw_store_job_t *job, const char *sql,
                                   const char *what)
{
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql, &code);
    if (st == NULL) {
        return code;
    }
    int rc = yw_sql_step(st);
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : yw_sql_job_fail(conn, job, what);
}

/* PostgreSQL: takes the population's lock unless another replica holds it (*got). */
static grpc_status_code pg_try_lock_population(yw_store_conn_t *conn, yw_store_job_t *job, int *got)
{
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_pg_try_lock_population, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_i64(st, 1, PG_LOCK_POPULATION);
    int rc = yw_sql_step(st);
    *got = rc == YW_SQL_ROW && yw_sql_column_i64(st, 0) == 1;
    yw_sql_done(st);
    return rc == YW_SQL_ROW ? GRPC_STATUS_OK
                            : yw_sql_job_fail(conn, job, "store: lock the saved population");
}

/* Inserts creators [from, from + rows) of `p` with one statement (rows: 1 or CHUNK_ROWS). */
static grpc_status_code insert_creators(yw_store_conn_t *conn, yw_store_job_t *job,
                                        const tier_population_t *p, size_t from, size_t rows)
{
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st =
        yw_sql_job_stmt(conn, job, rows == 1 ? sql_creator_put : sql_creators_put_chunk, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    for (size_t i = from; i < from + rows; i++) {
        bind_creator(&b, p, i);
    }
    int rc = yw_sql_step(st);
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : yw_sql_job_fail(conn, job, "store: write creators");
}

grpc_status_code tier_store_save(yw_store_conn_t *conn, yw_store_job_t *job)
{
    tier_save_job_t *j = (tier_save_job_t *)job;
    const tier_population_t *p = j->pop;
    j->saved = 0;
    j->skipped = 0;
    grpc_status_code code;
    if (yw_sql_backend(conn) == YW_SQL_POSTGRES) {
        int got = 0;
        if ((code = pg_try_lock_population(conn, job, &got)) != GRPC_STATUS_OK) {
            return code;
        }
        if (!got) {
            j->skipped = 1;
            return GRPC_STATUS_OK;
        }
    }
    if (pthread_once(&chunk_once, chunk_sql_build) != 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "store: cannot build the creators' insert");
        return GRPC_STATUS_INTERNAL;
    }
    if ((code = exec_plain(conn, job, sql_creators_clear, "store: clear creators")) !=
        GRPC_STATUS_OK) {
        return code;
    }
    size_t n = p->snap->n, i = 0;
    for (; n - i >= CHUNK_ROWS; i += CHUNK_ROWS) {
        if ((code = insert_creators(conn, job, p, i, CHUNK_ROWS)) != GRPC_STATUS_OK) {
            return code;
        }
    }
    for (; i < n; i++) {
        if ((code = insert_creators(conn, job, p, i, 1)) != GRPC_STATUS_OK) {
            return code;
        }
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_population_put, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_i64(&b, p->snap->time_s);
    yw_sql_bind_next_i64(&b, p->snap->time_ns);
    yw_sql_bind_next_i64(&b, p->snap->window_days);
    yw_sql_bind_next_text(&b, p->snap->end_day);
    yw_sql_bind_next_i64(&b, p->policy.version);
    yw_sql_bind_next_i64(&b, p->compute_time_s);
    yw_sql_bind_next_i64(&b, p->compute_time_ns);
    yw_sql_bind_next_i64(&b, (int64_t)p->snap->n);
    int rc = yw_sql_step(st);
    yw_sql_done(st);
    if (rc != YW_SQL_DONE) {
        return yw_sql_job_fail(conn, job, "store: write population");
    }
    j->saved = p->snap->n;
    return GRPC_STATUS_OK;
}
