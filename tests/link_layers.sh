#!/usr/bin/env bash
# The floors of .layers checked on the objects, not just the includes: every
# symbol an object of one floor uses must be defined on its own floor or one
# below.  A declaration copied into a lower header (so that no #include
# reaches up) still shows here, as a call from a floor to the one above.
# Usage: tests/link_layers.sh BUILD_DIR   (from the project root, after make)
set -euo pipefail
build=${1:-build}
floors=$(grep -v '^#' .layers | grep -v '^$')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rank=0
for f in $floors; do
    objs=$(find "$build/obj/$f" -name '*.o' 2>/dev/null | sort || true)
    [ -n "$objs" ] || { rank=$((rank + 1)); continue; }
    for o in $objs; do
        src=${o#"$build/obj/"}
        [ -f "${src%.o}.c" ] || continue # a stale object of a moved or removed file
        nm -g --defined-only "$o" | awk -v r=$rank -v o="$o" 'NF >= 3 {print $3, r, o}' >> "$tmp/defined"
        nm -u "$o" | awk -v r=$rank -v o="$o" '{print $NF, r, o}' >> "$tmp/used"
    done
    rank=$((rank + 1))
done
# used symbol, user's floor, user; defined symbol, its floor, definer: report uses of a higher floor
awk 'NR == FNR { floor[$1] = $2; where[$1] = $3; next }
     ($1 in floor) && floor[$1] > $2 { printf "%s uses %s, defined a floor above in %s\n", $3, $1, where[$1]; bad++ }
     END { exit bad ? 1 : 0 }' "$tmp/defined" "$tmp/used" && status=0 || status=1
n=$(wc -l < "$tmp/used")
if [ $status = 0 ]; then
    echo "link layers: $n symbol uses, none reaches up a floor ($(echo $floors))"
fi
exit $status
