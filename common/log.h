/*
 * log.h — structured logs: one JSON object per line on stderr, with time (RFC 3339,
 * UTC, microseconds), level, service and message, plus the call fields the server adds
 * (method, status, duration_ms, peer).
 */
#ifndef YW_LOG_H
#define YW_LOG_H

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

/** One line for a finished call. */
void yw_log_call(const char *method, const char *status, const char *message, double duration_ms,
                 const char *request_id);

#ifdef __cplusplus
}
#endif
#endif
