/*
 * creator_batch.c — array literals and chunked upserts of creator_batch.h.
 */
#include "services/creator_profile/creator_batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int creator_pg_text_array(const char *const *items, size_t n, char **out)
{
    size_t len = 3; /* '{', '}', NUL */
    for (size_t i = 0; i < n; i++) {
        len += 3; /* two quotes, a comma */
        for (const char *p = items[i]; *p != '\0'; p++) {
            len += *p == '"' || *p == '\\' ? 2 : 1;
        }
    }
    char *s = malloc(len);
    *out = s;
    if (s == NULL) {
        return -ENOMEM;
    }
    char *w = s;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            *w++ = ',';
        }
        *w++ = '"';
        for (const char *p = items[i]; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\') {
                *w++ = '\\';
            }
            *w++ = *p;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return 0;
}

size_t creator_upsert_chunk(size_t remaining)
{
    size_t k = CREATOR_UPSERT_CHUNK_MAX;
    while (k > remaining) {
        k /= 2;
    }
    return k;
}

/* Sizes 1, 2, 4, ..., CREATOR_UPSERT_CHUNK_MAX: 8 statements. */
#define N_SIZES 8

static const char upsert_head[] =
    "INSERT INTO note_stats(note_id, day, creator_id, is_video, impressions, views, "
    "video_plays, avg_watch_ms, completion_rate, likes, collects, comments, shares, "
    "follows_gained) VALUES ";
static const char upsert_tail[] =
    " ON CONFLICT (note_id, day) DO UPDATE SET creator_id = excluded.creator_id, "
    "is_video = excluded.is_video, impressions = excluded.impressions, "
    "views = excluded.views, video_plays = excluded.video_plays, "
    "avg_watch_ms = excluded.avg_watch_ms, completion_rate = excluded.completion_rate, "
    "likes = excluded.likes, collects = excluded.collects, comments = excluded.comments, "
    "shares = excluded.shares, follows_gained = excluded.follows_gained";

/* A row's values: ", (" or ", " then "?nnnn" per column, and ")": at most 14 * 8 + 2. */
#define ROW_MAX ((size_t)CREATOR_UPSERT_COLUMNS * 8 + 2)
#define SQL_MAX (sizeof upsert_head + sizeof upsert_tail + CREATOR_UPSERT_CHUNK_MAX * ROW_MAX)

static char upsert_sql[N_SIZES][SQL_MAX];
static pthread_once_t upsert_once = PTHREAD_ONCE_INIT;

static void build_upserts(void)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t rows = (size_t)1 << s;
        char *w = upsert_sql[s];
        char *end = w + SQL_MAX;
        w += snprintf(w, (size_t)(end - w), "%s", upsert_head);
        for (size_t r = 0; r < rows; r++) {
            for (int c = 0; c < CREATOR_UPSERT_COLUMNS; c++) {
                w +=
                    snprintf(w, (size_t)(end - w), "%s?%zu", c == 0 ? (r == 0 ? "(" : ", (") : ", ",
                             r * CREATOR_UPSERT_COLUMNS + (size_t)c + 1);
            }
            *w++ = ')';
        }
        (void)snprintf(w, (size_t)(end - w), "%s", upsert_tail);
    }
}

const char *creator_upsert_sql(size_t rows)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        if (rows == (size_t)1 << s) {
            if (pthread_once(&upsert_once, build_upserts) != 0) {
                return NULL;
            }
            return upsert_sql[s];
        }
    }
    return NULL;
}
