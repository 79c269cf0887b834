/*
 * attr_front_int.h — private to the front's files (attr_front*.c): the front's channels
 * and the one way a call goes to a partition, attr__fwd_start(): forwarded with the
 * `yw-partition` metadata to the node the routes name, tried again while that node says
 * UNAVAILABLE (a lease changing hands) until the inbound call's deadline.
 *
 *   attr_front.c          the channels, the partition of a call, forwarding; ingestion
 *                         (RecordExposures, RecordConversions) split by viewer; the
 *                         parts' summaries merged
 *   attr_front_report.c   GetCreatorReport, GetTierReport, ListTopCreators: every
 *                         partition's sums added up, rendered as standalone renders
 *   attr_front_settings.c UpdateAttributionSettings: one version on every partition
 *   attr_front_stream.c   the client streams (IngestExposures, IngestConversions): events
 *                         into parts by partition (attr_split.h), forwarded as Record
 *                         calls, flow control
 *   attr_front_orders.c   RecordRefunds and ExplainConversion: every partition asked
 *                         which orders it holds (FindOrders), then split by holder
 */
#ifndef ATTR_FRONT_INT_H
#define ATTR_FRONT_INT_H

#include "common/page_token.h"
#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_front.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_tier.h"

/* Nodes a front keeps a channel to. */
#define ATTR__MAX_CHANNELS 64

typedef struct st_attr__chan_t {
    char addr[256];
    yw_channel_t *ch;
} attr__chan_t;

struct st_attr_front_t {
    yw_runtime_t *rt;
    attr_cluster_t *cluster;
    attr__chan_t chans[ATTR__MAX_CHANNELS];
    int n_chans;
    yw_channel_t *local; /* this node's own server, in process */
    /* Reports (attr_front_report.c): the creators' names and tier labels of the reports
     * this node renders, and the channel to tier scoring that labels them. */
    attr_state_t *names;
    attr_tier_t *tier;
    yw_page_key_t page_key; /* the cluster's (attr_cluster_page_key()): reports point to it */
    yw_metric_t *m_retries; /* forwarded parts tried again (NULL: no metrics) */
    int exposure_calls;     /* RecordExposures calls split here and not answered yet */
    uint64_t overlap_ms;    /* when two or more of them were last in flight (uv_now(); 0: never) */
    yw_metric_t *m_linger;  /* parts sent with ATTR_LINGER_MD */
};

typedef struct st_attr__fwd_t attr__fwd_t;

/**
 * The end of a forwarded call: OK with its response (the callee frees it with
 * protobuf_c_message_free_unpacked()), or the last failure once the tries are over.
 */
typedef void (*attr__fwd_cb)(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                             ProtobufCMessage *resp);

/**
 * One call forwarded to a partition. The caller owns it (and `req`) until `cb` has run.
 * `call` is the inbound call (its deadline, its request id, the parent of what goes out);
 * an owner whose call is freed before `cb` ran (on_done) sets it NULL: the forwarding then
 * tries no more (CANCELLED at its next try) and never touches the call again.
 */
struct st_attr__fwd_t {
    attr_front_t *f;
    yw_call_t *call;
    int p;
    const char *method;
    const ProtobufCMessage *req;
    const ProtobufCMessageDescriptor *resp_desc;
    attr__fwd_cb cb;
    void *arg;
    /* More metadata sent along (after yw-partition); the strings are the caller's. */
    yw_client_md_t md[YW_CLIENT_MAX_MD - 1];
    size_t n_md;
    /* private */
    int tries;
    uv_timer_t retry;
};

/** Sends fw->req to partition fw->p; fw->cb runs once, on the loop (maybe before return). */
void attr__fwd_start(attr__fwd_t *fw);

/**
 * Forwards `call` whole (its request `req`, alive until the call ends) to partition `p`
 * and answers it with what that partition's engine answers: its response, or its
 * failure as it is (standalone's words); UNAVAILABLE naming the partition once
 * forwarding's tries are over.
 */
void attr__relay(attr_front_t *f, yw_call_t *call, int p, const char *method,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc);

/** The events a split call carries. */
typedef enum { ATTR__EXPOSURES, ATTR__CONVERSIONS, ATTR__REFUNDS } attr__events_t;

/**
 * A Record call of more than ATTR_BATCH_MAX events is refused whole: relayed to
 * partition 0 (attr__relay()), whose engine refuses it as standalone does. Returns 1
 * when it was, else 0.
 */
int attr__relay_oversized(attr_front_t *f, yw_call_t *call, attr__events_t kind,
                          const ProtobufCMessage *req, size_t n);

/**
 * Forwards events[i] (of `kind`; the inbound request's, alive until the call ends) to
 * partition part_of[i] (read during the call only), each partition's events as one
 * Record call in the caller's order, and answers `call` once every part has: the
 * IngestSummaries merged (attr__merge_t), or UNAVAILABLE naming the partitions that
 * failed.
 */
void attr__ingest_split(attr_front_t *f, yw_call_t *call, attr__events_t kind, void *const *events,
                        size_t n, const int32_t *part_of);

/** The parts' answers of an ingestion call, merged (attr_front.c). Zeroed: nothing yet. */
typedef struct st_attr__merge_t {
    int64_t accepted, duplicates, rejected, past;
    attr_errs_t errs;
    grpc_status_code fail_code; /* the first failure's; OK while none */
    char fail_detail[256];
    char failed[256]; /* the partitions that failed, "3, 17" */
} attr__merge_t;

/**
 * Adds partition `p`'s answer: when OK its IngestSummary `resp` (freed here), whose error
 * of index k is the caller's event idx[k] (k < n); otherwise a failure of `p`
 * (attr__merge_fail()).
 */
void attr__merge_part(attr__merge_t *m, int p, grpc_status_code code, const char *detail,
                      ProtobufCMessage *resp, const int64_t *idx, size_t n);

/**
 * A failure: partition `p` (or none, -1) is named among those that failed; the first
 * failure's code (INVALID_ARGUMENT, the front's own request refused, as INTERNAL) and
 * detail are kept.
 */
void attr__merge_fail(attr__merge_t *m, int p, grpc_status_code code, const char *detail);

/**
 * Finishes `call` with what `m` holds: the merged IngestSummary (counts added, the lowest
 * ATTR_ERRORS_MAX errors ascending), or the first failure, naming the partitions that
 * failed and saying that the `what` ("batch", "stream") may be sent again.
 */
void attr__merge_finish(attr__merge_t *m, yw_call_t *call, const char *what);

#endif
