#!/usr/bin/env bash
# Interleaved A/B timing of two commits: builds each in a temporary worktree and alternates
# their q35lab on the same bench command, so the host's drift hits both alike (on this VM it
# moves single runs by 5-25%; one binary measured after the other compares two moments, not
# two kernels).  Prints each run's median line per implementation.
#
#   bash bench/ab.sh OLD NEW ROUNDS -- bench deltarule --impl recurrent --T 1 --threads 2 --reps 3000
#
# The benches run in a temporary directory: give files (--model, --machine) as absolute paths.
# A `bench model --bw-probe` command goes to bench/ab_args.sh with the two binaries (A = OLD,
# B = NEW): it prints every repetition's step / probed bound and groups them by where the threads sat
# (docs/calibrate.md "Thread hand-off"), since a median over both placements compares moments.
#
# OLD, NEW: anything git rev-parse takes (NEW may be "worktree" for the uncommitted tree).
# Output files of the bench go to a temporary directory, not results/.
set -euo pipefail
[ $# -ge 5 ] && [ "$4" = "--" ] || { echo "usage: $0 OLD NEW ROUNDS -- q35lab-args..." >&2; exit 2; }
old=$1 new=$2 rounds=$3
shift 4
for a in "$@"; do # a relative path to an existing file or folder would not resolve from the temporary directory
    case "$a" in /*|-*) ;; *) if [ -e "$a" ] && [[ "$a" == */* ]]; then echo "ab.sh: $a: give it as an absolute path (the benches run in a temporary directory)" >&2; exit 2; fi ;; esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true;
      git -C "$root" worktree remove --force "$tmp/new" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
build() { # rev dir -> binary path
    if [ "$1" = worktree ]; then make -s -C "$root" build/q35lab >&2; echo "$root/build/q35lab"; return; fi
    git -C "$root" worktree add -q --detach "$2" "$1" >&2
    make -s -C "$2" build/q35lab >&2
    echo "$2/build/q35lab"
}
bin_old=$(build "$old" "$tmp/old")
bin_new=$(build "$new" "$tmp/new")
case " $* " in *" --bw-probe "*)
    echo "A = $old ($bin_old), B = $new ($bin_new)"
    Q35LAB=$bin_old Q35LAB_B=$bin_new bash "$root/bench/ab_args.sh" "$rounds" "" "" -- "$@"
    exit ;;
esac
cd "$tmp"
for ((i = 1; i <= rounds; i++)); do
    for side in old new; do
        bin=bin_$side
        printf '%-4s %s\n' "$side" "$("${!bin}" "$@" --csv "$tmp/x.csv" --json "$tmp/x.json" 2>&1 |
            awk '/^  [a-z]/ && $3 == "us" {printf "%s %s us | ", $1, $2}')"
    done
done
