//! One SSH session up to a running SFTP channel: the stream (`proxy`), handshake,
//! host-key verification, authentication, SFTP INIT/VERSION.
//!
//! With `crypto.rs` this is the only place that names ssh2 (libssh2). What
//! it hands to the engine is a [`Pipe`](super::engine::Pipe): the channel as
//! a non-blocking byte pipe, so the request engine never sees ssh2.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use ssh2::{BlockDirections, CheckResult, KnownHostFileKind, MethodType, Session};

use super::engine::Pipe;
use super::known_hosts::{self, Line};
use super::params::{ConnectError, ConnectParams, HostKeyPolicy};
use super::proxy;
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
    /// The negotiated client-to-server cipher, e.g. `aes128-ctr`.
    pub cipher: String,
}

/// A session whose SFTP channels have exchanged INIT/VERSION, in
/// non-blocking mode, ready for the I/O thread: per channel its pipe, a
/// framer holding any bytes the server sent after VERSION, and its info.
pub(crate) struct Established {
    pub(crate) lanes: Vec<(SshPipe, sftp::Framer, ConnInfo)>,
}

/// The SFTP channel of a libssh2 session as the engine's byte pipe.
pub(crate) struct SshPipe {
    session: Session,
    channel: ssh2::Channel,
    socket_fd: RawFd,
    /// The session's first channel, whose shutdown ends the session.
    owner: bool,
    /// The ProxyCommand child, killed and reaped when the pipe is dropped
    /// (after the session, so libssh2 never writes to a dead peer first).
    _proxy: Option<proxy::ProxyChild>,
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

    fn buffered(&self) -> bool {
        self.channel.read_window().available > 0
    }

    fn write_room(&self) -> bool {
        self.channel.write_window().remaining > 0
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
        // The other channels go with the session.
        if self.owner {
            let _ = self.session.disconnect(None, "coupafs closing", None);
        }
    }
}

/// Connects, verifies the host key, authenticates and starts SFTP on up to
/// `lanes` channels (at least one).
pub(crate) fn establish(params: &ConnectParams, lanes: usize) -> Result<Established, ConnectError> {
    let stream = proxy::open(params)?;
    let socket_fd = stream.raw_fd();
    let mut session = Session::new().map_err(|e| ConnectError::Handshake(e.to_string()))?;
    // libssh2 needs a socket (send/recv): a TCP stream, or our end of the
    // ProxyCommand's socketpair.
    let mut proxy_child = match stream {
        proxy::Stream::Tcp(tcp) => {
            session.set_tcp_stream(tcp);
            None
        }
        proxy::Stream::Command(sock, child) => {
            session.set_tcp_stream(sock);
            Some(child)
        }
    };
    let timeout_ms = u32::try_from(params.connect_timeout.as_millis()).unwrap_or(u32::MAX);
    session.set_timeout(timeout_ms);
    // Method preferences only take effect before the key exchange.
    set_method_prefs(&session, params)?;
    session.handshake().map_err(|e| {
        // Through a ProxyCommand, the command's own words say why (e.g.
        // ssh -W: "open failed: administratively prohibited").
        ConnectError::Handshake(match proxy_child.as_mut() {
            Some(child) => format!("{e} ({})", child.failure_note()),
            None => e.to_string(),
        })
    })?;
    let method = |t| session.methods(t).unwrap_or("?").to_string();
    let cipher = method(MethodType::CryptCs);
    log::debug!(
        "negotiated kex {}, host key {}, cipher {} / {}, mac {} / {}",
        method(MethodType::Kex),
        method(MethodType::HostKey),
        cipher,
        method(MethodType::CryptSc),
        method(MethodType::MacCs),
        method(MethodType::MacSc)
    );
    let (host_key_fingerprint, host_key_status) = verify_host_key(&session, params)?;
    let auth_method = authenticate(&session, params)?;
    let (channel, framer, version, init_rtt) = start_sftp(&session)?;
    let info = ConnInfo {
        version,
        init_rtt,
        auth_method,
        host_key_fingerprint,
        host_key_status,
        cipher,
    };
    let mut extra = Vec::new();
    // More channels on the same session: best effort (a server may cap
    // channels per session; the first one is all a mount needs).
    for _ in 1..lanes {
        match start_sftp(&session) {
            Ok((channel, framer, version, init_rtt)) => extra.push((
                channel,
                framer,
                ConnInfo {
                    version,
                    init_rtt,
                    ..info.clone()
                },
            )),
            Err(e) => {
                log::debug!("second SFTP channel on the session not opened: {e}");
                break;
            }
        }
    }
    session.set_blocking(false);
    let mut out = vec![(
        SshPipe {
            session: session.clone(),
            channel,
            socket_fd,
            owner: true,
            _proxy: proxy_child,
        },
        framer,
        info,
    )];
    for (channel, framer, info) in extra {
        out.push((
            SshPipe {
                session: session.clone(),
                channel,
                socket_fd,
                owner: false,
                _proxy: None,
            },
            framer,
            info,
        ));
    }
    Ok(Established { lanes: out })
}

/// Opens an SFTP channel on the (blocking) session and exchanges
/// INIT/VERSION: the channel, the framer with any bytes past VERSION, the
/// version and the INIT round trip.
fn start_sftp(
    session: &Session,
) -> Result<(ssh2::Channel, sftp::Framer, Version, Duration), ConnectError> {
    let mut channel = session
        .channel_open("session", 16 << 20, 32768, None)
        .map_err(|e| ConnectError::Sftp(format!("opening channel: {e}")))?;
    // Whatever the server writes to the channel's stderr is dropped as it
    // arrives: nothing reads it, and kept it would grow without bound and
    // count as bytes waiting to be read (`Pipe::buffered`) forever.
    channel
        .handle_extended_data(ssh2::ExtendedData::Ignore)
        .map_err(|e| ConnectError::Sftp(format!("ignoring the channel's stderr: {e}")))?;
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
    Ok((channel, framer, version, init_sent.elapsed()))
}

/// libssh2's methods, in its order of preference: ciphers, key exchange,
/// host key, MAC. What an ssh_config `+`/`-`/`^` list is relative to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SupportedMethods {
    pub ciphers: Vec<String>,
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub macs: Vec<String>,
}

/// What this build's libssh2 supports (no network: an unconnected session).
pub fn supported_methods() -> Result<SupportedMethods, String> {
    let session = Session::new().map_err(|e| e.to_string())?;
    let list = |t| -> Result<Vec<String>, String> {
        Ok(session
            .supported_algs(t)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(String::from)
            .collect())
    };
    Ok(SupportedMethods {
        ciphers: list(MethodType::CryptCs)?,
        kex: list(MethodType::Kex)?,
        host_key: list(MethodType::HostKey)?,
        macs: list(MethodType::MacCs)?,
    })
}

/// The cipher the ChaCha20-Poly1305 override serves.
const CHACHA: &str = "chacha20-poly1305@openssh.com";

/// Applies `Ciphers=`, `KexAlgorithms=`, `HostKeyAlgorithms=` and `MACs=`
/// (both directions for ciphers and MACs, as ssh does). When the override's
/// self-test failed, chacha20-poly1305 is left out of the cipher list.
fn set_method_prefs(session: &Session, params: &ConnectParams) -> Result<(), ConnectError> {
    let algs = &params.algorithms;
    let chacha_ok = match super::crypto::self_test() {
        Ok(()) => true,
        Err(e) => {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                log::error!("ChaCha20-Poly1305 self-test failed ({e}); preferring other ciphers")
            });
            false
        }
    };
    let lists = [
        (
            "Ciphers",
            &algs.ciphers,
            [MethodType::CryptCs, MethodType::CryptSc].as_slice(),
        ),
        ("KexAlgorithms", &algs.kex, [MethodType::Kex].as_slice()),
        (
            "HostKeyAlgorithms",
            &algs.host_key,
            [MethodType::HostKey].as_slice(),
        ),
        (
            "MACs",
            &algs.macs,
            [MethodType::MacCs, MethodType::MacSc].as_slice(),
        ),
    ];
    for (option, spec, types) in lists {
        // Only the cipher list changes when the self-test failed.
        let avoid: &[&str] = if option == "Ciphers" && !chacha_ok {
            &[CHACHA]
        } else {
            &[]
        };
        if spec.is_none() && avoid.is_empty() {
            continue;
        }
        for &t in types {
            let supported = session
                .supported_algs(t)
                .map_err(|e| ConnectError::Handshake(format!("listing {option}: {e}")))?;
            let list = resolve_methods(option, spec.as_deref(), &supported, avoid)
                .map_err(ConnectError::Handshake)?;
            session
                .method_pref(t, &list)
                .map_err(|e| ConnectError::Handshake(format!("{option}={list}: {e}")))?;
        }
    }
    Ok(())
}

/// The method list for libssh2 from an ssh_config-style `spec` (plain list,
/// or `+`, `-`, `^` followed by one), over `supported` (libssh2's list, in
/// its order of preference), minus `avoid`. Names libssh2 does not support
/// are an error, not silently dropped: a restriction must not quietly change.
pub(crate) fn resolve_methods(
    option: &str,
    spec: Option<&str>,
    supported: &[&str],
    avoid: &[&str],
) -> Result<String, String> {
    let (op, names) = match spec {
        None => (None, ""),
        Some(s) => match s.as_bytes().first() {
            Some(b'+' | b'-' | b'^') => (s.chars().next(), &s[1..]),
            _ => (Some('='), s),
        },
    };
    let named: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    if op.is_some() && named.is_empty() {
        return Err(format!("{option}: empty list"));
    }
    let unknown: Vec<&str> = named
        .iter()
        .copied()
        .filter(|n| !supported.contains(n))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{option}: not supported by this build's libssh2: {} (supported: {})",
            unknown.join(", "),
            supported.join(",")
        ));
    }
    let list: Vec<&str> = match op {
        Some('=') => named,
        Some('-') => supported
            .iter()
            .copied()
            .filter(|m| !named.contains(m))
            .collect(),
        Some('^') => named
            .iter()
            .copied()
            .chain(supported.iter().copied().filter(|m| !named.contains(m)))
            .collect(),
        // `+` appends to the default, which already holds every supported
        // method; no spec: the default.
        _ => supported.to_vec(),
    };
    let list: Vec<&str> = list.into_iter().filter(|m| !avoid.contains(m)).collect();
    if list.is_empty() {
        return Err(if avoid.is_empty() {
            format!("{option}: no method left")
        } else {
            format!(
                "{option}: no method left without {} (its self-test failed)",
                avoid.join(",")
            )
        });
    }
    Ok(list.join(","))
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

/// Checks the server's host key against the pin or the known_hosts files.
/// Returns the fingerprint and how the key was accepted (for logs and
/// `coupafs check`). A key marked `@revoked` in any of the files is refused
/// first, even when pinned or also listed as known.
fn verify_host_key(
    session: &Session,
    params: &ConnectParams,
) -> Result<(String, HostKeyStatus), ConnectError> {
    let (key, _key_type) = session
        .host_key()
        .ok_or_else(|| ConnectError::HostKey("server sent no host key".into()))?;
    let fp = fingerprint(key);
    let name = known_hosts_name(&params.host, params.port);
    let mut kh = session
        .known_hosts()
        .map_err(|e| ConnectError::HostKey(e.to_string()))?;
    let file = &params.known_hosts;
    let files =
        std::iter::once((file, true)).chain(params.global_known_hosts.iter().map(|f| (f, false)));
    for (path, user_file) in files {
        let text = match known_hosts::read_file(path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            // The user file decides trust; an unreadable global file is
            // skipped, as ssh does.
            Err(e) if user_file && params.host_key_fingerprint.is_none() => {
                return Err(ConnectError::HostKey(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
            Err(e) => {
                log::warn!("cannot read {}: {e}", path.display());
                continue;
            }
        };
        for (i, line) in text.lines().enumerate() {
            let at = || format!("{}:{}", path.display(), i + 1);
            match known_hosts::parse_line(line) {
                Line::Comment => {}
                Line::Host(l) => {
                    // libssh2 matches names (plain, lists, hashed |1|).
                    if let Err(e) = kh.read_str(l, KnownHostFileKind::OpenSSH) {
                        log::debug!("{}: line skipped: {e}", at());
                    }
                }
                Line::Revoked(blob) if blob == key => {
                    return Err(ConnectError::HostKey(format!(
                        "REVOKED host key: {name} presented {fp}, which {} marks @revoked; \
                         refusing to connect",
                        at()
                    )));
                }
                Line::Revoked(_) => {}
                Line::CertAuthority => log::debug!(
                    "{}: @cert-authority line ignored (coupafs does not support host certificates)",
                    at()
                ),
                Line::Invalid(why) => log::debug!("{}: line skipped: {why}", at()),
            }
        }
    }
    if let Some(pin) = &params.host_key_fingerprint {
        if pin.trim_end_matches('=') == fp {
            return Ok((fp, HostKeyStatus::Pinned));
        }
        return Err(ConnectError::HostKey(format!(
            "{name} presented {fp}, but HostKeyFingerprint pins {pin}"
        )));
    }
    let searched = std::iter::once(file)
        .chain(params.global_known_hosts.iter().filter(|p| p.exists()))
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
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
                "HOST KEY CHANGED for {name}: server presented {fp}, {searched} has {}; refusing to connect \
                 (if the change is expected, remove the old line from {})",
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
                "{name} is not in {searched} (server key {fp}); add it with \
                 `ssh-keyscan -p {} {} >> {}` after checking the fingerprint, \
                 or mount once with -o StrictHostKeyChecking=accept-new",
                params.port,
                params.host,
                file.display()
            ))),
            HostKeyPolicy::AcceptNew => {
                let line = known_hosts::host_line(&name, key).ok_or_else(|| {
                    ConnectError::HostKey(format!("{name} sent a malformed host key"))
                })?;
                known_hosts::append_line(file, &line).map_err(|e| {
                    ConnectError::HostKey(format!("cannot add {name} to {}: {e}", file.display()))
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

/// Tries ssh-agent, then each identity file, then the password, each only
/// when `params.auth` allows it (`IdentitiesOnly=yes`: no agent;
/// `PubkeyAuthentication=no`: no keys; `PasswordAuthentication=no`: no
/// password). The password goes by the `password` method, or by
/// `keyboard-interactive` when the server offers only that
/// (`KbdInteractiveAuthentication=no`: never). Never prompts (`BatchMode` changes nothing). Returns the name
/// of the method that worked.
fn authenticate(session: &Session, params: &ConnectParams) -> Result<String, ConnectError> {
    let user = params.user.as_str();
    let auth = params.auth;
    let mut tried = Vec::new();
    if auth.pubkey
        && !auth.identities_only
        && params.use_agent
        && std::env::var_os("SSH_AUTH_SOCK").is_some()
    {
        match session.userauth_agent(user) {
            Ok(()) if session.authenticated() => return Ok("publickey (ssh-agent)".into()),
            Ok(()) => tried.push("ssh-agent: rejected".to_string()),
            Err(e) => tried.push(format!("ssh-agent: {e}")),
        }
    }
    let keys: &[std::path::PathBuf] = if auth.pubkey {
        &params.identity_files
    } else {
        &[]
    };
    for key in keys {
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
    if let Some(password) = params.password.as_ref() {
        // Which methods the server still offers (a "none" request, RFC 4252
        // 5.2). Unknown: try the password method as before.
        let offered = session.auth_methods(user).map(str::to_string).ok();
        let offers = |m: &str| {
            offered
                .as_deref()
                .is_none_or(|list| list.split(',').any(|x| x == m))
        };
        // Keyboard-interactive sends the password too, so
        // PasswordAuthentication=no keeps it off as well.
        let use_password = auth.password && offers("password");
        let kbd_first = auth.password
            && auth.kbd_interactive
            && !use_password
            && offers("keyboard-interactive");
        if auth.password && !use_password && !kbd_first {
            let offers_list = offered.as_deref().unwrap_or("?");
            tried.push(if auth.kbd_interactive {
                format!(
                    "password: the server offers neither password nor keyboard-interactive \
                     authentication (it offers {offers_list})"
                )
            } else {
                format!(
                    "password: the server does not offer password authentication (it offers \
                     {offers_list}; KbdInteractiveAuthentication=no)"
                )
            });
        }
        if use_password {
            match session.userauth_password(user, password.expose()) {
                Ok(()) if session.authenticated() => return Ok("password".into()),
                Ok(()) => tried.push("password: rejected".into()),
                // libssh2's message never contains the password itself.
                Err(e) => tried.push(format!("password: {}", e.message())),
            }
        }
        if kbd_first {
            let mut prompter = PasswordPrompter::new(password.expose());
            match session.userauth_keyboard_interactive(user, &mut prompter) {
                Ok(()) if session.authenticated() => {
                    return Ok("keyboard-interactive (password)".into())
                }
                Ok(()) => tried.push("keyboard-interactive: rejected".into()),
                Err(e) => tried.push(format!("keyboard-interactive: {}", e.message())),
            }
            if prompter.refused_echo {
                tried.push(
                    "keyboard-interactive: the server asked a question that is not a \
                     password (echoed prompt); coupafs answers only password prompts"
                        .into(),
                );
            }
        }
    }
    if tried.is_empty() {
        let mut off = Vec::new();
        if !auth.pubkey {
            off.push("PubkeyAuthentication=no");
        }
        if !auth.password {
            off.push("PasswordAuthentication=no");
        }
        if auth.identities_only && auth.pubkey {
            off.push("IdentitiesOnly=yes (no ssh-agent keys)");
        }
        tried.push(if off.is_empty() {
            "no credentials: give -o IdentityFile=, -o password_file=, COUPAFS_PASSWORD or an ssh-agent"
                .into()
        } else {
            format!("no usable credentials with {}", off.join(", "))
        });
    }
    Err(ConnectError::Auth(format!(
        "as {user}: {}",
        tried.join("; ")
    )))
}

/// Answers keyboard-interactive (RFC 4256) from the password file: every
/// echo-off prompt of the first round that has any gets the password; echoed
/// prompts (questions, not secrets) and later rounds (e.g. "new password")
/// get empty answers, so the password is sent at most once.
struct PasswordPrompter<'p> {
    password: &'p str,
    answered: bool,
    /// An echoed prompt was left unanswered (for the error message).
    refused_echo: bool,
}

impl<'p> PasswordPrompter<'p> {
    fn new(password: &'p str) -> Self {
        Self {
            password,
            answered: false,
            refused_echo: false,
        }
    }
}

impl ssh2::KeyboardInteractivePrompt for PasswordPrompter<'_> {
    fn prompt<'a>(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'a>],
    ) -> Vec<String> {
        let answer_now = !self.answered;
        let answers = prompts
            .iter()
            .map(|p| {
                if p.echo {
                    self.refused_echo = true;
                    String::new()
                } else if answer_now {
                    self.answered = true;
                    self.password.to_string()
                } else {
                    String::new()
                }
            })
            .collect();
        log::debug!(
            "keyboard-interactive round: {} prompt(s): {}",
            prompts.len(),
            prompts
                .iter()
                .map(|p| format!("{:?}{}", p.text.trim(), if p.echo { " (echo)" } else { "" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh2::KeyboardInteractivePrompt;

    fn prompt(text: &'static str, echo: bool) -> ssh2::Prompt<'static> {
        ssh2::Prompt {
            text: text.into(),
            echo,
        }
    }

    #[test]
    fn prompter_answers_echo_off_prompts_with_the_password_once() {
        let mut p = PasswordPrompter::new("pw");
        // A round with no prompts (an info message) does not use it up.
        assert!(p.prompt("u", "hello", &[]).is_empty());
        assert_eq!(
            p.prompt(
                "u",
                "",
                &[prompt("Password: ", false), prompt("Your name: ", true)]
            ),
            ["pw", ""]
        );
        assert!(p.refused_echo);
        // A second round (e.g. "New password:") never gets the password.
        assert_eq!(p.prompt("u", "", &[prompt("New password: ", false)]), [""]);
        let mut p = PasswordPrompter::new("pw");
        assert_eq!(p.prompt("u", "", &[prompt("Token: ", true)]), [""]);
        // Only echoed prompts so far: the password is still available.
        assert_eq!(
            p.prompt(
                "u",
                "",
                &[prompt("Password: ", false), prompt("Again: ", false)]
            ),
            ["pw", "pw"]
        );
    }

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

    #[test]
    fn method_lists_follow_ssh_config_syntax_over_libssh2s_list() {
        let sup = ["a", "b", "c", CHACHA];
        let r = |spec: Option<&str>, avoid: &[&str]| resolve_methods("Ciphers", spec, &sup, avoid);
        assert_eq!(
            r(None, &[]).as_deref(),
            Ok("a,b,c,chacha20-poly1305@openssh.com")
        );
        assert_eq!(r(Some("c,a"), &[]).as_deref(), Ok("c,a"));
        assert_eq!(
            r(Some("-b"), &[]).as_deref(),
            Ok("a,c,chacha20-poly1305@openssh.com")
        );
        assert_eq!(
            r(Some("^c"), &[]).as_deref(),
            Ok("c,a,b,chacha20-poly1305@openssh.com")
        );
        assert_eq!(
            r(Some("+a"), &[]).as_deref(),
            Ok("a,b,c,chacha20-poly1305@openssh.com")
        );
        // A failed self-test drops chacha20 from defaults and explicit lists.
        assert_eq!(r(None, &[CHACHA]).as_deref(), Ok("a,b,c"));
        assert_eq!(
            r(Some(&format!("{CHACHA},b")), &[CHACHA]).as_deref(),
            Ok("b")
        );
        let e = r(Some(CHACHA), &[CHACHA]).unwrap_err();
        assert!(e.contains("self-test failed"), "{e}");
        let e = r(Some("a,nope,zip"), &[]).unwrap_err();
        assert_eq!(
            e,
            "Ciphers: not supported by this build's libssh2: nope, zip \
             (supported: a,b,c,chacha20-poly1305@openssh.com)"
        );
        assert!(r(Some("-nope"), &[]).is_err());
        assert!(r(Some("+"), &[]).is_err());
        assert!(r(Some("-a,b,c,chacha20-poly1305@openssh.com"), &[]).is_err());
    }

    #[test]
    fn libssh2_supports_what_the_tests_and_docs_name() {
        let m = supported_methods().expect("libssh2 lists");
        for c in ["aes128-ctr", "aes256-ctr", CHACHA] {
            assert!(m.ciphers.iter().any(|x| x == c), "{c}: {:?}", m.ciphers);
        }
        assert!(!m.kex.is_empty() && !m.host_key.is_empty() && !m.macs.is_empty());
    }
}
