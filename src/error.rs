//! Filesystem errors and the one place where remote failures become errno.
//!
//! OpenSSH reports EEXIST, ENOTEMPTY, ENOSPC and EDQUOT all as plain
//! SSH_FX_FAILURE (sftp-server.c `errno_to_portable`), which `remote`
//! passes on as `RemoteError::Failure`, so the mapping depends on the
//! operation that failed.

use std::fmt::{self, Write};

use crate::remote::{Kind, RemoteError};

/// The filesystem operation a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
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
    pub(crate) fn name(self) -> &'static str {
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

/// A server-supplied name or path made safe for one log line: control
/// characters (newlines would forge journal lines), Unicode direction
/// overrides and bytes that are not UTF-8 are written as escapes, and `\`
/// itself is doubled so an escape cannot be faked.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}' | '\u{feff}') =>
                {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Maps a remote failure of `op` to an errno.
pub(crate) fn remote_errno(op: Op, err: &RemoteError) -> i32 {
    match err {
        RemoteError::NotFound(_) => libc::ENOENT,
        RemoteError::PermissionDenied(_) => libc::EACCES,
        RemoteError::AlreadyExists(_) => libc::EEXIST,
        RemoteError::Failure(_) => match op {
            Op::Mkdir | Op::Symlink | Op::Link => libc::EEXIST,
            Op::Rmdir => libc::ENOTEMPTY,
            // A failed write or commit on OpenSSH is a full disk or a
            // quota in practice; EIO would hide that from the job.
            Op::Write | Op::Flush | Op::Fsync => libc::ENOSPC,
            Op::Rename => libc::EPERM,
            _ => libc::EIO,
        },
        // link(2) documents EPERM for a filesystem without hard links.
        RemoteError::Unsupported(_) if op == Op::Link => libc::EPERM,
        RemoteError::Unsupported(_) => libc::ENOTSUP,
        RemoteError::Other(_) | RemoteError::Protocol(_) => libc::EIO,
        RemoteError::Lost(_) | RemoteError::StaleHandle | RemoteError::Unreachable(_) => libc::EIO,
    }
}

/// What the server shows of both ends of a rename it refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RenameEnds {
    pub(crate) from: Option<Kind>,
    pub(crate) to: Option<Kind>,
    /// `to` is a folder with entries.
    pub(crate) to_has_entries: bool,
}

/// rename(2)'s errno for a rename the server refused with plain FAILURE,
/// from what its two ends are: a folder over a non-empty folder is
/// ENOTEMPTY, a folder over a file ENOTDIR, a file over a folder EISDIR;
/// anything else stays EPERM (as `remote_errno` says).
pub(crate) fn rename_failure_errno(ends: &RenameEnds) -> i32 {
    match (ends.from, ends.to) {
        (Some(Kind::Dir), Some(Kind::Dir)) if ends.to_has_entries => libc::ENOTEMPTY,
        (Some(Kind::Dir), Some(to)) if to != Kind::Dir => libc::ENOTDIR,
        (Some(from), Some(Kind::Dir)) if from != Kind::Dir => libc::EISDIR,
        _ => remote_errno(Op::Rename, &RemoteError::Failure(String::new())),
    }
}

/// A failed filesystem operation: errno plus what and where, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FsError {
    pub(crate) errno: i32,
    pub(crate) op: Op,
    pub(crate) path: String,
    pub(crate) detail: String,
}

impl FsError {
    pub(crate) fn new(
        op: Op,
        path: impl Into<String>,
        errno: i32,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            errno,
            op,
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// The detail carries the server's own message: escaped, as the
    /// server chooses its text.
    pub(crate) fn remote(op: Op, path: impl Into<String>, err: &RemoteError) -> Self {
        Self::new(
            op,
            path,
            remote_errno(op, err),
            escape(err.to_string().as_bytes()),
        )
    }

    pub(crate) fn local(op: Op, path: impl Into<String>, err: &std::io::Error) -> Self {
        Self::new(
            op,
            path,
            err.raw_os_error().unwrap_or(libc::EIO),
            format!("local spool: {err}"),
        )
    }

    /// A file opened for writing while the mount is being unmounted: the
    /// same error the caller gets a moment later from the unmounted path.
    pub(crate) fn unmounting(op: Op, path: impl Into<String>) -> Self {
        Self::new(
            op,
            path,
            libc::ENOTCONN,
            "the mount is being unmounted: nothing more can be published",
        )
    }

    /// Expected outcomes (a lookup that finds nothing) are not worth a
    /// warning in the journal; nor is a name over NAME_MAX, the caller's
    /// mistake refused before any round trip.
    pub(crate) fn is_routine(&self) -> bool {
        if self.errno == libc::ENAMETOOLONG {
            return true;
        }
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

pub(crate) type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_map_per_operation() {
        let failure = || RemoteError::Failure(String::new());
        assert_eq!(
            remote_errno(Op::Lookup, &RemoteError::NotFound(String::new())),
            libc::ENOENT
        );
        assert_eq!(
            remote_errno(Op::Open, &RemoteError::PermissionDenied(String::new())),
            libc::EACCES
        );
        assert_eq!(remote_errno(Op::Rmdir, &failure()), libc::ENOTEMPTY);
        assert_eq!(remote_errno(Op::Mkdir, &failure()), libc::EEXIST);
        assert_eq!(remote_errno(Op::Write, &failure()), libc::ENOSPC);
        assert_eq!(remote_errno(Op::Flush, &failure()), libc::ENOSPC);
        assert_eq!(remote_errno(Op::Rename, &failure()), libc::EPERM);
        assert_eq!(remote_errno(Op::Getattr, &failure()), libc::EIO);
        assert_eq!(
            remote_errno(Op::Rename, &RemoteError::AlreadyExists(String::new())),
            libc::EEXIST
        );
        assert_eq!(
            remote_errno(Op::Read, &RemoteError::Other("end of file".into())),
            libc::EIO
        );
    }

    #[test]
    fn a_refused_rename_is_told_apart_by_its_ends() {
        let ends = |from, to, to_has_entries| RenameEnds {
            from: Some(from),
            to: Some(to),
            to_has_entries,
        };
        let dir = Kind::Dir;
        let file = Kind::File;
        assert_eq!(rename_failure_errno(&ends(dir, dir, true)), libc::ENOTEMPTY);
        assert_eq!(rename_failure_errno(&ends(dir, file, false)), libc::ENOTDIR);
        assert_eq!(rename_failure_errno(&ends(file, dir, false)), libc::EISDIR);
        assert_eq!(rename_failure_errno(&ends(dir, dir, false)), libc::EPERM);
        assert_eq!(rename_failure_errno(&RenameEnds::default()), libc::EPERM);
    }

    #[test]
    fn escape_leaves_no_control_character_in_a_log_line() {
        assert_eq!(escape(b"Incoming/a.csv"), "Incoming/a.csv");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape(b"x\ny"), "x\\ny");
        assert_eq!(escape(b"a\r\tb\x1b[31m"), "a\\r\\tb\\u{1b}[31m");
        assert_eq!(escape(b"back\\n"), "back\\\\n");
        assert_eq!(escape(b"\xff\xfe"), "\\xff\\xfe");
        assert_eq!(escape("\u{202e}txt".as_bytes()), "\\u{202e}txt");
        assert!(!escape(b"a\0b\x7f").chars().any(char::is_control));
    }

    #[test]
    fn a_too_long_name_is_routine() {
        let e = FsError::new(Op::Create, "/a", libc::ENAMETOOLONG, "name of 300 bytes");
        assert!(e.is_routine());
        let e = FsError::new(Op::Create, "/a", libc::EIO, "x");
        assert!(!e.is_routine());
    }

    #[test]
    fn a_server_message_cannot_forge_a_log_line() {
        let e = FsError::remote(
            Op::Rename,
            "/a",
            &RemoteError::Failure("no\nERROR forged".into()),
        );
        assert!(!e.to_string().contains('\n'), "{e}");
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
    }

    #[test]
    fn a_missing_extension_is_enotsup_but_eperm_for_link() {
        let e = RemoteError::Unsupported("statvfs@openssh.com".into());
        assert_eq!(remote_errno(Op::Statfs, &e), libc::ENOTSUP);
        assert_eq!(remote_errno(Op::Fsync, &e), libc::ENOTSUP);
        let e = RemoteError::Unsupported("hardlink@openssh.com".into());
        assert_eq!(remote_errno(Op::Link, &e), libc::EPERM);
    }

    #[test]
    fn display_names_operation_path_and_cause() {
        let e = FsError::remote(
            Op::Flush,
            "/Incoming/Invoices/a.csv",
            &RemoteError::Failure("Failure".into()),
        );
        let text = e.to_string();
        assert!(text.starts_with("close /Incoming/Invoices/a.csv: No space left on device"));
        assert!(text.contains("server: Failure"), "{text}");
    }
}
