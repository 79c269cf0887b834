/* attr_validate.c — event and request rules of AttributionService. See attr_validate.h. */
#include "services/attribution/attr_validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/field_mask.h"
#include "common/utf8.h"

static int attr__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int attr__fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/**
 * Every string of an event is UTF-8 (proto3): the runtime leaves the events of a batch
 * to us (yw_method_t.items), so that a bad one is rejected alone.
 */
static int attr__utf8(const ProtobufCMessage *event, char *err, size_t errlen)
{
    return yw_utf8_check_message(event, NULL, err, errlen) == 0 ? 0 : -EINVAL;
}

/** A required id: set, at most ATTR_ID_MAX bytes. */
static int attr__id(const char *v, const char *field, char *err, size_t errlen)
{
    if (v == NULL || v[0] == '\0') {
        return attr__fail(err, errlen, "%s: is required", field);
    }
    size_t n = strlen(v);
    if (n > ATTR_ID_MAX) {
        return attr__fail(err, errlen, "%s: at most %d bytes, got %zu", field, ATTR_ID_MAX, n);
    }
    return 0;
}

int attr_time_ns(const Google__Protobuf__Timestamp *ts, const char *field, int required,
                 int64_t *out, char *err, size_t errlen)
{
    if (ts == NULL) {
        if (required) {
            return attr__fail(err, errlen, "%s: is required", field);
        }
        *out = 0;
        return 0;
    }
    if (ts->nanos < 0 || ts->nanos >= 1000000000) {
        return attr__fail(err, errlen, "%s.nanos: must be within [0, 999999999], got %d", field,
                          ts->nanos);
    }
    if (ts->seconds < 0 || ts->seconds >= ATTR_TIME_MAX_S) {
        return attr__fail(err, errlen,
                          "%s: must be between 1970-01-01 and 2200-01-01, got %lld seconds", field,
                          (long long)ts->seconds);
    }
    *out = ts->seconds * ATTR_NS_PER_S + ts->nanos;
    return 0;
}

/** An amount of money: 1 .. ATTR_AMOUNT_MAX minor units. */
static int attr__amount(int64_t v, char *err, size_t errlen)
{
    if (v <= 0) {
        return attr__fail(err, errlen, "amount_minor: must be > 0, got %lld", (long long)v);
    }
    if (v > ATTR_AMOUNT_MAX) {
        return attr__fail(err, errlen, "amount_minor: must be at most %lld (10^15), got %lld",
                          (long long)ATTR_AMOUNT_MAX, (long long)v);
    }
    return 0;
}

static int attr__occur(const Google__Protobuf__Timestamp *ts, int64_t now_ns, int64_t *out,
                       char *err, size_t errlen)
{
    int rc = attr_time_ns(ts, "occur_time", 1, out, err, errlen);
    if (rc != 0) {
        return rc;
    }
    if (*out > now_ns + ATTR_FUTURE_NS) {
        return attr__fail(err, errlen,
                          "occur_time: is %lld s in the future; at most 300 s is allowed",
                          (long long)((*out - now_ns) / ATTR_NS_PER_S));
    }
    return 0;
}

int attr_validate_exposure(const Yaowei__Attribution__V1__ExposureEvent *e, int64_t now_ns,
                           int64_t *occur_ns, char *err, size_t errlen)
{
    int rc;
    if ((rc = attr__utf8(&e->base, err, errlen)) != 0 ||
        (rc = attr__id(e->event_id, "event_id", err, errlen)) != 0 ||
        (rc = attr__id(e->viewer_id, "viewer_id", err, errlen)) != 0 ||
        (rc = attr__id(e->creator_id, "creator_id", err, errlen)) != 0) {
        return rc;
    }
    if (e->note_id != NULL && strlen(e->note_id) > ATTR_ID_MAX) {
        return attr__fail(err, errlen, "note_id: at most %d bytes", ATTR_ID_MAX);
    }
    if (e->n_product_ids == 0) {
        return attr__fail(err, errlen, "product_ids: must not be empty");
    }
    if (e->n_product_ids > ATTR_PRODUCTS_MAX) {
        return attr__fail(err, errlen, "product_ids: at most %d, got %zu", ATTR_PRODUCTS_MAX,
                          e->n_product_ids);
    }
    for (size_t k = 0; k < e->n_product_ids; k++) {
        char field[48];
        snprintf(field, sizeof field, "product_ids[%zu]", k);
        if ((rc = attr__id(e->product_ids[k], field, err, errlen)) != 0) {
            return rc;
        }
    }
    switch ((int)e->kind) {
    case ATTR_KIND_IMPRESSION:
    case ATTR_KIND_VIEW:
    case ATTR_KIND_CLICK:
        break;
    default:
        return attr__fail(err, errlen,
                          "kind: must be EXPOSURE_KIND_IMPRESSION, EXPOSURE_KIND_VIEW or "
                          "EXPOSURE_KIND_CLICK, got %d",
                          (int)e->kind);
    }
    if (e->watch_ms < 0) {
        return attr__fail(err, errlen, "watch_ms: must be >= 0, got %lld", (long long)e->watch_ms);
    }
    return attr__occur(e->occur_time, now_ns, occur_ns, err, errlen);
}

int attr_validate_conversion(const Yaowei__Attribution__V1__ConversionEvent *e,
                             const char *currency, int64_t now_ns, int64_t *occur_ns, char *err,
                             size_t errlen)
{
    int rc;
    if ((rc = attr__utf8(&e->base, err, errlen)) != 0 ||
        (rc = attr__id(e->order_id, "order_id", err, errlen)) != 0 ||
        (rc = attr__id(e->viewer_id, "viewer_id", err, errlen)) != 0 ||
        (rc = attr__id(e->product_id, "product_id", err, errlen)) != 0) {
        return rc;
    }
    if (e->quantity < 0) {
        return attr__fail(err, errlen, "quantity: must be >= 0, got %lld", (long long)e->quantity);
    }
    if ((rc = attr__amount(e->amount_minor, err, errlen)) != 0) {
        return rc;
    }
    if (e->currency != NULL && e->currency[0] != '\0' && strcmp(e->currency, currency) != 0) {
        char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
        return attr__fail(err, errlen, "currency: must be %s (the deployment's) or empty, got %s",
                          currency, yw_quote(e->currency, YW_QUOTE_MAX, q, sizeof q));
    }
    return attr__occur(e->occur_time, now_ns, occur_ns, err, errlen);
}

int attr_validate_refund(const Yaowei__Attribution__V1__RefundEvent *e, int64_t now_ns,
                         int64_t *occur_ns, char *err, size_t errlen)
{
    int rc;
    if ((rc = attr__utf8(&e->base, err, errlen)) != 0 ||
        (rc = attr__id(e->refund_id, "refund_id", err, errlen)) != 0 ||
        (rc = attr__id(e->order_id, "order_id", err, errlen)) != 0) {
        return rc;
    }
    if ((rc = attr__amount(e->amount_minor, err, errlen)) != 0) {
        return rc;
    }
    return attr__occur(e->occur_time, now_ns, occur_ns, err, errlen);
}

int attr_model_resolve(int model, int def)
{
    if (model == ATTR_MODEL_UNSPECIFIED) {
        return def;
    }
    return model >= 1 && model <= ATTR_N_MODELS ? model : -1;
}

grpc_status_code attr_validate_range(const Google__Protobuf__Timestamp *start,
                                     const Google__Protobuf__Timestamp *end, int32_t *d0,
                                     int32_t *d1, char *err, size_t errlen)
{
    int64_t s = 0, e = 0;
    if (attr_time_ns(start, "start_time", 1, &s, err, errlen) != 0 ||
        attr_time_ns(end, "end_time", 1, &e, err, errlen) != 0) {
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (s % ATTR_NS_PER_DAY != 0) {
        attr__fail(err, errlen,
                   "start_time: must be at 00:00:00 UTC (reports are kept per creator and "
                   "UTC day)");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (e % ATTR_NS_PER_DAY != 0) {
        attr__fail(err, errlen,
                   "end_time: must be at 00:00:00 UTC (reports are kept per creator and UTC "
                   "day)");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (e <= s) {
        attr__fail(err, errlen, "end_time: must be after start_time");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    *d0 = attr_day_of(s);
    *d1 = attr_day_of(e);
    if (*d1 - *d0 > ATTR_RANGE_MAX_DAYS) {
        attr__fail(err, errlen, "end_time: the range is %d days; at most %d", *d1 - *d0,
                   ATTR_RANGE_MAX_DAYS);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

/* ---- settings ---- */

static const yw_field_mask_path_t attr__paths[] = {
    {"*", ATTR_SET_ALL},
    {"click_window", ATTR_SET_CLICK_WINDOW},
    {"view_window", ATTR_SET_VIEW_WINDOW},
    {"time_decay_half_life", ATTR_SET_HALF_LIFE},
    {"engaged_view_ms", ATTR_SET_ENGAGED_VIEW_MS},
    {"late_window", ATTR_SET_LATE_WINDOW},
    {"default_model", ATTR_SET_DEFAULT_MODEL},
    {"currency", ATTR_SET_CURRENCY},
};

/** A Duration in ns within [min, max]; -EINVAL with a message otherwise. */
static int attr__duration(const Google__Protobuf__Duration *d, const char *field, int64_t min,
                          int64_t max, int64_t *out, char *err, size_t errlen)
{
    if (d == NULL) {
        return attr__fail(err, errlen, "settings.%s: is required when named in update_mask", field);
    }
    if (d->nanos <= -1000000000 || d->nanos >= 1000000000 || (d->seconds > 0 && d->nanos < 0) ||
        (d->seconds < 0 && d->nanos > 0)) {
        return attr__fail(err, errlen, "settings.%s: not a valid Duration", field);
    }
    if (d->seconds < -INT64_C(1000000000) || d->seconds > INT64_C(1000000000)) {
        return attr__fail(err, errlen, "settings.%s: must be within [%llds, %llds]", field,
                          (long long)(min / ATTR_NS_PER_S), (long long)(max / ATTR_NS_PER_S));
    }
    int64_t ns = d->seconds * ATTR_NS_PER_S + d->nanos;
    if (ns < min || ns > max) {
        return attr__fail(err, errlen, "settings.%s: must be within [%llds, %llds], got %.3fs",
                          field, (long long)(min / ATTR_NS_PER_S), (long long)(max / ATTR_NS_PER_S),
                          (double)ns / 1e9);
    }
    *out = ns;
    return 0;
}

grpc_status_code
attr_settings_apply(const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req,
                    const attr_settings_t *cur, attr_settings_t *out, unsigned *changed, char *err,
                    size_t errlen)
{
    const Yaowei__Attribution__V1__AttributionSettings *s = req->settings;
    if (s == NULL) {
        attr__fail(err, errlen, "settings: is required");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    unsigned mask = 0;
    if (req->update_mask != NULL && req->update_mask->n_paths > 0) {
        size_t bad;
        if (yw_field_mask_bits(req->update_mask, attr__paths,
                               sizeof attr__paths / sizeof attr__paths[0], &mask, &bad) != 0) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            attr__fail(err, errlen,
                       "update_mask.paths[%zu]: unknown field %s (click_window, "
                       "view_window, time_decay_half_life, engaged_view_ms, late_window, "
                       "default_model, currency)",
                       bad, yw_quote(req->update_mask->paths[bad], YW_QUOTE_MAX, q, sizeof q));
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
    } else {
        /* AIP-134: no mask means the fields the request sets. */
        mask |= s->click_window ? ATTR_SET_CLICK_WINDOW : 0;
        mask |= s->view_window ? ATTR_SET_VIEW_WINDOW : 0;
        mask |= s->time_decay_half_life ? ATTR_SET_HALF_LIFE : 0;
        mask |= s->engaged_view_ms != 0 ? ATTR_SET_ENGAGED_VIEW_MS : 0;
        mask |= s->late_window ? ATTR_SET_LATE_WINDOW : 0;
        mask |= s->default_model != 0 ? ATTR_SET_DEFAULT_MODEL : 0;
        mask |= s->currency != NULL && s->currency[0] != '\0' ? ATTR_SET_CURRENCY : 0;
    }
    *out = *cur;
    int rc = 0;
    const int64_t sec = ATTR_NS_PER_S, day = ATTR_NS_PER_DAY;
    if (rc == 0 && (mask & ATTR_SET_CLICK_WINDOW)) {
        rc = attr__duration(s->click_window, "click_window", sec, 90 * day, &out->click_window_ns,
                            err, errlen);
    }
    if (rc == 0 && (mask & ATTR_SET_VIEW_WINDOW)) {
        rc = attr__duration(s->view_window, "view_window", sec, 90 * day, &out->view_window_ns, err,
                            errlen);
    }
    if (rc == 0 && (mask & ATTR_SET_HALF_LIFE)) {
        rc = attr__duration(s->time_decay_half_life, "time_decay_half_life", sec, 365 * day,
                            &out->half_life_ns, err, errlen);
    }
    if (rc == 0 && (mask & ATTR_SET_LATE_WINDOW)) {
        rc = attr__duration(s->late_window, "late_window", 0, 90 * day, &out->late_window_ns, err,
                            errlen);
    }
    if (rc == 0 && (mask & ATTR_SET_ENGAGED_VIEW_MS)) {
        if (s->engaged_view_ms < 0 || s->engaged_view_ms > 86400000) {
            rc = attr__fail(err, errlen,
                            "settings.engaged_view_ms: must be within [0, 86400000], got %lld",
                            (long long)s->engaged_view_ms);
        } else {
            out->engaged_view_ms = s->engaged_view_ms;
        }
    }
    if (rc == 0 && (mask & ATTR_SET_DEFAULT_MODEL)) {
        int m = (int)s->default_model;
        if (m < 1 || m > ATTR_N_MODELS) {
            rc = attr__fail(err, errlen,
                            "settings.default_model: must be one of the models "
                            "(ATTRIBUTION_MODEL_LAST_TOUCH .. _POSITION_BASED), got %d",
                            m);
        } else {
            out->default_model = m;
        }
    }
    if (rc == 0 && (mask & ATTR_SET_CURRENCY)) {
        const char *c = s->currency ? s->currency : "";
        int ok = strlen(c) == 3;
        for (int i = 0; ok && i < 3; i++) {
            ok = c[i] >= 'A' && c[i] <= 'Z';
        }
        if (!ok) {
            char q[YW_QUOTE_CAP(YW_QUOTE_MAX)];
            rc = attr__fail(err, errlen,
                            "settings.currency: must be an ISO 4217 code (3 capital letters), "
                            "got %s",
                            yw_quote(c, YW_QUOTE_MAX, q, sizeof q));
        } else {
            memcpy(out->currency, c, 4);
        }
    }
    if (rc != 0) {
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    *changed = mask;
    return GRPC_STATUS_OK;
}
