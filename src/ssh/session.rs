//! One SSH session up to a running SFTP channel: TCP connect, handshake,
//! host-key verification, authentication, SFTP INIT/VERSION.
//!
//! With `crypto.rs` this is the only place that names ssh2 (libssh2). What
//! it hands to the engine is a [`Pipe`](super::engine::Pipe): the channel as
//! a non-blocking byte pipe, so the request engine never sees ssh2.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use ssh2::{BlockDirections, CheckResult, KnownHostFileKind, Session};

use super::engine::Pipe;
use super::params::{ConnectError, ConnectParams, HostKeyPolicy};
use crate::sftp::{self, Version};

/// How the server's host key was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// known_hosts lists this key for the host.
    Known,
    /// It matches `HostKeyFingerprint` (known_hosts not consulted).
    Pinned,
    /// It was unknown and was added to known_hosts
    /// (`StrictHostKeyChecking=accept-new`).
    Added,
    /// It was unknown and accepted unchecked (`StrictHostKeyChecking=no`).
    Unverified,
}

impl fmt::Display for HostKeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyStatus::Known => "known",
            HostKeyStatus::Pinned => "pinned",
            HostKeyStatus::Added => "added",
            HostKeyStatus::Unverified => "unverified",
        })
    }
}

/// Information about an established connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub version: Version,
    /// Time from SFTP INIT to VERSION: about one network round trip.
    pub init_rtt: Duration,
    pub auth_method: String,
    pub host_key_fingerprint: String,
    pub host_key_status: HostKeyStatus,
}

/// A session whose SFTP channel has exchanged INIT/VERSION, in
/// non-blocking mode, ready for the I/O thread.
pub(crate) struct Established {
    pub(crate) pipe: SshPipe,
    /// Holds any bytes the server sent after VERSION.
    pub(crate) framer: sftp::Framer,
    pub(crate) info: ConnInfo,
}

/// The SFTP channel of a libssh2 session as the engine's byte pipe.
pub(crate) struct SshPipe {
    session: Session,
    channel: ssh2::Channel,
    socket_fd: RawFd,
}

impl Pipe for SshPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.channel.read(buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.channel.write(buf)
    }

    fn eof(&self) -> bool {
        self.channel.eof()
    }

    fn poll_target(&self) -> (RawFd, libc::c_short) {
        let mut events = libc::POLLIN;
        // libssh2 may be waiting to flush a packet (or to read before it
        // can write): block_directions says which.
        match self.session.block_directions() {
            BlockDirections::Outbound | BlockDirections::Both => events |= libc::POLLOUT,
            _ => {}
        }
        (self.socket_fd, events)
    }

    fn shutdown(&mut self) {
        let _ = self.session.disconnect(None, "coupafs closing", None);
    }
}

/// Connects, verifies the host key, authenticates and starts SFTP.
pub(crate) fn establish(params: &ConnectParams) -> Result<Established, ConnectError> {
    let tcp = connect_tcp(params)?;
    let socket_fd = tcp.as_raw_fd();
    let mut session = Session::new().map_err(|e| ConnectError::Handshake(e.to_string()))?;
    session.set_tcp_stream(tcp);
    let timeout_ms = u32::try_from(params.connect_timeout.as_millis()).unwrap_or(u32::MAX);
    session.set_timeout(timeout_ms);
    session
        .handshake()
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let (host_key_fingerprint, host_key_status) = verify_host_key(&session, params)?;
    let auth_method = authenticate(&session, params)?;
    let mut channel = session
        .channel_open("session", 16 << 20, 32768, None)
        .map_err(|e| ConnectError::Sftp(format!("opening channel: {e}")))?;
    channel
        .subsystem("sftp")
        .map_err(|e| ConnectError::Sftp(format!("starting sftp subsystem: {e}")))?;
    let mut init = Vec::new();
    sftp::encode_init(&mut init);
    let init_sent = Instant::now();
    channel
        .write_all(&init)
        .map_err(|e| ConnectError::Sftp(format!("sending INIT: {e}")))?;
    let mut framer = sftp::Framer::new();
    let mut buf = vec![0u8; 32 * 1024];
    let version = loop {
        match framer.next_packet() {
            Ok(Some(packet)) => {
                break sftp::decode_version(&packet)
                    .map_err(|e| ConnectError::Sftp(e.to_string()))?
            }
            Ok(None) => {}
            Err(e) => return Err(ConnectError::Sftp(e.to_string())),
        }
        let n = channel
            .read(&mut buf)
            .map_err(|e| ConnectError::Sftp(format!("reading VERSION: {e}")))?;
        if n == 0 {
            return Err(ConnectError::Sftp(
                "server closed the channel before VERSION (is the sftp subsystem enabled?)".into(),
            ));
        }
        framer.push(&buf[..n]);
    };
    let init_rtt = init_sent.elapsed();
    session.set_blocking(false);
    Ok(Established {
        pipe: SshPipe {
            session,
            channel,
            socket_fd,
        },
        framer,
        info: ConnInfo {
            version,
            init_rtt,
            auth_method,
            host_key_fingerprint,
            host_key_status,
        },
    })
}

fn connect_tcp(params: &ConnectParams) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<_> = (params.host.as_str(), params.port)
        .to_socket_addrs()
        .map_err(|e| {
            ConnectError::Unreachable(format!(
                "cannot resolve {}:{}: {e}",
                params.host, params.port
            ))
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, params.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                set_tcp_user_timeout(&s, params.dead_after());
                return Ok(s);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(ConnectError::Unreachable(last.unwrap_or_else(|| {
        format!("{}:{} resolved to no address", params.host, params.port)
    })))
}

/// TCP_USER_TIMEOUT makes the kernel give up on unacknowledged data, so a
/// black-holed link surfaces as a socket error instead of a silent stall.
fn set_tcp_user_timeout(s: &TcpStream, timeout: Duration) {
    let ms: libc::c_uint = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: setsockopt with a valid fd and a c_uint option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// SHA256 fingerprint as OpenSSH prints it (`SHA256:` + unpadded base64).
fn fingerprint(key: &[u8]) -> String {
    let digest = sha2::Sha256::digest(key);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// known_hosts spells non-default ports as `[host]:port`.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks the server's host key against known_hosts and the pin. Returns the
/// fingerprint and how the key was accepted (for logs and `coupafs check`).
fn verify_host_key(
    session: &Session,
    params: &ConnectParams,
) -> Result<(String, HostKeyStatus), ConnectError> {
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| ConnectError::HostKey("server sent no host key".into()))?;
    let fp = fingerprint(key);
    let name = known_hosts_name(&params.host, params.port);
    if let Some(pin) = &params.host_key_fingerprint {
        if pin.trim_end_matches('=') == fp {
            return Ok((fp, HostKeyStatus::Pinned));
        }
        return Err(ConnectError::HostKey(format!(
            "{name} presented {fp}, but HostKeyFingerprint pins {pin}"
        )));
    }
    let mut kh = session
        .known_hosts()
        .map_err(|e| ConnectError::HostKey(e.to_string()))?;
    let file = &params.known_hosts;
    if file.exists() {
        kh.read_file(file, KnownHostFileKind::OpenSSH)
            .map_err(|e| ConnectError::HostKey(format!("cannot read {}: {e}", file.display())))?;
    }
    match kh.check_port(&params.host, params.port, key) {
        CheckResult::Match => Ok((fp, HostKeyStatus::Known)),
        CheckResult::Mismatch => {
            let known: Vec<String> = kh
                .hosts()
                .unwrap_or_default()
                .iter()
                .filter(|h| h.name() == Some(name.as_str()))
                .filter_map(|h| {
                    base64::engine::general_purpose::STANDARD
                        .decode(h.key())
                        .ok()
                        .map(|k| fingerprint(&k))
                })
                .collect();
            Err(ConnectError::HostKey(format!(
                "HOST KEY CHANGED for {name}: server presented {fp}, {} has {}; refusing to connect \
                 (if the change is expected, remove the old line from {})",
                file.display(),
                if known.is_empty() {
                    "a different key".to_string()
                } else {
                    known.join(", ")
                },
                file.display()
            )))
        }
        CheckResult::NotFound | CheckResult::Failure => match params.host_key_policy {
            HostKeyPolicy::Strict => Err(ConnectError::HostKey(format!(
                "{name} is not in {} (server key {fp}); add it with \
                 `ssh-keyscan -p {} {} >> {}` after checking the fingerprint, \
                 or mount once with -o StrictHostKeyChecking=accept-new",
                file.display(),
                params.port,
                params.host,
                file.display()
            ))),
            HostKeyPolicy::AcceptNew => {
                kh.add(&name, key, "added by coupafs", key_type.into())
                    .map_err(|e| ConnectError::HostKey(e.to_string()))?;
                kh.write_file(file, KnownHostFileKind::OpenSSH)
                    .map_err(|e| {
                        ConnectError::HostKey(format!("cannot write {}: {e}", file.display()))
                    })?;
                log::warn!("added host key {fp} for {name} to {}", file.display());
                Ok((fp, HostKeyStatus::Added))
            }
            HostKeyPolicy::No => {
                log::warn!("host key for {name} not verified (StrictHostKeyChecking=no): {fp}");
                Ok((fp, HostKeyStatus::Unverified))
            }
        },
    }
}

/// Tries ssh-agent, then each identity file, then the password. Returns the
/// name of the method that worked.
fn authenticate(session: &Session, params: &ConnectParams) -> Result<String, ConnectError> {
    let user = params.user.as_str();
    let mut tried = Vec::new();
    if params.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match session.userauth_agent(user) {
            Ok(()) if session.authenticated() => return Ok("publickey (ssh-agent)".into()),
            Ok(()) => tried.push("ssh-agent: rejected".to_string()),
            Err(e) => tried.push(format!("ssh-agent: {e}")),
        }
    }
    for key in &params.identity_files {
        if !key.exists() {
            tried.push(format!("{}: no such file", key.display()));
            continue;
        }
        let passphrase = params.passphrase.as_ref().map(|p| p.expose());
        match session.userauth_pubkey_file(user, None, key, passphrase) {
            Ok(()) if session.authenticated() => {
                return Ok(format!("publickey ({})", key.display()))
            }
            Ok(()) => tried.push(format!("{}: rejected", key.display())),
            Err(e) => tried.push(format!("{}: {}", key.display(), e.message())),
        }
    }
    if let Some(password) = &params.password {
        match session.userauth_password(user, password.expose()) {
            Ok(()) if session.authenticated() => return Ok("password".into()),
            Ok(()) => tried.push("password: rejected".into()),
            // libssh2's message never contains the password itself.
            Err(e) => tried.push(format!("password: {}", e.message())),
        }
    }
    if tried.is_empty() {
        tried.push(
            "no credentials: give -o IdentityFile=, -o password_file=, COUPAFS_PASSWORD or an ssh-agent"
                .into(),
        );
    }
    Err(ConnectError::Auth(format!(
        "as {user}: {}",
        tried.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_openssh_sha256_unpadded() {
        // sha256("") in unpadded base64, as `ssh-keygen -lf` prints it.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn known_hosts_names_non_default_ports_in_brackets() {
        assert_eq!(known_hosts_name("example.com", 22), "example.com");
        assert_eq!(known_hosts_name("example.com", 2222), "[example.com]:2222");
    }

    #[test]
    fn host_key_status_words_are_what_check_and_logs_print() {
        let words: Vec<String> = [
            HostKeyStatus::Known,
            HostKeyStatus::Pinned,
            HostKeyStatus::Added,
            HostKeyStatus::Unverified,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(words, ["known", "pinned", "added", "unverified"]);
    }
}
