//! The fuser `Filesystem` implementation: converts types, calls `fs`, sends
//! the reply exactly once, and logs failures with operation and path. No
//! filesystem decisions are made here.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::FsError;
use crate::fs::{DirectoryReplier, Fs, Kind, SetAttr, Stat};
use crate::remote::Remote;

pub(crate) mod session;

pub struct FuseAdapter<R: Remote> {
    fs: Arc<Fs<R>>,
}

impl<R: Remote> FuseAdapter<R> {
    pub fn new(fs: Arc<Fs<R>>) -> Self {
        Self { fs }
    }
}

fn errno(e: &FsError) -> Errno {
    if e.is_routine() {
        log::debug!("{e}");
    } else {
        log::error!("{e}");
    }
    Errno::from_i32(e.errno)
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File | Kind::Other => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

/// A directory's st_blksize. glibc's opendir sizes its getdents buffer from
/// it (32 KiB to 1 MiB, sysdeps/unix/sysv/linux/opendir.c), and the kernel
/// asks for READDIRPLUS replies of that size (up to max_pages): a
/// 20,000-entry folder then takes 4 requests to coupafs instead of 106.
const DIR_BLKSIZE: u32 = 1 << 20;

/// A file's st_blksize: programs size their I/O buffers from it (coreutils'
/// `io_blksize` takes at least 128 KiB anyway; stdio and Python take it as
/// it is), and each write(2) into the mount is one FUSE WRITE request. With
/// 4 KiB, a Python or stdio writer sent a 4 MB file as 500-1,000 requests.
/// Not more than 128 KiB: with 1 MiB, `cat` and `cp` move 1 MiB per request
/// and every FUSE thread's buffer fills that far, which raised peak RSS
/// reading back 64 MiB from about 45 to 55-62 MiB.
const FILE_BLKSIZE: u32 = 128 << 10;

fn attr(s: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(s.ino),
        size: s.size,
        blocks: s.size.div_ceil(512),
        atime: s.atime,
        mtime: s.mtime,
        ctime: s.mtime,
        crtime: s.mtime,
        kind: kind(s.kind),
        perm: s.perm,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: 0,
        blksize: match s.kind {
            Kind::Dir => DIR_BLKSIZE,
            Kind::File => FILE_BLKSIZE,
            Kind::Symlink | Kind::Other => 4096,
        },
        flags: 0,
    }
}

/// `fs` fills plain readdir replies through this.
struct Entries<'a>(&'a mut ReplyDirectory);

impl DirectoryReplier for Entries<'_> {
    fn add(&mut self, ino: u64, offset: u64, name: &[u8], stat: &Stat) -> bool {
        self.0.add(
            INodeNo(ino),
            offset,
            kind(stat.kind),
            OsStr::from_bytes(name),
        )
    }
}

/// `fs` fills readdirplus replies through this.
struct EntriesPlus<'a> {
    reply: &'a mut ReplyDirectoryPlus,
    ttl: std::time::Duration,
}

impl DirectoryReplier for EntriesPlus<'_> {
    fn add(&mut self, ino: u64, offset: u64, name: &[u8], stat: &Stat) -> bool {
        self.reply.add(
            INodeNo(ino),
            offset,
            OsStr::from_bytes(name),
            &self.ttl,
            &attr(stat),
            Generation(0),
        )
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl<R: Remote> Filesystem for FuseAdapter<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Large writes mean fewer round trips into the spool; readdirplus
        // lets `ls -l` take attributes from the listing.
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS
                | InitFlags::FUSE_ATOMIC_O_TRUNC,
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let pid = req.pid();
        let reader = move || crate::fs::caller::opening_for_read(pid);
        match self.fs.lookup_for(parent.0, name, &reader) {
            Ok(s) => reply.entry(&self.fs.ttl(), &attr(&s), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(s) => reply.attr(&self.fs.ttl(), &attr(&s)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.fs.setattr(ino.0, fh.map(|f| f.0), set) {
            Ok(s) => reply.attr(&self.fs.ttl(), &attr(&s)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.fs.mkdir(parent.0, name, mode & !umask) {
            Ok(s) => reply.entry(&self.fs.ttl(), &attr(&s), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self
            .fs
            .symlink(parent.0, link_name, target.as_os_str().as_bytes())
        {
            Ok(s) => reply.entry(&self.fs.ttl(), &attr(&s), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self
            .fs
            .rename(parent.0, name, newparent.0, newname, noreplace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs.link(ino.0, newparent.0, newname) {
            Ok(s) => reply.entry(&self.fs.ttl(), &attr(&s), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags.0, req.pid()) {
            Ok((fh, keep_cache)) => {
                let flags = if keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.fs.flush(ino.0, fh.0, req.pid()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.release(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.fsync(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self
            .fs
            .readdir(ino.0, fh.0, offset, &mut Entries(&mut reply))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut out = EntriesPlus {
            reply: &mut reply,
            ttl: self.fs.ttl(),
        };
        match self.fs.readdirplus(ino.0, fh.0, offset, &mut out) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .fs
            .create(parent.0, name, mode & !umask, flags, req.pid())
        {
            Ok((s, fh)) => reply.created(
                &self.fs.ttl(),
                &attr(&s),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    // Extended attributes: SFTP v3 has none. ENOSYS, answered quietly,
    // tells the kernel once for the whole mount (FUSE then sets no_getxattr
    // and friends and answers EOPNOTSUPP itself), so `ls -l`, which asks
    // for ACLs and SELinux labels on every entry, costs no request per
    // entry; fuser's default answer is the same errno but logs a warning
    // each time.

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: Kind) -> Stat {
        Stat {
            ino: 2,
            size: 0,
            kind,
            perm: 0o755,
            mtime: SystemTime::UNIX_EPOCH,
            atime: SystemTime::UNIX_EPOCH,
            uid: 0,
            gid: 0,
            nlink: 1,
        }
    }

    /// A directory says 1 MiB blocks, so `ls` reads a big folder in 1 MiB
    /// READDIRPLUS replies; a file says 128 KiB, so stdio and Python write
    /// it in 128 KiB requests (one FUSE WRITE each) instead of 4-8 KiB.
    #[test]
    fn directories_and_files_advertise_large_blocks() {
        assert_eq!(attr(&stat(Kind::Dir)).blksize, 1 << 20);
        assert_eq!(attr(&stat(Kind::File)).blksize, 128 << 10);
        assert_eq!(attr(&stat(Kind::Symlink)).blksize, 4096);
    }
}
