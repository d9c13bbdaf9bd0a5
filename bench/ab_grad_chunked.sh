#!/usr/bin/env bash
# In-process A/B of the chunked delta-rule backward between two commits: each is built as a
# position-independent library in a temporary worktree, linked into a shared object, and
# bench/ab_grad/ab_grad_chunked.c alternates the two call by call on the same inputs (why: its
# header).  Prints the median new/old ratio per pair with its quartiles, and whether the gradients
# are the same bits.
#
#   bash bench/ab_grad_chunked.sh OLD NEW [--T 2048] [--pairs 20] [--alloc bench|mixed|aligned] [--no-workspace]
#
# OLD, NEW: anything git rev-parse takes (NEW may be "worktree" for the uncommitted tree).
set -euo pipefail
[ $# -ge 2 ] && [ "$1" != --help ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; [ "${1:-}" = --help ]; exit $?; }
old=$1 new=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true;
      git -C "$root" worktree remove --force "$tmp/new" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
so() { # rev name -> shared object path
    local src=$root
    if [ "$1" != worktree ]; then git -C "$root" worktree add -q --detach "$tmp/$2" "$1" >&2; src=$tmp/$2; fi
    make -s -C "$src" -j2 BUILD="$tmp/build-$2" CFLAGS=-fPIC "$tmp/build-$2/libq35.a" >&2
    gcc -shared -fopenmp -o "$tmp/$2.so" -Wl,-Bsymbolic -Wl,-u,deltarule_grad_chunked "$tmp/build-$2/libq35.a" \
        -lopenblas -lm >&2
    echo "$tmp/$2.so"
}
so_old=$(so "$old" old)
so_new=$(so "$new" new)
gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root" "$root/bench/ab_grad/ab_grad_chunked.c" -ldl \
    -o "$tmp/ab_grad_chunked"
echo "# bench/ab_grad_chunked.sh $old ($(git -C "$root" rev-parse --short "${old/worktree/HEAD}")) $new $*;" \
     "flags: $(grep -o -w -E 'avx2|avx512[a-z_0-9]*|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
"$tmp/ab_grad_chunked" "$so_old" "$so_new" "$@"
