/*
 * attr_cluster_log.c — the partitions' logs in the cluster's stream: fenced appends and
 * reads in order by subject. See attr_cluster.h; the lease markers that fence them are
 * written by the cluster thread (attr_cluster.c) when it takes a lease.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_cluster_int.h"

/* Tries of one append whose answer did not come (same message id each time). */
#define ATTR__APPEND_TRIES 3

void attr__log_own(attr_cluster_t *c, int p, uint64_t seq)
{
    uv_mutex_lock(&c->log_mu[p]);
    c->log_last[p] = seq;
    uv_mutex_unlock(&c->log_mu[p]);
}

jsCtx *attr__js(attr_cluster_t *c)
{
    uv_mutex_lock(&c->mu);
    /* Not while disconnected: a request would wait out its timeout, and fail anyway. */
    jsCtx *js = c->pub.ready && c->nats_connected ? c->js : NULL;
    uv_mutex_unlock(&c->mu);
    return js;
}

const char *attr__err_text(natsStatus s)
{
    const char *text = nats_GetLastError(NULL);
    return (text != NULL && text[0] != '\0') ? text : natsStatus_GetText(s);
}

int attr__log_stream_end(const attr_cluster_t *c, int p)
{
    int end = (p / ATTR__PARTS_PER_STREAM + 1) * ATTR__PARTS_PER_STREAM;
    return end < c->partitions ? end : c->partitions;
}

void attr__log_names(const attr_cluster_t *c, int p, char stream[48], char subject[48])
{
    snprintf(stream, 48, ATTR__LOG_STREAM_FMT, p / ATTR__PARTS_PER_STREAM * ATTR__PARTS_PER_STREAM,
             attr__log_stream_end(c, p) - 1);
    snprintf(subject, 48, ATTR__SUBJECT_FMT, p);
}

int64_t attr__last_seq(const attr_cluster_t *c, jsCtx *js, int p)
{
    char stream[48], subject[48];
    attr__log_names(c, p, stream, subject);
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, js, stream, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        return 0;
    }
    if (s != NATS_OK) {
        return -1;
    }
    int64_t seq = (int64_t)natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return seq;
}

natsStatus attr__js_publish(jsCtx *js, const char *subject, const void *data, size_t len,
                            const char *const *hdrs, uint64_t *seq, jsErrCode *jerr)
{
    *jerr = 0;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)data, (int)len);
    for (size_t i = 0; s == NATS_OK && hdrs[i] != NULL; i += 2) {
        s = natsMsgHeader_Set(m, hdrs[i], hdrs[i + 1]);
    }
    jsPubAck *ack = NULL;
    if (s == NATS_OK) {
        s = js_PublishMsg(&ack, js, m, NULL, jerr);
    }
    if (s == NATS_OK && seq != NULL) {
        *seq = ack->Sequence;
    }
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(m);
    return s;
}

int attr_cluster_append(attr_cluster_t *c, int p, const char *kind, const void *data, size_t len,
                        uint64_t *seq, char *err, size_t errlen)
{
    jsCtx *js = attr__js(c);
    if (js == NULL) {
        snprintf(err, errlen, "partition %d: not connected to the cluster's NATS", p);
        return -EAGAIN;
    }
    char subject[48], expect[24], id[160];
    snprintf(subject, sizeof subject, ATTR__SUBJECT_FMT, p);
    uv_mutex_lock(&c->log_mu[p]);
    uint64_t last = c->log_last[p];
    if (last == 0) {
        uv_mutex_unlock(&c->log_mu[p]);
        snprintf(err, errlen, "partition %d: not this node's", p);
        return -EPERM;
    }
    snprintf(expect, sizeof expect, "%llu", (unsigned long long)last);
    /* Unique per call and the same for its tries: a try whose first answer was lost is
     * recognised as a duplicate by JetStream and answered with the first one's sequence.
     * The counter is the node's, bumped by every partition's writer thread (each holds
     * only its own partition's lock): atomically, or two calls of one partition after
     * a failed append could share an id, and the second would be taken for the first. */
    unsigned long long n = __atomic_add_fetch(&c->log_appends, 1, __ATOMIC_RELAXED);
    snprintf(id, sizeof id, "%s-%d-%llu-%llu", c->node_id, p, (unsigned long long)last, n);
    int rc = -EAGAIN;
    const char *const hdrs[] = {"Nats-Expected-Last-Subject-Sequence",
                                expect,
                                "Nats-Msg-Id",
                                id,
                                "Yw-Kind",
                                kind,
                                "Yw-Prev",
                                expect,
                                NULL};
    for (int attempt = 0; attempt < ATTR__APPEND_TRIES; attempt++) {
        jsErrCode jerr = 0;
        uint64_t got = 0;
        natsStatus s = attr__js_publish(js, subject, data, len, hdrs, &got, &jerr);
        if (s == NATS_OK) {
            c->log_last[p] = got;
            *seq = got;
            rc = 0;
        } else if (jerr == JSStreamWrongLastSequenceErr) {
            c->log_last[p] = 0;
            snprintf(err, errlen,
                     "partition %d: refused by the fence (another node appended after "
                     "sequence %s: this node lost the partition)",
                     p, expect);
            rc = -ESTALE;
        } else {
            snprintf(err, errlen, "partition %d: append: %s", p, attr__err_text(s));
        }
        if (rc != -EAGAIN) {
            break;
        }
    }
    uv_mutex_unlock(&c->log_mu[p]);
    return rc;
}

/* The record `m` of partition `p` after `prev`, checked, into `fn`. Returns what fn did,
 * -ESTALE (the chain is broken) or -EIO, with `err`; its sequence in *seq. */
static int attr__read_one(natsMsg *m, uint64_t seq, int p, uint64_t prev, attr_cluster_read_fn fn,
                          void *arg, char *err, size_t errlen)
{
    const char *kind = NULL, *before = NULL;
    if (natsMsgHeader_Get(m, "Yw-Kind", &kind) != NATS_OK) {
        kind = "";
    }
    if (seq <= prev) {
        snprintf(err, errlen, "partition %d: a record without its sequence", p);
        return -EIO;
    }
    if (natsMsgHeader_Get(m, "Yw-Prev", &before) == NATS_OK && strtoull(before, NULL, 10) != prev) {
        /* The chain is broken: what lay between was purged (a snapshot covers it). */
        snprintf(err, errlen,
                 "partition %d: the record at %llu follows %s, not %llu: the records "
                 "between were removed (a newer snapshot covers them)",
                 p, (unsigned long long)seq, before, (unsigned long long)prev);
        return -ESTALE;
    }
    return fn(arg, seq, kind, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
}

int attr_cluster_read(attr_cluster_t *c, int p, uint64_t after, attr_cluster_read_fn fn, void *arg,
                      uint64_t *last, char *err, size_t errlen)
{
    jsCtx *js = attr__js(c);
    *last = after;
    if (js == NULL) {
        snprintf(err, errlen, "partition %d: not joined to the cluster yet", p);
        return -EAGAIN;
    }
    char stream[48], subject[48];
    attr__log_names(c, p, stream, subject);
    /* Where the log ends now: the read goes to there (a partition's records after it are
     * its owner's, made after this read began). */
    int64_t last_seq = attr__last_seq(c, js, p);
    if (last_seq < 0) {
        snprintf(err, errlen, "partition %d: its last record: %s", p, attr__err_text(NATS_ERR));
        return -EAGAIN;
    }
    uint64_t end = (uint64_t)last_seq;
    if (end <= after) {
        return 0;
    }
    /* An ordered consumer from after + 1: the server pushes the records (flow controlled)
     * instead of one request per record. */
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = after + 1;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        snprintf(err, errlen, "partition %d: read from %llu: %s", p, (unsigned long long)after + 1,
                 attr__err_text(s));
        return -EAGAIN;
    }
    int rc = 0;
    for (uint64_t prev = after; rc == 0 && prev < end;) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 2 * ATTR__REQUEST_MS);
        if (s != NATS_OK) {
            snprintf(err, errlen, "partition %d: read after %llu (to %llu): %s", p,
                     (unsigned long long)prev, (unsigned long long)end, attr__err_text(s));
            rc = -EAGAIN;
            break;
        }
        jsMsgMetaData *meta = NULL;
        uint64_t seq = 0;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
        rc = attr__read_one(m, seq, p, prev, fn, arg, err, errlen);
        natsMsg_Destroy(m);
        if (rc == 0) {
            *last = seq;
            prev = seq;
        }
    }
    (void)natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}
