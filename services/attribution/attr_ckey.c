/*
 * attr_ckey.c — the conversion key index. See attr_ckey.h.
 *
 * The sealed runs are built, published, merged and deleted by attr_runs.h; this file
 * says what a run of keys is (a hash table over the keys in commit order) and how its
 * file is written.
 *
 * Ownership: the index owns the open run and its attr_runs_t, which owns the sealed runs
 * until their file is published (they stay on `sealed_head` until then) and the files.
 * A snapshot owns a reference on each of its files.
 */
#include "services/attribution/attr_ckey.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "common/vec.h"
#include "services/attribution/attr_hash.h"
#include "services/attribution/attr_runs.h"

/** A run of keys in memory: appended in commit order, found through `slots`. */
typedef struct st_attr__ckrun_t {
    attr_xent_t *keys;
    size_t n, cap;
    uint32_t *slots; /* index + 1 by key hash; 0: empty */
    size_t cap_slots;
    int64_t max_occur_ns;
    uint64_t run;
    uint64_t safe;       /* set when sealed */
    attr_xent_t *sorted; /* set when sealed: the builder's copy (attr_xidx_write() sorts it) */
    struct st_attr__ckrun_t *next;
} attr__ckrun_t;

struct st_attr_ckey_t {
    attr_runs_t *runs; /* the sealed runs, their files, merges, deletions */
    attr__ckrun_t *open;
    attr__ckrun_t *sealed_head, *sealed_tail; /* waiting for their file, in order */
    uint64_t next_run;
    void (*closed)(void *arg);
    void *closed_arg;
};

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
        free(r->sorted);
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
    size_t i = yw_hash_u64(h) & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = idx + 1;
}

static int attr__ckrun_add(attr__ckrun_t *r, uint64_t vp, uint64_t seq, int64_t occur_ns)
{
    if (YW_VEC_RESERVE(r->keys, r->cap, r->n + 1, 1024) != 0) {
        return -ENOMEM;
    }
    if (2 * (r->n + 1) > r->cap_slots) {
        size_t nc = r->cap_slots ? r->cap_slots * 2 : 2048;
        uint32_t *s = attr_calloc_hot(nc, sizeof *s);
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
    for (size_t i = yw_hash_u64(vp) & mask; r->slots[i] != 0; i = (i + 1) & mask) {
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

/* ---- what a run is to attr_runs.h ---- */

/** Writes a sealed run's file: join entries (key hash, seq), its latest time in a seg row. */
static int attr__ckrun_build(void *ctx, void *run, const char *dir, attr_xidx_t **out, char *err,
                             size_t errlen)
{
    (void)ctx;
    attr__ckrun_t *r = run;
    attr_xmeta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.first_run = meta.last_run = r->run;
    meta.end.seq = r->safe;
    memcpy(r->sorted, r->keys, r->n * sizeof *r->keys);
    attr_xseg_t seg = {0, r->n, r->max_occur_ns};
    char path[4200];
    int rc = attr_xidx_write(dir, &meta, r->sorted, r->n, NULL, 0, NULL, 0, &seg, 1, path,
                             sizeof path, err, errlen);
    if (rc == 0) {
        rc = attr_xidx_open(path, 0, out, err, errlen);
    }
    if (rc != 0) {
        char what[600];
        snprintf(what, sizeof what, "run %llu (%zu keys): %s", (unsigned long long)r->run, r->n,
                 err);
        snprintf(err, errlen, "%s", what);
    }
    return rc;
}

/** Published (or closing): the run leaves memory and the list of sealed runs. */
static void attr__ckrun_release(void *ctx, void *run)
{
    attr_ckey_t *ck = ctx;
    attr__ckrun_t **pp = &ck->sealed_head, *prev = NULL;
    while (*pp != NULL && *pp != run) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp != NULL) {
        *pp = ((attr__ckrun_t *)run)->next;
        if (ck->sealed_tail == run) {
            ck->sealed_tail = prev;
        }
    }
    attr__ckrun_free(run);
}

static const attr_runs_ops_t attr__ckrun_ops = {
    .build = attr__ckrun_build,
    .release = attr__ckrun_release,
    .discard = attr__ckrun_release,
};

/** Seals the open run and queues its file. */
static int attr__ckseal(attr_ckey_t *ck, uint64_t safe)
{
    attr__ckrun_t *r = ck->open;
    if (r == NULL || r->n == 0) {
        return 0;
    }
    if ((r->sorted = malloc(r->n * sizeof *r->sorted)) == NULL) {
        return -ENOMEM;
    }
    r->safe = safe;
    if (attr_runs_seal(ck->runs, r) != 0) {
        free(r->sorted);
        r->sorted = NULL;
        return -ENOMEM;
    }
    ck->open = NULL;
    if (ck->sealed_tail != NULL) {
        ck->sealed_tail->next = r;
    } else {
        ck->sealed_head = r;
    }
    ck->sealed_tail = r;
    return 0;
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
    size_t n;
    attr_xidx_t *const *files = attr_runs_files(ck->runs, &n);
    attr_ckey_snap_t *s = calloc(1, sizeof *s);
    if (s == NULL || (s->files = malloc((n ? n : 1) * sizeof *s->files)) == NULL) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        attr_xidx_ref(files[i]);
        s->files[i] = files[i];
    }
    s->n = n;
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

/** attr_runs_drop_if(): a file whose conversions all happened before the limit. */
static int attr__ckfile_old(void *arg, const attr_xidx_t *x, int64_t latest)
{
    (void)x;
    return latest < *(const int64_t *)arg;
}

void attr_ckey_tick(attr_ckey_t *ck, int64_t limit_ns)
{
    /* Old files go from the front only (the chain stays whole for the next start); then
     * builds that failed are tried again and merges start. */
    (void)attr_runs_drop_if(ck->runs, 1, attr__ckfile_old, &limit_ns);
    attr_runs_tick(ck->runs);
}

void attr_ckey_info(const attr_ckey_t *ck, attr_ckey_info_t *info)
{
    memset(info, 0, sizeof *info);
    attr_runs_info_t ri;
    attr_runs_info(ck->runs, &ri);
    info->files = ri.files;
    info->file_keys = ri.join_entries;
    info->mem_bytes = ri.fence_bytes;
    for (const attr__ckrun_t *r = ck->sealed_head; r != NULL; r = r->next) {
        info->mem_bytes += 2 * attr__ckrun_bytes(r); /* and the worker's sorted copy */
    }
    if (ck->open != NULL) {
        info->mem_bytes += attr__ckrun_bytes(ck->open);
    }
    info->runs_written = ri.built;
    info->merges = ri.merges;
    info->failures = ri.failures;
}

/* ---- open / close ---- */

/** Frees what the index holds but its runs module (closed first, or never opened). */
static void attr__ckfree(attr_ckey_t *ck)
{
    while (ck->sealed_head != NULL) {
        attr__ckrun_t *r = ck->sealed_head;
        ck->sealed_head = r->next;
        attr__ckrun_free(r);
    }
    attr__ckrun_free(ck->open);
    free(ck);
}

/**
 * attr_runs_load(): keeps the files that are whole and continue each other by run
 * number; a damaged file or a gap drops it and every later one.
 */
static attr_runs_verdict_t attr__ckjudge(void *arg, const char *path, const attr_xidx_t *x,
                                         const char *why, const attr_xidx_t *prev)
{
    (void)arg;
    if (x == NULL) {
        yw_log(YW_LOG_WARN,
               "conversion keys %s: %s; it and the later files are "
               "deleted (rebuilt from the database)",
               path, why);
        return ATTR_RUNS_DROP_REST;
    }
    if (prev != NULL && attr_xidx_meta(x)->first_run != attr_xidx_meta(prev)->last_run + 1) {
        yw_log(YW_LOG_WARN,
               "conversion keys %s: does not continue the previous file; it "
               "and the later files are deleted (rebuilt from the database)",
               path);
        return ATTR_RUNS_DROP_REST;
    }
    return ATTR_RUNS_KEEP;
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

int attr_ckey_open(uv_loop_t *loop, const char *dir, attr_ckey_t **out, uint64_t *safe_seq,
                   char *err, size_t errlen)
{
    *out = NULL;
    *safe_seq = 0;
    attr_ckey_t *ck = calloc(1, sizeof *ck);
    if (ck == NULL) {
        yw_errmsg_printf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ck->next_run = 1;
    const attr_runs_cfg_t cfg = {
        .dir = dir,
        .what = "conversion keys",
        .fanin = ATTR_CKEY_FANIN,
        .lanes = 1,
        .keep_for_views = 0, /* a lookup takes the runs' keys and the files at once */
        .ops = &attr__ckrun_ops,
        .ctx = ck,
    };
    int rc = attr_runs_open(&cfg, &ck->runs);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "out of memory");
        attr__ckfree(ck);
        return rc;
    }
    rc = attr_runs_load(ck->runs, attr__ckjudge, ck, NULL, err, errlen);
    size_t n;
    attr_xidx_t *const *files = attr_runs_files(ck->runs, &n);
    if (rc == 0 && n > 0) {
        const attr_xmeta_t *last = attr_xidx_meta(files[n - 1]);
        *safe_seq = last->end.seq;
        ck->next_run = last->last_run + 1;
    }
    if (rc == 0 && (rc = attr_runs_start(ck->runs, loop)) != 0) {
        yw_errmsg_printf(err, errlen, "cannot start a thread: %s", strerror(-rc));
    }
    if (rc != 0) {
        attr_runs_close(ck->runs, NULL, NULL);
        attr__ckfree(ck);
        return rc;
    }
    *out = ck;
    return 0;
}

void attr_ckey_close(attr_ckey_t *ck, void (*closed)(void *arg), void *arg)
{
    ck->closed = closed;
    ck->closed_arg = arg;
    /* What is in memory is not written: the next start adds it again from the
     * database (it is the stored conversions after the last file's safe seq). */
    attr_runs_close(ck->runs, attr__ckclosed, ck);
}
