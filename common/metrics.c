/*
 * metrics.c — the metrics registry, its text rendering, process metrics, and the
 * libmicrohttpd endpoint. See metrics.h.
 *
 * The registry is two levels of singly linked lists, families and each family's series,
 * that only grow. A registration fills a node completely, then links it with a release
 * store under `reg_mu` (which only registrations take); the scrape follows the links
 * with acquire loads and never locks, so the loop thread never waits on it. Values are
 * relaxed atomics: a scrape may see one counter a few updates newer than another, which
 * the format allows. Each series is allocated on its own cache line so that the loop
 * thread's counters and a store thread's do not share one.
 */
#include "common/metrics.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "common/vec.h"

#define YW__MAX_BOUNDS 32
#define YW__CACHE_LINE 64
/* A label set rendered: keys, values (escaped: at most 2 bytes per byte), quotes. */
#define YW__MAX_LABELS_LEN 1024

const uint64_t yw_metrics_latency_bounds_ns[YW_METRICS_N_LATENCY_BOUNDS] = {
    100000ull,     250000ull,     500000ull,     1000000ull,     2500000ull,   5000000ull,
    10000000ull,   25000000ull,   50000000ull,   100000000ull,   250000000ull, 500000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull,
};

typedef enum { YW__COUNTER, YW__GAUGE, YW__HISTOGRAM } yw__type_t;

typedef struct st_yw__family_t yw__family_t;

struct st_yw_metric_t {
    _Atomic(yw_metric_t *) next;
    yw__family_t *family;
    char *labels; /* canonical: k="v",k2="v2" sorted by key; "" for none */
    /* Counter and gauge (two's complement): the value. Histogram: unused. */
    _Atomic uint64_t value;
    /* Histogram: sum of observations, then n_bounds + 1 buckets (the last is +Inf). */
    _Atomic uint64_t sum;
    _Atomic uint64_t buckets[];
};

struct st_yw__family_t {
    _Atomic(yw__family_t *) next;
    char *name;
    char *help; /* NULL: no # HELP line */
    yw__type_t type;
    size_t n_bounds;
    uint64_t bounds[YW__MAX_BOUNDS];
    double scale;
    _Atomic(yw_metric_t *) series;
    yw_metric_t *series_tail; /* under reg_mu */
};

struct st_yw_metrics_t {
    unsigned flags;
    pthread_mutex_t reg_mu;
    _Atomic(yw__family_t *) families;
    yw__family_t *families_tail; /* under reg_mu */
    double start_time;           /* Unix seconds, at creation */
};

/* ---- updates: the hot path ------------------------------------------------------- */

void yw_metric_inc(yw_metric_t *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->value, 1, memory_order_relaxed);
    }
}

void yw_metric_add(yw_metric_t *c, uint64_t v)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->value, v, memory_order_relaxed);
    }
}

void yw_metric_gauge_add(yw_metric_t *g, int64_t delta)
{
    if (g != NULL) {
        atomic_fetch_add_explicit(&g->value, (uint64_t)delta, memory_order_relaxed);
    }
}

void yw_metric_gauge_set(yw_metric_t *g, int64_t v)
{
    if (g != NULL) {
        atomic_store_explicit(&g->value, (uint64_t)v, memory_order_relaxed);
    }
}

void yw_metric_observe(yw_metric_t *h, uint64_t v)
{
    if (h == NULL) {
        return;
    }
    const yw__family_t *f = h->family;
    size_t i = 0;
    while (i < f->n_bounds && v > f->bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

static uint64_t yw__hist_count(const yw_metric_t *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= h->family->n_bounds; i++) {
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    }
    return n;
}

int64_t yw_metric_value(const yw_metric_t *metric)
{
    if (metric == NULL) {
        return 0;
    }
    if (metric->family->type == YW__HISTOGRAM) {
        return (int64_t)yw__hist_count(metric);
    }
    return (int64_t)atomic_load_explicit(&metric->value, memory_order_relaxed);
}

/* ---- names and labels ------------------------------------------------------------- */

static bool yw__valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0' || isdigit((unsigned char)*s)) {
        return false;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || c == '_' || (colon && c == ':'))) {
            return false;
        }
    }
    return true;
}

typedef struct {
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
} yw__label_t;

/* Appends `s[0..n)` escaped for a label value or help text; false when out of room. */
static bool yw__escape(char *out, size_t cap, size_t *off, const char *s, size_t n, bool quote)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        const char *rep = NULL;
        if (c == '\\') {
            rep = "\\\\";
        } else if (c == '\n') {
            rep = "\\n";
        } else if (c == '"' && quote) {
            rep = "\\\"";
        }
        size_t need = rep ? 2 : 1;
        if (*off + need >= cap) {
            return false;
        }
        if (rep != NULL) {
            out[(*off)++] = rep[0];
            out[(*off)++] = rep[1];
        } else {
            out[(*off)++] = c;
        }
    }
    out[*off] = '\0';
    return true;
}

/*
 * Parses "k=v,k2=v2" into the canonical form k="v",k2="v2" (sorted by key, values
 * escaped) in out[cap]. Returns 0 or -EINVAL.
 */
static int yw__canon_labels(const char *labels, char *out, size_t cap)
{
    yw__label_t l[YW_METRICS_MAX_LABELS];
    size_t n = 0;
    out[0] = '\0';
    if (labels == NULL || *labels == '\0') {
        return 0;
    }
    const char *p = labels;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq == NULL || eq == p || n == YW_METRICS_MAX_LABELS) {
            return -EINVAL;
        }
        l[n].key = p;
        l[n].klen = (size_t)(eq - p);
        l[n].val = eq + 1;
        l[n].vlen = (size_t)(end - eq - 1);
        if (!isalpha((unsigned char)p[0]) && p[0] != '_') {
            return -EINVAL;
        }
        for (size_t i = 0; i < l[n].klen; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!isalnum(c) && c != '_') {
                return -EINVAL;
            }
        }
        n++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    /* Insertion sort by key; duplicates are an error. */
    for (size_t i = 1; i < n; i++) {
        yw__label_t x = l[i];
        size_t j = i;
        while (j > 0) {
            size_t m = l[j - 1].klen < x.klen ? l[j - 1].klen : x.klen;
            int c = memcmp(l[j - 1].key, x.key, m);
            if (c == 0 && l[j - 1].klen == x.klen) {
                return -EINVAL;
            }
            if (c < 0 || (c == 0 && l[j - 1].klen < x.klen)) {
                break;
            }
            l[j] = l[j - 1];
            j--;
        }
        l[j] = x;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (off + l[i].klen + 4 >= cap) {
            return -EINVAL;
        }
        if (i > 0) {
            out[off++] = ',';
        }
        memcpy(out + off, l[i].key, l[i].klen);
        off += l[i].klen;
        out[off++] = '=';
        out[off++] = '"';
        if (!yw__escape(out, cap, &off, l[i].val, l[i].vlen, true) || off + 2 >= cap) {
            return -EINVAL;
        }
        out[off++] = '"';
        out[off] = '\0';
    }
    return 0;
}

/* ---- registry --------------------------------------------------------------------- */

int yw_metrics_create(unsigned flags, yw_metrics_t **out)
{
    yw_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return -ENOMEM;
    }
    int e = pthread_mutex_init(&m->reg_mu, NULL);
    if (e != 0) {
        free(m);
        return -e;
    }
    m->flags = flags;
    atomic_init(&m->families, NULL);
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    *out = m;
    return 0;
}

void yw_metrics_destroy(yw_metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    yw__family_t *f = atomic_load_explicit(&m->families, memory_order_acquire);
    while (f != NULL) {
        yw__family_t *fnext = atomic_load_explicit(&f->next, memory_order_relaxed);
        yw_metric_t *s = atomic_load_explicit(&f->series, memory_order_relaxed);
        while (s != NULL) {
            yw_metric_t *snext = atomic_load_explicit(&s->next, memory_order_relaxed);
            free(s->labels);
            free(s);
            s = snext;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fnext;
    }
    pthread_mutex_destroy(&m->reg_mu);
    free(m);
}

static yw__family_t *yw__find_family(yw_metrics_t *m, const char *name)
{
    for (yw__family_t *f = atomic_load_explicit(&m->families, memory_order_acquire); f != NULL;
         f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static yw_metric_t *yw__find_series(yw__family_t *f, const char *canon)
{
    for (yw_metric_t *s = atomic_load_explicit(&f->series, memory_order_acquire); s != NULL;
         s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        if (strcmp(s->labels, canon) == 0) {
            return s;
        }
    }
    return NULL;
}

static bool yw__same_shape(const yw__family_t *f, yw__type_t type, const uint64_t *bounds,
                           size_t n_bounds, double scale)
{
    if (f->type != type) {
        return false;
    }
    if (type != YW__HISTOGRAM) {
        return true;
    }
    return f->n_bounds == n_bounds && f->scale == scale &&
           memcmp(f->bounds, bounds, n_bounds * sizeof *bounds) == 0;
}

/* Registers or finds a series. The whole of it under reg_mu; readers never take it. */
static int yw__register(yw_metrics_t *m, yw__type_t type, const char *name, const char *help,
                        const char *labels, const uint64_t *bounds, size_t n_bounds, double scale,
                        yw_metric_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (m == NULL || out == NULL || !yw__valid_name(name, true)) {
        return -EINVAL;
    }
    if (type == YW__HISTOGRAM) {
        if (bounds == NULL || n_bounds == 0 || n_bounds > YW__MAX_BOUNDS || !(scale > 0)) {
            return -EINVAL;
        }
        for (size_t i = 1; i < n_bounds; i++) {
            if (bounds[i] <= bounds[i - 1]) {
                return -EINVAL;
            }
        }
    }
    char canon[YW__MAX_LABELS_LEN];
    int rc = yw__canon_labels(labels, canon, sizeof canon);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&m->reg_mu);
    yw__family_t *f = yw__find_family(m, name);
    if (f != NULL && !yw__same_shape(f, type, bounds, n_bounds, scale)) {
        rc = -EINVAL;
        goto out;
    }
    yw_metric_t *s = f ? yw__find_series(f, canon) : NULL;
    if (s != NULL) {
        *out = s;
        goto out;
    }
    bool new_family = f == NULL;
    if (new_family) {
        f = calloc(1, sizeof *f);
        if (f == NULL || (f->name = strdup(name)) == NULL ||
            (help != NULL && (f->help = strdup(help)) == NULL)) {
            if (f != NULL) {
                free(f->name);
                free(f);
            }
            rc = -ENOMEM;
            goto out;
        }
        f->type = type;
        f->n_bounds = type == YW__HISTOGRAM ? n_bounds : 0;
        if (f->n_bounds > 0) {
            memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
        }
        f->scale = scale;
        atomic_init(&f->next, NULL);
        atomic_init(&f->series, NULL);
    }
    size_t nb = type == YW__HISTOGRAM ? f->n_bounds + 1 : 0;
    size_t size = sizeof *s + nb * sizeof s->buckets[0];
    size = (size + YW__CACHE_LINE - 1) / YW__CACHE_LINE * YW__CACHE_LINE;
    s = aligned_alloc(YW__CACHE_LINE, size);
    char *lcopy = strdup(canon);
    if (s == NULL || lcopy == NULL) {
        free(s);
        free(lcopy);
        if (new_family) {
            free(f->name);
            free(f->help);
            free(f);
        }
        rc = -ENOMEM;
        goto out;
    }
    memset(s, 0, size);
    s->family = f;
    s->labels = lcopy;
    atomic_init(&s->next, NULL);
    atomic_init(&s->value, 0);
    atomic_init(&s->sum, 0);
    for (size_t i = 0; i < nb; i++) {
        atomic_init(&s->buckets[i], 0);
    }
    /* Publish: the series into its family, then a new family into the registry. */
    if (f->series_tail != NULL) {
        atomic_store_explicit(&f->series_tail->next, s, memory_order_release);
    } else {
        atomic_store_explicit(&f->series, s, memory_order_release);
    }
    f->series_tail = s;
    if (new_family) {
        if (m->families_tail != NULL) {
            atomic_store_explicit(&m->families_tail->next, f, memory_order_release);
        } else {
            atomic_store_explicit(&m->families, f, memory_order_release);
        }
        m->families_tail = f;
    }
    *out = s;
out:
    pthread_mutex_unlock(&m->reg_mu);
    return rc;
}

int yw_metrics_counter(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                       yw_metric_t **out)
{
    return yw__register(m, YW__COUNTER, name, help, labels, NULL, 0, 1.0, out);
}

int yw_metrics_gauge(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                     yw_metric_t **out)
{
    return yw__register(m, YW__GAUGE, name, help, labels, NULL, 0, 1.0, out);
}

int yw_metrics_histogram(yw_metrics_t *m, const char *name, const char *help, const char *labels,
                         const uint64_t *bounds, size_t n_bounds, double scale, yw_metric_t **out)
{
    return yw__register(m, YW__HISTOGRAM, name, help, labels, bounds, n_bounds, scale, out);
}

/* Finds a series by name and labels without the lock; registers it when missing. */
static int yw__lookup(yw_metrics_t *m, yw__type_t type, const char *name, const char *labels,
                      yw_metric_t **out)
{
    char canon[YW__MAX_LABELS_LEN];
    int rc = yw__canon_labels(labels, canon, sizeof canon);
    if (rc != 0) {
        return rc;
    }
    yw__family_t *f = yw__find_family(m, name);
    if (f != NULL) {
        if (f->type != type) {
            return -EINVAL;
        }
        yw_metric_t *s = yw__find_series(f, canon);
        if (s != NULL) {
            *out = s;
            return 0;
        }
    }
    return yw__register(m, type, name, NULL, labels, NULL, 0, 1.0, out);
}

int yw_metrics_counter_add(yw_metrics_t *m, const char *name, const char *labels, uint64_t v)
{
    if (m == NULL) {
        return 0;
    }
    yw_metric_t *s = NULL;
    int rc = yw__lookup(m, YW__COUNTER, name, labels, &s);
    if (rc == 0) {
        yw_metric_add(s, v);
    }
    return rc;
}

int yw_metrics_gauge_set(yw_metrics_t *m, const char *name, const char *labels, int64_t v)
{
    if (m == NULL) {
        return 0;
    }
    yw_metric_t *s = NULL;
    int rc = yw__lookup(m, YW__GAUGE, name, labels, &s);
    if (rc == 0) {
        yw_metric_gauge_set(s, v);
    }
    return rc;
}

/* ---- rendering -------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len;
    size_t cap;
    bool oom;
} yw__out_t;

static bool yw__reserve(yw__out_t *o, size_t more)
{
    if (o->oom) {
        return false;
    }
    size_t text; /* room for `text` bytes and a NUL after them */
    if (yw_vec_add(o->len, more, &text) != 0 || YW_VEC_GROW(o->buf, text, o->cap, 1, 4096) != 0) {
        o->oom = true;
        return false;
    }
    return true;
}

static void yw__printf(yw__out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void yw__printf(yw__out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !yw__reserve(o, (size_t)n)) {
        o->oom = o->oom || n < 0;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

static void yw__header(yw__out_t *o, const char *name, const char *help, const char *type)
{
    if (help != NULL) {
        char esc[1024];
        size_t off = 0;
        esc[0] = '\0';
        (void)yw__escape(esc, sizeof esc, &off, help, strlen(help), false);
        yw__printf(o, "# HELP %s %s\n", name, esc);
    }
    yw__printf(o, "# TYPE %s %s\n", name, type);
}

/* `name{labels[,extra]} ` — braces only when there is a label. */
static void yw__series_name(yw__out_t *o, const char *name, const char *suffix, const char *labels,
                            const char *extra)
{
    bool any = labels[0] != '\0' || extra != NULL;
    yw__printf(o, "%s%s%s%s%s%s%s ", name, suffix, any ? "{" : "", labels,
               labels[0] != '\0' && extra != NULL ? "," : "", extra ? extra : "", any ? "}" : "");
}

static void yw__render_family(yw__out_t *o, const yw__family_t *f)
{
    yw_metric_t *s = atomic_load_explicit(&f->series, memory_order_acquire);
    if (s == NULL) {
        return;
    }
    static const char *const types[] = {"counter", "gauge", "histogram"};
    yw__header(o, f->name, f->help, types[f->type]);
    for (; s != NULL; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        if (f->type == YW__COUNTER) {
            yw__series_name(o, f->name, "", s->labels, NULL);
            yw__printf(o, "%llu\n", (unsigned long long)v);
        } else if (f->type == YW__GAUGE) {
            yw__series_name(o, f->name, "", s->labels, NULL);
            yw__printf(o, "%lld\n", (long long)(int64_t)v);
        } else {
            uint64_t cum = 0;
            char le[64];
            for (size_t i = 0; i <= f->n_bounds; i++) {
                cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
                if (i < f->n_bounds) {
                    snprintf(le, sizeof le, "le=\"%.9g\"", (double)f->bounds[i] * f->scale);
                } else {
                    snprintf(le, sizeof le, "le=\"+Inf\"");
                }
                yw__series_name(o, f->name, "_bucket", s->labels, le);
                yw__printf(o, "%llu\n", (unsigned long long)cum);
            }
            uint64_t sum = atomic_load_explicit(&s->sum, memory_order_relaxed);
            yw__series_name(o, f->name, "_sum", s->labels, NULL);
            if (f->scale == 1.0) {
                yw__printf(o, "%llu\n", (unsigned long long)sum);
            } else {
                yw__printf(o, "%.15g\n", (double)sum * f->scale);
            }
            yw__series_name(o, f->name, "_count", s->labels, NULL);
            yw__printf(o, "%llu\n", (unsigned long long)cum);
        }
    }
}

/* Reads a small /proc file into buf; returns its length or -1. */
static void yw__render_process(yw__out_t *o, const yw_metrics_t *m)
{
    uint64_t rss, vsz;
    if (yw_process_memory(&rss, &vsz) == 0) {
        yw__header(o, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
        yw__printf(o, "process_resident_memory_bytes %llu\n", (unsigned long long)rss);
        yw__header(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
        yw__printf(o, "process_virtual_memory_bytes %llu\n", (unsigned long long)vsz);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        yw__header(o, "process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.", "counter");
        yw__printf(o, "process_cpu_seconds_total %.6f\n", cpu);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                n++;
            }
        }
        (void)closedir(d);
        yw__header(o, "process_open_fds", "Number of open file descriptors.", "gauge");
        yw__printf(o, "process_open_fds %ld\n", n > 0 ? n - 1 : 0); /* less opendir's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        yw__header(o, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
        yw__printf(o, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    yw__header(o, "process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", "gauge");
    yw__printf(o, "process_start_time_seconds %.3f\n", m->start_time);
}

int yw_metrics_render(yw_metrics_t *m, char **out, size_t *len)
{
    yw__out_t o = {0};
    if (!yw__reserve(&o, 4096)) {
        return -ENOMEM;
    }
    o.buf[0] = '\0';
    for (yw__family_t *f = atomic_load_explicit(&m->families, memory_order_acquire); f != NULL;
         f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        yw__render_family(&o, f);
    }
    if (m->flags & YW_METRICS_PROCESS) {
        yw__render_process(&o, m);
    }
    if (o.oom) {
        free(o.buf);
        return -ENOMEM;
    }
    *out = o.buf;
    *len = o.len;
    return 0;
}

/* ---- HTTP endpoint (libmicrohttpd) ------------------------------------------------ */

struct st_yw_metrics_http_t {
    yw_metrics_t *metrics;
    struct MHD_Daemon *daemon;
    int port;
};

static enum MHD_Result yw__http_reply(struct MHD_Connection *conn, unsigned status,
                                      const char *body, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8") !=
            MHD_YES ||
        (allow != NULL && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result yw__http_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                        const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **con_cls)
{
    yw_metrics_http_t *h = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* A body, if any, is ignored: the reply goes out and the connection closes. */
        *upload_data_size = 0;
        return yw__http_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n",
                              "GET, HEAD");
    }
    if (strcmp(url, "/metrics") != 0) {
        return yw__http_reply(conn, MHD_HTTP_NOT_FOUND, "not found: metrics are at /metrics\n",
                              NULL);
    }
    char *text = NULL;
    size_t len = 0;
    if (yw_metrics_render(h->metrics, &text, &len) != 0) {
        return yw__http_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* libmicrohttpd's own messages, as JSON log lines instead of raw stderr text. */
static void yw__http_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    yw_log(YW_LOG_WARN, "metrics endpoint: %s", msg);
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port. */
static int yw__split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return -EINVAL;
        }
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen >= hcap || strlen(colon + 1) >= pcap || colon[1] == '\0') {
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    for (const char *p = port; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p)) {
            return -EINVAL;
        }
    }
    return atoi(port) <= 65535 ? 0 : -EINVAL;
}

int yw_metrics_http_start(yw_metrics_t *m, const char *listen, yw_metrics_http_t **out, char *err,
                          size_t errlen)
{
    char host[256], port[16];
    if (m == NULL || listen == NULL ||
        yw__split_hostport(listen, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errlen, "--metrics-listen %s: must be HOST:PORT", listen ? listen : "");
        return -EINVAL;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        snprintf(err, errlen, "--metrics-listen %s: cannot resolve %s: %s", listen, host,
                 gai_strerror(gai));
        return -EINVAL;
    }
    yw_metrics_http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->metrics = m;
    unsigned int flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    /* The endpoint's thread takes no signal: they are the loop's (as the store's threads). */
    sigset_t all, old;
    sigfillset(&all);
    int e = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (e != 0) {
        freeaddrinfo(ai);
        free(h);
        snprintf(err, errlen, "pthread_sigmask: %s", strerror(e));
        return -e;
    }
    errno = 0;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, yw__http_handler, h, MHD_OPTION_EXTERNAL_LOGGER, yw__http_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    int start_errno = errno;
    e = pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "--metrics-listen %s: cannot serve: %s", listen,
                 start_errno ? strerror(start_errno) : "libmicrohttpd refused to start");
        free(h);
        return start_errno ? -start_errno : -EADDRINUSE;
    }
    if (e != 0) {
        MHD_stop_daemon(h->daemon);
        free(h);
        snprintf(err, errlen, "pthread_sigmask: %s", strerror(e));
        return -e;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? (int)info->port : atoi(port);
    *out = h;
    return 0;
}

int yw_metrics_http_port(const yw_metrics_http_t *h)
{
    return h->port;
}

void yw_metrics_http_stop(yw_metrics_http_t *h)
{
    if (h == NULL) {
        return;
    }
    MHD_stop_daemon(h->daemon);
    free(h);
}
