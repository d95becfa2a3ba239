//! Getting the spool's bytes onto the remote temp file: what to send and
//! over which handles (`plan`: opening the temp, and its twin on a second
//! connection for a large upload), the send itself, how a write-behind
//! round takes in what the writer adds while it sends (`grow`), and how a
//! close() overlaps a round still in flight (`Flight`) rather than wait for
//! its replies.

use std::os::unix::fs::FileExt;
use std::sync::MutexGuard;

use std::time::Instant;

use super::{Flight, RemoteTemp, Upload, UploadState, CHAIN_MIN};
use crate::fs::janitor;
use crate::fs::temp_name::TempNaming;
use crate::remote::{Handle, RResult, Remote, RemoteError, Twin};

/// Size above which an upload opens its temp file on a second connection
/// too (see `Upload::open_twin`): the file's for a write-behind round, the
/// bytes still to send for a close().
const STRIPE_MIN: u64 = 4 << 20;

/// One send: bytes [from, size) of the spool to the temp at `path`, striped
/// over `handles` (the temp's handle first).
pub(super) struct Plan {
    path: Vec<u8>,
    handle: Handle,
    handles: Vec<Handle>,
    from: u64,
    size: u64,
    generation: u64,
    /// Starts where a background flight ends, which must land before this
    /// send counts as done.
    overlaps: bool,
    /// Stops short of the spool's end (a slice): plan again after it.
    partial: bool,
}

impl Upload {
    /// Sends every byte not yet on the remote temp file (opening it when
    /// needed) and returns the size and generation that were sent. Called
    /// with the publish lock held.
    pub(super) fn sync_temp(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
    ) -> RResult<(Vec<u8>, Handle, u64, u64)> {
        // A background round that fails while this one overlaps it takes the
        // temp with it (as does a truncate from another handle); the next
        // pass starts over on a fresh one.
        let mut passes = 0;
        loop {
            passes += 1;
            let plan = self.plan(remote, naming, final_path, false)?;
            let sent = self.send(remote, &plan, &mut |end| end, &mut || ());
            if plan.overlaps {
                drop(self.wait_landed());
            }
            if let Err(e) = sent {
                self.fail_temp_of(remote, &plan.handle);
                return Err(e);
            }
            let mut st = self.state();
            if st.temp.as_ref().is_some_and(|t| t.handle == plan.handle) {
                // Sent [from, size): current unless rewritten meanwhile
                // (from low_water on).
                st.clean_upto = plan.size.min(st.low_water);
                if plan.partial {
                    passes -= 1;
                    continue;
                }
                return Ok((plan.path, plan.handle, plan.size, plan.generation));
            }
            // The temp was given up while we sent (a truncate, or the
            // overlapped background round failed).
            if passes >= 3 {
                return Err(RemoteError::Other(
                    "the upload's temp file was replaced while it was being written".into(),
                ));
            }
        }
    }

    /// Waits until no background round is in flight.
    pub(super) fn wait_landed(&self) -> MutexGuard<'_, UploadState> {
        let mut st = self.state();
        while st.flight.is_some() {
            st = self
                .landed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st
    }

    /// What to send next, and on which handles: opens the temp (and its
    /// twin for a large upload) when needed. With `background`, the plan is
    /// recorded as the upload's `Flight`. Otherwise a flight in progress on
    /// the same temp is overlapped (the plan starts where it ends) when
    /// nothing it covers was rewritten since; any other flight is waited for.
    pub(super) fn plan(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
        background: bool,
    ) -> RResult<Plan> {
        let overlap_from = {
            let st = self.wait_foreign_flight(remote);
            st.flight.as_ref().map(|f| f.end)
        };
        if overlap_from.is_none() {
            self.discard_abandoned(remote);
        }
        let stale = {
            let mut st = self.state();
            if let Some(t) = st.temp.as_mut() {
                let before = t.twins.len();
                // Their connection died; what they wrote was acknowledged
                // (or the write failed and the temp started over).
                t.twins.retain(|h| remote.handle_alive(h));
                if t.twins.len() < before {
                    t.twin_tried = false;
                }
            }
            overlap_from.is_none()
                && st
                    .temp
                    .as_ref()
                    .is_some_and(|t| !remote.handle_alive(&t.handle))
        };
        if stale {
            // The connection that held the temp file died: start over on a
            // new temp (the old one is removed once the link is back).
            let mut st = self.state();
            if let Some(t) = st.temp.take() {
                st.abandoned.push(t);
            }
            st.clean_upto = 0;
        }
        if overlap_from.is_none() {
            // A new temp is created before the snapshot below: a fast
            // writer (`cp`) has spooled the whole file by the time the
            // OPEN returns, so the size that decides on striping is the
            // file's, not what the first 1 MiB round saw.
            let mode = {
                let st = self.state();
                st.temp.is_none().then_some(st.mode)
            };
            if let Some(mode) = mode {
                let t = self.create_temp(remote, naming, final_path, mode)?;
                let mut st = self.state();
                st.remote_high = 0;
                st.temp = Some(t);
            }
        }
        let (temp, from, size, generation, mode) = {
            let mut st = self.state();
            if overlap_from.is_none() {
                // low_water stays as the flight set it when overlapping: it
                // must cover every rewrite since the flight's snapshot.
                st.low_water = u64::MAX;
            }
            if st.temp.is_none() {
                st.remote_high = 0;
            }
            st.remote_high = st.remote_high.max(st.size);
            (
                st.temp.clone(),
                overlap_from.unwrap_or(st.clean_upto).min(st.size),
                st.size,
                st.generation,
                st.mode,
            )
        };
        let (path, handle, twin, from) = match temp {
            Some(t) => {
                // A background round opens the twin once the file is large,
                // whatever the round's own size: rounds that keep up with
                // the writer stay small and would never stripe. A close()
                // opens it only for a large tail (there the OPEN delays
                // the close by a round trip).
                let large = if background {
                    size >= STRIPE_MIN
                } else {
                    size - from >= STRIPE_MIN
                };
                let twin = self.twin_for(remote, &t, large);
                (t.path, t.handle, twin, from)
            }
            None => {
                // The temp made above was given up meanwhile (a truncate
                // from another handle): a new one.
                let t = self.create_temp(remote, naming, final_path, mode)?;
                self.state().temp = Some(t.clone());
                // No spare was ready: a large first round stripes all the
                // same, as it would have on a spare.
                let twin = self.twin_for(remote, &t, size >= STRIPE_MIN);
                (t.path, t.handle, twin, 0)
            }
        };
        let full_size = size;
        let mut handles = vec![handle.clone()];
        // A close() with a large tail and the second connection still
        // opening sends one slice and asks again, so the rest stripes
        // once that connection is up (a background round asks each round).
        let size = match twin {
            Twin::Opened(h) => {
                handles.extend(h);
                size
            }
            Twin::Later if !background && size - from > STRIPE_MIN => from + STRIPE_MIN,
            Twin::Later | Twin::NotWorth => size,
        };
        let partial = size < full_size;
        if background && size > from {
            self.state().flight = Some(Flight {
                handle: handle.clone(),
                start: from,
                end: size,
            });
        }
        Ok(Plan {
            path,
            handle,
            handles,
            from,
            size,
            generation,
            overlaps: overlap_from.is_some(),
            partial,
        })
    }

    /// Creates a new remote temp file for `final_path`.
    fn create_temp(
        &self,
        remote: &dyn Remote,
        naming: &TempNaming,
        final_path: &[u8],
        mode: u32,
    ) -> RResult<RemoteTemp> {
        let p = naming.temp_path(final_path);
        let (h, twin) = match remote.create_new_striped(&p, Some(mode & 0o7777)) {
            Ok(created) => created,
            Err(e) => {
                if matches!(e, RemoteError::Lost(_)) {
                    // The OPEN left and the link died before its reply: the
                    // server may have created the file.
                    janitor::remove_temp(remote, &p);
                }
                return Err(e);
            }
        };
        // A connection is up again: temps of interrupted attempts go now
        // rather than at the next mount.
        janitor::remove_deferred(remote);
        let mut t = RemoteTemp::new(p, h);
        // Opened beside the create: a file that turns out large stripes
        // from its first byte. `Later` leaves it to `open_twin`.
        if let Twin::Opened(twins) = &twin {
            log::debug!(
                "{}: striping over {} more connections or channels (opened beside its create)",
                String::from_utf8_lossy(&t.path),
                twins.len()
            );
        }
        t.settle_twin(&twin);
        Ok(t)
    }

    /// The state once no flight is in progress that a new send could not
    /// overlap: one on another temp (a truncate retired it), one whose
    /// connection died, or one covering bytes rewritten since it started.
    fn wait_foreign_flight(&self, remote: &dyn Remote) -> MutexGuard<'_, UploadState> {
        let st = self.state();
        let overlappable = st.flight.as_ref().is_some_and(|f| {
            st.abandoned.is_empty()
                && st.clean_upto == f.start
                && st.low_water >= f.end
                && f.end <= st.size
                && remote.handle_alive(&f.handle)
                && st.temp.as_ref().is_some_and(|t| t.handle == f.handle)
        });
        if overlappable || st.flight.is_none() {
            return st;
        }
        drop(st);
        self.wait_landed()
    }

    /// Sends the plan's bytes from the spool, and those `more` adds (see
    /// `Remote::write_from`); `queued` runs once all its WRITEs are handed
    /// to their connections.
    pub(super) fn send(
        &self,
        remote: &dyn Remote,
        plan: &Plan,
        more: &mut dyn FnMut(u64) -> u64,
        queued: &mut dyn FnMut(),
    ) -> RResult<()> {
        if plan.size <= plan.from {
            queued();
            return Ok(());
        }
        let spool = &self.spool;
        remote.write_from(
            &plan.handles,
            plan.from,
            plan.size - plan.from,
            &mut |at, buf| spool.read_exact_at(buf, at),
            more,
            queued,
        )
    }

    /// Sends a background round planned by `plan`, taking in what the
    /// writer adds meanwhile (`grow`), and lands it. `queued` runs once all
    /// its WRITEs are handed to their connections.
    pub(super) fn send_round(
        &self,
        remote: &dyn Remote,
        mut plan: Plan,
        queued: &mut dyn FnMut(),
    ) -> RResult<()> {
        let mut end = plan.size;
        let sent = self.send(
            remote,
            &plan,
            &mut |at| {
                end = self.grow(&plan.handle, at);
                end
            },
            queued,
        );
        plan.size = end;
        self.land(remote, &plan, sent)
    }

    /// A background round has handed every byte up to `end` to its
    /// connections: where it goes on to. While the writer is still writing
    /// (`CHAIN_MIN` more bytes spooled, waited for up to `GROW_WAIT`) the
    /// round takes them in without first waiting for its replies, so the
    /// upload leaves at the writer's pace instead of in bursts a round trip
    /// apart. It stops for a caller wanting the publish lock (close, fsync),
    /// a rewrite of bytes already sent, a truncate, a failure, or a twin
    /// the next round should ask for (the file became large).
    fn grow(&self, handle: &Handle, end: u64) -> u64 {
        let until = Instant::now() + self.grow_wait;
        let mut st = self.state();
        loop {
            let large = st.size >= STRIPE_MIN;
            let twin_due = st.temp.as_ref().is_some_and(|t| t.twin_due(large));
            let goes_on = st.serial_waiters == 0
                && !(st.unlinked || st.discarded || st.released || st.stream_failed)
                && st.poisoned.is_none()
                && st.low_water >= end
                && !twin_due
                && st
                    .flight
                    .as_ref()
                    .is_some_and(|f| &f.handle == handle && f.end == end)
                && st.temp.as_ref().is_some_and(|t| &t.handle == handle);
            if !goes_on {
                break;
            }
            if st.size >= end + CHAIN_MIN {
                let to = st.size;
                if let Some(f) = st.flight.as_mut() {
                    f.end = to;
                }
                st.remote_high = st.remote_high.max(to);
                // A new snapshot: [end, to) is read from the spool from now.
                st.low_water = u64::MAX;
                st.growing = None;
                return to;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st.growing = Some(end);
            st = self
                .grown
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.growing = None;
        end
    }

    /// A background round's end: records what is now on the server (or
    /// drops the temp on failure) and wakes a close() waiting for it.
    pub(super) fn land(&self, remote: &dyn Remote, plan: &Plan, sent: RResult<()>) -> RResult<()> {
        if sent.is_err() {
            self.fail_temp_of(remote, &plan.handle);
        }
        let mut st = self.state();
        st.flight = None;
        if sent.is_ok() && st.temp.as_ref().is_some_and(|t| t.handle == plan.handle) {
            // Current unless rewritten meanwhile (from low_water on); a
            // close() overlapping this round moves it on past `end`.
            st.clean_upto = plan.size.min(st.low_water);
        }
        drop(st);
        self.landed.notify_all();
        sent
    }

    /// The temp upload failed: drop it so the next attempt starts over.
    pub(super) fn fail_temp(&self, remote: &dyn Remote) {
        let temp = {
            let mut st = self.state();
            st.clean_upto = 0;
            st.temp.take()
        };
        if let Some(t) = temp {
            t.discard(remote);
        }
    }

    /// `fail_temp` when `handle` is still the temp's (a send over a temp
    /// already given up must not take its successor with it).
    fn fail_temp_of(&self, remote: &dyn Remote, handle: &Handle) {
        let temp = {
            let mut st = self.state();
            if !st.temp.as_ref().is_some_and(|t| &t.handle == handle) {
                return;
            }
            st.clean_upto = 0;
            st.temp.take()
        };
        if let Some(t) = temp {
            t.discard(remote);
        }
    }

    pub(super) fn discard_abandoned(&self, remote: &dyn Remote) {
        let old = std::mem::take(&mut self.state().abandoned);
        for t in old {
            t.discard(remote);
        }
    }

    /// The handles besides `t`'s own to send over: its twins, opened now
    /// when due for a `large` upload, or none.
    fn twin_for(&self, remote: &dyn Remote, t: &RemoteTemp, large: bool) -> Twin {
        if !t.twins.is_empty() {
            Twin::Opened(t.twins.clone())
        } else if t.twin_due(large) {
            self.open_twin(remote, t)
        } else {
            Twin::NotWorth
        }
    }

    /// Opens the temp file on the other connections (or channels) for a
    /// large upload (each SSH channel moves at most its window per round
    /// trip). Without them, the upload goes on over the first handle alone.
    fn open_twin(&self, remote: &dyn Remote, temp: &RemoteTemp) -> Twin {
        // Settled by a twin or a refusal; `Later` (no second connection up
        // yet) leaves it to the next round or slice to ask again.
        let outcome = match remote.open_twin(&temp.path, &temp.handle) {
            Ok(Twin::Opened(h)) => {
                log::debug!(
                    "{}: striping over {} more connections or channels",
                    String::from_utf8_lossy(&temp.path),
                    h.len()
                );
                Twin::Opened(h)
            }
            Ok(other) => other,
            Err(e) => {
                log::debug!(
                    "second handle on {} not opened: {e}",
                    String::from_utf8_lossy(&temp.path)
                );
                Twin::NotWorth
            }
        };
        let mut st = self.state();
        match st.temp.as_mut() {
            Some(t) if t.handle == temp.handle => {
                t.settle_twin(&outcome);
                outcome
            }
            _ => {
                drop(st);
                if let Twin::Opened(h) = outcome {
                    for h in &h {
                        remote.close_quietly(h);
                    }
                }
                Twin::NotWorth
            }
        }
    }
}
