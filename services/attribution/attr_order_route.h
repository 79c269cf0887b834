/*
 * attr_order_route.h — where a cluster node's front sends what carries an order id and
 * no viewer (RecordRefunds, ExplainConversion): to the partition whose engine gives the
 * answer a standalone attribution gives, from what every partition said it holds
 * (PartitionService.FindOrders: which orders it holds, which refund ids it knows).
 *
 * Conversions are partitioned by viewer, so an order is held by the partition of its
 * viewer; a refund id is known where its refund was recorded. Standalone judges a refund
 * in this order: invalid (rejected), its refund id recorded (a duplicate, whatever its
 * order), its order unknown (rejected), more than what is left (rejected), admitted. A
 * refund sent where its refund id is known, else where its order is held, meets the same
 * judgement there; one that nobody can admit goes to a partition chosen by its order id
 * alone, whose engine rejects it with its own reason.
 *
 * Pure: no I/O, no clock, no gRPC.
 */
#ifndef ATTR_ORDER_ROUTE_H
#define ATTR_ORDER_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** No partition (holds the order, knows the refund id). */
#define ATTR_ROUTE_NONE (-1)

/**
 * Folds partition `p`'s answer into `where` (per id: the partition that has it, or
 * ATTR_ROUTE_NONE; start with every entry ATTR_ROUTE_NONE): `idx[0..n_idx)` are the
 * indexes of the ids it has. When several partitions have one id (an order id recorded
 * under two viewers is two conversions in a cluster, one in standalone), the lowest
 * partition keeps it, whatever order the answers come in. Returns 0, or -EINVAL when an
 * index is outside [0, n_where) (`where` then unchanged).
 */
int attr_route_found(int32_t *where, size_t n_where, const int32_t *idx, size_t n_idx, int32_t p);

/** A refund of a batch, as the front sees it. */
typedef struct st_attr_route_refund_t {
    /* Its order id and refund id among the batch's distinct ones (the `holder` and
     * `known` arrays), or ATTR_ROUTE_NONE for an id no partition could hold (empty, too
     * long): the refund is then invalid. */
    int32_t order, refund;
    /* Passed attr_validate_refund() (the front's clock: the engine checks again). */
    int valid;
} attr_route_refund_t;

/**
 * The partition of each of the `n` refunds into out[i]:
 *  - valid, its refund id known by a partition: that one (a duplicate there);
 *  - valid, its refund id known nowhere yet: the partition holding the order of the
 *    batch's first valid refund of that id whose order is held, so that a later refund
 *    of that id in the batch (even of another order) is a duplicate there, as standalone
 *    judges it; `known` is set to it;
 *  - else the partition holding its order;
 *  - else `fallback[i]` (its order id's own partition: rejected there).
 * `holder` per distinct order id and `known` per distinct refund id, as
 * attr_route_found() left them.
 */
void attr_route_refunds(const attr_route_refund_t *ev, size_t n, const int32_t *holder,
                        int32_t *known, const int32_t *fallback, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif
