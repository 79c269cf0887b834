/* attr_handler_fixture.c — see attr_handler_fixture.h. */
#include "tests/unit/services/attribution/attr_handler_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/attribution/attr_service.h"
#include "tests/unit/test.h"

handler_fx_t afx_fx;

void afx_open(const char *const *flags)
{
    const char *all[HANDLER_FX_FLAGS_MAX + 1] = {"--tier-scoring-addr=127.0.0.1:1",
                                                 "--dedup-filter-mb=1", "--index-run-mb=1"};
    size_t n = 3;
    for (size_t i = 0; flags != NULL && flags[i] != NULL; i++) {
        YW_CHECK(n < HANDLER_FX_FLAGS_MAX);
        all[n++] = flags[i];
    }
    all[n] = NULL;
    handler_fx_open(&afx_fx, &attr_app, all);
}

void afx_close(void)
{
    handler_fx_close(&afx_fx);
}

int64_t afx_now_s(void)
{
    return (int64_t)time(NULL);
}

int64_t afx_today_s(void)
{
    int64_t now = afx_now_s();
    return now - now % DAY_S;
}

static void at(Google__Protobuf__Timestamp *ts, int64_t s)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = s;
}

void afx_exposure(afx_exposure_t *x, const char *event_id, const char *viewer, const char *creator,
                  const char *product, int kind, int64_t at_s)
{
    yaowei__attribution__v1__exposure_event__init(&x->ev);
    x->ev.event_id = (char *)event_id;
    x->ev.viewer_id = (char *)viewer;
    x->ev.creator_id = (char *)creator;
    x->ev.note_id = "n1";
    x->products[0] = (char *)product;
    x->ev.product_ids = x->products;
    x->ev.n_product_ids = product != NULL ? 1 : 0;
    x->ev.kind = (Yaowei__Attribution__V1__ExposureKind)kind;
    at(&x->at, at_s);
    x->ev.occur_time = &x->at;
}

void afx_conversion(afx_conversion_t *x, const char *order, const char *viewer, const char *product,
                    int64_t amount, int64_t at_s)
{
    yaowei__attribution__v1__conversion_event__init(&x->ev);
    x->ev.order_id = (char *)order;
    x->ev.viewer_id = (char *)viewer;
    x->ev.product_id = (char *)product;
    x->ev.quantity = 1;
    x->ev.amount_minor = amount;
    at(&x->at, at_s);
    x->ev.occur_time = &x->at;
}

void afx_refund(afx_refund_t *x, const char *refund_id, const char *order, int64_t amount,
                int64_t at_s)
{
    yaowei__attribution__v1__refund_event__init(&x->ev);
    x->ev.refund_id = (char *)refund_id;
    x->ev.order_id = (char *)order;
    x->ev.amount_minor = amount;
    at(&x->at, at_s);
    x->ev.occur_time = &x->at;
}

/*
 * A Record call of `n` events (each the first member of its wrapper, `size` bytes
 * apart): the request's repeated `events` set through its descriptor, as the three
 * Record requests have the same shape.
 */
static yw_fake_call_t *record(const char *method, const ProtobufCMessageDescriptor *desc,
                              void *events, size_t size, size_t n)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(desc, "events");
    YW_CHECK(f != NULL && f->label == PROTOBUF_C_LABEL_REPEATED);
    ProtobufCMessage *req = calloc(1, desc->sizeof_message);
    void **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    YW_CHECK(req != NULL && ptrs != NULL);
    protobuf_c_message_init(desc, req);
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = (char *)events + i * size;
    }
    *(size_t *)((char *)req + f->quantifier_offset) = n;
    *(void ***)((char *)req + f->offset) = ptrs;
    yw_fake_call_t *fc = handler_fx_call(&afx_fx, method, req);
    free(ptrs);
    free(req);
    return fc;
}

yw_fake_call_t *afx_record_exposures(afx_exposure_t *xs, size_t n)
{
    return record("RecordExposures", &yaowei__attribution__v1__record_exposures_request__descriptor,
                  xs, sizeof *xs, n);
}

yw_fake_call_t *afx_record_conversions(afx_conversion_t *cs, size_t n)
{
    return record("RecordConversions",
                  &yaowei__attribution__v1__record_conversions_request__descriptor, cs, sizeof *cs,
                  n);
}

yw_fake_call_t *afx_record_refunds(afx_refund_t *rs, size_t n)
{
    return record("RecordRefunds", &yaowei__attribution__v1__record_refunds_request__descriptor, rs,
                  sizeof *rs, n);
}

void afx_accept_exposure(const char *event_id, const char *viewer, const char *creator,
                         const char *product, int kind, int64_t at_s)
{
    afx_exposure_t x;
    afx_exposure(&x, event_id, viewer, creator, product, kind, at_s);
    afx_check_summary(afx_record_exposures(&x, 1), 1, 0, 0, NULL, 0);
}

void afx_accept_conversion(const char *order, const char *viewer, const char *product,
                           int64_t amount, int64_t at_s)
{
    afx_conversion_t c;
    afx_conversion(&c, order, viewer, product, amount, at_s);
    afx_check_summary(afx_record_conversions(&c, 1), 1, 0, 0, NULL, 0);
}

void afx_check_summary(yw_fake_call_t *fc, int64_t accepted, int64_t duplicates, int64_t rejected,
                       const int64_t *errors, size_t n_errors)
{
    const afx_summary_t *s = handler_fx_reply(fc);
    if (s->accepted != accepted || s->duplicates != duplicates || s->rejected != rejected) {
        fprintf(stderr, "summary: accepted %lld, duplicates %lld, rejected %lld\n",
                (long long)s->accepted, (long long)s->duplicates, (long long)s->rejected);
        for (size_t i = 0; i < s->n_errors; i++) {
            fprintf(stderr, "  errors[%zu]: %lld %s\n", i, (long long)s->errors[i]->index,
                    s->errors[i]->reason);
        }
    }
    YW_CHECK_INT(s->accepted, ==, accepted);
    YW_CHECK_INT(s->duplicates, ==, duplicates);
    YW_CHECK_INT(s->rejected, ==, rejected);
    YW_CHECK_INT(s->n_errors, ==, n_errors);
    for (size_t i = 0; i < n_errors; i++) {
        YW_CHECK_INT(s->errors[i]->index, ==, errors[i]);
    }
    yw_fake_call_destroy(fc);
}

const char *afx_reason(const afx_summary_t *s, int64_t index)
{
    for (size_t i = 0; i < s->n_errors; i++) {
        if (s->errors[i]->index == index) {
            return s->errors[i]->reason;
        }
    }
    YW_CHECK(!"no error of that index");
    return NULL;
}

void afx_seed_three_clicks(const char *order, int64_t t)
{
    afx_exposure_t xs[7];
    afx_exposure(&xs[0], "x-a", "v", "A", "p", CLICK, t - 3 * DAY_S);
    afx_exposure(&xs[1], "x-b", "v", "B", "p", CLICK, t - 2 * DAY_S);
    afx_exposure(&xs[2], "x-c", "v", "C", "p", CLICK, t - DAY_S);
    afx_exposure(&xs[3], "x-d", "v", "D", "p", VIEW, t - 3600);
    xs[3].ev.watch_ms = 30000;
    afx_exposure(&xs[4], "x-e", "v", "E", "p", IMPRESSION, t - 600);
    afx_exposure(&xs[5], "x-f", "v", "F", "p", CLICK, t + 1);
    afx_exposure(&xs[6], "x-g", "v", "G", "another", CLICK, t - 60);
    afx_check_summary(afx_record_exposures(xs, 7), 7, 0, 0, NULL, 0);
    afx_accept_conversion(order, "v", "p", 1001, t);
}

yw_fake_call_t *afx_explain(const char *order, int model)
{
    Yaowei__Attribution__V1__ExplainConversionRequest req =
        YAOWEI__ATTRIBUTION__V1__EXPLAIN_CONVERSION_REQUEST__INIT;
    req.order_id = (char *)order;
    req.model = (Yaowei__Attribution__V1__AttributionModel)model;
    return handler_fx_call(&afx_fx, "ExplainConversion", &req.base);
}

void afx_check_minor(const char *order, int model, const int64_t *minor, size_t n)
{
    yw_fake_call_t *fc = afx_explain(order, model);
    const afx_explained_t *ex = handler_fx_reply(fc);
    if (ex->n_touches != n) {
        fprintf(stderr, "%s under model %d: %zu touches, expected %zu\n", order, model,
                ex->n_touches, n);
    }
    YW_CHECK_INT(ex->n_touches, ==, n);
    for (size_t i = 0; i < n; i++) {
        YW_CHECK_INT(ex->touches[i]->attributed_minor, ==, minor[i]);
    }
    yw_fake_call_destroy(fc);
}

void afx_range(Google__Protobuf__Timestamp *start, Google__Protobuf__Timestamp *end,
               int64_t start_s, int64_t end_s)
{
    at(start, start_s);
    at(end, end_s);
}

yw_fake_call_t *afx_creator_report(const char *creator, int model)
{
    Google__Protobuf__Timestamp start, end;
    afx_range(&start, &end, afx_today_s() - 20 * DAY_S, afx_today_s() + DAY_S);
    Yaowei__Attribution__V1__GetCreatorReportRequest req =
        YAOWEI__ATTRIBUTION__V1__GET_CREATOR_REPORT_REQUEST__INIT;
    req.creator_id = (char *)creator;
    req.start_time = &start;
    req.end_time = &end;
    req.model = (Yaowei__Attribution__V1__AttributionModel)model;
    return handler_fx_call(&afx_fx, "GetCreatorReport", &req.base);
}
