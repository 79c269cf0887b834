/*
 * creator_sync.h — keeps this replica's creator cache in step with writes made by other
 * replicas on one PostgreSQL database, and the names replicas agree on for that (the
 * notification channel, the lock keys). Pure: it decides when to read a creator (or all
 * of them) again and what to do with what was read; the service runs the reads as store
 * jobs and reports back. Loop thread only.
 *
 * Every committed write of a creator notifies CREATOR_CHANNEL with its creator_id. A
 * notification (or this replica's own committed write) makes the creator "changed": a
 * reload of it is started, one at a time per creator. The rule that keeps an older
 * record from replacing a newer one:
 *
 *   A reload's result is applied only if nothing was applied to that creator since the
 *   reload was started; otherwise it is dropped and the creator is read again.
 *
 * A reload is started (queued) after every change it must see has committed, and its
 * transaction begins later still, on the primary (never a standby, which may lag), so a
 * result that is applied is at least as new as everything the cache held for that
 * creator. Reloads of one creator never overlap,
 * so their results apply in the order they were started. This replica's own writes are
 * applied at once (read-your-writes on this replica) and start a reload as well: the
 * done callback of a write can run after another replica's later write was reloaded.
 *
 * A notification carries a token after the creator_id (creator_notify_payload()): the
 * writing replica's id and the update_time it wrote (or "deleted"). A replica hearing its
 * own write skips the reload when its cache already holds that update_time (or, for a
 * delete, does not hold the creator): it applied that write itself and read it again
 * (creator_sync_local()). Skipping is safe: that local reload began after the commit and
 * every later write of the creator notifies after this one (NOTIFY is delivered in commit
 * order), so its own reload follows. When the cache does not match (the write's done
 * callback has not run yet, or never will: a commit reported failed) the creator is
 * reloaded as for any notification. Replicas without the token (older versions) read
 * the whole payload as an id: all replicas of one database must speak this format.
 *
 * A lost notification (the listener reconnected: a NULL payload) reloads every creator.
 * The full result replaces the cache except for the creators changed while it was in
 * flight: those keep what the cache holds and are read again. Reloads of one creator in
 * flight when the full result lands are dropped and read again as well (they may have
 * begun before it).
 */
#ifndef CREATOR_SYNC_H
#define CREATOR_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "services/creator_profile/creator_cache.h"
#include "services/creator_profile/creator_record.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The channel every committed write of a creator notifies, with the creator_id. */
#define CREATOR_CHANNEL "yw_creators"

/** Room for a replica id (creator_notify_payload()), its NUL included. */
#define CREATOR_REPLICA_MAX 24

/** Room for a notification's payload: an id, a space, the token. */
#define CREATOR_PAYLOAD_MAX 200

/**
 * Writes the notification of a committed write of creator `id` by replica `replica`
 * ([0-9a-z]{1,23}): "<id> <replica>:<update_seconds>.<update_nanos>", or
 * "<id> <replica>:deleted" when `deleted`. NULL `replica`: the id alone. Returns the length
 * or -ENOSPC (nothing truncated silently).
 */
int creator_notify_payload(const char *id, const char *replica, int deleted, int64_t seconds,
                           int32_t nanos, char *out, size_t outlen);

/** A notification's parts (creator_notify_parse()). */
typedef struct st_creator_notice_t {
    char id[CREATOR_PAYLOAD_MAX];      /* the creator_id */
    char replica[CREATOR_REPLICA_MAX]; /* "" when the payload has no token */
    int deleted;
    int64_t seconds;
    int32_t nanos;
} creator_notice_t;

/**
 * Reads `payload` into `n`. Returns 0, or -EINVAL when it is not one of the forms written
 * by creator_notify_payload() (then `n->id` holds the payload up to its first space, if it
 * fits, and `n->replica` is "": treat it as a change of that creator).
 */
int creator_notify_parse(const char *payload, creator_notice_t *n);

/** Lock key prefixes (yw_sql_job_lock): creates with one request id, upserts of one note. */
#define CREATOR_LOCK_REQUEST "creator-request:"
#define CREATOR_LOCK_NOTE "creator-note:"

/** Room for a lock key: the longest prefix and a 128-byte id. */
#define CREATOR_LOCK_KEY_MAX 160

/**
 * Writes `prefix` followed by `key` into `out`. Returns the length, or -ENOSPC when
 * `outlen` is too small (nothing is truncated silently).
 */
int creator_lock_key(const char *prefix, const char *key, char *out, size_t outlen);

/**
 * Sorts `ids` by bytes (strcmp) and moves the distinct ones to the front. Returns how many
 * are distinct. The strings are not copied.
 */
size_t creator_sort_unique(const char **ids, size_t n);

/** What creator_sync asks the service to do. Each call starts one read job. */
typedef struct st_creator_sync_ops_t {
    /**
     * Read creator `id` and call creator_sync_reloaded() once with the result. `id` is
     * valid only during the call (copy it). Returns 0, or a negative errno when the read
     * cannot be started (then creator_sync_reloaded() must not be called).
     */
    int (*reload)(void *arg, const char *id);
    /**
     * Read every creator and call creator_sync_reloaded_all() once with the result.
     * Returns 0, or a negative errno (then creator_sync_reloaded_all() is not called).
     */
    int (*reload_all)(void *arg);
    void *arg;
} creator_sync_ops_t;

typedef struct st_creator_sync_entry_t creator_sync_entry_t;

typedef struct st_creator_sync_t {
    creator_cache_t *cache; /* borrowed: the cache kept in step */
    creator_sync_ops_t ops;
    /* Creators being reloaded, or changed during a full reload: a small hash table. */
    creator_sync_entry_t **buckets;
    size_t mask;
    size_t n_entries;
    uint64_t gen;       /* counts changes applied to the cache */
    int full_in_flight; /* a full reload is running */
    int full_again;     /* another is wanted once it ends */
    uint64_t full_gen;  /* gen when the running full reload started */
    /** Reloads that could not be started or failed: the service retries with a full one. */
    int failed;
} creator_sync_t;

/** Initializes `s` for `cache` (borrowed, must outlive `s`). Returns 0 or -ENOMEM. */
int creator_sync_init(creator_sync_t *s, creator_cache_t *cache, const creator_sync_ops_t *ops);

/** Frees the entries. Reloads still in flight must not report back afterwards. */
void creator_sync_dispose(creator_sync_t *s);

/** A notification for creator `id`: reload it (now, or once its running reload ends). */
void creator_sync_changed(creator_sync_t *s, const char *id);

/**
 * A notification `payload` heard on CREATOR_CHANNEL, this replica being `self`: reloads
 * the creator as creator_sync_changed() does, unless it is this replica's own write that
 * the cache already holds (see the top of this file).
 */
void creator_sync_notified(creator_sync_t *s, const char *payload, const char *self);

/**
 * This replica committed a write of creator `id`: `rec` (owned from now on; NULL: the
 * creator was deleted) goes into the cache at once, and the creator is reloaded.
 */
void creator_sync_local(creator_sync_t *s, const char *id, creator_record_t *rec);

/**
 * The reload of `id` ended: `ok` non-zero when it read the database, with `rec` the
 * creator (owned from now on; NULL: it does not exist). `rec` is ignored when !ok.
 */
void creator_sync_reloaded(creator_sync_t *s, const char *id, int ok, creator_record_t *rec);

/** Notifications may have been lost: reload every creator. */
void creator_sync_changed_all(creator_sync_t *s);

/**
 * The full reload ended: `ok` non-zero with `fresh` holding every creator read (its
 * records are taken, and `fresh` is left empty but initialized: the caller disposes it).
 */
void creator_sync_reloaded_all(creator_sync_t *s, int ok, creator_cache_t *fresh);

/** Reloads in flight (one per creator) plus creators remembered during a full reload. */
size_t creator_sync_pending(const creator_sync_t *s);

#ifdef __cplusplus
}
#endif
#endif
