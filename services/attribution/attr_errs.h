/*
 * attr_errs.h — the `errors` of an IngestSummary: the rejected events with the lowest
 * indexes, at most ATTR_ERRORS_MAX of them, in ascending index order.
 *
 * Events are rejected at different stages (validation as they arrive; a refund's order
 * lookup after a disk read), so rejections come in any index order. attr_errs_add()
 * keeps the list sorted and, once it is full, replaces the highest index held by a lower
 * one: whatever the order of the calls, the list ends as the ATTR_ERRORS_MAX lowest
 * rejected indexes, ascending — "the first 100 rejected events, in order". Every ingest
 * path reports its rejections through it (attr_service.c, attr__reject()).
 *
 * A zeroed attr_errs_t is empty; it holds no pointer to anything outside itself, and the
 * messages it lends (attr_errs_list()) are valid until the next attr_errs_add().
 */
#ifndef ATTR_ERRS_H
#define ATTR_ERRS_H

#include <stddef.h>
#include <stdint.h>

#include "yaowei/attribution/v1/attribution.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Rejected events listed in an IngestSummary at most. */
#define ATTR_ERRORS_MAX 100
/** Longest reason kept (with its NUL); longer ones are cut. */
#define ATTR_REASON_MAX 200

typedef struct st_attr_errs_t {
    /** In index order: by[0..n) point into slot[]. */
    Yaowei__Attribution__V1__IngestError *by[ATTR_ERRORS_MAX];
    size_t n;
    Yaowei__Attribution__V1__IngestError slot[ATTR_ERRORS_MAX];
    char reason[ATTR_ERRORS_MAX][ATTR_REASON_MAX];
} attr_errs_t;

/**
 * Notes the rejection of event `index` for `reason` (copied). Kept when fewer than
 * ATTR_ERRORS_MAX are held or when it is lower than the highest held (which then goes).
 * An index is expected once; a second one is listed twice.
 */
void attr_errs_add(attr_errs_t *e, int64_t index, const char *reason);

/** The errors held, ascending by index: `*n` of them (IngestSummary.errors). */
Yaowei__Attribution__V1__IngestError **attr_errs_list(attr_errs_t *e, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
