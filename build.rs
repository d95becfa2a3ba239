//! Build-time guard for `src/ssh/crypto.rs` (feature `openssl-chacha`).
//!
//! crypto.rs replaces four C functions of the libssh2 that `libssh2-sys`
//! bundles (`chacha_keysetup`, `chacha_ivsetup`, `chacha_encrypt_bytes`,
//! `poly1305_auth`) by static symbol pre-emption. That is only sound when
//! their prototypes and `struct chacha_ctx` are exactly what crypto.rs
//! implements, so this script reads the bundled sources and refuses to
//! build on any difference. With a system libssh2 (LIBSSH2_SYS_USE_PKG_CONFIG)
//! the override would do nothing: that is refused too (build with
//! `--no-default-features` instead).
//!
//! It also compiles libssh2's own `chacha.c` and `poly1305.c`, unchanged but
//! with their four functions renamed `coupafs_ref_*` (by `-D`), into a small
//! static library: crypto.rs's tests compare the override against them.
//! Nothing outside the tests references those symbols, so they never reach
//! the binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The libssh2 version bundled in libssh2-sys 0.3.4 (pinned in Cargo.toml).
const LIBSSH2_VERSION: &str = "1.11.2_DEV";
const LIBSSH2_SYS_DIR: &str = "libssh2-sys-0.3.4";

/// What crypto.rs implements, whitespace-normalised: (file, declaration).
const EXPECTED: &[(&str, &str)] = &[
    ("chacha.h", "struct chacha_ctx { u32 input[16]; };"),
    (
        "chacha.h",
        "void chacha_keysetup(struct chacha_ctx *x, const u8 *k, u32 kbits);",
    ),
    (
        "chacha.h",
        "void chacha_ivsetup(struct chacha_ctx *x, const u8 *iv, const u8 *counter);",
    ),
    (
        "chacha.h",
        "void chacha_encrypt_bytes(struct chacha_ctx *x, const u8 *m, u8 *c, size_t bytes);",
    ),
    ("chacha.h", "typedef unsigned int u32;"),
    ("chacha.h", "typedef unsigned char u8;"),
    ("poly1305.h", "#define POLY1305_KEYLEN 32"),
    ("poly1305.h", "#define POLY1305_TAGLEN 16"),
    (
        "poly1305.h",
        "void poly1305_auth(unsigned char out[POLY1305_TAGLEN], const unsigned char *m, size_t inlen, const unsigned char key[POLY1305_KEYLEN]);",
    ),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=COUPAFS_LIBSSH2_SRC");
    if env::var_os("CARGO_FEATURE_OPENSSL_CHACHA").is_none() {
        return;
    }
    let Some(root) = env::var_os("DEP_SSH2_ROOT") else {
        fail(
            "libssh2-sys did not build its bundled libssh2 (a system libssh2 via \
             LIBSSH2_SYS_USE_PKG_CONFIG or vcpkg?): the ChaCha20-Poly1305 override \
             would silently do nothing. Build with --no-default-features, or unset \
             LIBSSH2_SYS_USE_PKG_CONFIG.",
        );
    };
    let include = env::var_os("DEP_SSH2_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(root).join("include"));
    let header = read(&include.join("libssh2.h"));
    let want = format!("#define LIBSSH2_VERSION \"{LIBSSH2_VERSION}\"");
    if !normalise(&header).contains(&normalise(&want)) {
        fail(&format!(
            "the bundled libssh2 is not version {LIBSSH2_VERSION} ({}): re-check \
             src/ssh/crypto.rs against its chacha.h/poly1305.h, then update build.rs",
            include.join("libssh2.h").display()
        ));
    }
    let src = source_dir();
    build_reference(&src);
    for (file, decl) in EXPECTED {
        let path = src.join(file);
        if !normalise(&read(&path)).contains(&normalise(decl)) {
            fail(&format!(
                "{} no longer declares `{decl}`, which src/ssh/crypto.rs overrides: \
                 the override would be undefined behaviour. Update crypto.rs (or \
                 build with --no-default-features).",
                path.display()
            ));
        }
    }
}

/// libssh2's chacha.c/poly1305.c with renamed symbols. They include
/// `libssh2_priv.h` only for standard headers, so they are copied next to a
/// stand-in that provides just those (the real one needs libssh2's build
/// configuration).
fn build_reference(src: &Path) {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR is not set")));
    let dir = out.join("libssh2-ref");
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", dir.display())));
    for f in ["chacha.c", "chacha.h", "poly1305.c", "poly1305.h"] {
        fs::copy(src.join(f), dir.join(f))
            .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", src.join(f).display())));
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }
    fs::write(
        dir.join("libssh2_priv.h"),
        "/* stand-in written by coupafs's build.rs */\n\
         #include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n",
    )
    .unwrap_or_else(|e| fail(&format!("cannot write the stand-in header: {e}")));
    let mut cc = cc::Build::new();
    cc.file(dir.join("chacha.c"))
        .file(dir.join("poly1305.c"))
        .include(&dir)
        .warnings(false);
    for f in [
        "chacha_keysetup",
        "chacha_ivsetup",
        "chacha_encrypt_bytes",
        "poly1305_auth",
    ] {
        cc.define(f, Some(format!("coupafs_ref_{f}").as_str()));
    }
    cc.compile("coupafs_libssh2_ref");
}

/// libssh2's `src/` inside the libssh2-sys package: COUPAFS_LIBSSH2_SRC,
/// else the cargo registry, else a `vendor/` directory.
fn source_dir() -> PathBuf {
    if let Some(dir) = env::var_os("COUPAFS_LIBSSH2_SRC") {
        return PathBuf::from(dir);
    }
    let mut candidates = Vec::new();
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        if let Ok(entries) = fs::read_dir(home.join("registry/src")) {
            for e in entries.flatten() {
                candidates.push(e.path().join(LIBSSH2_SYS_DIR));
            }
        }
    }
    if let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") {
        candidates.push(PathBuf::from(dir).join("vendor/libssh2-sys"));
    }
    for c in &candidates {
        let src = c.join("libssh2/src");
        if src.join("chacha.h").is_file() {
            println!("cargo:rerun-if-changed={}", src.join("chacha.h").display());
            println!(
                "cargo:rerun-if-changed={}",
                src.join("poly1305.h").display()
            );
            return src;
        }
    }
    fail(&format!(
        "cannot find the sources of {LIBSSH2_SYS_DIR} to check the prototypes \
         src/ssh/crypto.rs overrides (looked in {candidates:?}); set \
         COUPAFS_LIBSSH2_SRC to its libssh2/src directory"
    ))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

/// Collapses whitespace runs to one space and drops spaces next to
/// punctuation, so formatting changes in the C headers do not matter.
fn normalise(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut out = words.join(" ");
    for p in ["(", ")", ",", ";", "[", "]", "{", "}", "*"] {
        out = out
            .replace(&format!(" {p}"), p)
            .replace(&format!("{p} "), p);
    }
    out
}

fn fail(msg: &str) -> ! {
    eprintln!("coupafs build: {msg}");
    panic!("coupafs build check failed: {msg}");
}
