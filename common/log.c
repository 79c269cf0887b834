/* log.c — one JSON object per line on stderr. See log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *yw__log_service = "yaowei";
static yw_log_level_t yw__log_min = YW_LOG_INFO;
static const char *const yw__log_names[] = {"debug", "info", "warn", "error"};
static _Thread_local yw_log_ctx_t yw__log_ctx;

yw_log_ctx_t yw_log_swap_ctx(yw_log_ctx_t ctx)
{
    yw_log_ctx_t prev = yw__log_ctx;
    yw__log_ctx = ctx;
    return prev;
}

int yw_log_enabled(yw_log_level_t level)
{
    return level >= yw__log_min;
}

void yw_log_init(const char *service, yw_log_level_t min_level)
{
    yw__log_service = service;
    yw__log_min = min_level;
}

int yw_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++) {
        if (s != NULL && strcmp(s, yw__log_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* Appends `s` as a JSON string body (no quotes) to buf[*off..cap). */
static void yw__json_escape(char *buf, size_t cap, size_t *off, const char *s)
{
    for (; s != NULL && *s != '\0' && *off + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*off)++] = '\\';
            buf[(*off)++] = (char)c;
        } else if (c == '\n') {
            buf[(*off)++] = '\\';
            buf[(*off)++] = 'n';
        } else if (c < 0x20) {
            *off += (size_t)snprintf(buf + *off, cap - *off, "\\u%04x", c);
        } else {
            buf[(*off)++] = (char)c;
        }
    }
}

static void yw__append(char *buf, size_t cap, size_t *off, const char *s)
{
    if (*off + 1 >= cap) {
        return;
    }
    size_t n = strlen(s);
    if (n > cap - *off - 1) {
        n = cap - *off - 1;
    }
    memcpy(buf + *off, s, n);
    *off += n;
}

static void yw__log_head(char *buf, size_t cap, size_t *off, yw_log_level_t level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    *off += (size_t)snprintf(buf, cap, "{\"time\":\"%s.%06ldZ\",\"level\":\"%s\",\"service\":\"",
                             when, ts.tv_nsec / 1000, yw__log_names[level]);
    yw__json_escape(buf, cap, off, yw__log_service);
    yw__append(buf, cap, off, "\"");
}

static void yw__log_emit(char *buf, size_t cap, size_t off)
{
    if (off + 3 > cap) {
        off = cap - 3;
    }
    buf[off++] = '}';
    buf[off++] = '\n';
    /* One write per line so that lines of concurrent writers never interleave. */
    fwrite(buf, 1, off, stderr);
}

static void yw__append_field(char *buf, size_t cap, size_t *off, const char *key, const char *value)
{
    yw__append(buf, cap, off, ",\"");
    yw__append(buf, cap, off, key);
    yw__append(buf, cap, off, "\":\"");
    yw__json_escape(buf, cap, off, value);
    yw__append(buf, cap, off, "\"");
}

void yw_logv_call_ctx(yw_log_level_t level, const char *method, const char *request_id,
                      const char *fmt, va_list ap)
{
    if (level < yw__log_min) {
        return;
    }
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (request_id == NULL && yw__log_ctx.request_id != NULL) {
        request_id = yw__log_ctx.request_id(yw__log_ctx.arg);
    }

    char buf[2048];
    size_t off = 0;
    yw__log_head(buf, sizeof buf, &off, level);
    if (method != NULL) {
        yw__append_field(buf, sizeof buf, &off, "method", method);
    }
    yw__append_field(buf, sizeof buf, &off, "msg", msg);
    if (request_id != NULL && request_id[0] != '\0') {
        yw__append_field(buf, sizeof buf, &off, "request_id", request_id);
    }
    yw__log_emit(buf, sizeof buf, off);
}

void yw_log(yw_log_level_t level, const char *fmt, ...)
{
    if (level < yw__log_min) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    yw_logv_call_ctx(level, NULL, NULL, fmt, ap);
    va_end(ap);
}

yw_log_level_t yw_log_call_level(const char *status)
{
    if (strcmp(status, "OK") == 0) {
        return YW_LOG_DEBUG;
    }
    if (strcmp(status, "INTERNAL") == 0 || strcmp(status, "UNKNOWN") == 0) {
        return YW_LOG_ERROR;
    }
    return YW_LOG_INFO;
}

void yw_log_call(const char *method, const char *status, const char *message, double duration_ms,
                 const char *request_id)
{
    yw_log_level_t level = yw_log_call_level(status);
    if (level < yw__log_min) {
        return;
    }
    char buf[2048];
    size_t off = 0;
    yw__log_head(buf, sizeof buf, &off, level);
    yw__append(buf, sizeof buf, &off, ",\"method\":\"");
    yw__json_escape(buf, sizeof buf, &off, method);
    yw__append(buf, sizeof buf, &off, "\",\"status\":\"");
    yw__json_escape(buf, sizeof buf, &off, status);
    off += (size_t)snprintf(buf + off, sizeof buf - off, "\",\"duration_ms\":%.3f", duration_ms);
    if (message != NULL && message[0] != '\0') {
        yw__append(buf, sizeof buf, &off, ",\"msg\":\"");
        yw__json_escape(buf, sizeof buf, &off, message);
        yw__append(buf, sizeof buf, &off, "\"");
    }
    if (request_id != NULL && request_id[0] != '\0') {
        yw__append(buf, sizeof buf, &off, ",\"request_id\":\"");
        yw__json_escape(buf, sizeof buf, &off, request_id);
        yw__append(buf, sizeof buf, &off, "\"");
    }
    yw__log_emit(buf, sizeof buf, off);
}
