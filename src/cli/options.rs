//! The `-o` option table: each `key[=value]` applied to `MountOptions`,
//! sshfs and ssh spellings alike, and the value parsers they share.

use std::path::PathBuf;
use std::time::Duration;

use super::compat::{self, Arg, Support};
use super::{
    err, AddressFamily, HostKeyPolicy, MountOptions, NoOpOption, ProxySetting, UsageError,
    MAX_CONNS, MAX_THREADS,
};

/// `no_proxy`'s comma (or space) separated list.
pub(crate) fn split_no_proxy(v: &str) -> Vec<String> {
    v.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// State that spans several `-o` options and is resolved at the end.
#[derive(Default)]
pub(super) struct OptState {
    /// `-o User=`; used only when the target has no `USER@`.
    pub(super) user: Option<String>,
    /// `cache=no` seen (and not undone by a later `cache=yes`).
    pub(super) cache_disabled: bool,
}

pub(super) fn set_debug(o: &mut MountOptions) {
    o.debug = true;
    o.foreground = true;
}

/// Applies one `key[=value]` option.
pub(super) fn apply_option(
    o: &mut MountOptions,
    st: &mut OptState,
    raw: &str,
) -> Result<(), UsageError> {
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

    // sshfs's options: the compatibility table settles its no-ops and
    // refusals here; what it marks honoured is parsed below.
    if let Some(row) = compat::lookup(key, val).map_err(UsageError)? {
        match row.support {
            Support::Honoured => {}
            Support::NoOp(why) => {
                match row.arg {
                    Arg::Flag => flag()?,
                    Arg::Value => {
                        value()?;
                    }
                }
                ignore(o);
                if !o.no_ops.iter().any(|n| n.option == row.name) {
                    o.no_ops.push(NoOpOption {
                        option: row.name,
                        why,
                    });
                }
                return Ok(());
            }
            Support::Refused { why, instead } => {
                return err(format!(
                    "option '{key}' is not supported: {why}; use {instead}"
                ))
            }
        }
    }

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
            o.no_default_permissions = false;
        }
        // The explicit opt-out of the kernel's mode checks that
        // `allow_other` implies (see `cli::parse`).
        "no_default_permissions" => {
            flag()?;
            o.default_permissions = false;
            o.no_default_permissions = true;
        }
        "uid" => o.uid = Some(parse_id(key, value()?)?),
        "gid" => o.gid = Some(parse_id(key, value()?)?),
        "umask" => o.umask = Some(parse_umask(key, value()?)?),
        "cache_timeout" | "dcache_timeout" | "entry_timeout" | "attr_timeout" => {
            o.cache_timeout = parse_secs(key, value()?)?;
        }
        // sshfs's `dir_cache` is its name for the same metadata cache.
        "cache" | "dir_cache" => st.cache_disabled = !parse_yes_no(key, value()?)?,
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
        // The URL may hold a password: errors show it masked.
        "proxy" => {
            let v = value()?;
            o.reach.proxy = Some(match v {
                "none" => ProxySetting::None,
                "env" => ProxySetting::Env,
                url => ProxySetting::Url(crate::ssh::parse_proxy_url(url).map_err(UsageError)?),
            });
        }
        "no_proxy" => o.reach.no_proxy = Some(split_no_proxy(value()?)),
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
        // `no_contain_symlinks` is sshfs's spelling.
        "nocontain_symlinks" | "no_contain_symlinks" => {
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
        "sftp_debug" => {
            flag()?;
            o.sftp_debug = true;
        }

        // fusermount3 stays behind and unmounts when the daemon dies.
        "auto_unmount" => {
            flag()?;
            o.auto_unmount = true;
        }
        "delay_connect" => {
            flag()?;
            o.delay_connect = true;
        }
        "log_file" => o.log_file = Some(parse_path(key, value()?)?),
        "nodiratime" => {
            flag()?;
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

        _ => return apply_ssh_option(o, st, key, val),
    }
    Ok(())
}

/// ssh's own options: names are case-insensitive, as in ssh(1) and sshfs.
fn apply_ssh_option(
    o: &mut MountOptions,
    st: &mut OptState,
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
        // ssh takes several paths separated by spaces; `none` reads none.
        "globalknownhostsfile" => {
            let v = value()?;
            let paths: Vec<PathBuf> = v.split_whitespace().map(PathBuf::from).collect();
            if paths.is_empty() {
                return err(format!("invalid value '' for {key}: expected a path"));
            }
            o.global_known_hosts_files = Some(if v.eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                paths
            });
        }
        "ciphers" => o.algorithms.ciphers = Some(parse_alg_list(key, value()?)?),
        "kexalgorithms" => o.algorithms.kex = Some(parse_alg_list(key, value()?)?),
        "hostkeyalgorithms" => o.algorithms.host_key = Some(parse_alg_list(key, value()?)?),
        "macs" => o.algorithms.macs = Some(parse_alg_list(key, value()?)?),
        "identitiesonly" => o.ssh_auth.identities_only = Some(parse_ssh_flag(key, value()?)?),
        "pubkeyauthentication" => {
            o.ssh_auth.pubkey_authentication = Some(parse_ssh_flag(key, value()?)?)
        }
        "passwordauthentication" => {
            o.ssh_auth.password_authentication = Some(parse_ssh_flag(key, value()?)?)
        }
        // coupafs never prompts, so BatchMode=yes is what it always does.
        "batchmode" => o.ssh_auth.batch_mode = Some(parse_ssh_flag(key, value()?)?),
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
        // ssh's `none` disables (and keeps the ssh config file's away).
        "proxycommand" => {
            let v = value()?;
            if v.trim().is_empty() {
                return err(format!(
                    "invalid value '' for {key}: expected a command or none"
                ));
            }
            o.reach.proxy_command = Some(v.to_string());
        }
        "proxyjump" => {
            let v = value()?;
            if !v.eq_ignore_ascii_case("none") {
                crate::ssh::parse_jump(v)
                    .map_err(|e| UsageError(format!("{e} (expected [USER@]HOST[:PORT])")))?;
            }
            o.reach.proxy_jump = Some(v.to_string());
        }
        "addressfamily" => {
            let v = value()?;
            o.reach.address_family = Some(match v.to_ascii_lowercase().as_str() {
                "any" => AddressFamily::Any,
                "inet" => AddressFamily::Inet,
                "inet6" => AddressFamily::Inet6,
                _ => {
                    return err(format!(
                        "invalid value '{v}' for {key}: expected inet, inet6 or any"
                    ))
                }
            });
        }
        "kbdinteractiveauthentication" | "challengeresponseauthentication" => {
            o.ssh_auth.kbd_interactive = Some(parse_ssh_flag(key, value()?)?)
        }
        // Only `none` reaches here (compat.rs settles the other values):
        // no agent keys, which is what IdentitiesOnly=yes means to coupafs.
        "identityagent" => {
            value()?;
            o.ssh_auth.identities_only = Some(true);
        }
        _ => return err(format!("unknown option '{key}' (see coupafs -h)")),
    }
    Ok(())
}

/// ssh's yes/no flags (readconf.c: case-insensitive, `true`/`false` too).
pub(crate) fn parse_ssh_flag(name: &str, v: &str) -> Result<bool, UsageError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => err(format!(
            "invalid value '{v}' for {name}: expected yes or no"
        )),
    }
}

/// An ssh_config algorithm list: comma-separated names, optionally led by
/// `+`, `-` or `^`. Only its form is checked here; whether libssh2 supports
/// each name is checked when connecting.
pub(crate) fn parse_alg_list(name: &str, v: &str) -> Result<String, UsageError> {
    let body = v.strip_prefix(['+', '-', '^']).unwrap_or(v);
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "@.-_".contains(c);
    let names: Vec<&str> = body.split(',').collect();
    if names
        .iter()
        .any(|n| n.is_empty() || !n.chars().all(ok_char))
    {
        return err(format!(
            "invalid value '{v}' for {name}: expected a comma-separated list of \
             algorithm names, optionally starting with +, - or ^"
        ));
    }
    Ok(v.to_string())
}

/// Only ASCII digits (no sign, no spaces), fitting in u64.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(super) fn parse_port(name: &str, v: &str) -> Result<u16, UsageError> {
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

pub(super) fn parse_path(name: &str, v: &str) -> Result<PathBuf, UsageError> {
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
