//! Listing a folder: OPENDIR, READDIRs in a sliding window that grows as
//! the folder proves big, CLOSE without waiting.

use std::sync::mpsc;

use crate::remote::{DirEntry, RResult};
use crate::sftp::{status, Request, Response};
use crate::ssh::{ConnError, Connection};

use super::{meta_of, status_err, unexpected};

/// READDIR requests in the first batch of a listing: most folders fit in
/// one reply (OpenSSH sends up to 100 names per READDIR), so a small one
/// costs one round trip and few wasted EOF replies.
pub(super) const READDIR_FIRST: usize = 4;
/// READDIR requests in flight once a folder proved big: a 20,000-entry
/// Archive folder (about 200 replies) then takes about 8 round trips
/// instead of 50. Replies are names only, small against the channel window.
const READDIR_AHEAD_MAX: usize = 32;

/// READDIRs in the batch after one of `n` that did not reach the end.
pub(super) fn next_readdir_batch(n: usize) -> usize {
    (n * 4).min(READDIR_AHEAD_MAX)
}

/// OPENDIR, READDIR with several requests in flight until EOF, CLOSE.
///
/// A sliding window, not batches: each reply with names sends the next
/// READDIR at once, so the server always has requests queued and never
/// waits a round trip between batches (its own work per entry, an LSTAT
/// and the long name, is then the only pace).
pub(super) fn read_dir_on(conn: &Connection, path: &[u8]) -> RResult<Vec<DirEntry>> {
    let handle = match conn.call(&Request::Opendir {
        path: path.to_vec(),
    })? {
        Response::Handle(h) => h,
        Response::Status { code, message } => return Err(status_err(code, message)),
        other => return Err(unexpected("OPENDIR", &other)),
    };
    let (tx, rx) = mpsc::channel::<Result<Response, ConnError>>();
    let send = |n: usize| {
        for _ in 0..n {
            let tx = tx.clone();
            conn.submit(
                &Request::Readdir {
                    handle: handle.clone(),
                },
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
        }
    };
    let mut window = Window::new();
    send(window.in_flight);
    let mut entries = Vec::new();
    let mut result = Ok(());
    while window.in_flight > 0 {
        // Every submitted request's completion runs exactly once (the I/O
        // thread fails those outstanding when the link dies), and `tx` is
        // still held here: `recv` returns for each.
        let Ok(r) = rx.recv() else {
            result = Err(ConnError::Disconnected("I/O thread gone".into()).into());
            break;
        };
        window.in_flight -= 1;
        match r {
            Ok(Response::Name(names)) => {
                entries.reserve(names.len());
                for n in names {
                    if n.filename != b"." && n.filename != b".." {
                        entries.push(DirEntry {
                            name: n.filename,
                            meta: meta_of(n.attrs),
                        });
                    }
                }
                // The server answers READDIRs on one handle in order, each
                // with the next names; once one says EOF the rest do too,
                // so nothing more is sent after an end or an error.
                if result.is_ok() && !window.ended {
                    send(window.replied());
                }
            }
            Ok(Response::Status { code, .. }) if code == status::EOF => window.ended = true,
            Ok(Response::Status { code, message }) => {
                result = result.and(Err(status_err(code, message)));
            }
            Ok(other) => result = result.and(Err(unexpected("READDIR", &other))),
            Err(e) => result = result.and(Err(e.into())),
        }
    }
    // Nothing depends on the CLOSE reply: don't spend a round trip on it.
    conn.submit(&Request::Close { handle }, Box::new(|_| {}));
    result.map(|()| entries)
}

/// READDIRs in flight: `READDIR_FIRST` at first, deeper as replies with
/// names show the folder is big (`next_readdir_batch`), at most
/// `READDIR_AHEAD_MAX`.
struct Window {
    in_flight: usize,
    /// Replies with names so far.
    replied: usize,
    /// The depth the window grows to once `replied` passes `grow_at`.
    depth: usize,
    grow_at: usize,
    /// A reply said end of file.
    ended: bool,
}

impl Window {
    fn new() -> Self {
        Self {
            in_flight: READDIR_FIRST,
            replied: 0,
            depth: READDIR_FIRST,
            grow_at: READDIR_FIRST,
            ended: false,
        }
    }

    /// A reply with names came: returns how many READDIRs to send now
    /// (one to replace it, more while the window grows).
    fn replied(&mut self) -> usize {
        self.replied += 1;
        if self.replied >= self.grow_at && self.depth < READDIR_AHEAD_MAX {
            // As the batches did: after the first full window, 4x deeper.
            self.depth = next_readdir_batch(self.depth);
            self.grow_at = self.replied + self.depth;
        }
        let n = self.depth.saturating_sub(self.in_flight);
        self.in_flight += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trips a listing of `replies` READDIR replies with names takes
    /// when each reply sends the next request at once: the requests in
    /// flight at a time are the window.
    fn round_trips(replies: usize) -> usize {
        let mut w = Window::new();
        let (mut answered, mut trips) = (0, 0);
        // Each round trip, all requests in flight come back.
        while answered <= replies {
            trips += 1;
            let n = w.in_flight;
            w.in_flight = 0;
            for _ in 0..n {
                answered += 1;
                if answered > replies {
                    break; // the EOF reply
                }
                w.replied();
            }
        }
        trips
    }

    /// Issue 14: the window starts at 4 (a small folder: one round trip,
    /// few wasted EOF replies), grows to 16 and 32, and a big folder never
    /// waits for a whole batch before sending more.
    #[test]
    fn the_readdir_window_slides_and_grows_to_32() {
        let mut w = Window::new();
        assert_eq!(w.in_flight, 4);
        w.in_flight -= 1;
        assert_eq!(w.replied(), 1, "one reply: one more request");
        w.in_flight -= 3;
        let sent: usize = (0..3).map(|_| w.replied()).sum();
        assert_eq!(w.in_flight, 16, "the first window done: 16 deep");
        assert_eq!(sent, 15);
        for _ in 0..40 {
            w.in_flight -= 1;
            w.replied();
        }
        assert_eq!(w.in_flight, 32);
        assert_eq!(round_trips(1), 1);
        assert_eq!(round_trips(10), 2);
        // 200 replies (a 20,000-entry folder): 4 + 16 + 32 + 32 ... as the
        // batches did, without the server waiting between them.
        assert_eq!(round_trips(200), 8);
    }
}
