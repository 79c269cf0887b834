/*
 * test_attr_countdown.c — attr_countdown.c: the module is freed and its owner told only
 * after the last part has closed, whatever the order; a part that closes at once does not
 * free it midway; a module with no part closes at once.
 */
#include "services/attribution/attr_countdown.h"

#include "tests/unit/test.h"

/** A module of parts, as attr_runs_t or the exposure store is. */
typedef struct {
    attr_countdown_t parts;
    int *freed; /* set when freed: the test outlives the module */
} module_t;

static int closed_calls;
static int freed_before_closed;

static void module_free(void *arg)
{
    module_t *m = arg;
    (*m->freed)++;
    free(m);
}

static void on_closed(void *arg)
{
    int *freed = arg;
    closed_calls++;
    freed_before_closed = *freed;
}

static module_t *module_new(int *freed, int n_parts)
{
    module_t *m = calloc(1, sizeof *m);
    YW_CHECK(m != NULL);
    m->freed = freed;
    YW_CHECK(!attr_countdown_any(&m->parts));
    for (int i = 0; i < n_parts; i++) {
        attr_countdown_add(&m->parts);
    }
    YW_CHECK(attr_countdown_any(&m->parts) == (n_parts > 0));
    return m;
}

YW_TEST(freed_after_the_last_part)
{
    int freed = 0;
    closed_calls = 0;
    module_t *m = module_new(&freed, 3);
    attr_countdown_t *c = &m->parts;
    attr_countdown_start(c, module_free, m, on_closed, &freed);
    attr_countdown_part_closed(c); /* a part that closed inside the close */
    attr_countdown_part_closed(c); /* the close gives its own count back */
    YW_CHECK_INT(freed, ==, 0);
    YW_CHECK_INT(closed_calls, ==, 0);
    attr_countdown_part_closed(c); /* two parts call back on later loop turns */
    YW_CHECK_INT(freed, ==, 0);
    attr_countdown_part_closed(c);
    YW_CHECK_INT(freed, ==, 1);
    YW_CHECK_INT(closed_calls, ==, 1);
    YW_CHECK_INT(freed_before_closed, ==, 1);
}

YW_TEST(parts_closing_at_once_do_not_free_midway)
{
    int freed = 0;
    closed_calls = 0;
    module_t *m = module_new(&freed, 2);
    attr_countdown_start(&m->parts, module_free, m, on_closed, &freed);
    /* Both parts call back inside their close, before the close is done. */
    attr_countdown_part_closed(&m->parts);
    attr_countdown_part_closed(&m->parts);
    YW_CHECK_INT(freed, ==, 0);
    attr_countdown_part_closed(&m->parts);
    YW_CHECK_INT(freed, ==, 1);
    YW_CHECK_INT(closed_calls, ==, 1);
}

YW_TEST(no_part_closes_at_once)
{
    int freed = 0;
    closed_calls = 0;
    module_t *m = module_new(&freed, 0);
    attr_countdown_start(&m->parts, module_free, m, NULL, NULL);
    attr_countdown_part_closed(&m->parts);
    YW_CHECK_INT(freed, ==, 1);
    YW_CHECK_INT(closed_calls, ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(freed_after_the_last_part),
        YW_TEST_ENTRY(parts_closing_at_once_do_not_free_midway),
        YW_TEST_ENTRY(no_part_closes_at_once),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
