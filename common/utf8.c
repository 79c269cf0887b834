/* utf8.c — UTF-8 checks, repair and quoting. See utf8.h. */
#include "common/utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t yw_utf8_seq(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t need;
    /* The range of the second byte (RFC 3629, section 4), which excludes overlongs,
     * surrogates and code points past U+10FFFF; later bytes are 0x80..0xbf. */
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (len <= need || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t k = 2; k <= need; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return need + 1;
}

int yw_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII, the common case, eight bytes at a time. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        size_t n = yw_utf8_seq(s + i, len - i);
        if (n == 0) {
            return 0;
        }
        i += n;
    }
    return 1;
}

size_t yw_utf8_repair(char *dst, size_t cap, const char *src, size_t len)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = yw_utf8_seq(src + i, len - i);
        const char *from = n > 0 ? src + i : replacement;
        size_t k = n > 0 ? n : 3;
        if (o + k >= cap) {
            break;
        }
        memcpy(dst + o, from, k);
        o += k;
        i += n > 0 ? n : 1;
    }
    dst[o] = '\0';
    return o;
}

const char *yw_quote(const char *s, size_t max, char *buf, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    if (n < 8) {
        if (n > 0) {
            buf[0] = '\0';
        }
        return buf;
    }
    if (s == NULL) {
        s = "";
    }
    buf[o++] = '"';
    /* Keep room for the worst escape (4), `..."` (4) and NUL (1). */
    for (; s[i] != '\0' && i < max && o + 9 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    if (s[i] != '\0') {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* ---- messages ---- */

/* Puts `name` (with "[k]" when `indexed`) and a dot before the path in `err`. */
static void yw__path_prepend(char *err, size_t errlen, const char *name, size_t k, int indexed)
{
    if (errlen == 0) {
        return;
    }
    char head[160];
    const char *dot = err[0] != '\0' ? "." : "";
    int h = indexed ? snprintf(head, sizeof head, "%s[%zu]%s", name, k, dot)
                    : snprintf(head, sizeof head, "%s%s", name, dot);
    size_t hl = h < 0 ? 0 : (size_t)h < sizeof head ? (size_t)h : sizeof head - 1;
    if (hl >= errlen) {
        hl = errlen - 1;
    }
    size_t tail = strlen(err);
    if (hl + tail >= errlen) {
        tail = errlen - 1 - hl;
    }
    memmove(err + hl, err, tail);
    memcpy(err, head, hl);
    err[hl + tail] = '\0';
}

static int yw__walk(ProtobufCMessage *msg, const char *skip, int repair, char *err, size_t errlen);

/*
 * One string or message value at `slot`. Checking: -EILSEQ for a string that is not
 * UTF-8 (`err` gets the path below this field, "" for the string itself). Repairing:
 * such a string is replaced (it was allocated by protobuf-c's default allocator, i.e.
 * malloc); -ENOMEM when that fails.
 */
static int yw__value(const ProtobufCFieldDescriptor *f, void **slot, int repair, char *err,
                     size_t errlen)
{
    if (*slot == NULL) {
        return 0;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        return yw__walk(*slot, NULL, repair, err, errlen);
    }
    char *s = *slot;
    size_t len = strlen(s);
    if (yw_utf8_valid(s, len)) {
        return 0;
    }
    if (!repair) {
        if (errlen > 0) {
            err[0] = '\0';
        }
        return -EILSEQ;
    }
    char *fixed = malloc(YW_UTF8_REPAIR_CAP(len));
    if (fixed == NULL) {
        return -ENOMEM;
    }
    yw_utf8_repair(fixed, YW_UTF8_REPAIR_CAP(len), s, len);
    free(s);
    *slot = fixed;
    return 0;
}

/* Every string of `msg` (but the elements of the repeated field `skip`); see yw__value(). */
static int yw__walk(ProtobufCMessage *msg, const char *skip, int repair, char *err, size_t errlen)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        char *member = (char *)msg + f->offset;
        int rc = 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (skip != NULL && strcmp(f->name, skip) == 0) {
                continue;
            }
            size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
            void **arr = *(void ***)member;
            for (size_t k = 0; k < n && rc == 0; k++) {
                if ((rc = yw__value(f, &arr[k], repair, err, errlen)) == -EILSEQ) {
                    yw__path_prepend(err, errlen, f->name, k, 1);
                }
            }
        } else {
            /* Only the member a oneof holds is set; the others share its storage. */
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                *(const uint32_t *)((const char *)msg + f->quantifier_offset) != f->id) {
                continue;
            }
            if ((rc = yw__value(f, (void **)member, repair, err, errlen)) == -EILSEQ) {
                yw__path_prepend(err, errlen, f->name, 0, 0);
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int yw_utf8_check_message(const ProtobufCMessage *msg, const char *skip, char *err, size_t errlen)
{
    if (errlen > 0) {
        err[0] = '\0';
    }
    /* Checking writes nothing: the cast only shares the walk with the repair. */
    int rc = yw__walk((ProtobufCMessage *)msg, skip, 0, err, errlen);
    if (rc != 0 && errlen > 0) {
        size_t at = strlen(err);
        snprintf(err + at, errlen - at, ": must be valid UTF-8");
    }
    return rc;
}

ProtobufCMessage *yw_utf8_repaired_copy(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return NULL;
    }
    ProtobufCMessage *copy = NULL;
    if (protobuf_c_message_pack(msg, buf) == len) {
        copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    }
    free(buf);
    if (copy != NULL && yw__walk(copy, NULL, 1, NULL, 0) != 0) {
        protobuf_c_message_free_unpacked(copy, NULL);
        copy = NULL;
    }
    return copy;
}
