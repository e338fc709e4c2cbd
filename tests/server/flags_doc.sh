#!/bin/sh
# docs/server.md's flag list is the daemon's flag table (server/options.c): every flag of
# --help, with its value's name, is a row of the "## Flags" table, and every row is a flag.
# usage: tests/server/flags_doc.sh DAEMON [DOC]
set -eu
daemon=$1
doc=${2:-docs/server.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --help: "  --name ARG   text" or "  --name ARG" alone on its line (two spaces end the flag)
"$daemon" --help | sed -n 's/^  \(--[a-z0-9-]*\( [^ ][^ ]*\)\{0,1\}\)\(  .*\)\{0,1\}$/\1/p' | sort > "$tmp/help"
# the doc: the first cell of each row of the table under "## Flags", each `--...` in it
awk '/^## Flags/ { on = 1; next } /^## / { on = 0 } on && /^\| `--/' "$doc" |
    cut -d'|' -f2- | sed 's/\\|/\x01/g' | cut -d'|' -f1 | tr '\001' '|' |
    grep -o '`--[^`]*`' | tr -d '`' | sort > "$tmp/doc"
if ! diff -u "$tmp/help" "$tmp/doc" > "$tmp/diff"; then
    echo "flags_doc: --help (-) and $doc's flag table (+) differ:"
    tail -n +3 "$tmp/diff" | grep '^[-+]'
    exit 1
fi
echo "flags_doc: $(wc -l < "$tmp/help") flags, --help and $doc agree"
