/*
 * test_attr_order_route.c — unit tests of services/attribution/attr_order_route.c: the
 * partitions' FindOrders answers folded whatever their order (the lowest partition keeps
 * an id two have; an index out of range refused with nothing changed), and where each
 * refund of a batch goes: where its refund id is known, else with the first admissible
 * refund of its id, else to its order's holder, else to its order id's own partition.
 */
#include "services/attribution/attr_order_route.h"

#include <errno.h>

#include "tests/unit/test.h"

#define NONE ATTR_ROUTE_NONE

YW_TEST(answers_fold_to_the_lowest_partition_in_any_order)
{
    int32_t where[4] = {NONE, NONE, NONE, NONE};
    static const int32_t from7[] = {0, 2}, from3[] = {2}, from5[] = {0, 3};
    YW_CHECK_INT(attr_route_found(where, 4, from7, 2, 7), ==, 0);
    YW_CHECK_INT(attr_route_found(where, 4, from3, 1, 3), ==, 0);
    YW_CHECK_INT(attr_route_found(where, 4, from5, 2, 5), ==, 0);
    YW_CHECK_INT(where[0], ==, 5);
    YW_CHECK_INT(where[1], ==, NONE);
    YW_CHECK_INT(where[2], ==, 3);
    YW_CHECK_INT(where[3], ==, 5);
    YW_CHECK_INT(attr_route_found(where, 4, NULL, 0, 0), ==, 0); /* a partition with none */
    /* An index past the ids asked: refused, nothing folded (not even the good one). */
    static const int32_t bad[] = {1, 4}, negative[] = {-1};
    YW_CHECK_INT(attr_route_found(where, 4, bad, 2, 0), ==, -EINVAL);
    YW_CHECK_INT(attr_route_found(where, 4, negative, 1, 0), ==, -EINVAL);
    YW_CHECK_INT(where[1], ==, NONE);
    YW_CHECK_INT(where[0], ==, 5);
}

YW_TEST(a_refund_goes_to_its_orders_holder_else_to_its_order_ids_partition)
{
    /* Orders 0 at 4, 1 nowhere; refund ids all new. */
    int32_t holder[] = {4, NONE}, known[] = {NONE, NONE, NONE};
    static const attr_route_refund_t ev[] = {
        {.order = 0, .refund = 0, .valid = 1},
        {.order = 1, .refund = 1, .valid = 1},       /* unknown order */
        {.order = NONE, .refund = NONE, .valid = 0}, /* invalid: its ids not asked */
        {.order = 0, .refund = 2, .valid = 0},       /* invalid, its order held */
    };
    static const int32_t fallback[] = {9, 10, 11, 12};
    int32_t out[4];
    attr_route_refunds(ev, 4, holder, known, fallback, out);
    YW_CHECK_INT(out[0], ==, 4);
    YW_CHECK_INT(out[1], ==, 10);
    YW_CHECK_INT(out[2], ==, 11);
    YW_CHECK_INT(out[3], ==, 4);
}

YW_TEST(a_refund_id_known_somewhere_goes_there_whatever_its_order)
{
    /* Refund id 0 was recorded in partition 6 (with some order); now it comes with order 0
     * of partition 2, and with an order nobody holds: both are duplicates in 6. An invalid
     * refund of that id is not sent there for it. */
    int32_t holder[] = {2, NONE}, known[] = {6};
    static const attr_route_refund_t ev[] = {
        {.order = 0, .refund = 0, .valid = 1},
        {.order = 1, .refund = 0, .valid = 1},
        {.order = 0, .refund = 0, .valid = 0},
    };
    static const int32_t fallback[] = {8, 8, 8};
    int32_t out[3];
    attr_route_refunds(ev, 3, holder, known, fallback, out);
    YW_CHECK_INT(out[0], ==, 6);
    YW_CHECK_INT(out[1], ==, 6);
    YW_CHECK_INT(out[2], ==, 2);
}

YW_TEST(refunds_of_one_new_refund_id_meet_where_the_first_admissible_one_goes)
{
    /* Refund id 0 with orders held by 1, then 3: both go to 1, where the second is a
     * duplicate of the first, as standalone counts it. Refund id 1: first with an order
     * nobody holds (rejected wherever), then invalid, then with order 1 held by 3: all
     * three go to 3 (the first is rejected there, the third admitted). Refund id 2 never
     * with a held order: each to its order id's partition. */
    int32_t holder[] = {1, 3, NONE}, known[] = {NONE, NONE, NONE};
    static const attr_route_refund_t ev[] = {
        {.order = 0, .refund = 0, .valid = 1}, {.order = 1, .refund = 0, .valid = 1},
        {.order = 2, .refund = 1, .valid = 1}, {.order = 0, .refund = 1, .valid = 0},
        {.order = 1, .refund = 1, .valid = 1}, {.order = 2, .refund = 2, .valid = 1},
    };
    static const int32_t fallback[] = {5, 5, 7, 5, 5, 7};
    int32_t out[6];
    attr_route_refunds(ev, 6, holder, known, fallback, out);
    static const int32_t want[] = {1, 1, 3, 1, 3, 7};
    for (size_t i = 0; i < 6; i++) {
        YW_CHECK_INT(out[i], ==, want[i]);
    }
    YW_CHECK_INT(known[0], ==, 1);
    YW_CHECK_INT(known[1], ==, 3);
    YW_CHECK_INT(known[2], ==, NONE);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(answers_fold_to_the_lowest_partition_in_any_order),
        YW_TEST_ENTRY(a_refund_goes_to_its_orders_holder_else_to_its_order_ids_partition),
        YW_TEST_ENTRY(a_refund_id_known_somewhere_goes_there_whatever_its_order),
        YW_TEST_ENTRY(refunds_of_one_new_refund_id_meet_where_the_first_admissible_one_goes),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
