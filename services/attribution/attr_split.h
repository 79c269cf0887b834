/*
 * attr_split.h — a client stream's events split by partition into parts, each part a
 * packed request ready to forward (pure: no I/O, no clock, no gRPC). The cluster front's
 * streams (attr_front_stream.c) add each event of an IngestExposures or IngestConversions
 * stream to its viewer's partition here and forward the parts that come out as
 * RecordExposures / RecordConversions calls.
 *
 * Events are kept packed: an event is copied as one element of the request's repeated
 * field (`field`, events = 1), so the bytes of a part are the packed request itself (a
 * stream's message is freed once its callback returns; a copy costs its packed size and
 * one allocation per part, not one per string).
 *
 * Parts: a partition's open part is sealed once it holds `part_events` events or
 * `part_bytes` bytes (an event that would take it past part_bytes goes to a new part; an
 * event larger than part_bytes makes a part of its own). Whenever the open parts of all
 * partitions together hold more than `open_max` bytes, the largest is sealed too, so that
 * a stream spread thin over many partitions holds at most about open_max bytes unsealed.
 * The caller seals the rest at the stream's end (attr_split_seal_all()).
 *
 * Order: a partition has at most one part out (taken, not yet done) at a time, and its
 * parts are taken in the order they were filled, so each partition's events reach its
 * owner in the order of the stream, as a standalone attribution would judge them.
 * attr_split_take() hands out the sealed parts whose partition has none out, partitions in
 * the order their parts became ready.
 *
 * Ownership: the splitter owns every part until attr_split_take() hands one out; the caller
 * hands it back with attr_split_done(), which frees it. attr_split_fini() frees the parts
 * not taken; parts out must be done first.
 */
#ifndef ATTR_SPLIT_H
#define ATTR_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One part: events of one partition, in stream order. */
typedef struct st_attr_split_part_t {
    int p;        /* its partition */
    size_t n;     /* events */
    int64_t *pos; /* the stream position of each event, ascending */
    /* The events as a packed request (each one element of the repeated field): `len`
     * bytes. Once taken, the caller may free() it early and set it NULL (len stays). */
    uint8_t *buf;
    size_t len;
    /* private */
    struct st_attr_split_part_t *next; /* the partition's next part */
    size_t pos_cap, buf_cap;
    int sealed;
} attr_split_part_t;

/* A partition's parts (private). */
typedef struct st_attr_split_queue_t {
    attr_split_part_t *head, *tail; /* oldest first; the tail may be open */
    int out;                        /* one of its parts is taken, not yet done */
    int ready;                      /* in the ready ring */
} attr_split_queue_t;

typedef struct st_attr_split_t {
    int partitions;
    size_t part_events, part_bytes, open_max;
    /** Bytes in open parts (not sealed yet). */
    size_t open_bytes;
    /** Bytes in sealed parts not done yet: waiting their turn or out. */
    size_t sealed_bytes;
    /** Parts held or out: 0 once every part added has been done (or dropped). */
    size_t parts;
    /** Parts out (taken, not yet done). */
    size_t out;
    /* private */
    uint8_t tag[5];
    size_t tag_len;
    attr_split_queue_t *q;
    int *ring; /* partitions whose head part is ready to take, in order */
    int ring_head, ring_n;
} attr_split_t;

/**
 * A splitter over `partitions` partitions whose parts are requests with the events as
 * repeated message field `field`. Bounds as above (each at least 1). Returns 0, -EINVAL
 * or -ENOMEM.
 */
int attr_split_init(attr_split_t *sp, int partitions, uint32_t field, size_t part_events,
                    size_t part_bytes, size_t open_max);

/** Frees every part not taken. Parts out must have been done. */
void attr_split_fini(attr_split_t *sp);

/**
 * Adds event `ev` (copied: packed), at stream position `pos`, to partition `p`'s open part,
 * sealing parts as the bounds say. Returns 0, or -ENOMEM with nothing added.
 */
int attr_split_add(attr_split_t *sp, int p, int64_t pos, const ProtobufCMessage *ev);

/** Seals every open part (the end of the stream): every part may then be taken in turn. */
void attr_split_seal_all(attr_split_t *sp);

/**
 * The next part to forward, or NULL when none is ready: a sealed part whose partition has
 * no part out. The caller owns it until attr_split_done().
 */
attr_split_part_t *attr_split_take(attr_split_t *sp);

/** A part taken has been answered: frees it; its partition's next part may be taken. */
void attr_split_done(attr_split_t *sp, attr_split_part_t *pt);

/** Frees every part not taken, open or sealed (a stream that failed or was cancelled). */
void attr_split_drop(attr_split_t *sp);

#ifdef __cplusplus
}
#endif
#endif
