//! known_hosts files as OpenSSH keeps them (sshd(8) "SSH_KNOWN_HOSTS FILE
//! FORMAT"): reading the markers ourselves, appending one line under a lock.
//!
//! Host-name matching (plain, comma lists, `[host]:port`, hashed `|1|` names)
//! stays with libssh2, which gets every plain line. libssh2 does not know
//! the markers: it would read `@revoked` and `@cert-authority` as host
//! names, so those lines never reach it. `@revoked KEY` refuses that key for
//! every host (stricter than OpenSSH, which checks the host names too: a
//! revoked key should not be trusted anywhere). coupafs does not support
//! host certificates, so `@cert-authority` lines are skipped, with a debug
//! line. New keys (`StrictHostKeyChecking=accept-new`) are appended as one
//! line under `flock(LOCK_EX)`, as OpenSSH does, so the file is never
//! rewritten: other lines and comments stay byte-identical, no crash can
//! truncate it, and concurrent writers do not lose each other's lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;

/// What one known_hosts line says, as far as coupafs reads it itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Blank or `#` comment.
    Comment,
    /// A plain `HOSTS KEYTYPE KEY [COMMENT]` line, for libssh2's matcher.
    Host(&'a str),
    /// `@revoked HOSTS KEYTYPE KEY`: the decoded key blob.
    Revoked(Vec<u8>),
    /// `@cert-authority ...`: not supported, ignored.
    CertAuthority,
    /// An unknown marker or a line too short to use, with the reason.
    Invalid(&'static str),
}

/// Classifies one line (without its line ending).
pub(crate) fn parse_line(line: &str) -> Line<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Line::Comment;
    }
    let mut fields = trimmed.split_whitespace();
    let Some(first) = fields.next() else {
        return Line::Comment;
    };
    if let Some(marker) = first.strip_prefix('@') {
        return match marker {
            "revoked" => {
                // HOSTS KEYTYPE KEY
                let (Some(_hosts), Some(_ty), Some(key)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Line::Invalid("@revoked line without a key");
                };
                match base64::engine::general_purpose::STANDARD.decode(key) {
                    Ok(blob) => Line::Revoked(blob),
                    Err(_) => Line::Invalid("@revoked key is not base64"),
                }
            }
            "cert-authority" => Line::CertAuthority,
            _ => Line::Invalid("unknown @marker"),
        };
    }
    if fields.count() < 2 {
        return Line::Invalid("expected HOSTS KEYTYPE KEY");
    }
    Line::Host(trimmed)
}

/// The key type named inside an SSH public key blob (its first string),
/// e.g. `ssh-ed25519`.
pub(crate) fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    let name = std::str::from_utf8(name).ok()?;
    let printable = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
    printable.then_some(name)
}

/// The line accept-new appends: `NAME KEYTYPE BASE64` (no comment, no
/// hashing, as `ssh` writes with HashKnownHosts=no).
pub(crate) fn host_line(name: &str, blob: &[u8]) -> Option<String> {
    let ty = blob_key_type(blob)?;
    Some(format!(
        "{name} {ty} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

/// Appends `line` to `path` (created 0600 if missing) under an exclusive
/// `flock`, as OpenSSH's `add_host_to_hostfile` does. Under the lock the file
/// is checked for the same line first (another connection may have added it
/// meanwhile), and a final line without a newline gets one first. Returns
/// false when the line was already there.
pub(crate) fn append_line(path: &Path, line: &str) -> io::Result<bool> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    lock_exclusive(&file)?;
    // The lock goes with the descriptor when `file` drops.
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let present = text
        .split(|&b| b == b'\n')
        .any(|l| l.strip_suffix(b"\r").unwrap_or(l) == line.as_bytes());
    if present {
        return Ok(false);
    }
    let mut out = String::with_capacity(line.len() + 2);
    if text.last().is_some_and(|&b| b != b'\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    // One write with O_APPEND: it lands at the end as a whole.
    file.write_all(out.as_bytes())?;
    file.sync_data()?;
    Ok(true)
}

fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads a whole known_hosts file; `Ok(None)` when it does not exist.
pub(crate) fn read_file(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(ty: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (ty.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(ty.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn lines_are_classified_by_marker() {
        assert_eq!(parse_line(""), Line::Comment);
        assert_eq!(parse_line("   # a comment"), Line::Comment);
        assert_eq!(
            parse_line("host.example ssh-ed25519 AAAA"),
            Line::Host("host.example ssh-ed25519 AAAA")
        );
        assert_eq!(
            parse_line("|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAA comment"),
            Line::Host("|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAA comment")
        );
        let b = blob("ssh-ed25519", &[7; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&b);
        assert_eq!(
            parse_line(&format!("@revoked * ssh-ed25519 {b64}")),
            Line::Revoked(b)
        );
        assert_eq!(
            parse_line("@cert-authority *.example ssh-rsa AAAA"),
            Line::CertAuthority
        );
        assert!(matches!(
            parse_line("@frob h ssh-rsa AAAA"),
            Line::Invalid(_)
        ));
        assert!(matches!(parse_line("@revoked h ssh-rsa"), Line::Invalid(_)));
        assert!(matches!(
            parse_line("@revoked h ssh-rsa !!!"),
            Line::Invalid(_)
        ));
        assert!(matches!(parse_line("hostonly ssh-rsa"), Line::Invalid(_)));
    }

    #[test]
    fn key_type_comes_from_the_blob() {
        assert_eq!(blob_key_type(&blob("ssh-rsa", b"xyz")), Some("ssh-rsa"));
        assert_eq!(blob_key_type(&[0, 0, 0, 9, b'a']), None);
        assert_eq!(blob_key_type(&[0, 0]), None);
        assert_eq!(blob_key_type(&blob("bad name", b"")), None);
        let b = blob("ssh-ed25519", &[1, 2, 3]);
        let line = host_line("[127.0.0.1]:2222", &b).expect("line");
        assert_eq!(
            line,
            format!(
                "[127.0.0.1]:2222 ssh-ed25519 {}",
                base64::engine::general_purpose::STANDARD.encode(&b)
            )
        );
    }

    #[test]
    fn append_keeps_every_byte_and_adds_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        // No newline at the end: one is added before the new line.
        let before =
            "# managed by hand\n\nother ssh-rsa AAAA  # keep me\r\n@revoked x ssh-rsa AAAA";
        std::fs::write(&path, before).expect("write");
        assert!(append_line(&path, "new ssh-ed25519 BBBB").expect("append"));
        let after = std::fs::read_to_string(&path).expect("read");
        assert_eq!(after, format!("{before}\nnew ssh-ed25519 BBBB\n"));
        // Already there: nothing written.
        assert!(!append_line(&path, "new ssh-ed25519 BBBB").expect("append"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), after);
    }

    #[test]
    fn append_creates_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kh");
        assert!(append_line(&path, "h ssh-rsa AAAA").expect("append"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "h ssh-rsa AAAA\n"
        );
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn concurrent_appends_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kh");
        std::fs::write(&path, "# top\n").expect("write");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    append_line(&path, &format!("h{i} ssh-rsa AAAA")).expect("append")
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().expect("thread"));
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# top\n"), "{text}");
        for i in 0..8 {
            assert!(text.contains(&format!("h{i} ssh-rsa AAAA\n")), "{text}");
        }
        assert_eq!(text.lines().count(), 9);
    }
}
