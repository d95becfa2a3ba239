//! coupafs: mounts a Coupa SFTP exchange as a local directory.
//!
//! Startup order matters: parse and validate everything, read secrets, fork
//! (daemon mode) before any thread exists, then connect and mount in the
//! child, and let the parent exit only once the mount is live or has failed.

use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coupafs::cli::sshconfig;
use coupafs::cli::{self, Invocation, MountOptions};
use coupafs::fs::upload;
use coupafs::ssh::{self, ConnectParams, Pool, Secret};
use coupafs::{fs, fuse, logging, remote};

/// The password from `COUPAFS_PASSWORD`, taken out of the environment first
/// thing in `main`.
static ENV_PASSWORD: OnceLock<Option<Secret>> = OnceLock::new();

extern "C" {
    static mut environ: *mut *mut libc::c_char;
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

/// Tells systemd (Type=notify units) about our state: a datagram to
/// $NOTIFY_SOCKET, a path or an abstract socket (`@name`). No-op without it.
fn sd_notify(state: &str) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let sent = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        log::warn!(
            "cannot notify systemd through {}: {e}",
            path.to_string_lossy()
        );
    }
}

fn main() -> ExitCode {
    // Keeps the faster ChaCha20-Poly1305 primitives in the link (see
    // coupafs::ssh::crypto); black_box so the reference is not optimised out.
    std::hint::black_box(coupafs::ssh::crypto::link());
    let _ = ENV_PASSWORD.set(take_env_secret("COUPAFS_PASSWORD").map(Secret::new));
    let args: Vec<String> = std::env::args().collect();
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("coupafs: {e}");
            return ExitCode::from(1);
        }
    };
    match inv {
        Invocation::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Invocation::Version(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Invocation::Check(opts) => {
            init_logging(&opts);
            match connect_params(&opts) {
                Ok(params) => ExitCode::from(coupafs::check::run_check(&opts, params) as u8),
                Err(msg) => {
                    eprintln!("coupafs: {msg}");
                    ExitCode::from(2)
                }
            }
        }
        Invocation::Mount(opts) => match run_mount(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("coupafs: {msg}");
                ExitCode::from(1)
            }
        },
    }
}

fn init_logging(opts: &MountOptions) {
    logging::init(opts.debug);
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
            let dir = unsafe { std::ffi::CStr::from_ptr((*pw).pw_dir) };
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
    unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// Reads a secret from a file that only its owner may read.
fn read_secret_file(path: &Path, what: &str) -> Result<Secret, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{what} file {} is readable by group or others (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
}

fn absolute(p: &Path) -> PathBuf {
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
        host_key_policy: opts.host_key_policy,
        host_key_fingerprint: opts.host_key_fingerprint.clone(),
        connect_timeout: opts.connect_timeout,
        keepalive_interval: opts.server_alive_interval,
        keepalive_count_max: opts.server_alive_count_max,
        reply_timeout: opts.op_timeout,
    };
    // Secrets print as <redacted>.
    log::debug!("connection settings: {params:?}");
    Ok(params)
}

/// Daemon mode: the parent waits on this pipe for "ok" or an error text.
struct StartupPipe {
    write: Option<OwnedFd>,
}

impl StartupPipe {
    fn report(&mut self, result: &Result<(), String>) {
        if let Some(fd) = self.write.take() {
            let mut f = std::fs::File::from(fd);
            let msg = match result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            };
            let _ = f.write_all(msg.as_bytes());
        }
    }
}

/// Forks: the parent waits for the child's report and exits with it; the
/// child returns the pipe to report on.
fn daemonize() -> Result<StartupPipe, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds are fresh and owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no threads exist yet (called before connecting or mounting).
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: setsid in the new child detaches from the terminal;
            // chdir("/") keeps the daemon from holding a directory busy
            // (every path was made absolute before the fork).
            unsafe {
                libc::setsid();
                libc::chdir(c"/".as_ptr());
            }
            match logging::to_syslog() {
                Ok(path) => log::debug!(
                    "daemon (pid {}) logging to syslog through {}",
                    std::process::id(),
                    path.display()
                ),
                // Still the caller's stderr: say where the messages go.
                Err(e) => eprintln!(
                    "coupafs: warning: {e}; the daemon's log is lost once the mount is live \
                     (run with -f under systemd, or set COUPAFS_SYSLOG_SOCKET)"
                ),
            }
            Ok(StartupPipe {
                write: Some(write_end),
            })
        }
        _child => {
            drop(write_end);
            let mut msg = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
            if msg == "ok" {
                std::process::exit(0);
            }
            if msg.is_empty() {
                msg = "mount process exited before the mount was live".into();
            }
            eprintln!("coupafs: {msg}");
            std::process::exit(1);
        }
    }
}

fn redirect_stdio_to_null() {
    let null = c"/dev/null";
    // SAFETY: open a constant path, dup2 onto the standard fds.
    unsafe {
        let fd = libc::open(null.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn run_mount(mut opts: MountOptions) -> Result<(), String> {
    init_logging(&opts);
    // The daemon runs in "/": resolve relative local paths now.
    opts.spool_dir = opts.spool_dir.as_deref().map(absolute);
    log::debug!("{} starting", cli::version_text());
    if !opts.ignored.is_empty() {
        log::debug!("accepted and ignored: {}", opts.ignored.join(" "));
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
    let params = connect_params(&opts)?;
    let mut pipe = if opts.foreground {
        StartupPipe { write: None }
    } else {
        daemonize()?
    };
    let daemon = pipe.write.is_some();
    let result = mount_and_serve(&opts, params, &mountpoint, &mut pipe);
    if daemon {
        if let Err(e) = &result {
            // The parent prints the reason (it is still waiting on the pipe
            // if the mount never went live); the log gets it too.
            log::error!("{e}");
            pipe.report(&result.clone());
            std::process::exit(1);
        }
    }
    pipe.report(&result.as_ref().map(|_| ()).map_err(Clone::clone));
    result
}

fn mount_and_serve(
    opts: &MountOptions,
    params: ConnectParams,
    mountpoint: &Path,
    pipe: &mut StartupPipe,
) -> Result<(), String> {
    // Block the shutdown signals in every thread; the main thread waits
    // for them with sigtimedwait and shuts down in order.
    let mut sigs: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        libc::sigemptyset(&mut sigs);
        libc::sigaddset(&mut sigs, libc::SIGTERM);
        libc::sigaddset(&mut sigs, libc::SIGINT);
        libc::sigaddset(&mut sigs, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &sigs, std::ptr::null_mut());
    }

    let pool = Pool::new(params, opts.max_conns);
    let first = pool.connect_first().map_err(|e| e.to_string())?;
    log::info!(
        "connected to {}:{} as {} ({}, host key {} {})",
        pool.params().host,
        pool.params().port,
        pool.params().user,
        first.info.auth_method,
        first.info.host_key_fingerprint,
        first.info.host_key_status
    );
    let remote = Arc::new(remote::SftpRemote::new(
        pool.clone(),
        &first,
        opts.op_timeout,
    ));
    drop(first);
    let remote_root = resolve_root(remote.as_ref(), &opts.target.remote_dir)?;

    let spool_dir = opts
        .spool_dir
        .clone()
        .map(|p| absolute(&p))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("coupafs-spool-{}", unsafe { libc::getuid() }))
        });
    std::fs::create_dir_all(&spool_dir)
        .map_err(|e| format!("spool dir {}: {e}", spool_dir.display()))?;
    let _ = std::fs::set_permissions(&spool_dir, std::fs::Permissions::from_mode(0o700));

    let upload_dir = opts.upload_dir.as_ref().map(|d| {
        if d.starts_with('/') {
            d.as_bytes().to_vec()
        } else {
            let mut p = remote_root.clone();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(d.as_bytes());
            p
        }
    });
    let cfg = fs::FsConfig {
        remote_root: remote_root.clone(),
        // SAFETY: getuid/getgid cannot fail.
        uid: opts.uid.unwrap_or_else(|| unsafe { libc::getuid() }),
        gid: opts.gid.unwrap_or_else(|| unsafe { libc::getgid() }),
        umask: opts.umask,
        read_only: opts.read_only,
        strict_setstat: opts.strict_setstat,
        naming: upload::TempNaming {
            prefix: opts.temp_prefix.as_bytes().to_vec(),
            upload_dir,
        },
        spool_dir,
        cache_ttl: opts.cache_timeout,
        contain_symlinks: opts.contain_symlinks,
        spool_max: opts.spool_max_bytes,
        spare_temps: opts.spare_temps,
    };
    let filesystem = fs::Fs::new(remote.clone(), cfg);

    let mut config = fuser::Config::default();
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
    config.mount_options = vec![
        fuser::MountOption::FSName(fsname),
        // As a kernel option (fuser passes Subtype only to fusermount), so
        // that /proc/mounts shows the type fuse.coupafs, as in fstab.
        fuser::MountOption::CUSTOM("subtype=coupafs".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if opts.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    if opts.default_permissions {
        config
            .mount_options
            .push(fuser::MountOption::DefaultPermissions);
    }
    config.acl = if opts.allow_other {
        fuser::SessionACL::All
    } else if opts.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));

    let session = fuser::Session::new(
        fuse::FuseAdapter::new(filesystem.clone()),
        mountpoint,
        &config,
    )
    .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    if let Some(id) = coupafs::fs::caller::mount_id(mountpoint) {
        filesystem.set_mount_id(id);
    }
    let notifier = session.notifier();
    let (inval_tx, inval_rx) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
    filesystem.set_kernel_invalidations(inval_tx);
    let _ = std::thread::Builder::new()
        .name("kernel-notify".into())
        .spawn(move || {
            use std::os::unix::ffi::OsStrExt;
            for (parent, name) in inval_rx {
                let _ = notifier
                    .inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::from_bytes(&name));
            }
        });
    let background = session
        .spawn()
        .map_err(|e| format!("cannot start the FUSE session: {e}"))?;
    log::info!(
        "mounted {}:{} on {}",
        opts.target.host,
        String::from_utf8_lossy(&remote_root),
        mountpoint.display()
    );
    if pipe.write.is_some() {
        pipe.report(&Ok(()));
        redirect_stdio_to_null();
    }
    sd_notify(&format!(
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
    let status = StatusFile::new(mountpoint, &opts.target, opts.port);
    log::info!("status: {}", status.path.display());

    // Wait for a signal or for the session to end (umount).
    let mut last_status = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        if background.guard.is_finished() {
            break;
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            status.write(&pool.status(), filesystem.as_ref());
            last_status = std::time::Instant::now();
        }
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: waits on the blocked set with a timeout.
        let sig = unsafe { libc::sigtimedwait(&sigs, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            sd_notify("STOPPING=1");
            let grace = opts.op_timeout;
            let deadline = std::time::Instant::now() + grace;
            let writers = filesystem.open_writers();
            log::info!(
                "signal {sig}: waiting up to {} s for {writers} file(s) still open for writing, then unmounting",
                grace.as_secs()
            );
            while filesystem.open_writers() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let left = filesystem.shutdown_uploads();
            if left > 0 {
                log::error!("{left} file(s) could not be published before unmount");
            }
            filesystem.shutdown();
            if let Err(e) = background.umount_and_join() {
                log::warn!("unmount: {e}; detaching lazily");
                lazy_unmount(mountpoint);
            }
            pool.close_all("unmounted");
            status.remove();
            log::info!("unmounted {}", mountpoint.display());
            return Ok(());
        }
    }
    let _ = background.join();
    sd_notify("STOPPING=1");
    let left = filesystem.shutdown_uploads();
    if left > 0 {
        log::error!("{left} file(s) could not be published at unmount");
    }
    filesystem.shutdown();
    pool.close_all("unmounted");
    status.remove();
    log::info!("unmounted {}", mountpoint.display());
    Ok(())
}

fn lazy_unmount(mountpoint: &Path) {
    if let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 with a valid C path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// `/run/coupafs/<mountpoint>.status`: link state and uploads as
/// KEY=VALUE lines an admin (or a monitoring script) reads with `cat`.
struct StatusFile {
    path: PathBuf,
    header: String,
}

impl StatusFile {
    fn new(mountpoint: &Path, target: &cli::Target, port: u16) -> Self {
        let escaped: String = mountpoint
            .to_string_lossy()
            .trim_matches('/')
            .chars()
            .map(|c| if c == '/' { '-' } else { c })
            .collect();
        let name = if escaped.is_empty() {
            "-".to_string()
        } else {
            escaped
        };
        let base = if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/run/coupafs")
        } else {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(|d| PathBuf::from(d).join("coupafs"))
                .unwrap_or_else(|| std::env::temp_dir().join("coupafs"))
        };
        let _ = std::fs::create_dir_all(&base);
        let header = format!(
            "mountpoint={}\nserver={}{}:{}\nport={port}\npid={}\n",
            mountpoint.display(),
            target
                .user
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            target.host,
            target.remote_dir,
            std::process::id()
        );
        Self {
            path: base.join(format!("{name}.status")),
            header,
        }
    }

    fn write<R: remote::Remote>(&self, link: &ssh::PoolStatus, fs: &fs::Fs<R>) {
        let state = if link.connected > 0 {
            "connected"
        } else if link.reconnecting {
            "reconnecting"
        } else {
            "disconnected"
        };
        let text = format!(
            "{}state={state}\nconnections={}\nreconnects={}\nopen_writers={}\npending_uploads={}\nlast_error={}\nupdated={}\n",
            self.header,
            link.connected,
            link.reconnects,
            fs.open_writers(),
            fs.pending_uploads(),
            link.last_error.as_deref().unwrap_or(""),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        let tmp = self.path.with_extension("status.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The absolute remote directory to mount; it must exist.
fn resolve_root(remote: &remote::SftpRemote, dir: &str) -> Result<Vec<u8>, String> {
    use remote::Remote;
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
