/*
 * test_attr_cluster_log.c — services/attribution/attr_cluster_log.c against a real
 * nats-server (Debian's, started here on a free loopback port with JetStream in a temp
 * dir): appends land in order after the lease marker, read back in order by partition,
 * each in the stream of its group of partitions (a NATS with the old single stream is
 * refused);
 * an append to a partition this node does not hold is refused; an append after another
 * writer's record on the subject (a new owner's lease marker) is refused by the fence;
 * a read that finds the chain of records broken (records purged under a snapshot) says
 * so (-ESTALE); a view built through the lease marker (or past it: this node's own
 * appends), or through the record the marker followed, holds the log; one that stopped
 * short of the marker does not; a loop busy for longer than the lease keeps the leases its cluster
 * thread went on renewing.
 */
#include "services/attribution/attr_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "tests/unit/services/attribution/nats_fixture.h"
#include "tests/unit/test.h"

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

/* The messages stream `name` holds (-1: no such stream). */
static int64_t stream_msgs(const char *url, const char *name)
{
    natsConnection *nc = NULL;
    YW_CHECK(natsConnection_ConnectTo(&nc, url) == NATS_OK);
    jsCtx *js = NULL;
    YW_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    jsStreamInfo *si = NULL;
    int64_t n = -1;
    if (js_GetStreamInfo(&si, js, name, NULL, NULL) == NATS_OK) {
        n = (int64_t)si->State.Msgs;
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

YW_TEST(appends_follow_the_lease_marker_and_read_back_in_order)
{
    one_node_t o;
    one_node_start(&o);
    attr_cluster_t *c = o.c;

    char err[256];
    uint64_t s1 = 0, s2 = 0, s3 = 0;
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "one", 3, &s1, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 1, "x", "other", 5, &s2, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 0, "y", "two", 3, &s3, err, sizeof err), ==, 0);
    YW_CHECK(s1 < s2 && s2 < s3);
    /* Both partitions' logs in the stream of partitions 0-7 (of 2): two markers, three. */
    YW_CHECK_INT(stream_msgs(o.nats.url, "yw-attr-log-0-1"), ==, 5);

    records_t r = {0};
    uint64_t last = 0;
    YW_CHECK_INT(attr_cluster_read(c, 0, 0, collect, &r, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(r.n, ==, 3); /* the lease marker, then partition 0's two, not 1's */
    YW_CHECK_STR(r.kind[0], "lease");
    /* A view built through the marker, or through what it followed (nothing: 0, a build
     * ahead of an empty log), holds everything another node wrote; so does one through
     * this node's own appends after the marker (a build after a write of its own failed:
     * before, such a build was refused and built again forever). */
    YW_CHECK(attr_cluster_follows(c, 0, r.seq[0]));
    YW_CHECK(attr_cluster_follows(c, 0, 0));
    YW_CHECK(attr_cluster_follows(c, 0, s1));
    YW_CHECK(attr_cluster_follows(c, 0, s3));
    YW_CHECK(!attr_cluster_follows(c, 5, 0)); /* no such partition */
    /* One that stopped short of partition 1's marker (a sequence before it, not what it
     * followed) does not. */
    records_t r1 = {0};
    uint64_t last1 = 0;
    YW_CHECK_INT(attr_cluster_read(c, 1, 0, collect, &r1, &last1, err, sizeof err), ==, 0);
    YW_CHECK_STR(r1.kind[0], "lease");
    YW_CHECK(r1.seq[0] > 1);
    YW_CHECK(!attr_cluster_follows(c, 1, r1.seq[0] - 1));
    YW_CHECK(attr_cluster_follows(c, 1, r1.seq[0]));
    YW_CHECK_STR(r.kind[1], "x");
    YW_CHECK_STR(r.data[1], "one");
    YW_CHECK_STR(r.kind[2], "y");
    YW_CHECK_STR(r.data[2], "two");
    YW_CHECK_INT(r.seq[1], ==, s1);
    YW_CHECK_INT(last, ==, s3);
    /* After a record: only what follows. */
    records_t tail = {0};
    YW_CHECK_INT(attr_cluster_read(c, 0, s1, collect, &tail, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(tail.n, ==, 1);
    YW_CHECK_STR(tail.data[0], "two");
    YW_CHECK_INT(last, ==, s3);
    /* After the last: nothing, and *last stays. */
    records_t none = {0};
    YW_CHECK_INT(attr_cluster_read(c, 0, s3, collect, &none, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(none.n, ==, 0);
    YW_CHECK_INT(last, ==, s3);

    one_node_stop(&o);
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
    YW_CHECK_INT(attr_cluster_read(c[0], mine, 0, collect, &r, &last, err, sizeof err), ==, 0);
    for (int i = 0; i < r.n; i++) {
        YW_CHECK(strcmp(r.data[i], "late") != 0 && strcmp(r.data[i], "later") != 0);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    stop_all(&loop, c, 2);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
    nats_stop(&n);
}

YW_TEST(a_read_across_purged_records_is_stale)
{
    one_node_t o;
    one_node_start(&o);
    attr_cluster_t *c = o.c;

    char err[256];
    uint64_t s1 = 0, s2 = 0, s3 = 0;
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "one", 3, &s1, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "two", 3, &s2, err, sizeof err), ==, 0);
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "three", 5, &s3, err, sizeof err), ==, 0);
    /* What a snapshot covering s2 purges: the log before s2. */
    natsConnection *nc = NULL;
    YW_CHECK(natsConnection_ConnectTo(&nc, o.nats.url) == NATS_OK);
    jsCtx *js = NULL;
    YW_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    jsOptions po;
    jsOptions_Init(&po);
    po.Stream.Purge.Subject = "yw.attr.p.0";
    po.Stream.Purge.Sequence = s2;
    YW_CHECK(js_PurgeStream(js, "yw-attr-log-0-1", &po, NULL) == NATS_OK);

    /* From the start: the record at s2 does not follow the start: stale. */
    records_t r = {0};
    uint64_t last = 0;
    YW_CHECK_INT(attr_cluster_read(c, 0, 0, collect, &r, &last, err, sizeof err), ==, -ESTALE);
    YW_CHECK(strstr(err, "removed") != NULL);
    YW_CHECK_INT(r.n, ==, 0);
    /* After s1 (purged, but s2 names it): the chain holds. */
    records_t r1 = {0};
    YW_CHECK_INT(attr_cluster_read(c, 0, s1, collect, &r1, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(r1.n, ==, 2);
    /* After s2, where the snapshot ends: the chain holds. */
    records_t tail = {0};
    YW_CHECK_INT(attr_cluster_read(c, 0, s2, collect, &tail, &last, err, sizeof err), ==, 0);
    YW_CHECK_INT(tail.n, ==, 1);
    YW_CHECK_STR(tail.data[0], "three");
    /* And appends go on after the purge (the fence's record is kept). */
    uint64_t s4 = 0;
    YW_CHECK_INT(attr_cluster_append(c, 0, "x", "four", 4, &s4, err, sizeof err), ==, 0);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    one_node_stop(&o);
}

/*
 * The loop busy for three lease TTLs (a failover opens dozens of engines on it, each
 * taking a while): it runs no callback meanwhile, so it never hears of the renewals, but
 * the cluster thread goes on renewing. Ownership follows the thread's renewals, not the
 * loop's last copy of them: before, every lease looked gone once the loop came back, its
 * engines were closed and built again, and a failover at 10 million exposures never
 * ended (each round of openings took longer than the lease).
 */
YW_TEST(a_busy_loop_keeps_the_leases_the_thread_renews)
{
    one_node_t o;
    one_node_start(&o);
    YW_CHECK(attr_cluster_owns(o.c, 0) && attr_cluster_owns(o.c, 1));
    usleep(3 * 1000 * 1000); /* the fixture's lease: 1 s */
    YW_CHECK(attr_cluster_owns(o.c, 0));
    YW_CHECK(attr_cluster_owns(o.c, 1));
    one_node_stop(&o);
}

/* A NATS with the one stream of the versions before (every partition's log in
 * yw-attr-events): the node refuses to join, naming it, and creates no log stream. */
YW_TEST(a_cluster_with_the_old_single_log_stream_is_refused)
{
    nats_t n;
    nats_start(&n);
    natsConnection *nc = NULL;
    YW_CHECK(natsConnection_ConnectTo(&nc, n.url) == NATS_OK);
    jsCtx *js = NULL;
    YW_CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = "yw-attr-events";
    const char *subjects[] = {"yw.attr.p.*"};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    YW_CHECK(js_AddStream(NULL, js, &cfg, NULL, NULL) == NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    uv_loop_t loop;
    YW_CHECK_INT(uv_loop_init(&loop), ==, 0);
    watch_t w;
    memset(&w, 0, sizeof w);
    attr_cluster_t *c = join(&loop, n.url, "node-a", &w);
    for (int i = 0; i < 500 && !w.st.fatal; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(20 * 1000);
    }
    YW_CHECK(w.st.fatal);
    YW_CHECK(!w.st.ready);
    YW_CHECK(strstr(w.st.error, "yw-attr-events") != NULL);
    YW_CHECK_INT(stream_msgs(n.url, "yw-attr-log-0-1"), ==, -1);
    stop_all(&loop, &c, 1);
    YW_CHECK_INT(uv_loop_close(&loop), ==, 0);
    nats_stop(&n);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(appends_follow_the_lease_marker_and_read_back_in_order),
        YW_TEST_ENTRY(appends_are_refused_without_the_lease_and_after_another_writer),
        YW_TEST_ENTRY(a_read_across_purged_records_is_stale),
        YW_TEST_ENTRY(a_busy_loop_keeps_the_leases_the_thread_renews),
        YW_TEST_ENTRY(a_cluster_with_the_old_single_log_stream_is_refused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
