#!/usr/bin/env bash
# Re-creates the end-to-end model measurements committed in results/ (about
# 10 minutes on 2 cores; writes ~11 GiB of random checkpoints under
# build/models/ and needs ~10 GiB of memory for the 35B-A3B-shaped one).
# Run bench/run_deltarule.sh first (or `build/q35lab calibrate --out results/machine.json`) for the limits.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
mkdir -p results
M=${MODELS:-build/models}
[ -f results/machine.json ] || build/q35lab calibrate --out results/machine.json | tee results/machine.txt

ckpt() { # preset dtype dir [extra init args]
    [ -f "$3/model.safetensors" ] || build/q35lab model init --preset "$1" --seed 1 --dtype "$2" --out "$3" --force "${@:4}"
}
ckpt qwen3.5-0.8b bf16 "$M/qwen3.5-0.8b-bf16"
ckpt qwen3.5-0.8b f32 "$M/qwen3.5-0.8b-f32"
ckpt qwen3.5-35b-a3b bf16 "$M/qwen3.5-35b-a3b-4l-bf16" --layers 4

run() { # name model-dir [bench args]
    rm -f "results/model_$1".*
    build/q35lab bench model --model "$2" --csv "results/model_$1.csv" --json "results/model_$1.jsonl" "${@:3}" \
        | tee "results/model_$1.txt"
}
# The issue's prompt lengths (llama.cpp's pp512 / tg32 anchor), 1 and 2 threads.
run 0.8b_bf16 "$M/qwen3.5-0.8b-bf16" --prompt-len 128,512 --gen 32 --reps 3 --threads 1,2
run 0.8b_f32 "$M/qwen3.5-0.8b-f32" --prompt-len 512 --gen 32 --reps 3 --threads 2
run 35b_a3b_4l_bf16 "$M/qwen3.5-35b-a3b-4l-bf16" --prompt-len 128,512 --gen 32 --reps 3 --threads 2
