#!/usr/bin/env bash
# Re-creates the tensor-parallel measurements committed in results/ (docs/tp.md):
# this machine's limits, the all-reduce sweep and its alpha-beta fit, and
# 2 ranks x 1 thread against 1 rank x 2 threads on Qwen3.5-0.8B (BF16) and
# the 35B-A3B shape cut to 4 layers (BF16), prompt 512 and decode, the two
# alternating, ROUNDS times each (default 3).  About 15 minutes on 2 cores;
# writes ~10 GiB of random checkpoints under build/models/ (MODELS=...).
# Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
mkdir -p results
M=${MODELS:-build/models}
ROUNDS=${ROUNDS:-3}
MP=(mpirun --bind-to core)
[ "$(id -u)" = 0 ] && MP+=(--allow-run-as-root)
rm -f results/tp_*

build/q35lab calibrate --out results/tp_machine.json | tee results/tp_machine.txt
"${MP[@]}" -np 2 build/q35lab bench comm | tee results/tp_comm.txt

ckpt() { # preset dir [extra init args]
    [ -f "$2/model.safetensors" ] || build/q35lab model init --preset "$1" --seed 1 --dtype bf16 --out "$2" --force "${@:3}"
}
ckpt qwen3.5-0.8b "$M/qwen3.5-0.8b-bf16"
ckpt qwen3.5-35b-a3b "$M/qwen3.5-35b-a3b-4l-bf16" --layers 4

# one model, one configuration, one round: appended to results/tp_<name>.{txt,csv,jsonl}
run() { # name model-dir ranks threads [bench model options]
    local out=results/tp_$1 args=(bench model --model "$2" --prompt-len 512 --gen 32 --reps 3 --threads "$4"
                                  --machine results/tp_machine.json --csv "results/tp_$1.csv" --json "results/tp_$1.jsonl"
                                  "${@:5}")
    echo "== $1: $3 rank(s) x $4 thread(s)" | tee -a "$out.txt"
    if [ "$3" = 1 ]; then build/q35lab "${args[@]}" | tee -a "$out.txt"
    else "${MP[@]}" -np "$3" build/q35lab "${args[@]}" | tee -a "$out.txt"; fi
}
for r in $(seq "$ROUNDS"); do
    for m in "0.8b_bf16 $M/qwen3.5-0.8b-bf16" "35b_a3b_4l_bf16 $M/qwen3.5-35b-a3b-4l-bf16"; do
        set -- $m
        run "$1" "$2" 1 2
        run "$1" "$2" 2 1
    done
done
# the expert-parallel split of the MoE, once
run 35b_a3b_4l_bf16_ep "$M/qwen3.5-35b-a3b-4l-bf16" 2 1 --moe-shard ep
