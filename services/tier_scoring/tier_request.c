/* tier_request.c — request rules and page tokens. See tier_request.h. */
#include "services/tier_scoring/tier_request.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_VERSION 1
#define TOKEN_HEAD (1 + 8 + 8) /* version, filter, score bits */

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

int32_t tier_page_size(int32_t requested)
{
    if (requested <= 0) {
        return TIER_PAGE_SIZE_DEFAULT;
    }
    return requested > TIER_PAGE_SIZE_MAX ? TIER_PAGE_SIZE_MAX : requested;
}

uint64_t tier_page_filter(tier_level_t tier, const char *category)
{
    /* FNV-1a over the tier byte, a separator and the category. */
    uint64_t h = 1469598103934665603ULL;
    h = (h ^ (uint8_t)tier) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (const unsigned char *c = (const unsigned char *)(category ? category : ""); *c; c++) {
        h = (h ^ *c) * 1099511628211ULL;
    }
    return h;
}

static void put_u64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

int tier_page_token_encode(uint64_t filter, double score, const char *creator_id,
                           char out[TIER_PAGE_TOKEN_BUFSZ])
{
    size_t id_len = strlen(creator_id);
    if (id_len == 0 || id_len > TIER_ID_MAX) {
        return -EINVAL;
    }
    uint8_t raw[TOKEN_HEAD + TIER_ID_MAX];
    uint64_t bits;
    memcpy(&bits, &score, sizeof bits);
    raw[0] = TOKEN_VERSION;
    put_u64(raw + 1, filter);
    put_u64(raw + 9, bits);
    memcpy(raw + TOKEN_HEAD, creator_id, id_len);
    static const char hex[] = "0123456789abcdef";
    size_t n = TOKEN_HEAD + id_len;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

grpc_status_code tier_page_token_decode(const char *token, uint64_t filter, double *score,
                                        char after[TIER_ID_MAX + 1], char *err, size_t errlen)
{
    size_t len = strlen(token);
    uint8_t raw[TOKEN_HEAD + TIER_ID_MAX];
    if (len % 2 != 0 || len / 2 <= TOKEN_HEAD || len / 2 > sizeof raw) {
        snprintf(err, errlen, "page_token: not a token this method issued");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    size_t n = len / 2;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(token[2 * i]), lo = hex_val(token[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "page_token: not a token this method issued");
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    if (raw[0] != TOKEN_VERSION) {
        snprintf(err, errlen, "page_token: not a token this method issued");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (get_u64(raw + 1) != filter) {
        snprintf(err, errlen,
                 "page_token: issued for another tier or category; send the same tier and "
                 "category as the first page");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    uint64_t bits = get_u64(raw + 9);
    memcpy(score, &bits, sizeof *score);
    memcpy(after, raw + TOKEN_HEAD, n - TOKEN_HEAD);
    after[n - TOKEN_HEAD] = '\0';
    if (!isfinite(*score) || !id_valid(after)) {
        snprintf(err, errlen, "page_token: not a token this method issued");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}
