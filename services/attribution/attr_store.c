/* attr_store.c — attribution.db schema, start-up load and write jobs. See attr_store.h. */
#include "services/attribution/attr_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_log.h"

const yw_migration_t attr_migrations[] = {
    {1, "CREATE TABLE settings("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  click_window_ns INTEGER NOT NULL, view_window_ns INTEGER NOT NULL,"
        "  half_life_ns INTEGER NOT NULL, engaged_view_ms INTEGER NOT NULL,"
        "  late_window_ns INTEGER NOT NULL, default_model INTEGER NOT NULL,"
        "  currency TEXT NOT NULL, version INTEGER NOT NULL, update_ns INTEGER NOT NULL);"
        "CREATE TABLE conversions("
        "  order_id TEXT PRIMARY KEY, viewer_id TEXT NOT NULL, product_id TEXT NOT NULL,"
        "  quantity INTEGER NOT NULL, amount_minor INTEGER NOT NULL, currency TEXT NOT NULL,"
        "  occur_ns INTEGER NOT NULL, ingest_ns INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE refunds("
        "  refund_id TEXT PRIMARY KEY,"
        "  order_id TEXT NOT NULL REFERENCES conversions(order_id),"
        "  amount_minor INTEGER NOT NULL, occur_ns INTEGER NOT NULL,"
        "  ingest_ns INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX refunds_by_order ON refunds(order_id);"
        "CREATE TABLE conversion_touches("
        "  order_id TEXT NOT NULL REFERENCES conversions(order_id), event_id TEXT NOT NULL,"
        "  creator_id TEXT NOT NULL, note_id TEXT NOT NULL, kind INTEGER NOT NULL,"
        "  watch_ms INTEGER NOT NULL, occur_ns INTEGER NOT NULL,"
        "  PRIMARY KEY (order_id, event_id)) WITHOUT ROWID;"
        "CREATE TABLE exposure_rollups("
        "  creator_id TEXT NOT NULL, day INTEGER NOT NULL, impressions INTEGER NOT NULL,"
        "  views INTEGER NOT NULL, clicks INTEGER NOT NULL,"
        "  PRIMARY KEY (creator_id, day)) WITHOUT ROWID;"
        "CREATE TABLE pruned_segments("
        "  seq INTEGER PRIMARY KEY, pruned_ns INTEGER NOT NULL, events INTEGER NOT NULL);"},
};
const size_t attr_n_migrations = sizeof attr_migrations / sizeof attr_migrations[0];

/** The job status for a failed SQLite step, with the message in job->errmsg. */
static grpc_status_code attr__sql_fail(yw_store_conn_t *conn, yw_store_job_t *job, int rc,
                                       const char *what)
{
    snprintf(job->errmsg, sizeof job->errmsg, "%s: %s", what, sqlite3_errmsg(yw_store_db(conn)));
    grpc_status_code st = yw_store_status(rc);
    return st == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : st;
}

static const char *attr__col_text(sqlite3_stmt *s, int i, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    *len = (size_t)sqlite3_column_bytes(s, i);
    return t != NULL ? t : "";
}

/* ---- load ---- */

static const char attr__sql_get_settings[] =
    "SELECT click_window_ns, view_window_ns, half_life_ns, engaged_view_ms, late_window_ns,"
    " default_model, currency, version, update_ns FROM settings WHERE id = 1";
static const char attr__sql_get_pruned[] = "SELECT seq FROM pruned_segments ORDER BY seq";
static const char attr__sql_get_rollups[] =
    "SELECT creator_id, day, impressions, views, clicks FROM exposure_rollups";
static const char attr__sql_get_conversions[] =
    "SELECT order_id, viewer_id, product_id, quantity, amount_minor, occur_ns FROM conversions";
static const char attr__sql_get_touches[] =
    "SELECT order_id, event_id, creator_id, note_id, kind, watch_ms, occur_ns"
    " FROM conversion_touches";
static const char attr__sql_get_refunds[] =
    "SELECT refund_id, order_id, amount_minor, occur_ns FROM refunds ORDER BY ingest_ns";

static grpc_status_code attr__load_fail(attr_load_t *ld, sqlite3 *db, const char *what)
{
    snprintf(ld->err, sizeof ld->err, "%s: %s", what, sqlite3_errmsg(db));
    return GRPC_STATUS_INTERNAL;
}

grpc_status_code attr_store_load(yw_store_conn_t *conn, void *arg)
{
    attr_load_t *ld = arg;
    attr_state_t *st = ld->st;
    sqlite3 *db = yw_store_db(conn);
    sqlite3_stmt *s;
    int rc;

    if ((s = yw_store_stmt(conn, attr__sql_get_settings)) == NULL) {
        return attr__load_fail(ld, db, "settings");
    }
    if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        attr_settings_t set;
        attr_settings_default(&set);
        set.click_window_ns = sqlite3_column_int64(s, 0);
        set.view_window_ns = sqlite3_column_int64(s, 1);
        set.half_life_ns = sqlite3_column_int64(s, 2);
        set.engaged_view_ms = sqlite3_column_int64(s, 3);
        set.late_window_ns = sqlite3_column_int64(s, 4);
        set.default_model = sqlite3_column_int(s, 5);
        size_t len;
        const char *cur = attr__col_text(s, 6, &len);
        snprintf(set.currency, sizeof set.currency, "%.3s", cur);
        set.version = sqlite3_column_int64(s, 7);
        set.update_ns = sqlite3_column_int64(s, 8);
        st->settings = set;
        attr_settings_rules(&set, &st->rules);
        ld->settings_found = 1;
    } else if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "settings");
    }

    if ((s = yw_store_stmt(conn, attr__sql_get_pruned)) == NULL) {
        return attr__load_fail(ld, db, "pruned_segments");
    }
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (ld->n_pruned == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *p = realloc(ld->pruned, cap * sizeof *p);
            if (p == NULL) {
                snprintf(ld->err, sizeof ld->err, "out of memory");
                return GRPC_STATUS_RESOURCE_EXHAUSTED;
            }
            ld->pruned = p;
        }
        ld->pruned[ld->n_pruned++] = (uint64_t)sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "pruned_segments");
    }

    if ((s = yw_store_stmt(conn, attr__sql_get_rollups)) == NULL) {
        return attr__load_fail(ld, db, "exposure_rollups");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len;
        const char *creator = attr__col_text(s, 0, &len);
        if (attr_state_add_exposure_rollup(st, creator, len, sqlite3_column_int(s, 1),
                                           sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3),
                                           sqlite3_column_int64(s, 4)) != 0) {
            snprintf(ld->err, sizeof ld->err, "out of memory");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        ld->rollups++;
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "exposure_rollups");
    }

    if ((s = yw_store_stmt(conn, attr__sql_get_conversions)) == NULL) {
        return attr__load_fail(ld, db, "conversions");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        attr_conversion_in_t in;
        memset(&in, 0, sizeof in);
        in.order_id = attr__col_text(s, 0, &in.order_id_len);
        in.viewer_id = attr__col_text(s, 1, &in.viewer_len);
        in.product_id = attr__col_text(s, 2, &in.product_len);
        in.quantity = sqlite3_column_int64(s, 3);
        in.amount_minor = sqlite3_column_int64(s, 4);
        in.occur_ns = sqlite3_column_int64(s, 5);
        attr_conv_t *c = NULL;
        int a = attr_conversion_admit(st, &in, &c);
        if (a == ATTR_ADMITTED) {
            a = attr_conversion_commit(st, c, ld->now_ns);
        }
        if (a < 0) {
            snprintf(ld->err, sizeof ld->err, "out of memory loading conversions");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        ld->conversions++;
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "conversions");
    }

    if ((s = yw_store_stmt(conn, attr__sql_get_touches)) == NULL) {
        return attr__load_fail(ld, db, "conversion_touches");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t olen, elen, clen, nlen;
        const char *order = attr__col_text(s, 0, &olen);
        const char *event = attr__col_text(s, 1, &elen);
        const char *creator = attr__col_text(s, 2, &clen);
        const char *note = attr__col_text(s, 3, &nlen);
        attr_conv_t *c = attr_conversion_find(st, order, olen);
        if (c == NULL) {
            continue; /* cannot happen: foreign key */
        }
        if (attr_conversion_add_cand(st, c, event, creator, clen, note, nlen,
                                     sqlite3_column_int(s, 4), sqlite3_column_int64(s, 5),
                                     sqlite3_column_int64(s, 6), 1) != 0) {
            snprintf(ld->err, sizeof ld->err, "out of memory loading touches");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        ld->touches++;
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "conversion_touches");
    }

    if ((s = yw_store_stmt(conn, attr__sql_get_refunds)) == NULL) {
        return attr__load_fail(ld, db, "refunds");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t rlen, olen;
        const char *rid = attr__col_text(s, 0, &rlen);
        const char *order = attr__col_text(s, 1, &olen);
        attr_refund_t *r = NULL;
        int64_t left = 0;
        int a = attr_refund_admit(st, rid, rlen, order, olen, sqlite3_column_int64(s, 2),
                                  sqlite3_column_int64(s, 3), &r, &left);
        if (a == ATTR_ADMITTED) {
            a = attr_refund_commit(st, r);
        } else if (a > 0) {
            snprintf(ld->err, sizeof ld->err,
                     "refund %.64s of order %.64s does not fit its order (%d): the database "
                     "is inconsistent",
                     rid, order, a);
            return GRPC_STATUS_DATA_LOSS;
        }
        if (a < 0) {
            snprintf(ld->err, sizeof ld->err, "out of memory loading refunds");
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        ld->refunds++;
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "refunds");
    }
    return GRPC_STATUS_OK;
}

/* ---- writes ---- */

static const char attr__sql_put_conversion[] =
    "INSERT INTO conversions(order_id, viewer_id, product_id, quantity, amount_minor,"
    " currency, occur_ns, ingest_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

grpc_status_code attr_store_put_conversions(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_conv_job_t *j = (attr_conv_job_t *)job;
    for (size_t i = 0; i < j->n; i++) {
        const attr_conv_row_t *r = &j->rows[i];
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_conversion);
        if (s == NULL) {
            return attr__sql_fail(conn, job, SQLITE_ERROR, "prepare conversions insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->viewer_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 3, r->product_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, r->quantity)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, r->amount_minor)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 6, j->currency, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 7, r->occur_ns)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 8, j->ingest_ns)) != SQLITE_OK) {
            return attr__sql_fail(conn, job, rc, "bind conversion");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return attr__sql_fail(conn, job, rc, "insert conversion");
        }
    }
    return GRPC_STATUS_OK;
}

static const char attr__sql_put_refund[] =
    "INSERT INTO refunds(refund_id, order_id, amount_minor, occur_ns, ingest_ns)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";

grpc_status_code attr_store_put_refunds(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_refund_job_t *j = (attr_refund_job_t *)job;
    for (size_t i = 0; i < j->n; i++) {
        const attr_refund_row_t *r = &j->rows[i];
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_refund);
        if (s == NULL) {
            return attr__sql_fail(conn, job, SQLITE_ERROR, "prepare refunds insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->refund_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 3, r->amount_minor)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, r->occur_ns)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, j->ingest_ns)) != SQLITE_OK) {
            return attr__sql_fail(conn, job, rc, "bind refund");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return attr__sql_fail(conn, job, rc, "insert refund");
        }
    }
    return GRPC_STATUS_OK;
}

static const char attr__sql_put_touch[] =
    "INSERT OR IGNORE INTO conversion_touches(order_id, event_id, creator_id, note_id, kind,"
    " watch_ms, occur_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

grpc_status_code attr_store_put_touches(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_touch_job_t *j = (attr_touch_job_t *)job;
    for (size_t i = 0; i < j->n; i++) {
        const attr_touch_row_t *r = &j->rows[i];
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_touch);
        if (s == NULL) {
            return attr__sql_fail(conn, job, SQLITE_ERROR, "prepare touches insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->event_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 3, r->creator_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 4, r->note_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(s, 5, r->kind)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 6, r->watch_ms)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 7, r->occur_ns)) != SQLITE_OK) {
            return attr__sql_fail(conn, job, rc, "bind touch");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return attr__sql_fail(conn, job, rc, "insert touch");
        }
    }
    return GRPC_STATUS_OK;
}

static const char attr__sql_put_settings[] =
    "INSERT OR REPLACE INTO settings(id, click_window_ns, view_window_ns, half_life_ns,"
    " engaged_view_ms, late_window_ns, default_model, currency, version, update_ns)"
    " VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

grpc_status_code attr_store_put_settings(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_settings_job_t *j = (attr_settings_job_t *)job;
    const attr_settings_t *v = &j->settings;
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_settings);
    if (s == NULL) {
        return attr__sql_fail(conn, job, SQLITE_ERROR, "prepare settings");
    }
    int rc;
    if ((rc = sqlite3_bind_int64(s, 1, v->click_window_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 2, v->view_window_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 3, v->half_life_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 4, v->engaged_view_ms)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 5, v->late_window_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int(s, 6, v->default_model)) != SQLITE_OK ||
        (rc = sqlite3_bind_text(s, 7, v->currency, -1, SQLITE_TRANSIENT)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 8, v->version)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 9, v->update_ns)) != SQLITE_OK) {
        return attr__sql_fail(conn, job, rc, "bind settings");
    }
    if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
        return attr__sql_fail(conn, job, rc, "store settings");
    }
    return GRPC_STATUS_OK;
}

/* ---- pruning a segment ---- */

/** Counts per (creator, day) of one segment, built on the writer thread. */
typedef struct st_attr__agg_t {
    attr_intern_t creators;
    attr_map64_t cells; /* creator << 32 | (uint32) day -> index into counts */
    int64_t (*counts)[3];
    int32_t *days;
    uint32_t *who;
    size_t n, cap;
} attr__agg_t;

static int attr__agg_visit(void *arg, const attr_log_event_t *ev)
{
    attr__agg_t *a = arg;
    uint32_t cid;
    if (attr_intern(&a->creators, ev->creator.s, ev->creator.len, &cid) != 0) {
        return -ENOMEM;
    }
    int32_t day = attr_day_of(ev->occur_ns);
    uint64_t key = ((uint64_t)cid << 32) | (uint32_t)day;
    uint64_t idx;
    if (!attr_map64_get(&a->cells, key, &idx)) {
        if (a->n == a->cap) {
            size_t nc = a->cap ? a->cap * 2 : 256;
            int64_t(*c)[3] = realloc(a->counts, nc * sizeof *c);
            if (c == NULL) {
                return -ENOMEM;
            }
            a->counts = c;
            int32_t *d = realloc(a->days, nc * sizeof *d);
            if (d == NULL) {
                return -ENOMEM;
            }
            a->days = d;
            uint32_t *w = realloc(a->who, nc * sizeof *w);
            if (w == NULL) {
                return -ENOMEM;
            }
            a->who = w;
            a->cap = nc;
        }
        idx = a->n++;
        memset(a->counts[idx], 0, sizeof a->counts[idx]);
        a->days[idx] = day;
        a->who[idx] = cid;
        if (attr_map64_put(&a->cells, key, idx) != 0) {
            return -ENOMEM;
        }
    }
    int k = ev->kind == ATTR_KIND_IMPRESSION ? 0 : ev->kind == ATTR_KIND_VIEW ? 1 : 2;
    if (ev->kind >= ATTR_KIND_IMPRESSION && ev->kind <= ATTR_KIND_CLICK) {
        a->counts[idx][k]++;
    }
    return 0;
}

static void attr__agg_free(attr__agg_t *a)
{
    attr_intern_free(&a->creators);
    attr_map64_free(&a->cells);
    free(a->counts);
    free(a->days);
    free(a->who);
}

static const char attr__sql_add_rollup[] =
    "INSERT INTO exposure_rollups(creator_id, day, impressions, views, clicks)"
    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(creator_id, day) DO UPDATE SET"
    " impressions = impressions + excluded.impressions, views = views + excluded.views,"
    " clicks = clicks + excluded.clicks";
static const char attr__sql_put_pruned[] =
    "INSERT INTO pruned_segments(seq, pruned_ns, events) VALUES (?1, ?2, ?3)";

grpc_status_code attr_store_prune_segment(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_prune_job_t *j = (attr_prune_job_t *)job;
    attr__agg_t a;
    memset(&a, 0, sizeof a);
    attr_intern_init(&a.creators);
    attr_map64_init(&a.cells);
    attr_log_segstat_t st;
    int rc = attr_log_read_segment(j->path, 0, attr__agg_visit, &a, &st, job->errmsg,
                                   sizeof job->errmsg);
    if (rc != 0) {
        attr__agg_free(&a);
        if (job->errmsg[0] == '\0') {
            snprintf(job->errmsg, sizeof job->errmsg, "segment %llu: %s",
                     (unsigned long long)j->seq, strerror(-rc));
        }
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL;
    }
    j->events = st.events;
    grpc_status_code status = GRPC_STATUS_OK;
    for (size_t i = 0; i < a.n && status == GRPC_STATUS_OK; i++) {
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_add_rollup);
        if (s == NULL) {
            status = attr__sql_fail(conn, job, SQLITE_ERROR, "prepare rollup");
            break;
        }
        size_t len;
        const char *creator = attr_intern_str(&a.creators, a.who[i], &len);
        if ((rc = sqlite3_bind_text(s, 1, creator, (int)len, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(s, 2, a.days[i])) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 3, a.counts[i][0])) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, a.counts[i][1])) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, a.counts[i][2])) != SQLITE_OK) {
            status = attr__sql_fail(conn, job, rc, "bind rollup");
        } else if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            status = attr__sql_fail(conn, job, rc, "add rollup");
        }
    }
    attr__agg_free(&a);
    if (status != GRPC_STATUS_OK) {
        return status;
    }
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_pruned);
    if (s == NULL) {
        return attr__sql_fail(conn, job, SQLITE_ERROR, "prepare pruned");
    }
    if ((rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)j->seq)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 2, j->now_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 3, (sqlite3_int64)j->events)) != SQLITE_OK) {
        return attr__sql_fail(conn, job, rc, "bind pruned");
    }
    if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
        return attr__sql_fail(conn, job, rc, "record pruned segment");
    }
    return GRPC_STATUS_OK;
}
