/*
 * utf8.h — text that leaves or enters a service is UTF-8: the one well-formedness check,
 * the check of every string field of a protobuf-c message (what the runtime runs on
 * each request, server.h), the repair of replies built from data stored before that
 * check, and quoting of client-supplied values into error messages.
 *
 * proto3 `string` fields must hold UTF-8; generated clients (Python, Go, Java) refuse
 * to parse a message whose strings do not, so a service must neither accept such a
 * string nor send one. `bytes` fields are not text and are never looked at.
 */
#ifndef YW_UTF8_H
#define YW_UTF8_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Length (1-4) of the well-formed UTF-8 sequence that starts `s` (of `len` > 0 bytes),
 * or 0 when the bytes there are not one: a stray continuation byte, a truncated
 * sequence, an overlong form, a surrogate (U+D800..U+DFFF) or a code point past
 * U+10FFFF.
 */
size_t yw_utf8_seq(const char *s, size_t len);

/** Non-zero when `s` holds exactly `len` bytes of well-formed UTF-8. */
int yw_utf8_valid(const char *s, size_t len);

/**
 * Copies `src` (`len` bytes) into `dst` (`cap` > 0 bytes, NUL-terminated), each byte
 * that is not part of well-formed UTF-8 replaced by U+FFFD; cut at a character
 * boundary when `dst` is too small. Returns the length written.
 */
size_t yw_utf8_repair(char *dst, size_t cap, const char *src, size_t len);

/** Bytes of yw_utf8_repair()'s output for `len` bytes of input, at most (NUL included). */
#define YW_UTF8_REPAIR_CAP(len) (3 * (size_t)(len) + 1)

/**
 * Writes `s` into `buf` (of `n` >= 8 bytes) as a double-quoted string for an error or
 * log message, so that a client's bytes are never echoed raw: printable ASCII is kept,
 * `"` and `\` are escaped, every other byte (control characters, and any byte of
 * 0x80 and above, UTF-8 or not) is written as \xNN. After `max` bytes of input, or
 * when `buf` is full, it is cut and `...` appended. NULL is written as "". The result
 * is ASCII. Returns `buf`.
 */
const char *yw_quote(const char *s, size_t max, char *buf, size_t n);

/** Where messages usually cut a value they quote, in bytes of input. */
#define YW_QUOTE_MAX 64

/** A buffer that yw_quote() of `max` input bytes always fits (quotes, escapes, `...`). */
#define YW_QUOTE_CAP(max) (4 * (size_t)(max) + 8)

/**
 * Checks that every string field of `msg` is UTF-8: repeated strings, the strings of
 * nested messages (and of map entries) and the set member of a oneof included. The
 * elements of the top-level repeated message field named `skip` (NULL: none) are left
 * out: a batch whose events the handler judges one by one. Returns 0, or -EILSEQ with
 * "<path>: must be valid UTF-8" in `err` (when `errlen` > 0), the path of the first bad
 * field as `events[3].product_ids[1]`.
 */
int yw_utf8_check_message(const ProtobufCMessage *msg, const char *skip, char *err, size_t errlen);

/**
 * A copy of `msg` whose strings are all UTF-8 (yw_utf8_repair() of each one that is
 * not), for a reply built from data stored before the check existed. The caller frees
 * it with protobuf_c_message_free_unpacked(copy, NULL). NULL when out of memory.
 */
ProtobufCMessage *yw_utf8_repaired_copy(const ProtobufCMessage *msg);

#ifdef __cplusplus
}
#endif
#endif
