/*
 * demo_progress.h — the progress display of the demo's long steps: events sent, events
 * per second and time left, on one line rewritten in place (\r) when the output is a
 * terminal, as a line every few seconds otherwise (logs, CI), and one closing line per
 * step either way. Time comes from the caller (nanoseconds of any monotonic clock).
 */
#ifndef DEMO_PROGRESS_H
#define DEMO_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Progress output modes. */
enum { DEMO_PROGRESS_OFF, DEMO_PROGRESS_TTY, DEMO_PROGRESS_LINES };

/** Redraw period of the terminal line, and of the periodic lines. */
#define DEMO_PROGRESS_TTY_NS UINT64_C(250000000)
#define DEMO_PROGRESS_LINES_NS UINT64_C(5000000000)

typedef struct st_demo_progress_t {
    FILE *out;
    int mode;
    char label[32];
    const char *unit;
    uint64_t total, done;
    uint64_t start_ns, last_ns;
    /** Width of the last terminal line, to blank what a shorter one leaves. */
    int width;
} demo_progress_t;

/** Starts a step of `total` units (0: unknown) named `label`; `unit` e.g. "events". */
void demo_progress_start(demo_progress_t *p, FILE *out, int mode, const char *label,
                         const char *unit, uint64_t total, uint64_t now_ns);

/** Records `done` units so far and redraws when it is time. */
void demo_progress_update(demo_progress_t *p, uint64_t done, uint64_t now_ns);

/** Ends the step with one line: units, seconds, units per second. */
void demo_progress_finish(demo_progress_t *p, uint64_t now_ns);

/**
 * The progress line of a step, e.g. "exposures  1,234,567/4,700,000 events  26%
 * 205,311/s  17 s left", into buf (always terminated). Returns its length.
 */
int demo_progress_format(char *buf, size_t len, const char *label, const char *unit, uint64_t done,
                         uint64_t total, double elapsed_s);

/** `v` with thousands separators ("1,234,567") into buf; returns buf. */
char *demo_fmt_count(char *buf, size_t len, uint64_t v);

/** "17 s", "3 min 05 s", "1 h 02 min" into buf; returns buf. */
char *demo_fmt_duration(char *buf, size_t len, double seconds);

#ifdef __cplusplus
}
#endif
#endif
