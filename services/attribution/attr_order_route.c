/* attr_order_route.c — where refunds and explanations go in a cluster. See attr_order_route.h. */
#include "services/attribution/attr_order_route.h"

#include <errno.h>

int attr_route_found(int32_t *where, size_t n_where, const int32_t *idx, size_t n_idx, int32_t p)
{
    for (size_t k = 0; k < n_idx; k++) {
        if (idx[k] < 0 || (size_t)idx[k] >= n_where) {
            return -EINVAL;
        }
    }
    for (size_t k = 0; k < n_idx; k++) {
        int32_t *w = &where[idx[k]];
        if (*w == ATTR_ROUTE_NONE || p < *w) {
            *w = p;
        }
    }
    return 0;
}

void attr_route_refunds(const attr_route_refund_t *ev, size_t n, const int32_t *holder,
                        int32_t *known, const int32_t *fallback, int32_t *out)
{
    /* A refund id recorded nowhere yet: its refunds meet where the first one that can be
     * admitted goes (its own order's holder). */
    for (size_t i = 0; i < n; i++) {
        const attr_route_refund_t *e = &ev[i];
        if (e->valid && e->refund != ATTR_ROUTE_NONE && known[e->refund] == ATTR_ROUTE_NONE &&
            e->order != ATTR_ROUTE_NONE && holder[e->order] != ATTR_ROUTE_NONE) {
            known[e->refund] = holder[e->order];
        }
    }
    for (size_t i = 0; i < n; i++) {
        const attr_route_refund_t *e = &ev[i];
        if (e->valid && e->refund != ATTR_ROUTE_NONE && known[e->refund] != ATTR_ROUTE_NONE) {
            out[i] = known[e->refund];
        } else if (e->order != ATTR_ROUTE_NONE && holder[e->order] != ATTR_ROUTE_NONE) {
            out[i] = holder[e->order];
        } else {
            out[i] = fallback[i];
        }
    }
}
