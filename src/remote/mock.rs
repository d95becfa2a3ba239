//! An in-memory `Remote` with failure injection, for unit tests of the
//! filesystem semantics and the upload state machine (the mountpoint-s3
//! pattern: the same `fs` code runs on this fake and on real SFTP).
//!
//! It behaves like OpenSSH's sftp-server where that matters, errors arriving
//! as `remote::sftp` converts that server's status codes (sftp-server.c
//! `errno_to_portable`: ENOENT/ENOTDIR/ELOOP are NO_SUCH_FILE -> `NotFound`,
//! EACCES is PERMISSION_DENIED, EINVAL is BAD_MESSAGE -> `Other`, EEXIST,
//! ENOTEMPTY, EISDIR are FAILURE -> `Failure`). tests/remote_contract.rs runs
//! one test body on this mock and on OpenSSH to keep the two alike; where
//! they differ, the mock is the one to fix.
//!
//! Known simplifications: a hard link is a copy (a later write through one
//! name does not show through the other); ownership is not modelled (the
//! account owns every file, so only the owner permission bits count);
//! `open_twin` always has "another connection" (OpenSSH over loopback gets
//! none), so the filesystem's two-connection paths run in unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

mod control;

use crate::remote::{
    Committed, DirEntry, Handle, Kind, Meta, RResult, Remote, RemoteError, SpaceStats, Twin,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        atime: u32,
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
    /// The current connection: handles carry the generation that issued
    /// them and die with it (`lose_connection`).
    generation: u64,
    /// (folder, name) listed verbatim (`put_odd_entry`).
    odd_entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The attributes of the last SETSTAT, as sent.
    last_setstat: Option<Meta>,
    /// Reads that asked for bytes past the end of the file, in SFTP READ
    /// requests of `sftp::IO_CHUNK`-like 64 KiB (what a server would log).
    reads_past_eof: usize,
    /// Bytes read through each handle (`read_through`).
    read_bytes: HashMap<Vec<u8>, usize>,
    /// Capability switch: how this mock server says replaces will go.
    replace_mode: Option<crate::remote::ReplaceMode>,
    /// `open_read_pair` opens a second handle (a second connection is up).
    twin_reads: bool,
    /// `open_twin` calls still to answer `Later` (a second connection
    /// opening).
    twins_later: usize,
    /// How `create_new_striped` goes: None, as the trait's default (no
    /// twins tried); Some(true), twins opened beside the create; Some(false),
    /// their OPENs reached the server before the file (`Later`).
    twins_beside_creates: Option<bool>,
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

fn permission_denied() -> RemoteError {
    RemoteError::PermissionDenied("Permission denied".into())
}

/// What the server's file times start at.
const EPOCH: u32 = 1_700_000_000;

/// A symlink chain longer than this is ELOOP (NO_SUCH_FILE), as in Linux.
const MAX_SYMLINKS: usize = 40;

/// `path` with `.` and `..` components resolved and a relative path taken
/// from the account's home `/root` (what OpenSSH's REALPATH does, short of
/// following symlinks).
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let start: &[u8] = if path.starts_with(b"/") {
        b""
    } else {
        b"/root"
    };
    for c in start
        .split(|&b| b == b'/')
        .chain(path.split(|&b| b == b'/'))
    {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
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
        st.generation = 1;
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
        // Opening an existing file follows symlinks; O_EXCL does not.
        let resolved;
        let path = if mode == OpenMode::CreateNew {
            path
        } else {
            resolved = st.resolve(path)?;
            &resolved
        };
        if !st.is_dir(parent(path)) {
            return Err(no_such_file());
        }
        match st.nodes.get(path) {
            Some(Node::File { .. }) if mode == OpenMode::CreateNew => {
                return Err(failure("exists"))
            }
            // The account owns its files: open(2) checks the owner bits.
            Some(Node::File { mode: m, .. }) if mode == OpenMode::Read && m & 0o400 == 0 => {
                return Err(permission_denied())
            }
            Some(Node::File { mode: m, .. }) if mode == OpenMode::Write && m & 0o200 == 0 => {
                return Err(permission_denied())
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
                        atime: EPOCH,
                        mtime: EPOCH,
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
        Ok(Handle {
            raw,
            generation: st.generation,
        })
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

impl State {
    fn is_dir(&self, path: &[u8]) -> bool {
        matches!(self.nodes.get(path), Some(Node::Dir { .. }))
    }

    /// The path `path` leads to after following symlinks (stat(2), open(2));
    /// relative link targets are taken from the link's folder. A dangling
    /// link leads to its missing target.
    fn resolve(&self, path: &[u8]) -> RResult<Vec<u8>> {
        let mut path = path.to_vec();
        for _ in 0..MAX_SYMLINKS {
            match self.nodes.get(&path) {
                Some(Node::Symlink { target }) => {
                    path = if target.starts_with(b"/") {
                        normalize(target)
                    } else {
                        let mut p = parent(&path).to_vec();
                        p.push(b'/');
                        p.extend_from_slice(target);
                        normalize(&p)
                    };
                }
                _ => return Ok(path),
            }
        }
        Err(no_such_file())
    }

    /// The node at `path`, following symlinks.
    fn follow(&self, path: &[u8]) -> RResult<&Node> {
        let path = self.resolve(path)?;
        self.nodes.get(&path).ok_or_else(no_such_file)
    }

    /// Whether `dir` has entries.
    fn has_children(&self, dir: &[u8]) -> bool {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

fn meta_of(node: &Node) -> Meta {
    let (kind, perm, size, atime, mtime) = match node {
        Node::File {
            data,
            mode,
            atime,
            mtime,
        } => (Kind::File, *mode, data.len() as u64, *atime, *mtime),
        Node::Dir { mode } => (Kind::Dir, *mode, 4096, EPOCH, EPOCH),
        Node::Symlink { target } => (Kind::Symlink, 0o777, target.len() as u64, EPOCH, EPOCH),
    };
    Meta {
        kind: Some(kind),
        permissions: Some(perm),
        size: Some(size),
        uid: Some(1000),
        gid: Some(1000),
        atime: Some(atime),
        mtime: Some(mtime),
    }
}

impl Remote for MockRemote {
    /// Like the real pool: a handle lives as long as its connection
    /// (closing it does not make its connection dead).
    fn handle_alive(&self, handle: &Handle) -> bool {
        handle.generation == self.st().generation
    }

    fn lstat(&self, path: &[u8]) -> RResult<Meta> {
        let st = self.enter("lstat")?;
        st.nodes.get(path).map(meta_of).ok_or_else(no_such_file)
    }

    fn stat(&self, path: &[u8]) -> RResult<Meta> {
        let st = self.enter("stat")?;
        st.follow(path).map(meta_of)
    }

    fn read_dir(&self, path: &[u8]) -> RResult<Vec<DirEntry>> {
        let odd: Vec<Vec<u8>> = {
            let st = self.enter("read_dir")?;
            if !matches!(st.nodes.get(path), Some(Node::Dir { .. })) {
                return Err(no_such_file());
            }
            st.odd_entries
                .iter()
                .filter(|(d, _)| d == path)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let file = Node::File {
            data: Vec::new(),
            mode: 0o644,
            atime: 1_700_000_000,
            mtime: 1_700_000_000,
        };
        Ok(self
            .list(path)
            .into_iter()
            .chain(odd.into_iter().map(|n| (n, file.clone())))
            .map(|(name, node)| DirEntry {
                name,
                meta: meta_of(&node),
            })
            .collect())
    }

    fn open_read(&self, path: &[u8]) -> RResult<Handle> {
        self.open(path, OpenMode::Read, None)
    }

    fn lstat_open_read(&self, path: &[u8]) -> RResult<(Meta, Option<Handle>)> {
        let meta = self.lstat(path)?;
        // OPEN follows a symlink, as sftp-server's does; a folder fails.
        Ok((meta, self.open(path, OpenMode::Read, None).ok()))
    }

    fn open_read_pair(&self, path: &[u8]) -> RResult<(Handle, Option<Handle>)> {
        let main = self.open_read(path)?;
        if !self.st().twin_reads {
            return Ok((main, None));
        }
        drop(self.enter("open_read_twin")?);
        Ok((main, Some(self.open(path, OpenMode::Read, None)?)))
    }

    fn create_new(&self, path: &[u8], perm: Option<u32>) -> RResult<Handle> {
        self.open(path, OpenMode::CreateNew, perm)
    }

    fn create_new_striped(&self, path: &[u8], perm: Option<u32>) -> RResult<(Handle, Twin)> {
        let beside = self.enter("create_new_striped")?.twins_beside_creates;
        let handle = self.open(path, OpenMode::CreateNew, perm)?;
        let twin = match beside {
            Some(true) => Twin::Opened(vec![self.open(path, OpenMode::Write, None)?]),
            Some(false) | None => Twin::Later,
        };
        Ok((handle, twin))
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
                let mut st = self.st();
                st.reads_past_eof += past;
                *st.read_bytes.entry(handle.raw.clone()).or_insert(0) += out.len();
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
        more: &mut dyn FnMut(u64) -> u64,
        queued: &mut dyn FnMut(),
    ) -> RResult<()> {
        // 64 KiB chunks dealt round-robin over the handles, as the SFTP
        // implementation spreads them over connections. Like it, every
        // chunk is taken from `source` before the first WRITE is answered
        // (the real window holds 64 chunks; tests stay below that), and
        // `more` is asked each time all of them are taken.
        const CHUNK: u64 = 64 * 1024;
        // Sends, counted (not a fault point): tests tell one send of a
        // whole file from several.
        *self.st().calls.entry("write_from").or_insert(0) += 1;
        if handles.len() > 1 {
            // Counted, so tests can tell a striped upload from one over a
            // single connection.
            if let Err(e) = self.enter("write_striped") {
                queued();
                return Err(e);
            }
        }
        let mut chunks = Vec::new();
        let mut done = 0u64;
        let mut len = len;
        loop {
            while done < len {
                let n = (len - done).min(CHUNK);
                let mut buf = vec![0u8; n as usize];
                let read = source(offset + done, &mut buf);
                if let Err(e) = read {
                    queued();
                    return Err(RemoteError::Protocol(e.to_string()));
                }
                chunks.push((offset + done, buf));
                done += n;
            }
            let end = more(offset + len);
            if end <= offset + len {
                break;
            }
            len = end - offset;
        }
        // Every chunk is taken; the WRITEs below are "on the wire".
        queued();
        for (turn, (at, buf)) in chunks.into_iter().enumerate() {
            let handle = handles
                .get(turn % handles.len().max(1))
                .ok_or_else(|| RemoteError::Protocol("write without a handle".into()))?;
            self.write(handle, at, &buf)?;
        }
        Ok(())
    }

    /// The mock has "another connection" whenever asked.
    fn open_twin(&self, path: &[u8], _of: &Handle) -> RResult<Twin> {
        let mut st = self.enter("open_twin")?;
        if st.twins_later > 0 {
            st.twins_later -= 1;
            return Ok(Twin::Later);
        }
        drop(st);
        self.open(path, OpenMode::Write, None)
            .map(|h| Twin::Opened(vec![h]))
    }

    fn close(&self, handle: &Handle) -> RResult<()> {
        let mut st = self.enter("close")?;
        st.handles
            .remove(&handle.raw)
            .map(|_| ())
            .ok_or(RemoteError::StaleHandle)
    }

    /// Counted apart from `close`, as the SFTP implementation sends it
    /// without waiting for the reply.
    fn close_quietly(&self, handle: &Handle) {
        if let Ok(mut st) = self.enter("close_quietly") {
            st.handles.remove(&handle.raw);
        }
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
        st.last_setstat = Some(meta.clone());
        match st.nodes.get_mut(path) {
            Some(Node::File {
                mode,
                atime,
                mtime,
                data,
            }) => {
                if let Some(p) = meta.permissions {
                    *mode = p & 0o7777;
                }
                // SFTP v3 sets atime and mtime together (filexfer-02 5).
                if let (Some(a), Some(m)) = (meta.atime, meta.mtime) {
                    *atime = a;
                    *mtime = m;
                }
                if let Some(size) = meta.size {
                    data.resize(size as usize, 0);
                }
                Ok(())
            }
            Some(Node::Dir { mode }) => {
                if let Some(p) = meta.permissions {
                    *mode = p & 0o7777;
                }
                Ok(())
            }
            // SETSTAT follows a symlink; links themselves keep 0o777.
            Some(Node::Symlink { .. }) => Ok(()),
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

    fn mkdir(&self, path: &[u8], perm: u32) -> RResult<Option<Meta>> {
        {
            let mut st = self.enter("mkdir")?;
            if st.nodes.contains_key(path) {
                return Err(failure("exists"));
            }
            if !st.is_dir(parent(path)) {
                return Err(no_such_file());
            }
            st.nodes.insert(
                path.to_vec(),
                Node::Dir {
                    mode: perm & 0o7777,
                },
            );
        }
        // The LSTAT sent in the same batch; `fail("mkdir_lstat", ..)`
        // makes it go unanswered, as a server answering out of order would.
        Ok(self
            .enter("mkdir_lstat")
            .ok()
            .and_then(|st| st.nodes.get(path).map(meta_of)))
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

    /// posix-rename: rename(2), replacing `to`.
    fn rename(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        let mut st = self.enter("rename")?;
        let from_dir = match st.nodes.get(from) {
            None => return Err(no_such_file()),
            Some(node) => matches!(node, Node::Dir { .. }),
        };
        if !st.is_dir(parent(to)) {
            return Err(no_such_file());
        }
        if from == to {
            return Ok(());
        }
        match st.nodes.get(to) {
            // EISDIR
            Some(Node::Dir { .. }) if !from_dir => return Err(failure("is a directory")),
            // ENOTEMPTY
            Some(Node::Dir { .. }) if st.has_children(to) => return Err(failure("not empty")),
            // ENOTDIR
            Some(_) if from_dir => return Err(no_such_file()),
            _ => {}
        }
        if from_dir && to.starts_with(from) && to.get(from.len()) == Some(&b'/') {
            // EINVAL: a folder into itself.
            return Err(RemoteError::Other("Bad message".into()));
        }
        let node = st.nodes.remove(from).ok_or_else(no_such_file)?;
        if let Node::File { data, .. } = &node {
            let n = data.len();
            st.history.push((to.to_vec(), n));
        }
        st.nodes.insert(to.to_vec(), node);
        if from_dir {
            // The folder's contents move with it.
            let mut prefix = from.to_vec();
            prefix.push(b'/');
            let inside: Vec<Vec<u8>> = st
                .nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .collect();
            for old in inside {
                if let Some(node) = st.nodes.remove(&old) {
                    let mut new = to.to_vec();
                    new.extend_from_slice(&old[from.len()..]);
                    st.nodes.insert(new, node);
                }
            }
        }
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
            // readlink(2) EINVAL: BAD_MESSAGE.
            Some(_) => Err(RemoteError::Other("Bad message".into())),
            None => Err(no_such_file()),
        }
    }

    fn symlink(&self, link_path: &[u8], target: &[u8]) -> RResult<()> {
        let mut st = self.enter("symlink")?;
        if st.nodes.contains_key(link_path) {
            return Err(failure("exists"));
        }
        if !st.is_dir(parent(link_path)) {
            return Err(no_such_file());
        }
        st.nodes.insert(
            link_path.to_vec(),
            Node::Symlink {
                target: target.to_vec(),
            },
        );
        Ok(())
    }

    /// hardlink@openssh.com, as OpenSSH offers it; the new name gets a copy
    /// (see the module notes).
    fn hardlink(&self, from: &[u8], to: &[u8]) -> RResult<()> {
        let mut st = self.enter("hardlink")?;
        let node = match st.nodes.get(from) {
            Some(node @ Node::File { .. }) => node.clone(),
            // link(2) of a folder: EPERM.
            Some(_) => return Err(permission_denied()),
            None => return Err(no_such_file()),
        };
        if st.nodes.contains_key(to) {
            return Err(failure("exists"));
        }
        if !st.is_dir(parent(to)) {
            return Err(no_such_file());
        }
        st.nodes.insert(to.to_vec(), node);
        Ok(())
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
        Ok(normalize(path))
    }
}
