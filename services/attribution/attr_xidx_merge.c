/*
 * attr_xidx_merge.c — exposure index files read in order (a section, the rollups, the
 * seg rows: buffered sequential reads) and merged (a k-way merge of the sorted
 * sections, streamed into a new file). See attr_xidx.h.
 */
#include "services/attribution/attr_xidx.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/codec.h"
#include "common/errmsg.h"
#include "common/fileio.h"
#include "services/attribution/attr_xidx_int.h"

/* ---- sequential readers ---- */

typedef struct st_attr__xr_t {
    int fd;
    uint64_t pos, end;
    unsigned char *buf;
    size_t len, at;
} attr__xr_t;

static int attr__xr_init(attr__xr_t *r, int fd, uint64_t off, uint64_t len)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->pos = off;
    r->end = off + len;
    r->buf = malloc(ATTR_XIDX__BUF);
    return r->buf != NULL ? 0 : -ENOMEM;
}

/** Makes `n` bytes available at r->buf + r->at; -EBADMSG past the end. */
static int attr__xr_need(attr__xr_t *r, size_t n)
{
    if (r->len - r->at >= n) {
        return 0;
    }
    size_t keep = r->len - r->at;
    memmove(r->buf, r->buf + r->at, keep);
    r->at = 0;
    r->len = keep;
    uint64_t left = r->end - r->pos;
    size_t room = ATTR_XIDX__BUF - keep;
    size_t k = left < room ? (size_t)left : room;
    if (k > 0) {
        int rc = yw_pread_exact(r->fd, r->buf + keep, k, r->pos);
        if (rc != 0) {
            return rc;
        }
        r->pos += k;
        r->len += k;
    }
    return r->len >= n ? 0 : -EBADMSG;
}

int attr_xidx_scan(const attr_xidx_t *x, int section, attr_xidx_entry_fn fn, void *arg)
{
    uint64_t n = section == ATTR_XIDX_JOIN ? x->meta.n_join : x->meta.n_dedup;
    attr__xr_t r;
    int rc = attr__xr_init(&r, x->fd, x->off[section], n * sizeof(attr_xent_t));
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        rc = attr__xr_need(&r, sizeof(attr_xent_t));
        if (rc == 0) {
            attr_xent_t e;
            memcpy(&e, r.buf + r.at, sizeof e);
            r.at += sizeof e;
            rc = fn(arg, &e);
        }
    }
    free(r.buf);
    return rc;
}

int attr_xidx_rollups(const attr_xidx_t *x, attr_xidx_rollup_fn fn, void *arg)
{
    attr__xr_t r;
    int rc = attr__xr_init(&r, x->fd, x->rollup_off, x->meta.rollup_bytes);
    for (uint64_t i = 0; i < x->meta.n_rollups && rc == 0; i++) {
        rc = attr__xr_need(&r, 40);
        if (rc != 0) {
            break;
        }
        const unsigned char *p = r.buf + r.at;
        attr_xrollup_t row;
        row.seg = yw_get_le64(p);
        row.day = (int32_t)yw_get_le32(p + 8);
        row.creator_len = yw_get_le32(p + 12);
        row.impressions = (int64_t)yw_get_le64(p + 16);
        row.views = (int64_t)yw_get_le64(p + 24);
        row.clicks = (int64_t)yw_get_le64(p + 32);
        size_t size = attr_xidx__rollup_size(row.creator_len);
        if (row.creator_len > ATTR_XIDX__BUF / 2 || (rc = attr__xr_need(&r, size)) != 0) {
            rc = rc != 0 ? rc : -EBADMSG;
            break;
        }
        row.creator = (const char *)r.buf + r.at + 40;
        r.at += size;
        rc = fn(arg, &row);
    }
    free(r.buf);
    return rc;
}

int attr_xidx_segs(const attr_xidx_t *x, attr_xidx_seg_fn fn, void *arg)
{
    attr__xr_t r;
    int rc = attr__xr_init(&r, x->fd, x->seg_off, x->meta.n_segs * 24);
    for (uint64_t i = 0; i < x->meta.n_segs && rc == 0; i++) {
        rc = attr__xr_need(&r, 24);
        if (rc == 0) {
            const unsigned char *p = r.buf + r.at;
            attr_xseg_t s = {yw_get_le64(p), yw_get_le64(p + 8), (int64_t)yw_get_le64(p + 16)};
            r.at += 24;
            rc = fn(arg, &s);
        }
    }
    free(r.buf);
    return rc;
}

/* ---- merging ---- */

typedef struct st_attr__xmerge_t {
    attr__xw_t *w;
    attr__fences_t *fc;
    uint64_t min_seg;
    uint64_t count;
    attr_xmeta_t *meta;
    const _Atomic int *stop;
} attr__xmerge_t;

/** Merges `section` of the inputs into the writer (a k-way merge; k is small). */
static int attr__xmerge_section(attr_xidx_t *const *in, size_t n, int section, attr__xmerge_t *m)
{
    attr__xr_t *r = calloc(n, sizeof *r);
    attr_xent_t *head = calloc(n, sizeof *head);
    uint64_t *left = calloc(n, sizeof *left);
    int *loaded = calloc(n, sizeof *loaded);
    int rc = r != NULL && head != NULL && left != NULL && loaded != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t cnt = section == ATTR_XIDX_JOIN ? in[i]->meta.n_join : in[i]->meta.n_dedup;
        rc = attr__xr_init(&r[i], in[i]->fd, in[i]->off[section], cnt * sizeof(attr_xent_t));
        left[i] = cnt;
    }
    while (rc == 0) {
        /* Load the next entry of every input that has none loaded; pick the least. */
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (!loaded[i] && left[i] > 0) {
                if ((rc = attr__xr_need(&r[i], sizeof(attr_xent_t))) != 0) {
                    break;
                }
                memcpy(&head[i], r[i].buf + r[i].at, sizeof head[i]);
                r[i].at += sizeof head[i];
                left[i]--;
                loaded[i] = 1;
            }
            if (loaded[i] && (best == n || attr_xidx__xent_less(&head[i], &head[best]))) {
                best = i;
            }
        }
        if (rc != 0 || best == n) {
            break;
        }
        if (m->stop != NULL && (m->count & 0xffff) == 0 && atomic_load(m->stop)) {
            rc = -ECANCELED;
            break;
        }
        loaded[best] = 0;
        const attr_xent_t *e = &head[best];
        if (e->seg < m->min_seg) {
            continue;
        }
        if (m->count % ATTR_XIDX_BLOCK == 0 && attr_xidx__fence_add(m->fc, e->h) != 0) {
            rc = -ENOMEM;
            break;
        }
        attr_xidx__xw_put(m->w, e, sizeof *e);
        m->count++;
        if (m->meta->min_seg == 0 || e->seg < m->meta->min_seg) {
            m->meta->min_seg = e->seg;
        }
        if (e->seg > m->meta->max_seg) {
            m->meta->max_seg = e->seg;
        }
    }
    for (size_t i = 0; r != NULL && i < n; i++) {
        free(r[i].buf);
    }
    free(loaded);
    free(r);
    free(head);
    free(left);
    return rc;
}

typedef struct st_attr__xcopy_t {
    attr__xw_t *w;
    uint64_t min_seg;
    uint64_t rows, bytes;
} attr__xcopy_t;

static int attr__xcopy_rollup(void *arg, const attr_xrollup_t *row)
{
    attr__xcopy_t *c = arg;
    if (row->seg >= c->min_seg) {
        attr_xidx__put_rollup(c->w, row);
        c->rows++;
        c->bytes += attr_xidx__rollup_size(row->creator_len);
    }
    return 0;
}

static int attr__xcopy_seg(void *arg, const attr_xseg_t *s)
{
    attr__xcopy_t *c = arg;
    if (s->seg >= c->min_seg) {
        attr_xidx__put_seg(c->w, s);
        c->rows++;
    }
    return 0;
}

int attr_xidx_merge(const char *dir, attr_xidx_t *const *in, size_t n, uint64_t min_seg,
                    const _Atomic int *stop, char *path, size_t pathlen, char *err, size_t errlen)
{
    if (n == 0) {
        yw_errmsg_printf(err, errlen, "nothing to merge");
        return -EINVAL;
    }
    attr_xmeta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.first_run = in[0]->meta.first_run;
    meta.last_run = in[n - 1]->meta.last_run;
    meta.start = in[0]->meta.start;
    meta.end = in[n - 1]->meta.end;
    char tmp[4200];
    attr__xw_t w;
    int rc = attr_xidx__xcreate(dir, &meta, tmp, sizeof tmp, &w);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", tmp, strerror(-rc));
        return rc;
    }
    attr__fences_t fences[2];
    memset(fences, 0, sizeof fences);
    attr__xmerge_t m = {.w = &w, .min_seg = min_seg, .meta = &meta, .stop = stop};
    for (int s = 0; s < 2 && rc == 0; s++) {
        m.fc = &fences[s];
        m.count = 0;
        rc = attr__xmerge_section(in, n, s, &m);
        if (s == 0) {
            meta.n_join = m.count;
        } else {
            meta.n_dedup = m.count;
        }
    }
    attr__xcopy_t c = {.w = &w, .min_seg = min_seg};
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = attr_xidx_rollups(in[i], attr__xcopy_rollup, &c);
    }
    meta.n_rollups = c.rows;
    meta.rollup_bytes = c.bytes;
    c.rows = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = attr_xidx_segs(in[i], attr__xcopy_seg, &c);
    }
    meta.n_segs = c.rows;
    if (rc != 0) {
        close(w.fd);
        free(w.buf);
        (void)unlink(tmp);
    } else {
        rc = attr_xidx__xfinish(dir, &meta, &w, fences, tmp, path, pathlen);
    }
    free(fences[0].f);
    free(fences[1].f);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "merging runs %llu-%llu into %s: %s",
                         (unsigned long long)meta.first_run, (unsigned long long)meta.last_run, tmp,
                         strerror(-rc));
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(in[i]->path, path) != 0) {
            (void)unlink(in[i]->path);
        }
    }
    return 0;
}
