/*
 * attr_gate.c — the restatement gate. While a settings change restates the stored
 * conversions, or the rollup audit reads them, whatever changes conversions or rollups
 * (a commit, a preload's use, a refund's judgement) is held back in svc->held and run
 * in order once the gate opens; nothing leaves the cache meanwhile, and the exposure
 * store keeps its published runs in memory. All on the loop.
 */
#include "services/attribution/attr_service_int.h"

/** Runs `h` now, or after the restatement in progress. */
void attr__gate(attr_svc_t *svc, attr_held_t *h, void (*fn)(attr_held_t *h))
{
    h->fn = fn;
    h->next = NULL;
    if (!svc->restating) {
        fn(h);
        return;
    }
    if (svc->held_tail != NULL) {
        svc->held_tail->next = h;
    } else {
        svc->held_head = h;
    }
    svc->held_tail = h;
}

/**
 * A restatement or an audit is over: once none holds it, what waited runs, in order.
 * Eviction stays held until all of it ran. Invariant: a conversion read on the writer's
 * queue (an exposure batch's preload, a refund's load) is still in memory when the read
 * is used, if it was when the read was made, so that a stale row is never loaded over
 * newer credits (attr__conv_from_set()). The queue's order keeps it (the read's `done`
 * runs before the `done` of the write that lets the conversion go); holding the read's
 * use behind the gate does not, unless nothing leaves memory until the held work ran.
 * Evicting from the first held item on let a later held preload load an order without
 * the touches its credits in the rollups had (reports drifted from the explanations
 * after a settings change; the rollup audit found it).
 */
void attr__gate_open(attr_svc_t *svc)
{
    if (svc->restating > 0 && --svc->restating > 0) {
        return;
    }
    while (svc->held_head != NULL && !svc->restating) {
        attr_held_t *h = svc->held_head;
        svc->held_head = h->next;
        if (svc->held_head == NULL) {
            svc->held_tail = NULL;
        }
        h->fn(h);
    }
    if (svc->restating) {
        return; /* closed again by what ran */
    }
    svc->st.evict_hold = 0;
    /* Runs published meanwhile stayed in memory for the commits that waited (a
     * conversion's capture from the runs covers what its lookup's view did not). */
    if (svc->xs != NULL) {
        attr_exposure_store_hold_runs(svc->xs, 0);
    }
    attr__evict(svc);
}

/** Closes the gate: what changes conversions or rollups waits (attr__gate()). */
void attr__gate_close(attr_svc_t *svc)
{
    svc->restating++;
    svc->st.evict_hold = 1;
    if (svc->xs != NULL) {
        attr_exposure_store_hold_runs(svc->xs, 1);
    }
}
