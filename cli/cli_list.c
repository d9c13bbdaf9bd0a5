/* q35lab list: every family's implementation table. */
#include "cli/cli.h"
#include "harness/impl_select.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "harness/deltarule_inputs.h"
#include "kernels/moe/moe.h"
#include "kernels/conv/conv.h"
#include "kernels/attention/attention.h"
#include "kernels/linear/linear.h"

#include <stdio.h>
#include <string.h>

int cmd_list(int argc, char **argv)
{
    (void)argc; (void)argv;
    printf("CPU: best ISA path %s, in use %s\n\n", cpu_isa_name(cpu_isa_best()), cpu_isa_name(cpu_isa()));
    printf("family deltarule (gated delta rule, docs/deltarule.md)\n");
    printf("  %-16s %-10s %s\n", "implementation", "claim tol", "summary / regimes claimed");
    for (int i = 0; i < deltarule_n_entries(); i++) {
        const deltarule_impl *im = deltarule_entry(i);
        const int ok = !im->available || im->available();
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary,
               ok ? "" : "  [not supported on this CPU]");
        printf("  %-16s %-10s claims:", "", "");
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            if (im->claims & DR_CLAIM(r)) printf(" %s", dr_regime_name(r));
        printf("\n");
    }
    printf("  auto's crossover: %s\n", deltarule_auto_crossover()->source);
    printf("\nfamily moe (sparse MoE block: router, top-k experts, shared expert; docs/moe.md)\n");
    printf("  %-16s %-10s %-10s %s\n", "implementation", "tol f32", "tol bf16", "summary");
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = moe_entry(i);
        const int ok = !im->available || im->available();
        printf("  %-16s %-10.0e %-10.0e %s%s\n", im->name, im->tol_f32, im->tol_bf16, im->summary,
               ok ? "" : "  [not supported on this CPU]");
    }
    printf("\nfamily conv (Gated DeltaNet's short causal depthwise conv + SiLU; docs/conv.md)\n");
    for (int i = 0; i < conv_n_entries(); i++)
        printf("  %-16s %-10.0e %s\n", conv_entry(i)->name, conv_entry(i)->claim_tol, conv_entry(i)->summary);
    printf("\nfamily attention (causal GQA softmax attention over a KV cache; docs/attention.md)\n");
    for (int i = 0; i < attention_n_entries(); i++) {
        const attention_impl *im = attention_entry(i);
        const int ok = !im->available || im->available();
        printf("  %-16s %-10.0e %s%s\n", im->name, im->claim_tol, im->summary, ok ? "" : "  [not supported on this CPU]");
    }
    printf("\nfamily linear (every projection of the model: y = x W^T, W fp32 or bf16; docs/model.md eq. 1)\n");
    for (int i = 0; i < linear_n_entries(); i++)
        printf("  %-16s %-10.0e %s\n", linear_entry(i)->name, linear_entry(i)->claim_tol, linear_entry(i)->summary);
    return 0;
}
