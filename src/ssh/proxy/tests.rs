use super::*;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

#[test]
fn proxy_urls_parse_with_credentials_and_default_ports() {
    let r = parse_proxy_url("http://proxy.corp:3128").unwrap();
    assert_eq!(
        r,
        Route::HttpConnect(ProxyServer {
            host: "proxy.corp".into(),
            port: 3128,
            auth: None
        })
    );
    match parse_proxy_url("socks5://u%40x:p%3Aw@[::1]:1081/").unwrap() {
        Route::Socks5(s) => {
            assert_eq!((s.host.as_str(), s.port), ("::1", 1081));
            let (u, p) = s.auth.unwrap();
            assert_eq!((u.as_str(), p.expose()), ("u@x", "p:w"));
        }
        other => panic!("{other:?}"),
    }
    match parse_proxy_url("socks5h://h").unwrap() {
        Route::Socks5(s) => assert_eq!(s.port, 1080),
        other => panic!("{other:?}"),
    }
    for bad in ["ftp://h:1", "h:1", "http://:1", "http://h:0", "http://h:x"] {
        assert!(parse_proxy_url(bad).is_err(), "{bad}");
    }
    let e = parse_proxy_url("gopher://user:hunter2@h:1").unwrap_err();
    assert!(!e.contains("hunter2") && e.contains("***@h:1"), "{e}");
    let shown = format!("{:?}", parse_proxy_url("http://u:hunter2@h:1").unwrap());
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn proxy_command_expands_like_ssh() {
    assert_eq!(
        expand_command("nc %h %p # %r 100%% %x %", "srv", 2222, "bob"),
        "nc srv 2222 # bob 100% %x %"
    );
}

#[test]
fn jumps_become_ssh_w() {
    assert_eq!(
        jump_command("bob@jump:2200", None).unwrap(),
        "ssh -o BatchMode=yes -o ClearAllForwardings=yes -l 'bob' -p 2200 -W '[%h]:%p' 'jump'"
    );
    assert_eq!(
        jump_command("a,ssh://u@[::1]:22", Some(std::path::Path::new("/c f"))).unwrap(),
        "ssh -F '/c f' -o BatchMode=yes -o ClearAllForwardings=yes -J 'a' -l 'u' -p 22 \
         -W '[%h]:%p' '::1'"
    );
    assert!(parse_jump("-oProxyCommand=x").is_err());
    assert!(parse_jump("@h").is_err());
    assert!(parse_jump("h:99999").is_err());
    assert!(parse_jump("a,,b").is_err());
}

#[test]
fn no_proxy_matches_hosts_domains_and_star() {
    let list: Vec<String> = ["localhost", ".corp.example", "example.org:443", "[::1]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(no_proxy_matches("localhost", &list));
    assert!(no_proxy_matches("sftp.corp.example", &list));
    assert!(no_proxy_matches("corp.example", &list));
    assert!(no_proxy_matches("A.EXAMPLE.ORG", &list));
    assert!(no_proxy_matches("::1", &list));
    assert!(!no_proxy_matches("xcorp.example", &list));
    assert!(!no_proxy_matches("coupahost.com", &list));
    assert!(no_proxy_matches("anything", &["*".to_string()]));
    assert!(!no_proxy_matches("anything", &[]));
}

#[test]
fn address_family_filters_resolved_addresses() {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 22));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 22));
    let all = vec![v6, v4];
    assert_eq!(filter_family(all.clone(), AddressFamily::Any), all);
    assert_eq!(filter_family(all.clone(), AddressFamily::Inet), vec![v4]);
    assert_eq!(filter_family(all, AddressFamily::Inet6), vec![v6]);
}

/// A one-shot fake proxy: sends all of `reply` at once (the client reads
/// each answer when it needs it), then reads `read_len` request bytes and
/// returns them.
fn fake_proxy(reply: Vec<u8>, read_len: usize) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&reply).unwrap();
        let mut got = vec![0u8; read_len];
        let _ = s.read_exact(&mut got);
        got
    });
    (port, h)
}

fn server(port: u16, auth: Option<(&str, &str)>) -> ProxyServer {
    ProxyServer {
        host: "127.0.0.1".into(),
        port,
        auth: auth.map(|(u, p)| (u.to_string(), Secret::new(p.to_string()))),
    }
}

#[test]
fn http_connect_reports_the_status_line_of_a_refusal() {
    let req = "CONNECT sftp.example:22 HTTP/1.1\r\nHost: sftp.example:22\r\n\r\n";
    let (port, h) = fake_proxy(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
        req.len(),
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let e = http_connect(&mut s, &server(port, None), "sftp.example", 22).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused CONNECT sftp.example:22: HTTP/1.1 403 Forbidden"
    );
    assert_eq!(h.join().unwrap(), req.as_bytes());
}

#[test]
fn http_connect_sends_basic_auth_and_leaves_the_tunnel_bytes_unread() {
    let req =
        "CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\nProxy-Authorization: Basic dTpw\r\n\r\n";
    let (port, h) = fake_proxy(
        b"HTTP/1.0 200 Connection established\r\n\r\nSSH-2.0-x\r\n".to_vec(),
        req.len(),
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    http_connect(&mut s, &server(port, Some(("u", "p"))), "::1", 22).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "SSH-2.0-x\r\n");
    assert_eq!(h.join().unwrap(), req.as_bytes());
}

#[test]
fn socks5_connect_names_the_reply_code() {
    // Greeting (3 bytes) + CONNECT 127.0.0.1:22 (10 bytes).
    let (port, h) = fake_proxy(vec![5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0], 13);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let e = socks5_connect(&mut s, &server(port, None), "127.0.0.1", 22).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused CONNECT 127.0.0.1:22: reply 5 (connection refused)"
    );
    assert_eq!(
        h.join().unwrap(),
        [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 22]
    );
}

#[test]
fn socks5_user_password_and_domain_names() {
    // Greeting 4 + auth (1+1+1+1+2=6) + CONNECT (4+1+2+2=9).
    let reply = vec![5, 2, 1, 0, 5, 0, 0, 3, 1, b'x', 0, 0];
    let (port, h) = fake_proxy(reply, 4 + 6 + 9);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socks5_connect(&mut s, &server(port, Some(("u", "pw"))), "ab", 2222).unwrap();
    assert_eq!(
        h.join().unwrap(),
        [5, 2, 0, 2, 1, 1, b'u', 2, b'p', b'w', 5, 1, 0, 3, 2, b'a', b'b', 8, 174]
    );
    let (port, _h) = fake_proxy(vec![5, 0xff], 3);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let e = socks5_connect(&mut s, &server(port, None), "ab", 22).unwrap_err();
    assert!(e.to_string().contains("requires authentication"), "{e}");
}

#[test]
fn proxy_command_child_is_killed_and_reaped_on_drop() {
    let Stream::Command(mut sock, child) = spawn_command("cat").unwrap() else {
        panic!("expected a command stream");
    };
    sock.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    sock.read_exact(&mut got).unwrap();
    assert_eq!(
        &got, b"ping",
        "the command's stdin/stdout are the socketpair"
    );
    let pid = child.child.id();
    drop(child);
    let Stream::Command(_sock, mut child) =
        spawn_command("sh -c \"echo first >&2; echo 'open failed: prohibited' >&2; exit 3\"")
            .unwrap()
    else {
        panic!("expected a command stream");
    };
    assert_eq!(
        child.failure_note(),
        "ProxyCommand exited (exit status: 3): first; open failed: prohibited"
    );
    // Reaped: the PID no longer exists (not even as a zombie).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let mut buf = [0u8; 1];
    assert_eq!(
        sock.read(&mut buf).unwrap(),
        0,
        "EOF once the command is gone"
    );
}
