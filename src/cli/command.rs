//! The command line's one definition, as a clap `Command`: what `parse`
//! parses with, and what the `--help` text, the man page and the shell
//! completions (examples/gen-docs.rs) are made from.
//!
//! clap stops at the first error, but sshfs's command line lets `-h`/`-V`
//! win anywhere and reports problems left to right (an unknown flag after
//! a bad `-o` item reports the item). So [`scan`] first walks argv with
//! this definition's flags, as getopt would, only to find `-h`/`-V` and
//! the first unknown option; clap then parses the arguments before it.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Arg, ArgAction, Command, ValueHint};

use super::optdoc;

/// The first lines of `--help` and the man page's NAME.
pub const ABOUT: &str = "mount a Coupa SFTP exchange as a local filesystem";

/// The synopsis, one form per line (help and man page).
pub const USAGE: [&str; 3] = [
    "coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]",
    "coupafs check [--json] [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]",
    "coupafs status [MOUNTPOINT]",
];

/// DESCRIPTION, paragraphs separated by blank lines.
pub const DESCRIPTION: &str = "\
Mounts the Coupa SFTP exchange HOST:REMOTE_DIR on MOUNTPOINT; the command \
line follows sshfs. Uploads are atomic: a file is written under a temporary \
name and renamed to its real name when it is closed, so Coupa never picks up \
a partial file.

\"coupafs check\" logs in without mounting, checks Coupa's folders, write \
access, waiting files and file rules; it prints the overall state first \
(\"COUPAFS OK|WARNING|CRITICAL - ...\", with performance data after \"|\"), \
then one OK/WARN/FAIL line per check, and exits 0 (all OK), 1 (warnings), \
2 (failures) or 3 (UNKNOWN: usage error, unusable options), as monitoring \
plugins do; --json prints one JSON object instead.

\"coupafs status\" prints the state of every mount (or of MOUNTPOINT) from \
its status file, \"stale\" when its process is gone; it exits 0 (all \
connected), 1 (not connected or stale) or 3 (no such mount).

Options may come before, between or after the arguments; -o may be repeated \
or glued (-oPort=22); write a comma inside a value as \\,. ssh's own option \
names (Port, User, IdentityFile, ...) are case-insensitive, as in ssh; all \
other option names are lowercase.

Run as mount.coupafs or mount.fuse.coupafs (mount(8) does, for the types \
coupafs and fuse.coupafs), the first argument is always the source, and \
mount(8)'s flags -s -f -n -v and -t TYPE are ignored. Without -f the \
command returns once the mount is live (exit 0) or has failed (exit 1, the \
reason on stderr); the daemon then logs to log_file= if given, else to \
syslog.";

/// The `-o` argument's value: one comma-separated list, kept as typed.
/// Parsing it is options.rs's job (in argv order, with its own messages);
/// this parser only tells clap, and so the help, man page and completions,
/// which option names there are.
#[derive(Clone, Copy, Debug)]
pub struct MountOptionList;

impl TypedValueParser for MountOptionList {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &Command,
        _arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        // argv reaches clap as Strings (main.rs), so this is lossless.
        Ok(value.to_string_lossy().into_owned())
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let mut seen = Vec::new();
        let values = optdoc::all()
            .into_iter()
            .filter(|d| d.group != optdoc::Group::Refused && !d.name.contains('*'))
            .filter_map(move |d| {
                let word = d.completion();
                if seen.contains(&word) {
                    return None;
                }
                seen.push(word.clone());
                // clap_complete's fish script breaks on a double quote in
                // a value's help (it quotes the list with them).
                Some(PossibleValue::new(word).help(d.help.replace('"', "")))
            });
        Some(Box::new(values))
    }
}

/// The command line as users and mount(8) write it. `helper`: argv[0] is
/// `mount.coupafs`/`mount.fuse.coupafs`, so there are no subcommands and
/// mount(8)'s `-n` and `-t TYPE` are accepted too.
pub fn build(helper: bool) -> Command {
    define(helper, !helper)
}

/// The definition; `subcommands: false` leaves `check` and `status` out
/// (`parse` does when they are not the first word, so that a mount point
/// named `check` stays one).
pub(super) fn define(helper: bool, subcommands: bool) -> Command {
    let mut cmd = Command::new("coupafs")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .long_about(DESCRIPTION)
        .override_usage(USAGE.join("\n       "))
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .term_width(80)
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("print this help and exit"),
        )
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("print the version and exit"),
        )
        .args(option_args())
        .arg(json_arg().hide(true))
        .arg(target_arg())
        .arg(
            Arg::new("mountpoint")
                .value_name("MOUNTPOINT")
                .value_hint(ValueHint::DirPath)
                .help("local directory to mount on"),
        )
        .arg(extra_arg());
    if helper {
        cmd = cmd
            .arg(
                Arg::new("nomtab")
                    .short('n')
                    .action(ArgAction::Count)
                    .hide(true),
            )
            .arg(
                Arg::new("type")
                    .short('t')
                    .action(ArgAction::Append)
                    .allow_hyphen_values(true)
                    .hide(true),
            );
    }
    if subcommands {
        cmd = cmd
            .subcommand(
                Command::new("check")
                    .about("log in without mounting and check the exchange (monitoring plugin)")
                    .override_usage(USAGE[1])
                    .disable_help_flag(true)
                    .args(option_args())
                    .arg(json_arg())
                    .arg(target_arg())
                    .arg(extra_arg()),
            )
            .subcommand(
                Command::new("status")
                    .about("print the state of every mount, or of MOUNTPOINT")
                    .override_usage(USAGE[2])
                    .disable_help_flag(true)
                    .arg(
                        Arg::new("mountpoint")
                            .value_name("MOUNTPOINT")
                            .value_hint(ValueHint::DirPath)
                            .help("the mount to show"),
                    )
                    .arg(extra_arg()),
            );
    }
    cmd
}

/// The full definition (with `check` and `status`): for the man page and
/// the completions.
pub fn command() -> Command {
    build(false)
}

/// Options the mount and `check` share. Every occurrence is kept
/// (`Append`/`Count`) so that `parse` can apply them in argv order: later
/// ones win, and the first problem left to right is the one reported.
fn option_args() -> Vec<Arg> {
    let flag = |id: &'static str, short: char, help: &'static str| {
        Arg::new(id)
            .short(short)
            .action(ArgAction::Count)
            .help(help)
    };
    let value = |id: &'static str, short: char, name: &'static str, help: &'static str| {
        Arg::new(id)
            .short(short)
            .value_name(name)
            .value_hint(ValueHint::Other)
            .action(ArgAction::Append)
            // getopt takes the next argument whatever it looks like.
            .allow_hyphen_values(true)
            .help(help)
    };
    vec![
        value(
            "opts",
            'o',
            "OPT[,OPT...]",
            "mount options, comma-separated (see MOUNT OPTIONS)",
        )
        .value_parser(MountOptionList)
        .hide_possible_values(true),
        value("port", 'p', "PORT", "server port (same as -o Port=PORT)"),
        value(
            "ssh_config",
            'F',
            "FILE",
            "ssh client configuration instead of ~/.ssh/config; none reads none",
        )
        .value_hint(ValueHint::FilePath),
        flag("foreground", 'f', "stay in the foreground"),
        flag("debug", 'd', "print debug messages; implies -f").long("debug"),
        flag("single", 's', "single-threaded, same as -o threads=1"),
        flag(
            "compression",
            'C',
            "same as -o Compression=yes: accepted; the stream is sent uncompressed",
        ),
        flag(
            "verbose",
            'v',
            "same as -o sshfs_verbose: accepted (no ssh program); see sftp_debug",
        ),
        // sshfs's -1 (ssh_protocol=1): refused with the reason.
        flag("ssh1", '1', "").hide(true),
    ]
}

fn json_arg() -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::Count)
        .help("check: print one JSON object instead of the plugin text")
}

fn target_arg() -> Arg {
    Arg::new("target")
        .value_name("[USER@]HOST:[REMOTE_DIR]")
        .value_hint(ValueHint::Hostname)
        .help("the SFTP account and directory, as in sshfs")
}

/// Surplus arguments, reported by `parse` with its own message.
fn extra_arg() -> Arg {
    Arg::new("extra")
        .num_args(1..)
        .action(ArgAction::Append)
        .hide(true)
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) help: bool,
    pub(super) version: bool,
    /// The first unknown option: its position in the arguments, as typed.
    pub(super) unknown: Option<(usize, String)>,
    /// The first argument that is neither an option nor its value, before
    /// any `--`: a subcommand's name if it is one.
    pub(super) first_word: Option<String>,
}

/// Walks `args` (argv without argv[0]) as getopt would with `cmd`'s flags
/// and those of its subcommands: `-h`/`-V` anywhere before `--` (not as
/// another option's value) and the first option no one defines.
pub(super) fn scan(cmd: &Command, args: &[String]) -> Scan {
    let all: Vec<&Arg> = cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()))
        .collect();
    let takes_value = |a: &Arg| {
        !matches!(
            a.get_action(),
            ArgAction::Count | ArgAction::Help | ArgAction::Version
        )
    };
    let mut s = Scan::default();
    let unknown = |s: &mut Scan, i: usize, arg: &str| {
        s.unknown.get_or_insert((i, arg.to_string()));
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            break;
        }
        if arg == "-" || !arg.starts_with('-') {
            s.first_word.get_or_insert_with(|| arg.clone());
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match all.iter().find(|a| a.get_long() == Some(long)) {
                Some(a) if a.get_id() == "help" => s.help = true,
                Some(a) if a.get_id() == "version" => s.version = true,
                Some(_) => {}
                None => unknown(&mut s, i - 1, arg),
            }
            continue;
        }
        for (pos, c) in arg[1..].char_indices() {
            match all.iter().find(|a| a.get_short() == Some(c)) {
                None => {
                    unknown(&mut s, i - 1, arg);
                    break;
                }
                Some(a) if takes_value(a) => {
                    // The rest of the argument, or the next one.
                    if arg[1 + pos + c.len_utf8()..].is_empty() {
                        i += 1;
                    }
                    break;
                }
                Some(a) if a.get_id() == "help" => s.help = true,
                Some(a) if a.get_id() == "version" => s.version = true,
                Some(_) => {}
            }
        }
    }
    s
}
