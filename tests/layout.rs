//! The architecture rules (issue 9, doc/ARCHITECTURE.md), checked by reading
//! the source tree, so a change that breaks one fails CI:
//!
//! - `src/main.rs` only parses and dispatches: at most 200 lines;
//! - no file under `src/` holds more than 900 lines before its first
//!   `#[cfg(test)]` (files that are all tests, `tests.rs` and `*_tests.rs`,
//!   are exempt);
//! - the `fuser` crate is named only under `src/fuse/` (the FUSE adapter);
//! - `ssh2` / `libssh2` are named in code only under `src/ssh/` (the
//!   transport); `ssh2_config` is another crate;
//! - nothing under `src/fs/` or `src/fuse/` names an SFTP wire type
//!   (`sftp::`, `pflags`, `status::`, `SSH_FX_*`): the filesystem speaks
//!   `Remote`'s words;
//! - nothing in `src/`, `doc/` or README.md points to `../shared` or out of
//!   the repository.
//!
//! "Named in code" means as an identifier, outside comments and string
//! literals: a comment may explain what libssh2 does, and a log filter may
//! say "fuser" (src/logging.rs) without depending on the crate. Each rule is
//! a function over (path, text) pairs, and the tests at the bottom feed each
//! one a violation to show it can fail.

use std::fs;
use std::path::{Path, PathBuf};

const MAIN_MAX_LINES: usize = 200;
const FILE_MAX_LINES: usize = 900;

/// One source file: its path relative to the repository, and its text.
struct File {
    path: String,
    text: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<File>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            let text =
                fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let path = p
                .strip_prefix(repo())
                .expect("under the repository")
                .to_string_lossy()
                .into_owned();
            out.push(File { path, text });
        }
    }
}

fn rust_sources() -> Vec<File> {
    let mut files = Vec::new();
    collect(&repo().join("src"), "rs", &mut files);
    assert!(
        files.len() > 20 && files.iter().any(|f| f.path == "src/main.rs"),
        "the walk found the tree ({} files)",
        files.len()
    );
    files
}

fn docs() -> Vec<File> {
    let mut files = Vec::new();
    collect(&repo().join("doc"), "md", &mut files);
    let readme = repo().join("README.md");
    files.push(File {
        path: "README.md".into(),
        text: fs::read_to_string(readme).expect("read README.md"),
    });
    files
}

// ---------------------------------------------------------------------------
// A small Rust lexer: identifiers and `::` outside comments and literals
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
}

/// The identifiers and `::` of Rust source, with comments, string, byte
/// string, raw string and char literals skipped (lifetimes are not literals).
fn tokens(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(b, i) {
            i = end;
        } else if c == b'"' || (c == b'b' && b.get(i + 1) == Some(&b'"')) {
            i += if c == b'b' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'\'' || (c == b'b' && b.get(i + 1) == Some(&b'\'')) {
            let q = if c == b'b' { i + 1 } else { i };
            if b.get(q + 1) == Some(&b'\\') {
                // '\n', '\'', '\u{..}'
                i = q + 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(q + 2) == Some(&b'\'') {
                i = q + 3;
            } else if c == b'b' {
                // An identifier starting with b.
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                out.push(Token::Ident(src[start..i].to_string()));
            } else {
                // A lifetime or a non-ASCII char literal: skip the quote.
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            out.push(Token::Ident(src[start..i].to_string()));
        } else if b[i..].starts_with(b"::") {
            out.push(Token::PathSep);
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Where a raw (byte) string literal starting at `i` ends, if one does.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    // Not the tail of an identifier such as `for`.
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    while j < b.len() {
        if b[j..].starts_with(&close) {
            return Some(j + close.len());
        }
        j += 1;
    }
    Some(b.len())
}

fn names_ident(src: &str, names: &[&str]) -> Option<String> {
    tokens(src).into_iter().find_map(|t| match t {
        Token::Ident(s) if names.contains(&s.as_str()) => Some(s),
        _ => None,
    })
}

// ---------------------------------------------------------------------------
// The rules: each returns the violations it finds
// ---------------------------------------------------------------------------

fn main_rs_is_short(files: &[File]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.path == "src/main.rs")
        .filter(|f| f.text.lines().count() > MAIN_MAX_LINES)
        .map(|f| {
            format!(
                "{}: {} lines (at most {MAIN_MAX_LINES}: parse and dispatch only)",
                f.path,
                f.text.lines().count()
            )
        })
        .collect()
}

fn is_test_file(path: &str) -> bool {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

fn files_are_small_before_their_tests(files: &[File]) -> Vec<String> {
    files
        .iter()
        .filter(|f| !is_test_file(&f.path))
        .filter_map(|f| {
            let before = f
                .text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .count();
            (before > FILE_MAX_LINES).then(|| {
                format!(
                    "{}: {before} lines before its tests (at most {FILE_MAX_LINES}; \
                     split it, or move the tests to a sibling tests.rs)",
                    f.path
                )
            })
        })
        .collect()
}

/// Files outside `allowed_dir` whose code names one of `names`.
fn named_only_under(files: &[File], allowed_dir: &str, names: &[&str], why: &str) -> Vec<String> {
    files
        .iter()
        .filter(|f| !f.path.starts_with(allowed_dir))
        .filter_map(|f| {
            names_ident(&f.text, names)
                .map(|n| format!("{}: names `{n}` ({why} only under {allowed_dir})", f.path))
        })
        .collect()
}

fn fuser_only_in_the_adapter(files: &[File]) -> Vec<String> {
    named_only_under(files, "src/fuse/", &["fuser"], "the FUSE crate")
}

fn ssh2_only_in_the_transport(files: &[File]) -> Vec<String> {
    named_only_under(
        files,
        "src/ssh/",
        &["ssh2", "libssh2", "libssh2_sys"],
        "the SSH library",
    )
}

/// The filesystem layer speaks `Remote`'s words, never SFTP's.
fn fs_layer_names_no_sftp_type(files: &[File]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.path.starts_with("src/fs/") || f.path.starts_with("src/fuse/"))
        .filter_map(|f| {
            let toks = tokens(&f.text);
            toks.iter().enumerate().find_map(|(i, t)| {
                let Token::Ident(s) = t else { return None };
                let path_head = toks.get(i + 1) == Some(&Token::PathSep);
                let bad = (path_head && (s == "sftp" || s == "status"))
                    || s == "pflags"
                    || s.starts_with("SSH_FX");
                bad.then(|| {
                    let shown = if path_head {
                        format!("{s}::")
                    } else {
                        s.clone()
                    };
                    format!("{}: names `{shown}` (an SFTP wire type)", f.path)
                })
            })
        })
        .collect()
}

/// A link target in markdown (`](target)`) that leaves the repository.
fn escapes_repo(file: &str, target: &str) -> bool {
    if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
        return false;
    }
    if target.starts_with('/') {
        return true;
    }
    let mut depth: i64 = Path::new(file).components().count() as i64 - 1;
    for part in target.split('#').next().unwrap_or("").split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn nothing_points_outside(sources: &[File], docs: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for f in sources.iter().chain(docs) {
        for (n, line) in f.text.lines().enumerate() {
            if line.contains("../shared") || line.contains("shared/design") {
                bad.push(format!("{}:{}: points to ../shared", f.path, n + 1));
            }
            // The tracker's numbers mean nothing to a reader of the tree:
            // say what the rule or the fix is instead.
            if names_a_tracker_issue(line) {
                bad.push(format!("{}:{}: names an issue number", f.path, n + 1));
            }
        }
    }
    for f in docs {
        for (n, line) in f.text.lines().enumerate() {
            for piece in line.split("](").skip(1) {
                let target = piece.split(')').next().unwrap_or("").trim();
                if escapes_repo(&f.path, target) {
                    bad.push(format!(
                        "{}:{}: link `{target}` leaves the repository",
                        f.path,
                        n + 1
                    ));
                }
            }
        }
    }
    bad
}

/// "issue 14", "Issue 10:", "#10" style references to the issue tracker.
fn names_a_tracker_issue(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.match_indices("issue ").any(|(i, m)| {
        lower[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[track_caller]
fn assert_none(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{rule}:\n  {}",
        violations.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// The tree keeps the rules
// ---------------------------------------------------------------------------

#[test]
fn main_rs_only_parses_and_dispatches() {
    assert_none("main.rs size", main_rs_is_short(&rust_sources()));
}

#[test]
fn no_source_file_is_over_900_lines_before_its_tests() {
    assert_none(
        "file size",
        files_are_small_before_their_tests(&rust_sources()),
    );
}

#[test]
fn fuser_is_named_only_in_the_fuse_adapter() {
    assert_none("fuser", fuser_only_in_the_adapter(&rust_sources()));
}

#[test]
fn ssh2_is_named_only_in_the_transport() {
    assert_none("ssh2", ssh2_only_in_the_transport(&rust_sources()));
}

#[test]
fn the_filesystem_layer_names_no_sftp_wire_type() {
    assert_none("fs layer", fs_layer_names_no_sftp_type(&rust_sources()));
}

#[test]
fn nothing_points_outside_the_repository() {
    // The tests too (this file names the patterns it looks for).
    let mut sources = rust_sources();
    collect(&repo().join("tests"), "rs", &mut sources);
    sources.retain(|f| f.path != "tests/layout.rs");
    assert_none(
        "outside pointers",
        nothing_points_outside(&sources, &docs()),
    );
}

// ---------------------------------------------------------------------------
// Each rule catches a violation
// ---------------------------------------------------------------------------

fn file(path: &str, text: &str) -> File {
    File {
        path: path.into(),
        text: text.into(),
    }
}

#[test]
fn a_long_main_rs_is_caught() {
    let long = "fn x() {}\n".repeat(MAIN_MAX_LINES + 1);
    assert_eq!(main_rs_is_short(&[file("src/main.rs", &long)]).len(), 1);
    let ok = "fn x() {}\n".repeat(MAIN_MAX_LINES);
    assert!(main_rs_is_short(&[file("src/main.rs", &ok)]).is_empty());
}

#[test]
fn a_long_file_is_caught_but_not_its_tests() {
    let body = "fn x() {}\n".repeat(FILE_MAX_LINES + 1);
    assert_eq!(
        files_are_small_before_their_tests(&[file("src/fs/big.rs", &body)]).len(),
        1
    );
    let tests_after = format!(
        "{}#[cfg(test)]\nmod tests {{\n{}}}\n",
        "fn x() {}\n".repeat(FILE_MAX_LINES),
        "fn t() {}\n".repeat(2000)
    );
    assert!(files_are_small_before_their_tests(&[file("src/fs/ok.rs", &tests_after)]).is_empty());
    for exempt in ["src/fs/tests.rs", "src/sftp/fuzz_tests.rs"] {
        assert!(files_are_small_before_their_tests(&[file(exempt, &body)]).is_empty());
    }
}

#[test]
fn fuser_outside_the_adapter_is_caught() {
    let files = [
        file("src/fs/mod.rs", "use fuser::FileAttr;\n"),
        file(
            "src/mount/mod.rs",
            "fn f() { let _ = fuser :: MountOption::RO; }\n",
        ),
        file("src/fuse/mod.rs", "use fuser::Filesystem;\n"),
        // Words in comments and strings are not code.
        file(
            "src/logging.rs",
            "//! fuser's logs\n/* fuser */\nfn f() { g(\"fuser\"); h(r#\"fuser\"#); }\n",
        ),
        file("src/cli/help.rs", "const H: &str = \"fusermount3 -u\";\n"),
    ];
    let v = fuser_only_in_the_adapter(&files);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("src/fs/mod.rs") && v[1].starts_with("src/mount/mod.rs"));
}

#[test]
fn ssh2_outside_the_transport_is_caught() {
    let files = [
        file("src/remote/sftp.rs", "use ssh2::Session;\n"),
        file("src/check/mod.rs", "fn f() { libssh2_sys::init(); }\n"),
        file("src/ssh/session.rs", "use ssh2::Session;\n"),
        file(
            "src/cli/sshconfig.rs",
            "use ssh2_config::SshConfig;\n// libssh2 lists\n",
        ),
        file(
            "src/cli/help.rs",
            "const H: &str = \"a name libssh2 lacks\";\n",
        ),
    ];
    let v = ssh2_only_in_the_transport(&files);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("src/remote/sftp.rs") && v[1].starts_with("src/check/mod.rs"));
}

#[test]
fn sftp_words_in_the_filesystem_layer_are_caught() {
    for code in [
        "use crate::sftp::Attrs;",
        "use crate::sftp::{self, status};",
        "fn f(c: u32) -> bool { c == status::FAILURE }",
        "fn f() -> u32 { pflags }",
        "const X: u32 = SSH_FX_FAILURE;",
    ] {
        for dir in ["src/fs/", "src/fuse/"] {
            let f = file(&format!("{dir}x.rs"), code);
            assert_eq!(fs_layer_names_no_sftp_type(&[f]).len(), 1, "{dir}: {code}");
        }
    }
    let fine = [
        file("src/remote/sftp.rs", "use crate::sftp::{pflags, status};"),
        file(
            "src/fs/x.rs",
            "// an SFTP status:: in prose\nfn sftp_like() {}\n",
        ),
    ];
    assert!(fs_layer_names_no_sftp_type(&fine).is_empty());
}

#[test]
fn pointers_out_of_the_repository_are_caught() {
    let sources = [file(
        "src/ssh/engine.rs",
        "//! See ../shared/design/sftp-engine.md\n",
    )];
    assert_eq!(nothing_points_outside(&sources, &[]).len(), 1);
    let sources = [file("src/fs/tests.rs", "/// Issue 14: a read...\n")];
    assert_eq!(nothing_points_outside(&sources, &[]).len(), 1);
    let sources = [file("src/fs/tests.rs", "/// an issue with reads\n")];
    assert!(nothing_points_outside(&sources, &[]).is_empty());
    let docs = [
        file(
            "README.md",
            "[design](../design.md) and [ops](doc/OPERATIONS.md)\n",
        ),
        file(
            "doc/ARCHITECTURE.md",
            "[up](../README.md) [out](../../x.md) [abs](/etc/x)\n",
        ),
        file(
            "doc/OPERATIONS.md",
            "[web](https://example.com/a/../../b) [here](#top)\n",
        ),
    ];
    let v = nothing_points_outside(&[], &docs);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v[0].contains("../design.md"));
    assert!(v[1].contains("../../x.md") && v[2].contains("/etc/x"));
}

#[test]
fn the_lexer_skips_comments_and_literals() {
    let src = r####"
        // ssh2 in a line comment
        /* ssh2 /* nested ssh2 */ ssh2 */
        let a = "ssh2 \" ssh2";
        let b = b"ssh2";
        let c = r#"ssh2 " ssh2"#;
        let d = br##"ssh2"##;
        let e = '"'; let f = '\''; let g = b'x';
        fn h<'a>(x: &'a str) -> &'a str { for_each(x) }
        real_ident::after
    "####;
    let idents: Vec<String> = tokens(src)
        .into_iter()
        .filter_map(|t| match t {
            Token::Ident(s) => Some(s),
            Token::PathSep => None,
        })
        .collect();
    assert!(!idents.iter().any(|s| s == "ssh2"), "{idents:?}");
    for want in [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
        "for_each",
        "real_ident",
        "after",
    ] {
        assert!(idents.iter().any(|s| s == want), "{want} in {idents:?}");
    }
}
