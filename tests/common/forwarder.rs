//! A TCP forwarder between coupafs and the sandbox's sshd, for the tests
//! that break the network on purpose (tests/faults.rs, tests/network.rs):
//! it can cut the link (the server is gone), black-hole it (the sockets stay
//! open, nothing gets through) or slow every forwarded chunk down; and a
//! mount of the sandbox through it ([`mount_through`]).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Mount, Sandbox};

/// Listens on a port of its own on 127.0.0.1 and forwards each connection
/// to `127.0.0.1:target_port`. Dropping it closes every forwarded link.
pub struct Forwarder {
    /// The port coupafs connects to instead of the sandbox's.
    pub port: u16,
    cut: Arc<AtomicBool>,
    blackhole: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    /// Each forwarded connection's delay per chunk, in microseconds.
    delays: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(target_port: u16) -> Forwarder {
        Self::start_with_delay(target_port, Duration::ZERO)
    }

    /// Each forwarded chunk waits `delay` (a slower, longer link: requests
    /// pile up in flight the way they do over a WAN).
    pub fn start_with_delay(target_port: u16, delay: Duration) -> Forwarder {
        Self::start_with_delays(target_port, &[delay])
    }

    /// Like `start_with_delay`, each connection with its own delay: the
    /// n-th accepted gets `delays[n]` (the last one from then on). Two
    /// connections of one client then see the server in a known order.
    pub fn start_with_delays(target_port: u16, delays: &[Duration]) -> Forwarder {
        let delays = delays.to_vec();
        assert!(!delays.is_empty(), "at least one delay");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let port = listener.local_addr().expect("local addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let blackhole = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let sockets = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let live_delays = Arc::new(Mutex::new(Vec::<Arc<AtomicU64>>::new()));
        let acceptor = {
            let (cut, blackhole, stop, accepted, sockets, live_delays) = (
                cut.clone(),
                blackhole.clone(),
                stop.clone(),
                accepted.clone(),
                sockets.clone(),
                live_delays.clone(),
            );
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    if cut.load(Ordering::SeqCst) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                        continue;
                    };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let delay = delays[n.min(delays.len() - 1)];
                    let delay = Arc::new(AtomicU64::new(delay.as_micros() as u64));
                    live_delays.lock().unwrap().push(delay.clone());
                    for s in [&client, &server] {
                        if let Ok(c) = s.try_clone() {
                            sockets.lock().unwrap().push(c);
                        }
                    }
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                        let (blackhole, stop, delay) =
                            (blackhole.clone(), stop.clone(), delay.clone());
                        thread::spawn(move || pump(from, to, &blackhole, &stop, &delay));
                    }
                }
            })
        };
        Forwarder {
            port,
            cut,
            blackhole,
            stop,
            accepted,
            sockets,
            delays: live_delays,
            acceptor: Some(acceptor),
        }
    }

    /// The server goes away: every forwarded link is shut down and new
    /// connections are closed at once, until [`Forwarder::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// New connections are forwarded again after [`Forwarder::cut`].
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// While on, everything sent either way is read and dropped: the
    /// sockets stay open and the sender's kernel sees its bytes
    /// acknowledged, but nothing gets through (a black hole).
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }

    /// From now on, each chunk forwarded either way on the `n`-th accepted
    /// connection (from 0) waits `delay`: one connection of a client turns
    /// slow while the others stay as they are.
    pub fn set_delay(&self, n: usize, delay: Duration) {
        let delays = self.delays.lock().unwrap();
        let d = delays
            .get(n)
            .unwrap_or_else(|| panic!("connection {n} not accepted (only {})", delays.len()));
        d.store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// How many connections were forwarded so far (not those refused while
    /// cut).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until EOF or error; while `blackhole` is set, reads
/// and discards. EOF is passed on as EOF (a half-close, as TCP does end to
/// end); the read timeout lets the thread see `stop` on an idle link.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    blackhole: &AtomicBool,
    stop: &AtomicBool,
    delay: &AtomicU64,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let delay = delay.load(Ordering::SeqCst);
                if delay > 0 {
                    thread::sleep(Duration::from_micros(delay));
                }
                if !blackhole.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake accept()
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// known_hosts for the sandbox's keys under another port, written in `dir`.
pub fn known_hosts_for_port(sb: &Sandbox, port: u16, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(&sb.known_hosts).expect("read the sandbox's known_hosts");
    let text = text.replace(&format!("]:{} ", sb.port), &format!("]:{port} "));
    let path = dir.join("known_hosts");
    fs::write(&path, text).expect("write known_hosts");
    path
}

/// Mounts the sandbox through `fwd` with the sandbox key, a known_hosts
/// entry for the forwarder's port (written in `work`) and `extra` -o options.
pub fn mount_through(sb: &Sandbox, fwd: &Forwarder, work: &Path, extra: &str) -> Mount {
    let kh = known_hosts_for_port(sb, fwd.port, work);
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={},{extra}",
        sb.key.display(),
        kh.display()
    );
    Mount::spawn(
        &["-p", &fwd.port.to_string(), &sb.target()],
        &["-o", &opts],
        &[],
    )
    .unwrap_or_else(|log| panic!("mount through the forwarder failed:\n{log}"))
}
