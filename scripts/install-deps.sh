#!/usr/bin/env bash
# Installs (with apt-get, Debian/Ubuntu) only the system packages that are
# missing for building, testing and demoing coupafs, and makes sure /dev/fuse
# exists. Safe to run again: does nothing when everything is there.
#
#   fuse3            fusermount3 (FUSE mounts; fuser needs no libfuse)
#   openssh-server   sshd for the local sandbox server (scripts/sandbox-server.sh)
#   openssh-client   sftp/ssh-keygen (sandbox keys, smoke tests); ssh for the
#                    ProxyJump tests (tests/reach.rs)
#   libpam-modules   pam_unix for the keyboard-interactive sandbox (UsePAM yes)
#   pkg-config, libssl-dev   the ssh2 crate builds libssh2 from source against
#                    OpenSSL (openssl-sys is not vendored)
#   gcc, libc6-dev   C compiler for libssh2-sys / openssl-sys / libz-sys
#   zlib1g-dev       system zlib for libz-sys (else it builds its bundled copy)
#   zsh, fish, groff-base   tests/cli_docs.rs loads the generated zsh and fish
#                    completions in their shells and renders the man page
#   sshfs            optional, only for the benchmark; a failure is not fatal
#   proftpd-core, proftpd-mod-crypto   ProFTPD with mod_sftp, gesftpserver,
#   rclone           other SFTP servers the tests run coupafs against
#                    (tests/servers.rs); the system proftpd daemon the package
#                    would start is kept stopped and disabled (the tests run
#                    their own on a free loopback port)
set -euo pipefail

log() { echo "install-deps: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    log "not root and no sudo: cannot install packages"
    SUDO=()
  fi
else
  SUDO=()
fi

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
{ command -v sftp && command -v ssh-keygen && command -v ssh; } >/dev/null || missing+=(openssh-client)
[[ -e /etc/pam.d/sshd ]] || missing+=(openssh-server)
dpkg -s libpam-modules >/dev/null 2>&1 || missing+=(libpam-modules)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
command -v cc >/dev/null || missing+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || missing+=(libc6-dev)
command -v flock >/dev/null || missing+=(util-linux)
command -v ss >/dev/null || missing+=(iproute2)
[[ -e /usr/lib/proftpd/mod_sftp.so ]] || missing+=(proftpd-core proftpd-mod-crypto)
dpkg -s gesftpserver >/dev/null 2>&1 || missing+=(gesftpserver)
command -v rclone >/dev/null || missing+=(rclone)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v groff >/dev/null || missing+=(groff-base)
want_sshfs=0
command -v sshfs >/dev/null || want_sshfs=1

updated=0
apt_update() {
  if ((updated == 0)); then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -q >&2
    updated=1
  fi
}

# The proftpd package starts and enables a system daemon on port 21; the tests
# need only the binary. While installing, a policy-rc.d that answers 101
# ("action forbidden") keeps invoke-rc.d from starting any service (one that
# already exists, e.g. in a container image, is left as it is).
POLICY_RC=/usr/sbin/policy-rc.d
policy_added=0
forbid_service_starts() {
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\n# coupafs install-deps: no service starts while installing\nexit 101\n' \
      | "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY_RC"
    policy_added=1
  fi
}
allow_service_starts() {
  if ((policy_added)); then
    "${SUDO[@]}" rm -f "$POLICY_RC"
    policy_added=0
  fi
}
trap allow_service_starts EXIT

# Keeps the system proftpd service disabled (at boot) and stopped, through the
# init system only: no process is killed by name.
disable_system_proftpd() {
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    "${SUDO[@]}" systemctl disable --now proftpd.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/proftpd ]]; then
    if command -v update-rc.d >/dev/null; then
      "${SUDO[@]}" update-rc.d proftpd disable >/dev/null 2>&1 || true
    fi
    if [[ -s /run/proftpd.pid ]]; then
      "${SUDO[@]}" /etc/init.d/proftpd stop >/dev/null 2>&1 || true
    fi
  fi
}

export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { log "missing ${missing[*]} and no apt-get"; exit 1; }
  apt_update
  log "installing ${missing[*]}"
  forbid_service_starts
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  allow_service_starts
  if [[ " ${missing[*]} " == *" proftpd-core "* ]]; then
    disable_system_proftpd
  fi
fi
if ((want_sshfs)) && command -v apt-get >/dev/null; then
  apt_update || true
  log "installing sshfs (optional, for the benchmark)"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends sshfs >&2 \
    || log "warning: sshfs could not be installed; the sshfs comparison in scripts/bench.sh will be unavailable"
fi

# The FUSE device node.
if [[ ! -e /dev/fuse ]]; then
  log "/dev/fuse missing: loading the fuse module"
  "${SUDO[@]}" modprobe fuse 2>/dev/null || true
fi
if [[ ! -e /dev/fuse ]]; then
  log "/dev/fuse still missing: creating the device node (10, 229)"
  "${SUDO[@]}" mknod -m 666 /dev/fuse c 10 229 || true
fi
if [[ ! -c /dev/fuse ]]; then
  log "error: /dev/fuse is not available; FUSE mounts cannot work on this machine"
  exit 1
fi

log "all dependencies present"
