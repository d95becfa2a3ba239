#!/usr/bin/env bash
# Try coupafs in one command, without a Coupa account: builds coupafs, starts a
# local stand-in for Coupa's SFTP exchange (a private sshd on 127.0.0.1 serving
# Coupa's standard folder tree from ./sandbox/root) and mounts it at ./mnt/coupa.
#
#   scripts/demo.sh          # install what is missing, build, start, mount
#   scripts/demo.sh status   # is it up?
#   scripts/demo.sh stop     # unmount ./mnt/coupa and stop the server
#   scripts/demo.sh purge    # stop, then remove the coupasftp account and ./sandbox
#   scripts/demo.sh install  # copy coupafs to /usr/local/bin (on PATH)
#
# Needs root (creates the local `coupasftp` account, runs sshd, mounts FUSE).
# The account is chrooted to ./sandbox/root when sshd allows it (every
# directory above it root-owned, not group/other writable); coupafs logs to
# ./sandbox/coupafs.log.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
SANDBOX=$REPO/sandbox
MNT=$REPO/mnt/coupa
BIN=$REPO/target/release/coupafs
LOG=$SANDBOX/coupafs.log
SFTP_USERS=(coupasftp coupasftp-sh)
STATE_DIR=/var/lib/coupafs-sandbox
LOCK_FILE=/run/lock/coupafs-sandbox.lock
INSTALLED=/usr/local/bin/coupafs

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

# How to run `coupafs` by name.
path_tip() {
  local found
  found=$(command -v coupafs 2>/dev/null || true)
  if [[ -n $found ]]; then
    echo "coupafs is on PATH: $found"
  else
    cat <<EOF
coupafs is not on PATH. Either install it:
  scripts/demo.sh install        # copies it to $INSTALLED
or use the build in place:
  export PATH=$REPO/target/release:\$PATH
EOF
  fi
}

tips() {
  local port=$1 user=$2 root=$3 jail=$4
  cat <<EOF

coupafs is mounted at mnt/coupa (server: $user@127.0.0.1:$root, port $port).
$jail
EOF
  path_tip
  cat <<EOF

Try:
  ls -l mnt/coupa/Incoming
  ls -l mnt/coupa/Outgoing/PurchaseOrders
  cat mnt/coupa/Outgoing/PurchaseOrders/*.csv
  cp /etc/hosts mnt/coupa/Incoming/Invoices/test.csv
  df -h mnt/coupa

The server's side of the same files:
  ls -l sandbox/root/Incoming/Invoices
  tail sandbox/sshd.log          # connections and logins
  cat sandbox/coupafs.log        # coupafs's log: mount, commits, warnings
  $BIN status

Or talk to the server directly:
  sftp -i sandbox/id_rsa -o UserKnownHostsFile=sandbox/known_hosts -P $port $user@127.0.0.1

Stop everything (unmount, stop the server; keeps the local account):
  scripts/demo.sh stop
Also remove the local account and ./sandbox:
  scripts/demo.sh purge
EOF
}

# Opts into the sandbox server's chroot when sshd's rules allow it; prints
# what it chose, for the tips.
choose_chroot() {
  mkdir -p "$SANDBOX"
  chmod 755 "$SANDBOX"
  local why
  if why=$(bash scripts/sandbox-server.sh check-chroot "$SANDBOX"); then
    touch "$SANDBOX/chroot"
    echo "The SFTP account is chrooted to sandbox/root: it sees only that tree, as /."
  else
    rm -f "$SANDBOX/chroot"
    echo "The SFTP account is NOT chrooted: sshd's ChrootDirectory needs every directory"
    echo "above sandbox/root owned by root and not group/other writable, but $why."
    echo "(Clone the repository under such a path, e.g. /opt/coupafs, to get the chroot.)"
  fi
}

cmd_start() {
  [[ $(id -u) -eq 0 ]] || die "run as root (creates the local SFTP account, runs sshd, mounts FUSE)"
  step "checking system packages"
  bash scripts/install-deps.sh

  step "cargo build --release"
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain first"
  cargo build --release

  step "starting the sandbox SFTP server in ./sandbox"
  local jail
  if server_info >/dev/null; then
    # Running already: keep its setting (a restart would break the mount).
    if [[ -e $SANDBOX/chroot ]]; then
      jail="The SFTP account is chrooted to sandbox/root."
    else
      jail="The SFTP account is not chrooted (scripts/demo.sh stop, then start, to retry)."
    fi
  else
    jail=$(choose_chroot)
  fi
  local info
  info=$(bash scripts/sandbox-server.sh start "$SANDBOX") || die "could not start the sandbox server"
  local port user root key known_hosts
  port=$(value PORT <<<"$info")
  user=$(value USER <<<"$info")
  # The folder the client asks for: / when chrooted.
  root=$(value REMOTE_ROOT <<<"$info")
  [[ -n $root ]] || root=$(value ROOT <<<"$info")
  key=$(value KEY <<<"$info")
  known_hosts=$(value KNOWN_HOSTS <<<"$info")
  [[ -n $port && -n $user && -n $root && -n $key && -n $known_hosts ]] \
    || die "unexpected output from sandbox-server.sh: $info"

  mkdir -p "$MNT"
  if mounted; then
    step "already mounted at mnt/coupa"
    tips "$port" "$user" "$root" "$jail"
    return 0
  fi

  step "mounting at ./mnt/coupa"
  local cmd=("$BIN" -p "$port" "$user@127.0.0.1:$root" "$MNT"
    -o "IdentityFile=$key,UserKnownHostsFile=$known_hosts,log_file=$LOG")
  echo "    ${cmd[*]}" >&2
  echo "=== $(date -Is) ${cmd[*]}" >>"$LOG"
  # Daemon mode: coupafs returns once the mount is up (or failed). Its log
  # (log_file=) and anything it prints go to sandbox/coupafs.log.
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
  tips "$port" "$user" "$root" "$jail"
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

# What `stop` leaves behind, and how to remove it.
left_behind() {
  local u accounts=()
  for u in "${SFTP_USERS[@]}"; do
    if id -u "$u" >/dev/null 2>&1; then accounts+=("$u"); fi
  done
  echo
  echo "Left in place:"
  if ((${#accounts[@]})); then
    echo "  the local account ${accounts[*]} (system account without a login shell, for the sandbox sshd)"
  fi
  if [[ -d $SANDBOX ]]; then
    echo "  ./sandbox (server and client keys, logs, the exported files)"
  fi
  if [[ -x $INSTALLED ]]; then echo "  $INSTALLED (from scripts/demo.sh install)"; fi
  echo "Remove the account and ./sandbox with: scripts/demo.sh purge"
}

# Other users of the shared account (tests running now, say), which must
# then stay: sshd listeners of other sandboxes (sshd rewrites its command
# line into one string: `sshd: /usr/sbin/sshd -f DIR/sshd_config ...`) and
# any process running as the account.
other_sandboxes() {
  local p args cfg u
  for p in /proc/[0-9]*; do
    args=$(tr "\0" " " 2>/dev/null <"$p/cmdline") || continue
    [[ $args == *sshd* ]] || continue
    cfg=$(sed -n 's/.* -f \([^ ]*sshd_config\).*/\1/p' <<<"$args")
    [[ -n $cfg && $cfg != "$SANDBOX/sshd_config" ]] || continue
    if grep -qs "Generated by scripts/sandbox-server.sh" "$cfg"; then echo "pid ${p#/proc/}: sshd -f $cfg"; fi
  done
  for u in "${SFTP_USERS[@]}"; do
    id -u "$u" >/dev/null 2>&1 || continue
    pgrep -u "$u" -a 2>/dev/null | sed "s/^/pid /; s/\$/ (as $u)/" || true
  done
}

cmd_purge() {
  [[ $(id -u) -eq 0 ]] || die "run as root (removes a local account)"
  cmd_stop
  # The lock sandbox-server.sh takes to create the account: no sandbox
  # starts using it while we decide.
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock 9
  local others u
  others=$(other_sandboxes)
  if [[ -n $others ]]; then
    echo "demo: keeping the local account: other sandboxes or processes use it:" >&2
    sed 's/^/  /' <<<"$others" | head -n 10 >&2
  else
    for u in "${SFTP_USERS[@]}"; do
      if id -u "$u" >/dev/null 2>&1; then
        step "removing the local account $u"
        userdel "$u" || echo "demo: userdel $u failed; the account stays" >&2
      fi
    done
    rm -rf "$STATE_DIR"
  fi
  flock -u 9
  exec 9>&-
  step "removing ./sandbox"
  rm -rf "$SANDBOX"
  rmdir "$MNT" "$(dirname "$MNT")" 2>/dev/null || true
  if [[ -x $INSTALLED ]]; then
    echo "demo: $INSTALLED stays (remove it with: rm $INSTALLED)" >&2
  fi
}

cmd_install() {
  [[ $(id -u) -eq 0 ]] || die "run as root (writes $INSTALLED)"
  if [[ ! -x $BIN ]]; then
    step "cargo build --release"
    cargo build --release
  fi
  install -m 755 "$BIN" "$INSTALLED"
  step "installed $INSTALLED"
  path_tip
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
  stop) cmd_stop; left_behind ;;
  purge) cmd_purge ;;
  install) cmd_install ;;
  status) cmd_status ;;
  -h | --help | help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "usage: scripts/demo.sh [start|stop|status|purge|install]" ;;
esac
