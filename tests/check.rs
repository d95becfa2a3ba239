//! `coupafs check` against the sandbox SFTP server: each test breaks one
//! thing server-side and asserts on the exact line and the exit status
//! (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The first line of the output
//! is the overall state with the performance data, then one line per check.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;

/// What `coupafs check` printed and returned.
struct CheckRun {
    code: i32,
    stdout: String,
    stderr: String,
}

impl CheckRun {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts that some line contains `needle`, showing everything if not.
    fn assert_has(&self, needle: &str) {
        assert!(
            self.stdout.lines().any(|l| l.contains(needle)),
            "no line contains {needle:?}\n{self}"
        );
    }

    fn assert_lacks(&self, needle: &str) {
        assert!(
            !self.stdout.contains(needle),
            "output unexpectedly contains {needle:?}\n{self}"
        );
    }

    /// Asserts the first line: `COUPAFS <state> - ` and a piece of the
    /// summary.
    fn assert_state(&self, state: &str, needle: &str) {
        let first = self.stdout.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("COUPAFS {state} - ")) && first.contains(needle),
            "first line is not COUPAFS {state} with {needle:?}\n{self}"
        );
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, code, "exit status\n{self}");
    }
}

impl std::fmt::Display for CheckRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {}\n--- stdout:\n{}--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `coupafs check -p PORT TARGET -o OPTS` with `opts` joined by commas.
fn check_with(sb: &Sandbox, target: &str, opts: &[String]) -> CheckRun {
    let port = sb.port.to_string();
    let opts = opts.join(",");
    let out = run_coupafs(&["check", "-p", &port, target, "-o", &opts], &[]);
    CheckRun {
        code: out.status.code().expect("coupafs check exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The key and known_hosts of the sandbox, as a mount would use them.
fn sandbox_opts(sb: &Sandbox) -> Vec<String> {
    vec![
        format!("IdentityFile={}", sb.key.display()),
        format!("UserKnownHostsFile={}", sb.known_hosts.display()),
    ]
}

fn check(sb: &Sandbox) -> CheckRun {
    check_with(sb, &sb.target(), &sandbox_opts(sb))
}

/// Every file or folder below `dir` whose name contains `needle`.
fn find_names(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().contains(needle) {
            out.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            find_names(&p, needle, out);
        }
    }
}

fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn set_mtime_ago(path: &Path, ago: Duration) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .expect("open for set_modified");
    f.set_modified(SystemTime::now() - ago).expect("set mtime");
}

/// A CSV with a header and `rows` data rows.
fn csv_rows(rows: usize) -> Vec<u8> {
    let mut s = String::from("Invoice Number,Supplier,Total\n");
    for i in 0..rows {
        s.push_str(&format!("INV-{i:05},Acme Office Supplies,{i}.00\n"));
    }
    s.into_bytes()
}

#[test]
fn all_green_against_the_sandbox() {
    let sb = Sandbox::start();
    let run = check(&sb);
    run.assert_code(0);
    let lines = run.lines();
    let (summary, checks) = lines.split_first().expect("some output");
    for l in checks {
        assert!(l.starts_with("OK   "), "not OK: {l:?}\n{run}");
    }
    run.assert_state("OK", " 0 warn, 0 fail in ");
    // Performance data after `|`, in Nagios form.
    let perf = summary.split_once(" | ").map(|(_, p)| p).unwrap_or("");
    let labels: Vec<&str> = perf
        .split(' ')
        .map(|d| {
            assert!(d.ends_with(";;;;"), "perf datum {d:?}\n{run}");
            d.split('=').next().unwrap_or("")
        })
        .collect();
    assert_eq!(
        labels,
        ["connect_time", "waiting_files", "oldest_waiting", "time"],
        "{run}"
    );
    assert!(perf.contains("waiting_files=0;;;;"), "{run}");

    run.assert_has("OK   dns: 127.0.0.1 resolved to 127.0.0.1 in ");
    run.assert_has(&format!("OK   tcp: connected to 127.0.0.1:{} in ", sb.port));
    run.assert_has("server banner SSH-2.0-OpenSSH");
    let fps = host_key_fingerprints(&sb);
    let host_line = lines
        .iter()
        .find(|l| l.starts_with("OK   host key: known, SHA256:"))
        .unwrap_or_else(|| panic!("no host key line\n{run}"));
    assert!(
        fps.iter().any(|fp| host_line.contains(fp.as_str())),
        "host key line {host_line:?} shows none of {fps:?}"
    );
    run.assert_has(&format!(
        "OK   auth: publickey ({}) as coupasftp",
        sb.key.display()
    ));
    run.assert_has("OK   sftp: protocol version 3; extensions: posix-rename@openssh.com");
    run.assert_has(&format!("OK   root: {} is a directory", sb.root.display()));
    run.assert_has("OK   folders: Incoming: all 20 standard folders present");
    run.assert_has("OK   folders: Outgoing: all 7 standard folders present");
    run.assert_has("OK   folders: Archive/Incoming: all 20 standard folders present");
    run.assert_has(
        "OK   write: 20 of 20 Incoming folders writable (create, write, rename, remove) in ",
    );
    run.assert_has("OK   replace: atomic: a rename onto an existing name replaced it");
    run.assert_has("OK   append: through a hidden temp file and a replace");
    run.assert_has("OK   capabilities: fsync: yes; statvfs: yes (df shows the server's figures); hardlink: yes");
    run.assert_has("OK   waiting: no files waiting in 20 Incoming folders");
    run.assert_has("OK   archive: no archived files in Archive/Incoming/* yet");
    run.assert_has("OK   rules: no waiting files to check");
    assert_eq!(checks.len(), 16, "{run}");

    // The write probe left nothing behind.
    let mut left = Vec::new();
    find_names(&sb.root, ".coupafs-", &mut left);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn password_login_and_read_only_skip_the_probe() {
    let sb = Sandbox::start();
    let run = check_with(
        &sb,
        &sb.target(),
        &[
            format!("password_file={}", sb.password_file.display()),
            format!("UserKnownHostsFile={}", sb.known_hosts.display()),
            "ro".to_string(),
        ],
    );
    run.assert_code(0);
    run.assert_has("OK   auth: password as coupasftp");
    run.assert_has("OK   write: skipped: read-only (-o ro)");
    run.assert_has("OK   replace: skipped: no writable folder to test");
}

/// On ProFTPD without the OpenSSH extensions a rename onto an
/// existing name is refused (FILE_ALREADY_EXISTS); `check` tries it, says
/// coupafs will replace through a hidden aside name (WARN), that append
/// works through it, lists no extension, and leaves nothing behind.
#[test]
fn proftpd_without_posix_rename_warns_hidden_aside_replace() {
    use common::servers::{Server, ServerKind};
    let server = Server::start(ServerKind::ProftpdNoExtensions);
    let port = server.port.to_string();
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={}",
        server.identity_file.display(),
        server.known_hosts.display()
    );
    let out = run_coupafs(&["check", "-p", &port, &server.target(), "-o", &opts], &[]);
    let run = CheckRun {
        code: out.status.code().expect("coupafs check exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.assert_code(1);
    run.assert_has("WARN sftp: protocol version 3; extensions: versions, home-directory; posix-rename@openssh.com missing");
    run.assert_has("OK   write: 20 of 20 Incoming folders writable");
    run.assert_has("WARN replace: hidden-aside: the server's RENAME will not replace");
    run.assert_has("OK   append: through a hidden temp file and a replace");
    run.assert_has("OK   capabilities: fsync: no (fsync() succeeds once the bytes are on the server); statvfs: no (df shows a large, mostly free disk); hardlink: no (ln fails with EPERM)");
    run.assert_lacks("FAIL");
    let mut left = Vec::new();
    find_names(&server.root, ".coupafs-", &mut left);
    assert!(left.is_empty(), "left behind: {left:?}\n{run}");
}

#[test]
fn missing_standard_folder_warns() {
    let sb = Sandbox::start();
    fs::remove_dir(sb.root.join("Outgoing/Suppliers")).expect("rmdir Outgoing/Suppliers");
    let run = check(&sb);
    run.assert_code(1);
    run.assert_has("WARN folders: Outgoing: 1 of 7 standard folders missing: Suppliers");
    run.assert_has("OK   folders: Incoming: all 20 standard folders present");
    run.assert_state("WARNING", "15 ok, 1 warn, 0 fail");
}

#[test]
fn missing_top_level_folder_warns() {
    let sb = Sandbox::start();
    fs::remove_dir_all(sb.root.join("Outgoing")).expect("rm -r Outgoing");
    let run = check(&sb);
    run.assert_code(1);
    run.assert_has("WARN folders: Outgoing: folder missing (none of the 7 standard folders)");
}

#[test]
fn read_only_incoming_folder_fails_the_write_check() {
    let sb = Sandbox::start();
    let dir = sb.root.join("Incoming/Invoices");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).expect("chmod 555");
    let run = check(&sb);
    run.assert_code(2);
    run.assert_has("FAIL write: Incoming/Invoices/.coupafs-check.coupafs-");
    run.assert_has("create failed: server: Permission denied (status 3)");
    run.assert_has("OK   write: 19 of 20 Incoming folders writable");
    run.assert_state("CRITICAL", "");
    run.assert_has("1 fail");
    // Only the one folder failed.
    assert_eq!(run.stdout.matches("FAIL write:").count(), 1, "{run}");
}

#[test]
fn stale_waiting_file_warns() {
    let sb = Sandbox::start();
    let stale = sb.root.join("Incoming/Invoices/stale.csv");
    write_file(&stale, &csv_rows(2));
    set_mtime_ago(&stale, Duration::from_secs(3600));
    // A fresh file elsewhere is fine, and Coupa has archived before.
    write_file(&sb.root.join("Incoming/Suppliers/fresh.csv"), &csv_rows(3));
    let archived = sb.root.join("Archive/Incoming/Invoices/inv_old.csv");
    write_file(&archived, &csv_rows(1));
    set_mtime_ago(&archived, Duration::from_secs(2 * 3600 + 60));

    let run = check(&sb);
    run.assert_code(1);
    run.assert_has(
        "WARN waiting: Incoming/Invoices: 1 file waiting, oldest 1h00m (stale.csv): over 15 min, \
         but Coupa collects every 3-6 min",
    );
    run.assert_has("OK   waiting: Incoming/Suppliers: 1 file waiting, oldest ");
    run.assert_has(
        "OK   archive: newest Archive/Incoming/Invoices/inv_old.csv, 2h01m old (1 file archived)",
    );
    run.assert_has("OK   rules: 2 waiting files checked (2 CSV, ");
    run.assert_state("WARNING", "");
    run.assert_has(" 1 warn, 0 fail");
}

#[test]
fn waiting_files_with_nothing_archived_warn() {
    let sb = Sandbox::start();
    write_file(&sb.root.join("Incoming/Users/users.csv"), &csv_rows(1));
    let run = check(&sb);
    run.assert_code(1);
    run.assert_has("OK   waiting: Incoming/Users: 1 file waiting, oldest ");
    run.assert_has(
        "WARN archive: no archived files in Archive/Incoming/* while Incoming has 1 waiting \
         file: Coupa has not collected anything yet",
    );
}

#[test]
fn csv_rule_violations_warn() {
    let sb = Sandbox::start();
    let archived = sb.root.join("Archive/Incoming/Invoices/done.csv");
    write_file(&archived, &csv_rows(1));
    // Exactly at the limit: fine.
    write_file(
        &sb.root.join("Incoming/Invoices/ok_5000.csv"),
        &csv_rows(5000),
    );
    write_file(&sb.root.join("Incoming/Invoices/big.csv"), &csv_rows(5001));
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(csv_rows(2));
    write_file(&sb.root.join("Incoming/Suppliers/bom.CSV"), &bom);
    write_file(
        &sb.root.join("Incoming/Items/latin1.csv"),
        b"Name,Price\nCaf\xE9,1.00\n",
    );
    // Over 8 MiB, not a CSV: the size rule still applies.
    write_file(
        &sb.root.join("Incoming/Items/huge.xml"),
        &vec![b' '; 8 * 1024 * 1024 + 1],
    );

    let run = check(&sb);
    run.assert_code(1);
    run.assert_has(
        "WARN rules: Incoming/Invoices/big.csv: row rule: 5001 data rows is over Coupa's \
         5000-row limit",
    );
    run.assert_has(
        "WARN rules: Incoming/Suppliers/bom.CSV: encoding rule: starts with a UTF-8 byte order \
         mark (BOM)",
    );
    run.assert_has(
        "WARN rules: Incoming/Items/latin1.csv: encoding rule: not valid UTF-8 (first bad byte \
         at offset 14)",
    );
    run.assert_has(
        "WARN rules: Incoming/Items/huge.xml: size rule: 8388609 bytes is over Coupa's 8 MB limit",
    );
    run.assert_lacks("ok_5000.csv:");
    assert_eq!(run.stdout.matches("WARN rules:").count(), 4, "{run}");
    run.assert_state("WARNING", "");
    run.assert_has(" 4 warn, 0 fail");
}

#[test]
fn big_csv_is_only_read_up_to_the_limit() {
    let sb = Sandbox::start();
    write_file(&sb.root.join("Archive/Incoming/Items/a.csv"), b"h\n");
    // 9 MiB of rows: over both limits.
    let mut data = Vec::with_capacity(9 << 20);
    data.extend_from_slice(b"Id,Name\n");
    let mut i = 0u64;
    while data.len() < 9 << 20 {
        data.extend_from_slice(format!("{i},Item number {i}\n").as_bytes());
        i += 1;
    }
    write_file(&sb.root.join("Incoming/Items/huge.csv"), &data);
    let run = check(&sb);
    run.assert_code(1);
    run.assert_has(&format!(
        "WARN rules: Incoming/Items/huge.csv: size rule: {} bytes is over Coupa's 8 MB limit",
        data.len()
    ));
    run.assert_has("WARN rules: Incoming/Items/huge.csv: row rule: at least ");
}

#[test]
fn wrong_host_key_fails_with_both_fingerprints() {
    let sb = Sandbox::start();
    // known_hosts naming other keys of both types the server has.
    let keydir = traversable_tempdir("coupafs-check-hk-");
    let fake = keydir.path().join("fake_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fake", "-f"])
        .arg(&fake)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    let fake_ed = fs::read_to_string(fake.with_extension("pub")).expect("read fake key");
    // The client key stands in for a wrong RSA host key.
    let fake_rsa =
        fs::read_to_string(sb.key.with_extension("pub")).expect("read client public key");
    let mut kh = String::new();
    for k in [&fake_ed, &fake_rsa] {
        let k: Vec<&str> = k.split_whitespace().take(2).collect();
        kh.push_str(&format!("[127.0.0.1]:{} {}\n", sb.port, k.join(" ")));
    }
    let kh_path = keydir.path().join("known_hosts");
    write_file(&kh_path, kh.as_bytes());

    let run = check_with(
        &sb,
        &sb.target(),
        &[
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", kh_path.display()),
        ],
    );
    run.assert_code(2);
    run.assert_has("OK   tcp: connected to 127.0.0.1:");
    run.assert_has(&format!(
        "FAIL host key: verification failed: HOST KEY CHANGED for [127.0.0.1]:{}: server presented SHA256:",
        sb.port
    ));
    let line = run
        .lines()
        .into_iter()
        .find(|l| l.starts_with("FAIL host key:"))
        .expect("host key line")
        .to_string();
    let real = host_key_fingerprints(&sb);
    assert!(
        real.iter().any(|fp| line.contains(fp.as_str())),
        "{line:?} names none of the server's keys {real:?}"
    );
    let fake_fps = [fingerprint_of_pub(&fake_ed), fingerprint_of_pub(&fake_rsa)];
    assert!(
        fake_fps.iter().any(|fp| line.contains(fp.as_str())),
        "{line:?} names none of the known_hosts keys {fake_fps:?}"
    );
    // Nothing after the failed step.
    run.assert_lacks("auth:");
    run.assert_state("CRITICAL", "host key: ");
    run.assert_state("CRITICAL", "2 ok, 0 warn, 1 fail");
}

#[test]
fn unreachable_port_fails_tcp() {
    let sb = Sandbox::start();
    let port = free_port().to_string();
    let opts = sandbox_opts(&sb).join(",");
    let out = run_coupafs(&["check", "-p", &port, &sb.target(), "-o", &opts], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL tcp: cannot connect to port {port} of 127.0.0.1: 127.0.0.1:{port}: Connection refused"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("OK   dns: 127.0.0.1 resolved to 127.0.0.1"),
        "{stdout}"
    );
}

#[test]
fn wrong_password_fails_auth() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-check-pw-");
    let pw = dir.path().join("password");
    write_file(&pw, b"not-the-password\n");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let run = check_with(
        &sb,
        &sb.target(),
        &[
            format!("password_file={}", pw.display()),
            format!("UserKnownHostsFile={}", sb.known_hosts.display()),
        ],
    );
    run.assert_code(2);
    run.assert_has("OK   host key: accepted");
    // Default identity files of the local account may be tried first.
    run.assert_has("FAIL auth: login refused as coupasftp: ");
    run.assert_has("password: ");
}

#[test]
fn missing_root_fails() {
    let sb = Sandbox::start();
    let target = format!("{}@127.0.0.1:{}/nonexistent", sb.user, sb.root.display());
    let run = check_with(&sb, &target, &sandbox_opts(&sb));
    run.assert_code(2);
    run.assert_has(&format!(
        "FAIL root: {}/nonexistent: server: No such file",
        sb.root.display()
    ));
    run.assert_lacks("folders:");
}

#[test]
fn unreadable_password_file_is_unknown() {
    let sb = Sandbox::start();
    let run = check_with(
        &sb,
        &sb.target(),
        &["password_file=/nonexistent/password".to_string()],
    );
    // The check could not run: UNKNOWN, with the reason on the state line.
    run.assert_code(3);
    run.assert_state("UNKNOWN", "cannot read password file /nonexistent/password");
    assert!(
        run.stderr
            .contains("coupafs: cannot read password file /nonexistent/password"),
        "{run}"
    );
}

#[test]
fn usage_errors_are_unknown() {
    for args in [
        &["check", "-o", "frobnicate", "h:"][..],
        &["check"][..],
        &["-o", "ro", "check", "a:", "b"][..],
        &["status", "/a", "/b"][..],
    ] {
        let out = run_coupafs(args, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stdout}");
        assert!(
            stdout.starts_with("COUPAFS UNKNOWN - usage: "),
            "{args:?}: {stdout}"
        );
    }
    // A mount's usage error keeps exit 1.
    let out = run_coupafs(&["-o", "frobnicate", "h:", "/mnt"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn json_is_one_object_for_scripts() {
    let sb = Sandbox::start();
    let mut opts = sandbox_opts(&sb);
    opts.push("ro".into());
    let port = sb.port.to_string();
    let out = run_coupafs(
        &[
            "check",
            "--json",
            "-p",
            &port,
            &sb.target(),
            "-o",
            &opts.join(","),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("{\"state\":\"OK\",\"exit\":0,\"summary\":\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("{\"level\":\"OK\",\"check\":\"dns\",\"message\":\"127.0.0.1 resolved"),
        "{stdout}"
    );
    assert!(stdout.contains("\"connect_time\":{\"value\":"), "{stdout}");
    assert!(stdout.trim_end().ends_with("}}"), "{stdout}");
    // Balanced braces outside strings: one object.
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for c in stdout.trim_end().chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_str = false,
            (false, _, '"') => in_str = true,
            (false, _, '{') => depth += 1,
            (false, _, '}') => {
                depth -= 1;
                assert!(depth >= 0, "{stdout}");
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "{stdout}");
    // A usage error as JSON too.
    let out = run_coupafs(
        &[
            "check",
            "--json",
            "-o",
            "password_file=/nonexistent/pw",
            "h:",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\"state\":\"UNKNOWN\",\"exit\":3,"));
}
