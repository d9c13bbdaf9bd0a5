/* q35lab bench <family>: the drivers live in bench/. */
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "deltarule")) return bench_deltarule(argc, argv);
    fprintf(stderr, "usage: q35lab bench deltarule [--impl all|A,B] [--shape qwen3.5-0.8b|qwen3.5-35b-a3b|"
                    "custom:Hk,Hv,Dk,Dv] [--T 1,64,512,2048] [--B 1,4] [--threads 1,2] [--reps N] [--cold] "
                    "[--counters default|cache|flops|none|EVENTS] [--json FILE] [--csv FILE] [--machine FILE]\n");
    return 2;
}
