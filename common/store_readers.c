/*
 * store_readers.c — the store's reader threads: each takes read jobs off the read queue
 * and runs them on its own read-only connection, one read transaction (one snapshot) a
 * job. See store.h; what the store's files share is in store_internal.h.
 */
#include "common/store_internal.h"

#include <stdlib.h>

#include "common/errmsg.h"

/** Runs a read job inside one read transaction, so that it sees one snapshot. */
static void yw__run_read_job(yw_store_conn_t *conn, yw_store_job_t *job)
{
    job->errmsg[0] = '\0';
    int rc = yw__store_exec(conn, yw__store_sql_begin);
    if (rc != SQLITE_OK) {
        job->yw_status = yw__store_fail_status(rc);
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "begin failed: %s",
                         sqlite3_errmsg(conn->db));
        return;
    }
    grpc_status_code st = job->work(conn, job);
    job->errmsg[sizeof job->errmsg - 1] = '\0';
    yw__store_reset_busy(conn->db);
    if (st != GRPC_STATUS_OK && job->errmsg[0] == '\0') {
        yw_errmsg_printf(job->errmsg, sizeof job->errmsg, "read job failed with status %d",
                         (int)st);
    }
    job->yw_status = st;
    yw__store_rollback(conn); /* nothing to keep: the connection is read-only */
}

void *yw__store_reader_main(void *arg)
{
    yw__reader_arg_t *ra = arg;
    yw_store_t *store = ra->store;
    yw_store_conn_t *conn = ra->conn;
    free(ra);

    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (store->reads.head == NULL && !store->closing) {
            pthread_cond_wait(&store->reader_cv, &store->mu);
        }
        yw_store_job_t *job = store->reads.head;
        if (job == NULL) {
            break;
        }
        store->reads.head = job->yw_next;
        if (store->reads.head == NULL) {
            store->reads.tail = NULL;
        }
        job->yw_next = NULL;
        pthread_mutex_unlock(&store->mu);

        yw__run_read_job(conn, job);
        yw__store_post_done(store, job, job);

        pthread_mutex_lock(&store->mu);
    }
    pthread_mutex_unlock(&store->mu);

    yw__store_conn_close(conn);

    pthread_mutex_lock(&store->mu);
    store->readers_alive--;
    pthread_cond_broadcast(&store->writer_cv);
    pthread_mutex_unlock(&store->mu);
    return NULL;
}
