#!/usr/bin/env bash
# Regenerates, from the command line's one clap definition
# (src/cli/command.rs and the -o table in src/cli/optdoc.rs):
#   doc/coupafs.1                        man page (clap_mangen)
#   contrib/completions/coupafs.bash     bash completion (clap_complete)
#   contrib/completions/_coupafs         zsh completion (clap_complete)
#   contrib/completions/coupafs.fish     fish completion (clap_complete)
# The results are committed; run this after changing an option or its help
# (tests/cli_docs.rs fails until the committed files match).
#
#   scripts/gen-man.sh            # rewrites the files above
#   scripts/gen-man.sh DIR        # writes them under DIR instead
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --example gen-docs -- "$@"
