/* page_token.c — AIP-158 page sizes and signed page tokens. See page_token.h. */
#include "common/page_token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define YW__TOKEN_VERSION 2
#define YW__TAG_BYTES 8
#define YW__MAC_BYTES 16
/* version, tag, number */
#define YW__HEAD_BYTES (1 + YW__TAG_BYTES + 8)
#define YW__RAW_MAX (YW__HEAD_BYTES + YW_PAGE_KEY_MAX + YW__MAC_BYTES)

int32_t yw_page_size(int32_t requested, int32_t def, int32_t max)
{
    if (requested <= 0) {
        return def;
    }
    return requested > max ? max : requested;
}

/* ---- the key ---- */

int yw_page_key_random(yw_page_key_t *key)
{
    return RAND_bytes(key->bytes, (int)sizeof key->bytes) == 1 ? 0 : -EIO;
}

/* Reads the key file; -ENOENT when there is none. */
static int yw__key_read(const char *path, yw_page_key_t *key, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT) {
            snprintf(err, errlen, "%s: cannot open the page token key: %s", path, strerror(e));
        }
        return -e;
    }
    uint8_t buf[YW_PAGE_KEY_BYTES + 1];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "%s: cannot read the page token key: %s", path, strerror(e));
            return -e;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (got != YW_PAGE_KEY_BYTES) {
        snprintf(err, errlen,
                 "%s: not a page token key (%d bytes expected); delete it to make a new one "
                 "(page tokens issued before are then refused)",
                 path, YW_PAGE_KEY_BYTES);
        return -EINVAL;
    }
    memcpy(key->bytes, buf, YW_PAGE_KEY_BYTES);
    return 0;
}

/* Writes a new random key aside and links it into place; -EEXIST when one got there first. */
static int yw__key_create(const char *path, char *err, size_t errlen)
{
    yw_page_key_t k;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    if (yw_page_key_random(&k) != 0) {
        snprintf(err, errlen, "%s: no random bytes for a page token key", path);
        return -EIO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(e));
        return -e;
    }
    ssize_t w;
    do {
        w = write(fd, k.bytes, sizeof k.bytes);
    } while (w < 0 && errno == EINTR);
    int e = w == (ssize_t)sizeof k.bytes ? 0 : (w < 0 ? errno : EIO);
    if (e == 0 && fsync(fd) != 0) {
        e = errno;
    }
    close(fd);
    if (e == 0 && link(tmp, path) != 0) {
        e = errno;
    }
    (void)unlink(tmp);
    OPENSSL_cleanse(&k, sizeof k);
    if (e != 0 && e != EEXIST) {
        snprintf(err, errlen, "%s: cannot write the page token key: %s", path, strerror(e));
    }
    return -e;
}

int yw_page_key_load(const char *path, yw_page_key_t *key, char *err, size_t errlen)
{
    int rc = yw__key_read(path, key, err, errlen);
    if (rc != -ENOENT) {
        return rc;
    }
    rc = yw__key_create(path, err, errlen);
    if (rc != 0 && rc != -EEXIST) {
        return rc;
    }
    /* Ours, or the one another process linked first: either way, the one on disk. */
    return yw__key_read(path, key, err, errlen);
}

/* ---- the query ---- */

void yw_page_query_init(yw_page_query_t *q, const char *method, const char *filters)
{
    q->method = method;
    q->filters = filters;
    q->yw_len = 0;
    q->yw_overflow = 0;
    yw_page_query_add_str(q, method);
}

static void yw__query_add(yw_page_query_t *q, const void *p, size_t n)
{
    if (q->yw_overflow || n > UINT32_MAX || q->yw_len + 4 + n > sizeof q->yw_buf) {
        q->yw_overflow = 1;
        return;
    }
    for (int i = 0; i < 4; i++) {
        q->yw_buf[q->yw_len++] = (uint8_t)((uint32_t)n >> (24 - 8 * i));
    }
    memcpy(q->yw_buf + q->yw_len, p, n);
    q->yw_len += n;
}

void yw_page_query_add_str(yw_page_query_t *q, const char *s)
{
    s = s != NULL ? s : "";
    yw__query_add(q, s, strlen(s));
}

void yw_page_query_add_int(yw_page_query_t *q, int64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    }
    yw__query_add(q, b, sizeof b);
}

static void yw__query_tag(const yw_page_query_t *q, uint8_t tag[YW__TAG_BYTES])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(q->yw_buf, q->yw_len, md);
    memcpy(tag, md, YW__TAG_BYTES);
}

/* ---- tokens ---- */

static int yw__mac(const yw_page_key_t *key, const uint8_t *p, size_t n, uint8_t mac[YW__MAC_BYTES])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key->bytes, (int)sizeof key->bytes, p, n, md, &len) == NULL ||
        len < YW__MAC_BYTES) {
        return -EIO;
    }
    memcpy(mac, md, YW__MAC_BYTES);
    return 0;
}

/* base64url without padding, through OpenSSL's base64 encoder. `out` has room. */
static void yw__b64url_encode(const uint8_t *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=') {
        len--;
    }
    out[len] = '\0';
    for (char *c = out; *c != '\0'; c++) {
        if (*c == '+') {
            *c = '-';
        } else if (*c == '/') {
            *c = '_';
        }
    }
}

/*
 * The bytes of a base64url token (no padding), at most `cap`; -1 when it is not one.
 * Only the canonical form is accepted (encoding the result again gives `in`), so that
 * one token has one spelling.
 */
static int yw__b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    char b64[YW_PAGE_TOKEN_BUFSZ + 4] = "";
    uint8_t raw[sizeof b64 / 4 * 3];
    if (n % 4 == 1 || n + 3 >= sizeof b64) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '-') {
            c = '+';
        } else if (c == '_') {
            c = '/';
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return -1;
        }
        b64[i] = c;
    }
    size_t padded = n;
    while (padded % 4 != 0) {
        b64[padded++] = '=';
    }
    int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)padded);
    if (len < 0) {
        return -1;
    }
    len -= (int)(padded - n); /* EVP_DecodeBlock counts the padding as zero bytes */
    if (len < 0 || (size_t)len > cap) {
        return -1;
    }
    char again[sizeof b64];
    yw__b64url_encode(raw, (size_t)len, again);
    if (strlen(again) != n || memcmp(again, in, n) != 0) {
        return -1;
    }
    memcpy(out, raw, (size_t)len);
    return len;
}

int yw_page_token_encode(const yw_page_key_t *key, const yw_page_query_t *q, uint64_t n,
                         const char *cursor_key, char out[YW_PAGE_TOKEN_BUFSZ])
{
    size_t klen = cursor_key != NULL ? strlen(cursor_key) : 0;
    out[0] = '\0';
    if (klen > YW_PAGE_KEY_MAX || q->yw_overflow) {
        return -EINVAL;
    }
    uint8_t raw[YW__RAW_MAX];
    raw[0] = YW__TOKEN_VERSION;
    yw__query_tag(q, raw + 1);
    for (int i = 0; i < 8; i++) {
        raw[1 + YW__TAG_BYTES + i] = (uint8_t)(n >> (56 - 8 * i));
    }
    if (klen > 0) {
        memcpy(raw + YW__HEAD_BYTES, cursor_key, klen);
    }
    size_t len = YW__HEAD_BYTES + klen;
    if (yw__mac(key, raw, len, raw + len) != 0) {
        return -EIO;
    }
    yw__b64url_encode(raw, len + YW__MAC_BYTES, out);
    return 0;
}

int yw_page_token_decode(const yw_page_key_t *key, const yw_page_query_t *q, const char *token,
                         uint64_t n_max, yw_page_cursor_t *cur, char *err, size_t errlen)
{
    cur->n = 0;
    cur->key[0] = '\0';
    if (token == NULL || token[0] == '\0') {
        return 0;
    }
    uint8_t raw[YW__RAW_MAX], mac[YW__MAC_BYTES];
    int len = yw__b64url_decode(token, strlen(token), raw, sizeof raw);
    if (len < YW__HEAD_BYTES + YW__MAC_BYTES || raw[0] != YW__TOKEN_VERSION ||
        yw__mac(key, raw, (size_t)len - YW__MAC_BYTES, mac) != 0 ||
        CRYPTO_memcmp(mac, raw + len - YW__MAC_BYTES, YW__MAC_BYTES) != 0) {
        snprintf(err, errlen,
                 "page_token: not a next_page_token this service issued (malformed, edited, or "
                 "signed with another page_token.key); pass the next_page_token of the "
                 "previous %s response unchanged, or empty for the first page",
                 q->method);
        return -EINVAL;
    }
    uint8_t tag[YW__TAG_BYTES];
    yw__query_tag(q, tag);
    if (q->yw_overflow || memcmp(tag, raw + 1, YW__TAG_BYTES) != 0) {
        snprintf(err, errlen,
                 "page_token: issued for another query; %s must stay the same across pages",
                 q->filters);
        return -EINVAL;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) {
        n = n << 8 | raw[1 + YW__TAG_BYTES + i];
    }
    size_t klen = (size_t)len - YW__MAC_BYTES - YW__HEAD_BYTES;
    if (n > n_max || memchr(raw + YW__HEAD_BYTES, '\0', klen) != NULL) {
        snprintf(err, errlen, "page_token: its position is out of range for %s", q->method);
        return -EINVAL;
    }
    cur->n = n;
    memcpy(cur->key, raw + YW__HEAD_BYTES, klen);
    cur->key[klen] = '\0';
    return 0;
}
