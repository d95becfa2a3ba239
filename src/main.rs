//! coupafs: mounts a Coupa SFTP exchange as a local directory.
//!
//! This binary only parses the command line and dispatches: the mount's
//! life is `coupafs::mount`, the health check `coupafs::check`.

use std::process::ExitCode;

use coupafs::cli::{self, Invocation};
use coupafs::{check, logging, mount};

fn main() -> ExitCode {
    // Keeps the faster ChaCha20-Poly1305 primitives in the link (see
    // coupafs::ssh::crypto); black_box so the reference is not optimised out.
    std::hint::black_box(coupafs::ssh::crypto::link());
    // First, while no other thread exists: no core dump or other user may
    // read this process's memory, and the password leaves the environment
    // (and /proc/PID/environ) before anything else runs.
    mount::harden_process();
    mount::take_env_password();
    let args: Vec<String> = std::env::args().collect();
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        // `check` and `status` are monitoring commands: a usage error is
        // UNKNOWN (3), on stdout, where a monitoring system reads.
        Err(e) if is_monitoring(&args) => {
            eprintln!("coupafs: {e}");
            let json = args.iter().any(|a| a == "--json");
            print!("{}", check::unknown(&format!("usage: {e}"), json));
            return ExitCode::from(check::EXIT_UNKNOWN as u8);
        }
        Err(e) => {
            eprintln!("coupafs: {e}");
            return ExitCode::from(1);
        }
    };
    match inv {
        Invocation::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Invocation::Version(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Invocation::Check(opts) => {
            logging::init(opts.debug);
            match mount::connect_params(&opts) {
                Ok(params) => ExitCode::from(check::run_check(&opts, params) as u8),
                // The options cannot be used (unreadable key or password
                // file): the check could not run.
                Err(msg) => {
                    eprintln!("coupafs: {msg}");
                    print!("{}", check::unknown(&msg, opts.json));
                    ExitCode::from(check::EXIT_UNKNOWN as u8)
                }
            }
        }
        Invocation::Status(mountpoint) => {
            ExitCode::from(mount::show_status(mountpoint.as_deref()) as u8)
        }
        Invocation::Mount(opts) => match mount::run(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("coupafs: {msg}");
                ExitCode::from(1)
            }
        },
    }
}

/// Whether the command line asks for `check` or `status` (the first word
/// that is not an option, or follows `-o`/`-p`/`-F` as its value).
fn is_monitoring(args: &[String]) -> bool {
    let mut takes_value = false;
    for a in args.iter().skip(1) {
        if takes_value {
            takes_value = false;
            continue;
        }
        if matches!(a.as_str(), "-o" | "-p" | "-F") {
            takes_value = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return a == "check" || a == "status";
    }
    false
}
