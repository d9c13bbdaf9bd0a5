#!/usr/bin/env bash
# Interleaved A/B of two argument sets of one q35lab `bench model --bw-probe` (bench/ab.sh compares
# two commits; this compares two options of the same binary, e.g. --weights q4_0 against q4).
# Alternates A and B for ROUNDS rounds, then groups every repetition's step / probed bound by where
# its threads sat, since on a host whose read bandwidth jumps between two levels (docs/calibrate.md
# "Thread hand-off") a median over both compares moments, not options:
#   near / apart: the threads' hand-off round trip (2 threads or more) below / above 2x the smallest
#   of the run ("one placement" when none is above); without hand-offs (1 thread), lo / hi: both
#   bandwidth probes below / above SPLIT GB/s.
#   MOVED repetitions (probes >10% apart, or the threads moved) are left out.
#
#   bash bench/ab_args.sh ROUNDS "A-ARGS" "B-ARGS" -- bench model --model DIR ... --bw-probe
#   e.g. bash bench/ab_args.sh 3 "--weights q4_0" "--weights q4" -- bench model \
#          --model $PWD/build/models/qwen3.5-0.8b-bf16 --impl linear=tiled-int8dot --prompt-len 64 --gen 32 \
#          --reps 3 --threads 2 --bw-probe
#
# Environment: Q35LAB (default build/q35lab), Q35LAB_B (side B's binary, default Q35LAB: bench/ab.sh
# sets both to compare two commits), SPLIT (default 45 GB/s).  Prints each run's repetition lines as
# they come, then per side and level: n, step / bound median [min, max], step median.
set -euo pipefail
[ $# -ge 5 ] && [ "$4" = "--" ] || { echo "usage: $0 ROUNDS \"A-ARGS\" \"B-ARGS\" -- q35lab-args... --bw-probe" >&2; exit 2; }
rounds=$1 a_args=$2 b_args=$3
shift 4
case "$rounds" in ''|*[!0-9]*|0) echo "ab_args.sh: ROUNDS must be a positive integer" >&2; exit 2 ;; esac
case " $* " in *" --bw-probe "*) ;; *) echo "ab_args.sh: the command needs --bw-probe (its lines are what is compared)" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
bin_a=${Q35LAB:-$root/build/q35lab}
bin_b=${Q35LAB_B:-$bin_a}
[ -x "$bin_a" ] || make -s -C "$root" build/q35lab >&2
[ -x "$bin_b" ] || { echo "ab_args.sh: Q35LAB_B=$bin_b is not an executable" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 1; i <= rounds; i++)); do
    for side in A B; do
        if [ $side = A ]; then args=$a_args bin=$bin_a; else args=$b_args bin=$bin_b; fi
        echo "=== round $i side $side ($args) $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
        # shellcheck disable=SC2086 # the argument sets are word lists
        "$bin" "$@" $args --csv "$tmp/x.csv" --json "$tmp/x.json" 2>&1 | grep -E "rep [0-9]+: step median" |
            sed "s/^ */$side /" | tee -a "$tmp/reps.txt"
    done
done
echo "=== step / probed bound per side and placement of the threads (or bandwidth level, split ${SPLIT:-45} GB/s; A: $a_args; B: $b_args)"
SPLIT=${SPLIT:-45} python3 - "$tmp/reps.txt" <<'PY'
import os, re, sys, statistics as st
split = float(os.environ["SPLIT"])
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"(\S) rep \d+: step median ([\d.]+) ms; probe ([\d.]+) / ([\d.]+) GB/s"
                 r"(?:, hand-off ([\d.]+) / ([\d.]+) ns)?; .*; ([\d.]+)x(.*)", line)
    if m and "MOVED" not in m.group(8):
        rows.append(m)
hand = [float(m.group(i)) for m in rows if m.group(5) for i in (5, 6)]
hmin = min(hand) if hand else 0
two = bool(hand) and max(hand) > 2 * hmin  # both placements seen: else no name for the one there was
groups = {}
for m in rows:
    p1, p2 = float(m.group(3)), float(m.group(4))
    if m.group(5):
        apart = (float(m.group(5)) + float(m.group(6))) / 2 > 2 * hmin
        level = ("apart" if apart else "near") if two else f"one placement, hand-off {hmin:.0f}-{max(hand):.0f} ns"
    elif min(p1, p2) > split: level = "hi"
    elif max(p1, p2) < split: level = "lo"
    else: continue
    groups.setdefault((level, m.group(1)), []).append((float(m.group(7)), float(m.group(2))))
for (level, side), v in sorted(groups.items()):
    r = [x[0] for x in v]
    print(f"{level} {side}: n={len(v)}  step/bound median {st.median(r):.3f}x [{min(r):.3f}, {max(r):.3f}]  "
          f"step median {st.median(x[1] for x in v):.2f} ms")
PY
