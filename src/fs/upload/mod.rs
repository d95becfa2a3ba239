//! Loss-free, atomic uploads.
//!
//! Every file opened for writing gets a local spool (an unlinked temp file
//! in `spool_dir`) that holds its whole content as the writer sees it. The
//! bytes go to the server under a temporary name next to the target
//! (`.NAME.coupafs-XXXXXX`, or in `upload_dir`), and only a complete upload is
//! published, by one rename (`posix-rename@openssh.com` replaces an existing
//! target atomically). Coupa's poller therefore never sees a partial file
//! under its final name, and the writer's close() reports the real outcome.
//!
//! `clean_upto` tracks the prefix of the spool already identical on the
//! remote temp file, so fsync() and close() only send what changed since.
//! A send runs while the writer goes on writing: `low_water` (the lowest
//! offset written since the send's snapshot) says how much of what was sent
//! is still current, and `remote_high` (how far the temp file may extend)
//! makes a truncate below it start a fresh temp, so the server copy never
//! keeps stale bytes past the end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::FsError;
use crate::fs::janitor;
use crate::fs::spare::Spare;
use crate::fs::temp_name::temp_suffix;
use crate::fs::temp_name::TempNaming;

mod send;
mod usage;
use crate::remote::{Committed, Handle, Meta, RResult, Remote, RemoteError, Twin};
pub(crate) use usage::SpoolUsage;

/// Bytes per slice handed to `Remote::write` (pipelined inside).
const UPLOAD_SLICE: usize = 4 << 20;
/// Unsent bytes that start a background stream.
const STREAM_AHEAD: u64 = 256 << 10;
/// New bytes that extend a background round still sending (`Upload::grow`):
/// a few WRITEs, two `cp` writes (fewer wake-ups of the round and the I/O
/// threads than one; no slower in the `cp` loop at 20 ms).
const CHAIN_MIN: u64 = 256 << 10;
/// How long a round that has sent everything waits for the writer's next
/// bytes before it waits for its replies instead. A close, fsync or
/// truncate cuts the wait short.
const GROW_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// Publish attempts when the connection drops mid-upload (the spool still
/// holds every byte, so a retry after reconnect loses nothing). All of them
/// wait for a reconnect within the close()'s one `timeout`
/// (`remote::deadline`), not one `timeout` each.
const PUBLISH_ATTEMPTS: usize = 3;

/// A remote temp file being uploaded to.
#[derive(Clone, Debug)]
struct RemoteTemp {
    path: Vec<u8>,
    handle: Handle,
    /// The same file opened on the other connections (large uploads).
    twins: Vec<Handle>,
    twin_tried: bool,
}

impl RemoteTemp {
    fn new(path: Vec<u8>, handle: Handle) -> Self {
        Self {
            path,
            handle,
            twins: Vec::new(),
            twin_tried: false,
        }
    }

    /// Whether its twins are still to be asked for (`open_twin`), for a
    /// `large` upload.
    fn twin_due(&self, large: bool) -> bool {
        self.twins.is_empty() && !self.twin_tried && large
    }

    /// Records what opening its twins gave: the handles, and whether to
    /// ask again (only after `Later`).
    fn settle_twin(&mut self, outcome: &Twin) {
        self.twin_tried = *outcome != Twin::Later;
        if let Twin::Opened(h) = outcome {
            self.twins = h.clone();
        }
    }

    /// Closes its handles and removes the file.
    fn discard(self, remote: &dyn Remote) {
        for h in &self.twins {
            remote.close_quietly(h);
        }
        // Closing a handle of a dead connection fails at once; the file
        // itself may have to wait for the next connection.
        let _ = remote.close(&self.handle);
        janitor::remove_temp(remote, &self.path);
    }
}

/// A background round's WRITEs in flight: bytes [start, end) of the spool
/// going to the temp opened as `handle`. While the writer is still writing
/// the round takes in its new bytes (`end` grows, see `Upload::grow`). It
/// holds no lock while it waits for its replies, so a close() arriving
/// meanwhile sends [end, size) beside it and then waits for it to land,
/// instead of waiting a whole round trip before sending the rest.
#[derive(Debug)]
struct Flight {
    handle: Handle,
    start: u64,
    end: u64,
}

/// Mutable state of a file being written.
#[derive(Debug)]
pub(crate) struct UploadState {
    pub(crate) size: u64,
    /// Content differs from what the final name holds on the server.
    pub(crate) dirty: bool,
    /// Bumped by every change, to tell whether a publish saw the latest bytes.
    pub(crate) generation: u64,
    /// The final name exists on the server (before or after our publish).
    pub(crate) remote_exists: bool,
    /// The file was unlinked while open: never publish it.
    pub(crate) unlinked: bool,
    /// The writer was killed: what it left is never published.
    pub(crate) discarded: bool,
    /// Created with O_EXCL: the commit must not replace an existing name.
    pub(crate) exclusive: bool,
    /// The last handle is gone: nothing may stream any more.
    pub(crate) released: bool,
    /// The `generation` whose publish failed (close reported it already).
    pub(crate) failed_generation: Option<u64>,
    /// A write() into this file failed (spool full, local I/O error): the
    /// spool no longer holds what the writer meant, so no publish may
    /// happen. Every close reports this error until the content is
    /// truncated to 0 (O_TRUNC, ftruncate(0)); later successful writes do
    /// not clear it, since the bytes of the failed write are missing.
    /// (POSIX lets close() report an earlier write error.)
    pub(crate) poisoned: Option<FsError>,
    /// Permission bits for the published file.
    pub(crate) mode: u32,
    /// `mode` was changed by chmod while the file was open.
    pub(crate) mode_changed: bool,
    /// mtime/atime to set on the published file (utimens while open).
    pub(crate) times: Option<(u32, u32)>,
    /// Open file handles sharing this state (dup'd fds share one handle).
    pub(crate) handles: usize,
    /// The remote temp file and its handle(s), while one is open.
    temp: Option<RemoteTemp>,
    /// Bytes [0, clean_upto) on the remote temp file equal the spool.
    clean_upto: u64,
    /// Lowest offset written since the running send took its snapshot.
    low_water: u64,
    /// The remote temp file may hold bytes up to here (sent or in flight).
    remote_high: u64,
    /// Temp files given up on (after a truncate), removed at the next upload.
    abandoned: Vec<RemoteTemp>,
    /// The background round in flight, if any.
    flight: Option<Flight>,
    /// A background stream is queued or running.
    pub(crate) stream_queued: bool,
    /// Background streaming hit an error; close() will retry and report.
    stream_failed: bool,
    /// Callers waiting for the publish lock (close, fsync, drop): a round
    /// taking in new bytes stops for them.
    serial_waiters: usize,
    /// While a background round waits on `grown` for the writer's next
    /// bytes: where its bytes end. A write reaching `CHAIN_MIN` past it, or
    /// landing below it (a rewrite), wakes the round; others need not.
    growing: Option<u64>,
}

impl UploadState {
    /// Whether the file shows under its final name through the mount. Not
    /// once unlinked, nor after its close() reported a failed first publish:
    /// the kernel sends RELEASE after close() has returned, so without this a
    /// listing taken between the two would show a file that never existed.
    pub(crate) fn shown(&self) -> bool {
        let failed_unpublished =
            !self.remote_exists && self.failed_generation == Some(self.generation);
        !self.unlinked && !failed_unpublished
    }
}

/// A file being written: spool plus state. Shared by every handle on the
/// same inode, so several opens and dup()s see one content.
pub(crate) struct Upload {
    spool: File,
    state: Mutex<UploadState>,
    /// Serialises publishes of this file (held across their round trips,
    /// and by a background round while it plans; it guards nothing else).
    /// Lock order: `publishing`, then `state`.
    publishing: Mutex<()>,
    /// Signalled (with `state`) when a background `Flight` lands.
    landed: Condvar,
    /// Signalled (with `state`), while `growing`, when the writer adds
    /// bytes or a caller wants the publish lock.
    grown: Condvar,
    /// `GROW_WAIT` (tests wait longer, to be independent of scheduling).
    grow_wait: std::time::Duration,
    /// Mount-wide count of spooled bytes, kept equal to the sum of the
    /// sizes of live uploads (so `spool_max` needs no scan per write).
    usage: std::sync::OnceLock<Arc<SpoolUsage>>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(usage) = self.usage.get() {
            let size = self.state.get_mut().map(|st| st.size).unwrap_or(0);
            usage.sub(size);
        }
    }
}

use crate::sync::lock;

impl Upload {
    /// An empty spool in `spool_dir`.
    pub(crate) fn new(spool_dir: &Path, mode: u32, remote_exists: bool) -> io::Result<Arc<Upload>> {
        let spool = tempfile_in(spool_dir)?;
        Ok(Arc::new(Upload {
            spool,
            state: Mutex::new(UploadState {
                size: 0,
                dirty: false,
                generation: 0,
                remote_exists,
                unlinked: false,
                discarded: false,
                exclusive: false,
                released: false,
                failed_generation: None,
                poisoned: None,
                mode,
                mode_changed: false,
                times: None,
                handles: 0,
                temp: None,
                clean_upto: 0,
                low_water: u64::MAX,
                remote_high: 0,
                abandoned: Vec::new(),
                flight: None,
                stream_queued: false,
                stream_failed: false,
                serial_waiters: 0,
                growing: None,
            }),
            publishing: Mutex::new(()),
            landed: Condvar::new(),
            grown: Condvar::new(),
            grow_wait: GROW_WAIT,
            usage: std::sync::OnceLock::new(),
        }))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, UploadState> {
        lock(&self.state)
    }

    /// Counts this upload's spool size into `usage` from now on.
    pub(crate) fn count_in(&self, usage: &Arc<SpoolUsage>) {
        let st = self.state();
        if self.usage.set(usage.clone()).is_ok() {
            usage.add(st.size);
        }
    }

    /// Sets the size, keeping the mount-wide usage count in step.
    fn set_size(&self, st: &mut UploadState, size: u64) {
        if let Some(usage) = self.usage.get() {
            if size >= st.size {
                usage.add(size - st.size);
            } else {
                usage.sub(st.size - size);
            }
        }
        st.size = size;
    }

    /// The remote temp file currently receiving this upload, if any.
    pub(crate) fn temp_path(&self) -> Option<Vec<u8>> {
        self.state().temp.as_ref().map(|t| t.path.clone())
    }

    /// Fills the spool with the remote file's current content (open for
    /// writing without O_TRUNC keeps the old bytes).
    pub(crate) fn load_from(
        &self,
        remote: &dyn Remote,
        path: &[u8],
        limit: Option<u64>,
    ) -> RResult<()> {
        let handle = remote.open_read(path)?;
        let mut offset = 0u64;
        let result = loop {
            let want = match limit {
                Some(l) if offset >= l => break Ok(()),
                Some(l) => (l - offset).min(UPLOAD_SLICE as u64) as u32,
                None => UPLOAD_SLICE as u32,
            };
            match remote.read(&handle, offset, want) {
                Ok(data) if data.is_empty() => break Ok(()),
                Ok(data) => {
                    if let Err(e) = self.spool.write_all_at(&data, offset) {
                        break Err(RemoteError::Protocol(format!("spool write: {e}")));
                    }
                    offset += data.len() as u64;
                    if (data.len() as u32) < want {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let _ = remote.close(&handle);
        result?;
        let mut st = self.state();
        self.set_size(&mut st, offset);
        Ok(())
    }

    /// Writes into the spool. Returns true when enough unsent bytes piled
    /// up that a background stream to the remote temp file should start.
    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<bool> {
        self.spool.write_all_at(data, offset)?;
        let mut st = self.state();
        let size = st.size.max(offset + data.len() as u64);
        self.set_size(&mut st, size);
        st.dirty = true;
        st.generation += 1;
        st.clean_upto = st.clean_upto.min(offset);
        st.low_water = st.low_water.min(offset);
        if st
            .growing
            .is_some_and(|end| st.size >= end + CHAIN_MIN || offset < end)
        {
            self.grown.notify_all();
        }
        let start = !st.stream_queued
            && !st.stream_failed
            && st.size.saturating_sub(st.clean_upto) >= STREAM_AHEAD;
        if start {
            st.stream_queued = true;
        }
        Ok(start)
    }

    /// Starts the upload on an already open, empty remote temp file (a
    /// spare opened with `perm`), saving the OPEN round trip; with the
    /// spare's twins, the upload is striped from its first WRITE.
    pub(crate) fn adopt_temp(&self, spare: Spare, perm: u32) {
        let mut st = self.state();
        let mut temp = RemoteTemp::new(spare.path, spare.handle);
        if !spare.twins.is_empty() {
            temp.twins = spare.twins;
            temp.twin_tried = true;
        }
        if st.temp.is_some() {
            // Not expected for a new upload; never leak it on the server.
            st.abandoned.push(temp);
            return;
        }
        st.temp = Some(temp);
        st.clean_upto = 0;
        st.remote_high = 0;
        if st.mode & 0o7777 != perm {
            // Set at commit, in the same batch as the CLOSE.
            st.mode_changed = true;
        }
    }

    /// Marks a background stream as queued; false when one already is.
    pub(crate) fn queue_stream(&self) -> bool {
        let mut st = self.state();
        if st.stream_queued || st.stream_failed {
            return false;
        }
        st.stream_queued = true;
        true
    }

    /// Background write-behind: sends what the writer has handed over so
    /// far to the remote temp file (opening it first), while the job is still
    /// writing, so close() waits only for the tail. A round holds the publish
    /// lock only to plan (and open the temp); while its WRITEs are in flight
    /// a close() may send the rest beside them (see `Flight`). Stops when a
    /// publish or another stream holds the file. A failure stops streaming;
    /// close() retries from the spool and reports.
    pub(crate) fn stream(&self, remote: &dyn Remote, naming: &TempNaming, final_path: &[u8]) {
        loop {
            let Ok(serial) = self.publishing.try_lock() else {
                break;
            };
            {
                // Nothing to stream once the file was published (a job
                // queued at create may run after close), released, or
                // given up: a temp opened now would be left behind.
                let st = self.state();
                if st.unlinked || st.discarded || st.released || !st.dirty || st.poisoned.is_some()
                {
                    break;
                }
            }
            let sent = match self.plan(remote, naming, final_path, true) {
                Ok(plan) => {
                    // The lock goes once every WRITE of the round is queued
                    // on its connection, not before: a close() overlapping
                    // the round queues its own after them, so each
                    // connection carries the file's bytes in order (rclone
                    // refuses a WRITE that is not at the current end).
                    let mut serial = Some(serial);
                    self.send_round(remote, plan, &mut || drop(serial.take()))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                log::debug!(
                    "write-behind of {} paused: {e}",
                    String::from_utf8_lossy(final_path)
                );
                self.state().stream_failed = true;
                break;
            }
            let st = self.state();
            if st.size.saturating_sub(st.clean_upto) < STREAM_AHEAD {
                break;
            }
        }
        self.state().stream_queued = false;
    }

    pub(crate) fn read_at(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let size = self.state().size;
        if offset >= size {
            return Ok(Vec::new());
        }
        let len = (len as u64).min(size - offset) as usize;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self.spool.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// truncate(2)/O_TRUNC on the spool.
    pub(crate) fn truncate(&self, size: u64) -> io::Result<()> {
        // Only when the length changes: ext4 marks a file truncated to 0
        // and writes it out to disk when it is closed (auto_da_alloc, for
        // programs that replace a file by truncating it). Every create
        // truncates its new, empty spool, which then went to disk whole
        // after its upload, just before being freed.
        if self.spool.metadata()?.len() != size {
            self.spool.set_len(size)?;
        }
        let mut st = self.state();
        if size == 0 {
            // Nothing of the failed write's content is left: what the
            // writer writes from here on is the whole file again.
            st.poisoned = None;
        }
        self.set_size(&mut st, size);
        st.dirty = true;
        st.generation += 1;
        // A remote temp that may extend past the new end cannot be fixed by
        // writing more (SFTP v3 has no ftruncate on a handle we could rely
        // on): start a fresh temp at the next upload.
        if size < st.remote_high {
            st.clean_upto = 0;
            st.remote_high = 0;
            if let Some(temp) = st.temp.take() {
                st.abandoned.push(temp);
            }
        }
        st.clean_upto = st.clean_upto.min(size);
        st.low_water = st.low_water.min(size);
        if st.growing.is_some() {
            self.grown.notify_all();
        }
        Ok(())
    }

    /// The publish lock, for a caller that will hold it across round trips
    /// (close, fsync, drop). A background round taking in new bytes
    /// (`grow`) is told to stop, so the caller waits for it only until its
    /// WRITEs are queued.
    fn serial(&self) -> MutexGuard<'_, ()> {
        {
            let mut st = self.state();
            st.serial_waiters += 1;
            if st.growing.is_some() {
                self.grown.notify_all();
            }
        }
        let serial = lock(&self.publishing);
        self.state().serial_waiters -= 1;
        serial
    }

    /// fsync(): makes the bytes written so far durable on the server, in the
    /// temp file (publishing here would show a partial file under the final
    /// name).
    pub(crate) fn sync(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
    ) -> RResult<()> {
        let _serial = self.serial();
        let (_, handle, _, _) = self.sync_temp(remote, naming, final_path)?;
        match remote.fsync(&handle) {
            Err(RemoteError::Unsupported(_)) => Ok(()),
            other => other,
        }
    }

    /// Uploads what is missing and renames the temp file over `final_path`.
    /// On any failure nothing is left under the final name that was not
    /// there before, and the error is returned for close() to report.
    pub(crate) fn publish(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
    ) -> RResult<Committed> {
        let _serial = self.serial();
        let mut attempt = 1;
        loop {
            match self.publish_once(remote, naming, final_path) {
                Err(e) if (e.is_transport() || e.is_not_found()) && attempt < PUBLISH_ATTEMPTS => {
                    log::warn!(
                        "upload of {} interrupted ({e}); retrying from the local spool",
                        String::from_utf8_lossy(final_path)
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn publish_once(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
    ) -> RResult<Committed> {
        self.state().stream_failed = false;
        let (temp_path, handle, size, generation) = self.sync_temp(remote, naming, final_path)?;
        let (times, mode) = {
            let st = self.state();
            (st.times, st.mode_changed.then_some(st.mode & 0o7777))
        };
        // A chmod/utimens while open reaches the temp file just before the
        // rename (the temp may have been created with the old mode).
        let set = (times.is_some() || mode.is_some()).then(|| Meta::change(mode, times));
        // The temp is consumed by the commit whatever its outcome; a second
        // handle on it is closed alongside (every WRITE was acknowledged).
        let twins = self
            .state()
            .temp
            .take()
            .map(|t| t.twins)
            .unwrap_or_default();
        let replace = !self.state().exclusive;
        let committed = remote.commit(&handle, set.as_ref(), &temp_path, final_path, replace);
        for h in &twins {
            remote.close_quietly(h);
        }
        let committed = match committed {
            Err(RemoteError::Lost(m)) => {
                settle_lost_commit(remote, &temp_path, final_path, size).ok_or(RemoteError::Lost(m))
            }
            other => other,
        };
        match committed {
            Ok(committed) => {
                janitor::remove_deferred(remote);
                let mut st = self.state();
                st.clean_upto = 0;
                st.remote_exists = true;
                st.exclusive = false;
                if st.generation == generation {
                    st.dirty = false;
                }
                Ok(committed)
            }
            Err(e) => {
                self.state().clean_upto = 0;
                janitor::remove_temp(remote, &temp_path);
                Err(e)
            }
        }
    }

    /// A write() failed: from now on no publish happens (see `poisoned`).
    /// The first error is the one every close reports. (The remote temp is
    /// removed by the close, not here: write() must not wait for a stream's
    /// round trips.)
    pub(crate) fn poison(&self, err: FsError) {
        let mut st = self.state();
        if st.poisoned.is_none() {
            st.poisoned = Some(err);
        }
        if st.growing.is_some() {
            self.grown.notify_all();
        }
    }

    /// The write error every publish reports, if a write failed.
    pub(crate) fn poisoned(&self) -> Option<FsError> {
        self.state().poisoned.clone()
    }

    /// Removes the remote temp (and abandoned ones) without publishing;
    /// waits for a running stream so its temp goes too.
    pub(crate) fn drop_temp(&self, remote: &dyn Remote) {
        let _serial = self.serial();
        drop(self.wait_landed());
        self.discard_abandoned(remote);
        self.fail_temp(remote);
    }

    /// The last handle is gone without a publish (unlinked file, or a
    /// failed close): remove the remote temp file.
    pub(crate) fn abandon(&self, remote: &dyn Remote) {
        self.state().released = true;
        self.drop_temp(remote);
    }
}

/// The link died with the commit batch (CLOSE, RENAME) in flight: the
/// server may have run it before the reply was lost. Asked again on the
/// next connection (within the close()'s deadline): the temp gone and the
/// final name holding our size means the rename happened, and close() must
/// say so rather than report a failure for a published file.
fn settle_lost_commit(
    remote: &dyn Remote,
    temp_path: &[u8],
    final_path: &[u8],
    size: u64,
) -> Option<Committed> {
    match remote.lstat(temp_path) {
        Err(e) if e.is_not_found() => {}
        _ => return None,
    }
    let meta = remote.lstat(final_path).ok()?;
    (meta.size == Some(size)).then(|| {
        log::info!(
            "{}: the link dropped during the commit, which the server had done",
            String::from_utf8_lossy(final_path)
        );
        Committed {
            setstat_error: None,
            meta: Some(meta),
        }
    })
}

/// An anonymous file in `dir`: created and unlinked at once, so a crash
/// leaves no spool behind.
fn tempfile_in(dir: &Path) -> io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let path_c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "spool dir has a NUL"))?;
    // SAFETY: O_TMPFILE open of a valid C string path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            path_c.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd >= 0 {
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
    }
    // Filesystems without O_TMPFILE: create a unique name and unlink it.
    for _ in 0..16 {
        let p = dir.join(format!("coupafs-spool-{}", temp_suffix()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a spool file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temps named `.NAME.coupafs-XXXXXX` beside their file.
    fn naming() -> TempNaming {
        TempNaming {
            prefix: b".".to_vec(),
            upload_dir: None,
        }
    }

    /// A mock server and an upload to `final_path` on an adopted spare (no
    /// twin), whose rounds wait for the writer's next bytes as long as a
    /// test needs; the spool lives in the returned folder.
    fn patient_upload(
        final_path: &[u8],
    ) -> (
        crate::remote::mock::MockRemote,
        TempNaming,
        tempfile::TempDir,
        Arc<Upload>,
    ) {
        let remote = crate::remote::mock::MockRemote::new();
        let naming = naming();
        let dir = tempfile::tempdir().expect("tempdir");
        remote.mkdir_p("/root/In");
        let path = naming.temp_path(final_path);
        let handle = remote.create_new(&path, Some(0o644)).expect("open");
        let mut up = Upload::new(dir.path(), 0o644, false).expect("spool");
        Arc::get_mut(&mut up).expect("sole owner").grow_wait = std::time::Duration::from_secs(60);
        up.adopt_temp(
            Spare {
                path,
                handle,
                twins: Vec::new(),
            },
            0o644,
        );
        (remote, naming, dir, up)
    }

    /// A write-behind round that has sent everything takes in what the
    /// writer adds meanwhile instead of waiting for its replies first; a
    /// close stops it at once (not after its wait) and sends only the tail.
    #[test]
    fn a_round_takes_in_what_the_writer_adds_while_it_sends() {
        use crate::fs::tests::wait_for;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (remote, naming, _dir, up) = patient_upload(b"/root/In/g.csv");
        let q = STREAM_AHEAD as usize;
        let data: Vec<u8> = (0..3 * q as u32 + 1000).map(|i| (i % 249) as u8).collect();
        assert!(
            up.write_at(0, &data[..q]).expect("write"),
            "starts a stream"
        );
        let waiting_at = |end: usize| {
            let st = up.state();
            st.growing.is_some() && st.flight.as_ref().is_some_and(|f| f.end == end as u64)
        };
        let closed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let round = s.spawn(|| up.stream(&remote, &naming, b"/root/In/g.csv"));
            wait_for("the round to wait for more", || waiting_at(q));
            up.write_at(q as u64, &data[q..3 * q]).expect("write");
            wait_for("the round to take it in and wait again", || {
                waiting_at(3 * q)
            });
            // Less than CHAIN_MIN: left for the close.
            up.write_at(3 * q as u64, &data[3 * q..]).expect("write");
            let close = s.spawn(|| {
                let r = up.publish(&remote, &naming, b"/root/In/g.csv");
                closed.store(true, Ordering::SeqCst);
                r
            });
            // Within wait_for's bound, far below the round's wait.
            wait_for("the close, which stops the round's wait", || {
                closed.load(Ordering::SeqCst)
            });
            close.join().expect("close").expect("publish");
            round.join().expect("round");
        });
        assert_eq!(
            remote.calls("write_from"),
            2,
            "one round for all the writer wrote while it sent, one send of the tail"
        );
        assert_eq!(remote.file("/root/In/g.csv"), Some(data));
        assert_eq!(remote.open_handles(), 0);
    }

    /// A rewrite of bytes a round already sent stops it taking in more:
    /// what it sent counts only below the rewrite, the next round sends
    /// from there again, and the published file has the new bytes.
    #[test]
    fn a_rewrite_of_sent_bytes_stops_a_round_taking_in_more() {
        use crate::fs::tests::wait_for;
        let (remote, naming, _dir, up) = patient_upload(b"/root/In/r.csv");
        let q = STREAM_AHEAD as usize;
        let mut data: Vec<u8> = (0..q as u32).map(|i| (i % 247) as u8).collect();
        assert!(up.write_at(0, &data).expect("write"), "starts a stream");
        std::thread::scope(|s| {
            let round = s.spawn(|| up.stream(&remote, &naming, b"/root/In/r.csv"));
            wait_for("the round to wait for more", || {
                up.state().growing.is_some()
            });
            up.write_at(0, b"rewritten").expect("rewrite");
            data[..9].copy_from_slice(b"rewritten");
            // The round stops and lands; all of it is unsent again, enough
            // for a second round, which then waits for more.
            wait_for("a second round", || {
                remote.calls("write_from") == 2 && up.state().growing.is_some()
            });
            up.publish(&remote, &naming, b"/root/In/r.csv")
                .expect("publish");
            round.join().expect("round");
        });
        assert_eq!(remote.file("/root/In/r.csv"), Some(data));
        assert_eq!(remote.open_handles(), 0);
    }

    /// A Coupa-sized file adopted from a spare with a twin goes
    /// over both connections from its first WRITE, with no OPEN at close.
    #[test]
    fn a_spare_with_a_twin_stripes_the_upload_from_the_first_write() {
        use crate::remote::mock::MockRemote;
        let remote = MockRemote::new();
        remote.mkdir_p("/root/In");
        let naming = naming();
        let path = naming.temp_path(b"/root/In/spare");
        let handle = remote.create_new(&path, Some(0o644)).expect("open");
        let twins = match remote.open_twin(&path, &handle).expect("twin") {
            crate::remote::Twin::Opened(h) => h,
            other => panic!("no twin: {other:?}"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        up.adopt_temp(
            Spare {
                path,
                handle,
                twins,
            },
            0o644,
        );
        // Below the size at which an upload opens a twin itself.
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        up.write_at(0, &data).expect("write");
        let twins_opened = remote.calls("open_twin");
        up.publish(&remote, &naming, b"/root/In/a.csv")
            .expect("publish");
        assert_eq!(remote.calls("write_striped"), 1, "one round, both handles");
        assert_eq!(remote.calls("open_twin"), twins_opened, "no OPEN at close");
        assert_eq!(remote.file("/root/In/a.csv"), Some(data));
        assert_eq!(
            remote.open_handles(),
            0,
            "the twin is closed with the commit"
        );
    }

    /// An upload over no spare: the first half of `data` handed over and a
    /// write-behind round started on it whose WRITEs the server holds; the
    /// rest written and a close() started beside the round. Once the
    /// close's WRITEs wait too, `meanwhile` runs and the server answers.
    /// Returns the close's outcome.
    fn close_beside_a_held_round(
        remote: &crate::remote::mock::MockRemote,
        data: &[u8],
        path: &[u8],
        meanwhile: impl FnOnce(),
    ) -> RResult<Committed> {
        use crate::fs::tests::wait_for;
        remote.mkdir_p("/root/In");
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        let half = data.len() / 2;
        assert!(
            up.write_at(0, &data[..half]).expect("write"),
            "starts a stream"
        );
        remote.hold("write");
        let naming = naming();
        std::thread::scope(|s| {
            let round = s.spawn(|| up.stream(remote, &naming, path));
            wait_for("the round's first WRITE", || remote.waiting() == 1);
            up.write_at(half as u64, &data[half..]).expect("write");
            let close = s.spawn(|| up.publish(remote, &naming, path));
            // With the round holding the file for its whole round trip, the
            // close's WRITEs would only leave after the round's replies.
            wait_for("the close's WRITEs beside the round", || {
                remote.waiting() == 2
            });
            meanwhile();
            remote.release("write");
            round.join().expect("round");
            close.join().expect("close")
        })
    }

    /// close() during a write-behind round sends the rest beside the round
    /// instead of waiting for the round's replies first (a round trip per
    /// file), and commits only once both have landed.
    #[test]
    fn a_close_sends_the_rest_beside_a_write_behind_round_in_flight() {
        let remote = crate::remote::mock::MockRemote::new();
        let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253) as u8).collect();
        close_beside_a_held_round(&remote, &data, b"/root/In/a.csv", || {
            assert_eq!(remote.file("/root/In/a.csv"), None, "no commit yet");
        })
        .expect("publish");
        assert_eq!(remote.file("/root/In/a.csv"), Some(data));
        assert_eq!(remote.names("/root/In"), vec!["a.csv".to_string()]);
        assert_eq!(remote.open_handles(), 0);
    }

    /// The link drops while a round and the close's WRITEs beside it are in
    /// flight: the close starts over on a fresh temp after the reconnect,
    /// publishes every byte and leaves no temp behind.
    #[test]
    fn a_round_lost_under_an_overlapping_close_is_sent_again() {
        let remote = crate::remote::mock::MockRemote::new();
        let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 241) as u8).collect();
        close_beside_a_held_round(&remote, &data, b"/root/In/b.csv", || {
            remote.lose_connection();
        })
        .expect("publish after the reconnect");
        assert_eq!(remote.file("/root/In/b.csv"), Some(data));
        let temps: Vec<String> = remote
            .names("/root/In")
            .into_iter()
            .filter(|n| crate::fs::temp_name::is_temp_name(n.as_bytes()))
            .collect();
        assert!(temps.is_empty(), "temps left: {temps:?}");
    }

    /// A round that has to create the temp first sizes its send after the
    /// OPEN: a fast writer spooled the rest of a Coupa-sized file
    /// meanwhile, and that decides on striping, not the first 1 MiB.
    #[test]
    fn a_round_that_creates_the_temp_stripes_what_was_spooled_meanwhile() {
        use crate::fs::tests::wait_for;
        use crate::remote::mock::MockRemote;
        let remote = MockRemote::new();
        remote.mkdir_p("/root/In");
        let naming = naming();
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        let data: Vec<u8> = (0..5u32 << 20).map(|i| (i % 233) as u8).collect();
        assert!(
            up.write_at(0, &data[..1 << 20]).expect("write"),
            "starts a stream"
        );
        remote.hold("open");
        std::thread::scope(|s| {
            let round = s.spawn(|| up.stream(&remote, &naming, b"/root/In/a.csv"));
            wait_for("the temp's OPEN", || remote.waiting() == 1);
            up.write_at(1 << 20, &data[1 << 20..]).expect("write");
            remote.release("open");
            round.join().expect("round");
        });
        assert_eq!(remote.calls("open_twin"), 1, "twin opened for the round");
        assert_eq!(remote.calls("write_from"), 1, "one send for all 5 MiB");
        assert_eq!(remote.calls("write_striped"), 1, "and it striped");
        up.publish(&remote, &naming, b"/root/In/a.csv")
            .expect("publish");
        assert_eq!(remote.file("/root/In/a.csv"), Some(data));
        assert_eq!(remote.open_handles(), 0);
    }

    /// With no spare ready, the temp's twins come open beside its create
    /// (the first file of a burst): the upload stripes from its first round,
    /// below the size that would have made it ask `open_twin`, and asks
    /// nothing more. Twins that lost the race to the create are asked for
    /// when the file is large, as on a backend without the batch.
    #[test]
    fn a_temp_created_with_its_twins_stripes_without_asking_again() {
        use crate::remote::mock::MockRemote;
        for (beside, mib, open_twin_calls) in [(true, 3, 0), (false, 5, 1), (false, 3, 0)] {
            let remote = MockRemote::new();
            remote.mkdir_p("/root/In");
            remote.set_twins_beside_creates(Some(beside));
            let naming = naming();
            let dir = tempfile::tempdir().expect("tempdir");
            let up = Upload::new(dir.path(), 0o644, false).expect("spool");
            let data: Vec<u8> = (0..mib << 20).map(|i| (i % 229) as u8).collect();
            up.write_at(0, &data).expect("write");
            up.publish(&remote, &naming, b"/root/In/first.csv")
                .expect("publish");
            let case = format!("beside {beside}, {mib} MiB");
            assert_eq!(remote.calls("create_new_striped"), 1, "{case}");
            assert_eq!(remote.calls("open_twin"), open_twin_calls, "{case}");
            assert_eq!(
                remote.calls("write_striped"),
                usize::from(beside || mib > 4),
                "{case}"
            );
            assert_eq!(remote.file("/root/In/first.csv"), Some(data), "{case}");
            assert_eq!(
                remote.open_handles(),
                0,
                "{case}: twins closed with the commit"
            );
        }
    }

    /// A close() with a large tail while the second connection is still
    /// opening sends a slice, asks again, and stripes the rest.
    #[test]
    fn a_large_close_stripes_once_the_second_connection_is_up() {
        use crate::remote::mock::MockRemote;
        let remote = MockRemote::new();
        remote.mkdir_p("/root/In");
        remote.set_twins_later(1);
        let naming = naming();
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        let data: Vec<u8> = (0..10u32 << 20).map(|i| (i % 239) as u8).collect();
        up.write_at(0, &data).expect("write");
        up.publish(&remote, &naming, b"/root/In/big.csv")
            .expect("publish");
        assert_eq!(remote.calls("open_twin"), 2, "asked again after a slice");
        assert_eq!(remote.calls("write_striped"), 1, "the rest striped");
        assert_eq!(remote.file("/root/In/big.csv"), Some(data));
        assert_eq!(remote.open_handles(), 0);
    }

    /// A new file's spool is empty already: the create's truncate to 0
    /// leaves it alone (on ext4, an ftruncate to 0 would have the whole
    /// spool written to disk when it is closed). A real change still
    /// truncates.
    #[test]
    fn truncating_a_spool_to_its_own_length_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        let mtime = |up: &Upload| {
            up.spool
                .metadata()
                .expect("fstat")
                .modified()
                .expect("mtime")
        };
        let before = mtime(&up);
        std::thread::sleep(std::time::Duration::from_millis(20));
        up.truncate(0).expect("truncate");
        assert_eq!(
            mtime(&up),
            before,
            "the spool was truncated (ftruncate sets mtime)"
        );
        assert!(up.state().dirty, "still a change to the file");
        up.write_at(0, b"hello").expect("write");
        up.truncate(2).expect("truncate");
        assert_eq!(up.spool.metadata().expect("fstat").len(), 2);
        assert_eq!(up.read_at(0, 10).expect("read"), b"he");
    }

    #[test]
    fn spool_tracks_size_dirty_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = Upload::new(dir.path(), 0o644, false).expect("spool");
        assert!(!up.state().dirty);
        up.write_at(0, b"hello").expect("write");
        up.write_at(10, b"world").expect("write");
        assert_eq!(up.state().size, 15);
        assert!(up.state().dirty);
        assert_eq!(up.read_at(0, 100).expect("read"), b"hello\0\0\0\0\0world");
        assert_eq!(up.read_at(12, 2).expect("read"), b"rl");
        assert_eq!(up.read_at(15, 2).expect("read"), b"");
        up.truncate(3).expect("truncate");
        assert_eq!(up.read_at(0, 100).expect("read"), b"hel");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            0,
            "spool is anonymous"
        );
    }
}
