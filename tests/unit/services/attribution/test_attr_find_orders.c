/*
 * test_attr_find_orders.c — unit tests of PartitionService.FindOrders
 * (services/attribution/attr_partition_service.c) through fake calls on the engine of a
 * standalone attribution (attr_handler_fixture.h): the orders it holds and the refund ids
 * it knows, from memory and, out of memory, from the store with the same answer; ids
 * that no order could have; a refund id while its refund is on its way; the request's
 * limits.
 */
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_partition_service.h"
#include "services/attribution/attr_service_int.h"
#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_handler_fixture.h"
#include "tests/unit/test.h"

typedef Yaowei__Attribution__Internal__V1__FindOrdersRequest find_req_t;
typedef Yaowei__Attribution__Internal__V1__FoundOrders found_t;

static yw_fake_call_t *find_start(const char *const *orders, size_t n_orders,
                                  const char *const *refunds, size_t n_refunds)
{
    find_req_t req = YAOWEI__ATTRIBUTION__INTERNAL__V1__FIND_ORDERS_REQUEST__INIT;
    req.order_ids = (char **)orders;
    req.n_order_ids = n_orders;
    req.refund_ids = (char **)refunds;
    req.n_refund_ids = n_refunds;
    yw_fake_call_config_t cfg = {
        .service = &attr_partition_service,
        .method = "FindOrders",
        .service_ctx = afx_fx.app,
        .request = &req.base,
    };
    yw_fake_call_t *fc = NULL;
    YW_CHECK_INT(yw_fake_call_start(yw_app_runtime(afx_fx.app), &cfg, &fc), ==, 0);
    return fc;
}

/* Checks a FindOrders answer: these order and refund indexes, ascending; destroys it. */
static void check_found(yw_fake_call_t *fc, const int32_t *orders, size_t n_orders,
                        const int32_t *refunds, size_t n_refunds)
{
    handler_fx_run(fc);
    const found_t *f = handler_fx_reply(fc);
    YW_CHECK_INT(f->n_orders, ==, n_orders);
    for (size_t i = 0; i < n_orders; i++) {
        YW_CHECK_INT(f->orders[i], ==, orders[i]);
    }
    YW_CHECK_INT(f->n_refunds, ==, n_refunds);
    for (size_t i = 0; i < n_refunds; i++) {
        YW_CHECK_INT(f->refunds[i], ==, refunds[i]);
    }
    yw_fake_call_destroy(fc);
}

/* Orders "o1" and "o2" of viewer "v", and refund "r1" of 100 of "o1". */
static void seed(void)
{
    int64_t t = afx_now_s() - 3600;
    afx_accept_conversion("o1", "v", "p", 1000, t);
    afx_accept_conversion("o2", "v", "p", 2000, t);
    afx_refund_t r;
    afx_refund(&r, "r1", "o1", 100, afx_now_s());
    afx_check_summary(afx_record_refunds(&r, 1), 1, 0, 0, NULL, 0);
}

/* What seed() recorded, asked among ids nobody has: the same answer whatever the cache. */
static void check_seeded(void)
{
    char long_id[ATTR_ID_MAX + 2];
    memset(long_id, 'o', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    const char *orders[] = {"o1", "ghost", "o2", "", long_id, "r1"};
    const char *refunds[] = {"r-none", "r1", "o1", ""};
    static const int32_t held[] = {0, 2}, known[] = {1};
    check_found(find_start(orders, 6, refunds, 4), held, 2, known, 1);
    check_found(find_start(NULL, 0, NULL, 0), NULL, 0, NULL, 0);
}

YW_TEST(orders_held_and_refund_ids_known_are_found_in_memory)
{
    afx_open(NULL);
    seed();
    check_seeded();
    afx_close();
}

YW_TEST(orders_out_of_memory_are_found_in_the_store_the_same)
{
    const char *flags[] = {"--conversion-cache-mb=0", NULL};
    afx_open(flags);
    seed();
    handler_fx_reopen(&afx_fx); /* nothing in memory: every id read */
    check_seeded();
    afx_close();
}

YW_TEST(a_refund_id_on_its_way_is_known)
{
    afx_open(NULL);
    seed();
    /* Admitted and not yet stored, as RecordRefunds leaves it while its write is out. */
    attr_host_t *host = yw_app_state(afx_fx.app);
    attr_state_t *st = &host->engine->st;
    attr_refund_t *r = NULL;
    int64_t left = 0;
    YW_CHECK_INT(attr_refund_admit(st, "r2", 2, "o2", 2, 1, afx_now_s() * ATTR_NS_PER_S, &r, &left),
                 ==, ATTR_ADMITTED);
    const char *refunds[] = {"r2", "r3"};
    static const int32_t known[] = {0};
    check_found(find_start(NULL, 0, refunds, 2), NULL, 0, known, 1);
    attr_refund_abort(st, r);
    check_found(find_start(NULL, 0, refunds, 2), NULL, 0, NULL, 0);
    afx_close();
}

YW_TEST(more_ids_than_a_batch_are_refused)
{
    afx_open(NULL);
    size_t n = ATTR_BATCH_MAX + 1;
    const char **ids = calloc(n, sizeof *ids);
    YW_CHECK(ids != NULL);
    for (size_t i = 0; i < n; i++) {
        ids[i] = "o";
    }
    yw_fake_call_t *fc = find_start(ids, n, NULL, 0);
    handler_fx_run(fc);
    handler_fx_expect_fail(fc, GRPC_STATUS_INVALID_ARGUMENT, "order_ids: at most 10000");
    fc = find_start(NULL, 0, ids, n);
    handler_fx_run(fc);
    handler_fx_expect_fail(fc, GRPC_STATUS_INVALID_ARGUMENT, "refund_ids: at most 10000");
    free(ids);
    afx_close();
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(orders_held_and_refund_ids_known_are_found_in_memory),
        YW_TEST_ENTRY(orders_out_of_memory_are_found_in_the_store_the_same),
        YW_TEST_ENTRY(a_refund_id_on_its_way_is_known),
        YW_TEST_ENTRY(more_ids_than_a_batch_are_refused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
