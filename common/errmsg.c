/* errmsg.c — an error message formatted into the caller's buffer. See errmsg.h. */
#include "common/errmsg.h"

#include <stdio.h>

void yw_errmsg_vprintf(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    /* On an encoding error vsnprintf may leave the buffer as it was: empty it. */
    if (vsnprintf(err, errlen, fmt, ap) < 0) {
        err[0] = '\0';
    }
}

void yw_errmsg_printf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(err, errlen, fmt, ap);
    va_end(ap);
}
