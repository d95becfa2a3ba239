//! Issue "Survive the network", end to end: a real coupafs mount of a real
//! sshd whose sessions are killed, which is stopped and restarted on the same
//! port, or whose link is silently black-holed by a forwarder in between.
//! The mount must fail bounded and recover by itself, without a remount.

mod common;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::forwarder::{mount_through, Forwarder};
use common::*;

const MIB: usize = 1 << 20;
const INVOICES: &str = "Incoming/Invoices";

/// Entries of a directory through the mount (a full opendir/readdir).
fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

fn status_text(mnt: &Mount) -> String {
    fs::read_to_string(status_file_of(&mnt.path)).unwrap_or_default()
}

/// `cp src dst` running in the background, its stderr kept for messages.
fn spawn_cp(src: &Path, dst: &Path) -> Child {
    Command::new("cp")
        .arg(src)
        .arg(dst)
        .stderr(Stdio::piped())
        .spawn()
        .expect("cp")
}

/// Kills the sandbox's sessions under `cp`, which must still be running
/// (the kill has to land mid-upload), and waits for it: its exit status
/// and stderr.
fn kill_sessions_under(sb: &Sandbox, cp: &mut Child) -> (ExitStatus, String) {
    assert!(
        cp.try_wait().unwrap().is_none(),
        "cp finished before the kill"
    );
    sb.kill_sessions();
    let status = cp.wait().expect("wait cp");
    let mut err = String::new();
    let _ = cp.stderr.take().unwrap().read_to_string(&mut err);
    (status, err)
}

// ---------------------------------------------------------------------------
// Killed sessions
// ---------------------------------------------------------------------------

#[test]
fn idle_mount_recovers_after_its_session_is_killed() {
    let sb = Sandbox::start();
    // One connection, so the count below is exact: the listing's fetch-ahead
    // of the 20 subfolders may open a second one on a loaded machine.
    let mnt = Mount::new(&sb, &["debug", "cache_timeout=0", "max_conns=1"]);
    let incoming = mnt.path.join("Incoming");
    let before_list = list(&incoming).expect("ls before");
    assert_eq!(before_list.len(), 20, "{before_list:?}");
    let before = sb.connection_pids();
    assert_eq!(before.len(), 1, "one connection: {before:?}");

    sb.kill_sessions();
    assert!(
        wait_until(Duration::from_secs(5), || mnt
            .log()
            .contains("SFTP connection lost")),
        "the mount did not notice the killed session:\n{}",
        tail(&mnt.log(), 20)
    );
    let t = Instant::now();
    let after_list = list(&incoming).expect("ls after the session was killed");
    let took = t.elapsed();
    assert_eq!(after_list, before_list);
    let after = sb.connection_pids();
    eprintln!("idle: first ls after the kill took {took:.2?}; connections {before:?} -> {after:?}");
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!before.contains(&after[0]), "same connection? {after:?}");
    assert!(mnt.log().contains("reconnected to 127.0.0.1"));
    assert!(
        wait_until(Duration::from_secs(6), || {
            let s = status_text(&mnt);
            s.contains("\nstate=connected\n") && s.contains("\nreconnects=1\n")
        }),
        "status file:\n{}",
        status_text(&mnt)
    );
    assert!(mnt.is_mounted());
}

#[test]
fn listing_loop_survives_killed_sessions() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["cache_timeout=0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let looper = {
        let (stop, root) = (stop.clone(), mnt.path.clone());
        thread::spawn(move || {
            let (mut ok, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                for dir in ["Incoming", "Outgoing", "Outgoing/PurchaseOrders", "Archive"] {
                    let started = Instant::now();
                    match list(&root.join(dir)) {
                        Ok(v) if !v.is_empty() => ok += 1,
                        Ok(v) => failures.push(format!("{dir}: empty listing {v:?}")),
                        Err(e) => failures.push(format!(
                            "{dir} at {:.1?} (after {:.1?}): {e}",
                            t0.elapsed(),
                            started.elapsed()
                        )),
                    }
                }
            }
            (ok, failures)
        })
    };
    let mut killed = 0;
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1000));
        killed += sb.session_pids().len();
        sb.kill_sessions();
    }
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = looper.join().expect("ls loop panicked");
    eprintln!(
        "ls loop: {ok} listings ok, {} failed, {killed} session processes killed in 3 rounds",
        failures.len()
    );
    assert!(killed >= 3, "nothing was killed");
    assert!(ok >= 20, "only {ok} listings");
    assert!(failures.is_empty(), "listings failed: {failures:#?}");
    assert_eq!(list(&mnt.path.join("Incoming")).unwrap().len(), 20);
}

#[test]
fn large_read_survives_killed_sessions() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let spath = sb.root.join("Outgoing/Invoices/big_export.csv");
    let sha = make_source(&spath, 100 * MIB);
    chown_to_sftp_user(&spath);
    let mpath = mnt.path.join("Outgoing/Invoices/big_export.csv");
    let t = Instant::now();
    // A paced reader (1 MiB, then 5 ms), copying to a local file: the read
    // takes long enough for the kills to land inside it on any machine.
    let progress = Arc::new(AtomicUsize::new(0));
    let copy = tempfile::NamedTempFile::new().expect("local copy");
    let copy_path = copy.path().to_path_buf();
    let reader = {
        let progress = progress.clone();
        thread::spawn(move || -> Result<String, String> {
            let mut from = File::open(&mpath).map_err(|e| format!("open: {e}"))?;
            let mut to = File::create(&copy_path).map_err(|e| format!("create: {e}"))?;
            let mut buf = vec![0u8; MIB];
            loop {
                let n = from.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    break;
                }
                to.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
                progress.fetch_add(n, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
            }
            drop(to);
            sha256sum(&copy_path)
        })
    };
    let mut kills = 0;
    for at in [10 * MIB, 50 * MIB] {
        wait_until(Duration::from_secs(60), || {
            progress.load(Ordering::SeqCst) >= at || reader.is_finished()
        });
        if !reader.is_finished() {
            sb.kill_sessions();
            kills += 1;
        }
    }
    let got = reader.join().expect("reader panicked");
    eprintln!(
        "large read: 100 MiB read in {:.1?} with {kills} session kills",
        t.elapsed()
    );
    assert!(
        kills >= 1,
        "the read finished before any kill; make it bigger"
    );
    assert!(
        mnt.log().contains("SFTP connection lost"),
        "the kill did not hit the connection:\n{}",
        tail(&mnt.log(), 20)
    );
    assert_eq!(
        got.as_deref(),
        Ok(sha.as_str()),
        "read through the mount:\n{}",
        tail(&mnt.log(), 20)
    );
}

#[test]
fn large_write_survives_a_killed_session() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("big.bin");
    let sha = make_source(&src, 100 * MIB);
    let dst = mnt.path.join(INVOICES).join("big.bin");
    let t = Instant::now();
    let mut cp = spawn_cp(&src, &dst);
    // Kill once the upload is under way: its temp on the server has
    // grown past 5 MiB (not a fixed delay: machines differ in speed).
    let sdir = sb.root.join(INVOICES);
    let started = wait_until(Duration::from_secs(60), || {
        temps_in(&sdir)
            .iter()
            .filter_map(|t| fs::metadata(sdir.join(t)).ok())
            .any(|m| m.len() >= 5 * MIB as u64)
    });
    assert!(
        started,
        "the upload never started:\n{}",
        tail(&mnt.log(), 20)
    );
    let (status, err) = kill_sessions_under(&sb, &mut cp);
    eprintln!(
        "large write: cp {status} in {:.1?} with a session kill mid-upload {}",
        t.elapsed(),
        err.trim()
    );
    assert!(
        status.success(),
        "cp failed: {err}\n{}",
        tail(&mnt.log(), 20)
    );
    assert_eq!(
        sha256sum(sb.root.join(INVOICES).join("big.bin")).as_deref(),
        Ok(sha.as_str())
    );
    assert!(
        mnt.log().contains("retrying from the local spool")
            || mnt.log().contains("SFTP connection lost")
    );
    // And the mount goes on working.
    let small = random_bytes(200_000, 3);
    write_file(&mnt.path.join(INVOICES).join("after.csv"), &small).expect("write after");
    assert_eq!(
        fs::read(sb.root.join(INVOICES).join("after.csv")).unwrap(),
        small
    );
    assert!(wait_until(Duration::from_secs(10), || temps_in(
        sb.root.join(INVOICES)
    )
    .is_empty()));
}

// ---------------------------------------------------------------------------
// Server down, then back on the same port
// ---------------------------------------------------------------------------

#[test]
fn server_down_fails_within_the_timeout_and_recovers_after_restart() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug", "timeout=3", "cache_timeout=0"]);
    assert_eq!(list(&mnt.path.join("Incoming")).unwrap().len(), 20);

    sb.stop();
    assert!(!sb.is_running());
    let mut longest = Duration::ZERO;
    let mut results = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let r = fs::metadata(mnt.path.join(format!("Incoming/Invoices/absent_{i}.csv")));
        let took = t.elapsed();
        longest = longest.max(took);
        let e = r.expect_err("stat while the server is down");
        results.push(format!("stat: {} in {took:.1?}", errno_name(errno(&e))));
        assert!(
            matches!(errno(&e), libc::EIO | libc::ETIMEDOUT),
            "stat while down: {e}"
        );
        assert!(took < Duration::from_secs(10), "stat blocked {took:?}");
    }
    for dir in ["Incoming/Items", "Outgoing/Receipts"] {
        let t = Instant::now();
        let r = list(&mnt.path.join(dir));
        let took = t.elapsed();
        longest = longest.max(took);
        let e = r.expect_err("ls while the server is down");
        results.push(format!("ls {dir}: {} in {took:.1?}", errno_name(errno(&e))));
        assert!(
            matches!(errno(&e), libc::EIO | libc::ETIMEDOUT),
            "ls while down: {e}"
        );
        assert!(took < Duration::from_secs(10), "ls blocked {took:?}");
    }
    // A whole upload while down: close() must fail, bounded.
    let t = Instant::now();
    let w = write_file(
        &mnt.path.join(INVOICES).join("while_down.csv"),
        &random_bytes(300_000, 5),
    );
    let took_write = t.elapsed();
    let e = w.expect_err("upload while the server is down");
    results.push(format!(
        "write+close: {} in {took_write:.1?}",
        errno_name(errno(&e))
    ));
    assert!(
        took_write < Duration::from_secs(30),
        "close blocked {took_write:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let s = status_text(&mnt);
            !s.contains("\nstate=connected\n") && !s.contains("\nlast_error=\n")
        }),
        "status file while down:\n{}",
        status_text(&mnt)
    );
    let down_status = status_text(&mnt);

    sb.restart();
    let restarted = Instant::now();
    let mut attempts = 0;
    let mut longest_while_recovering = Duration::ZERO;
    let recovered = loop {
        attempts += 1;
        let t = Instant::now();
        let ok = list(&mnt.path.join("Incoming")).is_ok_and(|v| v.len() == 20);
        longest_while_recovering = longest_while_recovering.max(t.elapsed());
        if ok {
            break Some(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "server down: {}; longest blocked op while down {longest:.1?} (upload {took_write:.1?}); \
         recovery after restart {recovered:.1?} ({attempts} tries, longest try {:.1?})\n\
         status while down:\n{down_status}",
        results.join("; "),
        longest_while_recovering
    );
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "no recovery within 30 s of the restart:\n{}",
            tail(&mnt.log(), 30)
        )
    });
    assert!(
        recovered < Duration::from_secs(20),
        "recovery {recovered:?}"
    );
    assert!(
        down_status.contains("\nstate=reconnecting\n")
            || down_status.contains("\nstate=disconnected\n")
    );
    // Same process, same mount, and uploads work again.
    assert!(mnt.is_mounted());
    let data = random_bytes(500_000, 6);
    write_file(&mnt.path.join(INVOICES).join("after.csv"), &data).expect("upload after");
    assert_eq!(
        fs::read(sb.root.join(INVOICES).join("after.csv")).unwrap(),
        data
    );
    assert!(
        !sb.root.join(INVOICES).join("while_down.csv").exists(),
        "the failed upload was published"
    );
    assert!(
        wait_until(Duration::from_secs(6), || status_text(&mnt)
            .contains("\nstate=connected\n")),
        "status after recovery:\n{}",
        status_text(&mnt)
    );
}

// ---------------------------------------------------------------------------
// Black-holed link
// ---------------------------------------------------------------------------

#[test]
fn black_holed_link_is_detected_by_keepalive_and_recovers() {
    let sb = Sandbox::start();
    let fwd = Forwarder::start(sb.port);
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(
        &sb,
        &fwd,
        work.path(),
        "ServerAliveInterval=1,ServerAliveCountMax=2,\
         timeout=5,cache_timeout=0,debug",
    );
    assert_eq!(list(&mnt.path.join("Incoming")).unwrap().len(), 20);
    assert_eq!(fwd.accepted(), 1);

    fwd.set_blackhole(true);
    let holed = Instant::now();
    let detected = wait_until(Duration::from_secs(15), || {
        mnt.log()
            .contains("SFTP connection lost: no reply from server")
    });
    let detect_time = holed.elapsed();
    assert!(
        detected,
        "keepalive did not declare the link dead:\n{}",
        tail(&mnt.log(), 20)
    );
    // An operation during the black hole fails, bounded.
    let t = Instant::now();
    let r = fs::metadata(mnt.path.join("Incoming/Invoices/nothing_here.csv"));
    let blocked = t.elapsed();
    let e = r.expect_err("stat through a black hole");
    assert!(
        matches!(errno(&e), libc::EIO | libc::ETIMEDOUT),
        "stat through a black hole: {e}"
    );
    assert!(
        blocked < Duration::from_secs(20),
        "stat blocked {blocked:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !status_text(&mnt)
            .contains("\nstate=connected\n")),
        "status file still says connected:\n{}",
        status_text(&mnt)
    );
    let hole_status = status_text(&mnt);

    fwd.set_blackhole(false);
    let resumed = Instant::now();
    let recovered = wait_until(Duration::from_secs(30), || {
        list(&mnt.path.join("Incoming")).is_ok_and(|v| v.len() == 20)
    });
    let recovery = resumed.elapsed();
    eprintln!(
        "black hole: declared dead after {detect_time:.1?}; stat during the hole failed \
         ({}) after {blocked:.1?}; recovered {recovery:.1?} after forwarding resumed; \
         {} TCP connections through the forwarder\nstatus during the hole:\n{hole_status}",
        errno_name(errno(&e)),
        fwd.accepted()
    );
    assert!(
        recovered,
        "no recovery after the link came back:\n{}",
        tail(&mnt.log(), 30)
    );
    assert!(detect_time < Duration::from_secs(10), "{detect_time:?}");
    let data = random_bytes(300_000, 8);
    write_file(&mnt.path.join(INVOICES).join("after_hole.csv"), &data).expect("upload");
    assert_eq!(
        fs::read(sb.root.join(INVOICES).join("after_hole.csv")).unwrap(),
        data
    );
    assert!(fwd.accepted() >= 2, "never reconnected");
}

// ---------------------------------------------------------------------------
// Connection cap
// ---------------------------------------------------------------------------

#[test]
fn connection_cap_is_never_exceeded() {
    const FILE: usize = 4 * MIB;
    let sb = Sandbox::start();
    // Through a slightly slow link: on bare loopback replies come back so
    // fast that the pool rarely needs its second connection.
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(2));
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(&sb, &fwd, work.path(), "max_conns=2,cache_timeout=0");
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(5);
    let sampler = {
        let stop = stop.clone();
        let sb_pid_reader = SessionCounter::new(&sb);
        thread::spawn(move || {
            let (mut peak, mut samples, mut hist) = (0usize, 0usize, [0usize; 8]);
            while !stop.load(Ordering::SeqCst) {
                let n = sb_pid_reader.connections();
                peak = peak.max(n);
                hist[n.min(7)] += 1;
                samples += 1;
                thread::sleep(Duration::from_millis(50));
            }
            (peak, samples, hist)
        })
    };
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let dir = mnt.path.join(INVOICES);
            thread::spawn(move || {
                let data = random_bytes(FILE, 1000 + w);
                let mut n = 0;
                let mut errors = Vec::new();
                while Instant::now() < deadline {
                    let p = dir.join(format!("w{w}_{n:03}.bin"));
                    if let Err(e) = write_file(&p, &data) {
                        errors.push(format!("{}: {e}", p.display()));
                    }
                    n += 1;
                }
                (w, n, errors)
            })
        })
        .collect();
    let listers: Vec<_> = ["Incoming/Invoices", "Outgoing"]
        .into_iter()
        .map(|d| {
            let dir = mnt.path.join(d);
            thread::spawn(move || {
                let (mut ok, mut errors) = (0, Vec::new());
                while Instant::now() < deadline {
                    match list(&dir) {
                        Ok(_) => ok += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let mut files = Vec::new();
    for w in writers {
        files.push(w.join().expect("writer panicked"));
    }
    let mut listings = 0;
    for l in listers {
        let (ok, errors) = l.join().expect("lister panicked");
        assert!(errors.is_empty(), "listings failed: {errors:?}");
        listings += ok;
    }
    stop.store(true, Ordering::SeqCst);
    let (peak, samples, hist) = sampler.join().expect("sampler panicked");
    let total: usize = files.iter().map(|(_, n, _)| n).sum();
    eprintln!(
        "connection cap: max_conns=2, peak {peak} connections over {samples} samples \
         (histogram by count {hist:?}); {total} files of 4 MiB by 8 writers, {listings} listings"
    );
    for (w, n, errors) in &files {
        assert!(errors.is_empty(), "writer {w}: {errors:?}");
        let data = random_bytes(FILE, 1000 + w);
        for i in 0..*n {
            let p = sb.root.join(INVOICES).join(format!("w{w}_{i:03}.bin"));
            let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(got == data, "{} differs", p.display());
        }
    }
    assert!(samples >= 50, "only {samples} samples");
    assert!(peak >= 1);
    assert!(
        peak <= 2,
        "{peak} connections with max_conns=2 (histogram {hist:?})"
    );
    assert!(total >= 8, "only {total} files written");
    // The cap was actually put to the test: the pool did open its second
    // connection under this load.
    assert_eq!(peak, 2, "the load never needed a second connection");
}

/// Counts the sandbox's SSH connections (the listener's direct children)
/// from another thread.
struct SessionCounter {
    listener: u32,
}

impl SessionCounter {
    fn new(sb: &Sandbox) -> Self {
        SessionCounter { listener: sb.pid() }
    }

    fn connections(&self) -> usize {
        children(self.listener).len()
    }
}

// ---------------------------------------------------------------------------
// Shutdown and status file
// ---------------------------------------------------------------------------

/// A copy of the mount in another mount namespace (made while it was
/// mounted: a service with PrivateTmp, `ip netns exec`, `unshare -m`)
/// keeps the FUSE superblock alive after our umount(2): SIGTERM must still
/// end coupafs promptly, ending the connection for the copy too.
#[test]
fn sigterm_exits_while_another_namespace_holds_a_copy_of_the_mount() {
    let sb = Sandbox::start();
    let mut mnt = Mount::new(&sb, &["debug"]);
    let mut copy = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    // The copy exists once the child runs sleep in its own namespace.
    let ns_of = |pid: u32| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let mine = ns_of(std::process::id());
    assert!(
        wait_until(Duration::from_secs(10), || {
            let theirs = ns_of(copy.id());
            theirs.is_some()
                && theirs != mine
                && fs::read_to_string(format!("/proc/{}/comm", copy.id()))
                    .is_ok_and(|c| c.trim() == "sleep")
        }),
        "unshare did not start"
    );
    let mounts_of_copy =
        fs::read_to_string(format!("/proc/{}/mounts", copy.id())).unwrap_or_default();
    let shown = mnt.path.display().to_string();
    assert!(
        mounts_of_copy.contains(&shown),
        "no copy of the mount in the new namespace"
    );

    signal_pid(mnt.pid(), libc::SIGTERM);
    let signalled = Instant::now();
    let mut exit = None;
    wait_until(Duration::from_secs(20), || {
        exit = mnt.try_wait();
        exit.is_some()
    });
    let took = signalled.elapsed();
    let log = mnt.log();
    let _ = copy.kill();
    let _ = copy.wait();
    let exit = exit.unwrap_or_else(|| panic!("coupafs did not exit:\n{}", tail(&log, 30)));
    assert!(exit.success(), "exit status {exit}:\n{}", tail(&log, 30));
    // The grace period (no file open: none) plus two short waits.
    assert!(
        took < Duration::from_secs(12),
        "SIGTERM to exit took {took:?}:\n{}",
        tail(&log, 30)
    );
    assert!(
        log.contains("still mounted in another mount namespace"),
        "{}",
        tail(&log, 30)
    );
}

#[test]
fn sigterm_publishes_closed_files_and_never_open_ones() {
    let sb = Sandbox::start();
    let mut mnt = Mount::new(&sb, &["debug", "timeout=3"]);
    let mdir = mnt.path.join(INVOICES);
    let sdir = sb.root.join(INVOICES);

    // Closed before the signal.
    let done: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("done_{i}.csv"),
                random_bytes(2 * MIB + i, 200 + i as u64),
            )
        })
        .collect();
    for (name, data) in &done {
        write_file(&mdir.join(name), data).expect("upload before SIGTERM");
    }
    // Still open at the signal, closed 1 s later (inside the grace period).
    let late = random_bytes(2 * MIB, 300);
    let mut late_file = File::create(mdir.join("late.csv")).unwrap();
    late_file.write_all(&late[..MIB]).unwrap();
    // Still open when coupafs gives up waiting.
    let mut open_file = File::create(mdir.join("open.csv")).unwrap();
    open_file.write_all(&random_bytes(MIB, 301)).unwrap();

    signal_pid(mnt.pid(), libc::SIGTERM);
    let signalled = Instant::now();
    thread::sleep(Duration::from_millis(1000));
    late_file
        .write_all(&late[MIB..])
        .expect("write during the grace period");
    let late_close = close_file(late_file);
    let mut exit = None;
    wait_until(Duration::from_secs(20), || {
        exit = mnt.try_wait();
        exit.is_some()
    });
    let took = signalled.elapsed();
    // close() of the file left open: on a thread, since it hangs if coupafs
    // is wedged (the mount's drop guard kills coupafs, which releases it).
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(close_file(open_file).err().map(|e| errno(&e)));
    });
    let open_close = rx.recv_timeout(Duration::from_secs(5));
    let log = mnt.log();
    eprintln!(
        "SIGTERM: coupafs exited {exit:?} after {took:.1?}; close in the grace period {late_close:?}; \
         close of the file left open, after exit: {:?}",
        open_close.map(|r| r.map(errno_name))
    );
    let exit = exit.unwrap_or_else(|| panic!("coupafs did not exit:\n{}", tail(&log, 30)));
    assert!(exit.success(), "exit status {exit}:\n{}", tail(&log, 30));
    assert!(
        open_close.is_ok(),
        "close() of the file left open hung after coupafs exited"
    );
    late_close.expect("close() during the grace period");
    for (name, data) in &done {
        assert!(fs::read(sdir.join(name)).unwrap() == *data, "{name}");
    }
    assert!(fs::read(sdir.join("late.csv")).unwrap() == late, "late.csv");
    assert!(
        !sdir.join("open.csv").exists(),
        "a file still open at unmount was published"
    );
    assert!(
        log.contains(
            "/Incoming/Invoices/open.csv still open for writing at unmount: NOT published"
        ),
        "log:\n{}",
        tail(&log, 30)
    );
    assert!(!mnt.is_mounted());
    assert!(!status_file_of(&mnt.path).exists(), "status file left");
}

#[test]
fn status_file_describes_the_mount() {
    let sb = Sandbox::start();
    // One connection allowed: on a loaded machine the loopback link's
    // first requests can look slow enough to open a second one ahead.
    let mnt = Mount::new(&sb, &["max_conns=1"]);
    let path = status_file_of(&mnt.path);
    assert!(
        wait_until(Duration::from_secs(5), || path.exists()),
        "no {}",
        path.display()
    );
    let text = fs::read_to_string(&path).unwrap();
    for want in [
        format!("mountpoint={}\n", mnt.path.display()),
        format!("port={}\n", sb.port),
        format!("pid={}\n", mnt.pid()),
        "\nstate=connected\n".to_string(),
        "\nconnections=1\n".to_string(),
        "\nreconnects=0\n".to_string(),
        "\nopen_writers=0\n".to_string(),
        "\npending_uploads=0\n".to_string(),
        "\nlast_error=\n".to_string(),
    ] {
        assert!(text.contains(&want), "status lacks {want:?}:\n{text}");
    }
    // A writer shows up in it while its file is open.
    let mut f = File::create(mnt.path.join(INVOICES).join("status.csv")).unwrap();
    f.write_all(b"a,b\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("\nopen_writers=1\n")),
        "status:\n{}",
        fs::read_to_string(&path).unwrap_or_default()
    );
    close_file(f).unwrap();
    assert_eq!(mnt.unmount().map(|s| s.success()), Some(true));
    assert!(!path.exists(), "status file left after unmount");
}

/// The sandbox's Incoming folders (Coupa's objects), by name.
fn incoming_objects(sb: &Sandbox) -> Vec<std::ffi::OsString> {
    fs::read_dir(sb.root.join("Incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

/// Small requests only: one lookup of a missing file in each of `objects`'
/// Incoming folders, none listed through the mount yet (the first lookups
/// in a folder go to the server; a listed Incoming folder would prepare
/// spare temps, whose twins ask for the second connection themselves).
fn look_up_missing_in(mnt: &Mount, objects: &[std::ffi::OsString]) {
    for object in objects {
        let missing = mnt.path.join("Incoming").join(object).join("missing.csv");
        assert!(fs::metadata(missing).is_err());
    }
}

/// Waits (20 s at most) for the status file to show two connections up.
fn wait_for_two_connections(mnt: &Mount) {
    assert!(
        wait_until(Duration::from_secs(20), || status_text(mnt)
            .contains("\nconnections=2\n")),
        "status:\n{}\nlog:\n{}",
        status_text(mnt),
        tail(&mnt.log(), 30)
    );
}

/// Across a link with a real round trip the second connection is opened
/// once a few requests have timed the link, before any large transfer asks
/// for it; on loopback it is not (`status_file_describes_the_mount`).
#[test]
fn a_wan_mount_opens_its_second_connection_ahead_of_need() {
    let sb = Sandbox::start();
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(3));
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(&sb, &fwd, work.path(), "max_conns=2,debug");
    let objects: Vec<_> = incoming_objects(&sb).into_iter().take(12).collect();
    assert_eq!(objects.len(), 12);
    look_up_missing_in(&mnt, &objects);
    wait_for_two_connections(&mnt);
    assert!(
        mnt.log()
            .contains("opening the other connections ahead of large transfers"),
        "{}",
        tail(&mnt.log(), 30)
    );
    // The second connection brings a second SFTP channel on its session:
    // a third flow-control window without a third login.
    assert!(
        wait_until(Duration::from_secs(10), || mnt
            .log()
            .contains("connection 2 carries 2 SFTP channels")),
        "{}",
        tail(&mnt.log(), 30)
    );
    assert_eq!(mnt.unmount().map(|s| s.success()), Some(true));
}

/// A WAN mount that lost its link logs its second connection in again as
/// soon as the first is back, not when the next large transfer asks for it
/// (and then goes on alone while the login takes its round trips). Only
/// small requests are made after the loss.
#[test]
fn a_wan_mount_reopens_its_second_connection_after_a_link_loss() {
    let sb = Sandbox::start();
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(3));
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(&sb, &fwd, work.path(), "max_conns=2,debug");
    let objects = incoming_objects(&sb);
    assert!(objects.len() >= 16, "{objects:?}");
    look_up_missing_in(&mnt, &objects[..8]);
    wait_for_two_connections(&mnt);
    assert!(
        status_text(&mnt).contains("\nreconnects=0\n"),
        "{}",
        status_text(&mnt)
    );
    sb.kill_sessions();
    // Small requests bring the first connection back...
    look_up_missing_in(&mnt, &objects[8..]);
    // ...and the second follows without being asked for: both count as
    // reconnected (without this, the status stays at one connection and
    // one reconnect).
    let reconnects = |st: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix("reconnects="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st = status_text(&mnt);
            st.contains("\nconnections=2\n") && reconnects(&st) >= 2
        }),
        "status:\n{}\nlog:\n{}",
        status_text(&mnt),
        tail(&mnt.log(), 30)
    );
    assert!(
        mnt.log().contains("(connection 2;"),
        "{}",
        tail(&mnt.log(), 30)
    );
    assert_eq!(mnt.unmount().map(|s| s.success()), Some(true));
}

/// A server that allows one channel per connection (sshd `MaxSessions 1`)
/// refuses the striping connection's second SFTP channel: the mount goes on
/// with one channel per connection, and a large upload stripes over the
/// two connections it has.
#[test]
fn a_server_refusing_a_second_channel_still_gets_a_striped_upload() {
    let sb = Sandbox::start_with(SandboxOptions {
        max_sessions: Some(1),
        ..SandboxOptions::default()
    });
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(3));
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(&sb, &fwd, work.path(), "max_conns=2,debug");
    assert!(
        wait_until(Duration::from_secs(20), || mnt
            .log()
            .contains("second SFTP channel on the session not opened")),
        "{}",
        tail(&mnt.log(), 30)
    );
    let src = work.path().join("big.bin");
    let sha = make_source(&src, 12 * MIB);
    let dst = mnt.path.join(INVOICES).join("big.bin");
    fs::copy(&src, &dst).expect("cp through the mount");
    assert_eq!(
        sha256sum(sb.root.join(INVOICES).join("big.bin")).as_deref(),
        Ok(sha.as_str())
    );
    assert!(
        mnt.log()
            .contains("striping over 1 more connections or channels"),
        "{}",
        tail(&mnt.log(), 30)
    );
    assert!(!mnt.log().contains("carries 2 SFTP channels"));
    assert_eq!(mnt.unmount().map(|s| s.success()), Some(true));
}

/// Across a link with a real round trip a large upload is striped over a
/// second connection and its second channel; killing both sessions
/// mid-upload still lands the complete file (retried from the spool) or
/// fails close() — here it lands.
#[test]
fn striped_upload_survives_killed_sessions() {
    let sb = Sandbox::start();
    let fwd = Forwarder::start_with_delay(sb.port, Duration::from_millis(2));
    let work = traversable_tempdir("coupafs-fwd-");
    let mnt = mount_through(&sb, &fwd, work.path(), "max_conns=2,debug");
    let src = work.path().join("striped.bin");
    let sha = make_source(&src, 60 * MIB);
    let dst = mnt.path.join(INVOICES).join("striped.bin");
    let mut cp = spawn_cp(&src, &dst);
    let striped = wait_until(Duration::from_secs(60), || {
        mnt.log()
            .contains("striping over 2 more connections or channels")
    });
    assert!(striped, "never striped:\n{}", tail(&mnt.log(), 30));
    let (status, err) = kill_sessions_under(&sb, &mut cp);
    assert!(
        status.success(),
        "cp failed: {err}\n{}",
        tail(&mnt.log(), 30)
    );
    assert_eq!(
        sha256sum(sb.root.join(INVOICES).join("striped.bin")).as_deref(),
        Ok(sha.as_str())
    );
    // The kill lands either in the write-behind stream (close() starts the
    // upload over) or in close()'s own send (retried from the spool).
    assert!(
        mnt.log().contains("paused: connection lost")
            || mnt.log().contains("retrying from the local spool"),
        "the kill did not interrupt the upload:\n{}",
        tail(&mnt.log(), 30)
    );
    assert!(wait_until(Duration::from_secs(10), || temps_in(
        sb.root.join(INVOICES)
    )
    .is_empty()));
}
