/*
 * test_attr_orders.c — unit tests of services/attribution/attr_orders.c: conversions
 * credited under every model, late exposures restating, refunds (order, amount left,
 * pending), settings changes restating, candidates that survive pruning, deferred
 * recomputation, the conversion cache (its budget, and what must stay: pinned,
 * unpersisted, guarded, refunds pending; loaded back, the same result), the conversion
 * filter, and restatement with conversions outside the cache. Expectations are computed
 * by hand in the comments.
 */
#include "services/attribution/attr_state.h"

#include <errno.h>

#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_state_fixture.h"
#include "tests/unit/test.h"

/*
 * Viewer v, product p, conversion at T0 of 1000:
 *   A click  T0 - 3 d   (click window 7 d: in)
 *   B click  T0 - 1 d
 *   C view   T0 - 1 h   (engaged, but clicks win)
 *   D click  T0 + 1 s   (after the conversion: out)
 *   E click  other product: out
 */
static attr_conv_t *scenario(attr_state_t *st)
{
    int64_t now = T0 + H_;
    fx_expose(st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - 3 * D_, now);
    fx_expose(st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    fx_expose(st, "c", "v", "C", "p", ATTR_KIND_VIEW, 60000, T0 - H_, now);
    fx_expose(st, "d", "v", "D", "p", ATTR_KIND_CLICK, 0, T0 + S_, now);
    fx_expose(st, "e", "v", "E", "q", ATTR_KIND_CLICK, 0, T0 - H_, now);
    return fx_convert(st, "o1", "v", "p", 1000, T0, now);
}

YW_TEST(conversion_credited_under_every_model)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    YW_CHECK_INT(c->n_cands, ==, 3); /* a, b, c (d is later, e another product) */
    YW_CHECK_INT(c->n_elig, ==, 2);  /* clicks only: a, b */
    YW_CHECK_STR(fx_touch_creator(&st, c, 0), "A");
    YW_CHECK_STR(fx_touch_creator(&st, c, 1), "B");
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_LAST_TOUCH, 1), ==, 1000);
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_FIRST_TOUCH, 0), ==, 1000);
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_LINEAR, 0), ==, 500);
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_POSITION_BASED, 1), ==, 500);
    /* Time decay, half-life 7 d, touches 2 d apart: weights 2^(-2/7) : 1 =
     * 0.820335 : 1 -> 1000 x 0.450650 = 450.65 and 549.35 -> 450 and 549 + the unit
     * to the larger remainder (.65) -> 451, 549. */
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_TIME_DECAY, 0), ==, 451);
    YW_CHECK_INT(fx_touch_minor(c, ATTR_MODEL_TIME_DECAY, 1), ==, 549);
    /* Rollups follow. */
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "C", ATTR_MODEL_LINEAR), ==, 0);
    YW_CHECK_INT(fx_creator_credit(&st, "A", ATTR_MODEL_LINEAR), ==, ATTR_CREDIT_ONE / 2);
    YW_CHECK_INT(fx_creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
    attr_sum_t n, g;
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_INT(n, ==, 0);
    /* Found by order id; its candidates wait to be persisted. */
    YW_CHECK(attr_conv_find(&st, "o1", 2) == c);
    YW_CHECK(attr_conv_find(&st, "o2", 2) == NULL);
    attr_conv_t **list;
    size_t np;
    YW_CHECK_INT(attr_state_take_persist(&st, &list, &np), ==, 0);
    YW_CHECK_INT(np, ==, 1);
    YW_CHECK(list[0] == c);
    attr_state_mark_persisted(c, c->n_cands);
    free(list);
    YW_CHECK_INT(c->cands[2].persisted, ==, 1);
    attr_state_free(&st);
}

YW_TEST(late_exposure_restates_the_conversion)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    /* The order first: no touch yet, unattributed. */
    attr_conv_t *c = fx_convert(&st, "o1", "v", "p", 1000, T0, now);
    attr_sum_t n, g;
    attr_state_unattributed(&st, DAY0, DAY0 + 1, &n, &g);
    YW_CHECK_INT(n, ==, 1);
    YW_CHECK_INT(g, ==, 1000);
    YW_CHECK_INT(c->n_elig, ==, 0);
    /* An impression arrives late: attributed to it. */
    fx_expose(&st, "i1", "v", "X", "p", ATTR_KIND_IMPRESSION, 0, T0 - H_, now);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(fx_creator_gmv(&st, "X", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    attr_state_unattributed(&st, DAY0, DAY0 + 1, &n, &g);
    YW_CHECK_INT(n, ==, 0);
    YW_CHECK_INT(g, ==, 0);
    /* Then a click, later still: clicks win, X loses everything to Y. */
    fx_expose(&st, "k1", "v", "Y", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_STR(fx_touch_creator(&st, c, 0), "Y");
    YW_CHECK_INT(fx_creator_gmv(&st, "X", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "Y", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* An exposure after the order does not touch it. */
    fx_expose(&st, "k2", "v", "Z", "p", ATTR_KIND_CLICK, 0, T0 + 1, now);
    YW_CHECK_INT(c->n_cands, ==, 2);
    attr_state_free(&st);
}

YW_TEST(refunds_reduce_the_net_and_are_checked)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    attr_refund_t *r = NULL;
    int64_t left = -1;
    YW_CHECK_INT(attr_refund_admit(&st, "r1", 2, "o1", 2, 300, T0 + H_, &r, &left), ==,
                 ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(attr_conv_net(c), ==, 700);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 700);
    /* linear 700: 350 / 350 */
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LINEAR), ==, 350);
    /* Credits do not change with money. */
    YW_CHECK_INT(fx_creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
    /* Committed refunds are the database's to know (the service asks it); a pending one
     * with the same id is a duplicate. */
    attr_refund_t *rp = NULL;
    YW_CHECK_INT(attr_refund_admit(&st, "rp", 2, "o1", 2, 1, T0, &rp, &left), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_admit(&st, "rp", 2, "o1", 2, 1, T0, &r, &left), ==, ATTR_DUPLICATE);
    attr_refund_abort(&st, rp);
    YW_CHECK_INT(attr_refund_admit(&st, "r2", 2, "nope", 4, 1, T0, &r, &left), ==,
                 ATTR_UNKNOWN_ORDER);
    YW_CHECK_INT(attr_refund_admit(&st, "r2", 2, "o1", 2, 701, T0, &r, &left), ==, ATTR_TOO_LARGE);
    YW_CHECK_INT(left, ==, 700);
    /* A pending refund counts against what is left. */
    attr_refund_t *r2 = NULL, *r3 = NULL;
    YW_CHECK_INT(attr_refund_admit(&st, "r2", 2, "o1", 2, 500, T0, &r2, &left), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_admit(&st, "r3", 2, "o1", 2, 300, T0, &r3, &left), ==, ATTR_TOO_LARGE);
    YW_CHECK_INT(left, ==, 200);
    /* If r2 never becomes durable, its amount is free again. */
    attr_refund_abort(&st, r2);
    YW_CHECK_INT(attr_refund_admit(&st, "r3", 2, "o1", 2, 700, T0, &r3, &left), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(&st, r3), ==, 0);
    YW_CHECK_INT(attr_conv_net(c), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(fx_creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
    attr_state_free(&st);
}

YW_TEST(many_refunds_admitted_before_any_commit)
{
    /* Regression: room in the refund list was reserved for one more than committed, so
     * a batch of 17+ refunds admitted before its commit overflowed the heap. */
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    attr_refund_t *r[40];
    int64_t left = -1;
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        YW_CHECK_INT(attr_refund_admit(&st, id, strlen(id), "o1", 2, 10, T0, &r[i], &left), ==,
                     ATTR_ADMITTED);
    }
    for (int i = 0; i < 40; i++) {
        YW_CHECK_INT(attr_refund_commit(&st, r[i]), ==, 0);
    }
    YW_CHECK_INT(attr_conv_net(c), ==, 600);
    attr_state_free(&st);
}

YW_TEST(settings_change_restates_every_result)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    attr_settings_t s = st.settings;
    s.click_window_ns = 2 * D_; /* A's click (3 days before) falls out */
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(c->settings_version, ==, 2);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    /* Clicks window so short none is left: the engaged view of C wins. */
    s.click_window_ns = 60 * S_;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_STR(fx_touch_creator(&st, c, 0), "C");
    YW_CHECK_INT(fx_creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 0);
    /* engaged_view_ms above C's watch time: C is only an impression, still the only
     * candidate left, so it keeps the credit. */
    s.engaged_view_ms = 120000;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* Back to the defaults: as at first. */
    attr_settings_default(&s);
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 0);
    attr_state_free(&st);
}

YW_TEST(candidates_survive_pruning_for_restatement)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    /* Everything in memory is pruned, yet a refund restates from the candidates kept
     * with the conversion. */
    YW_CHECK_INT(c->n_cands, ==, 3);
    attr_refund_t *r;
    int64_t left;
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o1", 2, 100, T0, &r, &left), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 900);
    attr_state_free(&st);
}

YW_TEST(deferred_mode_recomputes_once_at_flush)
{
    attr_state_t st;
    attr_state_init(&st);
    st.defer = 1;
    int64_t now = T0 + H_;
    attr_conv_t *c = fx_convert(&st, "o1", "v", "p", 1000, T0, now);
    fx_expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    YW_CHECK_INT(c->applied, ==, 0);
    YW_CHECK_INT(attr_state_flush(&st), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* A persisted candidate added at load time. */
    YW_CHECK_INT(attr_conv_add_cand(&st, c, "b", "B", 1, "n", 1, ATTR_KIND_CLICK, 0, T0 - 10, 1),
                 ==, 0);
    YW_CHECK_INT(attr_state_flush(&st), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    attr_state_free(&st);
}

YW_TEST(the_conversion_cache_keeps_its_budget_and_what_must_stay)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    attr_state_set_cache_budget(&st, 20 * 1024);
    char order[32], viewer[32];
    attr_conv_t *first = NULL;
    for (int i = 0; i < 200; i++) {
        snprintf(viewer, sizeof viewer, "v%d", i % 7);
        snprintf(order, sizeof order, "o-%d", i);
        fx_expose(&st, order, viewer, "A", "p", ATTR_KIND_CLICK, 0, T0 - D_ + i, now);
        attr_conv_t *c = fx_convert(&st, order, viewer, "p", 100, T0, now);
        if (i == 0) {
            first = c;
        }
    }
    /* Nothing may leave yet: every conversion's touches wait to be persisted. */
    YW_CHECK_INT(attr_state_evict(&st), ==, 0);
    YW_CHECK_INT(st.n_cached, ==, 200);
    attr_conv_t **list;
    size_t n;
    YW_CHECK_INT(attr_state_take_persist(&st, &list, &n), ==, 0);
    YW_CHECK_INT(n, ==, 200);
    for (size_t i = 0; i < n; i++) {
        attr_state_mark_persisted(list[i], list[i]->n_cands);
    }
    free(list);
    /* The oldest is pinned; those committed since the guard must stay too. */
    attr_conv_pin(first);
    st.evict_guard = st.next_commit_seq - 10;
    YW_CHECK(attr_state_evict(&st) > 0);
    /* Within budget, or only what must stay is left. */
    size_t evictable = 0;
    for (attr_conv_t *x = st.lru_head; x != NULL; x = x->lru_next) {
        evictable += (size_t)attr_conv_evictable(&st, x);
    }
    YW_CHECK(st.cache_bytes <= 20 * 1024 || evictable == 0);
    YW_CHECK(st.n_cached < 200);
    YW_CHECK(attr_conv_find(&st, "o-0", 3) == first);
    YW_CHECK(attr_conv_find(&st, "o-199", 5) != NULL);
    YW_CHECK(attr_conv_find(&st, "o-1", 3) == NULL);
    /* Reports keep every credit: 200 orders of 100, each to A. */
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 20000);
    /* A refund needs its conversion in memory; loaded back, it restates exactly. */
    attr_refund_t *r;
    int64_t left;
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-1", 3, 40, T0, &r, &left), ==,
                 ATTR_UNKNOWN_ORDER);
    attr_conv_in_t in = {.order_id = "o-1",
                         .order_id_len = 3,
                         .viewer_id = "v1",
                         .viewer_len = 2,
                         .product_id = "p",
                         .product_len = 1,
                         .quantity = 1,
                         .amount_minor = 100,
                         .occur_ns = T0};
    attr_conv_t *c = NULL;
    YW_CHECK_INT(attr_conv_load(&st, &in, 0, &c), ==, 0);
    /* The touches as stored (o-1's exposure "o-1" of A, and o-8's, o-15's, ... of v1 that
     * are at or before it: the same viewer, product and time). */
    for (int i = 1; i < 200; i += 7) {
        snprintf(order, sizeof order, "o-%d", i);
        YW_CHECK_INT(attr_conv_add_cand(&st, c, order, "A", 1, "note", 4, ATTR_KIND_CLICK, 0,
                                        T0 - D_ + i, 1),
                     ==, 0);
    }
    YW_CHECK_INT(attr_conv_loaded(&st, c, 0), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 20000); /* unchanged */
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-1", 3, 40, T0, &r, &left), ==, ATTR_ADMITTED);
    YW_CHECK(!attr_conv_evictable(&st, c)); /* a refund of it is pending */
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(fx_creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 19960);
    attr_conv_unpin(first);
    attr_state_free(&st);
}

YW_TEST(a_late_exposure_finds_conversions_through_the_filter_and_the_cache)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    attr_conv_t *c = fx_convert(&st, "o1", "v", "p", 1000, T0, now);
    uint64_t vp = c->vp_hash;
    /* In the filter from T0 on: an exposure before it may join, one after it cannot. */
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp, T0 - D_), ==, 1);
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp, T0 + 1), ==, 0);
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp ^ 1, T0 - D_), ==, 0);
    /* A pending exposure asks per product. */
    const char *prods[2] = {"p", "q"};
    attr_exposure_in_t in = fx_exposure_in("x", "v", "C", prods, 2, ATTR_KIND_CLICK, T0 - H_);
    uint64_t seq;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, now, &seq, NULL), ==, ATTR_ADMITTED);
    uint8_t maybe[2];
    YW_CHECK_INT(attr_exposure_conv_maybe(&st, seq, now, maybe), ==, 1);
    YW_CHECK_INT(maybe[0], ==, 1);
    YW_CHECK_INT(maybe[1], ==, 0);
    YW_CHECK_INT(attr_exposure_commit(&st, seq, now), ==, 1);
    YW_CHECK_INT(c->n_cands, ==, 1);
    /* The filter forgets conversions past the horizon (not the newest filter): fill the
     * first one with conversions of T0, then one of 20 days later starts another. */
    for (int i = 1; i < (1 << 16); i++) {
        YW_CHECK_INT(attr_state_conv_filter_add(&st, (uint64_t)i * 7919, T0), ==, 0);
    }
    YW_CHECK_INT(attr_state_conv_filter_add(&st, 12345, T0 + 20 * D_), ==, 0);
    YW_CHECK_INT(st.n_cfilters, ==, 2);
    attr_state_conv_filter_prune(&st, T0 + 20 * D_);
    YW_CHECK_INT(st.n_cfilters, ==, 1);
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp, T0 - D_), ==, 0);
    attr_state_free(&st);
}

static void count_diff(void *arg, const char *creator, size_t len, int32_t day, const char *what,
                       int64_t got, int64_t want)
{
    (void)creator, (void)len, (void)day, (void)what, (void)got, (void)want;
    ++*(int *)arg;
}

YW_TEST(restating_with_conversions_outside_the_cache)
{
    /* One state with everything cached, restated in place; another where one conversion
     * left memory and is restated from "the database" (a state of its own): the same
     * rollups. */
    attr_state_t all, part, out;
    attr_state_init(&all);
    attr_state_init(&part);
    scenario(&all);
    attr_conv_t *gone = scenario(&part);
    int64_t now = T0 + H_;
    attr_conv_t *kept = fx_convert(&part, "o2", "v", "p", 500, T0, now);
    fx_convert(&all, "o2", "v", "p", 500, T0, now);
    (void)kept;
    attr_settings_t s = all.settings;
    s.click_window_ns = 2 * D_;
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&all, &s), ==, 0);
    /* part: o1 is "stored only"; its credits under s come from a state of their own. */
    attr_state_init(&out);
    out.settings = s;
    attr_settings_rules(&s, &out.rules);
    attr_conv_in_t in = {.order_id = "o1",
                         .order_id_len = 2,
                         .viewer_id = "v",
                         .viewer_len = 1,
                         .product_id = "p",
                         .product_len = 1,
                         .quantity = 1,
                         .amount_minor = 1000,
                         .occur_ns = T0};
    attr_conv_t *x = attr_conv_new(&in, 0);
    YW_CHECK(x != NULL);
    for (uint32_t i = 0; i < gone->n_cands; i++) {
        const attr_cand_t *t = &gone->cands[i];
        const char *cr = attr_intern_str(&part.creators, t->creator, NULL);
        YW_CHECK_INT(attr_conv_add_cand(&out, x, t->event_id, cr, strlen(cr), attr_cand_note(t),
                                        strlen(attr_cand_note(t)), t->kind, t->watch_ms,
                                        t->occur_ns, 1),
                     ==, 0);
    }
    YW_CHECK_INT(attr_conv_apply(&out, x), ==, 0);
    attr_conv_free(x);
    /* o1 leaves part's memory (as if evicted: its credits stay in the rollups). */
    attr_conv_t **list;
    size_t n;
    YW_CHECK_INT(attr_state_take_persist(&part, &list, &n), ==, 0);
    for (size_t i = 0; i < n; i++) {
        attr_state_mark_persisted(list[i], list[i]->n_cands);
    }
    free(list);
    attr_state_set_cache_budget(&part, 1);
    part.evict_guard = kept->commit_seq;
    YW_CHECK_INT(attr_state_evict(&part), ==, 1);
    YW_CHECK(attr_conv_find(&part, "o1", 2) == NULL);
    YW_CHECK_INT(attr_state_replace_credits(&part, &out, &s), ==, 0);
    const char *names[] = {"A", "B", "C"};
    for (int m = 1; m <= ATTR_N_MODELS; m++) {
        for (int i = 0; i < 3; i++) {
            YW_CHECK_INT(fx_creator_gmv(&part, names[i], m), ==, fx_creator_gmv(&all, names[i], m));
            YW_CHECK_INT(fx_creator_credit(&part, names[i], m), ==,
                         fx_creator_credit(&all, names[i], m));
        }
    }
    YW_CHECK_INT(part.settings.version, ==, 2);
    /* The audit agrees (and changes nothing); against a "database" that lacks o1, it
     * finds o1's credits: A, B and C's cells of its day differ. */
    int diffs = 0;
    YW_CHECK_INT(attr_state_audit(&part, &out, count_diff, &diffs), ==, 0);
    YW_CHECK_INT(diffs, ==, 0);
    attr_state_t none;
    attr_state_init(&none);
    YW_CHECK(attr_state_audit(&part, &none, count_diff, &diffs) > 0);
    YW_CHECK(diffs > 0);
    attr_state_free(&none);
    YW_CHECK_INT(attr_state_audit(&part, &out, count_diff, &diffs), ==, 0);
    for (int m = 1; m <= ATTR_N_MODELS; m++) {
        for (int i = 0; i < 3; i++) {
            YW_CHECK_INT(fx_creator_credit(&part, names[i], m), ==,
                         fx_creator_credit(&all, names[i], m));
        }
    }
    attr_state_free(&out);
    attr_state_free(&part);
    attr_state_free(&all);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(conversion_credited_under_every_model),
        YW_TEST_ENTRY(late_exposure_restates_the_conversion),
        YW_TEST_ENTRY(refunds_reduce_the_net_and_are_checked),
        YW_TEST_ENTRY(many_refunds_admitted_before_any_commit),
        YW_TEST_ENTRY(settings_change_restates_every_result),
        YW_TEST_ENTRY(candidates_survive_pruning_for_restatement),
        YW_TEST_ENTRY(deferred_mode_recomputes_once_at_flush),
        YW_TEST_ENTRY(the_conversion_cache_keeps_its_budget_and_what_must_stay),
        YW_TEST_ENTRY(a_late_exposure_finds_conversions_through_the_filter_and_the_cache),
        YW_TEST_ENTRY(restating_with_conversions_outside_the_cache),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
