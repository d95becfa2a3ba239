//! Names of upload temp files: how they are made (`TempNaming`) and
//! recognised (`is_temp_name`), so listings hide them and the janitor and
//! `coupafs check` find them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::fs::inode::split;

/// Marker inside every temp name; listings hide names carrying it.
pub(crate) const TEMP_MARK: &[u8] = b".coupafs-";
const TEMP_SUFFIX_LEN: usize = 6;

/// True for temp names of any coupafs mount (`*.coupafs-XXXXXX`, X hex).
pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    if name.len() < TEMP_MARK.len() + TEMP_SUFFIX_LEN {
        return false;
    }
    let (head, suffix) = name.split_at(name.len() - TEMP_SUFFIX_LEN);
    head.ends_with(TEMP_MARK) && suffix.iter().all(|b| b.is_ascii_hexdigit())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn temp_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
        .unwrap_or(0);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    // Mix pid, time and a counter: unique within this process, and unlikely
    // to collide with another mount's (collisions fail OPEN with EXCL anyway).
    let mixed = (u64::from(std::process::id()) << 20 ^ nanos ^ n.wrapping_mul(0x9E37_79B9))
        .wrapping_mul(0x2545_F491_4F6C_DD1D);
    format!("{:06x}", mixed >> 40)
}

/// Where uploads of `final_path` are staged.
#[derive(Clone, Debug, Default)]
pub struct TempNaming {
    /// Prefix put before the file name (default ".": hidden).
    pub prefix: Vec<u8>,
    /// Stage into this remote directory instead of next to the target.
    pub upload_dir: Option<Vec<u8>>,
}

impl TempNaming {
    /// A fresh temp path for the absolute remote `final_path`.
    pub(crate) fn temp_path(&self, final_path: &[u8]) -> Vec<u8> {
        let (dir, name) = split(final_path);
        let dir = self.upload_dir.as_deref().unwrap_or(dir);
        let mut p = dir.to_vec();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(&self.prefix);
        p.extend_from_slice(name);
        p.extend_from_slice(TEMP_MARK);
        p.extend_from_slice(temp_suffix().as_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let naming = TempNaming {
            prefix: b".".to_vec(),
            upload_dir: None,
        };
        let p = naming.temp_path(b"/root/Incoming/Invoices/inv_0001.csv");
        let (dir, name) = split(&p);
        assert_eq!(dir, b"/root/Incoming/Invoices");
        assert!(
            name.starts_with(b".inv_0001.csv.coupafs-"),
            "{:?}",
            String::from_utf8_lossy(name)
        );
        assert!(is_temp_name(name));
        assert!(!is_temp_name(b"inv_0001.csv"));
        assert!(!is_temp_name(b"x.coupafs-zzzzzz"));
        assert!(!is_temp_name(b".coupafs-"));
        assert_ne!(naming.temp_path(b"/a/b"), naming.temp_path(b"/a/b"));
    }

    #[test]
    fn upload_dir_stages_elsewhere() {
        let naming = TempNaming {
            prefix: Vec::new(),
            upload_dir: Some(b"/root/staging".to_vec()),
        };
        let p = naming.temp_path(b"/root/Incoming/Invoices/a.csv");
        assert!(p.starts_with(b"/root/staging/a.csv.coupafs-"));
    }
}
