/*
 * attr_cluster_snap.c — the partitions' snapshots in the cluster's snapshot stream
 * (yw-attr-snaps): chunks, the head that names them, and the purges that follow a new
 * head. See attr_cluster.h ("Snapshots"); what a snapshot holds is attr_snapshot.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_cluster_int.h"

/* A header's value as an unsigned integer; 0 when it is missing. */
static uint64_t attr__hdr_u64(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? strtoull(v, NULL, 10) : 0;
}

static int attr__not_joined(int p, char *err, size_t errlen)
{
    snprintf(err, errlen, "partition %d: not connected to the cluster's NATS", p);
    return -EAGAIN;
}

int attr_cluster_snap_head(attr_cluster_t *c, int p, attr_cluster_snap_t *head, char *err,
                           size_t errlen)
{
    memset(head, 0, sizeof *head);
    jsCtx *js = attr__js(c);
    if (js == NULL) {
        return attr__not_joined(p, err, errlen);
    }
    char subject[48];
    snprintf(subject, sizeof subject, ATTR__SNAP_HEAD_FMT, p);
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, js, ATTR__SNAP_STREAM, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        return -ENOENT;
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "partition %d: snapshot head: %s", p, attr__err_text(s));
        return -EAGAIN;
    }
    head->head_seq = natsMsg_GetSequence(m);
    head->time_ns = natsMsg_GetTime(m);
    head->covers = attr__hdr_u64(m, "Yw-Snap-Covers");
    head->first = attr__hdr_u64(m, "Yw-Snap-First");
    head->chunks = (uint32_t)attr__hdr_u64(m, "Yw-Snap-Chunks");
    head->bytes = attr__hdr_u64(m, "Yw-Snap-Bytes");
    head->crc = (uint32_t)attr__hdr_u64(m, "Yw-Snap-Crc");
    natsMsg_Destroy(m);
    if (head->covers == 0 || head->first == 0 || head->chunks == 0) {
        snprintf(err, errlen, "partition %d: a snapshot head without its fields (sequence %llu)", p,
                 (unsigned long long)head->head_seq);
        return -EPROTO;
    }
    return 0;
}

/* Chunk `i` of the snapshot `head` names is not there: -ESTALE, with `err`. */
static int attr__chunk_gone(int p, uint32_t i, const attr_cluster_snap_t *head, char *err,
                            size_t errlen)
{
    snprintf(err, errlen,
             "partition %d: chunk %u of the snapshot covering %llu is gone (a newer snapshot "
             "replaced it)",
             p, i, (unsigned long long)head->covers);
    return -ESTALE;
}

int attr_cluster_snap_read(attr_cluster_t *c, int p, const attr_cluster_snap_t *head,
                           attr_cluster_chunk_fn fn, void *arg, char *err, size_t errlen)
{
    jsCtx *js = attr__js(c);
    if (js == NULL) {
        return attr__not_joined(p, err, errlen);
    }
    char subject[48];
    snprintf(subject, sizeof subject, ATTR__SNAP_CHUNK_FMT, p);
    uint64_t next = head->first;
    for (uint32_t i = 0; i < head->chunks; i++) {
        jsDirectGetMsgOptions o;
        memset(&o, 0, sizeof o);
        o.Sequence = next;
        o.NextBySubject = subject;
        natsMsg *m = NULL;
        natsStatus s = js_DirectGetMsg(&m, js, ATTR__SNAP_STREAM, NULL, &o);
        if (s == NATS_NOT_FOUND) {
            return attr__chunk_gone(p, i, head, err, errlen);
        }
        if (s != NATS_OK) {
            snprintf(err, errlen, "partition %d: snapshot chunk %u: %s", p, i, attr__err_text(s));
            return -EAGAIN;
        }
        uint64_t seq = natsMsg_GetSequence(m);
        if (seq == 0) {
            seq = attr__hdr_u64(m, "Nats-Sequence");
        }
        int rc = 0;
        if (attr__hdr_u64(m, "Yw-Snap-Covers") != head->covers ||
            attr__hdr_u64(m, "Yw-Snap-Chunk") != i || (i == 0 && seq != head->first)) {
            rc = attr__chunk_gone(p, i, head, err, errlen);
        } else {
            rc = fn(arg, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        }
        natsMsg_Destroy(m);
        if (rc != 0) {
            return rc;
        }
        next = seq + 1;
    }
    return 0;
}

int attr_cluster_snap_chunk(attr_cluster_t *c, int p, const attr_cluster_snap_t *head,
                            uint32_t index, const void *data, size_t len, uint64_t *seq, char *err,
                            size_t errlen)
{
    uint64_t covers = head->covers;
    jsCtx *js = attr__js(c);
    if (js == NULL) {
        return attr__not_joined(p, err, errlen);
    }
    char subject[48], cov[24], idx[16], id[160];
    snprintf(subject, sizeof subject, ATTR__SNAP_CHUNK_FMT, p);
    /* A retried chunk is the same message; another snapshot's never is (the nonce). */
    snprintf(id, sizeof id, "snap-%s-%d-%llu-%llu-%u", c->node_id, p, (unsigned long long)covers,
             (unsigned long long)head->nonce, index);
    snprintf(cov, sizeof cov, "%llu", (unsigned long long)covers);
    snprintf(idx, sizeof idx, "%u", index);
    const char *const hdrs[] = {
        "Yw-Snap-Covers", cov, "Yw-Snap-Chunk", idx, "Nats-Msg-Id", id, NULL};
    natsStatus s = NATS_TIMEOUT;
    jsErrCode jerr = 0;
    for (int attempt = 0; s == NATS_TIMEOUT && attempt < 3; attempt++) {
        /* No answer: the same message again (a duplicate if it landed). */
        s = attr__js_publish(js, subject, data, len, hdrs, seq, &jerr);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "partition %d: snapshot chunk %u: %s", p, index, attr__err_text(s));
    }
    return s == NATS_OK ? 0 : -EAGAIN;
}

/* Purges `subject` of stream `stream` below sequence `below`. */
static natsStatus attr__purge(jsCtx *js, const char *stream, const char *subject, uint64_t below)
{
    if (below <= 1) {
        return NATS_OK; /* nothing below; and to the server, sequence 0 or 1 means "all" */
    }
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject;
    o.Stream.Purge.Sequence = below;
    jsErrCode jerr = 0;
    return js_PurgeStream(js, stream, &o, &jerr);
}

int attr_cluster_snap_commit(attr_cluster_t *c, int p, attr_cluster_snap_t *head,
                             uint64_t expect_head, char *err, size_t errlen)
{
    jsCtx *js = attr__js(c);
    if (js == NULL) {
        return attr__not_joined(p, err, errlen);
    }
    char subject[48];
    snprintf(subject, sizeof subject, ATTR__SNAP_HEAD_FMT, p);
    enum { N = 6 };
    static const char *const names[N] = {"Nats-Expected-Last-Subject-Sequence",
                                         "Yw-Snap-Covers",
                                         "Yw-Snap-First",
                                         "Yw-Snap-Chunks",
                                         "Yw-Snap-Bytes",
                                         "Yw-Snap-Crc"};
    const uint64_t values[N] = {expect_head,  head->covers, head->first,
                                head->chunks, head->bytes,  head->crc};
    char v[N][24];
    const char *hdrs[2 * N + 1];
    for (size_t i = 0; i < N; i++) {
        snprintf(v[i], sizeof v[i], "%llu", (unsigned long long)values[i]);
        hdrs[2 * i] = names[i];
        hdrs[2 * i + 1] = v[i];
    }
    hdrs[2 * N] = NULL;
    jsErrCode jerr = 0;
    natsStatus s = attr__js_publish(js, subject, NULL, 0, hdrs, &head->head_seq, &jerr);
    int rc = 0;
    if (s != NATS_OK && jerr == JSStreamWrongLastSequenceErr) {
        snprintf(err, errlen,
                 "partition %d: another snapshot was published meanwhile (this one dropped)", p);
        rc = -ESTALE;
    } else if (s != NATS_OK) {
        snprintf(err, errlen, "partition %d: snapshot head: %s", p, attr__err_text(s));
        rc = -EAGAIN;
    }
    if (rc != 0) {
        return rc;
    }
    /* What the new head makes unneeded: older heads and chunks, and the partition's log
     * before the record it covers (that record stays: the fence of the next append, and
     * where a reader from this snapshot starts its chain). A purge that fails is done by
     * the next snapshot's. */
    char chunks[48], log_stream[48], log[48];
    snprintf(chunks, sizeof chunks, ATTR__SNAP_CHUNK_FMT, p);
    attr__log_names(c, p, log_stream, log);
    if ((s = attr__purge(js, ATTR__SNAP_STREAM, subject, head->head_seq)) == NATS_OK &&
        (s = attr__purge(js, ATTR__SNAP_STREAM, chunks, head->first)) == NATS_OK) {
        s = attr__purge(js, log_stream, log, head->covers);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "partition %d: purge after the snapshot: %s", p, attr__err_text(s));
        return 1;
    }
    return 0;
}
