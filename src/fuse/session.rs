//! The fuser session of a mount: our options mapped to fuser's mount
//! options and access rule, the kernel mount itself, the thread that passes
//! the filesystem's entry invalidations to the kernel, and the unmount.
//! Together with the adapter this is the only place fuser is named.
//!
//! Unmounting goes by path, and a path can change hands: after `umount MNT`
//! and an immediate new mount there, the old daemon (still exiting) would
//! unmount the new mount. So the session records the kernel's identity of
//! the mount it made (mount id and device, from /proc/self/mountinfo) and
//! unmounts only while the topmost mount at the path is still that one and
//! our FUSE connection is still alive: both numbers are reused by the
//! kernel once a mount is gone (lowest free), but not while its connection
//! (and so its superblock and device) lives. fuser's own unmount-on-drop
//! (by path) is never run.

use std::mem::ManuallyDrop;
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
    /// `auto_unmount`: fusermount3 unmounts when this process dies.
    pub(crate) auto_unmount: bool,
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
    if o.auto_unmount {
        // fusermount3 mounts and then waits on its socket to unmount when
        // we die. fuser only asks it for that with allow_root or
        // allow_other (it refuses Owner); allow_root adds nobody for a
        // mount made by root, the fstab case.
        config.mount_options.push(fuser::MountOption::AutoUnmount);
        if config.acl == fuser::SessionACL::Owner {
            config.acl = fuser::SessionACL::RootAndOwner;
        }
    }
    config.n_threads = Some(o.threads.max(1));
    config
}

/// A live mount served by fuser's background threads.
pub(crate) struct MountedSession {
    /// Never dropped: its drop unmounts by path, whoever's mount is there
    /// by then (see `unmount`).
    background: ManuallyDrop<fuser::BackgroundSession>,
    /// As the kernel shows it (canonical).
    mountpoint: PathBuf,
    /// The mount this session made; None if it could not be read, and
    /// then nothing is ever unmounted by path.
    identity: Option<MountIdentity>,
}

/// The kernel's identity of one mount: /proc/self/mountinfo's mount id and
/// the device (major:minor) of its superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MountIdentity {
    pub(crate) mount_id: u64,
    pub(crate) major: u32,
    pub(crate) minor: u32,
}

/// The topmost mount at `mountpoint` (the last mountinfo line naming it:
/// a mount stacked on a path comes after the one it covers).
pub(crate) fn mount_at(mountpoint: &Path) -> Option<MountIdentity> {
    let text = std::fs::read("/proc/self/mountinfo").ok()?;
    find_mount(&text, mountpoint.as_os_str().as_bytes())
}

/// `mount_at` over the text of a mountinfo file.
fn find_mount(mountinfo: &[u8], mountpoint: &[u8]) -> Option<MountIdentity> {
    let mut found = None;
    for line in mountinfo.split(|&b| b == b'\n') {
        // id parent major:minor root mountpoint ... (proc(5)); fields are
        // separated by single spaces, which inside a field are escaped.
        let mut fields = line.split(|&b| b == b' ');
        let (Some(id), Some(_parent), Some(dev), Some(_root), Some(point)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        if unescape_mountinfo(point) != mountpoint {
            continue;
        }
        let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
        let Some((major, minor)) = std::str::from_utf8(dev)
            .ok()
            .and_then(|d| d.split_once(':'))
        else {
            continue;
        };
        if let (Some(mount_id), Ok(major), Ok(minor)) = (number(id), major.parse(), minor.parse()) {
            found = Some(MountIdentity {
                mount_id,
                major,
                minor,
            });
        }
    }
    found
}

/// A mountinfo path field with its `\ooo` octal escapes (space, tab,
/// newline, backslash) undone.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Mounts `fs` on `mountpoint` and starts serving it.
pub(crate) fn mount<R: Remote>(
    fs: Arc<Fs<R>>,
    mountpoint: &Path,
    options: &SessionOptions,
) -> Result<MountedSession, String> {
    // fuser mounts on the canonical path, and mountinfo shows that one.
    let mountpoint = &mountpoint
        .canonicalize()
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    let session = fuser::Session::new(FuseAdapter::new(fs.clone()), mountpoint, &config(options))
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    let identity = mount_at(mountpoint);
    if identity.is_none() {
        log::warn!(
            "cannot find the new mount of {} in /proc/self/mountinfo; it will not be \
             unmounted by this process",
            mountpoint.display()
        );
    }
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
        background: ManuallyDrop::new(background),
        mountpoint: mountpoint.to_path_buf(),
        identity,
    })
}

impl MountedSession {
    /// True once the session has ended: the mount was unmounted from
    /// outside (umount, fusermount -u) or the kernel aborted it.
    pub(crate) fn has_ended(&self) -> bool {
        self.background.guard.is_finished()
    }

    /// True while the topmost mount at the path is the one this session
    /// made: same mount id and device, and our connection still alive (so
    /// those numbers cannot have been handed to a newer mount).
    pub(crate) fn is_still_mine(&self) -> bool {
        self.identity
            .is_some_and(|mine| mount_at(&self.mountpoint) == Some(mine))
            && connection_alive()
    }

    /// Ends the session: unmounts if the mount at the path is still ours,
    /// and joins the serving threads. If the kernel refuses (the mount is
    /// busy), detaches it lazily (MNT_DETACH), as `umount -l` would: it
    /// disappears from the namespace now and goes when its last user does.
    /// A mount that is no longer ours (unmounted from outside, maybe with a
    /// new mount in its place) is left alone.
    pub(crate) fn unmount(self) {
        let ended = self.has_ended();
        let mine = self.is_still_mine();
        let MountedSession {
            background,
            mountpoint,
            identity,
        } = self;
        // SAFETY: `background` is never dropped (ManuallyDrop) and never
        // used after this read, so the guard is owned once. The rest of
        // the BackgroundSession (fuser's Mount, whose drop unmounts by
        // path, and the /dev/fuse handle) is leaked on purpose; the
        // process is shutting down.
        let guard = unsafe { std::ptr::read(&background.guard) };
        let (done_tx, done) = std::sync::mpsc::channel();
        let join = move || {
            if let Ok(Err(e)) = guard.join() {
                log::debug!("FUSE session ended: {e}");
            }
            let _ = done_tx.send(());
        };
        match (mine, ended) {
            (true, _) => match umount(&mountpoint, 0) {
                Ok(()) => {
                    // The serving threads end when the kernel destroys the
                    // superblock. A copy of the mount in another mount
                    // namespace (one created while we were mounted, e.g.
                    // a service with PrivateTmp or `ip netns exec`) keeps
                    // it alive after our umount, and them reading forever:
                    // then end the connection itself, as `fusermount -u`
                    // would leave us waiting.
                    let _ = std::thread::Builder::new()
                        .name("fuse-join".into())
                        .spawn(join);
                    if done.recv_timeout(JOIN_WAIT).is_err() {
                        log::info!(
                            "{} is still mounted in another mount namespace: ending the FUSE \
                             connection",
                            mountpoint.display()
                        );
                        if let Some(id) = identity {
                            abort_connection(id.minor);
                        }
                        if done.recv_timeout(JOIN_WAIT).is_err() {
                            log::warn!(
                                "the FUSE serving threads did not end; exiting without them"
                            );
                        }
                    }
                }
                Err(e) => {
                    log::warn!("unmount: {e}; detaching lazily");
                    // Busy: the serving threads go when the last user
                    // does; not waited for.
                    if mount_at(&mountpoint) == identity {
                        let _ = umount(&mountpoint, libc::MNT_DETACH);
                    }
                }
            },
            (false, true) => join(),
            (false, false) if !connection_alive() => {
                // Unmounted from outside a moment ago: the serving thread
                // is about to see it.
                join();
            }
            (false, false) => {
                // Our mount is covered by another one (or was moved, or
                // detached while busy): the path is not ours to unmount.
                // End our connection instead, through the kernel's
                // per-connection control file (fusectl); its number is
                // our device's minor, ours while the connection lives.
                log::warn!(
                    "the mount at {} is no longer this process's; not unmounting it",
                    mountpoint.display()
                );
                if let Some(id) = identity {
                    abort_connection(id.minor);
                }
            }
        }
    }
}

/// How long unmounting waits for the serving threads before it ends the
/// connection (and again after that).
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends our FUSE connection through the kernel's per-connection control
/// file (fusectl); its number is our device's minor, ours while the
/// connection lives. Every copy of the mount then fails with ENOTCONN.
fn abort_connection(minor: u32) {
    let abort = format!("/sys/fs/fuse/connections/{minor}/abort");
    if let Err(e) = std::fs::write(&abort, b"1") {
        log::debug!("{abort}: {e}");
    }
}

/// True while this process's FUSE connection lives: one of its /dev/fuse
/// descriptors does not poll as POLLERR (the kernel reports POLLERR once
/// the connection is aborted or its mount destroyed).
fn connection_alive() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    dir.flatten().any(|e| {
        let is_fuse = std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new("/dev/fuse"));
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        if !is_fuse {
            return false;
        }
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: poll of one descriptor without waiting; a descriptor
        // closed meanwhile reports POLLNVAL.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n >= 0 && p.revents & (libc::POLLERR | libc::POLLNVAL) == 0
    })
}

/// umount2(2) on `mountpoint`; for a user mount (EPERM) the setuid
/// fusermount3 (or fusermount) unmounts, as fuser and libfuse do.
fn umount(mountpoint: &Path, flags: libc::c_int) -> std::io::Result<()> {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: umount2 with a valid C path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let lazy = flags & libc::MNT_DETACH != 0;
    for bin in ["fusermount3", "fusermount"] {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        match cmd.arg(mountpoint).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                return Err(std::io::Error::other(crate::logging::escape(
                    out.stderr.trim_ascii_end(),
                )))
            }
            Err(_) => continue,
        }
    }
    Err(e)
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
            auto_unmount: false,
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

    const MOUNTINFO: &[u8] = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
61 22 0:53 / /mnt/coupa rw,nosuid,nodev,relatime shared:30 - fuse.coupafs a@h:/ rw,user_id=0
70 22 0:60 / /mnt/with\\040space rw shared:31 - fuse.coupafs a@h:/ rw
75 61 0:61 / /mnt/coupa rw,nosuid,nodev shared:32 - fuse.coupafs a@h:/ rw,user_id=0
";

    #[test]
    fn the_topmost_mount_at_a_path_is_found() {
        // Two mounts stacked on /mnt/coupa: the later line is on top.
        assert_eq!(
            find_mount(MOUNTINFO, b"/mnt/coupa"),
            Some(MountIdentity {
                mount_id: 75,
                major: 0,
                minor: 61
            })
        );
        assert_eq!(
            find_mount(MOUNTINFO, b"/mnt/with space").map(|m| m.mount_id),
            Some(70)
        );
        assert_eq!(find_mount(MOUNTINFO, b"/mnt"), None);
        assert_eq!(find_mount(MOUNTINFO, b"/mnt/coupa/sub"), None);
        assert_eq!(find_mount(b"garbage\n\n1 2\n", b"/"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(b"/a\\040b\\011c\\012d\\134e"),
            b"/a b\tc\nd\\e"
        );
        // Not an escape: kept as is.
        assert_eq!(unescape_mountinfo(b"/x\\9y\\04"), b"/x\\9y\\04");
    }

    #[test]
    fn the_root_mount_of_this_process_is_visible() {
        assert!(mount_at(Path::new("/")).is_some());
    }

    #[test]
    fn auto_unmount_asks_fusermount_and_lets_root_in() {
        let c = config(&SessionOptions {
            auto_unmount: true,
            ..options()
        });
        assert!(c.mount_options.contains(&M::AutoUnmount));
        assert_eq!(c.acl, fuser::SessionACL::RootAndOwner);
        let c = config(&SessionOptions {
            auto_unmount: true,
            access: Access::All,
            ..options()
        });
        assert_eq!(c.acl, fuser::SessionACL::All);
        assert!(!config(&options()).mount_options.contains(&M::AutoUnmount));
    }
}
