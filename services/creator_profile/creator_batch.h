/*
 * creator_batch.h — the pure pieces of RecordNoteStats's PostgreSQL path (creator_store.c):
 * text arrays passed as one parameter, and the multi-row upsert statements a batch is cut
 * into. No database here: what is built is tested on its own.
 */
#ifndef CREATOR_BATCH_H
#define CREATOR_BATCH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Writes `items` (n of them, NUL-terminated) as a PostgreSQL array literal, '{"a","b"}',
 * every element double-quoted with `"` and `\` escaped by a backslash, into a new string
 * in `*out` (the caller frees it with free()). Returns 0, or -ENOMEM (`*out` is NULL).
 * Bound as text and cast (`?1::text[]`), it reads back as exactly `items`.
 */
int creator_pg_text_array(const char *const *items, size_t n, char **out);

/** The most rows one upsert statement takes (a power of two). */
#define CREATOR_UPSERT_CHUNK_MAX 128

/** Columns (and parameters) of one row of an upsert. */
#define CREATOR_UPSERT_COLUMNS 14

/**
 * How many rows the next upsert takes when `remaining` rows are left: the largest power
 * of two not above `remaining` nor CREATOR_UPSERT_CHUNK_MAX (0 when `remaining` is 0).
 * Any batch takes at most its rows / CREATOR_UPSERT_CHUNK_MAX + 8 statements.
 */
size_t creator_upsert_chunk(size_t remaining);

/**
 * The upsert of `rows` note_stats rows (a value of creator_upsert_chunk()): parameters
 * ?1..?14 for the first row, ?15..?28 for the second, ..., in the columns' order
 * (note_id, day, creator_id, is_video, impressions, views, video_plays, avg_watch_ms,
 * completion_rate, likes, collects, comments, shares, follows_gained), ON CONFLICT
 * (note_id, day) DO UPDATE of every other column. A static string, one per size (the
 * statement cache keys by the pointer), built once; thread-safe. NULL when `rows` is not
 * a power of two up to CREATOR_UPSERT_CHUNK_MAX. The rows of one statement must have
 * distinct (note_id, day): PostgreSQL refuses to update a row twice in one statement.
 */
const char *creator_upsert_sql(size_t rows);

#ifdef __cplusplus
}
#endif
#endif
