//! The status file, `/run/coupafs/<mountpoint>.status` (or under
//! `$XDG_RUNTIME_DIR/coupafs` for a user): link state and uploads as
//! KEY=VALUE lines an admin (or a monitoring script) reads with `cat`.
//! Rewritten every `INTERVAL` through a temp file and rename(2), so a
//! reader never sees half a file; removed at unmount.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Target;
use crate::ssh::PoolStatus;

/// How often the serving loop rewrites the file.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// What the file reports besides the link: the filesystem's upload state.
pub(crate) struct Uploads {
    pub(crate) open_writers: usize,
    pub(crate) pending: usize,
}

pub(crate) struct StatusFile {
    path: PathBuf,
    /// The lines that never change while mounted.
    header: String,
}

impl StatusFile {
    /// The file for `mountpoint` in the runtime directory of this user.
    pub(crate) fn new(mountpoint: &Path, target: &Target, port: u16) -> Self {
        // SAFETY: geteuid cannot fail.
        let base = if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/run/coupafs")
        } else {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(|d| PathBuf::from(d).join("coupafs"))
                .unwrap_or_else(|| std::env::temp_dir().join("coupafs"))
        };
        Self::in_dir(&base, mountpoint, target, port)
    }

    /// The file for `mountpoint` in `base` (created if missing).
    fn in_dir(base: &Path, mountpoint: &Path, target: &Target, port: u16) -> Self {
        let _ = std::fs::create_dir_all(base);
        let header = format!(
            "mountpoint={}\nserver={}{}:{}\nport={port}\npid={}\n",
            mountpoint.display(),
            target
                .user
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            target.host,
            target.remote_dir,
            std::process::id()
        );
        Self {
            path: base.join(file_name(mountpoint)),
            header,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with the state now.
    pub(crate) fn write(&self, link: &PoolStatus, uploads: &Uploads) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = self.render(link, uploads, now);
        let tmp = self.path.with_extension("status.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    fn render(&self, link: &PoolStatus, uploads: &Uploads, now_secs: u64) -> String {
        let state = if link.connected > 0 {
            "connected"
        } else if link.reconnecting {
            "reconnecting"
        } else {
            "disconnected"
        };
        format!(
            "{}state={state}\nconnections={}\nreconnects={}\nopen_writers={}\npending_uploads={}\nlast_error={}\nupdated={now_secs}\n",
            self.header,
            link.connected,
            link.reconnects,
            uploads.open_writers,
            uploads.pending,
            link.last_error.as_deref().unwrap_or(""),
        )
    }

    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `/mnt/coupa/prod` -> `mnt-coupa-prod.status` (slashes become dashes, as
/// systemd names mount units); `/` -> `-.status`.
fn file_name(mountpoint: &Path) -> String {
    let escaped: String = mountpoint
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    if escaped.is_empty() {
        "-.status".to_string()
    } else {
        format!("{escaped}.status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>) -> Target {
        Target {
            user: user.map(String::from),
            host: "sftp.example.com".into(),
            remote_dir: "/exchange".into(),
        }
    }

    fn link(connected: usize, reconnecting: bool, last_error: Option<&str>) -> PoolStatus {
        PoolStatus {
            connected,
            reconnecting,
            reconnects: 3,
            last_error: last_error.map(String::from),
        }
    }

    #[test]
    fn file_name_follows_the_mountpoint() {
        assert_eq!(
            file_name(Path::new("/mnt/coupa/prod")),
            "mnt-coupa-prod.status"
        );
        assert_eq!(file_name(Path::new("/mnt/coupa/")), "mnt-coupa.status");
        assert_eq!(file_name(Path::new("/")), "-.status");
    }

    #[test]
    fn content_is_key_value_lines_in_a_fixed_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StatusFile::in_dir(dir.path(), Path::new("/mnt/c"), &target(Some("acme")), 2222);
        let text = f.render(
            &link(2, false, None),
            &Uploads {
                open_writers: 1,
                pending: 4,
            },
            1_700_000_000,
        );
        let want = format!(
            "mountpoint=/mnt/c\nserver=acme@sftp.example.com:/exchange\nport=2222\npid={}\n\
             state=connected\nconnections=2\nreconnects=3\nopen_writers=1\npending_uploads=4\n\
             last_error=\nupdated=1700000000\n",
            std::process::id()
        );
        assert_eq!(text, want);
    }

    #[test]
    fn state_says_reconnecting_or_disconnected_with_the_last_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StatusFile::in_dir(dir.path(), Path::new("/m"), &target(None), 22);
        let none = Uploads {
            open_writers: 0,
            pending: 0,
        };
        let text = f.render(&link(0, true, Some("timed out")), &none, 5);
        assert!(
            text.contains("server=sftp.example.com:/exchange\n"),
            "{text}"
        );
        assert!(text.contains("\nstate=reconnecting\n"), "{text}");
        assert!(text.contains("\nlast_error=timed out\n"), "{text}");
        let text = f.render(&link(0, false, Some("refused")), &none, 5);
        assert!(text.contains("\nstate=disconnected\n"), "{text}");
    }

    #[test]
    fn write_replaces_the_file_and_remove_deletes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("coupafs");
        let f = StatusFile::in_dir(&base, Path::new("/mnt/x"), &target(None), 22);
        assert_eq!(f.path(), base.join("mnt-x.status"));
        let uploads = Uploads {
            open_writers: 0,
            pending: 0,
        };
        f.write(&link(1, false, None), &uploads);
        let first = std::fs::read_to_string(f.path()).expect("status written");
        assert!(first.contains("\nconnections=1\n"), "{first}");
        f.write(&link(0, true, None), &uploads);
        let second = std::fs::read_to_string(f.path()).expect("status rewritten");
        assert!(second.contains("\nstate=reconnecting\n"), "{second}");
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&base)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mnt-x.status")]);
        f.remove();
        assert!(!f.path().exists());
    }
}
