/*
 * creator_service.c — the handlers of yaowei.creator.v1.CreatorProfileService. Each one
 * reads like its method's documentation in creator.proto: validate, do, reply.
 *
 * Asynchronous handlers allocate a job (creator_store.h) whose `data` is the call, queue
 * it, and finish the call in the job's done callback, which then frees the job. The
 * request message (owned by the runtime) stays valid until the call is finished, so
 * jobs borrow strings from it. Replies are packed inside yw_call_reply(), so they may
 * point at the cache, the job or the stack.
 */
#include "services/creator_profile/creator_service.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/page_token.h"
#include "common/utf8.h"
#include "services/creator_profile/creator_day.h"
#include "services/creator_profile/creator_store.h"
#include "services/creator_profile/creator_sync.h"
#include "services/creator_profile/creator_validate.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#define ERR_BUFSZ 512
#define MISSING_BUFSZ 4096

/* ---- plumbing shared by the handlers ---- */

static creator_state_t *state_of(const yw_call_t *call)
{
    return yw_app_state(yw_app_from_call(call));
}

/* The replica id a write's notification carries (PostgreSQL), NULL on SQLite. */
static const char *replica_of(const yw_call_t *call)
{
    const creator_state_t *st = state_of(call);
    return st->pg ? st->replica : NULL;
}

/* Finishes a call whose store job failed with `status`. */
static void fail_job(yw_call_t *call, grpc_status_code status, const yw_store_job_t *job)
{
    yw_call_fail(call, status, job->errmsg[0] != '\0' ? job->errmsg : "store: the work failed");
}

/*
 * Non-zero (and the call finished) when the call was cancelled or its deadline passed:
 * no store work is started for a caller that has gone.
 */

/* How queue() sends a job. */
enum {
    QUEUE_READ = 0,   /* a read: a reader thread (PostgreSQL: the read pool, maybe a standby) */
    QUEUE_WRITE = 1,  /* a write: the disk must be writable */
    QUEUE_PRIMARY = 2 /* a read that must see every commit: the writer (the primary) */
};

/*
 * Queues `job`; on failure (a write while the disk is full, or the store is closing)
 * finishes the call and returns -1.
 */
static int queue(yw_call_t *call, yw_store_job_t *job, int how)
{
    creator_state_t *st = state_of(call);
    char err[ERR_BUFSZ];
    if (how == QUEUE_WRITE &&
        yw_disk_writable(yw_app_disk(yw_app_from_call(call)), err, sizeof err) != 0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
        return -1;
    }
    int rc = how != QUEUE_READ ? yw_store_write(st->store, job) : yw_store_read(st->store, job);
    if (rc < 0) {
        yw_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                     rc == -ESHUTDOWN ? "the service is shutting down"
                                      : "store: cannot queue the work");
        return -1;
    }
    return 0;
}

/*
 * A write of creator `id` committed: `rec` (owned from now on; NULL: deleted) goes into
 * the cache at once. On PostgreSQL the creator is also read again (creator_sync.h: another
 * replica may have written it after us, and our done callback may run after its reload).
 */
static void cache_committed(creator_state_t *st, const char *id, creator_record_t *rec)
{
    if (st->pg) {
        creator_sync_local(&st->sync, id, rec);
    } else if (rec != NULL) {
        creator_cache_put(&st->cache, rec);
    } else {
        /* -ENOENT: it was never cached, which cannot happen but needs no action. */
        (void)creator_cache_remove(&st->cache, id);
    }
}

/*
 * The end of a write that produced a creator (create, update): on success the record
 * moves from the job (`*result` becomes NULL) into the cache, then the call is answered
 * with it; otherwise the call fails with the job's status and message.
 */
static void cache_and_reply(yw_call_t *call, grpc_status_code status, const yw_store_job_t *job,
                            creator_record_t **result)
{
    if (status != GRPC_STATUS_OK) {
        fail_job(call, status, job);
        return;
    }
    creator_record_t *rec = *result;
    *result = NULL;
    /* The cache owns `rec`; it stays valid until the next change of this creator. */
    cache_committed(state_of(call), rec->msg.creator_id, rec);
    yw_call_reply(call, &rec->msg.base);
}

/* ---- CreateCreator ---- */

static void create_creator_done(yw_store_job_t *job, grpc_status_code status)
{
    creator_create_job_t *j = (creator_create_job_t *)job;
    cache_and_reply(j->data, status, job, &j->result);
    creator_create_job_dispose(j);
    free(j);
}

/*
 * Creates a creator. AIP-155: a retry with the same request_id returns the creator
 * created by the first call; the same creator_id under another request_id is
 * ALREADY_EXISTS.
 */
static void create_creator(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__CreateCreatorRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    grpc_status_code code = creator_validate_create(req, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    creator_create_job_t *j = malloc(sizeof *j);
    if (j == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    creator_create_job_init(j, create_creator_done);
    j->data = call;
    j->request_id = req->request_id;
    j->creator = req->creator;
    j->replica = replica_of(call);
    yw_wallclock_now(&j->now_seconds, &j->now_nanos);
    if (queue(call, &j->job, QUEUE_WRITE) != 0) {
        free(j);
    }
}

/* ---- GetCreator ---- */

/*
 * NOT_FOUND when the creator does not exist. Answered from the cache: also while the
 * database is away (PostgreSQL), as of the last change this replica heard of.
 */
static void get_creator(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__GetCreatorRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    grpc_status_code code = creator_validate_id("creator_id", req->creator_id, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    const creator_record_t *rec = creator_cache_get(&state_of(call)->cache, req->creator_id);
    if (rec == NULL) {
        char q[300];
        snprintf(err, sizeof err, "creator_id: creator %s not found",
                 yw_quote(req->creator_id, YW_QUOTE_MAX, q, sizeof q));
        yw_call_fail(call, GRPC_STATUS_NOT_FOUND, err);
        return;
    }
    yw_call_reply(call, &rec->msg.base);
}

/* ---- BatchGetCreators ---- */

/* AIP-231: creators in request order; NOT_FOUND names every missing id. */
static void batch_get_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__BatchGetCreatorsRequest *req = (const void *)msg;
    const creator_cache_t *cache = &state_of(call)->cache;
    char err[MISSING_BUFSZ];
    grpc_status_code code =
        creator_validate_ids("creator_ids", req->creator_ids, req->n_creator_ids, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    /* At most CREATOR_BATCH_MAX of each: on the stack. */
    Yaowei__Creator__V1__Creator *found[CREATOR_BATCH_MAX];
    size_t missing[CREATOR_BATCH_MAX], n_missing = 0;
    for (size_t i = 0; i < req->n_creator_ids; i++) {
        const creator_record_t *rec = creator_cache_get(cache, req->creator_ids[i]);
        if (rec == NULL) {
            missing[n_missing++] = i;
        } else {
            /* The reply only reads it: protobuf-c wants non-const pointers. */
            found[i] = (Yaowei__Creator__V1__Creator *)&rec->msg;
        }
    }
    if (n_missing > 0) {
        yw_call_fail(call, GRPC_STATUS_NOT_FOUND,
                     creator_missing_message("creator_ids", req->creator_ids, missing, n_missing,
                                             err, sizeof err));
        return;
    }
    Yaowei__Creator__V1__BatchGetCreatorsResponse resp =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATORS_RESPONSE__INIT;
    resp.n_creators = req->n_creator_ids;
    resp.creators = req->n_creator_ids > 0 ? found : NULL;
    yw_call_reply(call, &resp.base);
}

/* ---- UpdateCreator ---- */

static void update_creator_done(yw_store_job_t *job, grpc_status_code status)
{
    creator_update_job_t *j = (creator_update_job_t *)job;
    cache_and_reply(j->data, status, job, &j->result);
    creator_update_job_dispose(j);
    free(j);
}

/*
 * AIP-134: only the fields named in update_mask change (all mutable fields when the
 * mask is empty). update_time is set on every update.
 */
static void update_creator(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__UpdateCreatorRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    unsigned mask = 0;
    grpc_status_code code = creator_validate_update(req, &mask, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    creator_update_job_t *j = malloc(sizeof *j);
    if (j == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    creator_update_job_init(j, update_creator_done);
    j->data = call;
    j->creator = req->creator;
    j->mask = mask;
    j->replica = replica_of(call);
    yw_wallclock_now(&j->now_seconds, &j->now_nanos);
    if (queue(call, &j->job, QUEUE_WRITE) != 0) {
        free(j);
    }
}

/* ---- DeleteCreator ---- */

static void delete_creator_done(yw_store_job_t *job, grpc_status_code status)
{
    creator_delete_job_t *j = (creator_delete_job_t *)job;
    yw_call_t *call = j->data;
    if (status == GRPC_STATUS_OK) {
        Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
        cache_committed(state_of(call), j->creator_id, NULL);
        yw_call_reply(call, &empty.base);
    } else {
        fail_job(call, status, job);
    }
    free(j);
}

/* Deletes the creator and its note stats. NOT_FOUND when it does not exist. */
static void delete_creator(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__DeleteCreatorRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    grpc_status_code code = creator_validate_id("creator_id", req->creator_id, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    creator_delete_job_t *j = malloc(sizeof *j);
    if (j == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    creator_delete_job_init(j, delete_creator_done);
    j->data = call;
    j->creator_id = req->creator_id;
    j->replica = replica_of(call);
    if (queue(call, &j->job, QUEUE_WRITE) != 0) {
        free(j);
    }
}

/* ---- ListCreators ---- */

typedef struct {
    creator_list_job_t list;
    /* The token binds the filters: a token of other filters is refused. */
    yw_page_query_t query;
    yw_page_cursor_t after;
} list_call_t;

static void list_creators_done(yw_store_job_t *job, grpc_status_code status)
{
    list_call_t *lc = (list_call_t *)job;
    creator_list_job_t *j = &lc->list;
    yw_call_t *call = j->data;
    char token[YW_PAGE_TOKEN_BUFSZ] = "";
    if (status != GRPC_STATUS_OK) {
        fail_job(call, status, job);
    } else if (j->more &&
               yw_page_token_encode(yw_app_page_key(yw_app_from_call(call)), &lc->query, 0,
                                    j->records[j->n_records - 1]->msg.creator_id, token) != 0) {
        yw_call_fail(call, GRPC_STATUS_INTERNAL, "next_page_token: cannot encode");
    } else {
        /* Records stay owned by the job; the response borrows them until packed. */
        Yaowei__Creator__V1__ListCreatorsResponse resp =
            YAOWEI__CREATOR__V1__LIST_CREATORS_RESPONSE__INIT;
        Yaowei__Creator__V1__Creator *page[CREATOR_PAGE_SIZE_MAX];
        for (size_t i = 0; i < j->n_records; i++) {
            page[i] = &j->records[i]->msg;
        }
        resp.n_creators = j->n_records;
        resp.creators = j->n_records > 0 ? page : NULL;
        resp.next_page_token = token;
        yw_call_reply(call, &resp.base);
    }
    creator_list_job_dispose(j);
    free(lc);
}

/*
 * AIP-158 paging, ordered by creator_id; filters on category, region, followers. A token
 * carries the last creator_id of its page: keyset pages, so creators added or removed
 * meanwhile never shift a page.
 */
static void list_creators(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__ListCreatorsRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    grpc_status_code code = creator_validate_list(req, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    list_call_t *lc = malloc(sizeof *lc);
    if (lc == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    yw_page_query_init(&lc->query, "ListCreators",
                       "category, region, min_followers and max_followers");
    yw_page_query_add_str(&lc->query, req->category);
    yw_page_query_add_str(&lc->query, req->region);
    yw_page_query_add_int(&lc->query, req->min_followers);
    yw_page_query_add_int(&lc->query, req->max_followers);
    int rc = yw_page_token_decode(yw_app_page_key(yw_app_from_call(call)), &lc->query,
                                  req->page_token, 0, &lc->after, err, sizeof err);
    if (rc == 0 && lc->after.key[0] != '\0' && !creator_id_valid(lc->after.key)) {
        snprintf(err, sizeof err, "page_token: its creator_id is not valid");
        rc = -EINVAL;
    }
    if (rc != 0) {
        free(lc);
        yw_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err);
        return;
    }
    if (yw_call_abandoned(call)) {
        free(lc);
        return;
    }
    creator_list_job_t *j = &lc->list;
    creator_list_job_init(j, list_creators_done);
    j->data = call;
    j->after = lc->after.key;
    j->page_size = yw_page_size(req->page_size, CREATOR_PAGE_SIZE_DEFAULT, CREATOR_PAGE_SIZE_MAX);
    j->category = req->category;
    j->region = req->region;
    j->min_followers = req->min_followers;
    j->max_followers = req->max_followers;
    if (queue(call, &j->job, QUEUE_READ) != 0) {
        free(lc);
    }
}

/* ---- RecordNoteStats ---- */

/* For validation: whether a creator exists, as far as the committed state says. */
static int creator_is_cached(const char *creator_id, void *cache)
{
    return creator_cache_get(cache, creator_id) != NULL;
}

static void record_note_stats_done(yw_store_job_t *job, grpc_status_code status)
{
    creator_record_stats_job_t *j = (creator_record_stats_job_t *)job;
    yw_call_t *call = j->data;
    if (status == GRPC_STATUS_OK) {
        Yaowei__Creator__V1__RecordNoteStatsResponse resp =
            YAOWEI__CREATOR__V1__RECORD_NOTE_STATS_RESPONSE__INIT;
        resp.upserted = j->upserted;
        yw_call_reply(call, &resp.base);
    } else {
        fail_job(call, status, job);
    }
    free(j);
}

/*
 * The batch is bad at row `bad_row` (the message in `msg`), and on PostgreSQL a row
 * before it names a creator this replica does not cache, which another replica may have
 * created: the database tells whether that row is the first bad one.
 */
typedef struct {
    creator_record_stats_job_t check;
    grpc_status_code code;
    char msg[ERR_BUFSZ];
} stats_check_t;

static void check_stats_done(yw_store_job_t *job, grpc_status_code status)
{
    stats_check_t *c = (stats_check_t *)job;
    yw_call_t *call = c->check.data;
    if (status == GRPC_STATUS_OK) {
        yw_call_fail(call, c->code, c->msg); /* every creator before the bad row exists */
    } else {
        fail_job(call, status, job);
    }
    free(c);
}

/*
 * Validates a batch: the first bad row is named, whatever is wrong with it. On SQLite the
 * cache knows every creator. On PostgreSQL a creator missing from the cache may have been
 * created on another replica a moment ago: the write job asks the database (in row
 * order, with the same message), and a bad row after such a creator waits for the
 * database's answer (a check job). Returns 0 when the batch may be written, -1 when the
 * call was finished (or is being finished by a check job).
 */
static int validate_stats(yw_call_t *call, const Yaowei__Creator__V1__RecordNoteStatsRequest *req)
{
    creator_state_t *st = state_of(call);
    char err[ERR_BUFSZ];
    size_t bad_row;
    grpc_status_code code = creator_validate_record_stats_row(
        req, creator_day_today(), st->pg ? NULL : creator_is_cached, &st->cache, &bad_row, err,
        sizeof err);
    if (code == GRPC_STATUS_OK) {
        return 0;
    }
    size_t unknown = bad_row;
    for (size_t i = 0; st->pg && bad_row < req->n_stats && i < bad_row; i++) {
        if (!creator_is_cached(req->stats[i]->creator_id, &st->cache)) {
            unknown = i;
            break;
        }
    }
    if (unknown == bad_row || yw_call_abandoned(call)) {
        if (unknown == bad_row) {
            yw_call_fail(call, code, err);
        }
        return -1;
    }
    stats_check_t *c = malloc(sizeof *c);
    if (c == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    creator_record_stats_job_init(&c->check, check_stats_done);
    c->check.data = call;
    c->check.stats = req->stats;
    c->check.n_stats = req->n_stats;
    c->check.check_only = bad_row;
    c->code = code;
    snprintf(c->msg, sizeof c->msg, "%s", err);
    /* On the primary: a standby (pg_read_uri) may not have the other replica's create yet. */
    if (queue(call, &c->check.job, QUEUE_PRIMARY) != 0) {
        free(c);
    }
    return -1;
}

/*
 * Upserts daily per-note stats by (note_id, day). Atomic: one bad row rejects the whole
 * batch with INVALID_ARGUMENT naming it.
 */
static void record_note_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__RecordNoteStatsRequest *req = (const void *)msg;
    if (validate_stats(call, req) != 0) {
        return;
    }
    if (req->n_stats == 0) {
        Yaowei__Creator__V1__RecordNoteStatsResponse resp =
            YAOWEI__CREATOR__V1__RECORD_NOTE_STATS_RESPONSE__INIT;
        yw_call_reply(call, &resp.base);
        return;
    }
    if (yw_call_abandoned(call)) {
        return;
    }
    creator_record_stats_job_t *j = malloc(sizeof *j);
    if (j == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    creator_record_stats_job_init(j, record_note_stats_done);
    j->data = call;
    j->stats = req->stats;
    j->n_stats = req->n_stats;
    if (queue(call, &j->job, QUEUE_WRITE) != 0) {
        free(j);
    }
}

/* ---- GetCreatorStats / BatchGetCreatorStats ---- */

/* Which of the two methods a stats job answers. */
typedef struct {
    creator_stats_job_t stats;
    int batch;
} stats_call_t;

static void creator_stats_done(yw_store_job_t *job, grpc_status_code status)
{
    stats_call_t *sc = (stats_call_t *)job;
    creator_stats_job_t *j = &sc->stats;
    yw_call_t *call = j->data;
    if (status == GRPC_STATUS_NOT_FOUND && j->n_missing > 0) {
        char msg[MISSING_BUFSZ];
        if (sc->batch) {
            creator_missing_message("creator_ids", j->creator_ids, j->missing, j->n_missing, msg,
                                    sizeof msg);
        } else {
            char q[300];
            snprintf(msg, sizeof msg, "creator_id: creator %s not found",
                     yw_quote(j->creator_ids[0], YW_QUOTE_MAX, q, sizeof q));
        }
        yw_call_fail(call, status, msg);
    } else if (status != GRPC_STATUS_OK) {
        fail_job(call, status, job);
    } else if (sc->batch) {
        Yaowei__Creator__V1__BatchGetCreatorStatsResponse resp =
            YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_RESPONSE__INIT;
        Yaowei__Creator__V1__CreatorStats **all = malloc(j->n_ids * sizeof *all);
        if (all == NULL) {
            yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            for (size_t i = 0; i < j->n_ids; i++) {
                all[i] = &j->stats[i];
            }
            resp.n_stats = j->n_ids;
            resp.stats = all;
            yw_call_reply(call, &resp.base);
            free(all);
        }
    } else {
        yw_call_reply(call, &j->stats[0].base);
    }
    creator_stats_job_dispose(j);
    free(sc);
}

/* Queues the stats of `ids` (validated) over the window. */
static void start_stats(yw_call_t *call, int batch, char *const *ids, size_t n, int32_t window,
                        int64_t end)
{
    if (yw_call_abandoned(call)) {
        return;
    }
    stats_call_t *sc = malloc(sizeof *sc);
    if (sc == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    creator_stats_job_t *j = &sc->stats;
    creator_stats_job_init(j, creator_stats_done);
    sc->batch = batch;
    j->data = call;
    j->creator_ids = ids;
    j->n_ids = n;
    j->window_days = window;
    j->end_day = end;
    if (queue(call, &j->job, QUEUE_READ) != 0) {
        free(sc);
    }
}

/* Rolling stats of one creator over the last window_days days. */
static void get_creator_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__GetCreatorStatsRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    int32_t window;
    int64_t end;
    grpc_status_code code = creator_validate_id("creator_id", req->creator_id, err, sizeof err);
    if (code == GRPC_STATUS_OK) {
        code = creator_validate_window(req->window_days, req->end_day, creator_day_today(), &window,
                                       &end, err, sizeof err);
    }
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    start_stats(call, 0, &req->creator_id, 1, window, end);
}

/* Rolling stats of many creators in one call, in request order. */
static void batch_get_creator_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__BatchGetCreatorStatsRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    int32_t window;
    int64_t end;
    grpc_status_code code =
        creator_validate_ids("creator_ids", req->creator_ids, req->n_creator_ids, err, sizeof err);
    if (code == GRPC_STATUS_OK) {
        code = creator_validate_window(req->window_days, req->end_day, creator_day_today(), &window,
                                       &end, err, sizeof err);
    }
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
        return;
    }
    if (req->n_creator_ids == 0) {
        Yaowei__Creator__V1__BatchGetCreatorStatsResponse resp =
            YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_RESPONSE__INIT;
        yw_call_reply(call, &resp.base);
        return;
    }
    start_stats(call, 1, req->creator_ids, req->n_creator_ids, window, end);
}

/* ---- the service ---- */

static const yw_method_t creator_methods[] = {
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "CreateCreator",
              yaowei__creator__v1__create_creator_request, yaowei__creator__v1__creator,
              .on_message = create_creator),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "GetCreator", yaowei__creator__v1__get_creator_request,
              yaowei__creator__v1__creator, .on_message = get_creator),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "BatchGetCreators",
              yaowei__creator__v1__batch_get_creators_request,
              yaowei__creator__v1__batch_get_creators_response, .on_message = batch_get_creators),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "UpdateCreator",
              yaowei__creator__v1__update_creator_request, yaowei__creator__v1__creator,
              .on_message = update_creator),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "DeleteCreator",
              yaowei__creator__v1__delete_creator_request, google__protobuf__empty,
              .on_message = delete_creator),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "ListCreators",
              yaowei__creator__v1__list_creators_request,
              yaowei__creator__v1__list_creators_response, .on_message = list_creators),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "RecordNoteStats",
              yaowei__creator__v1__record_note_stats_request,
              yaowei__creator__v1__record_note_stats_response, .on_message = record_note_stats),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "GetCreatorStats",
              yaowei__creator__v1__get_creator_stats_request, yaowei__creator__v1__creator_stats,
              .on_message = get_creator_stats),
    YW_METHOD(UNARY, CREATOR_SERVICE_NAME, "BatchGetCreatorStats",
              yaowei__creator__v1__batch_get_creator_stats_request,
              yaowei__creator__v1__batch_get_creator_stats_response,
              .on_message = batch_get_creator_stats),
};

const yw_service_t creator_service = {
    .name = CREATOR_SERVICE_NAME,
    .methods = creator_methods,
    .n_methods = sizeof creator_methods / sizeof creator_methods[0],
    .ctx = NULL,
};

/* ---- the cache across replicas (PostgreSQL) ---- */

/* A reload of one creator: a read job that owns a copy of the id. */
typedef struct {
    creator_get_job_t get;
    creator_state_t *st;
    char id[];
} reload_job_t;

/* Ends the state once fini_async waits and nothing of it is in flight. */
static void maybe_finish(creator_state_t *st);

static void reload_done(yw_store_job_t *job, grpc_status_code status)
{
    reload_job_t *r = (reload_job_t *)job;
    creator_state_t *st = r->st;
    st->reloads--;
    if (!st->closing) {
        if (status != GRPC_STATUS_OK) {
            yw_log(YW_LOG_WARN, "creator cache: reloading a creator: %s", job->errmsg);
        }
        creator_record_t *rec = r->get.result;
        r->get.result = NULL;
        creator_sync_reloaded(&st->sync, r->id, status == GRPC_STATUS_OK, rec);
    }
    creator_get_job_dispose(&r->get);
    free(r);
    maybe_finish(st);
}

/* creator_sync_ops_t.reload */
static int start_reload(void *arg, const char *id)
{
    creator_state_t *st = arg;
    size_t len = strlen(id);
    reload_job_t *r = malloc(sizeof *r + len + 1);
    if (r == NULL) {
        return -ENOMEM;
    }
    creator_get_job_init(&r->get, reload_done);
    memcpy(r->id, id, len + 1);
    r->st = st;
    r->get.creator_id = r->id;
    /*
     * On the primary, as a write job that writes nothing: a standby (pg_read_uri) may
     * not have the commit this reload must see yet (creator_sync.h's rule needs it).
     */
    int rc = yw_store_write(st->store, &r->get.job);
    if (rc < 0) {
        free(r);
        return rc;
    }
    st->reloads++;
    return 0;
}

typedef struct {
    creator_load_job_t load;
    creator_state_t *st;
} reload_all_job_t;

static void reload_all_done(yw_store_job_t *job, grpc_status_code status)
{
    reload_all_job_t *r = (reload_all_job_t *)job;
    creator_state_t *st = r->st;
    st->reloads--;
    if (!st->closing) {
        if (status != GRPC_STATUS_OK) {
            yw_log(YW_LOG_WARN, "creator cache: reloading every creator: %s", job->errmsg);
        }
        creator_sync_reloaded_all(&st->sync, status == GRPC_STATUS_OK, &r->load.fresh);
        if (status == GRPC_STATUS_OK) {
            yw_log(YW_LOG_INFO, "creator cache: reloaded %zu creators",
                   creator_cache_size(&st->cache));
        }
    }
    creator_load_job_dispose(&r->load);
    free(r);
    maybe_finish(st);
}

/* creator_sync_ops_t.reload_all */
static int start_reload_all(void *arg)
{
    creator_state_t *st = arg;
    reload_all_job_t *r = malloc(sizeof *r);
    if (r == NULL) {
        return -ENOMEM;
    }
    if (creator_load_job_init(&r->load, reload_all_done) != 0) {
        free(r);
        return -ENOMEM;
    }
    r->st = st;
    int rc = yw_store_write(st->store, &r->load.job); /* the primary: see start_reload() */
    if (rc < 0) {
        creator_load_job_dispose(&r->load);
        free(r);
        return rc;
    }
    st->reloads++;
    return 0;
}

/*
 * yw_store_listen() on CREATOR_CHANNEL: a creator changed on some replica (this one
 * included); or, with a NULL payload, LISTEN came into force (at start, after a
 * reconnection) and what changed before may have gone unheard: every creator is read
 * again (also what was written between the load at start-up and the LISTEN).
 */
static void on_creator_changed(void *arg, const char *payload)
{
    creator_state_t *st = arg;
    if (st->closing) {
        return;
    }
    if (payload == NULL) {
        creator_sync_changed_all(&st->sync);
    } else {
        creator_sync_notified(&st->sync, payload, st->replica);
    }
}

/*
 * Every second: a reload that failed (database away, timeout, memory) made good by a
 * full one, once the database answers again.
 */
static void on_retry(uv_timer_t *t)
{
    creator_state_t *st = t->data;
    if (!st->closing && st->sync.failed && yw_store_available(st->store)) {
        st->sync.failed = 0;
        creator_sync_changed_all(&st->sync);
    }
}

static void retry_closed(uv_handle_t *h)
{
    creator_state_t *st = h->data;
    st->retry_open = 0;
    maybe_finish(st);
}

/* ---- start-up and shut-down ---- */

static int cache_each(creator_record_t *rec, void *ctx)
{
    creator_cache_put(ctx, rec);
    return 0;
}

/* On PostgreSQL: listen for other replicas' changes and retry failed reloads. */
static int start_sync(creator_state_t *st, char *err, size_t errlen)
{
    creator_sync_ops_t ops = {.reload = start_reload, .reload_all = start_reload_all, .arg = st};
    int rc = creator_sync_init(&st->sync, &st->cache, &ops);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory for the creator cache's sync");
        return rc;
    }
    /* Random: a restarted replica must not take the writes of its former self for its own. */
    unsigned char id[8];
    if ((rc = uv_random(NULL, NULL, id, sizeof id, 0, NULL)) != 0) {
        snprintf(err, errlen, "creator cache: replica id: %s", uv_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < sizeof id; i++) {
        snprintf(st->replica + 2 * i, 3, "%02x", id[i]);
    }
    uv_loop_t *loop = yw_runtime_loop(yw_app_runtime(st->app));
    if ((rc = uv_timer_init(loop, &st->retry)) != 0) {
        snprintf(err, errlen, "creator cache: retry timer: %s", uv_strerror(rc));
        return rc;
    }
    st->retry.data = st;
    st->retry_open = 1;
    if ((rc = uv_timer_start(&st->retry, on_retry, 1000, 1000)) != 0) {
        snprintf(err, errlen, "creator cache: retry timer: %s", uv_strerror(rc));
        return rc;
    }
    uv_unref((uv_handle_t *)&st->retry); /* it alone keeps no loop running */
    if ((rc = yw_store_listen(st->store, CREATOR_CHANNEL, on_creator_changed, st)) != 0) {
        snprintf(err, errlen, "listen on %s: %s", CREATOR_CHANNEL, strerror(-rc));
        return rc;
    }
    st->listening = 1;
    return 0;
}

static void state_free(creator_state_t *st)
{
    if (st->listening) {
        yw_store_unlisten(st->store, CREATOR_CHANNEL); /* no call back with `st` after this */
    }
    if (st->pg) {
        creator_sync_dispose(&st->sync);
    }
    creator_cache_dispose(&st->cache);
    free(st);
}

int creator_service_init(yw_app_t *app, char *err, size_t errlen)
{
    creator_state_t *st = calloc(1, sizeof *st);
    if (st == NULL || creator_cache_init(&st->cache) != 0) {
        free(st);
        snprintf(err, errlen, "out of memory for the creator cache");
        return -ENOMEM;
    }
    st->app = app;
    st->store = yw_app_store(app);
    creator_load_t load = {.each = cache_each, .ctx = &st->cache};
    grpc_status_code code =
        yw_store_run_sync(st->store, creator_store_load_all, &load, err, errlen);
    if (code != GRPC_STATUS_OK) {
        if (load.errmsg[0] != '\0') {
            snprintf(err, errlen, "%s", load.errmsg);
        }
        creator_cache_dispose(&st->cache);
        free(st);
        return -EIO;
    }
    if (yw_store_is_postgres(st->store)) {
        st->pg = 1;
        int rc = start_sync(st, err, errlen);
        if (rc != 0) {
            /* Nothing was queued yet; a timer that was opened is closed by its loop. */
            st->closing = 1;
            st->fini_waiting = 1;
            st->app = NULL;
            if (st->retry_open) {
                uv_close((uv_handle_t *)&st->retry, retry_closed);
            } else {
                state_free(st);
            }
            return rc < 0 ? rc : -EIO;
        }
    }
    yw_app_set_state(app, st);
    yw_log(YW_LOG_INFO, "loaded %zu creators into the cache", creator_cache_size(&st->cache));
    return 0;
}

const yw_app_def_t creator_app = {
    .program = "creator_profile",
    .summary = "yaowei creator profile: creators and the daily stats of their notes "
               "(yaowei.creator.v1.CreatorProfileService)",
    .service = &creator_service,
    .db_file = "creator_profile.db",
    .migrations = creator_migrations,
    .n_migrations = CREATOR_N_MIGRATIONS,
    .pg_migrations = creator_pg_migrations,
    .n_pg_migrations = CREATOR_N_PG_MIGRATIONS,
    .options = NULL,
    .n_options = 0,
    .init = creator_service_init,
    .fini = creator_service_fini,
    .fini_async = creator_service_fini_async,
    .default_listen = "127.0.0.1:50051",
};

void creator_service_fini(yw_app_t *app)
{
    creator_state_t *st = yw_app_state(app);
    if (st == NULL) {
        return;
    }
    /* Reloads in flight end on their own (the store finishes them); nothing new starts. */
    st->closing = 1;
    if (st->retry_open && !uv_is_closing((uv_handle_t *)&st->retry)) {
        uv_close((uv_handle_t *)&st->retry, retry_closed);
    }
}

static void maybe_finish(creator_state_t *st)
{
    if (!st->fini_waiting || st->reloads > 0 || st->retry_open) {
        return;
    }
    yw_app_t *app = st->app;
    state_free(st);
    if (app != NULL) {
        yw_app_fini_done(app);
    }
}

void creator_service_fini_async(yw_app_t *app)
{
    creator_state_t *st = yw_app_state(app);
    if (st == NULL) {
        yw_app_fini_done(app);
        return;
    }
    yw_app_set_state(app, NULL);
    st->fini_waiting = 1;
    maybe_finish(st);
}
