//! The sandbox SFTP server works on its own, checked with OpenSSH's `sftp`
//! client — independent of coupafs. If these fail, every mount test will too.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use common::*;

// The standard Coupa tree, as the crate knows it (src/coupa.rs).
use coupafs::coupa::{INCOMING_OBJECTS as INCOMING, OUTGOING_OBJECTS as OUTGOING};

/// `sftp` with only the sandbox's key and known_hosts (no user ssh config);
/// `extra` goes before the destination. `-b -` implies BatchMode=yes.
fn sftp_cmd(sb: &Sandbox, batch: bool, extra: &[&str]) -> Command {
    let mut cmd = Command::new("sftp");
    if batch {
        cmd.args(["-b", "-"]);
    }
    cmd.args(extra)
        .args(["-F", "/dev/null", "-i"])
        .arg(&sb.key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sb.known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "-P",
        ])
        .arg(sb.port.to_string())
        .arg(format!("{}@127.0.0.1", sb.user));
    cmd
}

/// Runs `sftp -b -` with key auth (BatchMode) and the given commands.
fn sftp_batch(sb: &Sandbox, commands: &str) -> Output {
    let cmd = sftp_cmd(sb, true, &["-o", "BatchMode=yes"]);
    run_with_stdin(cmd, commands)
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sftp (is openssh-client installed?)");
    child
        .stdin
        .take()
        .expect("sftp stdin is piped")
        .write_all(input.as_bytes())
        .expect("write sftp commands");
    child.wait_with_output().expect("wait for sftp")
}

#[test]
fn sandbox_serves_standard_tree_over_sftp() {
    let sb = Sandbox::start();
    assert_eq!(sb.user, "coupasftp");
    assert!(
        sb.root.is_absolute(),
        "ROOT must be absolute: {:?}",
        sb.root
    );
    TcpStream::connect(("127.0.0.1", sb.port)).expect("sandbox port accepts TCP");
    assert!(sb.is_running());

    // Files the client needs.
    for f in [&sb.key, &sb.known_hosts, &sb.password_file] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    let mode = fs::metadata(&sb.password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "password file mode");
    assert!(!sb.password().is_empty());
    let kh = fs::read_to_string(&sb.known_hosts).unwrap();
    assert!(
        kh.contains(&format!("[127.0.0.1]:{} ", sb.port)),
        "known_hosts lacks [127.0.0.1]:{}:\n{kh}",
        sb.port
    );
    let key = fs::read_to_string(&sb.key).unwrap();
    assert!(key.contains("PRIVATE KEY"), "id_rsa is not a private key");

    // The standard tree, owned by coupasftp.
    let uid = uid_of("coupasftp").expect("account coupasftp exists");
    let mut dirs = vec![
        sb.root.clone(),
        sb.root.join("Incoming"),
        sb.root.join("Outgoing"),
        sb.root.join("Archive/Incoming"),
    ];
    dirs.extend(INCOMING.iter().map(|d| sb.root.join("Incoming").join(d)));
    dirs.extend(
        INCOMING
            .iter()
            .map(|d| sb.root.join("Archive/Incoming").join(d)),
    );
    dirs.extend(OUTGOING.iter().map(|d| sb.root.join("Outgoing").join(d)));
    for d in &dirs {
        let md = fs::metadata(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        assert!(md.is_dir(), "{} is not a directory", d.display());
        assert_eq!(md.uid(), uid, "{} not owned by coupasftp", d.display());
    }
    let pos: Vec<_> = fs::read_dir(sb.root.join("Outgoing/PurchaseOrders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(pos.len() >= 2, "sample purchase orders missing: {pos:?}");

    // ls, put, get through the real SFTP server.
    let work = traversable_tempdir("coupafs-smoke-");
    let local = work.path().join("upload.bin");
    let sum = write_random_file(&local, 3 * 1024 * 1024 + 17);
    let back = work.path().join("download.bin");
    let remote = sb.root.join("Incoming/Invoices/upload.bin");
    let root = sb.root.display();
    let out = sftp_batch(
        &sb,
        &format!(
            "ls -1 {root}/Incoming\nput {} {}\nget {} {}\nls -l {root}/Outgoing/PurchaseOrders\n",
            local.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    );
    assert!(out.status.success(), "sftp batch failed:\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for d in INCOMING {
        assert!(stdout.contains(d), "ls Incoming lacks {d}:\n{stdout}");
    }
    assert!(stdout.contains("PurchaseOrders_"), "{stdout}");
    assert_eq!(sha256_file(&remote), sum, "server-side copy differs");
    assert_eq!(sha256_file(&back), sum, "downloaded copy differs");
    assert_eq!(
        fs::metadata(&remote).unwrap().uid(),
        uid,
        "uploaded file not owned by coupasftp"
    );
    assert!(
        sb.log().contains("Accepted publickey for coupasftp"),
        "sshd.log:\n{}",
        sb.log()
    );
}

/// Password login (what `-o password_file=` uses): sftp gets the password from
/// an SSH_ASKPASS helper, with public-key auth switched off.
#[test]
fn sandbox_accepts_password_and_rejects_wrong_one() {
    let sb = Sandbox::start();
    let work = traversable_tempdir("coupafs-askpass-");
    let login = |password_source: &Path| -> Output {
        let askpass = work.path().join("askpass.sh");
        fs::write(
            &askpass,
            format!("#!/bin/sh\ncat '{}'\n", password_source.display()),
        )
        .unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
        let mut cmd = sftp_cmd(
            &sb,
            false,
            &[
                "-o",
                "BatchMode=no",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ],
        );
        cmd.env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY");
        run_with_stdin(cmd, &format!("ls -1 {}/Outgoing\nbye\n", sb.root.display()))
    };

    let out = login(&sb.password_file);
    assert!(
        out.status.success(),
        "password login failed:\n{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PurchaseOrders"),
        "{}",
        show(&out)
    );
    assert!(
        sb.log().contains("Accepted password for coupasftp"),
        "{}",
        sb.log()
    );

    let wrong = work.path().join("wrong");
    fs::write(&wrong, "not-the-password\n").unwrap();
    let out = login(&wrong);
    assert!(
        !out.status.success(),
        "wrong password accepted:\n{}",
        show(&out)
    );
    assert!(
        sb.log().contains("Failed password for coupasftp"),
        "{}",
        sb.log()
    );
}

/// Spawns an interactive-less `sftp -b -` that stays connected while its stdin
/// is open; returns once it has answered `pwd`.
fn held_sftp(sb: &Sandbox) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut cmd = sftp_cmd(sb, true, &["-o", "BatchMode=yes"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn sftp");
    let stdin = child.stdin.as_mut().expect("sftp stdin is piped");
    stdin.write_all(b"pwd\n").expect("write pwd to sftp");
    stdin.flush().expect("flush sftp stdin");
    let mut out = BufReader::new(child.stdout.take().expect("sftp stdout is piped"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read sftp stdout");
        assert!(n > 0, "sftp exited before answering pwd:\n{}", sb.log());
        if line.contains("Remote working directory") {
            break;
        }
    }
    (child, out)
}

/// A held `sftp -b -` only notices a dead connection when it next talks to the
/// server, so send it a command that needs a round trip (`pwd` is answered
/// from sftp's cache), then wait up to 10 s. None if it is still alive
/// (it is then killed, by PID).
fn wait_for_client_death(client: &mut Child) -> Option<ExitStatus> {
    if let Some(stdin) = client.stdin.as_mut() {
        let _ = stdin.write_all(b"ls\n");
        let _ = stdin.flush();
    }
    let exited = wait_until(Duration::from_secs(10), || {
        client.try_wait().expect("try_wait sftp").is_some()
    });
    if !exited {
        let _ = client.kill();
        let _ = client.wait();
        return None;
    }
    Some(client.wait().expect("wait sftp"))
}

#[test]
fn kill_sessions_drops_connected_clients() {
    let sb = Sandbox::start();
    // The start script's readiness probe may still have a pre-auth child.
    assert!(
        wait_until(Duration::from_secs(5), || sb.session_pids().is_empty()),
        "no client yet, but sessions: {:?}",
        sb.session_pids()
    );

    let (mut client, _out) = held_sftp(&sb);
    let pids = sb.session_pids();
    assert!(!pids.is_empty(), "connected client but no session pids");
    assert!(!pids.contains(&sb.pid()), "listener counted as a session");

    sb.kill_sessions();
    let status =
        wait_for_client_death(&mut client).expect("sftp client still running after kill_sessions");
    assert!(!status.success(), "sftp should fail when its session dies");
    assert!(
        wait_until(Duration::from_secs(5), || sb.session_pids().is_empty()),
        "sessions left: {:?}",
        sb.session_pids()
    );

    // The listener survives: new connections work.
    assert!(sb.is_running());
    let out = sftp_batch(&sb, &format!("ls {}\n", sb.root.display()));
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn stop_and_restart_keep_port_keys_and_tree() {
    let sb = Sandbox::start();
    let marker = sb.root.join("Incoming/Users/marker.csv");
    let out = sftp_batch(&sb, &format!("put /etc/hostname {}\n", marker.display()));
    assert!(out.status.success(), "{}", show(&out));
    let (mut client, _out) = held_sftp(&sb);
    let old_pid = sb.pid();

    sb.stop();
    assert!(
        !common::pid_alive(old_pid),
        "listener still alive after stop"
    );
    assert!(!port_accepts(sb.port), "port still open after stop");
    wait_for_client_death(&mut client).expect("connected client survived stop");

    sb.restart();
    assert_ne!(sb.pid(), old_pid);
    assert!(sb.is_running());
    assert!(marker.exists(), "tree not kept across restart");
    // Same host keys: the old known_hosts still verifies, same client key works.
    let out = sftp_batch(&sb, &format!("ls -l {}\n", marker.display()));
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("marker.csv"));
}

#[test]
fn harness_helpers() {
    let dir = traversable_tempdir("coupafs-helpers-");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let sa = write_random_file(&a, 1_000_003);
    let sb = write_random_file(&b, 1_000_003);
    assert_eq!(sa, sb, "same length, same content");
    assert_eq!(sha256_file(&a), sa);
    assert_eq!(fs::metadata(&a).unwrap().len(), 1_000_003);
    assert_ne!(write_random_file_seeded(&b, 1_000_003, 7), sa);
    assert_eq!(
        sha256_bytes(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(!is_fuse_mounted(dir.path()));
    assert_eq!(mount_fstype(Path::new("/proc")).as_deref(), Some("proc"));
    let mut n = 0;
    assert!(wait_until(Duration::from_secs(2), || {
        n += 1;
        n == 3
    }));
    assert!(!wait_until(Duration::from_millis(100), || false));
}
