/* attr_countdown.c — the close of a module made of parts. See attr_countdown.h. */
#include "services/attribution/attr_countdown.h"

#include <stddef.h>

void attr_countdown_add(attr_countdown_t *c)
{
    c->left++;
}

int attr_countdown_any(const attr_countdown_t *c)
{
    return c->left > 0;
}

void attr_countdown_start(attr_countdown_t *c, void (*free_module)(void *module), void *module,
                          void (*closed)(void *arg), void *closed_arg)
{
    c->free_module = free_module;
    c->module = module;
    c->closed = closed;
    c->closed_arg = closed_arg;
    c->left++;
}

void attr_countdown_part_closed(void *countdown)
{
    attr_countdown_t *c = countdown;
    if (--c->left > 0) {
        return;
    }
    /* The countdown is freed with the module: take what is needed after. */
    void (*closed)(void *) = c->closed;
    void *closed_arg = c->closed_arg;
    c->free_module(c->module);
    if (closed != NULL) {
        closed(closed_arg);
    }
}
