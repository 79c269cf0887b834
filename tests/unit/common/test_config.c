/* Unit tests of common/config.c: flags, environment fallbacks, defaults, errors. */
#include <errno.h>
#include <stdlib.h>

#include "common/config.h"
#include "common/server.h"
#include "tests/unit/test.h"

#define N_OPTS 4

static void options(yw_option_t *o)
{
    yw_option_t init[N_OPTS] = {
        {"listen", "YW_TEST_LISTEN", "127.0.0.1:1", "listen", YW_OPTION_VALUE, NULL},
        {"grace-ms", "YW_TEST_GRACE", "5000", "grace", YW_OPTION_VALUE, NULL},
        {"data-dir", NULL, NULL, "dir", YW_OPTION_VALUE, NULL},
        {"insecure", "YW_TEST_INSECURE", "0", "a switch", YW_OPTION_SWITCH, NULL},
    };
    memcpy(o, init, sizeof init);
}

/*
 * yw_config_parse() of argv (NULL-terminated) on fresh options, with stdout and stderr
 * sent to a file whose text lands in `out`. Returns what the parse returned.
 */
static int parse(char **argv, yw_option_t *o, char *out, size_t outlen)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    options(o);
    FILE *f = tmpfile();
    YW_CHECK(f != NULL);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    YW_CHECK(saved_out >= 0 && saved_err >= 0);
    YW_CHECK(dup2(fileno(f), STDOUT_FILENO) == STDOUT_FILENO);
    YW_CHECK(dup2(fileno(f), STDERR_FILENO) == STDERR_FILENO);
    int rc = yw_config_parse(argc, argv, o, N_OPTS, "prog", "summary");
    fflush(stdout);
    fflush(stderr);
    YW_CHECK(dup2(saved_out, STDOUT_FILENO) == STDOUT_FILENO);
    YW_CHECK(dup2(saved_err, STDERR_FILENO) == STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    rewind(f);
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return rc;
}

/* Checks that argv fails to parse (-EINVAL) with exactly `message` on stderr. */
static void check_fails(char **argv, yw_option_t *o, const char *message)
{
    char out[256];
    YW_CHECK_INT(parse(argv, o, out, sizeof out), ==, -EINVAL);
    YW_CHECK_STR(out, message);
}

YW_TEST(defaults_apply_without_flags_or_env)
{
    yw_option_t o[N_OPTS];
    char out[256];
    unsetenv("YW_TEST_LISTEN");
    char *argv[] = {"prog", NULL};
    YW_CHECK_INT(parse(argv, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(out, "");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "127.0.0.1:1");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "insecure"), "0");
    YW_CHECK(yw_config_get(o, N_OPTS, "data-dir") == NULL);
}

YW_TEST(env_overrides_default_and_flag_overrides_env)
{
    yw_option_t o[N_OPTS];
    char out[256];
    setenv("YW_TEST_LISTEN", "0.0.0.0:2", 1);
    setenv("YW_TEST_GRACE", "", 1); /* empty: the default */
    char *none[] = {"prog", NULL};
    YW_CHECK_INT(parse(none, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "0.0.0.0:2");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "grace-ms"), "5000");
    char *argv[] = {"prog", "--listen", "10.0.0.1:3", "--data-dir=/tmp/x", "--grace-ms=", NULL};
    YW_CHECK_INT(parse(argv, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "10.0.0.1:3");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "data-dir"), "/tmp/x");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "grace-ms"), "");
    /* A value that looks like a flag is still the value; the last flag given wins. */
    char *again[] = {"prog", "--data-dir", "--listen", "--listen=a", "--listen", "b", NULL};
    YW_CHECK_INT(parse(again, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "data-dir"), "--listen");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "b");
}

YW_TEST(switch_alone_is_one_and_takes_a_value_after_equals)
{
    yw_option_t o[N_OPTS];
    char out[256];
    char *alone[] = {"prog", "--insecure", "--listen", "x", NULL};
    YW_CHECK_INT(parse(alone, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "insecure"), "1");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "x");
    int on = -1;
    char err[128];
    YW_CHECK_INT(yw_config_bool(o, N_OPTS, "insecure", &on, err, sizeof err), ==, 0);
    YW_CHECK_INT(on, ==, 1);
    setenv("YW_TEST_INSECURE", "1", 1);
    char *off[] = {"prog", "--insecure=0", NULL};
    YW_CHECK_INT(parse(off, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "insecure"), "0");
    YW_CHECK_INT(yw_config_bool(o, N_OPTS, "insecure", &on, err, sizeof err), ==, 0);
    YW_CHECK_INT(on, ==, 0);
    char *env[] = {"prog", NULL};
    YW_CHECK_INT(parse(env, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "insecure"), "1");
    /* A switch's value comes only after '=': a separate one is an argument of its own. */
    check_fails((char *[]){"prog", "--insecure", "0", NULL}, o,
                "prog: unexpected argument \"0\" (see --help)\n");
}

YW_TEST(unknown_flags_are_named)
{
    yw_option_t o[N_OPTS];
    check_fails((char *[]){"prog", "--nope", "1", NULL}, o,
                "prog: unknown flag \"--nope\" (see --help)\n");
    check_fails((char *[]){"prog", "--listen=a", "--nope=1", NULL}, o,
                "prog: unknown flag \"--nope\" (see --help)\n");
    /* getopt_long would take an abbreviation, or call it ambiguous: both are unknown. */
    check_fails((char *[]){"prog", "--lis", "a", NULL}, o,
                "prog: unknown flag \"--lis\" (see --help)\n");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "127.0.0.1:1");
    check_fails((char *[]){"prog", "--insec", NULL}, o,
                "prog: unknown flag \"--insec\" (see --help)\n");
    check_fails((char *[]){"prog", "--he", NULL}, o, "prog: unknown flag \"--he\" (see --help)\n");
    check_fails((char *[]){"prog", "-listen", "a", NULL}, o,
                "prog: unexpected argument \"-listen\" (see --help)\n");
}

YW_TEST(missing_value_names_the_flag)
{
    yw_option_t o[N_OPTS];
    check_fails((char *[]){"prog", "--grace-ms=1", "--listen", NULL}, o,
                "prog: flag \"--listen\" needs a value\n");
}

YW_TEST(arguments_that_are_not_flags_are_errors)
{
    yw_option_t o[N_OPTS];
    /* The first error ends the parse, and argv is left as it was. */
    char *first[] = {"prog", "extra", "--listen", "a", NULL};
    check_fails(first, o, "prog: unexpected argument \"extra\" (see --help)\n");
    YW_CHECK_STR(first[1], "extra");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "127.0.0.1:1");
    check_fails((char *[]){"prog", "--listen", "a", "extra", NULL}, o,
                "prog: unexpected argument \"extra\" (see --help)\n");
    check_fails((char *[]){"prog", "-", NULL}, o, "prog: unexpected argument \"-\" (see --help)\n");
    check_fails((char *[]){"prog", "--", "--listen", "a", NULL}, o,
                "prog: unexpected argument \"--listen\" (see --help)\n");
}

YW_TEST(help_prints_usage_and_returns_one)
{
    yw_option_t o[N_OPTS];
    char out[2048];
    char *argv[] = {"prog", "--listen", "a", "--help", "--nope", NULL};
    YW_CHECK_INT(parse(argv, o, out, sizeof out), ==, 1);
    YW_CHECK(strncmp(out, "usage: prog [options]\nsummary\n", 30) == 0);
    YW_CHECK(strstr(out, "  --listen ") != NULL);
    YW_CHECK(strstr(out, "env YW_TEST_LISTEN, default 127.0.0.1:1") != NULL);
    YW_CHECK(strstr(out, "unknown") == NULL);
    char *h[] = {"prog", "-h", NULL};
    YW_CHECK_INT(parse(h, o, out, sizeof out), ==, 1);
    YW_CHECK(strncmp(out, "usage: prog", 11) == 0);
}

/* getopt_long's state is global: each parse must start afresh, whatever the last left. */
YW_TEST(a_second_parse_starts_afresh)
{
    yw_option_t o[N_OPTS];
    char out[2048];
    /* Stops at the second argument; a parse resuming there would skip --listen below. */
    char *help[] = {"prog", "--help", "--data-dir", "d", NULL};
    YW_CHECK_INT(parse(help, o, out, sizeof out), ==, 1);
    char *listen[] = {"prog", "--listen", "again", NULL};
    YW_CHECK_INT(parse(listen, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "listen"), "again");
    YW_CHECK(yw_config_get(o, N_OPTS, "data-dir") == NULL);
    /* Stops inside "-xh": a parse resuming there (optind = 1 does) would read the h. */
    check_fails((char *[]){"prog", "-xh", NULL}, o,
                "prog: unexpected argument \"-xh\" (see --help)\n");
    char *switch_[] = {"prog", "--insecure", NULL};
    YW_CHECK_INT(parse(switch_, o, out, sizeof out), ==, 0);
    YW_CHECK_STR(out, "");
    YW_CHECK_STR(yw_config_get(o, N_OPTS, "insecure"), "1");
}

YW_TEST(integers_are_parsed_strictly)
{
    yw_option_t o[N_OPTS];
    char out[256];
    char *argv[] = {"prog", "--grace-ms", "12x", NULL};
    YW_CHECK_INT(parse(argv, o, out, sizeof out), ==, 0);
    long long v = 0;
    char err[128];
    YW_CHECK_INT(yw_config_int(o, N_OPTS, "grace-ms", &v, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "--grace-ms") != NULL);
    char *ok[] = {"prog", "--grace-ms=250", NULL};
    YW_CHECK_INT(parse(ok, o, out, sizeof out), ==, 0);
    YW_CHECK_INT(yw_config_int(o, N_OPTS, "grace-ms", &v, err, sizeof err), ==, 0);
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
        YW_TEST_ENTRY(switch_alone_is_one_and_takes_a_value_after_equals),
        YW_TEST_ENTRY(unknown_flags_are_named),
        YW_TEST_ENTRY(missing_value_names_the_flag),
        YW_TEST_ENTRY(arguments_that_are_not_flags_are_errors),
        YW_TEST_ENTRY(help_prints_usage_and_returns_one),
        YW_TEST_ENTRY(a_second_parse_starts_afresh),
        YW_TEST_ENTRY(integers_are_parsed_strictly),
        YW_TEST_ENTRY(status_names_match_grpc),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
