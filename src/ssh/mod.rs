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
//! - `crypto`: faster ChaCha20-Poly1305 primitives linked into libssh2
//!   (feature `openssl-chacha`).
//! - `proxy`: the stream to the server when it is not a plain TCP
//!   connection: ProxyCommand/ProxyJump children over a socketpair, HTTP
//!   CONNECT and SOCKS5 handshakes; AddressFamily filtering.
//! - `known_hosts`: reading known_hosts files (markers, hashed names) and
//!   appending one line under a lock.
//!
//! Dependencies: `cli` and `remote` use this layer; it uses only `sftp`.

#[cfg(feature = "openssl-chacha")]
pub mod crypto;
mod engine;
mod known_hosts;
mod params;
mod pool;
mod proxy;
mod session;

pub(crate) use engine::ConnError;
pub use engine::{set_sftp_debug, CloseReason, Connection};
pub use params::{
    default_identity_files, AddressFamily, Algorithms, AuthPolicy, ConnectError, ConnectParams,
    HostKeyPolicy, ProxyServer, Reach, Route, Secret, GLOBAL_KNOWN_HOSTS,
};
pub use pool::{Pool, PoolStatus};
pub(crate) use proxy::{expand_tokens, parse_jump, parse_proxy_url};
pub use session::{supported_methods, ConnInfo, HostKeyStatus, SupportedMethods};

#[cfg(not(feature = "openssl-chacha"))]
pub mod crypto {
    //! The ChaCha20-Poly1305 override is not built (feature
    //! `openssl-chacha` off): libssh2's portable code runs. These stand-ins
    //! keep callers (main, tests) the same.

    /// Whether this build overrides libssh2's ChaCha20-Poly1305 primitives.
    pub const ENABLED: bool = false;

    /// Nothing to link.
    pub fn link() -> usize {
        0
    }

    /// Always zero: there is no override to call.
    pub fn calls() -> u64 {
        0
    }

    /// Nothing to test: libssh2's own code runs.
    pub fn self_test() -> Result<(), String> {
        Ok(())
    }
}

use crate::sync::lock;
