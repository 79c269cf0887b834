/*
 * attr_xlog_read.c — the exposure log's reading: replay of a segment with torn-tail
 * repair (versions 1 and 2), records read alone from their offsets, and the upgrade of
 * a version 1 segment to version 2. See attr_xlog.h.
 *
 * Threads: nothing here touches shared state: any thread may call it.
 */
#include "services/attribution/attr_xlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/fileio.h"
#include "common/vec.h"
#include "services/attribution/attr_xlog_int.h"

/** What attr_xlog_read_record() reads first: most records fit. */
#define ATTR_XLOG__REC_PEEK 256

/* ---- reading ---- */

/** Per-segment id -> string maps of the four spaces. */
typedef struct st_attr__idmap_t {
    attr_str_t *map[ATTR_XLOG_N_SPACES];
    size_t cap[ATTR_XLOG_N_SPACES];
} attr__idmap_t;

static void attr__idmap_free(attr__idmap_t *m)
{
    for (int s = 0; s < ATTR_XLOG_N_SPACES; s++) {
        free(m->map[s]);
    }
}

static int attr__idmap_set(attr__idmap_t *m, int space, uint64_t id, attr_str_t v)
{
    if (id >= UINT32_MAX) {
        return -EBADMSG;
    }
    size_t old = m->cap[space];
    if (YW_VEC_RESERVE(m->map[space], m->cap[space], (size_t)id + 1, 1024) != 0) {
        return -ENOMEM;
    }
    if (m->cap[space] > old) {
        memset(m->map[space] + old, 0, (m->cap[space] - old) * sizeof *m->map[space]);
    }
    m->map[space][id] = v;
    return 0;
}

static const attr_str_t *attr__idmap_get(const attr__idmap_t *m, int space, uint64_t id)
{
    if (id >= m->cap[space] || m->map[space][id].s == NULL) {
        return NULL;
    }
    return &m->map[space][id];
}

typedef struct st_attr__reader_t {
    attr__idmap_t ids;
    attr_str_t *products;
    size_t products_cap;
    uint32_t version;
} attr__reader_t;

static int attr__products_room(attr_str_t **products, size_t *cap, uint64_t np)
{
    return YW_VEC_RESERVE(*products, *cap, (size_t)np, 16);
}

static int attr__get_str(const unsigned char *b, size_t end, size_t *pos, attr_str_t *out)
{
    uint64_t l;
    if (yw_varint_get(b, end, pos, &l) != 0 || l > end - *pos) {
        return -1;
    }
    out->s = (const char *)b + *pos;
    out->len = (uint32_t)l;
    *pos += l;
    return 0;
}

/**
 * Decodes the fields of a version 2 record from its kind byte at b[pos] to `end` (the
 * end of the record). Returns 0, -EBADMSG or -ENOMEM.
 */
static int attr__decode_exp2(const unsigned char *b, size_t pos, size_t end, attr_str_t **products,
                             size_t *products_cap, attr_xlog_event_t *ev)
{
    uint64_t watch, occ, np;
    if (pos >= end) {
        return -EBADMSG;
    }
    ev->kind = b[pos++];
    if (yw_varint_get(b, end, &pos, &watch) != 0 || yw_varint_get(b, end, &pos, &occ) != 0 ||
        attr__get_str(b, end, &pos, &ev->event_id) != 0 ||
        attr__get_str(b, end, &pos, &ev->viewer) != 0 ||
        attr__get_str(b, end, &pos, &ev->creator) != 0 ||
        attr__get_str(b, end, &pos, &ev->note) != 0 || yw_varint_get(b, end, &pos, &np) != 0 ||
        np > end - pos) {
        return -EBADMSG;
    }
    int rc = attr__products_room(products, products_cap, np);
    if (rc != 0) {
        return rc;
    }
    for (uint64_t k = 0; k < np; k++) {
        if (attr__get_str(b, end, &pos, &(*products)[k]) != 0) {
            return -EBADMSG;
        }
    }
    if (pos != end) {
        return -EBADMSG;
    }
    ev->watch_ms = (int64_t)watch;
    ev->occur_ns = yw_unzigzag(occ);
    ev->products = *products;
    ev->n_products = (uint32_t)np;
    return 0;
}

/**
 * Decodes one frame body (of the frame at `frame_off`, `len` bytes). With `visit` NULL
 * only checks it (DEFs are applied either way). Returns 0, -EBADMSG for a malformed
 * body, -ENOMEM, or what visit returned.
 */
static int attr__decode_body(attr__reader_t *r, const unsigned char *b, size_t len,
                             uint64_t frame_off, attr_xlog_visit_fn visit, void *arg,
                             uint64_t *events)
{
    if (len < 12) {
        return -EBADMSG;
    }
    int64_t arrival = (int64_t)yw_get_le64(b);
    uint32_t n_events = yw_get_le32(b + 8);
    size_t pos = 12;
    uint32_t seen = 0;
    while (pos < len) {
        size_t at = pos;
        unsigned char tag = b[pos++];
        uint64_t v, l;
        attr_xlog_event_t ev;
        memset(&ev, 0, sizeof ev);
        if (tag == ATTR_XLOG__REC_EXP2 && r->version >= 2) {
            if (yw_varint_get(b, len, &pos, &l) != 0 || l > len - pos) {
                return -EBADMSG;
            }
            int rc = attr__decode_exp2(b, pos, pos + l, &r->products, &r->products_cap, &ev);
            if (rc != 0) {
                return rc;
            }
            pos += l;
            ev.rec_off = (uint32_t)(frame_off + 8 + at);
        } else if (tag == ATTR_XLOG__REC_DEF && r->version == 1) {
            if (pos >= len) {
                return -EBADMSG;
            }
            int space = b[pos++];
            if (space >= ATTR_XLOG_N_SPACES || yw_varint_get(b, len, &pos, &v) != 0 ||
                yw_varint_get(b, len, &pos, &l) != 0 || l > len - pos) {
                return -EBADMSG;
            }
            attr_str_t s = {(const char *)b + pos, (uint32_t)l};
            pos += l;
            int rc = attr__idmap_set(&r->ids, space, v, s);
            if (rc != 0) {
                return rc;
            }
            continue;
        } else if (tag == ATTR_XLOG__REC_EXP && r->version == 1) {
            if (attr__get_str(b, len, &pos, &ev.event_id) != 0) {
                return -EBADMSG;
            }
            const attr_str_t *s;
            uint64_t vid, cid, nid;
            if (yw_varint_get(b, len, &pos, &vid) != 0 || yw_varint_get(b, len, &pos, &cid) != 0 ||
                yw_varint_get(b, len, &pos, &nid) != 0 || pos >= len) {
                return -EBADMSG;
            }
            if ((s = attr__idmap_get(&r->ids, ATTR_XLOG_VIEWER, vid)) == NULL) {
                return -EBADMSG;
            }
            ev.viewer = *s;
            if ((s = attr__idmap_get(&r->ids, ATTR_XLOG_CREATOR, cid)) == NULL) {
                return -EBADMSG;
            }
            ev.creator = *s;
            if ((s = attr__idmap_get(&r->ids, ATTR_XLOG_NOTE, nid)) == NULL) {
                return -EBADMSG;
            }
            ev.note = *s;
            ev.kind = b[pos++];
            uint64_t watch, occ, np;
            if (yw_varint_get(b, len, &pos, &watch) != 0 ||
                yw_varint_get(b, len, &pos, &occ) != 0 || yw_varint_get(b, len, &pos, &np) != 0 ||
                np > len) {
                return -EBADMSG;
            }
            ev.watch_ms = (int64_t)watch;
            ev.occur_ns = arrival + yw_unzigzag(occ);
            int rc = attr__products_room(&r->products, &r->products_cap, np);
            if (rc != 0) {
                return rc;
            }
            for (uint64_t k = 0; k < np; k++) {
                uint64_t pid;
                if (yw_varint_get(b, len, &pos, &pid) != 0 ||
                    (s = attr__idmap_get(&r->ids, ATTR_XLOG_PRODUCT, pid)) == NULL) {
                    return -EBADMSG;
                }
                r->products[k] = *s;
            }
            ev.products = r->products;
            ev.n_products = (uint32_t)np;
        } else {
            return -EBADMSG;
        }
        ev.arrival_ns = arrival;
        ev.frame_off = frame_off;
        ev.frame_end = frame_off + 8 + len;
        seen++;
        if (visit != NULL) {
            int rc = visit(arg, &ev);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (seen != n_events) {
        return -EBADMSG;
    }
    if (events != NULL) {
        *events += seen;
    }
    return 0;
}

/**
 * Reads the header and the bytes from `from` on (all of the file when `from` is at most
 * the header's end) into one buffer: the header, then the rest. `*skipped` gets how
 * many bytes were left out between the two (buffer offset + skipped = file offset past
 * the header).
 */
static int attr__read_file(const char *path, uint64_t from, unsigned char **buf, size_t *len,
                           size_t *skipped)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t size = (size_t)st.st_size;
    size_t skip = 0;
    if (from > ATTR_XLOG__HDR_BYTES && size >= ATTR_XLOG__HDR_BYTES) {
        skip = (from < size ? (size_t)from : size) - ATTR_XLOG__HDR_BYTES;
    }
    size_t want = size - skip;
    unsigned char *b = malloc(want ? want : 1);
    if (b == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t head = want < ATTR_XLOG__HDR_BYTES ? want : ATTR_XLOG__HDR_BYTES, got1 = 0, got2 = 0;
    int rc = yw_pread_all(fd, b, head, 0, &got1);
    if (rc == 0 && want > head) {
        rc = yw_pread_all(fd, b + head, want - head, head + skip, &got2);
    }
    close(fd);
    if (rc == 0 && got1 + got2 != want) {
        rc = -EIO; /* shrank while being read */
    }
    if (rc != 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = want;
    *skipped = skip;
    return 0;
}

static int attr__truncate(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    if (ftruncate(fd, (off_t)len) != 0 || fdatasync(fd) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

static int attr__read(const char *path, uint64_t from, int repair, attr_xlog_visit_fn visit,
                      void *arg, attr_xlog_segstat_t *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->max_arrival_ns = INT64_MIN;
    unsigned char *buf = NULL;
    size_t len = 0, skip = 0;
    int rc = attr__read_file(path, from, &buf, &len, &skip);
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    st->file_bytes = len + skip;
    uint32_t version = len >= ATTR_XLOG__HDR_BYTES ? yw_get_le32(buf + 8) : 0;
    if (len < ATTR_XLOG__HDR_BYTES || memcmp(buf, ATTR_XLOG__MAGIC, 8) != 0 || version < 1 ||
        version > ATTR_XLOG__VERSION) {
        yw_errmsg_printf(err, errlen, "%s: not an exposure log segment (bad or short header)",
                         path);
        free(buf);
        return -EBADMSG;
    }
    if (skip > 0 && version < 2) {
        yw_errmsg_printf(err, errlen, "%s: a version 1 segment is read from its start only", path);
        free(buf);
        return -EPROTO;
    }
    st->seq = yw_get_le64(buf + 16);
    attr__reader_t r;
    memset(&r, 0, sizeof r);
    r.version = version;
    size_t off = ATTR_XLOG__HDR_BYTES; /* in buf; the file offset is off + skip */
    rc = 0;
    while (off < len) {
        if (len - off < 8) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "incomplete frame header");
            st->torn = 1;
            break;
        }
        uint32_t blen = yw_get_le32(buf + off);
        uint32_t crc = yw_get_le32(buf + off + 4);
        if (blen < 12 || blen > ATTR_XLOG_MAX_FRAME || blen > len - off - 8) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "frame length %u past the end", blen);
            st->torn = 1;
            break;
        }
        const unsigned char *body = buf + off + 8;
        if (attr_crc32c(0, body, blen) != crc) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "CRC mismatch");
            st->torn = 1;
            break;
        }
        /* Check the whole frame before visiting any of it. */
        uint64_t frame_off = off + skip;
        rc = attr__decode_body(&r, body, blen, frame_off, NULL, NULL, NULL);
        if (rc == 0 && visit != NULL) {
            rc = attr__decode_body(&r, body, blen, frame_off, visit, arg, &st->events);
        } else if (rc == 0) {
            st->events += yw_get_le32(body + 8);
        }
        if (rc == -EBADMSG) {
            snprintf(st->torn_reason, sizeof st->torn_reason, "frame does not decode");
            st->torn = 1;
            rc = 0;
            break;
        }
        if (rc != 0) {
            break;
        }
        int64_t arrival = (int64_t)yw_get_le64(body);
        if (arrival > st->max_arrival_ns) {
            st->max_arrival_ns = arrival;
        }
        st->frames++;
        off += 8 + (size_t)blen;
    }
    st->valid_bytes = off + skip;
    attr__idmap_free(&r.ids);
    free(r.products);
    free(buf);
    if (rc != 0) {
        if (rc == -ENOMEM) {
            yw_errmsg_printf(err, errlen, "%s: out of memory", path);
        }
        return rc;
    }
    if (st->torn && repair) {
        int trc = attr__truncate(path, st->valid_bytes);
        if (trc != 0) {
            yw_errmsg_printf(err, errlen, "%s: cannot truncate the torn tail at %llu: %s", path,
                             (unsigned long long)st->valid_bytes, strerror(-trc));
            return trc;
        }
    }
    return 0;
}

int attr_xlog_read_segment(const char *path, int repair, attr_xlog_visit_fn visit, void *arg,
                           attr_xlog_segstat_t *st, char *err, size_t errlen)
{
    return attr__read(path, 0, repair, visit, arg, st, err, errlen);
}

int attr_xlog_read_segment_from(const char *path, uint64_t from, int repair,
                                attr_xlog_visit_fn visit, void *arg, attr_xlog_segstat_t *st,
                                char *err, size_t errlen)
{
    return attr__read(path, from, repair, visit, arg, st, err, errlen);
}

int attr_xlog_segment_version(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    unsigned char hdr[ATTR_XLOG__HDR_BYTES];
    ssize_t r = pread(fd, hdr, sizeof hdr, 0);
    int e = errno;
    close(fd);
    if (r < 0) {
        return -e;
    }
    if (r < (ssize_t)sizeof hdr || memcmp(hdr, ATTR_XLOG__MAGIC, 8) != 0) {
        return -EBADMSG;
    }
    uint32_t v = yw_get_le32(hdr + 8);
    return v >= 1 && v <= ATTR_XLOG__VERSION ? (int)v : -EBADMSG;
}

/* ---- reading one record ---- */

void attr_xlog_recbuf_free(attr_xlog_recbuf_t *b)
{
    free(b->p);
    free(b->products);
    memset(b, 0, sizeof *b);
}

static int attr__recbuf_room(attr_xlog_recbuf_t *b, size_t n)
{
    return YW_VEC_RESERVE(b->p, b->cap, n, ATTR_XLOG__REC_PEEK);
}

int attr_xlog_read_record(int fd, uint32_t off, attr_xlog_recbuf_t *buf, attr_xlog_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    int rc = attr__recbuf_room(buf, ATTR_XLOG__REC_PEEK);
    if (rc != 0) {
        return rc;
    }
    size_t got;
    if ((rc = yw_pread_all(fd, buf->p, ATTR_XLOG__REC_PEEK, off, &got)) != 0) {
        return rc;
    }
    size_t pos = 1;
    uint64_t l;
    if (got < 2 || buf->p[0] != ATTR_XLOG__REC_EXP2 || yw_varint_get(buf->p, got, &pos, &l) != 0 ||
        l > ATTR_XLOG_MAX_FRAME) {
        return -EBADMSG;
    }
    size_t total = pos + (size_t)l;
    if (total > got) {
        if ((rc = attr__recbuf_room(buf, total)) != 0) {
            return rc;
        }
        size_t more;
        if ((rc = yw_pread_all(fd, buf->p + got, total - got, off + got, &more)) != 0) {
            return rc;
        }
        if (got + more < total) {
            return -EBADMSG;
        }
    }
    rc = attr__decode_exp2(buf->p, pos, total, &buf->products, &buf->products_cap, ev);
    ev->rec_off = off;
    return rc;
}

/* ---- upgrading a version 1 segment ---- */

typedef struct st_attr__upgrade_t {
    int fd;
    uint64_t size;
    int64_t frame_arrival;
    uint64_t frame_off;
    attr_xlog_exposure_t *evs;
    attr_xlog_str_t *prods;
    char *strs; /* copies of the frame's strings (the reader's buffer moves on) */
    size_t n, cap, n_prods, cap_prods, n_strs, cap_strs;
    unsigned char *buf;
    size_t buf_cap;
    int err;
} attr__upgrade_t;

/** Writes the frame gathered so far as a version 2 frame. */
static int attr__upgrade_flush(attr__upgrade_t *u)
{
    if (u->n == 0) {
        return 0;
    }
    /* Strings were gathered as offsets into `strs` (it may have moved): fix them up. */
    size_t p = 0;
    for (size_t i = 0; i < u->n; i++) {
        attr_xlog_exposure_t *e = &u->evs[i];
        e->event_id = u->strs + (uintptr_t)e->event_id;
        e->viewer.s = u->strs + (uintptr_t)e->viewer.s;
        e->creator.s = u->strs + (uintptr_t)e->creator.s;
        e->note.s = u->strs + (uintptr_t)e->note.s;
        e->products = u->prods + p;
        for (uint32_t k = 0; k < e->n_products; k++) {
            u->prods[p + k].s = u->strs + (uintptr_t)u->prods[p + k].s;
        }
        p += e->n_products;
    }
    size_t need = 8 + 12;
    for (size_t i = 0; i < u->n; i++) {
        need += 1 + 10 + attr_xlog__record_body_len(&u->evs[i]);
    }
    int rc = YW_VEC_RESERVE(u->buf, u->buf_cap, need, 64);
    if (rc != 0) {
        return rc;
    }
    size_t n = 8;
    yw_put_le64(u->buf + n, (uint64_t)u->frame_arrival);
    yw_put_le32(u->buf + n + 8, (uint32_t)u->n);
    n += 12;
    for (size_t i = 0; i < u->n; i++) {
        n += attr_xlog__encode_record(u->buf + n, &u->evs[i],
                                      attr_xlog__record_body_len(&u->evs[i]));
    }
    yw_put_le32(u->buf, (uint32_t)(n - 8));
    yw_put_le32(u->buf + 4, attr_crc32c(0, u->buf + 8, n - 8));
    rc = yw_pwrite_all(u->fd, u->buf, n, u->size);
    if (rc != 0) {
        return rc;
    }
    u->size += n;
    u->n = u->n_prods = u->n_strs = 0;
    return 0;
}

/** Copies a string into `strs`; returns its offset there, as a pointer-sized integer. */
static int attr__upgrade_str(attr__upgrade_t *u, attr_str_t s, const char **at)
{
    int rc = YW_VEC_RESERVE(u->strs, u->cap_strs, u->n_strs + s.len + 1, 64);
    if (rc != 0) {
        return rc;
    }
    memcpy(u->strs + u->n_strs, s.s, s.len);
    *at = (const char *)(uintptr_t)u->n_strs;
    u->n_strs += s.len + 1;
    return 0;
}

static int attr__upgrade_visit(void *arg, const attr_xlog_event_t *ev)
{
    attr__upgrade_t *u = arg;
    int rc = 0;
    if (u->n > 0 && ev->frame_off != u->frame_off) {
        rc = attr__upgrade_flush(u);
    }
    u->frame_off = ev->frame_off;
    u->frame_arrival = ev->arrival_ns;
    if (rc == 0) {
        rc = YW_VEC_RESERVE(u->evs, u->cap, u->n + 1, 64);
    }
    if (rc == 0) {
        rc = YW_VEC_RESERVE(u->prods, u->cap_prods, u->n_prods + ev->n_products, 64);
    }
    if (rc != 0) {
        return rc;
    }
    attr_xlog_exposure_t *e = &u->evs[u->n];
    memset(e, 0, sizeof *e);
    e->event_id_len = ev->event_id.len;
    e->kind = (uint8_t)ev->kind;
    e->watch_ms = ev->watch_ms;
    e->occur_ns = ev->occur_ns;
    e->viewer.len = ev->viewer.len;
    e->creator.len = ev->creator.len;
    e->note.len = ev->note.len;
    e->n_products = ev->n_products;
    if ((rc = attr__upgrade_str(u, ev->event_id, &e->event_id)) != 0 ||
        (rc = attr__upgrade_str(u, ev->viewer, &e->viewer.s)) != 0 ||
        (rc = attr__upgrade_str(u, ev->creator, &e->creator.s)) != 0 ||
        (rc = attr__upgrade_str(u, ev->note, &e->note.s)) != 0) {
        return rc;
    }
    for (uint32_t k = 0; k < ev->n_products; k++) {
        attr_xlog_str_t *p = &u->prods[u->n_prods++];
        p->len = ev->products[k].len;
        p->id = 0;
        if ((rc = attr__upgrade_str(u, ev->products[k], &p->s)) != 0) {
            return rc;
        }
    }
    u->n++;
    return 0;
}

int attr_xlog_upgrade(const char *path, char *err, size_t errlen)
{
    int version = attr_xlog_segment_version(path);
    if (version < 0) {
        yw_errmsg_printf(err, errlen, "%s: not an exposure log segment", path);
        return version;
    }
    if (version == (int)ATTR_XLOG__VERSION) {
        return 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.upgrade", path);
    (void)unlink(tmp);
    attr__upgrade_t u;
    memset(&u, 0, sizeof u);
    u.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (u.fd < 0) {
        int e = -errno;
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", tmp, strerror(-e));
        return e;
    }
    unsigned char hdr[ATTR_XLOG__HDR_BYTES];
    int rc = 0;
    {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t got = 0;
        if (fd < 0) {
            rc = -errno;
        } else {
            rc = yw_pread_all(fd, hdr, sizeof hdr, 0, &got);
            close(fd);
            if (rc == 0 && got != sizeof hdr) {
                rc = -EBADMSG;
            }
        }
    }
    if (rc == 0) {
        yw_put_le32(hdr + 8, ATTR_XLOG__VERSION);
        rc = yw_pwrite_all(u.fd, hdr, sizeof hdr, 0);
        u.size = sizeof hdr;
    }
    attr_xlog_segstat_t st;
    if (rc == 0) {
        rc = attr__read(path, 0, 0, attr__upgrade_visit, &u, &st, err, errlen);
    }
    if (rc == 0) {
        rc = attr__upgrade_flush(&u);
    }
    if (rc == 0 && fdatasync(u.fd) != 0) {
        rc = -errno;
    }
    close(u.fd);
    free(u.evs);
    free(u.prods);
    free(u.strs);
    free(u.buf);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            rc = yw_fsync_dir(dir);
        }
    }
    if (rc != 0) {
        (void)unlink(tmp);
        if (err != NULL && errlen > 0 && err[0] == '\0') {
            yw_errmsg_printf(err, errlen, "%s: cannot upgrade to version 2: %s", path,
                             strerror(-rc));
        }
    }
    return rc;
}
