/*
 * creator_sync.c — the reload bookkeeping of creator_sync.h: one entry per creator being
 * reloaded (or changed while every creator is reloaded), in a chained hash table keyed by
 * creator_id, freed as soon as nothing about that creator is pending.
 */
#include "services/creator_profile/creator_sync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

#define INITIAL_BUCKETS 64

struct st_creator_sync_entry_t {
    creator_sync_entry_t *next;
    uint64_t hash;
    int in_flight;    /* a reload of this creator is running */
    int again;        /* reload it once more when the running one ends */
    int stale;        /* drop the running reload's result: the cache changed since it began */
    uint64_t touched; /* s->gen of the last change applied to this creator; 0: none */
    char id[];        /* NUL-terminated */
};

int creator_lock_key(const char *prefix, const char *key, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s", prefix, key);
    return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

int creator_notify_payload(const char *id, const char *replica, int deleted, int64_t seconds,
                           int32_t nanos, char *out, size_t outlen)
{
    int n;
    if (replica == NULL) {
        n = snprintf(out, outlen, "%s", id);
    } else if (deleted) {
        n = snprintf(out, outlen, "%s %s:deleted", id, replica);
    } else {
        n = snprintf(out, outlen, "%s %s:%" PRId64 ".%" PRId32, id, replica, seconds, nanos);
    }
    return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

int creator_notify_parse(const char *payload, creator_notice_t *n)
{
    memset(n, 0, sizeof *n);
    const char *sp = strchr(payload, ' ');
    size_t idlen = sp != NULL ? (size_t)(sp - payload) : strlen(payload);
    if (idlen >= sizeof n->id) {
        return -EINVAL;
    }
    memcpy(n->id, payload, idlen);
    if (sp == NULL) {
        return idlen > 0 ? 0 : -EINVAL; /* the id alone */
    }
    const char *rep = sp + 1, *colon = strchr(rep, ':');
    size_t replen = colon != NULL ? (size_t)(colon - rep) : 0;
    if (idlen == 0 || replen == 0 || replen >= sizeof n->replica) {
        return -EINVAL;
    }
    for (size_t i = 0; i < replen; i++) {
        if (!((rep[i] >= '0' && rep[i] <= '9') || (rep[i] >= 'a' && rep[i] <= 'z'))) {
            return -EINVAL;
        }
    }
    const char *t = colon + 1;
    if (strcmp(t, "deleted") == 0) {
        n->deleted = 1;
    } else {
        char *end;
        errno = 0;
        long long sec = strtoll(t, &end, 10);
        if (end == t || *end != '.' || errno != 0 || !(end[1] >= '0' && end[1] <= '9')) {
            return -EINVAL;
        }
        const char *ns_at = end + 1;
        long long ns = strtoll(ns_at, &end, 10);
        if (*end != '\0' || errno != 0 || ns < 0 || ns > 999999999) {
            return -EINVAL;
        }
        n->seconds = sec;
        n->nanos = (int32_t)ns;
    }
    memcpy(n->replica, rep, replen);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t creator_sort_unique(const char **ids, size_t n)
{
    if (n == 0) {
        return 0;
    }
    qsort(ids, n, sizeof *ids, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ids[i], ids[k - 1]) != 0) {
            ids[k++] = ids[i];
        }
    }
    return k;
}

/* ---- the entries ---- */

static uint64_t hash_id(const char *id)
{
    return yw_hash_bytes(id, strlen(id));
}

static creator_sync_entry_t *find(const creator_sync_t *s, const char *id, uint64_t h)
{
    for (creator_sync_entry_t *e = s->buckets[h & s->mask]; e != NULL; e = e->next) {
        if (e->hash == h && strcmp(e->id, id) == 0) {
            return e;
        }
    }
    return NULL;
}

static void grow(creator_sync_t *s)
{
    size_t n = (s->mask + 1) * 2;
    creator_sync_entry_t **b = calloc(n, sizeof *b);
    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i <= s->mask; i++) {
        creator_sync_entry_t *e = s->buckets[i];
        while (e != NULL) {
            creator_sync_entry_t *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->mask = n - 1;
}

/* The entry of `id`, added when missing; NULL when out of memory. */
static creator_sync_entry_t *get(creator_sync_t *s, const char *id)
{
    uint64_t h = hash_id(id);
    creator_sync_entry_t *e = find(s, id, h);
    if (e != NULL) {
        return e;
    }
    size_t len = strlen(id);
    e = calloc(1, sizeof *e + len + 1);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->id, id, len + 1);
    e->hash = h;
    e->next = s->buckets[h & s->mask];
    s->buckets[h & s->mask] = e;
    if (++s->n_entries > s->mask + 1) {
        grow(s);
    }
    return e;
}

/* Frees `e` when nothing about its creator is pending. */
static void maybe_drop(creator_sync_t *s, creator_sync_entry_t *e)
{
    if (e->in_flight || e->again || (s->full_in_flight && e->touched > s->full_gen)) {
        return;
    }
    for (creator_sync_entry_t **p = &s->buckets[e->hash & s->mask]; *p != NULL; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            s->n_entries--;
            free(e);
            return;
        }
    }
}

/* Starts a reload of e's creator; may free `e` (when it cannot start). */
static void start(creator_sync_t *s, creator_sync_entry_t *e)
{
    e->in_flight = 1;
    e->again = 0;
    e->stale = 0;
    if (s->ops.reload(s->ops.arg, e->id) != 0) {
        e->in_flight = 0;
        s->failed = 1;
        maybe_drop(s, e);
    }
}

/* Puts `rec` (NULL: removes) as e's creator in the cache, and remembers the change. */
static void apply(creator_sync_t *s, creator_sync_entry_t *e, const char *id, creator_record_t *rec)
{
    if (rec != NULL) {
        creator_cache_put(s->cache, rec);
    } else {
        (void)creator_cache_remove(s->cache, id); /* -ENOENT: not cached, nothing to do */
    }
    s->gen++;
    if (e != NULL) {
        e->touched = s->gen;
    }
}

/* ---- the public calls ---- */

int creator_sync_init(creator_sync_t *s, creator_cache_t *cache, const creator_sync_ops_t *ops)
{
    memset(s, 0, sizeof *s);
    s->buckets = calloc(INITIAL_BUCKETS, sizeof *s->buckets);
    if (s->buckets == NULL) {
        return -ENOMEM;
    }
    s->mask = INITIAL_BUCKETS - 1;
    s->cache = cache;
    s->ops = *ops;
    return 0;
}

void creator_sync_dispose(creator_sync_t *s)
{
    if (s->buckets == NULL) {
        return;
    }
    for (size_t i = 0; i <= s->mask; i++) {
        creator_sync_entry_t *e = s->buckets[i];
        while (e != NULL) {
            creator_sync_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = NULL;
    s->n_entries = 0;
}

void creator_sync_changed(creator_sync_t *s, const char *id)
{
    creator_sync_entry_t *e = get(s, id);
    if (e == NULL) {
        s->failed = 1; /* out of memory: a full reload later catches up */
        return;
    }
    if (e->in_flight) {
        e->again = 1;
    } else {
        start(s, e);
    }
}

void creator_sync_notified(creator_sync_t *s, const char *payload, const char *self)
{
    creator_notice_t n;
    if (creator_notify_parse(payload, &n) != 0) {
        if (n.id[0] == '\0') {
            s->failed = 1; /* whose change is unknown: a full reload catches up */
            return;
        }
    } else if (self != NULL && n.replica[0] != '\0' && strcmp(n.replica, self) == 0) {
        const creator_record_t *cur = creator_cache_get(s->cache, n.id);
        if (n.deleted ? cur == NULL
                      : cur != NULL && cur->update_time.seconds == n.seconds &&
                            cur->update_time.nanos == n.nanos) {
            return; /* our own write, held already and read again by creator_sync_local() */
        }
    }
    creator_sync_changed(s, n.id);
}

void creator_sync_local(creator_sync_t *s, const char *id, creator_record_t *rec)
{
    creator_sync_entry_t *e = get(s, id);
    apply(s, e, id, rec);
    if (e == NULL) {
        s->failed = 1;
        return;
    }
    if (e->in_flight) {
        /* It may have read the database before this write committed. */
        e->stale = 1;
        e->again = 1;
    } else {
        start(s, e);
    }
}

void creator_sync_reloaded(creator_sync_t *s, const char *id, int ok, creator_record_t *rec)
{
    creator_sync_entry_t *e = find(s, id, hash_id(id));
    if (e == NULL || !e->in_flight) {
        creator_record_free(rec); /* not ours to apply (cannot happen) */
        return;
    }
    e->in_flight = 0;
    if (!ok) {
        creator_record_free(rec);
        if (!e->again) {
            s->failed = 1;
        }
    } else if (e->stale) {
        creator_record_free(rec);
        e->again = 1;
    } else {
        apply(s, e, id, rec);
    }
    if (e->again) {
        start(s, e);
    } else {
        maybe_drop(s, e);
    }
}

/* Starts a full reload. */
static void start_full(creator_sync_t *s)
{
    s->full_in_flight = 1;
    s->full_again = 0;
    s->full_gen = s->gen;
    if (s->ops.reload_all(s->ops.arg) != 0) {
        s->full_in_flight = 0;
        s->failed = 1;
    }
}

void creator_sync_changed_all(creator_sync_t *s)
{
    if (s->full_in_flight) {
        s->full_again = 1;
    } else {
        start_full(s);
    }
}

void creator_sync_reloaded_all(creator_sync_t *s, int ok, creator_cache_t *fresh)
{
    s->full_in_flight = 0;
    if (ok) {
        /*
         * Creators changed while the full read ran keep what the cache holds; reloads
         * running now may have begun before the full read's snapshot: both are read again.
         */
        for (size_t i = 0; i <= s->mask; i++) {
            for (creator_sync_entry_t *e = s->buckets[i]; e != NULL; e = e->next) {
                if (e->touched > s->full_gen) {
                    creator_record_t *cur = creator_cache_take(s->cache, e->id);
                    if (cur != NULL) {
                        creator_cache_put(fresh, cur);
                    } else {
                        (void)creator_cache_remove(fresh, e->id);
                    }
                }
                e->again = 1;
                if (e->in_flight) {
                    e->stale = 1;
                }
            }
        }
        creator_cache_t old = *s->cache;
        *s->cache = *fresh;
        *fresh = old;
        s->gen++;
        s->failed = 0;
    } else {
        s->failed = 1;
    }
    /* Start what is wanted; `start` and `maybe_drop` may free the entry at hand. */
    for (size_t i = 0; i <= s->mask; i++) {
        creator_sync_entry_t *e = s->buckets[i];
        while (e != NULL) {
            creator_sync_entry_t *next = e->next;
            if (e->in_flight) {
                /* runs on; `again` restarts it when it ends */
            } else if (e->again) {
                start(s, e);
            } else {
                maybe_drop(s, e);
            }
            e = next;
        }
    }
    if (s->full_again) {
        start_full(s);
    }
}

size_t creator_sync_pending(const creator_sync_t *s)
{
    return s->n_entries;
}
