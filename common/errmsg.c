/* Error messages (errmsg.h). */
#include "common/errmsg.h"

#include <stdio.h>

void q35_errmsg_one_line(char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

void q35_verrmsg(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (!err || !errlen) return;
    vsnprintf(err, errlen, fmt, ap);
    q35_errmsg_one_line(err);
}

void q35_errmsg(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    q35_verrmsg(err, errlen, fmt, ap);
    va_end(ap);
}
