//! The `Remote` contract: one test body, run against the in-memory mock
//! (`coupafs::remote::mock`) and against OpenSSH's sftp-server (the sandbox
//! sshd), so the mock that the filesystem's unit tests run on is held to
//! what the real server does. It covers every `Remote` call the filesystem
//! layer makes (src/fs, src/check), with the `RemoteError` variant each
//! failure must arrive as (error.rs maps those to errno per operation).
//!
//! Values that legitimately differ between servers (uid/gid, creation times,
//! directory sizes) are not compared; permission bits are chosen to survive
//! any umask the server may apply (0o600, 0o700).

mod common;

use std::sync::Arc;
use std::time::Duration;

use coupafs::remote::mock::MockRemote;
use coupafs::remote::{Kind, Meta, Remote, RemoteError, SftpRemote};
use coupafs::ssh::{CloseReason, Pool};

use common::Sandbox;

fn join(base: &[u8], name: &str) -> Vec<u8> {
    let mut p = base.to_vec();
    p.push(b'/');
    p.extend_from_slice(name.as_bytes());
    p
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Fails the test unless `r` is the error variant `want` names.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, RemoteError>,
    want: fn(&RemoteError) -> bool,
) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected result {other:?}"),
    }
}

fn not_found(e: &RemoteError) -> bool {
    matches!(e, RemoteError::NotFound(_))
}
fn failure(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Failure(_))
}
fn already_exists(e: &RemoteError) -> bool {
    matches!(e, RemoteError::AlreadyExists(_))
}
fn permission_denied(e: &RemoteError) -> bool {
    matches!(e, RemoteError::PermissionDenied(_))
}

/// Writes `data` as a new file `path` with permission bits 0o600.
fn put<R: Remote>(r: &R, path: &[u8], data: &[u8]) {
    let h = r
        .create_new(path, Some(0o600))
        .unwrap_or_else(|e| panic!("create {}: {e}", show(path)));
    r.write(&h, 0, data).expect("write");
    r.close(&h).expect("close");
}

/// The whole file `path`, read in one call.
fn get<R: Remote>(r: &R, path: &[u8]) -> Vec<u8> {
    let h = r
        .open_read(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", show(path)));
    let data = r.read(&h, 0, 1 << 20).expect("read");
    r.close(&h).expect("close");
    data
}

fn names_of<R: Remote>(r: &R, dir: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = r
        .read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", show(dir)))
        .into_iter()
        .map(|e| show(&e.name))
        .collect();
    names.sort();
    names
}

/// The contract. `base` is an existing, empty, writable directory;
/// `lose_connection` kills the connection(s) every open handle lives on.
fn contract<R: Remote>(r: &R, base: &[u8], lose_connection: &dyn Fn()) {
    // --- lstat / stat ---------------------------------------------------
    let file = join(base, "a.csv");
    put(r, &file, b"hello world");
    let m = r.lstat(&file).expect("lstat file");
    assert_eq!(m.kind, Some(Kind::File));
    assert_eq!(m.size, Some(11));
    assert_eq!(m.permissions, Some(0o600), "create_new's permission bits");
    assert!(m.uid.is_some() && m.gid.is_some() && m.mtime.is_some());
    assert_eq!(r.stat(&file).expect("stat file"), m);
    let d = r.lstat(base).expect("lstat dir");
    assert_eq!(d.kind, Some(Kind::Dir));
    assert!(d.is_dir());
    assert_eq!(r.stat(base).expect("stat dir").kind, Some(Kind::Dir));
    let missing = join(base, "missing");
    expect_err("lstat missing", r.lstat(&missing), not_found);
    expect_err("stat missing", r.stat(&missing), not_found);
    expect_err(
        "lstat below a missing folder",
        r.lstat(&join(&missing, "x")),
        not_found,
    );

    // --- mkdir / read_dir ------------------------------------------------
    let sub = join(base, "sub");
    let made = r.mkdir(&sub, 0o700).expect("mkdir");
    let s = r.lstat(&sub).expect("lstat new dir");
    assert_eq!(s.kind, Some(Kind::Dir));
    assert_eq!(s.permissions, Some(0o700), "mkdir's permission bits");
    if let Some(m) = made {
        assert_eq!(m, s, "the attributes mkdir gave are the new folder's");
    }
    expect_err("mkdir existing", r.mkdir(&sub, 0o700), failure);
    expect_err(
        "mkdir below a missing folder",
        r.mkdir(&join(&missing, "x"), 0o700),
        not_found,
    );
    put(r, &join(&sub, "inner.txt"), b"x");
    let entries = r.read_dir(base).expect("read_dir");
    let mut names: Vec<_> = entries.iter().map(|e| show(&e.name)).collect();
    names.sort();
    assert_eq!(names, ["a.csv", "sub"], "no . and ..");
    for e in &entries {
        let want = r.lstat(&join(base, &show(&e.name))).expect("lstat entry");
        assert_eq!(e.meta.kind, want.kind, "{}", show(&e.name));
        assert_eq!(e.meta.permissions, want.permissions, "{}", show(&e.name));
        if want.kind == Some(Kind::File) {
            assert_eq!(e.meta.size, want.size);
            assert_eq!(e.meta.mtime, want.mtime);
        }
    }
    assert_eq!(names_of(r, &sub), ["inner.txt"]);
    expect_err("read_dir missing", r.read_dir(&missing), not_found);
    expect_err("read_dir of a file", r.read_dir(&file), not_found);

    // --- open_read / read ------------------------------------------------
    let h = r.open_read(&file).expect("open_read");
    assert!(r.handle_alive(&h));
    assert_eq!(r.read(&h, 0, 11).expect("full read"), b"hello world");
    assert_eq!(r.read(&h, 6, 100).expect("short at EOF"), b"world");
    assert_eq!(r.read(&h, 11, 10).expect("at EOF"), b"");
    assert_eq!(r.read(&h, 1000, 10).expect("past EOF"), b"");
    r.close(&h).expect("close read handle");
    expect_err("open_read missing", r.open_read(&missing), not_found);
    // LSTAT and OPEN in one batch (a reader's lookup).
    let (meta, h) = r.lstat_open_read(&file).expect("lstat_open_read");
    assert_eq!(meta.size, Some(11));
    let h = h.expect("a file's handle");
    assert_eq!(r.read(&h, 0, 11).expect("read"), b"hello world");
    r.close(&h).expect("close");
    expect_err(
        "lstat_open_read missing",
        r.lstat_open_read(&missing).map(|(m, _)| m),
        not_found,
    );

    // --- create_new / write / write_from / fsync -------------------------
    expect_err(
        "create_new on a taken name",
        r.create_new(&file, Some(0o600)),
        failure,
    );
    assert_eq!(
        get(r, &file),
        b"hello world",
        "a refused create truncates nothing"
    );
    expect_err(
        "create_new below a missing folder",
        r.create_new(&join(&missing, "x"), Some(0o600)),
        not_found,
    );
    let big = join(base, "big.bin");
    let h = r.create_new(&big, Some(0o600)).expect("create_new");
    assert_eq!(r.lstat(&big).expect("new file").size, Some(0));
    // Several 64 KiB chunks and a partial one, in two parts: once the
    // first part is handed over, `more` extends the send to the whole
    // (a file still being written), and is asked again at the new end.
    let len = 200 * 1024 + 17;
    let first_part = 100 * 1024 + 5;
    let pattern = |at: u64| (at % 251) as u8;
    let events = std::cell::RefCell::new(Vec::new());
    r.write_from(
        std::slice::from_ref(&h),
        0,
        first_part,
        &mut |at, buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pattern(at + i as u64);
            }
            Ok(())
        },
        &mut |end| {
            events.borrow_mut().push(format!("more {end}"));
            end.max(len)
        },
        &mut || events.borrow_mut().push("queued".to_string()),
    )
    .expect("write_from");
    assert_eq!(
        events.into_inner(),
        [
            format!("more {first_part}"),
            format!("more {len}"),
            "queued".to_string()
        ],
        "asked for more at each end, told once after the last that every WRITE was queued"
    );
    // A write past the end leaves a hole of zeros.
    r.write(&h, len + 3, b"end").expect("write past the end");
    r.fsync(&h).expect("fsync");
    // A second handle on the same file (a large upload's other connection),
    // when the backend has one to offer.
    if let coupafs::remote::Twin::Opened(twins) = r.open_twin(&big, &h).expect("open_twin") {
        assert!(!twins.is_empty(), "Opened names at least one handle");
        for twin in &twins {
            r.write(twin, 0, &[pattern(0)])
                .expect("write through the twin");
            r.close(twin).expect("close twin");
        }
    }
    r.close(&h).expect("close written file");
    // The same create with the file opened on the other connections (on
    // loopback, or on the mock by default, none are: `NotWorth`/`Later`).
    expect_err(
        "create_new_striped on a taken name",
        r.create_new_striped(&big, Some(0o600)).map(|(h, _)| h),
        failure,
    );
    let striped = join(base, "striped.bin");
    let (sh, twin) = r
        .create_new_striped(&striped, Some(0o600))
        .expect("create_new_striped");
    r.write(&sh, 0, b"one")
        .expect("write through the new handle");
    if let coupafs::remote::Twin::Opened(twins) = twin {
        for twin in &twins {
            r.write(twin, 3, b"two").expect("write through a twin");
            r.close(twin).expect("close twin");
        }
    }
    r.close(&sh).expect("close striped file");
    assert_eq!(&get(r, &striped)[..3], b"one");
    r.remove(&striped).expect("remove striped file");
    // A spool read that fails mid-upload fails the send once the WRITEs
    // already in flight are answered (it must not wait for one never sent),
    // and `queued` is told once.
    let partial = join(base, "partial.bin");
    let ph = r.create_new(&partial, Some(0o600)).expect("create partial");
    let mut queued = 0;
    let failed = r.write_from(
        std::slice::from_ref(&ph),
        0,
        8 * 65536,
        &mut |at, buf| {
            if at >= 3 * 65536 {
                return Err(std::io::Error::other("spool unreadable"));
            }
            buf.fill(7);
            Ok(())
        },
        &mut |end| end,
        &mut || queued += 1,
    );
    assert!(
        matches!(failed, Err(RemoteError::Protocol(_))),
        "a failed spool read: {failed:?}"
    );
    assert_eq!(queued, 1, "told once that no more WRITEs come");
    r.close(&ph).expect("close partial");
    r.remove(&partial).expect("remove partial");
    let data = get(r, &big);
    assert_eq!(data.len() as u64, len + 6);
    assert!(data[..len as usize]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(i as u64)));
    assert_eq!(&data[len as usize..], b"\0\0\0end");

    // --- setstat ---------------------------------------------------------
    r.setstat(
        &file,
        &Meta::change(Some(0o640), Some((1_600_000_000, 1_600_000_100))),
    )
    .expect("setstat");
    let m = r.lstat(&file).expect("lstat after setstat");
    assert_eq!(m.permissions, Some(0o640));
    assert_eq!(
        (m.atime, m.mtime),
        (Some(1_600_000_000), Some(1_600_000_100))
    );
    assert_eq!(m.size, Some(11), "a chmod leaves the size");
    r.setstat(&sub, &Meta::change(Some(0o750), None))
        .expect("setstat dir");
    assert_eq!(r.lstat(&sub).expect("dir").permissions, Some(0o750));
    expect_err(
        "setstat missing",
        r.setstat(&missing, &Meta::change(Some(0o600), None)),
        not_found,
    );

    // --- commit ----------------------------------------------------------
    // Publish under a new name, with mode and times set on the way.
    let temp = join(base, ".t1");
    let published = join(base, "published.csv");
    let h = r.create_new(&temp, Some(0o600)).expect("create temp");
    r.write(&h, 0, b"v1").expect("write temp");
    let set = Meta::change(Some(0o644), Some((1_600_000_200, 1_600_000_300)));
    let c = r
        .commit(&h, Some(&set), &temp, &published, false)
        .expect("commit onto a new name");
    assert!(c.setstat_error.is_none(), "{:?}", c.setstat_error);
    let cm = c.meta.expect("the file's attributes before the close");
    assert_eq!((cm.size, cm.permissions), (Some(2), Some(0o644)));
    expect_err("temp gone after commit", r.lstat(&temp), not_found);
    let m = r.lstat(&published).expect("published");
    assert_eq!((m.size, m.permissions), (Some(2), Some(0o644)));
    assert_eq!(m.mtime, Some(1_600_000_300));
    assert_eq!(get(r, &published), b"v1");
    // Replace an existing name.
    let temp2 = join(base, ".t2");
    let h = r.create_new(&temp2, Some(0o600)).expect("create temp 2");
    r.write(&h, 0, b"version 2").expect("write temp 2");
    r.commit(&h, None, &temp2, &published, true)
        .expect("commit replacing");
    assert_eq!(get(r, &published), b"version 2");
    expect_err("temp 2 gone", r.lstat(&temp2), not_found);
    // Exclusive commit onto a taken name: AlreadyExists (O_EXCL), and the
    // temporary file stays for the caller to clean up.
    let temp3 = join(base, ".t3");
    let h = r.create_new(&temp3, Some(0o600)).expect("create temp 3");
    r.write(&h, 0, b"loser").expect("write temp 3");
    expect_err(
        "exclusive commit onto a taken name",
        r.commit(&h, None, &temp3, &published, false),
        already_exists,
    );
    assert_eq!(get(r, &published), b"version 2", "the taken name is kept");
    assert_eq!(get(r, &temp3), b"loser");
    r.remove(&temp3).expect("remove temp 3");

    // --- rename / rename_noreplace ---------------------------------------
    let b = join(base, "b.csv");
    put(r, &b, b"bee");
    r.rename(&b, &published).expect("rename replacing");
    assert_eq!(get(r, &published), b"bee");
    expect_err("renamed away", r.lstat(&b), not_found);
    let c_path = join(base, "c.csv");
    put(r, &c_path, b"sea");
    expect_err(
        "rename_noreplace onto a taken name",
        r.rename_noreplace(&c_path, &published),
        already_exists,
    );
    assert_eq!(get(r, &published), b"bee");
    let d_path = join(base, "d.csv");
    r.rename_noreplace(&c_path, &d_path)
        .expect("rename_noreplace onto a free name");
    assert_eq!(get(r, &d_path), b"sea");
    expect_err("rename missing", r.rename(&missing, &b), not_found);
    expect_err(
        "rename into a missing folder",
        r.rename(&d_path, &join(&missing, "x")),
        not_found,
    );
    expect_err(
        "rename a file onto a folder",
        r.rename(&d_path, &sub),
        failure,
    );
    // A folder moves with its contents.
    let moved = join(base, "moved");
    r.rename(&sub, &moved).expect("rename folder");
    assert_eq!(names_of(r, &moved), ["inner.txt"]);
    assert_eq!(get(r, &join(&moved, "inner.txt")), b"x");
    expect_err("old folder gone", r.read_dir(&sub), not_found);

    // --- remove / rmdir --------------------------------------------------
    expect_err("rmdir non-empty", r.rmdir(&moved), failure);
    expect_err("remove a folder", r.remove(&moved), failure);
    r.remove(&join(&moved, "inner.txt")).expect("remove");
    r.rmdir(&moved).expect("rmdir empty");
    expect_err("rmdir missing", r.rmdir(&moved), not_found);
    expect_err("remove missing", r.remove(&missing), not_found);

    // --- symlink / readlink ----------------------------------------------
    let link = join(base, "link");
    r.symlink(&link, b"d.csv").expect("symlink");
    assert_eq!(r.readlink(&link).expect("readlink"), b"d.csv");
    let lm = r.lstat(&link).expect("lstat link");
    assert_eq!(lm.kind, Some(Kind::Symlink));
    let sm = r.stat(&link).expect("stat follows the link");
    assert_eq!((sm.kind, sm.size), (Some(Kind::File), Some(3)));
    let listed = r.read_dir(base).expect("read_dir with a link");
    let entry = listed
        .iter()
        .find(|e| e.name == b"link")
        .expect("link listed");
    assert_eq!(
        entry.meta.kind,
        Some(Kind::Symlink),
        "listings do not follow"
    );
    expect_err("symlink onto a taken name", r.symlink(&link, b"x"), failure);
    expect_err("readlink missing", r.readlink(&missing), not_found);
    expect_err("readlink of a file", r.readlink(&d_path), |e| {
        matches!(e, RemoteError::Other(_))
    });
    let dangling = join(base, "dangling");
    r.symlink(&dangling, b"nowhere").expect("dangling symlink");
    expect_err("stat of a dangling link", r.stat(&dangling), not_found);
    assert_eq!(
        r.lstat(&dangling).expect("lstat dangling").kind,
        Some(Kind::Symlink)
    );

    // --- hardlink --------------------------------------------------------
    let hard = join(base, "hard.csv");
    r.hardlink(&d_path, &hard).expect("hardlink");
    assert_eq!(get(r, &hard), b"sea");
    assert_eq!(get(r, &d_path), b"sea");
    expect_err(
        "hardlink onto a taken name",
        r.hardlink(&d_path, &hard),
        failure,
    );
    expect_err(
        "hardlink of a missing file",
        r.hardlink(&missing, &join(base, "h2")),
        not_found,
    );

    // --- statvfs / realpath ----------------------------------------------
    let v = r.statvfs(base).expect("statvfs");
    assert!(
        v.block_size > 0 && v.fragment_size > 0 && v.name_max > 0,
        "{v:?}"
    );
    assert!(
        v.blocks >= v.blocks_free && v.blocks_free >= v.blocks_available,
        "{v:?}"
    );
    assert!(v.files >= v.files_free, "{v:?}");
    assert_eq!(r.realpath(base).expect("realpath"), base);
    let mut dotted = join(base, "moved2");
    r.mkdir(&dotted, 0o700).expect("mkdir for realpath");
    dotted.extend_from_slice(b"/../d.csv");
    assert_eq!(r.realpath(&dotted).expect("realpath .."), d_path);
    let dot = join(base, ".");
    assert_eq!(r.realpath(&dot).expect("realpath ."), base);

    // --- permission denied (the account is unprivileged) -----------------
    let locked = join(base, "locked.csv");
    put(r, &locked, b"secret");
    r.setstat(&locked, &Meta::change(Some(0o000), None))
        .expect("chmod 000");
    assert_eq!(r.lstat(&locked).expect("stat locked").permissions, Some(0));
    expect_err(
        "open_read of a mode-000 file",
        r.open_read(&locked),
        permission_denied,
    );
    r.setstat(&locked, &Meta::change(Some(0o600), None))
        .expect("chmod back");
    assert_eq!(get(r, &locked), b"secret");

    // --- handle_alive: a handle dies with its connection ----------------
    let h = r.open_read(&d_path).expect("open before the loss");
    assert!(r.handle_alive(&h));
    lose_connection();
    assert!(!r.handle_alive(&h), "handle outlived its connection");
    expect_err("read on a dead handle", r.read(&h, 0, 3), |e| {
        matches!(e, RemoteError::StaleHandle)
    });
    // New calls go through (a new connection on the real server).
    assert_eq!(get(r, &d_path), b"sea");
}

#[test]
fn the_mock_keeps_the_contract() {
    let mock = MockRemote::new();
    mock.mkdir(b"/root/contract", 0o755).expect("mkdir base");
    contract(&mock, b"/root/contract", &|| mock.lose_connection());
}

#[test]
fn openssh_keeps_the_contract() {
    let sb = Sandbox::start();
    // As src/mount/mod.rs builds it.
    let pool = Pool::new(sb.connect_params(), 2);
    let first = pool.connect_first().unwrap_or_else(|e| panic!("{e}"));
    let remote = Arc::new(SftpRemote::new(
        pool.clone(),
        &first,
        Duration::from_secs(30),
    ));
    drop(first);
    let root = sb.root.to_str().expect("utf-8 sandbox root").as_bytes();
    let base = join(root, "contract");
    // sftp-server answers in order: the LSTAT batched with the MKDIR sees
    // the new folder, so mkdir(2) needs no second round trip.
    let made = remote.mkdir(&base, 0o755).expect("mkdir base");
    assert!(
        made.is_some_and(|m| m.is_dir()),
        "MKDIR's batch gave the new folder's attributes"
    );
    contract(remote.as_ref(), &base, &|| {
        pool.close_all(CloseReason::LinkDead("contract test".into()))
    });
    pool.close_all(CloseReason::Done);
}

/// Across a round trip the create's twins leave right behind it on the
/// other connection. Whether they find the file depends on which reaches
/// the server first; a forwarder with one delay per connection fixes the
/// order. The creating connection ahead: the twins come back open, with no
/// second round trip. Far behind: the twins' OPENs (no CREAT) fail and
/// create nothing, the answer is `Later`, and `open_twin` opens them then.
/// Twins whose replies come long after the create's (a slow or wedged
/// connection) do not hold it up: `Later`, and the handles that still
/// come are closed on arrival, none left open on the server.
#[test]
fn a_creates_twins_open_beside_it_or_after_it_when_they_arrive_first() {
    use common::forwarder::Forwarder;
    use coupafs::remote::Twin;
    let sb = Sandbox::start();
    let root = sb.root.to_str().expect("utf-8 sandbox root").as_bytes();
    let ms = Duration::from_millis;
    for (delays, beside) in [
        ([ms(2), ms(12)], Some(true)),
        ([ms(25), ms(2)], Some(false)),
        ([ms(2), ms(150)], None),
    ] {
        let fwd = Forwarder::start_with_delays(sb.port, &delays);
        let (pool, remote, _work) = through(&sb, &fwd, Duration::from_secs(30));
        let dir = join(root, &tag(beside));
        remote.mkdir(&dir, 0o755).expect("mkdir");
        // Timed requests open the second connection (a WAN round trip).
        let up = common::wait_until(Duration::from_secs(20), || {
            let _ = remote.lstat(&dir);
            pool.status().connected == 2
        });
        assert!(up, "second connection never came up");
        let path = join(&dir, ".file.coupafs-test");
        let (h, twin) = remote
            .create_new_striped(&path, Some(0o600))
            .expect("create_new_striped");
        let file = sb.root.join(format!("{}/.file.coupafs-test", tag(beside)));
        let twins = match (beside, twin) {
            (Some(true), Twin::Opened(twins)) => twins,
            (Some(false) | None, Twin::Later) => {
                if beside.is_none() {
                    // The late twins' handles arrive and are closed: only
                    // the create's own stays open on the server.
                    let one = common::wait_until(Duration::from_secs(5), || holders(&file) == 1);
                    assert!(
                        one,
                        "late twin handles left open: {} holders",
                        holders(&file)
                    );
                }
                match remote.open_twin(&path, &h).expect("open_twin") {
                    Twin::Opened(twins) => twins,
                    other => panic!("open_twin after the create: {other:?}"),
                }
            }
            (beside, other) => panic!("beside {beside:?}: {other:?}"),
        };
        assert!(!twins.is_empty());
        // Each handle holds the file open in its channel's sftp-server.
        let all = common::wait_until(Duration::from_secs(5), || holders(&file) == 1 + twins.len());
        assert!(
            all,
            "beside {beside:?}: {} holders for {} handles",
            holders(&file),
            1 + twins.len()
        );
        remote.write(&h, 0, b"main").expect("write");
        for twin in &twins {
            remote
                .write(twin, 4, b"+twin")
                .expect("write through a twin");
            remote.close(twin).expect("close twin");
        }
        remote.close(&h).expect("close");
        assert_eq!(std::fs::read(&file).expect("read back"), b"main+twin");
        let names: Vec<_> = std::fs::read_dir(sb.root.join(tag(beside)))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "the twins created nothing: {names:?}");
        pool.close_all(CloseReason::Done);
    }
}

/// A read of a large file opens it on both connections at once
/// (`open_read_pair`). When the second one's reply is not back within the
/// call's bound, the read goes on with one handle; the handle that comes
/// later is closed on arrival, not left open on the server for as long as
/// that connection lives.
#[test]
fn a_read_twin_answering_after_its_open_gave_up_is_closed() {
    use common::forwarder::Forwarder;
    let sb = Sandbox::start();
    let root = sb.root.to_str().expect("utf-8 sandbox root").as_bytes();
    // A few milliseconds each way: a WAN-like round trip, where a read
    // opens its file on two connections.
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(3));
    let bound = Duration::from_secs(1);
    let (pool, remote, _work) = through(&sb, &fwd, bound);
    let path = join(root, "pair.csv");
    put(&remote, &path, b"id,amount\n1,2\n");
    let file = sb.root.join("pair.csv");
    let up = common::wait_until(Duration::from_secs(20), || {
        let _ = remote.open_read_pair(&path).map(|(h, twin)| {
            for h in std::iter::once(h).chain(twin) {
                remote.close(&h).expect("close");
            }
        });
        pool.status().connected == 2
    });
    assert!(up, "second connection never came up");
    let (h, twin) = remote.open_read_pair(&path).expect("open pair");
    let twin = twin.expect("both connections up: a pair");
    remote.close(&twin).expect("close twin");
    remote.close(&h).expect("close");
    assert!(
        common::wait_until(Duration::from_secs(5), || holders(&file) == 0),
        "handles left open after closing both"
    );

    // The second connection (accepted second) turns slow: its reply comes
    // back long after the bound.
    fwd.set_delay(1, bound + Duration::from_millis(500));
    let (h, twin) = remote.open_read_pair(&path).expect("open pair");
    assert!(twin.is_none(), "a twin past the bound: {twin:?}");
    assert_eq!(remote.read(&h, 0, 64).expect("read"), b"id,amount\n1,2\n");
    // Its OPEN reaches the server, and the handle it gets is closed once
    // the reply is back: only the read's own handle stays.
    assert!(
        common::wait_until(Duration::from_secs(10), || holders(&file) == 2),
        "the slow connection's OPEN never reached the server"
    );
    assert!(
        common::wait_until(Duration::from_secs(15), || holders(&file) == 1),
        "the late twin's handle was left open: {} holders",
        holders(&file)
    );
    // Closed by coupafs, not by the connection dying (which closes too).
    let status = pool.status();
    assert_eq!(
        (status.connected, status.reconnects),
        (2, 0),
        "the slow connection must stay up for this test to mean anything"
    );
    remote.close(&h).expect("close");
    pool.close_all(CloseReason::Done);
}

/// A two-connection pool and its `SftpRemote` (calls bounded by
/// `op_timeout`) reaching the sandbox through `fwd`; the temp dir holds
/// their known_hosts.
fn through(
    sb: &Sandbox,
    fwd: &common::forwarder::Forwarder,
    op_timeout: Duration,
) -> (Arc<Pool>, SftpRemote, tempfile::TempDir) {
    let work = common::traversable_tempdir("coupafs-fwd-");
    let mut params = sb.connect_params();
    params.port = fwd.port;
    params.known_hosts = common::forwarder::known_hosts_for_port(sb, fwd.port, work.path());
    let pool = Pool::new(params, 2);
    let first = pool.connect_first().unwrap_or_else(|e| panic!("{e}"));
    let remote = SftpRemote::new(pool.clone(), &first, op_timeout);
    (pool, remote, work)
}

fn tag(beside: Option<bool>) -> String {
    format!("twins-{beside:?}")
}

/// Processes holding `file` open (the server's sftp-server processes, one
/// per open handle's channel).
fn holders(file: &std::path::Path) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        n += fds
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
            .count();
    }
    n
}
