/* log.c — one JSON object per line on stderr. See log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/utf8.h"

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

/* One line being written: it always ends as a whole JSON object (yw__line_end()). */
typedef struct st_yw__line_t {
    char buf[2048];
    size_t off;
} yw__line_t;

/* Room every append leaves at the end of the buffer for the line's "}\n". */
#define YW__LINE_END 2

/* Appends `s` whole, or nothing when it does not fit. */
static void yw__raw(yw__line_t *l, const char *s)
{
    size_t n = strlen(s);
    if (l->off + n + YW__LINE_END <= sizeof l->buf) {
        memcpy(l->buf + l->off, s, n);
        l->off += n;
    }
}

/*
 * Appends `s` as the body of a JSON string, up to `limit`: each character whole or not
 * at all, `"`, `\` and control characters escaped, and every byte that is not UTF-8 as
 * \ufffd, so that the line is valid UTF-8 JSON whatever the bytes given.
 *
 * Not jansson's encoder: json_string() refuses invalid UTF-8 and json_dumpb() fails on
 * it (the value would be lost, not repaired, and repairing first is this same loop);
 * every json_t is an allocation that may fail; and a value that does not fit leaves
 * json_dumpb()'s buffer undefined instead of cut between characters.
 */
static void yw__escape(yw__line_t *l, size_t limit, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *out = esc;
        size_t k, adv = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            k = 2;
        } else if (c == '\n') {
            esc[0] = '\\';
            esc[1] = 'n';
            k = 2;
        } else if (c < 0x20) {
            k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
        } else if ((adv = k = yw_utf8_seq(s + i, len - i)) != 0) {
            out = s + i;
        } else {
            out = "\\ufffd";
            k = 6;
            adv = 1;
        }
        if (l->off + k > limit) {
            break;
        }
        memcpy(l->buf + l->off, out, k);
        l->off += k;
        i += adv;
    }
}

/* Appends ,"key":"value" (the value cut to fit), or nothing when not even the key fits. */
static void yw__field(yw__line_t *l, const char *key, const char *value)
{
    size_t head = strlen(key) + 4;                   /* ,"key":" */
    size_t limit = sizeof l->buf - YW__LINE_END - 1; /* the closing quote */
    if (l->off + head > limit) {
        return;
    }
    l->buf[l->off++] = ',';
    l->buf[l->off++] = '"';
    memcpy(l->buf + l->off, key, head - 4);
    l->off += head - 4;
    l->buf[l->off++] = '"';
    l->buf[l->off++] = ':';
    l->buf[l->off++] = '"';
    yw__escape(l, limit, value);
    l->buf[l->off++] = '"';
}

static void yw__line_start(yw__line_t *l, yw_log_level_t level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(l->buf, sizeof l->buf, "{\"time\":\"%s.%06ldZ\",\"level\":\"%s\"", when,
                     ts.tv_nsec / 1000, yw__log_names[level]);
    l->off = n > 0 && (size_t)n < sizeof l->buf ? (size_t)n : 0;
    yw__field(l, "service", yw__log_service);
}

static void yw__line_end(yw__line_t *l)
{
    l->buf[l->off++] = '}';
    l->buf[l->off++] = '\n';
    /* One write per line so that lines of concurrent writers never interleave. */
    fwrite(l->buf, 1, l->off, stderr);
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
    yw__line_t l;
    yw__line_start(&l, level);
    if (method != NULL) {
        yw__field(&l, "method", method);
    }
    yw__field(&l, "msg", msg);
    if (request_id != NULL && request_id[0] != '\0') {
        yw__field(&l, "request_id", request_id);
    }
    yw__line_end(&l);
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
    yw__line_t l;
    yw__line_start(&l, level);
    yw__field(&l, "method", method);
    yw__field(&l, "status", status);
    char num[48];
    snprintf(num, sizeof num, ",\"duration_ms\":%.3f", duration_ms);
    yw__raw(&l, num);
    if (message != NULL && message[0] != '\0') {
        yw__field(&l, "msg", message);
    }
    if (request_id != NULL && request_id[0] != '\0') {
        yw__field(&l, "request_id", request_id);
    }
    yw__line_end(&l);
}
