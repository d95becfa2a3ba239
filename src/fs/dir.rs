//! Directory listings: one server listing per opendir (shared with the
//! cache), served from the kernel's offset into a `DirectoryReplier` that
//! the adapter implements over its reply buffer. Whether an entry costs
//! the kernel a lookup reference (readdirplus) is decided here.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::error::escape;
use crate::error::{FsError, FsResult, Op};
use crate::fs::inode::{check_name, join, split, BadName, ROOT_INO};
use crate::fs::temp_name::is_temp_name;
use crate::fs::upload::Upload;
use crate::fs::{lock, show, Fs, Kind, Stat};
use crate::remote::deadline::CallScope;
use crate::remote::{DirEntry, Meta, Remote};

/// Subfolders of one listing fetched ahead (`prefetch_subfolders`).
const PREFETCH_MAX_DIRS: usize = 64;
/// Threads one listing starts for that, within the mount's limit.
const PREFETCH_WORKERS_PER_LISTING: usize = 4;
/// Longest an opendir waits for the same folder's listing fetched ahead
/// before listing it itself.
const FETCH_AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether this warning is new: a folder listed again every few seconds
/// (cache timeout) warns about the same odd names once, then at debug
/// level. Remembers a bounded number of warnings (hashes).
fn first_time(line: &str) -> bool {
    static SEEN: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
    let mut h = DefaultHasher::new();
    line.hash(&mut h);
    let mut seen = lock(&SEEN);
    if seen.len() >= 4096 {
        seen.clear();
    }
    seen.insert(h.finish())
}

/// Where readdir puts entries: the adapter's reply buffer.
pub(crate) trait DirectoryReplier {
    /// Adds the entry `name` with inode `ino` and attributes `stat`;
    /// `offset` is where the next readdir resumes after it. Returns true
    /// when the buffer is full: this entry was not added.
    fn add(&mut self, ino: u64, offset: u64, name: &[u8], stat: &Stat) -> bool;
}

/// An open directory: the server listing (shared with the cache) between
/// `.`/`..` and the files being created that the server does not show yet.
pub(super) struct Listing {
    path: Vec<u8>,
    entries: Arc<Vec<DirEntry>>,
    head: Vec<DirItem>,
    tail: Vec<DirItem>,
}

impl Listing {
    fn len(&self) -> usize {
        self.head.len() + self.entries.len() + self.tail.len()
    }
}

/// One readdir entry.
#[derive(Clone, Debug)]
struct DirItem {
    name: Vec<u8>,
    stat: Stat,
}

impl<R: Remote> Fs<R> {
    /// Lists `path` on the server (temp files hidden, stale ones reaped)
    /// and caches the listing.
    pub(super) fn list_dir(&self, path: &[u8]) -> FsResult<Arc<Vec<DirEntry>>> {
        let listed = self
            .remote
            .read_dir(&self.remote_path(path))
            .map_err(|e| FsError::remote(Op::Readdir, show(path), &e))?;
        let mut listed = self.drop_bad_names(path, listed);
        // Temp files are rare: take them out in place rather than copying
        // every entry into a second vector.
        let mut temps = Vec::new();
        if listed.iter().any(|e| is_temp_name(&e.name)) {
            let (t, kept): (Vec<DirEntry>, Vec<DirEntry>) =
                listed.into_iter().partition(|e| is_temp_name(&e.name));
            temps = t;
            listed = kept;
        }
        self.reap_stale_temps(&self.remote_path(path), &temps);
        // The listing stays cached: hold no spare capacity.
        listed.shrink_to_fit();
        let listed = Arc::new(listed);
        self.cache.put_dir(path, listed.clone());
        Ok(listed)
    }

    /// `find` and `du` list every subfolder right after their parent, one
    /// at a time: when a folder is opened, fetch its subfolders' listings
    /// ahead, a few at once (the cache's
    /// `PREFETCH_IN_FLIGHT`, shared by the mount), at most
    /// `PREFETCH_MAX_DIRS` per listing, into the cache (whose byte budget
    /// bounds the memory). Temp files are left out but not reaped: that
    /// waits for a listing someone asked for.
    fn prefetch_subfolders(&self, path: &[u8], listed: &[DirEntry]) {
        if self.cfg.cache_ttl.is_zero() {
            return;
        }
        let mut queue: Vec<(Vec<u8>, Vec<u8>)> = listed
            .iter()
            .filter(|e| e.meta.is_dir())
            .take(PREFETCH_MAX_DIRS)
            .map(|e| join(path, &e.name))
            .filter(|p| self.cache.dir(p).is_none())
            .map(|p| {
                let full = self.remote_path(&p);
                (p, full)
            })
            .collect();
        if queue.is_empty() {
            return;
        }
        queue.reverse(); // popped from the end: in listing order
        let workers = queue.len().min(PREFETCH_WORKERS_PER_LISTING);
        let queue = Arc::new(Mutex::new(queue));
        // When the mount's slots are taken, what is left is listed when
        // asked for, as without fetching ahead.
        for _ in 0..workers {
            if !self.cache.claim_prefetch() {
                break;
            }
            let remote = self.dyn_remote.clone();
            let cache = self.cache.clone();
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name("list-ahead".into())
                .spawn({
                    let cache = cache.clone();
                    move || {
                        loop {
                            let next = lock(&queue).pop();
                            let Some((sub, full)) = next else { break };
                            if !cache.start_listing(&sub) {
                                continue; // an opendir is listing it
                            }
                            if cache.dir(&sub).is_some() {
                                cache.end_listing(&sub);
                                continue;
                            }
                            let changes = cache.changes();
                            // A failure here is someone else's to report:
                            // the listing asked for later fetches again.
                            if let Ok(mut l) = remote.read_dir(&full) {
                                l.retain(|e| check_name(&e.name).is_ok() && !is_temp_name(&e.name));
                                l.shrink_to_fit();
                                cache.put_dir_since(&sub, Arc::new(l), changes);
                            }
                            cache.end_listing(&sub);
                        }
                        cache.release_prefetch();
                    }
                });
            if spawned.is_err() {
                cache.release_prefetch();
                break;
            }
        }
    }

    /// The entries of a server listing the kernel can take. One it cannot
    /// (a `/` fails the whole readdir reply with EIO, NUL truncates, over
    /// NAME_MAX breaks programs) is left out, with one warning per listing
    /// naming them escaped; the server's own `.` and `..` go silently.
    fn drop_bad_names(&self, path: &[u8], mut listed: Vec<DirEntry>) -> Vec<DirEntry> {
        let mut bad = Vec::new();
        listed.retain(|e| match check_name(&e.name) {
            Ok(()) => true,
            Err(BadName::Reserved) if !e.name.is_empty() => false,
            Err(why) => {
                let why = match why {
                    BadName::TooLong => "over 255 bytes",
                    BadName::Separator => "holds '/' or NUL",
                    BadName::Reserved => "empty",
                };
                bad.push(format!("\"{}\" ({why})", escape(&e.name)));
                false
            }
        });
        if !bad.is_empty() {
            let line = format!(
                "listing {}: skipped {} server name(s) no local program can use: {}",
                show(path),
                bad.len(),
                bad.join(", ")
            );
            if first_time(&line) {
                log::warn!("{line}");
            } else {
                log::debug!("{line}");
            }
        }
        listed
    }

    /// Lists a directory once per opendir; readdir serves slices of it.
    pub(crate) fn opendir(&self, ino: u64) -> FsResult<u64> {
        // One deadline for the whole system call (`remote::deadline`).
        let _call = CallScope::enter();
        let path = self.path_of(Op::Readdir, ino)?;
        // One listing of a folder at a time: one being made (fetched ahead,
        // or another opendir's) is waited for, not repeated.
        let entries = loop {
            if let Some(e) = self.cache.dir(&path) {
                break Ok(e);
            }
            if self.cache.start_listing(&path) {
                let listed = self.list_dir(&path);
                self.cache.end_listing(&path);
                break listed;
            }
            if !self.cache.wait_listing(&path, FETCH_AHEAD_WAIT) {
                break self.list_dir(&path);
            }
        };
        // The mount-time sweep waits for this (janitor.rs).
        self.cache.note_user_listing();
        let entries = entries?;
        // Also for a listing fetched ahead: a walk stays ahead at every level.
        self.prefetch_subfolders(&path, &entries);
        let parent_ino = {
            let (parent, _) = split(&path);
            if ino == ROOT_INO {
                ROOT_INO
            } else {
                lock(&self.inodes).ino_of(parent).unwrap_or(ROOT_INO)
            }
        };
        let dot = Meta {
            kind: Some(Kind::Dir),
            permissions: Some(0o755),
            ..Meta::default()
        };
        let head = vec![
            DirItem {
                name: b".".to_vec(),
                stat: self.stat_from(ino, &dot),
            },
            DirItem {
                name: b"..".to_vec(),
                stat: self.stat_from(parent_ino, &dot),
            },
        ];
        // Files created through the mount and not yet published show under
        // their final name from create() on.
        let pending: Vec<(u64, Arc<Upload>)> = lock(&self.uploads)
            .iter()
            .map(|(i, u)| (*i, u.clone()))
            .collect();
        let mut tail = Vec::new();
        for (child_ino, up) in pending {
            if !up.state().shown() {
                continue;
            }
            let child = lock(&self.inodes).path(child_ino).map(<[u8]>::to_vec);
            if let Some(child) = child {
                let (dir, name) = split(&child);
                if dir == path.as_slice() && !entries.iter().any(|e| e.name == name) {
                    tail.push(DirItem {
                        name: name.to_vec(),
                        stat: self.upload_stat(child_ino, &up),
                    });
                }
            }
        }
        let fh = self.new_fh();
        lock(&self.dir_handles).insert(
            fh,
            Arc::new(Listing {
                path,
                entries,
                head,
                tail,
            }),
        );
        Ok(fh)
    }

    /// readdir: the entries of the snapshot taken at opendir from the
    /// kernel's `offset` on, until `out` is full. The kernel takes no
    /// reference to them, so no inode is assigned (d_ino is informational).
    pub(crate) fn readdir(
        &self,
        dir: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirectoryReplier,
    ) -> FsResult<()> {
        let listing = self.listing(fh)?;
        for i in (offset as usize)..listing.len() {
            if let Some(e) = server_entry(&listing, i) {
                // The common case, without copying the name.
                let child_ino = lock(&self.inodes)
                    .ino_of(&join(&listing.path, &e.name))
                    .unwrap_or(0);
                let stat = self.stat_from(child_ino, &e.meta);
                if out.add(
                    peek_ino(dir, child_ino, &e.name),
                    (i + 1) as u64,
                    &e.name,
                    &stat,
                ) {
                    break;
                }
                continue;
            }
            let Some(item) = self.listing_item(&listing, i) else {
                break;
            };
            let ino = peek_ino(dir, item.stat.ino, &item.name);
            if out.add(ino, (i + 1) as u64, &item.name, &item.stat) {
                break;
            }
        }
        Ok(())
    }

    /// readdirplus: as `readdir`, with attributes; the kernel takes a
    /// lookup reference to each entry added (except `.` and `..`), so each
    /// is counted, and one the full buffer refused is not.
    pub(crate) fn readdirplus(
        &self,
        dir: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirectoryReplier,
    ) -> FsResult<()> {
        let listing = self.listing(fh)?;
        // Once per reply, not per entry.
        let dir_path = self.path_of(Op::Readdir, dir).ok();
        for i in (offset as usize)..listing.len() {
            if let (Some(e), Some(dir_path)) = (server_entry(&listing, i), dir_path.as_deref()) {
                // The common case, without copying the name.
                let ino = lock(&self.inodes).lookup(&join(dir_path, &e.name));
                let stat = self.stat_from(ino, &e.meta);
                if out.add(ino, (i + 1) as u64, &e.name, &stat) {
                    self.forget(ino, 1);
                    break;
                }
                continue;
            }
            let Some(item) = self.listing_item(&listing, i) else {
                break;
            };
            let ino = self.remember_entry(dir_path.as_deref(), &item);
            let mut stat = item.stat;
            stat.ino = ino;
            if out.add(ino, (i + 1) as u64, &item.name, &stat) {
                if item.name != b"." && item.name != b".." {
                    self.forget(ino, 1);
                }
                break;
            }
        }
        Ok(())
    }

    /// The listing snapshot taken at opendir (sharing the cached listing,
    /// not a copy).
    fn listing(&self, fh: u64) -> FsResult<Arc<Listing>> {
        lock(&self.dir_handles).get(&fh).cloned().ok_or_else(|| {
            FsError::new(
                Op::Readdir,
                format!("handle {fh}"),
                libc::EBADF,
                "unknown handle",
            )
        })
    }

    /// Entry `index` of a listing, with attributes from the listing itself.
    /// Inode 0 means "not assigned yet" (readdirplus assigns real ones).
    fn listing_item(&self, listing: &Listing, index: usize) -> Option<DirItem> {
        if let Some(item) = listing.head.get(index) {
            return Some(item.clone());
        }
        let index = index - listing.head.len();
        if let Some(e) = listing.entries.get(index) {
            let child = join(&listing.path, &e.name);
            let child_ino = lock(&self.inodes).ino_of(&child).unwrap_or(0);
            return Some(DirItem {
                name: e.name.clone(),
                stat: self.stat_from(child_ino, &e.meta),
            });
        }
        listing.tail.get(index - listing.entries.len()).cloned()
    }

    /// readdirplus hands the kernel a reference per entry: count it.
    fn remember_entry(&self, dir_path: Option<&[u8]>, item: &DirItem) -> u64 {
        if item.name == b"." || item.name == b".." {
            return item.stat.ino;
        }
        let Some(dir_path) = dir_path else {
            return item.stat.ino;
        };
        lock(&self.inodes).lookup(&join(dir_path, &item.name))
    }

    pub(crate) fn releasedir(&self, fh: u64) {
        lock(&self.dir_handles).remove(&fh);
    }
}

/// Entry `index` of a listing when it is one of the server's (not `.`,
/// `..` or a file being created).
fn server_entry(listing: &Listing, index: usize) -> Option<&DirEntry> {
    listing.entries.get(index.checked_sub(listing.head.len())?)
}

/// Placeholder inode for plain readdir entries the kernel takes no
/// reference to (d_ino is informational): `ino` when known, else a hash.
fn peek_ino(dir: u64, ino: u64, name: &[u8]) -> u64 {
    if ino != 0 {
        return ino;
    }
    let name_hash = name
        .iter()
        .fold(dir.wrapping_mul(1_099_511_628_211), |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(1_099_511_628_211)
        });
    name_hash | (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::first_time;

    use std::ffi::OsStr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::DirectoryReplier;
    use crate::fs::cache::{listing_bytes, ENTRY_BYTES};
    use crate::fs::inode::ROOT_INO;
    use crate::fs::{Fs, Stat};
    use crate::remote::mock::MockRemote;

    /// A mount over the mock with `n` files `Invoices_NNNNNN.csv` (19-byte
    /// names) in `/Archive`.
    fn archive(n: usize) -> (Arc<Fs<MockRemote>>, Arc<MockRemote>, tempfile::TempDir, u64) {
        let remote = Arc::new(MockRemote::new());
        remote.mkdir_p("/root/Archive");
        for i in 0..n {
            remote.put_file(&format!("/root/Archive/Invoices_{i:06}.csv"), b"x");
        }
        mount(remote)
    }

    /// A mount of `/root` on `remote`, with the inode of `/Archive`.
    fn mount(
        remote: Arc<MockRemote>,
    ) -> (Arc<Fs<MockRemote>>, Arc<MockRemote>, tempfile::TempDir, u64) {
        let spool = tempfile::tempdir().expect("spool dir");
        let fs = Fs::new(
            remote.clone(),
            crate::fs::tests::test_config(spool.path(), Duration::from_secs(60), 0),
        );
        let dir = fs
            .lookup(ROOT_INO, OsStr::new("Archive"))
            .expect("lookup")
            .ino;
        (fs, remote, spool, dir)
    }

    /// Counts entries as the kernel's reply buffer would take them (about
    /// 4 KiB of small entries per reply).
    struct Count {
        n: usize,
        room: usize,
    }

    impl DirectoryReplier for Count {
        fn add(&mut self, _ino: u64, _offset: u64, _name: &[u8], _stat: &Stat) -> bool {
            if self.room == 0 {
                return true;
            }
            self.room -= 1;
            self.n += 1;
            false
        }
    }

    /// Lists `dir` to the end with readdirplus replies; returns the entries.
    fn list_all(fs: &Fs<MockRemote>, dir: u64) -> usize {
        let dh = fs.opendir(dir).expect("opendir");
        let mut total = 0;
        loop {
            let mut out = Count { n: 0, room: 40 };
            fs.readdirplus(dir, dh, total as u64, &mut out)
                .expect("readdirplus");
            if out.n == 0 {
                break;
            }
            total += out.n;
        }
        fs.releasedir(dh);
        total
    }

    /// The local cost per entry of a cold `ls -l` of a 20,000-entry
    /// folder (listing, cache fill, readdirplus replies). Prints ns/entry;
    /// timing is never pass/fail, the count is.
    #[test]
    fn local_cost_per_entry_of_a_big_listing() {
        let n = 20_000;
        let (fs, remote, _spool, dir) = archive(n);
        let t0 = Instant::now();
        let server = crate::remote::Remote::read_dir(remote.as_ref(), b"/root/Archive")
            .expect("mock listing");
        let mock_took = t0.elapsed();
        assert_eq!(server.len(), n);
        let t0 = Instant::now();
        let listed = list_all(&fs, dir);
        let took = t0.elapsed().saturating_sub(mock_took);
        assert_eq!(listed, n + 2, "entries plus . and ..");
        eprintln!(
            "cold listing of {n} entries: {} ns/entry local (cache fill, readdirplus), \
             the mock server's own listing {} ns/entry aside (this build's profile: indicative only)",
            took.as_nanos() / n as u128,
            mock_took.as_nanos() / n as u128
        );
    }

    /// A 100,000-entry Archive folder is held in at most
    /// `ENTRY_BYTES` plus its name's length per entry (doc/OPERATIONS.md
    /// states the bound), and stays listable.
    #[test]
    fn a_100000_entry_listing_stays_within_its_memory_bound() {
        let n = 100_000;
        let name_len = "Invoices_000000.csv".len();
        let (fs, _remote, _spool, dir) = archive(n);
        let path = fs.path_of(crate::error::Op::Readdir, dir).expect("path");
        let entries = fs.list_dir(&path).expect("list");
        assert_eq!(entries.len(), n);
        let bound = n * (ENTRY_BYTES + name_len);
        let held = listing_bytes(&entries);
        assert!(held <= bound, "listing holds {held} bytes, bound {bound}");
        assert_eq!(list_all(&fs, dir), n + 2);
    }

    /// `find` lists every subfolder right after its parent. Once
    /// a folder is listed, its subfolders' listings are fetched ahead (in
    /// the background, a few at once), so walking them costs no further
    /// listing; a change of ours still shows at once.
    #[test]
    fn subfolder_listings_are_fetched_ahead() {
        let remote = Arc::new(MockRemote::new());
        for d in 0..20 {
            remote.mkdir_p(&format!("/root/Archive/Object{d:02}"));
            for f in 0..10 {
                remote.put_file(&format!("/root/Archive/Object{d:02}/export_{f}.csv"), b"x");
            }
        }
        let (fs, remote, _spool, top) = mount(remote);
        assert_eq!(list_all(&fs, top), 22);
        // Walked at once, as `find` does: a folder being fetched ahead is
        // waited for, not listed a second time.
        for d in 0..20 {
            let sub = fs
                .lookup(top, OsStr::new(&format!("Object{d:02}")))
                .expect("lookup")
                .ino;
            assert_eq!(list_all(&fs, sub), 12, "Object{d:02}");
        }
        let t0 = Instant::now();
        while remote.calls("read_dir") < 21 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} listings",
                remote.calls("read_dir")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Let the last fetched listing reach the cache.
        std::thread::sleep(Duration::from_millis(50));
        for d in 0..20 {
            let sub = fs
                .lookup(top, OsStr::new(&format!("Object{d:02}")))
                .expect("lookup")
                .ino;
            assert_eq!(list_all(&fs, sub), 12, "Object{d:02}");
        }
        assert_eq!(remote.calls("read_dir"), 21, "no folder listed twice");
        // Our own new file shows in a folder listed ahead.
        let sub = fs.lookup(top, OsStr::new("Object03")).expect("lookup").ino;
        fs.mkdir(sub, OsStr::new("new"), 0o755).expect("mkdir");
        assert_eq!(list_all(&fs, sub), 13);
    }

    /// A folder served from a listing fetched ahead fetches its own
    /// subfolders ahead in turn: a deeper walk waits for no level.
    #[test]
    fn fetching_ahead_continues_below_a_folder_fetched_ahead() {
        let remote = Arc::new(MockRemote::new());
        for d in 0..5 {
            remote.mkdir_p(&format!("/root/Archive/Incoming/Object{d}"));
            remote.put_file(
                &format!("/root/Archive/Incoming/Object{d}/export.csv"),
                b"x",
            );
        }
        let (fs, remote, _spool, top) = mount(remote);
        assert_eq!(list_all(&fs, top), 3);
        let incoming = fs.lookup(top, OsStr::new("Incoming")).expect("lookup").ino;
        assert_eq!(list_all(&fs, incoming), 7);
        let t0 = Instant::now();
        while remote.calls("read_dir") < 7 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} listings",
                remote.calls("read_dir")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for d in 0..5 {
            let sub = fs
                .lookup(incoming, OsStr::new(&format!("Object{d}")))
                .expect("lookup")
                .ino;
            assert_eq!(list_all(&fs, sub), 3);
        }
        assert_eq!(remote.calls("read_dir"), 7, "each folder listed once");
    }

    #[test]
    fn the_same_warning_is_logged_once() {
        let line = format!("listing /t{}: skipped", std::process::id());
        assert!(first_time(&line));
        assert!(!first_time(&line));
        assert!(first_time(&format!("{line} more")));
    }
}
