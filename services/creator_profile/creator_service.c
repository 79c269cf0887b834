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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/page_token.h"
#include "common/utf8.h"
#include "services/creator_profile/creator_day.h"
#include "services/creator_profile/creator_store.h"
#include "services/creator_profile/creator_validate.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#define ERR_BUFSZ 512
#define MISSING_BUFSZ 4096

/* ---- plumbing shared by the handlers ---- */

static creator_state_t *state_of(const yw_call_t *call)
{
    return yw_app_state(yw_app_from_call(call));
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

/*
 * Queues `job`; on failure (a write while the disk is full, or the store is closing)
 * finishes the call and returns -1.
 */
static int queue(yw_call_t *call, yw_store_job_t *job, int write)
{
    creator_state_t *st = state_of(call);
    char err[ERR_BUFSZ];
    if (write && yw_disk_writable(yw_app_disk(yw_app_from_call(call)), err, sizeof err) != 0) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
        return -1;
    }
    int rc = write ? yw_store_write(st->store, job) : yw_store_read(st->store, job);
    if (rc < 0) {
        yw_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                     rc == -ESHUTDOWN ? "the service is shutting down"
                                      : "store: cannot queue the work");
        return -1;
    }
    return 0;
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
    creator_cache_put(&state_of(call)->cache, rec);
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
    yw_wallclock_now(&j->now_seconds, &j->now_nanos);
    if (queue(call, &j->job, 1) != 0) {
        free(j);
    }
}

/* ---- GetCreator ---- */

/* NOT_FOUND when the creator does not exist. */
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
    yw_wallclock_now(&j->now_seconds, &j->now_nanos);
    if (queue(call, &j->job, 1) != 0) {
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
        /* -ENOENT: it was never cached, which cannot happen but needs no action. */
        (void)creator_cache_remove(&state_of(call)->cache, j->creator_id);
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
    if (queue(call, &j->job, 1) != 0) {
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
    if (queue(call, &j->job, 0) != 0) {
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
 * Upserts daily per-note stats by (note_id, day). Atomic: one bad row rejects the whole
 * batch with INVALID_ARGUMENT naming it.
 */
static void record_note_stats(yw_call_t *call, const ProtobufCMessage *msg)
{
    const Yaowei__Creator__V1__RecordNoteStatsRequest *req = (const void *)msg;
    char err[ERR_BUFSZ];
    grpc_status_code code = creator_validate_record_stats_known(
        req, creator_day_today(), creator_is_cached, &state_of(call)->cache, err, sizeof err);
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(call, code, err);
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
    if (queue(call, &j->job, 1) != 0) {
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
    if (queue(call, &j->job, 0) != 0) {
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

/* ---- start-up and shut-down ---- */

static int cache_each(creator_record_t *rec, void *ctx)
{
    creator_cache_put(ctx, rec);
    return 0;
}

int creator_service_init(yw_app_t *app, char *err, size_t errlen)
{
    creator_state_t *st = calloc(1, sizeof *st);
    if (st == NULL || creator_cache_init(&st->cache) != 0) {
        free(st);
        snprintf(err, errlen, "out of memory for the creator cache");
        return -ENOMEM;
    }
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
    .options = NULL,
    .n_options = 0,
    .init = creator_service_init,
    .fini = creator_service_fini,
    .default_listen = "127.0.0.1:50051",
};

void creator_service_fini(yw_app_t *app)
{
    creator_state_t *st = yw_app_state(app);
    if (st == NULL) {
        return;
    }
    yw_app_set_state(app, NULL);
    creator_cache_dispose(&st->cache);
    free(st);
}
