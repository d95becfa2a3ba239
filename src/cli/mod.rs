//! Command line and `-o` mount options, sshfs-compatible. Pure parsing: turns
//! argv into a validated `Invocation`; reads no files and touches no network.
//! The command line is defined once, with clap (command.rs); the man page and
//! shell completions are generated from that definition
//! (examples/gen-docs.rs).
//!
//! Syntax (as sshfs, and as mount.fuse3 / mount(8) call helpers):
//!   coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]
//!   coupafs check [--json] [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]
//!   coupafs status [MOUNTPOINT]

mod command;
mod compat;
mod help;
mod optdoc;
mod options;
pub(crate) mod sshconfig;

pub use command::{command, ABOUT, DESCRIPTION, USAGE};
pub use help::{EnvVar, Example, ENVIRONMENT, EXAMPLES, EXIT_STATUS, FILES, SEE_ALSO};
pub use optdoc::{all as option_docs, Group as OptionGroup, OptionDoc};

pub(crate) use help::help_text;
pub(crate) use options::split_no_proxy;

use std::path::PathBuf;
use std::time::Duration;

use options::{apply_option, parse_path, parse_port, set_debug, OptState};

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
    /// `coupafs status [MOUNTPOINT]`: print the mounts' status files.
    Status(Option<PathBuf>),
}

/// `StrictHostKeyChecking=`; the transport owns the type.
pub use crate::ssh::HostKeyPolicy;
/// Algorithm lists and the resolved auth switches; the transport owns them.
pub use crate::ssh::{AddressFamily, Algorithms, AuthPolicy};

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
    /// `-o sftp_debug`: log every SFTP request and reply.
    pub sftp_debug: bool,
    /// `check --json`: one JSON object instead of the plugin text.
    pub json: bool,
    /// `delay_connect`: mount at once, connect in the background.
    pub delay_connect: bool,
    /// `log_file=PATH`: append the log there (daemon and foreground).
    pub log_file: Option<PathBuf>,
    pub identity_files: Vec<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// `GlobalKnownHostsFile=PATH [PATH...]`; `None`: /etc/ssh/ssh_known_hosts.
    pub global_known_hosts_files: Option<Vec<PathBuf>>,
    pub host_key_policy: HostKeyPolicy,
    /// `HostKeyFingerprint=SHA256:...` pin, normalized to `SHA256:` + 43
    /// unpadded base64 characters (the `ssh-keygen -l` form).
    pub host_key_fingerprint: Option<String>,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    /// `no_default_permissions`: the admin's explicit opt-out of the
    /// `default_permissions` that `allow_other` otherwise implies.
    pub no_default_permissions: bool,
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
    /// sshfs options accepted without effect, each once, with the reason
    /// (logged at mount).
    pub no_ops: Vec<NoOpOption>,
    /// `auto_unmount`: fusermount3 unmounts when the daemon dies.
    pub auto_unmount: bool,
    /// Options from mount(8)/fstab we accept and ignore (`_netdev`, `nofail`, ...),
    /// kept for the debug log.
    pub ignored: Vec<String>,
    /// `-F FILE` or `-o ssh_config=FILE`: the ssh client configuration to
    /// read instead of `~/.ssh/config`; `none` reads none (as in ssh).
    pub ssh_config: Option<PathBuf>,
    /// Which ssh settings the command line gave; the ssh config file fills
    /// in only the others.
    pub explicit: ExplicitSsh,
    /// `Ciphers=`, `KexAlgorithms=`, `HostKeyAlgorithms=`, `MACs=`.
    pub algorithms: Algorithms,
    /// `IdentitiesOnly=`, `PubkeyAuthentication=`, `PasswordAuthentication=`,
    /// `BatchMode=`, `KbdInteractiveAuthentication=`.
    pub ssh_auth: SshAuthOptions,
    /// `ProxyCommand=`, `ProxyJump=`, `proxy=`, `no_proxy=`, `AddressFamily=`.
    pub reach: ReachOptions,
}

/// How to reach the server, as given (`None`: not given, so the ssh config
/// file, the environment or the default decides). Resolved into
/// [`crate::ssh::Reach`] when the connection parameters are built.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReachOptions {
    /// `ProxyCommand=CMD`, as typed; `none` disables.
    pub proxy_command: Option<String>,
    /// `ProxyJump=[USER@]HOST[:PORT][,...]`, checked; `none` disables.
    pub proxy_jump: Option<String>,
    /// `proxy=URL|env|none`: an HTTP CONNECT or SOCKS5 proxy.
    pub proxy: Option<ProxySetting>,
    /// `no_proxy=LIST` (otherwise the `no_proxy` environment variable).
    pub no_proxy: Option<Vec<String>>,
    /// `AddressFamily=inet|inet6|any`.
    pub address_family: Option<AddressFamily>,
}

/// `proxy=`'s value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxySetting {
    /// `none`: connect directly (also keeps the ssh config's proxies away).
    None,
    /// `env`: the URL in `all_proxy`, else `https_proxy` (either case).
    Env,
    /// `http://...` or `socks5://...`, parsed.
    Url(crate::ssh::Route),
}

/// An sshfs option that coupafs accepts without effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoOpOption {
    /// As in the compatibility table (e.g. `transform_symlinks`).
    pub option: &'static str,
    /// Why coupafs does not need it.
    pub why: &'static str,
}

/// ssh's authentication switches as given (`None`: not given, so the ssh
/// config file or the default decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SshAuthOptions {
    pub identities_only: Option<bool>,
    pub pubkey_authentication: Option<bool>,
    pub password_authentication: Option<bool>,
    pub batch_mode: Option<bool>,
    pub kbd_interactive: Option<bool>,
}

impl SshAuthOptions {
    /// With ssh's defaults for what was not given.
    pub fn resolve(&self) -> AuthPolicy {
        let d = AuthPolicy::default();
        AuthPolicy {
            identities_only: self.identities_only.unwrap_or(d.identities_only),
            pubkey: self.pubkey_authentication.unwrap_or(d.pubkey),
            password: self.password_authentication.unwrap_or(d.password),
            batch_mode: self.batch_mode.unwrap_or(d.batch_mode),
            kbd_interactive: self.kbd_interactive.unwrap_or(d.kbd_interactive),
        }
    }
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
            sftp_debug: false,
            identity_files: Vec::new(),
            password_file: None,
            passphrase_file: None,
            known_hosts_file: None,
            global_known_hosts_files: None,
            host_key_policy: HostKeyPolicy::Strict,
            host_key_fingerprint: None,
            read_only: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            no_default_permissions: false,
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
            no_ops: Vec::new(),
            auto_unmount: false,
            ignored: Vec::new(),
            json: false,
            delay_connect: false,
            log_file: None,
            ssh_config: None,
            explicit: ExplicitSsh::default(),
            algorithms: Algorithms::default(),
            ssh_auth: SshAuthOptions::default(),
            reach: ReachOptions::default(),
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
/// `mount.coupafs` or `mount.fuse.coupafs` the mount(8) helper conventions
/// apply) with the clap definition in command.rs.
///
/// `-h`/`--help` and `-V`/`--version` win over every other error, so
/// `coupafs -o frobnicate -h` still prints the help. Otherwise options are
/// applied left to right and the first problem is reported, then the
/// positional arguments are checked.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let helper = args.first().is_some_and(|a| is_mount_helper(a));
    let rest = args.get(1..).unwrap_or(&[]);
    let scan = command::scan(&command::build(helper), rest);
    if scan.help {
        return Ok(Invocation::Help(help_text()));
    }
    if scan.version {
        return Ok(Invocation::Version(version_text()));
    }
    let first = scan.first_word.as_deref();
    let subcommand = !helper && matches!(first, Some("check" | "status"));
    let status = subcommand && first == Some("status");
    let cmd = command::define(helper, subcommand);

    // clap parses what precedes the first unknown option; that option is
    // reported after the ones before it were applied.
    let known = scan.unknown.as_ref().map_or(rest.len(), |(at, _)| *at);
    let argv = std::iter::once("coupafs").chain(rest[..known].iter().map(String::as_str));
    let matches = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if status => return status_error(&clap_culprit(&e)),
        Err(e) => return Err(clap_error(&e)),
    };
    let sub = matches.subcommand();
    if let Some(("status", m)) = sub {
        if let Some((_, arg)) = &scan.unknown {
            return status_error(arg);
        }
        return parse_status(m);
    }
    let check = matches!(sub, Some(("check", _)));
    let mut levels = vec![&matches];
    if let Some((_, m)) = sub {
        levels.push(m);
    }
    let argv = collect(&levels, helper);

    let mut opts = MountOptions {
        json: argv.json,
        ..MountOptions::default()
    };
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
            Item::Opts(list) => {
                for opt in split_opt_list(list) {
                    apply_option(&mut opts, &mut st, &opt)?;
                }
            }
        }
    }
    if let Some((_, arg)) = scan.unknown {
        return err(unknown_option(&arg));
    }
    if st.cache_disabled {
        opts.cache_timeout = Duration::ZERO;
    }
    if opts.allow_other && opts.allow_root {
        return err("options allow_other and allow_root are mutually exclusive".to_string());
    }
    // Without the kernel's mode checks every local user would act with the
    // SFTP account's rights on the server: allow_other turns them on unless
    // the admin opted out by name.
    if opts.allow_other && !opts.no_default_permissions {
        opts.default_permissions = true;
    }

    if argv.json && !check {
        return err(JSON_IS_FOR_CHECK.to_string());
    }

    let mut pos = argv.positionals.iter();
    let (source, mountpoint) = if check {
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

const JSON_IS_FOR_CHECK: &str = "--json is an option of 'coupafs check' (see coupafs -h)";

fn unknown_option(arg: &str) -> String {
    format!("unknown option '{arg}' (see coupafs -h)")
}

/// The argument a clap error is about, as clap names it (`-p <PORT>`,
/// `--json`, a surplus value).
fn clap_culprit(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    for kind in [ContextKind::InvalidArg, ContextKind::InvalidValue] {
        if let Some(ContextValue::String(s)) = e.get(kind) {
            return s.clone();
        }
    }
    String::new()
}

/// clap's errors in this parser's words. `scan` has already reported
/// unknown options, so what is left is a missing value or a flag given a
/// value (`--debug=x`).
fn clap_error(e: &clap::Error) -> UsageError {
    use clap::error::ErrorKind;
    let culprit = clap_culprit(e);
    let name = culprit.split(' ').next().unwrap_or_default();
    UsageError(match e.kind() {
        ErrorKind::InvalidValue if culprit.contains('<') => {
            format!("option '{name}' requires an argument")
        }
        _ if name == "--json" => JSON_IS_FOR_CHECK.to_string(),
        _ => unknown_option(name),
    })
}

/// `status [MOUNTPOINT]`: at most one mount point, no options.
fn parse_status(m: &clap::ArgMatches) -> Result<Invocation, UsageError> {
    let word = |id: &str| m.get_many::<String>(id).into_iter().flatten().next();
    if let Some(extra) = word("extra") {
        return status_error(extra);
    }
    match word("mountpoint") {
        None => Ok(Invocation::Status(None)),
        Some(m) if m.is_empty() => status_error(m),
        Some(m) => Ok(Invocation::Status(Some(PathBuf::from(m)))),
    }
}

fn status_error<T>(arg: &str) -> Result<T, UsageError> {
    err(format!(
        "status: unexpected argument '{arg}' (usage: coupafs status [MOUNTPOINT])"
    ))
}

/// `coupafs X.Y.Z`, what `-V` prints.
pub(crate) fn version_text() -> String {
    format!("coupafs {}", env!("CARGO_PKG_VERSION"))
}

/// Whether argv[0] names a mount(8) helper: `.../mount.coupafs` (type
/// `coupafs`) or `.../mount.fuse.coupafs` (type `fuse.coupafs`, which
/// mount(8) tries before falling back to mount.fuse3).
pub(crate) fn is_mount_helper(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "mount.coupafs" || n == "mount.fuse.coupafs")
}

/// Parses `[USER@]HOST:[REMOTE_DIR]`. The host part ends at the first colon
/// outside brackets, so IPv6 literals are written `[::1]:dir` (stored without
/// the brackets); the user ends at the last `@` before it, as in ssh.
pub(crate) fn parse_target(s: &str) -> Result<Target, UsageError> {
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
pub(crate) fn split_opt_list(s: &str) -> Vec<String> {
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

/// The parsed arguments in argv order, before any value is interpreted.
#[derive(Default)]
struct Argv {
    items: Vec<Item>,
    positionals: Vec<String>,
    /// `--json` (check only).
    json: bool,
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
}

/// The options of `levels` (the top command, then the subcommand, which
/// clap fills separately) by their position in argv, and the positionals.
fn collect(levels: &[&clap::ArgMatches], helper: bool) -> Argv {
    let mut items: Vec<(usize, Item)> = Vec::new();
    let mut a = Argv::default();
    for m in levels {
        let values = |id: &str| -> Vec<(usize, String)> {
            // try_ first: ids the other level lacks are not an error.
            match m.try_get_many::<String>(id) {
                Ok(Some(v)) => m
                    .indices_of(id)
                    .into_iter()
                    .flatten()
                    .zip(v.cloned())
                    .collect(),
                _ => Vec::new(),
            }
        };
        let flags = |id: &str| -> Vec<usize> {
            match m.try_get_one::<u8>(id) {
                Ok(Some(n)) if *n > 0 => {
                    m.indices_of(id).map(Iterator::collect).unwrap_or_default()
                }
                _ => Vec::new(),
            }
        };
        for (i, v) in values("opts") {
            items.push((i, Item::Opts(v)));
        }
        for (i, v) in values("port") {
            items.push((i, Item::Port(v)));
        }
        for (i, v) in values("ssh_config") {
            items.push((i, Item::SshConfig(v)));
        }
        for (i, v) in values("type") {
            items.push((i, Item::Ignored(format!("-t {v}"))));
        }
        // mount(8)'s -s sloppy, -f fake, -n no mtab, -v verbose change
        // nothing we do; for coupafs itself they are sshfs's.
        let sshfs = |id: &str, c: char, item: fn() -> Item| -> Vec<(usize, Item)> {
            flags(id)
                .into_iter()
                .map(|i| {
                    (
                        i,
                        if helper {
                            Item::Ignored(format!("-{c}"))
                        } else {
                            item()
                        },
                    )
                })
                .collect()
        };
        items.extend(sshfs("foreground", 'f', || Item::Foreground));
        items.extend(sshfs("single", 's', || Item::SingleThread));
        items.extend(sshfs("verbose", 'v', || Item::Opts("sshfs_verbose".into())));
        items.extend(sshfs("nomtab", 'n', || Item::Ignored("-n".into())));
        for i in flags("debug") {
            items.push((i, Item::Debug));
        }
        // sshfs's short forms of -o options, spelled as sshfs expands them
        // so the compatibility table answers them.
        for i in flags("compression") {
            items.push((i, Item::Opts("Compression=yes".into())));
        }
        for i in flags("ssh1") {
            items.push((i, Item::Opts("ssh_protocol=1".into())));
        }
        a.json |= !flags("json").is_empty();
        for id in ["target", "mountpoint", "extra"] {
            a.positionals.extend(values(id).into_iter().map(|(_, v)| v));
        }
    }
    items.sort_by_key(|(i, _)| *i);
    a.items = items.into_iter().map(|(_, item)| item).collect();
    a
}

#[cfg(test)]
mod tests;
