#!/usr/bin/env bash
# The benchmark commands through the command line, run by make test (benchmarks
# measure speed; nothing here asserts a time, only what the output must hold):
#  - bench model on a tiny checkpoint: the prefill and decode rows, and the
#    per-step split into kernel families (common/sde_counters.h *_NS) whose
#    parts and "the rest" add up to the mean step, with q8 weights and the
#    shared projections of the integer-dot entry;
#  - bench linear --cold: the header says W is cold, every entry has a row;
#  - bench model --bw-probe: a ratio per repetition and their median, with their split of a step;
#  - bench deltarule --grad --pairs: the interleaved ratios, one per backward.
# Usage: tests/bench_cli_test.sh BUILD_DIR   (from the project root, after make)
set -uo pipefail
build=${1:-build}
q=$build/q35lab
out=$build/bench-test
rm -rf "$out" && mkdir -p "$out"
fails=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fails=$((fails + 1)); }

"$q" model init --preset tiny-dense --seed 3 --dtype bf16 --out "$out/tiny-dense" --force > /dev/null 2>&1
for args in "" "--weights q8 --impl linear=tiled-int8dot"; do
    if "$q" bench model --model "$out/tiny-dense" --prompt-len 8 --gen 4 --reps 2 --threads 2 $args \
        --json "$out/m.jsonl" > "$out/m.txt" 2>&1; then
        # "decode per step (mean M ms): linear A ms (p%), ..., the rest R ms (r%)": the parts sum to M
        # (each printed to 0.01 ms: up to 6 roundings of 0.005)
        line=$(grep "decode per step (mean" "$out/m.txt")
        sum=$(echo "$line" | grep -oE "[a-z]+ -?[0-9.]+ ms \(" | awk '{s += $2} END {printf "%.2f", s}')
        mean=$(echo "$line" | sed -E 's/.*\(mean ([0-9.]+) ms\).*/\1/')
        if [ -n "$line" ] && echo "$line" | grep -q " linear " && echo "$line" | grep -q " deltarule " &&
            awk -v a="$sum" -v b="$mean" 'BEGIN {d = a - b; exit !(d < 0.035 && d > -0.035)}'; then
            ok "bench model ${args:-bf16}: $line"
        else bad "bench model ${args:-bf16}: the split does not add up (parts $sum, mean $mean)"; cat "$out/m.txt"; fi
        grep -q "prefill per call (mean" "$out/m.txt" && grep -q "^  decode " "$out/m.txt" ||
            { bad "bench model ${args:-bf16}: rows missing"; cat "$out/m.txt"; }
    else bad "bench model ${args:-bf16} exited non-zero"; cat "$out/m.txt"; fi
done
# --bw-probe: each repetition against the bound at the bandwidth probed around its steps, with the
# threads' hand-off round trip (2 threads), and the median per placement of the threads
if "$q" bench model --model "$out/tiny-dense" --prompt-len 8 --gen 4 --reps 2 --threads 2 --bw-probe > "$out/p.txt" 2>&1 &&
    [ "$(grep -cE "^        rep [12]: step median [0-9.]+ ms; probe [0-9.]+ / [0-9.]+ GB/s, hand-off [0-9]+ / [0-9]+ ns; bound \(weights \+ state\) [0-9.]+ ms; [0-9.]+x(  MOVED: (the probes differ by [0-9]+%|the threads moved \(hand-offs differ by more than 2x\)), left out of the median)?$" "$out/p.txt")" -eq 2 ] &&
    # one median when the steady repetitions saw one placement, one per placement when they saw two
    # (never their mixture); a host whose bandwidth or threads moved during both gets no ratio
    { grep -qE "^        step / bound over the repetitions: median [0-9.]+x \[min [0-9.]+, max [0-9.]+\] \(([12]) of [12] repetitions; [01] MOVED; threads in one placement: hand-off [0-9]+-[0-9]+ ns\)$" "$out/p.txt" ||
      [ "$(grep -cE "^        step / bound over the repetitions: median [0-9.]+x \[min [0-9.]+, max [0-9.]+\] \(1 of 2 repetitions; 0 MOVED; threads (sharing a cache|apart): hand-off [0-9]+-[0-9]+ ns\)$" "$out/p.txt")" -eq 2 ] ||
      grep -qE "^        step / bound over the repetitions: none: the bandwidth moved during every repetition's steps \(2 MOVED\); run again$" "$out/p.txt"; }; then
    ok "bench model --bw-probe"
else bad "bench model --bw-probe"; cat "$out/p.txt"; fi
# each placement's median comes with its repetitions' own split of a step into the kernel families;
# when every repetition counted, that split is the whole run's "decode per step", to the digit
medians=$(grep -c "^        step / bound over the repetitions: median" "$out/p.txt")
splits=$(grep -cE "^        their decode per step \(mean [0-9.]+ ms\): linear [0-9.]+ ms \([0-9.]+%\),.* the rest -?[0-9.]+ ms \(-?[0-9.]+%\)$" "$out/p.txt")
whole=$(sed -nE 's/^      decode per step \(mean ([0-9.]+) ms\).*/\1/p' "$out/p.txt")
if [ "$medians" -ge 1 ] && [ "$splits" -eq "$medians" ] &&
    { ! grep -q "(2 of 2 repetitions; 0 MOVED" "$out/p.txt" ||
      grep -q "^        their decode per step (mean $whole ms)" "$out/p.txt"; }; then
    ok "bench model --bw-probe: a split of the step per placement ($splits)"
elif grep -q "none: the bandwidth moved" "$out/p.txt"; then
    ok "bench model --bw-probe: no repetition counted, no split (host moved)"
else bad "bench model --bw-probe: per-placement split ($medians medians, $splits splits, whole $whole)"; cat "$out/p.txt"; fi
# both threads on one CPU (taskset -c 0): the hand-off probe gives up instead of spinning for
# minutes, and says so; the timeout turns a hang into a failure
if ! command -v taskset > /dev/null; then
    echo "  skip bench model --bw-probe on one CPU: no taskset"
elif timeout 300 taskset -c 0 "$q" bench model --model "$out/tiny-dense" --prompt-len 8 --gen 3 --reps 1 --threads 2 --bw-probe > "$out/p0.txt" 2>&1 &&
    grep -qE "^        rep 1: step median [0-9.]+ ms; probe [0-9.]+ / [0-9.]+ GB/s, hand-off n/a \(threads 0 and 1 did not run at once: one CPU for both\?\); bound" "$out/p0.txt"; then
    ok "bench model --bw-probe, 2 threads on one CPU: hand-off n/a"
else bad "bench model --bw-probe, 2 threads on one CPU"; cat "$out/p0.txt"; fi
# OMP_PROC_BIND: libgomp binds the first thread to its first place at load, and q35lab's re-exec
# (for GOMP_SPINCOUNT and OPENBLAS_NUM_THREADS) kept that mask, so every thread ran on one CPU;
# the two threads must now run at once (a hand-off figure, not n/a)
if [ "$(nproc)" -lt 2 ]; then
    echo "  skip OMP_PROC_BIND: fewer than 2 CPUs"
elif OMP_PROC_BIND=close OMP_PLACES=cores timeout 300 "$q" calibrate --threads 2 --quick --mem-mib 16 --out "$out/bind.json" > "$out/bind.txt" 2>&1 &&
    grep -qE "^  thread hand-off round trip \(ns\) +2 +[0-9.]+ +[0-9.]+ - [0-9.]+" "$out/bind.txt"; then
    ok "OMP_PROC_BIND=close OMP_PLACES=cores: the 2 threads on 2 CPUs"
else bad "OMP_PROC_BIND=close OMP_PLACES=cores: the 2 threads on 2 CPUs"; cat "$out/bind.txt"; fi
# one thread: no hand-off to probe, the format of one placement without a label
if "$q" bench model --model "$out/tiny-dense" --prompt-len 8 --gen 3 --reps 1 --threads 1 --bw-probe > "$out/p1.txt" 2>&1 &&
    grep -qE "^        rep 1: step median [0-9.]+ ms; probe [0-9.]+ / [0-9.]+ GB/s; bound" "$out/p1.txt" &&
    ! grep -q "hand-off" "$out/p1.txt"; then
    ok "bench model --bw-probe, 1 thread"
else bad "bench model --bw-probe, 1 thread"; cat "$out/p1.txt"; fi
[ "$(wc -l < "$out/m.jsonl")" -ge 4 ] && ok "bench model --json: $(wc -l < "$out/m.jsonl") rows" ||
    bad "bench model --json: fewer than 4 rows"

if "$q" bench linear --N 96 --K 64 --M 1 --weights q8 --threads 1 --reps 3 --cold 1 > "$out/l.txt" 2>&1 &&
    grep -q "W cold: each call reads the next of the copies filling 1 MiB" "$out/l.txt" &&
    grep -qE "^  tiled +[0-9]" "$out/l.txt" && grep -qE "^  tiled-int8dot +[0-9]" "$out/l.txt"; then
    ok "bench linear --cold"
else bad "bench linear --cold"; cat "$out/l.txt"; fi

# bench deltarule --grad --pairs: the interleaved rounds give every backward a ratio and a % of peak
# (or say why not), and --pairs without --grad is refused
if "$q" bench deltarule --grad --shape custom:2,2,32,32 --T 64 --threads 1 --reps 2 --pairs 3 --counters none \
    > "$out/g.txt" 2>&1 && grep -q "^interleaved, 3 rounds" "$out/g.txt" &&
    [ "$(grep -cE "^  bwd:[a-z-]+ +[0-9.]+x the forward \[[0-9.]+, [0-9.]+\], ([0-9.]+% of the round's peak|% of peak: no FMA)" \
        "$out/g.txt")" -eq 3 ]; then
    ok "bench deltarule --grad --pairs"
else bad "bench deltarule --grad --pairs"; cat "$out/g.txt"; fi
if "$q" bench deltarule --pairs 3 > "$out/g2.txt" 2>&1 || ! grep -q -- "--pairs goes with --grad" "$out/g2.txt"; then
    bad "bench deltarule --pairs without --grad was not refused"; cat "$out/g2.txt"
else ok "bench deltarule --pairs without --grad refused"; fi

[ $fails -eq 0 ] && echo "bench: all passed" || { echo "bench: $fails failed"; exit 1; }
