/*
 * test_store_fixture.h — what the unit tests of common/store*.c share: a fresh directory
 * and uv loop per test, a store opened on a small schema (table kv), a job that puts a row
 * and one that reads it back, and queries on a connection of the test's own (as another
 * process would see the file). Used by test_store.c and test_store_*.c.
 */
#ifndef TEST_STORE_FIXTURE_H
#define TEST_STORE_FIXTURE_H

#include <pthread.h>
#include <stddef.h>

#include "common/store.h"

/* ---- fixture ---------------------------------------------------------------------- */

typedef struct {
    char dir[256];
    char path[300];
    uv_loop_t loop;
    pthread_t loop_thread;
    int closed;
} fixture_t;

/** A fresh directory from mkdtemp() (under TEST_TMPDIR) and a loop run on this thread. */
void fixture_init(fixture_t *f);

/** Closes the loop (every handle must be gone) and removes the files. */
void fixture_done(fixture_t *f);

/** yw_store_close()'s `closed`: counts in f->closed, and checks it runs on the loop. */
void on_closed(void *arg);

/** Closes the store and runs the loop until `closed` has run; the loop is then empty. */
void close_store(fixture_t *f, yw_store_t *store);

/** Runs the loop until *flag becomes non-zero. */
void run_until(fixture_t *f, const int *flag);

/** The schema: 1 creates kv (with a seed row), 2 a parent and a child table. */
extern const yw_migration_t migrations[2];

/** Opens the store at f->path with the first `n_migrations` migrations (checked). */
yw_store_t *open_store(fixture_t *f, size_t n_migrations);

/** A one-integer query on a fresh connection of our own, as another process would. */
long long raw_query_int(const char *path, const char *sql);

/** Runs `sql` on a connection of our own. */
void raw_exec(const char *path, const char *sql);

/** Whether `path` exists. */
int file_exists(const char *path);

/* ---- jobs ------------------------------------------------------------------------- */

/** Puts (k, v) into kv, or fails with `fail_status` after inserting. */
typedef struct {
    yw_store_job_t job;
    fixture_t *f;
    char k[32];
    long long v;
    grpc_status_code fail_status;
    int done_calls;
    int done_on_loop;
    grpc_status_code status;
    char errmsg[256];
    /* what the work saw */
    long long commits_seen;
    int in_tx;
    int *remaining; /* decremented by done when set */
} put_t;

/** Commits on the writer's connection, counted by put_work()'s commit hook. */
extern long long commits;

/** Inserts (k, v) into kv; fails with `fail_status` after inserting when that is set. */
grpc_status_code put_work(yw_store_conn_t *conn, yw_store_job_t *job);

/** Records the status and the message, and on which thread it ran. */
void put_done(yw_store_job_t *job, grpc_status_code status);

/** A put of (k, v); `remaining` (may be NULL) is decremented by done. */
void put_init(put_t *p, fixture_t *f, const char *k, long long v, int *remaining);

/** Reads kv[k] into v (-1 when missing). */
typedef struct {
    yw_store_job_t job;
    fixture_t *f;
    const char *k;
    long long v;
    int done_calls;
    int done_on_loop;
    grpc_status_code status;
    int *flag;
} get_t;

/** Reads kv[k]; leaves its statement mid-step on purpose (the store must reset it). */
grpc_status_code get_work(yw_store_conn_t *conn, yw_store_job_t *job);

/** Records the status and on which thread it ran; sets *flag. */
void get_done(yw_store_job_t *job, grpc_status_code status);

/** A read of kv[k]; done sets *flag (may be NULL). */
void get_init(get_t *g, fixture_t *f, const char *k, int *flag);

#endif
