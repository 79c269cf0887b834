/*
 * attr_state_parts.h — what the parts of the in-memory state share among themselves and
 * with nobody else: attr_state.c, attr_exposures.c, attr_orders.c and attr_rollups.c
 * include it; callers include attr_state.h. Each part owns its fields of attr_state_t
 * (attr_state.h groups them); another part reaches them only through the functions
 * below. Double prefix (`attr__`): internal to the state.
 */
#ifndef ATTR_STATE_PARTS_H
#define ATTR_STATE_PARTS_H

#include <errno.h>
#include <stdlib.h>

#include "common/vec.h"
#include "services/attribution/attr_state.h"

/* ---- the exposures (attr_exposures.c) ---- */

/**
 * Adds to conversion `c` the candidates the runs in memory hold for it (its viewer and
 * product, at or before it, within the horizon). Returns 0 or -ENOMEM.
 */
int attr__runs_capture(attr_state_t *st, attr_conv_t *c, int64_t now_ns);

/** Frees the pending area, the runs and the Bloom filters of indexed ids. */
void attr__exposures_free(attr_state_t *st);

/** Fills the exposures' share of attr_state_mem(): pending, runs, bloom. */
void attr__exposures_mem(const attr_state_t *st, attr_state_mem_t *out);

/* ---- the conversions (attr_orders.c) ---- */

/**
 * Adds a candidate touch to `c` (copying its event id and note) unless its event id is
 * there; one not `persisted` goes on the persist list. Returns 1 (added), 0 (there
 * already) or -ENOMEM. The caller marks `c` for recomputation.
 */
int attr__cand_add(attr_state_t *st, attr_conv_t *c, const char *event_id, uint32_t creator,
                   const char *note, size_t note_len, int kind, int64_t watch_ms, int64_t occur_ns,
                   int persisted);

/**
 * A pending exposure that commits within the horizon joins the cached live conversions
 * of its viewer and each product (`vps[k]`: the join key of product k) at or after it:
 * it becomes their candidate and they are marked for recomputation. Returns 0 or
 * -ENOMEM.
 */
int attr__orders_join_late(attr_state_t *st, const attr_pexp_t *p, const uint64_t *vps);

/** Frees every conversion (pending and cached), the pending refunds and the work lists. */
void attr__orders_free(attr_state_t *st);

/** Fills the conversions' share of attr_state_mem(): conversions .. refunds, work. */
void attr__orders_mem(const attr_state_t *st, attr_state_mem_t *out);

/* ---- the rollups (attr_rollups.c) ---- */

/** Makes sure creator `creator` (interned) has its rollups' entry. 0 or -ENOMEM. */
int attr__rollups_reserve_creator(attr_state_t *st, uint32_t creator);

/**
 * The exposure counts of `creator` and `day`, added when missing, with room for one
 * wide figure, so that attr__rollups_count_one() cannot fail. NULL: no memory.
 */
attr_day_t *attr__rollups_count_room(attr_state_t *st, uint32_t creator, int32_t day);

/**
 * Counts one exposure of `kind` in `b` (from attr__rollups_count_room() of the same
 * creator and day, nothing changed in the rollups since). Cannot fail.
 */
void attr__rollups_count_one(attr_state_t *st, attr_day_t *b, uint32_t creator, int32_t day,
                             int kind);

/**
 * Makes sure every cell the result (`k` eligible touches `elig` of `c`'s candidates,
 * `single`: one touch credited wholly, `net`: the amount) needs exists, with room for
 * its wide figures, so that attr__rollups_credit() of it cannot fail. 0 or -ENOMEM.
 */
int attr__rollups_credit_room(attr_state_t *st, const attr_conv_t *c, const uint32_t *elig,
                              size_t k, int single, int64_t net);

/**
 * Adds (sign +1) or removes (-1) a conversion's result (c->elig, c->credit, c->minor,
 * c->applied_net) from the credit rollups. Its cells exist (attr__rollups_credit_room()
 * of that result): cannot fail.
 */
void attr__rollups_credit(attr_state_t *st, const attr_conv_t *c, int sign);

/** Empties the credit rollups (the exposure counts stay). */
void attr__rollups_clear_credits(attr_state_t *st);

/** Adds `from`'s credit rollups to st's (creators matched by name). 0 or -ENOMEM. */
int attr__rollups_add_credits(attr_state_t *st, const attr_state_t *from);

/** Frees the rollups. */
void attr__rollups_free(attr_state_t *st);

/** Fills the rollups' share of attr_state_mem(). */
void attr__rollups_mem(const attr_state_t *st, attr_state_mem_t *out);

#endif
