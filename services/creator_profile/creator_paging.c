/*
 * creator_paging.c — ListCreators page sizes and tokens. See creator_paging.h.
 *
 * Token layout before base64url: version (1 byte, 1), filter hash (8 bytes, big
 * endian), FNV-1a 32 of the bytes so far plus the id (4 bytes, big endian: garbage that
 * happens to decode is caught), then the last creator_id (1..128 bytes).
 */
#include "services/creator_profile/creator_paging.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_VERSION 1
#define TOKEN_HEAD 13

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int32_t creator_page_size(int32_t requested)
{
    if (requested <= 0) {
        return CREATOR_PAGE_SIZE_DEFAULT;
    }
    return requested > CREATOR_PAGE_SIZE_MAX ? CREATOR_PAGE_SIZE_MAX : requested;
}

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint32_t fnv32(const uint8_t *b, size_t n)
{
    uint32_t h = UINT32_C(0x811c9dc5);
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= UINT32_C(0x01000193);
    }
    return h;
}

/* Each field length-prefixed, so that ("ab", "") and ("a", "b") differ. */
static uint64_t fnv64_field(uint64_t h, const void *p, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++) {
        len[i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    return fnv64(fnv64(h, len, sizeof len), p, n);
}

uint64_t creator_page_filter_hash(const char *category, const char *region, int64_t min_followers,
                                  int64_t max_followers)
{
    uint8_t nums[16];
    for (int i = 0; i < 8; i++) {
        nums[i] = (uint8_t)((uint64_t)min_followers >> (56 - 8 * i));
        nums[8 + i] = (uint8_t)((uint64_t)max_followers >> (56 - 8 * i));
    }
    category = category ? category : "";
    region = region ? region : "";
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    h = fnv64_field(h, "yaowei.creator.v1.ListCreators", 30);
    h = fnv64_field(h, category, strlen(category));
    h = fnv64_field(h, region, strlen(region));
    return fnv64_field(h, nums, sizeof nums);
}

int creator_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (outlen < need + 1) {
        return -ENOSPC;
    }
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (int)o;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

int creator_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
    if (n % 4 == 1) {
        return -EINVAL;
    }
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (outlen < need) {
        return -ENOSPC;
    }
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) {
            return -EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Canonical encodings only: the bits left over must be zero. */
    if (acc != 0) {
        return -EINVAL;
    }
    return (int)o;
}

int creator_page_token_encode(const char *last_id, uint64_t filter_hash,
                              char out[CREATOR_PAGE_TOKEN_BUFSZ])
{
    uint8_t raw[TOKEN_HEAD + CREATOR_ID_MAX];
    if (!creator_id_valid(last_id)) {
        return -EINVAL;
    }
    size_t idlen = strlen(last_id);
    raw[0] = TOKEN_VERSION;
    for (int i = 0; i < 8; i++) {
        raw[1 + i] = (uint8_t)(filter_hash >> (56 - 8 * i));
    }
    memcpy(raw + TOKEN_HEAD, last_id, idlen);
    /* The check covers everything but itself. */
    uint8_t tmp[9 + CREATOR_ID_MAX];
    memcpy(tmp, raw, 9);
    memcpy(tmp + 9, last_id, idlen);
    uint32_t check = fnv32(tmp, 9 + idlen);
    for (int i = 0; i < 4; i++) {
        raw[9 + i] = (uint8_t)(check >> (24 - 8 * i));
    }
    int n = creator_b64url_encode(raw, TOKEN_HEAD + idlen, out, CREATOR_PAGE_TOKEN_BUFSZ);
    return n < 0 ? n : 0;
}

grpc_status_code creator_page_token_decode(const char *token, uint64_t filter_hash,
                                           char after[CREATOR_ID_MAX + 1], char *err, size_t errlen)
{
    uint8_t raw[TOKEN_HEAD + CREATOR_ID_MAX];
    after[0] = '\0';
    if (token == NULL || token[0] == '\0') {
        return GRPC_STATUS_OK;
    }
    size_t len = strlen(token);
    int n = len > CREATOR_PAGE_TOKEN_BUFSZ ? -EINVAL
                                           : creator_b64url_decode(token, len, raw, sizeof raw);
    if (n < TOKEN_HEAD + 1 || raw[0] != TOKEN_VERSION) {
        snprintf(err, errlen,
                 "page_token: not a token this service issued; pass the next_page_token of "
                 "the previous ListCreators response, or empty for the first page");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    size_t idlen = (size_t)n - TOKEN_HEAD;
    uint8_t tmp[9 + CREATOR_ID_MAX];
    memcpy(tmp, raw, 9);
    memcpy(tmp + 9, raw + TOKEN_HEAD, idlen);
    uint32_t check = 0;
    for (int i = 0; i < 4; i++) {
        check = check << 8 | raw[9 + i];
    }
    memcpy(after, raw + TOKEN_HEAD, idlen);
    after[idlen] = '\0';
    if (check != fnv32(tmp, 9 + idlen) || strlen(after) != idlen || !creator_id_valid(after)) {
        after[0] = '\0';
        snprintf(err, errlen,
                 "page_token: not a token this service issued; pass the next_page_token of "
                 "the previous ListCreators response, or empty for the first page");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) {
        h = h << 8 | raw[1 + i];
    }
    if (h != filter_hash) {
        after[0] = '\0';
        snprintf(err, errlen,
                 "page_token: was issued for other filters; category, region, min_followers "
                 "and max_followers must stay the same across pages");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    return GRPC_STATUS_OK;
}
