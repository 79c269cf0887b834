/*
 * attr_parts_fixture.h — what the tests of reports gathered from partitions share
 * (test_attr_sums.c, test_attr_partition.c): one set of events, fed whole to one state
 * or split by viewer over two, as a cluster partitions them. Every creator has viewers
 * in both partitions; there are single and split credits, conversions credited to
 * nobody in both, and days inside and outside DAY0.
 */
#ifndef ATTR_PARTS_FIXTURE_H
#define ATTR_PARTS_FIXTURE_H

#include "tests/unit/services/attribution/attr_state_fixture.h"

/** Partitions of the events: viewers v1, v3 are in 0; v2, v4, v9 in 1. */
#define FX_PARTS 2
/** fx_parts_feed()'s `part` for every event: the state of a standalone attribution. */
#define FX_ALL (-1)

/** Feeds the events of partition `part` (FX_ALL: all of them) to `st`. */
void fx_parts_feed(attr_state_t *st, int part);

/** `all` fed every event, and part[p] the events of partition p, each a new state. */
void fx_parts_open(attr_state_t *all, attr_state_t part[FX_PARTS]);

/** Frees the states of fx_parts_open(). */
void fx_parts_close(attr_state_t *all, attr_state_t part[FX_PARTS]);

#endif
