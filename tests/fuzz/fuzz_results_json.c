/* libFuzzer target: the JSON files the tools read back from results/, auto's
 * crossover (harness/deltarule_crossover.h) and the calibrated machine limits
 * (harness/calibrate.h), on any bytes.  Their promise: what they accept holds
 * only positive sizes and non-negative figures; otherwise a one-line message. */
#include "harness/calibrate.h"
#include "harness/deltarule_crossover.h"
#include "tests/fuzz/fuzz_input.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_path(data, size);
    char err[512];
    deltarule_crossover x;
    if (dr_crossover_load(path, &x, err, sizeof err)) fuzz_check_message(err, sizeof err);
    else {
        FUZZ_PROMISE(x.n >= 0 && x.n <= DR_CROSSOVER_MAX_POINTS);
        for (int i = 0; i < x.n; i++)
            FUZZ_PROMISE(x.pt[i].Hk > 0 && x.pt[i].Hv > 0 && x.pt[i].Dk > 0 && x.pt[i].Dv > 0 &&
                         x.pt[i].threads > 0 && x.pt[i].chunked_from_T >= 0);
    }
    q35_machine_limits lim;
    if (q35_limits_load(path, &lim, err, sizeof err)) fuzz_check_message(err, sizeof err);
    else
        for (int t = 1; t <= 4; t++) {
            const double peak = q35_limit_fma_peak(&lim, t), bw = q35_limit_mem_bw(&lim, "triad", t);
            FUZZ_PROMISE(isfinite(peak) && peak >= 0 && isfinite(bw) && bw >= 0);
        }
    return 0;
}
