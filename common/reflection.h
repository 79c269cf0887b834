/*
 * reflection.h — gRPC server reflection, grpc.reflection.v1 and v1alpha
 * (ServerReflectionInfo, a bidirectional stream), answering list_services,
 * file_by_filename, file_containing_symbol (package-qualified service, method,
 * message, enum, field or extension name) and all_extension_numbers_of_type, with
 * NOT_FOUND error responses for unknown names. A file is sent with its transitive
 * dependencies (the file first). Per stream, a dependency already sent is not sent
 * again; the file asked for always is (as grpc-go does: clients cache by file name).
 *
 * The index is built from a serialized FileDescriptorSet produced at build time
 * (protoc --include_imports) and embedded in the binary. v1alpha messages are wire
 * identical to v1, so one handler serves both paths.
 */
#ifndef YW_REFLECTION_H
#define YW_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_reflection_t yw_reflection_t;

/**
 * Builds the index from a serialized FileDescriptorSet. The bytes are copied; `set` need
 * not outlive the index. Every import of every file must be in the set (protoc
 * --include_imports). An empty set (len 0) is valid and indexes nothing. Returns 0, or
 * -EINVAL with a message in `err` when the bytes are not such a descriptor set (or
 * -ENOMEM). On error `*out` is NULL.
 */
int yw_reflection_create(const unsigned char *set, size_t len, yw_reflection_t **out, char *err,
                         size_t errlen);

/** Frees the index; after every reflection call has ended. NULL is a no-op. */
void yw_reflection_destroy(yw_reflection_t *r);

/** The two reflection services (v1, v1alpha) to add to a server; ctx is `r`. */
const yw_service_t *yw_reflection_service_v1(yw_reflection_t *r);
const yw_service_t *yw_reflection_service_v1alpha(yw_reflection_t *r);

/** Number of files in the set. */
size_t yw_reflection_file_count(const yw_reflection_t *r);

/** Index of the file named `filename`, or -1. */
int yw_reflection_find_file(const yw_reflection_t *r, const char *filename);

/**
 * Index of the file that defines fully-qualified `symbol` (no leading dot): a message
 * (nested ones too), enum, enum value (scoped like the enum, as protoc does), service,
 * method ("pkg.Service.Method"), field ("pkg.Msg.field"), oneof or extension; or -1.
 */
int yw_reflection_find_symbol(const yw_reflection_t *r, const char *symbol);

/**
 * The file's name and serialized FileDescriptorProto (as protoc wrote it), valid until
 * yw_reflection_destroy(). NULL, and NULL with length 0, for an index out of range.
 */
const char *yw_reflection_file_name(const yw_reflection_t *r, int file);
void yw_reflection_file_bytes(const yw_reflection_t *r, int file, const uint8_t **data,
                              size_t *len);

/**
 * The file and its transitive dependencies, the file first, then breadth first, each
 * once. Writes at most `max` indexes to `out`; returns how many there are in all (0 for
 * an index out of range).
 */
size_t yw_reflection_file_closure(const yw_reflection_t *r, int file, int *out, size_t max);

/**
 * Extension field numbers of message type `type` (fully qualified). Returns the count
 * (writing at most `max`), or -1 when the type is unknown.
 */
int yw_reflection_extension_numbers(const yw_reflection_t *r, const char *type, int32_t *out,
                                    size_t max);

/**
 * Index of the file that declares extension `number` of message type `type` (fully
 * qualified, no leading dot), or -1. Answers file_containing_extension.
 */
int yw_reflection_find_extension(const yw_reflection_t *r, const char *type, int32_t number);

#ifdef __cplusplus
}
#endif
#endif
