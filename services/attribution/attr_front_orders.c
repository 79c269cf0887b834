/*
 * attr_front_orders.c — a cluster node's front for the calls that carry an order id and
 * no viewer, RecordRefunds and ExplainConversion: every partition is asked which of the
 * call's orders it holds and which of its refund ids it knows (FindOrders, in parallel,
 * each forwarded as attr__fwd_start() forwards), then each refund goes to the partition
 * attr_route_refunds() names and the summaries are merged as ingestion's are
 * (attr__ingest_split()); an explanation goes to its order's holder. What no partition
 * holds goes to its order id's own partition (attr_cluster_partition() of the order id),
 * whose engine answers with standalone's words: rejected, "no conversion has order_id",
 * NOT_FOUND. A partition that cannot be asked (its forwarding's tries over) fails the
 * call UNAVAILABLE naming it, before any refund is sent: never an answer made without
 * one partition.
 *
 * The race: an order whose conversion is acknowledged while its refund is being routed
 * (after its partition answered FindOrders, before the refund got there) may be missed:
 * the refund goes to the order id's own partition and, unless that is the order's, is
 * rejected "no conversion has order_id", as a standalone attribution that judged the
 * refund before the conversion was acknowledged rejects it. An order acknowledged before
 * the refund call began is always found; a refund sent again finds it. The same holds
 * of refund ids (a refund of that id recorded meanwhile elsewhere) and explanations
 * (NOT_FOUND). A partition changing hands meanwhile changes nothing: the partition, not
 * the node, holds the order, and forwarding follows it to its new node.
 *
 * What standalone answers and a cluster cannot:
 *  - an order id recorded under two viewers is one conversion standalone (the second a
 *    duplicate) and two in a cluster; its refunds and explanations go to the lowest
 *    partition that holds it (attr_route_found());
 *  - one new refund id used in one batch for orders of two partitions meets where the
 *    first admissible refund of it goes (attr_route_refunds()): when that one is then
 *    rejected (more than what is left), the later one, of another partition's order, is
 *    rejected there too ("no conversion"), where standalone would admit it;
 *  - one new refund id sent in two calls at once, for orders of two partitions, may be
 *    admitted by both (standalone: the second is a duplicate). Refund ids are the
 *    client's idempotency keys: a refund sent again has its own order, and is found.
 */
#include "services/attribution/attr_front_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_order_route.h"
#include "services/attribution/attr_validate.h"
#include "yaowei/attribution/internal/v1/partition.pb-c.h"

/*
 * The front judges a refund's validity only to choose where it goes (the engine judges
 * it again): with a clock this far ahead, a refund the engine may take a moment later as
 * no longer in the future is not taken for invalid here.
 */
#define ATTR__FRONT_CLOCK_AHEAD_NS (60 * ATTR_NS_PER_S)

typedef struct st_attr__find_t attr__find_t;

/** A RecordRefunds or an ExplainConversion while its orders are looked up and routed. */
struct st_attr__find_t {
    attr_front_t *f;
    yw_call_t *call;
    int np;
    /* The lookup: its ids point into the inbound request (alive until the call ends). */
    Yaowei__Attribution__Internal__V1__FindOrdersRequest req;
    int32_t *holder;     /* per order id: the partition that holds it (ATTR_ROUTE_NONE) */
    int32_t *known;      /* per refund id: the partition that knows it */
    attr__fwd_t *asks;   /* one per partition */
    int pending;         /* asks not answered (and one while they start) */
    attr__merge_t fails; /* only its failure is used */
    /* Every partition has answered (or failed: fails.fail_code). */
    void (*done)(attr__find_t *fd);
    /* RecordRefunds: each refund's ids and validity, and its partition. */
    const Yaowei__Attribution__V1__RecordRefundsRequest *refunds;
    attr_route_refund_t *ev;
    int32_t *fallback, *part_of;
    /* ExplainConversion: the request, its one order id. */
    const Yaowei__Attribution__V1__ExplainConversionRequest *explain;
    char *one_id[1];
};

static void attr__find_free(attr__find_t *fd)
{
    if (fd->req.order_ids != fd->one_id) {
        free(fd->req.order_ids);
    }
    free(fd->req.refund_ids);
    free(fd->holder);
    free(fd->known);
    free(fd->asks);
    free(fd->ev);
    free(fd->fallback);
    free(fd->part_of);
    free(fd);
}

/* A lookup of at most `n` order ids and refund ids (0: none). NULL: out of memory. */
static attr__find_t *attr__find_new(attr_front_t *f, yw_call_t *call, size_t n)
{
    attr__find_t *fd = calloc(1, sizeof *fd);
    if (fd == NULL) {
        return NULL;
    }
    fd->f = f;
    fd->call = call;
    fd->np = attr_cluster_partitions(f->cluster);
    yaowei__attribution__internal__v1__find_orders_request__init(&fd->req);
    size_t cap = n ? n : 1;
    fd->asks = calloc((size_t)fd->np, sizeof *fd->asks);
    fd->holder = malloc(cap * sizeof *fd->holder);
    fd->known = malloc(cap * sizeof *fd->known);
    if (fd->asks == NULL || fd->holder == NULL || fd->known == NULL) {
        attr__find_free(fd);
        return NULL;
    }
    for (size_t i = 0; i < cap; i++) {
        fd->holder[i] = ATTR_ROUTE_NONE;
        fd->known[i] = ATTR_ROUTE_NONE;
    }
    return fd;
}

/* ---- the lookup: FindOrders to every partition, the answers folded ---- */

static void attr__on_found(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    attr__find_t *fd = fw->arg;
    if (code == GRPC_STATUS_OK) {
        const Yaowei__Attribution__Internal__V1__FoundOrders *fo =
            (const Yaowei__Attribution__Internal__V1__FoundOrders *)resp;
        if (attr_route_found(fd->holder, fd->req.n_order_ids, fo->orders, fo->n_orders, fw->p) !=
                0 ||
            attr_route_found(fd->known, fd->req.n_refund_ids, fo->refunds, fo->n_refunds, fw->p) !=
                0) {
            attr__merge_fail(&fd->fails, fw->p, GRPC_STATUS_INTERNAL,
                             "FindOrders: an index past the ids asked");
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        attr__merge_fail(&fd->fails, fw->p, code, detail);
    }
    if (--fd->pending == 0) {
        fd->done(fd);
    }
}

/* Asks every partition; fd->done runs once all have answered (maybe before return). */
static void attr__find_start(attr__find_t *fd)
{
    fd->pending = fd->np + 1;
    for (int p = 0; p < fd->np; p++) {
        fd->asks[p] = (attr__fwd_t){
            .f = fd->f,
            .call = fd->call,
            .p = p,
            .method = "/yaowei.attribution.internal.v1.PartitionService/FindOrders",
            .req = &fd->req.base,
            .resp_desc = &yaowei__attribution__internal__v1__found_orders__descriptor,
            .cb = attr__on_found,
            .arg = fd,
        };
        attr__fwd_start(&fd->asks[p]);
    }
    if (--fd->pending == 0) {
        fd->done(fd);
    }
}

/* Fails the call when a partition could not be asked; returns -1 then (fd freed). */
static int attr__find_failed(attr__find_t *fd)
{
    if (fd->fails.fail_code == GRPC_STATUS_OK) {
        return 0;
    }
    yw_call_finish(fd->call, fd->fails.fail_code,
                   "partitions %s: %s (cannot find which partition holds the order: nothing "
                   "was sent, send the call again)",
                   fd->fails.failed, fd->fails.fail_detail);
    attr__find_free(fd);
    return -1;
}

/* ---- RecordRefunds ---- */

/* Every partition answered: each refund to its partition, the summaries merged. */
static void attr__refunds_found(attr__find_t *fd)
{
    if (attr__find_failed(fd) != 0) {
        return;
    }
    const Yaowei__Attribution__V1__RecordRefundsRequest *req = fd->refunds;
    attr_route_refunds(fd->ev, req->n_events, fd->holder, fd->known, fd->fallback, fd->part_of);
    attr__ingest_split(fd->f, fd->call, ATTR__REFUNDS, (void *const *)req->events, req->n_events,
                       fd->part_of);
    attr__find_free(fd);
}

/*
 * The index of `id` among the distinct ids `*ids` (added when new; the map keys the
 * request's own strings). Returns it, or ATTR_ROUTE_NONE when out of memory (*oom set).
 */
static int32_t attr__distinct(attr_strmap_t *m, char **ids, size_t *n, const char *id, int *oom)
{
    size_t len = strlen(id);
    uint64_t h = yw_hash_bytes(id, len);
    void *at = attr_strmap_get(m, h, id, len);
    if (at != NULL) {
        return (int32_t)((uintptr_t)at - 1);
    }
    if (attr_strmap_add(m, h, id, len, (void *)(uintptr_t)(*n + 1)) != 0) {
        *oom = 1;
        return ATTR_ROUTE_NONE;
    }
    ids[*n] = (char *)id;
    return (int32_t)(*n)++;
}

void attr_front_record_refunds(attr_front_t *f, yw_call_t *call,
                               const Yaowei__Attribution__V1__RecordRefundsRequest *req)
{
    size_t n = req->n_events;
    if (attr__relay_oversized(f, call, ATTR__REFUNDS, &req->base, n)) {
        return;
    }
    attr__find_t *fd = attr__find_new(f, call, n);
    size_t cap = n ? n : 1;
    if (fd == NULL || (fd->ev = calloc(cap, sizeof *fd->ev)) == NULL ||
        (fd->fallback = malloc(cap * sizeof *fd->fallback)) == NULL ||
        (fd->part_of = malloc(cap * sizeof *fd->part_of)) == NULL ||
        (fd->req.order_ids = malloc(cap * sizeof *fd->req.order_ids)) == NULL ||
        (fd->req.refund_ids = malloc(cap * sizeof *fd->req.refund_ids)) == NULL) {
        if (fd != NULL) {
            attr__find_free(fd);
        }
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fd->refunds = req;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ahead = (int64_t)ts.tv_sec * ATTR_NS_PER_S + ts.tv_nsec + ATTR__FRONT_CLOCK_AHEAD_NS;
    attr_strmap_t orders, refund_ids;
    attr_strmap_init(&orders);
    attr_strmap_init(&refund_ids);
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++) {
        const Yaowei__Attribution__V1__RefundEvent *ev = req->events[i];
        const char *order = ev->order_id != NULL ? ev->order_id : "";
        fd->fallback[i] = attr_cluster_partition(order, strlen(order), fd->np);
        char err[ATTR_REASON_MAX];
        int64_t occur;
        attr_route_refund_t *e = &fd->ev[i];
        e->valid = attr_validate_refund(ev, ahead, &occur, err, sizeof err) == 0;
        e->order = e->refund = ATTR_ROUTE_NONE;
        if (e->valid) { /* (ids of valid refunds only: UTF-8, 1..ATTR_ID_MAX bytes) */
            e->order =
                attr__distinct(&orders, fd->req.order_ids, &fd->req.n_order_ids, order, &oom);
            e->refund = attr__distinct(&refund_ids, fd->req.refund_ids, &fd->req.n_refund_ids,
                                       ev->refund_id, &oom);
        }
    }
    attr_strmap_free(&orders);
    attr_strmap_free(&refund_ids);
    if (oom) {
        attr__find_free(fd);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fd->done = attr__refunds_found;
    if (fd->req.n_order_ids == 0) {
        attr__refunds_found(fd); /* none valid: rejected wherever they go */
        return;
    }
    attr__find_start(fd);
}

/* ---- ExplainConversion ---- */

/* Relays the explanation to partition `p`: its engine answers. */
static void attr__explain_relay(attr_front_t *f, yw_call_t *call,
                                const Yaowei__Attribution__V1__ExplainConversionRequest *req, int p)
{
    attr__relay(f, call, p, "/yaowei.attribution.v1.AttributionService/ExplainConversion",
                &req->base, &yaowei__attribution__v1__conversion_attribution__descriptor);
}

static void attr__explain_found(attr__find_t *fd)
{
    if (attr__find_failed(fd) != 0) {
        return;
    }
    const char *id = fd->explain->order_id;
    attr__explain_relay(fd->f, fd->call, fd->explain,
                        fd->holder[0] != ATTR_ROUTE_NONE
                            ? fd->holder[0]
                            : attr_cluster_partition(id, strlen(id), fd->np));
    attr__find_free(fd);
}

void attr_front_explain(attr_front_t *f, yw_call_t *call,
                        const Yaowei__Attribution__V1__ExplainConversionRequest *req)
{
    const char *id = req->order_id != NULL ? req->order_id : "";
    size_t len = strlen(id);
    int np = attr_cluster_partitions(f->cluster), model = (int)req->model;
    if (len == 0 || len > ATTR_ID_MAX || model < 0 || model > ATTR_N_MODELS) {
        /* No partition could hold it, or the request is refused wherever it goes: the
         * engine of its order id's partition says why, as standalone does. */
        attr__explain_relay(f, call, req, attr_cluster_partition(id, len, np));
        return;
    }
    attr__find_t *fd = attr__find_new(f, call, 1);
    if (fd == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fd->explain = req;
    fd->one_id[0] = (char *)id;
    fd->req.order_ids = fd->one_id;
    fd->req.n_order_ids = 1;
    fd->done = attr__explain_found;
    attr__find_start(fd);
}
