/* Unit tests of common/tls.c: the loopback rule and the flag rules of yw_tls_load(). */
#include <errno.h>
#include <string.h>

#include "common/tls.h"
#include "tests/unit/test.h"

YW_TEST(loopback_addresses)
{
    static const char *const yes[] = {"127.0.0.1:50051", "127.1.2.3:1", "localhost:50051",
                                      "LOCALHOST:1",     "[::1]:50051", "[::ffff:127.0.0.1]:5",
                                      "unix:/tmp/x.sock"};
    static const char *const no[] = {
        "0.0.0.0:50051", "[::]:50051",  ":50051", "10.0.0.1:1", "[fe80::1]:1",
        "example:1",     "128.0.0.1:1", "",       "[::1:50051", "localhost.evil:1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!yw_listen_is_loopback(yes[i])) {
            fprintf(stderr, "not loopback: %s\n", yes[i]);
        }
        YW_CHECK(yw_listen_is_loopback(yes[i]));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (yw_listen_is_loopback(no[i])) {
            fprintf(stderr, "loopback: %s\n", no[i]);
        }
        YW_CHECK(!yw_listen_is_loopback(no[i]));
    }
    YW_CHECK(!yw_listen_is_loopback(NULL));
}

YW_TEST(flag_rules)
{
    yw_tls_t *t = (yw_tls_t *)1;
    char err[256];
    yw_tls_config_t none = {0};
    YW_CHECK_INT(yw_tls_load(&none, &t, err, sizeof err), ==, 0);
    YW_CHECK(t == NULL);
    YW_CHECK(!yw_tls_serves(NULL) && !yw_tls_mutual(NULL));
    YW_CHECK(yw_tls_server_credentials(NULL) == NULL && yw_tls_channel_credentials(NULL) == NULL);
    yw_tls_config_t cert_only = {.cert_file = "/nonexistent.crt"};
    YW_CHECK_INT(yw_tls_load(&cert_only, &t, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "--tls-key") != NULL);
    yw_tls_config_t ca_only = {.client_ca_file = "/nonexistent.crt"};
    YW_CHECK_INT(yw_tls_load(&ca_only, &t, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "--tls-client-ca needs") != NULL);
    yw_tls_config_t missing = {.cert_file = "/nonexistent.crt", .key_file = "/nonexistent.key"};
    YW_CHECK_INT(yw_tls_load(&missing, &t, err, sizeof err), ==, -ENOENT);
    YW_CHECK(strstr(err, "cannot open") != NULL);
    yw_tls_config_t not_pem = {.peer_ca_file = "/proc/self/cmdline"};
    YW_CHECK_INT(yw_tls_load(&not_pem, &t, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "no PEM certificate") != NULL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(loopback_addresses),
        YW_TEST_ENTRY(flag_rules),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
