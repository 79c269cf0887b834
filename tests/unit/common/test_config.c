/* Unit tests of common/config.c: flags, environment fallbacks, defaults, errors. */
#include <errno.h>
#include <stdlib.h>

#include "common/config.h"
#include "common/server.h"
#include "tests/unit/test.h"

static void options(yw_option_t *o)
{
    yw_option_t init[] = {
        {"listen", "YW_TEST_LISTEN", "127.0.0.1:1", "listen", NULL},
        {"grace-ms", "YW_TEST_GRACE", "5000", "grace", NULL},
        {"data-dir", NULL, NULL, "dir", NULL},
    };
    memcpy(o, init, sizeof init);
}

YW_TEST(defaults_apply_without_flags_or_env)
{
    yw_option_t o[3];
    options(o);
    unsetenv("YW_TEST_LISTEN");
    char *argv[] = {"prog", NULL};
    YW_CHECK_INT(yw_config_parse(1, argv, o, 3, "prog", "summary"), ==, 0);
    YW_CHECK_STR(yw_config_get(o, 3, "listen"), "127.0.0.1:1");
    YW_CHECK(yw_config_get(o, 3, "data-dir") == NULL);
}

YW_TEST(env_overrides_default_and_flag_overrides_env)
{
    yw_option_t o[3];
    options(o);
    setenv("YW_TEST_LISTEN", "0.0.0.0:2", 1);
    char *argv0[] = {"prog", NULL};
    YW_CHECK_INT(yw_config_parse(1, argv0, o, 3, "prog", "s"), ==, 0);
    YW_CHECK_STR(yw_config_get(o, 3, "listen"), "0.0.0.0:2");
    options(o);
    char *argv[] = {"prog", "--listen", "10.0.0.1:3", "--data-dir=/tmp/x", NULL};
    YW_CHECK_INT(yw_config_parse(4, argv, o, 3, "prog", "s"), ==, 0);
    YW_CHECK_STR(yw_config_get(o, 3, "listen"), "10.0.0.1:3");
    YW_CHECK_STR(yw_config_get(o, 3, "data-dir"), "/tmp/x");
}

YW_TEST(unknown_flag_and_missing_value_are_errors)
{
    yw_option_t o[3];
    options(o);
    char *bad[] = {"prog", "--nope", "1", NULL};
    YW_CHECK_INT(yw_config_parse(3, bad, o, 3, "prog", "s"), ==, -EINVAL);
    char *missing[] = {"prog", "--listen", NULL};
    YW_CHECK_INT(yw_config_parse(2, missing, o, 3, "prog", "s"), ==, -EINVAL);
    char *positional[] = {"prog", "extra", NULL};
    YW_CHECK_INT(yw_config_parse(2, positional, o, 3, "prog", "s"), ==, -EINVAL);
}

YW_TEST(help_returns_one)
{
    yw_option_t o[3];
    options(o);
    char *argv[] = {"prog", "--help", NULL};
    YW_CHECK_INT(yw_config_parse(2, argv, o, 3, "prog", "s"), ==, 1);
}

YW_TEST(integers_are_parsed_strictly)
{
    yw_option_t o[3];
    options(o);
    char *argv[] = {"prog", "--grace-ms", "12x", NULL};
    YW_CHECK_INT(yw_config_parse(3, argv, o, 3, "prog", "s"), ==, 0);
    long long v = 0;
    char err[128];
    YW_CHECK_INT(yw_config_int(o, 3, "grace-ms", &v, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "--grace-ms") != NULL);
    options(o);
    char *ok[] = {"prog", "--grace-ms=250", NULL};
    YW_CHECK_INT(yw_config_parse(2, ok, o, 3, "prog", "s"), ==, 0);
    YW_CHECK_INT(yw_config_int(o, 3, "grace-ms", &v, err, sizeof err), ==, 0);
    YW_CHECK_INT(v, ==, 250);
}

YW_TEST(status_names_match_grpc)
{
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_OK), "OK");
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    YW_CHECK_STR(yw_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    YW_CHECK_STR(yw_status_name((grpc_status_code)99), "UNKNOWN");
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(defaults_apply_without_flags_or_env),
        YW_TEST_ENTRY(env_overrides_default_and_flag_overrides_env),
        YW_TEST_ENTRY(unknown_flag_and_missing_value_are_errors),
        YW_TEST_ENTRY(help_returns_one),
        YW_TEST_ENTRY(integers_are_parsed_strictly),
        YW_TEST_ENTRY(status_names_match_grpc),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
