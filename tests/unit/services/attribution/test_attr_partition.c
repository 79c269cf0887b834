/*
 * test_attr_partition.c — a partition's log into a directory and its snapshots
 * (services/attribution/attr_partition.c, attr_partition_snap.c) against a real
 * nats-server: the exposure log's bytes shipped are placed where they were; a snapshot
 * is made from the log, the log before it is purged, and a build loads the snapshot and
 * reads only the log after it; a newer snapshot replaces an older one, whose reader is
 * told (-ESTALE).
 */
#include "services/attribution/attr_partition.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "services/attribution/attr_xlog.h"
#include "tests/unit/services/attribution/nats_fixture.h"
#include "tests/unit/test.h"

/* Bytes of a new segment's header (attr_xlog_int.h): where shipped bytes start. */
#define SEG_HDR 32
#define BIG (600u << 10)

/* The size of segment `seq` under dir/exposures, and its byte at `at` (-1: none). */
static long long seg_size(const char *dir, uint64_t seq, long long at, int *byte)
{
    char xdir[512], path[600];
    snprintf(xdir, sizeof xdir, "%s/exposures", dir);
    attr_xlog_path(xdir, seq, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return -1;
    }
    *byte = -1;
    if (at >= 0) {
        int fd = open(path, O_RDONLY);
        unsigned char b = 0;
        if (fd >= 0 && pread(fd, &b, 1, at) == 1) {
            *byte = b;
        }
        close(fd);
    }
    return (long long)sb.st_size;
}

static void ship(attr_partition_ship_t *ps, uint64_t seg, uint64_t off, char fill, size_t len)
{
    char *b = malloc(len);
    memset(b, fill, len);
    YW_CHECK_INT(attr_partition_ship_xlog(ps, seg, 1000, off, b, len), ==, 0);
    free(b);
}

static int count_chunk(void *arg, const void *data, size_t len)
{
    (void)data;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static int count_record(void *arg, uint64_t seq, const char *kind, const void *data, size_t len)
{
    (void)arg;
    (void)seq;
    (void)kind;
    (void)data;
    (void)len;
    return 0;
}

YW_TEST(a_partition_is_built_from_its_snapshot_and_the_log_after_it)
{
    one_node_t o;
    one_node_start(&o);
    attr_cluster_t *c = o.c;
    char root[256], d1[300], d2[300], d3[300], scratch[300], err[256];
    snprintf(root, sizeof root, "%s/part-XXXXXX",
             getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp");
    YW_CHECK(mkdtemp(root) != NULL);
    snprintf(d1, sizeof d1, "%s/one", root);
    snprintf(d2, sizeof d2, "%s/two", root);
    snprintf(d3, sizeof d3, "%s/three", root);
    snprintf(scratch, sizeof scratch, "%s/scratch", root);

    /* 600 KiB of segment 1: two records (512 KiB a record at most). */
    attr_partition_ship_t ps = {.cluster = c, .partition = 0};
    ship(&ps, 1, SEG_HDR, 'a', BIG);
    YW_CHECK_INT(ps.appends, ==, 2);
    attr_partition_built_t b;
    YW_CHECK_INT(attr_partition_materialize(c, 0, d1, &b, err, sizeof err), ==, 0);
    YW_CHECK_INT(b.covers, ==, 0);  /* no snapshot yet: the log from its start */
    YW_CHECK_INT(b.records, ==, 3); /* the lease marker and the two */
    int byte = 0;
    YW_CHECK_INT(seg_size(d1, 1, SEG_HDR + BIG - 1, &byte), ==, SEG_HDR + BIG);
    YW_CHECK_INT(byte, ==, 'a');

    /* A snapshot: of everything so far, in two chunks (the segment is over one). */
    attr_partition_snap_t s1;
    YW_CHECK_INT(attr_partition_snapshot(c, 0, scratch, &s1, err, sizeof err), ==, 0);
    YW_CHECK(!s1.skipped && !s1.purge_failed);
    YW_CHECK_INT(s1.covers, ==, b.last);
    YW_CHECK_INT(s1.chunks, ==, 2);
    YW_CHECK(s1.bytes > BIG);
    struct stat sb;
    YW_CHECK(stat(scratch, &sb) != 0); /* the scratch directory is gone */
    /* Nothing new since: none made. */
    attr_partition_snap_t again;
    YW_CHECK_INT(attr_partition_snapshot(c, 0, scratch, &again, err, sizeof err), ==, 0);
    YW_CHECK(again.skipped);
    /* The log before it is purged: a read from the start finds the chain broken. */
    uint64_t last = 0;
    YW_CHECK_INT(attr_cluster_read(c, 0, 0, count_record, NULL, &last, err, sizeof err), ==,
                 -ESTALE);

    /* More after it: the end of segment 1 and a new segment 2. */
    ship(&ps, 1, SEG_HDR + BIG, 'b', 100);
    ship(&ps, 2, SEG_HDR, 'c', 50);
    YW_CHECK_INT(attr_partition_materialize(c, 0, d2, &b, err, sizeof err), ==, 0);
    YW_CHECK_INT(b.covers, ==, s1.covers);
    YW_CHECK_INT(b.records, ==, 2); /* only what follows the snapshot */
    YW_CHECK_INT(seg_size(d2, 1, SEG_HDR + BIG + 99, &byte), ==, SEG_HDR + BIG + 100);
    YW_CHECK_INT(byte, ==, 'b');
    YW_CHECK_INT(seg_size(d2, 1, SEG_HDR + BIG - 1, &byte), ==, SEG_HDR + BIG + 100);
    YW_CHECK_INT(byte, ==, 'a');
    YW_CHECK_INT(seg_size(d2, 2, SEG_HDR, &byte), ==, SEG_HDR + 50);
    YW_CHECK_INT(byte, ==, 'c');
    char db[320];
    snprintf(db, sizeof db, "%s/attribution.db", d2);
    YW_CHECK(stat(db, &sb) == 0 && sb.st_size > 0);

    /* A newer snapshot replaces the first: a reader of the old head is told. */
    attr_cluster_snap_t old;
    YW_CHECK_INT(attr_cluster_snap_head(c, 0, &old, err, sizeof err), ==, 0);
    YW_CHECK_INT(old.covers, ==, s1.covers);
    attr_partition_snap_t s2;
    YW_CHECK_INT(attr_partition_snapshot(c, 0, scratch, &s2, err, sizeof err), ==, 0);
    YW_CHECK(!s2.skipped && s2.covers > s1.covers);
    YW_CHECK_INT(s2.log_records, ==, 2);
    int chunks = 0;
    YW_CHECK_INT(attr_cluster_snap_read(c, 0, &old, count_chunk, &chunks, err, sizeof err), ==,
                 -ESTALE);
    YW_CHECK(strstr(err, "gone") != NULL);
    attr_cluster_snap_t head;
    YW_CHECK_INT(attr_cluster_snap_head(c, 0, &head, err, sizeof err), ==, 0);
    chunks = 0;
    YW_CHECK_INT(attr_cluster_snap_read(c, 0, &head, count_chunk, &chunks, err, sizeof err), ==, 0);
    YW_CHECK_INT(chunks, ==, (int)s2.chunks);

    /* Built again: all from the snapshot, no log after it; the same files. */
    YW_CHECK_INT(attr_partition_materialize(c, 0, d3, &b, err, sizeof err), ==, 0);
    YW_CHECK_INT(b.covers, ==, s2.covers);
    YW_CHECK_INT(b.records, ==, 0);
    YW_CHECK_INT(b.last, ==, s2.covers);
    YW_CHECK_INT(seg_size(d3, 1, SEG_HDR + BIG + 99, &byte), ==, SEG_HDR + BIG + 100);
    YW_CHECK_INT(byte, ==, 'b');
    YW_CHECK_INT(seg_size(d3, 2, SEG_HDR + 49, &byte), ==, SEG_HDR + 50);
    YW_CHECK_INT(byte, ==, 'c');
    /* The other partition has no snapshot: its build reads its log. */
    snprintf(d1, sizeof d1, "%s/other", root);
    YW_CHECK_INT(attr_partition_materialize(c, 1, d1, &b, err, sizeof err), ==, 0);
    YW_CHECK_INT(b.covers, ==, 0);
    YW_CHECK_INT(b.records, ==, 1);

    attr_partition_ship_free(&ps);
    YW_CHECK_INT(attr_partition_remove_dir(root), ==, 0);
    one_node_stop(&o);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(a_partition_is_built_from_its_snapshot_and_the_log_after_it),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
