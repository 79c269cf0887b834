/*
 * handler_fixture.h — what the handler tests of the services share: the service opened
 * as its binary opens it but not served (yw_app_open()) on a fresh data dir under the
 * test's temp dir, and its methods called through fake calls (common/call_fake.h), with
 * the checks most calls need in one line. Aborts the test (test.h) on anything
 * unexpected, naming the method and what it got.
 */
#ifndef HANDLER_FIXTURE_H
#define HANDLER_FIXTURE_H

#include <stddef.h>

#include "common/app.h"
#include "common/call_fake.h"

/** Flags the fixture passes besides --data-dir and --disk-reserve-mb=0. */
#define HANDLER_FX_FLAGS_MAX 16

/** One service opened for a test. */
typedef struct st_handler_fx_t {
    const yw_app_def_t *def;
    char dir[256]; /* --data-dir, removed by handler_fx_close() */
    const char *flags[HANDLER_FX_FLAGS_MAX + 1];
    yw_app_t *app;
} handler_fx_t;

/**
 * Opens the service of `def` on a fresh data dir with `flags` (its own flags, "--x=v",
 * NULL-terminated; NULL for none), logging warnings and errors only.
 */
void handler_fx_open(handler_fx_t *fx, const yw_app_def_t *def, const char *const *flags);

/** Closes the service and opens it again on the same data dir: a clean restart. */
void handler_fx_reopen(handler_fx_t *fx);

/** Closes the service and removes its data dir. */
void handler_fx_close(handler_fx_t *fx);

/** Starts a call of method `name` of the service with `req` (NULL for a client stream). */
yw_fake_call_t *handler_fx_start(handler_fx_t *fx, const char *name, const ProtobufCMessage *req);

/** handler_fx_start() with request metadata: key, value, ..., NULL (lower-case keys). */
yw_fake_call_t *handler_fx_start_md(handler_fx_t *fx, const char *name, const ProtobufCMessage *req,
                                    const char *const *metadata);

/** handler_fx_call() with request metadata (handler_fx_start_md()). */
yw_fake_call_t *handler_fx_call_md(handler_fx_t *fx, const char *name, const ProtobufCMessage *req,
                                   const char *const *metadata);

/** Runs a started call until it is over. */
void handler_fx_run(yw_fake_call_t *fc);

/** Starts a call and runs it until it is over. */
yw_fake_call_t *handler_fx_call(handler_fx_t *fx, const char *name, const ProtobufCMessage *req);

/** The one message of a call that ended OK (the check fails otherwise); owned by `fc`. */
const void *handler_fx_reply(yw_fake_call_t *fc);

/**
 * Checks that the call ended with `code` and a message that starts with `prefix` (the
 * field named first, as every error message of the services does), then destroys it.
 */
#define handler_fx_expect_fail(fc, code, prefix)                                                   \
    handler_fx_expect_fail_at(__FILE__, __LINE__, (fc), (code), (prefix))
void handler_fx_expect_fail_at(const char *file, int line, yw_fake_call_t *fc,
                               grpc_status_code code, const char *prefix);

/** Calls `name` with `req` and checks that it fails as handler_fx_expect_fail() says. */
#define handler_fx_fails(fx, name, req, code, prefix)                                              \
    handler_fx_expect_fail_at(__FILE__, __LINE__, handler_fx_call((fx), (name), (req)), (code),    \
                              (prefix))

#endif
