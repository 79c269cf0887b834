/* tier_peer.c — a channel to creator profile, renewed when it keeps failing. See tier_peer.h. */
#include "services/tier_scoring/tier_peer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* One channel and the calls started on it. */
typedef struct st_tier_chan_t {
    yw_channel_t *ch; /* NULL once destroyed (its calls then complete CANCELLED) */
    unsigned calls;   /* in flight */
    uint64_t born_ms; /* uv_now() at creation */
    struct st_tier_chan_t *next;
} tier_chan_t;

struct st_tier_peer_t {
    yw_runtime_t *rt;
    uv_loop_t *loop;
    char *target;
    tier_chan_t *chans; /* the current one first, then those still draining */
    int closing;
    unsigned renewals;
};

/* A call in flight: the caller's callback and the channel it went out on. */
typedef struct st_tier_peer_call_t {
    tier_peer_t *peer;
    tier_chan_t *chan;
    yw_unary_cb_t cb;
    void *arg;
} tier_peer_call_t;

/* Opens a channel and makes it current. Returns 0 or a negative errno. */
static int chan_open(tier_peer_t *p)
{
    tier_chan_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    int rc = yw_channel_create(p->rt, p->target, &c->ch);
    if (rc != 0) {
        free(c);
        return rc;
    }
    uv_update_time(p->loop);
    c->born_ms = uv_now(p->loop);
    c->next = p->chans;
    p->chans = c;
    return 0;
}

/*
 * Frees channel `c` if it is not current (or the peer is closing) and nothing runs on
 * it any more; frees the peer with its last channel once it is closing.
 */
static void chan_maybe_free(tier_peer_t *p, tier_chan_t *c)
{
    if ((c == p->chans && !p->closing) || c->calls > 0) {
        return;
    }
    tier_chan_t **link = &p->chans;
    while (*link != c) {
        link = &(*link)->next;
    }
    *link = c->next;
    if (c->ch != NULL) {
        yw_channel_destroy(c->ch);
    }
    free(c);
    if (p->closing && p->chans == NULL) {
        free(p->target);
        free(p);
    }
}

static void on_done(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    tier_peer_call_t *pc = arg;
    tier_peer_t *p = pc->peer;
    tier_chan_t *c = pc->chan;
    c->calls--;
    pc->cb(pc->arg, code, detail, resp);
    free(pc);
    if (code == GRPC_STATUS_UNAVAILABLE && c == p->chans && !p->closing) {
        uv_update_time(p->loop);
        if (uv_now(p->loop) - c->born_ms >= TIER_PEER_RENEW_MS && chan_open(p) == 0) {
            p->renewals++;
            yw_log(YW_LOG_DEBUG, "creator profile channel renewed (%u so far)", p->renewals);
        }
    }
    chan_maybe_free(p, c);
}

int tier_peer_create(yw_runtime_t *rt, uv_loop_t *loop, const char *target, tier_peer_t **out)
{
    tier_peer_t *p = calloc(1, sizeof *p);
    if (p == NULL || (p->target = strdup(target)) == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->rt = rt;
    p->loop = loop;
    int rc = chan_open(p);
    if (rc != 0) {
        free(p->target);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int tier_peer_unary(tier_peer_t *p, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, yw_call_t *parent,
                    int64_t timeout_ms, yw_unary_cb_t cb, void *arg)
{
    if (p->closing) {
        return -ESHUTDOWN;
    }
    tier_chan_t *c = p->chans;
    tier_peer_call_t *pc = malloc(sizeof *pc);
    if (pc == NULL) {
        return -ENOMEM;
    }
    *pc = (tier_peer_call_t){.peer = p, .chan = c, .cb = cb, .arg = arg};
    int rc = yw_client_unary(c->ch, method, req, resp_desc, parent, timeout_ms, on_done, pc);
    if (rc != 0) {
        free(pc);
        return rc;
    }
    c->calls++;
    return 0;
}

void tier_peer_destroy(tier_peer_t *p)
{
    p->closing = 1;
    /* Destroying a channel cancels its calls; each channel goes with its last call. */
    for (tier_chan_t *c = p->chans; c != NULL; c = c->next) {
        yw_channel_destroy(c->ch);
        c->ch = NULL;
    }
    tier_chan_t *c = p->chans;
    while (c != NULL) {
        tier_chan_t *next = c->next;
        chan_maybe_free(p, c); /* may free p with the last channel */
        c = next;
    }
}
