#!/usr/bin/env bash
# coupafs benchmark (issue 5): coupafs vs sshfs vs the OpenSSH sftp client,
# side by side against one local OpenSSH sshd (scripts/sandbox-server.sh),
# directly (RTT 0) and through coupafs-delay-proxy (RTT > 0).
#
#   sudo scripts/bench.sh                      # full scale, RTT 0 and 20 ms
#   BENCH_SCALE=small scripts/bench.sh         # quick run
#
# Needs root (sandbox sshd, FUSE, drop_caches). Installs sshfs and
# openssh-client with apt-get when missing and builds with `cargo build --release`.
# Timing is never pass/fail: exit status 0 means the benchmark ran; cells that
# failed show FAIL and the reason is listed under the table.
#
# Environment (defaults: full scale / BENCH_SCALE=small):
#   BENCH_RTTS="0 20"        round-trip times in ms (RTT/2 delay each way)
#   BENCH_CLIENTS="coupafs sshfs sftp"
#   BENCH_SEQ_MIB=256/16     sequential write and read file size
#   BENCH_SMALL_FILES=500/50 4 KiB files (BENCH_SMALL_KIB=4), BENCH_PARALLEL=8 writers
#   BENCH_LS_ENTRIES=5000/500
#   BENCH_CSV_FILES=100/20   64 KiB CSVs (BENCH_CSV_KIB=64) for the batch-job loop
#   BENCH_TREE_FILES=40/4    files per folder of the find/du tree (47 folders)
#   BENCH_RSS_MIB=1024/64    file copied while watching coupafs' peak RSS
#   Coupa-shaped workloads (issue 14):
#   BENCH_COUPA_FILES=20/10  BENCH_COUPA_MIB=4-MiB files copied in, then read cold, one after another
#   BENCH_ONE_MIB_READS=5    1 MiB files read cold one by one (median ms), by paths
#                            never listed, then again after an `ls` of their folder
#   BENCH_COUPA_RUNS=3       the 4 MiB cp and cat loops, the big ls -l and the
#                            Archive find each run this often; the table has the median
#   BENCH_SERVER_TMPFS=1     the sandbox server's files on a tmpfs (0: on BENCH_WORKDIR's
#                            disk, whose stalls then show in the fast client's figures)
#   BENCH_ARCHIVE_ENTRIES=20000/2000  entries of the big Archive folder (cold ls -l)
#   BENCH_ATREE_DIRS=20 BENCH_ATREE_FILES=1000/100  the Archive tree for cold find
#   BENCH_POLL=0.5           seconds between a polling job's `ls` (freshness)
#   BENCH_MTU=               e.g. 1500: RTT > 0 legs cross a veth pair with this MTU
#                            (a network namespace the script creates and removes),
#                            as a WAN link has, instead of loopback's 64 KiB
#   BENCH_TIMEOUT=900        seconds any one step may take before it is FAIL
#   BENCH_OUT=bench-results.md
#   BENCH_WORKDIR=/tmp       where the temp dir (sandbox, data, mounts) goes
#   BENCH_KEEP=0             1: keep the temp dir; logs are kept anyway on failure
#   BENCH_COUPAFS_OPTS=      extra -o options for coupafs (comma separated)
#   BENCH_COUPAFS_DEBUG=0    1: run coupafs with -d (logs in the log dir)
#   BENCH_PROXY_AT_ZERO=0    1: RTT 0 also goes through the proxy (delay 0)
#   BENCH_NO_BUILD=0         1: use the existing target/release binaries
# shellcheck disable=SC2016  # bash -c scripts take their arguments as $1...
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SANDBOX=$REPO/scripts/sandbox-server.sh
SFTP_USER=coupasftp

SCALE=${BENCH_SCALE:-full}
case $SCALE in
  full) d_seq=256 d_small=500 d_ls=5000 d_csv=100 d_tree=40 d_rss=1024 d_coupa=20 d_arch=20000 d_atree=1000 ;;
  small) d_seq=16 d_small=50 d_ls=500 d_csv=20 d_tree=4 d_rss=64 d_coupa=10 d_arch=2000 d_atree=100 ;;
  *) echo "bench: BENCH_SCALE must be full or small" >&2; exit 2 ;;
esac
RTTS=${BENCH_RTTS:-0 20}
CLIENTS=${BENCH_CLIENTS:-coupafs sshfs sftp}
SEQ_MIB=${BENCH_SEQ_MIB:-$d_seq}
SMALL_FILES=${BENCH_SMALL_FILES:-$d_small}
SMALL_KIB=${BENCH_SMALL_KIB:-4}
PARALLEL=${BENCH_PARALLEL:-8}
LS_ENTRIES=${BENCH_LS_ENTRIES:-$d_ls}
CSV_FILES=${BENCH_CSV_FILES:-$d_csv}
CSV_KIB=${BENCH_CSV_KIB:-64}
TREE_FILES=${BENCH_TREE_FILES:-$d_tree}
RSS_MIB=${BENCH_RSS_MIB:-$d_rss}
COUPA_FILES=${BENCH_COUPA_FILES:-$d_coupa}
COUPA_MIB=${BENCH_COUPA_MIB:-4}
ONE_MIB_READS=${BENCH_ONE_MIB_READS:-5}
COUPA_RUNS=${BENCH_COUPA_RUNS:-3}
SERVER_TMPFS=${BENCH_SERVER_TMPFS:-1}
SBX_TMPFS=
ARCHIVE_ENTRIES=${BENCH_ARCHIVE_ENTRIES:-$d_arch}
ATREE_DIRS=${BENCH_ATREE_DIRS:-20}
ATREE_FILES=${BENCH_ATREE_FILES:-$d_atree}
POLL=${BENCH_POLL:-0.5}
MTU=${BENCH_MTU:-}
TIMEOUT=${BENCH_TIMEOUT:-900}
OUT=${BENCH_OUT:-bench-results.md}
KEEP=${BENCH_KEEP:-0}
COUPAFS_OPTS=${BENCH_COUPAFS_OPTS:-}
COUPAFS_DEBUG=${BENCH_COUPAFS_DEBUG:-0}
PROXY_AT_ZERO=${BENCH_PROXY_AT_ZERO:-0}
NO_BUILD=${BENCH_NO_BUILD:-0}

for v in SEQ_MIB SMALL_FILES SMALL_KIB PARALLEL LS_ENTRIES CSV_FILES CSV_KIB TREE_FILES RSS_MIB TIMEOUT \
  COUPA_FILES COUPA_MIB ONE_MIB_READS ARCHIVE_ENTRIES ATREE_DIRS ATREE_FILES; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
[[ $POLL =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: BENCH_POLL must be a number of seconds" >&2; exit 2; }
[[ -z $MTU || ($MTU =~ ^[0-9]+$ && $MTU -ge 576) ]] || { echo "bench: BENCH_MTU must be empty or a number >= 576" >&2; exit 2; }
for r in $RTTS; do
  [[ $r =~ ^[0-9]+$ ]] || { echo "bench: BENCH_RTTS: '$r' is not a number of ms" >&2; exit 2; }
done
for c in $CLIENTS; do
  [[ $c == coupafs || $c == sshfs || $c == sftp ]] || { echo "bench: unknown client '$c'" >&2; exit 2; }
done
[[ $OUT == /* ]] || OUT=$PWD/$OUT

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- cleanup --
WORK=
SBX=
SSHD_PID=
PROXY_PID=
NETNS=
SAMPLER_PID=
NOTES=() # lines for the report's notes
declare -A CLIENT_PID=() # mountpoint -> pid of the coupafs/sshfs we started
FAILED=0

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$? m pid
  trap - EXIT INT TERM
  if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; fi
  for m in "${!CLIENT_PID[@]}"; do
    pid=${CLIENT_PID[$m]}
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; fi
    stop_pid "$pid" 10
  done
  if [[ -n $PROXY_PID ]]; then stop_pid "$PROXY_PID" 2; fi
  if [[ -n $NETNS ]]; then ip netns del "$NETNS" 2>/dev/null; fi
  if [[ -n $SBX ]]; then stop_sandbox; fi
  if [[ -n $SBX_TMPFS ]]; then umount "$SBX" 2>/dev/null || umount -l "$SBX" 2>/dev/null; fi
  if [[ -n $WORK && -d $WORK ]]; then
    if ((FAILED)) && [[ -d $WORK/logs ]]; then
      local keep=${OUT%.md}-logs
      rm -rf "$keep" && cp -r "$WORK/logs" "$keep" && log "logs of the failed steps kept in $keep"
    fi
    if [[ $KEEP == 1 ]]; then
      log "kept $WORK"
    else
      # Never follow into a mount that somehow survived.
      for m in "$WORK"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null; done
      rm -rf --one-file-system "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The sandbox's stop scans all of /proc, which can block behind an unrelated
# process stuck in the kernel: give it a minute, then kill the listener and
# its session processes ourselves, by pid.
# shellcheck disable=SC2317  # invoked by the EXIT trap
stop_sandbox() {
  local rc
  timeout -k 5 60 bash "$SANDBOX" stop "$SBX" >/dev/null 2>&1
  rc=$?
  ((rc == 124 || rc == 137)) || return 0
  log "sandbox stop timed out; killing sshd $SSHD_PID and its sessions"
  local queue=("$SSHD_PID") all=() cur kids
  while ((${#queue[@]})); do
    cur=${queue[0]}
    queue=("${queue[@]:1}")
    all+=("$cur")
    kids=''
    { read -r kids <"/proc/$cur/task/$cur/children"; } 2>/dev/null
    # shellcheck disable=SC2206  # pids, split on spaces
    queue+=($kids)
  done
  kill -KILL "${all[@]}" 2>/dev/null
  return 0
}

# Waits up to SECS for PID (ours) to exit, then TERM, then KILL.
stop_pid() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

# ------------------------------------------------------------------ setup --
[[ $(id -u) -eq 0 ]] || die "must run as root (sandbox sshd, FUSE mounts, drop_caches)"

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then apt-get update -q >&2; fi
  apt-get install -y -q --no-install-recommends "$@" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2; }
}
missing=()
command -v sshfs >/dev/null || missing+=(sshfs)
command -v sftp >/dev/null || missing+=(openssh-client)
command -v mountpoint >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
[[ -e /dev/fuse ]] || modprobe fuse 2>/dev/null || true
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: FUSE is not available here"

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
COUPAFS=$TARGET/release/coupafs
PROXY=$TARGET/release/examples/delay_proxy
BUILD_NOTE=
if [[ $NO_BUILD != 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"
  log "cargo build --release (coupafs and the delay proxy example)"
  if ! (cd "$REPO" && cargo build --release --bin coupafs --example delay_proxy >&2); then
    [[ -x $COUPAFS && -x $PROXY ]] || die "cargo build --release failed"
    BUILD_NOTE="cargo build --release failed; benchmarked the existing binaries in $TARGET/release"
    log "WARNING: $BUILD_NOTE"
  fi
fi
[[ -x $COUPAFS ]] || die "$COUPAFS missing"
[[ -x $PROXY ]] || die "$PROXY missing"

BASE=${BENCH_WORKDIR:-/tmp}
WORK=$(mktemp -d "$BASE/coupafs-bench.XXXXXX") || die "mktemp in $BASE failed"
chmod 755 "$WORK"
LOGDIR=$WORK/logs
LOCAL=$WORK/local
mkdir -p "$LOGDIR" "$LOCAL"
RUN_START=$EPOCHREALTIME

SBX=$WORK/sbx
if [[ $SERVER_TMPFS == 1 ]]; then
  # The server's files live in memory: a client that moves data fast would
  # otherwise wait for this machine's disk (a cold read after drop_caches, a
  # journal commit behind a CREATE or RENAME) where a slower client does not.
  mkdir -p "$SBX" && mount -t tmpfs -o mode=755 coupafs-bench "$SBX" || die "tmpfs on $SBX failed"
  SBX_TMPFS=1
fi
# With BENCH_MTU, proxied legs cross a veth pair of that MTU: the delay proxy
# runs in a network namespace of our own (NS_ADDR) and connects to the sandbox
# sshd on the host side of the pair (HOST_ADDR, where sshd listens as well as
# on loopback), so both directions cross the veth link. The pair is set up
# before sshd starts, which needs the address to exist. (Earlier runs had sshd
# on loopback only, behind a relay without delay on HOST_ADDR: a second
# userland copy of every byte on the clients' two cores, which a real WAN
# does not cost the client host.)
# A /30 of 10.231.0.0/16 picked from this run's PID, so that two runs at
# once (two checkouts on one machine) do not claim the same addresses.
NET_BASE=$(( ($$ % 16384) * 4 ))
HOST_ADDR=10.231.$(( NET_BASE / 256 )).$(( NET_BASE % 256 + 1 ))
NS_ADDR=10.231.$(( NET_BASE / 256 )).$(( NET_BASE % 256 + 2 ))
MTU_NOTE=
if [[ -n $MTU ]]; then
  NETNS=coupafs-bench-$$
  veth=cfb$$
  if ip netns add "$NETNS" 2>>"$LOGDIR/netns.log" \
    && ip link add "${veth}h" mtu "$MTU" type veth peer name "${veth}n" mtu "$MTU" 2>>"$LOGDIR/netns.log" \
    && ip link set "${veth}n" netns "$NETNS" \
    && ip addr add "$HOST_ADDR/30" dev "${veth}h" && ip link set "${veth}h" up \
    && ip netns exec "$NETNS" ip addr add "$NS_ADDR/30" dev "${veth}n" \
    && ip netns exec "$NETNS" ip link set "${veth}n" up \
    && ip netns exec "$NETNS" ip link set lo up; then
    MTU_NOTE="RTT > 0 legs cross a veth pair with MTU $MTU (network namespace $NETNS; the proxy there connects to sshd on the pair's host side)."
  else
    ip netns del "$NETNS" 2>/dev/null
    NETNS=
    MTU_NOTE="BENCH_MTU=$MTU could not be set up (ip netns/veth failed, see logs/netns.log): loopback MTU used."
    NOTES+=("$MTU_NOTE")
    log "WARNING: $MTU_NOTE"
  fi
fi

if [[ -n $NETNS ]]; then
  mkdir -p "$SBX" && echo "ListenAddress $HOST_ADDR" >"$SBX/sshd_options" || die "writing $SBX/sshd_options failed"
fi
info=$(bash "$SANDBOX" start "$SBX" 2>"$LOGDIR/sandbox-start.log") || {
  cat "$LOGDIR/sandbox-start.log" >&2
  die "sandbox-server.sh start failed"
}
get() { sed -n "s/^$1=//p" <<<"$info"; }
PORT=$(get PORT) ROOT=$(get ROOT) KEY=$(get KEY) SBX_KH=$(get KNOWN_HOSTS) SSHD_PID=$(get PID)
[[ -n $PORT && -n $ROOT && -n $KEY && -n $SSHD_PID ]] || die "unexpected sandbox output: $info"
KH=$WORK/known_hosts
cp "$SBX_KH" "$KH"
log "sandbox sshd pid $SSHD_PID on 127.0.0.1:$PORT, root $ROOT"

RB=$ROOT/bench # the remote folder every client works in
FIX=$RB/fixtures

# ------------------------------------------------------------------- data --
mib() { echo $(($1 << 20)); }
SEQ_BYTES=$(mib "$SEQ_MIB")
RSS_BYTES=$(mib "$RSS_MIB")

make_data() {
  log "creating local data and server-side fixtures"
  head -c "$SEQ_BYTES" /dev/urandom >"$LOCAL/seq.bin" || return 1
  head -c "$RSS_BYTES" /dev/urandom >"$LOCAL/rss.bin" || return 1
  mkdir -p "$LOCAL/small" "$LOCAL/csv"
  head -c $((SMALL_FILES * SMALL_KIB * 1024)) /dev/urandom \
    | split -b $((SMALL_KIB * 1024)) -a 5 -d --additional-suffix=.dat - "$LOCAL/small/f" || return 1
  # CSV-looking text (compressible, as real exports are).
  local i line
  line="10001,Acme Office Supplies,issued,1250.00,USD,2024-01-01T09:00:00Z,Facilities"
  for ((i = 0; i < CSV_KIB * 1024 / 64 + 1; i++)); do printf '%-63.63s\n' "$i,$line"; done \
    | head -c $((CSV_KIB * 1024)) >"$LOCAL/csv.one"
  for ((i = 0; i < CSV_FILES; i++)); do cp "$LOCAL/csv.one" "$LOCAL/csv/$(printf 'Invoices_%05d' "$i")"; done

  mkdir -p "$FIX/ls" "$FIX/tree"
  head -c "$SEQ_BYTES" /dev/urandom >"$FIX/read.bin" || return 1
  (cd "$FIX/ls" && seq -f 'Invoice_%06g.csv' 1 "$LS_ENTRIES" | xargs touch) || return 1
  local d f
  local dirs=()
  for d in Accounts AccountValidationRules Addresses ApprovalChains BudgetLines BusinessGroups \
    Commodities Contracts Departments ExchangeRates ExpensePayments InvoicePayments Invoices \
    Items LookupValues Receipts RemitToAddresses Requisitions Suppliers Users; do
    dirs+=("Incoming/$d" "Archive/Incoming/$d")
  done
  for d in ExpenseReports Invoices PurchaseOrders Receipts Requisitions Suppliers SupplierInformations; do
    dirs+=("Outgoing/$d")
  done
  for d in "${dirs[@]}"; do
    mkdir -p "$FIX/tree/$d"
    for ((f = 0; f < TREE_FILES; f++)); do
      printf '%s\n' "$line" >"$FIX/tree/$d/${d##*/}_$(printf '%05d' "$f").csv"
    done
  done
  # Coupa-shaped: 4 MiB exports to copy in and to read back, 1 MiB files,
  # a big Archive folder and an Archive tree (issue 14).
  mkdir -p "$LOCAL/coupa" "$FIX/coupa" "$FIX/one" "$FIX/archive" "$FIX/fresh"
  for ((i = 0; i < COUPA_FILES; i++)); do
    f=$(printf 'Invoices_%03d.csv' "$i")
    head -c $((COUPA_MIB << 20)) /dev/urandom >"$LOCAL/coupa/$f" || return 1
    head -c $((COUPA_MIB << 20)) /dev/urandom >"$FIX/coupa/$f" || return 1
  done
  for ((i = 0; i < ONE_MIB_READS; i++)); do
    head -c $((1 << 20)) /dev/urandom >"$FIX/one/$(printf 'Receipts_%03d.csv' "$i")" || return 1
  done
  (cd "$FIX/archive" && seq -f 'Invoices_%06g.csv' 1 "$ARCHIVE_ENTRIES" | xargs touch) || return 1
  for ((d = 0; d < ATREE_DIRS; d++)); do
    mkdir -p "$FIX/atree/$(printf 'Object%02d' "$d")"
    (cd "$FIX/atree/$(printf 'Object%02d' "$d")" && seq -f 'export_%05g.csv' 1 "$ATREE_FILES" | xargs touch) || return 1
  done
  printf 'x\n' >"$FIX/fresh/Invoices_old.csv"
  chown -R "$SFTP_USER:" "$RB"
  TREE_COUNT=$(find "$FIX/tree" | wc -l)
  ATREE_COUNT=$(find "$FIX/atree" | wc -l)
  sync
}
make_data || die "creating test data failed"

# --------------------------------------------------------------- results --
declare -A RES=()   # "rtt|workload|client" -> value or FAIL / n/a

fmt() { # number -> 3 significant-ish digits
  awk -v x="$1" 'BEGIN{ if (x >= 100) printf "%.0f", x; else if (x >= 10) printf "%.1f", x;
    else if (x >= 1) printf "%.2f", x; else printf "%.3f", x }'
}
record() { RES["$1|$2|$3"]=$4; }
# runs RTT WORKLOAD CLIENT VALUE...: the single runs behind a median, listed under the table.
declare -A RUNS=()
runs() { local k="$1|$2|$3"; shift 3; RUNS[$k]="$*"; }
fail() { # rtt workload client message [log]
  FAILED=1
  RES["$1|$2|$3"]=FAIL
  local msg="RTT $1 ms, $2, $3: $4"
  if [[ -n ${5:-} && -s $5 ]]; then
    msg+=$'\n'"    log ${5#"$WORK"/}: $(tail -n 5 "$5" | tr '\n' ' ' | cut -c1-600)"
  fi
  NOTES+=("$msg")
  log "FAIL: $msg"
}

drop_caches() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    [[ -n ${DROP_WARNED:-} ]] || NOTES+=("could not write /proc/sys/vm/drop_caches: reads may be served from a warm page cache")
    DROP_WARNED=1
  fi
}

secs_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.6f", b - a}'; }
per_sec() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s <= 0) s = 1e-6; printf "%.3f", n / s }'; }

# run_timed LOG CMD...: runs CMD under the step timeout, appending its output
# to LOG; sets ELAPSED (seconds). Returns CMD's status (124/137: timeout).
run_timed() {
  local logf=$1 t0 t1 rc
  shift
  echo "+ $*" >>"$logf"
  t0=$EPOCHREALTIME
  timeout -k 10 "$TIMEOUT" "$@" >>"$logf" 2>&1
  rc=$?
  t1=$EPOCHREALTIME
  ELAPSED=$(secs_between "$t0" "$t1")
  ((rc == 0)) || echo "exit status $rc$( ((rc == 124 || rc == 137)) && echo " (timed out after ${TIMEOUT}s)")" >>"$logf"
  return $rc
}

# coupafs' hidden upload temp names: .NAME.coupafs-XXXXXX (X hex).
TEMP_GLOB='*.coupafs-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
# Files (not dirs) and bytes under a server-side folder, coupafs temp files
# excluded (they are counted after the unmount, as strays).
srv_count() { find "$1" -type f ! -name "$TEMP_GLOB" 2>/dev/null | wc -l; }
srv_bytes() { find "$1" -type f ! -name "$TEMP_GLOB" -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

# Peak number of SSH connections: live (non-zombie) children of the sandbox
# sshd listener, one per connection. Read from /proc/PID/task/PID/children
# and the children's own stat files only, without forking: ps(1) scans every
# process and can block behind an unrelated process stuck in the kernel.
CONNS=0
CONN_MAX=0
sample_conns() {
  local kids='' k st
  { read -r kids <"/proc/$SSHD_PID/task/$SSHD_PID/children"; } 2>/dev/null
  CONNS=0
  for k in $kids; do
    { read -r st <"/proc/$k/stat"; } 2>/dev/null || continue
    st=${st##*) }
    [[ ${st%% *} == Z ]] || CONNS=$((CONNS + 1))
  done
  ((CONNS > CONN_MAX)) && CONN_MAX=$CONNS
  return 0
}
# Samples in the background every 20 ms (and once now, once at the stop);
# the peak ends up in CONN_MAX.
start_sampler() {
  local outf=$WORK/conns
  CONN_MAX=0
  sample_conns
  echo "$CONN_MAX" >"$outf"
  (
    while :; do
      old=$CONN_MAX
      sample_conns
      ((CONN_MAX > old)) && echo "$CONN_MAX" >"$outf"
      sleep 0.02
    done
  ) &
  SAMPLER_PID=$!
}
stop_sampler() {
  [[ -n $SAMPLER_PID ]] || return 0
  sample_conns
  kill "$SAMPLER_PID" 2>/dev/null
  wait "$SAMPLER_PID" 2>/dev/null
  SAMPLER_PID=
  local bg
  bg=$(<"$WORK/conns")
  ((bg > CONN_MAX)) && CONN_MAX=$bg
  return 0
}

# --------------------------------------------------------- FUSE clients --
MOUNT_SECS=
# mount_fs KIND PORT MNT LOG: starts coupafs/sshfs in the foreground (in the
# background of this shell, so $! is its pid) and waits for the mount.
mount_fs() {
  local kind=$1 port=$2 m=$3 logf=$4 pid t0 i
  mkdir -p "$m"
  t0=$EPOCHREALTIME
  echo "=== $(date -Is) mount $kind on $m via port $port" >>"$logf"
  if [[ $kind == coupafs ]]; then
    local o="Port=$port,IdentityFile=$KEY,UserKnownHostsFile=$KH"
    [[ -n $COUPAFS_OPTS ]] && o+=",$COUPAFS_OPTS"
    local dbg=()
    [[ $COUPAFS_DEBUG == 1 ]] && dbg=(-d)
    "$COUPAFS" -f "${dbg[@]}" "$SFTP_USER@$HOST:$RB" "$m" -o "$o" </dev/null >>"$logf" 2>&1 &
  else
    sshfs -f "$SFTP_USER@$HOST:$RB" "$m" \
      -o "port=$port,IdentityFile=$KEY,UserKnownHostsFile=$KH,StrictHostKeyChecking=yes,BatchMode=yes" \
      </dev/null >>"$logf" 2>&1 &
  fi
  pid=$!
  CLIENT_PID[$m]=$pid
  for ((i = 0; i < 3000; i++)); do
    if mountpoint -q "$m"; then
      MOUNT_SECS=$(secs_between "$t0" "$EPOCHREALTIME")
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "mount did not appear (process $( kill -0 "$pid" 2>/dev/null && echo alive || echo exited))" >>"$logf"
  umount_fs "$m" "$logf"
  return 1
}

# umount_fs MNT LOG: unmounts and waits for the client process to exit (coupafs
# publishes pending uploads first).
umount_fs() {
  local m=$1 logf=$2 pid=${CLIENT_PID[$1]:-} i
  if mountpoint -q "$m"; then
    for ((i = 0; i < 20; i++)); do
      umount "$m" 2>>"$logf" && break
      sleep 0.5
    done
    mountpoint -q "$m" && { echo "umount failed, lazy unmount" >>"$logf"; umount -l "$m" 2>>"$logf"; }
  fi
  if [[ -n $pid ]]; then
    stop_pid "$pid" 30
    unset "CLIENT_PID[$m]"
  fi
}

peak_rss() { # pid -> VmHWM in MiB
  awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null
}

# Sanity check that a mount still answers; remount if not.
ensure_mounted() {
  local kind=$1 port=$2 m=$3 logf=$4
  if mountpoint -q "$m" && timeout 10 stat "$m/." >/dev/null 2>&1; then return 0; fi
  echo "mount unhealthy, remounting" >>"$logf"
  umount_fs "$m" "$logf"
  mount_fs "$kind" "$port" "$m" "$logf"
}

remount() {
  local kind=$1 port=$2 m=$3 logf=$4
  umount_fs "$m" "$logf"
  mount_fs "$kind" "$port" "$m" "$logf"
}

run_fs_client() {
  local kind=$1 rtt=$2 port=$3
  local m=$WORK/mnt-$kind scratch="out-$kind-rtt$rtt"
  local out=$m/$scratch srv=$RB/$scratch
  local L=$LOGDIR/$kind-rtt$rtt
  local mlog=$L-mount.log wl
  local all=(setup seqw seqr smallseq smallpar conns lscold lswarm csv find du rssw rssr strays
    coupaw coupar onemib archls atree fresh)

  log "RTT $rtt ms: $kind"
  if ! mount_fs "$kind" "$port" "$m" "$mlog"; then
    for wl in "${all[@]}"; do fail "$rtt" "$wl" "$kind" "mount failed" "$mlog"; done
    return
  fi
  record "$rtt" setup "$kind" "$MOUNT_SECS"
  if ! timeout 60 mkdir "$out" 2>>"$mlog"; then
    for wl in "${all[@]:1}"; do fail "$rtt" "$wl" "$kind" "mkdir $out failed" "$mlog"; done
    umount_fs "$m" "$mlog"
    return
  fi

  # 1. sequential write
  wl=$L-seqw.log
  if run_timed "$wl" cp "$LOCAL/seq.bin" "$out/seq.bin"; then
    local sz
    sz=$(stat -c %s "$srv/seq.bin" 2>/dev/null || echo missing)
    if [[ $sz != "$SEQ_BYTES" ]]; then
      fail "$rtt" seqw "$kind" "cp returned but the server has $sz of $SEQ_BYTES bytes in $srv/seq.bin" "$wl"
    elif ! cmp -s "$LOCAL/seq.bin" "$srv/seq.bin"; then
      fail "$rtt" seqw "$kind" "server copy differs from the source (cmp)" "$wl"
    else
      record "$rtt" seqw "$kind" "$(per_sec "$SEQ_MIB" "$ELAPSED")"
    fi
  else
    fail "$rtt" seqw "$kind" "cp $LOCAL/seq.bin $out/seq.bin failed" "$wl"
  fi
  rm -f "$srv/seq.bin"

  # 2. sequential read, cold: fresh mount, dropped page cache
  wl=$L-seqr.log
  if remount "$kind" "$port" "$m" "$mlog"; then
    drop_caches
    if run_timed "$wl" bash -c 'cat "$1" >/dev/null' _ "$m/fixtures/read.bin"; then
      local t=$ELAPSED
      if cmp -s "$m/fixtures/read.bin" "$FIX/read.bin"; then
        record "$rtt" seqr "$kind" "$(per_sec "$SEQ_MIB" "$t")"
      else
        fail "$rtt" seqr "$kind" "content read through the mount differs from the server file (cmp)" "$wl"
      fi
    else
      fail "$rtt" seqr "$kind" "cat $m/fixtures/read.bin failed" "$wl"
    fi
  else
    fail "$rtt" seqr "$kind" "remount failed" "$mlog"
  fi

  # 3. small files: sequential cp -r, then PARALLEL writers (xargs -P)
  ensure_mounted "$kind" "$port" "$m" "$mlog"
  wl=$L-smallseq.log
  if run_timed "$wl" cp -r "$LOCAL/small" "$out/small-seq"; then
    check_files "$rtt" smallseq "$kind" "$srv/small-seq" "$SMALL_FILES" $((SMALL_FILES * SMALL_KIB * 1024)) "$wl" \
      && record "$rtt" smallseq "$kind" "$(per_sec "$SMALL_FILES" "$ELAPSED")"
  else
    fail "$rtt" smallseq "$kind" "cp -r $LOCAL/small $out/small-seq failed" "$wl"
  fi
  wl=$L-smallpar.log
  start_sampler
  if timeout 60 mkdir "$out/small-par" 2>>"$wl" \
    && run_timed "$wl" bash -c 'cd "$1" && printf "%s\0" * | xargs -0 -P "$2" -n "$3" cp -t "$4"' \
      _ "$LOCAL/small" "$PARALLEL" $(((SMALL_FILES + PARALLEL - 1) / PARALLEL)) "$out/small-par"; then
    stop_sampler
    check_files "$rtt" smallpar "$kind" "$srv/small-par" "$SMALL_FILES" $((SMALL_FILES * SMALL_KIB * 1024)) "$wl" \
      && record "$rtt" smallpar "$kind" "$(per_sec "$SMALL_FILES" "$ELAPSED")"
  else
    stop_sampler
    fail "$rtt" smallpar "$kind" "$PARALLEL parallel cp into $out/small-par failed" "$wl"
  fi
  record "$rtt" conns "$kind" "$CONN_MAX"

  # 4. ls -l of a big folder: cold (fresh mount, dropped caches), then warm
  wl=$L-ls.log
  if remount "$kind" "$port" "$m" "$mlog"; then
    drop_caches
    local n
    for pass in cold warm; do
      if run_timed "$wl" bash -c 'ls -l "$1" >"$2"' _ "$m/fixtures/ls" "$WORK/ls.out"; then
        n=$(grep -c 'Invoice_' "$WORK/ls.out")
        if [[ $n == "$LS_ENTRIES" ]]; then
          record "$rtt" "ls$pass" "$kind" "$ELAPSED"
        else
          fail "$rtt" "ls$pass" "$kind" "ls -l listed $n of $LS_ENTRIES entries" "$wl"
        fi
      else
        fail "$rtt" "ls$pass" "$kind" "ls -l $m/fixtures/ls failed" "$wl"
      fi
    done
  else
    fail "$rtt" lscold "$kind" "remount failed" "$mlog"
    fail "$rtt" lswarm "$kind" "remount failed" "$mlog"
  fi

  # 5. batch-job loop: cat src > x.tmp; mv x.tmp x.csv
  ensure_mounted "$kind" "$port" "$m" "$mlog"
  wl=$L-csv.log
  if timeout 60 mkdir "$out/csv" 2>>"$wl" \
    && run_timed "$wl" bash -c 'set -e; for f in "$1"/*; do b=${f##*/}; cat "$f" >"$2/$b.tmp"; mv "$2/$b.tmp" "$2/$b.csv"; done' \
      _ "$LOCAL/csv" "$out/csv"; then
    local ncsv ntmp
    ncsv=$(find "$srv/csv" -name '*.csv' -type f | wc -l)
    ntmp=$(find "$srv/csv" -type f ! -name '*.csv' ! -name "$TEMP_GLOB" | wc -l)
    if [[ $ncsv != "$CSV_FILES" || $ntmp != 0 ]]; then
      fail "$rtt" csv "$kind" "server has $ncsv of $CSV_FILES .csv files and $ntmp other files in $srv/csv" "$wl"
    elif [[ $(srv_bytes "$srv/csv") != $((CSV_FILES * CSV_KIB * 1024)) ]]; then
      fail "$rtt" csv "$kind" "server .csv files total $(srv_bytes "$srv/csv") bytes, expected $((CSV_FILES * CSV_KIB * 1024))" "$wl"
    else
      record "$rtt" csv "$kind" "$(per_sec "$CSV_FILES" "$ELAPSED")"
    fi
  else
    fail "$rtt" csv "$kind" "cat/mv loop into $out/csv failed" "$wl"
  fi

  # 6. find + du -s over the tree, cold
  wl=$L-tree.log
  if remount "$kind" "$port" "$m" "$mlog"; then
    drop_caches
    if run_timed "$wl" bash -c 'find "$1" >"$2"' _ "$m/fixtures/tree" "$WORK/find.out"; then
      local nf
      nf=$(wc -l <"$WORK/find.out")
      if [[ $nf == "$TREE_COUNT" ]]; then
        record "$rtt" find "$kind" "$ELAPSED"
      else
        fail "$rtt" find "$kind" "find listed $nf of $TREE_COUNT paths" "$wl"
      fi
    else
      fail "$rtt" find "$kind" "find $m/fixtures/tree failed" "$wl"
    fi
    if run_timed "$wl" du -s "$m/fixtures/tree"; then
      record "$rtt" du "$kind" "$ELAPSED"
    else
      fail "$rtt" du "$kind" "du -s $m/fixtures/tree failed" "$wl"
    fi
  else
    fail "$rtt" find "$kind" "remount failed" "$mlog"
    fail "$rtt" du "$kind" "remount failed" "$mlog"
  fi

  run_coupa_workloads "$kind" "$rtt" "$port" "$m" "$out" "$srv" "$L" "$mlog"

  # Peak RSS of a fresh client process writing, then reading back, RSS_MIB.
  wl=$L-rss.log
  if remount "$kind" "$port" "$m" "$mlog"; then
    local pid=${CLIENT_PID[$m]}
    if run_timed "$wl" cp "$LOCAL/rss.bin" "$out/rss.bin" \
      && [[ $(stat -c %s "$srv/rss.bin" 2>/dev/null) == "$RSS_BYTES" ]]; then
      record "$rtt" rssw "$kind" "$(peak_rss "$pid")"
      record "$rtt" rsswtp "$kind" "$(per_sec "$RSS_MIB" "$ELAPSED")"
      drop_caches
      if run_timed "$wl" bash -c 'cat "$1" >/dev/null' _ "$out/rss.bin"; then
        record "$rtt" rssr "$kind" "$(peak_rss "$pid")"
      else
        fail "$rtt" rssr "$kind" "cat $out/rss.bin failed" "$wl"
      fi
    else
      fail "$rtt" rssw "$kind" "cp of $RSS_MIB MiB failed or incomplete on the server" "$wl"
    fi
  else
    fail "$rtt" rssw "$kind" "remount failed" "$mlog"
  fi

  umount_fs "$m" "$mlog"
  # Upload temp files still on the server once the client has exited.
  local strays
  strays=$(find "$srv" -type f -name "$TEMP_GLOB" 2>/dev/null | wc -l)
  record "$rtt" strays "$kind" "$strays"
  if ((strays > 0)); then
    FAILED=1
    NOTES+=("RTT $rtt ms, $kind: $strays upload temp file(s) left on the server after unmount, e.g. $(
      find "$srv" -type f -name "$TEMP_GLOB" -printf '%P (%s bytes) ' | head -c 300)")
    log "FAIL: RTT $rtt ms, $kind: $strays stray temp files under $srv"
  fi
  rm -rf "$srv"
}

# median of the arguments (numbers)
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# median_of_runs WID STEP: runs STEP COUPA_RUNS times (its argument is the
# run's number; it sets RUN_VALUE, or calls fail and returns 1) and records
# the median, listing the single runs. STEP and `cold` below are steps of
# run_coupa_workloads and read its locals (rtt, kind, port, m, mlog, wl...):
# bash's scoping is dynamic.
median_of_runs() {
  local wid=$1 step=$2 r vals=()
  for ((r = 1; r <= COUPA_RUNS; r++)); do
    "$step" "$r" || return 0
    vals+=("$RUN_VALUE")
  done
  record "$rtt" "$wid" "$kind" "$(median "${vals[@]}")"
  runs "$rtt" "$wid" "$kind" "${vals[@]}"
}

# cold WID: a fresh mount and dropped caches, or FAIL for WID.
cold() {
  if ! remount "$kind" "$port" "$m" "$mlog"; then
    fail "$rtt" "$1" "$kind" "remount failed" "$mlog"
    return 1
  fi
  drop_caches
}

# 7. COUPA_FILES x COUPA_MIB MiB exports copied in one after another (cp
# each), into a new folder each run.
coupaw_run() {
  if timeout 60 mkdir "$out/coupa$1" 2>>"$wl" \
    && run_timed "$wl" bash -c 'set -e; for f in "$1"/*; do cp "$f" "$2/"; done' _ "$LOCAL/coupa" "$out/coupa$1"; then
    RUN_VALUE=$(per_sec "$COUPA_FILES" "$ELAPSED")
    check_files "$rtt" coupaw "$kind" "$srv/coupa$1" "$COUPA_FILES" "$coupa_bytes" "$wl"
  else
    fail "$rtt" coupaw "$kind" "cp loop into $out/coupa$1 failed" "$wl"
    return 1
  fi
}

# 8. The same number of server files read cold one after another (cat each).
coupar_run() {
  cold coupar || return 1
  if ! run_timed "$wl" bash -c 'set -e; for f in "$1"/*; do cat "$f" >/dev/null; done' _ "$m/fixtures/coupa"; then
    fail "$rtt" coupar "$kind" "cat loop over $m/fixtures/coupa failed" "$wl"
    return 1
  fi
  RUN_VALUE=$(per_sec $((COUPA_FILES * COUPA_MIB)) "$ELAPSED")
  local f
  for f in "$FIX"/coupa/*; do
    if ! cmp -s "$f" "$m/fixtures/coupa/${f##*/}"; then
      fail "$rtt" coupar "$kind" "content read through the mount differs from the server files (cmp)" "$wl"
      return 1
    fi
  done
}

# 10. ls -l of the big Archive folder, cold.
archls_run() {
  cold archls || return 1
  if ! run_timed "$wl" bash -c 'ls -l "$1" >"$2"' _ "$m/fixtures/archive" "$WORK/ls.out"; then
    fail "$rtt" archls "$kind" "ls -l $m/fixtures/archive failed" "$wl"
    return 1
  fi
  RUN_VALUE=$ELAPSED
  local n
  n=$(grep -c 'Invoices_' "$WORK/ls.out")
  if [[ $n != "$ARCHIVE_ENTRIES" ]]; then
    fail "$rtt" archls "$kind" "ls -l listed $n of $ARCHIVE_ENTRIES entries" "$wl"
    return 1
  fi
}

# 11. find over the Archive tree, cold.
atree_run() {
  cold atree || return 1
  if ! run_timed "$wl" bash -c 'find "$1" >"$2"' _ "$m/fixtures/atree" "$WORK/find.out"; then
    fail "$rtt" atree "$kind" "find $m/fixtures/atree failed" "$wl"
    return 1
  fi
  RUN_VALUE=$ELAPSED
  local nf
  nf=$(wc -l <"$WORK/find.out")
  if [[ $nf != "$ATREE_COUNT" ]]; then
    fail "$rtt" atree "$kind" "find listed $nf of $ATREE_COUNT paths" "$wl"
    return 1
  fi
}

# Issue 14's Coupa-shaped workloads on a mounted client; the 4 MiB loops,
# the big ls -l and the find run COUPA_RUNS times (median kept).
run_coupa_workloads() {
  local kind=$1 rtt=$2 port=$3 m=$4 out=$5 srv=$6 L=$7 mlog=$8 wl
  local coupa_bytes=$((COUPA_FILES * COUPA_MIB << 20))

  ensure_mounted "$kind" "$port" "$m" "$mlog"
  wl=$L-coupaw.log
  median_of_runs coupaw coupaw_run
  wl=$L-coupar.log
  median_of_runs coupar coupar_run

  # 9. 1 MiB files read cold one by one (median ms), by paths never listed
  # and (9b) after an `ls` of their folder, as a job reads what its poll
  # found.
  local wid f ok
  for wid in onemib onelisted; do
    wl=$L-$wid.log
    cold "$wid" || continue
    local ms=()
    ok=1
    if [[ $wid == onelisted ]] && ! timeout 60 ls "$m/fixtures/one" >>"$wl" 2>&1; then ok=0; fi
    for f in "$FIX"/one/*; do
      ((ok)) || break
      if run_timed "$wl" cat "$m/fixtures/one/${f##*/}"; then
        ms+=("$(awk -v s="$ELAPSED" 'BEGIN{printf "%.3f", s * 1000}')")
      else ok=0; fi
    done
    if ((ok)); then
      record "$rtt" "$wid" "$kind" "$(median "${ms[@]}")"
      runs "$rtt" "$wid" "$kind" "${ms[@]}"
    else
      fail "$rtt" "$wid" "$kind" "ls or cat of a 1 MiB file failed" "$wl"
    fi
  done

  wl=$L-archls.log
  median_of_runs archls archls_run
  wl=$L-atree.log
  median_of_runs atree atree_run

  # 12. Freshness: a job polls `ls` every POLL s; a file appears on the server
  # (written beside, renamed in, as Coupa publishes): seconds until the job sees it.
  ensure_mounted "$kind" "$port" "$m" "$mlog"
  wl=$L-fresh.log
  local name seen=$WORK/fresh.seen poller t0
  name=Invoices_$kind$rtt.csv
  rm -f "$seen"
  timeout 120 bash -c 'while :; do if ls "$1" 2>/dev/null | grep -qxF "$2"; then date +%s.%N >"$3"; exit 0; fi; sleep "$4"; done' \
    _ "$m/fixtures/fresh" "$name" "$seen" "$POLL" >>"$wl" 2>&1 &
  poller=$!
  sleep 2
  printf 'new\n' >"$FIX/.$name" && chown "$SFTP_USER:" "$FIX/.$name"
  t0=$EPOCHREALTIME
  mv "$FIX/.$name" "$FIX/fresh/$name"
  wait "$poller"
  if [[ -s $seen ]]; then record "$rtt" fresh "$kind" "$(secs_between "$t0" "$(<"$seen")")"; else
    fail "$rtt" fresh "$kind" "the polling job did not see the new file within 120 s" "$wl"; fi
  rm -f "$FIX/fresh/$name"
}

# check_files RTT WL CLIENT SRV_DIR COUNT BYTES LOG
check_files() {
  local n b
  n=$(srv_count "$4")
  b=$(srv_bytes "$4")
  if [[ $n != "$5" || $b != "$6" ]]; then
    fail "$1" "$2" "$3" "server has $n files / $b bytes in $4, expected $5 / $6" "$7"
    return 1
  fi
}

# ------------------------------------------------------------ sftp client --
# sftp_batch LOG BATCH STAMP: one sftp -b session; the batch brackets its
# commands with local `!date` stamps so session setup is not counted.
SFTP_ARGS=()
sftp_batch() {
  timeout -k 10 "$TIMEOUT" sftp -q -b "$2" "${SFTP_ARGS[@]}" "$SFTP_USER@$HOST" >>"$1" 2>&1
}
# batch_file FILE STAMP < commands: writes a batch with start/end stamps.
batch_file() {
  {
    echo "!date +%s.%N >$2.start"
    cat
    echo "!date +%s.%N >$2.end"
  } >"$1"
}
stamp_secs() { # stamp-prefix... -> max(end) - min(start)
  local s
  for s in "$@"; do echo "S $(<"$s.start")"; echo "E $(<"$s.end")"; done \
    | awk '$1=="S" && (lo=="" || $2<lo) {lo=$2} $1=="E" && (hi=="" || $2>hi) {hi=$2}
           END {printf "%.6f", hi - lo}'
}

run_sftp_client() {
  local rtt=$1 port=$2 kind=sftp
  local scratch="out-sftp-rtt$rtt"
  local srv=$RB/$scratch L=$LOGDIR/sftp-rtt$rtt B=$WORK/batch st=$WORK/stamp
  SFTP_ARGS=(-P "$port" -i "$KEY" -o "UserKnownHostsFile=$KH" -o StrictHostKeyChecking=yes -o BatchMode=yes)
  log "RTT $rtt ms: sftp"
  rm -f "$st"*

  # Session setup: a whole sftp run with an empty batch.
  local t0 wl=$L-setup.log
  : >"$B"
  t0=$EPOCHREALTIME
  if sftp_batch "$wl" "$B"; then
    record "$rtt" setup sftp "$(secs_between "$t0" "$EPOCHREALTIME")"
  else
    fail "$rtt" setup sftp "sftp session failed" "$wl"
  fi
  mkdir -p "$srv" && chown "$SFTP_USER:" "$srv"

  wl=$L-seqw.log
  batch_file "$B" "$st" <<<"put $LOCAL/seq.bin $srv/seq.bin"
  if sftp_batch "$wl" "$B" && [[ $(stat -c %s "$srv/seq.bin" 2>/dev/null) == "$SEQ_BYTES" ]]; then
    record "$rtt" seqw sftp "$(per_sec "$SEQ_MIB" "$(stamp_secs "$st")")"
  else
    fail "$rtt" seqw sftp "put of $SEQ_MIB MiB failed or incomplete" "$wl"
  fi
  rm -f "$srv/seq.bin"

  wl=$L-seqr.log
  drop_caches
  batch_file "$B" "$st" <<<"get $FIX/read.bin /dev/null"
  if sftp_batch "$wl" "$B"; then
    record "$rtt" seqr sftp "$(per_sec "$SEQ_MIB" "$(stamp_secs "$st")")"
  else
    fail "$rtt" seqr sftp "get failed" "$wl"
  fi

  wl=$L-smallseq.log
  local f
  batch_file "$B" "$st" < <(
    echo "mkdir $srv/small-seq"
    for f in "$LOCAL"/small/*; do echo "put $f $srv/small-seq/${f##*/}"; done
  )
  if sftp_batch "$wl" "$B"; then
    check_files "$rtt" smallseq sftp "$srv/small-seq" "$SMALL_FILES" $((SMALL_FILES * SMALL_KIB * 1024)) "$wl" \
      && record "$rtt" smallseq sftp "$(per_sec "$SMALL_FILES" "$(stamp_secs "$st")")"
  else
    fail "$rtt" smallseq sftp "batch of puts failed" "$wl"
  fi

  # PARALLEL sftp sessions, each putting its share of the files.
  wl=$L-smallpar.log
  mkdir -p "$srv/small-par" && chown "$SFTP_USER:" "$srv/small-par"
  local files=("$LOCAL"/small/*) i j pids=() stamps=() ok=1
  for ((i = 0; i < PARALLEL; i++)); do
    batch_file "$B.$i" "$st.$i" < <(
      for ((j = i; j < ${#files[@]}; j += PARALLEL)); do
        echo "put ${files[j]} $srv/small-par/${files[j]##*/}"
      done
    )
    stamps+=("$st.$i")
  done
  start_sampler
  for ((i = 0; i < PARALLEL; i++)); do
    sftp_batch "$wl" "$B.$i" &
    pids+=($!)
  done
  local running=1
  while ((running)); do
    sample_conns
    running=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && running=1; done
    ((running)) && sleep 0.02
  done
  for i in "${pids[@]}"; do wait "$i" || ok=0; done
  stop_sampler
  record "$rtt" conns sftp "$CONN_MAX"
  if ((ok)); then
    check_files "$rtt" smallpar sftp "$srv/small-par" "$SMALL_FILES" $((SMALL_FILES * SMALL_KIB * 1024)) "$wl" \
      && record "$rtt" smallpar sftp "$(per_sec "$SMALL_FILES" "$(stamp_secs "${stamps[@]}")")"
  else
    fail "$rtt" smallpar sftp "a parallel sftp session failed" "$wl"
  fi

  wl=$L-ls.log
  drop_caches
  batch_file "$B" "$st" <<<"ls -l $FIX/ls"
  : >"$WORK/ls.out"
  if sftp_batch "$WORK/ls.out" "$B"; then
    local n
    n=$(grep -c 'Invoice_' "$WORK/ls.out")
    if [[ $n == "$LS_ENTRIES" ]]; then
      record "$rtt" lscold sftp "$(stamp_secs "$st")"
    else
      fail "$rtt" lscold sftp "ls -l listed $n of $LS_ENTRIES entries" "$WORK/ls.out"
    fi
  else
    cat "$WORK/ls.out" >>"$wl"
    fail "$rtt" lscold sftp "ls -l failed" "$wl"
  fi
  record "$rtt" lswarm sftp n/a

  wl=$L-csv.log
  batch_file "$B" "$st" < <(
    echo "mkdir $srv/csv"
    for f in "$LOCAL"/csv/*; do
      echo "put $f $srv/csv/${f##*/}.tmp"
      echo "rename $srv/csv/${f##*/}.tmp $srv/csv/${f##*/}.csv"
    done
  )
  if sftp_batch "$wl" "$B"; then
    local ncsv
    ncsv=$(find "$srv/csv" -name '*.csv' -type f | wc -l)
    if [[ $ncsv == "$CSV_FILES" && $(srv_count "$srv/csv") == "$CSV_FILES" ]]; then
      record "$rtt" csv sftp "$(per_sec "$CSV_FILES" "$(stamp_secs "$st")")"
    else
      fail "$rtt" csv sftp "server has $ncsv of $CSV_FILES .csv files" "$wl"
    fi
  else
    fail "$rtt" csv sftp "put/rename batch failed" "$wl"
  fi

  # Coupa-shaped: puts and gets one after another, the big Archive folder.
  wl=$L-coupaw.log
  batch_file "$B" "$st" < <(
    echo "mkdir $srv/coupa"
    for f in "$LOCAL"/coupa/*; do echo "put $f $srv/coupa/${f##*/}"; done
  )
  if sftp_batch "$wl" "$B"; then
    check_files "$rtt" coupaw sftp "$srv/coupa" "$COUPA_FILES" $((COUPA_FILES * COUPA_MIB << 20)) "$wl" \
      && record "$rtt" coupaw sftp "$(per_sec "$COUPA_FILES" "$(stamp_secs "$st")")"
  else
    fail "$rtt" coupaw sftp "batch of puts failed" "$wl"
  fi
  wl=$L-coupar.log
  drop_caches
  batch_file "$B" "$st" < <(for f in "$FIX"/coupa/*; do echo "get $f /dev/null"; done)
  if sftp_batch "$wl" "$B"; then
    record "$rtt" coupar sftp "$(per_sec $((COUPA_FILES * COUPA_MIB)) "$(stamp_secs "$st")")"
  else
    fail "$rtt" coupar sftp "batch of gets failed" "$wl"
  fi
  wl=$L-onemib.log
  drop_caches
  batch_file "$B" "$st" < <(for f in "$FIX"/one/*; do echo "get $f /dev/null"; done)
  if sftp_batch "$wl" "$B"; then
    # One session: the mean of the gets, in ms.
    record "$rtt" onemib sftp "$(awk -v s="$(stamp_secs "$st")" -v n="$ONE_MIB_READS" 'BEGIN{printf "%.3f", s * 1000 / n}')"
  else
    fail "$rtt" onemib sftp "batch of gets failed" "$wl"
  fi
  drop_caches
  batch_file "$B" "$st" <<<"ls -l $FIX/archive"
  : >"$WORK/ls.out"
  if sftp_batch "$WORK/ls.out" "$B"; then
    local n
    n=$(grep -c 'Invoices_' "$WORK/ls.out")
    if [[ $n == "$ARCHIVE_ENTRIES" ]]; then record "$rtt" archls sftp "$(stamp_secs "$st")"; else
      fail "$rtt" archls sftp "ls -l listed $n of $ARCHIVE_ENTRIES entries" "$WORK/ls.out"; fi
  else
    fail "$rtt" archls sftp "ls -l failed" "$WORK/ls.out"
  fi

  for wl in find du rssw rssr rsswtp strays atree fresh; do record "$rtt" "$wl" sftp n/a; done
  rm -rf "$srv"
}

# ------------------------------------------------------------------- run --
# start_proxy OUTFILE LOG ARGS...: starts the proxy (in our namespace when
# the first ARG is `ns`); sets STARTED_PID and STARTED_PORT (empty: failed).
start_proxy() {
  local outf=$1 logf=$2 i
  shift 2
  if [[ $1 == ns ]]; then
    shift
    ip netns exec "$NETNS" "$PROXY" "$@" >"$outf" 2>"$logf" &
  else
    "$PROXY" "$@" >"$outf" 2>"$logf" &
  fi
  STARTED_PID=$!
  for ((i = 0; i < 200; i++)); do
    grep -q '^listening on ' "$outf" && break
    sleep 0.05
  done
  STARTED_PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$outf")
}

for rtt in $RTTS; do
  port=$PORT
  HOST=127.0.0.1
  if ((rtt > 0)) || [[ $PROXY_AT_ZERO == 1 ]]; then
    ((rtt % 2 == 0)) || log "RTT $rtt is odd: using $((rtt / 2)) ms each way"
    if [[ -n $NETNS ]]; then
      start_proxy "$WORK/proxy.out" "$LOGDIR/proxy-rtt$rtt.log" \
        ns --listen "$NS_ADDR:0" --connect "$HOST_ADDR:$PORT" --delay-ms $((rtt / 2))
      HOST=$NS_ADDR
    else
      start_proxy "$WORK/proxy.out" "$LOGDIR/proxy-rtt$rtt.log" \
        --listen 127.0.0.1:0 --connect "127.0.0.1:$PORT" --delay-ms $((rtt / 2))
    fi
    PROXY_PID=$STARTED_PID port=$STARTED_PORT
    [[ -n $port ]] || die "delay proxy did not start: $(cat "$LOGDIR/proxy-rtt$rtt.log")"
    # The proxy's port serves the sandbox's host keys.
    grep "^\[127.0.0.1\]:$PORT " "$SBX_KH" | sed "s/^\[127.0.0.1\]:$PORT /[$HOST]:$port /" >>"$KH"
    log "RTT $rtt ms: delay proxy pid $PROXY_PID on $HOST:$port ($((rtt / 2)) ms each way)"
  fi
  for c in $CLIENTS; do
    if [[ $c == sftp ]]; then run_sftp_client "$rtt" "$port"; else run_fs_client "$c" "$rtt" "$port"; fi
  done
  if [[ -n $PROXY_PID ]]; then
    kill "$PROXY_PID" 2>/dev/null
    wait "$PROXY_PID" 2>/dev/null
    PROXY_PID=
  fi
done

# ----------------------------------------------------------------- table --
# workload id | label | unit | higher-is-better (1) / lower (0) / no ratio (-)
WORKLOADS=(
  "setup|session setup (mount / sftp connect)|s|0"
  "seqw|seq write ${SEQ_MIB} MiB (cp)|MiB/s|1"
  "seqr|seq read ${SEQ_MIB} MiB, cold (cat)|MiB/s|1"
  "smallseq|${SMALL_FILES} x ${SMALL_KIB} KiB files, sequential (cp -r)|files/s|1"
  "smallpar|${SMALL_FILES} x ${SMALL_KIB} KiB files, ${PARALLEL} parallel writers|files/s|1"
  "lscold|ls -l of ${LS_ENTRIES} entries, cold|s|0"
  "lswarm|ls -l of ${LS_ENTRIES} entries, warm|s|0"
  "csv|batch loop ${CSV_FILES} x ${CSV_KIB} KiB (cat > x.tmp; mv x.tmp x.csv)|files/s|1"
  "find|find over tree (${TREE_COUNT} paths), cold|s|0"
  "du|du -s over tree (after find)|s|0"
  "conns|peak SSH connections (parallel workload)|conns|-"
  "rsswtp|copy ${RSS_MIB} MiB into a fresh mount|MiB/s|1"
  "rssw|peak RSS after ${RSS_MIB} MiB write (VmHWM)|MiB|0"
  "rssr|peak RSS after reading it back (VmHWM)|MiB|0"
  "strays|upload temp files left on the server after unmount|files|-"
  "coupaw|${COUPA_FILES} x ${COUPA_MIB} MiB files, cp one after another (median of ${COUPA_RUNS} runs)|files/s|1|rate"
  "coupar|${COUPA_FILES} x ${COUPA_MIB} MiB files, cat one after another, cold (median of ${COUPA_RUNS} runs)|MiB/s|1|mib:${COUPA_MIB}"
  "onemib|1 MiB file read, cold, path never listed (cat; median of ${ONE_MIB_READS})|ms|0|ms"
  "onelisted|1 MiB file read, cold, after ls of its folder (cat; median of ${ONE_MIB_READS})|ms|0|ms"
  "archls|ls -l of a ${ARCHIVE_ENTRIES}-entry Archive folder, cold (median of ${COUPA_RUNS} runs)|s|0"
  "atree|find over ${ATREE_DIRS} folders x ${ATREE_FILES} files, cold (median of ${COUPA_RUNS} runs)|s|0"
  "fresh|new server file seen by a job polling ls every ${POLL} s|s|0"
)
# round_trips RTT VALUE PERFILE: seconds per file / RTT ("-" when not a per-file row).
round_trips() {
  local rtt=$1 v=$2 pf=${3:-}
  [[ -n $pf && $rtt -gt 0 && $v =~ ^[0-9.]+$ ]] || { echo "-"; return; }
  awk -v r="$rtt" -v v="$v" -v pf="$pf" 'BEGIN{
    if (pf == "rate") { if (v <= 0) { print "-"; exit } s = 1 / v }
    else if (pf ~ /^mib:/) { if (v <= 0) { print "-"; exit } s = substr(pf, 5) / v }
    else if (pf == "ms") s = v / 1000
    else s = v
    printf "%.1f", s * 1000 / r }'
}

ratio() { # coupafs other higher_is_better
  local a=$1 b=$2 dir=$3
  [[ $dir == - ]] && { echo "-"; return; }
  [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]] || { echo "-"; return; }
  awk -v a="$a" -v b="$b" -v d="$dir" 'BEGIN{
    if (d == 1) { if (b <= 0) { print "-"; exit } r = a / b }
    else { if (a <= 0) { print "-"; exit } r = b / a }
    printf "%.2f", r }'
}
cell() { # rtt workload client unit
  local v=${RES["$1|$2|$3"]:-}
  if [[ -z $v ]]; then
    [[ " $CLIENTS " == *" $3 "* ]] && echo "-" || echo "not run"
  elif [[ $v =~ ^[0-9.]+$ && $4 != conns && $4 != files ]]; then
    fmt "$v"
  else echo "$v"; fi
}

RUN_SECS=$(secs_between "$RUN_START" "$EPOCHREALTIME")
{
  echo "# coupafs benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc) CPUs; $(ssh -V 2>&1);" \
    "$(sshfs --version 2>&1 | grep -i '^sshfs version' | head -1); coupafs $("$COUPAFS" -V 2>/dev/null | awk '{print $2}')."
  echo "Scale: $SCALE. Server: OpenSSH sshd (internal-sftp) on 127.0.0.1, its files on" \
    "$([[ -n $SBX_TMPFS ]] && echo "a tmpfs (cold means the clients' caches, not the server's disk)" || echo "$BASE's disk");" \
    "RTT > 0 through coupafs-delay-proxy (RTT/2 each way). Run took $(fmt "$RUN_SECS") s."
  [[ -n $BUILD_NOTE ]] && echo "**Note:** $BUILD_NOTE."
  echo
  echo "Ratios are coupafs relative to the other client, oriented so that **> 1 means coupafs is better**"
  echo "(faster, higher throughput, less memory): other/coupafs for s and MiB, coupafs/other for rates."
  echo "sftp times are measured inside the batch (local \`!date\` stamps), so they exclude session setup;"
  echo "the parallel sftp row runs $PARALLEL sftp processes. Mounted clients: time of the shell command;"
  echo "cold = fresh mount and dropped page cache. Peak RSS is the client process' VmHWM"
  echo "(sshfs: the sshfs process only, not its ssh child). Round trips per file: the time per file"
  echo "divided by the emulated RTT (the physical floor is about 1-2 for a read, open + data)."
  [[ -n $MTU_NOTE ]] && echo "$MTU_NOTE"
  for rtt in $RTTS; do
    echo
    echo "## RTT $rtt ms"
    echo
    echo "| workload | unit | coupafs | sshfs | sftp | coupafs/sshfs (>1: coupafs better) | coupafs/sftp (>1: coupafs better) | round trips per file (coupafs / sshfs / sftp) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
      IFS='|' read -r id label unit dir pf <<<"$w"
      c=${RES["$rtt|$id|coupafs"]:-} s=${RES["$rtt|$id|sshfs"]:-} f=${RES["$rtt|$id|sftp"]:-}
      rt=-
      if [[ -n $pf ]] && ((rtt > 0)); then
        rt="$(round_trips "$rtt" "$c" "$pf") / $(round_trips "$rtt" "$s" "$pf") / $(round_trips "$rtt" "$f" "$pf")"
      fi
      echo "| $label | $unit | $(cell "$rtt" "$id" coupafs "$unit") | $(cell "$rtt" "$id" sshfs "$unit")" \
        "| $(cell "$rtt" "$id" sftp "$unit")" \
        "| $(ratio "$c" "$s" "$dir") | $(ratio "$c" "$f" "$dir") | $rt |"
    done
    listed=0
    for w in "${WORKLOADS[@]}"; do
      IFS='|' read -r id label unit dir pf <<<"$w"
      for k in coupafs sshfs sftp; do
        [[ -n ${RUNS["$rtt|$id|$k"]:-} ]] || continue
        if ((!listed)); then
          echo
          echo "Single runs behind the medians (in the order run):"
          echo
          listed=1
        fi
        echo "- $label, $k: $(for v in ${RUNS["$rtt|$id|$k"]}; do printf '%s ' "$(fmt "$v")"; done)$unit"
      done
    done
  done
  if ((${#NOTES[@]})); then
    echo
    echo "## Failures and notes"
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
log "results written to $OUT"
exit 0
