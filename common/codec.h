/*
 * codec.h — fixed-width little-endian integers and varints, the byte layouts of the
 * files the services write themselves (log segments, index files, snapshots).
 *
 * Little-endian is spelled out byte by byte, so a file reads the same on any host; the
 * compiler turns each function into one load or store on a little-endian machine.
 * Varints are protobuf's base-128 (least significant group first, at most 10 bytes for
 * 64 bits); signed values go through zigzag first. Header-only: each function is a few
 * instructions that belongs inlined in its caller's loop.
 */
#ifndef YW_CODEC_H
#define YW_CODEC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The most bytes a 64-bit varint takes. */
#define YW_VARINT_MAX 10

/** Writes `v` as 4 little-endian bytes at `p`. */
static inline void yw_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/** Writes `v` as 8 little-endian bytes at `p`. */
static inline void yw_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/** The 4 little-endian bytes at `p`. */
static inline uint32_t yw_get_le32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/** The 8 little-endian bytes at `p`. */
static inline uint64_t yw_get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/** The bytes yw_varint_put() writes for `v` (1 to YW_VARINT_MAX). */
static inline size_t yw_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/** Writes `v` as a varint at `p` (room for YW_VARINT_MAX bytes); returns the bytes written. */
static inline size_t yw_varint_put(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/**
 * Reads the varint at buf[*pos] (the bytes end before buf[end]) into `*out` and moves
 * `*pos` past it. Returns 0, or -EBADMSG when it runs past `end` or over YW_VARINT_MAX
 * bytes (then `*out` is unchanged and `*pos` somewhere inside the bad varint).
 */
static inline int yw_varint_get(const unsigned char *buf, size_t end, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 7 * YW_VARINT_MAX; shift += 7) {
        if (*pos >= end) {
            return -EBADMSG;
        }
        unsigned char b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -EBADMSG;
}

/** A signed value as an unsigned one whose varint is short when |v| is small. */
static inline uint64_t yw_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/** The inverse of yw_zigzag(). */
static inline int64_t yw_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

#ifdef __cplusplus
}
#endif
#endif
