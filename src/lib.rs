//! coupafs: a FUSE filesystem that mounts a Coupa SFTP exchange.
//!
//! Layers, each depending only on those after it:
//! `fuse` (fuser adapter) -> `fs` (semantics) -> `cache`, `inode`, `upload`,
//! `spare` (pre-opened upload temp files), `readahead`
//! -> `remote` (narrow trait + SFTP implementation) -> `conn` (SSH
//! transport, I/O thread, reconnect) -> `sftp` (pure wire codec).
//! `cli` parses sshfs-style arguments; `error` maps failures to errno.
//! `check` runs `coupafs check` (a monitoring-style health check) over
//! `remote`; `coupa` holds Coupa's folder tree and file rules (pure).
//! `sshconfig` reads the ssh client config file (`~/.ssh/config`, `-F`);
//! `logging` sends log records to stderr or, for a daemon, to syslog.

pub mod cache;
pub mod caller;
pub mod check;
pub mod cli;
pub mod conn;
pub mod coupa;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod inode;
pub mod logging;
pub mod mock;
pub mod readahead;
pub mod remote;
pub mod sftp;
pub mod spare;
pub mod sshconfig;
pub mod sshcrypto;
pub mod upload;
