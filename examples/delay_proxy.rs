//! delay_proxy (cargo example, not installed): a userspace TCP proxy that adds a fixed one-way delay.
//!
//! Used by `scripts/bench.sh` to emulate a WAN round-trip time on machines
//! whose kernel has no netem:
//!
//! ```text
//! cargo run --release --example delay_proxy -- --listen 127.0.0.1:0 --connect 127.0.0.1:2222 --delay-ms 10
//! ```
//!
//! prints `listening on 127.0.0.1:PORT` on stdout once it accepts connections
//! (`:0` picks a free port). Each accepted connection is joined to a fresh
//! connection to `--connect`. The delay applies to each direction separately,
//! so the round-trip time seen through the proxy grows by twice `--delay-ms`.
//!
//! Per direction there is a reader thread and a writer thread joined by a
//! queue. The reader stamps every chunk with its due time (arrival + delay)
//! and queues it at once, so the proxy keeps reading while earlier chunks are
//! still "in flight": the link is a pipe with latency, not stop-and-wait, and
//! its bandwidth is not limited by the delay. The writer releases chunks in
//! order, each no earlier than its due time, and sleeps only until the due
//! time of the chunk at the head of the queue. End of stream is delayed like
//! data and propagated as a half-close (`shutdown(Write)`); a reset or write
//! failure tears down both directions. The queue holds at most
//! `--max-buffer-mib` MiB per direction (default 64); beyond that the reader
//! stops reading and TCP flow control pushes back on the sender.
//!
//! The proxy's own CPU competes with the clients it measures (a real WAN
//! costs the client host nothing): the reader wakes the writer only when
//! the queue was empty (a chunk queued behind others cannot be due before
//! them), and with `--delay-ms 0` (a plain relay) each direction is one
//! thread copying from socket to socket, with no queue.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Largest chunk read from a socket at once.
const CHUNK: usize = 256 * 1024;

/// Proxy settings.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Config {
    listen: String,
    connect: String,
    /// One-way delay, applied to each direction.
    delay: Duration,
    /// Bytes a direction may hold queued before its reader pauses.
    max_buffer: usize,
}

const USAGE: &str = "usage: coupafs-delay-proxy --listen ADDR:PORT --connect ADDR:PORT \
[--delay-ms MS] [--max-buffer-mib MIB]";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut listen = None;
    let mut connect = None;
    let mut delay_ms: u64 = 0;
    let mut max_buffer_mib: usize = 64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag {
            "--listen" => listen = Some(value()?),
            "--connect" => connect = Some(value()?),
            "--delay-ms" => {
                let v = value()?;
                delay_ms = v
                    .parse()
                    .map_err(|_| format!("--delay-ms: not a number of milliseconds: {v}"))?;
            }
            "--max-buffer-mib" => {
                let v = value()?;
                max_buffer_mib = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--max-buffer-mib: not a positive number: {v}"))?;
            }
            _ => return Err(format!("unknown argument '{arg}'\n{USAGE}")),
        }
    }
    Ok(Config {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        connect: connect.ok_or_else(|| format!("--connect is required\n{USAGE}"))?,
        delay: Duration::from_millis(delay_ms),
        max_buffer: max_buffer_mib.saturating_mul(1 << 20),
    })
}

/// What travels through a direction's queue.
enum Item {
    Data(Vec<u8>),
    /// The source sent FIN: half-close the destination.
    Eof,
    /// The source failed (reset): tear the connection down.
    Reset,
}

struct QueueState {
    items: VecDeque<(Instant, Item)>,
    bytes: usize,
    /// Set by the writer when the destination is gone; the reader stops.
    closed: bool,
}

/// Ordered, byte-bounded queue of timestamped chunks for one direction.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when an item is pushed or the queue is closed.
    pushed: Condvar,
    /// Signalled when bytes are popped or the queue is closed.
    popped: Condvar,
    max_bytes: usize,
}

impl Queue {
    fn new(max_bytes: usize) -> Self {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            pushed: Condvar::new(),
            popped: Condvar::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room (an empty queue always accepts one chunk, however
    /// large). Returns false if the writer side has closed.
    fn wait_for_room(&self) -> bool {
        let mut st = self.lock();
        while !st.closed && st.bytes > 0 && st.bytes >= self.max_bytes {
            st = self.popped.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.closed
    }

    /// Queues an item due at `due`. Returns false if the writer side has closed.
    fn push(&self, due: Instant, item: Item) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        if let Item::Data(d) = &item {
            st.bytes += d.len();
        }
        // The writer waits for a push only on an empty queue; otherwise it
        // waits for the head's due time, which a push behind it leaves as
        // it is (a wake-up per chunk would only cost CPU).
        let was_empty = st.items.is_empty();
        st.items.push_back((due, item));
        drop(st);
        if was_empty {
            self.pushed.notify_one();
        }
        true
    }

    /// Blocks until the head item exists and is due, then pops it.
    fn pop_due(&self) -> Item {
        let mut st = self.lock();
        loop {
            match st.items.front() {
                None => st = self.pushed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some((due, _)) => {
                    let now = Instant::now();
                    if *due <= now {
                        break;
                    }
                    let wait = *due - now;
                    // Only the head's due time matters: later items are due
                    // later (stamped in arrival order with the same delay).
                    st = self
                        .pushed
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        let (_, item) = st.items.pop_front().expect("head checked above");
        if let Item::Data(d) = &item {
            st.bytes -= d.len();
        }
        drop(st);
        self.popped.notify_one();
        item
    }

    /// Marks the destination gone: the reader stops and drops what it reads.
    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.items.clear();
        st.bytes = 0;
        drop(st);
        self.popped.notify_all();
        self.pushed.notify_all();
    }
}

/// Reads `src` and queues chunks stamped with their due time.
fn pump_reader(mut src: TcpStream, queue: &Queue, delay: Duration) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if !queue.wait_for_room() {
            break;
        }
        match src.read(&mut buf) {
            Ok(0) => {
                queue.push(Instant::now() + delay, Item::Eof);
                break;
            }
            Ok(n) => {
                if !queue.push(Instant::now() + delay, Item::Data(buf[..n].to_vec())) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                queue.push(Instant::now() + delay, Item::Reset);
                break;
            }
        }
    }
}

/// Writes due chunks to `dst` in order; on failure stops the source too.
fn pump_writer(mut dst: TcpStream, src: TcpStream, queue: &Queue) {
    loop {
        match queue.pop_due() {
            Item::Data(d) => {
                if dst.write_all(&d).is_err() {
                    break;
                }
            }
            Item::Eof => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Item::Reset => break,
        }
    }
    // Reset on the source or the destination is gone: end both directions.
    queue.close();
    let _ = dst.shutdown(Shutdown::Both);
    let _ = src.shutdown(Shutdown::Both);
}

/// With no delay: copies `src` to `dst` as it arrives (a relay).
fn pump_direct(mut src: TcpStream, mut dst: TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match src.read(&mut buf) {
            Ok(0) => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if dst.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    // Reset on the source or the destination is gone: end both directions.
    let _ = dst.shutdown(Shutdown::Both);
    let _ = src.shutdown(Shutdown::Both);
}

/// Starts the threads moving `src` to `dst`: through a delay queue, or
/// one copying thread when there is no delay.
fn spawn_direction(
    src: &TcpStream,
    dst: &TcpStream,
    cfg: &Config,
) -> io::Result<Vec<thread::JoinHandle<()>>> {
    if cfg.delay.is_zero() {
        let (r_src, w_dst) = (src.try_clone()?, dst.try_clone()?);
        let relay = thread::Builder::new()
            .name("proxy-relay".into())
            .spawn(move || pump_direct(r_src, w_dst))?;
        return Ok(vec![relay]);
    }
    let queue = Arc::new(Queue::new(cfg.max_buffer));
    let (r_src, w_dst, w_src) = (src.try_clone()?, dst.try_clone()?, src.try_clone()?);
    let delay = cfg.delay;
    let q = queue.clone();
    let reader = thread::Builder::new()
        .name("proxy-read".into())
        .spawn(move || pump_reader(r_src, &q, delay))?;
    let writer = thread::Builder::new()
        .name("proxy-write".into())
        .spawn(move || pump_writer(w_dst, w_src, &queue))?;
    Ok(vec![reader, writer])
}

fn connect_upstream(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Joins one accepted client to a new upstream connection.
fn handle(client: TcpStream, cfg: &Config) -> io::Result<()> {
    let upstream = connect_upstream(&cfg.connect)?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let mut threads = spawn_direction(&client, &upstream, cfg)?;
    threads.extend(spawn_direction(&upstream, &client, cfg)?);
    // The sockets close when the last clone drops, after all four threads end.
    drop((client, upstream));
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Accepts connections forever, one handler thread each.
fn serve(listener: TcpListener, cfg: Config) {
    let cfg = Arc::new(cfg);
    for conn in listener.incoming() {
        let client = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coupafs-delay-proxy: accept: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let cfg = cfg.clone();
        let spawned = thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || {
                let peer = client.peer_addr().ok();
                if let Err(e) = handle(client, &cfg) {
                    eprintln!(
                        "coupafs-delay-proxy: connection from {peer:?} to {}: {e}",
                        cfg.connect
                    );
                }
            });
        if let Err(e) = spawned {
            eprintln!("coupafs-delay-proxy: cannot start a connection thread: {e}");
        }
    }
}

/// Binds the listening socket; returns it with its actual address.
fn bind(cfg: &Config) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(&cfg.listen)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("coupafs-delay-proxy: {msg}");
            return ExitCode::from(2);
        }
    };
    let (listener, addr) = match bind(&cfg) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("coupafs-delay-proxy: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    println!("listening on {addr}");
    let _ = io::stdout().flush();
    serve(listener, cfg);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port; echoes until EOF, then half-closes.
    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                c.set_nodelay(true).unwrap();
                thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    io::copy(&mut r, &mut c).unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                });
            }
        });
        addr
    }

    /// A proxy in front of `upstream` with `delay_ms`; returns its address.
    fn proxy(upstream: SocketAddr, delay_ms: u64) -> SocketAddr {
        let cfg = parse_args(&[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--connect".into(),
            upstream.to_string(),
            "--delay-ms".into(),
            delay_ms.to_string(),
        ])
        .unwrap();
        let (listener, addr) = bind(&cfg).unwrap();
        assert_ne!(addr.port(), 0, "port 0 must be resolved to a real port");
        thread::spawn(move || serve(listener, cfg));
        addr
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Writes MIB MiB of a non-repeating pattern through `s` to the echo
    /// server while reading the echo, then half-closes: the echo must come
    /// back unchanged and end (our FIN went through and came back).
    fn echoes_unchanged(mut s: TcpStream, mib: u32) {
        let data: Vec<u8> = (0..mib << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut echoed = Vec::new();
        s.read_to_end(&mut echoed).unwrap();
        writer.join().unwrap();
        assert_eq!(echoed.len(), data.len());
        assert!(echoed == data, "bytes changed in transit");
    }

    /// An upstream that writes a greeting and closes at once: through a
    /// proxy with `delay_ms`, the client gets the greeting, then EOF.
    fn greeting_then_close_reach_client(delay_ms: u64) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"bye").unwrap();
        });
        let mut s = connect(proxy(up, delay_ms));
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye");
    }

    #[test]
    fn round_trip_takes_twice_the_delay_and_bytes_are_unchanged() {
        let delay = Duration::from_millis(60);
        let p = proxy(echo_server(), 60);
        let mut s = connect(p);

        let start = Instant::now();
        s.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        let rtt = start.elapsed();
        assert_eq!(&got, b"ping");
        assert!(rtt >= 2 * delay, "round trip {rtt:?} < 2 x {delay:?}");
        assert!(rtt < 2 * delay + Duration::from_millis(500), "rtt {rtt:?}");

        echoes_unchanged(s, 8);
    }

    #[test]
    fn pipelines_instead_of_stop_and_wait() {
        // 20 messages sent 5 ms apart: a pipe with latency returns the last
        // echo about 2 x delay after it was sent; a proxy that delays each
        // chunk behind the previous one would need 20 x delay or more.
        let delay = Duration::from_millis(100);
        let p = proxy(echo_server(), 100);
        let mut s = connect(p);
        let mut w = s.try_clone().unwrap();
        let n = 20;
        let start = Instant::now();
        let writer = thread::spawn(move || {
            for i in 0..n {
                w.write_all(&[i as u8; 1000]).unwrap();
                thread::sleep(Duration::from_millis(5));
            }
        });
        let mut got = vec![0u8; n * 1000];
        s.read_exact(&mut got).unwrap();
        let elapsed = start.elapsed();
        writer.join().unwrap();
        for (i, block) in got.chunks(1000).enumerate() {
            assert!(block.iter().all(|&b| b == i as u8), "block {i} reordered");
        }
        assert!(elapsed >= 2 * delay, "{elapsed:?} < 2 x {delay:?}");
        assert!(
            elapsed < 2 * delay + Duration::from_millis(5 * n as u64 + 300),
            "{n} messages took {elapsed:?}: the proxy does not pipeline"
        );
    }

    #[test]
    fn upstream_close_reaches_client() {
        greeting_then_close_reach_client(20);
    }

    #[test]
    fn a_relay_without_delay_carries_bytes_and_closes() {
        echoes_unchanged(connect(proxy(echo_server(), 0)), 4);
        greeting_then_close_reach_client(0);
    }

    #[test]
    fn argument_errors() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(a(&["--listen", "127.0.0.1:0"]).is_err());
        assert!(a(&["--listen", "x", "--connect", "y", "--delay-ms", "ten"]).is_err());
        assert!(a(&["--listen", "x", "--connect", "y", "--bogus"]).is_err());
        let c = a(&["--listen=x", "--connect", "y", "--delay-ms=10"]).unwrap();
        assert_eq!(c.delay, Duration::from_millis(10));
        assert_eq!(c.listen, "x");
        assert_eq!(c.max_buffer, 64 << 20);
    }
}
