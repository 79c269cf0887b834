/* Unit tests of common/codec.h: little-endian layouts, varints and zigzag. */
#include "common/codec.h"

#include "tests/unit/test.h"

YW_TEST(little_endian_bytes)
{
    unsigned char b[8];
    yw_put_le32(b, 0x01020304u);
    YW_CHECK(b[0] == 4 && b[1] == 3 && b[2] == 2 && b[3] == 1);
    YW_CHECK_INT(yw_get_le32(b), ==, 0x01020304u);
    yw_put_le64(b, UINT64_C(0x0102030405060708));
    YW_CHECK(b[0] == 8 && b[7] == 1);
    YW_CHECK(yw_get_le64(b) == UINT64_C(0x0102030405060708));
    yw_put_le64(b, UINT64_MAX);
    YW_CHECK(yw_get_le64(b) == UINT64_MAX);
}

YW_TEST(varints_round_trip_with_their_lengths)
{
    static const uint64_t values[] = {
        0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_C(1) << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        unsigned char b[YW_VARINT_MAX];
        size_t n = yw_varint_put(b, values[i]);
        YW_CHECK_INT(n, ==, yw_varint_len(values[i]));
        size_t pos = 0;
        uint64_t v = 0;
        YW_CHECK_INT(yw_varint_get(b, n, &pos, &v), ==, 0);
        YW_CHECK(v == values[i]);
        YW_CHECK_INT(pos, ==, n);
    }
    YW_CHECK_INT(yw_varint_len(0), ==, 1);
    YW_CHECK_INT(yw_varint_len(UINT64_MAX), ==, YW_VARINT_MAX);
    unsigned char b[2];
    YW_CHECK_INT(yw_varint_put(b, 300), ==, 2);
    YW_CHECK(b[0] == 0xac && b[1] == 0x02); /* protobuf's own example */
}

YW_TEST(bad_varints_are_refused)
{
    unsigned char trunc[] = {0x80, 0x80};
    size_t pos = 0;
    uint64_t v = 7;
    YW_CHECK_INT(yw_varint_get(trunc, sizeof trunc, &pos, &v), ==, -EBADMSG);
    YW_CHECK_INT(v, ==, 7);
    unsigned char too_long[11];
    memset(too_long, 0x80, sizeof too_long);
    too_long[10] = 0x01;
    pos = 0;
    YW_CHECK_INT(yw_varint_get(too_long, sizeof too_long, &pos, &v), ==, -EBADMSG);
    pos = 0;
    YW_CHECK_INT(yw_varint_get(too_long, 0, &pos, &v), ==, -EBADMSG);
}

YW_TEST(zigzag_maps_small_magnitudes_to_small_values)
{
    YW_CHECK(yw_zigzag(0) == 0);
    YW_CHECK(yw_zigzag(-1) == 1);
    YW_CHECK(yw_zigzag(1) == 2);
    YW_CHECK(yw_zigzag(-2) == 3);
    YW_CHECK(yw_zigzag(INT64_MAX) == UINT64_MAX - 1);
    YW_CHECK(yw_zigzag(INT64_MIN) == UINT64_MAX);
    static const int64_t values[] = {0, 1, -1, 12345, -12345, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        YW_CHECK(yw_unzigzag(yw_zigzag(values[i])) == values[i]);
    }
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(little_endian_bytes),
        YW_TEST_ENTRY(varints_round_trip_with_their_lengths),
        YW_TEST_ENTRY(bad_varints_are_refused),
        YW_TEST_ENTRY(zigzag_maps_small_magnitudes_to_small_values),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
