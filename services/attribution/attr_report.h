/*
 * attr_report.h — GetCreatorReport, GetTierReport and ListTopCreators rendered from
 * sums (attr_sums.h), whoever gathered them: standalone reads them from its own state;
 * a node of a cluster adds up the partitions' (attr_sums_merge_t) and renders with the
 * same code, so that both answer alike for the same events. Private to the service's
 * files and their unit tests.
 *
 * A report's creators are named in a "front" state (attr_state_creator()), where their
 * tier labels are cached and refreshed (attr_tier.h, which keys its marks by the ids of
 * one state per attr_tier_t). Standalone, the front is the state the sums came from
 * (every creator in it is there already). A cluster's node keeps a state of its own as
 * the front, holding only creators' names and labels, with an attr_tier_t of its own.
 *
 * The way of a tier report or top-creators page: attr__tier_report_new() or
 * attr__top_creators_new() checks the request; the sums are gathered (the report's
 * range and model: attr__report_range()); attr__report_from_sums() names the creators
 * in the front, refreshes their labels, renders, answers and frees the report.
 */
#ifndef ATTR_REPORT_H
#define ATTR_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/page_token.h"
#include "common/server.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_sums.h"
#include "services/attribution/attr_tier.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

/** One creator of a report: its sums and where its tier label is cached. */
typedef struct st_attr_report_entry_t {
    uint32_t creator; /* its id in the report's front state */
    const char *name; /* interned there */
    attr_sums_t s;
    double gpm; /* from the exact sums (ListTopCreators ranks by it) */
} attr_report_entry_t;

/** A tier report or top-creators page being made. */
typedef struct st_attr_report_t {
    yw_call_t *call;
    int32_t d0, d1; /* days [d0, d1) */
    int model;      /* resolved: 1..ATTR_N_MODELS */
    /* what it is rendered from (attr__report_set_sums()) */
    attr_state_t *front;
    attr_tier_t *tier;
    attr_report_entry_t *entries; /* the creators with sums in range, each once */
    size_t n;
    attr_sum_t unattr_count, unattr_gmv;
    char currency[4];
    /* ListTopCreators */
    unsigned tiers_mask; /* 0: every tier */
    int order_by;
    size_t offset, page_size;
    yw_page_query_t query;         /* what its page tokens are bound to */
    const yw_page_key_t *page_key; /* signs the next page's token */
    void (*finish)(struct st_attr_report_t *r, const char *tier_error);
} attr_report_t;

/**
 * Checks GetCreatorReport's request: creator_id, the range into days [*d0, *d1), the
 * model resolved under `settings` (UNSPECIFIED: its default). Returns 0, or -EINVAL with
 * the call failed INVALID_ARGUMENT.
 */
int attr__creator_report_args(yw_call_t *call,
                              const Yaowei__Attribution__V1__GetCreatorReportRequest *req,
                              const attr_settings_t *settings, int32_t *d0, int32_t *d1,
                              int *model);

/** Answers GetCreatorReport `req` with the creator's sums `s` under `model`. */
void attr__creator_report_reply(yw_call_t *call,
                                const Yaowei__Attribution__V1__GetCreatorReportRequest *req,
                                int model, const attr_sums_t *s, const char *currency);

/**
 * GetTierReport's request checked (the model resolved under `settings`), as a report to
 * render. NULL: the call was failed (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED).
 */
attr_report_t *attr__tier_report_new(yw_call_t *call,
                                     const Yaowei__Attribution__V1__GetTierReportRequest *req,
                                     const attr_settings_t *settings);

/**
 * ListTopCreators' request checked (the model resolved under `settings`) and its page
 * token read: signed with `key`, bound to the query, an offset of at most `n_max` (the
 * creators the front knows: a list never holds more). NULL: the call was failed.
 */
attr_report_t *attr__top_creators_new(yw_call_t *call,
                                      const Yaowei__Attribution__V1__ListTopCreatorsRequest *req,
                                      const attr_settings_t *settings, const yw_page_key_t *key,
                                      uint64_t n_max);

/** The report's days [*d0, *d1) and resolved model: what its sums must cover. */
void attr__report_range(const attr_report_t *r, int32_t *d0, int32_t *d1, int *model);

/**
 * Sets what `r` is rendered from: `sums` (over the report's range and model), each
 * creator named in `front` (creators whose figures are all 0 left out), the currency.
 * `sums` need not outlive the call. Returns 0 or -ENOMEM. Pure: no call, no labels.
 */
int attr__report_set_sums(attr_report_t *r, attr_state_t *front, const attr_range_sums_t *sums,
                          const char *currency);

/**
 * Renders `r` from `sums` and answers its call: attr__report_set_sums(), then the
 * creators' labels refreshed in `front` by `tier` (the attr_tier_t of that state; both
 * must outlive the refresh), then the reply. Frees `r`, whatever happens (out of
 * memory: the call fails RESOURCE_EXHAUSTED).
 */
void attr__report_from_sums(attr_report_t *r, attr_state_t *front, attr_tier_t *tier,
                            const attr_range_sums_t *sums, const char *currency);

/** Frees a report (its call, if it has one, is the caller's to finish). NULL: nothing. */
void attr__report_free(attr_report_t *r);

/** A TierReport and the parts it points to: at most one row per tier. */
enum { ATTR_REPORT_TIERS = YAOWEI__TIER__V1__TIER__TIER_AMATEUR + 1 };
typedef struct st_attr_tier_report_buf_t {
    Yaowei__Attribution__V1__TierReport rep;
    Yaowei__Attribution__V1__TierRow rows[ATTR_REPORT_TIERS];
    Yaowei__Attribution__V1__TierRow *ptrs[ATTR_REPORT_TIERS];
    Google__Protobuf__Timestamp start, end;
} attr_tier_report_buf_t;

/**
 * GetTierReport's answer of `r` (after attr__report_set_sums()) into `out`, with the
 * labels r->front caches now and `tier_error` (NULL: none). Pure: refreshes nothing;
 * `out` points into `r` and itself.
 */
void attr__tier_report_fill(const attr_report_t *r, const char *tier_error,
                            attr_tier_report_buf_t *out);

#endif
