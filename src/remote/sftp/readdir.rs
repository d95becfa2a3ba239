//! Listing a folder: OPENDIR, READDIRs in a sliding window that grows as
//! the folder proves big, CLOSE without waiting.

use std::sync::mpsc;

use crate::remote::{DirEntry, RResult, RemoteError};
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
    let result = loop {
        // Every submitted request's completion runs exactly once (the I/O
        // thread fails those outstanding when the link dies), and `tx` is
        // still held here: `recv` returns for each.
        let Ok(r) = rx.recv() else {
            break Err(ConnError::Disconnected("I/O thread gone".into()).into());
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
                send(window.replied());
            }
            // The server answers READDIRs on one handle in order, each with
            // the next names; once one says EOF the rest do too: the
            // requests still out are not waited for (their replies go
            // nowhere).
            Ok(Response::Status { code, .. }) if code == status::EOF => break Ok(()),
            Ok(Response::Status { code, message }) => break Err(status_err(code, message)),
            Ok(other) => break Err(unexpected("READDIR", &other)),
            Err(e) => break Err(e.into()),
        }
        if window.in_flight == 0 {
            // Not reached with a server that ends with EOF.
            break Err(RemoteError::Protocol(
                "READDIR replies ended without EOF".into(),
            ));
        }
    };
    // Nothing depends on the CLOSE reply: don't spend a round trip on it.
    conn.submit(&Request::Close { handle }, Box::new(|_| {}));
    result.map(|()| entries)
}

/// READDIRs in flight: `READDIR_FIRST` at first, sent as one batch (a
/// small folder costs that many requests and one round trip); once all of
/// them came back with names the folder is big, and each reply sends the
/// next request at once, the window growing 4x (`next_readdir_batch`) each
/// time a full window came back, up to `READDIR_AHEAD_MAX`.
struct Window {
    in_flight: usize,
    /// Replies with names so far.
    replied: usize,
    depth: usize,
    /// `depth` grows once `replied` reaches this.
    grow_at: usize,
}

impl Window {
    fn new() -> Self {
        Self {
            in_flight: READDIR_FIRST,
            replied: 0,
            depth: READDIR_FIRST,
            grow_at: READDIR_FIRST,
        }
    }

    /// A reply with names came: returns how many READDIRs to send now.
    fn replied(&mut self) -> usize {
        self.replied += 1;
        if self.replied < READDIR_FIRST {
            return 0;
        }
        if self.replied >= self.grow_at && self.depth < READDIR_AHEAD_MAX {
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

    /// The first 4 READDIRs are one batch (a small folder: four
    /// requests, one round trip); a folder that filled them gets 16, then
    /// 32 in flight, each reply sending the next at once, so the server
    /// never waits for a whole batch to come back.
    #[test]
    fn the_readdir_window_slides_and_grows_to_32() {
        let mut w = Window::new();
        assert_eq!(w.in_flight, 4);
        for _ in 0..3 {
            w.in_flight -= 1;
            assert_eq!(w.replied(), 0, "nothing more before the first 4 are back");
        }
        w.in_flight -= 1;
        assert_eq!(w.replied(), 16, "the first 4 had names: 16 deep");
        w.in_flight -= 1;
        assert_eq!(w.replied(), 1, "one reply: the next request at once");
        for _ in 0..40 {
            w.in_flight -= 1;
            w.replied();
        }
        assert_eq!(w.in_flight, 32);
        assert_eq!(round_trips(1), 1);
        assert_eq!(round_trips(4), 2);
        // 200 replies (a 20,000-entry folder): no more round trips than the
        // batches took, without the server idling between them.
        assert!(round_trips(200) <= 8, "{}", round_trips(200));
    }
}
