//! `coupafs status [MOUNTPOINT]`: every mount's state, read from the status
//! files (see `status`), one line per mount. A file whose writer is gone
//! (kill -9, a crash, a reboot without /run on tmpfs) says so: `stale`,
//! whatever its `state=` line claims.
//!
//! Exit status (as `systemctl is-active` style scripts expect): 0 when
//! every mount shown is live and connected, 1 when one is live but not
//! connected or a file is stale, 3 when there is no status file to show
//! (nothing mounted, or not the MOUNTPOINT asked for).

use std::path::Path;

use super::dirs;
use super::status::{self, Writer};

/// What one status file says, checked against the process table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountState {
    pub(crate) mountpoint: String,
    /// `connected`, `reconnecting`, `disconnected`, or `stale`.
    pub(crate) state: String,
    pub(crate) live: bool,
    pub(crate) line: String,
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// One status file's text as a line for `coupafs status`; `now` in seconds
/// since the epoch. None if the text names no writer.
pub(crate) fn describe(text: &str, now: u64, file: &Path) -> Option<MountState> {
    let writer: Writer = status::parse_writer(text)?;
    let mountpoint = value(text, "mountpoint").unwrap_or("?").to_string();
    let server = value(text, "server").unwrap_or("?");
    let claimed = value(text, "state").unwrap_or("unknown");
    if !writer.is_running() {
        return Some(MountState {
            line: format!(
                "{mountpoint}: stale (pid {} is not running; its file says state={claimed}) \
                 {server}; remove {} once the mount is gone (umount -l)",
                writer.pid,
                file.display()
            ),
            mountpoint,
            state: "stale".into(),
            live: false,
        });
    }
    let age = value(text, "updated")
        .and_then(|u| u.parse::<u64>().ok())
        .map(|u| format!(", updated {} s ago", now.saturating_sub(u)))
        .unwrap_or_default();
    let n = |k: &str| value(text, k).unwrap_or("?").to_string();
    let error = value(text, "last_error")
        .filter(|e| !e.is_empty())
        .map(|e| format!(", last error: {e}"))
        .unwrap_or_default();
    Some(MountState {
        line: format!(
            "{mountpoint}: {claimed} {server} (pid {}, {} connection(s), {} reconnect(s), \
             {} open for writing, {} upload(s) pending{age}{error})",
            writer.pid,
            n("connections"),
            n("reconnects"),
            n("open_writers"),
            n("pending_uploads"),
        ),
        mountpoint,
        state: claimed.to_string(),
        live: true,
    })
}

/// Prints the state of every mount (or of `mountpoint`) and returns the
/// exit status.
pub fn show_status(mountpoint: Option<&Path>) -> i32 {
    let dir = dirs::status_dir_path();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut paths: Vec<_> = match mountpoint {
        Some(m) => vec![dir.join(status::file_name(&super::credentials::absolute(m)))],
        None => match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "status")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    paths.sort();
    let states: Vec<MountState> = paths
        .iter()
        .filter_map(|p| describe(&status::read_nofollow(p)?, now, p))
        .collect();
    if states.is_empty() {
        match mountpoint {
            Some(m) => println!(
                "{}: not mounted (no status file in {})",
                m.display(),
                dir.display()
            ),
            None => println!("no coupafs mounts (no status files in {})", dir.display()),
        }
        return 3;
    }
    for s in &states {
        println!("{}", s.line);
    }
    if states.iter().all(|s| s.live && s.state == "connected") {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_writer_shows_its_state_and_a_dead_one_is_stale() {
        let me = std::process::id();
        let start = std::fs::read_to_string(format!("/proc/{me}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                rest.split_whitespace().nth(19).map(String::from)
            })
            .expect("own start time");
        let text = format!(
            "mountpoint=/mnt/a\nserver=u@h:/x\nport=22\npid={me}\npid_start={start}\n\
             state=connected\nconnections=1\nreconnects=0\nopen_writers=0\npending_uploads=2\n\
             last_error=\nupdated=100\n"
        );
        let s = describe(&text, 103, Path::new("/run/coupafs/mnt-a.status")).expect("described");
        assert!(s.live);
        assert_eq!(
            s.line,
            format!(
                "/mnt/a: connected u@h:/x (pid {me}, 1 connection(s), 0 reconnect(s), \
                 0 open for writing, 2 upload(s) pending, updated 3 s ago)"
            )
        );
        // Our PID with another start time: the writer is gone.
        let stale = text.replace(&format!("pid_start={start}"), "pid_start=1");
        let s = describe(&stale, 103, Path::new("/run/coupafs/mnt-a.status")).expect("described");
        assert!(!s.live);
        assert_eq!(s.state, "stale");
        assert!(s.line.starts_with("/mnt/a: stale (pid"), "{}", s.line);
        assert!(
            s.line.ends_with(
                "u@h:/x; remove /run/coupafs/mnt-a.status once the mount is gone (umount -l)"
            ),
            "{}",
            s.line
        );
        assert_eq!(describe("state=connected\n", 0, Path::new("/x")), None);
    }
}
