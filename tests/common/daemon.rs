//! Daemon-mode mounts for the tests that go through mount(8), fstab or
//! coupafs without `-f` (tests/ops.rs, tests/sshfs_compat.rs): a mountpoint
//! that cleans up after the daemon it cannot hold a handle to
//! ([`DaemonMount`]), finding that daemon by its command line
//! ([`daemon_pids`]), and helper symlinks at the system paths mount(8)
//! looks in ([`install`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tempfile::TempDir;

use super::{
    coupafs_bin, is_fuse_mounted, pid_alive, send_signal, traversable_tempdir, wait_until,
};

/// The argv of a process.
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live coupafs processes whose command line names `mountpoint`. Only
/// processes named coupafs (or mount.coupafs, mount.fuse.coup...) are looked
/// at closer: reading another process's cmdline or stat can block for as
/// long as that process is stuck in a page fault (on some other FUSE mount).
pub fn daemon_pids(mountpoint: &Path) -> Vec<u32> {
    let want = mountpoint.display().to_string();
    let bin = fs::canonicalize(coupafs_bin()).unwrap();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !matches!(
            comm.trim_end(),
            "coupafs" | "mount.coupafs" | "mount.fuse.coup"
        ) {
            continue;
        }
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        if exe.as_deref() != Some(bin.as_path()) || !pid_alive(pid) {
            continue;
        }
        if cmdline(pid).contains(&want) {
            out.push(pid);
        }
    }
    out
}

pub fn lazy_umount(path: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stderr(Stdio::null())
        .status();
}

/// A mountpoint for daemon-mode mounts (coupafs without -f, mount(8)).
/// Dropping it unmounts lazily and ends any coupafs still serving it.
pub struct DaemonMount {
    /// Holds `path` (`mnt`); free for the test's other files (fstab, keys).
    pub dir: TempDir,
    pub path: PathBuf,
}

impl DaemonMount {
    pub fn new() -> DaemonMount {
        let dir = traversable_tempdir("coupafs-daemon-mnt-");
        let path = dir.path().join("mnt");
        fs::create_dir(&path).unwrap();
        DaemonMount { dir, path }
    }

    pub fn pids(&self) -> Vec<u32> {
        daemon_pids(&self.path)
    }

    /// The single daemon serving the mount.
    pub fn daemon(&self) -> u32 {
        let pids = self.pids();
        assert_eq!(pids.len(), 1, "expected one coupafs daemon, found {pids:?}");
        pids[0]
    }

    pub fn gone(&self) -> bool {
        wait_until(Duration::from_secs(15), || self.pids().is_empty())
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if is_fuse_mounted(&self.path) {
            lazy_umount(&self.path);
        }
        for pid in self.pids() {
            send_signal(pid, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(5), || self.pids().is_empty()) {
            for pid in self.pids() {
                send_signal(pid, libc::SIGKILL);
            }
        }
        if is_fuse_mounted(&self.path) {
            lazy_umount(&self.path);
        }
    }
}

static SYSTEM_PATHS: Mutex<()> = Mutex::new(());

/// Symlinks installed where mount(8) and mount.fuse3 look for helpers;
/// whatever was there is moved aside and put back on drop. One at a time.
pub struct Installed {
    entries: Vec<(PathBuf, Option<PathBuf>)>,
    _lock: MutexGuard<'static, ()>,
}

fn backup_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.coupafs-test-backup", path.display()))
}

/// `links`: (path, Some(target)) installs a symlink, (path, None) makes
/// sure nothing is there.
pub fn install(links: &[(&str, Option<&Path>)]) -> Installed {
    let lock = SYSTEM_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    let mut entries = Vec::new();
    for (path, target) in links {
        let path = PathBuf::from(path);
        let backup = backup_of(&path);
        if fs::symlink_metadata(&path).is_ok() {
            if fs::symlink_metadata(&backup).is_ok() {
                // Left over by an interrupted run: the backup is the original.
                fs::remove_file(&path).unwrap();
            } else {
                fs::rename(&path, &backup).unwrap();
            }
        }
        if let Some(t) = target {
            std::os::unix::fs::symlink(t, &path)
                .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
        }
        entries.push((path, target.map(Path::to_path_buf)));
    }
    Installed {
        entries,
        _lock: lock,
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (path, target) in &self.entries {
            if target.is_some() {
                let _ = fs::remove_file(path);
            }
            let backup = backup_of(path);
            if fs::symlink_metadata(&backup).is_ok() {
                let _ = fs::rename(&backup, path);
            }
        }
    }
}
