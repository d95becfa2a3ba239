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
use std::os::unix::fs::MetadataExt;
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
        if !self.stderr.matches(record) {
            return;
        }
        if self.use_syslog.load(Ordering::Relaxed) && self.send_syslog(record) {
            return;
        }
        self.stderr.log(record);
    }

    fn flush(&self) {
        self.stderr.flush();
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
    if stderr_is_journal() {
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
        // message escaped.
        builder.format(|buf, record| {
            let style = buf.default_level_style(record.level());
            writeln!(
                buf,
                "[{} {style}{:<5}{style:#}] {}",
                buf.timestamp(),
                record.level(),
                escape_controls(&record.args().to_string())
            )
        });
    }
    let stderr = builder.build();
    let max = stderr.filter();
    let switch: &'static Switch = Box::leak(Box::new(Switch {
        stderr,
        use_syslog: AtomicBool::new(false),
        syslog: Mutex::new(None),
    }));
    if LOGGER.set(switch).is_ok() && log::set_logger(switch).is_ok() {
        log::set_max_level(max);
    }
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
