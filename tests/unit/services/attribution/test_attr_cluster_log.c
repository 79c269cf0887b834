/*
 * test_attr_cluster_log.c — services/attribution/attr_cluster_log.c against a real
 * nats-server (Debian's, started here on a free loopback port with JetStream in a temp
 * dir): appends land in order after the lease marker, read back in order by partition;
 * an append to a partition this node does not hold is refused; an append after another
 * writer's record on the subject (a new owner's lease marker) is refused by the fence.
 */
#include "services/attribution/attr_cluster.h"

#include <errno.h>
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

typedef struct {
    pid_t pid;
    int port;
    char dir[256];
    char url[64];
} nats_t;

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

static void nats_start(nats_t *n)
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

static void nats_stop(nats_t *n)
{
    kill(n->pid, SIGTERM);
    int status;
    waitpid(n->pid, &status, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
    YW_CHECK(system(cmd) == 0);
}

typedef struct {
    attr_cluster_status_t st;
} watch_t;

static void on_status(void *arg, const attr_cluster_status_t *st)
{
    ((watch_t *)arg)->st = *st;
}

/* Runs the loop until every node's status says it holds `owned[i]` partitions. */
static void wait_owned(uv_loop_t *loop, watch_t *w, const int *owned, int n)
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

static attr_cluster_t *join(uv_loop_t *loop, const char *url, const char *id, watch_t *w)
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

typedef struct {
    uint64_t seq[8];
    char kind[8][16];
    char data[8][32];
    int n;
} records_t;

static int collect(void *arg, uint64_t seq, const char *kind, const void *data, size_t len)
{
    records_t *r = arg;
    YW_CHECK(r->n < 8);
    r->seq[r->n] = seq;
    snprintf(r->kind[r->n], sizeof r->kind[0], "%s", kind);
    snprintf(r->data[r->n], sizeof r->data[0], "%.*s", (int)len, (const char *)data);
    r->n++;
    return 0;
}

static void stop_all(uv_loop_t *loop, attr_cluster_t **c, int n)
{
    for (int i = 0; i < n; i++) {
        attr_cluster_stop(c[i]);
    }
    YW_CHECK_INT(uv_run(loop, UV_RUN_DEFAULT), ==, 0);
}

YW_TEST(appends_follow_the_lease_marker_and_read_back_in_order)
{
    nats_t n;
    nats_start(&n);
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    watch_t w = {0};
    attr_cluster_t *c = join(&loop, n.url, "node-a", &w);
    int want[] = {2};
    wait_owned(&loop, &w, want, 1);

    char err[256];
    uint64_t s1 = 0, s2 = 0, s3 = 0;
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "one", 3, &s1, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 1, "x", "other", 5, &s2, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 0, "y", "two", 3, &s3, err, sizeof err), ==, 0);
    YW_CHECK(s1 < s2 && s2 < s3);

    records_t r = {0};
    uint64_t last = 0;
    YW_CHECK_INT(attr_cluster_read(c, 0, 1, collect, &r, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(r.n, ==, 3); /* the lease marker, then partition 0's two, not 1's */
    YW_CHECK_STR(r.kind[0], "lease");
    YW_CHECK_STR(r.kind[1], "x");
    YW_CHECK_STR(r.data[1], "one");
    YW_CHECK_STR(r.kind[2], "y");
    YW_CHECK_STR(r.data[2], "two");
    YW_CHECK_INT(r.seq[1], ==, s1);
    YW_CHECK_INT(last, ==, s3);
    /* From a later sequence: only what follows. */
    records_t tail = {0};
    YW_CHECK_INT(attr_cluster_read(c, 0, s1 + 1, collect, &tail, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(tail.n, ==, 1);
    YW_CHECK_STR(tail.data[0], "two");

    attr_cluster_t *all[] = {c};
    stop_all(&loop, all, 1);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
    nats_stop(&n);
}

YW_TEST(appends_are_refused_without_the_lease_and_after_another_writer)
{
    nats_t n;
    nats_start(&n);
    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    watch_t w[2];
    memset(w, 0, sizeof w);
    attr_cluster_t *c[2] = {join(&loop, n.url, "node-a", &w[0]),
                            join(&loop, n.url, "node-b", &w[1])};
    int want[] = {1, 1};
    wait_owned(&loop, w, want, 2);

    /* Which partition is a's: the one it can append to; b cannot append to it. */
    char err[256];
    uint64_t seq = 0;
    int mine = attr_cluster_append(c[0], 0, "x", "a0", 2, &seq, err, sizeof err) == 0 ? 0 : 1;
    if (mine == 1) {
        YW_CHECK_INT(attr_cluster_append(c[0], 1, "x", "a1", 2, &seq, err, sizeof err), ==, 0);
    }
    YW_CHECK_INT(attr_cluster_append(c[1], mine, "x", "b", 1, &seq, err, sizeof err), ==, -EPERM);
    YW_CHECK(strstr(err, "not this node's") != NULL);

    /* Another writer (a new owner's marker) lands on the subject: a's next is fenced. */
    natsConnection *nc = NULL;
    YW_CHECK(natsConnection_ConnectTo(&nc, n.url) == NATS_OK);
    jsCtx *js = NULL;
    YW_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    char subject[32];
    snprintf(subject, sizeof subject, "yw.attr.p.%d", mine);
    YW_CHECK(js_Publish(NULL, js, subject, "intruder", 8, NULL, NULL) == NATS_OK);
    YW_CHECK_INT(attr_cluster_append(c[0], mine, "x", "late", 4, &seq, err, sizeof err), ==,
                 -ESTALE);
    YW_CHECK(strstr(err, "fence") != NULL);
    /* And stays refused: the partition is no longer this node's to write. */
    YW_CHECK_INT(attr_cluster_append(c[0], mine, "x", "later", 5, &seq, err, sizeof err), ==,
                 -EPERM);
    records_t r = {0};
    uint64_t last = 0;
    YW_CHECK_INT(attr_cluster_read(c[0], mine, 1, collect, &r, &last, err, sizeof err), ==, 0);
    for (int i = 0; i < r.n; i++) {
        YW_CHECK(strcmp(r.data[i], "late") != 0 && strcmp(r.data[i], "later") != 0);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    stop_all(&loop, c, 2);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
    nats_stop(&n);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(appends_follow_the_lease_marker_and_read_back_in_order),
        YW_TEST_ENTRY(appends_are_refused_without_the_lease_and_after_another_writer),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
