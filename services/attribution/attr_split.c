/* attr_split.c — a stream's events into per-partition parts, packed. See attr_split.h. */
#include "services/attribution/attr_split.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* First sizes of a part's arrays (doubled as they fill). */
#define ATTR__SPLIT_FIRST_BYTES 4096
#define ATTR__SPLIT_FIRST_EVENTS 32

static size_t attr__varint(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int attr_split_init(attr_split_t *sp, int partitions, uint32_t field, size_t part_events,
                    size_t part_bytes, size_t open_max)
{
    memset(sp, 0, sizeof *sp);
    if (partitions < 1 || field < 1 || field > (UINT32_C(1) << 29) - 1 || part_events < 1 ||
        part_bytes < 1 || open_max < 1) {
        return -EINVAL;
    }
    sp->q = calloc((size_t)partitions, sizeof *sp->q);
    sp->ring = calloc((size_t)partitions, sizeof *sp->ring);
    if (sp->q == NULL || sp->ring == NULL) {
        free(sp->q);
        free(sp->ring);
        sp->q = NULL;
        sp->ring = NULL;
        return -ENOMEM;
    }
    sp->partitions = partitions;
    sp->part_events = part_events;
    sp->part_bytes = part_bytes;
    sp->open_max = open_max;
    sp->tag_len = attr__varint((uint64_t)field << 3 | 2, sp->tag); /* length-delimited */
    return 0;
}

static void attr__part_free(attr_split_part_t *pt)
{
    free(pt->buf);
    free(pt->pos);
    free(pt);
}

void attr_split_fini(attr_split_t *sp)
{
    if (sp->q != NULL) {
        attr_split_drop(sp);
    }
    free(sp->q);
    free(sp->ring);
    sp->q = NULL;
    sp->ring = NULL;
}

/* Partition p joins the ready ring when its oldest part is sealed and none of its is out. */
static void attr__maybe_ready(attr_split_t *sp, int p)
{
    attr_split_queue_t *q = &sp->q[p];
    if (q->out || q->ready || q->head == NULL || !q->head->sealed) {
        return;
    }
    q->ready = 1;
    sp->ring[(sp->ring_head + sp->ring_n) % sp->partitions] = p;
    sp->ring_n++;
}

static void attr__seal(attr_split_t *sp, attr_split_part_t *pt)
{
    pt->sealed = 1;
    sp->open_bytes -= pt->len;
    sp->sealed_bytes += pt->len;
    attr__maybe_ready(sp, pt->p);
}

/* The largest open part of any partition (NULL when none is open). */
static attr_split_part_t *attr__largest_open(const attr_split_t *sp)
{
    attr_split_part_t *best = NULL;
    for (int p = 0; p < sp->partitions; p++) {
        attr_split_part_t *t = sp->q[p].tail;
        if (t != NULL && !t->sealed && (best == NULL || t->len > best->len)) {
            best = t;
        }
    }
    return best;
}

/* Room in `pt` for one more event of `bytes` bytes. Returns 0 or -ENOMEM (nothing changed). */
static int attr__part_room(attr_split_part_t *pt, size_t bytes)
{
    if (pt->buf == NULL || pt->len + bytes > pt->buf_cap) {
        size_t cap = pt->buf_cap ? pt->buf_cap : ATTR__SPLIT_FIRST_BYTES;
        while (cap < pt->len + bytes) {
            cap *= 2;
        }
        uint8_t *b = realloc(pt->buf, cap);
        if (b == NULL) {
            return -ENOMEM;
        }
        pt->buf = b;
        pt->buf_cap = cap;
    }
    if (pt->n == pt->pos_cap) {
        size_t cap = pt->pos_cap ? pt->pos_cap * 2 : ATTR__SPLIT_FIRST_EVENTS;
        int64_t *pos = realloc(pt->pos, cap * sizeof *pos);
        if (pos == NULL) {
            return -ENOMEM;
        }
        pt->pos = pos;
        pt->pos_cap = cap;
    }
    return 0;
}

int attr_split_add(attr_split_t *sp, int p, int64_t pos, const ProtobufCMessage *ev)
{
    attr_split_queue_t *q = &sp->q[p];
    uint8_t head[5 + 10];
    memcpy(head, sp->tag, sp->tag_len);
    size_t elen = protobuf_c_message_get_packed_size(ev);
    size_t hlen = sp->tag_len + attr__varint(elen, head + sp->tag_len);
    size_t bytes = hlen + elen;
    attr_split_part_t *pt = q->tail != NULL && !q->tail->sealed ? q->tail : NULL;
    if (pt != NULL && pt->len + bytes > sp->part_bytes) {
        attr__seal(sp, pt);
        pt = NULL;
    }
    if (pt == NULL) {
        pt = calloc(1, sizeof *pt);
        if (pt == NULL || attr__part_room(pt, bytes) != 0) {
            if (pt != NULL) {
                attr__part_free(pt);
            }
            return -ENOMEM;
        }
        pt->p = p;
        if (q->tail != NULL) {
            q->tail->next = pt;
        } else {
            q->head = pt;
        }
        q->tail = pt;
        sp->parts++;
    } else if (attr__part_room(pt, bytes) != 0) {
        return -ENOMEM;
    }
    memcpy(pt->buf + pt->len, head, hlen);
    (void)protobuf_c_message_pack(ev, pt->buf + pt->len + hlen);
    pt->len += bytes;
    pt->pos[pt->n++] = pos;
    sp->open_bytes += bytes;
    if (pt->n >= sp->part_events || pt->len >= sp->part_bytes) {
        attr__seal(sp, pt);
    }
    while (sp->open_bytes > sp->open_max) {
        attr__seal(sp, attr__largest_open(sp)); /* (open_bytes > 0: there is one) */
    }
    return 0;
}

void attr_split_seal_all(attr_split_t *sp)
{
    for (int p = 0; p < sp->partitions; p++) {
        attr_split_part_t *t = sp->q[p].tail;
        if (t != NULL && !t->sealed) {
            attr__seal(sp, t);
        }
    }
}

attr_split_part_t *attr_split_take(attr_split_t *sp)
{
    if (sp->ring_n == 0) {
        return NULL;
    }
    int p = sp->ring[sp->ring_head];
    sp->ring_head = (sp->ring_head + 1) % sp->partitions;
    sp->ring_n--;
    attr_split_queue_t *q = &sp->q[p];
    attr_split_part_t *pt = q->head;
    q->ready = 0;
    q->out = 1;
    q->head = pt->next;
    if (q->head == NULL) {
        q->tail = NULL;
    }
    pt->next = NULL;
    sp->out++;
    return pt;
}

void attr_split_done(attr_split_t *sp, attr_split_part_t *pt)
{
    int p = pt->p;
    sp->q[p].out = 0;
    sp->out--;
    sp->parts--;
    sp->sealed_bytes -= pt->len;
    attr__part_free(pt);
    attr__maybe_ready(sp, p);
}

void attr_split_drop(attr_split_t *sp)
{
    for (int p = 0; p < sp->partitions; p++) {
        attr_split_queue_t *q = &sp->q[p];
        while (q->head != NULL) {
            attr_split_part_t *pt = q->head;
            q->head = pt->next;
            if (pt->sealed) {
                sp->sealed_bytes -= pt->len;
            } else {
                sp->open_bytes -= pt->len;
            }
            sp->parts--;
            attr__part_free(pt);
        }
        q->tail = NULL;
        q->ready = 0;
    }
    sp->ring_head = 0;
    sp->ring_n = 0;
}
