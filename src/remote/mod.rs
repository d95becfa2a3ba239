//! The narrow remote-filesystem interface the filesystem layer uses, and its
//! SFTP implementation over `crate::ssh::Pool`.
//!
//! Paths are absolute remote paths as bytes. Calls block the calling thread
//! only; many callers share one connection with their requests in flight
//! together. Idempotent operations are retried across a reconnect until the
//! operation deadline; others are retried only when the request provably
//! never left this process.

#[cfg(any(test, feature = "test-support"))]
pub mod mock;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sftp::{self, ext, pflags, status, Attrs, Request, Response, Statvfs};
use crate::ssh::{ConnError, Connection, Pool};

/// Why a remote operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The server answered with an SSH_FX_* status other than OK.
    Status { code: u32, message: String },
    /// The connection died with the request outstanding: outcome unknown.
    Lost(String),
    /// The server could not be reached within the operation timeout.
    Unreachable(String),
    /// The handle belongs to a connection that has since died.
    StaleHandle,
    /// The server lacks what the operation needs.
    Unsupported(&'static str),
    /// An exclusive create found the name taken at commit.
    TargetExists,
    /// The server's reply made no sense for the request.
    Protocol(String),
}

impl RemoteError {
    pub fn status_code(&self) -> Option<u32> {
        match self {
            RemoteError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_no_such_file(&self) -> bool {
        self.status_code() == Some(status::NO_SUCH_FILE)
    }

    /// The link failed (as opposed to the server refusing the operation).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            RemoteError::Lost(_) | RemoteError::Unreachable(_) | RemoteError::StaleHandle
        )
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Status { code, message } => {
                let name = match *code {
                    status::EOF => "end of file",
                    status::NO_SUCH_FILE => "no such file",
                    status::PERMISSION_DENIED => "permission denied",
                    status::FAILURE => "failure",
                    status::BAD_MESSAGE => "bad message",
                    status::NO_CONNECTION => "no connection",
                    status::CONNECTION_LOST => "connection lost",
                    status::OP_UNSUPPORTED => "operation unsupported",
                    _ => "error",
                };
                if message.is_empty() {
                    write!(f, "server: {name} (status {code})")
                } else {
                    write!(f, "server: {message} (status {code})")
                }
            }
            RemoteError::Lost(m) => write!(f, "connection lost: {m}"),
            RemoteError::Unreachable(m) => write!(f, "server unreachable: {m}"),
            RemoteError::StaleHandle => f.write_str("file handle lost with its connection"),
            RemoteError::Unsupported(what) => write!(f, "server does not support {what}"),
            RemoteError::TargetExists => f.write_str("the name was taken on the server meanwhile"),
            RemoteError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for RemoteError {}

pub type RResult<T> = Result<T, RemoteError>;

/// An open remote file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle {
    pub raw: Vec<u8>,
    /// The connection that issued it (handles die with their connection).
    pub generation: u64,
}

/// One directory entry with the attributes the listing carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attrs: Attrs,
}

/// What the server offers beyond plain SFTP v3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub posix_rename: bool,
    pub statvfs: bool,
    pub fsync: bool,
    pub hardlink: bool,
}

/// What a successful `commit` learned on the way.
#[derive(Debug, Default)]
pub struct Committed {
    /// The server refused to set mode/times (best effort unless strict).
    pub setstat_error: Option<RemoteError>,
    /// The file's attributes just before CLOSE (FSTAT in the same batch),
    /// so the published name is known without a later round trip.
    pub attrs: Option<Attrs>,
}

/// The operations the filesystem needs from the server.
pub trait Remote: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;
    /// False once the connection that issued `handle` has died.
    fn handle_alive(&self, handle: &Handle) -> bool;
    /// Attributes without following a final symlink.
    fn lstat(&self, path: &[u8]) -> RResult<Attrs>;
    /// Attributes following symlinks.
    fn stat(&self, path: &[u8]) -> RResult<Attrs>;
    /// Every entry except `.` and `..`, with attributes.
    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>>;
    fn open(&self, path: &[u8], flags: u32, attrs: &Attrs) -> RResult<Handle>;
    /// Up to `len` bytes at `offset`; shorter only at end of file.
    fn read(&self, handle: &Handle, offset: u64, len: u32) -> RResult<Vec<u8>>;
    /// All of `data` at `offset`, many WRITEs in flight.
    fn write(&self, handle: &Handle, offset: u64, data: &[u8]) -> RResult<()>;
    /// `len` bytes at `offset`, taken from `source(at, buf)` chunk by chunk
    /// as the window allows, so a large upload needs no large buffer. With
    /// several `handles` (one file opened on several connections, see
    /// `open_twin`) the chunks are spread over them.
    fn write_from(
        &self,
        handles: &[Handle],
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> RResult<()>;
    fn close(&self, handle: &Handle) -> RResult<()>;
    /// CLOSE without waiting for the reply (a handle nothing depends on).
    fn close_quietly(&self, handle: &Handle) {
        let _ = self.close(handle);
    }
    /// The file `path`, already open as `of`, opened for writing (no
    /// truncation) on another connection, so a large upload can use two
    /// connections' flow-control windows. None when there is no other
    /// connection to use yet (one may be opening: ask again later).
    fn open_twin(&self, _path: &[u8], _of: &Handle) -> RResult<Option<Handle>> {
        Ok(None)
    }
    /// Publishes an upload: [FSETSTAT `set`], CLOSE, then rename `from` to
    /// `to`, sent back to back (one round trip). With `replace` false an
    /// existing `to` fails the commit with `TargetExists` (O_EXCL). A
    /// refused FSETSTAT does not stop the commit; it is returned for the
    /// caller to judge.
    fn commit(
        &self,
        handle: &Handle,
        set: Option<&Attrs>,
        from: &[u8],
        to: &[u8],
        replace: bool,
    ) -> RResult<Committed>;
    fn fsync(&self, handle: &Handle) -> RResult<()>;
    fn setstat(&self, path: &[u8], attrs: &Attrs) -> RResult<()>;
    fn remove(&self, path: &[u8]) -> RResult<()>;
    fn mkdir(&self, path: &[u8], attrs: &Attrs) -> RResult<()>;
    fn rmdir(&self, path: &[u8]) -> RResult<()>;
    /// rename(2) semantics: replaces an existing `to`.
    fn rename(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    /// Fails when `to` exists (plain SFTP v3 RENAME).
    fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    fn readlink(&self, path: &[u8]) -> RResult<Vec<u8>>;
    fn symlink(&self, link_path: &[u8], target: &[u8]) -> RResult<()>;
    fn hardlink(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    fn statvfs(&self, path: &[u8]) -> RResult<Statvfs>;
    fn realpath(&self, path: &[u8]) -> RResult<Vec<u8>>;
}

/// Bytes per READ / WRITE request (OpenSSH accepts up to 256 KiB).
const IO_CHUNK: usize = 64 * 1024;
/// Requests per pipelined batch.
const MAX_IN_FLIGHT: usize = 64;
/// READDIR requests in flight per listing.
const READDIR_AHEAD: usize = 4;

/// Below this round trip one SSH channel's flow-control window (sshd's
/// 2 MiB per round trip: 1 GiB/s at 2 ms) is not what limits an upload;
/// the CPU is, and a second connection only adds work (measured at RTT 0:
/// 256 MiB took 2.21 s striped against 1.85 s on one connection, means of
/// 5 fresh mounts; at 20 ms striping lifted 60 to 110 MiB/s).
const STRIPE_MIN_RTT: Duration = Duration::from_millis(3);

/// Whether a large upload should also use a second connection.
fn striping_pays(rtt: Duration) -> bool {
    rtt >= STRIPE_MIN_RTT
}

/// `Remote` over SFTP.
pub struct SftpRemote {
    pool: Arc<Pool>,
    op_timeout: Duration,
    caps: Capabilities,
}

fn status_err(code: u32, message: String) -> RemoteError {
    RemoteError::Status { code, message }
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
        let caps = Capabilities {
            posix_rename: first.has_extension(ext::POSIX_RENAME),
            statvfs: first.has_extension(ext::STATVFS),
            fsync: first.has_extension(ext::FSYNC),
            hardlink: first.has_extension(ext::HARDLINK),
        };
        Self {
            pool,
            op_timeout,
            caps,
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// One request on any live connection. `idempotent` requests are sent
    /// again after a reconnect; others only when they never left.
    fn call(&self, req: &Request, idempotent: bool) -> RResult<Response> {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            let conn = self.pool.get(deadline)?;
            match conn.call(req) {
                Ok(r) => return Ok(r),
                Err(ConnError::NotSent(_)) if Instant::now() < deadline => continue,
                Err(ConnError::Disconnected(_)) if idempotent && Instant::now() < deadline => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn conn_for(&self, handle: &Handle) -> RResult<Arc<Connection>> {
        self.pool
            .by_generation(handle.generation)
            .ok_or(RemoteError::StaleHandle)
    }

    fn on_handle(&self, handle: &Handle, req: &Request) -> RResult<Response> {
        Ok(self.conn_for(handle)?.call(req)?)
    }

    fn extended_ok(&self, req: &Request, idempotent: bool, op: &str) -> RResult<()> {
        expect_ok(op, self.call(req, idempotent)?)
    }
}

impl Remote for SftpRemote {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn handle_alive(&self, handle: &Handle) -> bool {
        self.pool.by_generation(handle.generation).is_some()
    }

    fn lstat(&self, path: &[u8]) -> RResult<Attrs> {
        expect_attrs(
            "LSTAT",
            self.call(
                &Request::Lstat {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
    }

    fn stat(&self, path: &[u8]) -> RResult<Attrs> {
        expect_attrs(
            "STAT",
            self.call(
                &Request::Stat {
                    path: path.to_vec(),
                },
                true,
            )?,
        )
    }

    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>> {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            let conn = self.pool.get(deadline)?;
            match read_dir_on(&conn, path) {
                Err(RemoteError::Lost(_)) if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    fn open(&self, path: &[u8], flags: u32, attrs: &Attrs) -> RResult<Handle> {
        let deadline = Instant::now() + self.op_timeout;
        let req = Request::Open {
            path: path.to_vec(),
            pflags: flags,
            attrs: attrs.clone(),
        };
        // Opening for read only is idempotent; with CREAT/TRUNC it is not.
        let idempotent = flags & !pflags::READ == 0;
        loop {
            let conn = self.pool.get(deadline)?;
            match conn.call(&req) {
                Ok(r) => return expect_handle("OPEN", r, conn.generation),
                Err(ConnError::NotSent(_)) if Instant::now() < deadline => continue,
                Err(ConnError::Disconnected(_)) if idempotent && Instant::now() < deadline => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        self.write_from(handles, offset, data.len() as u64, &mut |at, buf| {
            let start = (at - offset) as usize;
            buf.copy_from_slice(&data[start..start + buf.len()]);
            Ok(())
        })
    }

    fn write_from(
        &self,
        handles: &[Handle],
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> RResult<()> {
        let conns = handles
            .iter()
            .map(|h| self.conn_for(h))
            .collect::<RResult<Vec<_>>>()?;
        if conns.is_empty() {
            return Err(RemoteError::Protocol("write without a handle".into()));
        }
        // A sliding window per handle, not batches: each acknowledged WRITE
        // lets the next one go, so the link never drains between batches.
        // Each chunk goes to the handle (connection) with the fewest in
        // flight.
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Response, ConnError>)>();
        let mut sent = 0u64;
        let mut in_flight = vec![0usize; conns.len()];
        let mut first_error: Option<RemoteError> = None;
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
                let n = (len - sent).min(IO_CHUNK as u64) as usize;
                let at = offset + sent;
                let tx = tx.clone();
                let queued = conns[i].submit_write(
                    &handles[i].raw,
                    at,
                    n,
                    &mut |buf| source(at, buf),
                    Box::new(move |r| {
                        let _ = tx.send((i, r));
                    }),
                );
                if let Err(e) = queued {
                    first_error = Some(RemoteError::Protocol(format!("local spool read: {e}")));
                    break;
                }
                sent += n as u64;
                in_flight[i] += 1;
            }
            if in_flight.iter().all(|n| *n == 0) {
                break;
            }
            // Every submitted request completes exactly once (the I/O thread
            // fails them all when the link dies), so this cannot hang.
            let (i, reply) = rx.recv().unwrap_or_else(|_| {
                (
                    usize::MAX,
                    Err(ConnError::Disconnected("I/O thread gone".into())),
                )
            });
            if i == usize::MAX {
                first_error.get_or_insert(RemoteError::Lost("I/O thread gone".into()));
                break;
            }
            in_flight[i] -= 1;
            let result = reply
                .map_err(RemoteError::from)
                .and_then(|r| expect_ok("WRITE", r));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
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

    fn open_twin(&self, path: &[u8], of: &Handle) -> RResult<Option<Handle>> {
        if !striping_pays(self.conn_for(of)?.info.init_rtt) {
            return Ok(None);
        }
        let Some(conn) = self.pool.get_other(of.generation) else {
            return Ok(None);
        };
        let req = Request::Open {
            path: path.to_vec(),
            pflags: pflags::WRITE,
            attrs: Attrs::default(),
        };
        let r = conn.call(&req)?;
        expect_handle("OPEN", r, conn.generation).map(Some)
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
        set: Option<&Attrs>,
        from: &[u8],
        to: &[u8],
        replace: bool,
    ) -> RResult<Committed> {
        let conn = self.conn_for(handle)?;
        let mut reqs = Vec::with_capacity(4);
        if let Some(attrs) = set {
            reqs.push(Request::Fsetstat {
                handle: handle.raw.clone(),
                attrs: attrs.clone(),
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
        reqs.push(if self.caps.posix_rename && replace {
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
        let mut replies = conn.call_many(&reqs);
        let missing = || Err(ConnError::Protocol("missing reply".into()));
        let renamed = replies.pop().unwrap_or_else(missing);
        let closed = replies.pop().unwrap_or_else(missing);
        let attrs = replies
            .pop()
            .and_then(|r| r.ok())
            .and_then(|r| expect_attrs("FSTAT", r).ok());
        let setstat_error = match replies.pop() {
            Some(r) => expect_ok("FSETSTAT", r?).err(),
            None => None,
        };
        expect_ok("CLOSE", closed?)?;
        match expect_ok("RENAME", renamed?) {
            Err(RemoteError::Status { code, .. }) if code == status::FAILURE && !replace => {
                // v3 RENAME refuses an existing target (filexfer-02 6.5):
                // exactly what O_EXCL asked for.
                if self.lstat(to).is_ok() {
                    return Err(RemoteError::TargetExists);
                }
                return Err(status_err(code, "rename failed".into()));
            }
            Err(RemoteError::Status { code, .. })
                if code == status::FAILURE && !self.caps.posix_rename =>
            {
                // Plain v3 RENAME refuses an existing target: replace it.
                self.rename(from, to)?;
            }
            other => other?,
        }
        Ok(Committed {
            setstat_error,
            attrs,
        })
    }

    fn fsync(&self, handle: &Handle) -> RResult<()> {
        if !self.caps.fsync {
            return Err(RemoteError::Unsupported(ext::FSYNC));
        }
        expect_ok(
            "fsync",
            self.on_handle(
                handle,
                &Request::Fsync {
                    handle: handle.raw.clone(),
                },
            )?,
        )
    }

    fn setstat(&self, path: &[u8], attrs: &Attrs) -> RResult<()> {
        self.extended_ok(
            &Request::Setstat {
                path: path.to_vec(),
                attrs: attrs.clone(),
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

    fn mkdir(&self, path: &[u8], attrs: &Attrs) -> RResult<()> {
        self.extended_ok(
            &Request::Mkdir {
                path: path.to_vec(),
                attrs: attrs.clone(),
            },
            false,
            "MKDIR",
        )
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
        if self.caps.posix_rename {
            return self.extended_ok(
                &Request::PosixRename {
                    from: from.to_vec(),
                    to: to.to_vec(),
                },
                false,
                "posix-rename",
            );
        }
        match self.rename_noreplace(from, to) {
            Err(RemoteError::Status { code, .. }) if code == status::FAILURE => {
                // Without posix-rename, v3 RENAME fails when `to` exists. Move
                // the old target aside, rename, then drop it; on failure put it
                // back. Not atomic: a reader may briefly see no `to`.
                if self.lstat(to).is_err() {
                    return Err(status_err(status::FAILURE, "rename failed".into()));
                }
                let mut aside = to.to_vec();
                aside.extend_from_slice(format!(".coupafs-old-{}", std::process::id()).as_bytes());
                self.rename_noreplace(to, &aside)?;
                match self.rename_noreplace(from, to) {
                    Ok(()) => {
                        let _ = self.remove(&aside);
                        Ok(())
                    }
                    Err(e) => {
                        let _ = self.rename_noreplace(&aside, to);
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        self.extended_ok(
            &Request::Rename {
                from: from.to_vec(),
                to: to.to_vec(),
            },
            false,
            "RENAME",
        )
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
        if !self.caps.hardlink {
            return Err(RemoteError::Unsupported(ext::HARDLINK));
        }
        self.extended_ok(
            &Request::Hardlink {
                from: from.to_vec(),
                to: to.to_vec(),
            },
            false,
            "hardlink",
        )
    }

    fn statvfs(&self, path: &[u8]) -> RResult<Statvfs> {
        if !self.caps.statvfs {
            return Err(RemoteError::Unsupported(ext::STATVFS));
        }
        match self.call(
            &Request::Statvfs {
                path: path.to_vec(),
            },
            true,
        )? {
            Response::ExtendedReply(data) => {
                sftp::decode_statvfs(&data).map_err(|e| RemoteError::Protocol(e.to_string()))
            }
            Response::Status { code, message } => Err(status_err(code, message)),
            other => Err(unexpected("statvfs", &other)),
        }
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

/// OPENDIR, READDIR with several requests in flight until EOF, CLOSE.
fn read_dir_on(conn: &Connection, path: &[u8]) -> RResult<Vec<DirEntry>> {
    let handle = match conn.call(&Request::Opendir {
        path: path.to_vec(),
    })? {
        Response::Handle(h) => h,
        Response::Status { code, message } => return Err(status_err(code, message)),
        other => return Err(unexpected("OPENDIR", &other)),
    };
    let mut entries = Vec::new();
    let mut result = Ok(());
    'outer: loop {
        // The server answers READDIRs on one handle in order, each with the
        // next batch of names; once one says EOF the rest say EOF too.
        let reqs: Vec<Request> = (0..READDIR_AHEAD)
            .map(|_| Request::Readdir {
                handle: handle.clone(),
            })
            .collect();
        for r in conn.call_many(&reqs) {
            match r {
                Ok(Response::Name(names)) => {
                    for n in names {
                        if n.filename != b"." && n.filename != b".." {
                            entries.push(DirEntry {
                                name: n.filename,
                                attrs: n.attrs,
                            });
                        }
                    }
                }
                Ok(Response::Status { code, .. }) if code == status::EOF => break 'outer,
                Ok(Response::Status { code, message }) => {
                    result = Err(status_err(code, message));
                    break 'outer;
                }
                Ok(other) => {
                    result = Err(unexpected("READDIR", &other));
                    break 'outer;
                }
                Err(e) => {
                    result = Err(e.into());
                    break 'outer;
                }
            }
        }
    }
    // Nothing depends on the CLOSE reply: don't spend a round trip on it.
    conn.submit(&Request::Close { handle }, Box::new(|_| {}));
    result.map(|()| entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striping_pays_only_across_a_real_round_trip() {
        assert!(!striping_pays(Duration::from_micros(200)), "loopback");
        assert!(!striping_pays(Duration::from_millis(2)));
        assert!(striping_pays(STRIPE_MIN_RTT));
        assert!(striping_pays(Duration::from_millis(20)), "WAN");
    }
}
