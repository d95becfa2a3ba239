//! Foundation integration tests: every operation ordinary tools need, through
//! a real /dev/fuse mount of the `coupafs` binary, against a real OpenSSH
//! sshd (the sandbox). Each test has its own sandbox and mount, and checks
//! both what the mount shows and what the server-side directory holds.
//!
//! Server-side files are written directly into `sandbox.root` (as root) and
//! handed to the `coupasftp` account, as if Coupa had written them.

mod common;

use std::ffi::CString;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;

// The standard Coupa tree, as the crate knows it (src/coupa.rs).
use coupafs::coupa::{INCOMING_OBJECTS as INCOMING, OUTGOING_OBJECTS as OUTGOING};

/// Content of the seeded `Outgoing/PurchaseOrders/PurchaseOrders_20240101_000001.csv`.
const SEED_PO_CSV: &str = "PO Number,Supplier,Status,Total,Currency,Created At
1001,Acme Office Supplies,issued,1250.00,USD,2024-01-01T09:00:00Z
1002,Globex Industrial,issued,98.45,USD,2024-01-01T09:05:00Z
1003,Initech Consulting,cancelled,0.00,USD,2024-01-01T09:10:00Z
";
const SEED_PO: &str = "Outgoing/PurchaseOrders/PurchaseOrders_20240101_000001.csv";

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// (uid, gid) of the sandbox account.
fn sftp_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "coupasftp")
                .then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("account coupasftp exists")
}

/// Hands a server-side path to the sandbox account (as Coupa's files are).
fn give_to_sftp(p: &Path) {
    let (uid, gid) = sftp_ids();
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// Writes a file server-side (owned by coupasftp, mode 644) and returns its path.
fn server_file(sb: &Sandbox, rel: &str, data: &[u8]) -> PathBuf {
    let p = sb.root.join(rel);
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    give_to_sftp(&p);
    p
}

/// Creates a directory server-side (owned by coupasftp, mode 755).
fn server_dir(sb: &Sandbox, rel: &str) -> PathBuf {
    let p = sb.root.join(rel);
    fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    give_to_sftp(&p);
    p
}

fn set_mtime(p: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    File::options()
        .write(true)
        .open(p)
        .and_then(|f| f.set_times(FileTimes::new().set_modified(t).set_accessed(t)))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

/// Sorted entry names of a directory (without `.` and `..`, nor the spare
/// temps a server folder holds while files are created in it: see
/// `spare_temps_go_when_the_folder_is_idle_and_at_unmount`).
fn try_listing(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !is_spare_temp(&name) {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

fn listing(dir: &Path) -> Vec<String> {
    try_listing(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Runs a program (under `timeout 120`, so a hung mount fails the test
/// instead of blocking it forever) and returns its output.
fn run(prog: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"))
}

/// Runs a program and asserts it exits 0 with an empty stderr.
fn run_ok(prog: &str, args: &[&str]) -> Output {
    let out = run(prog, args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{prog} {args:?} failed:\n{}",
        show(&out)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `sha256sum FILE` (the system tool: fast, and independent of coupafs).
fn sha256sum(path: &Path) -> String {
    let out = run_ok("sha256sum", &[p(path)]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Writes `len` bytes from /dev/urandom to `path`.
fn write_urandom(path: &Path, len: u64) {
    let mut src = File::open("/dev/urandom").expect("open /dev/urandom");
    let mut dst = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let n = io::copy(&mut (&mut src).take(len), &mut dst).expect("copy urandom");
    assert_eq!(n, len);
}

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>, what: &str) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => errno(&e),
    }
}

fn errname(e: i32) -> String {
    format!("{} ({e})", io::Error::from_raw_os_error(e))
}

/// Asserts `r` failed with exactly `want`.
fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, want: i32, what: &str) {
    let got = errno_of(r, what);
    assert_eq!(
        got,
        want,
        "{what}: errno {} instead of {}",
        errname(got),
        errname(want)
    );
}

/// ls -l's permission string of a regular file mode.
fn perm_string(mode: u32) -> String {
    let mut s = String::from("-");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Mounts with exactly `opts` (no IdentityFile added), with HOME pointing
/// to an empty directory (so no default key in ~/.ssh is tried) and no
/// usable ssh-agent, plus `env`. For login tests.
fn mount_exact(
    sb: &Sandbox,
    target: &str,
    opts: &[String],
    env: &[(&str, &str)],
) -> Result<Mount, String> {
    let home = traversable_tempdir("coupafs-home-");
    let home_s = home.path().to_str().unwrap().to_string();
    let mut envs: Vec<(&str, &str)> = vec![
        ("HOME", &home_s),
        ("SSH_AUTH_SOCK", "/nonexistent/coupafs-test-agent.sock"),
    ];
    envs.extend_from_slice(env);
    let port = sb.port.to_string();
    let opts = opts.join(",");
    Mount::spawn(&["-p", &port, target], &["-o", &opts], &envs)
}

fn known_hosts_opt(sb: &Sandbox) -> String {
    format!("UserKnownHostsFile={}", sb.known_hosts.display())
}

fn key_opt(sb: &Sandbox) -> String {
    format!("IdentityFile={}", sb.key.display())
}

/// A file mode-600 secret file holding `text`.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    fs::write(&f, text).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    f
}

// ---------------------------------------------------------------------------
// lookup / getattr / readdir
// ---------------------------------------------------------------------------

#[test]
fn readdir_lists_exact_standard_tree_and_empty_folder() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &[]);
    let mnt = &m.path;

    assert_eq!(listing(mnt), sorted(&["Archive", "Incoming", "Outgoing"]));
    assert_eq!(listing(&mnt.join("Incoming")), sorted(INCOMING));
    assert_eq!(listing(&mnt.join("Outgoing")), sorted(OUTGOING));
    assert_eq!(listing(&mnt.join("Archive")), sorted(&["Incoming"]));
    assert_eq!(listing(&mnt.join("Archive/Incoming")), sorted(INCOMING));
    assert_eq!(
        listing(&mnt.join("Outgoing/PurchaseOrders")),
        sorted(&[
            "PurchaseOrders_20240101_000001.csv",
            "PurchaseOrders_20240102_000002.xml"
        ])
    );
    // Same as the server side.
    assert_eq!(
        listing(&mnt.join("Incoming")),
        listing(&sb.root.join("Incoming"))
    );

    // An empty folder: no entries, and `ls -A` prints nothing.
    assert_eq!(listing(&mnt.join("Incoming/Users")), Vec::<String>::new());
    let out = run_ok("ls", &["-A", p(&mnt.join("Incoming/Users"))]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // Every folder of the tree is a directory, mode 755 like the server's.
    for d in INCOMING {
        let md = fs::metadata(mnt.join("Incoming").join(d)).unwrap();
        assert!(md.is_dir(), "Incoming/{d} is not a directory");
        assert_eq!(md.mode() & 0o7777, 0o755, "mode of Incoming/{d}");
    }
}

#[test]
fn getattr_matches_server_sizes_mtimes_and_modes() {
    let sb = Sandbox::start();
    let dir = "Outgoing/Invoices";
    let cases: &[(&str, usize, u32, u64)] = &[
        ("Invoice_1.csv", 123, 0o644, 1_683_356_889),
        ("Invoice_2.csv", 0, 0o600, 1_500_000_000),
        ("run.sh", 4096, 0o755, 1_700_000_123),
        ("big_invoice.xml", 1_000_003, 0o640, 1_262_304_000),
    ];
    for (i, (name, len, mode, mtime)) in cases.iter().enumerate() {
        let path = server_file(&sb, &format!("{dir}/{name}"), &random_bytes(*len, i as u64));
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        set_mtime(&path, *mtime);
    }
    let m = Mount::new(&sb, &[]);
    for (name, len, mode, mtime) in cases {
        let via_mount = fs::metadata(m.path.join(dir).join(name)).unwrap();
        let server = fs::metadata(sb.root.join(dir).join(name)).unwrap();
        assert!(via_mount.is_file(), "{name} is a regular file");
        assert_eq!(via_mount.len(), *len as u64, "size of {name}");
        assert_eq!(via_mount.len(), server.len(), "size of {name}");
        // The I/O size programs take for their buffers: one FUSE WRITE each.
        assert_eq!(via_mount.blksize(), 128 << 10, "st_blksize of {name}");
        assert_eq!(via_mount.mtime(), *mtime as i64, "mtime of {name}");
        assert_eq!(via_mount.mtime(), server.mtime(), "mtime of {name}");
        assert_eq!(via_mount.mode() & 0o7777, *mode, "mode of {name}");
        assert_eq!(
            via_mount.mode(),
            server.mode(),
            "full mode (type + permissions) of {name}"
        );
    }
    let md = fs::metadata(m.path.join("Outgoing")).unwrap();
    assert!(md.is_dir());
    assert_eq!(
        md.mode(),
        fs::metadata(sb.root.join("Outgoing")).unwrap().mode()
    );
}

#[test]
fn ls_l_of_folder_with_200_server_files() {
    let sb = Sandbox::start();
    let dir = "Outgoing/Invoices";
    let modes = [0o644, 0o640, 0o600, 0o664];
    let mut want = Vec::new();
    for i in 0..200u64 {
        let name = format!("Invoice_{i:03}.csv");
        let path = server_file(
            &sb,
            &format!("{dir}/{name}"),
            &vec![b'x'; (i * 13) as usize],
        );
        let mode = modes[(i % 4) as usize];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let mtime = 1_600_000_000 + i * 3_601;
        set_mtime(&path, mtime);
        want.push(format!(
            "{} {} {} {}",
            perm_string(mode),
            i * 13,
            mtime,
            name
        ));
    }
    let m = Mount::new(&sb, &[]);
    let out = run_ok(
        "ls",
        &["-l", "-n", "--time-style=+%s", p(&m.path.join(dir))],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with("total ")),
        "ls -l output:\n{text}"
    );
    // perms links uid gid size mtime name
    let got: Vec<String> = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 7, "ls -l line: {l:?}");
            format!("{} {} {} {}", f[0], f[4], f[5], f[6])
        })
        .collect();
    assert_eq!(got.len(), 200, "ls -l output:\n{text}");
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// open / read
// ---------------------------------------------------------------------------

#[test]
fn cat_reads_server_written_files() {
    let sb = Sandbox::start();
    let body = b"Invoice Number,Supplier,Total\nINV-1,Acme,12.50\nINV-2,Globex,99.99\n";
    server_file(&sb, "Outgoing/Invoices/Invoices_20240301.csv", body);
    let m = Mount::new(&sb, &[]);

    let out = run_ok(
        "cat",
        &[p(&m.path.join("Outgoing/Invoices/Invoices_20240301.csv"))],
    );
    assert_eq!(out.stdout, body);
    let out = run_ok("cat", &[p(&m.path.join(SEED_PO))]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), SEED_PO_CSV);
    assert_eq!(
        fs::read(m.path.join(SEED_PO)).unwrap(),
        fs::read(sb.root.join(SEED_PO)).unwrap()
    );
    // A 3 MiB file read with small and odd-sized reads.
    let data = random_bytes(3 * MIB as usize + 17, 7);
    server_file(&sb, "Outgoing/Invoices/mid.bin", &data);
    let mut f = File::open(m.path.join("Outgoing/Invoices/mid.bin")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "3 MiB file read back differs");
}

#[test]
fn read_beyond_4gib_of_sparse_server_file() {
    let sb = Sandbox::start();
    let path = sb.root.join("Outgoing/Invoices/huge.bin");
    let marker = b"COUPAFS-MARKER-AT-4.5-GIB";
    let boundary = b"ACROSS-THE-4GIB-LINE";
    let at_marker = 4 * GIB + GIB / 2;
    let at_boundary = 4 * GIB - 7;
    {
        let f = File::create(&path).unwrap();
        f.set_len(5 * GIB).unwrap();
        f.write_all_at(marker, at_marker).unwrap();
        f.write_all_at(boundary, at_boundary).unwrap();
        f.write_all_at(b"END", 5 * GIB - 3).unwrap();
    }
    give_to_sftp(&path);
    let m = Mount::new(&sb, &[]);
    let f = File::open(m.path.join("Outgoing/Invoices/huge.bin")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 5 * GIB);

    let mut buf = vec![0u8; marker.len()];
    f.read_exact_at(&mut buf, at_marker).unwrap();
    assert_eq!(&buf[..], &marker[..], "marker at 4.5 GiB");

    let mut buf = vec![0u8; boundary.len()];
    f.read_exact_at(&mut buf, at_boundary).unwrap();
    assert_eq!(&buf[..], &boundary[..], "bytes across the 4 GiB line");

    // Zeros just past the 4 GiB line (a truncated 32-bit offset would read
    // the start of the file, or the marker).
    let mut buf = vec![0xffu8; 4096];
    f.read_exact_at(&mut buf, 4 * GIB + 100).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "sparse zeros after 4 GiB");

    // The tail, and EOF exactly at 5 GiB.
    let mut buf = [0u8; 3];
    f.read_exact_at(&mut buf, 5 * GIB - 3).unwrap();
    assert_eq!(&buf, b"END");
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, 5 * GIB).unwrap(), 0, "read at EOF");
    assert_eq!(
        f.read_at(&mut buf, 5 * GIB - 3).unwrap(),
        3,
        "short read at EOF"
    );
}

// ---------------------------------------------------------------------------
// create / write (100 MiB both ways)
// ---------------------------------------------------------------------------

#[test]
fn cp_100mib_into_mount_arrives_intact_on_server() {
    let sb = Sandbox::start();
    let local = traversable_tempdir("coupafs-src-");
    let src = local.path().join("Invoices_big.csv");
    write_urandom(&src, 100 * MIB);
    let want = sha256sum(&src);
    let m = Mount::new(&sb, &[]);

    let dst = m.path.join("Incoming/Invoices/Invoices_big.csv");
    run_ok("cp", &[p(&src), p(&dst)]);

    let server = sb.root.join("Incoming/Invoices/Invoices_big.csv");
    assert_eq!(fs::metadata(&server).unwrap().len(), 100 * MIB);
    assert_eq!(sha256sum(&server), want, "server-side sha256");
    // Nothing else (no temp file) left in the folder.
    assert_eq!(
        listing(&sb.root.join("Incoming/Invoices")),
        vec!["Invoices_big.csv".to_string()]
    );
    assert_eq!(fs::metadata(&dst).unwrap().len(), 100 * MIB);
    assert_eq!(
        fs::metadata(&server).unwrap().uid(),
        sftp_ids().0,
        "owned by the account"
    );
}

#[test]
fn read_100mib_server_file_through_mount() {
    let sb = Sandbox::start();
    let server = sb.root.join("Outgoing/Invoices/Invoices_big.csv");
    write_urandom(&server, 100 * MIB);
    give_to_sftp(&server);
    let want = sha256sum(&server);
    let m = Mount::new(&sb, &[]);
    let via_mount = m.path.join("Outgoing/Invoices/Invoices_big.csv");
    assert_eq!(fs::metadata(&via_mount).unwrap().len(), 100 * MIB);
    assert_eq!(sha256sum(&via_mount), want, "sha256 read through the mount");
}

// ---------------------------------------------------------------------------
// truncate / append / partial rewrite
// ---------------------------------------------------------------------------

#[test]
fn truncate_and_o_trunc_overwrite() {
    let sb = Sandbox::start();
    let dir = "Incoming/Invoices";
    server_file(&sb, &format!("{dir}/t.csv"), b"0123456789ABCDEFGHIJ");
    server_file(
        &sb,
        &format!("{dir}/o.csv"),
        b"a much longer original line\n",
    );
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join(dir);
    let sdir = sb.root.join(dir);

    run_ok("truncate", &["-s", "10", p(&mdir.join("t.csv"))]);
    assert_eq!(fs::read(sdir.join("t.csv")).unwrap(), b"0123456789");
    assert_eq!(fs::metadata(mdir.join("t.csv")).unwrap().len(), 10);
    assert_eq!(fs::read(mdir.join("t.csv")).unwrap(), b"0123456789");

    // Growing pads with zeros.
    run_ok("truncate", &["-s", "12", p(&mdir.join("t.csv"))]);
    assert_eq!(fs::read(sdir.join("t.csv")).unwrap(), b"0123456789\0\0");

    // O_TRUNC overwrite with shorter content.
    fs::write(mdir.join("o.csv"), b"short\n").unwrap();
    assert_eq!(fs::read(sdir.join("o.csv")).unwrap(), b"short\n");
    assert_eq!(fs::metadata(mdir.join("o.csv")).unwrap().len(), 6);
    assert_eq!(
        fs::metadata(sdir.join("o.csv")).unwrap().mode() & 0o7777,
        0o644,
        "mode survives the rewrite"
    );
    // Only the two files: no temp file left behind.
    assert_eq!(listing(&sdir), sorted(&["o.csv", "t.csv"]));
}

#[test]
fn append_and_pwrite_in_the_middle() {
    let sb = Sandbox::start();
    let dir = "Incoming/Invoices";
    server_file(&sb, &format!("{dir}/app.csv"), b"line1\n");
    server_file(&sb, &format!("{dir}/patch.csv"), b"AAAAAAAAAAAAAAAAAAAA");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join(dir);
    let sdir = sb.root.join(dir);

    let target = mdir.join("app.csv");
    run_ok(
        "sh",
        &["-c", "printf 'line2\\n' >> \"$1\"", "sh", p(&target)],
    );
    assert_eq!(fs::read(sdir.join("app.csv")).unwrap(), b"line1\nline2\n");
    // O_APPEND from Rust too: writes go to the end whatever the offset.
    {
        let mut f = OpenOptions::new().append(true).open(&target).unwrap();
        f.write_all(b"line3\n").unwrap();
    }
    assert_eq!(
        fs::read(sdir.join("app.csv")).unwrap(),
        b"line1\nline2\nline3\n"
    );

    {
        let f = OpenOptions::new()
            .write(true)
            .open(mdir.join("patch.csv"))
            .unwrap();
        f.write_all_at(b"XYZ", 8).unwrap();
    }
    assert_eq!(
        fs::read(sdir.join("patch.csv")).unwrap(),
        b"AAAAAAAAXYZAAAAAAAAA"
    );
    assert_eq!(
        fs::read(mdir.join("patch.csv")).unwrap(),
        b"AAAAAAAAXYZAAAAAAAAA"
    );
    assert_eq!(listing(&sdir), sorted(&["app.csv", "patch.csv"]));
}

// ---------------------------------------------------------------------------
// unlink / mkdir / rmdir / rename
// ---------------------------------------------------------------------------

#[test]
fn unlink_mkdir_rmdir_and_enotempty() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/gone.csv", b"x\n");
    server_dir(&sb, "Incoming/Invoices/full");
    server_file(&sb, "Incoming/Invoices/full/keep.csv", b"keep\n");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");

    fs::remove_file(mdir.join("gone.csv")).unwrap();
    assert!(!sdir.join("gone.csv").exists(), "unlink reached the server");
    assert_errno(
        fs::metadata(mdir.join("gone.csv")),
        libc::ENOENT,
        "stat unlinked",
    );

    fs::DirBuilder::new()
        .mode(0o750)
        .create(mdir.join("2024"))
        .unwrap();
    let md = fs::metadata(sdir.join("2024")).unwrap();
    assert!(md.is_dir(), "mkdir reached the server");
    assert_eq!(md.mode() & 0o7777, 0o750, "server mode of new folder");
    assert_eq!(md.uid(), sftp_ids().0);
    // What mkdir(2) answered came with the MKDIR (an LSTAT in its batch).
    let via_mount = fs::metadata(mdir.join("2024")).unwrap();
    assert!(via_mount.is_dir());
    assert_eq!(via_mount.mode() & 0o7777, 0o750, "mode of new folder");
    assert_errno(
        fs::create_dir(mdir.join("2024")),
        libc::EEXIST,
        "mkdir existing",
    );

    fs::remove_dir(mdir.join("2024")).unwrap();
    assert!(!sdir.join("2024").exists(), "rmdir reached the server");
    assert_errno(
        fs::metadata(mdir.join("2024")),
        libc::ENOENT,
        "stat removed dir",
    );

    assert_errno(
        fs::remove_dir(mdir.join("full")),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    assert_eq!(
        fs::read(sdir.join("full/keep.csv")).unwrap(),
        b"keep\n",
        "non-empty folder untouched"
    );
    assert_eq!(listing(&mdir), sorted(&["full"]));
    assert_eq!(listing(&sdir), sorted(&["full"]));
}

/// A program reading a file the mount has not seen yet (a path never
/// listed) gets the file's OPEN sent beside its lookup's LSTAT: its thread
/// is inside openat(2) for reading. A `stat` of another file opens nothing.
/// (An Archive folder: the stale-temp sweep after mount never lists one,
/// so the lookups stay cold however late the test runs.)
#[test]
fn a_cold_read_opens_the_file_beside_its_lookup() {
    let sb = Sandbox::start();
    server_file(&sb, "Archive/Incoming/Invoices/export_1.csv", b"a,b\n1,2\n");
    server_file(&sb, "Archive/Incoming/Invoices/export_2.csv", b"c\n");
    let m = Mount::new(&sb, &["debug"]);
    let mdir = m.path.join("Archive/Incoming/Invoices");
    assert_eq!(fs::read(mdir.join("export_1.csv")).unwrap(), b"a,b\n1,2\n");
    assert_eq!(fs::metadata(mdir.join("export_2.csv")).unwrap().len(), 2);
    let log = m.log();
    assert!(
        log.contains("lookup /Archive/Incoming/Invoices/export_1.csv: opened ahead for its reader"),
        "the reader's lookup did not open the file:\n{}",
        tail(&log, 40)
    );
    assert!(
        !log.contains("export_2.csv: opened ahead"),
        "a stat opened the file:\n{}",
        tail(&log, 40)
    );
    // Read again after the lookup was cached: a normal open, same bytes.
    assert_eq!(fs::read(mdir.join("export_1.csv")).unwrap(), b"a,b\n1,2\n");
}

#[test]
fn rename_within_and_across_folders() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/a.csv", b"aaa\n");
    server_file(&sb, "Incoming/Invoices/x.csv", b"x,1\nx,2\n");
    let m = Mount::new(&sb, &[]);
    let mnt = &m.path;
    let root = &sb.root;

    fs::rename(
        mnt.join("Incoming/Invoices/a.csv"),
        mnt.join("Incoming/Invoices/b.csv"),
    )
    .unwrap();
    assert!(!root.join("Incoming/Invoices/a.csv").exists());
    assert_eq!(
        fs::read(root.join("Incoming/Invoices/b.csv")).unwrap(),
        b"aaa\n"
    );
    assert_eq!(
        fs::read(mnt.join("Incoming/Invoices/b.csv")).unwrap(),
        b"aaa\n"
    );
    assert_errno(
        fs::metadata(mnt.join("Incoming/Invoices/a.csv")),
        libc::ENOENT,
        "old name after rename",
    );

    // As Coupa does after processing a file.
    fs::rename(
        mnt.join("Incoming/Invoices/x.csv"),
        mnt.join("Archive/Incoming/Invoices/x.csv"),
    )
    .unwrap();
    assert!(!root.join("Incoming/Invoices/x.csv").exists());
    assert_eq!(
        fs::read(root.join("Archive/Incoming/Invoices/x.csv")).unwrap(),
        b"x,1\nx,2\n"
    );
    assert_eq!(
        fs::read(mnt.join("Archive/Incoming/Invoices/x.csv")).unwrap(),
        b"x,1\nx,2\n"
    );
    assert_eq!(listing(&mnt.join("Incoming/Invoices")), sorted(&["b.csv"]));
    assert_eq!(
        listing(&mnt.join("Archive/Incoming/Invoices")),
        sorted(&["x.csv"])
    );

    // Renaming a missing file.
    assert_errno(
        fs::rename(
            mnt.join("Incoming/Invoices/nope.csv"),
            mnt.join("Incoming/Invoices/nope2.csv"),
        ),
        libc::ENOENT,
        "rename missing",
    );
}

#[test]
fn rename_over_existing_file_replaces_it_atomically() {
    let sb = Sandbox::start();
    let new_body = b"new content, version 2\n".repeat(100);
    server_file(&sb, "Incoming/Invoices/new.csv", &new_body);
    server_file(&sb, "Incoming/Invoices/cur.csv", b"old content\n");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");
    // Look both up first so the rename is the only thing left to do.
    assert_eq!(fs::read(mdir.join("cur.csv")).unwrap(), b"old content\n");
    assert!(mdir.join("new.csv").exists());

    // A server-side watcher: the target must never be missing.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let target = sdir.join("cur.csv");
        thread::spawn(move || {
            let mut missing = 0u32;
            let mut polls = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if fs::symlink_metadata(&target).is_err() {
                    missing += 1;
                }
                polls += 1;
            }
            (missing, polls)
        })
    };
    thread::sleep(Duration::from_millis(20));
    fs::rename(mdir.join("new.csv"), mdir.join("cur.csv")).unwrap();
    thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    let (missing, polls) = watcher.join().unwrap();
    assert!(polls > 0);
    assert_eq!(
        missing, 0,
        "cur.csv was missing server-side {missing} times (of {polls} polls) during the rename"
    );

    assert_eq!(fs::read(sdir.join("cur.csv")).unwrap(), new_body);
    assert_eq!(fs::read(mdir.join("cur.csv")).unwrap(), new_body);
    assert_eq!(listing(&sdir), sorted(&["cur.csv"]));
    assert_eq!(listing(&mdir), sorted(&["cur.csv"]));
}

#[test]
fn rename_directory_with_files_inside() {
    let sb = Sandbox::start();
    server_dir(&sb, "Incoming/Invoices/batch");
    server_dir(&sb, "Incoming/Invoices/batch/sub");
    server_file(&sb, "Incoming/Invoices/batch/1.csv", b"one\n");
    server_file(&sb, "Incoming/Invoices/batch/2.csv", b"two\n");
    server_file(&sb, "Incoming/Invoices/batch/sub/3.csv", b"three\n");
    let m = Mount::new(&sb, &[]);
    let mnt = &m.path;
    // Visit the files first so inodes of the old paths exist.
    assert_eq!(
        fs::read(mnt.join("Incoming/Invoices/batch/1.csv")).unwrap(),
        b"one\n"
    );
    assert_eq!(
        fs::read(mnt.join("Incoming/Invoices/batch/sub/3.csv")).unwrap(),
        b"three\n"
    );

    fs::rename(
        mnt.join("Incoming/Invoices/batch"),
        mnt.join("Archive/Incoming/Invoices/batch"),
    )
    .unwrap();

    let sdst = sb.root.join("Archive/Incoming/Invoices/batch");
    assert!(!sb.root.join("Incoming/Invoices/batch").exists());
    assert_eq!(listing(&sdst), sorted(&["1.csv", "2.csv", "sub"]));
    assert_eq!(fs::read(sdst.join("sub/3.csv")).unwrap(), b"three\n");

    let mdst = mnt.join("Archive/Incoming/Invoices/batch");
    assert_eq!(listing(&mdst), sorted(&["1.csv", "2.csv", "sub"]));
    assert_eq!(fs::read(mdst.join("1.csv")).unwrap(), b"one\n");
    assert_eq!(fs::read(mdst.join("2.csv")).unwrap(), b"two\n");
    assert_eq!(fs::read(mdst.join("sub/3.csv")).unwrap(), b"three\n");
    assert_errno(
        fs::metadata(mnt.join("Incoming/Invoices/batch/1.csv")),
        libc::ENOENT,
        "file under the old folder name",
    );
    assert_eq!(
        listing(&mnt.join("Incoming/Invoices")),
        Vec::<String>::new()
    );
}

#[test]
fn mv_then_ls_sees_new_state_immediately() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/inv.csv", b"1\n");
    // Default cache timeout: the mount's own change must not wait for it.
    let m = Mount::new(&sb, &[]);
    let src = m.path.join("Incoming/Invoices");
    let dst = m.path.join("Archive/Incoming/Invoices");
    // Prime the caches with the old state.
    assert_eq!(listing(&src), sorted(&["inv.csv"]));
    assert_eq!(listing(&dst), Vec::<String>::new());
    run_ok("ls", &["-l", p(&src), p(&dst)]);

    run_ok("mv", &[p(&src.join("inv.csv")), p(&dst)]);
    let out = run_ok("ls", &[p(&src)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = run_ok("ls", &[p(&dst)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inv.csv\n");
    assert_errno(fs::metadata(src.join("inv.csv")), libc::ENOENT, "old path");
    assert_eq!(fs::read(dst.join("inv.csv")).unwrap(), b"1\n");
    assert_eq!(
        fs::read(sb.root.join("Archive/Incoming/Invoices/inv.csv")).unwrap(),
        b"1\n"
    );
}

// ---------------------------------------------------------------------------
// chmod / utimens / chown / cp -p / tar
// ---------------------------------------------------------------------------

#[test]
fn chmod_touch_and_chown() {
    let sb = Sandbox::start();
    let server = server_file(&sb, "Incoming/Invoices/f.csv", b"content\n");
    let m = Mount::new(&sb, &[]);
    let f = m.path.join("Incoming/Invoices/f.csv");

    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&server).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
    run_ok("chmod", &["640", p(&f)]);
    assert_eq!(fs::metadata(&server).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);

    // 2020-01-02 03:04:05 UTC
    run_ok("touch", &["-d", "2020-01-02 03:04:05 UTC", p(&f)]);
    assert_eq!(fs::metadata(&server).unwrap().mtime(), 1_577_934_245);
    assert_eq!(fs::metadata(&f).unwrap().mtime(), 1_577_934_245);
    run_ok("touch", &["-m", "-d", "@1600000000", p(&f)]);
    assert_eq!(fs::metadata(&server).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(&f).unwrap().mtime(), 1_600_000_000);

    // chown is accepted and ignored: the server account owns everything.
    run_ok("chown", &["1234", p(&f)]);
    run_ok("chown", &["1234:5678", p(&f)]);
    let md = fs::metadata(&server).unwrap();
    assert_eq!((md.uid(), md.gid()), sftp_ids(), "server owner unchanged");
    assert_eq!(fs::read(&server).unwrap(), b"content\n");
    assert_eq!(md.mode() & 0o7777, 0o640);
}

/// A local file `Invoices_cp_p.csv` (mode 640, mtime 1_650_000_000) and a
/// tar archive of batch/{a.csv (640), b.sh (750), sub/c.csv (600)} with
/// fixed mtimes, in a temp dir.
struct LocalSources {
    _dir: tempfile::TempDir,
    cp_src: PathBuf,
    archive: PathBuf,
}

const TAR_FILES: [(&str, &[u8], u32, u64); 3] = [
    ("batch/a.csv", b"a,1\n", 0o640, 1_610_000_000),
    ("batch/b.sh", b"#!/bin/sh\necho b\n", 0o750, 1_620_000_000),
    ("batch/sub/c.csv", b"c\n", 0o600, 1_630_000_000),
];

fn local_sources() -> LocalSources {
    let dir = traversable_tempdir("coupafs-src-");
    let cp_src = dir.path().join("Invoices_cp_p.csv");
    fs::write(&cp_src, b"keep,my,times\n").unwrap();
    fs::set_permissions(&cp_src, fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&cp_src, 1_650_000_000);

    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("batch/sub")).unwrap();
    for (rel, data, mode, mtime) in TAR_FILES {
        fs::write(tree.join(rel), data).unwrap();
        fs::set_permissions(tree.join(rel), fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&tree.join(rel), mtime);
    }
    let archive = dir.path().join("batch.tar");
    run_ok("tar", &["cf", p(&archive), "-C", p(&tree), "batch"]);
    LocalSources {
        _dir: dir,
        cp_src,
        archive,
    }
}

#[test]
fn cp_p_and_tar_xf_into_the_mount_succeed() {
    let sb = Sandbox::start();
    let src = local_sources();
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");

    // Exit 0 and nothing on stderr (no "failed to preserve ownership").
    run_ok("cp", &["-p", p(&src.cp_src), p(&mdir)]);
    let server = sdir.join("Invoices_cp_p.csv");
    assert_eq!(fs::read(&server).unwrap(), b"keep,my,times\n");
    assert_eq!(
        fs::metadata(&server).unwrap().mtime(),
        1_650_000_000,
        "cp -p kept the mtime"
    );
    assert_eq!(
        fs::metadata(mdir.join("Invoices_cp_p.csv"))
            .unwrap()
            .mtime(),
        1_650_000_000
    );

    run_ok("tar", &["xf", p(&src.archive), "-C", p(&mdir)]);
    for (rel, data, _mode, mtime) in TAR_FILES {
        let s = sdir.join(rel);
        assert_eq!(fs::read(&s).unwrap(), data, "{rel} content on the server");
        assert_eq!(
            fs::metadata(&s).unwrap().mtime(),
            mtime as i64,
            "{rel} mtime on the server"
        );
        assert_eq!(
            fs::read(mdir.join(rel)).unwrap(),
            data,
            "{rel} through the mount"
        );
    }
    assert_eq!(listing(&sdir), sorted(&["Invoices_cp_p.csv", "batch"]));
    assert_eq!(
        listing(&sdir.join("batch")),
        sorted(&["a.csv", "b.sh", "sub"])
    );
    assert_eq!(listing(&sdir.join("batch/sub")), sorted(&["c.csv"]));
}

/// Regression: a mode set with fchmod while the file is open for writing
/// (as `cp -p` and `tar xf` do before close) must reach the server, even
/// when the remote temp file was already created with the initial mode.
#[test]
fn cp_p_tar_xf_and_fchmod_keep_the_mode() {
    let sb = Sandbox::start();
    let src = local_sources();
    let m = Mount::new(&sb, &["debug"]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");

    // The minimal case: create, write, fchmod, close.
    {
        let mut f = File::create(mdir.join("fchmod.csv")).unwrap();
        f.write_all(b"x\n").unwrap();
        f.set_permissions(fs::Permissions::from_mode(0o640))
            .unwrap();
        assert_eq!(
            f.metadata().unwrap().mode() & 0o7777,
            0o640,
            "fstat after fchmod"
        );
    }
    let mut wrong = Vec::new();
    let mode_of = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    if mode_of(&sdir.join("fchmod.csv")) != 0o640 {
        wrong.push(format!(
            "fchmod.csv: {:o} instead of 640",
            mode_of(&sdir.join("fchmod.csv"))
        ));
    }

    // cp -p: open(O_CREAT, 0600), write, futimens, fchmod(0640), close.
    run_ok("cp", &["-p", p(&src.cp_src), p(&mdir)]);
    let got = mode_of(&sdir.join("Invoices_cp_p.csv"));
    if got != 0o640 {
        wrong.push(format!("cp -p: Invoices_cp_p.csv {got:o} instead of 640"));
    }
    // tar xf as root: open(O_CREAT, 0700 or 0600), write, futimens, fchown, fchmod, close.
    run_ok("tar", &["xf", p(&src.archive), "-C", p(&mdir)]);
    for (rel, _data, mode, _mtime) in TAR_FILES {
        let got = mode_of(&sdir.join(rel));
        if got != mode {
            wrong.push(format!("tar xf: {rel} {got:o} instead of {mode:o}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "modes set with fchmod before close were not applied on the server:\n{}\n--- log:\n{}",
        wrong.join("\n"),
        tail(&m.log(), 30)
    );
}

// ---------------------------------------------------------------------------
// symlink / readlink / statfs / link
// ---------------------------------------------------------------------------

#[test]
fn symlink_created_through_mount_is_a_server_side_link() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/target.csv", b"target data\n");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");

    std::os::unix::fs::symlink("target.csv", mdir.join("link.csv")).unwrap();
    let smd = fs::symlink_metadata(sdir.join("link.csv")).unwrap();
    assert!(
        smd.file_type().is_symlink(),
        "server-side link.csv is a symlink"
    );
    assert_eq!(
        fs::read_link(sdir.join("link.csv")).unwrap(),
        Path::new("target.csv")
    );
    assert_eq!(
        fs::read_link(mdir.join("link.csv")).unwrap(),
        Path::new("target.csv")
    );
    assert!(fs::symlink_metadata(mdir.join("link.csv"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(mdir.join("link.csv")).unwrap(), b"target data\n");

    // A relative link into another folder of the tree.
    let rel = format!("../../{SEED_PO}");
    std::os::unix::fs::symlink(&rel, mdir.join("po.csv")).unwrap();
    assert_eq!(fs::read_link(sdir.join("po.csv")).unwrap(), Path::new(&rel));
    assert_eq!(fs::read_link(mdir.join("po.csv")).unwrap(), Path::new(&rel));
    assert_eq!(
        String::from_utf8(fs::read(mdir.join("po.csv")).unwrap()).unwrap(),
        SEED_PO_CSV
    );
    let out = run_ok("readlink", &[p(&mdir.join("po.csv"))]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{rel}\n"));
}

#[test]
fn statfs_reports_the_server_filesystem() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &[]);
    let statvfs = |path: &Path| -> libc::statvfs {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(
            rc,
            0,
            "statvfs {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        st
    };
    let via_mount = statvfs(&m.path);
    let server = statvfs(&sb.root);
    assert!(via_mount.f_blocks > 0 && via_mount.f_bsize > 0 && via_mount.f_frsize > 0);
    // statvfs@openssh.com reports the server's filesystem: the same total size.
    assert_eq!(
        via_mount.f_blocks * via_mount.f_frsize,
        server.f_blocks * server.f_frsize,
        "total size"
    );

    let out = run_ok("df", &["-B1", "--output=size,avail", p(&m.path)]);
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("df output:\n{text}"))
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 2, "df output:\n{text}");
    assert_eq!(nums[0], server.f_blocks * server.f_frsize, "df size");
    assert!(nums[1] > 0, "df avail is zero:\n{text}");
}

#[test]
fn hard_link_uses_hardlink_extension() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/a.csv", b"linked\n");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");

    run_ok("ln", &[p(&mdir.join("a.csv")), p(&mdir.join("b.csv"))]);
    let a = fs::metadata(sdir.join("a.csv")).unwrap();
    let b = fs::metadata(sdir.join("b.csv")).unwrap();
    assert_eq!(a.ino(), b.ino(), "server-side b.csv is the same inode");
    assert_eq!(b.nlink(), 2);
    assert_eq!(fs::read(mdir.join("b.csv")).unwrap(), b"linked\n");
    assert_eq!(listing(&mdir), sorted(&["a.csv", "b.csv"]));
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn missing_file_and_folder_give_enoent() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &[]);
    let missing = m.path.join("Incoming/Invoices/missing.csv");
    assert_errno(fs::metadata(&missing), libc::ENOENT, "stat missing");
    assert_errno(File::open(&missing), libc::ENOENT, "open missing");
    assert_errno(fs::remove_file(&missing), libc::ENOENT, "unlink missing");
    assert_errno(
        fs::read_dir(m.path.join("Incoming/Nope")),
        libc::ENOENT,
        "opendir missing",
    );
    assert_errno(
        fs::metadata(m.path.join("Incoming/Nope/x.csv")),
        libc::ENOENT,
        "stat under missing folder",
    );
    let out = run("ls", &[p(&m.path.join("Incoming/Nope"))]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "ls of a missing folder:\n{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{}",
        show(&out)
    );
    let out = run("cat", &[p(&missing)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{}",
        show(&out)
    );
}

#[test]
fn reading_mode_000_file_is_eacces() {
    let sb = Sandbox::start();
    let server = server_file(&sb, "Outgoing/Invoices/secret.csv", b"secret\n");
    fs::set_permissions(&server, fs::Permissions::from_mode(0o000)).unwrap();
    let m = Mount::new(&sb, &[]);
    let f = m.path.join("Outgoing/Invoices/secret.csv");

    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.mode() & 0o7777, 0, "mode 000 visible through the mount");
    assert_eq!(md.len(), 7);
    assert_errno(File::open(&f), libc::EACCES, "open mode-000 file");
    let out = run("cat", &[p(&f)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );
    assert_eq!(fs::read(&server).unwrap(), b"secret\n", "file untouched");
}

/// open(O_CREAT) + write + close with libc, so close(2)'s result is seen
/// (Rust's File drop ignores it). Returns (errno of open, of write, of close),
/// 0 for success.
fn create_write_close(path: &Path, data: &[u8]) -> (i32, i32, i32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a valid C string and a buffer we own.
    unsafe {
        let fd = libc::open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            0o644 as libc::c_uint,
        );
        if fd < 0 {
            return (errno(&io::Error::last_os_error()), 0, 0);
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let werr = if n < 0 {
            errno(&io::Error::last_os_error())
        } else {
            assert_eq!(n as usize, data.len(), "short write");
            0
        };
        let cerr = if libc::close(fd) != 0 {
            errno(&io::Error::last_os_error())
        } else {
            0
        };
        (0, werr, cerr)
    }
}

#[test]
fn creating_in_mode_555_folder_is_eacces_and_leaves_nothing() {
    let sb = Sandbox::start();
    let sdir = sb.root.join("Incoming/Invoices");
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o555)).unwrap();
    let m = Mount::new(&sb, &["debug"]);
    let mdir = m.path.join("Incoming/Invoices");

    let (open_e, write_e, close_e) = create_write_close(&mdir.join("new.csv"), b"a,b\n1,2\n");
    // coupafs may report it at create, or (write-behind) at close.
    let reported = [open_e, write_e, close_e];
    assert!(
        reported.contains(&libc::EACCES) && reported.iter().all(|&e| e == 0 || e == libc::EACCES),
        "errnos (open, write, close) = {reported:?}, expected EACCES at open or close\n--- log:\n{}",
        tail(&m.log(), 40)
    );
    // Nothing on the server, not even a temp file; nothing in the listing
    // through the mount (a cached stat may linger: see the next test).
    assert_eq!(listing(&sdir), Vec::<String>::new(), "server-side folder");
    assert_eq!(
        listing(&mdir),
        Vec::<String>::new(),
        "folder through the mount"
    );
    assert!(
        m.log()
            .contains("close /Incoming/Invoices/new.csv: Permission denied"),
        "the failure is not logged:\n{}",
        m.log()
    );

    // cp reports the failure.
    let local = traversable_tempdir("coupafs-src-");
    let src = local.path().join("x.csv");
    fs::write(&src, b"x\n").unwrap();
    let out = run("cp", &[p(&src), p(&mdir.join("x.csv"))]);
    assert!(!out.status.success(), "cp into a 555 folder succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );
    assert_eq!(
        listing(&sdir),
        Vec::<String>::new(),
        "server-side folder after cp"
    );
    // mkdir too.
    assert_errno(
        fs::create_dir(mdir.join("d")),
        libc::EACCES,
        "mkdir in 555 folder",
    );
}

#[test]
fn failed_create_leaves_no_phantom_file_in_the_mount() {
    let sb = Sandbox::start();
    let sdir = sb.root.join("Incoming/Invoices");
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o555)).unwrap();
    let m = Mount::new(&sb, &["debug"]);
    let f = m.path.join("Incoming/Invoices/new.csv");

    let errs = create_write_close(&f, b"a,b\n");
    assert_eq!(errs, (0, 0, libc::EACCES), "(open, write, close) errnos");
    assert_eq!(listing(&sdir), Vec::<String>::new(), "server-side folder");
    // The file was never created: stat must say so at once, as a local
    // filesystem would (the default cache_timeout is 5 s).
    let started = Instant::now();
    let gone = wait_until(Duration::from_secs(1), || !f.exists());
    assert!(
        gone,
        "stat still reports {} ({:?}) {:?} after close() returned EACCES\n--- log:\n{}",
        f.display(),
        fs::metadata(&f).map(|md| md.len()),
        started.elapsed(),
        tail(&m.log(), 20)
    );
    assert_errno(File::open(&f), libc::ENOENT, "open the never-created file");
}

// ---------------------------------------------------------------------------
// Caching
// ---------------------------------------------------------------------------

#[test]
fn server_side_changes_appear_within_cache_timeout() {
    let sb = Sandbox::start();
    let m = Mount::new(&sb, &["cache_timeout=1"]);
    let mdir = m.path.join("Outgoing/Invoices");
    // Prime every cache with "empty" and "missing".
    assert_eq!(listing(&mdir), Vec::<String>::new());
    assert!(!mdir.join("new.csv").exists());

    server_file(&sb, "Outgoing/Invoices/new.csv", b"fresh\n");
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || {
            try_listing(&mdir).is_ok_and(|l| l == ["new.csv"]) && mdir.join("new.csv").exists()
        }),
        "server-side file did not appear within 3 s: {:?}",
        try_listing(&mdir)
    );
    eprintln!("appeared after {:?}", t.elapsed());
    assert_eq!(fs::read(mdir.join("new.csv")).unwrap(), b"fresh\n");

    fs::remove_file(sb.root.join("Outgoing/Invoices/new.csv")).unwrap();
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || {
            try_listing(&mdir).is_ok_and(|l| l.is_empty()) && !mdir.join("new.csv").exists()
        }),
        "server-side deletion not seen within 3 s: {:?}",
        try_listing(&mdir)
    );
    eprintln!("disappeared after {:?}", t.elapsed());
    assert_errno(
        File::open(mdir.join("new.csv")),
        libc::ENOENT,
        "open deleted",
    );
}

#[test]
fn own_changes_are_visible_immediately() {
    let sb = Sandbox::start();
    // Default cache timeout (5 s): nothing here may wait for it.
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");
    let sdir = sb.root.join("Incoming/Invoices");
    assert_eq!(listing(&mdir), Vec::<String>::new());
    assert!(!mdir.join("n.csv").exists());

    fs::write(mdir.join("n.csv"), b"1,2\n").unwrap();
    assert_eq!(listing(&mdir), sorted(&["n.csv"]));
    assert_eq!(fs::metadata(mdir.join("n.csv")).unwrap().len(), 4);
    assert_eq!(fs::read(sdir.join("n.csv")).unwrap(), b"1,2\n");
    let out = run_ok("ls", &[p(&mdir)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n.csv\n");

    fs::create_dir(mdir.join("sub")).unwrap();
    assert_eq!(listing(&mdir), sorted(&["n.csv", "sub"]));

    fs::remove_file(mdir.join("n.csv")).unwrap();
    assert_eq!(listing(&mdir), sorted(&["sub"]));
    assert!(!mdir.join("n.csv").exists());
    assert!(!sdir.join("n.csv").exists());
    fs::remove_dir(mdir.join("sub")).unwrap();
    let out = run_ok("ls", &[p(&mdir)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(listing(&sdir), Vec::<String>::new());
}

#[test]
fn upload_temp_files_are_hidden() {
    let sb = Sandbox::start();
    server_file(&sb, "Incoming/Invoices/.x.csv.coupafs-a1b2c3", b"partial");
    server_file(&sb, "Incoming/Invoices/x.csv", b"x\n");
    server_file(&sb, "Incoming/Invoices/.keep", b"");
    let m = Mount::new(&sb, &[]);
    let mdir = m.path.join("Incoming/Invoices");

    assert_eq!(listing(&mdir), sorted(&[".keep", "x.csv"]));
    assert_errno(
        fs::metadata(mdir.join(".x.csv.coupafs-a1b2c3")),
        libc::ENOENT,
        "lookup of a temp name",
    );
    let out = run_ok("ls", &["-la", p(&mdir)]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("coupafs-"),
        "{}",
        show(&out)
    );
    // A fresh temp file (another uploader's, maybe) is left alone.
    assert_eq!(
        fs::read(sb.root.join("Incoming/Invoices/.x.csv.coupafs-a1b2c3")).unwrap(),
        b"partial"
    );
}

// ---------------------------------------------------------------------------
// Login and mount-time errors
// ---------------------------------------------------------------------------

#[test]
fn key_login_mounts() {
    let sb = Sandbox::start();
    let m = mount_exact(
        &sb,
        &sb.target(),
        &[key_opt(&sb), known_hosts_opt(&sb)],
        &[],
    )
    .unwrap_or_else(|log| panic!("key login failed:\n{log}"));
    assert_eq!(
        String::from_utf8(fs::read(m.path.join(SEED_PO)).unwrap()).unwrap(),
        SEED_PO_CSV
    );
    assert_login_method(&sb, "publickey", Some("password"));
}

/// sshd's log says the account logged in with `method` (and never with
/// `not`), so a test cannot pass through a different auth path.
fn assert_login_method(sb: &Sandbox, method: &str, not: Option<&str>) {
    let log = sb.log();
    assert!(
        log.contains(&format!("Accepted {method} for coupasftp")),
        "sshd.log:\n{log}"
    );
    if let Some(not) = not {
        assert!(
            !log.contains(&format!("Accepted {not}")),
            "sshd.log:\n{log}"
        );
    }
}

#[test]
fn password_file_login_mounts() {
    let sb = Sandbox::start();
    let m = mount_exact(
        &sb,
        &sb.target(),
        &[
            known_hosts_opt(&sb),
            format!("password_file={}", sb.password_file.display()),
        ],
        &[],
    )
    .unwrap_or_else(|log| panic!("password_file login failed:\n{log}"));
    assert_eq!(
        listing(&m.path),
        sorted(&["Archive", "Incoming", "Outgoing"])
    );
    assert_eq!(
        String::from_utf8(fs::read(m.path.join(SEED_PO)).unwrap()).unwrap(),
        SEED_PO_CSV
    );
    assert_login_method(&sb, "password", Some("publickey"));
}

#[test]
fn env_password_login_mounts() {
    let sb = Sandbox::start();
    let password = sb.password();
    let m = mount_exact(
        &sb,
        &sb.target(),
        &[known_hosts_opt(&sb)],
        &[("COUPAFS_PASSWORD", &password)],
    )
    .unwrap_or_else(|log| panic!("COUPAFS_PASSWORD login failed:\n{log}"));
    fs::write(m.path.join("Incoming/Invoices/env.csv"), b"env\n").unwrap();
    assert_eq!(
        fs::read(sb.root.join("Incoming/Invoices/env.csv")).unwrap(),
        b"env\n"
    );
    assert_login_method(&sb, "password", None);
    // The password never reaches the mount's environment.
    let environ = fs::read(format!("/proc/{}/environ", m.pid())).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains(&password),
        "password still in the daemon's environment"
    );
}

#[test]
fn wrong_password_is_refused_naming_authentication() {
    let sb = Sandbox::start();
    let secrets = traversable_tempdir("coupafs-secret-");
    let wrong = secret_file(secrets.path(), "pw", "Wr0ng-Passw0rd-xyz\n");
    let err = match mount_exact(
        &sb,
        &sb.target(),
        &[
            known_hosts_opt(&sb),
            format!("password_file={}", wrong.display()),
        ],
        &[],
    ) {
        Ok(m) => panic!("mounted with a wrong password:\n{}", m.log()),
        Err(log) => log,
    };
    assert!(
        err.to_lowercase().contains("authentication failed"),
        "message does not name authentication:\n{err}"
    );
    assert!(
        err.contains("coupasftp"),
        "message does not name the user:\n{err}"
    );
    assert!(
        !err.contains("Wr0ng-Passw0rd-xyz"),
        "password printed:\n{err}"
    );
    let log = sb.log();
    assert!(
        log.contains("Failed password for coupasftp"),
        "sshd.log:\n{log}"
    );
    assert!(!log.contains("Accepted"), "sshd.log:\n{log}");
}

#[test]
fn host_key_mismatch_refuses_to_mount() {
    let sb = Sandbox::start();
    let keys = traversable_tempdir("coupafs-otherkeys-");
    let mut kh = String::new();
    for (t, extra) in [("ed25519", &[][..]), ("rsa", &["-b", "2048"][..])] {
        let k = keys.path().join(format!("other_{t}"));
        let mut args = vec!["-q", "-t", t, "-N", "", "-f", p(&k)];
        args.extend_from_slice(extra);
        run_ok("ssh-keygen", &args);
        let pubkey = fs::read_to_string(k.with_extension("pub")).unwrap();
        let mut f = pubkey.split_whitespace();
        kh.push_str(&format!(
            "[127.0.0.1]:{} {} {}\n",
            sb.port,
            f.next().unwrap(),
            f.next().unwrap()
        ));
    }
    let known_hosts = keys.path().join("known_hosts");
    fs::write(&known_hosts, &kh).unwrap();

    let err = mount_refused_by_known_hosts(&sb, &known_hosts, "despite a changed host key");
    assert!(err.contains("HOST KEY"), "no HOST KEY in:\n{err}");
    assert_host_key_refusal(&sb, &err, &known_hosts, &kh);
}

/// Mounts with the sandbox key and `known_hosts` (which lacks the server's
/// key), expecting a refusal; returns coupafs's output. `what` completes
/// "mounted ..." in the message if it mounts.
fn mount_refused_by_known_hosts(sb: &Sandbox, known_hosts: &Path, what: &str) -> String {
    match mount_exact(
        sb,
        &sb.target(),
        &[
            key_opt(sb),
            format!("UserKnownHostsFile={}", known_hosts.display()),
        ],
        &[],
    ) {
        Ok(m) => panic!("mounted {what}:\n{}", m.log()),
        Err(log) => log,
    }
}

/// What every host key refusal must do: name one of the server's real
/// fingerprints in its message, leave `known_hosts` as it was (`before`)
/// and stop before authentication.
fn assert_host_key_refusal(sb: &Sandbox, err: &str, known_hosts: &Path, before: &str) {
    let fps = host_key_fingerprints(sb);
    assert!(
        fps.iter().any(|fp| err.contains(fp.as_str())),
        "message names none of the server's fingerprints {fps:?}:\n{err}"
    );
    assert_eq!(
        fs::read_to_string(known_hosts).unwrap(),
        before,
        "known_hosts changed"
    );
    assert!(
        !sb.log().contains("Accepted"),
        "authenticated anyway:\n{}",
        sb.log()
    );
}

#[test]
fn unknown_host_is_refused_by_default() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-kh-");
    let known_hosts = dir.path().join("known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let err = mount_refused_by_known_hosts(&sb, &known_hosts, "an unknown host");
    assert!(err.contains("host key verification failed"), "{err}");
    assert!(err.contains(&format!("[127.0.0.1]:{}", sb.port)), "{err}");
    assert!(
        err.contains(known_hosts.to_str().unwrap()),
        "message does not name the known_hosts file:\n{err}"
    );
    assert_host_key_refusal(&sb, &err, &known_hosts, "");
}

#[test]
fn unknown_option_is_refused_naming_it() {
    let sb = Sandbox::start();
    let err = match Mount::try_new(&sb, &["frobnicate"]) {
        Ok(m) => panic!("mounted with -o frobnicate:\n{}", m.log()),
        Err(log) => log,
    };
    assert!(err.contains("frobnicate"), "option not named:\n{err}");
    // Refused before connecting.
    assert!(!sb.log().contains("Accepted"), "sshd.log:\n{}", sb.log());

    let err = match Mount::try_new(&sb, &["frobnicate=3"]) {
        Ok(m) => panic!("mounted with -o frobnicate=3:\n{}", m.log()),
        Err(log) => log,
    };
    assert!(err.contains("frobnicate"), "option not named:\n{err}");
}

#[test]
fn missing_remote_folder_is_a_clear_error() {
    let sb = Sandbox::start();
    let missing = sb.root.join("NoSuchFolder");
    let target = format!("{}@127.0.0.1:{}", sb.user, missing.display());
    let err = match mount_exact(&sb, &target, &[key_opt(&sb), known_hosts_opt(&sb)], &[]) {
        Ok(m) => panic!("mounted a missing folder:\n{}", m.log()),
        Err(log) => log,
    };
    assert!(
        err.contains(missing.to_str().unwrap()),
        "message does not name the folder:\n{err}"
    );
    let lower = err.to_lowercase();
    assert!(
        lower.contains("no such file") || lower.contains("does not exist"),
        "message does not say the folder is missing:\n{err}"
    );
}
