/*
 * store_queue.c — the store's jobs in and out: yw_store_write() and yw_store_read()
 * queue a job for the writer or the readers; the threads hand finished jobs back on the
 * done queue, and the loop runs their `done`. See store.h; what the store's files share
 * is in store_internal.h.
 */
#include "common/store_internal.h"

#include <errno.h>

/** Appends the list `first`..`last` (linked through yw_next) to `q`. */
static void yw__queue_append(yw__queue_t *q, yw_store_job_t *first, yw_store_job_t *last)
{
    last->yw_next = NULL;
    if (q->tail != NULL) {
        q->tail->yw_next = first;
    } else {
        q->head = first;
    }
    q->tail = last;
}

static int yw__queue_job(yw_store_t *store, yw_store_job_t *job, bool write)
{
    if (store == NULL || job == NULL || job->work == NULL || job->done == NULL) {
        return -EINVAL;
    }
    job->errmsg[0] = '\0';
    job->yw_status = GRPC_STATUS_OK;
    job->yw_store = store;
    pthread_mutex_lock(&store->mu);
    if (store->closing) {
        pthread_mutex_unlock(&store->mu);
        return -ESHUTDOWN;
    }
    job->yw_read = !write;
    /*
     * SQLite: writes to the writer, reads to the readers. PostgreSQL: reads go to the
     * read pool when there is one; otherwise one FIFO queue feeds the one pool.
     */
    bool to_writes = write || (store->pg != NULL && !store->pg_read_pool);
    if (to_writes) {
        yw__queue_append(&store->writes, job, job);
        pthread_cond_signal(&store->writer_cv);
    } else {
        yw__queue_append(&store->reads, job, job);
        pthread_cond_signal(&store->reader_cv);
    }
    pthread_mutex_unlock(&store->mu);
    return 0;
}

int yw_store_write(yw_store_t *store, yw_store_job_t *job)
{
    return yw__queue_job(store, job, true);
}

int yw_store_read(yw_store_t *store, yw_store_job_t *job)
{
    return yw__queue_job(store, job, false);
}

/** Hands finished jobs to the loop. */
void yw__store_post_done(yw_store_t *store, yw_store_job_t *first, yw_store_job_t *last)
{
    pthread_mutex_lock(&store->mu);
    yw__queue_append(&store->done, first, last);
    pthread_mutex_unlock(&store->mu);
    /* Only fails for a handle that is not an async handle. */
    (void)uv_async_send(&store->async);
}

void yw__store_on_async(uv_async_t *async)
{
    yw_store_t *store = async->data;

    pthread_mutex_lock(&store->mu);
    yw_store_job_t *job = store->done.head;
    store->done.head = store->done.tail = NULL;
    /* Every job finished before the writer exited: this batch is then the last one. */
    bool exited = store->writer_exited;
    pthread_mutex_unlock(&store->mu);

    while (job != NULL) {
        yw_store_job_t *next = job->yw_next;
        job->yw_next = NULL;
        /* After done returns the job may be freed or reused by its owner. */
        job->done(job, job->yw_status);
        job = next;
    }
    if (store->pg != NULL) {
        yw__pg_deliver(store);
    }
    if (exited) {
        yw__store_finish_close(store);
    }
}
