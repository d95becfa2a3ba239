//! Integration-test harness: a private OpenSSH SFTP server per test
//! ([`Sandbox`], driven by `scripts/sandbox-server.sh`) and a real FUSE mount of
//! it by the `coupafs` binary ([`Mount`]).
//!
//! Every process this module kills it started itself (or is a descendant of the
//! sshd listener it started), and it kills by PID only. Tests must run as root
//! (the sandbox creates the `coupasftp` account and runs sshd).
//!
//! Each test gets its own sandbox directory, port and mountpoint, so tests are
//! independent and can run in parallel.
#![allow(dead_code)]

pub mod daemon;
pub mod forwarder;
pub mod servers;
pub mod watcher;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long a mount may take to appear in /proc/self/mountinfo.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`run_coupafs`] lets the binary run before killing it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Absolute path of `scripts/sandbox-server.sh`.
pub fn sandbox_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sandbox-server.sh")
}

/// Path of the `coupafs` binary cargo built for this test run.
pub fn coupafs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coupafs"))
}

/// A free TCP port on 127.0.0.1 (bound, then released; small race accepted).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr().expect("local_addr of probe listener").port()
}

/// True if something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("socket addr"),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// A temp dir under /tmp that other users (the `coupasftp` account) can traverse.
pub fn traversable_tempdir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir under /tmp");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755 temp dir");
    dir
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// (state, ppid) of a process from /proc/PID/stat, or None if it is gone.
fn proc_state_ppid(pid: u32) -> Option<(char, u32)> {
    // /proc/PID/status, not /proc/PID/stat: reading `stat` of a task in the
    // middle of execve() can block (it waits for the exec's locks), and a
    // test that scans every process must never hang on someone else's task.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let state = field("State:")?.chars().next()?;
    let ppid = field("PPid:")?.parse().ok()?;
    Some((state, ppid))
}

/// True if `pid` exists and is not a zombie. (PID 1 on the CI machines does not
/// always reap orphans promptly, so dead daemons can linger as zombies.)
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_state_ppid(pid), Some((state, _)) if state != 'Z')
}

/// Live (non-zombie) processes by parent pid, from one scan of /proc.
fn live_children_by_parent() -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((state, ppid)) = proc_state_ppid(pid) {
                if state != 'Z' {
                    children.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    children
}

/// Live (non-zombie) direct children of `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    live_children_by_parent()
        .remove(&parent)
        .unwrap_or_default()
}

/// Live (non-zombie) descendants of `root`, breadth first.
pub fn descendants(root: u32) -> Vec<u32> {
    let children = live_children_by_parent();
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(k);
                queue.push(k);
            }
        }
    }
    out
}

fn send_signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain kill(2) on a PID we own; errors (ESRCH) are ignored.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Waits up to `timeout` for `child` (ours) to exit; past it, kills it by
/// its PID and returns None.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait on child") {
            Some(st) => return Some(st),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs a command with a timeout, capturing stdout and stderr; kills it (by its
/// PID) if it does not exit in time. `None` status means it was killed.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (Option<ExitStatus>, Vec<u8>, Vec<u8>) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("child stdout is piped");
    let mut err = child.stderr.take().expect("child stderr is piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_or_kill(&mut child, timeout);
    let stdout = out_t.join().expect("stdout reader thread");
    let stderr = err_t.join().expect("stderr reader thread");
    (status, stdout, stderr)
}

// ---------------------------------------------------------------------------
// Sandbox: the local SFTP server
// ---------------------------------------------------------------------------

/// How [`Sandbox::start_with`] sets up the server.
#[derive(Clone, Debug, Default)]
pub struct SandboxOptions {
    /// Extra flags for sshd's `internal-sftp`, e.g. `-P rename,posix-rename`
    /// (refuse those requests with SSH_FX_PERMISSION_DENIED).
    pub sftp_server_flags: Option<String>,
    /// sshd's `MaxSessions` (SFTP channels per connection; default 100).
    pub max_sessions: Option<u32>,
}

/// A private sshd on 127.0.0.1 serving Coupa's standard tree at `root`.
pub struct Sandbox {
    /// Everything of this sandbox: keys, sshd_config, sshd.log, `root/`.
    pub dir: TempDir,
    pub port: u16,
    /// Always `coupasftp`.
    pub user: String,
    /// Absolute path of the exported tree (what the client mounts).
    pub root: PathBuf,
    /// Client private key (RSA 2048, unencrypted, OpenSSH format).
    pub key: PathBuf,
    /// known_hosts with the server's host keys for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// The account password (mode 600).
    pub password_file: PathBuf,
    /// PID of the sshd listener (changes on restart).
    pid: AtomicU32,
}

impl Sandbox {
    /// Starts a fresh sandbox server on a free port. Panics with the script's
    /// output if it cannot.
    pub fn start() -> Sandbox {
        Self::start_with(SandboxOptions::default())
    }

    /// [`Sandbox::start`] with options (e.g. an SFTP server that refuses some
    /// requests). The options survive [`Sandbox::restart`].
    pub fn start_with(opts: SandboxOptions) -> Sandbox {
        let dir = traversable_tempdir("coupafs-sandbox-");
        if let Some(flags) = &opts.sftp_server_flags {
            // Read by sandbox-server.sh each time it writes sshd_config.
            fs::write(dir.path().join("sftp_flags"), format!("{flags}\n"))
                .expect("write sandbox sftp_flags");
        }
        if let Some(n) = opts.max_sessions {
            fs::write(dir.path().join("max_sessions"), format!("{n}\n"))
                .expect("write sandbox max_sessions");
        }
        Self::start_in(dir)
    }

    /// Starts the sandbox sshd in `dir`, which may already hold files the
    /// script reads (`sftp_flags`, `sftp_command`).
    pub fn start_in(dir: TempDir) -> Sandbox {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            match run_script_start(dir.path(), port) {
                Ok(kv) => {
                    let get = |k: &str| -> String {
                        kv.get(k)
                            .unwrap_or_else(|| {
                                panic!("sandbox-server.sh start printed no {k}= line: {kv:?}")
                            })
                            .clone()
                    };
                    let printed_port: u16 = get("PORT").parse().expect("PORT is a number");
                    assert_eq!(printed_port, port, "sandbox started on another port");
                    return Sandbox {
                        port,
                        user: get("USER"),
                        root: PathBuf::from(get("ROOT")),
                        key: PathBuf::from(get("KEY")),
                        known_hosts: PathBuf::from(get("KNOWN_HOSTS")),
                        password_file: PathBuf::from(get("PASSWORD_FILE")),
                        pid: AtomicU32::new(get("PID").parse().expect("PID is a number")),
                        dir,
                    };
                }
                Err(e) => {
                    // Most likely someone grabbed the port between probe and bind.
                    last_err = e;
                    if !port_in_use_error(&last_err) {
                        break;
                    }
                }
            }
        }
        panic!("could not start the sandbox SFTP server:\n{last_err}");
    }

    /// `user@127.0.0.1:<root>` — the remote argument for coupafs/sshfs (the
    /// port is passed separately, `-p PORT`).
    pub fn target(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.root.display())
    }

    /// What the library needs to open SSH connections to this sandbox
    /// in-process (tests that drive `coupafs::ssh::Pool` without a mount):
    /// the sandbox key only, its known_hosts checked strictly, no agent, no
    /// keepalives, default algorithms.
    pub fn connect_params(&self) -> coupafs::ssh::ConnectParams {
        coupafs::ssh::ConnectParams {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            identity_files: vec![self.key.clone()],
            password: None,
            passphrase: None,
            use_agent: false,
            known_hosts: self.known_hosts.clone(),
            global_known_hosts: Vec::new(),
            host_key_policy: coupafs::ssh::HostKeyPolicy::Strict,
            host_key_fingerprint: None,
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::ZERO,
            keepalive_count_max: 3,
            reply_timeout: Duration::from_secs(30),
            algorithms: Default::default(),
            auth: coupafs::ssh::AuthPolicy::default(),
            reach: Default::default(),
        }
    }

    /// PID of the sshd listener.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// The account password.
    pub fn password(&self) -> String {
        fs::read_to_string(&self.password_file)
            .expect("read sandbox password file")
            .trim()
            .to_string()
    }

    /// Contents of sshd's log (connections, auth results).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// sshd processes serving connections: live descendants of the listener.
    pub fn session_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        if !pid_alive(pid) {
            return Vec::new();
        }
        descendants(pid)
    }

    /// One PID per SSH connection: the listener's direct children (each
    /// connection is `[priv]` -> `user@notty` -> `user@internal-sftp`, so
    /// counting [`Sandbox::session_pids`] would count every connection three
    /// times).
    pub fn connection_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        if !pid_alive(pid) {
            return Vec::new();
        }
        children(pid)
    }

    /// SIGKILLs every session process (not the listener): all clients see their
    /// connection drop, new connections are still accepted.
    pub fn kill_sessions(&self) {
        for pid in self.session_pids() {
            send_signal(pid, libc::SIGKILL);
        }
    }

    /// True if the listener is alive and the port accepts connections.
    pub fn is_running(&self) -> bool {
        pid_alive(self.pid()) && port_accepts(self.port)
    }

    /// Stops the server (listener and its sessions); the directory stays.
    pub fn stop(&self) {
        let mut cmd = Command::new("bash");
        cmd.arg(sandbox_script()).arg("stop").arg(self.dir.path());
        let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(30));
        if status.map(|s| s.success()) != Some(true) {
            panic!(
                "sandbox-server.sh stop failed ({status:?}):\n{}{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        self.kill_by_pid(); // belt and braces: should be a no-op now
    }

    /// Starts the server again on the same port with the same keys and tree.
    pub fn restart(&self) {
        self.stop();
        // The port was just released; retry briefly in case it is still busy.
        let mut last_err = String::new();
        for _ in 0..20 {
            match run_script_start(self.dir.path(), self.port) {
                Ok(kv) => {
                    let pid = kv
                        .get("PID")
                        .expect("sandbox-server.sh start printed no PID= line")
                        .parse()
                        .expect("PID is a number");
                    self.pid.store(pid, Ordering::SeqCst);
                    return;
                }
                Err(e) => last_err = e,
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "could not restart the sandbox on port {}:\n{last_err}",
            self.port
        );
    }

    /// Kills the listener and its sessions directly (used by Drop: no script).
    fn kill_by_pid(&self) {
        let pid = self.pid();
        if !pid_alive(pid) || !self.is_our_listener(pid) {
            return;
        }
        // Freeze the listener so it forks no new session, kill the sessions,
        // then the listener.
        send_signal(pid, libc::SIGSTOP);
        for p in descendants(pid) {
            send_signal(p, libc::SIGKILL);
        }
        send_signal(pid, libc::SIGKILL);
        wait_until(Duration::from_secs(5), || !pid_alive(pid));
    }

    /// Guards against PID reuse: the process must be sshd with our config.
    fn is_our_listener(&self, pid: u32) -> bool {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let config = self.dir.path().join("sshd_config");
        cmdline.contains(&format!("-f {}", config.display()))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_by_pid();
    }
}

fn port_in_use_error(msg: &str) -> bool {
    msg.contains("Address already in use") || msg.contains("did not start listening")
}

/// Runs `sandbox-server.sh start DIR PORT`; Ok(KEY=VALUE map) or Err(output + log).
fn run_script_start(dir: &Path, port: u16) -> Result<HashMap<String, String>, String> {
    let mut cmd = Command::new("bash");
    cmd.arg(sandbox_script())
        .arg("start")
        .arg(dir)
        .arg(port.to_string());
    let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let stderr = String::from_utf8_lossy(&err).into_owned();
    if status.map(|s| s.success()) != Some(true) {
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        return Err(format!(
            "sandbox-server.sh start {} {port} failed ({status:?})\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}\n--- sshd.log:\n{log}",
            dir.display()
        ));
    }
    Ok(stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

// ---------------------------------------------------------------------------
// Mount: a real coupafs FUSE mount of a sandbox
// ---------------------------------------------------------------------------

/// A running `coupafs -f` mounted at `path`. Dropping it unmounts (lazily) and
/// kills the process.
pub struct Mount {
    /// The mountpoint.
    pub path: PathBuf,
    child: Child,
    /// Where coupafs's stdout and stderr go.
    pub log_path: PathBuf,
    /// Holds the mountpoint and log; removed after unmount.
    dir: TempDir,
    finished: bool,
}

impl Mount {
    /// Mounts `sandbox` with the key and known_hosts plus `extra_opts` (each a
    /// `-o` option such as `"cache_timeout=1"`). Panics with coupafs's stderr if
    /// the mount does not appear within [`MOUNT_TIMEOUT`].
    pub fn new(sandbox: &Sandbox, extra_opts: &[&str]) -> Mount {
        Self::try_new(sandbox, extra_opts).unwrap_or_else(|log| {
            panic!(
                "coupafs failed to mount {}:\n--- coupafs log:\n{log}\n--- sshd.log (tail):\n{}",
                sandbox.target(),
                tail(&sandbox.log(), 30)
            )
        })
    }

    /// Like [`Mount::new`] but returns Err(stderr/log of coupafs) if coupafs
    /// exits or the mount does not appear in time.
    pub fn try_new(sandbox: &Sandbox, extra_opts: &[&str]) -> Result<Mount, String> {
        Self::try_new_with_env(sandbox, extra_opts, &[])
    }

    /// [`Mount::try_new`] with extra environment variables (e.g. `RUST_LOG`).
    pub fn try_new_with_env(
        sandbox: &Sandbox,
        extra_opts: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        let mut opts = vec![
            format!("IdentityFile={}", sandbox.key.display()),
            format!("UserKnownHostsFile={}", sandbox.known_hosts.display()),
        ];
        opts.extend(extra_opts.iter().map(|s| s.to_string()));
        let opts = opts.join(",");
        let port = sandbox.port.to_string();
        let target = sandbox.target();
        Self::spawn(&["-p", &port, &target], &["-o", &opts], env)
    }

    /// Runs `coupafs -f <before...> <mountpoint> <after...>` and waits for the
    /// mount. For tests that need full control of the command line.
    pub fn spawn(before: &[&str], after: &[&str], env: &[(&str, &str)]) -> Result<Mount, String> {
        let dir = traversable_tempdir("coupafs-mnt-");
        let path = dir.path().join("mnt");
        fs::create_dir(&path).expect("create mountpoint dir");
        let log_path = dir.path().join("coupafs.log");
        let log = fs::File::create(&log_path).expect("create coupafs log file");
        let log2 = log.try_clone().expect("dup coupafs log file");

        let mut cmd = Command::new(coupafs_bin());
        cmd.arg("-f")
            .args(before)
            .arg(&path)
            .args(after)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
        let mut mount = Mount {
            path,
            child,
            log_path,
            dir,
            finished: false,
        };

        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if is_fuse_mounted(&mount.path) {
                return Ok(mount);
            }
            if let Some(status) = mount.child.try_wait().expect("try_wait on coupafs") {
                mount.finished = true;
                let log = mount.log();
                return Err(if status.success() {
                    format!("coupafs exited with {status} without mounting\n{log}")
                } else {
                    log
                });
            }
            if Instant::now() >= deadline {
                let log = mount.log();
                mount.cleanup();
                return Err(format!(
                    "timed out after {MOUNT_TIMEOUT:?} waiting for the mount at {}\n{log}",
                    mount.path.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything coupafs wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// PID of the coupafs process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the mountpoint is a FUSE mount.
    pub fn is_mounted(&self) -> bool {
        is_fuse_mounted(&self.path)
    }

    /// None while coupafs runs; its exit status once it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let st = self.child.try_wait().expect("try_wait on coupafs");
        if st.is_some() {
            self.finished = true;
        }
        st
    }

    /// Unmounts (`umount`, not lazy) and waits up to 10 s for coupafs to exit
    /// by itself. Returns its exit status, or None if it had to be killed.
    pub fn unmount(mut self) -> Option<ExitStatus> {
        let out = Command::new("umount")
            .arg(&self.path)
            .output()
            .expect("run umount");
        if !out.status.success() {
            // Fall back to a lazy unmount so the test does not leave a mount.
            lazy_unmount(&self.path);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.cleanup();
        None
    }

    fn cleanup(&mut self) {
        if is_fuse_mounted(&self.path) {
            lazy_unmount(&self.path);
        }
        if !self.finished {
            // Give coupafs a moment to notice the unmount and exit on its own.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    self.finished = true;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if !self.finished {
                let _ = self.child.kill(); // SIGKILL by PID
                let _ = self.child.wait();
                self.finished = true;
            }
        }
        // A killed daemon can leave a dead FUSE connection behind.
        if is_fuse_mounted(&self.path) {
            lazy_unmount(&self.path);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.cleanup(); // `dir` (mountpoint, log) is removed after this
    }
}

fn lazy_unmount(path: &Path) {
    let ok = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(path)
            .stderr(Stdio::null())
            .status();
    }
}

/// Unescapes the octal escapes (`\040` etc.) of /proc/self/mountinfo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystem type of the mount at exactly `path` (topmost), if any.
pub fn mount_fstype(path: &Path) -> Option<String> {
    let want = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = pre.split(' ').nth(4) else {
            continue;
        };
        if Path::new(&unescape_mountinfo(mountpoint)) == want {
            found = post.split(' ').next().map(str::to_string);
        }
    }
    found
}

/// True if `path` is a FUSE mount (`fuse`, `fuse.coupafs`, ...).
pub fn is_fuse_mounted(path: &Path) -> bool {
    mount_fstype(path).is_some_and(|t| t == "fuse" || t.starts_with("fuse."))
}

/// Runs the coupafs binary with `args` and extra `env`, stdin from /dev/null,
/// and returns its output. Panics if it runs longer than [`RUN_TIMEOUT`].
pub fn run_coupafs(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(coupafs_bin());
    cmd.args(args).envs(env.iter().copied());
    let (status, stdout, stderr) = run_with_timeout(cmd, RUN_TIMEOUT);
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "coupafs {args:?} did not exit within {RUN_TIMEOUT:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

// ---------------------------------------------------------------------------
// Files and waiting
// ---------------------------------------------------------------------------

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// Hex SHA-256 of a byte slice.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for GiB files.
pub struct PseudoRandom(u64);

impl PseudoRandom {
    pub fn new(seed: u64) -> Self {
        PseudoRandom((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` deterministic pseudo-random bytes for `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    PseudoRandom::new(seed).fill(&mut v);
    v
}

/// Writes `bytes` deterministic pseudo-random bytes to `path` (1 MiB writes)
/// and returns their hex SHA-256. Same length, same content.
pub fn write_random_file(path: impl AsRef<Path>, bytes: u64) -> String {
    write_random_file_seeded(path, bytes, 0)
}

/// [`write_random_file`] with a chosen seed (different seeds, different content).
pub fn write_random_file_seeded(path: impl AsRef<Path>, bytes: u64, seed: u64) -> String {
    let path = path.as_ref();
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut rng = PseudoRandom::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        h.update(&buf[..n]);
        left -= n as u64;
    }
    f.flush()
        .unwrap_or_else(|e| panic!("flush {}: {e}", path.display()));
    hex(&h.finalize())
}

/// Polls `f` every 50 ms until it returns true (→ true) or `timeout` passes
/// (→ false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// uid of a local account, from /etc/passwd.
pub fn uid_of(user: &str) -> Option<u32> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Maps an io::Error to its errno (for asserting on FUSE error codes).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Helpers for the upload and network tests
// ---------------------------------------------------------------------------

/// Hex SHA-256 of a file by `sha256sum` (much faster than the unoptimised
/// test build hashing 100 MiB). Err(message) if the file cannot be read,
/// e.g. an I/O error through a mount.
pub fn sha256sum(path: impl AsRef<Path>) -> Result<String, String> {
    let path = path.as_ref();
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum {}: {} {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum {}: no output", path.display()))
}

/// close(2) of `file`, reporting its error (dropping a `File` ignores it, and
/// on a coupafs mount close() is where an upload reports its outcome).
pub fn close_file(file: fs::File) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by its owner and is closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `data` to `path` (through a mount) and closes it; Ok only if every
/// write and close() did (close() is where an upload's outcome shows).
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    close_file(f)
}

/// Names in a local directory (server side), sorted; empty if it is missing.
/// Sorted names in a server-side directory, without the spare temps that
/// come and go with create activity (`all_names_in` keeps them; the spare
/// lifecycle has its own test).
pub fn names_in(dir: impl AsRef<Path>) -> Vec<String> {
    all_names_in(dir)
        .into_iter()
        .filter(|n| !is_spare_temp(n))
        .collect()
}

/// Every name in a directory, sorted.
pub fn all_names_in(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.as_ref())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// True for coupafs upload temp names (`.NAME.coupafs-XXXXXX`, X hex).
pub fn is_coupafs_temp(name: &str) -> bool {
    let Some((head, suffix)) = name.rsplit_once(".coupafs-") else {
        return false;
    };
    !head.is_empty() && suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_hexdigit())
}

/// True for the spare temp files coupafs opens ahead of creates
/// (`.coupafs-spare.coupafs-XXXXXX`, see src/spare.rs).
pub fn is_spare_temp(name: &str) -> bool {
    // Any temp_prefix may come before it.
    name.contains("coupafs-spare.coupafs-") && is_coupafs_temp(name)
}

/// coupafs upload temp files in a server-side directory, spares excepted
/// (they come and go with the folder's create activity).
pub fn temps_in(dir: impl AsRef<Path>) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| is_coupafs_temp(n) && !is_spare_temp(n))
        .collect()
}

/// Spare temp files in a server-side directory.
pub fn spares_in(dir: impl AsRef<Path>) -> Vec<String> {
    all_names_in(dir)
        .into_iter()
        .filter(|n| is_spare_temp(n))
        .collect()
}

/// The status file a mount as root writes: `/run/coupafs/<mountpoint with
/// '/' as '-', outer slashes trimmed>.status` (see `StatusFile` in
/// src/mount/status.rs).
pub fn status_file_of(mountpoint: &Path) -> PathBuf {
    let escaped: String = mountpoint
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    PathBuf::from("/run/coupafs").join(format!("{escaped}.status"))
}

/// Sends `sig` to a process this test started (by PID).
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    send_signal(pid, sig);
}

// ---------------------------------------------------------------------------
// Small helpers shared by the test files
// ---------------------------------------------------------------------------

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// "No such file or directory (os error 2) (2)": an errno with its name.
pub fn errno_name(n: i32) -> String {
    format!("{} ({n})", io::Error::from_raw_os_error(n))
}

/// `size` random bytes from /dev/urandom into `path`; returns the sha256.
pub fn make_source(path: &Path, size: usize) -> String {
    let out = Command::new("head")
        .arg("-c")
        .arg(size.to_string())
        .arg("/dev/urandom")
        .stdout(fs::File::create(path).expect("create source file"))
        .status()
        .expect("run head");
    assert!(out.success(), "head -c {size} /dev/urandom failed");
    let len = fs::metadata(path).expect("stat source file").len();
    assert_eq!(len, size as u64, "source file size");
    sha256sum(path).expect("hash source")
}

/// Makes a server-side file look like one the SFTP account wrote.
pub fn chown_to_sftp_user(path: &Path) {
    let uid = uid_of("coupasftp").expect("account coupasftp");
    std::os::unix::fs::chown(path, Some(uid), None).expect("chown to coupasftp");
}

/// OpenSSH's `SHA256:...` fingerprint of one public key line.
pub fn fingerprint_of_pub(line: &str) -> String {
    use base64::Engine;
    let blob = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no key in {line:?}"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .expect("base64 key");
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(key))
    )
}

/// The fingerprints of the sandbox sshd's host keys (ed25519, RSA).
pub fn host_key_fingerprints(sb: &Sandbox) -> Vec<String> {
    ["ssh_host_ed25519_key.pub", "ssh_host_rsa_key.pub"]
        .iter()
        .map(|f| {
            let text = fs::read_to_string(sb.dir.path().join(f)).expect("read host key");
            fingerprint_of_pub(&text)
        })
        .collect()
}

/// An ssh-agent a test started; killed by PID on drop.
pub struct Agent {
    child: Child,
    pub sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ssh-agent -D` with its socket in `dir`; waits for the socket.
pub fn start_agent(dir: &Path) -> Agent {
    let sock = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssh-agent");
    let agent = Agent { child, sock };
    assert!(
        wait_until(Duration::from_secs(10), || agent.sock.exists()),
        "ssh-agent socket did not appear"
    );
    agent
}
