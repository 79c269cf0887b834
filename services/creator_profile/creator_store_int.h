/*
 * creator_store_int.h — what creator_store.c shares with creator_store_notes.c (the
 * RecordNoteStats job): two helpers of a job's work. Nothing else includes it.
 */
#ifndef CREATOR_STORE_INT_H
#define CREATOR_STORE_INT_H

#include <grpc/status.h>

#include "common/sql.h"
#include "common/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** *exists gets whether creator `id` exists. Returns OK, or a failure in job->errmsg. */
grpc_status_code creator_store__exists(yw_store_conn_t *conn, yw_store_job_t *job, const char *id,
                                       int *exists);

/** Runs a statement that returns no rows, and is done with it. */
grpc_status_code creator_store__step_done(yw_store_conn_t *conn, yw_store_job_t *job, yw_sql_t *st,
                                          const char *what);

#ifdef __cplusplus
}
#endif
#endif
