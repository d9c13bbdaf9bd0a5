/* Writing an error message into a caller's buffer, the convention of every
 * q35lab function that takes (char *err, size_t errlen).  A message is one
 * line: messages quote names and values read from files made anywhere (a
 * tensor name, a config string), and a control character in one must not
 * break the line a user or a script reads. */
#ifndef Q35_ERRMSG_H
#define Q35_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

/* printf into err (NULL or errlen 0: nothing), control characters replaced by '?'. */
void q35_errmsg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void q35_verrmsg(char *err, size_t errlen, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
/* Replaces control characters (newline, tab, escape, ...) in s by '?'. */
void q35_errmsg_one_line(char *s);

#endif
