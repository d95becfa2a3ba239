//! The fuser session of a mount: our options mapped to fuser's mount
//! options and access rule, the kernel mount itself, the thread that passes
//! the filesystem's entry invalidations to the kernel, and the unmount.
//! Together with the adapter this is the only place fuser is named.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{caller, Fs};
use crate::remote::Remote;

use super::FuseAdapter;

/// Who may use the mount besides the kernel's checks (`allow_other`,
/// `allow_root`; the FUSE default is the mounting user only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Owner,
    RootAndOwner,
    All,
}

/// The session settings a mount chooses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionOptions {
    /// The source column of /proc/mounts (`user@host:dir`).
    pub(crate) fsname: String,
    pub(crate) read_only: bool,
    /// Let the kernel check modes against uid/gid (`default_permissions`).
    pub(crate) default_permissions: bool,
    pub(crate) access: Access,
    /// Threads serving kernel requests (at least one).
    pub(crate) threads: usize,
}

/// The fuser configuration for `o`.
fn config(o: &SessionOptions) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(o.fsname.clone()),
        // As a kernel option (fuser passes Subtype only to fusermount), so
        // that /proc/mounts shows the type fuse.coupafs, as in fstab.
        fuser::MountOption::CUSTOM("subtype=coupafs".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if o.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    if o.default_permissions {
        config
            .mount_options
            .push(fuser::MountOption::DefaultPermissions);
    }
    config.acl = match o.access {
        Access::All => fuser::SessionACL::All,
        Access::RootAndOwner => fuser::SessionACL::RootAndOwner,
        Access::Owner => fuser::SessionACL::Owner,
    };
    config.n_threads = Some(o.threads.max(1));
    config
}

/// A live mount served by fuser's background threads.
pub(crate) struct MountedSession {
    background: fuser::BackgroundSession,
    mountpoint: PathBuf,
}

/// Mounts `fs` on `mountpoint` and starts serving it.
pub(crate) fn mount<R: Remote>(
    fs: Arc<Fs<R>>,
    mountpoint: &Path,
    options: &SessionOptions,
) -> Result<MountedSession, String> {
    let session = fuser::Session::new(FuseAdapter::new(fs.clone()), mountpoint, &config(options))
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    // Known before the first request is served: `caller::still_open`
    // compares it with the mnt_id of the caller's descriptors.
    if let Some(id) = caller::mount_id(mountpoint) {
        fs.set_mount_id(id);
    }
    // Invalidations are sent from their own thread: notifying from inside
    // a related request handler deadlocks (see Fs::invalidate_kernel_entry).
    let notifier = session.notifier();
    let (inval_tx, inval_rx) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
    fs.set_kernel_invalidations(inval_tx);
    let _ = std::thread::Builder::new()
        .name("kernel-notify".into())
        .spawn(move || {
            for (parent, name) in inval_rx {
                let _ = notifier
                    .inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::from_bytes(&name));
            }
        });
    let background = session
        .spawn()
        .map_err(|e| format!("cannot start the FUSE session: {e}"))?;
    Ok(MountedSession {
        background,
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl MountedSession {
    /// True once the session has ended: the mount was unmounted from
    /// outside (umount, fusermount -u) or the kernel aborted it.
    pub(crate) fn has_ended(&self) -> bool {
        self.background.guard.is_finished()
    }

    /// Ends the session: unmounts (unless it was unmounted from outside)
    /// and joins the serving threads. If the kernel refuses (the mount is
    /// busy), detaches it lazily (MNT_DETACH), as `umount -l` would: it
    /// disappears from the namespace now and goes when its last user does.
    pub(crate) fn unmount(self) {
        if self.has_ended() {
            let _ = self.background.join();
            return;
        }
        let mountpoint = self.mountpoint;
        if let Err(e) = self.background.umount_and_join() {
            log::warn!("unmount: {e}; detaching lazily");
            lazy_unmount(&mountpoint);
        }
    }
}

fn lazy_unmount(mountpoint: &Path) {
    if let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) {
        // SAFETY: umount2 with a valid C path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuser::MountOption as M;

    fn options() -> SessionOptions {
        SessionOptions {
            fsname: "acme@sftp.example.com:/x".into(),
            read_only: false,
            default_permissions: false,
            access: Access::Owner,
            threads: 8,
        }
    }

    #[test]
    fn defaults_are_nodev_nosuid_owner_only_with_the_subtype_as_kernel_option() {
        let c = config(&options());
        assert_eq!(
            c.mount_options,
            vec![
                M::FSName("acme@sftp.example.com:/x".into()),
                M::CUSTOM("subtype=coupafs".into()),
                M::NoDev,
                M::NoSuid,
            ]
        );
        assert_eq!(c.acl, fuser::SessionACL::Owner);
        assert_eq!(c.n_threads, Some(8));
    }

    #[test]
    fn read_only_and_default_permissions_add_their_options() {
        let c = config(&SessionOptions {
            read_only: true,
            default_permissions: true,
            ..options()
        });
        assert_eq!(&c.mount_options[4..], &[M::RO, M::DefaultPermissions]);
    }

    #[test]
    fn access_maps_to_the_session_acl() {
        for (access, acl) in [
            (Access::Owner, fuser::SessionACL::Owner),
            (Access::RootAndOwner, fuser::SessionACL::RootAndOwner),
            (Access::All, fuser::SessionACL::All),
        ] {
            let c = config(&SessionOptions {
                access,
                ..options()
            });
            assert_eq!(c.acl, acl, "{access:?}");
        }
    }

    #[test]
    fn at_least_one_thread_serves() {
        let c = config(&SessionOptions {
            threads: 0,
            ..options()
        });
        assert_eq!(c.n_threads, Some(1));
    }
}
