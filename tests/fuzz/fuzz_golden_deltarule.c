/* libFuzzer target: a delta-rule golden file (harness/deltarule_golden.h)
 * on any bytes.  Its promise: a golden it accepts is a valid problem with
 * expectations of the problem's shapes (deltarule_validate accepts it, with
 * finite inputs); otherwise a one-line message. */
#include "harness/deltarule_golden.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dr_golden g;
    char err[512];
    if (dr_golden_load(fuzz_input_path(data, size), &g, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    FUZZ_PROMISE(deltarule_validate(&g.c.p, 1, err, sizeof err) == 0);
    FUZZ_PROMISE(g.expect_out && g.expect_state && g.atol >= 0 && g.rtol >= 0);
    const size_t nv = (size_t)g.c.p.B * g.c.p.T * g.c.p.Hv * g.c.p.Dv;
    const size_t ns = (size_t)g.c.p.B * g.c.p.Hv * g.c.p.Dk * g.c.p.Dv;
    volatile float sink = 0; /* every expected value is there to be read */
    for (size_t i = 0; i < nv; i++) sink += g.expect_out[i];
    for (size_t i = 0; i < ns; i++) sink += g.expect_state[i];
    (void)sink;
    dr_golden_free(&g);
    return 0;
}
