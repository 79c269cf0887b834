/*
 * page_token.h — AIP-158 paging, one mechanism for every listing of every service: page
 * sizes, and opaque page tokens that are tamper-evident, bound to the query they
 * continue, and bounds-checked.
 *
 * A token carries a cursor — a number (an offset, or the bits of a sort key) and a key
 * (the id of the last item of its page, possibly empty) — and is bound to its query: the
 * method and the filters that must stay the same across pages (yw_page_query_t;
 * page_size is not part of it, a caller may change it between pages). Layout, before
 * base64url without padding (RFC 4648 §5; OpenSSL's encoder):
 *
 *   version (1 byte, 2) | query tag (8 bytes: SHA-256 of the query, truncated)
 *   | number (8 bytes, big endian) | key (0..YW_PAGE_KEY_MAX bytes)
 *   | MAC (16 bytes: HMAC-SHA256 of everything before it under the page key, truncated)
 *
 * Tamper-evident: a token whose bytes were edited (a cursor moved, an offset made huge),
 * made by anyone without the page key, or issued under another page key is refused; a
 * token of another query is refused too (its tag differs), and said so. The page key
 * (yw_page_key_t) is 32 random bytes kept in --data-dir/page_token.key, created at the
 * first start (mode 0600): tokens survive restarts and are understood by every process
 * serving that data dir. Tokens do not expire; deleting or replacing the key file
 * refuses every token issued before it. Every refusal is a message that starts with
 * "page_token: " (services answer INVALID_ARGUMENT).
 */
#ifndef YW_PAGE_TOKEN_H
#define YW_PAGE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of a page key. */
#define YW_PAGE_KEY_BYTES 32
/** Longest cursor key a token carries (the longest id of any service). */
#define YW_PAGE_KEY_MAX 128
/** Most bytes of filters a query binds (each string or number plus 4 bytes). */
#define YW_PAGE_QUERY_MAX 512
/** Room for any token yw_page_token_encode() writes, NUL included. */
#define YW_PAGE_TOKEN_BUFSZ ((1 + 8 + 8 + YW_PAGE_KEY_MAX + 16 + 2) / 3 * 4 + 1)

/** The secret tokens are signed with. */
typedef struct st_yw_page_key_t {
    uint8_t bytes[YW_PAGE_KEY_BYTES];
} yw_page_key_t;

/**
 * A listing's query as its tokens are bound to it: the method and every filter that
 * must stay the same across pages, in a fixed order. Build it with
 * yw_page_query_init() and the yw_page_query_add_*() calls; plain data, no cleanup.
 */
typedef struct st_yw_page_query_t {
    /** The method's name, for messages, e.g. "ListCreators". */
    const char *method;
    /** The filters named for a caller, e.g. "category, region and min_followers". */
    const char *filters;
    /* private */
    uint8_t yw_buf[YW_PAGE_QUERY_MAX];
    size_t yw_len;
    int yw_overflow;
} yw_page_query_t;

/** Where a page starts: after the item with this key (and number). */
typedef struct st_yw_page_cursor_t {
    /** An offset, or a sort key's bits: whatever the listing put in the token. */
    uint64_t n;
    /** The last item's id; "" for the first page or a listing that pages by number. */
    char key[YW_PAGE_KEY_MAX + 1];
} yw_page_cursor_t;

/**
 * The page size in force (AIP-158): 0 means `def`, more than `max` means `max`.
 * `requested` must have been checked to be >= 0 (negative is INVALID_ARGUMENT).
 */
int32_t yw_page_size(int32_t requested, int32_t def, int32_t max);

/**
 * Reads the page key from `path`, creating it (32 random bytes, mode 0600, written aside
 * and linked into place: two processes starting at once agree on one key) when it does
 * not exist. Returns 0, or a negative errno with a message naming the file in `err`
 * (-EINVAL when the file is not 32 bytes).
 */
int yw_page_key_load(const char *path, yw_page_key_t *key, char *err, size_t errlen);

/** A random key, for a process without a data dir: its tokens die with it. 0 or -EIO. */
int yw_page_key_random(yw_page_key_t *key);

/** Starts a query of `method`; `filters` names its filters for messages. Static strings. */
void yw_page_query_init(yw_page_query_t *q, const char *method, const char *filters);

/** Binds a string filter (NULL reads as ""). Filters are length-prefixed: never ambiguous. */
void yw_page_query_add_str(yw_page_query_t *q, const char *s);

/** Binds a number filter. */
void yw_page_query_add_int(yw_page_query_t *q, int64_t v);

/**
 * Writes the token for the page that starts after (`n`, `cursor_key`) of query `q`, signed
 * with `key`, into `out`. `cursor_key` may be NULL or "" (a listing paged by number
 * alone). Returns 0, or -EINVAL when `cursor_key` is longer than YW_PAGE_KEY_MAX or the query's
 * filters overflowed YW_PAGE_QUERY_MAX, -EIO when the MAC cannot be computed.
 */
int yw_page_token_encode(const yw_page_key_t *key, const yw_page_query_t *q, uint64_t n,
                         const char *cursor_key, char out[YW_PAGE_TOKEN_BUFSZ]);

/**
 * Reads `token` for query `q`. NULL or "" is the first page: `cur` gets {0, ""} and 0 is
 * returned. Otherwise the token must be one yw_page_token_encode() wrote under the same
 * key for the same query, with a number of at most `n_max`: `cur` gets its cursor and 0
 * is returned. Any other token: -EINVAL, `cur` is {0, ""}, and `err` says why (a message
 * that starts with "page_token: "): not a token issued here (malformed, edited, or
 * signed with another key), issued for another query (naming q->filters), or its number
 * out of range. The cursor key is only known to be at most YW_PAGE_KEY_MAX bytes without
 * NUL: the caller checks it is an id of its own.
 */
int yw_page_token_decode(const yw_page_key_t *key, const yw_page_query_t *q, const char *token,
                         uint64_t n_max, yw_page_cursor_t *cur, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
