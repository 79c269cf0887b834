/* Unit tests of common/auth.c: the --auth-config format, rule resolution, decisions. */
#include <errno.h>
#include <string.h>

#include "common/auth.h"
#include "tests/unit/test.h"

static const char *config(void)
{
    return "{\"callers\": ["
           " {\"name\": \"admin\", \"san\": \"spiffe://t/admin\", \"roles\": [\"admin\", \"r\"]},"
           " {\"name\": \"reader\", \"san\": [\"spiffe://t/reader\", \"reader.t\"],"
           "  \"roles\": [\"r\"]},"
           " {\"name\": \"ops\", \"token_sha256\": "
           "\"c5a3bd5e8ed6b7e1b4d2b4a4f1e1a4f43c9a8d5eec6b0f4f1f2d0b8f3e76b0f1\","
           "  \"roles\": [\"admin\"]}],"
           " \"methods\": {"
           "  \"/p.S/Delete\": [\"admin\"],"
           "  \"/p.S/*\": [\"r\"],"
           "  \"p.T/Open\": [\"*\"],"
           "  \"*\": []}}";
}

static yw_auth_t *load(void)
{
    yw_auth_t *a = NULL;
    char err[256] = "";
    const char *c = config();
    int rc = yw_auth_parse(c, strlen(c), "test", &a, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
    }
    YW_CHECK_INT(rc, ==, 0);
    return a;
}

static grpc_status_code decide_san(yw_auth_t *a, const char *san, const char *path,
                                   const char **who)
{
    const char *sans[1] = {san};
    size_t lens[1] = {san ? strlen(san) : 0};
    char msg[256];
    return yw_auth_decide(a, sans, lens, san ? 1 : 0, san != NULL, NULL, 0,
                          yw_auth_method_roles(a, path), who, msg, sizeof msg);
}

YW_TEST(rules_most_specific_wins)
{
    yw_auth_t *a = load();
    uint64_t del = yw_auth_method_roles(a, "/p.S/Delete");
    uint64_t get = yw_auth_method_roles(a, "/p.S/Get");
    YW_CHECK(del != 0 && get != 0 && del != get);
    YW_CHECK(yw_auth_method_roles(a, "/p.T/Open") != 0);
    YW_CHECK_INT((long long)yw_auth_method_roles(a, "/p.T/Other"), ==, 0); /* "*": [] */
    yw_auth_destroy(a);
}

YW_TEST(san_callers_and_roles)
{
    yw_auth_t *a = load();
    const char *who = NULL;
    YW_CHECK_INT(decide_san(a, "spiffe://t/admin", "/p.S/Delete", &who), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(who, "admin");
    YW_CHECK_INT(decide_san(a, "spiffe://t/reader", "/p.S/Get", &who), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(decide_san(a, "reader.t", "/p.S/Get", &who), ==, GRPC_STATUS_OK);
    YW_CHECK_STR(who, "reader");
    YW_CHECK_INT(decide_san(a, "spiffe://t/reader", "/p.S/Delete", &who), ==,
                 GRPC_STATUS_PERMISSION_DENIED);
    YW_CHECK_INT(decide_san(a, "spiffe://t/other", "/p.S/Get", &who), ==,
                 GRPC_STATUS_PERMISSION_DENIED);
    YW_CHECK_INT(decide_san(a, "spiffe://t/reader", "/p.T/Open", &who), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(decide_san(a, "spiffe://t/admin", "/p.T/Other", &who), ==,
                 GRPC_STATUS_PERMISSION_DENIED);
    /* A SAN that is a prefix of a known one is not that one. */
    YW_CHECK_INT(decide_san(a, "spiffe://t/admi", "/p.S/Get", &who), ==,
                 GRPC_STATUS_PERMISSION_DENIED);
    YW_CHECK_INT(decide_san(a, NULL, "/p.S/Get", &who), ==, GRPC_STATUS_UNAUTHENTICATED);
    yw_auth_destroy(a);
}

YW_TEST(bearer_tokens)
{
    yw_auth_t *a = NULL;
    char err[256];
    /* printf %s tok-admin | sha256sum */
    const char *c = "{\"callers\": [{\"name\": \"ops\", \"token_sha256\": "
                    "\"df6adb0b23fa33235f4aee6a0d62c118b00d71c07c81be87067b4f5892e66dbc\", "
                    "\"roles\": [\"admin\"]}], \"methods\": {\"*\": [\"admin\"]}}";
    YW_CHECK_INT(yw_auth_parse(c, strlen(c), "t", &a, err, sizeof err), ==, 0);
    const char *who;
    char msg[256];
    uint64_t all = yw_auth_method_roles(a, "/x.Y/Z");
    const char *good[] = {"Bearer tok-admin", "bearer tok-admin", "BEARER   tok-admin"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        who = NULL;
        YW_CHECK_INT(yw_auth_decide(a, NULL, NULL, 0, 0, good[i], strlen(good[i]), all, &who, msg,
                                    sizeof msg),
                     ==, GRPC_STATUS_OK);
        YW_CHECK_STR(who, "ops");
    }
    const char *bad[] = {"Bearer nope", "Basic abc",         "Bearer ",        "Bearer",
                         "bearer",      "Bearer tok-admin ", "Bearer tok-admi"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        YW_CHECK_INT(
            yw_auth_decide(a, NULL, NULL, 0, 0, bad[i], strlen(bad[i]), all, &who, msg, sizeof msg),
            ==, GRPC_STATUS_UNAUTHENTICATED);
        YW_CHECK(strstr(msg, "nope") == NULL);
    }
    yw_auth_destroy(a);
}

YW_TEST(config_errors_name_the_rule)
{
    static const struct {
        const char *json;
        const char *needle;
    } cases[] = {
        {"[", "line 1"},
        {"{}", "both required"},
        {"{\"callers\": [], \"methods\": {}, \"x\": 1}", "unknown key \"x\""},
        {"{\"callers\": [{\"san\": \"a\", \"roles\": []}], \"methods\": {}}", "name"},
        {"{\"callers\": [{\"name\": \"a\", \"roles\": []}], \"methods\": {}}", "needs \"san\""},
        {"{\"callers\": [{\"name\": \"a\", \"san\": \"s\", \"roles\": [\"r\"]},"
         " {\"name\": \"b\", \"san\": \"s\", \"roles\": [\"r\"]}], \"methods\": {}}",
         "already the SAN"},
        {"{\"callers\": [{\"name\": \"a\", \"token_sha256\": \"zz\", \"roles\": []}],"
         " \"methods\": {}}",
         "64 hex"},
        {"{\"callers\": [{\"name\": \"a\", \"san\": \"s\", \"roles\": [\"r\"]}],"
         " \"methods\": {\"/p.S/M\": [\"q\"]}}",
         "role \"q\""},
        {"{\"callers\": [], \"methods\": {\"nope\": []}}", "must be"},
        {"{\"callers\": [], \"methods\": {\"/p.S/M\": [], \"p.S/M\": []}}", "twice"},
        {"{\"callers\": [{\"name\": \"a\", \"san\": \"s\", \"roles\": [\"*\"]}],"
         " \"methods\": {}}",
         "not \"*\""},
        {"{\"callers\": [{\"name\": \"a\", \"san\": \"s\", \"roles\": []},"
         " {\"name\": \"a\", \"san\": \"t\", \"roles\": []}], \"methods\": {}}",
         "already used"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        yw_auth_t *a = (yw_auth_t *)1;
        char err[256] = "";
        YW_CHECK_INT(yw_auth_parse(cases[i].json, strlen(cases[i].json), "t", &a, err, sizeof err),
                     ==, -EINVAL);
        YW_CHECK(a == NULL);
        if (strstr(err, cases[i].needle) == NULL) {
            fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err, cases[i].needle);
        }
        YW_CHECK(strstr(err, cases[i].needle) != NULL);
    }
}

YW_TEST(rules_must_name_methods_of_the_server)
{
    yw_auth_t *a = load();
    const char *paths[] = {"/p.S/Delete", "/p.S/Get", "/p.T/Open"};
    char err[256];
    YW_CHECK_INT(yw_auth_check_rules(a, paths, 3, err, sizeof err), ==, 0);
    YW_CHECK_INT(yw_auth_check_rules(a, paths, 2, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "/p.T/Open") != NULL);
    YW_CHECK_INT(yw_auth_check_rules(a, paths + 2, 1, err, sizeof err), ==, -EINVAL);
    yw_auth_destroy(a);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(rules_most_specific_wins),
        YW_TEST_ENTRY(san_callers_and_roles),
        YW_TEST_ENTRY(bearer_tokens),
        YW_TEST_ENTRY(config_errors_name_the_rule),
        YW_TEST_ENTRY(rules_must_name_methods_of_the_server),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
