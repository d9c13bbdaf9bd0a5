/* libFuzzer target: a MoE golden file (harness/moe_golden.h) on any bytes,
 * read as it is and as check moe --golden --bf16 --fused reads it (weights
 * rounded to bf16, gate/up fused, expectations then recomputed by ref).
 * Its promise: a golden it accepts is a problem moe_validate accepts;
 * otherwise a one-line message. */
#include "harness/moe_golden.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_path(data, size);
    static const moe_golden_opts modes[2] = {{0, 0}, {1, 1}};
    for (int m = 0; m < 2; m++) {
        moe_golden g;
        char err[512];
        if (moe_golden_load(path, &g, &modes[m], err, sizeof err)) {
            fuzz_check_message(err, sizeof err);
            continue;
        }
        FUZZ_PROMISE(moe_validate(&g.c.p, 1, err, sizeof err) == 0);
        moe_golden_free(&g);
    }
    return 0;
}
