/*
 * fuzz_service.c — a libFuzzer target for one yaowei service, faithful to how it runs:
 * the real service (its main.c, built with -Dmain=yw_fuzz_service_main) serves on a
 * loopback port from a thread of the fuzzing process, on a data directory of its own,
 * and every input is sent to it as the raw request bytes of one gRPC call. So each
 * input goes through gRPC C core, the runtime (server.c: parsing, dispatch, limits),
 * the method's validation and its handler, the store and the reply path.
 *
 * Input: byte 0 picks the method (index into the service's method table, modulo its
 * size; YW_FUZZ_LIST=1 prints the table). For unary and server-streaming methods the
 * rest is the one request message. For client- and bidi-streaming methods the rest is
 * a sequence of messages, each a 2-byte little-endian length and that many bytes (a
 * short tail is one last message).
 *
 * Built with -DYW_FUZZ_SERVICE=<table symbol> (creator_service, tier_service,
 * attr_service) and -DYW_FUZZ_HEADER="<its header>"; or with -DYW_FUZZ_REFLECTION,
 * which fuzzes grpc.reflection.v1 and v1alpha ServerReflectionInfo of creator profile.
 *
 * A call that gets no status within YW_FUZZ_CALL_MS is a hang: the harness aborts, and
 * libFuzzer keeps the input. A crash of the server thread is a crash of this process.
 * Peers (creator profile, tier scoring) point at a closed port: calls to them fail
 * fast with UNAVAILABLE, which is one of the paths under test.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/server.h"

#ifdef YW_FUZZ_HEADER
#include YW_FUZZ_HEADER
#endif

#define YW_FUZZ_CALL_MS 10000

int yw_fuzz_service_main(int argc, char **argv);

typedef struct {
    const char *path;
    yw_method_kind_t kind;
} yw_fuzz_method_t;

static yw_fuzz_method_t methods[64];
static size_t n_methods;
static grpc_channel *channel;
static grpc_completion_queue *cq;
static char listen_addr[64], peer_addr[64];
static char data_dir[256];

static void *server_thread(void *arg)
{
    char **argv = arg;
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    int rc = yw_fuzz_service_main(argc, argv);
    fprintf(stderr, "fuzz: the service returned %d\n", rc);
    abort(); /* it must serve until the process ends */
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("fuzz: free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void *tag(intptr_t t)
{
    return (void *)t;
}

static void wait_tag(void *t, const char *what)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(YW_FUZZ_CALL_MS * 2, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(cq, t, deadline, NULL);
    if (ev.type != GRPC_OP_COMPLETE) {
        fprintf(stderr, "fuzz: %s did not complete: the server hangs\n", what);
        abort();
    }
}

/*
 * One call: sends `msgs` (n of them) on `path`, reads every response, returns the
 * status. Each message goes in its own batch, as a streaming client sends them.
 */
static grpc_status_code call(const char *path, const uint8_t *const *msgs, const size_t *lens,
                             size_t n)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_millis(YW_FUZZ_CALL_MS, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string(path);
    grpc_call *c = grpc_channel_create_call(channel, NULL, 0, cq, method, NULL, deadline, NULL);
    if (c == NULL) {
        abort();
    }
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[1].data.recv_status_on_client.status = &status;
    ops[1].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(c, ops, 2, tag(1), NULL) != GRPC_CALL_OK) {
        abort();
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (grpc_call_start_batch(c, ops, 1, tag(2), NULL) != GRPC_CALL_OK) {
        abort();
    }
    wait_tag(tag(2), "send metadata");
    for (size_t i = 0; i < n; i++) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)msgs[i], lens[i]);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_MESSAGE;
        ops[0].data.send_message.send_message = bb;
        if (grpc_call_start_batch(c, ops, 1, tag(3), NULL) != GRPC_CALL_OK) {
            abort();
        }
        wait_tag(tag(3), "send message");
        grpc_byte_buffer_destroy(bb);
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (grpc_call_start_batch(c, ops, 1, tag(4), NULL) != GRPC_CALL_OK) {
        abort();
    }
    wait_tag(tag(4), "half-close");
    for (;;) {
        grpc_byte_buffer *resp = NULL;
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_RECV_MESSAGE;
        ops[0].data.recv_message.recv_message = &resp;
        if (grpc_call_start_batch(c, ops, 1, tag(5), NULL) != GRPC_CALL_OK) {
            abort();
        }
        wait_tag(tag(5), "receive message");
        if (resp == NULL) {
            break;
        }
        grpc_byte_buffer_destroy(resp);
    }
    wait_tag(tag(1), "status");
    if (status == GRPC_STATUS_DEADLINE_EXCEEDED) {
        fprintf(stderr, "fuzz: %s took longer than %d ms (%.*s): the server hangs\n", path,
                YW_FUZZ_CALL_MS, (int)GRPC_SLICE_LENGTH(details),
                (const char *)GRPC_SLICE_START_PTR(details));
        abort();
    }
    if (status == GRPC_STATUS_INTERNAL || status == GRPC_STATUS_UNKNOWN) {
        /* Never the answer to bad input (DESIGN.md "Errors"); worth a look, not a crash. */
        if (getenv("YW_FUZZ_VERBOSE") != NULL) {
            fprintf(stderr, "fuzz: %s: status %d: %.*s\n", path, (int)status,
                    (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
        }
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(c);
    return status;
}

static void add_method(const char *path, yw_method_kind_t kind)
{
    if (n_methods < sizeof methods / sizeof methods[0]) {
        methods[n_methods].path = path;
        methods[n_methods].kind = kind;
        n_methods++;
    }
}

static void wait_serving(void)
{
    static const uint8_t empty[1];
    const uint8_t *msgs[1] = {empty};
    size_t lens[1] = {0};
    for (int i = 0; i < 400; i++) {
        if (call("/grpc.health.v1.Health/Check", msgs, lens, 1) == GRPC_STATUS_OK) {
            return;
        }
        usleep(25000);
    }
    fprintf(stderr, "fuzz: the service did not start serving\n");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
#ifdef YW_FUZZ_REFLECTION
    add_method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
               YW_METHOD_BIDI_STREAMING);
    add_method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
               YW_METHOD_BIDI_STREAMING);
#else
    for (size_t i = 0; i < YW_FUZZ_SERVICE.n_methods; i++) {
        add_method(YW_FUZZ_SERVICE.methods[i].path, YW_FUZZ_SERVICE.methods[i].kind);
    }
#endif
    if (getenv("YW_FUZZ_LIST") != NULL) {
        for (size_t i = 0; i < n_methods; i++) {
            printf("%zu %s %d\n", i, methods[i].path, (int)methods[i].kind);
        }
        exit(0);
    }
    const char *base = getenv("YW_FUZZ_DATA");
    snprintf(data_dir, sizeof data_dir, "%s/yw-fuzz-XXXXXX",
             base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"));
    if (mkdtemp(data_dir) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.1:%d", free_port());
    snprintf(peer_addr, sizeof peer_addr, "127.0.0.1:%d", free_port()); /* nobody there */
    static char *args[] = {"fuzz-service", "--listen",
                           listen_addr,    "--data-dir",
                           data_dir,       "--log-level",
                           "error",        "--grace-ms",
                           "200",          "--creator-profile-addr",
                           peer_addr,      "--tier-scoring-addr",
                           peer_addr,      NULL};
    fprintf(stderr, "fuzz: serving on %s, data in %s\n", listen_addr, data_dir);
    pthread_t t;
    if (pthread_create(&t, NULL, server_thread, args) != 0) {
        abort();
    }
    pthread_detach(t);
    grpc_init();
    cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_arg a[1];
    a[0].type = GRPC_ARG_INTEGER;
    a[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    a[0].value.integer = 64 << 20;
    grpc_channel_args chargs = {.num_args = 1, .args = a};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    channel = grpc_channel_create(listen_addr, creds, &chargs);
    grpc_channel_credentials_release(creds);
    wait_serving();
    return 0;
}

#define YW_FUZZ_MAX_MSGS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || n_methods == 0) {
        return 0;
    }
    const yw_fuzz_method_t *m = &methods[data[0] % n_methods];
    data++;
    size--;
    const uint8_t *msgs[YW_FUZZ_MAX_MSGS];
    size_t lens[YW_FUZZ_MAX_MSGS];
    size_t n = 0;
    if (m->kind == YW_METHOD_UNARY || m->kind == YW_METHOD_SERVER_STREAMING) {
        msgs[0] = data;
        lens[0] = size;
        n = 1;
    } else {
        while (size > 0 && n < YW_FUZZ_MAX_MSGS) {
            size_t len = size >= 2 ? (size_t)(data[0] | data[1] << 8) : 0;
            size_t hdr = size >= 2 ? 2 : size;
            data += hdr;
            size -= hdr;
            if (len > size) {
                len = size;
            }
            msgs[n] = data;
            lens[n] = len;
            n++;
            data += len;
            size -= len;
        }
    }
    call(m->path, msgs, lens, n);
    return 0;
}
