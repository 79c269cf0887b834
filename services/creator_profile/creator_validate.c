/*
 * creator_validate.c — request rules of CreatorProfileService. See creator_validate.h.
 */
#include "services/creator_profile/creator_validate.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/field_mask.h"
#include "common/utf8.h"
#include "services/creator_profile/creator_day.h"

#define QUOTE_BUFSZ 300

/* Writes the message and returns INVALID_ARGUMENT, so checks read `return fail(...)`. */
static grpc_status_code fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static grpc_status_code fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(err, errlen, fmt, ap);
    va_end(ap);
    return GRPC_STATUS_INVALID_ARGUMENT;
}

static int has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

int creator_id_valid(const char *id)
{
    size_t i = 0;
    if (id == NULL) {
        return 0;
    }
    for (; id[i] != '\0'; i++) {
        char c = id[i];
        if (i >= CREATOR_ID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                     (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
            return 0;
        }
    }
    return i > 0;
}

grpc_status_code creator_validate_id(const char *field, const char *id, char *err, size_t errlen)
{
    char q[QUOTE_BUFSZ];
    if (id == NULL || id[0] == '\0') {
        return fail(err, errlen, "%s: required", field);
    }
    if (!creator_id_valid(id)) {
        return fail(err, errlen, "%s: must be 1-%d characters of [A-Za-z0-9_.-], got %s", field,
                    CREATOR_ID_MAX, yw_quote(id, YW_QUOTE_MAX, q, sizeof q));
    }
    return GRPC_STATUS_OK;
}

/* A free-form text field: at most `max` bytes of UTF-8. */
static grpc_status_code check_text(const char *field, const char *s, size_t max, char *err,
                                   size_t errlen)
{
    size_t len = s == NULL ? 0 : strlen(s);
    if (len > max) {
        return fail(err, errlen, "%s: must be at most %zu bytes, got %zu", field, max, len);
    }
    if (!yw_utf8_valid(s, len)) {
        return fail(err, errlen, "%s: must be valid UTF-8", field);
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code check_categories(const Yaowei__Creator__V1__Creator *c, char *err,
                                         size_t errlen)
{
    if (c->n_categories > CREATOR_CATEGORIES_MAX) {
        return fail(err, errlen, "creator.categories: at most %d categories, got %zu",
                    CREATOR_CATEGORIES_MAX, c->n_categories);
    }
    for (size_t i = 0; i < c->n_categories; i++) {
        const char *cat = c->categories[i];
        size_t len = strlen(cat);
        if (len == 0) {
            return fail(err, errlen, "creator.categories[%zu]: must not be empty", i);
        }
        if (len > CREATOR_CATEGORY_MAX) {
            return fail(err, errlen, "creator.categories[%zu]: must be at most %d bytes, got %zu",
                        i, CREATOR_CATEGORY_MAX, len);
        }
        if (!yw_utf8_valid(cat, len)) {
            return fail(err, errlen, "creator.categories[%zu]: must be valid UTF-8", i);
        }
        if (has_control(cat)) {
            return fail(err, errlen, "creator.categories[%zu]: must not contain control characters",
                        i);
        }
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code check_status(Yaowei__Creator__V1__CreatorStatus st, char *err,
                                     size_t errlen)
{
    switch (st) {
    case YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_UNSPECIFIED:
    case YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_ACTIVE:
    case YAOWEI__CREATOR__V1__CREATOR_STATUS__CREATOR_STATUS_SUSPENDED:
        return GRPC_STATUS_OK;
    default:
        return fail(err, errlen,
                    "creator.status: must be CREATOR_STATUS_ACTIVE (1) or "
                    "CREATOR_STATUS_SUSPENDED (2), got %d",
                    (int)st);
    }
}

/* The fields of `c` named by `mask`, plus the id. */
static grpc_status_code check_creator(const Yaowei__Creator__V1__Creator *c, unsigned mask,
                                      char *err, size_t errlen)
{
    grpc_status_code code;
    if ((code = creator_validate_id("creator.creator_id", c->creator_id, err, errlen)) != 0) {
        return code;
    }
    if ((mask & CREATOR_FIELD_DISPLAY_NAME) &&
        (code = check_text("creator.display_name", c->display_name, CREATOR_DISPLAY_NAME_MAX, err,
                           errlen)) != 0) {
        return code;
    }
    if ((mask & CREATOR_FIELD_REGION) &&
        (code = check_text("creator.region", c->region, CREATOR_REGION_MAX, err, errlen)) != 0) {
        return code;
    }
    if ((mask & CREATOR_FIELD_CATEGORIES) && (code = check_categories(c, err, errlen)) != 0) {
        return code;
    }
    if ((mask & CREATOR_FIELD_FOLLOWERS) && c->followers < 0) {
        return fail(err, errlen, "creator.followers: must be >= 0, got %" PRId64, c->followers);
    }
    if ((mask & CREATOR_FIELD_STATUS) && (code = check_status(c->status, err, errlen)) != 0) {
        return code;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code creator_validate_create(const Yaowei__Creator__V1__CreateCreatorRequest *req,
                                         char *err, size_t errlen)
{
    grpc_status_code code;
    if ((code = check_text("request_id", req->request_id, CREATOR_REQUEST_ID_MAX, err, errlen)) !=
        0) {
        return code;
    }
    if (req->creator == NULL) {
        return fail(err, errlen, "creator: required");
    }
    if ((code = check_creator(req->creator, CREATOR_FIELD_ALL, err, errlen)) != 0) {
        return code;
    }
    const Google__Protobuf__Timestamp *ct = req->creator->create_time;
    /* 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, as google.protobuf.Timestamp says. */
    if (ct != NULL && (ct->seconds < INT64_C(-62135596800) || ct->seconds > INT64_C(253402300799) ||
                       ct->nanos < 0 || ct->nanos > 999999999)) {
        return fail(err, errlen,
                    "creator.create_time: must be within 0001-01-01T00:00:00Z and "
                    "9999-12-31T23:59:59.999999999Z, got seconds=%" PRId64 " nanos=%d",
                    ct->seconds, (int)ct->nanos);
    }
    return GRPC_STATUS_OK;
}

grpc_status_code creator_validate_update(const Yaowei__Creator__V1__UpdateCreatorRequest *req,
                                         unsigned *mask_out, char *err, size_t errlen)
{
    static const yw_field_mask_path_t paths[] = {
        {"display_name", CREATOR_FIELD_DISPLAY_NAME},
        {"region", CREATOR_FIELD_REGION},
        {"categories", CREATOR_FIELD_CATEGORIES},
        {"followers", CREATOR_FIELD_FOLLOWERS},
        {"status", CREATOR_FIELD_STATUS},
        {"*", CREATOR_FIELD_ALL},
    };
    char q[QUOTE_BUFSZ];
    unsigned mask = 0;
    if (req->creator == NULL) {
        return fail(err, errlen, "creator: required");
    }
    size_t bad;
    if (yw_field_mask_bits(req->update_mask, paths, sizeof paths / sizeof paths[0], &mask, &bad) !=
        0) {
        return fail(err, errlen,
                    "update_mask.paths[%zu]: unknown field %s; updatable fields are "
                    "display_name, region, categories, followers, status",
                    bad, yw_quote(req->update_mask->paths[bad], YW_QUOTE_MAX, q, sizeof q));
    }
    if (mask == 0) {
        mask = CREATOR_FIELD_ALL;
    }
    grpc_status_code code = check_creator(req->creator, mask, err, errlen);
    if (code != GRPC_STATUS_OK) {
        return code;
    }
    *mask_out = mask;
    return GRPC_STATUS_OK;
}

grpc_status_code creator_validate_ids(const char *field, char *const *ids, size_t n, char *err,
                                      size_t errlen)
{
    char name[64];
    if (n > CREATOR_BATCH_MAX) {
        return fail(err, errlen, "%s: at most %d ids, got %zu", field, CREATOR_BATCH_MAX, n);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s[%zu]", field, i);
        grpc_status_code code = creator_validate_id(name, ids[i], err, errlen);
        if (code != GRPC_STATUS_OK) {
            return code;
        }
    }
    return GRPC_STATUS_OK;
}

grpc_status_code creator_validate_list(const Yaowei__Creator__V1__ListCreatorsRequest *req,
                                       char *err, size_t errlen)
{
    grpc_status_code code;
    if (req->page_size < 0) {
        return fail(err, errlen, "page_size: must be >= 0, got %d", (int)req->page_size);
    }
    if ((code = check_text("category", req->category, CREATOR_CATEGORY_MAX, err, errlen)) != 0 ||
        (code = check_text("region", req->region, CREATOR_REGION_MAX, err, errlen)) != 0) {
        return code;
    }
    if (req->min_followers < 0) {
        return fail(err, errlen, "min_followers: must be >= 0, got %" PRId64, req->min_followers);
    }
    if (req->max_followers < 0) {
        return fail(err, errlen,
                    "max_followers: must be >= 0 (0 means no upper bound), got %" PRId64,
                    req->max_followers);
    }
    if (req->max_followers != 0 && req->max_followers < req->min_followers) {
        return fail(err, errlen,
                    "max_followers: must be >= min_followers (%" PRId64 ") or 0, got %" PRId64,
                    req->min_followers, req->max_followers);
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code check_count(size_t row, const char *name, int64_t v, char *err,
                                    size_t errlen)
{
    if (v < 0) {
        return fail(err, errlen, "stats[%zu].%s: must be >= 0, got %" PRId64, row, name, v);
    }
    if (v > CREATOR_COUNT_MAX) {
        return fail(err, errlen, "stats[%zu].%s: must be <= %" PRId64 ", got %" PRId64, row, name,
                    CREATOR_COUNT_MAX, v);
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code check_stats_row(size_t i, const Yaowei__Creator__V1__NoteDailyStats *s,
                                        int64_t today, char *err, size_t errlen)
{
    char q[QUOTE_BUFSZ], name[64], todays[CREATOR_DAY_BUFSZ];
    grpc_status_code code;
    size_t len = strlen(s->note_id);
    if (len == 0) {
        return fail(err, errlen, "stats[%zu].note_id: required", i);
    }
    if (len > CREATOR_NOTE_ID_MAX) {
        return fail(err, errlen, "stats[%zu].note_id: must be at most %d bytes, got %zu", i,
                    CREATOR_NOTE_ID_MAX, len);
    }
    if (!yw_utf8_valid(s->note_id, len) || has_control(s->note_id)) {
        return fail(err, errlen,
                    "stats[%zu].note_id: must be UTF-8 without control characters, got %s", i,
                    yw_quote(s->note_id, YW_QUOTE_MAX, q, sizeof q));
    }
    snprintf(name, sizeof name, "stats[%zu].creator_id", i);
    if ((code = creator_validate_id(name, s->creator_id, err, errlen)) != 0) {
        return code;
    }
    int64_t day;
    if (s->day[0] == '\0') {
        return fail(err, errlen, "stats[%zu].day: required", i);
    }
    if (creator_day_parse(s->day, &day) != 0) {
        return fail(err, errlen,
                    "stats[%zu].day: must be a calendar date \"YYYY-MM-DD\" from 1970-01-01, "
                    "got %s",
                    i, yw_quote(s->day, YW_QUOTE_MAX, q, sizeof q));
    }
    if (day > today) {
        creator_day_format(today, todays);
        return fail(err, errlen, "stats[%zu].day: must not be after today (%s UTC), got %s", i,
                    todays, yw_quote(s->day, YW_QUOTE_MAX, q, sizeof q));
    }
    const struct {
        const char *name;
        int64_t v;
    } counts[] = {
        {"impressions", s->impressions},
        {"views", s->views},
        {"video_plays", s->video_plays},
        {"avg_watch_ms", s->avg_watch_ms},
        {"likes", s->likes},
        {"collects", s->collects},
        {"comments", s->comments},
        {"shares", s->shares},
        {"follows_gained", s->follows_gained},
    };
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        if ((code = check_count(i, counts[k].name, counts[k].v, err, errlen)) != 0) {
            return code;
        }
    }
    /* Written so that NaN fails too. */
    if (!(s->completion_rate >= 0.0 && s->completion_rate <= 1.0)) {
        return fail(err, errlen, "stats[%zu].completion_rate: must be within [0, 1], got %g", i,
                    s->completion_rate);
    }
    return GRPC_STATUS_OK;
}

grpc_status_code
creator_validate_record_stats(const Yaowei__Creator__V1__RecordNoteStatsRequest *req, int64_t today,
                              char *err, size_t errlen)
{
    return creator_validate_record_stats_known(req, today, NULL, NULL, err, errlen);
}

grpc_status_code
creator_validate_record_stats_known(const Yaowei__Creator__V1__RecordNoteStatsRequest *req,
                                    int64_t today, int (*known)(const char *creator_id, void *ctx),
                                    void *ctx, char *err, size_t errlen)
{
    size_t bad_row;
    return creator_validate_record_stats_row(req, today, known, ctx, &bad_row, err, errlen);
}

grpc_status_code
creator_validate_record_stats_row(const Yaowei__Creator__V1__RecordNoteStatsRequest *req,
                                  int64_t today, int (*known)(const char *creator_id, void *ctx),
                                  void *ctx, size_t *bad_row, char *err, size_t errlen)
{
    char q[QUOTE_BUFSZ];
    *bad_row = req->n_stats;
    if (req->n_stats > CREATOR_STATS_ROWS_MAX) {
        return fail(err, errlen, "stats: at most %d rows, got %zu", CREATOR_STATS_ROWS_MAX,
                    req->n_stats);
    }
    for (size_t i = 0; i < req->n_stats; i++) {
        const Yaowei__Creator__V1__NoteDailyStats *row = req->stats[i];
        grpc_status_code code = check_stats_row(i, row, today, err, errlen);
        if (code != GRPC_STATUS_OK) {
            *bad_row = i;
            return code;
        }
        /* Batches are mostly one creator: ask only when the id changes. */
        if (known != NULL &&
            (i == 0 || strcmp(row->creator_id, req->stats[i - 1]->creator_id) != 0) &&
            !known(row->creator_id, ctx)) {
            *bad_row = i;
            return fail(err, errlen, "stats[%zu].creator_id: creator %s does not exist", i,
                        yw_quote(row->creator_id, YW_QUOTE_MAX, q, sizeof q));
        }
    }
    return GRPC_STATUS_OK;
}

grpc_status_code creator_validate_window(int32_t window_days, const char *end_day, int64_t today,
                                         int32_t *window, int64_t *end, char *err, size_t errlen)
{
    char q[QUOTE_BUFSZ];
    if (window_days < 0 || window_days > CREATOR_WINDOW_MAX) {
        return fail(err, errlen, "window_days: must be within 1..%d (0 means %d), got %d",
                    CREATOR_WINDOW_MAX, CREATOR_WINDOW_DEFAULT, (int)window_days);
    }
    int64_t day = today;
    if (end_day != NULL && end_day[0] != '\0' && creator_day_parse(end_day, &day) != 0) {
        return fail(err, errlen,
                    "end_day: must be a calendar date \"YYYY-MM-DD\" from 1970-01-01 or empty "
                    "(today), got %s",
                    yw_quote(end_day, YW_QUOTE_MAX, q, sizeof q));
    }
    *window = window_days == 0 ? CREATOR_WINDOW_DEFAULT : window_days;
    *end = day;
    return GRPC_STATUS_OK;
}

const char *creator_missing_message(const char *field, char *const *ids, const size_t *missing,
                                    size_t n_missing, char *buf, size_t len)
{
    enum { MAX_NAMED = 20 };
    char q[QUOTE_BUFSZ];
    size_t o = 0;
    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (n_missing == 1) {
        snprintf(buf, len, "%s[%zu]: creator %s not found", field, missing[0],
                 yw_quote(ids[missing[0]], YW_QUOTE_MAX, q, sizeof q));
        return buf;
    }
    int w = snprintf(buf, len, "%s: %zu creators not found:", field, n_missing);
    o = w < 0 ? 0 : (size_t)w;
    for (size_t i = 0; i < n_missing && i < MAX_NAMED && o < len; i++) {
        w = snprintf(buf + o, len - o, "%s %s[%zu] %s", i ? "," : "", field, missing[i],
                     yw_quote(ids[missing[i]], YW_QUOTE_MAX, q, sizeof q));
        o += w < 0 ? 0 : (size_t)w;
    }
    if (n_missing > MAX_NAMED && o < len) {
        snprintf(buf + o, len - o, ", and %zu more", n_missing - MAX_NAMED);
    }
    return buf;
}
