//! The report of `coupafs check`, in the monitoring plugin conventions
//! (Nagios, Icinga, Zabbix and friends show the first line and read the
//! exit status):
//!
//! ```text
//! COUPAFS CRITICAL - host key: ...; 3 ok, 0 warn, 1 fail in 0.4 s | connect_time=0.012s;;;; time=0.4s;;;;
//! OK   dns: ...
//! FAIL host key: ...
//! ```
//!
//! The first line is the overall state and a summary (the first failure,
//! else the first warning, then the tally), then `|` and the performance
//! data (`label=value[UOM];;;;`, no thresholds); then one line per check.
//! Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the check could not
//! run: a usage error or unusable options; see [`unknown`]).
//! `--json` prints the same as one JSON object instead, for scripts.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

/// Exit status: everything OK.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit status: warnings, no failure.
pub(crate) const EXIT_WARNING: i32 = 1;
/// Exit status: at least one failure.
pub(crate) const EXIT_CRITICAL: i32 = 2;
/// Exit status: the check could not run (usage error, unusable options).
pub const EXIT_UNKNOWN: i32 = 3;

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

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The plugin text: state line with performance data, then the checks.
    Text,
    /// One JSON object.
    Json,
}

/// One check line, kept until the end: the first line needs the verdict.
struct Line {
    level: Level,
    check: String,
    msg: String,
}

/// One performance datum.
struct Perf {
    label: &'static str,
    value: f64,
    uom: &'static str,
}

/// Collects the check lines and performance data; [`Report::finish`]
/// prints them.
pub(crate) struct Report<W: Write> {
    pub(super) out: W,
    pub(crate) ok: usize,
    pub(crate) warn: usize,
    pub(crate) fail: usize,
    format: Format,
    lines: Vec<Line>,
    perf: Vec<Perf>,
}

impl<W: Write> Report<W> {
    #[cfg(test)]
    pub(crate) fn new(out: W) -> Self {
        Self::with_format(out, Format::Text)
    }

    pub(crate) fn with_format(out: W, format: Format) -> Self {
        Self {
            out,
            ok: 0,
            warn: 0,
            fail: 0,
            format,
            lines: Vec::new(),
            perf: Vec::new(),
        }
    }

    /// One check result (control characters in the message become spaces,
    /// so it stays one line).
    pub(crate) fn line(&mut self, level: Level, check: &str, msg: impl fmt::Display) {
        match level {
            Level::Ok => self.ok += 1,
            Level::Warn => self.warn += 1,
            Level::Fail => self.fail += 1,
        }
        self.lines.push(Line {
            level,
            check: one_line(check),
            msg: one_line(&msg.to_string()),
        });
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

    /// A performance datum (`label` is a fixed identifier; `uom` is a
    /// Nagios unit: `s`, `B`, `%`, `c` or empty). A later value for the
    /// same label replaces the earlier one.
    pub(crate) fn perf(&mut self, label: &'static str, value: f64, uom: &'static str) {
        self.perf.retain(|p| p.label != label);
        self.perf.push(Perf { label, value, uom });
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

    fn state(&self) -> &'static str {
        state_name(self.exit_code())
    }

    /// The summary after the state: the first problem of the worst level
    /// (and how many more), then the tally.
    fn summary(&self, elapsed: Duration) -> String {
        let worst = match self.exit_code() {
            EXIT_CRITICAL => Some((Level::Fail, self.fail)),
            EXIT_WARNING => Some((Level::Warn, self.warn)),
            _ => None,
        };
        let mut s = String::new();
        if let Some((level, n)) = worst {
            if let Some(l) = self.lines.iter().find(|l| l.level == level) {
                let _ = write!(s, "{}: {}", l.check, l.msg);
                if n > 1 {
                    let _ = write!(s, " (and {} more)", n - 1);
                }
                s.push_str("; ");
            }
        }
        let _ = write!(
            s,
            "{} ok, {} warn, {} fail in {:.1} s",
            self.ok,
            self.warn,
            self.fail,
            elapsed.as_secs_f64()
        );
        s
    }

    /// Prints the report; `elapsed` is the whole check's time (it is also
    /// the `time` performance datum).
    pub(crate) fn finish(&mut self, elapsed: Duration) {
        self.perf("time", elapsed.as_secs_f64(), "s");
        let text = match self.format {
            Format::Text => self.render_text(elapsed),
            Format::Json => self.render_json(elapsed),
        };
        // Output errors (a closed pipe) must not change the verdict.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    fn render_text(&self, elapsed: Duration) -> String {
        // A `|` in the summary would cut it into performance data.
        let summary = self.summary(elapsed).replace('|', "/");
        let mut s = format!("COUPAFS {} - {summary}", self.state());
        if !self.perf.is_empty() {
            s.push_str(" |");
            for p in &self.perf {
                let _ = write!(s, " {}={}{};;;;", p.label, number(p.value), p.uom);
            }
        }
        s.push('\n');
        for l in &self.lines {
            let _ = writeln!(s, "{:<4} {}: {}", l.level.tag(), l.check, l.msg);
        }
        s
    }

    fn render_json(&self, elapsed: Duration) -> String {
        let mut s = format!(
            "{{\"state\":\"{}\",\"exit\":{},\"summary\":{},\"ok\":{},\"warn\":{},\"fail\":{},\"checks\":[",
            self.state(),
            self.exit_code(),
            json_string(&self.summary(elapsed)),
            self.ok,
            self.warn,
            self.fail
        );
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"level\":\"{}\",\"check\":{},\"message\":{}}}",
                l.level.tag(),
                json_string(&l.check),
                json_string(&l.msg)
            );
        }
        s.push_str("],\"perf\":{");
        for (i, p) in self.perf.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{}:{{\"value\":{},\"uom\":{}}}",
                json_string(p.label),
                number(p.value),
                json_string(p.uom)
            );
        }
        s.push_str("}}\n");
        s
    }
}

fn state_name(code: i32) -> &'static str {
    match code {
        EXIT_OK => "OK",
        EXIT_WARNING => "WARNING",
        EXIT_CRITICAL => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// The output of a check that could not run (exit [`EXIT_UNKNOWN`]): the
/// state line, or the JSON object, saying why.
pub fn unknown(reason: &str, json: bool) -> String {
    let reason = one_line(reason);
    if json {
        format!(
            "{{\"state\":\"UNKNOWN\",\"exit\":{EXIT_UNKNOWN},\"summary\":{},\"ok\":0,\"warn\":0,\"fail\":0,\"checks\":[],\"perf\":{{}}}}\n",
            json_string(&reason)
        )
    } else {
        format!("COUPAFS UNKNOWN - {}\n", reason.replace('|', "/"))
    }
}

/// A number as Nagios and JSON both read it: integers plain, others with
/// up to 3 decimals; never NaN or infinite (0 instead).
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `s` as a JSON string literal (RFC 8259: `"` and `\` escaped, control
/// characters as `\uXXXX` or their short forms).
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Control characters (newlines in a server message) become spaces.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(rep: Report<Vec<u8>>) -> String {
        String::from_utf8(rep.out).expect("utf-8")
    }

    #[test]
    fn first_line_is_the_state_with_the_first_failure_and_perf_data() {
        let mut r = Report::new(Vec::new());
        r.ok("dns", "fine");
        r.warn("folders", "Outgoing: 1 missing");
        r.fail("host key", "mismatch | changed");
        r.fail("write", "denied");
        r.perf("connect_time", 0.0123, "s");
        r.perf("waiting_files", 3.0, "");
        r.finish(Duration::from_millis(1500));
        let out = output(r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "COUPAFS CRITICAL - host key: mismatch / changed (and 1 more); 1 ok, 1 warn, 2 fail \
             in 1.5 s | connect_time=0.012s;;;; waiting_files=3;;;; time=1.5s;;;;"
        );
        assert_eq!(lines[1], "OK   dns: fine");
        assert_eq!(lines[2], "WARN folders: Outgoing: 1 missing");
        assert_eq!(lines[3], "FAIL host key: mismatch | changed");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn ok_and_warning_states() {
        let mut r = Report::new(Vec::new());
        r.ok("a", "b");
        r.finish(Duration::ZERO);
        assert!(output(r).starts_with("COUPAFS OK - 1 ok, 0 warn, 0 fail in 0.0 s | time=0s;;;;\n"));
        let mut r = Report::new(Vec::new());
        r.ok("a", "b");
        r.warn("c", "d");
        assert_eq!(r.exit_code(), EXIT_WARNING);
        r.finish(Duration::ZERO);
        assert!(output(r).starts_with("COUPAFS WARNING - c: d; 1 ok, 1 warn, 0 fail"));
    }

    #[test]
    fn json_is_one_object_with_escaped_strings() {
        let mut r = Report::with_format(Vec::new(), Format::Json);
        r.fail("auth", "say \"no\"\\ now\u{1}");
        r.perf("connect_time", 0.5, "s");
        r.finish(Duration::from_secs(2));
        let out = output(r);
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            out,
            "{\"state\":\"CRITICAL\",\"exit\":2,\"summary\":\"auth: say \\\"no\\\"\\\\ now ; 0 ok, \
             0 warn, 1 fail in 2.0 s\",\"ok\":0,\"warn\":0,\"fail\":1,\"checks\":[{\"level\":\"FAIL\",\
             \"check\":\"auth\",\"message\":\"say \\\"no\\\"\\\\ now \"}],\"perf\":{\"connect_time\":\
             {\"value\":0.5,\"uom\":\"s\"},\"time\":{\"value\":2,\"uom\":\"s\"}}}\n"
        );
        assert_eq!(json_string("a\nb\u{7}"), "\"a\\nb\\u0007\"");
    }

    #[test]
    fn unknown_says_why() {
        assert_eq!(
            unknown("bad option\nx", false),
            "COUPAFS UNKNOWN - bad option x\n"
        );
        assert!(unknown("x", true).starts_with("{\"state\":\"UNKNOWN\",\"exit\":3,"));
    }

    #[test]
    fn numbers_are_plain() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0126), "0.013");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(f64::NAN), "0");
    }
}
