//! Issue 10, end to end: nothing half-done under faults. A write that
//! failed is never followed by a publish; `-o timeout` bounds each system
//! call, retries and reconnects included; interrupted uploads leave no temp
//! on the server; memory does not grow with reconnects.

mod common;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;
const INVOICES: &str = "Incoming/Invoices";

/// Writes `data` to `path` through the mount; Ok only if every write and
/// close() did.
#[allow(dead_code)]
fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    close_file(f)
}

// ---------------------------------------------------------------------------
// A failed write never publishes
// ---------------------------------------------------------------------------

#[test]
fn cp_into_a_full_spool_fails_and_the_server_keeps_the_old_file() {
    let sb = Sandbox::start();
    let mnt = Mount::new(&sb, &["debug", "spool_max=16"]);
    let sdir = sb.root.join(INVOICES);
    let old = random_bytes(300_000, 11);
    fs::write(sdir.join("old.csv"), &old).expect("seed the server file");

    // Another writer holds 10 MiB of the 16 MiB spool, open.
    let mut holder = File::create(mnt.path.join(INVOICES).join("holder.bin")).expect("holder");
    holder
        .write_all(&random_bytes(10 * MIB, 12))
        .expect("10 MiB fit the spool");

    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("new.csv");
    write_random_file_seeded(&src, 12 * MIB as u64, 13);
    let out = Command::new("cp")
        .arg(&src)
        .arg(mnt.path.join(INVOICES).join("old.csv"))
        .stderr(Stdio::piped())
        .output()
        .expect("run cp");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("cp into a full spool: {} {}", out.status, err.trim());
    assert!(
        !out.status.success(),
        "cp must fail when its writes failed:\n{}",
        tail(&mnt.log(), 20)
    );
    assert_eq!(
        fs::read(sdir.join("old.csv")).expect("old file"),
        old,
        "the server keeps the previous version:\n{}",
        tail(&mnt.log(), 20)
    );
    assert!(
        !mnt.log().contains("committed /Incoming/Invoices/old.csv"),
        "nothing may be published:\n{}",
        tail(&mnt.log(), 20)
    );
    // The holder's stream may still be running; only its temp may exist.
    assert!(
        wait_until(Duration::from_secs(5), || temps_in(&sdir)
            .iter()
            .all(|t| t.starts_with(".holder.bin"))),
        "temp of the failed upload left: {:?}",
        temps_in(&sdir)
    );
    close_file(holder).expect("the holder publishes");
    assert_eq!(
        fs::metadata(sdir.join("holder.bin")).map(|m| m.len()).ok(),
        Some(10 * MIB as u64)
    );
    // With the spool free again, the same cp succeeds.
    let out = Command::new("cp")
        .arg(&src)
        .arg(mnt.path.join(INVOICES).join("old.csv"))
        .output()
        .expect("run cp");
    assert!(out.status.success(), "{}", tail(&mnt.log(), 20));
    assert_eq!(
        sha256sum(sdir.join("old.csv")),
        sha256sum(&src),
        "the whole new file is published"
    );
    assert!(wait_until(Duration::from_secs(5), || temps_in(&sdir).is_empty()));
}
