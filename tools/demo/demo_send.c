/* demo_send.c — batches and calls to the services from the demo. See demo_send.h. */
#include "tools/demo/demo_send.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/demo/demo_progress.h"

#define ARENA_CHUNK (1u << 20)
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

uint64_t demo_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* ---- channels ---- */

int demo_chans_open(yw_runtime_t *rt, const char *addrs, demo_chans_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if ((c->buf = strdup(addrs)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    for (char *a = c->buf, *comma; a != NULL && rc == 0; a = comma) {
        if ((comma = strchr(a, ',')) != NULL) {
            *comma++ = '\0';
        }
        if (a[0] == '\0') {
            snprintf(err, errlen, "\"%s\": an empty address", addrs);
            rc = -EINVAL;
        } else if (c->n == DEMO_CHANS_MAX) {
            snprintf(err, errlen, "\"%s\": more than %d addresses", addrs, DEMO_CHANS_MAX);
            rc = -EINVAL;
        }
        for (int i = 0; i < c->n && rc == 0; i++) {
            if (strcmp(c->addr[i], a) == 0) {
                snprintf(err, errlen, "\"%s\": %s is given twice", addrs, a);
                rc = -EINVAL;
            }
        }
        if (rc == 0 && (rc = yw_channel_create(rt, a, &c->ch[c->n])) != 0) {
            snprintf(err, errlen, "%s: cannot open a channel: %s", a, strerror(-rc));
        }
        if (rc == 0) {
            c->addr[c->n++] = a;
        }
    }
    if (rc != 0) {
        demo_chans_close(c);
    }
    return rc;
}

void demo_chans_close(demo_chans_t *c)
{
    for (int i = 0; i < c->n; i++) {
        yw_channel_destroy(c->ch[i]);
    }
    free(c->buf);
    memset(c, 0, sizeof *c);
}

yw_channel_t *demo_chans_next(demo_chans_t *c)
{
    unsigned i = c->next++ % (unsigned)c->n;
    c->calls[i]++;
    return c->ch[i];
}

demo_chans_t demo_chans_one(const demo_chans_t *c, int i)
{
    demo_chans_t one = {.ch = {c->ch[i]}, .addr = {c->addr[i]}, .n = 1};
    return one;
}

/* ---- arena ---- */

struct st_demo_arena_chunk_t {
    demo_arena_chunk_t *next;
    size_t cap, used;
    _Alignas(16) char data[];
};

void *demo_arena_alloc(demo_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    demo_arena_chunk_t *c = a->cur;
    while (c != NULL && c->cap - c->used < n) {
        /* Later chunks are free since the last reset. */
        c = c->next;
        if (c != NULL) {
            c->used = 0;
        }
    }
    if (c == NULL) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (c == NULL) {
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = NULL;
        if (a->cur == NULL) {
            a->first = c;
        } else {
            /* Appended after the last chunk, so that none is lost. */
            demo_arena_chunk_t *last = a->cur;
            while (last->next != NULL) {
                last = last->next;
            }
            last->next = c;
        }
    }
    a->cur = c;
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *demo_arena_printf(demo_arena_t *a, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *s = demo_arena_alloc(a, (size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    if ((size_t)n < sizeof small) {
        memcpy(s, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

void demo_arena_reset(demo_arena_t *a)
{
    a->cur = a->first;
    if (a->cur != NULL) {
        a->cur->used = 0;
    }
}

void demo_arena_free(demo_arena_t *a)
{
    demo_arena_chunk_t *c = a->first;
    while (c != NULL) {
        demo_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->first = a->cur = NULL;
}

/* ---- pipeline ---- */

typedef struct st_pipe_t pipe_t;

typedef struct {
    pipe_t *pp;
    demo_arena_t arena;
    ProtobufCMessage *req;
    size_t n;
    int attempts;
    uv_timer_t timer;
} slot_t;

struct st_pipe_t {
    yw_runtime_t *rt;
    demo_chans_t *chans;
    const demo_pipe_def_t *def;
    slot_t *slots;
    int n_slots;
    int timers;  /* initialised timers (to close) */
    int live;    /* slots with a call in flight or a resend pending */
    int ended;   /* fill said the stream is over */
    int stopped; /* a failure: send nothing more */
    int closing; /* timers being closed: the end */
    int rc;
    char *err;
    size_t errlen;
    demo_progress_t prog;
    demo_pipe_stats_t *stats;
};

static void pipe_stop(pipe_t *pp, int rc)
{
    if (!pp->stopped) {
        pp->stopped = 1;
        pp->rc = rc;
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    slot_t *s = h->data;
    pipe_t *pp = s->pp;
    if (--pp->timers == 0) {
        yw_runtime_stop(pp->rt);
    }
}

static void maybe_finish(pipe_t *pp)
{
    if (pp->closing || pp->live > 0 || !(pp->ended || pp->stopped)) {
        return;
    }
    pp->closing = 1;
    if (pp->timers == 0) {
        yw_runtime_stop(pp->rt);
        return;
    }
    for (int i = 0; i < pp->n_slots; i++) {
        uv_close((uv_handle_t *)&pp->slots[i].timer, on_timer_closed);
    }
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp);

static void send_slot(slot_t *s)
{
    pipe_t *pp = s->pp;
    int rc = yw_client_unary(demo_chans_next(pp->chans), pp->def->method, s->req,
                             pp->def->resp_desc, NULL, pp->def->timeout_ms, on_reply, s);
    if (rc != 0) {
        snprintf(pp->err, pp->errlen, "%s: %s: cannot start a call: %s", pp->def->label,
                 pp->def->method, strerror(-rc));
        pipe_stop(pp, rc);
        maybe_finish(pp);
        return;
    }
    pp->live++;
}

static void next_batch(slot_t *s)
{
    pipe_t *pp = s->pp;
    if (pp->stopped || pp->ended) {
        maybe_finish(pp);
        return;
    }
    demo_arena_reset(&s->arena);
    s->req = NULL;
    s->n = 0;
    int rc = pp->def->fill(pp->def->src, &s->arena, &s->req, &s->n, pp->err, pp->errlen);
    if (rc != 0) {
        pipe_stop(pp, rc);
    } else if (s->req == NULL) {
        pp->ended = 1;
    } else {
        s->attempts = 1;
        send_slot(s);
        return;
    }
    maybe_finish(pp);
}

static void on_timer(uv_timer_t *t)
{
    slot_t *s = t->data;
    pipe_t *pp = s->pp;
    pp->live--;
    if (pp->stopped) {
        maybe_finish(pp);
        return;
    }
    send_slot(s);
}

static void on_reply(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    slot_t *s = arg;
    pipe_t *pp = s->pp;
    const demo_pipe_def_t *def = pp->def;
    pp->live--;
    pp->stats->calls++;
    if (code == GRPC_STATUS_OK) {
        int rc = def->done ? def->done(def->src, s->req, resp, s->n, pp->err, pp->errlen) : 0;
        protobuf_c_message_free_unpacked(resp, NULL);
        if (rc != 0) {
            pipe_stop(pp, rc);
            maybe_finish(pp);
            return;
        }
        pp->stats->events += s->n;
        demo_progress_update(&pp->prog, pp->stats->events, demo_now_ns());
        next_batch(s);
        return;
    }
    if (code == GRPC_STATUS_UNAVAILABLE && s->attempts < DEMO_SEND_ATTEMPTS && !pp->stopped) {
        uint64_t backoff = BACKOFF_FIRST_MS;
        for (int i = 1; i < s->attempts && backoff < BACKOFF_MAX_MS; i++) {
            backoff *= 2;
        }
        s->attempts++;
        pp->stats->retries++;
        int rc = uv_timer_start(&s->timer, on_timer,
                                backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS, 0);
        if (rc == 0) {
            pp->live++;
            return;
        }
        snprintf(pp->err, pp->errlen, "%s: cannot start a timer: %s", def->label, uv_strerror(rc));
        pipe_stop(pp, -EIO);
        maybe_finish(pp);
        return;
    }
    if (def->failed != NULL && !pp->stopped) {
        int rc = def->failed(def->src, code, detail, s->n, pp->err, pp->errlen);
        if (rc == 0) {
            pp->stats->events += s->n;
            demo_progress_update(&pp->prog, pp->stats->events, demo_now_ns());
            next_batch(s);
            return;
        }
        pipe_stop(pp, rc);
    } else if (!pp->stopped) {
        snprintf(pp->err, pp->errlen, "%s: %s: %s: %s (after %d attempt%s)", def->label,
                 def->method, yw_status_name(code), detail, s->attempts,
                 s->attempts == 1 ? "" : "s");
        pipe_stop(pp, -EIO);
    }
    maybe_finish(pp);
}

int demo_pipe_run(yw_runtime_t *rt, demo_chans_t *chans, const demo_pipe_def_t *def,
                  int progress_mode, demo_pipe_stats_t *stats, char *err, size_t errlen)
{
    memset(stats, 0, sizeof *stats);
    pipe_t pp = {
        .rt = rt, .chans = chans, .def = def, .err = err, .errlen = errlen, .stats = stats};
    if (def->inflight < 1) {
        snprintf(err, errlen, "%s: inflight must be >= 1", def->label);
        return -EINVAL;
    }
    pp.slots = calloc((size_t)def->inflight, sizeof *pp.slots);
    if (pp.slots == NULL) {
        snprintf(err, errlen, "%s: out of memory", def->label);
        return -ENOMEM;
    }
    pp.n_slots = def->inflight;
    uint64_t t0 = demo_now_ns();
    demo_progress_start(&pp.prog, stderr, progress_mode, def->label,
                        def->unit ? def->unit : "events", def->total, t0);
    for (int i = 0; i < pp.n_slots; i++) {
        slot_t *s = &pp.slots[i];
        s->pp = &pp;
        int rc = uv_timer_init(yw_runtime_loop(rt), &s->timer);
        if (rc != 0) {
            snprintf(err, errlen, "%s: cannot create a timer: %s", def->label, uv_strerror(rc));
            pipe_stop(&pp, -EIO);
            pp.n_slots = i;
            break;
        }
        s->timer.data = s;
        pp.timers++;
    }
    for (int i = 0; i < pp.n_slots && !pp.stopped && !pp.ended; i++) {
        next_batch(&pp.slots[i]);
    }
    maybe_finish(&pp);
    yw_runtime_run(rt);
    uint64_t t1 = demo_now_ns();
    stats->seconds = (double)(t1 - t0) / 1e9;
    demo_progress_update(&pp.prog, stats->events, t1);
    demo_progress_finish(&pp.prog, t1);
    for (int i = 0; i < def->inflight; i++) {
        demo_arena_free(&pp.slots[i].arena);
    }
    free(pp.slots);
    return pp.rc;
}

/* ---- one call ---- */

typedef struct {
    yw_runtime_t *rt;
    grpc_status_code code;
    ProtobufCMessage *resp;
    char detail[512];
} sync_call_t;

static void on_sync_reply(void *arg, grpc_status_code code, const char *detail,
                          ProtobufCMessage *resp)
{
    sync_call_t *c = arg;
    c->code = code;
    c->resp = resp;
    snprintf(c->detail, sizeof c->detail, "%s", detail);
    yw_runtime_stop(c->rt);
}

grpc_status_code demo_call(yw_runtime_t *rt, demo_chans_t *chans, const char *method,
                           const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                           int64_t timeout_ms, int attempts, ProtobufCMessage **resp, char *err,
                           size_t errlen)
{
    *resp = NULL;
    long backoff_ms = BACKOFF_FIRST_MS;
    for (int attempt = 1;; attempt++) {
        sync_call_t c = {.rt = rt, .code = GRPC_STATUS_UNKNOWN};
        int rc = yw_client_unary(demo_chans_next(chans), method, req, resp_desc, NULL, timeout_ms,
                                 on_sync_reply, &c);
        if (rc != 0) {
            snprintf(err, errlen, "%s: cannot start a call: %s", method, strerror(-rc));
            return GRPC_STATUS_INTERNAL;
        }
        yw_runtime_run(rt);
        if (c.code == GRPC_STATUS_OK) {
            *resp = c.resp;
            return GRPC_STATUS_OK;
        }
        snprintf(err, errlen, "%s: %s", yw_status_name(c.code), c.detail);
        if (c.code != GRPC_STATUS_UNAVAILABLE || attempt >= attempts) {
            return c.code;
        }
        /* Nothing else is in flight: sleeping on the loop thread holds nobody up. */
        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        backoff_ms = backoff_ms * 2 < BACKOFF_MAX_MS ? backoff_ms * 2 : BACKOFF_MAX_MS;
    }
}
