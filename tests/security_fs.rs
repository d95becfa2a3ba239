//! Issue 12, the filesystem side, through a real mount of the `coupafs`
//! binary against the sandbox sshd: what a hostile (or merely odd) server
//! can make the mount do. The server's tree is a local directory
//! (`Sandbox::root`), so links and odd names are planted there directly.

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::symlink;

use common::*;

/// Plants a server-side link (as the server account would have made it).
fn server_link(sb: &Sandbox, rel: &str, target: &str) {
    let p = sb.root.join(rel);
    symlink(target, &p).unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
}

fn server_mkdir(sb: &Sandbox, rel: &str) {
    let p = sb.root.join(rel);
    fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>, what: &str) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => errno(&e),
    }
}

/// The attack and its variants: chains of links whose every member
/// passes a textual check but which together climb above the mount root.
/// A local secret sits beside the mount point (one level above) and two
/// levels above it; no read through the mount may reach either.
#[test]
fn symlink_chains_cannot_leave_the_mount() {
    let sb = Sandbox::start();
    server_mkdir(&sb, "a/b");
    fs::write(sb.root.join("Incoming/Invoices/f.csv"), b"inside\n").expect("write f.csv");
    // Two links: up -> .. is the mount root, so up/.. is outside.
    server_link(&sb, "a/up", "..");
    server_link(&sb, "a/esc1", "up/../SECRET");
    server_link(&sb, "a/esc2", "up/../../SECRET");
    // Three links: up2 -> up/.. is the root as well.
    server_link(&sb, "a/b/up", "..");
    server_link(&sb, "a/b/up2", "up/..");
    server_link(&sb, "a/b/esc3", "up2/../SECRET");
    // An absolute target naming a local file, and `..` runs.
    server_link(&sb, "a/abs", "/etc/hostname");
    server_link(&sb, "a/dots", "../../../../../../../etc/hostname");
    // Links that stay inside keep working.
    server_link(&sb, "a/ok", "up/Incoming/Invoices/f.csv");
    server_link(&sb, "a/ok2", "b/up2/Incoming/x/../Invoices/f.csv");
    let root = sb.root.display().to_string();
    server_link(&sb, "a/okabs", &format!("{root}/Incoming/Invoices/f.csv"));
    // A loop only our walk sees (each hop applies `..` to the other).
    server_link(&sb, "a/l1", "l2/../x");
    server_link(&sb, "a/l2", "l1/../x");

    let m = Mount::new(&sb, &[]);
    let beside = m.path.parent().expect("mount point has a parent");
    fs::write(beside.join("SECRET"), b"local secret\n").expect("plant beside");
    let above = beside.parent().expect("two levels up");
    let planted_above = !above.join("SECRET").exists();
    if planted_above {
        fs::write(above.join("SECRET"), b"local secret\n").expect("plant above");
    }
    let a = m.path.join("a");
    let mut leaks = Vec::new();
    for name in ["esc1", "esc2", "b/esc3", "abs", "dots"] {
        if let Ok(data) = fs::read(a.join(name)) {
            leaks.push(format!("{name}: {:?}", String::from_utf8_lossy(&data)));
        }
    }
    if planted_above {
        let _ = fs::remove_file(above.join("SECRET"));
    }
    assert!(leaks.is_empty(), "reads left the mount: {leaks:?}");
    for name in ["ok", "ok2", "okabs"] {
        assert_eq!(
            fs::read(a.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")),
            b"inside\n",
            "{name}"
        );
    }
    assert_eq!(
        errno_of(fs::read(a.join("l1")), "read l1"),
        libc::ELOOP,
        "a loop of links is ELOOP"
    );
}
