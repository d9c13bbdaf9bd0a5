#!/usr/bin/env bash
# q35lab tokenize through the command line: the --jsonl batch form against
# HF tokenizers' ids (tests/data/tokenizer/ids.txt, written by
# ref/hf/make_tokenizer_goldens.py) on a slice of the corpus, "text" and
# --decode on a line whose ids HF gave (tokenizers 0.23.3:
# "Hello<|im_end|> world é" -> 9419,248046,1814,3825), --help, and exit
# status 2 for each kind of bad input.
# Usage (from the project root, after make): tests/tokenize_cli_test.sh BUILD
set -euo pipefail
build=${1:?usage: tests/tokenize_cli_test.sh BUILD}
q=./$build/q35lab
json=$build/data/tokenizer/tokenizer.json
data=tests/data/tokenizer
dir=$(mktemp -d /tmp/q35_tokenize_cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/model" "$dir/empty"
ln -s "$(pwd)/$json" "$dir/model/tokenizer.json"
fail() { echo "tokenize_cli_test: $*"; exit 1; }

head -n 400 $data/corpus.jsonl > "$dir/slice.jsonl"
$q tokenize --model "$dir/model" --jsonl "$dir/slice.jsonl" > "$dir/ids.txt"
head -n 400 $data/ids.txt | cmp -s - "$dir/ids.txt" || fail "--jsonl: ids differ from HF's on the first 400 lines"
$q tokenize --model "$dir/model" --jsonl - < "$dir/slice.jsonl" | cmp -s - "$dir/ids.txt" || fail "--jsonl - (stdin) differs"

[ "$($q tokenize --model "$dir/model" "Hello<|im_end|> world é")" = "9419,248046,1814,3825" ] || fail "text: wrong ids"
[ "$($q tokenize --model "$dir/model" --decode 9419,248046,1814,3825)" = "Hello<|im_end|> world é" ] ||
    fail "--decode: wrong text"
$q tokenize --help | grep -q "usage: q35lab tokenize" || fail "--help prints no usage"

expect_2() {
    local what=$1; shift
    set +e; "$@" > /dev/null 2> "$dir/err"; local rc=$?; set -e
    [ $rc -eq 2 ] || fail "$what: exit $rc, expected 2"
    [ "$(wc -l < "$dir/err")" -eq 1 ] || fail "$what: expected one line on stderr, got: $(cat "$dir/err")"
}
expect_2 "invalid UTF-8 text" $q tokenize --model "$dir/model" $'ab\xffcd'
grep -q "byte 2" "$dir/err" || fail "invalid UTF-8: the message does not name byte 2: $(cat "$dir/err")"
expect_2 "an id out of range" $q tokenize --model "$dir/model" --decode 1,999999999
printf '"ok"\nnot json\n' > "$dir/bad.jsonl"
expect_2 "a line that is not a JSON string" $q tokenize --model "$dir/model" --jsonl "$dir/bad.jsonl"
expect_2 "no tokenizer.json" $q tokenize --model "$dir/empty" "text"
expect_2 "no text" $q tokenize --model "$dir/model"
echo '{"model": ' > "$dir/empty/tokenizer.json"
expect_2 "a broken tokenizer.json" $q tokenize --model "$dir/empty" "text"
echo "tokenize_cli_test: --jsonl equals HF's ids on 400 lines; text, --decode, --help and 6 bad inputs as expected"
