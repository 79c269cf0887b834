/*
 * reflection.h — gRPC server reflection, grpc.reflection.v1 and v1alpha
 * (ServerReflectionInfo, a bidirectional stream), answering list_services,
 * file_by_filename, file_containing_symbol (package-qualified service, method,
 * message, enum, field or extension name) and all_extension_numbers_of_type, with
 * NOT_FOUND error responses for unknown names. A file is sent with its transitive
 * dependencies (the file first), each file at most once per stream.
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
 * Builds the index from a serialized FileDescriptorSet. Returns 0, or -EINVAL with a
 * message in `err` when the bytes are not a descriptor set.
 */
int yw_reflection_create(const unsigned char *set, size_t len, yw_reflection_t **out, char *err,
                         size_t errlen);

void yw_reflection_destroy(yw_reflection_t *r);

/** The two reflection services (v1, v1alpha) to add to a server; ctx is `r`. */
const yw_service_t *yw_reflection_service_v1(yw_reflection_t *r);
const yw_service_t *yw_reflection_service_v1alpha(yw_reflection_t *r);

/** Number of files in the set. */
size_t yw_reflection_file_count(const yw_reflection_t *r);

/** Index of the file named `filename`, or -1. */
int yw_reflection_find_file(const yw_reflection_t *r, const char *filename);

/** Index of the file that defines fully-qualified `symbol` (no leading dot), or -1. */
int yw_reflection_find_symbol(const yw_reflection_t *r, const char *symbol);

/** The file's name and serialized FileDescriptorProto. */
const char *yw_reflection_file_name(const yw_reflection_t *r, int file);
void yw_reflection_file_bytes(const yw_reflection_t *r, int file, const uint8_t **data,
                              size_t *len);

/**
 * The file and its transitive dependencies, the file first, each once. Writes at
 * most `max` indexes to `out`; returns how many there are in all.
 */
size_t yw_reflection_file_closure(const yw_reflection_t *r, int file, int *out, size_t max);

/**
 * Extension field numbers of message type `type` (fully qualified). Returns the count
 * (writing at most `max`), or -1 when the type is unknown.
 */
int yw_reflection_extension_numbers(const yw_reflection_t *r, const char *type, int32_t *out,
                                    size_t max);

#ifdef __cplusplus
}
#endif
#endif
