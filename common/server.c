/*
 * server.c — the gRPC server runtime: method tables on gRPC C core, on the loop thread.
 * See server.h for the contract and DESIGN.md for the runtime model. This file creates,
 * starts and stops a server and registers its methods (with their auth rules); call.c
 * runs each call, server_metrics.c counts them.
 *
 * Every method of every service is registered with gRPC C core and keeps
 * `calls_per_method` calls requested; a new call is requested after each arrival
 * (call.c). What gRPC may buffer in all is bounded by a resource quota
 * (grpc_memory_bytes).
 */
#include "common/server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>

#include "common/auth.h"
#include "common/log.h"

/* ---- status names ---- */

const char *yw_status_name(grpc_status_code code)
{
    /* clang-format off */
    static const char *const names[] = {
        "OK",           "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",       "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    /* clang-format on */
    if ((int)code >= 0 && (size_t)code < sizeof names / sizeof names[0]) {
        return names[code];
    }
    return "UNKNOWN";
}

/* Resolves each method's roles once, so that a call costs one AND; a no_auth service
 * (health) stays open. */
static int yw__auth_init(yw_server_t *srv, char *err, size_t errlen)
{
    const yw_auth_t *auth = srv->cfg.auth;
    if (auth == NULL) {
        for (size_t i = 0; i < srv->n_regs; i++) {
            srv->regs[i].auth_open = 1;
        }
        return 0;
    }
    const char **paths = calloc(srv->n_regs ? srv->n_regs : 1, sizeof *paths);
    if (paths == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < srv->n_regs; i++) {
        paths[i] = srv->regs[i].method->path;
    }
    int rc = yw_auth_check_rules(auth, paths, srv->n_regs, err, errlen);
    free(paths);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < srv->n_regs; i++) {
        srv->regs[i].auth_open = srv->regs[i].svc->no_auth;
        srv->regs[i].auth_roles = yw_auth_method_roles(auth, srv->regs[i].method->path);
    }
    return 0;
}

/* ---- server ---- */

int yw_server_create(yw_runtime_t *rt, const yw_server_config_t *cfg, yw_server_t **out, char *err,
                     size_t errlen)
{
    yw_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    srv->rt = rt;
    srv->cfg = *cfg;
    if (srv->cfg.max_receive_bytes <= 0) {
        srv->cfg.max_receive_bytes = 4 << 20;
    }
    if (srv->cfg.max_send_bytes <= 0) {
        srv->cfg.max_send_bytes = 16 << 20;
    }
    if (srv->cfg.grace_ms <= 0) {
        srv->cfg.grace_ms = 5000;
    }
    if (srv->cfg.calls_per_method <= 0) {
        srv->cfg.calls_per_method = 32;
    }
    if (srv->cfg.grpc_memory_bytes == 0) {
        srv->cfg.grpc_memory_bytes = YW_SERVER_GRPC_MEMORY_DEFAULT;
    }
    srv->listen = strdup(cfg->listen ? cfg->listen : "127.0.0.1:0");
    if (srv->listen == NULL) {
        snprintf(err, errlen, "out of memory");
        free(srv);
        return -ENOMEM;
    }
    srv->cfg.listen = srv->listen;
    *out = srv;
    return 0;
}

int yw_server_add_service(yw_server_t *srv, const yw_service_t *svc)
{
    if (srv->started || srv->n_services == YW__MAX_SERVICES) {
        return -EINVAL;
    }
    srv->services[srv->n_services++] = svc;
    return 0;
}

yw_runtime_t *yw_server_runtime(yw_server_t *srv)
{
    return srv->rt;
}

int yw_server_port(const yw_server_t *srv)
{
    return srv->port;
}

size_t yw_server_service_names(const yw_server_t *srv, const char **names, size_t max)
{
    for (size_t i = 0; i < srv->n_services && i < max; i++) {
        names[i] = srv->services[i]->name;
    }
    return srv->n_services;
}

int yw_server_start(yw_server_t *srv, char *err, size_t errlen)
{
    grpc_arg args[7];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = srv->cfg.max_receive_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = srv->cfg.max_send_bytes;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = srv->cfg.reuse_port ? 1 : 0;
    size_t nargs = 3;
    if (srv->cfg.max_streams_per_connection > 0) {
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
        args[nargs].value.integer = srv->cfg.max_streams_per_connection;
        nargs++;
    }
    if (srv->cfg.stream_window_bytes > 0) {
        /* Fixed stream windows: a paused stream holds at most one window in gRPC. */
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_BDP_PROBE;
        args[nargs].value.integer = 0;
        nargs++;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
        args[nargs].value.integer = srv->cfg.stream_window_bytes;
        nargs++;
    }
    /* The transport's memory budget: gRPC resets the stream that takes it over. */
    srv->quota = grpc_resource_quota_create("yw_server");
    if (srv->quota == NULL) {
        snprintf(err, errlen, "grpc_resource_quota_create failed");
        return -ENOMEM;
    }
    grpc_resource_quota_resize(srv->quota, srv->cfg.grpc_memory_bytes);
    args[nargs].type = GRPC_ARG_POINTER;
    args[nargs].key = GRPC_ARG_RESOURCE_QUOTA;
    args[nargs].value.pointer.p = srv->quota;
    args[nargs].value.pointer.vtable = grpc_resource_quota_arg_vtable();
    nargs++;
    grpc_channel_args chargs = {.num_args = nargs, .args = args};
    srv->server = grpc_server_create(&chargs, NULL);
    if (srv->server == NULL) {
        snprintf(err, errlen, "grpc_server_create failed");
        return -ENOMEM;
    }
    grpc_completion_queue *cq = yw_runtime_cq(srv->rt);
    grpc_server_register_completion_queue(srv->server, cq, NULL);

    for (size_t i = 0; i < srv->n_services; i++) {
        srv->n_regs += srv->services[i]->n_methods;
    }
    srv->regs = calloc(srv->n_regs ? srv->n_regs : 1, sizeof *srv->regs);
    if (srv->regs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t r = 0;
    for (size_t i = 0; i < srv->n_services; i++) {
        const yw_service_t *svc = srv->services[i];
        for (size_t j = 0; j < svc->n_methods; j++, r++) {
            const yw_method_t *m = &svc->methods[j];
            int with_payload = m->kind == YW_METHOD_UNARY || m->kind == YW_METHOD_SERVER_STREAMING;
            /* A method that needs a caller reads its message only once authorized. */
            if (with_payload && srv->cfg.auth != NULL && !svc->no_auth) {
                with_payload = 0;
                srv->regs[r].read_later = 1;
            }
            srv->regs[r].srv = srv;
            srv->regs[r].svc = svc;
            srv->regs[r].method = m;
            srv->regs[r].handle = grpc_server_register_method(
                srv->server, m->path, NULL,
                with_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE,
                0);
            if (srv->regs[r].handle == NULL) {
                snprintf(err, errlen, "cannot register method %s (registered twice?)", m->path);
                return -EINVAL;
            }
        }
    }
    int mrc = yw__metrics_init(srv, err, errlen);
    if (mrc == 0) {
        mrc = yw__auth_init(srv, err, errlen);
    }
    if (mrc != 0) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        return mrc;
    }
    grpc_server_credentials *creds = srv->cfg.credentials;
    if (creds == NULL) {
        creds = grpc_insecure_server_credentials_create();
    }
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    if (creds != srv->cfg.credentials) {
        grpc_server_credentials_release(creds);
    }
    srv->cfg.credentials = NULL; /* borrowed until here */
    if (srv->port == 0) {
        snprintf(err, errlen, "--listen %s: cannot bind (address in use or invalid)", srv->listen);
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        return -EADDRINUSE;
    }
    grpc_server_start(srv->server);
    srv->started = 1;
    for (size_t i = 0; i < srv->n_regs; i++) {
        for (int k = 0; k < srv->cfg.calls_per_method; k++) {
            yw__request_call(srv, &srv->regs[i]);
        }
    }
    for (int k = 0; k < YW__GENERIC_CALLS; k++) {
        yw__request_call(srv, NULL);
    }
    uv_loop_t *loop = yw_runtime_loop(srv->rt);
    uv_timer_init(loop, &srv->grace_timer);
    srv->grace_timer.data = srv;
    srv->handles_open = 1;
    return 0;
}

void yw__server_check_down(yw_server_t *srv)
{
    if (!srv->shutting_down || !srv->shutdown_notified || srv->live_calls > 0 ||
        srv->requested > 0 || srv->shutdown_cb == NULL) {
        return;
    }
    uv_timer_stop(&srv->grace_timer);
    void (*cb)(void *) = srv->shutdown_cb;
    srv->shutdown_cb = NULL;
    cb(srv->shutdown_arg);
}

static void yw__on_shutdown_notify(yw_tag_t *tag, int ok)
{
    yw_server_t *srv = YW__CONTAINER(tag, yw_server_t, tag_shutdown);
    (void)ok;
    srv->shutdown_notified = 1;
    yw__server_check_down(srv);
}

static void yw__on_grace(uv_timer_t *t)
{
    yw_server_t *srv = t->data;
    yw_log(YW_LOG_WARN, "grace period over: cancelling %zu call(s) in flight", srv->live_calls);
    srv->grace_fired = 1;
    grpc_server_cancel_all_calls(srv->server);
    /* The in-process calls too, with the status gRPC gives its own. */
    for (yw_call_t *c = srv->inproc; c != NULL; c = c->next) {
        c->fake->cancel(c, GRPC_STATUS_UNAVAILABLE, "Cancelling all calls");
    }
}

static void yw__noop_done(void *arg)
{
    (void)arg;
}

void yw_server_shutdown(yw_server_t *srv, void (*done)(void *arg), void *arg)
{
    if (srv->shutting_down) {
        return;
    }
    srv->shutting_down = 1;
    srv->shutdown_cb = done ? done : yw__noop_done;
    srv->shutdown_arg = arg;
    if (!srv->started) {
        srv->shutdown_notified = 1;
        yw__server_check_down(srv);
        return;
    }
    srv->tag_shutdown.cb = yw__on_shutdown_notify;
    grpc_server_shutdown_and_notify(srv->server, yw_runtime_cq(srv->rt), &srv->tag_shutdown);
    uv_timer_start(&srv->grace_timer, yw__on_grace, (uint64_t)srv->cfg.grace_ms, 0);
}

static void yw__server_free(yw_server_t *srv)
{
    if (srv->quota != NULL) {
        grpc_resource_quota_unref(srv->quota); /* the server's channels hold their own refs */
    }
    yw__metrics_free(srv);
    free(srv->regs);
    free(srv->listen);
    free(srv);
}

static void yw__on_timer_closed(uv_handle_t *h)
{
    yw_server_t *srv = h->data;
    if (--srv->handles_open == 0) {
        yw__server_free(srv);
    }
}

void yw_server_destroy(yw_server_t *srv)
{
    if (srv->server != NULL) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
    }
    if (srv->handles_open > 0) {
        uv_close((uv_handle_t *)&srv->grace_timer, yw__on_timer_closed);
    } else {
        yw__server_free(srv);
    }
}
