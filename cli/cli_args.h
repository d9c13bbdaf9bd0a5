/* cli_args.h - option parsing for every q35lab command: one table of
 * options per command, the same errors everywhere, and --help on every
 * command and sub-command (it prints the command's usage on stdout and exits
 * 0).  Options come after the command words, in any order. */
#ifndef Q35_CLI_ARGS_H
#define Q35_CLI_ARGS_H

#include <stdint.h>

typedef enum {
    CLI_FLAG,   /* no value; sets *(int *)dst = 1 */
    CLI_STR,    /* *(const char **)dst = the value */
    CLI_INT,    /* *(int *)dst, in [lo, hi] */
    CLI_INTS,   /* comma-separated, up to cap values in [lo, hi] into (int *)dst; *count = how many */
    CLI_DOUBLE, /* *(double *)dst, finite, in [lo, hi] */
    CLI_U64,    /* *(uint64_t *)dst, 0 .. 2^64-1 */
    CLI_STRS,   /* repeatable: each value appended to (const char **)dst, up to cap; *count = how many */
} cli_kind;

typedef struct {
    const char *name; /* "--T" */
    cli_kind kind;
    void *dst;
    double lo, hi;    /* CLI_INT, CLI_INTS, CLI_DOUBLE */
    int *count;       /* CLI_INTS, CLI_STRS */
    int cap;          /* CLI_INTS, CLI_STRS */
} cli_opt;

/* Table entries, one per option. */
#define OPT_FLAG(name, dst) {name, CLI_FLAG, dst, 0, 0, NULL, 0}
#define OPT_STR(name, dst) {name, CLI_STR, dst, 0, 0, NULL, 0}
#define OPT_INT(name, dst, lo, hi) {name, CLI_INT, dst, lo, hi, NULL, 0}
#define OPT_INTS(name, dst, lo, hi, count, cap) {name, CLI_INTS, dst, lo, hi, count, cap}
#define OPT_DOUBLE(name, dst, lo, hi) {name, CLI_DOUBLE, dst, lo, hi, NULL, 0}
#define OPT_U64(name, dst) {name, CLI_U64, dst, 0, 0, NULL, 0}
#define OPT_STRS(name, dst, count, cap) {name, CLI_STRS, dst, 0, 0, count, cap}
#define CLI_END {NULL, CLI_FLAG, NULL, 0, 0, NULL, 0}

/* Parses argv[first .. argc-1] against opts (ended by CLI_END).  Returns 1
 * after printing usage to stdout for -h / --help (anywhere), -1 after one
 * line on stderr naming the bad option, the value and what it expects (then
 * a pointer to --help), 0 when every argument was taken.  cmd is the command
 * as typed ("bench deltarule"). */
int cli_parse(const char *cmd, const char *usage, const cli_opt *opts, int argc, char **argv, int first);
/* The exit status for a cli_parse result that is not 0: 0 after --help, 2 after an error. */
#define CLI_EXIT(rc) ((rc) > 0 ? 0 : 2)

/* Parses "1,2,3" into out (at most max values, each in [lo, hi]); the count, or -1. */
int cli_int_list(const char *s, int *out, int max, int lo, int hi);

/* Whether argv[i] asks for help. */
int cli_is_help(const char *arg);

/* A command that has sub-commands ("check deltarule|moe|all"): finds argv[1]
 * among names[0..n-1] and returns its index; prints usage and returns -1 on
 * --help (*exit_status 0) or a missing/unknown word (*exit_status 2). */
int cli_subcommand(const char *cmd, const char *usage, const char *const *names, int n, int argc, char **argv,
                   int *exit_status);

#endif
