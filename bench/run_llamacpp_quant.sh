#!/usr/bin/env bash
# q35lab's quantized weights against llama.cpp on the same host, side by side (issue 18):
# q35lab q8 (ggml's Q8_0 layout) vs llama.cpp Q8_0, q35lab q4 (ggml's Q4_0) vs llama.cpp Q4_0, Q4_0_PURE
# (llama-quantize --pure: token_embd/output in Q4_0 too, the same 4.5 bits/weight) and Q4_K_M, pp512 and
# tg32 at 2 threads, on the 0.8B random checkpoint. Writes results/llamacpp_quant.txt.
#
#   bench/run_llamacpp_quant.sh            build what is missing, run ROUNDS interleaved rounds, write the file
#   bench/run_llamacpp_quant.sh --report DIR   re-write OUT from the raw output of an earlier run
#                                          (DIR = $LCP_DIR/runs-quant-*, which keeps the run's settings in env.sh)
#   bench/run_llamacpp_quant.sh --help     this text
#
# Nothing of llama.cpp goes into the repo: its source (the vendor/llama.cpp of the PyPI sdist
# llama-cpp-python), its build and the GGUF files live under LCP_DIR. Environment:
#   LCP_DIR     llama.cpp work dir (default /tmp/lcp): $LCP_DIR/llama_cpp_python-*/vendor/llama.cpp (pip
#               download --no-deps --no-binary :all: llama-cpp-python + unpack when missing), $LCP_DIR/build
#               (cmake Release, GGML_NATIVE=ON, LLAMA_CURL=OFF; targets llama-bench llama-quantize),
#               $LCP_DIR/gguf (GGUF cache: BF16 from convert_hf_to_gguf.py, then Q8_0 Q4_0 Q4_0_PURE Q4_K_M from
#               llama-quantize; rebuilt when the checkpoint's sha256 changes), $LCP_DIR/runs-quant-* (raw output)
#   LCP_AMX     auto (default): smoke-test the native llama-bench on every file and, if it crashes (ggml's
#               AMX kernels die on some AMX hosts), build $LCP_DIR/build-noamx (same ISA flags, AMX off) and
#               use that; off: use build-noamx straight away; on: never fall back
#   ROUNDS      interleaved rounds (default 3); each round runs every pair, the side that goes first
#               alternating from round to round
#   Q35LAB      the q35lab binary (default build/q35lab; `make` builds it when it is missing)
#   Q35_BUILT_FROM  free text saying what the Q35LAB binary was built from (printed with the versions), e.g.
#               "git archive of cb2d734" when the shared tree holds others' uncommitted edits
#   Q35_ARGS    extra arguments for `q35lab bench model`, e.g. "--impl linear=tiled-int8dot"
#   MODEL       the checkpoint (default build/models/qwen3.5-0.8b-bf16; made with `q35lab model init
#               --preset qwen3.5-0.8b --dtype bf16 --seed 1` when missing, as bench/run_quant.sh does)
#   REUSE_GGUF  a BF16 GGUF converted earlier (default /tmp/q08lc.gguf): used when the folder next to it
#               (${REUSE_GGUF%.gguf}/model.safetensors) is byte-identical to MODEL's
#   THREADS     threads on both sides (default 2)
#   SETTLE      seconds of sleep before each run, so the previous run's share of the 1-minute load
#               average decays (default 20)
#   BUSY_LOAD   a run is BUSY when the 1-minute load average before it exceeds this (default 1.5) or
#               other processes used more than 25% of the CPUs during it (other_load, from /proc/stat)
#   OUT         the results file (default results/llamacpp_quant.txt)
#
# The commands (per round, per pair):
#   llama-bench -m X.gguf -p 512 -n 32 -t 2 -r 3 -o csv
#   q35lab bench model --model MODEL --weights q8|q4 --prompt-len 512 --gen 32 --reps 3 --threads 2 $Q35_ARGS
# llama.cpp's figures are llama-bench's avg_ts (mean of its 3 repetitions); q35lab's are the medians of 3
# (pp512: 512 / TTFT; tg32: 1 / TPOT, decoding after the 512-token prompt, where llama-bench's tg32
# starts from an empty context: q35lab's decode attends to 512-544 cached tokens, a little more work).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
REPORT_DIR=
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --report) REPORT_DIR=${2:?--report needs the run directory}
              [ -f "$REPORT_DIR/env.sh" ] || { echo "$REPORT_DIR/env.sh: missing" >&2; exit 2; } ;;
    "") ;;
    *) echo "run_llamacpp_quant.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
ROOT=$PWD
LCP_DIR=${LCP_DIR:-/tmp/lcp}
ROUNDS=${ROUNDS:-3}
Q35LAB=${Q35LAB:-build/q35lab}
Q35_ARGS=${Q35_ARGS:-}
MODEL=${MODEL:-build/models/qwen3.5-0.8b-bf16}
REUSE_GGUF=${REUSE_GGUF:-/tmp/q08lc.gguf}
THREADS=${THREADS:-2}
SETTLE=${SETTLE:-20}
BUSY_LOAD=${BUSY_LOAD:-1.5}
OUT=${OUT:-results/llamacpp_quant.txt}
GGUF_DIR=$LCP_DIR/gguf
load() { cut -d' ' -f1-3 /proc/loadavg; }
say() { echo "[$(date -u +%T) load $(load)] $*" >&2; }
case "$ROUNDS" in ''|*[!0-9]*|0) echo "ROUNDS must be a positive integer" >&2; exit 2 ;; esac
case "$LCP_DIR" in "$ROOT"|"$ROOT"/*) echo "LCP_DIR must be outside the repo ($ROOT)" >&2; exit 2 ;; esac
START_LOAD=$(load)
START_DATE=$(date -u +%FT%TZ)

# ---- the results file, from a run directory: RUNS and the settings exported --------------------------------
write_report() {
mkdir -p "$(dirname "$OUT")"
python3 - > "$OUT.tmp" <<'PY'
import csv, glob, os, re, statistics as st
E = os.environ
runs, gdir = E["RUNS"], E["GGUF_DIR"]
busy_load = float(E["BUSY_LOAD"])
meta = list(csv.DictReader(open(f"{runs}/meta.tsv"), delimiter="\t"))
LTYPE = {"q8": "Q8_0", "q4": "Q4_0", "q4p": "Q4_0_PURE", "q4k": "Q4_K_M"}
QW = {"q8": "q8", "q4": "q4", "q4p": "q4", "q4k": "q4"}
LTYPE = {k: v for k, v in LTYPE.items() if any(r["pair"] == k for r in meta)}   # the pairs this run has

def q35_mib(path):
    m = re.search(r"([0-9.]+) MiB read per decode step", open(path).read())
    return float(m.group(1)) if m else float("nan")

bf16_mib = q35_mib(f"{runs}/q35_bf16_bytes.out")
q35_params = bf16_mib * 2**20 / 2          # every matrix a decode step reads, at 2 bytes each

warn = []
for row in meta:
    n = row["name"]
    row["busy"] = float(row["load_before"].split()[0]) > busy_load or float(row["other_load"]) > 0.25
    if row["side"] == "llama.cpp":
        recs = list(csv.DictReader(open(f"{runs}/{n}.out")))
        for rec in recs:
            if rec["n_prompt"] == "512" and rec["n_gen"] == "0":
                row["pp"], row["pp_sd"] = float(rec["avg_ts"]), float(rec["stddev_ts"])
            elif rec["n_prompt"] == "0" and rec["n_gen"] == "32":
                row["tg"], row["tg_sd"] = float(rec["avg_ts"]), float(rec["stddev_ts"])
            row["threads"] = rec["n_threads"]
            row["size"], row["params"] = int(rec["model_size"]), int(rec["model_n_params"])
            row["ltype"], row["lcommit"] = rec["model_type"], rec["build_commit"]
            row["cpu_info"] = rec.get("cpu_info", "")
        if row.get("threads") != E["THREADS"]:
            warn.append(f"{n}: llama-bench ran n_threads={row.get('threads')}, not {E['THREADS']}")
        row["mib"] = row["size"] / 2**20
    else:
        recs = {r["impl"]: r for r in csv.DictReader(open(f"{runs}/{n}.csv"))}
        p, d = recs["prefill"], recs["decode"]
        row["pp"], row["pp_lo"], row["pp_hi"] = (512 / float(p[k]) for k in ("median_s", "max_s", "min_s"))
        row["tg"], row["tg_lo"], row["tg_hi"] = (1 / float(d[k]) for k in ("median_s", "max_s", "min_s"))
        row["threads"] = p["threads"]
        row["mib"] = q35_mib(f"{runs}/{n}.out")
        row["qtype"] = p["variant"]
        if row["threads"] != E["THREADS"]:
            warn.append(f"{n}: q35lab ran threads={row['threads']}")
    row["cpu_pct"] = 100 * float(row["own_cpu_s"]) / max(float(row["wall_s"]), 1e-9)

# llama-quantize logs: which type each tensor got, and the bytes / weights of the matrices a decode step reads
# (every tensor but the f32 vectors and the MTP layer, blk.N.nextn.*: the tied token_embd is the output matrix)
def quant_types(t):
    tensors = []
    for line in open(f"{gdir}/quantize-{t}.log", errors="replace"):
        m = re.match(r"\s*\[\s*\d+/\s*\d+\]\s+(\S+)\s+-\s+\[([^\]]*)\],\s+type =\s+(\S+),\s*"
                     r"(?:converting to (\S+) \.\. size =\s+\S+ MiB ->\s+(\S+) MiB|size =\s+(\S+) MiB)", line)
        if not m:
            continue
        ne = [int(x) for x in m.group(2).split(",")]
        n = 1
        for x in ne:
            n *= x
        tensors.append((m.group(1), ne, m.group(4) or m.group(3), float(m.group(5) or m.group(6)), n))
    mtp = {re.match(r"blk\.(\d+)\.", name).group(1) for name, *_ in tensors if ".nextn." in name}
    groups, order = {}, []
    step_mib = step_n = 0
    for name, ne, ty, mib, n in tensors:
        key = re.sub(r"^blk\.\d+\.", "blk.*.", name)
        if key not in groups:
            groups[key] = {}; order.append(key)
        groups[key][ty] = groups[key].get(ty, 0) + 1
        b = re.match(r"blk\.(\d+)\.", name)
        if ty != "f32" and not (b and b.group(1) in mtp):
            step_mib += mib; step_n += n
    sizes = [re.sub(r"^\S+:\s*", "", l.strip()) for l in open(f"{gdir}/quantize-{t}.log", errors="replace")
             if re.search(r"model size|quant size", l)]
    return [(k, groups[k]) for k in order], sizes, step_mib, step_n, sorted(mtp)

def fmt_types(d):
    return ", ".join(f"{t} x{c}" if c > 1 else t for t, c in d.items())

o = []
P = o.append
P("# Issue 18: q35lab q8/q4 against llama.cpp Q8_0 / Q4_0 / Q4_0_PURE / Q4_K_M on the same host, side by side (0.8B, pp512, tg32)")
P(f"# written by bench/run_llamacpp_quant.sh (ROUNDS={E['ROUNDS']} THREADS={E['THREADS']} SETTLE={E['SETTLE']} Q35_ARGS='{E['Q35_ARGS']}'), "
  f"started {E['START_DATE']}" + (f"; this report re-written on {E['REPORT_DATE']} with --report from the run's raw output"
                                  if E.get("REPORT_DATE") else ""))
P("")
P("## Host")
P(f"cpu:    {E['HOST_CPU']}, {os.cpu_count()} CPUs")
P(f"flags:  {E['HOST_FLAGS']}" + (f"   ({E['HOST_AMX']})" if E['HOST_AMX'] else ""))
P(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
P(f"load:   {E['START_LOAD']} at the start, {E['END_LOAD']} at the end (1/5/15-minute load averages)")
P("")
P("## Versions")
P(f"llama.cpp: {E['LCP_VERSION']}; source {E['LCP_BUILD_SRC']} (the vendor/llama.cpp of the PyPI sdist "
  f"{E['LCP_VER']}), outside the repo; llama-bench's build_commit "
  f"{next(r['lcommit'] for r in meta if r['side'] == 'llama.cpp')}")
dirty = int(E["Q35_DIRTY"])
P(f"q35lab:    {E['Q35_COMMIT']} (git rev-parse --short HEAD)" +
  (f"; WORKING TREE NOT CLEAN: {dirty} modified tracked file(s) under kernels/ model/ cli/ ref/ Makefile"
   " -- the binary may hold uncommitted edits" if dirty and not E["Q35_BUILT_FROM"] else "") +
  f"; binary {E['Q35LAB']}" + (f", built from {E['Q35_BUILT_FROM']}" if E["Q35_BUILT_FROM"] else ""))
P(f"llama.cpp build: {E['LCP_BUILD_NOTE']}")
if E["LCP_CRASH"]:
    P(f"  AMX: {E['LCP_CRASH']}; these figures are llama.cpp without AMX (its AVX-512 VNNI / repack paths)")
P("")
P("## Commands (each round: every pair, the side going first alternating between rounds)")
P(f"  {E['LCP_CMD_EX']}")
P(f"  {E['Q35_CMD_EX']}")
P("  with TYPE = Q8_0 | Q4_0 | Q4_0_PURE | Q4_K_M against --weights q8 | q4 | q4 | q4. llama.cpp: avg_ts of its 3 repetitions;")
P("  q35lab: the median of 3 (pp512 = 512/TTFT, tg32 = 1/TPOT after the 512-token prompt; llama-bench's tg32")
P("  decodes from an empty context, so q35lab's decode steps attend to 512-544 cached tokens: a little more work).")
P("  Models: q35lab model init --preset qwen3.5-0.8b --dtype bf16 --seed 1 (random weights) -> "
  "convert_hf_to_gguf.py --outtype bf16")
P(f"  ({open(gdir + '/bf16.note').read().strip()}) -> llama-quantize BF16.gguf X.gguf TYPE {E['THREADS']}")
P("  Q4_0_PURE = llama-quantize --pure ... Q4_0: every matrix Q4_0, token_embd/output included (4.5 bits/weight, as q35lab's q4)")
P("")

qt = {t: quant_types(t) for t in LTYPE.values()}
def lstep_bpw(t):
    return 8 * qt[t][2] * 2**20 / qt[t][3]
P("## Bits per weight")
lrow = {t: next(r for r in meta if r["side"] == "llama.cpp" and LTYPE[r["pair"]] == t) for t in LTYPE.values()}
qrow = {w: next(r for r in meta if r["side"] == "q35lab" and QW[r["pair"]] == w) for w in sorted({QW[p] for p in LTYPE})}
P("llama.cpp: the file as llama-bench prints it (model_size, model_n_params: every tensor, the MTP layer and the f32")
P("vectors included), and the matrices a decode step reads (from llama-quantize's log: every non-f32 tensor but the")
P(f"MTP layer blk.{','.join(next(iter(qt.values()))[4])}.*; token_embd is tied, so it is the output matrix and is read whole):")
for t, r in lrow.items():
    P(f"  {t:7s} file {r['size'] / 2**30:6.3f} GiB = {r['mib']:7.1f} MiB, {r['params'] / 1e6:.2f} M params, "
      f"{8 * r['size'] / r['params']:.2f} bits/weight ({r['ltype']}); per decode step {qt[t][2]:.1f} MiB, "
      f"{qt[t][3] / 1e6:.2f} M weights, {lstep_bpw(t):.2f} bits/weight")
P(f"q35lab: bytes read per decode step (`bench model`: every matrix a step reads; the bf16 embedding table is a row")
P(f"lookup, the tied lm_head a quantized copy; {bf16_mib:.1f} MiB in bf16 = {q35_params / 1e6:.2f} M weights):")
for w, r in qrow.items():
    P(f"  {w}      {r['mib']:7.1f} MiB read per decode step, {8 * r['mib'] * 2**20 / q35_params:.2f} bits/weight ({r['qtype']})")
P("")
P("## Tensor types in llama.cpp's files (llama-quantize's log; blk.* = every layer that has the tensor)")
for t in LTYPE.values():
    groups, sizes, _, _, _ = qt[t]
    P(f"{t}:  " + "; ".join(sizes))
    default = {"Q8_0": "q8_0", "Q4_0": "q4_0", "Q4_0_PURE": "q4_0", "Q4_K_M": "q4_K"}[t]
    kept = [k for k, d in groups if set(d) == {"f32"}]
    for k, d in groups:
        if set(d) != {default} and set(d) != {"f32"}:
            P(f"    {k:34s} {fmt_types(d)}")
    P(f"    f32 (not quantized): {' '.join(kept)}")
    P(f"    every other tensor: {default}")
P("")

P("## Raw rows (tokens/s; BUSY = load average before the run > %.1f or other processes' share of the CPUs"
  " during it > 0.25)" % busy_load)
P(f"{'round':5s} {'pair':5s} {'side':9s} {'pp512':>8s} {'':14s} {'tg32':>7s} {'':14s} {'thr':>3s} {'cpu%':>5s} "
  f"{'wall_s':>6s} {'load before':>15s} {'load after':>15s} {'other':>5s}")
for r in meta:
    if r["side"] == "llama.cpp":
        pp_x, tg_x = f"+-{r['pp_sd']:.2f}", f"+-{r['tg_sd']:.2f}"
    else:
        pp_x, tg_x = f"[{r['pp_lo']:.1f},{r['pp_hi']:.1f}]", f"[{r['tg_lo']:.1f},{r['tg_hi']:.1f}]"
    P(f"{r['round']:5s} {r['pair']:5s} {r['side']:9s} {r['pp']:8.2f} {pp_x:14s} {r['tg']:7.2f} {tg_x:14s} "
      f"{r['threads']:>3s} {r['cpu_pct']:5.0f} {float(r['wall_s']):6.1f} {r['load_before']:>15s} {r['load_after']:>15s} "
      f"{float(r['other_load']):5.2f}" + ("  BUSY" if r["busy"] else ""))
P("(llama.cpp: mean +- stddev of its 3 repetitions; q35lab: median [min,max] of 3. cpu% = the process's CPU time over")
P(" its wall time, loading included: 2 threads busy throughout would be 200.)")
P("")

def goal(test, ratio):
    need = 1.2 if test == "tg" else 1.0
    return f">={need:.1f} " + ("met" if ratio >= need else "MISSED")

def summary(rows_of, title):
    P(title)
    P(f"{'pair':24s} {'test':5s} {'q35lab t/s [min-max]':>24s} {'llama.cpp t/s [min-max]':>26s} {'ratio':>6s} {'goal':>11s} "
      f"{'bpw q35lab/llama':>17s} rounds")
    P("(bpw: bits per weight of the matrices a decode step reads, section above)")
    for pair in LTYPE:
        for test in ("tg", "pp"):
            rows = rows_of(pair)
            if not rows:
                continue
            q = [r[test] for r in rows if r["side"] == "q35lab"]
            l = [r[test] for r in rows if r["side"] == "llama.cpp"]
            if not q or not l:
                continue
            qm, lm = st.median(q), st.median(l)
            qb = 8 * qrow[QW[pair]]["mib"] * 2**20 / q35_params
            lb = lstep_bpw(LTYPE[pair])
            name = f"q35lab {QW[pair]} / {LTYPE[pair]}"
            P(f"{name:24s} {'tg32' if test == 'tg' else 'pp512':5s} {qm:8.2f} [{min(q):6.2f}-{max(q):6.2f}] "
              f"{lm:10.2f} [{min(l):6.2f}-{max(l):6.2f}] {qm / lm:5.2f}x {goal(test, qm / lm):>11s} {qb:8.2f}/{lb:.2f} {len(q)}")
    P("")

P("## Summary: medians over rounds (ratio = q35lab / llama.cpp; goal: tg32 >= 1.2x, pp512 >= 1.0x)")
summary(lambda pair: [r for r in meta if r["pair"] == pair], "all rounds:")
quiet_rounds = lambda pair: [r for r in meta if r["pair"] == pair and
                             not any(x["busy"] for x in meta if x["pair"] == pair and x["round"] == r["round"])]
nq = {pair: len({r["round"] for r in quiet_rounds(pair)}) for pair in LTYPE}
if not any(r["busy"] for r in meta):
    P("no run was BUSY.")
    P("")
elif any(nq.values()):
    summary(quiet_rounds, "rounds where neither side of the pair was BUSY:")
elif not any(nq.values()):
    P("every round had a BUSY run (by the load average, which lags a minute and counts this script's previous run).")
    P("")
# the steadier test: other processes' share of the CPUs measured during each run itself
calm = lambda pair: [r for r in meta if r["pair"] == pair and
                     all(float(x["other_load"]) <= 0.10 for x in meta if x["pair"] == pair and x["round"] == r["round"])]
if all(len(calm(pair)) == len([r for r in meta if r["pair"] == pair]) for pair in LTYPE):
    P("every pair's runs had other_load <= 0.10 (other processes used at most 10% of the CPUs during each run).")
    P("")
elif any(calm(pair) for pair in LTYPE):
    summary(calm, "rounds where both runs of the pair had other_load <= 0.10 (other processes used at most 10% of the "
                  "CPUs during each run; pairs with none are left out):")
else:
    P("no round had both runs of a pair at other_load <= 0.10.")
    P("")
for w in warn:
    P("WARNING: " + w)
P(f"raw output: {runs} (outside the repo)")
print("\n".join(o))
PY
mv "$OUT.tmp" "$OUT"
}
if [ -n "$REPORT_DIR" ]; then
    keep_out=$OUT
    # shellcheck disable=SC1091
    source "$REPORT_DIR/env.sh"
    OUT=$keep_out; RUNS=$(cd "$REPORT_DIR" && pwd); GGUF_DIR=${GGUF_DIR:-$LCP_DIR/gguf}
    REPORT_DATE=$(date -u +%FT%TZ)
    export RUNS GGUF_DIR REPORT_DATE
    write_report
    say "re-wrote $OUT from $RUNS"
    exit 0
fi

# ---- 1. llama.cpp: source and build, outside the repo -------------------------------------------------
mkdir -p "$LCP_DIR"
LCP_SRC=$(ls -d "$LCP_DIR"/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$LCP_SRC" ]; then
    say "downloading the llama-cpp-python sdist into $LCP_DIR"
    python3 -m pip download --no-deps --no-binary :all: llama-cpp-python -d "$LCP_DIR"
    tarball=$(ls "$LCP_DIR"/llama_cpp_python-*.tar.gz | sort -V | tail -1)
    tar -xzf "$tarball" -C "$LCP_DIR"
    LCP_SRC=$(ls -d "$LCP_DIR"/llama_cpp_python-*/vendor/llama.cpp | sort -V | tail -1)
fi
LCP_VER=$(basename "$(dirname "$(dirname "$LCP_SRC")")")
LB=$LCP_DIR/build/bin/llama-bench
LQ=$LCP_DIR/build/bin/llama-quantize
if [ ! -f "$LCP_DIR/build/CMakeCache.txt" ]; then
    say "configuring llama.cpp ($LCP_SRC) in $LCP_DIR/build"
    nice -n 19 cmake -S "$LCP_SRC" -B "$LCP_DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >&2
fi
say "building llama-bench llama-quantize (a no-op when up to date)"
nice -n 19 cmake --build "$LCP_DIR/build" -j2 --target llama-bench llama-quantize > "$LCP_DIR/build/q35_build.log" 2>&1 ||
    { tail -30 "$LCP_DIR/build/q35_build.log" >&2; exit 1; }
LCP_BUILD_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$LCP_DIR/build/CMakeCache.txt")

# ---- 2. q35lab, the checkpoint and the GGUF files ----------------------------------------------------
if [ ! -x "$Q35LAB" ]; then
    [ "$Q35LAB" = build/q35lab ] || { echo "Q35LAB=$Q35LAB: not an executable" >&2; exit 1; }
    say "building q35lab"; nice -n 19 make -s all
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
    say "making the 0.8B random checkpoint $MODEL"
    "$Q35LAB" model init --preset qwen3.5-0.8b --dtype bf16 --seed 1 --out "$MODEL" --force >&2
fi
mkdir -p "$GGUF_DIR"
SHA=$(sha256sum "$MODEL/model.safetensors" "$MODEL/config.json" | cut -c1-64 | tr '\n' ' ')
if [ "$(cat "$GGUF_DIR/source.sha256" 2>/dev/null || true)" != "$SHA" ]; then
    say "new checkpoint: clearing the GGUF cache $GGUF_DIR"
    rm -f "$GGUF_DIR"/*.gguf "$GGUF_DIR"/*.log
    echo "$SHA" > "$GGUF_DIR/source.sha256"
fi
BF16_GGUF=$GGUF_DIR/qwen3.5-0.8b-BF16.gguf
BF16_NOTE="converted by this script"
if [ ! -s "$BF16_GGUF" ] && [ -s "$REUSE_GGUF" ] && [ -f "${REUSE_GGUF%.gguf}/model.safetensors" ] &&
   cmp -s "${REUSE_GGUF%.gguf}/model.safetensors" "$MODEL/model.safetensors" &&
   cmp -s "${REUSE_GGUF%.gguf}/config.json" "$MODEL/config.json"; then
    say "reusing $REUSE_GGUF (made from a byte-identical checkpoint)"
    ln -sf "$REUSE_GGUF" "$BF16_GGUF"
    echo "reused $REUSE_GGUF, converted earlier from ${REUSE_GGUF%.gguf} (byte-identical to $MODEL) with the same command" \
        > "$GGUF_DIR/bf16.note"
fi
if [ ! -s "$BF16_GGUF" ]; then
    stage=$GGUF_DIR/src
    rm -rf "$stage"; mkdir -p "$stage"
    ln -s "$ROOT/$MODEL/config.json" "$stage/config.json"
    ln -s "$ROOT/$MODEL/model.safetensors" "$stage/model.safetensors"
    if [ -f "$MODEL/tokenizer.json" ]; then ln -s "$ROOT/$MODEL/tokenizer.json" "$stage/tokenizer.json"
    else xz -dc tests/data/tokenizer/tokenizer.json.xz > "$stage/tokenizer.json"; fi
    say "converting $MODEL to a BF16 GGUF (convert_hf_to_gguf.py)"
    (cd "$LCP_SRC" && PYTHONPATH=gguf-py nice -n 19 python3 convert_hf_to_gguf.py "$stage" --outtype bf16 \
        --outfile "$BF16_GGUF.tmp") > "$GGUF_DIR/convert.log" 2>&1 || { tail -30 "$GGUF_DIR/convert.log" >&2; exit 1; }
    mv "$BF16_GGUF.tmp" "$BF16_GGUF"
    echo "$BF16_NOTE" > "$GGUF_DIR/bf16.note"
fi
# Q4_0_PURE: llama-quantize --pure Q4_0, every matrix in Q4_0 (plain Q4_0 keeps the tied token_embd/output in
# Q6_K): the same 4.5 bits per weight as q35lab's q4
for t in Q8_0 Q4_0 Q4_K_M Q4_0_PURE; do
    g=$GGUF_DIR/qwen3.5-0.8b-$t.gguf
    [ -s "$g" ] && [ -s "$GGUF_DIR/quantize-$t.log" ] && continue
    say "llama-quantize $t"
    qargs=("$BF16_GGUF" "$g.tmp" "$t" "$THREADS"); [ "$t" = Q4_0_PURE ] && qargs=(--pure "$BF16_GGUF" "$g.tmp" Q4_0 "$THREADS")
    nice -n 19 "$LQ" "${qargs[@]}" > "$GGUF_DIR/quantize-$t.log" 2>&1 ||
        { tail -30 "$GGUF_DIR/quantize-$t.log" >&2; exit 1; }
    mv "$g.tmp" "$g"
done

# llama-bench as built natively (-march=native) runs ggml's AMX kernels for Q8_0 / Q4_0 / Q4_K / Q6_K weights on an
# AMX CPU. On some hosts those kernels die at their first tile instruction (SIGILL, or SIGSEGV with 2 threads:
# the per-thread tile configuration, see ggml-org/llama.cpp PR #26954). Smoke-test every file (pp32, one rep); if
# one crashes, build $LCP_DIR/build-noamx with the same ISA extensions minus AMX (from /proc/cpuinfo) and use
# that. LCP_AMX=off goes straight to it; LCP_AMX=on never falls back.
LCP_AMX=${LCP_AMX:-auto}
LCP_BUILD_NOTE="$LCP_DIR/build: cmake -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF"
smoke() { # binary: 0 when it runs pp32 on every file
    local t
    for t in Q8_0 Q4_0 Q4_K_M Q4_0_PURE; do
        "$1" -m "$GGUF_DIR/qwen3.5-0.8b-$t.gguf" -p 32 -n 0 -t "$THREADS" -r 1 -o csv > "$GGUF_DIR/smoke.out" 2>&1 ||
            { echo "$t: exit status $?"; return 1; }
    done
}
if [ "$LCP_AMX" = auto ]; then
    say "smoke test of $LB (pp32 on each file)"
    if ! why=$(smoke "$LB"); then
        LCP_AMX=off
        LCP_CRASH="the native build's llama-bench crashed on $why (ggml's AMX kernels, the only code that differs)"
        say "$LCP_CRASH: falling back to a build without AMX"
    fi
fi
if [ "$LCP_AMX" = off ]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo)
    has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
    opts=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)"
          -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)" -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)"
          -DGGML_AVX512="$(has avx512f)" -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)"
          -DGGML_AVX512_BF16="$(has avx512_bf16)" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
    LCP_BUILD_NOTE="$LCP_DIR/build-noamx: cmake ${opts[*]}"
    if [ ! -f "$LCP_DIR/build-noamx/CMakeCache.txt" ]; then
        say "configuring $LCP_DIR/build-noamx"
        nice -n 19 cmake -S "$LCP_SRC" -B "$LCP_DIR/build-noamx" "${opts[@]}" >&2
    fi
    say "building llama-bench in $LCP_DIR/build-noamx"
    nice -n 19 cmake --build "$LCP_DIR/build-noamx" -j2 --target llama-bench > "$LCP_DIR/build-noamx/q35_build.log" 2>&1 ||
        { tail -30 "$LCP_DIR/build-noamx/q35_build.log" >&2; exit 1; }
    LB=$LCP_DIR/build-noamx/bin/llama-bench
    why=$(smoke "$LB") || { echo "llama-bench without AMX crashed too ($why)" >&2; exit 1; }
fi
LCP_VERSION=$("$LB" --version 2>&1 | tr '\n' ' ' | sed 's/ *$//')

# ---- 3. interleaved rounds -----------------------------------------------------------------------------
RUNS=$LCP_DIR/runs-quant-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$RUNS"
META=$RUNS/meta.tsv
printf 'round\tpair\tside\tname\tload_before\tload_after\tother_load\twall_s\town_cpu_s\n' > "$META"
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
HZ=$(getconf CLK_TCK)
# run ROUND PAIR SIDE NAME cmd...: stdout to NAME.out, stderr to NAME.err; load before/after, wall, own CPU
# and other_load = the share of the CPUs that other processes used during the run
run() {
    local round=$1 pair=$2 side=$3 name=$4; shift 4
    sleep "$SETTLE"
    local lb la b0 i0 b1 i1 e u s rc=0
    lb=$(load); read -r b0 i0 < <(cpu_ticks)
    say "round $round $pair $side: $*"
    /usr/bin/time -f "%e %U %S" -o "$RUNS/$name.time" "$@" > "$RUNS/$name.out" 2> "$RUNS/$name.err" || rc=$?
    read -r b1 i1 < <(cpu_ticks); la=$(load)
    if [ "$rc" != 0 ]; then
        echo "FAILED ($rc): $*" >&2; tail -20 "$RUNS/$name.err" >&2; exit 1
    fi
    # /usr/bin/time appends its line after anything the command wrote to the same file
    read -r e u s < <(tail -1 "$RUNS/$name.time")
    awk -v r="$round" -v p="$pair" -v sd="$side" -v n="$name" -v lb="$lb" -v la="$la" -v e="$e" -v u="$u" -v s="$s" \
        -v db=$((b1 - b0)) -v di=$((i1 - i0)) -v hz="$HZ" 'BEGIN {
            tot = (db + di) / hz; other = (db / hz - u - s) / (tot > 0 ? tot : 1); if (other < 0) other = 0
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.1f\t%.1f\n", r, p, sd, n, lb, la, other, e, u + s }' >> "$META"
}
# pair name, llama.cpp type, q35lab --weights
PAIRS=("q8:Q8_0:q8" "q4:Q4_0:q4" "q4p:Q4_0_PURE:q4" "q4k:Q4_K_M:q4")
read -r -a QEXTRA <<< "$Q35_ARGS"
lcp_cmd() { echo "$LB" -m "$GGUF_DIR/qwen3.5-0.8b-$1.gguf" -p 512 -n 32 -t "$THREADS" -r 3 -o csv; }
q35_cmd() { echo "$Q35LAB" bench model --model "$MODEL" --weights "$1" --prompt-len 512 --gen 32 --reps 3 \
                 --threads "$THREADS" --machine /nonexistent --csv "$RUNS/$2.csv" "${QEXTRA[@]}"; }
# q35lab's bytes per decode step in bf16 (every matrix it reads at 16 bits): the parameter count that
# turns its q8/q4 bytes into bits per weight
"$Q35LAB" bench model --model "$MODEL" --prompt-len 1 --gen 2 --reps 1 --threads "$THREADS" \
    --machine /nonexistent > "$RUNS/q35_bf16_bytes.out" 2>&1 || { tail "$RUNS/q35_bf16_bytes.out" >&2; exit 1; }
for r in $(seq 1 "$ROUNDS"); do
    for p in "${PAIRS[@]}"; do
        IFS=: read -r pair ltype qw <<< "$p"
        sides=(llama.cpp q35lab); [ $((r % 2)) = 0 ] && sides=(q35lab llama.cpp)
        for side in "${sides[@]}"; do
            if [ "$side" = llama.cpp ]; then
                # shellcheck disable=SC2046
                run "$r" "$pair" llama.cpp "r${r}_${pair}_llama" $(lcp_cmd "$ltype")
            else
                run "$r" "$pair" q35lab "r${r}_${pair}_q35" $(q35_cmd "$qw" "r${r}_${pair}_q35")
            fi
        done
    done
done

# ---- 4. the results file ---------------------------------------------------------------------------------
END_LOAD=$(load)
Q35_COMMIT=$(git rev-parse --short HEAD)
Q35_DIRTY=$(git status --porcelain --untracked-files=no -- kernels model cli ref Makefile 2>/dev/null | wc -l)
HOST_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
# `|| true`: a host without AVX-512 or AMX has no such flag, and grep's status would end the script (pipefail)
HOST_FLAGS=$( (grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo || true) | sort -u | tr '\n' ' ' | sed 's/ *$//')
HOST_AMX=$( (grep -o 'amx[a-z_0-9]*' /proc/cpuinfo || true) | sort -u | tr '\n' ' ' | sed 's/ *$//')
export RUNS GGUF_DIR BUSY_LOAD START_LOAD END_LOAD START_DATE Q35_COMMIT Q35_DIRTY HOST_CPU HOST_FLAGS HOST_AMX \
    LCP_VERSION LCP_VER LCP_BUILD_SRC Q35LAB Q35_ARGS MODEL THREADS ROUNDS LB SETTLE LCP_BUILD_NOTE
export Q35_BUILT_FROM=${Q35_BUILT_FROM:-}
export LCP_CRASH=${LCP_CRASH:-}
export LCP_CMD_EX="$(lcp_cmd TYPE | sed "s#$GGUF_DIR#\$LCP_DIR/gguf#")"
export Q35_CMD_EX="$(q35_cmd 'q8|q4' NAME | sed "s# --csv $RUNS/NAME.csv##")"
declare -p RUNS GGUF_DIR BUSY_LOAD START_LOAD END_LOAD START_DATE Q35_COMMIT Q35_DIRTY HOST_CPU HOST_FLAGS HOST_AMX \
    LCP_VERSION LCP_VER LCP_BUILD_SRC Q35LAB Q35_ARGS MODEL THREADS ROUNDS LB SETTLE LCP_BUILD_NOTE Q35_BUILT_FROM LCP_CRASH \
    LCP_CMD_EX Q35_CMD_EX > "$RUNS/env.sh"
write_report
say "wrote $OUT"
cat "$OUT"
