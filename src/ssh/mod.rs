//! SSH transport and the SFTP request engine.
//!
//! ssh2 (libssh2) carries the SSH layer only: TCP, handshake, host-key check,
//! authentication and one `session` channel running the `sftp` subsystem.
//! SFTP itself is spoken by `crate::sftp` over that channel, with one I/O
//! thread per connection that owns the libssh2 session in non-blocking mode
//! and multiplexes every outstanding request by request id (the sshfs model:
//! a request table keyed by id, one reader per connection). Callers never
//! touch the session; they queue encoded packets and wait for their own
//! completion, so any number of FUSE threads keep requests in flight.
//!
//! `Pool` owns up to `max_conns` connections, reconnects with backoff, and
//! bounds how long a caller waits for an unreachable server.

pub mod crypto;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use ssh2::{BlockDirections, CheckResult, KnownHostFileKind, Session};

use crate::cli::HostKeyPolicy;
use crate::sftp::{self, Request, Response, Version};

/// A secret (password, passphrase) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to open one SSH connection with an SFTP channel.
#[derive(Clone, Debug)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub password: Option<Secret>,
    pub passphrase: Option<Secret>,
    /// Try ssh-agent (when `SSH_AUTH_SOCK` is set).
    pub use_agent: bool,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub host_key_fingerprint: Option<String>,
    pub connect_timeout: Duration,
    /// Probe an idle connection after this long (0 = never).
    pub keepalive_interval: Duration,
    pub keepalive_count_max: u32,
    /// A connection with outstanding requests and no reply for this long is
    /// declared dead when keepalives are off.
    pub reply_timeout: Duration,
}

impl ConnectParams {
    /// How long outstanding requests may go unanswered before the link is
    /// declared dead (ServerAliveInterval x ServerAliveCountMax, as in ssh).
    fn dead_after(&self) -> Duration {
        if self.keepalive_interval.is_zero() {
            self.reply_timeout
        } else {
            // A link that answers nothing for the operation timeout is dead
            // too: callers must not wait longer than that.
            (self.keepalive_interval * self.keepalive_count_max.max(1)).min(self.reply_timeout)
        }
    }
}

/// Why a connection could not be established. Each message is meant for an
/// admin reading the mount's stderr or journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// DNS or TCP: the server could not be reached at all.
    Unreachable(String),
    /// SSH handshake failed.
    Handshake(String),
    /// Host key not trusted (unknown, changed, or not the pinned one).
    HostKey(String),
    /// No authentication method worked.
    Auth(String),
    /// SFTP subsystem refused or spoke garbage.
    Sftp(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unreachable(m) => write!(f, "cannot reach server: {m}"),
            ConnectError::Handshake(m) => write!(f, "SSH handshake failed: {m}"),
            ConnectError::HostKey(m) => write!(f, "host key verification failed: {m}"),
            ConnectError::Auth(m) => write!(f, "authentication failed: {m}"),
            ConnectError::Sftp(m) => write!(f, "SFTP subsystem failed: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// Errors that retrying cannot fix (wrong key, wrong password).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConnectError::HostKey(_) | ConnectError::Auth(_))
    }
}

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnError {
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
pub type Completion = Box<dyn FnOnce(Result<Response, ConnError>) + Send>;

/// SHA256 fingerprint as OpenSSH prints it (`SHA256:` + unpadded base64).
pub fn fingerprint(key: &[u8]) -> String {
    let digest = sha2::Sha256::digest(key);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// known_hosts spells non-default ports as `[host]:port`.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Information about an established connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub version: Version,
    /// Time from SFTP INIT to VERSION: about one network round trip.
    pub init_rtt: Duration,
    pub auth_method: String,
    pub host_key_fingerprint: String,
    pub host_key_status: String,
}

/// Queued packets, split so small requests overtake bulk WRITE data (a big
/// upload otherwise halves the small-file rate; see doc/ARCHITECTURE.md).
#[derive(Default)]
struct Queues {
    small: VecDeque<Outgoing>,
    bulk: VecDeque<Outgoing>,
    closed: Option<String>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// One SSH connection with its SFTP channel and I/O thread.
pub struct Connection {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pub info: ConnInfo,
    /// Unique per connection ever made by this process: handles remember it
    /// so a handle from a dead connection is never sent on a new one.
    pub generation: u64,
    /// Longest a caller waits for one reply.
    reply_bound: Duration,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Connection {
    /// Connects, verifies the host key, authenticates, starts SFTP and the
    /// I/O thread.
    pub fn connect(params: &ConnectParams) -> Result<Connection, ConnectError> {
        let tcp = connect_tcp(params)?;
        let socket_fd = tcp.as_raw_fd();
        let mut session = Session::new().map_err(|e| ConnectError::Handshake(e.to_string()))?;
        session.set_tcp_stream(tcp);
        let timeout_ms = u32::try_from(params.connect_timeout.as_millis()).unwrap_or(u32::MAX);
        session.set_timeout(timeout_ms);
        session
            .handshake()
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let (host_key_fingerprint, host_key_status) = verify_host_key(&session, params)?;
        let auth_method = authenticate(&session, params)?;
        let mut channel = session
            .channel_open("session", 16 << 20, 32768, None)
            .map_err(|e| ConnectError::Sftp(format!("opening channel: {e}")))?;
        channel
            .subsystem("sftp")
            .map_err(|e| ConnectError::Sftp(format!("starting sftp subsystem: {e}")))?;
        let mut init = Vec::new();
        sftp::encode_init(&mut init);
        let init_sent = Instant::now();
        channel
            .write_all(&init)
            .map_err(|e| ConnectError::Sftp(format!("sending INIT: {e}")))?;
        let mut framer = sftp::Framer::new();
        let mut buf = vec![0u8; 32 * 1024];
        let version = loop {
            match framer.next_packet() {
                Ok(Some(packet)) => {
                    break sftp::decode_version(&packet)
                        .map_err(|e| ConnectError::Sftp(e.to_string()))?
                }
                Ok(None) => {}
                Err(e) => return Err(ConnectError::Sftp(e.to_string())),
            }
            let n = channel
                .read(&mut buf)
                .map_err(|e| ConnectError::Sftp(format!("reading VERSION: {e}")))?;
            if n == 0 {
                return Err(ConnectError::Sftp(
                    "server closed the channel before VERSION (is the sftp subsystem enabled?)"
                        .into(),
                ));
            }
            framer.push(&buf[..n]);
        };
        let init_rtt = init_sent.elapsed();
        session.set_blocking(false);

        // SAFETY: eventfd returns a new fd we own, or -1.
        let wake_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wake_fd < 0 {
            return Err(ConnectError::Sftp(format!(
                "eventfd: {}",
                io::Error::last_os_error()
            )));
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
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let io = IoThread {
            session,
            channel,
            socket_fd,
            shared: shared.clone(),
            framer,
            out: Vec::new(),
            out_pos: 0,
            pending: HashMap::new(),
            last_progress: Instant::now(),
            last_activity: Instant::now(),
            dead_after: params.dead_after(),
            keepalive: params.keepalive_interval,
            last_write_progressed: false,
            bulk_waiting: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("sftp-io-{generation}"))
            .spawn(move || io.run())
            .map_err(|e| ConnectError::Sftp(format!("spawning I/O thread: {e}")))?;
        Ok(Connection {
            shared,
            thread: Some(thread),
            info: ConnInfo {
                version,
                init_rtt,
                auth_method,
                host_key_fingerprint,
                host_key_status,
            },
            generation,
            reply_bound: params.dead_after() + Duration::from_secs(5),
        })
    }

    /// True once the I/O thread has given up on this connection.
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    /// Requests queued or awaiting a reply.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    pub fn has_extension(&self, name: &str) -> bool {
        self.info.version.has_extension(name)
    }

    /// Queues `req`; `done` runs on the I/O thread with the reply.
    pub fn submit(&self, req: &Request, done: Completion) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        sftp::encode_request(id, req, &mut bytes);
        let bulk = matches!(req, Request::Write { .. });
        self.enqueue(Outgoing { id, bytes, done }, bulk);
    }

    /// Queues an SSH_FXP_WRITE of `len` bytes whose data `fill` writes
    /// straight into the packet buffer (no intermediate copy of bulk data).
    pub fn submit_write(
        &self,
        handle: &[u8],
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
        done: Completion,
    ) -> io::Result<()> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(4 + 1 + 4 + 4 + handle.len() + 8 + 4 + len);
        sftp::encode_write_header(id, handle, offset, len, &mut bytes);
        let start = bytes.len();
        bytes.resize(start + len, 0);
        fill(&mut bytes[start..])?;
        self.enqueue(Outgoing { id, bytes, done }, true);
        Ok(())
    }

    fn enqueue(&self, item: Outgoing, bulk: bool) {
        let mut q = lock(&self.shared.queues);
        if let Some(reason) = &q.closed {
            let reason = reason.clone();
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
    pub fn call(&self, req: &Request) -> Result<Response, ConnError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(
            req,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        // The I/O thread fails outstanding requests once the link is silent
        // for `dead_after`; this bound only guards against a wedged thread.
        match rx.recv_timeout(self.reply_bound) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.close("no reply within the operation timeout");
                Err(ConnError::Disconnected(
                    "no reply within the operation timeout".into(),
                ))
            }
            Err(_) => Err(ConnError::Disconnected("I/O thread gone".into())),
        }
    }

    /// Sends all `reqs` back to back (pipelined) and waits for every reply,
    /// returned in the same order.
    pub fn call_many(&self, reqs: &[Request]) -> Vec<Result<Response, ConnError>> {
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

    /// Kills the link (used by tests of reconnect and by shutdown).
    pub fn close(&self, reason: &str) {
        let mut q = lock(&self.shared.queues);
        if q.closed.is_none() {
            q.closed = Some(reason.to_string());
        }
        drop(q);
        self.shared.wake();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close("connection closed");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect_tcp(params: &ConnectParams) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<_> = (params.host.as_str(), params.port)
        .to_socket_addrs()
        .map_err(|e| {
            ConnectError::Unreachable(format!(
                "cannot resolve {}:{}: {e}",
                params.host, params.port
            ))
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, params.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                set_tcp_user_timeout(&s, params.dead_after());
                return Ok(s);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(ConnectError::Unreachable(last.unwrap_or_else(|| {
        format!("{}:{} resolved to no address", params.host, params.port)
    })))
}

/// TCP_USER_TIMEOUT makes the kernel give up on unacknowledged data, so a
/// black-holed link surfaces as a socket error instead of a silent stall.
fn set_tcp_user_timeout(s: &TcpStream, timeout: Duration) {
    let ms: libc::c_uint = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: setsockopt with a valid fd and a c_uint option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// Checks the server's host key against known_hosts and the pin. Returns the
/// fingerprint and a one-word status for `coupafs check`.
fn verify_host_key(
    session: &Session,
    params: &ConnectParams,
) -> Result<(String, String), ConnectError> {
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| ConnectError::HostKey("server sent no host key".into()))?;
    let fp = fingerprint(key);
    let name = known_hosts_name(&params.host, params.port);
    if let Some(pin) = &params.host_key_fingerprint {
        if pin.trim_end_matches('=') == fp {
            return Ok((fp, "pinned".into()));
        }
        return Err(ConnectError::HostKey(format!(
            "{name} presented {fp}, but HostKeyFingerprint pins {pin}"
        )));
    }
    let mut kh = session
        .known_hosts()
        .map_err(|e| ConnectError::HostKey(e.to_string()))?;
    let file = &params.known_hosts;
    if file.exists() {
        kh.read_file(file, KnownHostFileKind::OpenSSH)
            .map_err(|e| ConnectError::HostKey(format!("cannot read {}: {e}", file.display())))?;
    }
    match kh.check_port(&params.host, params.port, key) {
        CheckResult::Match => Ok((fp, "known".into())),
        CheckResult::Mismatch => {
            let known: Vec<String> = kh
                .hosts()
                .unwrap_or_default()
                .iter()
                .filter(|h| h.name() == Some(name.as_str()))
                .filter_map(|h| {
                    base64::engine::general_purpose::STANDARD
                        .decode(h.key())
                        .ok()
                        .map(|k| fingerprint(&k))
                })
                .collect();
            Err(ConnectError::HostKey(format!(
                "HOST KEY CHANGED for {name}: server presented {fp}, {} has {}; refusing to connect \
                 (if the change is expected, remove the old line from {})",
                file.display(),
                if known.is_empty() {
                    "a different key".to_string()
                } else {
                    known.join(", ")
                },
                file.display()
            )))
        }
        CheckResult::NotFound | CheckResult::Failure => match params.host_key_policy {
            HostKeyPolicy::Strict => Err(ConnectError::HostKey(format!(
                "{name} is not in {} (server key {fp}); add it with \
                 `ssh-keyscan -p {} {} >> {}` after checking the fingerprint, \
                 or mount once with -o StrictHostKeyChecking=accept-new",
                file.display(),
                params.port,
                params.host,
                file.display()
            ))),
            HostKeyPolicy::AcceptNew => {
                kh.add(&name, key, "added by coupafs", key_type.into())
                    .map_err(|e| ConnectError::HostKey(e.to_string()))?;
                kh.write_file(file, KnownHostFileKind::OpenSSH)
                    .map_err(|e| {
                        ConnectError::HostKey(format!("cannot write {}: {e}", file.display()))
                    })?;
                log::warn!("added host key {fp} for {name} to {}", file.display());
                Ok((fp, "added".into()))
            }
            HostKeyPolicy::No => {
                log::warn!("host key for {name} not verified (StrictHostKeyChecking=no): {fp}");
                Ok((fp, "unverified".into()))
            }
        },
    }
}

/// Tries ssh-agent, then each identity file, then the password. Returns the
/// name of the method that worked.
fn authenticate(session: &Session, params: &ConnectParams) -> Result<String, ConnectError> {
    let user = params.user.as_str();
    let mut tried = Vec::new();
    if params.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match session.userauth_agent(user) {
            Ok(()) if session.authenticated() => return Ok("publickey (ssh-agent)".into()),
            Ok(()) => tried.push("ssh-agent: rejected".to_string()),
            Err(e) => tried.push(format!("ssh-agent: {e}")),
        }
    }
    for key in &params.identity_files {
        if !key.exists() {
            tried.push(format!("{}: no such file", key.display()));
            continue;
        }
        let passphrase = params.passphrase.as_ref().map(|p| p.expose());
        match session.userauth_pubkey_file(user, None, key, passphrase) {
            Ok(()) if session.authenticated() => {
                return Ok(format!("publickey ({})", key.display()))
            }
            Ok(()) => tried.push(format!("{}: rejected", key.display())),
            Err(e) => tried.push(format!("{}: {}", key.display(), e.message())),
        }
    }
    if let Some(password) = &params.password {
        match session.userauth_password(user, password.expose()) {
            Ok(()) if session.authenticated() => return Ok("password".into()),
            Ok(()) => tried.push("password: rejected".into()),
            // libssh2's message never contains the password itself.
            Err(e) => tried.push(format!("password: {}", e.message())),
        }
    }
    if tried.is_empty() {
        tried.push(
            "no credentials: give -o IdentityFile=, -o password_file=, COUPAFS_PASSWORD or an ssh-agent"
                .into(),
        );
    }
    Err(ConnectError::Auth(format!(
        "as {user}: {}",
        tried.join("; ")
    )))
}

/// Default identity files, as ssh tries them.
pub fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    ["id_rsa", "id_ecdsa", "id_ed25519"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

/// Bulk bytes handed to libssh2 ahead of small requests at most.
const BULK_BUDGET: usize = 1 << 20;
/// Bytes offered to `channel.write` per call.
const WRITE_CHUNK: usize = 256 * 1024;

struct IoThread {
    session: Session,
    channel: ssh2::Channel,
    socket_fd: RawFd,
    shared: Arc<Shared>,
    framer: sftp::Framer,
    out: Vec<u8>,
    out_pos: usize,
    pending: HashMap<u32, Completion>,
    /// Last time a reply arrived, or the outstanding set became non-empty.
    last_progress: Instant,
    /// Last time anything was sent or received (for keepalive probes).
    last_activity: Instant,
    dead_after: Duration,
    keepalive: Duration,
    last_write_progressed: bool,
    /// Bulk requests were left in the queue by the budget.
    bulk_waiting: bool,
}

impl IoThread {
    fn run(mut self) {
        let reason = match self.serve() {
            Ok(()) => "connection closed".to_string(),
            Err(reason) => reason,
        };
        // Mark dead under the queue lock so no submit slips in after the
        // final drain: every completion runs exactly once.
        let queued = {
            let mut q = lock(&self.shared.queues);
            if q.closed.is_none() {
                q.closed = Some(reason.clone());
            }
            self.shared.dead.store(true, Ordering::Release);
            let mut items: Vec<Outgoing> = q.small.drain(..).collect();
            items.extend(q.bulk.drain(..));
            items
        };
        if !reason.starts_with("connection closed") {
            log::warn!("SFTP connection lost: {reason}");
        }
        for item in queued {
            (item.done)(Err(ConnError::NotSent(reason.clone())));
        }
        for (_, done) in self.pending.drain() {
            done(Err(ConnError::Disconnected(reason.clone())));
        }
        self.shared.in_flight.store(0, Ordering::Relaxed);
        let _ = self.session.disconnect(None, "coupafs closing", None);
    }

    fn serve(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            self.shared.drain_wake();
            if let Some(reason) = self.take_queued() {
                if self.pending.is_empty() || reason != "connection closed" {
                    return Err(reason);
                }
            }
            let wrote_all = self.write_out()?;
            self.read_in(&mut buf)?;
            let now = Instant::now();
            if !self.pending.is_empty() && now.duration_since(self.last_progress) > self.dead_after
            {
                return Err(format!(
                    "no reply from server for {} s",
                    self.dead_after.as_secs()
                ));
            }
            if self.pending.is_empty()
                && !self.keepalive.is_zero()
                && now.duration_since(self.last_activity) >= self.keepalive
            {
                self.send_probe();
                continue;
            }
            // More bytes we could hand over right away: don't sleep. (Bulk
            // data waits in the queue while 1 MiB is ahead of it; once that
            // went out, the next 1 MiB must follow without a poll timeout.)
            let busy =
                (!wrote_all && self.last_write_progressed) || (wrote_all && self.bulk_waiting);
            self.poll(busy)?;
        }
    }

    /// Moves queued requests into the output buffer. Returns the close reason
    /// when the connection was closed by its owner.
    fn take_queued(&mut self) -> Option<String> {
        let mut q = lock(&self.shared.queues);
        if let Some(reason) = q.closed.clone() {
            return Some(reason);
        }
        let mut moved = Vec::new();
        while let Some(item) = q.small.pop_front() {
            moved.push(item);
        }
        while self.out.len() - self.out_pos < BULK_BUDGET {
            match q.bulk.pop_front() {
                Some(item) => {
                    self.out.extend_from_slice(&item.bytes);
                    if self.pending.is_empty() {
                        self.last_progress = Instant::now();
                    }
                    self.pending.insert(item.id, item.done);
                }
                None => break,
            }
        }
        self.bulk_waiting = !q.bulk.is_empty();
        drop(q);
        for item in moved {
            // Small requests go right after what libssh2 already holds.
            self.out.extend_from_slice(&item.bytes);
            if self.pending.is_empty() {
                self.last_progress = Instant::now();
            }
            self.pending.insert(item.id, item.done);
        }
        None
    }

    /// Writes as much of the output buffer as the channel takes. Returns true
    /// when everything was written.
    fn write_out(&mut self) -> Result<bool, String> {
        self.last_write_progressed = false;
        while self.out_pos < self.out.len() {
            let end = (self.out_pos + WRITE_CHUNK).min(self.out.len());
            // After EAGAIN libssh2 must be offered the same bytes again: the
            // slice always starts at out_pos, which only moves on success.
            match self.channel.write(&self.out[self.out_pos..end]) {
                Ok(0) => break, // window full: wait for the server's adjust
                Ok(n) => {
                    self.out_pos += n;
                    self.last_activity = Instant::now();
                    self.last_write_progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("transport write: {e}")),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            Ok(true)
        } else {
            if self.out_pos > (4 << 20) {
                self.out.drain(..self.out_pos);
                self.out_pos = 0;
            }
            Ok(false)
        }
    }

    /// Reads until EAGAIN (libssh2 sends window adjusts only from read) and
    /// completes every whole reply.
    fn read_in(&mut self, buf: &mut [u8]) -> Result<(), String> {
        loop {
            match self.channel.read(buf) {
                Ok(0) => {
                    if self.channel.eof() {
                        return Err("server closed the SFTP channel".into());
                    }
                    break;
                }
                Ok(n) => {
                    self.framer.push(&buf[..n]);
                    self.last_progress = Instant::now();
                    self.last_activity = self.last_progress;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("transport read: {e}")),
            }
        }
        loop {
            let packet = match self.framer.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let (id, response) = sftp::decode_response(&packet).map_err(|e| e.to_string())?;
            match self.pending.remove(&id) {
                Some(done) => {
                    self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                    done(Ok(response));
                }
                None => return Err(format!("reply for unknown request id {id}")),
            }
        }
    }

    /// An SFTP round trip on an idle link: if it goes unanswered for
    /// `dead_after` the connection is declared dead (ServerAliveInterval).
    fn send_probe(&mut self) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        sftp::encode_request(
            id,
            &Request::Realpath {
                path: b".".to_vec(),
            },
            &mut self.out,
        );
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        self.pending.insert(id, Box::new(|_| {}));
        self.last_progress = Instant::now();
        self.last_activity = self.last_progress;
    }

    fn poll(&mut self, busy: bool) -> Result<(), String> {
        let mut sock_events = libc::POLLIN;
        match self.session.block_directions() {
            BlockDirections::Outbound | BlockDirections::Both => sock_events |= libc::POLLOUT,
            _ => {}
        }
        let mut fds = [
            libc::pollfd {
                fd: self.socket_fd,
                events: sock_events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.shared.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout_ms = if busy { 0 } else { 500 };
        // SAFETY: fds is a valid array of 2 pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(format!("poll: {err}"));
            }
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err("socket error".into());
        }
        Ok(())
    }
}

/// Link state for logs and the status file.
#[derive(Clone, Debug, Default)]
pub struct PoolStatus {
    pub connected: usize,
    pub reconnecting: bool,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

struct SlotState {
    conn: Option<Arc<Connection>>,
    connecting: bool,
    next_attempt: Instant,
    backoff: Duration,
    last_error: Option<String>,
    /// The slot had a connection that died and none replaced it yet.
    lost: bool,
}

struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

/// Up to `max_conns` connections, opened lazily, re-opened with backoff.
/// Coupa allows 5 connections per account, shared with other tools, so
/// concurrency comes from pipelining on few connections, not more of them.
pub struct Pool {
    params: ConnectParams,
    slots: Vec<Slot>,
    reconnects: AtomicU64,
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A second connection is opened once the first has this many requests
/// outstanding.
const SPREAD_THRESHOLD: usize = 16;

impl Pool {
    pub fn new(params: ConnectParams, max_conns: usize) -> Arc<Pool> {
        let slots = (0..max_conns.clamp(1, 4))
            .map(|_| Slot {
                state: Mutex::new(SlotState {
                    conn: None,
                    connecting: false,
                    next_attempt: Instant::now(),
                    backoff: BACKOFF_MIN,
                    last_error: None,
                    lost: false,
                }),
                changed: Condvar::new(),
            })
            .collect();
        Arc::new(Pool {
            params,
            slots,
            reconnects: AtomicU64::new(0),
        })
    }

    pub fn params(&self) -> &ConnectParams {
        &self.params
    }

    /// Opens the first connection now; its error is the mount's error.
    pub fn connect_first(&self) -> Result<Arc<Connection>, ConnectError> {
        let conn = Arc::new(Connection::connect(&self.params)?);
        let mut st = lock(&self.slots[0].state);
        st.conn = Some(conn.clone());
        Ok(conn)
    }

    /// A live connection: the least loaded one, opening or re-opening
    /// connections as needed, waiting at most until `deadline`.
    pub fn get(self: &Arc<Self>, deadline: Instant) -> Result<Arc<Connection>, ConnError> {
        let mut best: Option<Arc<Connection>> = None;
        let mut idle_slot = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lock(&slot.state);
            match &st.conn {
                Some(c) if !c.is_dead() => {
                    if best.as_ref().is_none_or(|b| c.in_flight() < b.in_flight()) {
                        best = Some(c.clone());
                    }
                }
                _ => {
                    if idle_slot.is_none() && !st.connecting && i > 0 {
                        idle_slot = Some(i);
                    }
                }
            }
        }
        if let Some(conn) = best {
            if conn.in_flight() >= SPREAD_THRESHOLD {
                if let Some(i) = idle_slot {
                    // This caller goes on with the busy one.
                    self.connect_in_background(i);
                }
            }
            return Ok(conn);
        }
        self.ensure(0, deadline)
    }

    /// A live connection other than the one of `avoid` (a generation).
    /// When there is none but a slot is free, one is opened in the
    /// background (for next time) and None is returned at once: the caller
    /// goes on over the connection it has. None also when `max_conns` is 1.
    pub fn get_other(self: &Arc<Self>, avoid: u64) -> Option<Arc<Connection>> {
        let mut free = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lock(&slot.state);
            match &st.conn {
                Some(c) if !c.is_dead() && c.generation != avoid => return Some(c.clone()),
                Some(c) if !c.is_dead() => {}
                _ => {
                    if free.is_none() && !st.connecting {
                        free = Some(i);
                    }
                }
            }
        }
        if let Some(i) = free {
            self.connect_in_background(i);
        }
        None
    }

    /// Opens (or re-opens) the connection of slot `index` on its own
    /// thread, for callers that must not wait for it.
    fn connect_in_background(self: &Arc<Self>, index: usize) {
        let pool = self.clone();
        let _ = std::thread::Builder::new()
            .name("sftp-connect".into())
            .spawn(move || {
                let _ = pool.ensure(index, Instant::now() + pool.params.connect_timeout);
            });
    }

    /// The live connection that made `generation`, if it is still alive.
    pub fn by_generation(&self, generation: u64) -> Option<Arc<Connection>> {
        self.slots.iter().find_map(|slot| {
            let st = lock(&slot.state);
            st.conn
                .as_ref()
                .filter(|c| c.generation == generation && !c.is_dead())
                .cloned()
        })
    }

    fn ensure(&self, index: usize, deadline: Instant) -> Result<Arc<Connection>, ConnError> {
        let slot = &self.slots[index];
        let mut st = lock(&slot.state);
        loop {
            if let Some(c) = &st.conn {
                if !c.is_dead() {
                    return Ok(c.clone());
                }
                st.conn = None;
                st.lost = true;
                log::warn!(
                    "connection {} to {}:{} lost; reconnecting",
                    index + 1,
                    self.params.host,
                    self.params.port
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ConnError::Unreachable(
                    st.last_error
                        .clone()
                        .unwrap_or_else(|| "timed out waiting for the connection".into()),
                ));
            }
            if st.connecting || now < st.next_attempt {
                let until = if st.connecting {
                    deadline
                } else {
                    st.next_attempt.min(deadline)
                };
                let (guard, _) = slot
                    .changed
                    .wait_timeout(st, until.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                continue;
            }
            st.connecting = true;
            drop(st);
            let mut params = self.params.clone();
            params.connect_timeout = params.connect_timeout.min(
                deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_secs(1)),
            );
            let result = Connection::connect(&params);
            st = lock(&slot.state);
            st.connecting = false;
            match result {
                Ok(c) => {
                    if st.lost {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        log::info!(
                            "reconnected to {}:{} (connection {})",
                            self.params.host,
                            self.params.port,
                            index + 1
                        );
                    }
                    let c = Arc::new(c);
                    st.conn = Some(c.clone());
                    st.lost = false;
                    st.backoff = BACKOFF_MIN;
                    st.last_error = None;
                    slot.changed.notify_all();
                    return Ok(c);
                }
                Err(e) => {
                    log::warn!(
                        "connecting to {}:{} failed (retry in {} ms): {e}",
                        self.params.host,
                        self.params.port,
                        st.backoff.as_millis()
                    );
                    st.last_error = Some(e.to_string());
                    st.next_attempt = Instant::now() + st.backoff;
                    st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
                    slot.changed.notify_all();
                }
            }
        }
    }

    pub fn status(&self) -> PoolStatus {
        let mut status = PoolStatus {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            ..PoolStatus::default()
        };
        for slot in &self.slots {
            let st = lock(&slot.state);
            if st.conn.as_ref().is_some_and(|c| !c.is_dead()) {
                status.connected += 1;
            } else if st.lost || st.connecting {
                status.reconnecting = true;
            }
            if st.last_error.is_some() {
                status.last_error = st.last_error.clone();
            }
        }
        status
    }

    /// Drops every connection (shutdown, and tests of reconnect).
    pub fn close_all(&self, reason: &str) {
        for slot in &self.slots {
            let conn = lock(&slot.state).conn.take();
            if let Some(c) = conn {
                c.close(reason);
            }
        }
    }
}
