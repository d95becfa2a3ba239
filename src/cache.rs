//! Metadata cache: attributes, directory listings and negative lookups, each
//! in a bounded LRU with a TTL (`cache_timeout`). The mount's own changes
//! invalidate what they touch at once (the sshfs rule), so a job never sees
//! its own write stale; remote changes show up within the TTL.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::inode::{join, split};
use crate::remote::DirEntry;
use crate::sftp::Attrs;

const ATTR_CAPACITY: usize = 65_536;
const DIR_CAPACITY: usize = 256;
const NEGATIVE_CAPACITY: usize = 16_384;

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Listing = (Arc<Vec<DirEntry>>, Instant);

pub struct MetaCache {
    ttl: Duration,
    attrs: Mutex<LruCache<Vec<u8>, (Attrs, Instant)>>,
    dirs: Mutex<LruCache<Vec<u8>, Listing>>,
    negative: Mutex<LruCache<Vec<u8>, Instant>>,
}

impl MetaCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            attrs: Mutex::new(LruCache::new(cap(ATTR_CAPACITY))),
            dirs: Mutex::new(LruCache::new(cap(DIR_CAPACITY))),
            negative: Mutex::new(LruCache::new(cap(NEGATIVE_CAPACITY))),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    pub fn attrs(&self, path: &[u8]) -> Option<Attrs> {
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

    pub fn put_attrs(&self, path: &[u8], attrs: Attrs) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.negative).pop(path);
        lock(&self.attrs).put(path.to_vec(), (attrs, Instant::now()));
    }

    pub fn dir(&self, path: &[u8]) -> Option<Arc<Vec<DirEntry>>> {
        let mut c = lock(&self.dirs);
        match c.get(path) {
            Some((d, at)) if self.fresh(*at) => Some(d.clone()),
            Some(_) => {
                c.pop(path);
                None
            }
            None => None,
        }
    }

    /// Stores a listing and the attributes of every entry in it, so `ls -l`
    /// after `ls` needs no STAT per file.
    pub fn put_dir(&self, path: &[u8], entries: Arc<Vec<DirEntry>>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        {
            let mut attrs = lock(&self.attrs);
            for e in entries.iter() {
                attrs.put(join(path, &e.name), (e.attrs.clone(), now));
            }
        }
        lock(&self.dirs).put(path.to_vec(), (entries, now));
    }

    /// A name known not to exist.
    pub fn is_negative(&self, path: &[u8]) -> bool {
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

    pub fn put_negative(&self, path: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.attrs).pop(path);
        lock(&self.negative).put(path.to_vec(), Instant::now());
    }

    /// Forgets everything known about `path` and its parent's listing: call
    /// after every change the mount makes.
    pub fn invalidate(&self, path: &[u8]) {
        lock(&self.attrs).pop(path);
        lock(&self.negative).pop(path);
        let mut dirs = lock(&self.dirs);
        dirs.pop(path);
        dirs.pop(split(path).0);
    }

    /// Forgets a whole subtree (a renamed or removed directory).
    pub fn invalidate_tree(&self, path: &[u8]) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Attrs {
        Attrs {
            size: Some(size),
            perm: Some(0o100644),
            ..Attrs::default()
        }
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
            attrs: file(7),
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
