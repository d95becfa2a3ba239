//! Filesystem semantics over a `Remote`, not tied to the fuser bindings:
//! inode numbers to paths, cached metadata, open files, atomic uploads.
//! The `fuse` module only converts types and replies.
//!
//! This file holds `Fs` itself (its fields, their lock order, the helpers
//! every operation shares); the operations live beside it: `meta`
//! (lookup, attributes, names), `open_files` (open to release, publish),
//! `dir` (listings), `writeback` (the write-behind pool), `janitor` (stale
//! temp files), `symlink` (keeping link targets inside the mount).

pub(crate) mod cache;
pub mod caller;
mod dir;
pub(crate) mod inode;
mod janitor;
mod meta;
mod open_files;
pub(crate) mod preopen;
pub(crate) mod readahead;
pub(crate) mod spare;
mod symlink;
pub mod temp_name;
pub mod upload;
mod writeback;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{FsError, FsResult, Op};
use crate::fs::cache::MetaCache;
use crate::fs::inode::{join, split, InodeTable};
use crate::fs::open_files::HandleEntry;
use crate::fs::spare::SparePool;
use crate::fs::temp_name::TempNaming;
use crate::fs::upload::{SpoolUsage, Upload};
use crate::fs::writeback::StreamJob;
use crate::remote::{Meta, Remote};

pub(crate) use crate::fs::dir::DirectoryReplier;
use crate::fs::dir::Listing;
pub(crate) use crate::remote::Kind;

/// How the mount presents and changes files.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Absolute remote directory that is the mount's root.
    pub remote_root: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub read_only: bool,
    /// chmod/utimens refused by the server fail instead of being ignored.
    pub strict_setstat: bool,
    pub naming: TempNaming,
    pub spool_dir: PathBuf,
    pub cache_ttl: Duration,
    /// Rewrite symlinks that leave the mount (absolute or climbing out).
    pub contain_symlinks: bool,
    /// Local spool bytes allowed across all files being written; writes
    /// beyond it fail with ENOSPC instead of filling the local disk.
    pub spool_max: u64,
    /// Upload temp files kept open ahead per folder (see `spare`); 0: none.
    pub spare_temps: usize,
}

/// Attributes as the kernel sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) kind: Kind,
    pub(crate) perm: u16,
    pub(crate) mtime: SystemTime,
    pub(crate) atime: SystemTime,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
}

/// statfs(2) figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FsStats {
    pub(crate) blocks: u64,
    pub(crate) bfree: u64,
    pub(crate) bavail: u64,
    pub(crate) files: u64,
    pub(crate) ffree: u64,
    pub(crate) bsize: u32,
    pub(crate) namelen: u32,
    pub(crate) frsize: u32,
}

/// Attribute changes (setattr).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<SystemTime>,
    pub(crate) mtime: Option<SystemTime>,
}

use crate::sync::lock;

fn to_secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn from_secs(s: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(s))
}

/// A mount-relative path for the log, escaped (names come from the server).
fn show(path: &[u8]) -> String {
    format!("/{}", crate::error::escape(path))
}

/// The filesystem: every operation the kernel asks for, over `R`.
///
/// Lock order. The mutexes below guard in-memory tables only; none is
/// held across a remote round trip (a guard lives for one statement, or a
/// block that makes no remote call). Where two are held at once, they are
/// taken in this order and never the other way round:
///
/// 1. `uploads`, then an `Upload`'s state lock (`Upload::state`): counting
///    or marking the uploads of the table.
/// 2. `inodes`, then `opened_versions` (a publish forgets the version it
///    replaces).
///
/// Every other lock is a leaf, taken alone: `handles`, `dir_handles`,
/// `streams`, `opened_versions`, `kernel_invalidations`, `space`, the cache's own
/// locks, and an open file's handle slot and read-ahead state. An
/// `Upload`'s state lock is never held while taking an `Fs` lock. The one
/// lock held across round trips is `Upload`'s publish serialiser (one
/// publish or sync per upload at a time), taken with no `Fs` lock held.
pub struct Fs<R: Remote> {
    remote: Arc<R>,
    cfg: FsConfig,
    cache: Arc<MetaCache>,
    inodes: Mutex<InodeTable>,
    /// Files being written, by inode.
    uploads: Mutex<HashMap<u64, Arc<Upload>>>,
    /// Open files, by file handle.
    handles: Mutex<HashMap<u64, Arc<HandleEntry>>>,
    /// Open directories (listing snapshots), by file handle.
    dir_handles: Mutex<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
    /// Background write-behind jobs (inode, upload).
    streams: Mutex<Option<mpsc::Sender<StreamJob>>>,
    /// Remote temp files opened ahead of creates.
    spares: Arc<SparePool>,
    /// Handles opened beside a reader's lookup (see `preopen`).
    preopened: Arc<preopen::PreOpened>,
    /// The kernel's id of this mount (fdinfo `mnt_id`), once mounted.
    mount_id: OnceLock<u64>,
    /// Bytes held in local spools (live uploads count themselves in).
    spool_bytes: Arc<SpoolUsage>,
    /// The remote as a trait object, for the read-ahead workers.
    dyn_remote: Arc<dyn Remote>,
    ahead_pool: Arc<readahead::Pool>,
    /// (size, mtime) of each file when last opened for reading.
    opened_versions: Mutex<HashMap<u64, FileVersion>>,
    /// (parent inode, name) for the kernel to forget (FUSE_NOTIFY_INVAL_ENTRY).
    kernel_invalidations: Mutex<Option<mpsc::Sender<KernelEntry>>>,
    /// The last statfs figures and when they were fetched (`statfs`).
    space: Mutex<Option<(std::time::Instant, FsStats)>>,
    /// Unmounting has begun publishing: no file may be opened for writing
    /// any more (its upload would start after the last publish pass and
    /// leave an unnamed temp). Set and read under the `uploads` lock.
    closing: AtomicBool,
}

/// A directory entry the kernel caches: (parent inode, name).
pub type KernelEntry = (u64, Vec<u8>);

/// (size, mtime) identifying a version of a file's content.
type FileVersion = (Option<u64>, Option<u32>);

/// Threads fetching read-ahead blocks (each keeps 16 READs in flight):
/// enough to keep a WAN link's window full; more only cost memory, as the
/// CPU, not the link, then limits (see scripts/bench.sh).
const READ_AHEAD_WORKERS: usize = 6;

/// How long a write that finds the spool full waits for space already on
/// its way back (see `room_in_spool`).
const SPOOL_GRACE: Duration = Duration::from_secs(2);

/// Spares of a folder are removed once it has seen no create this long.
const SPARE_IDLE: Duration = Duration::from_secs(3);

impl<R: Remote> Fs<R> {
    pub fn new(remote: Arc<R>, cfg: FsConfig) -> Arc<Self> {
        let cache = Arc::new(MetaCache::new(cfg.cache_ttl));
        let (tx, rx) = mpsc::channel::<StreamJob>();
        let dyn_remote: Arc<dyn Remote> = remote.clone();
        let spares = SparePool::new(
            dyn_remote.clone(),
            cfg.naming.clone(),
            cfg.spare_temps,
            SPARE_IDLE,
        );
        let fs = Arc::new(Self {
            spares,
            preopened: preopen::PreOpened::new(dyn_remote.clone()),
            remote,
            cfg,
            cache,
            inodes: Mutex::new(InodeTable::new()),
            uploads: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            streams: Mutex::new(Some(tx)),
            mount_id: OnceLock::new(),
            spool_bytes: Arc::new(SpoolUsage::default()),
            dyn_remote,
            ahead_pool: readahead::Pool::new(READ_AHEAD_WORKERS),
            opened_versions: Mutex::new(HashMap::new()),
            kernel_invalidations: Mutex::new(None),
            space: Mutex::new(None),
            closing: AtomicBool::new(false),
        });
        Self::start_write_behind(&fs, rx);
        fs
    }

    /// Records the kernel's id for this mount (see `caller::still_open`).
    pub fn set_mount_id(&self, id: u64) {
        let _ = self.mount_id.set(id);
    }

    /// Stops the write-behind workers (they finish their current job) and
    /// removes the spare temp files.
    pub fn shutdown(&self) {
        lock(&self.streams).take();
        self.spares.shutdown();
        self.preopened.shutdown();
    }

    /// Bytes held in local spools (files being written).
    fn spool_usage(&self) -> u64 {
        self.spool_bytes.get()
    }

    /// Whether `growth` more spooled bytes fit under `spool_max`. When they
    /// do not but a published (clean) upload or one already dropped from the
    /// table still counts, its bytes come back within moments, so this
    /// waits up to `SPOOL_GRACE` for them.
    fn room_in_spool(&self, growth: u64) -> bool {
        let max = self.cfg.spool_max;
        if self.spool_usage().saturating_add(growth) <= max {
            return true;
        }
        let draining = {
            let uploads = lock(&self.uploads);
            let mut live = 0u64;
            let mut clean = false;
            for up in uploads.values() {
                let st = up.state();
                live += st.size;
                clean |= !st.dirty && st.size > 0;
            }
            clean || live < self.spool_usage()
        };
        draining && self.spool_bytes.wait_for_room(growth, max, SPOOL_GRACE)
    }

    /// A new, empty upload whose spool counts against `spool_max`.
    fn new_upload(&self, mode: u32, remote_exists: bool) -> std::io::Result<Arc<Upload>> {
        let up = Upload::new(&self.cfg.spool_dir, mode, remote_exists)?;
        up.count_in(&self.spool_bytes);
        Ok(up)
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.cfg.cache_ttl
    }

    /// Uploads not yet published (for the status file and shutdown).
    pub fn pending_uploads(&self) -> usize {
        lock(&self.uploads)
            .values()
            .filter(|u| {
                let st = u.state();
                st.dirty && !st.unlinked
            })
            .count()
    }

    fn remote_path(&self, rel: &[u8]) -> Vec<u8> {
        let root = &self.cfg.remote_root;
        if rel.is_empty() {
            return root.clone();
        }
        let mut p = root.clone();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(rel);
        p
    }

    fn path_of(&self, op: Op, ino: u64) -> FsResult<Vec<u8>> {
        lock(&self.inodes)
            .path(ino)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| FsError::new(op, format!("inode {ino}"), libc::ESTALE, "unknown inode"))
    }

    fn child_path(&self, op: Op, parent: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let name = name.as_bytes();
        let parent_path = self.path_of(op, parent)?;
        // Checked before any round trip: a name over NAME_MAX is
        // ENAMETOOLONG as on a local filesystem (the server would only say
        // FAILURE, or NO_SUCH_FILE).
        match inode::check_name(name) {
            Ok(()) => {}
            Err(inode::BadName::TooLong) => {
                return Err(FsError::new(
                    op,
                    show(&parent_path),
                    libc::ENAMETOOLONG,
                    format!("name of {} bytes", name.len()),
                ))
            }
            Err(_) => {
                return Err(FsError::new(
                    op,
                    show(&parent_path),
                    libc::EINVAL,
                    "bad name",
                ))
            }
        }
        Ok(join(&parent_path, name))
    }

    fn deny_read_only(&self, op: Op, path: &[u8]) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::new(
                op,
                show(path),
                libc::EROFS,
                "mounted read-only",
            ))
        } else {
            Ok(())
        }
    }

    fn stat_from(&self, ino: u64, a: &Meta) -> Stat {
        // A server that sends no permissions says nothing of the type
        // either: show a plain file.
        let kind = a.kind.unwrap_or(Kind::File);
        let mut perm = a.permissions.unwrap_or(0o644) & 0o7777;
        if let Some(mask) = self.cfg.umask {
            perm &= !mask;
        }
        let (atime, mtime) = a.atime.zip(a.mtime).unwrap_or((0, 0));
        Stat {
            ino,
            size: a.size.unwrap_or(0),
            kind,
            perm: perm as u16,
            mtime: from_secs(mtime),
            atime: from_secs(atime),
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        }
    }

    fn upload_stat(&self, ino: u64, upload: &Upload) -> Stat {
        let st = upload.state();
        let now = SystemTime::now();
        let mut perm = st.mode & 0o7777;
        if let Some(mask) = self.cfg.umask {
            perm &= !mask;
        }
        let (atime, mtime) = st
            .times
            .map(|(a, m)| (from_secs(a), from_secs(m)))
            .unwrap_or((now, now));
        Stat {
            ino,
            size: st.size,
            kind: Kind::File,
            perm: perm as u16,
            mtime,
            atime,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink: 1,
        }
    }

    fn upload_of(&self, ino: u64) -> Option<Arc<Upload>> {
        lock(&self.uploads).get(&ino).cloned()
    }

    /// Attributes of `path` from the cache or the server.
    fn fetch_attrs(&self, op: Op, path: &[u8]) -> FsResult<Meta> {
        self.fetch_attrs_for(op, path, &|| false)
    }

    /// `fetch_attrs` for a lookup whose caller may be opening the file to
    /// read it (`reader` says so, asked only when the server must answer):
    /// then the OPEN goes beside the LSTAT, and a regular file's handle
    /// waits in `preopened` for the open(2) that follows.
    fn fetch_attrs_for(&self, op: Op, path: &[u8], reader: &dyn Fn() -> bool) -> FsResult<Meta> {
        // A relisting and the LSTAT share the caller's one `timeout`.
        let _call = crate::remote::deadline::CallScope::enter();
        if let Some(a) = self.cache.attrs(path) {
            return Ok(a);
        }
        if self.cache.is_negative(path) {
            return Err(FsError::new(op, show(path), libc::ENOENT, "cached"));
        }
        if self.cache.wants_relisting(path) && self.list_dir(split(path).0).is_ok() {
            // A job creating files here: the fresh listing answers this
            // lookup and the next ones.
            if let Some(a) = self.cache.attrs(path) {
                return Ok(a);
            }
            if self.cache.is_negative(path) {
                return Err(FsError::new(op, show(path), libc::ENOENT, "listed"));
            }
        }
        let remote_path = self.remote_path(path);
        let fetched = if reader() {
            self.remote
                .lstat_open_read(&remote_path)
                .map(|(a, handle)| {
                    if let Some(h) = handle {
                        if a.kind == Some(Kind::File) {
                            log::debug!("lookup {}: opened ahead for its reader", show(path));
                            self.preopened.put(path, h);
                        } else {
                            // A symlink's target or a folder: not what the
                            // open(2) of this name will ask for.
                            self.remote.close_quietly(&h);
                        }
                    }
                    a
                })
        } else {
            self.remote.lstat(&remote_path)
        };
        match fetched {
            Ok(a) => {
                self.cache.put_attrs(path, a.clone());
                Ok(a)
            }
            Err(e) => {
                if e.is_not_found() {
                    self.cache.put_negative(path);
                }
                Err(FsError::remote(op, show(path), &e))
            }
        }
    }

    /// Files open for writing right now.
    pub fn open_writers(&self) -> usize {
        lock(&self.uploads)
            .values()
            .filter(|u| {
                let st = u.state();
                st.handles > 0 && !st.unlinked && !st.discarded
            })
            .count()
    }
}

#[cfg(test)]
mod tests;
