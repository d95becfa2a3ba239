//! Metadata operations: lookup, attributes, and the calls that make,
//! remove or rename names (mkdir, symlink, unlink, rmdir, rename, link),
//! plus statfs. A name's upload, if it has one, speaks for it until
//! published.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc;
use std::time::SystemTime;

use crate::error::{escape, rename_failure_errno, FsError, FsResult, Op, RenameEnds};
use crate::fs::inode::split;
use crate::fs::symlink::{contain_symlink, Contained};
use crate::fs::temp_name::is_temp_name;
use crate::fs::{lock, show, to_secs, Fs, FsStats, KernelEntry, Kind, SetAttr, Stat};
use crate::remote::deadline::CallScope;
use crate::remote::{Meta, Remote, RemoteError};

/// How long statfs figures are reused (never longer than `cache_ttl`).
const STATFS_TTL: std::time::Duration = std::time::Duration::from_secs(1);
impl<R: Remote> Fs<R> {
    #[cfg(test)]
    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Stat> {
        self.lookup_for(parent, name, &|| false)
    }

    /// lookup(2) on behalf of a caller; `reader` tells (asked only when the
    /// server must answer) whether it is opening the file to read it, so
    /// that the OPEN can go beside the LSTAT (`preopen`).
    pub(crate) fn lookup_for(
        &self,
        parent: u64,
        name: &OsStr,
        reader: &dyn Fn() -> bool,
    ) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Lookup, parent, name)?;
        if is_temp_name(name.as_bytes()) {
            return Err(FsError::new(
                Op::Lookup,
                show(&path),
                libc::ENOENT,
                "temp name hidden",
            ));
        }
        let known = lock(&self.inodes).ino_of(&path);
        if let Some(ino) = known {
            if let Some(up) = self.upload_of(ino) {
                if up.state().shown() {
                    let ino = lock(&self.inodes).lookup(&path);
                    return Ok(self.upload_stat(ino, &up));
                }
            }
        }
        let attrs = self.fetch_attrs_for(Op::Lookup, &path, reader)?;
        let ino = lock(&self.inodes).lookup(&path);
        Ok(self.stat_from(ino, &attrs))
    }

    pub(crate) fn forget(&self, ino: u64, nlookup: u64) {
        let open = lock(&self.uploads).contains_key(&ino);
        lock(&self.inodes).forget(ino, nlookup, open);
    }

    pub(crate) fn getattr(&self, ino: u64) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        if let Some(up) = self.upload_of(ino) {
            return Ok(self.upload_stat(ino, &up));
        }
        let path = self.path_of(Op::Getattr, ino)?;
        let attrs = match self.fetch_attrs(Op::Getattr, &path) {
            // The root while the server is unreachable (delay_connect at
            // boot, or a lost link): a plain directory, so that `stat`,
            // `findmnt` and `mountpoint` see the mount; listing it and
            // every other operation still fail with EIO.
            Err(e) if ino == crate::fs::inode::ROOT_INO && e.errno == libc::EIO => Meta {
                kind: Some(crate::remote::Kind::Dir),
                permissions: Some(0o755),
                ..Meta::default()
            },
            other => other?,
        };
        Ok(self.stat_from(ino, &attrs))
    }

    pub(crate) fn setattr(&self, ino: u64, fh: Option<u64>, set: SetAttr) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.path_of(Op::Setattr, ino)?;
        if set.uid.is_some() || set.gid.is_some() {
            // Ownership belongs to the server account: accept and ignore so
            // `cp -p`, `tar x` and `rsync -a` run as root succeed.
            log::debug!("chown {} ignored (server owns all files)", show(&path));
        }
        if set.mode.is_none() && set.size.is_none() && set.atime.is_none() && set.mtime.is_none() {
            return self.getattr(ino);
        }
        self.deny_read_only(Op::Setattr, &path)?;
        let _ = fh;
        if let Some(size) = set.size {
            match self.upload_of(ino) {
                Some(up) => up
                    .truncate(size)
                    .map_err(|e| FsError::local(Op::Setattr, show(&path), &e))?,
                None => self.truncate_closed(ino, &path, size)?,
            }
        }
        let times = match (set.atime, set.mtime) {
            (None, None) => None,
            (Some(a), Some(m)) => Some((to_secs(a), to_secs(m))),
            // UTIME_OMIT for one of them (`touch -m`, `touch -a`): SFTP v3
            // sets both times at once, so the omitted one is sent as it is
            // now, never as 0 or the current time.
            (a, m) => {
                let (cur_a, cur_m) = self.current_times(ino, &path)?;
                Some((a.map_or(cur_a, to_secs), m.map_or(cur_m, to_secs)))
            }
        };
        if let Some(up) = self.upload_of(ino) {
            // Applied when the upload is published (FSETSTAT before the
            // rename), never as chatter after it.
            let mut st = up.state();
            if let Some(mode) = set.mode {
                st.mode = mode;
                st.mode_changed = true;
            }
            if times.is_some() {
                st.times = times;
            }
            let publish_now = !st.dirty && st.remote_exists;
            drop(st);
            if !publish_now {
                return Ok(self.upload_stat(ino, &up));
            }
        }
        if set.mode.is_some() || times.is_some() {
            let attrs = Meta::change(set.mode.map(|m| m & 0o7777), times);
            let rp = self.remote_path(&path);
            self.cache.invalidate(&path);
            if let Err(e) = self.remote.setstat(&rp, &attrs) {
                if self.cfg.strict_setstat || e.is_not_found() || e.is_transport() {
                    return Err(FsError::remote(Op::Setattr, show(&path), &e));
                }
                log::debug!(
                    "setattr {} refused by server, ignored: {}",
                    show(&path),
                    escape(e.to_string().as_bytes())
                );
            }
        }
        self.getattr(ino)
    }

    /// truncate(2) on a file nobody has open: rewritten through the spool
    /// and published by rename, so the server never shows a cut file.
    pub(super) fn truncate_closed(&self, ino: u64, path: &[u8], size: u64) -> FsResult<()> {
        let attrs = self.fetch_attrs(Op::Setattr, path)?;
        let mode = libc::S_IFREG | attrs.permissions.unwrap_or(0o644);
        let up = self
            .new_upload(mode, true)
            .map_err(|e| FsError::local(Op::Setattr, show(path), &e))?;
        let rp = self.remote_path(path);
        if size > 0 {
            up.load_from(self.remote.as_ref(), &rp, Some(size))
                .map_err(|e| FsError::remote(Op::Setattr, show(path), &e))?;
        }
        up.truncate(size)
            .map_err(|e| FsError::local(Op::Setattr, show(path), &e))?;
        let _ = ino;
        self.publish(Op::Setattr, path, &up)
    }

    /// Asks the kernel to forget the dentry of `path` (sent from a
    /// background thread: notifying inside a related handler deadlocks).
    pub(super) fn invalidate_kernel_entry(&self, path: &[u8]) {
        let (parent, name) = split(path);
        let Some(parent_ino) = lock(&self.inodes).ino_of(parent) else {
            return;
        };
        if let Some(tx) = lock(&self.kernel_invalidations).as_ref() {
            let _ = tx.send((parent_ino, name.to_vec()));
        }
    }

    /// Entries the kernel should forget, for the mount's notifier thread.
    pub fn set_kernel_invalidations(&self, tx: mpsc::Sender<KernelEntry>) {
        *lock(&self.kernel_invalidations) = Some(tx);
    }

    /// (atime, mtime) of `path` as they are now: a file being written
    /// shows its upload's, any other the server's (asked afresh, as the
    /// cache may hold a listing's older view).
    fn current_times(&self, ino: u64, path: &[u8]) -> FsResult<(u32, u32)> {
        if let Some(up) = self.upload_of(ino) {
            let s = self.upload_stat(ino, &up);
            return Ok((to_secs(s.atime), to_secs(s.mtime)));
        }
        let now = to_secs(SystemTime::now());
        let meta = self
            .remote
            .lstat(&self.remote_path(path))
            .map_err(|e| FsError::remote(Op::Setattr, show(path), &e))?;
        Ok((meta.atime.unwrap_or(now), meta.mtime.unwrap_or(now)))
    }

    pub(crate) fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.path_of(Op::Readlink, ino)?;
        let target = self
            .remote
            .readlink(&self.remote_path(&path))
            .map_err(|e| FsError::remote(Op::Readlink, show(&path), &e))?;
        if !self.cfg.contain_symlinks {
            return Ok(target);
        }
        let mut link_of = |rel: &[u8]| self.link_target(rel);
        match contain_symlink(&path, &target, &self.cfg.remote_root, &mut link_of)? {
            Contained::Target(t) => Ok(t),
            Contained::Escapes(t) => {
                log::debug!(
                    "readlink {}: target leaves the mount, neutralised",
                    show(&path)
                );
                Ok(t)
            }
            Contained::Loop => Err(FsError::new(
                Op::Readlink,
                show(&path),
                libc::ELOOP,
                "symlink loop",
            )),
        }
    }

    /// The target of the link at the mount-relative `rel`, or `None` when
    /// nothing or no link is there (for symlink containment).
    fn link_target(&self, rel: &[u8]) -> FsResult<Option<Vec<u8>>> {
        match self.fetch_attrs(Op::Readlink, rel) {
            Ok(m) if m.kind == Some(Kind::Symlink) => {}
            Ok(_) => return Ok(None),
            Err(e) if e.errno == libc::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        }
        self.remote
            .readlink(&self.remote_path(rel))
            .map(Some)
            .map_err(|e| FsError::remote(Op::Readlink, show(rel), &e))
    }

    pub(crate) fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Mkdir, parent, name)?;
        self.deny_read_only(Op::Mkdir, &path)?;
        self.cache.invalidate(&path);
        let remote_path = self.remote_path(&path);
        let made = self
            .remote
            .mkdir(&remote_path, mode & 0o7777)
            .map_err(|e| FsError::remote(Op::Mkdir, show(&path), &e))?;
        // A folder we just made is empty: the creates that follow (cp -r,
        // tar x) need no lookup round trip to learn their names are free.
        self.cache.put_empty_dir(&path);
        // Its attributes came with the MKDIR's reply, or from one LSTAT:
        // never from relisting the parent (`fetch_attrs` would, for a folder
        // where a job creates entries), which costs two round trips.
        let attrs = match made {
            Some(a) => a,
            None => self
                .remote
                .lstat(&remote_path)
                .map_err(|e| FsError::remote(Op::Mkdir, show(&path), &e))?,
        };
        self.cache.put_attrs(&path, attrs.clone());
        let ino = lock(&self.inodes).lookup(&path);
        Ok(self.stat_from(ino, &attrs))
    }

    pub(crate) fn symlink(&self, parent: u64, name: &OsStr, target: &[u8]) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Symlink, parent, name)?;
        self.deny_read_only(Op::Symlink, &path)?;
        self.cache.invalidate(&path);
        self.remote
            .symlink(&self.remote_path(&path), target)
            .map_err(|e| FsError::remote(Op::Symlink, show(&path), &e))?;
        let attrs = self.fetch_attrs(Op::Symlink, &path)?;
        let ino = lock(&self.inodes).lookup(&path);
        Ok(self.stat_from(ino, &attrs))
    }

    pub(crate) fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Unlink, parent, name)?;
        self.deny_read_only(Op::Unlink, &path)?;
        self.preopened.discard(&path);
        let ino = lock(&self.inodes).ino_of(&path);
        let upload = ino.and_then(|i| self.upload_of(i));
        let local_only = match &upload {
            Some(up) => {
                let mut st = up.state();
                st.unlinked = true;
                !st.remote_exists
            }
            None => false,
        };
        self.cache.invalidate(&path);
        match self.remote.remove(&self.remote_path(&path)) {
            Ok(()) => {}
            Err(e) if local_only && e.is_not_found() => {}
            Err(e) => {
                if let Some(up) = &upload {
                    if !e.is_not_found() {
                        up.state().unlinked = false;
                    }
                }
                return Err(FsError::remote(Op::Unlink, show(&path), &e));
            }
        }
        self.cache.note_removed(&path);
        lock(&self.inodes).detach(&path);
        Ok(())
    }

    pub(crate) fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Rmdir, parent, name)?;
        self.deny_read_only(Op::Rmdir, &path)?;
        self.cache.invalidate_tree(&path);
        // Spares are hidden from listings, not from the server's rmdir.
        let remote_path = self.remote_path(&path);
        self.spares.clear_under(&remote_path);
        self.remote
            .rmdir(&remote_path)
            .map_err(|e| FsError::remote(Op::Rmdir, show(&path), &e))?;
        self.cache.note_removed(&path);
        lock(&self.inodes).detach(&path);
        Ok(())
    }

    /// rename(2). `noreplace` is RENAME_NOREPLACE.
    pub(crate) fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let from = self.child_path(Op::Rename, parent, name)?;
        let to = self.child_path(Op::Rename, new_parent, new_name)?;
        self.deny_read_only(Op::Rename, &from)?;
        if is_temp_name(new_name.as_bytes()) {
            return Err(FsError::new(
                Op::Rename,
                show(&to),
                libc::EINVAL,
                "reserved temp name",
            ));
        }
        self.preopened.discard(&from);
        self.preopened.discard(&to);
        let ino = lock(&self.inodes).ino_of(&from);
        let upload = ino.and_then(|i| self.upload_of(i));
        let unpublished = upload.as_ref().is_some_and(|u| !u.state().remote_exists);
        // rename(2) keeps size, mode and mtime: what we knew of `from` holds
        // for `to` (mv's next stat needs no round trip).
        let moved_attrs = self.cache.attrs(&from);
        self.cache.invalidate_tree(&from);
        self.cache.invalidate_tree(&to);
        if !unpublished {
            let (rf, rt) = (self.remote_path(&from), self.remote_path(&to));
            // A folder moved or replaced must not carry spares the pool
            // would then look for under their old names (see `clear_under`).
            self.spares.clear_under(&rf);
            self.spares.clear_under(&rt);
            let result = if noreplace {
                self.remote.rename_noreplace(&rf, &rt)
            } else {
                self.remote.rename(&rf, &rt)
            };
            if let Err(e) = result {
                let fromto = format!("{} -> {}", show(&from), show(&to));
                // OpenSSH says only FAILURE (sftp-server.c
                // `errno_to_portable`), and NO_SUCH_FILE for a folder over
                // a file (its rename(2) says ENOTDIR): look at both ends to
                // tell rename(2)'s ENOTEMPTY, ENOTDIR and EISDIR apart.
                let kinds_may_explain = match &e {
                    RemoteError::Failure(_) => true,
                    RemoteError::NotFound(_) => {
                        let ends = self.rename_ends(&rf, &rt);
                        ends.from.is_some() && ends.to.is_some()
                    }
                    _ => false,
                };
                if kinds_may_explain {
                    let ends = self.rename_ends(&rf, &rt);
                    let errno = rename_failure_errno(&ends);
                    let detail = escape(e.to_string().as_bytes());
                    return Err(FsError::new(Op::Rename, fromto, errno, detail));
                }
                return Err(FsError::remote(Op::Rename, fromto, &e));
            }
            self.cache.note_removed(&from);
            if let Some(a) = moved_attrs {
                self.cache.put_attrs(&to, a);
            }
        } else if noreplace && self.fetch_attrs(Op::Rename, &to).is_ok() {
            return Err(FsError::new(
                Op::Rename,
                show(&to),
                libc::EEXIST,
                "target exists",
            ));
        }
        // A file still being written and never published moves locally: its
        // upload will be published under the new name at close.
        let replaced = lock(&self.inodes).ino_of(&to);
        if let Some(old) = replaced.and_then(|i| self.upload_of(i)) {
            old.state().unlinked = true;
        }
        lock(&self.inodes).rename(&from, &to);
        Ok(())
    }

    /// What the server shows of a refused rename's two ends (remote paths);
    /// whatever cannot be learnt stays unknown.
    fn rename_ends(&self, from: &[u8], to: &[u8]) -> RenameEnds {
        let kind = |p: &[u8]| self.remote.lstat(p).ok().and_then(|m| m.kind);
        let (from_kind, to_kind) = (kind(from), kind(to));
        let to_has_entries = from_kind == Some(Kind::Dir)
            && to_kind == Some(Kind::Dir)
            && self.remote.read_dir(to).is_ok_and(|l| {
                l.iter()
                    .any(|e| e.name.as_slice() != b"." && e.name.as_slice() != b"..")
            });
        RenameEnds {
            from: from_kind,
            to: to_kind,
            to_has_entries,
        }
    }

    /// link(2): `hardlink@openssh.com` when the server offers it, else EPERM.
    pub(crate) fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> FsResult<Stat> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Link, new_parent, new_name)?;
        self.deny_read_only(Op::Link, &path)?;
        let from = self.path_of(Op::Link, ino)?;
        if self.upload_of(ino).is_some() {
            return Err(FsError::new(
                Op::Link,
                show(&path),
                libc::EPERM,
                "file is being written",
            ));
        }
        self.remote
            .hardlink(&self.remote_path(&from), &self.remote_path(&path))
            .map_err(|e| FsError::remote(Op::Link, show(&path), &e))?;
        self.cache.invalidate(&path);
        self.cache.invalidate(&from);
        let attrs = self.fetch_attrs(Op::Link, &path)?;
        let ino = lock(&self.inodes).lookup(&path);
        Ok(self.stat_from(ino, &attrs))
    }

    pub(crate) fn statfs(&self) -> FsResult<FsStats> {
        // `du` and `find` (gnulib's fts) call fstatfs on the folders they
        // walk, so a walk answered from the cache paid a round trip for
        // it; figures a second old are as good to `df`.
        let ttl = self.cfg.cache_ttl.min(STATFS_TTL);
        if let Some((at, stats)) = *lock(&self.space) {
            if at.elapsed() < ttl {
                return Ok(stats);
            }
        }
        let stats = self.fetch_statfs()?;
        *lock(&self.space) = Some((std::time::Instant::now(), stats));
        Ok(stats)
    }

    fn fetch_statfs(&self) -> FsResult<FsStats> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        match self.remote.statvfs(&self.cfg.remote_root) {
            Ok(v) => Ok(FsStats {
                blocks: v.blocks,
                bfree: v.blocks_free,
                bavail: v.blocks_available,
                files: v.files,
                ffree: v.files_free,
                bsize: u32::try_from(v.block_size).unwrap_or(4096),
                namelen: u32::try_from(v.name_max).unwrap_or(255),
                frsize: u32::try_from(v.fragment_size).unwrap_or(4096),
            }),
            Err(RemoteError::Unsupported(_)) => Ok(FsStats {
                // No statvfs@openssh.com: report a large, mostly free disk
                // (as sshfs does) so `df` and free-space checks pass.
                blocks: 1 << 30,
                bfree: 1 << 30,
                bavail: 1 << 30,
                files: 1 << 20,
                ffree: 1 << 20,
                bsize: 4096,
                namelen: 255,
                frsize: 4096,
            }),
            Err(e) => Err(FsError::remote(Op::Statfs, "/", &e)),
        }
    }
}
