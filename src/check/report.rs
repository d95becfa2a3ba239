//! The report of `coupafs check`: one line per check as it completes,
//! a tally, the summary line and the exit status (the Nagios plugin
//! convention: 0 OK, 1 WARNING, 2 CRITICAL).

use std::fmt;
use std::io::Write;
use std::time::Duration;

/// Exit status: everything OK.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit status: warnings, no failure.
pub(crate) const EXIT_WARNING: i32 = 1;
/// Exit status: at least one failure.
pub(crate) const EXIT_CRITICAL: i32 = 2;

/// The result of one check line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// Prints check lines as they come and keeps the tally.
pub(crate) struct Report<W: Write> {
    pub(super) out: W,
    pub(crate) ok: usize,
    pub(crate) warn: usize,
    pub(crate) fail: usize,
}

impl<W: Write> Report<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            ok: 0,
            warn: 0,
            fail: 0,
        }
    }

    /// One line: `LEVEL check: message` (control characters in the message
    /// become spaces, so it stays one line).
    pub(crate) fn line(&mut self, level: Level, check: &str, msg: impl fmt::Display) {
        match level {
            Level::Ok => self.ok += 1,
            Level::Warn => self.warn += 1,
            Level::Fail => self.fail += 1,
        }
        let msg = one_line(&msg.to_string());
        // Output errors (a closed pipe) must not change the verdict.
        let _ = writeln!(self.out, "{:<4} {check}: {msg}", level.tag());
        let _ = self.out.flush();
    }

    pub(crate) fn ok(&mut self, check: &str, msg: impl fmt::Display) {
        self.line(Level::Ok, check, msg);
    }

    pub(crate) fn warn(&mut self, check: &str, msg: impl fmt::Display) {
        self.line(Level::Warn, check, msg);
    }

    pub(crate) fn fail(&mut self, check: &str, msg: impl fmt::Display) {
        self.line(Level::Fail, check, msg);
    }

    /// 0 OK, 1 WARNING, 2 CRITICAL.
    pub(crate) fn exit_code(&self) -> i32 {
        if self.fail > 0 {
            EXIT_CRITICAL
        } else if self.warn > 0 {
            EXIT_WARNING
        } else {
            EXIT_OK
        }
    }

    /// The final line: `SUMMARY: OK|WARNING|CRITICAL - ...`.
    pub(crate) fn summary(&mut self, elapsed: Duration) {
        let code = self.exit_code();
        let state = match code {
            EXIT_OK => "OK",
            EXIT_WARNING => "WARNING",
            _ => "CRITICAL",
        };
        let _ = writeln!(
            self.out,
            "SUMMARY: {state} - {} ok, {} warn, {} fail in {:.1} s (exit {code})",
            self.ok,
            self.warn,
            self.fail,
            elapsed.as_secs_f64()
        );
        let _ = self.out.flush();
    }
}

/// Control characters (newlines in a server message) become spaces.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
