/* Unit tests of common/errmsg.c: the message, cut to the buffer, and no buffer at all. */
#include "common/errmsg.h"

#include <errno.h>

#include "tests/unit/test.h"

YW_TEST(formats_the_message)
{
    char err[64];
    yw_errmsg_printf(err, sizeof err, "%s: field %d", "prepare", 3);
    YW_CHECK(strcmp(err, "prepare: field 3") == 0);
}

YW_TEST(cuts_to_the_buffer)
{
    char err[8];
    memset(err, 'x', sizeof err);
    yw_errmsg_printf(err, sizeof err, "%s", "a long message");
    YW_CHECK(strcmp(err, "a long ") == 0);
    yw_errmsg_printf(err, 1, "%s", "anything");
    YW_CHECK(err[0] == '\0');
}

YW_TEST(no_buffer_writes_nothing)
{
    char err[4] = "abc";
    yw_errmsg_printf(NULL, 16, "%s", "ignored");
    yw_errmsg_printf(err, 0, "%s", "ignored");
    YW_CHECK(strcmp(err, "abc") == 0);
}

/** A helper with a format of its own, built on yw_errmsg_vprintf(). */
static int fail_einval(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_einval(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

YW_TEST(vprintf_serves_helpers)
{
    char err[32];
    YW_CHECK_INT(fail_einval(err, sizeof err, "k %s", "v"), ==, -EINVAL);
    YW_CHECK(strcmp(err, "k v") == 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(formats_the_message),
        YW_TEST_ENTRY(cuts_to_the_buffer),
        YW_TEST_ENTRY(no_buffer_writes_nothing),
        YW_TEST_ENTRY(vprintf_serves_helpers),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
