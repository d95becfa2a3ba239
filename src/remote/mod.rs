//! The remote-filesystem interface the filesystem layer uses, in the
//! filesystem's own words (`Meta`, `Kind`, `RemoteError`, intent-named
//! calls), and its implementations: SFTP over `crate::ssh::Pool` in `sftp`,
//! and an in-memory server in `mock` for tests only.
//!
//! Nothing here names an SFTP wire type: `sftp.rs` converts attributes,
//! open flags and status codes at the boundary, so `fs` decides on
//! `RemoteError` variants and `error.rs` alone turns them into errno.
//!
//! Paths are absolute remote paths as bytes. Calls block the calling thread
//! only; many callers share one connection with their requests in flight
//! together. Idempotent operations are retried across a reconnect until the
//! operation deadline; others are retried only when the request provably
//! never left this process.

pub(crate) mod deadline;
#[cfg(any(test, feature = "test-support"))]
pub mod mock;
mod sftp;

use std::fmt;

pub use sftp::SftpRemote;

/// What `Remote::open_twin` gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Twin {
    /// The file open on each other connection (or SFTP channel) that was
    /// up, never empty.
    Opened(Vec<Handle>),
    /// No other connection is up yet (one may be opening): ask again.
    Later,
    /// A second connection would not pay (a short round trip, or one
    /// connection allowed).
    NotWorth,
}

/// Why a remote operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// No such file or directory (SFTP NO_SUCH_FILE).
    NotFound(String),
    /// The server account may not do this (SFTP PERMISSION_DENIED).
    PermissionDenied(String),
    /// The name is taken: an exclusive create or non-replacing rename met
    /// an existing target.
    AlreadyExists(String),
    /// The server's catch-all refusal. OpenSSH reports EEXIST, ENOTEMPTY,
    /// ENOSPC and EDQUOT all as SSH_FX_FAILURE (sftp-server.c
    /// `errno_to_portable`), so what it means depends on the operation:
    /// `error.rs` decides per operation.
    Failure(String),
    /// The server lacks what the operation needs (an extension it does not
    /// offer, or OP_UNSUPPORTED).
    Unsupported(String),
    /// The server reported an error this interface has no word for (an
    /// unexpected end of file, a bad message, an unknown status).
    Other(String),
    /// The connection died with the request outstanding: outcome unknown.
    Lost(String),
    /// The server could not be reached within the operation timeout.
    Unreachable(String),
    /// The handle belongs to a connection that has since died.
    StaleHandle,
    /// The server's reply made no sense for the request.
    Protocol(String),
}

impl RemoteError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RemoteError::NotFound(_))
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
            RemoteError::NotFound(m)
            | RemoteError::PermissionDenied(m)
            | RemoteError::AlreadyExists(m)
            | RemoteError::Failure(m)
            | RemoteError::Other(m) => write!(f, "server: {m}"),
            RemoteError::Unsupported(what) => write!(f, "server does not support {what}"),
            RemoteError::Lost(m) => write!(f, "connection lost: {m}"),
            RemoteError::Unreachable(m) => write!(f, "server unreachable: {m}"),
            RemoteError::StaleHandle => f.write_str("file handle lost with its connection"),
            RemoteError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for RemoteError {}

pub type RResult<T> = Result<T, RemoteError>;

/// The type of a remote file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A device, socket, FIFO, or a type the server did not say.
    Other,
}

/// What the server says about a file, or what to set on one; `None`: not
/// known (or not to be changed). Times are seconds since the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub kind: Option<Kind>,
    /// Permission bits (`0o7777`), without the type.
    pub permissions: Option<u32>,
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
}

impl Meta {
    /// Permission and time changes (setattr, or a publish's last word).
    pub fn change(perm: Option<u32>, times: Option<(u32, u32)>) -> Self {
        Meta {
            permissions: perm,
            atime: times.map(|(a, _)| a),
            mtime: times.map(|(_, m)| m),
            ..Meta::default()
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Some(Kind::Dir)
    }
}

/// statvfs(3) figures of the remote filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceStats {
    pub block_size: u64,
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u64,
}

/// How an upload replaces an existing name on this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceMode {
    /// One rename replaces the target atomically (posix-rename@openssh.com):
    /// a reader sees the old content or the new, never neither.
    Atomic,
    /// The server's RENAME will not replace: the old file is renamed aside
    /// to a hidden temp name first, so the name is briefly missing (never
    /// partial, never an extra visible file).
    HiddenAside,
    /// The server allows no replace at all: replacing uploads fail at open.
    Refuse,
}

/// What this server can do, as the filesystem needs to know it (probed
/// from the first connection, narrowed when an advertised extension is
/// refused on use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCaps {
    /// Extension names the server advertised (whether or not they work).
    pub extensions: Vec<String>,
    pub replace: ReplaceMode,
    pub fsync: bool,
    pub statvfs: bool,
    pub hardlink: bool,
}

impl Default for ServerCaps {
    fn default() -> Self {
        ServerCaps {
            extensions: Vec::new(),
            replace: ReplaceMode::Atomic,
            fsync: true,
            statvfs: true,
            hardlink: true,
        }
    }
}

/// What sits between the hidden prefix and the temp mark of an aside name:
/// `.NAME.coupafs-old.coupafs-XXXXXX`. Upload temps are `.NAME.coupafs-XXXXXX`,
/// so an aside copy (a complete old file) is never mistaken for an upload
/// temp (possibly partial), which must never be published by recovery.
const ASIDE_MARK: &[u8] = b".coupafs-old.coupafs-";
const ASIDE_SUFFIX_LEN: usize = 6;

/// The hidden name an existing `to` is moved to while the hidden-aside
/// replace runs (same directory, so the RENAME stays on one filesystem).
/// It matches the filesystem's temp-name rule (`*.coupafs-XXXXXX`, X hex),
/// so listings hide it and the janitor knows it.
pub fn aside_path(to: &[u8]) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (dir, name) = match to.iter().rposition(|&b| b == b'/') {
        Some(i) => (&to[..=i], &to[i + 1..]),
        None => (&to[..0], to),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (u64::from(std::process::id()) << 20 ^ nanos ^ n.wrapping_mul(0x9E37_79B9))
        .wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut p = dir.to_vec();
    p.push(b'.');
    p.extend_from_slice(name);
    p.extend_from_slice(ASIDE_MARK);
    p.extend_from_slice(format!("{:06x}", mixed >> 40).as_bytes());
    p
}

/// For an aside name (a file name, not a path): the final name whose old
/// content it holds.
pub fn aside_target(name: &[u8]) -> Option<&[u8]> {
    let rest = name.strip_prefix(b".")?;
    if rest.len() < ASIDE_MARK.len() + ASIDE_SUFFIX_LEN {
        return None;
    }
    let (head, suffix) = rest.split_at(rest.len() - ASIDE_SUFFIX_LEN);
    let target = head.strip_suffix(ASIDE_MARK)?;
    (!target.is_empty() && suffix.iter().all(|b| b.is_ascii_hexdigit())).then_some(target)
}

/// An open remote file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle {
    pub(crate) raw: Vec<u8>,
    /// The connection that issued it (handles die with their connection).
    pub(crate) generation: u64,
}

/// One directory entry with the attributes the listing carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub meta: Meta,
}

/// What a successful `commit` (a publish) learned on the way.
#[derive(Debug, Default)]
pub struct Committed {
    /// The server refused to set mode/times (best effort unless strict).
    pub setstat_error: Option<RemoteError>,
    /// The file's attributes just before it was closed, so the published
    /// name is known without a later round trip.
    pub meta: Option<Meta>,
}

/// The operations the filesystem needs from the server.
pub trait Remote: Send + Sync + 'static {
    /// False once the connection that issued `handle` has died.
    fn handle_alive(&self, handle: &Handle) -> bool;
    /// Attributes without following a final symlink.
    fn lstat(&self, path: &[u8]) -> RResult<Meta>;
    /// Attributes following symlinks.
    fn stat(&self, path: &[u8]) -> RResult<Meta>;
    /// Every entry except `.` and `..`, with attributes.
    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>>;
    /// Opens an existing file for reading (idempotent: retried across a
    /// reconnect).
    fn open_read(&self, path: &[u8]) -> RResult<Handle>;
    /// `lstat`, and `path` opened for reading in the same round trip (an
    /// OPEN beside the LSTAT): for a lookup made by a program that is
    /// opening the file to read it (`fs::preopen`). The handle is None when
    /// the OPEN failed, or when the server cannot take both at once; the
    /// caller closes it if `path` turns out not to be a regular file.
    fn lstat_open_read(&self, path: &[u8]) -> RResult<(Meta, Option<Handle>)> {
        Ok((self.lstat(path)?, None))
    }
    /// `path` opened for reading, and when another connection is up (and
    /// the link's round trip makes it pay) opened there too, both OPENs in
    /// flight at once: a whole-file fetch then spreads its READs over two
    /// connections' windows. The second is None otherwise.
    fn open_read_pair(&self, path: &[u8]) -> RResult<(Handle, Option<Handle>)> {
        Ok((self.open_read(path)?, None))
    }
    /// Creates `path`, which must not exist yet, empty and open for
    /// writing, with permission bits `perm` (the server's umask applies).
    fn create_new(&self, path: &[u8], perm: Option<u32>) -> RResult<Handle>;
    /// `create_new`, and the new file opened on the other connections or
    /// channels as `open_twin` would, their OPENs sent right behind the
    /// create's instead of a round trip later. `Later` when that was not
    /// tried or did not work out (a twin's OPEN reached the server before
    /// the file existed): `open_twin` may be asked then.
    fn create_new_striped(&self, path: &[u8], perm: Option<u32>) -> RResult<(Handle, Twin)> {
        Ok((self.create_new(path, perm)?, Twin::Later))
    }
    /// Up to `len` bytes at `offset`; shorter only at end of file.
    fn read(&self, handle: &Handle, offset: u64, len: u32) -> RResult<Vec<u8>>;
    /// All of `data` at `offset`, many WRITEs in flight.
    fn write(&self, handle: &Handle, offset: u64, data: &[u8]) -> RResult<()>;
    /// `len` bytes at `offset`, taken from `source(at, buf)` chunk by chunk
    /// as the window allows, so a large upload needs no large buffer. With
    /// several `handles` (one file opened on several connections, see
    /// `open_twin`) the chunks are spread over them. Once every byte up to
    /// an end is handed to a connection, `more(end)` says where to go on to
    /// (bytes that became ready meanwhile) or returns `end` to stop: the
    /// upload of a file still being written keeps flowing without waiting
    /// for the replies first. `queued` runs once, when every WRITE has been
    /// handed to its connection (each connection sends its WRITEs in offset
    /// order), before their replies are awaited; on an early failure, at
    /// the latest when this returns.
    fn write_from(
        &self,
        handles: &[Handle],
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
        more: &mut dyn FnMut(u64) -> u64,
        queued: &mut dyn FnMut(),
    ) -> RResult<()>;
    fn close(&self, handle: &Handle) -> RResult<()>;
    /// Closes without waiting for the reply (a handle nothing depends on).
    fn close_quietly(&self, handle: &Handle) {
        let _ = self.close(handle);
    }
    /// The file `path`, already open as `of`, opened for writing (no
    /// truncation) on every other connection or channel, so a large upload
    /// can use their flow-control windows together.
    fn open_twin(&self, _path: &[u8], _of: &Handle) -> RResult<Twin> {
        Ok(Twin::NotWorth)
    }
    /// Publishes an upload: [set `set` on the handle], close, then rename
    /// `from` to `to`, sent back to back (one round trip). With `replace`
    /// false an existing `to` fails the commit with `AlreadyExists`
    /// (O_EXCL). A refused `set` does not stop the commit; it is returned
    /// for the caller to judge.
    fn commit(
        &self,
        handle: &Handle,
        set: Option<&Meta>,
        from: &[u8],
        to: &[u8],
        replace: bool,
    ) -> RResult<Committed>;
    /// Makes the bytes written through `handle` durable; `Unsupported`
    /// when the server cannot.
    fn fsync(&self, handle: &Handle) -> RResult<()>;
    /// Sets the permission bits and times given in `meta`.
    fn setstat(&self, path: &[u8], meta: &Meta) -> RResult<()>;
    fn remove(&self, path: &[u8]) -> RResult<()>;
    /// Makes a folder and returns its attributes when the server gave them
    /// in the same round trip (`None`: ask with `lstat`).
    fn mkdir(&self, path: &[u8], perm: u32) -> RResult<Option<Meta>>;
    fn rmdir(&self, path: &[u8]) -> RResult<()>;
    /// rename(2) semantics: replaces an existing `to`.
    fn rename(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    /// Fails with `AlreadyExists` when `to` exists (RENAME_NOREPLACE).
    fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    fn readlink(&self, path: &[u8]) -> RResult<Vec<u8>>;
    fn symlink(&self, link_path: &[u8], target: &[u8]) -> RResult<()>;
    /// `Unsupported` when the server offers no hard links.
    fn hardlink(&self, from: &[u8], to: &[u8]) -> RResult<()>;
    /// `Unsupported` when the server cannot tell.
    fn statvfs(&self, path: &[u8]) -> RResult<SpaceStats>;
    fn realpath(&self, path: &[u8]) -> RResult<Vec<u8>>;
    /// What this server can do (see `ServerCaps`).
    fn capabilities(&self) -> ServerCaps {
        ServerCaps {
            replace: self.replace_mode(),
            ..ServerCaps::default()
        }
    }
    /// How an upload over an existing name will be published (cheap: asked
    /// at every open for writing).
    fn replace_mode(&self) -> ReplaceMode {
        ReplaceMode::Atomic
    }
    /// True while this process's hidden-aside replace owns `aside` (a full
    /// path): recovery must leave it alone.
    fn replace_in_progress(&self, _aside: &[u8]) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_names_are_hidden_and_name_their_target() {
        let p = aside_path(b"/root/In/inv.csv");
        let name = &p[b"/root/In/".len()..];
        assert!(p.starts_with(b"/root/In/.inv.csv.coupafs-old.coupafs-"));
        assert!(name.starts_with(b"."), "hidden");
        assert_eq!(aside_target(name), Some(&b"inv.csv"[..]));
        // An upload temp (possibly partial) is not an aside copy.
        assert_eq!(aside_target(b".inv.csv.coupafs-a1b2c3"), None);
        assert_eq!(aside_target(b"inv.csv"), None);
        assert_eq!(aside_target(b".coupafs-old.coupafs-a1b2c3"), None);
        assert_ne!(aside_path(b"/a/b"), aside_path(b"/a/b"), "unique");
    }
}
