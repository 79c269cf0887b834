/*
 * Unit tests of common/listener.c: the accept guard (the bound, the reserve descriptor on
 * EMFILE) and the watch of a listening socket, on real loopback sockets. Each test runs in
 * a process of its own (test.h), so the process-wide guard starts afresh in each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "common/listener.h"
#include "tests/unit/test.h"

/* A non-blocking listening socket on 127.0.0.1; *port gets its port. */
static int listening_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    YW_CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    YW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    YW_CHECK(listen(fd, 128) == 0);
    socklen_t al = sizeof a;
    YW_CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A client connected to `port` (the connection waits in the accept queue). */
static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    YW_CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    YW_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

/* accept4() until it fails; the accepted descriptors go to fds (at most max). */
static int accept_all(int lfd, int *fds, int max, int *last_errno)
{
    int n = 0;
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            *last_errno = errno;
            return n;
        }
        YW_CHECK(n < max);
        fds[n++] = c;
    }
}

typedef struct {
    int dead;
    char why[256];
} dead_t;

static void on_dead(void *arg, const char *why)
{
    dead_t *d = arg;
    d->dead++;
    snprintf(d->why, sizeof d->why, "%s", why);
}

static yw_listener_t *start(uv_loop_t *loop, int port, int max_conns, int stall_ms, dead_t *d)
{
    yw_listener_config_t cfg = {
        .port = port,
        .max_connections = max_conns,
        .stall_ms = stall_ms,
        .on_dead = on_dead,
        .arg = d,
    };
    yw_listener_t *l = NULL;
    char err[256] = "";
    int rc = yw_listener_start(loop, &cfg, &l, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "yw_listener_start: %s\n", err);
    }
    YW_CHECK_INT(rc, ==, 0);
    return l;
}

static void stop_and_close(uv_loop_t *loop, yw_listener_t *l)
{
    yw_listener_stop(l);
    YW_CHECK_INT(uv_run(loop, UV_RUN_DEFAULT), ==, 0);
    YW_CHECK_INT(uv_loop_close(loop), ==, 0);
}

/* The listener still works: a new connection is accepted. Then everything is closed. */
static void accepts_one_more_then_stops(uv_loop_t *loop, yw_listener_t *l, int lfd, int port)
{
    int c = connect_to(port), got[2], e = 0;
    YW_CHECK_INT(accept_all(lfd, got, 2, &e), ==, 1);
    close(got[0]);
    close(c);
    close(lfd);
    stop_and_close(loop, l);
}

YW_TEST(raises_the_soft_file_limit_to_the_hard_one)
{
    struct rlimit rl;
    YW_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max < 512) {
        return; /* nothing to raise in this environment */
    }
    rl.rlim_cur = 256;
    YW_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    long before = 0, after = 0;
    YW_CHECK_INT(yw_listener_raise_fd_limit(&before, &after), ==, 0);
    YW_CHECK_INT(before, ==, 256);
    long want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > YW_LISTENER_NOFILE_MAX
                    ? YW_LISTENER_NOFILE_MAX
                    : (long)rl.rlim_max;
    YW_CHECK_INT(after, ==, want);
    YW_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    YW_CHECK_INT(rl.rlim_cur, ==, want);
    /* Already raised: nothing changes. */
    YW_CHECK_INT(yw_listener_raise_fd_limit(&before, &after), ==, 0);
    YW_CHECK_INT(before, ==, want);
    YW_CHECK_INT(after, ==, want);
}

YW_TEST(connections_past_the_bound_are_closed_at_once)
{
    uv_loop_t loop;
    YW_CHECK(uv_loop_init(&loop) == 0);
    int port;
    int lfd = listening_socket(&port);
    int clients[20], got[32], e = 0;
    for (int i = 0; i < 20; i++) {
        clients[i] = connect_to(port);
    }
    dead_t d = {0};
    yw_listener_t *l = start(&loop, port, 8, 0, &d);
    YW_CHECK_INT(yw_listener_max_connections(l), ==, 8);
    YW_CHECK_INT(yw_listener_watched(l), ==, 1);
    int n = accept_all(lfd, got, 32, &e);
    YW_CHECK_INT(e, ==, EAGAIN);
    YW_CHECK_INT(n, ==, 8);
    yw_listener_stats_t s;
    yw_listener_stats(&s);
    YW_CHECK_INT(s.accepted, ==, n);
    YW_CHECK_INT(s.shed_limit, ==, 20 - n);
    /* The shed clients see their connection closed. */
    char b;
    int closed = 0;
    for (int i = 0; i < 20; i++) {
        if (recv(clients[i], &b, 1, MSG_DONTWAIT) == 0) {
            closed++;
        }
        close(clients[i]);
    }
    YW_CHECK_INT(closed, ==, 20 - n);
    /* Room again: the next connection is accepted. */
    for (int i = 0; i < n; i++) {
        close(got[i]);
    }
    accepts_one_more_then_stops(&loop, l, lfd, port);
    YW_CHECK_INT(d.dead, ==, 0);
}

YW_TEST(out_of_descriptors_the_waiting_connections_are_closed_and_listening_goes_on)
{
    uv_loop_t loop;
    YW_CHECK(uv_loop_init(&loop) == 0);
    struct rlimit rl;
    YW_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = 160;
    YW_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int port;
    int lfd = listening_socket(&port);
    dead_t d = {0};
    yw_listener_t *l = start(&loop, port, 1000, 0, &d);
    YW_CHECK_INT(yw_listener_max_connections(l), <, 160 - YW_LISTENER_FD_HEADROOM);
    int clients[10];
    for (int i = 0; i < 10; i++) {
        clients[i] = connect_to(port);
    }
    /* Something else takes every descriptor left, headroom included. */
    int fillers[200], nf = 0;
    for (;;) {
        int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (f < 0) {
            YW_CHECK_INT(errno, ==, EMFILE);
            break;
        }
        YW_CHECK(nf < 200);
        fillers[nf++] = f;
    }
    int got[4], e = 0;
    /* gRPC 1.51 stops listening on EMFILE; the guard says EAGAIN instead, after closing
     * the waiting connections with the reserve descriptor. */
    YW_CHECK_INT(accept_all(lfd, got, 4, &e), ==, 0);
    YW_CHECK_INT(e, ==, EAGAIN);
    yw_listener_stats_t s;
    yw_listener_stats(&s);
    YW_CHECK_INT(s.shed_no_fd, ==, 10);
    char b;
    for (int i = 0; i < 10; i++) {
        YW_CHECK_INT(recv(clients[i], &b, 1, MSG_DONTWAIT), ==, 0);
        close(clients[i]);
    }
    /* Descriptors free again: a new connection is accepted. */
    for (int i = 0; i < nf; i++) {
        close(fillers[i]);
    }
    accepts_one_more_then_stops(&loop, l, lfd, port);
    YW_CHECK_INT(d.dead, ==, 0);
}

static void on_give_up(uv_timer_t *t)
{
    uv_stop(t->loop);
}

YW_TEST(a_listener_that_accepts_nothing_is_found_dead)
{
    uv_loop_t loop;
    YW_CHECK(uv_loop_init(&loop) == 0);
    int port;
    int lfd = listening_socket(&port);
    dead_t d = {0};
    yw_listener_t *l = start(&loop, port, 100, 200, &d);
    int c = connect_to(port); /* waits in the queue; nothing ever accepts it */
    uv_timer_t give_up;
    uv_timer_init(&loop, &give_up);
    uv_timer_start(&give_up, on_give_up, 3000, 0);
    uint64_t t0 = uv_hrtime();
    while (d.dead == 0 && uv_hrtime() - t0 < 3000000000ull) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    YW_CHECK_INT(d.dead, ==, 1);
    YW_CHECK(strstr(d.why, "accept queue") != NULL);
    YW_CHECK(!yw_listener_alive(l));
    /* About the stall time, not at once. */
    YW_CHECK((uv_hrtime() - t0) / 1000000 >= 150);
    uv_close((uv_handle_t *)&give_up, NULL);
    close(c);
    close(lfd);
    stop_and_close(&loop, l);
}

typedef struct {
    int lfd, port, accepted, connects;
    int clients[64];
} busy_t;

static void on_readable(uv_poll_t *p, int status, int events)
{
    busy_t *b = p->data;
    int got[64], e = 0;
    int n = accept_all(b->lfd, got, 64, &e);
    for (int i = 0; i < n; i++) {
        close(got[i]);
    }
    b->accepted += n;
}

static void on_connect_tick(uv_timer_t *t)
{
    busy_t *b = t->data;
    if (b->connects == 40) {
        uv_timer_stop(t);
        uv_stop(t->loop);
        return;
    }
    b->clients[b->connects++] = connect_to(b->port);
}

YW_TEST(a_listener_that_accepts_is_alive)
{
    uv_loop_t loop;
    YW_CHECK(uv_loop_init(&loop) == 0);
    busy_t b = {0};
    b.lfd = listening_socket(&b.port);
    dead_t d = {0};
    yw_listener_t *l = start(&loop, b.port, 100, 200, &d);
    uv_poll_t poll;
    uv_poll_init_socket(&loop, &poll, b.lfd);
    poll.data = &b;
    uv_poll_start(&poll, UV_READABLE, on_readable);
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    tick.data = &b;
    uv_timer_start(&tick, on_connect_tick, 25, 25); /* 40 connections over a second */
    uv_run(&loop, UV_RUN_DEFAULT);
    YW_CHECK_INT(d.dead, ==, 0);
    YW_CHECK(yw_listener_alive(l));
    YW_CHECK_INT(b.accepted, >=, 39);
    uv_close((uv_handle_t *)&poll, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    for (int i = 0; i < b.connects; i++) {
        close(b.clients[i]);
    }
    close(b.lfd);
    stop_and_close(&loop, l);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(raises_the_soft_file_limit_to_the_hard_one),
        YW_TEST_ENTRY(connections_past_the_bound_are_closed_at_once),
        YW_TEST_ENTRY(out_of_descriptors_the_waiting_connections_are_closed_and_listening_goes_on),
        YW_TEST_ENTRY(a_listener_that_accepts_nothing_is_found_dead),
        YW_TEST_ENTRY(a_listener_that_accepts_is_alive),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
