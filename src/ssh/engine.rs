//! The SFTP request engine: one [`Connection`], its I/O thread and the
//! request table keyed by request id.
//!
//! Callers never touch the transport: they queue encoded packets and wait
//! for their own completion, so any number of FUSE threads keep requests in
//! flight (the sshfs model: one reader per connection, replies matched by
//! id, filexfer-02 section 3: "the server may send replies in any order").
//! The I/O thread owns the transport through the [`Pipe`] seam, a
//! non-blocking byte pipe: the ssh2 channel in production
//! (`session::SshPipe`), an in-memory socket pair in the tests.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lock;
use super::params::{ConnectError, ConnectParams};
use super::session::{self, ConnInfo};
use crate::sftp::{self, Request, Response};

/// `-o sftp_debug`: log every SFTP exchange (see `Connection::traced`).
static SFTP_DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns the per-request SFTP log on or off (process-wide: every
/// connection of the pool).
pub fn set_sftp_debug(on: bool) {
    SFTP_DEBUG.store(on, Ordering::Relaxed);
}

fn show_path(p: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(p))
}

/// A handle as short hex (handles are opaque server tokens, not secrets).
fn show_handle(h: &[u8]) -> String {
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("handle={hex}")
}

fn describe_request(req: &Request) -> String {
    match req {
        Request::Open { path, pflags, .. } => {
            let mut f = Vec::new();
            for (bit, name) in [
                (sftp::pflags::READ, "READ"),
                (sftp::pflags::WRITE, "WRITE"),
                (sftp::pflags::APPEND, "APPEND"),
                (sftp::pflags::CREAT, "CREAT"),
                (sftp::pflags::TRUNC, "TRUNC"),
                (sftp::pflags::EXCL, "EXCL"),
            ] {
                if pflags & bit != 0 {
                    f.push(name);
                }
            }
            format!("OPEN {} flags={}", show_path(path), f.join("|"))
        }
        Request::Close { handle } => format!("CLOSE {}", show_handle(handle)),
        Request::Read {
            handle,
            offset,
            len,
        } => format!("READ {} offset={offset} len={len}", show_handle(handle)),
        Request::Write {
            handle,
            offset,
            data,
        } => format!(
            "WRITE {} offset={offset} len={}",
            show_handle(handle),
            data.len()
        ),
        Request::Lstat { path } => format!("LSTAT {}", show_path(path)),
        Request::Fstat { handle } => format!("FSTAT {}", show_handle(handle)),
        Request::Setstat { path, .. } => format!("SETSTAT {}", show_path(path)),
        Request::Fsetstat { handle, .. } => format!("FSETSTAT {}", show_handle(handle)),
        Request::Opendir { path } => format!("OPENDIR {}", show_path(path)),
        Request::Readdir { handle } => format!("READDIR {}", show_handle(handle)),
        Request::Remove { path } => format!("REMOVE {}", show_path(path)),
        Request::Mkdir { path, .. } => format!("MKDIR {}", show_path(path)),
        Request::Rmdir { path } => format!("RMDIR {}", show_path(path)),
        Request::Realpath { path } => format!("REALPATH {}", show_path(path)),
        Request::Stat { path } => format!("STAT {}", show_path(path)),
        Request::Rename { from, to } => {
            format!("RENAME {} -> {}", show_path(from), show_path(to))
        }
        Request::Readlink { path } => format!("READLINK {}", show_path(path)),
        Request::Symlink { link_path, target } => {
            format!("SYMLINK {} -> {}", show_path(link_path), show_path(target))
        }
        Request::PosixRename { from, to } => {
            format!("posix-rename {} -> {}", show_path(from), show_path(to))
        }
        Request::Statvfs { path } => format!("statvfs {}", show_path(path)),
        Request::Fsync { handle } => format!("fsync {}", show_handle(handle)),
        Request::Hardlink { from, to } => {
            format!("hardlink {} -> {}", show_path(from), show_path(to))
        }
    }
}

fn describe_reply(r: &Result<Response, ConnError>) -> String {
    match r {
        Ok(Response::Status { code, message }) => format!("STATUS {code} {message:?}"),
        Ok(Response::Handle(h)) => format!("HANDLE {}", show_handle(h)),
        Ok(Response::Data(d)) => format!("DATA len={}", d.len()),
        Ok(Response::Name(n)) => format!("NAME entries={}", n.len()),
        Ok(Response::Attrs(a)) => match a.size {
            Some(size) => format!("ATTRS size={size}"),
            None => "ATTRS".into(),
        },
        Ok(Response::ExtendedReply(d)) => format!("EXTENDED_REPLY len={}", d.len()),
        Err(e) => format!("no reply: {e}"),
    }
}

/// The transport under the I/O thread: a non-blocking byte pipe.
///
/// `read` and `write` return `Err(WouldBlock)` (or `Ok(0)`) when they cannot
/// progress now; the I/O thread then polls `poll_target` and its wake fd.
pub(crate) trait Pipe: Send + 'static {
    /// Bytes received, `Ok(0)` when none now or at end of stream (then
    /// `eof` is true).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes taken. After `WouldBlock` the same bytes are offered again
    /// (libssh2 requires it).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The peer closed its end.
    fn eof(&self) -> bool;
    /// The fd to poll and the events that mean the pipe can progress.
    fn poll_target(&self) -> (RawFd, libc::c_short);
    /// Bytes for this pipe already taken off the transport and waiting to
    /// be read: polling the fd would not wake for them. libssh2 reads
    /// whatever packet comes next while serving any channel of the session
    /// (a write, too, first reads what has arrived), so one lane's call can
    /// leave another lane's reply in libssh2's queue.
    fn buffered(&self) -> bool;
    /// The peer's flow-control window has room now. A window adjust can
    /// arrive the same way, taken in by another lane's call, after this
    /// lane's write stopped at a closed window.
    fn write_room(&self) -> bool;
    /// Ends the transport, best effort; called once as the thread exits.
    fn shutdown(&mut self);
}

/// Why a connection ended. Steers whether outstanding replies are awaited
/// and how loudly the end is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The mount is being unmounted: a clean end, logged at info.
    Unmount,
    /// The owner is done with it (dropped, `coupafs check` finished): a
    /// clean end, not logged; replies already outstanding are awaited.
    Done,
    /// A caller got no reply within the operation timeout.
    ReplyTimeout,
    /// The link failed: transport error, end of stream, a reply that does
    /// not fit the request table, or silence past the dead-link bound.
    LinkDead(String),
}

impl CloseReason {
    fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Unmount | CloseReason::Done)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Unmount => f.write_str("unmounted"),
            CloseReason::Done => f.write_str("connection closed"),
            CloseReason::ReplyTimeout => f.write_str("no reply within the operation timeout"),
            CloseReason::LinkDead(m) => f.write_str(m),
        }
    }
}

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnError {
    /// The request never left this process (the connection was already
    /// down): safe to retry any operation.
    NotSent(String),
    /// The connection died with the request outstanding (outcome unknown) or
    /// before it was sent.
    Disconnected(String),
    /// No connection could be made within the caller's deadline.
    Unreachable(String),
    /// The server replied with something that does not fit the request.
    Protocol(String),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::NotSent(m) | ConnError::Disconnected(m) => {
                write!(f, "connection lost: {m}")
            }
            ConnError::Unreachable(m) => write!(f, "server unreachable: {m}"),
            ConnError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

/// Called exactly once with the reply (or the reason there is none).
pub(crate) type Completion = Box<dyn FnOnce(Result<Response, ConnError>) + Send>;

/// Queued packets, split so small requests overtake bulk WRITE data (a big
/// upload otherwise halves the small-file rate; see doc/ARCHITECTURE.md).
#[derive(Default)]
struct Queues {
    small: VecDeque<Outgoing>,
    bulk: VecDeque<Outgoing>,
    closed: Option<CloseReason>,
}

struct Outgoing {
    id: u32,
    bytes: Vec<u8>,
    done: Completion,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: OwnedFd,
    next_id: AtomicU32,
    /// Requests queued or outstanding.
    in_flight: AtomicUsize,
    dead: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our own eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    fn drain_wake(&self) {
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from a non-blocking eventfd.
        unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// One SFTP channel of an SSH session, served by the session's I/O
/// thread. A session usually carries one; one opened for striping may carry
/// more (`Connection::connect_lanes`), each with its own flow-control
/// window, request ids and handles.
pub struct Connection {
    shared: Arc<Shared>,
    /// Held for its drop: the session's last lane joins the thread.
    _session: Arc<SessionThread>,
    pub info: ConnInfo,
    /// Unique per connection ever made by this process: handles remember it
    /// so a handle from a dead connection is never sent on a new one.
    pub(crate) generation: u64,
    /// Longest a caller waits for one reply.
    reply_bound: Duration,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A session's I/O thread, joined when the last of its lanes' `Connection`s
/// is dropped (each closes its lane first, so the thread has ended or is
/// ending).
struct SessionThread {
    thread: Option<JoinHandle<()>>,
}

impl Drop for SessionThread {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // A completion running on the thread itself may hold the last
            // lane: joining there would wait forever.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        LIVE_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sessions alive in this process (any of their lanes' `Connection`s
/// held), and I/O threads still running: each holds a libssh2 session,
/// buffers and request tables, so both must come back down after a
/// reconnect (memory bounded by `max_conns`, not by the number of
/// reconnects).
static LIVE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_IO_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Returns the heap pages a finished connection freed to the system.
/// glibc keeps freed memory in per-thread arenas; each new I/O thread may
/// be served from another arena, so without this the resident size ratchets
/// up with every reconnect under load (the peak of each arena stays
/// resident) instead of staying at the peak of one connection set.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// (connections alive, I/O threads running) in this process.
pub(crate) fn live_counts() -> (usize, usize) {
    (
        LIVE_CONNECTIONS.load(Ordering::Relaxed),
        LIVE_IO_THREADS.load(Ordering::Relaxed),
    )
}

/// `Liveness::idle_poll` on a real connection.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How the I/O thread watches the link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness {
    /// Outstanding requests unanswered this long declare the link dead.
    pub(crate) dead_after: Duration,
    /// Probe an idle link after this long (0 = never).
    pub(crate) keepalive: Duration,
    /// The longest the I/O thread sleeps with nothing to do: how often the
    /// two checks above run.
    pub(crate) idle_poll: Duration,
}

impl Connection {
    /// Connects, verifies the host key, authenticates, starts SFTP and the
    /// I/O thread.
    pub(crate) fn connect(params: &ConnectParams) -> Result<Connection, ConnectError> {
        let mut lanes = Connection::connect_lanes(params, 1)?;
        Ok(lanes.swap_remove(0))
    }

    /// `connect` with up to `lanes` SFTP channels on the one session (the
    /// first is required; the others are best effort): each channel brings
    /// its own flow-control window without another login.
    pub(crate) fn connect_lanes(
        params: &ConnectParams,
        lanes: usize,
    ) -> Result<Vec<Connection>, ConnectError> {
        let est = session::establish(params, lanes)?;
        let liveness = Liveness {
            dead_after: params.dead_after(),
            keepalive: params.keepalive_interval,
            idle_poll: IDLE_POLL,
        };
        Connection::start_lanes(est.lanes, liveness).map_err(|e| ConnectError::Sftp(e.to_string()))
    }

    /// Starts one I/O thread serving every lane (the first lane's pipe owns
    /// the session); one `Connection` per lane, in the same order.
    pub(crate) fn start_lanes<P: Pipe>(
        lanes: Vec<(P, sftp::Framer, ConnInfo)>,
        liveness: Liveness,
    ) -> io::Result<Vec<Connection>> {
        let mut io_lanes = Vec::with_capacity(lanes.len());
        let mut shells = Vec::with_capacity(lanes.len());
        for (pipe, framer, info) in lanes {
            // SAFETY: eventfd returns a new fd we own, or -1.
            let wake_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if wake_fd < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("eventfd: {e}")));
            }
            // SAFETY: wake_fd is a fresh, valid fd owned by nobody else.
            let wake = unsafe { OwnedFd::from_raw_fd(wake_fd) };
            let shared = Arc::new(Shared {
                queues: Mutex::new(Queues::default()),
                wake,
                next_id: AtomicU32::new(1),
                in_flight: AtomicUsize::new(0),
                dead: AtomicBool::new(false),
            });
            io_lanes.push(io_thread::Lane::new(pipe, shared.clone(), framer));
            shells.push((shared, info, GENERATION.fetch_add(1, Ordering::Relaxed)));
        }
        let first = shells.first().map(|s| s.2).unwrap_or(0);
        let io = io_thread::IoThread {
            lanes: io_lanes,
            dead_after: liveness.dead_after,
            keepalive: liveness.keepalive,
            idle_poll: liveness.idle_poll,
        };
        LIVE_IO_THREADS.fetch_add(1, Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name(format!("sftp-io-{first}"))
            .spawn(move || {
                io.run();
                LIVE_IO_THREADS.fetch_sub(1, Ordering::Relaxed);
                give_back_freed_memory();
            })
            .map_err(|e| {
                LIVE_IO_THREADS.fetch_sub(1, Ordering::Relaxed);
                io::Error::new(e.kind(), format!("spawning I/O thread: {e}"))
            })?;
        LIVE_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(SessionThread {
            thread: Some(thread),
        });
        Ok(shells
            .into_iter()
            .map(|(shared, info, generation)| Connection {
                shared,
                _session: session.clone(),
                info,
                generation,
                reply_bound: liveness.dead_after + Duration::from_secs(5),
            })
            .collect())
    }

    /// True once the I/O thread has given up on this connection.
    pub(crate) fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    /// Requests queued or awaiting a reply.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn has_extension(&self, name: &str) -> bool {
        self.info.version.has_extension(name)
    }

    /// Queues `req`; `done` runs on the I/O thread with the reply.
    pub(crate) fn submit(&self, req: &Request, done: Completion) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let done = self.traced(id, || describe_request(req), done);
        let mut bytes = Vec::new();
        sftp::encode_request(id, req, &mut bytes);
        let bulk = matches!(req, Request::Write { .. });
        self.enqueue(Outgoing { id, bytes, done }, bulk);
    }

    /// Queues an SSH_FXP_WRITE of `len` bytes whose data `fill` writes
    /// straight into the packet buffer (no intermediate copy of bulk data).
    pub(crate) fn submit_write(
        &self,
        handle: &[u8],
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
        done: Completion,
    ) -> io::Result<()> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let done = self.traced(
            id,
            || format!("WRITE {} offset={offset} len={len}", show_handle(handle)),
            done,
        );
        let mut bytes = Vec::with_capacity(4 + 1 + 4 + 4 + handle.len() + 8 + 4 + len);
        sftp::encode_write_header(id, handle, offset, len, &mut bytes);
        let start = bytes.len();
        bytes.resize(start + len, 0);
        fill(&mut bytes[start..])?;
        self.enqueue(Outgoing { id, bytes, done }, true);
        Ok(())
    }

    /// With `-o sftp_debug`: wraps `done` so the exchange is logged as one
    /// line when its reply (or failure) arrives: connection, request id,
    /// type, path or handle, reply status and round-trip time. Never file
    /// contents (WRITE and DATA show lengths only).
    fn traced(&self, id: u32, what: impl FnOnce() -> String, done: Completion) -> Completion {
        if !SFTP_DEBUG.load(Ordering::Relaxed) {
            return done;
        }
        let what = what();
        let generation = self.generation;
        let sent = Instant::now();
        Box::new(move |r| {
            log::info!(
                "sftp[{generation}] #{id} {what} -> {} ({:.2} ms)",
                describe_reply(&r),
                sent.elapsed().as_secs_f64() * 1000.0
            );
            done(r)
        })
    }

    fn enqueue(&self, item: Outgoing, bulk: bool) {
        let mut q = lock(&self.shared.queues);
        if let Some(reason) = &q.closed {
            let reason = reason.to_string();
            drop(q);
            (item.done)(Err(ConnError::NotSent(reason)));
            return;
        }
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        if bulk {
            q.bulk.push_back(item);
        } else {
            q.small.push_back(item);
        }
        drop(q);
        self.shared.wake();
    }

    /// Sends `req` and waits for its reply. Never waits forever: the I/O
    /// thread fails every outstanding request when the link is declared dead.
    pub(crate) fn call(&self, req: &Request) -> Result<Response, ConnError> {
        self.call_with(req, || ())
    }

    /// `call`, running `meanwhile` once `req` is queued and before its
    /// reply is awaited: requests it sends on other connections leave right
    /// behind this one.
    pub(crate) fn call_with(
        &self,
        req: &Request,
        meanwhile: impl FnOnce(),
    ) -> Result<Response, ConnError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(
            req,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        meanwhile();
        // The I/O thread fails outstanding requests once the link is silent
        // for `dead_after`; this bound only guards against a wedged thread.
        match rx.recv_timeout(self.reply_bound) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.close(CloseReason::ReplyTimeout);
                Err(ConnError::Disconnected(
                    CloseReason::ReplyTimeout.to_string(),
                ))
            }
            Err(_) => Err(ConnError::Disconnected("I/O thread gone".into())),
        }
    }

    /// Sends all `reqs` back to back (pipelined) and waits for every reply,
    /// returned in the same order.
    pub(crate) fn call_many(&self, reqs: &[Request]) -> Vec<Result<Response, ConnError>> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, req) in reqs.iter().enumerate() {
            let tx = tx.clone();
            self.submit(
                req,
                Box::new(move |r| {
                    let _ = tx.send((i, r));
                }),
            );
        }
        drop(tx);
        let mut out: Vec<Option<Result<Response, ConnError>>> = vec![None; reqs.len()];
        for (i, r) in rx.iter() {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ConnError::Disconnected("I/O thread gone".into()))))
            .collect()
    }

    /// Ends the link (shutdown, a reply timeout, tests of reconnect). The
    /// first reason given wins.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut q = lock(&self.shared.queues);
        if q.closed.is_none() {
            q.closed = Some(reason);
        }
        drop(q);
        self.shared.wake();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Then `_session` goes: the last lane's joins the thread.
        self.close(CloseReason::Done);
    }
}

mod io_thread;

#[cfg(test)]
mod tests;
