/* demo_progress.c — progress lines of the demo's long steps. See demo_progress.h. */
#include "tools/demo/demo_progress.h"

#include <math.h>
#include <string.h>

char *demo_fmt_count(char *buf, size_t len, uint64_t v)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    char tmp[48];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            tmp[o++] = ',';
        }
        tmp[o++] = digits[i];
    }
    tmp[o] = '\0';
    snprintf(buf, len, "%s", tmp);
    return buf;
}

char *demo_fmt_duration(char *buf, size_t len, double seconds)
{
    if (!(seconds >= 0)) {
        seconds = 0;
    }
    long long s = llround(seconds);
    if (s < 60) {
        snprintf(buf, len, "%lld s", s);
    } else if (s < 3600) {
        snprintf(buf, len, "%lld min %02lld s", s / 60, s % 60);
    } else {
        snprintf(buf, len, "%lld h %02lld min", s / 3600, s % 3600 / 60);
    }
    return buf;
}

int demo_progress_format(char *buf, size_t len, const char *label, const char *unit, uint64_t done,
                         uint64_t total, double elapsed_s)
{
    char d[32], t[32], rate[32], left[32];
    double per_s = elapsed_s > 0 ? (double)done / elapsed_s : 0;
    demo_fmt_count(rate, sizeof rate, (uint64_t)llround(per_s));
    demo_fmt_count(d, sizeof d, done);
    int n;
    if (total > 0) {
        demo_fmt_count(t, sizeof t, total);
        double pct = 100.0 * (double)done / (double)total;
        if (per_s > 0 && done < total) {
            demo_fmt_duration(left, sizeof left, (double)(total - done) / per_s);
        } else {
            snprintf(left, sizeof left, "%s", done >= total ? "0 s" : "?");
        }
        n = snprintf(buf, len, "%-12s %s/%s %s  %3.0f%%  %s/s  %s left", label, d, t, unit,
                     pct > 100 ? 100 : pct, rate, left);
    } else {
        n = snprintf(buf, len, "%-12s %s %s  %s/s", label, d, unit, rate);
    }
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? n : (int)len - 1;
}

void demo_progress_start(demo_progress_t *p, FILE *out, int mode, const char *label,
                         const char *unit, uint64_t total, uint64_t now_ns)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->mode = mode;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->unit = unit;
    p->total = total;
    p->start_ns = p->last_ns = now_ns;
}

static void draw(demo_progress_t *p, uint64_t now_ns)
{
    char line[200];
    int n = demo_progress_format(line, sizeof line, p->label, p->unit, p->done, p->total,
                                 (double)(now_ns - p->start_ns) / 1e9);
    if (p->mode == DEMO_PROGRESS_TTY) {
        /* Pad with blanks over what a longer previous line left. */
        fprintf(p->out, "\r%s%*s", line, p->width > n ? p->width - n : 0, "");
        p->width = n;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    p->last_ns = now_ns;
}

void demo_progress_update(demo_progress_t *p, uint64_t done, uint64_t now_ns)
{
    p->done = done;
    if (p->mode == DEMO_PROGRESS_OFF) {
        return;
    }
    uint64_t period = p->mode == DEMO_PROGRESS_TTY ? DEMO_PROGRESS_TTY_NS : DEMO_PROGRESS_LINES_NS;
    if (now_ns - p->last_ns >= period) {
        draw(p, now_ns);
    }
}

void demo_progress_finish(demo_progress_t *p, uint64_t now_ns)
{
    if (p->mode == DEMO_PROGRESS_OFF) {
        return;
    }
    double secs = (double)(now_ns - p->start_ns) / 1e9;
    char d[32], rate[32], line[200];
    demo_fmt_count(d, sizeof d, p->done);
    demo_fmt_count(rate, sizeof rate, (uint64_t)llround(secs > 0 ? (double)p->done / secs : 0));
    int n = snprintf(line, sizeof line, "%-12s %s %s in %.1f s (%s/s)", p->label, d, p->unit, secs,
                     rate);
    if (p->mode == DEMO_PROGRESS_TTY) {
        fprintf(p->out, "\r%s%*s\n", line, p->width > n ? p->width - n : 0, "");
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}
