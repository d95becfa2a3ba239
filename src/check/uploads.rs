//! The `replace`, `append` and `capabilities` checks: what uploads need
//! beyond creating a new file, tried for real in one Incoming folder, and
//! what coupafs will do on this server per capability.
//!
//! * `replace`: a file renamed onto an existing name (what `cp` over a file,
//!   `mv` over a file and every upload over an existing name end with).
//!   OK when the server replaces atomically (posix-rename@openssh.com);
//!   WARN when coupafs must move the old file to a hidden name first (the
//!   name is briefly missing during a replace, never partial); FAIL when
//!   the server allows no replace at all.
//! * `append`: coupafs appends (`>>`) by uploading the whole new content to
//!   a hidden temp file and replacing the file with it (SFTP's APPEND open
//!   flag is not used: servers refuse it or ignore it), so it works exactly
//!   when `replace` does.
//! * `capabilities`: fsync, statvfs (tried, so an extension advertised but
//!   refused shows as such) and hard links.
//!
//! Probe files carry hidden temp names (`probe_name`) and are removed.

use std::io::Write;

use super::report::Report;
use super::{join, probe_name};
use crate::remote::{Remote, RemoteError, ReplaceMode, SftpRemote};
use crate::sftp::ext;

const OLD: &[u8] = b"coupafs check: old content\n";
const NEW: &[u8] = b"coupafs check: new content, replacing the old\n";
const MORE: &[u8] = b"coupafs check: appended\n";

/// Creates `path` with `data` (and fsyncs it when `fsync` is asked: the
/// answer is returned).
fn put(
    remote: &SftpRemote,
    path: &[u8],
    data: &[u8],
    fsync: bool,
) -> Result<Option<Result<(), RemoteError>>, RemoteError> {
    let h = remote.create_new(path, None)?;
    let written = remote.write(&h, 0, data);
    let synced = if fsync && written.is_ok() {
        Some(remote.fsync(&h))
    } else {
        None
    };
    let closed = remote.close(&h);
    written.and(closed).map(|()| synced)
}

fn content(remote: &SftpRemote, path: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let h = remote.open_read(path)?;
    let data = remote.read(&h, 0, 1 << 16);
    remote.close_quietly(&h);
    data
}

/// The three checks, in `rel_dir` (an Incoming folder, relative to `root`);
/// `None`: no folder to try in (read-only, or no Incoming folder).
pub(super) fn check_uploads<W: Write>(
    remote: &SftpRemote,
    root: &[u8],
    rel_dir: Option<&str>,
    rep: &mut Report<W>,
) {
    let mut fsync_seen = None;
    match rel_dir {
        None => {
            rep.ok("replace", "skipped: no writable folder to test");
            rep.ok("append", "skipped: no writable folder to test");
        }
        Some(rel) => {
            let dir = join(root, rel.as_bytes());
            let (a, b, c) = (probe_name(), probe_name(), probe_name());
            let (pa, pb, pc) = (
                join(&dir, a.as_bytes()),
                join(&dir, b.as_bytes()),
                join(&dir, c.as_bytes()),
            );
            let replaced = replace_probe(remote, &pa, &pb, &mut fsync_seen);
            let shown = format!("{rel}/{a}");
            match replaced {
                Ok(()) => {
                    match remote.capabilities().replace {
                        ReplaceMode::Atomic => rep.ok(
                            "replace",
                            format!(
                                "atomic: a rename onto an existing name replaced it ({} \
                                 or the server's RENAME)",
                                ext::POSIX_RENAME
                            ),
                        ),
                        _ => rep.warn(
                            "replace",
                            format!(
                                "hidden-aside: the server's RENAME will not replace an existing \
                                 name and {} is missing or refused; coupafs moves the old file \
                                 to a hidden name first, so during a replace the name is briefly \
                                 missing (never partial, no extra visible file)",
                                ext::POSIX_RENAME
                            ),
                        ),
                    }
                    match append_probe(remote, &pa, &pc) {
                        Ok(()) => rep.ok(
                            "append",
                            "through a hidden temp file and a replace (the whole file is sent again)",
                        ),
                        Err(e) => rep.fail(
                            "append",
                            format!("{shown}: refuse: appending failed: {e}"),
                        ),
                    }
                }
                Err(e) => {
                    rep.fail(
                        "replace",
                        format!(
                            "{shown}: refuse: a rename onto an existing name failed ({e}); \
                             uploads over an existing name (cp or mv over a file) fail"
                        ),
                    );
                    rep.fail(
                        "append",
                        "refuse: appending needs a replace, which this server refused",
                    );
                }
            }
            for p in [&pa, &pb, &pc] {
                let _ = remote.remove(p);
            }
        }
    }
    capabilities(remote, root, fsync_seen, rep);
}

/// `a` (old) and `b` (new) created, `b` renamed onto `a`, `a` read back.
fn replace_probe(
    remote: &SftpRemote,
    a: &[u8],
    b: &[u8],
    fsync_seen: &mut Option<Result<(), RemoteError>>,
) -> Result<(), String> {
    put(remote, a, OLD, false).map_err(|e| format!("create failed: {e}"))?;
    *fsync_seen = put(remote, b, NEW, true).map_err(|e| format!("create failed: {e}"))?;
    remote.rename(b, a).map_err(|e| e.to_string())?;
    match content(remote, a) {
        Ok(d) if d == NEW => Ok(()),
        Ok(d) => Err(format!(
            "the name holds {} bytes after the rename, not the {} renamed onto it",
            d.len(),
            NEW.len()
        )),
        Err(e) => Err(format!("reading it back failed: {e}")),
    }
}

/// What coupafs does for `>>`: the whole new content to a temp `c`, then
/// `c` renamed onto `a`.
fn append_probe(remote: &SftpRemote, a: &[u8], c: &[u8]) -> Result<(), String> {
    let mut data = content(remote, a).map_err(|e| e.to_string())?;
    data.extend_from_slice(MORE);
    put(remote, c, &data, false).map_err(|e| e.to_string())?;
    remote.rename(c, a).map_err(|e| e.to_string())?;
    match content(remote, a) {
        Ok(d) if d == data => Ok(()),
        Ok(d) => Err(format!(
            "{} bytes after appending, not {}",
            d.len(),
            data.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// One line: fsync, statvfs and hard links, as coupafs will use them.
fn capabilities<W: Write>(
    remote: &SftpRemote,
    root: &[u8],
    fsync_seen: Option<Result<(), RemoteError>>,
    rep: &mut Report<W>,
) {
    let statvfs = remote.statvfs(root);
    let caps = remote.capabilities();
    let advertised = |name: &str| caps.extensions.iter().any(|e| e == name);
    let said = |name: &str, works: bool, yes: &str, no: &str| -> String {
        match (works, advertised(name)) {
            (true, _) => yes.to_string(),
            (false, true) => format!("advertised but refused: {no}"),
            (false, false) => no.to_string(),
        }
    };
    let fsync_works = match &fsync_seen {
        Some(r) => r.is_ok() && caps.fsync,
        None => caps.fsync,
    };
    let parts = [
        format!(
            "fsync: {}",
            said(
                ext::FSYNC,
                fsync_works,
                "yes",
                "no (fsync() succeeds once the bytes are on the server)"
            )
        ),
        format!(
            "statvfs: {}",
            said(
                ext::STATVFS,
                statvfs.is_ok() && caps.statvfs,
                "yes (df shows the server's figures)",
                "no (df shows a large, mostly free disk)"
            )
        ),
        format!(
            "hardlink: {}",
            said(
                ext::HARDLINK,
                caps.hardlink,
                "yes",
                "no (ln fails with EPERM)"
            )
        ),
    ];
    rep.ok("capabilities", parts.join("; "));
}
