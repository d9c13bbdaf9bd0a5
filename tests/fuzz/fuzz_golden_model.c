/* libFuzzer target: a model golden file (prompts, greedy tokens, logits;
 * harness/model_validate.h) on any bytes, for a 512-token vocabulary.  Its
 * promise: every prompt and token it accepts is a valid id, every prompt is
 * non-empty, all prompts have the same number of steps and the logits are
 * [steps, vocab]; otherwise a one-line message. */
#include "harness/model_validate.h"
#include "tests/fuzz/fuzz_input.h"

#define VOCAB 512 /* the tiny checkpoints of ../shared; tests/data's have 256 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    q35_prompts p;
    char err[512];
    if (q35_prompts_load_golden(fuzz_input_path(data, size), VOCAB, &p, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    FUZZ_PROMISE(p.n > 0 && p.steps > 0);
    volatile float sink = 0;
    for (int i = 0; i < p.n; i++) {
        FUZZ_PROMISE(p.len[i] > 0);
        for (int j = 0; j < p.len[i]; j++) FUZZ_PROMISE(p.prompt[i][j] >= 0 && p.prompt[i][j] < VOCAB);
        for (int j = 0; j < p.steps; j++) FUZZ_PROMISE(p.tokens[i][j] >= 0 && p.tokens[i][j] < VOCAB);
        if (p.logits[i])
            for (size_t j = 0; j < (size_t)p.steps * VOCAB; j++) sink += p.logits[i][j];
    }
    (void)sink;
    q35_prompts_free(&p);
    return 0;
}
