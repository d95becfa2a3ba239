//! Metadata cache: attributes, directory listings and negative lookups, each
//! in a bounded LRU with a TTL (`cache_timeout`). The mount's own changes
//! invalidate what they touch at once (the sshfs rule), so a job never sees
//! its own write stale; remote changes show up within the TTL.
//!
//! It also keeps, per directory, the set of names the directory is known to
//! hold (from a listing, or empty after our own mkdir). Within the TTL a
//! lookup of any other name is answered "absent" with no round trip: that is
//! what `cp -r`, `tar x` and `cat > x.tmp` ask before every create. The set
//! errs only towards "maybe present": every change of ours adds the name
//! (`invalidate`), and only a removal the server confirmed takes it out.
//!
//! Memory: cached listings together hold at most `DIRS_MAX_BYTES` (by
//! `listing_bytes`: `ENTRY_BYTES` plus the name per entry), attributes at
//! most `ATTR_CAPACITY` entries, so a 100,000-entry Archive folder costs a
//! bounded amount however often it is listed (doc/OPERATIONS.md).

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::fs::inode::{join, split};
use crate::remote::{DirEntry, Meta};

const ATTR_CAPACITY: usize = 65_536;
const DIR_CAPACITY: usize = 256;
const NEGATIVE_CAPACITY: usize = 16_384;
/// Name sets are kept for this many directories...
const NAMES_CAPACITY: usize = 256;
/// ...of at most this many entries (a 100k-entry Archive folder is listed,
/// not created in: its set would cost memory for nothing).
const NAMES_MAX_ENTRIES: usize = 20_000;

/// Bytes the cached listings may hold together (`listing_bytes`); the
/// least recently used go first. A 100,000-entry folder fits several times.
const DIRS_MAX_BYTES: usize = 64 << 20;

/// Fixed bytes per listed entry, its name's bytes aside: the `DirEntry`
/// slot (the name's pointer, length, capacity and the attributes).
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<DirEntry>();
// doc/OPERATIONS.md states the bound with this figure.
const _: () = assert!(ENTRY_BYTES <= 96);

/// Bytes a listing holds on the heap: its slots (by capacity) and names.
pub(crate) fn listing_bytes(entries: &Vec<DirEntry>) -> usize {
    entries.capacity() * ENTRY_BYTES + entries.iter().map(|e| e.name.capacity()).sum::<usize>()
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

use crate::sync::lock;

type Listing = (Arc<Vec<DirEntry>>, Instant, usize);

/// Cached listings with the bytes they hold (`listing_bytes`).
struct Dirs {
    lru: LruCache<Vec<u8>, Listing>,
    bytes: usize,
}

impl Dirs {
    fn pop(&mut self, path: &[u8]) {
        if let Some((_, _, b)) = self.lru.pop(path) {
            self.bytes -= b;
        }
    }

    /// Stores a listing, dropping the least recently used ones while the
    /// total would pass `DIRS_MAX_BYTES` (or the count, `DIR_CAPACITY`).
    fn put(&mut self, path: Vec<u8>, entries: Arc<Vec<DirEntry>>, at: Instant) {
        self.pop(&path);
        let b = listing_bytes(&entries);
        while self.bytes + b > DIRS_MAX_BYTES || self.lru.len() >= self.lru.cap().get() {
            match self.lru.pop_lru() {
                Some((_, (_, _, old))) => self.bytes -= old,
                None => break,
            }
        }
        if b <= DIRS_MAX_BYTES {
            self.bytes += b;
            self.lru.put(path, (entries, at, b));
        }
    }
}
/// Names a directory holds (a superset of the truth).
struct NameSet {
    names: HashSet<Vec<u8>>,
    /// When the listing (or our mkdir) that started it was taken; None
    /// while it only counts misses in a folder never listed.
    since: Option<Instant>,
    /// Lookups it answered "absent": a folder being created in.
    hits: u32,
}

impl NameSet {
    fn new(names: HashSet<Vec<u8>>, since: Instant) -> Self {
        Self {
            names,
            since: Some(since),
            hits: 0,
        }
    }
}

/// A folder whose expired name set answered this many lookups is worth
/// listing again rather than asking the server about each new name.
const HOT_FOLDER_HITS: u32 = 3;
/// ...as long as that listing is short (a lookup must not turn into
/// listing a big Outgoing folder every few seconds).
const RELIST_MAX_ENTRIES: usize = 1_000;

pub(crate) struct MetaCache {
    ttl: Duration,
    attrs: Mutex<LruCache<Vec<u8>, (Meta, Instant)>>,
    dirs: Mutex<Dirs>,
    negative: Mutex<LruCache<Vec<u8>, Instant>>,
    names: Mutex<LruCache<Vec<u8>, NameSet>>,
    /// Counts the mount's own changes (`invalidate`): a listing fetched
    /// ahead across one of them may miss it and is not stored.
    changes: AtomicU64,
    /// Listings being fetched ahead right now (`claim_prefetch`).
    prefetching: AtomicUsize,
    /// Folders being listed (by an opendir or fetched ahead): another
    /// opendir of one waits for that listing rather than making a second.
    fetching: Mutex<HashSet<Vec<u8>>>,
    fetched: Condvar,
    /// Listings a user's opendir finished (`note_user_listing`): the
    /// mount-time sweep waits for the first (`wait_user_listing`).
    user_listings: AtomicU64,
}

/// Subfolder listings fetched ahead at once, per mount.
const PREFETCH_IN_FLIGHT: usize = 4;

impl MetaCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            attrs: Mutex::new(LruCache::new(cap(ATTR_CAPACITY))),
            dirs: Mutex::new(Dirs {
                lru: LruCache::new(cap(DIR_CAPACITY)),
                bytes: 0,
            }),
            negative: Mutex::new(LruCache::new(cap(NEGATIVE_CAPACITY))),
            names: Mutex::new(LruCache::new(cap(NAMES_CAPACITY))),
            changes: AtomicU64::new(0),
            prefetching: AtomicUsize::new(0),
            fetching: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
            user_listings: AtomicU64::new(0),
        }
    }

    /// A user's opendir has its listing (or its error).
    pub(crate) fn note_user_listing(&self) {
        // Under the lock the waiters check under: no wake-up is lost.
        let _set = lock(&self.fetching);
        self.user_listings.fetch_add(1, Ordering::SeqCst);
        self.fetched.notify_all();
    }

    /// Waits, at most `max`, until a user's opendir has finished a
    /// listing; true when one has.
    pub(crate) fn wait_user_listing(&self, max: Duration) -> bool {
        self.wait_while(max, |_| self.user_listings.load(Ordering::SeqCst) == 0)
    }

    /// Waits, at most `max`, until no folder is being listed (by an
    /// opendir or fetched ahead): background work goes after them.
    pub(crate) fn wait_no_listing(&self, max: Duration) {
        self.wait_while(max, |set| !set.is_empty());
    }

    /// Marks `path` as being listed; false if it already is.
    pub(crate) fn start_listing(&self, path: &[u8]) -> bool {
        lock(&self.fetching).insert(path.to_vec())
    }

    /// The listing of `path` is stored (or failed).
    pub(crate) fn end_listing(&self, path: &[u8]) {
        lock(&self.fetching).remove(path);
        self.fetched.notify_all();
    }

    /// Waits, at most `max`, while `path` is being listed; false when
    /// `max` ran out. No lock is held across the listing's round trips: the
    /// lister holds none, the waiter sleeps on the condition variable.
    pub(crate) fn wait_listing(&self, path: &[u8], max: Duration) -> bool {
        self.wait_while(max, |set| set.contains(path))
    }

    /// Sleeps on the listing condition variable while `busy` holds of the
    /// set of folders being listed, at most `max`; false when `max` ran out.
    fn wait_while(&self, max: Duration, busy: impl Fn(&HashSet<Vec<u8>>) -> bool) -> bool {
        let deadline = Instant::now() + max;
        let mut set = lock(&self.fetching);
        while busy(&set) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            set = self
                .fetched
                .wait_timeout(set, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// The count of the mount's own changes so far (see `put_dir_since`).
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Stores a listing fetched ahead, unless the mount changed something
    /// since `changes` was read (the listing could miss that change).
    pub(crate) fn put_dir_since(&self, path: &[u8], entries: Arc<Vec<DirEntry>>, changes: u64) {
        if self.changes() == changes && self.dir(path).is_none() {
            self.put_dir(path, entries);
        }
    }

    /// Takes one of the `PREFETCH_IN_FLIGHT` slots for fetching a listing
    /// ahead; false when all are taken.
    pub(crate) fn claim_prefetch(&self) -> bool {
        self.prefetching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < PREFETCH_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release_prefetch(&self) {
        self.prefetching.fetch_sub(1, Ordering::SeqCst);
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    pub(crate) fn attrs(&self, path: &[u8]) -> Option<Meta> {
        let mut c = lock(&self.attrs);
        match c.get(path) {
            Some((a, at)) if self.fresh(*at) => Some(a.clone()),
            Some(_) => {
                c.pop(path);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put_attrs(&self, path: &[u8], attrs: Meta) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.negative).pop(path);
        self.note_maybe_present(path);
        lock(&self.attrs).put(path.to_vec(), (attrs, Instant::now()));
    }

    pub(crate) fn dir(&self, path: &[u8]) -> Option<Arc<Vec<DirEntry>>> {
        let mut c = lock(&self.dirs);
        match c.lru.get(path) {
            Some((d, at, _)) if self.fresh(*at) => Some(d.clone()),
            Some(_) => {
                c.pop(path);
                None
            }
            None => None,
        }
    }

    /// Stores a listing and the attributes of every entry in it, so `ls -l`
    /// after `ls` needs no STAT per file.
    pub(crate) fn put_dir(&self, path: &[u8], entries: Arc<Vec<DirEntry>>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        {
            let mut attrs = lock(&self.attrs);
            for e in entries.iter() {
                attrs.put(join(path, &e.name), (e.meta.clone(), now));
            }
        }
        if entries.len() <= NAMES_MAX_ENTRIES {
            let set = entries.iter().map(|e| e.name.clone()).collect();
            lock(&self.names).put(path.to_vec(), NameSet::new(set, now));
        } else {
            // Grown too big: never worth listing again for a lookup.
            lock(&self.names).pop(path);
        }
        lock(&self.dirs).put(path.to_vec(), entries, now);
    }

    /// A directory we just created: it holds nothing yet.
    pub(crate) fn put_empty_dir(&self, path: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.names).put(path.to_vec(), NameSet::new(HashSet::new(), Instant::now()));
    }

    /// Whether `path` is known not to exist: a fresh negative entry, or a
    /// fresh name set of its directory without it.
    pub(crate) fn is_negative(&self, path: &[u8]) -> bool {
        if self.negative_entry(path) {
            return true;
        }
        if path.is_empty() {
            return false; // the mount's root always exists
        }
        let (dir, name) = split(path);
        let mut names = lock(&self.names);
        match names.get_mut(dir) {
            Some(set) if set.since.is_some_and(|t| self.fresh(t)) && !set.names.contains(name) => {
                set.hits = set.hits.saturating_add(1);
                true
            }
            // Expired sets stay (as unknown) so `wants_relisting` can see
            // how busy the folder was.
            _ => false,
        }
    }

    /// A removal (unlink, rmdir, the source of a rename) the server
    /// confirmed: the name is gone.
    pub(crate) fn note_removed(&self, path: &[u8]) {
        let (dir, name) = split(path);
        if let Some(set) = lock(&self.names).peek_mut(dir) {
            set.names.remove(name);
        }
        self.put_negative(path);
    }

    /// Whether the folder of `path` had a name set that expired after
    /// answering several lookups: a job is creating files there, and one
    /// listing (two round trips) beats one LSTAT per new name.
    pub(crate) fn wants_relisting(&self, path: &[u8]) -> bool {
        if path.is_empty() || self.ttl.is_zero() {
            return false;
        }
        let dir = split(path).0;
        lock(&self.names).peek(dir).is_some_and(|set| {
            !set.since.is_some_and(|t| self.fresh(t))
                && set.hits >= HOT_FOLDER_HITS
                && set.names.len() <= RELIST_MAX_ENTRIES
        })
    }

    /// `path` may exist now (any change of ours goes through here).
    fn note_maybe_present(&self, path: &[u8]) {
        let (dir, name) = split(path);
        if let Some(set) = lock(&self.names).peek_mut(dir) {
            set.names.insert(name.to_vec());
        }
    }

    /// A name known not to exist.
    fn negative_entry(&self, path: &[u8]) -> bool {
        let mut c = lock(&self.negative);
        match c.get(path) {
            Some(at) if self.fresh(*at) => true,
            Some(_) => {
                c.pop(path);
                false
            }
            None => false,
        }
    }

    pub(crate) fn put_negative(&self, path: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.attrs).pop(path);
        lock(&self.negative).put(path.to_vec(), Instant::now());
        // The server said "no such name": count it towards the folder's
        // hotness (see `wants_relisting`).
        if !path.is_empty() {
            let dir = split(path).0;
            let mut names = lock(&self.names);
            match names.get_mut(dir) {
                Some(set) => set.hits = set.hits.saturating_add(1),
                None => {
                    names.put(
                        dir.to_vec(),
                        NameSet {
                            names: HashSet::new(),
                            since: None,
                            hits: 1,
                        },
                    );
                }
            }
        }
    }

    /// Forgets everything known about `path` and its parent's listing: call
    /// after every change the mount makes.
    pub(crate) fn invalidate(&self, path: &[u8]) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        lock(&self.attrs).pop(path);
        lock(&self.negative).pop(path);
        self.note_maybe_present(path);
        let mut dirs = lock(&self.dirs);
        dirs.pop(path);
        dirs.pop(split(path).0);
    }

    /// Forgets a whole subtree (a renamed or removed directory).
    pub(crate) fn invalidate_tree(&self, path: &[u8]) {
        self.invalidate(path);
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let under = |p: &Vec<u8>| p.starts_with(&prefix);
        for m in [&self.attrs] {
            let mut c = lock(m);
            let keys: Vec<Vec<u8>> = c
                .iter()
                .filter(|(k, _)| under(k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                c.pop(&k);
            }
        }
        let mut d = lock(&self.dirs);
        let keys: Vec<Vec<u8>> = d
            .lru
            .iter()
            .filter(|(k, _)| under(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            d.pop(&k);
        }
        let mut n = lock(&self.negative);
        let keys: Vec<Vec<u8>> = n
            .iter()
            .filter(|(k, _)| under(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            n.pop(&k);
        }
        drop(n);
        let mut names = lock(&self.names);
        let keys: Vec<Vec<u8>> = names
            .iter()
            .filter(|(k, _)| k.as_slice() == path || under(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            names.pop(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Kind;

    fn file(size: u64) -> Meta {
        Meta {
            size: Some(size),
            kind: Some(Kind::File),
            permissions: Some(0o644),
            ..Meta::default()
        }
    }

    /// A listing of `n` one-byte files `f0`, `f1`, ...
    fn files(n: usize) -> Arc<Vec<DirEntry>> {
        Arc::new(
            (0..n)
                .map(|i| DirEntry {
                    name: format!("f{i}").into_bytes(),
                    meta: file(1),
                })
                .collect(),
        )
    }

    #[test]
    fn attrs_expire_after_ttl() {
        let c = MetaCache::new(Duration::from_millis(50));
        c.put_attrs(b"a", file(1));
        assert_eq!(c.attrs(b"a"), Some(file(1)));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.attrs(b"a"), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = MetaCache::new(Duration::ZERO);
        c.put_attrs(b"a", file(1));
        c.put_negative(b"b");
        assert_eq!(c.attrs(b"a"), None);
        assert!(!c.is_negative(b"b"));
    }

    #[test]
    fn listing_fills_attrs_and_invalidate_drops_parent_listing() {
        let c = MetaCache::new(Duration::from_secs(60));
        let entries = Arc::new(vec![DirEntry {
            name: b"x.csv".to_vec(),
            meta: file(7),
        }]);
        c.put_dir(b"Incoming/Invoices", entries);
        assert_eq!(c.attrs(b"Incoming/Invoices/x.csv"), Some(file(7)));
        assert!(c.dir(b"Incoming/Invoices").is_some());
        c.invalidate(b"Incoming/Invoices/y.csv");
        assert!(
            c.dir(b"Incoming/Invoices").is_none(),
            "a change in the folder drops its listing"
        );
        assert_eq!(c.attrs(b"Incoming/Invoices/x.csv"), Some(file(7)));
    }

    #[test]
    fn negative_entries_are_replaced_by_positive_ones() {
        let c = MetaCache::new(Duration::from_secs(60));
        c.put_negative(b"n");
        assert!(c.is_negative(b"n"));
        c.put_attrs(b"n", file(0));
        assert!(!c.is_negative(b"n"));
        c.put_negative(b"n");
        assert_eq!(c.attrs(b"n"), None);
    }

    #[test]
    fn invalidate_tree_drops_descendants_only() {
        let c = MetaCache::new(Duration::from_secs(60));
        c.put_attrs(b"d/a", file(1));
        c.put_attrs(b"d/sub/b", file(2));
        c.put_attrs(b"dx", file(3));
        c.put_negative(b"d/gone");
        c.invalidate_tree(b"d");
        assert_eq!(c.attrs(b"d/a"), None);
        assert_eq!(c.attrs(b"d/sub/b"), None);
        assert!(!c.is_negative(b"d/gone"));
        assert_eq!(c.attrs(b"dx"), Some(file(3)));
    }

    #[test]
    fn a_fresh_listing_answers_absent_names() {
        let c = MetaCache::new(Duration::from_secs(60));
        let entries = Arc::new(vec![DirEntry {
            name: b"x.csv".to_vec(),
            meta: file(7),
        }]);
        c.put_dir(b"In", entries);
        assert!(c.is_negative(b"In/new.csv"), "not in the listing");
        c.put_dir(b"", Arc::new(Vec::new()));
        assert!(!c.is_negative(b""), "the root is not a name in itself");
        assert!(!c.is_negative(b"In/x.csv"), "listed");
        assert!(!c.is_negative(b"Other/new.csv"), "folder never listed");
        // Our own change makes the name possibly present...
        c.invalidate(b"In/new.csv");
        assert!(!c.is_negative(b"In/new.csv"));
        // ...until the server confirms its removal.
        c.note_removed(b"In/new.csv");
        assert!(c.is_negative(b"In/new.csv"));
        // Attributes we learn mark a name present too (even once they
        // themselves expire or are evicted).
        assert!(c.is_negative(b"In/y.csv"));
        c.put_attrs(b"In/y.csv", file(1));
        lock(&c.attrs).pop(b"In/y.csv".as_slice());
        assert!(!c.is_negative(b"In/y.csv"));
    }

    #[test]
    fn a_folder_we_made_is_empty_until_the_ttl_ends() {
        let c = MetaCache::new(Duration::from_millis(50));
        c.put_empty_dir(b"In/new");
        assert!(c.is_negative(b"In/new/a.csv"));
        c.invalidate(b"In/new/a.csv");
        assert!(!c.is_negative(b"In/new/a.csv"));
        assert!(c.is_negative(b"In/new/b.csv"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!c.is_negative(b"In/new/b.csv"), "expired: ask the server");
    }

    #[test]
    fn a_busy_folder_is_listed_again_when_its_names_expire() {
        let c = MetaCache::new(Duration::from_millis(50));
        c.put_empty_dir(b"quiet");
        c.put_empty_dir(b"busy");
        for i in 0..HOT_FOLDER_HITS {
            assert!(c.is_negative(format!("busy/f{i}").as_bytes()));
        }
        assert!(!c.wants_relisting(b"busy/next"), "still fresh");
        std::thread::sleep(Duration::from_millis(80));
        assert!(c.wants_relisting(b"busy/next"));
        assert!(!c.wants_relisting(b"quiet/next"), "nobody created there");
        assert!(!c.wants_relisting(b"never/next"));
        // A folder never listed gets hot from the server's "no such file".
        for i in 0..HOT_FOLDER_HITS {
            c.put_negative(format!("never/f{i}").as_bytes());
        }
        assert!(c.wants_relisting(b"never/next"));
        assert!(!c.is_negative(b"never/next"), "counting is not knowing");
        // A listing too long to list per lookup is not listed again.
        c.put_dir(b"never", files(RELIST_MAX_ENTRIES + 1));
        for i in 0..HOT_FOLDER_HITS {
            assert!(c.is_negative(format!("never/g{i}").as_bytes()));
        }
        std::thread::sleep(Duration::from_millis(80));
        assert!(!c.wants_relisting(b"never/next"));
        // A listing grown past the set limit is never listed for a lookup.
        c.put_dir(b"busy", files(NAMES_MAX_ENTRIES + 1));
        assert!(!c.wants_relisting(b"busy/next"));
    }

    #[test]
    fn renaming_a_folder_away_forgets_its_names() {
        let c = MetaCache::new(Duration::from_secs(60));
        c.put_empty_dir(b"In/d");
        c.put_empty_dir(b"In/d/sub");
        c.invalidate_tree(b"In/d");
        assert!(!c.is_negative(b"In/d/a"));
        assert!(!c.is_negative(b"In/d/sub/a"));
    }

    #[test]
    fn huge_listings_keep_no_name_set() {
        let c = MetaCache::new(Duration::from_secs(60));
        c.put_dir(b"Archive", files(NAMES_MAX_ENTRIES + 1));
        assert!(!c.is_negative(b"Archive/new.csv"));
    }

    /// Listings are dropped, least recently used first, once together they
    /// would hold more than `DIRS_MAX_BYTES`.
    #[test]
    fn cached_listings_stay_within_their_byte_budget() {
        let c = MetaCache::new(Duration::from_secs(60));
        let big = files(NAMES_MAX_ENTRIES * 10);
        let each = listing_bytes(&big);
        let fit = DIRS_MAX_BYTES / each;
        assert!(fit >= 2, "one listing of {each} bytes");
        for i in 0..=fit {
            c.put_dir(format!("Archive{i}").as_bytes(), big.clone());
            assert!(lock(&c.dirs).bytes <= DIRS_MAX_BYTES);
        }
        assert!(c.dir(b"Archive0").is_none(), "oldest listing dropped");
        assert!(c.dir(format!("Archive{fit}").as_bytes()).is_some());
        c.invalidate(format!("Archive{fit}/x").as_bytes());
        assert_eq!(lock(&c.dirs).bytes, each * (fit - 1));
    }

    /// A listing fetched ahead across one of our changes may miss it: it is
    /// not stored; one fetched with no change between is.
    #[test]
    fn listings_fetched_ahead_across_our_changes_are_dropped() {
        let c = MetaCache::new(Duration::from_secs(60));
        let before = c.changes();
        c.invalidate(b"In/d/new.csv");
        c.put_dir_since(b"In/d", files(3), before);
        assert!(c.dir(b"In/d").is_none());
        c.put_dir_since(b"In/d", files(3), c.changes());
        assert_eq!(c.dir(b"In/d").map(|d| d.len()), Some(3));
    }

    #[test]
    fn a_folder_being_listed_is_waited_for() {
        let c = Arc::new(MetaCache::new(Duration::from_secs(60)));
        assert!(c.wait_listing(b"A", Duration::ZERO), "nothing to wait for");
        assert!(c.start_listing(b"A"));
        assert!(!c.start_listing(b"A"), "one listing at a time");
        assert!(
            !c.wait_listing(b"A", Duration::from_millis(20)),
            "times out"
        );
        let lister = {
            let c = c.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                c.put_dir(b"A", files(2));
                c.end_listing(b"A");
            })
        };
        assert!(c.wait_listing(b"A", Duration::from_secs(10)));
        assert_eq!(c.dir(b"A").map(|d| d.len()), Some(2));
        lister.join().expect("lister");
    }

    #[test]
    fn prefetch_slots_are_bounded() {
        let c = MetaCache::new(Duration::from_secs(60));
        for _ in 0..PREFETCH_IN_FLIGHT {
            assert!(c.claim_prefetch());
        }
        assert!(!c.claim_prefetch());
        c.release_prefetch();
        assert!(c.claim_prefetch());
    }

    #[test]
    fn lru_is_bounded() {
        let c = MetaCache::new(Duration::from_secs(60));
        for i in 0..(ATTR_CAPACITY + 10) {
            c.put_attrs(format!("f{i}").as_bytes(), file(i as u64));
        }
        assert_eq!(c.attrs(b"f0"), None, "oldest entry evicted");
        assert!(c
            .attrs(format!("f{}", ATTR_CAPACITY + 9).as_bytes())
            .is_some());
    }
}
