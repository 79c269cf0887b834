/*
 * attr_front_stream.c — a client's IngestExposures and IngestConversions stream on a
 * cluster node (attr_front.h): each event goes into a part of its viewer's partition
 * (attr_split.h: packed, one part out per partition, so that a partition sees the
 * stream's order); a sealed part goes to the partition's node as RecordExposures /
 * RecordConversions (attr__fwd_start()); at the end of the stream the rest goes, and once
 * every part has answered one IngestSummary goes back (attr__merge_finish(): error
 * indexes are positions in the stream).
 *
 * Flow control: the stream stops reading while its sealed parts not yet answered hold more
 * than ATTR_FRONT_PENDING_BYTES, and reads on once answers bring them below; open parts
 * hold at most about ATTR_FRONT_OPEN_BYTES. A client that never waits meets HTTP/2 flow
 * control, not a growing node.
 *
 * Ending: a part that fails (after the forwarding's tries), a cancelled call or memory
 * running out stops the stream: nothing more is forwarded or read, what waits is dropped,
 * and the call is finished once the parts out have answered — failed naming the
 * partitions, as a RecordExposures call through the front is. The call is only finished
 * with nothing out, so a forwarding never outlives it; if the runtime finished it itself
 * (a message that does not parse) its on_done lets the parts out go of it (fw.call NULL)
 * and the stream is freed when they have answered.
 *
 * Ownership: the stream (attr__stream_t) hangs on the call (yw_call_set_data()) from its
 * first callback until it is finished; a part out (attr__out_t) holds the splitter's
 * part and its request unpacked until its answer.
 */
#include "services/attribution/attr_front_int.h"

#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_split.h"

typedef struct st_attr__stream_t attr__stream_t;

/* A part out: forwarded, not answered yet. */
typedef struct st_attr__out_t {
    attr__fwd_t fw;
    attr__stream_t *s;
    attr_split_part_t *part;
    ProtobufCMessage *req; /* the part's bytes unpacked as the Record request */
    struct st_attr__out_t *prev, *next;
} attr__out_t;

struct st_attr__stream_t {
    attr_front_t *f;
    yw_call_t *call; /* NULL once the call is gone (on_done with parts out) */
    int exposures;   /* IngestExposures, else IngestConversions */
    attr_split_t split;
    int64_t next_pos; /* the position of the stream's next event */
    attr__out_t *out; /* the parts out */
    int ended;        /* on_end ran */
    int pumping, again;
    attr__merge_t m;
};

static void attr__stream_pump(attr__stream_t *s);

static attr__stream_t *attr__stream_new(attr_front_t *f, yw_call_t *call)
{
    attr__stream_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    if (attr_split_init(&s->split, attr_cluster_partitions(f->cluster), 1, ATTR_FRONT_PART_EVENTS,
                        ATTR_FRONT_PART_BYTES, ATTR_FRONT_OPEN_BYTES) != 0) {
        free(s);
        return NULL;
    }
    s->f = f;
    s->call = call;
    s->exposures =
        yw_call_method(call)->request == &yaowei__attribution__v1__exposure_event__descriptor;
    yw_call_set_data(call, s);
    return s;
}

/* The call's stream, made on its first callback. NULL: out of memory, the call failed. */
static attr__stream_t *attr__stream_of(attr_front_t *f, yw_call_t *call)
{
    attr__stream_t *s = yw_call_data(call);
    if (s == NULL && (s = attr__stream_new(f, call)) == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    return s;
}

static void attr__stream_free(attr__stream_t *s)
{
    attr_split_fini(&s->split);
    free(s);
}

/* A part's answer: merged, the part freed, the stream pumped. */
static void attr__on_out(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                         ProtobufCMessage *resp)
{
    attr__out_t *o = fw->arg;
    attr__stream_t *s = o->s;
    attr__merge_part(&s->m, fw->p, code, detail, resp, o->part->pos, o->part->n);
    protobuf_c_message_free_unpacked(o->req, NULL);
    if (o->prev != NULL) {
        o->prev->next = o->next;
    } else {
        s->out = o->next;
    }
    if (o->next != NULL) {
        o->next->prev = o->prev;
    }
    attr_split_done(&s->split, o->part);
    free(o);
    attr__stream_pump(s);
}

/* Forwards a part taken from the splitter (its answer may come before this returns). */
static void attr__stream_send(attr__stream_t *s, attr_split_part_t *pt)
{
    const ProtobufCMessageDescriptor *desc =
        s->exposures ? &yaowei__attribution__v1__record_exposures_request__descriptor
                     : &yaowei__attribution__v1__record_conversions_request__descriptor;
    attr__out_t *o = calloc(1, sizeof *o);
    ProtobufCMessage *req =
        o != NULL ? protobuf_c_message_unpack(desc, NULL, pt->len, pt->buf) : NULL;
    if (req == NULL) {
        free(o);
        attr_split_done(&s->split, pt);
        attr__merge_fail(&s->m, -1, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    free(pt->buf); /* the request holds the events now */
    pt->buf = NULL;
    o->s = s;
    o->part = pt;
    o->req = req;
    o->next = s->out;
    if (s->out != NULL) {
        s->out->prev = o;
    }
    s->out = o;
    o->fw = (attr__fwd_t){
        .f = s->f,
        .call = s->call,
        .p = pt->p,
        .method = s->exposures ? "/yaowei.attribution.v1.AttributionService/RecordExposures"
                               : "/yaowei.attribution.v1.AttributionService/RecordConversions",
        .req = req,
        .resp_desc = &yaowei__attribution__v1__ingest_summary__descriptor,
        .cb = attr__on_out,
        .arg = o,
    };
    attr__fwd_start(&o->fw);
}

/* Whether the stream has stopped: its call gone or cancelled, or something failed. */
static int attr__stream_stopped(const attr__stream_t *s)
{
    return s->call == NULL || s->m.fail_code != GRPC_STATUS_OK || yw_call_is_cancelled(s->call);
}

/*
 * After every event, end and answer: forwards the parts that are ready, pauses or resumes
 * reading, and finishes the call (and frees the stream) once it has ended or stopped and
 * no part is out. Parts answering while it runs (at once, a failure) only ask it to go
 * round again, so the stream is never freed under its own feet.
 */
static void attr__stream_pump(attr__stream_t *s)
{
    if (s->pumping) {
        s->again = 1;
        return;
    }
    s->pumping = 1;
    do {
        s->again = 0;
        if (attr__stream_stopped(s)) {
            attr_split_drop(&s->split);
            continue;
        }
        if (s->ended) {
            attr_split_seal_all(&s->split);
        }
        attr_split_part_t *pt;
        while (!attr__stream_stopped(s) && (pt = attr_split_take(&s->split)) != NULL) {
            attr__stream_send(s, pt);
        }
    } while (s->again);
    s->pumping = 0;
    int stopped = attr__stream_stopped(s);
    if (s->out != NULL || (!stopped && !s->ended)) {
        if (s->call == NULL) {
            return;
        }
        if (stopped || s->split.sealed_bytes > ATTR_FRONT_PENDING_BYTES) {
            (void)yw_call_pause_reads(s->call);
        } else if (yw_call_reads_paused(s->call)) {
            (void)yw_call_resume_reads(s->call);
        }
        return;
    }
    /* Ended or stopped, nothing out: the answer. */
    yw_call_t *call = s->call;
    if (call != NULL) {
        yw_call_set_data(call, NULL);
        if (!yw_call_abandoned(call)) {
            attr__merge_finish(&s->m, call, "stream");
        }
    }
    attr__stream_free(s);
}

static const char *attr__event_viewer(const ProtobufCMessage *msg, int exposures)
{
    const char *v = exposures ? ((const Yaowei__Attribution__V1__ExposureEvent *)msg)->viewer_id
                              : ((const Yaowei__Attribution__V1__ConversionEvent *)msg)->viewer_id;
    return v != NULL ? v : "";
}

void attr_front_stream_message(attr_front_t *f, yw_call_t *call, const ProtobufCMessage *msg)
{
    attr__stream_t *s = attr__stream_of(f, call);
    if (s == NULL) {
        return;
    }
    int64_t pos = s->next_pos++;
    if (!attr__stream_stopped(s)) {
        const char *v = attr__event_viewer(msg, s->exposures);
        int p = attr_cluster_partition(v, strlen(v), s->split.partitions);
        if (attr_split_add(&s->split, p, pos, msg) != 0) {
            attr__merge_fail(&s->m, -1, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        }
    }
    attr__stream_pump(s);
}

void attr_front_stream_end(attr_front_t *f, yw_call_t *call)
{
    attr__stream_t *s = attr__stream_of(f, call); /* (an empty stream's: an empty summary) */
    if (s != NULL) {
        s->ended = 1;
        attr__stream_pump(s);
    }
}

void attr_front_stream_done(yw_call_t *call)
{
    attr__stream_t *s = yw_call_data(call);
    if (s == NULL) {
        return; /* finished by the stream, as it should be */
    }
    /* The runtime finished the call itself: let the parts out go of it. */
    yw_call_set_data(call, NULL);
    s->call = NULL;
    for (attr__out_t *o = s->out; o != NULL; o = o->next) {
        o->fw.call = NULL;
    }
    attr__stream_pump(s);
}
