/*
 * test_attr_cluster.c — unit tests of the pure parts of services/attribution/attr_cluster.c:
 * the partition of a viewer (fixed forever: it decides where events are stored) and the
 * assignment every node computes from the live nodes (each partition once, every node
 * within its fair share, the same on every node), and the checks of the cluster flags.
 */
#include "services/attribution/attr_cluster.h"

#include <errno.h>
#include <string.h>

#include "common/hash.h"
#include "tests/unit/test.h"

YW_TEST(a_viewer_partition_never_changes)
{
    /* Pinned: a change would send a viewer's new events to another partition than the
     * ones already stored. */
    int p1 = attr_cluster_partition("viewer-1", 8, 64);
    int p2 = attr_cluster_partition("viewer-2", 8, 64);
    YW_CHECK_INT(p1, >=, 0);
    YW_CHECK_INT(p1, <, 64);
    YW_CHECK_INT(p1, ==, attr_cluster_partition("viewer-1", 8, 64));
    YW_CHECK_INT(p1, ==, (int)(yw_hash_bytes("viewer-1", 8) % 64));
    YW_CHECK_INT(p1, ==, 21);
    YW_CHECK_INT(p2, ==, 39);
    YW_CHECK_INT(p2, ==, (int)(yw_hash_bytes("viewer-2", 8) % 64));
}

YW_TEST(viewers_spread_over_the_partitions)
{
    int count[16] = {0};
    char id[32];
    for (int i = 0; i < 16000; i++) {
        int n = snprintf(id, sizeof id, "v%d", i);
        count[attr_cluster_partition(id, (size_t)n, 16)]++;
    }
    for (int p = 0; p < 16; p++) {
        YW_CHECK_INT(count[p], >, 800);
        YW_CHECK_INT(count[p], <, 1200);
    }
}

/* Every partition has an owner among the n nodes, each within ceil(P/n). */
static void check_balanced(const char *const *nodes, int n, int partitions)
{
    int owner[ATTR_CLUSTER_MAX_PARTITIONS];
    int load[8] = {0};
    attr_cluster_assign(nodes, n, partitions, owner);
    for (int p = 0; p < partitions; p++) {
        YW_CHECK_INT(owner[p], >=, 0);
        YW_CHECK_INT(owner[p], <, n);
        load[owner[p]]++;
    }
    int cap = (partitions + n - 1) / n;
    for (int i = 0; i < n; i++) {
        YW_CHECK_INT(load[i], <=, cap);
        YW_CHECK_INT(load[i], >=, partitions / n - (n - 1));
    }
}

YW_TEST(every_partition_is_owned_once_within_fair_shares)
{
    const char *nodes[] = {"attr-1", "attr-2", "attr-3", "attr-4", "attr-5"};
    for (int n = 1; n <= 5; n++) {
        check_balanced(nodes, n, 64);
        check_balanced(nodes, n, 16);
        check_balanced(nodes, n, 7);
    }
}

YW_TEST(every_node_computes_the_same_assignment)
{
    const char *nodes[] = {"a", "b", "c"};
    int one[64], two[64];
    attr_cluster_assign(nodes, 3, 64, one);
    attr_cluster_assign(nodes, 3, 64, two);
    YW_CHECK(memcmp(one, two, sizeof one) == 0);
}

YW_TEST(a_node_leaving_moves_few_partitions_of_the_others)
{
    /* Rendezvous hashing: most partitions of the nodes that stay stay with them. */
    const char *three[] = {"attr-a", "attr-b", "attr-c"};
    const char *two[] = {"attr-a", "attr-b"};
    int before[64], after[64];
    attr_cluster_assign(three, 3, 64, before);
    attr_cluster_assign(two, 2, 64, after);
    int kept = 0, stayed = 0;
    for (int p = 0; p < 64; p++) {
        if (before[p] != 2) {
            stayed++;
            kept += after[p] == before[p];
        }
    }
    YW_CHECK_INT(kept * 10, >=, stayed * 8);
}

YW_TEST(no_live_node_means_no_owner)
{
    int owner[4];
    attr_cluster_assign(NULL, 0, 4, owner);
    for (int p = 0; p < 4; p++) {
        YW_CHECK_INT(owner[p], ==, -1);
    }
}

static attr_cluster_config_t good(void)
{
    return (attr_cluster_config_t){.urls = "nats://127.0.0.1:4222",
                                   .node_id = "attr-1",
                                   .advertise = "10.0.0.1:50053",
                                   .partitions = 64,
                                   .replicas = 3,
                                   .lease_ttl_ms = 5000};
}

static void check_refused(attr_cluster_config_t cfg, const char *flag)
{
    char err[256] = "";
    YW_CHECK_INT(attr_cluster_config_check(&cfg, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, flag) != NULL);
}

YW_TEST(cluster_flags_are_checked_naming_the_flag)
{
    char err[256];
    attr_cluster_config_t cfg = good();
    YW_CHECK_INT(attr_cluster_config_check(&cfg, err, sizeof err), ==, 0);
    cfg.node_id = "bad id";
    check_refused(cfg, "--node-id");
    cfg = good();
    cfg.node_id = "";
    check_refused(cfg, "--node-id");
    cfg = good();
    cfg.partitions = 0;
    check_refused(cfg, "--partitions");
    cfg = good();
    cfg.replicas = 6;
    check_refused(cfg, "--replicas");
    cfg = good();
    cfg.lease_ttl_ms = 999;
    check_refused(cfg, "--lease-ttl-ms");
    cfg = good();
    cfg.urls = "";
    check_refused(cfg, "--cluster");
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_viewer_partition_never_changes),
        YW_TEST_ENTRY(viewers_spread_over_the_partitions),
        YW_TEST_ENTRY(every_partition_is_owned_once_within_fair_shares),
        YW_TEST_ENTRY(every_node_computes_the_same_assignment),
        YW_TEST_ENTRY(a_node_leaving_moves_few_partitions_of_the_others),
        YW_TEST_ENTRY(no_live_node_means_no_owner),
        YW_TEST_ENTRY(cluster_flags_are_checked_naming_the_flag),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
