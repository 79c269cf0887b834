/*
 * attr_validate.h — the rules every event and request of AttributionService must
 * follow, checked on the loop before any work starts. Pure: no clock (callers pass
 * now_ns), no I/O, no allocation.
 *
 * Event checks return 0, or -EINVAL with the reason in `err`: the field name, and the
 * rule broken, e.g. "viewer_id: is required" (the caller prefixes "events[3]." for the
 * IngestSummary). Request checks return GRPC_STATUS_OK or INVALID_ARGUMENT with the
 * same kind of message.
 */
#ifndef ATTR_VALIDATE_H
#define ATTR_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "services/attribution/attr_state.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Most events in one Record* call. */
#define ATTR_BATCH_MAX 10000
/** Longest id (event, order, refund, viewer, creator, note, product), in bytes. */
#define ATTR_ID_MAX 256
/** Most product ids on one exposure. */
#define ATTR_PRODUCTS_MAX 100
/** How far in the future an occur_time may be. */
#define ATTR_FUTURE_NS (5 * 60 * ATTR_NS_PER_S)
/** Latest occur_time accepted at all (2200-01-01), so that times fit in int64 ns. */
#define ATTR_TIME_MAX_S INT64_C(7258118400)
/**
 * Largest amount_minor of a conversion or a refund: 10^15 minor units (10^13 CNY), the
 * bound creator profile puts on its counts. An order's net amount then fits int64 with
 * room, and a sum of them is kept exact in 128 bits (attr_sum_t): it would take 1.7 x
 * 10^23 orders to overflow, while 9,224 of them already pass int64 (reports then say
 * INT64_MAX).
 */
#define ATTR_AMOUNT_MAX INT64_C(1000000000000000)
/** Longest report range, in days. */
#define ATTR_RANGE_MAX_DAYS 400

/**
 * Converts a Timestamp to ns since the epoch. Returns 0, or -EINVAL with the reason in
 * `err` prefixed by `field`: unset (when `required`), nanos outside [0, 1e9), before
 * 1970 or after 2200.
 */
int attr_time_ns(const Google__Protobuf__Timestamp *ts, const char *field, int required,
                 int64_t *out, char *err, size_t errlen);

/** Checks an exposure; on success `*occur_ns` is its occur_time. */
int attr_validate_exposure(const Yaowei__Attribution__V1__ExposureEvent *e, int64_t now_ns,
                           int64_t *occur_ns, char *err, size_t errlen);

/** Checks a conversion against the deployment's currency. */
int attr_validate_conversion(const Yaowei__Attribution__V1__ConversionEvent *e,
                             const char *currency, int64_t now_ns, int64_t *occur_ns, char *err,
                             size_t errlen);

/** Checks a refund's own fields (the order and the amount left are the state's). */
int attr_validate_refund(const Yaowei__Attribution__V1__RefundEvent *e, int64_t now_ns,
                         int64_t *occur_ns, char *err, size_t errlen);

/** The model to apply: UNSPECIFIED -> `def`; -1 for an unknown value. */
int attr_model_resolve(int model, int def);

/**
 * A report range: both set, at 00:00:00 UTC, start < end, at most ATTR_RANGE_MAX_DAYS.
 * `*d0`, `*d1` get the days [d0, d1).
 */
grpc_status_code attr_validate_range(const Google__Protobuf__Timestamp *start,
                                     const Google__Protobuf__Timestamp *end, int32_t *d0,
                                     int32_t *d1, char *err, size_t errlen);

/** Fields of AttributionSettings an update may name. */
enum {
    ATTR_SET_CLICK_WINDOW = 1u << 0,
    ATTR_SET_VIEW_WINDOW = 1u << 1,
    ATTR_SET_HALF_LIFE = 1u << 2,
    ATTR_SET_ENGAGED_VIEW_MS = 1u << 3,
    ATTR_SET_LATE_WINDOW = 1u << 4,
    ATTR_SET_DEFAULT_MODEL = 1u << 5,
    ATTR_SET_CURRENCY = 1u << 6,
    ATTR_SET_ALL = (1u << 7) - 1,
};

/**
 * Applies an UpdateAttributionSettings request to `cur`, giving `out` (version and
 * update time untouched). The mask: its paths; "*" all; empty: the fields set in the
 * request (AIP-134). `*changed` gets the ATTR_SET_* bits named. INVALID_ARGUMENT for
 * an unknown path, a missing settings message, or a value out of range.
 */
grpc_status_code
attr_settings_apply(const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req,
                    const attr_settings_t *cur, attr_settings_t *out, unsigned *changed, char *err,
                    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
