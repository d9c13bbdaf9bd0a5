#!/usr/bin/env bash
# The text path through the command line (docs/text.md), run by make test,
# on checkpoints written by model init (with their tokenizer.json):
#  - generate --prompt / --prompt-file / --chat give the tokens of
#    generate --prompt-ids with `tokenize`'s ids of the same text (for
#    --chat, of the turn spelled out here from Qwen3.5's template);
#  - the text is printed ('text[0]: ', 'text[b]: ' for a batch);
#  - EOS: with eos_token_id set to the first token an --ignore-eos run
#    produces, generation stops after exactly that token (plain and
#    speculative); --ignore-eos still decodes them all;
#  - refusals (exit 2, one line): no tokenizer.json, invalid UTF-8, an
#    unreadable --prompt-file, mixed prompt kinds, a malformed
#    generation_config.json; without a tokenizer --prompt-ids prints ids only;
#  - validate --prompt; under mpirun the same tokens as one process;
#  - if Hugging Face `tokenizers` is importable: it reads model init's
#    tokenizer.json to the same ids as `tokenize`.
# Usage: tests/text_cli_test.sh BUILD_DIR   (from the project root, after make)
set -uo pipefail
build=${1:-build}
q=$build/q35lab
out=$build/text-test
rm -rf "$out" && mkdir -p "$out"
fails=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fails=$((fails + 1)); }
tokens() { grep '^tokens\[' | tr '\n' ' '; }

m=$out/tiny-moe
"$q" model init --preset tiny-moe --seed 5 --dtype bf16 --out "$m" > /dev/null 2>&1 || bad "model init tiny-moe"
"$q" model init --preset tiny-odd-dense --seed 2 --dtype f32 --out "$out/odd" > /dev/null 2>&1 || bad "model init tiny-odd-dense"
[ -f "$m/tokenizer.json" ] && [ -f "$out/odd/tokenizer.json" ] && ok "model init writes tokenizer.json" \
    || bad "model init wrote no tokenizer.json"

text="The capital of France is"
# 1. --prompt runs, prints the text and at most --max-new ids
"$q" generate --model "$m" --prompt "$text" --max-new 8 > "$out/g.txt" 2> "$out/g.err"
rc=$?
n=$(grep '^tokens\[0\]:' "$out/g.txt" | tr ',' '\n' | wc -l)
if [ $rc = 0 ] && grep -q '^text\[0\]: ' "$out/g.txt" && [ "$n" -ge 1 ] && [ "$n" -le 8 ]; then
    ok "generate --prompt: text[0] line and $n tokens"
else bad "generate --prompt (exit $rc, $n tokens)"; cat "$out/g.txt" "$out/g.err"; fi

# 2. the prompt's ids are tokenize's: the same tokens as --prompt-ids with them
for model in "$m" "$out/odd"; do
    for t in "$text" "Hello, world! 123 caf$(printf '\xc3\xa9') na$(printf '\xc3\xaf')ve" "  two  spaces
and a newline"; do
        ids=$("$q" tokenize --model "$model" "$t" 2> /dev/null)
        a=$("$q" generate --model "$model" --prompt "$t" --max-new 8 --ignore-eos 2> /dev/null | tokens)
        b=$("$q" generate --model "$model" --prompt-ids "$ids" --max-new 8 --ignore-eos 2> /dev/null | tokens)
        if [ -n "$ids" ] && [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$(basename "$model"): --prompt '${t:0:20}...' = --prompt-ids \$(tokenize)"
        else bad "$(basename "$model"): --prompt '$t': '$a' vs --prompt-ids $ids: '$b'"; fi
    done
done

# 3. --chat: the user turn of Qwen3.5's template, thinking off / on (--think), the prompt trimmed
# (an x after it: $(...) drops trailing newlines)
turn=$(printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nx' "$text")
turn=${turn%x}
ids=$("$q" tokenize --model "$m" "$turn" 2> /dev/null)
a=$("$q" generate --model "$m" --prompt "  $text
" --chat --max-new 6 --ignore-eos 2> /dev/null | tokens)
b=$("$q" generate --model "$m" --prompt-ids "$ids" --max-new 6 --ignore-eos 2> /dev/null | tokens)
im_start=$("$q" tokenize --model "$m" "<|im_start|>" 2> /dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "${ids%%,*}" = "$im_start" ] && [ "$im_start" = 510 ]; then
    ok "--chat = the turn spelled out (starts with <|im_start|> = id 510)"
else bad "--chat: '$a' vs '$b' (ids $ids)"; fi
turn=$(printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n<think>\nx' "$text")
turn=${turn%x}
ids=$("$q" tokenize --model "$m" "$turn" 2> /dev/null)
a=$("$q" generate --model "$m" --prompt "$text" --chat --think --max-new 6 --ignore-eos 2> /dev/null | tokens)
b=$("$q" generate --model "$m" --prompt-ids "$ids" --max-new 6 --ignore-eos 2> /dev/null | tokens)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "--chat --think = the turn ending in <think>\\n"; else bad "--chat --think: '$a' vs '$b'"; fi

# 4. --prompt-file: the file's bytes are the prompt
printf '%s' "$text" > "$out/prompt.txt"
a=$("$q" generate --model "$m" --prompt-file "$out/prompt.txt" --max-new 8 --ignore-eos 2> /dev/null | tokens)
b=$("$q" generate --model "$m" --prompt "$text" --max-new 8 --ignore-eos 2> /dev/null | tokens)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "--prompt-file = --prompt"; else bad "--prompt-file: '$a' vs '$b'"; fi

# 5. a batch: one text line per sequence, the ids of the batch of tokenize's ids
ids1=$("$q" tokenize --model "$m" "$text" 2> /dev/null)
ids2=$("$q" tokenize --model "$m" "Hello" 2> /dev/null)
"$q" generate --model "$m" --prompt "$text" --prompt "Hello" --max-new 5 --ignore-eos > "$out/b.txt" 2> /dev/null
a=$(tokens < "$out/b.txt")
b=$("$q" generate --model "$m" --prompt-ids "$ids1;$ids2" --max-new 5 --ignore-eos 2> /dev/null | tokens)
if [ -n "$a" ] && [ "$a" = "$b" ] && grep -q '^text\[0\]: ' "$out/b.txt" && grep -q '^text\[1\]: ' "$out/b.txt"; then
    ok "a batch of two --prompt: text[0], text[1]; = --prompt-ids 'ids;ids'"
else bad "batch: '$a' vs '$b'"; cat "$out/b.txt"; fi

# 6. EOS.  --ignore-eos: all 8 tokens; eos_token_id = the first of them: exactly 1 token
"$q" generate --model "$m" --prompt "$text" --max-new 8 --ignore-eos > "$out/i.txt" 2> /dev/null
first=$(sed -n 's/^tokens\[0\]: \([0-9]*\).*/\1/p' "$out/i.txt")
n=$(grep '^tokens\[0\]:' "$out/i.txt" | tr ',' '\n' | wc -l)
[ "$n" = 8 ] && ok "--ignore-eos: 8 tokens" || bad "--ignore-eos: $n tokens"
echo "{\"eos_token_id\": [1, $first], \"do_sample\": false}" > "$m/generation_config.json"
for extra in "" "--speculative ngram --draft 3" "--speculative oracle:0.5 --draft 2"; do
    # shellcheck disable=SC2086
    "$q" generate --model "$m" --prompt "$text" --max-new 8 $extra > "$out/e.txt" 2> /dev/null
    got=$(sed -n 's/^tokens\[0\]: //p' "$out/e.txt")
    if [ "$got" = "$first" ] && grep -q "ended: sequence 0 after 1 token" "$out/e.txt"; then
        ok "eos_token_id = the first token: stops after it ${extra:+($extra)}"
    else bad "eos stop ${extra}: tokens '$got', want '$first'"; cat "$out/e.txt"; fi
done
n=$("$q" generate --model "$m" --prompt "$text" --max-new 8 --ignore-eos 2> /dev/null | grep '^tokens\[0\]:' | tr ',' '\n' | wc -l)
[ "$n" = 8 ] && ok "--ignore-eos with that eos: 8 tokens" || bad "--ignore-eos with that eos: $n tokens"
# the other sequence of a batch goes on
"$q" generate --model "$m" --prompt "$text" --prompt "Hello" --max-new 5 > "$out/e.txt" 2> /dev/null
n0=$(grep '^tokens\[0\]:' "$out/e.txt" | tr ',' '\n' | wc -l)
n1=$(grep '^tokens\[1\]:' "$out/e.txt" | tr ',' '\n' | wc -l)
hello_has_first=$("$q" generate --model "$m" --prompt "Hello" --max-new 5 --ignore-eos 2> /dev/null \
                  | sed -n 's/^tokens\[0\]: //p' | tr ',' '\n' | grep -cx "$first")
if [ "$n0" = 1 ] && { [ "$n1" = 5 ] || [ "$hello_has_first" != 0 ]; }; then ok "batch: sequence 0 ends, sequence 1 goes on ($n1 tokens)"
else bad "batch with eos: $n0 and $n1 tokens"; cat "$out/e.txt"; fi
echo '{"eos_token_id": "<|im_end|>"}' > "$m/generation_config.json"
"$q" generate --model "$m" --prompt "$text" --max-new 2 > /dev/null 2> "$out/r.txt"
rc=$?
if [ $rc = 2 ] && grep -q "generation_config.json: field 'eos_token_id' must be an integer" "$out/r.txt"; then
    ok "refused: eos_token_id of the wrong type, naming the file and field"
else bad "bad generation_config.json (exit $rc)"; cat "$out/r.txt"; fi
rm -f "$m/generation_config.json"

# 7. refusals: exit 2, one line on stderr
refuse() { # label, pattern, then generate's arguments
    local label=$1 pat=$2; shift 2
    "$q" generate "$@" > "$out/o.txt" 2> "$out/r.txt"
    local rc=$? lines
    lines=$(wc -l < "$out/r.txt")
    if [ $rc = 2 ] && [ "$lines" = 1 ] && grep -q -- "$pat" "$out/r.txt"; then ok "refused: $label: $(cat "$out/r.txt")"
    else bad "$label (exit $rc, $lines lines)"; cat "$out/r.txt"; fi
}
mkdir -p "$out/no-tok" && cp "$m/config.json" "$m/model.safetensors" "$out/no-tok/"
refuse "no tokenizer.json" "tokenizer.json is missing" --model "$out/no-tok" --prompt "$text"
refuse "invalid UTF-8" "UTF-8" --model "$m" --prompt "$(printf 'ab\xff\xfecd')"
printf 'caf\xc3' > "$out/cut.txt"
refuse "a prompt file cut inside a character" "UTF-8" --model "$m" --prompt-file "$out/cut.txt"
refuse "a missing --prompt-file" "nope.txt" --model "$m" --prompt-file "$out/nope.txt"
refuse "an empty prompt" "at least 1" --model "$m" --prompt ""
refuse "--prompt with --prompt-ids" "one kind of prompt" --model "$m" --prompt "$text" --prompt-ids 1,2
refuse "--chat without text" "--chat" --model "$m" --prompt-ids 1,2 --chat
refuse "no prompt" "give the prompt" --model "$m"
# without a tokenizer, ids still work: ids only, no text line
"$q" generate --model "$out/no-tok" --prompt-ids 1,2,3 --max-new 3 > "$out/o.txt" 2> /dev/null
if [ $? = 0 ] && grep -q '^tokens\[0\]:' "$out/o.txt" && ! grep -q '^text' "$out/o.txt"; then ok "no tokenizer: --prompt-ids prints ids only"
else bad "no tokenizer, --prompt-ids"; cat "$out/o.txt"; fi

# 8. validate --prompt
if "$q" validate --model "$m" --prompt "$text" --prompt "Hi" --chat --steps 4 --impl default > "$out/v.txt" 2>&1 \
    && grep -q "PASS" "$out/v.txt"; then ok "validate --prompt --chat: $(tail -n 1 "$out/v.txt")"
else bad "validate --prompt"; cat "$out/v.txt"; fi

# 9. --help
for c in generate validate; do
    if "$q" $c --help | grep -q -- "--prompt TEXT" && "$q" $c --help | grep -q -- "--chat"; then ok "$c --help: --prompt, --chat"
    else bad "$c --help lacks --prompt/--chat"; fi
done

# 10. under mpirun: the same tokens from text as in one process
if command -v mpirun > /dev/null 2>&1; then
    mp=(mpirun --oversubscribe --mca mpi_yield_when_idle 1)
    [ "$(id -u)" = 0 ] && mp+=(--allow-run-as-root)
    a=$("$q" generate --model "$m" --prompt "$text" --prompt "Hello" --max-new 6 2> /dev/null | tokens)
    b=$(ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 timeout 300 "${mp[@]}" -np 2 "$q" generate \
        --model "$m" --prompt "$text" --prompt "Hello" --max-new 6 --threads 1 2> /dev/null | tokens)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "2 ranks: the same tokens from text"; else bad "2 ranks: '$b' vs '$a'"; fi
else
    echo "  skip the 2-rank run: mpirun is missing"
fi

# 11. Hugging Face tokenizers reads model init's tokenizer.json to the same ids
if python3 -c "import tokenizers" > /dev/null 2>&1; then
    for model in "$m" "$out/odd"; do
        for t in "$text" "Hello, world! 42 <|im_start|>user
hi<|im_end|>" "$(printf 'caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82  x')"; do
            want=$(python3 -c 'import sys, tokenizers
t = tokenizers.Tokenizer.from_file(sys.argv[1])
print(",".join(map(str, t.encode(sys.argv[2], add_special_tokens=False).ids)))' "$model/tokenizer.json" "$t")
            got=$("$q" tokenize --model "$model" "$t" 2> /dev/null)
            if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "$(basename "$model"): HF tokenizers' ids = tokenize's for '${t:0:16}...'"
            else bad "$(basename "$model"): '$t': HF $want, q35lab $got"; fi
        done
    done
else
    echo "  SKIP Hugging Face tokenizers is not importable (pip install tokenizers): the writer is checked by the other cases only"
fi

if [ $fails -gt 0 ]; then echo "text: $fails FAILED"; exit 1; fi
echo "text: all passed"
