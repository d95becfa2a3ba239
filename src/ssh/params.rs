//! What a connection is made from: the parameters of one SSH connection,
//! secrets that never print, the host-key policy, and why connecting failed.
//!
//! Plain data only (no ssh2): `cli` builds these, `session` consumes them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A secret (password, passphrase) that never prints and is wiped from
/// memory when the last holder drops it. Clones share one buffer (a
/// connection per reconnect clones the parameters, not the bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Wiped>);

/// The bytes of a secret, zeroed on drop.
#[derive(PartialEq, Eq)]
struct Wiped(String);

impl Drop for Wiped {
    fn drop(&mut self) {
        // SAFETY: the bytes are zeroed and the string emptied before
        // anyone could see it as (invalid) UTF-8.
        zeroize(unsafe { self.0.as_mut_vec() });
    }
}

/// Zeroes all of `buf`'s capacity, with volatile writes the optimiser may
/// not drop as dead stores, then empties it.
fn zeroize(buf: &mut Vec<u8>) {
    buf.clear();
    for b in buf.spare_capacity_mut() {
        // SAFETY: a valid, aligned pointer into the vector's allocation.
        unsafe { std::ptr::write_volatile(b, std::mem::MaybeUninit::new(0)) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Arc::new(Wiped(value)))
    }
    /// The secret in `bytes` (its buffer is kept, not copied); None, with
    /// the bytes wiped, if they are not UTF-8.
    pub fn from_utf8(bytes: Vec<u8>) -> Option<Self> {
        match String::from_utf8(bytes) {
            Ok(s) => Some(Self::new(s)),
            Err(e) => {
                zeroize(&mut e.into_bytes());
                None
            }
        }
    }
    pub fn expose(&self) -> &str {
        &self.0 .0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `StrictHostKeyChecking=`: what to do with a host key known_hosts does
/// not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// `yes` (default): unknown or changed key refuses to connect.
    #[default]
    Strict,
    /// `accept-new`: unknown key is added to known_hosts, changed key refused.
    AcceptNew,
    /// `no`: an unknown key is accepted (logged with its fingerprint); a key
    /// that differs from known_hosts is still refused (unlike ssh).
    No,
}

/// `Ciphers=`, `KexAlgorithms=`, `HostKeyAlgorithms=`, `MACs=` as typed:
/// comma lists, optionally starting with `+` (append), `-` (remove) or `^`
/// (put first), as in ssh_config(5). `None`: libssh2's defaults. Checked
/// against what libssh2 supports when connecting (unknown names refuse).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Algorithms {
    pub ciphers: Option<String>,
    pub kex: Option<String>,
    pub host_key: Option<String>,
    pub macs: Option<String>,
}

/// Which authentication methods may be tried (ssh's `IdentitiesOnly`,
/// `PubkeyAuthentication`, `PasswordAuthentication`, `BatchMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Only the identity files: no ssh-agent keys.
    pub identities_only: bool,
    /// Public keys (agent and identity files) may be offered.
    pub pubkey: bool,
    /// The password (password_file= or COUPAFS_PASSWORD) may be sent.
    pub password: bool,
    /// ssh's "never prompt": coupafs never prompts anyway; kept for the log.
    pub batch_mode: bool,
    /// `KbdInteractiveAuthentication`: when the server does not offer
    /// `password`, answer keyboard-interactive's echo-off prompts with the
    /// password.
    pub kbd_interactive: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            identities_only: false,
            pubkey: true,
            password: true,
            batch_mode: false,
            kbd_interactive: true,
        }
    }
}

/// `AddressFamily=`: which resolved addresses may be tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddressFamily {
    /// `any` (default): IPv4 and IPv6, in the resolver's order.
    #[default]
    Any,
    /// `inet`: IPv4 only.
    Inet,
    /// `inet6`: IPv6 only.
    Inet6,
}

/// A proxy server given as a URL (`http://[USER:PASS@]HOST:PORT`,
/// `socks5://...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyServer {
    pub host: String,
    pub port: u16,
    /// User name and password (RFC 7617 Basic for HTTP, RFC 1929 for SOCKS5).
    pub auth: Option<(String, Secret)>,
}

/// How the TCP stream to the server is made.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Route {
    /// A TCP connection to HOST:PORT.
    #[default]
    Direct,
    /// `ProxyCommand=`: the command as typed (`%h %p %r %%` expanded when
    /// connecting); its stdin/stdout carry the session.
    Command(String),
    /// `ProxyJump=[USER@]HOST[:PORT][,...]`: carried by OpenSSH's
    /// `ssh -W`, reading this ssh config file (`None`: ssh's default).
    Jump {
        hosts: String,
        ssh_config: Option<PathBuf>,
    },
    /// An HTTP proxy's CONNECT method (RFC 9110 9.3.6).
    HttpConnect(ProxyServer),
    /// A SOCKS5 proxy (RFC 1928).
    Socks5(ProxyServer),
}

/// How to reach the server: route, hosts that bypass a proxy server, and
/// the address family.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reach {
    pub route: Route,
    /// `no_proxy`: hosts, domains (`.example.com` or `example.com`, which
    /// also match subdomains) or `*`, reached directly instead of through an
    /// HTTP or SOCKS5 proxy.
    pub no_proxy: Vec<String>,
    pub address_family: AddressFamily,
}

/// The system-wide known_hosts file ssh reads besides the user's.
pub const GLOBAL_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// Everything needed to open one SSH connection with an SFTP channel.
#[derive(Clone, Debug)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub password: Option<Secret>,
    pub passphrase: Option<Secret>,
    /// Try ssh-agent (when `SSH_AUTH_SOCK` is set).
    pub use_agent: bool,
    /// The user's known_hosts: read, and appended to by accept-new.
    pub known_hosts: PathBuf,
    /// System-wide known_hosts files: read only (`GlobalKnownHostsFile=`,
    /// default [`GLOBAL_KNOWN_HOSTS`]).
    pub global_known_hosts: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub host_key_fingerprint: Option<String>,
    pub connect_timeout: Duration,
    /// Probe an idle connection after this long (0 = never).
    pub keepalive_interval: Duration,
    pub keepalive_count_max: u32,
    /// A connection with outstanding requests and no reply for this long is
    /// declared dead when keepalives are off.
    pub reply_timeout: Duration,
    pub algorithms: Algorithms,
    pub auth: AuthPolicy,
    /// Proxies and address family.
    pub reach: Reach,
}

impl ConnectParams {
    /// How long outstanding requests may go unanswered before the link is
    /// declared dead (ServerAliveInterval x ServerAliveCountMax, as in ssh).
    pub(crate) fn dead_after(&self) -> Duration {
        if self.keepalive_interval.is_zero() {
            self.reply_timeout
        } else {
            // A link that answers nothing for the operation timeout is dead
            // too: callers must not wait longer than that.
            (self.keepalive_interval * self.keepalive_count_max.max(1)).min(self.reply_timeout)
        }
    }
}

/// Why a connection could not be established. Each message is meant for an
/// admin reading the mount's stderr or journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// DNS or TCP: the server could not be reached at all.
    Unreachable(String),
    /// SSH handshake failed.
    Handshake(String),
    /// Host key not trusted (unknown, changed, or not the pinned one).
    HostKey(String),
    /// No authentication method worked.
    Auth(String),
    /// SFTP subsystem refused or spoke garbage.
    Sftp(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unreachable(m) => write!(f, "cannot reach server: {m}"),
            ConnectError::Handshake(m) => write!(f, "SSH handshake failed: {m}"),
            ConnectError::HostKey(m) => write!(f, "host key verification failed: {m}"),
            ConnectError::Auth(m) => write!(f, "authentication failed: {m}"),
            ConnectError::Sftp(m) => write!(f, "SFTP subsystem failed: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Default identity files, as ssh tries them.
pub fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    ["id_rsa", "id_ecdsa", "id_ed25519"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(keepalive: u64, count: u32, reply: u64) -> ConnectParams {
        ConnectParams {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            identity_files: Vec::new(),
            password: Some(Secret::new("hunter2".into())),
            passphrase: None,
            use_agent: false,
            known_hosts: PathBuf::from("/nonexistent"),
            global_known_hosts: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            host_key_fingerprint: None,
            connect_timeout: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(keepalive),
            keepalive_count_max: count,
            reply_timeout: Duration::from_secs(reply),
            algorithms: Algorithms::default(),
            auth: AuthPolicy::default(),
            reach: Reach::default(),
        }
    }

    #[test]
    fn dead_after_is_keepalive_times_count_bounded_by_reply_timeout() {
        assert_eq!(params(0, 3, 30).dead_after(), Duration::from_secs(30));
        assert_eq!(params(5, 3, 30).dead_after(), Duration::from_secs(15));
        assert_eq!(params(5, 0, 30).dead_after(), Duration::from_secs(5));
        assert_eq!(params(20, 3, 30).dead_after(), Duration::from_secs(30));
    }

    #[test]
    fn zeroize_clears_the_whole_allocation() {
        let mut v = b"hunter2-and-more".to_vec();
        v.truncate(7);
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        zeroize(&mut v);
        assert!(v.is_empty());
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap), "same buffer");
        // SAFETY: the allocation is live and `cap` bytes long, all written.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, cap) };
        assert!(bytes.iter().all(|&b| b == 0), "{bytes:?}");
    }

    #[test]
    fn clones_of_a_secret_share_one_buffer() {
        let a = Secret::new("hunter2".into());
        let b = a.clone();
        assert_eq!(a.expose().as_ptr(), b.expose().as_ptr());
        assert_eq!(a, b);
    }

    #[test]
    fn secrets_never_print() {
        let shown = format!("{:?}", params(0, 3, 30));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
