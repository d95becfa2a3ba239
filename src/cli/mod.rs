//! Command line and `-o` mount options, sshfs-compatible. Pure parsing: turns
//! argv into a validated `Invocation`; reads no files and touches no network.
//!
//! Syntax (as sshfs, and as mount.fuse3 / mount(8) call helpers):
//!   coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]
//!   coupafs check [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]

pub mod sshconfig;

use std::path::PathBuf;
use std::time::Duration;

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    Mount(MountOptions),
    /// `coupafs check ...`: `MountOptions.mountpoint` is empty.
    Check(MountOptions),
    /// `-h`/`--help`: print this text and exit 0.
    Help(String),
    /// `-V`/`--version`: print this text and exit 0.
    Version(String),
}

/// `StrictHostKeyChecking=`; the transport owns the type.
pub use crate::ssh::HostKeyPolicy;

/// Where the remote side is.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Target {
    pub user: Option<String>,
    /// IPv6 literals are stored without their brackets (`[::1]:` gives `::1`).
    pub host: String,
    /// As typed after the colon; empty means the login directory.
    pub remote_dir: String,
}

/// Everything the mount and `check` need, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct MountOptions {
    pub target: Target,
    pub mountpoint: PathBuf,
    pub port: u16,
    pub foreground: bool,
    pub debug: bool,
    pub identity_files: Vec<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// `HostKeyFingerprint=SHA256:...` pin, normalized to `SHA256:` + 43
    /// unpadded base64 characters (the `ssh-keygen -l` form).
    pub host_key_fingerprint: Option<String>,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    /// Metadata cache TTL (`cache_timeout=SECS`).
    pub cache_timeout: Duration,
    /// `ServerAliveInterval=SECS`; zero disables keepalives.
    pub server_alive_interval: Duration,
    /// `ServerAliveCountMax=N`.
    pub server_alive_count_max: u32,
    /// `ConnectTimeout=SECS`.
    pub connect_timeout: Duration,
    /// `timeout=SECS`: longest an operation waits while the server is unreachable.
    pub op_timeout: Duration,
    /// `max_conns=N`, 1..=4.
    pub max_conns: usize,
    /// `strict_setstat`: chmod/utimens refused by the server become errors.
    pub strict_setstat: bool,
    /// `upload_dir=REMOTE_DIR`: stage uploads there instead of next to the target.
    pub upload_dir: Option<String>,
    /// `temp_prefix=STR`: temp names are `{prefix}{name}.coupafs-XXXXXX`.
    pub temp_prefix: String,
    /// `spool_dir=PATH`: local write-behind spool.
    pub spool_dir: Option<PathBuf>,
    /// `spool_max=MiB`.
    pub spool_max_bytes: u64,
    /// `spare_temps=N`: upload temp files kept open ahead per folder (0: off).
    pub spare_temps: usize,
    /// `follow_symlinks`: present symlink targets instead of links.
    pub follow_symlinks: bool,
    /// `contain_symlinks` (default on); `nocontain_symlinks` turns it off.
    pub contain_symlinks: bool,
    /// `fsname=`
    pub fsname: Option<String>,
    /// `threads=N` FUSE request loops.
    pub threads: usize,
    /// Options from mount(8)/fstab we accept and ignore (`_netdev`, `nofail`, ...),
    /// kept for the debug log.
    pub ignored: Vec<String>,
    /// `-F FILE` or `-o ssh_config=FILE`: the ssh client configuration to
    /// read instead of `~/.ssh/config`; `none` reads none (as in ssh).
    pub ssh_config: Option<PathBuf>,
    /// Which ssh settings the command line gave; the ssh config file fills
    /// in only the others.
    pub explicit: ExplicitSsh,
}

/// ssh settings that the command line set explicitly (the others may come
/// from the ssh config file). User, IdentityFile and UserKnownHostsFile need
/// no flag: they are `Some`/non-empty exactly when given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExplicitSsh {
    /// `-p` or `-o Port=`.
    pub port: bool,
    /// `-o StrictHostKeyChecking=`.
    pub host_key_policy: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            target: Target::default(),
            mountpoint: PathBuf::new(),
            port: 22,
            foreground: false,
            debug: false,
            identity_files: Vec::new(),
            password_file: None,
            passphrase_file: None,
            known_hosts_file: None,
            host_key_policy: HostKeyPolicy::Strict,
            host_key_fingerprint: None,
            read_only: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            uid: None,
            gid: None,
            umask: None,
            cache_timeout: Duration::from_secs(5),
            server_alive_interval: Duration::from_secs(15),
            server_alive_count_max: 3,
            connect_timeout: Duration::from_secs(15),
            op_timeout: Duration::from_secs(30),
            max_conns: 2,
            strict_setstat: false,
            upload_dir: None,
            temp_prefix: ".".to_string(),
            spool_dir: None,
            spool_max_bytes: 4 << 30,
            spare_temps: 8,
            follow_symlinks: false,
            contain_symlinks: true,
            fsname: None,
            threads: 16,
            ignored: Vec::new(),
            ssh_config: None,
            explicit: ExplicitSsh::default(),
        }
    }
}

/// A usage error, printed as `coupafs: {0}` with exit code 1... the message
/// names the offending option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses argv (including argv[0]; when argv[0]'s file name is
/// `mount.coupafs` the mount(8) helper conventions apply).
///
/// `-h`/`--help` and `-V`/`--version` win over every other error, so
/// `coupafs -o frobnicate -h` still prints the help. Otherwise options are
/// checked left to right and the first problem is reported, then the
/// positional arguments.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let helper = args.first().is_some_and(|a| is_mount_helper(a));
    let rest = args.get(1..).unwrap_or(&[]);
    let argv = tokenize(rest, helper);

    if argv.help {
        return Ok(Invocation::Help(help_text()));
    }
    if argv.version {
        return Ok(Invocation::Version(version_text()));
    }

    let mut opts = MountOptions::default();
    let mut st = OptState::default();
    for item in &argv.items {
        match item {
            Item::Foreground => opts.foreground = true,
            Item::Debug => set_debug(&mut opts),
            Item::SingleThread => opts.threads = 1,
            Item::Ignored(s) => opts.ignored.push(s.clone()),
            Item::Port(v) => {
                opts.port = parse_port("-p", v)?;
                opts.explicit.port = true;
            }
            Item::SshConfig(v) => opts.ssh_config = Some(parse_path("-F", v)?),
            Item::Error(e) => return Err(e.clone()),
            Item::Opts(list) => {
                for opt in split_opt_list(list) {
                    apply_option(&mut opts, &mut st, &opt)?;
                }
            }
        }
    }
    if st.cache_disabled {
        opts.cache_timeout = Duration::ZERO;
    }
    if opts.allow_other && opts.allow_root {
        return err("options allow_other and allow_root are mutually exclusive".to_string());
    }

    let mut pos = argv.positionals.iter();
    let (source, mountpoint) = if argv.check {
        let source = pos
            .next()
            .ok_or_else(|| UsageError(format!("check: missing {TARGET_FORM} (see coupafs -h)")))?;
        if let Some(extra) = pos.next() {
            return err(format!(
                "check: unexpected argument '{extra}' (see coupafs -h)"
            ));
        }
        (source, None)
    } else {
        let source = pos.next().ok_or_else(|| {
            UsageError(format!(
                "missing {TARGET_FORM} and MOUNTPOINT (see coupafs -h)"
            ))
        })?;
        let mountpoint = pos
            .next()
            .ok_or_else(|| UsageError("missing MOUNTPOINT (see coupafs -h)".to_string()))?;
        if let Some(extra) = pos.next() {
            return err(format!("unexpected argument '{extra}' (see coupafs -h)"));
        }
        if mountpoint.is_empty() {
            return err("MOUNTPOINT must not be empty".to_string());
        }
        (source, Some(mountpoint))
    };

    opts.target = parse_target(source)?;
    // The user in `USER@HOST:` wins; `-o User=` only fills in when the target
    // names no user (it is how fstab lines and sshfs users often pass it).
    if opts.target.user.is_none() {
        opts.target.user = st.user;
    }

    Ok(match mountpoint {
        Some(m) => {
            opts.mountpoint = PathBuf::from(m);
            Invocation::Mount(opts)
        }
        None => Invocation::Check(opts),
    })
}

/// `coupafs X.Y.Z`, what `-V` prints.
pub fn version_text() -> String {
    format!("coupafs {}", env!("CARGO_PKG_VERSION"))
}

/// Whether argv[0] names a mount(8) helper: `.../mount.coupafs` (type
/// `coupafs`) or `.../mount.fuse.coupafs` (type `fuse.coupafs`, which
/// mount(8) tries before falling back to mount.fuse3).
pub fn is_mount_helper(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "mount.coupafs" || n == "mount.fuse.coupafs")
}

/// Parses `[USER@]HOST:[REMOTE_DIR]`. The host part ends at the first colon
/// outside brackets, so IPv6 literals are written `[::1]:dir` (stored without
/// the brackets); the user ends at the last `@` before it, as in ssh.
pub fn parse_target(s: &str) -> Result<Target, UsageError> {
    let bad = |why: &str| UsageError(format!("invalid target '{s}': {why}"));

    // Find the colon that ends the host, skipping over `[...]`.
    let mut in_brackets = false;
    let mut colon = None;
    for (i, c) in s.char_indices() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(colon) = colon else {
        if in_brackets {
            return Err(bad("missing ']' after the IPv6 address"));
        }
        return Err(bad(&format!("expected {TARGET_FORM}")));
    };
    let user_host = &s[..colon];
    let remote_dir = &s[colon + 1..];

    let (user, host) = match user_host.rfind('@') {
        Some(at) => (Some(&user_host[..at]), &user_host[at + 1..]),
        None => (None, user_host),
    };
    if user == Some("") {
        return Err(bad("empty user name before '@'"));
    }

    let host = if let Some(inner) = host.strip_prefix('[') {
        match inner.strip_suffix(']') {
            Some(addr) if !addr.contains(['[', ']']) => addr,
            _ => return Err(bad("expected [ADDRESS] for an IPv6 host")),
        }
    } else if host.contains(['[', ']']) {
        return Err(bad("brackets are only allowed around a whole IPv6 address"));
    } else {
        host
    };
    if host.is_empty() {
        return Err(bad(&format!(
            "missing host before ':' (expected {TARGET_FORM}; write IPv6 as [ADDRESS])"
        )));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the host name contains a space or control character"));
    }

    Ok(Target {
        user: user.map(str::to_string),
        host: host.to_string(),
        remote_dir: remote_dir.to_string(),
    })
}

/// Splits one `-o` argument at commas. As in libfuse, a backslash makes the
/// next character literal, so a value can contain a comma as `\,`. Empty
/// items (`a,,b`, a trailing comma) are dropped.
pub fn split_opt_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next().unwrap_or('\\')),
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|o| !o.is_empty());
    out
}

const TARGET_FORM: &str = "[USER@]HOST:[DIR]";
const MAX_THREADS: usize = 256;
const MAX_CONNS: usize = 4;

fn err<T>(msg: String) -> Result<T, UsageError> {
    Err(UsageError(msg))
}

/// argv split into its parts, before any value is interpreted.
#[derive(Default)]
struct Argv {
    items: Vec<Item>,
    positionals: Vec<String>,
    check: bool,
    help: bool,
    version: bool,
}

enum Item {
    Foreground,
    Debug,
    SingleThread,
    /// `-p` value, as typed.
    Port(String),
    /// `-F` value, as typed.
    SshConfig(String),
    /// One `-o` argument, as typed (still comma separated).
    Opts(String),
    /// A flag accepted and ignored, as typed.
    Ignored(String),
    /// A malformed argument, reported in its place unless -h/-V is present.
    Error(UsageError),
}

fn tokenize(rest: &[String], helper: bool) -> Argv {
    let mut a = Argv::default();
    let fail = |a: &mut Argv, msg: String| a.items.push(Item::Error(UsageError(msg)));
    let unknown = |arg: &str| format!("unknown option '{arg}' (see coupafs -h)");

    let mut i = 0;
    let mut end_of_options = false;
    while let Some(arg) = rest.get(i) {
        i += 1;
        if end_of_options || arg == "-" || !arg.starts_with('-') {
            // `coupafs check ...`: only as the first positional, and not for
            // the mount(8) helper, whose first positional is always a source.
            if !end_of_options && !helper && !a.check && a.positionals.is_empty() && arg == "check"
            {
                a.check = true;
            } else {
                a.positionals.push(arg.clone());
            }
            continue;
        }
        if arg == "--" {
            end_of_options = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match long {
                "help" => a.help = true,
                "version" => a.version = true,
                "debug" => a.items.push(Item::Debug),
                _ => fail(&mut a, unknown(arg)),
            }
            continue;
        }

        // A cluster of short flags, getopt style: `-fd`, `-oPort=22`,
        // `-p2222`, `-fo ro`. `-o`/`-p` take the rest of the argument or the
        // next one.
        let body = &arg[1..];
        for (pos, c) in body.char_indices() {
            match c {
                'o' | 'p' | 'F' | 't' if c != 't' || helper => {
                    let glued = &body[pos + c.len_utf8()..];
                    let value = if !glued.is_empty() {
                        glued.to_string()
                    } else if let Some(next) = rest.get(i) {
                        i += 1;
                        next.clone()
                    } else {
                        fail(&mut a, format!("option '-{c}' requires an argument"));
                        break;
                    };
                    a.items.push(match c {
                        'o' => Item::Opts(value),
                        'p' => Item::Port(value),
                        'F' => Item::SshConfig(value),
                        // mount(8) may pass `-t TYPE`; the type is us.
                        _ => Item::Ignored(format!("-t {value}")),
                    });
                    break;
                }
                'h' => a.help = true,
                'V' => a.version = true,
                'd' => a.items.push(Item::Debug),
                'C' => a.items.push(Item::Ignored("-C".to_string())),
                // mount(8) helper flags: -s sloppy, -f fake, -n no mtab,
                // -v verbose. None of them changes what we do.
                's' | 'f' | 'n' | 'v' if helper => a.items.push(Item::Ignored(format!("-{c}"))),
                'f' => a.items.push(Item::Foreground),
                's' => a.items.push(Item::SingleThread),
                _ => {
                    fail(&mut a, unknown(arg));
                    break;
                }
            }
        }
    }
    a
}

/// State that spans several `-o` options and is resolved at the end.
#[derive(Default)]
struct OptState {
    /// `-o User=`; used only when the target has no `USER@`.
    user: Option<String>,
    /// `cache=no` seen (and not undone by a later `cache=yes`).
    cache_disabled: bool,
}

fn set_debug(o: &mut MountOptions) {
    o.debug = true;
    o.foreground = true;
}

/// Applies one `key[=value]` option.
fn apply_option(o: &mut MountOptions, st: &mut OptState, raw: &str) -> Result<(), UsageError> {
    let (key, val) = match raw.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (raw, None),
    };
    // Never name `val` in these messages: it may be a secret.
    let flag = || -> Result<(), UsageError> {
        match val {
            None => Ok(()),
            Some(_) => err(format!("option '{key}' does not take a value")),
        }
    };
    let value = || -> Result<&str, UsageError> {
        val.ok_or_else(|| UsageError(format!("option '{key}' requires a value")))
    };
    let ignore = |o: &mut MountOptions| o.ignored.push(raw.to_string());

    // Secrets never belong on a command line (visible in ps, shell history,
    // /proc/mounts); refuse in any spelling.
    if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("password_stdin") {
        return err(format!(
            "option '{key}' is not supported: a password on the command line is \
             visible to other users; use password_file=PATH or the COUPAFS_PASSWORD \
             environment variable"
        ));
    }

    // coupafs, sshfs and FUSE options: lowercase, case-sensitive.
    match key {
        "password_file" => o.password_file = Some(parse_path(key, value()?)?),
        "passphrase_file" => o.passphrase_file = Some(parse_path(key, value()?)?),
        "ro" => {
            flag()?;
            o.read_only = true;
        }
        // `rw` is also a mount(8) option; here it undoes an earlier `ro`.
        "rw" => {
            flag()?;
            o.read_only = false;
        }
        "allow_other" => {
            flag()?;
            o.allow_other = true;
        }
        "allow_root" => {
            flag()?;
            o.allow_root = true;
        }
        "default_permissions" => {
            flag()?;
            o.default_permissions = true;
        }
        "uid" => o.uid = Some(parse_id(key, value()?)?),
        "gid" => o.gid = Some(parse_id(key, value()?)?),
        "umask" => o.umask = Some(parse_umask(key, value()?)?),
        "cache_timeout" | "dcache_timeout" | "entry_timeout" | "attr_timeout" => {
            o.cache_timeout = parse_secs(key, value()?)?;
        }
        "cache" => st.cache_disabled = !parse_yes_no(key, value()?)?,
        "timeout" => o.op_timeout = parse_secs(key, value()?)?,
        "max_conns" => {
            let v = value()?;
            o.max_conns = parse_num(v)
                .filter(|n| (1..=MAX_CONNS as u64).contains(n))
                .map(|n| n as usize)
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid value '{v}' for {key}: expected 1-{MAX_CONNS} \
                         (Coupa allows 5 connections per account)"
                    ))
                })?;
        }
        "strict_setstat" => {
            flag()?;
            o.strict_setstat = true;
        }
        "upload_dir" => {
            let v = value()?;
            if v.is_empty() {
                return err(format!(
                    "invalid value '' for {key}: expected a remote directory"
                ));
            }
            o.upload_dir = Some(v.to_string());
        }
        "temp_prefix" => {
            let v = value()?;
            if v.contains('/') {
                return err(format!(
                    "invalid value '{v}' for {key}: expected a file name prefix without '/'"
                ));
            }
            o.temp_prefix = v.to_string();
        }
        "spool_dir" => o.spool_dir = Some(parse_path(key, value()?)?),
        "ssh_config" => o.ssh_config = Some(parse_path(key, value()?)?),
        "spool_max" => {
            let v = value()?;
            o.spool_max_bytes = parse_num(v)
                .filter(|&n| n >= 1)
                .and_then(|n| n.checked_mul(1 << 20))
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid value '{v}' for {key}: expected a size in MiB (at least 1)"
                    ))
                })?;
        }
        "spare_temps" => {
            let v = value()?;
            o.spare_temps = parse_num(v)
                .filter(|&n| n <= 64)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid value '{v}' for {key}: expected a count from 0 to 64"
                    ))
                })?;
        }
        "follow_symlinks" => {
            flag()?;
            o.follow_symlinks = true;
        }
        "contain_symlinks" => {
            flag()?;
            o.contain_symlinks = true;
        }
        "nocontain_symlinks" => {
            flag()?;
            o.contain_symlinks = false;
        }
        "fsname" => {
            let v = value()?;
            if v.is_empty() {
                return err(format!("invalid value '' for {key}: expected a name"));
            }
            o.fsname = Some(v.to_string());
        }
        "threads" => {
            let v = value()?;
            o.threads = parse_num(v)
                .filter(|n| (1..=MAX_THREADS as u64).contains(n))
                .map(|n| n as usize)
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid value '{v}' for {key}: expected a number 1-{MAX_THREADS}"
                    ))
                })?;
        }
        "debug" | "sshfs_debug" => {
            flag()?;
            set_debug(o);
        }

        // sshfs/FUSE options accepted for compatibility, without effect.
        // `reconnect`: reconnecting is always on. `nonempty`: a FUSE 2
        // option common in old sshfs fstab lines; FUSE 3 always allows it.
        "reconnect" | "delay_connect" | "kernel_cache" | "auto_cache" | "big_writes"
        | "nodiratime" | "nonempty" => {
            flag()?;
            ignore(o);
        }
        "subtype" | "workaround" | "max_read" => {
            value()?;
            ignore(o);
        }
        "idmap" => {
            let v = value()?;
            if v != "user" && v != "none" {
                return err(format!(
                    "invalid value '{v}' for {key}: expected user or none"
                ));
            }
            ignore(o);
        }
        "dir_cache" => {
            parse_yes_no(key, value()?)?;
            ignore(o);
        }

        // Generic mount(8)/fstab options. `user` here is the fstab flag;
        // `user=NAME` falls through to ssh's User below (mount(8) itself
        // passes `user=LOGIN` to helpers for user mounts, which then names
        // the local login -- the same default ssh would use).
        "dev" | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "auto" | "noauto" | "_netdev"
        | "nofail" | "nouser" | "users" | "owner" | "defaults" | "sync" | "async" | "atime"
        | "noatime" | "relatime" => {
            flag()?;
            ignore(o);
        }
        "user" if val.is_none() => ignore(o),
        _ if key.starts_with("x-") || key == "comment" => ignore(o),

        _ => return apply_ssh_option(o, st, raw, key, val),
    }
    Ok(())
}

/// ssh's own options: names are case-insensitive, as in ssh(1) and sshfs.
fn apply_ssh_option(
    o: &mut MountOptions,
    st: &mut OptState,
    raw: &str,
    key: &str,
    val: Option<&str>,
) -> Result<(), UsageError> {
    let value = || -> Result<&str, UsageError> {
        val.ok_or_else(|| UsageError(format!("option '{key}' requires a value")))
    };
    match key.to_ascii_lowercase().as_str() {
        "identityfile" => o.identity_files.push(parse_path(key, value()?)?),
        "port" => {
            o.port = parse_port(key, value()?)?;
            o.explicit.port = true;
        }
        "user" => {
            let v = value()?;
            if v.is_empty() {
                return err(format!("invalid value '' for {key}: expected a user name"));
            }
            st.user = Some(v.to_string());
        }
        "userknownhostsfile" => o.known_hosts_file = Some(parse_path(key, value()?)?),
        "stricthostkeychecking" => {
            let v = value()?;
            o.host_key_policy = match v.to_ascii_lowercase().as_str() {
                // `ask` is ssh's interactive default; with nobody to ask it
                // refuses unknown keys, i.e. it is `yes`.
                "yes" | "on" | "ask" => HostKeyPolicy::Strict,
                "accept-new" => HostKeyPolicy::AcceptNew,
                "no" | "off" => HostKeyPolicy::No,
                _ => {
                    return err(format!(
                        "invalid value '{v}' for {key}: expected yes, accept-new or no"
                    ))
                }
            };
            o.explicit.host_key_policy = true;
        }
        "hostkeyfingerprint" => {
            let v = value()?;
            o.host_key_fingerprint = Some(parse_fingerprint(v).ok_or_else(|| {
                UsageError(format!(
                    "invalid value '{v}' for {key}: expected SHA256: followed by 43 \
                     base64 characters, as printed by ssh-keygen -l"
                ))
            })?);
        }
        "serveraliveinterval" => o.server_alive_interval = parse_secs(key, value()?)?,
        "serveralivecountmax" => {
            let v = value()?;
            o.server_alive_count_max = parse_num(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    UsageError(format!("invalid value '{v}' for {key}: expected a number"))
                })?;
        }
        "connecttimeout" => o.connect_timeout = parse_secs(key, value()?)?,
        "proxycommand" | "proxyjump" => {
            return err(format!(
                "option '{key}' is not supported: coupafs connects to HOST directly"
            ))
        }
        // Options people pass to sshfs out of habit; harmless to ignore.
        "compression"
        | "ciphers"
        | "cipher"
        | "batchmode"
        | "passwordauthentication"
        | "preferredauthentications"
        | "loglevel"
        | "identitiesonly"
        | "pubkeyauthentication"
        | "tcpkeepalive"
        | "controlmaster"
        | "controlpath"
        | "controlpersist" => o.ignored.push(raw.to_string()),
        _ => return err(format!("unknown option '{key}' (see coupafs -h)")),
    }
    Ok(())
}

/// Only ASCII digits (no sign, no spaces), fitting in u64.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_port(name: &str, v: &str) -> Result<u16, UsageError> {
    parse_num(v)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| {
            UsageError(format!(
                "invalid value '{v}' for {name}: expected a number 1-65535"
            ))
        })
}

/// Seconds: `30`, `0`, `1.5`; at most u32::MAX seconds.
fn parse_secs(name: &str, v: &str) -> Result<Duration, UsageError> {
    let bad = || {
        UsageError(format!(
            "invalid value '{v}' for {name}: expected a number of seconds"
        ))
    };
    let (whole, frac) = match v.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (v, None),
    };
    let secs = parse_num(whole)
        .filter(|&s| s <= u64::from(u32::MAX))
        .ok_or_else(bad)?;
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: u32 = f.parse().map_err(|_| bad())?;
            digits * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(bad()),
    };
    Ok(Duration::new(secs, nanos))
}

fn parse_path(name: &str, v: &str) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return err(format!("invalid value '' for {name}: expected a path"));
    }
    Ok(PathBuf::from(v))
}

fn parse_id(name: &str, v: &str) -> Result<u32, UsageError> {
    // u32::MAX is (uid_t)-1, "no id"; not a valid owner.
    parse_num(v)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n != u32::MAX)
        .ok_or_else(|| UsageError(format!("invalid value '{v}' for {name}: expected a number")))
}

/// Octal `022`, `0022`, `077`, `0`; at most 0777.
fn parse_umask(name: &str, v: &str) -> Result<u32, UsageError> {
    let ok = !v.is_empty() && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let trimmed = v.trim_start_matches('0');
    if ok && trimmed.len() <= 3 {
        if let Ok(n) = u32::from_str_radix(if trimmed.is_empty() { "0" } else { trimmed }, 8) {
            return Ok(n);
        }
    }
    err(format!(
        "invalid value '{v}' for {name}: expected an octal mask 000-777, e.g. 022"
    ))
}

fn parse_yes_no(name: &str, v: &str) -> Result<bool, UsageError> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => err(format!(
            "invalid value '{v}' for {name}: expected yes or no"
        )),
    }
}

/// `SHA256:` + unpadded base64 of 32 bytes (43 characters), as ssh-keygen
/// prints it; a trailing `=` is tolerated and dropped. Returned normalized.
fn parse_fingerprint(v: &str) -> Option<String> {
    let b64 = v.strip_prefix("SHA256:")?;
    let b64 = b64.strip_suffix('=').unwrap_or(b64);
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if b64.len() != 43 || !b64.bytes().all(alphabet) {
        return None;
    }
    // 43 characters carry 258 bits; the last character's low 2 bits must be
    // zero for 32 bytes, so it is one of these.
    let last = b64.bytes().last()?;
    if !b"AEIMQUYcgkosw048".contains(&last) {
        return None;
    }
    Some(format!("SHA256:{b64}"))
}

/// The `-h` text, a short man page.
pub fn help_text() -> String {
    HELP.to_string()
}

const HELP: &str = r#"NAME
    coupafs - mount a Coupa SFTP exchange as a local filesystem

SYNOPSIS
    coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]
    coupafs check [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]

DESCRIPTION
    Mounts the Coupa SFTP exchange HOST:REMOTE_DIR on MOUNTPOINT; the command
    line follows sshfs. Uploads are atomic: a file is written under a
    temporary name and renamed to its real name when it is closed, so Coupa
    never picks up a partial file. "coupafs check" logs in without mounting,
    checks Coupa's folders, write access, waiting files and file rules, and
    prints one OK/WARN/FAIL line per check; it exits 0 (all OK), 1 (warnings)
    or 2 (failures), as monitoring plugins do.

OPTIONS
    Options may come before, between or after the arguments; -o may be
    repeated or glued (-oPort=22); write a comma inside a value as \,.
    ssh's own option names (Port, User, IdentityFile, ...) are
    case-insensitive, as in ssh; all other option names are lowercase.

  General
    -h, --help                 print this help and exit
    -V, --version              print the version and exit
    -f                         stay in the foreground
    -d, --debug, -o debug      print debug messages; implies -f
    -o sshfs_debug             same as -o debug
    -s                         single-threaded, same as -o threads=1
    -o threads=N               FUSE request threads, 1-256 (default 16)
    -o fsname=NAME             source name shown by mount(8) and df
    -o reconnect               accepted; coupafs always reconnects
    --                         end of options

  SSH and login
    -p PORT, -o Port=PORT      server port (default 22)
    -o User=NAME               login name, when the target has no USER@
    -o IdentityFile=PATH       private key; repeat to offer several keys
    -o passphrase_file=PATH    file holding the private key's passphrase
    -o password_file=PATH      file holding the login password
    -o UserKnownHostsFile=PATH known_hosts file for the host key check
    -o StrictHostKeyChecking=yes|accept-new|no
                               unknown host key: refuse (yes, the default),
                               add to known_hosts (accept-new), accept (no);
                               a key that differs from the one in
                               known_hosts is always refused, even with no
    -o HostKeyFingerprint=SHA256:BASE64
                               accept only this host key (ssh-keygen -l)
    -F FILE, -o ssh_config=FILE
                               ssh client configuration to read instead of
                               ~/.ssh/config; "none" reads none. Its Host
                               blocks may set HostName, Port, User,
                               IdentityFile, UserKnownHostsFile and
                               StrictHostKeyChecking; the command line wins
    -o ServerAliveInterval=SECS
                               keepalive interval, 0 disables (default 15)
    -o ServerAliveCountMax=N   unanswered keepalives before the connection
                               counts as lost (default 3)
    -o ConnectTimeout=SECS     connection timeout (default 15)
    -o max_conns=N             SFTP connections, 1-4 (default 2); Coupa
                               allows 5 connections per account
    -C                         accepted and ignored (compression)
    -o Compression, Ciphers, Cipher, BatchMode, PasswordAuthentication,
       PreferredAuthentications, PubkeyAuthentication, IdentitiesOnly,
       LogLevel, TCPKeepAlive, ControlMaster, ControlPath, ControlPersist
                               ssh options accepted and ignored
    ProxyCommand and ProxyJump are not supported (also when the ssh config
    file sets them for the host). password= and password_stdin are refused:
    use password_file= or COUPAFS_PASSWORD.

  Cache and timeouts
    -o cache_timeout=SECS      metadata cache lifetime (default 5); also
                               dcache_timeout=, entry_timeout=, attr_timeout=
    -o cache=yes|no            no turns the metadata cache off
    -o timeout=SECS            how long an operation waits for an
                               unreachable server (default 30)
    -o dir_cache=yes|no, kernel_cache, auto_cache
                               accepted and ignored
    SECS may have a fraction, e.g. 0.5.

  Uploads
    -o upload_dir=DIR          write temporary files in remote DIR, then
                               rename them into place
    -o temp_prefix=STR         temporary names are STR + NAME +
                               .coupafs-XXXXXX (default ".")
    -o spool_dir=PATH          local directory for the write-behind spool
    -o spool_max=MiB           spool size limit in MiB (default 4096)
    -o spare_temps=N           keep up to N empty temp files open per folder
                               where files are being created, so close()
                               skips the OPEN round trip (default 8; 0: off)
    -o strict_setstat          report chmod/utime the server refuses as
                               errors (default: ignore them)

  FUSE and permissions
    -o ro, -o rw               read-only, read-write (default rw)
    -o allow_other             let all users access the mount (needs
                               user_allow_other in /etc/fuse.conf)
    -o allow_root              let root access the mount too
    -o default_permissions     let the kernel check file modes
    -o uid=N, -o gid=N         show every file as owned by user/group N
    -o umask=OCTAL             clear these mode bits, e.g. 022
    -o follow_symlinks         show what symlinks point to, not the links
    -o contain_symlinks        keep symlinks from leading out of REMOTE_DIR
                               (default); nocontain_symlinks turns it off
    -o subtype=, idmap=user|none, workaround=, big_writes, max_read=N,
       delay_connect, nonempty, atime, noatime, relatime, nodiratime
                               accepted and ignored

  mount(8) and fstab
    defaults, auto, noauto, _netdev, nofail, user, nouser, users, owner,
    dev, nodev, suid, nosuid, exec, noexec, sync, async, x-*, comment=
                               accepted and ignored
    Run as mount.coupafs or mount.fuse.coupafs, mount(8)'s flags -s -f -n
    -v are ignored. Without -f the command returns once the mount is live
    (exit 0) or has failed (exit 1, the reason on stderr); the daemon then
    logs to syslog (/dev/log, else journald's syslog socket).

ENVIRONMENT
    COUPAFS_PASSWORD           login password, instead of password_file=;
                               erased from the process environment at start
    SSH_AUTH_SOCK              ssh-agent socket; its keys are offered
    COUPAFS_LOG                log filter, e.g. debug or coupafs=debug
    NOTIFY_SOCKET              set by systemd (Type=notify): READY=1 is
                               sent once the mount is live

EXAMPLES
    Mount with a key, then unmount:
        coupafs -o IdentityFile=$HOME/.ssh/coupa user@host:/ /mnt/coupa
        fusermount3 -u /mnt/coupa

    /etc/fstab line:
        user@host:/ /mnt/coupa fuse.coupafs _netdev,IdentityFile=/etc/coupafs/id_rsa,UserKnownHostsFile=/etc/coupafs/known_hosts 0 0

    Check the connection and login without mounting:
        coupafs check -p 2222 -o IdentityFile=$HOME/.ssh/coupa user@host:/
"#;

#[cfg(test)]
mod tests {
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
        assert_eq!(o.ignored, strings(&["-C"]));
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
                ignored: strings(&["-C"]),
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
            "coupafs check [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]",
            "atomic",
            "renamed",
            "COUPAFS_PASSWORD",
            "SSH_AUTH_SOCK",
            "user@host:/ /mnt/coupa fuse.coupafs _netdev,IdentityFile=/etc/coupafs/id_rsa,\
             UserKnownHostsFile=/etc/coupafs/known_hosts 0 0",
            "coupafs check ",
            "-p PORT",
            "-f ",
            "-d, --debug",
            "-h, --help",
            "-V, --version",
            "-C ",
            "-s ",
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
            "Cipher,",
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
            "idmap=user|none",
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
            error(&["-v", "h:", "/m"]),
            "unknown option '-v' (see coupafs -h)"
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
        let o =
            with_opts("ServerAliveInterval=0,ServerAliveCountMax=0,ConnectTimeout=2.5,timeout=120");
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
            "Compression=yes,ciphers=aes128-ctr,Cipher=blowfish,BatchMode=yes,\
             PasswordAuthentication=no,PreferredAuthentications=publickey,LogLevel=ERROR,\
             IdentitiesOnly=yes,PubkeyAuthentication=yes,TCPKeepAlive=no,\
             ControlMaster=auto,ControlPath=/tmp/%r@%h:%p,ControlPersist=60",
        );
        assert_eq!(
            o,
            MountOptions {
                ignored: strings(&[
                    "Compression=yes",
                    "ciphers=aes128-ctr",
                    "Cipher=blowfish",
                    "BatchMode=yes",
                    "PasswordAuthentication=no",
                    "PreferredAuthentications=publickey",
                    "LogLevel=ERROR",
                    "IdentitiesOnly=yes",
                    "PubkeyAuthentication=yes",
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
    fn proxy_options_are_refused() {
        assert_eq!(
            opt_error("ProxyCommand=ssh -W %h:%p bastion"),
            "option 'ProxyCommand' is not supported: coupafs connects to HOST directly"
        );
        assert_eq!(
            opt_error("proxyjump=bastion"),
            "option 'proxyjump' is not supported: coupafs connects to HOST directly"
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
        assert_eq!(opt_error("password_stdin"), msg("password_stdin"));
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
                format!(
                    "invalid value '{bad}' for umask: expected an octal mask 000-777, e.g. 022"
                )
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
        let opts = "reconnect,delay_connect,kernel_cache,auto_cache,big_writes,nodiratime,\
                    nonempty,subtype=coupafs,workaround=rename,max_read=65536,idmap=user,\
                    idmap=none,dir_cache=yes,dir_cache=no";
        let o = with_opts(opts);
        assert_eq!(
            o,
            MountOptions {
                ignored: split_opt_list(opts),
                ..base()
            }
        );
        assert_eq!(o.ignored.len(), 14);
        assert_eq!(
            opt_error("idmap=file"),
            "invalid value 'file' for idmap: expected user or none"
        );
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
}
