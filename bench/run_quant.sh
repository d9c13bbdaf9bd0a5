#!/usr/bin/env bash
# Quantized weights (issue 18, docs/quantization.md): re-creates results/quant_*.txt.
#
#   bench/run_quant.sh                 the speed figures (0.8B random checkpoint, bf16 vs q8 vs q4, pp512 and
#                                      tg32 at 2 threads) and the error study on the test checkpoints, the 0.8B
#                                      and the 35B-A3B-shaped (4 layers) random ones: results/quant_error.txt + .png
#   bench/run_quant.sh --speed         only the speed figures (they need a quiet machine; the error study does not):
#                                      results/quant_bench_0.8b.txt (bench model: bf16, q8, q4, the quantized ones
#                                      also with the lossy integer-dot entries) and results/quant_linear.txt (bench
#                                      linear: M 1, 8, 512, exact against integer dots)
#   bench/run_quant.sh --error [--out PREFIX] DIR...
#                                      only the error study, on these checkpoints (a real one included: random
#                                      weights have no outliers, real ones do, so run it on yours): the table to
#                                      stdout and PREFIX.txt, the plot to PREFIX.png (default PREFIX:
#                                      build/quant_error)
#   bench/run_quant.sh --plot TABLE [PNG]  only the plot of an error-study table (default PNG: TABLE with .png)
#
# The error study is `validate --weights W --quant-only F --against full` per type W and family subset F:
# the reference path (ref/, double) on the unquantized weights against the default kernels on the quantized
# ones, teacher-forced, 3 prompts x STEPS greedy steps (default 16): token match and max|dlogit| are the
# quantization's cost.  Matrices stay in the file maps (--mmap), so the two copies of the unquantized weights
# are one in memory.  The reference path runs in double, one token at a time: about 2 minutes per row on the
# 35B-A3B-shaped 4-layer checkpoint, 1 on the 0.8B one (2 cores); a real 35B-A3B checkpoint (40 layers) takes
# ten times that: lower STEPS there.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -n "${Q35LAB:-}" ] || [ "${1:-}" = "--plot" ] || make -s all
mkdir -p results
M=${MODELS:-build/models}

error_study() { # checkpoints...
    printf '%-48s %-5s %-10s %14s %12s %12s\n' checkpoint type families "token match" "max|dlogit|" margin
    for d in "$@"; do
        [ -f "$d/config.json" ] || { echo "run_quant.sh: $d: no config.json (not a checkpoint folder)" >&2; continue; }
        # the feed-forward family the checkpoint has: moe (num_experts in its config) or mlp
        ff=mlp; grep -q '"num_experts"' "$d/config.json" && ff=moe
        for w in q8 q4; do
            for f in all deltanet attention "$ff" lm_head; do
                out=$(${Q35LAB:-build/q35lab} validate --model "$d" --mmap --weights "$w" --quant-only "$f" --against full \
                      --impl default --steps "${STEPS:-16}" 2>&1)
                if grep -q "nothing quantized" <<<"$out"; then continue; fi
                row=$(grep -E '^linear=' <<<"$out" | head -1)
                [ -n "$row" ] || { echo "$d $w $f: $(tail -1 <<<"$out")" >&2; continue; }
                read -r _ pct cnt dl mg _ <<<"$row"
                printf '%-48s %-5s %-10s %6s %7s %12s %12s\n' "$d" "$w" "$f" "$pct" "$cnt" "$dl" "$mg"
            done
        done
    done
}

error_header() { # steps
    echo "# bench/run_quant.sh --error (validate --mmap --weights W --quant-only F --against full --impl default, 3 prompts x $1 greedy steps, teacher-forced)"
    echo "# $(date -u +%FT%TZ), commit $(git describe --always --dirty 2>/dev/null || echo '?'), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# random weights have no outliers and real ones do (a few large weights per block stretch the scale and coarsen"
    echo "# every other weight of the block): on random checkpoints these rows are a lower bound on the cost; run it on a real one"
    echo "# the MoE router and shared-expert gate are never quantized (docs/quantization.md section 5): moe = the experts and the shared expert"
}

# The plot of an error-study table (stdout of error_study, '#' lines ignored) into a PNG: token match and
# max|dlogit| per family subset, q8 and q4 side by side, one panel per checkpoint.  gnuplot-nox.
error_plot() { # table png
    if ! command -v gnuplot > /dev/null; then
        echo "run_quant.sh: gnuplot not found: no plot written (apt-get install gnuplot-nox; bench/plot_quant_error.gp)" >&2
        return 1
    fi
    local dat; dat=$(mktemp) || return 1
    # one block per checkpoint (two blank lines apart): family, q8 match %, q4 match %, q8 max|dlogit|, q4 max|dlogit|
    awk '/^#/ || $1 == "checkpoint" || NF < 7 { next }
         { n = split($1, p, "/"); c = p[n]; if (!(c in seen)) { seen[c] = ++nc; name[nc] = c }
           k = c SUBSEP $3; if (!(k in fam)) { fam[k] = 1; nf[c]++; order[c, nf[c]] = $3 }
           pct = $4; sub(/%/, "", pct); m[k, $2] = pct; d[k, $2] = $(NF - 1) }
         END { for (i = 1; i <= nc; i++) { c = name[i]; print "# " c
                 for (j = 1; j <= nf[c]; j++) { f = order[c, j]; k = c SUBSEP f
                   printf "%s %s %s %s %s\n", f, (k SUBSEP "q8") in m ? m[k, "q8"] : "NaN", (k SUBSEP "q4") in m ? m[k, "q4"] : "NaN",
                          (k SUBSEP "q8") in d ? d[k, "q8"] : "NaN", (k SUBSEP "q4") in d ? d[k, "q4"] : "NaN" }
                 printf "\n\n" } }' "$1" > "$dat"
    local names; names=$(grep '^# ' "$dat" | cut -c3- | tr '\n' ' ')
    [ -n "$names" ] || { echo "run_quant.sh: $1 has no rows to plot" >&2; rm -f "$dat"; return 1; }
    gnuplot -e "datafile='$dat'; outfile='$2'; names='$names'" bench/plot_quant_error.gp
    local rc=$?
    rm -f "$dat"
    [ $rc = 0 ] && echo "run_quant.sh: plot written to $2" >&2
    return $rc
}

if [ "${1:-}" = "--plot" ]; then
    [ -f "${2:-}" ] || { echo "usage: bench/run_quant.sh --plot TABLE [PNG] (TABLE: an error-study table, e.g. results/quant_error.txt)" >&2; exit 2; }
    error_plot "$2" "${3:-${2%.txt}.png}"
    exit
fi

if [ "${1:-}" = "--error" ]; then
    shift
    out=build/quant_error
    if [ "${1:-}" = "--out" ]; then out=${2:?--out needs a PREFIX}; shift 2; fi
    [ $# -gt 0 ] || { echo "usage: bench/run_quant.sh --error [--out PREFIX] CHECKPOINT_DIR..." >&2; exit 2; }
    mkdir -p "$(dirname "$out")"
    { error_header "${STEPS:-16}"; error_study "$@"; } | tee "$out.txt"
    error_plot "$out.txt" "$out.png"
    exit 0
fi

speed_only=0; [ "${1:-}" = "--speed" ] && speed_only=1
[ -f "$M/qwen3.5-0.8b-bf16/model.safetensors" ] ||
    ${Q35LAB:-build/q35lab} model init --preset qwen3.5-0.8b --seed 1 --dtype bf16 --out "$M/qwen3.5-0.8b-bf16" --force

# this host's own limits: % of peak and of bandwidth against them, not another machine's
# (CALIBRATE=0 keeps results/quant_machine.json: a calibration under load understates the bandwidth)
[ "${CALIBRATE:-1}" = 0 ] || ${Q35LAB:-build/q35lab} calibrate --threads 2 --out results/quant_machine.json > /dev/null
{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; limits: results/quant_machine.json (q35lab calibrate --threads 2)"
    # the exact default, then (quantized weights) the lossy integer-dot entries, side by side
    for run in bf16 q8 "q8 int8dot" q4 "q4 int8dot"; do
        set -- $run
        args=(); [ "$1" = bf16 ] || args=(--weights "$1")
        [ "${2:-}" = int8dot ] && args+=(--impl "linear=tiled-int8dot,moe=grouped-int8dot")
        # --bw-probe: each repetition's steps also against the bandwidth probed just around them (the
        # calibration above is minutes older, and the host drifts)
        ${Q35LAB:-build/q35lab} bench model --model "$M/qwen3.5-0.8b-bf16" "${args[@]}" --prompt-len 512 --gen 32 --reps 3 \
            --threads 2 --machine results/quant_machine.json --bw-probe
        echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
} 2>&1 | tee results/quant_bench_0.8b.txt
# the linear family alone: decode (M 1), a verify window (M 8), prefill (M 512) on the 0.8B's in_proj_qkv and
# MLP down projection, exact widening against integer dots, 1 and 2 threads
{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    for nk in "6144 1024" "1024 3584"; do
        set -- $nk
        ${Q35LAB:-build/q35lab} bench linear --N "$1" --K "$2" --M 1,8,512 --weights bf16,q8,q4 --threads 1,2 \
            --impl tiled,tiled-int8dot --reps 10 --machine results/quant_machine.json
        echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
} 2>&1 | tee results/quant_linear.txt
[ "$speed_only" = 1 ] && exit 0

# the MoE shape: Qwen3.5-35B-A3B's layers (256 experts, top-8, hidden 2048), 4 of them (bench/run_model.sh's)
[ -f "$M/qwen3.5-35b-a3b-4l-bf16/model.safetensors" ] ||
    ${Q35LAB:-build/q35lab} model init --preset qwen3.5-35b-a3b --seed 1 --dtype bf16 --out "$M/qwen3.5-35b-a3b-4l-bf16" \
        --layers 4 --force
{
    error_header 16
    echo "# tiny test checkpoints: hidden 64-128, small top-1/top-2 margins"
    STEPS=16 error_study tests/data/model/hf-tiny-dense-bf16 tests/data/model/hf-tiny-moe-f32 \
        tests/data/model/hf-tiny-mtp-moe-bf16 ../shared/golden-samples/model/tiny-dense-f32
    echo
    echo "# 0.8B random checkpoint (model init --preset qwen3.5-0.8b --seed 1 --dtype bf16), 3 prompts x 4 greedy steps"
    STEPS=4 error_study "$M/qwen3.5-0.8b-bf16" | tail -n +2
    echo
    echo "# 35B-A3B-shaped random checkpoint (model init --preset qwen3.5-35b-a3b --seed 1 --dtype bf16 --layers 4), 3 prompts x 16 greedy steps"
    STEPS=16 error_study "$M/qwen3.5-35b-a3b-4l-bf16" | tail -n +2
} | tee results/quant_error.txt
error_plot results/quant_error.txt results/quant_error.png
