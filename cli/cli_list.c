/* q35lab list: every family's implementations, ref first. */
#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_inputs.h"
#include "harness/impl_select.h"
#include "kernels/conv/conv_grad.h"
#include "kernels/deltarule/deltarule_grad.h"
#include "ref/conv_grad_ref.h"
#include "ref/deltarule_grad_ref.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: q35lab list\n"
    "Every family's implementations (ref, the executable spec, first), the regimes each claims and its\n"
    "error tolerance, which ISA path this CPU runs, and the crossover `auto` follows.\n";

static const char *unsupported(int (*available)(void))
{
    return !available || available() ? "" : "  [not supported on this CPU]";
}

/* The features CPUID reports (each on its own), the levels, and which path each family's
 * ISA-dispatched kernels take at the level in use (docs/isa.md). */
static void print_cpu(void)
{
    const cpu_isa_level isa = cpu_isa();
    printf("CPU: best ISA path %s, in use %s (Q35_ISA=generic|avx2|avx512|avx512-bf16 lowers it)\n",
           cpu_isa_name(cpu_isa_best()), cpu_isa_name(isa));
    printf("CPU features (CPUID, OS state by XGETBV; * = hidden by the level in use):");
    for (int f = 0; f < CPU_FEAT_COUNT; f++)
        printf(" %s=%s%s", cpu_feature_name((cpu_feature)f), cpu_has_detected((cpu_feature)f) ? "yes" : "no",
               cpu_has_detected((cpu_feature)f) && !cpu_has((cpu_feature)f) ? "*" : "");
    const char *simd = isa >= ISA_AVX2 ? "avx2" : "generic";
    printf("\npaths at %s: deltarule recurrent %s; conv direct, attention flash %s; %s\n\n", cpu_isa_name(isa),
           isa >= ISA_AVX512 ? "avx512" : simd, simd, q35_matmul_path_summary());
}

int cmd_list(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "list")) return 2;
    static const cli_opt opts[] = {CLI_END};
    const int pr = cli_parse("list", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);
    print_cpu();
    printf("family deltarule (gated delta rule, docs/deltarule.md)\n");
    printf("  %-16s %-10s %s\n", "implementation", "claim tol", "summary / regimes claimed");
    for (int i = 0; i < deltarule_n_entries(); i++) {
        const deltarule_impl *im = deltarule_entry(i);
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
        printf("  %-16s %-10s claims:", "", "");
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            if (im->claims & DR_CLAIM(r)) printf(" %s", dr_regime_name(r));
        printf("\n");
    }
    deltarule_crossover x;
    char xs[2048];
    dr_crossover_describe(dr_crossover_load_default(&x), xs, sizeof xs);
    printf("  auto's crossover: %s\n", xs);
    printf("\nfamily deltarule backward (dq dk dv dg dbeta d_initial_state; docs/deltarule.md \"Backward\")\n");
    for (int i = -1; i < deltarule_grad_n_impls; i++) {
        const deltarule_grad_impl *im = i < 0 ? &deltarule_grad_ref_impl : &deltarule_grad_impls[i];
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
        printf("  %-16s %-10s claims:", "", "");
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            if (im->claims & DR_CLAIM(r)) printf(" %s", dr_regime_name(r));
        printf("\n");
    }
    const deltarule_crossover *gx = dr_crossover_load_default_grad(&x);
    if (gx) {
        dr_crossover_describe(gx, xs, sizeof xs);
        /* the backward's default for a shape without a point is not the forward's */
        char *o = strstr(xs, " (other shapes: recurrent at every T)");
        if (o) snprintf(o, sizeof xs - (size_t)(o - xs), " (other shapes: chunked from T = 2)");
    }
    printf("  backward auto's crossover: %s\n", gx ? xs : "none measured (chunked from T = 2)");
    printf("\nfamily moe (sparse MoE block: router, top-k experts, shared expert; docs/moe.md)\n");
    printf("  %-16s %-10s %-10s %s\n", "implementation", "tol f32", "tol bf16", "summary");
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = moe_entry(i);
        printf("  %-16s %-10.0e %-10.0e %s%s\n", im->name, im->tol_f32, im->tol_bf16, im->summary,
               unsupported(im->available));
    }
    printf("\nfamily conv (Gated DeltaNet's short causal depthwise conv + SiLU; docs/conv.md)\n");
    for (int i = 0; i < conv_n_entries(); i++) {
        const conv_impl *im = conv_entry(i);
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
    }
    printf("\nfamily conv backward (dx dweight d_state_in; docs/conv.md \"Backward\")\n");
    for (int i = -1; i < conv_grad_n_impls; i++) {
        const conv_grad_impl *im = i < 0 ? &conv_grad_ref_impl : &conv_grad_impls[i];
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
    }
    printf("\nfamily attention (causal GQA softmax attention over a KV cache; docs/attention.md)\n");
    for (int i = 0; i < attention_n_entries(); i++) {
        const attention_impl *im = attention_entry(i);
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
    }
    printf("\nfamily linear (every projection of the model: y = x W^T, W fp32 or bf16; docs/model.md eq. 1)\n");
    for (int i = 0; i < linear_n_entries(); i++) {
        const linear_impl *im = linear_entry(i);
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, unsupported(im->available));
    }
    return 0;
}
