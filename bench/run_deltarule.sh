#!/usr/bin/env bash
# Re-creates the delta-rule measurements committed in results/: machine
# limits, warm and cold benches, chunk sizes, error against T, plots.
# About 6 minutes on 2 cores.  Run it on a quiet machine: every bench marks
# repetitions during which other processes used more than 10% of the CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
mkdir -p results
rm -f results/deltarule_warm.* results/deltarule_decode.* results/deltarule_cold.* results/deltarule_chunks.* results/deltarule_error_vs_T.csv

build/q35lab calibrate --out results/machine.json | tee results/machine.txt

# Prefill and decode, state warm; also measures auto's crossover for this shape.
build/q35lab bench deltarule --shape qwen3.5-0.8b --T 1,64,512,2048,8192 --threads 1,2 --reps 10 \
    --crossover results/deltarule_crossover.json \
    --csv results/deltarule_warm.csv --json results/deltarule_warm.jsonl | tee results/deltarule_warm.txt

# Decode, state warm, with enough repetitions for a median of a ~30 us call (the sweep
# above runs 10; the host's noise moves those by tens of percent).
build/q35lab bench deltarule --shape qwen3.5-0.8b --T 1 --threads 1,2 --reps 5000 --impl recurrent,auto \
    --csv results/deltarule_decode.csv --json results/deltarule_decode.jsonl | tee results/deltarule_decode.txt

# Decode with the state rotating over the 18 DeltaNet layers of Qwen3.5-0.8B (not in cache).
build/q35lab bench deltarule --shape qwen3.5-0.8b --T 1 --threads 1,2 --reps 100 --cold \
    --impl recurrent,chunked --csv results/deltarule_cold.csv --json results/deltarule_cold.jsonl \
    | tee results/deltarule_cold.txt

# What each intra-chunk solver costs per chunk size (same problem, one run).
build/q35lab bench deltarule --shape qwen3.5-0.8b --T 2048 --threads 2 --reps 5 --chunk 16,32,64 \
    --impl chunked,chunked-blocked,neumann,neumann-dense --counters none \
    --csv results/deltarule_chunks.csv --json results/deltarule_chunks.jsonl | tee results/deltarule_chunks.txt

# Accuracy against T, every implementation, against the double reference.
build/q35lab check deltarule --error-vs-T 1,16,64,256,1024,4096 --csv results/deltarule_error_vs_T.csv

make -s plots
