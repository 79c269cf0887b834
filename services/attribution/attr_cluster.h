/*
 * attr_cluster.h — attribution as a cluster on NATS JetStream: membership and partition
 * leases. Standalone (no --cluster) never creates one.
 *
 * What lives in NATS (every bucket and stream with --replicas copies):
 *   KV yw-attr-meta     "partitions": the partition count, written once by the first node;
 *                       a node started with another count refuses to start
 *   KV yw-attr-nodes    "n.<node-id>": this node's gRPC address, renewed every tick; the
 *                       bucket's TTL (--lease-ttl-ms) drops a node that stopped renewing
 *   KV yw-attr-leases   "p.<partition>": the node that owns the partition; the same TTL
 *   stream yw-attr-log-<first>-<last>, subjects yw.attr.p.<partition>: the logs of 8
 *                       partitions in a row, a subject each (the streams are created
 *                       once the partition count is known): a node building a partition
 *                       reads through its stream's blocks only. One stream for all (the
 *                       versions before; a NATS that still has yw-attr-events is refused)
 *                       made each read go through every partition's blocks, NATS's CPU
 *                       growing with partitions x stored; a stream per partition made
 *                       each append a Raft round of its own (NATS's CPU per exposure
 *                       doubled). A node that takes a lease first appends a lease
 *                       marker expecting the subject's last sequence, so an append of
 *                       the previous owner (which expects the sequence it knew) is
 *                       refused from then on. Every record names the one before it
 *                       (header Yw-Prev).
 *   stream yw-attr-snaps, subjects yw.attr.snap.<p> and yw.attr.snaph.<p>: the
 *                       partitions' latest snapshots (see "Snapshots" below).
 *
 * Who owns what: every node computes the same assignment from the set of live nodes
 * (attr_cluster_assign(): rendezvous hashing, each node capped at its fair share) and
 * takes the leases of its own partitions; it releases a lease the assignment gives to
 * another live node, so a node that rejoins gets its share back.
 *
 * Builds ahead: every node answers requests on subject yw.attr.alive.<node-id>, and each
 * tick probes the other live nodes there. A node whose process is gone (NATS answers "no
 * responders" at once) or that let two probes in a row time out does not answer: the
 * partitions the assignment without such nodes would give this node are published as
 * "ahead" (attr_cluster_ahead()), for the node to build while their leases run out. The
 * leases themselves are still taken only once expired; attr_cluster_follows() tells
 * whether a build is still the whole log then.
 *
 * Threads: the NATS calls block, so they run on a thread of their own (libnats does its
 * socket I/O on its own threads too); the loop never waits on NATS. What the thread
 * learns reaches the loop through a uv_async, as attr_cluster_status_t copies; the
 * callback runs on the loop.
 */
#ifndef ATTR_CLUSTER_H
#define ATTR_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/** At most this many partitions (--partitions). */
#define ATTR_CLUSTER_MAX_PARTITIONS 1024
/** At most this many bytes in a node id (KV key characters only: A-Z a-z 0-9 - _ =). */
#define ATTR_CLUSTER_NODE_ID_MAX 64

typedef struct st_attr_cluster_t attr_cluster_t;

typedef struct st_attr_cluster_config_t {
    /** Comma-separated NATS URLs (nats://host:port, tls://host:port). */
    const char *urls;
    /** This node's stable, unique name. */
    const char *node_id;
    /** This node's gRPC address as the other nodes reach it. */
    const char *advertise;
    int partitions;
    int replicas;
    int64_t lease_ttl_ms;
    /** PEM file of the CAs that sign the NATS servers' certificates; NULL or "": none. */
    const char *tls_ca;
    /** A NATS credentials file (JWT and NKey seed); NULL or "": none. */
    const char *creds;
} attr_cluster_config_t;

typedef struct st_attr_cluster_status_t {
    /** Connected to NATS right now. */
    int connected;
    /** The buckets and the stream exist and the partition count agrees. */
    int ready;
    /** Set once when the cluster cannot be joined at all (the partition count differs):
     *  `error` says why, and the node should stop. */
    int fatal;
    /** Live nodes (this one included) as of the last tick. */
    int nodes;
    /** Partitions the assignment gives this node, and those it holds a lease of. */
    int assigned;
    int owned;
    /** Leases lost (renewal refused or late) since start. */
    uint64_t leases_lost;
    /** Live nodes (listed, their keys not expired yet) that did not answer this node's
     *  probe: their process is gone, or two probes in a row timed out. Their partitions
     *  are built ahead here (attr_cluster_ahead()). */
    int not_answering;
    /** The last problem, "" when none. */
    char error[256];
} attr_cluster_status_t;

/** Called on the loop whenever the status changed. */
typedef void (*attr_cluster_cb)(void *arg, const attr_cluster_status_t *status);

/**
 * Checks `cfg` (node id characters and length, ranges); returns 0 or -EINVAL with a
 * message naming the flag and the rule.
 */
int attr_cluster_config_check(const attr_cluster_config_t *cfg, char *err, size_t errlen);

/**
 * Starts the cluster thread: it connects (and keeps trying, with backoff, while NATS is
 * unreachable), creates or checks the buckets and the stream, then renews this node and
 * its leases every tick. Copies what it needs of `cfg`. Returns 0, or a negative errno
 * with `err` (the callback is then never called).
 */
int attr_cluster_start(uv_loop_t *loop, const attr_cluster_config_t *cfg, attr_cluster_cb cb,
                       void *arg, attr_cluster_t **out, char *err, size_t errlen);

/**
 * Stops the thread (releasing this node's leases and its node key if NATS is reachable,
 * so the others take over at once instead of after the TTL), joins it, and frees the
 * cluster once its handle is closed. Blocks for at most about a second and a half. On
 * the loop; the callback is not called any more.
 */
void attr_cluster_stop(attr_cluster_t *c);

/**
 * On the loop: non-zero when this node holds partition `p`'s lease and renewed it less
 * than a TTL minus a margin ago (a node paused past its lease stops owning at once,
 * before the thread hears anything).
 */
int attr_cluster_owns(const attr_cluster_t *c, int p);

/**
 * On the loop: non-zero when this node does not hold partition `p`'s lease but would
 * once the leases of the nodes that do not answer run out (the assignment without them
 * gives it `p`): worth building now, so that it serves `p` as soon as the lease is its
 * own instead of a build later.
 */
int attr_cluster_ahead(const attr_cluster_t *c, int p);

/**
 * On the loop: non-zero when a view of partition `p` built from its log through the
 * record at sequence `last` holds everything another node wrote: `last` is this node's
 * lease marker or a record after it (after the marker only this node appends, so a build
 * after one of its own writes failed reads those too), or the record the marker followed
 * (a build ahead, which read the log before the lease was this node's). Zero when the
 * build stopped short of that (another node appended after what it read, or the lease
 * was taken again since): the view must be built again.
 */
int attr_cluster_follows(const attr_cluster_t *c, int p, uint64_t last);

/**
 * Appends a record of kind `kind` (a short name, header Yw-Kind) to partition `p`'s log,
 * fenced: it expects the subject's last sequence to be the last one this node knows
 * (its lease marker or its previous append), so nothing lands after another node's
 * lease marker. Blocks (any thread but the loop); appends to one partition are
 * serialised. A timeout is retried with the same message id, so one call never appends
 * twice. Returns 0 with the record's stream sequence in *seq; -EPERM when the partition
 * is not this node's; -ESTALE when the fence refused it (another node took the
 * partition: this node's view of it is stale); -EAGAIN when NATS did not answer (the
 * record may or may not be in the log: the next append tells, by -ESTALE); `err` says
 * what happened.
 */
int attr_cluster_append(attr_cluster_t *c, int p, const char *kind, const void *data, size_t len,
                        uint64_t *seq, char *err, size_t errlen);

/** One record of a partition's log: 0 to go on, non-zero to stop the read. */
typedef int (*attr_cluster_read_fn)(void *arg, uint64_t seq, const char *kind, const void *data,
                                    size_t len);

/**
 * Reads partition `p`'s log after the record at stream sequence `after` (0: from the
 * start), in order, calling `fn` for every record (lease markers included, kind "lease"),
 * up to the last one there is. Each record must name the one before it (Yw-Prev; the
 * first, `after`): a gap means the records between were purged under a newer snapshot.
 * Blocks (any thread but the loop). Returns 0 with the last sequence read in *last
 * (`after` when none), what `fn` returned when it stopped the read, -ESTALE (a gap), or
 * -EAGAIN with `err`.
 */
int attr_cluster_read(attr_cluster_t *c, int p, uint64_t after, attr_cluster_read_fn fn, void *arg,
                      uint64_t *last, char *err, size_t errlen);

/*
 * Snapshots. A partition's snapshot is its view (attr_snapshot.h) as of a record of its
 * log, the one it "covers": chunks on subject yw.attr.snap.<p> of stream yw-attr-snaps,
 * then a head on yw.attr.snaph.<p> naming them, published expecting the last head's
 * sequence (of two nodes snapshotting at once, one head lands). Once a head is in, older
 * heads and chunks and the partition's log before the covered record are purged: a node
 * that builds the partition loads the latest snapshot and reads the log after it. A
 * reader from an older head finds its chunks gone, or its log chain broken (each record
 * names the one before it, header Yw-Prev): -ESTALE, and it starts again from the newest.
 */
typedef struct st_attr_cluster_snap_t {
    uint64_t covers;   /* the log record the snapshot includes, the last one */
    uint64_t first;    /* the stream sequence of its first chunk */
    uint32_t chunks;   /* how many chunks */
    uint64_t bytes;    /* their bytes, all together */
    uint32_t crc;      /* CRC-32C of those bytes */
    uint64_t nonce;    /* unique per snapshot made (the chunks' message ids) */
    uint64_t head_seq; /* the head's stream sequence (read, or set by commit) */
    int64_t time_ns;   /* when the head was stored (read only) */
} attr_cluster_snap_t;

/** One chunk of a snapshot, in order: 0 to go on, non-zero to stop the read. */
typedef int (*attr_cluster_chunk_fn)(void *arg, const void *data, size_t len);

/**
 * Partition `p`'s latest snapshot head. Blocks. Returns 0, -ENOENT when there is none,
 * -EAGAIN (NATS) or -EPROTO (a head without its fields), with `err`.
 */
int attr_cluster_snap_head(attr_cluster_t *c, int p, attr_cluster_snap_t *head, char *err,
                           size_t errlen);

/**
 * Reads the chunks `head` names, in order, into `fn`. Blocks. Returns 0, what `fn`
 * returned, -ESTALE when a chunk is gone (a newer snapshot replaced this one), or -EAGAIN.
 */
int attr_cluster_snap_read(attr_cluster_t *c, int p, const attr_cluster_snap_t *head,
                           attr_cluster_chunk_fn fn, void *arg, char *err, size_t errlen);

/**
 * Appends chunk `index` of the snapshot `head` describes (covers, nonce) and sets *seq
 * to its stream sequence. Blocks. Returns 0 or -EAGAIN with `err`.
 */
int attr_cluster_snap_chunk(attr_cluster_t *c, int p, const attr_cluster_snap_t *head,
                            uint32_t index, const void *data, size_t len, uint64_t *seq, char *err,
                            size_t errlen);

/**
 * Publishes `head` (every field but head_seq set) expecting the partition's last head to
 * be at `expect_head` (0: none), then purges what it makes unneeded. Blocks. Returns 0;
 * 1 when the head is in but a purge failed (the next snapshot's purges catch up); -ESTALE
 * when another head came first (this snapshot is dropped); -EAGAIN.
 */
int attr_cluster_snap_commit(attr_cluster_t *c, int p, attr_cluster_snap_t *head,
                             uint64_t expect_head, char *err, size_t errlen);

/**
 * On the loop: the gRPC address of the node partition `p` belongs to by the assignment
 * as last computed (*self non-zero when it is this node), or NULL when none is known
 * yet. That node may not hold the lease yet for a moment after a change: it then says
 * so (UNAVAILABLE) and the caller tries again.
 */
const char *attr_cluster_route(const attr_cluster_t *c, int p, int *self);

/** On the loop: the status as the loop last got it. */
const attr_cluster_status_t *attr_cluster_status(const attr_cluster_t *c);

/**
 * On the loop, once the status says `ready`: the 32-byte key every node of the cluster
 * signs page tokens with (made once by the first node, kept in the meta bucket).
 */
void attr_cluster_page_key(const attr_cluster_t *c, uint8_t out[32]);

/** The partition count (--partitions). */
int attr_cluster_partitions(const attr_cluster_t *c);

/** The partition of a viewer: yw_hash_bytes() of the id (fixed forever), mod `partitions`. */
int attr_cluster_partition(const char *viewer_id, size_t len, int partitions);

/**
 * The assignment every node computes (pure): for each partition in order, the live node
 * ranked highest by rendezvous hashing of (partition, node id) among those below their
 * fair share ceil(partitions / n_nodes). `nodes` must be sorted and distinct. Writes the
 * index into `nodes` of each partition's owner into owner[0..partitions).
 */
void attr_cluster_assign(const char *const *nodes, int n_nodes, int partitions, int *owner);

#ifdef __cplusplus
}
#endif
#endif
