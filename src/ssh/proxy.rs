//! The byte stream an SSH session runs over when it is not a plain TCP
//! connection, and which addresses a TCP connection may use.
//!
//! - `ProxyCommand`: run through `/bin/sh -c "exec CMD"` (as ssh does) with
//!   its stdin and stdout on one end of a `socketpair(AF_UNIX, SOCK_STREAM)`;
//!   libssh2 gets the other end (it needs a socket: it uses send/recv, and
//!   the engine polls the descriptor). Its stderr goes to the log. The child
//!   is killed by PID and reaped when the connection ends.
//! - `ProxyJump`: turned into the ProxyCommand `ssh -W [%h]:%p HOST`, so
//!   OpenSSH's client (its known_hosts, keys and agent) reaches the jump host.
//! - HTTP CONNECT (RFC 9110 9.3.6) and SOCKS5 (RFC 1928, with RFC 1929
//!   user/password): the handshake is done here over a TcpStream to the
//!   proxy, and the stream is then handed to libssh2.
//! - `AddressFamily`: which resolved addresses are tried.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;

use super::params::{AddressFamily, ConnectError, ConnectParams, ProxyServer, Route, Secret};
use crate::sync::lock;

/// Parses `http://[USER:PASS@]HOST:PORT` or `socks5://[USER:PASS@]HOST:PORT`
/// (`socks5h://` is accepted as a synonym: the proxy always resolves the
/// server's name here). User and password may be percent-encoded. Errors
/// never repeat the password.
pub(crate) fn parse_proxy_url(url: &str) -> Result<Route, String> {
    let bad = |why: &str| {
        // Shown without the credentials.
        let shown = match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        };
        format!("invalid proxy URL '{shown}': {why}")
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected http://HOST:PORT or socks5://HOST:PORT"))?;
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => {
            let (user, pass) = a.split_once(':').unwrap_or((a, ""));
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
            let pass = percent_decode(pass).ok_or_else(|| bad("bad %-escape in the password"))?;
            (Some((user, Secret::new(pass))), h)
        }
        None => (None, rest),
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 8080,
        "socks5" | "socks5h" => 1080,
        _ => return Err(bad("the scheme must be http or socks5")),
    };
    let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
    let server = ProxyServer {
        host,
        port: port.unwrap_or(default_port),
        auth,
    };
    Ok(if default_port == 8080 {
        Route::HttpConnect(server)
    } else {
        Route::Socks5(server)
    })
}

/// `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_string())?;
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err("expected :PORT after ']'".into()),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return Err("expected a host name".into());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| format!("invalid port '{p}'"))?,
        ),
    };
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One `ProxyJump` hop: `[USER@]HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JumpHost {
    pub(crate) user: Option<String>,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

/// Parses `ProxyJump`'s comma-separated `[USER@]HOST[:PORT]` list (an
/// `ssh://` prefix is allowed, as in ssh).
pub(crate) fn parse_jump(spec: &str) -> Result<Vec<JumpHost>, String> {
    spec.split(',')
        .map(|hop| {
            let hop = hop.trim();
            let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
            let (user, hostport) = match hop.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
                Some(_) => return Err(format!("invalid ProxyJump '{spec}': empty user")),
                None => (None, hop),
            };
            if user.as_deref().is_some_and(|u| u.starts_with('-')) || hostport.starts_with('-') {
                return Err(format!(
                    "invalid ProxyJump '{spec}': a name may not start with '-'"
                ));
            }
            let (host, port) = split_host_port(hostport)
                .map_err(|e| format!("invalid ProxyJump '{spec}': {e}"))?;
            Ok(JumpHost { user, host, port })
        })
        .collect()
}

/// `ssh -W`: the last hop forwards to the server, earlier hops go to `-J`.
/// BatchMode: nobody can answer a prompt from a mount daemon.
fn jump_command(spec: &str, ssh_config: Option<&std::path::Path>) -> Result<String, String> {
    let hops = parse_jump(spec)?;
    let (last, before) = hops
        .split_last()
        .ok_or_else(|| format!("invalid ProxyJump '{spec}': no host"))?;
    let mut cmd = String::from("ssh");
    if let Some(f) = ssh_config {
        cmd.push_str(&format!(" -F {}", shell_quote(&f.to_string_lossy())));
    }
    cmd.push_str(" -o BatchMode=yes -o ClearAllForwardings=yes");
    if !before.is_empty() {
        let j: Vec<String> = before.iter().map(hop_text).collect();
        cmd.push_str(&format!(" -J {}", shell_quote(&j.join(","))));
    }
    if let Some(u) = &last.user {
        cmd.push_str(&format!(" -l {}", shell_quote(u)));
    }
    if let Some(p) = last.port {
        cmd.push_str(&format!(" -p {p}"));
    }
    cmd.push_str(&format!(" -W '[%h]:%p' {}", shell_quote(&last.host)));
    Ok(cmd)
}

fn hop_text(h: &JumpHost) -> String {
    let mut s = String::new();
    if let Some(u) = &h.user {
        s.push_str(u);
        s.push('@');
    }
    if h.host.contains(':') {
        s.push_str(&format!("[{}]", h.host));
    } else {
        s.push_str(&h.host);
    }
    if let Some(p) = h.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Expands ProxyCommand's `%h` (host), `%p` (port), `%r` (remote user) and
/// `%%`, as ssh does; other `%x` stay as typed.
pub(crate) fn expand_command(template: &str, host: &str, port: u16, user: &str) -> String {
    expand_tokens(template, |c| match c {
        'h' => Some(host.to_string()),
        'p' => Some(port.to_string()),
        'r' => Some(user.to_string()),
        _ => None,
    })
}

/// ssh_config's `%` tokens: `%%` is `%`, `%x` is `token('x')` when that is
/// known, and anything else (an unknown `%x`, a trailing `%`) stays as
/// typed.
pub(crate) fn expand_tokens(template: &str, token: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(other) => match token(other) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push('%');
                    out.push(other);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// Whether `host` is in `no_proxy`: `*`; an exact name or address; or a
/// domain (`example.com` or `.example.com`) of which `host` is a subdomain.
/// Case-insensitive; a `:PORT` on an entry is ignored.
pub(crate) fn no_proxy_matches(host: &str, no_proxy: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.iter().any(|entry| {
        let e = entry.trim().to_ascii_lowercase();
        let e = match e.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
            None if e.matches(':').count() == 1 => e.split(':').next().unwrap_or("").to_string(),
            None => e,
        };
        let domain = e.trim_start_matches('.').trim_end_matches('.');
        if e == "*" {
            return true;
        }
        !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
    })
}

/// The addresses `AddressFamily` allows, in the resolver's order.
pub(crate) fn filter_family(addrs: Vec<SocketAddr>, family: AddressFamily) -> Vec<SocketAddr> {
    addrs
        .into_iter()
        .filter(|a| match family {
            AddressFamily::Any => true,
            AddressFamily::Inet => a.is_ipv4(),
            AddressFamily::Inet6 => a.is_ipv6(),
        })
        .collect()
}

/// A ProxyCommand child: killed by PID and reaped when dropped (the
/// connection ended).
pub(crate) struct ProxyChild {
    child: Child,
    /// Its last few stderr lines, for the error when the handshake fails.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
}

/// How many of the command's last stderr lines an error quotes.
const STDERR_TAIL: usize = 4;

impl ProxyChild {
    /// Why the command did not carry a session, for the handshake error: its
    /// exit status and last stderr lines. Waits up to a second for it to
    /// exit (a failing ssh -W prints its reason, then exits).
    pub(crate) fn failure_note(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break None,
            }
        };
        // The logging thread ends at EOF on stderr, i.e. once the command
        // (and anything it left holding stderr) is gone.
        while self
            .stderr_thread
            .as_ref()
            .is_some_and(|t| !t.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let lines: Vec<String> = lock(&self.stderr_tail).iter().cloned().collect();
        let state = match status {
            Some(st) => format!("ProxyCommand exited ({st})"),
            None => "ProxyCommand still running".to_string(),
        };
        if lines.is_empty() {
            format!("{state}, printing nothing on stderr")
        } else {
            format!("{state}: {}", lines.join("; "))
        }
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        // SIGKILL (Child::kill) by PID; wait reaps it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stream a session runs over.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// A socketpair end whose peer is a ProxyCommand's stdin/stdout.
    Command(UnixStream, ProxyChild),
}

impl Stream {
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Command(s, _) => s.as_raw_fd(),
        }
    }
}

/// Opens the stream to `params.host:params.port` the way `params.reach`
/// says.
pub(crate) fn open(params: &ConnectParams) -> Result<Stream, ConnectError> {
    let reach = &params.reach;
    match &reach.route {
        Route::Direct => connect_tcp(params, &params.host, params.port).map(Stream::Tcp),
        Route::Command(template) => {
            let cmd = expand_command(template, &params.host, params.port, &params.user);
            spawn_command(&cmd)
        }
        Route::Jump { hosts, ssh_config } => {
            let template =
                jump_command(hosts, ssh_config.as_deref()).map_err(ConnectError::Unreachable)?;
            let cmd = expand_command(&template, &params.host, params.port, &params.user);
            spawn_command(&cmd)
        }
        Route::HttpConnect(_) | Route::Socks5(_)
            if no_proxy_matches(&params.host, &reach.no_proxy) =>
        {
            log::debug!("{} is in no_proxy: connecting directly", params.host);
            connect_tcp(params, &params.host, params.port).map(Stream::Tcp)
        }
        Route::HttpConnect(proxy) => {
            let mut s = connect_tcp(params, &proxy.host, proxy.port)?;
            with_handshake_timeout(&mut s, params.connect_timeout, |s| {
                http_connect(s, proxy, &params.host, params.port)
            })
            .map_err(|e| {
                ConnectError::Unreachable(format!("HTTP proxy {}:{}: {e}", proxy.host, proxy.port))
            })?;
            Ok(Stream::Tcp(s))
        }
        Route::Socks5(proxy) => {
            let mut s = connect_tcp(params, &proxy.host, proxy.port)?;
            with_handshake_timeout(&mut s, params.connect_timeout, |s| {
                socks5_connect(s, proxy, &params.host, params.port)
            })
            .map_err(|e| {
                ConnectError::Unreachable(format!(
                    "SOCKS5 proxy {}:{}: {e}",
                    proxy.host, proxy.port
                ))
            })?;
            Ok(Stream::Tcp(s))
        }
    }
}

/// The proxy handshake may not wait longer than ConnectTimeout.
fn with_handshake_timeout(
    s: &mut TcpStream,
    timeout: Duration,
    f: impl FnOnce(&mut TcpStream) -> io::Result<()>,
) -> io::Result<()> {
    let t = Some(timeout).filter(|t| !t.is_zero());
    s.set_read_timeout(t)?;
    s.set_write_timeout(t)?;
    let r = f(s);
    s.set_read_timeout(None)?;
    s.set_write_timeout(None)?;
    r
}

fn spawn_command(cmd: &str) -> Result<Stream, ConnectError> {
    let fail = |what: &str, e: io::Error| {
        ConnectError::Unreachable(format!("ProxyCommand '{cmd}': {what}: {e}"))
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| fail("socketpair", e))?;
    let theirs_out = theirs.try_clone().map_err(|e| fail("socketpair", e))?;
    // `exec`, as ssh does: the PID we kill is the command itself, not a shell.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("cannot start /bin/sh", e))?;
    // The Command (and with it our copies of the child's ends) is gone, so
    // the child exiting reads as EOF on `ours`.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut stderr_thread = None;
    if let Some(err) = child.stderr.take() {
        let pid = child.id();
        let tail = stderr_tail.clone();
        let spawned = std::thread::Builder::new()
            .name("proxy-stderr".into())
            .spawn(move || {
                for line in BufReader::new(err).lines() {
                    match line {
                        Ok(l) if !l.trim().is_empty() => {
                            let l = l.trim_end().to_string();
                            log::warn!("ProxyCommand (pid {pid}): {l}");
                            let mut t = lock(&tail);
                            if t.len() == STDERR_TAIL {
                                t.pop_front();
                            }
                            t.push_back(l);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
        match spawned {
            Ok(t) => stderr_thread = Some(t),
            Err(e) => log::warn!("cannot start the thread logging ProxyCommand's stderr: {e}"),
        }
    }
    log::info!(
        "connecting through ProxyCommand (pid {}): {cmd}",
        child.id()
    );
    Ok(Stream::Command(
        ours,
        ProxyChild {
            child,
            stderr_tail,
            stderr_thread,
        },
    ))
}

/// Resolves `host:port`, keeps the addresses AddressFamily allows, and
/// connects to the first that answers.
fn connect_tcp(params: &ConnectParams, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Unreachable(format!("cannot resolve {host}:{port}: {e}")))?
        .collect();
    let family = params.reach.address_family;
    let addrs = filter_family(resolved.clone(), family);
    if addrs.is_empty() && !resolved.is_empty() {
        let (want, kind) = match family {
            AddressFamily::Inet => ("inet", "IPv4"),
            AddressFamily::Inet6 => ("inet6", "IPv6"),
            AddressFamily::Any => ("any", "usable"),
        };
        let found: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
        return Err(ConnectError::Unreachable(format!(
            "{host} has no {kind} address (AddressFamily={want}); it resolves to {}",
            found.join(", ")
        )));
    }
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
        format!("{host}:{port} resolved to no address")
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

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends `CONNECT host:port` and reads the reply header byte by byte: the
/// SSH server speaks first, so nothing after the blank line may be consumed.
fn http_connect(s: &mut TcpStream, proxy: &ProxyServer, host: &str, port: u16) -> io::Result<()> {
    let target = authority(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = &proxy.auth {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.expose()));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("reply header longer than 16 KiB"));
        }
        match s.read(&mut byte)? {
            0 => {
                return Err(io::Error::other(format!(
                    "closed the connection before answering CONNECT {target}"
                )))
            }
            _ => head.push(byte[0]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) if status_line.starts_with("HTTP/") => Ok(()),
        _ => Err(io::Error::other(format!(
            "refused CONNECT {target}: {status_line}"
        ))),
    }
}

/// RFC 1928 reply codes.
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// RFC 1928 greeting (no-auth, plus user/password when given), RFC 1929
/// sub-negotiation, then CONNECT with the name (ATYP 3) or the address.
fn socks5_connect(s: &mut TcpStream, proxy: &ProxyServer, host: &str, port: u16) -> io::Result<()> {
    let fail = |m: String| Err(io::Error::other(m));
    let greeting: &[u8] = if proxy.auth.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    s.write_all(greeting)?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    if r[0] != 5 {
        return fail(format!("not a SOCKS5 proxy (version {})", r[0]));
    }
    match (r[1], &proxy.auth) {
        (0, _) => {}
        (2, Some((user, pass))) => {
            let (u, p) = (user.as_bytes(), pass.expose().as_bytes());
            if u.len() > 255 || p.len() > 255 {
                return fail("SOCKS5 user name or password longer than 255 bytes".into());
            }
            let mut m = vec![1, u.len() as u8];
            m.extend_from_slice(u);
            m.push(p.len() as u8);
            m.extend_from_slice(p);
            s.write_all(&m)?;
            s.read_exact(&mut r)?;
            if r[1] != 0 {
                return fail(format!("rejected user name/password for '{user}'"));
            }
        }
        (0xff, None) => {
            return fail("requires authentication: give socks5://USER:PASS@HOST:PORT".into())
        }
        (0xff, Some(_)) => {
            return fail("accepts none of the offered authentication methods".into())
        }
        (m, _) => {
            return fail(format!(
                "chose authentication method {m}, which was not offered"
            ))
        }
    }
    let mut req = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return fail(format!("host name {host} is longer than 255 bytes"));
            }
            req.push(3);
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[1] != 0 {
        return fail(format!(
            "refused CONNECT {}: reply {} ({})",
            authority(host, port),
            head[1],
            socks5_reply_text(head[1])
        ));
    }
    // Skip the bound address the reply carries.
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            usize::from(l[0])
        }
        t => return fail(format!("bad address type {t} in the reply")),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest)?;
    Ok(())
}

#[cfg(test)]
mod tests;
