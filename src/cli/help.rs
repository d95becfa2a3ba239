//! The `-h` text, a short man page made from the clap definition
//! (command.rs) and the `-o` list (optdoc.rs); and the sections both the
//! help and the man page (examples/gen-docs.rs) show: ENVIRONMENT,
//! EXAMPLES, and for the man page EXIT STATUS, FILES and SEE ALSO.

use super::command::{self, ABOUT, DESCRIPTION, USAGE};
use super::optdoc::{self, Group};

/// An environment variable coupafs reads.
#[derive(Clone, Copy, Debug)]
pub struct EnvVar {
    pub name: &'static str,
    pub help: &'static str,
}

/// A captioned command line.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    pub caption: &'static str,
    /// One or more command lines, one per line.
    pub command: &'static str,
}

pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: "COUPAFS_PASSWORD",
        help: "login password, instead of password_file=; erased from the process \
               environment at start",
    },
    EnvVar {
        name: "SSH_AUTH_SOCK",
        help: "ssh-agent socket; its keys are offered",
    },
    EnvVar {
        name: "COUPAFS_LOG",
        help: "log filter, e.g. debug or coupafs=debug",
    },
    EnvVar {
        name: "all_proxy, https_proxy",
        help: "proxy URL, used only with -o proxy=env",
    },
    EnvVar {
        name: "no_proxy",
        help: "hosts reached directly despite -o proxy=",
    },
    EnvVar {
        name: "NOTIFY_SOCKET",
        help: "set by systemd (Type=notify): READY=1 is sent once the mount is live",
    },
];

pub const EXAMPLES: &[Example] = &[
    Example {
        caption: "Mount with a key, then unmount:",
        command: "coupafs -o IdentityFile=$HOME/.ssh/coupa user@host:/ /mnt/coupa\n\
                  fusermount3 -u /mnt/coupa",
    },
    Example {
        caption: "/etc/fstab line (mounts at boot even while the server is down):",
        command: "user@host:/ /mnt/coupa fuse.coupafs _netdev,nofail,delay_connect,\
                  IdentityFile=/etc/coupafs/id_rsa,UserKnownHostsFile=/etc/coupafs/known_hosts 0 0",
    },
    Example {
        caption: "Check the connection and login without mounting:",
        command: "coupafs check -p 2222 -o IdentityFile=$HOME/.ssh/coupa user@host:/",
    },
    Example {
        caption: "Show the state of every mount:",
        command: "coupafs status",
    },
];

/// The man page's EXIT STATUS.
pub const EXIT_STATUS: &str = "\
A mount exits 0 once the mount is live (without -f) or after a clean unmount \
(with -f), and 1 when it cannot mount: bad usage, an unreadable or \
group/other-readable secret file, a missing mountpoint, an unreachable \
server, a refused login or host key. The reason is printed on stderr. \
\"coupafs check\" exits 0, 1, 2 or 3 (OK, warnings, failures, UNKNOWN: a \
usage error or options it cannot use); its first line is the overall state. \
\"coupafs status\" exits 0 when every mount shown is connected, 1 when one is \
not or its status file is stale, 3 when there is no such mount.";

/// The man page's FILES: path, what it is.
pub const FILES: &[(&str, &str)] = &[
    (
        "~/.ssh/config",
        "ssh client configuration, read unless -F names another (or none).",
    ),
    (
        "~/.ssh/known_hosts",
        "host keys, unless -o UserKnownHostsFile= names another file.",
    ),
    (
        "/run/coupafs/",
        "status files of running mounts (root); $XDG_RUNTIME_DIR/coupafs/, else \
         /tmp/coupafs-UID/, for other users. Each names its mount's PID; one whose \
         process is gone is stale and replaced by the next mount.",
    ),
];

/// The man page's SEE ALSO: (page, section).
pub const SEE_ALSO: &[(&str, &str)] = &[
    ("sshfs", "1"),
    ("ssh_config", "5"),
    ("fstab", "5"),
    ("mount", "8"),
    ("mount.fuse3", "8"),
    ("fusermount3", "1"),
    ("systemd.mount", "5"),
];

const WIDTH: usize = 80;
/// Where the help column of the `-o` list starts.
const COLUMN: usize = 31;

/// The `-h` text, a short man page.
pub(crate) fn help_text() -> String {
    let mut h = format!("NAME\n    coupafs - {ABOUT}\n\nSYNOPSIS\n");
    for u in USAGE {
        h.push_str(&format!("    {u}\n"));
    }
    h.push_str("\nDESCRIPTION\n");
    for para in DESCRIPTION.split("\n\n") {
        h.push_str(&wrap(para, 4, 4));
        h.push('\n');
    }
    h.push_str("OPTIONS\n");
    // clap renders the flags from the definition; its template is only
    // the option list.
    let flags = command::command()
        .help_template("{options}")
        .render_help()
        .to_string();
    for line in flags.lines() {
        h.push_str(format!("  {line}").trim_end());
        h.push('\n');
    }
    h.push_str("\nMOUNT OPTIONS (-o)\n");
    h.push_str(&mount_options_text());
    h.push_str("\nENVIRONMENT\n");
    for e in ENVIRONMENT {
        h.push_str(&entry(e.name, e.help));
    }
    h.push_str("\nEXAMPLES\n");
    for (i, e) in EXAMPLES.iter().enumerate() {
        if i > 0 {
            h.push('\n');
        }
        h.push_str(&format!("    {}\n", e.caption));
        for line in e.command.lines() {
            h.push_str(&format!("        {line}\n"));
        }
    }
    h
}

/// The `-o` list by group: an aligned entry per option, or for groups
/// whose options all mean the same, a wrapped list of names.
fn mount_options_text() -> String {
    let docs = optdoc::all();
    let mut s = String::new();
    for group in Group::ALL {
        let in_group: Vec<_> = docs.iter().filter(|d| d.group == group).collect();
        s.push_str(&format!("  {}\n", group.title()));
        if group.names_only() {
            let mut names: Vec<String> = Vec::new();
            for d in &in_group {
                // `name=` says a value follows.
                let n = match d.value {
                    Some(_) if d.fixed => d.usage(),
                    Some(_) => format!("{}=", d.name),
                    None => d.name.to_string(),
                };
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            s.push_str(&wrap(&names.join(", "), 4, 4));
        } else {
            for d in in_group {
                s.push_str(&entry(&format!("-o {}", d.usage()), d.help));
            }
        }
    }
    s.push_str(&wrap(
        "Each accepted sshfs option logs one info line at mount saying why \
         coupafs does not need it; a refused one fails with the reason and \
         what to use instead (doc/OPERATIONS.md, \"Coming from sshfs\").",
        4,
        4,
    ));
    s
}

/// `    NAME                   help...`, the help wrapped at `COLUMN`;
/// on the next line when NAME is too long.
fn entry(name: &str, help: &str) -> String {
    let head = format!("    {name}");
    let body = wrap(help, COLUMN, COLUMN);
    if head.len() + 1 < COLUMN {
        format!("{head}{}", &body[head.len()..])
    } else {
        format!("{head}\n{body}")
    }
}

/// `text` wrapped at WIDTH, the first line indented `first`, the others
/// `rest` spaces; ends with a newline.
fn wrap(text: &str, first: usize, rest: usize) -> String {
    let mut out = String::new();
    let mut line = " ".repeat(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}
