/*
 * attr_service_int.h — what the files of the AttributionService share, private to
 * them (not part of attr_service.h): an engine's state (attr_svc_t), the process's
 * (attr_host_t), the per-call ingestion context (attr_ingest_t), the read of stored
 * orders into the cache (attr_order_read_t), and the functions one subsystem file calls
 * in another.
 *
 * The files, one subsystem each (README.md has the map and a request's path):
 *   attr_service.c             the method table, the flags, start and stop (attr_host_t)
 *   attr_engine.c              an engine's open and close (attr_engine.h)
 *   attr_recover.c             start-up recovery in named steps; the snapshot of a clean stop
 *   attr_gate.c                the restatement gate: what changes conversions waits behind it
 *   attr_order_load.c          reading stored orders (and refund ids) into the cache
 *   attr_ingest.c              one ingestion call: failure, rejects, flow control, the summary
 *   attr_ingest_exposures.c    RecordExposures (sliced) and IngestExposures: log frames
 *   attr_ingest_conversions.c  RecordConversions and IngestConversions: SQLite jobs, joins
 *   attr_refund.c              RecordRefunds
 *   attr_explain.c             ExplainConversion (memory, else batched reads)
 *   attr_report.c              GetCreatorReport, GetTierReport, ListTopCreators
 *   attr_settings.c            the settings, the restatement they start, the rollup audit
 *   attr_maint.c               the maintenance timer: persist touches, prune, evict, memory
 *
 * Everything here runs on the loop unless it says otherwise. Names: attr__ (double
 * underscore) for what is private to the service.
 */
#ifndef ATTR_SERVICE_INT_H
#define ATTR_SERVICE_INT_H

#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

#include "common/app.h"
#include "services/attribution/attr_ckey.h"
#include "services/attribution/attr_engine.h"
#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_exposure_store.h"
#include "services/attribution/attr_service.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_store.h"
#include "services/attribution/attr_tier.h"
#include "services/attribution/attr_xlog.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

/** Events per exposure frame / conversion job while a call is being read. */
#define ATTR_FRAME_EVENTS 2048
/** How often the maintenance timer does its work (ms). */
#define ATTR_MAINT_MS 5000
/** Exposure batches kept for reuse (with their arrays: 2,048 events cost about 240 KiB). */
#define ATTR_SPARE_XBATCHES 4

/** An exposure batch: what one call admitted, on its way to the log as one frame. */
typedef struct st_attr_xbatch_t attr_xbatch_t;

/** Work held back while the settings restate the conversions (run in order after). */
typedef struct st_attr_held_t {
    void (*fn)(struct st_attr_held_t *h);
    struct st_attr_held_t *next;
} attr_held_t;

/** Memory gauges (yaowei_attribution_memory_bytes{part}), in the order of attr__parts. */
enum { ATTR_N_MEM_PARTS = 16 };

/**
 * An engine (attr_engine.h): its state, its stores, its timers, what is in flight. One
 * per data directory: standalone, the one of the process; a cluster node, one per
 * partition it owns.
 */
struct st_attr_svc_t {
    /* What the config lent (attr_engine_config_t): valid until the engine is closed. */
    yw_runtime_t *rt;
    uv_loop_t *loop;
    yw_metrics_t *metrics; /* NULL: no metrics registered */
    yw_disk_t *disk;       /* NULL: always writable */
    const yw_page_key_t *page_key;
    yw_store_t *store;
    int own_store;               /* opened by the engine: closed once the rest is (attr__unref()) */
    attr_xlog_ship_fn ship_xlog; /* NULL: the exposure log ships nothing */
    void *ship_xlog_arg;
    uint64_t ship_linger_ns; /* the exposure log's groups linger this long (shipped only) */
    /* attr_engine_close()'s callback, run once the engine is freed. */
    void (*closed)(void *arg);
    void *closed_arg;
    attr_state_t st;
    attr_exposure_store_t *xs;
    attr_ckey_t *ck;        /* the conversion key index */
    uint64_t next_conv_seq; /* conversions.seq of the next conversion admitted */
    attr_tier_t *tier;
    uv_timer_t timer;
    int timer_open;
    char exp_dir[4096];
    int persist_busy, prune_busy, settings_busy;
    int refs; /* open handles, the log, jobs in flight: freed at 0 once stopping */
    int stopping;
    /* Stopping: the snapshot (attr_snap.h) is written once only the hold of
     * attr_engine_close() is left; its timer looks every ATTR_FINI_POLL_MS. */
    int fini_wait;
    uv_timer_t fini_timer;
    /* Memory may disagree with what the data gives (an error was logged that says "until
     * restart"): no snapshot of it is written. */
    int suspect;
    char data_dir[4000];
    /* The last committed exposure's place in the log (exposures commit in log order),
     * and the touch mark last stored (attr_touch_mark_t): a persist job stores the mark
     * of when it was taken. */
    uint64_t committed_seg, committed_off;
    attr_touch_mark_t touch_mark;
    int mark_due; /* the timer asks for the mark alone when nothing else is stored */
    int64_t tier_ttl_ns;
    uint32_t run_exposures;
    size_t run_bytes; /* --index-run-mb */
    /* Restating (a settings change being applied to the stored conversions): whatever
     * changes conversions or rollups waits in `held`, in order. */
    int restating;         /* how many hold the gate closed: a restatement, an audit */
    uint64_t restatements; /* begun so far (an audit across one compares nothing) */
    attr_held_t *held_head, *held_tail;
    struct st_attr_restate_t *restate; /* the restatement in progress, to retry */
    /* Exposure batches submitted and not yet committed: conversions committed after the
     * oldest of them stay in memory until it commits (it may join them). */
    attr_xbatch_t *active;
    /* Bytes of the exposures admitted and not yet through (their batches' `bytes`), and
     * the budget past which streams and sliced calls keep one frame in flight at most
     * (--ingest-pending-mb). */
    size_t pending_bytes, pending_budget;
    /* RecordExposures calls with events left to judge, judged a slice at a time, in
     * turn, from the slice timer (attr__on_slices). */
    struct st_attr_ingest_t *slice_head, *slice_tail;
    uv_timer_t slice_timer;
    int slice_timer_open;
    unsigned ticks;
    uint64_t bloom_thin_logged;
    struct st_attr_xbatch_t *spare_xb[ATTR_SPARE_XBATCHES]; /* see attr__xbatch_free() */
    int n_spare_xb;
    struct st_attr_explain_read_t *explain_next; /* ExplainConversion calls waiting to be read */
    int explain_jobs;                            /* reads of them in flight */
    yw_metric_t *mem[ATTR_N_MEM_PARTS];
    yw_metric_t *cache_loads, *cache_evictions, *explain_reads;
    /* The rollup audit (--audit-rollups-ms; 0: off): every audit_ns, attr__audit(). */
    int64_t audit_ns, audit_last_ns;
    int64_t maint_last_ns;
    uint64_t audits;
    yw_metric_t *audit_diffs;
};

/**
 * Reads stored conversions and refund ids on the writer's queue: it runs after every
 * write queued before it and its `done` before theirs queued after, so that what it
 * reads is never older than what memory has (a conversion changed in memory stays there
 * until its change is stored).
 */
typedef struct st_attr_order_read_t {
    yw_store_job_t job;
    attr_svc_t *svc;
    void *data; /* the caller's */
    /* in: copies, owned */
    char **orders;
    size_t n_orders, cap_orders;
    char **keys; /* viewer, product pairs */
    int64_t *key_occur;
    uint64_t *key_vp;
    size_t n_keys, cap_keys;
    /* the keys' conversions: seqs found in memory (key index, seq), then in the files */
    uint64_t (*mem)[2];
    size_t n_mem, cap_mem;
    attr_ckey_snap_t *snap;
    char **refund_ids;
    size_t n_refund_ids, cap_refund_ids;
    /* out */
    attr_convset_t set;
    uint8_t *refund_stored;
    grpc_status_code status;
    char err[256];
} attr_order_read_t;

/** One Record or Ingest call: its counts, its batches on their way, its failure. */
typedef struct st_attr_ingest_t attr_ingest_t;

struct st_attr_ingest_t {
    attr_svc_t *svc;
    yw_call_t *call;
    int64_t next_index;
    int64_t accepted, duplicates, rejected, past;
    attr_errs_t errs; /* the lowest rejected indexes, in order */
    int in_flight;
    int ended;
    grpc_status_code fail;
    char fail_msg[256];
    attr_xbatch_t *xb;
    struct st_attr_conv_batch_t *cb; /* attr_ingest_conversions.c */
    /* RecordExposures, judged in slices (attr__record_slice): the request (valid until
     * the call is freed), the next event, the call's time; `queued` while in the slice
     * queue, `flow_wait` while its frames in flight hold it back. */
    const Yaowei__Attribution__V1__RecordExposuresRequest *rx;
    size_t rx_next;
    int64_t rx_now;
    int queued, flow_wait;
    struct st_attr_ingest_t *slice_next;
};

/* ---- attr_service.c and attr_engine.c: the service's and its engines' life ---- */

/** The wall clock in nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t attr__now(void);

/** Frees the engine's memory (the spare batches, the state); nothing may hold it. */
void attr__svc_free(attr_svc_t *svc);

/**
 * Drops one reference (a handle, the log, a job in flight: svc->refs). The last one
 * of a stopping engine frees it (once the store it opened is closed, then runs
 * attr_engine_close()'s callback): `svc` must not be used after the call then.
 */
void attr__unref(attr_svc_t *svc);

/**
 * The engine a call came to: the single way handlers find theirs. Standalone, the host's
 * engine; when the host has a resolver (attr_host_t.resolve), the engine it names.
 */
attr_svc_t *attr__svc(const yw_call_t *call);

/** A Timestamp of `ns` (nanoseconds since the epoch; nanos always within 0..999999999). */
void attr__ts(int64_t ns, Google__Protobuf__Timestamp *ts);

/**
 * A request's `model` (0: the settings' default) into *model. Returns 0, or -EINVAL
 * with the call failed INVALID_ARGUMENT ("model: not an AttributionModel value").
 */
int attr__model_arg(yw_call_t *call, const attr_settings_t *settings, int asked, int *model);

/**
 * Reads flag `name` (--name) as an integer within [min, max] into *out; unset, *out
 * keeps its default. Returns 0, or -EINVAL with the flag's rule in `err`.
 */
int attr__option_int(yw_app_t *app, const char *name, long long min, long long max, long long *out,
                     char *err, size_t errlen);

/**
 * The service in this process, the app's state (yw_app_state()): the engine that serves
 * calls and, with --cluster, this node of the cluster. Made by attr_service_init(), freed
 * when the last of its references goes after attr_service_fini(). Loop thread only.
 */
typedef struct st_attr_host_t {
    yw_app_t *app;
    /* The engine over --data-dir (with the app's store); NULL once it is closing. */
    attr_svc_t *engine;
    /*
     * The hook that routes a call to its engine (attr__svc()): NULL, every call goes to
     * `engine`; set (by the node, once it runs engines of its own: one per partition it
     * owns), resolve(resolve_arg, call) names the call's engine, for instance the one of
     * the partition in its `yw-partition` metadata (yw_call_metadata()). It names the same
     * engine every time for one call, and that engine is not closed while the call is on
     * it. It returns NULL only for calls the service's admit hook (attr__node_admit())
     * has refused: handlers take their engine to be there.
     */
    attr_svc_t *(*resolve)(void *arg, const yw_call_t *call);
    void *resolve_arg;
    /* The app's (until its engine is closed), the node's start timer: at 0 the host is
     * freed, then, when stopping, yw_app_fini_done(). */
    int refs;
    int stopping;
    /* --cluster: membership and leases on NATS (attr_node.c); NULL standalone. */
    struct st_attr_cluster_t *cluster;
    struct st_attr_node_start_t *node_start; /* joining once the server serves */
    int clustered;                           /* --cluster given */
    yw_metric_t *cl_connected, *cl_ready, *cl_nodes, *cl_assigned, *cl_owned, *cl_lost;
    yw_metric_t *cl_serving, *cl_builds, *cl_build_ms, *cl_open_ms;
    yw_metric_t *cl_not_answering, *cl_ahead_served, *cl_ahead_dropped;
    /* The partitions' engines on this node (attr_node_parts.c), and the front that splits
     * and forwards clients' calls (attr_front.h). */
    struct st_attr_front_t *front;
    struct st_attr_part_t *parts;
    int n_parts;
    /* Partitions built and waiting for their engine to open, one per turn of the loop,
     * and the timer that opens them (attr_node_parts.c; NULL once closed). */
    struct st_attr_part_t *open_head, *open_tail;
    struct st_attr_opener_t *opener;
    struct st_attr_snapper_t *snapper; /* makes the partitions' snapshots (attr_node_parts.c) */
    /* The allocator's trim on the pool, and 1 while it is there (attr_node_parts.c). */
    uv_work_t trim_work;
    int trimming;
    int assigned;              /* partitions the assignment gives this node, last seen */
    attr_engine_config_t ecfg; /* the flags' config: each partition's engine starts from it */
    char parts_dir[4096];      /* --data-dir/partitions */
} attr_host_t;

/** Drops one reference of the host (attr_host_t.refs); the last one frees it. */
void attr__host_unref(attr_host_t *host);

/* ---- attr_engine.c: an engine's life (attr_engine.h) ---- */

/** The end of stopping: the hold goes with the stop timer, then the store closes if the
 *  engine opened it, then attr_engine_close()'s callback runs. */
void attr__fini_done(attr_svc_t *svc);

/* ---- attr_node.c: this node in a cluster (--cluster) ---- */

/**
 * With --cluster: checks the cluster flags and, once the server serves, joins the
 * cluster (attr_cluster.h); health is NOT_SERVING until this node holds the partitions
 * assigned to it. Without: nothing. Returns 0 or -EINVAL with the flag's rule in `err`.
 */
int attr__node_open(attr_host_t *host, char *err, size_t errlen);

/** Leaves the cluster (leases let go at once when NATS is reachable). */
void attr__node_close(attr_host_t *host);

/**
 * yw_service_t.admit. Standalone: every call. Cluster mode: a call forwarded for a
 * partition (yw-partition) when this node's engine of it serves (held until released),
 * else UNAVAILABLE; a client's call of any AttributionService method (the front splits
 * and forwards it); a client's call of another service (PartitionService, between the
 * nodes only): UNIMPLEMENTED, saying so.
 */
int attr__node_admit(yw_call_t *call);

/** Health from the cluster's last status and the partitions served (loop). */
void attr__node_health(attr_host_t *host);

/** yw_service_t.released: a forwarded call's hold of its partition goes. */
void attr__node_released(yw_call_t *call);

/* ---- attr_node_parts.c: the partitions a node holds, each an engine ---- */

/**
 * Makes the node's partition table (all OFF) under --data-dir/partitions (removed and
 * made again: a partition's directory is a view, built from its log). Returns 0 or a
 * negative errno with `err`.
 */
int attr__parts_init(attr_host_t *host, char *err, size_t errlen);

/**
 * Loop: what the cluster says this node holds, applied: a partition taken is built from
 * its log and its engine opened; one lost (or whose view diverged from its log) is
 * closed once its calls are over, and its directory removed.
 */
void attr__parts_sync(attr_host_t *host);

/** Partitions whose engine serves. */
int attr__parts_serving(const attr_host_t *host);

/**
 * Stopping: closes every engine (their calls are over: the server stopped); each holds a
 * reference of the host until closed. Frees the table once they are.
 */
void attr__parts_close(attr_host_t *host);

/**
 * For attr__node_admit(): a forwarded call for partition `p` holds it if its engine
 * serves (returns 0, counted until released), or fails UNAVAILABLE (returns -1).
 */
int attr__parts_hold(attr_host_t *host, yw_call_t *call, int p);

/** yw_service_t.released of a call attr__parts_hold() let through. */
void attr__parts_release(attr_host_t *host, int p);

/** The engine of partition `p` (serving: held by the calls on it). */
attr_svc_t *attr__parts_engine(const attr_host_t *host, int p);

/* ---- attr_recover.c: start-up, and the snapshot of a clean stop ---- */

/** What start-up found, for the line that says the service is ready. */
typedef struct st_attr_recovery_t {
    int from_snap;                   /* the snapshot of the last clean stop was used */
    uint64_t conversions;            /* stored conversions */
    uint64_t rollups;                /* rollup rows of pruned segments */
    uint64_t after_mark;             /* conversions looked up only after the touch mark */
    attr_exposure_store_stats_t xst; /* the exposure store's start-up figures */
} attr_recovery_t;

/**
 * Start-up (after the flags are read): the snapshot of the last clean stop, the
 * database, the conversion key index, the exposure store, the stored conversions.
 * Returns 0, or a negative errno with `err` set; what it opened is in `svc` (svc->ck,
 * svc->xs, each holding a reference) for the caller to close.
 */
int attr__recover(attr_svc_t *svc, int64_t now, attr_recovery_t *out, char *err, size_t errlen);

/**
 * Stopping, once only the hold is left and the touches are stored: writes the snapshot
 * for the next start (on the writer's queue, after every write), or deletes a stale one
 * when memory is suspect; then attr__fini_done().
 */
void attr__snap_write_at_stop(attr_svc_t *svc);

/* ---- attr_gate.c: the restatement gate ---- */

/** Runs `fn(h)` now, or after the restatement or audit in progress (in order). */
void attr__gate(attr_svc_t *svc, attr_held_t *h, void (*fn)(attr_held_t *h));

/** Closes the gate: what changes conversions or rollups waits (attr__gate()). */
void attr__gate_close(attr_svc_t *svc);

/** Opens it again once none holds it: what waited runs, in order, then eviction. */
void attr__gate_open(attr_svc_t *svc);

/* ---- attr_order_load.c: stored orders into the cache ---- */

/** Frees a read and what it holds (NULL: nothing). */
void attr__order_read_free(attr_order_read_t *rd);

/** A NUL-terminated copy of s[0..n) (malloc; NULL: out of memory). */
char *attr__strndup(const char *s, size_t n);

/** Appends a copy of s[0..len) to a growable array of strings. Returns 0 or -ENOMEM. */
int attr__push_str(char ***arr, size_t *n, size_t *cap, const char *s, size_t len);

/** Adds an order id to read (once). Returns 0 or -ENOMEM. */
int attr__order_read_add_order(attr_order_read_t *rd, const char *id, size_t len);

/** Adds a (viewer, product) key whose stored conversions to read. Returns 0 or -ENOMEM. */
int attr__order_read_add_key(attr_order_read_t *rd, const char *viewer, size_t vlen,
                             const char *product, size_t plen, int64_t occur_ns, uint64_t vp);

/** The read's work (yw_store_job_t.work, on the writer's thread). */
grpc_status_code attr__order_read_work(yw_store_conn_t *conn, yw_store_job_t *job);

/** Whether a stored conversion read back is the row of the pending one of its id. */
int attr__pending_own(attr_state_t *st, const attr_conv_in_t *in);

/**
 * Adds the stored touches of conversion i of `set` to `c` (as stored: persisted), in
 * `st`'s interner. Returns 0 or a negative errno (-ENOMEM).
 */
int attr__add_stored_touches(attr_state_t *st, attr_conv_t *c, const attr_convset_t *set, size_t i);

/**
 * Conversion i of a read's set, in memory: the cached one, NULL when it is pending,
 * else loaded into the cache now. Returns 0 or -ENOMEM.
 */
int attr__conv_from_set(attr_svc_t *svc, const attr_convset_t *set, size_t i, attr_conv_t **out);

/* ---- attr_ingest.c: one ingestion call ---- */

/** A context for `call`, hung on it (yw_call_set_data()). NULL: out of memory. */
attr_ingest_t *attr__ingest_new(yw_call_t *call);

/** The stream's context, made at its first message; NULL: the call was failed. */
attr_ingest_t *attr__stream_ingest(yw_call_t *call);

/** Records the call's failure (the first one is reported when the call finishes). */
void attr__ingest_fail(attr_ingest_t *ing, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * A Record call's size: at most ATTR_BATCH_MAX events. Returns 0, or -EINVAL with the
 * call failed INVALID_ARGUMENT.
 */
int attr__events_max(yw_call_t *call, size_t n);

/**
 * The call's input ended (the last batch was submitted): the summary goes once every
 * batch is through (attr__ingest_maybe_finish(); `ing` may be freed).
 */
void attr__ingest_end(attr_ingest_t *ing);

/**
 * on_done of the client streams (standalone, or forwarded to a partition): a stream over
 * without its end (the runtime failed a message, the call died) has what it admitted
 * written and its context freed once nothing of it is in flight; its call is not
 * touched again.
 */
void attr__on_ingest_done(yw_call_t *call);

/** Whether the data dir's disk is full (then the call is failed RESOURCE_EXHAUSTED). */
int attr__disk_full(attr_ingest_t *ing);

/** Counts a rejected event; the summary lists the lowest indexes (attr_errs.h). */
void attr__reject(attr_ingest_t *ing, int64_t index, const char *reason);

/** The reason for an order_id no conversion has (its id quoted). Returns `buf`. */
const char *attr__no_order(const char *order_id, char *buf, size_t n);

/** Whether a call's next events wait for its frames in flight (count, then bytes). */
int attr__flow_full(const attr_ingest_t *ing);

/** A frame or job went through, or came: pauses or resumes the call's reading. */
void attr__stream_flow(attr_ingest_t *ing);

/**
 * Sends the summary (or the failure) once the input ended and nothing is in flight,
 * then frees `ing`; before that, lets the call read on (attr__stream_flow()).
 */
void attr__ingest_maybe_finish(attr_ingest_t *ing);

/* ---- attr_ingest_exposures.c ---- */

/** RecordExposures: judged in slices across loop turns, written as log frames. */
void attr__on_record_exposures(yw_call_t *call, const ProtobufCMessage *msg);

/** IngestExposures: one event of the stream. */
void attr__on_ingest_exposure(yw_call_t *call, const ProtobufCMessage *msg);

/** IngestExposures: the end of the stream (or the client went away). */
void attr__on_ingest_exposures_end(yw_call_t *call);

/** Puts a sliced RecordExposures call at the end of the slice queue. */
void attr__slice_queue(attr_ingest_t *ing);

/**
 * The guard of the oldest exposure batch in flight (UINT64_MAX: none): conversions
 * committed from it on may be joined by a batch in flight.
 */
uint64_t attr__xbatch_guard(const attr_svc_t *svc);

/** Frees the exposure batches kept for reuse. */
void attr__spare_xb_free(attr_svc_t *svc);

/* ---- attr_ingest_conversions.c ---- */

/** RecordConversions. */
void attr__on_record_conversions(yw_call_t *call, const ProtobufCMessage *msg);

/** IngestConversions: one event of the stream. */
void attr__on_ingest_conversion(yw_call_t *call, const ProtobufCMessage *msg);

/** IngestConversions: the end of the stream. */
void attr__on_ingest_conversions_end(yw_call_t *call);

/**
 * The seq up to which every stored conversion's key is in the key index: all but the
 * pending ones are.
 */
uint64_t attr__safe_seq(const attr_svc_t *svc);

/* ---- attr_refund.c ---- */

/** RecordRefunds. */
void attr__on_record_refunds(yw_call_t *call, const ProtobufCMessage *msg);

/* ---- attr_explain.c ---- */

/** ExplainConversion: from memory, else read with the calls that wait with it. */
void attr__on_explain(yw_call_t *call, const ProtobufCMessage *msg);

/** Submits the explanations waiting (svc->explain_next, not NULL) as one read. */
void attr__explain_read_submit(attr_svc_t *svc);

/* ---- attr_report.c ---- */

/** GetCreatorReport. */
void attr__on_creator_report(yw_call_t *call, const ProtobufCMessage *msg);

/** GetTierReport (after the tier labels are refreshed). */
void attr__on_tier_report(yw_call_t *call, const ProtobufCMessage *msg);

/** ListTopCreators (after the tier labels are refreshed). */
void attr__on_top_creators(yw_call_t *call, const ProtobufCMessage *msg);

/* ---- attr_settings.c ---- */

/** GetAttributionSettings. */
void attr__on_get_settings(yw_call_t *call, const ProtobufCMessage *msg);

/** UpdateAttributionSettings: stored, then every conversion restated under them. */
void attr__on_update_settings(yw_call_t *call, const ProtobufCMessage *msg);

/** The rollup audit (--audit-rollups-ms), when due at this tick. */
void attr__audit(attr_svc_t *svc, int64_t now);

/** A restatement whose read failed is tried again (a maintenance tick). */
void attr__restate_retry(attr_svc_t *svc);

/**
 * Stopping: a restatement waiting to be tried again is dropped (the settings are
 * stored: the next start-up applies them); its call fails and the gate opens.
 */
void attr__restate_cancel(attr_svc_t *svc);

/* ---- attr_maint.c: maintenance ---- */

/** Writes the candidate touches not yet stored, with the touch mark (one job at a time). */
void attr__schedule_persist(attr_svc_t *svc);

/** Evicts conversions over the cache's budget that nothing needs in memory any more. */
void attr__evict(attr_svc_t *svc);

/** Memory by part into the gauges; the log line every so many ticks (or `force`). */
void attr__account_memory(attr_svc_t *svc, int force);

/** The maintenance timer (svc->timer). */
void attr__on_timer(uv_timer_t *t);

/**
 * Gives the free memory the allocator keeps back to the kernel when it is over a few MiB
 * (malloc_trim()): process-wide, every few seconds (standalone: the engine's maintenance
 * tick; a cluster node: the node's, on a thread of the pool and not while partitions are
 * built; its partition engines leave the allocator alone). Any thread. Returns
 * mallinfo2() as it is after.
 */
struct mallinfo2 attr__trim_process(void);

/** Registers the service's metrics (memory by part, the cache, the audit). */
void attr__metrics_register(attr_svc_t *svc);

#endif
