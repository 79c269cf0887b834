/* tier_refresh.c — paging through creator profile into snapshots. See tier_refresh.h. */
#include "services/tier_scoring/tier_refresh.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#define LIST_CREATORS "/yaowei.creator.v1.CreatorProfileService/ListCreators"
#define BATCH_GET_STATS "/yaowei.creator.v1.CreatorProfileService/BatchGetCreatorStats"

struct st_tier_refresher_t {
    tier_refresher_config_t cfg;
    uv_timer_t timer;
    int running;   /* a refresh is in progress */
    int again;     /* triggered during it: another right after */
    int in_flight; /* a call's callback is pending */
    int closing;
    int timer_open;
    void (*closed)(void *arg);
    void *closed_arg;
    /* the refresh in progress */
    tier_snapshot_t *snap;
    char *page_token;                                /* of the page being read; owned */
    Yaowei__Creator__V1__ListCreatorsResponse *page; /* its creators, while their stats
                                                        are read; owned */
    int attempts;
    size_t pages;
    uint64_t started_ms;
    uint64_t seq; /* of the last refresh started; 0 before the first */
    char last_error[256];
};

static void list_page(tier_refresher_t *r);

static void maybe_free(tier_refresher_t *r)
{
    if (!r->closing || r->in_flight || r->timer_open) {
        return;
    }
    void (*closed)(void *) = r->closed;
    void *arg = r->closed_arg;
    free(r);
    if (closed != NULL) {
        closed(arg);
    }
}

static void drop_progress(tier_refresher_t *r)
{
    tier_snapshot_unref(r->snap);
    r->snap = NULL;
    free(r->page_token);
    r->page_token = NULL;
    if (r->page != NULL) {
        protobuf_c_message_free_unpacked(&r->page->base, NULL);
        r->page = NULL;
    }
}

static void on_timer(uv_timer_t *t);

/* The refresh ended (ok or not): the next one is due after the interval (or retry). */
static void end_refresh(tier_refresher_t *r, int ok)
{
    drop_progress(r);
    r->running = 0;
    uint64_t delay = r->cfg.interval_ms;
    if (!ok && delay > TIER_REFRESH_RETRY_MS) {
        delay = TIER_REFRESH_RETRY_MS;
    }
    if (r->again) {
        r->again = 0;
        delay = 0;
    }
    int rc = uv_timer_start(&r->timer, on_timer, delay, 0);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "refresh: cannot arm the timer: %s", uv_strerror(rc));
    }
}

static void fail(tier_refresher_t *r, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The refresh in progress failed: `code` is creator profile's status, or this side's
 * (INTERNAL, RESOURCE_EXHAUSTED) when the failure is local.
 */
static void fail(tier_refresher_t *r, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
    yw_log(YW_LOG_WARN, "refresh failed after %zu page(s): %s (retry in %llu ms)", r->pages,
           r->last_error,
           (unsigned long long)(r->cfg.interval_ms < TIER_REFRESH_RETRY_MS
                                    ? r->cfg.interval_ms
                                    : TIER_REFRESH_RETRY_MS));
    end_refresh(r, 0);
    if (r->cfg.on_failed != NULL) {
        r->cfg.on_failed(r->cfg.arg, r->seq, code, r->last_error);
    }
}

static void complete(tier_refresher_t *r)
{
    if (tier_snapshot_seal(r->snap) != 0) {
        fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory sorting %zu creators", r->snap->n);
        return;
    }
    tier_snapshot_t *snap = r->snap;
    r->snap = NULL;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    snap->time_s = (int64_t)ts.tv_sec;
    snap->time_ns = (int32_t)ts.tv_nsec;
    uv_update_time(r->cfg.loop);
    yw_log(YW_LOG_INFO, "refresh: %zu creators in %zu page(s), %llu ms (window %d days to %s)",
           snap->n, r->pages, (unsigned long long)(uv_now(r->cfg.loop) - r->started_ms),
           (int)snap->window_days, snap->end_day);
    r->last_error[0] = '\0';
    r->cfg.on_snapshot(r->cfg.arg, snap);
    end_refresh(r, 1);
}

const char *tier_input_of(const Yaowei__Creator__V1__Creator *c,
                          const Yaowei__Creator__V1__CreatorStats *s, tier_input_t *in)
{
    *in = (tier_input_t){
        .followers = c->followers,
        .window_days = s->window_days,
        .notes = s->notes,
        .video_notes = s->video_notes,
        .impressions = s->impressions,
        .engagements = s->engagements,
        .views_last_7d = s->views_last_7d,
        .views_prev_7d = s->views_prev_7d,
        .avg_completion_rate = s->avg_completion_rate,
    };
    return c->n_categories > 0 ? c->categories[0] : "";
}

/* Done with the page in hand: the refresh is complete, or the page after it is read. */
static void next_page(tier_refresher_t *r)
{
    const char *next = r->page->next_page_token;
    if (next == NULL || next[0] == '\0') {
        protobuf_c_message_free_unpacked(&r->page->base, NULL);
        r->page = NULL;
        complete(r);
        return;
    }
    char *token = strdup(next);
    protobuf_c_message_free_unpacked(&r->page->base, NULL);
    r->page = NULL;
    if (token == NULL) {
        fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    free(r->page_token);
    r->page_token = token;
    list_page(r);
}

/* The stats of the page in hand arrived: add its creators, then the next page. */
static int add_page(tier_refresher_t *r,
                    const Yaowei__Creator__V1__BatchGetCreatorStatsResponse *resp)
{
    const Yaowei__Creator__V1__ListCreatorsResponse *page = r->page;
    if (resp->n_stats != page->n_creators) {
        fail(r, GRPC_STATUS_INTERNAL, "BatchGetCreatorStats: %zu stats for %zu creators",
             resp->n_stats, page->n_creators);
        return -1;
    }
    for (size_t i = 0; i < page->n_creators; i++) {
        const Yaowei__Creator__V1__Creator *c = page->creators[i];
        const Yaowei__Creator__V1__CreatorStats *s = resp->stats[i];
        if (strcmp(c->creator_id, s->creator_id) != 0) {
            fail(r, GRPC_STATUS_INTERNAL,
                 "BatchGetCreatorStats: stats[%zu] is of creator \"%.128s\", not \"%.128s\"", i,
                 s->creator_id, c->creator_id);
            return -1;
        }
        tier_input_t in;
        const char *category = tier_input_of(c, s, &in);
        if (tier_snapshot_add(r->snap, c->creator_id, category, &in) != 0) {
            fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory after %zu creators", r->snap->n);
            return -1;
        }
    }
    return 0;
}

/*
 * Every call's completion starts here: the call is no longer in flight. Returns
 * non-zero (having dropped `resp` and the refresh) when the refresher is closing.
 */
static int call_ended(tier_refresher_t *r, ProtobufCMessage *resp)
{
    r->in_flight = 0;
    if (!r->closing) {
        return 0;
    }
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    drop_progress(r);
    maybe_free(r);
    return 1;
}

static void on_stats(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *msg)
{
    tier_refresher_t *r = arg;
    Yaowei__Creator__V1__BatchGetCreatorStatsResponse *resp = (void *)msg;
    if (call_ended(r, msg)) {
        return;
    }
    if (code == GRPC_STATUS_NOT_FOUND && r->attempts < TIER_REFRESH_PAGE_ATTEMPTS) {
        /* A creator of the page was deleted meanwhile: read the page again. */
        protobuf_c_message_free_unpacked(&r->page->base, NULL);
        r->page = NULL;
        list_page(r);
        return;
    }
    if (code != GRPC_STATUS_OK) {
        fail(r, code, "BatchGetCreatorStats: %s: %s", yw_status_name(code), detail);
        return;
    }
    int rc = add_page(r, resp);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (rc != 0) {
        return; /* failed */
    }
    r->pages++;
    r->attempts = 0;
    next_page(r);
}

/* Reads the stats of the page in hand. */
static void stats_page(tier_refresher_t *r)
{
    const Yaowei__Creator__V1__ListCreatorsResponse *page = r->page;
    char **ids = malloc(page->n_creators * sizeof *ids);
    if (ids == NULL) {
        fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < page->n_creators; i++) {
        ids[i] = page->creators[i]->creator_id;
    }
    Yaowei__Creator__V1__BatchGetCreatorStatsRequest req =
        YAOWEI__CREATOR__V1__BATCH_GET_CREATOR_STATS_REQUEST__INIT;
    req.n_creator_ids = page->n_creators;
    req.creator_ids = ids;
    req.window_days = r->snap->window_days;
    req.end_day = r->snap->end_day;
    /* The request is packed before yw_client_unary() returns: ids may go right after. */
    int rc = yw_client_unary(r->cfg.peer, BATCH_GET_STATS, &req.base,
                             &yaowei__creator__v1__batch_get_creator_stats_response__descriptor,
                             NULL, r->cfg.call_timeout_ms, on_stats, r);
    free(ids);
    if (rc != 0) {
        fail(r, GRPC_STATUS_UNAVAILABLE, "BatchGetCreatorStats: cannot start the call: %s",
             strerror(-rc));
        return;
    }
    r->in_flight = 1;
}

static void on_list(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *msg)
{
    tier_refresher_t *r = arg;
    Yaowei__Creator__V1__ListCreatorsResponse *resp = (void *)msg;
    if (call_ended(r, msg)) {
        return;
    }
    if (code != GRPC_STATUS_OK) {
        fail(r, code, "ListCreators: %s: %s", yw_status_name(code), detail);
        return;
    }
    r->attempts++;
    r->page = resp;
    if (resp->n_creators > 0) {
        stats_page(r);
        return;
    }
    /* An empty page: the end, or (oddly) a page of nothing before more. */
    next_page(r);
}

static void list_page(tier_refresher_t *r)
{
    Yaowei__Creator__V1__ListCreatorsRequest req = YAOWEI__CREATOR__V1__LIST_CREATORS_REQUEST__INIT;
    req.page_size = TIER_REFRESH_PAGE_SIZE;
    req.page_token = r->page_token != NULL ? r->page_token : "";
    int rc = yw_client_unary(r->cfg.peer, LIST_CREATORS, &req.base,
                             &yaowei__creator__v1__list_creators_response__descriptor, NULL,
                             r->cfg.call_timeout_ms, on_list, r);
    if (rc != 0) {
        fail(r, GRPC_STATUS_UNAVAILABLE, "ListCreators: cannot start the call: %s", strerror(-rc));
        return;
    }
    r->in_flight = 1;
}

static void start_refresh(tier_refresher_t *r)
{
    r->running = 1;
    r->seq++;
    r->pages = 0;
    r->attempts = 0;
    uv_update_time(r->cfg.loop);
    r->started_ms = uv_now(r->cfg.loop);
    if ((r->snap = tier_snapshot_new()) == NULL) {
        fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->snap->seq = r->seq;
    r->snap->window_days = r->cfg.window_days(r->cfg.arg);
    /* One end day for every page, so that the whole population shares one window. */
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(r->snap->end_day, sizeof r->snap->end_day, "%Y-%m-%d", &tm) == 0) {
        r->snap->end_day[0] = '\0'; /* creator profile's today */
    }
    list_page(r);
}

static void on_timer(uv_timer_t *t)
{
    tier_refresher_t *r = t->data;
    if (!r->running && !r->closing) {
        start_refresh(r);
    }
}

int tier_refresher_create(const tier_refresher_config_t *cfg, tier_refresher_t **out)
{
    tier_refresher_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->cfg = *cfg;
    int rc = uv_timer_init(cfg->loop, &r->timer);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->timer.data = r;
    r->timer_open = 1;
    *out = r;
    return 0;
}

uint64_t tier_refresher_trigger(tier_refresher_t *r)
{
    /* The next refresh to start is the one after the last started: right after the one
     * running, or on the next loop iteration. */
    uint64_t next = r->seq + 1;
    if (r->closing) {
        return next;
    }
    if (r->running) {
        r->again = 1;
        return next;
    }
    int rc = uv_timer_start(&r->timer, on_timer, 0, 0);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "refresh: cannot arm the timer: %s", uv_strerror(rc));
    }
    return next;
}

const char *tier_refresher_last_error(const tier_refresher_t *r)
{
    return r->last_error;
}

static void on_timer_closed(uv_handle_t *h)
{
    tier_refresher_t *r = h->data;
    r->timer_open = 0;
    maybe_free(r);
}

void tier_refresher_close(tier_refresher_t *r, void (*closed)(void *arg), void *arg)
{
    if (r->closing) {
        return;
    }
    r->closing = 1;
    r->closed = closed;
    r->closed_arg = arg;
    if (!r->in_flight) {
        drop_progress(r);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
