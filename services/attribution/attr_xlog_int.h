/*
 * attr_xlog_int.h — private to the exposure log's two files (attr_xlog.c: writing,
 * attr_xlog_read.c: reading and upgrading): the segment format's constants, its strings
 * and the record encoder they share (integers and varints are common/codec.h's). See attr_xlog.h
 * for the format. Nothing else includes it.
 */
#ifndef ATTR_XLOG_INT_H
#define ATTR_XLOG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/codec.h"
#include "services/attribution/attr_xlog.h"

#define ATTR_XLOG__HDR_BYTES 32
#define ATTR_XLOG__MAGIC "YWEXPSEG"
#define ATTR_XLOG__VERSION 2u
#define ATTR_XLOG__REC_DEF 0x01  /* version 1 */
#define ATTR_XLOG__REC_EXP 0x02  /* version 1 */
#define ATTR_XLOG__REC_EXP2 0x03 /* version 2 */

/* ---- strings (integers and varints: common/codec.h) ---- */

/** The length of a string of `len` bytes as written (varint length, bytes). */
static inline size_t attr_xlog__str_len(uint32_t len)
{
    return yw_varint_len(len) + len;
}

/** Writes a string (varint length, bytes) at p; returns its length. */
static inline size_t attr_xlog__put_str(unsigned char *p, const char *s, uint32_t len)
{
    size_t n = yw_varint_put(p, len);
    memcpy(p + n, s, len);
    return n + len;
}

/* ---- shared by writing and upgrading (attr_xlog.c) ---- */

/** The bytes of a record after its tag and length. */
size_t attr_xlog__record_body_len(const attr_xlog_exposure_t *e);

/** Encodes one record at p (room for 1 + 10 + body bytes); returns its length. */
size_t attr_xlog__encode_record(unsigned char *p, const attr_xlog_exposure_t *e, size_t body);

#endif
