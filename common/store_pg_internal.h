/*
 * store_pg_internal.h — the private half of the PostgreSQL store, shared by
 *
 *   store_pg.c      open (connect with retries, migrations under an advisory lock), the
 *                   pool threads and their transactions, yw_store_run_sync(), the
 *                   listener thread (LISTEN, notifications, the health probe), close
 *   store_pg_sql.c  one connection: bounded connect, every statement through libpq's
 *                   async API with a deadline, the statement cache, sql.h's PostgreSQL
 *                   half, SQLSTATE to status (store_pg.h's helpers)
 *
 * Threads and locks: every yw__pg_conn_t is used by one thread at a time (its pool
 * thread, the listener, or the thread that opens the store or runs run_sync). The
 * store's `mu` (store_internal.h) guards the job queues, `alive`, the channels and the
 * notification queue; `available` is an atomic. Finished jobs and notifications reach
 * the loop through the store's one uv_async (store_queue.c).
 */
#ifndef YW_STORE_PG_INTERNAL_H
#define YW_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/sql_internal.h"
#include "common/store_internal.h"
#include "common/store_pg.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    YW__PG_DEFAULT_POOL = 4,
    YW__PG_MAX_POOL = 64,
    YW__PG_DEFAULT_TIMEOUT_MS = 5000,
    YW__PG_DEFAULT_OPEN_WAIT_MS = 30000,
    YW__PG_MAX_CHANNELS = 8,
    /** A connection that failed to connect less than this ago fails jobs at once. */
    YW__PG_RETRY_MS = 250,
    /** The listener: its poll, its reconnect pace, and its probe of an idle connection. */
    YW__PG_LISTEN_POLL_MS = 250,
    YW__PG_LISTEN_RETRY_MS = 300,
    YW__PG_PROBE_MS = 1000,
};

typedef struct st_yw__pg_t yw__pg_t;

/**
 * One connection. `base` first: a job's work gets &base (backend YW_SQL_POSTGRES, db
 * NULL), its cache holds this connection's yw__pg_sql_t statements.
 */
typedef struct st_yw__pg_conn_t {
    yw_store_conn_t base;
    yw__pg_t *pg; /* whose `available` its failures clear; NULL: none (the read pool's) */
    const char *uri;
    const char *options; /* libpq "options" (server settings), or NULL */
    int timeout_ms;
    PGconn *conn;     /* NULL while not connected */
    unsigned gen;     /* +1 at every connect: statements prepared before are gone */
    unsigned n_names; /* statements named so far ("s1", "s2", ...) */
    bool broken;      /* lost during this transaction: fail its statements, do not reconnect */
    bool timed_out;   /* the last loss was a statement that did not answer in time */
    uint64_t fail_ns; /* when the last connect failed (uv_hrtime), 0 if it did not */
    char fail_msg[200];
} yw__pg_conn_t;

/** A parameter: its text (or NULL for SQL NULL) and its type at the first execution. */
typedef struct st_yw__pg_param_t {
    char buf[32];
} yw__pg_param_t;

/** sql.h's statement on PostgreSQL. */
typedef struct st_yw__pg_sql_t {
    struct st_yw_sql_t base;
    char *text; /* the SQL with $N */
    char name[16];
    unsigned prepared_gen; /* the connection's gen when prepared; 0: never */
    int nparams;
    const char **values;  /* nparams: into bufs or the caller's text; NULL: SQL NULL */
    Oid *types;           /* nparams */
    yw__pg_param_t *bufs; /* nparams */
    int bind_error;       /* the first parameter bound that does not exist; 0: none */
    bool executed;
    PGresult *res;
    int row; /* the current row; -1 before the first */
    int nrows;
    int64_t changes;
} yw__pg_sql_t;

/** A notification for the loop: the payload (NULL: reconnected) of channel `channel`. */
typedef struct st_yw__pg_note_t {
    struct st_yw__pg_note_t *next;
    int channel;
    char *payload;
} yw__pg_note_t;

typedef struct st_yw__pg_channel_t {
    char *name;
    void (*cb)(void *arg, const char *payload);
    void *arg;
} yw__pg_channel_t;

/** A pool thread's argument. */
typedef struct st_yw__pg_worker_t {
    yw_store_t *store;
    yw__pg_conn_t *conn;
    bool reads; /* of the read pool (pg_read_uri) */
} yw__pg_worker_t;

struct st_yw__pg_t {
    char *uri;
    char *read_uri;  /* NULL: reads share the pool */
    char shown[256]; /* uri with its password hidden */
    char read_shown[256];
    char options[64]; /* the pool's and the listener's connections: statement_timeout */
    int timeout_ms;
    int pool;
    int n_conns; /* pool, or 2 * pool with a read pool (the read pool last) */
    yw__pg_conn_t *conns;
    yw__pg_worker_t *workers;
    pthread_t *threads;
    int started;
    int alive; /* threads running (mu); the last out sets store->writer_exited */

    yw__pg_conn_t listen_conn;
    pthread_t listener;
    bool listener_started;
    int wake[2]; /* pipe: wakes the listener (a new channel, close) */

    yw__pg_channel_t channels[YW__PG_MAX_CHANNELS]; /* appended on the loop, under mu */
    int n_channels;
    yw__pg_note_t *notes_head, *notes_tail; /* mu */

    int available; /* atomic */
};

/* ---- store_pg_sql.c ---- */

/** A connection to `uri` (not connected yet). */
void yw__pg_conn_init(yw__pg_conn_t *c, yw__pg_t *pg, const char *uri, int timeout_ms);

/** Connects, bounded by c->timeout_ms. Returns 0, or -1 with the message in c->fail_msg. */
int yw__pg_connect(yw__pg_conn_t *c);

/** Closes the connection (the next use connects again): statements must be prepared anew. */
void yw__pg_disconnect(yw__pg_conn_t *c);

/** Closes the connection and frees its statements; safe to call twice. */
void yw__pg_conn_close(yw__pg_conn_t *c);

/**
 * Runs `sql` (n == 0: the simple protocol, several statements allowed; else one statement
 * with text parameters) within `timeout_ms`. Returns 0 with the result in *out (when
 * `out` is not NULL; PQclear it), or -1 with the error on the connection (sql_rc: the
 * status; sql_msg); a timeout or a lost connection also disconnects, marks the
 * connection broken and the store unavailable.
 */
int yw__pg_query(yw__pg_conn_t *c, const char *sql, int n, const char *const *values,
                 int timeout_ms, PGresult **out);

/** Sets the store unavailable (0) or available (1), from any thread. */
void yw__pg_set_available(yw__pg_t *pg, int available);

#ifdef __cplusplus
}
#endif
#endif
