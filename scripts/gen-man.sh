#!/usr/bin/env bash
# Regenerates doc/coupafs.1 from `coupafs --help` and `--version` with
# help2man, plus doc/coupafs.h2m (EXAMPLES, EXIT STATUS, FILES, SEE ALSO).
# The result is committed; run this after changing the help text
# (tests/ops.rs checks that the man page mentions every -o option).
#
#   scripts/gen-man.sh            # builds coupafs, writes doc/coupafs.1
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v help2man >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends help2man >&2
  else
    echo "gen-man.sh: help2man is missing (apt-get install help2man)" >&2
    exit 1
  fi
fi

cargo build --quiet --bin coupafs
bin=$PWD/target/debug/coupafs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# help2man reads "Usage:"/"or:" lines as the SYNOPSIS and "Heading:" lines
# as sections; turn the man-page-like --help text into that shape. The
# EXAMPLES section comes from doc/coupafs.h2m instead (it needs .nf).
cat >"$tmp/coupafs" <<WRAPPER
#!/bin/sh
if [ "\$1" = --version ]; then exec "$bin" --version; fi
"$bin" --help | awk '
/^NAME\$/ { skip = 1; next }
/^SYNOPSIS\$/ { skip = 0; syn = 1; n = 0; next }
syn && /^    coupafs/ { sub(/^    /, ""); print (n++ ? "  or:  " : "Usage: ") \$0; next }
syn && /^\$/ { syn = 0; print ""; next }
/^DESCRIPTION\$/ { para = 1; next }
/^OPTIONS\$/ { print "Options:"; para = 1; next }
/^ENVIRONMENT\$/ { print "Environment:"; next }
/^EXAMPLES\$/ { skip = 1; next }
/^  [A-Za-z(]/ { para = 0; sub(/^  /, ""); print \$0 ":"; next }
para && /^    [^ ]/ { sub(/^    /, "") }
skip { next }
{ print }
'
WRAPPER
chmod +x "$tmp/coupafs"

help2man --no-info \
  --name="mount a Coupa SFTP exchange as a local filesystem" \
  --section=1 \
  --manual="User Commands" \
  --include=doc/coupafs.h2m \
  --output=doc/coupafs.1 \
  "$tmp/coupafs"
echo "wrote doc/coupafs.1" >&2
