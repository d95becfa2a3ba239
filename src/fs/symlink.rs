//! Symlink containment: link targets that would lead out of the mount are
//! rewritten or neutralised (like sshfs `transform_symlinks`).

use crate::fs::inode::split;

/// Keeps a symlink target inside the mount (like sshfs `transform_symlinks`
/// and `contain_symlinks`): an absolute target under the remote root becomes
/// relative; one that leaves the root, or climbs out with `..`, is
/// neutralised so a root job cannot be led to write outside the mount.
pub(crate) fn contain_symlink(link_rel: &[u8], target: &[u8], remote_root: &[u8]) -> Vec<u8> {
    let depth = split(link_rel)
        .0
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .count();
    let up = |n: usize| -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend_from_slice(b"../");
        }
        v
    };
    let blocked = || -> Vec<u8> {
        let mut v = b"/dev/null/coupafs-blocked".to_vec();
        v.extend_from_slice(b"/");
        v.extend_from_slice(target);
        v
    };
    let normalise = |base: Vec<Vec<u8>>, rel: &[u8]| -> Option<Vec<Vec<u8>>> {
        let mut parts = base;
        for c in rel.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    parts.pop()?;
                }
                other => parts.push(other.to_vec()),
            }
        }
        Some(parts)
    };
    if target.starts_with(b"/") {
        let root: Vec<&[u8]> = remote_root
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let Some(abs) = normalise(Vec::new(), target) else {
            return blocked();
        };
        if abs.len() < root.len() || abs.iter().zip(&root).any(|(a, r)| a.as_slice() != *r) {
            return blocked();
        }
        let mut rel = up(depth);
        let inside: Vec<&[u8]> = abs[root.len()..].iter().map(Vec::as_slice).collect();
        rel.extend_from_slice(&inside.join(&b'/'));
        if rel.is_empty() {
            rel.push(b'.');
        }
        return rel;
    }
    let base: Vec<Vec<u8>> = split(link_rel)
        .0
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    match normalise(base, target) {
        Some(_) => target.to_vec(),
        None => blocked(),
    }
}
