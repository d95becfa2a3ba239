//! Open files: open/create to release, reads (remote handles with
//! read-ahead, or the spool of a file being written), writes into the
//! spool, and publishing at close (only the opener's close publishes).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::coupa;
use crate::error::{FsError, FsResult, Op};
use crate::fs::caller::{self, Closer, Exit};
use crate::fs::inode::split;
use crate::fs::readahead::{ReadAhead, BLOCK, WHOLE_FILE_MAX};
use crate::fs::spare;
use crate::fs::temp_name::is_temp_name;
use crate::fs::upload::Upload;
use crate::fs::{lock, show, Fs, Stat};
use crate::remote::deadline::CallScope;
use crate::remote::{Handle, Meta, Remote, ReplaceMode};

/// What an open file handle reads from and writes to.
enum OpenFile {
    /// Read-only: a remote handle, re-opened by path if its connection dies,
    /// with its read-ahead state.
    Remote {
        handle: Mutex<Option<Handle>>,
        ahead: Mutex<ReadAhead>,
    },
    /// Open for writing (or reading a file being written): the spool.
    /// `writable` is false for a reader of a file someone else is writing:
    /// its close never publishes.
    Upload {
        upload: Arc<Upload>,
        append: bool,
        writable: bool,
    },
}

pub(super) struct HandleEntry {
    file: OpenFile,
    /// Process that opened the handle: only its close publishes. When /proc
    /// did not answer in time at open, this is the opening thread's id.
    opener: caller::Opener,
    /// The thread that opened it: the same thread closing is the opener
    /// without asking /proc (which a busy process can make slow).
    opener_tid: u32,
}

/// Coupa's rules for a file just committed into `Incoming/<Object>/`: over
/// 8 MB, over 5,000 rows, a BOM or invalid UTF-8 in a CSV make Coupa reject
/// it later, silently for the job. The upload still happens; the log says
/// which rule the file breaks, naming it.
pub(crate) fn coupa_warnings(path: &[u8], up: &Upload) -> Vec<String> {
    if !coupa::is_incoming_path(path) {
        return Vec::new();
    }
    let name = String::from_utf8_lossy(split(path).1).into_owned();
    let size = up.state().size;
    let mut check = coupa::CsvCheck::new(&name);
    if check.is_csv() {
        // Past the size limit the size rule already fires; reading further
        // would only cost time.
        let limit = size.min(coupa::MAX_FILE_BYTES + 1);
        let mut offset = 0u64;
        while offset < limit {
            let want = (limit - offset).min(1 << 20) as u32;
            match up.read_at(offset, want) {
                Ok(chunk) if !chunk.is_empty() => {
                    check.feed(&chunk);
                    offset += chunk.len() as u64;
                }
                _ => break,
            }
        }
    }
    check
        .finish(size)
        .into_iter()
        .map(|p| format!("{} committed, but Coupa will reject it: {p}", show(path)))
        .collect()
}

/// Largest file read through the handle opened beside its lookup when a
/// pair would be opened otherwise: what one SSH channel moves in a round
/// trip (sshd's 2 MiB window), so its READs still cost one round trip.
const PREOPEN_MAX: u64 = 2 << 20;

impl<R: Remote> Fs<R> {
    pub(super) fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// open(2). Returns the file handle and whether the kernel may keep
    /// its page cache.
    pub(crate) fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<(u64, bool)> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.path_of(Op::Open, ino)?;
        let acc = flags & libc::O_ACCMODE;
        let writing = acc == libc::O_WRONLY || acc == libc::O_RDWR || flags & libc::O_TRUNC != 0;
        let mut keep_cache = false;
        let mut size_hint = u64::MAX;
        let file = if writing {
            lock(&self.opened_versions).remove(&ino);
            self.preopened.discard(&path);
            self.deny_read_only(Op::Open, &path)?;
            if self.upload_of(ino).is_none() {
                // The file exists on the server: its upload ends with a
                // replace. Say now if the server allows none, not at close
                // (a shell's `>>` never checks close()).
                self.deny_without_replace(Op::Open, &path)?;
            }
            let up = self.upload_for_write(ino, &path, flags & libc::O_TRUNC != 0)?;
            OpenFile::Upload {
                upload: up,
                append: flags & libc::O_APPEND != 0,
                writable: true,
            }
        } else if let Some(up) = self.upload_of(ino) {
            up.state().handles += 1;
            OpenFile::Upload {
                upload: up,
                append: false,
                writable: false,
            }
        } else {
            let attrs = self.cache.attrs(&path);
            if let Some(size) = attrs.as_ref().and_then(|a| a.size) {
                size_hint = size;
            }
            keep_cache = self.unchanged_since_last_open(ino, attrs.as_ref());
            // A file fetched whole at open and of more than one block is
            // also opened on a second connection (same round trip): its
            // READs then share two connections' windows.
            let pair = !keep_cache && size_hint > BLOCK && size_hint <= WHOLE_FILE_MAX;
            let remote_path = self.remote_path(&path);
            // The handle opened beside this open's own lookup saves the
            // OPEN's round trip. A file of more than one channel's window
            // gains more from the pair (its READs over two windows).
            let preopened = self.preopened.take(&path);
            let preopened = match preopened {
                Some(h) if pair && size_hint > PREOPEN_MAX => {
                    self.remote.close_quietly(&h);
                    None
                }
                other => other,
            };
            let (handle, twin) = match preopened {
                Some(h) => Ok((h, None)),
                None if pair => self.remote.open_read_pair(&remote_path),
                None => self.remote.open_read(&remote_path).map(|h| (h, None)),
            }
            .map_err(|e| FsError::remote(Op::Open, show(&path), &e))?;
            let ahead = Mutex::new(ReadAhead::with_twin(size_hint, twin));
            if !keep_cache {
                // A Coupa-sized file is requested whole now, before the
                // kernel's first READ arrives: its data then costs one round
                // trip. With the page cache kept the kernel may need none.
                ReadAhead::fetch_whole(&ahead, &self.ahead_pool, &self.dyn_remote, &handle);
            }
            OpenFile::Remote {
                handle: Mutex::new(Some(handle)),
                ahead,
            }
        };
        let fh = self.new_fh();
        let opener = caller::opener(pid);
        lock(&self.handles).insert(
            fh,
            Arc::new(HandleEntry {
                file,
                opener,
                opener_tid: pid,
            }),
        );
        Ok((fh, keep_cache))
    }

    /// Whether the kernel may keep its page cache for `ino`: the file has
    /// the size and mtime it had when last opened (FOPEN_KEEP_CACHE).
    pub(super) fn unchanged_since_last_open(&self, ino: u64, attrs: Option<&Meta>) -> bool {
        let Some(a) = attrs else {
            lock(&self.opened_versions).remove(&ino);
            return false;
        };
        let version = (a.size, a.mtime);
        lock(&self.opened_versions).insert(ino, version) == Some(version)
    }

    /// The upload of an existing file opened for writing: shared with other
    /// handles, loaded from the server unless truncated.
    pub(super) fn upload_for_write(
        &self,
        ino: u64,
        path: &[u8],
        truncate: bool,
    ) -> FsResult<Arc<Upload>> {
        // Joining a live upload counts the new handle under the table's
        // lock, before anything else: `release` decides "last handle" under
        // the same lock. (Counted after the truncate, a RELEASE of the
        // previous open racing this one saw the last handle go, with the
        // truncate's fresh generation and no poison, and published what the
        // new writer had written so far: a partial file under its name.)
        let joined = {
            let uploads = lock(&self.uploads);
            if self.closing.load(Ordering::SeqCst) {
                return Err(FsError::unmounting(Op::Open, show(path)));
            }
            uploads
                .get(&ino)
                .cloned()
                .inspect(|up| up.state().handles += 1)
        };
        if let Some(up) = joined {
            if truncate {
                if let Err(e) = up.truncate(0) {
                    up.state().handles -= 1;
                    return Err(FsError::local(Op::Open, show(path), &e));
                }
            }
            return Ok(up);
        }
        let attrs = self.fetch_attrs(Op::Open, path)?;
        let mode = libc::S_IFREG | attrs.permissions.unwrap_or(0o644);
        let up = self
            .new_upload(mode, true)
            .map_err(|e| FsError::local(Op::Open, show(path), &e))?;
        if truncate {
            up.truncate(0)
                .map_err(|e| FsError::local(Op::Open, show(path), &e))?;
        } else if attrs.size.unwrap_or(0) > 0 {
            up.load_from(self.remote.as_ref(), &self.remote_path(path), None)
                .map_err(|e| FsError::remote(Op::Open, show(path), &e))?;
        }
        let mut uploads = lock(&self.uploads);
        if self.closing.load(Ordering::SeqCst) {
            drop(uploads);
            up.drop_temp(self.remote.as_ref());
            return Err(FsError::unmounting(Op::Open, show(path)));
        }
        // Another opener may have raced us: share theirs.
        let up = uploads.entry(ino).or_insert(up).clone();
        up.state().handles += 1;
        Ok(up)
    }

    /// create(2): the file exists only locally (and as a remote temp file)
    /// until its first close publishes it.
    pub(crate) fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        pid: u32,
    ) -> FsResult<(Stat, u64)> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.child_path(Op::Create, parent, name)?;
        self.deny_read_only(Op::Create, &path)?;
        if is_temp_name(name.as_bytes()) {
            return Err(FsError::new(
                Op::Create,
                show(&path),
                libc::EINVAL,
                "reserved temp name",
            ));
        }
        let mut remote_exists = false;
        let exclusive = flags & libc::O_EXCL != 0;
        if exclusive && self.cache.is_negative(&path) {
            // The kernel's lookup just found no such name (cp does exactly
            // this). The commit's non-replacing RENAME enforces O_EXCL on the
            // server, so no extra round trip is spent re-checking here.
        } else if exclusive {
            match self.remote.lstat(&self.remote_path(&path)) {
                Ok(_) => {
                    return Err(FsError::new(
                        Op::Create,
                        show(&path),
                        libc::EEXIST,
                        "exists on server",
                    ))
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(FsError::remote(Op::Create, show(&path), &e)),
            }
        } else if self.cache.attrs(&path).is_some() {
            remote_exists = true;
            self.deny_without_replace(Op::Create, &path)?;
        }
        let up = self
            .new_upload(libc::S_IFREG | (mode & 0o7777), remote_exists)
            .map_err(|e| FsError::local(Op::Create, show(&path), &e))?;
        up.state().exclusive = exclusive;
        // Creating publishes even an empty file at close.
        up.truncate(0)
            .map_err(|e| FsError::local(Op::Create, show(&path), &e))?;
        if let Some(spare) = self.spares.take(&self.remote_path(&path)) {
            up.adopt_temp(spare, spare::SPARE_MODE);
        }
        up.state().handles = 1;
        self.cache.invalidate(&path);
        let ino = lock(&self.inodes).lookup(&path);
        {
            let mut uploads = lock(&self.uploads);
            if self.closing.load(Ordering::SeqCst) {
                drop(uploads);
                up.drop_temp(self.remote.as_ref());
                return Err(FsError::unmounting(Op::Create, show(&path)));
            }
            if let Some(old) = uploads.insert(ino, up.clone()) {
                old.state().unlinked = true;
            }
        }
        let fh = self.new_fh();
        lock(&self.handles).insert(
            fh,
            Arc::new(HandleEntry {
                file: OpenFile::Upload {
                    upload: up.clone(),
                    append: flags & libc::O_APPEND != 0,
                    writable: true,
                },
                opener: caller::opener(pid),
                opener_tid: pid,
            }),
        );
        // Open the remote temp file now, in the background, so close()
        // waits for the tail and the commit only.
        if up.queue_stream() {
            self.queue_stream(ino, &up);
        }
        Ok((self.upload_stat(ino, &up), fh))
    }

    /// Fails an upload over an existing name when the server refuses every
    /// replace (`ReplaceMode::Refuse`), with one log line naming why.
    fn deny_without_replace(&self, op: Op, path: &[u8]) -> FsResult<()> {
        if self.remote.replace_mode() != ReplaceMode::Refuse {
            return Ok(());
        }
        log::warn!(
            "{}: not opened for writing: the server refuses to replace existing files",
            show(path)
        );
        Err(FsError::new(
            op,
            show(path),
            libc::EPERM,
            "server refuses to replace existing files",
        ))
    }

    pub(super) fn handle(&self, op: Op, fh: u64) -> FsResult<Arc<HandleEntry>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::new(op, format!("handle {fh}"), libc::EBADF, "unknown handle"))
    }

    pub(crate) fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let entry = self.handle(Op::Read, fh)?;
        match &entry.file {
            OpenFile::Upload { upload, .. } => upload
                .read_at(offset, size)
                .map_err(|e| FsError::local(Op::Read, format!("inode {ino}"), &e)),
            OpenFile::Remote { handle, ahead } => {
                self.read_remote(ino, handle, ahead, offset, size)
            }
        }
    }

    /// Reads through a remote handle; a handle lost with its connection is
    /// re-opened by path once (reads are idempotent).
    pub(super) fn read_remote(
        &self,
        ino: u64,
        slot: &Mutex<Option<Handle>>,
        ahead: &Mutex<ReadAhead>,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        let path = self.path_of(Op::Read, ino)?;
        let mut retried = false;
        loop {
            let current = lock(slot).clone();
            let handle = match current {
                Some(h) => h,
                None => {
                    let h = self
                        .remote
                        .open_read(&self.remote_path(&path))
                        .map_err(|e| FsError::remote(Op::Read, show(&path), &e))?;
                    *lock(slot) = Some(h.clone());
                    h
                }
            };
            match ReadAhead::read(
                ahead,
                &self.ahead_pool,
                &self.dyn_remote,
                &handle,
                offset,
                size,
            ) {
                Ok(data) => return Ok(data),
                Err(e) if e.is_transport() && !retried => {
                    log::info!("re-opening {} after: {e}", show(&path));
                    retried = true;
                    *lock(slot) = None;
                    lock(ahead).reset();
                }
                Err(e) => return Err(FsError::remote(Op::Read, show(&path), &e)),
            }
        }
    }

    pub(crate) fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let entry = self.handle(Op::Write, fh)?;
        match &entry.file {
            OpenFile::Upload {
                writable: false, ..
            } => Err(FsError::new(
                Op::Write,
                format!("inode {ino}"),
                libc::EBADF,
                "handle is read-only",
            )),
            OpenFile::Upload { upload, append, .. } => {
                let (offset, old_size) = {
                    let st = upload.state();
                    (if *append { st.size } else { offset }, st.size)
                };
                let growth = (offset + data.len() as u64).saturating_sub(old_size);
                // A failed write poisons the upload (see `UploadState::
                // poisoned`): the file's next close reports this error and
                // publishes nothing, since the spool misses these bytes.
                // A full spool fails rather than waiting for space: spool
                // space frees only when a file is closed, and the writers
                // that fill it are usually the ones that would have to
                // close, so waiting would mostly delay the same error. The
                // exception is space already on its way back (a published
                // file whose RELEASE the kernel has yet to send): that wait
                // is short and bounded.
                if growth > 0 && !self.room_in_spool(growth) {
                    let err = FsError::new(
                        Op::Write,
                        format!("inode {ino}"),
                        libc::ENOSPC,
                        format!(
                            "local spool full (spool_max {} MiB)",
                            self.cfg.spool_max >> 20
                        ),
                    );
                    upload.poison(err.clone());
                    return Err(err);
                }
                let start_stream = match upload.write_at(offset, data) {
                    Ok(start) => start,
                    Err(e) => {
                        let err = FsError::local(Op::Write, format!("inode {ino}"), &e);
                        upload.poison(err.clone());
                        return Err(err);
                    }
                };
                if start_stream {
                    self.queue_stream(ino, upload);
                }
                Ok(data.len() as u32)
            }
            OpenFile::Remote { .. } => Err(FsError::new(
                Op::Write,
                format!("inode {ino}"),
                libc::EBADF,
                "handle is read-only",
            )),
        }
    }

    /// close(2) of one descriptor: publishes the file if it changed, and
    /// reports the real outcome. Only the opener's close publishes (see
    /// `caller`): a child closing an inherited copy returns at once, and a
    /// writer killed by a signal never publishes what it left behind.
    pub(crate) fn flush(&self, ino: u64, fh: u64, pid: u32) -> FsResult<()> {
        // `timeout` bounds the whole close(): upload retries and reconnect
        // waits share one deadline.
        let _call = CallScope::enter();
        let entry = self.handle(Op::Flush, fh)?;
        let OpenFile::Upload {
            upload,
            writable: true,
            ..
        } = &entry.file
        else {
            // Read-only handles, including readers of a file being written,
            // never publish.
            return Ok(());
        };
        match caller::lookup_bounded(pid) {
            Closer::Known(c) => {
                if let Some(Exit::Signal(sig)) = c.exiting {
                    if entry.opener.is(c.tgid) {
                        let path = self.path_of(Op::Flush, ino).unwrap_or_default();
                        log::warn!(
                            "writer {} of {} killed by signal {sig}: its upload is discarded, \
                             nothing is published",
                            c.tgid,
                            show(&path)
                        );
                        upload.state().discarded = true;
                    }
                    return Ok(());
                }
                if !entry.opener.is(c.tgid) {
                    log::debug!(
                        "close of inode {ino} by process {} of a descriptor opened by {:?}: \
                         publish waits for the opener",
                        c.tgid,
                        entry.opener
                    );
                    return Ok(());
                }
                let mnt = self.mount_id.get().copied();
                if caller::still_open_bounded(c.tgid, ino, mnt) != Some(false) {
                    log::debug!(
                        "close of one of several descriptors of inode {ino}: publish waits for \
                         the last"
                    );
                    return Ok(());
                }
            }
            // The closer is mid-execve (its /proc entry is locked): an
            // O_CLOEXEC close. Publishing waits for the release, which
            // follows at once when this was the last descriptor.
            //
            // /proc of a live, busy process can be slow too (its threads
            // queue on its memory-map lock while it forks): the thread that
            // opened the file closing it is the opener all the same, and
            // must not see close() return before the publish.
            Closer::Unknown if pid == entry.opener_tid => {
                // Its descriptor table (/proc/TID/fd) needs no such lock.
                let mnt = self.mount_id.get().copied();
                if caller::still_open_bounded(pid, ino, mnt) != Some(false) {
                    log::debug!("close of one of several descriptors: publish waits for the last");
                    return Ok(());
                }
                log::debug!("closer {pid} (the opening thread) slow in /proc: publishing");
            }
            Closer::Unknown => {
                log::info!("closer {pid} not readable in /proc (mid-execve?): publish at release");
                return Ok(());
            }
            Closer::Gone => {}
        }
        let (dirty, skip) = {
            let st = upload.state();
            (st.dirty, st.unlinked || st.discarded)
        };
        if !skip {
            if let Some(err) = upload.poisoned() {
                return Err(self.refuse_poisoned(ino, upload, err));
            }
        }
        if dirty && !skip {
            let path = self.path_of(Op::Flush, ino)?;
            return self.publish(Op::Flush, &path, upload);
        }
        Ok(())
    }

    pub(crate) fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        let _call = CallScope::enter();
        let entry = lock(&self.handles).remove(&fh);
        let Some(entry) = entry else {
            return Ok(());
        };
        match &entry.file {
            OpenFile::Remote { handle, ahead } => {
                let twin = lock(ahead).take_twin();
                if let Some(t) = twin {
                    self.remote.close_quietly(&t);
                }
                let taken = lock(handle).take();
                if let Some(h) = taken {
                    // A read handle: nothing depends on the CLOSE reply
                    // (the server frees the handle either way), so no FUSE
                    // thread waits a round trip for it.
                    self.remote.close_quietly(&h);
                }
                Ok(())
            }
            OpenFile::Upload { upload, .. } => {
                // Decided under the table's lock (see `upload_for_write`);
                // the last handle takes the upload out of the table at
                // once, so a new open starts a fresh one instead of joining
                // an upload this release is about to publish or drop.
                let last = {
                    let mut uploads = lock(&self.uploads);
                    let last = {
                        let mut st = upload.state();
                        st.handles = st.handles.saturating_sub(1);
                        st.handles == 0
                    };
                    if last && uploads.get(&ino).is_some_and(|u| Arc::ptr_eq(u, upload)) {
                        uploads.remove(&ino);
                    }
                    last
                };
                if !last {
                    return Ok(());
                }
                let (dirty, skip, failed_already) = {
                    let st = upload.state();
                    (
                        st.dirty,
                        st.unlinked || st.discarded,
                        st.failed_generation == Some(st.generation),
                    )
                };
                let mut result = Ok(());
                let poisoned = upload.poisoned();
                if let (Some(err), false) = (poisoned.as_ref(), skip || failed_already) {
                    // Last handle of a file whose write failed and whose
                    // close did not report it yet (inherited descriptor,
                    // O_CLOEXEC close): still nothing is published.
                    result = Err(self.refuse_poisoned(ino, upload, err.clone()));
                } else if dirty && !skip && !failed_already && poisoned.is_none() {
                    // Closes flush never published (a child's inherited copy
                    // was the last, an O_CLOEXEC close in execve, mmap).
                    if let Ok(path) = self.path_of(Op::Flush, ino) {
                        result = self.publish(Op::Flush, &path, upload);
                    }
                }
                upload.abandon(self.remote.as_ref());
                let never_published = {
                    let st = upload.state();
                    !st.remote_exists && !st.unlinked
                };
                if never_published {
                    // The kernel still holds the entry from create(): drop
                    // it so the failed file does not linger in `stat`.
                    if let Ok(path) = self.path_of(Op::Flush, ino) {
                        self.invalidate_kernel_entry(&path);
                    }
                }
                let mut uploads = lock(&self.uploads);
                if uploads.get(&ino).is_some_and(|u| Arc::ptr_eq(u, upload)) {
                    uploads.remove(&ino);
                }
                result
            }
        }
    }

    /// fsync(2): bytes written so far are durable on the server (in the
    /// temp file; the final name changes only at close).
    pub(crate) fn fsync(&self, ino: u64, fh: u64) -> FsResult<()> {
        let _call = CallScope::enter();
        let entry = self.handle(Op::Fsync, fh)?;
        if let OpenFile::Upload { upload, .. } = &entry.file {
            if upload.state().unlinked {
                return Ok(());
            }
            let path = self.path_of(Op::Fsync, ino)?;
            upload
                .sync(
                    self.remote.as_ref(),
                    &self.cfg.naming,
                    &self.remote_path(&path),
                )
                .map_err(|e| FsError::remote(Op::Fsync, show(&path), &e))?;
        }
        Ok(())
    }

    /// close() of a file whose write failed: reports the write's error,
    /// publishes nothing (the previous server version stays) and removes
    /// the remote temp holding part of the content.
    fn refuse_poisoned(&self, ino: u64, up: &Upload, err: FsError) -> FsError {
        let path = self.path_of(Op::Flush, ino).unwrap_or_default();
        log::error!(
            "{} NOT published: an earlier write failed ({err}); the server keeps its \
             previous version",
            show(&path)
        );
        {
            let mut st = up.state();
            st.failed_generation = Some(st.generation);
        }
        up.drop_temp(self.remote.as_ref());
        FsError::new(Op::Flush, show(&path), err.errno, err.detail)
    }

    pub(super) fn publish(&self, op: Op, path: &[u8], up: &Upload) -> FsResult<()> {
        if let Some(ino) = lock(&self.inodes).ino_of(path) {
            lock(&self.opened_versions).remove(&ino);
        }
        let rp = self.remote_path(path);
        self.cache.invalidate(path);
        let result = up.publish(self.remote.as_ref(), &self.cfg.naming, &rp);
        self.cache.invalidate(path);
        match result {
            Ok(done) => {
                if let Some(attrs) = done.meta {
                    // The `stat` cp and mv do right after close() needs no
                    // round trip.
                    self.cache.put_attrs(path, attrs);
                }
                if let Some(e) = done.setstat_error {
                    if self.cfg.strict_setstat {
                        return Err(FsError::remote(op, show(path), &e));
                    }
                    log::debug!("setting mode/times on {} refused, ignored: {e}", show(path));
                }
                log::info!("committed {} ({} bytes)", show(path), up.state().size);
                for warning in coupa_warnings(path, up) {
                    log::warn!("{warning}");
                }
                Ok(())
            }
            Err(e) => {
                let mut st = up.state();
                st.failed_generation = Some(st.generation);
                drop(st);
                Err(FsError::remote(op, show(path), &e))
            }
        }
    }

    /// Shutdown after the grace period: files still open for writing are
    /// not published (that would show Coupa a partial file); their bytes
    /// are made durable in their remote temp file and each is named in the
    /// log. Closed files whose publish failed are tried once more. Returns
    /// how many files were left unpublished.
    pub fn shutdown_uploads(&self) -> usize {
        let left = self.shutdown_pending_uploads();
        // Spares first (idempotent; `shutdown` repeats it), so a spare whose
        // removal waits for a connection gets the last pass below too.
        self.spares.shutdown();
        crate::fs::janitor::remove_deferred_at_unmount(self.remote.as_ref());
        left
    }

    fn shutdown_pending_uploads(&self) -> usize {
        // From here on no new upload starts (`create`/`open` refuse with
        // ENOTCONN), so this pass sees every upload there will be.
        let pending: Vec<(u64, Arc<Upload>)> = {
            let uploads = lock(&self.uploads);
            self.closing.store(true, Ordering::SeqCst);
            uploads.iter().map(|(i, u)| (*i, u.clone())).collect()
        };
        let mut left = 0;
        for (ino, up) in pending {
            let (dirty, skip, open) = {
                let st = up.state();
                (st.dirty, st.unlinked || st.discarded, st.handles > 0)
            };
            if !dirty || skip {
                continue;
            }
            let Ok(path) = self.path_of(Op::Flush, ino) else {
                continue;
            };
            if let Some(err) = up.poisoned() {
                log::error!(
                    "{} NOT published at unmount: an earlier write failed ({err})",
                    show(&path)
                );
                up.drop_temp(self.remote.as_ref());
                left += 1;
                continue;
            }
            left += 1;
            let rp = self.remote_path(&path);
            if open {
                match up.sync(self.remote.as_ref(), &self.cfg.naming, &rp) {
                    Ok(()) => {
                        // One state lock at a time: the guard of a
                        // `up.state()` lives to the end of its statement.
                        let size = up.state().size;
                        let temp = up
                            .temp_path()
                            .map(|t| String::from_utf8_lossy(&t).into_owned())
                            .unwrap_or_default();
                        log::error!(
                            "{} still open for writing at unmount: NOT published; its {size} \
                             bytes are kept on the server as {temp}",
                            show(&path),
                        );
                    }
                    Err(e) => log::error!(
                        "{} still open for writing at unmount: NOT published, and saving it to a \
                         temp file failed: {e}",
                        show(&path)
                    ),
                }
            } else if let Err(e) = self.publish(Op::Flush, &path, &up) {
                log::error!("{e}");
            } else {
                left -= 1;
            }
        }
        left
    }
}
