//! Temp files left on the server. Our own: a temp this mount gave up on
//! (an interrupted upload, a failed or refused publish, a spare on a dead
//! connection) is removed at once, or, when the server cannot be reached,
//! kept by name in a set and removed as soon as a connection is up again
//! (after the next successful OPEN or commit, at each tick of the spare
//! worker, and at unmount, where any still left is named in the log).
//! Others': upload temps that no upload of this mount owns and that have
//! not changed for an hour are leftovers of a killed or cut-off mount,
//! removed when their folder is listed, and by one sweep of the upload
//! folders after mount that yields to the user's listings
//! (`sweep_stale_temps`).
//!
//! Aside copies (`remote::aside_path`: the old file of a replace on a server
//! without atomic replace) are recovered whatever their age: renamed back
//! when the final name is missing (a crash between the replace's two
//! RENAMEs), removed when it is there (a crash before the cleanup), so the
//! final name always ends up with the old or the new content.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::fs::temp_name::is_temp_name;
use crate::fs::{lock, to_secs, Fs};
use crate::remote::deadline::CallScope;
use crate::remote::{aside_target, DirEntry, Remote};

/// Temps of ours whose removal failed for want of a connection, keyed by
/// the remote they live on (one per mount; tests run several at once).
static DEFERRED: Mutex<BTreeSet<(usize, Vec<u8>)>> = Mutex::new(BTreeSet::new());

fn remote_id(remote: &dyn Remote) -> usize {
    (remote as *const dyn Remote).cast::<()>() as usize
}

/// Removes a temp file of ours. Never waits for a reconnect: with no
/// connection up, the name is kept and removed once one is
/// (`remove_deferred`).
pub(crate) fn remove_temp(remote: &dyn Remote, path: &[u8]) {
    let _background = CallScope::background();
    try_remove(remote, path);
}

/// Removes `path`, within the caller's time bound; keeps its name in
/// `DEFERRED` when the server cannot be reached.
fn try_remove(remote: &dyn Remote, path: &[u8]) {
    match remote.remove(path) {
        Err(e) if e.is_transport() => {
            log::debug!(
                "temp {} kept until the server is reachable: {e}",
                String::from_utf8_lossy(path)
            );
            lock(&DEFERRED).insert((remote_id(remote), path.to_vec()));
        }
        Err(e) if !e.is_not_found() => log::warn!(
            "cannot remove upload temp {}: {e}",
            String::from_utf8_lossy(path)
        ),
        _ => {}
    }
}

/// Removes the temps whose removal waited for a connection, if one is up
/// (never waits for one). Returns how many are still left.
pub(crate) fn remove_deferred(remote: &dyn Remote) -> usize {
    let _background = CallScope::background();
    remove_deferred_within(remote)
}

/// At unmount: removes the deferred temps, waiting for a connection within
/// `timeout`, and names in the log those that stay on the server.
pub(crate) fn remove_deferred_at_unmount(remote: &dyn Remote) {
    let _call = CallScope::enter();
    if remove_deferred_within(remote) == 0 {
        return;
    }
    for p in deferred_temps(remote) {
        log::error!(
            "upload temp {} could not be removed (server unreachable); the next mount \
             removes it once it is an hour old",
            String::from_utf8_lossy(&p)
        );
    }
}

fn remove_deferred_within(remote: &dyn Remote) -> usize {
    let id = remote_id(remote);
    let mine: Vec<Vec<u8>> = {
        let mut all = lock(&DEFERRED);
        let mine: Vec<Vec<u8>> = all
            .iter()
            .filter(|(r, _)| *r == id)
            .map(|(_, p)| p.clone())
            .collect();
        for p in &mine {
            all.remove(&(id, p.clone()));
        }
        mine
    };
    if mine.is_empty() {
        return 0;
    }
    for p in &mine {
        try_remove(remote, p);
    }
    let left = deferred_temps(remote).len();
    if left < mine.len() {
        log::info!(
            "removed {} upload temp(s) left by interrupted uploads",
            mine.len() - left
        );
    }
    left
}

/// Temps of ours still waiting for a connection to be removed.
pub(crate) fn deferred_temps(remote: &dyn Remote) -> Vec<Vec<u8>> {
    let id = remote_id(remote);
    lock(&DEFERRED)
        .iter()
        .filter(|(r, _)| *r == id)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Temp files unchanged this long belong to no live upload.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

impl<R: Remote> Fs<R> {
    /// Removes temp files that no upload of this mount owns and that have
    /// not changed for `STALE_TEMP_AGE`: leftovers of a killed or cut-off
    /// mount. (An upload whose temp was reaped by mistake re-uploads from
    /// its spool at close.)
    pub(super) fn reap_stale_temps(&self, dir: &[u8], temps: &[DirEntry]) {
        if temps.is_empty() || self.cfg.read_only {
            return;
        }
        let now = to_secs(SystemTime::now());
        let ours: Vec<Vec<u8>> = lock(&self.uploads)
            .values()
            .filter_map(|u| u.temp_path())
            .collect();
        for t in temps {
            if let Some(target) = aside_target(&t.name) {
                self.recover_aside(dir, &t.name, target);
                continue;
            }
            let mtime = t.meta.mtime.unwrap_or(now);
            if now.saturating_sub(mtime) < STALE_TEMP_AGE.as_secs() as u32 {
                continue;
            }
            let mut p = dir.to_vec();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(&t.name);
            if ours.contains(&p) {
                continue;
            }
            match self.remote.remove(&p) {
                Ok(()) => log::info!(
                    "removed stale upload temp file {}",
                    crate::error::escape(&p)
                ),
                Err(e) => log::debug!(
                    "cannot remove stale temp {}: {}",
                    crate::error::escape(&p),
                    crate::error::escape(e.to_string().as_bytes())
                ),
            }
        }
    }

    /// Finishes or undoes a hidden-aside replace that a crash interrupted.
    fn recover_aside(&self, dir: &[u8], aside_name: &[u8], target: &[u8]) {
        let join = |name: &[u8]| {
            let mut p = dir.to_vec();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        let (aside, to) = (join(aside_name), join(target));
        if self.remote.replace_in_progress(&aside) {
            return;
        }
        let shown = String::from_utf8_lossy(&to).into_owned();
        match self.remote.lstat(&to) {
            Ok(_) => match self.remote.remove(&aside) {
                Ok(()) => {
                    log::info!("removed the old copy left by an interrupted replace of {shown}")
                }
                Err(e) => log::debug!("cannot remove old copy of {shown}: {e}"),
            },
            Err(e) if e.is_not_found() => match self.remote.rename_noreplace(&aside, &to) {
                Ok(()) => {
                    // The cache may hold "no such name" from a listing.
                    let root = &self.cfg.remote_root;
                    if let Some(rel) = to
                        .strip_prefix(root.as_slice())
                        .map(|r| r.strip_prefix(b"/").unwrap_or(r))
                    {
                        self.cache.invalidate(rel);
                    }
                    log::warn!("restored {shown} from the old copy left by an interrupted replace")
                }
                Err(e) => log::warn!("cannot restore {shown} from its old copy: {e}"),
            },
            Err(e) => log::debug!("cannot check {shown}: {e}"),
        }
    }

    /// After mount: looks for stale temp files in the folders jobs upload
    /// to: the root and two levels below (Incoming/<Object>,
    /// Outgoing/<Object>) except `Archive` folders, and `upload_dir`.
    ///
    /// It must not compete with the user's first operations: it starts
    /// once a user's listing has finished, or `SWEEP_AFTER` after mount
    /// when none comes, and lists one folder at a time, each only while
    /// no other listing is in progress. Archive folders (Coupa moves
    /// processed files there and grows them to tens of thousands of
    /// entries; no upload is ever made there) are left to the reaping a
    /// listing does anyway (`list_dir`). Returns how many folders it
    /// listed.
    pub fn sweep_stale_temps(&self) -> usize {
        self.cache.wait_user_listing(SWEEP_AFTER);
        let root = self.cfg.remote_root.clone();
        let mut dirs = Vec::new();
        if !is_archive(last_name(&root)) {
            dirs.push((root, 0usize));
        }
        if let Some(d) = &self.cfg.naming.upload_dir {
            dirs.push((d.clone(), 2));
        }
        let mut listed = 0;
        while let Some((dir, depth)) = dirs.pop() {
            self.cache.wait_no_listing(SWEEP_YIELD_MAX);
            let Ok(entries) = self.remote.read_dir(&dir) else {
                continue;
            };
            listed += 1;
            let (temps, rest): (Vec<DirEntry>, Vec<DirEntry>) =
                entries.into_iter().partition(|e| is_temp_name(&e.name));
            self.reap_stale_temps(&dir, &temps);
            if depth < 2 {
                for e in rest {
                    if e.meta.is_dir() && !is_archive(&e.name) {
                        let mut p = dir.clone();
                        if !p.ends_with(b"/") {
                            p.push(b'/');
                        }
                        p.extend_from_slice(&e.name);
                        dirs.push((p, depth + 1));
                    }
                }
            }
        }
        listed
    }
}

/// The sweep starts this long after mount when no listing comes first.
const SWEEP_AFTER: Duration = Duration::from_secs(3);
/// Longest the sweep waits for other listings before each of its own.
const SWEEP_YIELD_MAX: Duration = Duration::from_secs(30);

/// Coupa's archive folders (`Archive`, `Archive/Incoming/<Object>`...):
/// never uploaded to, often huge.
fn is_archive(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"archive")
}

/// The last component of a remote path.
fn last_name(path: &[u8]) -> &[u8] {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    trimmed.rsplit(|b| *b == b'/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::fs::inode::ROOT_INO;
    use crate::fs::Fs;
    use crate::remote::mock::MockRemote;

    fn mount(remote: Arc<MockRemote>) -> (Arc<Fs<MockRemote>>, tempfile::TempDir) {
        let spool = tempfile::tempdir().expect("spool dir");
        let fs = Fs::new(
            remote,
            crate::fs::tests::test_config(spool.path(), Duration::from_secs(60), 0),
        );
        (fs, spool)
    }

    /// The mount-time sweep lists nothing before the user's first
    /// listing has finished, then sweeps the folders jobs upload to (a
    /// stale temp there goes) and leaves Archive folders to the reaping a
    /// listing does anyway.
    #[test]
    fn the_sweep_waits_for_the_first_listing_and_skips_archive_folders() {
        let remote = Arc::new(MockRemote::new());
        for d in ["Incoming/Invoices", "Outgoing/Invoices", "Archive/Incoming"] {
            remote.mkdir_p(&format!("/root/{d}"));
        }
        // The mock's files are years old: over the reap age.
        let stale = "/root/Incoming/Invoices/.old.csv.coupafs-0a1b2c";
        let archived = "/root/Archive/.old.csv.coupafs-3d4e5f";
        remote.put_file(stale, b"left by a killed mount");
        remote.put_file(archived, b"left by a killed mount");
        remote.put_file("/root/Incoming/Invoices/kept.csv", b"a,b\n");
        let (fs, _spool) = mount(remote.clone());
        let sweep = std::thread::spawn({
            let fs = fs.clone();
            move || fs.sweep_stale_temps()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            remote.calls("read_dir"),
            0,
            "the sweep listed before the user's first listing"
        );
        assert!(remote.file(stale).is_some());
        let dh = fs.opendir(ROOT_INO).expect("opendir");
        fs.releasedir(dh);
        let swept = sweep.join().expect("sweep thread");
        // The root, Incoming, Outgoing and their Invoices; not Archive nor
        // Archive/Incoming.
        assert_eq!(swept, 5);
        assert!(remote.file(stale).is_none(), "stale temp not removed");
        assert!(remote.file(archived).is_some(), "Archive swept");
        assert!(remote.file("/root/Incoming/Invoices/kept.csv").is_some());
    }

    #[test]
    fn archive_folders_are_named_by_their_last_component() {
        assert!(super::is_archive(super::last_name(b"/home/u/Archive/")));
        assert!(super::is_archive(super::last_name(b"archive")));
        assert!(!super::is_archive(super::last_name(b"/Archive/Incoming")));
    }
}
