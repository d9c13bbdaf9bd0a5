#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, two at a time,
# from seed corpora made of the committed test data; fails if any target
# crashes, leaks, times out or breaks a promise.  Each target first replays
# the minimized inputs of earlier findings (tests/data/bad/<target>-*).
# Usage (from the project root, after `make FUZZ=1 fuzz-bins`):
#   tests/fuzz/run.sh SECONDS [target ...]        e.g. tests/fuzz/run.sh 60 fuzz_config
#   FUZZ_RUNS=10000000 tests/fuzz/run.sh 0        each target for that many executions
# Findings go to build-fuzz/findings/<target>-crash-*; minimize one with
#   build-fuzz/fuzz/<target> -minimize_crash=1 -runs=100000 FILE
# and commit it as tests/data/bad/<target>-<what>.bin with a test that gives
# the named error (tests/test_bad_inputs.c).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?usage: tests/fuzz/run.sh SECONDS [target ...]}
shift
out=build-fuzz
bins=$out/fuzz
targets=${*:-$(cd $bins && ls fuzz_*)}
seeds=$out/seeds
mkdir -p $out/findings $out/logs

# Seeds: the committed files each reader is meant for (small ones whole,
# large ones cut to -max_len by libFuzzer), plus tiny golden files written
# by q35lab itself, whose inputs libFuzzer mutates fastest.
rm -rf $seeds && mkdir -p $seeds/st $seeds/config $seeds/golden_dr $seeds/golden_moe $seeds/golden_model $seeds/results \
    $seeds/state
make -s build/q35lab >/dev/null
build/q35lab golden deltarule --out $seeds/golden_dr/tiny_dr.safetensors --B 2 --T 3 --Hk 1 --Hv 2 --Dk 4 --Dv 4 \
    --initial-state --seq-len >/dev/null
build/q35lab golden moe --out $seeds/golden_moe/tiny_moe.safetensors --T 2 --hidden 8 --E 4 --k 2 --I 4 --Is 4 >/dev/null
cp tests/data/*.safetensors ../shared/golden-samples/deltarule/*.safetensors $seeds/golden_dr/
cp ../shared/golden-samples/moe/*.safetensors $seeds/golden_moe/
cp tests/data/model/*.golden.safetensors ../shared/golden-samples/model/*.golden.safetensors $seeds/golden_model/
cp $seeds/golden_dr/* $seeds/golden_moe/* ../shared/golden-samples/deltarule_grad/*.safetensors $seeds/st/
for d in tests/data/model/*/ ../shared/golden-samples/model/*/; do cp "$d/config.json" "$seeds/config/$(basename "$d").json"; done
cp results/*.json tests/fuzz/seeds/results_json/* $seeds/results/ 2>/dev/null || true
# saved states of the checkpoint fuzz_state_file reads them for: one sequence, and a padded batch
build/q35lab generate --model tests/data/model/hf-tiny-dense-bf16 --prompt-ids 1,2,3 --max-new 0 \
    --save-state $seeds/state/one.safetensors >/dev/null 2>&1
build/q35lab generate --model tests/data/model/hf-tiny-dense-bf16 --prompt-ids "4,5,6,7;8" --max-new 0 \
    --save-state $seeds/state/two.safetensors >/dev/null 2>&1

seed_dirs() {
    case $1 in
    fuzz_safetensors) echo "$seeds/st" ;;
    fuzz_config) echo "$seeds/config" ;;
    fuzz_index) echo "tests/fuzz/seeds/index" ;;
    fuzz_golden_deltarule) echo "$seeds/golden_dr" ;;
    fuzz_golden_moe) echo "$seeds/golden_moe" ;;
    fuzz_golden_model) echo "$seeds/golden_model" ;;
    fuzz_results_json) echo "$seeds/results" ;;
    fuzz_state_file) echo "$seeds/state" ;;
    fuzz_tokenizer_json) echo "tests/fuzz/seeds/tokenizer_json" ;;
    *) echo "" ;;
    esac
}
max_len() {
    case $1 in
    fuzz_config | fuzz_index | fuzz_results_json) echo 16384 ;;
    fuzz_golden_moe) echo 131072 ;;
    *) echo 65536 ;;
    esac
}

run_one() {
    local t=$1 log=$out/logs/$1.log corpus=$out/corpus/$1
    mkdir -p "$corpus"
    local bad=(tests/data/bad/"$t"-*)
    if [ -e "${bad[0]}" ] && ! $bins/$t "${bad[@]}" >"$log" 2>&1; then
        echo "fuzz: $t: a committed finding fails again:"; tail -n 30 "$log"; return 1
    fi
    local limit=(-max_total_time="$secs")
    [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
    if $bins/$t "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix=$out/findings/"$t"- "$corpus" $(seed_dirs "$t") >"$log" 2>&1; then
        echo "fuzz: $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions" \
             "in $SECONDS s, corpus $(ls "$corpus" | wc -l) inputs, no finding"
    else
        echo "fuzz: $t: FINDING (log $log):"; grep -E 'ERROR|promise|SUMMARY|Test unit written' "$log" | head -n 20
        return 1
    fi
}
export -f run_one seed_dirs max_len
export out bins seeds secs FUZZ_RUNS
status=0
printf '%s\n' $targets | xargs -P "$(nproc)" -I{} bash -c 'run_one {}' || status=1
exit $status
