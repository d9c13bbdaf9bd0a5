/* q35lab bench <family>: the drivers live in bench/. */
#include "bench/bench.h"
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "deltarule")) return bench_deltarule(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "moe")) return bench_moe(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "model")) return bench_model(argc, argv);
    fprintf(stderr, "usage: q35lab bench deltarule [--impl all|A,B] [--shape qwen3.5-0.8b|qwen3.5-35b-a3b|"
                    "custom:Hk,Hv,Dk,Dv] [--T 1,64,512,2048] [--B 1,4] [--threads 1,2] [--reps N] [--cold] "
                    "[--counters default|cache|flops|none|EVENTS] [--json FILE] [--csv FILE] [--machine FILE]\n"
                    "       q35lab bench moe [--impl all|A,B] [--shape qwen3.5-35b-a3b|qwen3.5-397b-a17b|"
                    "custom:hidden,E,k,I,Is] [--T 1,8,128,512] [--dtype f32,bf16] [--threads 1,2] [--reps N] "
                    "[--skew 0..1] [--counters ...] [--json FILE] [--csv FILE]\n"
                    "       q35lab bench model --model DIR [--prompt-len 128,512] [--gen 32] [--impl SPEC] "
                    "[--threads 1,2] [--reps N] [--f32] [--mmap] [--json FILE] [--csv FILE]\n");
    return 2;
}
