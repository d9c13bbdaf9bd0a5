/* commands.h - the q35lab commands, one file each (cli/cli_<command>.c).
 * Each takes argv as typed from its own word on: argv[0] is "check",
 * "bench", ...; a command with sub-commands finds its family in argv[1].
 * Each returns the exit status: 0 success, 1 a check failed, 2 bad input. */
#ifndef Q35_CLI_COMMANDS_H
#define Q35_CLI_COMMANDS_H

int cmd_list(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_golden(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_validate(int argc, char **argv);

/* check moe, golden moe (cli/cli_moe.c): options from argv[2] on. */
int cmd_check_moe(int argc, char **argv);
int cmd_golden_moe(int argc, char **argv);

#endif
