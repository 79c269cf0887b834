/*
 * nats_fixture.h — the cluster tests' NATS: Debian's nats-server started on a free
 * loopback port with JetStream in a temp dir, and cluster nodes joined to it on a loop.
 */
#ifndef NATS_FIXTURE_H
#define NATS_FIXTURE_H

#include <sys/types.h>

#include <uv.h>

#include "services/attribution/attr_cluster.h"

typedef struct {
    pid_t pid;
    int port;
    char dir[256];
    char url[64];
} nats_t;

/** Starts a nats-server (JetStream on); returns once it accepts a client. */
void nats_start(nats_t *n);

/** Stops it and removes its directory. */
void nats_stop(nats_t *n);

typedef struct {
    attr_cluster_status_t st;
} watch_t;

/** Runs the loop until every node's status says it holds `owned[i]` partitions. */
void wait_owned(uv_loop_t *loop, watch_t *w, const int *owned, int n);

/** A node `id` of a 2-partition, 1-replica cluster with a 1 s lease, watched by `w`. */
attr_cluster_t *join(uv_loop_t *loop, const char *url, const char *id, watch_t *w);

/** Stops the nodes and runs the loop until their handles are closed. */
void stop_all(uv_loop_t *loop, attr_cluster_t **c, int n);

/** A nats-server and one node, node-a, holding both partitions of its cluster. */
typedef struct {
    nats_t nats;
    uv_loop_t loop;
    watch_t w;
    attr_cluster_t *c;
} one_node_t;

/** Starts it: returns once node-a holds both partitions. */
void one_node_start(one_node_t *o);

/** Stops the node, its loop and the server. */
void one_node_stop(one_node_t *o);

#endif
