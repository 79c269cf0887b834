/*
 * health_probe.c — asks a gRPC server for its health (grpc.health.v1.Health/Check) and
 * says it with the exit status, for container health checks (compose, `HEALTHCHECK`)
 * and scripts. Flags and exit codes follow grpc_health_probe, which Debian does not
 * package:
 *
 *   health_probe -addr 127.0.0.1:50051 [-service NAME] [-rpc-timeout MS]
 *                [-tls-ca-cert FILE [-tls-client-cert FILE -tls-client-key FILE]]
 *
 * With -tls-ca-cert the probe speaks TLS, verifying the server against that CA, and
 * presents the client certificate when given one (services with --tls-client-ca).
 *
 *   0  SERVING            2  could not connect (UNAVAILABLE, or the deadline passed)
 *   1  bad flags          3  the Check call failed otherwise (e.g. NOT_FOUND service)
 *                         4  answered, but not SERVING
 *
 * It runs one call on the shared runtime (common/client.h) and prints one line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "common/runtime.h"
#include "common/tls.h"
#include "grpc/health/v1/health.pb-c.h"

enum {
    PROBE_SERVING = 0,
    PROBE_BAD_FLAGS = 1,
    PROBE_CONNECT_FAILED = 2,
    PROBE_RPC_FAILED = 3,
    PROBE_UNHEALTHY = 4,
};

typedef struct {
    yw_runtime_t *rt;
    yw_channel_t *ch;
    const char *addr;
    const char *service;
    const char *tls_ca, *tls_cert, *tls_key;
    int exit_code;
} probe_t;

static const char *serving_status_name(int st)
{
    switch (st) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
        return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
        return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    default:
        return "UNKNOWN";
    }
}

static void on_check(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    probe_t *p = arg;
    if (code == GRPC_STATUS_OK) {
        int st = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
        if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
            printf("status: SERVING\n");
            p->exit_code = PROBE_SERVING;
        } else {
            printf("service unhealthy (responded with %s)\n", serving_status_name(st));
            p->exit_code = PROBE_UNHEALTHY;
        }
    } else if (code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED) {
        fprintf(stderr, "error: cannot reach %s: %s: %s\n", p->addr, yw_status_name(code), detail);
        p->exit_code = PROBE_CONNECT_FAILED;
    } else {
        fprintf(stderr, "error: health rpc failed: %s: %s\n", yw_status_name(code), detail);
        p->exit_code = PROBE_RPC_FAILED;
    }
    yw_channel_destroy(p->ch);
    p->ch = NULL;
    yw_runtime_stop(p->rt);
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s -addr HOST:PORT [-service NAME] [-rpc-timeout MS]\n"
            "       [-tls-ca-cert FILE [-tls-client-cert FILE -tls-client-key FILE]]\n"
            "asks grpc.health.v1.Health/Check; exit 0 SERVING, 1 bad flags, 2 cannot "
            "connect,\n3 call failed, 4 not SERVING\n",
            prog);
    return PROBE_BAD_FLAGS;
}

int main(int argc, char **argv)
{
    probe_t p = {.service = "", .exit_code = PROBE_RPC_FAILED};
    long timeout_ms = 1000;
    for (int i = 1; i < argc; i++) {
        /* Both -flag and --flag, as "-flag value" or "-flag=value". */
        const char *a = argv[i];
        a += a[0] == '-' && a[1] == '-' ? 2 : a[0] == '-' ? 1 : 0;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (strcmp(a, "h") == 0 || strcmp(a, "help") == 0) {
            usage(argv[0]);
            return 0;
        }
        if (val == NULL) {
            fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
            return usage(argv[0]);
        }
        if (nlen == 4 && strncmp(a, "addr", 4) == 0) {
            p.addr = val;
        } else if (nlen == 7 && strncmp(a, "service", 7) == 0) {
            p.service = val;
        } else if (nlen == 11 && strncmp(a, "tls-ca-cert", 11) == 0) {
            p.tls_ca = val;
        } else if (nlen == 15 && strncmp(a, "tls-client-cert", 15) == 0) {
            p.tls_cert = val;
        } else if (nlen == 14 && strncmp(a, "tls-client-key", 14) == 0) {
            p.tls_key = val;
        } else if ((nlen == 11 && strncmp(a, "rpc-timeout", 11) == 0) ||
                   (nlen == 15 && strncmp(a, "connect-timeout", 15) == 0)) {
            char *end = NULL;
            errno = 0;
            timeout_ms = strtol(val, &end, 10);
            if (errno != 0 || end == val || *end != '\0' || timeout_ms <= 0) {
                fprintf(stderr, "%s: %s: must be a positive number of milliseconds\n", argv[0],
                        argv[i]);
                return PROBE_BAD_FLAGS;
            }
        } else {
            fprintf(stderr, "%s: unknown flag %s\n", argv[0], argv[i]);
            return usage(argv[0]);
        }
        if (eq == NULL) {
            i++;
        }
    }
    if (p.addr == NULL || p.addr[0] == '\0') {
        fprintf(stderr, "%s: -addr is required\n", argv[0]);
        return usage(argv[0]);
    }
    if ((p.tls_cert != NULL || p.tls_key != NULL) && p.tls_ca == NULL) {
        fprintf(stderr, "%s: -tls-client-cert/-tls-client-key need -tls-ca-cert\n", argv[0]);
        return PROBE_BAD_FLAGS;
    }
    yw_tls_t *tls = NULL;
    char err[512];
    yw_tls_config_t tcfg = {
        .cert_file = p.tls_cert, .key_file = p.tls_key, .peer_ca_file = p.tls_ca};
    if (yw_tls_load(&tcfg, &tls, err, sizeof err) != 0) {
        /* The messages name the services' flags; say which of ours they mean. */
        fprintf(stderr,
                "%s: %s (-tls-client-cert is --tls-cert, -tls-client-key --tls-key, "
                "-tls-ca-cert --peer-tls-ca)\n",
                argv[0], err);
        return PROBE_BAD_FLAGS;
    }
    int rc = yw_runtime_create(&p.rt);
    if (rc != 0) {
        fprintf(stderr, "error: cannot create the runtime: %s\n", uv_strerror(rc));
        yw_tls_destroy(tls);
        return PROBE_RPC_FAILED;
    }
    yw_runtime_set_channel_credentials(p.rt, yw_tls_channel_credentials(tls));
    yw_tls_destroy(tls);
    if ((rc = yw_channel_create(p.rt, p.addr, &p.ch)) != 0) {
        fprintf(stderr, "error: -addr %s: cannot create a channel: %s\n", p.addr, strerror(-rc));
        yw_runtime_destroy(p.rt);
        return PROBE_BAD_FLAGS;
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)p.service;
    rc = yw_client_unary(p.ch, "/grpc.health.v1.Health/Check", &req.base,
                         &grpc__health__v1__health_check_response__descriptor, NULL, timeout_ms,
                         on_check, &p);
    if (rc != 0) {
        fprintf(stderr, "error: cannot start the call: %s\n", strerror(-rc));
        yw_channel_destroy(p.ch);
        yw_runtime_destroy(p.rt);
        return PROBE_RPC_FAILED;
    }
    yw_runtime_run(p.rt);
    yw_runtime_destroy(p.rt);
    return p.exit_code;
}
