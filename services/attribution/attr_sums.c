/* attr_sums.c — reports' sums of a state, and partitions' sums merged. See attr_sums.h. */
#include "services/attribution/attr_sums.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int attr_sums_zero(const attr_sums_t *s)
{
    return s->impressions == 0 && s->views == 0 && s->clicks == 0 && s->credit == 0 && s->gmv == 0;
}

int attr_sums_add(attr_sums_t *acc, const attr_sums_t *s)
{
    attr_sums_t r;
    if (__builtin_add_overflow(acc->impressions, s->impressions, &r.impressions) ||
        __builtin_add_overflow(acc->views, s->views, &r.views) ||
        __builtin_add_overflow(acc->clicks, s->clicks, &r.clicks) ||
        __builtin_add_overflow(acc->credit, s->credit, &r.credit) ||
        __builtin_add_overflow(acc->gmv, s->gmv, &r.gmv)) {
        return -ERANGE;
    }
    *acc = r;
    return 0;
}

int attr_sums_of_state(const attr_state_t *st, int32_t d0, int32_t d1, int model, const char *only,
                       size_t only_len, attr_range_sums_t *out)
{
    memset(out, 0, sizeof *out);
    uint32_t from = 0, to = attr_state_n_creators(st);
    if (only != NULL) {
        int64_t id = attr_intern_find(&st->creators, only, only_len);
        from = id >= 0 ? (uint32_t)id : 0;
        to = id >= 0 ? (uint32_t)id + 1 : 0;
    }
    if (to > from) {
        out->creators = malloc((size_t)(to - from) * sizeof *out->creators);
        if (out->creators == NULL) {
            return -ENOMEM;
        }
    }
    for (uint32_t c = from; c < to; c++) {
        attr_creator_sums_t *e = &out->creators[out->n];
        attr_state_creator_sums(st, c, d0, d1, model, &e->s);
        if (attr_sums_zero(&e->s)) {
            continue;
        }
        e->creator = attr_intern_str(&st->creators, c, &e->len);
        e->id = c;
        out->n++;
    }
    out->ids_of = st;
    attr_state_unattributed(st, d0, d1, &out->unattr_count, &out->unattr_gmv);
    return 0;
}

void attr_sums_merge_init(attr_sums_merge_t *m)
{
    memset(m, 0, sizeof *m);
    attr_intern_init(&m->names);
}

void attr_sums_merge_free(attr_sums_merge_t *m)
{
    free(m->sums.creators);
    attr_intern_free(&m->names);
    memset(m, 0, sizeof *m);
}

int attr_sums_merge_creator(attr_sums_merge_t *m, const char *creator, size_t len,
                            const attr_sums_t *s)
{
    int64_t known = attr_intern_find(&m->names, creator, len);
    if (known >= 0) {
        return attr_sums_add(&m->sums.creators[known].s, s);
    }
    /* Room first, so that a name is never interned without its sums. */
    if (m->sums.n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        attr_creator_sums_t *a = realloc(m->sums.creators, cap * sizeof *a);
        if (a == NULL) {
            return -ENOMEM;
        }
        m->sums.creators = a;
        m->cap = cap;
    }
    uint32_t id;
    const char *name;
    if (attr_intern2(&m->names, creator, len, &id, &name) != 0) {
        return -ENOMEM;
    }
    attr_creator_sums_t *e = &m->sums.creators[id]; /* id == m->sums.n: a new name */
    e->creator = name;
    e->len = len;
    e->s = *s;
    m->sums.n++;
    return 0;
}

int attr_sums_merge_unattributed(attr_sums_merge_t *m, attr_sum_t count, attr_sum_t gmv)
{
    attr_sum_t c, g;
    if (__builtin_add_overflow(m->sums.unattr_count, count, &c) ||
        __builtin_add_overflow(m->sums.unattr_gmv, gmv, &g)) {
        return -ERANGE;
    }
    m->sums.unattr_count = c;
    m->sums.unattr_gmv = g;
    return 0;
}

int attr_sums_merge(attr_sums_merge_t *m, const attr_range_sums_t *part)
{
    for (size_t i = 0; i < part->n; i++) {
        const attr_creator_sums_t *e = &part->creators[i];
        int rc = attr_sums_merge_creator(m, e->creator, e->len, &e->s);
        if (rc != 0) {
            return rc;
        }
    }
    return attr_sums_merge_unattributed(m, part->unattr_count, part->unattr_gmv);
}
