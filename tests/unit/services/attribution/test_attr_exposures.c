/*
 * test_attr_exposures.c — unit tests of services/attribution/attr_exposures.c: dedup
 * (within a batch, across batches, after an abort), the join horizon (exposures past it
 * are counted but join nothing), runs closing and pruning with their ids, a run's join
 * table growing while conversions look it up, and the Bloom
 * filters of indexed ids within their budget. Expectations are computed by hand in the
 * comments.
 */
#include "services/attribution/attr_state.h"

#include <errno.h>

#include "services/attribution/attr_validate.h"
#include "tests/unit/services/attribution/attr_state_fixture.h"
#include "tests/unit/test.h"

YW_TEST(duplicates_within_and_across_batches)
{
    attr_state_t st;
    attr_state_init(&st);
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = fx_exposure_in("e1", "v", "c", prods, 1, ATTR_KIND_CLICK, T0);
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

YW_TEST(exposures_past_the_horizon_count_but_do_not_join)
{
    attr_state_t st;
    attr_state_init(&st);
    /* Horizon: 7 d + 7 d = 14 d. Now is T0 + 20 d; an exposure at T0 is too late. */
    int64_t now = T0 + 20 * D_;
    YW_CHECK(attr_exposure_past_horizon(&st, T0, now));
    YW_CHECK(!attr_exposure_past_horizon(&st, now - 14 * D_, now));
    const char *prods[1] = {"p"};
    attr_exposure_in_t in = fx_exposure_in("old", "v", "A", prods, 1, ATTR_KIND_CLICK, T0);
    uint64_t seq;
    YW_CHECK_INT(attr_exposure_admit(&st, &in, now, &seq, NULL), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_exposure_commit(&st, seq, now), ==, 0); /* did not join */
    attr_conv_t *c = fx_convert(&st, "o", "v", "p", 100, T0 + S_, now);
    YW_CHECK_INT(c->n_cands, ==, 0);
    YW_CHECK(attr_conv_past_horizon(&st, T0 + S_, now));
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
    attr_exposure_in_t in = fx_exposure_in("", "v", "A", prods, 1, ATTR_KIND_IMPRESSION, 0);
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
    attr_conv_t *c = fx_convert(&st, "o", "v", "p", 100, T0 + 30 * D_, T0 + 30 * D_);
    YW_CHECK_INT(c->n_cands, ==, 5);
    attr_state_free(&st);
}

/** Admits and commits exposure `i` of viewer "v" with `prods[0 .. n)` at T0 + i. */
static void expose_wide(attr_state_t *st, int i, const char *const *prods, size_t n)
{
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    attr_exposure_in_t in = fx_exposure_in(id, "v", "A", prods, n, ATTR_KIND_CLICK, T0 + i);
    uint64_t seq;
    YW_CHECK_INT(attr_exposure_admit(st, &in, T0 + i, &seq, NULL), ==, ATTR_ADMITTED);
    YW_CHECK(attr_exposure_commit(st, seq, T0 + i) >= 0);
}

/* A run's join table grows by moving its keys a few per append: while they move (some
 * only in the old table, some in both, new ones only in the new), a conversion finds
 * every exposure of its viewer and product exactly once. */
YW_TEST(a_growing_join_table_finds_every_key_while_its_keys_move)
{
    attr_state_t st;
    attr_state_init(&st);
    st.run_hint = 16; /* a table of 64 keys to start with: it grows many times */
    enum { N_EXP = 60, N_PROD = 100 };
    char pbuf[N_PROD][16];
    const char *prods[N_PROD];
    for (int k = 0; k < N_PROD; k++) {
        snprintf(pbuf[k], sizeof pbuf[k], "p%d", k);
        prods[k] = pbuf[k];
    }
    int seen_moving = 0, orders = 0;
    for (int i = 0; i < N_EXP; i++) {
        expose_wide(&st, i, prods, N_PROD);
        YW_CHECK_INT(st.n_runs, ==, 1);
        const attr_run_t *run = st.runs[0];
        YW_CHECK_INT(run->join_n, ==, (size_t)(i + 1) * N_PROD);
        if (run->join_old != NULL) {
            seen_moving++;
            char order[32];
            snprintf(order, sizeof order, "o%d", orders++);
            attr_conv_t *c =
                fx_convert(&st, order, "v", prods[(i * 7) % N_PROD], 100, T0 + i, T0 + i);
            YW_CHECK_INT(c->n_cands, ==, i + 1);
        }
    }
    YW_CHECK(seen_moving > 0);
    /* A move ends within a few appends (four keys moved per new one). */
    int n = N_EXP;
    for (; st.runs[0]->join_old != NULL && n < 2 * N_EXP; n++) {
        expose_wide(&st, n, prods, N_PROD);
    }
    YW_CHECK(st.runs[0]->join_old == NULL);
    attr_conv_t *c = fx_convert(&st, "last", "v", "p99", 100, T0 + n, T0 + n);
    YW_CHECK_INT(c->n_cands, ==, n);
    attr_state_free(&st);
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
        h[i] = yw_hash_u64(i + 1);
    }
    YW_CHECK_INT(attr_state_index_add(&st, h, ATTR_BLOOM_KEYS, 1), ==, 0);
    YW_CHECK_INT(attr_state_bloom_bytes(&st), ==, 8u << 20);
    YW_CHECK_INT(st.bloom_thin, ==, 0);
    /* The second gets the 6 MiB left: 12 bits per id; a third, the minimum. */
    for (uint64_t i = 0; i < ATTR_BLOOM_KEYS; i++) {
        h[i] = yw_hash_u64(i + 1 + ATTR_BLOOM_KEYS);
    }
    /* The first thousand: the hashes of event ids "x0" .. "x999", admitted below. */
    char eid[16];
    for (uint64_t i = 0; i < 1000; i++) {
        int n = snprintf(eid, sizeof eid, "x%" PRIu64, i);
        h[i] = yw_hash_bytes(eid, (size_t)n);
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
        snprintf(eid, sizeof eid, "x%" PRIu64, i);
        attr_exposure_in_t in = fx_exposure_in(eid, "v", "c", prods, 1, ATTR_KIND_CLICK, T0);
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
        YW_TEST_ENTRY(exposures_past_the_horizon_count_but_do_not_join),
        YW_TEST_ENTRY(pruning_frees_old_runs_and_their_ids),
        YW_TEST_ENTRY(a_growing_join_table_finds_every_key_while_its_keys_move),
        YW_TEST_ENTRY(the_dedup_filters_keep_their_budget),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
