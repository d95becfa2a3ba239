//! The upload suite against SFTP servers other than OpenSSH's
//! internal-sftp (tests/common/servers.rs starts them): ProFTPD mod_sftp
//! stock and without the OpenSSH extensions (with and without
//! `AllowStoreRestart`), gesftpserver, `rclone serve sftp`, and OpenSSH's
//! sftp-server with every extension hidden.
//!
//! One body per behaviour, run once per server by `server_suite!`, so a test
//! is named `<server>::<behaviour>`. Every check looks at the server's files
//! directly, as Coupa's collector would, not through the mount.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use common::servers::{Server, ServerKind, ServerOptions};
use common::watcher::Watcher;
use common::*;

const INVOICES: &str = "Incoming/Invoices";
const MIB: usize = 1 << 20;

/// How the suite runs each server: the extension-less OpenSSH answers
/// metadata requests slowly, as seen in ProFTPD runs, which also widens the
/// window in which a non-atomic replace shows a collector its middle state.
fn suite_options(kind: ServerKind) -> ServerOptions {
    match kind {
        ServerKind::OpensshNoExtensions => ServerOptions {
            metadata_delay_ms: 20,
        },
        _ => ServerOptions::default(),
    }
}

/// A server and a coupafs mount of it; failure messages carry both logs.
struct Rig {
    server: Server,
    mnt: Option<Mount>,
}

impl Rig {
    /// Starts `kind`, seeds server-side files with `seed`, then mounts.
    fn new(kind: ServerKind, seed: &[(&str, &[u8])]) -> Rig {
        let server = Server::start_with(kind, suite_options(kind));
        for (rel, data) in seed {
            server.put(rel, data);
        }
        let mnt = server.mount(&[]);
        Rig {
            server,
            mnt: Some(mnt),
        }
    }

    fn mnt(&self) -> &Mount {
        self.mnt.as_ref().expect("mounted")
    }

    /// Path through the mount.
    fn m(&self, rel: &str) -> PathBuf {
        self.mnt().path.join(rel)
    }

    /// Path on the server's disk.
    fn s(&self, rel: &str) -> PathBuf {
        self.server.root.join(rel)
    }

    /// Both logs, for assertion messages.
    fn logs(&self) -> String {
        format!(
            "server: {}\n--- coupafs log (tail):\n{}\n--- server log (tail):\n{}",
            self.server.kind.name(),
            self.mnt
                .as_ref()
                .map(|m| tail(&m.log(), 30))
                .unwrap_or_default(),
            tail(&self.server.log(), 30)
        )
    }

    /// Server-side content of `rel` (None if missing).
    fn server_bytes(&self, rel: &str) -> Option<Vec<u8>> {
        fs::read(self.s(rel)).ok()
    }

    /// `what` (a command through the mount) exited 0.
    fn assert_ok(&self, out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            show(out),
            self.logs()
        );
    }

    /// The server's invoice folder holds exactly `names` (nothing lost,
    /// no extra visible or hidden name); `what` says when.
    fn assert_invoices(&self, names: &[&str], what: &str) {
        assert_eq!(names_in(self.s(INVOICES)), names, "{what}\n{}", self.logs());
    }

    /// `df` on the mount succeeds.
    fn df(&self) {
        let out = Command::new("df")
            .arg(&self.mnt().path)
            .stdin(Stdio::null())
            .output()
            .expect("run df");
        self.assert_ok(&out, "df");
    }

    /// Unmounts and returns coupafs's log.
    fn unmount(&mut self) -> String {
        let mnt = self.mnt.take().expect("mounted");
        let log = mnt.log();
        mnt.unmount();
        log
    }
}

/// Runs `sh -c script` with `args` as $1...; returns its output.
fn sh(script: &str, args: &[&Path]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

/// Every name under `root` (recursively), relative, that coupafs made: a
/// temp, a spare or an aside copy of a replaced file.
fn coupafs_leftovers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for name in all_names_in(&dir) {
            let path = dir.join(&name);
            if name.contains("coupafs") {
                out.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// The behaviours
// ---------------------------------------------------------------------------

/// `cp` of a new file lands with its exact bytes and leaves no temp.
fn new_file_cp(kind: ServerKind) {
    let rig = Rig::new(kind, &[]);
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.csv");
    let sha = make_source(&src, 3 * MIB + 17);
    let rel = format!("{INVOICES}/new.csv");
    let out = sh("cp \"$1\" \"$2\"", &[&src, &rig.m(&rel)]);
    rig.assert_ok(&out, "cp");
    assert_eq!(
        sha256sum(rig.s(&rel)).as_deref(),
        Ok(sha.as_str()),
        "server content after cp\n{}",
        rig.logs()
    );
    let temps = temps_in(rig.s(INVOICES));
    assert!(temps.is_empty(), "temps left: {temps:?}\n{}", rig.logs());
}

/// `cp` over an existing file replaces its content.
fn cp_over(kind: ServerKind) {
    let rel = format!("{INVOICES}/over.csv");
    let rig = Rig::new(kind, &[(&rel, b"old content\n")]);
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.csv");
    fs::write(&src, b"new content, longer than the old one\n").expect("write source");
    let out = sh("cp \"$1\" \"$2\"", &[&src, &rig.m(&rel)]);
    rig.assert_ok(&out, "cp over");
    assert_eq!(
        rig.server_bytes(&rel).as_deref(),
        Some(&b"new content, longer than the old one\n"[..]),
        "server content after cp over\n{}",
        rig.logs()
    );
    rig.assert_invoices(&["over.csv"], "server dir after cp over");
}

/// `mv` within the mount onto an existing name replaces it.
fn mv_over(kind: ServerKind) {
    let a = format!("{INVOICES}/a.csv");
    let b = format!("{INVOICES}/b.csv");
    let rig = Rig::new(kind, &[(&a, b"content of a\n"), (&b, b"content of b\n")]);
    let out = sh("mv \"$1\" \"$2\"", &[&rig.m(&a), &rig.m(&b)]);
    rig.assert_ok(&out, "mv over");
    assert_eq!(
        rig.server_bytes(&b).as_deref(),
        Some(&b"content of a\n"[..]),
        "target after mv over\n{}",
        rig.logs()
    );
    rig.assert_invoices(&["b.csv"], "server dir after mv over");
}

/// `printf >> file` either appends (exit 0) or fails with a non-zero exit
/// status and the file unchanged: never exit 0 with the data lost.
fn append(kind: ServerKind) {
    let rel = format!("{INVOICES}/log.csv");
    let rig = Rig::new(kind, &[(&rel, b"line 1\n")]);
    let out = sh("printf 'line 2\\n' >> \"$1\"", &[&rig.m(&rel)]);
    let content = rig.server_bytes(&rel);
    if out.status.success() {
        assert_eq!(
            content.as_deref(),
            Some(&b"line 1\nline 2\n"[..]),
            "`>>` exited 0, so the server must hold both lines\n{}",
            rig.logs()
        );
    } else {
        assert_eq!(
            content.as_deref(),
            Some(&b"line 1\n"[..]),
            "`>>` failed ({}), so the file must be unchanged\n{}",
            show(&out),
            rig.logs()
        );
    }
    rig.assert_invoices(&["log.csv"], "server dir after append");
}

/// O_CREAT|O_EXCL on an existing name fails with EEXIST and keeps the file.
fn excl_create_existing(kind: ServerKind) {
    let rel = format!("{INVOICES}/taken.csv");
    let rig = Rig::new(kind, &[(&rel, b"already here\n")]);
    let res = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(rig.m(&rel));
    match res {
        Ok(f) => {
            let closed = close_file(f);
            panic!(
                "exclusive create of an existing name succeeded (close: {closed:?}); server now holds {:?}\n{}",
                rig.server_bytes(&rel).map(|b| String::from_utf8_lossy(&b).into_owned()),
                rig.logs()
            );
        }
        Err(e) => assert_eq!(
            errno(&e),
            libc::EEXIST,
            "exclusive create failed with {e}, want EEXIST\n{}",
            rig.logs()
        ),
    }
    assert_eq!(
        rig.server_bytes(&rel).as_deref(),
        Some(&b"already here\n"[..]),
        "existing file after the refused exclusive create\n{}",
        rig.logs()
    );
}

/// Writes `data` to `path` in 256 KiB writes with a pause between them (so
/// the upload is in progress for a while), then close()s.
fn slow_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    for part in data.chunks(256 * 1024) {
        f.write_all(part)?;
        thread::sleep(Duration::from_millis(10));
    }
    close_file(f)
}

/// While a large file is written (new, or over an existing one), a collector
/// listing the server directory sees the final name only with a complete
/// content (the old one or the new one) and never any other visible name.
fn pickup_safety(kind: ServerKind, replace: bool) {
    let rel = format!("{INVOICES}/big.csv");
    let old = b"old, complete content\n";
    let seed: Vec<(&str, &[u8])> = if replace {
        vec![(&rel, &old[..])]
    } else {
        vec![]
    };
    let rig = Rig::new(kind, &seed);
    // Large enough to be uploading for a while, under Coupa's 8 MB file limit
    // (coupafs warns about larger files).
    let data = random_bytes(6 * MIB + 123, 11);
    let watcher = Watcher::start(rig.s(INVOICES));
    let res = slow_write(&rig.m(&rel), &data);
    // Let the watcher see the settled state too.
    thread::sleep(Duration::from_millis(100));
    let seen = watcher.finish();
    assert!(res.is_ok(), "write + close: {res:?}\n{}", rig.logs());
    let mut allowed = BTreeSet::from([data.len() as u64]);
    if replace {
        allowed.insert(old.len() as u64);
    }
    for (name, sizes) in &seen {
        assert_eq!(
            name,
            "big.csv",
            "a collector saw an extra visible file {name:?} (sizes {sizes:?})\n{}",
            rig.logs()
        );
        assert!(
            sizes.is_subset(&allowed),
            "a collector saw big.csv at sizes {sizes:?}; only {allowed:?} are complete\n{}",
            rig.logs()
        );
    }
    assert_eq!(
        sha256sum(rig.s(&rel)).as_deref(),
        Ok(sha256_bytes(&data).as_str()),
        "server content after the upload\n{}",
        rig.logs()
    );
}

fn pickup_safety_new(kind: ServerKind) {
    pickup_safety(kind, false);
}

fn pickup_safety_replace(kind: ServerKind) {
    pickup_safety(kind, true);
}

/// `df` on the mount succeeds.
fn df(kind: ServerKind) {
    Rig::new(kind, &[]).df();
}

/// After uploads, a replace and an unmount, no name coupafs made is left on
/// the server (temps, spares, aside copies).
fn no_temps_after_unmount(kind: ServerKind) {
    let over = format!("{INVOICES}/over.csv");
    let mut rig = Rig::new(kind, &[(&over, b"old\n")]);
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.csv");
    make_source(&src, MIB + 5);
    for name in ["n1.csv", "n2.csv", "over.csv"] {
        // The outcome of each copy is another test's business; this one
        // checks what stays behind.
        let _ = sh(
            "cp \"$1\" \"$2\"",
            &[&src, &rig.m(&format!("{INVOICES}/{name}"))],
        );
    }
    let _ = sh(
        "printf 'x\\n' > \"$1\"",
        &[&rig.m("Incoming/Suppliers/s.csv")],
    );
    let log = rig.unmount();
    let left = coupafs_leftovers(&rig.server.root);
    assert!(
        left.is_empty(),
        "left on the server after unmount: {left:?}\n--- coupafs log (tail):\n{}\n--- server log (tail):\n{}",
        tail(&log, 30),
        tail(&rig.server.log(), 30)
    );
}

/// A crash between the steps of a hidden-aside replace (no posix-rename):
/// the old file sits under its aside name and the final name is missing,
/// or the new file is in place and the aside copy was not yet removed.
/// The next mount restores the first and cleans up the second, so the final
/// name holds complete content and no visible extra file appears.
fn crash_between_replace_steps(kind: ServerKind) {
    let gone = format!("{INVOICES}/.gone.csv.coupafs-old.coupafs-0a1b2c");
    let done_aside = format!("{INVOICES}/.done.csv.coupafs-old.coupafs-0d1e2f");
    let done = format!("{INVOICES}/done.csv");
    let rig = Rig::new(
        kind,
        &[
            (&gone, b"old content of gone\n"),
            (&done_aside, b"old content of done\n"),
            (&done, b"new content of done\n"),
        ],
    );
    let restored = wait_until(Duration::from_secs(20), || {
        rig.server_bytes(&format!("{INVOICES}/gone.csv")).is_some()
            && rig.server_bytes(&done_aside).is_none()
    });
    assert!(
        restored,
        "server dir after mount: {:?}\n{}",
        all_names_in(rig.s(INVOICES)),
        rig.logs()
    );
    assert_eq!(
        rig.server_bytes(&format!("{INVOICES}/gone.csv")).as_deref(),
        Some(&b"old content of gone\n"[..]),
        "restored content\n{}",
        rig.logs()
    );
    assert_eq!(
        rig.server_bytes(&done).as_deref(),
        Some(&b"new content of done\n"[..]),
        "completed replace keeps the new content\n{}",
        rig.logs()
    );
    rig.assert_invoices(&["done.csv", "gone.csv"], "server dir");
    // Through the mount too: the restored name is visible, no aside name is.
    let listed = names_in(rig.m(INVOICES));
    assert_eq!(
        listed,
        ["done.csv", "gone.csv"],
        "mount listing\n{}",
        rig.logs()
    );
}

/// An extension the server advertises but refuses (rclone's statvfs) is
/// said once at info level, not as an error per `df`.
fn refused_extension_logged_once(kind: ServerKind) {
    let mut rig = Rig::new(kind, &[]);
    for _ in 0..3 {
        rig.df();
    }
    let log = rig.unmount();
    let said = log.matches("treated as absent from now on").count();
    assert_eq!(said, 1, "refusal lines in the log:\n{}", tail(&log, 40));
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && l.contains("statvfs")),
        "error-level statvfs line:\n{}",
        tail(&log, 40)
    );
}

/// The hidden-aside replace sends no refused request twice: on a server
/// that refuses RENAME onto an existing name, the first replace sends the
/// plain RENAME once, moves the old file to a hidden aside name and renames
/// onto the free name; later replaces skip the RENAME known to fail. Seen
/// in the `sftp_debug` log.
#[test]
fn hidden_aside_replace_sends_no_refused_request_twice() {
    for kind in [
        ServerKind::ProftpdNoExtensions,
        ServerKind::OpensshNoExtensions,
    ] {
        let rel = format!("{INVOICES}/twice.csv");
        let server = Server::start(kind);
        server.put(&rel, b"old\n");
        let mnt = server.mount(&["sftp_debug"]);
        for round in 0..2 {
            fs::write(mnt.path.join(&rel), format!("new {round}\n")).expect("write over");
        }
        let log = mnt.log();
        mnt.unmount();
        assert_eq!(
            fs::read(server.root.join(&rel)).ok().as_deref(),
            Some(&b"new 1\n"[..]),
            "{}: {}",
            kind.name(),
            tail(&log, 40)
        );
        let renames: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("sftp[") && l.contains(" RENAME "))
            .map(|l| l.split_once(" RENAME ").map_or(l, |(_, r)| r))
            .collect();
        // Only the first replace's plain RENAME is refused; it is not sent
        // again before the old file is out of the way, and no later
        // replace sends a RENAME known to fail.
        let refused: Vec<&&str> = renames
            .iter()
            .filter(|r| !r.contains("-> STATUS 0 "))
            .collect();
        assert_eq!(
            refused.len(),
            1,
            "{}: refused RENAMEs: {renames:#?}",
            kind.name()
        );
        // First replace: RENAME refused, aside, RENAME, (REMOVE); second:
        // aside, RENAME. Every aside name is hidden.
        assert_eq!(renames.len(), 5, "{}: {renames:#?}", kind.name());
        assert!(
            renames
                .iter()
                .filter(|r| r.contains(".coupafs-old."))
                .all(|r| r.contains("/.twice.csv.coupafs-old.coupafs-")),
            "{}: {renames:#?}",
            kind.name()
        );
    }
}

/// Reads stop at the size coupafs knows (ProFTPD logged hundreds of READs
/// past end of file): reading small and larger files through
/// the mount sends at most one READ per file that the server answers with
/// EOF (seen in the `sftp_debug` log).
#[test]
fn reads_do_not_run_past_end_of_file() {
    let server = Server::start(ServerKind::ProftpdStock);
    let sizes = [10usize, 5000, 300_000, 2 * MIB + 3];
    for (i, size) in sizes.iter().enumerate() {
        server.put(
            &format!("{INVOICES}/r{i}.csv"),
            &random_bytes(*size, i as u64),
        );
    }
    let mnt = server.mount(&["sftp_debug"]);
    for (i, size) in sizes.iter().enumerate() {
        let data = fs::read(mnt.path.join(format!("{INVOICES}/r{i}.csv"))).expect("read");
        assert_eq!(data.len(), *size);
    }
    let log = mnt.log();
    mnt.unmount();
    let reads = log
        .lines()
        .filter(|l| l.contains("sftp[") && l.contains(" READ "))
        .count();
    let past = log
        .lines()
        .filter(|l| l.contains("sftp[") && l.contains(" READ ") && l.contains("-> STATUS 1 "))
        .count();
    assert!(reads > 0, "no READ in the log:\n{}", tail(&log, 20));
    assert!(
        past <= sizes.len(),
        "{past} of {reads} READs past end of file for {} files\n{}",
        sizes.len(),
        tail(&log, 40)
    );
}

/// Password login on a server other than OpenSSH (ProFTPD's own SSH
/// implementation), then an upload through the mount.
#[test]
fn password_login_on_proftpd() {
    let server = Server::start(ServerKind::ProftpdNoExtensions);
    let port = server.port.to_string();
    let opts = format!(
        "password_file={},UserKnownHostsFile={},PubkeyAuthentication=no",
        server.password_file.display(),
        server.known_hosts.display()
    );
    let mnt =
        Mount::spawn(&["-p", &port, &server.target()], &["-o", &opts], &[]).unwrap_or_else(|log| {
            panic!(
                "password mount failed:\n{log}\n--- server log:\n{}",
                tail(&server.log(), 30)
            )
        });
    let rel = format!("{INVOICES}/pw.csv");
    fs::write(mnt.path.join(&rel), b"by password\n").expect("write through the mount");
    let log = mnt.log();
    mnt.unmount();
    assert!(
        log.contains("password"),
        "auth method in the log:\n{}",
        tail(&log, 30)
    );
    assert_eq!(
        fs::read(server.root.join(&rel)).ok().as_deref(),
        Some(&b"by password\n"[..]),
        "{}",
        tail(&log, 30)
    );
}

/// `-o sftp_debug` logs each SFTP exchange on one line: id, type, path,
/// the reply's status and the time, and never file contents.
#[test]
fn sftp_debug_logs_requests_and_replies_without_data() {
    let server = Server::start(ServerKind::Gesftpserver);
    let mnt = server.mount(&["sftp_debug"]);
    let marker = "SECRET-CONTENT-7f3a9c-do-not-log";
    let rel = format!("{INVOICES}/debug.csv");
    let path = mnt.path.join(&rel);
    fs::write(&path, marker.repeat(50)).expect("write through the mount");
    let back = fs::read(&path).expect("read back");
    assert_eq!(back.len(), marker.len() * 50);
    let log = mnt.log();
    mnt.unmount();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("sftp[")).collect();
    for (what, reply) in [
        ("OPEN \"", "-> HANDLE handle="),
        ("WRITE handle=", "-> STATUS 0"),
        ("CLOSE handle=", "-> STATUS 0"),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(what)
                && l.contains(reply)
                && l.contains(" #")
                && l.contains(" ms)")),
            "no {what:?} ... {reply:?} line with an id and a time:\n{}",
            tail(&log, 60)
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("debug.csv")),
        "paths are shown:\n{}",
        tail(&log, 60)
    );
    assert!(
        !log.contains(marker),
        "file contents in the log:\n{}",
        tail(&log, 60)
    );
}

// ---------------------------------------------------------------------------
// Server x behaviour
// ---------------------------------------------------------------------------

/// One module per server, one test per behaviour: `<server>::<behaviour>`.
/// A behaviour may carry attributes (`#[ignore = "..."]`).
macro_rules! server_suite {
    ($($server:ident: $kind:expr => { $($(#[$attr:meta])* $behaviour:ident),* $(,)? })*) => {
        $(
            mod $server {
                $(
                    $(#[$attr])*
                    #[test]
                    fn $behaviour() {
                        super::$behaviour($kind);
                    }
                )*
            }
        )*
    };
}

server_suite! {
    proftpd_stock: super::ServerKind::ProftpdStock => {
        new_file_cp, cp_over, mv_over, append, excl_create_existing,
        pickup_safety_new, pickup_safety_replace, df, no_temps_after_unmount,
    }
    proftpd_no_extensions: super::ServerKind::ProftpdNoExtensions => {
        new_file_cp,
        cp_over,
        mv_over,
        append,
        excl_create_existing,
        pickup_safety_new,
        pickup_safety_replace,
        df, no_temps_after_unmount, crash_between_replace_steps,
    }
    proftpd_no_extensions_store_restart: super::ServerKind::ProftpdNoExtensionsStoreRestart => {
        new_file_cp,
        cp_over,
        mv_over,
        append,
        excl_create_existing,
        pickup_safety_new,
        pickup_safety_replace,
        df, no_temps_after_unmount,
    }
    gesftpserver: super::ServerKind::Gesftpserver => {
        new_file_cp, cp_over, mv_over, append, excl_create_existing,
        pickup_safety_new, pickup_safety_replace, df, no_temps_after_unmount,
    }
    rclone: super::ServerKind::Rclone => {
        new_file_cp, cp_over, mv_over, append, excl_create_existing,
        pickup_safety_new, pickup_safety_replace,
        df,
        no_temps_after_unmount, refused_extension_logged_once,
    }
    openssh_no_extensions: super::ServerKind::OpensshNoExtensions => {
        new_file_cp, cp_over, mv_over, append, excl_create_existing,
        pickup_safety_new,
        pickup_safety_replace,
        df, no_temps_after_unmount, crash_between_replace_steps,
    }
}
