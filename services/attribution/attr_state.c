/*
 * attr_state.c — the in-memory attribution state: the settings, its life and its
 * memory; the parts are attr_exposures.c, attr_orders.c and attr_rollups.c. See
 * attr_state.h.
 */
#include "services/attribution/attr_state_parts.h"

#include <string.h>

/* ---- settings ---- */

void attr_settings_default(attr_settings_t *s)
{
    memset(s, 0, sizeof *s);
    attr_rules_t r;
    attr_rules_default(&r);
    s->click_window_ns = r.click_window_ns;
    s->view_window_ns = r.view_window_ns;
    s->half_life_ns = r.half_life_ns;
    s->engaged_view_ms = r.engaged_view_ms;
    s->late_window_ns = 7 * ATTR_NS_PER_DAY;
    s->default_model = ATTR_MODEL_LAST_TOUCH;
    memcpy(s->currency, "CNY", 4);
}

int64_t attr_settings_horizon(const attr_settings_t *s)
{
    int64_t w = s->click_window_ns > s->view_window_ns ? s->click_window_ns : s->view_window_ns;
    return w + s->late_window_ns;
}

void attr_settings_rules(const attr_settings_t *s, attr_rules_t *r)
{
    r->click_window_ns = s->click_window_ns;
    r->view_window_ns = s->view_window_ns;
    r->half_life_ns = s->half_life_ns;
    r->engaged_view_ms = s->engaged_view_ms;
}

/* ---- init / free ---- */

int attr_state_init(attr_state_t *st)
{
    memset(st, 0, sizeof *st);
    attr_settings_default(&st->settings);
    attr_settings_rules(&st->settings, &st->rules);
    attr_intern_init(&st->creators);
    attr_strmap_init(&st->pend_ids);
    attr_strmap_init(&st->orders);
    attr_strmap_init(&st->pend_orders);
    attr_map64_init(&st->conv_vp);
    attr_map64_init(&st->wide_at);
    attr_strmap_init(&st->refunds);
    st->run_max = ATTR_RUN_EXPOSURES;
    st->run_hint = 1024;
    st->next_run_id = 1;
    st->next_commit_seq = 1;
    st->evict_guard = UINT64_MAX;
    return 0;
}
void attr_state_free(attr_state_t *st)
{
    attr__exposures_free(st);
    attr__orders_free(st);
    attr__rollups_free(st);
    attr_intern_free(&st->creators);
    memset(st, 0, sizeof *st);
}

void attr_state_mem(const attr_state_t *st, attr_state_mem_t *out)
{
    memset(out, 0, sizeof *out);
    attr__rollups_mem(st, out);
    out->creators = attr_intern_bytes(&st->creators);
    attr__orders_mem(st, out);
    attr__exposures_mem(st, out);
}
