/*
 * attr_ckey.c — the conversion key index. See attr_ckey.h.
 *
 * Ownership: the index owns its runs (the open one, the sealed ones until their file
 * is published), the published files (one reference each), its worker and the jobs it
 * queues (freed by their `after`). A snapshot owns a reference on each of its files.
 */
#include "services/attribution/attr_ckey.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_work.h"

/** A run of keys in memory: appended in commit order, found through `slots`. */
typedef struct st_attr__ckrun_t {
    attr_xent_t *keys;
    size_t n, cap;
    uint32_t *slots; /* index + 1 by key hash; 0: empty */
    size_t cap_slots;
    int64_t max_occur_ns;
    uint64_t run;
    uint64_t safe; /* set when sealed */
    struct st_attr__ckrun_t *next;
} attr__ckrun_t;

typedef struct st_attr__ckbuild_t attr__ckbuild_t;

struct st_attr_ckey_t {
    uv_loop_t *loop;
    char dir[4096];
    attr_work_t *worker; /* builds, merges, deletions: one at a time, in order */
    attr__ckrun_t *open;
    attr__ckrun_t *sealed_head, *sealed_tail; /* waiting for their file, in order */
    uint64_t next_run;
    attr_xidx_t **files; /* published, by run */
    int64_t *max_occur;  /* per file: its latest conversion */
    size_t n_files, cap_files;
    int merging;
    attr__ckbuild_t *failed; /* builds to try again (a failed one holds the later ones) */
    uint64_t runs_written, merges, failures;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void attr__ckerr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attr__ckerr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t attr__ckseq(const attr_xent_t *e)
{
    return (uint64_t)e->seg << 32 | e->off;
}

/* ---- runs ---- */

static void attr__ckrun_free(attr__ckrun_t *r)
{
    if (r != NULL) {
        free(r->keys);
        free(r->slots);
        free(r);
    }
}

static attr__ckrun_t *attr__ckrun_new(uint64_t run)
{
    attr__ckrun_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->run = run;
    r->max_occur_ns = INT64_MIN;
    return r;
}

static void attr__ckslot_put(uint32_t *slots, size_t cap, uint64_t h, uint32_t idx)
{
    size_t mask = cap - 1;
    size_t i = attr_hash_u64(h) & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = idx + 1;
}

static int attr__ckrun_add(attr__ckrun_t *r, uint64_t vp, uint64_t seq, int64_t occur_ns)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 1024;
        attr_xent_t *k = realloc(r->keys, nc * sizeof *k);
        if (k == NULL) {
            return -ENOMEM;
        }
        r->keys = k;
        r->cap = nc;
    }
    if (2 * (r->n + 1) > r->cap_slots) {
        size_t nc = r->cap_slots ? r->cap_slots * 2 : 2048;
        uint32_t *s = calloc(nc, sizeof *s);
        if (s == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < r->n; i++) {
            attr__ckslot_put(s, nc, r->keys[i].h, (uint32_t)i);
        }
        free(r->slots);
        r->slots = s;
        r->cap_slots = nc;
    }
    r->keys[r->n] = (attr_xent_t){vp, (uint32_t)(seq >> 32), (uint32_t)seq};
    attr__ckslot_put(r->slots, r->cap_slots, vp, (uint32_t)r->n);
    r->n++;
    if (occur_ns > r->max_occur_ns) {
        r->max_occur_ns = occur_ns;
    }
    return 0;
}

static void attr__ckrun_find(const attr__ckrun_t *r, uint64_t vp,
                             void (*fn)(void *arg, uint64_t seq), void *arg)
{
    if (r->cap_slots == 0) {
        return;
    }
    size_t mask = r->cap_slots - 1;
    for (size_t i = attr_hash_u64(vp) & mask; r->slots[i] != 0; i = (i + 1) & mask) {
        const attr_xent_t *e = &r->keys[r->slots[i] - 1];
        if (e->h == vp) {
            fn(arg, attr__ckseq(e));
        }
    }
}

static size_t attr__ckrun_bytes(const attr__ckrun_t *r)
{
    return sizeof *r + r->cap * sizeof *r->keys + r->cap_slots * sizeof *r->slots;
}

/* ---- the files ---- */

static int attr__ckfiles_grow(attr_ckey_t *ck, size_t need)
{
    if (need <= ck->cap_files) {
        return 0;
    }
    size_t nc = ck->cap_files ? ck->cap_files * 2 : 16;
    while (nc < need) {
        nc *= 2;
    }
    attr_xidx_t **f = realloc(ck->files, nc * sizeof *f);
    if (f == NULL) {
        return -ENOMEM;
    }
    ck->files = f;
    int64_t *o = realloc(ck->max_occur, nc * sizeof *o);
    if (o == NULL) {
        return -ENOMEM;
    }
    ck->max_occur = o;
    ck->cap_files = nc;
    return 0;
}

typedef struct st_attr__ckocc_t {
    int64_t max;
} attr__ckocc_t;

static int attr__ckfile_seg(void *arg, const attr_xseg_t *s)
{
    attr__ckocc_t *o = arg;
    if (s->max_arrival_ns > o->max) {
        o->max = s->max_arrival_ns;
    }
    return 0;
}

/** A file's latest conversion (kept in its seg rows' max_arrival_ns). */
static int64_t attr__ckfile_max_occur(const attr_xidx_t *x)
{
    attr__ckocc_t o = {INT64_MIN};
    if (attr_xidx_segs(x, attr__ckfile_seg, &o) != 0) {
        return INT64_MAX; /* unknown: never pruned */
    }
    return o.max;
}

/** The size class of a file: how many times ATTR_CKEY_FANIN fits in its runs. */
static unsigned attr__ckclass(const attr_xidx_t *x)
{
    uint64_t runs = attr_xidx_meta(x)->last_run - attr_xidx_meta(x)->first_run + 1;
    unsigned c = 0;
    while (runs >= ATTR_CKEY_FANIN) {
        runs /= ATTR_CKEY_FANIN;
        c++;
    }
    return c;
}

/* ---- building a run's file ---- */

struct st_attr__ckbuild_t {
    attr_job_t job;
    attr_ckey_t *ck;
    attr__ckrun_t *run;
    attr_xent_t *sorted; /* the worker's copy (attr_xidx_write() sorts it) */
    attr_xidx_t *x;
    int rc;
    char err[512];
    attr__ckbuild_t *next_failed;
};

static void attr__ckbuild_work(attr_job_t *job)
{
    attr__ckbuild_t *b = (attr__ckbuild_t *)job;
    const attr__ckrun_t *r = b->run;
    attr_xmeta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.first_run = meta.last_run = r->run;
    meta.end.seq = r->safe;
    memcpy(b->sorted, r->keys, r->n * sizeof *r->keys);
    attr_xseg_t seg = {0, r->n, r->max_occur_ns};
    char path[4200];
    b->rc = attr_xidx_write(b->ck->dir, &meta, b->sorted, r->n, NULL, 0, NULL, 0, &seg, 1, path,
                            sizeof path, b->err, sizeof b->err);
    if (b->rc == 0) {
        b->rc = attr_xidx_open(path, 0, &b->x, b->err, sizeof b->err);
    }
}

static void attr__ckmaybe_merge(attr_ckey_t *ck);
static int attr__ckbuild_submit(attr_ckey_t *ck, attr__ckbuild_t *b);

static void attr__ckbuild_after(attr_job_t *job)
{
    attr__ckbuild_t *b = (attr__ckbuild_t *)job;
    attr_ckey_t *ck = b->ck;
    if (b->rc != 0 || attr__ckfiles_grow(ck, ck->n_files + 1) != 0) {
        ck->failures++;
        yw_log(YW_LOG_ERROR,
               "conversion keys: cannot write run %llu (%zu keys; kept in memory, retried): %s",
               (unsigned long long)b->run->run, b->run->n, b->rc ? b->err : "out of memory");
        attr_xidx_unref(b->x);
        b->x = NULL;
        b->next_failed = ck->failed;
        ck->failed = b;
        return;
    }
    /* Published: the run leaves memory. */
    ck->files[ck->n_files] = b->x;
    ck->max_occur[ck->n_files] = b->run->max_occur_ns;
    ck->n_files++;
    ck->runs_written++;
    attr__ckrun_t **pp = &ck->sealed_head, *prev = NULL;
    while (*pp != NULL && *pp != b->run) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp != NULL) {
        *pp = b->run->next;
        if (ck->sealed_tail == b->run) {
            ck->sealed_tail = prev;
        }
    }
    attr__ckrun_free(b->run);
    free(b->sorted);
    free(b);
    attr__ckmaybe_merge(ck);
}

static int attr__ckbuild_submit(attr_ckey_t *ck, attr__ckbuild_t *b)
{
    b->rc = 0;
    b->err[0] = '\0';
    b->job.work = attr__ckbuild_work;
    b->job.after = attr__ckbuild_after;
    return attr_work_submit(ck->worker, &b->job);
}

/** Seals the open run and queues its file. */
static int attr__ckseal(attr_ckey_t *ck, uint64_t safe)
{
    attr__ckrun_t *r = ck->open;
    if (r == NULL || r->n == 0) {
        return 0;
    }
    attr__ckbuild_t *b = calloc(1, sizeof *b);
    if (b == NULL || (b->sorted = malloc(r->n * sizeof *b->sorted)) == NULL) {
        free(b);
        return -ENOMEM;
    }
    r->safe = safe;
    ck->open = NULL;
    if (ck->sealed_tail != NULL) {
        ck->sealed_tail->next = r;
    } else {
        ck->sealed_head = r;
    }
    ck->sealed_tail = r;
    b->ck = ck;
    b->run = r;
    if (ck->worker == NULL || attr__ckbuild_submit(ck, b) != 0) {
        b->next_failed = ck->failed;
        ck->failed = b;
    }
    return 0;
}

/* ---- merging ---- */

typedef struct st_attr__ckmerge_t {
    attr_job_t job;
    attr_ckey_t *ck;
    attr_xidx_t *in[ATTR_CKEY_FANIN];
    attr_xidx_t *out;
    int rc;
    char err[512];
} attr__ckmerge_t;

static void attr__ckmerge_work(attr_job_t *job)
{
    attr__ckmerge_t *m = (attr__ckmerge_t *)job;
    char path[4200];
    m->rc = attr_xidx_merge(m->ck->dir, m->in, ATTR_CKEY_FANIN, 0, NULL, path, sizeof path, m->err,
                            sizeof m->err);
    if (m->rc == 0) {
        m->rc = attr_xidx_open(path, 0, &m->out, m->err, sizeof m->err);
    }
}

static void attr__ckmerge_after(attr_job_t *job)
{
    attr__ckmerge_t *m = (attr__ckmerge_t *)job;
    attr_ckey_t *ck = m->ck;
    ck->merging = 0;
    size_t at = 0;
    while (at < ck->n_files && ck->files[at] != m->in[0]) {
        at++;
    }
    if (m->rc == 0 && at + ATTR_CKEY_FANIN <= ck->n_files) {
        int64_t occ = INT64_MIN;
        for (size_t i = 0; i < ATTR_CKEY_FANIN; i++) {
            if (ck->max_occur[at + i] > occ) {
                occ = ck->max_occur[at + i];
            }
            attr_xidx_unref(ck->files[at + i]);
        }
        ck->files[at] = m->out;
        ck->max_occur[at] = occ;
        memmove(&ck->files[at + 1], &ck->files[at + ATTR_CKEY_FANIN],
                (ck->n_files - at - ATTR_CKEY_FANIN) * sizeof *ck->files);
        memmove(&ck->max_occur[at + 1], &ck->max_occur[at + ATTR_CKEY_FANIN],
                (ck->n_files - at - ATTR_CKEY_FANIN) * sizeof *ck->max_occur);
        ck->n_files -= ATTR_CKEY_FANIN - 1;
        ck->merges++;
        m->out = NULL;
    } else if (m->rc != 0) {
        yw_log(YW_LOG_WARN, "conversion keys: cannot merge files (will try again later): %s",
               m->err);
    }
    attr_xidx_unref(m->out);
    for (size_t i = 0; i < ATTR_CKEY_FANIN; i++) {
        attr_xidx_unref(m->in[i]);
    }
    free(m);
    attr__ckmaybe_merge(ck);
}

/** Merges the oldest ATTR_CKEY_FANIN consecutive files of one size class, if any. */
static void attr__ckmaybe_merge(attr_ckey_t *ck)
{
    if (ck->merging || ck->worker == NULL) {
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < ck->n_files; i++) {
        const attr_xmeta_t *mi = attr_xidx_meta(ck->files[i]);
        int same = len > 0 && attr__ckclass(ck->files[i]) == attr__ckclass(ck->files[i - 1]) &&
                   mi->first_run == attr_xidx_meta(ck->files[i - 1])->last_run + 1;
        len = same ? len + 1 : 1;
        if (len < ATTR_CKEY_FANIN) {
            continue;
        }
        attr__ckmerge_t *m = calloc(1, sizeof *m);
        if (m == NULL) {
            return;
        }
        m->ck = ck;
        for (size_t k = 0; k < ATTR_CKEY_FANIN; k++) {
            m->in[k] = ck->files[i + 1 - ATTR_CKEY_FANIN + k];
            attr_xidx_ref(m->in[k]);
        }
        m->job.work = attr__ckmerge_work;
        m->job.after = attr__ckmerge_after;
        if (attr_work_submit(ck->worker, &m->job) != 0) {
            for (size_t k = 0; k < ATTR_CKEY_FANIN; k++) {
                attr_xidx_unref(m->in[k]);
            }
            free(m);
            return;
        }
        ck->merging = 1;
        return;
    }
}

/* ---- deleting files off the loop ---- */

typedef struct st_attr__ckunlink_t {
    attr_job_t job;
    attr_xidx_t *x; /* the last reference: closed after the unlink */
    int err;
} attr__ckunlink_t;

static void attr__ckunlink_work(attr_job_t *job)
{
    attr__ckunlink_t *u = (attr__ckunlink_t *)job;
    u->err = unlink(attr_xidx_path(u->x)) != 0 && errno != ENOENT ? errno : 0;
}

static void attr__ckunlink_after(attr_job_t *job)
{
    attr__ckunlink_t *u = (attr__ckunlink_t *)job;
    if (u->err != 0) {
        yw_log(YW_LOG_WARN, "cannot delete %s: %s", attr_xidx_path(u->x), strerror(u->err));
    }
    attr_xidx_unref(u->x);
    free(u);
}

/* ---- the public functions ---- */

int attr_ckey_add(attr_ckey_t *ck, uint64_t vp, uint64_t seq, int64_t occur_ns)
{
    if (ck->open == NULL) {
        if ((ck->open = attr__ckrun_new(ck->next_run)) == NULL) {
            return -ENOMEM;
        }
        ck->next_run++;
    }
    return attr__ckrun_add(ck->open, vp, seq, occur_ns);
}

int attr_ckey_full(const attr_ckey_t *ck)
{
    return ck->open != NULL && ck->open->n >= ATTR_CKEY_RUN;
}

int attr_ckey_seal(attr_ckey_t *ck, uint64_t safe_seq)
{
    return attr__ckseal(ck, safe_seq);
}

void attr_ckey_find_mem(const attr_ckey_t *ck, uint64_t vp, void (*fn)(void *arg, uint64_t seq),
                        void *arg)
{
    for (const attr__ckrun_t *r = ck->sealed_head; r != NULL; r = r->next) {
        attr__ckrun_find(r, vp, fn, arg);
    }
    if (ck->open != NULL) {
        attr__ckrun_find(ck->open, vp, fn, arg);
    }
}

attr_ckey_snap_t *attr_ckey_snap(attr_ckey_t *ck)
{
    attr_ckey_snap_t *s = calloc(1, sizeof *s);
    if (s == NULL ||
        (s->files = malloc((ck->n_files ? ck->n_files : 1) * sizeof *s->files)) == NULL) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < ck->n_files; i++) {
        attr_xidx_ref(ck->files[i]);
        s->files[i] = ck->files[i];
    }
    s->n = ck->n_files;
    return s;
}

typedef struct st_attr__ckfind_t {
    void (*fn)(void *arg, uint64_t seq);
    void *arg;
} attr__ckfind_t;

static int attr__ckfind_entry(void *arg, const attr_xent_t *e)
{
    attr__ckfind_t *f = arg;
    f->fn(f->arg, attr__ckseq(e));
    return 0;
}

int attr_ckey_snap_find(const attr_ckey_snap_t *snap, uint64_t vp,
                        void (*fn)(void *arg, uint64_t seq), void *arg)
{
    attr__ckfind_t f = {fn, arg};
    for (size_t i = 0; i < snap->n; i++) {
        int rc = attr_xidx_find(snap->files[i], ATTR_XIDX_JOIN, vp, attr__ckfind_entry, &f);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void attr_ckey_snap_free(attr_ckey_snap_t *snap)
{
    if (snap == NULL) {
        return;
    }
    for (size_t i = 0; i < snap->n; i++) {
        attr_xidx_unref(snap->files[i]);
    }
    free(snap->files);
    free(snap);
}

void attr_ckey_tick(attr_ckey_t *ck, int64_t limit_ns)
{
    /* Builds that failed, in order (the oldest last in the list: reverse it). */
    attr__ckbuild_t *b = ck->failed, *rev = NULL;
    ck->failed = NULL;
    while (b != NULL) {
        attr__ckbuild_t *next = b->next_failed;
        b->next_failed = rev;
        rev = b;
        b = next;
    }
    while (rev != NULL) {
        attr__ckbuild_t *next = rev->next_failed;
        if (ck->worker == NULL || attr__ckbuild_submit(ck, rev) != 0) {
            rev->next_failed = ck->failed;
            ck->failed = rev;
        }
        rev = next;
    }
    /* Old files go from the front only (the chain stays whole for the next start). */
    while (!ck->merging && ck->n_files > 0 && ck->max_occur[0] < limit_ns && ck->worker != NULL) {
        attr__ckunlink_t *u = calloc(1, sizeof *u);
        if (u == NULL) {
            break;
        }
        u->x = ck->files[0];
        u->job.work = attr__ckunlink_work;
        u->job.after = attr__ckunlink_after;
        if (attr_work_submit(ck->worker, &u->job) != 0) {
            free(u);
            break;
        }
        memmove(&ck->files[0], &ck->files[1], (ck->n_files - 1) * sizeof *ck->files);
        memmove(&ck->max_occur[0], &ck->max_occur[1], (ck->n_files - 1) * sizeof *ck->max_occur);
        ck->n_files--;
    }
    attr__ckmaybe_merge(ck);
}

void attr_ckey_info(const attr_ckey_t *ck, attr_ckey_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->files = ck->n_files;
    for (size_t i = 0; i < ck->n_files; i++) {
        info->file_keys += attr_xidx_meta(ck->files[i])->n_join;
        info->mem_bytes += attr_xidx_mem(ck->files[i]);
    }
    for (const attr__ckrun_t *r = ck->sealed_head; r != NULL; r = r->next) {
        info->mem_bytes += 2 * attr__ckrun_bytes(r); /* and the worker's sorted copy */
    }
    if (ck->open != NULL) {
        info->mem_bytes += attr__ckrun_bytes(ck->open);
    }
    info->runs_written = ck->runs_written;
    info->merges = ck->merges;
    info->failures = ck->failures;
}

/* ---- open / close ---- */

static void attr__ckfree(attr_ckey_t *ck)
{
    for (size_t i = 0; i < ck->n_files; i++) {
        attr_xidx_unref(ck->files[i]);
    }
    free(ck->files);
    free(ck->max_occur);
    while (ck->failed != NULL) {
        attr__ckbuild_t *b = ck->failed;
        ck->failed = b->next_failed;
        free(b->sorted);
        free(b);
    }
    while (ck->sealed_head != NULL) {
        attr__ckrun_t *r = ck->sealed_head;
        ck->sealed_head = r->next;
        attr__ckrun_free(r);
    }
    attr__ckrun_free(ck->open);
    free(ck);
}

int attr_ckey_open(uv_loop_t *loop, const char *dir, attr_ckey_t **out, uint64_t *safe_seq,
                   char *err, size_t errlen)
{
    *out = NULL;
    *safe_seq = 0;
    attr_ckey_t *ck = calloc(1, sizeof *ck);
    if (ck == NULL) {
        attr__ckerr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ck->loop = loop;
    snprintf(ck->dir, sizeof ck->dir, "%s", dir);
    ck->next_run = 1;
    char **paths = NULL;
    size_t n = 0;
    int rc = attr_xidx_list(dir, &paths, &n);
    if (rc != 0) {
        attr__ckerr(err, errlen, "%s: cannot list: %s", dir, strerror(-rc));
        attr__ckfree(ck);
        return rc;
    }
    int broken = 0;
    for (size_t i = 0; i < n; i++) {
        attr_xidx_t *x = NULL;
        char xerr[512] = "";
        if (!broken) {
            int orc = attr_xidx_open(paths[i], 1, &x, xerr, sizeof xerr);
            const attr_xidx_t *prev = ck->n_files > 0 ? ck->files[ck->n_files - 1] : NULL;
            if (orc == -ENOMEM) {
                rc = orc;
                attr__ckerr(err, errlen, "%s", xerr);
                break;
            }
            if (orc != 0) {
                yw_log(YW_LOG_WARN,
                       "conversion keys %s: %s; it and the later files are "
                       "deleted (rebuilt from the database)",
                       paths[i], xerr);
                broken = 1;
            } else if (prev != NULL &&
                       attr_xidx_meta(x)->first_run != attr_xidx_meta(prev)->last_run + 1) {
                yw_log(YW_LOG_WARN,
                       "conversion keys %s: does not continue the previous file; it "
                       "and the later files are deleted (rebuilt from the database)",
                       paths[i]);
                broken = 1;
            } else if ((rc = attr__ckfiles_grow(ck, ck->n_files + 1)) != 0) {
                attr_xidx_unref(x);
                attr__ckerr(err, errlen, "out of memory");
                break;
            } else {
                ck->files[ck->n_files] = x;
                ck->max_occur[ck->n_files] = attr__ckfile_max_occur(x);
                ck->n_files++;
                continue;
            }
            attr_xidx_unref(x);
        }
        (void)unlink(paths[i]);
    }
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    if (rc == 0 && ck->n_files > 0) {
        const attr_xmeta_t *last = attr_xidx_meta(ck->files[ck->n_files - 1]);
        *safe_seq = last->end.seq;
        ck->next_run = last->last_run + 1;
    }
    if (rc == 0 && (rc = attr_work_open(loop, &ck->worker)) != 0) {
        attr__ckerr(err, errlen, "cannot start a thread: %s", strerror(-rc));
    }
    if (rc != 0) {
        attr__ckfree(ck);
        return rc;
    }
    *out = ck;
    return 0;
}

static void attr__ckclosed(void *arg)
{
    attr_ckey_t *ck = arg;
    void (*closed)(void *) = ck->closed;
    void *closed_arg = ck->closed_arg;
    attr__ckfree(ck);
    if (closed != NULL) {
        closed(closed_arg);
    }
}

void attr_ckey_close(attr_ckey_t *ck, void (*closed)(void *arg), void *arg)
{
    ck->closed = closed;
    ck->closed_arg = arg;
    /* What is in memory is not written: the next start adds it again from the
     * database (it is the stored conversions after the last file's safe seq). */
    attr_work_close(ck->worker, attr__ckclosed, ck);
}
