/* commands.h - the q35lab commands, one file each (cli/cli_<command>.c).
 * Each takes argv as typed from its own word on: argv[0] is "check",
 * "bench", ...; a command with sub-commands finds its family in argv[1].
 * Each returns the exit status: 0 success, 1 a check failed, 2 bad input.
 * comm: the ranks of the run (one process outside mpirun); generate,
 * validate and bench model run tensor-parallel over them, the others
 * refuse to run on more than one (cli_one_process). */
#ifndef Q35_CLI_COMMANDS_H
#define Q35_CLI_COMMANDS_H

#include "common/comm.h"

int cmd_list(int argc, char **argv, const q35_comm *comm);
int cmd_check(int argc, char **argv, const q35_comm *comm);
int cmd_golden(int argc, char **argv, const q35_comm *comm);
int cmd_bench(int argc, char **argv, const q35_comm *comm);
int cmd_calibrate(int argc, char **argv, const q35_comm *comm);
int cmd_model(int argc, char **argv, const q35_comm *comm);
int cmd_generate(int argc, char **argv, const q35_comm *comm);
int cmd_validate(int argc, char **argv, const q35_comm *comm);
int cmd_tokenize(int argc, char **argv, const q35_comm *comm);

/* check moe, golden moe (cli/cli_moe.c): options from argv[2] on. */
int cmd_check_moe(int argc, char **argv);
int cmd_golden_moe(int argc, char **argv);

/* 0 when the run is one process; else a message that `what` runs in one
 * process only, on rank 0, and 2. */
int cli_one_process(const q35_comm *comm, const char *what);

#endif
