/*
 * test_store.c — unit tests of common/store.c: open and migrations, refusal of foreign
 * and corrupt files, group commit with per-job rollback, durability of what `done`
 * reports, completions on the loop thread, close, the statement cache, and the helpers
 * of a job's work (failures, prepare, binds, column text).
 *
 * Every test works in a fresh directory from mkdtemp() and runs its own uv loop.
 */
#include "common/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>

#include "tests/unit/test.h"

/* ---- fixture ---------------------------------------------------------------------- */

typedef struct {
    char dir[256];
    char path[300];
    uv_loop_t loop;
    pthread_t loop_thread;
    int closed;
} fixture_t;

static void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/storeXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    f->loop_thread = pthread_self();
    f->closed = 0;
}

/** Closes the loop (every handle must be gone) and removes the files. */
static void fixture_done(fixture_t *f)
{
    YW_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[320];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        (void)unlink(p);
    }
    YW_CHECK_INT(rmdir(f->dir), ==, 0);
}

static void on_closed(void *arg)
{
    fixture_t *f = arg;
    YW_CHECK(pthread_equal(pthread_self(), f->loop_thread));
    f->closed++;
}

/** Closes the store and runs the loop until `closed` has run; the loop is then empty. */
static void close_store(fixture_t *f, yw_store_t *store)
{
    yw_store_close(store, on_closed, f);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f->closed, ==, 1);
}

/** Runs the loop until *flag becomes non-zero. */
static void run_until(fixture_t *f, const int *flag)
{
    while (!*flag) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static const yw_migration_t migrations[] = {
    {1, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
        "INSERT INTO kv VALUES('seed', 1);"},
    {2, "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL"
        "  REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"},
};

static yw_store_t *open_store(fixture_t *f, size_t n_migrations)
{
    yw_store_config_t cfg = {
        .path = f->path, .migrations = migrations, .n_migrations = n_migrations};
    yw_store_t *store = NULL;
    char err[256];
    int e = yw_store_open(&f->loop, &cfg, &store, err, sizeof err);
    if (e != 0) {
        fprintf(stderr, "open: %d %s\n", e, err);
    }
    YW_CHECK_INT(e, ==, 0);
    YW_CHECK(store != NULL);
    return store;
}

/** A one-integer query on a fresh connection of our own, as another process would. */
static long long raw_query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    YW_CHECK_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    YW_CHECK_INT(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_step(stmt), ==, SQLITE_ROW);
    long long v = sqlite3_column_int64(stmt, 0);
    YW_CHECK_INT(sqlite3_finalize(stmt), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_close(db), ==, SQLITE_OK);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    YW_CHECK_INT(sqlite3_open(path, &db), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_close(db), ==, SQLITE_OK);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

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

static sem_t gate;          /* blocks the writer in block_work() until the test posts */
static sem_t blocked;       /* posted by block_work() once the writer is inside it */
static long long commits;   /* counted by commit_hook, on the writer thread */
static int commit_hook_set; /* written on the writer thread only */

static int commit_hook(void *arg)
{
    __atomic_add_fetch(&commits, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static grpc_status_code put_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    put_t *p = (put_t *)job;
    sqlite3 *db = yw_store_db(conn);
    if (!commit_hook_set) {
        sqlite3_commit_hook(db, commit_hook, NULL);
        commit_hook_set = 1;
    }
    p->commits_seen = __atomic_load_n(&commits, __ATOMIC_SEQ_CST);
    p->in_tx = !sqlite3_get_autocommit(db);
    static const char sql[] = "INSERT INTO kv(k, v) VALUES(?1, ?2)";
    sqlite3_stmt *stmt = yw_store_stmt(conn, sql);
    if (stmt == NULL) {
        snprintf(job->errmsg, sizeof job->errmsg, "prepare: %s", sqlite3_errmsg(db));
        return GRPC_STATUS_INTERNAL;
    }
    sqlite3_bind_text(stmt, 1, p->k, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, p->v);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) {
        snprintf(job->errmsg, sizeof job->errmsg, "k %s: %s", p->k, sqlite3_errmsg(db));
        return yw_store_status(rc);
    }
    if (p->fail_status != GRPC_STATUS_OK) {
        snprintf(job->errmsg, sizeof job->errmsg, "k %s: rejected on purpose", p->k);
        return p->fail_status;
    }
    return GRPC_STATUS_OK;
}

static void put_done(yw_store_job_t *job, grpc_status_code status)
{
    put_t *p = (put_t *)job;
    p->done_calls++;
    p->done_on_loop = pthread_equal(pthread_self(), p->f->loop_thread);
    p->status = status;
    snprintf(p->errmsg, sizeof p->errmsg, "%s", job->errmsg);
    if (p->remaining != NULL) {
        (*p->remaining)--;
    }
}

static void put_init(put_t *p, fixture_t *f, const char *k, long long v, int *remaining)
{
    memset(p, 0, sizeof *p);
    p->job.work = put_work;
    p->job.done = put_done;
    p->f = f;
    snprintf(p->k, sizeof p->k, "%s", k);
    p->v = v;
    p->remaining = remaining;
    p->status = (grpc_status_code)-1;
}

static grpc_status_code block_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    YW_CHECK_INT(sem_post(&blocked), ==, 0);
    while (sem_wait(&gate) != 0) {
        YW_CHECK_INT(errno, ==, EINTR);
    }
    return GRPC_STATUS_OK;
}

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

static grpc_status_code get_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    get_t *g = (get_t *)job;
    static const char sql[] = "SELECT v FROM kv WHERE k = ?1";
    sqlite3_stmt *stmt = yw_store_stmt(conn, sql);
    if (stmt == NULL) {
        snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(yw_store_db(conn)));
        return GRPC_STATUS_INTERNAL;
    }
    sqlite3_bind_text(stmt, 1, g->k, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        g->v = sqlite3_column_int64(stmt, 0);
        /* left mid-step on purpose: the store must reset it */
        return GRPC_STATUS_OK;
    }
    if (rc == SQLITE_DONE) {
        g->v = -1;
        return GRPC_STATUS_OK;
    }
    snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(yw_store_db(conn)));
    return yw_store_status(rc);
}

static void get_done(yw_store_job_t *job, grpc_status_code status)
{
    get_t *g = (get_t *)job;
    g->done_calls++;
    g->done_on_loop = pthread_equal(pthread_self(), g->f->loop_thread);
    g->status = status;
    if (g->flag != NULL) {
        *g->flag = 1;
    }
}

static void get_init(get_t *g, fixture_t *f, const char *k, int *flag)
{
    memset(g, 0, sizeof *g);
    g->job.work = get_work;
    g->job.done = get_done;
    g->f = f;
    g->k = k;
    g->v = -2;
    g->flag = flag;
    g->status = (grpc_status_code)-1;
}

/* ---- open and migrations ---------------------------------------------------------- */

YW_TEST(migrations_applied)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'child'"),
                 ==, 1);
    /* WAL stays the file's mode; the WAL file itself is gone after a clean close. */
    YW_CHECK_INT(raw_query_int(f.path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), ==,
                 1);
    fixture_done(&f);
}

YW_TEST(reopen_does_not_rerun_migrations)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 1);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 1);
    close_store(&f, store);
    f.closed = 0;
    /* Migration 1 would fail (table exists) and insert a second seed if it ran again. */
    store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    f.closed = 0;
    store = open_store(&f, 2);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 2);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    fixture_done(&f);
}

YW_TEST(failing_migration_leaves_previous_version)
{
    fixture_t f;
    fixture_init(&f);
    static const yw_migration_t bad[] = {
        {1, "CREATE TABLE a(x);"},
        {2, "CREATE TABLE b(x); CREATE TABLE a(x);"},
    };
    yw_store_config_t cfg = {.path = f.path, .migrations = bad, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "migration 2") != NULL);
    YW_CHECK(strstr(err, "already exists") != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 1);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'b'"), ==,
                 0);
    fixture_done(&f);
}

YW_TEST(migration_breaking_a_foreign_key_refused)
{
    fixture_t f;
    fixture_init(&f);
    /* Rebuilding a parent table works with foreign keys off; orphans do not pass. */
    static const yw_migration_t steps[] = {
        {1, "CREATE TABLE p(id INTEGER PRIMARY KEY);"
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));"
            "INSERT INTO p VALUES(1); INSERT INTO c VALUES(1, 1);"},
        {2, "CREATE TABLE p_new(id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO p_new(id) SELECT id FROM p; DROP TABLE p;"
            "ALTER TABLE p_new RENAME TO p;"},
        {3, "INSERT INTO c VALUES(2, 999);"},
    };
    yw_store_config_t cfg = {.path = f.path, .migrations = steps, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    if (e != 0) {
        fprintf(stderr, "open: %s\n", err);
    }
    YW_CHECK_INT(e, ==, 0);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM c JOIN p ON p.id = c.p_id"), ==, 1);

    cfg.n_migrations = 3;
    store = NULL;
    e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK_INT(e, ==, -EINVAL);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "migration 3") != NULL);
    YW_CHECK(strstr(err, "table c") != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 2);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM c"), ==, 1);
    fixture_done(&f);
}

YW_TEST(newer_schema_refused)
{
    fixture_t f;
    fixture_init(&f);
    raw_exec(f.path, "CREATE TABLE future(x); PRAGMA user_version = 5;");
    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "newer") != NULL);
    YW_CHECK(strstr(err, f.path) != NULL);
    YW_CHECK_INT(raw_query_int(f.path, "PRAGMA user_version"), ==, 5);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'kv'"), ==,
                 0);
    fixture_done(&f);
}

YW_TEST(garbage_file_refused_and_untouched)
{
    fixture_t f;
    fixture_init(&f);
    unsigned char junk[8192];
    srand(42);
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (unsigned char)rand();
    }
    FILE *fp = fopen(f.path, "wb");
    YW_CHECK(fp != NULL);
    YW_CHECK_INT(fwrite(junk, 1, sizeof junk, fp), ==, sizeof junk);
    YW_CHECK_INT(fclose(fp), ==, 0);

    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    YW_CHECK(strstr(err, "file is not a database") != NULL);
    YW_CHECK(strstr(err, f.path) != NULL);

    unsigned char back[sizeof junk + 1];
    fp = fopen(f.path, "rb");
    YW_CHECK(fp != NULL);
    YW_CHECK_INT(fread(back, 1, sizeof back, fp), ==, sizeof junk);
    YW_CHECK_INT(fclose(fp), ==, 0);
    YW_CHECK(memcmp(junk, back, sizeof junk) == 0);
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    YW_CHECK(!file_exists(wal));
    fixture_done(&f);
}

YW_TEST(corrupt_database_refused)
{
    fixture_t f;
    fixture_init(&f);
    raw_exec(f.path,
             "PRAGMA page_size = 4096; CREATE TABLE t(x TEXT);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
             "  INSERT INTO t SELECT printf('%0100d', i) FROM n;"
             "CREATE INDEX t_x ON t(x);");
    /* Scribble over page 3 (an inner page of the table or the index). */
    int fd = open(f.path, O_WRONLY);
    YW_CHECK(fd >= 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    YW_CHECK_INT(pwrite(fd, junk, sizeof junk, (off_t)2 * 4096), ==, sizeof junk);
    YW_CHECK_INT(close(fd), ==, 0);

    yw_store_config_t cfg = {.path = f.path, .migrations = migrations, .n_migrations = 2};
    yw_store_t *store = NULL;
    char err[256] = "";
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(store == NULL);
    if (strstr(err, "corrupt") == NULL) {
        fprintf(stderr, "err: %s\n", err);
    }
    YW_CHECK(strstr(err, "corrupt") != NULL);
    fixture_done(&f);
}

YW_TEST(bad_config_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = NULL;
    char err[256] = "";
    yw_store_config_t cfg = {.path = ":memory:"};
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, ":memory:") != NULL);
    cfg.path = NULL;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    static const yw_migration_t gap[] = {{1, "CREATE TABLE a(x);"}, {3, "CREATE TABLE b(x);"}};
    cfg.path = f.path;
    cfg.migrations = gap;
    cfg.n_migrations = 2;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "migrations[1]") != NULL);
    cfg.n_migrations = 0;
    cfg.readers = -1;
    YW_CHECK_INT(yw_store_open(&f.loop, &cfg, &store, err, sizeof err), ==, -EINVAL);
    YW_CHECK(store == NULL);
    YW_CHECK(!file_exists(f.path));
    snprintf(f.path, sizeof f.path, "%s/no/such/dir/test.db", f.dir);
    cfg.readers = 0;
    int e = yw_store_open(&f.loop, &cfg, &store, err, sizeof err);
    YW_CHECK(e < 0);
    YW_CHECK(strstr(err, "no/such/dir") != NULL);
    snprintf(f.path, sizeof f.path, "%s/test.db", f.dir);
    fixture_done(&f);
}

YW_TEST(empty_schema_opens)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 0);
    YW_CHECK_INT(yw_store_schema_version(store), ==, 0);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- writes and reads ------------------------------------------------------------- */

typedef struct {
    fixture_t *f;
    yw_store_t *store;
    put_t put;
    get_t get;
    int got;
    long long raw_v;
} write_read_t;

static void write_read_put_done(yw_store_job_t *job, grpc_status_code status)
{
    put_done(job, status);
    write_read_t *t = (write_read_t *)((char *)job - offsetof(write_read_t, put));
    YW_CHECK_INT(status, ==, GRPC_STATUS_OK);
    /* Committed before done: a connection of our own (another process) sees it. */
    t->raw_v = raw_query_int(t->f->path, "SELECT v FROM kv WHERE k = 'alpha'");
    YW_CHECK_INT(yw_store_read(t->store, &t->get.job), ==, 0);
}

YW_TEST(write_then_read)
{
    fixture_t f;
    fixture_init(&f);
    write_read_t t = {.f = &f};
    t.store = open_store(&f, 2);
    put_init(&t.put, &f, "alpha", 42, NULL);
    t.put.job.done = write_read_put_done;
    get_init(&t.get, &f, "alpha", &t.got);
    YW_CHECK_INT(yw_store_write(t.store, &t.put.job), ==, 0);
    run_until(&f, &t.got);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK(t.put.done_on_loop);
    YW_CHECK(t.put.in_tx);
    YW_CHECK_INT(t.raw_v, ==, 42);
    YW_CHECK_INT(t.get.done_calls, ==, 1);
    YW_CHECK(t.get.done_on_loop);
    YW_CHECK_INT(t.get.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(t.get.v, ==, 42);

    /* The reader's statement was left mid-step; the next read must still work. */
    int got2 = 0;
    get_t g2;
    get_init(&g2, &f, "seed", &got2);
    YW_CHECK_INT(yw_store_read(t.store, &g2.job), ==, 0);
    run_until(&f, &got2);
    YW_CHECK_INT(g2.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(g2.v, ==, 1);
    close_store(&f, t.store);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK_INT(t.get.done_calls, ==, 1);
    fixture_done(&f);
}

static grpc_status_code write_in_read_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    int rc = sqlite3_exec(yw_store_db(conn), "INSERT INTO kv VALUES('r', 1)", NULL, NULL, NULL);
    snprintf(job->errmsg, sizeof job->errmsg, "%s", sqlite3_errmsg(yw_store_db(conn)));
    return yw_store_status(rc);
}

YW_TEST(read_jobs_cannot_write)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    int got = 0;
    get_t g;
    get_init(&g, &f, "r", &got);
    g.job.work = write_in_read_work;
    YW_CHECK_INT(yw_store_read(store, &g.job), ==, 0);
    run_until(&f, &got);
    YW_CHECK_INT(g.status, ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK(strstr(g.job.errmsg, "readonly") != NULL);
    close_store(&f, store);
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k = 'r'"), ==, 0);
    fixture_done(&f);
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

/* ---- close ------------------------------------------------------------------------ */

YW_TEST(close_flushes_queued_jobs)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    enum { N = 50, R = 8 };
    put_t puts[N];
    get_t gets[R];
    int remaining = N;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "q%d", i);
        put_init(&puts[i], &f, k, i, &remaining);
        YW_CHECK_INT(yw_store_write(store, &puts[i].job), ==, 0);
    }
    for (int i = 0; i < R; i++) {
        get_init(&gets[i], &f, "seed", NULL);
        YW_CHECK_INT(yw_store_read(store, &gets[i].job), ==, 0);
    }
    yw_store_close(store, on_closed, &f);
    /* Nothing runs on the loop until it runs. */
    YW_CHECK_INT(remaining, ==, N);
    YW_CHECK_INT(f.closed, ==, 0);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(remaining, ==, 0);
    for (int i = 0; i < N; i++) {
        YW_CHECK_INT(puts[i].done_calls, ==, 1);
        YW_CHECK(puts[i].done_on_loop);
        YW_CHECK_INT(puts[i].status, ==, GRPC_STATUS_OK);
    }
    for (int i = 0; i < R; i++) {
        YW_CHECK_INT(gets[i].done_calls, ==, 1);
        YW_CHECK(gets[i].done_on_loop);
        YW_CHECK_INT(gets[i].status, ==, GRPC_STATUS_OK);
        YW_CHECK_INT(gets[i].v, ==, 1);
    }
    /* The last connection to close checkpointed the WAL and removed it. */
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    YW_CHECK(!file_exists(wal));
    YW_CHECK_INT(raw_query_int(f.path, "SELECT count(*) FROM kv WHERE k LIKE 'q%'"), ==, N);
    fixture_done(&f);
}

static int never_called;

static void never_done(yw_store_job_t *job, grpc_status_code status)
{
    never_called++;
}

YW_TEST(jobs_after_close_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    yw_store_close(store, on_closed, &f);
    put_t p;
    put_init(&p, &f, "late", 1, NULL);
    p.job.done = never_done;
    YW_CHECK_INT(yw_store_write(store, &p.job), ==, -ESHUTDOWN);
    get_t g;
    get_init(&g, &f, "seed", NULL);
    g.job.done = never_done;
    YW_CHECK_INT(yw_store_read(store, &g.job), ==, -ESHUTDOWN);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(never_called, ==, 0);
    fixture_done(&f);
}

/** Closes the store from inside a done callback; later writes are refused. */
typedef struct {
    put_t put;
    yw_store_t *store;
    int late_rc;
} close_in_done_t;

static void close_in_done(yw_store_job_t *job, grpc_status_code status)
{
    close_in_done_t *t = (close_in_done_t *)job;
    put_done(job, status);
    yw_store_close(t->store, on_closed, t->put.f);
    static put_t late;
    put_init(&late, t->put.f, "late", 1, NULL);
    t->late_rc = yw_store_write(t->store, &late.job);
}

YW_TEST(close_from_done)
{
    fixture_t f;
    fixture_init(&f);
    close_in_done_t t;
    t.store = open_store(&f, 2);
    put_init(&t.put, &f, "x", 1, NULL);
    t.put.job.done = close_in_done;
    YW_CHECK_INT(yw_store_write(t.store, &t.put.job), ==, 0);
    YW_CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f.closed, ==, 1);
    YW_CHECK_INT(t.put.done_calls, ==, 1);
    YW_CHECK_INT(t.put.status, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(t.late_rc, ==, -ESHUTDOWN);
    fixture_done(&f);
}

YW_TEST(bad_jobs_refused)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    put_t p;
    put_init(&p, &f, "x", 1, NULL);
    p.job.done = NULL;
    YW_CHECK_INT(yw_store_write(store, &p.job), ==, -EINVAL);
    p.job.done = put_done;
    p.job.work = NULL;
    YW_CHECK_INT(yw_store_read(store, &p.job), ==, -EINVAL);
    YW_CHECK_INT(yw_store_write(store, NULL), ==, -EINVAL);
    close_store(&f, store);
    YW_CHECK_INT(p.done_calls, ==, 0);
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

static const char select_param[] = "SELECT ?1";

static grpc_status_code stmt_cache_work(yw_store_conn_t *conn, void *arg)
{
    sqlite3_stmt *a = yw_store_stmt(conn, select_param);
    YW_CHECK(a != NULL);
    YW_CHECK_INT(sqlite3_bind_int(a, 1, 7), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_step(a), ==, SQLITE_ROW);
    YW_CHECK_INT(sqlite3_column_int(a, 0), ==, 7);
    /* Same pointer: same statement, reset, bindings cleared. */
    sqlite3_stmt *b = yw_store_stmt(conn, select_param);
    YW_CHECK(b == a);
    YW_CHECK(!sqlite3_stmt_busy(b));
    YW_CHECK_INT(sqlite3_step(b), ==, SQLITE_ROW);
    YW_CHECK_INT(sqlite3_column_type(b, 0), ==, SQLITE_NULL);
    /* Same text at another address: another statement. */
    char copy[sizeof select_param];
    memcpy(copy, select_param, sizeof copy);
    sqlite3_stmt *c = yw_store_stmt(conn, copy);
    YW_CHECK(c != NULL);
    YW_CHECK(c != a);
    /* Many statements: the cache grows and still finds the first. */
    static char texts[200][32];
    for (int i = 0; i < 200; i++) {
        snprintf(texts[i], sizeof texts[i], "SELECT %d", i);
        sqlite3_stmt *s = yw_store_stmt(conn, texts[i]);
        YW_CHECK(s != NULL);
    }
    for (int i = 0; i < 200; i++) {
        sqlite3_stmt *s = yw_store_stmt(conn, texts[i]);
        YW_CHECK_INT(sqlite3_step(s), ==, SQLITE_ROW);
        YW_CHECK_INT(sqlite3_column_int(s, 0), ==, i);
    }
    YW_CHECK(yw_store_stmt(conn, select_param) == a);
    /* A prepare error: NULL, and the connection says why. */
    YW_CHECK(yw_store_stmt(conn, "SELEKT 1") == NULL);
    YW_CHECK(strstr(sqlite3_errmsg(yw_store_db(conn)), "syntax error") != NULL);
    return GRPC_STATUS_OK;
}

YW_TEST(stmt_cache)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, stmt_cache_work, NULL, err, sizeof err), ==,
                 GRPC_STATUS_OK);
    close_store(&f, store);
    fixture_done(&f);
}

/* ---- helpers for a job's work ------------------------------------------------------ */

static const char select_three[] = "SELECT ?1, ?2, ?3";
static const char select_null[] = "SELECT NULL, 'abc'";

static grpc_status_code helpers_work(yw_store_conn_t *conn, void *arg)
{
    char msg[128];
    /* A prepare failure: NULL, and the message says so. */
    YW_CHECK(yw_store_prepare(conn, "SELEKT 1", msg, sizeof msg) == NULL);
    YW_CHECK(strncmp(msg, "prepare: ", 9) == 0);
    YW_CHECK(strstr(msg, "syntax error") != NULL);
    yw_store_job_t job;
    memset(&job, 0, sizeof job);
    grpc_status_code code = GRPC_STATUS_OK;
    YW_CHECK(yw_store_job_stmt(conn, &job, "SELEKT 2", &code) == NULL);
    YW_CHECK_INT(code, ==, GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(job.errmsg, "prepare: ", 9) == 0);
    YW_CHECK(yw_store_job_stmt(conn, &job, "SELEKT 3", NULL) == NULL);

    /* The binder binds in order and keeps the first failure. */
    sqlite3_stmt *st = yw_store_prepare(conn, select_three, msg, sizeof msg);
    YW_CHECK(st != NULL);
    yw_store_binder_t b = YW_STORE_BINDER(st);
    yw_store_bind_next_i64(&b, INT64_MIN);
    yw_store_bind_next_f64(&b, 2.5);
    yw_store_bind_next_text(&b, NULL); /* binds "" */
    YW_CHECK_INT(b.rc, ==, SQLITE_OK);
    YW_CHECK_INT(b.n, ==, 3);
    YW_CHECK_INT(sqlite3_step(st), ==, SQLITE_ROW);
    YW_CHECK(sqlite3_column_int64(st, 0) == INT64_MIN);
    YW_CHECK(sqlite3_column_double(st, 1) == 2.5);
    YW_CHECK_INT(sqlite3_column_type(st, 2), ==, SQLITE_TEXT);
    size_t len = 99;
    YW_CHECK_STR(yw_store_column_text(st, 2, &len), "");
    YW_CHECK_INT(len, ==, 0);
    yw_store_stmt_done(st);
    YW_CHECK(!sqlite3_stmt_busy(st));
    yw_store_bind_next_text(&b, "past the last parameter");
    YW_CHECK_INT(b.rc, ==, SQLITE_RANGE);
    yw_store_bind_next_i64(&b, 1); /* does nothing: the failure sticks */
    YW_CHECK_INT(b.rc, ==, SQLITE_RANGE);
    YW_CHECK_INT(b.n, ==, 4);
    yw_store_stmt_done(st);
    YW_CHECK_INT(yw_store_bind_text(st, 1, "x"), ==, SQLITE_OK);
    YW_CHECK_INT(yw_store_bind_text(st, 9, "x"), ==, SQLITE_RANGE);
    yw_store_stmt_done(st);

    /* Column text: NULL reads as "", with its length in bytes. */
    st = yw_store_prepare(conn, select_null, msg, sizeof msg);
    YW_CHECK(st != NULL);
    YW_CHECK_INT(sqlite3_step(st), ==, SQLITE_ROW);
    len = 99;
    YW_CHECK_STR(yw_store_column_text(st, 0, &len), "");
    YW_CHECK_INT(len, ==, 0);
    YW_CHECK_STR(yw_store_column_text(st, 1, &len), "abc");
    YW_CHECK_INT(len, ==, 3);
    YW_CHECK_STR(yw_store_column_text(st, 1, NULL), "abc");
    yw_store_stmt_done(st);

    /* A failure never reports OK; otherwise the status is yw_store_status()'s. */
    (void)sqlite3_exec(yw_store_db(conn), "SELEKT", NULL, NULL, NULL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_DONE, "step", msg, sizeof msg), ==,
                 GRPC_STATUS_INTERNAL);
    YW_CHECK(strncmp(msg, "step: ", 6) == 0);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_OK, "x", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_ROW, "x", msg, sizeof msg), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_CONSTRAINT_UNIQUE, "x", msg, sizeof msg), ==,
                 GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_fail(conn, SQLITE_BUSY, "x", msg, sizeof msg), ==,
                 GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_job_fail(conn, &job, SQLITE_FULL, "insert"), ==,
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK(strncmp(job.errmsg, "insert: ", 8) == 0);
    YW_CHECK_INT(yw_store_job_failf(&job, GRPC_STATUS_NOT_FOUND, "creator %s not found", "c1"), ==,
                 GRPC_STATUS_NOT_FOUND);
    YW_CHECK_STR(job.errmsg, "creator c1 not found");
    return GRPC_STATUS_OK;
}

YW_TEST(job_helpers)
{
    fixture_t f;
    fixture_init(&f);
    yw_store_t *store = open_store(&f, 2);
    char err[256];
    YW_CHECK_INT(yw_store_run_sync(store, helpers_work, NULL, err, sizeof err), ==, GRPC_STATUS_OK);
    close_store(&f, store);
    fixture_done(&f);
}

YW_TEST(status_mapping)
{
    YW_CHECK_INT(yw_store_status(SQLITE_OK), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_store_status(SQLITE_DONE), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_store_status(SQLITE_FULL), ==, GRPC_STATUS_RESOURCE_EXHAUSTED);
    YW_CHECK_INT(yw_store_status(SQLITE_READONLY), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_BUSY), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_BUSY_SNAPSHOT), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_IOERR), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_IOERR_FSYNC), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_CANTOPEN), ==, GRPC_STATUS_UNAVAILABLE);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT_UNIQUE), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_CONSTRAINT_PRIMARYKEY), ==, GRPC_STATUS_ALREADY_EXISTS);
    YW_CHECK_INT(yw_store_status(SQLITE_ERROR), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_CORRUPT), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_NOTADB), ==, GRPC_STATUS_INTERNAL);
    YW_CHECK_INT(yw_store_status(SQLITE_MISUSE), ==, GRPC_STATUS_INTERNAL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(migrations_applied),
        YW_TEST_ENTRY(reopen_does_not_rerun_migrations),
        YW_TEST_ENTRY(failing_migration_leaves_previous_version),
        YW_TEST_ENTRY(migration_breaking_a_foreign_key_refused),
        YW_TEST_ENTRY(newer_schema_refused),
        YW_TEST_ENTRY(garbage_file_refused_and_untouched),
        YW_TEST_ENTRY(corrupt_database_refused),
        YW_TEST_ENTRY(bad_config_refused),
        YW_TEST_ENTRY(empty_schema_opens),
        YW_TEST_ENTRY(write_then_read),
        YW_TEST_ENTRY(read_jobs_cannot_write),
        YW_TEST_ENTRY(failing_job_rolled_back_alone),
        YW_TEST_ENTRY(constraint_violation_is_already_exists),
        YW_TEST_ENTRY(disk_full_is_resource_exhausted_and_told),
        YW_TEST_ENTRY(commit_failure_fails_the_group),
        YW_TEST_ENTRY(many_writes_group_commit),
        YW_TEST_ENTRY(max_group_bounds_a_group),
        YW_TEST_ENTRY(acknowledged_write_survives_kill_9),
        YW_TEST_ENTRY(close_flushes_queued_jobs),
        YW_TEST_ENTRY(jobs_after_close_refused),
        YW_TEST_ENTRY(close_from_done),
        YW_TEST_ENTRY(bad_jobs_refused),
        YW_TEST_ENTRY(run_sync_commits_only_on_ok),
        YW_TEST_ENTRY(stmt_cache),
        YW_TEST_ENTRY(job_helpers),
        YW_TEST_ENTRY(status_mapping),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
