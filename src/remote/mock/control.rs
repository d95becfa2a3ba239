//! The test's side of the mock: planting files, links and odd entries,
//! reading what the code under test left, counting calls, and injecting
//! failures, holds and a lost connection.

use super::*;

impl MockRemote {
    pub fn mkdir_p(&self, path: &str) {
        let mut st = self.st();
        let mut p = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            p.push('/');
            p.push_str(c);
            st.nodes
                .entry(p.clone().into_bytes())
                .or_insert(Node::Dir { mode: 0o755 });
        }
    }

    pub fn put_file(&self, path: &str, data: &[u8]) {
        self.st().nodes.insert(
            path.as_bytes().to_vec(),
            Node::File {
                data: data.to_vec(),
                mode: 0o644,
                atime: EPOCH,
                mtime: EPOCH,
            },
        );
    }

    /// A symlink at `path` whose target is `target`, as a server would
    /// store it (never checked or followed here).
    pub fn put_symlink(&self, path: &str, target: &str) {
        self.st().nodes.insert(
            path.as_bytes().to_vec(),
            Node::Symlink {
                target: target.as_bytes().to_vec(),
            },
        );
    }

    /// An entry a hostile or broken server lists in `dir` under a name no
    /// path can hold (with `/`, empty, NUL, too long): listings of `dir`
    /// show it as a file, every other call ignores it.
    pub fn put_odd_entry(&self, dir: &str, name: &[u8]) {
        self.st()
            .odd_entries
            .push((dir.as_bytes().to_vec(), name.to_vec()));
    }

    /// The attributes the last SETSTAT sent (to check what a client asked
    /// for, beyond what this mock keeps).
    pub fn last_setstat(&self) -> Option<Meta> {
        self.st().last_setstat.clone()
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.st().nodes.get(path.as_bytes()) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    /// Names directly in `dir`.
    pub fn names(&self, dir: &str) -> Vec<String> {
        self.list(dir.as_bytes())
            .into_iter()
            .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
            .collect()
    }

    /// Sizes with which `path` ever appeared (publishes and direct writes).
    pub fn appearances(&self, path: &str) -> Vec<usize> {
        self.st()
            .history
            .iter()
            .filter(|(p, _)| p == path.as_bytes())
            .map(|(_, n)| *n)
            .collect()
    }

    /// How many times `op` was called.
    /// Makes the mock report `mode` as its replace capability (a server
    /// without posix-rename, or one refusing every replace).
    pub fn set_replace_mode(&self, mode: crate::remote::ReplaceMode) {
        self.st().replace_mode = Some(mode);
    }

    /// The next `n` `open_twin` calls find no second connection up yet.
    pub fn set_twins_later(&self, n: usize) {
        self.st().twins_later = n;
    }

    /// How `create_new_striped` goes from now on: None, as a backend
    /// without it (no twins tried); Some(true), the new file comes open on
    /// "another connection" too; Some(false), those OPENs lost the race to
    /// the create (`Later`).
    pub fn set_twins_beside_creates(&self, how: Option<bool>) {
        self.st().twins_beside_creates = how;
    }

    /// `open_read_pair` gives a second handle, as with two connections up.
    pub fn set_twin_reads(&self, on: bool) {
        self.st().twin_reads = on;
    }

    /// READ requests (64 KiB each, as the SFTP implementation sends them)
    /// that started at or past end of file: what a server logs as
    /// "requested read offset greater than size".
    pub fn reads_past_eof(&self) -> usize {
        self.st().reads_past_eof
    }

    /// Bytes read through `handle` so far.
    pub fn read_through(&self, handle: &crate::remote::Handle) -> usize {
        self.st().read_bytes.get(&handle.raw).copied().unwrap_or(0)
    }

    pub fn calls(&self, op: &str) -> usize {
        self.st().calls.get(op).copied().unwrap_or(0)
    }

    /// Handles open on the server (a leak check).
    pub fn open_handles(&self) -> usize {
        self.st().handles.len()
    }

    /// The call of `op` after `skip` successful ones fails with `error`.
    pub fn fail(&self, op: &'static str, skip: usize, error: RemoteError) {
        self.st().injections.push(Injection {
            op,
            skip,
            times: 1,
            error,
        });
    }

    /// Every call of `op` fails with `error` until `heal`.
    pub fn fail_always(&self, op: &'static str, error: RemoteError) {
        self.st().injections.push(Injection {
            op,
            skip: 0,
            times: usize::MAX,
            error,
        });
    }

    /// Calls of `op` wait until `release` (a server slow to answer).
    pub fn hold(&self, op: &'static str) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Calls waiting on a hold right now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Lets held calls of `op` proceed.
    pub fn release(&self, op: &'static str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|o| *o != op);
        self.unheld.notify_all();
    }

    /// The connection dies: every open handle with it (`handle_alive`
    /// false, calls on them `StaleHandle`); later calls work (a reconnect).
    pub fn lose_connection(&self) {
        let mut st = self.st();
        st.handles.clear();
        st.generation += 1;
    }

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.st().injections.clear();
    }
}
