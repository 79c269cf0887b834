/* attr_tier.c — tier labels from tier scoring, batched and cached. See attr_tier.h. */
#include "services/attribution/attr_tier.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "yaowei/tier/v1/tier.pb-c.h"

struct st_attr_tier_t {
    yw_channel_t *ch;
    int64_t ttl_ns;
};

/** One refresh: its calls in flight and the first error seen. */
typedef struct st_attr__refresh_t {
    attr_tier_t *t;
    attr_state_t *st;
    yw_call_t *parent;
    int64_t now_ns;
    int outstanding;
    char error[256];
    attr_tier_done_t done;
    void *arg;
} attr__refresh_t;

/** One BatchScoreCreators call: the creators it asks for. */
typedef struct st_attr__batch_t {
    attr__refresh_t *r;
    size_t n;
    uint32_t ids[];
} attr__batch_t;

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
    *out = t;
    return 0;
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

static void attr__refresh_end(attr__refresh_t *r)
{
    if (--r->outstanding > 0) {
        return;
    }
    r->done(r->arg, r->error[0] != '\0' ? r->error : NULL);
    free(r);
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp);

/** Starts one call for ids[0..n). On failure records the error; never calls done. */
static void attr__start_batch(attr__refresh_t *r, const uint32_t *ids, size_t n)
{
    attr__batch_t *b = malloc(sizeof *b + n * sizeof b->ids[0]);
    char **names = malloc(n * sizeof *names);
    if (b == NULL || names == NULL) {
        free(b);
        free(names);
        snprintf(r->error, sizeof r->error, "tier scoring: out of memory");
        return;
    }
    b->r = r;
    b->n = n;
    memcpy(b->ids, ids, n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        /* Interned strings never move: the request may point at them. */
        names[i] = (char *)attr_intern_str(&r->st->creators, ids[i], NULL);
    }
    Yaowei__Tier__V1__BatchScoreCreatorsRequest req;
    yaowei__tier__v1__batch_score_creators_request__init(&req);
    req.n_creator_ids = n;
    req.creator_ids = names;
    r->outstanding++;
    int rc = yw_client_unary(r->t->ch, ATTR_TIER_METHOD, &req.base,
                             &yaowei__tier__v1__batch_score_creators_response__descriptor,
                             r->parent, ATTR_TIER_TIMEOUT_MS, attr__on_batch, b);
    free(names);
    if (rc != 0) {
        r->outstanding--;
        snprintf(r->error, sizeof r->error, "tier scoring: cannot start a call: %s", strerror(-rc));
        free(b);
    }
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    attr__batch_t *b = arg;
    attr__refresh_t *r = b->r;
    attr_state_t *st = r->st;
    if (code == GRPC_STATUS_OK) {
        /* Asked and not answered: unknown there. */
        for (size_t i = 0; i < b->n; i++) {
            attr__label(st, b->ids[i], YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, r->now_ns);
        }
        Yaowei__Tier__V1__BatchScoreCreatorsResponse *res =
            (Yaowei__Tier__V1__BatchScoreCreatorsResponse *)resp;
        for (size_t i = 0; i < res->n_scores; i++) {
            const Yaowei__Tier__V1__TierScore *s = res->scores[i];
            if (s == NULL || s->creator_id == NULL) {
                continue;
            }
            int64_t id = attr_intern_find(&st->creators, s->creator_id, strlen(s->creator_id));
            if (id >= 0) {
                attr__label(st, (uint32_t)id, (int)s->tier, r->now_ns);
            }
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    } else if (code == GRPC_STATUS_NOT_FOUND || code == GRPC_STATUS_INVALID_ARGUMENT) {
        if (b->n == 1) {
            attr__label(st, b->ids[0], YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, r->now_ns);
        } else {
            /* One bad id fails the batch: find it by halves. */
            size_t half = b->n / 2;
            attr__start_batch(r, b->ids, half);
            attr__start_batch(r, b->ids + half, b->n - half);
        }
    } else if (r->error[0] == '\0') {
        snprintf(r->error, sizeof r->error, "tier scoring: %s: %.200s", yw_status_name(code),
                 detail != NULL ? detail : "");
    }
    free(b);
    attr__refresh_end(r);
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
    r->done = done;
    r->arg = arg;
    r->outstanding = 1; /* held until every batch was started */
    for (size_t i = 0; i < k; i += ATTR_TIER_BATCH) {
        attr__start_batch(r, ask + i, k - i < ATTR_TIER_BATCH ? k - i : ATTR_TIER_BATCH);
    }
    free(ask);
    if (r->outstanding == 1 && r->error[0] != '\0') {
        /* Not one call could start: tell the caller now, done is not called. */
        yw_log(YW_LOG_WARN, "%s", r->error);
        free(r);
        return -EIO;
    }
    attr__refresh_end(r); /* runs done now if every call has already completed */
    return 1;
}
