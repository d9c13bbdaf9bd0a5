#!/usr/bin/env bash
# Quantized weights (issue 18, docs/quantization.md): re-creates results/quant_*.txt.
#
#   bench/run_quant.sh                 the speed figures (0.8B random checkpoint, bf16 vs q8 vs q4, pp512 and
#                                      tg32 at 2 threads) and the error study on the test checkpoints and the
#                                      0.8B random one
#   bench/run_quant.sh --speed         only the speed figures (they need a quiet machine; the error study does not)
#   bench/run_quant.sh --error DIR...  only the error study, on these checkpoints (a real one included: random
#                                      weights have no outliers, real ones do, so run it on yours)
#
# The error study is `validate --weights W --quant-only F --against full` per type W and family subset F:
# the reference path (ref/, double) on the unquantized weights against the default kernels on the quantized
# ones, teacher-forced, 3 prompts x 16 greedy steps: token match and max|dlogit| are the quantization's cost.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -n "${Q35LAB:-}" ] || make -s all
mkdir -p results
M=${MODELS:-build/models}

error_study() { # checkpoints...
    printf '%-48s %-5s %-10s %14s %12s %12s\n' checkpoint type families "token match" "max|dlogit|" margin
    for d in "$@"; do
        for w in q8 q4; do
            for f in all deltanet attention moe mlp lm_head; do
                out=$(${Q35LAB:-build/q35lab} validate --model "$d" --weights "$w" --quant-only "$f" --against full \
                      --impl default --steps "${STEPS:-16}" 2>&1)
                # families absent from a checkpoint (moe on a dense one, mlp on a MoE one) quantize nothing
                if grep -q "nothing quantized" <<<"$out"; then continue; fi
                row=$(grep -E '^linear=' <<<"$out" | head -1)
                [ -n "$row" ] || { echo "$d $w $f: $(tail -1 <<<"$out")" >&2; continue; }
                read -r _ pct cnt dl mg _ <<<"$row"
                printf '%-48s %-5s %-10s %6s %7s %12s %12s\n' "$d" "$w" "$f" "$pct" "$cnt" "$dl" "$mg"
            done
        done
    done
}

if [ "${1:-}" = "--error" ]; then
    shift
    error_study "$@"
    exit 0
fi

speed_only=0; [ "${1:-}" = "--speed" ] && speed_only=1
[ -f "$M/qwen3.5-0.8b-bf16/model.safetensors" ] ||
    ${Q35LAB:-build/q35lab} model init --preset qwen3.5-0.8b --seed 1 --dtype bf16 --out "$M/qwen3.5-0.8b-bf16" --force

# this host's own limits: % of peak and of bandwidth against them, not another machine's
${Q35LAB:-build/q35lab} calibrate --threads 2 --out results/quant_machine.json > /dev/null
{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; limits: results/quant_machine.json (q35lab calibrate --threads 2)"
    for w in bf16 q8 q4; do
        args=(); [ "$w" = bf16 ] || args=(--weights "$w")
        ${Q35LAB:-build/q35lab} bench model --model "$M/qwen3.5-0.8b-bf16" "${args[@]}" --prompt-len 512 --gen 32 --reps 3 \
            --threads 2 --machine results/quant_machine.json
        echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
} 2>&1 | tee results/quant_bench_0.8b.txt
[ "$speed_only" = 1 ] && exit 0

STEPS=8 error_study tests/data/model/hf-tiny-dense-bf16 tests/data/model/hf-tiny-moe-f32 \
    tests/data/model/hf-tiny-mtp-moe-bf16 ../shared/golden-samples/model/tiny-dense-f32 \
    "$M/qwen3.5-0.8b-bf16" | tee results/quant_error.txt
