/*
 * attr_xidx.c — exposure index files: writing (sort, then one sequential write),
 * opening (header, CRCs, fences), lookups (fences in memory, one block read with pread)
 * and listing. Sequential reads and merges are attr_xidx_merge.c. See attr_xidx.h.
 */
#define _GNU_SOURCE /* sync_file_range, O_NOATIME */
#include "services/attribution/attr_xidx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "services/attribution/attr_xlog.h"
#include "common/codec.h"
#include "common/errmsg.h"
#include "common/fileio.h"
#include "common/vec.h"
#include "services/attribution/attr_xidx_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "attr_xidx.c writes its entries as they are in memory: little-endian hosts only"
#endif

#define ATTR__XMAGIC "YWEXPIDX"
#define ATTR__XVERSION 1u
#define ATTR__XHDR 128

_Static_assert(ATTR_XIDX_SYNC_BYTES % ATTR_XIDX__BUF == 0, "flushes end on sync boundaries");

int attr_xpos_cmp(attr_xpos_t a, attr_xpos_t b)
{
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    return a.off < b.off ? -1 : a.off > b.off;
}

static int attr__xent_cmp(const void *pa, const void *pb)
{
    const attr_xent_t *a = pa, *b = pb;
    if (a->h != b->h) {
        return a->h < b->h ? -1 : 1;
    }
    if (a->seg != b->seg) {
        return a->seg < b->seg ? -1 : 1;
    }
    return a->off < b->off ? -1 : a->off > b->off;
}

int attr_xidx__xent_less(const attr_xent_t *a, const attr_xent_t *b)
{
    return attr__xent_cmp(a, b) < 0;
}

/** Sorts entries: LSD radix sort on the hash (8 passes of 8 bits), stable, so ties keep
 *  the (segment, offset) order they were given in — callers give them in log order. */
static int attr__xsort(attr_xent_t *e, size_t n)
{
    if (n < 2) {
        return 0;
    }
    if (n < 4096) {
        qsort(e, n, sizeof *e, attr__xent_cmp);
        return 0;
    }
    attr_xent_t *tmp = malloc(n * sizeof *tmp);
    if (tmp == NULL) {
        return -ENOMEM;
    }
    attr_xent_t *src = e, *dst = tmp;
    for (int pass = 0; pass < 8; pass++) {
        size_t count[256] = {0};
        int shift = 8 * pass;
        for (size_t i = 0; i < n; i++) {
            count[(src[i].h >> shift) & 0xff]++;
        }
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            dst[count[(src[i].h >> shift) & 0xff]++] = src[i];
        }
        attr_xent_t *t = src;
        src = dst;
        dst = t;
    }
    /* Eight passes: the result is back in `e`. */
    free(tmp);
    return 0;
}

/* ---- buffered writer with a running CRC ---- */

static void attr__xw_flush(attr__xw_t *w)
{
    if (w->rc == 0 && w->len > 0) {
        w->rc = yw_pwrite_all(w->fd, w->buf, w->len, w->pos);
    }
    w->pos += w->len;
    w->len = 0;
    /* Start writing back what is done, and wait for the stretch before it: the disk
     * sees a steady trickle instead of one burst at the final fdatasync. A hint: its
     * errors are the fdatasync's to report. */
    if (w->rc == 0 && w->pos - w->synced >= ATTR_XIDX_SYNC_BYTES) {
        if (w->synced >= ATTR_XIDX_SYNC_BYTES) {
            (void)sync_file_range(w->fd, (off_t)(w->synced - ATTR_XIDX_SYNC_BYTES),
                                  ATTR_XIDX_SYNC_BYTES, SYNC_FILE_RANGE_WAIT_BEFORE);
        }
        (void)sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->pos - w->synced),
                              SYNC_FILE_RANGE_WRITE);
        w->synced = w->pos;
    }
}

void attr_xidx__xw_put(attr__xw_t *w, const void *p, size_t n)
{
    if (n == 0) {
        return; /* `p` may be NULL then */
    }
    const unsigned char *c = p;
    w->crc = attr_crc32c(w->crc, c, n);
    while (n > 0) {
        size_t room = ATTR_XIDX__BUF - w->len;
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, c, k);
        w->len += k;
        c += k;
        n -= k;
        if (w->len == ATTR_XIDX__BUF) {
            attr__xw_flush(w);
        }
    }
}

/* ---- fences ---- */

int attr_xidx__fence_add(attr__fences_t *fc, uint64_t h)
{
    if (YW_VEC_GROW(fc->f, fc->n, fc->cap, 1, 64) != 0) {
        return -ENOMEM;
    }
    fc->f[fc->n++] = h;
    return 0;
}

/* ---- file names ---- */

static void attr__xname(const char *dir, uint64_t first, uint64_t last, const char *suffix,
                        char *buf, size_t len)
{
    snprintf(buf, len, "%s/idx-%020llu-%020llu.xidx%s", dir, (unsigned long long)first,
             (unsigned long long)last, suffix);
}

/* ---- writing ---- */

static void attr__put_header(unsigned char *h, const attr_xmeta_t *m, uint32_t body_crc)
{
    memset(h, 0, ATTR__XHDR);
    memcpy(h, ATTR__XMAGIC, 8);
    yw_put_le32(h + 8, ATTR__XVERSION);
    yw_put_le32(h + 12, ATTR_XIDX_BLOCK);
    yw_put_le64(h + 16, m->first_run);
    yw_put_le64(h + 24, m->last_run);
    yw_put_le64(h + 32, m->start.seq);
    yw_put_le64(h + 40, m->start.off);
    yw_put_le64(h + 48, m->end.seq);
    yw_put_le64(h + 56, m->end.off);
    yw_put_le64(h + 64, m->n_join);
    yw_put_le64(h + 72, m->n_dedup);
    yw_put_le64(h + 80, m->n_rollups);
    yw_put_le64(h + 88, m->rollup_bytes);
    yw_put_le64(h + 96, m->n_segs);
    yw_put_le64(h + 104, m->min_seg);
    yw_put_le64(h + 112, m->max_seg);
    yw_put_le32(h + 120, body_crc);
    yw_put_le32(h + 124, attr_crc32c(0, h, 124));
}

size_t attr_xidx__rollup_size(uint32_t creator_len)
{
    return (40 + (size_t)creator_len + 7) & ~(size_t)7;
}

void attr_xidx__put_rollup(attr__xw_t *w, const attr_xrollup_t *r)
{
    unsigned char row[40];
    yw_put_le64(row, r->seg);
    yw_put_le32(row + 8, (uint32_t)r->day);
    yw_put_le32(row + 12, r->creator_len);
    yw_put_le64(row + 16, (uint64_t)r->impressions);
    yw_put_le64(row + 24, (uint64_t)r->views);
    yw_put_le64(row + 32, (uint64_t)r->clicks);
    attr_xidx__xw_put(w, row, sizeof row);
    attr_xidx__xw_put(w, r->creator, r->creator_len);
    static const unsigned char zeros[8] = {0};
    size_t pad = attr_xidx__rollup_size(r->creator_len) - 40 - r->creator_len;
    attr_xidx__xw_put(w, zeros, pad);
}

void attr_xidx__put_seg(attr__xw_t *w, const attr_xseg_t *s)
{
    unsigned char row[24];
    yw_put_le64(row, s->seg);
    yw_put_le64(row + 8, s->events);
    yw_put_le64(row + 16, (uint64_t)s->max_arrival_ns);
    attr_xidx__xw_put(w, row, sizeof row);
}

/** Opens the temporary file of runs first..last for writing. */
int attr_xidx__xcreate(const char *dir, const attr_xmeta_t *m, char *tmp, size_t tmplen,
                       attr__xw_t *w)
{
    attr__xname(dir, m->first_run, m->last_run, ".tmp", tmp, tmplen);
    (void)unlink(tmp);
    memset(w, 0, sizeof *w);
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        return -errno;
    }
    w->buf = malloc(ATTR_XIDX__BUF);
    if (w->buf == NULL) {
        close(w->fd);
        (void)unlink(tmp);
        return -ENOMEM;
    }
    w->pos = ATTR__XHDR;
    return 0;
}

/** Writes fences and header, syncs, renames into place. Closes and frees the writer. */
int attr_xidx__xfinish(const char *dir, attr_xmeta_t *m, attr__xw_t *w,
                       const attr__fences_t fences[2], const char *tmp, char *path, size_t pathlen)
{
    for (int s = 0; s < 2; s++) {
        attr_xidx__xw_put(w, fences[s].f, fences[s].n * sizeof *fences[s].f);
    }
    attr__xw_flush(w);
    int rc = w->rc;
    if (rc == 0) {
        unsigned char hdr[ATTR__XHDR];
        attr__put_header(hdr, m, w->crc);
        rc = yw_pwrite_all(w->fd, hdr, sizeof hdr, 0);
    }
    if (rc == 0 && fdatasync(w->fd) != 0) {
        rc = -errno;
    }
    close(w->fd);
    free(w->buf);
    w->buf = NULL;
    attr__xname(dir, m->first_run, m->last_run, "", path, pathlen);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = yw_fsync_dir(dir);
    }
    if (rc != 0) {
        (void)unlink(tmp);
    }
    return rc;
}

static int attr__put_section(attr__xw_t *w, const attr_xent_t *e, size_t n, attr__fences_t *fc)
{
    for (size_t i = 0; i < n; i += ATTR_XIDX_BLOCK) {
        if (attr_xidx__fence_add(fc, e[i].h) != 0) {
            return -ENOMEM;
        }
    }
    attr_xidx__xw_put(w, e, n * sizeof *e);
    return 0;
}

static void attr__minmax_seg(attr_xmeta_t *m, const attr_xent_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (m->min_seg == 0 || e[i].seg < m->min_seg) {
            m->min_seg = e[i].seg;
        }
        if (e[i].seg > m->max_seg) {
            m->max_seg = e[i].seg;
        }
    }
}

int attr_xidx_write(const char *dir, attr_xmeta_t *meta, attr_xent_t *join, size_t n_join,
                    attr_xent_t *dedup, size_t n_dedup, const attr_xrollup_t *rollups,
                    size_t n_rollups, const attr_xseg_t *segs, size_t n_segs, char *path,
                    size_t pathlen, char *err, size_t errlen)
{
    int rc = attr__xsort(join, n_join);
    if (rc == 0) {
        rc = attr__xsort(dedup, n_dedup);
    }
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "index of runs %llu-%llu: out of memory sorting",
                         (unsigned long long)meta->first_run, (unsigned long long)meta->last_run);
        return rc;
    }
    meta->n_join = n_join;
    meta->n_dedup = n_dedup;
    meta->n_rollups = n_rollups;
    meta->n_segs = n_segs;
    meta->min_seg = meta->max_seg = 0;
    attr__minmax_seg(meta, dedup, n_dedup);
    attr__minmax_seg(meta, join, n_join);
    meta->rollup_bytes = 0;
    for (size_t i = 0; i < n_rollups; i++) {
        meta->rollup_bytes += attr_xidx__rollup_size(rollups[i].creator_len);
    }
    char tmp[4200];
    attr__xw_t w;
    rc = attr_xidx__xcreate(dir, meta, tmp, sizeof tmp, &w);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", tmp, strerror(-rc));
        return rc;
    }
    attr__fences_t fences[2];
    memset(fences, 0, sizeof fences);
    if (attr__put_section(&w, join, n_join, &fences[0]) != 0 ||
        attr__put_section(&w, dedup, n_dedup, &fences[1]) != 0) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < n_rollups; i++) {
        attr_xidx__put_rollup(&w, &rollups[i]);
    }
    for (size_t i = 0; rc == 0 && i < n_segs; i++) {
        attr_xidx__put_seg(&w, &segs[i]);
    }
    if (rc != 0) {
        close(w.fd);
        free(w.buf);
        (void)unlink(tmp);
    } else {
        rc = attr_xidx__xfinish(dir, meta, &w, fences, tmp, path, pathlen);
    }
    free(fences[0].f);
    free(fences[1].f);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot write: %s", tmp, strerror(-rc));
    }
    return rc;
}

/* ---- opening ---- */

const attr_xmeta_t *attr_xidx_meta(const attr_xidx_t *x)
{
    return &x->meta;
}

const char *attr_xidx_path(const attr_xidx_t *x)
{
    return x->path;
}

size_t attr_xidx_mem(const attr_xidx_t *x)
{
    return sizeof *x + strlen(x->path) + 1 +
           (size_t)(x->n_fences[0] + x->n_fences[1]) * sizeof(uint64_t);
}

static void attr__xfree(attr_xidx_t *x)
{
    if (x->fd >= 0) {
        close(x->fd);
    }
    free(x->fences[0]);
    free(x->fences[1]);
    free(x);
}

void attr_xidx_ref(attr_xidx_t *x)
{
    atomic_fetch_add(&x->refs, 1);
}

void attr_xidx_unref(attr_xidx_t *x)
{
    if (x != NULL && atomic_fetch_sub(&x->refs, 1) == 1) {
        attr__xfree(x);
    }
}

static int attr__xverify(attr_xidx_t *x, uint64_t body_len, uint32_t want)
{
    unsigned char *buf = malloc(ATTR_XIDX__BUF);
    if (buf == NULL) {
        return -ENOMEM;
    }
    uint32_t crc = 0;
    uint64_t off = ATTR__XHDR, left = body_len;
    int rc = 0;
    while (left > 0 && rc == 0) {
        size_t n = left < ATTR_XIDX__BUF ? (size_t)left : ATTR_XIDX__BUF;
        rc = yw_pread_exact(x->fd, buf, n, off);
        crc = attr_crc32c(crc, buf, n);
        off += n;
        left -= n;
    }
    free(buf);
    return rc != 0 ? rc : crc == want ? 0 : -EBADMSG;
}

int attr_xidx_open(const char *path, int verify, attr_xidx_t **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t plen = strlen(path);
    attr_xidx_t *x = calloc(1, sizeof *x + plen + 1);
    if (x == NULL) {
        yw_errmsg_printf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    memcpy(x->path, path, plen + 1);
    atomic_init(&x->refs, 1);
    /* No access times: lookups read these files all the time. Only the owner may ask. */
    x->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (x->fd < 0 && errno == EPERM) {
        x->fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (x->fd < 0) {
        int e = -errno;
        yw_errmsg_printf(err, errlen, "%s: cannot open: %s", path, strerror(-e));
        attr__xfree(x);
        return e;
    }
    unsigned char h[ATTR__XHDR];
    struct stat st;
    int rc = fstat(x->fd, &st) != 0 ? -errno : 0;
    if (rc == 0) {
        rc = yw_pread_exact(x->fd, h, sizeof h, 0);
    }
    if (rc == 0 && (memcmp(h, ATTR__XMAGIC, 8) != 0 || yw_get_le32(h + 8) != ATTR__XVERSION ||
                    yw_get_le32(h + 12) != ATTR_XIDX_BLOCK ||
                    yw_get_le32(h + 124) != attr_crc32c(0, h, 124))) {
        rc = -EBADMSG;
    }
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: %s", path,
                         rc == -EBADMSG ? "not a whole exposure index file (bad header)"
                                        : strerror(-rc));
        attr__xfree(x);
        return rc;
    }
    attr_xmeta_t *m = &x->meta;
    m->first_run = yw_get_le64(h + 16);
    m->last_run = yw_get_le64(h + 24);
    m->start.seq = yw_get_le64(h + 32);
    m->start.off = yw_get_le64(h + 40);
    m->end.seq = yw_get_le64(h + 48);
    m->end.off = yw_get_le64(h + 56);
    m->n_join = yw_get_le64(h + 64);
    m->n_dedup = yw_get_le64(h + 72);
    m->n_rollups = yw_get_le64(h + 80);
    m->rollup_bytes = yw_get_le64(h + 88);
    m->n_segs = yw_get_le64(h + 96);
    m->min_seg = yw_get_le64(h + 104);
    m->max_seg = yw_get_le64(h + 112);
    for (int s = 0; s < 2; s++) {
        uint64_t n = s == 0 ? m->n_join : m->n_dedup;
        x->n_fences[s] = (n + ATTR_XIDX_BLOCK - 1) / ATTR_XIDX_BLOCK;
    }
    x->off[0] = ATTR__XHDR;
    x->off[1] = x->off[0] + m->n_join * sizeof(attr_xent_t);
    x->rollup_off = x->off[1] + m->n_dedup * sizeof(attr_xent_t);
    x->seg_off = x->rollup_off + m->rollup_bytes;
    uint64_t fence_off = x->seg_off + m->n_segs * 24;
    uint64_t end = fence_off + (x->n_fences[0] + x->n_fences[1]) * sizeof(uint64_t);
    if (m->n_join > (UINT64_C(1) << 40) || m->n_dedup > (UINT64_C(1) << 40) ||
        m->rollup_bytes > (UINT64_C(1) << 40) || m->n_segs > (UINT64_C(1) << 32) ||
        end != (uint64_t)st.st_size) {
        yw_errmsg_printf(err, errlen, "%s: not a whole exposure index file (%llu bytes, want %llu)",
                         path, (unsigned long long)st.st_size, (unsigned long long)end);
        attr__xfree(x);
        return -EBADMSG;
    }
    if (verify && (rc = attr__xverify(x, end - ATTR__XHDR, yw_get_le32(h + 120))) != 0) {
        yw_errmsg_printf(err, errlen, "%s: %s", path,
                         rc == -EBADMSG ? "body CRC mismatch" : strerror(-rc));
        attr__xfree(x);
        return rc;
    }
    for (int s = 0; s < 2 && rc == 0; s++) {
        size_t n = (size_t)x->n_fences[s];
        x->fences[s] = malloc((n ? n : 1) * sizeof(uint64_t));
        if (x->fences[s] == NULL) {
            rc = -ENOMEM;
            break;
        }
        rc = yw_pread_exact(x->fd, x->fences[s], n * sizeof(uint64_t), fence_off);
        fence_off += n * sizeof(uint64_t);
    }
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: reading fences: %s", path, strerror(-rc));
        attr__xfree(x);
        return rc;
    }
    *out = x;
    return 0;
}

/* ---- lookups ---- */

/**
 * The first i in [0, n) with f[i] >= h (n when none). The hashes are uniform, so a few
 * interpolation steps land next to the answer (each a cache miss, against ~log2(n) of a
 * bisection over a fence array far bigger than the cache); they are bounded, and
 * bisection finishes, so that skewed data costs no more than a bisection.
 */
static uint64_t attr__lower_bound(const uint64_t *f, uint64_t n, uint64_t h)
{
    uint64_t lo = 0, hi = n; /* the answer is in [lo, hi] */
    for (int step = 0; step < 4 && hi - lo > 16; step++) {
        uint64_t a = f[lo], b = f[hi - 1];
        if (h <= a) {
            return lo;
        }
        if (h > b) {
            return hi;
        }
        /* a < h <= b: aim at where h would be if f were a straight line. */
        uint64_t pos = lo + (uint64_t)((__uint128_t)(h - a) * (hi - 1 - lo) / (b - a));
        if (f[pos] < h) {
            lo = pos + 1;
        } else {
            hi = pos;
        }
        /* Look next door: the answer is usually a few fences away. */
        if (hi - lo > 16) {
            if (lo > 0 && f[lo] >= h) {
                hi = lo;
            } else if (hi < n && f[hi - 1] < h) {
                lo = hi;
            } else if (f[lo] < h && f[lo + 8] >= h) {
                hi = lo + 8;
            } else if (f[hi - 1] >= h && f[hi - 9] < h) {
                lo = hi - 8;
            }
        }
    }
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (f[mid] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int attr_xidx_find(const attr_xidx_t *x, int section, uint64_t h, attr_xidx_entry_fn fn, void *arg)
{
    const uint64_t *f = x->fences[section];
    uint64_t nf = x->n_fences[section];
    uint64_t n = section == ATTR_XIDX_JOIN ? x->meta.n_join : x->meta.n_dedup;
    if (n == 0) {
        return 0;
    }
    /* The first fence >= h; the run of h may begin in the block before it. */
    uint64_t lo = attr__lower_bound(f, nf, h);
    uint64_t b = lo > 0 ? lo - 1 : 0;
    attr_xent_t blk[ATTR_XIDX_BLOCK];
    for (; b < nf; b++) {
        if (b + 1 < nf && f[b + 1] < h) {
            continue; /* cannot hold h */
        }
        if (f[b] > h) {
            return 0;
        }
        uint64_t first = b * ATTR_XIDX_BLOCK;
        size_t cnt = (size_t)(n - first < ATTR_XIDX_BLOCK ? n - first : ATTR_XIDX_BLOCK);
        int rc =
            yw_pread_exact(x->fd, blk, cnt * sizeof *blk, x->off[section] + first * sizeof *blk);
        if (rc != 0) {
            return rc;
        }
        if (blk[0].h != f[b]) {
            return -EBADMSG;
        }
        for (size_t i = 0; i < cnt; i++) {
            if (blk[i].h < h) {
                continue;
            }
            if (blk[i].h > h) {
                return 0;
            }
            if ((rc = fn(arg, &blk[i])) != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* ---- listing ---- */

static int attr__xparse(const char *name, uint64_t *first, uint64_t *last, int *tmp)
{
    /* idx-<20>-<20>.xidx[.tmp] */
    size_t len = strlen(name);
    if (strncmp(name, "idx-", 4) != 0 || (len != 50 && len != 54) || name[24] != '-' ||
        strncmp(name + 45, ".xidx", 5) != 0 || (len == 54 && strcmp(name + 50, ".tmp") != 0)) {
        return -1;
    }
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 20; i++) {
        char c1 = name[4 + i], c2 = name[25 + i];
        if (c1 < '0' || c1 > '9' || c2 < '0' || c2 > '9') {
            return -1;
        }
        a = a * 10 + (uint64_t)(c1 - '0');
        b = b * 10 + (uint64_t)(c2 - '0');
    }
    *first = a;
    *last = b;
    *tmp = len == 54;
    return 0;
}

typedef struct st_attr__xname_t {
    uint64_t first, last;
    char *path;
} attr__xname_t;

static int attr__xname_cmp(const void *pa, const void *pb)
{
    const attr__xname_t *a = pa, *b = pb;
    if (a->first != b->first) {
        return a->first < b->first ? -1 : 1;
    }
    /* The bigger (merged) file first. */
    return a->last > b->last ? -1 : a->last < b->last;
}

int attr_xidx_list(const char *dir, char ***paths, size_t *n)
{
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    attr__xname_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t first, last;
        int tmp;
        if (attr__xparse(e->d_name, &first, &last, &tmp) != 0) {
            continue;
        }
        size_t plen = strlen(dir) + 1 + strlen(e->d_name) + 1;
        char *p = malloc(plen);
        if (p == NULL) {
            rc = -ENOMEM;
            break;
        }
        snprintf(p, plen, "%s/%s", dir, e->d_name);
        if (tmp) {
            (void)unlink(p); /* an interrupted write */
            free(p);
            continue;
        }
        if (YW_VEC_GROW(v, cnt, cap, 1, 16) != 0) {
            free(p);
            rc = -ENOMEM;
            break;
        }
        v[cnt++] = (attr__xname_t){first, last, p};
    }
    if (rc == 0 && errno != 0) {
        rc = -errno;
    }
    closedir(d);
    char **out = rc == 0 ? malloc((cnt ? cnt : 1) * sizeof *out) : NULL;
    if (rc == 0 && out == NULL) {
        rc = -ENOMEM;
    }
    if (rc != 0) {
        for (size_t i = 0; i < cnt; i++) {
            free(v[i].path);
        }
        free(v);
        return rc;
    }
    if (cnt > 1) {
        qsort(v, cnt, sizeof *v, attr__xname_cmp);
    }
    for (size_t i = 0; i < cnt; i++) {
        out[i] = v[i].path;
    }
    free(v);
    *paths = out;
    *n = cnt;
    return 0;
}
