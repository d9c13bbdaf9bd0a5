/* q35lab check moe / golden moe (harness/cli_moe.c).  argv is as cmd_check /
 * cmd_golden receive it: argv[0] the command, argv[1] "moe", options from
 * argv[2] (a call with the options from argv[1] also works). */
#ifndef Q35_CLI_MOE_H
#define Q35_CLI_MOE_H

int cmd_check_moe(int argc, char **argv);
int cmd_golden_moe(int argc, char **argv);

#endif
