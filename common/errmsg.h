/* Writing an error message into a caller's buffer, the convention of every
 * q35lab function that takes (char *err, size_t errlen). */
#ifndef Q35_ERRMSG_H
#define Q35_ERRMSG_H

#include <stddef.h>

/* printf into err (NULL or errlen 0: nothing). */
void q35_errmsg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
