/*
 * listener.c — the accept guard and the listener watch. See listener.h.
 *
 * The guard is this file's accept4(). The service binaries link it, so the dynamic
 * linker binds libgrpc's (and libmicrohttpd's) calls to accept4 to it rather than to the
 * C library's, which it calls through dlsym(RTLD_NEXT). It runs on whatever thread
 * accepts: its state is atomics, and the reserve descriptor is under a mutex.
 *
 * The bound is a descriptor number: Linux gives accept4() the lowest free descriptor, so
 * a new connection numbered `cap_fd` or more means that every descriptor below it is in
 * use. Closing it keeps every accepted connection below `cap_fd`: at most cap_fd minus
 * the descriptors the process held before serving, and the descriptors from cap_fd up to
 * the file limit stay free for files, peers and the watch's own probes.
 */
#define _GNU_SOURCE
#include "common/listener.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

/* Listening sockets of one port: IPv4 and IPv6, and gRPC's clones under SO_REUSEPORT. */
#define YW__MAX_WATCHED 8
/* Connections one accept4() call may close before it returns EAGAIN (the watch's next
 * probe wakes the listener for the rest). */
#define YW__ROUNDS_PER_CALL 4096
/* The watch checks every stall_ms / YW__STALL_CHECKS, within these bounds. */
#define YW__STALL_CHECKS 10
#define YW__CHECK_MIN_MS 20
#define YW__CHECK_MAX_MS 1000
/* Sheds are logged at most this often. */
#define YW__LOG_EVERY_NS (10ull * 1000000000ull)
/* After a flood (this many connections accepted or shed since the heap was last given
 * back), free heap above YW__TRIM_FREE_BYTES is given back to the system (malloc_trim:
 * about 10 ms after 4,096 connections), checked at most every YW__TRIM_EVERY_NS. */
#define YW__TRIM_AFTER_CONNECTIONS 256
#define YW__TRIM_FREE_BYTES (16u << 20)
#define YW__TRIM_EVERY_NS (10ull * 1000000000ull)

/* ---- the accept guard: any thread ---- */

typedef int (*yw__accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static atomic_int yw__cap_fd = INT_MAX;
static pthread_mutex_t yw__reserve_mu = PTHREAD_MUTEX_INITIALIZER;
static int yw__reserve_fd = -1; /* guarded by yw__reserve_mu */
static atomic_uint_fast64_t yw__n_accepted, yw__n_shed_limit, yw__n_shed_no_fd, yw__n_skipped;
/* The watched listening sockets, as fd + 1 (0: a free slot), with the connections taken
 * off each one's accept queue (handed over or closed) and the last error that gRPC would
 * have stopped listening on. */
static atomic_int yw__watched_fd[YW__MAX_WATCHED];
static atomic_uint_fast64_t yw__watched_dequeued[YW__MAX_WATCHED];
static atomic_int yw__watched_errno[YW__MAX_WATCHED];

static int yw__sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return (int)syscall(SYS_accept4, fd, addr, len, flags);
}

static yw__accept4_fn yw__real_accept4(void)
{
    static _Atomic(yw__accept4_fn) real;
    yw__accept4_fn f = atomic_load_explicit(&real, memory_order_acquire);
    if (f == NULL) {
        f = (yw__accept4_fn)dlsym(RTLD_NEXT, "accept4");
        if (f == NULL) {
            f = yw__sys_accept4;
        }
        atomic_store_explicit(&real, f, memory_order_release);
    }
    return f;
}

static int yw__watched_slot(int fd)
{
    for (int i = 0; i < YW__MAX_WATCHED; i++) {
        if (atomic_load_explicit(&yw__watched_fd[i], memory_order_relaxed) == fd + 1) {
            return i;
        }
    }
    return -1;
}

/* Reopens the reserve descriptor if a shed lost it to another thread. */
static void yw__reserve_refill(void)
{
    pthread_mutex_lock(&yw__reserve_mu);
    if (yw__reserve_fd < 0) {
        yw__reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    pthread_mutex_unlock(&yw__reserve_mu);
}

/*
 * Out of descriptors: frees the reserve for a moment to accept the oldest waiting
 * connection and close it. Returns 1 when one was closed, 0 when none waits, -1 when
 * there is no reserve or another thread took the freed slot first.
 */
static int yw__shed_with_reserve(int fd, int slot, yw__accept4_fn real)
{
    int rc = -1;
    pthread_mutex_lock(&yw__reserve_mu);
    if (yw__reserve_fd >= 0) {
        close(yw__reserve_fd);
        int c = real(fd, NULL, NULL, SOCK_CLOEXEC);
        int e = errno;
        if (c >= 0) {
            close(c);
            atomic_fetch_add(&yw__n_shed_no_fd, 1);
            if (slot >= 0) {
                atomic_fetch_add(&yw__watched_dequeued[slot], 1);
            }
            rc = 1;
        } else {
            rc = e == EAGAIN ? 0 : -1;
        }
        yw__reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    pthread_mutex_unlock(&yw__reserve_mu);
    return rc;
}

/*
 * The accept4() every library of the process calls (see the top of the file). Returns
 * what the C library's returns, except that it never fails with an error after which a
 * caller like gRPC 1.51 would stop listening: connections past the bound or with no
 * descriptor for them are closed, connection errors are skipped, and a shortage of
 * descriptors or memory is EAGAIN.
 */
int accept4(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict len, int flags)
{
    struct sockaddr *addr = addr_arg.__sockaddr__;
    socklen_t len0 = len != NULL ? *len : 0;
    int slot = yw__watched_slot(fd);
    yw__accept4_fn real = yw__real_accept4();
    for (int round = 0; round < YW__ROUNDS_PER_CALL; round++) {
        if (len != NULL) {
            *len = len0;
        }
        int c = real(fd, addr, len, flags);
        if (c >= 0) {
            if (slot >= 0) {
                atomic_fetch_add_explicit(&yw__watched_dequeued[slot], 1, memory_order_relaxed);
            }
            if (c < atomic_load_explicit(&yw__cap_fd, memory_order_relaxed)) {
                atomic_fetch_add_explicit(&yw__n_accepted, 1, memory_order_relaxed);
                return c;
            }
            close(c);
            atomic_fetch_add_explicit(&yw__n_shed_limit, 1, memory_order_relaxed);
            continue;
        }
        int e = errno;
        switch (e) {
        case EMFILE:
        case ENFILE:
            if (yw__shed_with_reserve(fd, slot, real) > 0) {
                continue;
            }
            errno = EAGAIN;
            return -1;
        /* accept(2): errors of one pending connection, to be retried as EAGAIN is. */
        case ECONNABORTED:
        case EPROTO:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case ENETDOWN:
        case ENETUNREACH:
        case EPERM:
            atomic_fetch_add_explicit(&yw__n_skipped, 1, memory_order_relaxed);
            continue;
        case ENOBUFS:
        case ENOMEM:
            atomic_fetch_add_explicit(&yw__n_skipped, 1, memory_order_relaxed);
            errno = EAGAIN;
            return -1;
        default:
            if (e != EAGAIN && e != EINTR && slot >= 0) {
                atomic_store(&yw__watched_errno[slot], e);
            }
            errno = e;
            return -1;
        }
    }
    errno = EAGAIN;
    return -1;
}

void yw_listener_stats(yw_listener_stats_t *out)
{
    out->accepted = atomic_load(&yw__n_accepted);
    out->shed_limit = atomic_load(&yw__n_shed_limit);
    out->shed_no_fd = atomic_load(&yw__n_shed_no_fd);
    out->skipped_errors = atomic_load(&yw__n_skipped);
}

int yw_listener_raise_fd_limit(long *before, long *after)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return -errno;
    }
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > YW_LISTENER_NOFILE_MAX) {
        want = YW_LISTENER_NOFILE_MAX;
    }
    long was = (long)rl.rlim_cur;
    int rc = 0;
    if (rl.rlim_cur == RLIM_INFINITY) {
        was = YW_LISTENER_NOFILE_MAX;
    } else if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        rc = setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : -errno;
    }
    if (before != NULL) {
        *before = was;
    }
    if (after != NULL) {
        *after = rc == 0 && (long)want > was ? (long)want : was;
    }
    return rc;
}

/* ---- the watch: loop thread ---- */

struct st_yw_listener_t {
    yw_listener_config_t cfg;
    uv_timer_t timer;
    int check_ms;
    int stall_checks; /* checks in a row that make a stall: stall_ms / check_ms */
    int n;
    int fds[YW__MAX_WATCHED];
    int slots[YW__MAX_WATCHED];
    uint64_t last_dequeued[YW__MAX_WATCHED];
    int stalled[YW__MAX_WATCHED]; /* checks in a row with connections waiting, none taken */
    int poke_fd;                  /* the last probe connection, closed at the next check */
    int alive;
    int max_connections;
    long fd_limit;
    uint64_t last_tick_ns;
    uint64_t last_log_ns, last_trim_ns;
    uint64_t conns_at_trim;       /* accepted + shed when the heap was last given back */
    yw_listener_stats_t reported; /* counts already in the metrics */
    yw_listener_stats_t logged;   /* counts already in a log line */
    yw_metric_t *m_shed_limit, *m_shed_no_fd, *m_queue, *m_limit;
};

/* The listening TCP sockets of `port` among the process's descriptors. */
static int yw__find_listeners(int port, int *fds, int max)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -errno;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < max) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end != '\0' || end == de->d_name || fd == dirfd(d)) {
            continue;
        }
        int accepting = 0, type = 0;
        socklen_t sl = sizeof accepting, tl = sizeof type;
        struct sockaddr_storage ss = {0};
        socklen_t al = sizeof ss;
        if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &sl) != 0 || !accepting ||
            getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
            getsockname((int)fd, (struct sockaddr *)&ss, &al) != 0) {
            continue;
        }
        int p = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : -1;
        if (p == port) {
            fds[n++] = (int)fd;
        }
    }
    closedir(d);
    return n;
}

/* Connects to listening socket `fd` (loopback for a wildcard address): a new arrival,
 * which wakes an edge-triggered listener that left connections waiting. */
static void yw__poke(yw_listener_t *l, int fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t al = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &al) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY)) {
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
            a->sin6_addr = in6addr_loopback;
        }
    } else {
        return;
    }
    if (l->poke_fd >= 0) {
        close(l->poke_fd);
    }
    l->poke_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->poke_fd >= 0 && connect(l->poke_fd, (struct sockaddr *)&ss, al) != 0 &&
        errno != EINPROGRESS) {
        close(l->poke_fd);
        l->poke_fd = -1;
    }
}

static void yw__dead(yw_listener_t *l, const char *why)
{
    l->alive = 0;
    uv_timer_stop(&l->timer);
    if (l->cfg.on_dead != NULL) {
        l->cfg.on_dead(l->cfg.arg, why);
    }
}

/* Metrics, a rate-limited log line of what was shed, and the heap given back. */
static void yw__report(yw_listener_t *l, uint64_t now)
{
    yw_listener_stats_t s;
    yw_listener_stats(&s);
    yw_metric_add(l->m_shed_limit, s.shed_limit - l->reported.shed_limit);
    yw_metric_add(l->m_shed_no_fd, s.shed_no_fd - l->reported.shed_no_fd);
    l->reported = s;
    uint64_t shed = s.shed_limit - l->logged.shed_limit,
             no_fd = s.shed_no_fd - l->logged.shed_no_fd;
    if ((shed > 0 || no_fd > 0) && now - l->last_log_ns >= YW__LOG_EVERY_NS) {
        yw_log(YW_LOG_WARN,
               "connection flood: closed %llu connection(s) past the bound of %d connections "
               "(--max-connections, file limit %ld) and %llu with no descriptor free; %llu "
               "accepted in all",
               (unsigned long long)shed, l->max_connections, l->fd_limit, (unsigned long long)no_fd,
               (unsigned long long)s.accepted);
        l->logged = s;
        l->last_log_ns = now;
    }
    uint64_t conns = s.accepted + s.shed_limit + s.shed_no_fd;
    if (conns - l->conns_at_trim >= YW__TRIM_AFTER_CONNECTIONS &&
        now - l->last_trim_ns >= YW__TRIM_EVERY_NS) {
        l->last_trim_ns = now;
        struct mallinfo2 mi = mallinfo2();
        if (mi.fordblks >= YW__TRIM_FREE_BYTES) {
            malloc_trim(0);
            l->conns_at_trim = conns;
            yw_log(YW_LOG_INFO, "gave free heap back to the system (%zu MiB were free, %.1f ms)",
                   mi.fordblks >> 20, (double)(uv_hrtime() - now) / 1e6);
        }
    }
}

static void yw__on_check(uv_timer_t *t)
{
    yw_listener_t *l = t->data;
    uint64_t now = uv_hrtime();
    /* A loop that did not keep time (a long handler, a stopped process) is no evidence
     * against the listener: gRPC accepts on this thread too. */
    int late = now - l->last_tick_ns > 2ull * (uint64_t)l->check_ms * 1000000ull;
    l->last_tick_ns = now;
    if (l->poke_fd >= 0) {
        close(l->poke_fd);
        l->poke_fd = -1;
    }
    yw__reserve_refill();
    yw__report(l, now);
    int64_t queued = 0;
    for (int i = 0; i < l->n; i++) {
        int e = atomic_load(&yw__watched_errno[l->slots[i]]);
        if (e != 0) {
            char why[256];
            snprintf(why, sizeof why,
                     "accept4() on the listening socket of port %d failed with %s, after which "
                     "gRPC stops listening",
                     l->cfg.port, strerror(e));
            yw__dead(l, why);
            return;
        }
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        if (getsockopt(l->fds[i], IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) {
            continue;
        }
        /* A listening socket's tcpi_unacked is its accept queue's length. */
        uint64_t dequeued = atomic_load(&yw__watched_dequeued[l->slots[i]]);
        queued += ti.tcpi_unacked;
        if (ti.tcpi_unacked > 0 && dequeued == l->last_dequeued[i] && !late) {
            l->stalled[i]++;
        } else {
            l->stalled[i] = 0;
        }
        l->last_dequeued[i] = dequeued;
        if (l->cfg.stall_ms > 0 && l->stalled[i] >= l->stall_checks) {
            char why[256];
            snprintf(why, sizeof why,
                     "%u connection(s) waited %d ms in the accept queue of port %d and nothing "
                     "accepted them",
                     ti.tcpi_unacked, l->cfg.stall_ms, l->cfg.port);
            yw__dead(l, why);
            return;
        }
        if (l->stalled[i] > 0) {
            yw__poke(l, l->fds[i]);
        }
    }
    yw_metric_gauge_set(l->m_queue, queued);
}

static int yw__metrics_init(yw_listener_t *l)
{
    yw_metrics_t *m = l->cfg.metrics;
    if (m == NULL) {
        return 0;
    }
    const char *help = "Connections closed as soon as accepted: past --max-connections or the "
                       "file limit, or with no descriptor free.";
    int rc;
    if ((rc = yw_metrics_counter(m, "yaowei_connections_shed_total", help, "reason=max_connections",
                                 &l->m_shed_limit)) != 0 ||
        (rc = yw_metrics_counter(m, "yaowei_connections_shed_total", NULL, "reason=no_descriptors",
                                 &l->m_shed_no_fd)) != 0 ||
        (rc = yw_metrics_gauge(m, "yaowei_connections_limit",
                               "Most client connections held at once.", NULL, &l->m_limit)) != 0 ||
        (rc = yw_metrics_gauge(m, "yaowei_listener_accept_queue",
                               "Connections waiting in the gRPC port's accept queue.", NULL,
                               &l->m_queue)) != 0) {
        return rc;
    }
    yw_metric_gauge_set(l->m_limit, l->max_connections);
    return 0;
}

int yw_listener_start(uv_loop_t *loop, const yw_listener_config_t *cfg, yw_listener_t **out,
                      char *err, size_t errlen)
{
    struct rlimit rl;
    if (cfg->max_connections < 1 || getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(err, errlen, "max connections must be >= 1 and the file limit readable");
        return -EINVAL;
    }
    yw_listener_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->cfg = *cfg;
    l->poke_fd = -1;
    l->alive = 1;
    l->fd_limit =
        rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX ? INT_MAX : (long)rl.rlim_cur;
    /* The reserve is opened first: its number is the lowest free descriptor, i.e. about
     * the number the process holds before serving. */
    yw__reserve_refill();
    pthread_mutex_lock(&yw__reserve_mu);
    long base = yw__reserve_fd >= 0 ? yw__reserve_fd + 1 : 0;
    pthread_mutex_unlock(&yw__reserve_mu);
    long cap = base + cfg->max_connections;
    if (cap > l->fd_limit - YW_LISTENER_FD_HEADROOM) {
        cap = l->fd_limit - YW_LISTENER_FD_HEADROOM;
    }
    if (cap <= base) {
        snprintf(err, errlen,
                 "the file limit (%ld descriptors, RLIMIT_NOFILE) leaves no room for connections: "
                 "%ld are in use and %d are kept for files and peers",
                 l->fd_limit, base, YW_LISTENER_FD_HEADROOM);
        free(l);
        return -EMFILE;
    }
    l->max_connections = (int)(cap - base);
    atomic_store(&yw__cap_fd, (int)cap);
    int rc = yw__metrics_init(l);
    if (rc != 0) {
        snprintf(err, errlen, "listener metrics: cannot register (%s)", strerror(-rc));
        free(l);
        return rc;
    }
    rc = yw__find_listeners(cfg->port, l->fds, YW__MAX_WATCHED);
    l->n = rc > 0 ? rc : 0;
    for (int i = 0; i < l->n; i++) {
        l->slots[i] = -1;
        for (int s = 0; s < YW__MAX_WATCHED && l->slots[i] < 0; s++) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&yw__watched_fd[s], &expected, l->fds[i] + 1)) {
                atomic_store(&yw__watched_dequeued[s], 0);
                atomic_store(&yw__watched_errno[s], 0);
                l->slots[i] = s;
            }
        }
        if (l->slots[i] < 0) { /* more than YW__MAX_WATCHED sockets: watch the first ones */
            l->n = i;
            break;
        }
    }
    l->check_ms = cfg->stall_ms / YW__STALL_CHECKS;
    if (l->check_ms < YW__CHECK_MIN_MS) {
        l->check_ms = cfg->stall_ms > 0 ? YW__CHECK_MIN_MS : YW__CHECK_MAX_MS;
    } else if (l->check_ms > YW__CHECK_MAX_MS) {
        l->check_ms = YW__CHECK_MAX_MS;
    }
    l->stall_checks = (cfg->stall_ms + l->check_ms - 1) / l->check_ms;
    yw_listener_stats(&l->reported);
    l->logged = l->reported;
    l->conns_at_trim = l->reported.accepted + l->reported.shed_limit + l->reported.shed_no_fd;
    l->last_tick_ns = l->last_trim_ns = uv_hrtime();
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, yw__on_check, (uint64_t)l->check_ms, (uint64_t)l->check_ms);
    uv_unref((uv_handle_t *)&l->timer);
    *out = l;
    return 0;
}

int yw_listener_max_connections(const yw_listener_t *l)
{
    return l->max_connections;
}

long yw_listener_fd_limit(const yw_listener_t *l)
{
    return l->fd_limit;
}

int yw_listener_watched(const yw_listener_t *l)
{
    return l->n;
}

int yw_listener_alive(const yw_listener_t *l)
{
    return l->alive;
}

static void yw__on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void yw_listener_stop(yw_listener_t *l)
{
    if (l == NULL) {
        return;
    }
    for (int i = 0; i < l->n; i++) {
        atomic_store(&yw__watched_fd[l->slots[i]], 0);
    }
    if (l->poke_fd >= 0) {
        close(l->poke_fd);
    }
    uv_close((uv_handle_t *)&l->timer, yw__on_timer_closed);
}
