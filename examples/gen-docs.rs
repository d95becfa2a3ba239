//! Writes the man page (doc/coupafs.1, with clap_mangen) and the bash, zsh
//! and fish completions (contrib/completions/, with clap_complete) from the
//! command line's one definition, `coupafs::cli::command()`, and its `-o`
//! table, `coupafs::cli::option_docs()`.
//!
//!   cargo run --example gen-docs            # rewrites the committed files
//!   cargo run --example gen-docs -- DIR     # writes them under DIR instead
//!
//! An example rather than a subcommand or build.rs: the generators stay out
//! of the shipped binary and its dependencies, and build.rs cannot see the
//! crate it builds. tests/cli_docs.rs includes this file to check that the
//! committed files are what it writes (scripts/gen-man.sh runs it).

use std::path::Path;

use clap_complete::Shell;
use coupafs::cli::{self, OptionDoc, OptionGroup};
use roff::{bold, italic, roman, Roff};

/// Each generated file: its path in the repository, its contents.
pub fn render_all() -> Vec<(&'static str, String)> {
    vec![
        ("doc/coupafs.1", man_page()),
        ("contrib/completions/coupafs.bash", bash()),
        ("contrib/completions/_coupafs", completion(Shell::Zsh)),
        ("contrib/completions/coupafs.fish", fish()),
    ]
}

#[allow(dead_code)] // tests/cli_docs.rs includes this file for render_all
fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").to_string());
    for (path, text) in render_all() {
        let path = Path::new(&root).join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the output directory");
        }
        std::fs::write(&path, text).expect("write a generated file");
        eprintln!("wrote {}", path.display());
    }
}

fn completion(shell: Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "coupafs", &mut buf);
    String::from_utf8(buf).expect("completions are UTF-8")
}

// ---- man page ----------------------------------------------------------

fn man_page() -> String {
    let man = clap_mangen::Man::new(cli::command())
        .title("COUPAFS")
        .section("1")
        .source(format!("coupafs {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    // Each clap_mangen section starts with the same roff preamble; keep
    // only the first.
    let preamble = Roff::new().render();
    let section = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        f(&mut buf).expect("render to memory");
        String::from_utf8(buf)
            .expect("roff is UTF-8")
            .replacen(&preamble, "", 1)
    };
    let mut out = preamble.clone();
    out += &section(&|w| man.render_title(w));
    out += &section(&|w| man.render_name_section(w));
    out += &own_sections_before_options().to_roff();
    out += &section(&|w| man.render_options_section(w));
    out += &own_sections_after_options().to_roff();
    out += &section(&|w| man.render_version_section(w));
    out
}

fn own_sections_before_options() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["SYNOPSIS"]);
    r.control("nf", []);
    for usage in cli::USAGE {
        let (name, rest) = usage.split_once(' ').unwrap_or((usage, ""));
        r.text([bold(name), roman(format!(" {rest}"))]);
    }
    r.control("fi", []);
    r.control("SH", ["DESCRIPTION"]);
    for (i, para) in cli::DESCRIPTION.split("\n\n").enumerate() {
        if i > 0 {
            r.control("PP", []);
        }
        r.text([roman(para)]);
    }
    r
}

fn own_sections_after_options() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["MOUNT OPTIONS"]);
    r.text([roman(
        "Given with -o as a comma-separated list (repeat -o or glue it: \
         -oPort=22; write a comma inside a value as \\,). In /etc/fstab they \
         are the fourth field.",
    )]);
    let docs = cli::option_docs();
    for group in OptionGroup::ALL {
        r.control("SS", [group.title()]);
        for d in docs.iter().filter(|d| d.group == group) {
            r.control("TP", []);
            r.text(option_term(d));
            r.text([roman(d.help)]);
        }
    }

    r.control("SH", ["ENVIRONMENT"]);
    for e in cli::ENVIRONMENT {
        r.control("TP", []);
        r.text([bold(e.name)]);
        r.text([roman(e.help)]);
    }

    r.control("SH", ["EXAMPLES"]);
    for e in cli::EXAMPLES {
        r.control("PP", []);
        r.text([roman(e.caption)]);
        r.control("PP", []);
        r.control("RS", []);
        r.control("nf", []);
        for line in e.command.lines() {
            r.text([roman(line)]);
        }
        r.control("fi", []);
        r.control("RE", []);
    }

    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(cli::EXIT_STATUS)]);

    r.control("SH", ["FILES"]);
    for (path, what) in cli::FILES {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*what)]);
    }

    r.control("SH", ["SEE ALSO"]);
    let refs: Vec<String> = cli::SEE_ALSO
        .iter()
        .map(|(page, section)| format!("{page}({section})"))
        .collect();
    r.text([roman(format!(
        "{}; /usr/share/doc/coupafs/OPERATIONS.md (the administrator's guide: \
         fstab, systemd, proxies, monitoring, coming from sshfs).",
        refs.join(", ")
    ))]);
    r
}

/// `-o name=VALUE` with the name bold and the placeholder italic.
fn option_term(d: &OptionDoc) -> Vec<roff::Inline> {
    let mut term = vec![bold(format!("-o {}", d.name))];
    match d.value {
        Some(v) if d.fixed => term.push(bold(format!("={v}"))),
        Some(v) => {
            term.push(roman("="));
            term.push(italic(v));
        }
        None => {}
    }
    term
}

// ---- fish ----------------------------------------------------------------

/// clap_complete's fish script, with three repairs: its "no subcommand
/// yet" test fails while an option still waits for its value (`coupafs -o
/// <TAB>` offered nothing) and takes any first word for a subcommand (so
/// nothing was offered after `coupafs HOST: DIR`), and an `-o` item after a
/// comma is completed by a function that keeps the earlier items.
fn fish() -> String {
    let clap = completion(Shell::Fish);
    let broken =
        "    argparse -s (__fish_coupafs_global_optspecs) -- $cmd 2>/dev/null\n    or return\n";
    assert!(clap.contains(broken), "clap_complete's fish script changed");
    let clap = clap.replace(
        broken,
        "    # An option still waiting for its value: no subcommand yet.\n    \
         argparse -s (__fish_coupafs_global_optspecs) -- $cmd 2>/dev/null\n    or return 0\n",
    );
    let any_word = "    if set -q argv[1]\n";
    assert!(
        clap.contains(any_word),
        "clap_complete's fish script changed"
    );
    let names: Vec<String> = cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let clap = clap.replacen(
        any_word,
        &format!(
            "    # Only these words are subcommands (the others: source, mountpoint).\n    \
             if contains -- \"$argv[1]\" {}\n",
            names.join(" ")
        ),
        1,
    );
    format!(
        "# fish completion for coupafs(1). Generated by examples/gen-docs.rs\n\
         # (scripts/gen-man.sh) from the command line's definition; do not edit.\n\
         \n{clap}\n\
         # -o items after a comma: offered whole, with the earlier items kept.\n\
         function __fish_coupafs_o_items\n    \
         set -l tok (commandline -ct)\n    \
         string match -q -- '*,*' $tok; or return\n    \
         set -l head (string replace -r -- ',[^,]*$' ',' $tok)\n    \
         for w in {}\n        \
         echo $head$w\n    \
         end\n\
         end\n\
         complete -c coupafs -s o -r -f -a '(__fish_coupafs_o_items)'\n",
        o_words().join(" ")
    )
}

/// The `-o` words completions offer: `name`, `name=` or `name=value`.
fn o_words() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for d in cli::option_docs().iter().filter(listed) {
        let w = d.completion();
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
}

/// Options completions offer: not the refused ones, nor `x-*`.
fn listed(d: &&OptionDoc) -> bool {
    d.group != OptionGroup::Refused && !d.name.contains('*')
}

// ---- bash ----------------------------------------------------------------

/// clap_complete's bash script, wrapped: clap's completes the flags, the
/// subcommands and the `-o` option names, but treats each `-o` argument as
/// one word, so it cannot complete the item after a comma (`-o
/// ro,allow_o<TAB>`) or a value after `=` (bash splits words at `=`). The
/// wrapper does those from the same `-o` table and hands everything else
/// to clap's function.
fn bash() -> String {
    let clap = completion(Shell::Bash);
    // Rename clap's function and drop its registration (the block at
    // the end that runs `complete`): the wrapper registers itself.
    let register = clap
        .rfind("\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4")
        .expect("clap_complete's bash script ends with its `complete` block");
    let clap = clap[..register].replace("_coupafs() {", "_coupafs_clap() {");
    let docs = cli::option_docs();
    let words = o_words();
    let mut cases = String::new();
    let mut seen: Vec<String> = Vec::new();
    for d in docs.iter().filter(listed) {
        let key = d.name.to_ascii_lowercase();
        if d.value.is_none() || seen.contains(&key) {
            continue;
        }
        let all_choices: Vec<&str> = docs
            .iter()
            .filter(|o| o.name == d.name && o.group != OptionGroup::Refused)
            .flat_map(|o| o.choices())
            .collect();
        let action = if d.takes_path() {
            let kind = if d.value == Some("DIR") { "-d" } else { "-f" };
            format!("compgen -P \"$name=\" {kind} -- \"$value\"")
        } else if !all_choices.is_empty() {
            format!(
                "compgen -P \"$name=\" -W \"{}\" -- \"$value\"",
                all_choices.join(" ")
            )
        } else {
            continue;
        };
        seen.push(key.clone());
        cases.push_str(&format!("        {key}) {action} ;;\n"));
    }
    format!(
        "# bash completion for coupafs(1)                           -*- shell-script -*-\n\
         #\n\
         # Generated by examples/gen-docs.rs (scripts/gen-man.sh) from the command\n\
         # line's definition; do not edit. Installed as\n\
         # /usr/share/bash-completion/completions/coupafs.\n\
         \n\
         {clap}\n\
         {WRAPPER_HEAD}\
         _coupafs_o_words=\"{words}\"\n\
         \n\
         # Completions for one -o item; $1 is the item typed so far. Prints\n\
         # full items, one per line.\n\
         _coupafs_opt_item() {{\n\
         \x20   local item=$1 name value\n\
         \x20   if [[ $item == *=* ]]; then\n\
         \x20       name=${{item%%=*}}\n\
         \x20       value=${{item#*=}}\n\
         \x20       case ${{name,,}} in\n\
         {cases}\
         \x20       esac\n\
         \x20       return\n\
         \x20   fi\n\
         \x20   compgen -W \"$_coupafs_o_words\" -- \"$item\"\n\
         }}\n\
         {WRAPPER_TAIL}",
        words = words.join(" "),
    )
}

const WRAPPER_HEAD: &str = r#"
# ---- -o items: after a comma, and values after '=' ----------------------
"#;

const WRAPPER_TAIL: &str = r#"
# $1: the -o argument typed so far (comma-separated items); $2: a prefix
# (-o when glued). Completes the last item, keeping the earlier ones.
_coupafs_complete_opts() {
    local arg=$1 prefix=$2 head="" last=$1
    if [[ $arg == *,* ]]; then
        head=${arg%,*},
        last=${arg##*,}
    fi
    local c
    while IFS= read -r c; do
        [[ -n $c ]] && printf '%s\n' "$prefix$head$c"
    done < <(_coupafs_opt_item "$last")
}

_coupafs() {
    # bash splits words at = and : (COMP_WORDBREAKS); for -o, work on the
    # whitespace-separated words of the line instead, then hand back only
    # the part bash calls the current word.
    local cur=${COMP_WORDS[COMP_CWORD]}
    local line=${COMP_LINE:0:COMP_POINT}
    local raw=${line##*[[:space:]]}
    local before=${line%"$raw"}
    local -a words
    read -r -a words <<<"$before"
    local prev=${words[${#words[@]}-1]}
    local cands=() c
    if [[ $prev == -o ]]; then
        mapfile -t cands < <(_coupafs_complete_opts "$raw" "")
    elif [[ $raw == -o?* ]]; then
        mapfile -t cands < <(_coupafs_complete_opts "${raw#-o}" "-o")
    else
        _coupafs_clap "$@"
        return
    fi
    local strip=$((${#raw} - ${#cur}))
    COMPREPLY=()
    for c in "${cands[@]}"; do
        [[ -n $c ]] && COMPREPLY+=("${c:strip}")
    done
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=,:] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _coupafs -o nosort -o bashdefault -o default coupafs mount.coupafs mount.fuse.coupafs
else
    complete -F _coupafs -o bashdefault -o default coupafs mount.coupafs mount.fuse.coupafs
fi
"#;
