//! Inode numbers for mount-relative paths. SFTP names files only by path,
//! so the table is the one place that turns the kernel's inode numbers into
//! paths, and keeps them right across renames. Paths are relative to the
//! mount root, without leading slash; the root is the empty path, inode 1.
//! Kernel lookup counts decide when an entry may be forgotten (FUSE_FORGET).

use std::collections::HashMap;

pub(crate) const ROOT_INO: u64 = 1;

#[derive(Debug)]
struct Node {
    path: Vec<u8>,
    lookups: u64,
    /// Unlinked while the kernel still knew it: kept for open files only.
    detached: bool,
}

#[derive(Debug)]
pub(crate) struct InodeTable {
    by_ino: HashMap<u64, Node>,
    by_path: HashMap<Vec<u8>, u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

/// `parent/name`, with the root as the empty path.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
        p.extend_from_slice(parent);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// The parent path and the final name.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Longest name component a Linux program can take (`NAME_MAX`): glibc's
/// `struct dirent` holds 256 bytes, and local filesystems refuse longer.
pub(crate) const NAME_MAX: usize = 255;

/// Why a name cannot be a directory entry in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadName {
    /// Empty, `.` or `..`: the kernel's own, or nothing.
    Reserved,
    /// Holds `/` or NUL: the kernel fails a whole readdir reply that holds
    /// a `/` (fuse_parse_dirfile), and C strings end at NUL.
    Separator,
    /// Over `NAME_MAX` bytes.
    TooLong,
}

/// Whether `name` can be one component of a path the kernel shows.
pub(crate) fn check_name(name: &[u8]) -> Result<(), BadName> {
    if name.is_empty() || name == b"." || name == b".." {
        Err(BadName::Reserved)
    } else if name.contains(&b'/') || name.contains(&0) {
        Err(BadName::Separator)
    } else if name.len() > NAME_MAX {
        Err(BadName::TooLong)
    } else {
        Ok(())
    }
}

impl InodeTable {
    pub(crate) fn new() -> Self {
        let mut t = Self {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT_INO + 1,
        };
        t.by_ino.insert(
            ROOT_INO,
            Node {
                path: Vec::new(),
                lookups: 1,
                detached: false,
            },
        );
        t.by_path.insert(Vec::new(), ROOT_INO);
        t
    }

    pub(crate) fn path(&self, ino: u64) -> Option<&[u8]> {
        self.by_ino.get(&ino).map(|n| n.path.as_slice())
    }

    pub(crate) fn ino_of(&self, path: &[u8]) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The inode for `path` (allocating one), counting one kernel lookup.
    pub(crate) fn lookup(&mut self, path: &[u8]) -> u64 {
        let ino = self.peek(path);
        if let Some(n) = self.by_ino.get_mut(&ino) {
            n.lookups += 1;
        }
        ino
    }

    /// The inode for `path`, allocating one without counting a lookup (for
    /// plain readdir, where the kernel takes no reference).
    pub(crate) fn peek(&mut self, path: &[u8]) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Node {
                path: path.to_vec(),
                lookups: 0,
                detached: false,
            },
        );
        self.by_path.insert(path.to_vec(), ino);
        ino
    }

    /// FUSE_FORGET: drops `n` lookups; the entry goes when none remain.
    /// `keep` says whether something else (an open file) still needs it.
    pub(crate) fn forget(&mut self, ino: u64, n: u64, keep: bool) {
        if ino == ROOT_INO {
            return;
        }
        let remove = match self.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0 && !keep
            }
            None => false,
        };
        if remove {
            if let Some(node) = self.by_ino.remove(&ino) {
                if !node.detached && self.by_path.get(&node.path) == Some(&ino) {
                    self.by_path.remove(&node.path);
                }
            }
        }
    }

    /// The path no longer names this inode (unlink/rmdir); the inode lives
    /// on until forgotten.
    pub(crate) fn detach(&mut self, path: &[u8]) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(node) = self.by_ino.get_mut(&ino) {
                node.detached = true;
            }
        }
    }

    /// Moves `from` and everything below it to `to`. An inode previously at
    /// `to` is detached (it was replaced).
    pub(crate) fn rename(&mut self, from: &[u8], to: &[u8]) {
        self.detach(to);
        let mut prefix = from.to_vec();
        prefix.push(b'/');
        let moved: Vec<(Vec<u8>, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.as_slice() == from || p.starts_with(&prefix))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            if let Some(node) = self.by_ino.get_mut(&ino) {
                node.path = new.clone();
            }
            self.by_path.insert(new, ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split_handle_the_root() {
        assert_eq!(join(b"", b"Incoming"), b"Incoming".to_vec());
        assert_eq!(
            join(b"Incoming", b"Invoices"),
            b"Incoming/Invoices".to_vec()
        );
        assert_eq!(
            split(b"Incoming/Invoices/a.csv"),
            (&b"Incoming/Invoices"[..], &b"a.csv"[..])
        );
        assert_eq!(split(b"top"), (&b""[..], &b"top"[..]));
    }

    #[test]
    fn names_the_kernel_cannot_take_are_named() {
        assert_eq!(check_name(b"a.csv"), Ok(()));
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert_eq!(check_name(&[b'x'; 256]), Err(BadName::TooLong));
        assert_eq!(check_name(b""), Err(BadName::Reserved));
        assert_eq!(check_name(b".."), Err(BadName::Reserved));
        assert_eq!(check_name(b"a/b"), Err(BadName::Separator));
        assert_eq!(check_name(b"a\0b"), Err(BadName::Separator));
        assert_eq!(check_name(b"x\ny"), Ok(()), "legal, only escaped in logs");
    }

    #[test]
    fn lookup_is_stable_and_forget_releases() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"Incoming");
        assert_eq!(t.lookup(b"Incoming"), a);
        assert_ne!(a, ROOT_INO);
        assert_eq!(t.path(a), Some(&b"Incoming"[..]));
        t.forget(a, 1, false);
        assert_eq!(t.path(a), Some(&b"Incoming"[..]), "one lookup still held");
        t.forget(a, 1, false);
        assert_eq!(t.path(a), None);
        assert_eq!(t.ino_of(b"Incoming"), None);
        let b = t.lookup(b"Incoming");
        assert_ne!(a, b, "inode numbers are not reused");
    }

    #[test]
    fn forget_keeps_entries_that_are_still_open() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"x");
        t.forget(a, 1, true);
        assert_eq!(t.path(a), Some(&b"x"[..]));
        t.forget(ROOT_INO, 100, false);
        assert_eq!(t.path(ROOT_INO), Some(&b""[..]));
    }

    #[test]
    fn rename_moves_descendants_and_detaches_target() {
        let mut t = InodeTable::new();
        let dir = t.lookup(b"Incoming/Invoices");
        let file = t.lookup(b"Incoming/Invoices/a.csv");
        let other = t.lookup(b"Archive/Invoices");
        t.rename(b"Incoming/Invoices", b"Archive/Invoices");
        assert_eq!(t.path(dir), Some(&b"Archive/Invoices"[..]));
        assert_eq!(t.path(file), Some(&b"Archive/Invoices/a.csv"[..]));
        assert_eq!(t.ino_of(b"Archive/Invoices"), Some(dir));
        assert_eq!(t.ino_of(b"Incoming/Invoices/a.csv"), None);
        // The replaced inode keeps its (stale) path until forgotten.
        assert!(t.path(other).is_some());
        t.forget(other, 1, false);
        assert_eq!(t.ino_of(b"Archive/Invoices"), Some(dir));
    }

    #[test]
    fn rename_does_not_touch_siblings_with_common_prefix() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"inv");
        let b = t.lookup(b"invoices");
        t.rename(b"inv", b"x");
        assert_eq!(t.path(a), Some(&b"x"[..]));
        assert_eq!(t.path(b), Some(&b"invoices"[..]));
    }

    #[test]
    fn detach_then_forget_removes() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"f");
        t.detach(b"f");
        assert_eq!(t.ino_of(b"f"), None);
        let b = t.lookup(b"f");
        assert_ne!(a, b);
        t.forget(a, 1, false);
        assert_eq!(t.ino_of(b"f"), Some(b));
    }
}
