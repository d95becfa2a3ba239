//! Boot, operate and secure, against a real sshd and real mounts:
//! fstab and mount(8) (through mount.fuse3 and through the mount.coupafs
//! helper), daemon start-up and its failures, credentials (password files,
//! encrypted keys, ed25519/ECDSA keys, ssh-agent) and that the password
//! never shows, host-key policies and pinning, the ssh config file, symlink
//! containment, allow_other/default_permissions/uid/gid/umask, logs (stderr,
//! syslog), systemd's sd_notify, and the shipped completion and man page.
//!
//! Every test starts its own sandbox server and uses its own mountpoint.
//! The mount(8) tests install symlinks to the test binary where mount(8)
//! looks (/sbin/mount.coupafs, and /usr/local/bin/coupafs for mount.fuse3's
//! shell), one test at a time, and restore what was there afterwards.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::daemon::{cmdline, install, lazy_umount, DaemonMount};
use common::*;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `cmd` (stdin /dev/null) and returns its output; kills it (by PID)
/// after `timeout`. Output pipes may be held by a daemon it forked: reading
/// stops a few seconds after the command exits.
fn run_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let t = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        (buf, t)
    };
    let (out, out_t) = collect(Box::new(child.stdout.take().unwrap()));
    let (err, err_t) = collect(Box::new(child.stderr.take().unwrap()));
    let Some(status) = wait_or_kill(&mut child, timeout) else {
        panic!(
            "{cmd:?} did not exit within {timeout:?}\nstderr: {}",
            String::from_utf8_lossy(&err.lock().unwrap())
        );
    };
    wait_until(Duration::from_secs(5), || {
        out_t.is_finished() && err_t.is_finished()
    });
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `-o` options that log in with the sandbox's key and known_hosts.
fn key_opts(sb: &Sandbox) -> String {
    format!(
        "IdentityFile={},UserKnownHostsFile={}",
        sb.key.display(),
        sb.known_hosts.display()
    )
}

/// An empty HOME (no ~/.ssh keys or config) for tests that must not pick
/// up the machine's own.
fn empty_home() -> TempDir {
    traversable_tempdir("coupafs-ops-home-")
}

/// Environment for a login that may use only what the test gives: an empty
/// HOME and no ssh-agent.
fn isolated_env(home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        ("SSH_AUTH_SOCK".into(), "/nonexistent/agent.sock".into()),
    ]
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `coupafs -f -p PORT TARGET MNT -o OPTS` with exactly these options.
fn mount_with(sb: &Sandbox, opts: &[String], env: &[(String, String)]) -> Result<Mount, String> {
    let port = sb.port.to_string();
    let target = sb.target();
    let joined = opts.join(",");
    let after: Vec<&str> = if joined.is_empty() {
        vec![]
    } else {
        vec!["-o", &joined]
    };
    Mount::spawn(&["-p", &port, &target], &after, &env_refs(env))
}

/// Generates a key pair with ssh-keygen; returns the private key path.
fn keygen(dir: &Path, name: &str, kind: &[&str], passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let out = run_timeout(
        {
            let mut c = Command::new("ssh-keygen");
            c.arg("-q")
                .args(kind)
                .args(["-N", passphrase, "-C", "coupafs-ops-test", "-f"])
                .arg(&path);
            c
        },
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ssh-keygen {kind:?}: {}",
        text(&out.stderr)
    );
    path
}

/// Lets `key`'s public half log in to the sandbox account.
fn authorize(sb: &Sandbox, key: &Path) {
    let public = fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(sb.dir.path().join("authorized_keys"))
        .unwrap();
    f.write_all(public.as_bytes()).unwrap();
}

fn write_private(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// One /proc/self/mountinfo entry.
#[derive(Debug)]
struct MountEntry {
    mount_opts: String,
    fstype: String,
    source: String,
    super_opts: String,
}

fn mount_entry(path: &Path) -> Option<MountEntry> {
    let want = path.display().to_string();
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.get(4)? != &want {
            return None;
        }
        let post: Vec<&str> = post.split(' ').collect();
        Some(MountEntry {
            mount_opts: pre.get(5)?.to_string(),
            fstype: post.first()?.to_string(),
            source: post.get(1)?.to_string(),
            super_opts: post.get(2).unwrap_or(&"").to_string(),
        })
    })
}

fn has_opt(list: &str, opt: &str) -> bool {
    list.split(',').any(|o| o == opt)
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a PID this test started (directly or as a daemon).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// ops.rs's own addition to the shared [`DaemonMount`]: it starts the
/// daemon with this file's `run_timeout`.
impl DaemonMount {
    /// Runs `coupafs -p PORT TARGET MOUNTPOINT -o opts` for the sandbox on
    /// this mountpoint (daemon mode, see [`start_daemon_on`]).
    fn start(&self, sb: &Sandbox, opts: &str, env: &[(String, String)], clear_env: bool) -> Output {
        start_daemon_on(sb, &self.path, opts, env, clear_env)
    }
}

/// Runs `coupafs -p PORT TARGET mountpoint -o opts` for the sandbox in
/// daemon mode (no `-f`): it returns once the mount is live or has failed.
fn start_daemon_on(
    sb: &Sandbox,
    mountpoint: &Path,
    opts: &str,
    env: &[(String, String)],
    clear_env: bool,
) -> Output {
    let port = sb.port.to_string();
    let mp = mountpoint.display().to_string();
    run_daemon(
        &["-p", &port, &sb.target(), &mp, "-o", opts],
        env,
        clear_env,
    )
}

/// `coupafs` (daemon mode, no -f) with `args`, as the mount command would.
fn run_daemon(args: &[&str], env: &[(String, String)], clear_env: bool) -> Output {
    let mut cmd = Command::new(coupafs_bin());
    if clear_env {
        cmd.env_clear();
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_timeout(cmd, Duration::from_secs(60))
}

/// Runs `cmd` as the unprivileged user nobody (uid/gid 65534).
fn as_nobody(args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args);
    run_timeout(cmd, Duration::from_secs(30))
}

/// Receives datagrams until one satisfies `pred` or `timeout` passes.
fn recv_until(
    sock: &UnixDatagram,
    timeout: Duration,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = text(&buf[..n]);
            seen.push(msg.clone());
            if pred(&msg) {
                return Some(msg);
            }
        }
    }
    None
}

const PO_FILE: &str = "Outgoing/PurchaseOrders/PurchaseOrders_20240101_000001.csv";

// ---------------------------------------------------------------------------
// fstab and mount(8)
// ---------------------------------------------------------------------------

/// Writes an fstab (a comment, then one line: the sandbox on `m`'s
/// mountpoint, type `fstype`, options `Port=`, the key options and `opts`)
/// and runs `mount -T` on it, as an administrator would; mount(8) must
/// succeed.
fn mount_from_fstab(sb: &Sandbox, m: &DaemonMount, fstype: &str, opts: &str) {
    let fstab = m.dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\n{}@127.0.0.1:{} {} {fstype} Port={},{},{opts} 0 0\n",
            sb.user,
            sb.root.display(),
            m.path.display(),
            sb.port,
            key_opts(sb)
        ),
    )
    .unwrap();
    let mut cmd = Command::new("mount");
    cmd.arg("-T").arg(&fstab).arg(&m.path);
    let out = run_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "mount -T fstab failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn fstab_fuse_coupafs_mounts_through_mount_fuse3() {
    let sb = Sandbox::start();
    let bin = coupafs_bin();
    // mount(8) tries /sbin/mount.fuse.coupafs first; without it, it runs
    // mount.fuse3, which runs `coupafs` through /bin/sh with the shell's
    // default PATH (mount(8) clears PATH), where /usr/local/bin comes first.
    let _installed = install(&[
        ("/usr/local/bin/coupafs", Some(&bin)),
        ("/sbin/mount.fuse.coupafs", None),
    ]);
    let m = DaemonMount::new();
    mount_from_fstab(&sb, &m, "fuse.coupafs", "_netdev,allow_other");
    // mount(8) returned: the mount must already be live.
    let e = mount_entry(&m.path).expect("mounted right after mount(8) returned");
    assert_eq!(e.fstype, "fuse.coupafs");
    assert_eq!(
        e.source,
        format!("{}@127.0.0.1:{}", sb.user, sb.root.display())
    );
    assert!(has_opt(&e.super_opts, "allow_other"), "{e:?}");
    assert!(
        has_opt(&e.mount_opts, "nosuid") && has_opt(&e.mount_opts, "nodev"),
        "{e:?}"
    );
    let daemon = m.daemon();
    let argv = cmdline(daemon);
    assert_eq!(
        argv[0], "coupafs",
        "run by mount.fuse3 through sh: {argv:?}"
    );
    assert!(argv.iter().any(|a| a.contains("allow_other")), "{argv:?}");
    assert_eq!(
        fs::read(m.path.join(PO_FILE)).unwrap(),
        fs::read(sb.root.join(PO_FILE)).unwrap()
    );

    let mut cmd = Command::new("umount");
    cmd.arg(&m.path);
    let out = run_timeout(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "umount: {}", text(&out.stderr));
    assert!(!is_fuse_mounted(&m.path));
    assert!(m.gone(), "the daemon exits after umount");
}

#[test]
fn fstab_type_coupafs_uses_mount_helper_and_lazy_umount() {
    let sb = Sandbox::start();
    let bin = coupafs_bin();
    // mount(8) looks for helpers in /sbin only (/sbin/mount.TYPE).
    let _installed = install(&[("/sbin/mount.coupafs", Some(&bin))]);
    let m = DaemonMount::new();
    mount_from_fstab(
        &sb,
        &m,
        "coupafs",
        "_netdev,nofail,noauto,x-systemd.automount,x-systemd.mount-timeout=30,\
         x-systemd.requires=network-online.target",
    );
    let e = mount_entry(&m.path).expect("mounted right after mount(8) returned");
    assert_eq!(e.fstype, "fuse.coupafs");
    assert!(
        !has_opt(&e.super_opts, "allow_other"),
        "allow_other only when asked: {e:?}"
    );
    let daemon = m.daemon();
    let argv = cmdline(daemon);
    assert!(argv[0].ends_with("/mount.coupafs"), "{argv:?}");

    // A file held open keeps a plain umount from succeeding; umount -l
    // detaches at once and the open file still reads.
    let mut held = fs::File::open(m.path.join(PO_FILE)).unwrap();
    let out = Command::new("umount").arg(&m.path).output().unwrap();
    assert!(!out.status.success(), "umount of a busy mount must fail");
    assert!(is_fuse_mounted(&m.path));
    let out = Command::new("umount")
        .arg("-l")
        .arg(&m.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "umount -l: {}", text(&out.stderr));
    assert!(!is_fuse_mounted(&m.path), "detached at once");
    let mut content = Vec::new();
    held.read_to_end(&mut content).unwrap();
    assert_eq!(content, fs::read(sb.root.join(PO_FILE)).unwrap());
    drop(held);
    assert!(m.gone(), "the daemon exits once the last file is closed");
}

// ---------------------------------------------------------------------------
// Daemon mode
// ---------------------------------------------------------------------------

#[test]
fn daemon_returns_once_live_and_needs_no_home() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    // No environment at all: no HOME, USER, PATH or SSH_AUTH_SOCK.
    let out = m.start(&sb, &key_opts(&sb), &[], true);
    assert!(
        out.status.success(),
        "daemon start failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        is_fuse_mounted(&m.path),
        "the parent exits only once the mount is live"
    );
    let daemon = m.daemon();
    assert_eq!(
        fs::read_link(format!("/proc/{daemon}/cwd")).unwrap(),
        PathBuf::from("/"),
        "the daemon does not keep a directory busy"
    );
    let stat = fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(
        fields[3],
        daemon.to_string(),
        "the daemon leads its own session (setsid): {stat}"
    );
    assert!(fs::read_dir(m.path.join("Incoming")).unwrap().count() > 10);

    let out = Command::new("umount").arg(&m.path).output().unwrap();
    assert!(out.status.success(), "umount: {}", text(&out.stderr));
    assert!(m.gone());
}

fn assert_daemon_failure(out: &Output, m: &DaemonMount, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("coupafs: ") && !l.starts_with("coupafs: warning"))
        .collect();
    assert_eq!(lines.len(), 1, "one reason, printed once:\n{err}");
    assert!(lines[0].contains(needle), "expected '{needle}' in:\n{err}");
    assert!(!is_fuse_mounted(&m.path));
    assert!(m.gone(), "no daemon left behind");
}

#[test]
fn daemon_fails_with_the_reason_when_login_is_refused() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    let stranger = keygen(m.dir.path(), "stranger", &["-t", "ed25519"], "");
    let home = empty_home();
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={}",
        stranger.display(),
        sb.known_hosts.display()
    );
    let out = m.start(&sb, &opts, &isolated_env(home.path()), false);
    assert_daemon_failure(&out, &m, "authentication failed: as coupasftp");
    assert!(text(&out.stderr).contains(&stranger.display().to_string()));
}

#[test]
fn daemon_fails_with_the_reason_when_the_host_key_changed() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    // known_hosts lists other keys of both types for the server.
    let mut lines = String::new();
    for (name, kind) in [
        ("other_ed", &["-t", "ed25519"][..]),
        ("other_rsa", &["-t", "rsa", "-b", "2048"]),
    ] {
        let k = keygen(m.dir.path(), name, kind, "");
        let public = fs::read_to_string(format!("{}.pub", k.display())).unwrap();
        let mut parts = public.split_whitespace();
        lines += &format!(
            "[127.0.0.1]:{} {} {}\n",
            sb.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        );
    }
    let kh = m.dir.path().join("known_hosts");
    fs::write(&kh, &lines).unwrap();
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={}",
        sb.key.display(),
        kh.display()
    );
    let out = m.start(&sb, &opts, &[], false);
    assert_daemon_failure(&out, &m, "host key verification failed: HOST KEY CHANGED");
    assert_eq!(
        fs::read_to_string(&kh).unwrap(),
        lines,
        "known_hosts untouched"
    );
}

#[test]
fn daemon_fails_with_the_reason_when_the_mountpoint_is_missing() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    let missing = m.dir.path().join("missing");
    let opts = key_opts(&sb);
    // The daemon started on `mountpoint` fails, saying `why`.
    let fails_on = |mountpoint: &Path, why: &str| {
        let out = start_daemon_on(&sb, mountpoint, &opts, &[], false);
        assert_daemon_failure(&out, &m, why);
    };
    fails_on(
        &missing,
        &format!(
            "mountpoint {}: No such file or directory",
            missing.display()
        ),
    );
    let file = m.dir.path().join("file");
    fs::write(&file, "x").unwrap();
    fails_on(
        &file,
        &format!("mountpoint {} is not a directory", file.display()),
    );
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

#[test]
fn password_file_must_be_private() {
    let sb = Sandbox::start();
    let home = empty_home();
    let dir = traversable_tempdir("coupafs-ops-pw-");
    let pw = dir.path().join("password");
    fs::write(&pw, format!("{}\n", sb.password())).unwrap();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let opts = format!(
        "password_file={},UserKnownHostsFile={}",
        pw.display(),
        sb.known_hosts.display()
    );
    let port = sb.port.to_string();
    let env = isolated_env(home.path());
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&pw, fs::Permissions::from_mode(mode)).unwrap();
        let out = run_coupafs(
            &[
                "-f",
                "-p",
                &port,
                &sb.target(),
                &mp.display().to_string(),
                "-o",
                &opts,
            ],
            &env_refs(&env),
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr).trim(),
            format!(
                "coupafs: password file {} is readable by group or others (mode {mode:o}); \
                 run chmod 600 on it",
                pw.display()
            )
        );
        assert!(!is_fuse_mounted(&mp));
    }
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    let m = mount_with(&sb, &[opts], &env).unwrap_or_else(|log| panic!("{log}"));
    assert!(m.log().contains("as coupasftp (password,"), "{}", m.log());
}

/// Asserts the password is nowhere in the process's command line,
/// environment or the log.
fn assert_password_hidden(pid: u32, password: &str, log: &str) {
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let pw = password.as_bytes();
    let contains = |hay: &[u8]| hay.windows(pw.len()).any(|w| w == pw);
    assert!(!contains(&environ), "password in /proc/{pid}/environ");
    assert!(
        !environ
            .split(|&b| b == 0)
            .any(|e| e.starts_with(b"COUPAFS_PASSWORD=")),
        "COUPAFS_PASSWORD still in /proc/{pid}/environ"
    );
    assert!(!contains(&cmd), "password in /proc/{pid}/cmdline");
    assert!(!log.contains(password), "password in the log:\n{log}");
}

#[test]
fn password_from_the_environment_is_erased_from_proc_environ() {
    let sb = Sandbox::start();
    let home = empty_home();
    let password = sb.password();
    assert!(
        password.len() >= 16,
        "the sandbox password is long enough to search for"
    );
    let mut env = isolated_env(home.path());
    env.push(("COUPAFS_PASSWORD".into(), password.clone()));
    env.push(("COUPAFS_LOG".into(), "debug".into()));
    let opts = vec![format!("UserKnownHostsFile={}", sb.known_hosts.display())];
    let m = mount_with(&sb, &opts, &env).unwrap_or_else(|log| panic!("{log}"));
    assert!(m.log().contains("as coupasftp (password,"), "{}", m.log());
    // Other variables are still there: only the password was wiped.
    let environ = text(&fs::read(format!("/proc/{}/environ", m.pid())).unwrap());
    assert!(environ.contains(&format!("HOME={}", home.path().display())));
    assert!(fs::read_dir(m.path.join("Outgoing")).unwrap().count() > 0);
    assert_password_hidden(m.pid(), &password, &m.log());
    let pid = m.pid();
    let log_before = m.log();
    drop(m);
    assert!(!pid_alive(pid));
    assert!(!log_before.contains(&password));
}

#[test]
fn password_stays_hidden_in_daemon_mode_and_with_password_file() {
    let sb = Sandbox::start();
    let home = empty_home();
    let password = sb.password();

    // Daemon started with COUPAFS_PASSWORD: the forked daemon inherits the
    // wiped memory.
    let m = DaemonMount::new();
    let mut env = isolated_env(home.path());
    env.push(("COUPAFS_PASSWORD".into(), password.clone()));
    let opts = format!("UserKnownHostsFile={}", sb.known_hosts.display());
    let out = m.start(&sb, &opts, &env, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_password_hidden(m.daemon(), &password, &text(&out.stderr));

    // password_file= in the foreground, with debug logging.
    let pw = m.dir.path().join("password");
    write_private(&pw, &format!("{password}\n"));
    let opts = vec![
        format!("password_file={}", pw.display()),
        format!("UserKnownHostsFile={}", sb.known_hosts.display()),
        "debug".to_string(),
    ];
    let fg = mount_with(&sb, &opts, &isolated_env(home.path())).unwrap_or_else(|l| panic!("{l}"));
    assert!(fg.log().contains("(password,"), "{}", fg.log());
    assert!(
        fg.log().contains("DEBUG"),
        "debug logging is on: {}",
        fg.log()
    );
    assert!(fs::read_dir(fg.path.join("Incoming")).unwrap().count() > 10);
    assert_password_hidden(fg.pid(), &password, &fg.log());
}

#[test]
fn passphrase_file_unlocks_encrypted_keys() {
    let sb = Sandbox::start();
    let home = empty_home();
    let dir = traversable_tempdir("coupafs-ops-keys-");
    let phrase = "correct horse battery staple";
    let pp = dir.path().join("passphrase");
    write_private(&pp, &format!("{phrase}\n"));
    let keys = [
        // OpenSSH's own format (bcrypt KDF, aes256-ctr): ssh-keygen's default.
        keygen(
            dir.path(),
            "rsa_openssh",
            &["-t", "rsa", "-b", "2048"],
            phrase,
        ),
        keygen(dir.path(), "ed25519_openssh", &["-t", "ed25519"], phrase),
        keygen(
            dir.path(),
            "ecdsa_openssh",
            &["-t", "ecdsa", "-b", "256"],
            phrase,
        ),
        // The older PEM format (ssh-keygen -m PEM).
        keygen(
            dir.path(),
            "rsa_pem",
            &["-t", "rsa", "-b", "2048", "-m", "PEM"],
            phrase,
        ),
    ];
    assert!(fs::read_to_string(&keys[0])
        .unwrap()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert!(fs::read_to_string(&keys[3])
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    for k in &keys {
        authorize(&sb, k);
    }
    let env = isolated_env(home.path());
    let kh = format!("UserKnownHostsFile={}", sb.known_hosts.display());
    for k in &keys {
        let opts = vec![
            format!("IdentityFile={}", k.display()),
            format!("passphrase_file={}", pp.display()),
            kh.clone(),
        ];
        let m = mount_with(&sb, &opts, &env)
            .unwrap_or_else(|log| panic!("{} with passphrase_file: {log}", k.display()));
        assert!(
            m.log().contains(&format!("(publickey ({})", k.display())),
            "{}",
            m.log()
        );
        assert!(!m.log().contains(phrase));
        drop(m);
    }
    // Without the passphrase, or with a wrong one, the key does not open.
    let wrong = dir.path().join("wrong");
    write_private(&wrong, "not it\n");
    for extra in [None, Some(&wrong)] {
        let mut opts = vec![format!("IdentityFile={}", keys[1].display()), kh.clone()];
        if let Some(w) = extra {
            opts.push(format!("passphrase_file={}", w.display()));
        }
        let log = match mount_with(&sb, &opts, &env) {
            Ok(_) => panic!("mounted with an encrypted key and passphrase {extra:?}"),
            Err(log) => log,
        };
        assert!(log.contains("authentication failed"), "{log}");
        assert!(log.contains(&keys[1].display().to_string()), "{log}");
    }
    // A passphrase file readable by others is refused like a password file.
    fs::set_permissions(&pp, fs::Permissions::from_mode(0o644)).unwrap();
    let opts = vec![
        format!("IdentityFile={}", keys[1].display()),
        format!("passphrase_file={}", pp.display()),
        kh,
    ];
    let log = mount_with(&sb, &opts, &env).err().expect("refused");
    assert!(log.contains("passphrase file"), "{log}");
    assert!(log.contains("readable by group or others"), "{log}");
}

#[test]
fn ed25519_and_ecdsa_identity_files_log_in() {
    let sb = Sandbox::start();
    let home = empty_home();
    let dir = traversable_tempdir("coupafs-ops-keys-");
    let keys = [
        keygen(dir.path(), "id_ed25519", &["-t", "ed25519"], ""),
        keygen(dir.path(), "id_ecdsa256", &["-t", "ecdsa", "-b", "256"], ""),
        keygen(dir.path(), "id_ecdsa384", &["-t", "ecdsa", "-b", "384"], ""),
    ];
    let env = isolated_env(home.path());
    let kh = format!("UserKnownHostsFile={}", sb.known_hosts.display());
    // Not yet authorized: refused (so the login below is this key's).
    let opts = vec![format!("IdentityFile={}", keys[0].display()), kh.clone()];
    assert!(mount_with(&sb, &opts, &env).is_err());
    for k in &keys {
        authorize(&sb, k);
        let opts = vec![format!("IdentityFile={}", k.display()), kh.clone()];
        let m = mount_with(&sb, &opts, &env).unwrap_or_else(|log| panic!("{log}"));
        assert!(
            m.log().contains(&format!("(publickey ({})", k.display())),
            "{}",
            m.log()
        );
    }
}

#[test]
fn ssh_agent_keys_log_in_without_identity_file() {
    let sb = Sandbox::start();
    let home = empty_home();
    let dir = traversable_tempdir("coupafs-ops-agent-");
    let key = keygen(dir.path(), "agent_key", &["-t", "ed25519"], "");
    authorize(&sb, &key);
    let agent = start_agent(dir.path());
    let out = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-add: {}", text(&out.stderr));

    let opts = vec![format!("UserKnownHostsFile={}", sb.known_hosts.display())];
    // Control: the same mount without the agent has no credentials.
    let log = mount_with(&sb, &opts, &isolated_env(home.path()))
        .err()
        .expect("no credentials without the agent");
    assert!(log.contains("authentication failed"), "{log}");

    let env = vec![
        ("HOME".to_string(), home.path().display().to_string()),
        (
            "SSH_AUTH_SOCK".to_string(),
            agent.sock.display().to_string(),
        ),
    ];
    let m = mount_with(&sb, &opts, &env).unwrap_or_else(|log| panic!("{log}"));
    assert!(m.log().contains("(publickey (ssh-agent)"), "{}", m.log());
    assert_eq!(
        fs::read(m.path.join(PO_FILE)).unwrap(),
        fs::read(sb.root.join(PO_FILE)).unwrap()
    );
}

// ---------------------------------------------------------------------------
// Host keys
// ---------------------------------------------------------------------------

#[test]
fn unknown_host_key_is_refused_by_default_and_with_yes() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-kh-");
    let kh = dir.path().join("known_hosts");
    let env = isolated_env(dir.path());
    for policy in [None, Some("StrictHostKeyChecking=yes")] {
        let mut opts = vec![
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", kh.display()),
        ];
        opts.extend(policy.map(String::from));
        let log = mount_with(&sb, &opts, &env).err().expect("refused");
        assert!(
            log.contains(&format!(
                "host key verification failed: [127.0.0.1]:{} is not in {}",
                sb.port,
                kh.display()
            )),
            "{log}"
        );
        assert!(
            host_key_fingerprints(&sb)
                .iter()
                .any(|fp| log.contains(fp.as_str())),
            "the message names the server's key: {log}"
        );
        assert!(!kh.exists(), "known_hosts must not be created");
    }
}

#[test]
fn accept_new_records_the_key_and_then_refuses_a_changed_one() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-kh-");
    let kh = dir.path().join("known_hosts");
    let env = isolated_env(dir.path());
    let opts = |policy: &str| {
        vec![
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", kh.display()),
            format!("StrictHostKeyChecking={policy}"),
        ]
    };
    let m = mount_with(&sb, &opts("accept-new"), &env).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains("added host key"), "{}", m.log());
    drop(m);
    let recorded = fs::read_to_string(&kh).unwrap();
    let line = recorded
        .lines()
        .find(|l| l.starts_with(&format!("[127.0.0.1]:{} ", sb.port)))
        .unwrap_or_else(|| panic!("no line for the server in:\n{recorded}"));
    assert!(
        host_key_fingerprints(&sb)
            .contains(&fingerprint_of_pub(&line[line.find(' ').unwrap() + 1..])),
        "recorded key is the server's: {line}"
    );
    // Now known: the strict default accepts it.
    let m = mount_with(&sb, &opts("yes"), &env).unwrap_or_else(|l| panic!("{l}"));
    drop(m);

    // The server gets new host keys.
    for f in [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
        "ssh_host_rsa_key",
        "ssh_host_rsa_key.pub",
    ] {
        fs::remove_file(sb.dir.path().join(f)).unwrap();
    }
    sb.restart();
    for policy in ["accept-new", "yes", "no"] {
        let log = mount_with(&sb, &opts(policy), &env)
            .err()
            .unwrap_or_else(|| panic!("a changed key must be refused ({policy})"));
        assert!(log.contains("HOST KEY CHANGED"), "{policy}: {log}");
        assert!(log.contains(&fingerprint_of_pub(&line[line.find(' ').unwrap() + 1..])));
        assert_eq!(
            fs::read_to_string(&kh).unwrap(),
            recorded,
            "known_hosts untouched"
        );
    }
}

#[test]
fn strict_no_accepts_an_unknown_key_without_recording_it() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-kh-");
    let kh = dir.path().join("known_hosts");
    let opts = vec![
        format!("IdentityFile={}", sb.key.display()),
        format!("UserKnownHostsFile={}", kh.display()),
        "StrictHostKeyChecking=no".to_string(),
    ];
    let m = mount_with(&sb, &opts, &isolated_env(dir.path())).unwrap_or_else(|l| panic!("{l}"));
    assert!(
        m.log().contains("not verified (StrictHostKeyChecking=no)"),
        "{}",
        m.log()
    );
    assert!(!kh.exists());
}

#[test]
fn host_key_fingerprint_pins_the_key() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-pin-");
    let other = keygen(dir.path(), "other", &["-t", "ed25519"], "");
    let wrong =
        fingerprint_of_pub(&fs::read_to_string(format!("{}.pub", other.display())).unwrap());
    let env = isolated_env(dir.path());
    // No known_hosts at all: the pin alone decides.
    let opts = |pin: &str| {
        vec![
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", dir.path().join("none").display()),
            format!("HostKeyFingerprint={pin}"),
        ]
    };
    let log = mount_with(&sb, &opts(&wrong), &env)
        .err()
        .expect("wrong pin refused");
    let presented = log
        .split("presented ")
        .nth(1)
        .and_then(|s| s.split(&[',', ' '][..]).next())
        .unwrap_or_else(|| panic!("no presented fingerprint in: {log}"))
        .to_string();
    assert!(
        log.contains(&format!("HostKeyFingerprint pins {wrong}")),
        "{log}"
    );
    assert!(
        host_key_fingerprints(&sb).contains(&presented),
        "{presented} is one of the server's keys"
    );
    let m = mount_with(&sb, &opts(&presented), &env).unwrap_or_else(|l| panic!("{l}"));
    assert!(
        m.log().contains(&format!("{presented} pinned")),
        "{}",
        m.log()
    );
}

// ---------------------------------------------------------------------------
// ssh config file
// ---------------------------------------------------------------------------

#[test]
fn ssh_config_host_alias_supplies_everything() {
    let sb = Sandbox::start();
    let home = empty_home();
    let ssh = home.path().join(".ssh");
    fs::create_dir(&ssh).unwrap();
    fs::copy(&sb.key, ssh.join("coupa_id")).unwrap();
    fs::set_permissions(ssh.join("coupa_id"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::copy(&sb.known_hosts, ssh.join("coupa_known_hosts")).unwrap();
    fs::write(
        ssh.join("config"),
        format!(
            "Host coupa-sandbox\n\
             \x20   HostName 127.0.0.1\n\
             \x20   Port {}\n\
             \x20   User {}\n\
             \x20   IdentityFile ~/.ssh/coupa_id\n\
             \x20   UserKnownHostsFile ~/.ssh/coupa_known_hosts\n\
             \x20   StrictHostKeyChecking yes\n\
             \n\
             Host *\n\
             \x20   Port 1\n\
             \x20   User nobody\n",
            sb.port, sb.user
        ),
    )
    .unwrap();
    let env = isolated_env(home.path());
    let target = format!("coupa-sandbox:{}", sb.root.display());
    let m = Mount::spawn(&[&target], &[], &env_refs(&env)).unwrap_or_else(|l| panic!("{l}"));
    assert!(
        m.log().contains(&format!(
            "connected to 127.0.0.1:{} as {} (publickey ({}/coupa_id)",
            sb.port,
            sb.user,
            ssh.display()
        )),
        "{}",
        m.log()
    );
    assert_eq!(
        mount_entry(&m.path).unwrap().source,
        target,
        "shown as typed"
    );
    assert!(fs::read_dir(m.path.join("Incoming")).unwrap().count() > 10);
}

#[test]
fn ssh_config_file_option_and_command_line_precedence() {
    let sb = Sandbox::start();
    let home = empty_home();
    let dir = traversable_tempdir("coupafs-ops-cfg-");
    let cfg = dir.path().join("ssh_config");
    fs::write(
        &cfg,
        "Host coupa-sandbox\n  HostName 127.0.0.1\n  Port 1\n  User nobody\n  \
         IdentityFile /nonexistent/key\n  StrictHostKeyChecking no\n",
    )
    .unwrap();
    let env = isolated_env(home.path());
    let target = |user: &str| format!("{user}coupa-sandbox:{}", sb.root.display());
    let cfg_s = cfg.display().to_string();

    // The file alone: its Port 1 is used (nothing listens there).
    let log = Mount::spawn(&["-F", &cfg_s, &target("")], &[], &env_refs(&env))
        .err()
        .expect("port 1 from the config file");
    assert!(log.contains("127.0.0.1:1"), "{log}");

    // The command line wins over every setting of the file.
    let port = sb.port.to_string();
    let opts = format!("{},StrictHostKeyChecking=yes", key_opts(&sb));
    let user = format!("{}@", sb.user);
    let m = Mount::spawn(
        &["-F", &cfg_s, "-p", &port, &target(&user)],
        &["-o", &opts],
        &env_refs(&env),
    )
    .unwrap_or_else(|l| panic!("{l}"));
    assert!(
        m.log().contains(" known)"),
        "host key checked strictly: {}",
        m.log()
    );
    drop(m);

    // ~/.ssh/config that proxies the host: this used to be refused;
    // now the jump host is used (bastion.example does not exist, so the
    // mount fails saying so); -F none, -o ssh_config=none and
    // -o ProxyJump=none ignore it.
    let ssh = home.path().join(".ssh");
    fs::create_dir(&ssh).unwrap();
    fs::write(
        ssh.join("config"),
        "Host 127.0.0.1\n  ProxyJump bastion.example\n",
    )
    .unwrap();
    let log = mount_with(&sb, &[key_opts(&sb)], &env)
        .err()
        .expect("the jump host does not exist");
    assert!(
        log.contains("-W '[127.0.0.1]:") && log.contains("'bastion.example'"),
        "ProxyJump from the file not used: {log}"
    );
    assert!(log.contains("ProxyCommand exited"), "{log}");
    let m = Mount::spawn(
        &["-p", &port, &sb.target()],
        &["-o", &format!("ProxyJump=none,{}", key_opts(&sb))],
        &env_refs(&env),
    )
    .unwrap_or_else(|l| panic!("{l}"));
    drop(m);
    let m = Mount::spawn(
        &["-F", "none", "-p", &port, &sb.target()],
        &["-o", &key_opts(&sb)],
        &env_refs(&env),
    )
    .unwrap_or_else(|l| panic!("{l}"));
    drop(m);
    // fstab lines cannot pass -F: -o ssh_config= does the same.
    let m = Mount::spawn(
        &["-p", &port, &sb.target()],
        &["-o", &format!("ssh_config=none,{}", key_opts(&sb))],
        &env_refs(&env),
    )
    .unwrap_or_else(|l| panic!("{l}"));
    drop(m);
}

// ---------------------------------------------------------------------------
// Safe for root jobs
// ---------------------------------------------------------------------------

#[test]
fn server_symlinks_do_not_lead_out_of_the_mount() {
    let sb = Sandbox::start();
    let decoy_dir = traversable_tempdir("coupafs-ops-decoy-");
    let decoy = decoy_dir.path().join("secret.txt");
    fs::write(&decoy, "outside the mount\n").unwrap();
    let passwd_hash = sha256_file("/etc/passwd");
    let decoy_hash = sha256_file(&decoy);

    let dir = sb.root.join("Incoming/Invoices");
    let climb = "../".repeat(16);
    let escapes = [
        ("abs_passwd", "/etc/passwd".to_string()),
        ("climb_passwd", format!("{climb}etc/passwd")),
        ("abs_decoy", decoy.display().to_string()),
        (
            "climb_decoy",
            format!(
                "{climb}{}",
                decoy.display().to_string().trim_start_matches('/')
            ),
        ),
    ];
    for (name, target) in &escapes {
        std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
    }
    let inside_abs = sb.root.join(PO_FILE).display().to_string();
    std::os::unix::fs::symlink(&inside_abs, dir.join("inside_abs")).unwrap();
    std::os::unix::fs::symlink(format!("../../{PO_FILE}"), dir.join("inside_rel")).unwrap();

    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let real_passwd = fs::read("/etc/passwd").unwrap();
    for (name, raw) in &escapes {
        let link = mdir.join(name);
        let shown = fs::read_link(&link).unwrap();
        assert_ne!(shown, PathBuf::from(raw), "{name} is rewritten");
        if let Ok(p) = fs::canonicalize(&link) {
            assert!(p.starts_with(&m.path), "{name} resolves to {}", p.display());
        }
        if let Ok(content) = fs::read(&link) {
            assert_ne!(content, real_passwd, "{name} reads /etc/passwd");
            assert_ne!(content, fs::read(&decoy).unwrap(), "{name} reads the decoy");
        }
        // Appending through the link: must fail, or land inside the mount.
        match fs::OpenOptions::new().append(true).open(&link) {
            Err(_) => {}
            Ok(mut f) => {
                let opened = fs::read_link(format!("/proc/self/fd/{}", {
                    use std::os::fd::AsRawFd;
                    f.as_raw_fd()
                }))
                .unwrap();
                assert!(
                    opened.starts_with(&m.path),
                    "{name}: writing through it opened {} (not written)",
                    opened.display()
                );
                f.write_all(b"x\n").unwrap();
            }
        }
    }
    assert_eq!(
        sha256_file("/etc/passwd"),
        passwd_hash,
        "/etc/passwd unchanged"
    );
    assert_eq!(sha256_file(&decoy), decoy_hash, "decoy unchanged");

    // Links inside the tree work, absolute ones made relative.
    let want = fs::read(sb.root.join(PO_FILE)).unwrap();
    for name in ["inside_abs", "inside_rel"] {
        let shown = fs::read_link(mdir.join(name)).unwrap();
        assert_eq!(shown, PathBuf::from(format!("../../{PO_FILE}")), "{name}");
        assert_eq!(fs::read(mdir.join(name)).unwrap(), want, "{name}");
    }
    drop(m);

    // Control: with nocontain_symlinks the raw target is shown (so the
    // containment above is what kept the writes inside).
    let m = Mount::new(&sb, &["nocontain_symlinks"]);
    assert_eq!(
        fs::read_link(m.path.join("Incoming/Invoices/abs_decoy")).unwrap(),
        decoy
    );
}

#[test]
fn allow_other_is_off_unless_asked() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &[]);
    let e = mount_entry(&m.path).unwrap();
    assert!(!has_opt(&e.super_opts, "allow_other"), "{e:?}");
    assert!(!has_opt(&e.super_opts, "default_permissions"), "{e:?}");
    let mp = m.path.display().to_string();
    let out = as_nobody(&["ls", &mp]);
    assert!(!out.status.success(), "another user must not see the mount");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    drop(m);

    let m = Mount::new(&sb, &["allow_other"]);
    let e = mount_entry(&m.path).unwrap();
    assert!(has_opt(&e.super_opts, "allow_other"), "{e:?}");
    let out = as_nobody(&["ls", &m.path.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Incoming"));
}

#[test]
fn uid_gid_and_umask_show_in_ls() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &["uid=4321", "gid=8765", "umask=027"]);
    for (rel, server_rel) in [(PO_FILE, PO_FILE), ("Incoming", "Incoming")] {
        let md = fs::metadata(m.path.join(rel)).unwrap();
        let server = fs::metadata(sb.root.join(server_rel)).unwrap();
        assert_eq!((md.uid(), md.gid()), (4321, 8765), "{rel}");
        assert_eq!(md.mode() & 0o777, server.mode() & 0o777 & !0o027, "{rel}");
    }
    let out = Command::new("ls")
        .arg("-ln")
        .arg(m.path.join("Outgoing/PurchaseOrders"))
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.ends_with("PurchaseOrders_20240101_000001.csv"))
        .unwrap_or_else(|| panic!("{listing}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[0][..10], "-rw-r-----", "{line}");
    assert_eq!((cols[2], cols[3]), ("4321", "8765"), "{line}");
}

#[test]
fn default_permissions_lets_the_kernel_check_modes() {
    let sb = Sandbox::start();
    let po = |m: &Mount| m.path.join(PO_FILE).display().to_string();
    // Without default_permissions the server decides (as in sshfs): the
    // account may read the file, so another local user can too, whatever
    // mode is shown. allow_other implies default_permissions:
    // this needs the explicit opt-out.
    let m = Mount::new(&sb, &["allow_other", "no_default_permissions", "umask=077"]);
    assert_eq!(
        fs::metadata(m.path.join(PO_FILE)).unwrap().mode() & 0o777,
        0o600
    );
    let out = as_nobody(&["cat", &po(&m)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(m);

    let m = Mount::new(&sb, &["allow_other", "default_permissions", "umask=077"]);
    assert!(has_opt(
        &mount_entry(&m.path).unwrap().super_opts,
        "default_permissions"
    ));
    let out = as_nobody(&["cat", &po(&m)]);
    assert!(!out.status.success(), "mode 600 keeps other users out");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // The owner (root here) still reads it.
    assert_eq!(
        fs::read(m.path.join(PO_FILE)).unwrap(),
        fs::read(sb.root.join(PO_FILE)).unwrap()
    );
}

// ---------------------------------------------------------------------------
// Logs and systemd
// ---------------------------------------------------------------------------

#[test]
fn daemon_logs_to_syslog() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    let sock_path = m.dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let env = vec![
        (
            "COUPAFS_SYSLOG_SOCKET".to_string(),
            sock_path.display().to_string(),
        ),
        ("COUPAFS_LOG".to_string(), "debug".to_string()),
    ];
    let out = m.start(&sb, &key_opts(&sb), &env, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    let daemon = m.daemon();
    let tag = format!("coupafs[{daemon}]: ");

    // daemon.info = 3 * 8 + 6 = 30; daemon.debug = 31.
    let mut seen = Vec::new();
    let mounted = recv_until(&sock, Duration::from_secs(10), &mut seen, |s| {
        s.contains("mounted 127.0.0.1:")
    })
    .unwrap_or_else(|| panic!("no 'mounted' message: {seen:#?}"));
    assert!(mounted.starts_with("<30>"), "{mounted}");
    assert!(mounted.contains(&tag), "{mounted}");
    assert!(
        seen.iter()
            .any(|s| s.starts_with("<30>") && s.contains("connected to 127.0.0.1")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("<31>")),
        "debug level: {seen:#?}"
    );

    // An upload is one info line.
    fs::write(m.path.join("Incoming/Invoices/ops_log.csv"), "a,b\n1,2\n").unwrap();
    let committed = recv_until(&sock, Duration::from_secs(20), &mut seen, |s| {
        s.contains("committed")
    })
    .unwrap_or_else(|| panic!("no 'committed' message: {seen:#?}"));
    assert!(
        committed.starts_with("<30>") && committed.contains("ops_log.csv"),
        "{committed}"
    );

    let out = Command::new("umount").arg(&m.path).output().unwrap();
    assert!(out.status.success());
    let unmounted = recv_until(&sock, Duration::from_secs(15), &mut seen, |s| {
        s.contains("unmounted")
    })
    .unwrap_or_else(|| panic!("no 'unmounted' message: {seen:#?}"));
    assert!(unmounted.contains(&tag), "{unmounted}");
    assert!(m.gone());
}

#[test]
fn daemon_without_a_syslog_socket_warns_and_still_mounts() {
    let sb = Sandbox::start();
    let m = DaemonMount::new();
    let missing = m.dir.path().join("no-such.sock");
    let env = vec![(
        "COUPAFS_SYSLOG_SOCKET".to_string(),
        missing.display().to_string(),
    )];
    let out = m.start(&sb, &key_opts(&sb), &env, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "coupafs: warning: no syslog socket: {} does not exist",
            missing.display()
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(is_fuse_mounted(&m.path));
}

#[test]
fn foreground_logs_go_to_stderr_with_levels() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &[]);
    // The mount shows in mountinfo a moment before its "mounted" line is
    // written: wait for the line rather than race it.
    wait_until(Duration::from_secs(10), || {
        m.log().contains("mounted 127.0.0.1:")
    });
    let log = m.log();
    assert!(
        log.contains(" INFO ") && log.contains("mounted 127.0.0.1:"),
        "{log}"
    );
    assert!(!log.contains("DEBUG"), "{log}");
    drop(m);
    let m = Mount::new(&sb, &["debug"]);
    assert!(m.log().contains("DEBUG"), "{}", m.log());
    drop(m);
    // A failure names its cause on stderr.
    let dir = traversable_tempdir("coupafs-ops-log-");
    let log = mount_with(
        &sb,
        &[
            format!("IdentityFile={}", dir.path().join("missing-key").display()),
            format!("UserKnownHostsFile={}", sb.known_hosts.display()),
        ],
        &isolated_env(dir.path()),
    )
    .err()
    .expect("no usable key");
    assert!(
        log.contains("coupafs: authentication failed: as coupasftp:")
            && log.contains("missing-key: no such file"),
        "{log}"
    );
}

/// A foreground coupafs spawned directly (for sd_notify); killed by PID and
/// unmounted on drop.
struct Foreground {
    child: Child,
    path: PathBuf,
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if is_fuse_mounted(&self.path) {
            lazy_umount(&self.path);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notify_test(sb: &Sandbox, dir: &Path, notify_socket: &str, sock: &UnixDatagram) {
    let mp = dir.join("mnt");
    fs::create_dir(&mp).unwrap();
    let child = Command::new(coupafs_bin())
        .args(["-f", "-p", &sb.port.to_string(), &sb.target()])
        .arg(&mp)
        .args(["-o", &key_opts(sb)])
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut fg = Foreground { child, path: mp };
    let mut seen = Vec::new();
    let ready = recv_until(sock, MOUNT_TIMEOUT, &mut seen, |s| s.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {seen:?}"));
    assert!(
        is_fuse_mounted(&fg.path),
        "READY=1 only once the mount is live"
    );
    assert!(
        ready
            .lines()
            .any(|l| l == format!("MAINPID={}", fg.child.id())),
        "{ready}"
    );
    kill(fg.child.id(), libc::SIGTERM);
    recv_until(sock, Duration::from_secs(10), &mut seen, |s| {
        s.contains("STOPPING=1")
    })
    .unwrap_or_else(|| panic!("no STOPPING=1: {seen:?}"));
    let mut status: Option<ExitStatus> = None;
    wait_until(Duration::from_secs(40), || {
        status = fg.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "clean exit on SIGTERM"
    );
    assert!(!is_fuse_mounted(&fg.path));
}

#[test]
fn under_systemd_stderr_lines_carry_their_priority() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-journal-");
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    // systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connects to
    // stderr; coupafs checks that its stderr is that stream.
    let child = Command::new(coupafs_bin())
        .args(["-f", "-p", &sb.port.to_string(), &sb.target()])
        .arg(&mp)
        .args(["-o", &key_opts(&sb)])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let fg = Foreground { child, path: mp };
    assert!(
        wait_until(MOUNT_TIMEOUT, || is_fuse_mounted(&fg.path)),
        "{}",
        fs::read_to_string(&log_path).unwrap()
    );
    // The "mounted" line follows mountinfo by a moment: wait for it.
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log_path).is_ok_and(|t| t.contains("<6>mounted "))
    });
    let text = fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>connected to 127.0.0.1:")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("<6>mounted 127.0.0.1:")),
        "{text}"
    );
    assert!(
        !text.contains(" INFO "),
        "no timestamp/level prefix: {text}"
    );
    drop(fg);

    // A JOURNAL_STREAM that is not our stderr (inherited by a child of a
    // service, say) changes nothing.
    let m = Mount::try_new_with_env(&sb, &[], &[("JOURNAL_STREAM", "1:1")])
        .unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains(" INFO "), "{}", m.log());
    assert!(!m.log().contains("<6>"), "{}", m.log());
}

#[test]
fn sd_notify_ready_once_mounted() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-notify-");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    notify_test(&sb, dir.path(), &path.display().to_string(), &sock);
}

#[test]
fn sd_notify_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-ops-notify-");
    let name = format!("coupafs-ops-notify-{}-{}", std::process::id(), sb.port);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    notify_test(&sb, dir.path(), &format!("@{name}"), &sock);
}

// The shipped man page and completions are tested in tests/cli_docs.rs.
