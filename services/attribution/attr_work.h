/*
 * attr_work.h — a worker thread with a job queue, for the attribution service's disk
 * work off the loop (index files built and merged; lookups in them). Jobs run one at a
 * time, in the order submitted; each job's `after` runs on the loop once its `work` has
 * returned.
 *
 * Why not the libuv thread pool: closing must be synchronous and complete (every
 * `after` runs before close returns), so that shutdown frees everything without
 * waiting for the loop, and a long job (a merge) must not hold up short ones (lookups):
 * the service runs one worker for each kind.
 *
 * Threads: attr_work_submit() and attr_work_close() are loop-thread only; `work` runs
 * on the worker thread and must touch nothing the loop changes meanwhile.
 */
#ifndef ATTR_WORK_H
#define ATTR_WORK_H

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_attr_job_t attr_job_t;

/** A job: the caller owns it (typically embedded first in a bigger struct). */
struct st_attr_job_t {
    void (*work)(attr_job_t *job);  /* worker thread */
    void (*after)(attr_job_t *job); /* loop thread, after work; may free the job */
    /* private */
    attr_job_t *next;
};

typedef struct st_attr_work_t attr_work_t;

/** Starts a worker. Returns 0 or a negative errno. */
int attr_work_open(uv_loop_t *loop, attr_work_t **out);

/** Queues a job. Returns 0 (after will run) or -ESHUTDOWN once closing (it will not). */
int attr_work_submit(attr_work_t *w, attr_job_t *job);

/** Jobs submitted whose `after` has not run yet. */
int attr_work_pending(const attr_work_t *w);

/**
 * Lets the worker finish every queued job, joins it (blocking: for shutdown), runs the
 * `after` of every finished job, then frees the worker; `closed` runs later on the loop
 * (a uv handle close). Jobs submitted from those `after` callbacks are refused.
 */
void attr_work_close(attr_work_t *w, void (*closed)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
