/* tier_request.c — request rules. See tier_request.h. */
#include "services/tier_scoring/tier_request.h"

#include <stdio.h>
#include <string.h>

static int id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Non-zero when `id` is 1-128 characters of [A-Za-z0-9_.-]. */
static int id_valid(const char *id)
{
    size_t i = 0;
    for (; id[i] != '\0'; i++) {
        if (i >= TIER_ID_MAX || !id_char((unsigned char)id[i])) {
            return 0;
        }
    }
    return i > 0;
}

grpc_status_code tier_validate_id(const char *field, const char *id, char *err, size_t errlen)
{
    if (id == NULL || id[0] == '\0') {
        snprintf(err, errlen, "%s: required", field);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (!id_valid(id)) {
        snprintf(err, errlen, "%s: must be 1-%d characters of [A-Za-z0-9_.-]", field, TIER_ID_MAX);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_validate_ids(const char *field, char *const *ids, size_t n, char *err,
                                   size_t errlen)
{
    if (n > TIER_BATCH_MAX) {
        snprintf(err, errlen, "%s: at most %d ids, got %zu", field, TIER_BATCH_MAX, n);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s[%zu]", field, i);
        grpc_status_code code = tier_validate_id(name, ids[i], err, errlen);
        if (code != GRPC_STATUS_OK) {
            return code;
        }
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_validate_category(const char *field, const char *category, char *err,
                                        size_t errlen)
{
    size_t len = category != NULL ? strlen(category) : 0;
    if (len > TIER_CATEGORY_MAX) {
        snprintf(err, errlen, "%s: at most %d bytes, got %zu", field, TIER_CATEGORY_MAX, len);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_validate_tier(const char *field, int tier, char *err, size_t errlen)
{
    if (tier < TIER_LEVEL_HEAD || tier > TIER_LEVEL_AMATEUR) {
        snprintf(err, errlen,
                 "%s: must be TIER_HEAD, TIER_MID, TIER_TAIL or TIER_AMATEUR, got %s (%d)", field,
                 tier_name((tier_level_t)tier), tier);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}

grpc_status_code tier_validate_page_size(int32_t page_size, char *err, size_t errlen)
{
    if (page_size < 0) {
        snprintf(err, errlen, "page_size: must not be negative, got %d", (int)page_size);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}
