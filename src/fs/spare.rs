//! Spare upload temp files, opened ahead of demand.
//!
//! Every new file is uploaded to a remote temp file, and opening that temp
//! is a round trip (SFTP OPEN returns the handle every WRITE needs). A job
//! that creates many files in one folder (`cp -r`, a batch loop) would wait
//! for that OPEN in every close(). So once a folder sees creates, the pool
//! keeps a few temp files there already open ("spares", named like any
//! other upload temp, so listings hide them and the stale-temp reaper knows
//! them); a create takes one and close() waits only for the tail WRITE and
//! the commit. Demand sets the pool size: a create that finds it empty
//! doubles the folder's target (up to `max_per_dir`), so eight parallel
//! writers get eight spares and one sequential job gets one or two.
//!
//! Across a WAN round trip a spare also comes open on the other
//! connections or channels (its "twins", `Remote::open_twin`): one SSH
//! channel moves at most its flow-control window per round trip, so a
//! Coupa-sized file (a few MiB) is striped over all their windows from its
//! first byte, with no OPEN round trip at close() for the other handles
//! either.
//!
//! Spares are empty files that no file depends on. They are closed and
//! removed once their folder has seen no create for `idle` (a burst's end),
//! at unmount, or (after a crash) by the next mount's stale-temp reaper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::fs::inode::{join, split};
use crate::fs::janitor;
use crate::fs::temp_name::TempNaming;
use crate::remote::{Handle, Remote, RemoteError, Twin};

/// Permission bits spares are opened with: what `cp`, `cat >` and most
/// jobs create. A create with other bits sets them at commit (FSETSTAT in
/// the same batch, no extra round trip).
pub(crate) const SPARE_MODE: u32 = 0o644;

/// The name part spares carry before the temp mark (`.coupafs-spare.coupafs-XXXXXX`).
const SPARE_NAME: &[u8] = b"coupafs-spare";

/// How often the worker looks for idle folders.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// After a failed OPEN, a folder gets no spares for this long.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How long `clear_under` waits for spares still opening in a folder that
/// is about to be removed or renamed (their OPEN has its own time bound).
const OPENING_WAIT: Duration = Duration::from_secs(5);

/// An open, empty remote temp file ready to receive an upload.
#[derive(Debug, Clone)]
pub(crate) struct Spare {
    pub(crate) path: Vec<u8>,
    pub(crate) handle: Handle,
    /// The same file open on the other connections, when striping pays.
    pub(crate) twins: Vec<Handle>,
}

#[derive(Default)]
struct Folder {
    ready: Vec<Spare>,
    /// OPENs in flight for this folder.
    opening: usize,
    /// How many spares to keep ready (grows with demand).
    target: usize,
    last_take: Option<Instant>,
    /// An OPEN failed here (a read-only folder, say): no spares until then.
    paused_until: Option<Instant>,
}

enum Job {
    Refill(Vec<u8>),
    /// Spares whose connection died: remove the files (off the create path).
    Discard(Vec<Spare>),
}

pub(crate) struct SparePool {
    remote: Arc<dyn Remote>,
    naming: TempNaming,
    max_per_dir: usize,
    idle: Duration,
    folders: Mutex<HashMap<Vec<u8>, Folder>>,
    /// Signalled (with `folders`) when an OPEN of a spare is done.
    opened: Condvar,
    jobs: Mutex<Option<Sender<Job>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

use crate::sync::lock;

impl SparePool {
    /// A pool keeping at most `max_per_dir` spares per folder (0: none),
    /// each folder's dropped after `idle` without creates.
    pub(crate) fn new(
        remote: Arc<dyn Remote>,
        naming: TempNaming,
        max_per_dir: usize,
        idle: Duration,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            remote,
            naming,
            max_per_dir,
            idle,
            folders: Mutex::new(HashMap::new()),
            opened: Condvar::new(),
            jobs: Mutex::new(None),
            worker: Mutex::new(None),
        });
        if max_per_dir > 0 {
            let (tx, rx) = mpsc::channel::<Job>();
            *lock(&pool.jobs) = Some(tx);
            let weak = Arc::downgrade(&pool);
            let worker = std::thread::Builder::new()
                .name("spare-temps".into())
                .spawn(move || loop {
                    let job = rx.recv_timeout(SWEEP_EVERY);
                    let Some(pool) = weak.upgrade() else { return };
                    match job {
                        Ok(Job::Refill(dir)) => pool.refill(&dir),
                        Ok(Job::Discard(spares)) => pool.discard(spares),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    pool.sweep_idle(false);
                    janitor::remove_deferred(pool.remote.as_ref());
                });
            *lock(&pool.worker) = worker.ok();
        }
        pool
    }

    /// Folder where the temp file of `final_path` (absolute remote) lives.
    fn temp_dir(&self, final_path: &[u8]) -> Vec<u8> {
        self.naming
            .upload_dir
            .clone()
            .unwrap_or_else(|| split(final_path).0.to_vec())
    }

    /// A spare for uploading `final_path`, if one is ready. Either way the
    /// folder's pool is topped up in the background.
    pub(crate) fn take(&self, final_path: &[u8]) -> Option<Spare> {
        if self.max_per_dir == 0 {
            return None;
        }
        let dir = self.temp_dir(final_path);
        let mut stale = Vec::new();
        let found = {
            let mut folders = lock(&self.folders);
            let folder = folders.entry(dir.clone()).or_default();
            folder.last_take = Some(Instant::now());
            let mut found = None;
            while let Some(mut s) = folder.ready.pop() {
                if self.remote.handle_alive(&s.handle) {
                    // A twin whose connection died: the upload goes on
                    // without it (or opens others when it is large).
                    s.twins.retain(|t| self.remote.handle_alive(t));
                    found = Some(s);
                    break;
                }
                // Its connection died: the worker removes the file.
                stale.push(s);
            }
            if found.is_none() {
                folder.target = (folder.target * 2).clamp(1, self.max_per_dir);
            }
            found
        };
        if let Some(tx) = lock(&self.jobs).as_ref() {
            if !stale.is_empty() {
                let _ = tx.send(Job::Discard(stale));
            }
            let _ = tx.send(Job::Refill(dir));
        }
        found
    }

    /// Opens spares until the folder holds its target (several OPENs in
    /// flight at once).
    fn refill(&self, dir: &[u8]) {
        let need = {
            let mut folders = lock(&self.folders);
            let Some(folder) = folders.get_mut(dir) else {
                return;
            };
            if folder.paused_until.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let need = folder
                .target
                .saturating_sub(folder.ready.len() + folder.opening);
            folder.opening += need;
            need
        };
        if need == 0 {
            return;
        }
        let name_in_dir = join(dir, SPARE_NAME);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..need {
                scope.spawn(|| {
                    let spare = self.open_one(&name_in_dir);
                    if spare.is_none() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    // Ready for a create as soon as it is open; twins that
                    // did not come with the create (one more round trip)
                    // are attached when they come.
                    if let Some((path, handle, striped)) = self.offer(dir, spare) {
                        if !striped {
                            self.attach_twin(dir, &path, &handle);
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            if let Some(folder) = lock(&self.folders).get_mut(dir) {
                folder.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
                folder.target = 1;
            }
        }
    }

    /// Counts one OPEN of `dir` done and makes its spare ready; returns
    /// its path, its handle and whether it came with twins, or None when
    /// there is none (failed OPEN, or the folder was swept or shut down
    /// meanwhile: the spare is removed).
    fn offer(&self, dir: &[u8], spare: Option<Spare>) -> Option<(Vec<u8>, Handle, bool)> {
        let unwanted = {
            let mut folders = lock(&self.folders);
            self.opened.notify_all();
            match (folders.get_mut(dir), spare) {
                (Some(folder), spare) => {
                    folder.opening = folder.opening.saturating_sub(1);
                    let spare = spare?;
                    let ready = (
                        spare.path.clone(),
                        spare.handle.clone(),
                        !spare.twins.is_empty(),
                    );
                    folder.ready.push(spare);
                    return Some(ready);
                }
                (None, spare) => spare?,
            }
        };
        self.discard(vec![unwanted]);
        None
    }

    /// Opens the spare `path` on a second connection too, when striping
    /// pays, and attaches that handle to it if it is still ready (a create
    /// that took it meanwhile goes on without; the handle is closed).
    fn attach_twin(&self, dir: &[u8], path: &[u8], handle: &Handle) {
        let twins = match self.remote.open_twin(path, handle) {
            Ok(Twin::Opened(twins)) => twins,
            Ok(Twin::Later | Twin::NotWorth) => return,
            Err(e) => {
                log::debug!(
                    "second handle on spare {} not opened: {e}",
                    String::from_utf8_lossy(path)
                );
                return;
            }
        };
        let unused = {
            let mut folders = lock(&self.folders);
            let spare = folders
                .get_mut(dir)
                .and_then(|f| f.ready.iter_mut().find(|s| s.path == path));
            match spare {
                Some(s) if s.twins.is_empty() => {
                    s.twins = twins;
                    Vec::new()
                }
                _ => twins,
            }
        };
        for twin in &unused {
            self.remote.close_quietly(twin);
        }
    }

    fn open_one(&self, name_in_dir: &[u8]) -> Option<Spare> {
        let path = self.naming.temp_path(name_in_dir);
        match self.remote.create_new_striped(&path, Some(SPARE_MODE)) {
            Ok((handle, twin)) => Some(Spare {
                path,
                handle,
                twins: match twin {
                    Twin::Opened(twins) => twins,
                    Twin::Later | Twin::NotWorth => Vec::new(),
                },
            }),
            Err(e) => {
                if matches!(e, RemoteError::Lost(_)) {
                    // The OPEN may have created the file before the link
                    // died.
                    janitor::remove_temp(self.remote.as_ref(), &path);
                }
                // Not an error for anyone: the next create opens its own.
                log::debug!(
                    "spare temp {} not opened: {e}",
                    String::from_utf8_lossy(&path)
                );
                None
            }
        }
    }

    fn discard(&self, spares: Vec<Spare>) {
        for s in spares {
            for t in &s.twins {
                self.remote.close_quietly(t);
            }
            let _ = self.remote.close(&s.handle);
            // A spare of a killed connection waits for the next one.
            janitor::remove_temp(self.remote.as_ref(), &s.path);
        }
    }

    /// Before an rmdir or a rename of `dir` (absolute remote path): closes
    /// and removes the spares of `dir` and of every folder under it, so the
    /// server sees those folders as the user does. To the server a folder
    /// holding a spare is not empty (rmdir(2) would fail with ENOTEMPTY on
    /// a folder `ls -a` shows empty), and a spare carried off by a rename
    /// would stay there under a name the pool no longer knows. Spares still
    /// opening there are waited for (up to `OPENING_WAIT`) and removed too;
    /// none is opened there again until a create in the folder asks.
    pub(crate) fn clear_under(&self, dir: &[u8]) {
        let until = Instant::now() + OPENING_WAIT;
        loop {
            let (dropped, opening) = {
                let mut folders = lock(&self.folders);
                let mut dropped = Vec::new();
                let mut opening = false;
                folders.retain(|d, f| {
                    if !is_under(d, dir) {
                        return true;
                    }
                    dropped.append(&mut f.ready);
                    f.target = 0;
                    // Kept until its OPENs land, so that they land here
                    // (and are removed below) rather than be removed by
                    // the worker after the caller's request went out.
                    opening |= f.opening > 0;
                    f.opening > 0
                });
                if dropped.is_empty() && opening {
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    drop(
                        self.opened
                            .wait_timeout(folders, until - now)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
                    continue;
                }
                (dropped, opening)
            };
            self.discard(dropped);
            if !opening {
                return;
            }
        }
    }

    /// Closes and removes the spares of folders idle for `idle` (all of
    /// them with `everything`).
    fn sweep_idle(&self, everything: bool) {
        let dropped: Vec<Spare> = {
            let mut folders = lock(&self.folders);
            let idle =
                |f: &Folder| everything || f.last_take.is_none_or(|t| t.elapsed() >= self.idle);
            let gone: Vec<Vec<u8>> = folders
                .iter()
                .filter(|(_, f)| idle(f) && f.opening == 0)
                .map(|(d, _)| d.clone())
                .collect();
            gone.iter()
                .filter_map(|d| folders.remove(d))
                .flat_map(|f| f.ready)
                .collect()
        };
        self.discard(dropped);
    }

    /// Ready spares that have their twins.
    #[cfg(test)]
    pub(crate) fn twinned(&self) -> usize {
        lock(&self.folders)
            .values()
            .flat_map(|f| &f.ready)
            .filter(|s| !s.twins.is_empty())
            .count()
    }

    /// Spares currently open.
    #[cfg(test)]
    pub(crate) fn ready(&self) -> usize {
        lock(&self.folders).values().map(|f| f.ready.len()).sum()
    }

    /// Unmount: stops the worker (after its current job, so no OPEN lands
    /// after this) and removes every spare.
    pub(crate) fn shutdown(&self) {
        lock(&self.jobs).take();
        let worker = lock(&self.worker).take();
        if let Some(w) = worker {
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
        self.sweep_idle(true);
    }
}

/// `folder` is `dir` or lies under it (absolute remote paths).
fn is_under(folder: &[u8], dir: &[u8]) -> bool {
    let dir = match dir {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        d => d,
    };
    folder == dir
        || (folder.starts_with(dir)
            && (dir.ends_with(b"/") || folder.get(dir.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tests::wait_for;
    use crate::remote::mock::MockRemote;

    fn pool(remote: &Arc<MockRemote>, max: usize, idle: Duration) -> Arc<SparePool> {
        remote.mkdir_p("/root/In");
        let dyn_remote: Arc<dyn Remote> = remote.clone();
        SparePool::new(
            dyn_remote,
            TempNaming {
                prefix: b".".to_vec(),
                upload_dir: None,
            },
            max,
            idle,
        )
    }

    fn temps(remote: &MockRemote) -> Vec<String> {
        remote
            .names("/root/In")
            .into_iter()
            .filter(|n| crate::fs::temp_name::is_temp_name(n.as_bytes()))
            .collect()
    }

    #[test]
    fn the_first_create_misses_and_the_next_finds_a_spare() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 8, Duration::from_secs(60));
        assert!(p.take(b"/root/In/a.csv").is_none(), "nothing opened yet");
        wait_for("one spare", || p.ready() == 1);
        let s = p.take(b"/root/In/b.csv").expect("a spare");
        assert!(s.path.starts_with(b"/root/In/.coupafs-spare.coupafs-"));
        assert!(crate::fs::temp_name::is_temp_name(split(&s.path).1));
        // Taken spares are the caller's; the pool refills behind it.
        wait_for("refill", || p.ready() == 1);
        assert_eq!(temps(&remote).len(), 2);
    }

    #[test]
    fn a_spare_comes_open_on_a_second_connection_too() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 2, Duration::from_secs(60));
        assert!(p.take(b"/root/In/a.csv").is_none());
        wait_for("one spare with its twin", || p.twinned() == 1);
        let s = p.take(b"/root/In/b.csv").expect("a spare");
        assert_eq!(
            s.twins.len(),
            1,
            "opened on a second connection ahead of use"
        );
        for twin in &s.twins {
            assert_ne!(twin.raw, s.handle.raw);
            remote.close(twin).expect("a live handle on the same file");
        }
        remote.close(&s.handle).expect("close");
        // Spares dropped unused close their twin too.
        wait_for("refill", || p.ready() == 1);
        p.shutdown();
        assert_eq!(remote.open_handles(), 0, "a handle leaked on the server");
    }

    /// A backend that opens twins beside the create hands spares over with
    /// them at once; one whose twins lost the race to the create gets them
    /// a round trip later, as before.
    #[test]
    fn twins_opened_beside_a_spares_create_need_no_second_open() {
        for beside in [true, false] {
            let remote = Arc::new(MockRemote::new());
            remote.set_twins_beside_creates(Some(beside));
            let p = pool(&remote, 2, Duration::from_secs(60));
            assert!(p.take(b"/root/In/a.csv").is_none());
            wait_for("one spare with its twin", || p.twinned() == 1);
            assert_eq!(remote.calls("create_new_striped"), 1);
            assert_eq!(
                remote.calls("open_twin"),
                usize::from(!beside),
                "open_twin only when the twins lost the race (beside: {beside})"
            );
            let s = p.take(b"/root/In/b.csv").expect("a spare");
            assert_eq!(s.twins.len(), 1);
            for twin in &s.twins {
                remote.close(twin).expect("a live handle on the same file");
            }
            remote.close(&s.handle).expect("close");
            p.shutdown();
            assert_eq!(remote.open_handles(), 0, "a handle leaked on the server");
        }
    }

    /// The twin costs a second round trip: a create never waits for it.
    #[test]
    fn a_spare_is_ready_before_its_twin_and_a_late_twin_is_closed() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 2, Duration::from_secs(60));
        remote.hold("open_twin");
        assert!(p.take(b"/root/In/a.csv").is_none());
        wait_for("one spare", || p.ready() == 1);
        let s = p
            .take(b"/root/In/b.csv")
            .expect("ready while its twin opens");
        assert!(s.twins.is_empty());
        remote.release("open_twin");
        // The twin of the taken spare is closed; the refill gets its own.
        wait_for("refill with a twin", || p.twinned() == 1);
        remote.close(&s.handle).expect("close");
        p.shutdown();
        assert_eq!(remote.open_handles(), 0, "a handle leaked on the server");
    }

    #[test]
    fn misses_double_the_target_up_to_the_cap() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 4, Duration::from_secs(60));
        for _ in 0..5 {
            // Take everything ready, then miss once more.
            while p.take(b"/root/In/x").is_some() {}
            wait_for("refill", || p.ready() > 0);
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_for("full pool", || p.ready() == 4);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(p.ready(), 4, "never more than max_per_dir");
    }

    #[test]
    fn idle_folders_and_shutdown_remove_their_spares() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 2, Duration::from_millis(200));
        let _ = p.take(b"/root/In/a");
        wait_for("spare", || p.ready() == 1);
        wait_for("idle sweep", || p.ready() == 0 && temps(&remote).is_empty());

        let p = pool(&remote, 2, Duration::from_secs(60));
        let _ = p.take(b"/root/In/a");
        wait_for("spare", || p.ready() == 1);
        p.shutdown();
        assert_eq!(p.ready(), 0);
        assert!(temps(&remote).is_empty(), "left: {:?}", temps(&remote));
    }

    fn temps_in(remote: &MockRemote, dir: &str) -> usize {
        remote
            .names(dir)
            .into_iter()
            .filter(|n| crate::fs::temp_name::is_temp_name(n.as_bytes()))
            .count()
    }

    /// An rmdir or a rename of a folder first takes its spares, and those
    /// of folders under it, off the server; a sibling whose name merely
    /// starts the same keeps its own.
    #[test]
    fn clearing_a_folder_removes_its_spares_and_those_below_it_only() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 1, Duration::from_secs(60));
        remote.mkdir_p("/root/In/sub");
        remote.mkdir_p("/root/Inbox");
        for f in ["/root/In/a", "/root/In/sub/a", "/root/Inbox/a"] {
            let _ = p.take(f.as_bytes());
        }
        wait_for("three spares", || p.ready() == 3);
        p.clear_under(b"/root/In");
        assert_eq!(p.ready(), 1);
        assert_eq!(temps_in(&remote, "/root/In"), 0);
        assert_eq!(temps_in(&remote, "/root/In/sub"), 0);
        assert_eq!(temps_in(&remote, "/root/Inbox"), 1);
        // Not refilled behind the caller's back.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(temps_in(&remote, "/root/In"), 0);
        assert!(is_under(b"/root/In", b"/root/In/"));
        assert!(is_under(b"/root/In/x", b"/"));
        assert!(!is_under(b"/root/Inbox", b"/root/In"));
    }

    /// A spare whose OPEN is still out when its folder is cleared is waited
    /// for and removed before the caller goes on, not left to land in a
    /// folder the caller is about to remove.
    #[test]
    fn clearing_waits_for_a_spare_still_opening() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 1, Duration::from_secs(60));
        remote.hold("open");
        let _ = p.take(b"/root/In/a");
        wait_for("the OPEN", || remote.waiting() == 1);
        let (tx, rx) = mpsc::channel();
        let p2 = p.clone();
        std::thread::spawn(move || {
            p2.clear_under(b"/root/In");
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "cleared with an OPEN still out"
        );
        remote.release("open");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("clear_under returned");
        assert_eq!(temps(&remote).len(), 0);
        assert_eq!(p.ready(), 0);
    }

    #[test]
    fn a_folder_refusing_opens_gets_no_more_tries_for_a_while() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 8, Duration::from_secs(60));
        remote.fail_always(
            "open",
            crate::remote::RemoteError::PermissionDenied(String::new()),
        );
        assert!(p.take(b"/root/In/a").is_none());
        wait_for("the first OPEN", || remote.calls("open") > 0);
        std::thread::sleep(Duration::from_millis(100));
        let tried = remote.calls("open");
        for _ in 0..10 {
            assert!(p.take(b"/root/In/a").is_none());
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            remote.calls("open"),
            tried,
            "a failed OPEN pauses the folder"
        );
        remote.heal();
    }

    #[test]
    fn zero_keeps_no_spares() {
        let remote = Arc::new(MockRemote::new());
        let p = pool(&remote, 0, Duration::from_secs(60));
        assert!(p.take(b"/root/In/a").is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(remote.calls("open"), 0);
    }
}
