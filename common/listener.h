/*
 * listener.h — keeps a service's listening sockets alive under connection floods.
 *
 * gRPC C core 1.51 (tcp_server_posix.cc, on_read) stops listening for good when
 * accept4() fails with anything but EAGAIN or EINTR: on EMFILE it logs "Failed accept4:
 * Too many open files" and never re-arms the listener, so a flood of connections past the
 * file limit leaves a process that runs, idles and can never be reached again. This
 * module, one mechanism for every service (app.c uses it):
 *
 * - raises the soft file limit (RLIMIT_NOFILE) to the hard one at start;
 * - guards every accept4() of the process (gRPC's listener and the metrics endpoint's):
 *   the binary defines accept4(), so gRPC's calls come here first and go on to the C
 *   library's. A connection whose descriptor would pass the bound (--max-connections,
 *   and the file limit less YW_LISTENER_FD_HEADROOM descriptors kept for files and
 *   peers) is closed as soon as it is accepted; on EMFILE/ENFILE one descriptor kept in
 *   reserve is closed for a moment to accept and close what waits (the client sees its
 *   connection closed and retries), then the caller is told EAGAIN; errors that concern
 *   one connection (ECONNABORTED, EPROTO, ...) are skipped, ENOBUFS/ENOMEM become EAGAIN.
 *   gRPC never sees an error that would make it stop listening;
 * - watches the listening sockets of the gRPC port from the loop: a socket whose accept
 *   queue holds connections while none was taken off it (accepted, or closed by the
 *   guard) since the last check is woken by a connection to itself (a new arrival is a
 *   new edge for gRPC's edge-triggered epoll); one that stays so for the whole stall time
 *   (--listener-stall-ms), while the loop itself keeps time, is dead, and `on_dead` runs
 *   once. So is one on which accept4() failed with an error that makes gRPC stop
 *   listening;
 * - after a flood (256 connections or more accepted or shed since), gives free heap above
 *   16 MiB back to the system (malloc_trim), at most every 10 s.
 *
 * Counters (loop-thread snapshot of atomics): yaowei_connections_shed_total{reason=
 * "max_connections"|"no_descriptors"}, yaowei_listener_accept_queue, and the gauge
 * yaowei_connections_limit.
 */
#ifndef YW_LISTENER_H
#define YW_LISTENER_H

#include <stdint.h>

#include <uv.h>

#include "common/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Descriptors kept free for what is not an accepted connection (files, peers, probes). */
#define YW_LISTENER_FD_HEADROOM 64

/** The soft file limit is raised at most to this (a hard limit may be "unlimited"). */
#define YW_LISTENER_NOFILE_MAX 1048576

typedef struct st_yw_listener_t yw_listener_t;

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit (at most YW_LISTENER_NOFILE_MAX).
 * `*before` and `*after` (may be NULL) get the soft limit before and after. Returns 0 or
 * a negative errno (the limit is then unchanged and both get the current one).
 */
int yw_listener_raise_fd_limit(long *before, long *after);

/** What yw_listener_start() watches and bounds. */
typedef struct st_yw_listener_config_t {
    /** The bound TCP port of the gRPC server (yw_server_port()). */
    int port;
    /**
     * Most client connections held at once, over every listener of the process (gRPC
     * and metrics); more are closed as soon as they are accepted. Also bounded by the
     * soft file limit less YW_LISTENER_FD_HEADROOM. Must be >= 1.
     */
    int max_connections;
    /**
     * How long connections may wait in a listening socket's accept queue, unaccepted,
     * before the listener counts as dead (checked every stall_ms / 10, from 20 ms to 1 s).
     * 0: never counted dead (checks every second still wake a listener that left
     * connections waiting, and count what was shed).
     */
    int stall_ms;
    /** Registry for the counters above; NULL counts nothing. Must outlive the listener. */
    yw_metrics_t *metrics;
    /**
     * Runs once on the loop when the listener is found dead, with a sentence that says
     * why. The listener then stops watching; the caller decides what to do (app.c: health
     * NOT_SERVING, no more watchdog pings, exit 1). May be NULL.
     */
    void (*on_dead)(void *arg, const char *why);
    void *arg;
} yw_listener_config_t;

/**
 * Sets the process-wide accept guard to `cfg` (the bound, a reserve descriptor) and
 * starts watching the listening sockets of cfg->port (found among the process's
 * descriptors: call after gRPC bound the port) on `loop`. Returns 0, or a negative errno
 * with a message in `err` (-EMFILE: the file limit leaves no room for a connection;
 * -ENOMEM). One listener per process. Loop thread.
 */
int yw_listener_start(uv_loop_t *loop, const yw_listener_config_t *cfg, yw_listener_t **out,
                      char *err, size_t errlen);

/**
 * The connection bound in force: max_connections, or fewer when the file limit is lower.
 */
int yw_listener_max_connections(const yw_listener_t *l);

/** The soft file limit the bound was computed from. */
long yw_listener_fd_limit(const yw_listener_t *l);

/**
 * How many listening sockets of the port are watched: 0 when none was found (a unix
 * socket, or gRPC's listener is gone), and the bound alone holds.
 */
int yw_listener_watched(const yw_listener_t *l);

/** Non-zero until the listener was found dead. */
int yw_listener_alive(const yw_listener_t *l);

/**
 * Stops watching (at shutdown, before gRPC closes its listeners) and frees the listener
 * once its timer has closed; the accept guard stays in force with its bound. NULL is a
 * no-op. Loop thread.
 */
void yw_listener_stop(yw_listener_t *l);

/** Process-wide counts of the accept guard since start, for tests and logs. */
typedef struct st_yw_listener_stats_t {
    uint64_t accepted;       /* handed to the caller */
    uint64_t shed_limit;     /* closed at once: past the bound */
    uint64_t shed_no_fd;     /* accepted with the reserve descriptor and closed (EMFILE) */
    uint64_t skipped_errors; /* connection errors skipped, ENOBUFS/ENOMEM turned EAGAIN */
} yw_listener_stats_t;

/** Fills `out` with the accept guard's counts. Any thread. */
void yw_listener_stats(yw_listener_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
