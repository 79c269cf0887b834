/* handler_fixture.c — see handler_fixture.h. */
#define _GNU_SOURCE /* nftw */
#include "tests/unit/handler_fixture.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/unit/test.h"

static void open_app(handler_fx_t *fx)
{
    char *argv[4 + HANDLER_FX_FLAGS_MAX + 1];
    int argc = 0;
    argv[argc++] = (char *)fx->def->program;
    argv[argc++] = "--data-dir";
    argv[argc++] = fx->dir;
    argv[argc++] = "--disk-reserve-mb=0";
    for (size_t i = 0; fx->flags[i] != NULL; i++) {
        argv[argc++] = (char *)fx->flags[i];
    }
    argv[argc] = NULL;
    char err[512] = "";
    int rc = yw_app_open(fx->def, argc, argv, &fx->app, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot open: %s\n", fx->def->program, err);
    }
    YW_CHECK_INT(rc, ==, 0);
}

void handler_fx_open(handler_fx_t *fx, const yw_app_def_t *def, const char *const *flags)
{
    memset(fx, 0, sizeof *fx);
    fx->def = def;
    for (size_t i = 0; flags != NULL && flags[i] != NULL; i++) {
        YW_CHECK(i < HANDLER_FX_FLAGS_MAX);
        fx->flags[i] = flags[i];
    }
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/%sXXXXXX", tmp && tmp[0] ? tmp : "/tmp", def->program);
    YW_CHECK(mkdtemp(fx->dir) != NULL);
    yw_log_init(def->program, YW_LOG_WARN);
    open_app(fx);
}

void handler_fx_reopen(handler_fx_t *fx)
{
    yw_app_close(fx->app);
    fx->app = NULL;
    open_app(fx);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void handler_fx_close(handler_fx_t *fx)
{
    yw_app_close(fx->app);
    fx->app = NULL;
    YW_CHECK_INT(nftw(fx->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
}

yw_fake_call_t *handler_fx_start(handler_fx_t *fx, const char *name, const ProtobufCMessage *req)
{
    return handler_fx_start_md(fx, name, req, NULL);
}

yw_fake_call_t *handler_fx_call_md(handler_fx_t *fx, const char *name, const ProtobufCMessage *req,
                                   const char *const *metadata)
{
    yw_fake_call_t *fc = handler_fx_start_md(fx, name, req, metadata);
    handler_fx_run(fc);
    return fc;
}

yw_fake_call_t *handler_fx_start_md(handler_fx_t *fx, const char *name, const ProtobufCMessage *req,
                                    const char *const *metadata)
{
    yw_fake_call_config_t cfg = {
        .service = fx->def->service,
        .method = name,
        .service_ctx = fx->app,
        .request = req,
        .metadata = metadata,
    };
    yw_fake_call_t *fc = NULL;
    int rc = yw_fake_call_start(yw_app_runtime(fx->app), &cfg, &fc);
    if (rc != 0) {
        fprintf(stderr, "%s/%s: cannot start a fake call (%d)\n", fx->def->service->name, name, rc);
    }
    YW_CHECK_INT(rc, ==, 0);
    return fc;
}

void handler_fx_run(yw_fake_call_t *fc)
{
    YW_CHECK_INT(yw_fake_call_run(fc), ==, 0);
}

yw_fake_call_t *handler_fx_call(handler_fx_t *fx, const char *name, const ProtobufCMessage *req)
{
    yw_fake_call_t *fc = handler_fx_start(fx, name, req);
    handler_fx_run(fc);
    return fc;
}

const void *handler_fx_reply(yw_fake_call_t *fc)
{
    const char *msg = NULL;
    int code = yw_fake_call_status(fc, &msg);
    if (code != GRPC_STATUS_OK) {
        fprintf(stderr, "expected OK, got %s: %s\n", yw_status_name((grpc_status_code)code), msg);
    }
    YW_CHECK_INT(code, ==, GRPC_STATUS_OK);
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 1);
    const ProtobufCMessage *resp = yw_fake_call_response(fc, 0);
    YW_CHECK(resp != NULL);
    return resp;
}

void handler_fx_expect_fail_at(const char *file, int line, yw_fake_call_t *fc,
                               grpc_status_code code, const char *prefix)
{
    const char *msg = NULL;
    int got = yw_fake_call_status(fc, &msg);
    if (got != (int)code || strncmp(msg, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "%s:%d: expected %s \"%s...\", got %s \"%s\"\n", file, line,
                yw_status_name(code), prefix,
                got < 0 ? "no status" : yw_status_name((grpc_status_code)got), msg);
        abort();
    }
    YW_CHECK_INT(yw_fake_call_n_sent(fc), ==, 0);
    yw_fake_call_destroy(fc);
}
