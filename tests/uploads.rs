//! Issue "Loss-free, atomic uploads", end to end: a real coupafs mount of a
//! real sshd, with the server side inspected directly (not through the mount),
//! as Coupa's poller would see it.
//!
//! What Coupa must never see: a partial file under its final name. What the
//! job must always get: close() returning the real outcome of the upload.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::watcher::Watcher;
use common::*;

const MIB: usize = 1 << 20;
const INVOICES: &str = "Incoming/Invoices";
const ARCHIVE: &str = "Archive/Incoming/Invoices";

/// errno of an io::Error (0 if none).
fn en(e: &io::Error) -> i32 {
    errno(e)
}

/// Writes `data` through the mount in `chunk`-byte writes with `pause`
/// between them, then close()s and returns close's result.
fn slow_write(path: &Path, data: &[u8], chunk: usize, pause: Duration) -> io::Result<()> {
    let mut f = File::create(path)?;
    for part in data.chunks(chunk) {
        f.write_all(part)?;
        thread::sleep(pause);
    }
    close_file(f)
}

/// Waits until the server-side `dir` holds no coupafs temp file (the temp of
/// a failed upload is removed at release, which the kernel sends after
/// close() returned). Returns what is left.
fn wait_no_temps(dir: &Path, timeout: Duration) -> Vec<String> {
    wait_until(timeout, || temps_in(dir).is_empty());
    temps_in(dir)
}

/// Waits (up to 10 s) until the mount's status file, written after `since`
/// (+2 s, the write interval), reports no open writer and no pending upload.
fn wait_status_settled(mnt: &Mount, since: SystemTime) -> bool {
    let status = status_file_of(&mnt.path);
    let since = since.duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
    wait_until(Duration::from_secs(10), || {
        let text = fs::read_to_string(&status).unwrap_or_default();
        let updated: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("updated="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        updated >= since
            && text.contains("\nopen_writers=0\n")
            && text.contains("\npending_uploads=0\n")
    })
}

// ---------------------------------------------------------------------------
// Coupa pickup simulator
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Pickup {
    size: u64,
    sha: String,
}

/// Moves every visible file out of `incoming` into `archive` every 20 ms (as
/// Coupa does) and records its size and sha256 at the moment of pickup.
fn start_pickup(
    incoming: PathBuf,
    archive: PathBuf,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<(String, Pickup)>> {
    thread::spawn(move || {
        let mut picked = Vec::new();
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            let mut moved_any = false;
            for name in names_in(&incoming) {
                if name.starts_with('.') {
                    continue;
                }
                let dst = archive.join(&name);
                if fs::rename(incoming.join(&name), &dst).is_err() {
                    continue;
                }
                moved_any = true;
                let size = fs::metadata(&dst).map(|m| m.len()).unwrap_or(u64::MAX);
                let sha = sha256sum(&dst).unwrap_or_else(|e| format!("unreadable: {e}"));
                picked.push((name, Pickup { size, sha }));
            }
            if stopping && !moved_any {
                return picked;
            }
            thread::sleep(Duration::from_millis(20));
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    /// `cp` of a pre-generated file.
    Cp,
    /// 64 KiB writes every 5 ms from this process.
    Slow,
    /// `{ echo header; sleep 0.2; cat rows; } > x.csv`
    Shell,
}

struct Job {
    name: String,
    kind: JobKind,
    /// The local source (for Shell: the rows).
    src: PathBuf,
    /// Expected content's hash and size on the server.
    sha: String,
    size: u64,
}

#[test]
fn coupa_pickup_only_ever_sees_complete_files() {
    let started = Instant::now();
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let work = tempfile::tempdir().expect("tempdir");
    let incoming = sb.root.join(INVOICES);
    let archive = sb.root.join(ARCHIVE);

    // 30 files, 1-20 MiB (plus odd bytes), ~150 MiB in all.
    let mut jobs = Vec::new();
    let cp_sizes_mib = [
        1, 20, 2, 3, 9, 1, 4, 12, 2, 5, 1, 3, 16, 2, 6, 1, 3, 2, 8, 4,
    ];
    for (i, mib) in cp_sizes_mib.iter().enumerate() {
        let size = mib * MIB + i * 4099 + 1;
        let src = work.path().join(format!("cp_{i}.csv"));
        let sha = make_source(&src, size);
        jobs.push(Job {
            name: format!("invoice_cp_{i:02}.csv"),
            kind: JobKind::Cp,
            src,
            sha,
            size: size as u64,
        });
    }
    for (i, mib) in [1usize, 2, 3, 1, 4].iter().enumerate() {
        let size = mib * MIB + 777 * i + 13;
        let src = work.path().join(format!("slow_{i}.csv"));
        let sha = make_source(&src, size);
        jobs.push(Job {
            name: format!("invoice_slow_{i:02}.csv"),
            kind: JobKind::Slow,
            src,
            sha,
            size: size as u64,
        });
    }
    for (i, mib) in [1usize, 3, 2, 5, 2].iter().enumerate() {
        let rows = work.path().join(format!("rows_{i}.csv"));
        make_source(&rows, mib * MIB + 31 * i);
        // What the shell pattern must produce: "header\n" + rows.
        let expected = work.path().join(format!("shell_{i}.expected"));
        let st = Command::new("sh")
            .arg("-c")
            .arg(r#"{ echo header; cat "$1"; } > "$2""#)
            .arg("sh")
            .arg(&rows)
            .arg(&expected)
            .status()
            .expect("sh");
        assert!(st.success());
        jobs.push(Job {
            name: format!("invoice_shell_{i:02}.csv"),
            kind: JobKind::Shell,
            sha: sha256sum(&expected).unwrap(),
            size: fs::metadata(&expected).unwrap().len(),
            src: rows,
        });
    }
    let total_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let expected: HashMap<String, (String, u64, JobKind)> = jobs
        .iter()
        .map(|j| (j.name.clone(), (j.sha.clone(), j.size, j.kind)))
        .collect();
    eprintln!(
        "pickup: {} files, {:.1} MiB prepared in {:.1?}",
        jobs.len(),
        total_bytes as f64 / MIB as f64,
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pickup = start_pickup(incoming.clone(), archive.clone(), stop.clone());

    // Interleave the kinds so slow writers overlap fast ones.
    jobs.sort_by_key(|j| (j.name.len() % 3, j.name.clone()));
    let queue = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(Vec::<(String, Result<(), String>)>::new()));
    let write_started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            let results = results.clone();
            let dir = mnt.path.join(INVOICES);
            thread::spawn(move || loop {
                let Some(job) = queue.lock().unwrap().pop() else {
                    return;
                };
                let dst = dir.join(&job.name);
                let r = match job.kind {
                    JobKind::Cp => {
                        let out = Command::new("cp")
                            .arg(&job.src)
                            .arg(&dst)
                            .output()
                            .expect("cp");
                        if out.status.success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "cp: {} {}",
                                out.status,
                                String::from_utf8_lossy(&out.stderr)
                            ))
                        }
                    }
                    JobKind::Slow => {
                        let data = fs::read(&job.src).expect("read source");
                        slow_write(&dst, &data, 64 * 1024, Duration::from_millis(5))
                            .map_err(|e| format!("slow writer: {e}"))
                    }
                    JobKind::Shell => {
                        let out = Command::new("sh")
                            .arg("-c")
                            .arg(r#"{ echo header; sleep 0.2; cat "$1"; } > "$2""#)
                            .arg("sh")
                            .arg(&job.src)
                            .arg(&dst)
                            .output()
                            .expect("sh");
                        if out.status.success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "sh: {} {}",
                                out.status,
                                String::from_utf8_lossy(&out.stderr)
                            ))
                        }
                    }
                };
                results.lock().unwrap().push((job.name.clone(), r));
            })
        })
        .collect();
    for w in workers {
        w.join().expect("writer thread panicked");
    }
    let write_time = write_started.elapsed();
    // Let the poller take what is left, then stop it.
    let drained = wait_until(Duration::from_secs(20), || {
        names_in(&incoming).iter().all(|n| n.starts_with('.'))
    });
    stop.store(true, Ordering::SeqCst);
    let picked = pickup.join().expect("pickup thread panicked");

    let results = results.lock().unwrap().clone();
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    let mut by_name: BTreeMap<String, Vec<Pickup>> = BTreeMap::new();
    for (name, p) in &picked {
        by_name.entry(name.clone()).or_default().push(p.clone());
    }
    let mut partial = Vec::new();
    let mut unknown = Vec::new();
    for (name, p) in &picked {
        match expected.get(name) {
            Some((sha, size, kind)) => {
                if &p.sha != sha || p.size != *size {
                    partial.push(format!(
                        "{name} ({kind:?}): picked up {} bytes sha {}, expected {size} bytes sha {sha}",
                        p.size, p.sha
                    ));
                }
            }
            None => unknown.push(name.clone()),
        }
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|n| !by_name.contains_key(*n))
        .collect();
    let duplicates: Vec<_> = by_name.iter().filter(|(_, v)| v.len() > 1).collect();
    // Spare temps go once the folder has seen no create for a few seconds.
    wait_until(Duration::from_secs(15), || {
        all_names_in(&incoming).is_empty()
    });
    let leftovers = all_names_in(&incoming);
    eprintln!(
        "pickup: files written {}, failed {}, picked up {}, partial pickups {}, \
         {:.1} MiB written in {:.1?} ({:.1} MiB/s), test total {:.1?}",
        results.len(),
        failed.len(),
        picked.len(),
        partial.len(),
        total_bytes as f64 / MIB as f64,
        write_time,
        total_bytes as f64 / MIB as f64 / write_time.as_secs_f64(),
        started.elapsed()
    );
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    assert!(partial.is_empty(), "partial pickups: {partial:#?}");
    assert!(unknown.is_empty(), "picked up unknown names: {unknown:?}");
    assert!(duplicates.is_empty(), "picked up twice: {duplicates:?}");
    assert!(drained, "incoming never drained: {leftovers:?}");
    assert!(missing.is_empty(), "never published: {missing:?}");
    assert_eq!(picked.len(), expected.len());
    assert!(leftovers.is_empty(), "left in incoming: {leftovers:?}");
    drop(mnt);
}

// ---------------------------------------------------------------------------
// The writer's view
// ---------------------------------------------------------------------------

#[test]
fn slow_writer_sees_its_file_while_the_server_holds_only_a_hidden_temp() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let name = "slow_view.csv";
    let mpath = mnt.path.join(INVOICES).join(name);
    let sdir = sb.root.join(INVOICES);
    let spath = sdir.join(name);
    let data = random_bytes(3 * MIB + 777, 11);
    let watcher = Watcher::start(&sdir);

    let mut f = File::create(&mpath).expect("create through the mount");
    // Created, nothing written: the server shows no (empty) file under the
    // final name, only the hidden temp the write-behind opens right away.
    assert!(
        wait_until(Duration::from_secs(5), || temps_in(&sdir).len() == 1),
        "no hidden temp after create: {:?}",
        names_in(&sdir)
    );
    let temp = temps_in(&sdir).remove(0);
    assert!(
        temp.starts_with(&format!(".{name}.coupafs-")),
        "temp name {temp:?}"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(!spath.exists(), "empty file published at create");

    let mut written = 0usize;
    let mut checks = 0;
    for (i, chunk) in data.chunks(256 * 1024).enumerate() {
        f.write_all(chunk).expect("write");
        written += chunk.len();
        if i % 3 == 0 {
            checks += 1;
            // Through the mount: the final name, the size written so far.
            let md = fs::metadata(&mpath).expect("stat through the mount");
            assert_eq!(md.len(), written as u64, "size seen by the writer");
            let listed = names_in(mnt.path.join(INVOICES));
            assert_eq!(listed, vec![name.to_string()], "listing through the mount");
            // Reading back what was written so far (a second descriptor of
            // the writing process).
            let back = fs::read(&mpath).expect("read back through the mount");
            assert_eq!(back.len(), written);
            assert!(back == data[..written], "read-back differs at {written}");
            // The server: still only the hidden temp.
            assert!(
                !spath.exists(),
                "final name on the server at {written} bytes"
            );
            let names = names_in(&sdir);
            assert_eq!(names.len(), 1, "server dir: {names:?}");
            assert!(is_coupafs_temp(&names[0]), "server dir: {names:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(checks >= 4);
    close_file(f).expect("close of a good upload");
    assert_eq!(sha256sum(&spath).unwrap(), sha256_bytes(&data));
    assert_eq!(
        wait_no_temps(&sdir, Duration::from_secs(5)),
        Vec::<String>::new()
    );
    let seen = watcher.finish();
    assert_eq!(
        seen.get(name).cloned().unwrap_or_default(),
        BTreeSet::from([data.len() as u64]),
        "the final name was seen at other sizes: {seen:?}"
    );
    assert_eq!(seen.len(), 1, "other names seen: {seen:?}");
}

/// A second process reading the file while it is being written (a monitoring
/// script, `tail`, `cat`) shares the upload; its close must not publish the
/// writer's partial content.
#[test]
fn reader_closing_a_file_being_written_does_not_publish_it() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let name = "read_while_writing.csv";
    let mpath = mnt.path.join(INVOICES).join(name);
    let sdir = sb.root.join(INVOICES);
    let spath = sdir.join(name);
    let first = random_bytes(100_000, 21);
    let second = random_bytes(100_000, 22);
    let watcher = Watcher::start(&sdir);

    let mut f = File::create(&mpath).expect("create");
    f.write_all(&first).expect("write");
    // Another process reads it back while the writer still has it open.
    let out = Command::new("cat").arg(&mpath).output().expect("cat");
    assert!(out.status.success(), "cat failed: {out:?}");
    assert!(out.stdout == first, "cat read {} bytes", out.stdout.len());
    thread::sleep(Duration::from_millis(500));
    let early = spath.exists();
    f.write_all(&second).expect("write");
    close_file(f).expect("close");
    let mut all = first.clone();
    all.extend_from_slice(&second);
    assert_eq!(sha256sum(&spath).unwrap(), sha256_bytes(&all));
    let seen = watcher.finish();
    assert!(
        !early,
        "published while the writer still had it open:\n{}",
        mnt.log()
    );
    assert_eq!(
        seen.get(name).cloned().unwrap_or_default(),
        BTreeSet::from([all.len() as u64]),
        "the server showed the final name at these sizes"
    );
}

#[test]
fn tmp_then_mv_pattern_leaves_only_the_final_name() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("rows.csv");
    let sha = make_source(&src, 2 * MIB + 5);
    let sdir = sb.root.join(INVOICES);
    let st = Command::new("sh")
        .arg("-c")
        .arg(r#"cat "$1" > "$2/x.tmp" && mv "$2/x.tmp" "$2/x.csv""#)
        .arg("sh")
        .arg(&src)
        .arg(mnt.path.join(INVOICES))
        .status()
        .expect("sh");
    assert!(st.success());
    assert_eq!(names_in(&sdir), vec!["x.csv".to_string()]);
    assert_eq!(sha256sum(sdir.join("x.csv")).unwrap(), sha);
    assert_eq!(
        names_in(mnt.path.join(INVOICES)),
        vec!["x.csv".to_string()],
        "view through the mount"
    );
}

#[test]
fn rename_of_a_file_still_open_publishes_under_the_new_name_only() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let mdir = mnt.path.join(INVOICES);
    let data = random_bytes(2 * MIB + 99, 31);
    let watcher = Watcher::start(&sdir);

    let mut f = File::create(mdir.join("a.csv")).expect("create a.csv");
    f.write_all(&data[..MIB]).expect("write");
    fs::rename(mdir.join("a.csv"), mdir.join("b.csv")).expect("mv while open");
    assert!(!mdir.join("a.csv").exists(), "old name still visible");
    assert_eq!(
        fs::metadata(mdir.join("b.csv")).expect("new name").len(),
        MIB as u64
    );
    f.write_all(&data[MIB..]).expect("write after mv");
    thread::sleep(Duration::from_millis(200));
    assert!(!sdir.join("a.csv").exists() && !sdir.join("b.csv").exists());
    close_file(f).expect("close");
    assert_eq!(sha256sum(sdir.join("b.csv")).unwrap(), sha256_bytes(&data));
    assert_eq!(
        wait_no_temps(&sdir, Duration::from_secs(5)),
        Vec::<String>::new()
    );
    assert_eq!(names_in(&sdir), vec!["b.csv".to_string()]);
    let seen = watcher.finish();
    assert_eq!(
        seen,
        BTreeMap::from([("b.csv".to_string(), BTreeSet::from([data.len() as u64]))]),
        "names the server showed"
    );
}

// ---------------------------------------------------------------------------
// close() reports failure; nothing partial is left
// ---------------------------------------------------------------------------

/// Writes `data` to a new file through the mount; the errors of each write
/// and of close().
fn write_and_close(path: &Path, data: &[u8], truncate_existing: bool) -> (Vec<i32>, Option<i32>) {
    let f = if truncate_existing {
        OpenOptions::new().write(true).truncate(true).open(path)
    } else {
        File::create(path)
    };
    let mut f = f.unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut write_errors = Vec::new();
    for chunk in data.chunks(MIB) {
        if let Err(e) = f.write_all(chunk) {
            write_errors.push(en(&e));
            break;
        }
    }
    let close = close_file(f).err().map(|e| en(&e));
    (write_errors, close)
}

#[test]
fn read_only_server_folder_fails_close_with_eacces_and_leaves_nothing() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let mdir = mnt.path.join(INVOICES);
    let old = b"id,amount\n1,10.00\n".to_vec();
    fs::write(sdir.join("keep.csv"), &old).unwrap();
    chown_to_sftp_user(&sdir.join("keep.csv"));
    // Make sure the mount knows keep.csv before the folder turns read-only.
    assert_eq!(fs::read(mdir.join("keep.csv")).unwrap(), old);
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o555)).unwrap();

    let data = random_bytes(3 * MIB, 41);
    let (w_new, c_new) = write_and_close(&mdir.join("new.csv"), &data, false);
    let (w_old, c_old) = write_and_close(&mdir.join("keep.csv"), &data, true);
    let temps = wait_no_temps(&sdir, Duration::from_secs(5));
    let names = names_in(&sdir);
    let kept = fs::read(sdir.join("keep.csv")).unwrap();
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o755)).unwrap();
    eprintln!(
        "read-only folder: new file write errors {w_new:?} close {c_new:?}; \
         overwrite write errors {w_old:?} close {c_old:?}"
    );
    for (what, w, c) in [("new file", &w_new, c_new), ("overwrite", &w_old, c_old)] {
        // Writes land in the local spool; the first error the job sees must
        // be EACCES, at the latest from close().
        let first = w.first().copied().or(c);
        assert_eq!(
            first,
            Some(libc::EACCES),
            "{what}: first error {:?}",
            first.map(errno_name)
        );
        assert_eq!(c, Some(libc::EACCES), "{what}: close() result");
    }
    assert!(temps.is_empty(), "temps left: {temps:?}");
    assert_eq!(names, vec!["keep.csv".to_string()], "server folder");
    assert!(kept == old, "keep.csv changed ({} bytes)", kept.len());
}

/// close() told the job the upload failed; the file must not turn up on the
/// server later. Here another process still holds a copy of the descriptor,
/// so the kernel's RELEASE comes after the server folder became writable.
#[test]
fn failed_close_is_not_published_later_at_release() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let sdir = sb.root.join(INVOICES);
    let spath = sdir.join("late.csv");
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o555)).unwrap();

    let mut f = File::create(mnt.path.join(INVOICES).join("late.csv")).expect("create");
    f.write_all(&random_bytes(MIB, 91)).expect("write");
    // A helper inherits a copy (across exec: FD_CLOEXEC cleared in the child
    // only) and keeps it for 2 s.
    let fd = f.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("2");
    // SAFETY: fcntl is async-signal-safe; it only changes the child's copy.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut helper = cmd.spawn().expect("spawn sleep");
    let closed = close_file(f).err().map(|e| en(&e));
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(closed, Some(libc::EACCES), "the opener's close()");
    helper.wait().expect("wait sleep");
    // The helper's exit brings the RELEASE.
    let published = wait_until(Duration::from_secs(5), || spath.exists());
    assert!(
        !published,
        "close() returned EACCES, yet the file was published afterwards:\n{}",
        mnt.log()
            .lines()
            .filter(|l| l.contains("late.csv"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A tmpfs mounted on a server folder; unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=755")])
            .arg("tmpfs")
            .arg(path)
            .status()
            .expect("mount tmpfs");
        assert!(st.success(), "mount -t tmpfs failed");
        let disk = SmallDisk(path.to_path_buf());
        chown_to_sftp_user(path);
        disk
    }

    fn used_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs into a zeroed struct with a valid C path.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        (s.f_blocks - s.f_bfree) * s.f_frsize
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_server_disk_fails_with_enospc_and_leaves_nothing() {
    let sb = Sandbox::start();
    let full = sb.root.join("Incoming/Full");
    let disk = SmallDisk::mount(&full, "2m");
    let mnt = Mount::new(&sb, &[]);
    let mdir = mnt.path.join("Incoming/Full");

    let data = random_bytes(5 * MIB, 51);
    let (writes, close) = write_and_close(&mdir.join("big.csv"), &data, false);
    eprintln!("full disk: write errors {writes:?}, close {close:?}");
    let first = writes.first().copied().or(close);
    assert_eq!(
        first,
        Some(libc::ENOSPC),
        "first error {:?}",
        first.map(errno_name)
    );
    if writes.is_empty() {
        assert_eq!(close, Some(libc::ENOSPC));
    }
    // The kernel's RELEASE follows close() asynchronously and may retry the
    // upload: wait until the status file shows nothing pending any more.
    wait_status_settled(&mnt, SystemTime::now());
    let temps = wait_no_temps(&full, Duration::from_secs(5));
    assert!(temps.is_empty(), "temps left: {temps:?}");
    assert_eq!(names_in(&full), Vec::<String>::new(), "server folder");
    assert!(
        wait_until(Duration::from_secs(5), || disk.used_bytes() < 64 * 1024),
        "space not given back: {} bytes used",
        disk.used_bytes()
    );

    // The mount is fine afterwards: a file that fits is published.
    let small = random_bytes(300_000, 52);
    let (writes, close) = write_and_close(&mdir.join("small.csv"), &small, false);
    assert_eq!((writes, close), (vec![], None), "small file after ENOSPC");
    assert_eq!(fs::read(full.join("small.csv")).unwrap(), small);
    drop(mnt);
    drop(disk);
}

#[test]
fn server_refusing_rename_fails_close_and_leaves_nothing() {
    let sb = Sandbox::start_with(SandboxOptions {
        sftp_server_flags: Some("-P rename,posix-rename".into()),
        ..SandboxOptions::default()
    });
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let mdir = mnt.path.join(INVOICES);
    let data = random_bytes(MIB + 3, 61);
    let (writes, close) = write_and_close(&mdir.join("refused.csv"), &data, false);
    eprintln!(
        "rename refused: write errors {writes:?}, close {:?}",
        close.map(errno_name)
    );
    assert_eq!(writes, Vec::<i32>::new(), "writes go to the spool");
    // sftp-server answers a request denied by -P with PERMISSION_DENIED.
    assert_eq!(
        close,
        Some(libc::EACCES),
        "close() {:?}",
        close.map(errno_name)
    );
    let temps = wait_no_temps(&sdir, Duration::from_secs(5));
    assert!(temps.is_empty(), "temps left: {temps:?}");
    assert_eq!(names_in(&sdir), Vec::<String>::new(), "server folder");
    let log = mnt.log();
    assert!(
        log.contains("close /Incoming/Invoices/refused.csv: Permission denied"),
        "coupafs log does not report the failed close:\n{}",
        tail(&log, 20)
    );
}

// ---------------------------------------------------------------------------
// O_EXCL, fsync, killed writers, inherited descriptors
// ---------------------------------------------------------------------------

#[test]
fn exclusive_create_of_an_existing_server_file_is_eexist() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let mdir = mnt.path.join(INVOICES);
    let excl = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p)
    };

    fs::write(sdir.join("exists.csv"), b"old\n").unwrap();
    chown_to_sftp_user(&sdir.join("exists.csv"));
    let e = excl(&mdir.join("exists.csv")).expect_err("O_EXCL on an existing file");
    assert_eq!(en(&e), libc::EEXIST, "{e}");

    // The mount believes "later.csv" is absent (it just looked); then it
    // appears on the server. O_EXCL must not overwrite it: EEXIST from open(),
    // or, when open() trusted the fresh negative lookup, from close() (the
    // commit's non-replacing rename).
    assert!(!mdir.join("later.csv").exists());
    fs::write(sdir.join("later.csv"), b"server\n").unwrap();
    chown_to_sftp_user(&sdir.join("later.csv"));
    let outcome = match excl(&mdir.join("later.csv")) {
        Err(e) => format!("open: {}", errno_name(en(&e))),
        Ok(mut f) => {
            f.write_all(b"mine\n").expect("write");
            match close_file(f) {
                Err(e) => format!("close: {}", errno_name(en(&e))),
                Ok(()) => "close: ok".to_string(),
            }
        }
    };
    eprintln!("O_EXCL on a name created behind the mount's back -> {outcome}");
    assert!(
        outcome == format!("open: {}", errno_name(libc::EEXIST))
            || outcome == format!("close: {}", errno_name(libc::EEXIST)),
        "O_EXCL on a name taken on the server: {outcome}"
    );

    // A genuinely new name works and publishes at close.
    let mut f = excl(&mdir.join("fresh.csv")).expect("O_EXCL on a new name");
    f.write_all(b"new\n").unwrap();
    close_file(f).expect("close");

    assert_eq!(fs::read(sdir.join("exists.csv")).unwrap(), b"old\n");
    assert_eq!(fs::read(sdir.join("later.csv")).unwrap(), b"server\n");
    assert_eq!(fs::read(sdir.join("fresh.csv")).unwrap(), b"new\n");
    assert_eq!(
        wait_no_temps(&sdir, Duration::from_secs(5)),
        Vec::<String>::new()
    );
}

#[test]
fn fsync_puts_the_bytes_in_the_temp_not_under_the_final_name() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let name = "synced.csv";
    let data = random_bytes(5 * MIB + 1234, 71);
    let half = 3 * MIB + 4321;

    let mut f = File::create(mnt.path.join(INVOICES).join(name)).expect("create");
    f.write_all(&data[..half]).expect("write");
    f.sync_all().expect("fsync");
    let temps = temps_in(&sdir);
    assert_eq!(
        temps.len(),
        1,
        "server dir after fsync: {:?}",
        names_in(&sdir)
    );
    let temp = sdir.join(&temps[0]);
    assert_eq!(
        fs::metadata(&temp).unwrap().len(),
        half as u64,
        "temp size after fsync"
    );
    assert_eq!(sha256sum(&temp).unwrap(), sha256_bytes(&data[..half]));
    assert!(!sdir.join(name).exists(), "final name exists after fsync");

    f.write_all(&data[half..]).expect("write rest");
    close_file(f).expect("close");
    assert_eq!(sha256sum(sdir.join(name)).unwrap(), sha256_bytes(&data));
    assert_eq!(
        wait_no_temps(&sdir, Duration::from_secs(5)),
        Vec::<String>::new()
    );
}

#[test]
fn writer_killed_by_sigkill_publishes_nothing() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let sdir = sb.root.join(INVOICES);
    let name = "killed.csv";
    let mpath = mnt.path.join(INVOICES).join(name);
    let watcher = Watcher::start(&sdir);

    // dd writes what we feed it; it is the opener and the only holder.
    let mut dd = Command::new("dd")
        .arg(format!("of={}", mpath.display()))
        .arg("bs=64k")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dd");
    let mut feed = dd.stdin.take().unwrap();
    let sent = 2 * MIB + 64 * 1024;
    feed.write_all(&random_bytes(sent, 81)).expect("feed dd");
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::metadata(&mpath).map(|m| m.len()).unwrap_or(0) == sent as u64
        }),
        "dd did not write {sent} bytes"
    );
    // Write-behind has the bytes in a temp on the server by now or soon.
    wait_until(Duration::from_secs(5), || {
        temps_in(&sdir)
            .first()
            .and_then(|t| fs::metadata(sdir.join(t)).ok())
            .is_some_and(|m| m.len() > 0)
    });
    dd.kill().expect("SIGKILL dd");
    let status = dd.wait().expect("wait dd");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    drop(feed);

    let temps = wait_no_temps(&sdir, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(500));
    let seen = watcher.finish();
    assert!(!sdir.join(name).exists(), "published after SIGKILL");
    assert!(seen.is_empty(), "server showed: {seen:?}");
    assert!(temps.is_empty(), "temp left behind: {temps:?}");
    let log = mnt.log();
    assert!(
        log.contains("killed by signal 9"),
        "log lacks the discard message:\n{}",
        tail(&log, 30)
    );
}

#[test]
fn child_closing_an_inherited_descriptor_does_not_publish() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let sdir = sb.root.join(INVOICES);
    let mdir = mnt.path.join(INVOICES);
    let work = tempfile::tempdir().unwrap();
    let rows = work.path().join("rows.csv");
    make_source(&rows, MIB + 17);
    let rows_data = fs::read(&rows).unwrap();
    let watcher = Watcher::start(&sdir);

    // 1. A child inherits a dup of our descriptor as its stdout, writes and
    //    exits (closing it) while we still hold ours.
    let mut f = File::create(mdir.join("dup.csv")).expect("create");
    f.write_all(b"header\n").unwrap();
    let st = Command::new("cat")
        .arg(&rows)
        .stdout(f.try_clone().expect("dup"))
        .status()
        .expect("cat");
    assert!(st.success());
    thread::sleep(Duration::from_millis(700));
    assert!(
        !sdir.join("dup.csv").exists(),
        "published when the child closed its copy"
    );
    f.write_all(b"trailer\n").unwrap();
    close_file(f).expect("close by the opener");
    let mut expect = b"header\n".to_vec();
    expect.extend_from_slice(&rows_data);
    expect.extend_from_slice(b"trailer\n");
    assert_eq!(
        sha256sum(sdir.join("dup.csv")).unwrap(),
        sha256_bytes(&expect)
    );

    // 2. The shell pattern: `sleep` and `cat` inherit the redirection.
    let st = Command::new("sh")
        .arg("-c")
        .arg(r#"{ echo header; sleep 0.3; cat "$1"; sleep 0.3; echo trailer; } > "$2""#)
        .arg("sh")
        .arg(&rows)
        .arg(mdir.join("shell.csv"))
        .status()
        .expect("sh");
    assert!(st.success());
    let mut expect2 = b"header\n".to_vec();
    expect2.extend_from_slice(&rows_data);
    expect2.extend_from_slice(b"trailer\n");
    assert_eq!(
        sha256sum(sdir.join("shell.csv")).unwrap(),
        sha256_bytes(&expect2)
    );
    assert_eq!(
        wait_no_temps(&sdir, Duration::from_secs(5)),
        Vec::<String>::new()
    );
    let seen = watcher.finish();
    assert_eq!(
        seen,
        BTreeMap::from([
            ("dup.csv".to_string(), BTreeSet::from([expect.len() as u64])),
            (
                "shell.csv".to_string(),
                BTreeSet::from([expect2.len() as u64])
            ),
        ]),
        "sizes the server showed under the final names"
    );
}

// ---------------------------------------------------------------------------
// Overwrites and cut connections
// ---------------------------------------------------------------------------

#[test]
fn overwrite_is_atomic_for_a_server_side_reader() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let spath = sb.root.join(INVOICES).join("rates.csv");
    let mpath = mnt.path.join(INVOICES).join("rates.csv");
    let versions: Arc<Vec<Vec<u8>>> =
        Arc::new((0..5).map(|i| random_bytes(5 * MIB, 100 + i)).collect());
    fs::write(&spath, &versions[0]).unwrap();
    chown_to_sftp_user(&spath);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, versions, spath) = (stop.clone(), versions.clone(), spath.clone());
        thread::spawn(move || {
            let (mut reads, mut bad, mut seen) = (0usize, Vec::new(), BTreeSet::new());
            let mut buf = Vec::with_capacity(6 * MIB);
            while !stop.load(Ordering::SeqCst) {
                buf.clear();
                match File::open(&spath).and_then(|mut f| f.read_to_end(&mut buf)) {
                    Ok(_) => match versions.iter().position(|v| *v == buf) {
                        Some(i) => {
                            seen.insert(i);
                        }
                        None => bad.push(format!("a mix or partial: {} bytes", buf.len())),
                    },
                    Err(e) => bad.push(format!("read failed: {e}")),
                }
                reads += 1;
            }
            (reads, bad, seen)
        })
    };
    for v in versions.iter().skip(1) {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&mpath)
            .expect("open for overwrite");
        for chunk in v.chunks(256 * 1024) {
            f.write_all(chunk).expect("write");
        }
        close_file(f).expect("close of the overwrite");
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, bad, seen) = reader.join().expect("reader panicked");
    eprintln!("atomic overwrite: {reads} server-side reads, versions seen {seen:?}");
    assert!(bad.is_empty(), "reader saw: {bad:?}");
    assert!(reads >= 20, "only {reads} reads");
    assert!(seen.len() >= 2, "reader saw only versions {seen:?}");
    assert!(fs::read(&spath).unwrap() == versions[4], "final content");
    assert_eq!(
        wait_no_temps(&sb.root.join(INVOICES), Duration::from_secs(5)),
        Vec::<String>::new()
    );
}

#[test]
fn connection_cut_mid_upload_never_truncates_silently() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("big.bin");
    let sha = make_source(&src, 50 * MIB);
    let sdir = sb.root.join(INVOICES);
    let watcher = Watcher::start(&sdir);
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [300u64, 1200, 2500].into_iter().enumerate() {
        let name = format!("cut_{round}.bin");
        let started = Instant::now();
        let mut cp = Command::new("cp")
            .arg(&src)
            .arg(mnt.path.join(INVOICES).join(&name))
            .stderr(Stdio::piped())
            .spawn()
            .expect("cp");
        thread::sleep(Duration::from_millis(delay_ms));
        let killed = sb.session_pids().len();
        sb.kill_sessions();
        let mut status = None;
        wait_until(Duration::from_secs(120), || {
            status = cp.try_wait().expect("try_wait cp");
            status.is_some()
        });
        let Some(status) = status else {
            let _ = cp.kill();
            panic!("cp hung after the cut:\n{}", tail(&mnt.log(), 30));
        };
        let mut err = String::new();
        let _ = cp.stderr.take().unwrap().read_to_string(&mut err);
        let on_server = sha256sum(sdir.join(&name)).ok();
        eprintln!(
            "cut round {round}: killed {killed} session processes after {delay_ms} ms; \
             cp {status} after {:.1?} {}; server copy {}",
            started.elapsed(),
            err.trim(),
            match &on_server {
                Some(h) if *h == sha => "complete",
                Some(_) => "WRONG",
                None => "absent",
            }
        );
        if status.success() {
            assert_eq!(on_server.as_deref(), Some(sha.as_str()), "round {round}");
        } else {
            assert_eq!(
                on_server, None,
                "round {round}: cp failed yet a file is there"
            );
        }
        outcomes.push(status.success());
    }
    let temps = wait_no_temps(&sdir, Duration::from_secs(20));
    let seen = watcher.finish();
    for (name, sizes) in &seen {
        assert_eq!(
            sizes,
            &BTreeSet::from([50 * MIB as u64]),
            "{name} seen at sizes {sizes:?}"
        );
    }
    eprintln!(
        "cut uploads: {} of {} completed, the rest failed at close",
        outcomes.iter().filter(|o| **o).count(),
        outcomes.len()
    );
    assert!(
        temps.is_empty(),
        "temps left: {temps:?}\n{}",
        tail(&mnt.log(), 30)
    );
    // The mount still works without a remount.
    let small = random_bytes(100_000, 9);
    let (w, c) = write_and_close(&mnt.path.join(INVOICES).join("after.csv"), &small, false);
    assert_eq!((w, c), (vec![], None));
    assert_eq!(fs::read(sdir.join("after.csv")).unwrap(), small);
}

/// `-o upload_dir=` stages the bytes in another remote folder (for servers
/// whose poller would pick up hidden files), and `-o temp_prefix=` changes
/// the temp name; the file still appears complete, in one step, and no
/// temp file is left in either folder.
#[test]
fn upload_dir_and_temp_prefix_stage_elsewhere() {
    let sb = Sandbox::start();
    let staging = sb.root.join("Staging");
    fs::create_dir(&staging).expect("mkdir staging");
    chown_to_sftp_user(&staging);
    let mnt = Mount::new(&sb, &["upload_dir=Staging", "temp_prefix=_up_"]);
    let sdir = sb.root.join(INVOICES);
    let path = mnt.path.join(INVOICES).join("staged.csv");
    let mut f = File::create(&path).expect("create");
    f.write_all(b"a,b\n").expect("write");
    f.sync_all()
        .expect("fsync puts the bytes in the staging temp");
    let staged = names_in(&staging);
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(
        staged[0].starts_with("_up_staged.csv.coupafs-"),
        "{staged:?}"
    );
    assert!(
        names_in(&sdir).is_empty(),
        "nothing in the target folder before close: {:?}",
        names_in(&sdir)
    );
    f.write_all(b"1,2\n").expect("write");
    drop(f);
    assert_eq!(
        fs::read(sdir.join("staged.csv")).expect("published"),
        b"a,b\n1,2\n"
    );
    assert!(names_in(&staging).is_empty(), "{:?}", names_in(&staging));
    assert_eq!(names_in(&sdir), vec!["staged.csv".to_string()]);
}

/// Temp files left by a killed mount are removed by the next mount once
/// they are over an hour old; fresh ones (maybe another mount's live
/// upload) are left alone.
#[test]
fn next_mount_reaps_stale_temp_files_only() {
    let sb = Sandbox::start();
    let sdir = sb.root.join(INVOICES);
    let stale = sdir.join(".old.csv.coupafs-0a1b2c");
    let fresh = sdir.join(".new.csv.coupafs-3d4e5f");
    fs::write(&stale, b"left by a killed mount").expect("stale temp");
    fs::write(&fresh, b"someone's live upload").expect("fresh temp");
    chown_to_sftp_user(&stale);
    chown_to_sftp_user(&fresh);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_modified(two_hours_ago)
        .expect("age the stale temp");
    let mnt = Mount::new(&sb, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || !stale.exists()),
        "stale temp not reaped; log:\n{}",
        mnt.log()
    );
    assert!(fresh.exists(), "a fresh temp must be left alone");
    assert!(
        mnt.log().contains("removed stale upload temp file"),
        "{}",
        mnt.log()
    );
}

/// A folder written to holds a hidden spare on the server. A job that
/// empties such a folder and removes it (or renames it) must see it go
/// like any empty folder: rmdir(2) must not fail with ENOTEMPTY, and no
/// spare may stay behind in the renamed folder.
#[test]
fn a_folder_holding_spares_can_be_removed_and_renamed() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &[]);
    let mdir = mnt.path.join(INVOICES);
    let sdir = sb.root.join(INVOICES);
    for name in ["batch", "staged"] {
        fs::create_dir(mdir.join(name)).expect("mkdir");
        fs::write(mdir.join(name).join("a.csv"), b"a,b\n").expect("write");
    }
    for name in ["batch", "staged"] {
        assert!(
            wait_until(Duration::from_secs(5), || !spares_in(sdir.join(name))
                .is_empty()),
            "no spare opened in {name}: {:?}",
            all_names_in(sdir.join(name))
        );
    }
    fs::remove_file(mdir.join("batch/a.csv")).expect("rm");
    fs::remove_dir(mdir.join("batch")).expect("rmdir of a folder that looks empty");
    assert!(!sdir.join("batch").exists(), "rmdir reached the server");

    fs::rename(mdir.join("staged"), mdir.join("done")).expect("mv");
    assert_eq!(all_names_in(sdir.join("done")), vec!["a.csv".to_string()]);
    let status = mnt.unmount();
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    assert_eq!(
        all_names_in(sdir.join("done")),
        vec!["a.csv".to_string()],
        "a spare stayed in the renamed folder"
    );
}

/// Spare temps (files opened ahead of creates, see src/spare.rs) appear
/// while a folder is being written, go a few seconds after the last create,
/// and never outlive the mount.
#[test]
fn spare_temps_go_when_the_folder_is_idle_and_at_unmount() {
    let sb = Sandbox::start();
    let sdir = sb.root.join(INVOICES);
    let mnt = Mount::new(&sb, &[]);
    let burst = |from: usize| {
        for i in from..from + 3 {
            fs::write(mnt.path.join(INVOICES).join(format!("s{i}.csv")), b"a,b\n").expect("write");
        }
    };
    burst(0);
    assert!(
        wait_until(Duration::from_secs(5), || !spares_in(&sdir).is_empty()),
        "no spare opened after a burst of creates: {:?}",
        all_names_in(&sdir)
    );
    assert!(
        wait_until(Duration::from_secs(15), || spares_in(&sdir).is_empty()),
        "spares outlived the burst: {:?}",
        all_names_in(&sdir)
    );
    burst(3);
    assert!(wait_until(Duration::from_secs(5), || !spares_in(&sdir).is_empty()));
    let status = mnt.unmount();
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    assert_eq!(
        all_names_in(&sdir),
        (0..6).map(|i| format!("s{i}.csv")).collect::<Vec<_>>(),
        "unmount left spares or lost files"
    );
}
