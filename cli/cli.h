/* The q35lab command line: one file per command, this header between them. */
#ifndef Q35_CLI_H
#define Q35_CLI_H

int cmd_list(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_golden(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_validate(int argc, char **argv);

/* Parses "1,2,3" into out (at most max values, each in [lo, hi]); -1 on error. */
int cli_int_list(const char *s, int *out, int max, int lo, int hi);
/* Parses one integer in [lo, hi]; -1 on error (message printed). */
int cli_int(const char *opt, const char *s, int lo, int hi, int *out);
/* The value after option argv[*i]; prints an error and returns NULL if missing. */
const char *cli_value(int argc, char **argv, int *i);

#endif
