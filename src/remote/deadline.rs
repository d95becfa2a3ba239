//! The time bound of the system call being served: `-o timeout` bounds how
//! long one system call waits for the server, retries and reconnect waits
//! included, not each request it makes.
//!
//! The filesystem layer marks a system call with a [`CallScope`] on the
//! thread serving it (FUSE serves one request per thread at a time); every
//! remote request made inside it, and every retry, waits at most until
//! the scope's start plus the operation timeout. Outside a scope a request
//! gets the whole timeout to itself. A background scope (write-behind,
//! cleanup) never waits for a connection: with none up, its requests fail
//! at once and the work is picked up later.

use std::cell::Cell;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Scope {
    start: Instant,
    wait: bool,
}

thread_local! {
    static CURRENT: Cell<Option<Scope>> = const { Cell::new(None) };
}

/// Marks the system call served by this thread until dropped. Nested
/// scopes keep the outer one's start: the bound is per system call.
#[must_use = "the scope ends when this is dropped"]
pub(crate) struct CallScope {
    prev: Option<Scope>,
}

impl CallScope {
    /// A system call: requests share one deadline from now.
    pub(crate) fn enter() -> CallScope {
        Self::with(true)
    }

    /// Background work: requests never wait for a connection.
    pub(crate) fn background() -> CallScope {
        Self::with(false)
    }

    fn with(wait: bool) -> CallScope {
        let prev = CURRENT.with(Cell::get);
        let scope = match prev {
            // An outer system call keeps its clock; a no-wait request
            // inside one still may not wait.
            Some(p) => Scope {
                start: p.start,
                wait: p.wait && wait,
            },
            None => Scope {
                start: Instant::now(),
                wait,
            },
        };
        CURRENT.with(|c| c.set(Some(scope)));
        CallScope { prev }
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// Until when a request made now may wait, given the operation timeout.
pub(crate) fn deadline(timeout: Duration) -> Instant {
    match CURRENT.with(Cell::get) {
        Some(Scope { wait: false, .. }) => Instant::now(),
        Some(Scope { start, .. }) => start + timeout,
        None => Instant::now() + timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_shares_one_deadline_and_nesting_keeps_it() {
        let t = Duration::from_secs(10);
        let outer = CallScope::enter();
        let first = deadline(t);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(deadline(t), first, "one deadline per system call");
        {
            let _inner = CallScope::enter();
            assert_eq!(deadline(t), first, "nested scope keeps the outer clock");
            let _bg = CallScope::background();
            assert!(deadline(t) <= Instant::now(), "background never waits");
        }
        assert_eq!(deadline(t), first);
        drop(outer);
        assert!(
            deadline(t) > first,
            "outside a scope each request gets its own"
        );
    }
}
