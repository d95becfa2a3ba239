#!/usr/bin/env bash
# Try coupafs in one command, without a Coupa account: builds coupafs, starts a
# local stand-in for Coupa's SFTP exchange (a private sshd on 127.0.0.1 serving
# Coupa's standard folder tree from ./sandbox/root) and mounts it at ./mnt/coupa.
#
#   scripts/demo.sh          # install what is missing, build, start, mount
#   scripts/demo.sh status   # is it up?
#   scripts/demo.sh stop     # unmount ./mnt/coupa and stop the server
#
# Needs root (creates the local `coupasftp` account, runs sshd, mounts FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
SANDBOX=$REPO/sandbox
MNT=$REPO/mnt/coupa
BIN=$REPO/target/release/coupafs
LOG=$SANDBOX/coupafs.log

die() { echo "demo: $*" >&2; exit 1; }
step() { printf '==> %s\n' "$*" >&2; }

mounted() {
  # Field 5 of mountinfo is the mount point (spaces escaped as \040).
  awk -v m="${MNT// /\\040}" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

server_info() {
  bash scripts/sandbox-server.sh status "$SANDBOX" 2>/dev/null
}

value() { # KEY from KEY=VALUE lines on stdin
  sed -n "s/^$1=//p" | head -n1
}

tips() {
  local port=$1 user=$2 root=$3
  cat <<EOF

coupafs is mounted at mnt/coupa (server: $user@127.0.0.1:$root, port $port).

Try:
  ls -l mnt/coupa/Incoming
  ls -l mnt/coupa/Outgoing/PurchaseOrders
  cat mnt/coupa/Outgoing/PurchaseOrders/*.csv
  cp /etc/hosts mnt/coupa/Incoming/Invoices/test.csv
  df -h mnt/coupa

The server's side of the same files:
  ls -l sandbox/root/Incoming/Invoices
  tail sandbox/sshd.log          # connections and logins
  cat sandbox/coupafs.log        # coupafs's own messages

Or talk to the server directly:
  sftp -i sandbox/id_rsa -o UserKnownHostsFile=sandbox/known_hosts -P $port $user@127.0.0.1

Stop everything (unmount, stop the server):
  scripts/demo.sh stop
EOF
}

cmd_start() {
  [[ $(id -u) -eq 0 ]] || die "run as root (creates the local SFTP account, runs sshd, mounts FUSE)"
  step "checking system packages"
  bash scripts/install-deps.sh

  step "cargo build --release"
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain first"
  cargo build --release

  step "starting the sandbox SFTP server in ./sandbox"
  local info
  info=$(bash scripts/sandbox-server.sh start "$SANDBOX") || die "could not start the sandbox server"
  local port user root key known_hosts
  port=$(value PORT <<<"$info")
  user=$(value USER <<<"$info")
  root=$(value ROOT <<<"$info")
  key=$(value KEY <<<"$info")
  known_hosts=$(value KNOWN_HOSTS <<<"$info")
  [[ -n $port && -n $user && -n $root && -n $key && -n $known_hosts ]] \
    || die "unexpected output from sandbox-server.sh: $info"

  mkdir -p "$MNT"
  if mounted; then
    step "already mounted at mnt/coupa"
    tips "$port" "$user" "$root"
    return 0
  fi

  step "mounting at ./mnt/coupa"
  local cmd=("$BIN" -p "$port" "$user@127.0.0.1:$root" "$MNT"
    -o "IdentityFile=$key,UserKnownHostsFile=$known_hosts")
  echo "    ${cmd[*]}" >&2
  echo "=== $(date -Is) ${cmd[*]}" >>"$LOG"
  # Daemon mode: coupafs returns once the mount is up (or failed).
  if ! "${cmd[@]}" </dev/null >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "coupafs failed to mount (full log: sandbox/coupafs.log)"
  fi
  for _ in $(seq 1 200); do
    mounted && break
    sleep 0.1
  done
  if ! mounted; then
    tail -n 30 "$LOG" >&2
    die "mnt/coupa did not appear in /proc/self/mountinfo within 20 s (log: sandbox/coupafs.log)"
  fi
  tips "$port" "$user" "$root"
}

# PIDs of coupafs daemons serving exactly our mountpoint (matched on the full
# command line: our binary and our mountpoint), for the rare case one is left
# running after the unmount.
our_daemons() {
  local p args
  for p in /proc/[0-9]*; do
    args=$(tr "\0" "\n" 2>/dev/null <"$p/cmdline") || continue
    [[ $(head -n1 <<<"$args") == "$BIN" ]] || continue
    grep -qxF -- "$MNT" <<<"$args" || continue
    echo "${p#/proc/}"
  done
}

cmd_stop() {
  if mounted; then
    step "unmounting mnt/coupa"
    umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || {
      echo "demo: mnt/coupa is busy (a shell or program inside it?); detaching it lazily" >&2
      umount -l "$MNT"
    }
  else
    step "mnt/coupa is not mounted"
  fi
  local pids
  for _ in $(seq 1 50); do
    pids=$(our_daemons)
    [[ -z $pids ]] && break
    sleep 0.1
  done
  if [[ -n $pids ]]; then
    echo "demo: coupafs ($pids) still running after the unmount; killing it" >&2
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
  fi
  step "stopping the sandbox server"
  bash scripts/sandbox-server.sh stop "$SANDBOX"
}

cmd_status() {
  local info rc=0
  if info=$(server_info); then
    echo "server: running on 127.0.0.1:$(value PORT <<<"$info") (pid $(value PID <<<"$info")), root $(value ROOT <<<"$info")"
  else
    echo "server: stopped"
    rc=1
  fi
  if mounted; then
    echo "mount:  mnt/coupa is mounted"
  else
    echo "mount:  mnt/coupa is not mounted"
    rc=1
  fi
  return "$rc"
}

case ${1:-start} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h | --help | help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "usage: scripts/demo.sh [start|stop|status]" ;;
esac
