/* attr_state_fixture.c — the state tests' shared fixture. See attr_state_fixture.h. */
#include "tests/unit/services/attribution/attr_state_fixture.h"

#include "tests/unit/test.h"

attr_exposure_in_t fx_exposure_in(const char *id, const char *viewer, const char *creator,
                                  const char *const *prods, size_t n, int kind, int64_t at)
{
    return (attr_exposure_in_t){
        .event_id = id,
        .event_id_len = strlen(id),
        .viewer_id = viewer,
        .viewer_len = strlen(viewer),
        .creator_id = creator,
        .creator_len = strlen(creator),
        .note_id = "",
        .note_len = 0,
        .product_ids = prods,
        .n_products = n,
        .kind = kind,
        .occur_ns = at,
    };
}

uint64_t fx_expose(attr_state_t *st, const char *id, const char *viewer, const char *creator,
                   const char *product, int kind, int64_t watch_ms, int64_t at, int64_t now)
{
    const char *prods[2] = {product, "other-product"};
    attr_exposure_in_t in = fx_exposure_in(id, viewer, creator, prods, 2, kind, at);
    in.note_id = "note";
    in.note_len = 4;
    in.watch_ms = watch_ms;
    uint64_t seq = 0;
    YW_CHECK_INT(attr_exposure_admit(st, &in, now, &seq, NULL), ==, ATTR_ADMITTED);
    YW_CHECK(attr_exposure_commit(st, seq, now) >= 0);
    return seq;
}

attr_conv_t *fx_convert(attr_state_t *st, const char *order, const char *viewer,
                        const char *product, int64_t amount, int64_t at, int64_t now)
{
    attr_conv_in_t in = {
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
    YW_CHECK_INT(attr_conv_admit(st, &in, &c), ==, ATTR_ADMITTED);
    YW_CHECK_INT(attr_conv_commit(st, c, now), ==, 0);
    return c;
}

attr_sums_t fx_sums(attr_state_t *st, const char *creator, int model)
{
    attr_sums_t s;
    memset(&s, 0, sizeof s);
    int64_t id = attr_intern_find(&st->creators, creator, strlen(creator));
    if (id >= 0) {
        attr_state_creator_sums(st, (uint32_t)id, DAY0 - 30, DAY0 + 30, model, &s);
    }
    return s;
}

int64_t fx_creator_gmv(attr_state_t *st, const char *creator, int model)
{
    return (int64_t)fx_sums(st, creator, model).gmv;
}

int64_t fx_creator_credit(attr_state_t *st, const char *creator, int model)
{
    return (int64_t)fx_sums(st, creator, model).credit;
}

const char *fx_touch_creator(attr_state_t *st, const attr_conv_t *c, uint32_t i)
{
    return attr_intern_str(&st->creators, c->cands[c->elig[i]].creator, NULL);
}

int64_t fx_touch_minor(const attr_conv_t *c, int model, uint32_t i)
{
    return c->minor[(model - 1) * c->n_elig + i];
}

size_t fx_cell_bytes(const attr_state_t *st)
{
    size_t bytes = 0;
    for (size_t i = 0; i < st->cap_creator_meta; i++) {
        const attr_creator_t *m = &st->creator_meta[i];
        bytes += (size_t)m->cap_days * sizeof *m->days + (size_t)m->cap_cdays * sizeof *m->cdays;
    }
    return bytes;
}
