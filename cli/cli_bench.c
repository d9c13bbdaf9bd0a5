/* q35lab bench deltarule|moe|model: options parsed here into the drivers'
 * configurations (bench/bench_*.h). */
#include "harness/deltarule_crossover.h"
#include "bench/bench_comm.h"
#include "bench/bench_attention.h"
#include "bench/bench_linear.h"
#include "bench/bench_conv.h"
#include "bench/bench_deltarule.h"
#include "bench/bench_deltarule_grad.h"
#include "bench/bench_model.h"
#include "bench/bench_moe.h"
#include "cli/cli_args.h"
#include "cli/cli_model_args.h"
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

static const char usage_bench[] =
    "usage: q35lab bench deltarule|moe|conv|attention|linear|model|comm [options]   (q35lab bench deltarule --help, ...)\n"
    "Every implementation side by side: medians with [min, max], tokens/s, GFLOP/s, GB/s and % of this\n"
    "machine's calibrated limits (results/machine.json, from q35lab calibrate --out).  Results are\n"
    "printed; they are written to files only when named (--json, --csv).\n";

static const char usage_deltarule[] =
    "usage: q35lab bench deltarule [options]\n"
    "  --impl all|A,B        implementations (all: every entry but ref, side by side)\n"
    "  --shape NAME          qwen3.5-0.8b (16/16 heads), qwen3.5-35b-a3b (16/32), custom:Hk,Hv,Dk,Dv\n"
    "  --T 1,64,512,2048     sequence lengths          --B 1,4        batch sizes\n"
    "  --threads 1,2         thread counts             --reps N       timed repetitions (after a warm-up)\n"
    "  --cold                rotate the state over as many layers as the model has DeltaNet layers\n"
    "                        (18 for 0.8B), so it is not in cache: the decode case in a real model\n"
    "  --chunk 16,32,64      run the chunked forms at these chunk sizes (rows impl@C)\n"
    "  --counters SPEC       PAPI events or groups default|cache|flops|sde|none (docs/counters.md)\n"
    "  --json F --csv F      append every result to these files (nothing is written without them)\n"
    "  --machine F           the calibrated limits (default results/machine.json)\n"
    "  --checkpoints every|N also time every implementation with recurrent-state checkpoints, side by side\n"
    "                        with the same call without them (chunked forms in both modes, split and\n"
    "                        from-delta): every = after every token but the last (a speculative verify\n"
    "                        window of T-1 drafts), N = N checkpoints spread evenly over T; prints time per\n"
    "                        token and state bytes written with and without (docs/deltarule.md)\n"
    "  --crossover F         also measure auto's crossover for this shape and these thread counts from\n"
    "                        recurrent(-pairs) against chunked at the --T given, and put it into F (the\n"
    "                        points of other shapes and thread counts stay); auto reads\n"
    "                        " DR_CROSSOVER_FILE "\n"
    "  --grad                the backward instead: every backward implementation (--impl: the backward's names)\n"
    "                        next to the best forward (recurrent-pairs, chunked) on the same problem, initial\n"
    "                        state and d_final_state given: medians with spread, GFLOP/s (backward: 18 Dk Dv per\n"
    "                        token and head, 3x the forward's 6), % of peak, time / best forward, memory held\n"
    "                        (a backward's workspace is allocated once per row, as a training loop keeps it;\n"
    "                        d_out and the gradients in 2 MiB pages like the forward's tensors);\n"
    "                        the backward's crossover (chunked vs recurrent backward) printed, and with\n"
    "                        --crossover F written under F's \"grad_points\" (the forward's points stay);\n"
    "                        with --chunk the chunked backward at each chunk size (rows bwd:chunked@C, the\n"
    "                        forwards at their defaults; no crossover from them)\n"
    "  --pairs N             with --grad: after each row's blocks, N rounds of an FMA peak probe, one call of\n"
    "                        the best forward and one of every backward, interleaved (the order reversed every\n"
    "                        other round): per backward, time / forward and % of that round's peak, median\n"
    "                        [q1, q3] -- both taken at the same moments, so the host's drift cancels\n";

static const char usage_moe[] =
    "usage: q35lab bench moe [options]\n"
    "  --impl all|A,B        implementations (all: every entry but ref)\n"
    "  --shape NAME          qwen3.5-35b-a3b, qwen3.5-397b-a17b, custom:hidden,E,k,I,Is\n"
    "  --T 1,8,128,512       tokens                    --dtype f32,bf16   weight dtypes\n"
    "  --threads 1,2         thread counts             --reps N           timed repetitions\n"
    "  --skew 0..1           routers that send most tokens to a few experts\n"
    "  --counters SPEC       PAPI events or groups (default sde)\n"
    "  --json F --csv F      append every result to these files (nothing is written without them)\n"
    "  --machine F           the calibrated limits (default results/machine.json)\n";

static const char usage_model[] =
    "usage: q35lab bench model --model DIR [options]\n"
    "TTFT (prefill) and TPOT (decode) medians with min/max and 95% CI, tokens/s, GB/s and GFLOP/s against\n"
    "the calibrated limits.\n"
    "  --model DIR           Hugging Face Qwen3.5 folder (required)\n"
    "  --prompt-len 128,512  prompt lengths            --gen N        tokens generated per repetition (>= 2)\n"
    "  --impl SPEC           default | ref | FAMILY=NAME,...\n"
    "  --threads 1,2         thread counts             --reps N       repetitions\n"
    "  --f32                 hold BF16 weights as F32  --mmap         keep matrices in the file maps\n"
    "  --moe-shard tp|ep     under mpirun: how the experts are split (docs/tp.md; default tp)\n"
    "  --weights q8|q4       quantize the matrices at load, 16 rows interleaved where the family allows;\n"
    "                        q8_0|q4_0: the same values in ggml's row layout (docs/quantization.md §8)\n"
    "  --quant-only LIST     with --weights: deltanet,attention,mlp,moe,lm_head (default all)\n"
    "  --bw-probe            a read-bandwidth probe (calibrate's read of 1 GiB) just before and after each\n"
    "                        repetition's decode steps: each repetition's median step against the bound with\n"
    "                        state at that moment's bandwidth, and their median (one process only); a\n"
    "                        repetition whose two probes differ by more than 10% is marked MOVED and left\n"
    "                        out of the median; with 2 threads or more, also the threads' hand-off round\n"
    "                        trip (ns: whether they share a last-level cache; docs/calibrate.md) and one\n"
    "                        median per placement of the threads; each median comes with its repetitions'\n"
    "                        own split of a step into the kernel families\n"
    "  --json F --csv F      append every result to these files (nothing is written without them)\n"
    "  --machine F           the calibrated limits (default results/machine.json)\n";

static int bench_deltarule_cmd(int argc, char **argv)
{
    dr_bench_config c;
    dr_bench_defaults(&c);
    const char *shape = NULL, *ckpt = NULL;
    int grad = 0;
    const cli_opt opts[] = {
        OPT_FLAG("--grad", &grad),
        OPT_STR("--checkpoints", &ckpt),
        OPT_FLAG("--cold", &c.cold),       OPT_STR("--impl", &c.impl),         OPT_STR("--counters", &c.counters),
        OPT_STR("--json", &c.json),        OPT_STR("--csv", &c.csv),           OPT_STR("--machine", &c.machine),
        OPT_STR("--crossover", &c.crossover), OPT_STR("--shape", &shape),
        OPT_INTS("--chunk", c.chunks, 1, 1024, &c.nchunks, 8),
        OPT_INT("--reps", &c.reps, 1, 100000),     OPT_INT("--pairs", &c.pairs, 1, 10000),
        OPT_INTS("--T", c.Ts, 1, 1 << 20, &c.nT, 16),
        OPT_INTS("--B", c.Bs, 1, 4096, &c.nB, 8),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        CLI_END};
    const int pr = cli_parse("bench deltarule", usage_deltarule, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (shape) {
        const dr_bench_shape *named = dr_bench_shape_named(shape);
        int v[4];
        if (named) c.shape = *named;
        else if (!strncmp(shape, "custom:", 7) && cli_int_list(shape + 7, v, 4, 1, 65536) == 4 && v[1] % v[0] == 0)
            c.shape = (dr_bench_shape){"custom", v[0], v[1], v[2], v[3], 18};
        else {
            fprintf(stderr, "q35lab: --shape expects qwen3.5-0.8b, qwen3.5-35b-a3b or custom:Hk,Hv,Dk,Dv "
                            "(Hv a multiple of Hk), got '%s'\n", shape);
            return 2;
        }
    }
    if (ckpt) {
        int n;
        if (!strcmp(ckpt, "every")) c.checkpoints = DR_BENCH_CKPT_EVERY;
        else if (cli_int_list(ckpt, &n, 1, 1, 1 << 20) == 1) c.checkpoints = n;
        else {
            fprintf(stderr, "q35lab: --checkpoints expects 'every' or a count >= 1, got '%s'\n", ckpt);
            return 2;
        }
    }
    if (c.pairs && !grad) {
        fprintf(stderr, "q35lab: bench deltarule: --pairs goes with --grad\n");
        return 2;
    }
    deltarule_crossover x;
    if (grad) {
        c.auto_crossover = dr_crossover_load_default_grad(&x);
        return bench_deltarule_grad(&c);
    }
    c.auto_crossover = dr_crossover_load_default(&x);
    return bench_deltarule(&c);
}

static int bench_moe_cmd(int argc, char **argv)
{
    moe_bench_config c;
    moe_bench_defaults(&c);
    const char *shape = NULL, *dtype = NULL;
    const cli_opt opts[] = {
        OPT_STR("--impl", &c.impl),   OPT_STR("--counters", &c.counters), OPT_STR("--json", &c.json),
        OPT_STR("--csv", &c.csv),     OPT_STR("--machine", &c.machine),   OPT_STR("--shape", &shape),
        OPT_STR("--dtype", &dtype),   OPT_INT("--reps", &c.reps, 1, 100000),
        OPT_INTS("--T", c.Ts, 1, 1 << 16, &c.nT, 16),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        OPT_DOUBLE("--skew", &c.skew, 0.0, 1.0),
        CLI_END};
    const int pr = cli_parse("bench moe", usage_moe, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (shape) {
        const moe_bench_shape *named = moe_bench_shape_named(shape);
        int v[5];
        if (named) c.shape = *named;
        else if (!strncmp(shape, "custom:", 7) && cli_int_list(shape + 7, v, 5, 0, 1 << 20) == 5 && v[0] > 0 &&
                 v[1] > 0 && v[2] > 0 && v[2] <= v[1] && v[3] > 0)
            c.shape = (moe_bench_shape){"custom", v[0], v[1], v[2], v[3], v[4]};
        else {
            fprintf(stderr, "q35lab: --shape expects qwen3.5-35b-a3b, qwen3.5-397b-a17b or "
                            "custom:hidden,E,k,I,Is (1 <= k <= E, Is may be 0), got '%s'\n", shape);
            return 2;
        }
    }
    if (dtype) {
        c.ndtypes = 0;
        char list[64];
        snprintf(list, sizeof list, "%s", dtype);
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (c.ndtypes == 2 || (strcmp(tok, "f32") && strcmp(tok, "bf16"))) {
                fprintf(stderr, "q35lab: --dtype expects f32, bf16 or f32,bf16, got '%s'\n", dtype);
                return 2;
            }
            c.dtypes[c.ndtypes++] = strcmp(tok, "f32") ? WT_BF16 : WT_F32;
        }
        if (!c.ndtypes) {
            fprintf(stderr, "q35lab: --dtype expects f32, bf16 or f32,bf16, got '%s'\n", dtype);
            return 2;
        }
    }
    return bench_moe(&c);
}

static const char usage_conv[] =
    "usage: q35lab bench conv [--grad] [options]\n"
    "The short causal conv + SiLU (or, with --grad, its backward), every implementation side by side: median\n"
    "[min, max] of --reps timed calls, GFLOP/s, GB/s of the activations streamed, and % of the calibrated\n"
    "limits.  Default: the Qwen3.5-0.8B DeltaNet conv (C 6144, K 4), B 1, T 1,512, all cores.\n"
    "  --grad             the backward (kernels/conv/conv_grad.h): dx, dweight, d_state_in\n"
    "  --C N --K N --B N  the shape (K in [2, 64])\n"
    "  --T LIST --threads LIST --reps N (default 20)\n"
    "  --impl LIST        comma-separated (ref is timed only when named; default: every table entry)\n"
    "  --counters SPEC    PAPI events or none (default none)\n"
    "  --json F --csv F   append the rows to these files; --machine F the calibrated limits\n";

static int bench_conv_cmd(int argc, char **argv)
{
    conv_bench_config c;
    conv_bench_defaults(&c);
    const cli_opt opts[] = {
        OPT_FLAG("--grad", &c.grad),  OPT_STR("--impl", &c.impl),       OPT_STR("--counters", &c.counters),
        OPT_STR("--json", &c.json),   OPT_STR("--csv", &c.csv),         OPT_STR("--machine", &c.machine),
        OPT_INT("--C", &c.C, 1, 1 << 20), OPT_INT("--K", &c.K, 2, 64),  OPT_INT("--B", &c.B, 1, 1024),
        OPT_INT("--reps", &c.reps, 1, 100000),
        OPT_INTS("--T", c.Ts, 1, 1 << 20, &c.nT, 16),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        CLI_END};
    const int pr = cli_parse("bench conv", usage_conv, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    return bench_conv(&c);
}

static const char usage_attention[] =
    "usage: q35lab bench attention [options]\n"
    "The causal GQA attention (kernels/attention/attention.h), every implementation side by side: median [min,\n"
    "max] of --reps timed calls, GFLOP/s (4*D per query head and attended position), GB/s of q, out and the\n"
    "attended cache, and % of the calibrated limits.  Default: Qwen3.5-0.8B's full attention (Hq 8, Hkv 2,\n"
    "D 256), B 1, prefill (past 0), T 512,2048, all cores.  Q35_ISA=generic|avx2|avx512 picks the path.\n"
    "  --Hq N --Hkv N --D N --B N  the shape\n"
    "  --past N           positions already in the cache (decode: --T 1 --past 2048)\n"
    "  --T LIST --threads LIST --reps N (default 10)\n"
    "  --impl LIST        comma-separated (ref is timed only when named; default: every table entry)\n"
    "  --counters SPEC    PAPI events or none (default none)\n"
    "  --json F --csv F   append the rows to these files; --machine F the calibrated limits\n";

static int bench_attention_cmd(int argc, char **argv)
{
    attention_bench_config c;
    attention_bench_defaults(&c);
    const cli_opt opts[] = {
        OPT_STR("--impl", &c.impl),   OPT_STR("--counters", &c.counters), OPT_STR("--json", &c.json),
        OPT_STR("--csv", &c.csv),     OPT_STR("--machine", &c.machine),
        OPT_INT("--Hq", &c.Hq, 1, 1024), OPT_INT("--Hkv", &c.Hkv, 1, 1024), OPT_INT("--D", &c.D, 1, 4096),
        OPT_INT("--B", &c.B, 1, 1024), OPT_INT("--past", &c.past, 0, 1 << 24),
        OPT_INT("--reps", &c.reps, 1, 100000),
        OPT_INTS("--T", c.Ts, 1, 1 << 20, &c.nT, 16),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        CLI_END};
    const int pr = cli_parse("bench attention", usage_attention, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    return bench_attention(&c);
}

static const char usage_linear[] =
    "usage: q35lab bench linear [options]\n"
    "The linear family y = x W^T (kernels/linear/linear.h), every implementation side by side per weight type,\n"
    "M (rows of x) and thread count: median [min, max] of --reps timed calls, GB/s (W in its stored type, x, y)\n"
    "and GFLOP/s (2 M N K) against the calibrated limits.  Lossy entries are marked.  Default: Qwen3.5-0.8B's\n"
    "DeltaNet in_proj_qkv (N 6144, K 1024), M 1,8,512, weights bf16,q8,q4, all cores.\n"
    "Q35_ISA=generic|avx2|avx512 picks the path.\n"
    "  --N N --K N        the shape of W (K a multiple of 32 for q8, q4)\n"
    "  --M LIST           rows of x (1: decode; 512: prefill)\n"
    "  --weights LIST     f32,bf16,q8,q4,q8_0,q4_0 (q8 / q4: Q8_0 / Q4_0 with 16 rows interleaved,\n"
    "                     q8_0 / q4_0: ggml's row layout; docs/quantization.md §8)\n"
    "  --threads LIST --reps N (default 10)\n"
    "  --impl LIST        comma-separated (ref is timed only when named; default: every table entry)\n"
    "  --cold MIB         each call reads the next of the copies of W filling MIB (more than the last-level\n"
    "                     cache: W from DRAM, as in a model's decode step); default: one W, re-read\n"
    "  --counters SPEC    PAPI events or none (default none)\n"
    "  --json F --csv F   append the rows to these files; --machine F the calibrated limits\n";

static int bench_linear_cmd(int argc, char **argv)
{
    linear_bench_config c;
    linear_bench_defaults(&c);
    const cli_opt opts[] = {
        OPT_STR("--impl", &c.impl),   OPT_STR("--counters", &c.counters), OPT_STR("--json", &c.json),
        OPT_STR("--csv", &c.csv),     OPT_STR("--machine", &c.machine),   OPT_STR("--weights", &c.weights),
        OPT_INT("--N", &c.N, 1, 1 << 24), OPT_INT("--K", &c.K, 1, 1 << 20),
        OPT_INT("--reps", &c.reps, 1, 100000), OPT_INT("--cold", &c.cold_mib, 1, 1 << 20),
        OPT_INTS("--M", c.Ms, 1, 1 << 16, &c.nM, 16),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        CLI_END};
    const int pr = cli_parse("bench linear", usage_linear, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    return bench_linear(&c);
}

static const char usage_comm[] =
    "usage: mpirun -np N q35lab bench comm [--min-bytes B] [--max-bytes B] [--reps N]\n"
    "The all-reduce of the tensor-parallel model (fp32 sum) between the ranks over sizes B, 4B, 16B, ... (default\n"
    "4 bytes to 16 MiB, 200 repetitions, a tenth from 1 MiB on): medians, and the alpha-beta model\n"
    "t(n) = alpha + n / beta fitted to them (docs/tp.md).\n";

static int bench_comm_cmd(int argc, char **argv, const q35_comm *comm)
{
    comm_bench_config c;
    comm_bench_defaults(&c);
    int lo = (int)c.min_bytes, hi = (int)c.max_bytes;
    const cli_opt opts[] = {OPT_INT("--min-bytes", &lo, 4, 1 << 30), OPT_INT("--max-bytes", &hi, 4, 1 << 30),
                            OPT_INT("--reps", &c.reps, 1, 1000000), CLI_END};
    const int pr = cli_parse("bench comm", usage_comm, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    c.min_bytes = (size_t)lo;
    c.max_bytes = (size_t)hi;
    c.comm = comm;
    return bench_comm(&c);
}

static int bench_model_cmd(int argc, char **argv, const q35_comm *comm)
{
    model_bench_config c;
    model_bench_defaults(&c);
    const char *moe_shard = NULL, *weights = NULL, *quant_only = NULL;
    const cli_opt opts[] = {
        OPT_STR("--moe-shard", &moe_shard), OPT_STR("--weights", &weights), OPT_STR("--quant-only", &quant_only),
        OPT_FLAG("--f32", &c.f32),    OPT_FLAG("--mmap", &c.mmap),      OPT_STR("--model", &c.dir),
        OPT_FLAG("--bw-probe", &c.bw_probe),
        OPT_STR("--impl", &c.impl),   OPT_STR("--json", &c.json),       OPT_STR("--csv", &c.csv),
        OPT_STR("--machine", &c.machine),
        OPT_INT("--gen", &c.gen, 2, 1 << 16),
        OPT_INT("--reps", &c.reps, 1, 10000),
        OPT_INTS("--prompt-len", c.lens, 1, 1 << 20, &c.nlens, 16),
        OPT_INTS("--threads", c.threads, 1, 1024, &c.nthreads, 8),
        CLI_END};
    const int pr = cli_parse("bench model", usage_model, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (moe_shard && (int)(c.moe_shard = q35_moe_shard_parse(moe_shard)) < 0) {
        fprintf(stderr, "q35lab: --moe-shard must be tp or ep, got '%s'\n", moe_shard);
        return 2;
    }
    q35_load_opts qo = {0};
    if (model_quant_parse(weights, quant_only, NULL, &qo, comm->rank)) return 2;
    c.quant = (int)qo.quant, c.quant_families = qo.quant_families;
    deltarule_crossover x;
    c.auto_crossover = dr_crossover_load_default(&x);
    c.comm = comm;
    return bench_model(&c);
}

int cmd_bench(int argc, char **argv, const q35_comm *comm)
{
    static const char *const names[] = {"deltarule", "moe", "model", "comm", "conv", "attention", "linear"};
    int status;
    switch (cli_subcommand("bench", usage_bench, names, 7, argc, argv, &status)) {
    case 0: return cli_one_process(comm, "bench deltarule") ? 2 : bench_deltarule_cmd(argc, argv);
    case 1: return cli_one_process(comm, "bench moe") ? 2 : bench_moe_cmd(argc, argv);
    case 2: return bench_model_cmd(argc, argv, comm);
    case 3: return bench_comm_cmd(argc, argv, comm);
    case 4: return cli_one_process(comm, "bench conv") ? 2 : bench_conv_cmd(argc, argv);
    case 5: return cli_one_process(comm, "bench attention") ? 2 : bench_attention_cmd(argc, argv);
    case 6: return cli_one_process(comm, "bench linear") ? 2 : bench_linear_cmd(argc, argv);
    default: return status;
    }
}
