/*
 * store_writer.c — the store's writer: the writer thread commits queued writes in groups
 * (every job in its own savepoint, one fsync a group), and yw_store_run_sync() runs a
 * transaction on the caller's thread; both hold `writer_mu` for the writer connection.
 * See store.h; what the store's files share is in store_internal.h.
 */
#include "common/store_internal.h"

#include <errno.h>
#include <stdio.h>

#include "common/errmsg.h"

/*
 * Whether `rc` (on the writer's connection) means the disk is full: SQLITE_FULL, or an
 * I/O error (a -shm or WAL that could not grow, an fsync) whose errno says so.
 */
static bool yw__disk_full(sqlite3 *db, int rc)
{
    int primary = yw__store_primary(rc);
    int sys = primary == SQLITE_IOERR ? sqlite3_system_errno(db) : 0;
    return primary == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT;
}

/**
 * The status of a write that failed with `rc`: RESOURCE_EXHAUSTED when the disk is full
 * (told to on_full), else yw__store_fail_status().
 */
static grpc_status_code yw__write_fail(yw_store_t *store, int rc)
{
    if (!yw__disk_full(store->writer.db, rc)) {
        return yw__store_fail_status(rc);
    }
    if (store->on_full != NULL) {
        store->on_full(store->on_full_arg);
    }
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
}

/**
 * Marks every job from `first` up to (not including) `stop` that had succeeded as
 * failed with `st` and `msg`: their transaction did not commit.
 */
static void yw__fail_succeeded(yw_store_job_t *first, yw_store_job_t *stop, grpc_status_code st,
                               const char *what, const char *msg)
{
    for (yw_store_job_t *j = first; j != stop; j = j->yw_next) {
        if (j->yw_status == GRPC_STATUS_OK) {
            j->yw_status = st;
            yw_errmsg_printf(j->errmsg, sizeof j->errmsg, "%s: %s", what, msg);
        }
    }
}

/** Runs one job of a group inside its own savepoint; sets job->yw_status. */
static void yw__run_write_job(yw_store_t *store, yw_store_job_t *job)
{
    yw_store_conn_t *conn = &store->writer;
    job->errmsg[0] = '\0';
    int rc = yw__store_exec(conn, yw__store_sql_savepoint);
    if (rc != SQLITE_OK) {
        job->yw_status = yw__write_fail(store, rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "savepoint failed: %s",
                         sqlite3_errmsg(conn->db));
        return;
    }
    grpc_status_code st = job->work(conn, job);
    job->errmsg[sizeof job->errmsg - 1] = '\0';
    if (st != GRPC_STATUS_OK && yw__disk_full(conn->db, sqlite3_extended_errcode(conn->db))) {
        st = yw__write_fail(store, sqlite3_extended_errcode(conn->db)); /* whatever work said */
    }
    yw__store_reset_busy(conn->db);
    if (st == GRPC_STATUS_OK) {
        rc = yw__store_exec(conn, yw__store_sql_release);
        if (rc == SQLITE_OK) {
            job->yw_status = GRPC_STATUS_OK;
            return;
        }
        st = yw__write_fail(store, rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "release failed: %s",
                         sqlite3_errmsg(conn->db));
    } else if (job->errmsg[0] == '\0') {
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "write job failed with status %d",
                         (int)st);
    }
    job->yw_status = st;
    /* An I/O error may already have rolled the whole transaction back. */
    if (sqlite3_get_autocommit(conn->db)) {
        return;
    }
    if (yw__store_exec(conn, yw__store_sql_rollback_to) != SQLITE_OK ||
        yw__store_exec(conn, yw__store_sql_release) != SQLITE_OK) {
        /* The job's changes cannot be undone alone: undo the whole transaction. */
        (void)yw__store_exec(conn, yw__store_sql_rollback);
    }
}

/**
 * One group commit: BEGIN IMMEDIATE, every job in its savepoint, COMMIT. When SQLite
 * abandons the transaction midway (I/O error, disk full), the jobs that had succeeded
 * in it fail too and the rest of the group starts a new transaction.
 */
static int yw__run_group_tx(yw_store_t *store, yw_store_job_t *group)
{
    yw_store_conn_t *conn = &store->writer;
    yw_store_job_t *tx_first = NULL;
    sqlite3_session *session = NULL;
    char msg[200];

    for (yw_store_job_t *job = group; job != NULL; job = job->yw_next) {
        if (tx_first == NULL) {
            int rc = yw__store_exec(conn, yw__store_sql_begin_immediate);
            if (rc == SQLITE_OK && (rc = yw__store_ship_begin(store, &session)) != SQLITE_OK) {
                yw__store_rollback(conn);
            }
            if (rc != SQLITE_OK) {
                /* Retrying per job would wait busy_timeout for each: fail the rest. */
                snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
                grpc_status_code st = yw__write_fail(store, rc);
                for (yw_store_job_t *j = job; j != NULL; j = j->yw_next) {
                    j->yw_status = st;
                    yw_errmsg_printf(j->errmsg, sizeof j->errmsg, "begin failed: %s", msg);
                }
                return 0;
            }
            tx_first = job;
        }
        yw__run_write_job(store, job);
        if (sqlite3_get_autocommit(conn->db)) {
            int rc = sqlite3_errcode(conn->db);
            snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
            grpc_status_code st =
                rc != SQLITE_OK ? yw__write_fail(store, rc) : GRPC_STATUS_UNAVAILABLE;
            yw__fail_succeeded(tx_first, job->yw_next, st, "transaction rolled back", msg);
            tx_first = NULL;
            if (session != NULL) {
                sqlite3session_delete(session);
                session = NULL;
            }
        }
    }
    if (tx_first == NULL) {
        return 0;
    }
    if (yw__store_ship_end(store, session, msg, sizeof msg) != 0) {
        yw__store_rollback(conn);
        yw__fail_succeeded(tx_first, NULL, GRPC_STATUS_UNAVAILABLE, "not shipped", msg);
        return 0;
    }
    int rc = yw__store_exec(conn, yw__store_sql_commit);
    if (rc != SQLITE_OK) {
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(conn->db));
        yw__fail_succeeded(tx_first, NULL, yw__write_fail(store, rc), "commit failed", msg);
        yw__store_rollback(conn);
        return 0;
    }
    return 1;
}

/** A group commit, timed for the on_commit hook. */
static void yw__run_group(yw_store_t *store, yw_store_job_t *group, size_t n_jobs)
{
    uint64_t t0 = store->on_commit != NULL ? uv_hrtime() : 0;
    int committed = yw__run_group_tx(store, group);
    if (store->on_commit != NULL) {
        store->on_commit(store->on_commit_arg, uv_hrtime() - t0, n_jobs, committed);
    }
}

void *yw__store_writer_main(void *arg)
{
    yw_store_t *store = arg;

    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (store->writes.head == NULL && !store->closing) {
            pthread_cond_wait(&store->writer_cv, &store->mu);
        }
        if (store->writes.head == NULL) {
            break; /* closing, and everything queued is done */
        }
        /* Everything queued so far, up to max_group, is the next group. */
        yw_store_job_t *first = store->writes.head, *last = first;
        int n = 1;
        while (last->yw_next != NULL && n < store->max_group) {
            last = last->yw_next;
            n++;
        }
        store->writes.head = last->yw_next;
        if (store->writes.head == NULL) {
            store->writes.tail = NULL;
        }
        last->yw_next = NULL;
        pthread_mutex_unlock(&store->mu);

        pthread_mutex_lock(&store->writer_mu);
        yw__run_group(store, first, (size_t)n);
        pthread_mutex_unlock(&store->writer_mu);
        yw__store_post_done(store, first, last);

        pthread_mutex_lock(&store->mu);
    }
    /* Close last, so that SQLite checkpoints and removes the WAL. */
    while (store->readers_alive > 0) {
        pthread_cond_wait(&store->writer_cv, &store->mu);
    }
    pthread_mutex_unlock(&store->mu);

    pthread_mutex_lock(&store->writer_mu);
    yw__store_conn_close(&store->writer);
    pthread_mutex_unlock(&store->writer_mu);

    pthread_mutex_lock(&store->mu);
    store->writer_exited = true;
    pthread_mutex_unlock(&store->mu);
    (void)uv_async_send(&store->async);
    return NULL;
}

grpc_status_code yw_store_run_sync(yw_store_t *store,
                                   grpc_status_code (*fn)(yw_store_conn_t *conn, void *arg),
                                   void *arg, char *err, size_t errlen)
{
    yw_errmsg_printf(err, errlen, "%s", "");
    pthread_mutex_lock(&store->mu);
    bool closing = store->closing;
    pthread_mutex_unlock(&store->mu);
    if (closing) {
        yw_errmsg_printf(err, errlen, "store is closing");
        return GRPC_STATUS_UNAVAILABLE;
    }
    if (store->pg != NULL) {
        return yw__pg_run_sync(store, fn, arg, err, errlen); /* store_pg.c */
    }

    pthread_mutex_lock(&store->writer_mu);
    yw_store_conn_t *conn = &store->writer;
    grpc_status_code st;
    sqlite3_session *session = NULL;
    int rc = yw__store_exec(conn, yw__store_sql_begin_immediate);
    if (rc == SQLITE_OK && (rc = yw__store_ship_begin(store, &session)) != SQLITE_OK) {
        yw__store_rollback(conn);
    }
    if (rc != SQLITE_OK) {
        st = yw__store_fail_status(rc);
        yw_errmsg_printf(err, errlen, "begin failed: %s", sqlite3_errmsg(conn->db));
        pthread_mutex_unlock(&store->writer_mu);
        return st;
    }
    st = fn(conn, arg);
    yw__store_reset_busy(conn->db);
    if (st != GRPC_STATUS_OK) {
        if (err != NULL && errlen > 0 && err[0] == '\0') {
            yw_errmsg_printf(err, errlen, "run_sync: function failed with status %d; rolled back",
                             (int)st);
        }
        yw__store_rollback(conn);
    } else if (sqlite3_get_autocommit(conn->db)) {
        st = GRPC_STATUS_INTERNAL;
        yw_errmsg_printf(err, errlen, "run_sync: the transaction ended inside the function: %s",
                         sqlite3_errmsg(conn->db));
    } else if (yw__store_ship_end(store, session, err, errlen) != 0) {
        session = NULL;
        st = GRPC_STATUS_UNAVAILABLE;
        yw__store_rollback(conn);
    } else {
        session = NULL;
        rc = yw__store_exec(conn, yw__store_sql_commit);
        if (rc != SQLITE_OK) {
            st = yw__store_fail_status(rc);
            yw_errmsg_printf(err, errlen, "commit failed: %s", sqlite3_errmsg(conn->db));
            yw__store_rollback(conn);
        }
    }
    if (session != NULL) {
        sqlite3session_delete(session);
    }
    pthread_mutex_unlock(&store->writer_mu);
    return st;
}

/* ---- shipping ---- */

int yw__store_ship_begin(yw_store_t *store, sqlite3_session **session)
{
    *session = NULL;
    if (store->ship == NULL) {
        return SQLITE_OK;
    }
    int rc = sqlite3session_create(store->writer.db, "main", session);
    if (rc == SQLITE_OK && (rc = sqlite3session_attach(*session, NULL)) != SQLITE_OK) {
        sqlite3session_delete(*session);
        *session = NULL;
    }
    return rc;
}

int yw__store_ship_end(yw_store_t *store, sqlite3_session *session, char *msg, size_t msglen)
{
    if (session == NULL) {
        return 0;
    }
    int n = 0;
    void *cs = NULL;
    int rc = sqlite3session_changeset(session, &n, &cs);
    sqlite3session_delete(session);
    if (rc != SQLITE_OK) {
        yw_errmsg_printf(msg, msglen, "changes not recorded: %s", sqlite3_errstr(rc));
        return -1;
    }
    int bad = n > 0 && store->ship(store->ship_arg, cs, (size_t)n, msg, msglen) != 0;
    sqlite3_free(cs);
    return bad ? -1 : 0;
}

/* The copy gets exactly the changes: any conflict means it was not a copy. */
static int yw__on_conflict(void *arg, int kind, sqlite3_changeset_iter *it)
{
    (void)it;
    *(int *)arg = kind;
    return SQLITE_CHANGESET_ABORT;
}

int yw_store_apply_changeset(sqlite3 *db, const void *changeset, size_t len, char *err,
                             size_t errlen)
{
    int conflict = 0;
    int rc =
        sqlite3changeset_apply(db, (int)len, (void *)changeset, NULL, yw__on_conflict, &conflict);
    if (rc == SQLITE_OK) {
        return 0;
    }
    if (conflict != 0) {
        yw_errmsg_printf(err, errlen, "changeset: conflict of kind %d: the database is not a copy",
                         conflict);
        return -EPROTO;
    }
    yw_errmsg_printf(err, errlen, "changeset: %s", sqlite3_errmsg(db));
    return -EIO;
}
