//! What the server can do beyond plain SFTP v3 (`Capabilities`, narrowed
//! when an advertised extension is refused on use), and the replace of an
//! existing name on a server without `posix-rename@openssh.com`: the
//! hidden-aside fallback (see `SftpRemote::replace_aside`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::SftpRemote;
use crate::remote::{aside_path, RResult, Remote, RemoteError};
use crate::sftp::ext;

/// What the server offers beyond plain SFTP v3: from its first
/// connection's extensions, and narrowed at run time when an advertised
/// extension is refused on use (rclone advertises statvfs@openssh.com and
/// answers OP_UNSUPPORTED). Atomics, so a refusal seen by one caller spares
/// every other caller the same refused request.
#[derive(Debug, Default)]
pub(super) struct Capabilities {
    pub(super) posix_rename: AtomicBool,
    pub(super) statvfs: AtomicBool,
    pub(super) fsync: AtomicBool,
    pub(super) hardlink: AtomicBool,
    /// A plain RENAME onto an existing name was refused once (filexfer-02
    /// 6.5; OpenSSH, ProFTPD, gesftpserver): later replaces go straight to
    /// the hidden-aside fallback instead of sending a RENAME known to fail.
    pub(super) rename_refuses: AtomicBool,
    /// The server also refused to move an existing file aside (permission
    /// denied, or no RENAME at all): no replace can succeed, so uploads over
    /// an existing name fail at open().
    pub(super) replace_refused: AtomicBool,
}

/// An extension that may be found refused on use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ext {
    PosixRename,
    Statvfs,
    Fsync,
    Hardlink,
}

impl Ext {
    pub(super) fn name(self) -> &'static str {
        match self {
            Ext::PosixRename => ext::POSIX_RENAME,
            Ext::Statvfs => ext::STATVFS,
            Ext::Fsync => ext::FSYNC,
            Ext::Hardlink => ext::HARDLINK,
        }
    }
}

impl Capabilities {
    pub(super) fn flag(&self, e: Ext) -> &AtomicBool {
        match e {
            Ext::PosixRename => &self.posix_rename,
            Ext::Statvfs => &self.statvfs,
            Ext::Fsync => &self.fsync,
            Ext::Hardlink => &self.hardlink,
        }
    }

    pub(super) fn has(&self, e: Ext) -> bool {
        self.flag(e).load(Ordering::Relaxed)
    }

    /// The server advertised `e` but refused it: absent from now on, said
    /// once (the first caller to see the refusal logs it).
    pub(super) fn refused(&self, e: Ext, why: &RemoteError) {
        if self.flag(e).swap(false, Ordering::Relaxed) {
            log::info!(
                "server advertises {} but refused it ({why}): treated as absent from now on",
                e.name()
            );
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SftpRemote {
    /// A refusal that means "this server does not do that": OP_UNSUPPORTED,
    /// or FAILURE on an extension whose only failure would be its absence.
    pub(super) fn marks_absent(e: Ext, err: &RemoteError) -> bool {
        match err {
            RemoteError::Unsupported(_) => true,
            RemoteError::Failure(_) => matches!(e, Ext::Statvfs | Ext::Fsync),
            _ => false,
        }
    }

    /// Replaces an existing `to` with `from` when the server has no atomic
    /// replace: moves `to` aside to a hidden temp name (`aside_path`, which
    /// listings hide and the janitor knows), renames `from` onto the now
    /// free name, then removes the aside copy. `refusal` is the plain
    /// RENAME's answer when one was already sent: it is not sent again.
    ///
    /// A collector never sees a partial or extra visible file; it may see
    /// the name missing between the two RENAMEs. After a crash in between,
    /// the janitor renames the aside copy back when the final name is
    /// missing and removes it when the final name is there, so the name
    /// always ends with the old or the new content.
    pub(super) fn replace_aside(
        &self,
        from: &[u8],
        to: &[u8],
        refusal: Option<RemoteError>,
    ) -> RResult<()> {
        match self.lstat(to) {
            // A folder is no upload: moving it aside would leave a hidden
            // folder the cleanup's REMOVE cannot delete. rename(2) of a
            // folder onto a folder fails here as the server said.
            Ok(m) if m.is_dir() => {
                return Err(refusal
                    .unwrap_or_else(|| RemoteError::Failure("the target is a folder".into())))
            }
            Ok(_) => {}
            // Nothing to replace: the refusal meant something else.
            Err(e) if e.is_not_found() => {
                return match refusal {
                    Some(r) => Err(r),
                    None => self.rename_v3(from, to),
                }
            }
            Err(e) => return Err(e),
        }
        if refusal.is_some() {
            self.caps.rename_refuses.store(true, Ordering::Relaxed);
        }
        let aside = aside_path(to);
        lock(&self.asides).push(aside.clone());
        let result = (|| {
            if let Err(e) = self.rename_v3(to, &aside) {
                if matches!(
                    e,
                    RemoteError::PermissionDenied(_) | RemoteError::Unsupported(_)
                ) && !self.caps.replace_refused.swap(true, Ordering::Relaxed)
                {
                    log::warn!(
                        "the server refuses to replace existing files ({e}): writing over \
                         an existing name will fail at open() from now on"
                    );
                }
                return Err(e);
            }
            match self.rename_v3(from, to) {
                Ok(()) => {
                    if let Err(e) = self.remove(&aside) {
                        log::warn!(
                            "replaced {} but cannot remove its old copy {}: {e}",
                            String::from_utf8_lossy(to),
                            String::from_utf8_lossy(&aside)
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    if let Err(back) = self.rename_v3(&aside, to) {
                        log::error!(
                            "cannot put {} back from {} after a failed replace: {back} (the janitor retries)",
                            String::from_utf8_lossy(to),
                            String::from_utf8_lossy(&aside)
                        );
                    }
                    Err(e)
                }
            }
        })();
        lock(&self.asides).retain(|a| a != &aside);
        result
    }

    /// rename(2) without posix-rename: plain RENAME, and the hidden-aside
    /// fallback when the server refuses because `to` exists. Which status
    /// means "exists" differs (OpenSSH and gesftpserver: FAILURE, ProFTPD:
    /// FILE_ALREADY_EXISTS), so any refusal is checked with an LSTAT of
    /// `to` rather than trusted by its code.
    pub(super) fn rename_replacing(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        if self.caps.rename_refuses.load(Ordering::Relaxed) {
            return self.replace_aside(from, to, None);
        }
        match self.rename_v3(from, to) {
            Ok(()) => Ok(()),
            // NO_SUCH_FILE is about `from` (or a folder): never "exists".
            Err(e) if e.is_transport() || e.is_not_found() => Err(e),
            Err(e) => self.replace_aside(from, to, Some(e)),
        }
    }
}
