#!/usr/bin/env bash
# Builds the Debian package target/debian/coupafs_<version>-1_<arch>.deb with
# cargo-deb (installed from crates.io into ~/.cargo/bin if missing; that
# first install compiles for a few minutes), then lists its contents.
#
#   scripts/build-deb.sh            # build and list
#   scripts/build-deb.sh --install  # also dpkg -i it (root)
#
# Contents (see [package.metadata.deb] in Cargo.toml): /usr/bin/coupafs,
# /usr/sbin/mount.coupafs and /usr/sbin/mount.fuse.coupafs -> ../bin/coupafs
# (mount(8) runs them for types coupafs and fuse.coupafs), the man page,
# bash, zsh and fish completions,
# the coupafs@.service template, OPERATIONS.md and examples (fstab line,
# systemd .mount/.automount units, coupafs.conf) in
# /usr/share/doc/coupafs/examples/. Depends on fuse3 (mount.fuse3,
# fusermount3) and the shared libraries cargo-deb detects.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: installing cargo-deb $CARGO_DEB_VERSION (compiles, takes a few minutes)" >&2
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi
# dpkg-shlibdeps (dpkg-dev) computes the library dependencies for $auto.
if ! command -v dpkg-shlibdeps >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev >&2 || true
fi

# The man page and completions are committed; warn if they are older than
# the command line's definition.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
scripts/gen-man.sh "$gen" 2>/dev/null
for f in doc/coupafs.1 contrib/completions/coupafs.bash contrib/completions/_coupafs \
  contrib/completions/coupafs.fish; do
  cmp -s "$f" "$gen/$f" ||
    echo "build-deb.sh: warning: $f is out of date; run scripts/gen-man.sh" >&2
done

deb=$(cargo deb 2>&1 | tee /dev/stderr | tail -n 1)
[[ -f $deb ]] || { echo "build-deb.sh: cargo deb did not report a .deb" >&2; exit 1; }
echo "==> $deb" >&2
dpkg-deb --info "$deb" >&2
listing=$(dpkg-deb --contents "$deb")
printf '%s\n' "$listing"
# Both mount helpers must be there: without mount.fuse.coupafs, fstab's
# fuse.coupafs depends on mount.fuse3 finding coupafs in /bin/sh's PATH.
# (grep reads the saved listing: `dpkg-deb | grep -q` fails under pipefail
# when grep stops reading early.)
for helper in ./usr/sbin/mount.coupafs ./usr/sbin/mount.fuse.coupafs; do
  grep -q " $helper -> ../bin/coupafs\$" <<<"$listing" ||
    { echo "build-deb.sh: $helper missing from $deb" >&2; exit 1; }
done
for f in ./usr/share/man/man1/coupafs.1.gz ./usr/share/bash-completion/completions/coupafs \
  ./usr/share/zsh/vendor-completions/_coupafs ./usr/share/fish/vendor_completions.d/coupafs.fish; do
  grep -q " $f\$" <<<"$listing" ||
    { echo "build-deb.sh: $f missing from $deb" >&2; exit 1; }
done
if [[ ${1:-} == --install ]]; then
  dpkg -i "$deb"
fi
