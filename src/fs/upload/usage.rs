//! The mount-wide count of spooled bytes, checked against `spool_max`.
//!
//! Live uploads add and remove their size as it changes; a dropped upload
//! (its last handle released, its last background round done) gives its
//! bytes back and wakes writers waiting for room. The kernel sends RELEASE
//! after close() has returned (FUSE queues it), so a job that closes one
//! file and at once writes the next can find the first file's spool still
//! counted for a moment: `wait_for_room` bridges that moment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

#[derive(Default)]
pub(crate) struct SpoolUsage {
    bytes: AtomicU64,
    /// Paired with `freed`; guards nothing but the wait.
    gate: Mutex<()>,
    freed: Condvar,
}

impl SpoolUsage {
    pub(crate) fn get(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
        if n > 0 {
            let _gate = lock(&self.gate);
            self.freed.notify_all();
        }
    }

    /// Whether `growth` more bytes fit under `max`, waiting up to `grace`
    /// for other uploads to give theirs back.
    pub(crate) fn wait_for_room(&self, growth: u64, max: u64, grace: Duration) -> bool {
        let fits = |u: &Self| u.get().saturating_add(growth) <= max;
        if fits(self) {
            return true;
        }
        let deadline = Instant::now() + grace;
        let mut gate = lock(&self.gate);
        loop {
            if fits(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            gate = match self.freed.wait_timeout(gate, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn room_freed_by_another_upload_ends_the_wait() {
        let u = Arc::new(SpoolUsage::default());
        u.add(10);
        assert!(u.wait_for_room(6, 16, Duration::ZERO));
        assert!(!u.wait_for_room(7, 16, Duration::from_millis(20)));
        let freer = {
            let u = u.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                u.sub(10);
            })
        };
        let t = Instant::now();
        assert!(u.wait_for_room(12, 16, Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(u.get(), 0);
        freer.join().expect("freer");
    }
}
