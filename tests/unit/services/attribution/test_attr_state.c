/*
 * test_attr_state.c — unit tests of services/attribution/attr_state.c: dedup (within a
 * batch, across batches, after an abort), rollups per creator and day, conversions
 * credited under every model, late exposures restating, refunds (order, amount left,
 * pending), settings changes restating, the join horizon and pruning; what keeps memory
 * bounded: 16-byte rollup cells (wide figures past 32 bits, single-touch credits apart
 * from split ones), the conversion cache (its budget, and what must stay: pinned,
 * unpersisted, guarded, refunds pending; loaded back, the same result), the conversion
 * filter, restatement with conversions outside the cache and the rollup audit. Expectations are computed by
 * hand in the comments.
 */
#include "services/attribution/attr_state.h"

#include <errno.h>

#include "services/attribution/attr_validate.h"

#include "tests/unit/test.h"

#define S_ ATTR_NS_PER_S
#define H_ (3600 * S_)
#define D_ ATTR_NS_PER_DAY
#define DAY0 20000
#define T0 ((int64_t)DAY0 * D_ + 12 * H_) /* noon UTC of day 20000 */

static uint64_t expose(attr_state_t *st, const char *id, const char *viewer, const char *creator,
                       const char *product, int kind, int64_t watch_ms, int64_t at, int64_t now)
{
    const char *prods[2] = {product, "other-product"};
    attr_exposure_in_t in = {
        .event_id = id,
        .event_id_len = strlen(id),
        .viewer_id = viewer,
        .viewer_len = strlen(viewer),
        .creator_id = creator,
        .creator_len = strlen(creator),
        .note_id = "note",
        .note_len = 4,
        .product_ids = prods,
        .n_products = 2,
        .kind = kind,
        .watch_ms = watch_ms,
        .occur_ns = at,
    };
    uint64_t seq = 0;
    YW_CHECK_INT(attr_exposure_admit(st, &in, now, &seq, NULL), ==, ATTR_ADMITTED);
    YW_CHECK(attr_exposure_commit(st, seq, now) >= 0);
    return seq;
}

static attr_conv_t *convert(attr_state_t *st, const char *order, const char *viewer,
                            const char *product, int64_t amount, int64_t at, int64_t now)
{
    attr_conversion_in_t in = {
        .order_id = order,
        .order_id_len = strlen(order),
        .viewer_id = viewer,
        .viewer_len = strlen(viewer),
        .product_id = product,
        .product_len = strlen(product),
        .quantity = 1,
        .amount_minor = amount,
        .occur_ns = at,
    };
    attr_conv_t *c = NULL;
    YW_CHECK_INT(attr_conversion_admit(st, &in, &c), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_conversion_commit(st, c, now), ==, 0);
    return c;
}

static int64_t creator_gmv(attr_state_t *st, const char *creator, int model)
{
    int64_t id = attr_intern_find(&st->creators, creator, strlen(creator));
    if (id < 0) {
        return 0;
    }
    attr_sums_t s;
    attr_state_creator_sums(st, (uint32_t)id, DAY0 - 30, DAY0 + 30, model, &s);
    return s.gmv;
}

static int64_t creator_credit(attr_state_t *st, const char *creator, int model)
{
    int64_t id = attr_intern_find(&st->creators, creator, strlen(creator));
    attr_sums_t s;
    attr_state_creator_sums(st, (uint32_t)id, DAY0 - 30, DAY0 + 30, model, &s);
    return s.credit;
}

/* The touch `i` of conversion c under model m: its creator name and minor units. */
static const char *touch_creator(attr_state_t *st, const attr_conv_t *c, uint32_t i)
{
    return attr_intern_str(&st->creators, c->cands[c->elig[i]].creator, NULL);
}

static int64_t touch_minor(const attr_conv_t *c, int model, uint32_t i)
{
    return c->minor[(model - 1) * c->n_elig + i];
}

YW_TEST(duplicates_within_and_across_batches)
{
    attr_state_t st;
    attr_state_init(&st);
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = {
        .event_id = "e1",
        .event_id_len = 2,
        .viewer_id = "v",
        .viewer_len = 1,
        .creator_id = "c",
        .creator_len = 1,
        .note_id = "",
        .note_len = 0,
        .product_ids = prods,
        .n_products = 1,
        .kind = ATTR_KIND_CLICK,
        .occur_ns = T0,
    };
    uint64_t s1, s2;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &s1, NULL), ==, ATTR_ADMITTED);
    /* Still pending (same batch, or a batch in flight): already a duplicate. */
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &s2, NULL), ==, ATTR_DUPLICATE);
    YW_CHECK_INT(attr_exposure_commit(&st, s1, T0), ==, 1);
    /* Other fields differ: still a duplicate. */
    in.kind = ATTR_KIND_VIEW;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &s2, NULL), ==, ATTR_DUPLICATE);
    /* An aborted (never durable) id may come again. */
    in.event_id = "e2";
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &s2, NULL), ==, ATTR_ADMITTED);
    attr_exposure_abort(&st, s2);
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &s2, NULL), ==, ATTR_ADMITTED);
    attr_exposure_abort(&st, s2);
    YW_CHECK_INT(st.exposures_live, ==, 1);
    attr_state_free(&st);
}

YW_TEST(exposure_rollups_per_creator_and_day)
{
    attr_state_t st;
    attr_state_init(&st);
    expose(&st, "e1", "v1", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0, T0);
    expose(&st, "e2", "v2", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0 + H_, T0 + H_);
    expose(&st, "e3", "v1", "alice", "p", ATTR_KIND_VIEW, 3000, T0, T0);
    expose(&st, "e4", "v1", "alice", "p", ATTR_KIND_CLICK, 0, T0, T0);
    expose(&st, "e5", "v1", "alice", "p", ATTR_KIND_IMPRESSION, 0, T0 - D_, T0);
    expose(&st, "e6", "v1", "bob", "p", ATTR_KIND_IMPRESSION, 0, T0, T0);
    uint32_t alice = (uint32_t)attr_intern_find(&st.creators, "alice", 5);
    attr_sums_t s;
    attr_state_creator_sums(&st, alice, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 2); /* e1, e2 (e5 is the day before) */
    YW_CHECK_INT(s.views, ==, 1);       /* a short view is still a VIEW in reports */
    YW_CHECK_INT(s.clicks, ==, 1);
    attr_state_creator_sums(&st, alice, DAY0 - 1, DAY0, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 1);
    attr_state_creator_sums(&st, alice, DAY0 - 1, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 3);
    /* Rollups of a pruned segment add up with what is in memory. */
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 10, 20, 30), ==, 0);
    attr_state_creator_sums(&st, alice, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, 12);
    YW_CHECK_INT(s.views, ==, 21);
    YW_CHECK_INT(s.clicks, ==, 31);
    attr_state_free(&st);
}

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
    expose(st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - 3 * D_, now);
    expose(st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    expose(st, "c", "v", "C", "p", ATTR_KIND_VIEW, 60000, T0 - H_, now);
    expose(st, "d", "v", "D", "p", ATTR_KIND_CLICK, 0, T0 + S_, now);
    expose(st, "e", "v", "E", "q", ATTR_KIND_CLICK, 0, T0 - H_, now);
    return convert(st, "o1", "v", "p", 1000, T0, now);
}

YW_TEST(conversion_credited_under_every_model)
{
    attr_state_t st;
    attr_state_init(&st);
    attr_conv_t *c = scenario(&st);
    YW_CHECK_INT(c->n_cands, ==, 3); /* a, b, c (d is later, e another product) */
    YW_CHECK_INT(c->n_elig, ==, 2);  /* clicks only: a, b */
    YW_CHECK_STR(touch_creator(&st, c, 0), "A");
    YW_CHECK_STR(touch_creator(&st, c, 1), "B");
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_LAST_TOUCH, 1), ==, 1000);
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_FIRST_TOUCH, 0), ==, 1000);
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_LINEAR, 0), ==, 500);
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_POSITION_BASED, 1), ==, 500);
    /* Time decay, half-life 7 d, touches 2 d apart: weights 2^(-2/7) : 1 =
     * 0.820335 : 1 -> 1000 x 0.450650 = 450.65 and 549.35 -> 450 and 549 + the unit
     * to the larger remainder (.65) -> 451, 549. */
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_TIME_DECAY, 0), ==, 451);
    YW_CHECK_INT(touch_minor(c, ATTR_MODEL_TIME_DECAY, 1), ==, 549);
    /* Rollups follow. */
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "C", ATTR_MODEL_LINEAR), ==, 0);
    YW_CHECK_INT(creator_credit(&st, "A", ATTR_MODEL_LINEAR), ==, ATTR_CREDIT_ONE / 2);
    YW_CHECK_INT(creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
    attr_sum_t n, g;
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_INT(n, ==, 0);
    /* Found by order id; its candidates wait to be persisted. */
    YW_CHECK(attr_conversion_find(&st, "o1", 2) == c);
    YW_CHECK(attr_conversion_find(&st, "o2", 2) == NULL);
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
    attr_conv_t *c = convert(&st, "o1", "v", "p", 1000, T0, now);
    attr_sum_t n, g;
    attr_state_unattributed(&st, DAY0, DAY0 + 1, &n, &g);
    YW_CHECK_INT(n, ==, 1);
    YW_CHECK_INT(g, ==, 1000);
    YW_CHECK_INT(c->n_elig, ==, 0);
    /* An impression arrives late: attributed to it. */
    expose(&st, "i1", "v", "X", "p", ATTR_KIND_IMPRESSION, 0, T0 - H_, now);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(creator_gmv(&st, "X", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    attr_state_unattributed(&st, DAY0, DAY0 + 1, &n, &g);
    YW_CHECK_INT(n, ==, 0);
    YW_CHECK_INT(g, ==, 0);
    /* Then a click, later still: clicks win, X loses everything to Y. */
    expose(&st, "k1", "v", "Y", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_STR(touch_creator(&st, c, 0), "Y");
    YW_CHECK_INT(creator_gmv(&st, "X", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "Y", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* An exposure after the order does not touch it. */
    expose(&st, "k2", "v", "Z", "p", ATTR_KIND_CLICK, 0, T0 + 1, now);
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
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 700);
    /* linear 700: 350 / 350 */
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LINEAR), ==, 350);
    /* Credits do not change with money. */
    YW_CHECK_INT(creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
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
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 0);
    YW_CHECK_INT(creator_credit(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, ATTR_CREDIT_ONE);
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
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    attr_settings_t s = st.settings;
    s.click_window_ns = 2 * D_; /* A's click (3 days before) falls out */
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(c->settings_version, ==, 2);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    /* Clicks window so short none is left: the engaged view of C wins. */
    s.click_window_ns = 60 * S_;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_STR(touch_creator(&st, c, 0), "C");
    YW_CHECK_INT(creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 0);
    /* engaged_view_ms above C's watch time: C is only an impression, still the only
     * candidate left, so it keeps the credit. */
    s.engaged_view_ms = 120000;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* Back to the defaults: as at first. */
    attr_settings_default(&s);
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "C", ATTR_MODEL_LAST_TOUCH), ==, 0);
    attr_state_free(&st);
}

YW_TEST(exposures_past_the_horizon_count_but_do_not_join)
{
    attr_state_t st;
    attr_state_init(&st);
    /* Horizon: 7 d + 7 d = 14 d. Now is T0 + 20 d; an exposure at T0 is too late. */
    int64_t now = T0 + 20 * D_;
    YW_CHECK(attr_exposure_past_horizon(&st, T0, now));
    YW_CHECK(!attr_exposure_past_horizon(&st, now - 14 * D_, now));
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = {
        .event_id = "old",
        .event_id_len = 3,
        .viewer_id = "v",
        .viewer_len = 1,
        .creator_id = "A",
        .creator_len = 1,
        .note_id = "",
        .note_len = 0,
        .product_ids = prods,
        .n_products = 1,
        .kind = ATTR_KIND_CLICK,
        .occur_ns = T0,
    };
    uint64_t seq;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, now, &seq, NULL), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_exposure_commit(&st, seq, now), ==, 0); /* did not join */
    attr_conv_t *c = convert(&st, "o", "v", "p", 100, T0 + S_, now);
    YW_CHECK_INT(c->n_cands, ==, 0);
    YW_CHECK(attr_conversion_past_horizon(&st, T0 + S_, now));
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "A", 1);
    attr_sums_t s;
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.clicks, ==, 1);
    attr_state_free(&st);
}

YW_TEST(pruning_frees_old_runs_and_their_ids)
{
    attr_state_t st;
    attr_state_init(&st);
    char id[32];
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = {
        .viewer_id = "v",
        .viewer_len = 1,
        .creator_id = "A",
        .creator_len = 1,
        .note_id = "",
        .note_len = 0,
        .product_ids = prods,
        .n_products = 1,
        .kind = ATTR_KIND_IMPRESSION,
    };
    /* One run of old exposures, then a few recent ones in a second run. */
    for (int i = 0; i < ATTR_RUN_EXPOSURES + 5; i++) {
        snprintf(id, sizeof id, "e%d", i);
        in.event_id = id;
        in.event_id_len = strlen(id);
        int64_t at = i < ATTR_RUN_EXPOSURES ? T0 : T0 + 30 * D_;
        in.occur_ns = at;
        uint64_t seq;
        YW_CHECK_INT(attr_exposure_admit(&st, &in, at, &seq, NULL), ==, ATTR_ADMITTED);
        YW_CHECK(attr_exposure_commit(&st, seq, at) >= 0);
    }
    YW_CHECK_INT(st.n_runs, ==, 2);
    YW_CHECK_INT(st.runs[0]->state, ==, ATTR_RUN_CLOSED);
    /* Nothing is past the horizon yet at T0 + 1 d. */
    YW_CHECK_INT(attr_state_prune(&st, T0 + D_, 1000), ==, 0);
    YW_CHECK_INT(attr_state_prune(&st, T0 + 30 * D_, 1u << 20), ==, ATTR_RUN_EXPOSURES);
    YW_CHECK_INT(st.n_runs, ==, 1);
    YW_CHECK_INT(st.exposures_live, ==, 5);
    /* Their ids are forgotten (the dedup horizon), the recent ones are not. */
    in.event_id = "e1";
    in.event_id_len = 2;
    in.occur_ns = T0 + 30 * D_;
    uint64_t seq;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0 + 30 * D_, &seq, NULL), ==, ATTR_ADMITTED);
    attr_exposure_abort(&st, seq);
    snprintf(id, sizeof id, "e%d", ATTR_RUN_EXPOSURES + 1);
    in.event_id = id;
    in.event_id_len = strlen(id);
    YW_CHECK_INT(attr_exposure_admit(&st, &in, T0 + 30 * D_, &seq, NULL), ==, ATTR_DUPLICATE);
    /* Rollups stay. */
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "A", 1);
    attr_sums_t s;
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, ATTR_RUN_EXPOSURES);
    /* The join entries of pruned exposures went with their run: a conversion of the
     * same viewer and product finds the 5 recent ones only. */
    YW_CHECK_INT(st.runs[0]->join_n, ==, 5);
    attr_conv_t *c = convert(&st, "o", "v", "p", 100, T0 + 30 * D_, T0 + 30 * D_);
    YW_CHECK_INT(c->n_cands, ==, 5);
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
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 900);
    attr_state_free(&st);
}

YW_TEST(deferred_mode_recomputes_once_at_flush)
{
    attr_state_t st;
    attr_state_init(&st);
    st.defer = 1;
    int64_t now = T0 + H_;
    attr_conv_t *c = convert(&st, "o1", "v", "p", 1000, T0, now);
    expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    YW_CHECK_INT(c->applied, ==, 0);
    YW_CHECK_INT(attr_state_flush(&st), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 1);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    /* A persisted candidate added at load time. */
    YW_CHECK_INT(
        attr_conversion_add_cand(&st, c, "b", "B", 1, "n", 1, ATTR_KIND_CLICK, 0, T0 - 10, 1), ==,
        0);
    YW_CHECK_INT(attr_state_flush(&st), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    attr_state_free(&st);
}

/* ---- memory: compact rollups, the conversion cache, the conversion filter ---- */

YW_TEST(rollup_figures_past_32_bits_are_kept_whole)
{
    attr_state_t st;
    attr_state_init(&st);
    /* Counts of pruned segments can be anything: past UINT32_MAX they go wide, and back. */
    int64_t big = INT64_C(5000000000);
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, big, 1, 2), ==, 0);
    YW_CHECK_INT(attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 1, (int64_t)UINT32_MAX, 0),
                 ==, 0);
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "alice", 5);
    attr_sums_t s;
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.impressions, ==, big + 1);
    YW_CHECK_INT(s.views, ==, (int64_t)UINT32_MAX + 1);
    YW_CHECK_INT(s.clicks, ==, 2);
    YW_CHECK_INT(st.n_wide, ==, 2);
    /* Committed exposures cross the 32 bits too: clicks from UINT32_MAX - 3 on. */
    YW_CHECK_INT(
        attr_state_add_exposure_rollup(&st, "alice", 5, DAY0, 0, 0, (int64_t)UINT32_MAX - 5), ==,
        0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        expose(&st, id, "v", "alice", "p", ATTR_KIND_CLICK, 0, T0, T0);
    }
    attr_state_creator_sums(&st, a, DAY0, DAY0 + 1, ATTR_MODEL_LAST_TOUCH, &s);
    YW_CHECK_INT(s.clicks, ==, (int64_t)UINT32_MAX + 1);
    YW_CHECK_INT(st.n_wide, ==, 3);
    /* A 16-byte cell per creator and day. */
    YW_CHECK_INT(sizeof(attr_day_t), ==, 16);
    YW_CHECK_INT(sizeof(attr_cday_t), ==, 16);
    attr_state_free(&st);
}

static attr_sums_t sums_of(attr_state_t *st, const char *creator, int model)
{
    attr_sums_t s;
    memset(&s, 0, sizeof s);
    int64_t id = attr_intern_find(&st->creators, creator, strlen(creator));
    if (id >= 0) {
        attr_state_creator_sums(st, (uint32_t)id, DAY0 - 30, DAY0 + 30, model, &s);
    }
    return s;
}

/* Orders at the largest amount allowed, 10^15: 9,224 of them pass int64. */
#define BIG_N 9300
#define BIG ((attr_sum_t)BIG_N * ATTR_AMOUNT_MAX)

YW_TEST(credit_sums_past_int64_are_exact)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    /* A alone on (v1, p1); A then B on (v2, p2): split, last touch B, first touch A;
     * nobody on (v9, p9). BIG_N orders of each. */
    expose(&st, "a1", "v1", "A", "p1", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    expose(&st, "a2", "v2", "A", "p2", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    expose(&st, "b2", "v2", "B", "p2", ATTR_KIND_CLICK, 0, T0 - D_, now);
    for (int i = 0; i < BIG_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "one-%d", i);
        convert(&st, id, "v1", "p1", ATTR_AMOUNT_MAX, T0, now);
        snprintf(id, sizeof id, "split-%d", i);
        convert(&st, id, "v2", "p2", ATTR_AMOUNT_MAX, T0, now);
        snprintf(id, sizeof id, "none-%d", i);
        convert(&st, id, "v9", "p9", ATTR_AMOUNT_MAX, T0, now);
    }
    YW_CHECK(BIG > INT64_MAX);
    /* A: every single order (all models) plus the split ones under first touch; B the
     * split ones under last touch; linear halves them exactly (10^15 is even). */
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_LAST_TOUCH).gmv, ==, BIG);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * BIG);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_LINEAR).gmv, ==, BIG + BIG / 2);
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, BIG);
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 0);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_FIRST_TOUCH).credit, ==,
                  (attr_sum_t)2 * BIG_N * ATTR_CREDIT_ONE);
    for (int m = 1; m <= ATTR_N_MODELS; m++) {
        YW_CHECK_I128(sums_of(&st, "A", m).gmv + sums_of(&st, "B", m).gmv, ==, 2 * BIG);
    }
    attr_sum_t n = 0, g = 0;
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(n, ==, BIG_N);
    YW_CHECK_I128(g, ==, BIG);
    YW_CHECK_INT(attr_sum_clamp(g), ==, INT64_MAX);
    YW_CHECK_INT(attr_sum_clamp(-g), ==, INT64_MIN);
    YW_CHECK_INT(attr_sum_clamp(77), ==, 77);
    /* Refunds restate: each takes 10^15 - 1 off an order; the sums come back within
     * int64 and out of the wide figures, exactly. */
    size_t wide_before = st.n_wide;
    YW_CHECK(wide_before > 0);
    const char *kinds[] = {"one", "split"};
    int refunds = 400;
    for (int i = 0; i < refunds; i++) {
        for (int k = 0; k < 2; k++) {
            char oid[32], rid[32];
            snprintf(oid, sizeof oid, "%s-%d", kinds[k], BIG_N - 1 - i);
            snprintf(rid, sizeof rid, "r-%s-%d", kinds[k], i);
            attr_refund_t *r = NULL;
            int64_t left = 0;
            YW_CHECK_INT(attr_refund_admit(&st, rid, strlen(rid), oid, strlen(oid),
                                           ATTR_AMOUNT_MAX - 1, now, &r, &left),
                         ==, ATTR_ADMITTED);
            YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
        }
    }
    attr_sum_t kept = (attr_sum_t)(BIG_N - refunds) * ATTR_AMOUNT_MAX + refunds;
    YW_CHECK(kept < INT64_MAX);
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * kept);
    YW_CHECK(st.n_wide < wide_before);
    /* A settings change restates every order: the same sums. */
    attr_settings_t s = st.settings;
    s.version = 2;
    s.engaged_view_ms = 1;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_I128(sums_of(&st, "A", ATTR_MODEL_FIRST_TOUCH).gmv, ==, 2 * kept);
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==, kept);
    attr_state_unattributed(&st, DAY0 - 30, DAY0 + 30, &n, &g);
    YW_CHECK_I128(g, ==, BIG);
    attr_state_free(&st);
}

YW_TEST(split_credit_cells_past_int64_go_wide_and_back)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    expose(&st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    /* Two touches, several orders in one creator and day: their 64-bit per-model cell
     * (B's, under last touch) passes INT64_MAX at the 9,224th. */
    attr_conv_t *c = NULL;
    for (int i = 0; i < 9224; i++) {
        char id[32];
        snprintf(id, sizeof id, "o-%d", i);
        c = convert(&st, id, "v", "p", ATTR_AMOUNT_MAX, T0, now);
    }
    uint32_t b = (uint32_t)attr_intern_find(&st.creators, "B", 1);
    const attr_multi_t *mu = &st.multi[st.creator_meta[b].cdays[0].multi - 1];
    YW_CHECK_INT(mu->gmv[ATTR_MODEL_LAST_TOUCH - 1], ==, INT64_MIN); /* wide */
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==,
                  (attr_sum_t)9224 * ATTR_AMOUNT_MAX);
    /* A refund of the last order brings it back under INT64_MAX: back in its cell. */
    attr_refund_t *r = NULL;
    int64_t left = 0;
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-9223", 6, ATTR_AMOUNT_MAX, now, &r, &left), ==,
                 ATTR_ADMITTED);
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(c->n_elig, ==, 2);
    YW_CHECK_INT(mu->gmv[ATTR_MODEL_LAST_TOUCH - 1], ==, 9223 * ATTR_AMOUNT_MAX);
    YW_CHECK_I128(sums_of(&st, "B", ATTR_MODEL_LAST_TOUCH).gmv, ==,
                  (attr_sum_t)9223 * ATTR_AMOUNT_MAX);
    attr_state_free(&st);
}

YW_TEST(many_wide_figures_are_found_through_their_index)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    /* 3,000 creators, each with an order of 5 x 10^9 minor units: past 32 bits, wide. */
    enum { N = 3000 };
    const int64_t big = INT64_C(5000000000);
    for (int i = 0; i < N; i++) {
        char e[32], v[32], c[32], o[32];
        snprintf(e, sizeof e, "e%d", i);
        snprintf(v, sizeof v, "v%d", i);
        snprintf(c, sizeof c, "c%d", i);
        snprintf(o, sizeof o, "o%d", i);
        expose(&st, e, v, c, "p", ATTR_KIND_CLICK, 0, T0 - H_, now);
        convert(&st, o, v, "p", big, T0, now);
    }
    YW_CHECK_INT(st.n_wide, ==, N);
    /* Every other one refunded under 32 bits: out of the wide figures (each removal
     * moves the last one into its place, and its index entry with it). */
    for (int i = 0; i < N; i += 2) {
        char o[32], r[32];
        snprintf(o, sizeof o, "o%d", i);
        snprintf(r, sizeof r, "r%d", i);
        attr_refund_t *rf = NULL;
        int64_t left = 0;
        YW_CHECK_INT(attr_refund_admit(&st, r, strlen(r), o, strlen(o), big - 7, now, &rf, &left),
                     ==, ATTR_ADMITTED);
        YW_CHECK_INT(attr_refund_commit(&st, rf), ==, 0);
    }
    YW_CHECK_INT(st.n_wide, ==, N / 2);
    for (int i = 0; i < N; i++) {
        char c[32];
        snprintf(c, sizeof c, "c%d", i);
        YW_CHECK_I128(sums_of(&st, c, ATTR_MODEL_LINEAR).gmv, ==, i % 2 == 0 ? 7 : big);
    }
    /* A settings change restates every order: its figures out and in again. */
    attr_settings_t s = st.settings;
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&st, &s), ==, 0);
    YW_CHECK_INT(st.n_wide, ==, N / 2);
    YW_CHECK_I128(sums_of(&st, "c2999", ATTR_MODEL_LAST_TOUCH).gmv, ==, big);
    YW_CHECK_I128(sums_of(&st, "c2998", ATTR_MODEL_LAST_TOUCH).gmv, ==, 7);
    attr_state_free(&st);
}

YW_TEST(single_touch_credits_are_singles_split_ones_multi)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    expose(&st, "a", "v", "A", "p", ATTR_KIND_CLICK, 0, T0 - D_, now);
    convert(&st, "o1", "v", "p", 1000, T0, now);
    uint32_t a = (uint32_t)attr_intern_find(&st.creators, "A", 1);
    YW_CHECK_INT(st.creator_meta[a].n_cdays, ==, 1);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].singles, ==, 1);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].multi, ==, 0);
    YW_CHECK_INT(st.n_multi, ==, 0);
    /* A second click splits the order: per-model figures, and the single goes. */
    expose(&st, "b", "v", "B", "p", ATTR_KIND_CLICK, 0, T0 - 2 * D_, now);
    YW_CHECK_INT(st.creator_meta[a].cdays[0].singles, ==, 0);
    YW_CHECK(st.creator_meta[a].cdays[0].multi != 0);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "B", ATTR_MODEL_FIRST_TOUCH), ==, 1000);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LINEAR) +
                     creator_gmv(&st, "B", ATTR_MODEL_LINEAR),
                 ==, 1000);
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
        expose(&st, order, viewer, "A", "p", ATTR_KIND_CLICK, 0, T0 - D_ + i, now);
        attr_conv_t *c = convert(&st, order, viewer, "p", 100, T0, now);
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
    YW_CHECK(attr_conversion_find(&st, "o-0", 3) == first);
    YW_CHECK(attr_conversion_find(&st, "o-199", 5) != NULL);
    YW_CHECK(attr_conversion_find(&st, "o-1", 3) == NULL);
    /* Reports keep every credit: 200 orders of 100, each to A. */
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 20000);
    /* A refund needs its conversion in memory; loaded back, it restates exactly. */
    attr_refund_t *r;
    int64_t left;
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-1", 3, 40, T0, &r, &left), ==,
                 ATTR_UNKNOWN_ORDER);
    attr_conversion_in_t in = {.order_id = "o-1",
                               .order_id_len = 3,
                               .viewer_id = "v1",
                               .viewer_len = 2,
                               .product_id = "p",
                               .product_len = 1,
                               .quantity = 1,
                               .amount_minor = 100,
                               .occur_ns = T0};
    attr_conv_t *c = NULL;
    YW_CHECK_INT(attr_conversion_load(&st, &in, 0, &c), ==, 0);
    /* The touches as stored (o-1's exposure "o-1" of A, and o-8's, o-15's, ... of v1 that
     * are at or before it: the same viewer, product and time). */
    for (int i = 1; i < 200; i += 7) {
        snprintf(order, sizeof order, "o-%d", i);
        YW_CHECK_INT(attr_conversion_add_cand(&st, c, order, "A", 1, "note", 4, ATTR_KIND_CLICK, 0,
                                              T0 - D_ + i, 1),
                     ==, 0);
    }
    YW_CHECK_INT(attr_conversion_loaded(&st, c, 0), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 20000); /* unchanged */
    YW_CHECK_INT(attr_refund_admit(&st, "r", 1, "o-1", 3, 40, T0, &r, &left), ==, ATTR_ADMITTED);
    YW_CHECK(!attr_conv_evictable(&st, c)); /* a refund of it is pending */
    YW_CHECK_INT(attr_refund_commit(&st, r), ==, 0);
    YW_CHECK_INT(creator_gmv(&st, "A", ATTR_MODEL_LAST_TOUCH), ==, 19960);
    attr_conv_unpin(first);
    attr_state_free(&st);
}

YW_TEST(a_late_exposure_finds_conversions_through_the_filter_and_the_cache)
{
    attr_state_t st;
    attr_state_init(&st);
    int64_t now = T0 + H_;
    attr_conv_t *c = convert(&st, "o1", "v", "p", 1000, T0, now);
    uint64_t vp = c->vp_hash;
    /* In the filter from T0 on: an exposure before it may join, one after it cannot. */
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp, T0 - D_), ==, 1);
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp, T0 + 1), ==, 0);
    YW_CHECK_INT(attr_state_conv_maybe(&st, vp ^ 1, T0 - D_), ==, 0);
    /* A pending exposure asks per product. */
    const char *prods[2] = {"p", "q"};
    attr_exposure_in_t in = {.event_id = "x",
                             .event_id_len = 1,
                             .viewer_id = "v",
                             .viewer_len = 1,
                             .creator_id = "C",
                             .creator_len = 1,
                             .note_id = "",
                             .note_len = 0,
                             .product_ids = prods,
                             .n_products = 2,
                             .kind = ATTR_KIND_CLICK,
                             .occur_ns = T0 - H_};
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
    attr_conv_t *kept = convert(&part, "o2", "v", "p", 500, T0, now);
    convert(&all, "o2", "v", "p", 500, T0, now);
    (void)kept;
    attr_settings_t s = all.settings;
    s.click_window_ns = 2 * D_;
    s.version = 2;
    YW_CHECK_INT(attr_state_set_settings(&all, &s), ==, 0);
    /* part: o1 is "stored only"; its credits under s come from a state of their own. */
    attr_state_init(&out);
    out.settings = s;
    attr_settings_rules(&s, &out.rules);
    attr_conversion_in_t in = {.order_id = "o1",
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
        YW_CHECK_INT(attr_conversion_add_cand(&out, x, t->event_id, cr, strlen(cr),
                                              attr_cand_note(t), strlen(attr_cand_note(t)), t->kind,
                                              t->watch_ms, t->occur_ns, 1),
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
    YW_CHECK(attr_conversion_find(&part, "o1", 2) == NULL);
    YW_CHECK_INT(attr_state_replace_credits(&part, &out, &s), ==, 0);
    const char *names[] = {"A", "B", "C"};
    for (int m = 1; m <= ATTR_N_MODELS; m++) {
        for (int i = 0; i < 3; i++) {
            YW_CHECK_INT(creator_gmv(&part, names[i], m), ==, creator_gmv(&all, names[i], m));
            YW_CHECK_INT(creator_credit(&part, names[i], m), ==, creator_credit(&all, names[i], m));
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
            YW_CHECK_INT(creator_credit(&part, names[i], m), ==, creator_credit(&all, names[i], m));
        }
    }
    attr_state_free(&out);
    attr_state_free(&part);
    attr_state_free(&all);
}

YW_TEST(the_dedup_filters_keep_their_budget)
{
    attr_state_t st;
    attr_state_init(&st);
    /* Room for one full filter (4 Mi ids x 16 bits = 8 MiB) and 3/4 of another. */
    st.bloom_budget = 14u << 20;
    uint64_t *h = malloc(ATTR_BLOOM_KEYS * sizeof *h);
    YW_CHECK(h != NULL);
    for (uint64_t i = 0; i < ATTR_BLOOM_KEYS; i++) {
        h[i] = attr_hash_u64(i + 1);
    }
    YW_CHECK_INT(attr_state_index_add(&st, h, ATTR_BLOOM_KEYS, 1), ==, 0);
    YW_CHECK_INT(attr_state_bloom_bytes(&st), ==, 8u << 20);
    YW_CHECK_INT(st.bloom_thin, ==, 0);
    /* The second gets the 6 MiB left: 12 bits per id; a third, the minimum. */
    for (uint64_t i = 0; i < ATTR_BLOOM_KEYS; i++) {
        h[i] = attr_hash_u64(i + 1 + ATTR_BLOOM_KEYS);
    }
    /* The first thousand: the hashes of event ids "x0" .. "x999", admitted below. */
    char eid[16];
    for (uint64_t i = 0; i < 1000; i++) {
        int n = snprintf(eid, sizeof eid, "x%" PRIu64, i);
        h[i] = attr_hash_bytes(eid, (size_t)n);
    }
    YW_CHECK_INT(attr_state_index_add(&st, h, ATTR_BLOOM_KEYS, 2), ==, 0);
    YW_CHECK_INT(attr_state_bloom_bytes(&st), ==, 14u << 20);
    YW_CHECK_INT(st.bloom_thin, ==, 1);
    YW_CHECK_INT(attr_state_index_add(&st, h, 1, 3), ==, 0);
    YW_CHECK_INT(attr_state_bloom_bytes(&st), ==, (14u << 20) + (4u << 20));
    YW_CHECK_INT(st.bloom_thin, ==, 2);
    /* No false "no": every id added is a maybe (checked through an admit). */
    const char *prods[1] = {"p"};
    for (uint64_t i = 0; i < 1000; i++) {
        int n = snprintf(eid, sizeof eid, "x%" PRIu64, i);
        attr_exposure_in_t in = {
            .event_id = eid,
            .event_id_len = (size_t)n,
            .viewer_id = "v",
            .viewer_len = 1,
            .creator_id = "c",
            .creator_len = 1,
            .note_id = "",
            .note_len = 0,
            .product_ids = prods,
            .n_products = 1,
            .kind = ATTR_KIND_CLICK,
            .occur_ns = T0,
        };
        uint64_t seq;
        YW_CHECK_INT(attr_exposure_admit(&st, &in, T0, &seq, NULL), ==, ATTR_UNSURE);
        attr_exposure_abort(&st, seq);
    }
    /* Forgetting the oldest frees its share of the budget. */
    attr_state_index_forget(&st, 1);
    YW_CHECK_INT(attr_state_bloom_bytes(&st), ==, (6u << 20) + (4u << 20));
    free(h);
    attr_state_free(&st);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(duplicates_within_and_across_batches),
        YW_TEST_ENTRY(exposure_rollups_per_creator_and_day),
        YW_TEST_ENTRY(conversion_credited_under_every_model),
        YW_TEST_ENTRY(late_exposure_restates_the_conversion),
        YW_TEST_ENTRY(refunds_reduce_the_net_and_are_checked),
        YW_TEST_ENTRY(many_refunds_admitted_before_any_commit),
        YW_TEST_ENTRY(settings_change_restates_every_result),
        YW_TEST_ENTRY(exposures_past_the_horizon_count_but_do_not_join),
        YW_TEST_ENTRY(pruning_frees_old_runs_and_their_ids),
        YW_TEST_ENTRY(candidates_survive_pruning_for_restatement),
        YW_TEST_ENTRY(deferred_mode_recomputes_once_at_flush),
        YW_TEST_ENTRY(rollup_figures_past_32_bits_are_kept_whole),
        YW_TEST_ENTRY(credit_sums_past_int64_are_exact),
        YW_TEST_ENTRY(split_credit_cells_past_int64_go_wide_and_back),
        YW_TEST_ENTRY(many_wide_figures_are_found_through_their_index),
        YW_TEST_ENTRY(single_touch_credits_are_singles_split_ones_multi),
        YW_TEST_ENTRY(the_conversion_cache_keeps_its_budget_and_what_must_stay),
        YW_TEST_ENTRY(a_late_exposure_finds_conversions_through_the_filter_and_the_cache),
        YW_TEST_ENTRY(restating_with_conversions_outside_the_cache),
        YW_TEST_ENTRY(the_dedup_filters_keep_their_budget),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
