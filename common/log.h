/*
 * log.h — structured logs: one JSON object per line on stderr, with time (RFC 3339,
 * UTC, microseconds), level, service and message, plus the call fields the server adds
 * (method, status, duration_ms, request_id).
 *
 * Request ids: every line written while the runtime runs a handler callback of a call
 * (or the completion of an outgoing call made on its behalf) carries that call's
 * `request_id`; the runtime sets it with yw_log_swap_ctx(). Lines written later, from
 * callbacks the runtime cannot tie to a call (a store job's `done`, a timer), should go
 * through yw_call_log() (server.h), which names the call explicitly.
 */
#ifndef YW_LOG_H
#define YW_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { YW_LOG_DEBUG, YW_LOG_INFO, YW_LOG_WARN, YW_LOG_ERROR } yw_log_level_t;

/** Sets the service name on every line and the lowest level written. */
void yw_log_init(const char *service, yw_log_level_t min_level);

/** Parses "debug", "info", "warn", "error"; -1 for anything else. */
int yw_log_level_parse(const char *s);

/** Writes one line: {"time":..., "level":..., "service":..., "msg": <fmt...>}. */
void yw_log(yw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Non-zero when a line of `level` would be written. */
int yw_log_enabled(yw_log_level_t level);

/** The level yw_log_call() writes a call that ended with `status` at. */
yw_log_level_t yw_log_call_level(const char *status);

/** One line for a finished call. */
void yw_log_call(const char *method, const char *status, const char *message, double duration_ms,
                 const char *request_id);

/**
 * One line with explicit call fields: `method` and `request_id` may be NULL (then the
 * thread's context, if any, gives the request id).
 */
void yw_logv_call_ctx(yw_log_level_t level, const char *method, const char *request_id,
                      const char *fmt, va_list ap);

/**
 * Where yw_log() lines written on this thread get a request id from: `request_id(arg)`
 * is called only when a line is written, and may return NULL (no request_id field).
 */
typedef struct st_yw_log_ctx_t {
    const char *(*request_id)(void *arg);
    void *arg;
} yw_log_ctx_t;

/**
 * Sets this thread's context and returns the previous one, to be restored when the
 * callback that set it returns. `{NULL, NULL}` is no context. Costs two stores.
 */
yw_log_ctx_t yw_log_swap_ctx(yw_log_ctx_t ctx);

#ifdef __cplusplus
}
#endif
#endif
