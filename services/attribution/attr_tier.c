/* attr_tier.c — tier labels from tier scoring, batched, paced and cached. See attr_tier.h. */
#include "services/attribution/attr_tier.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "yaowei/tier/v1/tier.pb-c.h"

struct st_attr_tier_t {
    yw_channel_t *ch;
    int64_t ttl_ns;
    size_t batch;       /* ids per call */
    int inflight;       /* calls of one refresh in flight at most */
    int64_t timeout_ms; /* what one refresh gets for all its calls */
};

typedef struct st_attr__batch_t attr__batch_t;

/**
 * One refresh: the ids still to send, the halves of refused batches waiting to be sent,
 * the calls in flight and the first error seen. Freed when the last call completed.
 */
typedef struct st_attr__refresh_t {
    attr_tier_t *t;
    attr_state_t *st;
    yw_call_t *parent;
    int64_t now_ns;
    int64_t deadline_ms; /* monotonic: no batch is sent after it */
    uint32_t *ask;       /* owned */
    size_t n_ask, next;  /* ask[next..n_ask) not sent yet */
    attr__batch_t *split;
    int in_flight;
    size_t unasked; /* creators never asked (deadline, cancellation, tier scoring failing) */
    char error[256];
    attr_tier_done_t done;
    void *arg;
} attr__refresh_t;

/** One BatchGetCreatorTiers call: the creators it asks for. */
struct st_attr__batch_t {
    attr__refresh_t *r;
    attr__batch_t *next; /* in r->split */
    size_t n;
    uint32_t ids[];
};

int attr_tier_create(yw_runtime_t *rt, const char *addr, int64_t ttl_ns, attr_tier_t **out)
{
    attr_tier_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return -ENOMEM;
    }
    int rc = yw_channel_create(rt, addr, &t->ch);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->ttl_ns = ttl_ns;
    t->batch = ATTR_TIER_BATCH;
    t->inflight = ATTR_TIER_INFLIGHT;
    t->timeout_ms = ATTR_TIER_TIMEOUT_MS;
    *out = t;
    return 0;
}

void attr_tier_set_limits(attr_tier_t *t, size_t batch, int inflight, int64_t timeout_ms)
{
    if (batch > 0) {
        t->batch = batch;
    }
    if (inflight > 0) {
        t->inflight = inflight;
    }
    if (timeout_ms > 0) {
        t->timeout_ms = timeout_ms;
    }
}

void attr_tier_destroy(attr_tier_t *t)
{
    if (t != NULL) {
        yw_channel_destroy(t->ch);
        free(t);
    }
}

int attr_tier_id_ok(const char *id, size_t len)
{
    if (len == 0 || len > 128) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

int attr_tier_of(const attr_state_t *st, uint32_t creator)
{
    if (creator >= st->cap_creator_meta || st->creator_meta[creator].tier_ns == 0) {
        return YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED;
    }
    return st->creator_meta[creator].tier;
}

static void attr__label(attr_state_t *st, uint32_t creator, int tier, int64_t now_ns)
{
    if (creator < st->cap_creator_meta) {
        st->creator_meta[creator].tier = tier;
        st->creator_meta[creator].tier_ns = now_ns;
    }
}

/*
 * TIER_UNSPECIFIED for a creator tier scoring listed in not_found, kept for
 * min(TTL, ATTR_TIER_NOT_FOUND_TTL_NS): tier_ns (when the label was fetched) is dated
 * back by the difference, so that the TTL check of attr_tier_refresh() lets it expire.
 */
static void attr__label_not_found(attr__refresh_t *r, uint32_t creator)
{
    int64_t ttl = r->t->ttl_ns;
    int64_t keep = ttl < ATTR_TIER_NOT_FOUND_TTL_NS ? ttl : ATTR_TIER_NOT_FOUND_TTL_NS;
    int64_t at = r->now_ns - (ttl - keep);
    attr__label(r->st, creator, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, at > 0 ? at : 1);
}

static int64_t attr__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void attr__set_error(attr__refresh_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps the first error of the refresh. */
static void attr__set_error(attr__refresh_t *r, const char *fmt, ...)
{
    if (r->error[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
}

/* Drops every batch not sent yet: their creators keep their labels (or none). */
static void attr__drop_unsent(attr__refresh_t *r)
{
    while (r->split != NULL) {
        attr__batch_t *b = r->split;
        r->split = b->next;
        r->unasked += b->n;
        free(b);
    }
    r->unasked += r->n_ask - r->next;
    r->next = r->n_ask;
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp);

/* The next batch to send: a half of a refused batch first, else the next ids. */
static attr__batch_t *attr__take(attr__refresh_t *r)
{
    if (r->split != NULL) {
        attr__batch_t *b = r->split;
        r->split = b->next;
        return b;
    }
    size_t n = r->n_ask - r->next;
    if (n > r->t->batch) {
        n = r->t->batch;
    }
    attr__batch_t *b = malloc(sizeof *b + n * sizeof b->ids[0]);
    if (b == NULL) {
        return NULL;
    }
    b->r = r;
    b->next = NULL;
    b->n = n;
    memcpy(b->ids, r->ask + r->next, n * sizeof b->ids[0]);
    r->next += n;
    return b;
}

/* Starts the call of `b` with `timeout_ms` left. Returns 0, or -1 (b freed, error set). */
static int attr__send(attr__refresh_t *r, attr__batch_t *b, int64_t timeout_ms)
{
    char **names = malloc(b->n * sizeof *names);
    if (names == NULL) {
        attr__set_error(r, "tier scoring: out of memory");
        r->unasked += b->n;
        free(b);
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        /* Interned strings never move: the request may point at them. */
        names[i] = (char *)attr_intern_str(&r->st->creators, b->ids[i], NULL);
    }
    Yaowei__Tier__V1__BatchGetCreatorTiersRequest req;
    yaowei__tier__v1__batch_get_creator_tiers_request__init(&req);
    req.n_creator_ids = b->n;
    req.creator_ids = names;
    int rc = yw_client_unary(r->t->ch, ATTR_TIER_METHOD, &req.base,
                             &yaowei__tier__v1__batch_get_creator_tiers_response__descriptor,
                             r->parent, timeout_ms, attr__on_batch, b);
    free(names);
    if (rc != 0) {
        attr__set_error(r, "tier scoring: cannot start a call: %s", strerror(-rc));
        r->unasked += b->n;
        free(b);
        return -1;
    }
    r->in_flight++;
    return 0;
}

/*
 * Sends batches until ATTR_TIER_INFLIGHT are in flight or none is left. Once the
 * refresh's deadline has passed, or its inbound call is cancelled, the rest is dropped.
 * Completions never run inside (they come later, on the loop).
 */
static void attr__pump(attr__refresh_t *r)
{
    while (r->in_flight < r->t->inflight && (r->split != NULL || r->next < r->n_ask)) {
        int64_t left = r->deadline_ms - attr__mono_ms();
        if (left <= 0 || (r->parent != NULL && yw_call_is_cancelled(r->parent))) {
            size_t before = r->unasked;
            attr__drop_unsent(r);
            attr__set_error(r, "tier scoring: %zu creators not asked: %s", r->unasked - before,
                            left <= 0 ? "the time for tier labels ran out"
                                      : "the report's call ended");
            return;
        }
        attr__batch_t *b = attr__take(r);
        if (b == NULL) {
            attr__set_error(r, "tier scoring: out of memory");
            attr__drop_unsent(r);
            return;
        }
        (void)attr__send(r, b, left);
    }
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    attr__batch_t *b = arg;
    attr__refresh_t *r = b->r;
    attr_state_t *st = r->st;
    r->in_flight--;
    if (code == GRPC_STATUS_OK) {
        const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *res =
            (const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *)resp;
        for (size_t i = 0; i < res->n_tiers; i++) {
            const Yaowei__Tier__V1__CreatorTier *c = res->tiers[i];
            if (c == NULL || c->creator_id == NULL) {
                continue;
            }
            int64_t id = attr_intern_find(&st->creators, c->creator_id, strlen(c->creator_id));
            if (id >= 0) {
                attr__label(st, (uint32_t)id, (int)c->tier, r->now_ns);
            }
        }
        for (size_t i = 0; i < res->n_not_found; i++) {
            const char *s = res->not_found[i];
            int64_t id = s != NULL ? attr_intern_find(&st->creators, s, strlen(s)) : -1;
            if (id >= 0) {
                attr__label_not_found(r, (uint32_t)id);
            }
        }
        /* An id in neither list keeps its label and is asked again next time. */
        protobuf_c_message_free_unpacked(resp, NULL);
        free(b);
    } else if (code == GRPC_STATUS_INVALID_ARGUMENT && b->n == 1) {
        /* Tier scoring does not take this id: unlabelled, as ids we never send. */
        attr__label(st, b->ids[0], YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, r->now_ns);
        free(b);
    } else if (code == GRPC_STATUS_INVALID_ARGUMENT) {
        /* One id it does not take refuses the batch: find it by halves. */
        size_t half = b->n / 2;
        attr__batch_t *hi = malloc(sizeof *hi + (b->n - half) * sizeof hi->ids[0]);
        if (hi == NULL) {
            attr__set_error(r, "tier scoring: out of memory");
            r->unasked += b->n;
            free(b);
        } else {
            hi->r = r;
            hi->n = b->n - half;
            memcpy(hi->ids, b->ids + half, hi->n * sizeof hi->ids[0]);
            b->n = half;
            hi->next = r->split;
            b->next = hi;
            r->split = b;
        }
    } else {
        /* Down, slow or failing: the rest would fare no better. Ask again next time. */
        attr__set_error(r, "tier scoring: %s: %.200s", yw_status_name(code),
                        detail != NULL ? detail : "");
        r->unasked += b->n;
        free(b);
        attr__drop_unsent(r);
    }
    attr__pump(r);
    if (r->in_flight > 0) {
        return;
    }
    if (r->unasked > 0) {
        yw_log(YW_LOG_DEBUG, "tier labels: %zu of %zu creators not labelled this time", r->unasked,
               r->n_ask);
    }
    r->done(r->arg, r->error[0] != '\0' ? r->error : NULL);
    free(r->ask);
    free(r);
}

int attr_tier_refresh(attr_tier_t *t, attr_state_t *st, const uint32_t *creators, size_t n,
                      int64_t now_ns, yw_call_t *parent, attr_tier_done_t done, void *arg)
{
    uint32_t *ask = malloc((n ? n : 1) * sizeof *ask);
    if (ask == NULL) {
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = creators[i];
        if (c >= st->cap_creator_meta) {
            continue;
        }
        const attr_creator_t *m = &st->creator_meta[c];
        if (m->tier_ns != 0 && now_ns - m->tier_ns < t->ttl_ns) {
            continue;
        }
        size_t len;
        const char *s = attr_intern_str(&st->creators, c, &len);
        if (!attr_tier_id_ok(s, len)) {
            attr__label(st, c, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, now_ns);
            continue;
        }
        ask[k++] = c;
    }
    if (k == 0) {
        free(ask);
        return 0;
    }
    attr__refresh_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        free(ask);
        return -ENOMEM;
    }
    r->t = t;
    r->st = st;
    r->parent = parent;
    r->now_ns = now_ns;
    r->deadline_ms = attr__mono_ms() + t->timeout_ms;
    r->ask = ask;
    r->n_ask = k;
    r->done = done;
    r->arg = arg;
    attr__pump(r);
    if (r->in_flight == 0) {
        /* Not one call could start: tell the caller now, done is not called. */
        yw_log(YW_LOG_WARN, "%s", r->error[0] != '\0' ? r->error : "tier scoring: no call started");
        free(r->ask);
        free(r);
        return -EIO;
    }
    return 1;
}
