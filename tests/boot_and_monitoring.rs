//! Mounting at boot while the server is down (`delay_connect`),
//! `coupafs status` (live and stale mounts), and logs an admin can read
//! (`log_file=`, one line per event, quiet xattr answers, one line at a
//! clean unmount), against the sandbox SFTP server with real mounts.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Slack over `timeout` for a failing operation on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

fn read_names(dir: &Path) -> std::io::Result<Vec<String>> {
    fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

#[test]
fn delay_connect_mounts_at_once_and_connects_when_the_server_appears() {
    let sb = Sandbox::start();
    // The server is down at "boot": nothing listens on its port.
    sb.stop();
    assert!(!port_accepts(sb.port));
    let started = Instant::now();
    let m = Mount::new(&sb, &["delay_connect", "timeout=3"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "mounting took {:?}",
        started.elapsed()
    );

    // The root is a directory before the first connection...
    let meta = fs::metadata(&m.path).expect("stat the mount root");
    assert!(meta.is_dir());
    // ...but listing it and writing fail with EIO within timeout + slack.
    let t = Instant::now();
    let err = read_names(&m.path).expect_err("ls while the server is down");
    assert_eq!(errno(&err), libc::EIO, "{err}\n{}", m.log());
    assert!(
        t.elapsed() <= Duration::from_secs(3) + SLACK,
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let err = fs::write(m.path.join("Incoming/Invoices/early.csv"), b"a\n")
        .expect_err("write while the server is down");
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert!(
        t.elapsed() <= Duration::from_secs(3) + SLACK,
        "{:?}",
        t.elapsed()
    );
    // The bare mount point on the local disk received nothing.
    assert!(m.is_mounted());

    // The server appears: the link comes up by itself.
    sb.restart();
    assert!(
        wait_until(Duration::from_secs(20), || m
            .log()
            .contains("connected to 127.0.0.1")),
        "no connection after the server came up:\n{}",
        m.log()
    );
    let names = read_names(&m.path).expect("ls once the server is up");
    assert!(names.contains(&"Incoming".to_string()), "{names:?}");
    fs::write(m.path.join("Incoming/Invoices/boot.csv"), b"id\n1\n").expect("write");
    let on_server = sb.root.join("Incoming/Invoices/boot.csv");
    assert!(
        wait_until(Duration::from_secs(10), || fs::read(&on_server)
            .is_ok_and(|d| d == b"id\n1\n")),
        "the file did not reach the server\n{}",
        m.log()
    );
    let log = m.log();
    assert!(
        log.contains("delay_connect: mounting before connecting"),
        "{log}"
    );
    let status = m.unmount();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
}

/// `coupafs status` output and exit status.
fn status(args: &[&str]) -> (i32, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let out = run_coupafs(&all, &[]);
    (
        out.status.code().expect("status exited by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn status_shows_live_mounts_and_stale_files_of_dead_pids() {
    let sb = Sandbox::start();
    let live = Mount::new(&sb, &[]);
    let mut dead = Mount::new(&sb, &[]);
    let live_file = status_file_of(&live.path);
    let dead_file = status_file_of(&dead.path);
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&live_file)
            .is_ok_and(|t| t.contains("state=connected"))
            && fs::read_to_string(&dead_file)
                .is_ok_and(|t| t.contains("state=connected"))),
        "no status files"
    );
    let dead_pid = dead.pid();
    signal_pid(dead_pid, libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || dead
        .try_wait()
        .is_some()));

    let lp = live.path.display().to_string();
    let dp = dead.path.display().to_string();
    let (_, out) = status(&[]);
    let line_of = |mp: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{mp}: ")))
            .unwrap_or_else(|| panic!("no line for {mp}:\n{out}"))
            .to_string()
    };
    assert!(
        line_of(&lp).starts_with(&format!("{lp}: connected {}", sb.target())),
        "{out}"
    );
    assert!(
        line_of(&lp).contains(&format!("(pid {}, 1 connection(s)", live.pid())),
        "{out}"
    );
    assert!(
        line_of(&dp).starts_with(&format!(
            "{dp}: stale (pid {dead_pid} is not running; its file says state=connected)"
        )),
        "{out}"
    );

    let (code, out) = status(&[&lp]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out) = status(&[&dp]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stale"), "{out}");
    let (code, out) = status(&["/nonexistent/mountpoint"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("not mounted"), "{out}");

    // The killed mount cannot clean up after itself.
    let _ = fs::remove_file(&dead_file);
    drop(dead);
    assert!(live.unmount().is_some_and(|s| s.success()));
}

fn xattr_errno(f: impl FnOnce(*const libc::c_char) -> isize, path: &Path) -> (isize, i32) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    let r = f(c.as_ptr());
    (
        r,
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    )
}

#[test]
fn log_file_has_one_line_per_event_and_a_clean_unmount_logs_one_info_line() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-logfile-");
    let log_path = dir.path().join("coupafs.log");
    let m = Mount::new(&sb, &[&format!("log_file={}", log_path.display())]);
    let meta = fs::metadata(&log_path).expect("log file created");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Extended attributes: not supported, answered quietly.
    let name = c"user.comment";
    let (r, e) = xattr_errno(
        |p| unsafe { libc::getxattr(p, name.as_ptr(), std::ptr::null_mut(), 0) },
        &m.path.join("Incoming"),
    );
    // ENOSYS from coupafs: the kernel answers "not supported" from then
    // on without asking (no request per file for `ls -l`).
    assert_eq!((r, e), (-1, libc::EOPNOTSUPP));
    let (r, e) = xattr_errno(
        |p| unsafe { libc::listxattr(p, std::ptr::null_mut(), 0) },
        &m.path.join("Incoming"),
    );
    assert_eq!((r, e), (-1, libc::EOPNOTSUPP));
    let value = b"x";
    let (r, e) = xattr_errno(
        |p| unsafe {
            libc::setxattr(p, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) as isize
        },
        &m.path.join("Incoming"),
    );
    assert_eq!((r, e), (-1, libc::ENOTSUP));

    fs::write(m.path.join("Incoming/Invoices/logged.csv"), b"id\n1\n").expect("write");
    let status = m.unmount();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = fs::read_to_string(&log_path).expect("read log");
    for l in log.lines() {
        assert!(l.starts_with('['), "not a log record line: {l:?}\n{log}");
        assert!(
            !l.contains(" WARN ") && !l.contains(" ERROR]"),
            "a warning in a clean run: {l:?}\n{log}"
        );
        assert!(!l.contains("xattr"), "{l:?}");
    }
    assert!(log.contains("] mounted "), "{log}");
    assert!(log.contains("committed "), "{log}");
    let unmounted: Vec<&str> = log.lines().filter(|l| l.contains("unmount")).collect();
    assert_eq!(unmounted.len(), 1, "{log}");
    assert!(unmounted[0].contains(" INFO ] unmounted "), "{log}");
}

#[test]
fn a_daemon_without_syslog_logs_to_log_file() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-daemonlog-");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let log_path = dir.path().join("coupafs.log");
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={},log_file={}",
        sb.key.display(),
        sb.known_hosts.display(),
        log_path.display()
    );
    let port = sb.port.to_string();
    let mp = mnt.display().to_string();
    let no_syslog = [("COUPAFS_SYSLOG_SOCKET", "/nonexistent/syslog.sock")];
    let out = run_coupafs(&["-p", &port, &sb.target(), &mp, "-o", &opts], &no_syslog);
    assert!(out.status.success(), "{}", show(&out));
    assert!(is_fuse_mounted(&mnt));
    // With log_file the missing syslog socket is no reason to warn.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("syslog"),
        "{}",
        show(&out)
    );
    fs::write(mnt.join("Incoming/Invoices/daemon.csv"), b"id\n2\n").expect("write");
    let umount = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .expect("umount");
    assert!(umount.success());
    assert!(
        wait_until(Duration::from_secs(15), || fs::read_to_string(&log_path)
            .is_ok_and(|l| l.contains("] unmounted "))),
        "{}",
        fs::read_to_string(&log_path).unwrap_or_default()
    );
    let log = fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("] mounted "), "{log}");
    assert!(log.contains("committed "), "{log}");

    // Without log_file, the user is told where the log goes.
    let mnt2 = dir.path().join("mnt2");
    fs::create_dir(&mnt2).expect("mkdir");
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={}",
        sb.key.display(),
        sb.known_hosts.display()
    );
    let mp2 = mnt2.display().to_string();
    let out = run_coupafs(&["-p", &port, &sb.target(), &mp2, "-o", &opts], &no_syslog);
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("-o log_file=PATH"), "{stderr}");
    let _ = std::process::Command::new("umount").arg(&mnt2).status();
    assert!(wait_until(Duration::from_secs(15), || !is_fuse_mounted(
        &mnt2
    )));
}
