//! A collector's view of a server-side directory for the pickup-safety
//! tests (tests/servers.rs, tests/uploads.rs): [`Watcher`] lists it from
//! the side, the way Coupa's poller would, while coupafs uploads into it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::all_names_in;

/// Every visible (non-dot) name seen in the directory, with every size it
/// was seen at. Dot names are skipped: a poller ignores hidden files, and
/// coupafs's upload and spare temps are hidden by default (`temp_prefix=.`).
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<BTreeMap<String, BTreeSet<u64>>>>,
}

impl Watcher {
    pub fn start(dir: impl AsRef<Path>) -> Watcher {
        let dir = dir.as_ref().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
            while !stop2.load(Ordering::SeqCst) {
                for name in all_names_in(&dir) {
                    if name.starts_with('.') {
                        continue;
                    }
                    if let Ok(md) = fs::metadata(dir.join(&name)) {
                        seen.entry(name).or_default().insert(md.len());
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Watcher {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching; every name seen with every size.
    pub fn finish(mut self) -> BTreeMap<String, BTreeSet<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("watcher thread")
            .join()
            .expect("watcher thread panicked")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
