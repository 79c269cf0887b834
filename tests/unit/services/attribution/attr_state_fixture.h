/*
 * attr_state_fixture.h — what the unit tests of the in-memory state and of its snapshot
 * share (test_attr_exposures.c, test_attr_orders.c, test_attr_rollups.c,
 * test_attr_state.c, test_attr_snap.c): a fixed clock and events admitted and committed
 * in one call, checked as they go (a failure aborts the test), and the figures a test
 * reads back.
 */
#ifndef ATTR_STATE_FIXTURE_H
#define ATTR_STATE_FIXTURE_H

#include "services/attribution/attr_state.h"

#define S_ ATTR_NS_PER_S
#define H_ (3600 * S_)
#define D_ ATTR_NS_PER_DAY
/** The tests' day, and noon UTC of it: the clock most tests stand at. */
#define DAY0 20000
#define T0 ((int64_t)DAY0 * D_ + 12 * H_)

/**
 * Exposure event `id` of `viewer` to `creator` (note "", no watch time): `kind` at `at`,
 * of products `prods[0 .. n)`. The strings are the caller's (their lengths by strlen).
 */
attr_exposure_in_t fx_exposure_in(const char *id, const char *viewer, const char *creator,
                                  const char *const *prods, size_t n, int kind, int64_t at);

/**
 * Admits and commits (arriving at `now`) exposure `id` of `viewer` to `creator`'s note
 * "note" with two products, `product` and "other-product". Returns its seq.
 */
uint64_t fx_expose(attr_state_t *st, const char *id, const char *viewer, const char *creator,
                   const char *product, int kind, int64_t watch_ms, int64_t at, int64_t now);

/**
 * Admits and commits (arriving at `now`) conversion `order` of one `product` for
 * `amount` minor units. Returns it (the state's: valid until it is evicted or freed).
 */
attr_conv_t *fx_convert(attr_state_t *st, const char *order, const char *viewer,
                        const char *product, int64_t amount, int64_t at, int64_t now);

/** `creator`'s sums over DAY0 - 30 .. DAY0 + 30 under `model` (zero: an unknown creator). */
attr_sums_t fx_sums(attr_state_t *st, const char *creator, int model);

/** `creator`'s credited net amount (fx_sums().gmv) as an int64. */
int64_t fx_creator_gmv(attr_state_t *st, const char *creator, int model);

/** `creator`'s credit in ATTR_CREDIT_ONE units (fx_sums().credit) as an int64. */
int64_t fx_creator_credit(attr_state_t *st, const char *creator, int model);

/** The creator of eligible touch `i` of conversion `c`. */
const char *fx_touch_creator(attr_state_t *st, const attr_conv_t *c, uint32_t i);

/** The minor units eligible touch `i` of conversion `c` gets under `model`. */
int64_t fx_touch_minor(const attr_conv_t *c, int model, uint32_t i);

/** The bytes of every creator's day cell arrays, walked (what st->cell_bytes keeps). */
size_t fx_cell_bytes(const attr_state_t *st);

#endif
