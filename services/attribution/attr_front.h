/*
 * attr_front.h — a cluster node's front: the calls a client sends to any node, split by
 * partition and forwarded to the node that owns each partition, the answers merged.
 *
 * Forwarding: a part of a call goes to the partition's node (attr_cluster_route()) as the
 * same public method with the metadata `yw-partition: <p>`; the node that owns the
 * partition answers it from that partition's engine. A node that does not hold the
 * partition (a lease changing hands) answers UNAVAILABLE; the front tries again, every
 * ATTR_FRONT_RETRY_MS, until the call's deadline (at most ATTR_FRONT_TRIES times).
 * A part for a partition the assignment gives this node goes to this node's own server
 * in process (client.h, yw_channel_create_local()): the same handler and the same
 * answers, without a connection to itself.
 *
 * Ingestion (RecordExposures, RecordConversions): events go by the partition of their
 * viewer_id; the summary adds the parts' counts, and its errors are the parts' errors
 * with their indexes mapped back to the caller's, the lowest ATTR_ERRORS_MAX ascending.
 * A part that fails makes the call fail (UNAVAILABLE, naming the partitions) after every
 * part has answered: what other parts accepted is durable, and the caller's retry of
 * the whole batch finds it as duplicates (event and order ids make it idempotent).
 *
 * Client streams (IngestExposures, IngestConversions): each event goes into a part of its
 * viewer's partition; a part of ATTR_FRONT_PART_EVENTS events (or ATTR_FRONT_PART_BYTES)
 * is forwarded as a RecordExposures / RecordConversions call, the rest at the stream's
 * end, at most one part of a partition at a time (the partition sees the stream's order);
 * one summary once every part has answered, its error indexes positions in the stream.
 * Reading pauses while the parts not yet answered hold more than ATTR_FRONT_PENDING_BYTES.
 * A part that fails ends the stream: nothing more is read or forwarded, and the call fails
 * as a batch does once the parts out have answered.
 *
 * Refunds and explanations (RecordRefunds, ExplainConversion) carry an order id and no
 * viewer: every partition is asked which of the call's orders it holds and which of its
 * refund ids it knows (PartitionService.FindOrders), then each refund goes to the
 * partition that knows its refund id or holds its order (attr_order_route.h) and the
 * summaries are merged as ingestion's; an explanation goes to its order's holder. What
 * no partition holds goes to its order id's own partition, whose engine rejects it
 * (no conversion has that order_id; NOT_FOUND) with standalone's words. A partition that
 * cannot be asked fails the call UNAVAILABLE, naming it, before anything is sent.
 */
#ifndef ATTR_FRONT_H
#define ATTR_FRONT_H

#include "common/client.h"
#include "common/metrics.h"
#include "common/runtime.h"
#include "common/server.h"
#include "services/attribution/attr_cluster.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Tries of one forwarded part, and the pause between two. */
#define ATTR_FRONT_TRIES 40
#define ATTR_FRONT_RETRY_MS 250

/** The metadata key naming the partition a forwarded call is for. */
#define ATTR_FRONT_PARTITION_MD "yw-partition"

typedef struct st_attr_front_t attr_front_t;

/**
 * A front over `cluster`'s routes; channels to the other nodes are opened as needed, the
 * parts for this node go to `srv` (this node's server, started) in process. Reports'
 * creators are labelled by tier scoring at `tier_addr`, labels kept `tier_ttl_ns`.
 * `metrics` (NULL: none) gets yaowei_attribution_cluster_part_retries_total: forwarded
 * parts tried again after an UNAVAILABLE (a part whose node died after storing it comes
 * back with its events as duplicates).
 */
int attr_front_create(yw_runtime_t *rt, yw_server_t *srv, attr_cluster_t *cluster,
                      const char *tier_addr, int64_t tier_ttl_ns, yw_metrics_t *metrics,
                      attr_front_t **out);

/** Closes the channels (calls in flight complete CANCELLED first). */
void attr_front_destroy(attr_front_t *f);

/**
 * The partition a call names in its `yw-partition` metadata: 0..P-1; -1 when it names
 * none (a client's call: the front handles it); -2 when the value is not a partition
 * (the call has then been failed INVALID_ARGUMENT).
 */
int attr_front_call_partition(const attr_front_t *f, yw_call_t *call);

void attr_front_record_exposures(attr_front_t *f, yw_call_t *call,
                                 const Yaowei__Attribution__V1__RecordExposuresRequest *req);
void attr_front_record_conversions(attr_front_t *f, yw_call_t *call,
                                   const Yaowei__Attribution__V1__RecordConversionsRequest *req);
void attr_front_record_refunds(attr_front_t *f, yw_call_t *call,
                               const Yaowei__Attribution__V1__RecordRefundsRequest *req);
void attr_front_explain(attr_front_t *f, yw_call_t *call,
                        const Yaowei__Attribution__V1__ExplainConversionRequest *req);

/*
 * Reports: the default model from partition 0's settings, then every partition's sums
 * (PartitionService.GetCreatorSums) added up exactly and rendered by the code standalone
 * renders with (attr_report.h). A partition that cannot answer, or partitions whose
 * settings versions differ, fail the call UNAVAILABLE: never a report of part of the
 * data. Page tokens are signed with the cluster's key: good on any node.
 */
void attr_front_creator_report(attr_front_t *f, yw_call_t *call,
                               const Yaowei__Attribution__V1__GetCreatorReportRequest *req);
void attr_front_tier_report(attr_front_t *f, yw_call_t *call,
                            const Yaowei__Attribution__V1__GetTierReportRequest *req);
void attr_front_top_creators(attr_front_t *f, yw_call_t *call,
                             const Yaowei__Attribution__V1__ListTopCreatorsRequest *req);

/** GetAttributionSettings: partition 0's (every partition has the same version's). */
void attr_front_get_settings(attr_front_t *f, yw_call_t *call);

/**
 * UpdateAttributionSettings: partition 0 takes the caller's update (its rules and
 * errors, as standalone's), then every other partition the settings it answered, under
 * the same version (attr_front_settings.c).
 */
void attr_front_update_settings(
    attr_front_t *f, yw_call_t *call,
    const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req);

/** A stream's part is sealed and forwarded at this many events, or this many bytes packed. */
#define ATTR_FRONT_PART_EVENTS 1000
#define ATTR_FRONT_PART_BYTES (1 << 20)
/** Bytes of a stream's parts not yet sealed, all partitions together (the largest goes). */
#define ATTR_FRONT_OPEN_BYTES (4 << 20)
/** A stream reads on only while its sealed parts not yet answered hold at most this. */
#define ATTR_FRONT_PENDING_BYTES (8 << 20)

/**
 * A client's IngestExposures or IngestConversions stream: the method's on_message, on_end
 * and on_done (the stream hangs on the call's data from its first message until it is
 * finished).
 */
void attr_front_stream_message(attr_front_t *f, yw_call_t *call, const ProtobufCMessage *msg);
void attr_front_stream_end(attr_front_t *f, yw_call_t *call);
void attr_front_stream_done(yw_call_t *call);

#ifdef __cplusplus
}
#endif
#endif
