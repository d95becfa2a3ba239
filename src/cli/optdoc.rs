//! What each `-o` option means, for people: the one list that the `--help`
//! text, the man page's MOUNT OPTIONS section and the shell completions
//! (the `-o` argument's possible values) are made from. Parsing stays in
//! options.rs and compat.rs; a unit test keeps this list and the parser in
//! step (every name here is accepted; every sshfs row is here).

use super::compat::{self, Support};

/// One `-o` option as documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionDoc {
    /// The section it is listed under.
    pub group: Group,
    /// The option name as written (ssh's names in ssh's capitalisation).
    pub name: &'static str,
    /// What follows `=`: `None` for a flag; alternatives are `a|b|c`.
    pub value: Option<&'static str>,
    /// The value is the one literal value this entry covers
    /// (`idmap=user`), not a placeholder.
    pub fixed: bool,
    /// One line (may wrap) saying what it does.
    pub help: &'static str,
}

impl OptionDoc {
    /// `name` or `name=VALUE`, as the help and man page show it.
    pub fn usage(&self) -> String {
        match self.value {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.to_string(),
        }
    }

    /// What a completion offers for `-o`: `name`, `name=` (a value
    /// follows) or `name=value` for an entry that covers one value.
    pub fn completion(&self) -> String {
        match self.value {
            Some(v) if self.fixed => format!("{}={v}", self.name),
            Some(_) => format!("{}=", self.name),
            None => self.name.to_string(),
        }
    }

    /// The values a completion can offer after `name=` (from `a|b|c`).
    pub fn choices(&self) -> Vec<&'static str> {
        match self.value {
            Some(v) if self.fixed => vec![v],
            Some(v) if v.contains('|') => v.split('|').collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the value is a local path (completions offer file names).
    pub fn takes_path(&self) -> bool {
        matches!(self.value, Some("PATH" | "FILE" | "DIR"))
    }
}

/// The help text's and man page's sections of `-o` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    General,
    Ssh,
    Proxy,
    Cache,
    Uploads,
    Fuse,
    /// mount(8)/fstab options, accepted and ignored.
    Mount,
    /// sshfs/ssh options accepted without effect (compat.rs).
    NoOp,
    /// sshfs/ssh options refused with the alternative (compat.rs).
    Refused,
}

impl Group {
    /// In the order the help shows them.
    pub const ALL: [Group; 9] = [
        Group::General,
        Group::Ssh,
        Group::Proxy,
        Group::Cache,
        Group::Uploads,
        Group::Fuse,
        Group::Mount,
        Group::NoOp,
        Group::Refused,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::General => "General",
            Group::Ssh => "SSH and login",
            Group::Proxy => "Proxies and addresses",
            Group::Cache => "Cache and timeouts",
            Group::Uploads => "Uploads",
            Group::Fuse => "FUSE and permissions",
            Group::Mount => "mount(8) and fstab (accepted and ignored)",
            Group::NoOp => "sshfs and ssh options accepted without effect",
            Group::Refused => "sshfs and ssh options refused",
        }
    }

    /// Whether the help lists only the names (each has the same meaning).
    pub fn names_only(self) -> bool {
        matches!(self, Group::Mount | Group::NoOp | Group::Refused)
    }
}

const fn d(
    group: Group,
    name: &'static str,
    value: Option<&'static str>,
    help: &'static str,
) -> OptionDoc {
    OptionDoc {
        group,
        name,
        value,
        fixed: false,
        help,
    }
}

use Group::{Cache, Fuse, General, Mount, Proxy, Ssh, Uploads};

const YES_NO: Option<&str> = Some("yes|no");
const IGNORED: &str = "accepted and ignored (a mount(8)/fstab option)";

/// The options coupafs honours, and mount(8)'s; the sshfs no-ops and
/// refusals come from compat.rs (see [`all`]).
const OWN: &[OptionDoc] = &[
    d(General, "debug", None, "print debug messages; implies -f (also -d, --debug)"),
    d(General, "sshfs_debug", None, "same as debug"),
    d(General, "sftp_debug", None, "log each SFTP request and reply (type, id, path, status, time; never file contents)"),
    d(General, "threads", Some("N"), "FUSE request threads, 1-256 (default 16; -s is threads=1)"),
    d(General, "fsname", Some("NAME"), "source name shown by mount(8) and df"),
    d(General, "log_file", Some("PATH"), "append the log to PATH (created 0600; a symlink is refused) instead of stderr/syslog"),
    d(General, "delay_connect", None, "mount at once and connect in the background (boot while the server is down); operations fail with EIO after timeout= until it answers"),
    d(Ssh, "Port", Some("PORT"), "server port (default 22; also -p PORT)"),
    d(Ssh, "User", Some("NAME"), "login name, when the target has no USER@"),
    d(Ssh, "IdentityFile", Some("PATH"), "private key; repeat to offer several keys"),
    d(Ssh, "passphrase_file", Some("PATH"), "file holding the private key's passphrase"),
    d(Ssh, "password_file", Some("PATH"), "file holding the login password (password= is refused: use this or COUPAFS_PASSWORD)"),
    d(Ssh, "UserKnownHostsFile", Some("PATH"), "known_hosts file for the host key check"),
    d(Ssh, "GlobalKnownHostsFile", Some("PATH"), "system known_hosts, read only (default /etc/ssh/ssh_known_hosts; none reads none); @revoked lines refuse that key"),
    d(Ssh, "StrictHostKeyChecking", Some("yes|accept-new|no"), "unknown host key: refuse (yes, the default), add to known_hosts (accept-new), accept (no); a key that differs from known_hosts is always refused"),
    d(Ssh, "HostKeyFingerprint", Some("SHA256:BASE64"), "accept only this host key (as ssh-keygen -l prints it)"),
    d(Ssh, "Ciphers", Some("LIST"), "allowed ciphers, as in ssh_config(5): NAME\\,NAME..., or +LIST, -LIST, ^LIST to add, remove or put first (write the comma as \\, in -o)"),
    d(Ssh, "KexAlgorithms", Some("LIST"), "allowed key exchanges (as Ciphers=)"),
    d(Ssh, "HostKeyAlgorithms", Some("LIST"), "allowed host key types (as Ciphers=)"),
    d(Ssh, "MACs", Some("LIST"), "allowed MACs (as Ciphers=)"),
    d(Ssh, "IdentitiesOnly", YES_NO, "yes: offer only the IdentityFile keys, no ssh-agent keys (default no)"),
    d(Ssh, "IdentityAgent", Some("none|SSH_AUTH_SOCK"), "none: offer no ssh-agent keys (as IdentitiesOnly=yes)"),
    d(Ssh, "PubkeyAuthentication", YES_NO, "no: offer no keys at all (default yes)"),
    d(Ssh, "PasswordAuthentication", YES_NO, "no: never send the password (default yes)"),
    d(Ssh, "KbdInteractiveAuthentication", YES_NO, "when the server offers no \"password\" method, answer keyboard-interactive password prompts from the password (default yes)"),
    d(Ssh, "ChallengeResponseAuthentication", YES_NO, "same as KbdInteractiveAuthentication"),
    d(Ssh, "BatchMode", YES_NO, "accepted; coupafs never prompts"),
    d(Ssh, "ssh_config", Some("FILE"), "ssh client configuration to read instead of ~/.ssh/config; none reads none (also -F FILE); the command line wins"),
    d(Ssh, "ServerAliveInterval", Some("SECS"), "keepalive interval, 0 disables (default 15)"),
    d(Ssh, "ServerAliveCountMax", Some("N"), "unanswered keepalives before the connection counts as lost (default 3)"),
    d(Ssh, "ConnectTimeout", Some("SECS"), "connection timeout (default 15)"),
    d(Ssh, "max_conns", Some("N"), "SFTP connections, 1-4 (default 2); Coupa allows 5 connections per account"),
    d(Proxy, "ProxyCommand", Some("CMD"), "run CMD with /bin/sh and speak SSH over its stdin/stdout (%h host, %p port, %r user, %% a percent sign); none disables"),
    d(Proxy, "ProxyJump", Some("[USER@]HOST[:PORT]"), "reach the server through an SSH jump host, with OpenSSH's ssh -W (several: separate with \\,)"),
    d(Proxy, "proxy", Some("URL|env|none"), "HTTP CONNECT (http://[USER:PASS@]HOST:PORT) or SOCKS5 (socks5://...) proxy; env: the URL in all_proxy, else https_proxy"),
    d(Proxy, "no_proxy", Some("HOSTS"), "hosts (HOST\\,.DOMAIN...) reached directly instead of through proxy= (default: the no_proxy variable)"),
    d(Proxy, "AddressFamily", Some("any|inet|inet6"), "use IPv4 and IPv6 (any, default), IPv4 only (inet) or IPv6 only (inet6)"),
    d(Cache, "cache_timeout", Some("SECS"), "metadata cache lifetime (default 5); SECS may have a fraction, e.g. 0.5"),
    d(Cache, "dcache_timeout", Some("SECS"), "same as cache_timeout"),
    d(Cache, "entry_timeout", Some("SECS"), "same as cache_timeout"),
    d(Cache, "attr_timeout", Some("SECS"), "same as cache_timeout"),
    d(Cache, "cache", YES_NO, "no turns the metadata cache off"),
    d(Cache, "dir_cache", YES_NO, "same as cache"),
    d(Cache, "timeout", Some("SECS"), "longest one system call waits for an unreachable server, reconnects and retries included; then it fails with EIO (default 30)"),
    d(Uploads, "upload_dir", Some("DIR"), "write temporary files in remote DIR, then rename them into place"),
    d(Uploads, "temp_prefix", Some("STR"), "temporary names are STR + NAME + .coupafs-XXXXXX (default \".\")"),
    d(Uploads, "spool_dir", Some("DIR"), "local directory for the write-behind spool"),
    d(Uploads, "spool_max", Some("MiB"), "spool size limit in MiB (default 4096)"),
    d(Uploads, "spare_temps", Some("N"), "keep up to N empty temp files open per folder where files are being created, so close() skips the OPEN round trip (default 8; 0: off)"),
    d(Uploads, "strict_setstat", None, "report chmod/utime the server refuses as errors (default: ignore them)"),
    d(Fuse, "ro", None, "read-only"),
    d(Fuse, "rw", None, "read-write (the default; undoes an earlier ro)"),
    d(Fuse, "allow_other", None, "let all users access the mount (needs user_allow_other in /etc/fuse.conf); implies default_permissions"),
    d(Fuse, "allow_root", None, "let root access the mount too"),
    d(Fuse, "default_permissions", None, "let the kernel check file modes"),
    d(Fuse, "no_default_permissions", None, "with allow_other: do not check modes, so every local user acts with the SFTP account's rights (unsafe; logs a warning)"),
    d(Fuse, "uid", Some("N"), "show every file as owned by user N"),
    d(Fuse, "gid", Some("N"), "show every file as owned by group N"),
    d(Fuse, "umask", Some("OCTAL"), "clear these mode bits, e.g. 022"),
    d(Fuse, "follow_symlinks", None, "show what symlinks point to, not the links"),
    d(Fuse, "contain_symlinks", None, "keep symlinks from leading out of REMOTE_DIR and make absolute ones inside it relative (the default)"),
    d(Fuse, "nocontain_symlinks", None, "show symlink targets unchanged (sshfs: no_contain_symlinks)"),
    d(Fuse, "no_contain_symlinks", None, "same as nocontain_symlinks"),
    d(Fuse, "auto_unmount", None, "unmount when coupafs dies, even by SIGKILL (fusermount3 stays behind to do it); implies allow_root unless allow_other is given"),
    d(Mount, "defaults", None, IGNORED),
    d(Mount, "auto", None, IGNORED),
    d(Mount, "noauto", None, IGNORED),
    d(Mount, "_netdev", None, IGNORED),
    d(Mount, "nofail", None, IGNORED),
    d(Mount, "user", None, IGNORED),
    d(Mount, "nouser", None, IGNORED),
    d(Mount, "users", None, IGNORED),
    d(Mount, "owner", None, IGNORED),
    d(Mount, "dev", None, IGNORED),
    d(Mount, "nodev", None, IGNORED),
    d(Mount, "suid", None, IGNORED),
    d(Mount, "nosuid", None, IGNORED),
    d(Mount, "exec", None, IGNORED),
    d(Mount, "noexec", None, IGNORED),
    d(Mount, "sync", None, IGNORED),
    d(Mount, "async", None, IGNORED),
    d(Mount, "atime", None, IGNORED),
    d(Mount, "noatime", None, IGNORED),
    d(Mount, "relatime", None, IGNORED),
    d(Mount, "nodiratime", None, IGNORED),
    d(Mount, "comment", Some("TEXT"), IGNORED),
    d(Mount, "x-*", None, "any x-NAME or x-NAME=VALUE: accepted and ignored (systemd and mount(8) read them)"),
];

/// Every documented `-o` option: coupafs's own and mount(8)'s, then each
/// sshfs/ssh option that compat.rs accepts without effect or refuses
/// (its reason as the help). A name that has both an honoured row and
/// per-value rows (`IdentityAgent=none` honoured, other values not) is
/// listed once, as honoured.
pub fn all() -> Vec<OptionDoc> {
    let mut out: Vec<OptionDoc> = OWN.to_vec();
    for row in compat::TABLE {
        let (group, help) = match row.support {
            Support::Honoured => continue,
            Support::NoOp(why) => (Group::NoOp, why),
            Support::Refused { why, .. } => (Group::Refused, why),
        };
        let (name, value, fixed) = match row.name.split_once('=') {
            Some((n, v)) => (n, Some(v), true),
            None => (
                row.name,
                (row.arg == compat::Arg::Value).then_some("VALUE"),
                false,
            ),
        };
        // Documented with its honoured use (IdentityAgent=none).
        if OWN.iter().any(|o| o.name == name) {
            continue;
        }
        out.push(OptionDoc {
            group,
            name,
            value,
            fixed,
            help,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Invocation, UsageError};

    fn apply(opt: &str) -> Result<Invocation, UsageError> {
        let args: Vec<String> = ["coupafs", "h:", "/m", "-o", opt]
            .iter()
            .map(|s| s.to_string())
            .collect();
        parse(&args)
    }

    /// A value the parser takes for this option's placeholder.
    fn sample(doc: &OptionDoc) -> String {
        let v = match doc.value {
            None => return doc.name.replace('*', "systemd.automount"),
            Some(v) => v,
        };
        let value = match v {
            "URL|env|none" => "none".to_string(),
            _ if !doc.choices().is_empty() => doc.choices()[0].to_string(),
            "N" | "SECS" | "MiB" | "PORT" => "1".to_string(),
            "OCTAL" => "022".to_string(),
            "LIST" => "aes128-ctr".to_string(),
            "SHA256:BASE64" => "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".to_string(),
            "[USER@]HOST[:PORT]" => "bastion".to_string(),
            "PATH" | "FILE" | "DIR" => "/x".to_string(),
            _ => "x".to_string(),
        };
        format!("{}={value}", doc.name)
    }

    #[test]
    fn every_documented_honoured_option_parses() {
        for doc in all().iter().filter(|d| d.group != Group::Refused) {
            let opt = sample(doc);
            assert!(
                matches!(apply(&opt), Ok(Invocation::Mount(_))),
                "{opt}: {:?}",
                apply(&opt)
            );
        }
    }

    #[test]
    fn every_refused_option_is_refused_and_every_sshfs_row_is_documented() {
        let docs = all();
        for doc in docs.iter().filter(|d| d.group == Group::Refused) {
            let opt = sample(doc);
            let Err(UsageError(msg)) = apply(&opt) else {
                panic!("{opt} parses")
            };
            assert!(msg.contains("is not supported"), "{opt}: {msg}");
        }
        for row in compat::TABLE {
            let name = row.name.split('=').next().unwrap_or_default();
            assert!(docs.iter().any(|d| d.name == name), "{name} undocumented");
        }
    }

    #[test]
    fn names_are_unique_per_group_and_helps_are_one_line() {
        let docs = all();
        for (i, a) in docs.iter().enumerate() {
            assert!(!a.help.contains('\n'), "{}", a.name);
            assert!(!a.help.is_empty(), "{}", a.name);
            for b in &docs[i + 1..] {
                assert!(
                    !(a.name == b.name && a.group == b.group && a.value == b.value),
                    "{} twice",
                    a.name
                );
            }
        }
    }
}
