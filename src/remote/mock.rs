//! An in-memory `Remote` with failure injection, for unit tests of the
//! filesystem semantics and the upload state machine (the mountpoint-s3
//! pattern: the same `fs` code runs on this fake and on real SFTP).
//!
//! It behaves like OpenSSH's sftp-server where that matters: plain RENAME
//! refuses an existing target, posix-rename replaces it, REMOVE of a missing
//! file is NO_SUCH_FILE, RMDIR of a non-empty folder is FAILURE (here:
//! `NotFound`, `Failure`, as `remote::sftp` converts them).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::remote::{
    Committed, DirEntry, Handle, Kind, Meta, RResult, Remote, RemoteError, SpaceStats,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// A failure to inject: the `nth` next call of `op` (0 = the next one)
/// fails with `error`.
#[derive(Clone, Debug)]
struct Injection {
    op: &'static str,
    skip: usize,
    /// Failures left; `usize::MAX` for a permanent fault.
    times: usize,
    error: RemoteError,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<Vec<u8>, Node>,
    handles: HashMap<Vec<u8>, Vec<u8>>,
    injections: Vec<Injection>,
    calls: HashMap<&'static str, usize>,
    /// Every path that ever existed, in creation order (to check that no
    /// partial file ever appeared under a final name).
    history: Vec<(Vec<u8>, usize)>,
    /// Reads that asked for bytes past the end of the file, in SFTP READ
    /// requests of `sftp::IO_CHUNK`-like 64 KiB (what a server would log).
    reads_past_eof: usize,
    /// Capability switch: how this mock server says replaces will go.
    replace_mode: Option<crate::remote::ReplaceMode>,
}

pub struct MockRemote {
    state: Mutex<State>,
    /// Operations whose calls wait (outside `state`) until released: a
    /// server that is slow to answer them.
    held: Mutex<Vec<&'static str>>,
    unheld: Condvar,
    /// Calls currently waiting on a hold.
    waiting: AtomicU64,
    next_handle: AtomicU64,
}

/// How `open` treats the file (the intents of `Remote`'s opens).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// An existing file, for reading.
    Read,
    /// An existing file, for writing, keeping its bytes.
    Write,
    /// A new file (the name must be free), empty.
    CreateNew,
}

/// Bytes per SFTP READ request of the real implementation.
const READ_REQUEST: u64 = 64 * 1024;

fn no_such_file() -> RemoteError {
    RemoteError::NotFound("No such file".into())
}

fn failure(msg: &str) -> RemoteError {
    RemoteError::Failure(msg.into())
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

impl Default for MockRemote {
    fn default() -> Self {
        Self::new()
    }
}

impl MockRemote {
    /// An empty server with a root folder `/root`.
    pub fn new() -> Self {
        let mut st = State::default();
        st.nodes.insert(b"/".to_vec(), Node::Dir { mode: 0o755 });
        st.nodes
            .insert(b"/root".to_vec(), Node::Dir { mode: 0o755 });
        Self {
            state: Mutex::new(st),
            held: Mutex::new(Vec::new()),
            unheld: Condvar::new(),
            waiting: AtomicU64::new(0),
            next_handle: AtomicU64::new(1),
        }
    }

    fn open(&self, path: &[u8], mode: OpenMode, perm: Option<u32>) -> RResult<Handle> {
        let mut st = self.enter("open")?;
        if !matches!(st.nodes.get(parent(path)), Some(Node::Dir { .. })) {
            return Err(no_such_file());
        }
        match st.nodes.get(path) {
            Some(Node::File { .. }) if mode == OpenMode::CreateNew => {
                return Err(failure("exists"))
            }
            Some(Node::File { .. }) => {}
            Some(_) => return Err(failure("not a file")),
            None if mode != OpenMode::CreateNew => return Err(no_such_file()),
            None => {
                st.nodes.insert(
                    path.to_vec(),
                    Node::File {
                        data: Vec::new(),
                        mode: perm.unwrap_or(0o644) & 0o7777,
                        mtime: 1_700_000_000,
                    },
                );
                st.history.push((path.to_vec(), 0));
            }
        }
        if mode == OpenMode::CreateNew {
            if let Some(Node::File { data, .. }) = st.nodes.get_mut(path) {
                data.clear();
            }
        }
        let raw = self
            .next_handle
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes()
            .to_vec();
        st.handles.insert(raw.clone(), path.to_vec());
        Ok(Handle { raw, generation: 1 })
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

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
                mtime: 1_700_000_000,
            },
        );
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

    /// READ requests (64 KiB each, as the SFTP implementation sends them)
    /// that started at or past end of file: what a server logs as
    /// "requested read offset greater than size".
    pub fn reads_past_eof(&self) -> usize {
        self.st().reads_past_eof
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

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.st().injections.clear();
    }

    fn enter(&self, op: &'static str) -> RResult<MutexGuard<'_, State>> {
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.contains(&op) {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                while held.contains(&op) {
                    held = self.unheld.wait(held).unwrap_or_else(|e| e.into_inner());
                }
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let mut st = self.st();
        *st.calls.entry(op).or_insert(0) += 1;
        if let Some(i) = st.injections.iter().position(|inj| inj.op == op) {
            let inj = &mut st.injections[i];
            if inj.skip > 0 {
                inj.skip -= 1;
            } else {
                let error = inj.error.clone();
                if inj.times != usize::MAX {
                    inj.times -= 1;
                    if inj.times == 0 {
                        st.injections.remove(i);
                    }
                }
                return Err(error);
            }
        }
        Ok(st)
    }

    fn list(&self, dir: &[u8]) -> Vec<(Vec<u8>, Node)> {
        let st = self.st();
        let mut prefix = dir.to_vec();
        if !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        st.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains(&b'/') && k.len() > prefix.len())
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
            .collect()
    }
}

fn meta_of(node: &Node) -> Meta {
    let (kind, perm, size, mtime) = match node {
        Node::File { data, mode, mtime } => (Kind::File, *mode, data.len() as u64, *mtime),
        Node::Dir { mode } => (Kind::Dir, *mode, 4096, 1_700_000_000),
        Node::Symlink { target } => (Kind::Symlink, 0o777, target.len() as u64, 1_700_000_000),
    };
    Meta {
        kind: Some(kind),
        permissions: Some(perm),
        size: Some(size),
        uid: Some(1000),
        gid: Some(1000),
        atime: Some(mtime),
        mtime: Some(mtime),
    }
}

impl Remote for MockRemote {
    fn handle_alive(&self, handle: &Handle) -> bool {
        self.st().handles.contains_key(&handle.raw)
    }

    fn lstat(&self, path: &[u8]) -> RResult<Meta> {
        let st = self.enter("lstat")?;
        st.nodes.get(path).map(meta_of).ok_or_else(no_such_file)
    }

    fn stat(&self, path: &[u8]) -> RResult<Meta> {
        let st = self.enter("stat")?;
        st.nodes.get(path).map(meta_of).ok_or_else(no_such_file)
    }

    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>> {
        {
            let st = self.enter("read_dir")?;
            if !matches!(st.nodes.get(path), Some(Node::Dir { .. })) {
                return Err(no_such_file());
            }
        }
        Ok(self
            .list(path)
            .into_iter()
            .map(|(name, node)| DirEntry {
                name,
                meta: meta_of(&node),
            })
            .collect())
    }

    fn open_read(&self, path: &[u8]) -> RResult<Handle> {
        self.open(path, OpenMode::Read, None)
    }

    fn create_new(&self, path: &[u8], perm: Option<u32>) -> RResult<Handle> {
        self.open(path, OpenMode::CreateNew, perm)
    }

    fn read(&self, handle: &Handle, offset: u64, len: u32) -> RResult<Vec<u8>> {
        let st = self.enter("read")?;
        let path = st
            .handles
            .get(&handle.raw)
            .ok_or(RemoteError::StaleHandle)?;
        match st.nodes.get(path) {
            Some(Node::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + len as usize).min(data.len());
                let out = data[start..end].to_vec();
                // The SFTP implementation splits a read into 64 KiB READs:
                // count those that start at or past end of file.
                let size = data.len() as u64;
                let requests = u64::from(len).div_ceil(READ_REQUEST).max(1);
                let inside = size.saturating_sub(offset).div_ceil(READ_REQUEST);
                let past = requests.saturating_sub(inside) as usize;
                drop(st);
                self.st().reads_past_eof += past;
                Ok(out)
            }
            _ => Err(no_such_file()),
        }
    }

    fn write(&self, handle: &Handle, offset: u64, data: &[u8]) -> RResult<()> {
        let mut st = self.enter("write")?;
        let path = st
            .handles
            .get(&handle.raw)
            .cloned()
            .ok_or(RemoteError::StaleHandle)?;
        match st.nodes.get_mut(&path) {
            Some(Node::File { data: file, .. }) => {
                let end = offset as usize + data.len();
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[offset as usize..end].copy_from_slice(data);
                Ok(())
            }
            // Written through a handle whose file was removed: the bytes go
            // to an unlinked inode, as on a real server.
            _ => Ok(()),
        }
    }

    fn write_from(
        &self,
        handles: &[Handle],
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> RResult<()> {
        // 64 KiB chunks dealt round-robin over the handles, as the SFTP
        // implementation spreads them over connections. Like it, every
        // chunk is taken from `source` before the first WRITE is answered
        // (the real window holds 64 chunks; tests stay below that).
        const CHUNK: u64 = 64 * 1024;
        let mut chunks = Vec::new();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            let mut buf = vec![0u8; n as usize];
            source(offset + done, &mut buf).map_err(|e| RemoteError::Protocol(e.to_string()))?;
            chunks.push((offset + done, buf));
            done += n;
        }
        for (turn, (at, buf)) in chunks.into_iter().enumerate() {
            let handle = handles
                .get(turn % handles.len().max(1))
                .ok_or_else(|| RemoteError::Protocol("write without a handle".into()))?;
            self.write(handle, at, &buf)?;
        }
        Ok(())
    }

    /// The mock has "another connection" whenever asked.
    fn open_twin(&self, path: &[u8], _of: &Handle) -> RResult<Option<Handle>> {
        drop(self.enter("open_twin")?);
        self.open(path, OpenMode::Write, None).map(Some)
    }

    fn close(&self, handle: &Handle) -> RResult<()> {
        let mut st = self.enter("close")?;
        st.handles
            .remove(&handle.raw)
            .map(|_| ())
            .ok_or(RemoteError::StaleHandle)
    }

    fn commit(
        &self,
        handle: &Handle,
        set: Option<&Meta>,
        from: &[u8],
        to: &[u8],
        replace: bool,
    ) -> RResult<Committed> {
        let setstat_error = match set {
            Some(a) => self.setstat(from, a).err(),
            None => None,
        };
        // FSTAT on the handle, in the same batch as the close.
        let meta = self.enter("fstat")?.nodes.get(from).map(meta_of);
        self.close(handle)?;
        if replace {
            self.rename(from, to)?;
        } else {
            self.rename_noreplace(from, to)?;
        }
        Ok(Committed {
            setstat_error,
            meta,
        })
    }

    fn fsync(&self, handle: &Handle) -> RResult<()> {
        let st = self.enter("fsync")?;
        if st.handles.contains_key(&handle.raw) {
            Ok(())
        } else {
            Err(RemoteError::StaleHandle)
        }
    }

    fn setstat(&self, path: &[u8], meta: &Meta) -> RResult<()> {
        let mut st = self.enter("setstat")?;
        match st.nodes.get_mut(path) {
            Some(Node::File { mode, mtime, data }) => {
                if let Some(p) = meta.permissions {
                    *mode = p & 0o7777;
                }
                if let Some(m) = meta.mtime {
                    *mtime = m;
                }
                if let Some(size) = meta.size {
                    data.resize(size as usize, 0);
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(no_such_file()),
        }
    }

    fn remove(&self, path: &[u8]) -> RResult<()> {
        let mut st = self.enter("remove")?;
        match st.nodes.get(path) {
            Some(Node::Dir { .. }) => Err(failure("is a directory")),
            Some(_) => {
                st.nodes.remove(path);
                Ok(())
            }
            None => Err(no_such_file()),
        }
    }

    fn mkdir(&self, path: &[u8], _perm: u32) -> RResult<()> {
        let mut st = self.enter("mkdir")?;
        if st.nodes.contains_key(path) {
            return Err(failure("exists"));
        }
        st.nodes.insert(path.to_vec(), Node::Dir { mode: 0o755 });
        Ok(())
    }

    fn rmdir(&self, path: &[u8]) -> RResult<()> {
        {
            let st = self.enter("rmdir")?;
            if !matches!(st.nodes.get(path), Some(Node::Dir { .. })) {
                return Err(no_such_file());
            }
        }
        if !self.list(path).is_empty() {
            return Err(failure("not empty"));
        }
        self.st().nodes.remove(path);
        Ok(())
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        let mut st = self.enter("rename")?;
        let node = st.nodes.remove(from).ok_or_else(no_such_file)?;
        if let Node::File { data, .. } = &node {
            let n = data.len();
            st.history.push((to.to_vec(), n));
        }
        st.nodes.insert(to.to_vec(), node);
        Ok(())
    }

    fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        {
            let st = self.enter("rename_noreplace")?;
            if st.nodes.contains_key(to) {
                return Err(RemoteError::AlreadyExists("target exists".into()));
            }
            if !st.nodes.contains_key(from) {
                return Err(no_such_file());
            }
        }
        self.rename(from, to)
    }

    fn readlink(&self, path: &[u8]) -> RResult<Vec<u8>> {
        let st = self.enter("readlink")?;
        match st.nodes.get(path) {
            Some(Node::Symlink { target }) => Ok(target.clone()),
            Some(_) => Err(failure("not a link")),
            None => Err(no_such_file()),
        }
    }

    fn symlink(&self, link_path: &[u8], target: &[u8]) -> RResult<()> {
        let mut st = self.enter("symlink")?;
        if st.nodes.contains_key(link_path) {
            return Err(failure("exists"));
        }
        st.nodes.insert(
            link_path.to_vec(),
            Node::Symlink {
                target: target.to_vec(),
            },
        );
        Ok(())
    }

    fn hardlink(&self, _from: &[u8], _to: &[u8]) -> RResult<()> {
        Err(RemoteError::Unsupported("hardlink@openssh.com".into()))
    }

    fn replace_mode(&self) -> crate::remote::ReplaceMode {
        self.st()
            .replace_mode
            .unwrap_or(crate::remote::ReplaceMode::Atomic)
    }

    fn statvfs(&self, _path: &[u8]) -> RResult<SpaceStats> {
        let _st = self.enter("statvfs")?;
        Ok(SpaceStats {
            block_size: 4096,
            fragment_size: 4096,
            blocks: 1000,
            blocks_free: 500,
            blocks_available: 400,
            files: 100,
            files_free: 50,
            name_max: 255,
        })
    }

    fn realpath(&self, path: &[u8]) -> RResult<Vec<u8>> {
        let _st = self.enter("realpath")?;
        Ok(path.to_vec())
    }
}
