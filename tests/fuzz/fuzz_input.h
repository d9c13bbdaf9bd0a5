/* What every fuzz target shares: the input as a file (the readers take
 * paths and mmap them), and a check that stops the run when a reader breaks
 * a promise its header makes (a crash libFuzzer then reports and minimizes).
 */
#ifndef Q35_FUZZ_INPUT_H
#define Q35_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The bytes as a file: an in-memory file (memfd) made once and rewritten for
 * every input, named by its /proc/self/fd path, so an input costs no disk
 * I/O and the reader sees an ordinary path. */
static inline const char *fuzz_input_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("q35-fuzz-input", 0);
        if (fd < 0) { perror("memfd_create"); abort(); }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) { perror("memfd"); abort(); }
    return path;
}

/* A broken promise is a finding: abort with the reason, like a crash. */
#define FUZZ_PROMISE(cond)                                                                                         \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, "fuzz: promise broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                       \
            abort();                                                                                               \
        }                                                                                                          \
    } while (0)

/* A reader's error message: one line, non-empty, NUL-terminated in its buffer. */
static inline void fuzz_check_message(const char *err, size_t errlen)
{
    size_t n = 0;
    while (n < errlen && err[n]) n++;
    FUZZ_PROMISE(n < errlen && n > 0);
    for (size_t i = 0; i < n; i++)
        if (err[i] == '\n' || err[i] == '\r') {
            fprintf(stderr, "fuzz: message of more than one line: '%s'\n", err);
            FUZZ_PROMISE(err[i] != '\n' && err[i] != '\r');
        }
}

#endif
