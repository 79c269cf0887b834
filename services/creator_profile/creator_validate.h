/*
 * creator_validate.h — the rules every CreatorProfileService request must follow,
 * checked on the loop before any work starts. Pure functions: no clock (callers pass
 * today's day number), no I/O, no allocation.
 *
 * Each check returns GRPC_STATUS_OK, or GRPC_STATUS_INVALID_ARGUMENT with a message in
 * `err` that starts with the field's path, index included, and states the rule, e.g.
 * `stats[3].completion_rate: must be within [0, 1], got 1.5`. Echoed values are
 * quoted, escaped and truncated (yw_quote() of common/utf8.h).
 */
#ifndef CREATOR_VALIDATE_H
#define CREATOR_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "yaowei/creator/v1/creator.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CREATOR_ID_MAX 128
#define CREATOR_REQUEST_ID_MAX 128
#define CREATOR_DISPLAY_NAME_MAX 256
#define CREATOR_REGION_MAX 64
#define CREATOR_CATEGORIES_MAX 20
#define CREATOR_CATEGORY_MAX 64
#define CREATOR_NOTE_ID_MAX 128
/** ListCreators' page sizes (AIP-158: 0 means the default, more is clamped). */
#define CREATOR_PAGE_SIZE_DEFAULT 50
#define CREATOR_PAGE_SIZE_MAX 1000
/** Most ids in BatchGetCreators and BatchGetCreatorStats. */
#define CREATOR_BATCH_MAX 1000
/** Most rows in one RecordNoteStats. */
#define CREATOR_STATS_ROWS_MAX 10000
/**
 * Largest count one note can report for one day (impressions, views, ...). Far above
 * anything real, and low enough that a note's sums over the longest window cannot
 * overflow int64.
 */
#define CREATOR_COUNT_MAX INT64_C(1000000000000000)
#define CREATOR_WINDOW_MAX 366
#define CREATOR_WINDOW_DEFAULT 30

/** Bits of the fields an UpdateCreator changes. */
enum {
    CREATOR_FIELD_DISPLAY_NAME = 1u << 0,
    CREATOR_FIELD_REGION = 1u << 1,
    CREATOR_FIELD_CATEGORIES = 1u << 2,
    CREATOR_FIELD_FOLLOWERS = 1u << 3,
    CREATOR_FIELD_STATUS = 1u << 4,
    CREATOR_FIELD_ALL = (1u << 5) - 1,
};

/** Non-zero when `id` is 1-128 characters of [A-Za-z0-9_.-]. */
int creator_id_valid(const char *id);

/** A creator id at `field` (e.g. "creator_id", "creator_ids[4]"): required and well-formed. */
grpc_status_code creator_validate_id(const char *field, const char *id, char *err, size_t errlen);

/**
 * CreateCreator: request_id (optional, <= 128 bytes of UTF-8) and every field of
 * `creator` (required): id, display_name <= 256 bytes, region <= 64, <= 20 categories
 * of 1-64 bytes without control characters, followers >= 0, a known status, and a
 * create_time, when given, within years 0001-9999.
 */
grpc_status_code creator_validate_create(const Yaowei__Creator__V1__CreateCreatorRequest *req,
                                         char *err, size_t errlen);

/**
 * UpdateCreator: creator (required) and its creator_id, the update_mask paths
 * (display_name, region, categories, followers, status; "*" or none means all of them),
 * and the fields the mask names, by the rules of creator_validate_create(). On success
 * `*mask` gets the CREATOR_FIELD_* bits to change.
 */
grpc_status_code creator_validate_update(const Yaowei__Creator__V1__UpdateCreatorRequest *req,
                                         unsigned *mask, char *err, size_t errlen);

/** BatchGetCreators / BatchGetCreatorStats ids at `field`: at most 1000, each well-formed. */
grpc_status_code creator_validate_ids(const char *field, char *const *ids, size_t n, char *err,
                                      size_t errlen);

/**
 * ListCreators, all but page_token (common/page_token.h): page_size >= 0, category and
 * region <= 64 bytes, min_followers and max_followers >= 0, max >= min unless max is 0.
 */
grpc_status_code creator_validate_list(const Yaowei__Creator__V1__ListCreatorsRequest *req,
                                       char *err, size_t errlen);

/**
 * RecordNoteStats: at most 10000 rows; in each, note_id 1-128 bytes of UTF-8 without
 * control characters, a well-formed creator_id, day a calendar date not after `today`,
 * every count within [0, CREATOR_COUNT_MAX], completion_rate within [0, 1]. Whether the
 * creators exist is the store's business (creator_store.h).
 */
grpc_status_code
creator_validate_record_stats(const Yaowei__Creator__V1__RecordNoteStatsRequest *req, int64_t today,
                              char *err, size_t errlen);

/**
 * creator_validate_record_stats(), and in the same pass a row whose creator `known`
 * (called on the loop, non-zero when the creator exists) does not know is rejected too,
 * as `stats[i].creator_id: creator "x" does not exist`: the first bad row is the one
 * named, whatever is wrong with it. The store checks existence again when it writes.
 */
grpc_status_code
creator_validate_record_stats_known(const Yaowei__Creator__V1__RecordNoteStatsRequest *req,
                                    int64_t today, int (*known)(const char *creator_id, void *ctx),
                                    void *ctx, char *err, size_t errlen);

/**
 * creator_validate_record_stats_known(), and `*bad_row` gets the index of the row the
 * error names (req->n_stats when it passes or the error names no row).
 */
grpc_status_code
creator_validate_record_stats_row(const Yaowei__Creator__V1__RecordNoteStatsRequest *req,
                                  int64_t today, int (*known)(const char *creator_id, void *ctx),
                                  void *ctx, size_t *bad_row, char *err, size_t errlen);

/**
 * The window of GetCreatorStats / BatchGetCreatorStats: window_days within 0..366 (0
 * means 30) and end_day empty (today) or a calendar date. On success `*window` and
 * `*end_day` get the resolved values (end_day as a day number).
 */
grpc_status_code creator_validate_window(int32_t window_days, const char *end_day, int64_t today,
                                         int32_t *window, int64_t *end, char *err, size_t errlen);

/**
 * The NOT_FOUND message for the ids at indexes `missing` of `ids`, the field `field`
 * (e.g. "creator_ids"): `creator_ids[2]: creator "x" not found` for one; for several,
 * `creator_ids: 3 creators not found: creator_ids[1] "a", ...`, naming up to 20 and then
 * how many more (the message travels in a trailer, which must stay small). Writes
 * into `buf` and returns it.
 */
const char *creator_missing_message(const char *field, char *const *ids, const size_t *missing,
                                    size_t n_missing, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
