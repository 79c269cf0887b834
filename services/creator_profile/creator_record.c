/*
 * creator_record.c — one-allocation creator records. See creator_record.h.
 *
 * Layout: the record, then the categories pointer array, then every string with its
 * NUL, in one malloc, so that a record is freed with one free().
 */
#include "services/creator_profile/creator_record.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* Number of categories in a joined string: "" holds none. */
static size_t joined_count(const char *s)
{
    if (s[0] == '\0') {
        return 0;
    }
    size_t n = 1;
    for (; *s != '\0'; s++) {
        n += *s == CREATOR_CATEGORY_SEP;
    }
    return n;
}

static char *put_string(char **cursor, const char *s, size_t len)
{
    char *dst = *cursor;
    memcpy(dst, s, len);
    dst[len] = '\0';
    *cursor += len + 1;
    return dst;
}

creator_record_t *creator_record_new(const creator_fields_t *f)
{
    size_t n_cat = f->categories != NULL ? f->n_categories : joined_count(f->categories_joined);
    size_t id_len = strlen(f->creator_id), dn_len = strlen(f->display_name),
           rg_len = strlen(f->region);
    size_t bytes = sizeof(creator_record_t) + n_cat * sizeof(char *) + id_len + dn_len + rg_len + 3;
    if (f->categories != NULL) {
        for (size_t i = 0; i < n_cat; i++) {
            bytes += strlen(f->categories[i]) + 1;
        }
    } else {
        /* Each separator becomes a NUL; one more NUL at the end. */
        bytes += strlen(f->categories_joined) + 1;
    }
    _Static_assert(sizeof(creator_record_t) % alignof(char *) == 0, "pointer array alignment");
    creator_record_t *r = malloc(bytes);
    if (r == NULL) {
        return NULL;
    }
    char **cats = (char **)(r + 1);
    char *cursor = (char *)(cats + n_cat);

    Yaowei__Creator__V1__Creator init = YAOWEI__CREATOR__V1__CREATOR__INIT;
    Google__Protobuf__Timestamp ts_init = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    r->msg = init;
    r->create_time = ts_init;
    r->update_time = ts_init;
    r->cache_next = NULL;
    r->cache_hash = 0;

    r->msg.creator_id = put_string(&cursor, f->creator_id, id_len);
    r->msg.display_name = put_string(&cursor, f->display_name, dn_len);
    r->msg.region = put_string(&cursor, f->region, rg_len);
    if (f->categories != NULL) {
        for (size_t i = 0; i < n_cat; i++) {
            cats[i] = put_string(&cursor, f->categories[i], strlen(f->categories[i]));
        }
    } else if (n_cat > 0) {
        const char *s = f->categories_joined;
        for (size_t i = 0; i < n_cat; i++) {
            const char *end = strchr(s, CREATOR_CATEGORY_SEP);
            size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
            cats[i] = put_string(&cursor, s, len);
            s += len + 1;
        }
    }
    r->msg.n_categories = n_cat;
    r->msg.categories = n_cat > 0 ? cats : NULL;
    r->msg.followers = f->followers;
    r->msg.status = (Yaowei__Creator__V1__CreatorStatus)f->status;
    r->create_time.seconds = f->create_seconds;
    r->create_time.nanos = f->create_nanos;
    r->update_time.seconds = f->update_seconds;
    r->update_time.nanos = f->update_nanos;
    r->msg.create_time = &r->create_time;
    r->msg.update_time = &r->update_time;
    return r;
}

void creator_record_free(creator_record_t *r)
{
    free(r);
}

int creator_categories_join(char *const *categories, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0) {
        return -ENOSPC;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(categories[i]);
        if (o + len + (i > 0) + 1 > outlen) {
            return -ENOSPC;
        }
        if (i > 0) {
            out[o++] = CREATOR_CATEGORY_SEP;
        }
        memcpy(out + o, categories[i], len);
        o += len;
    }
    out[o] = '\0';
    return (int)o;
}
