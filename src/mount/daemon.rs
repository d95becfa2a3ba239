//! The process side of a mount: fork into a daemon (the parent waits on a
//! startup pipe and exits with the child's verdict), detach stdio, tell
//! systemd about our state (sd_notify), and the shutdown signals the main
//! thread waits for.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use crate::logging;

/// Daemon mode: the parent waits on this pipe for "ok" or an error text.
pub(crate) struct StartupPipe {
    write: Option<OwnedFd>,
}

impl StartupPipe {
    /// Foreground mode: nobody waits, reports go nowhere.
    pub(crate) fn none() -> Self {
        Self { write: None }
    }

    /// True while a parent still waits for the verdict.
    pub(crate) fn is_waiting(&self) -> bool {
        self.write.is_some()
    }

    /// Sends the verdict once; later calls do nothing.
    pub(crate) fn report(&mut self, result: &Result<(), String>) {
        if let Some(fd) = self.write.take() {
            let mut f = std::fs::File::from(fd);
            let msg = match result {
                Ok(()) => "ok",
                Err(e) => e.as_str(),
            };
            let _ = f.write_all(msg.as_bytes());
        }
    }
}

/// Forks: the parent waits for the child's report and exits with it; the
/// child returns the pipe to report on. Must run before any thread exists
/// (fork copies only the calling thread).
pub(crate) fn daemonize() -> Result<StartupPipe, String> {
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
            if logging::file_fd().is_some() {
                log::debug!("daemon (pid {}) logging to log_file", std::process::id());
            } else {
                match logging::to_syslog() {
                    Ok(path) => log::debug!(
                        "daemon (pid {}) logging to syslog through {}",
                        std::process::id(),
                        path.display()
                    ),
                    // Still the caller's stderr: say where the messages go.
                    Err(e) => eprintln!(
                        "coupafs: warning: {e}; the daemon's log is lost once the mount is live \
                         (use -o log_file=PATH, run with -f under systemd, or set \
                         COUPAFS_SYSLOG_SOCKET)"
                    ),
                }
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

/// Once the mount is live and the parent has gone, stdio points at
/// /dev/null, so a closed terminal cannot make a write fail (EPIPE/EIO);
/// stderr points at the log file instead when `log_file=` is set, so a
/// panic message is kept.
pub(crate) fn redirect_stdio_to_null() {
    let null = c"/dev/null";
    // SAFETY: open a constant path, dup2 onto the standard fds; the log
    // file's fd stays open for the life of the process (the logger owns it).
    unsafe {
        let fd = libc::open(null.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(logging::file_fd().unwrap_or(fd), 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Tells systemd (Type=notify units) about our state: a datagram to
/// $NOTIFY_SOCKET, a path or an abstract socket (`@name`). No-op without it.
pub(crate) fn sd_notify(state: &str) {
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

/// SIGTERM, SIGINT and SIGHUP, blocked in every thread so that only the
/// main thread sees them (with `wait`) and shuts down in order.
pub(crate) struct ShutdownSignals {
    set: libc::sigset_t,
}

impl ShutdownSignals {
    /// Blocks the signals in the calling thread; threads started after this
    /// inherit the mask, so call it before any thread exists.
    pub(crate) fn block() -> Self {
        // SAFETY: plain signal-set manipulation on a local set; sigset_t is
        // a plain C struct for which all-zero is a valid value.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Self { set }
        }
    }

    /// Waits up to `timeout` for one of the signals; its number if one came.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<i32> {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: waits on the blocked set with a timeout.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        (sig > 0).then_some(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_pipe_reports_once_and_foreground_reports_nowhere() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds on success.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds are fresh and owned here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut pipe = StartupPipe {
            write: Some(write_end),
        };
        assert!(pipe.is_waiting());
        pipe.report(&Err("remote folder 'x': no such file".into()));
        assert!(!pipe.is_waiting());
        // A second verdict must not reach the parent: it already exited.
        pipe.report(&Ok(()));
        let mut got = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut got)
            .expect("read pipe");
        assert_eq!(got, "remote folder 'x': no such file");

        let mut none = StartupPipe::none();
        assert!(!none.is_waiting());
        none.report(&Ok(()));
    }

    #[test]
    fn sd_notify_sends_the_state_to_notify_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        // Tests share the environment: this is the only test that sets
        // NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        sd_notify("READY=1\nSTATUS=test");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = sock.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");
    }
}
