/*
 * health.c — grpc.health.v1.Health: a registry of name → SERVING / NOT_SERVING, Check
 * (unary) and Watch (server streaming).
 *
 * Each Watch is a node in a doubly linked list, owned by its call (yw_call_set_data) and
 * freed in on_done, which also unlinks it. A watch gets the current status at once and
 * then one message per change of that status. It ends when the client cancels (noticed
 * through on_end, a failed send, or yw_health_reap()) or at shutdown. Everything runs
 * on the loop thread.
 *
 * A finished watch is never touched again by this file: the runtime may free its call
 * (running on_done, which frees the node) as soon as it is finished, so loops take the
 * next node before they finish the current one.
 */
#include "common/health.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/vec.h"
#include "grpc/health/v1/health.pb-c.h"

#define YW_HEALTH_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define YW_HEALTH_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define YW_HEALTH_SERVICE_UNKNOWN                                                                  \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus yw_health_status_t;

typedef struct st_yw_health_entry_t {
    /** Owned (malloc). */
    char *name;
    yw_health_status_t status;
} yw_health_entry_t;

typedef struct st_yw_health_watch_t {
    struct st_yw_health_watch_t *prev, *next;
    /** NULL once the registry is destroyed (the node is then only freed in on_done). */
    yw_health_t *h;
    yw_call_t *call;
    /** The last status sent; -1 before the first. */
    int last;
    /** Set right before the call is finished; nothing is sent after. */
    int finished;
    /** The watched name; stored after the node, in the same allocation. */
    char service[];
} yw_health_watch_t;

struct st_yw_health_t {
    yw_health_entry_t *entries;
    size_t n_entries, cap_entries;
    /** Head of the list of live watches. */
    yw_health_watch_t *watches;
    int shut_down;
    yw_service_t service;
};

static yw_health_entry_t *find_entry(const yw_health_t *h, const char *name)
{
    for (size_t i = 0; i < h->n_entries; i++) {
        if (strcmp(h->entries[i].name, name) == 0) {
            return &h->entries[i];
        }
    }
    return NULL;
}

/* The status a Watch of `name` reports: SERVICE_UNKNOWN for a name never set. */
static yw_health_status_t watch_status(const yw_health_t *h, const char *name)
{
    const yw_health_entry_t *e = find_entry(h, name);
    return e != NULL ? e->status : YW_HEALTH_SERVICE_UNKNOWN;
}

/* Finishes the watch's call. `w` may be freed on return: do not touch it again. */
static void watch_finish(yw_health_watch_t *w, grpc_status_code code, const char *msg)
{
    if (w->finished) {
        return;
    }
    w->finished = 1;
    /* -EALREADY if the runtime finished it already: then there is nothing left to do. */
    (void)yw_call_fail(w->call, code, msg);
}

/*
 * Sends `status` unless it is what the watch last got. A call that has ended is
 * finished CANCELLED (the runtime then frees it). Returns 0, or -1 when the watch was
 * finished (and may be freed).
 */
static int watch_send(yw_health_watch_t *w, yw_health_status_t status)
{
    if (w->finished) {
        return -1;
    }
    if (w->last == (int)status) {
        return 0;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status;
    int rc = yw_call_send(w->call, &resp.base);
    if (rc == -ECANCELED) {
        watch_finish(w, GRPC_STATUS_CANCELLED, "cancelled");
        return -1;
    }
    if (rc != 0) {
        watch_finish(w, GRPC_STATUS_INTERNAL, "health: sending the status failed");
        return -1;
    }
    w->last = (int)status;
    return 0;
}

/* ---- handlers ---- */

/* Check: the status of a known name; NOT_FOUND for an unknown one. */
static void health_check(yw_call_t *call, const ProtobufCMessage *msg)
{
    const yw_health_t *h = yw_call_service_ctx(call);
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    const char *name = req->service != NULL ? req->service : "";

    const yw_health_entry_t *e = find_entry(h, name);
    if (e == NULL) {
        (void)yw_call_finish(call, GRPC_STATUS_NOT_FOUND, "service \"%s\" is unknown", name);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = e->status;
    /* On failure the runtime has finished the call with INTERNAL already. */
    (void)yw_call_reply(call, &resp.base);
}

/* Watch: the current status now, then every change, until cancelled or shutdown. */
static void health_watch(yw_call_t *call, const ProtobufCMessage *msg)
{
    yw_health_t *h = yw_call_service_ctx(call);
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    const char *name = req->service != NULL ? req->service : "";

    size_t len = strlen(name);
    yw_health_watch_t *w = calloc(1, sizeof *w + len + 1);
    if (w == NULL) {
        (void)yw_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                             "health: out of memory for a watch of \"%s\"", name);
        return;
    }
    memcpy(w->service, name, len + 1);
    w->h = h;
    w->call = call;
    w->last = -1;
    w->next = h->watches;
    if (h->watches != NULL) {
        h->watches->prev = w;
    }
    h->watches = w;
    yw_call_set_data(call, w);

    if (watch_send(w, watch_status(h, w->service)) != 0) {
        return;
    }
    if (h->shut_down) {
        watch_finish(w, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
    }
}

/* Watch, cancelled by the client (or its deadline) before we finished it. */
static void health_watch_end(yw_call_t *call)
{
    yw_health_watch_t *w = yw_call_data(call);
    if (w == NULL) {
        (void)yw_call_fail(call, GRPC_STATUS_CANCELLED, "cancelled");
        return;
    }
    watch_finish(w, GRPC_STATUS_CANCELLED, "cancelled");
}

/* Watch: the call is about to be freed; unlink and free its node. */
static void health_watch_done(yw_call_t *call)
{
    yw_health_watch_t *w = yw_call_data(call);
    if (w == NULL) {
        return;
    }
    yw_call_set_data(call, NULL);
    if (w->h != NULL) {
        if (w->prev != NULL) {
            w->prev->next = w->next;
        } else {
            w->h->watches = w->next;
        }
        if (w->next != NULL) {
            w->next->prev = w->prev;
        }
    }
    free(w);
}

static const yw_method_t yw_health_methods[] = {
    YW_METHOD(UNARY, "grpc.health.v1.Health", "Check", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = health_check),
    YW_METHOD(SERVER_STREAMING, "grpc.health.v1.Health", "Watch",
              grpc__health__v1__health_check_request, grpc__health__v1__health_check_response,
              .on_message = health_watch, .on_end = health_watch_end, .on_done = health_watch_done),
};

/* ---- public API ---- */

int yw_health_create(yw_health_t **out)
{
    *out = NULL;
    yw_health_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return -ENOMEM;
    }
    h->service = (yw_service_t){
        .name = "grpc.health.v1.Health",
        .methods = yw_health_methods,
        .n_methods = sizeof yw_health_methods / sizeof yw_health_methods[0],
        .ctx = h,
        .no_auth = 1, /* probes carry no credentials */
    };
    *out = h;
    return 0;
}

const yw_service_t *yw_health_service(yw_health_t *h)
{
    return &h->service;
}

void yw_health_set(yw_health_t *h, const char *service, int serving)
{
    const char *name = service != NULL ? service : "";
    /* Shutdown is one way: nothing goes back to SERVING after it. */
    yw_health_status_t status =
        serving && !h->shut_down ? YW_HEALTH_SERVING : YW_HEALTH_NOT_SERVING;

    yw_health_entry_t *e = find_entry(h, name);
    if (e == NULL) {
        if (YW_VEC_GROW(h->entries, h->n_entries, h->cap_entries, 1, 8) != 0) {
            return; /* The name stays unknown: Check says NOT_FOUND, never SERVING. */
        }
        char *copy = strdup(name);
        if (copy == NULL) {
            return;
        }
        e = &h->entries[h->n_entries++];
        e->name = copy;
    } else if (e->status == status) {
        return;
    }
    e->status = status;

    for (yw_health_watch_t *w = h->watches, *next; w != NULL; w = next) {
        next = w->next;
        if (!w->finished && strcmp(w->service, name) == 0) {
            (void)watch_send(w, status); /* A failed send finished the watch: fine. */
        }
    }
}

void yw_health_reap(yw_health_t *h)
{
    for (yw_health_watch_t *w = h->watches, *next; w != NULL; w = next) {
        next = w->next;
        if (!w->finished && yw_call_is_cancelled(w->call)) {
            watch_finish(w, GRPC_STATUS_CANCELLED, "cancelled");
        }
    }
}

void yw_health_shutdown(yw_health_t *h)
{
    h->shut_down = 1;
    for (size_t i = 0; i < h->n_entries; i++) {
        h->entries[i].status = YW_HEALTH_NOT_SERVING;
    }
    for (yw_health_watch_t *w = h->watches, *next; w != NULL; w = next) {
        next = w->next;
        if (w->finished) {
            continue;
        }
        if (watch_send(w, watch_status(h, w->service)) == 0) {
            watch_finish(w, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
        }
    }
}

void yw_health_destroy(yw_health_t *h)
{
    if (h == NULL) {
        return;
    }
    /* Calls should all be gone; any left keep their node, freed by their on_done. */
    for (yw_health_watch_t *w = h->watches; w != NULL; w = w->next) {
        w->h = NULL;
    }
    for (size_t i = 0; i < h->n_entries; i++) {
        free(h->entries[i].name);
    }
    free(h->entries);
    free(h);
}
