//! Filesystem semantics and the upload state machine, on the in-memory
//! `MockRemote` with failure injection.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::fs::inode::ROOT_INO;
use crate::fs::open_files::coupa_warnings;
use crate::remote::mock::MockRemote;
use crate::remote::RemoteError;

struct Rig {
    fs: Arc<Fs<MockRemote>>,
    remote: Arc<MockRemote>,
    _spool: tempfile::TempDir,
}

fn rig() -> Rig {
    rig_with_ttl(Duration::from_secs(60))
}

fn rig_with_ttl(cache_ttl: Duration) -> Rig {
    rig_with(cache_ttl, 0)
}

/// The configuration the unit tests mount `/root` with: spool in
/// `spool`, hidden temps (`.` prefix), 64 MiB spool limit.
pub(crate) fn test_config(
    spool: &std::path::Path,
    cache_ttl: Duration,
    spare_temps: usize,
) -> FsConfig {
    FsConfig {
        remote_root: b"/root".to_vec(),
        uid: 0,
        gid: 0,
        umask: None,
        read_only: false,
        strict_setstat: false,
        naming: TempNaming {
            prefix: b".".to_vec(),
            upload_dir: None,
        },
        spool_dir: spool.to_path_buf(),
        cache_ttl,
        contain_symlinks: true,
        spool_max: 64 << 20,
        spare_temps,
    }
}

fn rig_with(cache_ttl: Duration, spare_temps: usize) -> Rig {
    let remote = Arc::new(MockRemote::new());
    remote.mkdir_p("/root/Incoming/Invoices");
    remote.mkdir_p("/root/Archive/Incoming/Invoices");
    let spool = tempfile::tempdir().expect("spool dir");
    let cfg = test_config(spool.path(), cache_ttl, spare_temps);
    let fs = Fs::new(remote.clone(), cfg);
    // No descriptor of this test process can be on a mount with this id,
    // so every flush by the opener is its last close.
    fs.set_mount_id(u64::MAX);
    Rig {
        fs,
        remote,
        _spool: spool,
    }
}

/// A reply buffer with room for `room` entries.
struct Entries {
    room: usize,
    got: Vec<(u64, u64, Vec<u8>, Stat)>,
}

impl Entries {
    fn room_for(room: usize) -> Self {
        Self {
            room,
            got: Vec::new(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.got
            .iter()
            .map(|(_, _, name, _)| String::from_utf8_lossy(name).into_owned())
            .collect()
    }
}

impl DirectoryReplier for Entries {
    fn add(&mut self, ino: u64, offset: u64, name: &[u8], stat: &Stat) -> bool {
        if self.got.len() == self.room {
            return true;
        }
        self.got.push((ino, offset, name.to_vec(), *stat));
        false
    }
}

fn me() -> u32 {
    std::process::id()
}

fn denied() -> RemoteError {
    RemoteError::PermissionDenied(String::new())
}

impl Rig {
    /// Inode of a mount-relative directory path.
    fn dir(&self, path: &str) -> u64 {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            ino = self.fs.lookup(ino, OsStr::new(c)).expect("lookup").ino;
        }
        ino
    }

    fn create(&self, dir: &str, name: &str, flags: i32) -> FsResult<(u64, u64)> {
        let parent = self.dir(dir);
        let (stat, fh) = self.fs.create(
            parent,
            OsStr::new(name),
            0o644,
            libc::O_WRONLY | libc::O_CREAT | flags,
            me(),
        )?;
        Ok((stat.ino, fh))
    }

    fn write_all(&self, ino: u64, fh: u64, data: &[u8]) {
        for (i, chunk) in data.chunks(4096).enumerate() {
            self.fs
                .write(ino, fh, (i * 4096) as u64, chunk)
                .expect("write");
        }
    }

    fn close(&self, ino: u64, fh: u64) -> FsResult<()> {
        let flushed = self.fs.flush(ino, fh, me());
        let released = self.fs.release(ino, fh);
        flushed.and(released)
    }

    /// Every name one opendir/readdir of `dir` shows, `.` and `..` first.
    fn listed_names(&self, dir: u64) -> Vec<String> {
        let dh = self.fs.opendir(dir).expect("opendir");
        let mut out = Entries::room_for(usize::MAX);
        self.fs.readdir(dir, dh, 0, &mut out).expect("readdir");
        self.fs.releasedir(dh);
        out.names()
    }

    /// No temp file is left anywhere the tests write.
    fn assert_no_temps(&self) {
        for dir in ["/root/Incoming/Invoices", "/root/Archive/Incoming/Invoices"] {
            let temps: Vec<String> = self
                .remote
                .names(dir)
                .into_iter()
                .filter(|n| n.contains(".coupafs-"))
                .collect();
            assert!(temps.is_empty(), "temp files left in {dir}: {temps:?}");
        }
    }
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_new_file_appears_once_complete_and_only_at_close() {
    let r = rig();
    let data = content(50_000);
    let (ino, fh) = r
        .create("Incoming/Invoices", "inv_0001.csv", 0)
        .expect("create");
    r.write_all(ino, fh, &data);
    assert_eq!(r.remote.file("/root/Incoming/Invoices/inv_0001.csv"), None);
    // Through the mount it is there, with the size written so far.
    assert_eq!(r.fs.getattr(ino).expect("getattr").size, 50_000);
    r.close(ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/inv_0001.csv"),
        Some(data)
    );
    assert_eq!(
        r.remote.appearances("/root/Incoming/Invoices/inv_0001.csv"),
        vec![50_000],
        "the final name must appear exactly once, complete"
    );
    r.assert_no_temps();
}

#[test]
fn a_failed_write_is_reported_at_close_and_leaves_nothing() {
    let r = rig();
    r.remote
        .fail_always("write", RemoteError::Failure(String::new()));
    let (ino, fh) = r
        .create("Incoming/Invoices", "full.csv", 0)
        .expect("create");
    r.write_all(ino, fh, &content(10_000));
    let err = r.close(ino, fh).expect_err("close must fail");
    assert_eq!(err.errno, libc::ENOSPC, "{err}");
    assert_eq!(r.remote.file("/root/Incoming/Invoices/full.csv"), None);
    assert!(r
        .remote
        .appearances("/root/Incoming/Invoices/full.csv")
        .is_empty());
    r.remote.heal();
    r.assert_no_temps();
}

/// The kernel sends RELEASE only after close() has returned: a listing or
/// lookup in between must not show a file whose close() reported failure.
#[test]
fn a_failed_new_file_is_gone_from_listings_before_release() {
    let r = rig();
    r.remote.fail_always("rename", denied());
    let (ino, fh) = r.create("Incoming/Invoices", "new.csv", 0).expect("create");
    r.write_all(ino, fh, b"a,b\n");
    let err = r.fs.flush(ino, fh, me()).expect_err("flush must fail");
    assert_eq!(err.errno, libc::EACCES, "{err}");
    let dir = r.dir("Incoming/Invoices");
    let names = r.listed_names(dir);
    assert_eq!(names, vec![".", ".."], "listing between flush and release");
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("new.csv"))
            .expect_err("lookup between flush and release")
            .errno,
        libc::ENOENT
    );
    r.fs.release(ino, fh)
        .expect("release after a reported failure");
    r.remote.heal();
    r.assert_no_temps();
}

#[test]
fn a_refused_rename_is_reported_and_the_old_file_stays() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/a.csv", b"old");
    r.remote.fail_always("rename", denied());
    let (ino, fh) = r.create("Incoming/Invoices", "a.csv", 0).expect("create");
    r.write_all(ino, fh, b"new content");
    let err = r.close(ino, fh).expect_err("close must fail");
    assert_eq!(err.errno, libc::EACCES, "{err}");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/a.csv"),
        Some(b"old".to_vec())
    );
    r.remote.heal();
    r.assert_no_temps();
}

#[test]
fn an_upload_cut_by_a_dropped_link_is_retried_from_the_spool() {
    let r = rig();
    let data = content(200_000);
    r.remote
        .fail("write", 0, RemoteError::Lost("link dropped".into()));
    let (ino, fh) = r
        .create("Incoming/Invoices", "retry.csv", 0)
        .expect("create");
    r.write_all(ino, fh, &data);
    r.close(ino, fh).expect("close after retry");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/retry.csv"),
        Some(data)
    );
    assert_eq!(
        r.remote.appearances("/root/Incoming/Invoices/retry.csv"),
        vec![200_000]
    );
}

#[test]
fn a_link_that_stays_down_fails_close_with_eio() {
    let r = rig();
    r.remote
        .fail_always("open", RemoteError::Unreachable("down".into()));
    let (ino, fh) = r
        .create("Incoming/Invoices", "down.csv", 0)
        .expect("create");
    r.write_all(ino, fh, b"x");
    let err = r.close(ino, fh).expect_err("close must fail");
    assert_eq!(err.errno, libc::EIO);
    r.remote.heal();
    assert_eq!(r.remote.file("/root/Incoming/Invoices/down.csv"), None);
}

#[test]
fn o_excl_fails_on_an_existing_name() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/x.csv", b"keep");
    let err = r
        .create("Incoming/Invoices", "x.csv", libc::O_EXCL)
        .expect_err("EEXIST");
    assert_eq!(err.errno, libc::EEXIST);
}

#[test]
fn o_excl_trusting_a_negative_lookup_still_never_replaces() {
    let r = rig();
    let dir = r.dir("Incoming/Invoices");
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("race.csv"))
            .expect_err("absent")
            .errno,
        libc::ENOENT
    );
    let (ino, fh) = r
        .create("Incoming/Invoices", "race.csv", libc::O_EXCL)
        .expect("create");
    // Another client creates the name meanwhile.
    r.remote
        .put_file("/root/Incoming/Invoices/race.csv", b"theirs");
    r.write_all(ino, fh, b"ours");
    let err = r.close(ino, fh).expect_err("EEXIST at close");
    assert_eq!(err.errno, libc::EEXIST);
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/race.csv"),
        Some(b"theirs".to_vec())
    );
    r.assert_no_temps();
}

#[test]
fn unlinking_an_open_new_file_publishes_nothing() {
    let r = rig();
    let (ino, fh) = r
        .create("Incoming/Invoices", "gone.csv", 0)
        .expect("create");
    r.write_all(ino, fh, b"data");
    let dir = r.dir("Incoming/Invoices");
    r.fs.unlink(dir, OsStr::new("gone.csv")).expect("unlink");
    r.close(ino, fh).expect("close");
    assert_eq!(r.remote.file("/root/Incoming/Invoices/gone.csv"), None);
    r.assert_no_temps();
}

#[test]
fn renaming_an_open_file_publishes_under_the_new_name_only() {
    let r = rig();
    let (ino, fh) = r.create("Incoming/Invoices", "x.tmp", 0).expect("create");
    r.write_all(ino, fh, b"a,b\n1,2\n");
    let dir = r.dir("Incoming/Invoices");
    r.fs.rename(dir, OsStr::new("x.tmp"), dir, OsStr::new("x.csv"), false)
        .expect("rename");
    r.close(ino, fh).expect("close");
    assert_eq!(r.remote.file("/root/Incoming/Invoices/x.tmp"), None);
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/x.csv"),
        Some(b"a,b\n1,2\n".to_vec())
    );
    assert!(r
        .remote
        .appearances("/root/Incoming/Invoices/x.tmp")
        .is_empty());
}

#[test]
fn the_tmp_then_mv_job_pattern_works() {
    let r = rig();
    let (ino, fh) = r.create("Incoming/Invoices", "job.tmp", 0).expect("create");
    r.write_all(ino, fh, b"rows");
    r.close(ino, fh).expect("close");
    let dir = r.dir("Incoming/Invoices");
    let archive = r.dir("Archive/Incoming/Invoices");
    r.fs.rename(
        dir,
        OsStr::new("job.tmp"),
        archive,
        OsStr::new("job.csv"),
        false,
    )
    .expect("mv");
    assert_eq!(
        r.remote.file("/root/Archive/Incoming/Invoices/job.csv"),
        Some(b"rows".to_vec())
    );
    assert_eq!(r.remote.file("/root/Incoming/Invoices/job.tmp"), None);
    // The mount sees the move at once.
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("job.tmp"))
            .expect_err("moved")
            .errno,
        libc::ENOENT
    );
    assert!(r.fs.lookup(archive, OsStr::new("job.csv")).is_ok());
}

#[test]
fn truncating_a_closed_file_republishes_it_whole() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/t.csv", &content(1000));
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("t.csv")).expect("lookup").ino;
    let set = SetAttr {
        size: Some(10),
        ..SetAttr::default()
    };
    assert_eq!(r.fs.setattr(ino, None, set).expect("truncate").size, 10);
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/t.csv"),
        Some(content(1000)[..10].to_vec())
    );
    assert_eq!(
        r.remote.calls("setstat"),
        0,
        "no in-place SETSTAT size on the live file"
    );
    r.assert_no_temps();
}

#[test]
fn rewriting_the_middle_of_an_existing_file_keeps_the_rest() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/m.csv", b"0123456789");
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("m.csv")).expect("lookup").ino;
    let (fh, _) = r.fs.open(ino, libc::O_RDWR, me()).expect("open");
    r.fs.write(ino, fh, 3, b"abc").expect("write");
    assert_eq!(r.fs.read(ino, fh, 0, 100).expect("read"), b"012abc6789");
    r.close(ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/m.csv"),
        Some(b"012abc6789".to_vec())
    );
}

#[test]
fn append_mode_writes_at_the_end() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/log.csv", b"a\n");
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("log.csv")).expect("lookup").ino;
    let (fh, _) =
        r.fs.open(ino, libc::O_WRONLY | libc::O_APPEND, me())
            .expect("open");
    r.fs.write(ino, fh, 0, b"b\n").expect("write");
    r.close(ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/log.csv"),
        Some(b"a\nb\n".to_vec())
    );
}

#[test]
fn fsync_makes_bytes_durable_in_the_temp_file_not_the_final_name() {
    let r = rig();
    let (ino, fh) = r.create("Incoming/Invoices", "s.csv", 0).expect("create");
    r.write_all(ino, fh, b"half");
    r.fs.fsync(ino, fh).expect("fsync");
    assert_eq!(r.remote.file("/root/Incoming/Invoices/s.csv"), None);
    let temps: Vec<String> = r
        .remote
        .names("/root/Incoming/Invoices")
        .into_iter()
        .filter(|n| n.starts_with(".s.csv.coupafs-"))
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(
        r.remote
            .file(&format!("/root/Incoming/Invoices/{}", temps[0])),
        Some(b"half".to_vec())
    );
    r.close(ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/s.csv"),
        Some(b"half".to_vec())
    );
    r.assert_no_temps();
}

#[test]
fn listings_show_files_being_written_and_hide_temp_files() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/.z.csv.coupafs-a1b2c3", b"t");
    r.remote.put_file("/root/Incoming/Invoices/done.csv", b"d");
    let (ino, fh) = r.create("Incoming/Invoices", "new.csv", 0).expect("create");
    let dir = r.dir("Incoming/Invoices");
    let names = r.listed_names(dir);
    assert_eq!(names, vec![".", "..", "done.csv", "new.csv"]);
    assert_eq!(
        r.fs.lookup(dir, OsStr::new(".z.csv.coupafs-a1b2c3"))
            .expect_err("hidden")
            .errno,
        libc::ENOENT
    );
    r.close(ino, fh).expect("close");
}

#[test]
fn ls_l_after_a_listing_needs_no_stat_per_file() {
    let r = rig();
    for i in 0..50 {
        r.remote
            .put_file(&format!("/root/Incoming/Invoices/f{i}.csv"), b"x");
    }
    let dir = r.dir("Incoming/Invoices");
    let lstats_before = r.remote.calls("lstat");
    let dh = r.fs.opendir(dir).expect("opendir");
    for i in 0..50 {
        let st =
            r.fs.lookup(dir, OsStr::new(&format!("f{i}.csv")))
                .expect("lookup");
        assert_eq!(st.size, 1);
    }
    r.fs.releasedir(dh);
    assert_eq!(r.remote.calls("read_dir"), 1);
    assert_eq!(r.remote.calls("lstat"), lstats_before);
}

/// mkdir(2) is one round trip: the new folder's attributes come from the
/// LSTAT sent in the MKDIR's batch, never from relisting the parent (two
/// round trips); when that LSTAT is not answered with them, one LSTAT.
#[test]
fn mkdir_takes_the_new_folders_attributes_from_its_own_batch() {
    let r = rig();
    let parent = r.dir("Incoming");
    let (lists, lstats) = (r.remote.calls("read_dir"), r.remote.calls("lstat"));
    let st =
        r.fs.mkdir(parent, OsStr::new("Batch1"), 0o750)
            .expect("mkdir");
    assert_eq!(st.kind, Kind::Dir);
    assert_eq!(st.perm, 0o750);
    assert_eq!(r.remote.calls("read_dir"), lists, "no listing");
    assert_eq!(r.remote.calls("lstat"), lstats, "no LSTAT of its own");

    r.remote
        .fail("mkdir_lstat", 0, RemoteError::Lost("not answered".into()));
    let st =
        r.fs.mkdir(parent, OsStr::new("Batch2"), 0o755)
            .expect("mkdir");
    assert_eq!(st.kind, Kind::Dir);
    assert_eq!(r.remote.calls("read_dir"), lists, "no listing");
    assert_eq!(r.remote.calls("lstat"), lstats + 1, "one LSTAT");
    assert!(r.fs.lookup(parent, OsStr::new("Batch2")).is_ok());
}

/// `cp -r`, `tar x` and the `cat > x.tmp; mv x.tmp x.csv` pattern ask
/// about every name before creating it, and stat it after close: none of
/// that may cost a round trip when the folder's content is known.
#[test]
fn creating_files_in_a_known_folder_needs_no_lookup_round_trips() {
    let r = rig();
    let parent = r.dir("Incoming/Invoices");
    r.fs.mkdir(parent, OsStr::new("batch"), 0o755)
        .expect("mkdir");
    let dir = r.dir("Incoming/Invoices/batch");
    let lstats = r.remote.calls("lstat");
    for i in 0..5 {
        let tmp = format!("x{i}.tmp");
        assert_eq!(
            r.fs.lookup(dir, OsStr::new(&tmp))
                .expect_err("new name")
                .errno,
            libc::ENOENT
        );
        let (ino, fh) = r
            .create("Incoming/Invoices/batch", &tmp, libc::O_EXCL)
            .expect("create");
        r.write_all(ino, fh, b"a,b\n");
        r.close(ino, fh).expect("close");
        // stat after close: from what the commit learned.
        assert_eq!(r.fs.lookup(dir, OsStr::new(&tmp)).expect("stat").size, 4);
        let csv = format!("x{i}.csv");
        assert_eq!(
            r.fs.lookup(dir, OsStr::new(&csv))
                .expect_err("mv checks")
                .errno,
            libc::ENOENT
        );
        r.fs.rename(dir, OsStr::new(&tmp), dir, OsStr::new(&csv), true)
            .expect("mv");
        assert_eq!(r.fs.lookup(dir, OsStr::new(&csv)).expect("stat").size, 4);
        assert_eq!(
            r.fs.lookup(dir, OsStr::new(&tmp))
                .expect_err("moved away")
                .errno,
            libc::ENOENT
        );
    }
    assert_eq!(
        r.remote.calls("lstat") - lstats,
        0,
        "lookups went to the server"
    );
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/batch/x4.csv"),
        Some(b"a,b\n".to_vec())
    );
}

#[test]
fn the_root_stays_reachable_after_its_listing_is_cached() {
    let r = rig();
    let dh = r.fs.opendir(ROOT_INO).expect("opendir /");
    r.fs.releasedir(dh);
    r.fs.getattr(ROOT_INO).expect("getattr / after listing it");
    let dh = r.fs.opendir(ROOT_INO).expect("opendir / again");
    r.fs.releasedir(dh);
}

/// A name the listing did not have may be created by someone else: once
/// the listing is older than the TTL, lookups ask the server again.
#[test]
fn absent_names_are_asked_again_after_the_ttl() {
    let r = rig_with_ttl(Duration::from_millis(100));
    let dir = r.dir("Incoming/Invoices");
    let dh = r.fs.opendir(dir).expect("opendir");
    r.fs.releasedir(dh);
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("late.csv"))
            .expect_err("absent")
            .errno,
        libc::ENOENT
    );
    r.remote
        .put_file("/root/Incoming/Invoices/late.csv", b"abc");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("late.csv"))
            .expect("found")
            .size,
        3
    );
}

/// With spare temps, a create in a folder that already saw one starts on a
/// temp file opened ahead: close() needs no OPEN (here the server would
/// never answer one), and unmount leaves no spare behind.
#[test]
fn creates_use_spare_temps_opened_ahead() {
    let r = Arc::new(rig_with(Duration::from_secs(60), 4));
    let (ino, fh) = r
        .create("Incoming/Invoices", "first.csv", 0)
        .expect("create");
    r.write_all(ino, fh, b"1\n");
    r.close(ino, fh).expect("close");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while r.fs.spares.ready() == 0 {
        assert!(std::time::Instant::now() < until, "no spare was opened");
        std::thread::sleep(Duration::from_millis(5));
    }
    r.remote.hold("open");
    let (tx, rx) = std::sync::mpsc::channel();
    let r2 = r.clone();
    std::thread::spawn(move || {
        let done = r2
            .create("Incoming/Invoices", "second.csv", libc::O_EXCL)
            .and_then(|(ino, fh)| {
                r2.write_all(ino, fh, b"2\n");
                r2.close(ino, fh)
            });
        let _ = tx.send(done);
    });
    let done = rx.recv_timeout(Duration::from_secs(10));
    r.remote.release("open");
    done.expect("close waited for an OPEN")
        .expect("create/close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/second.csv"),
        Some(b"2\n".to_vec())
    );
    let mode = r
        .remote
        .lstat(b"/root/Incoming/Invoices/second.csv")
        .expect("lstat")
        .permissions;
    assert_eq!(mode.map(|m| m & 0o777), Some(0o644));
    // A spare is opened 0644: other bits are set at commit.
    let dir = r.dir("Incoming/Invoices");
    let (st, fh) =
        r.fs.create(
            dir,
            OsStr::new("private.csv"),
            0o600,
            libc::O_WRONLY | libc::O_CREAT,
            me(),
        )
        .expect("create 0600");
    r.write_all(st.ino, fh, b"p\n");
    r.close(st.ino, fh).expect("close");
    let mode = r
        .remote
        .lstat(b"/root/Incoming/Invoices/private.csv")
        .expect("lstat")
        .permissions;
    assert_eq!(mode.map(|m| m & 0o777), Some(0o600));
    r.fs.shutdown();
    r.assert_no_temps();
}

/// A folder that saw a create holds a hidden spare on the server; rmdir(2)
/// of it once empty to the user, and a rename of it, must not trip over
/// that spare (the server would say "not empty", or keep the spare under
/// the new name for good).
#[test]
fn removing_or_renaming_a_folder_with_spares_leaves_nothing_behind() {
    let r = rig_with(Duration::from_secs(60), 4);
    let parent = r.dir("Incoming");
    for name in ["Batch", "Staged"] {
        r.fs.mkdir(parent, OsStr::new(name), 0o755).expect("mkdir");
        let (ino, fh) = r
            .create(&format!("Incoming/{name}"), "a.csv", 0)
            .expect("create");
        r.write_all(ino, fh, b"1\n");
        r.close(ino, fh).expect("close");
    }
    wait_for("spares in both folders", || r.fs.spares.ready() == 2);
    let batch = r.dir("Incoming/Batch");
    r.fs.unlink(batch, OsStr::new("a.csv")).expect("unlink");
    r.fs.rmdir(parent, OsStr::new("Batch"))
        .expect("rmdir of a folder the user sees empty");
    assert!(r.remote.lstat(b"/root/Incoming/Batch").is_err());

    r.fs.rename(
        parent,
        OsStr::new("Staged"),
        parent,
        OsStr::new("Done"),
        false,
    )
    .expect("rename");
    assert_eq!(
        r.remote.names("/root/Incoming/Done"),
        vec!["a.csv".to_string()]
    );
    r.fs.shutdown();
    assert_eq!(
        r.remote.names("/root/Incoming/Done"),
        vec!["a.csv".to_string()]
    );
}

/// A program reading a path never seen (`cat x.csv`) pays its lookup's
/// LSTAT, an OPEN and the READs. When the lookup's caller is inside open(2)
/// for reading, the OPEN goes beside the LSTAT and the open takes that
/// handle. Nothing is opened for any other lookup, a symlink's target is
/// not kept, and a handle no open takes is closed.
#[test]
fn a_readers_cold_lookup_opens_the_file_beside_its_lstat() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/x.csv", b"x,1\n");
    r.remote.put_file("/root/Incoming/Invoices/y.csv", b"y,2\n");
    r.remote.put_symlink(
        "/root/Incoming/Invoices/link.csv",
        "/root/Incoming/Invoices/y.csv",
    );
    let dir = r.dir("Incoming/Invoices");
    let opens = r.remote.calls("open");
    let st =
        r.fs.lookup_for(dir, OsStr::new("x.csv"), &|| true)
            .expect("lookup");
    assert_eq!(r.remote.calls("open"), opens + 1, "OPEN beside the LSTAT");
    let (fh, _) = r.fs.open(st.ino, libc::O_RDONLY, me()).expect("open");
    assert_eq!(r.remote.calls("open"), opens + 1, "no OPEN of its own");
    assert_eq!(r.fs.read(st.ino, fh, 0, 100).expect("read"), b"x,1\n");
    r.fs.release(st.ino, fh).expect("release");
    assert_eq!(r.remote.open_handles(), 0);

    // A `stat` (no reader): LSTAT only.
    r.fs.lookup_for(dir, OsStr::new("y.csv"), &|| false)
        .expect("lookup");
    assert_eq!(r.remote.calls("open"), opens + 1);
    // A symlink: its target was opened, and closed again.
    r.fs.lookup_for(dir, OsStr::new("link.csv"), &|| true)
        .expect("lookup");
    assert_eq!(r.remote.open_handles(), 0, "a symlink's target kept open");
    // Asked only when the server must answer: a cached name asks nothing.
    r.fs.lookup_for(dir, OsStr::new("x.csv"), &|| {
        panic!("asked for a cached name")
    })
    .expect("cached lookup");

    // A file of more than one channel's window is read over the pair of
    // handles instead: the one opened ahead is closed.
    r.remote.set_twin_reads(true);
    r.remote
        .put_file("/root/Incoming/Invoices/big.csv", &content(3 << 20));
    let st =
        r.fs.lookup_for(dir, OsStr::new("big.csv"), &|| true)
            .expect("lookup");
    let twins = r.remote.calls("open_read_twin");
    let (fh, _) = r.fs.open(st.ino, libc::O_RDONLY, me()).expect("open");
    assert_eq!(r.remote.calls("open_read_twin"), twins + 1, "pair opened");
    assert_eq!(
        r.fs.read(st.ino, fh, 0, 4096).expect("read"),
        content(3 << 20)[..4096].to_vec()
    );
    r.fs.release(st.ino, fh).expect("release");
    wait_for("every handle closed", || r.remote.open_handles() == 0);
    r.remote.set_twin_reads(false);

    // An open that never comes: the handle goes after a second.
    r.remote.put_file("/root/Incoming/Invoices/z.csv", b"z\n");
    r.fs.lookup_for(dir, OsStr::new("z.csv"), &|| true)
        .expect("lookup");
    assert_eq!(r.remote.open_handles(), 1);
    wait_for("the unused handle closed", || r.remote.open_handles() == 0);
}

/// A batch job outlives the TTL of the folder's listing: its lookups then
/// cost one new listing, not one LSTAT per new name.
#[test]
fn a_busy_folder_is_listed_again_instead_of_a_stat_per_name() {
    let r = rig_with_ttl(Duration::from_millis(100));
    let dir = r.dir("Incoming/Invoices");
    let dh = r.fs.opendir(dir).expect("opendir");
    r.fs.releasedir(dh);
    for i in 0..5 {
        let e = r.fs.lookup(dir, OsStr::new(&format!("new{i}.csv")));
        assert_eq!(e.expect_err("absent").errno, libc::ENOENT);
    }
    std::thread::sleep(Duration::from_millis(150));
    r.remote
        .put_file("/root/Incoming/Invoices/theirs.csv", b"t");
    let (lstats, listings) = (r.remote.calls("lstat"), r.remote.calls("read_dir"));
    for i in 5..10 {
        let e = r.fs.lookup(dir, OsStr::new(&format!("new{i}.csv")));
        assert_eq!(e.expect_err("absent").errno, libc::ENOENT);
    }
    // Someone else's new file is seen (the listing is fresh).
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("theirs.csv"))
            .expect("theirs")
            .size,
        1
    );
    assert_eq!(r.remote.calls("lstat"), lstats, "no LSTAT per name");
    assert_eq!(r.remote.calls("read_dir"), listings + 1, "one listing");
}

/// A large upload also opens its temp file on a second connection (two
/// flow-control windows); the bytes arrive intact and no handle is left.
#[test]
fn a_large_upload_is_striped_over_a_second_handle() {
    let r = rig();
    let data = content(9 << 20);
    let (ino, fh) = r.create("Incoming/Invoices", "big.csv", 0).expect("create");
    // One write: the first send round then has more than STRIPE_MIN unsent
    // whatever the scheduling (with many small writes, write-behind may
    // keep up and never have that much unsent on a loaded machine).
    r.fs.write(ino, fh, 0, &data).expect("write");
    r.close(ino, fh).expect("close");
    assert_eq!(r.remote.calls("open_twin"), 1);
    assert!(
        r.remote.file("/root/Incoming/Invoices/big.csv") == Some(data),
        "content differs"
    );
    assert_eq!(r.remote.open_handles(), 0, "a handle was left open");
    r.assert_no_temps();
}

/// Polls `cond` until it holds; fails the test after 10 s.
pub(crate) fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The writer goes on writing while write-behind sends: what was sent and
/// not rewritten counts as sent (a 512 MiB cp used to resend everything
/// each round and crawled).
#[test]
fn bytes_appended_during_a_send_do_not_make_it_resend() {
    let r = rig();
    let data = content(4 << 20);
    let (ino, fh) = r
        .create("Incoming/Invoices", "growing.csv", 0)
        .expect("create");
    r.remote.hold("write");
    for (i, chunk) in data[..2 << 20].chunks(64 * 1024).enumerate() {
        r.fs.write(ino, fh, (i * 64 * 1024) as u64, chunk)
            .expect("write");
    }
    wait_for("the stream to send", || r.remote.waiting() > 0);
    for (i, chunk) in data[2 << 20..].chunks(64 * 1024).enumerate() {
        r.fs.write(ino, fh, ((2 << 20) + i * 64 * 1024) as u64, chunk)
            .expect("write");
    }
    r.remote.release("write");
    r.close(ino, fh).expect("close");
    assert!(r.remote.file("/root/Incoming/Invoices/growing.csv") == Some(data));
    assert_eq!(
        r.remote.calls("write"),
        64,
        "4 MiB is 64 WRITEs of 64 KiB; more means bytes were sent twice"
    );
}

/// A truncate while a send is in flight: the temp may already hold bytes
/// past the new end, so the upload starts a fresh temp.
#[test]
fn truncating_during_a_send_never_publishes_stale_bytes() {
    let r = rig();
    let (ino, fh) = r.create("Incoming/Invoices", "cut.csv", 0).expect("create");
    r.remote.hold("write");
    r.write_all(ino, fh, &content(2 << 20));
    wait_for("the stream to send", || r.remote.waiting() > 0);
    r.fs.setattr(
        ino,
        Some(fh),
        SetAttr {
            size: Some(1000),
            ..SetAttr::default()
        },
    )
    .expect("truncate");
    r.remote.release("write");
    r.close(ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/cut.csv"),
        Some(content(2 << 20)[..1000].to_vec())
    );
    r.assert_no_temps();
}

/// Never hold a lock across a round trip: while the server is slow to
/// answer a background upload's OPEN, other operations go on.
#[test]
fn a_slow_server_reply_blocks_no_other_operation() {
    let r = Arc::new(rig());
    let dir = r.dir("Incoming/Invoices");
    r.remote.put_file("/root/Incoming/Invoices/old.csv", b"old");
    r.remote.hold("open");
    let (ino, fh) = r
        .create("Incoming/Invoices", "slow.csv", 0)
        .expect("create");
    // Give the write-behind worker time to enter the held OPEN.
    std::thread::sleep(Duration::from_millis(100));
    let (tx, rx) = std::sync::mpsc::channel();
    let r2 = r.clone();
    std::thread::spawn(move || {
        let other = r2.fs.lookup(dir, OsStr::new("old.csv")).map(|s| s.size);
        let listing = r2.fs.opendir(dir).map(|dh| r2.fs.releasedir(dh));
        let _ = tx.send((other, listing.is_ok()));
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    r.remote.release("open");
    let (other, listed) = got.expect("lookup and readdir blocked behind a pending OPEN");
    assert_eq!(other.expect("lookup"), 3);
    assert!(listed);
    r.write_all(ino, fh, b"done");
    r.close(ino, fh).expect("close");
}

#[test]
fn own_changes_invalidate_the_cache_at_once() {
    let r = rig();
    let dir = r.dir("Incoming/Invoices");
    let dh = r.fs.opendir(dir).expect("opendir");
    r.fs.releasedir(dh);
    let (ino, fh) = r.create("Incoming/Invoices", "c.csv", 0).expect("create");
    r.write_all(ino, fh, b"1");
    r.close(ino, fh).expect("close");
    assert!(r.listed_names(dir).contains(&"c.csv".to_string()));
    r.fs.unlink(dir, OsStr::new("c.csv")).expect("rm");
    assert_eq!(
        r.fs.lookup(dir, OsStr::new("c.csv"))
            .expect_err("gone")
            .errno,
        libc::ENOENT
    );
}

#[test]
fn directory_errors_map_per_operation() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/keep.csv", b"k");
    let incoming = r.dir("Incoming");
    assert_eq!(
        r.fs.rmdir(incoming, OsStr::new("Invoices"))
            .expect_err("not empty")
            .errno,
        libc::ENOTEMPTY
    );
    assert_eq!(
        r.fs.mkdir(incoming, OsStr::new("Invoices"), 0o755)
            .expect_err("exists")
            .errno,
        libc::EEXIST
    );
    assert!(r.fs.mkdir(incoming, OsStr::new("New"), 0o755).is_ok());
    assert!(r.fs.rmdir(incoming, OsStr::new("New")).is_ok());
    assert_eq!(
        r.fs.lookup(incoming, OsStr::new("Nope"))
            .expect_err("missing")
            .errno,
        libc::ENOENT
    );
}

#[test]
fn mode_and_times_set_while_open_reach_the_published_file() {
    let r = rig();
    let (ino, fh) = r.create("Incoming/Invoices", "p.csv", 0).expect("create");
    r.write_all(ino, fh, b"x");
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    r.fs.setattr(
        ino,
        Some(fh),
        SetAttr {
            mode: Some(0o600),
            mtime: Some(when),
            atime: Some(when),
            ..SetAttr::default()
        },
    )
    .expect("setattr");
    r.close(ino, fh).expect("close");
    let a = r
        .remote
        .lstat(b"/root/Incoming/Invoices/p.csv")
        .expect("stat");
    assert_eq!(a.permissions, Some(0o600));
    assert_eq!(a.mtime, Some(1_600_000_000));
}

#[test]
fn refused_setstat_is_best_effort_unless_strict() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/m.csv", b"x");
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("m.csv")).expect("lookup").ino;
    r.remote.fail_always("setstat", denied());
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert!(r.fs.setattr(ino, None, chmod).is_ok());
    // chown is accepted and ignored: ownership belongs to the server.
    let chown = SetAttr {
        uid: Some(1234),
        ..SetAttr::default()
    };
    assert!(r.fs.setattr(ino, None, chown).is_ok());
}

#[test]
fn the_spool_limit_fails_writes_with_enospc() {
    let r = rig();
    let (ino, fh) = r
        .create("Incoming/Invoices", "huge.csv", 0)
        .expect("create");
    let chunk = vec![7u8; 1 << 20];
    let mut err = None;
    for i in 0..80u64 {
        if let Err(e) = r.fs.write(ino, fh, i << 20, &chunk) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err.expect("spool_max is 64 MiB").errno, libc::ENOSPC);
    let dir = r.dir("Incoming/Invoices");
    r.fs.unlink(dir, OsStr::new("huge.csv")).expect("rm");
    r.close(ino, fh).expect("close");
}

/// The kernel sends RELEASE after close() has returned: a job that closes
/// a published file and at once writes the next one must not find the
/// first file's spool still counted against it.
#[test]
fn a_write_waits_for_the_spool_of_a_published_file_to_come_back() {
    let r = rig();
    let (a, fa) = r.create("Incoming/Invoices", "a.csv", 0).expect("create a");
    let chunk = vec![7u8; 1 << 20];
    for i in 0..40u64 {
        r.fs.write(a, fa, i << 20, &chunk)
            .expect("40 MiB of 64 fit");
    }
    r.fs.flush(a, fa, me()).expect("a is published");
    let (b, fb) = r.create("Incoming/Invoices", "b.csv", 0).expect("create b");
    let release = {
        let fs = r.fs.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fs.release(a, fa)
        })
    };
    for i in 0..30u64 {
        r.fs.write(b, fb, i << 20, &chunk)
            .expect("a's 40 MiB come back once it is released");
    }
    release.join().expect("release thread").expect("release a");
    r.close(b, fb).expect("b is published");
    assert_eq!(
        r.remote
            .file("/root/Incoming/Invoices/b.csv")
            .map(|f| f.len()),
        Some(30 << 20)
    );
}

#[test]
fn statfs_comes_from_statvfs() {
    let r = rig();
    let s = r.fs.statfs().expect("statfs");
    assert_eq!(
        (s.blocks, s.bfree, s.bavail, s.bsize),
        (1000, 500, 400, 4096)
    );
    // A walk (du, find) asks on every folder: one request serves them.
    assert_eq!(r.fs.statfs().expect("statfs"), s);
    assert_eq!(r.remote.calls("statvfs"), 1);
    // With no attribute caching, neither are these figures cached.
    let r = rig_with_ttl(Duration::ZERO);
    r.fs.statfs().expect("statfs");
    r.fs.statfs().expect("statfs");
    assert_eq!(r.remote.calls("statvfs"), 2);
}

/// Readlink walks chains on the server: the issue's `a/up -> ..` plus
/// `a/esc -> up/../../X` is neutralised, a loop is ELOOP, and without
/// containment the server's text is passed on.
#[test]
fn readlink_contains_chains_of_server_links() {
    let r = rig();
    r.remote.mkdir_p("/root/a");
    r.remote.put_symlink("/root/a/up", "..");
    r.remote.put_symlink("/root/a/esc", "up/../../X");
    r.remote.put_symlink("/root/a/l1", "l2/../x");
    r.remote.put_symlink("/root/a/l2", "l1/../x");
    r.remote.put_symlink("/root/a/in", "up/a/../Incoming");
    let a = r.dir("a");
    let ino = |n: &str| r.fs.lookup(a, OsStr::new(n)).expect("lookup").ino;
    assert_eq!(r.fs.readlink(ino("up")).expect("up"), b"..".to_vec());
    let esc = r.fs.readlink(ino("esc")).expect("esc");
    assert!(esc.starts_with(b"/dev/null/coupafs-blocked/"), "{esc:?}");
    assert_eq!(
        r.fs.readlink(ino("l1")).expect_err("loop").errno,
        libc::ELOOP
    );
    assert_eq!(
        r.fs.readlink(ino("in")).expect("in"),
        b"up/Incoming".to_vec()
    );
}

#[test]
fn files_breaking_coupa_rules_are_named_at_commit() {
    let dir = tempfile::tempdir().expect("spool");
    let up = Upload::new(dir.path(), 0o644, false).expect("upload");
    up.write_at(0, b"\xEF\xBB\xBFa,b\n1,2\n").expect("write");
    let warnings = coupa_warnings(b"Incoming/Invoices/bom.csv", &up);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("/Incoming/Invoices/bom.csv"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].to_lowercase().contains("bom"),
        "{}",
        warnings[0]
    );
    // Outside Incoming nothing is checked; a clean CSV gives no warning.
    assert!(coupa_warnings(b"Outgoing/Invoices/bom.csv", &up).is_empty());
    let clean = Upload::new(dir.path(), 0o644, false).expect("upload");
    clean.write_at(0, b"a,b\n1,2\n").expect("write");
    assert!(coupa_warnings(b"Incoming/Invoices/ok.csv", &clean).is_empty());
    let mut rows = b"h\n".to_vec();
    for i in 0..5001 {
        rows.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let big = Upload::new(dir.path(), 0o644, false).expect("upload");
    big.write_at(0, &rows).expect("write");
    let w = coupa_warnings(b"Incoming/Items/rows.csv", &big);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("5001"), "{}", w[0]);
}

/// A reply buffer that fills up: the next readdir resumes at the offset of
/// the last entry taken, and the pages together are the whole listing.
#[test]
fn readdir_resumes_where_a_full_buffer_stopped() {
    let r = rig();
    for i in 0..7 {
        r.remote
            .put_file(&format!("/root/Incoming/Invoices/f{i}.csv"), b"x");
    }
    let dir = r.dir("Incoming/Invoices");
    let whole = r.listed_names(dir);
    assert_eq!(whole.len(), 9, "{whole:?}");
    for plus in [false, true] {
        let dh = r.fs.opendir(dir).expect("opendir");
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let mut page = Entries::room_for(3);
            if plus {
                r.fs.readdirplus(dir, dh, offset, &mut page)
            } else {
                r.fs.readdir(dir, dh, offset, &mut page)
            }
            .expect("readdir");
            let Some(last) = page.got.last() else { break };
            offset = last.1;
            names.extend(page.names());
        }
        r.fs.releasedir(dh);
        assert_eq!(names, whole, "readdirplus: {plus}");
    }
}

/// readdirplus gives the kernel a reference per entry it takes: those
/// entries have real inodes (their lookups find the same one), and `.`
/// and `..` are the directory and its parent.
#[test]
fn readdirplus_assigns_inodes_that_lookup_agrees_with() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/a.csv", b"x");
    let dir = r.dir("Incoming/Invoices");
    let dh = r.fs.opendir(dir).expect("opendir");
    let mut page = Entries::room_for(usize::MAX);
    r.fs.readdirplus(dir, dh, 0, &mut page)
        .expect("readdirplus");
    r.fs.releasedir(dh);
    let (ino, _, name, stat) = &page.got[2];
    assert_eq!(name, b"a.csv");
    assert_eq!(stat.ino, *ino);
    let found = r.fs.lookup(dir, OsStr::new("a.csv")).expect("lookup");
    assert_eq!(found.ino, *ino);
    assert_eq!(page.got[0].0, dir, ".");
    let plain = {
        let dh = r.fs.opendir(dir).expect("opendir");
        let mut page = Entries::room_for(usize::MAX);
        r.fs.readdir(dir, dh, 0, &mut page).expect("readdir");
        r.fs.releasedir(dh);
        page.got
    };
    assert_eq!(plain[2].0, *ino, "a known name keeps its inode in readdir");
}

/// Names the kernel cannot take are left out of the listing (the rest
/// lists), a legal but odd name lists as it is, and lookups of names over
/// NAME_MAX fail with ENAMETOOLONG before any round trip.
#[test]
fn odd_server_names_are_skipped_and_the_rest_lists() {
    let r = rig();
    let dir = "/root/Incoming/Invoices";
    r.remote.put_file(&format!("{dir}/good.csv"), b"x");
    r.remote.put_file(&format!("{dir}/x\ny"), b"x");
    r.remote.put_odd_entry(dir, b"a/b");
    r.remote.put_odd_entry(dir, b"");
    r.remote.put_odd_entry(dir, b".");
    r.remote.put_odd_entry(dir, b"nul\0cut");
    r.remote.put_odd_entry(dir, &[b'L'; 300]);
    let ino = r.dir("Incoming/Invoices");
    let names = r.listed_names(ino);
    assert_eq!(names, [".", "..", "good.csv", "x\ny"], "{names:?}");
    r.fs.cache.invalidate_tree(b"Incoming/Invoices");
    assert_eq!(r.listed_names(ino), names, "listed again from the server");
    let dh = r.fs.opendir(ino).expect("opendir");
    let mut plus = Entries::room_for(usize::MAX);
    r.fs.readdirplus(ino, dh, 0, &mut plus)
        .expect("readdirplus");
    r.fs.releasedir(dh);
    assert_eq!(plus.names(), names);
    let long = String::from_utf8(vec![b'L'; 300]).expect("ascii");
    r.dir("Incoming/Invoices");
    let lookups = r.remote.calls("lstat");
    for op in ["lookup", "mkdir", "symlink", "rename"] {
        let name = OsStr::new(&long);
        let err = match op {
            "lookup" => r.fs.lookup(ino, name).map(|_| ()),
            "mkdir" => r.fs.mkdir(ino, name, 0o755).map(|_| ()),
            "symlink" => r.fs.symlink(ino, name, b"good.csv").map(|_| ()),
            _ => r.fs.rename(ino, OsStr::new("good.csv"), ino, name, false),
        }
        .expect_err(op);
        assert_eq!(err.errno, libc::ENAMETOOLONG, "{op}");
    }
    let err = r.create("Incoming/Invoices", &long, 0).expect_err("create");
    assert_eq!(err.errno, libc::ENAMETOOLONG, "create");
    assert_eq!(r.remote.calls("lstat"), lookups, "no round trip");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/good.csv"),
        Some(b"x".to_vec())
    );
}

/// Paths in log lines are escaped: a server name with a newline cannot
/// forge a second journal line.
#[test]
fn logged_paths_carry_no_control_characters() {
    let shown = show(b"Incoming/x\nERROR forged\x1b[0m");
    assert!(!shown.chars().any(char::is_control), "{shown}");
    assert_eq!(shown, "/Incoming/x\\nERROR forged\\u{1b}[0m");
}

/// A folder renamed over a non-empty one is ENOTEMPTY, as rename(2) says,
/// though the server only says FAILURE; folder over file is ENOTDIR, file
/// over folder EISDIR.
#[test]
fn a_refused_folder_rename_says_why() {
    let r = rig();
    r.remote.mkdir_p("/root/Incoming/src");
    r.remote.put_file("/root/Incoming/src/a.csv", b"a");
    r.remote.put_file("/root/Incoming/Invoices/keep.csv", b"k");
    r.remote.put_file("/root/Incoming/file.csv", b"f");
    let incoming = r.dir("Incoming");
    let rename = |from: &str, to: &str| {
        r.fs.rename(incoming, OsStr::new(from), incoming, OsStr::new(to), false)
            .expect_err("refused")
            .errno
    };
    assert_eq!(rename("src", "Invoices"), libc::ENOTEMPTY);
    assert_eq!(rename("src", "file.csv"), libc::ENOTDIR);
    assert_eq!(rename("file.csv", "Invoices"), libc::EISDIR);
    assert_eq!(
        r.remote.file("/root/Incoming/src/a.csv"),
        Some(b"a".to_vec())
    );
}

/// utimensat with one time UTIME_OMIT (the kernel passes None) keeps that
/// time: SETSTAT carries both, so the omitted one is sent as it was.
#[test]
fn an_omitted_time_is_sent_unchanged() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/t.csv", b"t");
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("t.csv")).expect("lookup").ino;
    let t = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let only = |atime, mtime| SetAttr {
        atime,
        mtime,
        ..SetAttr::default()
    };
    r.fs.setattr(ino, None, only(None, Some(t)))
        .expect("touch -m");
    let sent = r.remote.last_setstat().expect("setstat sent");
    assert_eq!(
        (sent.atime, sent.mtime),
        (Some(1_700_000_000), Some(1_600_000_000))
    );
    r.fs.setattr(ino, None, only(Some(t), None))
        .expect("touch -a");
    let sent = r.remote.last_setstat().expect("setstat sent");
    assert_eq!(
        (sent.atime, sent.mtime),
        (Some(1_600_000_000), Some(1_600_000_000)),
        "mtime as the server now has it"
    );
}

/// On a server that refuses every replace, writing over an
/// existing file fails at open() (a shell's `>>` never checks close()),
/// while new files still upload.
#[test]
fn a_server_refusing_replace_fails_writes_over_existing_files_at_open() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/log.csv", b"a\n");
    r.remote
        .set_replace_mode(crate::remote::ReplaceMode::Refuse);
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("log.csv")).expect("lookup").ino;
    let err =
        r.fs.open(ino, libc::O_WRONLY | libc::O_APPEND, me())
            .expect_err("append refused at open");
    assert_eq!(err.errno, libc::EPERM);
    let err =
        r.fs.create(
            dir,
            OsStr::new("log.csv"),
            0o644,
            libc::O_WRONLY | libc::O_TRUNC,
            me(),
        )
        .expect_err("overwrite refused at create");
    assert_eq!(err.errno, libc::EPERM);
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/log.csv"),
        Some(b"a\n".to_vec())
    );
    // Reading and new names are unaffected.
    r.fs.open(ino, libc::O_RDONLY, me())
        .expect("read-only open");
    let (st, fh) =
        r.fs.create(
            dir,
            OsStr::new("new.csv"),
            0o644,
            libc::O_WRONLY | libc::O_EXCL,
            me(),
        )
        .expect("create a new name");
    r.fs.write(st.ino, fh, 0, b"x\n").expect("write");
    r.close(st.ino, fh).expect("close");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/new.csv"),
        Some(b"x\n".to_vec())
    );
}

/// Opens the existing `Incoming/Invoices/<name>` with O_TRUNC and writes
/// 1 MiB chunks until the 64 MiB spool refuses one; returns inode, handle
/// and the write error.
fn overflow_existing(r: &Rig, name: &str) -> (u64, u64, FsError) {
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new(name)).expect("lookup").ino;
    let (fh, _) =
        r.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, me())
            .expect("open");
    let chunk = vec![7u8; 1 << 20];
    for i in 0..80u64 {
        if let Err(e) = r.fs.write(ino, fh, i << 20, &chunk) {
            return (ino, fh, e);
        }
    }
    panic!("spool_max is 64 MiB: a write must have failed");
}

fn temps_in(r: &Rig, dir: &str) -> Vec<String> {
    r.remote
        .names(dir)
        .into_iter()
        .filter(|n| n.contains(".coupafs-"))
        .collect()
}

#[test]
fn a_failed_write_makes_close_fail_and_publishes_nothing() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/old.csv", b"previous version\n");
    let (ino, fh, err) = overflow_existing(&r, "old.csv");
    assert_eq!(err.errno, libc::ENOSPC);
    // A later write that fits succeeds, but does not make the file whole.
    r.fs.write(ino, fh, 0, b"rewritten head")
        .expect("small write");
    let closed = r.close(ino, fh);
    assert_eq!(
        closed
            .expect_err("close must report the failed write")
            .errno,
        libc::ENOSPC
    );
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/old.csv").as_deref(),
        Some(&b"previous version\n"[..]),
        "the previous server version stays"
    );
    assert!(
        r.remote
            .appearances("/root/Incoming/Invoices/old.csv")
            .is_empty(),
        "nothing was published"
    );
    assert_eq!(
        temps_in(&r, "/root/Incoming/Invoices"),
        Vec::<String>::new()
    );
    // The next open starts clean, once the write-behind worker has let go
    // of the failed upload (its spool counts until then).
    let t = std::time::Instant::now();
    while r.fs.spool_usage() > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (fh, _) =
        r.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, me())
            .expect("reopen");
    r.write_all(ino, fh, b"new\n");
    r.close(ino, fh).expect("a whole file publishes");
    assert_eq!(
        r.remote.file("/root/Incoming/Invoices/old.csv").as_deref(),
        Some(&b"new\n"[..])
    );
}

#[test]
fn a_failed_created_file_is_never_published() {
    let r = rig();
    let (ino, fh) = r
        .create("Incoming/Invoices", "fresh.csv", 0)
        .expect("create");
    let chunk = vec![7u8; 1 << 20];
    let failed = (0..80u64).find_map(|i| r.fs.write(ino, fh, i << 20, &chunk).err());
    assert_eq!(failed.expect("spool full").errno, libc::ENOSPC);
    assert_eq!(
        r.close(ino, fh).expect_err("close reports it").errno,
        libc::ENOSPC
    );
    assert_eq!(r.remote.file("/root/Incoming/Invoices/fresh.csv"), None);
    assert_eq!(
        temps_in(&r, "/root/Incoming/Invoices"),
        Vec::<String>::new()
    );
}

#[test]
fn truncating_to_zero_clears_a_failed_write() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/again.csv", b"previous version\n");
    let (ino, fh, err) = overflow_existing(&r, "again.csv");
    assert_eq!(err.errno, libc::ENOSPC);
    let zero = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    r.fs.setattr(ino, Some(fh), zero).expect("ftruncate(0)");
    r.fs.write(ino, fh, 0, b"whole again\n").expect("write");
    r.close(ino, fh).expect("the rewritten file publishes");
    assert_eq!(
        r.remote
            .file("/root/Incoming/Invoices/again.csv")
            .as_deref(),
        Some(&b"whole again\n"[..])
    );
}

#[test]
fn the_temp_of_an_interrupted_upload_is_removed_once_a_connection_is_up() {
    let r = rig();
    let (ino, fh) = r
        .create("Incoming/Invoices", "retry.csv", 0)
        .expect("create");
    r.write_all(ino, fh, b"first part\n");
    r.fs.fsync(ino, fh).expect("fsync opens the temp");
    assert_eq!(temps_in(&r, "/root/Incoming/Invoices").len(), 1);
    r.fs.write(ino, fh, 11, b"second part\n").expect("write");
    // The link drops mid-upload, and the server cannot be reached to
    // remove the temp written so far; the retry reconnects.
    r.remote
        .fail("write", 0, RemoteError::Lost("link dropped".into()));
    r.remote
        .fail("remove", 0, RemoteError::Unreachable("server down".into()));
    r.close(ino, fh).expect("the retry publishes");
    assert_eq!(
        r.remote
            .file("/root/Incoming/Invoices/retry.csv")
            .as_deref(),
        Some(&b"first part\nsecond part\n"[..])
    );
    assert_eq!(
        temps_in(&r, "/root/Incoming/Invoices"),
        Vec::<String>::new(),
        "the first attempt's temp is removed after the retry's OPEN"
    );
}

/// A read handle is closed without waiting for the reply (the
/// server frees it either way), so release holds no FUSE thread for a
/// round trip.
#[test]
fn releasing_a_read_handle_does_not_wait_for_the_close_reply() {
    let r = rig();
    r.remote.put_file("/root/Incoming/Invoices/r.csv", b"a,b\n");
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("r.csv")).expect("lookup").ino;
    let (fh, _) = r.fs.open(ino, libc::O_RDONLY, me()).expect("open");
    assert_eq!(r.fs.read(ino, fh, 0, 100).expect("read"), b"a,b\n");
    r.fs.release(ino, fh).expect("release");
    assert_eq!(
        r.remote.calls("close"),
        0,
        "release waited for a CLOSE reply"
    );
    assert_eq!(r.remote.calls("close_quietly"), 1);
    assert_eq!(r.remote.open_handles(), 0);
}

/// A file fetched whole at open and bigger than one block is also
/// opened on the second connection; both handles are closed at release,
/// neither waiting for its reply. A 1 MiB file (one block) is not.
#[test]
fn a_coupa_sized_file_is_opened_on_both_connections_and_both_are_closed() {
    let r = rig();
    r.remote.set_twin_reads(true);
    let big = content(4 << 20);
    r.remote.put_file("/root/Incoming/Invoices/big.csv", &big);
    r.remote
        .put_file("/root/Incoming/Invoices/one.csv", &content(1 << 20));
    let dir = r.dir("Incoming/Invoices");
    let ino = r.fs.lookup(dir, OsStr::new("big.csv")).expect("lookup").ino;
    let (fh, _) = r.fs.open(ino, libc::O_RDONLY, me()).expect("open");
    assert_eq!(r.remote.calls("open_read_twin"), 1);
    let mut got = Vec::new();
    while got.len() < big.len() {
        let part =
            r.fs.read(ino, fh, got.len() as u64, 128 << 10)
                .expect("read");
        assert!(!part.is_empty());
        got.extend_from_slice(&part);
    }
    assert!(got == big, "content differs");
    r.fs.release(ino, fh).expect("release");
    assert_eq!(r.remote.calls("close_quietly"), 2);
    assert_eq!(r.remote.calls("close"), 0);
    assert_eq!(r.remote.open_handles(), 0);
    let ino = r.fs.lookup(dir, OsStr::new("one.csv")).expect("lookup").ino;
    let (fh, _) = r.fs.open(ino, libc::O_RDONLY, me()).expect("open");
    r.fs.release(ino, fh).expect("release");
    assert_eq!(r.remote.calls("open_read_twin"), 1, "a one-block file");
}

/// Once unmounting has begun its publish pass, a file opened for
/// writing would start an upload nobody publishes or names (its temp left
/// on the server): create and open-for-write fail with ENOTCONN instead,
/// and leave nothing on the server; files already open are unaffected.
#[test]
fn no_file_is_opened_for_writing_once_unmounting_publishes() {
    let r = rig();
    r.remote
        .put_file("/root/Incoming/Invoices/old.csv", b"a,b\n");
    let (ino, fh) = r
        .create("Incoming/Invoices", "early.csv", 0)
        .expect("create before the unmount");
    r.write_all(ino, fh, b"x,y\n");
    r.close(ino, fh).expect("published");
    assert_eq!(r.fs.shutdown_uploads(), 0);
    let e = r
        .create("Incoming/Invoices", "late.csv", 0)
        .expect_err("create while unmounting");
    assert_eq!(e.errno, libc::ENOTCONN);
    let dir = r.dir("Incoming/Invoices");
    let old = r.fs.lookup(dir, OsStr::new("old.csv")).expect("lookup").ino;
    let e =
        r.fs.open(old, libc::O_WRONLY | libc::O_TRUNC, me())
            .expect_err("open for writing while unmounting");
    assert_eq!(e.errno, libc::ENOTCONN);
    // Reading still works, and nothing of ours is on the server.
    let (rfh, _) = r.fs.open(old, libc::O_RDONLY, me()).expect("open to read");
    assert_eq!(r.fs.read(old, rfh, 0, 100).expect("read"), b"a,b\n");
    assert_eq!(
        temps_in(&r, "/root/Incoming/Invoices"),
        Vec::<String>::new()
    );
    assert_eq!(r.remote.file("/root/Incoming/Invoices/late.csv"), None);
}
