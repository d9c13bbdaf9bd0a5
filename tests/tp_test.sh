#!/usr/bin/env bash
# Tensor parallelism proven token for token (docs/tp.md), run by make test:
#  - validate --golden under mpirun -np 2 and -np 4 on every checkpoint the
#    tests use (goldens from PyTorch) and on the ones model init writes
#    (goldens of the reference path, q35lab golden model: dense and MoE, BF16
#    and F32, fused and per-expert experts, tied and untied heads, flat and
#    nested configs; MoE with --moe-shard tp and ep), and at -np 3 on the odd
#    presets, whose vocabulary, intermediate sizes and experts split unevenly:
#    the reference path reproduces the golden, every rank count matches the
#    reference's tokens 100%, and its logits are within 1e-4 + 1e-4 max|logit|
#    of the same combination's in one process (validate fails otherwise; both
#    printed);
#  - generate prints the same tokens in 1, 2 and 4 processes;
#  - the wrong splits kept as mutants (a contiguous cut of in_proj_qkv; value
#    heads without their key heads) change the tokens: the right splits are
#    necessary, not assumed;
#  - heads that do not split over the ranks give one clear message per rank
#    and every rank exits, within a time limit (no rank left waiting).
# Usage: tests/tp_test.sh BUILD_DIR   (from the project root, after make)
set -uo pipefail
build=${1:-build}
q=$build/q35lab
if ! command -v mpirun >/dev/null 2>&1; then
    echo "tp: mpirun is missing (debian-packages.txt: openmpi-bin): tensor-parallel tests NOT run"
    exit 1
fi
# More ranks than cores, yielding while idle; one thread per rank (4 ranks
# already oversubscribe a 2-core machine).  In the sanitizer build the ranks
# run without LeakSanitizer: Open MPI's dlopen'ed components keep memory to
# the end of the process, in frames LSan cannot name, so no suppression list
# can hold them; ASan's and UBSan's checks stay on, and the one-process runs
# here keep leak detection (make memcheck covers leaks without MPI).
mp=(mpirun --oversubscribe --mca mpi_yield_when_idle 1 -x OMP_NUM_THREADS=1 -x "ASAN_OPTIONS=detect_leaks=0")
[ "$(id -u)" = 0 ] && mp+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "tp: FAIL: $*"; fails=$((fails + 1)); }

# --- checkpoints: the committed ones (goldens from PyTorch), and model init's
# variants with goldens of the reference path (q35lab golden model) ---
models=(tests/data/model/hf-tiny-dense-bf16 tests/data/model/hf-tiny-moe-f32 ../shared/golden-samples/model/tiny-dense-f32)
for v in "tiny-dense bf16 fused" "tiny-dense f32 fused" "tiny-moe bf16 fused" "tiny-moe f32 per-expert" \
         "tiny-odd-dense bf16 fused" "tiny-odd-moe f32 per-expert"; do
    set -- $v
    d=$work/$1-$2-$3
    "$q" model init --preset "$1" --dtype "$2" --experts "$3" --seed 7 --out "$d" >/dev/null 2>&1 || fail "model init $v"
    "$q" golden model --model "$d" --out "$d.golden.safetensors" --steps 6 >/dev/null || fail "golden model $v"
    models+=("$d")
done

# validate under N ranks: the reference path (rank 0, whole model) against the
# golden when there is one, every combination against the reference
check() { # model ranks [extra args]
    local m=$1 n=$2 out=$work/out.txt
    shift 2
    local golden=()
    [ -f "$m.golden.safetensors" ] && golden=(--golden "$m.golden.safetensors")
    timeout 300 "${mp[@]}" -np "$n" "$q" validate --model "$m" "${golden[@]}" --steps 6 \
        --impl "default;deltarule=chunked,moe=per_token" "$@" >"$out" 2>&1
    local rc=$?
    local line
    line=$(grep '^validate: ' "$out" | tail -n 1)
    if [ $rc -ne 0 ] || ! grep -q 'PASS' <<<"$line"; then
        fail "validate $m -np $n $*: exit $rc"; tail -n 8 "$out"
    else
        echo "tp: $(basename "$m") -np $n $*: 100% token match; max|dlogit| against the reference" \
             "$(grep -o 'worst max|dlogit| [0-9.e+-]*' <<<"$line" | grep -o '[0-9.e+-]*$'), against one process" \
             "$(grep -o 'in one process: [0-9.e+-]*' <<<"$line" | grep -o '[0-9.e+-]*$')"
    fi
}
for m in "${models[@]}"; do
    moe=0
    grep -q num_experts "$m/config.json" && moe=1
    ranks="2 4"
    # heads of 3s: 3 ranks, with the vocabulary, intermediate sizes and experts split unevenly
    case $m in *tiny-odd*) ranks=3 ;; esac
    for n in $ranks; do
        if [ $moe = 1 ]; then
            check "$m" "$n" --moe-shard tp
            check "$m" "$n" --moe-shard ep
        else
            check "$m" "$n"
        fi
    done
done

# quantized weights (--weights; docs/quantization.md §5): each rank quantizes its own slices, which
# are exactly one process's blocks when every input-dimension split falls on a 32-weight boundary;
# the reference path quantizes the whole model on rank 0, so 100% and the one-process comparison
# prove the slices' blocks equal
qcheck() { # model ranks [extra args]
    local m=$1 n=$2 out=$work/qout.txt
    shift 2
    timeout 300 "${mp[@]}" -np "$n" "$q" validate --model "$m" --steps 6 --impl "default;linear=ref" "$@" >"$out" 2>&1
    local rc=$? line
    line=$(grep '^validate: ' "$out" | tail -n 1)
    if [ $rc -ne 0 ] || ! grep -q 'PASS' <<<"$line" || ! grep -q 'q[48]_0' "$out"; then
        fail "validate $m -np $n $*: exit $rc"; tail -n 8 "$out"
    else
        echo "tp: $(basename "$m") -np $n $*: 100% token match; against one process" \
             "$(grep -o 'in one process: [0-9.e+-]*' <<<"$line" | grep -o '[0-9.e+-]*$')"
    fi
}
qcheck tests/data/model/hf-tiny-dense-bf16 2 --weights q8
qcheck tests/data/model/hf-tiny-dense-bf16 4 --weights q4
qcheck tests/data/model/hf-tiny-moe-f32 2 --weights q8 --quant-only deltanet,attention,lm_head --moe-shard tp
# expert parallelism: each rank's expert matrices hold only its experts (model init's tiny-moe: 16 experts,
# intermediate 64, so the tensor-parallel split falls on a block boundary too)
qcheck "$work/tiny-moe-bf16-fused" 2 --weights q4_0 --moe-shard ep
qcheck "$work/tiny-moe-bf16-fused" 2 --weights q8_0 --moe-shard tp
# the experts with 16 rows interleaved (docs/quantization.md §8), sliced by experts and by rows
qcheck "$work/tiny-moe-bf16-fused" 2 --weights q4 --moe-shard ep
qcheck "$work/tiny-moe-bf16-fused" 2 --weights q8 --moe-shard tp
# a split off the block boundaries (the tiny MoE's 32-wide expert intermediate over 2 ranks) is
# refused by every rank, naming the matrix, and nobody waits
out=$work/qsplit.txt
timeout 120 "${mp[@]}" -np 2 "$q" validate --model tests/data/model/hf-tiny-moe-f32 --weights q4 --steps 2 >"$out" 2>&1
rc=$?
n=$(grep -c 'not on 32-weight block boundaries' "$out")
if [ $rc -ne 124 ] && [ $rc -ne 0 ] && [ "$n" -eq 2 ]; then
    echo "tp: --weights q4 with the expert intermediate split at 16: every rank refuses and exits"
else
    fail "--weights q4 split off block boundaries: exit $rc, $n rank messages (want 2)"; cat "$out"
fi

# generate: the same tokens in 1, 2 and 4 processes (the MoE one expert-parallel too)
for m in tests/data/model/hf-tiny-moe-f32 "$work/tiny-dense-bf16-fused" "$work/tiny-odd-moe-f32-per-expert"; do
    want=$("$q" generate --model "$m" --prompt-ids "3,1,4,1,5;9,2,6" --max-new 10 2>/dev/null | grep '^tokens')
    runs=("-np 2" "-np 4" "-np 2 --moe-shard ep")
    case $m in *tiny-odd*) runs=("-np 3" "-np 3 --moe-shard ep") ;; esac
    for run in "${runs[@]}"; do
        set -- $run
        got=$(timeout 300 "${mp[@]}" "$1" "$2" "$q" generate --model "$m" --prompt-ids "3,1,4,1,5;9,2,6" --max-new 10 \
              "${@:3}" 2>/dev/null | grep '^tokens')
        [ -n "$want" ] && [ "$got" = "$want" ] || fail "generate $m $run: tokens differ from one process"
    done
done
echo "tp: generate: the same tokens in 1, 2, 3 and 4 processes"

# mutants: each wrong split must change the tokens (validate fails with exit 1)
for mutant in contiguous-qkv no-key-heads; do
    m=tests/data/model/hf-tiny-dense-bf16
    out=$work/mutant.txt
    timeout 300 "${mp[@]}" -np 2 "$q" validate --model "$m" --steps 6 --impl default --tp-mutant "$mutant" >"$out" 2>&1
    rc=$?
    match=$(grep -o '[0-9.]*% ([0-9]*/[0-9]*)' "$out" | head -n 1)
    if [ $rc -eq 1 ] && grep -q 'MISMATCH' "$out"; then
        echo "tp: mutant $mutant: tokens change ($match token match): the right split is necessary"
    else
        fail "mutant $mutant did not change the tokens (exit $rc)"; tail -n 5 "$out"
    fi
done

# heads that do not split: one message per rank, every rank exits, no hang
out=$work/split.txt
timeout 120 "${mp[@]}" -np 3 "$q" generate --model tests/data/model/hf-tiny-dense-bf16 --prompt-ids 1,2 --max-new 1 \
    >"$out" 2>&1
rc=$?
n=$(grep -c 'do not split over 3 ranks' "$out")
if [ $rc -ne 124 ] && [ $rc -ne 0 ] && [ "$n" -eq 3 ]; then
    echo "tp: 3 ranks on 4 value heads: every rank says '$(grep -o 'layers[^:]*: [^(]*heads' "$out" | head -n 1)' and exits"
else
    fail "3 ranks on 4 value heads: exit $rc, $n rank messages (want 3)"; cat "$out"
fi

if [ $fails -ne 0 ]; then
    echo "tp: $fails failure(s)"
    exit 1
fi
echo "tp: every tensor-parallel check passed"
