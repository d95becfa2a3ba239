//! SSH transport and the SFTP request engine.
//!
//! ssh2 (libssh2) carries the SSH layer only: TCP, handshake, host-key check,
//! authentication and one `session` channel running the `sftp` subsystem.
//! SFTP itself is spoken by `crate::sftp` over that channel, with one I/O
//! thread per connection that multiplexes every outstanding request by
//! request id.
//!
//! - `params`: what a connection is made from (`ConnectParams`, `Secret`,
//!   `HostKeyPolicy`) and why making one failed (`ConnectError`).
//! - `session`: TCP, handshake, host key, authentication, SFTP INIT; with
//!   `crypto` the only files that name ssh2/libssh2.
//! - `engine`: `Connection`, its I/O thread and request table, over a
//!   byte-pipe seam (`Pipe`) so it is tested without a network.
//! - `pool`: `Pool` of connections, reconnect with backoff, `PoolStatus`.
//! - `crypto`: faster ChaCha20-Poly1305 primitives linked into libssh2.
//!
//! Dependencies: `cli` and `remote` use this layer; it uses only `sftp`.

pub mod crypto;
mod engine;
mod params;
mod pool;
mod session;

use std::sync::{Mutex, MutexGuard};

pub(crate) use engine::ConnError;
pub use engine::{CloseReason, Connection};
pub use params::{default_identity_files, ConnectError, ConnectParams, HostKeyPolicy, Secret};
pub use pool::{Pool, PoolStatus};
pub use session::{ConnInfo, HostKeyStatus};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
