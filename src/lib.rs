//! coupafs: a FUSE filesystem that mounts a Coupa SFTP exchange.
//!
//! The folders are the layers; each depends only on those after it (see
//! `doc/ARCHITECTURE.md`):
//! `fuse` (the fuser adapter) -> `fs` (filesystem semantics: metadata,
//! open files, uploads, cache, read-ahead) -> `remote` (the trait the
//! filesystem needs, in its own words, and its SFTP implementation) ->
//! `ssh` (transport: session, request engine, connection pool, crypto) ->
//! `sftp` (pure wire codec).
//! Beside them: `cli` (command line, ssh config), `mount` (the mount's
//! life: daemon, credentials, status, shutdown), `check` (`coupafs check`),
//! `coupa` (Coupa's folder tree and file rules), `error` (the one errno
//! map), `logging`, `sync` (the poison-tolerant `lock`).

pub mod check;
pub mod cli;
pub mod coupa;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod mount;
pub mod remote;
pub mod sftp;
pub mod ssh;
mod sync;
