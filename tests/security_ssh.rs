//! The connection's security settings against the sandbox sshd: known_hosts
//! (accept-new appends one line under a lock and keeps the rest, `@revoked`
//! refuses, `@cert-authority` is not a host name, the global file is read),
//! Ciphers and the auth switches are honoured, and the ChaCha20-Poly1305
//! override is really what libssh2 calls for that cipher (and only then).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

const CHACHA: &str = "chacha20-poly1305@openssh.com";

/// An empty HOME and no ssh-agent: the login uses only what the test gives.
fn isolated_env(home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        ("SSH_AUTH_SOCK".into(), "/nonexistent/agent.sock".into()),
        ("COUPAFS_LOG".into(), "coupafs=debug".into()),
    ]
}

/// `coupafs -f -p PORT TARGET MNT -o OPTS` with exactly these options.
fn mount_with(sb: &Sandbox, opts: &[String], env: &[(String, String)]) -> Result<Mount, String> {
    let port = sb.port.to_string();
    let target = sb.target();
    let joined = opts.join(",");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Mount::spawn(&["-p", &port, &target], &["-o", &joined], &env)
}

/// The sandbox's host key lines (`[127.0.0.1]:PORT TYPE BASE64`).
fn host_key_lines(sb: &Sandbox) -> Vec<String> {
    fs::read_to_string(&sb.known_hosts)
        .expect("sandbox known_hosts")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn accept_new_appends_one_line_and_keeps_every_other_byte() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-sec-kh-");
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let kh = dir.path().join("known_hosts");
    // Comments, a blank line, CRLF, markers and no final newline: all must
    // survive byte for byte (libssh2's write_file dropped the comments).
    let before = "# hand-kept list, do not reorder\n\n\
                  other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ  # ops\r\n\
                  @cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n\
                  # last line, no newline";
    fs::write(&kh, before).unwrap();
    let opts = vec![
        format!("IdentityFile={}", sb.key.display()),
        format!("UserKnownHostsFile={}", kh.display()),
        "StrictHostKeyChecking=accept-new".to_string(),
        "GlobalKnownHostsFile=none".to_string(),
    ];
    let m = mount_with(&sb, &opts, &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains(" added)"), "{}", m.log());
    drop(m);
    let after = fs::read_to_string(&kh).unwrap();
    let prefix = format!("{before}\n");
    assert!(after.starts_with(&prefix), "{after:?}");
    let added: Vec<&str> = after[prefix.len()..].lines().collect();
    assert_eq!(added.len(), 1, "exactly one line appended: {after:?}");
    assert!(after.ends_with('\n'));
    let name = format!("[127.0.0.1]:{} ", sb.port);
    assert!(added[0].starts_with(&name), "{added:?}");
    assert!(
        host_key_lines(&sb)
            .iter()
            .any(|l| l.split_whitespace().nth(2) == added[0].split_whitespace().nth(2)),
        "the appended key is one of the server's: {added:?}"
    );

    // The appended line is read back: a strict mount now knows the host,
    // and accept-new again adds nothing.
    let mut strict = opts.clone();
    strict[2] = "StrictHostKeyChecking=yes".into();
    let m = mount_with(&sb, &strict, &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains(" known)"), "{}", m.log());
    drop(m);
    let m = mount_with(&sb, &opts, &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    drop(m);
    assert_eq!(fs::read_to_string(&kh).unwrap(), after);
}

#[test]
fn revoked_host_key_is_refused_even_when_also_known() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-sec-revoked-");
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let keys = host_key_lines(&sb);
    let revoked: String = keys.iter().map(|l| format!("@revoked {l}\n")).collect();

    // In the user file, after the lines that list the key as known.
    let kh = dir.path().join("known_hosts");
    fs::write(&kh, format!("{}\n{revoked}", keys.join("\n"))).unwrap();
    let opts = |user: &Path, global: &str| {
        vec![
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", user.display()),
            format!("GlobalKnownHostsFile={global}"),
        ]
    };
    let log = mount_with(&sb, &opts(&kh, "none"), &isolated_env(&home))
        .err()
        .expect("a revoked key is refused");
    assert!(log.contains("REVOKED host key"), "{log}");
    assert!(
        log.contains(&format!("{}:", kh.display())),
        "names the file: {log}"
    );

    // In the global file, while the user file lists the key as known.
    let global = dir.path().join("ssh_known_hosts");
    fs::write(&global, &revoked).unwrap();
    let log = mount_with(
        &sb,
        &opts(&sb.known_hosts, &global.display().to_string()),
        &isolated_env(&home),
    )
    .err()
    .expect("revoked in the global file is refused too");
    assert!(log.contains("REVOKED host key"), "{log}");

    // And a pin does not override a revocation.
    let mut pinned = opts(&kh, "none");
    let log = mount_with(&sb, &pinned, &isolated_env(&home))
        .err()
        .unwrap();
    let fp = log
        .split("presented ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .expect("fingerprint in the message")
        .to_string();
    pinned.push(format!("HostKeyFingerprint={fp}"));
    let log = mount_with(&sb, &pinned, &isolated_env(&home))
        .err()
        .expect("pinned but revoked");
    assert!(log.contains("REVOKED host key"), "{log}");
}

#[test]
fn the_global_known_hosts_file_is_read_and_cert_authority_lines_are_not_hosts() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-sec-global-");
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let empty = dir.path().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let global = dir.path().join("ssh_known_hosts");
    let keys = host_key_lines(&sb);
    // A @cert-authority line for this very host comes first: read as a host
    // name it would be garbage; it must be skipped, not fail the file.
    let ca: String = keys
        .iter()
        .map(|l| format!("@cert-authority {l}\n"))
        .collect();
    fs::write(&global, format!("{ca}{}\n", keys.join("\n"))).unwrap();
    let opts = |global: &Path| {
        vec![
            format!("IdentityFile={}", sb.key.display()),
            format!("UserKnownHostsFile={}", empty.display()),
            format!("GlobalKnownHostsFile={}", global.display()),
        ]
    };
    let m = mount_with(&sb, &opts(&global), &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains(" known)"), "{}", m.log());
    assert!(
        m.log().contains("@cert-authority line ignored"),
        "{}",
        m.log()
    );
    drop(m);
    assert_eq!(fs::read_to_string(&empty).unwrap(), "", "nothing written");

    // Only @cert-authority lines: the host is unknown (strict refuses).
    fs::write(&global, &ca).unwrap();
    let log = mount_with(&sb, &opts(&global), &isolated_env(&home))
        .err()
        .expect("a CA line does not make the host known");
    assert!(log.contains("is not in"), "{log}");
}

#[test]
fn ciphers_option_sets_the_negotiated_cipher_or_fails_clearly() {
    let sb = Sandbox::start();
    let home = traversable_tempdir("coupafs-sec-cipher-");
    let base = vec![
        format!("IdentityFile={}", sb.key.display()),
        format!("UserKnownHostsFile={}", sb.known_hosts.display()),
    ];
    for cipher in ["aes128-ctr", "aes256-ctr"] {
        let mut opts = base.clone();
        opts.push(format!("Ciphers={cipher}"));
        let m =
            mount_with(&sb, &opts, &isolated_env(home.path())).unwrap_or_else(|l| panic!("{l}"));
        assert!(
            m.log().contains(&format!("cipher {cipher} / {cipher}")),
            "{}",
            m.log()
        );
        assert_eq!(
            fs::read_dir(&m.path).unwrap().count(),
            fs::read_dir(&sb.root).unwrap().count()
        );
    }
    // `-` removes from libssh2's list: chacha20 is then never negotiated.
    let mut opts = base.clone();
    opts.push(format!("Ciphers=-{CHACHA}"));
    let m = mount_with(&sb, &opts, &isolated_env(home.path())).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains("negotiated kex"), "{}", m.log());
    assert!(
        !m.log().contains(&format!("cipher {CHACHA}")),
        "{}",
        m.log()
    );
    drop(m);

    let mut opts = base.clone();
    opts.push("Ciphers=rot13-cbc".into());
    let log = mount_with(&sb, &opts, &isolated_env(home.path()))
        .err()
        .expect("an unknown cipher refuses");
    assert!(
        log.contains("Ciphers: not supported by this build's libssh2: rot13-cbc"),
        "{log}"
    );
    let mut opts = base;
    opts.push("MACs=hmac-md5-96-nope".into());
    let log = mount_with(&sb, &opts, &isolated_env(home.path()))
        .err()
        .expect("an unknown MAC refuses");
    assert!(log.contains("MACs: not supported"), "{log}");
}

#[test]
fn identities_only_and_auth_switches_limit_what_is_offered() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-sec-auth-");
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    // The agent holds the authorized key; the identity file is a stranger.
    let agent = start_agent(dir.path());
    let out = Command::new("ssh-add")
        .arg(&sb.key)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = dir.path().join("stranger");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success());
    let env = vec![
        ("HOME".to_string(), home.display().to_string()),
        (
            "SSH_AUTH_SOCK".to_string(),
            agent.sock.display().to_string(),
        ),
    ];
    let base = vec![
        format!("IdentityFile={}", stranger.display()),
        format!("UserKnownHostsFile={}", sb.known_hosts.display()),
    ];
    // Control: the agent's key logs in.
    let m = mount_with(&sb, &base, &env).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains("(publickey (ssh-agent)"), "{}", m.log());
    drop(m);
    // IdentitiesOnly=yes: only the stranger key is offered.
    let mut opts = base.clone();
    opts.push("IdentitiesOnly=yes".into());
    let log = mount_with(&sb, &opts, &env)
        .err()
        .expect("agent keys not used");
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("ssh-agent"), "the agent was not tried: {log}");
    assert!(log.contains("stranger: "), "{log}");

    // PubkeyAuthentication=no: no key at all, not even the agent's.
    let mut opts = base.clone();
    opts.push("PubkeyAuthentication=no".into());
    let log = mount_with(&sb, &opts, &env).err().expect("no keys");
    assert!(
        log.contains("no usable credentials with PubkeyAuthentication=no"),
        "{log}"
    );

    // PasswordAuthentication=no: the password is not sent.
    let pw = vec![
        format!("password_file={}", sb.password_file.display()),
        format!("UserKnownHostsFile={}", sb.known_hosts.display()),
        "BatchMode=yes".to_string(),
    ];
    let m = mount_with(&sb, &pw, &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains("(password,"), "{}", m.log());
    drop(m);
    let mut opts = pw;
    opts.push("PasswordAuthentication=no".into());
    let log = mount_with(&sb, &opts, &isolated_env(&home))
        .err()
        .expect("password not sent");
    let failure = log
        .lines()
        .find(|l| l.contains("authentication failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        !failure.contains("password"),
        "the password was not tried: {log}"
    );
    // With nothing else to try, the message says why.
    let env_no_agent: Vec<(String, String)> = isolated_env(&home)
        .into_iter()
        .filter(|(k, _)| k != "SSH_AUTH_SOCK")
        .collect();
    let log = Command::new(coupafs_bin())
        .args(["check", "-p", &sb.port.to_string(), &sb.target(), "-o"])
        .arg(opts.join(","))
        .env_remove("SSH_AUTH_SOCK")
        .envs(env_no_agent)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&log.stdout).into_owned() + &String::from_utf8_lossy(&log.stderr);
    assert!(
        log.contains("no usable credentials with PasswordAuthentication=no"),
        "{log}"
    );
}

/// In-process (the counter lives in this process): the override runs for
/// chacha20-poly1305 and never for another cipher.
#[cfg(feature = "openssl-chacha")]
#[test]
fn chacha20_poly1305_goes_through_the_override_and_only_it() {
    use coupafs::ssh::{crypto, Algorithms, CloseReason, ConnectParams, Pool};
    // Make sure this test binary links the override before libssh2's archive,
    // as main does.
    std::hint::black_box(crypto::link());
    assert_eq!(crypto::self_test(), Ok(()));
    let sb = Sandbox::start();
    let params = |cipher: &str| ConnectParams {
        algorithms: Algorithms {
            ciphers: Some(cipher.into()),
            ..Algorithms::default()
        },
        ..sb.connect_params()
    };
    let before = crypto::calls();
    let pool = Pool::new(params("aes128-ctr"), 1);
    let conn = pool.connect_first().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conn.info.cipher, "aes128-ctr");
    drop(conn);
    pool.close_all(CloseReason::Done);
    assert_eq!(
        crypto::calls(),
        before,
        "aes128-ctr never calls the override"
    );

    let pool = Pool::new(params(CHACHA), 1);
    let conn = pool.connect_first().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conn.info.cipher, CHACHA);
    // Authentication and SFTP INIT/VERSION alone are several packets, each
    // one chacha20 pass and one poly1305 tag in each direction.
    let used = crypto::calls() - before;
    assert!(used >= 8, "libssh2 called the override {used} times");
    drop(conn);
    pool.close_all(CloseReason::Done);
}

#[test]
fn hashed_known_hosts_names_still_match() {
    let sb = Sandbox::start();
    let dir = traversable_tempdir("coupafs-sec-hashed-");
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let kh = dir.path().join("known_hosts");
    fs::write(
        &kh,
        format!("# hashed below\n{}\n", host_key_lines(&sb).join("\n")),
    )
    .unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashed = fs::read_to_string(&kh).unwrap();
    assert!(
        hashed.contains("|1|") && !hashed.contains("127.0.0.1"),
        "{hashed}"
    );
    let opts = vec![
        format!("IdentityFile={}", sb.key.display()),
        format!("UserKnownHostsFile={}", kh.display()),
        "GlobalKnownHostsFile=none".to_string(),
    ];
    let m = mount_with(&sb, &opts, &isolated_env(&home)).unwrap_or_else(|l| panic!("{l}"));
    assert!(m.log().contains(" known)"), "{}", m.log());
}
