/* app.c — the main() of every service. See app.h. */
#include "common/app.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>

#include "common/auth.h"
#include "common/listener.h"
#include "common/disk.h"
#include "common/health.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reflection.h"
#include "common/sql.h"
#include "common/tls.h"

/* Each service binary links exactly one descriptor set (//proto:*_descriptors). Weak so
 * that unit tests can link the runtime without one. */
extern const unsigned char yw_descriptor_set[] __attribute__((weak));
extern const size_t yw_descriptor_set_len __attribute__((weak));

#define YW__MAX_OPTIONS 48
/* How often Watch calls whose client went away are finished (yw_health_reap()). */
#define YW__HEALTH_REAP_MS 1000
/* How often health looks at whether PostgreSQL answers (--store). */
#define YW__STORE_WATCH_MS 200

struct st_yw_app_t {
    const yw_app_def_t *def;
    yw_option_t opts[YW__MAX_OPTIONS];
    size_t n_opts;
    yw_runtime_t *rt;
    yw_server_t *server;
    yw_health_t *health;         /* grpc.health.v1, on every server */
    yw_reflection_t *reflection; /* NULL with --reflection off */
    uv_timer_t health_reap;      /* yw_health_reap(), while the server serves */
    int health_reap_on;
    yw_store_t *store;
    yw_service_t service;
    void *state;
    uv_signal_t sigterm, sigint;
    int signals_on; /* sigterm and sigint are open: the app serves (yw_app_open() has none) */
    int store_closed;
    int exit_code;
    int stopping;
    int held;    /* yw_app_set_serving(app, 0): health NOT_SERVING while serving */
    int store_down;          /* PostgreSQL does not answer: health NOT_SERVING meanwhile */
    uv_timer_t store_watch;  /* looks at yw_store_available() (PostgreSQL only) */
    int store_watch_on;
    int serving; /* the server serves (yw__health_serve()) */
    yw_metrics_t *metrics;
    yw_metrics_http_t *metrics_http;
    yw_metric_t *commit_seconds, *commits_ok, *commits_failed, *write_jobs;
    yw_tls_t *tls;
    yw_auth_t *auth;
    grpc_server_credentials *server_creds; /* until the server started */
    yw_listener_t *listener;               /* until the shutdown begins */
    int max_connections, listener_stall_ms;
    int listener_dead;   /* the listener was found dead: no more watchdog pings */
    uv_timer_t watchdog; /* WATCHDOG=1 pings, when systemd asks for them */
    int watchdog_on;
    yw_page_key_t page_key;
    yw_disk_t *disk;
};

static const yw_option_t yw__common_options[] = {
    {"listen", "YW_LISTEN", NULL, "HOST:PORT to serve gRPC on (port 0 picks a free one)",
     YW_OPTION_VALUE, NULL},
    {"data-dir", "YW_DATA_DIR", "./data", "directory of the service's SQLite database",
     YW_OPTION_VALUE, NULL},
    {"store", "YW_STORE", "",
     "where creator profile and tier scoring keep their data: empty = SQLite under "
     "--data-dir; a libpq URI (postgresql://user@host:5432/db?sslmode=..., every libpq "
     "parameter, several hosts) = PostgreSQL, for several replicas over one database",
     YW_OPTION_VALUE, NULL},
    {"store-read", "YW_STORE_READ", "",
     "PostgreSQL only: a libpq URI where reads that may lag go (listings, "
     "stats windows), e.g. a streaming standby; empty = --store",
     YW_OPTION_VALUE, NULL},
    {"store-pool", "YW_STORE_POOL", "4",
     "PostgreSQL only: connections (each with its thread) per process, and as many more "
     "for --store-read",
     YW_OPTION_VALUE, NULL},
    {"creator-profile-addr", "YW_CREATOR_PROFILE_ADDR", "127.0.0.1:50051",
     "HOST:PORT of the creator profile service", YW_OPTION_VALUE, NULL},
    {"tier-scoring-addr", "YW_TIER_SCORING_ADDR", "127.0.0.1:50052",
     "HOST:PORT of the tier scoring service", YW_OPTION_VALUE, NULL},
    {"log-level", "YW_LOG_LEVEL", "info", "debug, info, warn or error (OK calls log at debug)",
     YW_OPTION_VALUE, NULL},
    {"max-message-bytes", "YW_MAX_MESSAGE_BYTES", "4194304",
     "largest request accepted; larger is RESOURCE_EXHAUSTED", YW_OPTION_VALUE, NULL},
    {"grace-ms", "YW_GRACE_MS", "5000",
     "on SIGTERM/SIGINT, time calls in flight get before they are cancelled", YW_OPTION_VALUE,
     NULL},
    {"reuse-port", "YW_REUSE_PORT", "0",
     "1: SO_REUSEPORT, so several processes serve one port; 0: a taken port is an error",
     YW_OPTION_VALUE, NULL},
    {"metrics-listen", "YW_METRICS_LISTEN", "",
     "HOST:PORT to serve Prometheus metrics on (GET /metrics, plain HTTP: loopback unless "
     "--insecure); empty: off",
     YW_OPTION_VALUE, NULL},
    {"tls-cert", "YW_TLS_CERT", "",
     "PEM certificate chain: serve TLS (and present it to peers as client certificate)",
     YW_OPTION_VALUE, NULL},
    {"tls-key", "YW_TLS_KEY", "", "PEM private key of --tls-cert", YW_OPTION_VALUE, NULL},
    {"tls-client-ca", "YW_TLS_CLIENT_CA", "",
     "PEM CA bundle: mutual TLS, a client certificate that chains to it is required",
     YW_OPTION_VALUE, NULL},
    {"peer-tls-ca", "YW_PEER_TLS_CA", "",
     "PEM CA bundle: call peer services over TLS, verifying them against it", YW_OPTION_VALUE,
     NULL},
    {"insecure", "YW_INSECURE", "0",
     "serve plaintext on a non-loopback --listen or --metrics-listen address (without TLS "
     "only loopback is allowed; metrics are always plain HTTP); a switch: alone it means 1",
     YW_OPTION_SWITCH, NULL},
    {"auth-config", "YW_AUTH_CONFIG", "",
     "JSON file of allowed callers (mTLS SAN or bearer token) and per-method roles; empty: "
     "off",
     YW_OPTION_VALUE, NULL},
    {"reflection", "YW_REFLECTION", "on", "on or off: serve gRPC server reflection",
     YW_OPTION_VALUE, NULL},
    {"grpc-memory-mb", "YW_GRPC_MEMORY_MB", "128",
     "memory budget of gRPC's buffers (all connections); a request that takes it over is "
     "reset (RESOURCE_EXHAUSTED); at least 2 x --max-message-bytes",
     YW_OPTION_VALUE, NULL},
    {"stream-window-kb", "YW_STREAM_WINDOW_KB", "1024",
     "HTTP/2 receive window of each stream: what gRPC reads of a stream ahead of the "
     "service (a message being received gets its whole length); 0 = sized by gRPC's "
     "bandwidth-delay probe, unbounded but for --grpc-memory-mb",
     YW_OPTION_VALUE, NULL},
    {"max-streams-per-connection", "YW_MAX_STREAMS_PER_CONNECTION", "128",
     "concurrent calls one client connection may have open; more wait for a free slot",
     YW_OPTION_VALUE, NULL},
    {"max-connections", "YW_MAX_CONNECTIONS", "4096",
     "client connections held at once (gRPC and metrics); more are closed as soon as they are "
     "accepted. Also bounded by the file limit (RLIMIT_NOFILE, raised to its hard limit at "
     "start) less 64 descriptors kept for files and peers",
     YW_OPTION_VALUE, NULL},
    {"listener-stall-ms", "YW_LISTENER_STALL_MS", "10000",
     "connections left unaccepted this long mean the gRPC listener is dead: health goes "
     "NOT_SERVING, systemd watchdog pings stop, and the process exits 1 to be restarted; 0: "
     "never",
     YW_OPTION_VALUE, NULL},
    {"disk-reserve-mb", "YW_DISK_RESERVE_MB", "64",
     "MiB kept free in --data-dir (a preallocated file, at most 1/16 of the file system) for "
     "checkpoints when the disk fills; writes are refused while less is free, 0: no reserve",
     YW_OPTION_VALUE, NULL},
};

yw_app_t *yw_app_from_call(const yw_call_t *call)
{
    return yw_call_service_ctx(call);
}

void yw_app_set_state(yw_app_t *app, void *state)
{
    app->state = state;
}

void *yw_app_state(const yw_app_t *app)
{
    return app->state;
}

yw_runtime_t *yw_app_runtime(const yw_app_t *app)
{
    return app->rt;
}

yw_server_t *yw_app_server(const yw_app_t *app)
{
    return app->server;
}

yw_store_t *yw_app_store(const yw_app_t *app)
{
    return app->store;
}

const char *yw_app_option(const yw_app_t *app, const char *name)
{
    return yw_config_get(app->opts, app->n_opts, name);
}

yw_metrics_t *yw_app_metrics(const yw_app_t *app)
{
    return app->metrics;
}

const yw_page_key_t *yw_app_page_key(const yw_app_t *app)
{
    return &app->page_key;
}

yw_disk_t *yw_app_disk(const yw_app_t *app)
{
    return app->disk;
}

/* ---- readiness (systemd Type=notify; a no-op without $NOTIFY_SOCKET) ---- */

static void yw__notify(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0) {
        yw_log(YW_LOG_WARN, "sd_notify: %s", strerror(-rc));
    }
}

/* ---- the listener (listener.h) and the systemd watchdog ---- */

/* The watchdog is pinged from the loop, and only while the listener accepts: a loop that
 * hangs or a listener that died both stop the pings, and systemd restarts the unit. */
static void yw__on_watchdog(uv_timer_t *t)
{
    yw_app_t *app = t->data;
    if (!app->listener_dead) {
        yw__notify("WATCHDOG=1");
    }
}

static void yw__watchdog_start(yw_app_t *app)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
        return;
    }
    uint64_t every_ms = usec / 3000 > 0 ? usec / 3000 : 1;
    uv_timer_init(yw_runtime_loop(app->rt), &app->watchdog);
    app->watchdog.data = app;
    app->watchdog_on = 1;
    uv_timer_start(&app->watchdog, yw__on_watchdog, 0, every_ms);
    uv_unref((uv_handle_t *)&app->watchdog);
    yw_log(YW_LOG_INFO, "systemd watchdog: a ping every %llu ms (WatchdogSec=%llu ms)",
           (unsigned long long)every_ms, (unsigned long long)(usec / 1000));
}

static void yw__begin_stop(yw_app_t *app);

static void yw__on_listener_dead(void *arg, const char *why)
{
    yw_app_t *app = arg;
    app->listener_dead = 1;
    yw_log(YW_LOG_ERROR,
           "the gRPC listener accepts no more connections: %s. Health goes NOT_SERVING, the "
           "watchdog pings stop, and the process exits 1 so that its supervisor restarts it",
           why);
    yw__notify("STATUS=listener dead: exiting to be restarted");
    app->exit_code = 1;
    yw__begin_stop(app);
}

static int yw__listener_setup(yw_app_t *app, char *err, size_t errlen)
{
    yw_listener_config_t cfg = {
        .port = yw_server_port(app->server),
        .max_connections = app->max_connections,
        .stall_ms = app->listener_stall_ms,
        .metrics = app->metrics,
        .on_dead = yw__on_listener_dead,
        .arg = app,
    };
    int rc = yw_listener_start(yw_runtime_loop(app->rt), &cfg, &app->listener, err, errlen);
    if (rc != 0) {
        return rc;
    }
    if (yw_listener_watched(app->listener) == 0) {
        yw_log(YW_LOG_WARN,
               "no listening TCP socket of port %d found: the listener is not "
               "watched (the connection bound holds)",
               cfg.port);
    }
    int bound = yw_listener_max_connections(app->listener);
    if (bound < app->max_connections) {
        yw_log(YW_LOG_WARN,
               "connections: at most %d, fewer than --max-connections %d: the file limit is %ld "
               "descriptors (raise LimitNOFILE / ulimit -n)",
               bound, app->max_connections, yw_listener_fd_limit(app->listener));
    } else {
        yw_log(YW_LOG_INFO, "connections: at most %d (file limit %ld)", bound,
               yw_listener_fd_limit(app->listener));
    }
    return 0;
}

/* ---- metrics the app owns: the store's group commits ---- */

/* The store's writer thread, after each group commit: atomics only. */
static void yw__on_commit(void *arg, uint64_t duration_ns, size_t n_jobs, int committed)
{
    yw_app_t *app = arg;
    yw_metric_observe(app->commit_seconds, duration_ns);
    yw_metric_inc(committed ? app->commits_ok : app->commits_failed);
    yw_metric_add(app->write_jobs, n_jobs);
}

/* The store's writer thread: SQLite found the disk full (disk.h closes the gate). */
static void yw__on_disk_full(void *arg)
{
    yw_app_t *app = arg;
    yw_disk_report_full(app->disk);
}

/*
 * The data dir's disk (disk.h): its reserve file, <program>.reserve, and the write gate
 * every service asks before a write (yw_app_disk()).
 */
static int yw__disk_setup(yw_app_t *app, const char *dir, char *err, size_t errlen)
{
    long long mb = 0;
    int rc = yw_config_int(app->opts, app->n_opts, "disk-reserve-mb", &mb, err, errlen);
    if (rc != 0) {
        return rc;
    }
    if (mb < 0 || mb > 1048576) {
        snprintf(err, errlen, "--disk-reserve-mb: must be within 0..1048576, got %lld", mb);
        return -EINVAL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.reserve", dir, app->def->program);
    yw_disk_config_t cfg = {
        .dir = dir,
        .reserve_path = path,
        .reserve_bytes = (uint64_t)mb << 20,
        .metrics = app->metrics,
    };
    return yw_disk_open(yw_runtime_loop(app->rt), &cfg, &app->disk, err, errlen);
}

static int yw__metrics_setup(yw_app_t *app, char *err, size_t errlen)
{
    yw_metrics_t *m = app->metrics;
    char labels[256];
    snprintf(labels, sizeof labels, "grpc_service=%s,service=%s", app->def->service->name,
             app->def->program);
    yw_metric_t *info = NULL;
    int rc;
    if ((rc = yw_metrics_gauge(m, "yaowei_service_info", "Which service this process is (1).",
                               labels, &info)) != 0 ||
        (rc = yw_metrics_histogram(m, "yaowei_store_commit_seconds",
                                   "Group commits of the SQLite store: BEGIN to the end of "
                                   "COMMIT, fsync included.",
                                   NULL, yw_metrics_latency_bounds_ns, YW_METRICS_N_LATENCY_BOUNDS,
                                   1e-9, &app->commit_seconds)) != 0 ||
        (rc = yw_metrics_counter(m, "yaowei_store_commits_total",
                                 "Group commits of the SQLite store, by result.", "result=ok",
                                 &app->commits_ok)) != 0 ||
        (rc = yw_metrics_counter(m, "yaowei_store_commits_total", NULL, "result=error",
                                 &app->commits_failed)) != 0 ||
        (rc = yw_metrics_counter(m, "yaowei_store_write_jobs_total",
                                 "Write jobs run in group commits (committed or not).", NULL,
                                 &app->write_jobs)) != 0) {
        snprintf(err, errlen, "metrics: cannot register (%s)", strerror(-rc));
        return rc;
    }
    yw_metric_gauge_set(info, 1);
    const char *listen = yw_app_option(app, "metrics-listen");
    if (listen != NULL && listen[0] != '\0') {
        if ((rc = yw_metrics_http_start(m, listen, &app->metrics_http, err, errlen)) != 0) {
            return rc;
        }
        yw_log(YW_LOG_INFO, "serving metrics on %s (port %d): GET /metrics", listen,
               yw_metrics_http_port(app->metrics_http));
    }
    return 0;
}

/* ---- health and reflection: services of every server, added here ---- */

/*
 * Adds grpc.health.v1.Health (open to every caller: no_auth) and, unless `reflection`
 * is 0, grpc.reflection.v1 and v1alpha serving the binary's descriptor set, before the
 * service's own. Returns 0 or a negative errno with a message in `err`.
 */
static int yw__add_standard_services(yw_app_t *app, int reflection, char *err, size_t errlen)
{
    int rc = yw_health_create(&app->health);
    if (rc != 0) {
        snprintf(err, errlen, "health: cannot create (%s)", strerror(-rc));
        return rc;
    }
    if (reflection && (rc = yw_reflection_create(yw_descriptor_set, yw_descriptor_set_len,
                                                 &app->reflection, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = yw_server_add_service(app->server, yw_health_service(app->health))) != 0 ||
        (app->reflection != NULL &&
         ((rc = yw_server_add_service(app->server, yw_reflection_service_v1(app->reflection))) !=
              0 ||
          (rc = yw_server_add_service(app->server,
                                      yw_reflection_service_v1alpha(app->reflection))) != 0))) {
        snprintf(err, errlen, "cannot add the health and reflection services");
        return rc;
    }
    return 0;
}

static void yw__on_health_reap(uv_timer_t *t)
{
    yw_app_t *app = t->data;
    yw_health_reap(app->health);
}

/* "" and every service of the server: SERVING unless the service holds it back. */
static void yw__health_apply(yw_app_t *app)
{
    const char *names[32];
    size_t n = yw_server_service_names(app->server, names, sizeof names / sizeof names[0]);
    int up = !app->held && !app->store_down;
    yw_health_set(app->health, "", up);
    for (size_t i = 0; i < n && i < sizeof names / sizeof names[0]; i++) {
        /* Health itself (and reflection) answer whatever the service says. */
        yw_health_set(app->health, names[i], up || strcmp(names[i], app->def->service->name) != 0);
    }
}

void yw_app_set_serving(yw_app_t *app, int serving)
{
    if (app->held == !serving) {
        return;
    }
    app->held = !serving;
    if (app->serving && !app->stopping) {
        yw__health_apply(app);
    }
}

/* PostgreSQL: health follows whether the database answers (the store's listener tries it
 * every few hundred milliseconds). */
static void yw__on_store_watch(uv_timer_t *t)
{
    yw_app_t *app = t->data;
    int down = app->store != NULL && !yw_store_available(app->store);
    if (down == app->store_down) {
        return;
    }
    app->store_down = down;
    if (down) {
        yw_log(YW_LOG_WARN, "the store does not answer: health NOT_SERVING until it does");
    } else {
        yw_log(YW_LOG_INFO, "the store answers again: health SERVING");
    }
    if (app->serving && !app->stopping) {
        yw__health_apply(app);
    }
}

/* The server serves: health as the service says, and watches get reaped. */
static void yw__health_serve(yw_app_t *app)
{
    app->serving = 1;
    yw__health_apply(app);
    uv_timer_init(yw_runtime_loop(app->rt), &app->health_reap);
    app->health_reap.data = app;
    app->health_reap_on = 1;
    uv_timer_start(&app->health_reap, yw__on_health_reap, YW__HEALTH_REAP_MS, YW__HEALTH_REAP_MS);
    uv_unref((uv_handle_t *)&app->health_reap);
    if (app->store != NULL && yw_store_is_postgres(app->store)) {
        uv_timer_init(yw_runtime_loop(app->rt), &app->store_watch);
        app->store_watch.data = app;
        app->store_watch_on = 1;
        uv_timer_start(&app->store_watch, yw__on_store_watch, YW__STORE_WATCH_MS,
                       YW__STORE_WATCH_MS);
        uv_unref((uv_handle_t *)&app->store_watch);
    }
}

/* Destroys the server, then the services it served (their calls are gone with it). */
static void yw__server_destroy(yw_app_t *app)
{
    if (app->server != NULL) {
        yw_server_destroy(app->server);
        app->server = NULL;
    }
    yw_reflection_destroy(app->reflection);
    app->reflection = NULL;
    yw_health_destroy(app->health);
    app->health = NULL;
}

/* ---- shutdown chain: signal -> server down -> fini -> store closed -> stop ---- */

static void yw__on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void yw__on_store_closed(void *arg)
{
    yw_app_t *app = arg;
    app->store_closed = 1;
    if (app->signals_on) {
        app->signals_on = 0;
        uv_close((uv_handle_t *)&app->sigterm, yw__on_signal_closed);
        uv_close((uv_handle_t *)&app->sigint, yw__on_signal_closed);
    }
    if (app->watchdog_on) {
        app->watchdog_on = 0;
        uv_close((uv_handle_t *)&app->watchdog, yw__on_signal_closed);
    }
    if (app->health_reap_on) {
        app->health_reap_on = 0;
        uv_close((uv_handle_t *)&app->health_reap, yw__on_signal_closed);
    }
    if (app->store_watch_on) {
        app->store_watch_on = 0;
        uv_close((uv_handle_t *)&app->store_watch, yw__on_signal_closed);
    }
    yw__server_destroy(app);
    yw_log(YW_LOG_INFO, "stopped");
    yw_runtime_stop(app->rt);
}

static void yw__close_store(yw_app_t *app)
{
    if (app->store != NULL) {
        yw_store_t *store = app->store;
        app->store = NULL;
        yw_store_close(store, yw__on_store_closed, app);
    } else {
        yw__on_store_closed(app);
    }
}

void yw_app_fini_done(yw_app_t *app)
{
    yw__close_store(app);
}

static void yw__on_server_down(void *arg)
{
    yw_app_t *app = arg;
    if (app->def->fini != NULL) {
        app->def->fini(app);
    }
    if (app->def->fini_async != NULL) {
        app->def->fini_async(app); /* it calls yw_app_fini_done() when finished */
        return;
    }
    yw__close_store(app);
}

static void yw__begin_stop(yw_app_t *app)
{
    if (app->stopping) {
        return;
    }
    app->stopping = 1;
    /* Before gRPC closes its listeners, which the watch would take for dead ones. */
    yw_listener_stop(app->listener);
    app->listener = NULL;
    yw_disk_release(app->disk); /* for the last writes: a snapshot, the final checkpoint */
    /* NOT_SERVING first, and every Watch ends now instead of holding the grace period. */
    yw_health_shutdown(app->health);
    yw_server_shutdown(app->server, yw__on_server_down, app);
}

void yw_app_fail(yw_app_t *app, const char *why)
{
    yw_log(YW_LOG_ERROR, "%s: stopping", why);
    app->exit_code = 1;
    yw__begin_stop(app);
}

static void yw__on_signal(uv_signal_t *h, int signum)
{
    yw_app_t *app = h->data;
    yw_log(YW_LOG_INFO, "signal %s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    if (!app->stopping) {
        yw__notify("STOPPING=1\nSTATUS=shutting down");
    }
    yw__begin_stop(app);
}

static int yw__mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        return -ENAMETOOLONG;
    }
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

/*
 * The loopback rule, one check for every listener: plaintext only on loopback unless
 * --insecure says otherwise, and then with a warning that says `risk`. `flag` and `addr`
 * name the listener, `plain` what it would serve in clear ("gRPC", "metrics"),
 * `tls_hint` how to serve it encrypted instead ("" when it cannot be). Returns 0, or
 * -EPERM with a message.
 */
static int yw__loopback_rule(const char *flag, const char *addr, const char *plain,
                             const char *tls_hint, const char *risk, int insecure, char *err,
                             size_t errlen)
{
    if (yw_listen_is_loopback(addr)) {
        return 0;
    }
    if (!insecure) {
        snprintf(err, errlen,
                 "%s %s: plaintext %s is served only on loopback (127.0.0.1, [::1], localhost); "
                 "give %s--insecure to serve plaintext on this address anyway",
                 flag, addr, plain, tls_hint);
        return -EPERM;
    }
    yw_log(YW_LOG_WARN, "--insecure: serving PLAINTEXT %s on non-loopback %s (%s): %s", plain, addr,
           flag, risk);
    return 0;
}

/*
 * Transport security, before anything is opened: TLS material, the auth config, and
 * the loopback rule for gRPC (plaintext only on loopback unless --insecure says
 * otherwise; TLS anywhere) and for metrics (plain HTTP always: loopback unless
 * --insecure, whatever gRPC serves).
 */
static int yw__security_setup(yw_app_t *app, char *err, size_t errlen)
{
    int insecure = 0, rc;
    if ((rc = yw_config_bool(app->opts, app->n_opts, "insecure", &insecure, err, errlen)) != 0) {
        return rc;
    }
    yw_tls_config_t tcfg = {
        .cert_file = yw_app_option(app, "tls-cert"),
        .key_file = yw_app_option(app, "tls-key"),
        .client_ca_file = yw_app_option(app, "tls-client-ca"),
        .peer_ca_file = yw_app_option(app, "peer-tls-ca"),
    };
    if ((rc = yw_tls_load(&tcfg, &app->tls, err, errlen)) != 0) {
        return rc;
    }
    const char *auth_file = yw_app_option(app, "auth-config");
    if (auth_file != NULL && auth_file[0] != '\0' &&
        (rc = yw_auth_load(auth_file, &app->auth, err, errlen)) != 0) {
        return rc;
    }
    const char *metrics = yw_app_option(app, "metrics-listen");
    int serves_metrics = metrics != NULL && metrics[0] != '\0';
    const char *grpc_risk = app->auth != NULL
                                ? "no encryption, no client certificates; bearer tokens travel "
                                  "in clear text"
                                : "no encryption, no client certificates; anyone who reaches the "
                                  "port may call every method";
    if ((!yw_tls_serves(app->tls) &&
         (rc = yw__loopback_rule("--listen", yw_app_option(app, "listen"), "gRPC",
                                 "--tls-cert and --tls-key, or ", grpc_risk, insecure, err,
                                 errlen)) != 0) ||
        (serves_metrics && (rc = yw__loopback_rule("--metrics-listen", metrics, "metrics", "",
                                                   "anyone who reaches the port may read them",
                                                   insecure, err, errlen)) != 0)) {
        return rc;
    }
    if (insecure && yw_tls_serves(app->tls) &&
        (!serves_metrics || yw_listen_is_loopback(metrics))) {
        yw_log(YW_LOG_INFO, "--insecure has no effect: the service serves TLS");
    }
    if (yw_tls_mutual(app->tls) && app->auth == NULL) {
        yw_log(YW_LOG_INFO, "mutual TLS without --auth-config: every client certificate that "
                            "chains to --tls-client-ca may call every method");
    }
    return 0;
}

/* ---- PostgreSQL (--store URI) ---- */

/* Creates the shared page key once (the first process to get here) and reads it. */
static const char yw__sql_page_keys[] =
    "CREATE TABLE IF NOT EXISTS yw_page_keys (service TEXT PRIMARY KEY, key_hex TEXT NOT NULL)";
static const char yw__sql_page_key_insert[] =
    "INSERT INTO yw_page_keys(service, key_hex) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
static const char yw__sql_page_key_select[] =
    "SELECT key_hex FROM yw_page_keys WHERE service = ?1";

typedef struct {
    yw_store_job_t job; /* for its errmsg: yw_store_run_sync() runs no job */
    const char *service;
    yw_page_key_t key;
} yw__page_key_load_t;

static int yw__hex_nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * yw_store_run_sync() work: the page key of the service, kept in the database so that
 * a token issued by one replica is understood by every other. The first process to
 * start makes it (under an advisory lock: replicas starting together agree on one).
 */
static grpc_status_code yw__pg_page_key(yw_store_conn_t *conn, void *arg)
{
    yw__page_key_load_t *l = arg;
    yw_store_job_t *job = &l->job;
    grpc_status_code code;
    if ((code = yw_sql_job_lock(conn, job, "yw_page_keys")) != GRPC_STATUS_OK ||
        (code = yw_sql_job_exec(conn, job, yw__sql_page_keys, NULL, 0, "create yw_page_keys")) !=
            GRPC_STATUS_OK) {
        return code;
    }
    yw_page_key_t fresh;
    char hex[2 * sizeof fresh.bytes + 1];
    if (yw_page_key_random(&fresh) != 0) {
        return yw_store_job_failf(job, GRPC_STATUS_INTERNAL, "no random bytes for the page key");
    }
    for (size_t i = 0; i < sizeof fresh.bytes; i++) {
        snprintf(hex + 2 * i, 3, "%02x", fresh.bytes[i]);
    }
    const char *insert[] = {l->service, hex};
    if ((code = yw_sql_job_exec(conn, job, yw__sql_page_key_insert, insert, 2,
                                "store the page key")) != GRPC_STATUS_OK) {
        return code;
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, yw__sql_page_key_select, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, l->service);
    int rc = yw_sql_step(st);
    size_t len = 0;
    const char *text = rc == YW_SQL_ROW ? yw_sql_column_text(st, 0, &len) : NULL;
    if (rc == YW_SQL_ERROR) {
        code = yw_sql_job_fail(conn, job, "read the page key");
    } else if (text == NULL || len != 2 * sizeof l->key.bytes) {
        code = yw_store_job_failf(job, GRPC_STATUS_INTERNAL,
                                  "yw_page_keys: the key of %s is not %zu hex digits", l->service,
                                  2 * sizeof l->key.bytes);
    } else {
        for (size_t i = 0; i < sizeof l->key.bytes && code == GRPC_STATUS_OK; i++) {
            int hi = yw__hex_nibble(text[2 * i]), lo = yw__hex_nibble(text[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                code = yw_store_job_failf(job, GRPC_STATUS_INTERNAL,
                                          "yw_page_keys: the key of %s is not hex", l->service);
            }
            l->key.bytes[i] = (uint8_t)(hi << 4 | lo);
        }
    }
    yw_sql_done(st);
    return code;
}

/*
 * --store URI: the service's store on PostgreSQL (no --data-dir, no disk reserve: the
 * process keeps nothing of its own), migrated, and the page key from the database.
 */
static int yw__pg_setup(yw_app_t *app, const char *uri, char *err, size_t errlen)
{
    const yw_app_def_t *def = app->def;
    long long pool = 0;
    int rc;
    if (def->pg_migrations == NULL) {
        snprintf(err, errlen,
                 "--store: %s keeps its data under --data-dir only (PostgreSQL is for creator "
                 "profile and tier scoring)",
                 def->program);
        return -EINVAL;
    }
    if ((rc = yw_config_int(app->opts, app->n_opts, "store-pool", &pool, err, errlen)) != 0) {
        return rc;
    }
    if (pool < 1 || pool > 64) {
        snprintf(err, errlen, "--store-pool: must be within 1..64, got %lld", pool);
        return -EINVAL;
    }
    yw_store_config_t scfg = {
        .pg_uri = uri,
        .pg_read_uri = yw_app_option(app, "store-read"),
        .pg_pool = (int)pool,
        .pg_migrations = def->pg_migrations,
        .n_pg_migrations = def->n_pg_migrations,
        .pg_schema = def->program,
    };
    if ((rc = yw_store_open(yw_runtime_loop(app->rt), &scfg, &app->store, err, errlen)) != 0) {
        return rc;
    }
    yw__page_key_load_t load = {.service = def->program};
    if (yw_store_run_sync(app->store, yw__pg_page_key, &load, err, errlen) != GRPC_STATUS_OK) {
        if (load.job.errmsg[0] != '\0') {
            snprintf(err, errlen, "%s", load.job.errmsg);
        }
        return -EIO;
    }
    app->page_key = load.key;
    return 0;
}

/*
 * The data the service keeps (after the runtime is created): --data-dir, its disk's
 * reserve and write gate, the store (migrated), the page token key beside it; a random
 * key for a service without a database. Returns 0 or a negative errno with `err`.
 */
static int yw__data_setup(yw_app_t *app, char *err, size_t errlen)
{
    const yw_app_def_t *def = app->def;
    const char *uri = yw_app_option(app, "store");
    int rc;
    if (uri != NULL && uri[0] != '\0') {
        return yw__pg_setup(app, uri, err, errlen);
    }
    const char *read_uri = yw_app_option(app, "store-read");
    if (read_uri != NULL && read_uri[0] != '\0') {
        snprintf(err, errlen, "--store-read: needs --store (a PostgreSQL URI): with SQLite "
                              "every read goes to the file under --data-dir");
        return -EINVAL;
    }
    if (def->db_file != NULL) {
        const char *dir = yw_app_option(app, "data-dir");
        if ((rc = yw__mkdirs(dir)) != 0) {
            snprintf(err, errlen, "--data-dir %s: cannot create: %s", dir, strerror(-rc));
            return rc;
        }
        if ((rc = yw__disk_setup(app, dir, err, errlen)) != 0) {
            return rc;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, def->db_file);
        yw_store_config_t scfg = {
            .path = path,
            .migrations = def->migrations,
            .n_migrations = def->n_migrations,
            .on_commit = yw__on_commit,
            .on_commit_arg = app,
            .on_full = yw__on_disk_full,
            .on_full_arg = app,
        };
        if ((rc = yw_store_open(yw_runtime_loop(app->rt), &scfg, &app->store, err, errlen)) != 0) {
            return rc;
        }
        /* Page tokens survive restarts: their key is kept beside the data. */
        snprintf(path, sizeof path, "%s/page_token.key", dir);
        if ((rc = yw_page_key_load(path, &app->page_key, err, errlen)) != 0) {
            return rc;
        }
    } else if ((rc = yw_page_key_random(&app->page_key)) != 0) {
        snprintf(err, errlen, "no random bytes for the page token key");
        return rc;
    }
    return 0;
}

static int yw__app_setup(yw_app_t *app, char *err, size_t errlen)
{
    const yw_app_def_t *def = app->def;
    long long max_bytes = 0, grace = 0, reuse = 0, max_streams = 0, max_conns = 0, stall = 0;
    long long grpc_mb = 0, window_kb = 0;
    int reflection = 1;
    int rc;
    if ((rc = yw_config_int(app->opts, app->n_opts, "max-message-bytes", &max_bytes, err,
                            errlen)) != 0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "grace-ms", &grace, err, errlen)) != 0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "reuse-port", &reuse, err, errlen)) != 0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "max-streams-per-connection", &max_streams, err,
                            errlen)) != 0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "max-connections", &max_conns, err, errlen)) !=
            0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "listener-stall-ms", &stall, err, errlen)) !=
            0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "grpc-memory-mb", &grpc_mb, err, errlen)) !=
            0 ||
        (rc = yw_config_int(app->opts, app->n_opts, "stream-window-kb", &window_kb, err, errlen)) !=
            0 ||
        (rc = yw_config_bool(app->opts, app->n_opts, "reflection", &reflection, err, errlen)) !=
            0) {
        return rc;
    }
    if (max_bytes <= 0 || max_bytes > (1LL << 30)) {
        snprintf(err, errlen, "--max-message-bytes: must be within 1..1073741824");
        return -EINVAL;
    }
    if (grpc_mb < 1 || grpc_mb > 65536 || (grpc_mb << 20) < 2 * max_bytes) {
        snprintf(err, errlen,
                 "--grpc-memory-mb: must be within 1..65536 and hold two messages of "
                 "--max-message-bytes (%lld), got %lld",
                 max_bytes, grpc_mb);
        return -EINVAL;
    }
    if (window_kb < 0 || window_kb > 1048576) {
        snprintf(err, errlen, "--stream-window-kb: must be within 0..1048576, got %lld", window_kb);
        return -EINVAL;
    }
    if (max_streams < 1 || max_streams > 1000000) {
        snprintf(err, errlen, "--max-streams-per-connection: must be within 1..1000000, got %lld",
                 max_streams);
        return -EINVAL;
    }
    if (max_conns < 1 || max_conns > YW_LISTENER_NOFILE_MAX) {
        snprintf(err, errlen, "--max-connections: must be within 1..%d, got %lld",
                 YW_LISTENER_NOFILE_MAX, max_conns);
        return -EINVAL;
    }
    if (stall < 0 || stall > 3600000) {
        snprintf(err, errlen, "--listener-stall-ms: must be within 0..3600000, got %lld", stall);
        return -EINVAL;
    }
    app->max_connections = (int)max_conns;
    app->listener_stall_ms = (int)stall;
    if ((rc = yw__security_setup(app, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = yw__metrics_setup(app, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = yw_runtime_create(&app->rt)) != 0) {
        snprintf(err, errlen, "cannot create the runtime: %s", uv_strerror(rc));
        return rc;
    }
    /* Peers (client.h) over TLS when --peer-tls-ca is set; the runtime owns the ref. */
    yw_runtime_set_channel_credentials(app->rt, yw_tls_channel_credentials(app->tls));
    if ((rc = yw__data_setup(app, err, errlen)) != 0) {
        return rc;
    }
    if (&yw_descriptor_set_len == NULL || yw_descriptor_set == NULL) {
        snprintf(err, errlen, "no descriptor set is linked into this binary");
        return -EINVAL;
    }
    app->server_creds = yw_tls_server_credentials(app->tls);
    if (yw_tls_serves(app->tls) && app->server_creds == NULL) {
        snprintf(err, errlen, "--tls-cert/--tls-key: gRPC refused the TLS credentials");
        return -EINVAL;
    }
    yw_server_config_t cfg = {
        .credentials = app->server_creds,
        .listen = yw_app_option(app, "listen"),
        .max_receive_bytes = (int)max_bytes,
        .grace_ms = (int)grace,
        .reuse_port = reuse != 0,
        .metrics = app->metrics,
        .max_streams_per_connection = (int)max_streams,
        .auth = app->auth,
        .grpc_memory_bytes = (size_t)grpc_mb << 20,
        .stream_window_bytes = (int)(window_kb << 10),
    };
    if ((rc = yw_server_create(app->rt, &cfg, &app->server, err, errlen)) != 0) {
        return rc;
    }
    if ((rc = yw__add_standard_services(app, reflection, err, errlen)) != 0) {
        return rc;
    }
    app->service = *def->service;
    app->service.ctx = app;
    if ((rc = yw_server_add_service(app->server, &app->service)) != 0) {
        snprintf(err, errlen, "cannot add service %s", def->service->name);
        return rc;
    }
    if (def->init != NULL && (rc = def->init(app, err, errlen)) != 0) {
        return rc;
    }
    rc = yw_server_start(app->server, err, errlen);
    if (app->server_creds != NULL) {
        grpc_server_credentials_release(app->server_creds);
        app->server_creds = NULL;
    }
    if (rc != 0) {
        return rc;
    }
    yw__health_serve(app);
    uv_loop_t *loop = yw_runtime_loop(app->rt);
    uv_signal_init(loop, &app->sigterm);
    uv_signal_init(loop, &app->sigint);
    app->signals_on = 1;
    app->sigterm.data = app;
    app->sigint.data = app;
    uv_signal_start(&app->sigterm, yw__on_signal, SIGTERM);
    uv_signal_start(&app->sigint, yw__on_signal, SIGINT);
    /* The server serves already: a failure here leaves through the graceful shutdown. */
    if (yw__listener_setup(app, err, errlen) != 0) {
        yw_log(YW_LOG_ERROR, "cannot start: %s", err);
        fprintf(stderr, "%s: cannot start: %s\n", def->program, err);
        app->exit_code = 1;
        yw__begin_stop(app);
        return 0;
    }
    yw__watchdog_start(app);
    return 0;
}

static void yw__on_abort_closed(void *arg)
{
    yw_app_t *app = arg;
    yw_runtime_stop(app->rt);
}

/* A new app of `def` with its options (common and the service's) not yet parsed. NULL,
 * with a message in `err`, when out of memory or when the service has too many. */
static yw_app_t *yw__app_new(const yw_app_def_t *def, char *err, size_t errlen)
{
    size_t nc = sizeof yw__common_options / sizeof yw__common_options[0];
    if (nc + def->n_options > YW__MAX_OPTIONS) {
        snprintf(err, errlen, "too many options");
        return NULL;
    }
    yw_app_t *app = calloc(1, sizeof *app);
    if (app == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->def = def;
    memcpy(app->opts, yw__common_options, sizeof yw__common_options);
    app->opts[0].def = def->default_listen ? def->default_listen : "127.0.0.1:0";
    if (def->n_options > 0) {
        memcpy(app->opts + nc, def->options, def->n_options * sizeof *def->options);
    }
    app->n_opts = nc + def->n_options;
    return app;
}

/* Frees what is left of an app once its loop has stopped (the store is closed). */
static void yw__app_free(yw_app_t *app)
{
    if (app->server_creds != NULL) { /* a start that failed before the server started */
        grpc_server_credentials_release(app->server_creds);
    }
    if (app->rt != NULL) {
        yw_disk_release(app->disk); /* also after a start that failed */
        yw_disk_close(app->disk);   /* the store is closed: nothing reports to it any more */
        yw_runtime_destroy(app->rt);
    }
    yw_auth_destroy(app->auth);
    yw_tls_destroy(app->tls);
    /* Last: nothing updates the registry any more (the store's threads are joined). */
    yw_metrics_http_stop(app->metrics_http);
    yw_metrics_destroy(app->metrics);
    free(app);
}

/* Start-up failed: what was opened is closed (the store on the loop), then freed. */
static void yw__app_abort(yw_app_t *app)
{
    yw__server_destroy(app);
    if (app->store != NULL) {
        yw_store_close(app->store, yw__on_abort_closed, app);
        app->store = NULL;
        yw_runtime_run(app->rt);
    }
}

int yw_app_open(const yw_app_def_t *def, int argc, char **argv, yw_app_t **out, char *err,
                size_t errlen)
{
    yw_app_t *app = yw__app_new(def, err, errlen);
    if (app == NULL) {
        return -ENOMEM;
    }
    int rc = yw_config_parse(argc, argv, app->opts, app->n_opts, def->program, def->summary);
    if (rc != 0) {
        snprintf(err, errlen, "flags: %s",
                 rc > 0          ? "--help asked"
                 : rc == -ENOMEM ? "out of memory"
                                 : "not valid (see stderr)");
        free(app);
        return rc > 0 ? -EINVAL : rc;
    }
    if ((rc = yw_metrics_create(0, &app->metrics)) != 0) {
        snprintf(err, errlen, "out of memory");
        free(app);
        return rc;
    }
    if ((rc = yw_runtime_create(&app->rt)) != 0) {
        snprintf(err, errlen, "cannot create the runtime: %s", uv_strerror(rc));
        yw__app_free(app);
        return rc;
    }
    app->service = *def->service;
    app->service.ctx = app;
    if ((rc = yw__data_setup(app, err, errlen)) != 0 ||
        (def->init != NULL && (rc = def->init(app, err, errlen)) != 0)) {
        yw__app_abort(app);
        yw__app_free(app);
        return rc;
    }
    *out = app;
    return 0;
}

void yw_app_close(yw_app_t *app)
{
    app->stopping = 1;
    yw_disk_release(app->disk);
    yw__on_server_down(app); /* fini, fini_async, then the store closes */
    if (!app->store_closed) {
        yw_runtime_run(app->rt); /* until yw__on_store_closed() stops it */
    }
    yw__app_free(app);
}

int yw_app_main(int argc, char **argv, const yw_app_def_t *def)
{
    char err[512] = "";
    yw_app_t *app = yw__app_new(def, err, sizeof err);
    if (app == NULL) {
        fprintf(stderr, "%s: %s\n", def->program, err);
        return 1;
    }
    int rc = yw_config_parse(argc, argv, app->opts, app->n_opts, def->program, def->summary);
    if (rc != 0) {
        free(app);
        return rc > 0 ? 0 : rc == -ENOMEM ? 1 : 2;
    }
    int level = yw_log_level_parse(yw_app_option(app, "log-level"));
    if (level < 0) {
        fprintf(stderr, "%s: --log-level: must be debug, info, warn or error\n", def->program);
        free(app);
        return 2;
    }
    yw_log_init(def->program, (yw_log_level_t)level);
    signal(SIGPIPE, SIG_IGN);
    long nofile_was = 0, nofile = 0;
    int nrc = yw_listener_raise_fd_limit(&nofile_was, &nofile);
    if (nrc != 0) {
        yw_log(YW_LOG_WARN, "file limit: cannot raise %ld to the hard limit: %s", nofile_was,
               strerror(-nrc));
    } else if (nofile > nofile_was) {
        yw_log(YW_LOG_INFO, "file limit: raised from %ld to %ld descriptors", nofile_was, nofile);
    }
    if (yw_metrics_create(YW_METRICS_PROCESS, &app->metrics) != 0) {
        fprintf(stderr, "%s: out of memory\n", def->program);
        free(app);
        return 1;
    }

    rc = yw__app_setup(app, err, sizeof err);
    if (rc != 0) {
        yw_log(YW_LOG_ERROR, "cannot start: %s", err);
        fprintf(stderr, "%s: cannot start: %s\n", def->program, err);
        app->exit_code = 1;
        yw__app_abort(app);
    } else {
        yw_log(YW_LOG_INFO, "serving %s on %s (port %d, %s, auth %s, reflection %s)",
               def->service->name, yw_app_option(app, "listen"), yw_server_port(app->server),
               yw_tls_mutual(app->tls)   ? "mutual TLS"
               : yw_tls_serves(app->tls) ? "TLS"
                                         : "plaintext",
               app->auth != NULL ? "on" : "off",
               yw_app_option(app, "reflection") != NULL &&
                       strcasecmp(yw_app_option(app, "reflection"), "off") != 0 &&
                       strcmp(yw_app_option(app, "reflection"), "0") != 0
                   ? "on"
                   : "off");
        yw__notify("READY=1\nSTATUS=serving");
        yw_runtime_run(app->rt);
    }
    int code = app->exit_code;
    yw__app_free(app);
    return code;
}
