/* attr_front.c — a cluster node's front: split, forward, merge. See attr_front.h. */
#include "services/attribution/attr_front_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/attribution/attr_engine.h"
#include "services/attribution/attr_errs.h"
#include "services/attribution/attr_validate.h"

int attr_front_create(yw_runtime_t *rt, yw_server_t *srv, attr_cluster_t *cluster,
                      const char *tier_addr, int64_t tier_ttl_ns, yw_metrics_t *metrics,
                      attr_front_t **out)
{
    attr_front_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -ENOMEM;
    }
    f->rt = rt;
    f->cluster = cluster;
    f->names = calloc(1, sizeof *f->names);
    int rc = f->names != NULL ? attr_state_init(f->names) : -ENOMEM;
    if (rc == 0) {
        rc = yw_channel_create_local(rt, srv, &f->local);
    }
    if (rc == 0) {
        rc = attr_tier_create(rt, tier_addr, tier_ttl_ns, &f->tier);
    }
    if (rc == 0 && metrics != NULL) {
        rc = yw_metrics_counter(metrics, "yaowei_attribution_cluster_part_retries_total",
                                "Forwarded parts of calls tried again after an UNAVAILABLE (a "
                                "partition changing hands); a part whose node died after "
                                "storing it comes back with its events as duplicates.",
                                NULL, &f->m_retries);
    }
    if (rc == 0 && metrics != NULL) {
        rc = yw_metrics_counter(metrics, "yaowei_attribution_cluster_parts_lingering_total",
                                "Parts of RecordExposures calls this node split under a "
                                "concurrent load (two or more in flight, now or within 1 s), "
                                "sent so that the partition's log may wait --log-linger-ms for "
                                "the others' parts (one message for several calls).",
                                NULL, &f->m_linger);
    }
    if (rc != 0) {
        attr_front_destroy(f);
        return rc;
    }
    *out = f;
    return 0;
}

void attr_front_destroy(attr_front_t *f)
{
    if (f == NULL) {
        return;
    }
    for (int i = 0; i < f->n_chans; i++) {
        yw_channel_destroy(f->chans[i].ch);
    }
    if (f->local != NULL) {
        yw_channel_destroy(f->local);
    }
    attr_tier_destroy(f->tier);
    if (f->names != NULL) {
        attr_state_free(f->names);
        free(f->names);
    }
    free(f);
}

/* The channel to `addr`, opened the first time. NULL when it cannot be. */
static yw_channel_t *attr__channel(attr_front_t *f, const char *addr)
{
    for (int i = 0; i < f->n_chans; i++) {
        if (strcmp(f->chans[i].addr, addr) == 0) {
            return f->chans[i].ch;
        }
    }
    if (f->n_chans == ATTR__MAX_CHANNELS) {
        return NULL;
    }
    attr__chan_t *c = &f->chans[f->n_chans];
    if (yw_channel_create(f->rt, addr, &c->ch) != 0) {
        return NULL;
    }
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    f->n_chans++;
    return c->ch;
}

int attr_front_call_partition(const attr_front_t *f, yw_call_t *call)
{
    size_t len = 0;
    const char *v = yw_call_metadata(call, ATTR_FRONT_PARTITION_MD, &len);
    if (v == NULL) {
        return -1;
    }
    int p = 0;
    int ok = len > 0 && len <= 5;
    for (size_t i = 0; ok && i < len; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        p = p * 10 + (v[i] - '0');
    }
    if (!ok || p >= attr_cluster_partitions(f->cluster)) {
        yw_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "metadata " ATTR_FRONT_PARTITION_MD ": \"%.*s\" is not a partition (0..%d)",
                       (int)(len < 16 ? len : 16), v, attr_cluster_partitions(f->cluster) - 1);
        return -2;
    }
    return p;
}

/* ---- ingestion: split by viewer, forward, merge the summaries ---- */

typedef struct st_attr__ingest_t attr__ingest_t;

/* ---- forwarding ---- */

static void attr__fwd_send(attr__fwd_t *fw);

static void attr__on_retry_closed(uv_handle_t *h)
{
    attr__fwd_send(h->data);
}

static void attr__on_retry(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, attr__on_retry_closed);
}

/* Tries again after ATTR_FRONT_RETRY_MS if the deadline allows, else ends with this. */
static void attr__fwd_retry(attr__fwd_t *fw, grpc_status_code code, const char *detail)
{
    if (++fw->tries >= ATTR_FRONT_TRIES || fw->call == NULL || yw_call_is_cancelled(fw->call) ||
        yw_call_remaining_ms(fw->call) < ATTR_FRONT_RETRY_MS * 2 ||
        uv_timer_init(yw_runtime_loop(fw->f->rt), &fw->retry) != 0) {
        fw->cb(fw, code, detail, NULL);
        return;
    }
    fw->retry.data = fw;
    yw_metric_inc(fw->f->m_retries);
    (void)uv_timer_start(&fw->retry, attr__on_retry, ATTR_FRONT_RETRY_MS, 0);
}

static void attr__on_fwd(void *arg, grpc_status_code code, const char *detail,
                         ProtobufCMessage *resp)
{
    attr__fwd_t *fw = arg;
    if (code == GRPC_STATUS_UNAVAILABLE) {
        attr__fwd_retry(fw, code, detail);
        return;
    }
    fw->cb(fw, code, detail, resp);
}

static void attr__fwd_send(attr__fwd_t *fw)
{
    if (fw->call == NULL) {
        fw->cb(fw, GRPC_STATUS_CANCELLED, "the call it was for is gone", NULL);
        return;
    }
    int self = 0;
    const char *addr = attr_cluster_route(fw->f->cluster, fw->p, &self);
    yw_channel_t *ch = addr == NULL ? NULL : self ? fw->f->local : attr__channel(fw->f, addr);
    if (ch == NULL) {
        char why[96];
        snprintf(why, sizeof why, "partition %d: no node holds it yet", fw->p);
        attr__fwd_retry(fw, GRPC_STATUS_UNAVAILABLE, why);
        return;
    }
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", fw->p);
    yw_client_md_t md[YW_CLIENT_MAX_MD] = {{ATTR_FRONT_PARTITION_MD, pstr}};
    for (size_t i = 0; i < fw->n_md && i + 1 < YW_CLIENT_MAX_MD; i++) {
        md[i + 1] = fw->md[i];
    }
    if (yw_client_unary_md(ch, fw->method, fw->req, fw->resp_desc, fw->call, 0, md, 1 + fw->n_md,
                           attr__on_fwd, fw) != 0) {
        attr__fwd_retry(fw, GRPC_STATUS_UNAVAILABLE, "cannot start the forwarded call");
    }
}

void attr__fwd_start(attr__fwd_t *fw)
{
    fw->tries = 0;
    attr__fwd_send(fw);
}

/* A call relayed whole (its attr__fwd_t is its own arg): the partition's answer is the
 * client's. */
static void attr__on_relayed(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                             ProtobufCMessage *resp)
{
    if (code == GRPC_STATUS_OK) {
        (void)yw_call_reply(fw->call, resp);
        protobuf_c_message_free_unpacked(resp, NULL);
    } else if (code == GRPC_STATUS_UNAVAILABLE) {
        yw_call_finish(fw->call, code, "partition %d: %s", fw->p, detail);
    } else {
        yw_call_fail(fw->call, code, detail); /* the engine's answer, as standalone's */
    }
    free(fw->arg);
}

void attr__relay(attr_front_t *f, yw_call_t *call, int p, const char *method,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc)
{
    attr__fwd_t *fw = calloc(1, sizeof *fw);
    if (fw == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *fw = (attr__fwd_t){
        .f = f,
        .call = call,
        .p = p,
        .method = method,
        .req = req,
        .resp_desc = resp_desc,
        .cb = attr__on_relayed,
        .arg = fw,
    };
    attr__fwd_start(fw);
}

/* ---- ingestion: split by partition, forward, merge the summaries ---- */

typedef struct st_attr__ingest_t attr__ingest_t;

/* A call split within this long (ms) of a moment with two or more in flight is taken
 * for one of a concurrent load: its parts may linger (a lone caller's never do). */
#define ATTR__OVERLAP_MS 1000

/* One partition's part of a call. */
typedef struct st_attr__part_t {
    attr__fwd_t fw;
    attr__ingest_t *ing;
    size_t n;
    const int64_t *idx; /* the caller's index of each event */
    union {
        Yaowei__Attribution__V1__RecordExposuresRequest x;
        Yaowei__Attribution__V1__RecordConversionsRequest c;
        Yaowei__Attribution__V1__RecordRefundsRequest r;
    } req; /* its events point into the inbound request (alive until the call ends) */
} attr__part_t;

struct st_attr__ingest_t {
    attr_front_t *f;
    yw_call_t *call;
    int counted; /* in f->exposure_calls */
    int pending; /* parts not answered yet (and one while they start) */
    attr__merge_t m;
    attr__part_t *parts;
    size_t n_parts;
    int64_t *idx;
    void **events;
};

static void attr__ingest_free(attr__ingest_t *ing)
{
    if (ing->counted) {
        ing->f->exposure_calls--;
    }
    free(ing->parts);
    free(ing->idx);
    free(ing->events);
    free(ing);
}

/* ---- parts' summaries merged (attr_front_int.h) ---- */

void attr__merge_fail(attr__merge_t *m, int p, grpc_status_code code, const char *detail)
{
    size_t used = strlen(m->failed);
    if (p >= 0 && used + 16 < sizeof m->failed) {
        snprintf(m->failed + used, sizeof m->failed - used, "%s%d", used ? ", " : "", p);
    }
    if (m->fail_code == GRPC_STATUS_OK) {
        m->fail_code = code == GRPC_STATUS_INVALID_ARGUMENT ? GRPC_STATUS_INTERNAL : code;
        snprintf(m->fail_detail, sizeof m->fail_detail, "%s", detail);
    }
}

void attr__merge_part(attr__merge_t *m, int p, grpc_status_code code, const char *detail,
                      ProtobufCMessage *resp, const int64_t *idx, size_t n)
{
    if (code != GRPC_STATUS_OK) {
        attr__merge_fail(m, p, code, detail);
        return;
    }
    const Yaowei__Attribution__V1__IngestSummary *s =
        (const Yaowei__Attribution__V1__IngestSummary *)resp;
    m->accepted += s->accepted;
    m->duplicates += s->duplicates;
    m->rejected += s->rejected;
    m->past += s->past_join_horizon;
    for (size_t i = 0; i < s->n_errors; i++) {
        int64_t k = s->errors[i]->index;
        if (k >= 0 && (size_t)k < n) {
            attr_errs_add(&m->errs, idx[k], s->errors[i]->reason);
        }
    }
    protobuf_c_message_free_unpacked(resp, NULL);
}

void attr__merge_finish(attr__merge_t *m, yw_call_t *call, const char *what)
{
    if (m->fail_code != GRPC_STATUS_OK && m->failed[0] == '\0') {
        yw_call_fail(call, m->fail_code, m->fail_detail);
    } else if (m->fail_code != GRPC_STATUS_OK) {
        yw_call_finish(call, m->fail_code,
                       "partitions %s: %s (what other partitions accepted is stored: send the "
                       "%s again, its events come back as duplicates)",
                       m->failed, m->fail_detail, what);
    } else {
        Yaowei__Attribution__V1__IngestSummary s;
        yaowei__attribution__v1__ingest_summary__init(&s);
        s.accepted = m->accepted;
        s.duplicates = m->duplicates;
        s.rejected = m->rejected;
        s.past_join_horizon = m->past;
        s.errors = attr_errs_list(&m->errs, &s.n_errors);
        (void)yw_call_reply(call, &s.base);
    }
}

static void attr__ingest_finish(attr__ingest_t *ing)
{
    attr__merge_finish(&ing->m, ing->call, "batch");
    attr__ingest_free(ing);
}

static void attr__on_part(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                          ProtobufCMessage *resp)
{
    attr__part_t *pt = fw->arg;
    attr__ingest_t *ing = pt->ing;
    attr__merge_part(&ing->m, fw->p, code, detail, resp, pt->idx, pt->n);
    if (--ing->pending == 0) {
        attr__ingest_finish(ing);
    }
}

static const char *const attr__ingest_method[] = {
    [ATTR__EXPOSURES] = "/yaowei.attribution.v1.AttributionService/RecordExposures",
    [ATTR__CONVERSIONS] = "/yaowei.attribution.v1.AttributionService/RecordConversions",
    [ATTR__REFUNDS] = "/yaowei.attribution.v1.AttributionService/RecordRefunds",
};

int attr__relay_oversized(attr_front_t *f, yw_call_t *call, attr__events_t kind,
                          const ProtobufCMessage *req, size_t n)
{
    if (n <= ATTR_BATCH_MAX) {
        return 0;
    }
    attr__relay(f, call, 0, attr__ingest_method[kind], req,
                &yaowei__attribution__v1__ingest_summary__descriptor);
    return 1;
}

/* Part `pt`'s request of `kind`: its `n` events at `evs`. */
static const ProtobufCMessage *attr__part_request(attr__part_t *pt, attr__events_t kind, void **evs)
{
    switch (kind) {
    case ATTR__EXPOSURES:
        yaowei__attribution__v1__record_exposures_request__init(&pt->req.x);
        pt->req.x.n_events = pt->n;
        pt->req.x.events = (Yaowei__Attribution__V1__ExposureEvent **)evs;
        return &pt->req.x.base;
    case ATTR__CONVERSIONS:
        yaowei__attribution__v1__record_conversions_request__init(&pt->req.c);
        pt->req.c.n_events = pt->n;
        pt->req.c.events = (Yaowei__Attribution__V1__ConversionEvent **)evs;
        return &pt->req.c.base;
    case ATTR__REFUNDS:
    default:
        yaowei__attribution__v1__record_refunds_request__init(&pt->req.r);
        pt->req.r.n_events = pt->n;
        pt->req.r.events = (Yaowei__Attribution__V1__RefundEvent **)evs;
        return &pt->req.r.base;
    }
}

void attr__ingest_split(attr_front_t *f, yw_call_t *call, attr__events_t kind, void *const *events,
                        size_t n, const int32_t *part_of)
{
    int np = attr_cluster_partitions(f->cluster);
    attr__ingest_t *ing = calloc(1, sizeof *ing);
    size_t *count = calloc((size_t)np + 1, sizeof *count);
    if (ing != NULL) {
        ing->idx = malloc((n ? n : 1) * sizeof *ing->idx);
        ing->events = malloc((n ? n : 1) * sizeof *ing->events);
        ing->parts = calloc((size_t)np, sizeof *ing->parts);
    }
    if (ing == NULL || count == NULL || ing->idx == NULL || ing->events == NULL ||
        ing->parts == NULL) {
        if (ing != NULL) {
            attr__ingest_free(ing);
        }
        free(count);
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ing->f = f;
    ing->call = call;
    /* Exposures split under a concurrent load (two or more in flight, now or within
     * ATTR__OVERLAP_MS): their parts may wait for each other in the partitions' logs
     * (ATTR_LINGER_MD). A caller that sends one call at a time never waits. */
    int linger = 0;
    if (kind == ATTR__EXPOSURES) {
        ing->counted = 1;
        uint64_t now = uv_now(yw_runtime_loop(f->rt));
        if (++f->exposure_calls >= 2) {
            f->overlap_ms = now;
        }
        linger = f->overlap_ms != 0 && now - f->overlap_ms < ATTR__OVERLAP_MS;
    }
    /* A counting sort by partition: the caller's order kept within each part. */
    for (size_t i = 0; i < n; i++) {
        count[part_of[i] + 1]++;
    }
    for (int p = 0; p < np; p++) {
        count[p + 1] += count[p];
    }
    for (int p = 0; p < np; p++) {
        if (count[p + 1] > count[p]) {
            attr__part_t *pt = &ing->parts[ing->n_parts++];
            pt->ing = ing;
            pt->n = count[p + 1] - count[p];
            pt->idx = ing->idx + count[p];
            const ProtobufCMessage *req = attr__part_request(pt, kind, ing->events + count[p]);
            pt->fw = (attr__fwd_t){
                .f = f,
                .call = call,
                .p = p,
                .method = attr__ingest_method[kind],
                .req = req,
                .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
                .cb = attr__on_part,
                .arg = pt,
            };
            if (linger) {
                pt->fw.md[0] = (yw_client_md_t){ATTR_LINGER_MD, "1"};
                pt->fw.n_md = 1;
                yw_metric_inc(f->m_linger);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = count[part_of[i]]++;
        ing->idx[at] = (int64_t)i;
        ing->events[at] = events[i];
    }
    free(count);
    if (ing->n_parts == 0) {
        ing->pending = 1;
        attr__ingest_finish(ing); /* an empty batch: an empty summary */
        return;
    }
    /* Sending may finish parts at once (a failure): one more hold while they start. */
    ing->pending = (int)ing->n_parts + 1;
    for (size_t k = 0; k < ing->n_parts; k++) {
        attr__fwd_start(&ing->parts[k].fw);
    }
    if (--ing->pending == 0) {
        attr__ingest_finish(ing);
    }
}

/* Splits `n` events by the partition of their viewer (viewer_of) and forwards the parts. */
static void attr__ingest(attr_front_t *f, yw_call_t *call, attr__events_t kind, void *const *events,
                         size_t n, const char *(*viewer_of)(const void *ev))
{
    int np = attr_cluster_partitions(f->cluster);
    int32_t *part_of = malloc((n ? n : 1) * sizeof *part_of);
    if (part_of == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = viewer_of(events[i]);
        part_of[i] = attr_cluster_partition(v, strlen(v), np);
    }
    attr__ingest_split(f, call, kind, events, n, part_of);
    free(part_of);
}

static const char *attr__exposure_viewer(const void *ev)
{
    const char *v = ((const Yaowei__Attribution__V1__ExposureEvent *)ev)->viewer_id;
    return v != NULL ? v : "";
}

static const char *attr__conversion_viewer(const void *ev)
{
    const char *v = ((const Yaowei__Attribution__V1__ConversionEvent *)ev)->viewer_id;
    return v != NULL ? v : "";
}

void attr_front_record_exposures(attr_front_t *f, yw_call_t *call,
                                 const Yaowei__Attribution__V1__RecordExposuresRequest *req)
{
    if (attr__relay_oversized(f, call, ATTR__EXPOSURES, &req->base, req->n_events)) {
        return;
    }
    attr__ingest(f, call, ATTR__EXPOSURES, (void *const *)req->events, req->n_events,
                 attr__exposure_viewer);
}

void attr_front_record_conversions(attr_front_t *f, yw_call_t *call,
                                   const Yaowei__Attribution__V1__RecordConversionsRequest *req)
{
    if (attr__relay_oversized(f, call, ATTR__CONVERSIONS, &req->base, req->n_events)) {
        return;
    }
    attr__ingest(f, call, ATTR__CONVERSIONS, (void *const *)req->events, req->n_events,
                 attr__conversion_viewer);
}
