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
use crate::fs::upload::{is_temp_name, Upload};
use crate::fs::{lock, show, Fs, Kind, Stat};
use crate::remote::{DirEntry, Meta, Remote};

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
        let listed = self.drop_bad_names(path, listed);
        let (temps, listed): (Vec<DirEntry>, Vec<DirEntry>) =
            listed.into_iter().partition(|e| is_temp_name(&e.name));
        self.reap_stale_temps(&self.remote_path(path), &temps);
        let listed = Arc::new(listed);
        self.cache.put_dir(path, listed.clone());
        Ok(listed)
    }

    /// The entries of a server listing the kernel can take. One it cannot
    /// (a `/` fails the whole readdir reply with EIO, NUL truncates, over
    /// NAME_MAX breaks programs) is left out, with one warning per listing
    /// naming them escaped; the server's own `.` and `..` go silently.
    fn drop_bad_names(&self, path: &[u8], listed: Vec<DirEntry>) -> Vec<DirEntry> {
        let mut bad = Vec::new();
        let kept = listed
            .into_iter()
            .filter(|e| match check_name(&e.name) {
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
            })
            .collect();
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
        kept
    }

    /// Lists a directory once per opendir; readdir serves slices of it.
    pub(crate) fn opendir(&self, ino: u64) -> FsResult<u64> {
        let path = self.path_of(Op::Readdir, ino)?;
        let entries = match self.cache.dir(&path) {
            Some(e) => e,
            None => self.list_dir(&path)?,
        };
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
            let Some(item) = self.listing_item(&listing, i) else {
                break;
            };
            let ino = self.peek_ino(dir, &item);
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
        for i in (offset as usize)..listing.len() {
            let Some(item) = self.listing_item(&listing, i) else {
                break;
            };
            let ino = self.remember_entry(dir, &item);
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
    fn remember_entry(&self, dir: u64, item: &DirItem) -> u64 {
        if item.name == b"." || item.name == b".." {
            return item.stat.ino;
        }
        let Ok(dir_path) = self.path_of(Op::Readdir, dir) else {
            return item.stat.ino;
        };
        lock(&self.inodes).lookup(&join(&dir_path, &item.name))
    }

    /// Placeholder inode for plain readdir entries the kernel takes no
    /// reference to (d_ino is informational).
    fn peek_ino(&self, dir: u64, item: &DirItem) -> u64 {
        if item.stat.ino != 0 {
            return item.stat.ino;
        }
        let name_hash = item
            .name
            .iter()
            .fold(dir.wrapping_mul(1_099_511_628_211), |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(1_099_511_628_211)
            });
        name_hash | (1 << 63)
    }

    pub(crate) fn releasedir(&self, fh: u64) {
        lock(&self.dir_handles).remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use super::first_time;

    #[test]
    fn the_same_warning_is_logged_once() {
        let line = format!("listing /t{}: skipped", std::process::id());
        assert!(first_time(&line));
        assert!(!first_time(&line));
        assert!(first_time(&format!("{line} more")));
    }
}
