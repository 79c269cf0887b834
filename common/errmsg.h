/*
 * errmsg.h — an error message formatted into the caller's buffer: how every module fills
 * the `char *err, size_t errlen` out-parameter that goes with a negative return
 * (STYLE.md: "every error that reaches a caller says what failed and on what input").
 *
 * The buffer may be NULL or of length 0 (the caller does not want the message): nothing
 * is written then. A message longer than the buffer is cut, and always NUL-terminated.
 */
#ifndef YW_ERRMSG_H
#define YW_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Formats `fmt` into `err` (`errlen` bytes; NULL or 0: nothing is written). */
void yw_errmsg_printf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** yw_errmsg_printf() with a va_list, for helpers that take a format of their own. */
void yw_errmsg_vprintf(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#ifdef __cplusplus
}
#endif
#endif
