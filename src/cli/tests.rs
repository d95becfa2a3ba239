//! The command line parser's tests: every option, the mount(8) helper
//! conventions, and the errors users see.

use super::*;

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Parses `coupafs ARGS...`.
fn run(args: &[&str]) -> Result<Invocation, UsageError> {
    let mut v = vec!["coupafs"];
    v.extend_from_slice(args);
    parse(&argv(&v))
}

fn mount(args: &[&str]) -> MountOptions {
    match run(args) {
        Ok(Invocation::Mount(o)) => o,
        other => panic!("expected Mount for {args:?}, got {other:?}"),
    }
}

fn check(args: &[&str]) -> MountOptions {
    match run(args) {
        Ok(Invocation::Check(o)) => o,
        other => panic!("expected Check for {args:?}, got {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match run(args) {
        Err(UsageError(msg)) => msg,
        other => panic!("expected an error for {args:?}, got {other:?}"),
    }
}

/// Mount of `user@host:/dir /mnt` plus `-o OPTS`.
fn with_opts(opts: &str) -> MountOptions {
    mount(&["user@host:/dir", "/mnt", "-o", opts])
}

fn opt_error(opts: &str) -> String {
    error(&["user@host:/dir", "/mnt", "-o", opts])
}

fn target(user: Option<&str>, host: &str, dir: &str) -> Target {
    Target {
        user: user.map(str::to_string),
        host: host.to_string(),
        remote_dir: dir.to_string(),
    }
}

fn base() -> MountOptions {
    MountOptions {
        target: target(Some("user"), "host", "/dir"),
        mountpoint: PathBuf::from("/mnt"),
        ..MountOptions::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    argv(v)
}

const FP: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

// ---- whole command lines -------------------------------------------

#[test]
fn minimal_mount() {
    assert_eq!(
        run(&["user@host:/dir", "/mnt"]),
        Ok(Invocation::Mount(base()))
    );
}

#[test]
fn full_sshfs_style_command_line() {
    let got = mount(&[
        "-p",
        "2222",
        "-f",
        "-o",
        "IdentityFile=/etc/coupafs/id_rsa,UserKnownHostsFile=/etc/coupafs/known_hosts",
        "-o",
        "StrictHostKeyChecking=accept-new,ServerAliveInterval=30",
        "acme@sftp.example.com:/Outgoing",
        "/mnt/coupa",
        "-o",
        "allow_other,uid=1000,gid=1001,umask=022,ro,max_conns=3,cache_timeout=60",
        "-oIdentityFile=/etc/coupafs/id_ed25519",
    ]);
    let want = MountOptions {
        target: target(Some("acme"), "sftp.example.com", "/Outgoing"),
        mountpoint: PathBuf::from("/mnt/coupa"),
        port: 2222,
        foreground: true,
        identity_files: vec![
            PathBuf::from("/etc/coupafs/id_rsa"),
            PathBuf::from("/etc/coupafs/id_ed25519"),
        ],
        known_hosts_file: Some(PathBuf::from("/etc/coupafs/known_hosts")),
        host_key_policy: HostKeyPolicy::AcceptNew,
        server_alive_interval: Duration::from_secs(30),
        allow_other: true,
        // Implied by allow_other.
        default_permissions: true,
        uid: Some(1000),
        gid: Some(1001),
        umask: Some(0o022),
        read_only: true,
        max_conns: 3,
        cache_timeout: Duration::from_secs(60),
        explicit: ExplicitSsh {
            port: true,
            host_key_policy: true,
        },
        ..MountOptions::default()
    };
    assert_eq!(got, want);
}

#[test]
fn mount_fuse3_style_options_after_positionals() {
    // mount.fuse3 runs `coupafs SOURCE MOUNTPOINT -o opts`.
    let got = mount(&[
        "user@host:/",
        "/mnt/coupa",
        "-o",
        "rw,nodev,nosuid,allow_other,IdentityFile=/etc/coupafs/id_rsa",
    ]);
    let want = MountOptions {
        target: target(Some("user"), "host", "/"),
        mountpoint: PathBuf::from("/mnt/coupa"),
        allow_other: true,
        default_permissions: true,
        identity_files: vec![PathBuf::from("/etc/coupafs/id_rsa")],
        ignored: strings(&["nodev", "nosuid"]),
        ..MountOptions::default()
    };
    assert_eq!(got, want);
}

#[test]
fn options_before_between_and_after_positionals() {
    let want = MountOptions {
        port: 2200,
        read_only: true,
        foreground: true,
        explicit: ExplicitSsh {
            port: true,
            host_key_policy: false,
        },
        ..base()
    };
    assert_eq!(
        mount(&["-p", "2200", "-o", "ro", "-f", "user@host:/dir", "/mnt"]),
        want
    );
    assert_eq!(
        mount(&["user@host:/dir", "-p", "2200", "-o", "ro", "-f", "/mnt"]),
        want
    );
    assert_eq!(
        mount(&["user@host:/dir", "/mnt", "-p", "2200", "-o", "ro", "-f"]),
        want
    );
    assert_eq!(
        mount(&["-f", "user@host:/dir", "-oro", "/mnt", "-p2200"]),
        want
    );
}

#[test]
fn glued_and_clustered_short_options() {
    let o = mount(&["-oPort=2022", "-p2023", "user@host:/dir", "/mnt"]);
    assert_eq!(o.port, 2023);
    let o = mount(&["-oro,allow_root", "user@host:/dir", "/mnt"]);
    assert!(o.read_only);
    assert!(o.allow_root);
    // getopt-style clusters: flags, then -o taking the rest or the next arg.
    let o = mount(&["-fs", "user@host:/dir", "/mnt"]);
    assert!(o.foreground);
    assert_eq!(o.threads, 1);
    assert!(!o.debug);
    let o = mount(&["-fo", "uid=7", "user@host:/dir", "/mnt"]);
    assert!(o.foreground);
    assert_eq!(o.uid, Some(7));
    let o = mount(&["-Cfouid=8", "user@host:/dir", "/mnt"]);
    assert_eq!(o.uid, Some(8));
    assert_eq!(o.ignored, strings(&["Compression=yes"]));
}

#[test]
fn repeated_and_empty_option_lists() {
    let o = mount(&[
        "-o",
        "",
        "-o",
        "ro,,uid=5,",
        "-o",
        ",gid=6",
        "user@host:/dir",
        "/mnt",
    ]);
    assert_eq!(
        o,
        MountOptions {
            read_only: true,
            uid: Some(5),
            gid: Some(6),
            ..base()
        }
    );
}

#[test]
fn later_option_wins() {
    assert!(!with_opts("ro,rw").read_only);
    assert!(with_opts("rw,ro").read_only);
    assert_eq!(with_opts("Port=1,port=2").port, 2);
    assert_eq!(
        mount(&["-p", "1", "user@host:/dir", "/mnt", "-o", "Port=3"]).port,
        3
    );
    assert_eq!(
        mount(&["-o", "Port=3", "user@host:/dir", "/mnt", "-p", "4"]).port,
        4
    );
    assert_eq!(
        mount(&["-s", "user@host:/dir", "/mnt", "-o", "threads=9"]).threads,
        9
    );
    assert_eq!(
        mount(&["-o", "threads=9", "user@host:/dir", "/mnt", "-s"]).threads,
        1
    );
}

#[test]
fn escaped_comma_in_values() {
    assert_eq!(with_opts(r"fsname=a\,b,ro").fsname.as_deref(), Some("a,b"));
    assert!(with_opts(r"fsname=a\,b,ro").read_only);
    assert_eq!(
        with_opts(r"IdentityFile=/k\\x").identity_files,
        vec![PathBuf::from(r"/k\x")]
    );
    assert_eq!(split_opt_list(r"a,b\,c,,d\"), strings(&["a", "b,c", r"d\"]));
    assert_eq!(split_opt_list(""), Vec::<String>::new());
}

#[test]
fn double_dash_ends_options() {
    let o = mount(&["-f", "--", "user@host:/dir", "-mnt"]);
    assert_eq!(o.mountpoint, PathBuf::from("-mnt"));
    assert!(o.foreground);
    assert_eq!(
        error(&["--", "user@host:/dir", "/mnt", "-o", "ro"]),
        "unexpected argument '-o' (see coupafs -h)"
    );
    // After `--`, `check` is a (bad) target, not the subcommand.
    assert_eq!(
        error(&["--", "check", "/mnt"]),
        "invalid target 'check': expected [USER@]HOST:[DIR]"
    );
}

#[test]
fn single_dash_is_a_positional() {
    assert_eq!(
        mount(&["user@host:/dir", "-"]).mountpoint,
        PathBuf::from("-")
    );
}

// ---- flags -----------------------------------------------------------

#[test]
fn debug_spellings_imply_foreground() {
    for args in [
        vec!["-d", "user@host:/dir", "/mnt"],
        vec!["--debug", "user@host:/dir", "/mnt"],
        vec!["user@host:/dir", "/mnt", "-o", "debug"],
        vec!["user@host:/dir", "/mnt", "-o", "sshfs_debug"],
    ] {
        let o = mount(&args);
        assert_eq!(
            o,
            MountOptions {
                debug: true,
                foreground: true,
                ..base()
            },
            "{args:?}"
        );
    }
    let o = mount(&["-f", "user@host:/dir", "/mnt"]);
    assert!(o.foreground);
    assert!(!o.debug);
}

#[test]
fn single_threaded_and_threads() {
    assert_eq!(mount(&["-s", "user@host:/dir", "/mnt"]).threads, 1);
    assert_eq!(with_opts("threads=1").threads, 1);
    assert_eq!(with_opts("threads=256").threads, 256);
    assert_eq!(
        opt_error("threads=0"),
        "invalid value '0' for threads: expected a number 1-256"
    );
    assert_eq!(
        opt_error("threads=257"),
        "invalid value '257' for threads: expected a number 1-256"
    );
    assert_eq!(
        opt_error("threads=x"),
        "invalid value 'x' for threads: expected a number 1-256"
    );
}

#[test]
fn compression_flag_is_ignored() {
    let o = mount(&["-C", "user@host:/dir", "/mnt"]);
    assert_eq!(
        o,
        MountOptions {
            no_ops: o.no_ops.clone(),
            ignored: strings(&["Compression=yes"]),
            ..base()
        }
    );
}

#[test]
fn help_and_version() {
    let help = Invocation::Help(help_text());
    assert_eq!(run(&["-h"]), Ok(help.clone()));
    assert_eq!(run(&["--help"]), Ok(help.clone()));
    assert_eq!(run(&["user@host:/dir", "/mnt", "-h"]), Ok(help.clone()));
    assert_eq!(run(&["check", "-h"]), Ok(help.clone()));
    // Help wins over errors anywhere on the line.
    assert_eq!(
        run(&["-o", "frobnicate", "-x", "-h", "a", "b", "c"]),
        Ok(help.clone())
    );
    assert_eq!(run(&["-fh"]), Ok(help));

    let version = format!("coupafs {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(version_text(), version);
    assert!(version.starts_with("coupafs ") && version.len() > "coupafs ".len());
    assert_eq!(run(&["-V"]), Ok(Invocation::Version(version.clone())));
    assert_eq!(
        run(&["--version"]),
        Ok(Invocation::Version(version.clone()))
    );
    assert_eq!(
        run(&["--bogus", "--version"]),
        Ok(Invocation::Version(version))
    );
}

#[test]
fn help_text_reads_like_a_man_page() {
    let h = help_text();
    let mut at = 0;
    for section in [
        "NAME\n",
        "SYNOPSIS\n",
        "DESCRIPTION\n",
        "OPTIONS\n",
        "MOUNT OPTIONS (-o)\n",
        "ENVIRONMENT\n",
        "EXAMPLES\n",
    ] {
        let found = h[at..]
            .find(section)
            .unwrap_or_else(|| panic!("section {section:?} missing or out of order"));
        at += found + section.len();
    }
    for needle in [
        "coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]",
        "coupafs check [--json] [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]",
        "coupafs status [MOUNTPOINT]",
        "log_file=PATH",
        "atomic",
        "renamed",
        "COUPAFS_PASSWORD",
        "SSH_AUTH_SOCK",
        "user@host:/ /mnt/coupa fuse.coupafs _netdev,nofail,delay_connect,\
         IdentityFile=/etc/coupafs/id_rsa,\
         UserKnownHostsFile=/etc/coupafs/known_hosts 0 0",
        "coupafs check ",
        "-p PORT",
        "-f",
        "-d, --debug",
        "-h, --help",
        "-V, --version",
        "-C",
        "-s",
        "Port=",
        "IdentityFile=",
        "User=",
        "UserKnownHostsFile=",
        "StrictHostKeyChecking=yes|accept-new|no",
        "HostKeyFingerprint=SHA256:",
        "ServerAliveInterval=",
        "ServerAliveCountMax=",
        "ConnectTimeout=",
        "Compression",
        "Ciphers",
        "Cipher=",
        "BatchMode",
        "PasswordAuthentication",
        "PreferredAuthentications",
        "LogLevel",
        "IdentitiesOnly",
        "PubkeyAuthentication",
        "TCPKeepAlive",
        "ControlMaster",
        "ControlPath",
        "ProxyCommand",
        "password_file=",
        "passphrase_file=",
        "-o ro",
        "-o rw",
        "allow_other",
        "allow_root",
        "default_permissions",
        "no_default_permissions",
        "uid=N",
        "gid=N",
        "umask=OCTAL",
        "cache_timeout=",
        "cache=yes|no",
        "dcache_timeout",
        "entry_timeout",
        "attr_timeout",
        "timeout=SECS",
        "max_conns=N",
        "Coupa",
        "strict_setstat",
        "upload_dir=",
        "temp_prefix=",
        "spool_dir=",
        "spool_max=",
        "spare_temps=N",
        "follow_symlinks",
        "contain_symlinks",
        "nocontain_symlinks",
        "fsname=",
        "subtype=",
        "threads=N",
        "sshfs_debug",
        "reconnect",
        "idmap=user, idmap=none",
        "workaround=",
        "kernel_cache",
        "auto_cache",
        "big_writes",
        "noatime",
        "relatime",
        "nodiratime",
        "max_read=",
        "delay_connect",
        "dir_cache=yes|no",
        "_netdev",
        "nofail",
        "x-*",
        "comment=",
        "mount.coupafs",
    ] {
        assert!(h.contains(needle), "help lacks {needle:?}");
    }
    for line in h.lines() {
        if !line.contains("fuse.coupafs _netdev") {
            assert!(line.chars().count() <= 80, "line too long: {line:?}");
        }
        assert_eq!(line, line.trim_end(), "trailing space: {line:?}");
    }
}

// ---- check -----------------------------------------------------------

#[test]
fn check_subcommand() {
    let got = check(&[
        "check",
        "acme@sftp.example.com:/In",
        "-p",
        "2222",
        "-o",
        "IdentityFile=/k",
    ]);
    assert_eq!(
        got,
        MountOptions {
            target: target(Some("acme"), "sftp.example.com", "/In"),
            mountpoint: PathBuf::new(),
            port: 2222,
            identity_files: vec![PathBuf::from("/k")],
            explicit: ExplicitSsh {
                port: true,
                host_key_policy: false,
            },
            ..MountOptions::default()
        }
    );
    // Options may also precede the target, and even the word check.
    assert_eq!(check(&["check", "-p", "2222", "host:"]).port, 2222);
    assert_eq!(check(&["-p", "2222", "check", "host:"]).port, 2222);
    assert_eq!(check(&["check", "host:"]).target, target(None, "host", ""));
}

#[test]
fn check_positional_errors() {
    assert_eq!(
        error(&["check"]),
        "check: missing [USER@]HOST:[DIR] (see coupafs -h)"
    );
    assert_eq!(
        error(&["check", "-p", "22"]),
        "check: missing [USER@]HOST:[DIR] (see coupafs -h)"
    );
    assert_eq!(
        error(&["check", "user@host:", "/mnt"]),
        "check: unexpected argument '/mnt' (see coupafs -h)"
    );
    assert_eq!(
        error(&["check", "nocolon"]),
        "invalid target 'nocolon': expected [USER@]HOST:[DIR]"
    );
}

#[test]
fn check_as_mountpoint_is_a_mountpoint() {
    assert_eq!(
        mount(&["host:", "check"]).mountpoint,
        PathBuf::from("check")
    );
}

// ---- mount(8) helper ---------------------------------------------------

#[test]
fn mount_helper_argv0() {
    let got = parse(&argv(&[
        "/sbin/mount.coupafs",
        "user@host:/",
        "/mnt/coupa",
        "-s",
        "-f",
        "-n",
        "-v",
        "-o",
        "rw,_netdev,IdentityFile=/etc/coupafs/id_rsa",
    ]));
    let want = MountOptions {
        target: target(Some("user"), "host", "/"),
        mountpoint: PathBuf::from("/mnt/coupa"),
        identity_files: vec![PathBuf::from("/etc/coupafs/id_rsa")],
        // -f is mount's "fake", -s "sloppy": neither means foreground or
        // single-threaded here.
        foreground: false,
        threads: 16,
        ignored: strings(&["-s", "-f", "-n", "-v", "_netdev"]),
        ..MountOptions::default()
    };
    assert_eq!(got, Ok(Invocation::Mount(want.clone())));

    let got = parse(&argv(&[
        "mount.coupafs",
        "user@host:/",
        "/mnt/coupa",
        "-sfnv",
        "-t",
        "fuse.coupafs",
        "-orw,_netdev,IdentityFile=/etc/coupafs/id_rsa",
    ]));
    let mut want2 = want;
    want2.ignored = strings(&["-s", "-f", "-n", "-v", "-t fuse.coupafs", "_netdev"]);
    assert_eq!(got, Ok(Invocation::Mount(want2)));

    // -d keeps its meaning; no options at all are fine.
    let got = parse(&argv(&["mount.coupafs", "host:", "/m", "-d"]));
    let Ok(Invocation::Mount(o)) = got else {
        panic!("{got:?}")
    };
    assert!(o.debug && o.foreground);
}

#[test]
fn mount_helper_has_no_check_subcommand() {
    assert_eq!(
        parse(&argv(&["mount.coupafs", "check", "/mnt"])),
        Err(UsageError(
            "invalid target 'check': expected [USER@]HOST:[DIR]".to_string()
        ))
    );
}

#[test]
fn helper_flags_are_errors_for_plain_coupafs() {
    assert_eq!(
        error(&["-n", "h:", "/m"]),
        "unknown option '-n' (see coupafs -h)"
    );
    assert_eq!(
        error(&["-t", "x", "h:", "/m"]),
        "unknown option '-t' (see coupafs -h)"
    );
    // Only the exact file name selects helper mode.
    let got = parse(&argv(&["/usr/bin/mount.coupafs.old", "h:", "/m", "-n"]));
    assert_eq!(
        got,
        Err(UsageError(
            "unknown option '-n' (see coupafs -h)".to_string()
        ))
    );
    assert!(is_mount_helper("mount.coupafs"));
    assert!(is_mount_helper("/sbin/mount.coupafs"));
    assert!(is_mount_helper("/usr/sbin/mount.fuse.coupafs"));
    assert!(!is_mount_helper("mount.fuse"));
    assert!(!is_mount_helper("mount.fuse.sshfs"));
    assert!(!is_mount_helper("coupafs"));
    assert!(!is_mount_helper("mount.coupafs.old"));
    assert!(!is_mount_helper("/sbin/mount.coupa"));
    assert!(!is_mount_helper(""));
}

// ---- fstab -------------------------------------------------------------

#[test]
fn fstab_option_string() {
    let o = with_opts(
        "_netdev,nofail,x-systemd.automount,x-systemd.mount-timeout=30,\
         comment=systemd.foo,noauto,auto,user,nouser,users,owner,defaults,dev,nodev,\
         suid,nosuid,exec,noexec,sync,async,atime,noatime,relatime,x-gvfs-hide,\
         IdentityFile=/etc/coupafs/id_rsa,UserKnownHostsFile=/etc/coupafs/known_hosts",
    );
    let want = MountOptions {
        identity_files: vec![PathBuf::from("/etc/coupafs/id_rsa")],
        known_hosts_file: Some(PathBuf::from("/etc/coupafs/known_hosts")),
        ignored: strings(&[
            "_netdev",
            "nofail",
            "x-systemd.automount",
            "x-systemd.mount-timeout=30",
            "comment=systemd.foo",
            "noauto",
            "auto",
            "user",
            "nouser",
            "users",
            "owner",
            "defaults",
            "dev",
            "nodev",
            "suid",
            "nosuid",
            "exec",
            "noexec",
            "sync",
            "async",
            "atime",
            "noatime",
            "relatime",
            "x-gvfs-hide",
        ]),
        ..base()
    };
    assert_eq!(o, want);
}

#[test]
fn mount_flags_take_no_value() {
    assert_eq!(
        opt_error("_netdev=1"),
        "option '_netdev' does not take a value"
    );
    assert_eq!(
        opt_error("nofail=yes"),
        "option 'nofail' does not take a value"
    );
}

// ---- ssh options -------------------------------------------------------

#[test]
fn ssh_names_are_case_insensitive() {
    for opts in [
        "Port=2222,IdentityFile=/k,User=bob,UserKnownHostsFile=/kh,\
         StrictHostKeyChecking=no,ServerAliveInterval=5,ServerAliveCountMax=7,\
         ConnectTimeout=9",
        "port=2222,identityfile=/k,user=bob,userknownhostsfile=/kh,\
         stricthostkeychecking=no,serveraliveinterval=5,serveralivecountmax=7,\
         connecttimeout=9",
        "PORT=2222,IDENTITYFILE=/k,USER=bob,USERKNOWNHOSTSFILE=/kh,\
         STRICTHOSTKEYCHECKING=NO,SERVERALIVEINTERVAL=5,SERVERALIVECOUNTMAX=7,\
         CONNECTTIMEOUT=9",
    ] {
        let o = mount(&["host:/d", "/mnt", "-o", opts]);
        let want = MountOptions {
            target: target(Some("bob"), "host", "/d"),
            mountpoint: PathBuf::from("/mnt"),
            port: 2222,
            identity_files: vec![PathBuf::from("/k")],
            known_hosts_file: Some(PathBuf::from("/kh")),
            host_key_policy: HostKeyPolicy::No,
            server_alive_interval: Duration::from_secs(5),
            server_alive_count_max: 7,
            connect_timeout: Duration::from_secs(9),
            explicit: ExplicitSsh {
                port: true,
                host_key_policy: true,
            },
            ..MountOptions::default()
        };
        assert_eq!(o, want, "{opts}");
    }
    assert_eq!(
        with_opts(&format!("HOSTKEYFINGERPRINT={FP}")).host_key_fingerprint,
        Some(FP.to_string())
    );
}

#[test]
fn coupafs_names_are_case_sensitive() {
    assert_eq!(opt_error("RO"), "unknown option 'RO' (see coupafs -h)");
    assert_eq!(
        opt_error("Allow_Other"),
        "unknown option 'Allow_Other' (see coupafs -h)"
    );
    assert_eq!(
        opt_error("UMASK=022"),
        "unknown option 'UMASK' (see coupafs -h)"
    );
    assert_eq!(
        opt_error("Max_Conns=2"),
        "unknown option 'Max_Conns' (see coupafs -h)"
    );
    assert_eq!(
        opt_error("_NETDEV"),
        "unknown option '_NETDEV' (see coupafs -h)"
    );
}

#[test]
fn identity_files_append_in_order() {
    let o = mount(&[
        "-o",
        "IdentityFile=/a,identityfile=/b",
        "h:",
        "/m",
        "-oIDENTITYFILE=/c",
    ]);
    assert_eq!(
        o.identity_files,
        vec![
            PathBuf::from("/a"),
            PathBuf::from("/b"),
            PathBuf::from("/c")
        ]
    );
}

#[test]
fn strict_host_key_checking_values() {
    for (v, want) in [
        ("yes", HostKeyPolicy::Strict),
        ("YES", HostKeyPolicy::Strict),
        ("on", HostKeyPolicy::Strict),
        ("ask", HostKeyPolicy::Strict),
        ("accept-new", HostKeyPolicy::AcceptNew),
        ("Accept-New", HostKeyPolicy::AcceptNew),
        ("no", HostKeyPolicy::No),
        ("off", HostKeyPolicy::No),
        ("Off", HostKeyPolicy::No),
    ] {
        assert_eq!(
            with_opts(&format!("StrictHostKeyChecking={v}")).host_key_policy,
            want,
            "{v}"
        );
    }
    // Default is strict, and a later value overrides an earlier one.
    assert_eq!(base().host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(
        with_opts("StrictHostKeyChecking=no,StrictHostKeyChecking=yes").host_key_policy,
        HostKeyPolicy::Strict
    );
    assert_eq!(
        opt_error("StrictHostKeyChecking=maybe"),
        "invalid value 'maybe' for StrictHostKeyChecking: expected yes, accept-new or no"
    );
    assert_eq!(
        opt_error("stricthostkeychecking"),
        "option 'stricthostkeychecking' requires a value"
    );
}

#[test]
fn host_key_fingerprint() {
    assert_eq!(
        with_opts(&format!("HostKeyFingerprint={FP}")).host_key_fingerprint,
        Some(FP.to_string())
    );
    // A padded copy is normalized to the ssh-keygen form.
    assert_eq!(
        with_opts(&format!("hostkeyfingerprint={FP}=")).host_key_fingerprint,
        Some(FP.to_string())
    );
    let msg = |v: &str| {
        format!(
            "invalid value '{v}' for HostKeyFingerprint: expected SHA256: followed by \
             43 base64 characters, as printed by ssh-keygen -l"
        )
    };
    let body = &FP["SHA256:".len()..];
    for bad in [
        "abc".to_string(),
        body.to_string(),
        format!("sha256:{body}"),
        format!("MD5:{body}"),
        format!("SHA256:{}", &body[1..]),
        format!("SHA256:{body}A"),
        format!("SHA256:{}V", &body[..42]),
        format!("SHA256:{}-", &body[..42]),
        format!("SHA256:{}==", body),
        "SHA256:".to_string(),
    ] {
        assert_eq!(opt_error(&format!("HostKeyFingerprint={bad}")), msg(&bad));
    }
}

#[test]
fn user_from_option_and_target() {
    // The target's user wins over -o User=.
    assert_eq!(
        mount(&["alice@host:", "/m", "-o", "User=bob"])
            .target
            .user
            .as_deref(),
        Some("alice")
    );
    // User= fills in when the target has none.
    assert_eq!(
        mount(&["host:", "/m", "-o", "User=bob"]).target,
        target(Some("bob"), "host", "")
    );
    assert_eq!(
        mount(&["host:", "/m", "-o", "user=carol"])
            .target
            .user
            .as_deref(),
        Some("carol")
    );
    // Bare `user` is the fstab flag, not a login name.
    let o = mount(&["host:", "/m", "-o", "user"]);
    assert_eq!(o.target.user, None);
    assert_eq!(o.ignored, strings(&["user"]));
    assert_eq!(mount(&["host:", "/m"]).target.user, None);
    assert_eq!(
        opt_error("User="),
        "invalid value '' for User: expected a user name"
    );
    assert_eq!(opt_error("USER"), "option 'USER' requires a value");
}

#[test]
fn ssh_keepalive_and_timeouts() {
    let o = with_opts("ServerAliveInterval=0,ServerAliveCountMax=0,ConnectTimeout=2.5,timeout=120");
    assert_eq!(o.server_alive_interval, Duration::ZERO);
    assert_eq!(o.server_alive_count_max, 0);
    assert_eq!(o.connect_timeout, Duration::from_millis(2500));
    assert_eq!(o.op_timeout, Duration::from_secs(120));
    assert_eq!(
        opt_error("ServerAliveCountMax=4294967296"),
        "invalid value '4294967296' for ServerAliveCountMax: expected a number"
    );
    assert_eq!(
        opt_error("ServerAliveCountMax=-1"),
        "invalid value '-1' for ServerAliveCountMax: expected a number"
    );
    assert_eq!(
        opt_error("ConnectTimeout=soon"),
        "invalid value 'soon' for ConnectTimeout: expected a number of seconds"
    );
}

#[test]
fn ignored_ssh_options_are_recorded_as_typed() {
    let o = with_opts(
        "Compression=yes,Cipher=blowfish,\
         PreferredAuthentications=publickey,LogLevel=ERROR,TCPKeepAlive=no,\
         ControlMaster=auto,ControlPath=/tmp/%r@%h:%p,ControlPersist=60",
    );
    let names: Vec<&str> = o.no_ops.iter().map(|n| n.option).collect();
    assert_eq!(
        names,
        [
            "Compression",
            "Cipher",
            "PreferredAuthentications",
            "LogLevel",
            "TCPKeepAlive",
            "ControlMaster",
            "ControlPath",
            "ControlPersist"
        ]
    );
    assert_eq!(
        o,
        MountOptions {
            no_ops: o.no_ops.clone(),
            ignored: strings(&[
                "Compression=yes",
                "Cipher=blowfish",
                "PreferredAuthentications=publickey",
                "LogLevel=ERROR",
                "TCPKeepAlive=no",
                "ControlMaster=auto",
                "ControlPath=/tmp/%r@%h:%p",
                "ControlPersist=60",
            ]),
            ..base()
        }
    );
}

#[test]
fn security_ssh_options_are_honoured_not_ignored() {
    let o = with_opts(
        "ciphers=aes128-ctr\\,aes256-ctr,KexAlgorithms=-diffie-hellman-group1-sha1,\
         HostKeyAlgorithms=^ssh-ed25519,MACs=+hmac-sha2-512,BatchMode=yes,\
         PasswordAuthentication=no,IdentitiesOnly=YES,PubkeyAuthentication=true,\
         GlobalKnownHostsFile=/etc/a /etc/b",
    );
    assert_eq!(
        o,
        MountOptions {
            algorithms: Algorithms {
                ciphers: Some("aes128-ctr,aes256-ctr".into()),
                kex: Some("-diffie-hellman-group1-sha1".into()),
                host_key: Some("^ssh-ed25519".into()),
                macs: Some("+hmac-sha2-512".into()),
            },
            ssh_auth: SshAuthOptions {
                identities_only: Some(true),
                pubkey_authentication: Some(true),
                password_authentication: Some(false),
                batch_mode: Some(true),
                kbd_interactive: None,
            },
            global_known_hosts_files: Some(vec![PathBuf::from("/etc/a"), PathBuf::from("/etc/b")]),
            ..base()
        }
    );
    assert!(o.ignored.is_empty());
    assert_eq!(
        o.ssh_auth.resolve(),
        AuthPolicy {
            identities_only: true,
            pubkey: true,
            password: false,
            batch_mode: true,
            kbd_interactive: true,
        }
    );
    assert_eq!(base().ssh_auth.resolve(), AuthPolicy::default());
    assert_eq!(
        with_opts("GlobalKnownHostsFile=none").global_known_hosts_files,
        Some(Vec::new())
    );
}

#[test]
fn bad_security_ssh_option_values_are_refused() {
    assert_eq!(
        opt_error("IdentitiesOnly=maybe"),
        "invalid value 'maybe' for IdentitiesOnly: expected yes or no"
    );
    assert_eq!(
        opt_error("PasswordAuthentication"),
        "option 'PasswordAuthentication' requires a value"
    );
    for bad in [
        "Ciphers=",
        "Ciphers=+",
        "MACs=a\\,\\,b",
        "Ciphers=aes128 ctr",
        "KexAlgorithms=x;y",
    ] {
        let e = opt_error(bad);
        assert!(e.contains("expected a comma-separated list"), "{bad}: {e}");
    }
    assert_eq!(
        opt_error("GlobalKnownHostsFile="),
        "invalid value '' for GlobalKnownHostsFile: expected a path"
    );
}

#[test]
fn proxy_options_are_parsed_and_checked() {
    // ProxyCommand and ProxyJump used to be refused.
    let o = with_opts("ProxyCommand=ssh -W %h:%p bastion");
    assert_eq!(
        o.reach.proxy_command.as_deref(),
        Some("ssh -W %h:%p bastion")
    );
    let o = with_opts("proxyjump=bob@bastion:2200,AddressFamily=INET6");
    assert_eq!(o.reach.proxy_jump.as_deref(), Some("bob@bastion:2200"));
    assert_eq!(
        o.reach.address_family,
        Some(crate::cli::AddressFamily::Inet6)
    );
    assert_eq!(
        with_opts("ProxyJump=none").reach.proxy_jump.as_deref(),
        Some("none")
    );
    assert!(opt_error("ProxyJump=-oProxyCommand=x").contains("may not start with '-'"));
    assert_eq!(
        opt_error("AddressFamily=ipv4"),
        "invalid value 'ipv4' for AddressFamily: expected inet, inet6 or any"
    );
    let o = with_opts("proxy=http://u:pw@proxy:3128,no_proxy=.corp\\,localhost");
    match o.reach.proxy {
        Some(crate::cli::ProxySetting::Url(crate::ssh::Route::HttpConnect(p))) => {
            assert_eq!((p.host.as_str(), p.port), ("proxy", 3128));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(o.reach.no_proxy, Some(strings(&[".corp", "localhost"])));
    assert_eq!(
        with_opts("proxy=env").reach.proxy,
        Some(crate::cli::ProxySetting::Env)
    );
    assert_eq!(
        with_opts("proxy=none").reach.proxy,
        Some(crate::cli::ProxySetting::None)
    );
    let e = opt_error("proxy=ftp://u:hunter2@p:1");
    assert!(
        e.contains("the scheme must be http or socks5") && !e.contains("hunter2"),
        "{e}"
    );
    assert_eq!(
        with_opts("KbdInteractiveAuthentication=no")
            .ssh_auth
            .kbd_interactive,
        Some(false)
    );
}

// ---- ports -------------------------------------------------------------

#[test]
fn ports() {
    assert_eq!(with_opts("Port=1").port, 1);
    assert_eq!(with_opts("Port=65535").port, 65535);
    assert_eq!(with_opts("Port=022").port, 22);
    assert_eq!(base().port, 22);
    for bad in [
        "abc",
        "0",
        "65536",
        "-1",
        "+22",
        " 22",
        "",
        "99999999999999999999999",
    ] {
        assert_eq!(
            opt_error(&format!("Port={bad}")),
            format!("invalid value '{bad}' for Port: expected a number 1-65535")
        );
    }
    assert_eq!(
        opt_error("port=abc"),
        "invalid value 'abc' for port: expected a number 1-65535"
    );
    assert_eq!(
        error(&["-p", "abc", "h:", "/m"]),
        "invalid value 'abc' for -p: expected a number 1-65535"
    );
    assert_eq!(
        error(&["-p0", "h:", "/m"]),
        "invalid value '0' for -p: expected a number 1-65535"
    );
    assert_eq!(opt_error("Port"), "option 'Port' requires a value");
}

#[test]
fn options_missing_their_argument() {
    assert_eq!(
        error(&["h:", "/m", "-p"]),
        "option '-p' requires an argument"
    );
    assert_eq!(
        error(&["h:", "/m", "-o"]),
        "option '-o' requires an argument"
    );
    assert_eq!(
        error(&["h:", "/m", "-fo"]),
        "option '-o' requires an argument"
    );
}

// ---- secrets -------------------------------------------------------

#[test]
fn password_on_command_line_is_refused() {
    let msg = |k: &str| {
        format!(
            "option '{k}' is not supported: a password on the command line is visible to \
             other users; use password_file=PATH or the COUPAFS_PASSWORD environment variable"
        )
    };
    assert_eq!(opt_error("password=hunter2"), msg("password"));
    assert_eq!(opt_error("Password=hunter2"), msg("Password"));
    assert_eq!(opt_error("password"), msg("password"));
    // sshfs's password_stdin: refused by the compatibility table.
    assert_eq!(
        opt_error("password_stdin"),
        "option 'password_stdin' is not supported: coupafs reads no password from stdin \
         (mount(8) and systemd give it none); use password_file=PATH or the \
         COUPAFS_PASSWORD environment variable"
    );
    assert_eq!(opt_error("PASSWORD_STDIN"), msg("PASSWORD_STDIN"));
    assert!(!opt_error("ro,password=hunter2").contains("hunter2"));
    // An unknown option's value is not echoed either (it may be a typo
    // of password=).
    assert_eq!(
        opt_error("pasword=hunter2"),
        "unknown option 'pasword' (see coupafs -h)"
    );
}

#[test]
fn password_and_passphrase_files() {
    let o = with_opts("password_file=/etc/coupafs/pw,passphrase_file=/etc/coupafs/pp");
    assert_eq!(o.password_file, Some(PathBuf::from("/etc/coupafs/pw")));
    assert_eq!(o.passphrase_file, Some(PathBuf::from("/etc/coupafs/pp")));
    assert_eq!(
        opt_error("password_file="),
        "invalid value '' for password_file: expected a path"
    );
    assert_eq!(
        opt_error("passphrase_file"),
        "option 'passphrase_file' requires a value"
    );
    assert_eq!(
        opt_error("IdentityFile="),
        "invalid value '' for IdentityFile: expected a path"
    );
    assert_eq!(
        opt_error("UserKnownHostsFile="),
        "invalid value '' for UserKnownHostsFile: expected a path"
    );
}

// ---- unknown options -------------------------------------------------

#[test]
fn unknown_options_are_named_as_typed() {
    assert_eq!(
        opt_error("frobnicate"),
        "unknown option 'frobnicate' (see coupafs -h)"
    );
    assert_eq!(
        opt_error("Frob=1"),
        "unknown option 'Frob' (see coupafs -h)"
    );
    assert_eq!(
        opt_error("ro,frobnicate,rw"),
        "unknown option 'frobnicate' (see coupafs -h)"
    );
    assert_eq!(opt_error("=x"), "unknown option '' (see coupafs -h)");
    assert_eq!(
        error(&["-x", "h:", "/m"]),
        "unknown option '-x' (see coupafs -h)"
    );
    assert_eq!(
        error(&["-fx", "h:", "/m"]),
        "unknown option '-fx' (see coupafs -h)"
    );
    assert_eq!(
        error(&["--frob", "h:", "/m"]),
        "unknown option '--frob' (see coupafs -h)"
    );
    assert_eq!(
        error(&["--help=x", "h:", "/m"]),
        "unknown option '--help=x' (see coupafs -h)"
    );
    assert_eq!(
        error(&["-G", "cfg", "h:", "/m"]),
        "unknown option '-G' (see coupafs -h)"
    );
    // The first problem, left to right, is the one reported.
    assert_eq!(
        error(&["-o", "Port=x", "h:", "/m", "-o", "bogus"]),
        "invalid value 'x' for Port: expected a number 1-65535"
    );
    assert_eq!(
        error(&["-o", "Port=x", "-x", "h:", "/m"]),
        "invalid value 'x' for Port: expected a number 1-65535"
    );
    assert_eq!(
        error(&["-x", "-o", "Port=x", "h:", "/m"]),
        "unknown option '-x' (see coupafs -h)"
    );
}

// ---- fuse / permissions ------------------------------------------------

#[test]
fn permission_flags() {
    assert_eq!(
        with_opts("allow_other,default_permissions,uid=0,gid=4294967294"),
        MountOptions {
            allow_other: true,
            default_permissions: true,
            uid: Some(0),
            gid: Some(4294967294),
            ..base()
        }
    );
    assert!(with_opts("allow_root").allow_root);
    assert!(!with_opts("allow_root").default_permissions);
    assert_eq!(
        opt_error("allow_other,allow_root"),
        "options allow_other and allow_root are mutually exclusive"
    );
    assert_eq!(
        opt_error("allow_other=1"),
        "option 'allow_other' does not take a value"
    );
    for bad in ["-1", "4294967295", "root", ""] {
        assert_eq!(
            opt_error(&format!("uid={bad}")),
            format!("invalid value '{bad}' for uid: expected a number")
        );
    }
    assert_eq!(
        opt_error("gid=x"),
        "invalid value 'x' for gid: expected a number"
    );
    assert_eq!(opt_error("uid"), "option 'uid' requires a value");
}

#[test]
fn allow_other_implies_default_permissions_unless_opted_out() {
    let o = with_opts("allow_other");
    assert!(o.allow_other && o.default_permissions && !o.no_default_permissions);
    let o = with_opts("allow_other,no_default_permissions");
    assert!(o.allow_other && !o.default_permissions && o.no_default_permissions);
    // The later of the two spellings wins, in either order.
    let o = with_opts("no_default_permissions,allow_other,default_permissions");
    assert!(o.default_permissions && !o.no_default_permissions);
    let o = with_opts("default_permissions,no_default_permissions");
    assert!(!o.default_permissions && o.no_default_permissions);
    // Without allow_other nothing is implied.
    assert!(!with_opts("ro").default_permissions);
    assert_eq!(
        opt_error("no_default_permissions=1"),
        "option 'no_default_permissions' does not take a value"
    );
}

#[test]
fn umask_is_octal() {
    for (v, want) in [
        ("022", 0o022),
        ("0022", 0o022),
        ("077", 0o077),
        ("0077", 0o077),
        ("22", 0o022),
        ("0", 0),
        ("000", 0),
        ("777", 0o777),
        ("0777", 0o777),
        ("00000027", 0o027),
    ] {
        assert_eq!(with_opts(&format!("umask={v}")).umask, Some(want), "{v}");
    }
    assert_eq!(base().umask, None);
    for bad in ["089", "8", "1000", "7777", "-22", "", "0o22", "0x12", " 22"] {
        assert_eq!(
            opt_error(&format!("umask={bad}")),
            format!("invalid value '{bad}' for umask: expected an octal mask 000-777, e.g. 022")
        );
    }
}

#[test]
fn ssh_config_file_and_explicit_settings() {
    assert_eq!(base().ssh_config, None);
    assert_eq!(base().explicit, ExplicitSsh::default());
    for args in [
        &["-F", "/etc/coupafs/ssh_config", "h:", "/m"][..],
        &["-F/etc/coupafs/ssh_config", "h:", "/m"],
        &["h:", "/m", "-fF", "/etc/coupafs/ssh_config"],
        &["h:", "/m", "-o", "ssh_config=/etc/coupafs/ssh_config"],
    ] {
        assert_eq!(
            mount(args).ssh_config,
            Some(PathBuf::from("/etc/coupafs/ssh_config")),
            "{args:?}"
        );
    }
    assert_eq!(
        mount(&["-F", "none", "h:", "/m"]).ssh_config,
        Some(PathBuf::from("none"))
    );
    assert_eq!(
        error(&["h:", "/m", "-F"]),
        "option '-F' requires an argument"
    );
    assert_eq!(
        error(&["-F", "", "h:", "/m"]),
        "invalid value '' for -F: expected a path"
    );
    // The mount(8) helpers take -F too (fstab lines use ssh_config=).
    let got = parse(&argv(&["mount.coupafs", "h:", "/m", "-F", "/c"]));
    assert!(
        matches!(&got, Ok(Invocation::Mount(o)) if o.ssh_config == Some(PathBuf::from("/c"))),
        "{got:?}"
    );
    // Only explicit Port/-p and StrictHostKeyChecking are flagged.
    assert!(mount(&["-p", "22", "h:", "/m"]).explicit.port);
    assert!(with_opts("port=22").explicit.port);
    assert!(!with_opts("ro").explicit.port);
    assert!(
        with_opts("StrictHostKeyChecking=yes")
            .explicit
            .host_key_policy
    );
    assert!(!with_opts("Port=2").explicit.host_key_policy);
}

#[test]
fn symlink_options() {
    let o = with_opts("follow_symlinks,nocontain_symlinks");
    assert!(o.follow_symlinks);
    assert!(!o.contain_symlinks);
    assert!(with_opts("nocontain_symlinks,contain_symlinks").contain_symlinks);
    assert!(base().contain_symlinks);
    assert!(!base().follow_symlinks);
}

#[test]
fn fsname() {
    assert_eq!(
        with_opts("fsname=coupa-prod").fsname.as_deref(),
        Some("coupa-prod")
    );
    assert_eq!(
        opt_error("fsname="),
        "invalid value '' for fsname: expected a name"
    );
}

#[test]
fn ignored_sshfs_and_fuse_options() {
    let opts = "reconnect,kernel_cache,auto_cache,big_writes,nodiratime,\
                nonempty,subtype=coupafs,workaround=rename,max_read=65536,idmap=user,\
                idmap=none,delay_connect";
    let o = with_opts(opts);
    // delay_connect is honoured (see the test below), not ignored.
    let mut o = o;
    assert!(o.delay_connect);
    o.delay_connect = false;
    let opts = opts.trim_end_matches(",delay_connect");
    assert_eq!(
        o,
        MountOptions {
            no_ops: o.no_ops.clone(),
            ignored: split_opt_list(opts),
            ..base()
        }
    );
    assert_eq!(o.ignored.len(), 11);
    // All but nodiratime come from the sshfs table.
    assert_eq!(o.no_ops.len(), 10);
    // dir_cache is sshfs's name for cache=.
    assert_eq!(with_opts("dir_cache=no").cache_timeout, Duration::ZERO);
    assert_eq!(
        with_opts("dir_cache=no,dir_cache=yes").cache_timeout,
        base().cache_timeout
    );
    assert!(opt_error("idmap=file").starts_with("option 'idmap' is not supported"));
    assert_eq!(
        opt_error("dir_cache=maybe"),
        "invalid value 'maybe' for dir_cache: expected yes or no"
    );
    assert_eq!(
        opt_error("reconnect=1"),
        "option 'reconnect' does not take a value"
    );
    assert_eq!(opt_error("subtype"), "option 'subtype' requires a value");
}

// ---- cache, timeouts, connections ---------------------------------------

#[test]
fn cache_timeouts() {
    assert_eq!(base().cache_timeout, Duration::from_secs(5));
    assert_eq!(
        with_opts("cache_timeout=60").cache_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(with_opts("cache_timeout=0").cache_timeout, Duration::ZERO);
    assert_eq!(
        with_opts("dcache_timeout=7").cache_timeout,
        Duration::from_secs(7)
    );
    assert_eq!(
        with_opts("entry_timeout=0.5").cache_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(
        with_opts("attr_timeout=1.000000001").cache_timeout,
        Duration::new(1, 1)
    );
    assert_eq!(
        with_opts("cache_timeout=4294967295").cache_timeout,
        Duration::from_secs(4294967295)
    );
    for bad in [
        "",
        "1.",
        ".5",
        "-1",
        "1e3",
        "10s",
        "1.2.3",
        "4294967296",
        "0.0000000001",
        "inf",
        "NaN",
    ] {
        assert_eq!(
            opt_error(&format!("cache_timeout={bad}")),
            format!("invalid value '{bad}' for cache_timeout: expected a number of seconds")
        );
    }
}

#[test]
fn cache_yes_no() {
    assert_eq!(with_opts("cache=no").cache_timeout, Duration::ZERO);
    // cache=no wins over a timeout, whichever comes first.
    assert_eq!(
        with_opts("cache=no,cache_timeout=30").cache_timeout,
        Duration::ZERO
    );
    assert_eq!(
        with_opts("cache_timeout=30,cache=no").cache_timeout,
        Duration::ZERO
    );
    // A later cache=yes undoes it.
    assert_eq!(
        with_opts("cache=no,cache_timeout=30,cache=yes").cache_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(with_opts("cache=yes").cache_timeout, Duration::from_secs(5));
    assert_eq!(
        opt_error("cache=off"),
        "invalid value 'off' for cache: expected yes or no"
    );
}

#[test]
fn op_timeout() {
    assert_eq!(base().op_timeout, Duration::from_secs(30));
    assert_eq!(with_opts("timeout=0").op_timeout, Duration::ZERO);
    assert_eq!(with_opts("timeout=90").op_timeout, Duration::from_secs(90));
    assert_eq!(
        opt_error("timeout=forever"),
        "invalid value 'forever' for timeout: expected a number of seconds"
    );
}

#[test]
fn max_conns_bounds() {
    assert_eq!(base().max_conns, 2);
    for n in 1..=4 {
        assert_eq!(with_opts(&format!("max_conns={n}")).max_conns, n);
    }
    for bad in ["0", "5", "6", "100", "abc", "", "-1"] {
        assert_eq!(
            opt_error(&format!("max_conns={bad}")),
            format!(
                "invalid value '{bad}' for max_conns: expected 1-4 \
                 (Coupa allows 5 connections per account)"
            )
        );
    }
}

// ---- uploads -------------------------------------------------------------

#[test]
fn upload_options() {
    let o = with_opts(
        "upload_dir=/Incoming/.staging,temp_prefix=~tmp-,spool_dir=/var/spool/coupafs,\
         spool_max=512,strict_setstat",
    );
    assert_eq!(
        o,
        MountOptions {
            upload_dir: Some("/Incoming/.staging".to_string()),
            temp_prefix: "~tmp-".to_string(),
            spool_dir: Some(PathBuf::from("/var/spool/coupafs")),
            spool_max_bytes: 512 * 1024 * 1024,
            strict_setstat: true,
            ..base()
        }
    );
    assert_eq!(base().temp_prefix, ".");
    assert_eq!(base().spool_max_bytes, 4 * 1024 * 1024 * 1024);
    assert_eq!(with_opts("temp_prefix=").temp_prefix, "");
    assert_eq!(with_opts("spool_max=1").spool_max_bytes, 1 << 20);
    assert_eq!(base().spare_temps, 8);
    assert_eq!(with_opts("spare_temps=0").spare_temps, 0);
    assert_eq!(with_opts("spare_temps=16").spare_temps, 16);
    assert!(opt_error("spare_temps=65").contains("spare_temps"));
    assert!(opt_error("spare_temps=x").contains("spare_temps"));
    assert_eq!(
        opt_error("temp_prefix=a/b"),
        "invalid value 'a/b' for temp_prefix: expected a file name prefix without '/'"
    );
    assert_eq!(
        opt_error("upload_dir="),
        "invalid value '' for upload_dir: expected a remote directory"
    );
    assert_eq!(
        opt_error("spool_dir="),
        "invalid value '' for spool_dir: expected a path"
    );
    for bad in ["0", "-1", "1G", "17592186044416", ""] {
        assert_eq!(
            opt_error(&format!("spool_max={bad}")),
            format!("invalid value '{bad}' for spool_max: expected a size in MiB (at least 1)")
        );
    }
    assert_eq!(
        with_opts("spool_max=17592186044415").spool_max_bytes,
        17592186044415u64 << 20
    );
    assert_eq!(
        opt_error("strict_setstat=yes"),
        "option 'strict_setstat' does not take a value"
    );
}

// ---- targets -----------------------------------------------------------

#[test]
fn targets() {
    for (s, want) in [
        ("host:", target(None, "host", "")),
        ("host:dir", target(None, "host", "dir")),
        ("user@host:/", target(Some("user"), "host", "/")),
        ("user@host:/a@b:c", target(Some("user"), "host", "/a@b:c")),
        ("a@b.com@host:x", target(Some("a@b.com"), "host", "x")),
        ("[::1]:dir", target(None, "::1", "dir")),
        ("[::1]:", target(None, "::1", "")),
        (
            "user@[2001:db8::2]:/Out",
            target(Some("user"), "2001:db8::2", "/Out"),
        ),
        (
            "u@[fe80::1%eth0]:[x]",
            target(Some("u"), "fe80::1%eth0", "[x]"),
        ),
        ("[192.0.2.1]:/", target(None, "192.0.2.1", "/")),
        ("10.0.0.1:/in", target(None, "10.0.0.1", "/in")),
    ] {
        assert_eq!(parse_target(s), Ok(want.clone()), "{s}");
    }
    let o = mount(&["user@[::1]:/x", "/mnt"]);
    assert_eq!(o.target, target(Some("user"), "::1", "/x"));
}

#[test]
fn target_errors() {
    let form = "(expected [USER@]HOST:[DIR]; write IPv6 as [ADDRESS])";
    for (s, why) in [
        ("host", "expected [USER@]HOST:[DIR]".to_string()),
        ("", "expected [USER@]HOST:[DIR]".to_string()),
        ("user@host", "expected [USER@]HOST:[DIR]".to_string()),
        ("[::1]", "expected [USER@]HOST:[DIR]".to_string()),
        (":dir", format!("missing host before ':' {form}")),
        ("user@:dir", format!("missing host before ':' {form}")),
        ("[]:dir", format!("missing host before ':' {form}")),
        ("::1:dir", format!("missing host before ':' {form}")),
        ("@host:", "empty user name before '@'".to_string()),
        ("[::1:dir", "missing ']' after the IPv6 address".to_string()),
        (
            "[::1]x:dir",
            "expected [ADDRESS] for an IPv6 host".to_string(),
        ),
        (
            "x[::1]:dir",
            "brackets are only allowed around a whole IPv6 address".to_string(),
        ),
        (
            "ho]st:dir",
            "brackets are only allowed around a whole IPv6 address".to_string(),
        ),
        (
            "[a@b]:dir",
            "brackets are only allowed around a whole IPv6 address".to_string(),
        ),
        (
            "my host:dir",
            "the host name contains a space or control character".to_string(),
        ),
        (
            "host\t:dir",
            "the host name contains a space or control character".to_string(),
        ),
    ] {
        let want = format!("invalid target '{s}': {why}");
        assert_eq!(parse_target(s), Err(UsageError(want.clone())), "{s}");
        assert_eq!(error(&[s, "/mnt"]), want, "{s}");
    }
}

// ---- positionals ---------------------------------------------------------

#[test]
fn positional_errors() {
    assert_eq!(
        error(&[]),
        "missing [USER@]HOST:[DIR] and MOUNTPOINT (see coupafs -h)"
    );
    assert_eq!(
        error(&["-f", "-o", "ro"]),
        "missing [USER@]HOST:[DIR] and MOUNTPOINT (see coupafs -h)"
    );
    assert_eq!(
        error(&["user@host:"]),
        "missing MOUNTPOINT (see coupafs -h)"
    );
    assert_eq!(
        error(&["user@host:", "/mnt", "extra", "more"]),
        "unexpected argument 'extra' (see coupafs -h)"
    );
    assert_eq!(error(&["user@host:", ""]), "MOUNTPOINT must not be empty");
    // Positionals are validated after the options.
    assert_eq!(
        error(&["nocolon", "/m", "-o", "ro=1"]),
        "option 'ro' does not take a value"
    );
    // No argv at all (not even argv[0]) is an error, not a panic.
    assert_eq!(
        parse(&[]),
        Err(UsageError(
            "missing [USER@]HOST:[DIR] and MOUNTPOINT (see coupafs -h)".to_string()
        ))
    );
}

#[test]
fn flags_with_values_and_values_without() {
    assert_eq!(opt_error("ro=1"), "option 'ro' does not take a value");
    assert_eq!(opt_error("debug=1"), "option 'debug' does not take a value");
    assert_eq!(
        opt_error("IdentityFile"),
        "option 'IdentityFile' requires a value"
    );
    assert_eq!(
        opt_error("max_conns"),
        "option 'max_conns' requires a value"
    );
    assert_eq!(opt_error("cache"), "option 'cache' requires a value");
}

// ---- robustness ----------------------------------------------------------

#[test]
fn never_panics_on_odd_input() {
    // Deterministic combinations of awkward tokens; any panic fails.
    let pool = [
        "",
        "-",
        "--",
        "-o",
        "-p",
        "-t",
        "-oé",
        "-pé",
        "-é",
        "-fé",
        "--é",
        "é:",
        "check",
        "[",
        "]",
        "[:",
        "@",
        "@:",
        ":",
        "[::1]",
        "[::1]:",
        "a@[b]:",
        "u@h:/d",
        "/mnt",
        "=",
        ",",
        "\\",
        "-o=",
        "-o,",
        "-o\\",
        "Port=",
        "umask=9",
        "x-",
        "-h",
        "-V",
        "max_conns=4",
        "password=x",
        "\u{0}",
        "-o\u{0}",
        "h\u{7f}:",
        "日本:語",
        "-ddd",
        "-ssfC",
        "cache_timeout=9.9999999999",
        "HostKeyFingerprint=SHA256:é",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 6) as usize;
        let mut args = vec![if next() % 4 == 0 {
            "mount.coupafs"
        } else {
            "coupafs"
        }];
        for _ in 0..len {
            args.push(pool[(next() % pool.len() as u64) as usize]);
        }
        let joined;
        if next() % 3 == 0 {
            let a = pool[(next() % pool.len() as u64) as usize];
            let b = pool[(next() % pool.len() as u64) as usize];
            joined = format!("-o{a},{b}");
            args.push(&joined);
        }
        let _ = parse(&argv(&args));
    }
    // And a few exact outcomes among the awkward ones.
    assert_eq!(
        error(&["-é", "h:", "/m"]),
        "unknown option '-é' (see coupafs -h)"
    );
    assert_eq!(
        error(&["-pé", "h:", "/m"]),
        "invalid value 'é' for -p: expected a number 1-65535"
    );
    assert_eq!(
        mount(&["日本@語:x", "/m"]).target,
        target(Some("日本"), "語", "x")
    );
}

// ---- sshfs compatibility (compat.rs) ----

/// Rows marked honoured whose parsing lands with another branch (proxies:
/// h12; delay_connect: h13). Until then they must still be without
/// effect here; once they take effect this test fails: empty the list.
const HONOURED_ELSEWHERE: &[&str] = &[];

/// `coupafs -o LIST host:/dir /mnt` (no user, so `User=` shows).
fn compat_parse(list: &str) -> Result<MountOptions, UsageError> {
    let args = if list.is_empty() {
        run(&["host:/dir", "/mnt"])
    } else {
        run(&["host:/dir", "/mnt", "-o", list])
    };
    args.map(|inv| match inv {
        Invocation::Mount(o) => o,
        other => panic!("expected Mount for {list:?}, got {other:?}"),
    })
}

/// The options minus the bookkeeping of ignored ones.
fn effect(mut o: MountOptions) -> MountOptions {
    o.ignored.clear();
    o.no_ops.clear();
    o
}

#[test]
fn every_compat_row_parses_as_the_table_says() {
    use compat::Support;
    let mut names = std::collections::HashSet::new();
    for row in compat::TABLE {
        assert!(
            names.insert(row.name.to_ascii_lowercase()),
            "{} twice",
            row.name
        );
        let items = split_opt_list(row.sample);
        let last = items.last().expect("a sample");
        let (key, val) = match last.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (last.as_str(), None),
        };
        assert_eq!(
            compat::lookup(key, val).ok().flatten().map(|r| r.name),
            Some(row.name),
            "the sample {} finds another row",
            row.sample
        );
        let prefix = items[..items.len() - 1].join(",");
        let before = compat_parse(&prefix).expect("the sample's prefix parses");
        let got = compat_parse(row.sample);
        match row.support {
            Support::Honoured if HONOURED_ELSEWHERE.contains(&row.name) => {
                assert!(
                    got.map_or(true, |o| effect(o) == effect(before.clone())),
                    "{} now takes effect: remove it from HONOURED_ELSEWHERE",
                    row.name
                );
            }
            Support::Honoured => {
                let o = got.unwrap_or_else(|e| panic!("{}: {e}", row.sample));
                assert!(o.no_ops.is_empty(), "{}", row.sample);
                assert_ne!(effect(o), effect(before), "{} has no effect", row.sample);
            }
            Support::NoOp(why) => {
                let o = got.unwrap_or_else(|e| panic!("{}: {e}", row.sample));
                assert_eq!(
                    o.no_ops,
                    vec![NoOpOption {
                        option: row.name,
                        why
                    }]
                );
                assert_eq!(o.ignored, vec![last.clone()]);
                assert_eq!(effect(o), effect(before), "{} has an effect", row.sample);
            }
            Support::Refused { why, instead } => {
                let msg = got.expect_err(row.sample).0;
                assert_eq!(
                    msg,
                    format!("option '{key}' is not supported: {why}; use {instead}")
                );
            }
        }
    }
}

#[test]
fn operations_md_lists_exactly_the_compat_table() {
    let doc = include_str!("../../doc/OPERATIONS.md");
    let want = compat::doc_table();
    assert!(
        doc.contains(&want),
        "doc/OPERATIONS.md (Coming from sshfs) must contain this table:\n{want}"
    );
    // And no other rows: every table line under the heading is one of ours.
    let section = doc
        .split("\n## Coming from sshfs")
        .nth(1)
        .expect("a 'Coming from sshfs' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let rows = section.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, compat::TABLE.len());
}

#[test]
fn no_ops_are_recorded_once_with_their_reason() {
    let o = with_opts("transform_symlinks,reconnect,transform_symlinks");
    let names: Vec<&str> = o.no_ops.iter().map(|n| n.option).collect();
    assert_eq!(names, ["transform_symlinks", "reconnect"]);
    assert!(o.no_ops[0].why.contains("contain_symlinks"));
}

#[test]
fn ssh_rows_are_case_insensitive_sshfs_rows_are_not() {
    assert_eq!(with_opts("compression=yes").no_ops.len(), 1);
    assert!(opt_error("hostkeyalias=x").starts_with("option 'hostkeyalias' is not supported"));
    assert_eq!(
        opt_error("Transform_Symlinks"),
        "unknown option 'Transform_Symlinks' (see coupafs -h)"
    );
}

#[test]
fn a_value_without_a_row_names_the_values_there_are() {
    assert_eq!(
        opt_error("idmap=group"),
        "invalid value 'group' for idmap: expected user, none, file"
    );
    assert_eq!(
        opt_error("ssh_protocol=3"),
        "invalid value '3' for ssh_protocol: expected 2, 1"
    );
    assert_eq!(
        opt_error("reconnect=yes"),
        "option 'reconnect' does not take a value"
    );
    assert_eq!(
        opt_error("workaround"),
        "option 'workaround' requires a value"
    );
}

#[test]
fn sshfs_short_flags_follow_their_o_forms() {
    assert_eq!(
        mount(&["-C", "user@host:/dir", "/mnt"]).no_ops[0].option,
        "Compression"
    );
    assert_eq!(
        mount(&["-v", "user@host:/dir", "/mnt"]).no_ops[0].option,
        "sshfs_verbose"
    );
    assert!(error(&["-1", "user@host:/dir", "/mnt"])
        .starts_with("option 'ssh_protocol' is not supported: SSH protocol 1"));
}

#[test]
fn the_typical_sshfs_fstab_line_parses() {
    let o = with_opts(
        "_netdev,user,idmap=user,transform_symlinks,reconnect,ServerAliveInterval=15,\
         follow_symlinks,dcache_timeout=60,negative_timeout=5,auto_unmount,\
         IdentitiesOnly=yes,IdentityFile=/etc/coupafs/id,no_contain_symlinks,\
         StrictHostKeyChecking=yes,Compression=no,allow_other,default_permissions",
    );
    assert!(o.follow_symlinks && o.auto_unmount && o.allow_other && o.default_permissions);
    assert!(!o.contain_symlinks);
    assert_eq!(o.cache_timeout, Duration::from_secs(60));
    assert_eq!(o.ssh_auth.identities_only, Some(true));
    let names: Vec<&str> = o.no_ops.iter().map(|n| n.option).collect();
    assert_eq!(
        names,
        [
            "idmap=user",
            "transform_symlinks",
            "reconnect",
            "negative_timeout",
            "Compression"
        ]
    );
}

#[test]
fn delay_connect_log_file_json_and_status() {
    let o = with_opts("delay_connect,log_file=/var/log/coupafs.log");
    assert!(o.delay_connect);
    assert_eq!(
        o.log_file.as_deref(),
        Some(std::path::Path::new("/var/log/coupafs.log"))
    );
    assert_eq!(
        opt_error("delay_connect=1"),
        "option 'delay_connect' does not take a value"
    );
    assert_eq!(opt_error("log_file"), "option 'log_file' requires a value");
    let args = |a: &[&str]| -> Vec<String> {
        std::iter::once("coupafs")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    };
    match parse(&args(&["check", "--json", "h:"])) {
        Ok(Invocation::Check(o)) => assert!(o.json),
        other => panic!("{other:?}"),
    }
    assert!(parse(&args(&["--json", "h:", "/mnt"])).is_err());
    assert_eq!(parse(&args(&["status"])), Ok(Invocation::Status(None)));
    assert_eq!(
        parse(&args(&["status", "/mnt/c"])),
        Ok(Invocation::Status(Some("/mnt/c".into())))
    );
    assert!(parse(&args(&["status", "/a", "/b"])).is_err());
    assert!(parse(&args(&["status", "-x"])).is_err());
}
