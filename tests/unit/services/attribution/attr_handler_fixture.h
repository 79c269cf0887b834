/*
 * attr_handler_fixture.h — what the handler tests of AttributionService share
 * (test_attr_ingest*.c, test_attr_refund.c, test_attr_explain.c, test_attr_report.c,
 * test_attr_settings.c): the service opened as its binary opens it (attr_service_init()
 * on a temp data dir, tier scoring at a port nobody serves), events built in one line,
 * the Record, Explain and report calls made through fake calls (handler_fixture.h), and
 * the checks of an IngestSummary. Times are whole seconds since the epoch. Names start
 * with afx_ (attribution fixture), apart from the service's attr_.
 */
#ifndef ATTR_HANDLER_FIXTURE_H
#define ATTR_HANDLER_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "tests/unit/handler_fixture.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#define DAY_S INT64_C(86400)

typedef Yaowei__Attribution__V1__IngestSummary afx_summary_t;
typedef Yaowei__Attribution__V1__ConversionAttribution afx_explained_t;
typedef Yaowei__Attribution__V1__CreatorReport afx_creator_report_t;

/** Exposure kinds and attribution models, short. */
#define IMPRESSION YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_IMPRESSION
#define VIEW YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_VIEW
#define CLICK YAOWEI__ATTRIBUTION__V1__EXPOSURE_KIND__EXPOSURE_KIND_CLICK
#define DEFAULT_MODEL YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_UNSPECIFIED
#define LAST_TOUCH YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_LAST_TOUCH
#define FIRST_TOUCH YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_FIRST_TOUCH
#define LINEAR YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_LINEAR
#define TIME_DECAY YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_TIME_DECAY
#define POSITION_BASED YAOWEI__ATTRIBUTION__V1__ATTRIBUTION_MODEL__ATTRIBUTION_MODEL_POSITION_BASED

/** The service under test (one a test process). */
extern handler_fx_t afx_fx;

/** Opens attribution on a fresh data dir, with `flags` of its own besides (NULL: none). */
void afx_open(const char *const *flags);

/** Closes it and removes its data dir. */
void afx_close(void);

/** Now, and midnight UTC of today. */
int64_t afx_now_s(void);
int64_t afx_today_s(void);

/** An exposure event with its storage: one product, note "n1", `watch_ms` 0. */
typedef struct {
    Yaowei__Attribution__V1__ExposureEvent ev;
    Google__Protobuf__Timestamp at;
    char *products[1];
} afx_exposure_t;

void afx_exposure(afx_exposure_t *x, const char *event_id, const char *viewer, const char *creator,
                  const char *product, int kind, int64_t at_s);

/** A conversion event with its storage: quantity 1, no currency (the deployment's). */
typedef struct {
    Yaowei__Attribution__V1__ConversionEvent ev;
    Google__Protobuf__Timestamp at;
} afx_conversion_t;

void afx_conversion(afx_conversion_t *x, const char *order, const char *viewer, const char *product,
                    int64_t amount, int64_t at_s);

/** A refund event with its storage. */
typedef struct {
    Yaowei__Attribution__V1__RefundEvent ev;
    Google__Protobuf__Timestamp at;
} afx_refund_t;

void afx_refund(afx_refund_t *x, const char *refund_id, const char *order, int64_t amount,
                int64_t at_s);

/** One exposure, as afx_exposure() builds it, recorded and accepted (checked). */
void afx_accept_exposure(const char *event_id, const char *viewer, const char *creator,
                         const char *product, int kind, int64_t at_s);

/** One conversion, as afx_conversion() builds it, recorded and accepted (checked). */
void afx_accept_conversion(const char *order, const char *viewer, const char *product,
                           int64_t amount, int64_t at_s);

/** RecordExposures, RecordConversions, RecordRefunds of `n` events, run to their end. */
yw_fake_call_t *afx_record_exposures(afx_exposure_t *xs, size_t n);
yw_fake_call_t *afx_record_conversions(afx_conversion_t *cs, size_t n);
yw_fake_call_t *afx_record_refunds(afx_refund_t *rs, size_t n);

/**
 * Checks that the call ended OK with one IngestSummary of these counts and error indexes
 * (ascending, `n_errors` of them), then destroys the call.
 */
void afx_check_summary(yw_fake_call_t *fc, int64_t accepted, int64_t duplicates, int64_t rejected,
                       const int64_t *errors, size_t n_errors);

/** The reason of error `index` of a summary; the check fails when it has none. */
const char *afx_reason(const afx_summary_t *s, int64_t index);

/**
 * Viewer "v" buys product "p" for 1001 at `t` (order `order`), after clicks of creators
 * "A", "B", "C" 3, 2 and 1 days before; an engaged view of "D" an hour before and an
 * impression of "E" ten minutes before (clicks win: not candidates); a click of "F" a
 * second after the order, and one of "G" on another product (neither counts).
 */
void afx_seed_three_clicks(const char *order, int64_t t);

/** ExplainConversion of `order` under `model`, run to its end. */
yw_fake_call_t *afx_explain(const char *order, int model);

/** The attributed_minor of each touch of `order` under `model`, in touch order. */
void afx_check_minor(const char *order, int model, const int64_t *minor, size_t n);

/** GetCreatorReport of `creator` over [today - 20 d, today + 1 d), run to its end. */
yw_fake_call_t *afx_creator_report(const char *creator, int model);

/** A report range: [start_s, end_s) into the two timestamps (their storage). */
void afx_range(Google__Protobuf__Timestamp *start, Google__Protobuf__Timestamp *end,
               int64_t start_s, int64_t end_s);

#endif
