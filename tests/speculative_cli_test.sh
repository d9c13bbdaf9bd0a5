#!/usr/bin/env bash
# Speculative decoding and saved prefixes through the command line
# (docs/speculative.md, docs/state-file.md), run by make test:
#  - validate --speculative, N = 1..4, every draft source, on checkpoints
#    written by transformers (with their PyTorch goldens: the speculative
#    tokens must be PyTorch's) and by model init (dense and MoE, with MTP
#    heads), and under mpirun -np 2;
#  - generate --prompt-ids P --max-new 0 --save-state F, then
#    --load-state F --prompt-ids S prints the tokens of --prompt-ids P,S;
#  - refusals: mtp without an MTP head, a state file of another checkpoint
#    or another prefix batch, a truncated state file.
# Usage: tests/speculative_cli_test.sh BUILD_DIR   (from the project root, after make)
set -uo pipefail
build=${1:-build}
q=$build/q35lab
out=$build/speculative-test
rm -rf "$out" && mkdir -p "$out"
fails=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fails=$((fails + 1)); }

# 1. validate --speculative (exit 0 only if every token matches)
gold=tests/data/model
"$q" model init --preset tiny-dense --seed 3 --dtype f32 --out "$out/tiny-dense" --force > /dev/null 2>&1
"$q" model init --preset tiny-moe --seed 4 --dtype bf16 --out "$out/tiny-moe" --force > /dev/null 2>&1
run_validate() { # label, then validate's arguments
    local label=$1; shift
    if "$q" validate "$@" --threads 1 > "$out/v.txt" 2>&1; then ok "$label: $(tail -n 1 "$out/v.txt")"
    else bad "$label"; cat "$out/v.txt"; fi
}
for src in oracle:0.6 ngram; do
    run_validate "hf-tiny-dense-bf16 golden, $src" --model $gold/hf-tiny-dense-bf16 --speculative $src \
        --golden $gold/hf-tiny-dense-bf16.golden.safetensors
    run_validate "hf-tiny-moe-f32 golden, $src" --model $gold/hf-tiny-moe-f32 --speculative $src \
        --golden $gold/hf-tiny-moe-f32.golden.safetensors --steps 8
done
for m in tiny-dense tiny-moe; do
    for src in mtp oracle:0.8; do
        run_validate "$m, $src" --model "$out/$m" --speculative $src --prompt-ids "3,1,4,1,5,9,2,6;5,3,5" --steps 12
    done
done
for k in dense moe; do
    run_validate "hf-tiny-mtp-$k-bf16 (transformers' MTP tensors), mtp" --model $gold/hf-tiny-mtp-$k-bf16 \
        --speculative mtp --prompt-ids "1,2,3,4;9,8" --steps 10
done
if command -v mpirun > /dev/null 2>&1; then
    mp=(mpirun --oversubscribe --mca mpi_yield_when_idle 1)
    [ "$(id -u)" = 0 ] && mp+=(--allow-run-as-root)
    # the sanitizer build: see tests/tp_test.sh for why the ranks run without LeakSanitizer
    if ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "${mp[@]}" -np 2 "$q" validate --model "$out/tiny-moe" \
        --speculative mtp --draft 3 --prompt-ids "3,1,4,1,5;5,3" --steps 10 --threads 1 > "$out/v.txt" 2>&1; then
        ok "tiny-moe, mtp, 2 ranks: $(tail -n 1 "$out/v.txt")"
    else bad "tiny-moe, mtp, 2 ranks"; cat "$out/v.txt"; fi
else
    echo "  skip the 2-rank run: mpirun is missing"
fi

# 2. saved prefixes: prefix + suffix from a file = from scratch
m="$out/tiny-dense"
tokens() { grep '^tokens' | tr '\n' ' '; }
"$q" generate --model "$m" --prompt-ids "7,1,8,2,8,1,8,2,8;4,5,9" --max-new 0 --save-state "$out/prefix.st" > /dev/null 2>&1 \
    || bad "save-state"
a=$("$q" generate --model "$m" --load-state "$out/prefix.st" --prompt-ids "4,5,9,0,4;5" --max-new 10 2>/dev/null | tokens)
b=$("$q" generate --model "$m" --prompt-ids "7,1,8,2,8,1,8,2,8,4,5,9,0,4;4,5,9,5" --max-new 10 2>/dev/null | tokens)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "load-state + suffix = prefix + suffix from scratch (batch of 2)"
else bad "load-state: '$a' vs '$b'"; fi
c=$("$q" generate --model "$m" --load-state "$out/prefix.st" --prompt-ids "4,5,9,0,4;5" --max-new 10 \
      --speculative oracle:0.5 --draft 3 2>/dev/null | tokens)
if [ "$c" = "$b" ]; then ok "load-state + speculative oracle:0.5 = the same tokens"; else bad "load-state + speculative: '$c'"; fi

# 3. refusals: exit 2 and a message naming the cause
refuse() { # label, pattern, then generate's arguments
    local label=$1 pat=$2; shift 2
    "$q" generate "$@" > "$out/r.txt" 2>&1
    local rc=$?
    if [ $rc = 2 ] && grep -qi -- "$pat" "$out/r.txt"; then ok "refused: $label"
    else bad "$label (exit $rc)"; cat "$out/r.txt"; fi
}
refuse "mtp without an MTP head" "no MTP head" --model $gold/hf-tiny-dense-bf16 --prompt-ids 1,2 --speculative mtp
refuse "a state file of another checkpoint" "fingerprint\|checkpoint\|config" --model "$out/tiny-moe" \
    --load-state "$out/prefix.st" --prompt-ids 1
refuse "a state file for another batch" "sequence" --model "$m" --load-state "$out/prefix.st" --prompt-ids 1
head -c 4000 "$out/prefix.st" > "$out/truncated.st"
refuse "a truncated state file" "truncated.st" --model "$m" --load-state "$out/truncated.st" --prompt-ids "1;2"
refuse "--save-state with --max-new > 0" "max-new 0" --model "$m" --prompt-ids 1 --save-state "$out/x.st"

if [ $fails -gt 0 ]; then echo "speculative: $fails FAILED"; exit 1; fi
echo "speculative: all passed"
