//! The ssh client configuration file (`~/.ssh/config`, or `-F FILE`), read
//! the way ssh and sshfs read it, with the `ssh2-config` crate.
//!
//! The target's host is matched against the `Host` blocks; the first value
//! obtained for each setting wins (ssh's rule). Of the settings, coupafs uses
//! HostName, Port, User, IdentityFile, UserKnownHostsFile and
//! StrictHostKeyChecking, the algorithm and authentication switches,
//! ProxyCommand, ProxyJump and AddressFamily; everything given on the
//! command line wins over the file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{DefaultAlgorithms, ParseRule, SshConfig};

use super::options::parse_ssh_flag;
use crate::cli::{HostKeyPolicy, MountOptions};

/// What the config file contributed, for the debug log and for callers that
/// need the host to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Applied {
    /// The file that was read, if any.
    pub(crate) file: Option<PathBuf>,
    /// `HostName` of the matching block: the address to connect to (and to
    /// look up in known_hosts, as ssh does) instead of the typed host.
    pub(crate) host_name: Option<String>,
}

/// Which file to read: `-F` wins; `-F none` means none; otherwise
/// `HOME/.ssh/config` when it exists.
fn config_file(opts: &MountOptions, home: Option<&Path>) -> Result<Option<PathBuf>, String> {
    match &opts.ssh_config {
        Some(p) if p.as_os_str() == "none" => Ok(None),
        Some(p) => {
            if !p.exists() {
                return Err(format!("ssh config file {}: not found", p.display()));
            }
            Ok(Some(p.clone()))
        }
        None => Ok(home.map(|h| h.join(".ssh/config")).filter(|p| p.exists())),
    }
}

/// Expands ssh's `%` tokens in a path (`%d` home, `%h` host, `%p` port,
/// `%r` remote user, `%u` local user, `%%`) and a leading `~/`.
fn expand(
    path: &str,
    home: Option<&Path>,
    host: &str,
    port: u16,
    ruser: &str,
    luser: &str,
) -> PathBuf {
    let home_s = home
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = crate::ssh::expand_tokens(path, |c| match c {
        'd' => Some(home_s.clone()),
        'h' => Some(host.to_string()),
        'p' => Some(port.to_string()),
        'r' => Some(ruser.to_string()),
        'u' => Some(luser.to_string()),
        _ => None,
    });
    if let (Some(rest), Some(h)) = (out.strip_prefix("~/"), home) {
        return h.join(rest);
    }
    PathBuf::from(out)
}

/// Fills in `opts` from the ssh config file: settings the command line did
/// not give. `local_user` is the login name used when neither names one.
pub(crate) fn apply(
    opts: &mut MountOptions,
    home: Option<&Path>,
    local_user: &str,
) -> Result<Applied, String> {
    let Some(file) = config_file(opts, home)? else {
        return Ok(Applied::default());
    };
    let f = File::open(&file).map_err(|e| format!("ssh config file {}: {e}", file.display()))?;
    let mut config = SshConfig::default();
    // `Ciphers +x`, `-x`, `^x` are relative to the defaults: libssh2's, not
    // OpenSSH's (which name methods libssh2 lacks).
    if let Ok(m) = crate::ssh::supported_methods() {
        config = config.default_algorithms(DefaultAlgorithms {
            ciphers: m.ciphers,
            kex_algorithms: m.kex,
            host_key_algorithms: m.host_key,
            mac: m.macs,
            ..DefaultAlgorithms::default()
        });
    }
    if let Some(h) = home {
        config = config.home_dir(h);
    }
    let config = config
        .parse(
            &mut BufReader::new(f),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| format!("ssh config file {}: {e}", file.display()))?;
    let alias = opts.target.host.clone();
    let p = config.query(&alias);
    let first = |name: &str| -> Option<String> {
        p.unsupported_fields
            .get(name)
            .and_then(|args| args.first())
            .map(|s| s.to_string())
    };

    // ProxyCommand / ProxyJump: only when the command line chose no route
    // (ProxyCommand=, ProxyJump= or proxy=, `none` included). The first of
    // the two in the file wins, as in ssh; `none` means direct.
    let reach = &mut opts.reach;
    if reach.proxy_command.is_none() && reach.proxy_jump.is_none() && reach.proxy.is_none() {
        if let Some(args) = p.unsupported_fields.get("proxycommand") {
            let cmd = args.join(" ");
            if !cmd.eq_ignore_ascii_case("none") {
                reach.proxy_command = Some(cmd);
            }
        } else if let Some(jump) = &p.proxy_jump {
            let hops = jump.join(",");
            if !hops.eq_ignore_ascii_case("none") {
                crate::ssh::parse_jump(&hops)
                    .map_err(|e| format!("ssh config file {}: {e} for {alias}", file.display()))?;
                reach.proxy_jump = Some(hops);
            }
        }
    }
    if reach.address_family.is_none() {
        if let Some(v) = first("addressfamily") {
            reach.address_family = Some(match v.to_ascii_lowercase().as_str() {
                "any" => crate::cli::AddressFamily::Any,
                "inet" => crate::cli::AddressFamily::Inet,
                "inet6" => crate::cli::AddressFamily::Inet6,
                _ => {
                    return Err(format!(
                        "ssh config file {}: invalid AddressFamily '{v}' for {alias}: \
                         expected inet, inet6 or any",
                        file.display()
                    ))
                }
            });
        }
    }

    if !opts.explicit.port {
        if let Some(port) = p.port {
            opts.port = port;
        }
    }
    if opts.target.user.is_none() {
        opts.target.user = p.user.clone();
    }
    let host_name = p.host_name.clone();
    let host = host_name.clone().unwrap_or_else(|| alias.clone());
    let ruser = opts
        .target
        .user
        .clone()
        .unwrap_or_else(|| local_user.to_string());
    if opts.identity_files.is_empty() {
        if let Some(files) = &p.identity_file {
            opts.identity_files = files
                .iter()
                .map(|f| {
                    expand(
                        &f.to_string_lossy(),
                        home,
                        &host,
                        opts.port,
                        &ruser,
                        local_user,
                    )
                })
                .collect();
        }
    }
    if opts.known_hosts_file.is_none() {
        if let Some(kh) = first("userknownhostsfile") {
            opts.known_hosts_file = Some(expand(&kh, home, &host, opts.port, &ruser, local_user));
        }
    }
    if !opts.explicit.host_key_policy {
        if let Some(v) = first("stricthostkeychecking") {
            opts.host_key_policy = match v.to_ascii_lowercase().as_str() {
                "yes" | "on" | "ask" => HostKeyPolicy::Strict,
                "accept-new" => HostKeyPolicy::AcceptNew,
                "no" | "off" => HostKeyPolicy::No,
                _ => {
                    return Err(format!(
                        "ssh config file {}: invalid StrictHostKeyChecking '{v}' for {alias}: \
                         expected yes, accept-new or no",
                        file.display()
                    ))
                }
            };
        }
    }
    let lists = [
        (&mut opts.algorithms.ciphers, &p.ciphers),
        (&mut opts.algorithms.kex, &p.kex_algorithms),
        (&mut opts.algorithms.host_key, &p.host_key_algorithms),
        (&mut opts.algorithms.macs, &p.mac),
    ];
    for (slot, from_file) in lists {
        if slot.is_none() && !from_file.is_default() {
            *slot = Some(from_file.algorithms().join(","));
        }
    }
    let flag = |name: &str, key: &str| -> Result<Option<bool>, String> {
        first(key)
            .map(|v| {
                parse_ssh_flag(name, &v)
                    .map_err(|e| format!("ssh config file {}: {e} for {alias}", file.display()))
            })
            .transpose()
    };
    let auth = &mut opts.ssh_auth;
    if auth.identities_only.is_none() {
        auth.identities_only = flag("IdentitiesOnly", "identitiesonly")?;
    }
    if auth.password_authentication.is_none() {
        auth.password_authentication = flag("PasswordAuthentication", "passwordauthentication")?;
    }
    if auth.batch_mode.is_none() {
        auth.batch_mode = flag("BatchMode", "batchmode")?;
    }
    if auth.kbd_interactive.is_none() {
        auth.kbd_interactive = flag(
            "KbdInteractiveAuthentication",
            "kbdinteractiveauthentication",
        )?;
    }
    if auth.pubkey_authentication.is_none() {
        auth.pubkey_authentication = p.pubkey_authentication;
    }
    if opts.global_known_hosts_files.is_none() {
        if let Some(args) = p.unsupported_fields.get("globalknownhostsfile") {
            opts.global_known_hosts_files =
                Some(if args.iter().any(|a| a.eq_ignore_ascii_case("none")) {
                    Vec::new()
                } else {
                    args.iter()
                        .map(|a| expand(a, home, &host, opts.port, &ruser, local_user))
                        .collect()
                });
        }
    }
    Ok(Applied {
        file: Some(file),
        host_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Invocation};

    fn opts(args: &[&str]) -> MountOptions {
        let mut v = vec!["coupafs".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        match parse(&v) {
            Ok(Invocation::Mount(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    /// Applies `text` as HOME/.ssh/config; returns the result, the options
    /// and HOME (removed when the returned guard drops).
    fn with_config(
        text: &str,
        args: &[&str],
    ) -> (
        Result<Applied, String>,
        MountOptions,
        PathBuf,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/config"), text).unwrap();
        let mut o = opts(args);
        let r = apply(&mut o, Some(&home), "me");
        (r, o, home, dir)
    }

    const CONFIG: &str = "\
Host coupa
    HostName 127.0.0.1
    Port 2222
    User acme
    IdentityFile ~/.ssh/coupa_key
    IdentityFile %d/.ssh/%r_%h
    UserKnownHostsFile ~/.ssh/coupa_known_hosts
    StrictHostKeyChecking accept-new

Host *
    Port 2200
    User other
";

    #[test]
    fn host_alias_fills_in_everything() {
        let (r, o, home, _d) = with_config(CONFIG, &["coupa:/x", "/m"]);
        let r = r.unwrap();
        assert_eq!(r.host_name.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.file, Some(home.join(".ssh/config")));
        assert_eq!(o.port, 2222);
        assert_eq!(o.target.user.as_deref(), Some("acme"));
        assert_eq!(o.target.host, "coupa", "the typed host stays for display");
        assert_eq!(
            o.identity_files,
            vec![
                home.join(".ssh/coupa_key"),
                home.join(".ssh/acme_127.0.0.1")
            ]
        );
        assert_eq!(
            o.known_hosts_file,
            Some(home.join(".ssh/coupa_known_hosts"))
        );
        assert_eq!(o.host_key_policy, HostKeyPolicy::AcceptNew);
    }

    #[test]
    fn command_line_wins() {
        let (r, o, _, _d) = with_config(
            CONFIG,
            &[
                "bob@coupa:/x",
                "/m",
                "-p",
                "22",
                "-o",
                "IdentityFile=/k,UserKnownHostsFile=/kh,StrictHostKeyChecking=yes",
            ],
        );
        assert_eq!(r.unwrap().host_name.as_deref(), Some("127.0.0.1"));
        assert_eq!(o.port, 22);
        assert_eq!(o.target.user.as_deref(), Some("bob"));
        assert_eq!(o.identity_files, vec![PathBuf::from("/k")]);
        assert_eq!(o.known_hosts_file, Some(PathBuf::from("/kh")));
        assert_eq!(o.host_key_policy, HostKeyPolicy::Strict);
        // -o User= counts as the command line too.
        let (_, o, _, _d) = with_config(CONFIG, &["coupa:/x", "/m", "-o", "User=carol"]);
        assert_eq!(o.target.user.as_deref(), Some("carol"));
    }

    #[test]
    fn other_hosts_get_the_wildcard_block() {
        let (r, o, _, _d) = with_config(CONFIG, &["example.com:/x", "/m"]);
        assert_eq!(r.unwrap().host_name, None);
        assert_eq!(o.port, 2200);
        assert_eq!(o.target.user.as_deref(), Some("other"));
        assert!(o.identity_files.is_empty());
        assert_eq!(o.host_key_policy, HostKeyPolicy::Strict);
    }

    #[test]
    fn none_and_missing_files() {
        let (r, o, _, _d) = with_config(CONFIG, &["coupa:/x", "/m", "-F", "none"]);
        assert_eq!(r.unwrap(), Applied::default());
        assert_eq!(o.port, 22);
        let mut o = opts(&["coupa:/x", "/m", "-F", "/nonexistent/ssh_config"]);
        assert_eq!(
            apply(&mut o, None, "me"),
            Err("ssh config file /nonexistent/ssh_config: not found".to_string())
        );
        // No ~/.ssh/config: nothing changes.
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(&["coupa:/x", "/m"]);
        assert_eq!(
            apply(&mut o, Some(dir.path()), "me"),
            Ok(Applied::default())
        );
        assert_eq!(o, opts(&["coupa:/x", "/m"]));
    }

    #[test]
    fn proxies_come_from_the_file_unless_the_command_line_chose() {
        // A ProxyCommand/ProxyJump in the file used to be refused;
        // now it is used, and the command line (including `none`) wins.
        let (r, o, _, _d) = with_config(
            "Host coupa\n  ProxyJump bob@bastion:2200\n",
            &["coupa:/x", "/m"],
        );
        r.unwrap();
        assert_eq!(o.reach.proxy_jump.as_deref(), Some("bob@bastion:2200"));
        assert_eq!(o.reach.proxy_command, None);
        let (r, o, _, _d) = with_config(
            "Host coupa\n  ProxyCommand ssh -W %h:%p bastion\n  AddressFamily inet\n",
            &["coupa:/x", "/m"],
        );
        r.unwrap();
        assert_eq!(
            o.reach.proxy_command.as_deref(),
            Some("ssh -W %h:%p bastion")
        );
        assert_eq!(
            o.reach.address_family,
            Some(crate::cli::AddressFamily::Inet)
        );
        let (r, o, _, _d) = with_config("Host coupa\n  ProxyCommand none\n", &["coupa:/x", "/m"]);
        r.unwrap();
        assert_eq!(o.reach, crate::cli::ReachOptions::default());
        // Another host's proxy does not matter.
        let (r, o, _, _d) = with_config("Host other\n  ProxyJump bastion\n", &["coupa:/x", "/m"]);
        r.unwrap();
        assert_eq!(o.reach.proxy_jump, None);
        // The command line wins, `none` and proxy= included.
        for arg in [
            "ProxyCommand=none",
            "ProxyJump=none",
            "proxy=none",
            "proxy=socks5://p:1",
        ] {
            let (r, o, _, _d) = with_config(
                "Host coupa\n  ProxyJump bastion\n",
                &["coupa:/x", "/m", "-o", arg],
            );
            r.unwrap();
            assert_ne!(o.reach.proxy_jump.as_deref(), Some("bastion"), "{arg}");
        }
        let (r, _, _, _d) = with_config("Host coupa\n  AddressFamily inet5\n", &["coupa:/x", "/m"]);
        assert!(r.unwrap_err().contains("invalid AddressFamily 'inet5'"));
    }

    #[test]
    fn bad_values_are_errors_naming_the_file() {
        let (r, _, home, _d) = with_config(
            "Host coupa\n  StrictHostKeyChecking maybe\n",
            &["coupa:/x", "/m"],
        );
        let e = r.unwrap_err();
        assert!(
            e.contains(&home.join(".ssh/config").display().to_string()),
            "{e}"
        );
        assert!(e.contains("StrictHostKeyChecking 'maybe'"), "{e}");
        let (r, _, _, _d) = with_config("Host coupa\n  Port notanumber\n", &["coupa:/x", "/m"]);
        assert!(r.unwrap_err().starts_with("ssh config file "));
    }

    #[test]
    fn security_options_come_from_the_file_unless_given() {
        let text = "Host coupa\n  Ciphers aes128-ctr,aes256-ctr\n  MACs -hmac-sha2-512\n  \
                    IdentitiesOnly yes\n  PasswordAuthentication no\n  PubkeyAuthentication no\n  \
                    BatchMode yes\n  GlobalKnownHostsFile /etc/kh1 ~/kh2\n";
        let (r, o, home, _d) = with_config(text, &["coupa:/x", "/m"]);
        r.unwrap();
        assert_eq!(
            o.algorithms.ciphers.as_deref(),
            Some("aes128-ctr,aes256-ctr")
        );
        // `-x` is resolved against libssh2's own list.
        let macs = o.algorithms.macs.clone().expect("MACs from the file");
        let supported = crate::ssh::supported_methods().expect("libssh2 lists");
        assert!(!macs.split(',').any(|m| m == "hmac-sha2-512"), "{macs}");
        assert_eq!(macs.split(',').count(), supported.macs.len() - 1, "{macs}");
        assert_eq!(o.algorithms.kex, None);
        assert_eq!(
            o.ssh_auth,
            crate::cli::SshAuthOptions {
                identities_only: Some(true),
                pubkey_authentication: Some(false),
                password_authentication: Some(false),
                batch_mode: Some(true),
                kbd_interactive: None,
            }
        );
        assert_eq!(
            o.global_known_hosts_files,
            Some(vec![PathBuf::from("/etc/kh1"), home.join("kh2")])
        );
        let (r, o, _, _d) = with_config(
            text,
            &[
                "coupa:/x",
                "/m",
                "-o",
                "Ciphers=aes256-ctr,PasswordAuthentication=yes",
            ],
        );
        r.unwrap();
        assert_eq!(o.algorithms.ciphers.as_deref(), Some("aes256-ctr"));
        assert_eq!(o.ssh_auth.password_authentication, Some(true));
        let (r, _, _, _d) = with_config(
            "Host coupa\n  IdentitiesOnly perhaps\n",
            &["coupa:/x", "/m"],
        );
        let e = r.unwrap_err();
        assert!(
            e.contains("invalid value 'perhaps' for IdentitiesOnly"),
            "{e}"
        );
    }
}
