/*
 * test_reflection.c — the reflection index (common/reflection.c): built from the
 * creator profile descriptor set that the service embeds, and from small sets built here
 * with protobuf-c for what that set lacks (extensions, broken sets).
 */
#include <errno.h>
#include <stdint.h>

#include "common/reflection.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "tests/unit/test.h"

extern const unsigned char yw_descriptor_set[];
extern const size_t yw_descriptor_set_len;

static yw_reflection_t *embedded(void)
{
    yw_reflection_t *r = NULL;
    char err[256] = "";
    int rc = yw_reflection_create(yw_descriptor_set, yw_descriptor_set_len, &r, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "create: %d %s\n", rc, err);
    }
    YW_CHECK_INT(rc, ==, 0);
    YW_CHECK(r != NULL);
    return r;
}

/* The name of the file that defines `symbol`, or NULL. */
static const char *file_of(const yw_reflection_t *r, const char *symbol)
{
    int f = yw_reflection_find_symbol(r, symbol);
    return f < 0 ? NULL : yw_reflection_file_name(r, f);
}

/* Packs `set` into a malloc'd buffer. */
static uint8_t *pack_set(const Google__Protobuf__FileDescriptorSet *set, size_t *len)
{
    *len = google__protobuf__file_descriptor_set__get_packed_size(set);
    uint8_t *buf = malloc(*len ? *len : 1);
    YW_CHECK(buf != NULL);
    YW_CHECK_INT(google__protobuf__file_descriptor_set__pack(set, buf), ==, *len);
    return buf;
}

static int create_from(const Google__Protobuf__FileDescriptorSet *set, yw_reflection_t **r,
                       char *err, size_t errlen)
{
    size_t len;
    uint8_t *buf = pack_set(set, &len);
    int rc = yw_reflection_create(buf, len, r, err, errlen);
    /* The index keeps a copy: scribble over ours to prove it. */
    memset(buf, 0xee, len);
    free(buf);
    return rc;
}

YW_TEST(creates_from_embedded_set)
{
    yw_reflection_t *r = embedded();
    /* creator.proto, its three imports, health, reflection v1 and v1alpha. */
    YW_CHECK_INT(yw_reflection_file_count(r), >=, 7);
    for (size_t f = 0; f < yw_reflection_file_count(r); f++) {
        YW_CHECK(yw_reflection_file_name(r, (int)f) != NULL);
        YW_CHECK_INT(yw_reflection_find_file(r, yw_reflection_file_name(r, (int)f)), ==, f);
    }
    YW_CHECK(yw_reflection_file_name(r, -1) == NULL);
    YW_CHECK(yw_reflection_file_name(r, (int)yw_reflection_file_count(r)) == NULL);
    yw_reflection_destroy(r);
    yw_reflection_destroy(NULL);
}

YW_TEST(finds_services_and_methods)
{
    yw_reflection_t *r = embedded();
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.CreatorProfileService"),
                 "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.CreatorProfileService.GetCreator"),
                 "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(file_of(r, "grpc.health.v1.Health"), "grpc/health/v1/health.proto");
    YW_CHECK_STR(file_of(r, "grpc.health.v1.Health.Watch"), "grpc/health/v1/health.proto");
    YW_CHECK_STR(file_of(r, "grpc.reflection.v1.ServerReflection"),
                 "grpc/reflection/v1/reflection.proto");
    YW_CHECK_STR(file_of(r, "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo"),
                 "grpc/reflection/v1alpha/reflection.proto");
    yw_reflection_destroy(r);
}

YW_TEST(finds_messages_enums_and_fields)
{
    yw_reflection_t *r = embedded();
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.Creator"), "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.Creator.display_name"),
                 "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.CreatorStatus"), "yaowei/creator/v1/creator.proto");
    /* Enum values are scoped as siblings of their enum, as protoc scopes them. */
    YW_CHECK_STR(file_of(r, "yaowei.creator.v1.CREATOR_STATUS_ACTIVE"),
                 "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(file_of(r, "google.protobuf.Timestamp"), "google/protobuf/timestamp.proto");
    YW_CHECK_STR(file_of(r, "google.protobuf.Timestamp.seconds"),
                 "google/protobuf/timestamp.proto");
    YW_CHECK_STR(file_of(r, "google.protobuf.FieldMask"), "google/protobuf/field_mask.proto");
    YW_CHECK_STR(file_of(r, "google.protobuf.Empty"), "google/protobuf/empty.proto");
    /* A nested enum and a oneof. */
    YW_CHECK_STR(file_of(r, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
                 "grpc/health/v1/health.proto");
    YW_CHECK_STR(file_of(r, "grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN"),
                 "grpc/health/v1/health.proto");
    YW_CHECK_STR(file_of(r, "grpc.reflection.v1.ServerReflectionRequest.message_request"),
                 "grpc/reflection/v1/reflection.proto");
    yw_reflection_destroy(r);
}

YW_TEST(unknown_symbols_are_not_found)
{
    yw_reflection_t *r = embedded();
    YW_CHECK_INT(yw_reflection_find_symbol(r, "yaowei.creator.v1.NoSuchThing"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, "yaowei.creator.v1.Creato"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, "yaowei.creator.v1.CreatorX"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, "Creator"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, "yaowei.creator.v1.GetCreator"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, ""), ==, -1);
    YW_CHECK_INT(yw_reflection_find_symbol(r, NULL), ==, -1);
    YW_CHECK_INT(yw_reflection_find_file(r, "yaowei/creator/v1/nope.proto"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_file(r, "creator.proto"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_file(r, NULL), ==, -1);
    yw_reflection_destroy(r);
}

YW_TEST(file_bytes_are_the_file_descriptor)
{
    yw_reflection_t *r = embedded();
    int f = yw_reflection_find_file(r, "yaowei/creator/v1/creator.proto");
    YW_CHECK_INT(f, >=, 0);
    const uint8_t *data = NULL;
    size_t len = 0;
    yw_reflection_file_bytes(r, f, &data, &len);
    YW_CHECK(data != NULL);
    YW_CHECK_INT(len, >, 0);
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(NULL, len, data);
    YW_CHECK(fd != NULL);
    YW_CHECK_STR(fd->name, "yaowei/creator/v1/creator.proto");
    YW_CHECK_STR(fd->package, "yaowei.creator.v1");
    YW_CHECK_INT(fd->n_service, ==, 1);
    YW_CHECK_STR(fd->service[0]->name, "CreatorProfileService");
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);

    yw_reflection_file_bytes(r, -1, &data, &len);
    YW_CHECK(data == NULL);
    YW_CHECK_INT(len, ==, 0);
    yw_reflection_destroy(r);
}

YW_TEST(closure_starts_with_the_file_and_holds_every_import_once)
{
    yw_reflection_t *r = embedded();
    int f = yw_reflection_find_file(r, "yaowei/creator/v1/creator.proto");
    YW_CHECK_INT(f, >=, 0);
    int out[64];
    size_t n = yw_reflection_file_closure(r, f, out, 64);
    YW_CHECK_INT(n, ==, 4);
    YW_CHECK_INT(out[0], ==, f);
    int seen_ts = 0, seen_fm = 0, seen_empty = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = yw_reflection_file_name(r, out[i]);
        YW_CHECK(name != NULL);
        seen_ts += strcmp(name, "google/protobuf/timestamp.proto") == 0;
        seen_fm += strcmp(name, "google/protobuf/field_mask.proto") == 0;
        seen_empty += strcmp(name, "google/protobuf/empty.proto") == 0;
        for (size_t j = 0; j < i; j++) {
            YW_CHECK_INT(out[i], !=, out[j]);
        }
    }
    YW_CHECK_INT(seen_ts, ==, 1);
    YW_CHECK_INT(seen_fm, ==, 1);
    YW_CHECK_INT(seen_empty, ==, 1);

    /* A short buffer gets a prefix; the return value is still the whole count. */
    int two[2] = {-7, -7};
    YW_CHECK_INT(yw_reflection_file_closure(r, f, two, 1), ==, 4);
    YW_CHECK_INT(two[0], ==, f);
    YW_CHECK_INT(two[1], ==, -7);

    /* A file with no imports is its own closure. */
    int ts = yw_reflection_find_file(r, "google/protobuf/timestamp.proto");
    YW_CHECK_INT(ts, >=, 0);
    YW_CHECK_INT(yw_reflection_file_closure(r, ts, out, 64), ==, 1);
    YW_CHECK_INT(out[0], ==, ts);
    YW_CHECK_INT(yw_reflection_file_closure(r, -1, out, 64), ==, 0);
    yw_reflection_destroy(r);
}

YW_TEST(extension_numbers_of_unknown_and_plain_types)
{
    yw_reflection_t *r = embedded();
    int32_t nums[8];
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "yaowei.creator.v1.NoSuchType", nums, 8), ==,
                 -1);
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "yaowei.creator.v1.Creator", nums, 8), ==, 0);
    /* Only message types have extensions: a service is not one. */
    YW_CHECK_INT(
        yw_reflection_extension_numbers(r, "yaowei.creator.v1.CreatorProfileService", nums, 8), ==,
        -1);
    YW_CHECK_INT(yw_reflection_find_extension(r, "yaowei.creator.v1.Creator", 100), ==, -1);
    yw_reflection_destroy(r);
}

/*
 * A set built here: "base.proto" (package t, message Base with an extension range) and
 * "ext.proto" (imports base.proto; top-level extension t.num = 100 of t.Base, and
 * Holder.other = 101 nested in a message).
 */
YW_TEST(extensions_are_indexed)
{
    Google__Protobuf__DescriptorProto__ExtensionRange range =
        GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__EXTENSION_RANGE__INIT;
    range.has_start = range.has_end = 1;
    range.start = 100;
    range.end = 200;
    Google__Protobuf__DescriptorProto__ExtensionRange *ranges[] = {&range};
    Google__Protobuf__DescriptorProto base_msg = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    base_msg.name = "Base";
    base_msg.n_extension_range = 1;
    base_msg.extension_range = ranges;
    Google__Protobuf__DescriptorProto *base_msgs[] = {&base_msg};
    Google__Protobuf__FileDescriptorProto base = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    base.name = "base.proto";
    base.package = "t";
    base.n_message_type = 1;
    base.message_type = base_msgs;

    Google__Protobuf__FieldDescriptorProto num = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    num.name = "num";
    num.has_number = 1;
    num.number = 100;
    num.extendee = ".t.Base";
    Google__Protobuf__FieldDescriptorProto other = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    other.name = "other";
    other.has_number = 1;
    other.number = 101;
    other.extendee = ".t.Base";
    Google__Protobuf__FieldDescriptorProto *nested_exts[] = {&other};
    Google__Protobuf__DescriptorProto holder = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    holder.name = "Holder";
    holder.n_extension = 1;
    holder.extension = nested_exts;
    Google__Protobuf__DescriptorProto *ext_msgs[] = {&holder};
    Google__Protobuf__FieldDescriptorProto *top_exts[] = {&num};
    char *deps[] = {"base.proto"};
    Google__Protobuf__FileDescriptorProto ext = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    ext.name = "ext.proto";
    ext.package = "t";
    ext.n_dependency = 1;
    ext.dependency = deps;
    ext.n_message_type = 1;
    ext.message_type = ext_msgs;
    ext.n_extension = 1;
    ext.extension = top_exts;

    Google__Protobuf__FileDescriptorProto *files[] = {&ext, &base};
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 2;
    set.file = files;

    yw_reflection_t *r = NULL;
    char err[256] = "";
    YW_CHECK_INT(create_from(&set, &r, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_reflection_file_count(r), ==, 2);

    int32_t nums[8] = {0};
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "t.Base", nums, 8), ==, 2);
    YW_CHECK((nums[0] == 100 && nums[1] == 101) || (nums[0] == 101 && nums[1] == 100));
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "t.Base", nums, 1), ==, 2);
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "t.Base", NULL, 0), ==, 2);
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "t.Holder", nums, 8), ==, 0);
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "t.Nope", nums, 8), ==, -1);

    YW_CHECK_INT(yw_reflection_find_extension(r, "t.Base", 100), ==, 0);
    YW_CHECK_INT(yw_reflection_find_extension(r, "t.Base", 101), ==, 0);
    YW_CHECK_INT(yw_reflection_find_extension(r, "t.Base", 102), ==, -1);
    YW_CHECK_INT(yw_reflection_find_extension(r, "t.Holder", 100), ==, -1);

    YW_CHECK_STR(file_of(r, "t.num"), "ext.proto");
    YW_CHECK_STR(file_of(r, "t.Holder.other"), "ext.proto");
    YW_CHECK_STR(file_of(r, "t.Base"), "base.proto");

    int out[4];
    YW_CHECK_INT(yw_reflection_file_closure(r, 0, out, 4), ==, 2);
    YW_CHECK_INT(out[0], ==, 0);
    YW_CHECK_INT(out[1], ==, 1);

    /* The bytes served are the file as packed, byte for byte. */
    size_t want_len = google__protobuf__file_descriptor_proto__get_packed_size(&base);
    uint8_t *want = malloc(want_len);
    YW_CHECK(want != NULL);
    YW_CHECK_INT(google__protobuf__file_descriptor_proto__pack(&base, want), ==, want_len);
    const uint8_t *data;
    size_t len;
    yw_reflection_file_bytes(r, 1, &data, &len);
    YW_CHECK_INT(len, ==, want_len);
    YW_CHECK(memcmp(data, want, len) == 0);
    free(want);
    yw_reflection_destroy(r);
}

YW_TEST(garbage_is_einval)
{
    static const char *const garbage[] = {
        "not a descriptor set",
        "\xff\xff\xff\xff",
        "\x0a\x05\x0a\x03", /* a file record that claims more bytes than there are */
        "\x0a\x02\xff\xff", /* a file record whose content does not parse */
        "\x08\x01",         /* a well-formed field, but no file at all */
        "\x0b\x0c",         /* a group: never in a FileDescriptorSet */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        yw_reflection_t *r = (yw_reflection_t *)&r;
        char err[256] = "";
        int rc = yw_reflection_create((const unsigned char *)garbage[i], strlen(garbage[i]), &r,
                                      err, sizeof err);
        if (rc != -EINVAL) {
            fprintf(stderr, "garbage #%zu: rc %d\n", i, rc);
        }
        YW_CHECK_INT(rc, ==, -EINVAL);
        YW_CHECK(r == NULL);
        YW_CHECK(err[0] != '\0');
    }

    /* The real set, cut short. */
    yw_reflection_t *r = NULL;
    char err[256] = "";
    YW_CHECK_INT(
        yw_reflection_create(yw_descriptor_set, yw_descriptor_set_len - 3, &r, err, sizeof err), ==,
        -EINVAL);
    YW_CHECK(r == NULL);
}

YW_TEST(missing_import_is_einval)
{
    char *deps[] = {"google/protobuf/timestamp.proto"};
    Google__Protobuf__FileDescriptorProto a = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    a.name = "a.proto";
    a.n_dependency = 1;
    a.dependency = deps;
    Google__Protobuf__FileDescriptorProto *files[] = {&a};
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 1;
    set.file = files;
    yw_reflection_t *r = NULL;
    char err[256] = "";
    YW_CHECK_INT(create_from(&set, &r, err, sizeof err), ==, -EINVAL);
    YW_CHECK(r == NULL);
    YW_CHECK(strstr(err, "google/protobuf/timestamp.proto") != NULL);
}

YW_TEST(duplicate_files_and_symbols_are_einval)
{
    Google__Protobuf__DescriptorProto m = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    m.name = "M";
    Google__Protobuf__DescriptorProto *msgs[] = {&m};
    Google__Protobuf__FileDescriptorProto a = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    a.name = "a.proto";
    a.package = "p";
    a.n_message_type = 1;
    a.message_type = msgs;
    Google__Protobuf__FileDescriptorProto b = a;
    b.name = "b.proto";
    Google__Protobuf__FileDescriptorProto *files[] = {&a, &b};
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 2;
    set.file = files;

    yw_reflection_t *r = NULL;
    char err[256] = "";
    YW_CHECK_INT(create_from(&set, &r, err, sizeof err), ==, -EINVAL);
    YW_CHECK(r == NULL);
    YW_CHECK(strstr(err, "p.M") != NULL);

    b.name = "a.proto";
    err[0] = '\0';
    YW_CHECK_INT(create_from(&set, &r, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "a.proto") != NULL);

    /* A file without a name cannot be asked for. */
    b.name = NULL;
    YW_CHECK_INT(create_from(&set, &r, err, sizeof err), ==, -EINVAL);
}

YW_TEST(empty_set_indexes_nothing)
{
    yw_reflection_t *r = NULL;
    char err[64] = "";
    YW_CHECK_INT(yw_reflection_create(NULL, 0, &r, err, sizeof err), ==, 0);
    YW_CHECK(r != NULL);
    YW_CHECK_INT(yw_reflection_file_count(r), ==, 0);
    YW_CHECK_INT(yw_reflection_find_symbol(r, "google.protobuf.Timestamp"), ==, -1);
    YW_CHECK_INT(yw_reflection_find_file(r, "google/protobuf/timestamp.proto"), ==, -1);
    YW_CHECK_INT(yw_reflection_extension_numbers(r, "google.protobuf.Timestamp", NULL, 0), ==, -1);
    yw_reflection_destroy(r);
}

YW_TEST(services_serve_both_paths)
{
    yw_reflection_t *r = embedded();
    const yw_service_t *v1 = yw_reflection_service_v1(r);
    const yw_service_t *v1alpha = yw_reflection_service_v1alpha(r);
    YW_CHECK_STR(v1->name, "grpc.reflection.v1.ServerReflection");
    YW_CHECK_STR(v1alpha->name, "grpc.reflection.v1alpha.ServerReflection");
    YW_CHECK(v1->ctx == r);
    YW_CHECK(v1alpha->ctx == r);
    YW_CHECK_INT(v1->n_methods, ==, 1);
    YW_CHECK_INT(v1alpha->n_methods, ==, 1);
    YW_CHECK_STR(v1->methods[0].path, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    YW_CHECK_STR(v1alpha->methods[0].path,
                 "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
    for (int i = 0; i < 2; i++) {
        const yw_method_t *m = i == 0 ? &v1->methods[0] : &v1alpha->methods[0];
        YW_CHECK_INT(m->kind, ==, YW_METHOD_BIDI_STREAMING);
        YW_CHECK(m->request != NULL && m->response != NULL);
        YW_CHECK(m->on_message != NULL && m->on_end != NULL && m->on_done != NULL);
    }
    /* Both the v1 and the v1alpha service are described by the set served. */
    YW_CHECK_INT(yw_reflection_find_symbol(r, v1->name), >=, 0);
    YW_CHECK_INT(yw_reflection_find_symbol(r, v1alpha->name), >=, 0);
    yw_reflection_destroy(r);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(creates_from_embedded_set),
        YW_TEST_ENTRY(finds_services_and_methods),
        YW_TEST_ENTRY(finds_messages_enums_and_fields),
        YW_TEST_ENTRY(unknown_symbols_are_not_found),
        YW_TEST_ENTRY(file_bytes_are_the_file_descriptor),
        YW_TEST_ENTRY(closure_starts_with_the_file_and_holds_every_import_once),
        YW_TEST_ENTRY(extension_numbers_of_unknown_and_plain_types),
        YW_TEST_ENTRY(extensions_are_indexed),
        YW_TEST_ENTRY(garbage_is_einval),
        YW_TEST_ENTRY(missing_import_is_einval),
        YW_TEST_ENTRY(duplicate_files_and_symbols_are_einval),
        YW_TEST_ENTRY(empty_set_indexes_nothing),
        YW_TEST_ENTRY(services_serve_both_paths),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
