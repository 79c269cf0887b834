/* nats_fixture.c — see nats_fixture.h. */
#include "tests/unit/services/attribution/nats_fixture.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "tests/unit/test.h"

extern char **environ;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    YW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    YW_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

void nats_start(nats_t *n)
{
    const char *tmp = getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp";
    snprintf(n->dir, sizeof n->dir, "%s/nats-XXXXXX", tmp);
    YW_CHECK(mkdtemp(n->dir) != NULL);
    n->port = free_port();
    snprintf(n->url, sizeof n->url, "nats://127.0.0.1:%d", n->port);
    char port[16];
    snprintf(port, sizeof port, "%d", n->port);
    char *argv[] = {"nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", n->dir, NULL};
    YW_CHECK_INT(posix_spawnp(&n->pid, "nats-server", NULL, NULL, argv, environ), ==, 0);
    /* Ready once it accepts a client. */
    for (int i = 0; i < 200; i++) {
        natsConnection *nc = NULL;
        if (natsConnection_ConnectTo(&nc, n->url) == NATS_OK) {
            natsConnection_Destroy(nc);
            return;
        }
        usleep(50 * 1000);
    }
    YW_CHECK(!"nats-server did not start");
}

void nats_stop(nats_t *n)
{
    kill(n->pid, SIGTERM);
    int status;
    waitpid(n->pid, &status, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
    YW_CHECK(system(cmd) == 0);
}

static void on_status(void *arg, const attr_cluster_status_t *st)
{
    ((watch_t *)arg)->st = *st;
}

void wait_owned(uv_loop_t *loop, watch_t *w, const int *owned, int n)
{
    for (int i = 0; i < 600; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        int ok = 1;
        for (int k = 0; k < n; k++) {
            ok &= w[k].st.ready && w[k].st.owned == owned[k];
        }
        if (ok) {
            return;
        }
        usleep(20 * 1000);
    }
    YW_CHECK(!"the partitions were not taken in time");
}

attr_cluster_t *join(uv_loop_t *loop, const char *url, const char *id, watch_t *w)
{
    attr_cluster_config_t cfg = {.urls = url,
                                 .node_id = id,
                                 .advertise = "127.0.0.1:1",
                                 .partitions = 2,
                                 .replicas = 1,
                                 .lease_ttl_ms = 1000};
    attr_cluster_t *c = NULL;
    char err[256];
    YW_CHECK_INT(attr_cluster_start(loop, &cfg, on_status, w, &c, err, sizeof err), ==, 0);
    return c;
}

void stop_all(uv_loop_t *loop, attr_cluster_t **c, int n)
{
    for (int i = 0; i < n; i++) {
        attr_cluster_stop(c[i]);
    }
    YW_CHECK_INT(uv_run(loop, UV_RUN_DEFAULT), ==, 0);
}

void one_node_start(one_node_t *o)
{
    memset(o, 0, sizeof *o);
    nats_start(&o->nats);
    YW_CHECK_INT(uv_loop_init(&o->loop), ==, 0);
    o->c = join(&o->loop, o->nats.url, "node-a", &o->w);
    int want[] = {2};
    wait_owned(&o->loop, &o->w, want, 1);
}

void one_node_stop(one_node_t *o)
{
    stop_all(&o->loop, &o->c, 1);
    YW_CHECK_INT(uv_loop_close(&o->loop), ==, 0);
    nats_stop(&o->nats);
}
