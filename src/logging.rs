//! Where log records go. One logger for the whole process, installed once:
//!
//! * foreground (`-f`, `-d`): stderr through env_logger, with levels. Under
//!   systemd (stderr is the journal, `JOURNAL_STREAM` names it) each line
//!   starts with its syslog priority (`<3>` ...) instead of a timestamp, so
//!   the journal keeps the level.
//! * daemon: after the fork, [`to_syslog`] switches the same logger to the
//!   local syslog socket (`/dev/log`, else journald's syslog socket
//!   `/run/systemd/journal/dev-log`), facility daemon, tag `coupafs[PID]`.
//!   `COUPAFS_SYSLOG_SOCKET=PATH` names another datagram socket instead
//!   (tests bind one; it is also handy without a syslog daemon).
//!
//! * `-o log_file=PATH` ([`to_file`]): every record is appended to PATH
//!   instead (in either mode), with a timestamp and the level. The file is
//!   opened before the fork (so a refusal reaches the terminal), created
//!   0600, never through a symlink (O_NOFOLLOW); the daemon's stderr is
//!   pointed at it too, so a panic or a library's message is kept.
//!   A daemon without log_file and without a syslog socket says so on the
//!   terminal before it detaches (its records would be lost).
//!
//! Verbosity is the same everywhere: info by default, debug with `-d` /
//! `-o debug`, or any env_logger filter in `COUPAFS_LOG` (e.g. `debug`,
//! `coupafs=debug`), which also works for a daemon.
//!
//! No record may span lines: a server-supplied name or a local path with a
//! newline would otherwise forge a second record (journald and syslog split
//! on newlines). [`escape`] renders untrusted bytes for a message, and both
//! back ends pass every whole message through [`escape_controls`] as a last
//! safeguard.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use log::{Level, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// Overrides the syslog socket (a unix datagram socket path).
pub(crate) const SYSLOG_SOCKET_ENV: &str = "COUPAFS_SYSLOG_SOCKET";

/// Tried in order when `COUPAFS_SYSLOG_SOCKET` is not set.
pub(crate) const SYSLOG_SOCKETS: &[&str] = &["/dev/log", "/run/systemd/journal/dev-log"];

type SyslogLogger = syslog::Logger<LoggerBackend, Formatter3164>;

struct Syslog {
    path: PathBuf,
    logger: Option<SyslogLogger>,
}

struct Switch {
    /// Writes to stderr; also decides which records pass (levels, modules).
    stderr: env_logger::Logger,
    debug: bool,
    /// `log_file=`: when set, every record goes there and nowhere else.
    file: OnceLock<(env_logger::Logger, std::fs::File)>,
    use_syslog: AtomicBool,
    syslog: Mutex<Option<Syslog>>,
}

static LOGGER: OnceLock<&'static Switch> = OnceLock::new();

impl Switch {
    fn send_syslog(&self, record: &Record) -> bool {
        let mut guard = self.syslog.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_mut() else {
            return false;
        };
        let msg = escape_controls(&record.args().to_string()).into_owned();
        // One reconnect on failure: the syslog daemon may have restarted.
        for _ in 0..2 {
            if s.logger.is_none() {
                s.logger = connect(&s.path).ok();
            }
            let Some(l) = s.logger.as_mut() else {
                break;
            };
            let sent = match record.level() {
                Level::Error => l.err(&msg),
                Level::Warn => l.warning(&msg),
                Level::Info => l.info(&msg),
                Level::Debug | Level::Trace => l.debug(&msg),
            };
            if sent.is_ok() {
                return true;
            }
            s.logger = None;
        }
        false
    }
}

impl Log for Switch {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if is_interrupted_reply(record) {
            // Re-levelled to debug: the same record, so filters still apply.
            let args = *record.args();
            let demoted = Record::builder()
                .args(args)
                .level(Level::Debug)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            return self.log_passed(&demoted);
        }
        self.log_passed(record)
    }

    fn flush(&self) {
        if let Some((file, _)) = self.file.get() {
            file.flush();
        }
        self.stderr.flush();
    }
}

/// fuser's "Failed to send FUSE reply: ... (os error 2)": the kernel
/// answers a reply with ENOENT when it no longer waits for it (the request
/// was interrupted, or the mount is going away at unmount). libfuse
/// ignores that case (fuse_lowlevel.c, fuse_send_msg: "ENOENT means the
/// operation was interrupted"); it is no error for an admin.
fn is_interrupted_reply(record: &Record) -> bool {
    record.level() == Level::Error
        && record.target().starts_with("fuser")
        && record.args().as_str().is_none()
        && {
            let msg = record.args().to_string();
            msg.starts_with("Failed to send FUSE reply") && msg.ends_with("(os error 2)")
        }
}

impl Switch {
    fn log_passed(&self, record: &Record) {
        if !self.stderr.matches(record) {
            return;
        }
        if let Some((file, _)) = self.file.get() {
            file.log(record);
            return;
        }
        if self.use_syslog.load(Ordering::Relaxed) && self.send_syslog(record) {
            return;
        }
        self.stderr.log(record);
    }
}

fn connect(path: &std::path::Path) -> Result<SyslogLogger, String> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "coupafs".into(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// True when stderr is the journal stream systemd handed us.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Installs the logger (stderr). `debug` lowers the level to debug;
/// `COUPAFS_LOG` overrides both. Calling it again does nothing.
pub fn init(debug: bool) {
    if LOGGER.get().is_some() {
        return;
    }
    let stderr = builder(debug, stderr_is_journal()).build();
    let max = stderr.filter();
    let switch: &'static Switch = Box::leak(Box::new(Switch {
        stderr,
        debug,
        file: OnceLock::new(),
        use_syslog: AtomicBool::new(false),
        syslog: Mutex::new(None),
    }));
    if LOGGER.set(switch).is_ok() && log::set_logger(switch).is_ok() {
        log::set_max_level(max);
    }
}

/// The env_logger set-up: level, module filters, `COUPAFS_LOG`, and the
/// one-line layout (`<prio>message` for the journal, else
/// `[time LEVEL] message`).
fn builder(debug: bool, journal: bool) -> env_logger::Builder {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .filter_module("fuser", log::LevelFilter::Warn)
        .format_target(false)
        .parse_env("COUPAFS_LOG");
    if journal {
        builder.format(|buf, record| {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(
                buf,
                "<{prio}>{}",
                escape_controls(&record.args().to_string())
            )
        });
    } else {
        // env_logger's default layout (`[time LEVEL] message`), with the
        // message escaped. Debug logs carry milliseconds: what they are read
        // for (a request's place among others) happens within a second.
        builder.format(move |buf, record| {
            let style = buf.default_level_style(record.level());
            let time = if debug {
                buf.timestamp_millis()
            } else {
                buf.timestamp()
            };
            writeln!(
                buf,
                "[{} {style}{:<5}{style:#}] {}",
                time,
                record.level(),
                escape_controls(&record.args().to_string())
            )
        });
    }
    builder
}

/// Sends every later record to `path` (appended; created 0600; a symlink
/// at `path` is refused, not followed). Call before the fork: the error is
/// for the user's terminal.
pub(crate) fn to_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(switch) = LOGGER.get() else {
        return Err("logging is not initialised".into());
    };
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!("log_file {shown}: is a symlink (refused)"),
            _ => format!("log_file {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("log_file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("log_file {shown}: not a regular file"));
    }
    // An existing file others can read would show them server names and
    // paths: narrow it if it is ours.
    // SAFETY: geteuid cannot fail.
    if meta.mode() & 0o077 != 0 && meta.uid() == unsafe { libc::geteuid() } {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    let writer = file
        .try_clone()
        .map_err(|e| format!("log_file {shown}: {e}"))?;
    let logger = builder(switch.debug, false)
        .write_style(env_logger::WriteStyle::Never)
        .target(env_logger::Target::Pipe(Box::new(writer)))
        .build();
    switch
        .file
        .set((logger, file))
        .map_err(|_| "log_file is already set".to_string())
}

/// The log file's descriptor, if `log_file=` is set (the daemon points its
/// stderr at it).
pub(crate) fn file_fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    LOGGER.get()?.file.get().map(|(_, f)| f.as_raw_fd())
}

/// Sends every later record to syslog instead of stderr (for the daemon,
/// after the fork). Returns the socket used, or why none could be used (the
/// caller tells the user; records keep going to stderr).
pub(crate) fn to_syslog() -> Result<PathBuf, String> {
    let Some(switch) = LOGGER.get() else {
        return Err("logging is not initialised".into());
    };
    let candidates: Vec<PathBuf> = match std::env::var_os(SYSLOG_SOCKET_ENV) {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => SYSLOG_SOCKETS.iter().map(PathBuf::from).collect(),
    };
    let mut errors = Vec::new();
    for path in candidates {
        if !path.exists() {
            errors.push(format!("{} does not exist", path.display()));
            continue;
        }
        match connect(&path) {
            Ok(logger) => {
                *switch.syslog.lock().unwrap_or_else(|e| e.into_inner()) = Some(Syslog {
                    path: path.clone(),
                    logger: Some(logger),
                });
                switch.use_syslog.store(true, Ordering::Relaxed);
                return Ok(path);
            }
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no syslog socket: {}", errors.join("; ")))
}

/// `bytes` (a path, a server-supplied name or message) as printable text
/// for a log line: valid UTF-8 stays as is except `\\` (doubled, so the
/// escapes below are unambiguous), `\n`, `\r`, `\t` and other control
/// characters (`\xNN`, or `\u{NNNN}` beyond ASCII); each byte of invalid
/// UTF-8 becomes `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                push_char(&mut out, c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// One character, escaped if it is a control character.
fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        // C1 controls, and the line and paragraph separators some log
        // viewers break lines on.
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A whole record's message with every control character escaped (as in
/// [`escape`], but backslashes stay single: the message may already hold
/// escaped text). Borrowed when there is nothing to escape.
pub fn escape_controls(msg: &str) -> Cow<'_, str> {
    if !msg
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_plain_names_and_escapes_controls() {
        assert_eq!(escape(b"Invoices/INV-1.csv"), "Invoices/INV-1.csv");
        assert_eq!(
            escape("Fran\u{e7}ais \u{e9}t\u{e9}".as_bytes()),
            "Fran\u{e7}ais \u{e9}t\u{e9}"
        );
        assert_eq!(
            escape(b"a\nERROR forged\r\tb\x1b[31m\x7f\0"),
            "a\\nERROR forged\\r\\tb\\x1b[31m\\x7f\\x00"
        );
        assert_eq!(
            escape("x\u{85}y\u{2028}z".as_bytes()),
            "x\\u{0085}y\\u{2028}z"
        );
    }

    #[test]
    fn escape_shows_invalid_utf8_as_hex_and_doubles_backslashes() {
        assert_eq!(escape(b"caf\xe9.csv"), "caf\\xe9.csv");
        assert_eq!(escape(b"\xff\xfe"), "\\xff\\xfe");
        // A name that spells an escape is told apart from the escaped byte.
        assert_eq!(escape(b"a\\nb"), "a\\\\nb");
        assert_ne!(escape(b"a\\nb"), escape(b"a\nb"));
    }

    #[test]
    fn no_escaped_text_spans_lines() {
        let all: Vec<u8> = (0..=255).collect();
        let e = escape(&all);
        assert!(!e.chars().any(|c| c.is_control()), "{e}");
        let m = escape_controls("upload of a\nb failed:\r\x00 \u{9b}");
        assert_eq!(m, "upload of a\\nb failed:\\r\\x00 \\u{009b}");
        assert!(!m.contains('\n'));
    }

    #[test]
    fn escape_controls_borrows_clean_messages_and_keeps_backslashes() {
        assert!(matches!(
            escape_controls("mounted a:\\x on /mnt"),
            Cow::Borrowed("mounted a:\\x on /mnt")
        ));
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn an_interrupted_fuse_reply_is_no_error() {
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        let check = |target: &str, e: &std::io::Error| {
            is_interrupted_reply(
                &Record::builder()
                    .args(format_args!("Failed to send FUSE reply: {e}"))
                    .level(Level::Error)
                    .target(target)
                    .build(),
            )
        };
        assert!(check("fuser::reply", &enoent));
        assert!(!check("fuser::reply", &eio));
        assert!(!check("coupafs::fs", &enoent));
    }

    #[test]
    fn log_file_is_appended_private_and_never_through_a_symlink() {
        init(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let e = to_file(&link).expect_err("a symlink is refused");
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"keep");
        let e = to_file(dir.path()).expect_err("a directory is refused");
        assert!(e.contains("log_file"), "{e}");

        let path = dir.path().join("coupafs.log");
        std::fs::write(&path, b"earlier line\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        to_file(&path).expect("log file");
        assert!(file_fd().is_some());
        log::info!("first record\nforged second");
        log::logger().flush();
        let text = std::fs::read_to_string(&path).expect("read");
        // Other tests of this binary may log meanwhile: look for ours.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier line");
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("INFO ] first record\\nforged second")),
            "{text}"
        );
        assert!(!text.contains("\nforged second"), "{text}");
        let mode = std::fs::metadata(&path).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
