/* attr_tier.c — tier labels from tier scoring, batched, paced, shared and cached. See
 * attr_tier.h. */
#include "services/attribution/attr_tier.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/vec.h"
#include "yaowei/tier/v1/tier.pb-c.h"

typedef struct st_attr__fetch_t attr__fetch_t;
typedef struct st_attr__waiter_t attr__waiter_t;
typedef struct st_attr__batch_t attr__batch_t;

struct st_attr_tier_t {
    yw_channel_t *ch;
    int64_t ttl_ns;
    size_t batch;       /* ids per call */
    int inflight;       /* calls of one fetch in flight at most */
    int64_t timeout_ms; /* what one fetch gets for all its calls */
    /* Single flight: the fetches in flight, and which one asks for each creator. */
    attr__fetch_t *fetches;
    uint32_t next_serial;
    uint32_t *busy; /* busy[creator]: serial of the fetch asking for it, 0: none */
    size_t cap_busy;
    /* Callers not answered yet, and the timer that watches their deadlines. */
    attr__waiter_t *waiters;
    uv_timer_t timer;
    /* Mixed versions: BatchGetCreatorTiers answered UNIMPLEMENTED. */
    int fallback;          /* batches go as BatchScoreCreators */
    int64_t reprobe_ms;    /* monotonic: when BatchGetCreatorTiers is tried again */
    int64_t reprobe_every; /* ms */
    int probing;           /* a batch tries BatchGetCreatorTiers again */
    /* Destruction waits for the fetches in flight and the timer's close. */
    int closing;
    int refs;
};

/**
 * One fetch: the ids still to send, the halves of refused batches waiting to be sent,
 * the calls in flight, the first error seen and the callers waiting for it. Freed when
 * the last call completed.
 */
struct st_attr__fetch_t {
    attr_tier_t *t;
    attr__fetch_t *next; /* in t->fetches */
    uint32_t serial;
    attr_state_t *st;
    int64_t now_ns;
    int64_t deadline_ms;   /* monotonic: no batch is sent after it */
    uint32_t *ask;         /* owned */
    size_t n_ask, next_id; /* ask[next_id..n_ask) not sent yet */
    attr__batch_t *split;
    int in_flight;
    size_t unasked; /* creators never asked (deadline, tier scoring failing) */
    char error[256];
    attr__waiter_t **w; /* the callers waiting (answered ones too, until the end) */
    size_t n_w, cap_w;
};

/**
 * One caller of attr_tier_refresh(): answered once every fetch it waits for is over, or
 * at its own deadline, or when its call ends, whichever comes first. Freed when it is
 * answered and no fetch points at it any more.
 */
struct st_attr__waiter_t {
    attr__waiter_t *prev, *next; /* in t->waiters while not answered */
    yw_call_t *parent;
    int64_t deadline_ms; /* monotonic */
    int pending;         /* fetches not over */
    int refs;            /* fetches pointing at it, + 1 until answered */
    int answered;
    char error[256];
    attr_tier_done_t done;
    void *arg;
};

/** One call: the creators it asks for, and how. */
struct st_attr__batch_t {
    attr__fetch_t *f;
    attr__batch_t *next; /* in f->split */
    int scored;          /* sent as BatchScoreCreators (the fallback) */
    int probe;           /* sent as BatchGetCreatorTiers to see whether it is back */
    int refused;         /* answered UNIMPLEMENTED once: goes as BatchScoreCreators */
    size_t n;
    uint32_t ids[];
};

static int64_t attr__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void attr__unref(attr_tier_t *t)
{
    if (--t->refs == 0) {
        free(t->busy);
        free(t);
    }
}

static void attr__on_timer_closed(uv_handle_t *h)
{
    attr__unref(h->data);
}

int attr_tier_create(yw_runtime_t *rt, const char *addr, int64_t ttl_ns, attr_tier_t **out)
{
    attr_tier_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return -ENOMEM;
    }
    int rc = uv_timer_init(yw_runtime_loop(rt), &t->timer);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->timer.data = t;
    t->refs = 1; /* the timer, until closed */
    rc = yw_channel_create(rt, addr, &t->ch);
    if (rc != 0) {
        uv_close((uv_handle_t *)&t->timer, attr__on_timer_closed);
        return rc;
    }
    t->ttl_ns = ttl_ns;
    t->batch = ATTR_TIER_BATCH;
    t->inflight = ATTR_TIER_INFLIGHT;
    t->timeout_ms = ATTR_TIER_TIMEOUT_MS;
    t->reprobe_every = ATTR_TIER_REPROBE_MS;
    t->next_serial = 1;
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

void attr_tier_set_reprobe(attr_tier_t *t, int64_t every_ms)
{
    if (every_ms > 0) {
        t->reprobe_every = every_ms;
    }
}

int attr_tier_fallback(const attr_tier_t *t)
{
    return t->fallback;
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

int attr_tier_known(const attr_state_t *st, uint32_t creator)
{
    return creator < st->cap_creator_meta && st->creator_meta[creator].tier_ns != 0;
}

static void attr__label(attr_state_t *st, uint32_t creator, int tier, int64_t now_ns)
{
    if (creator < st->cap_creator_meta) {
        st->creator_meta[creator].tier = tier;
        st->creator_meta[creator].tier_ns = now_ns;
    }
}

/*
 * TIER_UNSPECIFIED for a creator tier scoring does not know, kept for
 * min(TTL, ATTR_TIER_NOT_FOUND_TTL_NS): tier_ns (when the label was fetched) is dated
 * back by the difference, so that the TTL check of attr_tier_refresh() lets it expire.
 */
static void attr__label_not_found(attr__fetch_t *f, uint32_t creator)
{
    int64_t ttl = f->t->ttl_ns;
    int64_t keep = ttl < ATTR_TIER_NOT_FOUND_TTL_NS ? ttl : ATTR_TIER_NOT_FOUND_TTL_NS;
    int64_t at = f->now_ns - (ttl - keep);
    attr__label(f->st, creator, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, at > 0 ? at : 1);
}

static void attr__set_error(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the first error. */
static void attr__set_error(char *buf, size_t len, const char *fmt, ...)
{
    if (buf[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

#define attr__fetch_error(f, ...) attr__set_error((f)->error, sizeof(f)->error, __VA_ARGS__)

/* ---- callers ---- */

static void attr__waiter_unref(attr__waiter_t *w)
{
    if (--w->refs == 0) {
        free(w);
    }
}

/* Answers the caller: done() runs now, with `error` or the first error of its fetches. */
static void attr__answer(attr_tier_t *t, attr__waiter_t *w, const char *error)
{
    if (w->answered) {
        return;
    }
    w->answered = 1;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        t->waiters = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    if (error != NULL) {
        attr__set_error(w->error, sizeof w->error, "%s", error);
    }
    w->done(w->arg, w->error[0] != '\0' ? w->error : NULL);
    attr__waiter_unref(w);
}

static void attr__on_timer(uv_timer_t *h);

/* Arms the timer for the nearest deadline of the callers waiting (or to look at their
 * calls again within ATTR_TIER_POLL_MS: a cancelled call says so only when asked). */
static void attr__arm(attr_tier_t *t)
{
    if (t->waiters == NULL || t->closing) {
        (void)uv_timer_stop(&t->timer);
        return;
    }
    int64_t now = attr__mono_ms(), due = now + ATTR_TIER_POLL_MS;
    for (attr__waiter_t *w = t->waiters; w != NULL; w = w->next) {
        if (w->deadline_ms < due) {
            due = w->deadline_ms;
        }
    }
    (void)uv_timer_start(&t->timer, attr__on_timer, due > now ? (uint64_t)(due - now) : 0, 0);
}

/* A caller whose deadline came, or whose call ended, is answered with what the cache has;
 * the fetches it waited for go on for the others (and for the cache). */
static void attr__on_timer(uv_timer_t *h)
{
    attr_tier_t *t = h->data;
    int64_t now = attr__mono_ms();
    attr__waiter_t *w = t->waiters;
    while (w != NULL) {
        attr__waiter_t *next = w->next;
        if (now >= w->deadline_ms) {
            attr__answer(t, w, "tier scoring: no answer within the report's deadline");
        } else if (w->parent != NULL && yw_call_is_cancelled(w->parent)) {
            attr__answer(t, w, "tier scoring: the report's call ended");
        }
        w = next;
    }
    attr__arm(t);
}

/* Adds `w` to the callers `f` answers. Returns 0 or -ENOMEM. */
static int attr__join(attr__fetch_t *f, attr__waiter_t *w)
{
    if (YW_VEC_GROW(f->w, f->n_w, f->cap_w, 1, 4) != 0) {
        return -ENOMEM;
    }
    f->w[f->n_w++] = w;
    w->pending++;
    w->refs++;
    return 0;
}

/* ---- fetches ---- */

/* Drops every batch not sent yet: their creators keep their labels (or none). */
static void attr__drop_unsent(attr__fetch_t *f)
{
    while (f->split != NULL) {
        attr__batch_t *b = f->split;
        f->split = b->next;
        f->unasked += b->n;
        free(b);
    }
    f->unasked += f->n_ask - f->next_id;
    f->next_id = f->n_ask;
}

/* The fetch is over: its creators are free to be asked again, its callers are told. */
static void attr__fetch_end(attr__fetch_t *f)
{
    attr_tier_t *t = f->t;
    for (attr__fetch_t **p = &t->fetches; *p != NULL; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            break;
        }
    }
    for (size_t i = 0; i < f->n_ask; i++) {
        uint32_t c = f->ask[i];
        if (c < t->cap_busy && t->busy[c] == f->serial) {
            t->busy[c] = 0;
        }
    }
    if (f->unasked > 0) {
        yw_log(YW_LOG_DEBUG, "tier labels: %zu of %zu creators not labelled this time", f->unasked,
               f->n_ask);
    }
    for (size_t i = 0; i < f->n_w; i++) {
        attr__waiter_t *w = f->w[i];
        if (!w->answered) {
            if (f->error[0] != '\0') {
                attr__set_error(w->error, sizeof w->error, "%s", f->error);
            }
            if (--w->pending == 0) {
                attr__answer(t, w, NULL);
            }
        }
        attr__waiter_unref(w);
    }
    free(f->w);
    free(f->ask);
    free(f);
    attr__arm(t);
    attr__unref(t);
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp);

static attr__batch_t *attr__batch_new(attr__fetch_t *f, const uint32_t *ids, size_t n)
{
    attr__batch_t *b = malloc(sizeof *b + n * sizeof b->ids[0]);
    if (b != NULL) {
        b->f = f;
        b->next = NULL;
        b->scored = 0;
        b->probe = 0;
        b->refused = 0;
        b->n = n;
        memcpy(b->ids, ids, n * sizeof b->ids[0]);
    }
    return b;
}

/* The next batch to send: a refused or re-routed one first, else the next ids. */
static attr__batch_t *attr__take(attr__fetch_t *f)
{
    if (f->split != NULL) {
        attr__batch_t *b = f->split;
        f->split = b->next;
        return b;
    }
    size_t n = f->n_ask - f->next_id;
    if (n > f->t->batch) {
        n = f->t->batch;
    }
    attr__batch_t *b = attr__batch_new(f, f->ask + f->next_id, n);
    if (b != NULL) {
        f->next_id += n;
    }
    return b;
}

/* Queues `b` to be sent next. */
static void attr__requeue(attr__fetch_t *f, attr__batch_t *b)
{
    b->next = f->split;
    f->split = b;
}

/*
 * Starts the call of `b` with `timeout_ms` left: BatchGetCreatorTiers, or
 * BatchScoreCreators while tier scoring lacks it (then BatchGetCreatorTiers again once
 * every reprobe_every, one batch at a time). Returns 0, or -1 (b freed, error set).
 */
static int attr__send(attr__fetch_t *f, attr__batch_t *b, int64_t timeout_ms)
{
    attr_tier_t *t = f->t;
    char **names = malloc(b->n * sizeof *names);
    if (names == NULL) {
        attr__fetch_error(f, "tier scoring: out of memory");
        f->unasked += b->n;
        free(b);
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        /* Interned strings never move: the request may point at them. */
        names[i] = (char *)attr_intern_str(&f->st->creators, b->ids[i], NULL);
    }
    b->scored = 0;
    b->probe = 0;
    if (t->fallback) {
        /* A batch just refused is not the next probe, however late its answer came. */
        if (!b->refused && !t->probing && attr__mono_ms() >= t->reprobe_ms) {
            b->probe = 1;
            t->probing = 1;
        } else {
            b->scored = 1;
        }
    }
    int rc;
    if (b->scored) {
        Yaowei__Tier__V1__BatchScoreCreatorsRequest req;
        yaowei__tier__v1__batch_score_creators_request__init(&req);
        req.n_creator_ids = b->n;
        req.creator_ids = names;
        rc = yw_client_unary(t->ch, ATTR_TIER_FALLBACK_METHOD, &req.base,
                             &yaowei__tier__v1__batch_score_creators_response__descriptor, NULL,
                             timeout_ms, attr__on_batch, b);
    } else {
        Yaowei__Tier__V1__BatchGetCreatorTiersRequest req;
        yaowei__tier__v1__batch_get_creator_tiers_request__init(&req);
        req.n_creator_ids = b->n;
        req.creator_ids = names;
        rc = yw_client_unary(t->ch, ATTR_TIER_METHOD, &req.base,
                             &yaowei__tier__v1__batch_get_creator_tiers_response__descriptor, NULL,
                             timeout_ms, attr__on_batch, b);
    }
    free(names);
    if (rc != 0) {
        if (b->probe) {
            t->probing = 0;
        }
        attr__fetch_error(f, "tier scoring: cannot start a call: %s", strerror(-rc));
        f->unasked += b->n;
        free(b);
        return -1;
    }
    f->in_flight++;
    return 0;
}

/*
 * Sends batches until t->inflight are in flight or none is left. Once the fetch's
 * deadline has passed (or the channel closes), the rest is dropped. Completions never run
 * inside (they come later, on the loop).
 */
static void attr__pump(attr__fetch_t *f)
{
    while (f->in_flight < f->t->inflight && (f->split != NULL || f->next_id < f->n_ask)) {
        int64_t left = f->deadline_ms - attr__mono_ms();
        if (left <= 0 || f->t->closing) {
            size_t before = f->unasked;
            attr__drop_unsent(f);
            attr__fetch_error(f, "tier scoring: %zu creators not asked: %s", f->unasked - before,
                              left <= 0 ? "the time for tier labels ran out" : "shutting down");
            return;
        }
        attr__batch_t *b = attr__take(f);
        if (b == NULL) {
            attr__fetch_error(f, "tier scoring: out of memory");
            attr__drop_unsent(f);
            return;
        }
        (void)attr__send(f, b, left);
    }
}

/* Splits `b` in halves, both queued (one id it does not take refuses a whole batch). */
static void attr__halve(attr__fetch_t *f, attr__batch_t *b)
{
    size_t half = b->n / 2;
    attr__batch_t *hi = attr__batch_new(f, b->ids + half, b->n - half);
    if (hi == NULL) {
        attr__fetch_error(f, "tier scoring: out of memory");
        f->unasked += b->n;
        free(b);
        return;
    }
    b->n = half;
    attr__requeue(f, hi);
    attr__requeue(f, b);
}

/*
 * BatchScoreCreators answers NOT_FOUND for a whole batch when one id is unknown, naming
 * the unknown ones as "creator_ids[i]" (up to 20 of them): those are labelled as
 * not_found would be and the rest is asked again. When the message names none of them,
 * the batch is halved until the unknown id stands alone.
 */
static void attr__scored_not_found(attr__fetch_t *f, attr__batch_t *b, const char *detail)
{
    static const char key[] = "creator_ids[";
    size_t named = 0;
    for (const char *p = detail != NULL ? strstr(detail, key) : NULL; p != NULL;
         p = strstr(p, key)) {
        p += sizeof key - 1;
        char *end;
        unsigned long long i = strtoull(p, &end, 10);
        if (end == p || *end != ']' || i >= b->n || b->ids[i] == UINT32_MAX) {
            continue;
        }
        attr__label_not_found(f, b->ids[i]);
        b->ids[i] = UINT32_MAX; /* not asked again */
        named++;
    }
    if (named == 0) {
        if (b->n == 1) {
            attr__label_not_found(f, b->ids[0]);
            free(b);
        } else {
            attr__halve(f, b);
        }
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->ids[i] != UINT32_MAX) {
            b->ids[k++] = b->ids[i];
        }
    }
    b->n = k;
    if (k == 0) {
        free(b);
    } else {
        attr__requeue(f, b);
    }
}

/* The labels of an OK answer (of either method). */
static void attr__labels_of(attr__fetch_t *f, const attr__batch_t *b, ProtobufCMessage *resp)
{
    attr_state_t *st = f->st;
    if (b->scored) {
        const Yaowei__Tier__V1__BatchScoreCreatorsResponse *res =
            (const Yaowei__Tier__V1__BatchScoreCreatorsResponse *)resp;
        for (size_t i = 0; i < res->n_scores; i++) {
            const Yaowei__Tier__V1__TierScore *s = res->scores[i];
            if (s == NULL || s->creator_id == NULL) {
                continue;
            }
            int64_t id = attr_intern_find(&st->creators, s->creator_id, strlen(s->creator_id));
            if (id >= 0) {
                attr__label(st, (uint32_t)id, (int)s->tier, f->now_ns);
            }
        }
        return;
    }
    const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *res =
        (const Yaowei__Tier__V1__BatchGetCreatorTiersResponse *)resp;
    for (size_t i = 0; i < res->n_tiers; i++) {
        const Yaowei__Tier__V1__CreatorTier *c = res->tiers[i];
        if (c == NULL || c->creator_id == NULL) {
            continue;
        }
        int64_t id = attr_intern_find(&st->creators, c->creator_id, strlen(c->creator_id));
        if (id >= 0) {
            attr__label(st, (uint32_t)id, (int)c->tier, f->now_ns);
        }
    }
    for (size_t i = 0; i < res->n_not_found; i++) {
        const char *s = res->not_found[i];
        int64_t id = s != NULL ? attr_intern_find(&st->creators, s, strlen(s)) : -1;
        if (id >= 0) {
            attr__label_not_found(f, (uint32_t)id);
        }
    }
}

/*
 * Whether BatchGetCreatorTiers is there: UNIMPLEMENTED (an older tier scoring) turns the
 * fallback on, logged once; a probe answered otherwise turns it off. Returns 1 when `b`
 * was re-queued to go as BatchScoreCreators.
 */
static int attr__route(attr__fetch_t *f, attr__batch_t *b, grpc_status_code code)
{
    attr_tier_t *t = f->t;
    if (b->probe) {
        t->probing = 0;
    }
    if (b->scored) {
        return 0;
    }
    if (code != GRPC_STATUS_UNIMPLEMENTED) {
        if (b->probe && code == GRPC_STATUS_OK) {
            t->fallback = 0;
            yw_log(YW_LOG_INFO, "tier scoring answers BatchGetCreatorTiers again: tier labels "
                                "no longer fall back to BatchScoreCreators");
        } else if (b->probe) {
            t->reprobe_ms = attr__mono_ms() + t->reprobe_every;
        }
        return 0;
    }
    t->reprobe_ms = attr__mono_ms() + t->reprobe_every;
    b->refused = 1;
    if (!t->fallback) {
        t->fallback = 1;
        yw_log(YW_LOG_WARN,
               "tier scoring does not implement BatchGetCreatorTiers (UNIMPLEMENTED: an older "
               "version): tier labels fall back to BatchScoreCreators, which reads creator "
               "profile for every batch; BatchGetCreatorTiers is tried again every %lld s",
               (long long)(t->reprobe_every / 1000));
    }
    attr__requeue(f, b);
    return 1;
}

static void attr__on_batch(void *arg, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    attr__batch_t *b = arg;
    attr__fetch_t *f = b->f;
    f->in_flight--;
    if (f->t->closing) {
        code = GRPC_STATUS_CANCELLED; /* whatever came: nothing more is asked */
    } else if (attr__route(f, b, code)) {
        b = NULL; /* asked again, the other way */
    }
    if (b == NULL) {
        /* re-queued */
    } else if (code == GRPC_STATUS_OK) {
        attr__labels_of(f, b, resp);
        free(b);
    } else if (code == GRPC_STATUS_NOT_FOUND && b->scored) {
        attr__scored_not_found(f, b, detail);
    } else if (code == GRPC_STATUS_INVALID_ARGUMENT && b->n == 1) {
        /* Tier scoring does not take this id: unlabelled, as ids we never send. */
        attr__label(f->st, b->ids[0], YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, f->now_ns);
        free(b);
    } else if (code == GRPC_STATUS_INVALID_ARGUMENT) {
        attr__halve(f, b);
    } else {
        /* Down, slow or failing: the rest would fare no better. Ask again next time. */
        attr__fetch_error(f, "tier scoring: %s: %.200s", yw_status_name(code),
                          detail != NULL ? detail : "");
        f->unasked += b->n;
        free(b);
        attr__drop_unsent(f);
    }
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    attr__pump(f);
    if (f->in_flight == 0) {
        attr__fetch_end(f);
    }
}

/* Makes busy[] cover creators [0, n). Returns 0 or -ENOMEM. */
static int attr__busy_room(attr_tier_t *t, size_t n)
{
    size_t old = t->cap_busy;
    if (YW_VEC_RESERVE(t->busy, t->cap_busy, n, 1024) != 0) {
        return -ENOMEM;
    }
    if (t->cap_busy > old) { /* (busy may still be NULL: nothing to cover) */
        memset(t->busy + old, 0, (t->cap_busy - old) * sizeof *t->busy);
    }
    return 0;
}

static attr__fetch_t *attr__fetch_of(attr_tier_t *t, uint32_t serial)
{
    for (attr__fetch_t *f = t->fetches; f != NULL; f = f->next) {
        if (f->serial == serial) {
            return f;
        }
    }
    return NULL;
}

/* Frees a fetch no call was started for (nobody waits on it yet). */
static void attr__fetch_abandon(attr__fetch_t *f)
{
    attr_tier_t *t = f->t;
    t->fetches = f->next; /* it is the newest */
    for (size_t i = 0; i < f->n_ask; i++) {
        t->busy[f->ask[i]] = 0;
    }
    free(f->w);
    free(f->ask);
    free(f);
    t->refs--; /* never the last: not closing, so the timer holds one */
}

/*
 * Starts a fetch of ask[0..n) (owned from here on), its deadline t->timeout_ms from now:
 * not the caller's, since others may join it. Returns the fetch (calls started), or NULL
 * with `why` set (ask freed).
 */
static attr__fetch_t *attr__fetch_start(attr_tier_t *t, attr_state_t *st, uint32_t *ask, size_t n,
                                        int64_t now_ns, char *why, size_t why_len)
{
    attr__fetch_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        snprintf(why, why_len, "tier scoring: out of memory");
        free(ask);
        return NULL;
    }
    f->t = t;
    f->serial = t->next_serial++;
    if (t->next_serial == 0) {
        t->next_serial = 1;
    }
    f->st = st;
    f->now_ns = now_ns;
    f->deadline_ms = attr__mono_ms() + t->timeout_ms;
    f->ask = ask;
    f->n_ask = n;
    for (size_t i = 0; i < n; i++) {
        t->busy[ask[i]] = f->serial;
    }
    f->next = t->fetches;
    t->fetches = f;
    t->refs++;
    attr__pump(f);
    if (f->in_flight == 0) {
        snprintf(why, why_len, "%s", f->error[0] != '\0' ? f->error : "tier scoring: no call");
        attr__fetch_abandon(f);
        return NULL;
    }
    return f;
}

int attr_tier_refresh(attr_tier_t *t, attr_state_t *st, const uint32_t *creators, size_t n,
                      int64_t now_ns, yw_call_t *parent, attr_tier_done_t done, void *arg)
{
    if (t->closing) {
        return -ESHUTDOWN;
    }
    if (attr__busy_room(t, st->cap_creator_meta) != 0) {
        return -ENOMEM;
    }
    uint32_t *ask = malloc((n ? n : 1) * sizeof *ask);
    /* The fetches in flight that ask for some of these creators: joined, not repeated. */
    enum { JOIN_MAX = 16 };
    attr__fetch_t *join[JOIN_MAX];
    size_t n_join = 0;
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
        if (t->busy[c] != 0) {
            /* Asked for by a fetch in flight: wait for that one (ids of one fetch are
             * mostly together: the last one found is tried first). */
            attr__fetch_t *f = n_join > 0 && join[n_join - 1]->serial == t->busy[c]
                                   ? join[n_join - 1]
                                   : attr__fetch_of(t, t->busy[c]);
            size_t j = 0;
            while (f != NULL && j < n_join && join[j] != f) {
                j++;
            }
            if (f != NULL && j < n_join) {
                continue;
            }
            if (f != NULL && n_join < JOIN_MAX) {
                join[n_join++] = f;
                continue;
            }
            /* More fetches than JOIN_MAX to wait for: asked again rather than not waited
             * for. */
        }
        size_t len;
        const char *s = attr_intern_str(&st->creators, c, &len);
        if (!attr_tier_id_ok(s, len)) {
            attr__label(st, c, YAOWEI__TIER__V1__TIER__TIER_UNSPECIFIED, now_ns);
            continue;
        }
        ask[k++] = c;
    }
    if (k == 0 && n_join == 0) {
        free(ask);
        return 0;
    }
    attr__waiter_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        free(ask);
        return -ENOMEM;
    }
    w->refs = 1;
    w->parent = parent;
    w->done = done;
    w->arg = arg;
    int64_t now_ms = attr__mono_ms();
    /* The fetches end by their own deadline; this one is a safety net. */
    w->deadline_ms = now_ms + t->timeout_ms + ATTR_TIER_POLL_MS;
    int64_t left = parent != NULL ? yw_call_remaining_ms(parent) : INT64_MAX;
    if (left != INT64_MAX && now_ms + left - ATTR_TIER_REPLY_MARGIN_MS < w->deadline_ms) {
        w->deadline_ms = now_ms + left - ATTR_TIER_REPLY_MARGIN_MS;
    }
    int oom = 0;
    for (size_t j = 0; j < n_join; j++) {
        oom |= attr__join(join[j], w) != 0;
    }
    if (k > 0) {
        char why[256];
        attr__fetch_t *f = attr__fetch_start(t, st, ask, k, now_ns, why, sizeof why);
        if (f == NULL) {
            attr__set_error(w->error, sizeof w->error, "%s", why);
        } else {
            oom |= attr__join(f, w) != 0;
        }
    } else {
        free(ask);
    }
    if (oom) {
        attr__set_error(w->error, sizeof w->error, "tier scoring: out of memory");
    }
    if (w->pending == 0) {
        /* Not one call could start nor be joined: tell the caller now, done is not
         * called. */
        yw_log(YW_LOG_WARN, "%s", w->error[0] != '\0' ? w->error : "tier scoring: no call");
        free(w);
        return -EIO;
    }
    w->next = t->waiters;
    if (t->waiters != NULL) {
        t->waiters->prev = w;
    }
    t->waiters = w;
    attr__arm(t);
    return 1;
}

void attr_tier_destroy(attr_tier_t *t)
{
    if (t == NULL) {
        return;
    }
    t->closing = 1;
    /* Every caller is answered now (their calls are still theirs to finish); none comes
     * after (attr_tier_refresh() refuses while closing). */
    for (attr__waiter_t *w = t->waiters, *next; w != NULL; w = next) {
        next = w->next;
        attr__answer(t, w, "tier scoring: shutting down");
    }
    (void)uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, attr__on_timer_closed);
    /* Calls in flight complete with CANCELLED; the last fetch's end frees t. */
    yw_channel_destroy(t->ch);
}
