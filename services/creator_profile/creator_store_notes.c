/*
 * creator_store_notes.c — RecordNoteStats, the store job of creator_store.h that writes a
 * batch of note stats: its rows checked in order (day, creator, note owner) and upserted
 * in one transaction, row by row on SQLite and in a few statements a batch on
 * PostgreSQL (record_stats_pg()). The rules that keep it correct across replicas are in
 * creator_store.c's top comment; this file only holds the job.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sql.h"
#include "common/utf8.h"
#include "services/creator_profile/creator_batch.h"
#include "services/creator_profile/creator_day.h"
#include "services/creator_profile/creator_store.h"
#include "services/creator_profile/creator_store_int.h"
#include "services/creator_profile/creator_sync.h"

/* ---- RecordNoteStats ---- */

static const char sql_note_owner[] = "SELECT creator_id FROM note_stats WHERE note_id = ?1 LIMIT 1";
static const char sql_upsert_stats[] =
    "INSERT INTO note_stats(note_id, day, creator_id, is_video, impressions, views, "
    "video_plays, avg_watch_ms, completion_rate, likes, collects, comments, shares, "
    "follows_gained) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
    "ON CONFLICT (note_id, day) DO UPDATE SET creator_id = excluded.creator_id, "
    "is_video = excluded.is_video, impressions = excluded.impressions, "
    "views = excluded.views, video_plays = excluded.video_plays, "
    "avg_watch_ms = excluded.avg_watch_ms, completion_rate = excluded.completion_rate, "
    "likes = excluded.likes, collects = excluded.collects, comments = excluded.comments, "
    "shares = excluded.shares, follows_gained = excluded.follows_gained";

/* What note_owner() found. */
enum { NOTE_NEW = 0, NOTE_SAME_OWNER = 1, NOTE_OTHER_OWNER = 2 };

/*
 * Whether note `note_id` has rows, and whose: *found gets NOTE_NEW, NOTE_SAME_OWNER (it
 * belongs to `creator_id`) or NOTE_OTHER_OWNER (then `owner` gets its creator_id).
 */
static grpc_status_code note_owner(yw_store_conn_t *conn, yw_store_job_t *job, const char *note_id,
                                   const char *creator_id, char owner[CREATOR_ID_MAX + 1],
                                   int *found)
{
    grpc_status_code code = GRPC_STATUS_OK;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_note_owner, &code);
    *found = NOTE_NEW;
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, note_id);
    int rc = yw_sql_step(st);
    if (rc == YW_SQL_ROW) {
        const char *o = yw_sql_column_text(st, 0, NULL);
        if (creator_id != NULL && strcmp(o, creator_id) == 0) {
            *found = NOTE_SAME_OWNER;
        } else {
            *found = NOTE_OTHER_OWNER;
            snprintf(owner, CREATOR_ID_MAX + 1, "%s", o);
        }
    } else if (rc != YW_SQL_DONE) {
        code = yw_sql_job_fail(conn, job, "look up note");
    }
    yw_sql_done(st);
    return code;
}

/* The error of row i, whose note belongs to creator `owner`, not to the row's creator. */
static grpc_status_code note_taken(yw_store_job_t *job, size_t i,
                                   const Yaowei__Creator__V1__NoteDailyStats *s, const char *owner)
{
    char q1[300], q2[300], q3[300];
    return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                              "stats[%zu].note_id: note %s belongs to creator %s, not %s", i,
                              yw_quote(s->note_id, YW_QUOTE_MAX, q1, sizeof q1),
                              yw_quote(owner, YW_QUOTE_MAX, q2, sizeof q2),
                              yw_quote(s->creator_id, YW_QUOTE_MAX, q3, sizeof q3));
}

/* The error of row i, whose creator does not exist. */
static grpc_status_code creator_missing(yw_store_job_t *job, size_t i, const char *id)
{
    char q[300];
    return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT,
                              "stats[%zu].creator_id: creator %s does not exist", i,
                              yw_quote(id, YW_QUOTE_MAX, q, sizeof q));
}

/* The error of row i, whose day is not a date. */
static grpc_status_code day_invalid(yw_store_job_t *job, size_t i)
{
    return yw_store_job_failf(job, GRPC_STATUS_INVALID_ARGUMENT, "stats[%zu].day: not a date", i);
}

/* Row i's note must be new or already belong to row i's creator (SQLite). */
static grpc_status_code check_note_owner(yw_store_conn_t *conn, yw_store_job_t *job, size_t i,
                                         const Yaowei__Creator__V1__NoteDailyStats *s)
{
    char owner[CREATOR_ID_MAX + 1];
    int found;
    grpc_status_code code = note_owner(conn, job, s->note_id, s->creator_id, owner, &found);
    if (code == GRPC_STATUS_OK && found == NOTE_OTHER_OWNER) {
        code = note_taken(job, i, s, owner);
    }
    return code;
}

/* Binds row `s` (its day parsed) to the next 14 parameters of an upsert. */
static void bind_stats_row(yw_sql_binder_t *b, const Yaowei__Creator__V1__NoteDailyStats *s,
                           int64_t day)
{
    yw_sql_bind_next_text(b, s->note_id);
    yw_sql_bind_next_i64(b, day);
    yw_sql_bind_next_text(b, s->creator_id);
    yw_sql_bind_next_i64(b, s->is_video ? 1 : 0);
    yw_sql_bind_next_i64(b, s->impressions);
    yw_sql_bind_next_i64(b, s->views);
    yw_sql_bind_next_i64(b, s->video_plays);
    yw_sql_bind_next_i64(b, s->avg_watch_ms);
    yw_sql_bind_next_f64(b, s->completion_rate);
    yw_sql_bind_next_i64(b, s->likes);
    yw_sql_bind_next_i64(b, s->collects);
    yw_sql_bind_next_i64(b, s->comments);
    yw_sql_bind_next_i64(b, s->shares);
    yw_sql_bind_next_i64(b, s->follows_gained);
}

/*
 * The upserts of creator_store_record_stats() on SQLite, row by row: each statement is a
 * call into the library, not a round trip, and its one writer already takes turns.
 */
static grpc_status_code upsert_rows(yw_store_conn_t *conn, creator_record_stats_job_t *j)
{
    yw_store_job_t *job = &j->job;
    grpc_status_code code = GRPC_STATUS_OK;
    /* The last creator_id seen to exist: batches are mostly one creator. */
    const char *known = NULL;

    for (size_t i = 0; i < j->n_stats; i++) {
        const Yaowei__Creator__V1__NoteDailyStats *s = j->stats[i];
        int64_t day;
        if (creator_day_parse(s->day, &day) != 0) {
            return day_invalid(job, i);
        }
        if (known == NULL || strcmp(known, s->creator_id) != 0) {
            int exists = 0;
            if ((code = creator_store__exists(conn, job, s->creator_id, &exists)) !=
                GRPC_STATUS_OK) {
                return code;
            }
            if (!exists) {
                return creator_missing(job, i, s->creator_id);
            }
            known = s->creator_id;
        }
        if ((code = check_note_owner(conn, job, i, s)) != GRPC_STATUS_OK) {
            return code;
        }
        yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_upsert_stats, &code);
        if (st == NULL) {
            return code;
        }
        yw_sql_binder_t b = YW_SQL_BINDER(st);
        bind_stats_row(&b, s, day);
        if ((code = creator_store__step_done(conn, job, st, "upsert note stats")) !=
            GRPC_STATUS_OK) {
            return code;
        }
        j->upserted++;
    }
    return GRPC_STATUS_OK;
}

/*
 * ---- RecordNoteStats on PostgreSQL: a batch in a few round trips ----
 *
 * Row by row, a batch of n rows took about 5n round trips. Here it takes, whatever n: one
 * owner lookup of every distinct note, one statement locking the new ones (in byte order),
 * one reading every distinct creator FOR KEY SHARE, and the owner lookup again (now that
 * no other batch can give a locked note rows, nor a held creator lose its notes). The
 * rows are then checked in order against what was read: the same checks (day, creator,
 * owner), in the same order and with the same messages as row by row, so the same first
 * bad row fails the batch; a note new to the database belongs to the first row naming
 * it, as when that row's upsert went first. Then the upserts, up to
 * CREATOR_UPSERT_CHUNK_MAX rows a statement, in (note_id, day) order: two batches lock
 * the rows they share in one order.
 */

/* Whose each distinct note of a batch is: `ids` in byte order, `owner[k]` NULL when new. */
typedef struct {
    const char **ids;    /* borrowed from the job's rows */
    char **owner;        /* owned; NULL: no rows (new) */
    const char **first;  /* the owner the batch gives a new note (borrowed), as checked */
    unsigned char *lock; /* this job holds the note's lock */
    size_t n;
} note_set_t;

static void note_set_free(note_set_t *ns)
{
    for (size_t k = 0; ns->owner != NULL && k < ns->n; k++) {
        free(ns->owner[k]);
    }
    free(ns->ids);
    free(ns->owner);
    free(ns->first);
    free(ns->lock);
}

static int cmp_id(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* The index of `id` in the sorted distinct `ids` (it is there). */
static size_t id_index(const char *const *ids, size_t n, const char *id)
{
    const char *const *at = bsearch(id, ids, n, sizeof *ids, cmp_id);
    return (size_t)(at - ids);
}

/* For each distinct note, its owner (creator_id of any of its rows) or NULL. */
static const char sql_note_owners_pg[] =
    "SELECT k, (SELECT creator_id FROM note_stats WHERE note_id = k LIMIT 1) "
    "FROM unnest(?1::text[]) AS k";
/*
 * The lock of each key, in the array's order (a function scan, no sort: the caller passes
 * the keys in byte order). The same lock as yw_sql_job_lock(key).
 */
static const char sql_lock_keys_pg[] =
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(?1::text[]) AS k";
/* The creators of the batch that exist, each held FOR KEY SHARE until commit. */
static const char sql_creators_locked_pg[] =
    "SELECT creator_id FROM creators WHERE creator_id = ANY(?1::text[]) ORDER BY creator_id "
    "FOR KEY SHARE";

/* Builds `items` (n) into a bound array parameter `*arr` (freed by the caller). */
static grpc_status_code text_array(yw_store_job_t *job, const char *const *items, size_t n,
                                   char **arr)
{
    if (creator_pg_text_array(items, n, arr) != 0) {
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory building a batch");
    }
    return GRPC_STATUS_OK;
}

/*
 * Reads the owners of the notes `which` selects (non-zero entries; all when NULL) into
 * ns->owner, replacing what was there.
 */
static grpc_status_code read_owners(yw_store_conn_t *conn, yw_store_job_t *job, note_set_t *ns,
                                    const unsigned char *which)
{
    const char **sel = malloc((ns->n ? ns->n : 1) * sizeof *sel);
    char *arr = NULL;
    size_t m = 0;
    grpc_status_code code = GRPC_STATUS_OK;
    if (sel == NULL) {
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory looking up notes");
    }
    for (size_t k = 0; k < ns->n; k++) {
        if (which == NULL || which[k]) {
            sel[m++] = ns->ids[k];
        }
    }
    if (m == 0 || (code = text_array(job, sel, m, &arr)) != GRPC_STATUS_OK) {
        free(sel);
        return code;
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_note_owners_pg, &code);
    if (st != NULL) {
        yw_sql_bind_text(st, 1, arr);
        int rc = YW_SQL_DONE;
        while (code == GRPC_STATUS_OK && (rc = yw_sql_step(st)) == YW_SQL_ROW) {
            size_t k = id_index(ns->ids, ns->n, yw_sql_column_text(st, 0, NULL));
            free(ns->owner[k]);
            ns->owner[k] = NULL;
            if (!yw_sql_column_is_null(st, 1)) {
                ns->owner[k] = strdup(yw_sql_column_text(st, 1, NULL));
                if (ns->owner[k] == NULL) {
                    code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                              "out of memory looking up notes");
                }
            }
        }
        if (code == GRPC_STATUS_OK && rc != YW_SQL_DONE) {
            code = yw_sql_job_fail(conn, job, "look up note");
        }
        yw_sql_done(st);
    }
    free(arr);
    free(sel);
    return code;
}

/*
 * Takes the locks of the new notes this job does not hold yet, in byte order of note_id
 * (two batches that share new notes lock them in the same order: neither waits for the
 * other in a cycle). Sets `*took` when it locked any.
 */
static grpc_status_code lock_new_notes(yw_store_conn_t *conn, yw_store_job_t *job, note_set_t *ns,
                                       int *took)
{
    char(*keys)[CREATOR_LOCK_KEY_MAX] = malloc((ns->n ? ns->n : 1) * sizeof *keys);
    const char **ptrs = malloc((ns->n ? ns->n : 1) * sizeof *ptrs);
    char *arr = NULL;
    size_t m = 0;
    grpc_status_code code = GRPC_STATUS_OK;
    *took = 0;
    if (keys == NULL || ptrs == NULL) {
        free(keys);
        free(ptrs);
        return yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory locking notes");
    }
    for (size_t k = 0; k < ns->n && code == GRPC_STATUS_OK; k++) {
        if (ns->owner[k] != NULL || ns->lock[k]) {
            continue;
        }
        if (creator_lock_key(CREATOR_LOCK_NOTE, ns->ids[k], keys[m], sizeof keys[m]) < 0) {
            char q[300];
            code = yw_store_job_failf(job, GRPC_STATUS_INTERNAL, "lock %s%s: name too long",
                                      CREATOR_LOCK_NOTE,
                                      yw_quote(ns->ids[k], YW_QUOTE_MAX, q, sizeof q));
            break;
        }
        ptrs[m] = keys[m];
        m++;
        ns->lock[k] = 1;
    }
    if (code == GRPC_STATUS_OK && m > 0 &&
        (code = text_array(job, ptrs, m, &arr)) == GRPC_STATUS_OK) {
        code = yw_sql_job_exec(conn, job, sql_lock_keys_pg, (const char *const *)&arr, 1, "lock");
        *took = 1;
    }
    free(arr);
    free(keys);
    free(ptrs);
    return code;
}

/*
 * Reads the batch's distinct creators FOR KEY SHARE: `exists[c]` for each of `ids` (n,
 * sorted, distinct).
 */
static grpc_status_code lock_creators(yw_store_conn_t *conn, yw_store_job_t *job,
                                      const char *const *ids, size_t n, unsigned char *exists)
{
    char *arr = NULL;
    grpc_status_code code = text_array(job, ids, n, &arr);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_creators_locked_pg, &code);
    if (st != NULL) {
        yw_sql_bind_text(st, 1, arr);
        int rc;
        while ((rc = yw_sql_step(st)) == YW_SQL_ROW) {
            exists[id_index(ids, n, yw_sql_column_text(st, 0, NULL))] = 1;
        }
        if (rc != YW_SQL_DONE) {
            code = yw_sql_job_fail(conn, job, "look up creator");
        }
        yw_sql_done(st);
    }
    free(arr);
    return code;
}

/*
 * The rows in order, checked as upsert_rows() checks them, against `ns` and the
 * creators' `exists`; `days[i]` gets row i's day.
 */
static grpc_status_code check_rows(creator_record_stats_job_t *j, note_set_t *ns,
                                   const char *const *creators, size_t n_creators,
                                   const unsigned char *exists, int64_t *days)
{
    for (size_t i = 0; i < j->n_stats; i++) {
        const Yaowei__Creator__V1__NoteDailyStats *s = j->stats[i];
        if (creator_day_parse(s->day, &days[i]) != 0) {
            return day_invalid(&j->job, i);
        }
        if (!exists[id_index(creators, n_creators, s->creator_id)]) {
            return creator_missing(&j->job, i, s->creator_id);
        }
        size_t k = id_index(ns->ids, ns->n, s->note_id);
        const char *owner = ns->owner[k] != NULL ? ns->owner[k] : ns->first[k];
        if (owner == NULL) {
            ns->first[k] = s->creator_id; /* its first rows go in now */
        } else if (strcmp(owner, s->creator_id) != 0) {
            return note_taken(&j->job, i, s, owner);
        }
    }
    return GRPC_STATUS_OK;
}

/* Row order for finding rows with one (note_id, day): by key, then by position. */
typedef struct {
    const char *note_id;
    int64_t day;
    size_t i;
} row_key_t;

static int cmp_row_key(const void *a, const void *b)
{
    const row_key_t *x = a, *y = b;
    int c = strcmp(x->note_id, y->note_id);
    if (c != 0) {
        return c;
    }
    if (x->day != y->day) {
        return x->day < y->day ? -1 : 1;
    }
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * The rows to upsert into `*order` (a new array; `*n_order` of them), by (note_id, day):
 * of rows with one (note_id, day) only the last, which row by row overwrote the others
 * (one statement may not update a row twice). In key order, two batches writing the same
 * rows lock them in the same order. Returns 0 or -ENOMEM.
 */
static int upsert_order(creator_record_stats_job_t *j, const int64_t *days, size_t **order,
                        size_t *n_order)
{
    row_key_t *keys = malloc(j->n_stats * sizeof *keys);
    *order = calloc(j->n_stats, sizeof **order);
    *n_order = 0;
    if (keys == NULL || *order == NULL) {
        free(keys);
        return -ENOMEM;
    }
    for (size_t i = 0; i < j->n_stats; i++) {
        keys[i] = (row_key_t){j->stats[i]->note_id, days[i], i};
    }
    qsort(keys, j->n_stats, sizeof *keys, cmp_row_key);
    for (size_t r = 0; r < j->n_stats; r++) {
        int overwritten = r + 1 < j->n_stats && keys[r].day == keys[r + 1].day &&
                          strcmp(keys[r].note_id, keys[r + 1].note_id) == 0;
        if (!overwritten) {
            (*order)[(*n_order)++] = keys[r].i;
        }
    }
    free(keys);
    return 0;
}

/* The upserts of the rows `order` names, creator_upsert_chunk() rows a statement. */
static grpc_status_code upsert_chunks(yw_store_conn_t *conn, creator_record_stats_job_t *j,
                                      const int64_t *days, const size_t *order, size_t n_order)
{
    for (size_t done = 0; done < n_order;) {
        size_t rows = creator_upsert_chunk(n_order - done);
        grpc_status_code code = GRPC_STATUS_OK;
        yw_sql_t *st = yw_sql_job_stmt(conn, &j->job, creator_upsert_sql(rows), &code);
        if (st == NULL) {
            return code;
        }
        yw_sql_binder_t b = YW_SQL_BINDER(st);
        for (size_t r = 0; r < rows; r++) {
            size_t i = order[done + r];
            bind_stats_row(&b, j->stats[i], days[i]);
        }
        if ((code = creator_store__step_done(conn, &j->job, st, "upsert note stats")) !=
            GRPC_STATUS_OK) {
            return code;
        }
        done += rows;
    }
    j->upserted = (int32_t)j->n_stats; /* as many as row by row (overwritten rows too) */
    return GRPC_STATUS_OK;
}

static grpc_status_code record_stats_pg(yw_store_conn_t *conn, creator_record_stats_job_t *j)
{
    yw_store_job_t *job = &j->job;
    size_t n = j->n_stats;
    note_set_t ns = {NULL, NULL, NULL, NULL, 0};
    const char **creators = malloc(n * sizeof *creators);
    unsigned char *exists = calloc(n, 1), *again = calloc(n, 1);
    size_t *order = NULL, n_order = 0;
    int64_t *days = malloc(n * sizeof *days);
    grpc_status_code code = GRPC_STATUS_OK;
    size_t n_creators = 0;
    int took = 0;

    ns.ids = malloc(n * sizeof *ns.ids);
    ns.owner = calloc(n, sizeof *ns.owner);
    ns.first = calloc(n, sizeof *ns.first);
    ns.lock = calloc(n, 1);
    if (creators == NULL || exists == NULL || again == NULL || days == NULL || ns.ids == NULL ||
        ns.owner == NULL || ns.first == NULL || ns.lock == NULL) {
        code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory recording note stats");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ns.ids[i] = j->stats[i]->note_id;
        creators[i] = j->stats[i]->creator_id;
    }
    ns.n = creator_sort_unique(ns.ids, n);
    n_creators = creator_sort_unique(creators, n);

    /*
     * New notes locked before the owners are trusted: two batches cannot both give one
     * new note a first owner. Creators held FOR KEY SHARE before the owners are read
     * again: a note of one of them keeps its rows (and owner) until commit.
     */
    if ((code = read_owners(conn, job, &ns, NULL)) != GRPC_STATUS_OK ||
        (code = lock_new_notes(conn, job, &ns, &took)) != GRPC_STATUS_OK ||
        (code = lock_creators(conn, job, creators, n_creators, exists)) != GRPC_STATUS_OK ||
        (code = read_owners(conn, job, &ns, NULL)) != GRPC_STATUS_OK) {
        goto out;
    }
    /* A note whose rows went (with their creator) since the first look: locked, read again. */
    for (size_t k = 0; k < ns.n; k++) {
        again[k] = ns.owner[k] == NULL && !ns.lock[k];
    }
    if ((code = lock_new_notes(conn, job, &ns, &took)) != GRPC_STATUS_OK) {
        goto out;
    }
    if (took && (code = read_owners(conn, job, &ns, again)) != GRPC_STATUS_OK) {
        goto out;
    }
    if ((code = check_rows(j, &ns, creators, n_creators, exists, days)) != GRPC_STATUS_OK) {
        goto out;
    }
    if (upsert_order(j, days, &order, &n_order) != 0) {
        code = yw_store_job_failf(job, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "out of memory recording note stats");
        goto out;
    }
    code = upsert_chunks(conn, j, days, order, n_order);
out:
    note_set_free(&ns);
    free(creators);
    free(exists);
    free(order);
    free(again);
    free(days);
    return code;
}

grpc_status_code creator_store_record_stats(yw_store_conn_t *conn, yw_store_job_t *job)
{
    creator_record_stats_job_t *j = (creator_record_stats_job_t *)job;
    grpc_status_code code = GRPC_STATUS_OK;

    j->upserted = 0;
    if (j->check_only > 0) {
        /* Writes nothing: the rows before a bad one, checked as the upsert would check them. */
        for (size_t i = 0; i < j->check_only && i < j->n_stats; i++) {
            const char *id = j->stats[i]->creator_id;
            int exists = 0;
            if (i > 0 && strcmp(id, j->stats[i - 1]->creator_id) == 0) {
                continue;
            }
            if ((code = creator_store__exists(conn, job, id, &exists)) != GRPC_STATUS_OK) {
                return code;
            }
            if (!exists) {
                return creator_missing(job, i, id);
            }
        }
        return GRPC_STATUS_OK;
    }
    if (j->n_stats == 0) {
        return GRPC_STATUS_OK;
    }
    if (yw_sql_backend(conn) == YW_SQL_POSTGRES) {
        return record_stats_pg(conn, j);
    }
    return upsert_rows(conn, j);
}

void creator_record_stats_job_init(creator_record_stats_job_t *j,
                                   void (*done)(yw_store_job_t *job, grpc_status_code status))
{
    memset(j, 0, sizeof *j);
    j->job.work = creator_store_record_stats;
    j->job.done = done;
}
