/*
 * ingest_exposures — load generator for the attribution service's hot path. Counts the
 * exposures the service acknowledged: an acknowledged exposure is durable (the summary
 * comes after fdatasync).
 *
 * Unary (default): keeps --inflight RecordExposures calls of --batch exposures each in
 * flight on one channel (bench/bench_loop.h), measures --seconds after --warmup seconds:
 * the exposures acknowledged by the replies that arrive in that window, per second.
 * --addr A,B,... spreads them: call slot i on a channel to address i mod n (an
 * attribution cluster: every node takes any call).
 *
 * --stream 1: one IngestExposures client stream on a connected channel; sends one
 * exposure per message for --seconds, closes, and waits for the summary (sent once
 * everything it counts is durable): accepted / (summary time - stream start).
 *
 * --count N: instead of a duration, sends exactly N exposures (the preload: "N stored"
 * in the figures), and the window is the whole run. --preload N: sends N exposures
 * first (RecordExposures, not measured), then measures as above the ones after them.
 *
 * Events are bench/bench_events.h's exposures --first, --first+1, ... of --seed (0, the
 * default: a seed from the clock, so that runs do not repeat each other), so a run
 * can be repeated exactly (bench/fsync_ceiling and bench/pg_copy_exposures write the
 * same ones) and a later conversion run can refer to them. Prints one line:
 *
 *   ingest_exposures mode=unary batch=1000 inflight=4 seed=... preloaded=... seconds=...
 *   sent=... accepted=... duplicates=... rejected=... errors=... exposures_per_s=... p50_ms=...
 * p99_ms=... server_cpu_us_per_exposure=...
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "bench/bench_events.h"
#include "bench/bench_loop.h"
#include "common/config.h"
#include "common/runtime.h"
#include "common/server.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#define SERVICE "/yaowei.attribution.v1.AttributionService/"

/** The parameters of a run, shared by both modes. */
typedef struct {
    bench_events_t ev;
    uint64_t first;
    long batch;
    long long count; /* 0: time-bounded */
    long long warmup_ms, seconds_ms;
    bench_pids_t server;
    /* Totals of the measured window. */
    unsigned long long sent, accepted, duplicates, rejected;
} run_t;

/* ---- unary: RecordExposures through bench_loop ---- */

/** One call slot: its request, rebuilt for every call it makes. */
typedef struct {
    Yaowei__Attribution__V1__RecordExposuresRequest req;
    Yaowei__Attribution__V1__ExposureEvent *evs;
    Yaowei__Attribution__V1__ExposureEvent **ptrs;
    Google__Protobuf__Timestamp *times;
    bench_exposure_t *xs;
    char *(*prods)[BENCH_PRODUCTS_MAX];
} slot_t;

typedef struct {
    run_t *run;
    slot_t *slots;
    long n_slots;
} unary_t;

static const ProtobufCMessage *unary_next(void *arg, long slot, uint64_t n)
{
    unary_t *u = arg;
    run_t *r = u->run;
    slot_t *s = &u->slots[slot];
    uint64_t base = n * (uint64_t)r->batch;
    size_t k = (size_t)r->batch;
    if (r->count > 0 && base + k > (uint64_t)r->count) {
        k = (size_t)((uint64_t)r->count - base);
    }
    for (size_t i = 0; i < k; i++) {
        bench_exposure(&r->ev, r->first + base + i, &s->xs[i]);
        bench_exposure_pb(&s->xs[i], &s->evs[i], &s->times[i], s->prods[i]);
    }
    s->req.n_events = k;
    r->sent += k;
    return &s->req.base;
}

static void unary_reply(void *arg, long slot, grpc_status_code code, const ProtobufCMessage *resp,
                        int measured)
{
    unary_t *u = arg;
    (void)slot;
    if (code == GRPC_STATUS_OK && measured) {
        const Yaowei__Attribution__V1__IngestSummary *sum =
            (const Yaowei__Attribution__V1__IngestSummary *)resp;
        u->run->accepted += (unsigned long long)sum->accepted;
        u->run->duplicates += (unsigned long long)sum->duplicates;
        u->run->rejected += (unsigned long long)sum->rejected;
    }
}

static void slots_free(slot_t *slots, long n)
{
    for (long i = 0; slots != NULL && i < n; i++) {
        free(slots[i].evs);
        free(slots[i].ptrs);
        free(slots[i].times);
        free(slots[i].xs);
        free(slots[i].prods);
    }
    free(slots);
}

static slot_t *slots_new(long n, long batch)
{
    slot_t *slots = calloc((size_t)n, sizeof *slots);
    if (slots == NULL) {
        return NULL;
    }
    size_t b = (size_t)batch;
    for (long i = 0; i < n; i++) {
        slot_t *s = &slots[i];
        s->evs = calloc(b, sizeof *s->evs);
        s->ptrs = calloc(b, sizeof(Yaowei__Attribution__V1__ExposureEvent *));
        s->times = calloc(b, sizeof *s->times);
        s->xs = calloc(b, sizeof *s->xs);
        s->prods = calloc(b, sizeof *s->prods);
        if (s->evs == NULL || s->ptrs == NULL || s->times == NULL || s->xs == NULL ||
            s->prods == NULL) {
            slots_free(slots, n);
            return NULL;
        }
        yaowei__attribution__v1__record_exposures_request__init(&s->req);
        for (size_t k = 0; k < b; k++) {
            s->ptrs[k] = &s->evs[k];
        }
        s->req.events = s->ptrs;
    }
    return slots;
}

static int run_unary(run_t *r, const char *addr, long inflight, bench_loop_result_t *res)
{
    unary_t u = {.run = r, .n_slots = inflight};
    if ((u.slots = slots_new(inflight, r->batch)) == NULL) {
        fprintf(stderr, "ingest_exposures: out of memory\n");
        return -ENOMEM;
    }
    bench_loop_cfg_t cfg = {
        .addr = addr,
        .method = SERVICE "RecordExposures",
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        .inflight = inflight,
        .warmup_ms = r->warmup_ms,
        .measure_ms = r->seconds_ms,
        .max_requests = r->count > 0 ? (r->count + r->batch - 1) / r->batch : 0,
        .timeout_ms = 120000,
        .server = r->server.n > 0 ? &r->server : NULL,
        .next = unary_next,
        .reply = unary_reply,
        .arg = &u,
    };
    int rc = bench_loop_run(&cfg, res);
    slots_free(u.slots, inflight);
    return rc;
}

/* ---- stream: one IngestExposures call on gRPC core directly ---- */

typedef struct {
    run_t *run;
    yw_runtime_t *rt;
    grpc_channel *channel;
    grpc_call *call;
    yw_tag_t watch_tag, md_tag, send_tag, close_tag, recv_tag;
    int pending; /* tags in the completion queue */
    int closed;  /* SEND_CLOSE_FROM_CLIENT queued */
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *send_bb, *recv_bb;
    uint64_t start_ns, end_ns, deadline_ns;
    double cpu0, cpu_s;
    char error[256];
    bench_exposure_t x;
    Yaowei__Attribution__V1__ExposureEvent pb;
    Google__Protobuf__Timestamp ts;
    char *prods[BENCH_PRODUCTS_MAX];
} stream_t;

#define STREAM_OF(tag, field) ((stream_t *)((char *)(tag)-offsetof(stream_t, field)))

static void stream_maybe_end(stream_t *st)
{
    if (st->pending == 0) {
        yw_runtime_stop(st->rt);
    }
}

static void stream_fail(stream_t *st, const char *what)
{
    if (st->error[0] == '\0') {
        snprintf(st->error, sizeof st->error, "%s", what);
    }
}

static int stream_batch(stream_t *st, const grpc_op *ops, size_t n, yw_tag_t *tag)
{
    if (grpc_call_start_batch(st->call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        stream_fail(st, "grpc_call_start_batch failed");
        return -EIO;
    }
    st->pending++;
    return 0;
}

/** Queues the next exposure, or the half-close once the duration or count is reached. */
static void stream_send_next(stream_t *st)
{
    run_t *r = st->run;
    int done =
        r->count > 0 ? r->sent >= (unsigned long long)r->count : bench_now_ns() >= st->deadline_ns;
    grpc_op op;
    memset(&op, 0, sizeof op);
    if (done || st->error[0] != '\0') {
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        st->closed = 1;
        (void)stream_batch(st, &op, 1, &st->close_tag);
        return;
    }
    bench_exposure(&r->ev, r->first + r->sent, &st->x);
    bench_exposure_pb(&st->x, &st->pb, &st->ts, st->prods);
    size_t len = protobuf_c_message_get_packed_size(&st->pb.base);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(&st->pb.base, GRPC_SLICE_START_PTR(slice));
    st->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    r->sent++;
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = st->send_bb;
    if (stream_batch(st, &op, 1, &st->send_tag) != 0) {
        grpc_byte_buffer_destroy(st->send_bb);
        st->send_bb = NULL;
    }
}

static void stream_on_send(yw_tag_t *tag, int ok)
{
    stream_t *st = STREAM_OF(tag, send_tag);
    st->pending--;
    grpc_byte_buffer_destroy(st->send_bb);
    st->send_bb = NULL;
    if (!ok) {
        /* The call ended early: its status comes with the receive batch. */
        stream_fail(st, "the stream failed while sending");
    }
    if (!st->closed) {
        stream_send_next(st);
    }
    stream_maybe_end(st);
}

static void stream_on_md(yw_tag_t *tag, int ok)
{
    stream_t *st = STREAM_OF(tag, md_tag);
    (void)ok; /* a failed call reports its status with the receive batch */
    st->pending--;
    stream_maybe_end(st);
}

static void stream_on_close(yw_tag_t *tag, int ok)
{
    stream_t *st = STREAM_OF(tag, close_tag);
    (void)ok;
    st->pending--;
    stream_maybe_end(st);
}

static void stream_on_recv(yw_tag_t *tag, int ok)
{
    stream_t *st = STREAM_OF(tag, recv_tag);
    run_t *r = st->run;
    st->pending--;
    st->end_ns = bench_now_ns();
    st->cpu_s = r->server.n > 0 ? bench_cpu_seconds(&r->server) - st->cpu0 : 0;
    if (!ok || st->status != GRPC_STATUS_OK) {
        char detail[200];
        size_t n = GRPC_SLICE_LENGTH(st->details);
        n = n < sizeof detail - 1 ? n : sizeof detail - 1;
        memcpy(detail, GRPC_SLICE_START_PTR(st->details), n);
        detail[n] = '\0';
        snprintf(st->error, sizeof st->error, "%s: %s",
                 yw_status_name(ok ? st->status : GRPC_STATUS_UNAVAILABLE), detail);
    } else if (st->recv_bb != NULL) {
        grpc_byte_buffer_reader reader;
        Yaowei__Attribution__V1__IngestSummary *sum = NULL;
        if (grpc_byte_buffer_reader_init(&reader, st->recv_bb)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            sum = yaowei__attribution__v1__ingest_summary__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                                  GRPC_SLICE_START_PTR(all));
            grpc_slice_unref(all);
        }
        if (sum == NULL) {
            stream_fail(st, "the summary is not a valid IngestSummary");
        } else {
            r->accepted = (unsigned long long)sum->accepted;
            r->duplicates = (unsigned long long)sum->duplicates;
            r->rejected = (unsigned long long)sum->rejected;
            yaowei__attribution__v1__ingest_summary__free_unpacked(sum, NULL);
        }
    } else {
        stream_fail(st, "the stream ended without a summary");
    }
    stream_maybe_end(st);
}

static void stream_start(stream_t *st)
{
    run_t *r = st->run;
    grpc_slice method = grpc_slice_from_static_string(SERVICE "IngestExposures");
    st->call =
        grpc_channel_create_call(st->channel, NULL, GRPC_PROPAGATE_DEFAULTS, yw_runtime_cq(st->rt),
                                 method, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (st->call == NULL) {
        stream_fail(st, "cannot create the call");
        return;
    }
    st->cpu0 = r->server.n > 0 ? bench_cpu_seconds(&r->server) : 0;
    st->start_ns = bench_now_ns();
    st->deadline_ns = st->start_ns + (uint64_t)r->seconds_ms * 1000000u;
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &st->initial_md;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &st->recv_bb;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &st->trailing_md;
    ops[2].data.recv_status_on_client.status = &st->status;
    ops[2].data.recv_status_on_client.status_details = &st->details;
    if (stream_batch(st, ops, 3, &st->recv_tag) != 0) {
        return;
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (stream_batch(st, ops, 1, &st->md_tag) == 0) {
        stream_send_next(st);
    }
}

static void stream_on_watch(yw_tag_t *tag, int ok)
{
    stream_t *st = STREAM_OF(tag, watch_tag);
    st->pending--;
    grpc_connectivity_state s = grpc_channel_check_connectivity_state(st->channel, 1);
    if (s == GRPC_CHANNEL_READY) {
        stream_start(st);
    } else if (!ok) {
        stream_fail(st, "cannot connect within 10 s");
    } else {
        grpc_channel_watch_connectivity_state(
            st->channel, s,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(10, GPR_TIMESPAN)),
            yw_runtime_cq(st->rt), &st->watch_tag);
        st->pending++;
    }
    stream_maybe_end(st);
}

static int run_stream(run_t *r, const char *addr, bench_loop_result_t *res)
{
    memset(res, 0, sizeof *res);
    stream_t *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return -ENOMEM;
    }
    st->run = r;
    st->watch_tag.cb = stream_on_watch;
    st->md_tag.cb = stream_on_md;
    st->send_tag.cb = stream_on_send;
    st->close_tag.cb = stream_on_close;
    st->recv_tag.cb = stream_on_recv;
    st->details = grpc_empty_slice();
    grpc_metadata_array_init(&st->initial_md);
    grpc_metadata_array_init(&st->trailing_md);
    int rc = yw_runtime_create(&st->rt);
    if (rc != 0) {
        free(st);
        return rc;
    }
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    st->channel = grpc_channel_create(addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    /* Connect first: the stream's clock starts on a ready channel. */
    grpc_connectivity_state s = grpc_channel_check_connectivity_state(st->channel, 1);
    grpc_channel_watch_connectivity_state(
        st->channel, s,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(10, GPR_TIMESPAN)),
        yw_runtime_cq(st->rt), &st->watch_tag);
    st->pending++;
    yw_runtime_run(st->rt);
    if (st->call != NULL) {
        grpc_call_unref(st->call);
    }
    grpc_channel_destroy(st->channel);
    yw_runtime_destroy(st->rt);
    if (st->recv_bb != NULL) {
        grpc_byte_buffer_destroy(st->recv_bb);
    }
    grpc_metadata_array_destroy(&st->initial_md);
    grpc_metadata_array_destroy(&st->trailing_md);
    grpc_slice_unref(st->details);
    res->seconds = (double)(st->end_ns - st->start_ns) / 1e9;
    res->server_cpu_s = st->cpu_s;
    res->requests = 1;
    res->ok = st->error[0] == '\0';
    res->errors = !res->ok;
    snprintf(res->first_error, sizeof res->first_error, "%s", st->error);
    if (res->ok) {
        (void)bench_lat_add(&res->lat, st->end_ns - st->start_ns);
    }
    free(st);
    return 0;
}

int main(int argc, char **argv)
{
    yw_option_t opts[] = {
        {"addr", "YW_BENCH_ADDR", "127.0.0.1:50053",
         "HOST:PORT of attribution; unary: HOST:PORT,HOST:PORT,... spreads the calls in flight "
         "over several (a cluster's nodes)",
         YW_OPTION_VALUE, NULL},
        {"stream", NULL, "0", "1: one IngestExposures stream instead of RecordExposures calls",
         YW_OPTION_VALUE, NULL},
        {"batch", NULL, "1000", "exposures per RecordExposures call", YW_OPTION_VALUE, NULL},
        {"inflight", NULL, "4", "RecordExposures calls kept in flight", YW_OPTION_VALUE, NULL},
        {"count", NULL, "0", "send exactly this many exposures (a preload) instead of timing",
         YW_OPTION_VALUE, NULL},
        {"preload", NULL, "0", "first send this many (RecordExposures, not measured), then measure",
         YW_OPTION_VALUE, NULL},
        {"seconds", NULL, "10", "measured duration", YW_OPTION_VALUE, NULL},
        {"warmup", NULL, "1", "seconds before measuring (unary)", YW_OPTION_VALUE, NULL},
        {"seed", NULL, "0", "event seed (bench/bench_events.h); 0: from the clock", YW_OPTION_VALUE,
         NULL},
        {"first", NULL, "0", "index of the first exposure sent", YW_OPTION_VALUE, NULL},
        {"server-pids", NULL, "", "PID[,PID]: report their CPU per exposure", YW_OPTION_VALUE,
         NULL},
        BENCH_POPULATION_OPTIONS,
    };
    size_t n = sizeof opts / sizeof opts[0];
    int rc = yw_config_parse(argc, argv, opts, n, "ingest_exposures",
                             "durable exposures/s through RecordExposures or IngestExposures");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    long long stream, batch, inflight, count, preload, seconds, warmup, seed, first;
    bench_events_t ev;
    char err[256];
    if (yw_config_int(opts, n, "stream", &stream, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "batch", &batch, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "inflight", &inflight, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "count", &count, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "preload", &preload, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seconds", &seconds, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "warmup", &warmup, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "seed", &seed, err, sizeof err) != 0 ||
        yw_config_int(opts, n, "first", &first, err, sizeof err) != 0 ||
        bench_population_parse(opts, n, &ev, err, sizeof err) != 0) {
        fprintf(stderr, "ingest_exposures: %s\n", err);
        return 2;
    }
    if (batch < 1 || batch > 10000 || inflight < 1 || inflight > 1024 || count < 0 || preload < 0 ||
        seconds < 1 || warmup < 0 || seed < 0 || first < 0) {
        fprintf(stderr, "ingest_exposures: bad option values (--batch 1..10000, --inflight "
                        "1..1024, --seconds >= 1, others >= 0)\n");
        return 2;
    }
    ev.seed = bench_seed(seed);
    run_t r = {
        .ev = ev,
        .first = (uint64_t)first,
        .batch = (long)batch,
        .count = count,
        .warmup_ms = warmup * 1000,
        .seconds_ms = seconds * 1000,
    };
    if (bench_pids_parse(yw_config_get(opts, n, "server-pids"), &r.server) != 0) {
        fprintf(stderr, "ingest_exposures: --server-pids: expected PID[,PID...]\n");
        return 2;
    }
    const char *addr = yw_config_get(opts, n, "addr");
    if (stream && strchr(addr, ',') != NULL) {
        fprintf(stderr, "ingest_exposures: --stream 1 takes one address, not %s\n", addr);
        return 2;
    }
    bench_loop_result_t res;
    if (preload > 0) {
        /* The exposures before the measured ones, as a count-bounded run of their own. */
        run_t pre = r;
        pre.count = preload;
        pre.server.n = 0;
        rc = run_unary(&pre, addr, (long)inflight, &res);
        bench_lat_free(&res.lat);
        if (rc != 0 || res.errors > 0) {
            fprintf(stderr, "ingest_exposures: the preload failed: %s\n",
                    rc != 0 ? strerror(-rc) : res.first_error);
            return 1;
        }
        r.first += (uint64_t)preload;
    }
    rc = stream ? run_stream(&r, addr, &res) : run_unary(&r, addr, (long)inflight, &res);
    if (rc != 0) {
        fprintf(stderr, "ingest_exposures: cannot run: %s\n", strerror(-rc));
        return 1;
    }
    double secs = res.seconds > 0 ? res.seconds : 1e-9;
    printf("ingest_exposures mode=%s batch=%lld inflight=%lld seed=%llu preloaded=%lld "
           "seconds=%.2f sent=%llu accepted=%llu duplicates=%llu rejected=%llu errors=%llu "
           "exposures_per_s=%.0f p50_ms=%.1f p99_ms=%.1f server_cpu_us_per_exposure=%.2f\n",
           stream ? "stream" : "unary", stream ? 1 : batch, stream ? 1 : inflight,
           (unsigned long long)r.ev.seed, preload, res.seconds, r.sent, r.accepted, r.duplicates,
           r.rejected, res.errors, (double)r.accepted / secs,
           bench_lat_quantile(&res.lat, 0.50) / 1000.0, bench_lat_quantile(&res.lat, 0.99) / 1000.0,
           r.accepted > 0 ? res.server_cpu_s * 1e6 / (double)r.accepted : 0.0);
    if (res.first_error[0] != '\0') {
        fprintf(stderr, "ingest_exposures: first error: %s\n", res.first_error);
    }
    bench_lat_free(&res.lat);
    /* Something acknowledged and no call failed: the tool worked (duplicates and rejects
     * are the caller's to judge). */
    return r.accepted + r.duplicates + r.rejected > 0 && res.errors == 0 ? 0 : 1;
}
