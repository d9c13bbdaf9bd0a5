#!/usr/bin/env bash
# Re-creates the MoE measurements committed in results/ (about 10 minutes on
# 2 cores; needs ~4 GiB for the 35B-A3B-shaped expert weights).  Run
# bench/run_deltarule.sh first (or `build/q35lab calibrate --out results/machine.json`) for the limits.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
mkdir -p results
rm -f results/moe_35b.* results/moe_35b_skew.*
[ -f results/machine.json ] || build/q35lab calibrate --out results/machine.json | tee results/machine.txt

# Decode and prefill, 35B-A3B shape, bf16 (how checkpoints ship) and fp32 weights.
build/q35lab bench moe --shape qwen3.5-35b-a3b --T 1,8,128,512,2048 --dtype bf16,f32 --threads 2 --reps 3 \
    --csv results/moe_35b.csv --json results/moe_35b.jsonl | tee results/moe_35b.txt

# A skewed router: most tokens to a few experts.
build/q35lab bench moe --shape qwen3.5-35b-a3b --T 512 --dtype bf16 --threads 2 --reps 3 --skew 0.9 \
    --csv results/moe_35b_skew.csv --json results/moe_35b_skew.jsonl | tee results/moe_35b_skew.txt

make -s plots
