/*
 * test_store_writer.c — unit tests of common/store_writer.c: group commit with per-job
 * rollback, the commit's failure given to the jobs that had succeeded, a full disk,
 * the size of a group, durability of what `done` reports (kill -9), yw_store_run_sync().
 */
#include "common/store.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>

#include "tests/unit/common/test_store_fixture.h"
#include "tests/unit/test.h"

static sem_t gate;    /* blocks the writer in block_work() until the test posts */
static sem_t blocked; /* posted by block_work() once the writer is inside it */

static grpc_status_code block_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    YW_CHECK_INT(sem_post(&blocked), ==, 0);
    while (sem_wait(&gate) != 0) {
        YW_CHECK_INT(errno, ==, EINTR);
    }
    return GRPC_STATUS_OK;
}

static void block_done(yw_store_job_t *job, grpc_status_code status)
{
    int *flag = ((put_t *)job)->remaining;
    *flag = 1;
}

/**
 * Queues a job that holds the writer inside its group until sem_post(&gate), and
 * returns once the writer is inside it: every job queued next lands in later groups.
 */
static void hold_writer(fixture_t *f, yw_store_t *store, put_t *blocker, int *done_flag)
{
    YW_CHECK_INT(sem_init(&gate, 0, 0), ==, 0);
    YW_CHECK_INT(sem_init(&blocked, 0, 0), ==, 0);
    put_init(blocker, f, "", 0, done_flag);
    blocker->job.work = block_work;
    blocker->job.done = block_done;
    YW_CHECK_INT(yw_store_write(store, &blocker->job), ==, 0);
    while (sem_wait(&blocked) != 0) {
        YW_CHECK_INT(errno, ==, EINTR);
    }
}

YW_TEST(failing_job_rolled_back_alone)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);

    /* Hold the writer in a first group so that the next five queue up behind it. */
    int blocker_done = 0;
    put_t blocker;
    hold_writer(&f, store, &blocker, &blocker_done);

    enum { N = 5, BAD = 2 };
    int remaining = N;
    put_t puts[N];
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        put_init(&puts[i], &f, k, i, &remaining);
        puts[i].job.work = put_work;
    }
    puts[BAD].fail_status = GRPC_STATUS_INVALID_ARGUMENT;
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    YW_CHECK_INT(sem_post(&gate), ==, 0);
    run_until(&f, &blocker_done);
    while (remaining > 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }

    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(puts[i].done_calls, ==, 1);
        YW_CHECK(puts[i].done_on_loop);
        YW_CHECK(puts[i].in_tx);
        /* One group: every job ran before the same commit. */
        YW_CHECK_INT(puts[i].commits_seen, ==, puts[0].commits_seen);
        YW_CHECK_INT(puts[i].status, ==, i == BAD ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_OK);
    }
    YW_CHECK_STR(puts[BAD].errmsg, "k k2: rejected on purpose");
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k LIKE 'k%'"), ==, N - 1);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k = 'k2'"), ==, 0);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT sum(v) FROM kv WHERE k LIKE 'k%'"), ==,
                 0 + 1 + 3 + 4);
    YW_CHECK_INT(sem_destroy(&gate), ==, 0);
    YW_CHECK_INT(sem_destroy(&blocked), ==, 0);
    fixture_done(&f);
}

YW_TEST(constraint_violation_is_already_exists)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    int remaining = 2;
    put_t a, b;
    put_init(&a, &f, "dup", 1, &remaining);
    put_init(&b, &f, "dup", 2, &remaining);
    YW_CHECK_INT(yw_store_write(store, &a.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &b.job), ==, 0);
    while (remaining > 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(a.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(b.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK(strstr(b.errmsg, "UNIQUE constraint failed") != NULL);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'dup'"), ==, 1);
    fixture_done(&f);
}

/*
 * Caps the database at its current size and inserts 64 KiB: SQLITE_FULL, as on a full
 * disk. Returns INTERNAL on purpose: the store, not the job, knows what a full disk is.
 */
static grpc_status_code full_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    sqlite3 *db = yw_store_db(conn);
    int rc = sqlite3_exec(db, "PRAGMA max_page_count = 1", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "INSERT INTO kv(k, v) VALUES(hex(randomblob(32768)), 1)", NULL, NULL,
                          NULL);
    }
    snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(db));
    return rc == SQLITE_OK ? GRPC_STATUS_OK : GRPC_STATUS_INTERNAL;
}

static grpc_status_code uncap_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    (void)job;
    return sqlite3_exec(yw_store_db(conn), "PRAGMA max_page_count = 1073741823", NULL, NULL,
                        NULL) == SQLITE_OK
               ? GRPC_STATUS_OK
               : GRPC_STATUS_INTERNAL;
}

static int full_calls;

static void on_full(void *arg)
{
    YW_CHECK(arg == &full_calls);
    __atomic_add_fetch(&full_calls, 1, __ATOMIC_SEQ_CST);
}

YW_TEST(disk_full_is_resource_exhausted_and_told)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_config_t cfg = {.path = f.path,
                             .migrations = migrations,
                             .n_migrations = 2,
                             .on_full = on_full,
                             .on_full_arg = &full_calls};
    yw_store_t *store = NULL;
    char err[256];
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, 0);
    int remaining = 3;
    put_t full, uncap, after;
    put_init(&full, &f, "unused", 0, &remaining);
    full.job.work = full_work;
    put_init(&uncap, &f, "unused", 0, &remaining);
    uncap.job.work = uncap_work;
    put_init(&after, &f, "after", 7, &remaining);
    YW_CHECK_INT(yw_store_write(store, &full.job), ==, 0);
    while (remaining > 2) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(full.status, ==, GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK(strstr(full.errmsg, "full") != NULL);
    YW_CHECK_INT(__atomic_load_n(&full_calls, __ATOMIC_SEQ_CST), >=, 1);
    /* Space back: the store writes again. */
    YW_CHECK_INT(yw_store_write(store, &uncap.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &after.job), ==, 0);
    while (remaining > 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(uncap.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(after.status, ==, GRPC_STATUS_OK);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'after'"), ==, 7);
    fixture_done(&f);
}

/** Inserts a child whose parent does not exist: only the deferred check at COMMIT fails. */
static grpc_status_code orphan_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    sqlite3 *db = yw_store_db(conn);
    int rc = sqlite3_exec(db, "INSERT INTO child(id, parent_id) VALUES(1, 999)", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(db));
        return yw_store_status(rc);
    }
    return GRPC_STATUS_OK;
}

YW_TEST(commit_failure_fails_the_group)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    int blocker_done = 0;
    put_t blocker;
    hold_writer(&f, store, &blocker, &blocker_done);

    int remaining = 4;
    put_t p0, orphan, bad, p1;
    put_init(&p0, &f, "c0", 0, &remaining);
    put_init(&orphan, &f, "", 0, &remaining);
    orphan.job.work = orphan_work;
    put_init(&bad, &f, "c2", 2, &remaining);
    bad.fail_status = GRPC_STATUS_FAILED_PRECONDITION;
    put_init(&p1, &f, "c1", 1, &remaining);
    YW_CHECK_INT(yw_store_write(store, &p0.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &orphan.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &bad.job), ==, 0);
    YW_CHECK_INT(yw_store_write(store, &p1.job), ==, 0);
    YW_CHECK_INT(sem_post(&gate), ==, 0);
    while (remaining > 0 || !blocker_done) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    /* The jobs that had succeeded get the commit's error; the failed one keeps its own. */
    YW_CHECK_INT(p0.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(orphan.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(p1.status, ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_STR(p0.errmsg, "commit failed: FOREIGN KEY constraint failed");
    YW_CHECK_STR(p1.errmsg, "commit failed: FOREIGN KEY constraint failed");
    YW_CHECK_INT(bad.status, ==, GRPC_STATUS_FAILED_PRECONDITION);
    YW_CHECK_STR(bad.errmsg, "k c2: rejected on purpose");

    /* The transaction was rolled back: the next write commits on its own. */
    put_t after;
    remaining = 1;
    put_init(&after, &f, "after", 7, &remaining);
    YW_CHECK_INT(yw_store_write(store, &after.job), ==, 0);
    while (remaining > 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(after.status, ==, GRPC_STATUS_OK);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k LIKE 'c%'"), ==, 0);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM child"), ==, 0);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'after'"), ==, 7);
    YW_CHECK_INT(sem_destroy(&gate), ==, 0);
    YW_CHECK_INT(sem_destroy(&blocked), ==, 0);
    fixture_done(&f);
}

YW_TEST(many_writes_group_commit)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    enum { N = 2000 };
    put_t *puts = calloc(N, sizeof *puts);
    YW_CHECK(puts != NULL);
    int remaining = N;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "m%d", i);
        put_init(&puts[i], &f, k, i, &remaining);
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    while (remaining > 0) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(puts[i].done_calls, ==, 1);
        YW_CHECK_INT(puts[i].status, ==, GRPC_STATUS_OK);
    }
    /* Queued before the writer caught up, so far fewer commits than jobs. */
    long long n_commits = __atomic_load_n(&commits, __ATOMIC_SEQ_CST);
    YW_CHECK_INT(n_commits, <, N / 4);
    close_store(&f, store);
    free(puts);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k LIKE 'm%'"), ==, N);
    fixture_done(&f);
}

YW_TEST(max_group_bounds_a_group)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_config_t cfg = {
        .path = f.path, .migrations = migrations, .n_migrations = 2, .max_group = 3, .readers = 1};
    yw_store_t *store = NULL;
    char err[256];
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, 0);
    int blocker_done = 0;
    put_t blocker;
    hold_writer(&f, store, &blocker, &blocker_done);
    enum { N = 7 };
    put_t puts[N];
    int remaining = N;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "g%d", i);
        put_init(&puts[i], &f, k, i, &remaining);
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    YW_CHECK_INT(sem_post(&gate), ==, 0);
    while (remaining > 0 || !blocker_done) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    /* Groups of 3, 3 and 1, in queue order. */
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(puts[i].status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(puts[i].commits_seen, ==, puts[0].commits_seen + i / 3);
    }
    close_store(&f, store);
    YW_CHECK_INT(sem_destroy(&gate), ==, 0);
    YW_CHECK_INT(sem_destroy(&blocked), ==, 0);
    fixture_done(&f);
}

/* ---- durability ------------------------------------------------------------------- */

static void kill_in_done(yw_store_job_t *job, grpc_status_code status)
{
    if (status != GRPC_STATUS_OK) {
        _exit(3);
    }
    /* The reply would go out now; the process dies before anything else runs. */
    raise(SIGKILL);
}

static grpc_status_code sync_level_work(yw_store_conn_t *conn, void *arg)
{
    sqlite3_stmt *stmt = yw_store_stmt(conn, "PRAGMA synchronous");
    if (stmt == NULL || sqlite3_step(stmt) != SQLITE_ROW) {
        return GRPC_STATUS_INTERNAL;
    }
    *(int *)arg = sqlite3_column_int(stmt, 0);
    return GRPC_STATUS_OK;
}

YW_TEST(acknowledged_write_survives_kill_9)
{
    fixture_t f;
    fixture_init(&f);
    fflush(NULL);
    pid_t pid = fork();
    YW_CHECK(pid >= 0);
    if (pid == 0) {
        /* A fresh process: open, write, die by SIGKILL inside done. */
        YW_CHECK_INT(uv_loop_fork(&f.loop), ==, 0);
        yw_store_t *store = open_store(&f, 2);
        int level = -1;
        char err[256];
        YW_CHECK_INT(yw_store_run_sync(store, sync_level_work, &level, err, sizeof err), ==,
                     GRPC_STATUS_OK);
        YW_CHECK_INT(level, ==, 2); /* FULL */
        put_t p;
        put_init(&p, &f, "durable", 99, NULL);
        p.job.done = kill_in_done;
        YW_CHECK_INT(yw_store_write(store, &p.job), ==, 0);
        uv_run(&f.loop, UV_RUN_DEFAULT);
        _exit(4);
    }
    int st = 0;
    YW_CHECK_INT(waitpid(pid, &st, 0), ==, pid);
    YW_CHECK(WIFSIGNALED(st));
    YW_CHECK_INT(WTERMSIG(st), ==, SIGKILL);
    /* The WAL was not checkpointed; recovery on open must find the row. */
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    YW_CHECK(file_exists(wal));
    YW_CHECK_INT(raw_query_int(f.path, "SELECT v FROM kv WHERE k = 'durable'"), ==, 99);
    /* And the store itself reopens the file. */
    yw_store_t *store = open_store(&f, 2);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- run_sync and statements ------------------------------------------------------ */

static grpc_status_code insert_sync(yw_store_conn_t *conn, void *arg)
{
    int rc = sqlite3_exec(yw_store_db(conn), "INSERT INTO kv VALUES('sync', 5)", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return yw_store_status(rc);
    }
    return arg != NULL ? *(grpc_status_code *)arg : GRPC_STATUS_OK;
}

YW_TEST(run_sync_commits_only_on_ok)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    char err[256];
    grpc_status_code fail = GRPC_STATUS_ABORTED;
    YW_CHECK_INT(yw_store_run_sync(store, insert_sync, &fail, err, sizeof err), ==,
                 GRPC_STATUS_ABORTED);
    YW_CHECK(strstr(err, "rolled back") != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k = 'sync'"), ==, 0);
    YW_CHECK_INT(yw_store_run_sync(store, insert_sync, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k = 'sync'"), ==, 1);
    /* Once more: the primary key now fails inside fn. */
    YW_CHECK_INT(yw_store_run_sync(store, insert_sync, NULL, err, sizeof err), ==,
                 GRPC_STATUS_ALREADY_EXISTS);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- shipping: each transaction's changes, to be replayed on a copy ---- */

typedef struct {
    void *cs[16];
    size_t len[16];
    int n;
    int fail; /* non-zero: refuse */
} shipped_t;

static int ship_keep(void *arg, const void *changeset, size_t len, char *err, size_t errlen)
{
    shipped_t *s = arg;
    if (s->fail) {
        snprintf(err, errlen, "the replicas are away");
        return -1;
    }
    YW_CHECK(s->n < 16);
    s->cs[s->n] = malloc(len);
    memcpy(s->cs[s->n], changeset, len);
    s->len[s->n++] = len;
    return 0;
}

static yw_store_t *open_shipping(fixture_t *f, shipped_t *s)
{
    yw_store_config_t cfg = {.path = f->path,
                             .migrations = migrations,
                             .n_migrations = 2,
                             .ship = ship_keep,
                             .ship_arg = s};
    yw_store_t *store = NULL;
    char err[256];
    YW_CHECK_INT(yw_store_open(&f->loop, &cfg, &store, err, sizeof err), ==, 0);
    return store;
}

static void put_all(fixture_t *f, yw_store_t *store, put_t *puts, int n)
{
    int remaining = n;
    for (int i = 0; i < n; i++) {
        puts[i].remaining = &remaining;
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    while (remaining > 0) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static char *dump(const char *path)
{
    sqlite3 *db = NULL;
    YW_CHECK_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    sqlite3_stmt *st = NULL;
    YW_CHECK_INT(sqlite3_prepare_v2(db,
                                    "SELECT coalesce(group_concat(k || '=' || v, ','), '') FROM "
                                    "(SELECT k, v FROM kv ORDER BY k)",
                                    -1, &st, NULL),
                 ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_step(st), ==, SQLITE_ROW);
    char *out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

YW_TEST(shipped_changes_replayed_on_a_copy_make_the_same_database)
{
    fixture_t f, copy;
    fixture_init(&f);
    fixture_init(&copy);
    static shipped_t s;
    memset(&s, 0, sizeof s);
    yw_store_t *store = open_shipping(&f, &s);
    put_t puts[4];
    const char *keys[] = {"a", "b", "c", "a2"};
    for (int i = 0; i < 4; i++) {
        put_init(&puts[i], &f, keys[i], 10 + i, NULL);
        puts[i].job.work = put_work;
    }
    puts[2].fail_status = GRPC_STATUS_INVALID_ARGUMENT; /* its savepoint is rolled back */
    put_all(&f, store, puts, 4);
    YW_CHECK_INT(puts[2].status, ==, GRPC_STATUS_INVALID_ARGUMENT);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, insert_sync, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    close_store(&f, store);
    YW_CHECK(s.n >= 2); /* the group(s), then run_sync's */

    /* The copy: the same migrations, then the changes in order. */
    yw_store_config_t ccfg = {.path = copy.path, .migrations = migrations, .n_migrations = 2};
    sqlite3 *db = NULL;
    YW_CHECK_INT(yw_store_open_file(&ccfg, &db, err, sizeof err), ==, 0);
    for (int i = 0; i < s.n; i++) {
        YW_CHECK_INT(yw_store_apply_changeset(db, s.cs[i], s.len[i], err, sizeof err), ==, 0);
    }
    /* Replayed twice, a change conflicts: refused. */
    YW_CHECK_INT(yw_store_apply_changeset(db, s.cs[0], s.len[0], err, sizeof err), ==, -EPROTO);
    YW_CHECK(strstr(err, "not a copy") != NULL);
    sqlite3_close(db);
    char *a = dump(f.path), *b = dump(copy.path);
    YW_CHECK_STR(b, a);
    YW_CHECK(strstr(a, "c=12") == NULL && strstr(a, "a2=13") != NULL && strstr(a, "sync=") != NULL);
    free(a);
    free(b);
    for (int i = 0; i < s.n; i++) {
        free(s.cs[i]);
    }
    fixture_done(&copy);
    fixture_done(&f);
}

YW_TEST(a_transaction_not_shipped_is_rolled_back_and_fails)
{
    fixture_t f;
    fixture_init(&f);
    static shipped_t s;
    memset(&s, 0, sizeof s);
    s.fail = 1;
    yw_store_t *store = open_shipping(&f, &s);
    put_t p;
    put_init(&p, &f, "lost", 1, NULL);
    p.job.work = put_work;
    put_all(&f, store, &p, 1);
    YW_CHECK_INT(p.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(p.errmsg, "the replicas are away") != NULL);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, insert_sync, NULL, err, sizeof err), ==,
                 GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(err, "the replicas are away") != NULL);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k IN ('lost', 'sync')"), ==,
                 0);
    fixture_done(&f);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(failing_job_rolled_back_alone),
        YW_TEST_ENTRY(constraint_violation_is_already_exists),
        YW_TEST_ENTRY(disk_full_is_resource_exhausted_and_told),
        YW_TEST_ENTRY(commit_failure_fails_the_group),
        YW_TEST_ENTRY(many_writes_group_commit),
        YW_TEST_ENTRY(max_group_bounds_a_group),
        YW_TEST_ENTRY(acknowledged_write_survives_kill_9),
        YW_TEST_ENTRY(run_sync_commits_only_on_ok),
        YW_TEST_ENTRY(shipped_changes_replayed_on_a_copy_make_the_same_database),
        YW_TEST_ENTRY(a_transaction_not_shipped_is_rolled_back_and_fails),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
