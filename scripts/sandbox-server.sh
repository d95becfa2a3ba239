#!/usr/bin/env bash
# Local stand-in for Coupa's SFTP exchange: a private OpenSSH sshd on 127.0.0.1
# that serves only internal-sftp to the unprivileged account `coupasftp`.
#
#   scripts/sandbox-server.sh start DIR [PORT]   # prints KEY=VALUE lines on stdout
#   scripts/sandbox-server.sh stop DIR
#   scripts/sandbox-server.sh status DIR         # exit 0 if running, 1 if not
#   scripts/sandbox-server.sh prepare DIR        # account, client key, tree only
#   scripts/sandbox-server.sh check-chroot DIR   # exit 0 if DIR/root can be a
#                                                # chroot, else print why not
#
# Everything lives in DIR: host keys, the client key (id_rsa), authorized_keys,
# known_hosts, sshd_config, sshd.pid, sshd.log, the password file, and the
# exported tree DIR/root (Coupa's standard Incoming/Outgoing/Archive folders).
# By default there is no chroot: clients use the absolute path DIR/root.
# Opt-in chroot: an (empty) file DIR/chroot makes sshd confine the account to
# DIR/root (ChrootDirectory; clients then use `/`, printed as REMOTE_ROOT).
# sshd requires DIR/root and every directory above it to be owned by root
# and not writable by group or others; DIR/root itself is then root's (the
# account writes in the folders below it). `start` refuses with the
# offending path if that does not hold. An optional file
# DIR/sftp_flags holds extra internal-sftp flags (one line, e.g. `-P rename`).
# An optional file DIR/max_sessions (a number) sets sshd's MaxSessions (channels
# per connection; default 100).
# An optional file DIR/sftp_command (one line) replaces internal-sftp with
# another SFTP server program run by sshd (e.g. gesftpserver); sshd runs such a
# program through the account's login shell, so that sandbox uses the account
# `coupasftp-sh` (shell /bin/sh, same password) instead, still confined to that
# one command by ForceCommand. `prepare` sets up the account, client key and
# tree without starting sshd (for tests that run another server on them).
#
# The account `coupasftp` is shared by all sandboxes on the machine, so its
# password is too: it is generated once, kept in $STATE_DIR/password (root only,
# mode 600) and copied into each DIR/password. Must run as root.
set -euo pipefail

SFTP_USER=coupasftp
SFTP_SHELL=/usr/sbin/nologin
STATE_DIR=/var/lib/coupafs-sandbox
LOCK_FILE=/run/lock/coupafs-sandbox.lock
SSHD=/usr/sbin/sshd

INCOMING=(Accounts AccountValidationRules Addresses ApprovalChains BudgetLines
  BusinessGroups Commodities Contracts Departments ExchangeRates ExpensePayments
  InvoicePayments Invoices Items LookupValues Receipts RemitToAddresses
  Requisitions Suppliers Users)
OUTGOING=(ExpenseReports Invoices PurchaseOrders Receipts Requisitions Suppliers
  SupplierInformations)

die() { echo "sandbox-server: $*" >&2; exit 1; }
log() { echo "sandbox-server: $*" >&2; }

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR | status DIR | prepare DIR | check-chroot DIR" >&2
  exit 2
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (creates a system account and runs sshd)"
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
    apt-get update -q >&2
  fi
  if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "$@" >&2
  fi
}

ensure_packages() {
  local missing=()
  [[ -x $SSHD ]] || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  [[ -x $SSHD ]] || die "$SSHD still missing after installing openssh-server"
}

# Pid of the sshd listener of DIR, if it is alive and really is ours.
running_pid() {
  local dir=$1 pid
  [[ -s $dir/sshd.pid ]] || return 1
  pid=$(<"$dir/sshd.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # The listener's command line is exactly what we started: sshd -f DIR/sshd_config ...
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-f $dir/sshd_config" || return 1
  echo "$pid"
}

# True if the process exists and is not a zombie.
alive() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# All live descendants of a pid, one per line (zombies are skipped: PID 1 on
# some machines never reaps orphans, so dead sshd processes linger as zombies).
descendants() {
  local root=$1 p stat rest pid ppid state
  local -A children=()
  for p in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null <"$p" || continue
    pid=${stat%% *}
    rest=${stat##*) } # fields after the command name: state ppid ...
    state=${rest%% *}
    rest=${rest#* }
    ppid=${rest%% *}
    [[ $state == Z ]] && continue
    children[$ppid]+="$pid "
  done
  local queue=("$root") cur kid
  while ((${#queue[@]})); do
    cur=${queue[0]}
    queue=("${queue[@]:1}")
    for kid in ${children[$cur]:-}; do
      echo "$kid"
      queue+=("$kid")
    done
  done
}

free_port() {
  if command -v python3 >/dev/null && python3 -c 'import socket' 2>/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$port" | grep -q .; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Every directory from / down to $1 must be traversable by coupasftp.
make_traversable() {
  local d=$1
  while [[ $d != / && -n $d ]]; do
    chmod o+x "$d"
    d=$(dirname "$d")
  done
}

ensure_account() {
  # Serialise account/password changes between sandboxes started in parallel.
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock 9
  local created=0
  if ! id -u "$SFTP_USER" >/dev/null 2>&1; then
    local shell=$SFTP_SHELL
    [[ -x $shell ]] || shell=/bin/false
    useradd --system -M -d /nonexistent -s "$shell" -c "coupafs sandbox SFTP" "$SFTP_USER" \
      || id -u "$SFTP_USER" >/dev/null 2>&1 || die "useradd $SFTP_USER failed"
    created=1
  fi
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  if ((created)) || [[ ! -s $STATE_DIR/password ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$STATE_DIR/password")
  fi
  # Re-applied every time (cheap, and repairs a password changed behind our back;
  # also unlocks the account: sshd without PAM refuses locked accounts even for keys).
  printf '%s:%s\n' "$SFTP_USER" "$(<"$STATE_DIR/password")" | chpasswd
  flock -u 9
  exec 9>&-
}

# Opt-in chroot (see the header): DIR/chroot exists.
chroot_wanted() { [[ -e $1/chroot ]]; }

# Why sshd would refuse PATH as a ChrootDirectory (empty when it would not):
# every component must be a root-owned directory not writable by group/others.
chroot_problem() {
  local path=$1 p="" part owner mode
  local -a parts
  IFS=/ read -r -a parts <<<"${path#/}"
  for part in "" "${parts[@]}"; do
    [[ -n $part ]] && p+="/$part"
    local shown=${p:-/}
    read -r owner mode < <(stat -c '%u %a' "$shown") || { echo "$shown: cannot stat"; return; }
    if [[ $owner != 0 ]]; then echo "$shown is owned by uid $owner, not root"; return; fi
    if (( (8#$mode & 8#022) != 0 )); then echo "$shown is group/other writable (mode $mode)"; return; fi
  done
}

seed_tree() {
  local root=$1 fresh=0 d
  [[ -d $root ]] || fresh=1
  mkdir -p "$root"
  local dirs=("$root/Incoming" "$root/Outgoing" "$root/Archive" "$root/Archive/Incoming")
  for d in "${INCOMING[@]}"; do dirs+=("$root/Incoming/$d" "$root/Archive/Incoming/$d"); done
  for d in "${OUTGOING[@]}"; do dirs+=("$root/Outgoing/$d"); done
  mkdir -p "${dirs[@]}"
  if ((fresh)); then
    local po=$root/Outgoing/PurchaseOrders
    cat >"$po/PurchaseOrders_20240101_000001.csv" <<'EOF'
PO Number,Supplier,Status,Total,Currency,Created At
1001,Acme Office Supplies,issued,1250.00,USD,2024-01-01T09:00:00Z
1002,Globex Industrial,issued,98.45,USD,2024-01-01T09:05:00Z
1003,Initech Consulting,cancelled,0.00,USD,2024-01-01T09:10:00Z
EOF
    {
      echo '<?xml version="1.0" encoding="UTF-8"?>'
      echo '<order-headers>'
      echo '  <order-header><po-number>1004</po-number><status>issued</status><total>42.00</total></order-header>'
      echo '</order-headers>'
    } >"$po/PurchaseOrders_20240102_000002.xml"
    chown -R "$SFTP_USER:" "$root"
  else
    chown "$SFTP_USER:" "$root" "${dirs[@]}"
  fi
  chmod 755 "$root" "${dirs[@]}"
  # A chroot directory must be root's (the account writes below it).
  if chroot_wanted "$(dirname "$root")"; then chown root: "$root"; fi
}

write_config() {
  local dir=$1 port=$2 root=$3 force="internal-sftp -l INFO"
  # Extra internal-sftp flags for tests (e.g. `-P rename,posix-rename` to refuse
  # requests), read from DIR/sftp_flags so that a restart keeps them.
  if [[ -s $dir/sftp_flags ]]; then force+=" $(<"$dir/sftp_flags")"; fi
  local chroot_line=""
  if chroot_wanted "$dir"; then
    [[ $root =~ [[:space:]] ]] && die "chroot: $root holds a space"
    local why
    why=$(chroot_problem "$root")
    [[ -z $why ]] || die "chroot to $root refused by sshd's rules: $why"
    chroot_line="ChrootDirectory $root"
    force+=" -d /"
  # Start sessions in the exported root when the path can be written unquoted.
  elif [[ ! $root =~ [[:space:]] ]]; then
    force+=" -d $root"
  fi
  # Another SFTP server program instead of internal-sftp (see the header).
  if [[ -s $dir/sftp_command ]]; then force=$(<"$dir/sftp_command"); fi
  {
    echo "# Generated by scripts/sandbox-server.sh — coupafs local test server."
    if [[ -s $dir/sshd_options ]]; then
      echo "# From $dir/sshd_options (first value wins):"
      cat "$dir/sshd_options"
    fi
  } >"$dir/sshd_config"
  local max_sessions=100
  if [[ -s $dir/max_sessions ]]; then max_sessions=$(<"$dir/max_sessions"); fi
  [[ $max_sessions =~ ^[0-9]+$ ]] || die "$dir/max_sessions: not a number"
  cat >>"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/ssh_host_ed25519_key
HostKey $dir/ssh_host_rsa_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $SFTP_USER
Subsystem sftp internal-sftp
ForceCommand $force
$chroot_line
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
PrintMotd no
UseDNS no
MaxStartups 200:30:400
MaxSessions $max_sessions
MaxAuthTries 10
LoginGraceTime 30
LogLevel VERBOSE
EOF
  # OpenSSH >= 9.8 penalises clients whose sessions "crash" (our tests SIGKILL
  # sessions on purpose); switch that off where the option exists.
  if "$SSHD" -t -f "$dir/sshd_config" -o PerSourcePenalties=no >/dev/null 2>&1; then
    echo "PerSourcePenalties no" >>"$dir/sshd_config"
  fi
  "$SSHD" -t -f "$dir/sshd_config" || die "sshd rejected $dir/sshd_config"
}

print_info() {
  local dir=$1 pid=$2
  echo "PORT=$(<"$dir/port")"
  echo "USER=$SFTP_USER"
  echo "ROOT=$dir/root"
  echo "KEY=$dir/id_rsa"
  echo "KNOWN_HOSTS=$dir/known_hosts"
  echo "PASSWORD_FILE=$dir/password"
  if chroot_wanted "$dir"; then echo "REMOTE_ROOT=/"; else echo "REMOTE_ROOT=$dir/root"; fi
  echo "PID=$pid"
}

# Another SFTP server program needs an account with a login shell (see the header).
choose_account() {
  if [[ -s $1/sftp_command ]]; then
    SFTP_USER=coupasftp-sh
    SFTP_SHELL=/bin/sh
  fi
}

# The account, the client key, the password copy and the tree, in DIR.
prepare_dir() {
  local dir=$1
  ensure_packages
  ensure_account
  chmod 755 "$dir"
  make_traversable "$dir"
  [[ -f $dir/id_rsa ]] || ssh-keygen -q -t rsa -b 2048 -N '' -C coupafs-sandbox-client -f "$dir/id_rsa"
  chmod 600 "$dir/id_rsa"
  cp "$dir/id_rsa.pub" "$dir/authorized_keys"
  chmod 644 "$dir/authorized_keys" # read by sshd as the target user
  (umask 077; cp "$STATE_DIR/password" "$dir/password")
  chmod 600 "$dir/password"
  seed_tree "$dir/root"
}

cmd_prepare() {
  local dir=$1
  need_root
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  choose_account "$dir"
  prepare_dir "$dir"
  echo "USER=$SFTP_USER"
  echo "ROOT=$dir/root"
  echo "KEY=$dir/id_rsa"
  echo "PASSWORD_FILE=$dir/password"
}

cmd_start() {
  local dir=$1 port=${2:-}
  need_root
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  choose_account "$dir"
  local pid
  if pid=$(running_pid "$dir"); then
    if [[ -z $port || $port == "$(<"$dir/port")" ]]; then
      log "already running (pid $pid)"
      print_info "$dir" "$pid"
      return 0
    fi
    die "already running on port $(<"$dir/port") (pid $pid); stop it first"
  fi
  prepare_dir "$dir"
  [[ -f $dir/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C coupafs-sandbox-host -f "$dir/ssh_host_ed25519_key"
  [[ -f $dir/ssh_host_rsa_key ]] || ssh-keygen -q -t rsa -b 3072 -N '' -C coupafs-sandbox-host -f "$dir/ssh_host_rsa_key"
  chmod 600 "$dir/ssh_host_ed25519_key" "$dir/ssh_host_rsa_key"

  mkdir -p /run/sshd
  chmod 755 /run/sshd

  local auto_port=0
  if [[ -z $port ]]; then auto_port=1; fi
  for _ in 1 2 3 4 5; do
    ((auto_port)) && port=$(free_port)
    [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
    echo "$port" >"$dir/port"
    {
      local key
      for key in "$dir"/ssh_host_ed25519_key.pub "$dir"/ssh_host_rsa_key.pub; do
        local k
        k=$(cut -d' ' -f1,2 "$key")
        echo "[127.0.0.1]:$port $k"
        echo "[localhost]:$port $k"
        if [[ $port == 22 ]]; then
          echo "127.0.0.1 $k"
          echo "localhost $k"
        fi
      done
    } >"$dir/known_hosts"
    chmod 644 "$dir/known_hosts"
    write_config "$dir" "$port" "$dir/root"
    rm -f "$dir/sshd.pid"
    echo "=== $(date -Is) starting sshd on 127.0.0.1:$port" >>"$dir/sshd.log"
    # shellcheck disable=SC2094 # sshd appends to its own log; we only append too
    if "$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >/dev/null 2>>"$dir/sshd.log"; then
      for _ in $(seq 1 100); do
        if pid=$(running_pid "$dir") && port_open "$port"; then
          print_info "$dir" "$pid"
          return 0
        fi
        sleep 0.1
      done
      if pid=$(running_pid "$dir"); then
        kill "$pid" 2>/dev/null || true
      fi
    fi
    if ((auto_port)) && grep -q "Address already in use" "$dir/sshd.log"; then
      log "port $port was taken, retrying"
      continue
    fi
    break
  done
  echo "--- tail of $dir/sshd.log:" >&2
  tail -n 20 "$dir/sshd.log" >&2 || true
  die "sshd did not start listening on 127.0.0.1:$port"
}

cmd_stop() {
  local dir=$1
  [[ -d $dir ]] || { log "$dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  local pid
  if ! pid=$(running_pid "$dir"); then
    log "not running"
    rm -f "$dir/sshd.pid"
    return 0
  fi
  # Freeze the listener so it accepts no new connection, then kill its session
  # processes (they would otherwise outlive it) and finally the listener itself.
  kill -STOP "$pid" 2>/dev/null || true
  local kids
  kids=$(descendants "$pid")
  if [[ -n $kids ]]; then
    # shellcheck disable=SC2086
    kill -KILL $kids 2>/dev/null || true
  fi
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/sshd.pid"
  echo "=== $(date -Is) stopped sshd (pid $pid)" >>"$dir/sshd.log"
  log "stopped (pid $pid)"
}

cmd_status() {
  local dir=$1 pid
  [[ -d $dir ]] || { echo "STATUS=stopped"; return 1; }
  dir=$(cd "$dir" && pwd -P)
  choose_account "$dir"
  if pid=$(running_pid "$dir"); then
    echo "STATUS=running"
    print_info "$dir" "$pid"
    return 0
  fi
  echo "STATUS=stopped"
  return 1
}

[[ $# -ge 2 ]] || usage
case $1 in
  start) [[ $# -le 3 ]] || usage; cmd_start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
  prepare) [[ $# -eq 2 ]] || usage; cmd_prepare "$2" ;;
  check-chroot)
    [[ $# -eq 2 ]] || usage
    # DIR/root is made root's at start; DIR and its parents must already fit.
    [[ -d $2 ]] || die "$2 is not a directory"
    why=$(chroot_problem "$(cd "$2" && pwd -P)")
    [[ -z $why ]] || { echo "$why"; exit 1; }
    ;;
  *) usage ;;
esac
