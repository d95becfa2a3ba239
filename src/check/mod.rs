//! `coupafs check [USER@]HOST:[DIR] [-p PORT] [-o OPT,...]`: a health check of
//! a Coupa SFTP exchange for people and for monitoring (Nagios, Icinga,
//! Zabbix, cron). It connects with exactly the options a mount would use and
//! prints on stdout the overall state, then one line per check (the
//! monitoring plugin conventions, see `report`):
//!
//! ```text
//! COUPAFS WARNING - waiting: Incoming/Invoices: ...; 12 ok, 1 warn, 0 fail in 0.4 s | connect_time=0.012s;;;; waiting_files=1;;;; oldest_waiting=3600s;;;; time=0.4s;;;;
//! OK   dns: 127.0.0.1 resolved to 127.0.0.1 in 0.1 ms
//! OK   tcp: connected to 127.0.0.1:2222 in 0.2 ms; server banner SSH-2.0-OpenSSH_9.6p1
//! OK   host key: known, SHA256:... (in /etc/coupafs/known_hosts)
//! ...
//! WARN waiting: Incoming/Invoices: 1 file waiting, oldest 1h00m (inv.csv); ...
//! ```
//!
//! `--json` prints the same as one JSON object.
//!
//! Each check line starts with `OK`, `WARN` or `FAIL` (padded to 4
//! characters), then the check's name, a colon and a one-line message. The
//! checks, in order: `dns` and `tcp` (reachability, timed, before and apart
//! from SSH so a failure is pinpointed), `ssh` (only on a handshake
//! failure), `host key`, `auth`, `sftp` (extensions), `root` (the remote
//! folder), `folders` (Coupa's standard folders, one line per group),
//! `write` (a temp file is created, written, renamed and removed in every
//! `Incoming/<Object>` folder, all folders at once), `replace`, `append`
//! and `capabilities` (what uploads over an existing name need, tried in one
//! Incoming folder, and what coupafs will do: `uploads.rs`), `waiting` (files not
//! yet collected by Coupa), `archive` (the newest file Coupa archived) and
//! `rules` (Coupa's file rules on the waiting files).
//!
//! Exit status, the Nagios plugin convention:
//! * 0 OK: every line is `OK`;
//! * 1 WARNING: at least one `WARN`, no `FAIL` (something to look at: a
//!   missing standard folder, a file waiting too long, a file Coupa will
//!   refuse, no atomic rename);
//! * 2 CRITICAL: at least one `FAIL` (the exchange does not work: server
//!   unreachable, host key changed, login refused, root missing, Incoming not
//!   writable);
//! * 3 UNKNOWN: the check could not run: a command-line syntax error, or
//!   options that cannot be used (unreadable password file). The first
//!   line says why (`COUPAFS UNKNOWN - ...`), `coupafs: ...` on stderr.
//!
//! Nothing is left behind: the write probe uses names the mount hides
//! (`.coupafs-check.coupafs-XXXXXX`) and removes them; waiting files are only
//! read.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod reach;
mod report;
mod uploads;

use crate::cli::MountOptions;
use crate::coupa::{self, CsvCheck, CsvProblem};
use crate::remote::{DirEntry, Kind, Meta, Remote, RemoteError, SftpRemote};
use crate::sftp::ext;
use crate::ssh::{CloseReason, ConnectParams, HostKeyStatus, Pool, Route};

use reach::{check_reachable, report_connect_error};
use report::Report;
pub use report::{unknown, EXIT_UNKNOWN};

/// Listings and probes run this many at once (all on the one connection,
/// their requests pipelined).
const PARALLEL: usize = 16;
/// Waiting CSV files downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;
/// Bytes asked for per `Remote::read` when downloading a CSV file (which
/// pipelines 64 KiB requests inside).
const READ_WINDOW: u64 = 1 << 20;
/// Longest wait for the server's SSH banner in the `tcp` check.
const BANNER_TIMEOUT: Duration = Duration::from_secs(5);
/// What the write probe writes.
const PROBE_DATA: &[u8] = b"coupafs check: this file is removed right away\n";

/// Runs every check against the server in `params`, printing to stdout.
/// Returns the exit status (0 OK, 1 WARNING, 2 CRITICAL).
pub fn run_check(opts: &MountOptions, params: ConnectParams) -> i32 {
    let format = if opts.json {
        report::Format::Json
    } else {
        report::Format::Text
    };
    let mut report = Report::with_format(io::stdout().lock(), format);
    let started = Instant::now();
    run_checks(opts, params, &mut report);
    report.finish(started.elapsed());
    report.exit_code()
}

/// The checks, in order; stops early when the rest cannot run.
pub(crate) fn run_checks<W: Write>(
    opts: &MountOptions,
    params: ConnectParams,
    rep: &mut Report<W>,
) {
    // Behind a proxy the server may not be reachable (or even resolvable)
    // from here directly: the SSH step below goes the configured way, so
    // the direct probes would only report a false failure.
    let route = match &params.reach.route {
        Route::Direct => None,
        Route::Command(_) => Some("ProxyCommand"),
        Route::Jump { .. } => Some("ProxyJump"),
        Route::HttpConnect(_) => Some("an HTTP CONNECT proxy"),
        Route::Socks5(_) => Some("a SOCKS5 proxy"),
    };
    if let Some(via) = route {
        rep.ok(
            "route",
            format!("through {via}: direct dns and tcp probes skipped"),
        );
    } else if !check_reachable(&params, rep) {
        return;
    }
    let pool = Pool::new(params, 1);
    let t = Instant::now();
    let first = match pool.connect_first() {
        Ok(c) => {
            rep.perf("connect_time", t.elapsed().as_secs_f64(), "s");
            c
        }
        Err(e) => {
            report_connect_error(&e, rep);
            return;
        }
    };
    let p = pool.params();
    let info = &first.info;
    let fp = &info.host_key_fingerprint;
    match info.host_key_status {
        HostKeyStatus::Known => rep.ok(
            "host key",
            format!("known, {fp} (in {})", p.known_hosts.display()),
        ),
        HostKeyStatus::Pinned => rep.ok(
            "host key",
            format!("pinned, {fp} matches HostKeyFingerprint"),
        ),
        HostKeyStatus::Added => rep.ok(
            "host key",
            format!(
                "added, {fp} was unknown and is now in {} (StrictHostKeyChecking=accept-new)",
                p.known_hosts.display()
            ),
        ),
        HostKeyStatus::Unverified => rep.warn(
            "host key",
            format!(
                "unverified, {fp} accepted without a check (StrictHostKeyChecking=no); \
                 pin it with -o HostKeyFingerprint={fp}"
            ),
        ),
    }
    rep.ok("auth", format!("{} as {}", info.auth_method, p.user));

    let names: Vec<&str> = info
        .version
        .extensions
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let listed = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    let sftp_line = format!(
        "protocol version {}; extensions: {listed}",
        info.version.version
    );
    if info.version.has_extension(ext::POSIX_RENAME) {
        rep.ok("sftp", sftp_line);
    } else {
        rep.warn(
            "sftp",
            format!(
                "{sftp_line}; {} missing: atomic replace unavailable \
                 (uploading over an existing name briefly removes it)",
                ext::POSIX_RENAME
            ),
        );
    }

    crate::ssh::set_sftp_debug(opts.sftp_debug);
    let remote = SftpRemote::new(pool.clone(), &first, opts.op_timeout);
    drop(first);
    if let Some(root) = check_root(&remote, &opts.target.remote_dir, rep) {
        check_exchange(opts, &remote, &root, rep);
    }
    pool.close_all(CloseReason::Done);
}

/// `root`: the remote folder resolves and is a directory. Returns its
/// absolute path.
fn check_root<W: Write>(remote: &SftpRemote, dir: &str, rep: &mut Report<W>) -> Option<Vec<u8>> {
    let wanted = if dir.is_empty() { "." } else { dir };
    let abs = match remote.realpath(wanted.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            rep.fail("root", format!("'{wanted}' does not resolve: {e}"));
            return None;
        }
    };
    let shown = String::from_utf8_lossy(&abs).into_owned();
    match remote.stat(&abs) {
        Ok(a) if a.kind == Some(Kind::Dir) => {
            rep.ok("root", format!("{shown} is a directory"));
            Some(abs)
        }
        Ok(_) => {
            rep.fail("root", format!("{shown} is not a directory"));
            None
        }
        Err(e) => {
            rep.fail("root", format!("{shown}: {e}"));
            None
        }
    }
}

/// A folder (or a symlink, which may point to one).
fn is_dir_like(a: &Meta) -> bool {
    matches!(a.kind, Some(Kind::Dir) | Some(Kind::Symlink))
}

/// A regular file (servers that send no permissions: assume a file).
fn is_file(a: &Meta) -> bool {
    matches!(a.kind, None | Some(Kind::File))
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Coupa's standard folders in one group, compared with what is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FolderGroup {
    /// Standard object folders present, in standard order.
    pub(crate) present: Vec<String>,
    /// Standard object folders missing, in standard order.
    pub(crate) missing: Vec<String>,
    /// Other (non-hidden) folders, sorted.
    pub(crate) others: Vec<String>,
}

impl FolderGroup {
    /// Present standard folders, then the others: every object folder.
    pub(crate) fn all(&self) -> Vec<String> {
        self.present.iter().chain(&self.others).cloned().collect()
    }
}

/// Compares the folders of a listing with a standard list (exact names).
pub(crate) fn compare_folders(standard: &[&str], entries: &[DirEntry]) -> FolderGroup {
    let dirs: Vec<String> = entries
        .iter()
        .filter(|e| is_dir_like(&e.meta) && !e.name.starts_with(b"."))
        .map(|e| lossy(&e.name))
        .collect();
    let (present, missing): (Vec<&str>, Vec<&str>) =
        standard.iter().partition(|s| dirs.iter().any(|d| d == *s));
    let mut others: Vec<String> = dirs
        .iter()
        .filter(|d| !standard.contains(&d.as_str()))
        .cloned()
        .collect();
    others.sort();
    FolderGroup {
        present: present.into_iter().map(str::to_string).collect(),
        missing: missing.into_iter().map(str::to_string).collect(),
        others,
    }
}

/// Runs `f` on every item with up to `workers` threads; results in order.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item is mapped"))
        .collect()
}

/// Everything after the root: folders, write probe, waiting files, archive,
/// file rules.
fn check_exchange<W: Write>(
    opts: &MountOptions,
    remote: &SftpRemote,
    root: &[u8],
    rep: &mut Report<W>,
) {
    // The three groups are listed at once.
    let groups: [(&str, &[&str]); 3] = [
        (coupa::INCOMING, coupa::INCOMING_OBJECTS),
        (coupa::OUTGOING, coupa::OUTGOING_OBJECTS),
        (coupa::ARCHIVE_INCOMING, coupa::ARCHIVE_INCOMING_OBJECTS),
    ];
    let listings = parallel_map(&groups, 3, |(name, _)| {
        remote.read_dir(&join(root, name.as_bytes()))
    });
    let mut found: Vec<Option<FolderGroup>> = Vec::new();
    for ((name, standard), listing) in groups.iter().zip(listings) {
        let total = standard.len();
        match listing {
            Ok(entries) => {
                let g = compare_folders(standard, &entries);
                let others = if g.others.is_empty() {
                    String::new()
                } else {
                    format!(" (also: {})", g.others.join(", "))
                };
                if g.missing.is_empty() {
                    rep.ok(
                        "folders",
                        format!("{name}: all {total} standard folders present{others}"),
                    );
                } else {
                    rep.warn(
                        "folders",
                        format!(
                            "{name}: {} of {total} standard folders missing: {}{others}",
                            g.missing.len(),
                            g.missing.join(", ")
                        ),
                    );
                }
                found.push(Some(g));
            }
            Err(e) if e.is_not_found() => {
                rep.warn(
                    "folders",
                    format!("{name}: folder missing (none of the {total} standard folders)"),
                );
                found.push(None);
            }
            Err(e) => {
                rep.fail("folders", format!("{name}: cannot list: {e}"));
                found.push(None);
            }
        }
    }
    let incoming: Vec<String> = found[0].as_ref().map(FolderGroup::all).unwrap_or_default();
    let archive: Vec<String> = found[2].as_ref().map(FolderGroup::all).unwrap_or_default();

    let upload_dir = check_write(opts, remote, root, &incoming, rep);
    uploads::check_uploads(remote, root, upload_dir.as_deref(), rep);
    let waiting = check_waiting(remote, root, &incoming, rep);
    rep.perf("waiting_files", waiting.len() as f64, "");
    let oldest = waiting.iter().filter_map(|w| w.age).max().unwrap_or(0);
    rep.perf("oldest_waiting", oldest as f64, "s");
    check_archive(
        remote,
        root,
        &archive,
        found[2].is_some(),
        waiting.len(),
        rep,
    );
    check_rules(remote, &waiting, rep);
}

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.coupafs-check.coupafs-XXXXXX`: a coupafs temp name (hidden by mounts,
/// recognised by `temp_name::is_temp_name`), unique per call.
pub(crate) fn probe_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs())
        .unwrap_or(0);
    let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (u64::from(std::process::id()) << 24 ^ nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A))
        .wrapping_mul(0x2545_F491_4F6C_DD1D);
    format!(".coupafs-check.coupafs-{:06x}", mixed >> 40)
}

/// Create, write, close, rename, remove in `dir`; on error, what failed and
/// where (relative path), with the server's message.
fn write_probe(remote: &SftpRemote, root: &[u8], rel_dir: &str) -> Result<(), String> {
    let dir = join(root, rel_dir.as_bytes());
    let (name_a, name_b) = (probe_name(), probe_name());
    let (a, b) = (join(&dir, name_a.as_bytes()), join(&dir, name_b.as_bytes()));
    let shown_a = format!("{rel_dir}/{name_a}");
    let shown_b = format!("{rel_dir}/{name_b}");
    let handle = remote
        .create_new(&a, None)
        .map_err(|e| format!("{shown_a}: create failed: {e}"))?;
    let written = remote
        .write(&handle, 0, PROBE_DATA)
        .map_err(|e| format!("{shown_a}: write failed: {e}"));
    let closed = remote
        .close(&handle)
        .map_err(|e| format!("{shown_a}: close failed: {e}"));
    if let Err(e) = written.and(closed) {
        let _ = remote.remove(&a);
        return Err(e);
    }
    if let Err(e) = remote.rename(&a, &b) {
        let _ = remote.remove(&a);
        return Err(format!("{shown_a}: rename to {name_b} failed: {e}"));
    }
    remote
        .remove(&b)
        .map_err(|e| format!("{shown_b}: remove failed: {e}"))
}

/// `write`: the probe in every Incoming object folder, all at once.
/// Returns the first folder found writable (relative to the root).
fn check_write<W: Write>(
    opts: &MountOptions,
    remote: &SftpRemote,
    root: &[u8],
    incoming: &[String],
    rep: &mut Report<W>,
) -> Option<String> {
    if opts.read_only {
        rep.ok("write", "skipped: read-only (-o ro)");
        return None;
    }
    if incoming.is_empty() {
        rep.warn("write", "skipped: no folder under Incoming to test");
        return None;
    }
    let t = Instant::now();
    let rel: Vec<String> = incoming
        .iter()
        .map(|o| format!("{}/{o}", coupa::INCOMING))
        .collect();
    let results = parallel_map(&rel, PARALLEL, |d| write_probe(remote, root, d));
    let took = t.elapsed();
    let mut good = 0;
    let mut writable = None;
    for (r, dir) in results.into_iter().zip(&rel) {
        match r {
            Ok(()) => {
                good += 1;
                writable.get_or_insert_with(|| dir.clone());
            }
            Err(e) => rep.fail("write", e),
        }
    }
    if good > 0 {
        rep.ok(
            "write",
            format!(
                "{good} of {} Incoming folders writable (create, write, rename, remove) in {}",
                rel.len(),
                ms(took)
            ),
        );
    }
    writable
}

/// A file waiting in Incoming.
#[derive(Clone, Debug)]
struct Waiting {
    /// Relative to the root: `Incoming/<Object>/<name>`.
    rel: String,
    abs: Vec<u8>,
    name: String,
    size: Option<u64>,
    /// Seconds since its mtime (None: no mtime from the server).
    age: Option<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn age_of(a: &Meta, now: u64) -> Option<u64> {
    a.mtime.map(|m| now.saturating_sub(u64::from(m)))
}

/// `waiting`: files in each Incoming object folder, their count and oldest
/// age. Returns the waiting files (for the rules and archive checks).
fn check_waiting<W: Write>(
    remote: &SftpRemote,
    root: &[u8],
    incoming: &[String],
    rep: &mut Report<W>,
) -> Vec<Waiting> {
    let stale = coupa::STALE_AFTER.as_secs();
    let listings = parallel_map(incoming, PARALLEL, |o| {
        remote.read_dir(&join(root, format!("{}/{o}", coupa::INCOMING).as_bytes()))
    });
    let now = now_secs();
    let mut all = Vec::new();
    let mut folders_with_files = 0;
    for (object, listing) in incoming.iter().zip(listings) {
        let rel_dir = format!("{}/{object}", coupa::INCOMING);
        let entries = match listing {
            Ok(e) => e,
            // Gone since the folder listing: nothing waits there.
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                rep.fail("waiting", format!("{rel_dir}: cannot list: {e}"));
                continue;
            }
        };
        let mut files = Vec::new();
        let mut stale_temps = 0;
        for e in entries.iter().filter(|e| is_file(&e.meta)) {
            let age = age_of(&e.meta, now);
            if crate::fs::temp_name::is_temp_name(&e.name) {
                if age.is_some_and(|a| a > stale) {
                    stale_temps += 1;
                }
                continue;
            }
            let name = lossy(&e.name);
            files.push(Waiting {
                rel: format!("{rel_dir}/{name}"),
                abs: join(&join(root, rel_dir.as_bytes()), &e.name),
                name,
                size: e.meta.size,
                age,
            });
        }
        if stale_temps > 0 {
            rep.warn(
                "waiting",
                format!(
                    "{rel_dir}: {stale_temps} coupafs temp file(s) (.*.coupafs-XXXXXX) older than \
                     {} min: interrupted uploads, safe to delete when no upload is running",
                    stale / 60
                ),
            );
        }
        if files.is_empty() {
            continue;
        }
        folders_with_files += 1;
        let oldest = files
            .iter()
            .filter(|f| f.age.is_some())
            .max_by_key(|f| f.age);
        let count = plural(files.len(), "file");
        match oldest.and_then(|f| f.age.map(|a| (f, a))) {
            Some((f, age)) if age > stale => rep.warn(
                "waiting",
                format!(
                    "{rel_dir}: {count} waiting, oldest {} ({}): over {} min, but Coupa collects \
                     every 3-6 min; is collection stuck or the file refused?",
                    format_age(age),
                    f.name,
                    stale / 60
                ),
            ),
            Some((f, age)) => rep.ok(
                "waiting",
                format!(
                    "{rel_dir}: {count} waiting, oldest {} ({})",
                    format_age(age),
                    f.name
                ),
            ),
            None => rep.ok("waiting", format!("{rel_dir}: {count} waiting")),
        }
        all.extend(files);
    }
    if folders_with_files == 0 {
        rep.ok(
            "waiting",
            format!(
                "no files waiting in {}",
                plural(incoming.len(), "Incoming folder")
            ),
        );
    }
    all
}

/// `archive`: the newest file in `Archive/Incoming/*`, as a sign that Coupa
/// collects. "None" is only a warning while files wait in Incoming (a new
/// exchange has an empty archive; the stale-file check catches a stuck one).
fn check_archive<W: Write>(
    remote: &SftpRemote,
    root: &[u8],
    objects: &[String],
    archive_exists: bool,
    waiting: usize,
    rep: &mut Report<W>,
) {
    if !archive_exists {
        rep.ok(
            "archive",
            format!("skipped: no {} folder", coupa::ARCHIVE_INCOMING),
        );
        return;
    }
    let listings = parallel_map(objects, PARALLEL, |o| {
        remote.read_dir(&join(
            root,
            format!("{}/{o}", coupa::ARCHIVE_INCOMING).as_bytes(),
        ))
    });
    let now = now_secs();
    let mut newest: Option<(u32, String)> = None;
    let mut count = 0usize;
    for (object, listing) in objects.iter().zip(listings) {
        let rel_dir = format!("{}/{object}", coupa::ARCHIVE_INCOMING);
        let entries = match listing {
            Ok(e) => e,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                rep.warn("archive", format!("{rel_dir}: cannot list: {e}"));
                continue;
            }
        };
        for e in entries.iter().filter(|e| is_file(&e.meta)) {
            count += 1;
            let mtime = e.meta.mtime.unwrap_or(0);
            if newest.as_ref().is_none_or(|(m, _)| mtime > *m) {
                newest = Some((mtime, format!("{rel_dir}/{}", lossy(&e.name))));
            }
        }
    }
    match newest {
        Some((mtime, path)) => rep.ok(
            "archive",
            format!(
                "newest {path}, {} old ({} archived)",
                format_age(now.saturating_sub(u64::from(mtime))),
                plural(count, "file")
            ),
        ),
        None if waiting > 0 => rep.warn(
            "archive",
            format!(
                "no archived files in {}/* while Incoming has {}: Coupa has not collected \
                 anything yet",
                coupa::ARCHIVE_INCOMING,
                plural(waiting, "waiting file")
            ),
        ),
        None => rep.ok(
            "archive",
            format!(
                "no archived files in {}/* yet (nothing waiting either)",
                coupa::ARCHIVE_INCOMING
            ),
        ),
    }
}

/// Downloads (at most `MAX_FILE_BYTES` + 1 bytes of) a waiting file and
/// runs the Coupa file rules on it. None when the file was collected
/// meanwhile.
fn file_problems(
    remote: &SftpRemote,
    f: &Waiting,
) -> Option<Result<(Vec<CsvProblem>, u64), RemoteError>> {
    let mut check = CsvCheck::new(&f.name);
    if !check.is_csv() {
        // Only the size rule applies: no download.
        return Some(Ok((check.finish(f.size.unwrap_or(0)), 0)));
    }
    let handle = match remote.open_read(&f.abs) {
        Ok(h) => h,
        Err(e) if e.is_not_found() => return None,
        Err(e) => return Some(Err(e)),
    };
    let limit = coupa::MAX_FILE_BYTES + 1;
    let mut offset = 0u64;
    let mut result = Ok(());
    while offset < limit {
        let want = READ_WINDOW.min(limit - offset);
        match remote.read(&handle, offset, want as u32) {
            Ok(data) => {
                check.feed(&data);
                offset += data.len() as u64;
                if (data.len() as u64) < want {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = remote.close(&handle);
    if let Err(e) = result {
        return Some(Err(e));
    }
    // The listing's size may be stale (still being written): trust the
    // download when it saw the end.
    let size = if offset < limit {
        offset
    } else {
        f.size.unwrap_or(offset).max(offset)
    };
    Some(Ok((check.finish(size), offset)))
}

/// `rules`: Coupa's file rules on every waiting file.
fn check_rules<W: Write>(remote: &SftpRemote, waiting: &[Waiting], rep: &mut Report<W>) {
    if waiting.is_empty() {
        rep.ok("rules", "no waiting files to check");
        return;
    }
    let t = Instant::now();
    let results = parallel_map(waiting, PARALLEL_DOWNLOADS, |f| file_problems(remote, f));
    let took = t.elapsed();
    let mut checked = 0;
    let mut csv = 0;
    let mut bytes = 0u64;
    let mut bad = 0;
    for (f, r) in waiting.iter().zip(results) {
        match r {
            None => {}
            Some(Err(e)) => {
                bad += 1;
                rep.warn("rules", format!("{}: cannot read: {e}", f.rel));
            }
            Some(Ok((problems, read))) => {
                checked += 1;
                bytes += read;
                if coupa::is_csv_name(&f.name) {
                    csv += 1;
                }
                if !problems.is_empty() {
                    bad += 1;
                }
                for p in problems {
                    rep.warn("rules", format!("{}: {p}", f.rel));
                }
            }
        }
    }
    if checked == 0 && bad == 0 {
        rep.ok(
            "rules",
            "nothing to check: the waiting files were collected meanwhile",
        );
    } else if bad == 0 {
        rep.ok(
            "rules",
            format!(
                "{} checked ({csv} CSV, {} read in {}): no problems",
                plural(checked, "waiting file"),
                format_bytes(bytes),
                ms(took)
            ),
        );
    }
}

/// `N thing` / `N things`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn format_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

/// A compact age: `45s`, `3m12s`, `1h05m`, `2d03h`.
pub(crate) fn format_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::ConnectError;

    fn dir(name: &str) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            meta: Meta {
                kind: Some(Kind::Dir),
                permissions: Some(0o755),
                ..Meta::default()
            },
        }
    }

    fn file(name: &str) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            meta: Meta {
                kind: Some(Kind::File),
                permissions: Some(0o644),
                ..Meta::default()
            },
        }
    }

    /// The check lines of a finished report (without the state line).
    fn output(mut rep: Report<Vec<u8>>) -> String {
        rep.finish(Duration::ZERO);
        let all = String::from_utf8(rep.out).expect("utf-8");
        all.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn messages_stay_on_one_line() {
        let mut r = Report::new(Vec::new());
        r.fail("auth", "line one\nline two\r\tend");
        assert_eq!(output(r), "FAIL auth: line one line two  end\n");
    }

    #[test]
    fn folder_comparison() {
        let entries = vec![
            dir("Invoices"),
            dir("Suppliers"),
            dir("Custom"),
            dir(".hidden"),
            file("Users"),   // a file is not the folder
            dir("invoices"), // names are exact
        ];
        let g = compare_folders(&["Invoices", "Users", "Suppliers"], &entries);
        assert_eq!(g.present, vec!["Invoices", "Suppliers"]);
        assert_eq!(g.missing, vec!["Users"]);
        assert_eq!(g.others, vec!["Custom", "invoices"]);
        assert_eq!(g.all(), vec!["Invoices", "Suppliers", "Custom", "invoices"]);

        let mut link = dir("Users");
        link.meta.kind = Some(Kind::Symlink);
        let g = compare_folders(&["Users"], &[link]);
        assert_eq!(g.present, vec!["Users"]);

        let g = compare_folders(coupa::OUTGOING_OBJECTS, &[]);
        assert_eq!(g.missing.len(), 7);
    }

    #[test]
    fn probe_names_are_hidden_temp_names() {
        let a = probe_name();
        let b = probe_name();
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(n.starts_with(".coupafs-check.coupafs-"), "{n}");
            assert_eq!(n.len(), ".coupafs-check.coupafs-".len() + 6);
            assert!(crate::fs::temp_name::is_temp_name(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<u32> = (0..100).collect();
        let out = parallel_map(&items, 7, |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(parallel_map(&[] as &[u32], 4, |x| *x), Vec::<u32>::new());
        assert_eq!(parallel_map(&[1u8], 0, |x| *x), vec![1]);
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m00s");
        assert_eq!(format_age(192), "3m12s");
        assert_eq!(format_age(3600), "1h00m");
        assert_eq!(format_age(3900), "1h05m");
        assert_eq!(format_age(86400 * 2 + 3 * 3600 + 5), "2d03h");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(format_bytes(10), "10 B");
        assert_eq!(format_bytes(2048), "2.0 KiB");
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
        assert_eq!(ms(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(join(b"/a", b"b"), b"/a/b");
        assert_eq!(join(b"/", b"b"), b"/b");
    }

    #[test]
    fn file_kinds() {
        assert!(is_file(&Meta::default()));
        assert!(is_file(&file("x").meta));
        assert!(!is_file(&dir("x").meta));
        assert!(is_dir_like(&dir("x").meta));
        assert!(!is_dir_like(&file("x").meta));
        assert!(!is_dir_like(&Meta::default()));
    }

    #[test]
    fn connect_errors_land_on_their_step() {
        let mut r = Report::new(Vec::new());
        report_connect_error(
            &ConnectError::HostKey("HOST KEY CHANGED: SHA256:a, has SHA256:b".into()),
            &mut r,
        );
        assert_eq!(r.exit_code(), 2);
        assert_eq!(
            output(r),
            "FAIL host key: verification failed: HOST KEY CHANGED: SHA256:a, has SHA256:b\n"
        );
        let mut r = Report::new(Vec::new());
        report_connect_error(
            &ConnectError::Auth("as u: password: rejected".into()),
            &mut r,
        );
        let out = output(r);
        assert!(out.starts_with("OK   host key: accepted"), "{out}");
        assert!(
            out.contains("FAIL auth: login refused as u: password: rejected"),
            "{out}"
        );
        let mut r = Report::new(Vec::new());
        report_connect_error(&ConnectError::Handshake("kex".into()), &mut r);
        assert_eq!(output(r), "FAIL ssh: SSH handshake failed: kex\n");
    }
}
