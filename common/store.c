/*
 * store.c — the store's life: yw_store_open() checks the config, opens the connections
 * (store_open.c) and starts the writer and reader threads; yw_store_close() lets them
 * finish, and the loop joins them and frees the store. See store.h for the API and
 * store_internal.h for the threads, the locks, shutdown and the store's other files.
 */
#include "common/store_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"

static int yw__validate(const yw_store_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL || cfg->path == NULL || cfg->path[0] == '\0') {
        yw_errmsg_printf(err, errlen, "store: path is required");
        return -EINVAL;
    }
    if (strcmp(cfg->path, ":memory:") == 0 || strncmp(cfg->path, "file:", 5) == 0) {
        yw_errmsg_printf(err, errlen, "store: path %s: must be a file name (readers open it too)",
                         cfg->path);
        return -EINVAL;
    }
    if (cfg->n_migrations > 0 && cfg->migrations == NULL) {
        yw_errmsg_printf(err, errlen, "store: n_migrations is %zu but migrations is NULL",
                         cfg->n_migrations);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        if (cfg->migrations[i].version != (int)i + 1 || cfg->migrations[i].sql == NULL) {
            yw_errmsg_printf(
                err, errlen,
                "store: migrations[%zu]: version must be %zu (start at 1, increase by one) "
                "and sql set; got version %d",
                i, i + 1, cfg->migrations[i].version);
            return -EINVAL;
        }
    }
    if (cfg->readers < 0 || cfg->readers > YW__MAX_READERS) {
        yw_errmsg_printf(err, errlen, "store: readers must be 0..%d, got %d", YW__MAX_READERS,
                         cfg->readers);
        return -EINVAL;
    }
    if (cfg->max_group < 0) {
        yw_errmsg_printf(err, errlen, "store: max_group must be >= 0, got %d", cfg->max_group);
        return -EINVAL;
    }
    return 0;
}

/** Starts the readers, then the writer (which waits for the readers it counts). */
static int yw__start_threads(yw_store_t *store, char *err, size_t errlen)
{
    /* Store threads take no signals: the loop thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    int e = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (e != 0) {
        yw_errmsg_printf(err, errlen, "store: pthread_sigmask: %s", strerror(e));
        return -e;
    }
    for (int i = 0; i < store->n_readers && e == 0; i++) {
        yw__reader_arg_t *ra = malloc(sizeof *ra);
        if (ra == NULL) {
            e = ENOMEM;
            break;
        }
        ra->store = store;
        ra->conn = &store->readers[i];
        pthread_mutex_lock(&store->mu);
        store->readers_alive++;
        pthread_mutex_unlock(&store->mu);
        e = pthread_create(&store->reader_threads[i], NULL, yw__store_reader_main, ra);
        if (e != 0) {
            free(ra);
            pthread_mutex_lock(&store->mu);
            store->readers_alive--;
            pthread_mutex_unlock(&store->mu);
            break;
        }
        store->readers_started++;
    }
    if (e == 0) {
        e = pthread_create(&store->writer_thread, NULL, yw__store_writer_main, store);
        if (e == 0) {
            store->writer_started = true;
        }
    }
    int e2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e == 0 && e2 != 0) {
        e = e2; /* the threads run; the caller's mask could not be put back */
    }
    if (e != 0) {
        yw_errmsg_printf(err, errlen, "store: cannot start threads: %s", strerror(e));
        return -e;
    }
    return 0;
}

/** Frees the store: its threads have been joined (or never started), connections closed. */
void yw__store_free(yw_store_t *store)
{
    yw__pg_free(store);
    pthread_mutex_destroy(&store->mu);
    pthread_mutex_destroy(&store->writer_mu);
    pthread_cond_destroy(&store->writer_cv);
    pthread_cond_destroy(&store->reader_cv);
    free(store->readers);
    free(store->reader_threads);
    free(store);
}

/** Frees a store whose threads never started and whose async handle is not open. */
static void yw__free_unstarted(yw_store_t *store)
{
    yw__store_conn_close(&store->writer);
    for (int i = 0; store->readers != NULL && i < store->n_readers; i++) {
        yw__store_conn_close(&store->readers[i]);
    }
    yw__store_free(store);
}

int yw_store_open(uv_loop_t *loop, const yw_store_config_t *cfg, yw_store_t **out, char *err,
                  size_t errlen)
{
    yw_errmsg_printf(err, errlen, "%s", "");
    if (out == NULL || loop == NULL) {
        yw_errmsg_printf(err, errlen, "store: loop and out are required");
        return -EINVAL;
    }
    *out = NULL;
    if (cfg != NULL && cfg->pg_uri != NULL && cfg->pg_uri[0] != '\0') {
        return yw__pg_store_open(loop, cfg, out, err, errlen); /* store_pg.c */
    }
    int e = yw__validate(cfg, err, errlen);
    if (e != 0) {
        return e;
    }

    yw_store_t *store = calloc(1, sizeof *store);
    if (store == NULL) {
        yw_errmsg_printf(err, errlen, "%s: out of memory", cfg->path);
        return -ENOMEM;
    }
    store->loop = loop;
    store->max_group = cfg->max_group > 0 ? cfg->max_group : YW__DEFAULT_MAX_GROUP;
    store->n_readers = cfg->readers > 0 ? cfg->readers : YW__DEFAULT_READERS;
    store->on_commit = cfg->on_commit;
    store->on_commit_arg = cfg->on_commit_arg;
    store->on_full = cfg->on_full;
    store->on_full_arg = cfg->on_full_arg;
    store->ship = cfg->ship;
    store->ship_arg = cfg->ship_arg;
    pthread_mutex_init(&store->mu, NULL);
    pthread_mutex_init(&store->writer_mu, NULL);
    pthread_cond_init(&store->writer_cv, NULL);
    pthread_cond_init(&store->reader_cv, NULL);
    store->readers = calloc((size_t)store->n_readers, sizeof *store->readers);
    store->reader_threads = calloc((size_t)store->n_readers, sizeof *store->reader_threads);
    if (store->readers == NULL || store->reader_threads == NULL) {
        yw_errmsg_printf(err, errlen, "%s: out of memory", cfg->path);
        yw__free_unstarted(store);
        return -ENOMEM;
    }

    e = yw__store_open_writer(store, cfg, err, errlen);
    for (int i = 0; e == 0 && i < store->n_readers; i++) {
        e = yw__store_open_reader(&store->readers[i], cfg->path, err, errlen);
    }
    if (e == 0) {
        e = uv_async_init(loop, &store->async, yw__store_on_async);
        if (e != 0) {
            yw_errmsg_printf(err, errlen, "store: uv_async_init: %s", uv_strerror(e));
        }
    }
    if (e != 0) {
        yw__free_unstarted(store);
        return e;
    }
    store->async.data = store;

    e = yw__start_threads(store, err, errlen);
    if (e != 0) {
        /*
         * The threads that did start exit at once on `closing`; the store is freed when
         * the loop runs the async handle's close callback. Nothing is called back.
         */
        pthread_mutex_lock(&store->mu);
        store->closing = true;
        pthread_cond_broadcast(&store->writer_cv);
        pthread_cond_broadcast(&store->reader_cv);
        pthread_mutex_unlock(&store->mu);
        yw__store_finish_close(store);
        return e;
    }
    *out = store;
    return 0;
}

static void yw__on_async_closed(uv_handle_t *handle)
{
    yw_store_t *store = handle->data;
    void (*closed)(void *) = store->closed;
    void *arg = store->closed_arg;
    yw__store_free(store);
    if (closed != NULL) {
        closed(arg);
    }
}

/** Joins the threads (they have finished) and closes the async handle. */
void yw__store_finish_close(yw_store_t *store)
{
    if (store->pg != NULL) {
        yw__pg_join(store);
    }
    if (store->writer_started) {
        pthread_join(store->writer_thread, NULL);
        store->writer_started = false;
    }
    for (int i = 0; i < store->readers_started; i++) {
        pthread_join(store->reader_threads[i], NULL);
    }
    store->readers_started = 0;
    /* Connections not handed to a thread (a failed open) are closed here. */
    yw__store_conn_close(&store->writer);
    for (int i = 0; i < store->n_readers; i++) {
        yw__store_conn_close(&store->readers[i]);
    }
    uv_close((uv_handle_t *)&store->async, yw__on_async_closed);
}

void yw_store_close(yw_store_t *store, void (*closed)(void *arg), void *arg)
{
    pthread_mutex_lock(&store->mu);
    if (store->closing) {
        pthread_mutex_unlock(&store->mu);
        return; /* closed twice: the first call's `closed` stands */
    }
    store->closing = true;
    store->closed = closed;
    store->closed_arg = arg;
    pthread_cond_broadcast(&store->writer_cv);
    pthread_cond_broadcast(&store->reader_cv);
    pthread_mutex_unlock(&store->mu);
    if (store->pg != NULL) {
        yw__pg_wake(store);
    }
}

int yw_store_schema_version(const yw_store_t *store)
{
    return store->schema_version;
}

int yw_store_is_postgres(const yw_store_t *store)
{
    return store->pg != NULL;
}

int yw_store_available(const yw_store_t *store)
{
    /* SQLite: the file is always there. */
    return store->pg != NULL ? yw__pg_available(store) : 1;
}

int yw_store_listen(yw_store_t *store, const char *channel,
                    void (*cb)(void *arg, const char *payload), void *arg)
{
    if (store == NULL || channel == NULL || channel[0] == '\0' || cb == NULL) {
        return -EINVAL;
    }
    if (store->pg != NULL) {
        return yw__pg_listen(store, channel, cb, arg);
    }
    return 0; /* SQLite: one process, whose done callbacks know every change */
}

void yw_store_unlisten(yw_store_t *store, const char *channel)
{
    if (store != NULL && channel != NULL && store->pg != NULL) {
        yw__pg_unlisten(store, channel);
    }
}
