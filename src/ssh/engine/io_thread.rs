//! The I/O thread of one SSH session: it alone touches the transport, for
//! every SFTP channel ("lane") the session carries.
//!
//! One thread per session, not per channel: libssh2 reads whatever packet
//! arrives next, for any channel, while serving one channel's read (a
//! thread waiting on another channel would sleep through its data), and in
//! non-blocking mode a call that returned EAGAIN must be repeated before
//! the session sends anything else. A single thread visiting every lane in
//! turn, each lane's write retried with the same bytes, keeps both rules.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, CloseReason, Completion, ConnError, Outgoing, Pipe, Shared};
use crate::sftp::{self, Request};

/// Bulk bytes handed to the pipe ahead of small requests at most.
const BULK_BUDGET: usize = 1 << 20;
/// Bytes offered to the pipe's `write` per call.
const WRITE_CHUNK: usize = 256 * 1024;

/// One SFTP channel of the session: its pipe, its queue (shared with its
/// `Connection`), and its request table.
pub(super) struct Lane<P: Pipe> {
    pipe: P,
    shared: Arc<Shared>,
    framer: sftp::Framer,
    out: Vec<u8>,
    out_pos: usize,
    /// The request table: every request written (or being written) and not
    /// yet answered, by request id.
    pending: HashMap<u32, Completion>,
    /// Last time a reply arrived, or the outstanding set became non-empty.
    last_progress: Instant,
    /// Last time anything was sent or received (for keepalive probes).
    last_activity: Instant,
    last_write_progressed: bool,
    /// Bulk requests were left in the queue by the budget.
    bulk_waiting: bool,
    /// The last write stopped because the peer's window was closed (not
    /// because the socket was full).
    window_closed: bool,
    /// Its owner is done with it and its last reply came: it is skipped
    /// (its pipe stays until the thread ends, with the session).
    retired: bool,
}

impl<P: Pipe> Lane<P> {
    pub(super) fn new(pipe: P, shared: Arc<Shared>, framer: sftp::Framer) -> Self {
        Lane {
            pipe,
            shared,
            framer,
            out: Vec::new(),
            out_pos: 0,
            pending: HashMap::new(),
            last_progress: Instant::now(),
            last_activity: Instant::now(),
            last_write_progressed: false,
            bulk_waiting: false,
            window_closed: false,
            retired: false,
        }
    }

    /// Fails everything queued or outstanding with `reason` and marks the
    /// lane dead, so every completion runs exactly once.
    fn finish(&mut self, reason: &CloseReason) {
        self.retired = true;
        // Mark dead under the queue lock so no submit slips in after the
        // final drain.
        let queued = {
            let mut q = lock(&self.shared.queues);
            if q.closed.is_none() {
                q.closed = Some(reason.clone());
            }
            self.shared.dead.store(true, Ordering::Release);
            let mut items: Vec<Outgoing> = q.small.drain(..).collect();
            items.extend(q.bulk.drain(..));
            items
        };
        let text = reason.to_string();
        // The count drops before the callers hear, as on the reply path:
        // a caller woken by its completion must never see its own request
        // still counted.
        self.shared.in_flight.store(0, Ordering::Relaxed);
        for item in queued {
            (item.done)(Err(ConnError::NotSent(text.clone())));
        }
        for (_, done) in self.pending.drain() {
            done(Err(ConnError::Disconnected(text.clone())));
        }
    }

    /// Moves queued requests into the output buffer. Returns the close reason
    /// when the lane was closed by its owner.
    fn take_queued(&mut self) -> Option<CloseReason> {
        let mut q = lock(&self.shared.queues);
        if let Some(reason) = q.closed.clone() {
            return Some(reason);
        }
        let mut moved = Vec::new();
        while let Some(item) = q.small.pop_front() {
            moved.push(item);
        }
        while self.out.len() - self.out_pos < BULK_BUDGET {
            match q.bulk.pop_front() {
                Some(item) => {
                    self.out.extend_from_slice(&item.bytes);
                    if self.pending.is_empty() {
                        self.last_progress = Instant::now();
                    }
                    self.pending.insert(item.id, item.done);
                }
                None => break,
            }
        }
        self.bulk_waiting = !q.bulk.is_empty();
        drop(q);
        for item in moved {
            // Small requests go right after what the pipe already holds.
            self.out.extend_from_slice(&item.bytes);
            if self.pending.is_empty() {
                self.last_progress = Instant::now();
            }
            self.pending.insert(item.id, item.done);
        }
        None
    }

    /// libssh2 took something for this lane off the socket during another
    /// lane's call (a reply, or the adjust its write waits for): poll()
    /// would not wake for it.
    fn progress_unseen(&self) -> bool {
        !self.retired && (self.pipe.buffered() || (self.window_closed && self.pipe.write_room()))
    }

    /// Writes as much of the output buffer as the pipe takes. Returns true
    /// when everything was written.
    fn write_out(&mut self) -> Result<bool, CloseReason> {
        self.last_write_progressed = false;
        self.window_closed = false;
        while self.out_pos < self.out.len() {
            let end = (self.out_pos + WRITE_CHUNK).min(self.out.len());
            // After EAGAIN libssh2 must be offered the same bytes again: the
            // slice always starts at out_pos, which only moves on success.
            let stalled = match self.pipe.write(&self.out[self.out_pos..end]) {
                Ok(0) => true,
                Ok(n) => {
                    self.out_pos += n;
                    self.last_activity = Instant::now();
                    self.last_write_progressed = true;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) => return Err(CloseReason::LinkDead(format!("transport write: {e}"))),
            };
            if stalled {
                // A full socket, or a closed window (libssh2 says 0 or
                // EAGAIN for it too): only the latter waits for an adjust.
                self.window_closed = !self.pipe.write_room();
                break;
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            Ok(true)
        } else {
            if self.out_pos > (4 << 20) {
                self.out.drain(..self.out_pos);
                self.out_pos = 0;
            }
            Ok(false)
        }
    }

    /// Reads until EAGAIN (libssh2 sends window adjusts only from read) and
    /// completes every whole reply.
    fn read_in(&mut self, buf: &mut [u8]) -> Result<(), CloseReason> {
        let mut closed = false;
        loop {
            match self.pipe.read(buf) {
                Ok(0) => {
                    closed = self.pipe.eof();
                    break;
                }
                Ok(n) => {
                    self.framer.push(&buf[..n]);
                    self.last_progress = Instant::now();
                    self.last_activity = self.last_progress;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(CloseReason::LinkDead(format!("transport read: {e}"))),
            }
        }
        loop {
            // A packet whose length prefix arrived but whose body did not
            // yet stays in the framer (Ok(None)) until the rest comes.
            let packet = match self.framer.next_packet() {
                Ok(Some(p)) => p,
                // Replies that arrived whole before the end of the stream
                // were answered above: their callers get them, not an error.
                Ok(None) if closed => {
                    return Err(CloseReason::LinkDead(
                        "server closed the SFTP channel".into(),
                    ))
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(CloseReason::LinkDead(e.to_string())),
            };
            let (id, response) =
                sftp::decode_response(&packet).map_err(|e| CloseReason::LinkDead(e.to_string()))?;
            match self.pending.remove(&id) {
                Some(done) => {
                    self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                    done(Ok(response));
                }
                // Ids are never reused on a channel and every request stays
                // in the table until answered, so a reply for an id not in
                // it means the server and we disagree about the stream:
                // later replies cannot be trusted to be matched right
                // either. The link is failed (outstanding callers see
                // Disconnected, idempotent ones retry on a fresh connection)
                // rather than risk completing a caller with another's reply.
                None => {
                    return Err(CloseReason::LinkDead(format!(
                        "reply for unknown request id {id}"
                    )))
                }
            }
        }
    }

    /// An SFTP round trip on an idle link: if it goes unanswered for
    /// `dead_after` the connection is declared dead (ServerAliveInterval).
    fn send_probe(&mut self) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        sftp::encode_request(
            id,
            &Request::Realpath {
                path: b".".to_vec(),
            },
            &mut self.out,
        );
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        self.pending.insert(id, Box::new(|_| {}));
        self.last_progress = Instant::now();
        self.last_activity = self.last_progress;
    }
}

pub(super) struct IoThread<P: Pipe> {
    /// The session's channels; the first one's pipe owns the session.
    pub(super) lanes: Vec<Lane<P>>,
    pub(super) dead_after: Duration,
    pub(super) keepalive: Duration,
    pub(super) idle_poll: Duration,
}

impl<P: Pipe> IoThread<P> {
    pub(super) fn run(mut self) {
        let reason = self.serve();
        // A clean end is no news for the admin: only a lost link warns
        // (the mount logs its one `unmounted` line itself).
        if !reason.is_clean() {
            log::warn!("SFTP connection lost: {reason}");
        } else {
            log::debug!("SFTP connection closed: {reason}");
        }
        for lane in self.lanes.iter_mut().filter(|l| !l.retired) {
            lane.finish(&reason);
        }
        // Channels before the session: the first lane's pipe ends it.
        for lane in self.lanes.iter_mut().rev() {
            lane.pipe.shutdown();
        }
    }

    /// Moves requests to the pipes and replies to their callers until the
    /// session ends; returns why.
    fn serve(&mut self) -> CloseReason {
        match self.serve_until_error() {
            Ok(never) => match never {},
            Err(reason) => reason,
        }
    }

    fn serve_until_error(&mut self) -> Result<std::convert::Infallible, CloseReason> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let mut busy = false;
            let now = Instant::now();
            for (i, lane) in self.lanes.iter_mut().enumerate() {
                if lane.retired {
                    continue;
                }
                lane.shared.drain_wake();
                if let Some(reason) = lane.take_queued() {
                    // A lane its owner is done with still delivers the
                    // replies already asked for (a fire-and-forget CLOSE
                    // must reach the server); any other reason ends the
                    // whole session, whose transport every lane shares.
                    if reason != CloseReason::Done {
                        return Err(reason);
                    }
                    if lane.pending.is_empty() {
                        lane.finish(&reason);
                        continue;
                    }
                }
                let wrote_all = lane.write_out()?;
                lane.read_in(&mut buf)?;
                if !lane.pending.is_empty()
                    && now.duration_since(lane.last_progress) > self.dead_after
                {
                    return Err(CloseReason::LinkDead(format!(
                        "no reply from server for {} s",
                        self.dead_after.as_secs()
                    )));
                }
                // One lane's probe watches the transport they all share.
                if i == 0
                    && lane.pending.is_empty()
                    && !self.keepalive.is_zero()
                    && now.duration_since(lane.last_activity) >= self.keepalive
                {
                    lane.send_probe();
                    busy = true;
                    continue;
                }
                // More bytes we could hand over right away: don't sleep.
                // (Bulk data waits in the queue while 1 MiB is ahead of it;
                // once that went out, the next 1 MiB must follow without a
                // poll timeout.)
                busy |=
                    (!wrote_all && lane.last_write_progressed) || (wrote_all && lane.bulk_waiting);
            }
            if self.lanes.iter().all(|l| l.retired) {
                return Err(CloseReason::Done);
            }
            // A later lane's read or write may have taken an earlier lane's
            // reply, or the window adjust its write waits for, off the
            // socket into libssh2: poll would sleep through it (up to
            // `idle_poll`), so go round again.
            busy |= self.lanes.iter().any(Lane::progress_unseen);
            self.poll(busy)?;
        }
    }

    /// Sleeps until a pipe can progress or a lane's owner queued something
    /// (or at most `idle_poll`, for the liveness checks).
    fn poll(&mut self, busy: bool) -> Result<(), CloseReason> {
        let live: Vec<&Lane<P>> = self.lanes.iter().filter(|l| !l.retired).collect();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(live.len() * 2);
        for lane in &live {
            let (fd, events) = lane.pipe.poll_target();
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
        let pipes = fds.len();
        for lane in &live {
            fds.push(libc::pollfd {
                fd: lane.shared.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = if busy {
            0
        } else {
            i32::try_from(self.idle_poll.as_millis()).unwrap_or(i32::MAX)
        };
        // SAFETY: fds is a valid, initialised array of fds.len() pollfd for
        // the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(CloseReason::LinkDead(format!("poll: {err}")));
            }
        }
        if fds[..pipes]
            .iter()
            .any(|p| p.revents & (libc::POLLERR | libc::POLLNVAL) != 0)
        {
            return Err(CloseReason::LinkDead("socket error".into()));
        }
        Ok(())
    }
}
