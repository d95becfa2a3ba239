//! SFTP servers other than OpenSSH's internal-sftp, each started on a free
//! port of 127.0.0.1 serving a fresh temp copy of Coupa's standard tree, for
//! running the upload suite against every kind of server Coupa may run:
//! ProFTPD's mod_sftp (stock, or with the OpenSSH extensions
//! switched off), gesftpserver and OpenSSH's sftp-server with every extension
//! hidden (both under the sandbox sshd, `scripts/sandbox-server.sh` with
//! `sftp_command`), and `rclone serve sftp` (Go's pkg/sftp).
//!
//! The account, client key and tree come from `sandbox-server.sh` (`start`
//! for the sshd-based servers, `prepare` for the others), so every server
//! serves the same layout to the same kind of login. A [`Server`] stops its
//! processes on drop, by PID only: the daemon it spawned and that daemon's
//! descendants (its per-connection sessions).
//!
//! The packages come from `scripts/install-deps.sh` (proftpd-core,
//! proftpd-mod-crypto, gesftpserver, rclone, openssh-server).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::{
    descendants, free_port, pid_alive, port_accepts, run_with_timeout, sandbox_script, send_signal,
    tail, traversable_tempdir, wait_until, Mount, Sandbox,
};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where Debian's openssh-sftp-server puts the program.
const OPENSSH_SFTP_SERVERS: [&str; 2] = ["/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server"];

/// Which server, and how it is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// ProFTPD 1.3.8 mod_sftp as installed; offers posix-rename, fsync,
    /// hardlink and statvfs.
    ProftpdStock,
    /// ProFTPD with `SFTPExtensions -posixRename -fsync -hardlink -statvfs`
    /// (a real-world configuration): a RENAME onto an existing file answers
    /// FILE_ALREADY_EXISTS, and OPEN with APPEND is refused.
    ProftpdNoExtensions,
    /// [`ServerKind::ProftpdNoExtensions`] with `AllowStoreRestart on`, which
    /// lets OPEN with APPEND through.
    ProftpdNoExtensionsStoreRestart,
    /// Green End's gesftpserver as the sshd SFTP program: answers pipelined
    /// requests out of order; plain RENAME onto a file answers FAILURE.
    Gesftpserver,
    /// `rclone serve sftp` (Go pkg/sftp) with no VFS cache: sequential-only
    /// writes, advertises statvfs but refuses it.
    Rclone,
    /// OpenSSH's sftp-server behind `scripts/sftp-no-extensions.py`: a strict
    /// SFTP v3 server, RENAME onto a file answers FAILURE.
    OpensshNoExtensions,
}

impl ServerKind {
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::ProftpdStock => "ProFTPD mod_sftp (stock)",
            ServerKind::ProftpdNoExtensions => "ProFTPD mod_sftp without extensions",
            ServerKind::ProftpdNoExtensionsStoreRestart => {
                "ProFTPD mod_sftp without extensions, AllowStoreRestart on"
            }
            ServerKind::Gesftpserver => "gesftpserver under sshd",
            ServerKind::Rclone => "rclone serve sftp",
            ServerKind::OpensshNoExtensions => "OpenSSH sftp-server without extensions",
        }
    }
}

/// Options of [`Server::start_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerOptions {
    /// For [`ServerKind::OpensshNoExtensions`]: milliseconds added before
    /// the server sees each metadata request (a slow server).
    pub metadata_delay_ms: u32,
}

/// The process behind a [`Server`].
enum Daemon {
    /// The sandbox sshd (it stops itself on drop).
    Sshd(Sandbox),
    /// A daemon this module spawned in the foreground.
    Child(Child),
}

/// A running SFTP server and what a test needs to mount it and to look at its
/// files directly.
pub struct Server {
    pub kind: ServerKind,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Client private key (unencrypted, OpenSSH format).
    pub identity_file: PathBuf,
    /// The account's password, in a file (for `password_file=`).
    pub password_file: PathBuf,
    /// known_hosts with the server's host keys for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// The served tree on this machine (to check files server-side).
    pub root: PathBuf,
    /// The same tree as the client names it (`/` for a chrooted server).
    pub remote_root: String,
    /// The server's log (for failure messages).
    pub log_file: PathBuf,
    daemon: Daemon,
    /// Keys, configuration, logs and the tree of a spawned daemon; removed
    /// after the daemon is stopped (field order: dropped after `daemon`).
    dir: Option<TempDir>,
}

impl Server {
    /// Starts a fresh server of `kind`. Panics with its log if it cannot.
    pub fn start(kind: ServerKind) -> Server {
        Self::start_with(kind, ServerOptions::default())
    }

    /// [`Server::start`] with options.
    pub fn start_with(kind: ServerKind, opts: ServerOptions) -> Server {
        match kind {
            ServerKind::ProftpdStock
            | ServerKind::ProftpdNoExtensions
            | ServerKind::ProftpdNoExtensionsStoreRestart => start_proftpd(kind),
            ServerKind::Gesftpserver => {
                start_under_sshd(kind, |_| gesftpserver_path().display().to_string())
            }
            ServerKind::OpensshNoExtensions => start_under_sshd(kind, |dir| {
                // The account must be able to read the filter: the checkout
                // may sit under a private home, so it runs from the sandbox dir.
                let filter = dir.join("sftp-no-extensions.py");
                fs::copy(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sftp-no-extensions.py"),
                    &filter,
                )
                .expect("copy scripts/sftp-no-extensions.py");
                let server = OPENSSH_SFTP_SERVERS
                    .iter()
                    .find(|p| Path::new(p).exists())
                    .expect("OpenSSH sftp-server (package openssh-sftp-server)");
                format!(
                    "/usr/bin/python3 {} --delay-ms {} {server}",
                    filter.display(),
                    opts.metadata_delay_ms
                )
            }),
            ServerKind::Rclone => start_rclone(),
        }
    }

    /// `user@host:remote_root`, the remote argument of coupafs (with `-p port`).
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.remote_root)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Mounts this server with the coupafs binary (key, known_hosts, plus
    /// `extra_opts` as `-o` options). Panics with both logs if it cannot.
    pub fn mount(&self, extra_opts: &[&str]) -> Mount {
        let mut opts = vec![
            format!("IdentityFile={}", self.identity_file.display()),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
        ];
        opts.extend(extra_opts.iter().map(|s| s.to_string()));
        let opts = opts.join(",");
        let port = self.port.to_string();
        let target = self.target();
        Mount::spawn(&["-p", &port, &target], &["-o", &opts], &[]).unwrap_or_else(|log| {
            panic!(
                "coupafs failed to mount {} ({}):\n--- coupafs log:\n{log}\n--- server log (tail):\n{}",
                target,
                self.kind.name(),
                tail(&self.log(), 30)
            )
        })
    }

    /// Writes a file server-side (as if an earlier upload had put it there),
    /// owned by the account.
    pub fn put(&self, rel: &str, data: &[u8]) {
        let path = self.root.join(rel);
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if let Some(uid) = super::uid_of(&self.user) {
            let _ = std::os::unix::fs::chown(&path, Some(uid), None);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Daemon::Child(child) = &mut self.daemon {
            stop_child(child);
        }
        // A Sandbox stops its sshd in its own Drop.
    }
}

/// Stops a daemon this module spawned: freeze it so it forks no new session,
/// kill its sessions, then it (all by PID).
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id();
    send_signal(pid, libc::SIGSTOP);
    for p in descendants(pid) {
        send_signal(p, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `sandbox-server.sh prepare DIR`: account, client key, tree.
/// Returns (user, root, key, password file).
fn prepare(dir: &Path) -> (String, PathBuf, PathBuf, PathBuf) {
    let mut cmd = Command::new("bash");
    cmd.arg(sandbox_script()).arg("prepare").arg(dir);
    let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out);
    if status.map(|s| s.success()) != Some(true) {
        panic!(
            "sandbox-server.sh prepare {} failed ({status:?}):\n{stdout}{}",
            dir.display(),
            String::from_utf8_lossy(&err)
        );
    }
    let get = |k: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("sandbox-server.sh prepare printed no {k}= line:\n{stdout}"))
            .trim()
            .to_string()
    };
    (
        get("USER"),
        PathBuf::from(get("ROOT")),
        PathBuf::from(get("KEY")),
        PathBuf::from(get("PASSWORD_FILE")),
    )
}

/// Runs a command that must succeed (setup steps).
fn must_run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PEM RSA host key at `path` (ProFTPD reads only PEM); returns the public
/// key line (`ssh-rsa AAAA...`).
fn pem_host_key(path: &Path) -> String {
    must_run(
        Command::new("ssh-keygen")
            .args(["-q", "-m", "PEM", "-t", "rsa", "-b", "2048", "-N", ""])
            .arg("-C")
            .arg("coupafs-test-host")
            .arg("-f")
            .arg(path),
    );
    let pub_line = fs::read_to_string(path.with_extension("pub")).expect("read host public key");
    pub_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_known_hosts(path: &Path, port: u16, key_line: &str) {
    fs::write(
        path,
        format!("[127.0.0.1]:{port} {key_line}\n[localhost]:{port} {key_line}\n"),
    )
    .expect("write known_hosts");
}

/// Spawns `cmd` (a foreground daemon) on a fresh free port until one
/// accepts connections; `build` makes the command for a port (and writes its
/// configuration). Returns the child and its port.
fn spawn_on_free_port(
    kind: ServerKind,
    log_file: &Path,
    mut build: impl FnMut(u16) -> Command,
) -> (Child, u16) {
    for _attempt in 0..5 {
        let port = free_port();
        let mut cmd = build(port);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .expect("open server log");
        let log2 = log.try_clone().expect("dup server log");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} for {}: {e}", kind.name()));
        let up = wait_until(START_TIMEOUT, || {
            port_accepts(port) || !matches!(child.try_wait(), Ok(None))
        });
        if up && pid_alive(child.id()) && port_accepts(port) {
            return (child, port);
        }
        // Most likely the port was taken between probe and bind: try another.
        stop_child(&mut child);
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} did not start listening:\n{}",
        kind.name(),
        tail(&fs::read_to_string(log_file).unwrap_or_default(), 30)
    );
}

/// The files of a daemon this module spawns itself (ProFTPD, rclone): a
/// fresh temp dir with the account, client key and tree (`prepare`) and a
/// PEM RSA host key `host_rsa_key`, which both daemons read.
struct DaemonDir {
    dir: TempDir,
    user: String,
    root: PathBuf,
    key: PathBuf,
    password_file: PathBuf,
    host_pub: String,
}

impl DaemonDir {
    fn new(prefix: &str) -> DaemonDir {
        let dir = traversable_tempdir(prefix);
        let (user, root, key, password_file) = prepare(dir.path());
        let host_pub = pem_host_key(&dir.path().join("host_rsa_key"));
        DaemonDir {
            dir,
            user,
            root,
            key,
            password_file,
            host_pub,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The [`Server`] for `child` listening on `port` (known_hosts written
    /// for the host key), with `log_file` as its log. Both daemons serve
    /// the tree as the root of the SFTP namespace, `/`.
    fn into_server(self, kind: ServerKind, child: Child, port: u16, log_file: PathBuf) -> Server {
        let known_hosts = self.dir.path().join("known_hosts");
        write_known_hosts(&known_hosts, port, &self.host_pub);
        Server {
            kind,
            host: "127.0.0.1".into(),
            port,
            user: self.user,
            identity_file: self.key,
            password_file: self.password_file,
            known_hosts,
            root: self.root,
            remote_root: "/".into(),
            log_file,
            daemon: Daemon::Child(child),
            dir: Some(self.dir),
        }
    }
}

fn start_proftpd(kind: ServerKind) -> Server {
    let daemon = DaemonDir::new("coupafs-proftpd-");
    let d = daemon.path().to_path_buf();
    let (user, root, key) = (&daemon.user, &daemon.root, &daemon.key);
    // mod_sftp reads authorized keys in RFC 4716 format, one file per user.
    let authorized = d.join("authorized");
    fs::create_dir(&authorized).expect("mkdir authorized");
    let rfc4716 = must_run(
        Command::new("ssh-keygen")
            .arg("-e")
            .arg("-f")
            .arg(key.with_extension("pub")),
    );
    fs::write(authorized.join(user), rfc4716).expect("write authorized key");
    let log_file = d.join("proftpd.log");
    let sftp_log = d.join("sftp.log");

    let extensions = match kind {
        ServerKind::ProftpdStock => "",
        _ => "  SFTPExtensions -posixRename -fsync -hardlink -statvfs\n",
    };
    let store_restart = if kind == ServerKind::ProftpdNoExtensionsStoreRestart {
        "AllowStoreRestart on\n"
    } else {
        ""
    };
    let conf = d.join("proftpd.conf");
    let (child, port) = spawn_on_free_port(kind, &log_file, |port| {
        // DefaultRoot: the account's home (/nonexistent) cannot be entered,
        // and ProFTPD then starts sessions in the chroot instead; clients
        // see the tree as `/`.
        let text = format!(
            "# coupafs test server (tests/common/servers.rs)
ServerType standalone
ServerName \"coupafs test\"
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
UseReverseDNS off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
RequireValidShell off
<IfModule mod_auth_pam.c>
  AuthPAM off
</IfModule>
AuthOrder mod_auth_unix.c
User nobody
Group nogroup
PidFile {d}/proftpd.pid
ScoreboardFile {d}/proftpd.scoreboard
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
SystemLog {log}
TransferLog none
WtmpLog off
Umask 022
MaxInstances 200
AllowOverwrite on
{store_restart}DefaultRoot {root}
ModulePath /usr/lib/proftpd
LoadModule mod_sftp.c
<IfModule mod_sftp.c>
  SFTPEngine on
  SFTPLog {sftp_log}
  SFTPHostKey {d}/host_rsa_key
  SFTPAuthorizedUserKeys file:{authorized}/%u
  SFTPAuthMethods publickey password
{extensions}</IfModule>
",
            d = d.display(),
            log = log_file.display(),
            root = root.display(),
            sftp_log = sftp_log.display(),
            authorized = authorized.display(),
        );
        fs::write(&conf, text).expect("write proftpd.conf");
        let mut cmd = Command::new("proftpd");
        cmd.arg("-n").arg("-c").arg(&conf);
        cmd
    });
    // mod_sftp logs each SFTP request and its outcome in `sftp_log`.
    daemon.into_server(kind, child, port, sftp_log)
}

fn start_rclone() -> Server {
    let kind = ServerKind::Rclone;
    let daemon = DaemonDir::new("coupafs-rclone-");
    let d = daemon.path().to_path_buf();
    let root = &daemon.root;
    let log_file = d.join("rclone.log");
    let (child, port) = spawn_on_free_port(kind, &log_file, |port| {
        let mut cmd = Command::new("rclone");
        cmd.args(["serve", "sftp"])
            .arg(root)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--key")
            .arg(d.join("host_rsa_key"))
            .arg("--authorized-keys")
            .arg(d.join("authorized_keys"))
            .args(["--vfs-cache-mode", "off"])
            .arg("--config")
            .arg(d.join("rclone.conf"))
            .arg("--cache-dir")
            .arg(d.join("rclone-cache"))
            .arg("-v");
        cmd
    });
    daemon.into_server(kind, child, port, log_file)
}

/// gesftpserver's program (Debian installs it under /usr/libexec).
fn gesftpserver_path() -> PathBuf {
    let out = must_run(Command::new("dpkg").args(["-L", "gesftpserver"]));
    out.lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "gesftpserver") && p.is_file())
        .expect("gesftpserver program (package gesftpserver, scripts/install-deps.sh)")
}

/// The sandbox sshd with `command(dir)` as its SFTP program.
fn start_under_sshd(kind: ServerKind, command: impl FnOnce(&Path) -> String) -> Server {
    let dir = traversable_tempdir("coupafs-sandbox-");
    let cmd = command(dir.path());
    fs::write(dir.path().join("sftp_command"), format!("{cmd}\n")).expect("write sftp_command");
    let sb = Sandbox::start_in(dir);
    Server {
        kind,
        host: "127.0.0.1".into(),
        port: sb.port,
        user: sb.user.clone(),
        identity_file: sb.key.clone(),
        password_file: sb.password_file.clone(),
        known_hosts: sb.known_hosts.clone(),
        root: sb.root.clone(),
        remote_root: sb.root.display().to_string(),
        log_file: sb.dir.path().join("sshd.log"),
        daemon: Daemon::Sshd(sb),
        dir: None,
    }
}
