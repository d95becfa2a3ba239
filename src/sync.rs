//! Locking shared by every layer.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, going on after a panic in another holder: the data behind
/// coupafs's mutexes stays consistent between statements (plain maps and
/// flags), so a poisoned lock is no reason to fail every later operation.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
