/* Option parsing shared by every command (cli_args.h). */
#include "cli/cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int cli_int_list(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < lo || v > hi || n == max || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n ? n : -1;
}

static int bad_value(const char *cmd, const cli_opt *o, const char *v)
{
    switch (o->kind) {
    case CLI_INT:
        fprintf(stderr, "q35lab %s: %s expects an integer in [%.0f, %.0f], got '%s'\n", cmd, o->name, o->lo, o->hi, v);
        break;
    case CLI_INTS:
        fprintf(stderr, "q35lab %s: %s expects up to %d comma-separated integers in [%.0f, %.0f], got '%s'\n", cmd,
                o->name, o->cap, o->lo, o->hi, v);
        break;
    case CLI_DOUBLE:
        fprintf(stderr, "q35lab %s: %s expects a number in [%g, %g], got '%s'\n", cmd, o->name, o->lo, o->hi, v);
        break;
    case CLI_U64:
        fprintf(stderr, "q35lab %s: %s expects an integer in [0, 2^64-1], got '%s'\n", cmd, o->name, v);
        break;
    default: break;
    }
    return -1;
}

/* Stores v into o's destination; -1 after a message if it does not parse. */
static int take(const char *cmd, const cli_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_STR: *(const char **)o->dst = v; return 0;
    case CLI_STRS:
        if (*o->count >= o->cap) {
            fprintf(stderr, "q35lab %s: %s may be given at most %d times\n", cmd, o->name, o->cap);
            return -1;
        }
        ((const char **)o->dst)[(*o->count)++] = v;
        return 0;
    case CLI_INT: {
        const long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < o->lo || x > o->hi) return bad_value(cmd, o, v);
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_INTS: {
        const int n = cli_int_list(v, (int *)o->dst, o->cap, (int)o->lo, (int)o->hi);
        if (n < 0) return bad_value(cmd, o, v);
        *o->count = n;
        return 0;
    }
    case CLI_DOUBLE: {
        const double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x) || x < o->lo || x > o->hi) return bad_value(cmd, o, v);
        *(double *)o->dst = x;
        return 0;
    }
    case CLI_U64: {
        const unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *v == '-' || *v == '+' || end == v || *end || errno) return bad_value(cmd, o, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CLI_FLAG: break;
    }
    return -1;
}

int cli_parse(const char *cmd, const char *usage, const cli_opt *opts, int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 1;
        }
    for (int i = first; i < argc; i++) {
        const cli_opt *o = opts;
        while (o->name && strcmp(o->name, argv[i])) o++;
        if (!o->name) {
            fprintf(stderr, "q35lab %s: unknown %s '%s' (q35lab %s --help)\n", cmd,
                    argv[i][0] == '-' ? "option" : "argument", argv[i], cmd);
            return -1;
        }
        if (o->kind == CLI_FLAG) {
            *(int *)o->dst = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "q35lab %s: option %s needs a value (q35lab %s --help)\n", cmd, o->name, cmd);
            return -1;
        }
        if (take(cmd, o, argv[++i])) return -1;
    }
    return 0;
}

int cli_subcommand(const char *cmd, const char *usage, const char *const *names, int n, int argc, char **argv,
                   int *exit_status)
{
    if (argc >= 2)
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], names[i])) return i;
    if (argc >= 2 && cli_is_help(argv[1])) {
        fputs(usage, stdout);
        *exit_status = 0;
        return -1;
    }
    if (argc >= 2) fprintf(stderr, "q35lab %s: unknown %s '%s'\n", cmd, argv[1][0] == '-' ? "option" : "subcommand", argv[1]);
    fputs(usage, stderr);
    *exit_status = 2;
    return -1;
}
