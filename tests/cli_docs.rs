//! The shipped command-line documentation: the committed man page and
//! bash/zsh/fish completions are what examples/gen-docs.rs makes from the
//! clap definition today, they name every option, the completions work in
//! their shells, and the Debian package carries them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

// The generator itself, so the comparison uses exactly its output.
#[allow(dead_code)]
#[path = "../examples/gen-docs.rs"]
mod gen_docs;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `shell -c script`; a shell that is missing fails the test with
/// what to install (scripts/install-deps.sh installs zsh and fish).
fn shell(shell: &str, script: &str) -> String {
    let out = Command::new(shell)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{shell}: {e} (run scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{shell} -c {script:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn committed_man_page_and_completions_are_generated_from_the_definition() {
    let files = gen_docs::render_all();
    assert_eq!(files.len(), 4);
    for (path, want) in files {
        let got = read(path);
        assert!(
            got == want,
            "{path} is not what the definition gives: run scripts/gen-man.sh"
        );
    }
}

/// Every `-o NAME` the `--help` text documents in its option column.
fn documented_options() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_coupafs"))
        .arg("--help")
        .output()
        .expect("run coupafs --help");
    assert!(out.status.success());
    let help = text(&out.stdout);
    let mut names = Vec::new();
    for line in help.lines() {
        let Some(rest) = line.trim_start().strip_prefix("-o ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    for expected in ["Port", "ssh_config", "gid", "rw", "debug", "password_file"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    names
}

#[test]
fn man_page_and_completions_cover_every_option() {
    let man = read("doc/coupafs.1");
    assert!(
        man.contains(env!("CARGO_PKG_VERSION")),
        "man page is for this version"
    );
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "MOUNT OPTIONS",
        "ENVIRONMENT",
        "EXAMPLES",
        "EXIT STATUS",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(
            man.contains(&format!(".SH \"{section}\""))
                || man.contains(&format!(".SH {section}\n")),
            "man page lacks {section}"
        );
    }
    let completions = [
        "contrib/completions/coupafs.bash",
        "contrib/completions/_coupafs",
        "contrib/completions/coupafs.fish",
    ]
    .map(|p| (p, read(p)));
    for name in documented_options() {
        assert!(man.contains(&name), "doc/coupafs.1 lacks {name}");
        for (path, c) in &completions {
            assert!(c.contains(&name), "{path} lacks {name}");
        }
    }
    // Every -o option, the ignored and refused ones too.
    for d in coupafs::cli::option_docs() {
        assert!(
            man.contains(&format!("\\-o {}", d.name.replace('-', "\\-"))),
            "man page lacks -o {}",
            d.name
        );
    }
}

#[test]
fn man_page_renders_without_warnings() {
    let page = root().join("doc/coupafs.1");
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff (package groff-base, which man-db needs)");
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "", "groff warnings");
}

/// Completes `line` (ending where the cursor is) with the bash script, as
/// bash calls a completion function: COMP_WORDS split at bash's word
/// breaks, and the command, the current and the previous word as $1-$3.
fn bash_complete(words: &[&str], line: &str) -> Vec<String> {
    let script = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
         _coupafs coupafs \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        root().join("contrib/completions/coupafs.bash").display(),
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        words.len() - 1,
        line.len()
    );
    shell("bash", &script)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_option_names_values_and_items_after_a_comma() {
    assert_eq!(
        bash_complete(&["coupafs", "-o", "StrictHost"], "coupafs -o StrictHost"),
        vec!["StrictHostKeyChecking="]
    );
    // bash splits `NAME=VALUE` into three words.
    assert_eq!(
        bash_complete(
            &["coupafs", "-o", "StrictHostKeyChecking", "=", "acc"],
            "coupafs -o StrictHostKeyChecking=acc"
        ),
        vec!["accept-new"]
    );
    assert_eq!(
        bash_complete(&["coupafs", "-o", "ro,allow_o"], "coupafs -o ro,allow_o"),
        vec!["ro,allow_other"]
    );
    assert_eq!(
        bash_complete(&["coupafs", "-oro,allow_r"], "coupafs -oro,allow_r"),
        vec!["-oro,allow_root"]
    );
    // After the positionals and in check, too.
    assert_eq!(
        bash_complete(
            &["coupafs", "check", "h:", "-o", "delay_c"],
            "coupafs check h: -o delay_c"
        ),
        vec!["delay_connect"]
    );
    let flags = bash_complete(&["coupafs", "-"], "coupafs -");
    for f in ["-o", "-p", "-f", "-d", "-F", "--help", "--version"] {
        assert!(flags.iter().any(|x| x == f), "{f} in {flags:?}");
    }
    assert_eq!(
        bash_complete(&["coupafs", "sta"], "coupafs sta"),
        vec!["status"]
    );
    let check = bash_complete(&["coupafs", "check", "--"], "coupafs check --");
    assert!(check.iter().any(|x| x == "--json"), "{check:?}");
}

#[test]
fn fish_completes_option_names_and_items_after_a_comma() {
    let script = root().join("contrib/completions/coupafs.fish");
    let complete = |line: &str| -> Vec<String> {
        shell(
            "fish",
            &format!("source {}; complete -C '{line}'", script.display()),
        )
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect()
    };
    assert_eq!(
        complete("coupafs -o StrictHost"),
        vec!["StrictHostKeyChecking="]
    );
    assert_eq!(complete("coupafs -o ro,allow_o"), vec!["ro,allow_other"]);
    assert_eq!(
        complete("coupafs h: /mnt -o delay_c"),
        vec!["delay_connect"]
    );
    assert_eq!(
        complete("coupafs check -o IdentityF"),
        vec!["IdentityFile="]
    );
    assert!(complete("coupafs check --").contains(&"--json".to_string()));
    assert_eq!(complete("coupafs sta"), vec!["status"]);
}

#[test]
fn zsh_loads_the_completion() {
    let dir = root().join("contrib/completions");
    // compinit finds _coupafs on fpath and binds it to coupafs.
    let out = shell(
        "zsh",
        &format!(
            "fpath=({} $fpath); autoload -U compinit; compinit -u -D; \
             autoload -U +X _coupafs && print -r -- ${{_comps[coupafs]}}",
            dir.display()
        ),
    );
    assert_eq!(out.trim(), "_coupafs");
    // And the script parses.
    shell("zsh", &format!("zsh -n {}", dir.join("_coupafs").display()));
}

/// The `assets` of `[package.metadata.deb]`: (source, destination).
fn deb_assets() -> Vec<(String, String)> {
    let toml = read("Cargo.toml");
    let deb = toml
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("[package.metadata.deb] in Cargo.toml");
    let mut out = Vec::new();
    for line in deb.lines().map(str::trim) {
        let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        if line.starts_with("[\"") && quoted.len() >= 2 {
            out.push((quoted[0].to_string(), quoted[1].to_string()));
        } else if line.starts_with("{ dest") && quoted.len() >= 2 {
            out.push((format!("link:{}", quoted[1]), quoted[0].to_string()));
        }
    }
    out
}

#[test]
fn the_package_carries_man_page_completions_and_both_mount_helpers() {
    let assets = deb_assets();
    for (src, _) in &assets {
        if src.starts_with("target/") || src.starts_with("link:") {
            continue;
        }
        assert!(
            Path::new(&root().join(src)).exists(),
            "Cargo.toml packages {src}, which does not exist"
        );
    }
    for (src, dest) in [
        ("doc/coupafs.1", "usr/share/man/man1/coupafs.1"),
        (
            "contrib/completions/coupafs.bash",
            "usr/share/bash-completion/completions/coupafs",
        ),
        (
            "contrib/completions/_coupafs",
            "usr/share/zsh/vendor-completions/_coupafs",
        ),
        (
            "contrib/completions/coupafs.fish",
            "usr/share/fish/vendor_completions.d/coupafs.fish",
        ),
        ("link:../bin/coupafs", "usr/sbin/mount.coupafs"),
        ("link:../bin/coupafs", "usr/sbin/mount.fuse.coupafs"),
    ] {
        assert!(
            assets.iter().any(|(s, d)| s == src && d == dest),
            "the package lacks {dest} (from {src}): {assets:?}"
        );
    }
}
