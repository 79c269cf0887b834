/*
 * attr_cluster_int.h — private to attr_cluster.c and attr_cluster_log.c: the cluster's
 * structure, shared by the cluster thread (membership, leases) and the threads that
 * append to and read the partitions' logs.
 */
#ifndef ATTR_CLUSTER_INT_H
#define ATTR_CLUSTER_INT_H

#include <nats/nats.h>

#include "services/attribution/attr_cluster.h"

/* The partitions' logs: a stream per ATTR__PARTS_PER_STREAM partitions in a row, named
 * by the first and last of them, a subject each. A read of a partition goes through its
 * stream's blocks only (its few neighbours' records), and a call's appends still share
 * a few streams (each stream is a Raft group: a stream per partition doubled NATS's CPU
 * per exposure). */
#define ATTR__LOG_STREAM_FMT "yw-attr-log-%d-%d"
#define ATTR__PARTS_PER_STREAM 8
/* The one stream all partitions' logs shared before (refused: see attr__join()). */
#define ATTR__OLD_STREAM "yw-attr-events"
#define ATTR__SUBJECT_FMT "yw.attr.p.%d"
#define ATTR__SNAP_STREAM "yw-attr-snaps"
#define ATTR__SNAP_CHUNK_FMT "yw.attr.snap.%d"
#define ATTR__SNAP_HEAD_FMT "yw.attr.snaph.%d"
#define ATTR__BUCKET_META "yw-attr-meta"
#define ATTR__BUCKET_NODES "yw-attr-nodes"
#define ATTR__BUCKET_LEASES "yw-attr-leases"
/* How long one NATS request may take before the thread gives up on it (ms). */
#define ATTR__REQUEST_MS 2000
/* Reconnecting after a failed first connect: from this, doubling, up to the cap (ms). */
#define ATTR__BACKOFF_MIN_MS 250
#define ATTR__BACKOFF_MAX_MS 5000
#define ATTR__NS_PER_MS 1000000ull
/* A tick (renewals, the assignment recomputed) every quarter TTL, and at least this
 * often (ms): with a long TTL a node that joins still gets its share within seconds. */
#define ATTR__TICK_MAX_MS 2000
/* Live nodes a cluster may have (a node id and its address each). */
#define ATTR__MAX_NODES 64
/* Every node answers requests on this subject (its node id), so that the others learn at
 * once that its process is gone (NATS answers "no responders" as soon as its connection
 * is), without waiting out its leases: they build its partitions ahead meanwhile. */
#define ATTR__ALIVE_FMT "yw.attr.alive.%s"
/* A probe's wait for the answer; a node that lets two probes in a row time out (paused,
 * its host gone while NATS keeps its connection) is taken for gone too. */
#define ATTR__PROBE_MS 250
#define ATTR__PROBE_MISSES 2

typedef struct st_attr__node_t {
    char id[ATTR_CLUSTER_NODE_ID_MAX + 1];
    char addr[256];
} attr__node_t;

/* Where each partition goes: the nodes and, per partition, the index of its node. */
typedef struct st_attr__routes_t {
    attr__node_t nodes[ATTR__MAX_NODES];
    int n_nodes;
    int self;       /* this node's index, -1 when not listed */
    int16_t *route; /* per partition, -1: none */
} attr__routes_t;

struct st_attr_cluster_t {
    uv_loop_t *loop;
    uv_async_t async;
    uv_thread_t thread;
    int thread_started;
    attr_cluster_cb cb;
    void *arg;

    /* The configuration (copies, read by the thread only after start). */
    char *urls;
    char node_id[ATTR_CLUSTER_NODE_ID_MAX + 1];
    char *advertise;
    char *tls_ca;
    char *creds;
    int partitions;
    int replicas;
    int64_t ttl_ms;

    /* Shared between the thread and the loop, under `mu`. */
    uv_mutex_t mu;
    uv_cond_t cond;
    int stop;
    int nats_connected; /* libnats's connection callbacks write it */
    /* The cluster's page-token key (meta bucket "page-key"), set before `ready` is. */
    uint8_t page_key[32];
    int nats_closed;           /* its closed callback ran: no callback comes after it */
    attr_cluster_status_t pub; /* the thread's last status */
    uint8_t *pub_owned;        /* partitions (the thread's view) */
    /* uv_hrtime() until which the leases are good: written by the thread after each
     * renewal round, read by the loop (attr_cluster_owns()) directly, both atomically. */
    uint64_t pub_valid_until_ns;

    attr__routes_t pub_routes;

    /* The loop's copy. */
    attr__routes_t routes;
    attr_cluster_status_t st;
    uint8_t *owned;

    /* The partitions' logs (attr_cluster_log.c): per partition, under log_mu[p], the last
     * sequence of its subject this node knows (its lease marker or its last append); 0
     * while the partition is not this node's. The cluster thread sets it when it takes
     * the lease and clears it when the lease goes. */
    uv_mutex_t *log_mu;
    uint64_t *log_last;
    /* Per partition, what its lease marker followed and the marker itself, as this node
     * last took the lease (0, 0: never). The thread writes them when it fences, before
     * it publishes the lease; the loop reads them (attr_cluster_follows()). Atomic. */
    uint64_t *fence_prev, *fence_marker;
    uint64_t log_appends; /* a counter for the appends' message ids (atomic: any writer) */

    /* The thread's own. */
    natsConnection *nc;
    jsCtx *js;
    kvStore *meta;
    kvStore *nodes;
    kvStore *leases;
    uint8_t *t_owned;
    uint64_t *t_rev;
    int *assign;
    /* Built ahead: the partitions the assignment would give this node without the nodes
     * that do not answer (attr__probe()), and that assignment. */
    uint8_t *t_ahead;
    int *assign_ahead;
    /* This node's answer to the others' probes (subject ATTR__ALIVE_FMT). */
    natsSubscription *alive_sub;
    /* Probes in a row that timed out, per node (by id). */
    struct {
        char id[ATTR_CLUSTER_NODE_ID_MAX + 1];
        int misses;
    } t_probe[ATTR__MAX_NODES];
    attr_cluster_status_t t_st;
    attr__routes_t t_routes;
};

/** The js context once joined and while connected, else NULL (it lives until the
 *  cluster thread ends, at stop). Any thread. */
jsCtx *attr__js(attr_cluster_t *c);

/** The sequence of the last record of partition `p`'s log: 0 when it has none, -1 when
 *  NATS failed (attr__err_text() says why). Blocks. */
int64_t attr__last_seq(const attr_cluster_t *c, jsCtx *js, int p);

/** Partition `p`'s log: its stream's name and its subject (each 48 bytes). */
void attr__log_names(const attr_cluster_t *c, int p, char stream[48], char subject[48]);

/** The first partition of the stream after the one of partition `p`'s log. */
int attr__log_stream_end(const attr_cluster_t *c, int p);

/** libnats's last error text on this thread, else the status's. */
const char *attr__err_text(natsStatus s);

/**
 * Publishes `len` bytes at `data` on `subject` with the headers `hdrs` (name, value, ...,
 * NULL), waiting for JetStream's acknowledgement: NATS_OK with the record's sequence in
 * *seq (may be NULL), else the failure, with JetStream's error code in *jerr (0: none;
 * JSStreamWrongLastSequenceErr: a Nats-Expected-Last-Subject-Sequence header did not
 * hold). Blocks.
 */
natsStatus attr__js_publish(jsCtx *js, const char *subject, const void *data, size_t len,
                            const char *const *hdrs, uint64_t *seq, jsErrCode *jerr);

/** Cluster thread: partition `p`'s log now starts after `seq` for this node (0: not ours). */
void attr__log_own(attr_cluster_t *c, int p, uint64_t seq);

#endif
