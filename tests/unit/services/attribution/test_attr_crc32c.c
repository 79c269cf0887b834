/*
 * test_attr_crc32c.c — attr_crc32c.c: both paths (the CRC32 instruction and the table)
 * against known answers, and against each other on every alignment and length.
 */
#include "services/attribution/attr_crc32c.h"

#include "tests/unit/test.h"

/* Checks one implementation against the published check values of CRC-32C. */
static void check_known_answers(uint32_t (*crc)(uint32_t, const void *, size_t))
{
    YW_CHECK_INT(crc(0, "123456789", 9), ==, 0xE3069283u);
    YW_CHECK_INT(crc(0, "", 0), ==, 0);
    YW_CHECK_INT(crc(0, "a", 1), ==, 0xC1D04330u);
    /* RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of ones, ascending. */
    unsigned char b[32];
    memset(b, 0, sizeof b);
    YW_CHECK_INT(crc(0, b, sizeof b), ==, 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    YW_CHECK_INT(crc(0, b, sizeof b), ==, 0x62A8AB43u);
    for (int i = 0; i < 32; i++) {
        b[i] = (unsigned char)i;
    }
    YW_CHECK_INT(crc(0, b, sizeof b), ==, 0x46DD794Eu);
    /* Incremental is the same as one shot. */
    YW_CHECK_INT(crc(crc(0, "12345", 5), "6789", 4), ==, 0xE3069283u);
}

YW_TEST(table_gives_the_known_answers)
{
    check_known_answers(attr_crc32c_table);
}

YW_TEST(instruction_gives_the_known_answers)
{
    if (!attr_crc32c_hw_available()) {
        fprintf(stderr, "no CRC32 instruction on this CPU: only the table is checked\n");
        return;
    }
    check_known_answers(attr_crc32c_hw);
}

YW_TEST(the_chosen_path_gives_the_known_answers)
{
    check_known_answers(attr_crc32c);
}

YW_TEST(both_paths_agree_on_every_alignment_and_length)
{
    /* xorshift: the same bytes every run. */
    uint64_t x = 0x9E3779B97F4A7C15u;
    unsigned char buf[300 + 16];
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        for (size_t align = 0; align < 16; align++) {
            for (size_t len = 0; len <= 300; len++) {
                const unsigned char *p = buf + align;
                uint32_t t = attr_crc32c_table(0, p, len);
                YW_CHECK_INT(attr_crc32c(0, p, len), ==, t);
                if (attr_crc32c_hw_available()) {
                    YW_CHECK_INT(attr_crc32c_hw(0, p, len), ==, t);
                    /* Split anywhere: continuing gives the same. */
                    size_t cut = len / 3;
                    YW_CHECK_INT(attr_crc32c_hw(attr_crc32c_hw(0, p, cut), p + cut, len - cut), ==,
                                 t);
                }
                YW_CHECK_INT(attr_crc32c_table(attr_crc32c_table((uint32_t)round, p, len / 2),
                                               p + len / 2, len - len / 2),
                             ==, attr_crc32c_table((uint32_t)round, p, len));
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(table_gives_the_known_answers),
        YW_TEST_ENTRY(instruction_gives_the_known_answers),
        YW_TEST_ENTRY(the_chosen_path_gives_the_known_answers),
        YW_TEST_ENTRY(both_paths_agree_on_every_alignment_and_length),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
