/* test_store_fixture.c — what the store's unit tests share. See test_store_fixture.h. */
#include "tests/unit/common/test_store_fixture.h"

#include <sys/stat.h>

#include "tests/unit/test.h"

void fixture_init(fixture_t *f)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/storeXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    YW_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
    f->loop_thread = pthread_self();
    f->closed = 0;
}

void fixture_done(fixture_t *f)
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

void on_closed(void *arg)
{
    fixture_t *f = arg;
    YW_CHECK(pthread_equal(pthread_self(), f->loop_thread));
    f->closed++;
}

void close_store(fixture_t *f, yw_store_t *store)
{
    yw_store_close(store, on_closed, f);
    YW_CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(f->closed, ==, 1);
}

/** Runs the loop until *flag becomes non-zero. */
void run_until(fixture_t *f, const int *flag)
{
    while (!*flag) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

const yw_migration_t migrations[2] = {
    {1, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
        "INSERT INTO kv VALUES('seed', 1);"},
    {2, "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL"
        "  REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"},
};

yw_store_t *open_store(fixture_t *f, size_t n_migrations)
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

long long raw_query_int(const char *path, const char *sql)
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

void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    YW_CHECK_INT(sqlite3_open(path, &db), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
    YW_CHECK_INT(sqlite3_close(db), ==, SQLITE_OK);
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

long long commits;          /* counted by commit_hook, on the writer thread */
static int commit_hook_set; /* written on the writer thread only */

static int commit_hook(void *arg)
{
    __atomic_add_fetch(&commits, 1, __ATOMIC_SEQ_CST);
    return 0;
}

grpc_status_code put_work(yw_store_conn_t *conn, yw_store_job_t *job)
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

void put_done(yw_store_job_t *job, grpc_status_code status)
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

void put_init(put_t *p, fixture_t *f, const char *k, long long v, int *remaining)
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

grpc_status_code get_work(yw_store_conn_t *conn, yw_store_job_t *job)
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

void get_done(yw_store_job_t *job, grpc_status_code status)
{
    get_t *g = (get_t *)job;
    g->done_calls++;
    g->done_on_loop = pthread_equal(pthread_self(), g->f->loop_thread);
    g->status = status;
    if (g->flag != NULL) {
        *g->flag = 1;
    }
}

void get_init(get_t *g, fixture_t *f, const char *k, int *flag)
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
