/* libFuzzer target: a saved state (model/state_file.h) on any bytes, read
 * for the transformers-made tiny checkpoint tests/data/model/hf-tiny-dense-bf16
 * (loaded once; the fuzzer runs from the project root).  Its promise: a file
 * it accepts gives a state of its batch with positions in [0, capacity] and
 * prefix tokens inside the vocabulary; otherwise a one-line message, *s
 * zeroed and *prefix NULL. */
#include "model/state_file.h"
#include "tests/fuzz/fuzz_input.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static q35_model m;
    static int loaded;
    char err[512];
    if (!loaded) {
        if (q35_model_load("tests/data/model/hf-tiny-dense-bf16", &(q35_load_opts){0}, &m, err, sizeof err)) {
            fprintf(stderr, "fuzz_state_file: %s (run from the project root)\n", err);
            abort();
        }
        loaded = 1;
    }
    q35_state s;
    int32_t *prefix = (int32_t *)1;
    if (q35_state_load(fuzz_input_path(data, size), &m, 4, &s, &prefix, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        FUZZ_PROMISE(prefix == NULL && s.B == 0 && s.pos == NULL);
        return 0;
    }
    int maxpos = 0;
    for (int b = 0; b < s.B; b++) {
        FUZZ_PROMISE(s.pos[b] >= 0 && s.pos[b] <= s.capacity);
        maxpos = s.pos[b] > maxpos ? s.pos[b] : maxpos;
    }
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < s.pos[b]; t++) {
            const int32_t id = prefix[(size_t)b * maxpos + t];
            FUZZ_PROMISE(id >= 0 && id < m.cfg.vocab_size);
        }
    free(prefix);
    q35_state_free(&s);
    return 0;
}
