//! Symlink containment: link targets that would lead out of the mount are
//! rewritten or neutralised (like sshfs `transform_symlinks`).
//!
//! The kernel, not the server, follows a link read through FUSE: it walks
//! the target through its own dentries, and a `..` at the mount's root goes
//! to the mount point's parent, a local directory. A textual check of each
//! target alone is not enough: with `a/up -> ..` and `a/esc -> up/../../X`,
//! `up/..` is the mount root's parent once `up` is followed. So a target is
//! walked the way the kernel would walk it, following every component that
//! is itself a link before a `..` applies to it, and a target that needs
//! that is handed to the kernel in canonical form (only leading `..`s, then
//! names): the kernel then never applies `..` to a link, whatever the
//! server changes between this check and its walk.

use crate::error::FsResult;
use crate::fs::inode::split;

/// Links followed in one resolution before giving up with ELOOP: Linux's
/// `MAXSYMLINKS` (fs/namei.c), so we fail where the kernel would.
const MAX_HOPS: u32 = 40;

/// What a link's target becomes for the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Contained {
    /// A target that stays inside the mount (maybe rewritten).
    Target(Vec<u8>),
    /// The target leads outside the mount: shown neutralised.
    Escapes(Vec<u8>),
    /// Following it takes more than `MAX_HOPS` links (ELOOP).
    Loop,
}

/// The target of the link at a mount-relative path, if that path is a
/// link (`None`: not a link, or nothing there).
pub(crate) type LinkOf<'a> = dyn FnMut(&[u8]) -> FsResult<Option<Vec<u8>>> + 'a;

/// Why a walk stopped early.
enum Stop {
    Loop,
    Failed(crate::error::FsError),
}

type Parts = Vec<Vec<u8>>;

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Walks link targets on the server's absolute paths, the kernel's way.
struct Walk<'a, 'b> {
    root: Parts,
    link_of: &'a mut LinkOf<'b>,
    hops: u32,
}

impl Walk<'_, '_> {
    /// The absolute components `target` leads to from the directory `dir`
    /// (absolute components, of which the first `real` are directories, not
    /// links). Returns the result and how many of its leading components
    /// are known real. Only a name that a `..` applies to is asked about:
    /// a link reached by names alone is read, and checked, by the kernel.
    fn resolve(&mut self, dir: Parts, real: usize, target: &[u8]) -> Result<(Parts, usize), Stop> {
        let (mut stack, mut real) = if target.starts_with(b"/") {
            (Vec::new(), 0)
        } else {
            (dir, real)
        };
        for c in target.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    let inside = stack.len() > self.root.len() && stack.starts_with(&self.root);
                    if stack.len() > real && inside {
                        let rel = stack[self.root.len()..].join(&b'/');
                        if let Some(t) = (self.link_of)(&rel).map_err(Stop::Failed)? {
                            self.hops += 1;
                            if self.hops > MAX_HOPS {
                                return Err(Stop::Loop);
                            }
                            let mut parent = stack;
                            parent.pop();
                            let parent_real = real.min(parent.len());
                            (stack, real) = self.resolve(parent, parent_real, &t)?;
                        }
                    }
                    stack.pop();
                    real = real.min(stack.len());
                }
                name => stack.push(name.to_vec()),
            }
        }
        Ok((stack, real))
    }
}

/// True when the kernel can walk `target` from a directory `depth` levels
/// below the mount root without applying `..` to anything but a real
/// directory: a relative path whose `..`s all lead, and do not climb above
/// the root.
fn plain(target: &[u8], depth: usize) -> bool {
    if target.starts_with(b"/") {
        return false;
    }
    let mut ups = 0;
    let mut named = false;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if named => return false,
            b".." => ups += 1,
            _ => named = true,
        }
    }
    ups <= depth
}

/// Keeps a symlink target inside the mount (like sshfs `transform_symlinks`
/// and `contain_symlinks`): an absolute target under the remote root becomes
/// relative; one that leaves the root, or climbs out with `..` (also through
/// other links), is neutralised so a root job cannot be led to read or
/// write outside the mount. `link_rel` is the link's mount-relative path,
/// `link_of` reads other links of the mount (only asked about names a `..`
/// follows).
pub(crate) fn contain_symlink(
    link_rel: &[u8],
    target: &[u8],
    remote_root: &[u8],
    link_of: &mut LinkOf<'_>,
) -> FsResult<Contained> {
    let blocked = || {
        let mut v = b"/dev/null/coupafs-blocked/".to_vec();
        v.extend_from_slice(target);
        Contained::Escapes(v)
    };
    // The kernel reads the reply as a C string: a NUL would make it see
    // another path than the one checked here.
    if target.contains(&0) {
        return Ok(blocked());
    }
    let dir: Parts = components(split(link_rel).0).map(<[u8]>::to_vec).collect();
    if plain(target, dir.len()) {
        return Ok(Contained::Target(target.to_vec()));
    }
    let root: Parts = components(remote_root).map(<[u8]>::to_vec).collect();
    let mut start = root.clone();
    start.extend(dir.iter().cloned());
    let real = start.len();
    let mut walk = Walk {
        root: root.clone(),
        link_of,
        hops: 0,
    };
    let end = match walk.resolve(start, real, target) {
        Ok((end, _)) => end,
        Err(Stop::Loop) => return Ok(Contained::Loop),
        Err(Stop::Failed(e)) => return Err(e),
    };
    if !end.starts_with(&root) {
        return Ok(blocked());
    }
    // Canonical: up from the link's folder to the common ancestor, then
    // down by names only.
    let inside = &end[root.len()..];
    let common = dir.iter().zip(inside).take_while(|(a, b)| a == b).count();
    let mut rel = Vec::new();
    for _ in common..dir.len() {
        rel.extend_from_slice(b"../");
    }
    rel.extend_from_slice(&inside[common..].join(&b'/'));
    if rel.ends_with(b"/") {
        rel.pop();
    }
    if rel.is_empty() {
        rel.push(b'.');
    }
    Ok(Contained::Target(rel))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Contains `target` of the link at `link` with the mount's other links
    /// given as (mount-relative path, target).
    fn contain(link: &str, target: &str, links: &[(&str, &str)]) -> Contained {
        let map: HashMap<Vec<u8>, Vec<u8>> = links
            .iter()
            .map(|(p, t)| (p.as_bytes().to_vec(), t.as_bytes().to_vec()))
            .collect();
        let mut link_of = |p: &[u8]| Ok(map.get(p).cloned());
        contain_symlink(link.as_bytes(), target.as_bytes(), b"/root", &mut link_of)
            .expect("no remote failure")
    }

    fn target(s: &str) -> Contained {
        Contained::Target(s.as_bytes().to_vec())
    }

    fn escapes(c: &Contained) -> bool {
        matches!(c, Contained::Escapes(v) if v.starts_with(b"/dev/null/coupafs-blocked/"))
    }

    #[test]
    fn single_links_keep_their_text_or_are_neutralised() {
        assert_eq!(
            contain("Incoming/l", "/root/Outgoing/x", &[]),
            target("../Outgoing/x")
        );
        assert!(escapes(&contain("Incoming/l", "/etc/passwd", &[])));
        assert!(escapes(&contain("Incoming/l", "../../etc/passwd", &[])));
        assert!(escapes(&contain("l", "..", &[])));
        assert_eq!(
            contain("Incoming/l", "../Outgoing/x", &[]),
            target("../Outgoing/x")
        );
        assert_eq!(contain("Incoming/l", "x.csv", &[]), target("x.csv"));
        assert_eq!(contain("a/up", "..", &[]), target(".."));
        assert_eq!(contain("l", "/root", &[]), target("."));
        assert!(escapes(&contain("a/l", "ok\0/../../../etc", &[])));
        assert!(escapes(&contain("a/l", "ok\0", &[])));
    }

    /// The chain: each link passes alone, the pair climbs two
    /// levels above the mount root.
    #[test]
    fn a_chain_of_two_links_cannot_climb_out() {
        let links = [("a/up", "..")];
        assert!(escapes(&contain("a/esc", "up/../../X", &links)));
        // Without the link, `up` is a folder and the same text stays inside.
        assert_eq!(contain("a/esc", "up/../../X", &[]), target("../X"));
        // `up` is the mount root, so even `up/..` is outside it.
        assert!(escapes(&contain("a/esc", "up/../X", &links)));
        assert_eq!(contain("a/b", "up/x/../X", &links), target("up/X"));
    }

    #[test]
    fn a_chain_of_three_links_cannot_climb_out() {
        let links = [("a/b/up", ".."), ("a/b/up2", "up/..")];
        // up2 -> up/.. = a; up2/.. = (root); one more .. leaves.
        assert!(escapes(&contain("a/b/esc", "up2/../../Y", &links)));
        assert_eq!(contain("a/b/ok", "up/../Y", &links), target("../../Y"));
        assert_eq!(contain("a/b/ok", "up2/x/../Y", &links), target("up2/Y"));
        // A link whose target is absolute counts as well.
        let abs = [("a/top", "/root"), ("a/mid", "top/x")];
        assert!(escapes(&contain("a/esc", "mid/../../Z", &abs)));
        // mid/.. is the root, reached through `top` (a link the kernel
        // follows downwards): canonical form says so.
        assert_eq!(contain("a/in", "mid/../Z", &abs), target("top/Z"));
    }

    #[test]
    fn absolute_targets_and_dot_dot_runs() {
        assert!(escapes(&contain("a/l", "/root/../etc/passwd", &[])));
        assert_eq!(contain("a/l", "/root/../root/a/f", &[]), target("f"));
        assert_eq!(contain("a/l", "/root/a/./b//c/", &[]), target("b/c"));
        assert!(escapes(&contain("a/l", "../../../../x", &[])));
        assert_eq!(contain("a/b/l", "../../x", &[]), target("../../x"));
        assert!(escapes(&contain("a/b/l", "../../../x", &[])));
        assert_eq!(contain("a/b/l", "c/d/../../../x", &[]), target("../x"));
        assert!(escapes(&contain("a/b/l", "c/d/../../../../../x", &[])));
        // A remote root of `/` keeps every absolute target inside.
        let mut none = |_: &[u8]| Ok(None);
        assert_eq!(
            contain_symlink(b"a/l", b"/etc/passwd", b"/", &mut none).expect("ok"),
            target("../etc/passwd")
        );
    }

    #[test]
    fn a_loop_through_dot_dot_is_eloop() {
        let links = [("a/l1", "l2/../x"), ("a/l2", "l1/../x")];
        assert_eq!(contain("a/l1", "l2/../x", &links), Contained::Loop);
        let selfish = [("a/me", "me/..")];
        assert_eq!(contain("a/me", "me/..", &selfish), Contained::Loop);
    }
}
