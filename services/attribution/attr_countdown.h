/*
 * attr_countdown.h — the close of a module whose parts close in their own time (worker
 * threads, the exposure log, a runs module: each calls back once it has closed). The
 * module counts its parts as they open; at close it closes each with
 * attr_countdown_part_closed() as the callback, and once the last one has called back
 * the countdown frees the module and calls the module's own `closed`.
 *
 *   open:   attr_countdown_add(&m->parts);                         (for each part opened)
 *   close:  attr_countdown_start(&m->parts, m_free, m, closed, arg);
 *           part_close(m->part, attr_countdown_part_closed, &m->parts);   (for each part)
 *           attr_countdown_part_closed(&m->parts);                 (the close's own count)
 *
 * attr_countdown_start() takes a count for the close itself, so that a part that calls
 * back at once cannot free the module while its close is still closing the others; the
 * close gives it back last. The countdown lives inside the module it frees. Loop thread
 * only.
 */
#ifndef ATTR_COUNTDOWN_H
#define ATTR_COUNTDOWN_H

#ifdef __cplusplus
extern "C" {
#endif

/** Embed it in the module, zeroed (no part yet). */
typedef struct st_attr_countdown_t {
    int left; /* parts not closed yet, and the close's own count while it runs */
    void (*free_module)(void *module);
    void *module;
    void (*closed)(void *arg);
    void *closed_arg;
} attr_countdown_t;

/** One more part to wait for at close (a part that has opened). */
void attr_countdown_add(attr_countdown_t *c);

/** Whether any part has been counted (so that a close has something to wait for). */
int attr_countdown_any(const attr_countdown_t *c);

/**
 * Starts the close: `free_module(module)` runs once every part has closed, then
 * `closed(closed_arg)` (may be NULL). Takes the close's own count; the caller gives it back
 * with attr_countdown_part_closed(c) once it has closed every part.
 */
void attr_countdown_start(attr_countdown_t *c, void (*free_module)(void *module), void *module,
                          void (*closed)(void *arg), void *closed_arg);

/**
 * A part has closed: the close callback to give each part, with the countdown as its
 * argument. The last one frees the module (and the countdown in it), then calls `closed`.
 */
void attr_countdown_part_closed(void *countdown);

#ifdef __cplusplus
}
#endif
#endif
