/*
 * test_store_pg_live.c — the PostgreSQL store against a real server at YW_TEST_PG_URI (an
 * empty database per run); without it every test passes as skipped, with a message.
 * tests/integration/test_store_pg.py starts the server, runs one test per database
 * (argv[1] names it), and for `outage` stops and starts the server when told on stdout
 * ("STOP", "START") and answers on stdin.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>

#include "common/sql.h"
#include "common/store.h"
#include "tests/unit/test.h"

static const char *pg_uri;

static const yw_migration_t pg_migrations[] = {
    {1, "CREATE TABLE kv(k TEXT PRIMARY KEY, v BIGINT NOT NULL, f DOUBLE PRECISION, t TEXT);"
        "CREATE TABLE mig_log(n INTEGER NOT NULL);"},
    {2, "INSERT INTO mig_log VALUES (2); SELECT pg_sleep(0.3);"},
};

static yw_store_t *open_pg(uv_loop_t *loop, size_t n_migrations, int timeout_ms)
{
    yw_store_config_t cfg = {.pg_uri = pg_uri,
                             .pg_schema = "live",
                             .pg_migrations = pg_migrations,
                             .n_pg_migrations = n_migrations,
                             .pg_pool = 2,
                             .pg_timeout_ms = timeout_ms,
                             .pg_open_wait_ms = 5000};
    yw_store_t *store = NULL;
    char err[256];
    int e = yw_store_open(loop, &cfg, &store, err, sizeof err);
    if (e != 0) {
        fprintf(stderr, "open: %d %s\n", e, err);
    }
    YW_CHECK_INT(e, ==, 0);
    YW_CHECK_INT(yw_store_is_postgres(store), ==, 1);
    return store;
}

static int closed;

static void on_closed(void *arg)
{
    closed++;
}

static void close_pg(uv_loop_t *loop, yw_store_t *store)
{
    closed = 0;
    yw_store_close(store, on_closed, NULL);
    YW_CHECK_INT(uv_run(loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(closed, ==, 1);
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    uint64_t deadline = uv_hrtime() + UINT64_C(30000000000);
    while (!*flag) {
        YW_CHECK(uv_hrtime() < deadline);
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* ---- jobs ------------------------------------------------------------------------- */

static const char sql_put[] = "INSERT INTO kv(k, v, f, t) VALUES (?1, ?2, ?3, ?4)";
static const char sql_get[] = "SELECT v, f, t FROM kv WHERE k = ?1";

typedef struct {
    yw_store_job_t job;
    const char *k;
    int64_t v;
    double f;
    const char *t;               /* NULL: SQL NULL */
    grpc_status_code fail_after; /* OK: do not fail */
    const char *notify;          /* payload to notify on "live" */
    /* results */
    int done;
    grpc_status_code status;
    char errmsg[256];
    int found, t_null;
    char t_read[64];
    int64_t changes;
    uint64_t took_ms, queued;
} kv_job_t;

static grpc_status_code put_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    kv_job_t *j = (kv_job_t *)job;
    YW_CHECK_INT(yw_sql_backend(conn), ==, YW_SQL_POSTGRES);
    YW_CHECK(yw_store_db(conn) == NULL);
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    if (yw_sql_job_lock(conn, job, j->k) != GRPC_STATUS_OK) {
        return GRPC_STATUS_UNAVAILABLE;
    }
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_put, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_binder_t b = YW_SQL_BINDER(st);
    yw_sql_bind_next_text(&b, j->k);
    yw_sql_bind_next_i64(&b, j->v);
    yw_sql_bind_next_f64(&b, j->f);
    if (j->t != NULL) {
        yw_sql_bind_next_text(&b, j->t);
    } else {
        yw_sql_bind_null(st, 4);
    }
    int rc = yw_sql_step(st);
    j->changes = rc == YW_SQL_DONE ? yw_sql_changes(st) : -1;
    yw_sql_done(st);
    if (rc != YW_SQL_DONE) {
        return yw_sql_job_fail(conn, job, "insert kv");
    }
    if (j->notify != NULL) {
        grpc_status_code s = yw_sql_job_notify(conn, job, "live", j->notify);
        if (s != GRPC_STATUS_OK) {
            return s;
        }
    }
    if (j->fail_after != GRPC_STATUS_OK) {
        return yw_store_job_failf(job, j->fail_after, "failing on purpose after insert");
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code get_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    kv_job_t *j = (kv_job_t *)job;
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    yw_sql_t *st = yw_sql_job_stmt(conn, job, sql_get, &code);
    if (st == NULL) {
        return code;
    }
    yw_sql_bind_text(st, 1, j->k);
    int rc = yw_sql_step(st);
    j->found = rc == YW_SQL_ROW;
    if (rc == YW_SQL_ROW) {
        j->v = yw_sql_column_i64(st, 0);
        j->f = yw_sql_column_f64(st, 1);
        size_t len = 0;
        snprintf(j->t_read, sizeof j->t_read, "%s", yw_sql_column_text(st, 2, &len));
        YW_CHECK_INT(len, ==, strlen(j->t_read));
        j->t_null = yw_sql_column_is_null(st, 2);
        rc = yw_sql_step(st);
    }
    yw_sql_done(st);
    return rc == YW_SQL_DONE ? GRPC_STATUS_OK : yw_sql_job_fail(conn, job, "get kv");
}

/* A job whose statement fails and that goes on as if it had not: fails at COMMIT. */
static grpc_status_code ignore_error_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    const char *texts[] = {"a", "not a number"};
    (void)yw_sql_job_exec(conn, job, sql_put, texts, 2, "insert");
    return GRPC_STATUS_OK;
}

/* SQL mistakes: reported by the step (PostgreSQL prepares there), INTERNAL. */
static grpc_status_code mistakes_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, "SELEKT 1", msg, sizeof msg);
    YW_CHECK(st != NULL);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ERROR);
    yw_sql_done(st);
    YW_CHECK_INT(yw_sql_fail(conn, "selekt", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(msg, "selekt: syntax error", 20) == 0);
    return yw_store_job_failf(job, GRPC_STATUS_INTERNAL, "%s", msg);
}

static grpc_status_code bind_error_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, sql_get, msg, sizeof msg);
    YW_CHECK(st != NULL);
    yw_sql_bind_text(st, 1, "a");
    yw_sql_bind_text(st, 9, "past the last");
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ERROR);
    yw_sql_done(st);
    return yw_sql_job_fail(conn, job, "get");
}

static void kv_done(yw_store_job_t *job, grpc_status_code status)
{
    kv_job_t *j = (kv_job_t *)job;
    j->done = 1;
    j->status = status;
    j->took_ms = (uv_hrtime() - j->queued) / 1000000;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", job->errmsg);
}

static void kv_init(kv_job_t *j, bool write, const char *k)
{
    memset(j, 0, sizeof *j);
    j->job.work = write ? put_work : get_work;
    j->job.done = kv_done;
    j->k = k;
}

/** Runs one job to its end. */
static void run_job(uv_loop_t *loop, yw_store_t *store, kv_job_t *j, bool write)
{
    j->done = 0;
    j->queued = uv_hrtime();
    YW_CHECK_INT(write ? yw_store_write(store, &j->job) : yw_store_read(store, &j->job), ==, 0);
    run_until(loop, &j->done);
}

static grpc_status_code show_timeout(yw_store_conn_t *conn, yw_store_job_t *job)
{
    kv_job_t *j = (kv_job_t *)job;
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, "SHOW statement_timeout", msg, sizeof msg);
    YW_CHECK(st != NULL);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    snprintf(j->t_read, sizeof j->t_read, "%s", yw_sql_column_text(st, 0, NULL));
    yw_sql_done(st);
    return GRPC_STATUS_OK;
}

static grpc_status_code count_mig_log(yw_store_conn_t *conn, void *arg)
{
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, "SELECT COUNT(*) FROM mig_log", msg, sizeof msg);
    YW_CHECK(st != NULL);
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    *(int64_t *)arg = yw_sql_column_i64(st, 0);
    yw_sql_done(st);
    return GRPC_STATUS_OK;
}

static grpc_status_code count_half_done(yw_store_conn_t *conn, void *arg)
{
    char msg[256];
    yw_sql_t *st = yw_sql_prepare(conn, "SELECT COUNT(*) FROM pg_tables WHERE tablename = ?1", msg,
                                  sizeof msg);
    YW_CHECK(st != NULL);
    yw_sql_bind_text(st, 1, "half_done");
    YW_CHECK_INT(yw_sql_step(st), ==, YW_SQL_ROW);
    *(int64_t *)arg = yw_sql_column_i64(st, 0);
    yw_sql_done(st);
    return GRPC_STATUS_OK;
}

/* ---- tests ------------------------------------------------------------------------ */

/* Two processes open at once: one migrates, the other waits and finds it done. */
YW_TEST(migrate_concurrent)
{
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        YW_CHECK(kids[i] >= 0);
        if (kids[i] == 0) {
            uv_loop_t loop;
            YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
            yw_store_t *store = open_pg(&loop, 2, 5000);
            YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
            close_pg(&loop, store);
            YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
            _exit(0);
        }
    }
    for (int i = 0; i < 2; i++) {
        int status = 0;
        YW_CHECK_INT(waitpid(kids[i], &status, 0), ==, kids[i]);
        YW_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 5000);
    int64_t n = -1;
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, count_mig_log, &n, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(n, ==, 1); /* migration 2 ran once */
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

YW_TEST(newer_refused)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    close_pg(&loop, open_pg(&loop, 2, 5000));
    yw_store_config_t cfg = {.pg_uri = pg_uri,
                             .pg_schema = "live",
                             .pg_migrations = pg_migrations,
                             .n_pg_migrations = 1};
    yw_store_t *store = NULL;
    char err[256];
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, -ENOTSUP);
    YW_CHECK(strstr(err, "version 2") != NULL);
    YW_CHECK(strstr(err, "(1)") != NULL);
    YW_CHECK(store == NULL);
    /* A migration that fails: refused, its version not recorded, nothing of it left. */
    static const yw_migration_t bad[] = {
        pg_migrations[0],
        pg_migrations[1],
        {3, "CREATE TABLE half_done(n INTEGER); SELEKT 1;"},
    };
    cfg.pg_migrations = bad;
    cfg.n_pg_migrations = 3;
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "schema live: migration 3: syntax error") != NULL);
    cfg.pg_migrations = pg_migrations;
    cfg.n_pg_migrations = 2;
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    int64_t n = -1;
    YW_CHECK_INT(yw_store_run_sync(store, count_half_done, &n, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    YW_CHECK_INT(n, ==, 0);
    close_pg(&loop, store);

    /* Another schema name in the same database has versions of its own. */
    cfg.pg_schema = "other";
    cfg.n_pg_migrations = 0;
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 0);
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

YW_TEST(write_read_jobs)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 5000);
    YW_CHECK_INT(yw_store_available(store), ==, 1);

    kv_job_t put, get;
    kv_init(&put, true, "a");
    put.v = INT64_MIN;
    put.f = 0.1;
    put.t = "h\xc3\xa9llo";
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(put.changes, ==, 1);

    kv_init(&get, false, "a");
    run_job(&loop, store, &get, false);
    YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    YW_CHECK(get.found);
    YW_CHECK(get.v == INT64_MIN);
    YW_CHECK(get.f == 0.1); /* %.17g round-trips */
    YW_CHECK_STR(get.t_read, "h\xc3\xa9llo");
    YW_CHECK(!get.t_null);

    /* NULL text reads as "". */
    kv_init(&put, true, "n");
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    kv_init(&get, false, "n");
    run_job(&loop, store, &get, false);
    YW_CHECK(get.found && get.t_null);
    YW_CHECK_STR(get.t_read, "");

    /* A unique key violated: ALREADY_EXISTS with PostgreSQL's message. */
    kv_init(&put, true, "a");
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK(strncmp(put.errmsg, "insert kv: duplicate key value violates unique constraint", 57) ==
             0);

    /* A job that fails after its insert is rolled back. */
    kv_init(&put, true, "rolled");
    put.fail_after = GRPC_STATUS_FAILED_PRECONDITION;
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_FAILED_PRECONDITION);
    YW_CHECK_STR(put.errmsg, "failing on purpose after insert");
    kv_init(&get, false, "rolled");
    run_job(&loop, store, &get, false);
    YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    YW_CHECK(!get.found);

    /* A statement failed and the job went on: INTERNAL at COMMIT, nothing kept. */
    kv_init(&put, true, "a");
    put.job.work = ignore_error_work;
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strstr(put.errmsg, "a statement of the job failed") != NULL);
    kv_init(&put, true, "a");
    put.job.work = mistakes_work;
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_INTERNAL);
    kv_init(&put, false, "a");
    put.job.work = bind_error_work;
    run_job(&loop, store, &put, false);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_STR(put.errmsg, "get: bind ?9: the statement has 1 parameters");
    /* The server gives up a statement a second after the store stopped waiting. */
    kv_init(&put, false, "a");
    put.job.work = show_timeout;
    run_job(&loop, store, &put, false);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    YW_CHECK_STR(put.t_read, "6s");

    /* The connections work on after those failures. */
    kv_init(&get, false, "a");
    run_job(&loop, store, &get, false);
    YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    YW_CHECK(get.found);

    /* Many jobs at once over the pool: all done, each once. */
    enum { N = 40 };
    static kv_job_t many[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "m%d", i);
        kv_init(&many[i], true, keys[i]);
        many[i].v = i;
        YW_CHECK_INT(yw_store_write(store, &many[i].job), ==, 0);
    }
    for (int i = 0; i < N; i++) {
        run_until(&loop, &many[i].done);
        YW_CHECK_INT(many[i].status, ==, GRPC_STATUS_OK);
    }
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

static char notes[8][64];
static int n_notes, n_null_notes;

static void on_note(void *arg, const char *payload)
{
    YW_CHECK(arg == &notes);
    if (payload == NULL) {
        n_null_notes++;
    } else if (n_notes < 8) {
        snprintf(notes[n_notes++], sizeof notes[0], "%s", payload);
    }
}

YW_TEST(notify)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 5000);
    YW_CHECK_INT(yw_store_listen(store, "live", on_note, &notes), ==, 0);
    YW_CHECK_INT(yw_store_listen(store, "live", on_note, &notes), ==, -EEXIST);
    /* LISTEN in force: said once, with no payload, before any notification. */
    uint64_t listening = uv_hrtime() + UINT64_C(5000000000);
    while (n_null_notes == 0 && uv_hrtime() < listening) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    YW_CHECK_INT(n_null_notes, ==, 1);
    YW_CHECK_INT(n_notes, ==, 0);
    kv_job_t put;
    kv_init(&put, true, "x");
    put.notify = "creator:x";
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    /* A rolled back job's notification is never sent. */
    kv_init(&put, true, "y");
    put.notify = "creator:y";
    put.fail_after = GRPC_STATUS_ABORTED;
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_ABORTED);
    uint64_t deadline = uv_hrtime() + UINT64_C(5000000000);
    while (n_notes < 1 && uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    usleep(300 * 1000);
    uv_run(&loop, UV_RUN_NOWAIT);
    YW_CHECK_INT(n_notes, ==, 1);
    YW_CHECK_STR(notes[0], "creator:x");
    YW_CHECK_INT(n_null_notes, ==, 1); /* the connection was never lost */
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/** Tells the driver `what` and waits for its answer on stdin, running the loop meanwhile. */
static void ask_driver(uv_loop_t *loop, const char *what)
{
    printf("%s\n", what);
    fflush(stdout);
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            char line[64];
            YW_CHECK(fgets(line, sizeof line, stdin) != NULL);
            return;
        }
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

/* The server stopped: jobs fail UNAVAILABLE in time; started again: they succeed. */
YW_TEST(outage)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 1500);
    YW_CHECK_INT(yw_store_listen(store, "live", on_note, &notes), ==, 0);
    n_null_notes = 0;
    kv_job_t put;
    kv_init(&put, true, "before");
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);

    ask_driver(&loop, "STOP");
    for (int i = 0; i < 3; i++) {
        kv_job_t get;
        kv_init(&get, false, "before");
        run_job(&loop, store, &get, false);
        fprintf(stderr, "down: status %d in %llu ms: %s\n", (int)get.status,
                (unsigned long long)get.took_ms, get.errmsg);
        YW_CHECK_INT(get.status, ==, GRPC_STATUS_UNAVAILABLE);
        YW_CHECK_INT(get.took_ms, <=, 2 * 1500 + 500);
    }
    uint64_t deadline = uv_hrtime() + UINT64_C(5000000000);
    while (yw_store_available(store) != 0 && uv_hrtime() < deadline) {
        usleep(10000);
    }
    YW_CHECK_INT(yw_store_available(store), ==, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    n_null_notes = 0; /* the first LISTEN's: the one after the restart is counted below */

    ask_driver(&loop, "START");
    deadline = uv_hrtime() + UINT64_C(20000000000);
    grpc_status_code last = GRPC_STATUS_UNAVAILABLE;
    while (last != GRPC_STATUS_OK && uv_hrtime() < deadline) {
        kv_job_t get;
        kv_init(&get, false, "before");
        run_job(&loop, store, &get, false);
        last = get.status;
        if (last == GRPC_STATUS_OK) {
            YW_CHECK(get.found); /* acknowledged before the restart: still there */
        } else {
            usleep(100 * 1000);
        }
    }
    YW_CHECK_INT(last, ==, GRPC_STATUS_OK);
    /* Every connection of the pool works again (a job per pool connection and more). */
    for (int i = 0; i < 6; i++) {
        kv_job_t get;
        kv_init(&get, false, "before");
        run_job(&loop, store, &get, false);
        YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    }
    while ((yw_store_available(store) != 1 || n_null_notes == 0) && uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    YW_CHECK_INT(yw_store_available(store), ==, 1);
    YW_CHECK_INT(n_null_notes, >=, 1);
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* The server stops answering (SIGSTOP): jobs fail UNAVAILABLE within the timeout. */
YW_TEST(hang)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 1000);
    YW_CHECK_INT(yw_store_listen(store, "live", on_note, &notes), ==, 0);
    n_null_notes = 0;
    kv_job_t put;
    kv_init(&put, true, "before");
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);

    ask_driver(&loop, "FREEZE");
    kv_init(&put, true, "frozen");
    run_job(&loop, store, &put, true);
    fprintf(stderr, "frozen: status %d in %llu ms: %s\n", (int)put.status,
            (unsigned long long)put.took_ms, put.errmsg);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(put.errmsg, "did not answer within 1000 ms") != NULL);
    YW_CHECK_INT(put.took_ms, >=, 900);
    YW_CHECK_INT(put.took_ms, <=, 1600);
    YW_CHECK_INT(yw_store_available(store), ==, 0);
    /* The next job tries a new connection, bounded the same way. */
    kv_init(&put, true, "frozen2");
    run_job(&loop, store, &put, true);
    fprintf(stderr, "frozen: status %d in %llu ms: %s\n", (int)put.status,
            (unsigned long long)put.took_ms, put.errmsg);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(put.took_ms, <=, 2 * 1000 + 600);

    ask_driver(&loop, "THAW");
    uint64_t deadline = uv_hrtime() + UINT64_C(20000000000);
    grpc_status_code last = GRPC_STATUS_UNAVAILABLE;
    for (int ok = 0; ok < 4 && uv_hrtime() < deadline;) {
        kv_job_t get;
        kv_init(&get, false, "before");
        run_job(&loop, store, &get, false);
        last = get.status;
        ok = last == GRPC_STATUS_OK ? ok + 1 : 0;
    }
    YW_CHECK_INT(last, ==, GRPC_STATUS_OK);
    while (yw_store_available(store) != 1 && uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    YW_CHECK_INT(yw_store_available(store), ==, 1);
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* Reads on a standby (YW_TEST_PG_READ_URI): writes on the primary reach them. */
YW_TEST(read_pool)
{
    const char *read_uri = getenv("YW_TEST_PG_READ_URI");
    if (read_uri == NULL || read_uri[0] == '\0') {
        fprintf(stderr, "read_pool: YW_TEST_PG_READ_URI is unset; skipped\n");
        return;
    }
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_config_t cfg = {.pg_uri = pg_uri,
                             .pg_read_uri = read_uri,
                             .pg_schema = "live",
                             .pg_migrations = pg_migrations,
                             .n_pg_migrations = 2,
                             .pg_pool = 2,
                             .pg_open_wait_ms = 5000};
    yw_store_t *store = NULL;
    char err[256];
    YW_CHECK_INT(yw_store_open(&loop, &cfg, &store, err, sizeof err), ==, 0);
    kv_job_t put;
    kv_init(&put, true, "replicated");
    put.v = 7;
    run_job(&loop, store, &put, true);
    YW_CHECK_INT(put.status, ==, GRPC_STATUS_OK);
    uint64_t deadline = uv_hrtime() + UINT64_C(15000000000);
    kv_job_t get;
    do {
        kv_init(&get, false, "replicated");
        run_job(&loop, store, &get, false);
        YW_CHECK_INT(get.status, ==, GRPC_STATUS_OK);
    } while (!get.found && uv_hrtime() < deadline && usleep(50000) == 0);
    YW_CHECK(get.found);
    YW_CHECK_INT(get.v, ==, 7);
    close_pg(&loop, store);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* Close with jobs still queued: every done runs (before `closed`), none is lost. */
static int queued_done;

static void count_done(yw_store_job_t *job, grpc_status_code status)
{
    YW_CHECK_INT(status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(closed, ==, 0);
    queued_done++;
}

YW_TEST(close_with_queued_jobs)
{
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    yw_store_t *store = open_pg(&loop, 2, 5000);
    enum { N = 100 };
    static kv_job_t jobs[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "q%d", i);
        kv_init(&jobs[i], true, keys[i]);
        jobs[i].job.done = count_done;
        YW_CHECK_INT(yw_store_write(store, &jobs[i].job), ==, 0);
    }
    closed = 0;
    yw_store_close(store, on_closed, NULL);
    kv_job_t late;
    kv_init(&late, true, "late");
    YW_CHECK_INT(yw_store_write(store, &late.job), ==, -ESHUTDOWN);
    YW_CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(closed, ==, 1);
    YW_CHECK_INT(queued_done, ==, N);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

int main(int argc, char **argv)
{
    pg_uri = getenv("YW_TEST_PG_URI");
    if (pg_uri == NULL || pg_uri[0] == '\0') {
        printf("skipped: YW_TEST_PG_URI is unset (tests/integration/test_store_pg.py sets it)\n");
        return 0;
    }
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(migrate_concurrent),
        YW_TEST_ENTRY(newer_refused),
        YW_TEST_ENTRY(write_read_jobs),
        YW_TEST_ENTRY(notify),
        YW_TEST_ENTRY(outage),
        YW_TEST_ENTRY(hang),
        YW_TEST_ENTRY(read_pool),
        YW_TEST_ENTRY(close_with_queued_jobs),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
