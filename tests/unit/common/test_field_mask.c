/* Unit tests of common/field_mask.c: paths joined into bits, the first unknown one found. */
#include "common/field_mask.h"

#include <errno.h>

#include "tests/unit/test.h"

static const yw_field_mask_path_t paths[] = {
    {"*", 7u},
    {"name", 1u},
    {"weights", 6u},
    {"weights.reach", 2u},
};
#define N_PATHS (sizeof paths / sizeof paths[0])

static Google__Protobuf__FieldMask mask_of(char **p, size_t n)
{
    Google__Protobuf__FieldMask m = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    m.n_paths = n;
    m.paths = p;
    return m;
}

YW_TEST(paths_are_joined)
{
    char *p[] = {"name", "weights.reach"};
    Google__Protobuf__FieldMask m = mask_of(p, 2);
    unsigned bits = 99;
    size_t bad = 99;
    YW_CHECK_INT(yw_field_mask_bits(&m, paths, N_PATHS, &bits, &bad), ==, 0);
    YW_CHECK_INT(bits, ==, 3u);
    YW_CHECK_INT(bad, ==, 99); /* untouched */
    char *all[] = {"*"};
    m = mask_of(all, 1);
    YW_CHECK_INT(yw_field_mask_bits(&m, paths, N_PATHS, &bits, &bad), ==, 0);
    YW_CHECK_INT(bits, ==, 7u);
}

YW_TEST(no_mask_names_nothing)
{
    unsigned bits = 99;
    size_t bad = 0;
    YW_CHECK_INT(yw_field_mask_bits(NULL, paths, N_PATHS, &bits, &bad), ==, 0);
    YW_CHECK_INT(bits, ==, 0);
    Google__Protobuf__FieldMask m = mask_of(NULL, 0);
    bits = 99;
    YW_CHECK_INT(yw_field_mask_bits(&m, paths, N_PATHS, &bits, &bad), ==, 0);
    YW_CHECK_INT(bits, ==, 0);
}

YW_TEST(the_first_unknown_path_is_found)
{
    char *p[] = {"name", "Name", "nope"};
    Google__Protobuf__FieldMask m = mask_of(p, 3);
    unsigned bits = 99;
    size_t bad = 99;
    YW_CHECK_INT(yw_field_mask_bits(&m, paths, N_PATHS, &bits, &bad), ==, -EINVAL);
    YW_CHECK_INT(bad, ==, 1); /* paths are case-sensitive */
    YW_CHECK_INT(bits, ==, 0);
    char *prefix[] = {"weights.re"};
    m = mask_of(prefix, 1);
    YW_CHECK_INT(yw_field_mask_bits(&m, paths, N_PATHS, &bits, &bad), ==, -EINVAL);
    YW_CHECK_INT(bad, ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(paths_are_joined),
        YW_TEST_ENTRY(no_mask_names_nothing),
        YW_TEST_ENTRY(the_first_unknown_path_is_found),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
