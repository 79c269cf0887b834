/*
 * attr_log_int.h — private to the exposure log's two files (attr_log.c: writing,
 * attr_log_read.c: reading and upgrading): the segment format's constants, its
 * little-endian integers and varints, and the record encoder they share. See attr_log.h
 * for the format. Nothing else includes it.
 */
#ifndef ATTR_LOG_INT_H
#define ATTR_LOG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "services/attribution/attr_log.h"

#define ATTR_LOG__HDR_BYTES 32
#define ATTR_LOG__MAGIC "YWEXPSEG"
#define ATTR_LOG__VERSION 2u
#define ATTR_LOG__REC_DEF 0x01  /* version 1 */
#define ATTR_LOG__REC_EXP 0x02  /* version 1 */
#define ATTR_LOG__REC_EXP2 0x03 /* version 2 */

/* ---- little-endian integers and varints ---- */

/** Writes `v` little-endian at p (4 bytes). */
static inline void attr_log__put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/** Writes `v` little-endian at p (8 bytes). */
static inline void attr_log__put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/** Reads a little-endian u32 at p. */
static inline uint32_t attr_log__get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/** Reads a little-endian u64 at p. */
static inline uint64_t attr_log__get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/** Writes `v` as a varint at p (up to 10 bytes); returns its length. */
static inline size_t attr_log__put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/** Reads a varint at *pos (< end); -1 when truncated or longer than 10 bytes. */
static inline int attr_log__get_varint(const unsigned char *buf, size_t end, size_t *pos,
                                       uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= end) {
            return -1;
        }
        unsigned char b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/** A signed integer as an unsigned one for varints (small magnitudes stay short). */
static inline uint64_t attr_log__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/** The inverse of attr_log__zigzag(). */
static inline int64_t attr_log__unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/** The length of `v` as a varint. */
static inline size_t attr_log__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/** The length of a string of `len` bytes as written (varint length, bytes). */
static inline size_t attr_log__str_len(uint32_t len)
{
    return attr_log__varint_len(len) + len;
}

/** Writes a string (varint length, bytes) at p; returns its length. */
static inline size_t attr_log__put_str(unsigned char *p, const char *s, uint32_t len)
{
    size_t n = attr_log__put_varint(p, len);
    memcpy(p + n, s, len);
    return n + len;
}

/* ---- shared by writing and upgrading (attr_log.c) ---- */

/** The bytes of a record after its tag and length. */
size_t attr_log__record_body_len(const attr_log_exposure_t *e);

/** Encodes one record at p (room for 1 + 10 + body bytes); returns its length. */
size_t attr_log__encode_record(unsigned char *p, const attr_log_exposure_t *e, size_t body);

/** pwrite()s all of `n` bytes at `off`. 0 or a negative errno. */
int attr_log__write_all(int fd, const unsigned char *p, size_t n, uint64_t off);

/** fsync()s the directory `dir` (a new or renamed file's name is durable). */
int attr_log__fsync_dir(const char *dir);

#endif
