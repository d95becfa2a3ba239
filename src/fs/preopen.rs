//! Files opened ahead for a reader.
//!
//! A program reading a file by a path the mount has not seen yet costs
//! three dependent round trips: the kernel's LOOKUP (LSTAT), OPEN, then the
//! READs. When the thread behind the LOOKUP is inside open(2) for reading
//! (`caller::opening_for_read`), the lookup sends the OPEN beside its
//! LSTAT, and the open(2) that follows a moment later takes that handle
//! here instead of a round trip of its own. No OPEN is sent for a `stat`,
//! a `test -f` or a listing: only for a file a program is opening anyway.
//!
//! A handle nobody takes within `TTL` (the open failed on the kernel's
//! side, say) is closed by a reaper thread that runs only while handles
//! wait here. The lock is a leaf.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::remote::{Handle, Remote};
use crate::sync::lock;

/// How long a handle opened ahead waits for its open(2): the kernel sends
/// OPEN right after the LOOKUP's reply, so anything older is left over.
const TTL: Duration = Duration::from_secs(1);

pub(crate) struct PreOpened {
    remote: Arc<dyn Remote>,
    /// Mount-relative path -> the handle and when it was opened.
    files: Mutex<HashMap<Vec<u8>, (Handle, Instant)>>,
    /// A reaper thread is running.
    reaping: Mutex<bool>,
}

impl PreOpened {
    pub(crate) fn new(remote: Arc<dyn Remote>) -> Arc<Self> {
        Arc::new(Self {
            remote,
            files: Mutex::new(HashMap::new()),
            reaping: Mutex::new(false),
        })
    }

    /// Keeps `handle` (of `path`, mount-relative) for the open that follows.
    pub(crate) fn put(self: &Arc<Self>, path: &[u8], handle: Handle) {
        let old = lock(&self.files).insert(path.to_vec(), (handle, Instant::now()));
        if let Some((h, _)) = old {
            self.remote.close_quietly(&h);
        }
        self.reap_later();
    }

    /// The handle opened ahead for `path`, if one is fresh and alive.
    pub(crate) fn take(&self, path: &[u8]) -> Option<Handle> {
        let (handle, at) = lock(&self.files).remove(path)?;
        if at.elapsed() < TTL && self.remote.handle_alive(&handle) {
            return Some(handle);
        }
        self.remote.close_quietly(&handle);
        None
    }

    /// Closes the handle kept for `path` (written, removed or renamed
    /// through the mount meanwhile).
    pub(crate) fn discard(&self, path: &[u8]) {
        let old = lock(&self.files).remove(path);
        if let Some((h, _)) = old {
            self.remote.close_quietly(&h);
        }
    }

    /// Handles waiting right now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.files).len()
    }

    /// Closes every handle older than `TTL` (all of them with `everything`).
    fn sweep(&self, everything: bool) {
        let stale: Vec<Handle> = {
            let mut files = lock(&self.files);
            let old: Vec<Vec<u8>> = files
                .iter()
                .filter(|(_, (_, at))| everything || at.elapsed() >= TTL)
                .map(|(p, _)| p.clone())
                .collect();
            old.iter()
                .filter_map(|p| files.remove(p))
                .map(|(h, _)| h)
                .collect()
        };
        for h in &stale {
            self.remote.close_quietly(h);
        }
    }

    /// Starts the reaper unless it runs. It stops once nothing waits; the
    /// check and the stop happen under `reaping`, which `put` takes after
    /// inserting, so a handle put meanwhile always has a reaper.
    fn reap_later(self: &Arc<Self>) {
        let mut reaping = lock(&self.reaping);
        if *reaping {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("pre-open-reaper".into())
            .spawn(move || loop {
                std::thread::sleep(TTL / 2);
                let Some(me) = weak.upgrade() else { return };
                me.sweep(false);
                let mut reaping = lock(&me.reaping);
                if lock(&me.files).is_empty() {
                    *reaping = false;
                    return;
                }
            });
        *reaping = started.is_ok();
    }

    /// Unmount: closes every handle still waiting.
    pub(crate) fn shutdown(&self) {
        self.sweep(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tests::wait_for;
    use crate::remote::mock::MockRemote;

    fn opened(remote: &Arc<MockRemote>, path: &str) -> Handle {
        remote.open_read(path.as_bytes()).expect("open")
    }

    #[test]
    fn a_handle_is_taken_once_and_one_left_over_is_closed() {
        let remote = Arc::new(MockRemote::new());
        remote.mkdir_p("/root");
        remote.put_file("/root/a.csv", b"a");
        let p = PreOpened::new(remote.clone());
        let h = opened(&remote, "/root/a.csv");
        p.put(b"/a.csv", h.clone());
        assert_eq!(p.take(b"/a.csv"), Some(h));
        assert_eq!(p.take(b"/a.csv"), None, "taken twice");

        p.put(b"/a.csv", opened(&remote, "/root/a.csv"));
        assert_eq!(remote.open_handles(), 2);
        wait_for("the reaper", || p.len() == 0 && remote.open_handles() == 1);

        p.put(b"/a.csv", opened(&remote, "/root/a.csv"));
        p.discard(b"/a.csv");
        assert_eq!(remote.open_handles(), 1);
        p.put(b"/a.csv", opened(&remote, "/root/a.csv"));
        p.shutdown();
        assert_eq!(remote.open_handles(), 1);
    }
}
