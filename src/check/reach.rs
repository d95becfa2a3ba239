//! The network steps of `coupafs check` before SSH: name resolution, a TCP
//! connection and the server's banner, and how a failed SSH connection is
//! reported on the step it failed at.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::ssh::{ConnectError, ConnectParams};

use super::report::Report;
use super::{ms, BANNER_TIMEOUT};

/// `dns` and `tcp`: resolve and open a TCP connection, timed, and read the
/// server's SSH banner. False when the server cannot be reached. This probe
/// connection is closed before the SSH handshake (servers log it as a
/// pre-auth disconnect); the SSH checks use a connection of their own.
pub(super) fn check_reachable<W: Write>(p: &ConnectParams, rep: &mut Report<W>) -> bool {
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = match (p.host.as_str(), p.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            rep.fail("dns", format!("cannot resolve {}: {e}", p.host));
            return false;
        }
    };
    let took = t.elapsed();
    if addrs.is_empty() {
        rep.fail("dns", format!("{} resolved to no address", p.host));
        return false;
    }
    let mut ips: Vec<String> = Vec::new();
    for a in &addrs {
        let ip = a.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    rep.ok(
        "dns",
        format!("{} resolved to {} in {}", p.host, ips.join(", "), ms(took)),
    );

    let mut errors = Vec::new();
    for addr in &addrs {
        let t = Instant::now();
        match TcpStream::connect_timeout(addr, p.connect_timeout) {
            Ok(stream) => {
                let took = t.elapsed();
                let banner = match read_banner(&stream, p.connect_timeout.min(BANNER_TIMEOUT)) {
                    Some(b) => format!("server banner {b}"),
                    None => "no SSH banner yet (the SSH check below decides)".to_string(),
                };
                rep.ok(
                    "tcp",
                    format!("connected to {addr} in {}; {banner}", ms(took)),
                );
                return true;
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    rep.fail(
        "tcp",
        format!(
            "cannot connect to port {} of {}: {}",
            p.port,
            p.host,
            errors.join("; ")
        ),
    );
    false
}

/// The server's identification line (`SSH-2.0-...`), which it sends first.
/// Lines before it are allowed by RFC 4253 and skipped.
fn read_banner(stream: &TcpStream, timeout: Duration) -> Option<String> {
    stream.set_read_timeout(Some(timeout)).ok()?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    let mut s = stream;
    while buf.len() < 4096 && Instant::now() < deadline {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        // Only complete lines.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        if let Some(line) = buf[..end]
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"SSH-"))
        {
            let line = String::from_utf8_lossy(line);
            return Some(line.trim_end_matches('\r').to_string());
        }
    }
    None
}

/// Puts a failed SSH connection on the line of the step that failed.
pub(super) fn report_connect_error<W: Write>(e: &ConnectError, rep: &mut Report<W>) {
    // Steps run in order handshake, host key, auth, sftp: the failing one
    // tells which passed.
    let accepted = "accepted (details not available: a later step failed)";
    match e {
        ConnectError::Unreachable(_) | ConnectError::Handshake(_) => rep.fail("ssh", e),
        ConnectError::HostKey(m) => rep.fail("host key", format!("verification failed: {m}")),
        ConnectError::Auth(m) => {
            rep.ok("host key", accepted);
            rep.fail("auth", format!("login refused {m}"));
        }
        ConnectError::Sftp(m) => {
            rep.ok("host key", accepted);
            rep.ok("auth", "accepted");
            rep.fail("sftp", m);
        }
    }
}
