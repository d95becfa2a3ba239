//! Reach through corporate networks, end to end: real
//! mounts through a ProxyCommand script that leaves a marker, a jump sshd
//! (ProxyJump), HTTP CONNECT and SOCKS5 proxies implemented here (they count
//! the tunnels they carried), no_proxy, AddressFamily, and a sshd that only
//! offers keyboard-interactive for passwords.

mod common;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const INVOICES: &str = "Incoming/Invoices";

/// Writes a file through the mount and checks it arrived on the server.
fn write_and_check(mnt: &Mount, sb: &Sandbox, name: &str) {
    let data = format!("{name}: carried\n");
    let mut f = File::create(mnt.path.join(INVOICES).join(name)).expect("create through mount");
    f.write_all(data.as_bytes()).expect("write through mount");
    close_file(f).expect("close through mount");
    let on_server = sb.root.join(INVOICES).join(name);
    assert_eq!(
        fs::read_to_string(&on_server).ok().as_deref(),
        Some(data.as_str()),
        "{} on the server\n{}",
        on_server.display(),
        mnt.log()
    );
}

/// Copies both directions between two streams until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let one = thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = one.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// A proxy on 127.0.0.1 that runs `serve` for every client and counts the
/// tunnels it set up.
struct TestProxy {
    port: u16,
    tunnels: Arc<AtomicUsize>,
}

impl TestProxy {
    fn start(serve: fn(TcpStream, &AtomicUsize) -> io::Result<()>) -> TestProxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let t = tunnels.clone();
        thread::spawn(move || {
            for c in l.incoming().flatten() {
                let t = t.clone();
                thread::spawn(move || {
                    let _ = serve(c, &t);
                });
            }
        });
        TestProxy { port, tunnels }
    }

    fn count(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

/// HTTP CONNECT: 200 and a tunnel, except to port 1 (403), to check the
/// status line reaches the admin.
fn http_proxy(c: TcpStream, tunnels: &AtomicUsize) -> io::Result<()> {
    let mut reader = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let mut c = c;
    if target.is_empty() || target.ends_with(":1") {
        c.write_all(b"HTTP/1.1 403 Forbidden by policy\r\n\r\n")?;
        return Ok(());
    }
    let up = TcpStream::connect(&target)?;
    tunnels.fetch_add(1, Ordering::SeqCst);
    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    splice(c, up);
    Ok(())
}

/// SOCKS5 with user/password `proxyuser`/`proxy-secret` (RFC 1928/1929);
/// IPv4 and domain-name CONNECT.
fn socks5_proxy(mut c: TcpStream, tunnels: &AtomicUsize) -> io::Result<()> {
    let mut b = [0u8; 2];
    c.read_exact(&mut b)?;
    let mut methods = vec![0u8; usize::from(b[1])];
    c.read_exact(&mut methods)?;
    if !methods.contains(&2) {
        c.write_all(&[5, 0xff])?;
        return Ok(());
    }
    c.write_all(&[5, 2])?;
    let mut v = [0u8; 2];
    c.read_exact(&mut v)?;
    let mut user = vec![0u8; usize::from(v[1])];
    c.read_exact(&mut user)?;
    let mut l = [0u8; 1];
    c.read_exact(&mut l)?;
    let mut pass = vec![0u8; usize::from(l[0])];
    c.read_exact(&mut pass)?;
    let ok = user == b"proxyuser" && pass == b"proxy-secret";
    c.write_all(&[1, if ok { 0 } else { 1 }])?;
    if !ok {
        return Ok(());
    }
    let mut h = [0u8; 4];
    c.read_exact(&mut h)?;
    let host = match h[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            c.read_exact(&mut l)?;
            let mut n = vec![0u8; usize::from(l[0])];
            c.read_exact(&mut n)?;
            String::from_utf8_lossy(&n).into_owned()
        }
        _ => return Ok(()),
    };
    let mut p = [0u8; 2];
    c.read_exact(&mut p)?;
    let up = match TcpStream::connect((host.as_str(), u16::from_be_bytes(p))) {
        Ok(up) => up,
        Err(_) => {
            c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Ok(());
        }
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    splice(c, up);
    Ok(())
}

#[test]
fn proxy_command_carries_the_session_and_is_reaped() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-proxycmd-");
    let marker = dir.path().join("marker");
    let script = dir.path().join("relay.sh");
    // A bash /dev/tcp relay: proves it ran (marker: its PID and the expanded
    // %h %p %r %%) and carries the bytes both ways.
    fs::write(
        &script,
        format!(
            "#!/bin/bash\necho \"$$ carried $1:$2 as $3 $4\" >>{}\nexec 3<>/dev/tcp/$1/$2\n\
             cat <&3 &\nexec cat >&3\n",
            marker.display()
        ),
    )
    .expect("write relay");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod relay");
    let cmd = format!("ProxyCommand={} %h %p %r 100%%", script.display());
    let mnt = Mount::new(&sb, &[&cmd, "cache_timeout=0"]);
    write_and_check(&mnt, &sb, "via-proxycommand.csv");
    let text = fs::read_to_string(&marker).expect("the proxy command ran");
    let first = text.lines().next().unwrap_or("").to_string();
    assert!(
        first.ends_with(&format!(
            "carried 127.0.0.1:{} as {} 100%",
            sb.port, sb.user
        )),
        "{text}"
    );
    assert!(mnt.log().contains("through ProxyCommand"), "{}", mnt.log());
    // A lost connection is re-established through a new command.
    sb.kill_sessions();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let _ = fs::read_dir(mnt.path.join(INVOICES)).map(|d| d.count());
            fs::read_to_string(&marker)
                .unwrap_or_default()
                .lines()
                .count()
                >= 2
        }),
        "no second ProxyCommand after the session was killed:\n{}",
        mnt.log()
    );
    write_and_check(&mnt, &sb, "after-reconnect.csv");
    let pids: Vec<u32> = fs::read_to_string(&marker)
        .expect("marker")
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    mnt.unmount();
    // Every command is gone once the mount is (killed by PID and reaped:
    // not even a zombie is left).
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(5), || !pid_alive(pid)),
            "ProxyCommand pid {pid} outlived the mount"
        );
    }
}

#[test]
fn proxy_jump_through_a_second_sshd() {
    let jump_dir = traversable_tempdir("coupafs-jump-");
    fs::write(
        jump_dir.path().join("sshd_options"),
        "AllowTcpForwarding yes\n",
    )
    .expect("write sshd_options");
    let jump = Sandbox::start_in(jump_dir);
    let sb = Sandbox::start();
    // OpenSSH's ssh reads this file (coupafs passes -F on): the jump host's
    // address, key and known_hosts.
    let cfg_dir = traversable_tempdir("coupafs-jumpcfg-");
    let cfg = cfg_dir.path().join("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host jumphost\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile {}\n\
             Host nofwd\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            jump.port,
            jump.user,
            jump.key.display(),
            jump.known_hosts.display(),
            sb.port,
            sb.user,
            sb.key.display(),
            sb.known_hosts.display()
        ),
    )
    .expect("write ssh_config");
    let cfg_opt = format!("ssh_config={}", cfg.display());
    let mnt = Mount::new(&sb, &["ProxyJump=jumphost", &cfg_opt]);
    write_and_check(&mnt, &sb, "via-jump.csv");
    let jlog = jump.log();
    assert!(
        jlog.contains(&format!("Accepted publickey for {}", jump.user)),
        "the jump sshd saw no login:\n{}",
        tail(&jlog, 20)
    );
    drop(mnt);
    // Through a jump host that refuses forwarding (the default sandbox) the
    // mount fails, and ssh's own error reaches the log.
    let err = Mount::try_new(&sb, &["ProxyJump=nofwd", &cfg_opt, "ConnectTimeout=10"])
        .err()
        .expect("a jump host that refuses forwarding cannot carry the mount");
    assert!(
        err.contains("SSH handshake failed")
            && err.contains("ProxyCommand exited")
            && err.contains("administratively prohibited"),
        "{err}"
    );
}

#[test]
fn http_connect_proxy_carries_mounts_refusals_are_clear_and_no_proxy_bypasses() {
    let sb = Sandbox::start();
    let proxy = TestProxy::start(http_proxy);
    let url = format!("proxy=http://127.0.0.1:{}", proxy.port);
    let mnt = Mount::new(&sb, &[&url]);
    write_and_check(&mnt, &sb, "via-http.csv");
    assert!(proxy.count() >= 1, "the HTTP proxy carried no tunnel");
    drop(mnt);

    // no_proxy (option, then the environment) goes around the proxy.
    let before = proxy.count();
    let bypass = Mount::new(&sb, &[&url, "no_proxy=localhost\\,127.0.0.1"]);
    write_and_check(&bypass, &sb, "around-http.csv");
    drop(bypass);
    let bypass = Mount::try_new_with_env(&sb, &[&url], &[("no_proxy", ".example,127.0.0.1")])
        .expect("mount with no_proxy in the environment");
    write_and_check(&bypass, &sb, "around-http-env.csv");
    drop(bypass);
    assert_eq!(
        proxy.count(),
        before,
        "no_proxy hosts went through the proxy"
    );

    // A refused CONNECT shows the proxy's status line (the test proxy
    // refuses port 1).
    let target = sb.target();
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={},{url}",
        sb.key.display(),
        sb.known_hosts.display()
    );
    let err = Mount::spawn(&["-p", "1", &target], &["-o", &opts], &[])
        .err()
        .expect("a refused CONNECT cannot mount");
    assert!(
        err.contains(&format!(
            "cannot reach server: HTTP proxy 127.0.0.1:{}: refused CONNECT 127.0.0.1:1: \
             HTTP/1.1 403 Forbidden by policy",
            proxy.port
        )),
        "refusal not shown:\n{err}"
    );
}

#[test]
fn socks5_proxy_with_password_carries_mounts_and_hides_the_password() {
    let sb = Sandbox::start();
    let proxy = TestProxy::start(socks5_proxy);
    let url = format!(
        "proxy=socks5://proxyuser:proxy-secret@127.0.0.1:{}",
        proxy.port
    );
    let mnt = Mount::new(&sb, &[&url, "debug"]);
    write_and_check(&mnt, &sb, "via-socks.csv");
    assert!(proxy.count() >= 1, "the SOCKS5 proxy carried no tunnel");
    let log = mnt.log();
    assert!(
        log.contains("connection settings"),
        "debug log missing:\n{log}"
    );
    assert!(
        !log.contains("proxy-secret"),
        "the proxy password was logged:\n{log}"
    );
    drop(mnt);

    // A wrong password is a clear error without the password.
    let bad = format!("proxy=socks5://proxyuser:wrong-pw@127.0.0.1:{}", proxy.port);
    let err = Mount::try_new(&sb, &[&bad])
        .err()
        .expect("wrong proxy password");
    assert!(
        err.contains("rejected user name/password for 'proxyuser'"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");

    // `proxy=env` reads all_proxy; no_proxy still applies.
    let before = proxy.count();
    let env_url = format!("socks5://proxyuser:proxy-secret@127.0.0.1:{}", proxy.port);
    let mnt = Mount::try_new_with_env(&sb, &["proxy=env"], &[("all_proxy", &env_url)])
        .expect("mount through all_proxy");
    write_and_check(&mnt, &sb, "via-socks-env.csv");
    assert!(proxy.count() > before, "proxy=env did not use all_proxy");
    drop(mnt);
    // Without proxy=env the environment's proxy is not used.
    let before = proxy.count();
    let mnt = Mount::try_new_with_env(&sb, &[], &[("all_proxy", &env_url)]).expect("direct mount");
    write_and_check(&mnt, &sb, "direct.csv");
    drop(mnt);
    assert_eq!(
        proxy.count(),
        before,
        "all_proxy was used without proxy=env"
    );
}

#[test]
fn address_family_filters_addresses() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["AddressFamily=inet"]);
    write_and_check(&mnt, &sb, "inet.csv");
    drop(mnt);
    let err = Mount::try_new(&sb, &["AddressFamily=inet6"])
        .err()
        .expect("127.0.0.1 has no IPv6 address");
    assert!(
        err.contains("127.0.0.1 has no IPv6 address (AddressFamily=inet6)"),
        "{err}"
    );
}

#[test]
fn keyboard_interactive_only_server_is_answered_from_the_password_file() {
    let dir = traversable_tempdir("coupafs-kbdint-");
    fs::write(
        dir.path().join("sshd_options"),
        "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
         PubkeyAuthentication no\n",
    )
    .expect("write sshd_options");
    let sb = Sandbox::start_in(dir);
    let pw = format!("password_file={}", sb.password_file.display());
    let mnt = Mount::new(&sb, &[&pw]);
    write_and_check(&mnt, &sb, "kbdint.csv");
    let log = sb.log();
    assert!(
        log.contains(&format!(
            "Accepted keyboard-interactive/pam for {}",
            sb.user
        )),
        "{}",
        tail(&log, 20)
    );
    drop(mnt);
    // KbdInteractiveAuthentication=no or PasswordAuthentication=no: nothing
    // else is offered, so it fails and says why.
    let err = Mount::try_new(&sb, &[&pw, "KbdInteractiveAuthentication=no"])
        .err()
        .expect("no usable method");
    assert!(
        err.contains("does not offer password authentication"),
        "{err}"
    );
    // PasswordAuthentication=no: the password is not sent by
    // keyboard-interactive either (sshd logs no new attempt).
    let kbd_lines = |log: &str| log.matches("keyboard-interactive").count();
    let before = kbd_lines(&sb.log());
    let err = Mount::try_new(&sb, &[&pw, "PasswordAuthentication=no"])
        .err()
        .expect("the password is never sent");
    assert!(err.contains("authentication failed"), "{err}");
    assert_eq!(
        kbd_lines(&sb.log()),
        before,
        "the password was tried: {}",
        tail(&sb.log(), 20)
    );
}

/// `coupafs check` behind a ProxyCommand: the direct DNS/TCP probes are
/// skipped (they would report a server that only the proxy can reach as
/// down), and the SSH steps go through the command.
#[test]
fn check_goes_through_the_proxy_command() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-proxycheck-");
    let marker = dir.path().join("marker");
    let script = dir.path().join("relay.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/bash\necho \"$$\" >>{}\nexec 3<>/dev/tcp/$1/$2\ncat <&3 &\nexec cat >&3\n",
            marker.display()
        ),
    )
    .expect("write relay");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod relay");
    let opts = format!(
        "IdentityFile={},UserKnownHostsFile={},ProxyCommand={} %h %p",
        sb.key.display(),
        sb.known_hosts.display(),
        script.display()
    );
    let port = sb.port.to_string();
    let out = run_coupafs(&["check", "-p", &port, &sb.target(), "-o", &opts], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("route") && text.contains("through ProxyCommand"),
        "{}",
        show(&out)
    );
    assert!(!text.contains("OK tcp"), "direct probe ran:\n{text}");
    assert!(
        fs::read_to_string(&marker).is_ok_and(|m| !m.is_empty()),
        "the proxy command did not carry the check:\n{}",
        show(&out)
    );
    assert!(
        !text.lines().next().unwrap_or("").contains("CRITICAL"),
        "{}",
        show(&out)
    );
}
