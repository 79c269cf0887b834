/*
 * Unit tests of common/app.c: yw_app_main() as a service binary calls it. Flags that are
 * wrong end the process the documented way (exit 2 for flags that do not parse, 1 for
 * values the app refuses, 0 for --help); a good start serves the service with health
 * and reflection added by the app, and SIGTERM stops it gracefully (fini runs, exit 0).
 * yw_app_open() opens the same service without serving it (its store in a temp dir),
 * and yw_app_close() stops it as a served one stops. Each test runs in a process of its
 * own (test.h), so SIGTERM is the test's own.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/app.h"
#include "common/client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "tests/unit/test.h"

#define APP_SERVICE "yw.test.App"
#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING

static void app_echo(yw_call_t *call, const ProtobufCMessage *msg)
{
    (void)msg;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    yw_call_reply(call, &resp.base);
}

static const yw_method_t app_methods[] = {
    YW_METHOD(UNARY, APP_SERVICE, "Echo", grpc__health__v1__health_check_request,
              grpc__health__v1__health_check_response, .on_message = app_echo),
};

static const yw_service_t app_service = {
    .name = APP_SERVICE, .methods = app_methods, .n_methods = 1};

static const yw_option_t app_options[] = {
    {"greeting", "YW_GREETING", "hello", "a service option of the test", YW_OPTION_VALUE, NULL},
};

/* What the run saw, checked after yw_app_main() returned. */
static struct {
    yw_app_t *app;
    int inits, finis;
    char greeting[32], grace[32], insecure[8];
    uv_timer_t timer;
    yw_channel_t *ch;
    int calls, done;
    grpc_status_code health_all, health_app, reflection;
    int health_all_status, health_app_status;
    size_t n_services;
    int lists_health, lists_reflection, lists_app;
} run;

static void on_call_done(void)
{
    if (++run.done < run.calls) {
        return;
    }
    yw_channel_destroy(run.ch);
    run.ch = NULL;
    raise(SIGTERM); /* as systemd stops the service */
}

static void on_health(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    (void)detail;
    int *status = arg;
    if (status == &run.health_all_status) {
        run.health_all = code;
    } else {
        run.health_app = code;
    }
    if (resp != NULL) {
        *status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    on_call_done();
}

static void on_list(void *arg, grpc_status_code code, const char *detail, ProtobufCMessage *resp)
{
    (void)arg;
    (void)detail;
    run.reflection = code;
    if (resp != NULL) {
        const Grpc__Reflection__V1__ServerReflectionResponse *r =
            (const Grpc__Reflection__V1__ServerReflectionResponse *)resp;
        if (r->list_services_response != NULL) {
            run.n_services = r->list_services_response->n_service;
            for (size_t i = 0; i < run.n_services; i++) {
                const char *name = r->list_services_response->service[i]->name;
                run.lists_health += strcmp(name, "grpc.health.v1.Health") == 0;
                run.lists_reflection += strstr(name, "ServerReflection") != NULL;
                run.lists_app += strcmp(name, APP_SERVICE) == 0;
            }
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    on_call_done();
}

static void check(const char *service, int *status)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    YW_CHECK_INT(yw_client_unary(run.ch, "/grpc.health.v1.Health/Check", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, NULL, 5000,
                                 on_health, status),
                 ==, 0);
    run.calls++;
}

/* The server serves: ask it what a client sees, then stop the process. */
static void on_serving(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", yw_server_port(yw_app_server(run.app)));
    YW_CHECK_INT(yw_channel_create(yw_app_runtime(run.app), target, &run.ch), ==, 0);
    check("", &run.health_all_status);
    check(APP_SERVICE, &run.health_app_status);
    Grpc__Reflection__V1__ServerReflectionRequest list =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    list.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    list.list_services = "";
    YW_CHECK_INT(
        yw_client_unary(run.ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                        &list.base, &grpc__reflection__v1__server_reflection_response__descriptor,
                        NULL, 5000, on_list, NULL),
        ==, 0);
    run.calls++;
}

static int app_init(yw_app_t *app, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    run.app = app;
    run.inits++;
    YW_CHECK(yw_app_store(app) == NULL); /* no db_file */
    YW_CHECK(yw_app_page_key(app) != NULL);
    YW_CHECK(yw_app_metrics(app) != NULL);
    snprintf(run.greeting, sizeof run.greeting, "%s", yw_app_option(app, "greeting"));
    snprintf(run.grace, sizeof run.grace, "%s", yw_app_option(app, "grace-ms"));
    snprintf(run.insecure, sizeof run.insecure, "%s", yw_app_option(app, "insecure"));
    uv_timer_init(yw_runtime_loop(yw_app_runtime(app)), &run.timer);
    uv_timer_start(&run.timer, on_serving, 0, 0);
    return 0;
}

static void app_fini(yw_app_t *app)
{
    YW_CHECK(app == run.app);
    run.finis++;
}

static const yw_app_def_t app_def = {
    .program = "test_app",
    .summary = "the app of the unit test",
    .service = &app_service,
    .options = app_options,
    .n_options = sizeof app_options / sizeof app_options[0],
    .init = app_init,
    .fini = app_fini,
    .default_listen = "127.0.0.1:0",
};

static int app_main(char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    return yw_app_main(argc, argv, &app_def);
}

/* ---- yw_app_open(): the service with its store, not served ---- */

static const yw_migration_t open_migrations[] = {
    {1, "CREATE TABLE greetings(text TEXT NOT NULL)"},
};

static struct {
    int inits, finis, fini_asyncs, fail_init;
    yw_app_t *app;
    uv_timer_t timer;
} opened;

static int open_init(yw_app_t *app, char *err, size_t errlen)
{
    opened.inits++;
    opened.app = app;
    if (opened.fail_init) {
        snprintf(err, errlen, "greeting: refused");
        return -EINVAL;
    }
    YW_CHECK(yw_app_store(app) != NULL);
    YW_CHECK(yw_app_disk(app) != NULL);
    YW_CHECK(yw_app_server(app) == NULL); /* not served */
    yw_app_set_state(app, &opened);
    return 0;
}

static void open_fini(yw_app_t *app)
{
    YW_CHECK(yw_app_state(app) == &opened);
    opened.finis++;
}

static void on_fini_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    yw_app_fini_done(opened.app);
}

/* Finishes later, on the loop: the store closes only then. */
static void open_fini_async(yw_app_t *app)
{
    YW_CHECK_INT(opened.finis, ==, 1); /* after fini */
    opened.fini_asyncs++;
    uv_timer_init(yw_runtime_loop(yw_app_runtime(app)), &opened.timer);
    uv_timer_start(&opened.timer, on_fini_timer, 10, 0);
}

static const yw_app_def_t open_def = {
    .program = "test_app_open",
    .summary = "the app of the unit test, opened without serving",
    .service = &app_service,
    .db_file = "open.db",
    .migrations = open_migrations,
    .n_migrations = 1,
    .options = app_options,
    .n_options = sizeof app_options / sizeof app_options[0],
    .init = open_init,
    .fini = open_fini,
    .fini_async = open_fini_async,
};

/* A fresh data dir under the test's temp dir. */
static void temp_dir(char *dir, size_t len)
{
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(dir, len, "%s/appXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    YW_CHECK(mkdtemp(dir) != NULL);
}

YW_TEST(open_makes_the_store_and_runs_init_and_close_runs_fini)
{
    char dir[256], db[300];
    temp_dir(dir, sizeof dir);
    char *argv[] = {"test_app", "--data-dir", dir, "--disk-reserve-mb=0", "--greeting=hey", NULL};
    yw_app_t *app = NULL;
    char err[256] = "";
    YW_CHECK_INT(yw_app_open(&open_def, 5, argv, &app, err, sizeof err), ==, 0);
    YW_CHECK(app == opened.app);
    YW_CHECK_INT(opened.inits, ==, 1);
    YW_CHECK_STR(yw_app_option(app, "greeting"), "hey");
    /* The service ctx a fake call hands to handlers is the app itself. */
    YW_CHECK(yw_app_state(app) == &opened);
    snprintf(db, sizeof db, "%s/open.db", dir);
    YW_CHECK_INT(access(db, F_OK), ==, 0);
    yw_app_close(app);
    YW_CHECK_INT(opened.finis, ==, 1);
    YW_CHECK_INT(opened.fini_asyncs, ==, 1);
}

YW_TEST(open_fails_with_the_init_message_and_leaves_nothing_open)
{
    char dir[256];
    temp_dir(dir, sizeof dir);
    char *argv[] = {"test_app", "--data-dir", dir, "--disk-reserve-mb=0", NULL};
    yw_app_t *app = NULL;
    char err[256] = "";
    opened.fail_init = 1;
    YW_CHECK_INT(yw_app_open(&open_def, 4, argv, &app, err, sizeof err), ==, -EINVAL);
    YW_CHECK(app == NULL);
    YW_CHECK_STR(err, "greeting: refused");
    YW_CHECK_INT(opened.finis, ==, 0);
    char *bad[] = {"test_app", "--no-such-flag=1", NULL};
    YW_CHECK_INT(yw_app_open(&open_def, 2, bad, &app, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strncmp(err, "flags: ", 7) == 0);
    YW_CHECK_INT(opened.inits, ==, 1);
}

YW_TEST(serves_health_and_reflection_and_stops_on_sigterm)
{
    char *argv[] = {"test_app",   "--grace-ms=150",    "--greeting", "hi",
                    "--insecure", "--metrics-listen=", NULL};
    YW_CHECK_INT(app_main(argv), ==, 0);
    YW_CHECK_INT(run.inits, ==, 1);
    YW_CHECK_INT(run.finis, ==, 1);
    YW_CHECK_STR(run.greeting, "hi");
    YW_CHECK_STR(run.grace, "150");
    YW_CHECK_STR(run.insecure, "1"); /* a switch given alone */
    YW_CHECK_INT(run.health_all, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(run.health_all_status, ==, SERVING);
    YW_CHECK_INT(run.health_app, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(run.health_app_status, ==, SERVING);
    YW_CHECK_INT(run.reflection, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(run.n_services, ==, 4);
    YW_CHECK_INT(run.lists_health, ==, 1);
    YW_CHECK_INT(run.lists_reflection, ==, 2); /* v1 and v1alpha */
    YW_CHECK_INT(run.lists_app, ==, 1);
}

YW_TEST(reflection_off_is_unimplemented)
{
    char *argv[] = {"test_app", "--reflection=off", NULL};
    YW_CHECK_INT(app_main(argv), ==, 0);
    YW_CHECK_STR(run.greeting, "hello"); /* the option's default */
    YW_CHECK_INT(run.health_all_status, ==, SERVING);
    YW_CHECK_INT(run.reflection, ==, GRPC_STATUS_UNIMPLEMENTED);
}

YW_TEST(help_exits_0_without_serving)
{
    char *argv[] = {"test_app", "--help", NULL};
    YW_CHECK_INT(app_main(argv), ==, 0);
    YW_CHECK_INT(run.inits, ==, 0);
}

YW_TEST(flags_that_do_not_parse_exit_2)
{
    char *unknown[] = {"test_app", "--no-such-flag=1", NULL};
    YW_CHECK_INT(app_main(unknown), ==, 2);
    char *missing[] = {"test_app", "--greeting", NULL};
    YW_CHECK_INT(app_main(missing), ==, 2);
    char *level[] = {"test_app", "--log-level=loud", NULL};
    YW_CHECK_INT(app_main(level), ==, 2);
    YW_CHECK_INT(run.inits, ==, 0);
}

YW_TEST(values_the_app_refuses_exit_1_before_init)
{
    char *refused[][3] = {
        {"test_app", "--max-message-bytes=0", NULL},
        {"test_app", "--grpc-memory-mb=1", NULL}, /* less than two 4 MiB messages */
        {"test_app", "--max-streams-per-connection=0", NULL},
        {"test_app", "--max-connections=0", NULL},
        {"test_app", "--listener-stall-ms=-1", NULL},
        {"test_app", "--grace-ms=soon", NULL},
        {"test_app", "--reflection=maybe", NULL},
        {"test_app", "--listen=0.0.0.0:0", NULL}, /* plaintext off loopback, no --insecure */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        YW_CHECK_INT(app_main(refused[i]), ==, 1);
    }
    YW_CHECK_INT(run.inits, ==, 0);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(serves_health_and_reflection_and_stops_on_sigterm),
        YW_TEST_ENTRY(reflection_off_is_unimplemented),
        YW_TEST_ENTRY(help_exits_0_without_serving),
        YW_TEST_ENTRY(flags_that_do_not_parse_exit_2),
        YW_TEST_ENTRY(values_the_app_refuses_exit_1_before_init),
        YW_TEST_ENTRY(open_makes_the_store_and_runs_init_and_close_runs_fini),
        YW_TEST_ENTRY(open_fails_with_the_init_message_and_leaves_nothing_open),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
