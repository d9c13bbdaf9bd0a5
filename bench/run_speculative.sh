#!/usr/bin/env bash
# Re-creates results/speculative_* (docs/speculative.md): on Qwen3.5-0.8B's
# shape (random BF16 weights with an MTP head, `model init`), 2 threads:
#  1. decode speed-up of speculative decoding against plain greedy as a
#     function of the acceptance rate P (oracle:P) for N = 1..4 drafts, both
#     measured side by side in one `generate` run (same tokens, checked);
#  2. the MTP head's cost per draft token (its acceptance on random weights
#     means nothing: only its time is measured);
#  3. a saved prefix of 512 and 4096 tokens: save, then load + a 16-token
#     suffix, against prefilling prefix + suffix from scratch; the file size.
# PARTS="1 2 3" (default) picks which.  About 15 minutes on 2 cores; writes ~1.5 GiB of checkpoint and ~0.2 GiB of
# state files under build/models/ (MODELS=...).  Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
mkdir -p results
M=${MODELS:-build/models}/qwen3.5-0.8b-bf16
NEW=${NEW:-64}
THREADS=${THREADS:-2}
PARTS=${PARTS:-1 2 3}
part() { [[ " $PARTS " == *" $1 "* ]]; }
# an MTP head is needed (part 2): checkpoints from before model init wrote mtp.* are made again
grep -q '"mtp.fc.weight"' "$M/model.safetensors" 2>/dev/null || rm -rf "$M"
[ -f "$M/model.safetensors" ] || build/q35lab model init --preset qwen3.5-0.8b --seed 1 --dtype bf16 --out "$M" --force
host() {
    echo "# host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cpus"
    echo "# flags: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; commit $(git rev-parse --short HEAD)"
}
ids() { seq -s, "$2" $(( $2 + $1 - 1 )); } # n first: n consecutive token ids
PROMPT=$(ids 32 100)

# 1. oracle sweep
csv=results/speculative_oracle.csv
if part 1; then
{ host; echo "# bench/run_speculative.sh: generate --model $M --prompt-ids (32 tokens) --max-new $NEW --threads $THREADS --speculative oracle:P --draft N"
  echo "P,N,speedup,tokens_per_step,accept_rate,plain_decode_ms,spec_decode_ms,draft_ms,verify_ms,rollback_ms,verify_calls,plain_tpot_ms"; } > "$csv"
for P in 0 0.25 0.5 0.7 0.8 0.9 1; do
    for N in 1 2 3 4; do
        out=$(build/q35lab generate --model "$M" --prompt-ids "$PROMPT" --max-new "$NEW" --threads "$THREADS" \
              --speculative "oracle:$P" --draft "$N" --ignore-eos 2>/dev/null)
        echo "$out" | grep -q "tokens identical" || { echo "P=$P N=$N: tokens differ" >&2; exit 1; }
        echo "$out" | awk -v P="$P" -v N="$N" '
            /^plain greedy: TPOT/ { tpot = $4; for (i = 1; i <= NF; i++) if ($i == "in" && $(i+1) == "all") plain = $(i-2) }
            /^speculative/ { calls = $5; for (i = 1; i <= NF; i++) { if ($i ~ /^\(/ && $i ~ /%\);$/) { a = $i; gsub(/[()%;]/, "", a) }
                                                                  if ($i == "tokens" && $(i+1) == "per") tps = $(i-1) } }
            /^decode .* for .* tokens/ { spec = $2; draft = $10; verify = $13; rollback = $16 }
            /against plain greedy/ { sp = $NF; sub(/x$/, "", sp) }
            END { printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", P, N, sp, tps, a / 100, plain, spec, draft, verify, rollback, calls, tpot }' >> "$csv"
        tail -n 1 "$csv"
    done
done
fi

# 2. the MTP head
txt=results/speculative_mtp.txt
if part 2; then
{ host; echo "# bench/run_speculative.sh: generate --speculative mtp --draft N --baseline (random weights: time only)"; } > "$txt"
for N in 1 2 4; do
    echo "== draft $N" >> "$txt"
    build/q35lab generate --model "$M" --prompt-ids "$PROMPT" --max-new "$NEW" --threads "$THREADS" \
        --speculative mtp --draft "$N" --baseline --ignore-eos 2>&1 | grep -v '^tokens' | tee -a "$txt"
done
fi

# 3. saved prefixes
txt=results/speculative_prefix.txt
if part 3; then
{ host; echo "# bench/run_speculative.sh: save a prefix, load it + a 16-token suffix, against prefix + suffix from scratch"; } > "$txt"
SUFFIX=$(ids 16 7000)
for L in 512 4096; do
    P=$(ids "$L" 1000)
    f=${MODELS:-build/models}/prefix-$L.safetensors
    echo "== prefix $L tokens" | tee -a "$txt"
    build/q35lab generate --model "$M" --prompt-ids "$P" --max-new 0 --save-state "$f" --threads "$THREADS" 2>/dev/null | tee -a "$txt"
    echo "file: $(stat -c %s "$f") bytes ($(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))" | tee -a "$txt"
    for rep in 1 2 3; do
        /usr/bin/time -f "load + suffix: %e s wall" build/q35lab generate --model "$M" --load-state "$f" \
            --prompt-ids "$SUFFIX" --max-new 4 --threads "$THREADS" 2>&1 | grep -E "^tokens|TTFT|continued|wall" | tee -a "$txt"
        /usr/bin/time -f "from scratch: %e s wall" build/q35lab generate --model "$M" --prompt-ids "$P,$SUFFIX" \
            --max-new 4 --threads "$THREADS" 2>&1 | grep -E "^tokens|TTFT|wall" | tee -a "$txt"
    done
done
fi

# the plot: measured speed-up against the ideal (1 - P^(N+1)) / (1 - P)
if command -v gnuplot > /dev/null; then gnuplot bench/speculative.gp; fi
