//! Credentials and connection parameters for a mount (and for `coupafs
//! check`): the password taken out of the environment and wiped, password
//! and passphrase files that only their owner may read, and the
//! `ConnectParams` built from the command line plus the ssh config file.
//! Secrets are read before any fork, so a daemon needs no environment and
//! no child ever inherits the password.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cli::{sshconfig, MountOptions, ProxySetting};
use crate::ssh::{self, ConnectParams, Reach, Route, Secret};

/// The environment variable the password may come from.
const PASSWORD_ENV: &str = "COUPAFS_PASSWORD";

/// The password from `COUPAFS_PASSWORD`, taken out of the environment by
/// `take_env_password` first thing in `main`.
static ENV_PASSWORD: OnceLock<Option<Secret>> = OnceLock::new();

extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// Makes the process non-dumpable (prctl PR_SET_DUMPABLE 0): no core file
/// holds its secrets, and other users (even the same uid without
/// CAP_SYS_PTRACE) can neither ptrace it nor read /proc/PID/environ, mem or
/// maps. Kept across fork, so calling it first thing in `main` covers the
/// daemon too; `run` calls it again for library users.
pub fn harden_process() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        log::warn!(
            "prctl(PR_SET_DUMPABLE, 0): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Takes `COUPAFS_PASSWORD` out of the environment (wiping it) and keeps
/// it for `connect_params`. Call first thing in `main`, before any other
/// thread exists: it edits the environment block in place.
pub fn take_env_password() {
    let _ = ENV_PASSWORD.set(take_env_secret(PASSWORD_ENV).map(Secret::new));
}

/// Takes `name` out of the environment and wipes its bytes in place.
/// `remove_var` alone is not enough: /proc/PID/environ shows the memory of
/// the environment block the process started with, and unsetenv(3) only
/// drops the pointer to the string, not the string. Zeroing the string
/// itself makes the value unreadable there (and in a core dump). Must run
/// before any other thread exists.
fn take_env_secret(name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let mut entries: Vec<*mut libc::c_char> = Vec::new();
    let mut value = None;
    // SAFETY: single-threaded here; environ is a NULL-terminated array of
    // NUL-terminated strings owned by this process.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = CStr::from_ptr(*p).to_bytes();
            if let Some(v) = entry.strip_prefix(prefix.as_bytes()) {
                if value.is_none() {
                    value = Some(String::from_utf8_lossy(v).into_owned());
                }
                entries.push(*p);
            }
            p = p.add(1);
        }
    }
    if entries.is_empty() {
        return None;
    }
    std::env::remove_var(name);
    for entry in entries {
        // SAFETY: each pointer is a writable NUL-terminated string (the
        // initial block on the stack, or one that setenv allocated and
        // never frees); no pointer to it remains in environ.
        unsafe {
            let len = libc::strlen(entry);
            std::ptr::write_bytes(entry, 0, len);
        }
    }
    value
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            // SAFETY: getpwuid returns a pointer into static storage or null.
            let pw = unsafe { libc::getpwuid(libc::getuid()) };
            if pw.is_null() {
                return None;
            }
            // SAFETY: pw_dir of a non-null passwd entry is a C string.
            let dir = unsafe { CStr::from_ptr((*pw).pw_dir) };
            Some(PathBuf::from(dir.to_string_lossy().into_owned()))
        })
}

fn local_user_name() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: as in home_dir.
    let pw = unsafe { libc::getpwuid(libc::getuid()) };
    if pw.is_null() {
        return "root".into();
    }
    // SAFETY: pw_name of a non-null passwd entry is a C string.
    unsafe { CStr::from_ptr((*pw).pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// Reads a secret from a file that only its owner may read (like ssh with
/// private keys: a secret others can read is refused, not used).
///
/// The file is opened once, without following a symlink (O_NOFOLLOW: a
/// link could point a root mount at any file), and the checks are made
/// with fstat on that open descriptor, which is then read: there is no gap
/// between check and use in which the path could be swapped. It must be a
/// regular file, owned by the running user (or root), with no group or
/// other permission bits.
fn read_secret_file(path: &Path, what: &str) -> Result<Secret, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO planted there must not block the open; it is
        // refused below as not a regular file.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "{what} file {shown} is a symbolic link; refusing it (name the file itself)"
            ),
            _ => format!("cannot read {what} file {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what} file {shown} is not a regular file"));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{what} file {shown} is owned by uid {}, not by you (uid {me}) or root; refusing it",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} file {shown} is readable by group or others (mode {:o}); run chmod 600 on it",
            mode & 0o777
        ));
    }
    // Sized up front so the buffer is not reallocated (which would leave
    // copies of the secret in freed memory).
    let mut bytes = Vec::with_capacity(meta.len().min(1 << 20) as usize + 1);
    let read = Read::by_ref(&mut file)
        .take(1 << 20)
        .read_to_end(&mut bytes);
    let len = bytes.len();
    let secret = Secret::from_utf8(bytes);
    read.map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    let secret = secret.ok_or_else(|| format!("{what} file {shown} is not valid UTF-8"))?;
    let trimmed = secret.expose().trim_end_matches(['\n', '\r']).len();
    if trimmed == len {
        return Ok(secret);
    }
    Ok(Secret::new(secret.expose()[..trimmed].to_string()))
}

/// `p` made absolute against the current directory: the daemon runs in
/// "/", so every relative local path is resolved before the fork.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Builds connection parameters; reads secrets now so that a daemon needs
/// no environment (and children never inherit the password).
pub fn connect_params(opts: &MountOptions) -> Result<ConnectParams, String> {
    let home = home_dir();
    // The ssh config file fills in what the command line did not give.
    let mut opts = opts.clone();
    let local_user = local_user_name();
    let applied = sshconfig::apply(&mut opts, home.as_deref(), &local_user)?;
    if let Some(file) = &applied.file {
        log::debug!(
            "read ssh config {} for {}: HostName {}, Port {}, User {}",
            file.display(),
            opts.target.host,
            applied.host_name.as_deref().unwrap_or("(none)"),
            opts.port,
            opts.target.user.as_deref().unwrap_or("(none)")
        );
    }
    let opts = &opts;
    let password = match &opts.password_file {
        Some(p) => Some(read_secret_file(&absolute(p), "password")?),
        // Taken out of the environment (and wiped) at the start of main, so
        // it never reaches a child's environment or /proc/PID/environ.
        None => ENV_PASSWORD.get().cloned().flatten(),
    };
    let passphrase = match &opts.passphrase_file {
        Some(p) => Some(read_secret_file(&absolute(p), "passphrase")?),
        None => None,
    };
    let mut identity_files: Vec<PathBuf> =
        opts.identity_files.iter().map(|p| absolute(p)).collect();
    if identity_files.is_empty() {
        if let Some(h) = &home {
            identity_files = ssh::default_identity_files(h);
        }
    }
    let known_hosts = match &opts.known_hosts_file {
        Some(p) => absolute(p),
        None => home
            .clone()
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".ssh/known_hosts"),
    };
    let params = ConnectParams {
        host: applied
            .host_name
            .unwrap_or_else(|| opts.target.host.clone()),
        port: opts.port,
        user: opts.target.user.clone().unwrap_or(local_user),
        identity_files,
        password,
        passphrase,
        use_agent: true,
        known_hosts,
        global_known_hosts: opts
            .global_known_hosts_files
            .clone()
            .unwrap_or_else(|| vec![PathBuf::from(ssh::GLOBAL_KNOWN_HOSTS)]),
        host_key_policy: opts.host_key_policy,
        host_key_fingerprint: opts.host_key_fingerprint.clone(),
        connect_timeout: opts.connect_timeout,
        keepalive_interval: opts.server_alive_interval,
        keepalive_count_max: opts.server_alive_count_max,
        reply_timeout: opts.op_timeout,
        algorithms: opts.algorithms.clone(),
        auth: opts.ssh_auth.resolve(),
        reach: reach(opts, &|k| std::env::var(k).ok())?,
    };
    // Secrets print as <redacted>.
    log::debug!("connection settings: {params:?}");
    Ok(params)
}

/// The route to the server: at most one of ProxyCommand, ProxyJump and
/// proxy= (after the ssh config file filled in what the command line left
/// open). `proxy=env` reads `all_proxy`, then `https_proxy` (lowercase
/// first, as curl); `no_proxy=` or else the `no_proxy` variable lists hosts
/// that bypass an HTTP/SOCKS5 proxy.
fn reach(opts: &MountOptions, env: &dyn Fn(&str) -> Option<String>) -> Result<Reach, String> {
    let r = &opts.reach;
    let enabled = |v: &Option<String>| {
        v.as_deref()
            .filter(|c| !c.eq_ignore_ascii_case("none"))
            .map(str::to_string)
    };
    let command = enabled(&r.proxy_command);
    let jump = enabled(&r.proxy_jump);
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
    };
    let server = match &r.proxy {
        None | Some(ProxySetting::None) => None,
        Some(ProxySetting::Url(route)) => Some(route.clone()),
        Some(ProxySetting::Env) => {
            match var(&["all_proxy", "ALL_PROXY", "https_proxy", "HTTPS_PROXY"]) {
                Some(url) => {
                    Some(ssh::parse_proxy_url(url.trim()).map_err(|e| format!("proxy=env: {e}"))?)
                }
                None => {
                    log::info!(
                        "proxy=env: neither all_proxy nor https_proxy is set; connecting directly"
                    );
                    None
                }
            }
        }
    };
    let given = [command.is_some(), jump.is_some(), server.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(
            "give only one of ProxyCommand=, ProxyJump= and proxy= (the ssh config file \
             may set ProxyCommand or ProxyJump; -o ProxyCommand=none ignores them)"
                .into(),
        );
    }
    let route = if let Some(c) = command {
        Route::Command(c)
    } else if let Some(hosts) = jump {
        Route::Jump {
            hosts,
            // The same ssh config for the jump host's ssh, when one was named.
            ssh_config: opts
                .ssh_config
                .as_deref()
                .filter(|p| p.as_os_str() != "none")
                .map(absolute),
        }
    } else {
        server.unwrap_or_default()
    };
    let no_proxy = match &r.no_proxy {
        Some(list) => list.clone(),
        None => var(&["no_proxy", "NO_PROXY"])
            .map(|v| crate::cli::split_no_proxy(&v))
            .unwrap_or_default(),
    };
    Ok(Reach {
        route,
        no_proxy,
        address_family: r.address_family.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reach_takes_one_route_and_reads_the_environment_only_when_asked() {
        let env = |k: &str| match k {
            "https_proxy" => Some("socks5://envproxy:1080".to_string()),
            "NO_PROXY" => Some("a.example, .corp".to_string()),
            _ => None,
        };
        let mut o = MountOptions::default();
        let r = reach(&o, &env).unwrap();
        assert_eq!(
            r.route,
            Route::Direct,
            "the environment alone changes nothing"
        );
        assert_eq!(r.no_proxy, ["a.example", ".corp"]);
        o.reach.proxy = Some(ProxySetting::Env);
        match reach(&o, &env).unwrap().route {
            Route::Socks5(p) => assert_eq!(p.host, "envproxy"),
            other => panic!("{other:?}"),
        }
        o.reach.no_proxy = Some(vec!["x".into()]);
        assert_eq!(reach(&o, &env).unwrap().no_proxy, ["x"]);
        o.reach.proxy_command = Some("nc %h %p".into());
        assert!(reach(&o, &env).unwrap_err().contains("only one of"));
        o.reach.proxy = Some(ProxySetting::None);
        assert_eq!(
            reach(&o, &env).unwrap().route,
            Route::Command("nc %h %p".into())
        );
        o.reach.proxy_command = Some("none".into());
        o.reach.proxy_jump = Some("j:2".into());
        o.ssh_config = Some(PathBuf::from("/etc/cfg"));
        assert_eq!(
            reach(&o, &env).unwrap().route,
            Route::Jump {
                hosts: "j:2".into(),
                ssh_config: Some(PathBuf::from("/etc/cfg"))
            }
        );
    }

    fn file_with(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write secret file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod secret file");
        path
    }

    #[test]
    fn private_secret_file_is_read_without_its_line_ending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file_with(dir.path(), "pw", "s3cret pass\r\n", 0o600);
        let secret = read_secret_file(&path, "password").expect("private file is read");
        assert_eq!(secret.expose(), "s3cret pass");
        // Only the trailing line ending goes: inner and leading spaces are
        // part of the password.
        let path = file_with(dir.path(), "pw2", " a b \n", 0o400);
        let secret = read_secret_file(&path, "password").expect("owner-only file is read");
        assert_eq!(secret.expose(), " a b ");
    }

    #[test]
    fn secret_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o640, 0o604, 0o644, 0o660] {
            let path = file_with(dir.path(), "pw", "x\n", mode);
            let err = read_secret_file(&path, "passphrase").expect_err("shared file refused");
            assert!(
                err.contains("passphrase file")
                    && err.contains("readable by group or others")
                    && err.contains(&format!("mode {mode:o}"))
                    && err.contains("chmod 600"),
                "mode {mode:o}: {err}"
            );
        }
    }

    #[test]
    fn a_symlink_to_a_secret_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = file_with(dir.path(), "pw", "x\n", 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = read_secret_file(&link, "password").expect_err("symlink refused");
        assert!(
            err.contains("password file") && err.contains("is a symbolic link"),
            "{err}"
        );
    }

    #[test]
    fn a_secret_file_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = read_secret_file(&sub, "password").expect_err("directory refused");
        assert!(err.contains("not a regular file"), "{err}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo with a valid C path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Refused without blocking on a writer.
        let err = read_secret_file(&fifo, "password").expect_err("fifo refused");
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_secret_file_owned_by_another_user_is_refused() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file_with(dir.path(), "pw", "x\n", 0o600);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
        let err = read_secret_file(&path, "password").expect_err("foreign owner refused");
        assert!(
            err.contains("owned by uid 65534") && err.contains("refusing it"),
            "{err}"
        );
    }

    #[test]
    fn a_secret_file_that_is_not_utf8_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, b"\xff\xfe\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = read_secret_file(&path, "password").expect_err("not UTF-8");
        assert!(err.contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn missing_secret_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent");
        let err = read_secret_file(&path, "password").expect_err("missing file refused");
        assert!(
            err.starts_with("cannot read password file") && err.contains("absent"),
            "{err}"
        );
    }

    #[test]
    fn harden_process_makes_the_process_non_dumpable() {
        // Run in a child so the test process itself stays dumpable.
        // SAFETY: the child only calls prctl and _exit.
        match unsafe { libc::fork() } {
            0 => {
                harden_process();
                // SAFETY: prctl with integer arguments only.
                let d = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
                // SAFETY: _exit skips the test harness's atexit handlers.
                unsafe { libc::_exit(d) };
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            pid => {
                let mut status = 0;
                // SAFETY: waits for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status));
                assert_eq!(libc::WEXITSTATUS(status), 0, "PR_GET_DUMPABLE in the child");
            }
        }
    }

    #[test]
    fn absolute_resolves_relative_paths_against_the_current_directory() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(absolute(Path::new("a/b")), cwd.join("a/b"));
        assert_eq!(absolute(Path::new("/x/y")), PathBuf::from("/x/y"));
    }
}
