#!/usr/bin/env bash
# The one command that checks everything on a fresh machine (as root):
# installs the missing system packages, then cargo fmt --check, clippy with
# -D warnings (with and without features), and the whole test suite with the
# test-support feature (unit tests, the remote contract suite on the mock and
# on OpenSSH, the layout rules (tests/layout.rs), the sandbox smoke tests,
# the real FUSE mount tests against a local sshd, and the upload suite against
# other SFTP servers in tests/servers.rs: ProFTPD mod_sftp, gesftpserver,
# rclone serve sftp, OpenSSH without extensions).
#
#   scripts/test.sh                  # everything
#   scripts/test.sh some_test_name   # extra args go to `cargo test` (filters)
#   TEST_THREADS=1 scripts/test.sh   # fewer parallel tests (default 2)
#
# Every test starts its own sandbox sshd on its own free port and its own
# mountpoint, so tests are independent; 2 threads keeps mount timing-sensitive
# tests reliable on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/test.sh: must run as root (the tests create an SFTP account, run sshd and mount FUSE)" >&2
  exit 1
fi

step "system dependencies"
bash scripts/install-deps.sh

command -v cargo >/dev/null || { echo "cargo not found" >&2; exit 1; }
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    step "installing the $tool component"
    rustup component add "$([[ $tool == fmt ]] && echo rustfmt || echo clippy)"
  fi
done

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
# Again with every feature: the mock (feature test-support) and the tests
# that need it (tests/remote_contract.rs).
step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings

# With test-support: the mock and the remote contract suite
# (tests/remote_contract.rs: one test body on the mock and on OpenSSH). The
# release build never has the feature, so the mock never ships.
step "cargo test --features test-support"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --no-fail-fast --features test-support "$@" -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo's last line is the doc-test
# runner's, which has no tests).
summary=$(awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed", p, f }' "$log")
if [[ $status -ne 0 ]]; then
  echo "$summary"
  exit "$status"
fi

step "all checks passed"
echo "$summary"
