/* tier_store.c — tier scoring's schema and store jobs. See tier_store.h. */
#include "services/tier_scoring/tier_store.h"

#include <stdio.h>
#include <string.h>

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

/* ---- policies ---- */

#define POLICY_COLUMNS                                                                             \
    "version, head_min_followers, mid_min_followers, tail_min_followers, weight_reach, "           \
    "weight_engagement, weight_video_momentum, weight_consistency, rising_top_fraction, "          \
    "window_days, update_time_s, update_time_ns"

static const char sql_policy_current[] =
    "SELECT " POLICY_COLUMNS " FROM tier_policies ORDER BY version DESC LIMIT 1";
static const char sql_policy_insert[] =
    "INSERT INTO tier_policies(" POLICY_COLUMNS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

static void policy_from_row(sqlite3_stmt *st, tier_policy_t *p)
{
    p->version = sqlite3_column_int64(st, 0);
    p->head_min_followers = sqlite3_column_int64(st, 1);
    p->mid_min_followers = sqlite3_column_int64(st, 2);
    p->tail_min_followers = sqlite3_column_int64(st, 3);
    p->weights.reach = sqlite3_column_double(st, 4);
    p->weights.engagement = sqlite3_column_double(st, 5);
    p->weights.video_momentum = sqlite3_column_double(st, 6);
    p->weights.consistency = sqlite3_column_double(st, 7);
    p->rising_top_fraction = sqlite3_column_double(st, 8);
    p->window_days = sqlite3_column_int(st, 9);
    p->update_time_s = sqlite3_column_int64(st, 10);
    p->update_time_ns = sqlite3_column_int(st, 11);
}

static grpc_status_code insert_policy(yw_store_conn_t *conn, const tier_policy_t *p, char *msg,
                                      size_t len)
{
    sqlite3_stmt *st = yw_store_prepare(conn, sql_policy_insert, msg, len);
    if (st == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    yw_store_binder_t b = YW_STORE_BINDER(st);
    yw_store_bind_next_i64(&b, p->version);
    yw_store_bind_next_i64(&b, p->head_min_followers);
    yw_store_bind_next_i64(&b, p->mid_min_followers);
    yw_store_bind_next_i64(&b, p->tail_min_followers);
    yw_store_bind_next_f64(&b, p->weights.reach);
    yw_store_bind_next_f64(&b, p->weights.engagement);
    yw_store_bind_next_f64(&b, p->weights.video_momentum);
    yw_store_bind_next_f64(&b, p->weights.consistency);
    yw_store_bind_next_f64(&b, p->rising_top_fraction);
    yw_store_bind_next_i64(&b, p->window_days);
    yw_store_bind_next_i64(&b, p->update_time_s);
    yw_store_bind_next_i64(&b, p->update_time_ns);
    int rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    grpc_status_code code = GRPC_STATUS_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) { /* extended codes are on */
        snprintf(msg, len, "policy.version: version %lld exists already", (long long)p->version);
        code = GRPC_STATUS_ALREADY_EXISTS;
    } else if (rc != SQLITE_DONE) {
        code = yw_store_fail(conn, rc, "store: insert policy", msg, len);
    }
    yw_store_stmt_done(st);
    return code;
}

grpc_status_code tier_store_put_policy(yw_store_conn_t *conn, yw_store_job_t *job)
{
    tier_policy_job_t *j = (tier_policy_job_t *)job;
    return insert_policy(conn, &j->policy, job->errmsg, sizeof job->errmsg);
}

/* ---- the population ---- */

static const char sql_population_get[] =
    "SELECT read_time_s, read_time_ns, window_days, end_day FROM tier_population WHERE id = 1";
static const char sql_population_put[] =
    "INSERT OR REPLACE INTO tier_population(id, read_time_s, read_time_ns, window_days, end_day, "
    "policy_version, compute_time_s, compute_time_ns, creators) "
    "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_creators_clear[] = "DELETE FROM tier_creators";
static const char sql_creators_get[] =
    "SELECT creator_id, category, followers, window_days, notes, video_notes, impressions, "
    "engagements, views_last_7d, views_prev_7d, avg_completion_rate "
    "FROM tier_creators ORDER BY creator_id";
static const char sql_creator_put[] =
    "INSERT INTO tier_creators(creator_id, category, followers, window_days, notes, video_notes, "
    "impressions, engagements, views_last_7d, views_prev_7d, avg_completion_rate, tier, score, "
    "reach, engagement, video_momentum, consistency, engagement_rate_raw, "
    "engagement_rate_smoothed, engagement_rate_lower_bound, percentile, rising, "
    "insufficient_data) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21, ?22, ?23)";

static grpc_status_code load_snapshot(yw_store_conn_t *conn, tier_load_t *load)
{
    char *msg = load->errmsg;
    size_t len = sizeof load->errmsg;
    sqlite3_stmt *st = yw_store_prepare(conn, sql_population_get, msg, len);
    if (st == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        tier_snapshot_t *s = load->snapshot;
        s->time_s = sqlite3_column_int64(st, 0);
        s->time_ns = sqlite3_column_int(st, 1);
        s->window_days = sqlite3_column_int(st, 2);
        snprintf(s->end_day, sizeof s->end_day, "%s", yw_store_column_text(st, 3, NULL));
        rc = SQLITE_DONE;
    }
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_fail(conn, rc, "store: read population", msg, len);
    }

    if ((st = yw_store_prepare(conn, sql_creators_get, msg, len)) == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        tier_input_t in = {
            .followers = sqlite3_column_int64(st, 2),
            .window_days = sqlite3_column_int(st, 3),
            .notes = sqlite3_column_int64(st, 4),
            .video_notes = sqlite3_column_int64(st, 5),
            .impressions = sqlite3_column_int64(st, 6),
            .engagements = sqlite3_column_int64(st, 7),
            .views_last_7d = sqlite3_column_int64(st, 8),
            .views_prev_7d = sqlite3_column_int64(st, 9),
            .avg_completion_rate = sqlite3_column_double(st, 10),
        };
        if (id == NULL || tier_snapshot_add(load->snapshot, (const char *)id,
                                            yw_store_column_text(st, 1, NULL), &in) != 0) {
            yw_store_stmt_done(st);
            snprintf(msg, len, "store: out of memory loading creators");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
    }
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_fail(conn, rc, "store: read creators", msg, len);
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

    sqlite3_stmt *st = yw_store_prepare(conn, sql_policy_current, msg, len);
    if (st == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        policy_from_row(st, &load->policy);
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        load->policy_created = 1;
    }
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_fail(conn, rc, "store: read policy", msg, len);
    }
    if (load->policy_created) {
        tier_policy_default(&load->policy);
        load->policy.update_time_s = load->now_s;
        load->policy.update_time_ns = load->now_ns;
        grpc_status_code code = insert_policy(conn, &load->policy, msg, len);
        if (code != GRPC_STATUS_OK) {
            return code;
        }
    }

    if ((load->snapshot = tier_snapshot_new()) == NULL) {
        snprintf(msg, len, "store: out of memory loading creators");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    grpc_status_code code = load_snapshot(conn, load);
    if (code != GRPC_STATUS_OK) {
        tier_snapshot_unref(load->snapshot);
        load->snapshot = NULL;
    }
    return code;
}

static int bind_creator(sqlite3_stmt *st, const tier_population_t *p, size_t i)
{
    const tier_creator_t *c = &p->snap->creators[i];
    const tier_result_t *r = &p->results[i];
    const tier_standing_t *s = &p->standings[i];
    yw_store_binder_t b = YW_STORE_BINDER(st);
    yw_store_bind_next_text(&b, c->creator_id);
    yw_store_bind_next_text(&b, c->category);
    yw_store_bind_next_i64(&b, c->in.followers);
    yw_store_bind_next_i64(&b, c->in.window_days);
    yw_store_bind_next_i64(&b, c->in.notes);
    yw_store_bind_next_i64(&b, c->in.video_notes);
    yw_store_bind_next_i64(&b, c->in.impressions);
    yw_store_bind_next_i64(&b, c->in.engagements);
    yw_store_bind_next_i64(&b, c->in.views_last_7d);
    yw_store_bind_next_i64(&b, c->in.views_prev_7d);
    yw_store_bind_next_f64(&b, c->in.avg_completion_rate);
    yw_store_bind_next_i64(&b, r->tier);
    yw_store_bind_next_f64(&b, r->score);
    yw_store_bind_next_f64(&b, r->components.reach);
    yw_store_bind_next_f64(&b, r->components.engagement);
    yw_store_bind_next_f64(&b, r->components.video_momentum);
    yw_store_bind_next_f64(&b, r->components.consistency);
    yw_store_bind_next_f64(&b, r->rate_raw);
    yw_store_bind_next_f64(&b, r->rate_smoothed);
    yw_store_bind_next_f64(&b, r->rate_lower_bound);
    yw_store_bind_next_f64(&b, s->percentile);
    yw_store_bind_next_i64(&b, s->rising != 0);
    yw_store_bind_next_i64(&b, r->insufficient_data != 0);
    return b.rc;
}

grpc_status_code tier_store_save(yw_store_conn_t *conn, yw_store_job_t *job)
{
    tier_save_job_t *j = (tier_save_job_t *)job;
    const tier_population_t *p = j->pop;
    char *msg = job->errmsg;
    size_t len = sizeof job->errmsg;
    j->saved = 0;

    sqlite3_stmt *st = yw_store_prepare(conn, sql_creators_clear, msg, len);
    if (st == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    int rc = sqlite3_step(st);
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_fail(conn, rc, "store: clear creators", msg, len);
    }
    for (size_t i = 0; i < p->snap->n; i++) {
        if ((st = yw_store_prepare(conn, sql_creator_put, msg, len)) == NULL) {
            return GRPC_STATUS_INTERNAL;
        }
        rc = bind_creator(st, p, i);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        yw_store_stmt_done(st);
        if (rc != SQLITE_DONE) {
            return yw_store_fail(conn, rc, "store: write creator", msg, len);
        }
    }
    if ((st = yw_store_prepare(conn, sql_population_put, msg, len)) == NULL) {
        return GRPC_STATUS_INTERNAL;
    }
    yw_store_binder_t b = YW_STORE_BINDER(st);
    yw_store_bind_next_i64(&b, p->snap->time_s);
    yw_store_bind_next_i64(&b, p->snap->time_ns);
    yw_store_bind_next_i64(&b, p->snap->window_days);
    yw_store_bind_next_text(&b, p->snap->end_day);
    yw_store_bind_next_i64(&b, p->policy.version);
    yw_store_bind_next_i64(&b, p->compute_time_s);
    yw_store_bind_next_i64(&b, p->compute_time_ns);
    yw_store_bind_next_i64(&b, (int64_t)p->snap->n);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    yw_store_stmt_done(st);
    if (rc != SQLITE_DONE) {
        return yw_store_fail(conn, rc, "store: write population", msg, len);
    }
    j->saved = p->snap->n;
    return GRPC_STATUS_OK;
}
