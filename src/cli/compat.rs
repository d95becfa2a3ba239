//! sshfs compatibility: every `-o` option sshfs 3.7 knows (its own, the
//! FUSE ones its help lists, and the ssh_config options it passes to ssh),
//! each with what coupafs does with it. This one table drives the parser
//! (no-ops and refusals are settled here and never reach the option match
//! in options.rs), the info line logged at mount for each no-op, and the
//! table in doc/OPERATIONS.md (a unit test keeps the two equal), so an
//! sshfs fstab line either mounts or says exactly which option to change.

/// What coupafs does with one sshfs option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// Does what the option asks (parsed by options.rs).
    Honoured,
    /// Accepted without effect; the reason is logged once at mount.
    NoOp(&'static str),
    /// Refused with why and what to write instead.
    Refused {
        why: &'static str,
        instead: &'static str,
    },
}

/// Where the option comes from (the doc table's grouping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Sshfs,
    Fuse,
    /// ssh_config(5): matched case-insensitively, as ssh does.
    Ssh,
}

/// Whether the option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    Flag,
    Value,
}

/// One row: the option, and a use of it that the tests feed the parser.
#[derive(Debug)]
pub(crate) struct Compat {
    /// The option name, or `name=value` for a row that covers one value.
    pub(crate) name: &'static str,
    pub(crate) origin: Origin,
    pub(crate) arg: Arg,
    pub(crate) support: Support,
    /// A `-o` list using the option last; for an `Honoured` row, parsing it
    /// must give other options than parsing it without its last item.
    /// Read by the tests only, kept beside the row it exercises.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) sample: &'static str,
}

use Arg::{Flag, Value};
use Origin::{Fuse, Ssh, Sshfs};
use Support::{Honoured, NoOp, Refused};

const fn row(
    name: &'static str,
    origin: Origin,
    arg: Arg,
    support: Support,
    sample: &'static str,
) -> Compat {
    Compat {
        name,
        origin,
        arg,
        support,
        sample,
    }
}

const fn refused(why: &'static str, instead: &'static str) -> Support {
    Refused { why, instead }
}

const ONE_TTL: &str = "coupafs has one metadata cache lifetime for attributes, names and \
    links: cache_timeout= (dcache_timeout=)";
const CLEANS_ITSELF: &str = "coupafs's caches are bounded and drop expired entries when \
    they are looked up";
const NO_KERNEL_MODULE: &str = "coupafs pushes no FUSE modules";
const SSH1: &str = "an SSH protocol 1 option; coupafs speaks SSH 2 only";
const NO_PROMPTS: &str = "coupafs never prompts";
const OWN_CONNECTIONS: &str = "coupafs opens its own SSH connections (max_conns=) and \
    shares none with ssh";
const NO_KERBEROS: &str = "coupafs authenticates with keys and passwords only";
const NO_TOKENS: &str = "libssh2 cannot use PKCS#11 tokens or smartcards";
const AGENT_FOR_TOKENS: &str = "load the token's key into ssh-agent (ssh-add -s) and mount \
    with SSH_AUTH_SOCK set";

/// Every sshfs 3.7 option (sshfs --help, sshfs(1), and its list of ssh
/// options), in the doc table's order.
pub(crate) const TABLE: &[Compat] = &[
    // sshfs's own options.
    row("reconnect", Sshfs, Flag, NoOp("coupafs always reconnects"), "reconnect"),
    row("delay_connect", Sshfs, Flag, Honoured, "delay_connect"),
    row("sshfs_sync", Sshfs, Flag, NoOp("coupafs uploads a file when it is closed, under a temporary name renamed into place; writes are never half-sent"), "sshfs_sync"),
    row("no_readahead", Sshfs, Flag, NoOp("coupafs reads ahead only on sequential reads and never past the file's known size"), "no_readahead"),
    row("sync_readdir", Sshfs, Flag, NoOp("coupafs returns complete directory listings either way"), "sync_readdir"),
    row("dir_cache", Sshfs, Value, Honoured, "dir_cache=no"),
    row("cache", Sshfs, Value, Honoured, "cache=no"),
    row("dcache_timeout", Sshfs, Value, Honoured, "dcache_timeout=60"),
    row("cache_timeout", Sshfs, Value, Honoured, "cache_timeout=60"),
    row("dcache_stat_timeout", Sshfs, Value, NoOp(ONE_TTL), "dcache_stat_timeout=5"),
    row("dcache_link_timeout", Sshfs, Value, NoOp(ONE_TTL), "dcache_link_timeout=5"),
    row("dcache_dir_timeout", Sshfs, Value, NoOp(ONE_TTL), "dcache_dir_timeout=5"),
    row("cache_stat_timeout", Sshfs, Value, NoOp(ONE_TTL), "cache_stat_timeout=5"),
    row("cache_link_timeout", Sshfs, Value, NoOp(ONE_TTL), "cache_link_timeout=5"),
    row("cache_dir_timeout", Sshfs, Value, NoOp(ONE_TTL), "cache_dir_timeout=5"),
    row("dcache_max_size", Sshfs, Value, NoOp(CLEANS_ITSELF), "dcache_max_size=10000"),
    row("cache_max_size", Sshfs, Value, NoOp(CLEANS_ITSELF), "cache_max_size=10000"),
    row("dcache_clean_interval", Sshfs, Value, NoOp(CLEANS_ITSELF), "dcache_clean_interval=60"),
    row("cache_clean_interval", Sshfs, Value, NoOp(CLEANS_ITSELF), "cache_clean_interval=60"),
    row("dcache_min_clean_interval", Sshfs, Value, NoOp(CLEANS_ITSELF), "dcache_min_clean_interval=5"),
    row("cache_min_clean_interval", Sshfs, Value, NoOp(CLEANS_ITSELF), "cache_min_clean_interval=5"),
    row("direct_io", Sshfs, Flag, NoOp("coupafs lets the kernel keep a file's contents only while the file is unchanged on the server (checked at each open)"), "direct_io"),
    row("workaround", Sshfs, Value, NoOp("coupafs finds out what the server supports (rename over a file, truncate, fstat) and works around it by itself"), "workaround=rename"),
    row("idmap=user", Sshfs, Value, NoOp("coupafs shows every file as owned by the mounting user (or uid=/gid=)"), "idmap=user"),
    row("idmap=none", Sshfs, Value, NoOp("coupafs shows every file as owned by the mounting user (or uid=/gid=); the server's numeric ids mean nothing locally"), "idmap=none"),
    row("idmap=file", Sshfs, Value, refused("coupafs shows every file as owned by one local user", "uid=N,gid=N"), "idmap=file"),
    row("uidfile", Sshfs, Value, refused("coupafs maps no ids from files", "uid=N"), "uidfile=/etc/coupafs/uids"),
    row("gidfile", Sshfs, Value, refused("coupafs maps no ids from files", "gid=N"), "gidfile=/etc/coupafs/gids"),
    row("nomap", Sshfs, Value, refused("coupafs maps no ids from files", "uid=N,gid=N"), "nomap=ignore"),
    row("ssh_command", Sshfs, Value, refused("coupafs speaks SSH itself and runs no ssh program", "ssh options as -o Name=VALUE, ssh_config=FILE, or ProxyCommand= for a wrapper"), "ssh_command=ssh"),
    row("ssh_protocol=2", Sshfs, Value, NoOp("SSH 2 is the only protocol coupafs speaks"), "ssh_protocol=2"),
    row("ssh_protocol=1", Sshfs, Value, refused("SSH protocol 1 is broken and unsupported", "leave ssh_protocol out (SSH 2)"), "ssh_protocol=1"),
    row("sftp_server", Sshfs, Value, refused("coupafs always opens the server's sftp subsystem, which Coupa provides", "leave sftp_server out"), "sftp_server=/usr/lib/openssh/sftp-server"),
    row("directport", Sshfs, Value, refused("SFTP without SSH would send the login and the files unencrypted", "Port=PORT for the SSH port"), "directport=2222"),
    row("passive", Sshfs, Flag, refused("coupafs is an SSH client and cannot serve SFTP over its stdin", "ProxyCommand= to carry the SSH session over a pipe"), "passive"),
    row("slave", Sshfs, Flag, refused("coupafs is an SSH client and cannot serve SFTP over its stdin", "ProxyCommand= to carry the SSH session over a pipe"), "slave"),
    row("disable_hardlink", Sshfs, Flag, NoOp("coupafs makes hard links only where the server offers hardlink@openssh.com, and fails link(2) elsewhere"), "disable_hardlink"),
    row("transform_symlinks", Sshfs, Flag, NoOp("contain_symlinks (on by default) already rewrites absolute links that stay inside the mount to relative ones and neutralises the others"), "transform_symlinks"),
    row("contain_symlinks", Sshfs, Flag, Honoured, "no_contain_symlinks,contain_symlinks"),
    row("no_contain_symlinks", Sshfs, Flag, Honoured, "no_contain_symlinks"),
    row("follow_symlinks", Sshfs, Flag, Honoured, "follow_symlinks"),
    row("no_check_root", Sshfs, Flag, NoOp("coupafs checks REMOTE_DIR when it connects so that a wrong directory fails the mount, not every file operation"), "no_check_root"),
    row("password_stdin", Sshfs, Flag, refused("coupafs reads no password from stdin (mount(8) and systemd give it none)", "password_file=PATH or the COUPAFS_PASSWORD environment variable"), "password_stdin"),
    row("max_conns", Sshfs, Value, Honoured, "max_conns=3"),
    row("max_read", Sshfs, Value, NoOp("coupafs and the kernel agree on the read size themselves"), "max_read=65536"),
    row("max_write", Sshfs, Value, NoOp("coupafs and the kernel agree on the write size themselves"), "max_write=65536"),
    row("sshfs_debug", Sshfs, Flag, Honoured, "sshfs_debug"),
    row("debug", Sshfs, Flag, Honoured, "debug"),
    row("sshfs_verbose", Sshfs, Flag, NoOp("coupafs runs no ssh program to make verbose; -o sftp_debug logs each SFTP request"), "sshfs_verbose"),
    row("verbose", Sshfs, Flag, NoOp("coupafs runs no ssh program to make verbose; -o sftp_debug logs each SFTP request"), "verbose"),
    row("writeback_cache", Sshfs, Value, NoOp("coupafs spools writes itself and uploads on close"), "writeback_cache=no"),
    row("unreliable_append", Sshfs, Flag, NoOp("coupafs uploads whole files, never appends on the server"), "unreliable_append"),
    // FUSE options that sshfs's help lists.
    row("kernel_cache", Fuse, Flag, NoOp("coupafs lets the kernel keep a file's contents only while the file is unchanged on the server (checked at each open)"), "kernel_cache"),
    row("auto_cache", Fuse, Flag, NoOp("coupafs lets the kernel keep a file's contents only while the file is unchanged on the server (checked at each open)"), "auto_cache"),
    row("noauto_cache", Fuse, Flag, NoOp("coupafs lets the kernel keep a file's contents only while the file is unchanged on the server (checked at each open)"), "noauto_cache"),
    row("no_rofd_flush", Fuse, Flag, NoOp("flushing a file opened read-only costs coupafs no round trip"), "no_rofd_flush"),
    row("umask", Fuse, Value, Honoured, "umask=027"),
    row("uid", Fuse, Value, Honoured, "uid=1000"),
    row("gid", Fuse, Value, Honoured, "gid=1000"),
    row("entry_timeout", Fuse, Value, Honoured, "entry_timeout=60"),
    row("attr_timeout", Fuse, Value, Honoured, "attr_timeout=60"),
    row("negative_timeout", Fuse, Value, NoOp("coupafs keeps \"no such file\" answers as long as other metadata (cache_timeout=) and forgets them when it creates the file"), "negative_timeout=5"),
    row("ac_attr_timeout", Fuse, Value, NoOp(ONE_TTL), "ac_attr_timeout=5"),
    row("noforget", Fuse, Flag, NoOp("coupafs keeps inode numbers stable by path itself"), "noforget"),
    row("remember", Fuse, Value, NoOp("coupafs keeps inode numbers stable by path itself"), "remember=60"),
    row("modules", Fuse, Value, refused(NO_KERNEL_MODULE, "subdir: mount HOST:DIR; iconv: none (names are passed as they are)"), "modules=subdir"),
    row("subdir", Fuse, Value, refused(NO_KERNEL_MODULE, "mount HOST:DIR"), "subdir=/Incoming"),
    row("rellinks", Fuse, Flag, refused(NO_KERNEL_MODULE, "contain_symlinks (the default) rewrites absolute links inside the mount to relative ones"), "rellinks"),
    row("norellinks", Fuse, Flag, refused(NO_KERNEL_MODULE, "nocontain_symlinks shows link targets unchanged"), "norellinks"),
    row("from_code", Fuse, Value, refused(NO_KERNEL_MODULE, "none: names are passed as they are"), "from_code=UTF-8"),
    row("to_code", Fuse, Value, refused(NO_KERNEL_MODULE, "none: names are passed as they are"), "to_code=UTF-8"),
    row("allow_other", Fuse, Flag, Honoured, "allow_other"),
    row("allow_root", Fuse, Flag, Honoured, "allow_root"),
    row("auto_unmount", Fuse, Flag, Honoured, "auto_unmount"),
    row("default_permissions", Fuse, Flag, Honoured, "default_permissions"),
    row("fsname", Fuse, Value, Honoured, "fsname=coupa"),
    row("subtype", Fuse, Value, NoOp("coupafs mounts always have the type fuse.coupafs"), "subtype=sshfs"),
    row("ro", Fuse, Flag, Honoured, "ro"),
    row("rw", Fuse, Flag, Honoured, "ro,rw"),
    row("big_writes", Fuse, Flag, NoOp("a FUSE 2 option; FUSE 3 always writes in large blocks"), "big_writes"),
    row("nonempty", Fuse, Flag, NoOp("a FUSE 2 option; FUSE 3 always mounts over a non-empty directory"), "nonempty"),
    // ssh options (the list sshfs passes to ssh, and User and Port).
    row("AddressFamily", Ssh, Value, Honoured, "AddressFamily=inet"),
    row("BatchMode", Ssh, Value, Honoured, "BatchMode=yes"),
    row("BindAddress", Ssh, Value, refused("coupafs lets the kernel choose the source address", "a route (ip route ... src ADDR) or ProxyCommand='nc -s ADDR %h %p'"), "BindAddress=192.0.2.1"),
    row("BindInterface", Ssh, Value, refused("coupafs lets the kernel choose the interface", "a route for the server's address, or ProxyCommand= with a tool that binds"), "BindInterface=eth1"),
    row("CertificateFile", Ssh, Value, refused("libssh2 cannot present OpenSSH certificates", "a plain key in IdentityFile="), "CertificateFile=/etc/coupafs/id-cert.pub"),
    row("ChallengeResponseAuthentication", Ssh, Value, Honoured, "ChallengeResponseAuthentication=no"),
    row("CheckHostIP", Ssh, Value, NoOp("coupafs checks the host key under the host name only (OpenSSH's default since 8.5)"), "CheckHostIP=no"),
    row("Cipher", Ssh, Value, NoOp(SSH1), "Cipher=blowfish"),
    row("Ciphers", Ssh, Value, Honoured, "Ciphers=aes256-ctr"),
    row("Compression", Ssh, Value, NoOp("coupafs sends the SSH stream uncompressed; the files arrive the same"), "Compression=yes"),
    row("CompressionLevel", Ssh, Value, NoOp("coupafs sends the SSH stream uncompressed; the files arrive the same"), "CompressionLevel=6"),
    row("ConnectionAttempts", Ssh, Value, NoOp("coupafs reconnects by itself while mounted; at boot, use delay_connect"), "ConnectionAttempts=3"),
    row("ConnectTimeout", Ssh, Value, Honoured, "ConnectTimeout=5"),
    row("ControlMaster", Ssh, Value, NoOp(OWN_CONNECTIONS), "ControlMaster=auto"),
    row("ControlPath", Ssh, Value, NoOp(OWN_CONNECTIONS), "ControlPath=~/.ssh/cm-%r@%h:%p"),
    row("ControlPersist", Ssh, Value, NoOp(OWN_CONNECTIONS), "ControlPersist=10m"),
    row("FingerprintHash", Ssh, Value, NoOp("coupafs prints SHA256 fingerprints"), "FingerprintHash=sha256"),
    row("GlobalKnownHostsFile", Ssh, Value, Honoured, "GlobalKnownHostsFile=/etc/coupafs/ssh_known_hosts"),
    row("GSSAPIAuthentication", Ssh, Value, NoOp(NO_KERBEROS), "GSSAPIAuthentication=no"),
    row("GSSAPIDelegateCredentials", Ssh, Value, NoOp(NO_KERBEROS), "GSSAPIDelegateCredentials=no"),
    row("HostbasedAuthentication", Ssh, Value, NoOp(NO_KERBEROS), "HostbasedAuthentication=no"),
    row("HostbasedKeyTypes", Ssh, Value, NoOp(NO_KERBEROS), "HostbasedKeyTypes=ssh-ed25519"),
    row("HostKeyAlgorithms", Ssh, Value, Honoured, "HostKeyAlgorithms=ssh-ed25519"),
    row("HostKeyAlias", Ssh, Value, refused("coupafs looks the host key up under the host name it connects to", "put the key in UserKnownHostsFile= under that name, or pin it with HostKeyFingerprint=SHA256:..."), "HostKeyAlias=coupa"),
    row("HostName", Ssh, Value, refused("the host is part of the mount source", "write the real host in HOST:DIR (or set HostName in ssh_config=FILE)"), "HostName=sftp.example.com"),
    row("IdentitiesOnly", Ssh, Value, Honoured, "IdentitiesOnly=yes"),
    row("IdentityFile", Ssh, Value, Honoured, "IdentityFile=/etc/coupafs/id_ed25519"),
    row("IdentityAgent=SSH_AUTH_SOCK", Ssh, Value, NoOp("coupafs uses the agent in SSH_AUTH_SOCK by default"), "IdentityAgent=SSH_AUTH_SOCK"),
    row("IdentityAgent=none", Ssh, Value, Honoured, "IdentityAgent=none"),
    row("IdentityAgent", Ssh, Value, refused("coupafs finds the agent through SSH_AUTH_SOCK only", "set SSH_AUTH_SOCK=PATH in the mount's environment (systemd: Environment=)"), "IdentityAgent=/run/agent.sock"),
    row("IPQoS", Ssh, Value, NoOp("coupafs leaves the packets' DSCP marks to the system"), "IPQoS=throughput"),
    row("KbdInteractiveAuthentication", Ssh, Value, Honoured, "KbdInteractiveAuthentication=no"),
    row("KbdInteractiveDevices", Ssh, Value, NoOp("coupafs answers keyboard-interactive prompts from the password, whatever the device"), "KbdInteractiveDevices=pam"),
    row("KexAlgorithms", Ssh, Value, Honoured, "KexAlgorithms=curve25519-sha256"),
    row("LogLevel", Ssh, Value, NoOp("coupafs logs through syslog; -o debug (or COUPAFS_LOG=debug) for more"), "LogLevel=ERROR"),
    row("MACs", Ssh, Value, Honoured, "MACs=hmac-sha2-256"),
    row("NoHostAuthenticationForLocalhost", Ssh, Value, refused("coupafs checks every host key, localhost's too", "StrictHostKeyChecking=accept-new or HostKeyFingerprint=SHA256:..."), "NoHostAuthenticationForLocalhost=yes"),
    row("NumberOfPasswordPrompts", Ssh, Value, NoOp(NO_PROMPTS), "NumberOfPasswordPrompts=1"),
    row("PasswordAuthentication", Ssh, Value, Honoured, "PasswordAuthentication=no"),
    row("PermitLocalCommand", Ssh, Value, NoOp("coupafs runs no local commands"), "PermitLocalCommand=no"),
    row("PKCS11Provider", Ssh, Value, refused(NO_TOKENS, AGENT_FOR_TOKENS), "PKCS11Provider=/usr/lib/opensc-pkcs11.so"),
    row("Port", Ssh, Value, Honoured, "Port=2222"),
    row("PreferredAuthentications", Ssh, Value, NoOp("coupafs tries keys, then the password, as the server allows"), "PreferredAuthentications=publickey"),
    row("ProxyCommand", Ssh, Value, Honoured, "ProxyCommand=nc %h %p"),
    row("ProxyJump", Ssh, Value, Honoured, "ProxyJump=bastion.example.com"),
    row("ProxyUseFdpass", Ssh, Value, NoOp("coupafs talks to the ProxyCommand over a socket pair and needs no passed descriptor"), "ProxyUseFdpass=no"),
    row("PubkeyAcceptedKeyTypes", Ssh, Value, NoOp("coupafs offers each key with the signature algorithms libssh2 and the server agree on"), "PubkeyAcceptedKeyTypes=ssh-ed25519"),
    row("PubkeyAuthentication", Ssh, Value, Honoured, "PubkeyAuthentication=no"),
    row("RekeyLimit", Ssh, Value, NoOp("libssh2 re-keys when the server asks"), "RekeyLimit=1G"),
    row("RevokedHostKeys", Ssh, Value, refused("coupafs reads revocations from known_hosts only", "mark the key @revoked in UserKnownHostsFile= or GlobalKnownHostsFile="), "RevokedHostKeys=/etc/ssh/revoked"),
    row("RhostsRSAAuthentication", Ssh, Value, NoOp(SSH1), "RhostsRSAAuthentication=no"),
    row("ServerAliveCountMax", Ssh, Value, Honoured, "ServerAliveCountMax=5"),
    row("ServerAliveInterval", Ssh, Value, Honoured, "ServerAliveInterval=30"),
    row("SmartcardDevice", Ssh, Value, refused(NO_TOKENS, AGENT_FOR_TOKENS), "SmartcardDevice=/dev/sc0"),
    row("StrictHostKeyChecking", Ssh, Value, Honoured, "StrictHostKeyChecking=accept-new"),
    row("TCPKeepAlive", Ssh, Value, NoOp("coupafs detects a dead link with ServerAliveInterval= keepalives"), "TCPKeepAlive=yes"),
    row("UpdateHostKeys", Ssh, Value, NoOp("coupafs writes known_hosts only for StrictHostKeyChecking=accept-new"), "UpdateHostKeys=no"),
    row("UsePrivilegedPort", Ssh, Value, NoOp("coupafs connects from an ordinary port, as OpenSSH does"), "UsePrivilegedPort=no"),
    row("User", Ssh, Value, Honoured, "User=alice"),
    row("UserKnownHostsFile", Ssh, Value, Honoured, "UserKnownHostsFile=/etc/coupafs/known_hosts"),
    row("VerifyHostKeyDNS", Ssh, Value, NoOp("coupafs checks host keys against known_hosts and HostKeyFingerprint= only"), "VerifyHostKeyDNS=no"),
    row("VisualHostKey", Ssh, Value, NoOp("coupafs prints fingerprints, not pictures"), "VisualHostKey=no"),
];

/// The row for `key[=val]`: a row for that exact value first, then the
/// row for the name; ssh names are case-insensitive. `Err` lists the
/// values there are rows for when the name has only per-value rows.
pub(crate) fn lookup(key: &str, val: Option<&str>) -> Result<Option<&'static Compat>, String> {
    let name_is = |c: &Compat, name: &str| match c.origin {
        Ssh => name.eq_ignore_ascii_case(key),
        Sshfs | Fuse => name == key,
    };
    let mut values = Vec::new();
    let mut by_name = None;
    for c in TABLE {
        match c.name.split_once('=') {
            Some((name, v)) if name_is(c, name) => {
                if val == Some(v) {
                    return Ok(Some(c));
                }
                values.push(v);
            }
            Some(_) => {}
            None if name_is(c, c.name) => by_name = Some(c),
            None => {}
        }
    }
    match (by_name, values.is_empty()) {
        (Some(c), _) => Ok(Some(c)),
        (None, true) => Ok(None),
        (None, false) => Err(format!(
            "invalid value '{}' for {key}: expected {}",
            val.unwrap_or_default(),
            values.join(", ")
        )),
    }
}

/// The Markdown table in doc/OPERATIONS.md ("Coming from sshfs"), one
/// line per row of `TABLE`.
#[cfg(test)]
pub(crate) fn doc_table() -> String {
    let mut s = String::from("| Option | From | What coupafs does |\n|---|---|---|\n");
    for c in TABLE {
        let from = match c.origin {
            Sshfs => "sshfs",
            Fuse => "FUSE",
            Ssh => "ssh",
        };
        let what = match c.support {
            Honoured => "honoured".to_string(),
            NoOp(why) => format!("accepted, no effect: {why}"),
            Refused { why, instead } => format!("refused: {why}; use {instead}"),
        };
        s.push_str(&format!("| `{}` | {from} | {what} |\n", c.name));
    }
    s
}
