//! Listing a folder: OPENDIR, READDIRs pipelined deeper as the folder
//! proves big, CLOSE without waiting.

use crate::remote::{DirEntry, RResult};
use crate::sftp::{status, Request, Response};
use crate::ssh::Connection;

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
pub(super) fn read_dir_on(conn: &Connection, path: &[u8]) -> RResult<Vec<DirEntry>> {
    let handle = match conn.call(&Request::Opendir {
        path: path.to_vec(),
    })? {
        Response::Handle(h) => h,
        Response::Status { code, message } => return Err(status_err(code, message)),
        other => return Err(unexpected("OPENDIR", &other)),
    };
    let mut entries = Vec::new();
    let mut result = Ok(());
    let mut ahead = READDIR_FIRST;
    'outer: loop {
        // The server answers READDIRs on one handle in order, each with the
        // next batch of names; once one says EOF the rest say EOF too.
        let reqs: Vec<Request> = (0..ahead)
            .map(|_| Request::Readdir {
                handle: handle.clone(),
            })
            .collect();
        ahead = next_readdir_batch(ahead);
        for r in conn.call_many(&reqs) {
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
                }
                Ok(Response::Status { code, .. }) if code == status::EOF => break 'outer,
                Ok(Response::Status { code, message }) => {
                    result = Err(status_err(code, message));
                    break 'outer;
                }
                Ok(other) => {
                    result = Err(unexpected("READDIR", &other));
                    break 'outer;
                }
                Err(e) => {
                    result = Err(e.into());
                    break 'outer;
                }
            }
        }
    }
    // Nothing depends on the CLOSE reply: don't spend a round trip on it.
    conn.submit(&Request::Close { handle }, Box::new(|_| {}));
    result.map(|()| entries)
}
