#!/bin/sh
# The server's layers call downward only (README "Source layout", docs/server.md):
#   http/     transport: names no function of v2/ or monitor/ (main hands it the route
#             table and the model lookup: server/routes.c)
#   monitor/  monitoring: names no function of v2/ (the protocol records into it, not the
#             other way round)
# and within a layer no files call each other in a circle, of two files or more (a helper
# lives in the file below its callers).
# Checked on the built objects: a symbol an object of one layer leaves undefined must not
# be defined by an object of a layer it may not call.
# usage: tests/server/layers.sh BUILD_DIR   (the daemon's objects under BUILD_DIR/server)
set -eu
b=${1:-build}/server
for d in http v2 monitor; do
    ls "$b/$d"/*.o >/dev/null 2>&1 || { echo "layers: no objects in $b/$d (build the daemon first)"; exit 2; }
done
defined() { for o in "$b/$1"/*.o; do nm --defined-only -g "$o" | awk '{print $3}'; done | sort -u; }
undefined() { for o in "$b/$1"/*.o; do nm -u "$o" | awk -v f="$1/$(basename "$o" .o).c" '{print $2, f}'; done | sort -u; }
bad=0
check() { # layer that calls, layer it may not call
    defined "$2" > "$tmp/defs"
    undefined "$1" | awk -v callee="$2" 'NR == FNR { d[$1]; next }
        ($1 in d) { print "layers: " $2 " calls " $1 ", defined in " callee "/"; found = 1 }
        END { exit found }' "$tmp/defs" - || bad=1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check http v2
check http monitor
check monitor v2
for d in http v2 monitor; do # file-level call edges within the layer, then circles of any length
    for o in "$b/$d"/*.o; do nm --defined-only -g "$o" | awk -v f="$(basename "$o" .o)" '{print "D", $3, f}'; done > "$tmp/d"
    for o in "$b/$d"/*.o; do nm -u "$o" | awk -v f="$(basename "$o" .o)" '{print "U", $2, f}'; done >> "$tmp/d"
    awk -v layer="$d" '$1 == "D" { def[$2] = $3; node[$3]; next }
        ($2 in def) && def[$2] != $3 { e[$3, def[$2]] = $2; r[$3, def[$2]] = 1 }
        END {
            for (k in node) for (i in node) if ((i, k) in r) for (j in node) if ((k, j) in r) r[i, j] = 1
            for (n in node) {
                if (!((n, n) in r) || (n in done)) continue
                ring = ""; calls = ""
                for (x in node) if (((n, x) in r) && ((x, n) in r)) { done[x]; ring = ring " " layer "/" x ".c" }
                for (k in e) { split(k, a, SUBSEP)
                    if (((n, a[1]) in r) && ((a[1], n) in r) && ((n, a[2]) in r) && ((a[2], n) in r))
                        calls = calls "\n  " a[1] ".c calls " e[k] " of " a[2] ".c" }
                print "layers: files of " layer "/ call each other in a circle:" ring calls
                bad = 1 }
            exit bad }' "$tmp/d" || bad=1
done
if [ $bad -ne 0 ]; then
    exit 1
fi
echo "layers: http/ calls neither v2/ nor monitor/; monitor/ does not call v2/; no files of a layer call each other in a circle"
