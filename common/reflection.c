/*
 * reflection.c — gRPC server reflection (grpc.reflection.v1 and v1alpha) over an
 * embedded FileDescriptorSet.
 *
 * The index is built once, at server creation, and is read-only afterwards:
 *
 * - files: each file's name, its serialized FileDescriptorProto exactly as protoc wrote
 *   it (a slice of our copy of the set's bytes, found by walking the set's wire format,
 *   so nothing is lost or reordered by a re-pack), its direct dependencies and its
 *   transitive closure (the file first, breadth first, each once).
 * - symbols: every package-qualified name a client may ask for (messages, nested ones
 *   included, enums, enum values, services, methods, fields, oneofs, extensions), sorted
 *   for binary search.
 * - extensions: (extendee, number, file) for all_extension_numbers_of_type and
 *   file_containing_extension.
 *
 * The handler answers each request of the ServerReflectionInfo stream with one
 * response. Per stream it remembers which files were sent: the requested file is always
 * sent, its dependencies only when this stream has not had them yet (what grpc-go does;
 * clients cache by file name).
 */
#include "common/reflection.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/vec.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

/* gRPC status codes carried inside ErrorResponse (an int32 on the wire). */
#define YW_REFLECTION_NOT_FOUND 5
#define YW_REFLECTION_INTERNAL 13
#define YW_REFLECTION_UNIMPLEMENTED 12

/* list_services: names asked of the server in one go before falling back to the heap. */
#define YW_REFLECTION_SERVICES_ON_STACK 64

typedef enum {
    YW_SYMBOL_MESSAGE,
    YW_SYMBOL_ENUM,
    YW_SYMBOL_ENUM_VALUE,
    YW_SYMBOL_SERVICE,
    YW_SYMBOL_METHOD,
    YW_SYMBOL_FIELD,
    YW_SYMBOL_ONEOF,
    YW_SYMBOL_EXTENSION,
} yw_symbol_kind_t;

typedef struct st_yw_reflection_symbol_t {
    /** Package-qualified, no leading dot; owned (malloc). */
    char *name;
    int file;
    yw_symbol_kind_t kind;
} yw_reflection_symbol_t;

typedef struct st_yw_reflection_extension_t {
    /** Extended type, no leading dot; points into the unpacked set. */
    const char *extendee;
    int32_t number;
    int file;
} yw_reflection_extension_t;

typedef struct st_yw_reflection_file_t {
    /** Points into the unpacked set. */
    const char *name;
    /** The serialized FileDescriptorProto; points into yw_reflection_t.raw. */
    const uint8_t *bytes;
    size_t len;
    /** The file, then its transitive dependencies; owned (malloc). */
    int *closure;
    size_t n_closure;
} yw_reflection_file_t;

struct st_yw_reflection_t {
    /** Our copy of the set's bytes; file bytes are slices of it. */
    uint8_t *raw;
    size_t raw_len;
    /** The unpacked set (protobuf-c, default allocator); names point into it. */
    Google__Protobuf__FileDescriptorSet *set;
    yw_reflection_file_t *files;
    size_t n_files;
    yw_reflection_symbol_t *symbols;
    size_t n_symbols, cap_symbols;
    yw_reflection_extension_t *extensions;
    size_t n_extensions, cap_extensions;
    yw_service_t service_v1;
    yw_service_t service_v1alpha;
};

/* ---- building the index ---- */

/* Error text for create: the failure and the input it concerns. */
static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Reads a base-128 varint at *pos. Returns 0, or -1 when truncated or over 64 bits. */
static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) {
            return -1;
        }
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/*
 * Walks the set's top level: every `file` (field 1, length-delimited) becomes one entry
 * of r->files, in order, with its bytes; other well-formed fields are skipped (newer
 * descriptor.proto lets FileDescriptorSet carry extensions). Groups, unknown wire types
 * and truncated records mean the bytes are not a descriptor set.
 */
static int walk_set(yw_reflection_t *r, char *err, size_t errlen)
{
    const uint8_t *buf = r->raw;
    size_t len = r->raw_len, pos = 0, n = 0, cap = 0;
    yw_reflection_file_t *files = NULL;

    while (pos < len) {
        size_t at = pos;
        uint64_t key, v;
        if (read_varint(buf, len, &pos, &key) != 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) {
            free(files);
            return set_err(err, errlen, "descriptor set: bad field key at byte %zu", at);
        }
        unsigned wire = (unsigned)(key & 7);
        uint64_t field = key >> 3;
        switch (wire) {
        case 0: /* varint */
            if (read_varint(buf, len, &pos, &v) != 0) {
                free(files);
                return set_err(err, errlen, "descriptor set: truncated varint at byte %zu", at);
            }
            break;
        case 1: /* fixed64 */
        case 5: /* fixed32 */
            if (len - pos < (wire == 1 ? 8u : 4u)) {
                free(files);
                return set_err(err, errlen, "descriptor set: truncated field at byte %zu", at);
            }
            pos += wire == 1 ? 8 : 4;
            break;
        case 2: /* length-delimited */
            if (read_varint(buf, len, &pos, &v) != 0 || v > len - pos) {
                free(files);
                return set_err(err, errlen, "descriptor set: truncated record at byte %zu", at);
            }
            if (field == 1) {
                if (YW_VEC_GROW(files, n, cap, 1, 16) != 0) {
                    free(files);
                    set_err(err, errlen, "descriptor set: out of memory");
                    return -ENOMEM;
                }
                memset(&files[n], 0, sizeof files[n]);
                files[n].bytes = buf + pos;
                files[n].len = (size_t)v;
                n++;
            }
            pos += (size_t)v;
            break;
        default:
            free(files);
            return set_err(err, errlen,
                           "descriptor set: wire type %u of field %llu at byte %zu "
                           "is not allowed in a FileDescriptorSet",
                           wire, (unsigned long long)field, at);
        }
    }
    if (len > 0 && n == 0) {
        free(files);
        return set_err(err, errlen, "descriptor set: %zu bytes but no file in them", len);
    }
    r->files = files;
    r->n_files = n;
    return 0;
}

/* Returns a malloc'd "prefix.name" (or "name" when prefix is empty), or NULL. */
static char *qualify(const char *prefix, const char *name)
{
    size_t lp = strlen(prefix), ln = strlen(name);
    char *s = malloc(lp + ln + 2);
    if (s == NULL) {
        return NULL;
    }
    if (lp > 0) {
        memcpy(s, prefix, lp);
        s[lp++] = '.';
    }
    memcpy(s + lp, name, ln + 1);
    return s;
}

/*
 * Adds `prefix.name` as a symbol of `file`. Returns the stored name (owned by r), or
 * NULL on ENOMEM. A NULL `name` (absent in the descriptor) is skipped: returns "".
 */
static const char *add_symbol(yw_reflection_t *r, const char *prefix, const char *name, int file,
                              yw_symbol_kind_t kind, int *rc)
{
    if (name == NULL || name[0] == '\0') {
        return "";
    }
    if (YW_VEC_GROW(r->symbols, r->n_symbols, r->cap_symbols, 1, 256) != 0) {
        *rc = -ENOMEM;
        return NULL;
    }
    char *q = qualify(prefix, name);
    if (q == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    r->symbols[r->n_symbols++] = (yw_reflection_symbol_t){q, file, kind};
    return q;
}

/* Records an extension field (top level or nested) and adds it as a symbol. */
static int add_extension(yw_reflection_t *r, const char *scope,
                         const Google__Protobuf__FieldDescriptorProto *f, int file)
{
    int rc = 0;
    if (add_symbol(r, scope, f->name, file, YW_SYMBOL_EXTENSION, &rc) == NULL) {
        return rc;
    }
    if (f->extendee == NULL || !f->has_number) {
        return 0;
    }
    if (YW_VEC_GROW(r->extensions, r->n_extensions, r->cap_extensions, 1, 16) != 0) {
        return -ENOMEM;
    }
    const char *extendee = f->extendee[0] == '.' ? f->extendee + 1 : f->extendee;
    r->extensions[r->n_extensions++] = (yw_reflection_extension_t){extendee, f->number, file};
    return 0;
}

/* An enum and its values; values are scoped as siblings of the enum (as in C++). */
static int add_enum(yw_reflection_t *r, const char *scope,
                    const Google__Protobuf__EnumDescriptorProto *e, int file)
{
    int rc = 0;
    if (add_symbol(r, scope, e->name, file, YW_SYMBOL_ENUM, &rc) == NULL) {
        return rc;
    }
    for (size_t i = 0; i < e->n_value; i++) {
        if (add_symbol(r, scope, e->value[i]->name, file, YW_SYMBOL_ENUM_VALUE, &rc) == NULL) {
            return rc;
        }
    }
    return 0;
}

/* A message with its fields, oneofs, nested messages, enums and extensions. */
static int add_message(yw_reflection_t *r, const char *scope,
                       const Google__Protobuf__DescriptorProto *m, int file, int depth)
{
    int rc = 0;
    /* protoc itself refuses nesting this deep; a cap keeps garbage from recursing. */
    if (depth > 100) {
        return -EINVAL;
    }
    const char *q = add_symbol(r, scope, m->name, file, YW_SYMBOL_MESSAGE, &rc);
    if (q == NULL) {
        return rc;
    }
    if (q[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; i < m->n_field; i++) {
        if (add_symbol(r, q, m->field[i]->name, file, YW_SYMBOL_FIELD, &rc) == NULL) {
            return rc;
        }
    }
    for (size_t i = 0; i < m->n_oneof_decl; i++) {
        if (add_symbol(r, q, m->oneof_decl[i]->name, file, YW_SYMBOL_ONEOF, &rc) == NULL) {
            return rc;
        }
    }
    for (size_t i = 0; i < m->n_nested_type; i++) {
        if ((rc = add_message(r, q, m->nested_type[i], file, depth + 1)) != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < m->n_enum_type; i++) {
        if ((rc = add_enum(r, q, m->enum_type[i], file)) != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < m->n_extension; i++) {
        if ((rc = add_extension(r, q, m->extension[i], file)) != 0) {
            return rc;
        }
    }
    return 0;
}

static int add_file_symbols(yw_reflection_t *r, const Google__Protobuf__FileDescriptorProto *fd,
                            int file)
{
    const char *pkg = fd->package != NULL ? fd->package : "";
    int rc = 0;
    for (size_t i = 0; i < fd->n_message_type; i++) {
        if ((rc = add_message(r, pkg, fd->message_type[i], file, 0)) != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < fd->n_enum_type; i++) {
        if ((rc = add_enum(r, pkg, fd->enum_type[i], file)) != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
        const char *q = add_symbol(r, pkg, s->name, file, YW_SYMBOL_SERVICE, &rc);
        if (q == NULL) {
            return rc;
        }
        if (q[0] == '\0') {
            continue;
        }
        for (size_t j = 0; j < s->n_method; j++) {
            if (add_symbol(r, q, s->method[j]->name, file, YW_SYMBOL_METHOD, &rc) == NULL) {
                return rc;
            }
        }
    }
    for (size_t i = 0; i < fd->n_extension; i++) {
        if ((rc = add_extension(r, pkg, fd->extension[i], file)) != 0) {
            return rc;
        }
    }
    return 0;
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const yw_reflection_symbol_t *)a)->name,
                  ((const yw_reflection_symbol_t *)b)->name);
}

/*
 * Each file's closure, breadth first from the file, each file once. `queue` and `seen`
 * are scratch space of n_files entries.
 */
static int build_closures(yw_reflection_t *r, int *queue, unsigned char *seen, char *err,
                          size_t errlen)
{
    for (size_t f = 0; f < r->n_files; f++) {
        const Google__Protobuf__FileDescriptorProto *fd = r->set->file[f];
        /* Resolve the names of direct dependencies first, to report a missing one. */
        for (size_t d = 0; d < fd->n_dependency; d++) {
            if (yw_reflection_find_file(r, fd->dependency[d]) < 0) {
                return set_err(err, errlen,
                               "descriptor set: %s imports %s, which the set "
                               "does not hold (protoc --include_imports?)",
                               fd->name, fd->dependency[d]);
            }
        }
        memset(seen, 0, r->n_files);
        size_t head = 0, tail = 0;
        queue[tail++] = (int)f;
        seen[f] = 1;
        while (head < tail) {
            const Google__Protobuf__FileDescriptorProto *cur = r->set->file[queue[head++]];
            for (size_t d = 0; d < cur->n_dependency; d++) {
                int dep = yw_reflection_find_file(r, cur->dependency[d]);
                if (dep >= 0 && !seen[dep]) {
                    seen[dep] = 1;
                    queue[tail++] = dep;
                }
            }
        }
        r->files[f].closure = malloc(tail * sizeof(int));
        if (r->files[f].closure == NULL) {
            set_err(err, errlen, "descriptor set: out of memory");
            return -ENOMEM;
        }
        memcpy(r->files[f].closure, queue, tail * sizeof(int));
        r->files[f].n_closure = tail;
    }
    return 0;
}

static int build_index(yw_reflection_t *r, char *err, size_t errlen)
{
    int rc = walk_set(r, err, errlen);
    if (rc != 0) {
        return rc;
    }
    if (r->raw_len == 0) {
        return 0;
    }
    r->set = google__protobuf__file_descriptor_set__unpack(NULL, r->raw_len, r->raw);
    if (r->set == NULL) {
        return set_err(err, errlen,
                       "descriptor set: %zu bytes do not parse as a "
                       "google.protobuf.FileDescriptorSet",
                       r->raw_len);
    }
    if (r->set->n_file != r->n_files) {
        return set_err(err, errlen, "descriptor set: %zu files parsed but %zu found on the wire",
                       r->set->n_file, r->n_files);
    }
    for (size_t f = 0; f < r->n_files; f++) {
        const char *name = r->set->file[f]->name;
        if (name == NULL || name[0] == '\0') {
            return set_err(err, errlen, "descriptor set: file #%zu has no name", f);
        }
        for (size_t g = 0; g < f; g++) {
            if (strcmp(r->files[g].name, name) == 0) {
                return set_err(err, errlen, "descriptor set: file %s appears twice", name);
            }
        }
        r->files[f].name = name;
    }

    for (size_t f = 0; f < r->n_files; f++) {
        if ((rc = add_file_symbols(r, r->set->file[f], (int)f)) != 0) {
            if (rc == -ENOMEM) {
                set_err(err, errlen, "descriptor set: out of memory");
                return rc;
            }
            return set_err(err, errlen, "descriptor set: %s nests messages too deeply",
                           r->files[f].name);
        }
    }
    if (r->n_symbols > 0) {
        qsort(r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
    }
    for (size_t i = 1; i < r->n_symbols; i++) {
        if (strcmp(r->symbols[i - 1].name, r->symbols[i].name) == 0) {
            return set_err(err, errlen, "descriptor set: symbol %s is defined in %s and in %s",
                           r->symbols[i].name, r->files[r->symbols[i - 1].file].name,
                           r->files[r->symbols[i].file].name);
        }
    }

    int *queue = malloc(r->n_files * sizeof(int));
    unsigned char *seen = malloc(r->n_files);
    if (queue == NULL || seen == NULL) {
        free(queue);
        free(seen);
        set_err(err, errlen, "descriptor set: out of memory");
        return -ENOMEM;
    }
    rc = build_closures(r, queue, seen, err, errlen);
    free(queue);
    free(seen);
    return rc;
}

/* ---- the ServerReflectionInfo handler ---- */

typedef Grpc__Reflection__V1__ServerReflectionRequest yw_refl_request_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse yw_refl_response_t;

/* The oneof cases, by their field name: REQUEST_CASE(LIST_SERVICES). */
#define REQUEST_CASE(field) GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##field
#define RESPONSE_CASE(field)                                                                       \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##field

/*
 * Per-stream state, one allocation, owned by the call (yw_call_set_data) and freed in
 * on_done: which files this stream has been sent, and scratch space for the file list
 * of one response.
 */
typedef struct st_yw_reflection_stream_t {
    unsigned char *sent;          /* n_files flags */
    ProtobufCBinaryData *scratch; /* n_files entries */
} yw_reflection_stream_t;

static yw_reflection_stream_t *stream_of(yw_call_t *call, const yw_reflection_t *r)
{
    yw_reflection_stream_t *s = yw_call_data(call);
    if (s != NULL) {
        return s;
    }
    size_t n = r->n_files > 0 ? r->n_files : 1;
    s = calloc(1, sizeof *s + n * sizeof(ProtobufCBinaryData) + n);
    if (s == NULL) {
        return NULL;
    }
    s->scratch = (ProtobufCBinaryData *)(s + 1);
    s->sent = (unsigned char *)(s->scratch + n);
    yw_call_set_data(call, s);
    return s;
}

/* Queues `resp`; a stream that ended meanwhile is not an error (on_end follows). */
static void send_response(yw_call_t *call, yw_refl_response_t *resp)
{
    int rc = yw_call_send(call, &resp->base);
    if (rc != 0 && rc != -ECANCELED) {
        /* Already finished or unpackable: nothing more this stream can be told. */
        (void)yw_call_finish(call, GRPC_STATUS_INTERNAL,
                             "reflection: sending the response failed: %s", strerror(-rc));
    }
}

static void send_error(yw_call_t *call, yw_refl_response_t *resp, int32_t code, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static void send_error(yw_call_t *call, yw_refl_response_t *resp, int32_t code, const char *fmt,
                       ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        msg[0] = '\0';
    }
    Grpc__Reflection__V1__ErrorResponse er = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    er.error_code = code;
    er.error_message = msg;
    resp->message_response_case = RESPONSE_CASE(ERROR_RESPONSE);
    resp->error_response = &er;
    send_response(call, resp);
}

/* file_descriptor_response: `file` always, its dependencies unless this stream had them. */
static void send_file(yw_call_t *call, const yw_reflection_t *r, yw_refl_response_t *resp, int file)
{
    yw_reflection_stream_t *s = stream_of(call, r);
    if (s == NULL) {
        send_error(call, resp, YW_REFLECTION_INTERNAL, "reflection: out of memory");
        return;
    }
    const yw_reflection_file_t *f = &r->files[file];
    size_t n = 0;
    for (size_t i = 0; i < f->n_closure; i++) {
        int c = f->closure[i];
        if (i == 0 || !s->sent[c]) {
            s->sent[c] = 1;
            s->scratch[n].data = (uint8_t *)r->files[c].bytes;
            s->scratch[n].len = r->files[c].len;
            n++;
        }
    }
    Grpc__Reflection__V1__FileDescriptorResponse fdr =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    fdr.n_file_descriptor_proto = n;
    fdr.file_descriptor_proto = s->scratch;
    resp->message_response_case = RESPONSE_CASE(FILE_DESCRIPTOR_RESPONSE);
    resp->file_descriptor_response = &fdr;
    send_response(call, resp);
}

static void answer_list_services(yw_call_t *call, yw_refl_response_t *resp)
{
    const yw_server_t *srv = yw_call_server(call);
    const char *stack_names[YW_REFLECTION_SERVICES_ON_STACK];
    const char **names = stack_names;
    size_t n =
        srv != NULL ? yw_server_service_names(srv, names, YW_REFLECTION_SERVICES_ON_STACK) : 0;
    if (n > YW_REFLECTION_SERVICES_ON_STACK) {
        /* The server has more than fit: ask again with room for all. */
        names = malloc(n * sizeof *names);
        if (names == NULL) {
            send_error(call, resp, YW_REFLECTION_INTERNAL, "reflection: out of memory");
            return;
        }
        size_t again = yw_server_service_names(srv, names, n);
        n = again < n ? again : n;
    }
    Grpc__Reflection__V1__ServiceResponse *items = malloc((n ? n : 1) * sizeof *items);
    Grpc__Reflection__V1__ServiceResponse **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
    if (items == NULL || ptrs == NULL) {
        free(items);
        free(ptrs);
        if (names != stack_names) {
            free(names);
        }
        send_error(call, resp, YW_REFLECTION_INTERNAL, "reflection: out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        grpc__reflection__v1__service_response__init(&items[i]);
        items[i].name = (char *)names[i];
        ptrs[i] = &items[i];
    }
    Grpc__Reflection__V1__ListServiceResponse ls =
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    ls.n_service = n;
    ls.service = ptrs;
    resp->message_response_case = RESPONSE_CASE(LIST_SERVICES_RESPONSE);
    resp->list_services_response = &ls;
    /* yw_call_send() packs at once, so everything may be released right after. */
    send_response(call, resp);
    free(items);
    free(ptrs);
    if (names != stack_names) {
        free(names);
    }
}

static void answer_extension_numbers(yw_call_t *call, const yw_reflection_t *r,
                                     yw_refl_response_t *resp, const char *type)
{
    int n = yw_reflection_extension_numbers(r, type, NULL, 0);
    if (n < 0) {
        send_error(call, resp, YW_REFLECTION_NOT_FOUND, "type \"%s\" is not a known message type",
                   type);
        return;
    }
    int32_t *numbers = malloc((n > 0 ? (size_t)n : 1) * sizeof *numbers);
    if (numbers == NULL) {
        send_error(call, resp, YW_REFLECTION_INTERNAL, "reflection: out of memory");
        return;
    }
    (void)yw_reflection_extension_numbers(r, type, numbers, (size_t)n);
    Grpc__Reflection__V1__ExtensionNumberResponse en =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    en.base_type_name = (char *)type;
    en.n_extension_number = (size_t)n;
    en.extension_number = numbers;
    resp->message_response_case = RESPONSE_CASE(ALL_EXTENSION_NUMBERS_RESPONSE);
    resp->all_extension_numbers_response = &en;
    send_response(call, resp);
    free(numbers);
}

/* Clients sometimes send ".pkg.Name"; the index holds "pkg.Name". */
static const char *strip_dot(const char *s)
{
    if (s == NULL) {
        return "";
    }
    return s[0] == '.' ? s + 1 : s;
}

/* One request of the stream, one response. `msg` is valid only during this callback. */
static void reflection_on_message(yw_call_t *call, const ProtobufCMessage *msg)
{
    const yw_reflection_t *r = yw_call_service_ctx(call);
    const yw_refl_request_t *req = (const yw_refl_request_t *)msg;
    yw_refl_response_t resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    resp.valid_host = req->host != NULL ? req->host : "";
    resp.original_request = (yw_refl_request_t *)req;

    switch (req->message_request_case) {
    case REQUEST_CASE(FILE_BY_FILENAME): {
        const char *name = req->file_by_filename != NULL ? req->file_by_filename : "";
        int f = yw_reflection_find_file(r, name);
        if (f < 0) {
            send_error(call, &resp, YW_REFLECTION_NOT_FOUND, "file \"%s\" not found", name);
        } else {
            send_file(call, r, &resp, f);
        }
        break;
    }
    case REQUEST_CASE(FILE_CONTAINING_SYMBOL): {
        const char *sym = strip_dot(req->file_containing_symbol);
        int f = yw_reflection_find_symbol(r, sym);
        if (f < 0) {
            send_error(call, &resp, YW_REFLECTION_NOT_FOUND, "symbol \"%s\" not found", sym);
        } else {
            send_file(call, r, &resp, f);
        }
        break;
    }
    case REQUEST_CASE(FILE_CONTAINING_EXTENSION): {
        const Grpc__Reflection__V1__ExtensionRequest *er = req->file_containing_extension;
        const char *type = strip_dot(er != NULL ? er->containing_type : NULL);
        int32_t number = er != NULL ? er->extension_number : 0;
        int f = yw_reflection_find_extension(r, type, number);
        if (f < 0) {
            send_error(call, &resp, YW_REFLECTION_NOT_FOUND,
                       "extension %d of type \"%s\" not found", (int)number, type);
        } else {
            send_file(call, r, &resp, f);
        }
        break;
    }
    case REQUEST_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE):
        answer_extension_numbers(call, r, &resp, strip_dot(req->all_extension_numbers_of_type));
        break;
    case REQUEST_CASE(LIST_SERVICES):
        answer_list_services(call, &resp);
        break;
    default:
        send_error(call, &resp, YW_REFLECTION_UNIMPLEMENTED,
                   "reflection: request kind %d is not implemented",
                   (int)req->message_request_case);
        break;
    }
}

/* The client half-closed, or the stream ended early: either way the stream is done. */
static void reflection_on_end(yw_call_t *call)
{
    /* -EALREADY when an error finished it before: nothing more to do. */
    (void)yw_call_finish(call, GRPC_STATUS_OK, "%s", "");
}

static void reflection_on_done(yw_call_t *call)
{
    free(yw_call_data(call));
    yw_call_set_data(call, NULL);
}

static const yw_method_t yw_reflection_methods_v1[] = {
    YW_METHOD(BIDI_STREAMING, "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo",
              grpc__reflection__v1__server_reflection_request,
              grpc__reflection__v1__server_reflection_response, .on_message = reflection_on_message,
              .on_end = reflection_on_end, .on_done = reflection_on_done),
};

/* v1alpha messages are wire identical to v1: the v1 descriptors parse and pack them. */
static const yw_method_t yw_reflection_methods_v1alpha[] = {
    YW_METHOD(BIDI_STREAMING, "grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo",
              grpc__reflection__v1__server_reflection_request,
              grpc__reflection__v1__server_reflection_response, .on_message = reflection_on_message,
              .on_end = reflection_on_end, .on_done = reflection_on_done),
};

/* ---- public API ---- */

int yw_reflection_create(const unsigned char *set, size_t len, yw_reflection_t **out, char *err,
                         size_t errlen)
{
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    *out = NULL;
    if (set == NULL && len > 0) {
        return set_err(err, errlen, "descriptor set: NULL with length %zu", len);
    }
    yw_reflection_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        set_err(err, errlen, "descriptor set: out of memory");
        return -ENOMEM;
    }
    r->raw = malloc(len > 0 ? len : 1);
    if (r->raw == NULL) {
        free(r);
        set_err(err, errlen, "descriptor set: out of memory");
        return -ENOMEM;
    }
    if (len > 0) {
        memcpy(r->raw, set, len);
    }
    r->raw_len = len;
    int rc = build_index(r, err, errlen);
    if (rc != 0) {
        yw_reflection_destroy(r);
        return rc;
    }
    r->service_v1 = (yw_service_t){
        .name = "grpc.reflection.v1.ServerReflection",
        .methods = yw_reflection_methods_v1,
        .n_methods = sizeof yw_reflection_methods_v1 / sizeof yw_reflection_methods_v1[0],
        .ctx = r,
    };
    r->service_v1alpha = (yw_service_t){
        .name = "grpc.reflection.v1alpha.ServerReflection",
        .methods = yw_reflection_methods_v1alpha,
        .n_methods = sizeof yw_reflection_methods_v1alpha / sizeof yw_reflection_methods_v1alpha[0],
        .ctx = r,
    };
    *out = r;
    return 0;
}

void yw_reflection_destroy(yw_reflection_t *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_symbols; i++) {
        free(r->symbols[i].name);
    }
    free(r->symbols);
    free(r->extensions);
    if (r->files != NULL) {
        for (size_t f = 0; f < r->n_files; f++) {
            free(r->files[f].closure);
        }
        free(r->files);
    }
    if (r->set != NULL) {
        google__protobuf__file_descriptor_set__free_unpacked(r->set, NULL);
    }
    free(r->raw);
    free(r);
}

const yw_service_t *yw_reflection_service_v1(yw_reflection_t *r)
{
    return &r->service_v1;
}

const yw_service_t *yw_reflection_service_v1alpha(yw_reflection_t *r)
{
    return &r->service_v1alpha;
}

size_t yw_reflection_file_count(const yw_reflection_t *r)
{
    return r->n_files;
}

int yw_reflection_find_file(const yw_reflection_t *r, const char *filename)
{
    if (filename == NULL) {
        return -1;
    }
    for (size_t f = 0; f < r->n_files; f++) {
        if (r->files[f].name != NULL && strcmp(r->files[f].name, filename) == 0) {
            return (int)f;
        }
    }
    return -1;
}

static const yw_reflection_symbol_t *find_symbol(const yw_reflection_t *r, const char *symbol)
{
    if (symbol == NULL || r->n_symbols == 0) {
        return NULL;
    }
    yw_reflection_symbol_t key = {(char *)symbol, 0, YW_SYMBOL_MESSAGE};
    return bsearch(&key, r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
}

int yw_reflection_find_symbol(const yw_reflection_t *r, const char *symbol)
{
    const yw_reflection_symbol_t *s = find_symbol(r, symbol);
    return s != NULL ? s->file : -1;
}

const char *yw_reflection_file_name(const yw_reflection_t *r, int file)
{
    if (file < 0 || (size_t)file >= r->n_files) {
        return NULL;
    }
    return r->files[file].name;
}

void yw_reflection_file_bytes(const yw_reflection_t *r, int file, const uint8_t **data, size_t *len)
{
    if (file < 0 || (size_t)file >= r->n_files) {
        *data = NULL;
        *len = 0;
        return;
    }
    *data = r->files[file].bytes;
    *len = r->files[file].len;
}

size_t yw_reflection_file_closure(const yw_reflection_t *r, int file, int *out, size_t max)
{
    if (file < 0 || (size_t)file >= r->n_files) {
        return 0;
    }
    const yw_reflection_file_t *f = &r->files[file];
    for (size_t i = 0; i < f->n_closure && i < max; i++) {
        out[i] = f->closure[i];
    }
    return f->n_closure;
}

int yw_reflection_extension_numbers(const yw_reflection_t *r, const char *type, int32_t *out,
                                    size_t max)
{
    const yw_reflection_symbol_t *s = find_symbol(r, type);
    if (s == NULL || s->kind != YW_SYMBOL_MESSAGE) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < r->n_extensions; i++) {
        if (strcmp(r->extensions[i].extendee, type) == 0) {
            if (n < max) {
                out[n] = r->extensions[i].number;
            }
            n++;
        }
    }
    return (int)n;
}

int yw_reflection_find_extension(const yw_reflection_t *r, const char *type, int32_t number)
{
    if (type == NULL) {
        return -1;
    }
    for (size_t i = 0; i < r->n_extensions; i++) {
        if (r->extensions[i].number == number && strcmp(r->extensions[i].extendee, type) == 0) {
            return r->extensions[i].file;
        }
    }
    return -1;
}
