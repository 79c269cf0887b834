/* attr_store.c — attribution.db schema, start-up load and write jobs. See attr_store.h. */
#include "services/attribution/attr_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vec.h"
#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_xlog.h"

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
    /* Conversions stay in the database, not in memory. Each gets a number (in the order
     * they were stored), which the conversion key index (attr_ckey.h) points at; rows of
     * version 1 are numbered in the order they were ingested. */
    {2, "ALTER TABLE conversions ADD COLUMN seq INTEGER;"
        "CREATE TEMP TABLE attr_v2_seq AS SELECT order_id,"
        "  row_number() OVER (ORDER BY ingest_ns, order_id) AS seq FROM conversions;"
        "UPDATE conversions SET seq = t.seq FROM attr_v2_seq AS t"
        "  WHERE t.order_id = conversions.order_id;"
        "DROP TABLE attr_v2_seq;"
        "CREATE UNIQUE INDEX conversions_by_seq ON conversions(seq);"},
    /* How far the stored candidate touches are complete (attr_touch_mark_t): a start
     * after a crash looks up again only what came after it. */
    {3, "CREATE TABLE touch_mark("
        "  id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,"
        "  seg INTEGER NOT NULL, off INTEGER NOT NULL);"},
};
_Static_assert(sizeof attr_migrations / sizeof attr_migrations[0] == ATTR_N_MIGRATIONS,
               "ATTR_N_MIGRATIONS");
const size_t attr_n_migrations = sizeof attr_migrations / sizeof attr_migrations[0];

/* ---- load ---- */

static const char attr__sql_get_settings[] =
    "SELECT click_window_ns, view_window_ns, half_life_ns, engaged_view_ms, late_window_ns,"
    " default_model, currency, version, update_ns FROM settings WHERE id = 1";
static const char attr__sql_get_pruned[] = "SELECT seq FROM pruned_segments ORDER BY seq";
static const char attr__sql_get_rollups[] =
    "SELECT creator_id, day, impressions, views, clicks FROM exposure_rollups";
static const char attr__sql_count_conversions[] =
    "SELECT count(*), coalesce(max(seq), 0) FROM conversions";
/* The marks of the start-up snapshot (attr_snap.h). The sums of amounts in two halves, so
 * that SQLite's integer sum() cannot overflow (it fails past int64, which 9,224 orders of
 * the largest amount reach): whole 10^9 units, and what is left of each amount. */
#define ATTR__SQL_AMOUNT_SUMS                                                                      \
    "coalesce(sum(amount_minor / 1000000000), 0), coalesce(sum(amount_minor % 1000000000), 0)"
static const char attr__sql_conversion_sum[] = "SELECT " ATTR__SQL_AMOUNT_SUMS " FROM conversions";
static const char attr__sql_refund_marks[] =
    "SELECT count(*), " ATTR__SQL_AMOUNT_SUMS " FROM refunds";
static const char attr__sql_touch_count[] = "SELECT count(*) FROM conversion_touches";
static const char attr__sql_get_touch_mark[] = "SELECT seq, seg, off FROM touch_mark WHERE id = 1";

static grpc_status_code attr__load_fail(attr_load_t *ld, sqlite3 *db, const char *what)
{
    snprintf(ld->err, sizeof ld->err, "%s: %s", what, sqlite3_errmsg(db));
    return GRPC_STATUS_INTERNAL;
}

/** The exact sum of ATTR__SQL_AMOUNT_SUMS's two columns from column `i` on. */
static attr_sum_t attr__amount_sum(sqlite3_stmt *s, int i)
{
    return (attr_sum_t)sqlite3_column_int64(s, i) * 1000000000 + sqlite3_column_int64(s, i + 1);
}

/* The rows of attr__sql_get_pruned appended to *v (n of them): SQLITE_DONE, SQLITE_NOMEM or
 * the step's failure. */
static int attr__pruned_rows(sqlite3_stmt *s, uint64_t **v, size_t *n)
{
    size_t cap = *n;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (YW_VEC_GROW(*v, *n, cap, 1, 64) != 0) {
            return SQLITE_NOMEM;
        }
        (*v)[(*n)++] = (uint64_t)sqlite3_column_int64(s, 0);
    }
    return rc;
}

/** The pruned segments, the conversions' count and highest seq, and (want_marks) sums. */
static grpc_status_code attr__load_marks(yw_store_conn_t *conn, attr_load_t *ld)
{
    sqlite3 *db = yw_store_db(conn);
    sqlite3_stmt *s;
    int rc;
    free(ld->pruned);
    ld->pruned = NULL;
    ld->n_pruned = 0;
    if ((s = yw_store_stmt(conn, attr__sql_get_pruned)) == NULL) {
        return attr__load_fail(ld, db, "pruned_segments");
    }
    if ((rc = attr__pruned_rows(s, &ld->pruned, &ld->n_pruned)) == SQLITE_NOMEM) {
        snprintf(ld->err, sizeof ld->err, "out of memory");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "pruned_segments");
    }

    if ((s = yw_store_stmt(conn, attr__sql_count_conversions)) == NULL ||
        sqlite3_step(s) != SQLITE_ROW) {
        return attr__load_fail(ld, db, "conversions");
    }
    ld->conversions = (uint64_t)sqlite3_column_int64(s, 0);
    ld->max_seq = (uint64_t)sqlite3_column_int64(s, 1);
    if (!ld->want_marks) {
        return GRPC_STATUS_OK;
    }
    if ((s = yw_store_stmt(conn, attr__sql_conversion_sum)) == NULL ||
        sqlite3_step(s) != SQLITE_ROW) {
        return attr__load_fail(ld, db, "conversions");
    }
    ld->amount_sum = attr__amount_sum(s, 0);
    if ((s = yw_store_stmt(conn, attr__sql_refund_marks)) == NULL ||
        sqlite3_step(s) != SQLITE_ROW) {
        return attr__load_fail(ld, db, "refunds");
    }
    ld->refunds = (uint64_t)sqlite3_column_int64(s, 0);
    ld->refund_sum = attr__amount_sum(s, 1);
    if ((s = yw_store_stmt(conn, attr__sql_touch_count)) == NULL ||
        sqlite3_step(s) != SQLITE_ROW) {
        return attr__load_fail(ld, db, "conversion_touches");
    }
    ld->touches = (uint64_t)sqlite3_column_int64(s, 0);
    return GRPC_STATUS_OK;
}

grpc_status_code attr_store_marks(yw_store_conn_t *conn, void *arg)
{
    attr_load_t *ld = arg;
    ld->want_marks = 1;
    return attr__load_marks(conn, ld);
}

int attr_store_read_pruned(sqlite3 *db, uint64_t **seqs, size_t *n)
{
    *seqs = NULL;
    *n = 0;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, attr__sql_get_pruned, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = attr__pruned_rows(s, seqs, n);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(*seqs);
        *seqs = NULL;
        *n = 0;
    }
    return rc == SQLITE_DONE ? 0 : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
}

/* The settings of a row of attr__sql_get_settings. */
static void attr__settings_row(sqlite3_stmt *s, attr_settings_t *set)
{
    attr_settings_default(set);
    set->click_window_ns = sqlite3_column_int64(s, 0);
    set->view_window_ns = sqlite3_column_int64(s, 1);
    set->half_life_ns = sqlite3_column_int64(s, 2);
    set->engaged_view_ms = sqlite3_column_int64(s, 3);
    set->late_window_ns = sqlite3_column_int64(s, 4);
    set->default_model = sqlite3_column_int(s, 5);
    size_t len;
    const char *cur = yw_store_column_text(s, 6, &len);
    snprintf(set->currency, sizeof set->currency, "%.3s", cur);
    set->version = sqlite3_column_int64(s, 7);
    set->update_ns = sqlite3_column_int64(s, 8);
}

int attr_store_read_settings(sqlite3 *db, attr_settings_t *out)
{
    attr_settings_default(out);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, attr__sql_get_settings, -1, &s, NULL);
    int found = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        attr__settings_row(s, out);
        found = 1;
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? found : -EIO;
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
        attr__settings_row(s, &set);
        st->settings = set;
        attr_settings_rules(&set, &st->rules);
        ld->settings_found = 1;
    } else if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "settings");
    }

    grpc_status_code code = attr__load_marks(conn, ld);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    st->n_stored_convs = ld->conversions;
    if ((s = yw_store_stmt(conn, attr__sql_get_touch_mark)) == NULL) {
        return attr__load_fail(ld, db, "touch_mark");
    }
    if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ld->touch_mark.seq = (uint64_t)sqlite3_column_int64(s, 0);
        ld->touch_mark.seg = (uint64_t)sqlite3_column_int64(s, 1);
        ld->touch_mark.off = (uint64_t)sqlite3_column_int64(s, 2);
    } else if (rc != SQLITE_DONE) {
        return attr__load_fail(ld, db, "touch_mark");
    }
    if (!ld->skip_rollups) {
        code = attr_store_load_rollups(conn, ld);
    }
    return code;
}

grpc_status_code attr_store_load_rollups(yw_store_conn_t *conn, void *arg)
{
    attr_load_t *ld = arg;
    attr_state_t *st = ld->st;
    sqlite3 *db = yw_store_db(conn);
    sqlite3_stmt *s;
    int rc;
    if ((s = yw_store_stmt(conn, attr__sql_get_rollups)) == NULL) {
        return attr__load_fail(ld, db, "exposure_rollups");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len;
        const char *creator = yw_store_column_text(s, 0, &len);
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
    return GRPC_STATUS_OK;
}

/* ---- stored conversions, read back ---- */

void attr_convset_free(attr_convset_t *set)
{
    yw_arena_free(&set->strs);
    free(set->convs);
    free(set->touches);
    memset(set, 0, sizeof *set);
}

/** A NUL-terminated copy of n bytes in the set's arena (NULL: no memory). */
static const char *attr__set_copy(attr_convset_t *set, const char *s, size_t n)
{
    return yw_arena_strdup(&set->strs, s, n);
}

/** Adds the conversion row of `s` (columns: order_id, viewer_id, product_id, quantity,
 *  amount_minor, occur_ns, seq) to the set. */
static int attr__set_add_conv(attr_convset_t *set, sqlite3_stmt *s)
{
    if (YW_VEC_GROW(set->convs, set->n, set->cap, 1, 8) != 0) {
        return -ENOMEM;
    }
    attr_stored_conv_t *c = &set->convs[set->n];
    memset(c, 0, sizeof *c);
    size_t len;
    const char *t = yw_store_column_text(s, 0, &len);
    c->in.order_id = attr__set_copy(set, t, len);
    c->in.order_id_len = len;
    t = yw_store_column_text(s, 1, &len);
    c->in.viewer_id = attr__set_copy(set, t, len);
    c->in.viewer_len = len;
    t = yw_store_column_text(s, 2, &len);
    c->in.product_id = attr__set_copy(set, t, len);
    c->in.product_len = len;
    c->in.quantity = sqlite3_column_int64(s, 3);
    c->in.amount_minor = sqlite3_column_int64(s, 4);
    c->in.occur_ns = sqlite3_column_int64(s, 5);
    c->in.seq = (uint64_t)sqlite3_column_int64(s, 6);
    if (c->in.order_id == NULL || c->in.viewer_id == NULL || c->in.product_id == NULL) {
        return -ENOMEM;
    }
    c->first_touch = set->n_touches;
    set->n++;
    return 0;
}

/** Adds the touch row of `s` (columns from `at`: event_id, creator_id, note_id, kind,
 *  watch_ms, occur_ns) to the set's last conversion. */
static int attr__set_add_touch_at(attr_convset_t *set, sqlite3_stmt *s, int at)
{
    if (YW_VEC_GROW(set->touches, set->n_touches, set->cap_touches, 1, 8) != 0) {
        return -ENOMEM;
    }
    attr_stored_touch_t *t = &set->touches[set->n_touches];
    size_t len;
    const char *x = yw_store_column_text(s, at, &len);
    t->event_id = attr__set_copy(set, x, len);
    x = yw_store_column_text(s, at + 1, &t->creator_len);
    t->creator_id = attr__set_copy(set, x, t->creator_len);
    x = yw_store_column_text(s, at + 2, &t->note_len);
    t->note_id = attr__set_copy(set, x, t->note_len);
    t->kind = sqlite3_column_int(s, at + 3);
    t->watch_ms = sqlite3_column_int64(s, at + 4);
    t->occur_ns = sqlite3_column_int64(s, at + 5);
    if (t->event_id == NULL || t->creator_id == NULL || t->note_id == NULL) {
        return -ENOMEM;
    }
    set->n_touches++;
    set->convs[set->n - 1].n_touches++;
    return 0;
}

static int attr__set_add_touch(attr_convset_t *set, sqlite3_stmt *s)
{
    return attr__set_add_touch_at(set, s, 1);
}

static int attr__read_fail(yw_store_conn_t *conn, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(yw_store_db(conn)));
    return -EIO;
}

/*
 * One conversion with the sum of its refunds and its touches, in one statement (a row
 * per touch, or one with NULL touch columns): ExplainConversion of an order that is not
 * in memory runs this, so it is one step loop, not three statements.
 */
#define ATTR__SQL_CONV_JOINED(where)                                                               \
    "SELECT c.order_id, c.viewer_id, c.product_id, c.quantity, c.amount_minor, c.occur_ns,"        \
    " c.seq, (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds AS r"                           \
    " WHERE r.order_id = c.order_id), t.event_id, t.creator_id, t.note_id, t.kind, t.watch_ms,"    \
    " t.occur_ns FROM conversions AS c LEFT JOIN conversion_touches AS t"                          \
    " ON t.order_id = c.order_id WHERE " where " ORDER BY t.event_id"

static const char attr__sql_conv_by_id[] = ATTR__SQL_CONV_JOINED("c.order_id = ?1");
static const char attr__sql_conv_by_seq[] = ATTR__SQL_CONV_JOINED("c.seq = ?1");

/**
 * Steps a bound ATTR__SQL_CONV_JOINED statement: the conversion into the set (when
 * `accept` says so for its first row: viewer, product, time). 1: added, 0: none or not
 * accepted, or a negative errno.
 */
static int attr__get_joined(yw_store_conn_t *conn, sqlite3_stmt *s, const char *viewer,
                            const char *product, int64_t min_occur_ns, attr_convset_t *set,
                            char *err, size_t errlen)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        return 0;
    }
    if (rc != SQLITE_ROW) {
        (void)sqlite3_reset(s);
        return attr__read_fail(conn, "conversion", err, errlen);
    }
    size_t len;
    const char *id = yw_store_column_text(s, 0, &len);
    if (viewer != NULL) {
        /* The key index points by hash: the strings and the time decide. */
        const char *v = (const char *)sqlite3_column_text(s, 1);
        const char *p = (const char *)sqlite3_column_text(s, 2);
        if (v == NULL || p == NULL || strcmp(v, viewer) != 0 || strcmp(p, product) != 0 ||
            sqlite3_column_int64(s, 5) < min_occur_ns) {
            (void)sqlite3_reset(s);
            return 0;
        }
        for (size_t j = 0; j < set->n; j++) {
            if (set->convs[j].in.order_id_len == len &&
                memcmp(set->convs[j].in.order_id, id, len) == 0) {
                (void)sqlite3_reset(s);
                return 0;
            }
        }
    }
    if (attr__set_add_conv(set, s) != 0) {
        (void)sqlite3_reset(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    set->convs[set->n - 1].refunded = sqlite3_column_int64(s, 7);
    do {
        if (sqlite3_column_type(s, 8) != SQLITE_NULL && attr__set_add_touch_at(set, s, 8) != 0) {
            (void)sqlite3_reset(s);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    } while ((rc = sqlite3_step(s)) == SQLITE_ROW);
    (void)sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        return attr__read_fail(conn, "conversion_touches", err, errlen);
    }
    return 1;
}

int attr_store_get_conversion(yw_store_conn_t *conn, const char *order_id, size_t len,
                              attr_convset_t *set, char *err, size_t errlen)
{
    if (len > INT32_MAX) {
        return 0;
    }
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_conv_by_id);
    if (s == NULL || sqlite3_bind_text(s, 1, order_id, (int)len, SQLITE_STATIC) != SQLITE_OK) {
        return attr__read_fail(conn, "conversion", err, errlen);
    }
    return attr__get_joined(conn, s, NULL, NULL, 0, set, err, errlen);
}

int attr_store_get_conversion_by_seq(yw_store_conn_t *conn, uint64_t seq, const char *viewer,
                                     const char *product, int64_t min_occur_ns, attr_convset_t *set,
                                     char *err, size_t errlen)
{
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_conv_by_seq);
    if (s == NULL || sqlite3_bind_int64(s, 1, (sqlite3_int64)seq) != SQLITE_OK) {
        return attr__read_fail(conn, "conversion", err, errlen);
    }
    return attr__get_joined(conn, s, viewer, product, min_occur_ns, set, err, errlen);
}

static const char attr__sql_refund_exists[] = "SELECT 1 FROM refunds WHERE refund_id = ?1";

int attr_store_refund_exists(yw_store_conn_t *conn, const char *refund_id, char *err, size_t errlen)
{
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_refund_exists);
    if (s == NULL || sqlite3_bind_text(s, 1, refund_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return attr__read_fail(conn, "refunds", err, errlen);
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    if (rc == SQLITE_DONE) {
        return 0;
    }
    return attr__read_fail(conn, "refunds", err, errlen);
}

/* -- the scan: three cursors in order_id order, merged -- */

static const char attr__sql_scan_convs[] =
    "SELECT order_id, viewer_id, product_id, quantity, amount_minor, occur_ns, seq"
    " FROM conversions ORDER BY order_id";
static const char attr__sql_scan_touches[] =
    "SELECT order_id, event_id, creator_id, note_id, kind, watch_ms, occur_ns"
    " FROM conversion_touches ORDER BY order_id, event_id";
static const char attr__sql_scan_refunds[] =
    "SELECT order_id, sum(amount_minor) FROM refunds GROUP BY order_id ORDER BY order_id";

/** SQLite's BINARY collation: memcmp, then the shorter first. */
static int attr__idcmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

int attr_store_scan_conversions(yw_store_conn_t *conn, attr_conv_visit_fn fn, void *arg, char *err,
                                size_t errlen)
{
    sqlite3_stmt *cs = yw_store_stmt(conn, attr__sql_scan_convs);
    sqlite3_stmt *ts = yw_store_stmt(conn, attr__sql_scan_touches);
    sqlite3_stmt *rs = yw_store_stmt(conn, attr__sql_scan_refunds);
    if (cs == NULL || ts == NULL || rs == NULL) {
        return attr__read_fail(conn, "scanning conversions", err, errlen);
    }
    attr_convset_t one;
    memset(&one, 0, sizeof one);
    int out = 0;
    int trc = sqlite3_step(ts), rrc = sqlite3_step(rs), crc;
    while ((crc = sqlite3_step(cs)) == SQLITE_ROW) {
        /* One conversion at a time: the set's arrays and string blocks are reused. */
        one.n = one.n_touches = 0;
        yw_arena_reset(&one.strs);
        if (attr__set_add_conv(&one, cs) != 0) {
            out = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            break;
        }
        attr_stored_conv_t *c = &one.convs[0];
        while (trc == SQLITE_ROW) {
            size_t len;
            const char *id = yw_store_column_text(ts, 0, &len);
            int cmp = attr__idcmp(id, len, c->in.order_id, c->in.order_id_len);
            if (cmp > 0) {
                break;
            }
            if (cmp == 0 && attr__set_add_touch(&one, ts) != 0) {
                out = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                break;
            }
            trc = sqlite3_step(ts); /* (cmp < 0: a touch of no conversion; skipped) */
        }
        while (out == 0 && rrc == SQLITE_ROW) {
            size_t len;
            const char *id = yw_store_column_text(rs, 0, &len);
            int cmp = attr__idcmp(id, len, c->in.order_id, c->in.order_id_len);
            if (cmp > 0) {
                break;
            }
            if (cmp == 0) {
                c->refunded = sqlite3_column_int64(rs, 1);
            }
            rrc = sqlite3_step(rs);
        }
        if (out != 0) {
            break;
        }
        if ((trc != SQLITE_ROW && trc != SQLITE_DONE) ||
            (rrc != SQLITE_ROW && rrc != SQLITE_DONE)) {
            out = attr__read_fail(conn, "scanning touches and refunds", err, errlen);
            break;
        }
        if ((out = fn(arg, &one)) != 0) {
            break;
        }
    }
    if (out == 0 && crc != SQLITE_DONE) {
        out = attr__read_fail(conn, "scanning conversions", err, errlen);
    }
    (void)sqlite3_reset(cs);
    (void)sqlite3_reset(ts);
    (void)sqlite3_reset(rs);
    attr_convset_free(&one);
    return out;
}

/* ---- writes ---- */

static const char attr__sql_put_conversion[] =
    "INSERT OR IGNORE INTO conversions(order_id, viewer_id, product_id, quantity, amount_minor,"
    " currency, occur_ns, ingest_ns, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

grpc_status_code attr_store_put_conversions(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_conv_job_t *j = (attr_conv_job_t *)job;
    for (size_t i = 0; i < j->n; i++) {
        const attr_conv_row_t *r = &j->rows[i];
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_conversion);
        if (s == NULL) {
            return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare conversions insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->viewer_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 3, r->product_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, r->quantity)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, r->amount_minor)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 6, j->currency, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 7, r->occur_ns)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 8, j->ingest_ns)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 9, (sqlite3_int64)r->seq)) != SQLITE_OK) {
            return yw_store_job_fail(conn, job, rc, "bind conversion");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return yw_store_job_fail(conn, job, rc, "insert conversion");
        }
        if (j->inserted != NULL) {
            j->inserted[i] = sqlite3_changes(yw_store_db(conn)) > 0;
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
            return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare refunds insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->refund_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 3, r->amount_minor)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, r->occur_ns)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, j->ingest_ns)) != SQLITE_OK) {
            return yw_store_job_fail(conn, job, rc, "bind refund");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return yw_store_job_fail(conn, job, rc, "insert refund");
        }
    }
    return GRPC_STATUS_OK;
}

static const char attr__sql_put_touch[] =
    "INSERT OR IGNORE INTO conversion_touches(order_id, event_id, creator_id, note_id, kind,"
    " watch_ms, occur_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

static const char attr__sql_put_touch_mark[] =
    "INSERT OR REPLACE INTO touch_mark(id, seq, seg, off) VALUES (1, ?1, ?2, ?3)";

grpc_status_code attr_store_put_touches(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_touch_job_t *j = (attr_touch_job_t *)job;
    if (j->mark.seq != 0 || j->mark.seg != 0) {
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_touch_mark);
        if (s == NULL) {
            return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare touch mark");
        }
        int rc;
        if ((rc = sqlite3_bind_int64(s, 1, (int64_t)j->mark.seq)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 2, (int64_t)j->mark.seg)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 3, (int64_t)j->mark.off)) != SQLITE_OK) {
            return yw_store_job_fail(conn, job, rc, "bind touch mark");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return yw_store_job_fail(conn, job, rc, "touch mark");
        }
    }
    for (size_t i = 0; i < j->n; i++) {
        const attr_touch_row_t *r = &j->rows[i];
        sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_touch);
        if (s == NULL) {
            return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare touches insert");
        }
        int rc;
        if ((rc = sqlite3_bind_text(s, 1, r->order_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 2, r->event_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 3, r->creator_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_text(s, 4, r->note_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(s, 5, r->kind)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 6, r->watch_ms)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 7, r->occur_ns)) != SQLITE_OK) {
            return yw_store_job_fail(conn, job, rc, "bind touch");
        }
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            return yw_store_job_fail(conn, job, rc, "insert touch");
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
        return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare settings");
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
        return yw_store_job_fail(conn, job, rc, "bind settings");
    }
    if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
        return yw_store_job_fail(conn, job, rc, "store settings");
    }
    return GRPC_STATUS_OK;
}

/* ---- pruning a segment ---- */

/** The counts of one (creator, day): impressions, views, clicks. */
typedef struct st_attr__cell_t {
    int64_t counts[3];
    int32_t day;
    uint32_t who; /* the creator's id in attr__agg_t.creators */
} attr__cell_t;

/** Counts per (creator, day) of one segment, built on the writer thread. */
typedef struct st_attr__agg_t {
    attr_intern_t creators;
    attr_map64_t cell_of; /* creator << 32 | (uint32) day -> index into cells */
    attr__cell_t *cells;  /* in the order they were met */
    size_t n, cap;
} attr__agg_t;

static int attr__agg_visit(void *arg, const attr_xlog_event_t *ev)
{
    attr__agg_t *a = arg;
    uint32_t cid;
    if (attr_intern(&a->creators, ev->creator.s, ev->creator.len, &cid) != 0) {
        return -ENOMEM;
    }
    int32_t day = attr_day_of(ev->occur_ns);
    uint64_t key = ((uint64_t)cid << 32) | (uint32_t)day;
    uint64_t idx;
    if (!attr_map64_get(&a->cell_of, key, &idx)) {
        if (YW_VEC_GROW(a->cells, a->n, a->cap, 1, 256) != 0) {
            return -ENOMEM;
        }
        idx = a->n++;
        attr__cell_t *cell = &a->cells[idx];
        memset(cell->counts, 0, sizeof cell->counts);
        cell->day = day;
        cell->who = cid;
        if (attr_map64_put(&a->cell_of, key, idx) != 0) {
            return -ENOMEM;
        }
    }
    int k = ev->kind == ATTR_KIND_IMPRESSION ? 0 : ev->kind == ATTR_KIND_VIEW ? 1 : 2;
    if (ev->kind >= ATTR_KIND_IMPRESSION && ev->kind <= ATTR_KIND_CLICK) {
        a->cells[idx].counts[k]++;
    }
    return 0;
}

static void attr__agg_free(attr__agg_t *a)
{
    attr_intern_free(&a->creators);
    attr_map64_free(&a->cell_of);
    free(a->cells);
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
    attr_map64_init(&a.cell_of);
    attr_xlog_segstat_t st;
    int rc = attr_xlog_read_segment(j->path, 0, attr__agg_visit, &a, &st, job->errmsg,
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
            status = yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare rollup");
            break;
        }
        size_t len;
        const attr__cell_t *cell = &a.cells[i];
        const char *creator = attr_intern_str(&a.creators, cell->who, &len);
        if ((rc = sqlite3_bind_text(s, 1, creator, (int)len, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(s, 2, cell->day)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 3, cell->counts[0])) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 4, cell->counts[1])) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(s, 5, cell->counts[2])) != SQLITE_OK) {
            status = yw_store_job_fail(conn, job, rc, "bind rollup");
        } else if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            status = yw_store_job_fail(conn, job, rc, "add rollup");
        }
    }
    attr__agg_free(&a);
    if (status != GRPC_STATUS_OK) {
        return status;
    }
    sqlite3_stmt *s = yw_store_stmt(conn, attr__sql_put_pruned);
    if (s == NULL) {
        return yw_store_job_fail(conn, job, SQLITE_ERROR, "prepare pruned");
    }
    if ((rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)j->seq)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 2, j->now_ns)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(s, 3, (sqlite3_int64)j->events)) != SQLITE_OK) {
        return yw_store_job_fail(conn, job, rc, "bind pruned");
    }
    if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
        return yw_store_job_fail(conn, job, rc, "record pruned segment");
    }
    return GRPC_STATUS_OK;
}
