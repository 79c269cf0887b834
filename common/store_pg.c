/*
 * store_pg.c — the store on PostgreSQL (store.h, yw_store_config_t.pg_uri): open
 * (connect with retries up to pg_open_wait_ms, migrations under an advisory lock), a
 * pool of threads that run the jobs as transactions, yw_store_run_sync(), the listener
 * thread (LISTEN for yw_store_listen(), the health behind yw_store_available()), close.
 *
 * Why a pool of threads and not libpq's async API on the loop: libpq blocks in places
 * that have no async form (host name resolution in PQconnectStartParams, the GSS/SSL
 * handshakes' calls, PQfinish's final send), a job's work is written as straight-line
 * code over a connection (sql.h, the same work as on SQLite's writer and reader
 * threads), and the SQLite store already hands finished jobs to the loop from threads:
 * one mechanism for `done` (store_queue.c's done queue and uv_async). The threads wait on
 * the database with poll() and a deadline (store_pg_sql.c), so none blocks forever.
 *
 * Threads and locks: `pool` threads (twice as many with pg_read_uri: the read pool takes
 * the read queue) take jobs FIFO from the store's queues under the store's `mu`, each
 * with a connection of its own; the listener thread has its own connection and a pipe
 * that wakes it (a channel added, close). Notifications go to the loop like finished
 * jobs: a queue under `mu` and the store's uv_async. `available` is an atomic. The last
 * thread out sets writer_exited and wakes the loop, which joins them all and frees the
 * store (store.c), as with SQLite.
 */
#define _GNU_SOURCE /* pipe2 */
#include "common/store_pg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/log.h"

static const char yw__pg_begin_write[] = "BEGIN ISOLATION LEVEL READ COMMITTED";
static const char yw__pg_begin_read[] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/* ---- transactions ----------------------------------------------------------------- */

/** Rolls back what is open; a connection that cannot is closed (the server rolls back). */
static void yw__pg_rollback(yw__pg_conn_t *c)
{
    if (c->conn == NULL || PQtransactionStatus(c->conn) == PQTRANS_IDLE) {
        return;
    }
    int rc = c->base.sql_rc;
    char msg[sizeof c->base.sql_msg];
    memcpy(msg, c->base.sql_msg, sizeof msg);
    if (yw__pg_query(c, "ROLLBACK", 0, NULL, c->timeout_ms, NULL) != 0) {
        yw__pg_disconnect(c);
    }
    c->base.sql_rc = rc; /* the error that made us roll back stays the one reported */
    memcpy(c->base.sql_msg, msg, sizeof msg);
}

/**
 * Connects when the connection is not up. A connection whose last attempt failed less
 * than YW__PG_RETRY_MS ago, while the store is unavailable, fails at once: jobs fail
 * fast while the database is away. Returns 0, or -1 with `errmsg`.
 */
static int yw__pg_ensure(yw__pg_conn_t *c, char *errmsg, size_t errlen)
{
    if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_BAD) {
        yw__pg_disconnect(c);
    }
    if (c->conn != NULL) {
        return 0;
    }
    if (c->fail_ns != 0 && c->pg != NULL &&
        __atomic_load_n(&c->pg->available, __ATOMIC_ACQUIRE) == 0 &&
        uv_hrtime() - c->fail_ns < (uint64_t)YW__PG_RETRY_MS * 1000000u) {
        yw_errmsg_printf(errmsg, errlen, "store: PostgreSQL is unavailable: %s", c->fail_msg);
        return -1;
    }
    if (yw__pg_connect(c) != 0) {
        yw__pg_set_available(c->pg, 0);
        yw_errmsg_printf(errmsg, errlen, "store: PostgreSQL is unavailable: %s", c->fail_msg);
        return -1;
    }
    return 0;
}

/**
 * One transaction on `c`: BEGIN (`read`: REPEATABLE READ READ ONLY), `work`, COMMIT, or
 * ROLLBACK when work fails. Returns the status; a failure's message is in `errmsg`.
 */
static grpc_status_code yw__pg_txn(yw__pg_conn_t *c, bool read,
                                   grpc_status_code (*work)(yw_store_conn_t *conn, void *ctx),
                                   void *ctx, char *errmsg, size_t errlen)
{
    errmsg[0] = '\0';
    c->broken = false;
    for (int attempt = 0;; attempt++) {
        if (yw__pg_ensure(c, errmsg, errlen) != 0) {
            return GRPC_STATUS_UNAVAILABLE;
        }
        c->base.sql_rc = 0;
        c->base.sql_msg[0] = '\0';
        if (yw__pg_query(c, read ? yw__pg_begin_read : yw__pg_begin_write, 0, NULL, c->timeout_ms,
                         NULL) == 0) {
            break;
        }
        /*
         * Found lost at BEGIN (a server restarted since this connection's last job),
         * before any of the job ran: once more on a fresh connection. Not after a
         * timeout: the job has waited its pg_timeout_ms already.
         */
        if (c->conn == NULL && !c->timed_out && attempt == 0) {
            c->broken = false;
            continue;
        }
        yw_errmsg_printf(errmsg, errlen, "begin: %s", c->base.sql_msg);
        return c->base.sql_rc != 0 ? (grpc_status_code)c->base.sql_rc : GRPC_STATUS_INTERNAL;
    }

    grpc_status_code st = work(&c->base, ctx);
    errmsg[errlen - 1] = '\0';
    if (st != GRPC_STATUS_OK) {
        if (errmsg[0] == '\0') {
            yw_errmsg_printf(errmsg, errlen, "%s job failed with status %d",
                             read ? "read" : "write", (int)st);
        }
        yw__pg_rollback(c);
        return st;
    }
    if (c->conn == NULL || c->broken) {
        yw_errmsg_printf(errmsg, errlen, "commit: %s",
                         c->base.sql_msg[0] ? c->base.sql_msg
                                            : "the connection to PostgreSQL was lost");
        return GRPC_STATUS_UNAVAILABLE;
    }
    if (PQtransactionStatus(c->conn) == PQTRANS_INERROR) {
        yw_errmsg_printf(errmsg, errlen,
                         "commit: a statement of the job failed (%s) and the job went on; "
                         "rolled back",
                         c->base.sql_msg[0] ? c->base.sql_msg : "no message");
        yw__pg_rollback(c);
        return GRPC_STATUS_INTERNAL;
    }
    PGresult *res = NULL;
    if (yw__pg_query(c, "COMMIT", 0, NULL, c->timeout_ms, &res) != 0) {
        yw_errmsg_printf(errmsg, errlen, "commit: %s", c->base.sql_msg);
        st = c->base.sql_rc != 0 ? (grpc_status_code)c->base.sql_rc : GRPC_STATUS_INTERNAL;
        yw__pg_rollback(c);
        return st;
    }
    /* COMMIT of a transaction that failed answers ROLLBACK. */
    if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        yw_errmsg_printf(errmsg, errlen, "commit: PostgreSQL answered %s", PQcmdStatus(res));
        st = GRPC_STATUS_INTERNAL;
    }
    PQclear(res);
    return st;
}

static grpc_status_code yw__pg_job_work(yw_store_conn_t *conn, void *ctx)
{
    yw_store_job_t *job = ctx;
    return job->work(conn, job);
}

/* ---- threads ---------------------------------------------------------------------- */

/** A store thread is done: the last one out tells the loop (store.c frees the store). */
static void yw__pg_thread_exit(yw_store_t *store)
{
    pthread_mutex_lock(&store->mu);
    bool last = --store->pg->alive == 0;
    if (last) {
        store->writer_exited = true;
    }
    pthread_mutex_unlock(&store->mu);
    if (last) {
        (void)uv_async_send(&store->async);
    }
}

static void *yw__pg_pool_main(void *arg)
{
    yw__pg_worker_t *w = arg;
    yw_store_t *store = w->store;
    yw__pg_conn_t *c = w->conn;
    yw__queue_t *q = w->reads ? &store->reads : &store->writes;
    pthread_cond_t *cv = w->reads ? &store->reader_cv : &store->writer_cv;

    char unused[sizeof c->fail_msg];
    (void)yw__pg_ensure(c, unused, sizeof unused); /* ready before the first job */

    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (q->head == NULL && !store->closing) {
            pthread_cond_wait(cv, &store->mu);
        }
        yw_store_job_t *job = q->head;
        if (job == NULL) {
            break; /* closing, and every queued job is done */
        }
        q->head = job->yw_next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        job->yw_next = NULL;
        pthread_mutex_unlock(&store->mu);

        job->yw_status =
            yw__pg_txn(c, job->yw_read != 0, yw__pg_job_work, job, job->errmsg, sizeof job->errmsg);
        yw__store_post_done(store, job, job);

        pthread_mutex_lock(&store->mu);
    }
    pthread_mutex_unlock(&store->mu);
    yw__pg_conn_close(c);
    yw__pg_thread_exit(store);
    return NULL;
}

/** Hands a notification to the loop (payload copied; NULL: reconnected). */
static void yw__pg_post_note(yw_store_t *store, int channel, const char *payload)
{
    yw__pg_note_t *n = calloc(1, sizeof *n);
    if (n == NULL || (payload != NULL && (n->payload = strdup(payload)) == NULL)) {
        free(n);
        yw_log(YW_LOG_ERROR, "store: out of memory: a notification on PostgreSQL was dropped");
        return;
    }
    n->channel = channel;
    pthread_mutex_lock(&store->mu);
    if (store->pg->notes_tail != NULL) {
        store->pg->notes_tail->next = n;
    } else {
        store->pg->notes_head = n;
    }
    store->pg->notes_tail = n;
    pthread_mutex_unlock(&store->mu);
    (void)uv_async_send(&store->async);
}

/** The channel's index, or -1. */
static int yw__pg_channel_index(yw_store_t *store, const char *name)
{
    int found = -1;
    pthread_mutex_lock(&store->mu);
    for (int i = 0; i < store->pg->n_channels && found < 0; i++) {
        if (strcmp(store->pg->channels[i].name, name) == 0) {
            found = i;
        }
    }
    pthread_mutex_unlock(&store->mu);
    return found;
}

/** LISTENs on channels [*listened, n_channels). Returns 0, or -1 (connection dropped). */
static int yw__pg_listen_new(yw_store_t *store, yw__pg_conn_t *c, int *listened)
{
    for (;;) {
        char *name = NULL;
        pthread_mutex_lock(&store->mu);
        if (*listened < store->pg->n_channels) {
            name = store->pg->channels[*listened].name;
        }
        pthread_mutex_unlock(&store->mu);
        if (name == NULL) {
            return 0;
        }
        char *quoted = PQescapeIdentifier(c->conn, name, strlen(name));
        if (quoted == NULL) {
            yw__pg_disconnect(c);
            return -1;
        }
        char sql[300];
        snprintf(sql, sizeof sql, "LISTEN %s", quoted);
        PQfreemem(quoted);
        if (yw__pg_query(c, sql, 0, NULL, c->timeout_ms, NULL) != 0) {
            yw_log(YW_LOG_WARN, "store: LISTEN %s on PostgreSQL failed: %s", name, c->base.sql_msg);
            yw__pg_disconnect(c);
            return -1;
        }
        /* In force from here on: what changed before may have gone unheard (the first
         * LISTEN, or one after a reconnection). */
        yw__pg_post_note(store, *listened, NULL);
        (*listened)++;
    }
}

/** Hands every notification received on `c` to the loop. */
static void yw__pg_drain_notifies(yw_store_t *store, yw__pg_conn_t *c)
{
    PGnotify *n;
    while (c->conn != NULL && (n = PQnotifies(c->conn)) != NULL) {
        int ch = yw__pg_channel_index(store, n->relname);
        if (ch >= 0) {
            yw__pg_post_note(store, ch, n->extra != NULL ? n->extra : "");
        }
        PQfreemem(n);
    }
}

static bool yw__pg_closing(yw_store_t *store)
{
    pthread_mutex_lock(&store->mu);
    bool closing = store->closing;
    pthread_mutex_unlock(&store->mu);
    return closing;
}

/** Waits on the wake pipe (and `fd` when >= 0) up to `ms`; drains the pipe. POLLIN of fd. */
static int yw__pg_listener_wait(yw__pg_t *pg, int fd, int ms)
{
    struct pollfd pfd[2] = {{.fd = pg->wake[0], .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int r = poll(pfd, fd >= 0 ? 2 : 1, ms);
    if (r > 0 && (pfd[0].revents & POLLIN)) {
        char buf[64];
        while (read(pg->wake[0], buf, sizeof buf) > 0) {
        }
    }
    return r > 0 && fd >= 0 ? pfd[1].revents : 0;
}

/**
 * The listener: keeps a connection with LISTEN on every channel, hands notifications to
 * the loop, and is the health probe behind yw_store_available(): it probes an idle
 * connection every YW__PG_PROBE_MS (and at once when a job found the database away),
 * and reconnects every YW__PG_LISTEN_RETRY_MS while it cannot.
 */
static void *yw__pg_listener_main(void *arg)
{
    yw_store_t *store = arg;
    yw__pg_t *pg = store->pg;
    yw__pg_conn_t *c = &pg->listen_conn;
    bool ever = false, told_down = false;
    int listened = 0;
    uint64_t last_probe = uv_hrtime();

    while (!yw__pg_closing(store)) {
        if (c->conn == NULL) {
            if (yw__pg_connect(c) != 0) {
                yw__pg_set_available(pg, 0);
                if (!told_down) {
                    yw_log(YW_LOG_WARN, "store: PostgreSQL at %s is unavailable: %s", pg->shown,
                           c->fail_msg);
                    told_down = true;
                }
                (void)yw__pg_listener_wait(pg, -1, YW__PG_LISTEN_RETRY_MS);
                continue;
            }
            listened = 0;
            if (yw__pg_listen_new(store, c, &listened) != 0) {
                continue;
            }
            if (ever) {
                /* Every channel was LISTENed again, each with its NULL payload. */
                yw_log(YW_LOG_INFO, "store: PostgreSQL at %s answers again", pg->shown);
            }
            ever = true;
            told_down = false;
            yw__pg_set_available(pg, 1);
            last_probe = uv_hrtime();
        }
        if (yw__pg_listen_new(store, c, &listened) != 0) {
            continue;
        }
        uint64_t now = uv_hrtime();
        bool avail = __atomic_load_n(&pg->available, __ATOMIC_ACQUIRE) != 0;
        if (!avail || now - last_probe >= (uint64_t)YW__PG_PROBE_MS * 1000000u) {
            last_probe = now;
            if (yw__pg_query(c, "SELECT 1", 0, NULL, c->timeout_ms, NULL) != 0) {
                yw__pg_disconnect(c);
                yw__pg_set_available(pg, 0);
                continue;
            }
            yw__pg_set_available(pg, 1);
            yw__pg_drain_notifies(store, c);
        }
        int ev = yw__pg_listener_wait(pg, PQsocket(c->conn), YW__PG_LISTEN_POLL_MS);
        if (ev != 0) {
            if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD) {
                yw__pg_disconnect(c);
                yw__pg_set_available(pg, 0);
                continue;
            }
            yw__pg_drain_notifies(store, c);
        }
    }
    yw__pg_conn_close(c);
    yw__pg_thread_exit(store);
    return NULL;
}

/* ---- open ------------------------------------------------------------------------- */

static int yw__pg_validate(const yw_store_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->pg_schema == NULL || cfg->pg_schema[0] == '\0') {
        yw_errmsg_printf(err, errlen, "store: pg_schema is required with pg_uri");
        return -EINVAL;
    }
    if (cfg->n_pg_migrations > 0 && cfg->pg_migrations == NULL) {
        yw_errmsg_printf(err, errlen, "store: n_pg_migrations is %zu but pg_migrations is NULL",
                         cfg->n_pg_migrations);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_pg_migrations; i++) {
        if (cfg->pg_migrations[i].version != (int)i + 1 || cfg->pg_migrations[i].sql == NULL) {
            yw_errmsg_printf(err, errlen,
                             "store: pg_migrations[%zu]: version must be %zu (start at 1, "
                             "increase by one) and sql set; got version %d",
                             i, i + 1, cfg->pg_migrations[i].version);
            return -EINVAL;
        }
    }
    if (cfg->pg_pool < 0 || cfg->pg_pool > YW__PG_MAX_POOL) {
        yw_errmsg_printf(err, errlen, "store: pg_pool must be 0..%d, got %d", YW__PG_MAX_POOL,
                         cfg->pg_pool);
        return -EINVAL;
    }
    if (cfg->pg_timeout_ms < 0 || cfg->pg_open_wait_ms < 0) {
        yw_errmsg_printf(err, errlen, "store: pg_timeout_ms and pg_open_wait_ms must be >= 0");
        return -EINVAL;
    }
    return 0;
}

/** FNV-1a, 64 bits: the advisory lock key of a schema's migrations. */
static int64_t yw__pg_lock_key(const char *schema)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *p = "yw_schema_versions:"; *p; p++) {
        h = (h ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
    }
    for (const char *p = schema; *p; p++) {
        h = (h ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
    }
    return (int64_t)h;
}

/** Connects, trying again with backoff until `wait_ms` has passed, logging each failure. */
static int yw__pg_connect_wait(yw__pg_conn_t *c, const char *shown, int wait_ms, char *err,
                               size_t errlen)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)wait_ms * 1000000u;
    int backoff = 100;
    for (int attempt = 1;; attempt++) {
        if (yw__pg_connect(c) == 0) {
            return 0;
        }
        uint64_t now = uv_hrtime();
        if (now >= deadline) {
            yw_errmsg_printf(err, errlen,
                             "store: cannot reach PostgreSQL at %s within %d ms (%d attempts): %s",
                             shown, wait_ms, attempt, c->fail_msg);
            return -ETIMEDOUT;
        }
        int left = (int)((deadline - now) / 1000000u);
        int sleep_ms = backoff < left ? backoff : left;
        yw_log(YW_LOG_WARN, "store: cannot reach PostgreSQL at %s (attempt %d): %s; again in %d ms",
               shown, attempt, c->fail_msg, sleep_ms);
        usleep((useconds_t)sleep_ms * 1000u);
        backoff = backoff * 2 < 2000 ? backoff * 2 : 2000;
    }
}

/**
 * The migrations, under a session advisory lock on the schema's name so that processes
 * starting together migrate once; each in its own transaction with its version bump.
 */
static int yw__pg_migrate(yw__pg_conn_t *c, const yw_store_config_t *cfg, int wait_ms,
                          const char *shown, int *version, char *err, size_t errlen)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)yw__pg_lock_key(cfg->pg_schema));
    const char *kv[] = {key};
    const char *what = "lock";
    PGresult *res = NULL;
    int current = 0;
    if (yw__pg_query(c, "SELECT pg_advisory_lock($1::bigint)", 1, kv, wait_ms, NULL) != 0) {
        goto fail;
    }
    what = "create yw_schema_versions";
    if (yw__pg_query(c,
                     "CREATE TABLE IF NOT EXISTS yw_schema_versions("
                     "schema TEXT PRIMARY KEY, version INTEGER NOT NULL)",
                     0, NULL, wait_ms, NULL) != 0) {
        goto fail;
    }
    what = "read the schema version";
    const char *sv[] = {cfg->pg_schema};
    if (yw__pg_query(c, "SELECT version FROM yw_schema_versions WHERE schema = $1", 1, sv, wait_ms,
                     &res) != 0) {
        goto fail;
    }
    current = PQntuples(res) > 0 ? atoi(PQgetvalue(res, 0, 0)) : 0;
    PQclear(res);
    if (current > (int)cfg->n_pg_migrations) {
        yw_errmsg_printf(err, errlen,
                         "store: %s: schema %s is at version %d, newer than this build knows "
                         "(%zu); refusing to open it",
                         shown, cfg->pg_schema, current, cfg->n_pg_migrations);
        (void)yw__pg_query(c, "SELECT pg_advisory_unlock($1::bigint)", 1, kv, wait_ms, NULL);
        return -ENOTSUP;
    }
    char mwhat[64];
    for (size_t i = (size_t)current; i < cfg->n_pg_migrations; i++) {
        const yw_migration_t *m = &cfg->pg_migrations[i];
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *vv[] = {cfg->pg_schema, ver};
        snprintf(mwhat, sizeof mwhat, "migration %d", m->version);
        what = mwhat;
        if (yw__pg_query(c, "BEGIN", 0, NULL, wait_ms, NULL) != 0 ||
            yw__pg_query(c, m->sql, 0, NULL, wait_ms, NULL) != 0 ||
            yw__pg_query(c,
                         "INSERT INTO yw_schema_versions(schema, version) VALUES ($1, $2::int) "
                         "ON CONFLICT (schema) DO UPDATE SET version = EXCLUDED.version",
                         2, vv, wait_ms, NULL) != 0 ||
            yw__pg_query(c, "COMMIT", 0, NULL, wait_ms, NULL) != 0) {
            yw__pg_rollback(c);
            goto fail;
        }
        current = m->version;
    }
    what = "unlock";
    if (yw__pg_query(c, "SELECT pg_advisory_unlock($1::bigint)", 1, kv, wait_ms, NULL) != 0) {
        goto fail;
    }
    *version = current;
    return 0;
fail:
    yw_errmsg_printf(err, errlen, "store: %s: schema %s: %s: %s", shown, cfg->pg_schema, what,
                     c->base.sql_msg);
    return c->base.sql_rc == GRPC_STATUS_UNAVAILABLE ? -EIO : -EINVAL;
}

/** Frees the PostgreSQL half of a store whose threads have been joined (or never ran). */
void yw__pg_free(yw_store_t *store)
{
    yw__pg_t *pg = store->pg;
    if (pg == NULL) {
        return;
    }
    for (int i = 0; pg->conns != NULL && i < pg->n_conns; i++) {
        yw__pg_conn_close(&pg->conns[i]);
    }
    yw__pg_conn_close(&pg->listen_conn);
    for (yw__pg_note_t *n = pg->notes_head, *next; n != NULL; n = next) {
        next = n->next;
        free(n->payload);
        free(n);
    }
    for (int i = 0; i < pg->n_channels; i++) {
        free(pg->channels[i].name);
    }
    if (pg->wake[0] >= 0) {
        close(pg->wake[0]);
        close(pg->wake[1]);
    }
    free(pg->conns);
    free(pg->workers);
    free(pg->threads);
    free(pg->uri);
    free(pg->read_uri);
    free(pg);
    store->pg = NULL;
}

/** Starts the pool and the listener with every signal blocked (the loop takes them). */
static int yw__pg_start_threads(yw_store_t *store, char *err, size_t errlen)
{
    yw__pg_t *pg = store->pg;
    sigset_t all, old;
    sigfillset(&all);
    int e = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (e != 0) {
        yw_errmsg_printf(err, errlen, "store: pthread_sigmask: %s", strerror(e));
        return -e;
    }
    pthread_mutex_lock(&store->mu);
    pg->alive = pg->n_conns + 1;
    pthread_mutex_unlock(&store->mu);
    for (int i = 0; i < pg->n_conns && e == 0; i++) {
        e = pthread_create(&pg->threads[i], NULL, yw__pg_pool_main, &pg->workers[i]);
        if (e == 0) {
            pg->started++;
        }
    }
    if (e == 0) {
        e = pthread_create(&pg->listener, NULL, yw__pg_listener_main, store);
        pg->listener_started = e == 0;
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_mutex_lock(&store->mu);
        pg->alive -= pg->n_conns - pg->started + (pg->listener_started ? 0 : 1);
        pthread_mutex_unlock(&store->mu);
        yw_errmsg_printf(err, errlen, "store: cannot start threads: %s", strerror(e));
        return -e;
    }
    return 0;
}

int yw__pg_store_open(uv_loop_t *loop, const yw_store_config_t *cfg, yw_store_t **out, char *err,
                      size_t errlen)
{
    int e = yw__pg_validate(cfg, err, errlen);
    if (e != 0) {
        return e;
    }
    yw_store_t *store = calloc(1, sizeof *store);
    yw__pg_t *pg = calloc(1, sizeof *pg);
    if (store == NULL || pg == NULL) {
        free(store);
        free(pg);
        yw_errmsg_printf(err, errlen, "store: out of memory");
        return -ENOMEM;
    }
    store->loop = loop;
    store->pg = pg;
    pthread_mutex_init(&store->mu, NULL);
    pthread_mutex_init(&store->writer_mu, NULL);
    pthread_cond_init(&store->writer_cv, NULL);
    pthread_cond_init(&store->reader_cv, NULL);
    pg->wake[0] = pg->wake[1] = -1;
    pg->available = 1;
    pg->timeout_ms = cfg->pg_timeout_ms > 0 ? cfg->pg_timeout_ms : YW__PG_DEFAULT_TIMEOUT_MS;
    pg->pool = cfg->pg_pool > 0 ? cfg->pg_pool : YW__PG_DEFAULT_POOL;
    pg->uri = strdup(cfg->pg_uri);
    bool has_read = cfg->pg_read_uri != NULL && cfg->pg_read_uri[0] != '\0';
    pg->read_uri = has_read ? strdup(cfg->pg_read_uri) : NULL;
    store->pg_read_pool = has_read;
    pg->n_conns = has_read ? 2 * pg->pool : pg->pool;
    pg->conns = calloc((size_t)pg->n_conns, sizeof *pg->conns);
    pg->workers = calloc((size_t)pg->n_conns, sizeof *pg->workers);
    pg->threads = calloc((size_t)pg->n_conns, sizeof *pg->threads);
    if (pg->uri == NULL || (has_read && pg->read_uri == NULL) || pg->conns == NULL ||
        pg->workers == NULL || pg->threads == NULL || pipe2(pg->wake, O_CLOEXEC | O_NONBLOCK)) {
        yw_errmsg_printf(err, errlen, "store: out of memory or descriptors");
        yw__store_free(store);
        return -ENOMEM;
    }
    yw_pg_redact_uri(pg->uri, pg->shown, sizeof pg->shown);
    yw_pg_redact_uri(has_read ? pg->read_uri : pg->uri, pg->read_shown, sizeof pg->read_shown);
    /*
     * A statement we stopped waiting for (pg_timeout_ms) must not run on in the server,
     * holding its transaction's locks: the server cancels it a second later.
     */
    snprintf(pg->options, sizeof pg->options, "-c statement_timeout=%d", pg->timeout_ms + 1000);
    for (int i = 0; i < pg->n_conns; i++) {
        bool reads = i >= pg->pool;
        /* A standby away does not make the primary unavailable: no `pg` for the reads. */
        yw__pg_conn_init(&pg->conns[i], reads ? NULL : pg, reads ? pg->read_uri : pg->uri,
                         pg->timeout_ms);
        pg->conns[i].options = pg->options;
        pg->workers[i] = (yw__pg_worker_t){store, &pg->conns[i], reads};
    }
    yw__pg_conn_init(&pg->listen_conn, pg, pg->uri, pg->timeout_ms);
    pg->listen_conn.options = pg->options;

    /* Migrations on a connection of their own, closed after. */
    int wait_ms = cfg->pg_open_wait_ms > 0 ? cfg->pg_open_wait_ms : YW__PG_DEFAULT_OPEN_WAIT_MS;
    yw__pg_conn_t mig;
    yw__pg_conn_init(&mig, NULL, pg->uri, pg->timeout_ms);
    e = yw__pg_connect_wait(&mig, pg->shown, wait_ms, err, errlen);
    if (e == 0) {
        e = yw__pg_migrate(&mig, cfg, wait_ms, pg->shown, &store->schema_version, err, errlen);
    }
    yw__pg_conn_close(&mig);
    if (e == 0) {
        e = uv_async_init(loop, &store->async, yw__store_on_async);
        if (e != 0) {
            yw_errmsg_printf(err, errlen, "store: uv_async_init: %s", uv_strerror(e));
        }
    }
    if (e != 0) {
        yw__store_free(store);
        return e;
    }
    store->async.data = store;
    e = yw__pg_start_threads(store, err, errlen);
    if (e != 0) {
        /* Threads that started exit at once on `closing`; the loop frees the store. */
        yw_store_close(store, NULL, NULL);
        pthread_mutex_lock(&store->mu);
        bool none = pg->alive == 0;
        pthread_mutex_unlock(&store->mu);
        if (none) {
            yw__store_finish_close(store);
        }
        return e;
    }
    *out = store;
    return 0;
}

/* ---- the loop's side -------------------------------------------------------------- */

/** Joins the threads (they have exited). */
void yw__pg_join(yw_store_t *store)
{
    yw__pg_t *pg = store->pg;
    for (int i = 0; i < pg->started; i++) {
        pthread_join(pg->threads[i], NULL);
    }
    pg->started = 0;
    if (pg->listener_started) {
        pthread_join(pg->listener, NULL);
        pg->listener_started = false;
    }
}

/** Wakes the listener (close, a new channel). */
void yw__pg_wake(yw_store_t *store)
{
    if (store->pg->wake[1] >= 0) {
        ssize_t n = write(store->pg->wake[1], "w", 1);
        (void)n; /* a full pipe already wakes it */
    }
}

/** Runs the callbacks of the notifications received (loop). */
void yw__pg_deliver(yw_store_t *store)
{
    pthread_mutex_lock(&store->mu);
    yw__pg_note_t *n = store->pg->notes_head;
    store->pg->notes_head = store->pg->notes_tail = NULL;
    pthread_mutex_unlock(&store->mu);
    while (n != NULL) {
        yw__pg_note_t *next = n->next;
        /* Channels are only added and unlistened on this thread: no lock to read them. */
        yw__pg_channel_t *ch = &store->pg->channels[n->channel];
        if (ch->cb != NULL) {
            ch->cb(ch->arg, n->payload);
        }
        free(n->payload);
        free(n);
        n = next;
    }
}

void yw__pg_unlisten(yw_store_t *store, const char *channel)
{
    pthread_mutex_lock(&store->mu);
    for (int i = 0; i < store->pg->n_channels; i++) {
        if (strcmp(store->pg->channels[i].name, channel) == 0) {
            store->pg->channels[i].cb = NULL; /* the server may go on sending: dropped */
            store->pg->channels[i].arg = NULL;
        }
    }
    pthread_mutex_unlock(&store->mu);
}

int yw__pg_listen(yw_store_t *store, const char *channel,
                  void (*cb)(void *arg, const char *payload), void *arg)
{
    yw__pg_t *pg = store->pg;
    if (strlen(channel) > 63) {
        return -ENAMETOOLONG; /* PostgreSQL's identifiers are at most 63 bytes */
    }
    char *name = strdup(channel);
    if (name == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&store->mu);
    int e = 0;
    if (store->closing) {
        e = -ESHUTDOWN;
    } else if (pg->n_channels >= YW__PG_MAX_CHANNELS) {
        e = -ENOSPC;
    } else {
        for (int i = 0; i < pg->n_channels; i++) {
            if (strcmp(pg->channels[i].name, channel) == 0) {
                e = -EEXIST;
            }
        }
    }
    if (e == 0) {
        pg->channels[pg->n_channels++] = (yw__pg_channel_t){name, cb, arg};
    }
    pthread_mutex_unlock(&store->mu);
    if (e != 0) {
        free(name);
        return e;
    }
    yw__pg_wake(store);
    return 0;
}

int yw__pg_available(const yw_store_t *store)
{
    return __atomic_load_n(&store->pg->available, __ATOMIC_ACQUIRE);
}

typedef struct {
    grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg);
    void *arg;
} yw__pg_sync_t;

static grpc_status_code yw__pg_sync_work(yw_store_conn_t *conn, void *ctx)
{
    yw__pg_sync_t *s = ctx;
    return s->fn(conn, s->arg);
}

grpc_status_code yw__pg_run_sync(yw_store_t *store,
                                 grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg),
                                 void *arg, char *err, size_t errlen)
{
    /* A connection of its own: the pool's belong to their threads. */
    yw__pg_conn_t c;
    yw__pg_conn_init(&c, store->pg, store->pg->uri, store->pg->timeout_ms);
    c.options = store->pg->options;
    yw__pg_sync_t s = {fn, arg};
    char msg[256];
    grpc_status_code st = yw__pg_txn(&c, false, yw__pg_sync_work, &s, msg, sizeof msg);
    yw__pg_conn_close(&c);
    if (st != GRPC_STATUS_OK) {
        yw_errmsg_printf(err, errlen, "run_sync: %s", msg);
    }
    return st;
}
