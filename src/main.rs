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
                Err(msg) => {
                    eprintln!("coupafs: {msg}");
                    ExitCode::from(2)
                }
            }
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
