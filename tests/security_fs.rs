//! Security, the filesystem side, through a real mount of the `coupafs`
//! binary against the sandbox sshd: what a hostile (or merely odd) server
//! can make the mount do. The server's tree is a local directory
//! (`Sandbox::root`), so links and odd names are planted there directly.

mod common;

use std::ffi::CString;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

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

/// Names a server may hold that are legal but odd list and read as they
/// are (a newline, 255 bytes), a name over NAME_MAX is ENAMETOOLONG for
/// every operation, and a newline in a name never reaches the log raw.
#[test]
fn odd_names_list_and_log_escaped() {
    let sb = Sandbox::start();
    let sdir = sb.root.join("Incoming/Invoices");
    let long = "L".repeat(255);
    fs::write(sdir.join("x\ny.csv"), b"nl\n").expect("newline name");
    fs::write(sdir.join(&long), b"long\n").expect("255-byte name");
    // Unreadable for the server account: opening it is logged as an error.
    let locked = sdir.join("bad\nERROR forged.csv");
    fs::write(&locked, b"x").expect("locked file");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod 000");

    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let mut names: Vec<String> = fs::read_dir(&mdir)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"x\ny.csv".to_string()), "{names:?}");
    assert!(names.contains(&long), "255-byte name listed");
    assert_eq!(fs::read(mdir.join("x\ny.csv")).expect("read"), b"nl\n");
    assert_eq!(fs::read(mdir.join(&long)).expect("read"), b"long\n");

    let too_long = mdir.join("T".repeat(256));
    let what = |r: io::Result<()>, op: &str| {
        assert_eq!(errno_of(r, op), libc::ENAMETOOLONG, "{op}");
    };
    what(fs::metadata(&too_long).map(|_| ()), "stat");
    what(fs::write(&too_long, b"x"), "create");
    what(fs::create_dir(&too_long), "mkdir");
    what(symlink("x\ny.csv", &too_long), "symlink");
    what(fs::rename(mdir.join("x\ny.csv"), &too_long), "rename");

    assert_eq!(
        errno_of(fs::read(mdir.join("bad\nERROR forged.csv")), "read 000"),
        libc::EACCES
    );
    let log = m.log();
    assert!(
        log.contains("bad\\nERROR forged.csv"),
        "the name is logged, escaped:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a server name forged a log line:\n{log}"
    );
}

/// rename(2) of a folder over a non-empty folder is ENOTEMPTY (OpenSSH
/// says only FAILURE), and the source stays.
#[test]
fn renaming_a_folder_over_a_non_empty_one_is_enotempty() {
    let sb = Sandbox::start();
    server_mkdir(&sb, "Incoming/src");
    server_mkdir(&sb, "Incoming/full");
    fs::write(sb.root.join("Incoming/src/a.csv"), b"a").expect("a.csv");
    fs::write(sb.root.join("Incoming/full/b.csv"), b"b").expect("b.csv");
    fs::write(sb.root.join("Incoming/file.csv"), b"f").expect("file.csv");
    give_tree_to_sftp(&sb.root.join("Incoming"));
    let m = Mount::new(&sb, &[]);
    let inc = m.path.join("Incoming");
    assert_eq!(
        errno_of(
            fs::rename(inc.join("src"), inc.join("full")),
            "dir over dir"
        ),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno_of(
            fs::rename(inc.join("src"), inc.join("file.csv")),
            "dir over file"
        ),
        libc::ENOTDIR
    );
    assert_eq!(
        errno_of(
            fs::rename(inc.join("file.csv"), inc.join("full")),
            "file over dir"
        ),
        libc::EISDIR
    );
    assert!(sb.root.join("Incoming/src/a.csv").exists());
    assert!(sb.root.join("Incoming/full/b.csv").exists());
}

/// utimensat with one time UTIME_OMIT leaves that time as it was on the
/// server (SFTP v3 sets both at once).
#[test]
fn utime_omit_leaves_that_time_unchanged() {
    let sb = Sandbox::start();
    let sfile = sb.root.join("Incoming/Invoices/t.csv");
    fs::write(&sfile, b"t").expect("t.csv");
    give_tree_to_sftp(&sfile);
    let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
    File::options()
        .write(true)
        .open(&sfile)
        .and_then(|f| {
            f.set_times(
                FileTimes::new()
                    .set_accessed(at(1_500_000_000))
                    .set_modified(at(1_400_000_000)),
            )
        })
        .expect("set times");
    let m = Mount::new(&sb, &[]);
    let mfile = m.path.join("Incoming/Invoices/t.csv");
    // touch -m: atime omitted.
    utimensat(&mfile, None, Some(1_600_000_000));
    let md = fs::metadata(&sfile).expect("server stat");
    assert_eq!(
        (md.atime(), md.mtime()),
        (1_500_000_000, 1_600_000_000),
        "touch -m"
    );
    // touch -a: mtime omitted.
    utimensat(&mfile, Some(1_650_000_000), None);
    let md = fs::metadata(&sfile).expect("server stat");
    assert_eq!(
        (md.atime(), md.mtime()),
        (1_650_000_000, 1_600_000_000),
        "touch -a"
    );
}

/// Hands a server-side tree to the sandbox account (as Coupa's files are).
fn give_tree_to_sftp(p: &Path) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let (uid, gid): (u32, u32) = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "coupasftp").then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .and_then(|(u, g)| u.zip(g))
        .expect("account coupasftp exists");
    let mut todo = vec![p.to_path_buf()];
    while let Some(q) = todo.pop() {
        std::os::unix::fs::lchown(&q, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", q.display()));
        if q.is_dir() {
            for e in fs::read_dir(&q).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        }
    }
}

/// utimensat(2) with `None` as UTIME_OMIT.
fn utimensat(path: &Path, atime: Option<i64>, mtime: Option<i64>) {
    let ts = |t: Option<i64>| match t {
        Some(s) => libc::timespec {
            tv_sec: s,
            tv_nsec: 0,
        },
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    };
    let times = [ts(atime), ts(mtime)];
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: `c` is a valid C string and `times` two timespecs, as
    // utimensat(2) requires; both outlive the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", io::Error::last_os_error());
}

/// Loops of every shape are ELOOP (the kernel's own limit, or our walk for
/// one a `..` runs through), never ENOTDIR or ENOENT.
#[test]
fn symlink_loops_are_eloop() {
    let sb = Sandbox::start();
    server_mkdir(&sb, "a");
    let root = sb.root.display().to_string();
    let links = [
        ("s", "s".to_string()),
        ("s2", "./s2".to_string()),
        ("abs", format!("{root}/a/abs")),
        ("d", "d/x".to_string()),
        ("p", "../a/p".to_string()),
        ("q", "q/..".to_string()),
    ];
    for (n, t) in &links {
        server_link(&sb, &format!("a/{n}"), t);
    }
    let m = Mount::new(&sb, &[]);
    for (n, _) in &links {
        let p = m.path.join("a").join(n);
        assert_eq!(errno_of(fs::read(&p), n), libc::ELOOP, "read {n}");
        assert_eq!(
            errno_of(fs::metadata(p.join("x")), n),
            libc::ELOOP,
            "stat {n}/x"
        );
    }
    // The walk sees this one loop itself: readlink says so.
    assert_eq!(
        errno_of(fs::read_link(m.path.join("a/q")), "readlink q"),
        libc::ELOOP
    );
}
