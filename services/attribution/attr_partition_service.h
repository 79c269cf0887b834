/*
 * attr_partition_service.h — yaowei.attribution.internal.v1.PartitionService
 * (partition.proto): what a node of a cluster answers about the partitions it owns,
 * GetCreatorSums and FindOrders, and the CreatorSums message made from, and merged into, the sums
 * of attr_sums.h. Private to the service's files and their unit tests. (attr_partition.h is another
 * thing: a partition's log and the directory its engine runs over.)
 *
 * Standalone never serves it: a node of a cluster adds it to its server
 * (attr__partition_service_add()). The node a client called gathers every partition's
 * CreatorSums, merges them (attr__sums_msg_merge() into an attr_sums_merge_t) and
 * renders the report from the merge (attr_report.h).
 */
#ifndef ATTR_PARTITION_SERVICE_H
#define ATTR_PARTITION_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "common/app.h"
#include "common/server.h"
#include "services/attribution/attr_state.h"
#include "services/attribution/attr_sums.h"
#include "yaowei/attribution/internal/v1/partition.pb-c.h"

#define ATTR_PARTITION_SERVICE_NAME "yaowei.attribution.internal.v1.PartitionService"

/** The service, its `ctx` unset (attr__partition_service_add() binds a copy to the app). */
extern const yw_service_t attr_partition_service;

/**
 * Adds PartitionService to `app`'s server; from the app's init, before the server
 * starts. `slot` gets a copy of attr_partition_service bound to the app (its calls reach
 * the engine through attr__svc(), as AttributionService's do) and must outlive the
 * server. Returns 0 or a negative errno (yw_server_add_service()).
 */
int attr__partition_service_add(yw_app_t *app, yw_service_t *slot);

/** GetCreatorSums: the sums of the engine the call reaches (attr__svc()). */
void attr__on_creator_sums(yw_call_t *call, const ProtobufCMessage *msg);

/**
 * FindOrders: which of the request's order ids the engine the call reaches holds (a
 * conversion acknowledged: live in memory, or stored and not the row of the pending one)
 * and which refund ids it has recorded (stored, or pending in memory), from memory and,
 * for the ids memory does not know, one read of the store on a reader thread (memory is
 * asked again once it is back). At most ATTR_BATCH_MAX of each, else INVALID_ARGUMENT.
 */
void attr__on_find_orders(yw_call_t *call, const ProtobufCMessage *msg);

/**
 * Checks a GetCreatorSumsRequest: its range as the reports check theirs
 * (attr_validate_range()), into days [*d0, *d1), and its model, which the node that asks
 * has resolved (1..ATTR_N_MODELS). Returns GRPC_STATUS_OK, or INVALID_ARGUMENT with
 * `err` naming the field.
 */
grpc_status_code
attr__creator_sums_args(const Yaowei__Attribution__Internal__V1__GetCreatorSumsRequest *req,
                        int32_t *d0, int32_t *d1, int *model, char *err, size_t errlen);

/** A CreatorSums message and the storage its parts live in (attr__sums_msg_free()). */
typedef struct st_attr_sums_msg_t {
    Yaowei__Attribution__Internal__V1__CreatorSums msg;
    Yaowei__Attribution__Internal__V1__CreatorSumsRow *rows;
    Yaowei__Attribution__Internal__V1__CreatorSumsRow **ptrs;
    Yaowei__Attribution__Internal__V1__Int128 *figs; /* 5 per row, then 2 unattributed */
    char currency[4];
} attr_sums_msg_t;

/**
 * `sums` as a CreatorSums message of settings `settings` (currency, version) into `out`:
 * every figure exact. The names are borrowed from `sums`. Returns 0, or -ENOMEM with
 * nothing to free.
 */
int attr__sums_msg_make(const attr_range_sums_t *sums, const attr_settings_t *settings,
                        attr_sums_msg_t *out);

/** Frees what attr__sums_msg_make() allocated. */
void attr__sums_msg_free(attr_sums_msg_t *m);

/**
 * Adds one partition's CreatorSums to `m`. Returns 0; -EINVAL when the message is not
 * one this build would send (credit units of another scale, a row without a creator),
 * with `err` saying why and `m` unchanged; -ERANGE or -ENOMEM (attr_sums_merge()).
 */
int attr__sums_msg_merge(attr_sums_merge_t *m,
                         const Yaowei__Attribution__Internal__V1__CreatorSums *msg, char *err,
                         size_t errlen);

#endif
