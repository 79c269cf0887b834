/* attr_errs.c — the lowest rejected indexes of an ingest call, sorted. See attr_errs.h. */
#include "services/attribution/attr_errs.h"

#include <stdio.h>
#include <string.h>

/* Where `index` goes in by[0..n): after every entry whose index is <= it. */
static size_t attr__errs_pos(const attr_errs_t *e, int64_t index)
{
    size_t lo = 0, hi = e->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->by[mid]->index <= index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

void attr_errs_add(attr_errs_t *e, int64_t index, const char *reason)
{
    Yaowei__Attribution__V1__IngestError *s;
    size_t pos;
    if (e->n < ATTR_ERRORS_MAX) {
        /* Rejections mostly come in order: the common case appends. */
        pos = e->n > 0 && e->by[e->n - 1]->index > index ? attr__errs_pos(e, index) : e->n;
        s = &e->slot[e->n];
        e->n++;
    } else {
        if (e->by[ATTR_ERRORS_MAX - 1]->index <= index) {
            return; /* higher than every one kept */
        }
        /* The highest goes; its slot takes the new one. */
        pos = attr__errs_pos(e, index);
        s = e->by[ATTR_ERRORS_MAX - 1];
    }
    memmove(&e->by[pos + 1], &e->by[pos],
            (e->n - 1 - pos) * sizeof(Yaowei__Attribution__V1__IngestError *));
    e->by[pos] = s;
    size_t k = (size_t)(s - e->slot);
    yaowei__attribution__v1__ingest_error__init(s);
    s->index = index;
    snprintf(e->reason[k], ATTR_REASON_MAX, "%s", reason);
    s->reason = e->reason[k];
}

Yaowei__Attribution__V1__IngestError **attr_errs_list(attr_errs_t *e, size_t *n)
{
    *n = e->n;
    return e->by;
}
