//! The fd table: what the runtime knows about each file descriptor, and who waits on it.
//!
//! Sockets used by coroutines are *managed*: the runtime puts them in non-blocking mode in the
//! kernel, remembers whether the *user* asked for non-blocking (so hooked calls still return
//! `EAGAIN` when the user wants it), remembers `SO_RCVTIMEO`/`SO_SNDTIMEO`, and registers them
//! with each worker's epoll once, edge-triggered. The user's wish and the timeouts belong to
//! the open file description, as in the kernel: numbers made by `dup` share one [`Desc`], and
//! a change through any of them is seen through all. Pollable fds (pipes, ttys …) keep their
//! kernel flags, so the kernel is asked about them instead. Each direction counts readiness events in a
//! sequence number: a caller reads it before its non-blocking attempt and, after `EAGAIN`,
//! waits only if it has not moved (so an event between the attempt and the wait is not lost).
//!
//! Closing an fd bumps its generation: waiters wake with `EBADF`, and epoll events carrying the
//! old generation (a reused fd number) are ignored.

use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;

use libc::c_int;

use crate::real;
use crate::runtime::current::CurrentTask;
use crate::runtime::task::{Task, WaitInfo};
use crate::runtime::worker::Worker;
use crate::runtime::{self, timer};
use crate::sync::SpinLock;

/// Entries per chunk.
const CHUNK: usize = 1024;
/// Chunks: the table covers fds below `CHUNK * CHUNKS` (about a million).
const CHUNKS: usize = 1024;

/// Not looked at yet (or closed since).
pub const KIND_UNKNOWN: u8 = 0;
/// A socket managed by the runtime (non-blocking in the kernel).
pub const KIND_SOCKET: u8 = 1;
/// Something else `poll` can wait for: a pipe, FIFO, tty, eventfd, character device, or one of
/// the standard streams. Its kernel flags are left alone (it may be shared with other
/// processes); a coroutine waits for readiness before each call instead.
pub const KIND_POLLABLE: u8 = 2;
/// A regular file, directory or block device: calls pass straight through.
pub const KIND_FILE: u8 = 3;

/// A direction of readiness.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Readable (or a connection to accept, or hang-up).
    Read,
    /// Writable (or a connect that finished).
    Write,
}

/// How a wait ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wait {
    /// Readiness may have changed: try again.
    Ready,
    /// The deadline passed.
    TimedOut,
    /// The fd was closed meanwhile.
    Closed,
    /// A signal interrupted the wait (see [`crate::signal`]): the call fails with `EINTR`.
    Interrupted,
}

/// Waiters of one direction: tasks and the wait they are in.
type Waiters = Vec<(Arc<Task>, u64)>;

/// Coroutines registered as fd waiters, over all fds (for stats).
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// How many coroutines wait for an fd now.
pub fn waiters() -> usize {
    WAITERS.load(Ordering::Relaxed)
}

/// Whether a pollable fd takes `preadv2`/`pwritev2` with `RWF_NOWAIT` (ttys do not).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Nowait {
    Unknown = 0,
    Yes = 1,
    No = 2,
}

/// A socket timeout meaning "give up at once": the kernel's reading of a negative
/// `SO_RCVTIMEO`/`SO_SNDTIMEO` (a blocking call then fails with `EAGAIN` without waiting).
pub const TIMEOUT_IMMEDIATE: u64 = u64::MAX;

/// An open file description shared by the fd numbers `dup` made of one managed socket: the
/// numbers, so that a change of `O_NONBLOCK` or a timeout through one reaches them all.
pub struct Desc {
    members: SpinLock<Vec<c_int>>,
}

impl Desc {
    fn new(fd: c_int) -> Arc<Desc> {
        Arc::new(Desc {
            members: SpinLock::new(vec![fd]),
        })
    }

    /// Runs `f` on the entry of every number sharing this description.
    fn each(&self, f: impl Fn(&FdEntry)) {
        for &fd in self.members.lock().iter() {
            if let Some(entry) = table().peek(fd) {
                f(entry);
            }
        }
    }
}

/// What is known about one fd.
pub struct FdEntry {
    waiters: SpinLock<(Waiters, Waiters)>,
    generation: AtomicU32,
    kind: AtomicU8,
    /// Whether `RWF_NOWAIT` works on this pollable fd (a `Nowait` as u8).
    nowait: AtomicU8,
    /// The open file description this managed socket's number shares with its dups.
    desc: SpinLock<Option<Arc<Desc>>>,
    /// The user's `O_NONBLOCK` (managed sockets), kept here for the hot path; written through
    /// the `Desc` for every number sharing it.
    user_nonblocking: AtomicBool,
    /// Workers (bit i = worker i) whose epoll has this fd registered.
    registered: AtomicU64,
    recv_timeout_ns: AtomicU64,
    send_timeout_ns: AtomicU64,
    /// Timeouts set (through the hook) before the socket was managed: bit 0 receive, bit 1
    /// send. The kernel reads a "give up at once" timeout back as zero, like none at all, so
    /// discovery keeps these instead of asking it.
    timeouts_set: AtomicU8,
    read_ready: AtomicU64,
    write_ready: AtomicU64,
}

/// Removes `fd` from the epoll of every worker in `workers` (bit i = worker i).
fn deregister_from(fd: c_int, workers: u64) {
    if workers == 0 {
        return;
    }
    if let Some(rt) = runtime::try_get() {
        for (i, worker) in rt.all_workers().iter().enumerate().take(64) {
            if workers & (1 << i) != 0 {
                worker.reactor().deregister(fd);
            }
        }
    }
}

impl FdEntry {
    const fn new() -> FdEntry {
        FdEntry {
            waiters: SpinLock::new((Vec::new(), Vec::new())),
            generation: AtomicU32::new(0),
            kind: AtomicU8::new(KIND_UNKNOWN),
            nowait: AtomicU8::new(Nowait::Unknown as u8),
            desc: SpinLock::new(None),
            user_nonblocking: AtomicBool::new(false),
            registered: AtomicU64::new(0),
            recv_timeout_ns: AtomicU64::new(0),
            send_timeout_ns: AtomicU64::new(0),
            timeouts_set: AtomicU8::new(0),
            read_ready: AtomicU64::new(0),
            write_ready: AtomicU64::new(0),
        }
    }

    /// The kind (`KIND_*`).
    pub fn kind(&self) -> u8 {
        self.kind.load(Ordering::Acquire)
    }

    /// Whether the user asked for non-blocking I/O on this fd.
    pub fn user_nonblocking(&self) -> bool {
        self.user_nonblocking.load(Ordering::Relaxed)
    }

    /// Records the user's non-blocking intent, for every number of this open file description.
    pub fn set_user_nonblocking(&self, on: bool) {
        self.through_desc(|e| e.user_nonblocking.store(on, Ordering::Relaxed));
    }

    /// Runs `f` on this entry and every other number sharing its open file description.
    fn through_desc(&self, f: impl Fn(&FdEntry)) {
        let desc = self.desc.lock().clone();
        match desc {
            Some(desc) => desc.each(f),
            None => f(self),
        }
    }

    /// Starts a new open file description for `fd`.
    fn new_desc(&self, fd: c_int) {
        *self.desc.lock() = Some(Desc::new(fd));
    }

    /// Leaves the open file description `fd` shared (closed, or now something else).
    fn leave_desc(&self, fd: c_int) {
        if let Some(desc) = self.desc.lock().take() {
            desc.members.lock().retain(|&member| member != fd);
        }
    }

    /// Whether `RWF_NOWAIT` works on this pollable fd.
    pub fn nowait(&self) -> Nowait {
        match self.nowait.load(Ordering::Relaxed) {
            1 => Nowait::Yes,
            2 => Nowait::No,
            _ => Nowait::Unknown,
        }
    }

    /// Records whether `RWF_NOWAIT` works on this pollable fd.
    pub fn set_nowait(&self, nowait: Nowait) {
        self.nowait.store(nowait as u8, Ordering::Relaxed);
    }

    /// The current generation (changes when the fd is closed).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// The readiness sequence number of `dir`; read it *before* a non-blocking attempt.
    pub fn ready_seq(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Read => self.read_ready.load(Ordering::Acquire),
            Dir::Write => self.write_ready.load(Ordering::Acquire),
        }
    }

    /// The `SO_RCVTIMEO` (Read) or `SO_SNDTIMEO` (Write) timeout in ns, 0 for none.
    pub fn timeout_ns(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Read => self.recv_timeout_ns.load(Ordering::Relaxed),
            Dir::Write => self.send_timeout_ns.load(Ordering::Relaxed),
        }
    }

    /// Notes a socket timeout set on a socket not managed yet, for its discovery (and that of
    /// every number sharing it).
    pub fn note_timeout_ns(&self, dir: Dir, ns: u64) {
        self.through_desc(|e| {
            let (slot, bit) = match dir {
                Dir::Read => (&e.recv_timeout_ns, 1),
                Dir::Write => (&e.send_timeout_ns, 2),
            };
            slot.store(ns, Ordering::Relaxed);
            e.timeouts_set.fetch_or(bit, Ordering::Relaxed);
        });
    }

    /// Records a socket timeout (0: none; [`TIMEOUT_IMMEDIATE`]), for every number of this
    /// open file description.
    pub fn set_timeout_ns(&self, dir: Dir, ns: u64) {
        self.through_desc(|e| match dir {
            Dir::Read => e.recv_timeout_ns.store(ns, Ordering::Relaxed),
            Dir::Write => e.send_timeout_ns.store(ns, Ordering::Relaxed),
        });
    }

    /// Marks the entry of `fd` as a managed socket the runtime just created (accept): its
    /// kernel state is already non-blocking.
    pub fn init_socket(
        &self,
        fd: c_int,
        user_nonblocking: bool,
        recv_timeout_ns: u64,
        send_timeout_ns: u64,
    ) {
        self.new_desc(fd);
        let _guard = self.waiters.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.registered.store(0, Ordering::Relaxed);
        self.user_nonblocking
            .store(user_nonblocking, Ordering::Relaxed);
        self.recv_timeout_ns
            .store(recv_timeout_ns, Ordering::Relaxed);
        self.send_timeout_ns
            .store(send_timeout_ns, Ordering::Relaxed);
        self.kind.store(KIND_SOCKET, Ordering::Release);
    }

    /// Forgets everything about the number `fd`, which now refers to something new.
    pub fn reset(&self, fd: c_int) {
        self.leave_desc(fd);
        self.nowait.store(Nowait::Unknown as u8, Ordering::Relaxed);
        let _guard = self.waiters.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.registered.store(0, Ordering::Relaxed);
        self.user_nonblocking.store(false, Ordering::Relaxed);
        self.recv_timeout_ns.store(0, Ordering::Relaxed);
        self.send_timeout_ns.store(0, Ordering::Relaxed);
        self.timeouts_set.store(0, Ordering::Relaxed);
        self.kind.store(KIND_UNKNOWN, Ordering::Release);
    }

    /// Makes the number `fd` a copy of `from` (a dup: the same open file description).
    pub fn copy_from(&self, fd: c_int, from: &FdEntry) {
        let kind = from.kind();
        self.leave_desc(fd);
        let shared = from.desc.lock().clone();
        if let Some(desc) = &shared {
            desc.members.lock().push(fd);
        }
        *self.desc.lock() = shared;
        self.nowait
            .store(from.nowait.load(Ordering::Relaxed), Ordering::Relaxed);
        let _guard = self.waiters.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.registered.store(0, Ordering::Relaxed);
        self.user_nonblocking
            .store(from.user_nonblocking(), Ordering::Relaxed);
        self.recv_timeout_ns
            .store(from.timeout_ns(Dir::Read), Ordering::Relaxed);
        self.send_timeout_ns
            .store(from.timeout_ns(Dir::Write), Ordering::Relaxed);
        self.timeouts_set
            .store(from.timeouts_set.load(Ordering::Relaxed), Ordering::Relaxed);
        self.kind.store(kind, Ordering::Release);
    }

    /// Makes `fd` (a socket not managed yet) the first number of an open file description,
    /// unless it has one, so that its dups share what is noted about it before discovery.
    pub fn own_desc(&self, fd: c_int) {
        let mut desc = self.desc.lock();
        if desc.is_none() {
            *desc = Some(Desc::new(fd));
        }
    }

    /// Learns what `fd` is, the first time a coroutine uses it. A socket becomes managed:
    /// non-blocking in the kernel, with the user's intent and timeouts recorded. Returns the
    /// kind, or the errno if `fd` is not open.
    pub fn discover(&self, fd: c_int) -> Result<u8, c_int> {
        let _guard = self.waiters.lock();
        let kind = self.kind();
        if kind != KIND_UNKNOWN {
            return Ok(kind);
        }
        // SAFETY: fstat with a valid out-pointer; a bad fd is reported as an error.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return Err(crate::hooks::errno());
        }
        let file_type = stat.st_mode & libc::S_IFMT;
        if matches!(
            file_type,
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK | libc::S_IFLNK
        ) {
            self.kind.store(KIND_FILE, Ordering::Release);
            return Ok(KIND_FILE);
        }
        // SAFETY: F_GETFL on an fd that fstat just accepted.
        let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
        if flags < 0 {
            return Err(crate::hooks::errno());
        }
        let user_nonblocking = flags & libc::O_NONBLOCK != 0;
        // The standard streams are shared with the parent process (O_NONBLOCK would leak into
        // it), so even a socket there is only waited for, never switched to non-blocking.
        if fd <= 2 || file_type != libc::S_IFSOCK {
            // Its kernel flags are the user's: the hooks ask the kernel (`F_GETFL`).
            self.registered.store(0, Ordering::Relaxed);
            self.nowait.store(Nowait::Unknown as u8, Ordering::Relaxed);
            self.kind.store(KIND_POLLABLE, Ordering::Release);
            return Ok(KIND_POLLABLE);
        }
        if !user_nonblocking
            && unsafe { real::fcntl(fd, libc::F_SETFL, (flags | libc::O_NONBLOCK) as usize) } < 0
        {
            return Err(crate::hooks::errno());
        }
        self.registered.store(0, Ordering::Relaxed);
        self.own_desc(fd);
        self.user_nonblocking
            .store(user_nonblocking, Ordering::Relaxed);
        let noted = self.timeouts_set.swap(0, Ordering::Relaxed);
        if noted & 1 == 0 {
            self.recv_timeout_ns
                .store(socket_timeout_ns(fd, libc::SO_RCVTIMEO), Ordering::Relaxed);
        }
        if noted & 2 == 0 {
            self.send_timeout_ns
                .store(socket_timeout_ns(fd, libc::SO_SNDTIMEO), Ordering::Relaxed);
        }
        self.kind.store(KIND_SOCKET, Ordering::Release);
        Ok(KIND_SOCKET)
    }

    /// The fd is being closed (or replaced by dup2): bumps the generation, wakes every waiter
    /// (they see `Closed`), and removes the fd from the workers' epolls while its number still
    /// names it.
    pub fn invalidate(&self, fd: c_int) {
        self.leave_desc(fd);
        self.nowait.store(Nowait::Unknown as u8, Ordering::Relaxed);
        let mut woken = Woken::default();
        let registered = {
            let mut waiters = self.waiters.lock();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.kind.store(KIND_UNKNOWN, Ordering::Release);
            self.user_nonblocking.store(false, Ordering::Relaxed);
            self.recv_timeout_ns.store(0, Ordering::Relaxed);
            self.send_timeout_ns.store(0, Ordering::Relaxed);
            self.timeouts_set.store(0, Ordering::Relaxed);
            woken.take_all(&mut waiters.0);
            woken.take_all(&mut waiters.1);
            self.registered.swap(0, Ordering::AcqRel)
        };
        deregister_from(fd, registered);
        woken.wake(runtime::schedule);
    }

    /// Makes `worker`'s epoll watch this fd before a coroutine of `worker` waits on it. The
    /// fd follows its coroutine: when other workers' epolls watch it too (the coroutine was
    /// moved to `worker`, or took the fd over from a coroutine elsewhere) and nobody waits on
    /// it now, it leaves theirs, so that its events reach only the worker whose coroutine
    /// waits (otherwise every event wakes the other worker as well, which then hands the
    /// wake-up over). With waiters present the fd stays in every epoll it is in: moving it on
    /// each wait of coroutines on two workers (acceptors sharing a listener, a reader and a
    /// writer) would cost two `epoll_ctl`s per wait. Correctness does not depend on where the
    /// events arrive: any epoll's event wakes every waiter of the fd through the table.
    fn watch_from(&self, fd: c_int, generation: u32, worker: &Worker) -> Result<(), c_int> {
        let bit = 1u64 << worker.index();
        let registered = self.registered.load(Ordering::Acquire);
        if registered == bit {
            return Ok(());
        }
        if registered & bit == 0 {
            worker.reactor().register(fd, generation)?;
            self.registered.fetch_or(bit, Ordering::AcqRel);
        }
        if registered & !bit != 0 {
            self.leave_other_epolls(fd, generation, bit);
        }
        Ok(())
    }

    /// Removes the fd from every epoll but `keep`'s (a bit), if nobody waits on it. Under the
    /// waiters lock with the generation checked, so the number still names this fd (`invalidate`
    /// bumps the generation under the same lock before the close).
    fn leave_other_epolls(&self, fd: c_int, generation: u32, keep: u64) {
        let waiters = self.waiters.lock();
        if self.generation() != generation || !waiters.0.is_empty() || !waiters.1.is_empty() {
            return;
        }
        let others = self.registered.fetch_and(keep, Ordering::AcqRel) & !keep;
        deregister_from(fd, others);
        drop(waiters); // held across the epoll_ctl calls: see above
    }

    /// Suspends the current coroutine until `dir` may be ready (its sequence number moved past
    /// `seen`), the fd is closed (its generation moved past `generation`), or `deadline`
    /// (monotonic ns; 0 for none) passes. Returns `Err(errno)` if the fd cannot be waited on.
    pub fn wait(
        &self,
        fd: c_int,
        dir: Dir,
        seen: u64,
        generation: u32,
        deadline: u64,
        current: &CurrentTask,
    ) -> Result<Wait, c_int> {
        self.watch_from(fd, generation, current.worker())?;
        let worker = current.worker();
        let token = current.task().begin_wait();
        {
            let mut waiters = self.waiters.lock();
            if self.generation() != generation {
                return Ok(Wait::Closed);
            }
            if self.ready_seq(dir) != seen {
                return Ok(Wait::Ready);
            }
            let list = match dir {
                Dir::Read => &mut waiters.0,
                Dir::Write => &mut waiters.1,
            };
            list.push((current.arc(), token));
            WAITERS.fetch_add(1, Ordering::Relaxed);
        }
        if deadline != 0 {
            worker.add_timer(deadline, current.arc(), token);
        }
        let woke = runtime::park(
            current,
            WaitInfo::Fd {
                fd,
                write: dir == Dir::Write,
                deadline,
            },
        );
        self.forget_waiter(dir, current.task());
        if woke == runtime::Woke::Interrupted {
            return Ok(Wait::Interrupted);
        }
        if self.generation() != generation {
            return Ok(Wait::Closed);
        }
        if self.ready_seq(dir) == seen && deadline != 0 && timer::now_ns() >= deadline {
            return Ok(Wait::TimedOut);
        }
        Ok(Wait::Ready)
    }

    /// Registers the current task (in wait `token`) for `dir` without suspending; for waits on
    /// several fds at once (poll). Returns false if `dir` is already past `seen` or the fd was
    /// closed (then do not park).
    pub fn add_waiter(
        &self,
        fd: c_int,
        dir: Dir,
        seen: u64,
        generation: u32,
        current: &CurrentTask,
        token: u64,
    ) -> Result<bool, c_int> {
        self.watch_from(fd, generation, current.worker())?;
        let mut waiters = self.waiters.lock();
        if self.generation() != generation || self.ready_seq(dir) != seen {
            return Ok(false);
        }
        let list = match dir {
            Dir::Read => &mut waiters.0,
            Dir::Write => &mut waiters.1,
        };
        list.push((current.arc(), token));
        WAITERS.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Removes `task` from the waiters of `dir` (its wait is over).
    pub fn forget_waiter(&self, dir: Dir, task: &Task) {
        let mut waiters = self.waiters.lock();
        let list = match dir {
            Dir::Read => &mut waiters.0,
            Dir::Write => &mut waiters.1,
        };
        let before = list.len();
        list.retain(|(t, _)| !std::ptr::eq(Arc::as_ptr(t), task));
        WAITERS.fetch_sub(before - list.len(), Ordering::Relaxed);
    }

    /// An epoll event for this fd: bumps the readiness of the directions it names and wakes
    /// their waiters.
    fn ready(&self, generation: u32, events: u32, schedule: impl Fn(Arc<Task>)) {
        let readable = events
            & (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
                as u32
            != 0;
        let writable = events & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        let mut woken = Woken::default();
        {
            let mut waiters = self.waiters.lock();
            if self.generation() != generation {
                return; // an event for a previous life of this fd number
            }
            if readable {
                self.read_ready.fetch_add(1, Ordering::AcqRel);
                woken.take_all(&mut waiters.0);
            }
            if writable {
                self.write_ready.fetch_add(1, Ordering::AcqRel);
                woken.take_all(&mut waiters.1);
            }
        }
        woken.wake(schedule);
    }
}

impl FdEntry {
    /// Wakes every waiter as if both directions became ready (after `shutdown`, whose effect
    /// the waiters must see).
    pub fn poke(&self) {
        self.ready(
            self.generation(),
            (libc::EPOLLIN | libc::EPOLLOUT) as u32,
            runtime::schedule,
        );
    }
}

/// Waiters taken off an fd's lists, to be woken after its lock is released. The lists keep
/// their capacity (no allocation per wait), and the usual one or two waiters live on the
/// stack.
#[derive(Default)]
struct Woken {
    few: [Option<(Arc<Task>, u64)>; 4],
    count: usize,
    more: Vec<(Arc<Task>, u64)>,
}

impl Woken {
    /// Moves every waiter out of `list` (leaving it empty, with its capacity).
    fn take_all(&mut self, list: &mut Waiters) {
        WAITERS.fetch_sub(list.len(), Ordering::Relaxed);
        for waiter in list.drain(..) {
            match self.few.get_mut(self.count) {
                Some(slot) => {
                    *slot = Some(waiter);
                    self.count += 1;
                }
                None => self.more.push(waiter),
            }
        }
    }

    /// Wakes them all, queueing those that were parked.
    fn wake(self, schedule: impl Fn(Arc<Task>)) {
        for (task, token) in self.few.into_iter().flatten().chain(self.more) {
            if task.wake(token) {
                schedule(task);
            }
        }
    }
}

/// A socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` in ns (0: none or unknown).
fn socket_timeout_ns(fd: c_int, option: c_int) -> u64 {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the right size.
    let rc = unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return 0;
    }
    timeval_ns(&tv)
}

/// A socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`, old or new layout) as the kernel reads it:
/// `None` for microseconds out of range (the kernel's `EDOM`), [`TIMEOUT_IMMEDIATE`] for a
/// negative number of seconds, 0 for none (zero), else ns.
pub fn sock_timeout_ns(sec: i64, usec: i64) -> Option<u64> {
    if !(0..1_000_000).contains(&usec) {
        return None;
    }
    if sec < 0 {
        return Some(TIMEOUT_IMMEDIATE);
    }
    Some(
        (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(usec as u64 * 1000)
            .min(TIMEOUT_IMMEDIATE - 1),
    )
}

/// A `timeval` read back with `getsockopt` in ns (0: none).
pub fn timeval_ns(tv: &libc::timeval) -> u64 {
    sock_timeout_ns(tv.tv_sec, tv.tv_usec).unwrap_or(0)
}

/// The table of all fds.
pub struct FdTable {
    chunks: [AtomicPtr<[FdEntry; CHUNK]>; CHUNKS],
}

static TABLE: FdTable = FdTable {
    chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS],
};

/// The process's fd table.
pub fn table() -> &'static FdTable {
    &TABLE
}

impl FdTable {
    /// The entry of `fd`, allocating its chunk if needed; `None` for negative or huge fds.
    pub fn get(&self, fd: c_int) -> Option<&FdEntry> {
        let (chunk, index) = split(fd)?;
        let mut ptr = self.chunks[chunk].load(Ordering::Acquire);
        if ptr.is_null() {
            let fresh = new_chunk();
            match self.chunks[chunk].compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => ptr = fresh,
                Err(existing) => {
                    // SAFETY: `fresh` was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                    ptr = existing;
                }
            }
        }
        // SAFETY: chunks are never freed.
        Some(unsafe { &(*ptr)[index] })
    }

    /// The entry of `fd` if its chunk exists (never allocates).
    pub fn peek(&self, fd: c_int) -> Option<&FdEntry> {
        let (chunk, index) = split(fd)?;
        let ptr = self.chunks[chunk].load(Ordering::Acquire);
        // SAFETY: chunks are never freed.
        (!ptr.is_null()).then(|| unsafe { &(*ptr)[index] })
    }

    /// Forgets (as `close` does) every known fd from `first` to `last`, inclusive: for closes
    /// of many fds at once (`close_range`, `closefrom`).
    pub fn invalidate_range(&self, first: c_int, last: c_int) {
        let (first, last) = (first.max(0) as usize, last.max(0) as usize);
        for chunk in first / CHUNK..=(last / CHUNK).min(CHUNKS - 1) {
            if self.chunks[chunk].load(Ordering::Acquire).is_null() {
                continue;
            }
            let (low, high) = (chunk * CHUNK, chunk * CHUNK + CHUNK - 1);
            for fd in first.max(low)..=last.min(high) {
                if let Some(entry) = self.peek(fd as c_int).filter(|e| e.kind() != KIND_UNKNOWN) {
                    entry.invalidate(fd as c_int);
                }
            }
        }
    }

    /// In the child of a `fork`: every entry forgets the parent's waiters (tasks that do not
    /// exist here, leaked, never dropped) and its registrations with the parent's reactors;
    /// what is known about the fds themselves stays true (the child has the same fds, sharing
    /// their open file descriptions).
    ///
    /// # Safety
    /// Only in a forked child, before anything else runs (see `runtime::fork`).
    pub unsafe fn reset_in_child(&self) {
        // Which numbers share which description, from the entries themselves: a member list
        // may have been in the middle of a change (by a thread the child does not have), so
        // each is rebuilt rather than read.
        let mut members: std::collections::HashMap<usize, (Arc<Desc>, Vec<c_int>)> =
            std::collections::HashMap::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let chunk = chunk.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: chunks are never freed.
            for (i, entry) in unsafe { &*chunk }.iter().enumerate() {
                // SAFETY: guaranteed by the caller. The desc lock holds one pointer, which a
                // thread that no longer exists cannot have left half-written.
                unsafe {
                    entry.waiters.reset_in_child((Vec::new(), Vec::new()));
                    entry.desc.unlock_in_child();
                }
                entry.registered.store(0, Ordering::Release);
                if let Some(desc) = entry.desc.lock().clone() {
                    let fd = (c * CHUNK + i) as c_int;
                    members
                        .entry(Arc::as_ptr(&desc) as usize)
                        .or_insert_with(|| (desc, Vec::new()))
                        .1
                        .push(fd);
                }
            }
        }
        for (desc, fds) in members.into_values() {
            // SAFETY: as above: the old list is leaked, not read.
            unsafe { desc.members.reset_in_child(fds) };
        }
        WAITERS.store(0, Ordering::Relaxed);
    }

    /// Dispatches an epoll event.
    pub fn on_event(&self, fd: c_int, generation: u32, events: u32, schedule: impl Fn(Arc<Task>)) {
        if let Some(entry) = self.peek(fd) {
            entry.ready(generation, events, schedule);
        }
    }
}

/// A fresh chunk of entries, built on the heap (as an array literal it would be built on the
/// stack first: a 100 KiB frame that every call of `get` would pay for in stack probes).
#[cold]
#[inline(never)]
fn new_chunk() -> *mut [FdEntry; CHUNK] {
    let entries: Box<[FdEntry]> = (0..CHUNK).map(|_| FdEntry::new()).collect();
    let chunk: Box<[FdEntry; CHUNK]> = entries
        .try_into()
        .unwrap_or_else(|_| unreachable!("CHUNK entries"));
    Box::into_raw(chunk)
}

fn split(fd: c_int) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok()?;
    let chunk = fd / CHUNK;
    (chunk < CHUNKS).then_some((chunk, fd % CHUNK))
}
