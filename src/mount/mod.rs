//! The life of a mount: check and resolve the options, fork (daemon mode),
//! connect, mount, serve until a signal or an unmount, then `stop` — the
//! one shutdown path, whatever ended the mount.
//!
//! Startup order matters: parse and validate everything, read secrets, fork
//! (daemon mode) before any thread exists, then connect and mount in the
//! child, and let the parent exit only once the mount is live or has failed.

mod credentials;
mod daemon;
mod dirs;
mod show;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{self, MountOptions};
use crate::fs::{self, temp_name, Fs};
use crate::fuse::session::{self, Access, MountedSession, SessionOptions};
use crate::remote::{Remote, SftpRemote};
use crate::ssh::{CloseReason, ConnectParams, Pool};

pub use credentials::{connect_params, harden_process, take_env_password};
pub use show::show_status;

use credentials::absolute;
use daemon::{ShutdownSignals, StartupPipe};
use status::StatusFile;

/// How long the serving loop sleeps waiting for a signal before it looks
/// at the session and the status file again.
const POLL: Duration = Duration::from_millis(200);

/// Mounts as `opts` says and serves until unmounted or signalled. In daemon
/// mode the calling process exits inside (with the child's verdict); the
/// child returns here only after a clean stop.
pub fn run(mut opts: MountOptions) -> Result<(), String> {
    harden_process();
    crate::logging::init(opts.debug);
    crate::ssh::set_sftp_debug(opts.sftp_debug);
    // Before the fork, so that a refused file is reported on the terminal.
    if let Some(path) = &opts.log_file {
        crate::logging::to_file(&absolute(path))?;
    }
    // The daemon runs in "/": resolve relative local paths now.
    opts.spool_dir = opts.spool_dir.as_deref().map(absolute);
    log::debug!("{} starting", cli::version_text());
    if !opts.ignored.is_empty() {
        log::debug!("accepted and ignored: {}", opts.ignored.join(" "));
    }
    for n in &opts.no_ops {
        log::info!("option {} has no effect: {}", n.option, n.why);
    }
    if opts.allow_other && opts.no_default_permissions {
        log::warn!(
            "allow_other with no_default_permissions: the kernel does not check file modes, \
             so every local user reads and writes on the server with the rights of the SFTP \
             account"
        );
    }
    let mountpoint = absolute(&opts.mountpoint);
    match std::fs::metadata(&mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "mountpoint {} is not a directory",
                mountpoint.display()
            ))
        }
        Err(e) => return Err(format!("mountpoint {}: {e}", mountpoint.display())),
    }
    // Before the fork, so that a refused directory is reported on the
    // caller's terminal.
    let local = local_dirs(&opts)?;
    let params = connect_params(&opts)?;
    let mut pipe = if opts.foreground {
        StartupPipe::none()
    } else {
        daemon::daemonize()?
    };
    let daemon = pipe.is_waiting();
    let result = mount_and_serve(&opts, params, &mountpoint, &local, &mut pipe);
    if daemon {
        if let Err(e) = &result {
            // The parent prints the reason (it is still waiting on the pipe
            // if the mount never went live); the log gets it too.
            log::error!("{e}");
            pipe.report(&result);
            std::process::exit(1);
        }
    }
    pipe.report(&result);
    result
}

/// Everything `stop` shuts down.
struct Running<'a> {
    opts: &'a MountOptions,
    mountpoint: &'a Path,
    pool: Arc<Pool>,
    fs: Arc<Fs<SftpRemote>>,
    session: MountedSession,
    status: StatusFile,
}

/// Why the mount is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// SIGTERM, SIGINT or SIGHUP: the mount is still live.
    Signal(i32),
    /// Unmounted from outside (umount, fusermount -u): the session ended.
    Unmounted,
}

/// The local directories a mount writes in, verified (see `dirs`).
struct LocalDirs {
    spool: PathBuf,
    status: PathBuf,
}

/// Creates or verifies the spool and status directories.
fn local_dirs(opts: &MountOptions) -> Result<LocalDirs, String> {
    let spool = match &opts.spool_dir {
        Some(p) => {
            let p = absolute(p);
            dirs::ensure(&p, dirs::Access::Private, true, "spool dir")?;
            p
        }
        None => dirs::default_spool_dir()?,
    };
    Ok(LocalDirs {
        spool,
        status: dirs::status_dir()?,
    })
}

fn mount_and_serve(
    opts: &MountOptions,
    params: ConnectParams,
    mountpoint: &Path,
    local: &LocalDirs,
    pipe: &mut StartupPipe,
) -> Result<(), String> {
    // Blocked before any thread starts, so every thread inherits the mask
    // and only the main thread (in `serve`) sees the signals.
    let signals = ShutdownSignals::block();

    let pool = Pool::new(params, opts.max_conns);
    let (remote, remote_root) = if opts.delay_connect {
        delayed_remote(opts, &pool)
    } else {
        let first = pool.connect_first().map_err(|e| e.to_string())?;
        log_connected(&pool, &first);
        let remote = Arc::new(SftpRemote::new(pool.clone(), &first, opts.op_timeout));
        drop(first);
        let remote_root = resolve_root(remote.as_ref(), &opts.target.remote_dir)?;
        (remote, remote_root)
    };

    let filesystem = Fs::new(
        remote,
        fs_config(opts, remote_root.clone(), local.spool.clone()),
    );
    let session = session::mount(filesystem.clone(), mountpoint, &session_options(opts))?;
    log::info!(
        "mounted {}:{} on {}",
        opts.target.host,
        String::from_utf8_lossy(&remote_root),
        mountpoint.display()
    );
    if pipe.is_waiting() {
        pipe.report(&Ok(()));
        daemon::redirect_stdio_to_null();
    }
    daemon::sd_notify(&format!(
        "READY=1\nSTATUS=mounted on {}\nMAINPID={}",
        mountpoint.display(),
        std::process::id()
    ));

    {
        let fs = filesystem.clone();
        let _ = std::thread::Builder::new()
            .name("stale-temp-sweep".into())
            .spawn(move || fs.sweep_stale_temps());
    }
    let status = StatusFile::new(&local.status, mountpoint, &opts.target, opts.port);
    log::info!("status: {}", status.path().display());

    let running = Running {
        opts,
        mountpoint,
        pool,
        fs: filesystem,
        session,
        status,
    };
    let ending = serve(&running, &signals);
    stop(running, ending);
    Ok(())
}

/// The `connected to ...` line, at the first connection.
fn log_connected(pool: &Pool, first: &crate::ssh::Connection) {
    let p = pool.params();
    log::info!(
        "connected to {}:{} as {} ({}, host key {} {})",
        p.host,
        p.port,
        p.user,
        first.info.auth_method,
        first.info.host_key_fingerprint,
        first.info.host_key_status
    );
}

/// `delay_connect`: the remote and its root without a connection. The
/// pool connects in the background (with backoff) until the server
/// answers; meanwhile each operation waits at most `timeout` and fails
/// with EIO (`RemoteError::Unreachable`, see `error`). The root cannot be
/// resolved (realpath) or checked without the server, so it is taken as
/// given: an absolute folder as is, else relative to the login directory,
/// as SFTP servers resolve relative paths (draft-ietf-secsh-filexfer-02
/// section 6.2: relative to the user's default directory).
fn delayed_remote(opts: &MountOptions, pool: &Arc<Pool>) -> (Arc<SftpRemote>, Vec<u8>) {
    let remote = Arc::new(SftpRemote::new_delayed(pool.clone(), opts.op_timeout));
    let dir = opts.target.remote_dir.trim_end_matches('/');
    let root = match dir {
        "" if opts.target.remote_dir.starts_with('/') => b"/".to_vec(),
        "" => b".".to_vec(),
        d => d.as_bytes().to_vec(),
    };
    let shown = String::from_utf8_lossy(&root).into_owned();
    let p = pool.params();
    log::info!(
        "delay_connect: mounting before connecting to {}:{}; operations fail with EIO after \
         {} s while the server is unreachable",
        p.host,
        p.port,
        opts.op_timeout.as_secs()
    );
    {
        let weak = Arc::downgrade(pool);
        pool.connect_in_background_until_up(move |conn| {
            if let Some(pool) = weak.upgrade() {
                log_connected(&pool, conn);
            }
        });
    }
    if !root.starts_with(b"/") {
        log::info!(
            "delay_connect: remote folder '{shown}' is relative to the login directory; \
             absolute symlink targets are shown blocked (give an absolute folder to keep them)"
        );
    }
    (remote, root)
}

/// Waits for a shutdown signal or for the session to end (umount),
/// rewriting the status file meanwhile.
fn serve(running: &Running, signals: &ShutdownSignals) -> Ending {
    let mut last_status: Option<Instant> = None;
    loop {
        if running.session.has_ended() {
            return Ending::Unmounted;
        }
        if last_status.is_none_or(|t| t.elapsed() >= status::INTERVAL) {
            running.status.write(
                &running.pool.status(),
                &status::Uploads {
                    open_writers: running.fs.open_writers(),
                    pending: running.fs.pending_uploads(),
                },
            );
            last_status = Some(Instant::now());
        }
        if let Some(sig) = signals.wait(POLL) {
            return Ending::Signal(sig);
        }
    }
}

/// The one shutdown path. The order:
/// 1. tell systemd we are stopping;
/// 2. on a signal, give files still open for writing up to `op_timeout` to
///    be closed (they can only close through the live mount, and a file
///    is published at close);
/// 3. publish what was closed and wait for the uploads in flight; files
///    still open are not published (Coupa must never see a partial file);
/// 4. stop the write-behind workers and remove the spare temp files (this
///    needs the connections, so before step 6);
/// 5. unmount (lazily if the mount is busy) if the mount at the path is
///    still the one this process made (not after an outside umount, and
///    never a newer mount there), and join the serving threads;
/// 6. close the SSH connections;
/// 7. remove the status file if it is still ours, last, so that while it
///    exists a monitor can see the mount still working.
fn stop(running: Running, ending: Ending) {
    let Running {
        opts,
        mountpoint,
        pool,
        fs,
        session,
        status,
    } = running;
    daemon::sd_notify("STOPPING=1");
    if let Ending::Signal(sig) = ending {
        let grace = opts.op_timeout;
        let deadline = Instant::now() + grace;
        log::info!(
            "signal {sig}: waiting up to {} s for {} file(s) still open for writing, then unmounting",
            grace.as_secs(),
            fs.open_writers()
        );
        while fs.open_writers() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Each step's duration at debug level: a slow shutdown says where.
    let step = |what: &str, since: Instant| {
        log::debug!("stop: {what} took {} ms", since.elapsed().as_millis());
        Instant::now()
    };
    let t = Instant::now();
    let left = fs.shutdown_uploads();
    if left > 0 {
        log::error!("{left} file(s) could not be published before unmount");
    }
    let t = step("publishing and removing temps", t);
    fs.shutdown();
    let t = step("stopping the workers", t);
    session.unmount();
    let t = step("unmounting", t);
    pool.close_all(CloseReason::Unmount);
    step("closing the connections", t);
    status.remove();
    log::info!("unmounted {}", mountpoint.display());
}

/// The session settings `opts` asks for.
fn session_options(opts: &MountOptions) -> SessionOptions {
    let fsname = opts.fsname.clone().unwrap_or_else(|| {
        format!(
            "{}{}:{}",
            opts.target
                .user
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            opts.target.host,
            opts.target.remote_dir
        )
    });
    let access = if opts.allow_other {
        Access::All
    } else if opts.allow_root {
        Access::RootAndOwner
    } else {
        Access::Owner
    };
    SessionOptions {
        fsname,
        read_only: opts.read_only,
        default_permissions: opts.default_permissions,
        access,
        threads: opts.threads,
        auto_unmount: opts.auto_unmount,
    }
}

/// The filesystem settings `opts` asks for, with the mount's remote root.
fn fs_config(opts: &MountOptions, remote_root: Vec<u8>, spool_dir: PathBuf) -> fs::FsConfig {
    let upload_dir = opts
        .upload_dir
        .as_ref()
        .map(|d| upload_dir_path(&remote_root, d));
    fs::FsConfig {
        remote_root,
        // SAFETY: getuid/getgid cannot fail.
        uid: opts.uid.unwrap_or_else(|| unsafe { libc::getuid() }),
        gid: opts.gid.unwrap_or_else(|| unsafe { libc::getgid() }),
        umask: opts.umask,
        read_only: opts.read_only,
        strict_setstat: opts.strict_setstat,
        naming: temp_name::TempNaming {
            prefix: opts.temp_prefix.as_bytes().to_vec(),
            upload_dir,
        },
        spool_dir,
        cache_ttl: opts.cache_timeout,
        contain_symlinks: opts.contain_symlinks,
        spool_max: opts.spool_max_bytes,
        spare_temps: opts.spare_temps,
    }
}

/// `upload_dir` as a remote path: absolute as given, else under the root.
fn upload_dir_path(remote_root: &[u8], dir: &str) -> Vec<u8> {
    if dir.starts_with('/') {
        return dir.as_bytes().to_vec();
    }
    let mut p = remote_root.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(dir.as_bytes());
    p
}

/// The absolute remote directory to mount; it must exist.
fn resolve_root(remote: &SftpRemote, dir: &str) -> Result<Vec<u8>, String> {
    let wanted = if dir.is_empty() { "." } else { dir };
    let abs = remote
        .realpath(wanted.as_bytes())
        .map_err(|e| format!("remote folder '{wanted}': {e}"))?;
    match remote.stat(&abs) {
        Ok(a) if a.is_dir() => Ok(abs),
        Ok(_) => Err(format!(
            "remote folder '{}' is not a directory",
            String::from_utf8_lossy(&abs)
        )),
        Err(e) => Err(format!(
            "remote folder '{}': {e}",
            String::from_utf8_lossy(&abs)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(extra: &[&str]) -> MountOptions {
        let mut args: Vec<String> = vec![
            "coupafs".into(),
            "acme@sftp.example.com:/x".into(),
            "/mnt".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        match cli::parse(&args) {
            Ok(cli::Invocation::Mount(o)) => o,
            other => panic!("not a mount: {other:?}"),
        }
    }

    #[test]
    fn fsname_defaults_to_the_target_and_can_be_set() {
        assert_eq!(
            session_options(&opts(&[])).fsname,
            "acme@sftp.example.com:/x"
        );
        assert_eq!(
            session_options(&opts(&["-o", "fsname=coupa-prod"])).fsname,
            "coupa-prod"
        );
    }

    #[test]
    fn allow_other_wins_over_allow_root() {
        assert_eq!(session_options(&opts(&[])).access, Access::Owner);
        assert_eq!(
            session_options(&opts(&["-o", "allow_root"])).access,
            Access::RootAndOwner
        );
        assert_eq!(
            session_options(&opts(&["-o", "allow_other"])).access,
            Access::All
        );
    }

    #[test]
    fn read_only_and_default_permissions_reach_the_session() {
        let s = session_options(&opts(&["-o", "ro,default_permissions"]));
        assert!(s.read_only && s.default_permissions, "{s:?}");
        let s = session_options(&opts(&[]));
        assert!(!s.read_only && !s.default_permissions, "{s:?}");
        assert!(session_options(&opts(&["-o", "allow_other"])).default_permissions);
        let s = session_options(&opts(&["-o", "allow_other,no_default_permissions"]));
        assert!(s.access == Access::All && !s.default_permissions, "{s:?}");
    }

    #[test]
    fn relative_upload_dir_is_under_the_remote_root() {
        assert_eq!(
            upload_dir_path(b"/home/acme", ".staging"),
            b"/home/acme/.staging"
        );
        assert_eq!(upload_dir_path(b"/", "up"), b"/up");
        assert_eq!(upload_dir_path(b"/home/acme", "/tmp/up"), b"/tmp/up");
    }

    #[test]
    fn fs_config_takes_ids_and_upload_dir_from_the_options() {
        let c = fs_config(
            &opts(&["-o", "uid=1234,gid=99,upload_dir=stage"]),
            b"/r".to_vec(),
            PathBuf::from("/spool"),
        );
        assert_eq!((c.uid, c.gid), (1234, 99));
        assert_eq!(c.naming.upload_dir.as_deref(), Some(&b"/r/stage"[..]));
        assert_eq!(c.spool_dir, PathBuf::from("/spool"));
        assert_eq!(c.remote_root, b"/r");
    }
}
