//! The status file, `/run/coupafs/<mountpoint>.status` (or under
//! `$XDG_RUNTIME_DIR/coupafs` for a user; see `dirs`): link state and
//! uploads as KEY=VALUE lines an admin (or a monitoring script) reads with
//! `cat`. Rewritten every `INTERVAL` through a temp file and rename(2), so
//! a reader never sees half a file.
//!
//! The file is its writer's: it names the writer (`pid=`, and `pid_start=`,
//! the process start time, so that a reused PID is not taken for the
//! writer). A mount replaces the file only when it is absent, its own, or
//! stale (its writer is gone, e.g. after kill -9), and removes it at
//! unmount only if it is still its own: a daemon that is still exiting
//! after `umount` never deletes the file of the next mount of the same
//! mountpoint. The temp file is created with O_CREAT|O_EXCL|O_NOFOLLOW in
//! the verified directory, so no symlink planted there is followed.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::Target;
use crate::ssh::PoolStatus;

/// How often the serving loop rewrites the file.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// What the file reports besides the link: the filesystem's upload state.
pub(crate) struct Uploads {
    pub(crate) open_writers: usize,
    pub(crate) pending: usize,
}

/// The process a status file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Writer {
    pub(crate) pid: u32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22);
    /// None in files that do not carry it.
    pub(crate) start: Option<u64>,
}

impl Writer {
    /// This process.
    fn me() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: start_time(pid),
        }
    }

    /// True while the process the file names runs (the same process: a
    /// reused PID has another start time).
    pub(crate) fn is_running(&self) -> bool {
        match (start_time(self.pid), self.start) {
            (None, _) => false,
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
        }
    }
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), or None
/// if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from the last ')'. Field 3 is the first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What the file at a path says about its writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Absent,
    Mine,
    /// Another process that still runs.
    Live(Writer),
    /// A process that is gone: the file is stale.
    Stale(Writer),
    /// No `pid=` line: not a file we can attribute.
    Unknown,
}

pub(crate) struct StatusFile {
    path: PathBuf,
    me: Writer,
    /// The lines that never change while mounted.
    header: String,
    /// A live writer's file was left alone (logged once).
    deferred: AtomicBool,
}

impl StatusFile {
    /// The file for `mountpoint` in `dir`, which the caller has verified
    /// (`dirs::ensure`). Says so in the log if a stale file is there.
    pub(crate) fn new(dir: &Path, mountpoint: &Path, target: &Target, port: u16) -> Self {
        let me = Writer::me();
        let header = format!(
            "mountpoint={}\nserver={}{}:{}\nport={port}\npid={}\npid_start={}\n",
            crate::logging::escape(mountpoint.as_os_str().as_encoded_bytes()),
            target
                .user
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            target.host,
            target.remote_dir,
            me.pid,
            me.start.unwrap_or(0),
        );
        let f = Self {
            path: dir.join(file_name(mountpoint)),
            me,
            header,
            deferred: AtomicBool::new(false),
        };
        match f.owner() {
            Owner::Stale(w) => log::info!(
                "status file {} is stale (pid {} is not running); replacing it",
                f.path.display(),
                w.pid
            ),
            Owner::Live(w) => log::warn!(
                "status file {} belongs to running pid {}; leaving it until that process ends",
                f.path.display(),
                w.pid
            ),
            Owner::Absent | Owner::Mine | Owner::Unknown => {}
        }
        f
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Who wrote the file now at the path.
    pub(crate) fn owner(&self) -> Owner {
        let Some(text) = read_nofollow(&self.path) else {
            return Owner::Absent;
        };
        match parse_writer(&text) {
            None => Owner::Unknown,
            Some(w) if w == self.me => Owner::Mine,
            Some(w) if w.is_running() => Owner::Live(w),
            Some(w) => Owner::Stale(w),
        }
    }

    /// Replaces the file with the state now, unless another running mount
    /// owns it.
    pub(crate) fn write(&self, link: &PoolStatus, uploads: &Uploads) {
        if let Owner::Live(w) = self.owner() {
            if !self.deferred.swap(true, Ordering::Relaxed) {
                log::debug!(
                    "status file {} still belongs to running pid {}; not replacing it",
                    self.path.display(),
                    w.pid
                );
            }
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = self.render(link, uploads, now);
        if let Err(e) = self.replace_with(text.as_bytes()) {
            log::debug!("status file {}: {e}", self.path.display());
        }
    }

    /// Writes `text` to a new temp file beside the status file and renames
    /// it into place (rename replaces a symlink, never follows it).
    fn replace_with(&self, text: &[u8]) -> std::io::Result<()> {
        let tmp =
            self.path
                .with_file_name(format!(".{}.{}.tmp", file_stem(&self.path), self.me.pid));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
        };
        let mut f = match open() {
            // Left by a crashed process that had our PID: it is ours to
            // remove (the directory is ours).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                open()?
            }
            other => other?,
        };
        let written = f.write_all(text);
        drop(f);
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &self.path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    fn render(&self, link: &PoolStatus, uploads: &Uploads, now_secs: u64) -> String {
        let state = if link.connected > 0 {
            "connected"
        } else if link.reconnecting {
            "reconnecting"
        } else {
            "disconnected"
        };
        format!(
            "{}state={state}\nconnections={}\nreconnects={}\nopen_writers={}\npending_uploads={}\nlast_error={}\nupdated={now_secs}\n",
            self.header,
            link.connected,
            link.reconnects,
            uploads.open_writers,
            uploads.pending,
            crate::logging::escape_controls(link.last_error.as_deref().unwrap_or("")),
        )
    }

    /// Removes the file if it is still this process's (or stale).
    pub(crate) fn remove(&self) {
        match self.owner() {
            Owner::Mine | Owner::Stale(_) => {
                let _ = std::fs::remove_file(&self.path);
            }
            Owner::Live(w) => log::info!(
                "status file {} now belongs to pid {}; leaving it",
                self.path.display(),
                w.pid
            ),
            Owner::Absent | Owner::Unknown => {}
        }
    }
}

/// The content of a small regular file, not following a symlink.
pub(super) fn read_nofollow(path: &Path) -> Option<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The writer a status file's text names.
pub(crate) fn parse_writer(text: &str) -> Option<Writer> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    };
    let pid = value("pid")?.parse().ok()?;
    let start = value("pid_start")
        .and_then(|s| s.parse().ok())
        .filter(|&s| s != 0);
    Some(Writer { pid, start })
}

/// `/mnt/coupa/prod` -> `mnt-coupa-prod.status` (slashes become dashes, as
/// systemd names mount units); `/` -> `-.status`.
pub(super) fn file_name(mountpoint: &Path) -> String {
    format!("{}.status", stem(mountpoint))
}

fn stem(mountpoint: &Path) -> String {
    let escaped: String = mountpoint
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    if escaped.is_empty() {
        "-".to_string()
    } else {
        escaped
    }
}

/// The status file's name without `.status`.
fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".status").unwrap_or(&name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>) -> Target {
        Target {
            user: user.map(String::from),
            host: "sftp.example.com".into(),
            remote_dir: "/exchange".into(),
        }
    }

    fn link(connected: usize, reconnecting: bool, last_error: Option<&str>) -> PoolStatus {
        PoolStatus {
            connected,
            reconnecting,
            reconnects: 3,
            last_error: last_error.map(String::from),
        }
    }

    #[test]
    fn file_name_follows_the_mountpoint() {
        assert_eq!(
            file_name(Path::new("/mnt/coupa/prod")),
            "mnt-coupa-prod.status"
        );
        assert_eq!(file_name(Path::new("/mnt/coupa/")), "mnt-coupa.status");
        assert_eq!(file_name(Path::new("/")), "-.status");
    }

    #[test]
    fn content_is_key_value_lines_in_a_fixed_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StatusFile::new(dir.path(), Path::new("/mnt/c"), &target(Some("acme")), 2222);
        let text = f.render(
            &link(2, false, None),
            &Uploads {
                open_writers: 1,
                pending: 4,
            },
            1_700_000_000,
        );
        let want = format!(
            "mountpoint=/mnt/c\nserver=acme@sftp.example.com:/exchange\nport=2222\npid={}\n\
             pid_start={}\nstate=connected\nconnections=2\nreconnects=3\nopen_writers=1\npending_uploads=4\n\
             last_error=\nupdated=1700000000\n",
            std::process::id(),
            start_time(std::process::id()).expect("own start time")
        );
        assert_eq!(text, want);
    }

    #[test]
    fn state_says_reconnecting_or_disconnected_with_the_last_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StatusFile::new(dir.path(), Path::new("/m"), &target(None), 22);
        let none = Uploads {
            open_writers: 0,
            pending: 0,
        };
        let text = f.render(&link(0, true, Some("timed out")), &none, 5);
        assert!(
            text.contains("server=sftp.example.com:/exchange\n"),
            "{text}"
        );
        assert!(text.contains("\nstate=reconnecting\n"), "{text}");
        assert!(text.contains("\nlast_error=timed out\n"), "{text}");
        let text = f.render(&link(0, false, Some("refused")), &none, 5);
        assert!(text.contains("\nstate=disconnected\n"), "{text}");
    }

    #[test]
    fn write_replaces_the_file_and_remove_deletes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("coupafs");
        std::fs::create_dir(&base).expect("mkdir");
        let f = StatusFile::new(&base, Path::new("/mnt/x"), &target(None), 22);
        assert_eq!(f.path(), base.join("mnt-x.status"));
        let uploads = Uploads {
            open_writers: 0,
            pending: 0,
        };
        f.write(&link(1, false, None), &uploads);
        let first = std::fs::read_to_string(f.path()).expect("status written");
        assert!(first.contains("\nconnections=1\n"), "{first}");
        f.write(&link(0, true, None), &uploads);
        let second = std::fs::read_to_string(f.path()).expect("status rewritten");
        assert!(second.contains("\nstate=reconnecting\n"), "{second}");
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&base)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mnt-x.status")]);
        f.remove();
        assert!(!f.path().exists());
    }

    fn uploads() -> Uploads {
        Uploads {
            open_writers: 0,
            pending: 0,
        }
    }

    /// A child process that has exited: its PID names no running process
    /// (until reused, which the start time catches).
    fn dead_writer() -> Writer {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let start = start_time(pid);
        child.wait().expect("wait");
        Writer { pid, start }
    }

    #[test]
    fn writer_liveness_follows_pid_and_start_time() {
        let me = Writer::me();
        assert!(me.is_running());
        assert!(!dead_writer().is_running());
        // The same PID with another start time is another process.
        let reused = Writer {
            pid: me.pid,
            start: me.start.map(|s| s + 1),
        };
        assert!(!reused.is_running());
        assert_eq!(
            parse_writer("mountpoint=/m\npid=42\npid_start=7\n"),
            Some(Writer {
                pid: 42,
                start: Some(7)
            })
        );
        assert_eq!(
            parse_writer("pid=42\n"),
            Some(Writer {
                pid: 42,
                start: None
            })
        );
        assert_eq!(parse_writer("state=connected\n"), None);
    }

    #[test]
    fn a_stale_file_of_a_dead_pid_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mp = Path::new("/mnt/s");
        let path = dir.path().join("mnt-s.status");
        let dead = dead_writer();
        std::fs::write(&path, format!("pid={}\nstate=connected\n", dead.pid)).expect("write");
        let f = StatusFile::new(dir.path(), mp, &target(None), 22);
        assert_eq!(
            f.owner(),
            Owner::Stale(Writer {
                start: None,
                ..dead
            })
        );
        f.write(&link(1, false, None), &uploads());
        assert_eq!(f.owner(), Owner::Mine);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains(&format!("\npid={}\n", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn a_live_mounts_file_is_neither_replaced_nor_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt-l.status");
        // A running process that is not us: our parent (the test runner).
        // SAFETY: getppid cannot fail.
        let other = unsafe { libc::getppid() } as u32;
        let theirs = format!(
            "pid={other}\npid_start={}\nstate=connected\n",
            start_time(other).expect("parent runs")
        );
        std::fs::write(&path, &theirs).expect("write");
        let f = StatusFile::new(dir.path(), Path::new("/mnt/l"), &target(None), 22);
        assert!(matches!(f.owner(), Owner::Live(w) if w.pid == other));
        f.write(&link(1, false, None), &uploads());
        f.remove();
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), theirs);
    }

    #[test]
    fn a_file_replaced_by_the_next_mount_is_not_removed_by_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StatusFile::new(dir.path(), Path::new("/mnt/r"), &target(None), 22);
        f.write(&link(1, false, None), &uploads());
        // The next mount (another live process) took the file over.
        // SAFETY: getppid cannot fail.
        let other = unsafe { libc::getppid() } as u32;
        let next = format!(
            "pid={other}\npid_start={}\n",
            start_time(other).expect("runs")
        );
        std::fs::write(f.path(), &next).expect("write");
        f.remove();
        assert_eq!(std::fs::read_to_string(f.path()).expect("kept"), next);
    }

    #[test]
    fn a_symlink_at_the_temp_or_status_name_is_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let f = StatusFile::new(dir.path(), Path::new("/mnt/y"), &target(None), 22);
        let tmp = dir
            .path()
            .join(format!(".mnt-y.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("symlink tmp");
        std::os::unix::fs::symlink(&victim, f.path()).expect("symlink status");
        // A symlink at the status name is not a status file: not ours.
        assert_eq!(f.owner(), Owner::Absent);
        f.write(&link(1, false, None), &uploads());
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        let m = std::fs::symlink_metadata(f.path()).expect("status");
        assert!(m.is_file(), "the status file replaced the link");
    }
}
