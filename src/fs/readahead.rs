//! Sequential read-ahead for files read through a remote handle.
//!
//! The kernel's own read-ahead keeps at most `max_readahead` (1 MiB) in
//! flight, so across a WAN round trip that window, not the link, limits a
//! download. When a handle is read sequentially, coupafs fetches the next
//! blocks itself, on a small worker pool, with a window that doubles up to
//! `MAX_WINDOW` while the pattern holds. A random read resets the window; blocks behind the
//! reader are dropped, so memory per handle stays bounded.
//!
//! A file whose size is known at open and at most `WHOLE_FILE_MAX` (Coupa
//! caps a file at 8 MB) is requested whole right at open, all its READs in
//! flight at once: the data then costs one round trip after the OPEN,
//! instead of a window ramping up behind the kernel's own requests. With
//! the file also open on a second connection (a twin handle), every other
//! part of that fetch goes over it, so two connections share the transfer.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Condvar, Mutex};

use crate::remote::{Handle, RResult, Remote};

/// Bytes per read-ahead block.
pub(crate) const BLOCK: u64 = 1 << 20;
/// Most blocks fetched ahead of the reader.
const MAX_WINDOW: u64 = 6;
/// Files of at most this many bytes are requested whole at open. All of
/// it is in flight on the handle's one SSH channel at once, so it must
/// stay below the receive window coupafs opens that channel with (16 MiB,
/// ssh/session.rs): beyond it the server would stall until we read.
pub(crate) const WHOLE_FILE_MAX: u64 = 8 << 20;
/// A read at or past the known size asks for at most this much: one SFTP
/// READ (the implementation sends 64 KiB per request), which confirms end
/// of file or finds bytes the file gained since it was opened.
const CONFIRM_LEN: u32 = 64 * 1024;

use crate::sync::lock;

/// One block being fetched or fetched.
struct Block {
    data: Mutex<Option<RResult<Arc<Vec<u8>>>>>,
    ready: Condvar,
}

impl Block {
    fn wait(&self) -> RResult<Arc<Vec<u8>>> {
        let mut slot = lock(&self.data);
        loop {
            if let Some(r) = slot.as_ref() {
                return r.clone();
            }
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn fill(&self, r: RResult<Arc<Vec<u8>>>) {
        *lock(&self.data) = Some(r);
        self.ready.notify_all();
    }
}

struct Job {
    remote: Arc<dyn Remote>,
    handle: Handle,
    /// First block of the job.
    index: u64,
    /// Bytes inside the known size from that block on (a block at the end of the
    /// file is fetched only up to it: no READs past end of file).
    len: u32,
    /// Consecutive blocks filled by one read (one pipelined batch of
    /// READs): several for a whole-file fetch, so that all of a file fits
    /// in the workers at once.
    blocks: Vec<Arc<Block>>,
}

impl Job {
    fn run(self) {
        let r = self.remote.read(&self.handle, self.index * BLOCK, self.len);
        if let [block] = self.blocks.as_slice() {
            block.fill(r.map(Arc::new));
            return;
        }
        for (i, block) in self.blocks.iter().enumerate() {
            block.fill(match &r {
                Ok(data) => {
                    let start = (i * BLOCK as usize).min(data.len());
                    let end = (start + BLOCK as usize).min(data.len());
                    Ok(Arc::new(data[start..end].to_vec()))
                }
                Err(e) => Err(e.clone()),
            });
        }
    }
}

fn new_block() -> Arc<Block> {
    Arc::new(Block {
        data: Mutex::new(None),
        ready: Condvar::new(),
    })
}

/// Workers shared by every handle of a mount.
pub(crate) struct Pool {
    tx: Mutex<mpsc::Sender<Job>>,
    workers: usize,
}

impl Pool {
    pub(crate) fn new(workers: usize) -> Arc<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("read-ahead-{i}"))
                .spawn(move || loop {
                    let job = lock(&rx).recv();
                    let Ok(job) = job else { return };
                    job.run();
                });
        }
        Arc::new(Pool {
            tx: Mutex::new(tx),
            workers: workers.max(1),
        })
    }

    fn submit(&self, job: Job) -> bool {
        lock(&self.tx).send(job).is_ok()
    }
}

/// Read-ahead state of one open handle.
#[derive(Default)]
pub(crate) struct ReadAhead {
    blocks: BTreeMap<u64, Arc<Block>>,
    /// Offset the next sequential read would start at.
    next: u64,
    /// Blocks to keep in flight ahead of the reader (0 = not sequential).
    window: u64,
    /// File size seen at open: nothing is prefetched past it.
    size_hint: u64,
    /// The whole file was requested at open: every read is served from
    /// the blocks, whatever its order.
    whole: bool,
    /// The same file opened on a second connection (`open_read_pair`):
    /// a whole-file fetch sends every other job over it.
    twin: Option<Handle>,
}

impl ReadAhead {
    #[cfg(test)]
    pub(crate) fn new(size_hint: u64) -> Self {
        Self::with_twin(size_hint, None)
    }

    /// With a second handle on another connection for the whole-file fetch.
    pub(crate) fn with_twin(size_hint: u64, twin: Option<Handle>) -> Self {
        Self {
            size_hint,
            twin,
            ..Self::default()
        }
    }

    /// The second handle, for the caller to close (release, or a re-open
    /// after a lost connection).
    pub(crate) fn take_twin(&mut self) -> Option<Handle> {
        self.twin.take()
    }

    /// Requests the whole file at once when its known size is at most
    /// `WHOLE_FILE_MAX` (called right after open, before the kernel's first
    /// read arrives). Returns whether it did.
    pub(crate) fn fetch_whole(
        state: &Mutex<ReadAhead>,
        pool: &Pool,
        remote: &Arc<dyn Remote>,
        handle: &Handle,
    ) -> bool {
        let mut st = lock(state);
        let size = st.size_hint;
        if size == 0 || size > WHOLE_FILE_MAX || st.whole {
            return false;
        }
        let count = size.div_ceil(BLOCK);
        // As few jobs as there are workers, so every READ leaves at once.
        let per_job = count.div_ceil(pool.workers as u64).max(1);
        let mut first = 0;
        let mut on_twin = false;
        while first < count {
            let n = per_job.min(count - first);
            let blocks: Vec<Arc<Block>> = (0..n).map(|_| new_block()).collect();
            let len = (size - first * BLOCK).min(n * BLOCK) as u32;
            // Every other job over the second connection: the reader's
            // first blocks arrive over both at once.
            let over = match (&st.twin, on_twin) {
                (Some(t), true) => t.clone(),
                _ => handle.clone(),
            };
            on_twin = !on_twin;
            let job = Job {
                remote: remote.clone(),
                handle: over,
                index: first,
                len,
                blocks: blocks.clone(),
            };
            if !pool.submit(job) {
                break;
            }
            for (i, b) in (first..).zip(blocks) {
                st.blocks.insert(i, b);
            }
            first += n;
        }
        st.whole = true;
        st.window = count;
        true
    }

    /// Serves `len` bytes at `offset`, prefetching when the reads are
    /// sequential. Falls back to a direct read when nothing is prefetched.
    ///
    /// Nothing is requested past the size known at open (the kernel asks
    /// for whole pages and up to `max_read` at once, and a server logs
    /// every READ past end of file): a read crossing it is cut there, and a
    /// read at or past it is one confirming READ, which also finds bytes
    /// the file gained meanwhile.
    pub(crate) fn read(
        state: &Mutex<ReadAhead>,
        pool: &Pool,
        remote: &Arc<dyn Remote>,
        handle: &Handle,
        offset: u64,
        len: u32,
    ) -> RResult<Vec<u8>> {
        let size = lock(state).size_hint;
        if offset >= size {
            let data = remote.read(handle, offset, len.min(CONFIRM_LEN))?;
            if !data.is_empty() {
                // The file grew since it was opened: its size is unknown now.
                let mut st = lock(state);
                st.size_hint = u64::MAX;
                st.window = 0;
                st.whole = false;
                st.blocks.clear();
            }
            return Ok(data);
        }
        let len = u32::try_from(u64::from(len).min(size - offset)).unwrap_or(len);
        let first = offset / BLOCK;
        let last = (offset + u64::from(len).max(1) - 1) / BLOCK;
        let wanted: Vec<(u64, Arc<Block>)> = {
            let mut st = lock(state);
            if st.whole {
                // Everything was requested at open, in any order the
                // reader likes; a block missing here failed and is read
                // directly below.
                st.next = st.next.max(offset + u64::from(len));
                Some(
                    (first..=last)
                        .filter_map(|i| st.blocks.get(&i).map(|b| (i, b.clone())))
                        .collect(),
                )
            } else {
                // The kernel sends its own read-ahead requests from several
                // threads, so "sequential" allows some reordering around `next`.
                let slack = 4 * BLOCK;
                let sequential =
                    offset + slack >= st.next && offset <= st.next + slack && st.size_hint > BLOCK;
                if sequential {
                    st.window = (st.window * 2).clamp(2, MAX_WINDOW);
                } else {
                    st.window = 0;
                    st.blocks.clear();
                }
                st.next = st.next.max(offset + u64::from(len));
                let end_block = st.size_hint.div_ceil(BLOCK);
                if st.window == 0 {
                    None
                } else {
                    // Drop blocks behind the reader; request the window ahead.
                    st.blocks.retain(|&i, _| i >= first);
                    let last_block = end_block.saturating_sub(1).max(last);
                    let known_size = st.size_hint;
                    for i in first..=(last + st.window).min(last_block) {
                        if let std::collections::btree_map::Entry::Vacant(slot) = st.blocks.entry(i)
                        {
                            let block = new_block();
                            let queued = pool.submit(Job {
                                remote: remote.clone(),
                                handle: handle.clone(),
                                index: i,
                                len: known_size.saturating_sub(i * BLOCK).min(BLOCK) as u32,
                                blocks: vec![block.clone()],
                            });
                            if !queued {
                                break;
                            }
                            slot.insert(block);
                        }
                    }
                    Some(
                        (first..=last)
                            .filter_map(|i| st.blocks.get(&i).map(|b| (i, b.clone())))
                            .collect(),
                    )
                }
            }
        }
        .unwrap_or_default();
        if wanted.len() as u64 != last - first + 1 {
            return remote.read(handle, offset, len);
        }
        let mut out = Vec::with_capacity(len as usize);
        for (i, block) in wanted {
            let data = match block.wait() {
                Ok(d) => d,
                Err(e) => {
                    lock(state).blocks.remove(&i);
                    return Err(e);
                }
            };
            let start = if i == first { offset - i * BLOCK } else { 0 } as usize;
            let end = ((offset + u64::from(len)) - i * BLOCK).min(BLOCK) as usize;
            if start >= data.len() {
                break;
            }
            out.extend_from_slice(&data[start..end.min(data.len())]);
            if data.len() < BLOCK as usize {
                break; // end of file inside this block
            }
        }
        Ok(out)
    }

    /// Forgets everything (the handle was re-opened).
    pub(crate) fn reset(&mut self) {
        self.blocks.clear();
        self.whole = false;
        self.window = 0;
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::mock::MockRemote;

    fn setup(size: usize) -> (Arc<dyn Remote>, Arc<MockRemote>, Handle, Vec<u8>) {
        let mock = Arc::new(MockRemote::new());
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        mock.put_file("/root/f.bin", &data);
        let handle = mock.open_read(b"/root/f.bin").expect("open");
        let remote: Arc<dyn Remote> = mock.clone();
        (remote, mock, handle, data)
    }

    #[test]
    fn sequential_reads_are_correct_and_prefetched() {
        let size = 5 * BLOCK as usize + 12_345;
        let (remote, mock, handle, data) = setup(size);
        let pool = Pool::new(2);
        let state = Mutex::new(ReadAhead::new(size as u64));
        let mut got = Vec::new();
        let step = 128 * 1024;
        let mut offset = 0u64;
        loop {
            let chunk =
                ReadAhead::read(&state, &pool, &remote, &handle, offset, step).expect("read");
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "content differs");
        // Whole 1 MiB blocks were fetched, not one request per 128 KiB read.
        assert!(mock.calls("read") <= 8, "reads: {}", mock.calls("read"));
    }

    #[test]
    fn random_reads_bypass_read_ahead_and_stay_correct() {
        let size = 3 * BLOCK as usize;
        let (remote, _mock, handle, data) = setup(size);
        let pool = Pool::new(2);
        let state = Mutex::new(ReadAhead::new(size as u64));
        for &(offset, len) in &[
            (2_500_000u64, 4096u32),
            (10, 100),
            (1_048_570, 20),
            (3_145_700, 4096),
        ] {
            let got = ReadAhead::read(&state, &pool, &remote, &handle, offset, len).expect("read");
            let start = offset as usize;
            let end = (start + len as usize).min(size);
            assert_eq!(got, data[start..end].to_vec(), "at {offset}");
        }
    }

    /// ProFTPD logged hundreds of READs past end of file. Read
    /// the way the kernel does (large requests, up to and past the end),
    /// small and large files: at most one READ starts past the end.
    #[test]
    fn no_reads_past_the_known_size_beyond_one_confirming_read() {
        for size in [
            10usize,
            4096,
            200_000,
            BLOCK as usize + 1,
            3 * BLOCK as usize + 777,
        ] {
            let (remote, mock, handle, data) = setup(size);
            let pool = Pool::new(2);
            let state = Mutex::new(ReadAhead::new(size as u64));
            let step = 1 << 20; // FUSE max_read
            let mut got = Vec::new();
            let mut offset = 0u64;
            loop {
                let chunk =
                    ReadAhead::read(&state, &pool, &remote, &handle, offset, step).expect("read");
                if chunk.is_empty() {
                    break;
                }
                offset += chunk.len() as u64;
                got.extend_from_slice(&chunk);
            }
            assert!(got == data, "content differs at size {size}");
            // Let prefetches still queued finish before counting.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(
                mock.reads_past_eof() <= 1,
                "size {size}: {} READs past end of file",
                mock.reads_past_eof()
            );
        }
    }

    /// A file that grew since it was opened is still read to its new end.
    #[test]
    fn a_file_grown_since_open_is_read_to_its_new_end() {
        let (remote, mock, handle, mut data) = setup(1000);
        let pool = Pool::new(2);
        let state = Mutex::new(ReadAhead::new(1000));
        data.extend_from_slice(&[7u8; 100_000]);
        mock.put_file("/root/f.bin", &data);
        let mut got = Vec::new();
        loop {
            let chunk = ReadAhead::read(&state, &pool, &remote, &handle, got.len() as u64, 1 << 17)
                .expect("read");
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        assert!(got == data, "read {} of {} bytes", got.len(), data.len());
    }

    /// Reads the whole file the way the kernel does (128 KiB requests),
    /// starting with its last bytes (as `file` or `tail` would).
    fn read_all(
        state: &Mutex<ReadAhead>,
        pool: &Pool,
        remote: &Arc<dyn Remote>,
        handle: &Handle,
        size: usize,
    ) -> Vec<u8> {
        let tail = size.saturating_sub(100) as u64;
        let end = ReadAhead::read(state, pool, remote, handle, tail, 100).expect("read tail");
        assert_eq!(end.len(), size - tail as usize);
        let mut got = Vec::new();
        while got.len() < size {
            let chunk = ReadAhead::read(state, pool, remote, handle, got.len() as u64, 128 * 1024)
                .expect("read");
            assert!(!chunk.is_empty(), "short file at {}", got.len());
            got.extend_from_slice(&chunk);
        }
        got
    }

    /// A file of at most `WHOLE_FILE_MAX` bytes is requested
    /// whole at open. Every read call it takes is in flight at once, before
    /// any returns (with the SFTP implementation each is one pipelined batch
    /// of READs: one round trip after the OPEN), and reading it afterwards,
    /// in any order, sends nothing more and nothing past end of file.
    #[test]
    fn a_coupa_sized_file_is_requested_whole_in_one_round_trip() {
        let workers = crate::fs::READ_AHEAD_WORKERS;
        for size in [
            200_000usize,
            BLOCK as usize,
            3 * BLOCK as usize + 777,
            4 * BLOCK as usize,
            WHOLE_FILE_MAX as usize,
        ] {
            let (remote, mock, handle, data) = setup(size);
            let pool = Pool::new(workers);
            let state = Mutex::new(ReadAhead::new(size as u64));
            let blocks = (size as u64).div_ceil(BLOCK);
            let per_call = blocks.div_ceil(workers as u64);
            let calls = blocks.div_ceil(per_call) as usize;
            // Each call stays one batch of the SFTP implementation (64 READs
            // of 64 KiB).
            assert!(per_call * BLOCK <= 4 << 20);
            mock.hold("read");
            assert!(ReadAhead::fetch_whole(&state, &pool, &remote, &handle));
            let t0 = std::time::Instant::now();
            while mock.waiting() < calls as u64 {
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(10),
                    "size {size}: {} of {calls} reads in flight together",
                    mock.waiting()
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert_eq!(mock.calls("read"), 0, "a read finished while held");
            mock.release("read");
            let got = read_all(&state, &pool, &remote, &handle, size);
            assert!(got == data, "size {size}: content differs");
            assert_eq!(mock.calls("read"), calls, "size {size}: reads sent");
            assert_eq!(mock.reads_past_eof(), 0, "size {size}");
        }
    }

    /// With the file also open on a second connection, a
    /// whole-file fetch reads every other part through that handle: half
    /// of a 4 MiB file goes over each connection, and the content is whole.
    #[test]
    fn a_whole_file_fetch_spreads_over_the_twin_handle() {
        let size = 4 * BLOCK as usize;
        let (remote, mock, handle, data) = setup(size);
        let twin = mock.open_read(b"/root/f.bin").expect("open twin");
        let pool = Pool::new(crate::fs::READ_AHEAD_WORKERS);
        let state = Mutex::new(ReadAhead::with_twin(size as u64, Some(twin.clone())));
        assert!(ReadAhead::fetch_whole(&state, &pool, &remote, &handle));
        let got = read_all(&state, &pool, &remote, &handle, size);
        assert!(got == data, "content differs");
        assert_eq!(mock.read_through(&handle), size / 2);
        assert_eq!(mock.read_through(&twin), size / 2);
        assert_eq!(lock(&state).take_twin(), Some(twin), "kept for release");
    }

    #[test]
    fn larger_or_unknown_sizes_are_not_requested_whole() {
        let (remote, mock, handle, _data) = setup(16);
        let pool = Pool::new(2);
        for hint in [0, WHOLE_FILE_MAX + 1, u64::MAX] {
            let state = Mutex::new(ReadAhead::new(hint));
            assert!(!ReadAhead::fetch_whole(&state, &pool, &remote, &handle));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(mock.calls("read"), 0);
    }

    #[test]
    fn errors_reach_the_reader() {
        let size = 4 * BLOCK as usize;
        let (remote, mock, handle, _data) = setup(size);
        let pool = Pool::new(2);
        let state = Mutex::new(ReadAhead::new(size as u64));
        mock.fail_always("read", crate::remote::RemoteError::Lost("cut".into()));
        let err = ReadAhead::read(&state, &pool, &remote, &handle, 0, 4096).expect_err("fails");
        assert!(err.is_transport());
    }
}
