//! Security on the local machine, against a real sshd and real mounts:
//! `allow_other` implies `default_permissions` (other local users get the
//! kernel's mode checks, not the SFTP account's rights) unless opted out;
//! a daemon that is still exiting after `umount` leaves the next mount of
//! the same mountpoint (and its status file) alone; a status file left by a
//! killed mount is recognised as stale and replaced; the mount process is
//! not dumpable.

mod common;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args` as the unprivileged user nobody (uid/gid 65534).
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

// ---------------------------------------------------------------------------
// allow_other and default_permissions
// ---------------------------------------------------------------------------

/// Incoming/Invoices: the SFTP account may write there; the mount shows it
/// as root's, mode 755, so another local user may not.
const WRITABLE_DIR: &str = "Incoming/Invoices";

#[test]
fn allow_other_implies_default_permissions() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &["allow_other"]);
    let opts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = opts
        .lines()
        .find(|l| l.contains(&format!(" {} ", m.path.display())))
        .unwrap_or_else(|| panic!("{} not in mountinfo", m.path.display()));
    assert!(line.contains("default_permissions"), "{line}");
    assert!(line.contains("allow_other"), "{line}");
    let md = fs::metadata(m.path.join(WRITABLE_DIR)).expect("stat");
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o755));

    let evil = m.path.join(WRITABLE_DIR).join("evil.csv");
    let out = as_nobody(&["touch", &evil.display().to_string()]);
    assert!(!out.status.success(), "nobody must not create a file");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !sb.root.join(WRITABLE_DIR).join("evil.csv").exists(),
        "nothing may reach the server"
    );
    // nobody may still list and read what the modes allow.
    let out = as_nobody(&["ls", &m.path.join("Incoming").display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!m.log().contains("no_default_permissions"), "{}", m.log());
}

#[test]
fn no_default_permissions_restores_the_server_rights_with_a_warning() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &["allow_other", "no_default_permissions"]);
    let line = fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .find(|l| l.contains(&format!(" {} ", m.path.display())))
        .map(String::from)
        .expect("in mountinfo");
    assert!(!line.contains("default_permissions"), "{line}");
    let log = m.log();
    assert!(
        log.contains("WARN") && log.contains("allow_other with no_default_permissions"),
        "{log}"
    );
    let name = "nobody-was-here.csv";
    let out = as_nobody(&[
        "sh",
        "-c",
        &format!(
            "echo x > '{}'",
            m.path.join(WRITABLE_DIR).join(name).display()
        ),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        wait_until(Duration::from_secs(10), || sb
            .root
            .join(WRITABLE_DIR)
            .join(name)
            .exists()),
        "the old behaviour: the server decides"
    );
}

// ---------------------------------------------------------------------------
// Remounts and status files
// ---------------------------------------------------------------------------

/// A `coupafs -f` at a mountpoint this test chooses (several mounts share
/// one mountpoint here). Drop kills it by PID and lazily unmounts if a FUSE
/// mount is still at the path.
struct Fg {
    child: Child,
    path: PathBuf,
    log_path: PathBuf,
}

impl Fg {
    fn start(sb: &Sandbox, path: &Path, log_path: &Path) -> Fg {
        let log = fs::File::create(log_path).expect("create log");
        let log2 = log.try_clone().expect("dup log");
        let opts = format!(
            "IdentityFile={},UserKnownHostsFile={}",
            sb.key.display(),
            sb.known_hosts.display()
        );
        let child = Command::new(coupafs_bin())
            .args(["-f", "-p", &sb.port.to_string(), &sb.target()])
            .arg(path)
            .args(["-o", &opts])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn coupafs");
        Fg {
            child,
            path: path.to_path_buf(),
            log_path: log_path.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the process logs that it mounted (its mount, not one
    /// already at the path).
    fn wait_mounted(&mut self) {
        let ok = wait_until(MOUNT_TIMEOUT, || {
            self.log().contains("mounted 127.0.0.1:") && is_fuse_mounted(&self.path)
        });
        assert!(ok, "no mount:\n{}", self.log());
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Fg {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal_pid(self.pid(), libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lazily unmounts whatever FUSE mount is at `path` (test cleanup).
fn umount_lazy(path: &Path) {
    if is_fuse_mounted(path) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// A mountpoint for several mounts in turn, unmounted at the end.
struct Mountpoint {
    dir: TempDir,
}

impl Mountpoint {
    fn new() -> Mountpoint {
        let dir = traversable_tempdir("coupafs-sec-");
        fs::create_dir(dir.path().join("mnt")).expect("mkdir mnt");
        Mountpoint { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Mountpoint {
    fn drop(&mut self) {
        for _ in 0..3 {
            umount_lazy(&self.path());
        }
    }
}

fn status_pid(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(status_file_of(path)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
}

#[test]
fn a_remount_survives_the_old_daemon_exiting() {
    let sb = Sandbox::start();
    let mp = Mountpoint::new();
    let mut old = Fg::start(&sb, &mp.path(), &mp.log("old.log"));
    old.wait_mounted();
    assert!(
        wait_until(Duration::from_secs(10), || status_pid(&mp.path())
            == Some(old.pid())),
        "old status file"
    );
    // Hold the old daemon so that it is still exiting when the new mount
    // is live: the order a quick `umount; mount -a` can produce.
    signal_pid(old.pid(), libc::SIGSTOP);
    // umount(2) itself: umount(8) would stat the path first, which waits
    // for the stopped daemon.
    let path = std::ffi::CString::new(mp.path().as_os_str().as_encoded_bytes()).expect("path");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // SAFETY: umount2 with a valid C path.
        let rc = unsafe { libc::umount2(path.as_ptr(), 0) };
        let _ = tx.send((rc, std::io::Error::last_os_error()));
    });
    let done = rx.recv_timeout(Duration::from_secs(20));
    if done.is_err() {
        signal_pid(old.pid(), libc::SIGCONT);
    }
    let (rc, e) = done.expect("umount(2) of a mount whose daemon is stopped returns");
    assert_eq!(rc, 0, "umount: {e}");
    assert!(!is_fuse_mounted(&mp.path()));
    let mut new = Fg::start(&sb, &mp.path(), &mp.log("new.log"));
    new.wait_mounted();
    signal_pid(old.pid(), libc::SIGCONT);
    assert!(
        old.wait_exit(Duration::from_secs(20)),
        "old daemon did not exit:\n{}",
        old.log()
    );
    assert!(!pid_alive(old.pid()));
    // The new mount is still there and still serves.
    thread::sleep(Duration::from_millis(500));
    assert!(
        is_fuse_mounted(&mp.path()),
        "new mount gone:\n{}",
        new.log()
    );
    assert!(
        fs::read_dir(mp.path().join("Incoming")).is_ok(),
        "new mount does not serve:\n{}",
        new.log()
    );
    assert!(
        new.child.try_wait().expect("try_wait").is_none(),
        "new daemon exited:\n{}",
        new.log()
    );
    for (who, log) in [("old", old.log()), ("new", new.log())] {
        assert!(!log.contains("Unmount failed"), "{who}:\n{log}");
        assert!(!log.contains("unmount:"), "{who}:\n{log}");
    }
    // The status file is the new mount's (the old one removed only its own).
    assert!(
        wait_until(Duration::from_secs(10), || status_pid(&mp.path())
            == Some(new.pid())),
        "status file: {:?}\nnew:\n{}",
        fs::read_to_string(status_file_of(&mp.path())),
        new.log()
    );
    drop(new);
    umount_lazy(&mp.path());
}

#[test]
fn a_killed_mounts_status_file_is_stale_and_replaced() {
    let sb = Sandbox::start();
    let mp = Mountpoint::new();
    let mut first = Fg::start(&sb, &mp.path(), &mp.log("first.log"));
    first.wait_mounted();
    let dead = first.pid();
    assert!(
        wait_until(Duration::from_secs(10), || status_pid(&mp.path())
            == Some(dead)),
        "first status file"
    );
    signal_pid(dead, libc::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(10)));
    // kill -9 leaves the file naming a PID that no longer runs.
    assert_eq!(status_pid(&mp.path()), Some(dead));
    assert!(!pid_alive(dead));
    umount_lazy(&mp.path());

    let mut second = Fg::start(&sb, &mp.path(), &mp.log("second.log"));
    second.wait_mounted();
    // The status file is written (and the stale one named) by the serving
    // loop, just after the "mounted" line.
    let stale = format!("is stale (pid {dead} is not running); replacing it");
    assert!(
        wait_until(Duration::from_secs(10), || second.log().contains(&stale)),
        "{}",
        second.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || status_pid(&mp.path())
            == Some(second.pid())),
        "status file not replaced"
    );
    let out = Command::new("umount")
        .arg(mp.path())
        .output()
        .expect("umount");
    assert!(out.status.success(), "umount: {}", text(&out.stderr));
    assert!(
        second.wait_exit(Duration::from_secs(20)),
        "{}",
        second.log()
    );
    assert!(
        !status_file_of(&mp.path()).exists(),
        "its owner removes the file at unmount"
    );
}

// ---------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------

#[test]
fn the_mount_process_is_not_dumpable() {
    // A mount as user nobody against a server that accepts TCP and never
    // speaks SSH: the process waits in the handshake, long enough to look
    // at it. A dumpable process of nobody has its /proc/PID files owned by
    // nobody (and readable by nobody); a non-dumpable one has them owned
    // by root.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let dir = traversable_tempdir("coupafs-dump-");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(coupafs_bin())
        .args(["-f", "-p", &port, "-o", "ConnectTimeout=20"])
        .arg("nobody@127.0.0.1:/")
        .arg(dir.path())
        .env("COUPAFS_PASSWORD", "hunter2")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    listener.set_nonblocking(true).expect("nonblocking");
    let mut held = None;
    let connected = wait_until(Duration::from_secs(20), || match listener.accept() {
        Ok((s, _)) => {
            held = Some(s);
            true
        }
        Err(_) => false,
    });
    let environ = format!("/proc/{pid}/environ");
    let owner = fs::metadata(&environ).map(|m| m.uid());
    let read_by_nobody = as_nobody(&["cat", &environ]);
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(connected, "coupafs never connected: {err}");
    assert_eq!(owner.ok(), Some(0), "/proc/PID owned by root: {err}");
    assert!(
        !read_by_nobody.status.success(),
        "nobody read its own mount's environ: {}",
        text(&read_by_nobody.stdout)
    );
    drop(held);
    // Its private runtime directory was created for it (no XDG_RUNTIME_DIR).
    let rt = Path::new("/tmp/coupafs-65534");
    let md = fs::symlink_metadata(rt).expect("runtime dir");
    assert!(md.is_dir() && !md.file_type().is_symlink());
    assert_eq!((md.uid(), md.mode() & 0o777), (65534, 0o700));
}
