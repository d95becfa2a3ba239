//! The request engine over an in-memory byte pipe (a Unix socket pair): the
//! test plays the SFTP server on the other end, reading requests with the
//! codec's `Framer` and writing replies the codec's `decode_response` reads.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};

use super::*;
use crate::sftp::{fxp, status, Framer, Version};
use crate::ssh::HostKeyStatus;

/// The engine's end: non-blocking, as libssh2's channel is.
struct SocketPipe {
    s: UnixStream,
    eof: bool,
}

impl Pipe for SocketPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.s.read(buf)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write(buf)
    }
    fn eof(&self) -> bool {
        self.eof
    }
    fn poll_target(&self) -> (RawFd, libc::c_short) {
        (self.s.as_raw_fd(), libc::POLLIN)
    }
    fn buffered(&self) -> bool {
        false
    }
    fn write_room(&self) -> bool {
        true
    }
    fn shutdown(&mut self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}

/// The test's end: plays the server.
struct Server {
    s: UnixStream,
    framer: Framer,
}

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    ty: u8,
    id: u32,
    /// The first string field (the path, for STAT).
    first: Vec<u8>,
}

impl Server {
    fn next_request(&mut self) -> Seen {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(p) = self.framer.next_packet().expect("client framing") {
                let id = u32::from_be_bytes(p[1..5].try_into().expect("id"));
                let len = u32::from_be_bytes(p[5..9].try_into().expect("len")) as usize;
                return Seen {
                    ty: p[0],
                    id,
                    first: p[9..9 + len].to_vec(),
                };
            }
            let n = self.s.read(&mut buf).expect("read request");
            assert!(n > 0, "client closed the pipe");
            self.framer.push(&buf[..n]);
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send reply");
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// SSH_FXP_HANDLE (filexfer-02 section 7): type, id, string handle.
fn handle_reply(id: u32, handle: &[u8]) -> Vec<u8> {
    let mut b = vec![fxp::HANDLE];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&(handle.len() as u32).to_be_bytes());
    b.extend_from_slice(handle);
    framed(&b)
}

/// SSH_FXP_STATUS: type, id, code, message, language tag.
fn status_reply(id: u32, code: u32) -> Vec<u8> {
    let mut b = vec![fxp::STATUS];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&2u32.to_be_bytes());
    b.extend_from_slice(b"ok");
    b.extend_from_slice(&0u32.to_be_bytes());
    framed(&b)
}

#[test]
fn crafted_replies_are_what_the_codec_decodes() {
    let h = handle_reply(7, b"abc");
    assert_eq!(
        sftp::decode_response(&h[4..]),
        Ok((7, Response::Handle(b"abc".to_vec())))
    );
    let s = status_reply(8, status::OK);
    assert_eq!(
        sftp::decode_response(&s[4..]),
        Ok((
            8,
            Response::Status {
                code: status::OK,
                message: "ok".into()
            }
        ))
    );
}

const LIVELY: Liveness = Liveness {
    dead_after: Duration::from_secs(20),
    keepalive: Duration::ZERO,
    idle_poll: Duration::from_millis(500),
};

fn rig(liveness: Liveness) -> (Connection, Server) {
    let (mut conns, mut servers) = rig_lanes(liveness, 1);
    (conns.swap_remove(0), servers.swap_remove(0))
}

/// `lanes` channels served by one I/O thread, each with its own server end.
fn rig_lanes(liveness: Liveness, lanes: usize) -> (Vec<Connection>, Vec<Server>) {
    let mut ends = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..lanes {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        ends.push((
            SocketPipe {
                s: ours,
                eof: false,
            },
            Framer::new(),
            test_info(),
        ));
        servers.push(Server {
            s: theirs,
            framer: Framer::new(),
        });
    }
    let conns = Connection::start_lanes(ends, liveness).expect("start");
    (conns, servers)
}

fn test_info() -> ConnInfo {
    ConnInfo {
        version: Version {
            version: 3,
            extensions: Vec::new(),
        },
        init_rtt: Duration::ZERO,
        auth_method: "test".into(),
        host_key_fingerprint: "SHA256:test".into(),
        host_key_status: HostKeyStatus::Known,
        cipher: "test".into(),
    }
}

type Outcome = (usize, Result<Response, ConnError>);

/// Submits STAT of "0", "1", ... with completions that report their index
/// and count their calls.
fn submit_stats(conn: &Connection, n: usize) -> (Receiver<Outcome>, Arc<Vec<AtomicUsize>>) {
    let (tx, rx): (Sender<Outcome>, _) = mpsc::channel();
    let calls: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    for i in 0..n {
        let tx = tx.clone();
        let calls = calls.clone();
        conn.submit(
            &Request::Stat {
                path: i.to_string().into_bytes(),
            },
            Box::new(move |r| {
                calls[i].fetch_add(1, Ordering::SeqCst);
                let _ = tx.send((i, r));
            }),
        );
    }
    (rx, calls)
}

fn recv(rx: &Receiver<Outcome>) -> Outcome {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a completion within 10 s")
}

fn wait_dead(conn: &Connection) {
    let until = Instant::now() + Duration::from_secs(10);
    while !conn.is_dead() {
        assert!(Instant::now() < until, "connection never declared dead");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ids_are_unique_and_increasing_and_each_reply_reaches_its_caller() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, _) = submit_stats(&conn, 3);
    let seen: Vec<Seen> = (0..3).map(|_| server.next_request()).collect();
    assert!(seen.iter().all(|s| s.ty == fxp::STAT), "{seen:?}");
    let ids: Vec<u32> = seen.iter().map(|s| s.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids {ids:?}");
    // Answer each request with its own path as the handle, in order.
    for s in &seen {
        server.send(&handle_reply(s.id, &s.first));
    }
    for _ in 0..3 {
        let (i, r) = recv(&rx);
        assert_eq!(r, Ok(Response::Handle(i.to_string().into_bytes())));
    }
    assert_eq!(conn.in_flight(), 0);
}

#[test]
fn replies_out_of_order_complete_the_right_callers() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, calls) = submit_stats(&conn, 5);
    let seen: Vec<Seen> = (0..5).map(|_| server.next_request()).collect();
    // Reversed, with one interleaved pair sent in a single write.
    let mut order: Vec<&Seen> = seen.iter().rev().collect();
    order.swap(1, 2);
    let mut burst = handle_reply(order[0].id, &order[0].first);
    burst.extend(handle_reply(order[1].id, &order[1].first));
    server.send(&burst);
    for s in &order[2..] {
        server.send(&handle_reply(s.id, &s.first));
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let (i, r) = recv(&rx);
        assert_eq!(
            r,
            Ok(Response::Handle(i.to_string().into_bytes())),
            "caller {i}"
        );
        got.push(i);
    }
    let expected: Vec<usize> = order
        .iter()
        .map(|s| String::from_utf8_lossy(&s.first).parse().expect("index"))
        .collect();
    assert_eq!(got, expected, "completions run in reply order");
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    assert!(!conn.is_dead());
}

#[test]
fn a_reply_split_across_reads_completes_once_whole() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, _) = submit_stats(&conn, 1);
    let s = server.next_request();
    let reply = handle_reply(s.id, b"whole");
    // The length prefix and part of the body: nothing may complete yet.
    server.send(&reply[..7]);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(200)).err(),
        Some(RecvTimeoutError::Timeout),
        "a partial packet completed a caller"
    );
    server.send(&reply[7..]);
    assert_eq!(recv(&rx), (0, Ok(Response::Handle(b"whole".to_vec()))));
    assert!(!conn.is_dead());
}

#[test]
fn a_truncated_packet_fails_the_connection_and_every_caller() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, calls) = submit_stats(&conn, 2);
    let s = server.next_request();
    let _ = server.next_request();
    // A whole frame whose STATUS body stops after the id (no code).
    let mut body = vec![fxp::STATUS];
    body.extend_from_slice(&s.id.to_be_bytes());
    server.send(&framed(&body));
    for _ in 0..2 {
        let (i, r) = recv(&rx);
        match r {
            Err(ConnError::Disconnected(m)) => assert!(m.contains("malformed"), "{m}"),
            other => panic!("caller {i}: {other:?}"),
        }
    }
    wait_dead(&conn);
    drop(conn);
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
}

#[test]
fn a_reply_for_an_unknown_id_fails_the_connection() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, calls) = submit_stats(&conn, 2);
    let a = server.next_request();
    let b = server.next_request();
    let unknown = a.id.max(b.id) + 1000;
    server.send(&handle_reply(unknown, b"stray"));
    for _ in 0..2 {
        let (i, r) = recv(&rx);
        match r {
            Err(ConnError::Disconnected(m)) => {
                assert!(m.contains(&format!("unknown request id {unknown}")), "{m}")
            }
            other => panic!("caller {i} completed with {other:?}"),
        }
    }
    wait_dead(&conn);
    // A late real reply has nobody left to reach; new requests are refused
    // at once without leaving the process.
    let (rx2, _) = submit_stats(&conn, 1);
    assert!(matches!(recv(&rx2), (0, Err(ConnError::NotSent(_)))));
    drop(conn);
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
}

#[test]
fn losing_the_link_completes_every_outstanding_request_exactly_once() {
    let (conn, mut server) = rig(LIVELY);
    let n = 10;
    let (rx, calls) = submit_stats(&conn, n);
    let seen: Vec<Seen> = (0..n).map(|_| server.next_request()).collect();
    for s in &seen[..3] {
        server.send(&handle_reply(s.id, &s.first));
    }
    drop(server); // the server goes away with 7 requests unanswered
    let mut ok = 0;
    let mut lost = 0;
    for _ in 0..n {
        match recv(&rx) {
            (i, Ok(r)) => {
                assert_eq!(r, Response::Handle(i.to_string().into_bytes()));
                ok += 1;
            }
            (_, Err(ConnError::Disconnected(m))) => {
                assert!(m.contains("server closed"), "{m}");
                lost += 1;
            }
            (i, other) => panic!("caller {i}: {other:?}"),
        }
    }
    assert_eq!((ok, lost), (3, 7));
    wait_dead(&conn);
    assert_eq!(conn.in_flight(), 0);
    drop(conn); // joins the I/O thread: no completion may run after this
    let counts: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, vec![1; n]);
    assert!(rx.try_recv().is_err(), "a completion ran twice");
}

#[test]
fn a_silent_server_is_declared_dead_after_the_bound() {
    let (conn, mut server) = rig(Liveness {
        dead_after: Duration::from_millis(100),
        keepalive: Duration::ZERO,
        idle_poll: Duration::from_millis(500),
    });
    let (rx, _) = submit_stats(&conn, 1);
    let _ = server.next_request();
    match recv(&rx) {
        (0, Err(ConnError::Disconnected(m))) => assert!(m.contains("no reply"), "{m}"),
        other => panic!("{other:?}"),
    }
    wait_dead(&conn);
}

#[test]
fn unmount_fails_outstanding_requests_at_once() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, _) = submit_stats(&conn, 1);
    let _ = server.next_request();
    conn.close(CloseReason::Unmount);
    assert_eq!(
        recv(&rx),
        (0, Err(ConnError::Disconnected("unmounted".into())))
    );
    wait_dead(&conn);
}

#[test]
fn dropping_a_connection_still_delivers_replies_already_asked_for() {
    let (conn, mut server) = rig(LIVELY);
    let (rx, _) = submit_stats(&conn, 1);
    let s = server.next_request();
    let answer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        server.send(&status_reply(s.id, status::OK));
        server
    });
    drop(conn); // CloseReason::Done: waits for the outstanding reply
    let (i, r) = recv(&rx);
    assert_eq!(i, 0);
    assert!(
        matches!(
            r,
            Ok(Response::Status {
                code: status::OK,
                ..
            })
        ),
        "{r:?}"
    );
    let _server = answer.join().expect("server thread");
}

#[test]
fn close_reasons_read_as_before_and_only_failures_are_unclean() {
    assert_eq!(CloseReason::Unmount.to_string(), "unmounted");
    assert_eq!(CloseReason::Done.to_string(), "connection closed");
    assert!(CloseReason::Unmount.is_clean());
    assert!(CloseReason::Done.is_clean());
    assert!(!CloseReason::ReplyTimeout.is_clean());
    assert!(!CloseReason::LinkDead("x".into()).is_clean());
}

/// Two channels of one session on one I/O thread: each lane's replies reach
/// its own callers, a lane whose owner is done ends alone, and a failure on
/// one ends them all (they share the transport).
#[test]
fn lanes_of_one_session_answer_apart_and_fail_together() {
    let (mut conns, mut servers) = rig_lanes(LIVELY, 2);
    assert_ne!(conns[0].generation, conns[1].generation);
    let (rx0, _) = submit_stats(&conns[0], 2);
    let (rx1, _) = submit_stats(&conns[1], 2);
    let seen0: Vec<Seen> = (0..2).map(|_| servers[0].next_request()).collect();
    let seen1: Vec<Seen> = (0..2).map(|_| servers[1].next_request()).collect();
    // Lane 1 answered first; ids are per lane, so both start at the same id.
    assert_eq!(seen0[0].id, seen1[0].id);
    for s in &seen1 {
        servers[1].send(&handle_reply(s.id, b"lane1"));
    }
    for _ in 0..2 {
        assert_eq!(recv(&rx1).1, Ok(Response::Handle(b"lane1".to_vec())));
    }
    assert_eq!(
        rx0.recv_timeout(Duration::from_millis(100)).err(),
        Some(RecvTimeoutError::Timeout),
        "lane 0 completed by lane 1's replies"
    );
    for s in &seen0 {
        servers[0].send(&handle_reply(s.id, b"lane0"));
    }
    for _ in 0..2 {
        assert_eq!(recv(&rx0).1, Ok(Response::Handle(b"lane0".to_vec())));
    }

    // The second lane's owner is done: the first one carries on.
    let second = conns.pop().expect("lane 1");
    drop(second);
    let (rx0, _) = submit_stats(&conns[0], 1);
    let s = servers[0].next_request();
    servers[0].send(&handle_reply(s.id, b"still"));
    assert_eq!(recv(&rx0).1, Ok(Response::Handle(b"still".to_vec())));
    assert!(!conns[0].is_dead());

    // A stream error on any lane ends the session.
    let (mut conns, mut servers) = rig_lanes(LIVELY, 2);
    let (rx0, calls0) = submit_stats(&conns[0], 1);
    let _ = servers[0].next_request();
    servers[1].send(&handle_reply(999, b"stray"));
    match recv(&rx0).1 {
        Err(ConnError::Disconnected(m)) => assert!(m.contains("unknown request id"), "{m}"),
        other => panic!("lane 0 caller: {other:?}"),
    }
    for c in &conns {
        wait_dead(c);
    }
    let (rx1, _) = submit_stats(&conns[1], 1);
    assert!(matches!(recv(&rx1).1, Err(ConnError::NotSent(_))));
    conns.clear();
    assert!(calls0.iter().all(|c| c.load(Ordering::SeqCst) == 1));
}

/// Two lanes of one session over `pipe(lane, socket end)`, with an idle
/// poll far longer than any wait in the tests that use it: only the I/O
/// thread's own checks can make progress there without a socket event.
fn two_sleepy_lanes<P: Pipe>(
    pipe: impl Fn(usize, SocketPipe) -> P,
) -> (Vec<Connection>, Vec<Server>) {
    let mut ends = Vec::new();
    let mut servers = Vec::new();
    for lane in 0..2 {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let inner = SocketPipe {
            s: ours,
            eof: false,
        };
        ends.push((pipe(lane, inner), Framer::new(), test_info()));
        servers.push(Server {
            s: theirs,
            framer: Framer::new(),
        });
    }
    let conns = Connection::start_lanes(
        ends,
        Liveness {
            dead_after: Duration::from_secs(120),
            keepalive: Duration::ZERO,
            idle_poll: Duration::from_secs(60),
        },
    )
    .expect("start");
    (conns, servers)
}

/// Bytes shared between the test and the pipes.
type Bytes = Arc<Mutex<Vec<u8>>>;

/// A lane whose session transport behaves like libssh2's: a call on one
/// lane (the one that `carries`) takes bytes that arrived for another lane off the
/// socket and queues them there, where polling that lane's fd never shows
/// them.
struct QueuedPipe {
    inner: SocketPipe,
    /// This lane's bytes already off the transport.
    queue: Bytes,
    /// On the carrier: bytes "on the wire" for the other lane, and that
    /// lane's queue, which every read or write here moves them into.
    carries: Option<(Bytes, Bytes)>,
}

impl QueuedPipe {
    fn carry(&self) {
        if let Some((wire, to)) = &self.carries {
            let bytes: Vec<u8> = lock(wire).drain(..).collect();
            lock(to).extend(bytes);
        }
    }
}

impl Pipe for QueuedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.carry();
        {
            let mut q = lock(&self.queue);
            if !q.is_empty() {
                let n = q.len().min(buf.len());
                buf[..n].copy_from_slice(&q[..n]);
                q.drain(..n);
                return Ok(n);
            }
        }
        self.inner.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // libssh2's channel write first reads what has arrived.
        self.carry();
        self.inner.write(buf)
    }
    fn eof(&self) -> bool {
        self.inner.eof()
    }
    fn poll_target(&self) -> (RawFd, libc::c_short) {
        self.inner.poll_target()
    }
    fn buffered(&self) -> bool {
        !lock(&self.queue).is_empty()
    }
    fn write_room(&self) -> bool {
        true
    }
    fn shutdown(&mut self) {
        self.inner.shutdown();
    }
}

/// A reply that another lane's call took off the transport is read at once,
/// not when the socket next wakes the thread: with two SFTP channels on one
/// session, commits waited for the idle poll (500 ms) now and then.
#[test]
fn a_reply_queued_by_another_lanes_call_is_read_at_once() {
    let wire = Arc::new(Mutex::new(Vec::new()));
    let queue0 = Arc::new(Mutex::new(Vec::new()));
    let (conns, mut servers) = two_sleepy_lanes(|lane, inner| QueuedPipe {
        inner,
        queue: if lane == 0 {
            queue0.clone()
        } else {
            Arc::new(Mutex::new(Vec::new()))
        },
        carries: (lane == 1).then(|| (wire.clone(), queue0.clone())),
    });
    let (rx0, _) = submit_stats(&conns[0], 1);
    let s0 = servers[0].next_request();
    lock(&wire).extend(handle_reply(s0.id, b"lane0"));
    // Lane 1's request makes the thread write on lane 1, which takes lane
    // 0's reply off the "wire" into lane 0's queue.
    let (rx1, _) = submit_stats(&conns[1], 1);
    let s1 = servers[1].next_request();
    assert_eq!(recv(&rx0).1, Ok(Response::Handle(b"lane0".to_vec())));
    servers[1].send(&handle_reply(s1.id, b"lane1"));
    assert_eq!(recv(&rx1).1, Ok(Response::Handle(b"lane1".to_vec())));
}

/// A lane with a flow-control window, as libssh2's channel: a write stops
/// (EAGAIN) when the window is closed; the lane that `carries` hands the
/// other lane its window adjust when it writes, as libssh2's channel write
/// first reads what has arrived for any channel.
struct WindowPipe {
    inner: SocketPipe,
    window: Arc<AtomicUsize>,
    /// On the carrier: an adjust "on the wire" for the other lane, and
    /// that lane's window.
    carries: Option<(Arc<AtomicUsize>, Arc<AtomicUsize>)>,
}

impl WindowPipe {
    fn carry(&self) {
        if let Some((adjust, window)) = &self.carries {
            window.fetch_add(adjust.swap(0, Ordering::SeqCst), Ordering::SeqCst);
        }
    }
}

impl Pipe for WindowPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.carry();
        let room = self.window.load(Ordering::SeqCst);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.inner.write(&buf[..buf.len().min(room)])?;
        self.window.fetch_sub(n, Ordering::SeqCst);
        Ok(n)
    }
    fn eof(&self) -> bool {
        self.inner.eof()
    }
    fn poll_target(&self) -> (RawFd, libc::c_short) {
        self.inner.poll_target()
    }
    fn buffered(&self) -> bool {
        false
    }
    fn write_room(&self) -> bool {
        self.window.load(Ordering::SeqCst) > 0
    }
    fn shutdown(&mut self) {
        self.inner.shutdown();
    }
}

/// A lane whose write stopped at a closed window writes on as soon as
/// another lane's call took in its window adjust, not when the socket next
/// wakes the thread.
#[test]
fn a_window_adjust_taken_in_by_another_lane_lets_the_write_go_on() {
    let adjust = Arc::new(AtomicUsize::new(0));
    let window0 = Arc::new(AtomicUsize::new(10));
    let (conns, mut servers) = two_sleepy_lanes(|lane, inner| WindowPipe {
        inner,
        window: if lane == 0 {
            window0.clone()
        } else {
            Arc::new(AtomicUsize::new(1 << 20))
        },
        carries: (lane == 1).then(|| (adjust.clone(), window0.clone())),
    });
    // Lane 0's request is longer than its 10-byte window: 10 bytes go,
    // then the thread has nothing to do and sleeps.
    let (rx0, _) = submit_stats(&conns[0], 1);
    let mut first = [0u8; 10];
    servers[0]
        .s
        .read_exact(&mut first)
        .expect("the first 10 bytes");
    servers[0].framer.push(&first);
    std::thread::sleep(Duration::from_millis(100));
    adjust.store(1000, Ordering::SeqCst);
    let (rx1, _) = submit_stats(&conns[1], 1);
    let s1 = servers[1].next_request();
    // The rest of lane 0's request arrives without any socket event on it.
    let s0 = servers[0].next_request();
    servers[0].send(&handle_reply(s0.id, b"lane0"));
    assert_eq!(recv(&rx0).1, Ok(Response::Handle(b"lane0".to_vec())));
    servers[1].send(&handle_reply(s1.id, b"lane1"));
    assert_eq!(recv(&rx1).1, Ok(Response::Handle(b"lane1".to_vec())));
}
