//! `Remote` over SFTP v3 (`crate::ssh::Pool` carries the packets): the one
//! place where the filesystem's vocabulary (`Meta`, intent-named opens,
//! `RemoteError`) meets SFTP's (`Attrs`, pflags, SSH_FX_* status codes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::remote::deadline;
use crate::remote::{
    Committed, DirEntry, Handle, Kind, Meta, RResult, Remote, RemoteError, ReplaceMode, ServerCaps,
    SpaceStats, Twin,
};
use crate::sftp::{self, ext, pflags, status, Attrs, Request, Response, Statvfs};
use crate::ssh::{ConnError, Connection, Pool};

mod readdir;
mod replace;

use readdir::read_dir_on;
#[cfg(test)]
use readdir::{next_readdir_batch, READDIR_FIRST};
use replace::{lock, Capabilities, Ext};

/// SSH_FX_FILE_ALREADY_EXISTS (filexfer-13 9.1; ProFTPD answers it to a
/// RENAME onto an existing name). Not in SFTP v3, so not in `sftp::status`.
const FILE_ALREADY_EXISTS: u32 = 11;

/// An SSH_FX_* status other than OK, in the filesystem's words. The text
/// keeps the server's message and the status number (as `coupafs check`
/// and the log show it).
fn status_err(code: u32, message: String) -> RemoteError {
    let name = match code {
        status::EOF => "end of file",
        status::NO_SUCH_FILE => "no such file",
        status::PERMISSION_DENIED => "permission denied",
        status::FAILURE => "failure",
        status::BAD_MESSAGE => "bad message",
        status::NO_CONNECTION => "no connection",
        status::CONNECTION_LOST => "connection lost",
        status::OP_UNSUPPORTED => "operation unsupported",
        FILE_ALREADY_EXISTS => "file already exists",
        _ => "error",
    };
    let text = if message.is_empty() {
        format!("{name} (status {code})")
    } else {
        format!("{message} (status {code})")
    };
    match code {
        status::NO_SUCH_FILE => RemoteError::NotFound(text),
        status::PERMISSION_DENIED => RemoteError::PermissionDenied(text),
        status::FAILURE => RemoteError::Failure(text),
        status::OP_UNSUPPORTED => RemoteError::Unsupported(format!("the operation ({text})")),
        FILE_ALREADY_EXISTS => RemoteError::AlreadyExists(text),
        _ => RemoteError::Other(text),
    }
}

/// SFTP attributes as `Meta`: the type bits of `permissions` become `kind`.
fn meta_of(a: Attrs) -> Meta {
    let kind = a.perm.map(|p| match p & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFREG => Kind::File,
        _ => Kind::Other,
    });
    Meta {
        kind,
        permissions: a.perm.map(|p| p & 0o7777),
        size: a.size,
        uid: a.uid_gid.map(|(u, _)| u),
        gid: a.uid_gid.map(|(_, g)| g),
        atime: a.atime_mtime.map(|(at, _)| at),
        mtime: a.atime_mtime.map(|(_, m)| m),
    }
}

/// `Meta` to set, as SFTP attributes. SFTP v3 carries uid with gid and
/// atime with mtime (filexfer-02 5): a pair goes only when both are given.
fn attrs_of(m: &Meta) -> Attrs {
    let type_bits = match m.kind {
        Some(Kind::Dir) => libc::S_IFDIR,
        Some(Kind::Symlink) => libc::S_IFLNK,
        Some(Kind::File) => libc::S_IFREG,
        Some(Kind::Other) | None => 0,
    };
    Attrs {
        size: m.size,
        uid_gid: m.uid.zip(m.gid),
        perm: m.permissions.map(|p| type_bits | (p & 0o7777)),
        atime_mtime: m.atime.zip(m.mtime),
    }
}

fn space_of(v: Statvfs) -> SpaceStats {
    SpaceStats {
        block_size: v.bsize,
        fragment_size: v.frsize,
        blocks: v.blocks,
        blocks_free: v.bfree,
        blocks_available: v.bavail,
        files: v.files,
        files_free: v.ffree,
        name_max: v.namemax,
    }
}

/// Bytes per READ / WRITE request (OpenSSH accepts up to 256 KiB).
const IO_CHUNK: usize = 64 * 1024;
/// Bytes per WRITE where the server's pace, not the window, limits an
/// upload (see `write_chunk`): a whole WRITE, header included, fits in
/// the 16 KiB OpenSSH's sftp-server takes in per turn of its loop.
const LAN_WRITE_CHUNK: usize = 16 * 1024 - 64;
/// Requests per pipelined batch.
const MAX_IN_FLIGHT: usize = 64;

/// Below this round trip one SSH channel's flow-control window (sshd's
/// 2 MiB per round trip) is not what limits an upload; the CPU is, and a
/// second connection only adds work. Across a WAN round trip the window
/// limits, and a second connection's window lifts it (scripts/bench.sh).
const STRIPE_MIN_RTT: Duration = Duration::from_millis(3);

/// The least a create waits, after its own reply, for the replies of the
/// twin OPENs sent behind it (`create_new_striped`; otherwise a round
/// trip): they are due at once, and scheduling on a busy client or server
/// delays a reply by milliseconds, not by this much.
const TWIN_GRACE_MIN: Duration = Duration::from_millis(50);

/// Requests timed before the link's round trip decides whether the second
/// connection is opened ahead of need: the mount's own first requests
/// (the root's REALPATH and STAT), so that the first large transfer finds
/// it up. The shortest of them counts, so one slow reply on a loaded
/// machine does not make a loopback mount look like a WAN one.
const WARM_AFTER: u64 = 2;

/// Whether a large upload should also use a second connection.
fn striping_pays(rtt: Duration) -> bool {
    rtt >= STRIPE_MIN_RTT
}

/// Bytes per WRITE request on a link of round trip `rtt`. OpenSSH's
/// sftp-server reads at most 16 KiB from its channel per turn of its loop
/// and handles at most one request per turn (sftp-server.c, `buf[4*4096]`);
/// on a LAN, where that pace limits an upload, WRITEs that fit in one turn
/// went about twice as fast as 64 KiB ones. Across a WAN round trip the
/// channel's window limits instead, and 64 KiB WRITEs keep it full with a
/// quarter of the requests (smaller ones, as many in flight, were slower
/// there: `scripts/bench.sh`).
fn write_chunk(rtt: Duration) -> usize {
    if striping_pays(rtt) {
        IO_CHUNK
    } else {
        LAN_WRITE_CHUNK
    }
}

/// The link's round trip: the shortest single request seen (`seen_us`,
/// u64::MAX for none yet), never more than the INIT exchange took.
fn link_rtt(seen_us: u64, init_rtt: Duration) -> Duration {
    match seen_us {
        u64::MAX => init_rtt,
        us => Duration::from_micros(us).min(init_rtt),
    }
}

/// `Remote` over SFTP.
pub struct SftpRemote {
    pool: Arc<Pool>,
    op_timeout: Duration,
    caps: Capabilities,
    /// Every extension the server advertised (for `coupafs check`); set
    /// once the first connection is known.
    extensions: OnceLock<Vec<String>>,
    /// Aside names of fallback replaces in progress (the janitor leaves
    /// them alone).
    asides: Mutex<Vec<Vec<u8>>>,
    /// Shortest round trip of a single small request seen, in µs: the
    /// link's round trip as striping decides it (`init_rtt` alone also
    /// counts the server starting its SFTP subsystem, milliseconds on a
    /// busy machine, which made a loopback mount stripe and pay for a
    /// second connection's handshake mid-upload).
    min_rtt_us: AtomicU64,
    /// Requests whose round trip was counted into `min_rtt_us`.
    rtts_seen: AtomicU64,
}

/// OPEN flags that create a new file: EXCL, the name must be new
/// (filexfer-02 6.3); TRUNC is moot then.
const CREATE_NEW: u32 = pflags::WRITE | pflags::CREAT | pflags::TRUNC | pflags::EXCL;

fn create_attrs(perm: Option<u32>) -> Attrs {
    Attrs {
        perm: perm.map(|p| p & 0o7777),
        ..Attrs::default()
    }
}

/// Replies to a batch of requests, handed over by the I/O threads: an
/// upload's WRITEs (`write_from`) or a file's twin OPENs. The waiter is
/// woken only when what it waits for has come (a number of replies, or a
/// refusal when it asks for that), not by every reply. Once it gives up
/// (`abandon`), a reply that still comes is handed back to its completion.
#[derive(Default)]
struct Replies {
    state: Mutex<ReplyQueue>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct ReplyQueue {
    arrived: Vec<(usize, Result<Response, ConnError>)>,
    /// While the waiter waits: the number of replies that wakes it (0:
    /// not waiting, nobody to wake).
    wake_at: usize,
    /// A refusal wakes the waiter too.
    wake_on_refusal: bool,
    abandoned: bool,
}

impl Replies {
    /// The reply to request `i` of the batch (on its I/O thread); given
    /// back when the waiter has given up.
    fn arrived(
        &self,
        i: usize,
        reply: Result<Response, ConnError>,
    ) -> Option<Result<Response, ConnError>> {
        let refused = !is_ok_status(&reply);
        let mut q = lock(&self.state);
        if q.abandoned {
            return Some(reply);
        }
        q.arrived.push((i, reply));
        if q.wake_at > 0 && (q.arrived.len() >= q.wake_at || (refused && q.wake_on_refusal)) {
            self.changed.notify_one();
        }
        None
    }

    /// Waits until `n` replies (at least one) have arrived, or with
    /// `on_refusal` a refusal, or `until` passed, and takes all that
    /// arrived.
    fn wait(
        &self,
        n: usize,
        on_refusal: bool,
        until: Option<Instant>,
    ) -> Vec<(usize, Result<Response, ConnError>)> {
        let n = n.max(1);
        let mut q = lock(&self.state);
        loop {
            let refused = on_refusal && q.arrived.iter().any(|(_, r)| !is_ok_status(r));
            let left = until.map(|t| t.saturating_duration_since(Instant::now()));
            if q.arrived.len() >= n || refused || left.is_some_and(|l| l.is_zero()) {
                q.wake_at = 0;
                return std::mem::take(&mut q.arrived);
            }
            q.wake_at = n;
            q.wake_on_refusal = on_refusal;
            q = match left {
                Some(l) => self
                    .changed
                    .wait_timeout(q, l)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0),
                None => self.changed.wait(q).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// Gives up on the replies still to come; takes those that came.
    fn abandon(&self) -> Vec<(usize, Result<Response, ConnError>)> {
        let mut q = lock(&self.state);
        q.abandoned = true;
        std::mem::take(&mut q.arrived)
    }
}

fn is_ok_status(r: &Result<Response, ConnError>) -> bool {
    matches!(
        r,
        Ok(Response::Status {
            code: status::OK,
            ..
        })
    )
}

/// Twin OPENs sent on the other connections, their replies still to come.
struct SentOpens {
    conns: Vec<Arc<Connection>>,
    replies: Arc<Replies>,
}

/// What `send_twin_opens` did.
enum TwinOpens {
    Sent(SentOpens),
    /// No other connection is up yet (one is being opened).
    Later,
    /// Striping would not pay.
    NotWorth,
}

/// Sends `req` (an OPEN) on each of `conns`; `collect_twins` takes the
/// handles. A handle whose reply comes after its waiter gave up is closed
/// on arrival, never left open on the server for the connection's life.
fn submit_opens(conns: Vec<Arc<Connection>>, req: &Request) -> SentOpens {
    let replies = Arc::new(Replies::default());
    for (i, conn) in conns.iter().enumerate() {
        let (replies, on) = (replies.clone(), conn.clone());
        conn.submit(
            req,
            Box::new(move |r| {
                if let Some(Ok(Response::Handle(handle))) = replies.arrived(i, r) {
                    on.submit(&Request::Close { handle }, Box::new(|_| {}));
                }
            }),
        );
    }
    SentOpens { conns, replies }
}

fn unexpected(op: &str, r: &Response) -> RemoteError {
    RemoteError::Protocol(format!("unexpected reply to {op}: {r:?}"))
}

fn expect_ok(op: &str, r: Response) -> RResult<()> {
    match r {
        Response::Status { code, .. } if code == status::OK => Ok(()),
        Response::Status { code, message } => Err(status_err(code, message)),
        other => Err(unexpected(op, &other)),
    }
}

/// WRITE replies that arrived: each frees its connection's slot; the first
/// refusal is kept.
fn count_write_replies(
    arrived: Vec<(usize, Result<Response, ConnError>)>,
    in_flight: &mut [usize],
    first_error: &mut Option<RemoteError>,
) {
    for (i, reply) in arrived {
        in_flight[i] -= 1;
        if let Err(e) = reply
            .map_err(RemoteError::from)
            .and_then(|r| expect_ok("WRITE", r))
        {
            first_error.get_or_insert(e);
        }
    }
}

fn expect_attrs(op: &str, r: Response) -> RResult<Attrs> {
    match r {
        Response::Attrs(a) => Ok(a),
        Response::Status { code, message } => Err(status_err(code, message)),
        other => Err(unexpected(op, &other)),
    }
}

fn expect_handle(op: &str, r: Response, generation: u64) -> RResult<Handle> {
    match r {
        Response::Handle(raw) => Ok(Handle { raw, generation }),
        Response::Status { code, message } => Err(status_err(code, message)),
        other => Err(unexpected(op, &other)),
    }
}

fn expect_single_name(op: &str, r: Response) -> RResult<Vec<u8>> {
    match r {
        Response::Name(mut names) if !names.is_empty() => Ok(names.swap_remove(0).filename),
        Response::Status { code, message } => Err(status_err(code, message)),
        other => Err(unexpected(op, &other)),
    }
}

impl From<ConnError> for RemoteError {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::NotSent(m) | ConnError::Disconnected(m) => RemoteError::Lost(m),
            ConnError::Unreachable(m) => RemoteError::Unreachable(m),
            ConnError::Protocol(m) => RemoteError::Protocol(m),
        }
    }
}

impl SftpRemote {
    /// Wraps a pool whose first connection is up (its extensions decide the
    /// capabilities).
    pub fn new(pool: Arc<Pool>, first: &Connection, op_timeout: Duration) -> Self {
        let remote = Self::new_delayed(pool, op_timeout);
        remote.learn(first);
        remote
    }

    /// Wraps a pool that may have no connection yet (`delay_connect`): the
    /// capabilities are learnt from the first connection an operation gets.
    pub fn new_delayed(pool: Arc<Pool>, op_timeout: Duration) -> Self {
        Self {
            pool,
            op_timeout,
            caps: Capabilities::default(),
            extensions: OnceLock::new(),
            asides: Mutex::new(Vec::new()),
            min_rtt_us: AtomicU64::new(u64::MAX),
            rtts_seen: AtomicU64::new(0),
        }
    }

    /// Takes the server's capabilities from the extensions `conn`
    /// advertised; only the first call counts (refusals learnt later must
    /// not be undone by a reconnect).
    fn learn(&self, conn: &Connection) {
        let names: Vec<String> = conn
            .info
            .version
            .extensions
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        if self.extensions.get().is_some() {
            return;
        }
        let caps = &self.caps;
        // Flags first, then the marker: whoever sees the marker set also
        // sees the flags.
        for e in [Ext::PosixRename, Ext::Statvfs, Ext::Fsync, Ext::Hardlink] {
            caps.flag(e)
                .store(conn.has_extension(e.name()), Ordering::Release);
        }
        if self.extensions.set(names).is_err() {
            return;
        }
        let has = |e: Ext| if caps.has(e) { "yes" } else { "no" };
        log::info!(
            "server capabilities: replace {}, fsync {}, statvfs {}, hardlink {}",
            if caps.has(Ext::PosixRename) {
                "atomic (posix-rename)"
            } else {
                "through a hidden aside name (no posix-rename)"
            },
            has(Ext::Fsync),
            has(Ext::Statvfs),
            has(Ext::Hardlink)
        );
    }

    /// Makes sure the capabilities are known before a decision rests on
    /// them (with `delay_connect` no connection may have been up yet).
    fn ensure_caps(&self) -> RResult<()> {
        if self.extensions.get().is_none() {
            let conn = self.pool.get(deadline::deadline(self.op_timeout))?;
            self.learn(&conn);
        }
        Ok(())
    }

    /// One request on any live connection. `idempotent` requests are sent
    /// again after a reconnect; others only when they never left.
    fn call(&self, req: &Request, idempotent: bool) -> RResult<Response> {
        self.with_conn(idempotent, |conn| conn.call(req))
    }

    /// Runs `exchange` on a live connection within the operation's time
    /// bound, timing it for `saw_round_trip`: again on another connection
    /// when its requests never left, or (`idempotent`) after a reconnect.
    fn with_conn<T>(
        &self,
        idempotent: bool,
        exchange: impl Fn(&Connection) -> Result<T, ConnError>,
    ) -> RResult<T> {
        let deadline = deadline::deadline(self.op_timeout);
        loop {
            let conn = self.pool.get(deadline)?;
            let sent = Instant::now();
            match exchange(&conn) {
                Ok(r) => {
                    self.saw_round_trip(sent.elapsed());
                    return Ok(r);
                }
                Err(ConnError::NotSent(_)) if Instant::now() < deadline => continue,
                Err(ConnError::Disconnected(_)) if idempotent && Instant::now() < deadline => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn saw_round_trip(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let min = self.min_rtt_us.fetch_min(us, Ordering::Relaxed).min(us);
        let seen = self.rtts_seen.fetch_add(1, Ordering::Relaxed) + 1;
        if seen == WARM_AFTER && striping_pays(Duration::from_micros(min)) && self.pool.size() > 1 {
            // The first large read or write of a mount then finds the
            // second connection up (its handshake and login take several
            // round trips) instead of asking for it and going on alone.
            log::debug!(
                "link round trip {:.1} ms: opening the other connections ahead of large transfers",
                min as f64 / 1000.0
            );
            self.pool.open_all();
        }
    }

    fn link_rtt(&self, conn: &Connection) -> Duration {
        link_rtt(self.min_rtt_us.load(Ordering::Relaxed), conn.info.init_rtt)
    }

    fn conn_for(&self, handle: &Handle) -> RResult<Arc<Connection>> {
        self.pool
            .by_generation(handle.generation)
            .ok_or(RemoteError::StaleHandle)
    }

    /// OPENs `path` for writing on every other connection or channel up
    /// (not `of`), `after` from now, without waiting for the replies.
    fn send_twin_opens(&self, path: &[u8], of: &Connection, after: Duration) -> TwinOpens {
        if !striping_pays(self.link_rtt(of)) || self.pool.size() < 2 {
            return TwinOpens::NotWorth;
        }
        let conns = self.pool.get_others(of.generation);
        if conns.is_empty() {
            return TwinOpens::Later;
        }
        // WRITE without CREAT/TRUNC: the file exists and keeps its bytes.
        let req = Request::Open {
            path: path.to_vec(),
            pflags: pflags::WRITE,
            attrs: Attrs::default(),
        };
        if !after.is_zero() {
            std::thread::sleep(after);
        }
        TwinOpens::Sent(submit_opens(conns, &req))
    }

    /// The handles the twin OPENs returned by `deadline`, and the first
    /// refusal. Handles that come later are closed on arrival.
    fn collect_twins(
        &self,
        opens: SentOpens,
        deadline: Instant,
    ) -> (Vec<Handle>, Option<RemoteError>) {
        let mut twins = Vec::new();
        let mut first_error = None;
        let mut arrived = opens.replies.wait(opens.conns.len(), false, Some(deadline));
        arrived.extend(opens.replies.abandon());
        for (i, reply) in arrived {
            match reply
                .map_err(RemoteError::from)
                .and_then(|r| expect_handle("OPEN", r, opens.conns[i].generation))
            {
                Ok(h) => twins.push(h),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (twins, first_error)
    }

    /// Closes whatever the twin OPENs opened, now or when it arrives.
    fn close_twins(&self, opens: SentOpens) {
        for h in self.collect_twins(opens, Instant::now()).0 {
            self.close_quietly(&h);
        }
    }

    fn on_handle(&self, handle: &Handle, req: &Request) -> RResult<Response> {
        Ok(self.conn_for(handle)?.call(req)?)
    }

    fn open(&self, path: &[u8], flags: u32, attrs: Attrs) -> RResult<Handle> {
        let req = Request::Open {
            path: path.to_vec(),
            pflags: flags,
            attrs,
        };
        // Opening for read only is idempotent; with CREAT/TRUNC it is not.
        let idempotent = flags & !pflags::READ == 0;
        let (reply, generation) =
            self.with_conn(idempotent, |conn| Ok((conn.call(&req)?, conn.generation)))?;
        expect_handle("OPEN", reply, generation)
    }

    /// Plain v3 RENAME: fails when `to` exists.
    fn rename_v3(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        self.extended_ok(
            &Request::Rename {
                from: from.to_vec(),
                to: to.to_vec(),
            },
            false,
            "RENAME",
        )
    }

    fn extended_ok(&self, req: &Request, idempotent: bool, op: &str) -> RResult<()> {
        expect_ok(op, self.call(req, idempotent)?)
    }
}

impl Remote for SftpRemote {
    fn handle_alive(&self, handle: &Handle) -> bool {
        self.pool.by_generation(handle.generation).is_some()
    }

    fn lstat(&self, path: &[u8]) -> RResult<Meta> {
        expect_attrs(
            "LSTAT",
            self.call(
                &Request::Lstat {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
        .map(meta_of)
    }

    fn stat(&self, path: &[u8]) -> RResult<Meta> {
        expect_attrs(
            "STAT",
            self.call(
                &Request::Stat {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
        .map(meta_of)
    }

    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>> {
        let deadline = deadline::deadline(self.op_timeout);
        loop {
            let conn = self.pool.get(deadline)?;
            match read_dir_on(&conn, path) {
                Err(RemoteError::Lost(_)) if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    fn open_read(&self, path: &[u8]) -> RResult<Handle> {
        self.open(path, pflags::READ, Attrs::default())
    }

    fn lstat_open_read(&self, path: &[u8]) -> RResult<(Meta, Option<Handle>)> {
        // One batch on one connection: both read-only, so a batch cut by a
        // dropped link is sent again (the handle died with that link).
        let reqs = [
            Request::Lstat {
                path: path.to_vec(),
            },
            Request::Open {
                path: path.to_vec(),
                pflags: pflags::READ,
                attrs: Attrs::default(),
            },
        ];
        let (generation, stat, opened) = self.with_conn(true, |conn| {
            let mut replies = conn.call_many(&reqs).into_iter();
            let stat = replies
                .next()
                .unwrap_or_else(|| Err(ConnError::Protocol("missing reply".into())))?;
            Ok((conn.generation, stat, replies.next()))
        })?;
        let handle = match opened {
            Some(Ok(r)) => expect_handle("OPEN", r, generation).ok(),
            _ => None,
        };
        match expect_attrs("LSTAT", stat) {
            Ok(a) => Ok((meta_of(a), handle)),
            Err(e) => {
                if let Some(h) = handle {
                    self.close_quietly(&h);
                }
                Err(e)
            }
        }
    }

    fn open_read_pair(&self, path: &[u8]) -> RResult<(Handle, Option<Handle>)> {
        let deadline = deadline::deadline(self.op_timeout);
        let first = self.pool.get(deadline)?;
        let other = if striping_pays(first.info.init_rtt) {
            // None starts a second connection for the next file.
            self.pool.get_other(first.generation)
        } else {
            None
        };
        let Some(other) = other else {
            return Ok((self.open_read(path)?, None));
        };
        let req = Request::Open {
            path: path.to_vec(),
            pflags: pflags::READ,
            attrs: Attrs::default(),
        };
        // The twin's OPEN leaves first and is waited for second: both
        // cost the one round trip.
        let opens = submit_opens(vec![other], &req);
        let main = match first.call(&req) {
            Ok(r) => expect_handle("OPEN", r, first.generation),
            // Lost on the way: the retrying path.
            Err(_) => self.open_read(path),
        };
        // Within the call's deadline: a second connection gone slow or
        // silent must not hold the open; its handle, should it come later,
        // is closed then.
        let twin = self.collect_twins(opens, deadline).0.pop();
        match main {
            Ok(h) => Ok((h, twin)),
            Err(e) => {
                if let Some(t) = twin {
                    self.close_quietly(&t);
                }
                Err(e)
            }
        }
    }

    fn create_new(&self, path: &[u8], perm: Option<u32>) -> RResult<Handle> {
        self.open(path, CREATE_NEW, create_attrs(perm))
    }

    fn read(&self, handle: &Handle, offset: u64, len: u32) -> RResult<Vec<u8>> {
        let conn = self.conn_for(handle)?;
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let mut pos = 0usize;
        while pos < len {
            // Pipeline: up to MAX_IN_FLIGHT chunks per batch.
            let mut reqs = Vec::new();
            let mut p = pos;
            while p < len && reqs.len() < MAX_IN_FLIGHT {
                let n = IO_CHUNK.min(len - p);
                reqs.push(Request::Read {
                    handle: handle.raw.clone(),
                    offset: offset + p as u64,
                    len: n as u32,
                });
                p += n;
            }
            let want: Vec<usize> = reqs
                .iter()
                .map(|r| match r {
                    Request::Read { len, .. } => *len as usize,
                    _ => 0,
                })
                .collect();
            for (r, want) in conn.call_many(&reqs).into_iter().zip(want) {
                match r? {
                    Response::Data(d) => {
                        let short = d.len() < want;
                        out.extend_from_slice(&d);
                        if short {
                            // SFTP allows short reads; OpenSSH returns one
                            // only at end of file.
                            return Ok(out);
                        }
                    }
                    Response::Status { code, .. } if code == status::EOF => return Ok(out),
                    Response::Status { code, message } => return Err(status_err(code, message)),
                    other => return Err(unexpected("READ", &other)),
                }
            }
            pos = p;
        }
        Ok(out)
    }

    fn write(&self, handle: &Handle, offset: u64, data: &[u8]) -> RResult<()> {
        let handles = std::slice::from_ref(handle);
        self.write_from(
            handles,
            offset,
            data.len() as u64,
            &mut |at, buf| {
                let start = (at - offset) as usize;
                buf.copy_from_slice(&data[start..start + buf.len()]);
                Ok(())
            },
            &mut |end| end,
            &mut || (),
        )
    }

    fn write_from(
        &self,
        handles: &[Handle],
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
        more: &mut dyn FnMut(u64) -> u64,
        queued: &mut dyn FnMut(),
    ) -> RResult<()> {
        let mut len = len;
        let conns = match handles
            .iter()
            .map(|h| self.conn_for(h))
            .collect::<RResult<Vec<_>>>()
        {
            Ok(conns) if !conns.is_empty() => conns,
            other => {
                queued();
                return Err(other
                    .err()
                    .unwrap_or_else(|| RemoteError::Protocol("write without a handle".into())));
            }
        };
        let chunk = write_chunk(self.link_rtt(&conns[0])) as u64;
        let mut queued = Some(queued);
        // A sliding window per handle, not batches: each acknowledged WRITE
        // lets the next one go, so the link never drains between batches.
        // Each chunk goes to the handle (connection) with the fewest in
        // flight.
        let replies = Arc::new(Replies::default());
        let mut sent = 0u64;
        let mut in_flight = vec![0usize; conns.len()];
        let mut first_error: Option<RemoteError> = None;
        let mut asking = true;
        loop {
            while first_error.is_none() && sent < len {
                let Some((i, _)) = in_flight
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n < MAX_IN_FLIGHT)
                    .min_by_key(|(_, n)| **n)
                else {
                    break;
                };
                let n = (len - sent).min(chunk) as usize;
                let at = offset + sent;
                let done = replies.clone();
                let queued = conns[i].submit_write(
                    &handles[i].raw,
                    at,
                    n,
                    &mut |buf| source(at, buf),
                    Box::new(move |r| {
                        // The writer waits for every reply: none comes back.
                        let _ = done.arrived(i, r);
                    }),
                );
                if let Err(e) = queued {
                    first_error = Some(RemoteError::Protocol(format!("local spool read: {e}")));
                    break;
                }
                sent += n as u64;
                in_flight[i] += 1;
            }
            if asking && first_error.is_none() && sent >= len {
                // Replies already in are taken first: a refusal stops the
                // upload rather than sending more after it.
                let arrived = replies.wait(1, true, Some(Instant::now()));
                count_write_replies(arrived, &mut in_flight, &mut first_error);
                if first_error.is_none() {
                    let end = more(offset + len).max(offset + len);
                    if end > offset + len {
                        len = end - offset;
                        continue;
                    }
                }
                // Stopped: never asked again (the caller may have handed
                // the file on once `queued` ran).
                asking = false;
            }
            let all_sent = sent >= len || first_error.is_some();
            if all_sent {
                if let Some(q) = queued.take() {
                    q();
                }
            }
            if in_flight.iter().all(|n| *n == 0) {
                break;
            }
            // Every submitted request completes exactly once (the I/O thread
            // fails them all when the link dies), so this cannot hang. With
            // more to send, any reply frees room; otherwise the last one
            // (or a refusal) is what the writer waits for.
            let wanted = if all_sent { in_flight.iter().sum() } else { 1 };
            let arrived = replies.wait(wanted, true, None);
            count_write_replies(arrived, &mut in_flight, &mut first_error);
        }
        if let Some(q) = queued.take() {
            q();
        }
        first_error.map_or(Ok(()), Err)
    }

    fn close_quietly(&self, handle: &Handle) {
        if let Ok(conn) = self.conn_for(handle) {
            conn.submit(
                &Request::Close {
                    handle: handle.raw.clone(),
                },
                Box::new(|_| {}),
            );
        }
    }

    fn open_twin(&self, path: &[u8], of: &Handle) -> RResult<Twin> {
        let conn = self.conn_for(of)?;
        match self.send_twin_opens(path, &conn, Duration::ZERO) {
            TwinOpens::Sent(opens) => {
                // Waited for even from background work (whose scope never
                // waits for a connection): these connections are up, and
                // one gone silent is declared dead within the bound.
                let deadline = Instant::now() + self.op_timeout;
                let (twins, first_error) = self.collect_twins(opens, deadline);
                match (twins.is_empty(), first_error) {
                    (false, _) => Ok(Twin::Opened(twins)),
                    (true, Some(e)) => Err(e),
                    (true, None) => Ok(Twin::Later),
                }
            }
            TwinOpens::Later => Ok(Twin::Later),
            TwinOpens::NotWorth => Ok(Twin::NotWorth),
        }
    }

    fn create_new_striped(&self, path: &[u8], perm: Option<u32>) -> RResult<(Handle, Twin)> {
        let req = Request::Open {
            path: path.to_vec(),
            pflags: CREATE_NEW,
            attrs: create_attrs(perm),
        };
        // The twins' OPENs leave on the other connections right behind the
        // create: one round trip for all, where open_twin after the create
        // costs a second. They carry no CREAT, so one that reaches the
        // server before the create (another connection, another sftp-server
        // process: no order between them) fails with NO_SUCH_FILE and
        // creates nothing; a file that already existed fails the create
        // (EXCL), and whatever the twins opened then is closed unused.
        let opens = Mutex::new(None);
        let created = self.with_conn(false, |conn| {
            let reply = conn.call_with(&req, || {
                // A head start for the create: both OPENs travel the same
                // path, and the server must have made the file before the
                // twins' arrive. An eighth of the round trip still saves
                // most of the one open_twin would cost.
                let head_start = self.link_rtt(conn) / 8;
                *lock(&opens) = Some(self.send_twin_opens(path, conn, head_start));
            });
            match reply {
                Ok(r) => Ok((r, conn.generation)),
                Err(e) => {
                    // This attempt is over (with_conn may make another).
                    if let Some(TwinOpens::Sent(o)) = lock(&opens).take() {
                        self.close_twins(o);
                    }
                    Err(e)
                }
            }
        });
        let opens = lock(&opens).take();
        let handle = match created.and_then(|(r, generation)| expect_handle("OPEN", r, generation))
        {
            Ok(h) => h,
            Err(e) => {
                if let Some(TwinOpens::Sent(o)) = opens {
                    self.close_twins(o);
                }
                return Err(e);
            }
        };
        let twin = match opens {
            Some(TwinOpens::Sent(o)) => {
                // They left a head start after the create and travel as
                // long: their replies are due now. A connection that is
                // slower (or wedged) does not hold up the create; `Later`
                // lets a large upload ask `open_twin` then.
                let grace = o
                    .conns
                    .first()
                    .map_or(TWIN_GRACE_MIN, |c| self.link_rtt(c).max(TWIN_GRACE_MIN));
                let (twins, first_error) = self.collect_twins(o, Instant::now() + grace);
                if !twins.is_empty() {
                    Twin::Opened(twins)
                } else if first_error.is_some_and(|e| !e.is_not_found()) {
                    // Refused for another reason: open_twin would be too.
                    Twin::NotWorth
                } else {
                    Twin::Later
                }
            }
            Some(TwinOpens::NotWorth) => Twin::NotWorth,
            Some(TwinOpens::Later) | None => Twin::Later,
        };
        Ok((handle, twin))
    }

    fn close(&self, handle: &Handle) -> RResult<()> {
        expect_ok(
            "CLOSE",
            self.on_handle(
                handle,
                &Request::Close {
                    handle: handle.raw.clone(),
                },
            )?,
        )
    }

    fn commit(
        &self,
        handle: &Handle,
        set: Option<&Meta>,
        from: &[u8],
        to: &[u8],
        replace: bool,
    ) -> RResult<Committed> {
        let conn = self.conn_for(handle)?;
        let mut reqs = Vec::with_capacity(4);
        if let Some(meta) = set {
            reqs.push(Request::Fsetstat {
                handle: handle.raw.clone(),
                attrs: attrs_of(meta),
            });
        }
        // Same batch, so no extra round trip: the server answers in order
        // (OpenSSH's sftp-server handles one request at a time).
        reqs.push(Request::Fstat {
            handle: handle.raw.clone(),
        });
        reqs.push(Request::Close {
            handle: handle.raw.clone(),
        });
        self.ensure_caps()?;
        let posix = replace && self.caps.has(Ext::PosixRename);
        // Without posix-rename, on a server known to refuse RENAME onto an
        // existing name, a replace goes straight to the fallback after the
        // CLOSE: sending a RENAME known to fail would only cost a round trip.
        let straight_to_aside =
            replace && !posix && self.caps.rename_refuses.load(Ordering::Relaxed);
        if !straight_to_aside {
            reqs.push(if posix {
                Request::PosixRename {
                    from: from.to_vec(),
                    to: to.to_vec(),
                }
            } else {
                Request::Rename {
                    from: from.to_vec(),
                    to: to.to_vec(),
                }
            });
        }
        let mut replies = conn.call_many(&reqs);
        let missing = || Err(ConnError::Protocol("missing reply".into()));
        let renamed = if straight_to_aside {
            None
        } else {
            Some(replies.pop().unwrap_or_else(missing))
        };
        let closed = replies.pop().unwrap_or_else(missing);
        let meta = replies
            .pop()
            .and_then(|r| r.ok())
            .and_then(|r| expect_attrs("FSTAT", r).ok())
            .map(meta_of);
        let setstat_error = match replies.pop() {
            Some(r) => expect_ok("FSETSTAT", r?).err(),
            None => None,
        };
        expect_ok("CLOSE", closed?)?;
        let renamed = match renamed {
            None => self.replace_aside(from, to, None),
            Some(r) => match expect_ok("RENAME", r?) {
                Ok(()) => Ok(()),
                Err(e) if e.is_transport() => Err(e),
                Err(e) if posix && Self::marks_absent(Ext::PosixRename, &e) => {
                    self.caps.refused(Ext::PosixRename, &e);
                    self.rename_replacing(from, to)
                }
                Err(e) if posix => Err(e),
                Err(e) if !replace => {
                    // v3 RENAME refuses an existing target (filexfer-02
                    // 6.5): exactly what O_EXCL asked for, whatever status
                    // the server says it with (FAILURE, FILE_ALREADY_EXISTS).
                    if self.lstat(to).is_ok() {
                        Err(RemoteError::AlreadyExists(
                            "the name was taken on the server meanwhile".into(),
                        ))
                    } else {
                        Err(e)
                    }
                }
                Err(e) if e.is_not_found() => Err(e),
                Err(e) => self.replace_aside(from, to, Some(e)),
            },
        };
        renamed?;
        Ok(Committed {
            setstat_error,
            meta,
        })
    }

    fn fsync(&self, handle: &Handle) -> RResult<()> {
        self.ensure_caps()?;
        if !self.caps.has(Ext::Fsync) {
            return Err(RemoteError::Unsupported(ext::FSYNC.into()));
        }
        let r = expect_ok(
            "fsync",
            self.on_handle(
                handle,
                &Request::Fsync {
                    handle: handle.raw.clone(),
                },
            )?,
        );
        match r {
            Err(e) if Self::marks_absent(Ext::Fsync, &e) => {
                self.caps.refused(Ext::Fsync, &e);
                Err(RemoteError::Unsupported(ext::FSYNC.into()))
            }
            other => other,
        }
    }

    fn setstat(&self, path: &[u8], meta: &Meta) -> RResult<()> {
        self.extended_ok(
            &Request::Setstat {
                path: path.to_vec(),
                attrs: attrs_of(meta),
            },
            true,
            "SETSTAT",
        )
    }

    fn remove(&self, path: &[u8]) -> RResult<()> {
        self.extended_ok(
            &Request::Remove {
                path: path.to_vec(),
            },
            false,
            "REMOVE",
        )
    }

    fn mkdir(&self, path: &[u8], perm: u32) -> RResult<Option<Meta>> {
        // MKDIR and an LSTAT of the new folder in one batch on one
        // connection, as `commit` sends CLOSE and RENAME: a server that
        // handles one request at a time (OpenSSH's sftp-server) answers the
        // LSTAT with the new folder, so mkdir(2) costs one round trip. A
        // server that ran the LSTAT first answers "no such file"; the caller
        // then asks again.
        let reqs = [
            Request::Mkdir {
                path: path.to_vec(),
                attrs: Attrs {
                    perm: Some(perm & 0o7777),
                    ..Attrs::default()
                },
            },
            Request::Lstat {
                path: path.to_vec(),
            },
        ];
        let (made, stat) = self.with_conn(false, |conn| {
            let mut replies = conn.call_many(&reqs).into_iter();
            let made = replies
                .next()
                .unwrap_or_else(|| Err(ConnError::Protocol("missing reply".into())))?;
            Ok((made, replies.next()))
        })?;
        expect_ok("MKDIR", made)?;
        Ok(match stat {
            Some(Ok(r)) => expect_attrs("LSTAT", r).ok().map(meta_of),
            _ => None,
        })
    }

    fn rmdir(&self, path: &[u8]) -> RResult<()> {
        self.extended_ok(
            &Request::Rmdir {
                path: path.to_vec(),
            },
            false,
            "RMDIR",
        )
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        self.ensure_caps()?;
        if self.caps.has(Ext::PosixRename) {
            match self.extended_ok(
                &Request::PosixRename {
                    from: from.to_vec(),
                    to: to.to_vec(),
                },
                false,
                "posix-rename",
            ) {
                Err(e) if Self::marks_absent(Ext::PosixRename, &e) => {
                    self.caps.refused(Ext::PosixRename, &e)
                }
                other => return other,
            }
        }
        self.rename_replacing(from, to)
    }

    fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        match self.rename_v3(from, to) {
            // v3 RENAME refuses an existing target (filexfer-02 6.5), and
            // OpenSSH says so only as FAILURE: taken as the name existing.
            // (ProFTPD's FILE_ALREADY_EXISTS already is AlreadyExists.)
            Err(RemoteError::Failure(m)) => Err(RemoteError::AlreadyExists(m)),
            other => other,
        }
    }

    fn readlink(&self, path: &[u8]) -> RResult<Vec<u8>> {
        expect_single_name(
            "READLINK",
            self.call(
                &Request::Readlink {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
    }

    fn symlink(&self, link_path: &[u8], target: &[u8]) -> RResult<()> {
        self.extended_ok(
            &Request::Symlink {
                link_path: link_path.to_vec(),
                target: target.to_vec(),
            },
            false,
            "SYMLINK",
        )
    }

    fn hardlink(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        self.ensure_caps()?;
        if !self.caps.has(Ext::Hardlink) {
            return Err(RemoteError::Unsupported(ext::HARDLINK.into()));
        }
        match self.extended_ok(
            &Request::Hardlink {
                from: from.to_vec(),
                to: to.to_vec(),
            },
            false,
            "hardlink",
        ) {
            Err(e) if Self::marks_absent(Ext::Hardlink, &e) => {
                self.caps.refused(Ext::Hardlink, &e);
                Err(RemoteError::Unsupported(ext::HARDLINK.into()))
            }
            other => other,
        }
    }

    fn statvfs(&self, path: &[u8]) -> RResult<SpaceStats> {
        self.ensure_caps()?;
        if !self.caps.has(Ext::Statvfs) {
            return Err(RemoteError::Unsupported(ext::STATVFS.into()));
        }
        let r = match self.call(
            &Request::Statvfs {
                path: path.to_vec(),
            },
            true,
        )? {
            Response::ExtendedReply(data) => sftp::decode_statvfs(&data)
                .map(space_of)
                .map_err(|e| RemoteError::Protocol(e.to_string())),
            Response::Status { code, message } => Err(status_err(code, message)),
            other => Err(unexpected("statvfs", &other)),
        };
        match r {
            Err(e) if Self::marks_absent(Ext::Statvfs, &e) => {
                self.caps.refused(Ext::Statvfs, &e);
                Err(RemoteError::Unsupported(ext::STATVFS.into()))
            }
            other => other,
        }
    }

    fn replace_mode(&self) -> ReplaceMode {
        // Unknown until a connection was up: the open() that asks will
        // find out at its commit (a replace is never refused up front on
        // a guess).
        let _ = self.ensure_caps();
        if self.caps.has(Ext::PosixRename) {
            ReplaceMode::Atomic
        } else if self.caps.replace_refused.load(Ordering::Relaxed) {
            ReplaceMode::Refuse
        } else {
            ReplaceMode::HiddenAside
        }
    }

    fn capabilities(&self) -> ServerCaps {
        ServerCaps {
            extensions: self.extensions.get().cloned().unwrap_or_default(),
            replace: self.replace_mode(),
            fsync: self.caps.has(Ext::Fsync),
            statvfs: self.caps.has(Ext::Statvfs),
            hardlink: self.caps.has(Ext::Hardlink),
        }
    }

    fn replace_in_progress(&self, aside: &[u8]) -> bool {
        lock(&self.asides).iter().any(|a| a == aside)
    }

    fn realpath(&self, path: &[u8]) -> RResult<Vec<u8>> {
        expect_single_name(
            "REALPATH",
            self.call(
                &Request::Realpath {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trips (batches) a listing of `replies` READDIR replies with
    /// names takes, the EOF reply included.
    fn readdir_round_trips(replies: usize) -> usize {
        let (mut sent, mut batch, mut trips) = (0, READDIR_FIRST, 0);
        while sent <= replies {
            sent += batch;
            batch = next_readdir_batch(batch);
            trips += 1;
        }
        trips
    }

    /// READDIRs go 16-32 deep once a folder proves big. OpenSSH
    /// sends 100 names per reply: a small folder costs one round trip, a
    /// 1,000-entry one two, a 20,000-entry one 8 (50 with 4 in flight).
    #[test]
    fn readdir_depth_ramps_up_to_32() {
        assert_eq!(next_readdir_batch(READDIR_FIRST), 16);
        assert_eq!(next_readdir_batch(16), 32);
        assert_eq!(next_readdir_batch(32), 32);
        assert_eq!(readdir_round_trips(1), 1);
        assert_eq!(readdir_round_trips(10), 2);
        assert_eq!(readdir_round_trips(200), 8);
        assert_eq!(readdir_round_trips(1_000), 33);
    }

    #[test]
    fn writes_fit_sftp_servers_intake_on_a_lan_and_fill_the_window_on_a_wan() {
        assert_eq!(write_chunk(Duration::from_millis(20)), IO_CHUNK);
        assert_eq!(write_chunk(Duration::from_micros(200)), LAN_WRITE_CHUNK);
        // With OpenSSH's 4-byte handles the whole request, length prefix
        // included, fits in the 16 KiB sftp-server reads per turn.
        let mut header = Vec::new();
        crate::sftp::encode_write_header(7, &[0, 0, 0, 1], 0, LAN_WRITE_CHUNK, &mut header);
        assert!(header.len() + LAN_WRITE_CHUNK <= 16 * 1024);
    }

    fn ok() -> Result<Response, ConnError> {
        Ok(Response::Status {
            code: status::OK,
            message: String::new(),
        })
    }

    /// Once every WRITE is sent, the writer is woken by the last reply (or
    /// a refusal), not by each one; while it has more to send, by each.
    #[test]
    fn write_replies_wake_the_writer_only_when_it_can_act() {
        let replies = Arc::new(Replies::default());
        let r = replies.clone();
        let io = std::thread::spawn(move || {
            for lane in 0..3 {
                std::thread::sleep(Duration::from_millis(20));
                let _ = r.arrived(lane, ok());
            }
        });
        let got = replies.wait(3, true, None);
        io.join().expect("io thread");
        assert_eq!(got.len(), 3, "woken once, with all three replies");

        let _ = replies.arrived(1, ok());
        assert_eq!(
            replies.wait(1, true, None).len(),
            1,
            "room in a window: woken at once"
        );
        let r = replies.clone();
        let io = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = r.arrived(
                0,
                Ok(Response::Status {
                    code: status::FAILURE,
                    message: "disk full".into(),
                }),
            );
        });
        let got = replies.wait(2, true, None);
        io.join().expect("io thread");
        assert_eq!(
            got.len(),
            1,
            "a refusal wakes the writer with one still out"
        );
        assert!(!is_ok_status(&got[0].1));
        let _ = replies.arrived(2, Err(ConnError::Disconnected("gone".into())));
        assert_eq!(replies.wait(1, true, None).len(), 1, "the last one");
    }

    #[test]
    fn striping_pays_only_across_a_real_round_trip() {
        assert!(!striping_pays(Duration::from_micros(200)), "loopback");
        assert!(!striping_pays(Duration::from_millis(2)));
        assert!(striping_pays(STRIPE_MIN_RTT));
        assert!(striping_pays(Duration::from_millis(20)), "WAN");
    }

    /// A loaded machine's sshd can take milliseconds to start the SFTP
    /// subsystem (the INIT exchange): a loopback mount must still not
    /// stripe once a plain request came back in a fraction of that.
    #[test]
    fn the_link_round_trip_is_the_shortest_request_seen() {
        let init = Duration::from_millis(6);
        assert_eq!(link_rtt(u64::MAX, init), init, "nothing seen yet");
        assert!(!striping_pays(link_rtt(150, init)), "loopback, busy sshd");
        let wan = link_rtt(20_400, Duration::from_millis(21));
        assert_eq!(wan, Duration::from_micros(20_400));
        assert!(striping_pays(wan), "WAN");
    }

    #[test]
    fn status_codes_become_the_filesystems_words() {
        let e = |code| status_err(code, "m".into());
        assert_eq!(
            e(status::NO_SUCH_FILE),
            RemoteError::NotFound("m (status 2)".into())
        );
        assert_eq!(
            e(status::PERMISSION_DENIED),
            RemoteError::PermissionDenied("m (status 3)".into())
        );
        assert_eq!(
            e(status::FAILURE),
            RemoteError::Failure("m (status 4)".into())
        );
        assert!(matches!(
            e(status::OP_UNSUPPORTED),
            RemoteError::Unsupported(_)
        ));
        // What `coupafs check` and the log show, unchanged by the mapping.
        assert_eq!(
            e(status::PERMISSION_DENIED).to_string(),
            "server: m (status 3)"
        );
        assert_eq!(
            status_err(status::FAILURE, String::new()).to_string(),
            "server: failure (status 4)"
        );
        for code in [
            status::EOF,
            status::BAD_MESSAGE,
            status::NO_CONNECTION,
            status::CONNECTION_LOST,
            99,
        ] {
            assert!(matches!(e(code), RemoteError::Other(_)), "status {code}");
            assert!(
                !e(code).is_transport(),
                "status {code} is the server's word"
            );
        }
    }

    #[test]
    fn attributes_split_type_from_permissions_and_back() {
        let wire = Attrs {
            size: Some(7),
            uid_gid: Some((1, 2)),
            perm: Some(libc::S_IFDIR | 0o750),
            atime_mtime: Some((10, 20)),
        };
        let meta = meta_of(wire.clone());
        assert_eq!(meta.kind, Some(Kind::Dir));
        assert_eq!(meta.permissions, Some(0o750));
        assert_eq!((meta.uid, meta.gid), (Some(1), Some(2)));
        assert_eq!((meta.atime, meta.mtime), (Some(10), Some(20)));
        assert_eq!(attrs_of(&meta), wire);
        let link = meta_of(Attrs {
            perm: Some(libc::S_IFLNK | 0o777),
            ..Attrs::default()
        });
        assert_eq!(link.kind, Some(Kind::Symlink));
        assert_eq!(meta_of(Attrs::default()), Meta::default());
    }

    #[test]
    fn a_change_sets_only_what_it_names() {
        let set = attrs_of(&Meta::change(Some(0o600), None));
        assert_eq!(set.perm, Some(0o600), "no type bits in a chmod");
        assert_eq!(set.atime_mtime, None);
        let set = attrs_of(&Meta::change(None, Some((1, 2))));
        assert_eq!((set.perm, set.atime_mtime), (None, Some((1, 2))));
    }
}
