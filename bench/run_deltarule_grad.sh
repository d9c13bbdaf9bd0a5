#!/usr/bin/env bash
# Re-creates results/deltarule_grad.txt: the delta-rule backward against its
# forward on the Qwen3.5-0.8B DeltaNet shape (T = 1..8192, 2 threads; the issue
# asks for 512, 2048, 8192, the short ones place the crossover),
# every backward implementation next to the best forward, and the backward's
# crossover (chunked vs recurrent backward), merged into
# results/deltarule_crossover.json under "grad_points" (the forward's points
# stay); each row also interleaved (--pairs 20: the ratio to the forward and the % of peak
# per round, against an FMA peak probed in the same round).  Then the backward's correctness
# sweep (check deltarule --grad).
# A few minutes on 2 cores; run it on a quiet machine (BUSY marks repetitions
# during which other processes used more than 10% of the CPUs).
# BUILD=dir selects the build directory (default build), CROSSOVER=file where
# the backward's crossover goes (default results/deltarule_crossover.json).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CROSSOVER=${CROSSOVER:-results/deltarule_crossover.json}
make -s BUILD="$BUILD" all
mkdir -p results
out=results/deltarule_grad.txt
# this host's own limits (the % of peak is against them, not another machine's)
"$BUILD"/q35lab calibrate --threads 2 --out results/deltarule_grad_machine.json > /dev/null
{
  echo "# bash bench/run_deltarule_grad.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cpus"
  echo "# host flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  # --pairs 20: each row also as 20 interleaved rounds (FMA peak probe, forward, backwards), the
  # ratios taken at the same moments (the calibration above is minutes older, and the host drifts)
  "$BUILD"/q35lab bench deltarule --grad --shape qwen3.5-0.8b --T 1,4,16,64,512,2048,8192 --threads 2 --reps 5 \
      --counters sde --crossover "$CROSSOVER" --machine results/deltarule_grad_machine.json --pairs 20
  echo
  "$BUILD"/q35lab check deltarule --grad --quick
} 2>&1 | tee "$out"
