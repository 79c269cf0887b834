/*
 * demo_load.c — the workload of the main job, sent only through the services' public
 * gRPC APIs: CreateCreator, RecordNoteStats, RecordExposures, RecordConversions,
 * RecordRefunds. Each step is a stream of batches for demo_pipe_run(); the requests are
 * built from the generator's compact records in the batch's arena.
 *
 * Ids: creators "c-<n>", notes "n-<n>", products "p-<n>", viewers "v-<n>", exposures
 * "e-<seq>", orders "o-<seq>", refunds "r-<seq>". The generator's broken events have
 * ids of their own ("x-", "ox-", "rx-", or none), so that a rejection of any other
 * event is a surprise the report shows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/demo/demo.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"
#include "yaowei/creator/v1/creator.pb-c.h"

#define STATS_BATCH 5000
/*
 * One refund per RecordRefunds call: attribution's attr_refund_admit() reserves room in
 * refund_list for n_refunds + 1, but n_refunds grows only when a refund commits, so a
 * batch of several refunds can write past the list (heap overflow in
 * attr_refund_commit(), seen under ASan). One refund per call, one call in flight,
 * stays within what is reserved. Refunds are few, so this costs little.
 */
#define REFUND_BATCH 1

#define NEW(arena, type) ((type *)demo_arena_alloc((arena), sizeof(type)))

static int oom(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s: out of memory building a request", what);
    return -ENOMEM;
}

static Google__Protobuf__Timestamp *timestamp_ms(demo_arena_t *a, int64_t ms)
{
    Google__Protobuf__Timestamp *ts = NEW(a, Google__Protobuf__Timestamp);
    if (ts != NULL) {
        google__protobuf__timestamp__init(ts);
        ts->seconds = ms / 1000;
        ts->nanos = (int32_t)(ms % 1000) * 1000000;
    }
    return ts;
}

/* ---- creators ---- */

typedef struct {
    demo_t *d;
    uint32_t next;
} creators_src_t;

static int creators_fill(void *src, demo_arena_t *a, ProtobufCMessage **out, size_t *n, char *err,
                         size_t errlen)
{
    creators_src_t *s = src;
    const demo_world_t *w = s->d->world;
    if (s->next >= w->p.creators) {
        return 0;
    }
    uint32_t i = s->next++;
    const demo_creator_t *c = &w->creators[i];
    Yaowei__Creator__V1__CreateCreatorRequest *req =
        NEW(a, Yaowei__Creator__V1__CreateCreatorRequest);
    Yaowei__Creator__V1__Creator *cr = NEW(a, Yaowei__Creator__V1__Creator);
    char **cats = demo_arena_alloc(a, 2 * sizeof *cats);
    if (req == NULL || cr == NULL || cats == NULL) {
        return oom(err, errlen, "creators");
    }
    yaowei__creator__v1__create_creator_request__init(req);
    yaowei__creator__v1__creator__init(cr);
    cr->creator_id = demo_arena_printf(a, "c-%06u", i);
    cr->display_name = demo_arena_printf(a, "%s creator %u", demo_category_names[c->category], i);
    /* AIP-155: a resent call (UNAVAILABLE) returns the creator the first one made. */
    req->request_id = demo_arena_printf(a, "demo-%llu-c-%06u", (unsigned long long)w->p.seed, i);
    if (cr->creator_id == NULL || cr->display_name == NULL || req->request_id == NULL) {
        return oom(err, errlen, "creators");
    }
    cr->region = (char *)demo_region_names[c->region];
    cats[0] = (char *)demo_category_names[c->category];
    cats[1] = (char *)demo_category_names[c->category2];
    cr->categories = cats;
    cr->n_categories = c->has_category2 ? 2 : 1;
    cr->followers = c->followers;
    req->creator = cr;
    *out = &req->base;
    *n = 1;
    return 0;
}

static int creators_failed(void *src, grpc_status_code code, const char *detail, size_t n,
                           char *err, size_t errlen)
{
    creators_src_t *s = src;
    if (code == GRPC_STATUS_ALREADY_EXISTS) {
        /* Services that were not fresh: the creator stays as it was. */
        s->d->creators_existing += n;
        return 0;
    }
    snprintf(err, errlen, "creators: CreateCreator: %s: %s", yw_status_name(code), detail);
    return -EIO;
}

int demo_load_creators(demo_t *d, char *err, size_t errlen)
{
    creators_src_t src = {.d = d};
    demo_pipe_def_t def = {
        .label = "creators",
        .unit = "creators",
        .method = "/yaowei.creator.v1.CreatorProfileService/CreateCreator",
        .resp_desc = &yaowei__creator__v1__creator__descriptor,
        .inflight = d->create_inflight,
        .total = d->world->p.creators,
        .timeout_ms = DEMO_TIMEOUT_MS,
        .fill = creators_fill,
        .failed = creators_failed,
        .src = &src,
    };
    return demo_pipe_run(d->rt, &d->cp, &def, d->progress, &d->st_creators, err, errlen);
}

/* ---- note stats ---- */

typedef struct {
    demo_t *d;
    demo_stats_iter_t it;
    demo_stat_row_t *rows;
    char (*days)[11]; /* "YYYY-MM-DD" of each day of the period */
    uint64_t upserted;
} stats_src_t;

static int stats_fill(void *src, demo_arena_t *a, ProtobufCMessage **out, size_t *n, char *err,
                      size_t errlen)
{
    stats_src_t *s = src;
    const demo_world_t *w = s->d->world;
    size_t k = demo_stats_next(w, &s->it, s->rows, STATS_BATCH);
    if (k == 0) {
        return 0;
    }
    Yaowei__Creator__V1__RecordNoteStatsRequest *req =
        NEW(a, Yaowei__Creator__V1__RecordNoteStatsRequest);
    Yaowei__Creator__V1__NoteDailyStats *st =
        demo_arena_alloc(a, k * sizeof(Yaowei__Creator__V1__NoteDailyStats));
    Yaowei__Creator__V1__NoteDailyStats **ptrs = demo_arena_alloc(a, k * sizeof *ptrs);
    if (req == NULL || st == NULL || ptrs == NULL) {
        return oom(err, errlen, "note stats");
    }
    yaowei__creator__v1__record_note_stats_request__init(req);
    for (size_t i = 0; i < k; i++) {
        const demo_stat_row_t *r = &s->rows[i];
        const demo_note_t *note = &w->notes[r->note];
        Yaowei__Creator__V1__NoteDailyStats *x = &st[i];
        yaowei__creator__v1__note_daily_stats__init(x);
        x->note_id = demo_arena_printf(a, "n-%07u", r->note);
        x->creator_id = demo_arena_printf(a, "c-%06u", note->creator);
        if (x->note_id == NULL || x->creator_id == NULL) {
            return oom(err, errlen, "note stats");
        }
        x->day = s->days[r->day];
        x->is_video = note->is_video;
        x->impressions = r->impressions;
        x->views = r->views;
        x->video_plays = r->video_plays;
        x->avg_watch_ms = r->avg_watch_ms;
        x->completion_rate = r->completion_rate;
        x->likes = r->likes;
        x->collects = r->collects;
        x->comments = r->comments;
        x->shares = r->shares;
        x->follows_gained = r->follows_gained;
        ptrs[i] = x;
    }
    req->stats = ptrs;
    req->n_stats = k;
    *out = &req->base;
    *n = k;
    return 0;
}

static int stats_done(void *src, const ProtobufCMessage *req, const ProtobufCMessage *resp,
                      size_t n, char *err, size_t errlen)
{
    stats_src_t *s = src;
    const Yaowei__Creator__V1__RecordNoteStatsResponse *r =
        (const Yaowei__Creator__V1__RecordNoteStatsResponse *)resp;
    (void)req;
    if (r->upserted < 0 || (size_t)r->upserted != n) {
        snprintf(err, errlen, "note stats: RecordNoteStats upserted %d of %zu rows", r->upserted,
                 n);
        return -EIO;
    }
    s->upserted += n;
    return 0;
}

int demo_load_stats(demo_t *d, char *err, size_t errlen)
{
    const demo_world_t *w = d->world;
    stats_src_t src = {.d = d};
    src.rows = malloc(STATS_BATCH * sizeof *src.rows);
    src.days = malloc(w->p.days * sizeof *src.days);
    if (src.rows == NULL || src.days == NULL) {
        free(src.rows);
        free(src.days);
        snprintf(err, errlen, "note stats: out of memory");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->p.days; i++) {
        demo_fmt_day(src.days[i], sizeof src.days[i], w->start_s + (int64_t)i * 86400);
    }
    demo_stats_begin(w, &src.it);
    demo_pipe_def_t def = {
        .label = "note stats",
        .unit = "rows",
        .method = "/yaowei.creator.v1.CreatorProfileService/RecordNoteStats",
        .resp_desc = &yaowei__creator__v1__record_note_stats_response__descriptor,
        .inflight = d->inflight,
        .total = d->stats_rows,
        .timeout_ms = DEMO_TIMEOUT_MS,
        .fill = stats_fill,
        .done = stats_done,
        .src = &src,
    };
    int rc = demo_pipe_run(d->rt, &d->cp, &def, d->progress, &d->st_stats, err, errlen);
    free(src.rows);
    free(src.days);
    return rc;
}

/* ---- what attribution's summaries say ---- */

/* Counts a summary; a rejected event whose id the generator did not mark is a
 * surprise, kept with its reason. */
static void count_summary(demo_got_t *g, const Yaowei__Attribution__V1__IngestSummary *sum,
                          size_t n, const char *(*id_of)(const ProtobufCMessage *, size_t),
                          const ProtobufCMessage *req)
{
    g->sent += n;
    g->accepted += (uint64_t)sum->accepted;
    g->duplicates += (uint64_t)sum->duplicates;
    g->rejected += (uint64_t)sum->rejected;
    g->past_join_horizon += (uint64_t)sum->past_join_horizon;
    for (size_t i = 0; i < sum->n_errors; i++) {
        const Yaowei__Attribution__V1__IngestError *e = sum->errors[i];
        const char *id = e->index >= 0 && (size_t)e->index < n ? id_of(req, (size_t)e->index) : "";
        if (id[0] == '\0' || strncmp(id, "x-", 2) == 0 || strncmp(id, "ox-", 3) == 0 ||
            strncmp(id, "rx-", 3) == 0) {
            continue;
        }
        if (g->surprises < DEMO_SURPRISES_SHOWN) {
            snprintf(g->surprise[g->surprises], sizeof g->surprise[0], "%s: %s", id,
                     e->reason ? e->reason : "");
        }
        g->surprises++;
    }
}

/* ---- exposures ---- */

typedef struct {
    demo_t *d;
    demo_exposure_t *buf;
    /* The late stream: an array and a cursor (NULL: the main stream). */
    const demo_exposure_t *late;
    size_t n_late, pos;
} exposures_src_t;

static int build_exposures(const demo_t *d, demo_arena_t *a, const demo_exposure_t *evs, size_t k,
                           ProtobufCMessage **out, char *err, size_t errlen)
{
    const demo_world_t *w = d->world;
    Yaowei__Attribution__V1__RecordExposuresRequest *req =
        NEW(a, Yaowei__Attribution__V1__RecordExposuresRequest);
    Yaowei__Attribution__V1__ExposureEvent *x =
        demo_arena_alloc(a, k * sizeof(Yaowei__Attribution__V1__ExposureEvent));
    Yaowei__Attribution__V1__ExposureEvent **ptrs = demo_arena_alloc(a, k * sizeof *ptrs);
    if (req == NULL || x == NULL || ptrs == NULL) {
        return oom(err, errlen, "exposures");
    }
    yaowei__attribution__v1__record_exposures_request__init(req);
    int64_t wall_ms = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < k; i++) {
        const demo_exposure_t *ev = &evs[i];
        const demo_note_t *note = &w->notes[ev->note];
        Yaowei__Attribution__V1__ExposureEvent *e = &x[i];
        yaowei__attribution__v1__exposure_event__init(e);
        char **prods = demo_arena_alloc(a, note->n_products * sizeof *prods);
        e->event_id = ev->bad == DEMO_BAD_EXP_NO_ID ? (char *)""
                      : ev->bad ? demo_arena_printf(a, "x-%llu", (unsigned long long)ev->seq)
                                : demo_arena_printf(a, "e-%llu", (unsigned long long)ev->seq);
        e->viewer_id = ev->bad == DEMO_BAD_EXP_NO_VIEWER
                           ? (char *)""
                           : demo_arena_printf(a, "v-%08u", ev->viewer);
        e->creator_id = demo_arena_printf(a, "c-%06u", ev->creator);
        e->note_id = demo_arena_printf(a, "n-%07u", ev->note);
        e->occur_time =
            timestamp_ms(a, ev->bad == DEMO_BAD_EXP_FUTURE ? wall_ms + 86400000 : ev->time_ms);
        if (prods == NULL || e->event_id == NULL || e->viewer_id == NULL || e->creator_id == NULL ||
            e->note_id == NULL || e->occur_time == NULL) {
            return oom(err, errlen, "exposures");
        }
        for (int j = 0; j < note->n_products; j++) {
            if ((prods[j] = demo_arena_printf(a, "p-%07u", note->products[j])) == NULL) {
                return oom(err, errlen, "exposures");
            }
        }
        e->product_ids = prods;
        e->n_product_ids = ev->bad == DEMO_BAD_EXP_NO_PRODUCTS ? 0 : note->n_products;
        e->kind = ev->bad == DEMO_BAD_EXP_NO_KIND
                      ? YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_UNSPECIFIED
                      : (Yaowei__Attribution__V1__ExposureKind)ev->kind;
        e->watch_ms = ev->bad == DEMO_BAD_EXP_WATCH ? -1 : ev->watch_ms;
        ptrs[i] = e;
    }
    req->events = ptrs;
    req->n_events = k;
    *out = &req->base;
    return 0;
}

static int exposures_fill(void *src, demo_arena_t *a, ProtobufCMessage **out, size_t *n, char *err,
                          size_t errlen)
{
    exposures_src_t *s = src;
    const demo_exposure_t *evs;
    size_t k;
    if (s->late != NULL) {
        k = s->n_late - s->pos < (size_t)s->d->batch ? s->n_late - s->pos : (size_t)s->d->batch;
        evs = s->late + s->pos;
        s->pos += k;
    } else {
        int rc = demo_events_exposures(s->d->events, s->buf, (size_t)s->d->batch, &k);
        if (rc != 0) {
            snprintf(err, errlen, "exposures: the generator ran out of memory");
            return rc;
        }
        evs = s->buf;
    }
    if (k == 0) {
        return 0;
    }
    *n = k;
    return build_exposures(s->d, a, evs, k, out, err, errlen);
}

static const char *exposure_id(const ProtobufCMessage *req, size_t i)
{
    return ((const Yaowei__Attribution__V1__RecordExposuresRequest *)req)->events[i]->event_id;
}

static int exposures_done(void *src, const ProtobufCMessage *req, const ProtobufCMessage *resp,
                          size_t n, char *err, size_t errlen)
{
    exposures_src_t *s = src;
    (void)err;
    (void)errlen;
    count_summary(&s->d->got_exp, (const Yaowei__Attribution__V1__IngestSummary *)resp, n,
                  exposure_id, req);
    return 0;
}

static int run_exposures(demo_t *d, const char *label, const demo_exposure_t *late, size_t n_late,
                         uint64_t total, demo_pipe_stats_t *st, char *err, size_t errlen)
{
    exposures_src_t src = {.d = d, .late = late, .n_late = n_late};
    if (late == NULL && (src.buf = malloc((size_t)d->batch * sizeof *src.buf)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", label);
        return -ENOMEM;
    }
    demo_pipe_def_t def = {
        .label = label,
        .method = "/yaowei.attribution.v1.AttributionService/RecordExposures",
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        .inflight = d->inflight,
        .total = total,
        .timeout_ms = DEMO_TIMEOUT_MS,
        .fill = exposures_fill,
        .done = exposures_done,
        .src = &src,
    };
    int rc = demo_pipe_run(d->rt, &d->at, &def, d->progress, st, err, errlen);
    free(src.buf);
    return rc;
}

int demo_load_exposures(demo_t *d, char *err, size_t errlen)
{
    return run_exposures(d, "exposures", NULL, 0, d->plan.exposures.sent - d->plan.late_sent,
                         &d->st_exposures, err, errlen);
}

int demo_load_late(demo_t *d, char *err, size_t errlen)
{
    size_t n = 0;
    const demo_exposure_t *late = demo_events_late(d->events, &n);
    if (late == NULL || n == 0) {
        return 0;
    }
    return run_exposures(d, "late exp.", late, n, n, &d->st_late, err, errlen);
}

/* ---- conversions ---- */

typedef struct {
    demo_t *d;
    const demo_conversion_t *convs;
    size_t n, pos;
} conversions_src_t;

static int conversions_fill(void *src, demo_arena_t *a, ProtobufCMessage **out, size_t *n,
                            char *err, size_t errlen)
{
    conversions_src_t *s = src;
    size_t k = s->n - s->pos < (size_t)s->d->batch ? s->n - s->pos : (size_t)s->d->batch;
    if (k == 0) {
        return 0;
    }
    Yaowei__Attribution__V1__RecordConversionsRequest *req =
        NEW(a, Yaowei__Attribution__V1__RecordConversionsRequest);
    Yaowei__Attribution__V1__ConversionEvent *x =
        demo_arena_alloc(a, k * sizeof(Yaowei__Attribution__V1__ConversionEvent));
    Yaowei__Attribution__V1__ConversionEvent **ptrs = demo_arena_alloc(a, k * sizeof *ptrs);
    if (req == NULL || x == NULL || ptrs == NULL) {
        return oom(err, errlen, "conversions");
    }
    yaowei__attribution__v1__record_conversions_request__init(req);
    for (size_t i = 0; i < k; i++) {
        const demo_conversion_t *cv = &s->convs[s->pos + i];
        Yaowei__Attribution__V1__ConversionEvent *e = &x[i];
        yaowei__attribution__v1__conversion_event__init(e);
        e->order_id =
            demo_arena_printf(a, "%s-%llu", cv->bad ? "ox" : "o", (unsigned long long)cv->seq);
        e->viewer_id = cv->bad == DEMO_BAD_CONV_NO_VIEWER
                           ? (char *)""
                           : demo_arena_printf(a, "v-%08u", cv->viewer);
        e->product_id = cv->bad == DEMO_BAD_CONV_NO_PRODUCT
                            ? (char *)""
                            : demo_arena_printf(a, "p-%07u", cv->product);
        e->occur_time = timestamp_ms(a, cv->time_ms);
        if (e->order_id == NULL || e->viewer_id == NULL || e->product_id == NULL ||
            e->occur_time == NULL) {
            return oom(err, errlen, "conversions");
        }
        e->quantity = cv->quantity;
        e->amount_minor = cv->bad == DEMO_BAD_CONV_AMOUNT ? 0 : cv->amount_minor;
        /* Empty: the deployment's currency. */
        e->currency = cv->bad == DEMO_BAD_CONV_CURRENCY ? s->d->bad_currency : (char *)"";
        ptrs[i] = e;
    }
    s->pos += k;
    req->events = ptrs;
    req->n_events = k;
    *out = &req->base;
    *n = k;
    return 0;
}

static const char *conversion_id(const ProtobufCMessage *req, size_t i)
{
    return ((const Yaowei__Attribution__V1__RecordConversionsRequest *)req)->events[i]->order_id;
}

static int conversions_done(void *src, const ProtobufCMessage *req, const ProtobufCMessage *resp,
                            size_t n, char *err, size_t errlen)
{
    conversions_src_t *s = src;
    (void)err;
    (void)errlen;
    count_summary(&s->d->got_conv, (const Yaowei__Attribution__V1__IngestSummary *)resp, n,
                  conversion_id, req);
    return 0;
}

int demo_load_conversions(demo_t *d, char *err, size_t errlen)
{
    conversions_src_t src = {.d = d};
    src.convs = demo_events_conversions(d->events, &src.n);
    demo_pipe_def_t def = {
        .label = "conversions",
        .method = "/yaowei.attribution.v1.AttributionService/RecordConversions",
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        .inflight = d->inflight,
        .total = src.n,
        .timeout_ms = DEMO_TIMEOUT_MS,
        .fill = conversions_fill,
        .done = conversions_done,
        .src = &src,
    };
    return demo_pipe_run(d->rt, &d->at, &def, d->progress, &d->st_conversions, err, errlen);
}

/* ---- refunds ---- */

typedef struct {
    demo_t *d;
    const demo_refund_t *refunds;
    size_t n, pos;
} refunds_src_t;

static int refunds_fill(void *src, demo_arena_t *a, ProtobufCMessage **out, size_t *n, char *err,
                        size_t errlen)
{
    refunds_src_t *s = src;
    size_t k = s->n - s->pos < REFUND_BATCH ? s->n - s->pos : REFUND_BATCH;
    if (k == 0) {
        return 0;
    }
    Yaowei__Attribution__V1__RecordRefundsRequest *req =
        NEW(a, Yaowei__Attribution__V1__RecordRefundsRequest);
    Yaowei__Attribution__V1__RefundEvent *x =
        demo_arena_alloc(a, k * sizeof(Yaowei__Attribution__V1__RefundEvent));
    Yaowei__Attribution__V1__RefundEvent **ptrs = demo_arena_alloc(a, k * sizeof *ptrs);
    if (req == NULL || x == NULL || ptrs == NULL) {
        return oom(err, errlen, "refunds");
    }
    yaowei__attribution__v1__record_refunds_request__init(req);
    for (size_t i = 0; i < k; i++) {
        const demo_refund_t *rf = &s->refunds[s->pos + i];
        Yaowei__Attribution__V1__RefundEvent *e = &x[i];
        yaowei__attribution__v1__refund_event__init(e);
        e->refund_id =
            demo_arena_printf(a, "%s-%llu", rf->bad ? "rx" : "r", (unsigned long long)rf->seq);
        e->order_id = demo_arena_printf(a, "%s-%llu",
                                        rf->bad == DEMO_BAD_REF_UNKNOWN_ORDER ? "o-missing" : "o",
                                        (unsigned long long)rf->order);
        e->occur_time = timestamp_ms(a, rf->time_ms);
        if (e->refund_id == NULL || e->order_id == NULL || e->occur_time == NULL) {
            return oom(err, errlen, "refunds");
        }
        e->amount_minor = rf->amount_minor;
        ptrs[i] = e;
    }
    s->pos += k;
    req->events = ptrs;
    req->n_events = k;
    *out = &req->base;
    *n = k;
    return 0;
}

static const char *refund_id(const ProtobufCMessage *req, size_t i)
{
    return ((const Yaowei__Attribution__V1__RecordRefundsRequest *)req)->events[i]->refund_id;
}

static int refunds_done(void *src, const ProtobufCMessage *req, const ProtobufCMessage *resp,
                        size_t n, char *err, size_t errlen)
{
    refunds_src_t *s = src;
    (void)err;
    (void)errlen;
    count_summary(&s->d->got_ref, (const Yaowei__Attribution__V1__IngestSummary *)resp, n,
                  refund_id, req);
    return 0;
}

int demo_load_refunds(demo_t *d, char *err, size_t errlen)
{
    refunds_src_t src = {.d = d};
    src.refunds = demo_events_refunds(d->events, &src.n);
    demo_pipe_def_t def = {
        .label = "refunds",
        .method = "/yaowei.attribution.v1.AttributionService/RecordRefunds",
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        /* See REFUND_BATCH. */
        .inflight = 1,
        .total = src.n,
        .timeout_ms = DEMO_TIMEOUT_MS,
        .fill = refunds_fill,
        .done = refunds_done,
        .src = &src,
    };
    return demo_pipe_run(d->rt, &d->at, &def, d->progress, &d->st_refunds, err, errlen);
}
