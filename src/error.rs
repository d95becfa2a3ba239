//! Filesystem errors and the one place where remote failures become errno.
//!
//! OpenSSH reports EEXIST, ENOTEMPTY, ENOSPC and EDQUOT all as plain
//! SSH_FX_FAILURE (sftp-server.c `errno_to_portable`), so the mapping
//! depends on the operation that failed.

use std::fmt;

use crate::remote::RemoteError;
use crate::sftp::status;

/// The filesystem operation a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Readdir,
    Open,
    Create,
    Read,
    Write,
    Flush,
    Fsync,
    Unlink,
    Mkdir,
    Rmdir,
    Rename,
    Symlink,
    Readlink,
    Link,
    Statfs,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readdir => "readdir",
            Op::Open => "open",
            Op::Create => "create",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "close",
            Op::Fsync => "fsync",
            Op::Unlink => "unlink",
            Op::Mkdir => "mkdir",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::Symlink => "symlink",
            Op::Readlink => "readlink",
            Op::Link => "link",
            Op::Statfs => "statfs",
        }
    }
}

/// Maps a remote failure of `op` to an errno.
pub fn remote_errno(op: Op, err: &RemoteError) -> i32 {
    match err {
        RemoteError::Status { code, .. } => match *code {
            status::NO_SUCH_FILE => libc::ENOENT,
            status::PERMISSION_DENIED => libc::EACCES,
            status::OP_UNSUPPORTED => libc::ENOTSUP,
            status::EOF => libc::EIO,
            status::NO_CONNECTION | status::CONNECTION_LOST => libc::EIO,
            status::FAILURE => match op {
                Op::Mkdir | Op::Symlink | Op::Link => libc::EEXIST,
                Op::Rmdir => libc::ENOTEMPTY,
                // A failed write or commit on OpenSSH is a full disk or a
                // quota in practice; EIO would hide that from the job.
                Op::Write | Op::Flush | Op::Fsync => libc::ENOSPC,
                Op::Rename => libc::EPERM,
                _ => libc::EIO,
            },
            _ => libc::EIO,
        },
        RemoteError::Lost(_) | RemoteError::StaleHandle | RemoteError::Protocol(_) => libc::EIO,
        RemoteError::Unreachable(_) => libc::EIO,
        RemoteError::Unsupported(_) => libc::ENOTSUP,
        RemoteError::TargetExists => libc::EEXIST,
    }
}

/// A failed filesystem operation: errno plus what and where, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsError {
    pub errno: i32,
    pub op: Op,
    pub path: String,
    pub detail: String,
}

impl FsError {
    pub fn new(op: Op, path: impl Into<String>, errno: i32, detail: impl Into<String>) -> Self {
        Self {
            errno,
            op,
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub fn remote(op: Op, path: impl Into<String>, err: &RemoteError) -> Self {
        Self::new(op, path, remote_errno(op, err), err.to_string())
    }

    pub fn local(op: Op, path: impl Into<String>, err: &std::io::Error) -> Self {
        Self::new(
            op,
            path,
            err.raw_os_error().unwrap_or(libc::EIO),
            format!("local spool: {err}"),
        )
    }

    /// Expected outcomes (a lookup that finds nothing) are not worth a
    /// warning in the journal.
    pub fn is_routine(&self) -> bool {
        matches!(self.errno, libc::ENOENT | libc::EEXIST | libc::ENOTEMPTY)
            && matches!(
                self.op,
                Op::Lookup | Op::Getattr | Op::Readlink | Op::Mkdir | Op::Rmdir | Op::Create
            )
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.op.name(),
            self.path,
            std::io::Error::from_raw_os_error(self.errno),
            self.detail
        )
    }
}

impl std::error::Error for FsError {}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn st(code: u32) -> RemoteError {
        RemoteError::Status {
            code,
            message: String::new(),
        }
    }

    #[test]
    fn status_codes_map_per_operation() {
        assert_eq!(
            remote_errno(Op::Lookup, &st(status::NO_SUCH_FILE)),
            libc::ENOENT
        );
        assert_eq!(
            remote_errno(Op::Open, &st(status::PERMISSION_DENIED)),
            libc::EACCES
        );
        assert_eq!(
            remote_errno(Op::Rmdir, &st(status::FAILURE)),
            libc::ENOTEMPTY
        );
        assert_eq!(remote_errno(Op::Mkdir, &st(status::FAILURE)), libc::EEXIST);
        assert_eq!(remote_errno(Op::Write, &st(status::FAILURE)), libc::ENOSPC);
        assert_eq!(remote_errno(Op::Flush, &st(status::FAILURE)), libc::ENOSPC);
        assert_eq!(remote_errno(Op::Getattr, &st(status::FAILURE)), libc::EIO);
        assert_eq!(
            remote_errno(Op::Link, &st(status::OP_UNSUPPORTED)),
            libc::ENOTSUP
        );
    }

    #[test]
    fn transport_failures_are_eio() {
        for e in [
            RemoteError::Lost("x".into()),
            RemoteError::Unreachable("x".into()),
            RemoteError::StaleHandle,
        ] {
            assert_eq!(remote_errno(Op::Read, &e), libc::EIO);
        }
        assert_eq!(
            remote_errno(Op::Statfs, &RemoteError::Unsupported("statvfs")),
            libc::ENOTSUP
        );
    }

    #[test]
    fn display_names_operation_path_and_cause() {
        let e = FsError::remote(Op::Flush, "/Incoming/Invoices/a.csv", &st(status::FAILURE));
        let text = e.to_string();
        assert!(text.starts_with("close /Incoming/Invoices/a.csv: No space left on device"));
        assert!(text.contains("status 4"), "{text}");
    }
}
