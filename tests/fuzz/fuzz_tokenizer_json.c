/* libFuzzer target: tokenizer.json (model/tokenizer.h) on any bytes.  Its
 * promise: a file it refuses gives a one-line message; a file it loads
 * encodes text (fixed strings, and the input itself when it is valid UTF-8)
 * into ids inside [0, n_ids) that decode again, in one piece and streamed,
 * to the same text; invalid UTF-8 is refused, not encoded. */
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

#include <string.h>

static void round_trip(const q35_tokenizer *t, const char *text, size_t len)
{
    char err[512];
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (q35_tokenizer_encode(t, text, len, &ids, &n, &cap, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        free(ids);
        return;
    }
    const int32_t n_ids = q35_tokenizer_n_ids(t);
    for (size_t i = 0; i < n; i++) FUZZ_PROMISE(ids[i] >= 0 && ids[i] < n_ids);
    size_t whole_len;
    char *whole = q35_tokenizer_decode(t, ids, n, 0, &whole_len, err, sizeof err);
    FUZZ_PROMISE(whole != NULL);
    q35_detok d;
    q35_detok_init(&d);
    size_t at = 0;
    const char *out;
    size_t out_len;
    for (size_t i = 0; i < n; i++) {
        FUZZ_PROMISE(q35_detok_push(t, &d, ids[i], &out, &out_len, err, sizeof err) == 0);
        FUZZ_PROMISE(at + out_len <= whole_len && !memcmp(whole + at, out, out_len));
        at += out_len;
    }
    FUZZ_PROMISE(q35_detok_finish(&d, &out, &out_len) == 0);
    FUZZ_PROMISE(at + out_len == whole_len && !memcmp(whole + at, out, out_len));
    q35_detok_free(&d);
    free(whole);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    q35_tokenizer *t = q35_tokenizer_load(fuzz_input_path(data, size), err, sizeof err);
    if (!t) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    FUZZ_PROMISE(q35_tokenizer_n_ids(t) > 0);
    static const char fixed[] = "Hello world <|im_end|> caf\xC3\xA9 e\xCC\x81 123\n\n  \t\xE6\x97\xA5\xF0\x9F\x98\x80";
    round_trip(t, fixed, sizeof fixed - 1);
    round_trip(t, (const char *)data, size < 4096 ? size : 4096);
    q35_tokenizer_free(t);
    return 0;
}
