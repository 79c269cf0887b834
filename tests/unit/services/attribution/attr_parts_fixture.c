/* attr_parts_fixture.c — events split by viewer. See attr_parts_fixture.h. */
#include "tests/unit/services/attribution/attr_parts_fixture.h"

#include <string.h>

#include "services/attribution/attr_validate.h"
#include "tests/unit/test.h"

static int fx_part_of(const char *viewer)
{
    return strcmp(viewer, "v1") == 0 || strcmp(viewer, "v3") == 0 ? 0 : 1;
}

void fx_parts_feed(attr_state_t *st, int part)
{
    static const struct {
        const char *id, *viewer, *creator, *product;
        int kind;
        int64_t watch_ms, at;
    } x[] = {
        /* v1: a click of A (so B's view is not eligible) on p1 */
        {"x1", "v1", "A", "p1", ATTR_KIND_CLICK, 0, T0 - 2 * D_},
        {"x2", "v1", "B", "p1", ATTR_KIND_VIEW, 20000, T0 - D_},
        /* v2: impressions of A then B on p2: split */
        {"x3", "v2", "A", "p2", ATTR_KIND_IMPRESSION, 0, T0 - 3 * H_},
        {"x4", "v2", "B", "p2", ATTR_KIND_IMPRESSION, 0, T0 - 2 * H_},
        /* v3: clicks of C then B on p3: split */
        {"x5", "v3", "C", "p3", ATTR_KIND_CLICK, 0, T0 - D_},
        {"x6", "v3", "B", "p3", ATTR_KIND_CLICK, 0, T0 - H_},
        /* v4: exposures nothing converts on, two days */
        {"x7", "v4", "C", "p4", ATTR_KIND_VIEW, 15000, T0 - D_},
        {"x8", "v4", "A", "p4", ATTR_KIND_IMPRESSION, 0, T0 - 5 * D_},
        {"x9", "v4", "D", "p4", ATTR_KIND_CLICK, 0, T0 - 3 * D_},
    };
    static const struct {
        const char *order, *viewer, *product;
        int64_t amount, at;
    } c[] = {
        {"o1", "v1", "p1", 1000, T0},
        {"o2", "v2", "p2", 999, T0},
        {"o3", "v3", "p3", 12345, T0},
        {"o4", "v9", "p9", 500, T0},      /* credited to nobody (partition 1) */
        {"o5", "v3", "p9", 700, T0 - D_}, /* credited to nobody (partition 0) */
        {"o6", "v1", "p1", 2500, T0 - D_},
        {"o7", "v2", "p2", ATTR_AMOUNT_MAX, T0 - 2 * H_},
    };
    int64_t now = T0 + H_;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        if (part == FX_ALL || fx_part_of(x[i].viewer) == part) {
            fx_expose(st, x[i].id, x[i].viewer, x[i].creator, x[i].product, x[i].kind,
                      x[i].watch_ms, x[i].at, now);
        }
    }
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        if (part == FX_ALL || fx_part_of(c[i].viewer) == part) {
            fx_convert(st, c[i].order, c[i].viewer, c[i].product, c[i].amount, c[i].at, now);
        }
    }
}

void fx_parts_open(attr_state_t *all, attr_state_t part[FX_PARTS])
{
    attr_state_init(all);
    fx_parts_feed(all, FX_ALL);
    for (int p = 0; p < FX_PARTS; p++) {
        attr_state_init(&part[p]);
        fx_parts_feed(&part[p], p);
    }
}

void fx_parts_close(attr_state_t *all, attr_state_t part[FX_PARTS])
{
    attr_state_free(all);
    for (int p = 0; p < FX_PARTS; p++) {
        attr_state_free(&part[p]);
    }
}
