/*
 * attr_snap.c — the start-up snapshot (see attr_snap.h).
 *
 * File: a fixed header, then the body; little-endian.
 *
 *   header  "YWSNAP02" | marks (settings, conversions, refunds, touches, pruned, log
 *           end; the sums of amounts as i128) | n_creators n_multi n_wide n_unattr
 *           n_cfilters | u64 body_len | u32 crc32c(body) | u32 crc32c(header before it)
 *   body    per creator, in id order: u32 len, the id, u32 n_days, days (i32 day,
 *           u32 impressions, views, clicks), u32 n_cdays, credit days (i32 day,
 *           u32 singles, gmv, multi)
 *           multi: n_multi x (i64 credit[5], i64 gmv[5])
 *           wide: n_wide x (u32 creator, i32 day, u32 field, i128 value)
 *           unattributed: n_unattr x (i32 day, i64 count, i128 gmv)
 *           (an i128 is its low, then its high 64 bits)
 *           conversion filters: n_cfilters x (u64 cap, i64 max_occur_ns, u64 n_blocks,
 *           u64 n_keys, n_blocks x 8 u32 words)
 *
 * The cells are the state's own (attr_state.h): the snapshot is read by the binary of
 * the same format version only, and creators are interned again in id order so that
 * the ids the cells hold stay the same.
 */
#include "services/attribution/attr_snap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/codec.h"
#include "common/fileio.h"
#include "services/attribution/attr_xlog.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the snapshot's arrays are copied");
_Static_assert(sizeof(attr_day_t) == 16 && sizeof(attr_cday_t) == 16, "16-byte cells");
_Static_assert(sizeof(attr_multi_t) == 16 * ATTR_N_MODELS, "multi cells without padding");

#define ATTR__SNAP_MAGIC "YWSNAP02"
#define ATTR__SNAP_MARK_U64 20 /* settings (8 as u64) and the marks after them (12 u64) */
#define ATTR__SNAP_HDR (8 + 8 * ATTR__SNAP_MARK_U64 + 8 * 5 + 8 + 4 + 4)

struct st_attr_snap_t {
    attr_snap_marks_t marks;
    uint64_t n_creators, n_multi, n_wide, n_unattr, n_cfilters;
    unsigned char *body;
    size_t body_len;
};

/* ---- little-endian fields ---- */

typedef struct st_attr__w_t {
    unsigned char *p;
    size_t at;
} attr__w_t;

static void attr__put(attr__w_t *w, const void *src, size_t n)
{
    memcpy(w->p + w->at, src, n);
    w->at += n;
}

static void attr__put32(attr__w_t *w, uint32_t v)
{
    yw_put_le32(w->p + w->at, v);
    w->at += 4;
}

static void attr__put64(attr__w_t *w, uint64_t v)
{
    yw_put_le64(w->p + w->at, v);
    w->at += 8;
}

static void attr__put128(attr__w_t *w, attr_sum_t v)
{
    attr__put64(w, (uint64_t)v);
    attr__put64(w, (uint64_t)((unsigned __int128)v >> 64));
}

typedef struct st_attr__r_t {
    const unsigned char *p;
    size_t at, len;
    int bad;
} attr__r_t;

static const void *attr__take(attr__r_t *r, size_t n)
{
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    const void *p = r->p + r->at;
    r->at += n;
    return p;
}

static uint32_t attr__get32(attr__r_t *r)
{
    const unsigned char *p = attr__take(r, 4);
    return p != NULL ? yw_get_le32(p) : 0;
}

static uint64_t attr__get64(attr__r_t *r)
{
    const unsigned char *p = attr__take(r, 8);
    return p != NULL ? yw_get_le64(p) : 0;
}

static attr_sum_t attr__get128(attr__r_t *r)
{
    uint64_t lo = attr__get64(r);
    uint64_t hi = attr__get64(r);
    return (attr_sum_t)(((unsigned __int128)hi << 64) | lo);
}

/* ---- marks ---- */

uint64_t attr_snap_pruned_hash(const uint64_t *pruned, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ pruned[i]) * UINT64_C(1099511628211);
    }
    return h;
}

int attr_snap_log_end(const char *exp_dir, uint64_t *seg, uint64_t *size)
{
    *seg = 0;
    *size = 0;
    DIR *d = opendir(exp_dir);
    if (d == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    struct dirent *e;
    unsigned long long best = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long n;
        char tail[8];
        if (sscanf(e->d_name, "seg-%llu.%7s", &n, tail) == 2 && strcmp(tail, "log") == 0 &&
            n > best) {
            best = n;
        }
    }
    closedir(d);
    if (best == 0) {
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/seg-%020llu.log", exp_dir, best);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return -errno;
    }
    *seg = best;
    *size = (uint64_t)sb.st_size;
    return 0;
}

static void attr__put_marks(attr__w_t *w, const attr_snap_marks_t *m)
{
    const attr_settings_t *s = &m->settings;
    uint32_t cur = 0;
    memcpy(&cur, s->currency, sizeof cur < sizeof s->currency ? sizeof cur : sizeof s->currency);
    attr__put64(w, (uint64_t)s->click_window_ns);
    attr__put64(w, (uint64_t)s->view_window_ns);
    attr__put64(w, (uint64_t)s->half_life_ns);
    attr__put64(w, (uint64_t)s->engaged_view_ms);
    attr__put64(w, (uint64_t)s->late_window_ns);
    attr__put64(w, (uint64_t)(uint32_t)s->default_model | (uint64_t)cur << 32);
    attr__put64(w, (uint64_t)s->version);
    attr__put64(w, (uint64_t)s->update_ns);
    attr__put64(w, m->conversions);
    attr__put64(w, m->max_seq);
    attr__put128(w, m->amount_sum);
    attr__put64(w, m->refunds);
    attr__put128(w, m->refund_sum);
    attr__put64(w, m->touches);
    attr__put64(w, m->pruned_n);
    attr__put64(w, m->pruned_hash);
    attr__put64(w, m->log_last_seg);
    attr__put64(w, m->log_last_size);
}

static void attr__get_marks(attr__r_t *r, attr_snap_marks_t *m)
{
    attr_settings_t *s = &m->settings;
    memset(m, 0, sizeof *m);
    s->click_window_ns = (int64_t)attr__get64(r);
    s->view_window_ns = (int64_t)attr__get64(r);
    s->half_life_ns = (int64_t)attr__get64(r);
    s->engaged_view_ms = (int64_t)attr__get64(r);
    s->late_window_ns = (int64_t)attr__get64(r);
    uint64_t mc = attr__get64(r);
    s->default_model = (int)(uint32_t)mc;
    uint32_t cur = (uint32_t)(mc >> 32);
    memcpy(s->currency, &cur, sizeof s->currency);
    s->version = (int64_t)attr__get64(r);
    s->update_ns = (int64_t)attr__get64(r);
    m->conversions = attr__get64(r);
    m->max_seq = attr__get64(r);
    m->amount_sum = attr__get128(r);
    m->refunds = attr__get64(r);
    m->refund_sum = attr__get128(r);
    m->touches = attr__get64(r);
    m->pruned_n = attr__get64(r);
    m->pruned_hash = attr__get64(r);
    m->log_last_seg = attr__get64(r);
    m->log_last_size = attr__get64(r);
}

int attr_snap_matches(const attr_snap_t *s, const attr_snap_marks_t *now, char *why, size_t len)
{
    const attr_snap_marks_t *a = &s->marks;
    const attr_settings_t *x = &a->settings, *y = &now->settings;
    const char *diff = NULL;
    if (x->click_window_ns != y->click_window_ns || x->view_window_ns != y->view_window_ns ||
        x->half_life_ns != y->half_life_ns || x->engaged_view_ms != y->engaged_view_ms ||
        x->late_window_ns != y->late_window_ns || x->default_model != y->default_model ||
        memcmp(x->currency, y->currency, sizeof x->currency) != 0 || x->version != y->version) {
        diff = "the settings";
    } else if (a->conversions != now->conversions || a->max_seq != now->max_seq ||
               a->amount_sum != now->amount_sum) {
        diff = "the conversions";
    } else if (a->refunds != now->refunds || a->refund_sum != now->refund_sum) {
        diff = "the refunds";
    } else if (a->touches != now->touches) {
        diff = "the stored candidate touches";
    } else if (a->pruned_n != now->pruned_n || a->pruned_hash != now->pruned_hash) {
        diff = "the pruned segments";
    } else if (a->log_last_seg != now->log_last_seg || a->log_last_size != now->log_last_size) {
        diff = "the exposure log's end";
    }
    if (diff != NULL) {
        snprintf(why, len, "%s changed since it was written", diff);
        return 0;
    }
    return 1;
}

/* ---- writing ---- */

static size_t attr__body_size(const attr_state_t *st)
{
    uint32_t n = attr_state_n_creators(st);
    size_t b = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len = 0;
        (void)attr_intern_str(&st->creators, i, &len);
        b += 4 + len + 4 + 4;
        if (i < st->cap_creator_meta) {
            b += 16 * ((size_t)st->creator_meta[i].n_days + st->creator_meta[i].n_cdays);
        }
    }
    b += st->n_multi * sizeof(attr_multi_t) + st->n_wide * 28 + st->n_unattr * 28;
    for (size_t i = 0; i < st->n_cfilters; i++) {
        b += 32 + attr_bloom_bytes(&st->cfilters[i].bloom);
    }
    return b;
}

/** fsyncs the directory that holds `path`. */
static int attr__sync_dir(const char *path)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        *slash = '\0';
    }
    return yw_fsync_dir(dir);
}

int attr_snap_write(const char *path, const attr_state_t *st, const attr_snap_marks_t *marks,
                    char *err, size_t errlen)
{
    uint32_t n = attr_state_n_creators(st);
    size_t body = attr__body_size(st);
    unsigned char *buf = malloc(ATTR__SNAP_HDR + body);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory (%zu bytes)", ATTR__SNAP_HDR + body);
        return -ENOMEM;
    }
    attr__w_t w = {buf + ATTR__SNAP_HDR, 0};
    for (uint32_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *s = attr_intern_str(&st->creators, i, &len);
        attr__put32(&w, (uint32_t)len);
        attr__put(&w, s, len);
        const attr_creator_t *m = i < st->cap_creator_meta ? &st->creator_meta[i] : NULL;
        uint32_t nd = m != NULL ? m->n_days : 0, nc = m != NULL ? m->n_cdays : 0;
        attr__put32(&w, nd);
        if (nd > 0) {
            attr__put(&w, m->days, 16 * (size_t)nd);
        }
        attr__put32(&w, nc);
        if (nc > 0) {
            attr__put(&w, m->cdays, 16 * (size_t)nc);
        }
    }
    if (st->n_multi > 0) {
        attr__put(&w, st->multi, st->n_multi * sizeof *st->multi);
    }
    for (size_t i = 0; i < st->n_wide; i++) {
        attr__put32(&w, st->wide[i].creator);
        attr__put32(&w, (uint32_t)st->wide[i].day);
        attr__put32(&w, st->wide[i].field);
        attr__put128(&w, st->wide[i].value);
    }
    for (size_t i = 0; i < st->n_unattr; i++) {
        attr__put32(&w, (uint32_t)st->unattr[i].day);
        attr__put64(&w, (uint64_t)st->unattr[i].count);
        attr__put128(&w, st->unattr[i].gmv);
    }
    for (size_t i = 0; i < st->n_cfilters; i++) {
        const attr_cfilter_t *f = &st->cfilters[i];
        attr__put64(&w, f->cap);
        attr__put64(&w, (uint64_t)f->max_occur_ns);
        attr__put64(&w, f->bloom.n_blocks);
        attr__put64(&w, f->bloom.n_keys);
        attr__put(&w, f->bloom.words, attr_bloom_bytes(&f->bloom));
    }
    attr__w_t h = {buf, 0};
    attr__put(&h, ATTR__SNAP_MAGIC, 8);
    attr__put_marks(&h, marks);
    attr__put64(&h, n);
    attr__put64(&h, st->n_multi);
    attr__put64(&h, st->n_wide);
    attr__put64(&h, st->n_unattr);
    attr__put64(&h, st->n_cfilters);
    attr__put64(&h, body);
    attr__put32(&h, attr_crc32c(0, buf + ATTR__SNAP_HDR, body));
    attr__put32(&h, attr_crc32c(0, buf, h.at));
    if (h.at != ATTR__SNAP_HDR) {
        free(buf);
        snprintf(err, errlen, "header of %zu bytes, not %d", h.at, ATTR__SNAP_HDR);
        return -EINVAL;
    }

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = -errno;
    } else {
        rc = yw_pwrite_all(fd, buf, ATTR__SNAP_HDR + body, 0);
        if (rc == 0 && fdatasync(fd) != 0) {
            rc = -errno;
        }
        if (close(fd) != 0 && rc == 0) {
            rc = -errno;
        }
    }
    free(buf);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = attr__sync_dir(path);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        (void)unlink(tmp);
    }
    return rc;
}

/* ---- reading ---- */

void attr_snap_free(attr_snap_t *s)
{
    if (s != NULL) {
        free(s->body);
        free(s);
    }
}

int attr_snap_read(const char *path, attr_snap_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        if (rc != -ENOENT) {
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        }
        return rc;
    }
    unsigned char hdr[ATTR__SNAP_HDR];
    attr_snap_t *s = calloc(1, sizeof *s);
    int rc = s == NULL ? -ENOMEM : 0;
    const char *why = NULL;
    size_t got = 0;
    if (rc == 0 && (yw_pread_all(fd, hdr, sizeof hdr, 0, &got) != 0 || got != sizeof hdr)) {
        why = "shorter than its header";
    }
    attr__r_t r = {hdr, 0, sizeof hdr, 0};
    if (rc == 0 && why == NULL) {
        uint32_t crc = yw_get_le32(hdr + ATTR__SNAP_HDR - 4);
        if (memcmp(hdr, ATTR__SNAP_MAGIC, 8) != 0) {
            why = "not a snapshot of this version";
        } else if (crc != attr_crc32c(0, hdr, ATTR__SNAP_HDR - 4)) {
            why = "its header's CRC does not match";
        }
    }
    uint32_t body_crc = 0;
    if (rc == 0 && why == NULL) {
        (void)attr__take(&r, 8);
        attr__get_marks(&r, &s->marks);
        s->n_creators = attr__get64(&r);
        s->n_multi = attr__get64(&r);
        s->n_wide = attr__get64(&r);
        s->n_unattr = attr__get64(&r);
        s->n_cfilters = attr__get64(&r);
        uint64_t body = attr__get64(&r);
        body_crc = attr__get32(&r);
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            rc = -errno;
        } else if ((uint64_t)sb.st_size != ATTR__SNAP_HDR + body) {
            why = "its length does not match its header";
        } else if ((s->body = malloc(body ? body : 1)) == NULL) {
            rc = -ENOMEM;
        } else {
            s->body_len = body;
            rc = yw_pread_all(fd, s->body, body, ATTR__SNAP_HDR, &got);
            if (rc == 0 && got != body) {
                rc = -EIO; /* it shrank since fstat() */
            }
            if (rc == 0 && attr_crc32c(0, s->body, body) != body_crc) {
                why = "its body's CRC does not match";
            }
        }
    }
    close(fd);
    if (rc == 0 && why != NULL) {
        rc = -EBADMSG;
        snprintf(err, errlen, "%s: %s", path, why);
    } else if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    }
    if (rc != 0) {
        attr_snap_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- loading ---- */

/** Copies `n` 16-byte cells into a new array (NULL for none); -ENOMEM or -EBADMSG. */
static int attr__cells(attr__r_t *r, uint32_t n, void **arr, uint32_t *cap)
{
    *arr = NULL;
    *cap = 0;
    if (n == 0) {
        return 0;
    }
    const void *p = attr__take(r, 16 * (size_t)n);
    if (p == NULL) {
        return -EBADMSG;
    }
    if ((*arr = malloc(16 * (size_t)n)) == NULL) {
        return -ENOMEM;
    }
    memcpy(*arr, p, 16 * (size_t)n);
    *cap = n;
    return 0;
}

int attr_snap_load(const attr_snap_t *s, attr_state_t *st, char *err, size_t errlen)
{
    if (attr_state_n_creators(st) != 0 || st->n_multi != 0 || st->n_wide != 0 ||
        st->n_unattr != 0 || st->n_cfilters != 0) {
        snprintf(err, errlen, "the state is not empty");
        return -EINVAL;
    }
    attr__r_t r = {s->body, 0, s->body_len, 0};
    int rc = 0;
    if (s->n_creators > UINT32_MAX - 2 || s->n_multi > UINT32_MAX - 2 ||
        s->n_wide > s->body_len || s->n_unattr > s->body_len || s->n_cfilters > s->body_len) {
        rc = -EBADMSG;
    }
    if (rc == 0 && s->n_creators > 0) {
        st->creator_meta = calloc((size_t)s->n_creators, sizeof *st->creator_meta);
        if (st->creator_meta == NULL) {
            rc = -ENOMEM;
        } else {
            st->cap_creator_meta = (size_t)s->n_creators;
        }
    }
    for (uint64_t i = 0; rc == 0 && i < s->n_creators; i++) {
        uint32_t len = attr__get32(&r);
        const char *id = attr__take(&r, len);
        uint32_t got = UINT32_MAX;
        if (id == NULL) {
            rc = -EBADMSG;
        } else if ((rc = attr_intern(&st->creators, id, len, &got)) == 0 && got != i) {
            rc = -EBADMSG; /* a creator twice */
        }
        attr_creator_t *m = &st->creator_meta[i];
        if (rc == 0) {
            rc = attr__cells(&r, attr__get32(&r), (void **)&m->days, &m->cap_days);
            m->n_days = m->cap_days;
            st->cell_bytes += (size_t)m->cap_days * sizeof *m->days;
        }
        if (rc == 0) {
            rc = attr__cells(&r, attr__get32(&r), (void **)&m->cdays, &m->cap_cdays);
            m->n_cdays = m->cap_cdays;
            st->cell_bytes += (size_t)m->cap_cdays * sizeof *m->cdays;
        }
        for (uint32_t k = 0; rc == 0 && k < m->n_cdays; k++) {
            if (m->cdays[k].multi > s->n_multi) {
                rc = -EBADMSG;
            }
        }
    }
    if (rc == 0 && s->n_multi > 0) {
        const void *p = attr__take(&r, (size_t)s->n_multi * sizeof *st->multi);
        if (p == NULL) {
            rc = -EBADMSG;
        } else if ((st->multi = malloc((size_t)s->n_multi * sizeof *st->multi)) == NULL) {
            rc = -ENOMEM;
        } else {
            memcpy(st->multi, p, (size_t)s->n_multi * sizeof *st->multi);
            st->n_multi = st->cap_multi = (size_t)s->n_multi;
        }
    }
    if (rc == 0 && s->n_wide > 0) {
        if ((st->wide = calloc((size_t)s->n_wide, sizeof *st->wide)) == NULL) {
            rc = -ENOMEM;
        }
        for (uint64_t i = 0; rc == 0 && i < s->n_wide; i++) {
            attr_wide_t *x = &st->wide[i];
            x->creator = attr__get32(&r);
            x->day = (int32_t)attr__get32(&r);
            x->field = attr__get32(&r);
            x->value = attr__get128(&r);
            st->n_wide = st->cap_wide = (size_t)i + 1;
        }
        if (rc == 0) {
            rc = attr_state_index_wide(st);
        }
    }
    if (rc == 0 && s->n_unattr > 0) {
        if ((st->unattr = calloc((size_t)s->n_unattr, sizeof *st->unattr)) == NULL) {
            rc = -ENOMEM;
        }
        for (uint64_t i = 0; rc == 0 && i < s->n_unattr; i++) {
            attr_unattr_day_t *u = &st->unattr[i];
            u->day = (int32_t)attr__get32(&r);
            u->count = (int64_t)attr__get64(&r);
            u->gmv = attr__get128(&r);
            st->n_unattr = st->cap_unattr = (size_t)i + 1;
        }
    }
    if (rc == 0 && s->n_cfilters > 0 &&
        (st->cfilters = calloc((size_t)s->n_cfilters, sizeof *st->cfilters)) == NULL) {
        rc = -ENOMEM;
    }
    for (uint64_t i = 0; rc == 0 && i < s->n_cfilters; i++) {
        attr_cfilter_t *f = &st->cfilters[i];
        f->cap = attr__get64(&r);
        f->max_occur_ns = (int64_t)attr__get64(&r);
        uint64_t blocks = attr__get64(&r);
        uint64_t keys = attr__get64(&r);
        const void *words = blocks > 0 && blocks < (UINT64_C(1) << 32) && !r.bad
                                ? attr__take(&r, (size_t)blocks * 32)
                                : NULL;
        if (words == NULL) {
            rc = -EBADMSG;
        } else if ((f->bloom.words = malloc((size_t)blocks * 32)) == NULL) {
            rc = -ENOMEM;
        } else {
            memcpy(f->bloom.words, words, (size_t)blocks * 32);
            f->bloom.n_blocks = blocks;
            f->bloom.n_keys = keys;
            st->n_cfilters = (size_t)i + 1;
        }
    }
    if (rc == 0 && (r.bad || r.at != r.len)) {
        rc = -EBADMSG;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s",
                 rc == -EBADMSG ? "its body does not parse" : strerror(-rc));
    }
    return rc;
}

int attr_snap_check_totals(const attr_state_t *st, const attr_snap_marks_t *marks, char *why,
                           size_t len)
{
    uint32_t n = attr_state_n_creators(st);
    attr_sum_t un_count = 0, un_gmv = 0;
    attr_state_unattributed(st, INT32_MIN, INT32_MAX, &un_count, &un_gmv);
    attr_sum_t want_credit = (attr_sum_t)marks->conversions * ATTR_CREDIT_ONE;
    attr_sum_t want_gmv = marks->amount_sum - marks->refund_sum;
    for (int model = 1; model <= ATTR_N_MODELS; model++) {
        attr_sum_t credit = un_count * ATTR_CREDIT_ONE, gmv = un_gmv;
        for (uint32_t c = 0; c < n; c++) {
            attr_sums_t sums;
            attr_state_creator_sums(st, c, INT32_MIN, INT32_MAX, model, &sums);
            credit += sums.credit;
            gmv += sums.gmv;
        }
        if (credit != want_credit || gmv != want_gmv) {
            snprintf(why, len,
                     "under model %d its credits are %.3f conversions and %.17g minor units, "
                     "the database holds %llu conversions of %.17g net",
                     model, (double)credit / ATTR_CREDIT_ONE, (double)gmv,
                     (unsigned long long)marks->conversions, (double)want_gmv);
            return 0;
        }
    }
    return 1;
}
