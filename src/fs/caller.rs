//! Who is calling: the process behind a FUSE request, read from /proc.
//!
//! FUSE sends FLUSH on *every* close of a descriptor, including the copies a
//! shell's children inherit (`{ echo head; sleep 1; cat rows; } > x.csv`
//! flushes when `sleep` exits) and the implicit close when a process is
//! killed. Publishing an upload at such a flush would hand Coupa a partial
//! file. So a flush publishes only when it comes from the process that
//! opened the file, and never when that process is dying from a signal.

/// How long a /proc read may take before the answer counts as unknown.
///
/// Long enough that a loaded machine never hits it for a live closer (then
/// close() would return before the publish): only a task stuck in execve
/// waits this long, once per close-on-exec descriptor it drops.
const PROC_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a /proc read on a reader thread, bounded by `PROC_READ_LIMIT`.
///
/// A task in the middle of execve() closes its O_CLOEXEC descriptors (and
/// so sends FLUSH) while holding locks that /proc readers of that task wait
/// for: reading its /proc entry from the FLUSH handler would deadlock the
/// exec and the handler forever. The reader thread may stay blocked until
/// the handler has answered; the caller gets `None` and moves on.
///
/// Every read starts at once on a reader of its own: a read never queues
/// behind one that is blocked. (With a fixed set of readers, a job that
/// spawns programs while others hold files open blocked all of them, one
/// execve per inherited descriptor, and the writer's own close then timed
/// out in the queue and returned before its publish.)
fn bounded<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    bounded_for(PROC_READ_LIMIT, read)
}

/// `bounded` with its own time limit.
fn bounded_for<T: Send + 'static>(
    limit: std::time::Duration,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(read());
    });
    readers().run(job).ok()?;
    rx.recv_timeout(limit).ok()
}

type Job = Box<dyn FnOnce() + Send>;

/// Reader threads kept for the life of the process (a thread per read
/// cost more than the read), grown whenever none is free. A reader blocked
/// on a task in execve resumes once that task's FLUSH was answered, and
/// then serves again.
struct Readers {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    queue: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Job>>>,
    /// Readers waiting for a job and not yet promised one. A sender claims
    /// one before sending, so each job in the channel has a reader waiting.
    idle: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    started: std::sync::atomic::AtomicUsize,
}

impl Readers {
    fn run(&self, job: Job) -> Result<(), ()> {
        use std::sync::atomic::Ordering;
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !claimed && self.started.load(Ordering::SeqCst) < MAX_PROC_READERS {
            // No reader is free: this job gets a new one, which joins the
            // others afterwards.
            let n = self.started.fetch_add(1, Ordering::SeqCst);
            let (queue, idle) = (self.queue.clone(), self.idle.clone());
            return std::thread::Builder::new()
                .name(format!("proc-read-{n}"))
                .spawn(move || {
                    job();
                    serve(&queue, &idle);
                })
                .map(drop)
                .map_err(drop);
        }
        // Past the cap the job waits for the next free reader (bounded
        // still gives up after `PROC_READ_LIMIT`).
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(drop)
    }
}

fn serve(
    queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>,
    idle: &std::sync::atomic::AtomicUsize,
) {
    loop {
        idle.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

fn readers() -> &'static Readers {
    static READERS: std::sync::OnceLock<Readers> = std::sync::OnceLock::new();
    READERS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        Readers {
            jobs: std::sync::Mutex::new(tx),
            queue: std::sync::Arc::new(std::sync::Mutex::new(rx)),
            idle: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            started: std::sync::atomic::AtomicUsize::new(0),
        }
    })
}

/// At most this many reader threads: one per task stuck in execve at the
/// same moment, which is at most a few per spawning job.
const MAX_PROC_READERS: usize = 64;

/// What is known about the process behind a FLUSH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closer {
    /// /proc could not be read in time (e.g. the process is in execve).
    Unknown,
    /// The thread is gone or the request came from the kernel itself.
    Gone,
    Known(Caller),
}

/// `lookup` without the risk of blocking the FUSE thread.
pub(crate) fn lookup_bounded(pid: u32) -> Closer {
    match bounded(move || lookup(pid)) {
        None => Closer::Unknown,
        Some(None) => Closer::Gone,
        Some(Some(c)) => Closer::Known(c),
    }
}

/// `still_open` bounded in time; `None` when /proc did not answer.
pub(crate) fn still_open_bounded(tgid: u32, ino: u64, mnt_id: Option<u64>) -> Option<bool> {
    bounded(move || still_open(tgid, ino, mnt_id))
}

/// How long a lookup waits to learn whether its caller is opening the
/// file: a hint only, never worth delaying the lookup for.
const INTENT_READ_LIMIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether the thread `tid` behind a LOOKUP is inside open(2) or
/// openat(2) for reading only (`/proc/TID/syscall`: the kernel resolves
/// the path, our LOOKUP among it, before the open). False when unknown:
/// /proc unreadable (another user's task in a mount that is not root's),
/// slow (a task in execve holds the lock that read takes), or any other
/// call (`stat`, `test -f`, `ls`).
pub(crate) fn opening_for_read(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    bounded_for(INTENT_READ_LIMIT, move || {
        std::fs::read_to_string(format!("/proc/{tid}/syscall"))
            .is_ok_and(|line| opens_for_read(&line))
    })
    .unwrap_or(false)
}

/// Parses a /proc/TID/syscall line: the call number, then its arguments
/// in hex (proc(5)); "running" or "-1 ..." when not inside a call.
pub(crate) fn opens_for_read(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let Some(nr) = fields.next().and_then(|n| n.parse::<i64>().ok()) else {
        return false;
    };
    let args: Vec<u64> = fields
        .take(6)
        .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(u64::MAX))
        .collect();
    // openat(dirfd, path, flags, mode); open(path, flags, mode).
    let flags_at = if nr == libc::SYS_openat {
        2
    } else if is_open(nr) {
        1
    } else {
        return false;
    };
    let Some(&flags) = args.get(flags_at) else {
        return false;
    };
    // The flags are a C int: the low 32 bits of the register.
    let flags = (flags & 0xffff_ffff) as u32 as i32;
    let not_a_plain_read = libc::O_DIRECTORY | libc::O_PATH | libc::O_CREAT | libc::O_TRUNC;
    flags & libc::O_ACCMODE == libc::O_RDONLY && flags & not_a_plain_read == 0
}

/// open(2), which only some architectures have (aarch64 has openat only).
fn is_open(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    return nr == libc::SYS_open;
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// PF_EXITING from include/linux/sched.h: set once do_exit() has begun,
/// before the exiting task's files are closed.
const PF_EXITING: u64 = 0x0000_0004;

/// What /proc says about a request's thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Thread group (process) id.
    pub(crate) tgid: u32,
    /// The process is exiting, and the signal that killed it if any.
    pub(crate) exiting: Option<Exit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Normal,
    Signal(i32),
}

/// Reads the caller's process; `None` when the thread is gone or pid is 0
/// (requests the kernel makes on its own).
pub(crate) fn lookup(pid: u32) -> Option<Caller> {
    if pid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&status, &stat)
}

/// Parses /proc/PID/status (for Tgid) and /proc/PID/stat (flags, field 9;
/// exit_code, field 52, see proc(5)).
pub(crate) fn parse(status: &str, stat: &str) -> Option<Caller> {
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let flags: u64 = fields.get(9 - 3)?.parse().ok()?;
    let exiting = if flags & PF_EXITING != 0 {
        // exit_code holds the wait(2) status: low 7 bits = killing signal.
        let code: i64 = fields.get(52 - 3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let signal = (code & 0x7f) as i32;
        Some(if signal != 0 {
            Exit::Signal(signal)
        } else {
            Exit::Normal
        })
    } else {
        None
    };
    Some(Caller { tgid, exiting })
}

/// True when process `tgid` still has a descriptor open on inode `ino` of
/// mount `mnt_id` (read from /proc/TGID/fdinfo, which asks no filesystem).
/// FLUSH arrives after the closed descriptor left the table, so this says
/// whether the close was of one dup among several (`exec >file` does
/// open + dup2 + close) rather than the writer's last.
pub(crate) fn still_open(tgid: u32, ino: u64, mnt_id: Option<u64>) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{tgid}/fdinfo")) else {
        return false;
    };
    dir.flatten().any(|entry| {
        std::fs::read_to_string(entry.path())
            .ok()
            .is_some_and(|info| fdinfo_matches(&info, ino, mnt_id))
    })
}

/// Whether one fdinfo text names `ino` on `mnt_id` (when known).
pub(crate) fn fdinfo_matches(info: &str, ino: u64, mnt_id: Option<u64>) -> bool {
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    field("ino:") == Some(ino) && mnt_id.is_none_or(|m| field("mnt_id:") == Some(m))
}

/// The kernel's id for the mount at `mountpoint` (/proc/self/mountinfo,
/// field 1), as fdinfo's `mnt_id` reports it.
pub fn mount_id(mountpoint: &std::path::Path) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_str()?;
    info.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let id = f.next()?.parse().ok()?;
        let target = f.nth(3)?;
        // mountinfo escapes space, tab, newline and backslash as octal.
        let target = target
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\");
        (target == want).then_some(id)
    })
}

/// Who opened a handle, as far as /proc could tell at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opener {
    /// The opening process (thread group).
    Process(u32),
    /// /proc did not answer in time: only the opening thread's id is known.
    Thread(u32),
}

/// The opener of a handle opened by the thread `pid`.
pub(crate) fn opener(pid: u32) -> Opener {
    match lookup_bounded(pid) {
        Closer::Known(c) => Opener::Process(c.tgid),
        _ => Opener::Thread(pid),
    }
}

impl Opener {
    /// Whether the process `tgid` is the opener. With only a thread id
    /// known (a loaded machine at open), the thread belongs to `tgid` when
    /// /proc/TGID/task/TID exists: a multi-threaded job's close must still
    /// publish before close() returns.
    pub(crate) fn is(self, tgid: u32) -> bool {
        match self {
            Opener::Process(p) => p == tgid,
            Opener::Thread(tid) if tid == tgid => true,
            Opener::Thread(tid) => {
                bounded(move || std::path::Path::new(&format!("/proc/{tgid}/task/{tid}")).exists())
                    .unwrap_or(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_lookup_inside_openat_for_reading_is_told_apart() {
        let at = |flags: i32| {
            format!(
                "{} 0xffffff9c 0x7ffd2a1c3e10 {:#x} 0x0 0x0 0x0 0x7ffd2a1c3b08 0x7f3b1f2e5a4d",
                libc::SYS_openat,
                flags
            )
        };
        assert!(opens_for_read(&at(libc::O_RDONLY)));
        assert!(opens_for_read(&at(libc::O_RDONLY | libc::O_CLOEXEC)));
        assert!(!opens_for_read(&at(libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_TRUNC)));
        assert!(!opens_for_read(&at(libc::O_RDWR)));
        assert!(!opens_for_read(&at(libc::O_RDONLY | libc::O_DIRECTORY)));
        assert!(!opens_for_read(&at(libc::O_PATH)));
        #[cfg(target_arch = "x86_64")]
        {
            // open(path, flags): the flags are the second argument.
            let open = |flags: i32| {
                format!(
                    "{} 0x7ffd2a1c3e10 {:#x} 0x0 0x0 0x0 0x0",
                    libc::SYS_open,
                    flags
                )
            };
            assert!(opens_for_read(&open(libc::O_RDONLY)));
            assert!(!opens_for_read(&open(libc::O_WRONLY | libc::O_CREAT)));
        }
        // statx, not inside a call, running, garbage.
        let statx = format!(
            "{} 0xffffff9c 0x55d0 0x100 0xfff 0x7ffd 0x0 0x7ffd 0x7f3b",
            libc::SYS_statx
        );
        assert!(!opens_for_read(&statx));
        assert!(!opens_for_read("-1 0x7ffd2a1c3b08 0x7f3b1f2e5a4d"));
        assert!(!opens_for_read("running"));
        assert!(!opens_for_read(""));
        assert!(!opens_for_read(&format!("{}", libc::SYS_openat)));
        // This very thread is not inside an open(2) while it reads /proc.
        // SAFETY: gettid has no preconditions and cannot fail.
        let me = unsafe { libc::gettid() } as u32;
        assert!(!opening_for_read(me));
        assert!(!opening_for_read(0));
    }

    use super::*;

    /// A handle opened while /proc was too slow to name the process keeps
    /// the thread id; that thread's own process is still its opener (else
    /// a threaded job's close() would return before the publish).
    #[test]
    fn an_opener_known_only_by_thread_is_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
            let _ = tx.send(tid);
            let _ = done_rx.recv();
        });
        let tid = rx.recv().expect("thread id");
        let me = std::process::id();
        assert_ne!(tid, me);
        assert!(Opener::Thread(tid).is(me));
        assert!(!Opener::Thread(tid).is(1));
        assert!(Opener::Process(me).is(me));
        assert!(!Opener::Process(me).is(tid));
        let _ = done_tx.send(());
        t.join().expect("join");
    }

    fn stat_line(comm: &str, flags: u64, exit_code: i64) -> String {
        // Fields 3..=52 after the comm; fill the rest with zeros.
        let mut fields = vec!["0".to_string(); 50];
        fields[0] = "R".into();
        fields[9 - 3] = flags.to_string();
        fields[52 - 3] = exit_code.to_string();
        format!("4242 ({comm}) {}", fields.join(" "))
    }

    const STATUS: &str =
        "Name:\tjava\nUmask:\t0022\nState:\tR (running)\nTgid:\t4200\nNgid:\t0\nPid:\t4242\n";

    #[test]
    fn live_thread_maps_to_its_process() {
        let c = parse(STATUS, &stat_line("java", 0x400000, 0)).expect("parse");
        assert_eq!(
            c,
            Caller {
                tgid: 4200,
                exiting: None
            }
        );
    }

    #[test]
    fn normal_exit_and_signal_death_are_told_apart() {
        let normal = parse(STATUS, &stat_line("cp", PF_EXITING, 1 << 8)).expect("parse");
        assert_eq!(normal.exiting, Some(Exit::Normal));
        let killed = parse(STATUS, &stat_line("cp", PF_EXITING, 9)).expect("parse");
        assert_eq!(killed.exiting, Some(Exit::Signal(9)));
        let core = parse(STATUS, &stat_line("cp", PF_EXITING, 0x80 | 11)).expect("parse");
        assert_eq!(core.exiting, Some(Exit::Signal(11)));
    }

    #[test]
    fn command_names_with_parentheses_and_spaces_parse() {
        let c = parse(STATUS, &stat_line("a) (b c", 0, 0)).expect("parse");
        assert_eq!(c.tgid, 4200);
        assert_eq!(c.exiting, None);
    }

    #[test]
    fn fdinfo_matching_checks_inode_and_mount() {
        let info = "pos:\t0\nflags:\t0100001\nmnt_id:\t412\nino:\t77\n";
        assert!(fdinfo_matches(info, 77, Some(412)));
        assert!(fdinfo_matches(info, 77, None));
        assert!(!fdinfo_matches(info, 78, Some(412)));
        assert!(!fdinfo_matches(info, 77, Some(413)));
        assert!(!fdinfo_matches("pos:\t0\n", 77, None));
    }

    #[test]
    fn still_open_sees_own_descriptors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).expect("create");
        let ino = std::os::unix::fs::MetadataExt::ino(&file.metadata().expect("stat"));
        let me = std::process::id();
        assert!(still_open(me, ino, None));
        drop(file);
        assert!(!still_open(me, ino, None));
    }

    #[test]
    fn bounded_reads_give_up_on_a_blocked_reader() {
        let started = std::time::Instant::now();
        let r: Option<()> = bounded(|| std::thread::sleep(std::time::Duration::from_secs(5)));
        assert_eq!(r, None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(bounded(|| 7), Some(7));
        // Several blocked readers at once (a job spawning programs while
        // other files are open): a new read still gets an answer.
        let blocked: Vec<Option<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| bounded(|| std::thread::sleep(std::time::Duration::from_secs(3))))
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert_eq!(bounded(|| 8), Some(8), "a read queued behind blocked ones");
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        assert!(blocked.iter().all(Option::is_none));
        assert!(matches!(
            lookup_bounded(std::process::id()),
            Closer::Known(_)
        ));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse("", ""), None);
        assert_eq!(parse(STATUS, "no parens"), None);
        assert_eq!(parse(STATUS, "1 (x) R"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let c = lookup(me).expect("own /proc entry");
        assert_eq!(c.tgid, me);
        assert_eq!(c.exiting, None);
        assert_eq!(lookup(0), None);
    }
}
