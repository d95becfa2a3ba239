//! The local directories a mount writes in (the write-behind spool and the
//! status file), created or verified by coupafs itself before it uses them.
//!
//! Why: a predictable path such as `/tmp/coupafs-spool-UID` can be created
//! first by another local user (then our files land in their directory), or
//! replaced by a symlink that points our writes elsewhere. So a directory is
//! used only if `lstat` shows a real directory (not a symlink) owned by the
//! running user, and no one else may write in it (a private one: no one else
//! may even look). A directory that fails is refused with the reason; it is
//! never chmod-ed or chown-ed (it may be someone else's).
//!
//! Defaults: root keeps the spool in `/var/spool/coupafs` and status files
//! in `/run/coupafs`; another user keeps both under
//! `$XDG_RUNTIME_DIR/coupafs` (the per-user runtime directory systemd
//! creates), else under a private `/tmp/coupafs-UID`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who may see into a directory besides its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Mode 0700 (the spool, a per-user runtime directory).
    Private,
    /// Others may list and read (mode 0755), not write: root's status
    /// directory, which monitoring scripts read.
    Readable,
}

impl Access {
    /// The mode bits a directory with this access must not have.
    fn forbidden_bits(self) -> u32 {
        match self {
            Access::Private => 0o077,
            Access::Readable => 0o022,
        }
    }

    /// The mode a directory is created with.
    fn create_mode(self) -> u32 {
        match self {
            Access::Private => 0o700,
            Access::Readable => 0o755,
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The default spool directory, created or verified (with the per-user
/// runtime directory it lives in).
pub(crate) fn default_spool_dir() -> Result<PathBuf, String> {
    if euid() == 0 {
        let dir = PathBuf::from("/var/spool/coupafs");
        ensure(&dir, Access::Private, true, "spool dir")?;
        return Ok(dir);
    }
    let runtime = user_runtime_dir();
    ensure(&runtime, Access::Private, false, "runtime dir")?;
    let dir = runtime.join("spool");
    ensure(&dir, Access::Private, false, "spool dir")?;
    Ok(dir)
}

/// The directory of status files, created or verified.
pub(crate) fn status_dir() -> Result<PathBuf, String> {
    let dir = status_dir_path();
    let access = if euid() == 0 {
        Access::Readable
    } else {
        Access::Private
    };
    ensure(&dir, access, false, "status dir")?;
    Ok(dir)
}

/// Where this user's mounts keep their status files (not created or
/// verified: `coupafs status` only reads it).
pub(crate) fn status_dir_path() -> PathBuf {
    if euid() == 0 {
        PathBuf::from("/run/coupafs")
    } else {
        user_runtime_dir()
    }
}

/// `$XDG_RUNTIME_DIR/coupafs`, else `/tmp/coupafs-UID`; either is private
/// and must be verified with `ensure` (with its subdirectories).
fn user_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("coupafs"),
        None => PathBuf::from("/tmp").join(format!("coupafs-{}", euid())),
    }
}

/// Creates `dir` (mode as `access` says) if it is missing, then verifies
/// it: a directory, not a symlink, owned by the running user, without the
/// mode bits `access` forbids. Missing parents are created only when
/// `parents` is set (an explicit `spool_dir=`), and then with the usual
/// mode: only the last component is ours to define.
pub(crate) fn ensure(dir: &Path, access: Access, parents: bool, what: &str) -> Result<(), String> {
    let shown = dir.display();
    if parents {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("{what} {}: {e}", parent.display()))?;
        }
    }
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{what} {shown}: path contains a NUL byte"))?;
    // SAFETY: mkdir with a valid C path. EEXIST is checked below, like any
    // directory that was already there.
    if unsafe { libc::mkdir(c.as_ptr(), access.create_mode()) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("{what} {shown}: cannot create it: {e}"));
        }
    }
    verify(dir, access, what)
}

/// The checks of `ensure`, on a directory that exists.
pub(crate) fn verify(dir: &Path, access: Access, what: &str) -> Result<(), String> {
    let shown = dir.display();
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{what} {shown}: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{what} {shown} is a symbolic link; refusing it (coupafs writes only in a \
             directory it created or verified itself)"
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{what} {shown} is not a directory"));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(format!(
            "{what} {shown} is owned by uid {}, not by the mounting user (uid {me}); \
             refusing it: remove it or choose another directory",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & access.forbidden_bits() != 0 {
        let want = match access {
            Access::Private => "700",
            Access::Readable => "755",
        };
        return Err(format!(
            "{what} {shown} has mode {mode:o}, which lets other users in; refusing it \
             (run chmod {want} on it)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("spool");
        ensure(&dir, Access::Private, false, "spool dir").expect("created");
        let m = std::fs::symlink_metadata(&dir).expect("exists");
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700);
        // Verified again as it is now: still fine.
        ensure(&dir, Access::Private, false, "spool dir").expect("reused");
        // Parents only when asked.
        let deep = base.path().join("a/b/c");
        let err = ensure(&deep, Access::Private, false, "spool dir").expect_err("no parents");
        assert!(err.contains("cannot create it"), "{err}");
        ensure(&deep, Access::Private, true, "spool dir").expect("with parents");
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let real = base.path().join("elsewhere");
        std::fs::create_dir(&real).expect("mkdir");
        chmod(&real, 0o700);
        let link = base.path().join("coupafs-0");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = ensure(&link, Access::Private, false, "status dir").expect_err("symlink");
        assert!(
            err.contains("status dir") && err.contains("is a symbolic link"),
            "{err}"
        );
        // A dangling one too (mkdir fails with EEXIST, not following it).
        let dangling = base.path().join("dangling");
        std::os::unix::fs::symlink(base.path().join("nowhere"), &dangling).expect("symlink");
        let err = ensure(&dangling, Access::Private, false, "spool dir").expect_err("dangling");
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(
            !base.path().join("nowhere").exists(),
            "nothing created there"
        );
    }

    #[test]
    fn a_directory_others_may_enter_or_write_is_refused_not_chmod_ed() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        for mode in [0o755, 0o750, 0o701, 0o1777] {
            chmod(&dir, mode);
            let err = ensure(&dir, Access::Private, false, "spool dir").expect_err("open mode");
            assert!(
                err.contains(&format!("mode {mode:o}")) && err.contains("chmod 700"),
                "{mode:o}: {err}"
            );
            let left = std::fs::metadata(&dir).expect("stat").mode() & 0o7777;
            assert_eq!(left, mode, "the mode is left alone");
        }
        chmod(&dir, 0o755);
        ensure(&dir, Access::Readable, false, "status dir").expect("readable is enough");
        chmod(&dir, 0o775);
        let err = ensure(&dir, Access::Readable, false, "status dir").expect_err("group write");
        assert!(err.contains("chmod 755"), "{err}");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let file = base.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = ensure(&file, Access::Private, false, "spool dir").expect_err("file");
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("coupafs-0");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o700);
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown to nobody");
        let err = ensure(&dir, Access::Private, false, "spool dir").expect_err("not ours");
        assert!(
            err.contains("owned by uid 65534") && err.contains("not by the mounting user"),
            "{err}"
        );
        let m = std::fs::metadata(&dir).expect("stat");
        assert_eq!((m.uid(), m.mode() & 0o777), (65534, 0o700), "left alone");
    }
}
