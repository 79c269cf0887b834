/*
 * test_attr_gate.c — unit tests of services/attribution/attr_gate.c, the restatement
 * gate: while it is closed (a restatement, an audit, or both), work given to
 * attr__gate() waits and nothing leaves the cache; once the last holder opens it, what
 * waited runs in the order it came, then eviction may run again. Held work that closes
 * the gate again stops the draining, and the rest runs, still in order, at the next open.
 */
#include "services/attribution/attr_service_int.h"

#include <stdlib.h>
#include <string.h>

#include "tests/unit/test.h"

/* A piece of held work: it records the order in which it ran. */
typedef struct {
    attr_held_t held;
    int id;
    int close_again; /* closes the gate when it runs (a restatement begun by held work) */
} item_t;

static attr_svc_t *g_svc;
static int g_ran[16];
static int g_n_ran;

static void run(attr_held_t *h)
{
    item_t *it = (item_t *)h;
    g_ran[g_n_ran++] = it->id;
    if (it->close_again) {
        attr__gate_close(g_svc);
    }
}

/* A service with nothing open: no exposure store, no cache budget (nothing to evict). */
static attr_svc_t *svc_new(void)
{
    attr_svc_t *svc = calloc(1, sizeof *svc);
    YW_CHECK(svc != NULL);
    attr_state_init(&svc->st);
    g_svc = svc;
    g_n_ran = 0;
    return svc;
}

static void svc_free(attr_svc_t *svc)
{
    attr_state_free(&svc->st);
    free(svc);
}

YW_TEST(an_open_gate_runs_work_at_once)
{
    attr_svc_t *svc = svc_new();
    item_t a = {.id = 1};
    attr__gate(svc, &a.held, run);
    YW_CHECK_INT(g_n_ran, ==, 1);
    YW_CHECK_INT(g_ran[0], ==, 1);
    YW_CHECK(svc->held_head == NULL);
    svc_free(svc);
}

YW_TEST(a_closed_gate_holds_work_and_runs_it_in_order_when_opened)
{
    attr_svc_t *svc = svc_new();
    item_t it[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    attr__gate_close(svc);
    YW_CHECK_INT(svc->st.evict_hold, ==, 1);
    for (int i = 0; i < 3; i++) {
        attr__gate(svc, &it[i].held, run);
    }
    YW_CHECK_INT(g_n_ran, ==, 0);
    attr__gate_open(svc);
    YW_CHECK_INT(g_n_ran, ==, 3);
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(g_ran[i], ==, i + 1);
    }
    YW_CHECK_INT(svc->restating, ==, 0);
    YW_CHECK_INT(svc->st.evict_hold, ==, 0);
    YW_CHECK(svc->held_head == NULL && svc->held_tail == NULL);
    svc_free(svc);
}

YW_TEST(the_gate_opens_only_when_the_last_holder_opens_it)
{
    attr_svc_t *svc = svc_new();
    item_t a = {.id = 1};
    attr__gate_close(svc); /* a restatement */
    attr__gate_close(svc); /* an audit */
    attr__gate(svc, &a.held, run);
    attr__gate_open(svc);
    YW_CHECK_INT(g_n_ran, ==, 0);
    YW_CHECK_INT(svc->st.evict_hold, ==, 1);
    attr__gate_open(svc);
    YW_CHECK_INT(g_n_ran, ==, 1);
    YW_CHECK_INT(svc->st.evict_hold, ==, 0);
    svc_free(svc);
}

YW_TEST(held_work_that_closes_the_gate_keeps_the_rest_waiting_in_order)
{
    attr_svc_t *svc = svc_new();
    item_t it[4] = {{.id = 1}, {.id = 2, .close_again = 1}, {.id = 3}, {.id = 4}};
    attr__gate_close(svc);
    for (int i = 0; i < 4; i++) {
        attr__gate(svc, &it[i].held, run);
    }
    attr__gate_open(svc);
    YW_CHECK_INT(g_n_ran, ==, 2);
    YW_CHECK_INT(svc->restating, ==, 1);
    YW_CHECK_INT(svc->st.evict_hold, ==, 1); /* nothing leaves memory yet */
    item_t late = {.id = 5};
    attr__gate(svc, &late.held, run); /* comes after what still waits */
    attr__gate_open(svc);
    YW_CHECK_INT(g_n_ran, ==, 5);
    for (int i = 0; i < 5; i++) {
        YW_CHECK_INT(g_ran[i], ==, i + 1);
    }
    YW_CHECK_INT(svc->st.evict_hold, ==, 0);
    svc_free(svc);
}

YW_TEST(opening_an_open_gate_changes_nothing)
{
    attr_svc_t *svc = svc_new();
    attr__gate_open(svc);
    YW_CHECK_INT(svc->restating, ==, 0);
    item_t a = {.id = 1};
    attr__gate(svc, &a.held, run);
    YW_CHECK_INT(g_n_ran, ==, 1);
    svc_free(svc);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(an_open_gate_runs_work_at_once),
        YW_TEST_ENTRY(a_closed_gate_holds_work_and_runs_it_in_order_when_opened),
        YW_TEST_ENTRY(the_gate_opens_only_when_the_last_holder_opens_it),
        YW_TEST_ENTRY(held_work_that_closes_the_gate_keeps_the_rest_waiting_in_order),
        YW_TEST_ENTRY(opening_an_open_gate_changes_nothing),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
