/*
 * attr_order_load.c — loading stored orders into the conversion cache. A read
 * (attr_order_read_t) runs on the writer's queue, so that what it reads is never older
 * than what memory has; its conversions go into the cache with attr__conv_from_set(),
 * which never loads a stale row over newer credits. Used by the exposure batches (the
 * orders late exposures may join) and by refunds (the orders they refund).
 */
#include "services/attribution/attr_service_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vec.h"

void attr__order_read_free(attr_order_read_t *rd)
{
    if (rd == NULL) {
        return;
    }
    for (size_t i = 0; i < rd->n_orders; i++) {
        free(rd->orders[i]);
    }
    for (size_t i = 0; i < 2 * rd->n_keys; i++) {
        free(rd->keys[i]);
    }
    for (size_t i = 0; i < rd->n_refund_ids; i++) {
        free(rd->refund_ids[i]);
    }
    free(rd->orders);
    free(rd->keys);
    free(rd->key_occur);
    free(rd->key_vp);
    free(rd->mem);
    attr_ckey_snap_free(rd->snap);
    free(rd->refund_ids);
    free(rd->refund_stored);
    attr_convset_free(&rd->set);
    free(rd);
}

char *attr__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int attr__push_str(char ***arr, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (YW_VEC_RESERVE(*arr, *cap, *n + 1, 16) != 0) {
        return -ENOMEM;
    }
    if (((*arr)[*n] = attr__strndup(s, len)) == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

int attr__order_read_add_order(attr_order_read_t *rd, const char *id, size_t len)
{
    for (size_t i = 0; i < rd->n_orders; i++) {
        if (strlen(rd->orders[i]) == len && memcmp(rd->orders[i], id, len) == 0) {
            return 0;
        }
    }
    return attr__push_str(&rd->orders, &rd->n_orders, &rd->cap_orders, id, len);
}

int attr__order_read_add_key(attr_order_read_t *rd, const char *viewer, size_t vlen,
                             const char *product, size_t plen, int64_t occur_ns, uint64_t vp)
{
    if (rd->n_keys == rd->cap_keys) {
        /* Three arrays of one capacity (`keys` holds a pair a key): each grows from
         * cap_keys to the same new one. */
        size_t c = rd->cap_keys, c2 = rd->cap_keys, c3 = rd->cap_keys;
        void *keys = rd->keys;
        if (yw_vec_reserve(&keys, &c, rd->n_keys + 1, 2 * sizeof *rd->keys, 16) != 0) {
            return -ENOMEM;
        }
        rd->keys = keys;
        if (YW_VEC_RESERVE(rd->key_occur, c2, rd->n_keys + 1, 16) != 0 ||
            YW_VEC_RESERVE(rd->key_vp, c3, rd->n_keys + 1, 16) != 0) {
            return -ENOMEM;
        }
        rd->cap_keys = c;
    }
    rd->key_vp[rd->n_keys] = vp;
    char *v = attr__strndup(viewer, vlen), *p = attr__strndup(product, plen);
    if (v == NULL || p == NULL) {
        free(v);
        free(p);
        return -ENOMEM;
    }
    rd->keys[2 * rd->n_keys] = v;
    rd->keys[2 * rd->n_keys + 1] = p;
    rd->key_occur[rd->n_keys++] = occur_ns;
    return 0;
}

/** The seqs one key's lookup in the key index found. */
typedef struct st_attr__seqs_t {
    uint64_t *v;
    size_t n, cap;
    int oom;
} attr__seqs_t;

static void attr__seqs_add(void *arg, uint64_t seq)
{
    attr__seqs_t *q = arg;
    if (YW_VEC_RESERVE(q->v, q->cap, q->n + 1, 16) != 0) {
        q->oom = 1;
        return;
    }
    q->v[q->n++] = seq;
}

/** Reads the stored conversions of key i (the key index's seqs; the strings decide). */
static int attr__order_read_key(yw_store_conn_t *conn, attr_order_read_t *rd, size_t i,
                                attr__seqs_t *q)
{
    q->n = 0;
    for (size_t k = 0; k < rd->n_mem; k++) {
        if (rd->mem[k][0] == i) {
            attr__seqs_add(q, rd->mem[k][1]);
        }
    }
    int rc = rd->snap != NULL ? attr_ckey_snap_find(rd->snap, rd->key_vp[i], attr__seqs_add, q) : 0;
    if (rc == 0 && q->oom) {
        rc = -ENOMEM;
    }
    if (rc != 0) {
        snprintf(rd->err, sizeof rd->err, "conversion key index: %s", strerror(-rc));
        return rc;
    }
    for (size_t k = 0; k < q->n && rc >= 0; k++) {
        rc = attr_store_get_conversion_by_seq(conn, q->v[k], rd->keys[2 * i], rd->keys[2 * i + 1],
                                              rd->key_occur[i], &rd->set, rd->err, sizeof rd->err);
    }
    return rc < 0 ? rc : 0;
}

grpc_status_code attr__order_read_work(yw_store_conn_t *conn, yw_store_job_t *job)
{
    attr_order_read_t *rd = (attr_order_read_t *)job;
    int rc = 0;
    for (size_t i = 0; i < rd->n_orders && rc >= 0; i++) {
        rc = attr_store_get_conversion(conn, rd->orders[i], strlen(rd->orders[i]), &rd->set,
                                       rd->err, sizeof rd->err);
    }
    attr__seqs_t q = {0};
    for (size_t i = 0; i < rd->n_keys && rc >= 0; i++) {
        rc = attr__order_read_key(conn, rd, i, &q);
    }
    free(q.v);
    if (rc >= 0 && rd->n_refund_ids > 0 &&
        (rd->refund_stored = calloc(rd->n_refund_ids, 1)) == NULL) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; i < rd->n_refund_ids && rc >= 0; i++) {
        rc = attr_store_refund_exists(conn, rd->refund_ids[i], rd->err, sizeof rd->err);
        if (rc >= 0) {
            rd->refund_stored[i] = (uint8_t)rc;
        }
    }
    if (rc < 0) {
        snprintf(job->errmsg, sizeof job->errmsg, "reading conversions: %.200s",
                 rd->err[0] ? rd->err : strerror(-rc));
        return rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_OK;
}

/**
 * Whether a stored conversion read back is the row of the pending one of its id (its
 * write is done, its commit is not: not acknowledged yet). A stored row of another seq
 * is an acknowledged order, and the pending one a duplicate of it on its way: at most
 * one conversion of an id is pending, and it stays in memory until it commits.
 */
int attr__pending_own(attr_state_t *st, const attr_conv_in_t *in)
{
    const attr_conv_t *p = attr_conv_pending(st, in->order_id, in->order_id_len);
    return p != NULL && p->seq == in->seq;
}

int attr__add_stored_touches(attr_state_t *st, attr_conv_t *c, const attr_convset_t *set, size_t i)
{
    const attr_stored_conv_t *sc = &set->convs[i];
    const attr_stored_touch_t *t = attr_convset_touches(set, i);
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < sc->n_touches; k++) {
        rc = attr_conv_add_cand(st, c, t[k].event_id, t[k].creator_id, t[k].creator_len,
                                t[k].note_id, t[k].note_len, t[k].kind, t[k].watch_ms,
                                t[k].occur_ns, 1);
    }
    return rc;
}

/**
 * A stored conversion read back, in memory: the cached one when there is one (memory is
 * never older than the database), NULL when it is pending (stored, not yet committed:
 * its commit will come), else loaded into the cache now. Returns 0 or -ENOMEM.
 */
int attr__conv_from_set(attr_svc_t *svc, const attr_convset_t *set, size_t i, attr_conv_t **out)
{
    attr_state_t *st = &svc->st;
    const attr_stored_conv_t *sc = &set->convs[i];
    *out = attr_conv_find(st, sc->in.order_id, sc->in.order_id_len);
    if (*out != NULL || attr__pending_own(st, &sc->in)) {
        return 0; /* (the pending one's own row: stored, not yet acknowledged) */
    }
    attr_conv_t *c = NULL;
    int rc = attr_conv_load(st, &sc->in, sc->refunded, &c);
    if (rc == 0) {
        rc = attr__add_stored_touches(st, c, set, i);
    }
    if (rc == 0) {
        rc = attr_conv_loaded(st, c, 0);
    }
    if (rc != 0) {
        /* Incomplete: it must not stay (nor be used). */
        if (c != NULL) {
            attr_conv_unload(st, c);
        }
        return -ENOMEM;
    }
    yw_metric_inc(svc->cache_loads);
    *out = c;
    return 0;
}
