//! Write-behind: a small pool of threads that streams files being written
//! to their remote temp file while the writer is still writing, so close()
//! waits only for the tail and the commit.

use std::sync::{mpsc, Arc, Mutex, Weak};

use crate::fs::upload::Upload;
use crate::fs::{lock, Fs};
use crate::remote::deadline::CallScope;
use crate::remote::Remote;

/// A write-behind job: the inode and its upload.
pub(super) type StreamJob = (u64, Arc<Upload>);

/// Threads streaming uploads in the background.
const STREAM_WORKERS: usize = 4;

impl<R: Remote> Fs<R> {
    /// Starts `STREAM_WORKERS` threads taking jobs from `rx`; each holds
    /// the filesystem weakly and stops when it is gone or the channel
    /// closes (`Fs::shutdown`).
    pub(super) fn start_write_behind(fs: &Arc<Self>, rx: mpsc::Receiver<StreamJob>) {
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..STREAM_WORKERS {
            let weak: Weak<Self> = Arc::downgrade(fs);
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("write-behind-{i}"))
                .spawn(move || loop {
                    let job = lock(&rx).recv();
                    let Ok((ino, upload)) = job else { return };
                    let Some(fs) = weak.upgrade() else { return };
                    fs.stream(ino, &upload);
                });
        }
    }

    pub(super) fn queue_stream(&self, ino: u64, upload: &Arc<Upload>) {
        if let Some(tx) = lock(&self.streams).as_ref() {
            let _ = tx.send((ino, upload.clone()));
        }
    }

    pub(super) fn stream(&self, ino: u64, upload: &Upload) {
        // Write-behind never waits for a reconnect: with no connection up
        // it pauses, and close() retries within its own time bound (a
        // stream waiting here would hold the publish lock close() needs).
        let _background = CallScope::background();
        // Bound first: a guard in a `match` scrutinee would live through the
        // arms, holding the inode table across the upload's round trips.
        let path = lock(&self.inodes).path(ino).map(<[u8]>::to_vec);
        match path {
            Some(path) => upload.stream(
                self.remote.as_ref(),
                &self.cfg.naming,
                &self.remote_path(&path),
            ),
            None => upload.state().stream_queued = false,
        }
    }
}
