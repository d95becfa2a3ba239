//! The connection pool: up to `max_conns` connections to one server,
//! opened lazily, spread by load, re-opened with backoff after a loss, and
//! a bound on how long a caller waits for an unreachable server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::engine::{CloseReason, ConnError, Connection};
use super::lock;
use super::params::{ConnectError, ConnectParams};

/// Link state for logs and the status file.
#[derive(Clone, Debug, Default)]
pub struct PoolStatus {
    pub connected: usize,
    pub reconnecting: bool,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

struct SlotState {
    conn: Option<Arc<Connection>>,
    /// More SFTP channels on `conn`'s session (striping), dying with it.
    extra: Vec<Arc<Connection>>,
    connecting: bool,
    next_attempt: Instant,
    backoff: Duration,
    last_error: Option<String>,
    /// The slot had a connection that died and none replaced it yet.
    lost: bool,
}

struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

/// Up to `max_conns` connections, opened lazily, re-opened with backoff.
/// Coupa allows 5 connections per account, shared with other tools, so
/// concurrency comes from pipelining on few connections, not more of them.
pub struct Pool {
    params: ConnectParams,
    slots: Vec<Slot>,
    reconnects: AtomicU64,
    /// Uploads stripe over the pool's connections (the link's round trip
    /// warrants it): connections after the first open `STRIPE_LANES`
    /// channels each.
    striping: AtomicBool,
}

/// SFTP channels a connection after the first opens once uploads stripe.
/// OpenSSH's sshd gives each session channel a 2 MiB window, and a 4 MiB
/// file plus its WRITE headers just overflows two: a third window, without
/// a third login (Coupa caps logins per account), moves it in one round
/// trip.
const STRIPE_LANES: usize = 2;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Reconnect attempts are made only for callers waiting for a connection
/// (an idle mount makes none), so the cap is short: a caller waits at most
/// this long past the server's return, well inside its `timeout`.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A second connection is opened once the first has this many requests
/// outstanding.
const SPREAD_THRESHOLD: usize = 16;

/// One malloc arena for the whole process. glibc gives threads their own
/// arenas (up to 8 per core), and every reconnect starts a new I/O thread
/// that may land in another one; each arena keeps the peak of what was
/// allocated in it, so the resident size ratcheted up with reconnects under
/// load. coupafs threads mostly wait on the network, so they do not contend
/// for one arena. Must run before the process has more than 8 arenas
/// (glibc fixes the limit then): the pool is made before the mount starts
/// its threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator tuning; it is thread-safe.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        });
    }
}

impl Pool {
    pub fn new(params: ConnectParams, max_conns: usize) -> Arc<Pool> {
        limit_malloc_arenas();
        let slots = (0..max_conns.clamp(1, 4))
            .map(|_| Slot {
                state: Mutex::new(SlotState {
                    conn: None,
                    extra: Vec::new(),
                    connecting: false,
                    next_attempt: Instant::now(),
                    backoff: BACKOFF_MIN,
                    last_error: None,
                    lost: false,
                }),
                changed: Condvar::new(),
            })
            .collect();
        Arc::new(Pool {
            params,
            slots,
            reconnects: AtomicU64::new(0),
            striping: AtomicBool::new(false),
        })
    }

    pub fn params(&self) -> &ConnectParams {
        &self.params
    }

    /// Opens the first connection now; its error is the mount's error.
    pub fn connect_first(&self) -> Result<Arc<Connection>, ConnectError> {
        let conn = Arc::new(Connection::connect(&self.params)?);
        let mut st = lock(&self.slots[0].state);
        st.conn = Some(conn.clone());
        Ok(conn)
    }

    /// `delay_connect`: opens the first connection on a thread of its own,
    /// retrying with the usual backoff until it is up (or the pool is
    /// dropped), so the link comes up by itself when the server appears
    /// even if no operation asks for it. `on_up` runs once with it.
    pub fn connect_in_background_until_up(
        self: &Arc<Self>,
        on_up: impl FnOnce(&Connection) + Send + 'static,
    ) {
        let weak = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("sftp-connect".into())
            .spawn(move || loop {
                let Some(pool) = weak.upgrade() else {
                    return;
                };
                let deadline = Instant::now() + pool.params.connect_timeout;
                if let Ok(conn) = pool.ensure(0, deadline) {
                    on_up(&conn);
                    return;
                }
            });
    }

    /// A live connection: the least loaded one, opening or re-opening
    /// connections as needed, waiting at most until `deadline`.
    pub(crate) fn get(self: &Arc<Self>, deadline: Instant) -> Result<Arc<Connection>, ConnError> {
        let mut best: Option<Arc<Connection>> = None;
        let mut idle_slot = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lock(&slot.state);
            match &st.conn {
                Some(c) if !c.is_dead() => {
                    if best.as_ref().is_none_or(|b| c.in_flight() < b.in_flight()) {
                        best = Some(c.clone());
                    }
                }
                _ => {
                    if idle_slot.is_none() && !st.connecting && i > 0 {
                        idle_slot = Some(i);
                    }
                }
            }
        }
        if let Some(conn) = best {
            if conn.in_flight() >= SPREAD_THRESHOLD {
                if let Some(i) = idle_slot {
                    // This caller goes on with the busy one.
                    self.connect_in_background(i);
                }
            }
            return Ok(conn);
        }
        let conn = self.ensure(0, deadline)?;
        if self.striping.load(Ordering::Relaxed) {
            // A striping (WAN) mount whose link came back: its other
            // connections log in now, beside the caller's work, rather than
            // when the next large transfer asks for them and goes on alone
            // for the many round trips a login takes. Only once the first is
            // up, so a server that is still away gets one caller's attempts,
            // not one per slot.
            self.open_all();
        }
        Ok(conn)
    }

    /// How many connections the pool may open (`max_conns`).
    pub(crate) fn size(&self) -> usize {
        self.slots.len()
    }

    /// Opens, in the background, every connection of the pool not up or
    /// being opened yet (striping uses them all).
    pub(crate) fn open_all(self: &Arc<Self>) {
        self.striping.store(true, Ordering::Relaxed);
        for (i, slot) in self.slots.iter().enumerate() {
            let free = {
                let st = lock(&slot.state);
                !st.connecting && st.conn.as_ref().is_none_or(|c| c.is_dead())
            };
            if free {
                self.connect_in_background(i);
            }
        }
    }

    /// A live connection other than the one of `avoid` (a generation).
    /// When there is none but a slot is free, one is opened in the
    /// background (for next time) and None is returned at once: the caller
    /// goes on over the connection it has. None also when `max_conns` is 1.
    pub(crate) fn get_other(self: &Arc<Self>, avoid: u64) -> Option<Arc<Connection>> {
        let mut free = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lock(&slot.state);
            match &st.conn {
                Some(c) if !c.is_dead() && c.generation != avoid => return Some(c.clone()),
                Some(c) if !c.is_dead() => {}
                _ => {
                    if free.is_none() && !st.connecting {
                        free = Some(i);
                    }
                }
            }
        }
        if let Some(i) = free {
            self.connect_in_background(i);
        }
        None
    }

    /// Every live connection (or channel) other than the one of `avoid` (a
    /// generation), opening one more in the background (for next time) when
    /// none is up and a slot is free.
    pub(crate) fn get_others(self: &Arc<Self>, avoid: u64) -> Vec<Arc<Connection>> {
        self.striping.store(true, Ordering::Relaxed);
        let mut others = Vec::new();
        let mut free = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lock(&slot.state);
            match &st.conn {
                Some(c) if !c.is_dead() => {
                    others.extend(
                        std::iter::once(c)
                            .chain(&st.extra)
                            .filter(|c| c.generation != avoid && !c.is_dead())
                            .cloned(),
                    );
                }
                _ => {
                    if free.is_none() && !st.connecting {
                        free = Some(i);
                    }
                }
            }
        }
        if let (true, Some(i)) = (others.is_empty(), free) {
            self.connect_in_background(i);
        }
        others
    }

    /// Opens (or re-opens) the connection of slot `index` on its own
    /// thread, for callers that must not wait for it.
    fn connect_in_background(self: &Arc<Self>, index: usize) {
        let pool = self.clone();
        let _ = std::thread::Builder::new()
            .name("sftp-connect".into())
            .spawn(move || {
                let _ = pool.ensure(index, Instant::now() + pool.params.connect_timeout);
            });
    }

    /// The live connection (or channel) that made `generation`, if it is
    /// still alive.
    pub(crate) fn by_generation(&self, generation: u64) -> Option<Arc<Connection>> {
        self.slots.iter().find_map(|slot| {
            let st = lock(&slot.state);
            st.conn
                .iter()
                .chain(&st.extra)
                .find(|c| c.generation == generation && !c.is_dead())
                .cloned()
        })
    }

    fn ensure(&self, index: usize, deadline: Instant) -> Result<Arc<Connection>, ConnError> {
        let slot = &self.slots[index];
        let mut st = lock(&slot.state);
        loop {
            if let Some(c) = &st.conn {
                if !c.is_dead() {
                    return Ok(c.clone());
                }
                st.conn = None;
                st.extra.clear();
                st.lost = true;
                log::warn!(
                    "connection {} to {}:{} lost; reconnecting",
                    index + 1,
                    self.params.host,
                    self.params.port
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ConnError::Unreachable(
                    st.last_error
                        .clone()
                        .unwrap_or_else(|| "timed out waiting for the connection".into()),
                ));
            }
            if st.connecting || now < st.next_attempt {
                let until = if st.connecting {
                    deadline
                } else {
                    st.next_attempt.min(deadline)
                };
                let (guard, _) = slot
                    .changed
                    .wait_timeout(st, until.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                continue;
            }
            st.connecting = true;
            drop(st);
            let mut params = self.params.clone();
            params.connect_timeout = params.connect_timeout.min(
                deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_secs(1)),
            );
            let lanes = if index > 0 && self.striping.load(Ordering::Relaxed) {
                STRIPE_LANES
            } else {
                1
            };
            let result = Connection::connect_lanes(&params, lanes);
            st = lock(&slot.state);
            st.connecting = false;
            match result {
                Ok(mut lanes) => {
                    let c = lanes.remove(0);
                    if st.lost {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        let (alive, io_threads) = super::engine::live_counts();
                        log::info!(
                            "reconnected to {}:{} (connection {}; {alive} connection objects \
                             and {io_threads} I/O threads alive)",
                            self.params.host,
                            self.params.port,
                            index + 1
                        );
                    }
                    if !lanes.is_empty() {
                        log::debug!(
                            "connection {} carries {} SFTP channels",
                            index + 1,
                            lanes.len() + 1
                        );
                    }
                    let c = Arc::new(c);
                    st.conn = Some(c.clone());
                    st.extra = lanes.into_iter().map(Arc::new).collect();
                    st.lost = false;
                    st.backoff = BACKOFF_MIN;
                    st.last_error = None;
                    slot.changed.notify_all();
                    return Ok(c);
                }
                Err(e) => {
                    log::warn!(
                        "connecting to {}:{} failed (retry in {} ms): {e}",
                        self.params.host,
                        self.params.port,
                        st.backoff.as_millis()
                    );
                    st.last_error = Some(e.to_string());
                    st.next_attempt = Instant::now() + st.backoff;
                    st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
                    slot.changed.notify_all();
                }
            }
        }
    }

    pub fn status(&self) -> PoolStatus {
        let mut status = PoolStatus {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            ..PoolStatus::default()
        };
        for slot in &self.slots {
            let st = lock(&slot.state);
            if st.conn.as_ref().is_some_and(|c| !c.is_dead()) {
                status.connected += 1;
            } else if st.lost || st.connecting {
                status.reconnecting = true;
            }
            if st.last_error.is_some() {
                status.last_error = st.last_error.clone();
            }
        }
        status
    }

    /// Drops every connection (shutdown, and tests of reconnect).
    pub fn close_all(&self, reason: CloseReason) {
        for slot in &self.slots {
            let (conn, extra) = {
                let mut st = lock(&slot.state);
                (st.conn.take(), std::mem::take(&mut st.extra))
            };
            for c in extra.iter().chain(conn.iter()) {
                c.close(reason.clone());
            }
        }
    }
}
